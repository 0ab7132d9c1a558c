#!/usr/bin/env bash
# v26 final: the tests the previous call's timeout cut ([cut], then
# [rowstats], [prefetch], [grid]), then Vulkan timings in separate processes
# with the SM clock logged (the fast / slow states), RA single-stage beside
# prefetch, PyTorch in the same call.
set -u
OUT=${OUT:-/tmp/ra-out}; mkdir -p $OUT/logs
work=$(mktemp -d); tar xf .device/vk.tar.xz -C $work; d=$work/vulkan-cm2
export LD_LIBRARY_PATH="$d/lib:${LD_LIBRARY_PATH:-}" VK_ICD_FILENAMES=$d/nvidia_egl_icd.json
echo "== $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader)"
t0=$SECONDS
for tag in "[rowstats]" "[prefetch]" "[grid]" "[cut]"; do
  RA_VK_VALIDATION=0 timeout 200 $d/test_vulkan "$tag" > "$OUT/logs/test-${tag//[\[\]]/}.log" 2>&1; echo "$tag rc $? $(tail -2 "$OUT/logs/test-${tag//[\[\]]/}.log" | head -1) ($((SECONDS - t0)) s)"
done
nvidia-smi --query-gpu=timestamp,clocks.sm,clocks.mem,power.draw,pstate,clocks_throttle_reasons.active --format=csv -lms 50 > $OUT/logs/clocks.csv 2>&1 &
smi=$!
rows=$OUT/rows.tsv; : > $rows
bench() {  # label prefetch variants passes T
  local log=$OUT/logs/$1.log
  echo "$(date +%H:%M:%S.%N) start $1" >> $OUT/logs/marks.txt
  RA_VK_PREFETCH=$2 RA_VK_VALIDATION=0 RA_VK_FORWARD=coopmat timeout 120 $d/ra-bench --backend vulkan --dtypes half \
    --variants $3 --passes $4 --B 8 --H 12 --T $5 --D 64 --reps 20 --warmup 5 --out $OUT/logs/$1 > $log 2>&1
  echo "$(date +%H:%M:%S.%N) end $1" >> $OUT/logs/marks.txt
  awk -v l="$1" '/^variant/{on=1;next} on&&NF==0{on=0} on&&NF>=12{t=$12; for(i=13;i<=NF;i++)t=t" "$i; printf "%s\t%s\t%s\t%s\t%s\t%s\n", l, $1, $2, $5, $6, t}' $log >> $rows
}
for r in 1 2 3; do
  [ $((SECONDS - t0)) -gt 330 ] && break
  bench r$r-T4096-pf1 1 sdpa_fused,ra_fused fwd,fwdbwd 4096
  bench r$r-T4096-ra-pf0 0 ra_fused fwd 4096
  bench r$r-T1024-pf1 1 sdpa_fused,ra_fused fwd,fwdbwd 1024
  echo "round $r at $((SECONDS - t0)) s"
done
kill $smi
for T in 1024 4096; do timeout 60 python3 scripts/torch_yardstick.py --T $T --dtypes float16 --variants torch_sdpa --out $OUT/torch-fp16-T$T.json 2>&1 | tail -2; done
sort $rows | awk -F'\t' '{print $1, $2, $3, $4, $5, substr($6,1,50)}'
echo "== SM clock (MHz) per run: min / median / max of the samples between its marks"
python3 - $OUT/logs/clocks.csv $OUT/logs/marks.txt <<'PY'
import sys, csv, datetime
rows = []
for r in csv.reader(open(sys.argv[1])):
    try:
        t = datetime.datetime.strptime(r[0].strip(), "%Y/%m/%d %H:%M:%S.%f").time(); rows.append((t, int(r[1].split()[0]), r[4].strip(), r[5].strip()))
    except Exception: pass
marks = [l.split() for l in open(sys.argv[2])]
st = {}
for ts, kind, lab in marks:
    t = datetime.datetime.strptime(ts[:15], "%H:%M:%S.%f").time()
    if kind == "start": st[lab] = t
    else:
        s = sorted(c for (tt, c, p, th) in rows if st[lab] <= tt <= t)
        ps = sorted(set(p for (tt, c, p, th) in rows if st[lab] <= tt <= t)); th = sorted(set(x for (tt, c, p, x) in rows if st[lab] <= tt <= t))
        if s: print(lab, s[0], s[len(s)//2], s[-1], len(s), ps, th)
PY
cp .device/vk9.sh $OUT/run.sh
tar czf $OUT/vk-logs.tgz -C $OUT logs && rm -rf $OUT/logs
