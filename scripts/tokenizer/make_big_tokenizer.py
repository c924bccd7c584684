#!/usr/bin/env python3
"""Build a GLM-5.1-sized tokenizer.json for the load-time benchmark from a real one (the GLM-5.1 file,
~20 MB, is not reachable offline): pads the vocabulary to 154,820 entries and the merges to 321,649 (the
GLM-5.1 counts, tokenizer.md section 0) and writes it pretty-printed as HF does (indent 2).
Padding merges repeat real merges (a repeated pair keeps its first rank, so encoding is unchanged).
Usage: make_big_tokenizer.py SOURCE_TOKENIZER_JSON OUT_PATH
"""
import json
import sys

N_VOCAB, N_MERGES = 154820, 321649
src, out = sys.argv[1], sys.argv[2]
with open(src, encoding="utf-8") as f:
    doc = json.load(f)
model = doc["model"]
vocab = model["vocab"]
next_id = max(vocab.values()) + 1
i = 0
while len(vocab) < N_VOCAB:
    vocab[f"<pad_token_{i}>"] = next_id
    next_id += 1
    i += 1
merges = model["merges"]
n = len(merges)
k = 0
while len(merges) < N_MERGES:
    merges.append(merges[k % n])
    k += 1
# Added tokens follow the vocabulary, as in GLM-5.1.
for j, t in enumerate(doc["added_tokens"]):
    t["id"] = next_id + j
with open(out, "w", encoding="utf-8") as f:
    json.dump(doc, f, ensure_ascii=False, indent=2)
print(f"wrote {out}: {len(vocab)} tokens, {len(merges)} merges")
