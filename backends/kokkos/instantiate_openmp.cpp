// Explicit instantiations of the attention kernels for Kokkos::OpenMP (one file per
// execution space so the build compiles them in parallel).
#include <ra/kokkos/attention_impl.hpp>

#if defined(KOKKOS_ENABLE_OPENMP)
namespace ra::kk {
template struct AttentionTensors<float, Kokkos::OpenMP>;
template struct AttentionTensors<double, Kokkos::OpenMP>;
template class Attention<float, Kokkos::OpenMP>;
template class Attention<double, Kokkos::OpenMP>;
#if defined(RA_HAVE_BF16)  // bf16 storage where Kokkos has a real bf16 type
template struct AttentionTensors<bf16, Kokkos::OpenMP>;
template class Attention<bf16, Kokkos::OpenMP>;
#endif
}  // namespace ra::kk
#endif
