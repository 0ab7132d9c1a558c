#!/usr/bin/env bash
# v28 call 8: bwd_delta with 16-byte loads: the whole test_vulkan, then
# ra-bench A/B against 2c5da09 (ra-bench-base) after a warm-up round, and
# the backward split (RA_VK_BWD_CUT) with the new build.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
RA_VK_VALIDATION=0 timeout 300 $d/test_vulkan > $OUT/logs/test-all.log 2>&1; echo "test_vulkan (all) rc $? $(tail -2 $OUT/logs/test-all.log | head -1) ($((SECONDS - t0)) s)"
grep -B3 -A14 FAILED $OUT/logs/test-all.log | head -30
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary T [env]
  local l=$1 bin=$2 T=$3; shift 3
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$bin --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r0-warm ra-bench 4096 X=1
bench r1-T4096-base ra-bench-base 4096 X=1
bench r1-T4096-new ra-bench 4096 X=1
bench r2-T4096-new ra-bench 4096 X=1
bench r2-T4096-base ra-bench-base 4096 X=1
bench r1-T4096-new-bwdcut1 ra-bench 4096 RA_VK_BWD_CUT=1
bench r1-T4096-new-bwdcut2 ra-bench 4096 RA_VK_BWD_CUT=2
bench r1-T1024-new ra-bench 1024 X=1
bench r1-T1024-base ra-bench-base 1024 X=1
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,40)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk20.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
