#include "cli/chat.h"

#include "prompts/chat.h"

std::string render_chat(const std::vector<ChatMessage>& messages, bool think) {
    std::vector<glm::ChatMessage> msgs;
    msgs.reserve(messages.size());
    for (const ChatMessage& m : messages) {
        glm::ChatMessage g;
        g.role = m.role;
        g.content = m.content;
        if (m.role == "assistant" && !m.reasoning.empty()) g.reasoning_content = m.reasoning;
        msgs.push_back(std::move(g));
    }
    glm::ChatOptions opt;
    opt.enable_thinking = think;
    return glm::render_chat(msgs, glm::ordered_json(), opt);
}

namespace {
void route(const std::vector<glm::OutputEvent>& events, std::string& reasoning, std::string& content) {
    for (const glm::OutputEvent& e : events) (e.kind == glm::OutputKind::REASONING ? reasoning : content) += e.text;
}
}  // namespace

void ReasoningSplitter::push(const std::string& text, std::string& reasoning, std::string& content) {
    route(parser_.push(text), reasoning, content);
}

void ReasoningSplitter::flush(std::string& reasoning, std::string& content) {
    route(parser_.finish(), reasoning, content);
}
