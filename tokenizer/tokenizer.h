// HF tokenizer.json byte-level BPE tokenizer (Llama-3 / GLM-4.5+ / GLM-5 / Qwen2-3 / DeepSeek-V3 style).
//
// Encoding follows HF `tokenizers` with add_special_tokens=false: added tokens are matched on the raw
// text first (leftmost-longest), the text between them is normalized (NFC if configured),
// pre-tokenized (Split / ByteLevel / Digits) and BPE-merged by rank. No BOS/EOS or post-processor
// template is added: chat prompts write their own special tokens as text (see prompts/).
// Input that is not valid UTF-8 is first made valid by replacing each maximal invalid subpart with
// U+FFFD, which is what reaches HF when Python decodes bytes with errors="replace".
#pragma once
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace glm {

using token_id = int32_t;

struct AddedToken {
    std::string content;
    token_id id = -1;
    bool special = false;
    bool lstrip = false;
    bool rstrip = false;
    bool single_word = false;
    bool normalized = false;
};

struct EncodeOptions {
    // Match added tokens flagged "special" in the text (HF default). false = treat their text as plain
    // text (HF split_special_tokens), for untrusted user content.
    bool parse_special = true;
};

class Tokenizer {
public:
    // Loads a tokenizer.json file. On failure returns nullopt and sets error to one line naming the problem.
    static std::optional<Tokenizer> load(const std::string& path, std::string& error);
    static std::optional<Tokenizer> load_from_string(std::string_view json_text, std::string& error);

    std::vector<token_id> encode(std::string_view text, EncodeOptions options = {}) const;
    void encode(std::string_view text, std::vector<token_id>& out, EncodeOptions options = {}) const;

    // Concatenated bytes of the tokens (may be invalid UTF-8 when a multi-byte character is cut).
    // Unknown ids are skipped. skip_special drops added tokens flagged special.
    std::string decode(const std::vector<token_id>& ids, bool skip_special = false) const;
    // Like HF decode: the same bytes with invalid UTF-8 replaced by U+FFFD.
    std::string decode_text(const std::vector<token_id>& ids, bool skip_special = false) const;
    // Bytes of one token; empty for an unknown id.
    const std::string& token_bytes(token_id id) const;

    // The pre-tokenizer pieces of text (no added-token split, no normalizer), as raw bytes. For tests
    // and debugging: compares with HF's pre_tokenizer.pre_tokenize_str.
    std::vector<std::string> pre_tokenize(std::string_view text) const;

    // Id of an added token (exact content) or of a vocabulary entry written in the model's alphabet.
    std::optional<token_id> token_to_id(std::string_view content) const;
    // Content of an added token, or the vocabulary entry as written in tokenizer.json.
    std::optional<std::string> id_to_token(token_id id) const;
    bool is_special(token_id id) const;
    // One more than the largest id (regular or added).
    size_t n_tokens() const;
    const std::vector<AddedToken>& added_tokens() const;

    struct Impl;

private:
    explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
    std::shared_ptr<const Impl> impl_;  // immutable after load, so copies and threads share it
};

}  // namespace glm
