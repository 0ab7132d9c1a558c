// What a run ran on, for the run file's attributes: the Kokkos backend, the
// device's name and (CUDA) compute capability, the Kokkos version.
#pragma once

#include <Kokkos_Core.hpp>

#include <fstream>
#include <map>
#include <string>
#include <thread>

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

  std::map<std::string, std::string> attributes() const {
    return {{"kokkos_backend", backend},
            {"device_name", device_name},
            {"compute_capability", compute_capability},
            {"kokkos_version", kokkos_version},
            {"device_concurrency", std::to_string(concurrency)}};
  }
};

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
    }
  }
#endif
  return info;
}

}  // namespace ra
