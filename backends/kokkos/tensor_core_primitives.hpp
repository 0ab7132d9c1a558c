// The bf16 tensor-core building blocks of the CUDA attention kernels: the
// mma.sync wrapper, the swizzled shared-memory tile layout and its staging
// (cp.async), A/B fragment loads (ldmatrix), the tile products, band masks,
// gates and the folded-logit (band) logic. Shared by tensor_core_cuda.cpp
// (the mma.sync kernels, sm_80/86/90) and wgmma_cuda.cpp (the sm_90a
// warpgroup kernels), so both read and write tiles the same way.
// Private to backends/kokkos (device code; include only from .cpp files that
// nvcc compiles for CUDA).
#pragma once

#include <ra/kokkos/detail/tensor_core.hpp>

#include "cuda_warp_primitives.hpp"

#include <cuda_bf16.h>

#include <cstdint>
#include <type_traits>
#include <utility>

namespace ra::kk::detail::tc {
namespace {

using namespace ra::kk::detail::cuda;  // cuda_warp_primitives.hpp
using bf16_t = __nv_bfloat16;

// ------------------------------------------------------------------ primitives
// c += a b  (16x16 bf16 times 16x8 bf16, fp32 accumulators)
__device__ __forceinline__ void mma(float (&c)[4], const u32 (&a)[4], u32 b0, u32 b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
      "{%8,%9}, {%0,%1,%2,%3};\n"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ u32 pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<u32*>(&v);
}
__device__ __forceinline__ u32 scale_bf16x2(u32 x, float s) {
  const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&x));
  return pack_bf16(f.x * s, f.y * s);
}
// A tile of bf16 rows COLS wide in shared memory, in 16-byte chunks whose
// order is XOR-swizzled per row so that the 8 rows an ldmatrix reads at one
// chunk index fall in 8 different bank groups (no padding, no conflicts).
template <int COLS>
struct Swizzled {
  static constexpr int kChunks = COLS / 8;
  static_assert(kChunks == 4 || kChunks % 8 == 0, "tile widths are 32 or multiples of 64");
  static constexpr int kShift = kChunks >= 8 ? 0 : 1;  // 32 wide: two rows per 128 bytes
  static constexpr int kMask = kChunks >= 8 ? 7 : 3;
  static constexpr int bytes(int rows) { return rows * COLS * 2; }
  // offset(r + kPeriodRows, c) == offset(r, c) + kPeriodRows * kRowBytes
  static constexpr int kRowBytes = COLS * 2, kPeriodRows = 8;
  __device__ static u32 offset(int row, int chunk) {
    return u32(row * COLS * 2 + ((chunk ^ ((row >> kShift) & kMask)) << 4));
  }
};

// Rows row0.. of one (b, h) matrix pair into a swizzled tile: columns [0, D)
// from a, [D, 2D) from b (when COLS = 2D); zero past T and past the real head
// dim Dact (D is the padded one). Only the first CH 16-byte chunks of each row
// are written (CH = D / 8: the a half alone). Issued by all NT threads, no wait.
// L places chunk c of row r (L::offset(r, c)): Swizzled<COLS> for the ldmatrix
// kernels, the wgmma operand layout in wgmma_cuda.cpp.
//
// Where NT threads cover the tile in whole passes (every tile of the tuned
// kernels), thread t copies chunk column t % CH of rows t / CH + k * RS (RS =
// NT / CH), so its source column, matrix and swizzle are the same at every k
// and every call: the k-th copy is the first one plus constant offsets, which
// the instructions carry as immediates when the rows are whole (Dact = D) and
// the tile lies inside T. (The plain loop below computed a 64-bit row address,
// a signed division, the swizzle and two bounds tests per 16-byte chunk: ~25
// instructions, 40% of what the sm_90a forward issued per key tile; H100 SASS,
// docs/perf.md v21.)
template <int ROWS, int COLS, int D, int NT, int CH = COLS / 8, class L = Swizzled<COLS>>
__device__ __forceinline__ void stage_rows(u32 tile, const bf16_t* a, const bf16_t* b, int row0,
                                           int T, int Dact, int tid) {
  constexpr int kCh = CH, kChD = D / 8;
  if constexpr (NT % kCh == 0 && (ROWS * kCh) % NT == 0) {
    constexpr int RS = NT / kCh, N = ROWS * kCh / NT;
    const int c = int(unsigned(tid) % kCh), r = int(unsigned(tid) / kCh), cc = c % kChD;
    const bf16_t* base = c < kChD ? a : b;  // a mapped address for the zero-filling copies
    const bf16_t* src = base + cc * 8;
    auto dst = [&](int k) {
      if constexpr (RS % L::kPeriodRows == 0)
        return tile + L::offset(r, c) + u32(k * RS * L::kRowBytes);
      else
        return tile + L::offset(r + k * RS, c);
    };
    if (Dact == D && row0 + ROWS <= T) {  // team-uniform: every tile but a last partial one
      const bf16_t* p = src + std::size_t(row0 + r) * D;
#pragma unroll
      for (int k = 0; k < N; ++k) cp_async16_full(dst(k), p + k * RS * D);
    } else {
      const bool col_ok = cc * 8 < Dact;
#pragma unroll
      for (int k = 0; k < N; ++k) {
        const int row = row0 + r + k * RS;
        const bool valid = col_ok && row < T;
        cp_async16(dst(k), valid ? src + std::size_t(row) * Dact : base, valid);
      }
    }
  } else {
    for (int idx = tid; idx < ROWS * kCh; idx += NT) {
      const int r = idx / kCh, c = idx % kCh;
      const int cc = c % kChD, row = row0 + r;
      const bool valid = row < T && cc * 8 < Dact;
      const bf16_t* src = (c < kChD ? a : b) + (valid ? std::size_t(row) * Dact + cc * 8 : 0);
      cp_async16(tile + L::offset(r, c), src, valid);
    }
  }
}
// A-fragments of this warp's 16 rows of a staged tile, k-steps K0..K1-1.
template <int COLS, int KSTEPS>
__device__ __forceinline__ void load_a(u32 (&frag)[KSTEPS][4], u32 tile, int row0, int lane) {
#pragma unroll
  for (int kk = 0; kk < KSTEPS; ++kk)
    ldsm_x4(frag[kk], tile + Swizzled<COLS>::offset(row0 + (lane & 15), 2 * kk + (lane >> 4)));
}

// The product helpers work on MT m-tiles of 16 rows per warp at once: each B
// fragment read from shared memory by ldmatrix feeds MT mma's, so a warp with
// more rows does more tensor-core work per byte of shared-memory traffic.
//
// One k-step kk of acc[mt][16 x N] += a[mt] . Bt^T where Bt is a staged tile of N
// rows (its rows are the product's columns): each B fragment feeds MT mma's.
template <int N, int COLS, int MT>
__device__ __forceinline__ void mma_kstep_abt(float (&acc)[MT][N / 8][4], const u32 (&a)[MT][4],
                                              u32 bt, int kk, int lane) {
#pragma unroll
  for (int np = 0; np < N / 16; ++np) {
    u32 b[4];
    ldsm_x4(b, bt + Swizzled<COLS>::offset(np * 16 + (lane & 7) + ((lane >> 4) << 3),
                                           2 * kk + ((lane >> 3) & 1)));
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
      mma(acc[mt][2 * np], a[mt], b[0], b[1]);
      mma(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
    }
  }
}

// acc[mt][16 x N] += A[mt][16 x K-range] . Bt^T, k-steps K0..K1-1 of 16, with A
// held as fragments in registers.
template <int K0, int K1, int N, int COLS, int MT, int KSTEPS>
__device__ __forceinline__ void mma_abt(float (&acc)[MT][N / 8][4],
                                        const u32 (&a)[MT][KSTEPS][4], u32 bt, int lane) {
#pragma unroll
  for (int kk = K0; kk < K1; ++kk) {
    u32 ak[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
      for (int e = 0; e < 4; ++e) ak[mt][e] = a[mt][kk][e];
    mma_kstep_abt<N, COLS>(acc, ak, bt, kk, lane);
  }
}

// The same product with A read from a staged tile (rows a_row0 + 16 mt of a
// COLS_A-wide tile) by ldmatrix at each k-step instead of held in registers:
// the forward's rows_in_smem. Per k-step a warp reads MT A fragments and
// N / 16 B fragments for 2 MT N / 8 mma's.
template <int K0, int K1, int N, int COLS, int MT, int COLS_A>
__device__ __forceinline__ void mma_abt_sa(float (&acc)[MT][N / 8][4], u32 at, int a_row0,
                                           u32 bt, int lane) {
#pragma unroll
  for (int kk = K0; kk < K1; ++kk) {
    u32 a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
      ldsm_x4(a[mt], at + Swizzled<COLS_A>::offset(a_row0 + 16 * mt + (lane & 15), 2 * kk + (lane >> 4)));
    mma_kstep_abt<N, COLS>(acc, a, bt, kk, lane);
  }
}

// The A-fragment (16 x 16 bf16) of k-step kk of a tile held as fp32 C-fragments.
template <int NB>
__device__ __forceinline__ void c_to_a(u32 (&a)[4], const float (&c)[NB][4], int kk) {
  a[0] = pack_bf16(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack_bf16(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack_bf16(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack_bf16(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// acc[mt][n-pairs NP0..NP1-1 of 16 x COLS] += P[mt][16 x K] . Bs where P is given
// as fp32 C-fragments (K/8 blocks) and Bs a staged tile of K rows (its columns
// 16 NP0 .. 16 NP1 - 1: e.g. only the first half of Kf for SDPA-cost tiles).
template <int K, int COLS, int NP0, int NP1, int NACC, int MT>
__device__ __forceinline__ void mma_pb(float (&acc)[MT][NACC][4], const float (&p)[MT][K / 8][4],
                                       u32 bs, int lane) {
  static_assert(0 <= NP0 && NP0 < NP1 && NP1 <= NACC / 2, "n-pairs inside the accumulator");
#pragma unroll
  for (int kk = 0; kk < K / 16; ++kk) {
    u32 a[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) c_to_a(a[mt], p[mt], kk);
#pragma unroll
    for (int np = NP0; np < NP1; ++np) {
      u32 b[4];
      ldsm_x4_trans(b, bs + Swizzled<COLS>::offset(kk * 16 + (lane & 15), 2 * np + (lane >> 4)));
#pragma unroll
      for (int mt = 0; mt < MT; ++mt) {
        mma(acc[mt][2 * np], a[mt], b[0], b[1]);
        mma(acc[mt][2 * np + 1], a[mt], b[2], b[3]);
      }
    }
  }
}

// A single-m-tile array seen as an MT = 1 array (same layout), for the backward kernels.
template <class T, int N0, int N1>
__device__ __forceinline__ T (&one(T (&x)[N0][N1]))[1][N0][N1] {
  return reinterpret_cast<T(&)[1][N0][N1]>(x);
}
template <class T, int N0, int N1>
__device__ __forceinline__ const T (&one(const T (&x)[N0][N1]))[1][N0][N1] {
  return reinterpret_cast<const T(&)[1][N0][N1]>(x);
}

// The team's own rows as the A operand of a warp's products (its 16 rows of
// a staged COLS-wide tile): held as fragments in registers, or (IN_SMEM, the
// traits' rows_in_smem) left in the staged tile and read by ldmatrix at each
// k-step, which frees COLS / 4 registers per thread.
template <int COLS, bool IN_SMEM>
struct OwnRows {
  u32 f[COLS / 16][4];
  __device__ void load(u32 tile, int row0, int lane) { load_a<COLS, COLS / 16>(f, tile, row0, lane); }
  // acc[16 x N] += rows[:, k-steps K0..K1-1] . Bt^T
  template <int K0, int K1, int N, int COLS_B>
  __device__ void abt(float (&acc)[N / 8][4], u32 bt, int lane) const {
    mma_abt<K0, K1, N, COLS_B>(one(acc), one(f), bt, lane);
  }
};
template <int COLS>
struct OwnRows<COLS, true> {
  u32 tile = 0;
  int row0 = 0;
  __device__ void load(u32 t, int r0, int) { tile = t, row0 = r0; }
  template <int K0, int K1, int N, int COLS_B>
  __device__ void abt(float (&acc)[N / 8][4], u32 bt, int lane) const {
    mma_abt_sa<K0, K1, N, COLS_B, 1, COLS>(one(acc), tile, row0, bt, lane);
  }
};

// Top of an iteration of a two-stage pipeline over tiles 0..last: tile t+1's
// loads (stage(t + 1), which issues them) go out into the other stage, then
// tile t's wait is over for every thread.
template <class Stage>
__device__ __forceinline__ void two_stage_next(int t, int last, Stage&& stage) {
  if (t < last) {
    stage(t + 1);
    cp_commit();
    cp_wait<1>();
  } else {
    cp_wait<0>();
  }
  __syncthreads();
}

// Multiplies columns [0, D) of a staged ROWS x COLS tile by lo and [D, COLS) by hi
// in place (the gates folded into own rows that stay in shared memory).
// A streamed folded tile ([K_j, Q_j] or [Q_i, K_i]): both halves, or only the
// first where the tile lies wholly outside the reciprocity band (kPlain: its
// products never read the second half, so half the loads are saved there).
// L as for stage_rows.
template <int ROWS, int W, int D, int NT, class L = Swizzled<W>>
__device__ __forceinline__ void stage_folded(u32 tile, const bf16_t* a, const bf16_t* b, int row0,
                                             int T, int Dact, int tid, bool both_halves) {
  if (W == D || both_halves)
    stage_rows<ROWS, W, D, NT, W / 8, L>(tile, a, b, row0, T, Dact, tid);
  else
    stage_rows<ROWS, W, D, NT, D / 8, L>(tile, a, b, row0, T, Dact, tid);
}

template <int ROWS, int COLS, int D, int NT>
__device__ __forceinline__ void scale_tile_halves(char* tile, float lo, float hi, int tid) {
  using S = Swizzled<COLS>;
  for (int idx = tid; idx < ROWS * S::kChunks; idx += NT) {
    const int r = idx / S::kChunks, phys = idx % S::kChunks;
    const int logical = phys ^ ((r >> S::kShift) & S::kMask);  // the swizzle is its own inverse
    const float f = logical < D / 8 ? lo : hi;
    uint4* chunk = reinterpret_cast<uint4*>(tile + r * COLS * 2 + phys * 16);
    uint4 v = *chunk;
    v.x = scale_bf16x2(v.x, f), v.y = scale_bf16x2(v.y, f);
    v.z = scale_bf16x2(v.z, f), v.w = scale_bf16x2(v.w, f);
    *chunk = v;
  }
}

// A warp's 16 x N tile held as fp32 C-fragments, rows row0.. of a swizzled
// N-wide bf16 tile: lane 4g + t writes a 4-byte column pair in row g and g + 8
// of each 16-byte chunk (8 rows of one chunk index are 8 bank groups).
template <int N>
__device__ __forceinline__ void store_c_bf16(char* tile, const float (&c)[N / 8][4], int row0, int lane) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int n = 0; n < N / 8; ++n) {
    *reinterpret_cast<u32*>(tile + Swizzled<N>::offset(row0 + g, n) + 4 * t) = pack_bf16(c[n][0], c[n][1]);
    *reinterpret_cast<u32*>(tile + Swizzled<N>::offset(row0 + g + 8, n) + 4 * t) = pack_bf16(c[n][2], c[n][3]);
  }
}
// p[0] += x, p[1] += y in global memory (p 8-byte aligned), one vector
// atomic where the architecture has it (sm_90: red.global.add.v2.f32).
__device__ __forceinline__ void atomic_add_pair(float* p, float x, float y) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  atomicAdd(reinterpret_cast<float2*>(p), make_float2(x, y));
#else
  atomicAdd(p, x);
  atomicAdd(p + 1, y);
#endif
}
// band_mask for an A fragment (16 x 16 bf16, rows queries i_base.., columns
// keys j_base..): a_r holds A[g + 8 (r & 1)][2t + 8 (r >> 1) + {0, 1}], the
// lower column in the low half.
__device__ __forceinline__ void band_mask_a(u32 (&a)[4], int lane, int i_base, int j_base, int window) {
  const int g = lane >> 2, t = lane & 3;
#pragma unroll
  for (int r = 0; r < 4; ++r) {
    const int gap = i_base + g + 8 * (r & 1) - (j_base + 2 * t + 8 * (r >> 1));  // i - j of the low half
    a[r] &= (gap <= window ? 0x0000ffffu : 0u) | (gap - 1 <= window ? 0xffff0000u : 0u);
  }
}

struct Gates {
  float std = 1.f, rec = 0.f, disc = 0.f;
};
__device__ __forceinline__ Gates gates_of(const Args& a, int b, int h) {
  Gates g;
  if (a.ra) {
    const float* p = a.gates + (std::size_t(a.gate_batch == 1 ? 0 : b) * a.H + h) * 3;
    g.std = p[0], g.rec = p[1], g.disc = p[2];
  }
  return g;
}

// What a forward team owns (tensor_core_cuda.cpp's Forward, wgmma_cuda.cpp's
// WgForward): (b, h) and the query rows i0 .. i0 + BR - 1 of league rank r
// (heaviest query tiles first), that (b, h)'s matrices and gates; and the
// epilogue that writes a 16-row m-tile's O rows and lse from its accumulators.
template <bool RA>
struct ForwardTeam {
  int T, Dact, bh, i0;
  std::size_t mat;
  const bf16_t *Q, *K, *V;
  const float* dvec;
  Gates g;
  __device__ ForwardTeam(const Args& a, int league_rank, int n_qtiles, int BR)
      : T(a.T), Dact(a.D), bh(league_rank / n_qtiles), i0((n_qtiles - 1 - league_rank % n_qtiles) * BR),
        mat(std::size_t(bh) * a.T * a.D), Q(static_cast<const bf16_t*>(a.q) + mat),
        K(static_cast<const bf16_t*>(a.k) + mat), V(static_cast<const bf16_t*>(a.v) + mat),
        dvec(RA ? a.d + std::size_t(bh) * a.T : nullptr), g(gates_of(a, bh / a.H, bh % a.H)) {}

  // O_i = o_i / l_i (bf16) and lse_i = (m_i + log2 l_i) ln 2 for this lane's
  // two rows of the m-tile at row0 (m, l in the log2 domain, l summed per quad).
  template <int D>
  __device__ void store(const Args& a, const float (&o)[D / 8][4], const float (&m)[2],
                        const float (&l)[2], int row0, int lane) const {
    bf16_t* O = static_cast<bf16_t*>(a.o) + mat;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = row0 + (lane >> 2) + 8 * r;
      const float lsum = quad_sum(l[r]);
      if (i >= T) continue;
      const float inv = 1.f / lsum;
#pragma unroll
      for (int n = 0; n < D / 8; ++n) {
        const int c = frag_col(lane, n, 0);
        if (c < Dact)
          *reinterpret_cast<__nv_bfloat162*>(O + std::size_t(i) * Dact + c) =
              __floats2bfloat162_rn(o[n][2 * r] * inv, o[n][2 * r + 1] * inv);
      }
      if ((lane & 3) == 0) a.lse[std::size_t(bh) * T + i] = (m[r] + log2f(lsum)) * kLn2;
    }
  }
};

// dL = P (dP - Delta) in place over a query-owned tile (rows row0.., keys
// j0..): p holds the logits, dp the products dO_i . V_j (C fragments); P is
// 2^(logit sl + bias bl - lse) with lse2 in log2 units (this lane's two rows),
// zero outside j <= i, j < T, i < T. Tiles wholly below the diagonal and inside
// T skip the per-element visibility test (as the forward's softmax does).
template <bool RA, int BC>
__device__ __forceinline__ void dl_from_p(float (&p)[BC / 8][4], const float (&dp)[BC / 8][4],
                                          SharedFloats bias, const float (&lse2)[2],
                                          const float (&delta)[2], float sl, float bl, int lane,
                                          int row0, int j0, int T) {
  auto to_dl = [&](auto masked) {
#pragma unroll
    for (int n = 0; n < BC / 8; ++n) {
      // this lane's two keys of block n are adjacent: one 8-byte load, and the
      // bias minus each row's lse once per block
      float b[2][2] = {{-lse2[0], -lse2[0]}, {-lse2[1], -lse2[1]}};
      if constexpr (RA) {
        const float2 v = bias.pair(frag_col(lane, n, 0));
#pragma unroll
        for (int r = 0; r < 2; ++r) b[r][0] = fmaf(v.x, bl, b[r][0]), b[r][1] = fmaf(v.y, bl, b[r][1]);
      }
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = frag_col(lane, n, e);
        float pr = fast_exp2(fmaf(p[n][e], sl, b[e >> 1][e & 1]));
        if constexpr (decltype(masked)::value) {
          const int i = row0 + frag_row(lane, e), j = j0 + c;
          if (!(j <= i && j < T && i < T)) pr = 0.f;
        }
        p[n][e] = pr * (dp[n][e] - delta[e >> 1]);
      }
    }
  };
  if (j0 + BC - 1 <= row0 && j0 + BC <= T && row0 + 15 < T)
    to_dl(std::false_type{});
  else
    to_dl(std::true_type{});
}

// f(r, n, at) for each bf16 pair this lane holds of its two rows of the
// warp's 16 (row0..) in a [T, Dact] matrix: row r, C-fragment block n, element
// offset at of the pair (frag_col's columns); pairs outside are skipped.
template <int D, class F>
__device__ __forceinline__ void for_row_pairs(int row0, int lane, int T, int Dact, F&& f) {
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int i = row0 + (lane >> 2) + 8 * r;
    if (i >= T) continue;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int c = frag_col(lane, n, 0);
      if (c < Dact) f(r, n, std::size_t(i) * Dact + c);
    }
  }
}

// RA's dK_i += w_rec s dqf[D, 2D) for this lane's two rows of the warp's 16
// (row0..): the Q_j half of a query-owned dQf onto the key-owned kernel's
// share of dK (bf16, store_dkv). Returns this thread's share of dw_rec,
// sum K_i . dqf[D, 2D) (unscaled). store_dq calls it at the end; ra_window's
// dQ kernel as soon as its band tiles are done (no later tile adds to that half).
// (Loading every pair before the first store, so that the loads do not wait
// one by one behind stores that may alias them, made RA's dQ kernel 27%
// slower at T = 1024 on the H100: docs/perf.md v24.)
template <int D>
__device__ __forceinline__ float add_dk_share(const Args& a, const float (&dqf)[2 * D / 8][4], float scale,
                                              float rec, int bh, int row0, int lane) {
  const int T = a.T, Dact = a.D;
  const std::size_t mat = std::size_t(bh) * T * Dact;
  const auto* K = static_cast<const bf16_t*>(a.k) + mat;
  auto* dK = static_cast<bf16_t*>(a.dk) + mat;
  float grec = 0.f;
  for_row_pairs<D>(row0, lane, T, Dact, [&](int r, int n, std::size_t at) {
    const float k0 = dqf[D / 8 + n][2 * r], k1 = dqf[D / 8 + n][2 * r + 1];
    const float2 pk = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dK + at));
    const float2 ki = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(K + at));
    grec += ki.x * k0 + ki.y * k1;
    *reinterpret_cast<__nv_bfloat162*>(dK + at) =
        __floats2bfloat162_rn(pk.x + rec * scale * k0, pk.y + rec * scale * k1);
  });
  return grec;
}

// The query-owned dQ kernels' epilogue (BackwardQ, WgBackwardQ): this lane's
// two rows of the warp's 16 (row0..) from the fp32 accumulators dqf = sum_j
// dL_ij Kf_j (unscaled). SDPA: dQ. RA: dQ += w_std s dqf[0, D) and
// dK += w_rec s dqf[D, 2D) (the key-owned kernel wrote its shares there, in
// bf16: store_dkv),
// and the team's dw_std, dw_rec partials into gate slots 0, 1 of query tile
// qt, summed through smem (free by now: the caller's last barrier is behind).
// K_SHARE = false: the dK half went out earlier (add_dk_share), which returned
// this thread's dw_rec share, grec_done.
template <int D, bool RA, int WARPS, bool K_SHARE = RA>
__device__ __forceinline__ void store_dq(const Args& a, const float (&dqf)[(RA ? 2 : 1) * D / 8][4],
                                         float scale, const Gates& g, int bh, int qt, int row0,
                                         int warp, int lane, int tid, char* smem, float grec_done = 0.f) {
  const int T = a.T, Dact = a.D;
  const std::size_t mat = std::size_t(bh) * T * Dact;
  const auto* Q = static_cast<const bf16_t*>(a.q) + mat;
  auto* dQ = static_cast<bf16_t*>(a.dq) + mat;
  float gstd = 0.f, grec = grec_done;  // this thread's share of dw_std, dw_rec (unscaled)
  if constexpr (RA && K_SHARE) grec = add_dk_share<D>(a, dqf, scale, g.rec, bh, row0, lane);
  for_row_pairs<D>(row0, lane, T, Dact, [&](int r, int n, std::size_t at) {
    const float q0 = dqf[n][2 * r] * scale, q1 = dqf[n][2 * r + 1] * scale;
    if constexpr (RA) {
      const float2 pq = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dQ + at));
      const float2 qi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(Q + at));
      gstd += qi.x * dqf[n][2 * r] + qi.y * dqf[n][2 * r + 1];
      *reinterpret_cast<__nv_bfloat162*>(dQ + at) = __floats2bfloat162_rn(pq.x + g.std * q0, pq.y + g.std * q1);
    } else {
      *reinterpret_cast<__nv_bfloat162*>(dQ + at) = __floats2bfloat162_rn(q0, q1);
    }
  });
  if constexpr (RA) {
    // Team sum of the gate partials through (now idle) shared memory.
    float* red = reinterpret_cast<float*>(smem);
    gstd = warp_sum(gstd) * scale, grec = warp_sum(grec) * scale;
    if (lane == 0) red[2 * warp] = gstd, red[2 * warp + 1] = grec;
    __syncthreads();
    if (tid == 0) {
      float s_std = 0.f, s_rec = 0.f;
      for (int w = 0; w < WARPS; ++w) s_std += red[2 * w], s_rec += red[2 * w + 1];
      float* gp = a.gate_partials + (std::size_t(bh) * a.n_partials + qt) * 3;
      gp[0] = s_std, gp[1] = s_rec;
    }
  }
}

// RA's key-owned share of dQ_j, w_rec s dkf[D, 2D), written to dQ in bf16 for
// the query-owned kernel to add to (this lane's two key rows of the warp's 16,
// key0..). store_dkv writes it at its end; ra_window's dK/dV kernel as soon as
// its band tiles are done (no later tile adds to that half).
template <int D>
__device__ __forceinline__ void store_dq_share(const Args& a, const float (&dkf)[2 * D / 8][4], float scale,
                                               float rec, int bh, int key0, int lane) {
  const int T = a.T, Dact = a.D;
  auto* dQ = static_cast<bf16_t*>(a.dq) + std::size_t(bh) * T * Dact;
  for_row_pairs<D>(key0, lane, T, Dact, [&](int r, int n, std::size_t at) {
    *reinterpret_cast<__nv_bfloat162*>(dQ + at) =
        __floats2bfloat162_rn(dkf[D / 8 + n][2 * r] * scale * rec, dkf[D / 8 + n][2 * r + 1] * scale * rec);
  });
}

// The key-owned dK/dV kernels' epilogue (BackwardKV, WgBackwardKV): this
// lane's two key rows of the warp's 16 (key0..) from the fp32 accumulators
// dkf = sum_i dL^T_ji Qf_i and dv. SDPA: dK, dV. RA: dV, and this kernel's
// shares of the gradients, dK = w_std s dkf[0, D) and dQ = w_rec s dkf[D, 2D),
// written to dK and dQ in bf16 for the query-owned kernel (store_dq) or the
// fused finish to add its own to. (They were float workspaces: 2 x 4 bytes
// of [B,H,T,D] written and read again, 0.8 GB more device memory at T = 16k;
// the rounding to bf16 in between costs at most one more bf16 rounding of
// dQ and dK.) dd_j = w_disc colsum_j, and the team's dw_disc partial into
// gate slot 2 of key tile kt (FUSED, the single-pass backward: slots 0 and 1
// too), summed through smem (free by now: the caller's last barrier is behind).
// DQ_SHARE = false: the dQ share went out earlier (store_dq_share).
template <int D, bool RA, int WARPS, bool FUSED = false, bool DQ_SHARE = RA>
__device__ __forceinline__ void store_dkv(const Args& a, const float (&dkf)[(RA ? 2 : 1) * D / 8][4],
                                          const float (&dv)[D / 8][4], const float (&colsum)[2],
                                          float scale, const Gates& g, int bh, int kt, int key0,
                                          int warp, int lane, int tid, char* smem) {
  static_assert(!(RA && FUSED) || DQ_SHARE, "the single-pass backward writes every share at its end");
  const int T = a.T, Dact = a.D;
  const std::size_t mat = std::size_t(bh) * T * Dact;
  [[maybe_unused]] const auto* Q = static_cast<const bf16_t*>(a.q) + mat;
  [[maybe_unused]] const auto* K = static_cast<const bf16_t*>(a.k) + mat;
  auto* dV = static_cast<bf16_t*>(a.dv) + mat;
  auto* dK = static_cast<bf16_t*>(a.dk) + mat;
  if constexpr (RA && DQ_SHARE) store_dq_share<D>(a, dkf, scale, g.rec, bh, key0, lane);
  // d_j of this lane's two key rows, loaded before the stores below (a load
  // after them waits out its whole latency: the compiler cannot move it above
  // a store that may alias it)
  [[maybe_unused]] float dj[2] = {0.f, 0.f};
  if constexpr (RA) {
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int j = key0 + (lane >> 2) + 8 * r;
      dj[r] = j < T ? a.d[std::size_t(bh) * T + j] : 0.f;
    }
  }
  float gdisc = 0.f;
  [[maybe_unused]] float gstd = 0.f, grec = 0.f;  // FUSED: this thread's dw_std, dw_rec (unscaled)
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int j = key0 + (lane >> 2) + 8 * r;
    const float cs = quad_sum(colsum[r]);
    if (j >= T) continue;
#pragma unroll
    for (int n = 0; n < D / 8; ++n) {
      const int c = frag_col(lane, n, 0);
      if (c >= Dact) continue;
      const std::size_t at = std::size_t(j) * Dact + c;
      *reinterpret_cast<__nv_bfloat162*>(dV + at) =
          __floats2bfloat162_rn(dv[n][2 * r], dv[n][2 * r + 1]);
      const float k0 = dkf[n][2 * r] * scale * g.std, k1 = dkf[n][2 * r + 1] * scale * g.std;
      if constexpr (RA && FUSED) {  // dw_std = s sum_j K_j.dKf_j[0, D), dw_rec = s sum_j Q_j.dKf_j[D, 2D)
        const float2 kj = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(K + at));
        const float2 qj = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(Q + at));
        gstd += kj.x * dkf[n][2 * r] + kj.y * dkf[n][2 * r + 1];
        grec += qj.x * dkf[D / 8 + n][2 * r] + qj.y * dkf[D / 8 + n][2 * r + 1];
      }
      *reinterpret_cast<__nv_bfloat162*>(dK + at) = __floats2bfloat162_rn(k0, k1);
    }
    if constexpr (RA) {
      if ((lane & 3) == 0) {
        a.dd[std::size_t(bh) * T + j] = g.disc * cs;
        gdisc += dj[r] * cs;
      }
    }
  }
  if constexpr (RA) {
    float* red = reinterpret_cast<float*>(smem);
    gdisc = warp_sum(gdisc);
    if constexpr (FUSED) {
      gstd = warp_sum(gstd) * scale, grec = warp_sum(grec) * scale;
      if (lane == 0) red[WARPS + 2 * warp] = gstd, red[WARPS + 2 * warp + 1] = grec;
    }
    if (lane == 0) red[warp] = gdisc;
    __syncthreads();
    if (tid == 0) {
      float s = 0.f;
      for (int w = 0; w < WARPS; ++w) s += red[w];
      a.gate_partials[(std::size_t(bh) * a.n_partials + kt) * 3 + 2] = s;
      if constexpr (FUSED) {  // no query-owned kernel: this key tile's slot holds all three
        float s_std = 0.f, s_rec = 0.f;
        for (int w = 0; w < WARPS; ++w) s_std += red[WARPS + 2 * w], s_rec += red[WARPS + 2 * w + 1];
        a.gate_partials[(std::size_t(bh) * a.n_partials + kt) * 3] = s_std;
        a.gate_partials[(std::size_t(bh) * a.n_partials + kt) * 3 + 1] = s_rec;
      }
    }
  }

}

// QK^T of a tile with the band logic: plain tiles use only the first D columns
// (SDPA cost), full tiles all W, mixed tiles add the reciprocal half inside the
// band only (computed first and masked, then the first half accumulates on top).
// product(k0, k1) accumulates k-steps k0..k1-1 (integral constants) into s.
template <int D, bool RA, int N, int W, int MT, class Product>
__device__ __forceinline__ void folded_logits(float (&s)[MT][N / 8][4], Product&& product,
                                              Kind kind, int lane, int row_base, int col_base,
                                              bool rows_are_queries, int window) {
  using Lo = std::integral_constant<int, 0>;
  using Mid = std::integral_constant<int, D / 16>;
  using Hi = std::integral_constant<int, W / 16>;
#pragma unroll
  for (int mt = 0; mt < MT; ++mt) zero(s[mt]);
  if constexpr (RA) {
    if (kind != kPlain) {
      product(Mid{}, Hi{});
      if (kind == kMixed) {
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
          band_mask(s[mt], lane, row_base + 16 * mt, col_base, rows_are_queries, window);
      }
    }
  }
  product(Lo{}, Mid{});
}

}  // namespace
}  // namespace ra::kk::detail::tc
