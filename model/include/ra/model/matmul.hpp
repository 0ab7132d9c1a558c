// The model's matrix products in one place: C = alpha op(A) op(B) + beta C on
// row-major matrices, in the precision GPTConfig::matmul names.
//
//   fp32  KokkosBlas::gemm on the float matrices (cuBLAS SGEMM on CUDA, the
//         host BLAS elsewhere): the path every backend has.
//   tf32  cublasGemmEx on the float matrices with TF32 tensor-core math.
//   bf16  cublasGemmEx on bf16 copies of A and B (Operand::half), fp32
//         accumulation, float C: C keeps full precision, so the residual
//         stream, bias and weight gradients never round to bf16.
// tf32 and bf16 exist only for Kokkos::Cuda: Kokkos Kernels' gemm has no
// mixed-type or TF32 form (../shared/docs/kokkos-cuda.md), so those two go
// to cuBLAS directly, through the one function below. Definitions in
// matmul_impl.hpp (included by the model's instantiation files).
#pragma once

#include <ra/model/config.hpp>
#include <ra/tensor.hpp>

#include <Kokkos_Core.hpp>

#include <stdexcept>
#include <string>
#include <type_traits>

namespace ra::model {

namespace detail {
// cuBLAS GEMM on raw device pointers, row-major semantics as above (the
// column-major swap happens inside). a_rows x a_cols and b_cols describe
// the stored A and B. bf16: A and B point at bf16 data, else at float.
// Defined in matmul_cuda.cpp (CUDA builds only); throws naming the status.
void cublas_gemm(void* stream, MatmulPrecision precision, bool trans_a, bool trans_b, int M, int N, int K,
                 float alpha, const void* A, int lda, const void* B, int ldb, float beta, float* C, int ldc);
// dst[i] = bf16(src[i]) for i < n on the stream: four elements per thread
// (16-byte loads, 8-byte stores) where both pointers allow it. The cast
// passes move 6 bytes an element, so they must run at memory bandwidth.
void cuda_to_bf16(void* stream, const float* src, void* dst, std::size_t n);
}  // namespace detail

template <class Scalar, class Exec>
struct Matmul {
  using Mem = typename Exec::memory_space;
  using Mat = Kokkos::View<Scalar**, Kokkos::LayoutRight, Mem>;
  using Half = Kokkos::View<bf16**, Kokkos::LayoutRight, Mem>;

  // One GEMM operand as the three precisions see it: the Scalar matrix, and
  // under bf16 its bf16 copy of the same shape (empty otherwise).
  struct Operand {
    Mat full;
    Half half;
  };

  // Whether this model type can run that precision (fp32 always; tf32 and
  // bf16 only for float models on the CUDA execution space).
  static bool supports(MatmulPrecision p) {
    if (p == MatmulPrecision::fp32) return true;
#if defined(KOKKOS_ENABLE_CUDA)
    return std::is_same_v<Scalar, float> && std::is_same_v<Exec, Kokkos::Cuda>;
#else
    return false;
#endif
  }

  // C = alpha op(A) op(B) + beta C, op = transpose when the flag is 'T'.
  // Throws std::invalid_argument for tf32 / bf16 where they cannot run.
  static void gemm(const Exec& exec, MatmulPrecision p, char ta, char tb, Scalar alpha, const Operand& A,
                   const Operand& B, Scalar beta, const Mat& C);

  // dst = bf16(src), element-wise over n elements (the copies bf16 GEMMs read).
  static void to_half(const Exec& exec, const Scalar* src, bf16* dst, std::size_t n);
  static void to_half(const Exec& exec, const Mat& src, const Half& dst) {
    to_half(exec, src.data(), dst.data(), src.span());
  }
};

}  // namespace ra::model
