#!/usr/bin/env bash
# v27f: D=128 (RA's 64 x 32 tiles, SDPA's 64 x 64): the backward's prefetch
# on (default) and off (RA_VK_PREFETCH=0, which also turns the forward's off).
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
t0=$SECONDS
for x in 1 0; do
RA_VK_PREFETCH=$x RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
  --variants sdpa_fused,ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 128 --reps 2 --warmup 1 --out $OUT/logs/stats$x 2>&1 | grep "ra-vk pipeline" | grep _cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
done
rows=$OUT/rows.tsv; : > $rows
bench() {  # label T [env...]
  local l=$1 T=$2; shift 2
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $T --D 128 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r1-D128-T4096-prefetch 4096 RA_VK_PREFETCH=1
bench r1-D128-T4096-noprefetch 4096 RA_VK_PREFETCH=0
bench r2-D128-T4096-noprefetch 4096 RA_VK_PREFETCH=0
bench r2-D128-T4096-prefetch 4096 RA_VK_PREFETCH=1
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk8.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
