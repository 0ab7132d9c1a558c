#!/usr/bin/env bash
# The seeds' question at small scale: does RA reach a lower validation loss
# than SDPA in the same wall-clock time? Trains the same model three times
# for the same budget -- SDPA fused, RA fused in every layer, and the hybrid
# (RA in the middle layers) -- on the default corpus (Brown; fetched with
# scripts/get-data.sh if missing), one HDF5 run file each under
# runs/compare-<time>/, prints the final validation losses and plots the
# curves (scripts/compare_curves.py -> curves.png there).
#
#   scripts/compare.sh                    # CPU: gpt2-tiny, 60 s per run
#   RA_BUDGET=300 scripts/compare.sh      # seconds per run
#   scripts/compare.sh --lr 1e-3          # extra options go to every ra-train
#
# On a GPU the same command trains gpt2-mini (B=8, T=512) for 600 s per run,
# with the bf16 tensor-core attention and bf16 matmuls, PyTorch autocast's
# precision (RA_ATTENTION_PRECISION=float / RA_MATMUL_PRECISION=float for fp32).
# RA_MODEL, RA_BATCH, RA_CONTEXT, RA_HYBRID (layers) override the defaults;
# RA_TRAIN_BIN runs an ra-train built elsewhere.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bash "$ra_root/scripts/install-deps.sh"
export OMP_PROC_BIND=${OMP_PROC_BIND:-false}
preset=$(ra_pick_preset)
if [ "$preset" = host ]; then
  # Small enough that a 2-core CPU does all three in a few minutes.
  model=${RA_MODEL:-gpt2-tiny} budget=${RA_BUDGET:-60} batch=${RA_BATCH:-4} context=${RA_CONTEXT:-64}
  hybrid=${RA_HYBRID:-1-2} eval_every=10 val_batches=4 precision=float matmul=float
else
  model=${RA_MODEL:-gpt2-mini} budget=${RA_BUDGET:-600} batch=${RA_BATCH:-8} context=${RA_CONTEXT:-512}
  hybrid=${RA_HYBRID:-2-3} eval_every=50 val_batches=20
  # The bf16 tensor-core attention: float32 attention on CUDA still runs the
  # portable kernels, which would dominate the step (docs/perf.md, v5 vs v6).
  precision=${RA_ATTENTION_PRECISION:-bf16}
  matmul=${RA_MATMUL_PRECISION:-bf16}
fi
# RA_TRAIN_BIN: an ra-train already built elsewhere (skips the build).
[ -n "${RA_TRAIN_BIN:-}" ] || ra_build "$preset" ra-train
cache=${RA_DATA_CACHE:-$HOME/.cache/ra-kokkos/data}
if [ ! -f "$cache/brown/brown_train_000000.bin" ] || [ ! -f "$cache/brown/brown_val_000000.bin" ]; then
  echo "== fetching the default corpus (scripts/get-data.sh)"
  bash "$ra_root/scripts/get-data.sh"
fi

cd "$ra_root"
out="runs/compare-$(date -u +%Y%m%d-%H%M%S)"
mkdir -p "$out"
train=${RA_TRAIN_BIN:-build/$preset/experiments/ra-train}
echo "== $model, B=$batch T=$context, attention in $precision, matmuls in $matmul, ${budget} s per run, into $out/"
declare -a names=(sdpa_fused ra_fused hybrid) files=() results=()
for name in "${names[@]}"; do
  case $name in
    sdpa_fused) attn=(--attention sdpa_fused) ;;
    ra_fused) attn=(--attention ra_fused) ;;
    hybrid) attn=(--attention ra_fused --ra-layers "$hybrid") ;;
  esac
  file="$out/$name.h5"
  echo "== $name"
  summary=$("$train" --model "$model" "${attn[@]}" --batch "$batch" --context "$context" \
    --time-budget "$budget" --eval-every "$eval_every" --val-batches "$val_batches" --warmup 10 \
    --lr 2e-3 --attention-precision "${precision:-float}" --matmul-precision "${matmul:-float}" --out "$file" "$@" |
    tail -n 2 | head -n 1)
  echo "   $summary"
  files+=("$file")
  results+=("$summary")
done

echo
printf '%-12s %8s %10s %10s %10s\n' run steps tokens "train" "val"
for i in "${!names[@]}"; do
  # "ra-train: N steps, M tokens, S s: train loss X, val loss Y"
  read -r steps tokens trainloss valloss < <(echo "${results[$i]}" |
    sed -E 's/ra-train: ([0-9]+) steps, ([0-9]+) tokens, .*train loss ([0-9.naif]+), val loss ([0-9.naif]+)/\1 \2 \3 \4/')
  printf '%-12s %8s %10s %10s %10s\n' "${names[$i]}" "$steps" "$tokens" "$trainloss" "$valloss"
done
echo
if bash "$ra_root/scripts/install-deps.sh" --plots >/dev/null 2>&1 &&
   /usr/bin/python3 "$ra_root/scripts/compare_curves.py" "${files[@]}" -o "$out/curves.png"; then
  :
else
  echo "(no plot: scripts/install-deps.sh --plots installs h5py and matplotlib; then" \
       "scripts/compare_curves.py $out/*.h5 -o $out/curves.png)"
fi
echo "run files: ${files[*]}"
