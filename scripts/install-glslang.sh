#!/usr/bin/env bash
# Builds glslang 15.1's glslangValidator from source into the dependency cache,
#
#   ${RA_DEPS_CACHE:-~/.cache/ra-kokkos/deps}/glslang-15.1.0/bin/glslangValidator
#
# for the Vulkan shaders that need GL_KHR_cooperative_matrix and
# GL_NV_cooperative_matrix2 (backends/vulkan/shaders/fwd_cm2.comp), which
# Debian 12's glslc 2023.2 / glslang 12 reject. Debian 13's glslang-tools has
# 15.1 but its binaries need glibc 2.38 (Debian 12: 2.36), so the source of that
# very package is built here instead: nothing is installed system-wide.
#
# Idempotent (an existing build is kept). Never fatal: when the source cannot
# be fetched or the build fails it says so and exits 0; CMake then leaves the
# coopmat2 shaders out (backends/vulkan/CMakeLists.txt) and everything else
# builds as before. Takes ~2.5 minutes on 2 cores, once (-j1: the build shares
# the machine; RA_GLSLANG_JOBS overrides).
set -uo pipefail

version=15.1.0
debian_version=15.1.0+1.4.309.0
archive=glslang_${debian_version}.orig.tar.gz
sha256=180f17ea51e6b71bf57b9e0fea78ba3ecd76e3ec8e4c91f0771b922eb22bf4b2
# The Debian 13 (trixie) source package's upstream tarball; snapshot.debian.org
# keeps it (by its SHA-1) once trixie moves on to a newer glslang.
urls=("https://deb.debian.org/debian/pool/main/g/glslang/${archive}"
      "https://snapshot.debian.org/file/b9e46f6b4b11492d1c370b49a18c9ff1faf7ff2b")

ra_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${RA_DEPS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/ra-kokkos/deps}
prefix=$cache/glslang-$version
archives=${RA_DEPS_ARCHIVES:-$ra_root/../shared/deps}
jobs=${RA_GLSLANG_JOBS:-1}

skip() {
  echo "install-glslang: $*" >&2
  echo "install-glslang: skipped; the Vulkan coopmat2 shaders will not be built (everything else is unaffected)" >&2
  exit 0
}

if [ -x "$prefix/bin/glslangValidator" ] && [ -f "$prefix/.ra-complete" ]; then
  echo "install-glslang: glslang $version present ($prefix/bin/glslangValidator)"
  exit 0
fi
for tool in cmake ninja c++ python3 curl sha256sum; do
  command -v "$tool" >/dev/null 2>&1 || skip "'$tool' not found (run scripts/install-deps.sh first)"
done

mkdir -p "$cache" || skip "cannot create $cache"
work=$(mktemp -d "$cache/glslang-$version.tmp.XXXXXX") || skip "cannot create a work folder in $cache"
trap 'rm -rf "$work"' EXIT

# Source: a local copy beside the Kokkos archives first, then the network.
src_tar=$archives/$archive
if [ ! -f "$src_tar" ]; then
  src_tar=$work/$archive
  for url in "${urls[@]}"; do
    echo "install-glslang: downloading $url"
    if curl -fsSL --retry 2 --connect-timeout 20 -o "$src_tar" "$url"; then break; fi
    rm -f "$src_tar"
  done
  [ -f "$src_tar" ] || skip "cannot download $archive (no network to deb.debian.org / snapshot.debian.org?)"
fi
got=$(sha256sum "$src_tar" | cut -d' ' -f1)
[ "$got" = "$sha256" ] || skip "$src_tar has SHA256 $got, expected $sha256"

tar xzf "$src_tar" -C "$work" || skip "cannot unpack $src_tar"
src=$work/glslang-$debian_version

# Only the standalone compiler: no SPIR-V optimizer (ENABLE_OPT=OFF, so no
# SPIRV-Tools; the project's shaders are compiled without -O by it anyway),
# no HLSL front end, no remapper, no tests, static libraries (one binary).
echo "install-glslang: building glslangValidator $version into $prefix (once; -j$jobs; log $prefix.build.log)"
t0=$(date +%s)
{
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DENABLE_OPT=OFF -DENABLE_HLSL=OFF -DENABLE_SPVREMAPPER=OFF \
        -DGLSLANG_TESTS=OFF -DBUILD_TESTING=OFF -DBUILD_EXTERNAL=OFF -DBUILD_SHARED_LIBS=OFF \
        -DGLSLANG_ENABLE_INSTALL=OFF &&
  cmake --build "$work/build" --target glslang-standalone --parallel "$jobs"
} >"$prefix.build.log" 2>&1 || skip "the build failed; see $prefix.build.log"
t1=$(date +%s)

rm -rf "$prefix"
mkdir -p "$prefix/bin" &&
  cp "$work/build/StandAlone/glslang" "$prefix/bin/glslangValidator" || skip "cannot install into $prefix"
"$prefix/bin/glslangValidator" --version >/dev/null 2>&1 || { rm -rf "$prefix"; skip "the built glslangValidator does not run"; }
echo "$debian_version built in $((t1 - t0)) s" >"$prefix/.ra-complete"
echo "install-glslang: built in $((t1 - t0)) s: $prefix/bin/glslangValidator"
