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
  # Every non-system library (glibc, libstdc++ and libgcc_s are the device's
  # own, newer); libvulkan.so.1 (Debian's loader) among them.
  ldd "$dir/tests/test_vulkan" "$dir/experiments/ra-bench" | awk '/=> \//{print $3}' | sort -u |
    { grep -v -E '/lib(c|m|dl|rt|pthread|resolv|stdc\+\+|gcc_s)\.so' || true; } |
    xargs -r -I{} cp -L -n {} "$pack/lib/"
  local layer
  layer=$(ls /usr/lib/x86_64-linux-gnu/libVkLayer_khronos_validation.so)
  cp -L "$layer" "$pack/layers/"
  sed 's#"library_path": *"[^"]*"#"library_path": "./libVkLayer_khronos_validation.so"#' \
    /usr/share/vulkan/explicit_layer.d/VkLayer_khronos_validation.json > "$pack/layers/VkLayer_khronos_validation.json"
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

run() {
  OUT=${OUT:-/tmp/ra-out}
  mkdir -p "$OUT"
  local work
  work=$(mktemp -d)
  tar xf "$archive" -C "$work" || { echo "run: cannot unpack $archive (stage it first)" >&2; return 1; }
  local d=$work/vulkan-cm2
  export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers"
  export VK_ICD_FILENAMES=${VK_ICD_FILENAMES:-$d/nvidia_egl_icd.json}
  echo "== binaries of git $(cat "$d/git-rev"); $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
  local status=0
  t() {  # t <log name> <env...> -- <test_vulkan args...>: one test_vulkan run, summary lines
    local name=$1; shift
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    echo "== test_vulkan $* (${envs[*]})"
    env "${envs[@]}" RA_VK_TEST_VERBOSE=1 "$d/test_vulkan" "$@" > "$OUT/$name.log" 2>&1
    local rc=$?
    grep -E '^test_vulkan:|passed|failed|FAILED' "$OUT/$name.log" | head -n 20
    return $rc
  }
  t test-cm2-coopmat RA_VK_VALIDATION=0 -- "[coopmat]" || status=1
  t test-cm2-all RA_VK_VALIDATION=0 -- || status=1
  t test-cm2-validation RA_VK_VALIDATION=1 -- "[coopmat2]" ||
    echo "   (validation run: informational; see $OUT/test-cm2-validation.log)"
  t test-nocm2-all RA_VK_NO_CM2=1 -- || status=1
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

case "${1:-}" in
  stage) stage ;;
  run) run ;;
  *) echo "usage: $0 stage (here) | run (on the GPU machine)" >&2; exit 2 ;;
esac
