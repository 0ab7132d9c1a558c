// Helpers for tests that hold Kokkos kernels to the float64 reference:
// random problems, host<->device copies, poisoning, and error metrics.
#pragma once

#include <ra/kokkos/attention.hpp>
#include <ra/reference.hpp>

#include "reference_problem.hpp"

#include <Kokkos_Core.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace ra::testing {

// The shared random problem (reference_problem.hpp); round_to_bf16 rounds
// the [B,H,T,D] inputs to bf16 first, for the bf16 kernels.
struct Problem : ReferenceProblem {
  Problem(const Shape& shape, int gate_batch, int window, bool ra, std::uint64_t seed,
          bool round_to_bf16 = false)
      : ReferenceProblem(shape, gate_batch, window, ra, seed, round_to_bf16 ? &round_bf16 : nullptr) {}
  static double round_bf16(double x) { return static_cast<double>(static_cast<float>(bf16(x))); }
};

template <class View>
void upload(const std::vector<double>& src, const View& dst) {
  auto h = Kokkos::create_mirror_view(dst);
  using T = typename View::non_const_value_type;
  auto* p = h.data();
  for (std::size_t i = 0; i < h.size(); ++i) p[i] = static_cast<T>(src.at(i));
  Kokkos::deep_copy(dst, h);
}

template <class View>
std::vector<double> download(const View& src) {
  auto h = Kokkos::create_mirror_view_and_copy(Kokkos::HostSpace(), src);
  std::vector<double> out(h.size());
  for (std::size_t i = 0; i < h.size(); ++i) out[i] = static_cast<double>(h.data()[i]);
  return out;
}

// Every output is set to NaN before a kernel runs, so an element the kernel
// forgets to write fails the comparison instead of passing as a stale value.
template <class Tensors>
void poison(const Tensors& t) {
  using S4 = typename decltype(t.o)::non_const_value_type;  // storage (bf16 has no numeric_limits)
  using S3 = typename decltype(t.lse)::non_const_value_type;
  const S4 nan4 = S4(std::numeric_limits<float>::quiet_NaN());
  const S3 nan3 = std::numeric_limits<S3>::quiet_NaN();
  Kokkos::deep_copy(t.o, nan4), Kokkos::deep_copy(t.dq, nan4), Kokkos::deep_copy(t.dk, nan4);
  Kokkos::deep_copy(t.dv, nan4), Kokkos::deep_copy(t.lse, nan3), Kokkos::deep_copy(t.dd, nan3);
  Kokkos::deep_copy(t.dgates, nan3);
}

template <class Scalar, class Exec>
kk::AttentionTensors<Scalar, Exec> make_tensors(const Problem& p) {
  auto t = kk::AttentionTensors<Scalar, Exec>::allocate(p.s, p.opt.gate_batch);
  upload(p.q, t.q), upload(p.k, t.k), upload(p.v, t.v), upload(p.dout, t.dout);
  upload(p.gates, t.gates), upload(p.d, t.d);
  poison(t);
  return t;
}

// Stated tolerances (max_rel_error) of a kernel against the float64 reference.
// bf16: inputs rounded to 8 mantissa bits, products in fp32, P and dL rounded
// to bf16 before their second product (as every bf16 flash kernel does).
template <class Scalar>
constexpr double tolerance() {
  return std::is_same_v<Scalar, double> ? 1e-10 : std::is_same_v<Scalar, bf16> ? 2e-2 : 2e-4;
}

}  // namespace ra::testing
