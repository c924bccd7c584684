// libFuzzer: tokenizer.json loading from arbitrary bytes must either fail with a one-line error or give
// a tokenizer that encodes and decodes without crashing.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    std::string error;
    auto tok = glm::Tokenizer::load_from_string(std::string_view(reinterpret_cast<const char*>(data), size), error);
    if (!tok) {
        if (error.empty() || error.find('\n') != std::string::npos) {
            std::fprintf(stderr, "bad error message: '%s'\n", error.c_str());
            std::abort();
        }
        return 0;
    }
    for (const char* text : {"hello world", "ab<s>ba 123 \xff\xfe", "<s><s>  \n\n x'S"}) {
        const auto ids = tok->encode(text);
        for (glm::token_id id : ids) {
            if (id < 0 || size_t(id) >= tok->n_tokens()) std::abort();
        }
        (void)tok->decode_text(ids);
    }
    return 0;
}
