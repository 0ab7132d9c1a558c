// Explicit instantiations of the GPT-2 layers and model for Kokkos::OpenMP
// (one file per execution space so the build compiles them in parallel).
#include <ra/model/gpt2_impl.hpp>

#if defined(KOKKOS_ENABLE_OPENMP)
namespace ra::model {
template struct Matmul<float, Kokkos::OpenMP>;
template struct Matmul<double, Kokkos::OpenMP>;
template struct Layers<float, Kokkos::OpenMP>;
template struct Layers<double, Kokkos::OpenMP>;
template class GPT2<float, Kokkos::OpenMP>;
template class GPT2<double, Kokkos::OpenMP>;
}  // namespace ra::model
#endif
