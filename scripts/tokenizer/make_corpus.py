#!/usr/bin/env python3
"""Write tests/fixtures/tokenizer/corpus.json: the strings every tokenizer test encodes.

Deterministic (fixed seed). Each entry is {"tag": ..., "text": ...} or, for bytes that are not valid
UTF-8, {"tag": ..., "hex": ...}. The file is written with ensure_ascii so any byte sequence survives.
Expected ids are produced from this file by make_expected.py with HF `tokenizers`.
"""
import json
import os
import random

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "fixtures", "tokenizer", "corpus.json")

cases = []


def add(tag, *texts):
    for t in texts:
        cases.append({"tag": tag, "text": t})


def add_hex(tag, *blobs):
    for b in blobs:
        cases.append({"tag": tag, "hex": b.hex()})


add("prose",
    "The quick brown fox jumps over the lazy dog.",
    "Hello world",
    "Hello World!",
    "hello world",
    "It was the best of times, it was the worst of times, it was the age of wisdom.",
    "In 1492, Columbus sailed the ocean blue; in 1969, humans walked on the Moon.",
    "Dr. Smith (Ph.D.) said: \"Results vary—sometimes wildly…\"",
    "She sells sea-shells by the sea-shore, doesn't she?",
    "A tokenizer splits text into pieces, then merges bytes by rank.",
    "Mixed CASE words LIKE ThisOne and thatOne and THAT_ONE.",
    "e-mail: someone@example.com, URL: https://example.org/path?q=1&r=two#frag",
    "Prices: $3.50, €4,20, £1.99, ¥500 and 12% off!!!",
    "Well... I don't know.   Maybe?  Maybe not!",
    "The year 2024 had 366 days; 2023 had 365.",
    "Ünïcödé àccents are çommon in Français, Español, Português and Deutsch (Straße, Mädchen).",
    "Quotes: 'single', \"double\", `backtick`, «guillemets», „low“ and ‘curly’.",
    "Tabs\tbetween\twords\tand a trailing tab\t",
    "Line one\nLine two\n\nLine four after a blank line\n",
    "Windows line endings\r\nsecond line\r\n\r\nfourth\r\n",
    "Bullet list:\n- first item\n- second item\n  - nested item\n* star item",
    "# Heading\n\nSome **bold** and _italic_ markdown with [a link](http://x.y).",
    "ALL CAPS SENTENCE WITH NUMBERS 123 AND SYMBOLS #@!",
    "lowercase sentence without punctuation at all",
    "Supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopicsilicovolcanoconiosis",
    "GLM-5.1 is a mixture-of-experts model; it uses MLA and DSA attention.",
    "What kind of dog is this?",
    "The temperature is -5°C (23°F) today.",
    "He said, 'I'll be there at 5 o'clock.'",
    "Ellipsis… em—dash – en-dash ‐ hyphen ‒ figure dash",
    "Smileys :) :-( ;-) :D <3 </3",
    )

add("code",
    "def add(a, b):\n    return a + b\n",
    "int main(int argc, char** argv) {\n\tprintf(\"%d\\n\", argc);\n\treturn 0;\n}\n",
    "for (size_t i = 0; i < n; ++i) { sum += x[i] * y[i]; }",
    "const auto it = std::find_if(v.begin(), v.end(), [&](const T& t) { return t.id == 42; });",
    "import numpy as np\nx = np.zeros((3, 4), dtype=np.float32)\nprint(x.shape)",
    "{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Tokyo\", \"unit\": \"celsius\"}}",
    "<html>\n  <body>\n    <div class=\"main\">Hi &amp; bye</div>\n  </body>\n</html>",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "#!/usr/bin/env bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
    "fn main() -> Result<(), Box<dyn Error>> { let v: Vec<u8> = vec![1, 2, 3]; Ok(()) }",
    "    indented with four spaces\n        and eight\n",
    "x+=1;y-=2;z*=3;w/=4;a%=5;b<<=6;c>>=7;d&=8;e|=9;f^=10;",
    "if(a==b&&c!=d||!e){return;}",
    "my_variable_name = some_function_call(arg_one, arg_two)",
    "camelCaseIdentifier PascalCaseIdentifier snake_case_identifier SCREAMING_CASE",
    "0x7fffffff 0b1010 0o755 1e-9 6.02e23 3.14f 100ULL",
    "// comment\n/* block\n   comment */\n",
    "print(f\"{name!r:>10}\")",
    "a = [1,2,3]\nb = {'k': 'v'}\nc = (4,)\n",
    "path/to/file.cpp:123:45: error: expected ';' before '}' token",
    "git commit -m \"fix: don't crash on empty input\" && git push origin main",
    "\t\t\tdeeply\t\ttabbed\tcode",
    "λx.λy.x y ∀x∈ℝ: x² ≥ 0 ⇒ √(x²) = |x|",
    "__init__ __main__ ___triple___",
    "std::vector<std::pair<int, std::string>> v;",
    )

# Numbers of every length, alone and in context.
digits = "12345678901234567890123"
for n in range(1, len(digits) + 1):
    add("numbers", digits[:n])
for n in range(1, 12):
    add("numbers", "x" + "0" * n + "y", " " + "9" * n)
add("numbers",
    "0123456789", "1234567890", "3.14159265358979", "-42", "+7", "1,000,000", "1 000 000",
    "2024-05-17T12:34:56Z", "v1.2.3", "192.168.0.1", "(555) 123-4567", "1/2 3/4", "10^9",
    "１２３４５", "٠١٢٣٤٥٦٧٨٩", "०१२३४५", "²³¹ ½ ¾ Ⅻ ⅷ ① ⑳", "12abc34def567", "abc123def",
    "a1b2c3", "1.5e10", "99999999999999999999", "007", "٣ apples", "Ⅻ12")

add("whitespace",
    "", " ", "  ", "   ", "    ", "     ", "        ", " " * 17, "\t", "\t\t", "\n", "\n\n", "\n\n\n",
    "\r", "\r\n", "\r\n\r\n", "\n\r", " \n", "\n ", " \n ", "   \t\n   ", "a  b", "a   b", "a \n b",
    "   leading", "trailing   ", "  both  ", "a\tb", "a \t b", "word \n\n next", "x\r\ny", "x \r\n y",
    "\u00a0", "a\u00a0b", "The\u00a0quick\u00a0fox", "\u3000full\u3000width", "a\u2028b\u2029c",
    "a\u0085b", "a\u200bb", "a\u180eb", "a\ufeffb", "a\u2009b\u202fc", "\u000b\u000c", " \u00a0 ",
    "\t \n \r \u00a0", "end with newline\n", "end with spaces  ", "x \u00a0y")

add("contractions",
    "I'm", "I'M", "i'm", "You're", "You'Re", "YOU'RE", "you'rE", "We've", "WE'VE", "we'Ve", "It's",
    "IT'S", "it'S", "Don't", "DON'T", "don'T", "They'll", "THEY'LL", "they'Ll", "he'lL", "She'd",
    "SHE'D", "she'D", "'s", "'S", "'t", "'re", "'ve", "'m", "'ll", "'d", "'x", "''s", "ma'am",
    "rock'n'roll", "o'clock", "It’s curly", "y'all'd've", "'ſ", "IT'ſ", "'ﬅ", "'K", "' s",
    "'LL'LL'LL", "l'été", "'S'T'RE'VE'M'LL'D", "'123", "'Straße")

add("cjk",
    "你好，世界！", "你好世界", "我爱自然语言处理。", "日本語のテキストです。カタカナとひらがな。",
    "東京は晴れ、気温は22度です。", "한국어 텍스트입니다.", "안녕하세요 세계", "中文English混合text测试",
    "龥龦鿿𠀀𪚥", "ｈｅｌｌｏ　ｗｏｒｌｄ", "「引用」『二重』【括弧】", "ﾊﾝｶｸｶﾀｶﾅ", "ㄅㄆㄇㄈ", "〇一二三")

add("scripts",
    "مرحبا بالعالم", "السلام عليكم ورحمة الله", "العربية: ١٢٣", "שלום עולם", "Привет, мир!",
    "ΕΛΛΗΝΙΚΑ ελληνικά", "नमस्ते दुनिया", "हिन्दी में लिखा है", "สวัสดีชาวโลก", "ქართული",
    "Հայերեն", "བོད་ཡིག", "தமிழ்", "ᚠᚢᚦᚨᚱᚲ", "ꦗꦮ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙", "Ｆｕｌｌ", "Türkçe İı")

add("emoji",
    "😀", "😀😃😄", "👍🏽", "👨‍👩‍👧‍👦", "👩🏽‍💻", "🏳️‍🌈", "🇯🇵🇺🇸", "1️⃣", "❤️", "I ❤️ NY",
    "emoji at end 🚀", "🚀 at start", "a😀b", "✨ sparkle ✨", "🧑‍🤝‍🧑", "©️®️™️", "👋 hi!", "🤖🤖🤖")

add("combining",
    "e\u0301", "\u00e9", "cafe\u0301", "caf\u00e9", "A\u030a", "\u212b", "\u2126", "n\u0303", "o\u0308\u0304",
    "a\u0323\u0302", "a\u0302\u0323", "\u1100\u1161\u11a8", "\u1100\u1161", "\uac00\u11a8", "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334",
    "\u0301alone", "x\u0300\u0301\u0302\u0303\u0304", "Vi\u1ec7t Nam", "Vie\u0323\u0302t", "\u0958",
    "\u0915\u093c", "\u00c5ngstr\u00f6m", "\u1e9b\u0323", "\ufb01 ligature", "\u0041\u030a\u0327",
    "e\u0301\u0301", "\u05d1\u05bc", "\u0627\u0653", "\u0dd9\u0dcf", "\u1b05\u1b35", "\u0f71\u0f72")

add("special",
    "<|begin_of_text|>hello", "hello <|end_of_text|>", "<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", "<think>\nreasoning\n</think>\n\nanswer",
    "<|endoftext|>", "text<|endoftext|>more", "<｜begin▁of▁sentence｜>Hi<｜end▁of▁sentence｜>",
    "<｜User｜>q<｜Assistant｜>a", "[gMASK]<sop><|user|>Hi<|assistant|><think></think>",
    "[gMASK]<sop><|system|>You are helpful.<|user|>Hi<|assistant|><think>",
    "<tool_call>get_weather<arg_key>location</arg_key><arg_value>Tokyo</arg_value></tool_call>",
    "<|observation|><tool_response>{\"temperature\":22}</tool_response>", "<|im_start", "<|<|im_end|>|>",
    "< |im_end| >", "<|IM_END|>", "<|reserved_special_token_5|><|reserved_special_token_250|>",
    " <|eot_id|> ", "<|eot_id|><|eot_id|>", "/nothink", "<|fim_prefix|>a<|fim_suffix|>b<|fim_middle|>",
    "<tool_call>\n{\"name\": \"f\"}\n</tool_call>", "<｜tool▁calls▁begin｜><｜tool▁sep｜>", "a<｜▁pad▁｜>b")

add_hex("invalid_utf8",
    b"\xff", b"\xfe\xff", b"\x80", b"\xc3", b"\xc3(", b"\xe2\x82", b"\xe2\x82(", b"\xf0\x9f\x98",
    b"\xed\xa0\x80", b"\xc0\xaf", b"\xe0\x80\xaf", b"\xf4\x90\x80\x80", b"\xf8\x88\x80\x80\x80",
    b"hello \xff world", b"abc\x80\x80\x80def", b"emoji cut \xf0\x9f\x9a", b"\xf0\x9f\x9a\x80\xf0\x9f",
    b"caf\xe9", b"\xc3\xa9\xa9", b"\xef\xbf\xbd real replacement char", b"\x00", b"a\x00b\x01c\x7f",
    b"\xa0\xa1\xa2", b"<|eot_id|>\xff<|im_end|>", b"\xe4\xbd\xa0\xe5\xa5")

# Random strings over a pool mixing every category the splitters care about.
rng = random.Random(20260517)
pool = (list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ") * 3 + list("0123456789") * 3 +
        list(" " * 20) + list("\n\r\t") + list("'''") + list("!\"#$%&()*+,-./:;<=>?@[\\]^_`{|}~") +
        ["\u00a0", "\u3000", "\u2028", "\u0085", "\u200b", "é", "e\u0301", "ß", "ſ", "²", "½", "Ⅻ", "٣",
         "你", "好", "の", "カ", "한", "م", "ح", "😀", "👍🏽", "‍", "\u0301", "\u0308", "©", "€", "—", "…",
         "«", "»", "ℝ", "∀", "\u00ad", "\ufeff", "𝕞", "𠀀", "\x00", "\x1b", "\u0600", "\ue000"])
for i in range(120):
    n = rng.randint(1, 40)
    add("random", "".join(rng.choice(pool) for _ in range(n)))
ascii_pool = [chr(c) for c in range(32, 127)] + ["\n", "\t", "\r"]
for i in range(30):
    n = rng.randint(1, 60)
    add("random_ascii", "".join(rng.choice(ascii_pool) for _ in range(n)))
words = ["the", "The", "THE", "of", "and", "tokenizer", "model", "I'm", "don't", "123", "4567", "  ", "\n",
         "é", "你好", "😀", "...", "!", "(", ")", "x", "GLM", "’s", "\t", "\r\n"]
for i in range(30):
    add("random_words", "".join(rng.choice(words) + rng.choice(["", " "]) for _ in range(rng.randint(1, 25))))

with open(OUT, "w", encoding="ascii") as f:
    json.dump({"comment": "Generated by scripts/tokenizer/make_corpus.py; expected ids by make_expected.py",
               "cases": cases}, f, ensure_ascii=True, indent=0)
    f.write("\n")
print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")
