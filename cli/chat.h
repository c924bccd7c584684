// The chat format as the command line needs it, on top of prompts/: a conversation with the REPL's
// bookkeeping, its GLM-5.1 rendering, and a streaming split of generated text into reasoning and
// answer (tool calls stay in the answer as text).
#pragma once

#include <string>
#include <vector>

#include "prompts/output-parser.h"

struct ChatMessage {
    std::string role;       // system | user | assistant
    std::string content;
    std::string reasoning;  // assistant only
    bool interrupted = false;  // assistant answer cut by Ctrl-C or a full context
};

// GLM-5.1 chat template with the generation prompt ("...<|assistant|><think>" or "...</think>").
std::string render_chat(const std::vector<ChatMessage>& messages, bool think);

class ReasoningSplitter {
public:
    explicit ReasoningSplitter(bool in_reasoning) : parser_(in_reasoning) {}
    // Feed text; appends the decided parts to reasoning / content.
    void push(const std::string& text, std::string& reasoning, std::string& content);
    void flush(std::string& reasoning, std::string& content);

private:
    glm::OutputParser parser_;
};
