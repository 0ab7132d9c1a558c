// Tensor-core attention kernels for CUDA (sm_80 / sm_86 / sm_90): bf16 storage,
// fp32 accumulation, online softmax in registers. Same algorithm and the same
// deterministic three-kernel structure as the portable kernels in
// detail/fused.hpp (forward; backward = a key-owned and a query-owned kernel,
// no atomics; Options::deterministic = false instead runs FlashAttention-2's
// single key-owned backward kernel with dQ added by fp32 atomics: BackwardFused),
// same folded RA form (RA.md):
//     Qf_i = [w_std Q_i, w_rec K_i],  Kf_j = [K_j, Q_j],  L_ij = s Qf_i.Kf_j + w_disc d_j
// but every tile product is a warp-level mma.sync.m16n8k16 (bf16 in, fp32 out)
// fed by ldmatrix from swizzled shared memory, and the streamed tiles arrive by
// cp.async (two stages, or FlashAttention-2's split K/V schedule).
//
// Each kernel is a Kokkos TeamPolicy functor (team = one CUDA block of
// 32 * WARPS threads, vector_length 1, so team ranks 0..31 are warp 0, ...);
// its device body is warp-synchronous CUDA. Each warp owns 16 (forward: 16 *
// m_tiles) rows of the team's tile and keeps them in registers as mma
// A-fragments (or, rows_in_smem, reads them from shared memory at each
// k-step); every kernel folds the gates into those own rows, so the streamed
// tiles are plain copies of Q, K, V, dO. Tile shapes, schedules and register
// caps come from ra::kk::tensor_core_traits (kernel_traits.hpp).
//
// Fragment layouts (PTX ISA, mma.m16n8k16, lane = 4 g + t):
//   A (16x16, row): a0 = A[g][2t,2t+1]   a1 = A[g+8][2t..]  a2 = A[g][2t+8..]  a3 = A[g+8][2t+8..]
//   B (16x8, col):  b0 = B[2t,2t+1][g]   b1 = B[2t+8,2t+9][g]
//   C (16x8):       c0,c1 = C[g][2t,2t+1]   c2,c3 = C[g+8][2t,2t+1]
// so a C tile pair (n-blocks 2k, 2k+1) re-packed to bf16 is exactly the A
// fragment of the next product (P -> P V, dL -> dL K), without shared memory.
#include <ra/kokkos/detail/tensor_core.hpp>
#include <ra/kokkos/tuned_traits.hpp>
#include <ra/kokkos/kernel_traits.hpp>

#include "cuda_warp_primitives.hpp"
#include "tensor_core_primitives.hpp"
#include "wgmma.hpp"

#include <cuda_bf16.h>

#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <type_traits>
#include <utility>

namespace ra::kk::detail::tc {
namespace {

using namespace ra::kk::detail::cuda;  // cuda_warp_primitives.hpp
using bf16_t = __nv_bfloat16;

// ------------------------------------------------------------------ forward
// SPLIT selects the load schedule of the K/V tiles:
//   false  two stages of [Kf | V | bias]: tile kt+1 loads while kt computes
//   true   one Kf and one V buffer (half the shared memory, so twice the key
//          tile fits): V(kt) loads during QK^T(kt), Kf(kt+1) during P V(kt)
// ROWS_SMEM (the traits' rows_in_smem): the team's gated Qf rows stay staged in
// front of the pipeline and QK^T reads its A fragments from there, which frees
// the W / 4 registers per thread and m-tile that would hold them (RA: 32).
template <int D, bool RA, int WARPS, int BC, int MT, bool SPLIT, int MINB, bool ROWS_SMEM>
struct Forward {
  static constexpr int W = RA ? 2 * D : D, WR = 16 * MT, BR = WR * WARPS, NT = 32 * WARPS;
  static constexpr int kMinBlocks = MINB;
  static constexpr int kStage = Swizzled<W>::bytes(BC) + Swizzled<D>::bytes(BC) + 4 * BC;
  static constexpr int kPipe = ROWS_SMEM ? Swizzled<W>::bytes(BR) : 0;
  static constexpr std::size_t kScratch =
      ROWS_SMEM ? kPipe + (SPLIT ? 1 : 2) * std::size_t(kStage)
                : std::max<std::size_t>(Swizzled<W>::bytes(BR), (SPLIT ? 1 : 2) * std::size_t(kStage));
  static_assert(fits_team_shared(kScratch, NT), "traits entry needs more shared memory than a Kokkos block has");
  Args a;
  int n_qtiles = 0;
  float scale = 0;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const ForwardTeam<RA> tm(a, team.league_rank(), n_qtiles, BR);
    const int T = tm.T, Dact = tm.Dact, i0 = tm.i0;
    const auto *Q = tm.Q, *K = tm.K, *V = tm.V;
    const float* dvec = tm.dvec;
    const Gates g = tm.g;
    char* smem = aligned_scratch(team, kScratch);
    const u32 s0 = smem_u32(smem);

    // This warp's WR query rows of Qf with the gates folded in: as A-fragments
    // in registers, or (ROWS_SMEM) in the staged tile, gated in place.
    stage_rows<BR, W, D, NT>(s0, Q, K, i0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    if constexpr (RA && ROWS_SMEM) scale_tile_halves<BR, W, D, NT>(smem, g.std, g.rec, tid);
    u32 qa[ROWS_SMEM ? 1 : MT][W / 16][4];
#pragma unroll
    for (int mt = 0; mt < (ROWS_SMEM ? 0 : MT); ++mt) {
      load_a<W, W / 16>(qa[mt], s0, warp * WR + 16 * mt, lane);
      if constexpr (RA) {
#pragma unroll
        for (int kk = 0; kk < W / 16; ++kk)
#pragma unroll
          for (int e = 0; e < 4; ++e)
            qa[mt][kk][e] = scale_bf16x2(qa[mt][kk][e], kk < D / 16 ? g.std : g.rec);
      }
    }
    __syncthreads();  // the staging area becomes the K/V pipeline (ROWS_SMEM: the gated rows are in)

    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;
    auto buffer = [&](int kt) { return kPipe + (SPLIT ? 0 : (kt & 1) * kStage); };
    auto stage_k = [&](int kt) {  // Kf rows and the bias
      const u32 st = s0 + buffer(kt);
      stage_folded<BC, W, D, NT>(st, K, Q, kt * BC, T, Dact, tid,
                                 classify(RA, a.window, i0, BR, kt * BC, BC, T) != kPlain);
      if constexpr (RA)
        stage_vec<BC, NT>(st + Swizzled<W>::bytes(BC) + Swizzled<D>::bytes(BC), dvec, kt * BC, T, tid);
    };
    auto stage_v = [&](int kt) {
      stage_rows<BC, D, D, NT>(s0 + buffer(kt) + Swizzled<W>::bytes(BC), V, V, kt * BC, T, Dact, tid);
    };

    float o[MT][D / 8][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) zero(o[mt]);
    float m[MT][2], l[MT][2];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) m[mt][0] = m[mt][1] = -INFINITY, l[mt][0] = l[mt][1] = 0.f;
    const float sl = scale * kLog2e, bl = g.disc * kLog2e;
    const int row0 = i0 + warp * WR;
    stage_k(0);
    if constexpr (!SPLIT) stage_v(0);
    cp_commit();
    for (int kt = 0; kt <= kt_last; ++kt) {
      if constexpr (SPLIT) {
        cp_wait<0>();     // Kf(kt) has landed
        __syncthreads();  // ... for every thread; and P V(kt-1) is done with the V buffer
        stage_v(kt);
        cp_commit();
      } else {
        two_stage_next(kt, kt_last, [&](int t) { stage_k(t), stage_v(t); });
      }
      const u32 kf = s0 + buffer(kt), vs = kf + Swizzled<W>::bytes(BC);
      const SharedFloats bias{s0 + buffer(kt) + Swizzled<W>::bytes(BC) + Swizzled<D>::bytes(BC)};
      const int j0 = kt * BC;
      float s[MT][BC / 8][4];
      folded_logits<D, RA, BC, W>(
          s,
          [&](auto k0, auto k1) {
            if constexpr (ROWS_SMEM)
              mma_abt_sa<decltype(k0)::value, decltype(k1)::value, BC, W, MT, W>(s, s0, warp * WR, kf, lane);
            else
              mma_abt<decltype(k0)::value, decltype(k1)::value, BC, W>(s, qa, kf, lane);
          },
          classify(RA, a.window, i0, BR, j0, BC, T), lane, row0, j0, true, a.window);

      // Online softmax in the log2 domain; each quad of lanes shares two rows per m-tile.
#pragma unroll
      for (int mt = 0; mt < MT; ++mt)
        online_softmax_step<RA>(s[mt], m[mt], l[mt], o[mt], lane, row0 + 16 * mt, j0, T, sl, bias, bl);
      if constexpr (SPLIT) {
        cp_wait<0>();     // V(kt) has landed
        __syncthreads();  // ... for every thread; and every QK^T(kt) is done with Kf
        if (kt < kt_last) {
          stage_k(kt + 1);
          cp_commit();
        }
      }
      mma_pb<BC, D, 0, D / 16>(o, s, vs, lane);
      if constexpr (!SPLIT) __syncthreads();  // this stage is refilled two iterations on
    }

#pragma unroll
    for (int mt = 0; mt < MT; ++mt) tm.store<D>(a, o[mt], m[mt], l[mt], row0 + 16 * mt, lane);
  }
};

// ------------------------------------------------------------------ backward
// Query-owned kernel: dQf_i = s sum_j dL_ij Kf_j for this team's query rows,
// then dQ (and, for RA, dK's Qf part and dw_std, dw_rec partials).
// ROWS_SMEM (the traits' rows_in_smem): [Q_i, K_i] stays staged in front of
// the K/V pipeline and is read from there at every k-step.
// SPLIT (the traits' split_kv): two stages of [Kf | bias] but ONE V buffer,
// refilled with V(kt+1) as soon as every warp has its dP(kt) -- while the
// softmax and dL Kf(kt) run -- which saves a V tile of shared memory: with
// ROWS_SMEM, 48-key tiles then fit 48 KiB.
template <int D, bool RA, int WARPS, int BC, int MINB, bool ROWS_SMEM, bool SPLIT = false>
struct BackwardQ {
  static constexpr int W = RA ? 2 * D : D, BR = 16 * WARPS, NT = 32 * WARPS;
  static constexpr int kMinBlocks = MINB;
  // Offsets inside a stage: Kf, then (two-stage) V, then the bias.
  static constexpr int kV = Swizzled<W>::bytes(BC), kBias = kV + (SPLIT ? 0 : Swizzled<D>::bytes(BC));
  static constexpr int kStage = kBias + 4 * BC;
  // Offset of the pipeline (and of the dO staging before it starts).
  static constexpr int kPipe = ROWS_SMEM ? Swizzled<W>::bytes(BR) : 0;
  // SPLIT: the one V buffer, after the two stages.
  static constexpr int kVBuf = kPipe + 2 * kStage;
  static constexpr std::size_t kScratch =
      kPipe + std::max<std::size_t>((ROWS_SMEM ? 0 : Swizzled<W>::bytes(BR)) + Swizzled<D>::bytes(BR),
                                    2 * std::size_t(kStage) + (SPLIT ? Swizzled<D>::bytes(BC) : 0));
  static_assert(fits_team_shared(kScratch, NT), "traits entry needs more shared memory than a Kokkos block has");
  Args a;
  int n_qtiles = 0;
  float scale = 0;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const int T = a.T, Dact = a.D;
    const int qt = n_qtiles - 1 - team.league_rank() % n_qtiles;
    const int bh = team.league_rank() / n_qtiles, b = bh / a.H, h = bh % a.H;
    const int i0 = qt * BR, row0 = i0 + warp * 16;
    const std::size_t mat = std::size_t(bh) * T * Dact;
    const auto* Q = static_cast<const bf16_t*>(a.q) + mat;
    const auto* K = static_cast<const bf16_t*>(a.k) + mat;
    const auto* V = static_cast<const bf16_t*>(a.v) + mat;
    const auto* dO = static_cast<const bf16_t*>(a.dout) + mat;
    const float* dvec = RA ? a.d + std::size_t(bh) * T : nullptr;
    const Gates g = gates_of(a, b, h);
    char* smem = aligned_scratch(team, kScratch);
    const u32 s0 = smem_u32(smem);

    const u32 pipe = s0 + kPipe, dos = ROWS_SMEM ? pipe : s0 + Swizzled<W>::bytes(BR);
    stage_rows<BR, W, D, NT>(s0, Q, K, i0, T, Dact, tid);
    stage_rows<BR, D, D, NT>(dos, dO, dO, i0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    // Own rows Qf'_i = [w_std Q_i, w_rec K_i] (gates folded, as in the forward:
    // Qf'_i . [K_j, Q_j] is the RA logit), so one accumulator holds the logits
    // and no S_ji tile needs registers. The gate gradients do not need the two
    // halves apart either: dw_std = s sum_ij dL_ij Q_i.K_j = sum_i Q_i . dQf_i[0, D)
    // and dw_rec = sum_i K_i . dQf_i[D, 2D) (dQf is s sum_j dL_ij [K_j, band Q_j]),
    // taken in the epilogue from the fp32 accumulators and the unscaled rows.
    if constexpr (RA && ROWS_SMEM) {
      scale_tile_halves<BR, W, D, NT>(smem, g.std, g.rec, tid);
      __syncthreads();
    }
    OwnRows<W, ROWS_SMEM> qa;
    u32 da[D / 16][4];
    qa.load(s0, warp * 16, lane);
    load_a<D, D / 16>(da, dos, warp * 16, lane);
    if constexpr (RA && !ROWS_SMEM) {
#pragma unroll
      for (int kk = 0; kk < W / 16; ++kk)
#pragma unroll
        for (int e = 0; e < 4; ++e) qa.f[kk][e] = scale_bf16x2(qa.f[kk][e], kk < D / 16 ? g.std : g.rec);
    }
    float lse2[2], delta[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      const int i = row0 + (lane >> 2) + 8 * r;
      lse2[r] = i < T ? a.lse_in[std::size_t(bh) * T + i] * kLog2e : 0.f;
      delta[r] = i < T ? a.delta[std::size_t(bh) * T + i] : 0.f;
    }
    __syncthreads();

    const int i_last = min(i0 + BR - 1, T - 1), kt_last = i_last / BC;
    auto stage_k = [&](int kt) {  // Kf rows and the bias
      const u32 st = pipe + (kt & 1) * kStage;
      stage_folded<BC, W, D, NT>(st, K, Q, kt * BC, T, Dact, tid,
                                 classify(RA, a.window, i0, BR, kt * BC, BC, T) != kPlain);
      if constexpr (RA) stage_vec<BC, NT>(st + kBias, dvec, kt * BC, T, tid);
    };
    auto v_tile = [&](int kt) { return SPLIT ? s0 + kVBuf : pipe + (kt & 1) * kStage + kV; };
    auto stage_v = [&](int kt) { stage_rows<BC, D, D, NT>(v_tile(kt), V, V, kt * BC, T, Dact, tid); };

    float dqf[W / 8][4];
    zero(dqf);
    const float sl = scale * kLog2e, bl = g.disc * kLog2e;
    stage_k(0);
    stage_v(0);
    cp_commit();
    for (int kt = 0; kt <= kt_last; ++kt) {
      if constexpr (SPLIT) {
        cp_wait<0>();     // Kf(kt) and V(kt) have landed
        __syncthreads();  // ... for every thread, and iteration kt-1 is done with the other stage
        if (kt < kt_last) {
          stage_k(kt + 1);
          cp_commit();
        }
      } else {
        two_stage_next(kt, kt_last, [&](int t) { stage_k(t), stage_v(t); });
      }
      const u32 kf = pipe + (kt & 1) * kStage, vs = v_tile(kt);
      const SharedFloats bias{smem_u32(smem) + kPipe + (kt & 1) * kStage + kBias};
      const int j0 = kt * BC;
      const Kind kind = classify(RA, a.window, i0, BR, j0, BC, T);
      float p[BC / 8][4], dp[BC / 8][4];
      folded_logits<D, RA, BC, W>(
          one(p),
          [&](auto k0, auto k1) { qa.template abt<decltype(k0)::value, decltype(k1)::value, BC, W>(p, kf, lane); },
          kind, lane, row0, j0, true, a.window);
      zero(dp);
      mma_abt<0, D / 16, BC, D>(one(dp), one(da), vs, lane);  // dP = dO V^T
      if constexpr (SPLIT) {
        __syncthreads();  // every warp is done with V(kt): refill its buffer under the rest
        if (kt < kt_last) {
          stage_v(kt + 1);
          cp_commit();
        }
      }
      dl_from_p<RA, BC>(p, dp, bias, lse2, delta, sl, bl, lane, row0, j0, T);
      // dQf += dL Kf: the K_j half always, the Q_j half only where a tile meets
      // the band, with dL masked to the band first on mixed tiles (in place:
      // the first half is done with the unmasked dL by then).
      mma_pb<BC, W, 0, D / 16>(one(dqf), one(p), kf, lane);
      if constexpr (RA) {
        if (kind != kPlain) {
          if (kind == kMixed) band_mask(p, lane, row0, j0, true, a.window);
          mma_pb<BC, W, D / 16, W / 16>(one(dqf), one(p), kf, lane);
        }
      }
      if constexpr (!SPLIT) __syncthreads();  // this stage is refilled two iterations on
    }
    if constexpr (SPLIT) __syncthreads();  // the gate sums below reuse shared memory

    store_dq<D, RA, WARPS>(a, dqf, scale, g, bh, qt, row0, warp, lane, tid, smem);
  }
};

// Key-owned kernel: for this team's key rows j, dV_j = sum_i P_ij dO_i and
// dKf_j = s sum_i dL_ij Qf_i, plus the column sums of dL (dd_j, dw_disc).
// ROWS_SMEM: the gated [K_j, Q_j] stays staged in front of the Q/dO pipeline.
// FUSED (Options::deterministic = false; BackwardFused below): the single-pass
// backward. Each (key tile, query tile) step also adds the query-owned side,
// dQf_i += s sum_j dL_ij Kf'_j, to the fp32 workspace dqf_accum [B,H,T,W] by
// atomics (FlashAttention-2's structure: 5 tile products for SDPA, 8 for RA,
// instead of 7 and 11 across the two deterministic kernels), and the gate
// partials dw_std, dw_rec come from dKf here (the query-owned kernel does not run).
template <int D, bool RA, int WARPS, int BR, int MINB, bool ROWS_SMEM, bool FUSED = false>
struct BackwardKV {
  static constexpr int W = RA ? 2 * D : D, BK = 16 * WARPS, NT = 32 * WARPS;
  static constexpr int kMinBlocks = MINB;
  static constexpr int kStage = Swizzled<W>::bytes(BR) + Swizzled<D>::bytes(BR) + 8 * BR;
  static constexpr int kPipe = ROWS_SMEM ? Swizzled<W>::bytes(BK) : 0;
  static constexpr std::size_t kMain =
      kPipe + std::max<std::size_t>((ROWS_SMEM ? 0 : Swizzled<W>::bytes(BK)) + Swizzled<D>::bytes(BK),
                                    2 * std::size_t(kStage));
  // FUSED: dL^T of the step (BK keys x BR queries, bf16) behind the pipeline
  // (at kMain), where every warp's dQ product reads the whole team's keys.
  static constexpr std::size_t dlt_bytes() {
    if constexpr (FUSED) return Swizzled<BR>::bytes(BK);  // (16-wide tiles have no swizzle)
    return 0;
  }
  static constexpr std::size_t kScratch = kMain + dlt_bytes();
  // The dQ product's B operand is the own rows Kf', which must be addressable.
  static_assert(!FUSED || ROWS_SMEM, "the fused backward reads its own rows from shared memory");
  static_assert(fits_team_shared(kScratch, NT), "traits entry needs more shared memory than a Kokkos block has");
  Args a;
  int n_ktiles = 0, n_qtiles = 0;  // n_qtiles counts tiles of BR queries
  float scale = 0;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const int tid = thread_id(), warp = tid >> 5, lane = tid & 31;
    const int T = a.T, Dact = a.D;
    const int kt = team.league_rank() % n_ktiles;  // low key tiles see the most queries
    const int bh = team.league_rank() / n_ktiles, b = bh / a.H, h = bh % a.H;
    const int j0 = kt * BK, key0 = j0 + warp * 16;
    const std::size_t mat = std::size_t(bh) * T * Dact;
    const auto* Q = static_cast<const bf16_t*>(a.q) + mat;
    const auto* K = static_cast<const bf16_t*>(a.k) + mat;
    const auto* V = static_cast<const bf16_t*>(a.v) + mat;
    const auto* dO = static_cast<const bf16_t*>(a.dout) + mat;
    const float* lse = a.lse_in + std::size_t(bh) * T;
    const float* dlt = a.delta + std::size_t(bh) * T;
    const Gates g = gates_of(a, b, h);
    char* smem = aligned_scratch(team, kScratch);
    const u32 s0 = smem_u32(smem);

    // Own rows: Kf' = [w_std K_j, w_rec Q_j] (gates folded: Kf'.[Q_i, K_i] = the RA logit) and V_j.
    const u32 pipe = s0 + kPipe, vst = ROWS_SMEM ? pipe : s0 + Swizzled<W>::bytes(BK);
    stage_rows<BK, W, D, NT>(s0, K, Q, j0, T, Dact, tid);
    stage_rows<BK, D, D, NT>(vst, V, V, j0, T, Dact, tid);
    cp_commit();
    cp_wait<0>();
    __syncthreads();
    OwnRows<W, ROWS_SMEM> ka;
    u32 va[D / 16][4];
    if constexpr (RA && ROWS_SMEM) {  // fold the gates into the staged copy, once
      scale_tile_halves<BK, W, D, NT>(smem, g.std, g.rec, tid);
      __syncthreads();
    }
    ka.load(s0, warp * 16, lane);
    load_a<D, D / 16>(va, vst, warp * 16, lane);
    if constexpr (RA && !ROWS_SMEM) {
#pragma unroll
      for (int kk = 0; kk < W / 16; ++kk)
#pragma unroll
        for (int e = 0; e < 4; ++e) ka.f[kk][e] = scale_bf16x2(ka.f[kk][e], kk < D / 16 ? g.std : g.rec);
    }
    float bias2[2] = {0.f, 0.f};  // w_disc d_j in log2 units, for this thread's two key rows
    if constexpr (RA) {
#pragma unroll
      for (int r = 0; r < 2; ++r) {
        const int j = key0 + (lane >> 2) + 8 * r;
        bias2[r] = j < T ? g.disc * a.d[std::size_t(bh) * T + j] * kLog2e : 0.f;
      }
    }
    __syncthreads();

    const int qt_first = j0 / BR;
    auto stage_q = [&](int qt) {
      const u32 st = pipe + (qt & 1) * kStage;
      stage_folded<BR, W, D, NT>(st, Q, K, qt * BR, T, Dact, tid,
                                 classify(RA, a.window, qt * BR, BR, j0, BK, T) != kPlain);
      stage_rows<BR, D, D, NT>(st + Swizzled<W>::bytes(BR), dO, dO, qt * BR, T, Dact, tid);
      const u32 vec = st + Swizzled<W>::bytes(BR) + Swizzled<D>::bytes(BR);
      stage_vec<BR, NT>(vec, lse, qt * BR, T, tid);
      stage_vec<BR, NT>(vec + 4 * BR, dlt, qt * BR, T, tid);
    };

    float dkf[W / 8][4], dv[D / 8][4];
    zero(dkf);
    zero(dv);
    float colsum[2] = {0.f, 0.f};
    const float sl = scale * kLog2e;
    stage_q(qt_first);
    cp_commit();
    for (int qt = qt_first; qt < n_qtiles; ++qt) {
      two_stage_next(qt, n_qtiles - 1, stage_q);
      const u32 qs = pipe + (qt & 1) * kStage, dos = qs + Swizzled<W>::bytes(BR);
      const SharedFloats vec{smem_u32(smem) + kPipe + (qt & 1) * kStage + Swizzled<W>::bytes(BR) +
                             Swizzled<D>::bytes(BR)};
      const int i0 = qt * BR;
      const Kind kind = classify(RA, a.window, i0, BR, j0, BK, T);
      // Transposed tiles: rows are this warp's keys j, columns the queries i.
      float p[BR / 8][4], dp[BR / 8][4];
      folded_logits<D, RA, BR, W>(
          one(p),
          [&](auto k0, auto k1) { ka.template abt<decltype(k0)::value, decltype(k1)::value, BR, W>(p, qs, lane); },
          kind, lane, key0, i0, false, a.window);
      zero(dp);
      mma_abt<0, D / 16, BR, D>(one(dp), one(va), dos, lane);  // dP^T = V dO^T
      key_tile_p_dl<RA>(p, dp, colsum, vec, bias2, sl, lane, key0, i0, T);  // P^T, dL^T
      // FUSED: the unmasked dL^T into the team's tile (the previous step's
      // readers are past the __syncthreads that end it and two_stage_next).
      if constexpr (FUSED) store_c_bf16<BR>(smem + kMain, dp, warp * 16, lane);
      mma_pb<BR, D, 0, D / 16>(one(dv), one(p), dos, lane);  // dV += P^T dO
      // dKf += dL^T Qf: the Q_i half always, the K_i half where the tile meets
      // the band (dL^T masked to it in place on mixed tiles, after the first half).
      mma_pb<BR, W, 0, D / 16>(one(dkf), one(dp), qs, lane);
      if constexpr (RA) {
        if (kind != kPlain) {
          if (kind == kMixed) band_mask(dp, lane, key0, i0, false, a.window);
          mma_pb<BR, W, D / 16, W / 16>(one(dkf), one(dp), qs, lane);
        }
      }
      if constexpr (FUSED) {
        __syncthreads();  // every warp's dL^T is in the tile
        dq_step(s0, s0 + u32(kMain), bh, i0, j0, kind, warp, lane);
      }
      __syncthreads();
    }

    store_dkv<D, RA, WARPS, FUSED>(a, dkf, dv, colsum, scale, g, bh, kt, key0, warp, lane, tid, smem);
  }

  // FUSED, one (key tile j0.., query tile i0..) step, after the team's dL^T is
  // in the tile dlt: dqf_accum[i, half] += s dL[i, keys] Kf'[keys, half] with
  // A = dL read from dL^T by ldmatrix.trans and B = the gated own rows (tile
  // own). This warp computes its kMtw m-tiles x kNpw n-pairs of each half and
  // adds them by fp32 atomics; the second half (RA) only where the step meets
  // the band, with dL masked to it in the A fragments on mixed steps.
  __device__ void dq_step(u32 own, u32 dlt, int bh, int i0, int j0, Kind kind, int warp, int lane) const {
    // The BR x W product split over the warps: kWn column groups of the D / 16
    // n-pairs of each half (RA: each warp the same columns of both halves, so
    // kPlain steps skip the second half evenly) times kWm row groups of the
    // BR / 16 m-tiles; a warp holds kMtw x 2 kNpw accumulator blocks.
    constexpr int kNph = D / 16, kWn = kNph < WARPS ? kNph : WARPS, kWm = WARPS / kWn;
    constexpr int kMtw = BR / 16 / kWm, kNpw = kNph / kWn;
    static_assert(kWn * kWm == WARPS && kNph % kWn == 0 && (BR / 16) % kWm == 0 && kMtw > 0,
                  "the fused backward's dQ product must split evenly over the warps");
    const int wn = warp % kWn, mt0 = (warp / kWn) * kMtw, T = a.T, Dact = a.D;
    const int wact = RA ? 2 * Dact : Dact;
    float* ws = a.dqf_accum + std::size_t(bh) * T * wact;
    auto half = [&](auto half_c, bool masked) {
      constexpr int kHalf = decltype(half_c)::value;
      float acc[kMtw][2 * kNpw][4];
#pragma unroll
      for (int mt = 0; mt < kMtw; ++mt) zero(acc[mt]);
#pragma unroll
      for (int ks = 0; ks < BK / 16; ++ks) {
        u32 af[kMtw][4];
#pragma unroll
        for (int mt = 0; mt < kMtw; ++mt) {
          // A[i][j] = dL^T[j][i]: the four 8x8 blocks (i, j) = (0,0) (8,0) (0,8) (8,8)
          // are the stored blocks (j, i) transposed, so lane l points at key row
          // (l & 7) + 8 (l >> 4) and query chunk (l >> 3) & 1 of the m-tile.
          ldsm_x4_trans(af[mt], dlt + Swizzled<BR>::offset(16 * ks + (lane & 7) + ((lane >> 4) << 3),
                                                           2 * (mt0 + mt) + ((lane >> 3) & 1)));
          if (masked) band_mask_a(af[mt], lane, i0 + 16 * (mt0 + mt), j0 + 16 * ks, a.window);
        }
#pragma unroll
        for (int np = 0; np < kNpw; ++np) {
          u32 b[4];  // the Kf' rows of k-step ks, columns of n-pair (as mma_pb's B)
          ldsm_x4_trans(b, own + Swizzled<W>::offset(16 * ks + (lane & 15),
                                                     2 * (kHalf * kNph + wn + kWn * np) + (lane >> 4)));
#pragma unroll
          for (int mt = 0; mt < kMtw; ++mt) {
            mma(acc[mt][2 * np], af[mt], b[0], b[1]);
            mma(acc[mt][2 * np + 1], af[mt], b[2], b[3]);
          }
        }
      }
#pragma unroll
      for (int mt = 0; mt < kMtw; ++mt)
#pragma unroll
        for (int nb = 0; nb < 2 * kNpw; ++nb)
#pragma unroll
          for (int e = 0; e < 4; e += 2) {  // column pairs c, c + 1 (c even, Dact % 8 == 0)
            const int i = i0 + 16 * (mt0 + mt) + frag_row(lane, e);
            const int c = 16 * (wn + kWn * (nb >> 1)) + frag_col(lane, nb & 1, e);
            if (i < T && c < Dact)
              atomic_add_pair(ws + std::size_t(i) * wact + kHalf * Dact + c, acc[mt][nb][e] * scale,
                              acc[mt][nb][e + 1] * scale);
          }
    };
    half(std::integral_constant<int, 0>{}, false);
    if constexpr (RA) {
      if (kind != kPlain) half(std::integral_constant<int, 1>{}, kind == kMixed);
    }
  }
};
template <int D, bool RA, int WARPS, int BR, int MINB>
using BackwardFused = BackwardKV<D, RA, WARPS, BR, MINB, true, true>;

// Fused backward's last step: dQ (and RA's dK) in bf16 from the fp32
// workspace, added for RA to the key-owned kernel's shares already in dq and
// dk (store_dkv). A thread per column pair.
struct FusedFinish {
  static constexpr int NT = 256, kMinBlocks = 1;
  static constexpr std::size_t kScratch = 0;
  const float* ws = nullptr;
  bf16_t *dq = nullptr, *dk = nullptr;
  long pairs = 0;  // B H T D / 2
  int D = 0;
  bool ra = false;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const long x = long(team.league_rank()) * NT + thread_id();
    if (x >= pairs) return;
    const long row = 2 * x / D;
    const int c = int(2 * x % D);
    const std::size_t at = std::size_t(2 * x);
    if (ra) {
      const float2 q = *reinterpret_cast<const float2*>(ws + row * 2 * D + c);
      const float2 k = *reinterpret_cast<const float2*>(ws + row * 2 * D + D + c);
      const float2 pq = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dq + at));
      const float2 pk = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(dk + at));
      *reinterpret_cast<__nv_bfloat162*>(dq + at) = __floats2bfloat162_rn(pq.x + q.x, pq.y + q.y);
      *reinterpret_cast<__nv_bfloat162*>(dk + at) = __floats2bfloat162_rn(pk.x + k.x, pk.y + k.y);
    } else {
      const float2 q = *reinterpret_cast<const float2*>(ws + at);
      *reinterpret_cast<__nv_bfloat162*>(dq + at) = __floats2bfloat162_rn(q.x, q.y);
    }
  }
};

// ------------------------------------------------------------------ row delta
// Delta_i = dO_i . O_i for every row of the problem (fp32), the backward's
// first step. The portable row_delta (attention_impl.hpp) reads one bf16 per
// lane and reduces each row over 32 lanes: ~32 us at B8 H12 T1024 D64 on an
// H100, 4x its bandwidth floor. Here a group of G lanes (the power of two >= D/8)
// owns a row, each lane one 16-byte chunk of dO and of O, and the group sums
// with log2(G) shuffles. Groups never straddle a warp (G <= 16), and the
// launch is whole warps, so every shuffle has all its lanes.
struct RowDelta {
  static constexpr int NT = 256, kMinBlocks = 1;
  static constexpr std::size_t kScratch = 0;
  const bf16_t *dout = nullptr, *o = nullptr;
  float* delta = nullptr;
  int rows = 0, D = 0, group = 1;

  KOKKOS_INLINE_FUNCTION void operator()(const Member& team) const {
    KOKKOS_IF_ON_DEVICE((body(team);))
  }

  __device__ void body(const Member& team) const {
    const int x = team.league_rank() * NT + thread_id();
    const int row = x / group, chunk = x % group;
    float sum = 0.f;
    if (row < rows && chunk < D / 8) {
      const std::size_t at = std::size_t(row) * D + 8 * chunk;
      const uint4 g = *reinterpret_cast<const uint4*>(dout + at);
      const uint4 y = *reinterpret_cast<const uint4*>(o + at);
      const u32 gw[4] = {g.x, g.y, g.z, g.w}, yw[4] = {y.x, y.y, y.z, y.w};
#pragma unroll
      for (int w = 0; w < 4; ++w) {
        const float2 gf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&gw[w]));
        const float2 yf = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&yw[w]));
        sum += gf.x * yf.x + gf.y * yf.y;
      }
    }
    for (int m = group / 2; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    if (row < rows && chunk == 0) delta[row] = sum;
  }
};

// ------------------------------------------------------------------ dispatch
int pad_dim(int D) { return D <= 32 ? 32 : D <= 64 ? 64 : 128; }

// Calls f(integral_constant<D_pad>, bool_constant<RA>) for the problem's padded head dim.
template <class F>
void with_dims(int D, bool ra, F&& f) {
  const int dp = pad_dim(D);
  if (ra) {
    if (dp == 32) return f(std::integral_constant<int, 32>{}, std::true_type{});
    if (dp == 64) return f(std::integral_constant<int, 64>{}, std::true_type{});
    return f(std::integral_constant<int, 128>{}, std::true_type{});
  }
  if (dp == 32) return f(std::integral_constant<int, 32>{}, std::false_type{});
  if (dp == 64) return f(std::integral_constant<int, 64>{}, std::false_type{});
  return f(std::integral_constant<int, 128>{}, std::false_type{});
}

// The forward configuration to run: the table's (CAND < 0) or candidate CAND.
template <int DP, bool RA, int CAND>
struct ForwardTraits {
  static constexpr TensorCoreTraits value =
      CAND < 0 ? tensor_core_traits(DP, RA, TcPass::forward) : forward_candidate(RA, CAND);
};
// Candidates are compiled for padded head dim 64 only.
template <int DP>
using CandidateIndices = std::make_index_sequence<DP == 64 ? kForwardCandidates : 0>;

TilePlan make_plan(int warps, int rows, int cols, std::size_t scratch) {
  TilePlan p;
  p.path = "tensor-core bf16";
  p.br = rows, p.bc = cols, p.team_size = 32 * warps, p.vector_length = 1;
  p.scratch_level = 0, p.scratch_bytes = scratch + 128;
  return p;
}

// Why a big_smem wgmma kernel of `scratch` bytes of team scratch cannot have
// its shared memory here ("" if it can): the Kokkos found lacks the patch.
std::string big_smem_refusal(std::size_t scratch) {
  const std::size_t need = team_shared_bytes(scratch, 128), limit = team_shared_limit();
  if (need <= limit) return "";
  return "needs " + std::to_string(need) + " bytes of shared memory per team, this Kokkos gives " +
         std::to_string(limit) + " (cmake/kokkos-4.6.01-shmem-optin.patch)";
}

}  // namespace

std::string unsupported(bool ra, int D, bool backward, int candidate) {
  if (D % 8 != 0)
    return "head dim D = " + std::to_string(D) + " is not a multiple of 8 (16-byte rows)";
  if (D > 128) return "head dim D = " + std::to_string(D) + " > 128";
  const int n_candidates = backward ? kBackwardCandidates : kForwardCandidates;
  if (candidate >= 0 && (pad_dim(D) != 64 || candidate >= n_candidates))
    return std::string(backward ? "backward" : "forward") + " candidate " +
           std::to_string(candidate) + " does not exist (there are " +
           std::to_string(n_candidates) + ", for head dims 33..64)";
  const TcPass pass = backward ? TcPass::backward_q : TcPass::forward;
  if (tensor_core_traits(pad_dim(D), ra, pass).warps == 0 ||
      (backward && tensor_core_traits(pad_dim(D), ra, TcPass::backward_kv).warps == 0))
    return std::string(ra ? "RA" : "SDPA") + " " + (backward ? "backward" : "forward") +
           " at padded head dim " + std::to_string(pad_dim(D)) +
           " has no tensor-core kernel (register budget)";
  return "";
}

template <int DP, bool RA, int CAND>
TilePlan forward_plan_of(int candidate) {
  constexpr TensorCoreTraits tr = ForwardTraits<DP, RA, CAND>::value;
  TilePlan plan;
  if constexpr (tr.wgmma) {
    if (!wgmma_available()) {
      plan = forward_plan_of<DP, RA, mma_forward_fallback(RA)>(mma_forward_fallback(RA));
      plan.path += " (wgmma entry: no sm_90a kernel for this build or GPU)";
      return plan;
    }
    if constexpr (tr.big_smem) {
      const std::string why = big_smem_refusal(wgmma_forward_scratch(RA, DP, tr));
      if (!why.empty()) {
        plan = forward_plan_of<DP, RA, wgmma_forward_fallback(RA)>(wgmma_forward_fallback(RA));
        plan.path += " (big_smem entry " + why + ")";
        return plan;
      }
    }
    plan = make_plan(tr.warps, 64, tr.tile, wgmma_forward_scratch(RA, DP, tr));
    plan.path += std::string(" wgmma") + (candidate >= 0 ? " #" + std::to_string(candidate) : std::string()) +
                 (tr.window ? " window" : tr.overlap ? " overlap" : tr.split_kv ? " split-kv" : " 2-stage") +
                 (tr.min_blocks > 1 ? " mb" + std::to_string(tr.min_blocks) : "") + (tr.big_smem ? " big-smem" : "");
  } else if constexpr (tr.warps > 0) {
    using F = Forward<DP, RA, tr.warps, tr.tile, tr.m_tiles, tr.split_kv, tr.min_blocks, tr.rows_in_smem>;
    plan = make_plan(tr.warps, F::BR, tr.tile, F::kScratch);
    plan.path += (candidate >= 0 ? " #" + std::to_string(candidate) : std::string()) + " m" +
                 std::to_string(tr.m_tiles) + (tr.split_kv ? " split-kv" : " 2-stage") +
                 (tr.min_blocks > 1 ? " mb" + std::to_string(tr.min_blocks) : "") +
                 (tr.rows_in_smem ? " rows-smem" : "");
  }
  return plan;
}
template <int DP, bool RA, std::size_t... I>
TilePlan forward_plan_dispatch(int candidate, std::index_sequence<I...>) {
  TilePlan plan = forward_plan_of<DP, RA, -1>(candidate);
  ((candidate == int(I) ? (plan = forward_plan_of<DP, RA, int(I)>(candidate), 0) : 0), ...);
  return plan;
}

int tuned_candidate(bool ra, int D, bool backward) {
  if (pad_dim(D) != 64) return -1;  // candidates are compiled at padded head dim 64 only
  const TunedTraits& traits = TunedTraits::from_environment();
  if (traits.empty()) return -1;
  int device = 0, major = 0, minor = 0;
  if (cudaGetDevice(&device) != cudaSuccess ||
      cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device) != cudaSuccess ||
      cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, device) != cudaSuccess)
    return -1;
  return traits.candidate("sm_" + std::to_string(10 * major + minor), ra, backward);
}

int window_forward_candidate(Variant v, int D) {
  return v == Variant::ra_window ? window_forward_entry(pad_dim(D)) : -1;
}
int window_backward_candidate(Variant v, int D) {
  return v == Variant::ra_window ? window_backward_entry(pad_dim(D)) : -1;
}

TilePlan forward_plan(bool ra, int D, int candidate) {
  TilePlan plan;
  with_dims(D, ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool is_ra = decltype(ra_c)::value;
    plan = forward_plan_dispatch<dp, is_ra>(candidate, CandidateIndices<dp>{});
  });
  return plan;
}

// The backward configuration to run: the table's (CAND < 0) or candidate CAND.
template <int DP, bool RA, int CAND>
struct BackwardConfig {
  static constexpr TensorCoreTraits q =
      CAND < 0 ? tensor_core_traits(DP, RA, TcPass::backward_q) : backward_candidate(RA, CAND).q;
  static constexpr TensorCoreTraits kv =
      CAND < 0 ? tensor_core_traits(DP, RA, TcPass::backward_kv) : backward_candidate(RA, CAND).kv;
  static constexpr bool exists = q.warps > 0 && kv.warps > 0;
};
template <int DP>
using BackwardIndices = std::make_index_sequence<DP == 64 ? kBackwardCandidates : 0>;

// Calls f(BackwardConfig<DP, RA, CAND>{}) for the requested candidate (-1: table).
template <int DP, bool RA, class F, std::size_t... I>
void with_backward_config(int candidate, F&& f, std::index_sequence<I...>) {
  if (candidate < 0) return f(BackwardConfig<DP, RA, -1>{});
  ((candidate == int(I) ? (f(BackwardConfig<DP, RA, int(I)>{}), 0) : 0), ...);
}

template <class Cfg, int DP, bool RA>
struct BackwardKernels {
  using Q = BackwardQ<DP, RA, Cfg::q.warps, Cfg::q.tile, Cfg::q.min_blocks, Cfg::q.rows_in_smem,
                      Cfg::q.split_kv>;
  using KV = BackwardKV<DP, RA, Cfg::kv.warps, Cfg::kv.tile, Cfg::kv.min_blocks, Cfg::kv.rows_in_smem>;
};

// big_smem_refusal for a backward configuration: its larger kernel decides.
template <class Cfg, int DP, bool RA>
std::string backward_big_smem_refusal() {
  return big_smem_refusal(std::max(wgmma_backward_q_scratch(RA, DP, Cfg::q),
                                   wgmma_backward_kv_scratch(RA, DP, Cfg::kv)));
}

template <class Cfg, int DP, bool RA>
TilePlan backward_plan_of(int candidate) {
  TilePlan plan;
  if constexpr (Cfg::q.wgmma || Cfg::kv.wgmma) {
    if (!wgmma_available()) {
      plan = backward_plan_of<BackwardConfig<DP, RA, mma_backward_fallback(RA)>, DP, RA>(mma_backward_fallback(RA));
      plan.path += " (wgmma entry: no sm_90a kernel for this build or GPU)";
      return plan;
    }
    if constexpr (Cfg::q.big_smem || Cfg::kv.big_smem) {
      const std::string why = backward_big_smem_refusal<Cfg, DP, RA>();
      if (!why.empty()) {
        plan = backward_plan_of<BackwardConfig<DP, RA, wgmma_backward_fallback(RA)>, DP, RA>(
            wgmma_backward_fallback(RA));
        plan.path += " (big_smem entry " + why + ")";
        return plan;
      }
    }
  }
  if constexpr (Cfg::exists) {
    using K = BackwardKernels<Cfg, DP, RA>;
    // Reported as the query-owned kernel's tile; the scratch is the larger of the two.
    std::size_t q_scratch = 0, kv_scratch = 0;
    if constexpr (Cfg::q.wgmma) q_scratch = wgmma_backward_q_scratch(RA, DP, Cfg::q);
    else q_scratch = K::Q::kScratch;
    if constexpr (Cfg::kv.wgmma) kv_scratch = wgmma_backward_kv_scratch(RA, DP, Cfg::kv);
    else kv_scratch = K::KV::kScratch;
    plan = make_plan(Cfg::q.warps, 16 * Cfg::q.warps, Cfg::q.tile, std::max(q_scratch, kv_scratch));
    if (candidate >= 0) plan.path += " #" + std::to_string(candidate);
    if (Cfg::q.wgmma) plan.path += " q-wgmma";
    plan.path += std::string(" kv") + (Cfg::kv.wgmma ? "-wgmma " : " ") + std::to_string(16 * Cfg::kv.warps) + "x" +
                 std::to_string(Cfg::kv.tile);
    if (Cfg::q.min_blocks > 1 || Cfg::kv.min_blocks > 1)
      plan.path += " mb" + std::to_string(Cfg::q.min_blocks) + "/" + std::to_string(Cfg::kv.min_blocks);
    if (Cfg::q.rows_in_smem || Cfg::kv.rows_in_smem)
      plan.path += std::string(" rows-smem ") + (Cfg::q.rows_in_smem ? "q" : "") + (Cfg::kv.rows_in_smem ? "kv" : "");
    if (Cfg::q.split_kv && !Cfg::q.wgmma) plan.path += " q-split-v";
    if (Cfg::q.big_smem || Cfg::kv.big_smem)
      plan.path += std::string(" big-smem ") + (Cfg::q.big_smem ? "q" : "") + (Cfg::kv.big_smem ? "kv" : "");
    if (Cfg::q.window || Cfg::kv.window) plan.path += " window";
  }
  return plan;
}

TilePlan backward_plan(bool ra, int D, int candidate) {
  TilePlan plan;
  with_dims(D, ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool is_ra = decltype(ra_c)::value;
    with_backward_config<dp, is_ra>(candidate, [&](auto cfg) {
      plan = backward_plan_of<decltype(cfg), dp, is_ra>(candidate);
    }, BackwardIndices<dp>{});
  });
  return plan;
}

int backward_partials(bool ra, int D, int T, int candidate) {
  int n = 1;
  with_dims(D, ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool is_ra = decltype(ra_c)::value;
    with_backward_config<dp, is_ra>(candidate, [&](auto cfg) {
      using Cfg = decltype(cfg);
      if constexpr (Cfg::exists) {
        const int nq = (T + 16 * Cfg::q.warps - 1) / (16 * Cfg::q.warps);
        const int nk = (T + 16 * Cfg::kv.warps - 1) / (16 * Cfg::kv.warps);
        n = std::max(nq, nk);
      }
    }, BackwardIndices<dp>{});
  });
  return n;
}

template <int DP, bool RA, int CAND>
void forward_launch(const Kokkos::Cuda& exec, const Args& a) {
  constexpr TensorCoreTraits tr = ForwardTraits<DP, RA, CAND>::value;
  if constexpr (tr.wgmma) {
    if (!wgmma_available()) return forward_launch<DP, RA, mma_forward_fallback(RA)>(exec, a);
    if constexpr (tr.big_smem) {
      if (!big_smem_refusal(wgmma_forward_scratch(RA, DP, tr)).empty())
        return forward_launch<DP, RA, wgmma_forward_fallback(RA)>(exec, a);
    }
    return wgmma_forward(exec, a, tr);
  } else if constexpr (tr.warps > 0) {
    using F = Forward<DP, RA, tr.warps, tr.tile, tr.m_tiles, tr.split_kv, tr.min_blocks, tr.rows_in_smem>;
    F f;
    f.a = a;
    f.n_qtiles = (a.T + F::BR - 1) / F::BR;
    f.scale = 1.f / std::sqrt(float(a.D));
    Kokkos::parallel_for("ra::tc::forward", team_policy<F>(exec, a.B * a.H * f.n_qtiles), f);
  } else {
    throw std::logic_error("ra::kk::tc::forward called for an unsupported problem");
  }
}
template <int DP, bool RA, std::size_t... I>
void forward_dispatch(const Kokkos::Cuda& exec, const Args& a, std::index_sequence<I...>) {
  if (a.candidate < 0) return forward_launch<DP, RA, -1>(exec, a);
  ((a.candidate == int(I) ? (forward_launch<DP, RA, int(I)>(exec, a), 0) : 0), ...);
}

void forward(const Kokkos::Cuda& exec, const Args& a) {
  with_dims(a.D, a.ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool is_ra = decltype(ra_c)::value;
    forward_dispatch<dp, is_ra>(exec, a, CandidateIndices<dp>{});
  });
}

template <class Cfg, int DP, bool RA>
void backward_launch(const Kokkos::Cuda& exec, const Args& a) {
  if constexpr (Cfg::q.wgmma || Cfg::kv.wgmma) {
    if (!wgmma_available())
      return backward_launch<BackwardConfig<DP, RA, mma_backward_fallback(RA)>, DP, RA>(exec, a);
    if constexpr (Cfg::q.big_smem || Cfg::kv.big_smem) {
      if (!backward_big_smem_refusal<Cfg, DP, RA>().empty())
        return backward_launch<BackwardConfig<DP, RA, wgmma_backward_fallback(RA)>, DP, RA>(exec, a);
    }
  }
  if constexpr (Cfg::exists) {
    using K = BackwardKernels<Cfg, DP, RA>;
    const float scale = 1.f / std::sqrt(float(a.D));
    if constexpr (Cfg::kv.wgmma) {
      wgmma_backward_kv(exec, a, Cfg::kv);
    } else {
      typename K::KV fkv;
      fkv.a = a;
      fkv.n_ktiles = (a.T + K::KV::BK - 1) / K::KV::BK;
      fkv.n_qtiles = (a.T + Cfg::kv.tile - 1) / Cfg::kv.tile;
      fkv.scale = scale;
      Kokkos::parallel_for("ra::tc::backward_kv", team_policy<typename K::KV>(exec, a.B * a.H * fkv.n_ktiles), fkv);
    }
    if constexpr (Cfg::q.wgmma) {
      wgmma_backward_q(exec, a, Cfg::q);
    } else {
      typename K::Q fq;
      fq.a = a;
      fq.n_qtiles = (a.T + K::Q::BR - 1) / K::Q::BR;
      fq.scale = scale;
      Kokkos::parallel_for("ra::tc::backward_q", team_policy<typename K::Q>(exec, a.B * a.H * fq.n_qtiles), fq);
    }
  } else {
    throw std::logic_error("ra::kk::tc::backward called for an unsupported problem");
  }
}

void row_delta(const Kokkos::Cuda& exec, const void* dout, const void* o, float* delta, int rows, int D) {
  if (D % 8 != 0) throw std::logic_error("ra::kk::tc::row_delta needs D % 8 == 0");
  RowDelta f;
  f.dout = static_cast<const bf16_t*>(dout), f.o = static_cast<const bf16_t*>(o), f.delta = delta;
  f.rows = rows, f.D = D;
  while (f.group < D / 8) f.group *= 2;
  const long threads = long(rows) * f.group;
  Kokkos::parallel_for("ra::tc::row_delta", team_policy<RowDelta>(exec, int((threads + RowDelta::NT - 1) / RowDelta::NT)), f);
}

// ------------------------------------------------------------------ fused backward
template <int DP, bool RA>
struct FusedConfig {
  static constexpr TensorCoreTraits tr = fused_backward_traits(DP, RA);
  static constexpr bool exists = tr.warps > 0;
};

std::string fused_unsupported(bool ra, int D) {
  std::string why = unsupported(ra, D, true);
  if (!why.empty()) return why;
  with_dims(D, ra, [&](auto dp_c, auto ra_c) {
    if constexpr (!FusedConfig<decltype(dp_c)::value, decltype(ra_c)::value>::exists)
      why = "no fused-atomic kernel at padded head dim " + std::to_string(decltype(dp_c)::value) +
            " (its dL^T tile and rows in shared memory exceed 48 KiB)";
  });
  return why;
}

template <int DP, bool RA>
using FusedKernel = BackwardFused<DP, RA, FusedConfig<DP, RA>::tr.warps, FusedConfig<DP, RA>::tr.tile,
                                  FusedConfig<DP, RA>::tr.min_blocks>;

TilePlan fused_backward_plan(bool ra, int D) {
  TilePlan plan;
  with_dims(D, ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool is_ra = decltype(ra_c)::value;
    using Cfg = FusedConfig<dp, is_ra>;
    if constexpr (Cfg::exists) {
      using K = FusedKernel<dp, is_ra>;
      plan = make_plan(Cfg::tr.warps, K::BK, Cfg::tr.tile, K::kScratch);
      plan.path += " fused-atomic kv " + std::to_string(K::BK) + "x" + std::to_string(Cfg::tr.tile) +
                   (Cfg::tr.min_blocks > 1 ? " mb" + std::to_string(Cfg::tr.min_blocks) : "") + " rows-smem";
    }
  });
  return plan;
}

int fused_backward_partials(bool ra, int D, int T) {
  int n = 1;
  with_dims(D, ra, [&](auto dp_c, auto ra_c) {
    if constexpr (FusedConfig<decltype(dp_c)::value, decltype(ra_c)::value>::exists)
      n = (T + FusedKernel<decltype(dp_c)::value, decltype(ra_c)::value>::BK - 1) /
          FusedKernel<decltype(dp_c)::value, decltype(ra_c)::value>::BK;
  });
  return n;
}

void fused_backward(const Kokkos::Cuda& exec, const Args& a) {
  with_dims(a.D, a.ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool is_ra = decltype(ra_c)::value;
    if constexpr (FusedConfig<dp, is_ra>::exists) {
      using K = FusedKernel<dp, is_ra>;
      const int nk = (a.T + K::BK - 1) / K::BK;
      if (a.dqf_accum == nullptr || a.n_partials < nk)
        throw std::logic_error("ra::kk::tc::fused_backward: no workspace or too few gate-partial slots");
      K f;
      f.a = a;
      f.n_ktiles = nk;
      f.n_qtiles = (a.T + FusedConfig<dp, is_ra>::tr.tile - 1) / FusedConfig<dp, is_ra>::tr.tile;
      f.scale = 1.f / std::sqrt(float(a.D));
      Kokkos::parallel_for("ra::tc::backward_fused", team_policy<K>(exec, a.B * a.H * nk), f);
      FusedFinish fin;
      fin.ws = a.dqf_accum;
      fin.dq = static_cast<bf16_t*>(a.dq), fin.dk = static_cast<bf16_t*>(a.dk);
      fin.pairs = long(a.B) * a.H * a.T * a.D / 2;
      fin.D = a.D, fin.ra = is_ra;
      Kokkos::parallel_for("ra::tc::backward_fused_finish",
                           team_policy<FusedFinish>(exec, int((fin.pairs + FusedFinish::NT - 1) / FusedFinish::NT)), fin);
    } else {
      throw std::logic_error("ra::kk::tc::fused_backward called for an unsupported problem");
    }
  });
}

void backward(const Kokkos::Cuda& exec, const Args& a) {
  with_dims(a.D, a.ra, [&](auto dp_c, auto ra_c) {
    constexpr int dp = decltype(dp_c)::value;
    constexpr bool is_ra = decltype(ra_c)::value;
    with_backward_config<dp, is_ra>(a.bwd_candidate, [&](auto cfg) {
      backward_launch<decltype(cfg), dp, is_ra>(exec, a);
    }, BackwardIndices<dp>{});
  });
}

}  // namespace ra::kk::detail::tc
