#!/usr/bin/env bash
# fwd_cm's row statistics in registers (RA_VK_ROWSTATS=1, default) against
# shared memory (0): the real kernel's tests, then T=4096 fwd A/B.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT
work=$(mktemp -d); tar xf .device/vulkan-cm2.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== binaries of git $(cat $d/git-rev); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
s0=$SECONDS
echo "== test_vulkan: the real coopmat forward on every shape (rowstats default), and [rowstats]"
RA_VK_VALIDATION=0 RA_VK_TEST_VERBOSE=1 timeout 80 $d/test_vulkan "Vulkan: coopmat forward matches the float64 reference*","[rowstats]" > $OUT/tests.log 2>&1
echo "rc=$? ($((SECONDS-s0)) s)"; grep -E 'coopmat fp16-storage prefetch.* / ' $OUT/tests.log | head -4 | cut -c1-200; tail -2 $OUT/tests.log
rows=$OUT/rows.tsv; : > $rows
for r in 1 2; do
  for rs in 1 0; do
    [ $((SECONDS - s0)) -gt 150 ] && break 2
    l=r$r-rowstats$rs
    RA_VK_VALIDATION=0 RA_VK_ROWSTATS=$rs timeout 60 $d/ra-bench --backend vulkan --dtypes half --variants sdpa_fused,ra_fused \
      --passes fwd --B 8 --H 12 --T 4096 --D 64 --reps 20 --warmup 5 --out $OUT/$l > $OUT/$l.log 2>&1
    awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $5, $6, $7, t}' $OUT/$l.log | tee -a $rows
  done
done
echo "($((SECONDS-s0)) s)"
cp .device/vk5.sh $OUT/run.sh
cd $OUT && tar czf vk5-logs.tgz r*.log r*.h5 tests.log && rm -f r*.log r*.h5 r*.json tests.log
