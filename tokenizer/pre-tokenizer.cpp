#include "tokenizer/pre-tokenizer.h"

#include "tokenizer/unicode.h"

namespace glm {
using namespace glm::unicode;

namespace {

// Literal CR/LF characters and their "\r"/"\n" escapes mean the same inside a character class, and
// tokenizer.json files use both (DeepSeek-V3 writes raw CR/LF), so patterns are compared escaped.
std::string escape_crlf(std::string_view p) {
    std::string out;
    for (char c : p) {
        if (c == '\r') {
            out += "\\r";
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

constexpr std::string_view k_llama3 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view k_qwen2 =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
constexpr std::string_view k_gpt2 = R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";
constexpr std::string_view k_numbers_1_3 = R"(\p{N}{1,3})";
constexpr std::string_view k_cjk_kana = "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+";
constexpr std::string_view k_deepseek_v3 =
    R"([!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+|[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+| ?[\p{P}\p{S}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

inline bool is_letter(uint8_t f) { return f & CP_LETTER; }
inline bool is_number(uint8_t f) { return f & CP_NUMBER; }
inline bool is_space(uint8_t f) { return f & CP_WHITESPACE; }
inline bool is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

struct Text {
    const uint32_t* cps;
    const uint8_t* flags;
    size_t end;
};

// Length of the (?i:'s|'t|'re|'ve|'m|'ll|'d) match at pos, or 0. Case-insensitive when fold is set.
size_t match_contraction(const Text& t, size_t pos, bool fold) {
    if (t.cps[pos] != '\'' || pos + 1 >= t.end) return 0;
    auto lower = [&](size_t i) -> uint32_t {
        if (i >= t.end) return 0;
        return fold ? fold_ascii(t.cps[i]) : t.cps[i];
    };
    const uint32_t a = lower(pos + 1);
    // Alternatives in pattern order; no two share a prefix, so the first hit is the regex's choice.
    if (a == 's' || a == 't') return 2;
    const uint32_t b = lower(pos + 2);
    if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e')) return 3;
    if (a == 'm') return 2;
    if (a == 'l' && b == 'l') return 3;
    if (a == 'd') return 2;
    return 0;
}

size_t run_while(const Text& t, size_t pos, uint8_t mask) {
    size_t i = pos;
    while (i < t.end && (t.flags[i] & mask)) ++i;
    return i - pos;
}

// The three whitespace alternatives shared by all patterns: \s*[\r\n]+ | \s+(?!\S) | \s+
// (the first only when with_crlf).
size_t match_whitespace(const Text& t, size_t pos, bool with_crlf) {
    if (!is_space(t.flags[pos])) return 0;
    const size_t e = pos + run_while(t, pos, CP_WHITESPACE);
    if (with_crlf) {
        // \s* backtracks to the last CR/LF of the run, then [\r\n]+ takes it.
        for (size_t j = e; j > pos; --j) {
            if (is_crlf(t.cps[j - 1])) return j - pos;
        }
    }
    // \s+(?!\S): the whole run at the end of text, else the run minus its last character.
    if (e == t.end || e - pos == 1) return e - pos;  // a single space before \S falls through to \s+
    return e - pos - 1;
}

size_t match_llama3(const Text& t, size_t pos, size_t max_digits) {
    const uint32_t c = t.cps[pos];
    const uint8_t f = t.flags[pos];
    if (size_t n = match_contraction(t, pos, true)) return n;
    // [^\r\n\p{L}\p{N}]?\p{L}+
    if (is_letter(f)) return run_while(t, pos, CP_LETTER);
    if (!is_crlf(c) && !is_number(f) && pos + 1 < t.end && is_letter(t.flags[pos + 1])) {
        return 1 + run_while(t, pos + 1, CP_LETTER);
    }
    // \p{N}{1,max}
    if (is_number(f)) {
        size_t n = 1;
        while (n < max_digits && pos + n < t.end && is_number(t.flags[pos + n])) ++n;
        return n;
    }
    // ' ?[^\s\p{L}\p{N}]+[\r\n]*'
    auto other = [&](size_t i) { return i < t.end && !(t.flags[i] & (CP_WHITESPACE | CP_LETTER | CP_NUMBER)); };
    size_t i = pos;
    if (c == ' ' && other(pos + 1)) ++i;
    if (other(i)) {
        while (other(i)) ++i;
        while (i < t.end && is_crlf(t.cps[i])) ++i;
        return i - pos;
    }
    return match_whitespace(t, pos, true);
}

size_t match_gpt2(const Text& t, size_t pos) {
    if (size_t n = match_contraction(t, pos, false)) return n;
    const size_t start = (t.cps[pos] == ' ' && pos + 1 < t.end) ? pos + 1 : pos;
    const uint8_t f = t.flags[start];
    // ' ?\p{L}+' | ' ?\p{N}+' | ' ?[^\s\p{L}\p{N}]+'
    if (is_letter(f)) return start - pos + run_while(t, start, CP_LETTER);
    if (is_number(f)) return start - pos + run_while(t, start, CP_NUMBER);
    if (!(f & (CP_WHITESPACE | CP_LETTER | CP_NUMBER))) {
        size_t i = start;
        while (i < t.end && !(t.flags[i] & (CP_WHITESPACE | CP_LETTER | CP_NUMBER))) ++i;
        return i - pos;
    }
    return match_whitespace(t, pos, false);
}

bool is_ascii_punct(uint32_t c) {
    return (c >= '!' && c <= '/') || (c >= ':' && c <= '@') || (c >= '[' && c <= '`') || (c >= '{' && c <= '~');
}
bool is_ascii_letter(uint32_t c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z'); }

size_t match_deepseek(const Text& t, size_t pos) {
    const uint32_t c = t.cps[pos];
    const uint8_t f = t.flags[pos];
    // [!-/:-@[-`{-~][A-Za-z]+
    if (is_ascii_punct(c) && pos + 1 < t.end && is_ascii_letter(t.cps[pos + 1])) {
        size_t i = pos + 1;
        while (i < t.end && is_ascii_letter(t.cps[i])) ++i;
        return i - pos;
    }
    // [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+  (a leading mark may be taken by either part: same end)
    if (f & (CP_LETTER | CP_MARK)) return run_while(t, pos, CP_LETTER | CP_MARK);
    if (!is_crlf(c) && !(f & (CP_PUNCT | CP_SYMBOL)) && pos + 1 < t.end && (t.flags[pos + 1] & (CP_LETTER | CP_MARK))) {
        return 1 + run_while(t, pos + 1, CP_LETTER | CP_MARK);
    }
    // ' ?[\p{P}\p{S}]+[\r\n]*'
    size_t i = pos;
    if (c == ' ' && pos + 1 < t.end && (t.flags[pos + 1] & (CP_PUNCT | CP_SYMBOL))) ++i;
    if (i < t.end && (t.flags[i] & (CP_PUNCT | CP_SYMBOL))) {
        i += run_while(t, i, CP_PUNCT | CP_SYMBOL);
        while (i < t.end && is_crlf(t.cps[i])) ++i;
        return i - pos;
    }
    return match_whitespace(t, pos, true);
}

bool is_cjk_kana(uint32_t c) {
    return (c >= 0x4E00 && c <= 0x9FA5) || (c >= 0x3040 && c <= 0x309F) || (c >= 0x30A0 && c <= 0x30FF);
}

size_t match_at(SplitKind kind, const Text& t, size_t pos) {
    switch (kind) {
        case SplitKind::LLAMA3: return match_llama3(t, pos, 3);
        case SplitKind::QWEN2: return match_llama3(t, pos, 1);
        case SplitKind::GPT2: return match_gpt2(t, pos);
        case SplitKind::DEEPSEEK_V3: return match_deepseek(t, pos);
        case SplitKind::NUMBERS_1_3: {
            size_t n = 0;
            while (n < 3 && pos + n < t.end && is_number(t.flags[pos + n])) ++n;
            return n;
        }
        case SplitKind::CJK_KANA: {
            size_t i = pos;
            while (i < t.end && is_cjk_kana(t.cps[i])) ++i;
            return i - pos;
        }
        case SplitKind::DIGITS: return is_number(t.flags[pos]) ? 1 : 0;
        case SplitKind::DIGIT_RUNS: return run_while(t, pos, CP_NUMBER);
    }
    return 0;
}

}  // namespace

bool split_kind_from_regex(std::string_view pattern, SplitKind& kind) {
    const std::string p = escape_crlf(pattern);
    const std::pair<std::string_view, SplitKind> known[] = {
        {k_llama3, SplitKind::LLAMA3},           {k_qwen2, SplitKind::QWEN2},
        {k_gpt2, SplitKind::GPT2},               {k_numbers_1_3, SplitKind::NUMBERS_1_3},
        {k_cjk_kana, SplitKind::CJK_KANA},       {k_deepseek_v3, SplitKind::DEEPSEEK_V3},
    };
    for (const auto& [text, k] : known) {
        if (p == text) {
            kind = k;
            return true;
        }
    }
    return false;
}

void split_range(SplitKind kind, const uint32_t* cps, const uint8_t* flags, size_t begin, size_t end,
                 std::vector<std::pair<uint32_t, uint32_t>>& out) {
    // The regex sees only this range: its end is the end of text for lookahead purposes.
    const Text t{cps, flags, end};
    size_t gap = begin;
    for (size_t pos = begin; pos < end;) {
        const size_t n = match_at(kind, t, pos);
        if (n == 0) {
            ++pos;
            continue;
        }
        if (gap < pos) out.emplace_back(uint32_t(gap), uint32_t(pos));
        out.emplace_back(uint32_t(pos), uint32_t(pos + n));
        pos += n;
        gap = pos;
    }
    if (gap < end) out.emplace_back(uint32_t(gap), uint32_t(end));
}

void PreTokenizer::split(const uint32_t* cps, const uint8_t* flags, size_t n,
                         std::vector<std::pair<uint32_t, uint32_t>>& out) const {
    out.clear();
    if (n == 0) return;
    if (passes.empty()) {
        out.emplace_back(0, uint32_t(n));
        return;
    }
    split_range(passes[0], cps, flags, 0, n, out);
    std::vector<std::pair<uint32_t, uint32_t>> next;
    for (size_t k = 1; k < passes.size(); ++k) {
        next.clear();
        for (const auto& [b, e] : out) split_range(passes[k], cps, flags, b, e, next);
        out.swap(next);
    }
}

}  // namespace glm
