#!/usr/bin/env bash
# One run on a GPU machine does every GPU check of the native ops in under 8 minutes (the step time limits
# add up to 450 s):
#   1. build skipgan._C in place against THIS machine's torch, for this GPU's architecture only (fast);
#   2. run the ops tests (the CUDA ones are skipped everywhere else);
#   3. the exports on CUDA (TorchScript and AOTInductor in fp32/fp16/bf16; TensorRT when tensorrt is installed);
#   4. run the ops benchmarks on the GPU (pytest-benchmark, if installed).
#   (optional stage `scanner`: CMake build of libskipgan_ops WITH_CUDA + the C++ scanner, and its tests on CUDA.)
# Logs go to $OUT when set (else a temporary folder, printed at the end). Exit status: non-zero if the build
# or the tests failed. Usage: benchmarks/gpu_check.sh [build] [tests] [exports] [bench] [scanner]
# (no argument: build tests exports bench;
# PYTHON=... picks the interpreter). The stages split so that the benchmark can wait for a GPU left idle.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=${OUT:-$(mktemp -d)}
LOG=$LOG/gpu_check
mkdir -p "$LOG"
STAGES=${*:-build tests exports bench}
want() { [[ " $STAGES " == *" $1 "* ]]; }
start=$SECONDS
status=0

step() {  # step NAME SECONDS CMD...: run with a time limit, log to $LOG/NAME.log, record the outcome
  local name=$1 limit=$2
  shift 2
  local t0=$SECONDS
  timeout --kill-after=10 "$limit" "$@" >"$LOG/$name.log" 2>&1
  local rc=$?
  echo "$name: exit $rc in $((SECONDS - t0)) s" | tee -a "$LOG/summary.txt"
  return $rc
}

want build && {
  date -u +%Y-%m-%dT%H:%M:%SZ
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
  "$PY" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name())'
  echo "cpu: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores"
} >"$LOG/env.txt" 2>&1
want build && cat "$LOG/env.txt"

# A compiler whose driver finds no shared libstdc++ (seen: the /opt/gcc/bin/g++ wrapper that CXX names on the
# GPU machines) would link libstdc++ statically, which setup.py refuses: fall back to the system compiler.
if [[ "$(${CXX:-g++} -print-file-name=libstdc++.so 2>/dev/null)" != /* && -x /usr/bin/g++ ]]; then
  echo "CXX=${CXX:-g++} has no shared libstdc++; building with /usr/bin/g++" | tee -a "$LOG/summary.txt"
  export CC=/usr/bin/gcc CXX=/usr/bin/g++
fi

# This GPU's architecture only: one -gencode keeps nvcc to a few seconds per file.
ARCH=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())') || ARCH="9.0"
export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$ARCH" MAX_JOBS=${MAX_JOBS:-$(nproc)}
# the in-place build under test, not some installed skipgan
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
unset SKIPGAN_OPS_LIBRARY

if want build && ! step build 180 "$PY" setup.py build_ext --inplace; then
  tail -n 40 "$LOG/build.log"
  echo "build failed; logs in $LOG"
  exit 1
fi
"$PY" -c 'import skipgan.ops as o; i = o.build_info(); print(i); assert i["cuda"], "no CUDA kernels built"' \
  2>&1 | tee -a "$LOG/summary.txt" || status=1

# All ops tests (CPU and CUDA). -p no:cacheprovider: the tree may be read-only / shared.
if want tests; then
  # one pytest per file: a crash in one (a segfault kills the interpreter) must not hide the others' results
  # test_ops_build first: it names a broken build (e.g. libstdc++ linked statically) before the ops tests crash on it
  for t in ops_build ops_anomaly_score ops_conv_bn_act ops_bias_act ops_compile ops_model_score engine train_cuda; do
    step "test_$t" 120 "$PY" -m pytest -p no:cacheprovider -q -rs "tests/test_$t.py" || status=1
    tail -n 3 "$LOG/test_$t.log"
  done
fi

# Exports on the GPU: scores against the CUDA engine; the TensorRT build where tensorrt is installed.
if want exports; then
  step test_export_cuda 240 "$PY" -m pytest -p no:cacheprovider -q -rs tests/test_export.py -k "cuda or tensorrt" \
    || status=1
  tail -n 3 "$LOG/test_export_cuda.log"
fi

if ! want bench; then
  :
elif "$PY" -c 'import pytest_benchmark' 2>/dev/null; then
  step bench 120 "$PY" -m pytest -p no:cacheprovider -q benchmarks/bench_ops_anomaly_score.py \
    benchmarks/bench_ops_conv_bn_act.py --benchmark-columns=median,iqr,rounds \
    --benchmark-json="$LOG/bench.json"
  grep -A 150 "skipgan ops: medians" "$LOG/bench.log" | grep -v "^-* benchmark\|^Name\|^---" | head -n 100
else
  echo "bench: skipped (pytest-benchmark not installed)" | tee -a "$LOG/summary.txt"
fi
# The fused engine against its peers on the GPU (CUDA graphs; fp16/bf16/fp32; eager autocast channels_last,
# torch.compile max-autotune): the engine issue's GPU table. Runtimes that are CPU-only report "unavailable".
if want bench; then
  step bench_engine 200 "$PY" -m skipgan.cli bench --device cuda --batch 1,64,256 --isize 32,256 --probes 0,8 \
    --runtimes eager,eager_channels_last,eager_autocast_bf16,torch_compile,engine_fp32,engine_bf16 \
    --min-time 1 --json "$LOG/bench_engine.json"
  tail -n 60 "$LOG/bench_engine.log"
fi

# The C++ scanner on CUDA (a CMake build of the CUDA kernels and the scanner: minutes; not in the default stages).
if want scanner; then
  step test_scanner_cuda 300 "$PY" -m pytest -p no:cacheprovider -q -rs tests/test_scanner.py -k cuda || status=1
  tail -n 3 "$LOG/test_scanner_cuda.log"
fi

echo "total $((SECONDS - start)) s; status $status; logs in $LOG" | tee -a "$LOG/summary.txt"
exit $status
