// Helpers for the GPT-2 model tests: random host data, Kokkos views from it,
// and a small config every model test shares.
#pragma once

#include "kokkos_testing.hpp"

#include <ra/model/config.hpp>

#include <limits>
#include <random>
#include <vector>

namespace ra::testing {

using Exec = Kokkos::DefaultExecutionSpace;

inline std::vector<double> randn(std::size_t n, std::uint64_t seed, double sd = 1.0, double mean = 0.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> dist(mean, sd);
  std::vector<double> x(n);
  for (auto& e : x) e = dist(rng);
  return x;
}

inline std::vector<int> random_tokens(std::size_t n, int V, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int> dist(0, V - 1);
  std::vector<int> x(n);
  for (auto& e : x) e = dist(rng);
  return x;
}

// A device view of the given extents holding host values.
template <class View, class... Extents>
View make_view(const std::vector<double>& values, Extents... extents) {
  View v("test_view", extents...);
  upload(values, v);
  return v;
}

// A view every element of which is NaN: what a kernel must overwrite.
template <class View>
void fill_nan(const View& v) {
  Kokkos::deep_copy(v, std::numeric_limits<typename View::non_const_value_type>::quiet_NaN());
}

template <class IVec>
IVec make_ivec(const std::vector<int>& values) {
  IVec v("test_ivec", values.size());
  auto h = Kokkos::create_mirror_view(v);
  for (std::size_t i = 0; i < values.size(); ++i) h(i) = values[i];
  Kokkos::deep_copy(v, h);
  return v;
}

template <class Scalar>
constexpr double model_tolerance() {
  return std::is_same_v<Scalar, double> ? 1e-9 : 1e-4;
}

// L=2, H=2, C=32 (D=16), T_max=16, V=64 (Vp=128): every model test's size.
inline model::GPTConfig small_config(const std::string& variant) {
  model::GPTConfig c;
  c.name = "test-small";
  c.L = 2, c.H = 2, c.C = 32, c.T_max = 16, c.V = 64;
  c.attn.variant = variant;
  if (variant == "ra_window") c.attn.window = 3;
  return c;
}

}  // namespace ra::testing
