#!/usr/bin/env bash
# v27e: with bwd_cm's prefetch, RA at 128-row tiles (default) against 64
# (RA_VK_CM_ROWS=64), forward and forward+backward; committed kernels (6211a0f).
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
t0=$SECONDS
RA_VK_CM_ROWS=64 RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
  --variants ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats 2>&1 | grep "ra-vk pipeline" | grep _cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
rows=$OUT/rows.tsv; : > $rows
bench() {  # label T [env...]
  local l=$1 T=$2; shift 2
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half \
    --variants ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
for r in 1 2; do
  rs="128 64"; [ $r = 2 ] && rs="64 128"
  for x in $rs; do bench r$r-T4096-rows$x 4096 RA_VK_CM_ROWS=$x; done
done
for x in 128 64; do bench r1-T1024-rows$x 1024 RA_VK_CM_ROWS=$x; done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk7.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
