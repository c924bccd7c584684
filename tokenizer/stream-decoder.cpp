#include "tokenizer/stream-decoder.h"

#include "tokenizer/unicode.h"

namespace glm {

std::string StreamDecoder::push(token_id id) {
    if (skip_special_ && tokenizer_->is_special(id)) return {};
    return push_bytes(tokenizer_->token_bytes(id));
}

std::string StreamDecoder::push_bytes(std::string_view bytes) {
    pending_.append(bytes.data(), bytes.size());
    std::string out;
    const auto* p = reinterpret_cast<const uint8_t*>(pending_.data());
    const size_t n = pending_.size();
    size_t i = 0;
    uint32_t cp;
    bool valid, truncated;
    while (i < n) {
        const size_t k = unicode::utf8_next(p, n, i, cp, valid, truncated);
        if (!valid && truncated) break;  // could still be completed by the next token
        if (valid) {
            out.append(pending_, i, k);
        } else {
            unicode::utf8_append(out, unicode::k_replacement);
        }
        i += k;
    }
    pending_.erase(0, i);
    return out;
}

std::string StreamDecoder::flush() {
    std::string out = unicode::utf8_lossy(pending_);
    pending_.clear();
    return out;
}

}  // namespace glm
