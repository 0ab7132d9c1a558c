// TF32 tensor-core forward for float storage on CUDA (sm_80 / sm_86 / sm_90):
// fp32 tensors in memory and in shared memory, every tile product a warp-level
// mma.sync.m16n8k8 whose operands are rounded to TF32 (cvt.rna: 10-bit
// mantissa, the same rounding as PyTorch's allow_tf32), fp32 accumulation,
// softmax and outputs. Opt-in (Options::tf32): exact fp32 stays the default.
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

#include <algorithm>
#include <cmath>
#include <stdexcept>

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
  __device__ static u32 offset(int row, int chunk) {
    return u32(row * COLS * 4 + ((chunk ^ (row & 7)) << 4));
  }
};

// Rows row0.. of [a | b] (a: columns [0, D), b: [D, 2D) when COLS = 2D) into a
// swizzled tile, zero past T and past the real head dim Dact (a multiple of 4).
template <int ROWS, int COLS, int D, int NT>
__device__ __forceinline__ void stage_rows(u32 tile, const float* a, const float* b, int row0,
                                           int T, int Dact, int tid) {
  constexpr int kCh = COLS / 4, kChD = D / 4;
  for (int idx = tid; idx < ROWS * kCh; idx += NT) {
    const int r = idx / kCh, c = idx % kCh, cc = c % kChD, row = row0 + r;
    const bool valid = row < T && cc * 4 < Dact;
    const float* src = (c < kChD ? a : b) + (valid ? std::size_t(row) * Dact + cc * 4 : 0);
    cp_async16(tile + SwizzledF<COLS>::offset(r, c), src, valid);
  }
}
// V rows row0.. into a plain tile with rows of D + 4 floats (see the header).
template <int ROWS, int D, int NT>
__device__ __forceinline__ void stage_v(u32 tile, const float* v, int row0, int T, int Dact,
                                        int tid) {
  constexpr int kCh = D / 4;
  for (int idx = tid; idx < ROWS * kCh; idx += NT) {
    const int r = idx / kCh, c = idx % kCh, row = row0 + r;
    const bool valid = row < T && c * 4 < Dact;
    cp_async16(tile + u32(r * (D + 4) * 4 + c * 16), v + (valid ? std::size_t(row) * Dact + c * 4 : 0),
               valid);
  }
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
  static_assert(kScratch + 128 <= 47 * 1024, "Kokkos gives a team 48 KiB of shared memory");
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
    const float* bias = reinterpret_cast<const float*>(smem + kKf + kV);
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
    Kokkos::TeamPolicy<Kokkos::Cuda, Kokkos::LaunchBounds<F::NT, F::kMinBlocks>> policy(
        exec, a.B * a.H * f.n_qtiles, F::NT, 1);
    Kokkos::parallel_for("ra::tf32::forward",
                         policy.set_scratch_size(0, Kokkos::PerTeam(F::kScratch + 128)), f);
  });
}

}  // namespace ra::kk::detail::tf32
