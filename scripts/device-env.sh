# Sourced by the scripts that run ON the GPU machine (device-proof.sh,
# device-tune.sh, device-train.sh): where results go ($OUT), the repo root,
# and the library path for binaries staged by scripts/stage-device.sh (their
# own .device/lib, CUDA's, and the cuBLAS that PyTorch's wheel carries).
OUT=${OUT:-/tmp/ra-out}
mkdir -p "$OUT"
root=$(pwd)
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null || true)
# NCCL (ra-train's data parallel) likewise from PyTorch's nvidia-nccl wheel.
nccl_dir=$(python3 -c 'import nvidia.nccl, os; print(os.path.join(os.path.dirname(nvidia.nccl.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$root/.device/lib:/usr/local/cuda/lib64:${cublas_dir}:${nccl_dir}:${LD_LIBRARY_PATH:-}"
