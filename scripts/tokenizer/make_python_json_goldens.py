#!/usr/bin/env python3
"""Write tests/prompts/python-json-goldens.json: values and Python's json.dumps(v, ensure_ascii=False),
which is what the GLM chat template's tojson writes for tools and non-string tool arguments."""
import json
import os

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "tests", "prompts", "python-json-goldens.json")
values = [
    {"type": "function", "function": {"name": "get_weather", "description": "Get weather",
                                      "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
                                                     "required": ["location"]}}},
    {"z": 1, "a": [1, 2.5, -3, 1e21, 1.5e-07, 0.1, 22.0], "m": None, "t": True, "f": False},
    {"text": "quote \" backslash \\ newline \n tab \t cr \r bell \x07 del \x7f", "slash": "a/b"},
    {"unicode": "héllo 你好 😀 \u2028 \u00a0", "empty": {}, "list": []},
    [1, "two", [3, [4, {"five": 5}]]],
    "just a string", 42, -0.0, 3.141592653589793, 9223372036854775808, -9223372036854775808,
]
with open(OUT, "w", encoding="utf-8") as f:
    json.dump([{"value": v, "dumps": json.dumps(v, ensure_ascii=False)} for v in values], f, ensure_ascii=True, indent=1)
    f.write("\n")
print("wrote", os.path.normpath(OUT))
