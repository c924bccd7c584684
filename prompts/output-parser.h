// Streaming parser of GLM-5 generated text into reasoning, content and tool calls (the behaviour of
// SGLang's glm45 reasoning parser and glm47 tool-call parser, tokenizer.md 2.3 and 2.4):
//   - output starts inside reasoning when the prompt ended with "<think>" (thinking on);
//   - "</think>" ends reasoning; a "<tool_call>" before any "</think>" also ends it;
//   - "<tool_call>name<arg_key>k</arg_key><arg_value>v</arg_value>...</tool_call>" becomes a ToolCall.
// Text may arrive in any pieces (one byte at a time included): a tail that could be the start of a tag
// is held back until it is decided.
#pragma once
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "prompts/chat.h"

namespace glm {

enum class OutputKind { REASONING, CONTENT, TOOL_CALL };

struct ParsedToolCall {
    std::string name;
    std::vector<std::pair<std::string, std::string>> raw_arguments;  // as written, in order
    // Each value parsed as JSON when it is valid JSON, else kept as a string (llama.cpp's rule;
    // a caller with the tool's schema can use raw_arguments instead).
    ordered_json arguments = ordered_json::object();
};

struct OutputEvent {
    OutputKind kind;
    std::string text;     // REASONING / CONTENT text, or the raw call text for TOOL_CALL
    ParsedToolCall call;  // TOOL_CALL only
};

class OutputParser {
public:
    explicit OutputParser(bool starts_in_reasoning) : state_(starts_in_reasoning ? State::REASONING : State::START) {}

    // Events completed by this text (text events for one kind may be split across calls).
    std::vector<OutputEvent> push(std::string_view text);
    // End of generation: flushes held-back text; an unterminated tool call is returned as content.
    std::vector<OutputEvent> finish();

private:
    enum class State { START, REASONING, CONTENT, TOOL_CALL };
    void emit_text(std::vector<OutputEvent>& out, OutputKind kind, std::string_view text);
    State state_;
    std::string buffer_;
    bool reasoning_started_ = false;  // a "<think>" right at the start of reasoning is dropped
};

// One-shot parse of a complete tool-call body (text between <tool_call> and </tool_call>).
ParsedToolCall parse_tool_call(std::string_view body);

// One-shot parse of a whole output (same result as streaming it).
std::vector<OutputEvent> parse_output(std::string_view text, bool starts_in_reasoning);

}  // namespace glm
