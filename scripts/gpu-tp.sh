#!/usr/bin/env bash
# One call on a 2- or 4-GPU machine: build for sm_90, the tensor-parallel tests (custom all-reduce vs
# NCCL vs host sum, the model over 2 and 4 GPUs vs one), the all-reduce latency bench, glmrun -tp N
# end to end, and a decode-step comparison TP1 vs TP2 (vs TP4) on the 8-layer full-width synthetic
# model. Logs to $OUT (summary.txt, allreduce.md, logs.tgz). Carry .deps (scripts/stage-deps.sh).
set -uo pipefail
FINAL_OUT="${OUT:-/tmp/glmrun-out}"
OUT=/tmp/gpu-tp-logs
rm -rf "$OUT"; mkdir -p "$OUT" "$FINAL_OUT"
finish() {
  for f in summary.txt allreduce.md bench-mid.md; do [[ -f "$OUT/$f" ]] && cp "$OUT/$f" "$FINAL_OUT/"; done
  tar czf "$FINAL_OUT/logs.tgz" -C "$OUT" . 2>/dev/null
}
trap finish EXIT
export PATH=/usr/local/cuda/bin:$PATH NCCL_NVLS_ENABLE=0
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
nvidia-smi topo -m > "$OUT/topo.txt" 2>&1
N=$(nvidia-smi -L | wc -l)

log "configure + build (sm_90) on $N GPUs"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGLMRUN_DEPS_DIR="$PWD/.deps" > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
grep -i nccl "$OUT/configure.log" | tee -a "$OUT/summary.txt"
if ! cmake --build build-gpu -j "$(nproc)" --target glmrun test-tp-model test-allreduce glmrun-bench-allreduce test-cuda > "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
fi
log "build ok"

FULL=0; QUICK=0
for a in "$@"; do [[ $a == --full ]] && FULL=1; [[ $a == --quick ]] && QUICK=1; done
if [[ $QUICK == 0 ]]; then
log "one GPU: fixtures (precise) and the bf16 near-tie report"
timeout 240 build-gpu/tests/cuda/test-cuda -tc="fixtures on CUDA*,bundled*,every op*,cuda graph*" > "$OUT/test-cuda-fixtures.log" 2>&1
echo "test-cuda fixtures rc=$?" | tee -a "$OUT/summary.txt"; grep -E "MESSAGE|ERROR|test cases" "$OUT/test-cuda-fixtures.log" | head -40 | tee -a "$OUT/summary.txt"
fi

log "all-reduce: custom vs NCCL vs host"
timeout 300 build-gpu/tests/tp/test-allreduce > "$OUT/test-allreduce.log" 2>&1
echo "test-allreduce rc=$?" | tee -a "$OUT/summary.txt"; grep -E "MESSAGE|ERROR|test cases|all-reduce:" "$OUT/test-allreduce.log" | head -30 | tee -a "$OUT/summary.txt"

log "model over 2/4 GPUs vs one"
timeout 300 build-gpu/tests/tp/test-tp-model > "$OUT/test-tp-model.log" 2>&1
echo "test-tp-model rc=$?" | tee -a "$OUT/summary.txt"; grep -E "MESSAGE|ERROR|test cases|drafts" "$OUT/test-tp-model.log" | head -40 | tee -a "$OUT/summary.txt"

log "all-reduce latency bench"
timeout 120 build-gpu/bench/glmrun-bench-allreduce --json "$OUT/allreduce.json" > "$OUT/allreduce.md" 2>&1
cat "$OUT/allreduce.md" | tee -a "$OUT/summary.txt"

log "glmrun -tp $N end to end (dense_moe ids vs --cpu; bundled model text)"
ids=$(python3 -c "import json;print(','.join(map(str,json.load(open('tests/fixtures/dense_moe/reference.json'))['prompts'][2])))")
gpu=$(build-gpu/glmrun -m tests/fixtures/dense_moe -tp "$N" --raw --prompt-ids "$ids" -n 16 --temp 0 --repeat-penalty 1 --print-ids --precise --kv-type f32 2>"$OUT/glmrun-tp.err")
cpu=$(build-gpu/glmrun -m tests/fixtures/dense_moe --cpu --raw --prompt-ids "$ids" -n 16 --temp 0 --repeat-penalty 1 --print-ids 2>"$OUT/glmrun-cpu.err")
echo "tp$N: $gpu" | tee -a "$OUT/summary.txt"; echo "cpu: $cpu" | tee -a "$OUT/summary.txt"
[[ -n "$gpu" && "$gpu" == "$cpu" ]] && log "TP$N == CPU" || log "TP$N != CPU"
build-gpu/glmrun -tp "$N" -p "Tell me about the sea." -n 48 > "$OUT/tiny-tp.txt" 2> "$OUT/tiny-tp.err"
echo "tiny -tp $N rc=$?: $(head -c 300 "$OUT/tiny-tp.txt")" | tee -a "$OUT/summary.txt"

log "bundled model, -tp $N, MTP on vs off (greedy, 128 tokens)"
for m in on off; do
  build-gpu/glmrun -tp "$N" -p "Tell me about the sea." -n 128 --temp 0 -v --mtp $m > "$OUT/tiny-mtp-$m.txt" 2> "$OUT/tiny-mtp-$m.err"
  echo "mtp $m rc=$? $(grep -E "mtp:|tok/s" "$OUT/tiny-mtp-$m.err" | tail -2 | tr '\n' ' ')" | tee -a "$OUT/summary.txt"
done
cmp -s "$OUT/tiny-mtp-on.txt" "$OUT/tiny-mtp-off.txt" && log "MTP on == off (text)" || log "MTP on != off (text)"

log "decode step TP1 vs TP2 vs TP$N: 8 full-width layers, synthetic weights"
CTX=256,4k; [[ $QUICK == 1 ]] && CTX=256
for tp in 1 2 4; do
  [[ $tp -le $N ]] || continue
  timeout 150 build-gpu/glmrun -m bench/configs/glm-5.1-8layers --synthetic -tp $tp --kv-type bf16 --bench \
      --bench-ctx $CTX --bench-reps 2 -n 64 > "$OUT/bench-mid-tp$tp.md" 2>&1
  echo "-- tp $tp rc=$?" >> "$OUT/bench-mid.md"; cat "$OUT/bench-mid-tp$tp.md" >> "$OUT/bench-mid.md"
done
if [[ $QUICK == 0 ]]; then
timeout 100 build-gpu/glmrun -m bench/configs/glm-5.1-8layers --synthetic -tp $N --kv-type bf16 --bench \
    --bench-ctx 256 --bench-reps 2 -n 64 --no-graph-replay > "$OUT/bench-mid-eager.md" 2>&1
echo "-- tp $N without graph replay rc=$?" >> "$OUT/bench-mid.md"; cat "$OUT/bench-mid-eager.md" >> "$OUT/bench-mid.md"
fi
grep -E "^\| |^-- tp|rank|usage|warn|error" "$OUT/bench-mid.md" | grep -v "^|--\|^|---" | head -90 | tee -a "$OUT/summary.txt"

if [[ $FULL == 1 ]]; then
  log "full-size synthetic GLM-5.1 REAP-160 (78 layers + MTP), -tp $N, --bench 256,4k"
  timeout 300 build-gpu/glmrun -m models/glm-5.1-reap-160 --synthetic -tp "$N" --kv-type bf16 --bench \
      --bench-ctx 256,4k,16k --bench-reps 2 -n 64 -c 16640 --bench-json "$OUT/bench-full.json" > "$OUT/bench-full.md" 2> "$OUT/bench-full.err"
  echo "full-size rc=$?" | tee -a "$OUT/summary.txt"
  cat "$OUT/bench-full.md" | grep -v "^|--" | tee -a "$OUT/summary.txt"; tail -5 "$OUT/bench-full.err" | tee -a "$OUT/summary.txt"
  cp "$OUT/bench-full.md" "$FINAL_OUT/" 2>/dev/null
fi
