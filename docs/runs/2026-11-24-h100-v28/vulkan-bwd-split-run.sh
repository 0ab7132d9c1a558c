#!/usr/bin/env bash
# v28 call 7: the backward's time split between its two kernels
# (RA_VK_BWD_CUT=1: no key-owned kernel, 2: no query-owned one), T=4096 in
# two rounds after a warm-up round, T=1024 once.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
rows=$OUT/rows.tsv; : > $rows
bench() {  # label T cut
  local l=$1 T=$2 c=$3
  RA_VK_BWD_CUT=$c RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r0-warm 4096 0
for r in 1 2; do for c in 0 1 2; do bench r$r-T4096-bwdcut$c 4096 $c; done; done
for c in 0 1 2; do bench r1-T1024-bwdcut$c 1024 $c; done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,40)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk19.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
