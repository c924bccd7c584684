// libFuzzer: encode arbitrary bytes with the Llama-3 vocabulary and check the invariants that must hold
// for any input: no crash, ids in range, decode(encode(x)) == x made valid UTF-8 (Llama-3 has no
// normalizer and byte-level BPE is lossless), and streaming decode == whole decode.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tokenizer/stream-decoder.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace {

const glm::Tokenizer& tokenizer() {
    static const glm::Tokenizer tok = [] {
        std::string error;
        auto t = glm::Tokenizer::load(GLM_FUZZ_VOCAB, error);
        if (!t) {
            std::fprintf(stderr, "%s\n", error.c_str());
            std::abort();
        }
        return *t;
    }();
    return tok;
}

void require(bool ok, const char* what) {
    if (!ok) {
        std::fprintf(stderr, "invariant failed: %s\n", what);
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const glm::Tokenizer& tok = tokenizer();
    const std::string input(reinterpret_cast<const char*>(data), size);
    const std::string valid = glm::unicode::utf8_lossy(input);
    for (bool parse_special : {true, false}) {
        const auto ids = tok.encode(input, glm::EncodeOptions{parse_special});
        for (glm::token_id id : ids) require(id >= 0 && size_t(id) < tok.n_tokens(), "id in range");
        const std::string text = tok.decode_text(ids);
        require(text == valid, "decode(encode(x)) == lossy(x)");
        glm::StreamDecoder stream(tok);
        std::string streamed;
        for (glm::token_id id : ids) streamed += stream.push(id);
        streamed += stream.flush();
        require(streamed == text, "stream == decode");
    }
    return 0;
}
