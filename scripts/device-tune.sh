#!/usr/bin/env bash
# Tuning run ON a GPU machine, over a staged CUDA build (scripts/stage-device.sh):
#   1. holds every compiled tensor-core candidate to the float64 reference
#      (test_kernels' candidate test, when the staged build has it): a
#      candidate that fails stops the run before anything is timed;
#   2. times every candidate (kernel_traits.hpp: forward_candidate in fwd rows,
#      backward_candidate in fwdbwd rows) for SDPA and RA in bf16 at each T of
#      RA_TUNE_TS, into $OUT/tune-*.h5;
#   3. names the winners (least geometric mean of time relative to the best,
#      over the T's) and writes $OUT/tuned-traits.txt, a tuned-traits file
#      (backends/kokkos/include/ra/kokkos/tuned_traits.hpp) that the library
#      reads at run time from RA_TUNED_TRAITS -- no rebuild -- and whose
#      comments give the entries to put into tensor_core_traits for good;
#   4. with RA_NCU=1, profiles one forward+backward of each fused kernel with
#      Nsight Compute (speed of light, occupancy, launch stats, warp stalls).
# That is how the sm_90 entries were chosen, and how to tune an sm_86 (A10G)
# or any other GPU: stage its preset and run this there.
#   RA_PRESET=cuda-a10g OUT=/tmp/out bash scripts/device-tune.sh
set -uo pipefail
source "$(dirname "$0")/device-env.sh"
preset=${RA_PRESET:-cuda-h100}
bench="$root/.device/$preset/ra-bench"
[ -x "$bench" ] || bench="$root/build/$preset/experiments/ra-bench"
[ -x "$bench" ] || { echo "device-tune: no ra-bench for $preset (stage or build it first)"; exit 1; }
status=0
tests="$(dirname "$bench")/test_kernels"
[ -x "$tests" ] || tests="$root/build/$preset/tests/test_kernels"
if [ -x "$tests" ]; then
  echo "== every candidate against the float64 reference"
  "$tests" "every tensor-core candidate matches the float64 reference" | tail -n 3 ||
    { echo "device-tune: a candidate failed its reference test; nothing timed"; exit 1; }
else
  echo "device-tune: no test_kernels beside $bench: candidates NOT checked against the reference"
fi
help=$("$bench" --help | tr -s ' \n' ' ')
nf=$(sed -n 's/.*forward ones (0\.\.\([0-9]*\)).*/\1/p' <<<"$help")
nb=$(sed -n 's/.*backward ones (0\.\.\([0-9]*\)).*/\1/p' <<<"$help")
for T in ${RA_TUNE_TS:-1024 4096}; do
  echo "== forward candidates 0..$nf and backward candidates 0..$nb, bf16, B8 H12 T$T D64"
  "$bench" --T "$T" --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwd \
    --tc-candidates "$(seq -s, 0 "${nf:-0}")" --out "$OUT/tune-T$T" 2>&1 | sed -n '/^variant/,$p' || status=1
  "$bench" --T "$T" --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwdbwd \
    --tc-candidates "$(seq -s, 0 "${nb:-0}")" --out "$OUT/tune-bwd-T$T" 2>&1 | sed -n '/^variant/,$p' || status=1
  rm -f "$OUT/tune-T$T.json" "$OUT/tune-bwd-T$T.json"
done
echo "== winners -> $OUT/tuned-traits.txt"
python3 - "$OUT" <<'PY' | tee "$OUT/tuned-traits.txt" || status=1
import glob, math, re, sys
import h5py
rows = {}  # (variant, pass) -> {candidate: {T: ms}}
for path in glob.glob(sys.argv[1] + "/tune-*.h5"):
    with h5py.File(path, "r") as f:
        t = f["bench"]
        n = int(t.attrs["rows"])
        text = lambda col: [x.decode() if isinstance(x, bytes) else str(x) for x in t[col][:n]]
        for v, p, T, ms, tiles in zip(text("variant"), text("pass"), t["T"][:n], t["median_ms"][:n], text("tiles")):
            m = re.search(r"#(\d+)", tiles)
            if m:
                rows.setdefault((v, p), {}).setdefault(int(m.group(1)), {})[int(T)] = float(ms)
cc = ""
for path in glob.glob(sys.argv[1] + "/tune-*.h5"):
    with h5py.File(path, "r") as f:
        value = f.attrs.get("compute_capability", "")
        cc = value.decode() if isinstance(value, bytes) else str(value)
arch = "sm_" + cc.replace(".", "") if re.fullmatch(r"\d+\.\d+", cc) else ""
print("# ra-kokkos tuned traits v1 (scripts/device-tune.sh); use: RA_TUNED_TRAITS=<this file>")
print("# arch  kind  pass  candidate")
for (v, p), cands in sorted(rows.items()):
    Ts = sorted({T for c in cands.values() for T in c})
    best = {T: min(c[T] for c in cands.values() if T in c) for T in Ts}
    score = {k: math.exp(sum(math.log(c[T] / best[T]) for T in Ts) / len(Ts))
             for k, c in cands.items() if all(T in c for T in Ts)}
    win = min(score, key=score.get)
    kind = "forward_candidate" if p == "fwd" else "backward_candidate"
    print(f"# {v:<11} {p:<7} winner #{win}: " + ", ".join(f"T={T} {cands[win][T]:.3f} ms (best {best[T]:.3f})" for T in Ts)
          + f"  -> tensor_core_traits: {kind}({'true' if v.startswith('ra') else 'false'}, {win})")
    if arch and v in ("sdpa_fused", "ra_fused"):
        print(f"{arch}  {'ra' if v.startswith('ra') else 'sdpa'}  {'fwd' if p == 'fwd' else 'bwd'}  {win}")
PY
if [ -n "${RA_NCU:-}" ]; then
  echo "== ncu: one forward+backward of sdpa_fused and ra_fused (bf16, T=1024) -> $OUT/ncu.txt"
  ncu --clock-control none --kernel-name-base demangled -k 'regex:tc::' -c 6 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    "$bench" --T 1024 --dtypes bf16 --variants sdpa_fused,ra_fused --passes fwdbwd --reps 1 \
    --warmup 0 --out /tmp/ra-ncu-run > "$OUT/ncu.txt" 2>&1 || status=1
  grep -E "Forward<|Backward(Q|KV)<|Duration|Compute \(SM\) Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Theoretical Occupancy" "$OUT/ncu.txt" | sed 's/(anonymous namespace):://; s/Kokkos::Impl::cuda_parallel_launch_local_memory<Kokkos::Impl::ParallelFor<ra::kk::detail::tc:://' | cut -c1-150
fi
exit $status
