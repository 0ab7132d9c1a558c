#!/usr/bin/env bash
# v28 call 4: learn the H100's accumulator row split (RA_VK_CM_SELB: every
# 8-bit mask with 4 bits set and bit 0 clear; ra-bench exits non-zero on the
# NaN outputs of a wrong one), then with it: the whole test_vulkan, ra-bench
# A/B against 59d5ddb (ra-bench-base), Kokkos bf16 and PyTorch fp16 SDPA.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
cublas_dir=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null || true)
export LD_LIBRARY_PATH="$d/lib:/usr/local/cuda/lib64:$cublas_dir:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader) rev $(cat $d/git-rev | tr '\n' ' ')"
t0=$SECONDS
found=""
for m in $(seq 2 2 254); do
  n=0; for b in 0 1 2 3 4 5 6 7; do n=$((n + (m >> b & 1))); done; [ $n = 4 ] || continue
  if RA_VK_CM_SELB=$m RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 30 $d/ra-bench --backend vulkan --dtypes half \
      --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --B 1 --H 1 --T 64 --D 64 --reps 1 --warmup 0 --vk-warmup-ms 0 \
      --out $OUT/logs/selb-$m > $OUT/logs/selb-$m.log 2>&1; then found="$found $m"; fi
done
echo "row splits with finite outputs:$found ($((SECONDS - t0)) s)"
export RA_VK_CM_SELB=$(echo $found | awk '{print $1}')
RA_VK_VALIDATION=0 timeout 300 $d/test_vulkan > $OUT/logs/test-all.log 2>&1; echo "test_vulkan (all, RA_VK_CM_SELB=$RA_VK_CM_SELB) rc $? $(tail -2 $OUT/logs/test-all.log | head -1) ($((SECONDS - t0)) s)"
grep -B3 -A14 FAILED $OUT/logs/test-all.log | head -30
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary T passes [env...]
  local l=$1 bin=$2 T=$3 passes=$4; shift 4
  env "$@" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/$bin --backend vulkan --dtypes half --vk-warmup-ms 1000 \
    --variants sdpa_fused,ra_fused --passes $passes --B 8 --H 12 --T $T --D 64 --reps 20 --warmup 5 --out $OUT/logs/$l > $OUT/logs/$l.log 2>&1
  echo "$l rc $?" >> $OUT/logs/bench-rc.txt
  awk -v l="$l" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $OUT/logs/$l.log >> $rows
}
bench r1-T4096-base ra-bench-base 4096 fwd,fwdbwd X=1
bench r1-T4096-new ra-bench 4096 fwd,fwdbwd X=1
bench r2-T4096-new ra-bench 4096 fwd,fwdbwd X=1
bench r2-T4096-base ra-bench-base 4096 fwd,fwdbwd X=1
bench r1-T1024-new ra-bench 1024 fwd,fwdbwd X=1
bench r1-T1024-base ra-bench-base 1024 fwd,fwdbwd X=1
cat $OUT/logs/bench-rc.txt | tr '\n' ' '; echo
for T in 4096 1024; do
  timeout 60 $d/ra-bench-cuda --T $T --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --out $OUT/logs/kokkos-bf16-T$T > $OUT/logs/kokkos-bf16-T$T.log 2>&1
  grep -E "^(sdpa|ra)_fused " $OUT/logs/kokkos-bf16-T$T.log | awk -v T=$T '{print "kokkos T=" T, $1, $2, $5, $6}'
  timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T$T.json 2>&1 | tail -2 | sed "s/^/torch T=$T /"
done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,60)}'
echo "total $((SECONDS - t0)) s"
cp .device/vk16.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
