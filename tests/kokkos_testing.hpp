// Helpers for tests that hold Kokkos kernels to the float64 reference:
// random problems, host<->device copies, poisoning, and error metrics.
#pragma once

#include <ra/kokkos/attention.hpp>
#include <ra/reference.hpp>

#include <Kokkos_Core.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace ra::testing {

// A problem drawn at random: inputs, the upstream gradient, and the float64
// reference answers for SDPA and RA.
struct Problem {
  Shape s;
  ref::RaOptions opt;
  std::vector<double> q, k, v, gates, d, dout;
  // reference results
  std::vector<double> o, lse, dq, dk, dv, dd, dgates;

  // round_to_bf16: the [B,H,T,D] inputs are rounded to bf16 before the
  // reference runs, so a bf16 kernel is judged on its own arithmetic, not on
  // the rounding of its inputs (which it cannot avoid).
  Problem(const Shape& shape, int gate_batch, int window, bool ra, std::uint64_t seed,
          bool round_to_bf16 = false)
      : s(shape) {
    opt.gate_batch = gate_batch;
    opt.window = window;
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    auto fill = [&](std::vector<double>& x, std::size_t n, double sd, double mean = 0) {
      x.resize(n);
      for (auto& e : x) e = mean + sd * n01(rng);
    };
    fill(q, s.qkv_elems(), 1.0);
    fill(k, s.qkv_elems(), 1.0);
    fill(v, s.qkv_elems(), 1.0);
    fill(dout, s.qkv_elems(), 1.0);
    fill(d, s.row_elems(), 1.0);
    if (round_to_bf16)
      for (auto* x : {&q, &k, &v, &dout})
        for (auto& e : *x) e = static_cast<double>(static_cast<float>(bf16(e)));
    gates.resize(std::size_t(gate_batch) * s.H * 3);
    for (std::size_t i = 0; i < gates.size(); ++i)  // around the seeds' 0.5 / 0.3 / 0.2
      gates[i] = (i % 3 == 0 ? 0.5 : i % 3 == 1 ? 0.3 : 0.2) + 0.1 * n01(rng);
    if (ra) {
      ref::ra_forward(s, opt, q, k, v, gates, d, o, lse);
      ref::ra_backward(s, opt, q, k, v, gates, d, dout, dq, dk, dv, dd, dgates);
    } else {
      ref::sdpa_forward(s, q, k, v, o, lse);
      ref::sdpa_backward(s, q, k, v, dout, dq, dk, dv);
    }
  }
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

// max |x - ref| / max(max |ref|, 1), NaN anywhere makes it NaN. Inputs are
// unit-variance, so 1 is the scale of a result that happens to be ~0 (at
// T = 1 dQ and dK are exactly 0 in float64 but rounding-sized in float).
inline double max_rel_error(const std::vector<double>& x, const std::vector<double>& ref) {
  if (x.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double e = std::abs(x[i] - ref[i]);
    if (std::isnan(e)) return std::numeric_limits<double>::quiet_NaN();
    err = std::max(err, e);
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / std::max(scale, 1.0);
}

// Stated tolerances (max_rel_error) of a kernel against the float64 reference.
// bf16: inputs rounded to 8 mantissa bits, products in fp32, P and dL rounded
// to bf16 before their second product (as every bf16 flash kernel does).
template <class Scalar>
constexpr double tolerance() {
  return std::is_same_v<Scalar, double> ? 1e-10 : std::is_same_v<Scalar, bf16> ? 2e-2 : 2e-4;
}

}  // namespace ra::testing
