// Golden tests for GLM-5 / GLM-5.1 chat rendering. Sources of each golden are cited per case:
// tokenizer.md 2.2 (the spec), and ollama/ollama:model/renderers/glm47_test.go (tokenizer.md 5.3: the
// GLM-4.7 format is the GLM-5 format), copied as expected strings.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "prompts/chat.h"

using glm::ChatMessage;
using glm::ChatOptions;
using glm::ChatTemplate;
using glm::ordered_json;
using glm::render_chat;

namespace {

ChatOptions glm5() {
    ChatOptions o;
    o.flavor = ChatTemplate::GLM5;
    return o;
}

ChatMessage user(const std::string& c) { return {"user", c, std::nullopt, {}}; }
ChatMessage sys_msg(const std::string& c) { return {"system", c, std::nullopt, {}}; }
ChatMessage tool(const std::string& c) { return {"tool", c, std::nullopt, {}}; }
ChatMessage assistant(const std::string& c, std::optional<std::string> reasoning = std::nullopt,
                      std::vector<glm::ToolCall> calls = {}) {
    return {"assistant", c, std::move(reasoning), std::move(calls)};
}
glm::ToolCall call(const std::string& name, const char* args) { return {name, ordered_json::parse(args)}; }

const ordered_json k_weather_tools = ordered_json::parse(R"([{"type": "function", "function": {"name": "get_weather",
  "description": "Get weather", "parameters": {"type": "object", "properties": {"location": {"type": "string"}},
  "required": ["location"]}}}])");

// The tools system block of glm47_test.go for k_weather_tools (GLM-5: the tool dumped as given).
const std::string k_weather_system =
    "<|system|>\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\nYou are provided with "
    "function signatures within <tools></tools> XML tags:\n<tools>\n{\"type\": \"function\", \"function\": {\"name\": "
    "\"get_weather\", \"description\": \"Get weather\", \"parameters\": {\"type\": \"object\", \"properties\": "
    "{\"location\": {\"type\": \"string\"}}, \"required\": [\"location\"]}}}\n</tools>\n\nFor each function call, output "
    "the function name and arguments within the following XML format:\n<tool_call>{function-name}<arg_key>{arg-key-1}"
    "</arg_key><arg_value>{arg-value-1}</arg_value><arg_key>{arg-key-2}</arg_key><arg_value>{arg-value-2}</arg_value>..."
    "</tool_call>";

}  // namespace

TEST_CASE("tokenizer.md 2.2 worked examples") {
    for (ChatTemplate flavor : {ChatTemplate::GLM5, ChatTemplate::GLM51}) {
        ChatOptions on;
        on.flavor = flavor;
        ChatOptions off = on;
        off.enable_thinking = false;
        CHECK(render_chat({user("Hi")}, {}, on) == "[gMASK]<sop><|user|>Hi<|assistant|><think>");
        CHECK(render_chat({user("Hi")}, {}, off) == "[gMASK]<sop><|user|>Hi<|assistant|></think>");
        CHECK(render_chat({sys_msg("You are helpful."), user("Hi")}, {}, on) ==
              "[gMASK]<sop><|system|>You are helpful.<|user|>Hi<|assistant|><think>");
    }
    // Tool round trip (GLM-5 rules): the historical assistant turn before the last user gets a lone </think>.
    const std::string got = render_chat({user("Hi"), assistant("", std::nullopt, {call("get_weather", "{}")}), user("Weather?"),
                                         assistant("", std::nullopt, {call("get_weather", R"({"location": "Tokyo", "unit": "celsius"})")}),
                                         tool("{\"temperature\":22}")},
                                        {}, glm5());
    const std::string tail =
        "</tool_call><|user|>Weather?<|assistant|></think><tool_call>get_weather<arg_key>location</arg_key><arg_value>Tokyo"
        "</arg_value><arg_key>unit</arg_key><arg_value>celsius</arg_value></tool_call><|observation|><tool_response>"
        "{\"temperature\":22}</tool_response><|assistant|><think>";
    REQUIRE(got.size() > tail.size());
    CHECK(got.substr(got.size() - tail.size()) == tail);
}

TEST_CASE("ollama glm47_test.go goldens (GLM-4.7 = GLM-5 format)") {
    ChatOptions off = glm5();
    off.enable_thinking = false;
    CHECK(render_chat({user("Hello")}, {}, glm5()) == "[gMASK]<sop><|user|>Hello<|assistant|><think>");
    CHECK(render_chat({user("Hello")}, {}, off) == "[gMASK]<sop><|user|>Hello<|assistant|></think>");
    CHECK(render_chat({sys_msg("You are helpful."), user("Hello")}, {}, glm5()) ==
          "[gMASK]<sop><|system|>You are helpful.<|user|>Hello<|assistant|><think>");
    CHECK(render_chat({user("Hi"), assistant("Hello there"), user("How are you?")}, {}, glm5()) ==
          "[gMASK]<sop><|user|>Hi<|assistant|></think>Hello there<|user|>How are you?<|assistant|><think>");
    CHECK(render_chat({user("Answer with reasoning."), assistant("Done.", "Plan.")}, {}, glm5()) ==
          "[gMASK]<sop><|user|>Answer with reasoning.<|assistant|><think>Plan.</think>Done.<|assistant|><think>");
    CHECK(render_chat({user("Weather?"),
                       assistant("", std::nullopt, {call("get_weather", R"({"location": "Tokyo", "unit": "celsius"})")}),
                       tool("{\"temperature\":22}")},
                      k_weather_tools, glm5()) ==
          "[gMASK]<sop>" + k_weather_system +
              "<|user|>Weather?<|assistant|></think><tool_call>get_weather<arg_key>location</arg_key><arg_value>Tokyo"
              "</arg_value><arg_key>unit</arg_key><arg_value>celsius</arg_value></tool_call><|observation|><tool_response>"
              "{\"temperature\":22}</tool_response><|assistant|><think>");
    CHECK(render_chat({user("Weather?"), assistant("Let me check", std::nullopt, {call("get_weather", R"({"location": "Tokyo"})")}),
                       tool("{\"temperature\":22}"), assistant("It is 22C.")},
                      k_weather_tools, glm5()) ==
          "[gMASK]<sop>" + k_weather_system +
              "<|user|>Weather?<|assistant|></think>Let me check<tool_call>get_weather<arg_key>location</arg_key><arg_value>"
              "Tokyo</arg_value></tool_call><|observation|><tool_response>{\"temperature\":22}</tool_response><|assistant|>"
              "</think>It is 22C.<|assistant|><think>");
    CHECK(render_chat({user("Compare weather"),
                       assistant("", std::nullopt, {call("get_weather", R"({"location": "Tokyo"})"), call("get_weather", R"({"location": "Paris"})")}),
                       tool("{\"temperature\":22}"), tool("{\"temperature\":18}")},
                      k_weather_tools, glm5()) ==
          "[gMASK]<sop>" + k_weather_system +
              "<|user|>Compare weather<|assistant|></think><tool_call>get_weather<arg_key>location</arg_key><arg_value>Tokyo"
              "</arg_value></tool_call><tool_call>get_weather<arg_key>location</arg_key><arg_value>Paris</arg_value>"
              "</tool_call><|observation|><tool_response>{\"temperature\":22}</tool_response><tool_response>"
              "{\"temperature\":18}</tool_response><|assistant|><think>");
    // ollama keeps past reasoning: that is the template with clear_thinking = false.
    ChatOptions keep = glm5();
    keep.clear_thinking = false;
    CHECK(render_chat({user("Think step by step"), assistant("Here's my answer.", "Let me think..."), user("Continue")}, {}, keep) ==
          "[gMASK]<sop><|user|>Think step by step<|assistant|><think>Let me think...</think>Here's my answer.<|user|>Continue"
          "<|assistant|><think>");
}

TEST_CASE("past reasoning collapses to </think> before the last user turn (tokenizer.md 2.2 rule 4)") {
    for (ChatTemplate flavor : {ChatTemplate::GLM5, ChatTemplate::GLM51}) {
        ChatOptions o;
        o.flavor = flavor;
        CHECK(render_chat({user("Q1"), assistant("A1", "R1"), user("Q2")}, {}, o) ==
              "[gMASK]<sop><|user|>Q1<|assistant|></think>A1<|user|>Q2<|assistant|><think>");
        // Reasoning written inline in the content is extracted the same way.
        CHECK(render_chat({user("Q1"), assistant("<think>R1</think>\nA1"), user("Q2")}, {}, o) ==
              "[gMASK]<sop><|user|>Q1<|assistant|></think>A1<|user|>Q2<|assistant|><think>");
        CHECK(render_chat({user("Q1"), assistant("\n<think>\nR1\n</think>\n\nA1  ")}, {}, o) ==
              "[gMASK]<sop><|user|>Q1<|assistant|><think>R1</think>A1<|assistant|><think>");
    }
}

TEST_CASE("GLM-5 vs GLM-5.1 reasoning rule (tokenizer.md 2.2 rule 4, GLM-5.1 line quoted there)") {
    ChatOptions o51;
    ChatOptions o5 = glm5();
    // After the last user turn: GLM-5 needs non-empty reasoning; GLM-5.1 only needs it defined.
    CHECK(render_chat({user("Q"), assistant("A", "")}, {}, o5) == "[gMASK]<sop><|user|>Q<|assistant|></think>A<|assistant|><think>");
    CHECK(render_chat({user("Q"), assistant("A", "")}, {}, o51) ==
          "[gMASK]<sop><|user|>Q<|assistant|><think></think>A<|assistant|><think>");
    CHECK(render_chat({user("Q"), assistant("A")}, {}, o51) == "[gMASK]<sop><|user|>Q<|assistant|></think>A<|assistant|><think>");
    // GLM-5 strips the reasoning, the quoted GLM-5.1 line does not.
    CHECK(render_chat({user("Q"), assistant("A", " R ")}, {}, o5) ==
          "[gMASK]<sop><|user|>Q<|assistant|><think>R</think>A<|assistant|><think>");
    CHECK(render_chat({user("Q"), assistant("A", " R ")}, {}, o51) ==
          "[gMASK]<sop><|user|>Q<|assistant|><think> R </think>A<|assistant|><think>");
    // GLM-5.1 renders the inner function object, without defer_loading / strict (tokenizer.md 2.2 rule 2).
    ordered_json tools = ordered_json::parse(
        R"([{"type": "function", "function": {"name": "f", "strict": true, "parameters": {}, "defer_loading": false}}])");
    const std::string r = render_chat({user("Q")}, tools, o51);
    CHECK(r.find("<tools>\n{\"name\": \"f\", \"parameters\": {}}\n</tools>") != std::string::npos);
    CHECK(render_chat({user("Q")}, tools, o5).find("<tools>\n{\"type\": \"function\", \"function\": {\"name\": \"f\", \"strict\": true") !=
          std::string::npos);
}

TEST_CASE("tool arguments: strings raw, other values as tojson (tokenizer.md 2.2 rule 4)") {
    const std::string r = render_chat({user("Q"), assistant("", std::nullopt, {call("f", R"({"s": "a \"b\"", "n": 3, "o": {"k": "é"}, "l": [1, 2.5]})")})},
                                      {}, glm5());
    CHECK(r == "[gMASK]<sop><|user|>Q<|assistant|></think><tool_call>f<arg_key>s</arg_key><arg_value>a \"b\"</arg_value>"
               "<arg_key>n</arg_key><arg_value>3</arg_value><arg_key>o</arg_key><arg_value>{\"k\": \"é\"}</arg_value>"
               "<arg_key>l</arg_key><arg_value>[1, 2.5]</arg_value></tool_call><|assistant|><think>");
}

TEST_CASE("consecutive tool results share one <|observation|>; add_generation_prompt off") {
    ChatOptions o;
    o.add_generation_prompt = false;
    CHECK(render_chat({user("Q"), tool("a"), tool("b"), user("R"), tool("c")}, {}, o) ==
          "[gMASK]<sop><|user|>Q<|observation|><tool_response>a</tool_response><tool_response>b</tool_response>"
          "<|user|>R<|observation|><tool_response>c</tool_response>");
}

TEST_CASE("python_json equals Python json.dumps(ensure_ascii=False)") {
    std::ifstream in(std::string(GLMRUN_SOURCE_DIR) + "/tests/prompts/python-json-goldens.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const ordered_json goldens = ordered_json::parse(ss.str());
    REQUIRE(goldens.size() >= 5);
    for (const auto& g : goldens) CHECK(glm::python_json(g["value"]) == g["dumps"].get<std::string>());
}
