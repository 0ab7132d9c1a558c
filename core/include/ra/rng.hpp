// Deterministic random numbers: element i of a tensor filled with seed s is
// a pure function of (s, i) -- a counter-based generator (splitmix64 +
// Box-Muller), so every backend, thread count and tile size draws the same
// inputs for the same seed: bit for bit on host backends, to the last bit of
// the device's log/cos on a GPU.
#pragma once

#include <Kokkos_Core.hpp>

#include <cstdint>

namespace ra {

KOKKOS_INLINE_FUNCTION std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

// Standard normal number for (seed, index).
KOKKOS_INLINE_FUNCTION double normal_at(std::uint64_t seed, std::uint64_t index) {
  const std::uint64_t a = splitmix64(seed ^ splitmix64(2 * index));
  const std::uint64_t b = splitmix64(seed ^ splitmix64(2 * index + 1));
  const double u1 = (double(a >> 11) + 0.5) * (1.0 / 9007199254740992.0);  // (0, 1)
  const double u2 = double(b >> 11) * (1.0 / 9007199254740992.0);
  return Kokkos::sqrt(-2.0 * Kokkos::log(u1)) * Kokkos::cos(6.283185307179586 * u2);
}

// view[i] = mean + stddev * N(0,1)(seed, i), i the flat LayoutRight index.
template <class Exec, class View>
void fill_normal(const Exec& exec, const View& view, std::uint64_t seed, double stddev = 1.0,
                 double mean = 0.0) {
  static_assert(View::rank() >= 1);
  using T = typename View::non_const_value_type;
  T* data = view.data();
  Kokkos::parallel_for(
      "ra::fill_normal", Kokkos::RangePolicy<Exec>(exec, 0, view.span()),
      KOKKOS_LAMBDA(std::size_t i) { data[i] = T(mean + stddev * normal_at(seed, i)); });
}

}  // namespace ra
