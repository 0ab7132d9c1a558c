// What a run ran on, for the run file's attributes: the Kokkos backend, the
// device's name and (CUDA) compute capability, the Kokkos version, and the
// GPU's arithmetic peaks that ra-bench reports achieved rates against.
#pragma once

#include <Kokkos_Core.hpp>

#include <fstream>
#include <map>
#include <string>
#include <thread>
#include <utility>

#if defined(KOKKOS_ENABLE_CUDA)
#include <cuda_runtime.h>
#endif

namespace ra {

struct DeviceInfo {
  std::string backend;             // Kokkos execution space name: Serial, OpenMP, Cuda
  std::string device_name;         // "NVIDIA H100 80GB HBM3" or the CPU model
  std::string compute_capability;  // "9.0" on CUDA, "n/a" on host
  std::string kokkos_version;      // "4.6.1"
  int concurrency = 1;             // threads (host) or SMs (CUDA)
  // Dense peaks in TFLOP/s (0: unknown, e.g. on a CPU): SMs x the maximum
  // SM clock x FLOP per clock per SM of the architecture -- bf16 on tensor
  // cores, fp32 on CUDA cores. An upper bound: datasheets quote a lower
  // sustained clock (the H100 SXM's 989 bf16 TFLOP/s is 1830 MHz; its max is
  // 1980), and a measured mma.sync loop reaches ~790 (docs/perf.md).
  double peak_tflops_bf16 = 0, peak_tflops_fp32 = 0;

  std::map<std::string, std::string> attributes() const {
    return {{"kokkos_backend", backend},
            {"device_name", device_name},
            {"compute_capability", compute_capability},
            {"kokkos_version", kokkos_version},
            {"device_concurrency", std::to_string(concurrency)},
            {"peak_tflops_bf16_tensor", peak_tflops_bf16 > 0 ? std::to_string(peak_tflops_bf16) : "n/a"},
            {"peak_tflops_fp32", peak_tflops_fp32 > 0 ? std::to_string(peak_tflops_fp32) : "n/a"}};
  }
};

// Dense FLOP per clock per SM: {bf16 tensor core, fp32 CUDA core}, by
// compute capability; {0, 0} where not known (add an entry for a new GPU).
inline std::pair<int, int> flop_per_clock_per_sm(int major, int minor) {
  if (major == 9 && minor == 0) return {4096, 256};                       // H100, H200
  if (major == 8 && minor == 0) return {2048, 128};                       // A100
  if (major == 8 && (minor == 6 || minor == 7 || minor == 9)) return {1024, 256};  // A10G, RTX 30xx/40xx, L4, L40S
  return {0, 0};
}

inline std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) return line.substr(line.find_first_not_of(' ', colon + 1));
    }
  return "unknown CPU";
}

template <class Exec>
DeviceInfo device_info(const Exec& exec = Exec()) {
  DeviceInfo info;
  info.backend = Exec::name();
  info.kokkos_version = std::to_string(KOKKOS_VERSION_MAJOR) + "." +
                        std::to_string(KOKKOS_VERSION_MINOR) + "." +
                        std::to_string(KOKKOS_VERSION_PATCH);
  info.device_name = cpu_model_name();
  info.compute_capability = "n/a";
  info.concurrency = exec.concurrency();
#if defined(KOKKOS_ENABLE_CUDA)
  if constexpr (std::is_same_v<Exec, Kokkos::Cuda>) {
    cudaDeviceProp prop{};
    if (cudaGetDeviceProperties(&prop, exec.cuda_device()) == cudaSuccess) {
      info.device_name = prop.name;
      info.compute_capability = std::to_string(prop.major) + "." + std::to_string(prop.minor);
      info.concurrency = prop.multiProcessorCount;
      int clock_khz = 0;  // cudaDeviceProp::clockRate is gone in CUDA 13; the attribute stays
      if (cudaDeviceGetAttribute(&clock_khz, cudaDevAttrClockRate, exec.cuda_device()) == cudaSuccess) {
        const auto [bf16, fp32] = flop_per_clock_per_sm(prop.major, prop.minor);
        const double sm_ghz = prop.multiProcessorCount * clock_khz * 1e-6;
        info.peak_tflops_bf16 = bf16 * sm_ghz * 1e-3;
        info.peak_tflops_fp32 = fp32 * sm_ghz * 1e-3;
      }
    }
  }
#endif
  return info;
}

}  // namespace ra
