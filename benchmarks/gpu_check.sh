#!/usr/bin/env bash
# The one GPU run (docs/gpu.md): every CUDA path of the ops, the engine, the exports and the scanner, and a short
# GPU table, in at most 8 minutes wall, on a machine that reaches no package registry, with a verdict that cannot
# be a false pass.
#
#   benchmarks/gpu_check.sh               run every stage (the GPU machine)
#   benchmarks/gpu_check.sh STAGE...      run these stages only (in the order below)
#   benchmarks/gpu_check.sh --list        the stages, their time limits and the budget; runs nothing
#   benchmarks/gpu_check.sh --dry-run     rehearse every stage on this machine (CPU: no CUDA asserted; the tests run
#                                         and skip, which the summary counts as failures, as it would on the GPU),
#                                         with each rehearsal's time beside its limit, then the budget
#   benchmarks/gpu_check.sh --prepare     HERE, before the GPU run: fetch what the scanner stage needs beyond the
#                                         GPU image (libpng/libtiff/nlohmann-json dev packages) into .gpu_deps/,
#                                         for the run tool's `carry`
#
# Stages, in order of value, each with its own time limit (seconds); a stage starts only with its limit left in
# the budget (else it is skipped, "no time left"), so the whole run ends within BUDGET:
#   env 10       GPU, driver, torch, CUDA, cuDNN; every stage's Python and system dependencies, checked up front:
#                a missing one skips that stage with the reason recorded
#   build 100    skipgan._C in place for this GPU's architecture only (FORCE_CUDA=1; 25 s with 6 jobs on the H200
#                machine, 2026-11-28)
#   ops 40       test_ops_build (all), the cuda-marked tests of the ops (score, conv, bias_act, compile)
#   engine 50    the cuda-marked tests of the engine (graphs, fp16/bf16, tf32), the knn map (test_patch_knn.py) and
#                training on CUDA
#   exports 120  the cuda-marked export tests: TorchScript in every precision, AOTInductor in fp32 and fp16 (each
#                package is a compile; TorchScript covers the same layers in bf16 / tf32), TensorRT where tensorrt
#                is installed
#   scanner 90   CMake build of libskipgan_ops WITH_CUDA + the scanner; its CUDA and device-contract tests
#   table 50     benchmarks/gpu_table.py: one row group per GPU goal, eager AMP and torch.compile beside the
#                engine (the compile rows last; max-autotune only if time is left)
#
# What comes back ($OUT, or a temporary folder printed at the end; at most 4 files): summary.txt (one line per
# stage and per test file, then the status), env.txt, logs.tar.gz (every log and junit XML, rewritten as each
# stage ends, so a timeout keeps everything before it) and table.json. The status is FAIL if anything failed, if a
# cuda-marked test SKIPPED (junitxml property cuda=1: on the GPU a skip is a check that did not run), if a test
# file has no result, if a stage failed or timed out, or if a table row disagrees with eager fp32.
# PYTHON=... picks the interpreter (default python3); MAX_JOBS the build's parallel jobs (default: all cores).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}
BUDGET=480
STAGES=(env:10 build:100 ops:40 engine:50 exports:120 scanner:90 table:50)
# the test files of each test stage (pytest -m cuda: the cuda-marked tests; test_ops_build: all of it)
OPS_FILES="test_ops_anomaly_score test_ops_conv_bn_act test_ops_bias_act test_ops_compile"
ENGINE_FILES="test_engine test_patch_knn test_train_cuda"
EXPORT_FILES="test_export"
SCANNER_FILES="test_scanner"
PY_DEPS="torch numpy scipy sklearn safetensors matplotlib PIL tifffile tqdm pytest setuptools"
SCANNER_DEBS="libpng-dev libpng16-16 zlib1g-dev libtiff-dev libtiff6 libjbig0 libjpeg62-turbo liblerc4 libwebp7
  libdeflate0 nlohmann-json3-dev"

limit_of() { local s; for s in "${STAGES[@]}"; do [[ ${s%%:*} == "$1" ]] && echo "${s#*:}"; done; }
files_of() {
  case $1 in ops) echo "test_ops_build $OPS_FILES" ;; engine) echo "$ENGINE_FILES" ;;
    exports) echo "$EXPORT_FILES" ;; scanner) echo "$SCANNER_FILES" ;; esac
}

list_stages() {
  local total=0 s
  echo "stages (in order; seconds):"
  for s in "${STAGES[@]}"; do
    printf '  %-8s %4s s  %s\n' "${s%%:*}" "${s#*:}" "$(files_of "${s%%:*}")"
    total=$((total + ${s#*:}))
  done
  echo "budget: $total s of the stages' limits, within $BUDGET s (8 minutes) for the whole run"
}

# ---------------------------------------------------------------------------------------------- dependencies
# One line per missing dependency of a stage (empty: all there). Checked up front for every stage.
missing_for() {
  case $1 in
    env)  # (nvidia-smi is only reported: torch's view of the GPU is what counts)
      "$PY" -c 'import torch' 2>/dev/null || echo "python: torch" ;;
    build)
      local nvcc=${CUDA_HOME:-/usr/local/cuda}/bin/nvcc
      [[ -x $nvcc ]] || command -v nvcc >/dev/null || echo "system: nvcc (the CUDA toolkit; set CUDA_HOME)"
      command -v "${CXX:-g++}" >/dev/null || command -v /usr/bin/g++ >/dev/null || echo "system: a C++ compiler"
      "$PY" -c 'import setuptools, sysconfig, os; assert os.path.exists(os.path.join(sysconfig.get_paths()["include"],
        "Python.h"))' 2>/dev/null || echo "python: setuptools and the Python headers"
      "$PY" -c 'import torch; assert torch.version.cuda' 2>/dev/null || echo "python: a CUDA build of torch" ;;
    ops | engine | exports)
      local m
      for m in $PY_DEPS; do "$PY" -c "import $m" 2>/dev/null || echo "python: $m"; done
      [[ $1 == exports ]] && { "$PY" -c 'import triton' 2>/dev/null || echo "python: triton (AOTInductor on CUDA)"; } ;;
    scanner)
      command -v cmake >/dev/null || echo "system: cmake"
      local h
      for h in png.h zlib.h tiffio.h nlohmann/json.hpp; do
        find_header "$h" || echo "system: $h (carry it: benchmarks/gpu_check.sh --prepare here, then carry .gpu_deps)"
      done ;;
    table)
      "$PY" -c 'import torch' 2>/dev/null || echo "python: torch" ;;
  esac
}

find_header() {  # in the system's include folders or in the carried packages (unpacked by use_carried_deps)
  local d
  for d in /usr/include /usr/include/x86_64-linux-gnu /usr/local/include ${CARRIED:+$CARRIED/usr/include} \
           ${CARRIED:+$CARRIED/usr/include/x86_64-linux-gnu}; do
    [[ -e $d/$1 ]] && return 0
  done
  return 1
}

use_carried_deps() {  # unpack .gpu_deps/*.deb (from --prepare) into a private prefix and point the tools at it
  compgen -G "$ROOT/.gpu_deps/*.deb" >/dev/null || return 0
  CARRIED=$WORK/deps
  mkdir -p "$CARRIED"
  local f
  for f in "$ROOT"/.gpu_deps/*.deb; do dpkg-deb -x "$f" "$CARRIED" || echo "could not unpack $f" >&2; done
  local lib=$CARRIED/usr/lib/x86_64-linux-gnu
  export CMAKE_PREFIX_PATH="$CARRIED/usr${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
  export CPATH="$CARRIED/usr/include:$CARRIED/usr/include/x86_64-linux-gnu${CPATH:+:$CPATH}"
  export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}" LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # the linker follows the carried libraries' own dependencies here too
  export LDFLAGS="-Wl,-rpath-link,$lib${LDFLAGS:+ $LDFLAGS}"
}

prepare() {
  mkdir -p .gpu_deps
  grep -qx '/.gpu_deps/' .git/info/exclude 2>/dev/null || echo '/.gpu_deps/' >>.git/info/exclude
  (cd .gpu_deps && apt-get download $SCANNER_DEBS) || { echo "apt-get download failed" >&2; return 1; }
  du -sh .gpu_deps
  echo "carry .gpu_deps in the device run (carry: [\".gpu_deps\"]); the scanner stage unpacks it there"
}

# ---------------------------------------------------------------------------------------------- the stages
# Each runs as `gpu_check.sh --stage NAME` under `timeout`; logs and junit XML go to $WORK.
pytest_files() {  # pytest_files STAGE [pytest args...]: one pytest per file (a crash in one cannot hide the others)
  local stage=$1 f sel
  shift
  for f in $(files_of "$stage"); do
    sel=(-m cuda)
    [[ $f == test_ops_build ]] && sel=()
    [[ $f == test_scanner ]] && sel=(-k "scanner_on_cuda or another_device")
    "$PY" -m pytest -p no:cacheprovider -q -rs "tests/$f.py" "${sel[@]}" "$@" --junitxml="$WORK/junit/$f.xml" \
      >"$WORK/$f.log" 2>&1
    echo "$f: $(tail -n 1 "$WORK/$f.log")"
  done
}

stage_env() {
  {
    date -u +%Y-%m-%dT%H:%M:%SZ
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1
    "$PY" - <<'EOF'
import platform, torch
print("python", platform.python_version(), "| torch", torch.__version__, "| CUDA", torch.version.cuda,
      "| cuDNN", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
print("GPU", torch.cuda.get_device_name() if torch.cuda.is_available() else "none visible to torch",
      "| capability", torch.cuda.get_device_capability() if torch.cuda.is_available() else None)
for m in ("tensorrt", "triton", "onnx", "onnxruntime", "pytest"):
    try:
        print(m, __import__(m).__version__)
    except Exception as e:  # noqa: BLE001
        print(m, "missing:", type(e).__name__)
EOF
    echo "cpu: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p'), $(nproc) cores"
  } >"$WORK/env.txt" 2>&1
  cp "$WORK/env.txt" "$OUT/env.txt"
  cat "$WORK/env.txt"
  [[ $MODE == dry ]] || "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' ||
    { echo "torch.cuda.is_available() is False: nothing on this machine can be checked"; return 1; }
}

stage_build() {
  # A compiler whose driver finds no shared libstdc++ (seen: /opt/gcc/bin/g++ on the GPU machines) would link it
  # statically, which setup.py refuses: fall back to the system compiler.
  if [[ "$(${CXX:-g++} -print-file-name=libstdc++.so 2>/dev/null)" != /* && -x /usr/bin/g++ ]]; then
    echo "CXX=${CXX:-g++} has no shared libstdc++; building with /usr/bin/g++"
    export CC=/usr/bin/gcc CXX=/usr/bin/g++
  fi
  local arch
  arch=$("$PY" -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())' 2>/dev/null) || arch=9.0
  export FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=$arch MAX_JOBS=${MAX_JOBS:-$(nproc)}
  if [[ $MODE == dry ]]; then  # setup.py's decisions (toolkit, compiler, FORCE_CUDA=1) without compiling
    "$PY" setup.py --name >"$WORK/build.log" 2>&1 || { tail -n 20 "$WORK/build.log"; return 1; }
    grep "setup.py:" "$WORK/build.log"
    return 0
  fi
  "$PY" setup.py build_ext --inplace >"$WORK/build.log" 2>&1 || { tail -n 40 "$WORK/build.log"; return 1; }
  "$PY" -c 'import skipgan.ops as o; i = o.build_info(); print(i); assert i["cuda"], "no CUDA kernels built"'
}

stage_ops() { pytest_files ops; }
stage_engine() { pytest_files engine; }

stage_exports() {
  local args=(-k "not (aoti and (bf16 or tf32))")  # AOTInductor: fp32 and fp16 (see the stage list above)
  if ! "$PY" -c 'import tensorrt' 2>/dev/null; then
    echo "tensorrt is not installed here: the TensorRT engine tests deselected (the ONNX graphs they build from are" \
         "checked against the parser's rules on the CPU)"
    args+=(--deselect tests/test_export.py::test_tensorrt_engine_matches
           --deselect tests/test_export.py::test_tensorrt_engine_of_the_models_own_score_and_map)
  fi
  pytest_files exports "${args[@]}"
}

stage_scanner() {
  export SKIPGAN_TEST_CMAKE_DIR=$WORK/cmake MAX_JOBS=${MAX_JOBS:-$(nproc)}
  if [[ $MODE == dry ]]; then  # finding torch, CUDA, the decoders and the JSON library, without compiling
    local cuda=OFF
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null && cuda=ON
    # torch is found through the Python on PATH (as tests/cmake_build.py arranges it)
    PATH="$("$PY" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH" \
      cmake -S . -B "$WORK/cmake" -DSKIPGAN_BUILD_SCANNER=ON -DWITH_CUDA=$cuda >"$WORK/scanner_configure.log" 2>&1 ||
      { tail -n 20 "$WORK/scanner_configure.log"; return 1; }
    echo "cmake configure ok (WITH_CUDA=$cuda)"
    return 0
  fi
  pytest_files scanner
}

stage_table() {
  local args=(--json "$OUT/table.json")
  [[ $MODE == dry ]] && args+=(--dry-run)
  "$PY" benchmarks/gpu_table.py "${args[@]}" 2>&1 | tee "$WORK/table.log"
  local rc=${PIPESTATUS[0]}
  if [[ $MODE != dry && $(( ${DEADLINE:-0} - $(date +%s) )) -gt 150 ]]; then  # max-autotune only with time left
    "$PY" benchmarks/gpu_table.py --compile max-autotune --json "$WORK/table_max_autotune.json" \
      >"$WORK/table_max_autotune.log" 2>&1 || true
  fi
  return "$rc"
}

# ---------------------------------------------------------------------------------------------- main
MODE=run
case "${1:-}" in
  --list) list_stages; exit 0 ;;
  --prepare) prepare; exit $? ;;
  --dry-run) MODE=dry; shift ;;
  --stage)  # internal: one stage, under the caller's timeout, with its WORK / OUT / mode
    MODE=$GPU_CHECK_MODE
    "stage_$2"
    exit $? ;;
esac
export GPU_CHECK_MODE=$MODE PY ROOT
WANT=" ${*:-${STAGES[*]%%:*}} "
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
WORK=$(mktemp -d)
export OUT WORK
mkdir -p "$WORK/junit"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"  # the in-place build under test, not an installed skipgan
unset SKIPGAN_OPS_LIBRARY
# A rehearsal on a CPU machine (2 cores, shared) runs the same stages several times slower: its limits are
# stretched by DRY_SLOWDOWN so that it rehearses rather than times out; the budget printed is the GPU run's.
SLOW=1
[[ $MODE == dry ]] && SLOW=${DRY_SLOWDOWN:-4}
START=$(date +%s)
DEADLINE=$((START + BUDGET * SLOW))
export DEADLINE
STATUS=0
SUMMARY=$OUT/summary.txt
: >"$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY"; }

say "gpu_check ($([[ $MODE == dry ]] && echo "DRY RUN on $(hostname): stages rehearsed, no GPU asserted" || echo run))" \
    "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
list_stages | tee -a "$SUMMARY"
use_carried_deps
declare -A SKIP
for s in "${STAGES[@]}"; do  # every stage's dependencies, up front
  name=${s%%:*}
  [[ $WANT == *" $name "* ]] || continue
  miss=$(missing_for "$name" | paste -sd ';' -)
  if [[ -n $miss ]]; then
    SKIP[$name]=$miss
    say "deps $name: MISSING $miss -> the stage is skipped"
  else
    say "deps $name: ok"
  fi
done

for s in "${STAGES[@]}"; do
  name=${s%%:*} limit=$((${s#*:} * SLOW))
  [[ $WANT == *" $name "* ]] || continue
  if [[ -n ${SKIP[$name]:-} ]]; then
    say "stage $name: SKIPPED (missing: ${SKIP[$name]})"
    STATUS=1
    continue
  fi
  left=$((DEADLINE - $(date +%s) - 5))
  if ((left < limit)); then
    say "stage $name: SKIPPED (no time left: $left s of the budget for a $limit s stage)"
    STATUS=1
    continue
  fi
  t0=$(date +%s)
  timeout --kill-after=5 "$limit" "$0" --stage "$name" >"$WORK/stage_$name.log" 2>&1
  rc=$?
  took=$(($(date +%s) - t0))
  tail -n 12 "$WORK/stage_$name.log"
  case $rc in
    0) say "stage $name: ok in $took s (limit $limit s)" ;;
    124 | 137) say "stage $name: TIMED OUT after $took s (limit $limit s)"; STATUS=1 ;;
    *) say "stage $name: FAILED (exit $rc) in $took s (limit $limit s)"; STATUS=1 ;;
  esac
  if [[ $rc != 0 && $MODE == run && ($name == env || $name == build) ]]; then  # nothing after it can be checked
    tar -czf "$OUT/logs.tar.gz" -C "$WORK" --exclude=cmake --exclude=deps .
    say "stopping: without the $name stage no later stage means anything; status FAIL"
    echo "files in $OUT"
    exit 1
  fi
  if [[ -n $(files_of "$name") && ! ($MODE == dry && $name == scanner) ]]; then
    xml=()
    for f in $(files_of "$name"); do xml+=("$WORK/junit/$f.xml"); done
    "$PY" benchmarks/gpu_summary.py junit "${xml[@]}" | sed 's/^/  /' | tee -a "$SUMMARY"
    ((PIPESTATUS[0] == 0)) || STATUS=1
  fi
  if [[ $name == table ]]; then
    "$PY" benchmarks/gpu_summary.py table "$OUT/table.json" | sed 's/^/  /' | tee -a "$SUMMARY"
    ((PIPESTATUS[0] == 0)) || STATUS=1
  fi
  tar -czf "$OUT/logs.tar.gz.part" -C "$WORK" --exclude=cmake --exclude=deps . && mv "$OUT/logs.tar.gz.part" "$OUT/logs.tar.gz"
done

total=$(($(date +%s) - START))
if [[ $MODE == dry ]]; then
  say "dry run: ${total} s on this machine (limits x$SLOW here); the GPU run's budget is the stages' limits above;" \
      "cuda-marked skips are expected without a GPU and are failures on the GPU machine, so the lines above read as a" \
      "GPU run without a GPU would"
  echo "files in $OUT"
  exit 0
fi
say "total $total s of $BUDGET s; status $([[ $STATUS == 0 ]] && echo PASS || echo FAIL)"
echo "files in $OUT"
exit $STATUS
