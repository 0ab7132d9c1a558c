// Host-side interface of the CUDA "fp32 tiled" kernels: float storage, exact
// fp32 math (FMA on CUDA cores; no TF32, no bf16). Register-tiled SIMT flash
// kernels for sdpa_fused, ra_fused and ra_window: each thread owns a 4 x 8
// micro-tile of the 64 x 64 logits tile, the operand tiles come through team
// scratch in k-major layout. A forward, and a deterministic two-kernel
// backward (key-owned dK/dV kernel, then query-owned dQ kernel). The kernels
// are Kokkos TeamPolicy functors whose device bodies are plain CUDA; they live
// in fp32_tiled_cuda.cpp, compiled only in CUDA builds.
// ra::kk::Attention<float, Kokkos::Cuda> runs them for the fused variants when
// unsupported() / backward_unsupported() say "" (and no tile is pinned, no
// portable path forced). Either half may run beside the portable other half:
// they share the meaning of o and lse (lse is the natural-log row log-sum-exp).
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

// Raw device pointers of one backward. Inputs: q, k, v, dout [B,H,T,D]; lse
// and delta (Delta_i = dO_i . O_i) [B,H,T]; RA: gates [gate_batch,H,3], d.
// Outputs: dq, dk, dv; RA: dd [B,H,T] and gate_partials [B,H,n_partials,3]
// (slots 0, 1 = dw_std, dw_rec per query tile, slot 2 = dw_disc per key tile;
// every slot t < backward_partials(T) is written, so reduce_gates may sum
// them all). RA also needs part_dq, part_dk [B,H,T,D] floats: the key-owned
// kernel's shares of dQ and dK, added by the query-owned kernel.
struct BwdArgs {
  const float *q = nullptr, *k = nullptr, *v = nullptr, *dout = nullptr;
  const float *lse = nullptr, *delta = nullptr, *gates = nullptr, *d = nullptr;
  float *dq = nullptr, *dk = nullptr, *dv = nullptr, *dd = nullptr;
  float *gate_partials = nullptr, *part_dq = nullptr, *part_dk = nullptr;
  int n_partials = 0;
  int B = 0, H = 0, T = 0, D = 0;
  bool ra = false;
  int window = -1;
  int gate_batch = 1;
};

// "" if the backward takes this problem, else why not.
std::string backward_unsupported(bool ra, int D);
TilePlan backward_plan(bool ra, int D);
// Gate-partial slots the backward writes (its tile count along T).
int backward_partials(int T);
// Writes dq, dk, dv (+ dd, gate_partials, part_dq, part_dk for RA); asynchronous on exec.
void backward(const Kokkos::Cuda& exec, const BwdArgs& a);

}  // namespace ra::kk::detail::fp32t
#endif
