// Generated Unicode tables (tokenizer/unicode-data.cpp, from scripts/tokenizer/gen-unicode-data.py).
// Internal to the tokenizer; use tokenizer/unicode.h.
#pragma once
#include <cstddef>
#include <cstdint>

namespace glm::unicode_data {

struct CategoryRange { uint32_t first; uint8_t major; };
struct CodePointPair { uint32_t cp; uint32_t value; };
struct Decomposition { uint32_t cp; uint32_t first; uint32_t second; };
struct Composition { uint32_t first; uint32_t second; uint32_t composite; };

extern const char* const k_unicode_version;
extern const CategoryRange k_categories[];
extern const size_t k_n_categories;
extern const uint32_t k_white_space[];
extern const size_t k_n_white_space;
extern const CodePointPair k_ascii_folds[];
extern const size_t k_n_ascii_folds;
extern const Decomposition k_decompositions[];
extern const size_t k_n_decompositions;
extern const Composition k_compositions[];
extern const size_t k_n_compositions;
extern const CodePointPair k_combining_classes[];
extern const size_t k_n_combining_classes;

}  // namespace glm::unicode_data
