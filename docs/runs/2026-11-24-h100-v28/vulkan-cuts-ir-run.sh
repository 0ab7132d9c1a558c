#!/usr/bin/env bash
# v28 call 2: the driver's internal representations of the coopmat kernels
# (RA_VK_PIPELINE_IR), and fwd_cm's staging skeleton split: CUT=4 (loads,
# stores, barriers), 8 (loads only), 9 (stores only) beside the real kernel,
# two rounds, T=4096; test_vulkan "[cut]" on the H100.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs $OUT/ir
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_PIPELINE_IR=$OUT/ir RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half \
  --variants sdpa_fused,ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/ir 2>&1 | grep "ra-vk pipeline" | sed 's/Stack Size = 0, //' | cut -c1-220 | head -40
ls -la $OUT/ir | head -30; du -sh $OUT/ir
RA_VK_VALIDATION=0 timeout 200 $d/test_vulkan "[cut]" > $OUT/logs/test-cut.log 2>&1; echo "test_vulkan [cut] rc $? $(tail -2 $OUT/logs/test-cut.log | head -1) ($((SECONDS - t0)) s)"
rows=$OUT/rows.tsv; : > $rows
bench() {  # label T [env...]
  local l=$1 T=$2; shift 2
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes fwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
for r in 1 2; do
  for c in 0 4 8 9; do bench r$r-T4096-cut$c 4096 RA_VK_CUT=$c; done
done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,70)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk14.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
