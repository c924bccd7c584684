#include "prompts/chat.h"

#include <cmath>
#include <cstdio>

namespace glm {

namespace {

void dump_string(std::string& out, const std::string& s) {
    out += '"';
    for (unsigned char c : s) {
        switch (c) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            case '\b': out += "\\b"; break;
            case '\f': out += "\\f"; break;
            default:
                if (c < 0x20) {
                    char buf[8];
                    std::snprintf(buf, sizeof(buf), "\\u%04x", c);
                    out += buf;
                } else {
                    out += char(c);  // ensure_ascii=False: UTF-8 passes through
                }
        }
    }
    out += '"';
}

void dump(std::string& out, const ordered_json& v) {
    switch (v.type()) {
        case ordered_json::value_t::object: {
            out += '{';
            bool first = true;
            for (auto it = v.begin(); it != v.end(); ++it) {
                if (!first) out += ", ";
                first = false;
                dump_string(out, it.key());
                out += ": ";
                dump(out, it.value());
            }
            out += '}';
            break;
        }
        case ordered_json::value_t::array: {
            out += '[';
            for (size_t i = 0; i < v.size(); ++i) {
                if (i) out += ", ";
                dump(out, v[i]);
            }
            out += ']';
            break;
        }
        case ordered_json::value_t::string: dump_string(out, v.get_ref<const std::string&>()); break;
        case ordered_json::value_t::number_float: {
            const double d = v.get<double>();
            if (std::isnan(d)) {
                out += "NaN";
            } else if (std::isinf(d)) {
                out += d > 0 ? "Infinity" : "-Infinity";
            } else {
                out += v.dump();  // shortest round-trip form, "22.0" like Python's repr
            }
            break;
        }
        default: out += v.dump(); break;  // integers, true/false, null
    }
}

// Python str.strip() whitespace: ASCII whitespace, \x1c-\x1f and Unicode White_Space.
size_t space_len_at(const std::string& s, size_t i) {
    const unsigned char c = s[i];
    if (c == ' ' || (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x1f)) return 1;
    auto is = [&](const char* seq) { return s.compare(i, std::char_traits<char>::length(seq), seq) == 0; };
    for (const char* seq : {"\xc2\x85", "\xc2\xa0"}) {
        if (is(seq)) return 2;
    }
    for (const char* seq : {"\xe1\x9a\x80", "\xe2\x80\xa8", "\xe2\x80\xa9", "\xe2\x80\xaf", "\xe2\x81\x9f", "\xe3\x80\x80"}) {
        if (is(seq)) return 3;
    }
    if (c == 0xe2 && i + 2 < s.size() && uint8_t(s[i + 1]) == 0x80 && uint8_t(s[i + 2]) >= 0x80 && uint8_t(s[i + 2]) <= 0x8a) {
        return 3;  // U+2000..U+200A
    }
    return 0;
}

std::string py_strip(const std::string& s) {
    size_t b = 0;
    while (b < s.size()) {
        const size_t n = space_len_at(s, b);
        if (!n) break;
        b += n;
    }
    size_t e = s.size();
    while (e > b) {
        size_t k = e - 1;
        while (k > b && (uint8_t(s[k]) & 0xC0) == 0x80) --k;
        if (space_len_at(s, k) != e - k) break;
        e = k;
    }
    return s.substr(b, e - b);
}

std::string strip_char(const std::string& s, char c, bool left, bool right) {
    size_t b = 0, e = s.size();
    if (left) while (b < e && s[b] == c) ++b;
    if (right) while (e > b && s[e - 1] == c) --e;
    return s.substr(b, e - b);
}

const char* const k_tools_header =
    "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n";
const char* const k_tools_footer =
    "</tools>\n\nFor each function call, output the function name and arguments within the following XML format:\n"
    "<tool_call>{function-name}<arg_key>{arg-key-1}</arg_key><arg_value>{arg-value-1}</arg_value>"
    "<arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>...</tool_call>";

ordered_json tool_for_prompt(const ordered_json& tool, ChatTemplate flavor) {
    if (flavor != ChatTemplate::GLM51) return tool;
    // GLM-5.1 (per the PrimeIntellect-ai/renderers mirror, tokenizer.md 2.2 rule 2): the inner function
    // object only, without the client-side keys defer_loading and strict.
    ordered_json t = tool.is_object() && tool.contains("function") && tool["function"].is_object() ? tool["function"] : tool;
    if (t.is_object()) {
        t.erase("defer_loading");
        t.erase("strict");
    }
    return t;
}

}  // namespace

std::string python_json(const ordered_json& value) {
    std::string out;
    dump(out, value);
    return out;
}

std::string render_chat(const std::vector<ChatMessage>& messages, const ordered_json& tools, const ChatOptions& options) {
    std::string out = "[gMASK]<sop>";
    if (tools.is_array() && !tools.empty()) {
        out += k_tools_header;
        for (const auto& tool : tools) out += python_json(tool_for_prompt(tool, options.flavor)) + "\n";
        out += k_tools_footer;
    }
    long last_user = -1;
    for (size_t i = 0; i < messages.size(); ++i) {
        if (messages[i].role == "user") last_user = long(i);
    }
    const bool keep_all_reasoning = options.clear_thinking.has_value() && !*options.clear_thinking;
    for (size_t i = 0; i < messages.size(); ++i) {
        const ChatMessage& m = messages[i];
        if (m.role == "system") {
            out += "<|system|>" + m.content;
        } else if (m.role == "user") {
            out += "<|user|>" + m.content;
        } else if (m.role == "assistant") {
            out += "<|assistant|>";
            std::string content = m.content;
            std::optional<std::string> reasoning = m.reasoning_content;
            const size_t end_think = content.find("</think>");
            if (!reasoning && end_think != std::string::npos) {
                // Reasoning left inline in the content: before the first </think>, after the last <think>.
                std::string before = strip_char(content.substr(0, end_think), '\n', false, true);
                const size_t open = before.rfind("<think>");
                if (open != std::string::npos) before = before.substr(open + 7);
                reasoning = strip_char(before, '\n', true, false);
                content = strip_char(content.substr(content.rfind("</think>") + 8), '\n', true, false);
            }
            const bool show = keep_all_reasoning || long(i) > last_user;
            if (options.flavor == ChatTemplate::GLM5) {
                const std::string r = reasoning ? py_strip(*reasoning) : std::string();
                out += show && !r.empty() ? "<think>" + r + "</think>" : "</think>";
            } else {
                out += show && reasoning ? "<think>" + *reasoning + "</think>" : "</think>";
            }
            out += py_strip(content);
            for (const ToolCall& tc : m.tool_calls) {
                out += "<tool_call>" + tc.name;
                for (auto it = tc.arguments.begin(); it != tc.arguments.end(); ++it) {
                    out += "<arg_key>" + it.key() + "</arg_key><arg_value>";
                    out += it.value().is_string() ? it.value().get<std::string>() : python_json(it.value());
                    out += "</arg_value>";
                }
                out += "</tool_call>";
            }
        } else if (m.role == "tool") {
            if (i == 0 || messages[i - 1].role != "tool") out += "<|observation|>";
            out += "<tool_response>" + m.content + "</tool_response>";
        }
    }
    if (options.add_generation_prompt) out += options.enable_thinking ? "<|assistant|><think>" : "<|assistant|></think>";
    return out;
}

}  // namespace glm
