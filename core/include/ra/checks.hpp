// Sanity checks on device data: a kernel whose output holds NaN or Inf must
// be reported, never timed or saved as if it had worked.
#pragma once

#include <Kokkos_Core.hpp>
#include <ra/tensor.hpp>

#include <cstddef>

namespace ra {

// Number of NaN/Inf elements of a contiguous View, on its execution space.
template <class Exec, class View>
std::size_t count_nonfinite(const Exec& exec, const View& view) {
  using T = typename View::non_const_value_type;
  const T* data = view.data();
  std::size_t bad = 0;
  Kokkos::parallel_reduce(
      "ra::count_nonfinite", Kokkos::RangePolicy<Exec>(exec, 0, view.span()),
      KOKKOS_LAMBDA(std::size_t i, std::size_t & n) { n += Kokkos::isfinite(static_cast<accum_t<T>>(data[i])) ? 0 : 1; },
      bad);
  return bad;
}

}  // namespace ra
