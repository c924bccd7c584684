#!/usr/bin/env python3
"""Torch / cuBLAS comparison for the kernel benchmark of issue 7 (bench/kernels.cpp).

Same GLM-5.1 TP4-rank shapes, batch 1 decode, timed with torch.cuda.Event: median of >= 50 reps
after warm-up, rotating over weight copies so the 50 MB L2 does not serve repeated reads.

    python3 scripts/bench-torch.py [--json FILE] [--reps N]

Then `glmrun-bench-kernels --torch FILE` puts these times in its "torch us" column (ids match).
NVFP4 experts: torch has no NVFP4 GEMV on Hopper; the 8 selected experts are dequantised bf16
matrices here (reference only: that reads 32/9 = 3.6x the bytes of NVFP4).
"""
import argparse
import json
import math
import statistics
import sys

ROTATE_SPAN = 256 << 20
L2_ROTATE = 64 << 20


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", help="write results here (input of glmrun-bench-kernels --torch)")
    ap.add_argument("--reps", type=int, default=100, help="timed reps per kernel (>= 50 recommended)")
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping")
        return 0
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 0
    dev = torch.device("cuda:0")
    torch.backends.cuda.matmul.allow_tf32 = False
    gen = torch.Generator(device=dev)
    gen.manual_seed(1)

    def rand_bf16(*shape):
        return (torch.rand(*shape, device=dev, generator=gen, dtype=torch.float32) * 2 - 1).to(torch.bfloat16)

    def copies_for(nbytes):
        if nbytes >= L2_ROTATE:
            return 1
        return max(2, min(64, math.ceil(ROTATE_SPAN / nbytes)))

    def time_fn(fns, reps):
        """fns: list of callables rotated per rep. Median us over reps, events around each call."""
        for i in range(max(5, len(fns))):
            fns[i % len(fns)]()
        torch.cuda.synchronize()
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        ends = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            starts[i].record()
            fns[i % len(fns)]()
            ends[i].record()
        torch.cuda.synchronize()
        return statistics.median(s.elapsed_time(e) * 1e3 for s, e in zip(starts, ends))

    # device copy ceiling, same definition as the C++ bench (2 GiB D2D, read + write)
    n = 2 << 30
    a = torch.empty(n, dtype=torch.uint8, device=dev)
    b = torch.empty_like(a)
    a.fill_(0x3C)
    copy_us = time_fn([lambda: b.copy_(a)], 10)
    copy_gbps = 2 * n / (copy_us * 1e-6) / 1e9
    del a, b
    torch.cuda.empty_cache()

    results = {}
    rows = []

    def record(rid, kernel, shape, us, nbytes, note=""):
        gbps = nbytes / (us * 1e-6) / 1e9
        results[rid] = {"kernel": kernel, "shape": shape, "us": us, "bytes": nbytes, "gbps": gbps,
                        "pct_of_copy": 100 * gbps / copy_gbps, "note": note}
        rows.append((kernel, shape, us, nbytes, gbps, 100 * gbps / copy_gbps, note))
        print(f"  {rid:<28} {us:9.2f} us {gbps:8.0f} GB/s", file=sys.stderr)

    reps = max(args.reps, 1)

    # ---- NVFP4 experts: dequantised bf16 matmul of the 8 selected experts ----------------------
    E, used, D, F = 160, 8, 6144, 512
    note_fp4 = "bf16 dequantised experts (reads 3.6x the NVFP4 bytes); reference only"
    for rid, kernel, K, M in [("moe_gate", "experts gate (bf16 bmm)", D, F),
                              ("moe_up", "experts up (bf16 bmm)", D, F),
                              ("moe_gate_up_fused", "experts gate+up fused (bf16 bmm)", D, 2 * F),
                              ("moe_down", "experts down (bf16 bmm)", F, D)]:
        # 8 selected experts [8, M, K] per group; a pool of distinct groups rotates (like the id groups)
        per = used * M * K * 2
        ncop = max(2, min(20, math.ceil(ROTATE_SPAN * 2 / per)))
        ws = [rand_bf16(used, M, K) for _ in range(ncop)]
        down = K == F
        x = rand_bf16(used, K, 1) if down else rand_bf16(1, K, 1).expand(used, K, 1)
        us = time_fn([lambda w=w: torch.bmm(w, x) for w in ws], reps)
        nbytes = per + K * 2 * (used if down else 1) + M * used * 2
        record(rid, kernel, f"K={K} M={M}, 8 experts", us, nbytes, note_fp4)
        del ws
    torch.cuda.empty_cache()

    # ---- BF16 GEMV via torch.matmul (cuBLAS) ---------------------------------------------------
    for rid, name, M, K in [("bf16_o_proj", "o_proj", 6144, 4096), ("bf16_q_b", "q_b", 4096, 2048),
                            ("bf16_q_a", "q_a", 2048, 6144), ("bf16_kv_a", "kv_a", 576, 6144),
                            ("bf16_lm_head", "lm_head", 38720, 6144)]:
        wb = M * K * 2
        ws = [rand_bf16(M, K) for _ in range(copies_for(wb))]
        x = rand_bf16(K, 1)
        us = time_fn([lambda w=w: torch.matmul(w, x) for w in ws], reps)
        record(rid, f"BF16 GEMV {name} (torch.matmul)", f"{M}x{K}, N=1", us, wb + K * 2 + M * 2)
        del ws
    torch.cuda.empty_cache()

    # ---- MLA decode attention on the bf16 latent cache ------------------------------------------
    # absorbed MQA: q [16, 576], K = cache [T, 576], V = cache[:, :512]; plain matmul + softmax
    # (SDPA's flash path needs Dk == Dv; the math path is slower than this).
    H, Dk, Dv, SEL = 16, 576, 512, 2048
    for T in (4096, 32768, 131072):
        cb = T * Dk * 2
        caches = [rand_bf16(T, Dk) for _ in range(copies_for(cb))]
        q = rand_bf16(H, Dk)

        def attn(c, q=q):
            s = torch.matmul(q, c.t()).float() * (1 / 16)
            p = torch.softmax(s, dim=-1).to(torch.bfloat16)
            return torch.matmul(p, c[:, :Dv])

        us = time_fn([lambda c=c: attn(c) for c in caches], reps)
        record(f"mla_dense_T{T}", "MLA decode dense (matmul+softmax)", f"q [16,576], bf16 cache T={T}", us,
               cb + H * Dk * 2 + H * Dv * 2)
        if T == 131072:
            kid = [torch.sort(torch.randperm(T, device=dev, generator=gen)[:SEL]).values for _ in range(16)]

            def sparse(c, ids):
                return attn(c.index_select(0, ids))

            us = time_fn([lambda i=i: sparse(caches[0], i) for i in kid], reps)
            record(f"mla_sparse_T{T}", "MLA decode sparse 2048 (gather+matmul+softmax)",
                   f"bf16 cache T={T}, 2048 key ids", us, SEL * Dk * 2 + SEL * 4 + H * Dk * 2 + H * Dv * 2)
        del caches
    torch.cuda.empty_cache()

    # ---- indexer: einsum + relu + weighted sum, then topk ---------------------------------------
    Di, Hi, TOPK = 128, 32, 2048
    for T in (4096, 32768, 131072):
        kb = T * Di * 2
        ks = [rand_bf16(T, Di) for _ in range(copies_for(kb))]
        q = rand_bf16(Hi, Di)
        w = torch.rand(Hi, device=dev, generator=gen)
        scale = Di ** -0.5

        def indexer(k, q=q, w=w):
            s = torch.relu(torch.einsum("hd,td->ht", q, k).float() * scale)
            return torch.einsum("h,ht->t", w, s)

        us_both = time_fn([lambda k=k: torch.topk(indexer(k), TOPK) for k in ks], reps)
        us_idx = time_fn([lambda k=k: indexer(k) for k in ks], reps)
        scores = [torch.rand(T, device=dev, generator=gen) for _ in range(copies_for(T * 4))]
        us_top = time_fn([lambda s=s: torch.topk(s, TOPK) for s in scores], reps)
        record(f"indexer_topk_T{T}", "indexer + top-k 2048 (einsum+relu+topk)", f"k bf16 [{T},128]", us_both,
               kb + 2 * T * 4 + TOPK * 4)
        record(f"indexer_T{T}", "indexer alone (einsum+relu)", f"k bf16 [{T},128]", us_idx, kb + T * 4)
        record(f"topk_T{T}", "top-k 2048 alone (torch.topk)", f"f32 [{T}]", us_top, T * 4 + TOPK * 4)
        del ks, scores
    torch.cuda.empty_cache()

    name = torch.cuda.get_device_name(0)
    print(f"## torch {torch.__version__} comparison on {name}\n")
    print(f"Device copy 2 GiB D2D (read + write): {copy_us:.1f} us = {copy_gbps:.0f} GB/s. "
          f"torch.cuda.Event around each call, median of {reps} reps after warm-up.\n")
    print("| kernel | shape | median us | bytes | GB/s | % of copy | note |")
    print("|---|---|---:|---:|---:|---:|---|")
    for kernel, shape, us, nbytes, gbps, pct, note in rows:
        print(f"| {kernel} | {shape} | {us:.2f} | {nbytes / 1e6:.2f} MB | {gbps:.0f} | {pct:.1f}% | {note} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"device": name, "torch": torch.__version__, "copy_gbps": copy_gbps, "copy_us": copy_us,
                       "timing": "torch.cuda.Event per call, median", "reps": reps, "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
