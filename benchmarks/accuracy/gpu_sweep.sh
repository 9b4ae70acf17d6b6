#!/usr/bin/env bash
# Accuracy recipes on one GPU, several at once: each recipe's ten classes are split over two processes
# (a small model leaves a big GPU mostly idle, so processes overlap well). Each process stops at the time limit;
# finished classes are already saved, one JSON per recipe half (merge them with digits.py --merge).
# Usage: benchmarks/accuracy/gpu_sweep.sh RESULTS_DIR SECONDS RECIPE[+RECIPE...]...
#   (recipes joined by + run one after the other in the same two processes)
set -uo pipefail
cd "$(dirname "$0")/../.."
dir=$1 limit=$2
shift 2
mkdir -p "$dir"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=${OMP_NUM_THREADS:-1} PYTHONUNBUFFERED=1
for group in "$@"; do
  for half in "0 1 2 3 4" "5 6 7 8 9"; do
    part="$dir/part${half:0:1}"
    mkdir -p "$part"
    (
      for recipe in ${group//+/ }; do
        # shellcheck disable=SC2086
        "${PYTHON:-python3}" benchmarks/accuracy/digits.py --recipe "$recipe" --device cuda --results "$part" \
          --classes $half >>"$dir/sweep.log" 2>&1
      done
    ) &
  done
done
# the time limit covers the whole sweep: stop what is still running
( sleep "$limit"; pkill -f "benchmarks/accuracy/digits.py --recipe" ) & killer=$!
wait $(jobs -p | grep -v "^$killer$")
kill $killer 2>/dev/null
echo "sweep done in ${SECONDS} s" >>"$dir/sweep.log"
