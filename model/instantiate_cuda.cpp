// Explicit instantiations of the GPT-2 layers and model for Kokkos::Cuda
// (one file per execution space so the build compiles them in parallel).
#include <ra/model/gpt2_impl.hpp>

#if defined(KOKKOS_ENABLE_CUDA)
namespace ra::model {
template struct Matmul<float, Kokkos::Cuda>;
template struct Matmul<double, Kokkos::Cuda>;
template struct Layers<float, Kokkos::Cuda>;
template struct Layers<double, Kokkos::Cuda>;
template class GPT2<float, Kokkos::Cuda>;
template class GPT2<double, Kokkos::Cuda>;
}  // namespace ra::model
#endif
