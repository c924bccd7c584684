#!/usr/bin/env python3
"""Write a test tokenizer.json shaped like GLM-5's (tokenizer.md 1.2-1.5): GPT-2 byte alphabet, Llama-3
Split regex + ByteLevel, ByteLevel decoder, 154,820 regular ids and the 36 GLM-5 added tokens, which
therefore land on their real ids 154820..154855 (order and ids from tokenizer.md 1.5; HF assigns added
tokens the ids after the vocabulary, whatever the "id" field says).
The regular vocabulary is NOT GLM-5's (that file is not reachable offline): byte tokens, a few merges
("Hi" = 13041 and "\n" = 198 as in tokenizer.md 5.2) and unreachable filler entries. Expected ids still
come from HF `tokenizers` (make_expected.py), not from this script.
Usage: make_glm5_test_tokenizer.py OUT_PATH   (about 4 MB; generated at test time, not committed)
"""
import json
import os

import sys

N_REGULAR = 154820

ADDED = ["<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>",
         "<|assistant|>", "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>",
         "<|end_of_video|>", "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>",
         "<|end_of_transcription|>", "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>", "<think>",
         "</think>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>", "<arg_key>",
         "</arg_key>", "<arg_value>", "</arg_value>", "/nothink", "<|begin_of_box|>", "<|end_of_box|>",
         "<|image|>", "<|video|>"]
BASE = 154820


def byte_alphabet():
    """GPT-2 byte-to-unicode order: printable bytes keep their code point, the rest map to U+0100+n."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = {b: chr(b) for b in keep}
    n = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(0x100 + n)
            n += 1
    order = keep + [b for b in range(256) if b not in keep]
    return [chars[b] for b in order]


alphabet = byte_alphabet()
vocab = {c: i for i, c in enumerate(alphabet)}
assert vocab["\u010a"] == 198 and vocab["\u0120"] == 220  # "\n" and " " as in GPT-2 / GLM
merges = [("H", "i"), ("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"),
          ("Ġ", "w"), ("o", "r"), ("Ġw", "or"), ("l", "d"), ("Ġwor", "ld"), ("Ċ", "Ċ"), ("Ġ", "Ġ"),
          ("t", "h"), ("in", "k"), ("th", "ink"), ("e", "l"), ("el", "l"), ("H", "ell"), ("Hell", "o")]
next_id = 300
for a, b in merges:
    tok = a + b
    if tok in vocab:
        continue
    if tok == "Hi":
        vocab[tok] = 13041
    else:
        vocab[tok] = next_id
        next_id += 1

# Unreachable filler entries (no merge produces them) so that the vocabulary has GLM-5's size.
used = set(vocab.values())
for i in range(N_REGULAR):
    if i not in used:
        vocab[f"<filler_{i}>"] = i
assert len(vocab) == N_REGULAR and max(vocab.values()) == N_REGULAR - 1

llama3_regex = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
doc = {
    "version": "1.0",
    "truncation": None,
    "padding": None,
    "added_tokens": [{"id": BASE + i, "content": t, "single_word": False, "lstrip": False, "rstrip": False,
                      "normalized": False, "special": True} for i, t in enumerate(ADDED)],
    "normalizer": None,
    "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": llama3_regex}, "behavior": "Isolated", "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False}]},
    "post_processor": None,
    "decoder": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False, "use_regex": False},
    "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
              "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False, "ignore_merges": False,
              "vocab": vocab, "merges": [f"{a} {b}" for a, b in merges]},
}
OUT = sys.argv[1]
os.makedirs(os.path.dirname(os.path.abspath(OUT)), exist_ok=True)
with open(OUT + ".tmp", "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
os.replace(OUT + ".tmp", OUT)
print(f"wrote {OUT}: {len(vocab)} tokens, {len(merges)} merges, {len(ADDED)} added")
