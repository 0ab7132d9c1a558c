#!/usr/bin/env bash
# v26b: --vk-warmup-ms 1000, three processes at T=1024 (the rows 300 ms did
# not always settle in call 6).
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
rows=$OUT/rows.tsv; : > $rows
for r in 1 2 3; do
  RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T 1024 --D 64 --reps 20 --warmup 5 --out $OUT/logs/r$r > $OUT/logs/r$r.log 2>&1
  awk -v l="r$r-T1024-w1000" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{printf "%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6}' $OUT/logs/r$r.log >> $rows
done
cat $rows; cp .device/vk12.sh $OUT/run.sh; tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
