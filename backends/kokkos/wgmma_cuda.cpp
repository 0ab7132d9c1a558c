// The Hopper (sm_90a) forward: the bf16 tensor-core forward of
// tensor_core_cuda.cpp -- same folded RA form, same online softmax, same band
// logic and output -- with its two tile products issued as warpgroup MMAs
// (wgmma.mma_async, PTX ISA 8.0) instead of per-warp mma.sync:
//
//   S  = Qf_i Kf_j^T   A = the team's gated Qf rows, B = the Kf tile: both
//                      read by the tensor cores straight from shared memory
//                      through matrix descriptors
//   O += P V           A = P, the S accumulators re-packed to bf16 in
//                      registers (the wgmma accumulator layout is the mma.sync
//                      C layout, warp w holding rows 16 w .. 16 w + 15);
//                      B = the V tile from shared memory, transposed by the
//                      descriptor (V is stored key-major, as loaded)
//
// so the streamed tiles cost no ldmatrix and no register traffic, and each
// instruction is 64 x 64 x 16 for the whole team. A team is one warpgroup
// (4 warps, 64 query rows); 2-4 teams per SM overlap one team's softmax with
// another's products.
//
// Shared-memory layout of the wgmma operands (Atoms below): the 128-byte
// swizzle of the descriptors -- rows of 64 bf16 (128 bytes), 16-byte chunk c of
// row r at chunk c ^ (r % 8), tiles 1024-byte aligned -- which is exactly
// Swizzled<64> of the mma.sync kernels; RA's 128-wide Kf tile is two such
// 64-column blocks one after the other. A k-step (16 columns) of a K-major
// operand starts 32 bytes further into the rows; the 8-row groups are 1024
// bytes apart.
//
// wgmma needs sm_90a (arch-specific: it runs on compute capability 9.0 only),
// which Kokkos 4.6's HOPPER90 does not compile. This file is therefore its own
// CMake object library with CUDA_ARCHITECTURES 90a in HOPPER90 builds
// (RA_WGMMA_SM90A = 1); the rest of the library stays sm_90. Other builds
// compile only the host stubs at the end, and tc::forward runs the mma.sync
// fallback wherever wgmma_available() is false.
#include <ra/kokkos/detail/tensor_core.hpp>
#include <ra/kokkos/kernel_traits.hpp>

#include "wgmma.hpp"

#if RA_WGMMA_SM90A
#include "tensor_core_primitives.hpp"
#endif

#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

namespace ra::kk::detail::tc {
namespace {
// The kernels are compiled at padded head dim 64 (D in 33..64) only.
[[maybe_unused]] bool pad_dim_is_64(int D) { return D > 32 && D <= 64; }
}  // namespace

#if RA_WGMMA_SM90A
namespace {

// ------------------------------------------------------------------ wgmma primitives
// Device code below is compiled for sm_90a only (CMake: CUDA_ARCHITECTURES 90a);
// __CUDA_ARCH_FEAT_SM90_ALL is its macro. The host pass sees none of the asm.
#if defined(__CUDA_ARCH__) && !defined(__CUDA_ARCH_FEAT_SM90_ALL)
#error "wgmma_cuda.cpp with RA_WGMMA_SM90A must be compiled for sm_90a only"
#endif
#if defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define RA_WGMMA_DEVICE 1
#else
#define RA_WGMMA_DEVICE 0
#endif

__device__ __forceinline__ void wg_fence() {
#if RA_WGMMA_DEVICE
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_commit() {
#if RA_WGMMA_DEVICE
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// All but the newest committed group done (the older ones, in commit order).
__device__ __forceinline__ void wg_wait_one_pending() {
#if RA_WGMMA_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
#endif
}
__device__ __forceinline__ void wg_wait_all() {
#if RA_WGMMA_DEVICE
  asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
#endif
}
// cp.async fills shared memory through the generic proxy; wgmma reads it
// through the async proxy. Each thread fences its own completed copies before
// the barrier that publishes the tile.
__device__ __forceinline__ void fence_async_smem() {
#if RA_WGMMA_DEVICE
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Every thread's copies have landed (all but the newest PENDING commit groups),
// are visible to the tensor cores, and every warp is past its previous use of
// the buffers about to be refilled.
template <int PENDING>
__device__ __forceinline__ void publish() {
  cp_wait<PENDING>();
  fence_async_smem();
  __syncthreads();
}
// The compiler sees a wgmma's registers as read and written when it is
// issued, but the tensor cores use them until wgmma.wait_group: these empty
// asm statements (volatile, so ordered with the wgmma ones) keep every read or
// write of the registers on the right side of the fence / wait.
//
// Register A operands are used once (P, fresh for every tile). A first version
// also held the Qf rows as register A fragments across the key loop: ptxas
// (CUDA 13.0) then gave those registers to the softmax and to P inside the
// loop -- pinning them as above did not stop it -- so every key tile after the
// first was multiplied with stale values (H100 SASS: the HGMMA's A operand
// register rewritten by an FFMA in the loop body). Qf is therefore read from
// shared memory by descriptor, as FlashAttention-3 does.
template <int N>
__device__ __forceinline__ void pin(float (&x)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+f"(x[n][e])::"memory");
}
template <int N>
__device__ __forceinline__ void pin(u32 (&x)[N][4]) {
#pragma unroll
  for (int n = 0; n < N; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) asm volatile("" : "+r"(x[n][e])::"memory");
}

// A K-major (or, transposed, MN-major) wgmma operand tile of ROWS rows: column
// block chunk / 8 (64 bf16 wide) of every row, then the next block; 128-byte
// swizzle inside each block. For 64 columns this is Swizzled<64>.
template <int ROWS>
struct Atoms {
  // offset(r + kPeriodRows, c) == offset(r, c) + kPeriodRows * kRowBytes
  static constexpr int kRowBytes = 128, kPeriodRows = 8;
  __device__ static u32 offset(int row, int chunk) {
    return u32((chunk >> 3) * ROWS * 128 + row * 128 + (((chunk & 7) ^ (row & 7)) << 4));
  }
};

// RA's gates folded into a team's own 128-wide rows staged as Atoms<ROWS> at
// tile, once the caller's cp_wait has this thread's copies in (the barrier here
// waits for everyone's): column block 0 (the Q half of [Q_i, K_i]) times lo,
// block 1 times hi. Generic stores: the caller fences them for the tensor cores.
template <int ROWS>
__device__ __forceinline__ void gate_own_rows(char* tile, float lo, float hi, int tid) {
  __syncthreads();
  for (int idx = tid; idx < ROWS * 16; idx += 128) {
    uint4* chunk = reinterpret_cast<uint4*>(tile + 16 * idx);
    const float f = idx < ROWS * 8 ? lo : hi;
    uint4 v = *chunk;
    v.x = scale_bf16x2(v.x, f), v.y = scale_bf16x2(v.y, f);
    v.z = scale_bf16x2(v.z, f), v.w = scale_bf16x2(v.w, f);
    *chunk = v;
  }
}

// The team's scratch moved up to a 1024-byte boundary, the period of the
// 128-byte swizzle that the descriptors assume (kScratch keeps 896 bytes of
// room for it beyond aligned_scratch's 128-byte alignment).
__device__ __forceinline__ char* scratch_1024(const Member& team, std::size_t bytes) {
  char* p = aligned_scratch(team, bytes);
  return p + ((1024 - (smem_u32(p) & 1023)) & 1023);
}

// Matrix descriptor of a 128-byte-swizzled operand starting at shared address
// addr (PTX ISA, "matrix descriptor" of wgmma): bits 0-13 the address >> 4,
// 16-29 the leading and 32-45 the stride byte offset (>> 4), 62-63 the
// swizzle mode (1: 128 bytes). The stride between 8-row groups is 1024 bytes in
// both uses (Kf: 8 key rows; V transposed: 8 keys along k). Which field holds
// it depends on the operand's major-ness; the other is unused for operands one
// swizzle atom (64 columns) wide, so both are set to 1024.
__device__ __forceinline__ unsigned long long sw128_desc(u32 addr) {
  return (static_cast<unsigned long long>((addr & 0x3FFFFu) >> 4)) |
         (static_cast<unsigned long long>(1024 >> 4) << 16) |
         (static_cast<unsigned long long>(1024 >> 4) << 32) | (1ull << 62);
}

// The descriptor of the operand `off` bytes (a multiple of 16) further on:
// the address field is linear and stays below its 18-bit limit in shared
// memory, so one descriptor per tile plus immediates replaces the four
// uniform instructions sw128_desc costs at every k-step.
__device__ __forceinline__ unsigned long long desc_plus(unsigned long long d, u32 off) {
  return d + (off >> 4);
}

// The 32 fp32 accumulators of a 64 x 64 wgmma, as asm operands %0..%31.
#define RA_WGMMA_ACC_REGS                                                                     \
  "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, "  \
  "%19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31}, "
#define RA_WGMMA_ACC4(d, n) "+f"(d[n][0]), "+f"(d[n][1]), "+f"(d[n][2]), "+f"(d[n][3])
#define RA_WGMMA_ACC(d)                                                                      \
  RA_WGMMA_ACC4(d, 0), RA_WGMMA_ACC4(d, 1), RA_WGMMA_ACC4(d, 2), RA_WGMMA_ACC4(d, 3),       \
      RA_WGMMA_ACC4(d, 4), RA_WGMMA_ACC4(d, 5), RA_WGMMA_ACC4(d, 6), RA_WGMMA_ACC4(d, 7)

// d[64 x 64] (+)= a[64 x 16] . b[16 x 64] for the warpgroup: a from registers
// (this warp's 16 rows, mma.sync A layout), b by descriptor; TRANS_B = 0 reads
// b as N rows of K (K-major, like Kf), 1 as K rows of N (like V). fp32
// accumulators in the mma.sync C layout, d[n] the 8-column block n.
template <int TRANS_B>
__device__ __forceinline__ void wgmma_64x64x16(float (&d)[8][4], const u32 (&a)[4],
                                               unsigned long long b) {
#if RA_WGMMA_DEVICE
  asm volatile(
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      RA_WGMMA_ACC_REGS
      "{%32, %33, %34, %35}, %36, 1, 1, 1, %37;\n"
      : RA_WGMMA_ACC(d)
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(b), "n"(TRANS_B));
#endif
}
// d[64 x 64] (+)= a[64 x 16] . b[16 x 64] with both operands read from shared
// memory by descriptor, both K-major (a: 64 rows of K, like the Qf tile; b: N
// rows of K, like Kf). acc = 0: d = a . b, whatever d held (wgmma's scale-d),
// so a product chain needs no zeroed accumulators.
__device__ __forceinline__ void wgmma_64x64x16_ss(float (&d)[8][4], unsigned long long a,
                                                  unsigned long long b, int acc) {
#if RA_WGMMA_DEVICE
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %34, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n64k16.f32.bf16.bf16 "
      RA_WGMMA_ACC_REGS
      "%32, %33, p, 1, 1, 0, 0;\n}\n"
      : RA_WGMMA_ACC(d)
      : "l"(a), "l"(b), "r"(acc));
#endif
}
// The same product 64 x 32 (16 accumulators): the S tile of 32-key tiles.
__device__ __forceinline__ void wgmma_64x32x16_ss(float (&d)[4][4], unsigned long long a,
                                                  unsigned long long b, int acc) {
#if RA_WGMMA_DEVICE
  asm volatile(
      "{\n.reg .pred p;\nsetp.ne.b32 p, %18, 0;\n"
      "wgmma.mma_async.sync.aligned.m64n32k16.f32.bf16.bf16 "
      "{%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15}, "
      "%16, %17, p, 1, 1, 0, 0;\n}\n"
      : RA_WGMMA_ACC4(d, 0), RA_WGMMA_ACC4(d, 1), RA_WGMMA_ACC4(d, 2), RA_WGMMA_ACC4(d, 3)
      : "l"(a), "l"(b), "r"(acc));
#endif
}
// The 64-column block h of an accumulator tile of N columns.
template <int N>
__device__ __forceinline__ float (&block64(float (&x)[N / 8][4], int h))[8][4] {
  return *reinterpret_cast<float(*)[8][4]>(&x[8 * h]);
}

// k-steps K0..K1-1 of S[64 x BC] += Qf . Kf^T, Qf the team's 64 rows (Atoms<64>
// at q), Kf a BC-key tile (Atoms<BC> at kf); issued, not waited for. fresh:
// the first k-step overwrites S instead (S = the product; no zeroing).
template <int K0, int K1, int BC>
__device__ __forceinline__ void issue_qk(float (&s)[BC / 8][4], u32 q, u32 kf, bool fresh = false) {
  const unsigned long long q0 = sw128_desc(q), k0 = sw128_desc(kf);
#pragma unroll
  for (int kk = K0; kk < K1; ++kk) {
    const unsigned long long qd = desc_plus(q0, (kk / 4) * 64 * 128 + (kk % 4) * 32);
    const u32 k = (kk / 4) * BC * 128 + (kk % 4) * 32;
    const int acc = !(fresh && kk == K0);
    if constexpr (BC == 32) {
      wgmma_64x32x16_ss(s, qd, desc_plus(k0, k), acc);
    } else {
#pragma unroll
      for (int hb = 0; hb < BC / 64; ++hb)
        wgmma_64x64x16_ss(block64<BC>(s, hb), qd, desc_plus(k0, k + hb * 64 * 128), acc);
    }
  }
}

// The forward's S = Qf Kf^T of one tile into s, issued (committed, not waited
// for): for RA the band half (k-steps D/16..W/16) where the tile meets the
// band -- on a mixed tile waited for and masked first -- then the K half. A
// full tile's two halves go out together, to be waited for once.
// (Zeroing s here rather than overwriting it with the first k-step, as
// logits_and_dp does: the overwrite took 29 registers off SDPA's forward and
// made it 5% slower on the H100, docs/perf.md v22.)
template <int D, bool RA, int BC, int W>
__device__ __forceinline__ void issue_logits(float (&s)[BC / 8][4], u32 q, u32 kf, Kind kind, int lane,
                                             int row0, int j0, int window) {
  zero(s);
  pin(s);
  wg_fence();
  if constexpr (RA) {
    if (kind == kMixed) {
      issue_qk<D / 16, W / 16, BC>(s, q, kf);
      wg_commit();
      wg_wait_all();
      pin(s);
      band_mask(s, lane, row0, j0, true, window);
      pin(s);
      wg_fence();
    } else if (kind == kFull) {
      issue_qk<D / 16, W / 16, BC>(s, q, kf);
    }
  }
  issue_qk<0, D / 16, BC>(s, q, kf);
  wg_commit();
}

// The backward kernels' two logit-shaped products of a tile, issued together
// and waited for once: p = the folded logits own . tile^T and dp = own2 .
// tile2^T (dO V^T, or V dO^T for the key-owned kernel); their old values are
// never read. folded_logits' band
// logic with the waits placed for wgmma: only RA's mixed tiles wait in
// between, to mask the band half before the first half accumulates on top.
template <int D, bool RA, int N, int W>
__device__ __forceinline__ void logits_and_dp(float (&p)[N / 8][4], float (&dp)[N / 8][4], u32 own,
                                              u32 tile, u32 own2, u32 tile2, Kind kind, int lane,
                                              int row_base, int col_base, bool rows_are_queries,
                                              int window) {
  pin(p);
  pin(dp);
  wg_fence();
  if constexpr (RA) {
    if (kind != kPlain) {
      issue_qk<D / 16, W / 16, N>(p, own, tile, true);
      if (kind == kMixed) {
        wg_commit();
        wg_wait_all();
        pin(p);
        band_mask(p, lane, row_base, col_base, rows_are_queries, window);
        pin(p);
        wg_fence();
      }
    }
  }
  issue_qk<0, D / 16, N>(p, own, tile, !RA || kind == kPlain);
  issue_qk<0, D / 16, N>(dp, own2, tile2, true);
  wg_commit();
  wg_wait_all();
  pin(p);
  pin(dp);
}

// The A fragments (bf16) of an fp32 accumulator tile of NB 8-column blocks,
// one per k-step of 16: what the register-A products below read.
template <int NB>
__device__ __forceinline__ void pack_a(u32 (&pa)[NB / 2][4], const float (&c)[NB][4]) {
#pragma unroll
  for (int kk = 0; kk < NB / 2; ++kk) c_to_a(pa[kk], c, kk);
}
// acc[64 x 64] += A . B, A = pa (KS k-steps of 16 from registers), B the KS * 16
// rows of a row-major 64-column block at b (transposed by the descriptor: V,
// Kf, dO or Qf rows). Issued, not waited for: pa must stay unchanged until the
// caller's wait.
template <int KS>
__device__ __forceinline__ void issue_rs(float (&acc)[8][4], const u32 (&pa)[KS][4], u32 b) {
#pragma unroll
  const unsigned long long b0 = sw128_desc(b);
#pragma unroll
  for (int kk = 0; kk < KS; ++kk) wgmma_64x64x16<1>(acc, pa[kk], desc_plus(b0, kk * 16 * 128));
}
// acc += c . B (c an fp32 tile re-packed to bf16 A fragments), issued and
// waited for.
template <int NB>
__device__ __forceinline__ void rs_product(float (&acc)[8][4], const float (&c)[NB][4], u32 b) {
  u32 pa[NB / 2][4];
  pack_a(pa, c);
  pin(acc);
  pin(pa);
  wg_fence();
  issue_rs(acc, pa, b);
  wg_commit();
  wg_wait_all();
  pin(acc);
  pin(pa);
}

// acc[64 x 128] += c . [B0 | B1] (RA's folded products inside the band: the
// two 64-column halves of acc against the row blocks at b0 and b1), c packed
// once, both halves issued before one wait.
template <int NB>
__device__ __forceinline__ void both_halves(float (&acc)[16][4], const float (&c)[NB][4], u32 b0, u32 b1) {
  u32 pa[NB / 2][4];
  pack_a(pa, c);
  pin(acc);
  pin(pa);
  wg_fence();
  issue_rs(block64<128>(acc, 0), pa, b0);
  issue_rs(block64<128>(acc, 1), pa, b1);
  wg_commit();
  wg_wait_all();
  pin(acc);
  pin(pa);
}

// RA's folded gradient product acc[64 x 128] += c . [B0 | B1] over a tile of
// the given band kind (dQf += dL Kf in the dQ kernel, dKf += dL^T Qf in the
// dK/dV kernel): the first half (b0) always; the second (b1) where the tile
// meets the band -- on a full tile from the same packed c (both_halves), on a
// mixed one after masking c to the band.
template <int NB>
__device__ __forceinline__ void folded_product(float (&acc)[16][4], float (&c)[NB][4], u32 b0, u32 b1,
                                               Kind kind, int lane, int row_base, int col_base,
                                               bool rows_are_queries, int window) {
  if (kind == kFull) {
    both_halves(acc, c, b0, b1);
    return;
  }
  rs_product(block64<128>(acc, 0), c, b0);
  if (kind == kMixed) {
    band_mask(c, lane, row_base, col_base, rows_are_queries, window);
    rs_product(block64<128>(acc, 1), c, b1);
  }
}

// What every wgmma kernel K is to Kokkos: a TeamPolicy functor whose device
// body is K::body (one team = one warpgroup), with the launch's arguments.
// n_ktiles only for the key-owned kernel.
template <class K>
struct WgKernel {
  Args a;
  int n_qtiles = 0, n_ktiles = 0;
  float scale = 0;
  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((static_cast<const K&>(*this).body(team);))
  }
};

// ------------------------------------------------------------------ forward
// The mma.sync Forward's structure (tensor_core_cuda.cpp) with WARPS = 4 and
// one m-tile: BC keys per tile (a multiple of 64), SPLIT the load schedule
// (false: two stages of [Kf | V | bias]; true: one Kf and one V buffer, V(kt)
// loading under QK^T(kt) and Kf(kt+1) under P V(kt)), MINB teams per SM; BIG:
// up to the opt-in shared memory of sm_90 (TensorCoreTraits::big_smem).
template <int D, bool RA, int BC, bool SPLIT, int MINB, bool BIG>
struct WgForward : WgKernel<WgForward<D, RA, BC, SPLIT, MINB, BIG>> {
  using Base = WgKernel<WgForward<D, RA, BC, SPLIT, MINB, BIG>>;
  using Base::a, Base::n_qtiles, Base::n_ktiles, Base::scale;
  static_assert(D == 64, "the wgmma forward is built for padded head dim 64");
  static_assert(BC % 64 == 0, "key tiles are whole 64-column wgmma products");
  static constexpr int W = RA ? 2 * D : D, BR = 64, NT = 128, kMinBlocks = MINB;
  static constexpr int kKf = BC * W * 2, kV = BC * D * 2, kBias = RA ? 4 * BC : 0;
  static constexpr int kStage = (kKf + kV + kBias + 1023) / 1024 * 1024;  // stages stay 1024-aligned
  static constexpr int kRows = BR * W * 2;  // the gated Qf rows (Atoms<BR>), in front of the pipeline
  // 896 bytes of room to move the 128-aligned scratch to a 1024-byte boundary
  // (the period of the 128-byte swizzle, which the descriptors assume).
  static constexpr std::size_t kScratch = kRows + (SPLIT ? 1 : 2) * std::size_t(kStage) + 896;
  static_assert(fits_team_shared(kScratch, NT, BIG ? kSharedOptInSm90 : kSharedDefault),
                "traits entry needs more shared memory than its budget");
  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const ForwardTeam<RA> tm(a, team.league_rank(), n_qtiles, BR);
    const int T = tm.T, Dact = tm.Dact, i0 = tm.i0;
    const auto *Q = tm.Q, *K = tm.K, *V = tm.V;
    const float* dvec = tm.dvec;
    const Gates g = tm.g;
    char* smem = scratch_1024(team, kScratch);
    const u32 s0 = smem_u32(smem);

    // The team's 64 rows of Qf, gates folded in (RA: the Q half times w_std,
    // the K half times w_rec, one 64-column block each), stay in shared memory
    // as the A operand of every QK^T.
    stage_rows<BR, W, D, NT, W / 8, Atoms<BR>>(s0, Q, K, i0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    if constexpr (RA) gate_own_rows<BR>(smem, g.std, g.rec, tid);
    fence_async_smem();  // published to the tensor cores by the loop's first barrier

    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;
    auto buffer = [&](int kt) { return kRows + (SPLIT ? 0 : (kt & 1) * kStage); };
    auto stage_k = [&](int kt) {  // Kf rows (only the K half where the tile is outside the band) and the bias
      const u32 st = s0 + buffer(kt);
      stage_folded<BC, W, D, NT, Atoms<BC>>(st, K, Q, kt * BC, T, Dact, tid,
                                            classify(RA, a.window, i0, BR, kt * BC, BC, T) != kPlain);
      if constexpr (RA) stage_vec<BC, NT>(st + kKf + kV, dvec, kt * BC, T, tid);
    };
    auto stage_v = [&](int kt) {
      stage_rows<BC, D, D, NT, D / 8, Atoms<BC>>(s0 + buffer(kt) + kKf, V, V, kt * BC, T, Dact, tid);
    };

    float o[D / 8][4];
    zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    float s[BC / 8][4];
    const float sl = scale * kLog2e, bl = g.disc * kLog2e;
    const int row0 = i0 + warp * 16;
    stage_k(0);
    if constexpr (!SPLIT) stage_v(0);
    cp_commit();
    for (int kt = 0; kt <= kt_last; ++kt) {
      if constexpr (SPLIT) {
        publish<0>();  // Kf(kt); P V(kt-1) is done with the V buffer
        stage_v(kt);
        cp_commit();
      } else if (kt < kt_last) {
        stage_k(kt + 1), stage_v(kt + 1);
        cp_commit();
        publish<1>();
      } else {
        publish<0>();
      }
      const u32 kf = s0 + buffer(kt), vs = kf + kKf;
      const SharedFloats bias{s0 + buffer(kt) + kKf + kV};
      const int j0 = kt * BC;
      issue_logits<D, RA, BC, W>(s, s0, kf, classify(RA, a.window, i0, BR, j0, BC, T), lane, row0, j0,
                                 a.window);
      wg_wait_all();
      pin(s);

      online_softmax_step<RA>(s, m, l, o, lane, row0, j0, T, sl, bias, bl);
      if constexpr (SPLIT) {
        publish<0>();  // V(kt); every QK^T(kt) is done with Kf
        if (kt < kt_last) {
          stage_k(kt + 1);
          cp_commit();
        }
      }
      // P as A fragments, all of them before the first product: the tensor cores
      // read these registers until the wait.
      u32 pa[BC / 16][4];
#pragma unroll
      for (int kk = 0; kk < BC / 16; ++kk) c_to_a(pa[kk], s, kk);
      pin(o);
      pin(pa);
      wg_fence();
      issue_rs(o, pa, vs);
      wg_commit();
      wg_wait_all();
      pin(o);
      pin(pa);
      // Two stages: this one is refilled at the top of the next iteration, and
      // a warp that is through its own wait may get there while the others'
      // products still read it.
      if constexpr (!SPLIT) __syncthreads();
    }

    tm.store<D>(a, o, m, l, row0, lane);
  }
};

// ra_window's forward (TensorCoreTraits::window): the RA forward's arithmetic,
// in two phases. First the key tiles that meet the reciprocity band (at w =
// 128 and 128-key tiles: two per team), on the folded 128-wide rows with one
// Kf and one V buffer (the SPLIT schedule above). Then the plain tiles -- the
// gated Q half times K_j, plus the bias: SDPA's products -- in SDPA's two
// stages of [K | V], half the bytes of a folded stage, so that they run at
// SDPA's tile and 3 teams per SM (RA's entry streams them through its folded
// buffers at 2: 28% slower per plain tile than SDPA, docs/perf.md v22). One
// layout serves both phases (offsets from the 1024-aligned base):
//   [0, 8K)                 the gated Q half of the team's rows    both phases
//   [8K, 16K)               the gated K half                       band
//   [16K, 48K), [48K, 64K)  the band's Kf = [K_j | Q_j] and V      band
//   [8K, 40K), [40K, 72K)   plain stages 0 and 1, K then V         plain
// The two bias vectors (512 bytes each: stage 0's also serves the band) fill
// the 74 KiB that 3 teams per SM leave only by using the up to 896 bytes that
// scratch_1024 skips: stage 0's goes there when it fits, else after the
// stages. The first plain tile loads into stage 0 during the last band tile's
// P V, which reads only the band V buffer.
template <int D, int BC, int MINB>
struct WgWindowForward : WgKernel<WgWindowForward<D, BC, MINB>> {
  using Base = WgKernel<WgWindowForward<D, BC, MINB>>;
  using Base::a, Base::n_qtiles, Base::n_ktiles, Base::scale;
  static_assert(D == 64 && BC == 128, "the window kernel's layout is built for D = 64, 128-key tiles");
  static constexpr int W = 2 * D, BR = 64, NT = 128, kMinBlocks = MINB;
  static constexpr u32 kHalf = BR * D * 2, kKV = BC * D * 2, kBias = 4 * BC;
  static constexpr u32 kBandKf = 2 * kHalf, kBandV = kBandKf + 2 * kKV;  // Kf is two D-wide blocks
  static constexpr u32 kPlainAt = kHalf, kPlainStage = 2 * kKV;
  static constexpr u32 kEnd = kPlainAt + 2 * kPlainStage;
  static_assert(kBandV + kKV <= kEnd, "the band buffers lie inside the plain stages' span");
  // Worst case over the room r in front of the base: r >= kBias puts one
  // bias there (r <= 896), r < kBias puts both behind (r <= kBias - 128).
  static constexpr std::size_t kScratch = std::max<std::size_t>(896 + kEnd + kBias, kBias - 128 + kEnd + 2 * kBias);
  static_assert(fits_team_shared(kScratch, NT, kSharedOptInSm90), "window kernel over the opt-in limit");
  static_assert(MINB < 3 || 3 * (team_shared_bytes(kScratch, NT) + 1024) <= 228 * 1024,
                "3 teams per SM need <= 75 KiB of shared memory each (plus 1 KiB the GPU keeps per block)");
  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const ForwardTeam<true> tm(a, team.league_rank(), n_qtiles, BR);
    const int T = tm.T, Dact = tm.Dact, i0 = tm.i0;
    const Gates g = tm.g;
    char* p = aligned_scratch(team, kScratch);
    const u32 p0 = smem_u32(p), s0 = (p0 + 1023u) & ~1023u, room = s0 - p0;
    char* smem = p + room;
    const u32 bias0 = room >= kBias ? s0 - kBias : s0 + kEnd, bias1 = room >= kBias ? s0 + kEnd : bias0 + kBias;
    auto bias_at = [&](int st) { return st ? bias1 : bias0; };

    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;
    auto kind_of = [&](int kt) { return classify(true, a.window, i0, BR, kt * BC, BC, T); };
    int kt_band = kt_last;  // the band's first tile; the plain ones are 0 .. kt_band - 1
    while (kt_band > 0 && kind_of(kt_band - 1) != kPlain) --kt_band;

    auto stage_plain = [&](int kt, int st) {
      const u32 buf = s0 + kPlainAt + st * kPlainStage;
      stage_rows<BC, D, D, NT, D / 8, Atoms<BC>>(buf, tm.K, tm.K, kt * BC, T, Dact, tid);
      stage_rows<BC, D, D, NT, D / 8, Atoms<BC>>(buf + kKV, tm.V, tm.V, kt * BC, T, Dact, tid);
      stage_vec<BC, NT>(bias_at(st), tm.dvec, kt * BC, T, tid);
    };
    auto stage_band_k = [&](int kt) {
      stage_folded<BC, W, D, NT, Atoms<BC>>(s0 + kBandKf, tm.K, tm.Q, kt * BC, T, Dact, tid, true);
      stage_vec<BC, NT>(bias0, tm.dvec, kt * BC, T, tid);
    };

    const float sl = scale * kLog2e, bl = g.disc * kLog2e;
    const int row0 = i0 + warp * 16;
    float o[D / 8][4];
    zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};

    // Band phase. The own rows [Q_i | K_i], gated, as in WgForward; then the
    // first band tile's Kf and bias.
    stage_rows<BR, W, D, NT, W / 8, Atoms<BR>>(s0, tm.Q, tm.K, i0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    gate_own_rows<BR>(smem, g.std, g.rec, tid);
    fence_async_smem();
    stage_band_k(kt_band);
    cp_commit();
    for (int kt = kt_band; kt <= kt_last; ++kt) {
      publish<0>();  // Kf(kt) and its bias; P V(kt - 1) is done with the V buffer
      stage_rows<BC, D, D, NT, D / 8, Atoms<BC>>(s0 + kBandV, tm.V, tm.V, kt * BC, T, Dact, tid);
      cp_commit();
      const int j0 = kt * BC;
      float s[BC / 8][4];
      issue_logits<D, true, BC, W>(s, s0, s0 + kBandKf, kind_of(kt), lane, row0, j0, a.window);
      wg_wait_all();
      pin(s);
      online_softmax_step<true>(s, m, l, o, lane, row0, j0, T, sl, SharedFloats{bias0}, bl);
      publish<0>();  // V(kt); every QK^T(kt) is done with Kf and the K half of the rows
      if (kt < kt_last)
        stage_band_k(kt + 1);
      else if (kt_band > 0)
        stage_plain(0, 0);
      cp_commit();
      rs_product(o, s, s0 + kBandV);
    }
    // Plain stage 1 covers the band's V buffer: every warp's P V is through.
    __syncthreads();

    // Plain phase: SDPA's two stages (WgForward with SPLIT = false), the rows'
    // Q half as the A operand.
    for (int kt = 0; kt < kt_band; ++kt) {
      const int st = kt & 1;
      if (kt + 1 < kt_band) {
        stage_plain(kt + 1, st ^ 1);
        cp_commit();
        publish<1>();
      } else {
        publish<0>();
      }
      const u32 kb = s0 + kPlainAt + st * kPlainStage;
      const int j0 = kt * BC;
      float s[BC / 8][4];
      issue_logits<D, false, BC, D>(s, s0, kb, kPlain, lane, row0, j0, a.window);
      wg_wait_all();
      pin(s);
      online_softmax_step<true>(s, m, l, o, lane, row0, j0, T, sl, SharedFloats{bias_at(st)}, bl);
      rs_product(o, s, kb + kKV);
      __syncthreads();  // this stage is refilled at the top of the next iteration
    }

    tm.store<D>(a, o, m, l, row0, lane);
  }
};

// The same forward with the tensor cores kept busy during the softmax
// (FlashAttention-3's intra-warpgroup overlap, in its order): each iteration
// issues S(kt+1) = Qf Kf(kt+1)^T and then O += P(kt) V(kt) as two commit
// groups, waits for the first only, exponentiates S(kt+1) into P(kt+1) while
// P(kt) V(kt) still runs, and only then waits for that and rescales O to the
// new row maxima. O is written by nothing but the tensor cores while they own
// it -- the rescale between issue and wait that the first version of this
// kernel did (the softmax step's o *= alpha) made ptxas serialize every wgmma
// (C7515). P lives as bf16 A fragments in two alternating sets (one read by
// the tensor cores, one being made); S needs one fp32 tile. Two stages of Kf
// and of [V | bias]: Kf(kt+2) and V(kt+1) load during iteration kt. RA's mixed
// tiles (the window band's edge) wait for their band half and mask it inside
// issue_logits, before P(kt) V(kt) is issued. BC keys per tile (32, 64 or 128),
// MINB teams per SM; BIG: up to the opt-in shared memory of sm_90.
template <int D, bool RA, int BC, int MINB, bool BIG>
struct WgForwardOverlap : WgKernel<WgForwardOverlap<D, RA, BC, MINB, BIG>> {
  using Base = WgKernel<WgForwardOverlap<D, RA, BC, MINB, BIG>>;
  using Base::a, Base::n_qtiles, Base::n_ktiles, Base::scale;
  static_assert(D == 64, "the wgmma forward is built for padded head dim 64");
  static_assert(BC == 32 || BC == 64 || BC == 128, "32-, 64- or 128-key tiles");
  static constexpr int W = RA ? 2 * D : D, BR = 64, NT = 128, kMinBlocks = MINB;
  static constexpr int kKf = BC * W * 2, kV = BC * D * 2, kBias = RA ? 4 * BC : 0;
  static constexpr int kRows = BR * W * 2;
  // [Qf rows | Kf 0 | Kf 1 | V 0 | V 1 | bias 0 | bias 1]: the operands
  // 1024-aligned. The bias travels with Kf: tile kt+1's softmax runs before
  // V(kt+1) is needed.
  static constexpr std::size_t kScratch = kRows + 2 * std::size_t(kKf) + 2 * std::size_t(kV) + 2 * kBias + 896;
  static_assert(fits_team_shared(kScratch, NT, BIG ? kSharedOptInSm90 : kSharedDefault),
                "traits entry needs more shared memory than its budget");
  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const ForwardTeam<RA> tm(a, team.league_rank(), n_qtiles, BR);
    const int T = tm.T, Dact = tm.Dact, i0 = tm.i0, row0 = i0 + warp * 16;
    const Gates g = tm.g;
    char* smem = scratch_1024(team, kScratch);
    const u32 s0 = smem_u32(smem);
    auto kf_buf = [&](int kt) { return u32(kRows + (kt & 1) * kKf); };
    auto v_buf = [&](int kt) { return u32(kRows + 2 * kKf + (kt & 1) * kV); };
    auto bias_of = [&](int kt) { return SharedFloats{s0 + kRows + 2 * kKf + 2 * kV + (kt & 1) * kBias}; };

    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;
    auto kind_of = [&](int kt) { return classify(RA, a.window, i0, BR, kt * BC, BC, T); };
    auto stage_k = [&](int kt) {  // Kf (only the K half outside the band) and the bias
      if (kt > kt_last) return;
      stage_folded<BC, W, D, NT, Atoms<BC>>(s0 + kf_buf(kt), tm.K, tm.Q, kt * BC, T, Dact, tid,
                                            kind_of(kt) != kPlain);
      if constexpr (RA) stage_vec<BC, NT>(bias_of(kt).addr, tm.dvec, kt * BC, T, tid);
    };
    auto stage_v = [&](int kt) {
      if (kt > kt_last) return;
      stage_rows<BC, D, D, NT, D / 8, Atoms<BC>>(s0 + v_buf(kt), tm.V, tm.V, kt * BC, T, Dact, tid);
    };

    // The gated Qf rows, as in WgForward; then tile 0's Kf and bias (group 1)
    // and tile 1's with tile 0's V (group 2).
    stage_rows<BR, W, D, NT, W / 8, Atoms<BR>>(s0, tm.Q, tm.K, i0, T, Dact, tid);
    stage_k(0);
    cp_commit();
    stage_k(1);
    stage_v(0);
    cp_commit();
    cp_wait<1>();
    if constexpr (RA) gate_own_rows<BR>(smem, g.std, g.rec, tid);
    fence_async_smem();
    __syncthreads();

    float o[D / 8][4];
    zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f}, alpha[2];
    const float sl = scale * kLog2e, bl = g.disc * kLog2e;
    float s[BC / 8][4];
    u32 pa[BC / 16][4], pb[BC / 16][4];
    // P(0): S(0) exponentiated before the loop (o is still 0: no rescale).
    issue_logits<D, RA, BC, W>(s, s0, s0 + kf_buf(0), kind_of(0), lane, row0, 0, a.window);
    wg_wait_all();
    pin(s);
    online_softmax_probs<RA>(s, m, l, alpha, lane, row0, 0, T, sl, bias_of(0), bl);
    pack_a(pa, s);

    // Tile kt < kt_last: p_cur holds P(kt); P(kt+1) is made into p_next. No
    // branch around the products inside: ptxas serializes every wgmma of the
    // function (C7514) where the groups in flight at a wait differ by path.
    auto step = [&](u32 (&p_cur)[BC / 16][4], u32 (&p_next)[BC / 16][4], int kt) {
      publish<0>();  // Kf(kt+1), bias(kt+1), V(kt) landed; every warp is done with tile kt-1's buffers
                     // (and with S(kt), which read the Kf buffer refilled next)
      stage_k(kt + 2);
      stage_v(kt + 1);
      cp_commit();
      issue_logits<D, RA, BC, W>(s, s0, s0 + kf_buf(kt + 1), kind_of(kt + 1), lane, row0, (kt + 1) * BC,
                                 a.window);
      pin(o);
      pin(p_cur);
      wg_fence();
      issue_rs(o, p_cur, s0 + v_buf(kt));
      wg_commit();
      wg_wait_one_pending();  // S(kt+1)
      pin(s);
      online_softmax_probs<RA>(s, m, l, alpha, lane, row0, (kt + 1) * BC, T, sl, bias_of(kt + 1), bl);
      pack_a(p_next, s);
      wg_wait_all();  // P(kt) V(kt)
      pin(o);
      pin(p_cur);
      rescale_rows(o, alpha);
    };
    // The last tile: its P V alone.
    auto last = [&](u32 (&p_cur)[BC / 16][4], int kt) {
      publish<0>();  // V(kt) landed
      pin(o);
      pin(p_cur);
      wg_fence();
      issue_rs(o, p_cur, s0 + v_buf(kt));
      wg_commit();
      wg_wait_all();
      pin(o);
      pin(p_cur);
    };
    int kt = 0;
    for (; kt + 1 < kt_last; kt += 2) {
      step(pa, pb, kt);
      step(pb, pa, kt + 1);
    }
    if (kt < kt_last) {
      step(pa, pb, kt);
      last(pb, kt + 1);
    } else {
      last(pa, kt);
    }
    tm.store<D>(a, o, m, l, row0, lane);
  }
};

// ------------------------------------------------------------------ backward: dQ
// The query-owned backward kernel (tensor_core_cuda.cpp's BackwardQ) on the
// warpgroup: the team's 64 query rows Qf_i (gated) and dO_i stay in shared
// memory as the A operands of S = Qf Kf^T and dP = dO V^T (both operands by
// descriptor, like the forward's QK^T), and dQf += dL Kf takes dL from
// registers (fresh every tile) with Kf transposed by the descriptor, one
// 64-column half at a time (RA: the Q_j half only where the tile meets the
// band, dL masked to it on mixed tiles). Kf and the bias in two stages
// (tile kt+1 loads during all of tile kt), V in one buffer refilled once
// every warp's dP is done. BC = 64 (SDPA; RA with BIG) or 32 (RA: two 128-wide
// Kf stages of 64 keys do not fit 48 KiB beside the own rows). Same epilogue
// as BackwardQ (store_dq).
template <int D, bool RA, int BC, int MINB, bool BIG>
struct WgBackwardQ : WgKernel<WgBackwardQ<D, RA, BC, MINB, BIG>> {
  using Base = WgKernel<WgBackwardQ<D, RA, BC, MINB, BIG>>;
  using Base::a, Base::n_qtiles, Base::n_ktiles, Base::scale;
  static_assert(D == 64, "the wgmma backward is built for padded head dim 64");
  static_assert(BC == 32 || BC == 64, "32- or 64-key tiles");
  static constexpr int W = RA ? 2 * D : D, BR = 64, NT = 128, WARPS = 4, kMinBlocks = MINB;
  static constexpr int kRowsQ = BR * W * 2, kRowsDO = BR * D * 2;
  static constexpr int kKf = BC * W * 2, kBias = RA ? 4 * BC : 0;
  static constexpr int kV = BC * D * 2;
  // [Qf rows | dO rows | Kf 0 | Kf 1 | V | bias 0 | bias 1]: the operands
  // 1024-aligned (all are multiples of 1 KiB), + room to align the start.
  // (Padding the biases into the Kf stages took RA to 48,000 bytes, over
  // fits_team_shared's limit.)
  static constexpr std::size_t kScratch = kRowsQ + kRowsDO + 2 * std::size_t(kKf) + kV + 2 * kBias + 896;
  static_assert(fits_team_shared(kScratch, NT, BIG ? kSharedOptInSm90 : kSharedDefault),
                "traits entry needs more shared memory than its budget");
  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const ForwardTeam<RA> tm(a, team.league_rank(), n_qtiles, BR);  // the same (b, h, query tile) split
    const int T = tm.T, Dact = tm.Dact, i0 = tm.i0, row0 = i0 + warp * 16;
    const int qt = i0 / BR;
    const Gates g = tm.g;
    const auto* dO = static_cast<const bf16_t*>(a.dout) + tm.mat;
    char* smem = scratch_1024(team, kScratch);
    const u32 s0 = smem_u32(smem), do_rows = s0 + kRowsQ;
    auto kf_buf = [&](int kt) { return u32(s0 + kRowsQ + kRowsDO + (kt & 1) * kKf); };
    const u32 v_buf = s0 + kRowsQ + kRowsDO + 2 * kKf;
    auto bias_buf = [&](int kt) { return u32(v_buf + kV + (kt & 1) * kBias); };

    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;
    auto kind_of = [&](int kt) { return classify(RA, a.window, i0, BR, kt * BC, BC, T); };
    auto stage_k = [&](int kt) {
      stage_folded<BC, W, D, NT, Atoms<BC>>(kf_buf(kt), tm.K, tm.Q, kt * BC, T, Dact, tid, kind_of(kt) != kPlain);
      if constexpr (RA) stage_vec<BC, NT>(bias_buf(kt), tm.dvec, kt * BC, T, tid);
    };
    auto stage_v = [&](int kt) {
      stage_rows<BC, D, D, NT, D / 8, Atoms<BC>>(v_buf, tm.V, tm.V, kt * BC, T, Dact, tid);
    };

    stage_rows<BR, W, D, NT, W / 8, Atoms<BR>>(s0, tm.Q, tm.K, i0, T, Dact, tid);
    stage_rows<BR, D, D, NT, D / 8, Atoms<BR>>(do_rows, dO, dO, i0, T, Dact, tid);
    stage_k(0);
    stage_v(0);
    cp_commit();
    cp_wait<0>();
    if constexpr (RA) gate_own_rows<BR>(smem, g.std, g.rec, tid);
    float lse2[2], delta[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = row0 + (lane >> 2) + 8 * r;
      lse2[r] = i < T ? a.lse_in[std::size_t(tm.bh) * T + i] * kLog2e : 0.f;
      delta[r] = i < T ? a.delta[std::size_t(tm.bh) * T + i] : 0.f;
    }

    float dqf[W / 8][4];
    float p[BC / 8][4], dp[BC / 8][4];  // S, then dP = dO V^T: zeroed once, every tile overwrites them
    zero(p);
    zero(dp);
    zero(dqf);
    const float sl = scale * kLog2e, bl = g.disc * kLog2e;
    for (int kt = 0; kt <= kt_last; ++kt) {
      publish<0>();  // Kf(kt), V(kt); tile kt-1's products are done with the Kf stage refilled next
      if (kt < kt_last) {
        stage_k(kt + 1);
        cp_commit();
      }
      const u32 kf = kf_buf(kt);
      const SharedFloats bias{bias_buf(kt)};
      const int j0 = kt * BC;
      const Kind kind = kind_of(kt);
      logits_and_dp<D, RA, BC, W>(p, dp, s0, kf, do_rows, v_buf, kind, lane, row0, j0, true, a.window);
      __syncthreads();  // every warp's dP is done with V(kt): refill it under the rest
      if (kt < kt_last) {
        stage_v(kt + 1);
        cp_commit();
      }
      dl_from_p<RA, BC>(p, dp, bias, lse2, delta, sl, bl, lane, row0, j0, T);
      // dQf += dL Kf: the K_j half (Kf columns [0, D)) always, the Q_j half
      // where the tile meets the band (folded_product).
      if constexpr (RA) {
        folded_product(dqf, p, kf, kf + BC * 128, kind, lane, row0, j0, true, a.window);
      } else {
        rs_product(block64<W>(dqf, 0), p, kf);
      }
    }
    __syncthreads();  // the gate sums below reuse shared memory
    store_dq<D, RA, WARPS>(a, dqf, scale, g, tm.bh, qt, row0, warp, lane, tid, smem);
  }
};

// ------------------------------------------------------------------ backward: dK, dV
// A key-owned team (WgBackwardKV, WgWindowBackwardKV): its (b, h) and key
// tile kt (the low key tiles, which see the most queries, go
// first), that (b, h)'s matrices, lse and Delta vectors, and its gates.
struct KeyTeam {
  int T, Dact, kt, bh;
  const bf16_t *Q, *K, *V, *dO;
  const float *lse, *dlt;
  Gates g;
  __device__ KeyTeam(const Args& a, int league_rank, int n_ktiles)
      : T(a.T), Dact(a.D), kt(league_rank % n_ktiles), bh(league_rank / n_ktiles),
        Q(static_cast<const bf16_t*>(a.q) + mat(a)), K(static_cast<const bf16_t*>(a.k) + mat(a)),
        V(static_cast<const bf16_t*>(a.v) + mat(a)), dO(static_cast<const bf16_t*>(a.dout) + mat(a)),
        lse(a.lse_in + std::size_t(bh) * a.T), dlt(a.delta + std::size_t(bh) * a.T),
        g(gates_of(a, bh / a.H, bh % a.H)) {}
  __device__ std::size_t mat(const Args& a) const { return std::size_t(bh) * a.T * a.D; }
};

// The key-owned backward kernel (tensor_core_cuda.cpp's BackwardKV) on the
// warpgroup: the team's 64 key rows Kf'_j = [w_std K_j, w_rec Q_j] and V_j stay
// in shared memory as the A operands of P^T = Kf' Qf^T and dP^T = V dO^T (by
// descriptor); dV += P^T dO and dKf += dL^T Qf take P^T, dL^T from registers
// with dO and Qf transposed by the descriptor (RA: Qf's K_i half only where the
// tile meets the band, dL^T masked to it on mixed tiles). BR-query tiles of
// Qf, the lse / Delta vectors and dO in two stages, or one dO buffer refilled
// after dV where two do not fit (RA: 48.5 KiB at 32 queries; SDPA at 64), its
// next load then exposed. Same epilogue as BackwardKV (store_dkv).
template <int D, bool RA, int QTILE, int MINB, bool BIG>
struct WgBackwardKV : WgKernel<WgBackwardKV<D, RA, QTILE, MINB, BIG>> {
  using Base = WgKernel<WgBackwardKV<D, RA, QTILE, MINB, BIG>>;
  using Base::a, Base::n_qtiles, Base::n_ktiles, Base::scale;
  static_assert(D == 64, "the wgmma backward is built for padded head dim 64");
  static_assert(QTILE == 32 || QTILE == 64, "32- or 64-query tiles");
  static constexpr int W = RA ? 2 * D : D, BK = 64, BR = QTILE, NT = 128, WARPS = 4, kMinBlocks = MINB;
  static constexpr int kOwnK = BK * W * 2, kOwnV = BK * D * 2, kQ = BR * W * 2, kDO = BR * D * 2, kVec = 8 * BR;
  static constexpr std::size_t kBudget = BIG ? kSharedOptInSm90 : kSharedDefault;
  // One dO buffer where two stages of it do not fit 48 KiB: RA, and SDPA at 64 queries.
  static constexpr bool kOneDO = !fits_team_shared(kOwnK + kOwnV + 2 * kQ + 2 * kDO + 2 * kVec + 896, NT, kBudget);
  // [Kf' rows | V rows | Qf 0 | Qf 1 | dO 0 (| dO 1) | vec 0 | vec 1] + room to align the start.
  static constexpr std::size_t kScratch =
      kOwnK + kOwnV + 2 * std::size_t(kQ) + (kOneDO ? 1 : 2) * std::size_t(kDO) + 2 * kVec + 896;
  static_assert(fits_team_shared(kScratch, NT, kBudget), "traits entry needs more shared memory than its budget");
  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const KeyTeam tm(a, team.league_rank(), n_ktiles);
    const int T = tm.T, Dact = tm.Dact, kt = tm.kt, bh = tm.bh, j0 = kt * BK, key0 = j0 + warp * 16;
    const bf16_t *Q = tm.Q, *K = tm.K, *V = tm.V, *dO = tm.dO;
    const float *lse = tm.lse, *dlt = tm.dlt;
    const Gates g = tm.g;
    char* smem = scratch_1024(team, kScratch);
    const u32 s0 = smem_u32(smem), own_v = s0 + kOwnK;
    auto q_buf = [&](int qt) { return u32(s0 + kOwnK + kOwnV + (qt & 1) * kQ); };
    auto do_buf = [&](int qt) { return u32(s0 + kOwnK + kOwnV + 2 * kQ + (kOneDO ? 0 : (qt & 1) * kDO)); };
    auto vec_buf = [&](int qt) {
      return u32(s0 + kOwnK + kOwnV + 2 * kQ + (kOneDO ? 1 : 2) * kDO + (qt & 1) * kVec);
    };
    auto kind_of = [&](int qt) { return classify(RA, a.window, qt * BR, BR, j0, BK, T); };
    auto stage_q = [&](int qt) {  // Qf (only the Q half outside the band), lse, Delta
      stage_folded<BR, W, D, NT, Atoms<BR>>(q_buf(qt), Q, K, qt * BR, T, Dact, tid, kind_of(qt) != kPlain);
      stage_vec<BR, NT>(vec_buf(qt), lse, qt * BR, T, tid);
      stage_vec<BR, NT>(vec_buf(qt) + 4 * BR, dlt, qt * BR, T, tid);
    };
    auto stage_do = [&](int qt) {
      stage_rows<BR, D, D, NT, D / 8, Atoms<BR>>(do_buf(qt), dO, dO, qt * BR, T, Dact, tid);
    };

    // d_j of this thread's two key rows, loaded first: the latency passes under the staging wait
    float bias2[2] = {0.f, 0.f};
    if constexpr (RA) {
#pragma unroll
      for (int r = 0, j = key0 + (lane >> 2); r < 2; ++r, j += 8) bias2[r] = j < T ? a.d[std::size_t(bh) * T + j] : 0.f;
    }
    const int qt_first = j0 / BR, qt_last = n_qtiles - 1;
    stage_rows<BK, W, D, NT, W / 8, Atoms<BK>>(s0, K, Q, j0, T, Dact, tid);
    stage_rows<BK, D, D, NT, D / 8, Atoms<BK>>(own_v, V, V, j0, T, Dact, tid);
    stage_q(qt_first);
    stage_do(qt_first);
    cp_commit();
    cp_wait<0>();
    if constexpr (RA) gate_own_rows<BK>(smem, g.std, g.rec, tid);  // Kf' = [w_std K_j, w_rec Q_j]
    for (float& b : bias2) b *= g.disc * kLog2e;  // w_disc d_j in log2 units

    float dkf[W / 8][4], dv[D / 8][4];
    zero(dkf);
    zero(dv);
    float colsum[2] = {0.f, 0.f};
    float p[BR / 8][4], dp[BR / 8][4];  // S^T, then dP^T = V dO^T: zeroed once, every tile overwrites them
    zero(p);
    zero(dp);
    const float sl = scale * kLog2e;
    for (int qt = qt_first; qt <= qt_last; ++qt) {
      publish<0>();  // Qf(qt), vec(qt) (and dO(qt)); tile qt-1's products are done
      if (qt < qt_last) {
        stage_q(qt + 1);
        if constexpr (!kOneDO) stage_do(qt + 1);
        cp_commit();
      }
      const u32 qs = q_buf(qt), dos = do_buf(qt);
      const SharedFloats vec{vec_buf(qt)};
      const int i0 = qt * BR;
      const Kind kind = kind_of(qt);
      // Transposed tiles: rows are this warp's keys j, columns the queries i.
      logits_and_dp<D, RA, BR, W>(p, dp, s0, qs, own_v, dos, kind, lane, key0, i0, false, a.window);
      key_tile_p_dl<RA>(p, dp, colsum, vec, bias2, sl, lane, key0, i0, T);  // P^T, dL^T
      // dV += P^T dO and dKf += dL^T Qf (the Q_i half always, RA's K_i half
      // where the tile meets the band, dL^T masked to it first on mixed tiles).
      // SDPA issues both before one wait; RA one at a time, which spills less
      // under its register cap (all at once ran RA 3% slower; docs/perf.md v20).
      if constexpr (RA) {
        rs_product(dv, p, dos);
      } else {
        u32 pp[BR / 16][4], pd[BR / 16][4];
        pack_a(pp, p);
        pack_a(pd, dp);
        pin(dv);
        pin(dkf);
        pin(pp);
        pin(pd);
        wg_fence();
        issue_rs(dv, pp, dos);
        issue_rs(block64<W>(dkf, 0), pd, qs);
        wg_commit();
        wg_wait_all();
        pin(dv);
        pin(dkf);
        pin(pp);
        pin(pd);
      }
      if constexpr (kOneDO) {
        __syncthreads();  // every warp is done with dO(qt)
        if (qt < qt_last) {
          stage_do(qt + 1);
          cp_commit();
        }
      }
      if constexpr (RA) folded_product(dkf, dp, qs, qs + BR * 128, kind, lane, key0, i0, false, a.window);
    }
    __syncthreads();  // the gate sum below reuses shared memory
    store_dkv<D, RA, WARPS>(a, dkf, dv, colsum, scale, g, bh, kt, key0, warp, lane, tid, smem);
  }
};

// ------------------------------------------------------------------ ra_window's backward
// ra_window's dQ kernel (BackwardTraits::q with window): WgBackwardQ's
// arithmetic in two phases, as WgWindowForward does for the forward. First the
// key tiles that meet the reciprocity band, 32 keys each, with the folded
// 128-wide products (RA's 32-key dQ tile, which fits the registers of 4 teams
// per SM). Then the plain tiles in SDPA's 64-key tiles: K alone instead of
// [K_j | Q_j], the bias in the softmax. After the band phase the Q_j half of
// dQf is complete -- no plain tile adds to it -- so it goes into dK there and
// then (add_dk_share), and the plain phase holds SDPA's registers. RA's entry
// streams the plain tiles through its folded buffers at 3 teams per SM.
// One layout serves both phases (offsets from the 1024-aligned base):
//   [0, 16K)     the team's rows [Q_i | K_i], gated     (the K half: band only)
//   [16K, 24K)   dO rows
//   [24K, 32K)   band Kf stage 0 (32 x 128)  = plain K stage 1 (64 x 64)
//   [32K, 40K)   band Kf stage 1             = plain K stage 0
//   [40K, 44K)   band V (32 x 64)           in plain V [40K, 48K)
//   [48K, +512)  plain bias stages 0, 1; then the band's two (128 bytes each)
// The band tiles alternate stages so that the last one uses stage 0: the first
// plain tile's K and bias load into plain stage 0 during it, its V once that
// tile's dP is done with the band V.
template <int D, int MINB>
struct WgWindowBackwardQ : WgKernel<WgWindowBackwardQ<D, MINB>> {
  using Base = WgKernel<WgWindowBackwardQ<D, MINB>>;
  using Base::a, Base::n_qtiles, Base::n_ktiles, Base::scale;
  static_assert(D == 64, "the wgmma backward is built for padded head dim 64");
  static constexpr int W = 2 * D, BR = 64, BB = 32, BP = 64, NT = 128, WARPS = 4, kMinBlocks = MINB;
  static constexpr u32 kRows = BR * W * 2, kDO = BR * D * 2, kStage = BP * D * 2;
  static_assert(BB * W * 2 == kStage, "a band Kf stage is a plain K stage");
  static constexpr u32 kStage0 = kRows + kDO, kStage1 = kStage0 + kStage, kVAt = kStage1 + kStage;
  static constexpr u32 kBiasAt = kVAt + kStage, kBandBiasAt = kBiasAt + 2 * 4 * BP;
  static constexpr std::size_t kScratch = kBandBiasAt + 2 * 4 * BB + 896;
  static_assert(fits_team_shared(kScratch, NT, kSharedOptInSm90), "window dQ kernel over the opt-in limit");
  static_assert(MINB < 4 || 4 * (team_shared_bytes(kScratch, NT) + 1024) <= 228 * 1024,
                "4 teams per SM need <= 57 KiB of shared memory each (with the 1 KiB the GPU keeps per block)");
  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const ForwardTeam<true> tm(a, team.league_rank(), n_qtiles, BR);
    const int T = tm.T, Dact = tm.Dact, i0 = tm.i0, row0 = i0 + warp * 16;
    const Gates g = tm.g;
    const auto* dO = static_cast<const bf16_t*>(a.dout) + tm.mat;
    char* smem = scratch_1024(team, kScratch);
    const u32 s0 = smem_u32(smem), do_rows = s0 + kRows, v_buf = s0 + kVAt;

    // Plain 64-key tiles 0 .. kp_end - 1, then the band's 32-key tiles kb_first .. kb_last.
    const int i_last = min(i0 + BR - 1, T - 1);
    auto kind_of = [&](int j0, int n) { return classify(true, a.window, i0, BR, j0, n, T); };
    int kp_end = i_last / BP;
    while (kp_end > 0 && kind_of((kp_end - 1) * BP, BP) != kPlain) --kp_end;
    const int kb_first = 2 * kp_end, kb_last = i_last / BB;
    auto band_kf = [&](int kb) { return s0 + ((kb_last - kb) & 1 ? kStage1 : kStage0); };
    auto band_bias = [&](int kb) { return s0 + kBandBiasAt + ((kb_last - kb) & 1) * 4 * BB; };
    auto plain_k = [&](int kt) { return s0 + (kt & 1 ? kStage0 : kStage1); };
    auto plain_bias = [&](int kt) { return s0 + kBiasAt + (kt & 1) * 4 * BP; };
    auto stage_band_k = [&](int kb) {
      stage_folded<BB, W, D, NT, Atoms<BB>>(band_kf(kb), tm.K, tm.Q, kb * BB, T, Dact, tid,
                                            kind_of(kb * BB, BB) != kPlain);
      stage_vec<BB, NT>(band_bias(kb), tm.dvec, kb * BB, T, tid);
    };
    auto stage_band_v = [&](int kb) {
      stage_rows<BB, D, D, NT, D / 8, Atoms<BB>>(v_buf, tm.V, tm.V, kb * BB, T, Dact, tid);
    };
    auto stage_plain_k = [&](int kt) {
      stage_rows<BP, D, D, NT, D / 8, Atoms<BP>>(plain_k(kt), tm.K, tm.K, kt * BP, T, Dact, tid);
      stage_vec<BP, NT>(plain_bias(kt), tm.dvec, kt * BP, T, tid);
    };
    auto stage_plain_v = [&](int kt) {
      stage_rows<BP, D, D, NT, D / 8, Atoms<BP>>(v_buf, tm.V, tm.V, kt * BP, T, Dact, tid);
    };

    stage_rows<BR, W, D, NT, W / 8, Atoms<BR>>(s0, tm.Q, tm.K, i0, T, Dact, tid);
    stage_rows<BR, D, D, NT, D / 8, Atoms<BR>>(do_rows, dO, dO, i0, T, Dact, tid);
    stage_band_k(kb_first);
    stage_band_v(kb_first);
    cp_commit();
    cp_wait<0>();
    gate_own_rows<BR>(smem, g.std, g.rec, tid);
    float lse2[2], delta[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = row0 + (lane >> 2) + 8 * r;
      lse2[r] = i < T ? a.lse_in[std::size_t(tm.bh) * T + i] * kLog2e : 0.f;
      delta[r] = i < T ? a.delta[std::size_t(tm.bh) * T + i] : 0.f;
    }
    const float sl = scale * kLog2e, bl = g.disc * kLog2e;
    float dqf[W / 8][4];
    zero(dqf);

    // Band phase: WgBackwardQ's RA tile at 32 keys.
    {
      float p[BB / 8][4], dp[BB / 8][4];
      zero(p);
      zero(dp);
      for (int kb = kb_first; kb <= kb_last; ++kb) {
        publish<0>();  // Kf(kb), V(kb); tile kb-1's products are done with the Kf stage refilled next
        const bool more = kb < kb_last;
        if (more) stage_band_k(kb + 1);
        else if (kp_end > 0) stage_plain_k(0);
        cp_commit();
        const u32 kf = band_kf(kb);
        const int j0 = kb * BB;
        const Kind kind = kind_of(j0, BB);
        logits_and_dp<D, true, BB, W>(p, dp, s0, kf, do_rows, v_buf, kind, lane, row0, j0, true, a.window);
        __syncthreads();  // every warp's dP is done with V(kb)
        if (more) stage_band_v(kb + 1);
        else if (kp_end > 0) stage_plain_v(0);
        cp_commit();
        dl_from_p<true, BB>(p, dp, SharedFloats{band_bias(kb)}, lse2, delta, sl, bl, lane, row0, j0, T);
        folded_product(dqf, p, kf, kf + BB * 128, kind, lane, row0, j0, true, a.window);
      }
    }
    const float grec = add_dk_share<D>(a, dqf, scale, g.rec, tm.bh, row0, lane);

    // Plain phase: SDPA's 64-key tile (WgBackwardQ without RA) plus the bias.
    {
      float p[BP / 8][4], dp[BP / 8][4];
      zero(p);
      zero(dp);
      for (int kt = 0; kt < kp_end; ++kt) {
        publish<0>();  // K(kt), V(kt); the products of the tile before are done
        const bool more = kt + 1 < kp_end;
        if (more) {
          stage_plain_k(kt + 1);
          cp_commit();
        }
        const u32 kb = plain_k(kt);
        const int j0 = kt * BP;
        logits_and_dp<D, false, BP, D>(p, dp, s0, kb, do_rows, v_buf, kPlain, lane, row0, j0, true, a.window);
        __syncthreads();  // every warp's dP is done with V(kt)
        if (more) {
          stage_plain_v(kt + 1);
          cp_commit();
        }
        dl_from_p<true, BP>(p, dp, SharedFloats{plain_bias(kt)}, lse2, delta, sl, bl, lane, row0, j0, T);
        rs_product(block64<W>(dqf, 0), p, kb);
      }
    }
    __syncthreads();  // the gate sums below reuse shared memory
    store_dq<D, true, WARPS, false>(a, dqf, scale, g, tm.bh, i0 / BR, row0, warp, lane, tid, smem, grec);
  }
};

// ra_window's dK/dV kernel (BackwardTraits::kv with window): WgBackwardKV in
// two phases, as the dQ kernel above. First the query tiles that meet the
// band, 32 queries each with RA's folded products (its 32-query tile: 3 teams
// per SM), then the plain ones in SDPA's 64-query tiles with two dO stages,
// the bias in the probabilities and dd's column sums. The Q_j half of dKf (the
// key-owned share of dQ) is complete after the band phase and is written then
// (store_dq_share). Layout (offsets from the 1024-aligned base):
//   [0, 16K)     the team's rows [K_j | Q_j], gated      (the Q half: band only)
//   [16K, 24K)   V rows
//   [24K, 40K)   plain stage 0: Q (64 x 64), dO
//   [40K, 56K)   plain stage 1: Q, dO  = the band's two Qf stages (32 x 128)
//   [56K, 57K)   plain lse / Delta stages 0, 1 (the band's two inside stage 1's)
//   [57K, 65K)   the band's two dO stages (32 x 64)
// Plain stage 0 lies outside every band buffer, so the first plain tile loads
// into it during the last band tile.
template <int D, int MINB>
struct WgWindowBackwardKV : WgKernel<WgWindowBackwardKV<D, MINB>> {
  using Base = WgKernel<WgWindowBackwardKV<D, MINB>>;
  using Base::a, Base::n_qtiles, Base::n_ktiles, Base::scale;
  static_assert(D == 64, "the wgmma backward is built for padded head dim 64");
  static constexpr int W = 2 * D, BK = 64, BR = 64, BB = 32, BP = 64, NT = 128, WARPS = 4, kMinBlocks = MINB;
  static constexpr u32 kOwn = BK * W * 2, kOwnV = BK * D * 2, kQ = BP * D * 2, kDO = BP * D * 2;
  static constexpr u32 kBandQ = BB * W * 2, kBandDO = BB * D * 2, kVec = 8 * BP, kBandVec = 8 * BB;
  static constexpr u32 kPlainAt = kOwn + kOwnV, kPlainStage = kQ + kDO, kVecAt = kPlainAt + 2 * kPlainStage;
  static constexpr u32 kBandQAt = kPlainAt + kPlainStage, kBandDOAt = kVecAt + 2 * kVec;
  static_assert(2 * kBandQ <= kPlainStage && 2 * kBandVec <= kVec && kBandDOAt % 1024 == 0,
                "the band's Qf stages fill plain stage 1, its vectors plain vector stage 1");
  static constexpr std::size_t kScratch = kBandDOAt + 2 * kBandDO + 896;
  static_assert(fits_team_shared(kScratch, NT, kSharedOptInSm90), "window dK/dV kernel over the opt-in limit");
  static_assert(MINB < 3 || 3 * (team_shared_bytes(kScratch, NT) + 1024) <= 228 * 1024,
                "3 teams per SM need <= 75 KiB of shared memory each (plus 1 KiB the GPU keeps per block)");
  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const KeyTeam tm(a, team.league_rank(), n_ktiles);
    const int T = tm.T, Dact = tm.Dact, kt = tm.kt, bh = tm.bh, j0 = kt * BK, key0 = j0 + warp * 16;
    const bf16_t *Q = tm.Q, *K = tm.K, *V = tm.V, *dO = tm.dO;
    const float *lse = tm.lse, *dlt = tm.dlt;
    const Gates g = tm.g;
    char* smem = scratch_1024(team, kScratch);
    const u32 s0 = smem_u32(smem), own_v = s0 + kOwn;

    // The band's 32-query tiles qb_first .. qb_end - 1, then plain 64-query
    // tiles qp_first .. qp_last (none where qp_first > qp_last).
    auto kind_of = [&](int i0, int n) { return classify(true, a.window, i0, n, j0, BK, T); };
    int qp_first = j0 / BP;
    while (qp_first * BP < T && kind_of(qp_first * BP, BP) != kPlain) ++qp_first;
    const int qp_last = (T - 1) / BP, qb_first = j0 / BB, qb_end = min(2 * qp_first, (T + BB - 1) / BB);
    auto band_q = [&](int qb) { return s0 + kBandQAt + (qb & 1) * kBandQ; };
    auto band_do = [&](int qb) { return s0 + kBandDOAt + (qb & 1) * kBandDO; };
    auto band_vec = [&](int qb) { return s0 + kVecAt + kVec + (qb & 1) * kBandVec; };
    auto plain_q = [&](int qp) { return s0 + kPlainAt + ((qp - qp_first) & 1) * kPlainStage; };
    auto plain_vec = [&](int qp) { return s0 + kVecAt + ((qp - qp_first) & 1) * kVec; };
    auto stage_band = [&](int qb) {  // Qf (only the Q half where the tile is plain), dO, lse, Delta
      stage_folded<BB, W, D, NT, Atoms<BB>>(band_q(qb), Q, K, qb * BB, T, Dact, tid, kind_of(qb * BB, BB) != kPlain);
      stage_rows<BB, D, D, NT, D / 8, Atoms<BB>>(band_do(qb), dO, dO, qb * BB, T, Dact, tid);
      stage_vec<BB, NT>(band_vec(qb), lse, qb * BB, T, tid);
      stage_vec<BB, NT>(band_vec(qb) + 4 * BB, dlt, qb * BB, T, tid);
    };
    auto stage_plain = [&](int qp) {  // Q, dO, lse, Delta
      stage_rows<BP, D, D, NT, D / 8, Atoms<BP>>(plain_q(qp), Q, Q, qp * BP, T, Dact, tid);
      stage_rows<BP, D, D, NT, D / 8, Atoms<BP>>(plain_q(qp) + kQ, dO, dO, qp * BP, T, Dact, tid);
      stage_vec<BP, NT>(plain_vec(qp), lse, qp * BP, T, tid);
      stage_vec<BP, NT>(plain_vec(qp) + 4 * BP, dlt, qp * BP, T, tid);
    };

    stage_rows<BK, W, D, NT, W / 8, Atoms<BK>>(s0, K, Q, j0, T, Dact, tid);
    stage_rows<BK, D, D, NT, D / 8, Atoms<BK>>(own_v, V, V, j0, T, Dact, tid);
    stage_band(qb_first);
    cp_commit();
    cp_wait<0>();
    gate_own_rows<BK>(smem, g.std, g.rec, tid);  // Kf' = [w_std K_j, w_rec Q_j]
    float bias2[2];  // w_disc d_j in log2 units, for this thread's two key rows
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int j = key0 + (lane >> 2) + 8 * r;
      bias2[r] = j < T ? g.disc * a.d[std::size_t(bh) * T + j] * kLog2e : 0.f;
    }
    const float sl = scale * kLog2e;
    float dkf[W / 8][4], dv[D / 8][4];
    zero(dkf);
    zero(dv);
    float colsum[2] = {0.f, 0.f};

    // Band phase: WgBackwardKV's RA tile at 32 queries (rows: this warp's keys).
    {
      float p[BB / 8][4], dp[BB / 8][4];
      zero(p);
      zero(dp);
      for (int qb = qb_first; qb < qb_end; ++qb) {
        publish<0>();  // Qf(qb), dO(qb), vec(qb); tile qb-1's products are done
        if (qb + 1 < qb_end) stage_band(qb + 1);
        else if (qp_first <= qp_last) stage_plain(qp_first);
        cp_commit();
        const u32 qs = band_q(qb), dos = band_do(qb);
        const int i0 = qb * BB;
        const Kind kind = kind_of(i0, BB);
        logits_and_dp<D, true, BB, W>(p, dp, s0, qs, own_v, dos, kind, lane, key0, i0, false, a.window);
        key_tile_p_dl<true>(p, dp, colsum, SharedFloats{band_vec(qb)}, bias2, sl, lane, key0, i0, T);
        rs_product(dv, p, dos);
        folded_product(dkf, dp, qs, qs + BB * 128, kind, lane, key0, i0, false, a.window);
      }
    }
    store_dq_share<D>(a, dkf, scale, g.rec, bh, key0, lane);

    // Plain phase: SDPA's 64-query tile (both products issued before one
    // wait), plus the bias and the column sums.
    {
      float p[BP / 8][4], dp[BP / 8][4];
      zero(p);
      zero(dp);
      auto& dk = block64<W>(dkf, 0);
      for (int qp = qp_first; qp <= qp_last; ++qp) {
        publish<0>();  // Q(qp), dO(qp), vec(qp); the products of the tile before are done
        if (qp < qp_last) {
          stage_plain(qp + 1);
          cp_commit();
        }
        const u32 qs = plain_q(qp), dos = qs + kQ;
        const int i0 = qp * BP;
        logits_and_dp<D, false, BP, D>(p, dp, s0, qs, own_v, dos, kPlain, lane, key0, i0, false, a.window);
        key_tile_p_dl<true>(p, dp, colsum, SharedFloats{plain_vec(qp)}, bias2, sl, lane, key0, i0, T);
        u32 pp[BP / 16][4], pd[BP / 16][4];
        pack_a(pp, p);
        pack_a(pd, dp);
        pin(dv);
        pin(dk);
        pin(pp);
        pin(pd);
        wg_fence();
        issue_rs(dv, pp, dos);
        issue_rs(dk, pd, qs);
        wg_commit();
        wg_wait_all();
        pin(dv);
        pin(dk);  // (not dkf: its Q_j half is done and its registers free)
        pin(pp);
        pin(pd);
      }
    }
    __syncthreads();  // the gate sum below reuses shared memory
    store_dkv<D, true, WARPS, false, false>(a, dkf, dv, colsum, scale, g, bh, kt, key0, warp, lane, tid, smem);
  }
};

constexpr bool same_traits(const TensorCoreTraits& x, const TensorCoreTraits& y) {
  return x.warps == y.warps && x.tile == y.tile && x.split_kv == y.split_kv &&
         x.min_blocks == y.min_blocks && x.wgmma == y.wgmma && x.overlap == y.overlap &&
         x.big_smem == y.big_smem && x.window == y.window;
}

// The forward kernel of candidate I: 0 WgForward, 1 the overlap one, 2 the window one.
template <bool RA, int I>
constexpr int forward_kernel_kind() {
  return forward_candidate(RA, I).window ? 2 : forward_candidate(RA, I).overlap ? 1 : 0;
}
template <bool RA, int I, int KIND = forward_kernel_kind<RA, I>()>
struct KernelFor {
  using type = WgForward<64, RA, forward_candidate(RA, I).tile, forward_candidate(RA, I).split_kv,
                         forward_candidate(RA, I).min_blocks, forward_candidate(RA, I).big_smem>;
};
template <bool RA, int I>
struct KernelFor<RA, I, 1> {
  using type = WgForwardOverlap<64, RA, forward_candidate(RA, I).tile, forward_candidate(RA, I).min_blocks,
                                forward_candidate(RA, I).big_smem>;
};
template <bool RA, int I>
struct KernelFor<RA, I, 2> {
  static_assert(RA && forward_candidate(RA, I).big_smem, "window kernels are RA's, past 48 KiB");
  using type = WgWindowForward<64, forward_candidate(RA, I).tile, forward_candidate(RA, I).min_blocks>;
};
template <bool RA, int I>
using KernelOf = typename KernelFor<RA, I>::type;

// What a wgmma traits entry names: the forward candidates' kernels or the
// backward candidates' dQ kernels (their q entries).
enum class WgPass { forward, backward_q, backward_kv };
template <WgPass P, bool RA, int I>
struct WgEntry {
  static constexpr TensorCoreTraits tr = forward_candidate(RA, I);
  using type = KernelOf<RA, I>;
};
// (window entries: ra_window's two-phase kernels, whose band tile is the entry's tile)
template <bool RA, int I>
struct WgEntry<WgPass::backward_q, RA, I> {
  static constexpr TensorCoreTraits tr = backward_candidate(RA, I).q;
  static_assert(!tr.window || (RA && tr.big_smem && tr.tile == 32), "window kernels are RA's, 32-key band tiles");
  using type = std::conditional_t<tr.window, WgWindowBackwardQ<64, tr.min_blocks>,
                                  WgBackwardQ<64, RA, tr.tile, tr.min_blocks, tr.big_smem>>;
};
template <bool RA, int I>
struct WgEntry<WgPass::backward_kv, RA, I> {
  static constexpr TensorCoreTraits tr = backward_candidate(RA, I).kv;
  static_assert(!tr.window || (RA && tr.big_smem && tr.tile == 32), "window kernels are RA's, 32-query band tiles");
  using type = std::conditional_t<tr.window, WgWindowBackwardKV<64, tr.min_blocks>,
                                  WgBackwardKV<64, RA, tr.tile, tr.min_blocks, tr.big_smem>>;
};

// Calls f(kernel{}) for the wgmma entry of pass P whose traits are tr; false if none.
template <WgPass P, bool RA, class F, std::size_t... I>
bool with_entry(const TensorCoreTraits& tr, F&& f, std::index_sequence<I...>) {
  bool found = false;
  auto one_candidate = [&](auto i) {
    using E = WgEntry<P, RA, decltype(i)::value>;
    if constexpr (E::tr.wgmma) {
      if (!found && same_traits(E::tr, tr)) {
        found = true;
        f(typename E::type{});
      }
    }
  };
  (one_candidate(std::integral_constant<int, int(I)>{}), ...);
  return found;
}
template <WgPass P, class F>
bool with_kernel(bool ra, const TensorCoreTraits& tr, F&& f) {
  using All = std::make_index_sequence<P == WgPass::forward ? kForwardCandidates : kBackwardCandidates>;
  return ra ? with_entry<P, true>(tr, f, All{}) : with_entry<P, false>(tr, f, All{});
}
template <WgPass P>
std::size_t scratch_of(bool ra, int D, const TensorCoreTraits& tr) {
  std::size_t bytes = 0;
  if (pad_dim_is_64(D)) with_kernel<P>(ra, tr, [&](auto k) { bytes = decltype(k)::kScratch; });
  return bytes;
}
// One team per 64 query rows (forward, dQ) or 64 key rows (dK/dV) of every (b, h).
template <WgPass P>
void launch(const Kokkos::Cuda& exec, const Args& a, const TensorCoreTraits& tr, const char* name) {
  if (!wgmma_available() || !pad_dim_is_64(a.D))
    throw std::logic_error(std::string(name) + " called where the sm_90a kernel cannot run");
  const bool found = with_kernel<P>(a.ra, tr, [&](auto k) {
    using F = decltype(k);
    F f;
    f.a = a;
    f.scale = 1.f / std::sqrt(float(a.D));
    int teams = 0;
    if constexpr (P == WgPass::backward_kv) {
      f.n_ktiles = (a.T + F::BK - 1) / F::BK;
      f.n_qtiles = (a.T + F::BR - 1) / F::BR;
      teams = f.n_ktiles;
    } else {
      f.n_qtiles = (a.T + F::BR - 1) / F::BR;
      teams = f.n_qtiles;
    }
    Kokkos::parallel_for(name, team_policy<F>(exec, a.B * a.H * teams), f);
  });
  if (!found) throw std::logic_error(std::string(name) + ": no compiled kernel for these traits");
}

}  // namespace

bool wgmma_available() {
  static const bool ok = [] {
    int device = 0, major = 0, minor = 0;
    return cudaGetDevice(&device) == cudaSuccess &&
           cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) == cudaSuccess &&
           cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) == cudaSuccess &&
           major == 9 && minor == 0;
  }();
  return ok;
}

std::size_t wgmma_forward_scratch(bool ra, int D, const TensorCoreTraits& tr) {
  return scratch_of<WgPass::forward>(ra, D, tr);
}
void wgmma_forward(const Kokkos::Cuda& exec, const Args& a, const TensorCoreTraits& tr) {
  launch<WgPass::forward>(exec, a, tr, "ra::tc::forward_wgmma");
}
std::size_t wgmma_backward_q_scratch(bool ra, int D, const TensorCoreTraits& tr) {
  return scratch_of<WgPass::backward_q>(ra, D, tr);
}
void wgmma_backward_q(const Kokkos::Cuda& exec, const Args& a, const TensorCoreTraits& tr) {
  launch<WgPass::backward_q>(exec, a, tr, "ra::tc::backward_q_wgmma");
}
std::size_t wgmma_backward_kv_scratch(bool ra, int D, const TensorCoreTraits& tr) {
  return scratch_of<WgPass::backward_kv>(ra, D, tr);
}
void wgmma_backward_kv(const Kokkos::Cuda& exec, const Args& a, const TensorCoreTraits& tr) {
  launch<WgPass::backward_kv>(exec, a, tr, "ra::tc::backward_kv_wgmma");
}

#else  // no sm_90a object in this build (not HOPPER90)

bool wgmma_available() { return false; }
std::size_t wgmma_forward_scratch(bool, int, const TensorCoreTraits&) { return 0; }
void wgmma_forward(const Kokkos::Cuda&, const Args&, const TensorCoreTraits&) {
  throw std::logic_error("ra::kk::tc::wgmma_forward: this build has no sm_90a kernels");
}
std::size_t wgmma_backward_q_scratch(bool, int, const TensorCoreTraits&) { return 0; }
void wgmma_backward_q(const Kokkos::Cuda&, const Args&, const TensorCoreTraits&) {
  throw std::logic_error("ra::kk::tc::wgmma_backward_q: this build has no sm_90a kernels");
}
std::size_t wgmma_backward_kv_scratch(bool, int, const TensorCoreTraits&) { return 0; }
void wgmma_backward_kv(const Kokkos::Cuda&, const Args&, const TensorCoreTraits&) {
  throw std::logic_error("ra::kk::tc::wgmma_backward_kv: this build has no sm_90a kernels");
}

#endif

std::size_t team_shared_limit() {
  static const std::size_t limit = [] {
    // What TeamPolicy<Cuda>::scratch_size_max(0) keeps back from the block's
    // limit: team-reduction space for the largest team, and a shared ID.
    constexpr std::size_t reserved = (1024 + 2) * sizeof(double) + sizeof(std::int64_t);
    return std::size_t(Kokkos::TeamPolicy<Kokkos::Cuda>::scratch_size_max(0)) + reserved;
  }();
  return limit;
}

}  // namespace ra::kk::detail::tc
