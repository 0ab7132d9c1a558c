#!/usr/bin/env bash
# GPT-2 training-step figures ON a GPU machine, over a staged CUDA build
# (scripts/stage-device.sh, which also carries the Brown shards in .device/data):
#   ra-train with each attention of RA_TRAIN_ATTN (default sdpa_fused ra_fused)
#   for RA_TRAIN_STEPS steps of RA_TRAIN_MODEL at B=8 T=1024, then PyTorch's
#   GPT-2 step (scripts/torch_gpt2_yardstick.py) in the same call. Prints the
#   median step time after warm-up, tokens/s, the phase split and the peak
#   device memory (sampled by nvidia-smi) of each run. RA_TRAIN_ARGS adds
#   ra-train options (e.g. --attention-precision bf16) and RA_TRAIN_TAG names
#   those runs' files. RA_TORCH_GPT2=0 skips the PyTorch step (when another
#   invocation in the same call runs it).
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
preset=${RA_PRESET:-cuda-h100}
train="$root/.device/$preset/ra-train"
model=${RA_TRAIN_MODEL:-gpt2-124m}
steps=${RA_TRAIN_STEPS:-20}
status=0
for attn in ${RA_TRAIN_ATTN:-sdpa_fused ra_fused}; do
  echo "== ra-train $model --attention $attn ${RA_TRAIN_ARGS:-}, B=8 T=1024, $steps steps"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 > "/tmp/mem-$attn.txt" &
  smi=$!
  "$train" --model "$model" --attention "$attn" --batch 8 --context 1024 --steps "$steps" \
    --eval-every 1000 --val-batches 1 --checkpoint-every 0 --no-attention-timing --quiet \
    --train "$root/.device/data/brown_train_000000.bin" --val "$root/.device/data/brown_val_000000.bin" \
    --out "$OUT/train-$attn${RA_TRAIN_TAG:-}.h5" ${RA_TRAIN_ARGS:-} 2>&1 | tail -n 3 || status=1
  kill $smi 2>/dev/null
  rm -f "$OUT/train-$attn${RA_TRAIN_TAG:-}.ckpt.h5"
  python3 - "$OUT/train-$attn${RA_TRAIN_TAG:-}.h5" "/tmp/mem-$attn.txt" <<'PY'
import statistics, sys
import h5py
f = h5py.File(sys.argv[1], "r")
t = f["train"]
n = int(t.attrs["rows"])
col = lambda name: t[name][:n]
skip = min(5, n - 1)  # warm-up steps
ms = [a + b + c for a, b, c in zip(col("forward_ms"), col("backward_ms"), col("optimizer_ms"))][skip:]
med = statistics.median(ms)
mem = max((int(x) for x in open(sys.argv[2]).read().split() if x.strip().isdigit()), default=0)
print(f"  {f.attrs['device_name']}: median {med:.1f} ms/step over steps {skip + 1}..{n} "
      f"(forward {statistics.median(col('forward_ms')[skip:]):.1f}, backward "
      f"{statistics.median(col('backward_ms')[skip:]):.1f}, optimizer "
      f"{statistics.median(col('optimizer_ms')[skip:]):.1f}), "
      f"{8 * 1024 / (med * 1e-3):,.0f} tokens/s ({statistics.median(col('tokens_per_s')[skip:]):,.0f} with "
      f"data loading), loss {col('loss')[0]:.3f} -> {col('loss')[-1]:.3f}, "
      f"peak device memory ~{mem / 1024:.1f} GiB (nvidia-smi)")
PY
done
[ "${RA_TORCH_GPT2:-1}" = 0 ] && exit $status
echo "== PyTorch GPT-2 step, same shape"
PYTHONUNBUFFERED=1 python3 "$root/scripts/torch_gpt2_yardstick.py" ${RA_TORCH_GPT2_ARGS:-} --out "$OUT/torch-gpt2.json" 2>&1 || status=1
exit $status
