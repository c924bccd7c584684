// Loader behaviour: GLM-5 special tokens, error messages for malformed files, encode options.
#include <doctest/doctest.h>

#include "tests/tokenizer/tokenizer-test-util.h"
#include "tokenizer/tokenizer.h"

using glm::Tokenizer;
using glm::token_id;
using nlohmann::json;

namespace {

const Tokenizer& glm5_test_tokenizer() {
    static const Tokenizer tok = [] {
        std::string error;
        auto t = Tokenizer::load(glm::test::vocab_path("glm5_test"), error);
        if (!t) FAIL(error);
        return *t;
    }();
    return tok;
}

// The 36 GLM-5 added tokens in id order, from tokenizer.md section 1.5 (ids 154820 + index).
const char* const k_glm5_added[] = {
    "<|endoftext|>", "[MASK]", "[gMASK]", "[sMASK]", "<sop>", "<eop>", "<|system|>", "<|user|>", "<|assistant|>",
    "<|observation|>", "<|begin_of_image|>", "<|end_of_image|>", "<|begin_of_video|>", "<|end_of_video|>",
    "<|begin_of_audio|>", "<|end_of_audio|>", "<|begin_of_transcription|>", "<|end_of_transcription|>",
    "<|code_prefix|>", "<|code_middle|>", "<|code_suffix|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
    "<tool_response>", "</tool_response>", "<arg_key>", "</arg_key>", "<arg_value>", "</arg_value>", "/nothink",
    "<|begin_of_box|>", "<|end_of_box|>", "<|image|>", "<|video|>"};

// A minimal valid byte-level BPE tokenizer.json that the error tests break one field at a time.
json minimal() {
    return json::parse(R"({
      "added_tokens": [{"id": 3, "content": "<s>", "special": true, "normalized": false}],
      "normalizer": null,
      "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"},
         "behavior": "Isolated", "invert": false},
        {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]},
      "decoder": {"type": "ByteLevel"},
      "model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2}, "merges": ["a b"]}
    })");
}

std::string load_error(const json& doc) {
    std::string error;
    auto tok = Tokenizer::load_from_string(doc.dump(), error);
    CHECK_FALSE(tok.has_value());
    CHECK(error.find('\n') == std::string::npos);  // one line
    return error;
}

}  // namespace

TEST_CASE("GLM-5 added tokens get their real ids (tokenizer.md 1.5)") {
    const Tokenizer& tok = glm5_test_tokenizer();
    REQUIRE(tok.added_tokens().size() == 36);
    for (size_t i = 0; i < 36; ++i) {
        CAPTURE(k_glm5_added[i]);
        CHECK(tok.token_to_id(k_glm5_added[i]) == token_id(154820 + i));
        CHECK(tok.is_special(token_id(154820 + i)));
        CHECK(tok.id_to_token(token_id(154820 + i)) == std::string(k_glm5_added[i]));
    }
    CHECK(tok.n_tokens() == 154856);  // tokenizer.md 1.6: "the tokenizer itself has 154856 ids"
}

TEST_CASE("GLM-5 chat prefix encodes to the special ids around the text ids") {
    const Tokenizer& tok = glm5_test_tokenizer();
    // Ids as dumped from GLM-5.x (tokenizer.md 2.2 "Token ids seen for GLM-5.x"); "Hi" is 13041 in
    // the generated test vocabulary as in GLM-5 (tokenizer.md 5.2). HF agrees (expected-glm5_test.json).
    const std::vector<token_id> want = {154822, 154824, 154827, 13041, 154828, 154841, 154842};
    CHECK(tok.encode("[gMASK]<sop><|user|>Hi<|assistant|><think></think>") == want);
    CHECK(tok.decode(want) == "[gMASK]<sop><|user|>Hi<|assistant|><think></think>");
    CHECK(tok.decode(want, /*skip_special=*/true) == "Hi");
    // With special-token parsing off the markup is plain text: no id from the added range.
    for (token_id id : tok.encode("<|user|>Hi", glm::EncodeOptions{false})) CHECK(id < 154820);
}

TEST_CASE("merges load in both spellings") {
    json a = minimal(), b = minimal();
    b["model"]["merges"] = json::parse(R"([["a", "b"]])");
    std::string error;
    auto ta = Tokenizer::load_from_string(a.dump(), error);
    auto tb = Tokenizer::load_from_string(b.dump(), error);
    REQUIRE(ta.has_value());
    REQUIRE(tb.has_value());
    CHECK(ta->encode("ab<s>ba") == tb->encode("ab<s>ba"));
    CHECK(ta->encode("ab<s>ba") == std::vector<token_id>{2, 3, 1, 0});
}

TEST_CASE("a malformed tokenizer.json gives one clear error naming the problem") {
    CHECK(load_error(json("not an object")).find("top level is not a JSON object") != std::string::npos);
    {
        std::string error;
        CHECK_FALSE(Tokenizer::load_from_string("{\"model\": {", error));
        CHECK(error.find("not valid JSON") != std::string::npos);
        CHECK_FALSE(Tokenizer::load("/nonexistent/tokenizer.json", error));
        CHECK(error.find("cannot open /nonexistent/tokenizer.json") != std::string::npos);
    }
    json d = minimal();
    d.erase("model");
    CHECK(load_error(d).find("tokenizer.model is missing") != std::string::npos);
    d = minimal();
    d["model"]["type"] = "WordPiece";
    CHECK(load_error(d).find("model.type \"WordPiece\" is not supported") != std::string::npos);
    d = minimal();
    d["model"]["merges"] = json::array({"a c"});
    CHECK(load_error(d).find("model.merges[0]: \"c\" is not in the vocabulary") != std::string::npos);
    d = minimal();
    d["model"]["merges"] = json::array({"a b c"});
    CHECK(load_error(d).find("model.merges[0] \"a b c\" is not two tokens") != std::string::npos);
    d = minimal();
    d["model"]["vocab"]["a"] = "zero";
    CHECK(load_error(d).find("model.vocab[\"a\"] is not a valid token id") != std::string::npos);
    // Found by tokenizer-fuzz-load: file content with a newline must not break the one-line message.
    d = minimal();
    d["model"]["vocab"]["x\ny"] = -1;
    CHECK(load_error(d).find("model.vocab[\"x\\ny\"] is not a valid token id") != std::string::npos);
    {
        std::string error;
        CHECK_FALSE(Tokenizer::load_from_string("{\"model\": tru\n\n", error));
        CHECK(error.find('\n') == std::string::npos);
    }
    d = minimal();
    d["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = "\\w+";
    CHECK(load_error(d).find("pre_tokenizer.pretokenizers[0]: Split regex \"\\\\w+\" is not one of the implemented") !=
          std::string::npos);
    d = minimal();
    d["pre_tokenizer"]["pretokenizers"][0]["behavior"] = "Removed";
    CHECK(load_error(d).find("behavior \"Removed\" is not supported") != std::string::npos);
    d = minimal();
    d["pre_tokenizer"] = nullptr;
    CHECK(load_error(d).find("no ByteLevel step") != std::string::npos);
    d = minimal();
    d["normalizer"] = json{{"type", "NFKD"}};
    CHECK(load_error(d).find("normalizer type \"NFKD\" is not supported") != std::string::npos);
    d = minimal();
    d["decoder"] = json{{"type", "WordPiece"}};
    CHECK(load_error(d).find("decoder type \"WordPiece\" is not supported") != std::string::npos);
    d = minimal();
    d["added_tokens"][0].erase("content");
    CHECK(load_error(d).find("added_tokens[0].content is missing") != std::string::npos);
    d = minimal();
    d["added_tokens"][0]["special"] = "yes";
    CHECK(load_error(d).find("added_tokens[0].special must be true or false") != std::string::npos);
}
