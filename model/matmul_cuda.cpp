// cuBLAS behind ra::model::Matmul's tf32 and bf16 precisions (CUDA builds).
#include <ra/model/matmul.hpp>

#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdint>

#include <mutex>
#include <stdexcept>
#include <string>

namespace ra::model::detail {

namespace {

// One handle for the process, made on first use (creating one costs
// milliseconds and allocates; the stream is set per call).
cublasHandle_t handle() {
  static cublasHandle_t h = nullptr;
  static std::once_flag once;
  std::call_once(once, [] {
    if (const cublasStatus_t s = cublasCreate(&h); s != CUBLAS_STATUS_SUCCESS)
      throw std::runtime_error(std::string("Matmul: cublasCreate failed: ") + cublasGetStatusString(s));
  });
  return h;
}

}  // namespace

void cublas_gemm(void* stream, MatmulPrecision precision, bool trans_a, bool trans_b, int M, int N, int K,
                 float alpha, const void* A, int lda, const void* B, int ldb, float beta, float* C, int ldc) {
  cublasHandle_t h = handle();
  if (const cublasStatus_t s = cublasSetStream(h, static_cast<cudaStream_t>(stream)); s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error(std::string("Matmul: cublasSetStream failed: ") + cublasGetStatusString(s));
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T, and a
  // row-major matrix read column-major is its own transpose: so swap the
  // operands, keep each one's flag, and pass the row lengths as leading
  // dimensions.
  const bool bf = precision == MatmulPrecision::bf16;
  const cudaDataType_t in = bf ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute =
      precision == MatmulPrecision::tf32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const cublasStatus_t s =
      cublasGemmEx(h, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N, trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                   in, ldb, A, in, lda, &beta, C, CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT);
  if (s != CUBLAS_STATUS_SUCCESS)
    throw std::runtime_error("Matmul: cublasGemmEx (" + matmul_precision_name(precision) + ", M=" +
                             std::to_string(M) + " N=" + std::to_string(N) + " K=" + std::to_string(K) +
                             ") failed: " + cublasGetStatusString(s));
}

namespace {

__global__ void to_bf16_vec4(const float4* __restrict__ src, uint2* __restrict__ dst, std::size_t n4) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n4;
       i += std::size_t(gridDim.x) * blockDim.x) {
    const float4 v = src[i];
    const __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
    dst[i] = make_uint2(*reinterpret_cast<const unsigned*>(&lo), *reinterpret_cast<const unsigned*>(&hi));
  }
}

__global__ void to_bf16_scalar(const float* __restrict__ src, __nv_bfloat16* __restrict__ dst, std::size_t n) {
  for (std::size_t i = blockIdx.x * std::size_t(blockDim.x) + threadIdx.x; i < n;
       i += std::size_t(gridDim.x) * blockDim.x)
    dst[i] = __float2bfloat16_rn(src[i]);
}

}  // namespace

void cuda_to_bf16(void* stream, const float* src, void* dst, std::size_t n) {
  if (n == 0) return;
  const auto s = static_cast<cudaStream_t>(stream);
  constexpr int threads = 256;
  // Enough blocks to fill the GPU several times over; the loops stride the rest.
  auto blocks = [](std::size_t work) { return int(std::min<std::size_t>((work + threads - 1) / threads, 8192)); };
  const bool aligned = reinterpret_cast<std::uintptr_t>(src) % 16 == 0 && reinterpret_cast<std::uintptr_t>(dst) % 8 == 0;
  std::size_t done = 0;
  if (aligned && n >= 4) {
    const std::size_t n4 = n / 4;
    to_bf16_vec4<<<blocks(n4), threads, 0, s>>>(reinterpret_cast<const float4*>(src), static_cast<uint2*>(dst), n4);
    done = n4 * 4;
  }
  if (done < n)
    to_bf16_scalar<<<blocks(n - done), threads, 0, s>>>(src + done, static_cast<__nv_bfloat16*>(dst) + done, n - done);
  if (const cudaError_t e = cudaGetLastError(); e != cudaSuccess)
    throw std::runtime_error(std::string("Matmul: bf16 cast kernel launch failed: ") + cudaGetErrorString(e));
}

}  // namespace ra::model::detail
