// Warp-level CUDA building blocks shared by the CUDA-only attention kernels
// (tensor_core_cuda.cpp: bf16 mma.sync; tf32_cuda.cpp: tf32 mma.sync):
// shared-memory addresses, ldmatrix, cp.async, quad/warp reductions, the
// mma C-fragment layout, and the reciprocity-band tile classification.
// Private to backends/kokkos (device code; include only from .cpp files that
// nvcc compiles for CUDA).
#pragma once

#include <Kokkos_Core.hpp>

#include <cstddef>
#include <cmath>
#include <cstdint>

namespace ra::kk::detail::cuda {

using u32 = std::uint32_t;
using Member = Kokkos::TeamPolicy<Kokkos::Cuda>::member_type;
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ u32 smem_u32(const void* p) {
  return static_cast<u32>(__cvta_generic_to_shared(p));
}
// A float vector staged in team scratch, addressed in the shared window: its
// loads are LDS. (Read through a generic pointer into Kokkos' team scratch the
// compiler cannot tell the address space and emits generic LDs, which wait on
// the long scoreboard: the softmax's bias reads were among the forward's top
// stalls on the H100, docs/perf.md v22.) volatile keeps the loads after the
// barrier that publishes the vector.
struct SharedFloats {
  u32 addr = 0;
  __device__ float operator[](int i) const {
    float v;
    asm volatile("ld.shared.f32 %0, [%1];\n" : "=f"(v) : "r"(addr + 4 * i));
    return v;
  }
  // elements i, i + 1 (i even: 8-byte aligned)
  __device__ float2 pair(int i) const {
    float2 v;
    asm volatile("ld.shared.v2.f32 {%0, %1}, [%2];\n" : "=f"(v.x), "=f"(v.y) : "r"(addr + 4 * i));
    return v;
  }
};
__device__ __forceinline__ void ldsm_x4(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldsm_x4_trans(u32 (&r)[4], u32 addr) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
// 16-byte (resp. 4-byte) asynchronous global -> shared copy; zero-fills when !valid
// (src must still be a mapped address: callers pass the matrix base then).
__device__ __forceinline__ void cp_async16(u32 dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 16 : 0));
}
// The same copy where the whole chunk is known to be valid: no source-size
// operand (and no register holding it).
__device__ __forceinline__ void cp_async16_full(u32 dst, const void* src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(dst), "l"(src));
}
__device__ __forceinline__ void cp_async4(u32 dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}
__device__ __forceinline__ float quad_sum(float x) {
  x += __shfl_xor_sync(0xffffffffu, x, 1);
  return x + __shfl_xor_sync(0xffffffffu, x, 2);
}
__device__ __forceinline__ float quad_max(float x) {
  x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 1));
  return fmaxf(x, __shfl_xor_sync(0xffffffffu, x, 2));
}
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}

// n floats [row0, row0 + n) of a [T] vector, zero past T.
template <int N, int NT>
__device__ __forceinline__ void stage_vec(u32 dst, const float* src, int row0, int T, int tid) {
  auto one = [&](int r) {
    const bool valid = row0 + r < T;
    cp_async4(dst + 4 * r, src + (valid ? row0 + r : 0), valid);
  };
  if constexpr (N % NT == 0) {  // a fixed count per thread: no loop test, no divergence
#pragma unroll
    for (int k = 0; k < N / NT; ++k) one(tid + k * NT);
  } else {
    for (int r = tid; r < N; r += NT) one(r);
  }
}

// 2^x by the MUFU instruction alone (ex2.approx.ftz: 2 ulp, subnormal results
// flushed to 0, 2^-inf = 0). exp2f() wraps it in a range test and two
// multiplies that keep subnormal results: 3 of the ~10 instructions each
// probability costs in the softmax, for values that are 0 next to the row
// maximum's 1 anyway.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <int N>
__device__ __forceinline__ void zero(float (&x)[N][4]) {
#pragma unroll
  for (int i = 0; i < N; ++i) x[i][0] = x[i][1] = x[i][2] = x[i][3] = 0.f;
}

// Row r (0..15) and column c (0..8N-1) of element e of C-fragment n.
__device__ __forceinline__ int frag_row(int lane, int e) { return (lane >> 2) + ((e >> 1) << 3); }
__device__ __forceinline__ int frag_col(int lane, int n, int e) {
  return n * 8 + ((lane & 3) << 1) + (e & 1);
}

enum Kind { kPlain, kMixed, kFull };
// How a (query rows i0.., key rows j0..) tile meets the reciprocity band
// i - j <= window (window < 0: everywhere). Team-uniform.
__device__ __forceinline__ Kind classify(bool ra, int window, int i0, int nq, int j0, int nk,
                                         int T) {
  if (!ra) return kPlain;
  if (window < 0) return kFull;
  const int i_last = min(i0 + nq - 1, T - 1);
  if (i_last - j0 <= window) return kFull;
  if (i0 - (j0 + nk - 1) > window) return kPlain;
  return kMixed;
}

__device__ __forceinline__ char* aligned_scratch(const Member& team, std::size_t bytes) {
  auto p = reinterpret_cast<std::uintptr_t>(team.team_scratch(0).get_shmem(bytes + 128));
  return reinterpret_cast<char*>((p + 127) & ~std::uintptr_t(127));
}
__device__ __forceinline__ int thread_id() { return threadIdx.x + threadIdx.y * blockDim.x; }

// Zeroes the elements of a 16-row tile (C-fragments) outside the reciprocity
// band i - j <= window; rows are queries i (else keys j).
template <int NB>
__device__ __forceinline__ void band_mask(float (&x)[NB][4], int lane, int row_base, int col_base,
                                          bool rows_are_queries, int window) {
#pragma unroll
  for (int n = 0; n < NB; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      const int r = row_base + frag_row(lane, e), c = col_base + frag_col(lane, n, e);
      const int gap = rows_are_queries ? r - c : c - r;  // i - j
      if (gap > window) x[n][e] = 0.f;
    }
}


// One online-softmax step (FlashAttention-2, log2 domain) of a warp's 16-row
// m-tile against a key tile: s holds the raw logits (C fragments, NB blocks of
// 8 keys) of query rows row0.. and keys j0..; each is masked to j <= i, j < T,
// scaled by sl (> 0) and (BIAS) given the key's bias[c] * bl. On return s holds
// the probabilities exp2(x - m), m and l (this lane's two rows, running max and
// sum) are updated and the NO accumulator blocks o rescaled to the new max.
// (BIAS) bias is 8-byte aligned in shared memory.
// online_softmax_probs is the same step without the rescale of o: it hands
// back alpha (per row, the factor o is to be multiplied by), for kernels whose
// o is still being accumulated by the tensor cores at that point.
template <bool BIAS, int NB>
__device__ __forceinline__ void online_softmax_probs(float (&s)[NB][4], float (&m)[2], float (&l)[2],
                                                     float (&alpha)[2], int lane, int row0, int j0, int T,
                                                     float sl, SharedFloats bias, float bl) {
  float mx[2] = {-INFINITY, -INFINITY};
  // Tiles wholly below the diagonal and inside T (all but ~1 in T / 64 at long
  // T) skip the per-element causal test: its index arithmetic and compares
  // cost about as many instructions as the softmax itself. Warp-uniform. There
  // s stays unscaled: the row maximum is taken of the raw logits (sl > 0 keeps
  // their order) and each probability is one FFMA and one MUFU, 2^(s sl - m).
  // (BIAS) the bias joins s in raw-logit units first, one FFMA per logit with
  // bl / sl: scaling it to log2 units per key instead cost two FMULs per 8-key
  // block and a separate subtract of m per logit (docs/perf.md v23).
  const bool interior = j0 + 8 * NB - 1 <= row0 && j0 + 8 * NB <= T;
  if (interior) {
    if constexpr (BIAS) {
      const float b_raw = __fdividef(bl, sl);
#pragma unroll
      for (int n = 0; n < NB; ++n) {
        // this lane's two keys of block n are adjacent: one 8-byte load
        const float2 v = bias.pair(frag_col(lane, n, 0));
#pragma unroll
        for (int e = 0; e < 4; ++e) s[n][e] = fmaf(e & 1 ? v.y : v.x, b_raw, s[n][e]);
      }
    }
#pragma unroll
    for (int n = 0; n < NB; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) mx[e >> 1] = fmaxf(mx[e >> 1], s[n][e]);
    mx[0] *= sl, mx[1] *= sl;
  } else {
#pragma unroll
    for (int n = 0; n < NB; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int i = row0 + frag_row(lane, e), c = frag_col(lane, n, e), j = j0 + c;
        float x = -INFINITY;
        if (j <= i && j < T) x = s[n][e] * sl + (BIAS ? bias[c] * bl : 0.f);
        s[n][e] = x;
        mx[e >> 1] = fmaxf(mx[e >> 1], x);
      }
  }
  float m_use[2], sum[2] = {0.f, 0.f};
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const float m_new = fmaxf(m[r], quad_max(mx[r]));
    m_use[r] = m_new == -INFINITY ? 0.f : m_new;  // a row with nothing visible yet
    alpha[r] = fast_exp2(m[r] - m_use[r]);
    m[r] = m_new;
  }
  if (interior) {
#pragma unroll
    for (int n = 0; n < NB; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = fast_exp2(fmaf(s[n][e], sl, -m_use[e >> 1]));
        s[n][e] = p;
        sum[e >> 1] += p;
      }
  } else {
#pragma unroll
    for (int n = 0; n < NB; ++n)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const float p = fast_exp2(s[n][e] - m_use[e >> 1]);
        s[n][e] = p;
        sum[e >> 1] += p;
      }
  }
#pragma unroll
  for (int r = 0; r < 2; ++r) l[r] = l[r] * alpha[r] + sum[r];
}
template <int NO>
__device__ __forceinline__ void rescale_rows(float (&o)[NO][4], const float (&alpha)[2]) {
#pragma unroll
  for (int n = 0; n < NO; ++n)
#pragma unroll
    for (int e = 0; e < 4; ++e) o[n][e] *= alpha[e >> 1];
}
template <bool BIAS, int NB, int NO>
__device__ __forceinline__ void online_softmax_step(float (&s)[NB][4], float (&m)[2],
                                                    float (&l)[2], float (&o)[NO][4], int lane,
                                                    int row0, int j0, int T, float sl,
                                                    SharedFloats bias, float bl) {
  float alpha[2];
  online_softmax_probs<BIAS>(s, m, l, alpha, lane, row0, j0, T, sl, bias, bl);
  rescale_rows(o, alpha);
}

// The key-owned backward kernels' per-element step (bf16 and TF32 alike): a
// warp's 16 key rows key0.. against the NB * 8 queries i0.. of a staged tile,
// s holding the logits (C fragments) and dp the products V_j . dO_i. Turns s
// into P^T (exp2 of the logits, scaled by sl, plus the key's bias2 in log2
// units, minus the query's lse from vec[c]) and dp into dL^T = P^T (dP^T -
// Delta) (Delta from vec[NB * 8 + c]), and (COLSUM) adds dL^T's row sums into
// colsum. Tiles wholly below the diagonal and inside T skip the per-element
// visibility test: its index arithmetic costs about as much as the rest.
template <bool COLSUM, int NB>
__device__ __forceinline__ void key_tile_p_dl(float (&s)[NB][4], float (&dp)[NB][4], float (&colsum)[2],
                                              SharedFloats vec, const float (&bias2)[2], float sl,
                                              int lane, int key0, int i0, int T) {
  // colsum in 2 independent partials per row (column parity): half the chain
  // of dependent FADDs
  float cs[2][2] = {{0.f, 0.f}, {0.f, 0.f}};
  auto step = [&](auto masked) {
#pragma unroll
    for (int n = 0; n < NB; ++n) {
      // this lane's two queries of block n are adjacent: one 8-byte load of
      // their lse and one of their Delta, and bias - lse once per block
      const int c0 = frag_col(lane, n, 0);
      const float2 lse = vec.pair(c0), delta = vec.pair(NB * 8 + c0);
      const float off[2][2] = {{fmaf(-lse.x, kLog2e, bias2[0]), fmaf(-lse.y, kLog2e, bias2[0])},
                               {fmaf(-lse.x, kLog2e, bias2[1]), fmaf(-lse.y, kLog2e, bias2[1])}};
      const float dl[2] = {delta.x, delta.y};
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float pr = fast_exp2(fmaf(s[n][e], sl, off[e >> 1][e & 1]));
        if constexpr (decltype(masked)::value) {
          const int j = key0 + frag_row(lane, e), i = i0 + c0 + (e & 1);
          if (!(j <= i && i < T && j < T)) pr = 0.f;
        }
        s[n][e] = pr;
        dp[n][e] = pr * (dp[n][e] - dl[e & 1]);
        if constexpr (COLSUM) cs[e >> 1][e & 1] += dp[n][e];
      }
    }
  };
  if (key0 + 15 <= i0 && i0 + NB * 8 <= T)
    step(std::false_type{});
  else
    step(std::true_type{});
  if constexpr (COLSUM) {
#pragma unroll
    for (int r = 0; r < 2; ++r) colsum[r] += cs[r][0] + cs[r][1];
  }
}

// The launch policy of a team kernel F of this library's CUDA paths: F::NT
// threads per team (vector length 1, so a team is NT / 32 whole warps), the
// register cap of F::kMinBlocks teams per SM, and F::kScratch bytes of team
// scratch plus 128 of slack for aligned_scratch.
// The shared memory a block of a team kernel takes: nt threads asking
// `scratch` bytes of team scratch, plus team_policy's 128 bytes of alignment
// slack, plus the (nt + 2) doubles that Kokkos keeps in front of the team
// scratch for team reductions (Kokkos_Cuda_Parallel_Team.hpp: m_shmem_begin).
constexpr std::size_t team_shared_bytes(std::size_t scratch, int nt) {
  return scratch + 128 + 8 * std::size_t(nt + 2);
}
// What a block may have: 48 KiB with Kokkos 4.6 as released, which never
// raises a kernel's limit; the opt-in maximum of the GPU (sm_90: 227 KiB)
// with this project's Kokkos patch (cmake/kokkos-4.6.01-shmem-optin.patch).
// Which one this build's Kokkos gives is known at run time only
// (team_shared_limit()); entries that need more than 48 KiB (TensorCoreTraits::
// big_smem) are checked against it before they run.
constexpr std::size_t kSharedDefault = 48 * 1024, kSharedOptInSm90 = 227 * 1024;
// Whether a team of nt threads asking `scratch` bytes fits a block of `limit`
// bytes. Every kernel static_asserts it for its budget, so a traits entry over
// it fails to compile instead of failing at launch with Kokkos' "insufficient
// shared memory".
constexpr bool fits_team_shared(std::size_t scratch, int nt, std::size_t limit = kSharedDefault) {
  return team_shared_bytes(scratch, nt) <= limit;
}

template <class F>
using TeamPolicyOf = Kokkos::TeamPolicy<Kokkos::Cuda, Kokkos::LaunchBounds<F::NT, F::kMinBlocks>>;
template <class F>
TeamPolicyOf<F> team_policy(const Kokkos::Cuda& exec, int league) {
  TeamPolicyOf<F> p(exec, league, F::NT, 1);
  return p.set_scratch_size(0, Kokkos::PerTeam(F::kScratch + 128));
}

}  // namespace ra::kk::detail::cuda
