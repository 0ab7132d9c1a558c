#!/usr/bin/env bash
# Which validation messages does test_vulkan (validation on) raise on the
# H100, with the new fwd_cm staging and with the binaries of 5bb03ff?
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT
work=$(mktemp -d); tar xf .device/vulkan-cm2.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_LAYER_PATH="$d/layers" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
summ() { grep -E '^test cases|^assertions|All tests passed' $1; grep -E '^Vulkan:|FAILED|spirv-opt|VUID|^  [A-Za-z].*(error|Error)' $1 | uniq | head -${2:-40} | cut -c1-300; }
s0=$SECONDS
for run in new:1 new:0 base:0; do
  b=${run%:*}; cm2=${run#*:}; {
    echo "== test_vulkan-$b, whole file, validation on, RA_VK_NO_CM2=$cm2"
    RA_VK_NO_CM2=$cm2 timeout 200 .device/test_vulkan-$b > $OUT/tv-$b-nocm2$cm2.log 2>&1; echo "rc=$? ($((SECONDS-s0)) s)"
    summ $OUT/tv-$b-nocm2$cm2.log 30
  }
done
echo "== [pipeline-stats], new, -s"
timeout 60 .device/test_vulkan-new "[pipeline-stats]" > $OUT/tv-stats.log 2>&1; echo rc=$?
grep -v '^\.\.\.' $OUT/tv-stats.log | tail -40 | cut -c1-400
cd $OUT && tar czf logs.tgz tv-*.log && rm tv-*.log
