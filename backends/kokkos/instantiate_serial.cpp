// Explicit instantiations of the attention kernels for Kokkos::Serial (one file per
// execution space so the build compiles them in parallel).
#include <ra/kokkos/attention_impl.hpp>

#if defined(KOKKOS_ENABLE_SERIAL)
namespace ra::kk {
template struct AttentionTensors<float, Kokkos::Serial>;
template struct AttentionTensors<double, Kokkos::Serial>;
template class Attention<float, Kokkos::Serial>;
template class Attention<double, Kokkos::Serial>;
#if defined(RA_HAVE_BF16)  // bf16 storage where Kokkos has a real bf16 type
template struct AttentionTensors<bf16, Kokkos::Serial>;
template class Attention<bf16, Kokkos::Serial>;
#endif
}  // namespace ra::kk
#endif
