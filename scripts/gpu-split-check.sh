#!/usr/bin/env bash
# One call on a 4-GPU machine: does the cache split by position give what the copied cache gives at
# full size? (At full size a split prefill's gathers exceed the peer-to-peer limit and go through NCCL,
# which the fixtures' tests reach only when forced.) Greedy ids and logits of the synthetic model for a
# 128-token prompt (dense causal attention) and a 3,000-token one (the indexer's top-k), both layouts.
#   bash scripts/gpu-split-check.sh        Logs to $OUT (split-check.txt). Carry .deps.
set -uo pipefail
OUT_DIR="${OUT:-/tmp/glmrun-out}"; mkdir -p "$OUT_DIR"
export PATH=/usr/local/cuda/bin:$PATH NCCL_NVLS_ENABLE=0
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGLMRUN_DEPS_DIR="$PWD/.deps" > /tmp/configure.log 2>&1 || { tail -30 /tmp/configure.log; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target glmrun > /tmp/build.log 2>&1 || { grep error /tmp/build.log | head; exit 1; }
for n in 128 3000; do
  ids=$(python3 -c "import random;random.seed($n);print(','.join(str(random.randrange(150000)) for _ in range($n)))")
  for split in off on; do
    build-gpu/glmrun -m models/glm-5.1-reap-160 --synthetic -tp 4 -c 8192 --kv-type fp8 --kv-split $split \
      --raw --prompt-ids "$ids" -n 16 --temp 0 --print-ids --logits-out "/tmp/logits-$n-$split.npy" \
      > "/tmp/ids-$n-$split.txt" 2> "/tmp/err-$n-$split.txt"
    echo "prompt $n, --kv-split $split: rc=$? ids: $(tr '\n' ' ' < /tmp/ids-$n-$split.txt)" | tee -a "$OUT_DIR/split-check.txt"
  done
  python3 - "$n" <<'PY' | tee -a "$OUT_DIR/split-check.txt"
import sys, numpy as np
n = sys.argv[1]
a, b = np.load(f"/tmp/logits-{n}-off.npy"), np.load(f"/tmp/logits-{n}-on.npy")
k = min(len(a), len(b))
for i in range(k):
    e = np.linalg.norm(a[i] - b[i]) / max(np.linalg.norm(a[i]), 1e-30)
    print(f"prompt {n} step {i}: logits rel. difference split vs copied {e:.3e}, argmax {a[i].argmax()} / {b[i].argmax()}")
PY
done
