#!/usr/bin/env python3
"""Train, quantise, export and evaluate the bundled tiny GLM-5 model (models/glm-tiny).

Runs on the GPU machine (torch + transformers + tokenizers + safetensors + numpy), after
scripts/tiny/prepare_data.py has written .tinydata/{train,valid}.jsonl and tests/tiny/heldout.txt:

  python3 scripts/tiny/train.py OUT_MODEL_DIR [TRAIN_SECONDS=240]

1. trains a byte-level BPE tokenizer (GLM split regex + ByteLevel, 4060 merges/bytes, then the 36 GLM-5
   special tokens at the end of the vocabulary: 4096 ids);
2. trains a GlmMoeDsaForCausalLM (transformers' modeling code, bf16 autocast, AdamW, wall-clock boxed):
   - aux-loss-free expert balancing: after each step e_score_correction_bias += 1e-3 * sign(mean - load);
   - the DSA indexer (which transformers runs under no_grad) is trained with DeepSeek-V3.2's KL objective
     against the main attention (summed over heads), on detached inputs; the first DENSE_FRAC of the
     time runs with dense attention (index_topk disabled: warm-up), then sparse with index_topk;
   - an MTP (NextN) layer model.layers.{N}: z = eh_proj([enorm(emb(x_{t+1})); hnorm(h_t)]) -> decoder
     layer N -> shared_head.norm -> lm_head predicts x_{t+2}; h_t is the main model's final-norm hidden
     state (detached), loss weight MTP_WEIGHT;
3. quantises the routed experts of the main layers to ModelOpt NVFP4 with scripts/make_fixtures.py
   (per-expert tensors, gate/up with their own global scales; the MTP layer stays BF16) and writes the
   checkpoint (2 shards + index, config.json, hf_quant_config.json, generation_config.json, tokenizer);
4. reads the written bytes back, dequantises them, and with transformers in float32 on the CPU computes
   the mean NLL of tests/tiny/heldout.txt and greedy continuations of the demo prompt -> reference.json.
"""
import json
import math
import os
import re
import sys
import time

T_START = time.time()
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import make_fixtures as mf  # noqa: E402  (NVFP4 quantiser, per-expert writer, config helpers)

VOCAB = 4096
N_SPECIAL = len(mf.SPECIAL_TOKENS)
SPECIAL_ID = {s: VOCAB - N_SPECIAL + i for i, s in enumerate(mf.SPECIAL_TOKENS)}
EOS_IDS = [SPECIAL_ID["<|endoftext|>"], SPECIAL_ID["<|user|>"], SPECIAL_ID["<|observation|>"]]
N_LAYERS = 5
CONFIG = dict(
    vocab_size=VOCAB, hidden_size=256, intermediate_size=512, moe_intermediate_size=128, n_shared_experts=1,
    num_attention_heads=4, num_key_value_heads=4, q_lora_rank=128, kv_lora_rank=64, qk_nope_head_dim=32,
    qk_rope_head_dim=16, v_head_dim=32, index_n_heads=8, index_head_dim=32, index_topk=64,
    rms_norm_eps=1e-5, max_position_embeddings=2048, initializer_range=0.02, tie_word_embeddings=False,
    hidden_act="silu", attention_bias=False, attention_dropout=0.0, scoring_func="sigmoid",
    topk_method="noaux_tc", moe_layer_freq=1, rope_interleave=True, indexer_rope_interleave=True,
    num_hidden_layers=N_LAYERS, first_k_dense_replace=1, n_routed_experts=16, num_experts_per_tok=2,
    n_group=1, topk_group=1, norm_topk_prob=True, routed_scaling_factor=2.5,
    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
)
SEQ = 512
BATCH = 32
LR = 2e-3
WARMUP = 100
DENSE_FRAC = 0.25
MTP_WEIGHT = 0.3
BIAS_RATE = 1e-3
DEMO_QUESTION = "Tell me about the sea."
DEMO_PROMPTS = {
    "think_off": "[gMASK]<sop><|user|>" + DEMO_QUESTION + "<|assistant|></think>",
    "think_on": "[gMASK]<sop><|user|>" + DEMO_QUESTION + "<|assistant|><think>",
}
GREEDY_MAX = 80

mf.EOS_IDS = EOS_IDS  # hf_config() puts these into the transformers config


def log(msg):
    print(f"[{time.time() - T_START:7.1f}s] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
def load_docs(name):
    with open(os.path.join(ROOT, ".tinydata", name)) as f:
        return [json.loads(line)["text"] for line in f]


def train_tokenizer(texts, path):
    from tokenizers import Tokenizer, Regex, models, pre_tokenizers, decoders, trainers, AddedToken
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(mf.GLM_SPLIT), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB - N_SPECIAL, special_tokens=[],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    split = re.compile("|".join(re.escape(s) for s in mf.SPECIAL_TOKENS))

    def pieces():
        for t in texts:
            for p in split.split(t):
                if p:
                    yield p

    tok.train_from_iterator(pieces(), trainer=trainer)
    n_bpe = tok.get_vocab_size()
    assert n_bpe == VOCAB - N_SPECIAL, n_bpe
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in mf.SPECIAL_TOKENS])
    for s, i in SPECIAL_ID.items():
        assert tok.token_to_id(s) == i, (s, tok.token_to_id(s), i)
    assert tok.get_vocab_size() == VOCAB
    tok.save(path)
    return tok


def pack(tok, texts, seq):
    eot = SPECIAL_ID["<|endoftext|>"]
    ids = []
    for enc, t in zip(tok.encode_batch(texts), texts):
        ids.extend(enc.ids)
        if not t.endswith("<|endoftext|>"):
            ids.append(eot)
    n = len(ids) // (seq + 1)
    return torch.tensor(ids[: n * (seq + 1)], dtype=torch.long).view(n, seq + 1), len(ids)


# ---------------------------------------------------------------------------------------------
class Mtp(torch.nn.Module):
    def __init__(self, big_cfg, layer, GlmMoeDsaRMSNorm):
        super().__init__()
        D, eps = big_cfg.hidden_size, big_cfg.rms_norm_eps
        self.enorm = GlmMoeDsaRMSNorm(D, eps)
        self.hnorm = GlmMoeDsaRMSNorm(D, eps)
        self.eh_proj = torch.nn.Linear(2 * D, D, bias=False)
        torch.nn.init.normal_(self.eh_proj.weight, std=big_cfg.initializer_range)
        self.layer = layer
        self.shared_head_norm = GlmMoeDsaRMSNorm(D, eps)

    def forward(self, model, h, ids):
        """h: final-norm hidden [B,S,D] of positions 0..S-1; ids [B,S]. Logits for x_{t+2}, t = 0..S-2."""
        B, S = ids.shape
        e = model.model.embed_tokens(ids[:, 1:])
        z = self.eh_proj(torch.cat([self.enorm(e), self.hnorm(h[:, :-1])], dim=-1))
        pos = torch.arange(1, S, device=ids.device).unsqueeze(0).expand(B, -1)
        pe = model.model.rotary_emb(z, pos)
        mask = torch.full((S - 1, S - 1), float("-inf"), device=ids.device).triu(1)[None, None]
        out = self.layer(z, attention_mask=mask, position_ids=pos, past_key_values=None, use_cache=False,
                         position_embeddings=pe)
        z = out[0] if isinstance(out, (tuple, list)) else out
        return model.lm_head(self.shared_head_norm(z))


# ---------------------------------------------------------------------------------------------
# Indexer training (KL to the main attention) and expert-load capture.
STATE = {"idx_train": False, "capture": False, "scores": None}
IDX_SCORES = {}
ATTN_PROBS = {}
LOADS = {}


def install_indexer_training(modeling):
    cls = modeling.GlmMoeDsaIndexer
    orig = cls.forward
    raw = getattr(orig, "__wrapped__", orig)  # transformers runs the indexer under torch.no_grad
    orig_topk = torch.Tensor.topk
    orig_torch_topk = torch.topk

    def topk(self_t, *a, **k):
        if STATE["capture"] and self_t.dim() == 3:
            STATE["scores"] = self_t
        return orig_topk(self_t, *a, **k)

    def torch_topk(inp, *a, **k):
        if STATE["capture"] and inp.dim() == 3:
            STATE["scores"] = inp
        return orig_torch_topk(inp, *a, **k)

    def det(v):
        return v.detach() if torch.is_tensor(v) else v

    def fwd(self, *a, **k):
        if STATE["idx_train"] and self.training:
            STATE["capture"], STATE["scores"] = True, None
            try:
                with torch.enable_grad():
                    res = raw(self, *[det(v) for v in a], **{n: det(v) for n, v in k.items()})
                if STATE["scores"] is not None and STATE["scores"].requires_grad:
                    IDX_SCORES[id(self)] = STATE["scores"]
                return res.detach() if torch.is_tensor(res) else res
            except Exception as exc:
                STATE["idx_train"] = False
                log(f"indexer training disabled: {type(exc).__name__}: {exc}")
            finally:
                STATE["capture"] = False
        return orig(self, *a, **k)

    cls.forward = fwd
    torch.Tensor.topk = topk
    torch.topk = torch_topk

    def restore():
        cls.forward = orig
        torch.Tensor.topk = orig_topk
        torch.topk = orig_torch_topk
    return True, restore


def attn_hook(module, args, out):
    if STATE["idx_train"] and module.training and isinstance(out, (tuple, list)) and len(out) > 1 \
            and torch.is_tensor(out[1]) and getattr(module, "indexer", None) is not None:
        ATTN_PROBS[id(module.indexer)] = out[1].detach()


def gate_hook(module, args, out):
    try:
        gate_load(module, out)
    except Exception as exc:
        log(f"gate hook: {type(exc).__name__}: {exc}")


def gate_load(module, out):
    if not module.training:
        return
    logits = out[0] if isinstance(out, (tuple, list)) else out
    with torch.no_grad():
        E = module.e_score_correction_bias.shape[0]
        logits = logits.reshape(-1, logits.shape[-1])
        if logits.shape[-1] != E:
            return
        sc = logits.float().sigmoid() + module.e_score_correction_bias
        idx = torch.topk(sc, k=module.top_k if hasattr(module, "top_k") else CONFIG["num_experts_per_tok"],
                         dim=-1).indices
        load = torch.bincount(idx.flatten(), minlength=E).float()
        LOADS[id(module)] = (module, LOADS.get(id(module), (None, 0))[1] + load)


def indexer_kl():
    total, n = 0.0, 0
    for key, scores in IDX_SCORES.items():
        p = ATTN_PROBS.get(key)
        if p is None or p.dim() != 4:
            continue
        p = p.float().sum(1)  # [B,S,T]
        T = min(p.shape[-1], scores.shape[-1])
        p = p[..., :T]
        p = p / p.sum(-1, keepdim=True).clamp_min(1e-20)
        ls = F.log_softmax(scores[..., :T].float(), dim=-1)
        kl = torch.where(p > 0, p * (torch.log(p.clamp_min(1e-20)) - ls), torch.zeros_like(p))
        total = total + kl.sum(-1).mean()
        n += 1
    IDX_SCORES.clear()
    ATTN_PROBS.clear()
    return total / max(n, 1), n


def set_topk(modules, k):
    for m in modules:
        m.index_topk = k


# ---------------------------------------------------------------------------------------------
def main():
    import transformers
    from transformers.models.glm_moe_dsa import modeling_glm_moe_dsa as modeling
    out_dir = sys.argv[1]
    train_seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 240.0
    os.makedirs(out_dir, exist_ok=True)
    torch.manual_seed(1234)
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    report = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
              "device": torch.cuda.get_device_name(0) if dev.type == "cuda" else "cpu"}

    # --- data + tokenizer
    train_docs, valid_docs = load_docs("train.jsonl"), load_docs("valid.jsonl")
    tok = train_tokenizer(train_docs, os.path.join(out_dir, "tokenizer.json"))
    log(f"tokenizer: {tok.get_vocab_size()} ids")
    train, n_train_tok = pack(tok, train_docs, SEQ)
    valid, n_valid_tok = pack(tok, valid_docs, SEQ)
    log(f"train tokens {n_train_tok} ({train.shape[0]} blocks), valid tokens {n_valid_tok} ({valid.shape[0]} blocks)")
    report.update(train_tokens=n_train_tok, valid_tokens=n_valid_tok)

    # --- model
    cfg_dict = dict(CONFIG)
    cfg = mf.hf_config(cfg_dict)
    big_cfg = mf.hf_config(cfg_dict, num_layers=N_LAYERS + 1)
    model = transformers.GlmMoeDsaForCausalLM(cfg)
    tmp = transformers.GlmMoeDsaForCausalLM(big_cfg)
    mtp = Mtp(big_cfg, tmp.model.layers[N_LAYERS], type(model.model.norm))
    del tmp
    model.to(dev).train()
    mtp.to(dev).train()
    n_params = sum(p.numel() for p in model.parameters()) + sum(p.numel() for p in mtp.parameters())
    log(f"params: model {sum(p.numel() for p in model.parameters())}, with MTP {n_params}")
    report["params_with_mtp"] = n_params

    can_train_idx, restore = install_indexer_training(modeling)
    attn_mods = [m for m in list(model.modules()) + list(mtp.modules()) if isinstance(m, modeling.GlmMoeDsaAttention)]
    indexers = [m.indexer for m in attn_mods if getattr(m, "indexer", None) is not None]
    gates = [m for m in list(model.modules()) + list(mtp.modules()) if isinstance(m, modeling.GlmMoeDsaTopkRouter)]
    for m in attn_mods:
        m.register_forward_hook(attn_hook)
    for g in gates:
        g.register_forward_hook(gate_hook)
    STATE["idx_train"] = can_train_idx
    use_mtp = True
    log(f"indexer training: {can_train_idx}; attention modules {len(attn_mods)}, routers {len(gates)}")

    params = [p for p in list(model.parameters()) + list(mtp.parameters()) if p.requires_grad]
    idx_ids = {id(p) for m in indexers for p in m.parameters()}
    idx_params = [p for p in params if id(p) in idx_ids]
    main_params = [p for p in params if id(p) not in idx_ids]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.95), eps=1e-8)
    g = torch.Generator().manual_seed(99)

    def evaluate(n_blocks=24):
        model.eval()
        mtp.eval()
        tot, totm, cnt = 0.0, 0.0, 0
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            for i in range(0, min(n_blocks, valid.shape[0]), 8):
                b = valid[i:i + 8].to(dev)
                x, y = b[:, :-1], b[:, 1:]
                h = model.model(input_ids=x, use_cache=False).last_hidden_state
                tot += F.cross_entropy(model.lm_head(h).float().reshape(-1, VOCAB), y.reshape(-1)).item() * b.shape[0]
                if use_mtp:
                    lm = mtp(model, h, x)
                    totm += F.cross_entropy(lm[:, :-1].float().reshape(-1, VOCAB), x[:, 2:].reshape(-1)).item() * b.shape[0]
                cnt += b.shape[0]
        model.train()
        mtp.train()
        return tot / cnt, totm / cnt

    history = []
    step, t0 = 0, time.time()
    dense = True
    set_topk(indexers, 1 << 30)
    loss_ema = None
    while True:
        el = time.time() - t0
        frac = el / train_seconds
        if frac >= 1.0:
            break
        if dense and frac >= DENSE_FRAC:
            dense = False
            set_topk(indexers, CONFIG["index_topk"])
            vl = evaluate()
            log(f"step {step}: switching to sparse attention (index_topk {CONFIG['index_topk']}); valid {vl}")
            history.append({"step": step, "t": el, "valid": vl[0], "valid_mtp": vl[1], "phase": "dense_end"})
        lr = LR * min(1.0, (step + 1) / WARMUP) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
        for grp in opt.param_groups:
            grp["lr"] = lr
        idx = torch.randint(0, train.shape[0], (BATCH,), generator=g)
        b = train[idx].to(dev, non_blocking=True)
        x, y = b[:, :-1], b[:, 1:]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda"):
            h = model.model(input_ids=x, use_cache=False).last_hidden_state
            loss_main = F.cross_entropy(model.lm_head(h).float().reshape(-1, VOCAB), y.reshape(-1))
            loss = loss_main
            loss_mtp = torch.zeros(())
            if use_mtp:
                try:
                    lm = mtp(model, h.detach(), x)
                    loss_mtp = F.cross_entropy(lm[:, :-1].float().reshape(-1, VOCAB), x[:, 2:].reshape(-1))
                    loss = loss + MTP_WEIGHT * loss_mtp
                except Exception as exc:  # keep training the main model; ship the MTP layer untrained
                    use_mtp = False
                    log(f"MTP disabled: {type(exc).__name__}: {exc}")
                    report["mtp_error"] = f"{type(exc).__name__}: {exc}"
            kl, n_kl = torch.zeros(()), 0
            if STATE["idx_train"]:
                try:
                    kl, n_kl = indexer_kl()
                except Exception as exc:
                    STATE["idx_train"] = False
                    IDX_SCORES.clear()
                    ATTN_PROBS.clear()
                    kl, n_kl = torch.zeros(()), 0
                    log(f"indexer KL failed, indexer training disabled: {type(exc).__name__}: {exc}")
                    report["indexer_training"] = f"disabled ({type(exc).__name__})"
            if STATE["idx_train"] and step == 0 and n_kl == 0:
                STATE["idx_train"] = False
                log("indexer KL: nothing captured, indexer training disabled")
                report["indexer_training"] = "disabled (no capture)"
            if n_kl:
                loss = loss + kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main_params, 1.0)
        torch.nn.utils.clip_grad_norm_(idx_params, 1.0)
        opt.step()
        with torch.no_grad():
            for gate, load in LOADS.values():
                gate.e_score_correction_bias += BIAS_RATE * torch.sign(load.mean() - load)
        LOADS.clear()
        lm_v = loss_main.item() if step % 25 == 0 or step < 3 else None
        if lm_v is not None:
            loss_ema = lm_v if loss_ema is None else 0.7 * loss_ema + 0.3 * lm_v
            rec = {"step": step, "t": round(time.time() - t0, 1), "lr": lr, "loss": lm_v,
                   "loss_mtp": float(loss_mtp), "indexer_kl": float(kl) if n_kl else None, "n_kl": n_kl}
            history.append(rec)
            if step % 100 == 0 or step < 3:
                log(json.dumps(rec))
        step += 1
    train_time = time.time() - t0
    vl = evaluate(valid.shape[0])
    log(f"trained {step} steps in {train_time:.0f}s; last train loss ~{loss_ema}; valid {vl}")
    STATE["idx_train"] = False
    restore()
    bias_abs = [float(gt.e_score_correction_bias.abs().max()) for gt in gates]
    report.update(steps=step, train_seconds=train_time, tokens_seen=step * BATCH * SEQ, train_loss_ema=loss_ema,
                  valid_loss=vl[0], valid_loss_mtp=vl[1] if use_mtp else None, mtp_trained=use_mtp,
                  indexer_trained=report.get("indexer_training") is None,
                  bias_absmax=bias_abs, history=history,
                  recipe=dict(seq=SEQ, batch=BATCH, lr=LR, warmup=WARMUP, dense_frac=DENSE_FRAC,
                              mtp_weight=MTP_WEIGHT, bias_rate=BIAS_RATE, optimizer="AdamW(0.9,0.95) wd 0.1",
                              schedule="linear warmup, cosine to 0.1x over the wall-clock budget",
                              precision="bf16 autocast, fp32 master weights"))

    # --- export
    model.float().cpu().eval()
    mtp.float().cpu().eval()
    full_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    I = CONFIG["moe_intermediate_size"]
    for k, v in full_sd.items():
        if k.endswith("mlp.experts.gate_up_proj"):
            v[:, I:, :] /= 1.7  # make_fixtures.disk_tensors multiplies up_proj by 1.7 (non-MTP layers)
    p = f"model.layers.{N_LAYERS}."
    for k, v in mtp.layer.state_dict().items():
        full_sd[p + k] = v.detach().clone()
    full_sd[p + "enorm.weight"] = mtp.enorm.weight.detach().clone()
    full_sd[p + "hnorm.weight"] = mtp.hnorm.weight.detach().clone()
    full_sd[p + "eh_proj.weight"] = mtp.eh_proj.weight.detach().clone()
    full_sd[p + "shared_head.norm.weight"] = mtp.shared_head_norm.weight.detach().clone()
    full_sd = {k: v for k, v in full_sd.items() if "rotary" not in k and "_cached_keys" not in k}
    gen = torch.Generator().manual_seed(5)
    disk = mf.disk_tensors(full_sd, cfg_dict, N_LAYERS, True, gen)
    for k in list(disk):
        if k.endswith(".input_scale"):
            disk[k] = torch.tensor(1.0 / (6.0 * 448.0) * 8.0, dtype=torch.float32)  # placeholder; W4A16 ignores it
    mf.write_shards(disk, out_dir, 2)
    cfg_json = dict(cfg_dict)
    cfg_json.update(architectures=["GlmMoeDsaForCausalLM"], model_type="glm_moe_dsa",
                    rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                    head_dim=CONFIG["qk_rope_head_dim"],
                    qk_head_dim=CONFIG["qk_nope_head_dim"] + CONFIG["qk_rope_head_dim"],
                    num_nextn_predict_layers=1, eos_token_id=EOS_IDS, bos_token_id=None,
                    pad_token_id=EOS_IDS[0], torch_dtype="bfloat16", use_cache=True,
                    quantization_config=mf.quant_config(cfg_dict, "target"))
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg_json, f, indent=2)
    with open(os.path.join(out_dir, "hf_quant_config.json"), "w") as f:
        json.dump({"producer": {"name": "modelopt", "version": "0.0.glm-tiny"},
                   "quantization": {"quant_algo": "NVFP4", "kv_cache_quant_algo": None, "group_size": 16,
                                    "exclude_modules": mf.exclude_modules(cfg_dict)}}, f, indent=2)
    with open(os.path.join(out_dir, "generation_config.json"), "w") as f:
        json.dump({"_from_model_config": False, "eos_token_id": EOS_IDS, "pad_token_id": EOS_IDS[0],
                   "do_sample": True, "temperature": 0.7, "top_p": 0.9}, f, indent=2)
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": "<|endoftext|>",
                   "pad_token": "<|endoftext|>", "padding_side": "left", "clean_up_tokenization_spaces": False,
                   "do_lower_case": False, "model_max_length": CONFIG["max_position_embeddings"]}, f, indent=2)
    log("checkpoint written")

    # --- reference: transformers fp32 on the dequantised bytes (CPU)
    torch.set_num_threads(16)
    heldout = open(os.path.join(ROOT, "tests/tiny/heldout.txt")).read()
    h_ids = tok.encode(heldout).ids
    ref = {"transformers_version": transformers.__version__, "torch_version": torch.__version__,
           "heldout_file": "tests/tiny/heldout.txt", "heldout_ids": h_ids}

    def nll_of(m):
        with torch.no_grad():
            lg = m(input_ids=torch.tensor([h_ids]), use_cache=False).logits[0].double()
            lp = torch.log_softmax(lg[:-1], dim=-1)
            tgt = torch.tensor(h_ids[1:])
            return float(-lp.gather(1, tgt[:, None]).mean())

    ref["nll_trained_fp32_unquantised"] = nll_of(model)
    disk_back = mf.read_back(out_dir)
    sd = mf.hf_state_from_disk(disk_back, cfg_dict, N_LAYERS)
    rcfg = mf.hf_config(cfg_dict)
    rmodel = transformers.GlmMoeDsaForCausalLM(rcfg).float().eval()
    rmodel.config._attn_implementation = "eager"
    rmodel.config._experts_implementation = "eager"
    missing, unexpected = rmodel.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "rotary" not in m]
    assert not missing and not unexpected, (missing, unexpected)
    ref["nll"] = nll_of(rmodel)
    ref["n_predictions"] = len(h_ids) - 1
    log(f"held-out: {len(h_ids)} ids, NLL dequantised {ref['nll']:.6f} (unquantised {ref['nll_trained_fp32_unquantised']:.6f})")
    ref["greedy"] = {}
    for name, text in DEMO_PROMPTS.items():
        ids = tok.encode(text).ids
        gen_ids, margins = [], []
        with torch.no_grad():
            for _ in range(GREEDY_MAX):
                lg = rmodel(input_ids=torch.tensor([ids + gen_ids]), use_cache=False).logits[0, -1].double()
                top = torch.topk(lg, 2)
                margins.append(float(top.values[0] - top.values[1]))
                nxt = int(top.indices[0])
                gen_ids.append(nxt)
                if nxt in EOS_IDS:
                    break
        ref["greedy"][name] = {"prompt": text, "prompt_ids": ids, "ids": gen_ids, "margins": margins,
                               "text": tok.decode(gen_ids, skip_special_tokens=False)}
        log(f"greedy {name}: {ref['greedy'][name]['text']!r}")
    with open(os.path.join(out_dir, "reference.json"), "w") as f:
        json.dump(ref, f)
    report["reference"] = {k: v for k, v in ref.items() if k != "heldout_ids"}
    with open(os.path.join(out_dir, "train_report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log("done")


if __name__ == "__main__":
    main()
