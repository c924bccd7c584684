#!/usr/bin/env bash
# One call on a 4-GPU machine: does the cache split by position give what the copied cache gives at
# full size? (At full size a split prefill's gathers exceed the peer-to-peer limit and go through NCCL,
# which the fixtures' tests reach only when forced.) Greedy ids and logits of the synthetic model for a
# 128-token prompt (dense causal attention) and a 3,000-token one (the indexer's top-k), both layouts.
# The random full-size model turns any rounding change into O(1) logit differences (ninth session:
# the copied cache with only the prefill chunk changed differs by 0.56 at the first step), so a third
# run, copied with --ubatch 64, gives the rounding control: split vs copied means something only
# where it stays well below that control.
#   bash scripts/gpu-split-check.sh        Logs to $OUT (split-check.txt). Carry .deps.
set -uo pipefail
OUT_DIR="${OUT:-/tmp/glmrun-out}"; mkdir -p "$OUT_DIR"
export PATH=/usr/local/cuda/bin:$PATH NCCL_NVLS_ENABLE=0
cmake -S . -B build-gpu -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
      -DGLMRUN_DEPS_DIR="$PWD/.deps" > /tmp/configure.log 2>&1 || { tail -30 /tmp/configure.log; exit 1; }
cmake --build build-gpu -j "$(nproc)" --target glmrun > /tmp/build.log 2>&1 || { grep error /tmp/build.log | head; exit 1; }
for n in 128 3000; do
  ids=$(python3 -c "import random;random.seed($n);print(','.join(str(random.randrange(150000)) for _ in range($n)))")
  for run in off on control; do
    extra=(--kv-split "$run")
    [[ $run == control ]] && extra=(--kv-split off --ubatch 64)
    build-gpu/glmrun -m models/glm-5.1-reap-160 --synthetic -tp 4 -c 8192 --kv-type fp8 "${extra[@]}" \
      --raw --prompt-ids "$ids" -n 16 --temp 0 --print-ids --logits-out "/tmp/logits-$n-$run.npy" \
      > "/tmp/ids-$n-$run.txt" 2> "/tmp/err-$n-$run.txt"
    echo "prompt $n, ${extra[*]}: rc=$? ids: $(tr '\n' ' ' < /tmp/ids-$n-$run.txt)" | tee -a "$OUT_DIR/split-check.txt"
  done
  python3 - "$n" <<'PY' | tee -a "$OUT_DIR/split-check.txt"
import sys, numpy as np
n = sys.argv[1]
a, b, c = (np.load(f"/tmp/logits-{n}-{r}.npy") for r in ("off", "on", "control"))
rel = lambda x, y: np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)
for i in range(min(len(a), len(b), len(c))):
    print(f"prompt {n} step {i}: logits rel. difference split vs copied {rel(a[i], b[i]):.3e} "
          f"(control, copied --ubatch 64: {rel(a[i], c[i]):.3e}), argmax {a[i].argmax()} / {b[i].argmax()} / {c[i].argmax()}")
PY
done
