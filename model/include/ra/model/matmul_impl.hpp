// Definitions of ra::model::Matmul (see matmul.hpp). Included by
// layers_impl.hpp, so only the model's instantiation files compile the BLAS
// headers.
#pragma once

#include <ra/model/matmul.hpp>

#include <KokkosBlas3_gemm.hpp>

namespace ra::model {

template <class Scalar, class Exec>
void Matmul<Scalar, Exec>::gemm(const Exec& exec, MatmulPrecision p, char ta, char tb, Scalar alpha,
                                const Operand& A, const Operand& B, Scalar beta, const Mat& C) {
  if (p == MatmulPrecision::fp32) {
    const char sa[2] = {ta, 0}, sb[2] = {tb, 0};
    KokkosBlas::gemm(exec, sa, sb, alpha, A.full, B.full, beta, C);
    return;
  }
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (std::is_same_v<Scalar, float> && std::is_same_v<Exec, Kokkos::Cuda>) {
    const bool bf = p == MatmulPrecision::bf16;
    const bool at = ta == 'T', bt = tb == 'T';
    const int a_rows = int(bf ? A.half.extent(0) : A.full.extent(0));
    const int a_cols = int(bf ? A.half.extent(1) : A.full.extent(1));
    const int b_cols = int(bf ? B.half.extent(1) : B.full.extent(1));
    const int M = at ? a_cols : a_rows, K = at ? a_rows : a_cols;
    const int N = C.extent_int(1);
    if (C.extent_int(0) != M)
      throw std::invalid_argument("Matmul::gemm: C has " + std::to_string(C.extent(0)) + " rows, op(A) has " +
                                  std::to_string(M));
    const void* a = bf ? static_cast<const void*>(A.half.data()) : A.full.data();
    const void* b = bf ? static_cast<const void*>(B.half.data()) : B.full.data();
    if (!a || !b)
      throw std::logic_error("Matmul::gemm: " + matmul_precision_name(p) + " operand without its " +
                             (bf ? "bf16 copy" : "float data"));
    detail::cublas_gemm(exec.cuda_stream(), p, at, bt, M, N, K, alpha, a, a_cols, b, b_cols, beta, C.data(),
                        N);
    return;
  }
#endif
  throw std::invalid_argument("matmul precision " + matmul_precision_name(p) + " needs a float model on the " +
                              "CUDA execution space (this one is " + precision_name<Scalar>() + " on " +
                              Exec::name() + ")");
}

template <class Scalar, class Exec>
void Matmul<Scalar, Exec>::to_half(const Exec& exec, const Scalar* src, bf16* dst, std::size_t n) {
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (std::is_same_v<Scalar, float> && std::is_same_v<Exec, Kokkos::Cuda>) {
    detail::cuda_to_bf16(exec.cuda_stream(), src, dst, n);
    return;
  }
#endif
  Kokkos::parallel_for(
      "ra::model::to_bf16", Kokkos::RangePolicy<Exec>(exec, 0, n),
      KOKKOS_LAMBDA(std::size_t i) { dst[i] = static_cast<bf16>(static_cast<float>(src[i])); });
}

}  // namespace ra::model
