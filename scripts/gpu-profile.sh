#!/usr/bin/env bash
# One call on a one-GPU machine: per-kernel durations of a TP = 4 rank's decode step and prefill chunk
# (bench/configs/glm-5.1-rank4, synthetic weights) from Nsight Compute, plus glmrun --bench's own node
# profile on the same config. Logs to $OUT. Carry .deps (scripts/stage-deps.sh).
set -uo pipefail
FINAL_OUT="${OUT:-/tmp/glmrun-out}"
OUT=/tmp/gpu-profile-logs
rm -rf "$OUT"; mkdir -p "$OUT" "$FINAL_OUT"
finish() {
  for f in summary.txt ncu-decode.txt ncu-prefill.txt bench.md bench--no-fuse.md; do [[ -f "$OUT/$f" ]] && cp "$OUT/$f" "$FINAL_OUT/"; done
  tar czf "$FINAL_OUT/logs.tgz" -C "$OUT" . 2>/dev/null
}
trap finish EXIT
export PATH=/usr/local/cuda/bin:$PATH
log() { echo "== $*" | tee -a "$OUT/summary.txt"; }
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
CFG=bench/configs/glm-5.1-rank4
log "configure + build (sm_90)"
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGLMRUN_DEPS_DIR="$PWD/.deps" > "$OUT/configure.log" 2>&1 || { tail -30 "$OUT/configure.log"; exit 1; }
if ! cmake --build build-gpu -j "$(nproc)" --target glmrun > "$OUT/build.log" 2>&1; then
  grep -E "error|Error" "$OUT/build.log" | head -40; exit 1
fi
log "build ok"

# Per-kernel table: name, count, total us, mean us.
summarize() { python3 scripts/ncu-summary.py "$1" "$2"; }

# --bench with the fused launches and without (--no-fuse): same machine, same run.
for fuse in "" "--no-fuse"; do
  log "glmrun --bench on $CFG (4k, 16k) ${fuse:-(fused)}: decode, prefill, node profiles"
  timeout 240 build-gpu/glmrun -m $CFG --synthetic --kv-type bf16 --bench --bench-ctx 4k,16k --bench-reps 2 -n 64 \
    -c 16384 $fuse > "$OUT/bench${fuse}.md" 2> "$OUT/bench${fuse}.err"
  echo "rc=$?" | tee -a "$OUT/summary.txt"; grep "bench: context" "$OUT/bench${fuse}.err" | tee -a "$OUT/summary.txt"
done

NCU="ncu --clock-control none --metrics gpu__time_duration.sum --csv"
log "ncu: decode (1-token prompt, 8 greedy steps, the decode graph replayed)"
timeout 200 $NCU --log-file "$OUT/ncu-decode.csv" build-gpu/glmrun -m $CFG --synthetic --kv-type bf16 -c 4096 \
  --raw --prompt-ids 11 -n 8 --temp 0 --print-ids > "$OUT/ncu-decode.out" 2>&1
echo "rc=$?" | tee -a "$OUT/summary.txt"
summarize "$OUT/ncu-decode.csv" 0 > "$OUT/ncu-decode.txt"; head -40 "$OUT/ncu-decode.txt" | tee -a "$OUT/summary.txt"

log "ncu: prefill of 2560 tokens in chunks of 512 (the last chunk sees 2560 keys: DSA top-k)"
ids=$(python3 -c "import random;random.seed(1);print(','.join(str(random.randrange(38000)) for _ in range(2560)))")
timeout 250 $NCU --log-file "$OUT/ncu-prefill.csv" build-gpu/glmrun -m $CFG --synthetic --kv-type bf16 -c 4096 \
  --raw --prompt-ids "$ids" -n 1 --temp 0 --print-ids > "$OUT/ncu-prefill.out" 2>&1
echo "rc=$?" | tee -a "$OUT/summary.txt"
summarize "$OUT/ncu-prefill.csv" 0 > "$OUT/ncu-prefill.txt"; head -40 "$OUT/ncu-prefill.txt" | tee -a "$OUT/summary.txt"
