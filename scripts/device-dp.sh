#!/usr/bin/env bash
# Data-parallel proof ON a GPU machine with 2+ GPUs, over a staged CUDA build
# (scripts/stage-device.sh): GPT-2 124M, bf16 matmuls + attention, T=1024.
#   1. scaling: 1 rank at B=8 vs N ranks at B=8 each (RA_DP_RANKS, default
#      every GPU): efficiency = tokens/s on N / (N x tokens/s on 1);
#   2. the same curve: 1 rank at B=8 vs 2 ranks at B=4 each (same global
#      batch and tokens), step by step, beside two 1-rank runs of different
#      seeds (the noise yardstick the issue asks for).
# Medians over steps 6.. of each run; files go to $OUT.
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
preset=${RA_PRESET:-cuda-h100}
train="$root/.device/$preset/ra-train"
gpus=$(nvidia-smi -L | grep -c '^GPU')
ranks=${RA_DP_RANKS:-$gpus}
steps=${RA_DP_STEPS:-30}
attn=${RA_DP_ATTN:-sdpa_fused}
common=(--model gpt2-124m --attention "$attn" --context 1024 --steps "$steps" --eval-every 1000 --val-batches 1
        --checkpoint-every 0 --no-attention-timing --quiet --attention-precision bf16 --matmul-precision bf16
        --train "$root/.device/data/brown_train_000000.bin" --val "$root/.device/data/brown_val_000000.bin")
nvidia-smi --query-gpu=name --format=csv,noheader | sort | uniq -c
status=0
run() {  # name ranks batch [extra...]
  local name=$1 n=$2 b=$3; shift 3
  echo "== $name: $n rank(s) x B=$b"
  if [ "$n" -eq 1 ]; then
    "$train" "${common[@]}" --batch "$b" --out "$OUT/$name.h5" "$@" 2>&1 | tail -n 2 || status=1
  else
    bash "$root/scripts/launch-dp.sh" "$n" "$train" "${common[@]}" --batch "$b" --out "$OUT/$name.h5" "$@" 2>&1 | tail -n 3 || status=1
  fi
  rm -f "$OUT/$name.ckpt.h5"
}
run dp1-b8 1 8
run dp$ranks-b8 "$ranks" 8
run dp1-b8-seed2 1 8 --seed 7
run dp2-b4 2 4
python3 - "$OUT" "$ranks" <<'PY'
import statistics, sys
import h5py, numpy as np
out, n = sys.argv[1], int(sys.argv[2])
def load(name):
    f = h5py.File(f"{out}/{name}.h5", "r"); t = f["train"]; k = int(t.attrs["rows"])
    ms = (t["forward_ms"][:k] + t["backward_ms"][:k] + t["optimizer_ms"][:k])[5:]
    return dict(loss=t["loss"][:k], ms=statistics.median(ms), tokens=int(t["tokens"][k - 1]), steps=k,
                ranks=f.attrs.get("data_parallel_ranks", "1"), device=f.attrs["device_name"])
one, many = load("dp1-b8"), load(f"dp{n}-b8")
tps1, tpsn = 8 * 1024 / (one["ms"] * 1e-3), n * 8 * 1024 / (many["ms"] * 1e-3)
print(f"{one['device']}: 1 rank {one['ms']:.1f} ms/step ({tps1:,.0f} tokens/s); {n} ranks {many['ms']:.1f} ms/step "
      f"({tpsn:,.0f} tokens/s, {many['tokens']} tokens in {many['steps']} steps, ranks attr {many['ranks']}); "
      f"scaling efficiency {tpsn / (n * tps1):.3f}")
a, b, s2 = load("dp1-b8")["loss"], load("dp2-b4")["loss"], load("dp1-b8-seed2")["loss"]
m = min(len(a), len(b), len(s2))
print(f"same global batch: |loss(1 rank B=8) - loss(2 ranks B=4)| max {np.max(np.abs(a[:m] - b[:m])):.2e}, "
      f"mean {np.mean(np.abs(a[:m] - b[:m])):.2e}; two 1-rank seeds: max {np.max(np.abs(a[:m] - s2[:m])):.2e}, "
      f"mean {np.mean(np.abs(a[:m] - s2[:m])):.2e}; final losses {a[m-1]:.4f} / {b[m-1]:.4f} / {s2[m-1]:.4f}")
PY
exit $status
