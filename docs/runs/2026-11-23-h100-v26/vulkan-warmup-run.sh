#!/usr/bin/env bash
# v26: ra-bench --vk-warmup-ms (default 300) against 0 (the old warm-up),
# each in its own process, T=4096 then 1024; PyTorch in the same call.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
rows=$OUT/rows.tsv; : > $rows
bench() {  # label warmup-ms T
  local log=$OUT/logs/$1.log
  RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half --vk-warmup-ms $2 \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $3 --D 64 --reps 20 --warmup 5 --out $OUT/logs/$1 > $log 2>&1
  awk -v l="$1" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $log >> $rows
}
t0=$SECONDS
for r in 1 2; do
  for w in 300 0; do bench r$r-T4096-w$w $w 4096; done
  for w in 300 0; do bench r$r-T1024-w$w $w 1024; done
  echo "round $r at $((SECONDS - t0)) s"
done
for T in 1024 4096; do timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T$T.json 2>&1 | tail -2; done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,40)}'
cp .device/vk10.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
