#!/usr/bin/env bash
# The main job on its built-in default: build if needed, then run ra-bench
# (every variant, forward and forward+backward) on this machine's default
# shape; prints a table and writes runs/ra-bench-*.h5 and .json.
# Any arguments go to ra-bench (see: scripts/run.sh --help).
# `scripts/run.sh compare [options]` runs the training comparison instead
# (SDPA vs RA vs hybrid for the same wall-clock budget: scripts/compare.sh).
set -euo pipefail
if [ "${1:-}" = compare ]; then shift; exec bash "$(dirname "$0")/compare.sh" "$@"; fi
source "$(dirname "$0")/common.sh"
bash "$ra_root/scripts/install-deps.sh"
export OMP_PROC_BIND=${OMP_PROC_BIND:-spread} OMP_PLACES=${OMP_PLACES:-threads}
preset=$(ra_pick_preset)
ra_build "$preset" ra-bench
cd "$ra_root"
exec "build/$preset/experiments/ra-bench" "$@"
