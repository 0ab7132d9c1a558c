// Tensor conventions shared by every Kokkos kernel, the benchmarks and the
// model.
//
// * Activations are rank-4 Views [B, H, T, D] in LayoutRight (row-major: D is
//   contiguous, then T, then H, then B) -- the layout PyTorch hands SDPA, so
//   comparisons and future interop need no transposes.
// * Per-row and per-key quantities (lse, Delta, discoverability d) are
//   [B, H, T]; RA gates are [Gb, H, 3] = (w_std, w_rec, w_disc) with Gb = 1
//   (one set per head, shared by the batch) or Gb = B (per batch and head).
// * Precision policy: a tensor's element type is its *storage* type: float,
//   double or bf16 (Kokkos' bhalf_t). Kernels compute and accumulate in
//   accum_t<Storage> (float for bf16), and the small per-row / per-head
//   tensors (lse, d, gates and their gradients) are stored in accum_t too,
//   so softmax statistics and gate gradients never round to bf16.
#pragma once

#include <Kokkos_Core.hpp>

#include <string>

namespace ra {

template <class Scalar, class Space>
using Tensor4 = Kokkos::View<Scalar****, Kokkos::LayoutRight, typename Space::memory_space>;
template <class Scalar, class Space>
using Tensor3 = Kokkos::View<Scalar***, Kokkos::LayoutRight, typename Space::memory_space>;

// bfloat16 storage (8-bit mantissa, float's exponent range). Kokkos has a
// real bf16 type only where a backend provides one (in Kokkos 4.6: CUDA and
// SYCL builds, on every execution space of the build); elsewhere bhalf_t is
// float, RA_HAVE_BF16 is undefined, and nothing is instantiated for it.
using bf16 = Kokkos::Experimental::bhalf_t;
#if defined(KOKKOS_ENABLE_CUDA) || defined(KOKKOS_ENABLE_SYCL)
#define RA_HAVE_BF16 1
#endif
static_assert(
#if defined(RA_HAVE_BF16)
    !
#endif
    std::is_same_v<bf16, float>,
    "RA_HAVE_BF16 must say whether Kokkos' bhalf_t is a type of its own");

template <class Storage>
struct Accum {
  using type = Storage;
};
#if defined(RA_HAVE_BF16)
template <>
struct Accum<bf16> {
  using type = float;
};
#endif
// The type a kernel computes and accumulates in for a given storage type.
template <class Storage>
using accum_t = typename Accum<Storage>::type;

template <class Scalar>
constexpr const char* precision_name() {
  static_assert(std::is_same_v<Scalar, float> || std::is_same_v<Scalar, double> ||
                    std::is_same_v<Scalar, bf16>,
                "ra-kokkos kernels support float, double and bf16 storage");
  return std::is_same_v<Scalar, float> ? "float32"
         : std::is_same_v<Scalar, bf16> ? "bfloat16"
                                        : "float64";
}

// Gate slots in the last dimension of a gates tensor.
enum Gate : int { kStd = 0, kRec = 1, kDisc = 2 };

}  // namespace ra
