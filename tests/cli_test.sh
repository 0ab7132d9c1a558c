#!/usr/bin/env bash
# Command-line behaviour of ra-bench: --help works, bad input gives a message
# naming the bad value and a non-zero exit, a finished run's files are never
# overwritten and stay readable.   usage: cli_test.sh <path-to-ra-bench>
set -u
bench=$1
inspect=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0

# expect <exit-code|nonzero> <substring of stderr+stdout> <args...>
expect() {
  local want=$1 text=$2; shift 2
  local out rc
  out=$("$bench" "$@" 2>&1); rc=$?
  if { [ "$want" = nonzero ] && [ $rc -eq 0 ]; } || { [ "$want" != nonzero ] && [ $rc -ne "$want" ]; }; then
    echo "FAIL: ra-bench $* exited $rc (wanted $want)"; echo "$out" | tail -5; fails=$((fails+1)); return
  fi
  if ! grep -qF -- "$text" <<<"$out"; then
    echo "FAIL: ra-bench $* did not print '$text'"; echo "$out" | tail -5; fails=$((fails+1)); return
  fi
  echo "ok: ra-bench $* -> $rc, '$text'"
}

expect 0 "--variants" --help
expect nonzero "0 is not >= 1" --T 0
expect nonzero "'abc' is not an integer" --D abc
expect nonzero "flash" --variants flash
expect nonzero "unknown argument '--bogus'" --bogus
expect nonzero "half" --dtypes half
expect nonzero "--tile" --tile 12
# bf16: a CUDA-build feature; elsewhere a clear refusal before any file is written.
expect nonzero "bf16" --dtypes bf16 --variants sdpa_fused --T 4 --B 1 --H 1 --reps 1 --out "$tmp/bf16"
[ ! -e "$tmp/bf16.h5" ] || { echo "FAIL: a rejected bf16 run left a file behind"; fails=$((fails+1)); }
expect nonzero "D = 256" --variants sdpa_fused --D 256 --T 4 --B 1 --H 1 --reps 1 --out "$tmp/big"
[ ! -e "$tmp/big.h5" ] || { echo "FAIL: a rejected run left a file behind"; fails=$((fails+1)); }

small=(--B 1 --H 2 --T 33 --D 16 --reps 2 --warmup 1)
expect 0 "wrote $tmp/run.h5" "${small[@]}" --out "$tmp/run"
before=$(md5sum "$tmp/run.h5")
expect nonzero "refusing to overwrite" "${small[@]}" --out "$tmp/run"
[ "$(md5sum "$tmp/run.h5")" = "$before" ] || { echo "FAIL: existing run file changed"; fails=$((fails+1)); }
if command -v h5dump >/dev/null; then
  h5dump -H "$tmp/run.h5" >/dev/null || { echo "FAIL: h5dump cannot read the run"; fails=$((fails+1)); }
fi
# ra-inspect reads it back: attributes and the table with units.
out=$("$inspect" "$tmp/run.h5" 2>&1) || { echo "FAIL: ra-inspect exited non-zero"; fails=$((fails+1)); }
for want in "program = ra-bench" "git_revision = " "median_ms [ms]" "ra_window" "table /bench (10 rows)"; do
  grep -qF -- "$want" <<<"$out" || { echo "FAIL: ra-inspect output lacks '$want'"; fails=$((fails+1)); }
done
out=$("$inspect" "$tmp/missing.h5" 2>&1) && { echo "FAIL: ra-inspect of a missing file exited 0"; fails=$((fails+1)); }
grep -qF "missing.h5" <<<"$out" || { echo "FAIL: ra-inspect did not name the missing file"; fails=$((fails+1)); }
echo "ok: ra-inspect reads the run and rejects a missing file"

# A run killed with SIGKILL keeps every row it reported as saved.
"$bench" --B 1 --H 2 --T 128 --D 16 --reps 1000 --warmup 0 --out "$tmp/killed" >/dev/null 2>"$tmp/killed.err" &
pid=$!
for _ in $(seq 1 600); do grep -q "\[2/10\]" "$tmp/killed.err" && break; sleep 0.1; done
kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
saved=$(grep -c "saved to" "$tmp/killed.err")
out=$("$inspect" "$tmp/killed.h5" 2>&1)
rows=$(sed -n 's/^table \/bench (\([0-9]*\) rows).*/\1/p' <<<"$out")
if [ "$saved" -ge 2 ] && [ "$saved" -lt 10 ] && [ "${rows:-0}" -ge "$saved" ]; then
  echo "ok: ra-bench killed after $saved saved rows; the file holds $rows"
else
  echo "FAIL: killed run: $saved rows reported saved, file holds '${rows}'"; echo "$out" | tail -5; fails=$((fails+1))
fi

# Overflowing inputs: the kernels' NaN/Inf output is reported, gets no row,
# and the exit code says so.
expect nonzero "non-finite values in 'o'" --B 1 --H 1 --T 16 --D 16 --reps 1 --warmup 1 \
  --variants sdpa_open,sdpa_fused --passes fwd --input-scale 1e30 --out "$tmp/nan"
out=$("$inspect" "$tmp/nan.h5" 2>&1)
grep -qF "table /bench (0 rows)" <<<"$out" || { echo "FAIL: non-finite runs were saved"; echo "$out" | tail -3; fails=$((fails+1)); }

# Default naming picks a fresh file each time.
expect 0 "wrote $tmp/dir/ra-bench-" "${small[@]}" --variants sdpa_fused --passes fwd --out-dir "$tmp/dir"
expect 0 "wrote $tmp/dir/ra-bench-" "${small[@]}" --variants sdpa_fused --passes fwd --out-dir "$tmp/dir"
n=$(ls "$tmp/dir"/*.h5 | wc -l)
[ "$n" -eq 2 ] || { echo "FAIL: expected 2 run files, found $n"; fails=$((fails+1)); }

[ $fails -eq 0 ] && echo "all CLI checks passed" || echo "$fails CLI checks failed"
exit $fails
