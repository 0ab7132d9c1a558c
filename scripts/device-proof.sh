#!/usr/bin/env bash
# Runs ON the GPU machine (device tool), from the repo root, over builds that
# scripts/stage-device.sh made here and carried in .device/:
#   1. the cuda-h100 suite through ctest (CUDA + Serial spaces vs float64 reference)
#   2. the cuda-a10g suite: its compute_86 PTX JIT-compiled by the driver for
#      this sm_90 GPU -- how tests get ported to GPUs we do not have
#   3. ra-bench at the seeds' shape (B=8 H=12 T=1024 D=64), float
#   4. PyTorch's own causal SDPA (and a plain PyTorch RA) at the same shape,
#      in the same call, as the yardstick
# Data files land in $OUT (the HDF5 run, its plot, JSON); the log is stdout
# (tee it to $OUT/proof.log: the device tool returns at most 8 files).
set -uo pipefail
OUT=${OUT:-/tmp/ra-out}
mkdir -p "$OUT"
root=$(pwd)
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$root/.device/lib:/usr/local/cuda/lib64:${cublas_dir}:${LD_LIBRARY_PATH:-}"
export OMP_NUM_THREADS=4

nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv
status=0
for preset in ${RA_PRESETS:-cuda-h100 cuda-a10g}; do
  d="$root/.device/$preset"
  [ -d "$d" ] || { echo "missing $d (run scripts/stage-device.sh $preset here first)"; status=1; continue; }
  sed -i "s#@DIR@#$d#g" "$d/CTestTestfile.cmake"
  echo "== ctest $preset"
  t0=$(date +%s)
  ctest --test-dir "$d" --output-on-failure --timeout 900 2>&1 || status=1
  echo "ctest $preset took $(( $(date +%s) - t0 )) s"
done

if [ -x "$root/.device/cuda-h100/ra-bench" ]; then
  echo "== ra-bench (cuda-h100 build), seeds' shape"
  "$root/.device/cuda-h100/ra-bench" --out "$OUT/ra-bench-seed" ${RA_BENCH_ARGS:-} 2>&1 || status=1
  python3 "$root/scripts/plot_bench.py" "$OUT/ra-bench-seed.h5" || true
fi
echo "== PyTorch yardstick, same shape"
PYTHONUNBUFFERED=1 python3 "$root/scripts/torch_yardstick.py" --out "$OUT/torch.json" 2>&1 || status=1
exit $status
