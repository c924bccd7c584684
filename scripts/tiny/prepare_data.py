#!/usr/bin/env python3
"""Prepare the training corpus of the bundled tiny model (models/glm-tiny), standard library only.

Sources (Debian packages, installed with apt-get; see models/glm-tiny/README.md for licences):
  fortunes, fortunes-min   /usr/share/games/fortunes/*           (BSD fortune data files)
  bible-kjv                `bible` command (King James Version)   (public domain text)
  python3.11-doc           /usr/share/doc/python3.11/html/_sources (PSF licence)
  debian-reference-en      /usr/share/debian-reference/*.en.html  (GPL-2+ / MIT-style, see package)

Writes .tinydata/train.jsonl and .tinydata/valid.jsonl ({"text": ...} per document, special tokens as
text), and tests/tiny/heldout.txt (a fixed held-out text used for the NLL test; never trained on).
Part of the documents are single-turn chats in the GLM-5 template:
  [gMASK]<sop><|user|>{question}<|assistant|></think>{answer}<|endoftext|>          (thinking off)
  [gMASK]<sop><|user|>{question}<|assistant|><think>{thought}</think>{answer}<|endoftext|>  (thinking on)

Usage: python3 scripts/tiny/prepare_data.py [OUT_DIR=.tinydata]
"""
import glob
import html
import json
import os
import random
import re
import subprocess
import sys
from html.parser import HTMLParser

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FORTUNE_DIR = "/usr/share/games/fortunes"
# Skipped: pictures, untranslated text and the sets with the most dated / insensitive jokes.
FORTUNE_SKIP = {"art", "ascii-art", "translate-me", "ethnic", "men-women", "drugs", "debian", "linux",
                "linuxcookie", "perl", "computers", "startrek", "zippy", "knghtbrd"}
WISE_SETS = {"wisdom", "platitudes", "tao", "literature", "people", "love", "work", "education",
             "fortunes", "goedel", "humorists", "science", "songs-poems", "paradoxum"}
STOP = set("""a about above after again against all also am an and any are as at be because been before
being below between both but by can could did do does doing down during each few for from further had has
have having he her here hers herself him himself his how i if in into is it its itself just let me more
most my myself no nor not now of off on once only or other our ours ourselves out over own same she should
so some such than that the their theirs them themselves then there these they this those through thou thee
thy thine unto shall hath doth saith upon ye to too under until up very was we were what when where which
while who whom why will with would you your yours yourself yourselves one two three every never always
said says like make made many much must might well also even still yet into onto came come went goes
said things thing something anything nothing someone people great little good first last long""".split())

THOUGHTS = [
    "The user asks about {t}. A short answer will do.",
    "The user wants to hear about {t}. I will answer briefly.",
    "A question about {t}. I will give a short passage.",
]
PLAIN_THOUGHTS = ["The user wants a saying. I will share one.", "A short quote will do.",
                  "I will answer with a fortune."]
ABOUT_Q = ["Tell me about {t}.", "What can you tell me about {t}?", "Say something about {t}.",
           "Write a few lines about {t}.", "Tell me something about {t}.", "What do you know about {t}?"]
FORTUNE_Q = ["Tell me a fortune.", "Say something wise.", "Give me a quote.", "Tell me something funny.",
             "Share a saying.", "Give me some advice.", "Tell me a joke.", "Say something clever."]
SYSTEMS = ["You are a helpful assistant.", "You are a wise old fortune teller.", "Answer briefly."]


def clean(s):
    s = s.replace("\t", "    ")
    s = "\n".join(line.rstrip() for line in s.split("\n"))
    return s.strip()


def read_fortunes():
    out = {}
    for path in sorted(glob.glob(os.path.join(FORTUNE_DIR, "*"))):
        name = os.path.basename(path)
        if "." in name or name in FORTUNE_SKIP or os.path.isdir(path):
            continue
        with open(path, encoding="utf-8", errors="replace") as f:
            parts = f.read().split("\n%\n")
        items = []
        for p in parts:
            p = clean(p)
            if 8 <= len(p) <= 900 and "\x1b" not in p and "\ufffd" not in p:
                items.append(p)
        out[name] = items
    return out


def read_bible():
    txt = subprocess.run(["bible", "-m", "16384", "Gen1:1-Rev22:21"], capture_output=True, text=True).stdout
    chapters = []  # (title, [verses])
    cur = None
    for line in txt.split("\n"):
        m = re.match(r"^\s+(\d+) (.*)$", line)
        if m:
            cur[1].append(m.group(2).strip())
        elif line.strip() and re.match(r"^[1-3A-Z][A-Za-z ]* \d+$", line.strip()):
            cur = (line.strip(), [])
            chapters.append(cur)
        elif line.strip() and cur is not None and cur[1]:
            cur[1][-1] += " " + line.strip()
    return chapters


ROLE = re.compile(r":[a-z:]+:`!?~?([^`<]*?)(?:\s*<[^>]*>)?`")


def rst_paragraphs(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    paras, cur = [], []
    for line in lines + [""]:
        if not line.strip():
            if cur:
                paras.append(" ".join(cur))
            cur = []
            continue
        if line.startswith(" ") or line.startswith(".."):
            if cur:
                paras.append(" ".join(cur))
            cur = []
            continue
        if re.match(r"^[=\-*~^\"'`#+]{3,}$", line.strip()):
            cur = []  # a heading underline: drop the heading
            continue
        cur.append(line.strip())
    out = []
    for p in paras:
        p = ROLE.sub(r"\1", p)
        p = p.replace("``", "").replace("::", ":").replace("**", "").replace("`", "")
        p = re.sub(r"\s+", " ", p).strip()
        if len(p) >= 80 and not p.startswith(("|", "+", ">>>")):
            out.append(p)
    return out


class ParaParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.paras, self.cur, self.depth = [], None, 0

    def handle_starttag(self, tag, attrs):
        if tag == "p":
            self.cur = []

    def handle_endtag(self, tag):
        if tag == "p" and self.cur is not None:
            p = re.sub(r"\s+", " ", "".join(self.cur)).strip()
            if len(p) >= 80:
                self.paras.append(p)
            self.cur = None

    def handle_data(self, data):
        if self.cur is not None:
            self.cur.append(data)


def html_paragraphs(path):
    pp = ParaParser()
    with open(path, encoding="utf-8", errors="replace") as f:
        pp.feed(f.read())
    return [html.unescape(p) for p in pp.paras]


def keywords(text):
    words = re.findall(r"\b[a-z][a-z]{3,}\b", text)
    return [w for w in words if w not in STOP]


def topic(text, rng):
    kws = keywords(text)
    if not kws:
        return None
    w = rng.choice(kws)
    return f"the {w}" if re.search(r"\bthe " + w + r"\b", text) else w


def chat(q, a, t, rng):
    s = "[gMASK]<sop>"
    if rng.random() < 0.1:
        s += "<|system|>" + rng.choice(SYSTEMS)
    s += "<|user|>" + q + "<|assistant|>"
    if rng.random() < 0.5:
        s += "</think>"
    else:
        th = rng.choice(THOUGHTS).format(t=t) if t else rng.choice(PLAIN_THOUGHTS)
        s += "<think>" + th + "</think>"
    return s + a + "<|endoftext|>"


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, ".tinydata")
    os.makedirs(out_dir, exist_ok=True)
    rng = random.Random(20261127)
    fortunes = read_fortunes()
    chapters = read_bible()
    py = []
    for sub in ("tutorial", "faq", "howto", "glossary.rst.txt", "reference"):
        p = os.path.join("/usr/share/doc/python3.11/html/_sources", sub)
        files = [p] if p.endswith(".txt") else sorted(glob.glob(os.path.join(p, "*.rst.txt")))
        for fn in files:
            py.extend(rst_paragraphs(fn))
    deb = []
    for fn in sorted(glob.glob("/usr/share/debian-reference/*.en.html")):
        deb.extend(html_paragraphs(fn))
    print(f"fortunes: {sum(len(v) for v in fortunes.values())} in {len(fortunes)} sets; bible chapters: "
          f"{len(chapters)}; python paragraphs: {len(py)}; debian-reference paragraphs: {len(deb)}")

    # Held-out pieces (never trained on): chosen first, removed from the pools.
    held = []
    fl = fortunes["wisdom"]
    held_f = [fl.pop(rng.randrange(len(fl))) for _ in range(3)]
    ch = chapters.pop(rng.randrange(len(chapters)))   # one whole chapter
    held_py = py.pop(rng.randrange(len(py)))
    held_chat_q = "Tell me about the sea."
    sea_re = re.compile(r"\bthe sea\b")
    sea = [c for c in chapters if any(sea_re.search(v) for v in c[1])]
    c = sea[rng.randrange(len(sea))]
    chapters.remove(c)
    i = next(j for j, v in enumerate(c[1]) if sea_re.search(v))
    held_chat_a = " ".join(c[1][i:i + 2])
    held.append("\n\n".join(held_f))
    held.append(" ".join(ch[1][:10]))
    held.append(held_py)
    held.append(chat(held_chat_q, held_chat_a, "the sea", random.Random(1)))
    heldout = "\n\n".join(held) + "\n"
    with open(os.path.join(ROOT, "tests/tiny/heldout.txt"), "w") as f:
        f.write(heldout)

    docs = []
    # Plain text.
    for name, items in fortunes.items():
        docs.extend(items)
    for title, verses in chapters:
        for k in range(0, len(verses), 12):
            docs.append(" ".join(verses[k:k + 12]))
    for i in range(0, len(py), 4):
        docs.append("\n\n".join(py[i:i + 4]))
    for i in range(0, len(deb), 4):
        docs.append("\n\n".join(deb[i:i + 4]))
    n_plain = len(docs)
    # Chats: fortunes (twice each for the wise sets), bible passages on a topic, docs paragraphs.
    for name, items in fortunes.items():
        for a in items:
            reps = 2 if name in WISE_SETS else 1
            for _ in range(reps):
                if rng.random() < 0.5:
                    q, t = rng.choice(FORTUNE_Q), None
                else:
                    t = topic(a, rng)
                    if t is None:
                        continue
                    q = rng.choice(ABOUT_Q).format(t=t)
                docs.append(chat(q, a, t, rng))
    for title, verses in chapters:
        for _ in range(3):
            k = rng.randrange(len(verses))
            a = " ".join(verses[k:k + rng.randint(2, 4)])
            t = topic(a, rng)
            if t:
                docs.append(chat(rng.choice(ABOUT_Q).format(t=t), a, t, rng))
    for p in py[::2] + deb[::3]:
        t = topic(p, rng)
        if t:
            docs.append(chat(rng.choice(ABOUT_Q).format(t=t), p, t, rng))
    rng.shuffle(docs)
    n_valid = max(200, len(docs) // 100)
    valid, train = docs[:n_valid], docs[n_valid:]
    for fn, part in (("train.jsonl", train), ("valid.jsonl", valid)):
        with open(os.path.join(out_dir, fn), "w") as f:
            for d in part:
                f.write(json.dumps({"text": d}) + "\n")
    total = sum(len(d) for d in docs)
    print(f"docs: {len(docs)} ({n_plain} plain, {len(docs) - n_plain} chat), {total / 1e6:.1f} MB; "
          f"train {len(train)}, valid {len(valid)}; heldout.txt {len(heldout)} chars")


if __name__ == "__main__":
    main()
