#!/usr/bin/env bash
# v28 call 5: the committed default row split (0xF0) through the coopmat
# tests, then occupancy A/Bs of the new forward by environment only:
# 32-key tiles, no prefetch, both, and RA on 64-row tiles; registers from the
# driver; T=4096 forward, rounds repeated (first round discarded: clocks).
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
RA_VK_VALIDATION=0 timeout 250 $d/test_vulkan "[coopmat]~[cut],[rowstats]" > $OUT/logs/test-cm.log 2>&1; echo "test_vulkan [coopmat]~[cut],[rowstats] rc $? $(tail -2 $OUT/logs/test-cm.log | head -1) ($((SECONDS - t0)) s)"
grep -B3 -A14 FAILED $OUT/logs/test-cm.log | head -30
for e in X=1 RA_VK_CM_KEYS=32 RA_VK_PREFETCH=0 "RA_VK_CM_KEYS=32 RA_VK_PREFETCH=0" RA_VK_CM_ROWS=64; do
  echo "-- stats $e"
  env $e RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats 2>&1 | grep "ra-vk pipeline" | grep fwd_cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
done
rows=$OUT/rows.tsv; : > $rows
bench() {  # label T passes [env...]
  local l=$1 T=$2 passes=$3; shift 3
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes $passes --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r0-warm 4096 fwd X=1
for r in 1 2; do
  bench r$r-default 4096 fwd X=1
  bench r$r-keys32 4096 fwd RA_VK_CM_KEYS=32
  bench r$r-noprefetch 4096 fwd RA_VK_PREFETCH=0
  bench r$r-keys32-noprefetch 4096 fwd RA_VK_CM_KEYS=32 RA_VK_PREFETCH=0
  bench r$r-rows64 4096 fwd RA_VK_CM_ROWS=64
done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk17.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
