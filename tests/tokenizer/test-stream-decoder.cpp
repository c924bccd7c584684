// The streaming detokenizer against HF's decode (expected-*.json "decoded"): feeding ids one at a time
// must give exactly HF's text, and no chunk may end inside a UTF-8 character.
#include <doctest/doctest.h>

#include <random>

#include "tests/tokenizer/tokenizer-test-util.h"
#include "tokenizer/stream-decoder.h"
#include "tokenizer/unicode.h"

using glm::StreamDecoder;
using glm::Tokenizer;
using glm::token_id;

TEST_CASE("streaming decode equals HF decode, chunk by chunk valid UTF-8") {
    for (const char* name : {"llama3", "qwen3"}) {
        std::string error;
        auto tok = Tokenizer::load(glm::test::vocab_path(name), error);
        REQUIRE_MESSAGE(tok.has_value(), error);
        const auto expected = glm::test::read_json(glm::test::fixture_path(std::string("expected-") + name + ".json"));
        size_t held_back = 0;
        for (const auto& c : expected["cases"]) {
            const auto ids = c["ids"].get<std::vector<token_id>>();
            StreamDecoder dec(*tok);
            std::string text;
            for (token_id id : ids) {
                const std::string chunk = dec.push(id);
                CHECK(glm::unicode::utf8_is_valid(chunk));
                held_back += dec.pending() > 0;
                text += chunk;
            }
            text += dec.flush();
            CHECK(text == c["decoded"].get<std::string>());
        }
        CHECK(held_back > 0);  // the corpus does split characters across tokens (emoji, CJK)
    }
}

TEST_CASE("byte-by-byte streaming equals HF's lossy decoding of the whole") {
    // Reference for invalid input: HF decode of the corpus through the GLM-5 test tokenizer (no
    // normalizer, so HF's decoded text is the input after Python's errors="replace" decoding).
    std::string error;
    auto tok = Tokenizer::load(glm::test::vocab_path("glm5_test"), error);
    REQUIRE_MESSAGE(tok.has_value(), error);
    const auto corpus = glm::test::read_json(glm::test::fixture_path("corpus.json"))["cases"];
    const auto expected = glm::test::read_json(glm::test::fixture_path("expected-glm5_test.json"))["cases"];
    std::mt19937 rng(7);
    for (size_t i = 0; i < corpus.size(); ++i) {
        const std::string bytes = glm::test::corpus_bytes(corpus[i]);
        const std::string want = expected[i]["decoded"].get<std::string>();
        CHECK(glm::unicode::utf8_lossy(bytes) == want);
        for (int round = 0; round < 2; ++round) {
            StreamDecoder dec(*tok);
            std::string text;
            for (size_t pos = 0; pos < bytes.size();) {
                const size_t n = round == 0 ? 1 : std::min<size_t>(bytes.size() - pos, 1 + rng() % 4);
                const std::string chunk = dec.push_bytes(std::string_view(bytes).substr(pos, n));
                CHECK(glm::unicode::utf8_is_valid(chunk));
                text += chunk;
                pos += n;
            }
            text += dec.flush();
            CHECK(text == want);
        }
    }
}
