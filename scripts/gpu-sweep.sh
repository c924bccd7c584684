#!/usr/bin/env bash
# One call on a 4-GPU machine: the full-size synthetic GLM-5.1 REAP-160 --bench sweep (issue 9).
#   bash scripts/gpu-sweep.sh [--tests] NAME CONTEXTS SECONDS [glmrun flags...]   (more runs: separate with --)
# e.g. bash scripts/gpu-sweep.sh dsa 256,4k,16k,32k,64k,128k 520 --kv-type fp8
# MODEL=dir and TP=n replace the model (default models/glm-5.1-reap-160) and the rank count (all GPUs).
# --tests first runs the CUDA tests (test-cuda on GPU 0, test-tp-model and test-allreduce on every GPU).
# VARIANT="CUDA flags" builds a second glmrun with them (e.g. -DGLM_CUBLAS=0); runs whose NAME starts
# with "variant" use it (A/B in one call).
# Each run gets SIGINT after SECONDS (or at until-N: N seconds after the script started), so the
# bench prints the contexts it finished. Logs to $OUT
# (NAME.md, NAME.json, NAME.err, summary.txt). Carry .deps (scripts/stage-deps.sh).
set -uo pipefail
# Everything is written to a scratch folder; at exit summary.txt and the runs' .md tables are copied to
# $OUT and the rest packed into logs.tgz (the device tool brings back at most 8 files).
RESULT_DIR="${OUT:-/tmp/glmrun-out}"
FINAL_OUT=/tmp/gpu-sweep-logs
rm -rf "$FINAL_OUT"; mkdir -p "$FINAL_OUT" "$RESULT_DIR"
finish() {
  cp "$FINAL_OUT/summary.txt" "$RESULT_DIR/" 2>/dev/null
  ls "$FINAL_OUT"/*.md 2>/dev/null | head -6 | xargs -r -I{} cp {} "$RESULT_DIR/"
  tar czf "$RESULT_DIR/logs.tgz" -C "$FINAL_OUT" . 2>/dev/null
}
trap finish EXIT
export PATH=/usr/local/cuda/bin:$PATH NCCL_NVLS_ENABLE=0
log() { echo "== $*" | tee -a "$FINAL_OUT/summary.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$FINAL_OUT/summary.txt"
N=$(nvidia-smi -L | wc -l)
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGLMRUN_DEPS_DIR="$PWD/.deps" > /tmp/configure.log 2>&1 || { tail -30 /tmp/configure.log; exit 1; }
TESTS=0
[[ "${1:-}" == --tests ]] && { TESTS=1; shift; }
targets=(glmrun)
[[ $TESTS == 1 ]] && targets+=(test-cuda test-tp-model test-allreduce)
cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}" > /tmp/build.log 2>&1 || { grep -E "error" /tmp/build.log | head -30; exit 1; }
log "build ok ($N GPUs, ${SECONDS}s)"
if [[ -n ${VARIANT:-} ]]; then
  cmake -S . -B build-variant -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DCMAKE_CUDA_FLAGS="$VARIANT" -DGLMRUN_DEPS_DIR="$PWD/.deps" > /tmp/configure-variant.log 2>&1 &&
    cmake --build build-variant -j "$(nproc)" --target glmrun > /tmp/build-variant.log 2>&1 ||
    { grep -E "error" /tmp/build-variant.log | head -10; log "variant build failed"; }
  log "variant build ($VARIANT) done (${SECONDS}s)"
fi
if [[ $TESTS == 1 ]]; then
  log "tests: test-cuda (every op, graphs, fixtures, bundled model) and the tensor-parallel tests"
  CUDA_VISIBLE_DEVICES=0 timeout 300 build-gpu/tests/cuda/test-cuda > "$FINAL_OUT/test-cuda.log" 2>&1 &
  cuda_pid=$!
  timeout 300 build-gpu/tests/tp/test-tp-model > "$FINAL_OUT/test-tp-model.log" 2>&1
  echo "test-tp-model rc=$?" | tee -a "$FINAL_OUT/summary.txt"
  timeout 120 build-gpu/tests/tp/test-allreduce > "$FINAL_OUT/test-allreduce.log" 2>&1
  echo "test-allreduce rc=$?" | tee -a "$FINAL_OUT/summary.txt"
  wait $cuda_pid
  echo "test-cuda rc=$?" | tee -a "$FINAL_OUT/summary.txt"
  for f in test-cuda test-tp-model test-allreduce; do
    grep -E "^\[doctest\] (test cases|assertions)|FATAL|ERROR" -A2 "$FINAL_OUT/$f.log" | head -12 | sed "s/^/$f: /" | tee -a "$FINAL_OUT/summary.txt"
  done
fi
while [[ $# -ge 3 ]]; do
  name=$1 ctx=$2 secs=$3; shift 3
  # "until-N": SIGINT N seconds after this script started (the device call's own limit is fixed)
  [[ $secs == until-* ]] && secs=$(( ${secs#until-} - SECONDS ))
  flags=()
  while [[ $# -gt 0 && $1 != -- ]]; do flags+=("$1"); shift; done
  [[ $# -gt 0 ]] && shift
  (( secs < 30 )) && { log "$name: skipped, no time left"; continue; }
  max=$(python3 -c "import sys;v=[int(x[:-1])*1024 if x.endswith('k') else int(x) for x in sys.argv[1].split(',')];print(max(v))" "$ctx")
  log "$name (${SECONDS}s): ${MODEL:-models/glm-5.1-reap-160} -tp ${TP:-$N} (unless given) --bench-ctx $ctx -c $max ${flags[*]}"
  # A run's own -m / -tp (or --gpus) replace MODEL / TP.
  base=()
  [[ " ${flags[*]} " == *" -m "* ]] || base+=(-m "${MODEL:-models/glm-5.1-reap-160}")
  [[ " ${flags[*]} " == *" -tp "* || " ${flags[*]} " == *" --gpus "* ]] || base+=(-tp "${TP:-$N}")
  bin=build-gpu/glmrun
  [[ $name == variant* ]] && bin=build-variant/glmrun
  timeout -s INT -k 30 "$secs" $bin "${base[@]}" --synthetic --bench --bench-ctx "$ctx" \
    -c "$max" --bench-reps 1 -n 64 --bench-json "$FINAL_OUT/$name.json" "${flags[@]}" > "$FINAL_OUT/$name.md" 2> "$FINAL_OUT/$name.err"
  echo "rc=$?" | tee -a "$FINAL_OUT/summary.txt"
  grep -E "bench: context|mtp:|error|Error" "$FINAL_OUT/$name.err" | tail -12 | tee -a "$FINAL_OUT/summary.txt"
done
