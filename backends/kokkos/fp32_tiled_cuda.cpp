// The "fp32 tiled" forward for CUDA: float storage, exact fp32 FMA on CUDA
// cores, the same algorithm and outputs as FusedForward in detail/fused.hpp
// (online softmax, o and the natural-log lse; causal j <= i; RA in RA.md's
// folded form Qf_i = [w_std Q_i, w_rec K_i], Kf_j = [K_j, Q_j],
// L_ij = s Qf_i.Kf_j + w_disc d_j; ra_window keeps the reciprocal half only
// where i - j <= window). Only the schedule differs: a register-tiled SIMT
// kernel in the style of a CUDA-core SGEMM, instead of TeamVectorGemm.
//
// Geometry (one team = one CUDA block of NT = 128 threads, vector_length 1, so
// team rank = thread index and ranks 0..31 are warp 0):
//   query tile BR = 64 rows, key tile BC = 64 columns;
//   thread (ty, tx) = (rank / 8, rank % 8) owns logits rows 4ty..4ty+3 and
//   columns {4tx..4tx+3} u {32+4tx..32+4tx+3}: a 4 x 8 micro-tile, 32 fp32
//   accumulators; and O rows 4ty..4ty+3, columns 32m+4tx..+3 (m < DP/32).
// Why 4 x 8 and 128 threads: per k step a thread reads one float4 of Qf and
// two of Kf from shared memory for 32 FMAs. A warp's 32 threads (4 ty x 8 tx)
// then read 4 + 8 + 8 distinct float4 = 3 shared-memory wavefronts per 8
// warp-FMA instructions: FMA-bound with room, where 4 x 4 per thread was at
// 3 per 4. Eight threads share a row, all in one warp, so the row max/sum are
// three xor-shuffles and no shared memory. The two column float4s are 32
// apart (not adjacent) so that the 8 tx of a warp read 128 contiguous bytes.
//
// Team scratch (Kokkos caps a team at 48 KiB; RA's W = 2D = 256 floats per
// row at D = 128 rules out holding a Qf tile), in floats:
//   2 stages x [Qf chunk | Kf chunk], each KC = 8 k-values x 64 rows, k-major
//       (row length LD = 68: float4-aligned, and the transposing stores of the
//       loader hit 32 different banks)                            8704 bytes
//   Pt, the probabilities transposed (key-major, LD = 68)         17408 bytes
//   V, row-major, VC rows x DP (VC = 64, or 32 at DP = 128)        16384 bytes
//   bias, w_disc d_j of the key tile                                  256 bytes
//   = 42752 bytes (+128 for alignment): five teams would fit an SM's shared
//   memory; registers decide instead (kMinBlocks below).
// Qf is NOT kept resident: both operands stream through the chunk stages for
// every key tile (Qf re-read from L2 costs ~1 flop/byte of bandwidth, far
// below what the L2 delivers), which keeps every D <= 128 and RA's 2D width
// within the cap. The loader scales the Qf half by its gate in registers on
// the way (w_std Q | w_rec K), so the products are plain FMAs.
//
// Schedule per key tile kt:
//   sync (A); V(kt) by cp.async (lands during the QK^T phase); bias
//   for each Qf/Kf chunk c: store the prefetched registers to stage c&1,
//       sync, issue the global loads of chunk c+1 into registers, FMA on c
//       (one sync per chunk suffices: stage c&1 was last read by chunk c-2,
//       which every thread finished before the sync of chunk c-1)
//   prefetch chunk 0 of tile kt+1; online softmax in registers; P^T -> Pt
//   wait V, sync (B); O += P V from Pt and V.
// RA tiles that use the reciprocal half run its chunks first; a mixed tile
// (the band's edge crosses it) zeroes them outside the band before the
// w_std half accumulates on top, exactly as folded_logits does in the bf16
// kernel. Tiles wholly outside the band run the D-wide half only.
//
// D: any 1..128. The QK^T chunks zero-fill k >= D (so no padding cost beyond
// the next multiple of 8); O and V are padded to DP = 32, 64 or 128 columns
// (zero-filled). Rows of 16 bytes (D % 4 == 0, aligned tensors) load as
// float4 / cp.async and O stores as float4; other D element by element.
#include <ra/kokkos/detail/fp32_tiled.hpp>
#include <ra/kokkos/kernel_traits.hpp>

#include "cuda_warp_primitives.hpp"

#include <cmath>
#include <cstdint>
#include <stdexcept>

namespace ra::kk::detail::fp32t {
namespace {

using Member = Kokkos::TeamPolicy<Kokkos::Cuda>::member_type;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

constexpr int NT = 128, BR = 64, BC = 64, KC = 8, LD = 68;
constexpr int kStageFloats = 2 * KC * LD;  // [Qf chunk | Kf chunk]
constexpr int kVFloats = 4096;
constexpr int kOffPt = 2 * kStageFloats;
constexpr int kOffV = kOffPt + BC * LD;
constexpr int kOffBias = kOffV + kVFloats;
constexpr int kFloats = kOffBias + BC;
constexpr std::size_t kScratch = sizeof(float) * kFloats;
static_assert(kOffPt % 4 == 0 && kOffV % 4 == 0 && kOffBias % 4 == 0, "float4-aligned regions");
static_assert(cuda::fits_team_shared(kScratch, NT), "Kokkos' 48 KiB team-scratch cap");

using cuda::Kind;
using cuda::kFull;
using cuda::kMixed;
using cuda::kPlain;

// ------------------------------------------------------------------ primitives
// dst: a shared-memory address (cuda::smem_u32).
__device__ __forceinline__ void cp_async16(std::uint32_t dst, const float* src, bool valid) {
  // src-size 0 zero-fills the 16 bytes (src must still be a mapped address).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
}
// The same copy of a chunk known to be valid: no source-size operand.
__device__ __forceinline__ void cp_async16_full(std::uint32_t dst, const float* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() {
  asm volatile("cp.async.commit_group;\ncp.async.wait_group 0;\n" ::: "memory");
}
__device__ __forceinline__ float row_max(float x) {  // over the 8 lanes sharing a row
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 4));
}
__device__ __forceinline__ float row_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  x += __shfl_xor_sync(0xffffffffu, x, 2);
  return x + __shfl_xor_sync(0xffffffffu, x, 4);
}
// row[k..k+3] of a row of length D, zero past D. vec: D % 4 == 0, so the four
// are all inside or all outside and the address is 16-byte aligned.
__device__ __forceinline__ float4 load4(const float* row, int k, int D, bool vec) {
  if (vec) return k < D ? __ldg(reinterpret_cast<const float4*>(row + k)) : make_float4(0.f, 0.f, 0.f, 0.f);
  float4 r;
  r.x = k < D ? __ldg(row + k) : 0.f;
  r.y = k + 1 < D ? __ldg(row + k + 1) : 0.f;
  r.z = k + 2 < D ? __ldg(row + k + 2) : 0.f;
  r.w = k + 3 < D ? __ldg(row + k + 3) : 0.f;
  return r;
}
// Column (within the key tile) of accumulator n of thread tx.
__device__ __forceinline__ int s_col(int tx, int n) { return 4 * tx + n + (n >= 4 ? 28 : 0); }

// s[4][8] += Qf chunk (rows 4ty..) x Kf chunk^T (columns of s_col), KC k-steps.
// Unrolled by 2, not 8: fully unrolled, ptxas hoists all 24 float4 loads of
// the chunk ahead of the FMAs (96 registers) and then spills under the cap.
__device__ __forceinline__ void chunk_fma(float (&s)[4][8], const float* qs, const float* ks, int ty,
                                          int tx) {
#pragma unroll 2
  for (int kk = 0; kk < KC; ++kk) {
    const float4 a = *reinterpret_cast<const float4*>(qs + kk * LD + 4 * ty);
    const float4 b0 = *reinterpret_cast<const float4*>(ks + kk * LD + 4 * tx);
    const float4 b1 = *reinterpret_cast<const float4*>(ks + kk * LD + 32 + 4 * tx);
    const float ar[4] = {a.x, a.y, a.z, a.w};
    const float br[8] = {b0.x, b0.y, b0.z, b0.w, b1.x, b1.y, b1.z, b1.w};
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int n = 0; n < 8; ++n) s[r][n] = fmaf(ar[r], br[n], s[r][n]);
  }
}

// The k-major chunk stages: thread stores its row lr, k-values lk..lk+3 of
// the A side (pa, rows of the accumulator) and of the B side (pb, columns).
__device__ __forceinline__ void store_pair(float* stage, const float4& pa, const float4& pb, int lr,
                                           int lk) {
  float* as = stage;
  float* bs = stage + KC * LD;
  as[(lk + 0) * LD + lr] = pa.x, as[(lk + 1) * LD + lr] = pa.y;
  as[(lk + 2) * LD + lr] = pa.z, as[(lk + 3) * LD + lr] = pa.w;
  bs[(lk + 0) * LD + lr] = pb.x, bs[(lk + 1) * LD + lr] = pb.y;
  bs[(lk + 2) * LD + lr] = pb.z, bs[(lk + 3) * LD + lr] = pb.w;
}

// Rows r0 .. r0+VC-1 of a [T, D] matrix into U (row-major, DP wide), zero past T and D.
// With D = DP the tile's rows are one contiguous run in src as in U, so a
// tile inside T (every tile but a last partial one at D = 32, 64, 128) is one
// block copy: float4 t + k NT by thread t, at constant offsets, without the
// loop's division and bounds tests per float4. (Fixed columns with per-copy
// tests for the other tiles made ptxas spill where it had not: BwdQ, RA, D = 64.)
template <int DP, int VC>
__device__ __forceinline__ void stage_rows(float* U, const float* src, int r0, int T, int D, bool vec,
                                           int tid) {
  constexpr int kRow4 = DP / 4;
  if constexpr ((VC * kRow4) % NT == 0) {
    if (vec && D == DP && r0 + VC <= T) {  // team-uniform
      const std::uint32_t d = cuda::smem_u32(U) + 16 * tid;
      const float* p = src + (std::size_t(r0) * DP + 4 * tid);
#pragma unroll
      for (int k = 0; k < VC * kRow4 / NT; ++k) cp_async16_full(d + 16 * k * NT, p + 4 * k * NT);
      return;
    }
  }
  for (int idx = tid; idx < VC * kRow4; idx += NT) {
    const int r = idx / kRow4, c = 4 * (idx % kRow4), j = r0 + r;
    float* dst = U + r * DP + c;
    if (vec) {
      const bool valid = j < T && c < D;
      cp_async16(cuda::smem_u32(dst), valid ? src + std::size_t(j) * D + c : src, valid);
    } else {
      const float* p = src + std::size_t(j) * D + c;
#pragma unroll
      for (int e = 0; e < 4; ++e) dst[e] = (j < T && c + e < D) ? p[e] : 0.f;
    }
  }
}

// acc[r][OFF + 4m + e] += sum_{kk < N} Pt[kk][4ty + r] * Bs[kk][32m + 4tx + e]
// (m < DP/32): Pt a column-major probability tile (LD), Bs N staged rows of
// DP floats. A warp's 8 tx read 128 contiguous bytes of Bs, its 4 ty share
// one float4 of Pt.
template <int DP, int OFF, int N, int NA>
__device__ __forceinline__ void pt_fma(float (&acc)[4][NA], const float* Pt, const float* Bs, int ty,
                                       int tx) {
  constexpr int NO = DP / 32;
  static_assert(OFF + 4 * NO <= NA, "accumulator columns");
#pragma unroll 4
  for (int kk = 0; kk < N; ++kk) {
    const float4 p = *reinterpret_cast<const float4*>(Pt + kk * LD + 4 * ty);
    const float pr[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
    for (int mo = 0; mo < NO; ++mo) {
      const float4 v = *reinterpret_cast<const float4*>(Bs + kk * DP + 32 * mo + 4 * tx);
      const float vr[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[r][OFF + 4 * mo + e] = fmaf(pr[r], vr[e], acc[r][OFF + 4 * mo + e]);
    }
  }
}

template <int DP, bool RA>
struct Forward {
  static constexpr int NO = DP / 32;                          // float4 column groups of O per thread
  static constexpr int VC = BC < kVFloats / DP ? BC : kVFloats / DP;  // V rows per staged chunk
  // Teams per SM the register allocation must allow: kernel_traits.hpp.
  static constexpr int kMinBlocks = fp32_tiled_min_blocks(DP, RA, TcPass::forward);
  static_assert(DP % 32 == 0 && BC % VC == 0, "tile geometry");

  Args a;
  int n_qtiles = 0;
  float scale = 0;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ Kind classify(int i0, int j0) const { return cuda::classify(RA, a.window, i0, BR, j0, BC, a.T); }

  __device__ void body(const Member& team) const {
    const int tid = team.team_rank(), ty = tid >> 3, tx = tid & 7;
    const int T = a.T, D = a.D;
    const int qt = n_qtiles - 1 - team.league_rank() % n_qtiles;  // heaviest tiles first
    const int bh = team.league_rank() / n_qtiles, b = bh / a.H, h = bh % a.H;
    const int i0 = qt * BR;
    const std::size_t mat = std::size_t(bh) * T * D;
    const float* Q = a.q + mat;
    const float* K = a.k + mat;
    const float* V = a.v + mat;
    float w_std = 1.f, w_rec = 0.f, w_disc = 0.f;
    if constexpr (RA) {
      const float* g = a.gates + (std::size_t(a.gate_batch == 1 ? 0 : b) * a.H + h) * 3;
      w_std = g[0], w_rec = g[1], w_disc = g[2];
    }
    // 16-byte rows: D % 4 == 0 and every tensor 16-byte aligned (Kokkos
    // allocations are; a caller's offset view might not be).
    const auto addr_bits = reinterpret_cast<std::uintptr_t>(a.q) | reinterpret_cast<std::uintptr_t>(a.k) |
                           reinterpret_cast<std::uintptr_t>(a.v) | reinterpret_cast<std::uintptr_t>(a.o);
    const bool vec = (D & 3) == 0 && (addr_bits & 15) == 0;

    auto base = reinterpret_cast<std::uintptr_t>(team.team_scratch(0).get_shmem(kScratch + 128));
    float* sm = reinterpret_cast<float*>((base + 127) & ~std::uintptr_t(127));
    float* Pt = sm + kOffPt;
    float* Vs = sm + kOffV;
    float* bias = sm + kOffBias;

    // The chunk loader: thread loads row lr (of the 64) and k-values lk..lk+3 of
    // the chunk, one float4 of the Qf side and one of the Kf side. A chunk index
    // c runs over the reciprocal half first (RA tiles that use it), then the
    // w_std half; nh chunks of KC per half, zero past D.
    const int lr = tid >> 1, lk = (tid & 1) * 4;
    const int nh = (D + KC - 1) / KC;
    float4 pq = make_float4(0.f, 0.f, 0.f, 0.f), pk = pq;
    auto load_chunk = [&](int j0, Kind kind, int c) {
      const bool rec = RA && kind != kPlain && c < nh;
      const int k = (c % nh) * KC + lk, i = i0 + lr, j = j0 + lr;
      const float* qsrc = rec ? K : Q;  // Qf_i = [w_std Q_i, w_rec K_i]
      const float* ksrc = rec ? Q : K;  // Kf_j = [K_j, Q_j]
      const float g = rec ? w_rec : w_std;
      pq = i < T ? load4(qsrc + std::size_t(i) * D, k, D, vec) : make_float4(0.f, 0.f, 0.f, 0.f);
      pk = j < T ? load4(ksrc + std::size_t(j) * D, k, D, vec) : make_float4(0.f, 0.f, 0.f, 0.f);
      if (RA) pq.x *= g, pq.y *= g, pq.z *= g, pq.w *= g;
    };
    auto store_chunk = [&](int stage) { store_pair(sm + stage * kStageFloats, pq, pk, lr, lk); };
    // V rows j0 + vc*VC .. + VC - 1 into Vs (row-major, DP wide), zero past T and D.
    auto stage_v = [&](int j0, int vc) { stage_rows<DP, VC>(Vs, V, j0 + vc * VC, T, D, vec, tid); };

    float o[4][4 * NO];
    float m[4], l[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      m[r] = -INFINITY, l[r] = 0.f;
#pragma unroll
      for (int c = 0; c < 4 * NO; ++c) o[r][c] = 0.f;
    }
    const float* dvec = RA ? a.d + std::size_t(bh) * T : nullptr;
    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;

    Kind kind = classify(i0, 0);
    load_chunk(0, kind, 0);
    for (int kt = 0; kt <= kt_last; ++kt) {
      const int j0 = kt * BC;
      __syncthreads();  // (A) the previous tile's P V is done with Pt, Vs and bias
      stage_v(j0, 0);
      if constexpr (RA)
        if (tid < BC) bias[tid] = j0 + tid < T ? w_disc * dvec[j0 + tid] : 0.f;

      float s[4][8];
#pragma unroll
      for (int r = 0; r < 4; ++r)
#pragma unroll
        for (int n = 0; n < 8; ++n) s[r][n] = 0.f;
      const int nc = kind == kPlain ? nh : 2 * nh;
      for (int c = 0; c < nc; ++c) {
        store_chunk(c & 1);
        __syncthreads();
        if (c + 1 < nc) load_chunk(j0, kind, c + 1);
        if (RA && kind == kMixed && c == nh) {
          // The reciprocal half is complete: keep it only inside the band.
#pragma unroll
          for (int r = 0; r < 4; ++r)
#pragma unroll
            for (int n = 0; n < 8; ++n)
              if ((i0 + 4 * ty + r) - (j0 + s_col(tx, n)) > a.window) s[r][n] = 0.f;
        }
        const float* qs = sm + (c & 1) * kStageFloats;
        chunk_fma(s, qs, qs + KC * LD, ty, tx);
      }
      const Kind next = kt < kt_last ? classify(i0, j0 + BC) : kPlain;
      if (kt < kt_last) load_chunk(j0 + BC, next, 0);  // in flight during softmax and P V

      // Online softmax in the log2 domain (x2 = (s Qf.Kf + w_disc d_j) log2 e).
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const int i = i0 + 4 * ty + r;
        float mx = -INFINITY;
#pragma unroll
        for (int n = 0; n < 8; ++n) {
          const int c = s_col(tx, n), j = j0 + c;
          const float logit = RA ? fmaf(s[r][n], scale, bias[c]) : s[r][n] * scale;
          const float x = (j <= i && j < T) ? logit * kLog2e : -INFINITY;
          s[r][n] = x;
          mx = fmaxf(mx, x);
        }
        const float m_new = fmaxf(m[r], row_max(mx));
        const float m_use = m_new == -INFINITY ? 0.f : m_new;  // nothing visible in this row yet
        const float alpha = exp2f(m[r] - m_use);
        m[r] = m_new;
        float sum = 0.f;
#pragma unroll
        for (int n = 0; n < 8; ++n) {
          const float p = exp2f(s[r][n] - m_use);
          s[r][n] = p;
          sum += p;
        }
        l[r] = l[r] * alpha + sum;  // this lane's share; summed over the row at the end
#pragma unroll
        for (int c = 0; c < 4 * NO; ++c) o[r][c] *= alpha;
      }
      // P^T into Pt: column c of the tile is row c of Pt, this thread's 4 rows one float4.
#pragma unroll
      for (int n = 0; n < 8; ++n)
        *reinterpret_cast<float4*>(Pt + s_col(tx, n) * LD + 4 * ty) =
            make_float4(s[0][n], s[1][n], s[2][n], s[3][n]);

      // O += P V, VC key rows of V at a time.
#pragma unroll
      for (int vc = 0; vc < BC / VC; ++vc) {
        if (vc > 0) {
          __syncthreads();  // every thread is done with the previous V rows
          stage_v(j0, vc);
        }
        cp_async_wait_all();
        __syncthreads();  // (B) Pt and these V rows are visible to every thread
        pt_fma<DP, 0, VC>(o, Pt + vc * VC * LD, Vs, ty, tx);
      }
      kind = next;
    }

    // o / l and lse = m + log l (natural log), for rows inside T.
    float* O = a.o + mat;
    float lsum[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) lsum[r] = row_sum(l[r]);  // every lane, before any early exit
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = i0 + 4 * ty + r;
      if (i >= T) continue;
      const float inv = 1.f / lsum[r];
      float* orow = O + std::size_t(i) * D;
#pragma unroll
      for (int mo = 0; mo < NO; ++mo) {
        const int c = 32 * mo + 4 * tx;
        const float4 v = make_float4(o[r][4 * mo] * inv, o[r][4 * mo + 1] * inv, o[r][4 * mo + 2] * inv,
                                     o[r][4 * mo + 3] * inv);
        if (vec) {
          if (c < D) *reinterpret_cast<float4*>(orow + c) = v;
        } else {
          if (c < D) orow[c] = v.x;
          if (c + 1 < D) orow[c + 1] = v.y;
          if (c + 2 < D) orow[c + 2] = v.z;
          if (c + 3 < D) orow[c + 3] = v.w;
        }
      }
      if (tx == 0) a.lse[std::size_t(bh) * T + i] = (m[r] + log2f(lsum[r])) * kLn2;
    }
  }
};

template <class F>
using Policy = Kokkos::TeamPolicy<Kokkos::Cuda, Kokkos::LaunchBounds<NT, F::kMinBlocks>>;

int padded_dim(int D) { return D <= 32 ? 32 : D <= 64 ? 64 : 128; }

template <int DP, bool RA>
void launch(const Kokkos::Cuda& exec, const Args& a) {
  using F = Forward<DP, RA>;
  F f;
  f.a = a;
  f.n_qtiles = (a.T + BR - 1) / BR;
  f.scale = 1.f / std::sqrt(float(a.D));
  Policy<F> p(exec, a.B * a.H * f.n_qtiles, NT, 1);
  Kokkos::parallel_for("ra::fp32_tiled::forward", p.set_scratch_size(0, Kokkos::PerTeam(kScratch + 128)), f);
}

template <bool RA>
void launch_dp(const Kokkos::Cuda& exec, const Args& a) {
  switch (padded_dim(a.D)) {
    case 32: return launch<32, RA>(exec, a);
    case 64: return launch<64, RA>(exec, a);
    default: return launch<128, RA>(exec, a);
  }
}



// ================================================================== backward
// Two kernels, as in the portable and tensor-core backward (deterministic: no
// atomics; each output element has one owner):
//   BwdKV  team per (b, h, key tile of 64):   dV_j, dKf_j = s sum_i dL_ij Qf_i,
//          column sums of dL (dd_j, the w_disc gate partial)
//   BwdQ   team per (b, h, query tile of 64): dQf_i = s sum_j dL_ij Kf_j, the
//          unfolding into dQ, dK and the w_std, w_rec gate partials
// RA's cross terms (dKf's Q_j half is part of dQ_j, dQf's K_i half part of
// dK_i) go from BwdKV to BwdQ's epilogue through the float workspaces
// part_dq / part_dk, which BwdQ adds to its own part.
//
// Both kernels use the forward's geometry and building blocks: 128 threads,
// thread (ty, tx) owns rows 4ty..4ty+3 of the 64 x 64 tile and the columns
// s_col(tx, 0..7); the two 64 x 64 tile products (logits, dP) stream their
// operands through the same k-major chunk stages. The per-tile sequence is
//   S    = own rows x other rows (chunks, RA's reciprocal half first, band
//          masking on mixed tiles exactly as the forward)
//   P    = exp2(S s log2e + bias - lse log2e), masked    -> tile buffer Pb
//   [BwdKV only: dV += P^T dO, from Pb]
//   dP   = (dO V^T or V dO^T, chunks)
//   dL   = P (dP - Delta), P read back from Pb (the thread's own elements,
//          so no sync is needed between the read and the in-place write)
//   acc += dL x (the other side's rows: Qf for BwdKV, Kf for BwdQ), from Pb;
//          RA's second half with dL masked to the band in place on mixed tiles.
// Pb holds one tile at a time (P, then dL): that is what lets the team
// scratch (43.3 KB: U 16 KB, Pb 17 KB, chunk stages 8.5 KB, vectors) hold a
// staging area U for the product operands apart from the chunk stages. Only
// 32 logits/dP registers are live at once, beside the accumulators.
//
// The product operands ("B rows": dO, Q/K rows) are staged row-major in U,
// VC rows x DP columns at a time (VC = 64 for DP <= 64, 32 at DP = 128;
// cp.async where rows are 16-byte), and read as the forward reads V: a warp's
// 8 tx read 128 contiguous bytes, its 4 ty share one float4 of Pb. The first
// VC rows of a product are issued ahead (prestage), right after U's previous
// readers are done, so that they land during the chunk loops in between:
// BwdKV stages dO at the tile's start and Q_i after the dV product, BwdQ K_j
// at the tile's start. Only RA's second halves stage and wait in place.
//
// Gates: the Qf side of the logits is gated in the chunk loader as in the
// forward; the product operands are ungated [Q | K] / [K | Q] rows and the
// gates multiply the accumulators' halves in the epilogues.
constexpr int kUFloats = 4096;                  // U: VC x DP staged product rows
constexpr int kOffPb = kUFloats;                // P / dL tile, column-major (LD = 68)
constexpr int kOffStages = kOffPb + BC * LD;    // the two k-major chunk stages
constexpr int kOffVecs = kOffStages + 2 * kStageFloats;  // 3 x 64 per-tile vectors, 8 reduction slots
constexpr int kBwdFloats = kOffVecs + 3 * 64 + 8;
constexpr std::size_t kBwdScratch = sizeof(float) * kBwdFloats;
static_assert(kOffPb % 4 == 0 && kOffStages % 4 == 0 && kOffVecs % 4 == 0, "float4-aligned regions");
static_assert(cuda::fits_team_shared(kBwdScratch, NT), "Kokkos' 48 KiB team-scratch cap");

// s = sum over nc chunks of A chunk x B chunk^T (chunk_fma), with the loads of
// chunk c+1 in flight during the FMAs on chunk c. load(c, pa, pb) fetches
// chunk c; hook(c, s) runs before chunk c's FMAs (RA's band mask). Starts
// with a sync: the stages may still be read by the previous chunk loop.
template <class Load, class Hook>
__device__ __forceinline__ void chunk_loop(float (&s)[4][8], float* stages, int nc, int tid, Load load,
                                           Hook hook) {
  const int ty = tid >> 3, tx = tid & 7, lr = tid >> 1, lk = (tid & 1) * 4;
#pragma unroll
  for (int r = 0; r < 4; ++r)
#pragma unroll
    for (int n = 0; n < 8; ++n) s[r][n] = 0.f;
  float4 pa, pb;
  load(0, pa, pb);
  __syncthreads();
  for (int c = 0; c < nc; ++c) {
    // One sync per chunk: stage c&1 was last read by chunk c-2's FMAs, which
    // every thread finished before chunk c-1's sync.
    float* st = stages + (c & 1) * kStageFloats;
    store_pair(st, pa, pb, lr, lk);
    __syncthreads();
    if (c + 1 < nc) load(c + 1, pa, pb);
    hook(c, s);
    chunk_fma(s, st, st + KC * LD, ty, tx);
  }
}

// Rows of src staged in U per product step: all 64 for DP <= 64.
template <int DP>
constexpr int kStagedRows = BC < kUFloats / DP ? BC : kUFloats / DP;

// The first kStagedRows<DP> rows of a product's src into U, issued early
// (cp.async) so that they land during the chunk loops before the product.
// The caller syncs before: U's previous readers must be done.
template <int DP>
__device__ __forceinline__ void prestage(float* U, const float* src, int r0, int T, int D, bool vec, int tid) {
  stage_rows<DP, kStagedRows<DP>>(U, src, r0, T, D, vec, tid);
}

// acc[r][OFF + 4m + e] += sum_k Pb[k][4ty + r] * src[r0 + k][32m + 4tx + e]
// over the tile's 64 k (rows of src), m < DP/32: the thread's rows of the
// accumulator times DP columns of src. Syncs before reading Pb (its writes
// become visible) and before restaging U (its previous readers are done);
// prestaged: the first rows are in U already (prestage).
template <int DP, int OFF, int NA>
__device__ __forceinline__ void product(float (&acc)[4][NA], const float* Pb, float* U, const float* src,
                                        int r0, int T, int D, bool vec, int tid, bool prestaged) {
  constexpr int VC = kStagedRows<DP>;
  static_assert(BC % VC == 0, "staged rows");
  const int ty = tid >> 3, tx = tid & 7;
#pragma unroll 1
  for (int vc = 0; vc < BC / VC; ++vc) {
    if (!(prestaged && vc == 0)) {
      __syncthreads();
      stage_rows<DP, VC>(U, src, r0 + vc * VC, T, D, vec, tid);
    }
    cp_async_wait_all();
    __syncthreads();
    pt_fma<DP, OFF, VC>(acc, Pb + vc * VC * LD, U, ty, tx);
  }
}

// The thread's 4 x 8 micro-tile into Pb (column-major: tile column c is row c of Pb).
__device__ __forceinline__ void store_tile(float* Pb, const float (&s)[4][8], int ty, int tx) {
#pragma unroll
  for (int n = 0; n < 8; ++n)
    *reinterpret_cast<float4*>(Pb + s_col(tx, n) * LD + 4 * ty) = make_float4(s[0][n], s[1][n], s[2][n], s[3][n]);
}

template <int DP, bool RA>
struct BwdBase {
  static constexpr int WP = RA ? 2 * DP : DP;  // accumulator width of dKf / dQf (padded halves)
  static constexpr int ND = DP / 32;           // float4 column groups per half
  BwdArgs a;
  int n_tiles = 0;
  float scale = 0;

  __device__ bool vec_rows() const {
    const auto bits = reinterpret_cast<std::uintptr_t>(a.q) | reinterpret_cast<std::uintptr_t>(a.k) |
                      reinterpret_cast<std::uintptr_t>(a.v) | reinterpret_cast<std::uintptr_t>(a.dout);
    return (a.D & 3) == 0 && (bits & 15) == 0;
  }
  __device__ float* scratch(const Member& team) const {
    auto base = reinterpret_cast<std::uintptr_t>(team.team_scratch(0).get_shmem(kBwdScratch + 128));
    return reinterpret_cast<float*>((base + 127) & ~std::uintptr_t(127));
  }
  __device__ void gates(int b, int h, float& ws, float& wr, float& wd) const {
    ws = 1.f, wr = 0.f, wd = 0.f;
    if constexpr (RA) {
      const float* g = a.gates + (std::size_t(a.gate_batch == 1 ? 0 : b) * a.H + h) * 3;
      ws = g[0], wr = g[1], wd = g[2];
    }
  }
  // The tile of one step: own rows (accumulator rows, the A side) from r0,
  // the other side's rows (the columns, B side) from c0; keys: the own rows
  // are keys (BwdKV), else queries (BwdQ). i - j of element (row, col):
  __device__ static int gap(int r0, int c0, bool keys, int row, int col) {
    return keys ? (c0 + col) - (r0 + row) : (r0 + row) - (c0 + col);
  }
  // RA's reciprocal half counts only inside the band i - j <= window.
  __device__ void zero_outside_band(float (&s)[4][8], int r0, int c0, bool keys, int ty, int tx) const {
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int n = 0; n < 8; ++n)
        if (gap(r0, c0, keys, 4 * ty + r, s_col(tx, n)) > a.window) s[r][n] = 0.f;
  }
  // The same on the thread's own elements of Pb (mixed tiles, between the two
  // halves of a dL product; the caller syncs before).
  __device__ void zero_pb_outside_band(float* Pb, int r0, int c0, bool keys, int ty, int tx) const {
#pragma unroll
    for (int n = 0; n < 8; ++n)
#pragma unroll
      for (int r = 0; r < 4; ++r)
        if (gap(r0, c0, keys, 4 * ty + r, s_col(tx, n)) > a.window) Pb[s_col(tx, n) * LD + 4 * ty + r] = 0.f;
  }
  // s <- P = exp2(s scale log2e + off(r, n)) on the causal, in-range pairs,
  // else 0; off = (bias w_disc d_j - lse_i) log2 e of the element.
  template <class Off>
  __device__ void probabilities(float (&s)[4][8], int r0, int c0, bool keys, Off off, int ty, int tx) const {
    const float sl = scale * kLog2e;
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const int row = r0 + 4 * ty + r, col = c0 + s_col(tx, n);
        const int i = keys ? col : row, j = keys ? row : col;
        s[r][n] = (j <= i && i < a.T && j < a.T) ? exp2f(fmaf(s[r][n], sl, off(r, s_col(tx, n)))) : 0.f;
      }
  }
  // f(r, x, c, q) for the thread's own rows x = r0 + 4ty + r < T and columns
  // c = 32m + 4tx + e < D of a DP-wide half; q = 4m + e indexes that half of
  // the thread's accumulators (compile-time after unrolling).
  template <class F>
  __device__ __forceinline__ void each_own(int r0, int ty, int tx, F f) const {
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int x = r0 + 4 * ty + r;
      if (x >= a.T) continue;
#pragma unroll
      for (int m = 0; m < ND; ++m)
#pragma unroll
        for (int e = 0; e < 4; ++e)
          if (32 * m + 4 * tx + e < a.D) f(r, x, 32 * m + 4 * tx + e, 4 * m + e);
    }
  }
  // acc += dL x [first | second] rows of the other side (from c0), with dL
  // (in Pb) masked to the band in place for the second half on mixed tiles
  // and that half skipped on plain ones. acc's halves are DP wide each; the
  // first half's rows were prestaged in U.
  template <int NA>
  __device__ void dl_products(float (&acc)[4][NA], float* Pb, float* U, Kind kind, int r0, int c0,
                              bool keys, const float* first, const float* second, bool vec,
                              int tid) const {
    product<DP, 0>(acc, Pb, U, first, c0, a.T, a.D, vec, tid, true);
    if constexpr (RA) {
      if (kind != kPlain) {
        if (kind == kMixed) {
          __syncthreads();  // every thread is done with the unmasked dL
          zero_pb_outside_band(Pb, r0, c0, keys, tid >> 3, tid & 7);
        }
        product<DP, 4 * ND>(acc, Pb, U, second, c0, a.T, a.D, vec, tid, false);
      }
    }
  }
  // s <- own rows x other rows over the D columns of the given sources (no
  // gates, one half): dP.
  __device__ void pair_tile(float (&s)[4][8], float* stages, int r0, int c0, const float* asrc,
                            const float* bsrc, bool vec, int tid) const {
    const int T = a.T, D = a.D, nh = (D + KC - 1) / KC, lr = tid >> 1, lk = (tid & 1) * 4;
    chunk_loop(
        s, stages, nh, tid,
        [&](int c, float4& pa, float4& pb) {
          const int k = c * KC + lk, ra = r0 + lr, rb = c0 + lr;
          pa = ra < T ? load4(asrc + std::size_t(ra) * D, k, D, vec) : make_float4(0.f, 0.f, 0.f, 0.f);
          pb = rb < T ? load4(bsrc + std::size_t(rb) * D, k, D, vec) : make_float4(0.f, 0.f, 0.f, 0.f);
        },
        [](int, float(&)[4][8]) {});
  }
  // s <- the folded logits' dot products of the tile as the forward takes
  // them: the std half from (a_std, b_std) gated (ga_std, gb_std), RA's
  // reciprocal half (a_rec, b_rec) first where the tile kind uses it, masked
  // to the band on mixed tiles.
  __device__ void logits_tile(float (&s)[4][8], float* stages, Kind kind, int r0, int c0, bool keys,
                              const float* a_std, const float* a_rec, const float* b_std,
                              const float* b_rec, float ga_std, float ga_rec, float gb_std,
                              float gb_rec, bool vec, int tid) const {
    const int T = a.T, D = a.D, nh = (D + KC - 1) / KC, lr = tid >> 1, lk = (tid & 1) * 4;
    const int ty = tid >> 3, tx = tid & 7;
    chunk_loop(
        s, stages, kind == kPlain ? nh : 2 * nh, tid,
        [&](int c, float4& pa, float4& pb) {
          const bool rec = RA && kind != kPlain && c < nh;
          const int k = (c % nh) * KC + lk, ra = r0 + lr, rb = c0 + lr;
          pa = ra < T ? load4((rec ? a_rec : a_std) + std::size_t(ra) * D, k, D, vec)
                      : make_float4(0.f, 0.f, 0.f, 0.f);
          pb = rb < T ? load4((rec ? b_rec : b_std) + std::size_t(rb) * D, k, D, vec)
                      : make_float4(0.f, 0.f, 0.f, 0.f);
          if (RA) {
            const float ga = rec ? ga_rec : ga_std, gb = rec ? gb_rec : gb_std;
            pa.x *= ga, pa.y *= ga, pa.z *= ga, pa.w *= ga;
            pb.x *= gb, pb.y *= gb, pb.z *= gb, pb.w *= gb;
          }
        },
        [&](int c, float(&sv)[4][8]) {
          if (RA && kind == kMixed && c == nh) zero_outside_band(sv, r0, c0, keys, ty, tx);
        });
  }
  // Sum of x over the team (4 warps), deterministic; every thread must call.
  __device__ float team_sum(float x, float* red, int tid) const {
    x = cuda::warp_sum(x);
    __syncthreads();  // red may still be read by an earlier team_sum
    if ((tid & 31) == 0) red[tid >> 5] = x;
    __syncthreads();
    return red[0] + red[1] + red[2] + red[3];
  }
};

// ------------------------------------------------------------ key-owned kernel
template <int DP, bool RA>
struct BwdKV : BwdBase<DP, RA> {
  using Base = BwdBase<DP, RA>;
  using Base::a;
  using Base::ND;
  using Base::WP;
  // Teams per SM the register allocation must allow: kernel_traits.hpp.
  static constexpr int kMinBlocks = fp32_tiled_min_blocks(DP, RA, TcPass::backward_kv);

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const int tid = team.team_rank(), ty = tid >> 3, tx = tid & 7;
    const int T = a.T, D = a.D, n_tiles = this->n_tiles;
    const int kt = team.league_rank() % n_tiles;  // low key tiles see the most queries: first
    const int bh = team.league_rank() / n_tiles, b = bh / a.H, h = bh % a.H;
    const int j0 = kt * BC;
    const std::size_t mat = std::size_t(bh) * T * D;
    const float *Q = a.q + mat, *K = a.k + mat, *V = a.v + mat, *dO = a.dout + mat;
    float w_std, w_rec, w_disc;
    this->gates(b, h, w_std, w_rec, w_disc);
    const bool vec = this->vec_rows();
    float* U = this->scratch(team);
    float* Pb = U + kOffPb;
    float* stages = U + kOffStages;
    float* lse2 = U + kOffVecs;  // lse_i log2 e of the query tile
    float* dlt = lse2 + 64;      // Delta_i
    float* red = lse2 + 192;

    float bias2[4];  // w_disc d_j log2 e of the thread's key rows
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int j = j0 + 4 * ty + r;
      bias2[r] = RA && j < T ? w_disc * a.d[std::size_t(bh) * T + j] * kLog2e : 0.f;
    }
    float dkf[4][4 * (WP / 32)], dv[4][4 * ND], colsum[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      colsum[r] = 0.f;
#pragma unroll
      for (int c = 0; c < 4 * (WP / 32); ++c) dkf[r][c] = 0.f;
#pragma unroll
      for (int c = 0; c < 4 * ND; ++c) dv[r][c] = 0.f;
    }

    for (int qt = kt; qt < n_tiles; ++qt) {  // BR == BC: query tiles from the diagonal one on
      const int i0 = qt * BR;
      const Kind kind = cuda::classify(RA, a.window, i0, BR, j0, BC, T);
      __syncthreads();  // the previous tile's readers of lse2 / dlt and U are done
      prestage<DP>(U, dO, i0, T, D, vec, tid);  // dV's operand, landing during the logits
      if (tid < 64) {
        const int i = i0 + tid;
        lse2[tid] = i < T ? a.lse[std::size_t(bh) * T + i] * kLog2e : 0.f;
        dlt[tid] = i < T ? a.delta[std::size_t(bh) * T + i] : 0.f;
      }

      // S^T: rows = keys j (A = Kf_j = [K_j, Q_j]), columns = queries i
      // (B = Qf_i = [w_std Q_i, w_rec K_i]).
      float s[4][8];
      this->logits_tile(s, stages, kind, j0, i0, true, K, Q, Q, K, 1.f, 1.f, w_std, w_rec, vec, tid);
      // P^T -> Pb.
      this->probabilities(s, j0, i0, true, [&](int r, int c) { return bias2[r] - lse2[c]; }, ty, tx);
      store_tile(Pb, s, ty, tx);
      // dV_j += sum_i P_ij dO_i
      product<DP, 0>(dv, Pb, U, dO, i0, T, D, vec, tid, true);

      __syncthreads();  // every thread is done with U (dO)
      prestage<DP>(U, Q, i0, T, D, vec, tid);  // dKf's first operand, landing during dP
      // dP^T: rows = keys (A = V_j), columns = queries (B = dO_i).
      this->pair_tile(s, stages, j0, i0, V, dO, vec, tid);
      // dL^T = P^T (dP^T - Delta_i), in place in Pb (own elements); column sums for dd.
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        const int c = s_col(tx, n);
        float4* at = reinterpret_cast<float4*>(Pb + c * LD + 4 * ty);
        const float4 p = *at;
        const float dl = dlt[c];
        const float4 x = make_float4(p.x * (s[0][n] - dl), p.y * (s[1][n] - dl), p.z * (s[2][n] - dl),
                                     p.w * (s[3][n] - dl));
        *at = x;
        if (RA) colsum[0] += x.x, colsum[1] += x.y, colsum[2] += x.z, colsum[3] += x.w;
      }
      // dKf_j += sum_i dL_ij [Q_i, [band] K_i] (gates and scale in the epilogue)
      this->dl_products(dkf, Pb, U, kind, j0, i0, true, Q, K, vec, tid);
    }

    // Epilogue: dV, dK (SDPA) or the float parts of dK and dQ (RA), dd, dw_disc.
    const float scale = this->scale;
    float gdisc = 0.f, cs[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) cs[r] = RA ? row_sum(colsum[r]) : 0.f;  // every lane, before any exit
    this->each_own(j0, ty, tx, [&](int r, int j, int c, int q) {
      const std::size_t at = mat + std::size_t(j) * D + c;
      a.dv[at] = dv[r][q];
      if constexpr (RA) {
        a.part_dk[at] = dkf[r][q] * scale * w_std;
        a.part_dq[at] = dkf[r][4 * ND + q] * scale * w_rec;
      } else {
        a.dk[at] = dkf[r][q] * scale;
      }
    });
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int j = j0 + 4 * ty + r;
      if (RA && tx == 0 && j < T) {
        a.dd[std::size_t(bh) * T + j] = w_disc * cs[r];
        gdisc += a.d[std::size_t(bh) * T + j] * cs[r];
      }
    }
    if constexpr (RA) {
      const float total = this->team_sum(gdisc, red, tid);
      if (tid == 0) a.gate_partials[(std::size_t(bh) * a.n_partials + kt) * 3 + 2] = total;
    }
  }
};

// ---------------------------------------------------------- query-owned kernel
template <int DP, bool RA>
struct BwdQ : BwdBase<DP, RA> {
  using Base = BwdBase<DP, RA>;
  using Base::a;
  using Base::ND;
  using Base::WP;
  // Teams per SM the register allocation must allow: kernel_traits.hpp.
  static constexpr int kMinBlocks = fp32_tiled_min_blocks(DP, RA, TcPass::backward_q);

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const int tid = team.team_rank(), ty = tid >> 3, tx = tid & 7;
    const int T = a.T, D = a.D, n_tiles = this->n_tiles;
    const int qt = n_tiles - 1 - team.league_rank() % n_tiles;  // heaviest tiles first
    const int bh = team.league_rank() / n_tiles, b = bh / a.H, h = bh % a.H;
    const int i0 = qt * BR;
    const std::size_t mat = std::size_t(bh) * T * D;
    const float *Q = a.q + mat, *K = a.k + mat, *V = a.v + mat, *dO = a.dout + mat;
    float w_std, w_rec, w_disc;
    this->gates(b, h, w_std, w_rec, w_disc);
    const bool vec = this->vec_rows();
    float* U = this->scratch(team);
    float* Pb = U + kOffPb;
    float* stages = U + kOffStages;
    float* bias = U + kOffVecs;  // w_disc d_j log2 e of the key tile
    float* red = bias + 192;

    float lse2[4], dlt[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const int i = i0 + 4 * ty + r;
      lse2[r] = i < T ? a.lse[std::size_t(bh) * T + i] * kLog2e : 0.f;
      dlt[r] = i < T ? a.delta[std::size_t(bh) * T + i] : 0.f;
    }
    float dqf[4][4 * (WP / 32)];
#pragma unroll
    for (int r = 0; r < 4; ++r)
#pragma unroll
      for (int c = 0; c < 4 * (WP / 32); ++c) dqf[r][c] = 0.f;

    const int kt_last = min(i0 + BR - 1, T - 1) / BC;
    for (int kt = 0; kt <= kt_last; ++kt) {
      const int j0 = kt * BC;
      const Kind kind = cuda::classify(RA, a.window, i0, BR, j0, BC, T);
      __syncthreads();  // the previous tile's readers of bias and U are done
      prestage<DP>(U, K, j0, T, D, vec, tid);  // dQf's first operand, landing during logits and dP
      if constexpr (RA)
        if (tid < 64) bias[tid] = j0 + tid < T ? w_disc * a.d[std::size_t(bh) * T + j0 + tid] * kLog2e : 0.f;
      // S: rows = queries (A = Qf_i = [w_std Q_i, w_rec K_i]), columns = keys
      // (B = Kf_j = [K_j, Q_j]).
      float s[4][8];
      this->logits_tile(s, stages, kind, i0, j0, false, Q, K, K, Q, w_std, w_rec, 1.f, 1.f, vec, tid);
      // P -> Pb.
      this->probabilities(s, i0, j0, false, [&](int r, int c) { return (RA ? bias[c] : 0.f) - lse2[r]; }, ty, tx);
      store_tile(Pb, s, ty, tx);

      // dP: rows = queries (A = dO_i), columns = keys (B = V_j).
      this->pair_tile(s, stages, i0, j0, dO, V, vec, tid);
      // dL = P (dP - Delta_i), in place in Pb (own elements).
#pragma unroll
      for (int n = 0; n < 8; ++n) {
        float4* at = reinterpret_cast<float4*>(Pb + s_col(tx, n) * LD + 4 * ty);
        const float4 p = *at;
        *at = make_float4(p.x * (s[0][n] - dlt[0]), p.y * (s[1][n] - dlt[1]), p.z * (s[2][n] - dlt[2]),
                          p.w * (s[3][n] - dlt[3]));
      }
      // dQf_i += sum_j dL_ij [K_j, [band] Q_j] (gates and scale in the epilogue)
      this->dl_products(dqf, Pb, U, kind, i0, j0, false, K, Q, vec, tid);
    }

    // Epilogue. SDPA: dQ = s dQf. RA: dQ_i = part_dq_i + w_std s dQf_i[0:D],
    // dK_i = part_dk_i + w_rec s dQf_i[D:2D]; dw_std = sum_i Q_i . s dQf_i[0:D],
    // dw_rec = sum_i K_i . s dQf_i[D:2D] (RA.md).
    const float scale = this->scale;
    float gstd = 0.f, grec = 0.f;
    this->each_own(i0, ty, tx, [&](int r, int i, int c, int q) {
      const std::size_t at = mat + std::size_t(i) * D + c;
      const float gq = dqf[r][q] * scale;
      if constexpr (RA) {
        const float gk = dqf[r][4 * ND + q] * scale;
        a.dq[at] = a.part_dq[at] + w_std * gq;
        a.dk[at] = a.part_dk[at] + w_rec * gk;
        gstd = fmaf(Q[std::size_t(i) * D + c], gq, gstd);
        grec = fmaf(K[std::size_t(i) * D + c], gk, grec);
      } else {
        a.dq[at] = gq;
      }
    });
    if constexpr (RA) {
      const float ts = this->team_sum(gstd, red, tid);
      const float tr = this->team_sum(grec, red, tid);
      if (tid == 0) {
        float* gp = a.gate_partials + (std::size_t(bh) * a.n_partials + qt) * 3;
        gp[0] = ts, gp[1] = tr;
      }
    }
  }
};

template <template <int, bool> class F, int DP, bool RA>
void launch_bwd_kernel(const Kokkos::Cuda& exec, const BwdArgs& a, const char* name) {
  using K = F<DP, RA>;
  K f;
  f.a = a;
  f.n_tiles = (a.T + BR - 1) / BR;
  f.scale = 1.f / std::sqrt(float(a.D));
  Policy<K> p(exec, a.B * a.H * f.n_tiles, NT, 1);
  Kokkos::parallel_for(name, p.set_scratch_size(0, Kokkos::PerTeam(kBwdScratch + 128)), f);
}

template <int DP, bool RA>
void launch_bwd(const Kokkos::Cuda& exec, const BwdArgs& a) {
  launch_bwd_kernel<BwdKV, DP, RA>(exec, a, "ra::fp32_tiled::backward_kv");
  launch_bwd_kernel<BwdQ, DP, RA>(exec, a, "ra::fp32_tiled::backward_q");
}

}  // namespace

std::string unsupported(bool /*ra*/, int D) {
  if (D < 1 || D > 128) return "head dim D = " + std::to_string(D) + " is outside 1..128";
  return "";
}

// The plan of a kernel pair on these tiles; kind: "" (forward) or "bwd ".
static TilePlan make_plan(const std::string& kind, bool ra, int D, std::size_t scratch) {
  TilePlan p;
  p.path = "fp32 tiled " + kind + std::to_string(BR) + "x" + std::to_string(BC) + " dp" +
           std::to_string(padded_dim(D)) + (ra ? " ra" : "");
  p.br = BR, p.bc = BC, p.team_size = NT, p.vector_length = 1;
  p.scratch_level = 0, p.scratch_bytes = scratch + 128;
  return p;
}

TilePlan forward_plan(bool ra, int D) { return make_plan("", ra, D, kScratch); }

void forward(const Kokkos::Cuda& exec, const Args& a) {
  if (!unsupported(a.ra, a.D).empty())
    throw std::logic_error("ra::kk::fp32t::forward called for an unsupported problem");
  if (a.ra)
    launch_dp<true>(exec, a);
  else
    launch_dp<false>(exec, a);
}

std::string backward_unsupported(bool ra, int D) {
  if (std::string why = unsupported(ra, D); !why.empty()) return why;
  // The key-owned kernel holds dKf (4 x 2 DP) and dV (4 x DP) per thread: at
  // DP = 128 that is 192 accumulators beside the 32 logits, past what 255
  // registers hold without spilling.
  if (ra && D > 64) return "fp32 tiled backward: RA needs D <= 64, D = " + std::to_string(D);
  return "";
}

TilePlan backward_plan(bool ra, int D) { return make_plan("bwd ", ra, D, kBwdScratch); }

int backward_partials(int T) { return (T + BR - 1) / BR; }

void backward(const Kokkos::Cuda& exec, const BwdArgs& a) {
  if (!backward_unsupported(a.ra, a.D).empty())
    throw std::logic_error("ra::kk::fp32t::backward called for an unsupported problem");
  if (a.n_partials < backward_partials(a.T))
    throw std::logic_error("ra::kk::fp32t::backward: gate_partials has too few slots");
  switch (padded_dim(a.D)) {
    case 32: return a.ra ? launch_bwd<32, true>(exec, a) : launch_bwd<32, false>(exec, a);
    case 64: return a.ra ? launch_bwd<64, true>(exec, a) : launch_bwd<64, false>(exec, a);
    default: return launch_bwd<128, false>(exec, a);
  }
}

}  // namespace ra::kk::detail::fp32t
