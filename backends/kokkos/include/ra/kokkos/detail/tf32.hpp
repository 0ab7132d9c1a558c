// Host-side interface of the CUDA TF32 tensor-core forward (float storage,
// operands rounded to TF32 for mma.sync.m16n8k8, fp32 accumulation, softmax
// and outputs): the opt-in `tf32` precision of ra::kk::Attention<float, Cuda>
// (Options::tf32). The kernel lives in tf32_cuda.cpp, compiled only in CUDA
// builds; the backward of a tf32 forward is the exact-fp32 one.
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

}  // namespace ra::kk::detail::tf32
#endif
