#!/usr/bin/env bash
# Vulkan timing A/B on the GPU: ra-bench --vk-timing batched (new default:
# repetitions back to back in one submission) against each (one
# submit-and-wait per repetition), fp16 coopmat, B8 H12 D64, T 1024 / 4096,
# fwd and fwdbwd, two rounds alternating; PyTorch fp16 SDPA beside.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT
work=$(mktemp -d); tar xf .device/vulkan-cm2.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== binaries of git $(cat $d/git-rev); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
s0=$SECONDS
echo "== test_vulkan [timing],[pipeline-stats],[coopmat] (validation off)"
RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 timeout 150 $d/test_vulkan "[timing],[pipeline-stats],[coopmat]" 2>&1 | grep -v '^ra-vk pipeline' | tail -3
echo "== test_vulkan [timing] (validation on, RA_VK_NO_CM2=1)"
RA_VK_NO_CM2=1 timeout 100 $d/test_vulkan "[timing]" 2>&1 | tail -2
echo "($((SECONDS-s0)) s)"
rows=$OUT/rows.tsv; : > $rows
bench() {  # label timing T
  local log=$OUT/$1.log
  RA_VK_VALIDATION=0 timeout 150 $d/ra-bench --backend vulkan --dtypes half --variants sdpa_fused,ra_fused \
    --passes fwd,fwdbwd --B 8 --H 12 --T $3 --D 64 --reps 20 --warmup 5 --vk-timing $2 --out $OUT/$1 > $log 2>&1
  awk -v l="$1" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, $7}' $log >> $rows
}
for r in 1 2; do
  order="batched each"; [ $r = 2 ] && order="each batched"
  for tm in $order; do for T in 1024 4096; do bench "r$r-$tm-T$T" $tm $T; done; done
  echo "round $r done ($((SECONDS-s0)) s)"
done
for T in 1024 4096; do timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T$T.json 2>&1 | tail -2; done
echo "label variant pass median min max"; sort $rows | column -t
cp .device/vk4.sh $OUT/run.sh
cd $OUT && tar czf vk4-logs.tgz r*.log r*.h5 r*.json && rm -f r*.log r*.h5 r*.json
echo "($((SECONDS-s0)) s)"
