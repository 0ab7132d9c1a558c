// Tensor conventions shared by every Kokkos kernel, the benchmarks and the
// model.
//
// * Activations are rank-4 Views [B, H, T, D] in LayoutRight (row-major: D is
//   contiguous, then T, then H, then B) -- the layout PyTorch hands SDPA, so
//   comparisons and future interop need no transposes.
// * Per-row and per-key quantities (lse, Delta, discoverability d) are
//   [B, H, T]; RA gates are [Gb, H, 3] = (w_std, w_rec, w_disc) with Gb = 1
//   (one set per head, shared by the batch) or Gb = B (per batch and head).
// * Precision policy: a kernel computes, accumulates and stores in its Scalar
//   (float or double). bf16 storage with float accumulation arrives with the
//   tuned GPU kernels.
#pragma once

#include <Kokkos_Core.hpp>

#include <string>

namespace ra {

template <class Scalar, class Space>
using Tensor4 = Kokkos::View<Scalar****, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Scalar, class Space>
using Tensor3 = Kokkos::View<Scalar***, Kokkos::LayoutRight, typename Space::memory_space>;

template <class Scalar>
constexpr const char* precision_name() {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double>,
                "ra-kokkos kernels support float and double");
  return std::is_same_v<Scalar, float> ? "float32" : "float64";
}

// Gate slots in the last dimension of a gates tensor.
enum Gate : int { kStd = 0, kRec = 1, kDisc = 2 };

}  // namespace ra
