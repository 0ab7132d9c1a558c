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
static_assert(kScratch + 128 + 8 * (NT + 2) <= 48 * 1024, "Kokkos' 48 KiB team-scratch cap");

enum Kind { kPlain, kMixed, kFull };

// ------------------------------------------------------------------ primitives
__device__ __forceinline__ void cp_async16(float* dst, const float* src, bool valid) {
  const auto d = static_cast<std::uint32_t>(__cvta_generic_to_shared(dst));
  // src-size 0 zero-fills the 16 bytes (src must still be a mapped address).
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(d), "l"(src),
               "r"(valid ? 16 : 0)
               : "memory");
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

template <int DP, bool RA>
struct Forward {
  static constexpr int NO = DP / 32;                          // float4 column groups of O per thread
  static constexpr int VC = BC < kVFloats / DP ? BC : kVFloats / DP;  // V rows per staged chunk
  // Teams per SM the register allocation must allow (LaunchBounds): the caps
  // 128 (SDPA), 168 (RA: gates, bias and band state on top) and 255 (DP = 128:
  // 64 O accumulators) are the lowest at which ptxas (CUDA 13, sm_90) needs no
  // spills; 16 / 12 / 8 warps per SM.
  static constexpr int kMinBlocks = DP == 128 ? 2 : RA ? 3 : 4;
  static_assert(DP % 32 == 0 && BC % VC == 0, "tile geometry");

  Args a;
  int n_qtiles = 0;
  float scale = 0;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  // How the tile (query rows i0.., key columns j0..) meets the reciprocity band.
  __device__ Kind classify(int i0, int j0) const {
    if (!RA) return kPlain;
    if (a.window < 0) return kFull;
    const int i_last = min(i0 + BR - 1, a.T - 1);
    if (i_last - j0 <= a.window) return kFull;          // farthest pair inside the band
    if (i0 - (j0 + BC - 1) > a.window) return kPlain;   // nearest pair outside
    return kMixed;
  }

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
    auto store_chunk = [&](int stage) {  // transposed: element (row r, k) at [k * LD + r]
      float* qs = sm + stage * kStageFloats;
      float* ks = qs + KC * LD;
      qs[(lk + 0) * LD + lr] = pq.x, qs[(lk + 1) * LD + lr] = pq.y;
      qs[(lk + 2) * LD + lr] = pq.z, qs[(lk + 3) * LD + lr] = pq.w;
      ks[(lk + 0) * LD + lr] = pk.x, ks[(lk + 1) * LD + lr] = pk.y;
      ks[(lk + 2) * LD + lr] = pk.z, ks[(lk + 3) * LD + lr] = pk.w;
    };
    // V rows j0 + vc*VC .. + VC - 1 into Vs (row-major, DP wide), zero past T and D.
    auto stage_v = [&](int j0, int vc) {
      constexpr int kRow4 = DP / 4;
      for (int idx = tid; idx < VC * kRow4; idx += NT) {
        const int r = idx / kRow4, c = 4 * (idx % kRow4), j = j0 + vc * VC + r;
        float* dst = Vs + r * DP + c;
        if (vec) {
          const bool valid = j < T && c < D;
          cp_async16(dst, valid ? V + std::size_t(j) * D + c : V, valid);
        } else {
          const float* src = V + std::size_t(j) * D + c;
#pragma unroll
          for (int e = 0; e < 4; ++e) dst[e] = (j < T && c + e < D) ? src[e] : 0.f;
        }
      }
    };

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
#pragma unroll 4
        for (int jj = 0; jj < VC; ++jj) {
          const float4 p = *reinterpret_cast<const float4*>(Pt + (vc * VC + jj) * LD + 4 * ty);
          const float pr[4] = {p.x, p.y, p.z, p.w};
#pragma unroll
          for (int mo = 0; mo < NO; ++mo) {
            const float4 v = *reinterpret_cast<const float4*>(Vs + jj * DP + 32 * mo + 4 * tx);
            const float vr[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
            for (int r = 0; r < 4; ++r)
#pragma unroll
              for (int e = 0; e < 4; ++e) o[r][4 * mo + e] = fmaf(pr[r], vr[e], o[r][4 * mo + e]);
          }
        }
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

}  // namespace

std::string unsupported(bool /*ra*/, int D) {
  if (D < 1 || D > 128) return "head dim D = " + std::to_string(D) + " is outside 1..128";
  return "";
}

TilePlan forward_plan(bool ra, int D) {
  TilePlan p;
  p.path = "fp32 tiled " + std::to_string(BR) + "x" + std::to_string(BC) + " dp" +
           std::to_string(padded_dim(D)) + (ra ? " ra" : "");
  p.br = BR, p.bc = BC, p.team_size = NT, p.vector_length = 1;
  p.scratch_level = 0, p.scratch_bytes = kScratch + 128;
  return p;
}

void forward(const Kokkos::Cuda& exec, const Args& a) {
  if (!unsupported(a.ra, a.D).empty())
    throw std::logic_error("ra::kk::fp32t::forward called for an unsupported problem");
  if (a.ra)
    launch_dp<true>(exec, a);
  else
    launch_dp<false>(exec, a);
}

}  // namespace ra::kk::detail::fp32t
