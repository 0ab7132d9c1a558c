// Device-fenced timing. On CUDA, events recorded on the execution space's
// stream bracket the work (the method every GPU figure in docs/perf.md uses);
// on host backends the space is fenced before and after a steady clock.
#pragma once

#include <Kokkos_Core.hpp>

#include <chrono>
#include <stdexcept>
#include <string>

#if defined(KOKKOS_ENABLE_CUDA)
#include <cuda_runtime.h>
#endif

namespace ra {

template <class Exec>
class DeviceTimer {
 public:
  explicit DeviceTimer(const Exec& exec) : exec_(exec) {}
  // Milliseconds taken by fn() on the space, waiting for it to finish.
  template <class Fn>
  double time_ms(Fn&& fn) {
    exec_.fence("ra::DeviceTimer: before");
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    exec_.fence("ra::DeviceTimer: after");
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  }

 private:
  Exec exec_;
};

#if defined(KOKKOS_ENABLE_CUDA)
template <>
class DeviceTimer<Kokkos::Cuda> {
 public:
  explicit DeviceTimer(const Kokkos::Cuda& exec) : exec_(exec) {
    check(cudaEventCreate(&start_), "cudaEventCreate");
    check(cudaEventCreate(&stop_), "cudaEventCreate");
  }
  ~DeviceTimer() {
    cudaEventDestroy(start_);
    cudaEventDestroy(stop_);
  }
  DeviceTimer(const DeviceTimer&) = delete;
  DeviceTimer& operator=(const DeviceTimer&) = delete;

  template <class Fn>
  double time_ms(Fn&& fn) {
    exec_.fence("ra::DeviceTimer: before");
    check(cudaEventRecord(start_, exec_.cuda_stream()), "cudaEventRecord");
    fn();
    check(cudaEventRecord(stop_, exec_.cuda_stream()), "cudaEventRecord");
    check(cudaEventSynchronize(stop_), "cudaEventSynchronize");
    check(cudaGetLastError(), "kernel launch");
    float ms = 0;
    check(cudaEventElapsedTime(&ms, start_, stop_), "cudaEventElapsedTime");
    return ms;
  }

 private:
  static void check(cudaError_t e, const char* what) {
    if (e != cudaSuccess)
      throw std::runtime_error(std::string("CUDA error in ") + what + ": " + cudaGetErrorString(e));
  }
  Kokkos::Cuda exec_;
  cudaEvent_t start_{}, stop_{};
};
#endif

}  // namespace ra
