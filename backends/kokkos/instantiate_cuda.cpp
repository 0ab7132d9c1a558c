// Explicit instantiations of the attention kernels for Kokkos::Cuda (one file per
// execution space so the build compiles them in parallel).
#include <ra/kokkos/attention_impl.hpp>

#if defined(KOKKOS_ENABLE_CUDA)
namespace ra::kk {
template struct AttentionTensors<float, Kokkos::Cuda>;
template struct AttentionTensors<double, Kokkos::Cuda>;
template class Attention<float, Kokkos::Cuda>;
template class Attention<double, Kokkos::Cuda>;
}  // namespace ra::kk
#endif
