// Host-side interface of the CUDA "fp32 tiled" forward kernel: float storage,
// exact fp32 math (FMA on CUDA cores; no TF32, no bf16). A register-tiled SIMT
// flash forward for sdpa_fused, ra_fused and ra_window: each thread owns a
// 4 x 8 micro-tile of the 64 x 64 logits tile and a 4-row slice of O, the
// operand tiles come through team scratch in k-major layout. The kernel is a
// Kokkos TeamPolicy functor whose device body is plain CUDA; it lives in
// fp32_tiled_cuda.cpp, compiled only in CUDA builds.
// ra::kk::Attention<float, Kokkos::Cuda> runs it for the fused forward when
// unsupported() says "" (and no tile is pinned, no portable path forced);
// the backward stays on the portable kernels, which read the o and lse it
// writes (same meaning: lse is the natural-log row log-sum-exp).
#pragma once

#include <Kokkos_Core.hpp>
#include <ra/kokkos/attention.hpp>

#include <string>

#if defined(KOKKOS_ENABLE_CUDA)
namespace ra::kk::detail::fp32t {

// Raw device pointers of one forward: [B,H,T,D] tensors q, k, v, o; gates
// [gate_batch,H,3] (w_std, w_rec, w_disc) and d [B,H,T] (RA only); lse [B,H,T].
struct Args {
  const float *q = nullptr, *k = nullptr, *v = nullptr;
  const float *gates = nullptr, *d = nullptr;
  float *o = nullptr, *lse = nullptr;
  int B = 0, H = 0, T = 0, D = 0;
  bool ra = false;
  int window = -1;  // ra_window's band i - j <= window; < 0: reciprocity everywhere
  int gate_batch = 1;
};

// "" if the kernel takes this problem, else why not (printed beside the portable path).
std::string unsupported(bool ra, int D);
// Tiling of the kernel that would run (path "fp32 tiled ...").
TilePlan forward_plan(bool ra, int D);
// Writes o and lse; asynchronous on exec.
void forward(const Kokkos::Cuda& exec, const Args& a);

}  // namespace ra::kk::detail::fp32t
#endif
