#!/usr/bin/env bash
# Vulkan fwd_cm shared staging A/B on the GPU: ra-bench-base (5bb03ff: 2-byte
# shared stores, Kf chunks row by row), ra-bench-u4 (16-byte stores, old
# chunk order), ra-bench (16-byte stores, Kf chunks half by half). Minima
# compared (bimodal medians). Run from the repo root on the device machine.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT
work=$(mktemp -d); tar xf .device/vulkan-cm2.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== binaries of git $(cat $d/git-rev); $(nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader)"
echo "== test_vulkan [coopmat] (new binary, validation off)"
RA_VK_VALIDATION=0 timeout 120 $d/test_vulkan "[coopmat]" 2>&1 | tail -3
echo "== test_vulkan [coopmat] RA_VK_PREFETCH=0"
RA_VK_VALIDATION=0 RA_VK_PREFETCH=0 timeout 120 $d/test_vulkan "[coopmat]" 2>&1 | tail -2
rows=$OUT/rows.tsv; : > $rows
bench() {  # label binary env... -- args
  local label=$1 bin=$2; shift 2; local envs=(); while [ "$1" != -- ]; do envs+=("$1"); shift; done; shift
  local log=$OUT/logs/$label.log; mkdir -p $OUT/logs
  env RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat "${envs[@]}" timeout 120 $d/$bin --backend vulkan --dtypes half \
    --variants sdpa_fused,ra_fused --passes ${PASSES:-fwd} --D 64 --reps 20 --warmup 5 "$@" --out $OUT/logs/$label > $log 2>&1
  awk -v l="$label" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $log >> $rows
}
t0=$SECONDS
for r in 1 2 3; do
  [ $((SECONDS - t0)) -gt ${BUDGET:-330} ] && break
  bins="ra-bench-base ra-bench-u4 ra-bench"; [ $((r % 2)) = 0 ] && bins="ra-bench ra-bench-u4 ra-bench-base"
  for bin in $bins; do
    for cut in 0 4; do bench "r$r-T4096-cut$cut-$bin" $bin RA_VK_CUT=$cut -- --B 8 --H 12 --T 4096; done
    bench "r$r-T1024-cut0-$bin" $bin -- --B 8 --H 12 --T 1024
  done
  echo "round $r done at $((SECONDS - t0)) s"
done
echo "== fwd+bwd, new binary, and the Kokkos-free PyTorch fp16 yardstick"
PASSES=fwd,fwdbwd bench "fb-T4096-ra-bench" ra-bench -- --B 8 --H 12 --T 4096
PASSES=fwd,fwdbwd bench "fb-T1024-ra-bench" ra-bench -- --B 8 --H 12 --T 1024
for T in 1024 4096; do timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T$T.json 2>&1 | tail -2; done
sort -t$'\t' -k1,1 $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,70)}'
echo "== minima per binary (T, cut, variant)"
awk -F'\t' '$1 ~ /^r[0-9]/{split($1,a,"-"); key=a[2]"-"a[3]"-"$2"-"$3; bin=a[4]; for(i=5;i<=length(a);i++) bin=bin"-"a[i]; k=key" "bin; if(!(k in m)||$5<m[k]) m[k]=$5} END{for(k in m) print k, m[k]}' $rows | sort
cp .device/vkst.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
