#!/usr/bin/env bash
# ra-bench --save-outputs + scripts/ra-compare across the backends of this
# build: Kokkos OpenMP vs Kokkos Serial, vs float64 storage, vs Vulkan
# (lavapipe on a CPU) when the build has it; then the failures ra-compare
# must catch: a tampered tensor (exit 1), outputs of another seed, a missing
# file, a file that is not a run file (exit 2); and training curves, on run
# files the test writes with h5py.
#   usage: test_compare.sh <ra-bench> <ra-compare> <python3> <vulkan ON|OFF>
set -u
bench=$1
compare=$2
python=$3
vulkan=$4
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails+1)); }

# A tiny shape: T not a multiple of any tile, every variant, both passes.
small=(--B 1 --H 2 --T 37 --D 16 --reps 1 --warmup 0 --save-outputs)
run_bench() {  # run_bench <stem> <args...>
  local stem=$1; shift
  if ! "$bench" "${small[@]}" "$@" --out "$tmp/$stem" >"$tmp/$stem.log" 2>&1; then
    fail "ra-bench $* exited non-zero"; tail -5 "$tmp/$stem.log"; return 1
  fi
}

# expect_compare <exit code> <text in stdout+stderr> <ra-compare args...>
expect_compare() {
  local want=$1 text=$2; shift 2
  local out rc
  out=$("$python" "$compare" "$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want" ]; then
    fail "ra-compare $* exited $rc (wanted $want)"; echo "$out" | tail -8; return
  fi
  if ! grep -qF -- "$text" <<<"$out"; then
    fail "ra-compare $* did not print '$text'"; echo "$out" | tail -8; return
  fi
  echo "ok: ra-compare $* -> $rc, '$text'"
}

run_bench omp
run_bench serial --serial
run_bench double --dtypes double --variants ra_fused,sdpa_fused
run_bench seed7 --seed 7 --variants ra_fused

# Every output tensor of every variant is in the file.
"$python" - "$tmp/omp.h5" <<'EOF' || fail "outputs missing from omp.h5"
import sys, h5py
f = h5py.File(sys.argv[1], "r")
for v in ("sdpa_open", "sdpa_fused", "ra_open", "ra_fused", "ra_window"):
    g = f[f"outputs/{v}/float/B1_H2_T37_D16"]
    want = {"o", "lse", "dq", "dk", "dv"} | ({"dd", "dgates"} if v.startswith("ra_") else set())
    assert set(g) == want, (v, sorted(g))
    assert g["o"].shape == (1, 2, 37, 16) and g["dgates" if v.startswith("ra_") else "lse"].ndim == 3
    assert g["o"].attrs["inputs_checksum"].startswith("fnv1a64:")
    assert g["dq"].attrs["description"]
EOF

expect_compare 0 "all within tolerance" "$tmp/omp.h5" "$tmp/serial.h5"
expect_compare 0 "outputs/ra_window/float/B1_H2_T37_D16/dgates" "$tmp/omp.h5" "$tmp/serial.h5"
# float vs double storage: matched across dtypes, the float tolerance.
expect_compare 0 "outputs/ra_fused/float/B1_H2_T37_D16/dq ~ outputs/ra_fused/double/B1_H2_T37_D16/dq" \
  "$tmp/omp.h5" "$tmp/double.h5"
expect_compare 0 "bench (informational)" "$tmp/omp.h5" "$tmp/serial.h5"

if [ "$vulkan" = ON ]; then
  if "$bench" "${small[@]}" --backend vulkan --out "$tmp/vk" >"$tmp/vk.log" 2>&1; then
    expect_compare 0 "all within tolerance" "$tmp/omp.h5" "$tmp/vk.h5" "$tmp/serial.h5"
    expect_compare 0 "outputs/ra_fused/float/B1_H2_T37_D16/dgates" "$tmp/vk.h5" "$tmp/omp.h5"
  elif grep -qi "no vulkan" "$tmp/vk.log"; then
    echo "note: no Vulkan device on this machine; Vulkan comparison left out"
  else
    fail "ra-bench --backend vulkan exited non-zero"; tail -5 "$tmp/vk.log"
  fi
fi

# A tampered tensor: exit 1, naming the tensor, its error and the tolerance.
cp "$tmp/serial.h5" "$tmp/tampered.h5"
"$python" - "$tmp/tampered.h5" <<'EOF' || fail "could not tamper with the copy"
import sys, h5py
with h5py.File(sys.argv[1], "r+") as f:
    d = f["outputs/ra_fused/float/B1_H2_T37_D16/dk"]
    x = d[()]
    x[0, 1, 20, 3] += 0.05
    d[...] = x
EOF
expect_compare 1 "MISMATCH" "$tmp/omp.h5" "$tmp/tampered.h5"
expect_compare 1 "outputs/ra_fused/float/B1_H2_T37_D16/dk: max rel error" "$tmp/omp.h5" "$tmp/tampered.h5"
expect_compare 1 "> tolerance 0.0002" "$tmp/omp.h5" "$tmp/tampered.h5"
expect_compare 0 "all within tolerance" "$tmp/omp.h5" "$tmp/tampered.h5" --tol 0.1

# Bad input: exit 2 with a message naming the problem.
expect_compare 2 "computed from different inputs" "$tmp/omp.h5" "$tmp/seed7.h5"
expect_compare 2 "no such file" "$tmp/omp.h5" "$tmp/missing.h5"
echo "not hdf5" >"$tmp/text.h5"
expect_compare 2 "cannot open as HDF5" "$tmp/omp.h5" "$tmp/text.h5"
"$python" -c "import h5py, sys; h5py.File(sys.argv[1], 'w').attrs['x'] = 1" "$tmp/plain.h5"
expect_compare 2 "not an ra-kokkos run file" "$tmp/plain.h5" "$tmp/omp.h5"
expect_compare 0 "usage: ra-compare" --help

# Training curves: two hand-written ra-train-like files. Same curve: 0;
# a loss 1e-3 off at one step: 1 in float, 0 when one side is bf16 (2e-2).
"$python" - "$tmp" <<'EOF' || fail "could not write the curve files"
import sys, json, h5py, numpy as np
def write(path, loss, precision):
    with h5py.File(path, "w") as f:
        f.attrs["schema"] = "ra-kokkos-run/1"
        f.attrs["precision"] = precision
        f.attrs["config"] = json.dumps({"attention": "ra_fused", "seed": 1})
        for table, steps in (("train", np.arange(1, 11)), ("val", np.array([0, 5, 10]))):
            g = f.create_group(table)
            g.attrs["columns"] = "step,loss"
            g.attrs["rows"] = np.int64(len(steps))
            g["step"] = steps.astype(np.int64)
            g["loss"] = np.array([loss(s) for s in steps], dtype=np.float64)
base = lambda s: 10.0 / (1 + 0.1 * s)
write(sys.argv[1] + "/train_a.h5", base, "float")
write(sys.argv[1] + "/train_b.h5", lambda s: base(s) + (1e-2 if s == 5 else 0.0), "float")
write(sys.argv[1] + "/train_c.h5", lambda s: base(s) + (1e-2 if s == 5 else 0.0), "float, attention bf16")
EOF
expect_compare 0 "/val loss (3 steps, 0..10)" "$tmp/train_a.h5" "$tmp/train_a.h5"
expect_compare 1 "/train loss (10 steps, 1..10): max rel error" "$tmp/train_a.h5" "$tmp/train_b.h5"
expect_compare 0 "all within tolerance" "$tmp/train_a.h5" "$tmp/train_c.h5"
expect_compare 2 "nothing in common" "$tmp/train_a.h5" "$tmp/omp.h5"

if [ $fails -ne 0 ]; then echo "$fails failure(s)"; exit 1; fi
echo "all ra-compare checks passed"
