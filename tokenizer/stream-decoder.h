// Streaming detokenizer: turns generated token ids into text chunks that are always valid UTF-8.
// A token can end in the middle of a multi-byte character (byte-level BPE splits emoji and CJK), so
// bytes are held back until the character is complete. Bytes that can never become valid are
// emitted as U+FFFD, one per maximal invalid subpart, so the concatenated chunks plus flush() equal
// Tokenizer::decode_text of all ids.
#pragma once
#include <string>

#include "tokenizer/tokenizer.h"

namespace glm {

class StreamDecoder {
public:
    explicit StreamDecoder(const Tokenizer& tokenizer, bool skip_special = false)
        : tokenizer_(&tokenizer), skip_special_(skip_special) {}

    // Text that became complete with this token (possibly empty).
    std::string push(token_id id);
    // Appends raw bytes (used by push; exposed for tests and for callers that hold bytes).
    std::string push_bytes(std::string_view bytes);
    // End of stream: whatever is held back, with an incomplete tail as U+FFFD.
    std::string flush();
    // Bytes held back waiting for the rest of a character.
    size_t pending() const { return pending_.size(); }

private:
    const Tokenizer* tokenizer_;
    bool skip_special_;
    std::string pending_;
};

}  // namespace glm
