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

namespace ra::kk {

// ---------------------------------------------------------------------------
// Tensor-core (bf16 mma.sync) kernels: one row of this table per
// (architecture, padded head dim, SDPA/RA, pass). `warps` sets the tile the
// team owns (16 rows per warp: queries in the forward and dQ kernels, keys in
// the dK/dV kernel); `tile` is the streamed tile (keys, resp. queries). Every
// entry keeps the team's shared memory under the 48 KiB that Kokkos 4.6 can
// give a block: the team's own rows live in registers after one staging copy,
// and the staging buffer is reused for the two-stage cp.async pipeline.
// These numbers are template arguments of the kernels (they size register
// arrays), so a change here recompiles them.
enum class TcPass { forward, backward_q, backward_kv };

struct TensorCoreTraits {
  int warps;  // 0: no tensor-core kernel for this entry (the portable path runs)
  int tile;
};

constexpr TensorCoreTraits tensor_core_traits(int d_pad, bool ra, TcPass pass) {
  // Register budget per thread (255 max) is what limits the wide cases: the
  // team's own rows as mma fragments, the fp32 accumulators of its outputs
  // and two S-sized tiles. RA at D = 128 (W = 256) backward would need ~300
  // registers per thread in this layout: not built; the portable path runs.
  //
  // sm_90 (H100/H200): measured on an H200 (docs/perf.md, v2).
  // sm_86 (A10G, 100 KB shared memory and 64K registers per SM, ~600 GB/s):
  // NOT measured here -- the same entries, which fit its limits (2 teams of
  // <= 34 KiB per SM). Re-tune on an A10G with ra-bench --tc-warps.
  const bool fwd = pass == TcPass::forward, kv = pass == TcPass::backward_kv;
  if (d_pad == 32) return {4, 64};
  if (d_pad == 64) {
    if (fwd || pass == TcPass::backward_q) return {4, ra ? 32 : 64};
    return {4, ra ? 32 : 64};
  }
  if (d_pad == 128) {
    if (fwd) return {4, ra ? 16 : 32};
    if (ra) return {0, 0};
    return {4, kv ? 16 : 32};
  }
  return {0, 0};
}

}  // namespace ra::kk
