// Tile shapes and team geometry of the fused kernels, chosen per execution
// space (and, for CUDA, per GPU architecture) in ONE table -- the
// FlashAttention "kernel traits" idea: the kernel template is shared, only
// the numbers here change from machine to machine.
//
// A plan is picked at run time: the largest square tile from `tiles` whose
// scratch footprint fits `scratch_budget` (further capped by what Kokkos
// reports as the level-0 maximum). If even the smallest tile does not fit
// (double precision, D = 128, backward), the kernel falls back to level-1
// scratch, which Kokkos backs with global memory: correct, but slow.
#pragma once

#include <Kokkos_Core.hpp>

#include <array>
#include <cstddef>

namespace ra::kk {

struct KernelTraits {
  std::array<int, 4> tiles;     // candidate br = bc, largest first
  std::size_t scratch_budget;   // bytes of level-0 team scratch a plan may use
  int team_size;                // 0: one team thread per tile row (team_size = br)
  int vector_length;            // lanes per team thread (columns of a tile row)
};

template <class Exec>
constexpr KernelTraits kernel_traits() {
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (std::is_same_v<Exec, Kokkos::Cuda>) {
    // Kokkos 4.6 never opts in to more than 48 KiB of shared memory per block
    // (docs: ../shared/docs/kokkos-cuda.md), so every CUDA arch is held to it.
    // A row of the tile per team thread, 8 lanes across its columns.
#if defined(KOKKOS_ARCH_HOPPER90)
    return {{64, 32, 16, 8}, 48 * 1024, 0, 8};
#elif defined(KOKKOS_ARCH_AMPERE86)
    return {{64, 32, 16, 8}, 48 * 1024, 0, 8};
#else
    return {{64, 32, 16, 8}, 48 * 1024, 0, 8};
#endif
  }
#endif
  // Host backends: one team per core, tiles sized to stay in L2.
  return {{64, 32, 16, 8}, 512 * 1024, 1, 1};
}

}  // namespace ra::kk
