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
source "$(dirname "$0")/device-env.sh"
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

# RA_SANITIZE=1: compute-sanitizer memcheck (and racecheck) over the bf16 kernel tests.
if [ -n "${RA_SANITIZE:-}" ] && [ -x "$root/.device/cuda-h100/test_kernels" ]; then
  for tool in memcheck racecheck; do
    echo "== compute-sanitizer --tool $tool test_kernels [bf16]"
    compute-sanitizer --tool $tool --error-exitcode 9 "$root/.device/cuda-h100/test_kernels" "[bf16]" \
      > "/tmp/sanitizer-$tool.log" 2>&1 || status=1
    grep -A12 FAILED "/tmp/sanitizer-$tool.log" | head -n 40  # a failed check, with its case
    tail -n 5 "/tmp/sanitizer-$tool.log"
  done
fi

# ra-bench and the PyTorch yardstick at each sequence length of RA_BENCH_TS
# (default: the seeds' T = 1024), back to back in the same call.
for T in ${RA_BENCH_TS:-1024}; do
  if [ -x "$root/.device/cuda-h100/ra-bench" ]; then
    echo "== ra-bench (cuda-h100 build), B8 H12 T$T D64"
    "$root/.device/cuda-h100/ra-bench" --T "$T" --out "$OUT/ra-bench-T$T" ${RA_BENCH_ARGS:-} 2>&1 || status=1
    [ -n "${RA_PLOT:-}" ] && { python3 "$root/scripts/plot_bench.py" "$OUT/ra-bench-T$T.h5" || true; }
  fi
  echo "== PyTorch yardstick, same shape"
  PYTHONUNBUFFERED=1 python3 "$root/scripts/torch_yardstick.py" --T "$T" ${RA_TORCH_ARGS:-} --out "$OUT/torch-T$T.json" 2>&1 || status=1
done
exit $status
