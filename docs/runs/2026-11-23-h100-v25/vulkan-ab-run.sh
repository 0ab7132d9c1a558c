#!/usr/bin/env bash
# Vulkan fwd_cm on the GPU: prefetch A/B, tile (occupancy) sweep, cut 0 vs 4,
# SM clocks logged beside. Run from the repo root on the device machine.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT
work=$(mktemp -d); tar xf .device/vulkan-cm2.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== binaries of git $(cat $d/git-rev); $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,utilization.gpu,clocks_event_reasons.active --format=csv -lms 250 > $OUT/clocks.csv 2>&1 &
smi=$!
for pf in 0 1; do
  echo "== test_vulkan [coopmat] RA_VK_PREFETCH=$pf"
  RA_VK_VALIDATION=0 RA_VK_PREFETCH=$pf timeout 90 $d/test_vulkan "[coopmat]" 2>&1 | tail -2
done
for g in 1 2; do
  echo "== test_vulkan [coopmat] RA_VK_GRID=$g"
  RA_VK_VALIDATION=0 RA_VK_GRID=$g timeout 90 $d/test_vulkan "[coopmat]" 2>&1 | tail -2
done
rows=$OUT/rows.tsv; : > $rows
t0=0
bench() {  # label env... -- args
  local label=$1; shift; local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  local log=$OUT/logs/$label.log; mkdir -p $OUT/logs
  env RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat "${envs[@]}" timeout 120 $d/ra-bench --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwd --D 64 --reps 20 --warmup 5 "$@" --out $OUT/logs/$label > $log 2>&1
  awk -v l="$label" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\n", l, $1, $5, $6, t}' $log >> $rows
}
for r in 1 2 3; do
  [ $((SECONDS - t0)) -gt ${BUDGET:-400} ] && break
  for grid in 0 1 2; do for cut in 0 4; do for pf in 0 1; do
    bench "r$r-T4096-grid$grid-cut$cut-pf$pf" RA_VK_CUT=$cut RA_VK_PREFETCH=$pf RA_VK_GRID=$grid -- --B 8 --H 12 --T 4096
  done; done; done
  for tile in 32 16; do for cut in 0 4; do
    bench "r$r-T4096-tile$tile-cut$cut-pf1" RA_VK_CUT=$cut -- --B 8 --H 12 --T 4096 --tile $tile
  done; done
  for cut in 0 4; do bench "r$r-T4096-B1-cut$cut-pf1" RA_VK_CUT=$cut -- --B 1 --H 12 --T 4096; done
  for pf in 0 1; do bench "r$r-T1024-cut0-pf$pf" RA_VK_PREFETCH=$pf -- --B 8 --H 12 --T 1024; done
  echo "round $r done at $((SECONDS - t0)) s"
done
kill $smi
cat $rows | awk -F'\t' '{print $1, $2, $3, $4, substr($5,1,60)}'
tar czf $OUT/vk-logs.tgz -C $OUT logs clocks.csv && rm -rf $OUT/logs
