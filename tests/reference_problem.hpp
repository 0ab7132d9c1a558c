// Backend-independent test helpers (no Kokkos, no Vulkan): a random
// attention problem with its float64 reference answers, and the project's
// error metric. tests/kokkos_testing.hpp and tests/test_vulkan.cpp build on it.
#pragma once

#include <ra/reference.hpp>
#include <ra/shape.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

namespace ra::testing {

// A problem drawn at random: inputs, the upstream gradient, and the float64
// reference answers for SDPA and RA.
struct ReferenceProblem {
  Shape s;
  ref::RaOptions opt;
  std::vector<double> q, k, v, gates, d, dout;
  // reference results
  std::vector<double> o, lse, dq, dk, dv, dd, dgates;

  // round (optional): applied to the [B,H,T,D] inputs before the reference
  // runs, so a low-precision kernel is judged on its own arithmetic, not on
  // the rounding of its inputs (which it cannot avoid).
  ReferenceProblem(const Shape& shape, int gate_batch, int window, bool ra, std::uint64_t seed,
                   double (*round)(double) = nullptr)
      : s(shape) {
    opt.gate_batch = gate_batch;
    opt.window = window;
    std::mt19937_64 rng(seed);
    std::normal_distribution<double> n01(0.0, 1.0);
    auto fill = [&](std::vector<double>& x, std::size_t n) {
      x.resize(n);
      for (auto& e : x) e = n01(rng);
    };
    fill(q, s.qkv_elems()), fill(k, s.qkv_elems()), fill(v, s.qkv_elems());
    fill(dout, s.qkv_elems()), fill(d, s.row_elems());
    if (round)
      for (auto* x : {&q, &k, &v, &dout})
        for (auto& e : *x) e = round(e);
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

// max |x - ref| / max(max |ref|, 1); NaN anywhere in x makes it NaN, and a
// size mismatch infinity.
template <class T>
double max_rel_error(const std::vector<T>& x, const std::vector<double>& ref) {
  if (x.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double err = 0, scale = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double e = std::abs(double(x[i]) - ref[i]);
    if (std::isnan(e)) return std::numeric_limits<double>::quiet_NaN();
    err = std::max(err, e);
    scale = std::max(scale, std::abs(ref[i]));
  }
  return err / std::max(scale, 1.0);
}

}  // namespace ra::testing
