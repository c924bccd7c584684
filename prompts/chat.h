// GLM-5 / GLM-5.1 chat prompt rendering (tokenizer.md section 2.2), as text. Special tokens are written
// as their text ("[gMASK]", "<|user|>" ...); Tokenizer::encode turns each into its single id.
// Use EncodeOptions{.parse_special = false} on untrusted content if it must not create special ids.
#pragma once
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace glm {

using ordered_json = nlohmann::ordered_json;

struct ToolCall {
    std::string name;
    ordered_json arguments = ordered_json::object();  // key order is kept; strings are written raw
};

struct ChatMessage {
    std::string role;  // "system", "user", "assistant" or "tool"
    std::string content;
    std::optional<std::string> reasoning_content;  // assistant only; unset = not given
    std::vector<ToolCall> tool_calls;               // assistant only
};

enum class ChatTemplate {
    GLM5,   // GLM-4.7 / GLM-5: reasoning shown only when non-empty, stripped; tools dumped as given
    GLM51,  // GLM-5.1: reasoning shown whenever given (even empty), not stripped; tools unwrapped
};

struct ChatOptions {
    ChatTemplate flavor = ChatTemplate::GLM51;
    bool add_generation_prompt = true;
    bool enable_thinking = true;             // generation prompt ends "<think>" (on) or "</think>" (off)
    std::optional<bool> clear_thinking;      // unset: drop reasoning before the last user turn; false: keep it
};

// Renders the conversation. tools: array of OpenAI-style tool objects ({"type": "function",
// "function": {...}}), may be empty or null.
std::string render_chat(const std::vector<ChatMessage>& messages, const ordered_json& tools = ordered_json(),
                        const ChatOptions& options = {});

// json.dumps(value, ensure_ascii=False) as Python writes it (", " and ": " separators, keys in order,
// non-ASCII kept): what the template's tojson produces.
std::string python_json(const ordered_json& value);

}  // namespace glm
