// TF32 tensor-core forward and backward for float storage on CUDA (sm_80 / sm_86 / sm_90):
// fp32 tensors in memory and in shared memory, every tile product a warp-level
// mma.sync.m16n8k8 whose operands are rounded to TF32 (cvt.rna: 10-bit
// mantissa, the same rounding as PyTorch's allow_tf32), fp32 accumulation,
// softmax and outputs. Opt-in (Options::tf32): exact fp32 stays the default.
// The forward first; the backward's two kernels follow ("backward" below).
//
// Same algorithm and team layout as the bf16 forward in tensor_core_cuda.cpp
// (a Kokkos TeamPolicy functor of 4 warps, each owning 16 query rows whose Qf
// fragments stay in registers with the gates folded in; K/V tiles streamed by
// cp.async on FlashAttention-2's split schedule; online softmax in registers;
// RA in the folded form with the band logic of ra_window), with two changes
// that fp32 operands need:
//
// mma.m16n8k8 tf32 fragments (PTX ISA; lane = 4 g + t):
//   A (16x8, row): a0 = A[g][t]   a1 = A[g+8][t]   a2 = A[g][t+4]   a3 = A[g+8][t+4]
//   B (8x8, col):  b0 = B[t][g]   b1 = B[t+4][g]
//   C (16x8):      c0,c1 = C[g][2t,2t+1]   c2,c3 = C[g+8][2t,2t+1]
// 1. ldmatrix moves 8x8 matrices of 16-bit pairs, i.e. 32-bit words too: a
//    16-byte chunk of 4 floats is one matrix row, so a k-step of 8 floats is
//    two chunks and the A fragments (Q rows) and the QK^T B fragments (K rows)
//    load with exactly the bf16 kernel's lane addressing.
// 2. P V: the C fragment of S gives lane (g, t) the keys 2t and 2t+1, where an
//    A fragment wants t and t+4. Rather than shuffling, the product's k index
//    is permuted -- k = t means key 2t, k = t + 4 means key 2t + 1 -- and V is
//    read in the same order: b0 = V[2t][g], b1 = V[2t+1][g], two scalar shared
//    loads per mma (V rows are padded to D + 4 floats, so a warp's 32 loads
//    fall in 32 different banks).
#include <ra/kokkos/detail/tf32.hpp>
#include <ra/kokkos/kernel_traits.hpp>

#include "cuda_warp_primitives.hpp"
#include "tensor_core_primitives.hpp"  // tc::stage_rows

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>

namespace ra::kk::detail::tf32 {
namespace {

using namespace ra::kk::detail::cuda;  // cuda_warp_primitives.hpp

__device__ __forceinline__ u32 to_tf32(float x) {
  u32 r;
  asm("cvt.rna.tf32.f32 %0, %1;\n" : "=r"(r) : "f"(x));
  return r;
}
__device__ __forceinline__ u32 to_tf32(u32 bits) { return to_tf32(__uint_as_float(bits)); }

// c += a b  (16x8 tf32 times 8x8 tf32, fp32 accumulators)
__device__ __forceinline__ void mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// A tile of fp32 rows COLS wide in 16-byte chunks, XOR-swizzled per row so
// the 8 rows an ldmatrix reads at one chunk index hit 8 different bank groups.
template <int COLS>
struct SwizzledF {
  static constexpr int kChunks = COLS / 4;
  static_assert(kChunks >= 8, "rows of at least 32 floats");
  static constexpr int bytes(int rows) { return rows * COLS * 4; }
  // offset(r + kPeriodRows, c) == offset(r, c) + kPeriodRows * kRowBytes
  static constexpr int kRowBytes = COLS * 4, kPeriodRows = 8;
  __device__ static u32 offset(int row, int chunk) {
    return u32(row * COLS * 4 + ((chunk ^ (row & 7)) << 4));
  }
};
// Plain rows of COLS floats (V's D + 4, see the header), a layout for stage_rows.
template <int COLS>
struct PaddedF {
  static constexpr int kRowBytes = COLS * 4, kPeriodRows = 1;
  __device__ static u32 offset(int row, int chunk) { return u32(row * COLS * 4 + chunk * 16); }
};

// Rows row0.. of [a | b] (a: columns [0, D), b: [D, 2D) when COLS = 2D) into a
// swizzled tile, zero past T and past the real head dim Dact (a multiple of 4).
// Only the first CH 16-byte chunks of each row are written (CH = D / 4: the a
// half alone, for the backward's tiles that lie outside RA's band).
// tc::stage_rows copies it: it moves 16-byte chunks, and D floats are 2D bf16
// (its per-thread copies at constant offsets replaced a loop that divided and
// tested per chunk, ~25 instructions each: tensor_core_primitives.hpp).
template <int ROWS, int COLS, int D, int NT, int CH = COLS / 4, class L = SwizzledF<COLS>>
__device__ __forceinline__ void stage_rows(u32 tile, const float* a, const float* b, int row0,
                                           int T, int Dact, int tid) {
  using tc::bf16_t;
  tc::stage_rows<ROWS, 2 * COLS, 2 * D, NT, CH, L>(tile, reinterpret_cast<const bf16_t*>(a),
                                                   reinterpret_cast<const bf16_t*>(b), row0, T,
                                                   2 * Dact, tid);
}
// V rows row0.. into a plain tile with rows of D + 4 floats (see the header).
template <int ROWS, int D, int NT>
__device__ __forceinline__ void stage_v(u32 tile, const float* v, int row0, int T, int Dact,
                                        int tid) {
  stage_rows<ROWS, D, D, NT, D / 4, PaddedF<D + 4>>(tile, v, v, row0, T, Dact, tid);
}

// s[16 x N] += Qf[:, k-steps K0..K1-1] . Kf^T, Kf a staged swizzled tile of N rows.
template <int K0, int K1, int N, int W>
__device__ __forceinline__ void mma_qk(float (&s)[N / 8][4], const u32 (&qa)[W / 8][4], u32 kf,
                                       int lane) {
#pragma unroll
  for (int kk = K0; kk < K1; ++kk)
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      u32 b[4];
      ldsm_x4(b, kf + SwizzledF<W>::offset(np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                           2 * kk + ((lane >> 3) & 1)));
      mma(s[2 * np], qa[kk], to_tf32(b[0]), to_tf32(b[1]));
      mma(s[2 * np + 1], qa[kk], to_tf32(b[2]), to_tf32(b[3]));
    }
}

// Warps, key tile and teams per SM: tf32_traits in kernel_traits.hpp.
template <int D, bool RA>
struct Forward {
  static constexpr TensorCoreTraits kTraits = tf32_traits(D, RA);
  static constexpr int W = RA ? 2 * D : D, BC = kTraits.tile, WARPS = kTraits.warps,
                       BR = 16 * WARPS, NT = 32 * WARPS;
  static constexpr int kMinBlocks = kTraits.min_blocks;
  static constexpr int kKf = SwizzledF<W>::bytes(BC), kV = BC * (D + 4) * 4, kBias = 4 * BC;
  static constexpr std::size_t kScratch =
      std::max<std::size_t>(SwizzledF<W>::bytes(BR), std::size_t(kKf) + kV + kBias);
  static_assert(fits_team_shared(kScratch, NT), "Kokkos gives a team 48 KiB of shared memory");
  Args a;
  int n_qtiles = 0;
  float scale = 0;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const int T = a.T, Dact = a.D;
    const int qt = n_qtiles - 1 - team.league_rank() % n_qtiles;  // heaviest tiles first
    const int bh = team.league_rank() / n_qtiles, b = bh / a.H, h = bh % a.H;
    const int i0 = qt * BR, row0 = i0 + warp * 16;
    const std::size_t mat = std::size_t(bh) * T * Dact;
    const float *Q = a.q + mat, *K = a.k + mat, *V = a.v + mat;
    const float* dvec = RA ? a.d + std::size_t(bh) * T : nullptr;
    float g_std = 1.f, g_rec = 0.f, g_disc = 0.f;
    if constexpr (RA) {
      const float* gp = a.gates + (std::size_t(a.gate_batch == 1 ? 0 : b) * a.H + h) * 3;
      g_std = gp[0], g_rec = gp[1], g_disc = gp[2];
    }
    char* smem = aligned_scratch(team, kScratch);
    const u32 s0 = smem_u32(smem);

    // This warp's 16 rows of Qf = [w_std Q_i, w_rec K_i] as TF32 A fragments.
    stage_rows<BR, W, D, NT>(s0, Q, K, i0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    u32 qa[W / 8][4];
#pragma unroll
    for (int kk = 0; kk < W / 8; ++kk) {
      ldsm_x4(qa[kk], s0 + SwizzledF<W>::offset(warp * 16 + (lane & 15), 2 * kk + (lane >> 4)));
      const float f = RA ? (kk < D / 8 ? g_std : g_rec) : 1.f;
#pragma unroll
      for (int e = 0; e < 4; ++e) qa[kk][e] = to_tf32(__uint_as_float(qa[kk][e]) * f);
    }
    __syncthreads();  // the staging area becomes the Kf | V | bias buffers

    const u32 kf = s0, vs = s0 + kKf;
    const float* vsm = reinterpret_cast<const float*>(smem + kKf);
    const SharedFloats bias{smem_u32(smem) + kKf + kV};
    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;
    auto stage_k = [&](int kt) {
      stage_rows<BC, W, D, NT>(kf, K, Q, kt * BC, T, Dact, tid);
      if constexpr (RA) stage_vec<BC, NT>(s0 + kKf + kV, dvec, kt * BC, T, tid);
      cp_commit();
    };

    float o[D / 8][4];
    zero(o);
    float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
    const float sl = scale * kLog2e, bl = g_disc * kLog2e;
    const int g = lane >> 2, t = lane & 3;
    stage_k(0);
    for (int kt = 0; kt <= kt_last; ++kt) {
      cp_wait<0>();     // Kf(kt) and its bias have landed
      __syncthreads();  // ... for every thread; and every warp's P V(kt-1) is done with V
      stage_v<BC, D, NT>(vs, V, kt * BC, T, Dact, tid);
      cp_commit();

      const int j0 = kt * BC;
      float s[BC / 8][4];
      zero(s);
      if constexpr (RA) {
        const Kind kind = classify(RA, a.window, i0, BR, j0, BC, T);
        if (kind != kPlain) {
          mma_qk<D / 8, W / 8, BC, W>(s, qa, kf, lane);
          if (kind == kMixed) band_mask(s, lane, row0, j0, true, a.window);
        }
      }
      mma_qk<0, D / 8, BC, W>(s, qa, kf, lane);

      // Online softmax in the log2 domain; each quad of lanes shares two rows.
      online_softmax_step<RA>(s, m, l, o, lane, row0, j0, T, sl, bias, bl);

      cp_wait<0>();     // V(kt) has landed
      __syncthreads();  // ... for every thread; and every warp is done with Kf(kt), bias(kt)
      if (kt < kt_last) stage_k(kt + 1);

      // O += P V over the tile's keys, 8 at a time, k permuted as in the header.
#pragma unroll
      for (int kb = 0; kb < BC / 8; ++kb) {
        const u32 pa[4] = {to_tf32(s[kb][0]), to_tf32(s[kb][2]), to_tf32(s[kb][1]),
                           to_tf32(s[kb][3])};
        const float* v0 = vsm + (kb * 8 + 2 * t) * (D + 4) + g;
#pragma unroll
        for (int np = 0; np < D / 8; ++np)
          mma(o[np], pa, to_tf32(v0[np * 8]), to_tf32(v0[(D + 4) + np * 8]));
      }
    }

    float* O = a.o + mat;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = row0 + g + 8 * r;
      const float lsum = quad_sum(l[r]);
      if (i >= T) continue;
      const float inv = 1.f / lsum;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        const int c = frag_col(lane, n, 0);
        if (c < Dact)  // Dact is a multiple of 4 and c even: c + 1 < Dact too
          *reinterpret_cast<float2*>(O + std::size_t(i) * Dact + c) =
              make_float2(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
      }
      if (t == 0) a.lse[std::size_t(bh) * T + i] = (m[r] + log2f(lsum)) * kLn2;
    }
  }
};

// ================================================================== backward
// Two kernels with fp32t::backward's outputs and order (deterministic: every
// output element has one owner, no atomics):
//   BackwardKV  team per (b, h, 64 key rows):   dV_j = sum_i P_ij dO_i,
//               dKf_j = s sum_i dL_ij Qf_i (SDPA: dK; RA: part_dk / part_dq),
//               dd_j and the w_disc gate partial of the key tile
//   BackwardQ   team per (b, h, 64 query rows): dQf_i = s sum_j dL_ij Kf_j,
//               unfolded into dQ (+ part_dq) and dK (+ part_dk), and the
//               w_std / w_rec gate partials of the query tile
// the same structure as the bf16 backward in tensor_core_cuda.cpp: each warp
// owns 16 rows whose two operands (dQ kernel: [Q_i, K_i] without gates and
// dO_i; dK/dV kernel: the gated [w_std K_j, w_rec Q_j] and V_j) stay in
// registers as TF32 A fragments, the other side streams through two
// shared-memory stages by cp.async (tile t + 1 loads while t computes).
// Per streamed tile, three kinds of product:
//   logits S (or S^T) and dP (dP^T): A fragments from registers, B fragments
//     by ldmatrix from the swizzled stage -- mma_qk, as in the forward;
//   dQf += dL Kf, dV += P^T dO, dKf += dL^T Qf: A from the fp32 C fragments of
//     P / dL with the forward's permuted k index (k = t is the tile row 2t,
//     k = t + 4 the row 2t + 1), B read as scalars from the same swizzled
//     stage in that order (mma_pb). The scalars of one load instruction are
//     rows kb*8 + 2t (+1), columns 8n + g: the swizzle puts them in 32
//     different banks (chunk 2n + g/4 XOR 2t, float g % 4).
// Softmax, dL = P (dP - Delta), the column sums for dd and the gate sums are
// fp32 on the C fragments; only the mma operands are rounded to TF32.
// RA's band: the reciprocal halves are computed only on tiles that meet it
// (classify), masked on mixed tiles (band_mask), as the bf16 kernels do; the
// stages of tiles wholly outside it load only the first half.

// Shared-memory float at a 32-bit shared address. volatile: the stages are
// rewritten between tiles, so the load must stay where the syncs put it.
__device__ __forceinline__ float lds_f32(u32 addr) {
  float v;
  asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr));
  return v;
}

// The lane-dependent parts of the byte offsets at which a warp reads a
// swizzled fp32 tile (any width COLS >= 32); the rest of every offset is a
// compile-time constant of the unrolled loops (row blocks, and the chunk
// octet: the XOR swizzle only touches a chunk index's low 3 bits), so the
// products need these 14 address registers instead of one per (k, n) step,
// and tiles of different widths share them:
//   ab[m]       ldmatrix B fragments (mma_abt), k-step kk with kk % 4 = m:
//               row np*16 + rl (rl = (lane & 7) + 8 (lane >> 4)), chunk
//               2 kk + ((lane >> 3) & 1); offset = rl * COLS * 4 + ab[kk % 4]
//               + np * 16 * COLS * 4 + (kk / 4) * 128
//   pb[par][m]  scalar B reads (mma_pb), column block n with n % 4 = m: row
//               kb*8 + 2t + par, column 8n + g (chunk 2n + g/4, float g % 4);
//               offset = 2t * COLS * 4 + pb[par][n % 4] + (kb * 8 + par) * COLS * 4
//               + (n / 4) * 128
struct LaneOffsets {
  u32 ab[4], pb[2][4];
  int rl, t2;
  __device__ explicit LaneOffsets(int lane) {
    const int x = lane & 7, c1 = (lane >> 3) & 1, g = lane >> 2, t = lane & 3;
    rl = x + ((lane >> 4) << 3), t2 = 2 * t;
#pragma unroll
    for (int m = 0; m < 4; ++m) ab[m] = u32((((2 * m) | c1) ^ x) << 4);
#pragma unroll
    for (int par = 0; par < 2; ++par)
#pragma unroll
      for (int m = 0; m < 4; ++m)  // 2t + par is the row's index mod 8
        pb[par][m] = u32(((((2 * m) | (g >> 2)) ^ (2 * t + par)) << 4) + ((g & 3) << 2));
  }
};

// frag(kk, a) gives the A fragment of k-step kk.
template <int K0, int K1, int N, int COLS, class Frag>
__device__ __forceinline__ void mma_abt_from(float (&acc)[N / 8][4], Frag&& frag, u32 bt,
                                             const LaneOffsets& lo) {
  static_assert(0 <= K0 && K0 < K1 && 8 * K1 <= COLS && N % 16 == 0, "k-steps in range");
  bt += u32(lo.rl * COLS * 4);
#pragma unroll
  for (int kk = K0; kk < K1; ++kk) {
    u32 fa[4];
    frag(kk, fa);
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      u32 b[4];
      ldsm_x4(b, bt + lo.ab[kk & 3] + u32(np * 16 * COLS * 4 + (kk >> 2) * 128));
      mma(acc[2 * np], fa, to_tf32(b[0]), to_tf32(b[1]));
      mma(acc[2 * np + 1], fa, to_tf32(b[2]), to_tf32(b[3]));
    }
  }
}
// ... with the A fragments held in registers (KS k-steps).
template <int K0, int K1, int N, int COLS, int KS>
__device__ __forceinline__ void mma_abt(float (&acc)[N / 8][4], const u32 (&fa)[KS][4], u32 bt,
                                        const LaneOffsets& lo) {
  static_assert(K1 <= KS, "k-steps held");
  mma_abt_from<K0, K1, N, COLS>(
      acc,
      [&](int kk, u32(&f)[4]) {
#pragma unroll
        for (int e = 0; e < 4; ++e) f[e] = fa[kk][e];
      },
      bt, lo);
}

// acc[n-blocks NB0..NB1-1] += P . Bs: P is 16 x N, held as fp32 C fragments
// (N / 8 blocks); Bs the staged swizzled tile (base address bs) of N rows (P's
// columns) and COLS columns, of which the product reads 8 NB0 .. 8 NB1 - 1.
// The k index is permuted as in the forward's P V (see the header): A =
// {c0, c2, c1, c3} of a C block, B = rows 2t and 2t + 1 of its 8 tile rows.
template <int N, int COLS, int NB0, int NB1, int NACC>
__device__ __forceinline__ void mma_pb(float (&acc)[NACC][4], const float (&p)[N / 8][4], u32 bs,
                                       const LaneOffsets& lo) {
  static_assert(0 <= NB0 && NB0 < NB1 && NB1 <= NACC && 8 * NB1 <= COLS, "n-blocks in range");
  bs += u32(lo.t2 * COLS * 4);
#pragma unroll
  for (int kb = 0; kb < N / 8; ++kb) {
    const u32 pa[4] = {to_tf32(p[kb][0]), to_tf32(p[kb][2]), to_tf32(p[kb][1]),
                       to_tf32(p[kb][3])};
#pragma unroll
    for (int n = NB0; n < NB1; ++n) {
      const u32 at = bs + u32(kb * 8 * COLS * 4 + (n >> 2) * 128);
      mma(acc[n], pa, to_tf32(lds_f32(at + lo.pb[0][n & 3])),
          to_tf32(lds_f32(at + u32(COLS * 4) + lo.pb[1][n & 3])));
    }
  }
}

// This warp's 16 rows (row0..) of a staged swizzled tile as TF32 A fragments,
// column block kk times lo (kk < D / 8) or hi (the gates of a folded row).
template <int COLS, int D>
__device__ __forceinline__ void load_a(u32 (&f)[COLS / 8][4], u32 tile, int row0, int lane,
                                       float lo, float hi) {
#pragma unroll
  for (int kk = 0; kk < COLS / 8; ++kk) {
    ldsm_x4(f[kk], tile + SwizzledF<COLS>::offset(row0 + (lane & 15), 2 * kk + (lane >> 4)));
    const float s = kk < D / 8 ? lo : hi;
#pragma unroll
    for (int e = 0; e < 4; ++e) f[kk][e] = to_tf32(__uint_as_float(f[kk][e]) * s);
  }
}

// The second own operand of a backward kernel (dO_i in the dQ kernel, V_j in
// the dK/dV kernel; D wide), the A side of its dP product: TF32 fragments in
// registers, or (IN_SMEM: the traits' rows_in_smem) left in its staged tile
// and read by ldmatrix at each k-step of every streamed tile -- D / 2
// registers freed for D / 8 more ldmatrix per tile.
template <int D, bool IN_SMEM>
struct OwnOperand {
  u32 f[D / 8][4];
  __device__ void load(u32 tile, int row0, int lane) { load_a<D, D>(f, tile, row0, lane, 1.f, 1.f); }
  // acc[16 x N] += this . Bt^T over all D columns
  template <int N, int COLS>
  __device__ void abt(float (&acc)[N / 8][4], u32 bt, const LaneOffsets& lo) const {
    mma_abt<0, D / 8, N, COLS>(acc, f, bt, lo);
  }
};
template <int D>
struct OwnOperand<D, true> {
  u32 row = 0;  // shared address of the row this lane gives ldmatrix (as load_a)
  int hi = 0;   // its chunk within a k-step: lane >> 4
  int sw = 0;   // its swizzle: the row's index mod 8 = lane & 7 (row0 is a multiple of 16)
  __device__ void load(u32 tile, int row0, int lane) {
    row = tile + u32((row0 + (lane & 15)) * D * 4), hi = lane >> 4, sw = lane & 7;
  }
  template <int N, int COLS>
  __device__ void abt(float (&acc)[N / 8][4], u32 bt, const LaneOffsets& lo) const {
    mma_abt_from<0, D / 8, N, COLS>(
        acc,
        [&](int kk, u32(&f)[4]) {
          ldsm_x4(f, row + u32(((2 * kk + hi) ^ sw) << 4));
#pragma unroll
          for (int e = 0; e < 4; ++e) f[e] = to_tf32(f[e]);
        },
        bt, lo);
  }
};

// A streamed folded tile ([K_j, Q_j] or [Q_i, K_i]): both halves where the tile
// meets RA's band, else only the first (its products never read the second).
template <int ROWS, int W, int D, int NT>
__device__ __forceinline__ void stage_folded(u32 tile, const float* a, const float* b, int row0,
                                             int T, int Dact, int tid, bool both_halves) {
  if (W == D || both_halves)
    stage_rows<ROWS, W, D, NT>(tile, a, b, row0, T, Dact, tid);
  else
    stage_rows<ROWS, W, D, NT, D / 4>(tile, a, b, row0, T, Dact, tid);
}

// The gates (w_std, w_rec, w_disc) of the (b, h) matrix bh; SDPA: (1, 0, 0).
struct Gates {
  float std = 1.f, rec = 0.f, disc = 0.f;
};
__device__ __forceinline__ Gates gates_of(const BwdArgs& a, int bh) {
  Gates g;
  if (a.ra) {
    const int b = bh / a.H, h = bh % a.H;
    const float* gp = a.gates + (std::size_t(a.gate_batch == 1 ? 0 : b) * a.H + h) * 3;
    g.std = gp[0], g.rec = gp[1], g.disc = gp[2];
  }
  return g;
}

// f(r, n, x, c) for this lane's two rows x = row0 + g + 8r < T of a warp's
// C fragments and the even columns c = 8n + 2t < Dact of their blocks (Dact
// is a multiple of 4, so the pair c, c + 1 lies inside the row): the
// epilogues' float2 stores.
template <int D, class F>
__device__ __forceinline__ void each_pair(int row0, int lane, int T, int Dact, F&& f) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int x = row0 + (lane >> 2) + 8 * r;
    if (x >= T) continue;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int c = frag_col(lane, n, 0);
      if (c < Dact) f(r, n, x, c);
    }
  }
}

// What the two backward kernels share: the geometry of their traits entry
// (OWN = 64 own rows per team, TILE streamed rows per stage), their
// arguments, the Kokkos functor call, the own rows' loading, the stage
// pipeline step and the epilogue's team sum. Derived: the kernel (its body).
template <class Derived, int D, bool RA, TcPass PASS>
struct BwdKernel {
  static constexpr TensorCoreTraits kTraits = tf32_backward_traits(D, RA, PASS);
  static constexpr int W = RA ? 2 * D : D, TILE = kTraits.tile, WARPS = kTraits.warps,
                       OWN = 16 * WARPS, NT = 32 * WARPS;
  static constexpr int kMinBlocks = kTraits.min_blocks;
  static constexpr bool kZSmem = kTraits.rows_in_smem;  // the second own operand (OwnOperand)
  using Z = OwnOperand<D, kZSmem>;
  // One stage: a folded tile (TILE x W, swizzled), a D-wide tile (TILE x D)
  // and vectors of TILE floats (dQ kernel: d_j; dK/dV kernel: lse_i, Delta_i).
  static constexpr int kFold = SwizzledF<W>::bytes(TILE), kFlat = SwizzledF<D>::bytes(TILE),
                       kVecs = (PASS == TcPass::backward_kv ? 8 : 4) * TILE,
                       kStage = kFold + kFlat + kVecs;
  // The own rows are staged one operand at a time in the area the two stages
  // reuse afterwards, except a second operand kept in shared memory: it
  // stays in front of the stages (kPipe bytes).
  static constexpr int kPipe = kZSmem ? SwizzledF<D>::bytes(OWN) : 0;
  static constexpr std::size_t kScratch =
      std::max<std::size_t>(SwizzledF<W>::bytes(OWN), kPipe + 2 * std::size_t(kStage));
  static_assert(OWN == 64, "gate partials per 64-row tile, as fp32t::backward_partials");
  static_assert(TILE % 16 == 0 && kFold % 128 == 0 && kFlat % 128 == 0,
                "ldmatrix pairs, 16-byte aligned stages");
  static_assert(fits_team_shared(kScratch, NT), "Kokkos gives a team 48 KiB of shared memory");
  BwdArgs a;
  int n_own = 0, n_tiles = 0;  // tiles of OWN rows (the league), of TILE rows (streamed)
  float scale = 0;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((static_cast<const Derived*>(this)->body(team);))
  }

  // This team's OWN rows from row r0: [x | y] (W wide, column blocks times lo
  // | hi) into fw, then z (D wide) into fz, this warp's 16 each as TF32 A
  // fragments, one operand at a time through the scratch at s0 -- free for
  // the stages (from s0 + kPipe) when this returns; with kZSmem z stays
  // staged at s0.
  __device__ static void load_own(u32 (&fw)[W / 8][4], Z& fz, u32 s0, const float* x,
                                  const float* y, const float* z, int r0, int T, int Dact,
                                  float lo, float hi, int tid) {
    const int warp = tid >> 5, lane = tid & 31;
    stage_rows<OWN, W, D, NT>(s0, x, y, r0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    load_a<W, D>(fw, s0, warp * 16, lane, lo, hi);
    __syncthreads();  // every warp has its fw: the area takes z
    stage_rows<OWN, D, D, NT>(s0, z, z, r0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    fz.load(s0, warp * 16, lane);
    __syncthreads();  // every warp has its fz: the area (past kPipe) becomes the two stages
  }

  // Pipeline step of streamed tile t (stage(t) was issued before): issues
  // t + 1 if there is one -- into the buffer tile t - 1 used, released by the
  // sync that closed iteration t - 1 -- and waits until tile t has landed for
  // every thread.
  template <class Stage>
  __device__ static void next_stage(int t, int t_last, Stage&& stage) {
    if (t < t_last) {
      stage(t + 1);
      cp_wait<1>();
    } else {
      cp_wait<0>();
    }
    __syncthreads();
  }

  // acc += dL . [first | second half] of a folded stage fs (TILE rows):
  // the first half always, RA's second only where the tile meets the band,
  // with dL masked to it first on mixed tiles (in place: the first half is
  // done with the unmasked dL by then). Rows of dL: row_base.., queries or keys.
  template <int NACC>
  __device__ void dl_products(float (&acc)[NACC][4], float (&dl)[TILE / 8][4], u32 fs,
                              const LaneOffsets& lo, Kind kind, int lane, int row_base,
                              int col_base, bool rows_are_queries) const {
    mma_pb<TILE, W, 0, D / 8>(acc, dl, fs, lo);
    if constexpr (RA) {
      if (kind != kPlain) {
        if (kind == kMixed) band_mask(dl, lane, row_base, col_base, rows_are_queries, a.window);
        mma_pb<TILE, W, D / 8, W / 8>(acc, dl, fs, lo);
      }
    }
  }

  // Sum over the team's warps of one float per lane, through `red` (idle
  // shared memory: the stage loop closed with a sync); every thread gets it.
  __device__ static float team_sum(float x, float* red, int tid) {
    x = warp_sum(x);
    if ((tid & 31) == 0) red[tid >> 5] = x;
    __syncthreads();
    float s = 0.f;
    for (int w = 0; w < WARPS; ++w) s += red[w];
    return s;
  }
};

// ------------------------------------------------------------ query-owned kernel
// dQf_i = s sum_j dL_ij Kf_j for this team's 64 query rows, streaming key
// tiles of TILE rows (stage: Kf_j = [K_j, Q_j], V_j, d_j).
template <int D, bool RA>
struct BackwardQ : BwdKernel<BackwardQ<D, RA>, D, RA, TcPass::backward_q> {
  using Base = BwdKernel<BackwardQ<D, RA>, D, RA, TcPass::backward_q>;
  using Base::a, Base::scale, Base::n_own, Base::W, Base::NT, Base::kFold, Base::kFlat,
      Base::kStage, Base::kPipe, Base::kScratch;
  static constexpr int BR = Base::OWN, BC = Base::TILE;

  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const int T = a.T, Dact = a.D;
    const int qt = n_own - 1 - team.league_rank() % n_own;  // heaviest tiles first
    const int bh = team.league_rank() / n_own;
    const int i0 = qt * BR, row0 = i0 + warp * 16;
    const std::size_t mat = std::size_t(bh) * T * Dact;
    const float *Q = a.q + mat, *K = a.k + mat, *V = a.v + mat, *dO = a.dout + mat;
    const float* dvec = RA ? a.d + std::size_t(bh) * T : nullptr;
    const Gates gt = gates_of(a, bh);
    char* smem = aligned_scratch(team, kScratch);
    const u32 s0 = smem_u32(smem);

    // Own rows: [Q_i, K_i] WITHOUT the gates -- this kernel keeps the logits'
    // halves S_ij and S_ji apart, because the gate gradients are sums of dL
    // times each half (RA.md) -- and dO_i.
    u32 qa[W / 8][4];
    typename Base::Z da;
    Base::load_own(qa, da, s0, Q, K, dO, i0, T, Dact, 1.f, 1.f, tid);
    const u32 pipe = s0 + kPipe;
    const char* pipe_p = smem + kPipe;
    float lse2[2], delta[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = row0 + (lane >> 2) + 8 * r;
      lse2[r] = i < T ? a.lse[std::size_t(bh) * T + i] * kLog2e : 0.f;
      delta[r] = i < T ? a.delta[std::size_t(bh) * T + i] : 0.f;
    }

    const int kt_last = min(i0 + BR - 1, T - 1) / BC;
    auto stage_kv = [&](int kt) {
      const u32 st = pipe + (kt & 1) * kStage;
      stage_folded<BC, W, D, NT>(st, K, Q, kt * BC, T, Dact, tid,
                                 classify(RA, a.window, i0, BR, kt * BC, BC, T) != kPlain);
      stage_rows<BC, D, D, NT>(st + kFold, V, V, kt * BC, T, Dact, tid);
      if constexpr (RA) stage_vec<BC, NT>(st + kFold + kFlat, dvec, kt * BC, T, tid);
      cp_commit();
    };

    const LaneOffsets lo(lane);
    float dqf[W / 8][4];
    zero(dqf);
    float gstd = 0.f, grec = 0.f;  // this thread's shares of dw_std, dw_rec (unscaled)
    const float sl = scale * kLog2e, bl = gt.disc * kLog2e;
    stage_kv(0);
    for (int kt = 0; kt <= kt_last; ++kt) {
      Base::next_stage(kt, kt_last, stage_kv);
      const u32 kf = pipe + (kt & 1) * kStage, vs = kf + kFold;
      const SharedFloats bias{smem_u32(pipe_p) + (kt & 1) * kStage + kFold + kFlat};
      const int j0 = kt * BC;
      const Kind kind = classify(RA, a.window, i0, BR, j0, BC, T);
      // Rows = this warp's queries i, columns = the tile's keys j.
      float p[BC / 8][4], dp[BC / 8][4];
      float srec[RA ? BC / 8 : 1][4];  // S_ji, the reciprocal half (RA)
      zero(p);
      mma_abt<0, D / 8, BC, W>(p, qa, kf, lo);  // S_ij = Q_i . K_j
      if constexpr (RA) {
        zero(srec);
        if (kind != kPlain) mma_abt<D / 8, W / 8, BC, W>(srec, qa, kf, lo);  // K_i . Q_j
      }
      zero(dp);
      da.template abt<BC, D>(dp, vs, lo);  // dP = dO_i . V_j
      // dL; tiles wholly below the diagonal and inside T skip the per-element
      // visibility test (as the bf16 kernels do).
      auto to_dl = [&](auto masked) {
#pragma unroll
        for (int n = 0; n < BC / 8; ++n)
#pragma unroll
          for (int e = 0; e < 4; ++e) {
            const int i = row0 + frag_row(lane, e), c = frag_col(lane, n, e), j = j0 + c;
            float x = p[n][e];  // SDPA: S_ij; RA: w_std S_ij + w_rec [band] S_ji
            bool band = false;
            if constexpr (RA) {
              band = kind == kFull || (kind == kMixed && i - j <= a.window);
              x = gt.std * p[n][e] + (band ? gt.rec * srec[n][e] : 0.f);
            }
            float pr = fast_exp2(fmaf(x, sl, (RA ? bias[c] * bl : 0.f) - lse2[e >> 1]));
            if constexpr (decltype(masked)::value) {
              if (!(j <= i && j < T && i < T)) pr = 0.f;
            }
            const float dl = pr * (dp[n][e] - delta[e >> 1]);
            if constexpr (RA) {
              gstd += dl * p[n][e];
              if (band) grec += dl * srec[n][e];
            }
            p[n][e] = dl;
          }
      };
      if (j0 + BC - 1 <= row0 && j0 + BC <= T && row0 + 15 < T)
        to_dl(std::false_type{});
      else
        to_dl(std::true_type{});
      Base::dl_products(dqf, p, kf, lo, kind, lane, row0, j0, true);  // dQf += dL [K_j, Q_j]
      __syncthreads();  // every warp is done with stage kt (reloaded at kt + 2)
    }

    // SDPA: dQ = s dQf. RA: dQ_i = part_dq_i + w_std s dQf_i[0:D], dK_i =
    // part_dk_i + w_rec s dQf_i[D:2D].
    each_pair<D>(row0, lane, T, Dact, [&](int r, int n, int i, int c) {
      const std::size_t at = mat + std::size_t(i) * Dact + c;
      const float q0 = dqf[n][2 * r] * scale, q1 = dqf[n][2 * r + 1] * scale;
      if constexpr (RA) {
        const float k0 = dqf[D / 8 + n][2 * r] * scale, k1 = dqf[D / 8 + n][2 * r + 1] * scale;
        const float2 pq = *reinterpret_cast<const float2*>(a.part_dq + at);
        const float2 pk = *reinterpret_cast<const float2*>(a.part_dk + at);
        *reinterpret_cast<float2*>(a.dq + at) = make_float2(pq.x + gt.std * q0, pq.y + gt.std * q1);
        *reinterpret_cast<float2*>(a.dk + at) = make_float2(pk.x + gt.rec * k0, pk.y + gt.rec * k1);
      } else {
        *reinterpret_cast<float2*>(a.dq + at) = make_float2(q0, q1);
      }
    });
    if constexpr (RA) {
      float* red = reinterpret_cast<float*>(smem);
      const float s_std = Base::team_sum(gstd * scale, red, tid);
      const float s_rec = Base::team_sum(grec * scale, red + Base::WARPS, tid);
      if (tid == 0) {
        float* gp = a.gate_partials + (std::size_t(bh) * a.n_partials + qt) * 3;
        gp[0] = s_std, gp[1] = s_rec;
      }
    }
  }
};

// -------------------------------------------------------------- key-owned kernel
// dV_j, dKf_j for this team's 64 key rows, streaming query tiles of TILE rows
// (stage: [Q_i, K_i], dO_i, lse_i, Delta_i).
template <int D, bool RA>
struct BackwardKV : BwdKernel<BackwardKV<D, RA>, D, RA, TcPass::backward_kv> {
  using Base = BwdKernel<BackwardKV<D, RA>, D, RA, TcPass::backward_kv>;
  using Base::a, Base::scale, Base::n_own, Base::n_tiles, Base::W, Base::NT, Base::kFold,
      Base::kFlat, Base::kStage, Base::kPipe, Base::kScratch;
  static constexpr int BK = Base::OWN, BR = Base::TILE;

  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const int T = a.T, Dact = a.D;
    const int kt = team.league_rank() % n_own;  // low key tiles see the most queries: first
    const int bh = team.league_rank() / n_own;
    const int j0 = kt * BK, key0 = j0 + warp * 16;
    const std::size_t mat = std::size_t(bh) * T * Dact;
    const float *Q = a.q + mat, *K = a.k + mat, *V = a.v + mat, *dO = a.dout + mat;
    const float* lse = a.lse + std::size_t(bh) * T;
    const float* dlt = a.delta + std::size_t(bh) * T;
    const Gates gt = gates_of(a, bh);
    char* smem = aligned_scratch(team, kScratch);
    const u32 s0 = smem_u32(smem);

    // Own rows: Kf'_j = [w_std K_j, w_rec Q_j] (gates folded in, so that
    // Kf'_j . [Q_i, K_i] is the folded logit) and V_j.
    u32 ka[W / 8][4];
    typename Base::Z va;
    Base::load_own(ka, va, s0, K, Q, V, j0, T, Dact, gt.std, gt.rec, tid);
    const u32 pipe = s0 + kPipe;
    const char* pipe_p = smem + kPipe;
    float bias2[2] = {0.f, 0.f};  // w_disc d_j log2 e of this lane's two key rows
    if constexpr (RA) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int j = key0 + (lane >> 2) + 8 * r;
        bias2[r] = j < T ? gt.disc * a.d[std::size_t(bh) * T + j] * kLog2e : 0.f;
      }
    }

    const int qt_first = j0 / BR, qt_last = n_tiles - 1;  // earlier tiles: above the diagonal
    auto stage_q = [&](int qt) {
      const u32 st = pipe + (qt & 1) * kStage;
      stage_folded<BR, W, D, NT>(st, Q, K, qt * BR, T, Dact, tid,
                                 classify(RA, a.window, qt * BR, BR, j0, BK, T) != kPlain);
      stage_rows<BR, D, D, NT>(st + kFold, dO, dO, qt * BR, T, Dact, tid);
      stage_vec<BR, NT>(st + kFold + kFlat, lse, qt * BR, T, tid);
      stage_vec<BR, NT>(st + kFold + kFlat + 4 * BR, dlt, qt * BR, T, tid);
      cp_commit();
    };

    const LaneOffsets lo(lane);
    float dkf[W / 8][4], dv[D / 8][4];
    zero(dkf);
    zero(dv);
    float colsum[2] = {0.f, 0.f};  // column sums of dL over this lane's two key rows
    const float sl = scale * kLog2e;
    stage_q(qt_first);
    for (int qt = qt_first; qt <= qt_last; ++qt) {
      Base::next_stage(qt, qt_last, stage_q);
      const u32 qs = pipe + (qt & 1) * kStage, dos = qs + kFold;
      const SharedFloats vec{smem_u32(pipe_p) + (qt & 1) * kStage + kFold + kFlat};
      const int i0 = qt * BR;
      const Kind kind = classify(RA, a.window, i0, BR, j0, BK, T);
      // Transposed tiles: rows = this warp's keys j, columns = the tile's queries i.
      float p[BR / 8][4], dp[BR / 8][4];
      zero(p);
      if constexpr (RA) {
        if (kind != kPlain) {  // w_rec Q_j . K_i first, masked to the band on mixed tiles
          mma_abt<D / 8, W / 8, BR, W>(p, ka, qs, lo);
          if (kind == kMixed) band_mask(p, lane, key0, i0, false, a.window);
        }
      }
      mma_abt<0, D / 8, BR, W>(p, ka, qs, lo);  // + w_std K_j . Q_i
      zero(dp);
      va.template abt<BR, D>(dp, dos, lo);  // dP^T = V_j . dO_i
      key_tile_p_dl<RA>(p, dp, colsum, vec, bias2, sl, lane, key0, i0, T);  // P^T, dL^T
      mma_pb<BR, D, 0, D / 8>(dv, p, dos, lo);  // dV += P^T dO
      Base::dl_products(dkf, dp, qs, lo, kind, lane, key0, i0, false);  // dKf += dL^T [Q_i, K_i]
      __syncthreads();  // every warp is done with stage qt (reloaded at qt + 2)
    }

    // dV; SDPA: dK = s dKf; RA: part_dk = w_std s dKf[0:D], part_dq = w_rec s
    // dKf[D:2D] (the query-owned kernel adds them), dd_j = w_disc sum_i dL_ij,
    // dw_disc = sum_j d_j sum_i dL_ij.
    float cs[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) cs[r] = quad_sum(colsum[r]);  // every lane, before any skips
    each_pair<D>(key0, lane, T, Dact, [&](int r, int n, int j, int c) {
      const std::size_t at = mat + std::size_t(j) * Dact + c;
      *reinterpret_cast<float2*>(a.dv + at) = make_float2(dv[n][2 * r], dv[n][2 * r + 1]);
      const float k0 = dkf[n][2 * r] * scale * gt.std, k1 = dkf[n][2 * r + 1] * scale * gt.std;
      if constexpr (RA) {
        *reinterpret_cast<float2*>(a.part_dk + at) = make_float2(k0, k1);
        *reinterpret_cast<float2*>(a.part_dq + at) =
            make_float2(dkf[D / 8 + n][2 * r] * scale * gt.rec, dkf[D / 8 + n][2 * r + 1] * scale * gt.rec);
      } else {
        *reinterpret_cast<float2*>(a.dk + at) = make_float2(k0, k1);
      }
    });
    if constexpr (RA) {
      float gdisc = 0.f;
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int j = key0 + (lane >> 2) + 8 * r;
        if ((lane & 3) == 0 && j < T) {
          a.dd[std::size_t(bh) * T + j] = gt.disc * cs[r];
          gdisc += a.d[std::size_t(bh) * T + j] * cs[r];
        }
      }
      const float s = Base::team_sum(gdisc, reinterpret_cast<float*>(smem), tid);
      if (tid == 0) a.gate_partials[(std::size_t(bh) * a.n_partials + kt) * 3 + 2] = s;
    }
  }
};

int pad_dim(int D) { return D <= 32 ? 32 : D <= 64 ? 64 : 128; }

// Calls f(integral_constant<D_pad>, bool_constant<RA>) for a supported problem.
template <class F>
void with_dims(int D, bool ra, F&& f) {
  const int dp = pad_dim(D);
  if (ra) {
    if (dp == 32) return f(std::integral_constant<int, 32>{}, std::true_type{});
    return f(std::integral_constant<int, 64>{}, std::true_type{});
  }
  if (dp == 32) return f(std::integral_constant<int, 32>{}, std::false_type{});
  if (dp == 64) return f(std::integral_constant<int, 64>{}, std::false_type{});
  return f(std::integral_constant<int, 128>{}, std::false_type{});
}

// One backward kernel K on a league of (b, h, 64-row tile) teams.
template <class K>
void launch_bwd(const Kokkos::Cuda& exec, const BwdArgs& a, const char* name) {
  K k;
  k.a = a;
  k.n_own = (a.T + K::OWN - 1) / K::OWN;
  k.n_tiles = (a.T + K::TILE - 1) / K::TILE;
  k.scale = 1.f / std::sqrt(float(a.D));
  Kokkos::parallel_for(name, team_policy<K>(exec, a.B * a.H * k.n_own), k);
}

// Calls f(integral_constant<D_pad>, bool_constant<RA>) for a problem the
// backward takes (D_pad 32 or 64: backward_unsupported).
template <class F>
void with_bwd_dims(int D, bool ra, F&& f) {
  const bool narrow = pad_dim(D) == 32;
  if (ra) {
    if (narrow) return f(std::integral_constant<int, 32>{}, std::true_type{});
    return f(std::integral_constant<int, 64>{}, std::true_type{});
  }
  if (narrow) return f(std::integral_constant<int, 32>{}, std::false_type{});
  return f(std::integral_constant<int, 64>{}, std::false_type{});
}

}  // namespace

std::string unsupported(bool ra, int D) {
  if (D % 4 != 0)
    return "head dim D = " + std::to_string(D) + " is not a multiple of 4 (16-byte rows)";
  if (D > 128) return "head dim D = " + std::to_string(D) + " > 128";
  if (ra && D > 64)
    return "RA at head dim D = " + std::to_string(D) +
           " > 64: the folded rows (2D floats) do not fit 48 KiB of team scratch";
  return "";
}

TilePlan forward_plan(bool ra, int D) {
  TilePlan plan;
  with_dims(D, ra, [&](auto dp_c, auto ra_c) {
    using F = Forward<decltype(dp_c)::value, decltype(ra_c)::value>;
    plan.path = "tensor-core tf32";
    plan.br = F::BR, plan.bc = F::BC, plan.team_size = F::NT, plan.vector_length = 1;
    plan.scratch_level = 0, plan.scratch_bytes = F::kScratch + 128;
  });
  return plan;
}

void forward(const Kokkos::Cuda& exec, const Args& a) {
  if (!unsupported(a.ra, a.D).empty())
    throw std::logic_error("ra::kk::tf32::forward called for an unsupported problem");
  with_dims(a.D, a.ra, [&](auto dp_c, auto ra_c) {
    using F = Forward<decltype(dp_c)::value, decltype(ra_c)::value>;
    F f;
    f.a = a;
    f.n_qtiles = (a.T + F::BR - 1) / F::BR;
    f.scale = 1.f / std::sqrt(float(a.D));
    Kokkos::parallel_for("ra::tf32::forward", team_policy<F>(exec, a.B * a.H * f.n_qtiles), f);
  });
}

std::string backward_unsupported(bool ra, int D) {
  if (std::string why = unsupported(ra, D); !why.empty()) return why;
  // tf32_backward_traits: at D_pad = 128 the key-owned kernel's own-row
  // fragments (K_j, V_j) and accumulators (dK, dV) alone are 256 registers.
  if (D > 64)
    return "head dim D = " + std::to_string(D) +
           " > 64: the backward's fp32 fragments and accumulators exceed 255 registers";
  return "";
}

TilePlan backward_plan(bool ra, int D) {
  TilePlan plan;
  with_bwd_dims(D, ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    using Q = BackwardQ<dp, decltype(ra_c)::value>;
    using KV = BackwardKV<dp, decltype(ra_c)::value>;
    plan.path = "tensor-core tf32 bwd q" + std::to_string(Q::BR) + "x" + std::to_string(Q::BC) +
                " kv" + std::to_string(KV::BK) + "x" + std::to_string(KV::BR) + " dp" +
                std::to_string(dp) + (ra ? " ra" : "");
    plan.br = Q::BR, plan.bc = Q::BC, plan.team_size = Q::NT, plan.vector_length = 1;
    plan.scratch_level = 0, plan.scratch_bytes = std::max(Q::kScratch, KV::kScratch) + 128;
  });
  return plan;
}

int backward_partials(int T) { return (T + 63) / 64; }  // both kernels own 64-row tiles

void backward(const Kokkos::Cuda& exec, const BwdArgs& a) {
  if (!backward_unsupported(a.ra, a.D).empty())
    throw std::logic_error("ra::kk::tf32::backward called for an unsupported problem");
  if (a.n_partials < backward_partials(a.T))
    throw std::logic_error("ra::kk::tf32::backward: gate_partials has too few slots");
  with_bwd_dims(a.D, a.ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool ra = decltype(ra_c)::value;
    // Key-owned kernel first: RA's query-owned kernel adds its part_dq / part_dk.
    launch_bwd<BackwardKV<dp, ra>>(exec, a, "ra::tf32::backward_kv");
    launch_bwd<BackwardQ<dp, ra>>(exec, a, "ra::tf32::backward_q");
  });
}

}  // namespace ra::kk::detail::tf32
