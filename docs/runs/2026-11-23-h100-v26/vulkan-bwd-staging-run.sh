#!/usr/bin/env bash
# v26b: bwd_cm's staged tiles as 16-byte chunks (uvec4, CM_PUT16 / CM_LOAD4).
# ra-bench-base = 4a70ff9 (v26a), ra-bench = working tree.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
t0=$SECONDS
RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
  --variants sdpa_fused,ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats 2>&1 | grep "ra-vk pipeline" | grep bwd_cm | sed 's/Binary Size = [0-9]*, Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
RA_VK_VALIDATION=0 timeout 200 $d/test_vulkan "[coopmat]~[cut]" > $OUT/logs/test-coopmat.log 2>&1; echo "[coopmat]~[cut] rc $? $(tail -2 $OUT/logs/test-coopmat.log | head -1) ($((SECONDS - t0)) s)"
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary passes T
  RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$2 --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes $3 --B 8 --H 12 --T $4 --D 64 --reps 20 --warmup 5 --out $OUT/logs/$1 > $OUT/logs/$1.log 2>&1
  awk -v l="$1" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$1.log >> $rows
}
for r in 1 2; do
  [ $r = 2 ] && [ $((SECONDS - t0)) -gt 230 ] && break
  bins="ra-bench-base ra-bench"; [ $r = 2 ] && bins="ra-bench ra-bench-base"
  for bin in $bins; do bench r$r-T4096-$bin $bin fwdbwd 4096; done
  [ $r = 1 ] && for bin in $bins; do bench r$r-T1024-$bin $bin fwdbwd 1024; done
  echo "round $r at $((SECONDS - t0)) s"
done
timeout 60 python3 scripts/torch_yardstick.py --T 4096 --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T4096.json 2>&1 | tail -2
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,40)}'
cp .device/vk11.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
