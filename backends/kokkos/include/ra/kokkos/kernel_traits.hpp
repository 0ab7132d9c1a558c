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
    // Kokkos 4.6 as released never opts in to more than 48 KiB of shared
    // memory per block (docs: ../shared/docs/kokkos-cuda.md); the portable
    // kernels stay within it on every CUDA arch (an installed Kokkos may lack
    // this project's patch, and their tiles gain little from more).
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
// Tensor-core (bf16 mma.sync) kernels: one entry per (architecture, padded
// head dim, SDPA/RA, pass). The numbers are template arguments of the kernels
// (they size register arrays), so a change here recompiles them.
//   warps     warps per team (0: no tensor-core kernel; the portable path runs)
//   tile      the streamed tile: keys (forward, dQ kernel) or queries (dK/dV kernel)
//   m_tiles   16-row m-tiles per warp (forward): the team owns 16 * m_tiles * warps
//             rows; 2 halves the shared-memory traffic per mma and doubles the
//             accumulator registers
//   split_kv  forward load schedule: false = two stages of [K | V] (tile kt+1
//             loads while kt computes); true = one K and one V buffer, V(kt)
//             loading under QK^T(kt) and K(kt+1) under P V(kt) (FlashAttention-2's
//             schedule: half the shared memory, so twice the key tile fits)
//   min_blocks  teams per SM the compiler must leave registers for
//             (__launch_bounds__): 1 lets it take up to 255 registers per thread
//             (2 teams of 4 warps per SM), 3 caps it at 170, 4 at 128
//   rows_in_smem  the team's own rows (forward: Qf_i; backward: [Q_i, K_i] for dQ,
//             [K_j, Q_j] for dK/dV) stay in shared memory and each warp reads
//             its A fragments from there at every k-step, instead of holding
//             them in registers (W/4 registers per thread and m-tile: 32 for RA
//             at D = 64). More shared-memory reads per tile, but the registers
//             it frees buy a wider streamed tile, more m-tiles or one more team
//             per SM.
//   wgmma     (sm_90 only; forward, or a backward entry's q) the Hopper warpgroup
//             kernels of wgmma_cuda.cpp: the team is one warpgroup (4 warps, 64
//             query rows) and its tile products are wgmma.mma_async with the
//             own rows and the streamed tiles read by the tensor cores straight
//             from shared memory (no ldmatrix); m_tiles and rows_in_smem are unused. It needs the build's sm_90a
//             object (HOPPER90 builds) and a compute-capability-9.0 GPU; anywhere
//             else mma_forward_fallback's candidate runs instead.
//   overlap   (wgmma) the next tile's QK^T runs on the tensor cores during this
//             tile's P V (FlashAttention-3's intra-warpgroup overlap);
//             two stages of Kf and of V, so within 48 KiB SDPA takes 64-key and
//             RA 32-key tiles (wider with big_smem)
//   big_smem  (wgmma) the kernel may take more than 48 KiB of shared memory per
//             team, up to the sm_90 opt-in 227 KiB: tiles that 48 KiB cannot
//             hold (RA's 64-key dQ and 64-query dK/dV tiles, two stages of
//             128-key forward tiles). Kokkos 4.6 gives a block more than 48 KiB
//             only with this project's patch (cmake/kokkos-4.6.01-shmem-optin.patch);
//             where the Kokkos found lacks it, the 48 KiB entry the table had
//             before (wgmma_forward_fallback / wgmma_backward_fallback) runs.
//   window    (wgmma RA, big_smem) ra_window's kernels: the tiles that meet
//             the reciprocity band first, on the folded rows (forward:
//             split_kv's schedule; backward: 32-wide tiles, `tile`), then the
//             plain tiles in SDPA's stages (half the bytes of a folded one),
//             so they run at SDPA's tile and team count; correct for any
//             window, fast for narrow ones.
// Every other entry keeps the team's shared memory under the 48 KiB that
// Kokkos 4.6 gives a block (the kernels static_assert it): without
// rows_in_smem the own rows live in registers after one staging copy, and the
// staging buffer is reused for the streamed tiles.
enum class TcPass { forward, backward_q, backward_kv };

struct TensorCoreTraits {
  int warps = 0;
  int tile = 0;
  int m_tiles = 1;
  bool split_kv = false;
  int min_blocks = 1;
  bool rows_in_smem = false;
  bool wgmma = false;
  bool overlap = false;
  bool big_smem = false;
  bool window = false;
};

// Candidates at padded head dim 64 (the seeds' and GPT-2's D), compiled into
// every CUDA build so that `ra-bench --tc-candidates` can time them on the GPU
// at hand and the reference tests can check each one. The table below picks
// one of them per architecture. (v4 of docs/perf.md also tried 8-warp teams:
// always slower on the H100, dropped.)
// #8 and #9 keep the team's Qf rows in shared memory (rows_in_smem): two m-tiles
// per warp then cost no fragment registers, and each B fragment feeds two mma's.
// #10-#13 are the sm_90a warpgroup (wgmma) kernel at 1-4 teams per SM: SDPA
// with 64-key tiles in two stages or split K/V, or 128-key split tiles; RA
// with 64-key split tiles (its folded K tile is twice as wide: two stages of
// 64 keys would need 50 KiB).
// #14 and #15 run the next tile's QK^T and softmax beside this tile's P V
// (wgmma overlap, 3 and 4 teams per SM).
// #16-#18 take more than 48 KiB (big_smem): SDPA 128-key tiles in two stages
// (72 KiB; 3 and 2 teams per SM) and 192-key split tiles (56 KiB, 2 teams);
// RA 128-key split tiles (65 KiB; 2 and 3 teams) and 64-key tiles in two
// stages (66 KiB, 3 teams).
// #19 and #20 are the overlap kernel with wider tiles (big_smem): SDPA 128-key
// tiles at 2 and 3 teams per SM, RA 64-key tiles at 3 and 2.
// #21 is RA's window kernel (128-key tiles, 74 KiB, 3 teams per SM); SDPA's
// #21 repeats #16, whose plain-tile schedule it shares.
constexpr int kForwardCandidates = 22;
constexpr TensorCoreTraits forward_candidate(bool ra, int i) {
  constexpr TensorCoreTraits sdpa[kForwardCandidates] = {
      {4, 64, 1, false, 1}, {4, 64, 2, false, 1}, {4, 64, 2, true, 1},      {4, 128, 1, true, 1},
      {4, 64, 1, false, 4}, {4, 64, 2, true, 3},  {4, 64, 1, true, 4},      {4, 128, 1, true, 3},
      {4, 64, 2, true, 3, true}, {4, 64, 2, true, 2, true},
      {4, 64, 1, false, 3, false, true}, {4, 64, 1, false, 4, false, true},
      {4, 128, 1, true, 3, false, true}, {4, 64, 1, true, 4, false, true},
      {4, 64, 1, false, 3, false, true, true}, {4, 64, 1, false, 4, false, true, true},
      {4, 128, 1, false, 3, false, true, false, true}, {4, 128, 1, false, 2, false, true, false, true},
      {4, 192, 1, true, 2, false, true, false, true},
      {4, 128, 1, false, 2, false, true, true, true}, {4, 128, 1, false, 3, false, true, true, true},
      {4, 128, 1, false, 3, false, true, false, true}};
  constexpr TensorCoreTraits rec[kForwardCandidates] = {
      {4, 32, 1, false, 1}, {4, 32, 2, false, 1}, {4, 64, 1, true, 1},      {4, 64, 2, true, 1},
      {4, 64, 1, true, 4},  {4, 32, 2, false, 3}, {4, 32, 1, false, 4},     {4, 64, 2, true, 3},
      {4, 32, 2, true, 3, true}, {4, 32, 2, true, 2, true},
      {4, 64, 1, true, 3, false, true}, {4, 64, 1, true, 4, false, true},
      {4, 64, 1, true, 2, false, true}, {4, 64, 1, true, 1, false, true},
      {4, 32, 1, false, 3, false, true, true}, {4, 32, 1, false, 4, false, true, true},
      {4, 128, 1, true, 2, false, true, false, true}, {4, 128, 1, true, 3, false, true, false, true},
      {4, 64, 1, false, 3, false, true, false, true},
      {4, 64, 1, false, 3, false, true, true, true}, {4, 64, 1, false, 2, false, true, true, true},
      {4, 128, 1, false, 3, false, true, false, true, true}};
  return ra ? rec[i] : sdpa[i];
}
// The mma.sync candidate that runs where a wgmma entry cannot (no sm_90a
// object in the build, or a GPU other than compute capability 9.0): the
// table's choice before the wgmma kernel existed (docs/perf.md v19).
constexpr int mma_forward_fallback(bool ra) { return ra ? 3 : 1; }
// Backward candidates: the query-owned (dQ) and key-owned (dK, dV) kernels' entries.
struct BackwardTraits {
  TensorCoreTraits q, kv;
};
// #4 and #5 keep the own rows in shared memory (rows_in_smem): RA's dQ kernel
// then streams 32-key tiles under a 170-register cap (#4), or 16-key tiles
// under 128 with a 170-capped dK/dV kernel (#5). #6 and #7 stream 48-key tiles
// through RA's dQ kernel (its logits are one accumulator since the gates are
// folded into the own rows) under 255 and 170 registers; 64-key tiles would
// need 48.5 KiB of shared memory for the two pipeline stages alone.
// #8 and #9 keep #7's dQ kernel and put RA's dK/dV own rows in shared memory
// under 255 and 170 registers (SDPA: 64-row key tiles that way). #10 and #11
// give the dQ kernel one V buffer (split_kv), so that RA's own rows fit in
// shared memory beside 48-key tiles (#10), or 64-key tiles fit without (#11).
// #12 and #13 run the dQ kernel on the warpgroup (wgmma: sm_90a, as the forward
// #10-#15), the dK/dV kernel of the table's mma.sync entry; 3 and 4 teams per SM.
// #14 and #15 add the warpgroup dK/dV kernel (32-query tiles; 3 and 2 teams);
// #16: SDPA's with 64-query tiles (one dO buffer), RA's with #12's dQ kernel.
// #17-#19 take more than 48 KiB (big_smem): RA's dQ kernel with 64-key tiles
// (64.5 KiB; 2 teams per SM in #17 and #19, 3 in #18) and its dK/dV kernel
// with 64-query tiles and two dO stages (73 KiB; 2 and 3 teams; #19 keeps
// #14's 32-query one); SDPA's dK/dV kernel with two 64-query dO stages (50
// KiB; 3 and 2 teams) beside #16's dQ kernel, or beside a 3-team one (#19).
// #20-#22 pair RA's kernels otherwise (ptxas, CUDA 13, v22: its 64-key dQ
// kernel needs 168 registers without spills at 3 teams, its 64-query dK/dV
// kernel 228 at 2 and spills 592 bytes at 3): 64-key dQ at 3 teams with #14's 32-query dK/dV (#20)
// or the 64-query one at 2 (#22); #14's 32-key dQ with the 64-query dK/dV
// (#21). SDPA's #20-#22 repeat #17-#19.
// #23 is ra_window's pair (window): the band's tiles first, 32 keys (dQ) or 32
// queries (dK/dV) with RA's folded products, then the plain ones in SDPA's
// 64-wide tiles with the bias (and dd's column sums); 4 and 3 teams per SM, as
// SDPA's #17. SDPA's #23 repeats #17.
constexpr int kBackwardCandidates = 24;
constexpr BackwardTraits backward_candidate(bool ra, int i) {
  constexpr BackwardTraits sdpa[kBackwardCandidates] = {
      {{4, 64, 1, false, 1}, {4, 64, 1, false, 1}}, {{4, 32, 1, false, 3}, {4, 32, 1, false, 3}},
      {{4, 32, 1, false, 4}, {4, 32, 1, false, 3}}, {{4, 64, 1, false, 3}, {4, 32, 1, false, 1}},
      {{4, 64, 1, false, 4, true}, {4, 32, 1, false, 3}},
      {{4, 64, 1, false, 3, true}, {4, 32, 1, false, 3}},
      {{4, 48, 1, false, 3, true}, {4, 32, 1, false, 3}},
      {{4, 64, 1, false, 4, true}, {4, 64, 1, false, 2}},
      {{4, 64, 1, false, 3, true}, {4, 64, 1, false, 2, true}},
      {{4, 64, 1, false, 3, true}, {4, 64, 1, false, 3, true}},
      {{4, 64, 1, true, 3, true}, {4, 64, 1, false, 3, true}},
      {{4, 64, 1, true, 4, true}, {4, 64, 1, false, 3, true}},
      {{4, 64, 1, true, 3, false, true}, {4, 64, 1, false, 3, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 64, 1, false, 3, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 32, 1, false, 3, false, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 32, 1, false, 2, false, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 64, 1, false, 3, false, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 64, 1, false, 3, false, true, false, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 64, 1, false, 2, false, true, false, true}},
      {{4, 64, 1, true, 3, false, true}, {4, 64, 1, false, 3, false, true, false, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 64, 1, false, 3, false, true, false, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 64, 1, false, 2, false, true, false, true}},
      {{4, 64, 1, true, 3, false, true}, {4, 64, 1, false, 3, false, true, false, true}},
      {{4, 64, 1, true, 4, false, true}, {4, 64, 1, false, 3, false, true, false, true}}};
  constexpr BackwardTraits rec[kBackwardCandidates] = {
      {{4, 32, 1, false, 1}, {4, 32, 1, false, 1}}, {{4, 16, 1, false, 3}, {4, 16, 1, false, 3}},
      {{4, 32, 1, false, 3}, {4, 32, 1, false, 1}}, {{4, 16, 1, false, 3}, {4, 32, 1, false, 1}},
      {{4, 32, 1, false, 3, true}, {4, 32, 1, false, 1}},
      {{4, 16, 1, false, 4, true}, {4, 16, 1, false, 3, true}},
      {{4, 48, 1, false, 2}, {4, 32, 1, false, 1}},
      {{4, 48, 1, false, 3}, {4, 32, 1, false, 1}},
      {{4, 48, 1, false, 3}, {4, 32, 1, false, 2, true}},
      {{4, 48, 1, false, 3}, {4, 32, 1, false, 3, true}},
      {{4, 48, 1, true, 3, true}, {4, 32, 1, false, 3, true}},
      {{4, 64, 1, true, 2}, {4, 32, 1, false, 3, true}},
      {{4, 32, 1, true, 3, false, true}, {4, 32, 1, false, 3, true}},
      {{4, 32, 1, true, 4, false, true}, {4, 32, 1, false, 3, true}},
      {{4, 32, 1, true, 4, false, true}, {4, 32, 1, false, 3, false, true}},
      {{4, 32, 1, true, 4, false, true}, {4, 32, 1, false, 2, false, true}},
      {{4, 32, 1, true, 3, false, true}, {4, 32, 1, false, 3, false, true}},
      {{4, 64, 1, true, 2, false, true, false, true}, {4, 64, 1, false, 2, false, true, false, true}},
      {{4, 64, 1, true, 3, false, true, false, true}, {4, 64, 1, false, 3, false, true, false, true}},
      {{4, 64, 1, true, 2, false, true, false, true}, {4, 32, 1, false, 3, false, true}},
      {{4, 64, 1, true, 3, false, true, false, true}, {4, 32, 1, false, 3, false, true}},
      {{4, 32, 1, true, 4, false, true}, {4, 64, 1, false, 2, false, true, false, true}},
      {{4, 64, 1, true, 3, false, true, false, true}, {4, 64, 1, false, 2, false, true, false, true}},
      {{4, 32, 1, false, 4, false, true, false, true, true}, {4, 32, 1, false, 3, false, true, false, true, true}}};
  return ra ? rec[i] : sdpa[i];
}
// The mma.sync candidate that runs where a wgmma backward entry cannot (as
// mma_forward_fallback): the table's choice before the wgmma dQ kernel.
constexpr int mma_backward_fallback(bool ra) { return ra ? 10 : 9; }
// The 48 KiB wgmma candidates that run where a big_smem entry cannot (the
// Kokkos found lacks the shared-memory patch): the table's choices before.
constexpr int wgmma_forward_fallback(bool ra) { return ra ? 11 : 12; }
// ra_window's forward where the table has a window kernel (sm_90, padded head
// dim 64): its candidate index, which replaces RA's table entry for that
// variant; -1 elsewhere (RA's entry runs, band tiles and plain ones alike).
constexpr int window_forward_entry(int d_pad) {
#if defined(KOKKOS_ARCH_HOPPER90)
  return d_pad == 64 ? 21 : -1;
#else
  (void)d_pad;
  return -1;
#endif
}
constexpr int wgmma_backward_fallback(bool ra) { return ra ? 14 : 16; }
// ra_window's backward likewise: its window pair #23 where the table has it.
constexpr int window_backward_entry(int d_pad) {
#if defined(KOKKOS_ARCH_HOPPER90)
  return d_pad == 64 ? 23 : -1;
#else
  (void)d_pad;
  return -1;
#endif
}

constexpr TensorCoreTraits tensor_core_traits(int d_pad, bool ra, TcPass pass) {
  // Register budget per thread (255 max) is what limits the wide cases: the
  // team's own rows as mma fragments, the fp32 accumulators of its outputs
  // and two S-sized tiles. RA at D = 128 (W = 256) backward would need ~300
  // registers per thread in this layout: not built; the portable path runs.
  //
  // sm_90 (H100/H200): D = 64 entries are the winners of the candidate sweep
  // in docs/perf.md (v7/v19/v20 forward, v15/v19/v20 backward); the rest is sized by the same rules.
  // sm_86 (A10G: 100 KB shared memory and 64K registers per SM, ~600 GB/s):
  // NOT measured -- the same entries, which fit its limits (at most 2 teams
  // of <= 34 KiB per SM). Re-tune on an A10G: scripts/device-tune.sh with
  // RA_PRESET=cuda-a10g prints the winners as entries for this table.
  const bool fwd = pass == TcPass::forward, kv = pass == TcPass::backward_kv;
  if (d_pad == 32) return {4, 64, fwd ? 2 : 1, false};
  if (d_pad == 64) {
    // The H100 sweep's winners (scripts/device-tune.sh; docs/perf.md v20,
    // after the wgmma forward and the fast exp2; v21 for SDPA's big_smem entries):
    // least geometric-mean time over T = 1024 and 4096. HOPPER90 builds run
    // the sm_90a warpgroup forward (#16 SDPA: 128-key tiles in two stages,
    // 73 KiB, 3 teams per SM; #17 RA: 128-key split tiles, 66 KiB, 3 teams) and
    // backward (SDPA #17: dQ at 4 teams per SM, dK/dV with two 64-query dO
    // stages at 3, 50 KiB; RA #22: 64-key dQ at 3 teams, 64-query dK/dV with
    // two dO stages at 2, 74 KiB), other builds the mma.sync ones they replaced
    // there. All four need the Kokkos shared-memory patch; without it the
    // 48 KiB entries #12 / #11 and #16 / #14 run (wgmma_*_fallback above).
    // ra_window runs the window kernels instead of RA's entries: forward #21
    // (window_forward_entry below; docs/perf.md v23), backward #23 (v24).
#if defined(KOKKOS_ARCH_HOPPER90)
    if (fwd) return forward_candidate(ra, ra ? 17 : 16);
#else
    if (fwd) return forward_candidate(ra, mma_forward_fallback(ra));
#endif
#if defined(KOKKOS_ARCH_HOPPER90)
    const BackwardTraits bwd = backward_candidate(ra, ra ? 22 : 17);  // both wgmma kernels
#else
    const BackwardTraits bwd = backward_candidate(ra, mma_backward_fallback(ra));
#endif
    return kv ? bwd.kv : bwd.q;
  }
  if (d_pad == 128) {
    if (fwd) return {4, ra ? 16 : 32, 1, false};
    if (ra) return {0, 0, 1, false};
    return {4, kv ? 16 : 32, 1, false};
  }
  return {};
}

// The opt-in single-pass bf16 backward (Options::deterministic = false): ONE
// key-owned kernel of `warps` x 16 keys streaming `tile` queries, which also
// adds dQ into an fp32 workspace by atomics (FlashAttention-2's structure).
// Its own rows are always in shared memory (rows_in_smem: the dQ product's B
// operand) and a third tile, dL^T (16 warps x tile bf16), sits beside the two
// Q/dO stages, so the 48 KiB decide the tile: at D = 64 32 queries (SDPA 28.5
// KiB, RA 44.5), at D = 32 64 (SDPA 29, RA 41). D = 128 does not fit (SDPA
// with 32 queries needs 52.5 KiB): the deterministic kernels run, the reason
// in the plan. m_tiles and split_kv are unused. min_blocks from ptxas (CUDA 13,
// sm_90) registers / spill bytes (stores, loads) and shared bytes (+128 slack):
//   SDPA D = 32  tile 64  2 teams: 202 / 0, 0      29696
//   SDPA D = 64  tile 32  3 teams: 168 / 12, 16    29184
//   RA   D = 32  tile 64  2 teams: 254 / 0, 0      41984
//   RA   D = 64  tile 32  2 teams: 255 / 0, 0       45568
// (3 teams: SDPA D = 32 spills 56 / 100, RA D = 32 176 / 256, RA D = 64
// 272 / 328, counted with scalar atomics.) Not timed yet.
constexpr TensorCoreTraits fused_backward_traits(int d_pad, bool ra) {
  if (d_pad == 32) return {4, 64, 1, false, 2, true};
  if (d_pad == 64) return {4, 32, 1, false, ra ? 2 : 3, true};
  return {};
}

// ---------------------------------------------------------------------------
// The other CUDA kernels of float storage. Their geometry is one for every
// architecture so far -- 128 threads (4 warps), 64-row tiles -- and what the
// table decides per (padded head dim, SDPA/RA, pass) is below; the reasons are
// ptxas's (CUDA 13, sm_90) register counts, the lowest caps without spills.
//
// fp32 tiled (fp32_tiled_cuda.cpp, exact fp32 SIMT): teams per SM the register
// allocation must leave room for (LaunchBounds; 4 caps at 128 registers, 3 at
// 168, 2 at 255).
//   forward      4, D = 128: 2 (64 O accumulators). RA at D = 64 spills ~100 bytes
//                under 128 registers and still runs 4-7% faster than at 3 (v17)
//   backward_kv  dKf, dV and 32 logits live together: 3 (RA at D = 64 spills 188
//                bytes and runs 2-4% faster than at 2, v17), D = 128: 2
//   backward_q   dQf and 32 logits: 3 (RA at D = 64 spills 8 bytes at this cap and
//                still runs 4% faster than at 2: docs/perf.md v17), D = 128: 2
constexpr int fp32_tiled_min_blocks(int d_pad, bool ra, TcPass pass) {
  switch (pass) {
    case TcPass::forward: return d_pad == 128 ? 2 : 4;
    case TcPass::backward_kv: return d_pad == 128 ? 2 : 3;
    case TcPass::backward_q: return d_pad == 128 ? 2 : 3;
  }
  return 1;
}

// TF32 forward (tf32_cuda.cpp, mma.sync.m16n8k8): 4 warps of 16 query rows; the
// key tile is 64, or 32 where the folded rows are 128 floats wide (RA at D = 64,
// SDPA at D = 128) so the fp32 K and V tiles still fit 48 KiB; 3 teams per SM
// (168 registers: ptxas spills 16-32 bytes at D <= 64, and the forward still
// runs 3-8% faster than with the 204-230 registers of 2 teams, docs/perf.md
// v17), 2 at D = 128 (132 bytes of spills at 3).
constexpr TensorCoreTraits tf32_traits(int d_pad, bool ra) {
  const int w = ra ? 2 * d_pad : d_pad;
  return {4, w >= 128 ? 32 : 64, 1, true, d_pad == 128 ? 2 : 3};
}

// TF32 backward (tf32_cuda.cpp, mma.sync.m16n8k8): a query-owned (dQ) and a
// key-owned (dK/dV) kernel of 4 warps x 16 own rows (64: the gate-partial
// slot of fp32t::backward_partials). The own rows' first operand ([Q_i, K_i];
// gated [K_j, Q_j]) is held in registers as TF32 A fragments (W / 2 per
// thread, twice the bf16 kernel's), as are the fp32 accumulators (dQf W / 2;
// dKf W / 2 + dV D / 2); `tile` rows of the other side stream through two
// shared-memory stages. rows_in_smem here means the SECOND own operand (dO_i;
// V_j) stays staged in shared memory and is read by ldmatrix at every tile
// (D / 2 registers freed). D > 64 is not built: the dK/dV kernel's fragments
// and accumulators alone would be ~256 registers; the fp32 tiled backward
// runs there.
// ptxas (CUDA 13, sm_90, -Xptxas -v) registers / spill bytes, dQ | dK/dV:
//   SDPA D = 32  tile 64, fragments in registers          208 / 0  | 228 / 0
//   SDPA D = 64  tile 16, rows_in_smem                    188 / 0  | 232 / 0
//   RA   D = 32  tile 32, in registers                    218 / 0  | 250 / 0
//   RA   D = 64  tile 16, rows_in_smem                    248 / 0  | 255 / 32 st, 52 ld
// (without rows_in_smem at D = 64 and tile 32 / 16: SDPA 254 / 16 | 255 / 44,
// RA 255 / 24 | 255 / 76; a 32-row SDPA tile with rows_in_smem needs 48.5 KiB.)
// All need more than 168 registers, so min_blocks 2 (255): two teams per SM.
// Not timed yet (docs/perf.md v19).
constexpr TensorCoreTraits tf32_backward_traits(int d_pad, bool ra, TcPass pass) {
  if (d_pad > 64 || pass == TcPass::forward) return {};
  if (d_pad == 64) return {4, 16, 1, false, 2, true};
  return {4, ra ? 32 : 64, 1, false, 2};
}

}  // namespace ra::kk
