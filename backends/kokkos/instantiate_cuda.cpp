// Explicit instantiations of the attention kernels for Kokkos::Cuda (one file per
// execution space so the build compiles them in parallel).
#include <ra/kokkos/attention_impl.hpp>

#if defined(KOKKOS_ENABLE_CUDA)
namespace ra::kk {
template struct AttentionTensors<float, Kokkos::Cuda>;
template struct AttentionTensors<double, Kokkos::Cuda>;
template class Attention<float, Kokkos::Cuda>;
template class Attention<double, Kokkos::Cuda>;
#if defined(RA_HAVE_BF16)  // bf16 storage where Kokkos has a real bf16 type
template struct AttentionTensors<bf16, Kokkos::Cuda>;
template class Attention<bf16, Kokkos::Cuda>;
#endif
}  // namespace ra::kk
#endif
