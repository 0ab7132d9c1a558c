#!/usr/bin/env bash
# v27c: fwd_cm's RA logit blocks start from the staged bias rows (the
# tensor cores add the bias); 128-row tiles for RA only. ra-bench = working
# tree, ra-bench-base = call 2's (v27b). Then the timing cuts of fwd_cm.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$d/lib:/usr/local/cuda/lib64:$cublas_dir:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
t0=$SECONDS
for rows in 128; do
RA_VK_CM_ROWS=$rows RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
  --variants sdpa_fused,ra_fused --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats$rows 2>&1 | grep "ra-vk pipeline" | grep _cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
done
RA_VK_VALIDATION=0 timeout 220 $d/test_vulkan "[coopmat]~[cut]" > $OUT/logs/test-coopmat.log 2>&1; echo "[coopmat]~[cut] rc $? $(tail -2 $OUT/logs/test-coopmat.log | head -1) ($((SECONDS - t0)) s)"
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary T [env...]
  local l=$1 bin=$2 T=$3; shift 3
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$bin --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
for r in 1 2; do
  bins="ra-bench ra-bench-base"; [ $r = 2 ] && bins="ra-bench-base ra-bench"
  for b in $bins; do bench r$r-T4096-$b $b 4096 X=1; done
  [ $r = 1 ] && for b in $bins; do bench r1-T1024-$b $b 1024 X=1; done
  echo "round $r at $((SECONDS - t0)) s"
done
cuts() {  # label binary T [env...]
  local l=$1 bin=$2 T=$3; shift 3
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$bin --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
for c in 0 1 2 3 4 5 6 7; do cuts cut$c-T4096 ra-bench 4096 RA_VK_CUT=$c; done
echo "cuts at $((SECONDS - t0)) s"
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk3.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
