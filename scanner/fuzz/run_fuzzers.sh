#!/usr/bin/env bash
# Build the scanner's libFuzzer harnesses (ASan + UBSan) and run each for a bounded time; CI runs this.
#
#   scanner/fuzz/run_fuzzers.sh                      # decode 60 s, metadata 30 s, path_lines 20 s
#   scanner/fuzz/run_fuzzers.sh --scale 5            # five times as long (the runs recorded in benchmarks/RESULTS.md)
#   scanner/fuzz/run_fuzzers.sh --planted-bug        # build with an off-by-one in the PGM parser: must be caught
#
# A crash, leak, sanitizer report, out-of-memory (-rss_limit_mb) or hang (-timeout) fails the run and prints the
# reproducer: the input is kept under build/fuzz-artifacts/ (add it to tests/data/fuzz/ once fixed). Inputs the
# fuzzer finds go to a scratch corpus, never into the committed seeds (scanner/fuzz/corpus/, make_corpus.py).
# Needs clang with libFuzzer (Debian: apt-get install clang-14 libclang-rt-14-dev).
set -euo pipefail
cd "$(dirname "$0")/../.."
scale=1 planted=0
while [ $# -gt 0 ]; do
  case "$1" in
    --scale) scale="$2"; shift 2 ;;
    --planted-bug) planted=1; shift ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "run_fuzzers.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
CXX_FUZZ=${CXX_FUZZ:-$(command -v clang++-14 || command -v clang++ || true)}
CC_FUZZ=${CC_FUZZ:-$(command -v clang-14 || command -v clang || true)}
if [ -z "$CXX_FUZZ" ]; then
  echo "run_fuzzers.sh: clang++ not found; apt-get install clang-14 libclang-rt-14-dev" >&2
  exit 2
fi

build=build/fuzz$([ $planted = 1 ] && echo -planted || true)
CC=$CC_FUZZ CXX=$CXX_FUZZ cmake -S . -B "$build" -DSKIPGAN_BUILD_FUZZERS=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSKIPGAN_FUZZ_PLANTED_BUG=$([ $planted = 1 ] && echo ON || echo OFF) > "$build.configure.log" 2>&1 \
  || { cat "$build.configure.log"; exit 1; }
cmake --build "$build" -j"${MAX_JOBS:-2}" > "$build.build.log" 2>&1 || { tail -40 "$build.build.log"; exit 1; }
bin=$build/scanner/fuzz
artifacts=build/fuzz-artifacts$([ $planted = 1 ] && echo -planted || true)
mkdir -p "$artifacts"

# harness seconds: the bounded budget of each harness at --scale 1 (CI: under 2 min of fuzzing in all)
run_one() {  # name seconds -> 0 clean, 1 found something
  local name=$1 seconds=$2 work log
  work=$(mktemp -d)
  log=$artifacts/$name.log
  local seeds=scanner/fuzz/corpus/${name%_fuzzer}
  # -max_len: inputs up to 64 KiB (headers and small images); -rss_limit_mb: any one input using more memory is
  # a finding; -timeout: any one input taking longer is a hang; leaks are findings (ASan's LeakSanitizer).
  set +e
  local max_len=65536
  [ "$name" = path_lines_fuzzer ] && max_len=16384  # a path is at most 4 KiB: shorter inputs, more executions
  "$bin/$name" -max_total_time="$seconds" -max_len=$max_len -rss_limit_mb=2048 -timeout=10 -detect_leaks=1 \
    -dict=scanner/fuzz/${name%_fuzzer}.dict -artifact_prefix="$artifacts/$name-" -print_final_stats=1 \
    "$work" "$seeds" > "$log" 2>&1
  local rc=$?
  set -e
  rm -rf "$work"
  local execs cov ft
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo 0)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*' || echo 0)
  echo "fuzz $name: budget ${seconds} s, ${execs:-0} executions, ${cov:-0} edges, ${ft:-0} features, exit $rc"
  if [ $rc != 0 ]; then
    grep -E 'ERROR: |SUMMARY: |Test unit written to|runtime error' "$log" | head -8
    local unit
    unit=$(grep -o "Test unit written to .*" "$log" | head -1 | sed 's/Test unit written to //')
    if [ -n "$unit" ] && [ -f "$unit" ]; then
      echo "reproduce: $bin/$name $unit   (first bytes below)"
      od -A d -t x1 "$unit" | head -4
    fi
    return 1
  fi
  return 0
}

if [ $planted = 1 ]; then
  # The planted off-by-one must be found within the bounded time, as a heap-buffer-overflow.
  if run_one decode_fuzzer $((60 * scale)); then
    echo "planted bug NOT caught: the fuzz run would miss an off-by-one in the PGM parser" >&2
    exit 1
  fi
  grep -q "heap-buffer-overflow" "$artifacts/decode_fuzzer.log" || { echo "planted bug: unexpected finding" >&2; exit 1; }
  echo "planted bug caught (heap-buffer-overflow in decode_pnm), as it must be"
  exit 0
fi

failed=0
run_one decode_fuzzer $((60 * scale)) || failed=1
run_one metadata_fuzzer $((30 * scale)) || failed=1
run_one path_lines_fuzzer $((20 * scale)) || failed=1
exit $failed
