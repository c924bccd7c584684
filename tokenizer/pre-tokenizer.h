// Pre-tokenization: splits normalized text into pieces before BPE, reproducing the HF `tokenizers`
// pre-tokenizers used by byte-level BPE models. Regexes are not interpreted: each supported Split
// pattern (Llama-3 / GLM, Qwen2, GPT-2, the DeepSeek-V3 trio) is matched by hand-written code on Unicode
// classes, as llama.cpp does, because no regex engine with \p{..} and lookahead is available.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace glm {

enum class SplitKind : uint8_t {
    LLAMA3,      // (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    QWEN2,       // the same with \p{N} (one number per piece)
    GPT2,        // 's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+  (ByteLevel use_regex)
    NUMBERS_1_3, // \p{N}{1,3}
    CJK_KANA,    // [\x{4E00}-\x{9FA5}\x{3040}-\x{309F}\x{30A0}-\x{30FF}]+
    DEEPSEEK_V3, // [!-/:-@[-`{-~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
    DIGITS,      // Digits pre-tokenizer, individual_digits = true:  \p{N}
    DIGIT_RUNS,  // Digits pre-tokenizer, individual_digits = false: \p{N}+
};

// Maps a Split regex as written in tokenizer.json to a kind; false if it is not one we implement.
bool split_kind_from_regex(std::string_view pattern, SplitKind& kind);

// One pre-tokenizer pass with "Isolated" behaviour: each match is a piece and so is each non-empty gap.
// cps/flags cover the whole text; ranges are [begin, end) code point indices. Appends to out.
void split_range(SplitKind kind, const uint32_t* cps, const uint8_t* flags, size_t begin, size_t end,
                 std::vector<std::pair<uint32_t, uint32_t>>& out);

// A pipeline of Split passes (a Sequence). An empty pipeline yields the whole text as one piece.
struct PreTokenizer {
    std::vector<SplitKind> passes;
    // Splits cps[0, n) into pieces (code point ranges), in order. flags: unicode::flags of each cps[i].
    void split(const uint32_t* cps, const uint8_t* flags, size_t n, std::vector<std::pair<uint32_t, uint32_t>>& out) const;
};

}  // namespace glm
