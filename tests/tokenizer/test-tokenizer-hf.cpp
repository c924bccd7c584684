// Encodes the committed corpus with real vocabularies written by others and compares every id with
// the output of HF `tokenizers` recorded by scripts/tokenizer/make_expected.py (fixtures expected-*.json).
#include <doctest/doctest.h>

#include <chrono>
#include <cstdio>

#include "tests/tokenizer/tokenizer-test-util.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

using glm::Tokenizer;
using glm::token_id;
using nlohmann::json;

namespace {

std::string show(const std::vector<token_id>& ids) {
    std::string s = "[";
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s + "]";
}

// Byte-level alphabet spelling of raw bytes, as HF's pre_tokenize_str reports pieces.
std::string byte_level(const std::string& bytes) {
    std::string out;
    for (unsigned char b : bytes) {
        uint32_t cp = b;
        if (!((b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE))) {
            uint32_t n = 0;
            for (uint32_t x = 0; x < b; ++x) {
                if (!((x >= '!' && x <= '~') || (x >= 0xA1 && x <= 0xAC) || (x >= 0xAE))) ++n;
            }
            cp = 0x100 + n;
        }
        glm::unicode::utf8_append(out, cp);
    }
    return out;
}

void compare_with_hf(const std::string& name, const std::string& path) {
    std::string error;
    const auto t0 = std::chrono::steady_clock::now();
    auto tok = Tokenizer::load(path, error);
    const double load_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    INFO("vocabulary " << name << " at " << path << " (run the tokenizer-fetch-vocabs test first)");
    REQUIRE_MESSAGE(tok.has_value(), error);
    MESSAGE(name << ": loaded in " << load_s << " s");
    const json corpus = glm::test::read_json(glm::test::fixture_path("corpus.json"))["cases"];
    const json expected = glm::test::read_json(glm::test::fixture_path("expected-" + name + ".json"));
    const json& cases = expected["cases"];
    REQUIRE(cases.size() == corpus.size());
    CHECK(expected["add_special_tokens"] == false);
    size_t id_mismatch = 0, decode_mismatch = 0, piece_mismatch = 0, roundtrip = 0;
    for (size_t i = 0; i < corpus.size(); ++i) {
        const std::string input = glm::test::corpus_bytes(corpus[i]);
        const auto want = cases[i]["ids"].get<std::vector<token_id>>();
        const auto got = tok->encode(input);
        if (got != want) {
            if (++id_mismatch <= 8) {
                MESSAGE(name << " case " << i << " [" << corpus[i]["tag"].get<std::string>() << "] " << json(glm::unicode::utf8_lossy(input)).dump()
                             << "\n  HF   " << show(want) << "\n  ours " << show(got));
            }
        }
        const std::string hf_text = cases[i]["decoded"].get<std::string>();
        const std::string our_text = tok->decode_text(want);
        if (our_text != hf_text && ++decode_mismatch <= 5) {
            MESSAGE(name << " case " << i << " decode: HF " << json(hf_text).dump() << " ours " << json(our_text).dump());
        }
        if (our_text == hf_text && hf_text == input) ++roundtrip;
        // Pre-tokenizer pieces alone (HF's pre_tokenize_str sees neither added tokens nor the normalizer).
        std::vector<std::string> pieces;
        for (const auto& p : tok->pre_tokenize(glm::unicode::utf8_lossy(input))) pieces.push_back(byte_level(p));
        const auto want_pieces = cases[i]["pieces"].get<std::vector<std::string>>();
        if (pieces != want_pieces && ++piece_mismatch <= 5) {
            MESSAGE(name << " case " << i << " pieces differ: HF " << json(want_pieces).dump() << " ours " << json(pieces).dump());
        }
    }
    MESSAGE(name << ": " << corpus.size() << " cases, " << id_mismatch << " id mismatches, " << decode_mismatch
                 << " decode mismatches, " << piece_mismatch << " piece mismatches, " << roundtrip
                 << " exact round trips (HF tokenizers " << expected["tokenizers_version"].get<std::string>() << ")");
    CHECK(id_mismatch == 0);
    CHECK(decode_mismatch == 0);
    CHECK(piece_mismatch == 0);
    CHECK(roundtrip > corpus.size() / 2);  // every valid-UTF-8 case without special-token loss
}

}  // namespace

TEST_CASE("ids identical to HF tokenizers: Llama-3 vocabulary") { compare_with_hf("llama3", glm::test::vocab_path("llama3")); }
TEST_CASE("ids identical to HF tokenizers: Qwen3 vocabulary") { compare_with_hf("qwen3", glm::test::vocab_path("qwen3")); }
TEST_CASE("ids identical to HF tokenizers: DeepSeek-V3 vocabulary") {
    compare_with_hf("deepseek_v3", glm::test::vocab_path("deepseek_v3"));
}
TEST_CASE("ids identical to HF tokenizers: GLM-5 test tokenizer") {
    compare_with_hf("glm5_test", glm::test::vocab_path("glm5_test"));
}

// 1000 random strings over boundary code points and special-token fragments (corpus-stress.json).
TEST_CASE("stress corpus: ids identical to HF tokenizers on all vocabularies") {
    const nlohmann::json corpus = glm::test::read_json(glm::test::fixture_path("corpus-stress.json"))["cases"];
    for (const char* name : {"llama3", "qwen3", "deepseek_v3", "glm5_test"}) {
        std::string error;
        auto tok = Tokenizer::load(glm::test::vocab_path(name), error);
        REQUIRE_MESSAGE(tok.has_value(), error);
        const nlohmann::json expected = glm::test::read_json(glm::test::fixture_path(std::string("expected-stress-") + name + ".json"));
        REQUIRE(expected["ids"].size() == corpus.size());
        size_t mismatches = 0;
        for (size_t i = 0; i < corpus.size(); ++i) {
            const std::string text = corpus[i]["text"].get<std::string>();
            const auto want = expected["ids"][i].get<std::vector<token_id>>();
            const auto got = tok->encode(text);
            if (got != want && ++mismatches <= 5) {
                MESSAGE(std::string(name) << " stress case " << i << " " << json(text).dump() << "\n  HF   " << show(want) << "\n  ours " << show(got));
            }
        }
        MESSAGE(std::string(name) << ": " << corpus.size() << " stress cases, " << mismatches << " mismatches");
        CHECK(mismatches == 0);
    }
}

// Pre-tokenizer forms that none of the reference vocabularies uses (ByteLevel with use_regex = the
// GPT-2 split, Digits), grafted onto the Llama-3 file exactly as scripts/tokenizer/make_expected.py
// `variants` does, so HF's ids for them are a reference too.
TEST_CASE("pre-tokenizer variants (GPT-2 ByteLevel split, Digits): ids identical to HF tokenizers") {
    const json base = glm::test::read_json(glm::test::vocab_path("llama3"));
    const json split = json::parse(glm::test::read_file(glm::test::vocab_path("llama3")))["pre_tokenizer"]["pretokenizers"][0];
    const json byte_level = json::parse(R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false})");
    const json byte_level_regex = json::parse(R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})");
    const std::pair<const char*, json> forms[] = {
        {"gpt2", byte_level_regex},
        {"digits", json{{"type", "Sequence"},
                        {"pretokenizers", json::array({json{{"type", "Digits"}, {"individual_digits", true}}, split, byte_level})}}},
        {"digit_runs", json{{"type", "Sequence"},
                            {"pretokenizers", json::array({json{{"type", "Digits"}, {"individual_digits", false}}, byte_level_regex})}}},
    };
    std::vector<std::string> texts;
    const json corpus = glm::test::read_json(glm::test::fixture_path("corpus.json"));
    const json stress = glm::test::read_json(glm::test::fixture_path("corpus-stress.json"));
    for (const auto& c : corpus["cases"]) texts.push_back(glm::test::corpus_bytes(c));
    for (const auto& c : stress["cases"]) texts.push_back(c["text"].get<std::string>());
    for (const auto& [name, pre] : forms) {
        json doc = base;
        doc["pre_tokenizer"] = pre;
        std::string error;
        auto tok = Tokenizer::load_from_string(doc.dump(), error);
        REQUIRE_MESSAGE(tok.has_value(), error);
        const json expected = glm::test::read_json(glm::test::fixture_path(std::string("expected-variant-") + name + ".json"));
        REQUIRE(expected["ids"].size() == texts.size());
        size_t mismatches = 0;
        for (size_t i = 0; i < texts.size(); ++i) {
            const auto want = expected["ids"][i].get<std::vector<token_id>>();
            const auto got = tok->encode(texts[i]);
            if (got != want && ++mismatches <= 5) {
                MESSAGE(std::string(name) << " case " << i << " " << json(glm::unicode::utf8_lossy(texts[i])).dump() << "\n  HF   "
                                          << show(want) << "\n  ours " << show(got));
            }
        }
        MESSAGE(std::string(name) << ": " << texts.size() << " cases, " << mismatches << " mismatches");
        CHECK(mismatches == 0);
    }
}
