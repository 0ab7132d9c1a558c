#!/usr/bin/env bash
# v28 call 6: per-column values read once for element pairs (CM_PAIRED:
# fwd_cm's bias, bwd_cm's streamed lse / Delta / bias): the whole
# test_vulkan, registers, then ra-bench A/B against da49dcf (ra-bench-base),
# two rounds after a warm-up round.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
RA_VK_VALIDATION=0 timeout 300 $d/test_vulkan > $OUT/logs/test-all.log 2>&1; echo "test_vulkan (all) rc $? $(tail -2 $OUT/logs/test-all.log | head -1) ($((SECONDS - t0)) s)"
grep -B3 -A14 FAILED $OUT/logs/test-all.log | head -30
RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
  --variants sdpa_fused,ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats 2>&1 | grep "ra-vk pipeline" | grep _cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary T
  local l=$1 bin=$2 T=$3
  RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$bin --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  echo "$l rc $?" >> $OUT/logs/bench-rc.txt
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r0-warm ra-bench 4096
for r in 1 2; do
  bench r$r-T4096-base ra-bench-base 4096
  bench r$r-T4096-new ra-bench 4096
done
bench r1-T1024-new ra-bench 1024
bench r1-T1024-base ra-bench-base 1024
cat $OUT/logs/bench-rc.txt | tr '\n' ' '; echo
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk18.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
