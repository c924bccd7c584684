// Unicode helpers for the tokenizer: code point classes (as Oniguruma sees \p{L}, \p{N}, \s ...),
// lossy UTF-8 decoding with the "maximal subpart" rule (what Python's errors="replace" and Rust's
// from_utf8_lossy do), and NFC normalization. Tables come from tokenizer/unicode-data.cpp.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace glm::unicode {

// Bit flags of one code point. The major general category bits are exclusive and all clear for a code
// point unassigned in our tables' Unicode version; WHITESPACE is the White_Space property (Oniguruma's
// \s in UTF-8 mode).
enum : uint8_t {
    CP_LETTER = 1 << 0,
    CP_MARK = 1 << 1,
    CP_NUMBER = 1 << 2,
    CP_PUNCT = 1 << 3,
    CP_SYMBOL = 1 << 4,
    CP_SEPARATOR = 1 << 5,
    CP_OTHER = 1 << 6,  // Cc, Cf, Co, Cs: controls, format, private use, surrogates
    CP_WHITESPACE = 1 << 7,
};

uint8_t flags(uint32_t cp);
const char* version();

// Simple case folding restricted to targets that are ASCII letters ('S' -> 's', U+017F -> 's');
// other code points are returned unchanged. Enough for the (?i:'s|'t|...) contractions.
uint32_t fold_ascii(uint32_t cp);

constexpr uint32_t k_replacement = 0xFFFD;

// Decodes one code point at s[i]. Returns the number of bytes consumed (>= 1 when i < n). On an invalid
// or truncated sequence, consumes its maximal subpart and sets cp = U+FFFD and valid = false;
// truncated = true when the subpart runs to the end of the input (more bytes could complete it).
size_t utf8_next(const uint8_t* s, size_t n, size_t i, uint32_t& cp, bool& valid, bool& truncated);

void utf8_append(std::string& out, uint32_t cp);
bool utf8_is_valid(std::string_view s);
// Invalid sequences become U+FFFD (one per maximal subpart).
std::string utf8_lossy(std::string_view s);
std::vector<uint32_t> utf8_to_code_points(std::string_view s);  // lossy

// Canonical composition (NFC) in place.
void nfc(std::vector<uint32_t>& cps);

}  // namespace glm::unicode
