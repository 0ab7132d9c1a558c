// Host-side interface of the CUDA tensor-core attention kernels (bf16 storage,
// fp32 accumulation and softmax). The kernels themselves are Kokkos TeamPolicy
// functors whose device body issues warp-level mma.sync (m16n8k16 bf16),
// ldmatrix and cp.async; they live in tensor_core_cuda.cpp, compiled only in
// CUDA builds. ra::kk::Attention<bf16, Kokkos::Cuda> calls them for fused
// variants when supported() says yes, and otherwise runs the portable path.
#pragma once

#include <Kokkos_Core.hpp>
#include <ra/kokkos/attention.hpp>

#include <string>

#if defined(KOKKOS_ENABLE_CUDA)
namespace ra::kk::detail::tc {

// Raw device pointers ([B,H,T,D] tensors are bf16, the rest float) and the
// problem. Forward reads q,k,v,gates,d and writes o,lse; backward reads those
// plus o, dout, delta and writes dq,dk,dv,dd and gate_partials
// ([B,H,n_partials,3]: slot 2 per key tile, slots 0,1 per query tile). RA's
// key-owned kernel writes its shares of dq and dk first, the query-owned one
// (or the fused finish) adds its own.
struct Args {
  const void *q = nullptr, *k = nullptr, *v = nullptr, *dout = nullptr;
  const float *gates = nullptr, *d = nullptr, *lse_in = nullptr, *delta = nullptr;
  void *o = nullptr, *dq = nullptr, *dk = nullptr, *dv = nullptr;
  float *lse = nullptr, *dd = nullptr, *gate_partials = nullptr;
  float* dqf_accum = nullptr;  // fused backward: float [B,H,T,W], zeroed by the caller
  int n_partials = 0;
  int B = 0, H = 0, T = 0, D = 0;
  bool ra = false;
  int window = -1, gate_batch = 1;
  int candidate = -1;      // forward configuration: -1 the traits table, else a candidate index
  int bwd_candidate = -1;  // backward configuration, likewise
};

// "" if the tensor-core kernels take this problem, else why not (for the
// reason ra-bench prints beside the portable path).
std::string unsupported(bool ra, int D, bool backward, int candidate = -1);
// Tiling of the kernels that would run (path "tensor-core bf16 ...").
TilePlan forward_plan(bool ra, int D, int candidate = -1);
TilePlan backward_plan(bool ra, int D, int candidate = -1);
// The candidate RA_TUNED_TRAITS names for this GPU's architecture (sm_XY of
// the current device), or -1: no file, no entry, or a head dim without
// compiled candidates (see ra/kokkos/tuned_traits.hpp).
int tuned_candidate(bool ra, int D, bool backward);
// The forward and backward candidates of variant v's own kernels where the
// table has them (ra_window's window kernels: kernel_traits.hpp), else -1.
int window_forward_candidate(Variant v, int D);
int window_backward_candidate(Variant v, int D);
// Number of gate-partial slots the backward writes (max of key and query tiles).
int backward_partials(bool ra, int D, int T, int candidate = -1);

void forward(const Kokkos::Cuda& exec, const Args& a);
// delta[r] = dO_r . O_r over the rows r < rows of bf16 [rows, D] tensors (D % 8 == 0):
// the portable row_delta's job, with 16-byte loads.
void row_delta(const Kokkos::Cuda& exec, const void* dout, const void* o, float* delta, int rows, int D);
void backward(const Kokkos::Cuda& exec, const Args& a);

// The opt-in single-pass backward (Options::deterministic = false): one
// key-owned kernel adds dQ (RA: and dK's cross part) into a.dqf_accum by fp32
// atomics, then a small kernel writes dQ, dK from it. Gate partials: one slot
// per 64-key tile, all three gates. "" if it takes the problem, else why not.
std::string fused_unsupported(bool ra, int D);
TilePlan fused_backward_plan(bool ra, int D);  // path "tensor-core bf16 fused-atomic ..."
int fused_backward_partials(bool ra, int D, int T);
void fused_backward(const Kokkos::Cuda& exec, const Args& a);

}  // namespace ra::kk::detail::tc
#endif
