#!/usr/bin/env bash
# v28 call 1: fwd_cm's direct fragment loads (RA_VK_DIRECT=1) against the
# staged prefetch loop: driver statistics, the whole test_vulkan with direct
# loads on the H100, then ra-bench A/B (alternating) beside Kokkos bf16 and
# PyTorch fp16 SDPA, same call.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$d/lib:/usr/local/cuda/lib64:$cublas_dir:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
for dir in 0 1; do
  echo "-- stats RA_VK_DIRECT=$dir"
  RA_VK_DIRECT=$dir RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat timeout 60 $d/ra-bench --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes fwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out $OUT/logs/stats$dir 2>&1 | grep "ra-vk pipeline" | grep fwd_cm | sed 's/Stack Size = 0, //' | awk '{for(i=1;i<=NF;i++) if ($i ~ /^6871947/) $i = $i - 68719476736; print}' | cut -c16-
done
RA_VK_DIRECT=1 RA_VK_VALIDATION=0 timeout 300 $d/test_vulkan > $OUT/logs/test-all-direct.log 2>&1; echo "test_vulkan (all, RA_VK_DIRECT=1) rc $? $(tail -2 $OUT/logs/test-all-direct.log | head -1) ($((SECONDS - t0)) s)"
grep -B3 -A12 FAILED $OUT/logs/test-all-direct.log | head -60
rows=$OUT/rows.tsv; : > $rows
bench() {  # label T [env...]
  local l=$1 T=$2; shift 2
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r1-T4096-staged 4096 RA_VK_DIRECT=0
bench r1-T4096-direct 4096 RA_VK_DIRECT=1
bench r2-T4096-direct 4096 RA_VK_DIRECT=1
bench r2-T4096-staged 4096 RA_VK_DIRECT=0
bench r1-T1024-staged 1024 RA_VK_DIRECT=0
bench r1-T1024-direct 1024 RA_VK_DIRECT=1
for T in 4096 1024; do
  timeout 60 $d/ra-bench-cuda --T $T --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --out $OUT/logs/kokkos-bf16-T$T > $OUT/logs/kokkos-bf16-T$T.log 2>&1
  grep -E "^(sdpa|ra)_fused " $OUT/logs/kokkos-bf16-T$T.log | awk -v T=$T '{print "kokkos T=" T, $1, $2, $5, $6}'
  timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T$T.json 2>&1 | tail -2 | sed "s/^/torch T=$T /"
done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk13.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
