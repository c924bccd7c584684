#!/usr/bin/env bash
# One call on a one-GPU machine: one TP = 4 rank of the full-size model (bench/configs/glm-5.1-rank4,
# synthetic weights; the same kernels on the same shapes, without the all-reduces) -- decode and
# prefill from --bench, and the decode step's kernels from Nsight Compute.
#   bash scripts/gpu-rank4.sh [--tests] [--ncu] [--ncu-detail REGEX] [--variant CUDA_FLAGS] [FLAGS...] [-- FLAGS...]...
# --variant builds a second glmrun with extra CUDA compile flags (e.g. -DGLM_ATTN_MIN_TILES=1) and
# runs the first FLAGS group with it too.
# Each group of FLAGS (separated by --) is one --bench run with those glmrun flags (A/B on one binary).
# --tests first runs test-cuda (--sanitize: and compute-sanitizer memcheck over every op case); --kernels
# runs the kernel benchmark's prefill GEMMs (glmrun-bench-kernels --only prefill, and the variant's); --ncu-detail
# profiles two decode launches of the kernels matching REGEX with Nsight Compute's full sections.
# CTX (default 256,4k) and MAXC (default 4096) set --bench-ctx and -c; SANITIZE_FILTER=TEXT limits
# memcheck to the op cases whose name contains TEXT.
# Logs to $OUT (summary.txt, bench.md, ncu-decode.txt, logs.tgz). Carry .deps (scripts/stage-deps.sh).
set -uo pipefail
RESULT_DIR="${OUT:-/tmp/glmrun-out}"
LOGS=/tmp/gpu-rank4-logs
rm -rf "$LOGS"; mkdir -p "$LOGS" "$RESULT_DIR"
finish() {
  for f in summary.txt bench.md ncu-decode.txt ncu-detail.txt; do [[ -f "$LOGS/$f" ]] && cp "$LOGS/$f" "$RESULT_DIR/"; done
  tar czf "$RESULT_DIR/logs.tgz" -C "$LOGS" . 2>/dev/null
}
trap finish EXIT
export PATH=/usr/local/cuda/bin:$PATH
log() { echo "== $*" | tee -a "$LOGS/summary.txt"; }
TESTS=0 SANITIZE=0 NCU=0 DETAIL= VARIANT= KERNELS=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --tests) TESTS=1 ;; --kernels) KERNELS=1 ;; --sanitize) SANITIZE=1 ;; --ncu) NCU=1 ;; --ncu-detail) DETAIL=$2; shift ;; --variant) VARIANT=$2; shift ;; *) break ;;
  esac; shift
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$LOGS/summary.txt"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGLMRUN_DEPS_DIR="$PWD/.deps" > "$LOGS/configure.log" 2>&1 || { tail -30 "$LOGS/configure.log"; exit 1; }
targets=(glmrun)
[[ $TESTS == 1 ]] && targets+=(test-cuda)
[[ $KERNELS == 1 ]] && targets+=(glmrun-bench-kernels)
cmake --build build-gpu -j "$(nproc)" --target "${targets[@]}" > "$LOGS/build.log" 2>&1 || { grep -E "error" "$LOGS/build.log" | head -30; exit 1; }
log "build ok (${SECONDS}s)"
if [[ -n $VARIANT ]]; then
  cmake -S . -B build-variant -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
        -DCMAKE_CUDA_FLAGS="$VARIANT" -DGLMRUN_DEPS_DIR="$PWD/.deps" > "$LOGS/configure-variant.log" 2>&1 &&
    cmake --build build-variant -j "$(nproc)" --target glmrun $([[ $KERNELS == 1 ]] && echo glmrun-bench-kernels) > "$LOGS/build-variant.log" 2>&1 ||
    { log "variant build failed"; VARIANT=; }
  log "variant build ($VARIANT) done (${SECONDS}s)"
fi
rc=0
if [[ $TESTS == 1 ]]; then
  timeout 300 build-gpu/tests/cuda/test-cuda > "$LOGS/test-cuda.log" 2>&1
  r=$?; echo "test-cuda rc=$r (${SECONDS}s)" | tee -a "$LOGS/summary.txt"; [[ $r != 0 ]] && rc=$r
  grep -E "^\[doctest\] (test cases|assertions)|ERROR|FATAL" -A3 "$LOGS/test-cuda.log" | head -40 | tee -a "$LOGS/summary.txt"
fi
if [[ $TESTS == 1 && $SANITIZE == 1 ]]; then
  GLM_OPTEST_FILTER="${SANITIZE_FILTER:-}" timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 \
    build-gpu/tests/cuda/test-cuda -tc="every op*" > "$LOGS/memcheck.log" 2>&1
  r=$?; echo "memcheck rc=$r (${SECONDS}s)" | tee -a "$LOGS/summary.txt"; [[ $r != 0 ]] && rc=$r
  grep -E "ERROR SUMMARY|Invalid" "$LOGS/memcheck.log" | head -5 | tee -a "$LOGS/summary.txt"
fi
if [[ $KERNELS == 1 ]]; then
  for b in build-gpu ${VARIANT:+build-variant}; do
    log "kernel benchmark, prefill GEMMs ($b)"
    timeout 120 $b/bench/glmrun-bench-kernels --only prefill > "$LOGS/kernels-$b.md" 2> "$LOGS/kernels-$b.err"
    echo "kernels rc=$? (${SECONDS}s)" | tee -a "$LOGS/summary.txt"
    grep -E "^\|" "$LOGS/kernels-$b.md" | tee -a "$LOGS/summary.txt"
  done
fi
CFG=bench/configs/glm-5.1-rank4
CTX=${CTX:-256,4k} MAXC=${MAXC:-4096}
run=0
while :; do
  flags=()
  while [[ $# -gt 0 && $1 != -- ]]; do flags+=("$1"); shift; done
  run=$((run + 1))
  log "bench $run: $CFG --bench-ctx $CTX -c $MAXC --kv-type bf16 ${flags[*]}"
  timeout 200 build-gpu/glmrun -m $CFG --synthetic --kv-type bf16 --bench --bench-ctx "$CTX" -c "$MAXC" --bench-reps 2 -n 64 \
    "${flags[@]}" > "$LOGS/bench$run.md" 2> "$LOGS/bench$run.err"
  echo "bench rc=$? (${SECONDS}s)" | tee -a "$LOGS/summary.txt"; grep -E "bench: context|error" "$LOGS/bench$run.err" | tee -a "$LOGS/summary.txt"
  if [[ $run == 1 ]]; then
    cp "$LOGS/bench1.md" "$LOGS/bench.md"
    if [[ -n $VARIANT ]]; then
      log "bench variant ($VARIANT): ${flags[*]}"
      timeout 200 build-variant/glmrun -m $CFG --synthetic --kv-type bf16 --bench --bench-ctx "$CTX" -c "$MAXC" --bench-reps 2 -n 64 \
        "${flags[@]}" > "$LOGS/bench-variant.md" 2> "$LOGS/bench-variant.err"
      echo "bench rc=$? (${SECONDS}s)" | tee -a "$LOGS/summary.txt"; grep -E "bench: context|error" "$LOGS/bench-variant.err" | tee -a "$LOGS/summary.txt"
    fi
  fi
  [[ $# -gt 0 ]] || break
  shift
done
if [[ $NCU == 1 ]]; then
  log "ncu: decode steps of $CFG (1-token prompt, 8 greedy steps, the decode graph replayed)"
  timeout 200 ncu --clock-control none --metrics gpu__time_duration.sum --csv --log-file "$LOGS/ncu-decode.csv" \
    build-gpu/glmrun -m $CFG --synthetic --kv-type bf16 -c 4096 --raw --prompt-ids 11 -n 8 --temp 0 --print-ids \
    > "$LOGS/ncu-decode.out" 2>&1
  echo "ncu rc=$? (${SECONDS}s)" | tee -a "$LOGS/summary.txt"
  python3 scripts/ncu-summary.py "$LOGS/ncu-decode.csv" > "$LOGS/ncu-decode.txt"; head -45 "$LOGS/ncu-decode.txt"
fi
if [[ -n $DETAIL ]]; then
  log "ncu detail: $DETAIL (decode at depth 3,000: the prompt's 6 chunks run first)"
  ids=$(python3 -c "import random;random.seed(1);print(','.join(str(random.randrange(38000)) for _ in range(3000)))")
  timeout 200 ncu --clock-control none --kernel-name "regex:$DETAIL" --launch-skip 70 --launch-count 2 \
    --section SpeedOfLight --section MemoryWorkloadAnalysis --section WarpStateStats --section LaunchStats \
    --section Occupancy --section SchedulerStats \
    build-gpu/glmrun -m $CFG --synthetic --kv-type bf16 -c 4096 --raw --prompt-ids "$ids" -n 8 --temp 0 --print-ids \
    > "$LOGS/ncu-detail.txt" 2>&1
  echo "ncu detail rc=$? (${SECONDS}s)" | tee -a "$LOGS/summary.txt"
fi
exit $rc
