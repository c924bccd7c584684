#include "prompts/output-parser.h"

namespace glm {

namespace {

constexpr std::string_view k_think = "<think>";
constexpr std::string_view k_end_think = "</think>";
constexpr std::string_view k_tool = "<tool_call>";
constexpr std::string_view k_end_tool = "</tool_call>";

// Length of the longest suffix of s that is a proper prefix of one of the tags.
size_t partial_tag_suffix(std::string_view s, std::initializer_list<std::string_view> tags) {
    size_t best = 0;
    for (std::string_view tag : tags) {
        for (size_t n = std::min(s.size(), tag.size() - 1); n > best; --n) {
            if (s.substr(s.size() - n) == tag.substr(0, n)) {
                best = n;
                break;
            }
        }
    }
    return best;
}

std::string trim(std::string_view s) {
    size_t b = 0, e = s.size();
    while (b < e && (s[b] == ' ' || s[b] == '\n' || s[b] == '\t' || s[b] == '\r')) ++b;
    while (e > b && (s[e - 1] == ' ' || s[e - 1] == '\n' || s[e - 1] == '\t' || s[e - 1] == '\r')) --e;
    return std::string(s.substr(b, e - b));
}

}  // namespace

ParsedToolCall parse_tool_call(std::string_view body) {
    ParsedToolCall call;
    const size_t first_key = body.find("<arg_key>");
    call.name = trim(body.substr(0, first_key));
    size_t pos = first_key;
    while (pos != std::string_view::npos) {
        const size_t key_begin = pos + 9;
        const size_t key_end = body.find("</arg_key>", key_begin);
        if (key_end == std::string_view::npos) break;
        // Whitespace (or a literal "\n" the model sometimes writes) may separate key and value.
        size_t v = key_end + 10;
        while (v < body.size()) {
            if (body[v] == ' ' || body[v] == '\n' || body[v] == '\t' || body[v] == '\r') {
                ++v;
            } else if (body.substr(v, 2) == "\\n") {
                v += 2;
            } else {
                break;
            }
        }
        if (body.substr(v, 11) != "<arg_value>") break;
        const size_t value_begin = v + 11;
        const size_t value_end = body.find("</arg_value>", value_begin);
        if (value_end == std::string_view::npos) break;
        std::string key(body.substr(key_begin, key_end - key_begin));
        std::string value(body.substr(value_begin, value_end - value_begin));
        ordered_json parsed = ordered_json::parse(value, nullptr, /*allow_exceptions=*/false);
        call.arguments[key] = parsed.is_discarded() ? ordered_json(value) : parsed;
        call.raw_arguments.emplace_back(std::move(key), std::move(value));
        pos = body.find("<arg_key>", value_end + 12);
    }
    return call;
}

void OutputParser::emit_text(std::vector<OutputEvent>& out, OutputKind kind, std::string_view text) {
    if (text.empty()) return;
    if (!out.empty() && out.back().kind == kind && kind != OutputKind::TOOL_CALL) {
        out.back().text.append(text);
    } else {
        out.push_back({kind, std::string(text), {}});
    }
}

std::vector<OutputEvent> OutputParser::push(std::string_view text) {
    buffer_.append(text);
    std::vector<OutputEvent> out;
    for (;;) {
        std::string_view buf = buffer_;
        if (state_ == State::START) {
            // Thinking off: a "<think>" at the very start still opens reasoning (SGLang does the same).
            if (buf.size() < k_think.size() && k_think.substr(0, buf.size()) == buf) return out;
            if (buf.substr(0, k_think.size()) == k_think) {
                buffer_.erase(0, k_think.size());
                state_ = State::REASONING;
                reasoning_started_ = true;
                continue;
            }
            state_ = State::CONTENT;
            continue;
        }
        if (state_ == State::REASONING) {
            if (!reasoning_started_) {
                // A model may repeat the prompt's "<think>": drop it if it opens the output.
                if (buf.size() < k_think.size() && k_think.substr(0, buf.size()) == buf) return out;
                if (buf.substr(0, k_think.size()) == k_think) buffer_.erase(0, k_think.size());
                reasoning_started_ = true;
                continue;
            }
            const size_t end = buf.find(k_end_think);
            const size_t tool = buf.find(k_tool);
            if (end != std::string_view::npos && (tool == std::string_view::npos || end < tool)) {
                emit_text(out, OutputKind::REASONING, buf.substr(0, end));
                buffer_.erase(0, end + k_end_think.size());
                state_ = State::CONTENT;
                continue;
            }
            if (tool != std::string_view::npos) {
                // A tool call before </think> ends reasoning; the call itself is parsed as content.
                emit_text(out, OutputKind::REASONING, buf.substr(0, tool));
                buffer_.erase(0, tool);
                state_ = State::CONTENT;
                continue;
            }
            const size_t keep = partial_tag_suffix(buf, {k_end_think, k_tool});
            emit_text(out, OutputKind::REASONING, buf.substr(0, buf.size() - keep));
            buffer_.erase(0, buf.size() - keep);
            return out;
        }
        if (state_ == State::CONTENT) {
            const size_t tool = buf.find(k_tool);
            if (tool != std::string_view::npos) {
                emit_text(out, OutputKind::CONTENT, buf.substr(0, tool));
                buffer_.erase(0, tool + k_tool.size());
                state_ = State::TOOL_CALL;
                continue;
            }
            const size_t keep = partial_tag_suffix(buf, {k_tool});
            emit_text(out, OutputKind::CONTENT, buf.substr(0, buf.size() - keep));
            buffer_.erase(0, buf.size() - keep);
            return out;
        }
        // TOOL_CALL: wait for the closing tag, then parse the whole call.
        const size_t end = buf.find(k_end_tool);
        if (end == std::string_view::npos) return out;
        OutputEvent ev{OutputKind::TOOL_CALL, std::string(buf.substr(0, end)), parse_tool_call(buf.substr(0, end))};
        out.push_back(std::move(ev));
        buffer_.erase(0, end + k_end_tool.size());
        state_ = State::CONTENT;
    }
}

std::vector<OutputEvent> OutputParser::finish() {
    std::vector<OutputEvent> out;
    switch (state_) {
        case State::START:
        case State::CONTENT: emit_text(out, OutputKind::CONTENT, buffer_); break;
        case State::REASONING: emit_text(out, OutputKind::REASONING, buffer_); break;
        case State::TOOL_CALL: emit_text(out, OutputKind::CONTENT, std::string(k_tool) + buffer_); break;
    }
    buffer_.clear();
    state_ = State::CONTENT;
    return out;
}

std::vector<OutputEvent> parse_output(std::string_view text, bool starts_in_reasoning) {
    OutputParser parser(starts_in_reasoning);
    std::vector<OutputEvent> out = parser.push(text);
    for (OutputEvent& ev : parser.finish()) {
        if (!out.empty() && out.back().kind == ev.kind && ev.kind != OutputKind::TOOL_CALL) {
            out.back().text += ev.text;
        } else {
            out.push_back(std::move(ev));
        }
    }
    return out;
}

}  // namespace glm
