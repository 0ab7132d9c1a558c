#!/usr/bin/env bash
# The coopmat2 Vulkan forward (backends/vulkan/shaders/fwd_cm2.comp) on the
# NVIDIA GPU machine, beside the path it replaces (RA_VK_NO_CM2=1: the NV v1
# coopmat forward). That machine has the driver but no Vulkan loader, so the
# binaries travel with Debian's loader, the validation layer and an ICD json
# for the driver's EGL entry point (docs/vulkan.md, "Running on the GPU
# machine"), packed into one archive (the device tool carries 64 MiB).
#
#   here:  bash scripts/device-vulkan-cm2.sh stage
#            builds test_vulkan and ra-bench (preset host, or the configured
#            build folder $RA_VK_BUILD; $RA_JOBS jobs, default all cores) and
#            packs them into .device/vulkan-cm2.tar.xz (~18 MB, xz: the repo travels too). Fails if the
#            build has no fwd_cm2 (no glslang >= 15: scripts/install-glslang.sh).
#   there: bash scripts/device-vulkan-cm2.sh run     (carry .device/vulkan-cm2.tar.xz)
#            1. test_vulkan, coopmat2 forward: "[coopmat]" (the coopmat2 cases,
#               the automatic choice, the coopmat backward after the coopmat2
#               forward) with validation off, then the whole file with it off;
#               then "[coopmat2]" with the validation layer on, for the record
#               only (Debian 12's layer, 1.3.239, predates both coopmat2
#               extensions and may flag them);
#            2. test_vulkan with RA_VK_NO_CM2=1 (the device as before coopmat2,
#               validation on: must pass as it did);
#            3. ra-bench --backend vulkan, fp16 storage, sdpa_fused and
#               ra_fused, B8 H12 D64, T 1024 and 4096, fwd and fwdbwd, with
#               the coopmat2 forward and with RA_VK_NO_CM2=1.
#            Logs and run files in $OUT; exit status 1 if a required step failed.
#            RA_CM2_TS (default "1024 4096") and RA_CM2_BH (default "8 12")
#            change the benchmark's shapes (a dry run on lavapipe here:
#            VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
#            RA_CM2_TS=64 RA_CM2_BH="1 2").
#   there: bash scripts/device-vulkan-cm2.sh parts   (carry .device/vulkan-cm2.tar.xz)
#            Where the coopmat forwards' time goes (docs/vulkan.md, "Timing
#            the coopmat forwards' parts"): test_vulkan "[cut]" (every cut
#            runs, finite outputs; validation off), then ra-bench fwd, fp16,
#            sdpa_fused and ra_fused, B8 H12 D64, T 1024 and 4096, for each
#            kernel (RA_VK_FORWARD=coopmat: fwd_cm; coopmat2: fwd_cm2) and
#            each cut (RA_VK_CUT=0..7), in rounds (the T=1024 Vulkan
#            timings move between runs): each round runs every (T, kernel,
#            cut), the cuts' order rotated per round. A kernel the device
#            does not run (a probe at T=64 says which runs) is skipped and
#            named. $OUT: parts-summary.txt (per kernel, T, variant and cut:
#            median over rounds of the per-run medians, min, spread, and
#            the time the cut saves against CUT=0), parts-rows.tsv (every
#            run), parts-logs.tar.gz (logs, run files).
#            RA_PARTS_KERNELS (default "coopmat coopmat2", RA_VK_FORWARD
#            values; coopmat_emulated runs fwd_cm_emu anywhere), RA_PARTS_CUTS
#            ("0 1 2 3 4 5 6 7"), RA_PARTS_TS ("1024 4096"), RA_PARTS_BH
#            ("8 12"), RA_PARTS_ROUNDS (3), RA_PARTS_REPS (20),
#            RA_PARTS_WARMUP (5), RA_PARTS_BUDGET_S (450: no round starts
#            that would end past it, judged by the longest round so far).
#            RA_PARTS_PREFETCH ("1"; "0 1" for the A/B): fwd_cm's key-loop
#            forms (RA_VK_PREFETCH) to time; coopmat and coopmat_emulated
#            then run once per form, as kernels "coopmat/single-stage" and
#            "coopmat/prefetch", back to back for each cut (which goes first
#            alternates per round); with more than one form, test_vulkan
#            "[coopmat]" runs once per form first (validation off), and the
#            summary adds a table of both forms' minima side by side.
#            RA_PARTS_TESTS=0 skips the test_vulkan runs (dry runs here).
#            Dry run on lavapipe here (fwd_cm and fwd_cm2 are skipped there):
#            VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json
#            RA_PARTS_KERNELS="coopmat coopmat2 coopmat_emulated"
#            RA_PARTS_TS=64 RA_PARTS_BH="1 2" RA_PARTS_CUTS="0 2 4"
#            RA_PARTS_ROUNDS=2 RA_PARTS_REPS=3 RA_PARTS_WARMUP=1.
#   there: bash scripts/device-vulkan-cm2.sh ab      (carry .device/vulkan-cm2.tar.xz)
#            A/B of builds or switches (perf v28's calls, before they had
#            this): the whole test_vulkan (validation off; RA_AB_TESTS=0
#            skips it), the coopmat pipelines' registers (driver statistics),
#            then ra-bench --backend vulkan, fp16, sdpa_fused and ra_fused,
#            B8 H12 D64, one run per entry of RA_AB ("label=binary" or
#            "label=binary,VAR=value,...", space-separated; default
#            "cur=ra-bench"; other binaries are staged with RA_VK_EXTRA)
#            and T of RA_AB_TS ("4096"), passes RA_AB_PASSES ("fwd,fwdbwd"),
#            in RA_AB_ROUNDS rounds (2) after a discarded warm-up round (the
#            first rows after the tests ran up to 5x slow: the clock), the
#            entries' order reversed every other round; then our Kokkos bf16
#            kernels (where ra-bench-cuda is staged) and PyTorch's fp16 SDPA
#            at each T, the yardsticks of the same call. $OUT: ab-rows.tsv
#            (round, label, T, variant, pass, median, min, tiles; sorted on
#            stdout), ab-logs.tar.gz.
#   there: bash scripts/device-vulkan-cm2.sh sass    (carry .device/vulkan-cm2.tar.xz)
#            The driver's compiled code of the coopmat pipelines (sdpa_fused
#            and ra_fused, D 64, T $RA_SASS_T (4096), forward and backward):
#            ra-bench with RA_VK_PIPELINE_CACHE_DUMP=$OUT/pcache (one
#            vkGetPipelineCacheData blob per pipeline), then
#            scripts/nv_pipeline_sass.py on the blobs: $OUT/sass-summary.txt
#            (instruction mixes), $OUT/sass.tar.gz (blobs, code, SASS, log).
#   here:  RA_VK_EXTRA="ra-bench-base=/path/to/ra-bench ra-bench-cuda=.device/cuda-h100/ra-bench"
#            before stage adds those binaries to the archive under the given names;
#            RA_VK_STAGE_LAYER=0 leaves the validation layer out (~5 MB: enough
#            for `ab` and `sass`, which run with validation off, where the
#            archive and the repo would pass the device tool's 64 MiB).
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
archive=$root/.device/vulkan-cm2.tar.xz

stage() {
  set -e
  source "$root/scripts/common.sh"
  local dir=${RA_VK_BUILD:-$root/build/host}
  if [ -n "${RA_VK_BUILD:-}" ]; then
    cmake --build "$dir" --target test_vulkan ra-bench --parallel "${RA_JOBS:-$(nproc)}"
  else
    ra_build host test_vulkan ra-bench
  fi
  if [ ! -f "$dir/backends/vulkan/spv/fwd_cm2.spv" ]; then
    echo "stage: $dir has no fwd_cm2 (no glslang >= 15 at configure time); run" \
         "scripts/install-glslang.sh, then reconfigure" >&2
    return 1
  fi
  local tmp
  tmp=$(mktemp -d)
  local pack=$tmp/vulkan-cm2
  mkdir -p "$pack/lib" "$pack/layers"
  cp "$dir/tests/test_vulkan" "$dir/experiments/ra-bench" "$pack/"
  strip "$pack/test_vulkan" "$pack/ra-bench"
  local extra
  for extra in ${RA_VK_EXTRA:-}; do cp "${extra#*=}" "$pack/${extra%%=*}"; done
  # Every non-system library (glibc, libstdc++ and libgcc_s are the device's
  # own, newer); libvulkan.so.1 (Debian's loader) among them.
  ldd "$dir/tests/test_vulkan" "$dir/experiments/ra-bench" | awk '/=> \//{print $3}' | sort -u |
    { grep -v -E '/lib(c|m|dl|rt|pthread|resolv|stdc\+\+|gcc_s)\.so' || true; } |
    xargs -r -I{} cp -L -n {} "$pack/lib/"
  # zstd (and its libraries) for `sass`: the driver's pipeline-cache blobs
  # are zstd frames, and the GPU machine has no zstd.
  cp /usr/bin/zstd "$pack/"
  ldd /usr/bin/zstd | awk '/=> \//{print $3}' | { grep -v -E '/lib(c|m|dl|rt|pthread)\.so' || true; } |
    xargs -r -I{} cp -L -n {} "$pack/lib/"
  # The validation layer (~5 MB of the archive) unless RA_VK_STAGE_LAYER=0:
  # `ab` and `sass` run with validation off, and the repo and the archive
  # share the device tool's 64 MiB.
  if [ "${RA_VK_STAGE_LAYER:-1}" != 0 ]; then
    local layer
    layer=$(ls /usr/lib/x86_64-linux-gnu/libVkLayer_khronos_validation.so)
    cp -L "$layer" "$pack/layers/"
    sed 's#"library_path": *"[^"]*"#"library_path": "./libVkLayer_khronos_validation.so"#' \
      /usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json > "$pack/layers/VkLayer_khronos_validation.json"
  fi
  cat > "$pack/nvidia_egl_icd.json" <<'ICD'
{ "file_format_version": "1.0.1",
  "ICD": { "library_path": "/usr/local/nvidia/lib64/libEGL_nvidia.so.0", "api_version": "1.4.312" } }
ICD
  git -C "$root" rev-parse --short HEAD > "$pack/git-rev"
  mkdir -p "$root/.device"
  tar cJf "$archive" -C "$tmp" vulkan-cm2  # xz: the device tool carries 64 MiB with the repo
  rm -rf "$tmp"
  du -h "$archive"
}

# unpack: the staged archive into a fresh folder ($work; binaries in $d),
# with the loader, layer and ICD set up for this shell; $OUT made.
unpack() {
  OUT=${OUT:-/tmp/ra-out}
  mkdir -p "$OUT"
  work=$(mktemp -d)
  tar xf "$archive" -C "$work" || { echo "cannot unpack $archive (stage it first)" >&2; return 1; }
  d=$work/vulkan-cm2
  export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers"
  export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-$d/nvidia_egl_icd.json}
  echo "== binaries of git $(cat "$d/git-rev"); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
}

# t <log path> <env...> -- <test_vulkan args...>: one test_vulkan run, summary lines.
t() {
  local log=$1; shift
  local envs=()
  while [ "$1" != "--" ]; do envs+=("$1"); shift; done
  shift
  echo "== test_vulkan $* (${envs[*]})"
  env "${envs[@]}" RA_VK_TEST_VERBOSE=1 "$d/test_vulkan" "$@" > "$log" 2>&1
  local rc=$?
  grep -E '^test_vulkan:|passed|failed|FAILED' "$log" | head -n 20
  return $rc
}

run() {
  local work d
  unpack || return 1
  local status=0
  t "$OUT/test-cm2-coopmat.log" RA_VK_VALIDATION=0 -- "[coopmat]" || status=1
  t "$OUT/test-cm2-all.log" RA_VK_VALIDATION=0 -- || status=1
  t "$OUT/test-cm2-validation.log" RA_VK_VALIDATION=1 -- "[coopmat2]" ||
    echo "   (validation run: informational; see $OUT/test-cm2-validation.log)"
  t "$OUT/test-nocm2-all.log" RA_VK_NO_CM2=1 -- || status=1
  local bh=(${RA_CM2_BH:-8 12})
  for T in ${RA_CM2_TS:-1024 4096}; do
    for path in cm2 nocm2; do
      local envs=(RA_VK_VALIDATION=0)
      [ "$path" = nocm2 ] && envs+=(RA_VK_NO_CM2=1)
      [ "$path" = cm2 ] && envs+=(RA_VK_FORWARD=coopmat2)  # on request only (not the automatic choice)
      echo "== ra-bench --backend vulkan fp16, B${bh[0]} H${bh[1]} T$T D64, $path"
      env "${envs[@]}" "$d/ra-bench" --backend vulkan --dtypes half --variants sdpa_fused,ra_fused \
        --passes fwd,fwdbwd --B "${bh[0]}" --H "${bh[1]}" --T "$T" --D 64 --reps 20 --warmup 3 \
        --out "$OUT/bench-$path-T$T" > "$OUT/bench-$path-T$T.log" 2>&1 || status=1
      sed -n '/^variant/,$p' "$OUT/bench-$path-T$T.log"
    done
  done
  rm -rf "$work"
  return $status
}

# The forward path a kernel's plan must name (RA_VK_FORWARD value -> path;
# "<value>/<form>": fwd_cm's key-loop form, prefetch or single-stage, after it).
kernel_path() {
  local form=""
  [ "${1#*/}" != "$1" ] && form=" ${1#*/}"
  case ${1%%/*} in
    coopmat) echo "coopmat fp16-storage$form" ;; coopmat2) echo "coopmat2 fp16-storage" ;;
    coopmat_emulated) echo "coopmat-emulated fp16-storage$form" ;; *) echo "$1" ;;
  esac
}

# compare_forms <rows.tsv>: per kernel, T, variant and cut, the minima of
# both key-loop forms over all rounds, and prefetch / single-stage.
compare_forms() {
  awk -F '\t' '
    $1 ~ /\// {
      split($1, kf, "/"); key = kf[1] "\t" $3 "\t" $4 "\t" $2
      if (!(key in seen)) { seen[key] = 1; order[++n] = key }
      if (!((key, kf[2]) in mn) || $7 < mn[key, kf[2]]) mn[key, kf[2]] = $7
    }
    END {
      for (i = 1; i <= n; i++) {
        split(order[i], f, "\t")
        a = ((order[i], "single-stage") in mn) ? mn[order[i], "single-stage"] : ""
        b = ((order[i], "prefetch") in mn) ? mn[order[i], "prefetch"] : ""
        printf "%-16s %5s  %-10s %3s %12s %12s %9s\n", f[1], f[2], f[3], f[4], a == "" ? "-" : a, \
               b == "" ? "-" : b, (a == "" || b == "" || a == 0) ? "-" : sprintf("%.3f", b / a)
      }
    }' "$1" | sort -s -k1,1 -k2,2n -k3,3 -k4,4n |
    { printf "%-16s %5s  %-10s %3s %12s %12s %9s\n" kernel T variant cut single_min prefetch_min ratio; cat; }
}

# bench_rows <log> <kernel> <cut> <round>: ra-bench's table rows as
# kernel cut T variant round median_ms min_ms tiles check (tab-separated);
# check is "ok" where the tiles column names the kernel asked for and the
# cut (and only then), else "RAN: <tiles>".
bench_rows() {
  local label="vulkan $(kernel_path "$2") "
  [ "$3" = 0 ] || label+="CUT=$3 (timing only, output wrong) "
  awk -v k="$2" -v c="$3" -v r="$4" -v want="$label" '
    /^variant/ { on = 1; next }
    on && NF == 0 { on = 0 }
    on && NF >= 12 {
      tiles = $12; for (i = 13; i <= NF; i++) tiles = tiles " " $i
      # fwd_cm on KHR matrices (coopmat_khr_runs) names itself coopmat-khr.
      khr = want; sub(/^vulkan coopmat /, "vulkan coopmat-khr ", khr)
      ok = (index(tiles " ", want) == 1 || index(tiles " ", khr) == 1) && (c != 0 || !index(tiles, "CUT="))
      printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", k, c, $4, $1, r, $5, $6, tiles, ok ? "ok" : "RAN: " tiles
    }' "$1"
}

# summarize <rows.tsv>: per kernel, T, variant, cut: median of the rounds'
# medians, min of their mins, spread (max / min of the rounds' medians), and
# what the cut saves against CUT=0 (median CUT=0 - median CUT=n; for cut 4,
# everything but the loads); check: bench_rows' check ("ok" in every round,
# else what ran).
summarize() {
  sort -t "$(printf '\t')" -k1,1 -k3,3n -k4,4 -k2,2n -k6,6g "$1" | awk -F '\t' '
    function part(c) {
      return c == 0 ? "none (real kernel)" : c == 1 ? "softmax" : c == 2 ? "P.V product" : \
             c == 3 ? "S=QK^T product" : c == 4 ? "all but loads" : c == 5 ? "masking+scale" : \
             c == 6 ? "row statistics" : c == 7 ? "P as A operand" : "?"
    }
    function flush() {
      if (n == 0) return
      med = n % 2 ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
      if (gc == 0) base = med
      saved = pct = "-"
      if (gc != 0 && base == "") saved = pct = "?"  # no CUT=0 rows
      else if (gc != 0) {
        saved = sprintf("%.3f", base - med)
        pct = sprintf("%.0f%%", 100 * (base - med) / base)
      }
      printf "%-29s %5s  %-10s %3s  %-18s %9.3f %9.3f %6d %6.2f %9s %5s  %s\n", gk, gT, gv, gc, part(gc), \
             med, mn, n, v[n] / v[1], saved, pct, chk
      n = 0
    }
    {
      key = $1 SUBSEP $3 SUBSEP $4 SUBSEP $2
      if (key != last) {
        flush()
        if ($1 SUBSEP $3 SUBSEP $4 != lastgroup) base = ""
        lastgroup = $1 SUBSEP $3 SUBSEP $4
        last = key; gk = $1; gc = $2; gT = $3; gv = $4; mn = $7; chk = "ok"
      }
      v[++n] = $6
      if ($7 < mn) mn = $7
      if ($9 != "ok") chk = $9
    }
    END {
      flush()
    }' | { printf "%-29s %5s  %-10s %3s  %-18s %9s %9s %6s %6s %9s %5s  %s\n" kernel T variant cut "part left out" \
             median_ms min_ms rounds spread saved_ms saved check; cat; }
}

parts() {
  local work d
  unpack || return 1
  local status=0 logs=$work/parts
  mkdir -p "$logs"
  local kernels=(${RA_PARTS_KERNELS:-coopmat coopmat2}) cuts=(${RA_PARTS_CUTS:-0 1 2 3 4 5 6 7})
  local ts=(${RA_PARTS_TS:-1024 4096}) bh=(${RA_PARTS_BH:-8 12})
  local rounds=${RA_PARTS_ROUNDS:-3} reps=${RA_PARTS_REPS:-20} warmup=${RA_PARTS_WARMUP:-5}
  local budget=${RA_PARTS_BUDGET_S:-450} forms=(${RA_PARTS_PREFETCH:-1}) pf
  local rows=$logs/parts-rows.tsv
  : > "$rows"
  if [ "${RA_PARTS_TESTS:-1}" = 0 ]; then
    echo "== test_vulkan skipped (RA_PARTS_TESTS=0)" | tee "$logs/test-cut.log"
  else
    t "$logs/test-cut.log" RA_VK_VALIDATION=0 -- "[cut]" || status=1
  fi
  if ((${#forms[@]} > 1)) && [ "${RA_PARTS_TESTS:-1}" != 0 ]; then
    for pf in "${forms[@]}"; do
      t "$logs/test-coopmat-prefetch$pf.log" RA_VK_VALIDATION=0 RA_VK_PREFETCH="$pf" -- "[coopmat]" || status=1
    done
  fi
  # Which kernels run here: a small probe each, with the real kernel.
  local run_kernels=() skipped=() k
  for k in "${kernels[@]}"; do
    env RA_VK_VALIDATION=0 RA_VK_FORWARD="$k" "$d/ra-bench" --backend vulkan --dtypes half \
      --variants sdpa_fused --passes fwd --B 1 --H 1 --T 64 --D 64 --reps 1 --warmup 0 \
      --out "$logs/probe-$k" > "$logs/probe-$k.log" 2>&1
    local ran
    ran=$(bench_rows "$logs/probe-$k.log" "$k" 0 0 | cut -f8,9)
    if [ "${ran##*$'\t'}" = ok ]; then
      if [ "$k" = coopmat ] || [ "$k" = coopmat_emulated ]; then
        for pf in "${forms[@]}"; do
          case $pf in
            0) run_kernels+=("$k/single-stage") ;; 1) run_kernels+=("$k/prefetch") ;;
            *) echo "RA_PARTS_PREFETCH: '$pf' is not 0 or 1" >&2; return 2 ;;
          esac
        done
      else
        run_kernels+=("$k")
      fi
    else
      skipped+=("$k: the forward that ran is '${ran%%$'\t'*}'")
      echo "== skipped $k: the forward that ran is '${ran%%$'\t'*}' (probe-$k.log)"
    fi
  done
  local r start=$SECONDS longest=0
  for ((r = 1; r <= rounds && ${#run_kernels[@]} > 0; r++)); do
    if ((r > 1 && SECONDS - start + longest > budget)); then
      echo "== stopped after $((r - 1)) rounds: another would pass RA_PARTS_BUDGET_S=$budget s"
      break
    fi
    local t0=$SECONDS T i j c nk=${#run_kernels[@]}
    echo "== round $r"
    for T in "${ts[@]}"; do
      for ((i = 0; i < ${#cuts[@]}; i++)); do
        c=${cuts[$(((i + r - 1) % ${#cuts[@]}))]}  # rotated per round
        for ((j = 0; j < nk; j++)); do
          k=${run_kernels[$(((j + r - 1) % nk))]}  # back to back per cut, first one rotated
          pf=1
          [ "${k#*/}" = single-stage ] && pf=0
          local name=${k//\//-}-cut$c-T$T-r$r
          env RA_VK_VALIDATION=0 RA_VK_FORWARD="${k%%/*}" RA_VK_PREFETCH="$pf" RA_VK_CUT="$c" "$d/ra-bench" --backend vulkan \
            --dtypes half --variants sdpa_fused,ra_fused --passes fwd --B "${bh[0]}" --H "${bh[1]}" \
            --T "$T" --D 64 --reps "$reps" --warmup "$warmup" --out "$logs/$name" > "$logs/$name.log" 2>&1 ||
            { status=1; echo "   $name failed: $(tail -n 2 "$logs/$name.log" | tr '\n' ' ')"; }
          bench_rows "$logs/$name.log" "$k" "$c" "$r" >> "$rows"
        done
      done
    done
    ((SECONDS - t0 > longest)) && longest=$((SECONDS - t0))
    echo "   round $r: $((SECONDS - t0)) s"
  done
  {
    echo "# Where the coopmat forwards' time goes: ra-bench --backend vulkan fp16 fwd, B${bh[0]} H${bh[1]} D64;"
    echo "# RA_VK_CUT=n leaves one part out (docs/vulkan.md); saved_ms = median(CUT=0) - median(CUT=n)."
    echo "# binaries of git $(cat "$d/git-rev"); $(sed -n 's/^ra-bench: B=.* on \(.*\) (vulkan).*/\1/p' "$logs"/*-r1.log 2>/dev/null | head -n 1)"
    echo "# rounds: $((r - 1)) of $rounds; reps $reps, warmup $warmup; $(grep -E 'passed|failed' "$logs/test-cut.log" | tail -n 1)"
    local s
    for s in "${skipped[@]}"; do echo "# skipped $s"; done
    summarize "$rows"
    if ((${#forms[@]} > 1)); then
      echo
      echo "# fwd_cm's key loop: minimum over all rounds of each form (RA_VK_PREFETCH=0 single-stage, 1 prefetch); ratio = prefetch / single-stage"
      compare_forms "$rows"
    fi
  } > "$OUT/parts-summary.txt"
  cp "$rows" "$OUT/parts-rows.tsv"
  tar czf "$OUT/parts-logs.tar.gz" -C "$work" parts
  cat "$OUT/parts-summary.txt"
  rm -rf "$work"
  return $status
}

# ab: see the header.
ab() {
  local work d
  unpack || return 1
  local status=0 rows=$OUT/ab-rows.tsv logs=$work/ab
  mkdir -p "$logs"
  : > "$rows"
  if [ "${RA_AB_TESTS:-1}" != 0 ]; then t "$OUT/test-all.log" RA_VK_VALIDATION=0 -- || status=1; fi
  RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 "$d/ra-bench" --backend vulkan --dtypes half --variants sdpa_fused,ra_fused \
    --passes fwdbwd --B 1 --H 2 --T 256 --D 64 --reps 2 --warmup 1 --out "$logs/stats" 2>&1 |
    grep '^ra-vk pipeline .*_cm' | sed 's/Stack Size = 0, //'
  local entries=(${RA_AB:-cur=ra-bench}) round T
  one() {  # round label binary[,VAR=value...] T
    local spec=$3 bin=${3%%,*} envs=() log=$logs/$1-$2-T$4
    [ "$spec" != "$bin" ] && IFS=, read -r -a envs <<< "${spec#*,}"
    env "${envs[@]}" RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat "$d/$bin" --backend vulkan --dtypes half \
      --vk-warmup-ms 1000 --variants sdpa_fused,ra_fused --passes "${RA_AB_PASSES:-fwd,fwdbwd}" \
      --B 8 --H 12 --T "$4" --D 64 --reps 20 --warmup 5 --out "$log" > "$log.log" 2>&1 || status=1
    awk -v r="$1" -v l="$2" '/^variant/ { on = 1; next } on && NF == 0 { on = 0 }
      on && NF >= 12 { t = $12; for (i = 13; i <= NF; i++) t = t " " $i
        printf "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r, l, $4, $1, $2, $5, $6, t }' "$log.log" >> "$rows"
  }
  for T in ${RA_AB_TS:-4096}; do
    one warm "${entries[0]%%=*}" "${entries[0]#*=}" "$T"
    for round in $(seq 1 "${RA_AB_ROUNDS:-2}"); do
      local order=("${entries[@]}") e
      [ $((round % 2)) = 0 ] && order=($(printf '%s\n' "${entries[@]}" | tac))
      for e in "${order[@]}"; do one "r$round" "${e%%=*}" "${e#*=}" "$T"; done
    done
    if [ -x "$d/ra-bench-cuda" ]; then
      local cublas
      cublas=$(python3 -c 'import nvidia.cublas, os; print(os.path.join(os.path.dirname(nvidia.cublas.__file__), "lib"))' 2>/dev/null)
      LD_LIBRARY_PATH="/usr/local/cuda/lib64:$cublas:$LD_LIBRARY_PATH" "$d/ra-bench-cuda" --T "$T" --dtypes bf16 \
        --variants sdpa_fused,ra_fused --passes fwd,fwdbwd --out "$logs/kokkos-bf16-T$T" > "$logs/kokkos-bf16-T$T.log" 2>&1
      grep -E '^(sdpa|ra)_fused ' "$logs/kokkos-bf16-T$T.log" | awk -v T="$T" '{ print "kokkos bf16 T=" T, $1, $2, $5, $6 }'
    fi
    python3 "$root/scripts/torch_yardstick.py" --T "$T" --dtypes float16 --variants torch_sdpa \
      --out "$OUT/torch-fp16-T$T.json" 2>&1 | tail -n 2 | sed "s/^/torch T=$T /"
  done
  sort "$rows" | awk -F'\t' '{ print $1, $2, $3, $4, $5, $6, $7, substr($8, 1, 60) }'
  tar czf "$OUT/ab-logs.tar.gz" -C "$work" ab
  rm -rf "$work"
  return $status
}

# sass: see the header.
sass() {
  local work d
  unpack || return 1
  local s=$work/sass
  mkdir -p "$s/pcache" "$s/out"
  echo "== tools: $(command -v zstd python3) $(ls /usr/local/cuda/bin/nvdisasm 2>&1)"
  RA_VK_PIPELINE_CACHE_DUMP=$s/pcache RA_VK_VALIDATION=0 RA_VK_PIPELINE_STATS=1 RA_VK_FORWARD=coopmat \
    "$d/ra-bench" --backend vulkan --dtypes half --variants sdpa_fused,ra_fused --passes fwdbwd \
    --B 1 --H 2 --T "${RA_SASS_T:-4096}" --D 64 --reps 2 --warmup 1 --out "$s/bench" > "$s/bench.log" 2>&1
  grep '^ra-vk pipeline .*Register' "$s/bench.log" | sed 's/Stack Size = 0, //'
  PATH="$d:$PATH" python3 "$root/scripts/nv_pipeline_sass.py" "$s/pcache" "$s/out" | tee "$OUT/sass-summary.txt"
  tar czf "$OUT/sass.tar.gz" -C "$work" sass  # one file: the device tool brings back a few only
  rm -rf "$work"
}

case "${1:-}" in
  stage) stage ;;
  sass) sass ;;
  run) run ;;
  parts) parts ;;
  ab) ab ;;
  *) echo "usage: $0 stage (here) | run | parts | ab | sass (on the GPU machine)" >&2; exit 2 ;;
esac
