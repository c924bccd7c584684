// Output parser: behaviour of SGLang's glm45 reasoning parser and glm47 tool parser as described in
// tokenizer.md 2.3 / 2.4, checked one-shot and streamed in every split (one byte at a time included).
#include <doctest/doctest.h>

#include <random>

#include "prompts/output-parser.h"

using glm::OutputEvent;
using glm::OutputKind;
using glm::OutputParser;

namespace {

// Feeds text in pieces of the given sizes (cycled) and merges adjacent text events of one kind.
std::vector<OutputEvent> stream(std::string_view text, bool in_reasoning, const std::vector<size_t>& sizes) {
    OutputParser p(in_reasoning);
    std::vector<OutputEvent> all;
    auto add = [&](std::vector<OutputEvent> evs) {
        for (auto& e : evs) {
            if (!all.empty() && all.back().kind == e.kind && e.kind != OutputKind::TOOL_CALL) {
                all.back().text += e.text;
            } else {
                all.push_back(std::move(e));
            }
        }
    };
    size_t k = 0;
    for (size_t pos = 0; pos < text.size();) {
        const size_t n = std::min(sizes[k++ % sizes.size()], text.size() - pos);
        add(p.push(text.substr(pos, n)));
        pos += n;
    }
    add(p.finish());
    return all;
}

std::string describe(const std::vector<OutputEvent>& evs) {
    std::string s;
    for (const auto& e : evs) {
        s += e.kind == OutputKind::REASONING ? "R[" : e.kind == OutputKind::CONTENT ? "C[" : "T[";
        s += e.kind == OutputKind::TOOL_CALL ? e.call.name + " " + e.call.arguments.dump() : e.text;
        s += "]";
    }
    return s;
}

// Checks the one-shot result and that every streaming split gives the same events.
void check(std::string_view text, bool in_reasoning, const std::string& want) {
    CAPTURE(text);
    CHECK(describe(glm::parse_output(text, in_reasoning)) == want);
    CHECK(describe(stream(text, in_reasoning, {1})) == want);
    CHECK(describe(stream(text, in_reasoning, {2, 3})) == want);
    std::mt19937 rng(11);
    for (int i = 0; i < 20; ++i) {
        std::vector<size_t> sizes;
        for (int k = 0; k < 8; ++k) sizes.push_back(1 + rng() % 13);
        CHECK(describe(stream(text, in_reasoning, sizes)) == want);
    }
}

}  // namespace

TEST_CASE("</think> ends reasoning (tokenizer.md 2.3)") {
    check("Let me think.</think>The answer is 4.", true, "R[Let me think.]C[The answer is 4.]");
    check("<think>Plan</think>Done", true, "R[Plan]C[Done]");  // a repeated leading <think> is dropped
    check("only reasoning, truncated", true, "R[only reasoning, truncated]");
    check("a < b and </thin k> is not a tag</think>x<y", true, "R[a < b and </thin k> is not a tag]C[x<y]");
}

TEST_CASE("thinking off: all content, unless the output opens with <think>") {
    check("Hello world", false, "C[Hello world]");
    check("<think>r</think>c", false, "R[r]C[c]");
    check("x<think>y", false, "C[x<think>y]");
}

TEST_CASE("<tool_call> before </think> ends reasoning (tokenizer.md 2.3)") {
    check("I should call.<tool_call>get_weather<arg_key>location</arg_key><arg_value>Tokyo</arg_value></tool_call>", true,
          "R[I should call.]T[get_weather {\"location\":\"Tokyo\"}]");
}

TEST_CASE("tool calls (tokenizer.md 2.4)") {
    check("</think>Let me check<tool_call>get_weather<arg_key>location</arg_key><arg_value>Tokyo</arg_value><arg_key>unit"
          "</arg_key><arg_value>celsius</arg_value></tool_call>",
          true, "C[Let me check]T[get_weather {\"location\":\"Tokyo\",\"unit\":\"celsius\"}]");
    // Two calls; JSON-looking values become JSON, other text stays a string; whitespace between
    // key and value is allowed.
    check("r</think><tool_call> f <arg_key>n</arg_key>\n<arg_value>3</arg_value><arg_key>o</arg_key><arg_value>{\"a\": [1]}"
          "</arg_value></tool_call><tool_call>g<arg_key>s</arg_key><arg_value>not json</arg_value></tool_call>tail",
          true, "R[r]T[f {\"n\":3,\"o\":{\"a\":[1]}}]T[g {\"s\":\"not json\"}]C[tail]");
    check("<tool_call>noargs</tool_call>", false, "T[noargs {}]");
    // Unterminated call at the end of generation comes back as content.
    check("</think><tool_call>f<arg_key>a", true, "C[<tool_call>f<arg_key>a]");
}

TEST_CASE("raw arguments keep the written text") {
    const auto call = glm::parse_tool_call("f<arg_key>x</arg_key><arg_value>007</arg_value>");
    REQUIRE(call.raw_arguments.size() == 1);
    CHECK(call.raw_arguments[0].second == "007");  // "007" is not valid JSON: kept as a string
    CHECK(call.arguments["x"] == "007");
}
