// Host-side interface of the CUDA TF32 tensor-core kernels (float storage,
// operands rounded to TF32 for mma.sync.m16n8k8, fp32 accumulation, softmax
// and outputs): the opt-in `tf32` precision of ra::kk::Attention<float, Cuda>
// (Options::tf32). A forward, and a deterministic two-kernel backward with the
// exact fp32 tiled backward's arguments and outputs (key-owned dK/dV kernel,
// then query-owned dQ kernel; D <= 64, else the fp32 tiled backward runs).
// The kernels live in tf32_cuda.cpp, compiled only in CUDA builds.
#pragma once

#include <Kokkos_Core.hpp>
#include <ra/kokkos/attention.hpp>
#include <ra/kokkos/detail/fp32_tiled.hpp>

#include <string>

#if defined(KOKKOS_ENABLE_CUDA)
namespace ra::kk::detail::tf32 {

// The forward's arguments are the exact fp32 forward's (same tensors, same meaning).
using Args = fp32t::Args;

// "" if the TF32 kernel takes this problem, else why not.
std::string unsupported(bool ra, int D);
// Tiling of the kernel that would run (path "tensor-core tf32 ...").
TilePlan forward_plan(bool ra, int D);
void forward(const Kokkos::Cuda& exec, const Args& a);

// The backward's arguments and contract are fp32t::backward's (see
// detail/fp32_tiled.hpp): dq, dk, dv; RA also dd, every gate-partial slot
// t < backward_partials(T) (per 64-row tile, as fp32t's) and part_dq/part_dk.
using BwdArgs = fp32t::BwdArgs;
// "" if the TF32 backward takes this problem, else why not.
std::string backward_unsupported(bool ra, int D);
// Tiling of the backward that would run (path "tensor-core tf32 bwd ...").
TilePlan backward_plan(bool ra, int D);
// Gate-partial slots the backward writes (64-row tiles: fp32t::backward_partials).
int backward_partials(int T);
// Writes dq, dk, dv (+ dd, gate_partials, part_dq, part_dk for RA); asynchronous on exec.
void backward(const Kokkos::Cuda& exec, const BwdArgs& a);

}  // namespace ra::kk::detail::tf32
#endif
