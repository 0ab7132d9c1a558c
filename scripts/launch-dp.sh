#!/usr/bin/env bash
# Data parallel on one node: runs N copies of a command (normally ra-train)
# as the ranks of one job, rank i on GPU i, and waits for all of them.
#
#   scripts/launch-dp.sh N build/cuda-h100/experiments/ra-train --model gpt2-124m ...
#
# Each copy gets RA_RANK, RA_WORLD_SIZE, RA_LOCAL_RANK, KOKKOS_DEVICE_ID and a
# shared RA_JOB_ID (experiments/data_parallel.hpp): the ranks meet through a
# file in the run's folder and average gradients with NCCL. Rank 0 writes the
# run file, checkpoints and progress; --batch is per rank, so the global
# batch is N times it. If one rank fails, the others are stopped and the
# first failure's exit status is returned. On a cluster use srun (or mpirun)
# instead: ra-train reads SLURM_PROCID/SLURM_NTASKS/SLURM_LOCALID itself.
# NVLink multicast (NVLS) stays off unless NCCL_NVLS_ENABLE is set.
set -uo pipefail
if [ $# -lt 2 ] || [ "$1" = "-h" ] || [ "$1" = "--help" ]; then
  sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'
  [ $# -ge 1 ] && { [ "$1" = "-h" ] || [ "$1" = "--help" ]; } && exit 0
  exit 2
fi
n=$1; shift
if ! [[ "$n" =~ ^[1-9][0-9]*$ ]]; then
  echo "launch-dp: the number of ranks must be a positive integer, got '$n'" >&2; exit 2
fi
if command -v nvidia-smi >/dev/null 2>&1; then
  gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU')
  if [ "$gpus" -gt 0 ] && [ "$n" -gt "$gpus" ]; then
    echo "launch-dp: $n ranks but this node has $gpus GPU(s)" >&2; exit 2
  fi
fi
export RA_WORLD_SIZE=$n RA_JOB_ID="dp-$(hostname)-$$-$(date +%s%N)" NCCL_NVLS_ENABLE=${NCCL_NVLS_ENABLE:-0}
pids=()
for ((i = 0; i < n; ++i)); do
  RA_RANK=$i RA_LOCAL_RANK=$i KOKKOS_DEVICE_ID=$i "$@" &
  pids+=($!)
done
stop_all() { kill -TERM "${pids[@]}" 2>/dev/null; }
# A signal to the launcher (Slurm's time limit, Ctrl-C) goes on to every rank,
# which then finish their step and checkpoint (ra-train's SIGTERM handling);
# the launcher waits for that instead of leaving them behind.
signalled=0
trap 'signalled=1; stop_all' INT TERM
status=0
# wait -n: the first rank to end decides whether the others are stopped.
left=$n
while [ $left -gt 0 ]; do
  wait -n
  rc=$?
  if [ $signalled -eq 1 ] && [ $rc -gt 128 ] && jobs -r | grep -q .; then
    continue  # the trap interrupted wait; the ranks are still finishing
  fi
  left=$((left - 1))
  if [ $rc -ne 0 ] && [ $status -eq 0 ]; then
    status=$rc
    [ $signalled -eq 0 ] && echo "launch-dp: a rank exited with status $rc; stopping the others" >&2
    stop_all
  fi
done
exit $status
