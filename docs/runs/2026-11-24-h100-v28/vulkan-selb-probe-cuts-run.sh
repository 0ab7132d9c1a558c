#!/usr/bin/env bash
# v28 call 3: the row split compiled in (CM_SELB) and fwd_cm's row sums in
# registers (no ones-matrix product): driver statistics, the whole
# test_vulkan, ra-bench A/B against 59d5ddb (ra-bench-base, alternating),
# and the cut breakdown of the new forward in two rounds, T=4096.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
  --variants sdpa_fused,ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats 2>&1 | grep "ra-vk pipeline" | grep _cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
RA_VK_VALIDATION=0 timeout 300 $d/test_vulkan > $OUT/logs/test-all.log 2>&1; echo "test_vulkan (all) rc $? $(tail -2 $OUT/logs/test-all.log | head -1) ($((SECONDS - t0)) s)"
grep -B3 -A14 FAILED $OUT/logs/test-all.log | head -40
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary T passes [env...]
  local l=$1 bin=$2 T=$3 passes=$4; shift 4
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$bin --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes $passes --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r1-T4096-base ra-bench-base 4096 fwd,fwdbwd X=1
bench r1-T4096-new ra-bench 4096 fwd,fwdbwd X=1
bench r2-T4096-new ra-bench 4096 fwd,fwdbwd X=1
bench r2-T4096-base ra-bench-base 4096 fwd,fwdbwd X=1
bench r1-T1024-base ra-bench-base 1024 fwd,fwdbwd X=1
bench r1-T1024-new ra-bench 1024 fwd,fwdbwd X=1
for r in 1 2; do
  for c in 0 1 2 3 4 6 7; do bench cut-r$r-T4096-c$c ra-bench 4096 fwd RA_VK_CUT=$c; done
done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk15.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
