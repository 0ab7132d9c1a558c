#!/usr/bin/env bash
# v26 A/B 2: element loops bounded by a pipeline constant (NEL = 256/SG).
# ra-bench-base = 5a16709, ra-bench = working tree; new also with RA_VK_PREFETCH=0.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
for v in "ra-bench-base 1" "ra-bench 1" "ra-bench 0"; do
  set -- $v
  RA_VK_PREFETCH=$2 RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/$1 --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats-$1-pf$2 2>&1 | grep "ra-vk pipeline" | sed 's/Binary Size = [0-9]*, Stack Size = 0, //' > $OUT/logs/stats-$1-pf$2.txt
  echo "-- $1 prefetch $2"; awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' $OUT/logs/stats-$1-pf$2.txt | grep -v "delta\|gate_grads"
done
echo "== test_vulkan [coopmat] new, validation off"
RA_VK_VALIDATION=0 timeout 150 $d/test_vulkan "[coopmat]" > $OUT/logs/test-coopmat.log 2>&1; echo "rc $?"; tail -2 $OUT/logs/test-coopmat.log
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary prefetch passes T
  local log=$OUT/logs/$1.log
  RA_VK_PREFETCH=$3 RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$2 --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes $4 --B 8 --H 12 --T $5 --D 64 --reps 20 --warmup 5 --out $OUT/logs/$1 > $log 2>&1
  awk -v l="$1" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $log >> $rows
}
t0=$SECONDS
for r in 1 2; do
  vs="ra-bench-base:1 ra-bench:1 ra-bench:0"; [ $r = 2 ] && vs="ra-bench:0 ra-bench:1 ra-bench-base:1"
  for v in $vs; do
    bin=${v%:*} pf=${v#*:}
    bench r$r-T4096-$bin-pf$pf $bin $pf fwd,fwdbwd 4096
    bench r$r-T1024-$bin-pf$pf $bin $pf fwd,fwdbwd 1024
  done
  echo "round $r at $((SECONDS - t0)) s"
done
for T in 1024 4096; do timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T$T.json 2>&1 | tail -2; done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
cp .device/vk7.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
