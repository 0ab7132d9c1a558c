// The two discoverability forms the seeds use (RA.md), producing the
// per-key bias d [B, H, T] that every RA variant takes:
//   table:   d[b,h,t] = table[h,t]                  (learned table [H, T])
//   content: d[b,h,t] = sigmoid(K[b,h,t,:] . u[h,:]) (learned u [H, D])
// and their backward passes from dd [B, H, T] (the RA kernels' output).
// Small element-wise kernels: memory-bound, T x D work against the
// attention's T^2 x D, so they are kept simple and deterministic (the
// parameter gradients reduce over the batch/tokens inside one thread each).
#pragma once

#include <ra/shape.hpp>
#include <ra/tensor.hpp>

#include <stdexcept>
#include <string>

namespace ra::kk {

template <class Scalar, class Exec>
using Matrix = Kokkos::View<Scalar**, Kokkos::LayoutRight, typename Exec::memory_space>;

namespace detail {
template <class V>
void expect_extents(const char* fn, const char* name, const V& v, std::initializer_list<int> dims) {
  int r = 0;
  for (int n : dims) {
    if (v.extent_int(r) != n)
      throw std::invalid_argument(std::string(fn) + ": " + name + " extent " + std::to_string(r) +
                                  " is " + std::to_string(v.extent_int(r)) + ", expected " +
                                  std::to_string(n));
    ++r;
  }
}
}  // namespace detail

template <class Scalar, class Exec>
void disc_table_forward(const Exec& exec, const Matrix<Scalar, Exec>& table,
                        const Tensor3<Scalar, Exec>& d) {
  const int B = d.extent_int(0), H = d.extent_int(1), T = d.extent_int(2);
  detail::expect_extents("disc_table_forward", "table", table, {H, T});
  Kokkos::parallel_for(
      "ra::disc_table_forward", Kokkos::RangePolicy<Exec>(exec, 0, B * H * T), KOKKOS_LAMBDA(int r) {
        const int t = r % T, h = (r / T) % H, b = r / (T * H);
        d(b, h, t) = table(h, t);
      });
}

// dtable[h,t] = sum_b dd[b,h,t]
template <class Scalar, class Exec>
void disc_table_backward(const Exec& exec, const Tensor3<Scalar, Exec>& dd,
                         const Matrix<Scalar, Exec>& dtable) {
  const int B = dd.extent_int(0), H = dd.extent_int(1), T = dd.extent_int(2);
  detail::expect_extents("disc_table_backward", "dtable", dtable, {H, T});
  Kokkos::parallel_for(
      "ra::disc_table_backward", Kokkos::RangePolicy<Exec>(exec, 0, H * T), KOKKOS_LAMBDA(int r) {
        const int t = r % T, h = r / T;
        Scalar acc = 0;
        for (int b = 0; b < B; ++b) acc += dd(b, h, t);
        dtable(h, t) = acc;
      });
}

template <class Scalar, class Exec>
void disc_content_forward(const Exec& exec, const Tensor4<Scalar, Exec>& k,
                          const Matrix<Scalar, Exec>& u, const Tensor3<Scalar, Exec>& d) {
  const int B = k.extent_int(0), H = k.extent_int(1), T = k.extent_int(2), D = k.extent_int(3);
  detail::expect_extents("disc_content_forward", "u", u, {H, D});
  detail::expect_extents("disc_content_forward", "d", d, {B, H, T});
  Kokkos::parallel_for(
      "ra::disc_content_forward", Kokkos::RangePolicy<Exec>(exec, 0, B * H * T),
      KOKKOS_LAMBDA(int r) {
        const int t = r % T, h = (r / T) % H, b = r / (T * H);
        Scalar x = 0;
        for (int c = 0; c < D; ++c) x += k(b, h, t, c) * u(h, c);
        d(b, h, t) = Scalar(1) / (Scalar(1) + Kokkos::exp(-x));
      });
}

// dk[b,h,t,:] += dd * d(1-d) * u[h,:];   du[h,:] = sum_{b,t} dd * d(1-d) * K[b,h,t,:]
// (d is the forward's output, passed back in to avoid recomputing it).
template <class Scalar, class Exec>
void disc_content_backward(const Exec& exec, const Tensor4<Scalar, Exec>& k,
                           const Matrix<Scalar, Exec>& u, const Tensor3<Scalar, Exec>& d,
                           const Tensor3<Scalar, Exec>& dd, const Tensor4<Scalar, Exec>& dk,
                           const Matrix<Scalar, Exec>& du) {
  const int B = k.extent_int(0), H = k.extent_int(1), T = k.extent_int(2), D = k.extent_int(3);
  const char* fn = "disc_content_backward";
  detail::expect_extents(fn, "u", u, {H, D});
  detail::expect_extents(fn, "du", du, {H, D});
  detail::expect_extents(fn, "d", d, {B, H, T});
  detail::expect_extents(fn, "dd", dd, {B, H, T});
  detail::expect_extents(fn, "dk", dk, {B, H, T, D});
  Kokkos::parallel_for(
      "ra::disc_content_backward_dk", Kokkos::RangePolicy<Exec>(exec, 0, B * H * T * D),
      KOKKOS_LAMBDA(int r) {
        const int c = r % D, t = (r / D) % T, h = (r / (D * T)) % H, b = r / (D * T * H);
        const Scalar g = dd(b, h, t) * d(b, h, t) * (Scalar(1) - d(b, h, t));
        dk(b, h, t, c) += g * u(h, c);
      });
  Kokkos::parallel_for(
      "ra::disc_content_backward_du", Kokkos::RangePolicy<Exec>(exec, 0, H * D), KOKKOS_LAMBDA(int r) {
        const int c = r % D, h = r / D;
        Scalar acc = 0;
        for (int b = 0; b < B; ++b)
          for (int t = 0; t < T; ++t) {
            const Scalar dv = d(b, h, t);
            acc += dd(b, h, t) * dv * (Scalar(1) - dv) * k(b, h, t, c);
          }
        du(h, c) = acc;
      });
}

}  // namespace ra::kk
