#!/usr/bin/env bash
# One call on the GPU machine: build for sm_90, run the CUDA op and model tests, compute-sanitizer
# (memcheck + racecheck) over the op tests, and compare glmrun's GPU and CPU greedy ids on a
# fixture. Logs go to $OUT (the device tool brings them back). Carry .deps (scripts/stage-deps.sh).
set -uo pipefail
# Logs are written to a scratch folder; at exit the summaries are copied to $OUT and the rest
# packed into one archive (the device tool brings back at most 8 files).
FINAL_OUT="${OUT:-/tmp/glmrun-out}"
OUT=/tmp/gpu-check-logs
rm -rf "$OUT"; mkdir -p "$OUT" "$FINAL_OUT"
finish() {
  for f in summary.txt kernels.md torch.md kernels.json torch.json rank4-bench.md rank4-ncu-decode.txt; do [[ -f "$OUT/$f" ]] && cp "$OUT/$f" "$FINAL_OUT/"; done
  tar czf "$FINAL_OUT/logs.tgz" -C "$OUT" . 2>/dev/null
}
trap finish EXIT
export PATH=/usr/local/cuda/bin:$PATH
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"

log "configure + build (sm_90)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGLMRUN_DEPS_DIR="$PWD/.deps" > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
if ! cmake --build build-gpu -j "$(nproc)" --target glmrun test-cuda test-ops test-model test-tp-model glmrun-bench-kernels > "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
fi
log "build ok"

log "tests: test-cuda (ops, graphs, fixtures, tiny) with its messages, test-tp-model on one GPU, test-model"
build-gpu/tests/cuda/test-cuda -s > "$OUT/test-cuda.log" 2>&1 &
cuda_pid=$!
ctest --test-dir build-gpu -R "^test-model$|^test-tp-model$" --output-on-failure -j 2 --timeout 400 > "$OUT/ctest.log" 2>&1
rc=$?
wait $cuda_pid; cuda_rc=$?
echo "test-cuda rc=$cuda_rc" | tee -a "$OUT/summary.txt"
[[ $cuda_rc != 0 ]] && rc=$cuda_rc
grep -E "^\[doctest\] (test cases|assertions)" "$OUT/test-cuda.log" | tee -a "$OUT/summary.txt"
grep -E "MESSAGE|rel. error|differ|nmse" "$OUT/test-cuda.log" | head -120 > "$OUT/cuda-messages.txt"
grep -E "ERROR|FATAL" -A6 "$OUT/test-cuda.log" | head -80 >> "$OUT/summary.txt"
grep -E "tests passed|tests failed|Failed|\*\*\*" "$OUT/ctest.log" | tee -a "$OUT/summary.txt"
grep -E "ERROR" -A3 "$OUT/ctest.log" | head -80 >> "$OUT/summary.txt"

log "glmrun GPU vs CPU greedy ids (dense_moe)"
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('tests/fixtures/dense_moe/reference.json'))['prompts'][2])))")
gpu=$(build-gpu/glmrun -m tests/fixtures/dense_moe --raw --prompt-ids "$ids" -n 16 --temp 0 --repeat-penalty 1 --print-ids --precise --kv-type f32 2>"$OUT/glmrun-gpu.err")
cpu=$(build-gpu/glmrun -m tests/fixtures/dense_moe --cpu --raw --prompt-ids "$ids" -n 16 --temp 0 --repeat-penalty 1 --print-ids 2>"$OUT/glmrun-cpu.err")
echo "gpu: $gpu" | tee -a "$OUT/summary.txt"; echo "cpu: $cpu" | tee -a "$OUT/summary.txt"
[[ -n "$gpu" && "$gpu" == "$cpu" ]] && log "GPU == CPU" || log "GPU != CPU"

if [[ " $* " == *" --rank4 "* ]]; then
  # One TP = 4 rank's kernels on one GPU: --bench fused vs --no-fuse, Nsight Compute kernel tables.
  OUT=/tmp/rank4-out bash scripts/gpu-profile.sh > "$OUT/rank4.log" 2>&1
  for f in summary.txt ncu-decode.txt ncu-prefill.txt bench.md bench--no-fuse.md; do
    [[ -f /tmp/rank4-out/$f ]] && cp "/tmp/rank4-out/$f" "$OUT/rank4-$f"
  done
  cat "$OUT/rank4-summary.txt" >> "$OUT/summary.txt"
fi

log "compute-sanitizer memcheck (op cases)"
timeout 200 compute-sanitizer --tool memcheck --error-exitcode 9 build-gpu/tests/cuda/test-cuda -tc="every op*,cuda graph*" > "$OUT/memcheck.log" 2>&1
echo "memcheck rc=$?" | tee -a "$OUT/summary.txt"; grep -E "ERROR SUMMARY|Invalid" "$OUT/memcheck.log" | head -5 | tee -a "$OUT/summary.txt"
log "compute-sanitizer racecheck (op cases)"
timeout 120 compute-sanitizer --tool racecheck --error-exitcode 9 build-gpu/tests/cuda/test-cuda -tc="every op*" > "$OUT/racecheck.log" 2>&1
echo "racecheck rc=$?" | tee -a "$OUT/summary.txt"; grep -E "RACECHECK SUMMARY|ERROR SUMMARY|hazard" "$OUT/racecheck.log" | head -5 | tee -a "$OUT/summary.txt"

if [[ " $* " == *" --bench "* ]]; then
  log "decode on the bundled model: replayed graph vs node by node"
  build-gpu/glmrun --bench --bench-ctx 256,1k --bench-reps 2 -n 64 > "$OUT/bench-tiny-replay.md" 2>&1
  build-gpu/glmrun --bench --bench-ctx 256,1k --bench-reps 2 -n 64 --no-graph-replay > "$OUT/bench-tiny-eager.md" 2>&1
  grep -E "^\|" "$OUT/bench-tiny-replay.md" "$OUT/bench-tiny-eager.md" | head -20 | tee -a "$OUT/summary.txt"
  log "kernel benchmark: prefill GEMMs vs cuBLAS, then decode kernels"
  timeout 150 build-gpu/bench/glmrun-bench-kernels --only prefill --json "$OUT/prefill.json" > "$OUT/kernels.md" 2> "$OUT/kernels.err"
  cat "$OUT/kernels.md" | tee -a "$OUT/summary.txt"
fi
exit $rc
