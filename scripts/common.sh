# Shared by the scripts: pick a CMake preset and build it (configure only when
# needed; dependencies come from the cache in ~/.cache/ra-kokkos).
# RA_PRESET overrides the choice; otherwise a visible NVIDIA GPU of compute
# capability 9.x picks cuda-h100, 8.6 picks cuda-a10g, anything else host.
ra_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

ra_pick_preset() {
  if [ -n "${RA_PRESET:-}" ]; then echo "$RA_PRESET"; return; fi
  local cc=""
  if command -v nvidia-smi >/dev/null 2>&1; then
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d ' ')
  fi
  case "$cc" in
    9.*) echo cuda-h100 ;;
    8.6) echo cuda-a10g ;;
    *) echo host ;;
  esac
}

# ra_build <preset> [targets...]
ra_build() {
  local preset=$1; shift
  local dir="$ra_root/build/$preset"
  if [ ! -f "$dir/build.ninja" ]; then
    echo "== configuring preset $preset (first time: builds Kokkos into ~/.cache/ra-kokkos, a few minutes)"
    (cd "$ra_root" && cmake --preset "$preset") || { echo "configure of preset $preset failed" >&2; return 1; }
  fi
  echo "== building preset $preset ${*:-(all)}"
  local targets=()
  for t in "$@"; do targets+=(--target "$t"); done
  cmake --build "$dir" "${targets[@]}" --parallel "$(nproc)"
}
