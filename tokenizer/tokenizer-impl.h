// Internal state of glm::Tokenizer, shared by the loader (tokenizer-load.cpp), the encoder
// (tokenizer.cpp) and the BPE merger (bpe.cpp). Not part of the public API.
#pragma once
#include <array>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/flat-map.h"
#include "tokenizer/pre-tokenizer.h"
#include "tokenizer/tokenizer.h"

namespace glm {

// Finds added tokens in text: leftmost match, longest at that position (HF uses an Aho-Corasick
// automaton with MatchKind::LeftmostLongest). Candidates are bucketed by first byte, longest first.
struct AddedTokenMatcher {
    std::array<std::vector<uint32_t>, 256> by_first_byte;  // indices into Impl::added
    std::array<bool, 256> is_first_byte{};
    bool empty = true;
};

struct Tokenizer::Impl {
    // ---- BPE model
    std::vector<std::string> vocab_keys;     // entries as written (byte-level alphabet); never resized
    StringIdMap vocab;                        // views into vocab_keys -> id
    std::vector<std::string_view> pieces;    // id -> entry as written (view into vocab_keys; "" if none)
    std::vector<std::string> bytes;          // id -> decoded bytes (regular and added)
    StringIdMap vocab_by_bytes;              // views into `bytes` -> regular id
    MergeMap merges;                         // (left, right) -> rank, result
    std::array<token_id, 256> byte_ids{};                // initial BPE symbol of each byte, -1 if none
    std::array<token_id, 256> byte_fallback_ids{};       // "<0xAB>" tokens when byte_fallback
    bool ignore_merges = false;
    bool byte_fallback = false;
    token_id unk_id = -1;

    // ---- normalizer and pre-tokenizer
    bool nfc = false;
    PreTokenizer pre;

    // ---- added tokens
    std::vector<AddedToken> added;
    std::unordered_map<std::string, token_id> added_by_content;
    std::vector<uint8_t> special;  // id -> 1 for added tokens flagged special
    AddedTokenMatcher raw_matcher;         // normalized = false: matched on the raw input
    AddedTokenMatcher normalized_matcher;  // normalized = true: matched after the normalizer

    size_t n_ids = 0;

    // Word cache (as HF has): natural text repeats words, and a hit skips the merge loop. Shared by
    // threads, hence the lock; bounded so memory stays small.
    static constexpr size_t k_cache_capacity = 1 << 16;
    static constexpr size_t k_cache_max_word = 64;
    mutable std::shared_mutex cache_mutex;
    mutable std::unordered_map<std::string, std::vector<token_id>> cache;

    void bpe(const uint8_t* s, size_t n, std::vector<token_id>& out) const;
    void bpe_uncached(const uint8_t* s, size_t n, std::vector<token_id>& out) const;
};

// The GPT-2 byte-to-unicode alphabet: byte -> code point, and its inverse (-1 where not a byte char).
const std::array<uint32_t, 256>& byte_to_code_point();
int code_point_to_byte(uint32_t cp);

}  // namespace glm
