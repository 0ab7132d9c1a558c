#!/usr/bin/env bash
# v27d: fwd_cm's prefetch two tiles deep (RA_VK_PREFETCH_DEPTH2=1) against
# one, same binary; [coopmat]~[cut] with it on.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
t0=$SECONDS
for x in 0 1; do
RA_VK_PREFETCH_DEPTH2=$x RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
  --variants sdpa_fused,ra_fused --passes fwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats$x 2>&1 | grep "ra-vk pipeline" | grep fwd_cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
done
RA_VK_PREFETCH_DEPTH2=1 RA_VK_VALIDATION=0 timeout 220 $d/test_vulkan "[coopmat]~[cut]" > $OUT/logs/test-coopmat.log 2>&1; echo "[coopmat]~[cut] depth 2: rc $? $(tail -2 $OUT/logs/test-coopmat.log | head -1) ($((SECONDS - t0)) s)"
rows=$OUT/rows.tsv; : > $rows
bench() {  # label T [env...]
  local l=$1 T=$2; shift 2
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
for r in 1 2; do
  xs="1 0"; [ $r = 2 ] && xs="0 1"
  for x in $xs; do bench r$r-T4096-depth$((x + 1)) 4096 RA_VK_PREFETCH_DEPTH2=$x; done
  for x in $xs; do bench r$r-T1024-depth$((x + 1)) 1024 RA_VK_PREFETCH_DEPTH2=$x; done
done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk6.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
