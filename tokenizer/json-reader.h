// Reads tokenizer.json with nlohmann's SAX interface. The two big members, model.vocab (~150k
// entries) and model.merges (~300k), go straight into flat vectors instead of a DOM, which makes
// loading about three times faster; everything else becomes an ordinary nlohmann::json document.
// Internal to the tokenizer loader.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace glm {

struct VocabEntry {
    std::string token;
    int64_t id;  // -1 when the value is not a non-negative integer
};

struct MergeEntry {
    std::string left, right;  // the ["a", "b"] form
    std::string line;         // the "a b" form
    bool is_pair = false;
    bool valid = true;  // false: neither a string nor an array of two strings
};

struct TokenizerJson {
    nlohmann::json doc;  // model.vocab / model.merges are empty placeholders when captured below
    bool has_vocab = false, has_merges = false;
    std::vector<VocabEntry> vocab;
    std::vector<MergeEntry> merges;
};

// Throws std::runtime_error("not valid JSON: ...") on malformed JSON.
TokenizerJson read_tokenizer_json(std::string_view text);

}  // namespace glm
