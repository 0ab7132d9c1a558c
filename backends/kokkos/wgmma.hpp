// Host interface of the sm_90a warpgroup (wgmma) forward in wgmma_cuda.cpp,
// called by tc::forward / tc::forward_plan for traits entries with wgmma set.
// Private to backends/kokkos.
#pragma once

#include <ra/kokkos/detail/tensor_core.hpp>
#include <ra/kokkos/kernel_traits.hpp>

#include <cstddef>

namespace ra::kk::detail::tc {

// Bytes of shared memory a team block may have with the Kokkos this library
// runs on: sharedMemPerBlockOptin where Kokkos carries the project's patch
// (cmake/kokkos-4.6.01-shmem-optin.patch), else the default 48 KiB (read from
// TeamPolicy<Cuda>::scratch_size_max(0)).
std::size_t team_shared_limit();

// The build holds the sm_90a kernels and the current GPU is compute
// capability 9.0 (H100, H200, GH200), the only one that runs them.
bool wgmma_available();
// Team scratch bytes of the kernel for these traits (0: none compiled).
std::size_t wgmma_forward_scratch(bool ra, int D, const TensorCoreTraits& tr);
// The forward (a.D padded to 64, tr one of the wgmma forward candidates).
void wgmma_forward(const Kokkos::Cuda& exec, const Args& a, const TensorCoreTraits& tr);
// The backward's query-owned (dQ) kernel for a wgmma backward candidate's q
// traits; scratch bytes likewise.
std::size_t wgmma_backward_q_scratch(bool ra, int D, const TensorCoreTraits& tr);
void wgmma_backward_q(const Kokkos::Cuda& exec, const Args& a, const TensorCoreTraits& tr);
// The backward's key-owned (dK/dV) kernel for a wgmma entry's kv traits.
std::size_t wgmma_backward_kv_scratch(bool ra, int D, const TensorCoreTraits& tr);
void wgmma_backward_kv(const Kokkos::Cuda& exec, const Args& a, const TensorCoreTraits& tr);

}  // namespace ra::kk::detail::tc
