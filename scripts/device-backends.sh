#!/usr/bin/env bash
# Kokkos CUDA against Vulkan ON a GPU machine, over a staged CUDA build made
# with Vulkan (scripts/stage-device.sh; .device/nvidia_egl_icd.json beside it,
# see docs/vulkan.md for why the EGL entry point):
#   1. the same problem (fixed seed, B1 H2 T100 D64, fp32) through both
#      backends with --save-outputs, then scripts/ra-compare of the two files;
#   2. fp32 timings of both backends at the seeds' shape (B8 H12 D64) for
#      each T of RA_BACKENDS_TS, and PyTorch's fp32 SDPA in the same call.
# Files go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
preset=${RA_PRESET:-cuda-h100}
bench="$root/.device/$preset/ra-bench"
export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-$root/.device/nvidia_egl_icd.json}
status=0
small=(--B 1 --H 2 --T 100 --D 64 --variants sdpa_fused,ra_fused --passes fwdbwd --dtypes float --reps 3 --warmup 1
       --save-outputs --save-max 0)
echo "== same problem on both backends, then ra-compare"
"$bench" "${small[@]}" --backend kokkos --out "$OUT/outputs-cuda" > /dev/null 2>&1 || status=1
"$bench" "${small[@]}" --backend vulkan --out "$OUT/outputs-vulkan" > /dev/null 2>&1 || status=1
python3 "$root/scripts/ra-compare" "$OUT/outputs-cuda.h5" "$OUT/outputs-vulkan.h5" || status=1
for T in ${RA_BACKENDS_TS:-1024}; do
  for backend in kokkos vulkan; do
    echo "== ra-bench --backend $backend, fp32, B8 H12 T$T D64"
    "$bench" --T "$T" --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --dtypes float --backend "$backend" \
      --out "$OUT/bench-$backend-T$T" 2>&1 | sed -n '/^variant/,$p' || status=1
  done
  echo "== PyTorch SDPA fp32, same shape"
  python3 "$root/scripts/torch_yardstick.py" --T "$T" --dtypes float32 --variants torch_sdpa \
    --out "$OUT/torch-T$T.json" 2>&1 | tail -n 4 || status=1
done
rm -f "$OUT"/*.json.tmp
exit $status
