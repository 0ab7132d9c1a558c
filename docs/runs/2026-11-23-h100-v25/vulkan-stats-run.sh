#!/usr/bin/env bash
# Device call 2 of this session: the new fwd_cm staging's tests on the GPU,
# the driver's pipeline statistics (RA_VK_PIPELINE_STATS=1) for every
# Vulkan forward/backward kernel at B8 H12 D64, and the cuda-a10g suite.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT
work=$(mktemp -d); tar xf .device/vulkan-cm2.tar.xz -C $work; d=$work/vulkan-cm2
tar xJf .device/a10g.txz -C $work
echo "== binaries of git $(cat $d/git-rev); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
s0=$SECONDS
echo "== cuda-a10g test_kernels (compute_86 PTX, JIT on this GPU)"
timeout 400 $work/a10g/test_kernels > $OUT/a10g-test_kernels.log 2>&1; echo "rc=$?"; tail -3 $OUT/a10g-test_kernels.log; echo "($((SECONDS-s0)) s)"
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== test_vulkan, whole file, validation on"
timeout 200 $d/test_vulkan > $OUT/test_vulkan-all.log 2>&1; echo "rc=$?"; grep -E '^test_vulkan:|passed|failed|FAILED' $OUT/test_vulkan-all.log | head; echo "($((SECONDS-s0)) s)"
for pf in 1 0; do
  echo "== test_vulkan [coopmat] validation off, RA_VK_PREFETCH=$pf"
  RA_VK_VALIDATION=0 RA_VK_PREFETCH=$pf timeout 150 $d/test_vulkan "[coopmat]" > $OUT/test_vulkan-coopmat-pf$pf.log 2>&1; echo "rc=$?"; tail -2 $OUT/test_vulkan-coopmat-pf$pf.log
done
echo "== test_vulkan [pipeline-stats]"
RA_VK_VALIDATION=0 timeout 60 $d/test_vulkan "[pipeline-stats]" 2>&1 | tail -4
echo "($((SECONDS-s0)) s)"
for fwd in coopmat coopmat2 tiled; do
  for cut in 0 4; do
    [ $fwd != coopmat ] && [ $cut != 0 ] && continue
    echo "== pipeline statistics: RA_VK_FORWARD=$fwd RA_VK_CUT=$cut"
    RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=$fwd RA_VK_CUT=$cut timeout 120 $d/ra-bench --backend vulkan --dtypes half \
      --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T 1024 --D 64 --reps 3 --warmup 1 \
      --out $OUT/stats-$fwd-cut$cut > $OUT/stats-$fwd-cut$cut.log 2>&1
    grep 'ra-vk pipeline' $OUT/stats-$fwd-cut$cut.log | cut -c1-600
    sed -n '/^variant/,$p' $OUT/stats-$fwd-cut$cut.log | head -6 | cut -c1-200
  done
done
echo "($((SECONDS-s0)) s)"
cp .device/vk2.sh $OUT/run.sh
