// Explicit instantiations of the GPT-2 layers and model for Kokkos::Serial
// (one file per execution space so the build compiles them in parallel).
// float only: Serial is the bit-reproducible host reference for runs and
// tests; double runs on the default space.
#include <ra/model/gpt2_impl.hpp>

#if defined(KOKKOS_ENABLE_SERIAL)
namespace ra::model {
template struct Matmul<float, Kokkos::Serial>;
template struct Matmul<double, Kokkos::Serial>;
template struct Layers<float, Kokkos::Serial>;
template class GPT2<float, Kokkos::Serial>;
}  // namespace ra::model
#endif
