#!/usr/bin/env bash
# Tuning run ON a GPU machine, over a staged CUDA build (scripts/stage-device.sh):
#   1. times every compiled tensor-core candidate (kernel_traits.hpp:
#      forward_candidate in fwd rows, backward_candidate in fwdbwd rows) for
#      SDPA and RA in bf16 at each T of RA_TUNE_TS;
#      every candidate is held to the float64 reference by the test suite
#      (test_kernels "[bf16]") before its figures mean anything;
#   2. with RA_NCU=1, profiles one forward+backward of each fused kernel with
#      Nsight Compute (speed of light, occupancy, launch stats, warp stalls).
# Then put the fastest candidate of each kind into tensor_core_traits for this
# GPU's architecture -- that is how the sm_90 entry was chosen, and how to
# tune an sm_86 (A10G) or any other GPU: stage its preset and run this there.
#   RA_PRESET=cuda-a10g OUT=/tmp/out bash scripts/device-tune.sh
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
preset=${RA_PRESET:-cuda-h100}
bench="$root/.device/$preset/ra-bench"
[ -x "$bench" ] || bench="$root/build/$preset/experiments/ra-bench"
[ -x "$bench" ] || { echo "device-tune: no ra-bench for $preset (stage or build it first)"; exit 1; }
status=0
help=$("$bench" --help | tr -s ' \n' ' ')
nf=$(sed -n 's/.*forward ones (0\.\.\([0-9]*\)).*/\1/p' <<<"$help")
nb=$(sed -n 's/.*backward ones (0\.\.\([0-9]*\)).*/\1/p' <<<"$help")
for T in ${RA_TUNE_TS:-1024 4096}; do
  echo "== forward candidates 0..$nf and backward candidates 0..$nb, bf16, B8 H12 T$T D64"
  "$bench" --T "$T" --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwd \
    --tc-candidates "$(seq -s, 0 "${nf:-0}")" --out "$OUT/tune-T$T" 2>&1 | sed -n '/^variant/,$p' || status=1
  "$bench" --T "$T" --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwdbwd \
    --tc-candidates "$(seq -s, 0 "${nb:-0}")" --out "$OUT/tune-bwd-T$T" 2>&1 | sed -n '/^variant/,$p' || status=1
  rm -f "$OUT/tune-T$T.json" "$OUT/tune-bwd-T$T.json"
done
if [ -n "${RA_NCU:-}" ]; then
  echo "== ncu: one forward+backward of sdpa_fused and ra_fused (bf16, T=1024) -> $OUT/ncu.txt"
  ncu --clock-control none --kernel-name-base demangled -k 'regex:tc::' -c 6 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    "$bench" --T 1024 --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwdbwd --reps 1 \
    --warmup 0 --out /tmp/ra-ncu-run > "$OUT/ncu.txt" 2>&1 || status=1
  grep -E "Forward<|Backward(Q|KV)<|Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy" "$OUT/ncu.txt" | sed 's/(anonymous namespace):://; s/Kokkos::Impl::cuda_parallel_launch_local_memory<Kokkos::Impl::ParallelFor<ra::kk::detail::tc:://' | cut -c1-150
fi
exit $status
