#!/usr/bin/env python3
"""Build the tiny GLM-5 (glm_moe_dsa) fixture models and their transformers reference outputs.

Runs on the GPU machine (torch + transformers + safetensors + tokenizers; the math runs on the CPU in
float32). For each fixture config it:
  1. builds a random GlmMoeDsaForCausalLM (seeded), randomises norms / LayerNorm biases / router bias,
     and an extra MTP layer model.layers.{N}.* (HF ignores it; the loader must not);
  2. quantises the routed experts to ModelOpt NVFP4 (per-expert layout), stores everything else in
     BF16 (router bias and indexer k_norm in F32, as in the real checkpoint), in 2+ shards + index,
     with config.json, hf_quant_config.json, generation_config.json and a small BPE tokenizer.json;
  3. reads the bytes it wrote back, dequantises them, loads them into transformers in float32 and
     records logits, hidden states, indexer top-k sets, routed expert ids and greedy continuations;
  4. writes reference.json and reference_*.npy next to the model.

Usage: python3 scripts/make_fixtures.py OUT_DIR   (one sub-directory per fixture)
"""
import json
import math
import os
import sys

import numpy as np
import torch

FIXTURES = {
    # dense + MoE layers, sparse indexer (index_topk 8 < prompt lengths), MTP layer present.
    "dense_moe": dict(
        num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
        n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5, index_topk=8,
        mtp=True, shards=2, seed=1234, quant_style="target"),
    # IndexCache: shared (S) layers reuse the previous full layer's top-k.
    "index_cache": dict(
        num_hidden_layers=5, first_k_dense_replace=1, n_routed_experts=8, num_experts_per_tok=2,
        n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5, index_topk=8,
        index_topk_pattern="FSFSS", mtp=False, shards=2, seed=777, quant_style="flat"),
    # group-limited routing, no renormalisation; indexer types from index_topk_freq / offset.
    "groups": dict(
        num_hidden_layers=3, first_k_dense_replace=1, n_routed_experts=16, num_experts_per_tok=4,
        n_group=4, topk_group=2, norm_topk_prob=False, routed_scaling_factor=1.5, index_topk=12,
        index_topk_freq=2, index_skip_topk_offset=1, mtp=True, shards=3, seed=4321, quant_style="target"),
}

COMMON = dict(
    vocab_size=384, hidden_size=64, intermediate_size=96, moe_intermediate_size=64, n_shared_experts=1,
    num_attention_heads=4, num_key_value_heads=4, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=16,
    qk_rope_head_dim=8, v_head_dim=24, index_n_heads=16, index_head_dim=16, rms_norm_eps=1e-5,
    max_position_embeddings=256, initializer_range=0.08, tie_word_embeddings=False, hidden_act="silu",
    attention_bias=False, attention_dropout=0.0, scoring_func="sigmoid", topk_method="noaux_tc",
    moe_layer_freq=1, rope_interleave=True, indexer_rope_interleave=True,
)

# GLM-5 added tokens in their real order; here they take ids 0..35 of the tiny vocabulary.
SPECIAL_TOKENS = [
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
    "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
    "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
    "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>", "<think>",
    "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<arg_key>",
    "</arg_key>", "<arg_value>", "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>",
    "<|image|>", "<|video|>",
]
EOS_IDS = [0, 7, 9]  # <|endoftext|>, <|user|>, <|observation|>
GLM_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
             r"|\s*[\r\n]+|\s+(?!\S)|\s+")

CORPUS = [
    "The quick brown fox jumps over the lazy dog.", "Hello world! How are you today?",
    "GLM-5 is a mixture-of-experts language model with sparse attention.",
    "def add(a, b):\n    return a + b\n", "Numbers: 1234567890, 3.14159, 2026-11-27.",
    "Tiny models make fast tests; fast tests make happy engineers.",
    "Der schnelle braune Fuchs springt. Le renard brun saute. 快速的棕色狐狸。",
    "The indexer picks the top-k keys; the router picks the top-k experts.",
    "What is the capital of France? The capital of France is Paris.",
]
PROMPT_TEXTS = [
    "[gMASK]<sop><|user|>\nHello world<|assistant|>\n<think></think>",
    "[gMASK]<sop><|system|>\nYou are a helpful assistant.<|user|>\nWhat is the capital of France?<|assistant|>",
]
PROMPT_LENGTHS = [48, 41]   # random-id prompts (after [gMASK]<sop>): both exceed every index_topk
GREEDY_STEPS = 16


# ---------------------------------------------------------------------------------------------
# tokenizer
def make_tokenizer(path):
    from tokenizers import Tokenizer, Regex, models, pre_tokenizers, decoders, trainers
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GLM_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=COMMON["vocab_size"], special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    for i, s in enumerate(SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s))
    assert tok.get_vocab_size() <= COMMON["vocab_size"], tok.get_vocab_size()
    tok.save(path)
    return tok


# ---------------------------------------------------------------------------------------------
# NVFP4 (ModelOpt) quantisation and dequantisation
E2M1_BOUNDS = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0]
E2M1_VALUES = np.array([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0],
                       dtype=np.float32)


def e2m1_codes(x):
    """Round-to-nearest-even onto the E2M1 grid (saturating at 6); returns 4-bit codes."""
    a = np.abs(x)
    mag = np.zeros(a.shape, dtype=np.uint8)
    for j, b in enumerate(E2M1_BOUNDS):
        upper_even = (j + 1) % 2 == 0  # at an exact midpoint, go up only when the upper code is even
        mag += ((a > b) | ((a == b) & upper_even)).astype(np.uint8)
    sign = (np.signbit(x)).astype(np.uint8) << 3
    return mag | sign


def quantize_nvfp4(w):
    """w: float32 [out, in] -> (packed u8 [out, in/2], e4m3 [out, in/16] as torch, weight_scale_2 f32)."""
    w = w.astype(np.float32)
    out_f, in_f = w.shape
    assert in_f % 16 == 0
    s2 = np.float32(np.abs(w).max()) / np.float32(6.0 * 448.0)
    blocks = w.reshape(out_f, in_f // 16, 16)
    bamax = np.abs(blocks).max(axis=-1)
    raw = (bamax / (np.float32(6.0) * s2)).astype(np.float32)
    raw = np.clip(raw, 2.0 ** -9, 448.0)
    raw[bamax == 0] = 1.0
    scale_t = torch.from_numpy(raw).to(torch.float8_e4m3fn)  # round to nearest even
    scale_f = scale_t.to(torch.float32).numpy()
    scaled = blocks / (scale_f[..., None] * s2)
    codes = e2m1_codes(scaled.astype(np.float32)).reshape(out_f, in_f)
    packed = (codes[:, 0::2] | (codes[:, 1::2] << 4)).astype(np.uint8)  # low nibble = even element
    return packed, scale_t, np.float32(s2)


def dequantize_nvfp4(packed, scale_t, s2):
    """Exactly what the C++ reference does: (E2M1 * float(E4M3)) * weight_scale_2, in float32."""
    packed = np.asarray(packed, dtype=np.uint8)
    out_f, half = packed.shape
    codes = np.empty((out_f, half * 2), dtype=np.uint8)
    codes[:, 0::2] = packed & 0xF
    codes[:, 1::2] = packed >> 4
    vals = E2M1_VALUES[codes]
    sc = scale_t.to(torch.float32).numpy()
    sc = np.repeat(sc, 16, axis=1)
    return ((vals * sc).astype(np.float32) * np.float32(s2)).astype(np.float32)


# ---------------------------------------------------------------------------------------------
def build_config_dict(name, fx):
    d = dict(COMMON)
    d.update({k: v for k, v in fx.items() if k not in ("mtp", "shards", "seed", "quant_style")})
    d["architectures"] = ["GlmMoeDsaForCausalLM"]
    d["model_type"] = "glm_moe_dsa"
    d["rope_parameters"] = {"rope_type": "default", "rope_theta": 1000000.0}
    d["head_dim"] = d["qk_rope_head_dim"]
    d["qk_head_dim"] = d["qk_nope_head_dim"] + d["qk_rope_head_dim"]
    d["num_nextn_predict_layers"] = 1 if fx["mtp"] else 0
    d["eos_token_id"] = [0]  # generation_config.json carries the full list (it overrides)
    d["bos_token_id"] = 0
    d["pad_token_id"] = 0
    d["torch_dtype"] = "bfloat16"
    d["use_cache"] = True
    return d


def exclude_modules(cfg):
    n = cfg["num_hidden_layers"]
    ex = ["lm_head", "model.embed_tokens", "*self_attn*", "*mlp.gate", "*shared_experts*"]
    ex += [f"model.layers.{i}.mlp*" for i in range(cfg["first_k_dense_replace"])]
    ex += [f"model.layers.{n}*"]  # MTP layer stays BF16, like the target checkpoint
    return ex


def quant_config(cfg, style):
    ex = exclude_modules(cfg)
    if style == "flat":  # convert_hf_quant_config_format output
        return {"config_groups": {"group_0": {
                    "input_activations": {"dynamic": False, "num_bits": 4, "type": "float", "group_size": 16},
                    "weights": {"dynamic": False, "num_bits": 4, "type": "float", "group_size": 16},
                    "targets": ["Linear"]}},
                "ignore": ex, "quant_algo": "NVFP4", "producer": {"name": "modelopt", "version": "0.0.fixture"},
                "quant_method": "modelopt"}
    return {"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16, "kv_cache_quant_algo": None,
            "exclude_modules": ex}


def hf_config(cfg_dict, num_layers=None, pattern=None):
    import transformers
    kw = {k: v for k, v in cfg_dict.items()
          if k not in ("architectures", "model_type", "torch_dtype", "qk_head_dim", "head_dim",
                       "quantization_config", "eos_token_id", "pad_token_id", "bos_token_id")}
    kw["pad_token_id"] = None  # a pad id would zero an embedding row at init
    kw["eos_token_id"] = EOS_IDS
    if num_layers is not None:
        kw["num_hidden_layers"] = num_layers
    if pattern is not None:
        kw["index_topk_pattern"] = pattern
    cfg = transformers.GlmMoeDsaConfig(**kw)
    cfg._attn_implementation = "eager"
    for attr in ("_experts_implementation", "experts_implementation"):
        try:
            setattr(cfg, attr, "eager")
        except Exception:
            pass
    return cfg


def randomise_(model, gen):
    """Give every norm weight, LayerNorm bias and router bias a non-trivial value."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.split(".")[-2:]
            if "norm" in name and leaf[-1] == "weight":
                p.copy_(1.0 + 0.3 * torch.randn(p.shape, generator=gen))
            elif "norm" in name and leaf[-1] == "bias":
                p.copy_(0.2 * torch.randn(p.shape, generator=gen))
        for name, b in list(model.named_buffers()) + list(model.named_parameters()):
            if name.endswith("e_score_correction_bias"):
                b.copy_(0.05 * torch.randn(b.shape, generator=gen))


def bf16_round(t):
    return t.detach().to(torch.bfloat16)


def disk_tensors(full_sd, cfg, n_layers, mtp, gen):
    """HF-layout fp32 state dict (with the extra MTP layer at index n_layers) -> on-disk tensors."""
    out = {}
    E = cfg["n_routed_experts"]
    I = cfg["moe_intermediate_size"]
    for name, t in full_sd.items():
        t = t.detach().float().contiguous()
        parts = name.split(".")
        is_mtp = len(parts) > 2 and parts[1] == "layers" and int(parts[2]) == n_layers
        if is_mtp and not mtp:
            continue
        if name.endswith("mlp.experts.gate_up_proj") or name.endswith("mlp.experts.down_proj"):
            prefix = name[: -len("gate_up_proj")] if name.endswith("gate_up_proj") else name[: -len("down_proj")]
            for e in range(E):
                if name.endswith("gate_up_proj"):
                    mats = {"gate_proj": t[e, :I, :], "up_proj": t[e, I:, :]}
                else:
                    mats = {"down_proj": t[e]}
                for proj, w in mats.items():
                    base = f"{prefix}{e}.{proj}"
                    if is_mtp:  # excluded from quantisation: plain BF16 per-expert linears
                        out[f"{base}.weight"] = bf16_round(w)
                        continue
                    if proj == "up_proj":
                        w = w * 1.7  # make the up global scale clearly differ from gate's
                    packed, sc, s2 = quantize_nvfp4(w.numpy())
                    out[f"{base}.weight"] = torch.from_numpy(packed)
                    out[f"{base}.weight_scale"] = sc
                    out[f"{base}.weight_scale_2"] = torch.tensor(s2, dtype=torch.float32)
                    out[f"{base}.input_scale"] = torch.tensor(
                        float(0.01 * (1.0 + torch.rand((), generator=gen))), dtype=torch.float32)
            continue
        if name.endswith("e_score_correction_bias") or ".indexer.k_norm." in name:
            out[name] = t.clone()
        else:
            out[name] = bf16_round(t)
    return out


def write_shards(tensors, model_dir, n_shards):
    from safetensors.torch import save_file
    names = sorted(tensors.keys())
    # Spread tensors round-robin by size so every shard holds a mix (and experts span shards).
    sizes = [0] * n_shards
    groups = [dict() for _ in range(n_shards)]
    for name in sorted(names, key=lambda n: -tensors[n].numel() * tensors[n].element_size()):
        k = sizes.index(min(sizes))
        groups[k][name] = tensors[name].contiguous()
        sizes[k] += tensors[name].numel() * tensors[name].element_size()
    weight_map = {}
    for k, g in enumerate(groups):
        fname = f"model-{k + 1:05d}-of-{n_shards:05d}.safetensors"
        save_file(g, os.path.join(model_dir, fname), metadata={"format": "pt"})
        for name in g:
            weight_map[name] = fname
    index = {"metadata": {"total_size": int(sum(sizes))}, "weight_map": dict(sorted(weight_map.items()))}
    with open(os.path.join(model_dir, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)


def read_back(model_dir):
    from safetensors.torch import load_file
    with open(os.path.join(model_dir, "model.safetensors.index.json")) as f:
        files = sorted(set(json.load(f)["weight_map"].values()))
    sd = {}
    for fn in files:
        sd.update(load_file(os.path.join(model_dir, fn)))
    return sd


def hf_state_from_disk(disk, cfg, n_layers):
    """Dequantise what is on disk into the fp32 HF-layout state dict of the first n_layers."""
    E = cfg["n_routed_experts"]
    sd = {}
    experts = {}
    for name, t in disk.items():
        parts = name.split(".")
        if len(parts) > 2 and parts[1] == "layers" and int(parts[2]) >= n_layers:
            continue
        if ".mlp.experts." in name:
            if name.endswith(".weight"):
                p = name.split(".mlp.experts.")
                layer_prefix = p[0]
                e, proj = p[1].split(".")[0:2]
                if t.dtype == torch.uint8:
                    base = name[: -len(".weight")]
                    w = dequantize_nvfp4(t.numpy(), disk[base + ".weight_scale"], disk[base + ".weight_scale_2"].item())
                    w = torch.from_numpy(w)
                else:
                    w = t.float()
                experts.setdefault(layer_prefix, {})[(int(e), proj)] = w
            continue
        sd[name] = t.float()
    for layer_prefix, m in experts.items():
        sd[f"{layer_prefix}.mlp.experts.gate_up_proj"] = torch.stack(
            [torch.cat([m[(e, "gate_proj")], m[(e, "up_proj")]], dim=0) for e in range(E)])
        sd[f"{layer_prefix}.mlp.experts.down_proj"] = torch.stack([m[(e, "down_proj")] for e in range(E)])
    return sd


# ---------------------------------------------------------------------------------------------
# recording hooks
class Recorder:
    def __init__(self, model, cfg):
        self.model = model
        self.cfg = cfg
        self.ctx = None
        self.reset()
        self.unchecked_rows = 0
        self.handles = []
        self.orig_topk = torch.topk
        self.orig_tensor_topk = torch.Tensor.topk
        rec = self

        def topk_wrap(inp, *args, **kwargs):
            res = rec.orig_topk(inp, *args, **kwargs)
            if rec.ctx is not None:
                rec.topk_calls.append((rec.ctx, inp.detach().clone(), res.indices.detach().clone()))
            return res

        def tensor_topk_wrap(self_t, *args, **kwargs):
            return topk_wrap(self_t, *args, **kwargs)

        torch.topk = topk_wrap
        torch.Tensor.topk = tensor_topk_wrap
        for li, layer in enumerate(model.model.layers):
            attn = layer.self_attn
            idx = getattr(attn, "indexer", None)
            if idx is not None:
                self.handles.append(idx.register_forward_pre_hook(self._enter(("indexer", li))))
                self.handles.append(idx.register_forward_hook(self._indexer_out(li)))
            mlp = layer.mlp
            if hasattr(mlp, "gate") and hasattr(mlp, "experts"):
                self.handles.append(mlp.register_forward_pre_hook(self._enter(("moe", li))))
                self.handles.append(mlp.register_forward_hook(self._moe_out(li)))
                # The router returns (logits, weights, indices); keep the last two.
                self.handles.append(mlp.gate.register_forward_hook(self._router_out(li)))
            self.handles.append(layer.register_forward_hook(self._layer_out(li)))
        self.handles.append(model.model.embed_tokens.register_forward_hook(self._emb_out))
        self.handles.append(model.model.norm.register_forward_hook(self._norm_out))

    def close(self):
        torch.topk = self.orig_topk
        torch.Tensor.topk = self.orig_tensor_topk
        for h in self.handles:
            h.remove()

    def reset(self):
        self.topk_calls = []
        self.indexer = {}   # layer -> (indices [S,k], scores [S,T] or None)
        self.experts = {}   # layer -> (ids [N,k], weights [N,k])
        self.route = {}
        self.hidden = {}

    def _enter(self, ctx):
        def f(module, args, kwargs=None):
            self.ctx = ctx
            self.topk_calls = []
        return f

    def _indexer_out(self, li):
        def f(module, args, out):
            idx = out[0] if isinstance(out, (tuple, list)) else out
            scores = None
            for ctx, inp, ind in self.topk_calls:
                if ctx == ("indexer", li) and inp.dim() >= 2 and inp.shape[-1] >= idx.shape[-1]:
                    scores = inp
            self.indexer[li] = (idx.detach().clone(), None if scores is None else scores.detach().clone())
            self.ctx = None
        return f

    def _moe_out(self, li):
        def f(module, args, out):
            k = self.cfg["num_experts_per_tok"]
            if li in self.route:
                w, ids = self.route[li][-2], self.route[li][-1]
                self.experts[li] = (ids.detach().clone(), w.detach().clone())
            else:
                calls = [ind for ctx, inp, ind in self.topk_calls if ctx == ("moe", li) and ind.shape[-1] == k]
                self.experts[li] = (calls[-1], None)
            self.ctx = None
        return f

    def _router_out(self, li):
        def f(module, args, out):
            if isinstance(out, (tuple, list)) and len(out) >= 3:
                self.route[li] = out
        return f

    def _layer_out(self, li):
        def f(module, args, out):
            h = out[0] if isinstance(out, (tuple, list)) else out
            self.hidden[li + 1] = h.detach().clone()
        return f

    def _emb_out(self, module, args, out):
        self.hidden[0] = out.detach().clone()

    def _norm_out(self, module, args, out):
        self.hidden["final"] = out.detach().clone()


def visible_sets(rec, n_layers, past_len, seq_len, topk):
    """Per layer with its own indexer: for each query row, the sorted set of selected causal keys."""
    sets = {}
    ties = 0
    for li in range(n_layers):
        if li not in rec.indexer:
            continue
        idx, scores = rec.indexer[li]
        idx = idx.reshape(-1, idx.shape[-1])[-seq_len:]
        rows = []
        for s in range(seq_len):
            pos = past_len + s
            chosen = sorted(int(t) for t in idx[s].tolist() if int(t) <= pos)
            rows.append(chosen)
            if scores is None:
                rec.unchecked_rows += 1
            elif pos + 1 > topk:
                sc = scores.reshape(-1, scores.shape[-1])[-seq_len:][s, : pos + 1].double()
                v = torch.sort(sc, descending=True).values
                if v[topk - 1] == v[topk]:
                    ties += 1
        sets[str(li)] = rows
    return sets, ties


def expert_sets(rec, n_layers):
    ids, weights = {}, {}
    for li in range(n_layers):
        if li not in rec.experts:
            continue
        e, w = rec.experts[li]
        e = e.reshape(-1, e.shape[-1])
        order = torch.argsort(e, dim=-1)
        ids[str(li)] = torch.gather(e, -1, order).tolist()
        if w is not None:
            w = w.reshape(-1, w.shape[-1])
            weights[str(li)] = torch.gather(w.float(), -1, order).tolist()
    return ids, weights


# ---------------------------------------------------------------------------------------------
def make_fixture(name, fx, out_root, tok):
    import transformers
    model_dir = os.path.join(out_root, name)
    os.makedirs(model_dir, exist_ok=True)
    cfg_dict = build_config_dict(name, fx)
    n = cfg_dict["num_hidden_layers"]
    pattern = fx.get("index_topk_pattern")
    # The per-layer indexer kinds as the C++ side must derive them (model.md 1.3 / 5.4).
    if pattern:
        derived = pattern
    else:
        freq, off = fx.get("index_topk_freq", 1), fx.get("index_skip_topk_offset", 2)
        derived = "".join("F" if max(i - off + 1, 0) % freq == 0 else "S" for i in range(n))

    # Build N+1 layers so layer N (the MTP layer's decoder block) gets the same init recipe.
    torch.manual_seed(fx["seed"])
    gen = torch.Generator().manual_seed(fx["seed"] + 1)
    big_cfg = hf_config(cfg_dict, num_layers=n + 1, pattern=derived + "F")  # the MTP layer owns an indexer
    big = transformers.GlmMoeDsaForCausalLM(big_cfg).float().eval()
    randomise_(big, gen)
    full_sd = dict(big.state_dict())
    D, V = cfg_dict["hidden_size"], cfg_dict["vocab_size"]
    if fx["mtp"]:
        p = f"model.layers.{n}."
        full_sd[p + "enorm.weight"] = 1.0 + 0.3 * torch.randn(D, generator=gen)
        full_sd[p + "hnorm.weight"] = 1.0 + 0.3 * torch.randn(D, generator=gen)
        full_sd[p + "eh_proj.weight"] = 0.08 * torch.randn(D, 2 * D, generator=gen)
        full_sd[p + "shared_head.norm.weight"] = 1.0 + 0.3 * torch.randn(D, generator=gen)
        full_sd[p + "shared_head.head.weight"] = full_sd["lm_head.weight"].clone()
        full_sd[p + "embed_tokens.weight"] = full_sd["model.embed_tokens.weight"].clone()
    del big

    disk = disk_tensors(full_sd, cfg_dict, n, fx["mtp"], gen)
    write_shards(disk, model_dir, fx["shards"])
    qc = quant_config(cfg_dict, fx["quant_style"])
    cfg_json = dict(cfg_dict)
    cfg_json["quantization_config"] = qc
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg_json, f, indent=2)
    with open(os.path.join(model_dir, "hf_quant_config.json"), "w") as f:
        json.dump({"producer": {"name": "modelopt", "version": "0.0.fixture"},
                   "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
                                    "exclude_modules": exclude_modules(cfg_dict)}}, f, indent=2)
    with open(os.path.join(model_dir, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": False, "eos_token_id": EOS_IDS, "pad_token_id": 0,
                   "do_sample": True, "temperature": 1.0, "top_p": 0.95}, f, indent=2)
    tok.save(os.path.join(model_dir, "tokenizer.json"))
    with open(os.path.join(model_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>", "model_max_length": 256}, f, indent=2)

    # Reference model: exactly a function of the bytes on disk.
    disk_back = read_back(model_dir)
    sd = hf_state_from_disk(disk_back, cfg_dict, n)
    hcfg = hf_config(cfg_dict, pattern=pattern)
    model = transformers.GlmMoeDsaForCausalLM(hcfg).float().eval()
    # Force the eager attention and the eager per-expert loop (ascending expert ids, index_add_).
    model.config._attn_implementation = "eager"
    model.config._experts_implementation = "eager"
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "rotary" not in m]
    assert not missing and not unexpected, (missing, unexpected)
    indexer_types = list(getattr(hcfg, "indexer_types", None) or [])
    has_indexer = [getattr(l.self_attn, "indexer", None) is not None for l in model.model.layers]
    assert has_indexer == [c == "F" for c in derived], (has_indexer, derived, indexer_types)

    # Dequant reference for one expert of the first MoE layer.
    L0 = cfg_dict["first_k_dense_replace"]
    E0 = 3
    dq = {}
    for proj in ("gate_proj", "up_proj", "down_proj"):
        base = f"model.layers.{L0}.mlp.experts.{E0}.{proj}"
        dq[proj] = dequantize_nvfp4(disk_back[base + ".weight"].numpy(), disk_back[base + ".weight_scale"],
                                    disk_back[base + ".weight_scale_2"].item())
        np.save(os.path.join(model_dir, f"reference_dequant_{proj.split('_')[0]}.npy"), dq[proj])
    s2g = disk_back[f"model.layers.{L0}.mlp.experts.{E0}.gate_proj.weight_scale_2"].item()
    s2u = disk_back[f"model.layers.{L0}.mlp.experts.{E0}.up_proj.weight_scale_2"].item()
    assert s2g != s2u

    # Prompts.
    g = torch.Generator().manual_seed(fx["seed"] + 2)
    prompts = [tok.encode(t).ids for t in PROMPT_TEXTS]
    for length in PROMPT_LENGTHS:
        body = torch.randint(36, V, (length - 2,), generator=g).tolist()
        prompts.append([2, 4] + body)

    rec = Recorder(model, cfg_dict)
    topk = cfg_dict["index_topk"]
    ref = {"config_name": name, "transformers_version": transformers.__version__,
           "torch_version": torch.__version__, "num_hidden_layers": n, "index_topk": topk,
           "indexer_types": indexer_types, "attn_implementation": model.config._attn_implementation,
           "experts_implementation": model.config._experts_implementation, "layer_has_indexer": has_indexer,
           "prompts": prompts, "prefill": [], "greedy": [], "ties_at_topk_boundary": 0,
           "dequant": {"layer": L0, "expert": E0, "gate_weight_scale_2": s2g, "up_weight_scale_2": s2u,
                       "files": {"gate_proj": "reference_dequant_gate.npy", "up_proj": "reference_dequant_up.npy",
                                 "down_proj": "reference_dequant_down.npy"}}}
    all_logits = []
    decode_logits = []
    ties = 0
    with torch.no_grad():
        for pi, ids in enumerate(prompts):
            rec.reset()
            x = torch.tensor([ids])
            out = model(input_ids=x, use_cache=True)
            logits = out.logits[0].float()
            all_logits.append(logits.numpy())
            sets, t = visible_sets(rec, n, 0, len(ids), topk)
            ties += t
            ex_ids, ex_w = expert_sets(rec, n)
            ref["prefill"].append({"prompt": pi, "length": len(ids), "logits_offset": int(sum(len(p) for p in prompts[:pi])),
                                   "indexer_topk": sets, "expert_ids": ex_ids, "expert_weights": ex_w})
            if pi == len(prompts) - 2:  # the longest prompt: hidden states after every layer
                hid = [rec.hidden[0][0]] + [rec.hidden[i + 1][0] for i in range(n)] + [rec.hidden["final"][0]]
                np.save(os.path.join(model_dir, "reference_hidden.npy"),
                        torch.stack(hid).float().numpy().astype(np.float32))
                ref["hidden_prompt"] = pi
            # Greedy continuation through the KV cache, one token per step.
            past = out.past_key_values
            nxt = int(torch.argmax(logits[-1]))
            gen_ids, steps = [], []
            for step in range(GREEDY_STEPS):
                gen_ids.append(nxt)
                rec.reset()
                o = model(input_ids=torch.tensor([[nxt]]), past_key_values=past, use_cache=True)
                past = o.past_key_values
                lg = o.logits[0, -1].float()
                decode_logits.append(lg.numpy())
                s, t = visible_sets(rec, n, len(ids) + step, 1, topk)
                ties += t
                e, _ = expert_sets(rec, n)
                steps.append({"indexer_topk": {k: v[0] for k, v in s.items()},
                              "expert_ids": {k: v[0] for k, v in e.items()}})
                nxt = int(torch.argmax(lg))
            ref["greedy"].append({"prompt": pi, "ids": gen_ids, "steps": steps})
    rec.close()
    ref["ties_at_topk_boundary"] = ties
    assert rec.unchecked_rows == 0, "indexer scores were not captured: tie check impossible"
    np.save(os.path.join(model_dir, "reference_logits.npy"), np.concatenate(all_logits).astype(np.float32))
    np.save(os.path.join(model_dir, "reference_decode_logits.npy"), np.stack(decode_logits).astype(np.float32))
    with open(os.path.join(model_dir, "reference.json"), "w") as f:
        json.dump(ref, f, separators=(",", ":"))
    print(f"{name}: layers={n} indexer_types={indexer_types} has_indexer={has_indexer} ties={ties} "
          f"prompt_lengths={[len(p) for p in prompts]} greedy0={ref['greedy'][0]['ids']}")
    return ties


def main():
    out_root = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(out_root, exist_ok=True)
    torch.set_num_threads(4)
    tok_path = os.path.join(out_root, "_tokenizer.json")
    tok = make_tokenizer(tok_path)
    names = sys.argv[2:] or list(FIXTURES)
    for name in names:
        make_fixture(name, FIXTURES[name], out_root, tok)
    os.remove(tok_path)


if __name__ == "__main__":
    main()
