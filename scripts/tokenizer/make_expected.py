#!/usr/bin/env python3
"""Record HF `tokenizers` output for the corpus: the reference the C++ tokenizer is tested against.

Runs where `tokenizers` is installed (the GPU machine; no network needed):
    python3 scripts/tokenizer/make_expected.py VOCAB_DIR OUT_DIR
VOCAB_DIR holds {llama3,qwen3,deepseek_v3}/tokenizer.json (scripts/tokenizer/fetch-vocabs.sh); the GLM-5
test tokenizer is generated into VOCAB_DIR/glm5_test by make_glm5_test_tokenizer.py. Writes to OUT_DIR:
  expected-<name>.json   ids, decode (skip_special_tokens=False) and pre-tokenizer pieces per corpus case
  expected-stress-<name>.json  ids for every case of corpus-stress.json
  expected-variant-<form>.json ids (corpus then stress corpus) with the Llama-3 vocabulary under other
                               pre-tokenizer forms: ByteLevel(use_regex) = GPT-2 split, Digits
  unicode-classes.json   letter / number / whitespace / other class of every code point as seen by the
                         Llama-3 Split regex (Oniguruma), and the code points (?i:'s...) folds onto
  hf-facts.json          tokenizers version and how HF treats text that is not valid UTF-8
"""
import json
import os
import subprocess
import sys

import tokenizers
from tokenizers import Tokenizer

ROOT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "tests", "fixtures", "tokenizer")


def corpus_texts(name="corpus.json"):
    with open(os.path.join(FIX, name), encoding="ascii") as f:
        cases = json.load(f)["cases"]
    out = []
    for c in cases:
        if "text" in c:
            out.append(c["text"])
        else:
            # HF takes only str, so bytes reach it through Python's lossy decode (each maximal invalid
            # subpart -> U+FFFD, the same rule as Rust's from_utf8_lossy). hf-facts.json records that
            # a str carrying the raw bytes (surrogateescape) is rejected outright.
            out.append(bytes.fromhex(c["hex"]).decode("utf-8", errors="replace"))
    return out


def expected(tok, texts, name):
    cases = []
    for t in texts:
        enc = tok.encode(t, add_special_tokens=False)
        ids = enc.ids
        dec = tok.decode(ids, skip_special_tokens=False)
        # pre-tokenizer pieces alone (no added-token split, no normalizer), in the byte-level alphabet
        pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(t)] if tok.pre_tokenizer else []
        cases.append({"ids": ids, "decoded": dec, "pieces": pieces})
    return {"tokenizers_version": tokenizers.__version__, "vocab": name, "add_special_tokens": False,
            "cases": cases}


def unicode_classes(tok):
    pre = tok.pre_tokenizer

    def count(s):
        return len(pre.pre_tokenize_str(s))

    runs = []
    folds = []
    last = None
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            cls = "X"  # not representable in str for tokenizers
        else:
            c = chr(cp)
            if c in "\r\n":
                cls = "S"
            elif count("a" + c) == 1:
                cls = "L"
                if count("'" + c + "a") == 2:
                    folds.append(cp)
            elif count("1" + c) == 1:
                cls = "N"
            elif count("!" + c) == 2:
                cls = "S"
            else:
                cls = "O"
        if cls != last:
            runs.append([cp, cls])
            last = cls
    return {"tokenizers_version": tokenizers.__version__,
            "method": "Llama-3 Split regex probes: 'a'+c one piece => L, '1'+c => N, '!'+c two pieces => S",
            "runs": runs, "contraction_folds": folds}


LLAMA3_REGEX = ("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")


def variants(vocab_dir):
    """Pre-tokenizer forms no reference vocabulary uses, grafted onto real ones. The C++ test builds the
    same documents (tests/tokenizer/test-tokenizer-hf.cpp, make_variant) and compares ids."""
    with open(os.path.join(vocab_dir, "llama3", "tokenizer.json"), encoding="utf-8") as f:
        base = json.load(f)
    split = {"type": "Split", "pattern": {"Regex": LLAMA3_REGEX}, "behavior": "Isolated", "invert": False}
    byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}
    forms = {
        "gpt2": {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True},
        "digits": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True}, split, byte_level]},
        "digit_runs": {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": False},
                                                              {"type": "ByteLevel", "add_prefix_space": False,
                                                               "trim_offsets": True, "use_regex": True}]},
    }
    for name, pre in forms.items():
        doc = dict(base)
        doc["pre_tokenizer"] = pre
        yield name, Tokenizer.from_str(json.dumps(doc))


def hf_facts(glm5_path):
    facts = {"tokenizers_version": tokenizers.__version__}
    tok = Tokenizer.from_file(glm5_path)
    raw = b"ab\xffcd".decode("utf-8", errors="surrogateescape")
    try:
        facts["surrogateescape_encode"] = {"ok": True, "ids": tok.encode(raw, add_special_tokens=False).ids}
    except Exception as e:  # noqa: BLE001 - we record whatever HF does
        facts["surrogateescape_encode"] = {"ok": False, "error": f"{type(e).__name__}: {e}"}
    lossy = b"ab\xffcd".decode("utf-8", errors="replace")
    facts["lossy_encode_ids"] = tok.encode(lossy, add_special_tokens=False).ids
    # decode of ids whose bytes are not valid UTF-8 (a lone 0xFF byte token)
    bad = tok.token_to_id("\u00ff")
    facts["decode_lone_ff"] = tok.decode([bad], skip_special_tokens=False)
    return facts


def main():
    vocab_dir, out_dir = sys.argv[1], sys.argv[2]
    os.makedirs(out_dir, exist_ok=True)
    texts = corpus_texts()
    stress_texts = corpus_texts("corpus-stress.json")
    tokens = {n: os.path.join(vocab_dir, n, "tokenizer.json") for n in ("llama3", "qwen3", "deepseek_v3")}
    tokens["glm5_test"] = os.path.join(vocab_dir, "glm5_test", "tokenizer.json")
    subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "make_glm5_test_tokenizer.py"),
                    tokens["glm5_test"]], check=True)
    for name, path in tokens.items():
        tok = Tokenizer.from_file(path)
        with open(os.path.join(out_dir, f"expected-{name}.json"), "w", encoding="utf-8") as f:
            json.dump(expected(tok, texts, name), f, ensure_ascii=True, separators=(",", ":"))
        # The stress corpus keeps ids only, to stay small.
        stress = [tok.encode(t, add_special_tokens=False).ids for t in stress_texts]
        with open(os.path.join(out_dir, f"expected-stress-{name}.json"), "w", encoding="ascii") as f:
            json.dump({"tokenizers_version": tokenizers.__version__, "vocab": name, "ids": stress}, f,
                      separators=(",", ":"))
        print("done", name, flush=True)
        if name == "llama3":
            with open(os.path.join(out_dir, "unicode-classes.json"), "w", encoding="ascii") as f:
                json.dump(unicode_classes(tok), f, separators=(",", ":"))
            print("done classes", flush=True)
    for name, tok in variants(vocab_dir):
        ids = [tok.encode(t, add_special_tokens=False).ids for t in texts + stress_texts]
        with open(os.path.join(out_dir, f"expected-variant-{name}.json"), "w", encoding="ascii") as f:
            json.dump({"tokenizers_version": tokenizers.__version__, "variant": name, "ids": ids}, f,
                      separators=(",", ":"))
        print("done variant", name, flush=True)
    with open(os.path.join(out_dir, "hf-facts.json"), "w", encoding="utf-8") as f:
        json.dump(hf_facts(tokens["glm5_test"]), f, ensure_ascii=True, indent=1)
    print("tokenizers", tokenizers.__version__)


if __name__ == "__main__":
    main()
