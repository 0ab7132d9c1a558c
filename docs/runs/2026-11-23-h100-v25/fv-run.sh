set -u
source scripts/device-env.sh
d=.device/cuda-h100
F=$OUT/fv; mkdir -p $F
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader; echo "rev $(cat .device/rev)"
show() { sed -n '/^variant/,$p' | grep -v "^wrote\|^$" | awk '{print $1,$2,$3,$4,$5,$6,$9,$12,$13,$14,$15,$16,$17,$18}'; }
s0=$SECONDS
echo "== test_kernels"; timeout 220 $d/test_kernels 2>&1 | tail -2; echo "($((SECONDS-s0)) s)"
echo "== test_model"; timeout 120 $d/test_model 2>&1 | tail -2; echo "($((SECONDS-s0)) s)"
echo "== test_reference, test_run_store"; timeout 30 $d/test_reference 2>&1 | tail -2; timeout 30 $d/test_run_store 2>&1 | tail -2
echo "== racecheck, memcheck: window test"
timeout 90 compute-sanitizer --tool racecheck $d/test_kernels "the window kernels match the reference over many tiles" 2>&1 | tail -2
timeout 60 compute-sanitizer --tool memcheck $d/test_kernels "the window kernels match the reference over many tiles" 2>&1 | tail -2
echo "($((SECONDS-s0)) s)"
for T in 1024 4096; do
  timeout 60 $d/ra-bench --T $T --dtypes bf16 --variants sdpa_fused,ra_fused,ra_window --passes fwd,fwdbwd --out $F/ra-bench-bf16-T$T 2>&1 | show
  timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes bfloat16 --variants torch_sdpa --out $F/torch-T$T.json 2>&1 | tail -3
done
echo "($((SECONDS-s0)) s)"
cp .device/fv.sh $F/run.sh
cd $OUT && tar czf /tmp/fv.tgz fv && rm -rf fv && mv /tmp/fv.tgz $OUT/
