// Explicit instantiations of the attention kernels for Kokkos::Serial (one file per
// execution space so the build compiles them in parallel).
#include <ra/kokkos/attention_impl.hpp>

#if defined(KOKKOS_ENABLE_SERIAL)
namespace ra::kk {
template struct AttentionTensors<float, Kokkos::Serial>;
template struct AttentionTensors<double, Kokkos::Serial>;
template class Attention<float, Kokkos::Serial>;
template class Attention<double, Kokkos::Serial>;
}  // namespace ra::kk
#endif
