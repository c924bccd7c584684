#include "tokenizer/unicode.h"

#include <algorithm>
#include <array>

#include "tokenizer/unicode-data.h"

namespace glm::unicode {
namespace ud = glm::unicode_data;

namespace {

uint8_t major_to_flag(uint8_t major) {
    switch (major) {
        case 1: return CP_LETTER;
        case 2: return CP_MARK;
        case 3: return CP_NUMBER;
        case 4: return CP_PUNCT;
        case 5: return CP_SYMBOL;
        case 6: return CP_SEPARATOR;
        case 7: return CP_OTHER;
        default: return 0;  // unassigned in our Unicode version
    }
}

uint8_t flags_slow(uint32_t cp) {
    const ud::CategoryRange* end = ud::k_categories + ud::k_n_categories;
    const ud::CategoryRange* it =
        std::upper_bound(ud::k_categories, end, cp, [](uint32_t c, const ud::CategoryRange& r) { return c < r.first; });
    uint8_t f = it == ud::k_categories ? uint8_t(0) : major_to_flag((it - 1)->major);
    if (std::binary_search(ud::k_white_space, ud::k_white_space + ud::k_n_white_space, cp)) f |= CP_WHITESPACE;
    return f;
}

// The BMP covers nearly all text, so it gets a flat table (64 KiB) built once; the rest binary-searches.
struct BmpFlags {
    std::array<uint8_t, 0x10000> table{};
    BmpFlags() {
        for (uint32_t cp = 0; cp < 0x10000; ++cp) table[cp] = flags_slow(cp);
    }
};

const BmpFlags& bmp_flags() {
    static const BmpFlags f;
    return f;
}

}  // namespace

uint8_t flags(uint32_t cp) {
    if (cp < 0x10000) return bmp_flags().table[cp];
    if (cp > 0x10FFFF) return 0;
    return flags_slow(cp);
}

const char* version() { return ud::k_unicode_version; }

uint32_t fold_ascii(uint32_t cp) {
    if (cp < 0x80) return (cp >= 'A' && cp <= 'Z') ? cp + 32 : cp;
    for (size_t i = 0; i < ud::k_n_ascii_folds; ++i) {
        if (ud::k_ascii_folds[i].cp == cp) return ud::k_ascii_folds[i].value;
    }
    return cp;
}

size_t utf8_next(const uint8_t* s, size_t n, size_t i, uint32_t& cp, bool& valid, bool& truncated) {
    valid = true;
    truncated = false;
    const uint8_t b0 = s[i];
    if (b0 < 0x80) {
        cp = b0;
        return 1;
    }
    size_t len;
    uint8_t lo = 0x80, hi = 0xBF;  // allowed range of the second byte (Unicode table 3-7)
    if (b0 >= 0xC2 && b0 <= 0xDF) {
        len = 2;
        cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
        len = 3;
        cp = b0 & 0x0F;
        if (b0 == 0xE0) lo = 0xA0;
        if (b0 == 0xED) hi = 0x9F;  // no surrogates
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
        len = 4;
        cp = b0 & 0x07;
        if (b0 == 0xF0) lo = 0x90;
        if (b0 == 0xF4) hi = 0x8F;
    } else {
        valid = false;
        cp = k_replacement;
        return 1;
    }
    for (size_t k = 1; k < len; ++k) {
        if (i + k >= n) {
            valid = false;
            truncated = true;
            cp = k_replacement;
            return k;
        }
        const uint8_t b = s[i + k];
        const uint8_t l = k == 1 ? lo : 0x80, h = k == 1 ? hi : 0xBF;
        if (b < l || b > h) {
            valid = false;
            cp = k_replacement;
            return k;
        }
        cp = (cp << 6) | (b & 0x3F);
    }
    return len;
}

void utf8_append(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
        out.push_back(char(cp));
    } else if (cp < 0x800) {
        out.push_back(char(0xC0 | (cp >> 6)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(char(0xE0 | (cp >> 12)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(char(0xF0 | (cp >> 18)));
        out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(char(0x80 | (cp & 0x3F)));
    }
}

bool utf8_is_valid(std::string_view s) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    uint32_t cp;
    bool valid, truncated;
    for (size_t i = 0; i < s.size();) {
        if (p[i] < 0x80) {
            ++i;
            continue;
        }
        i += utf8_next(p, s.size(), i, cp, valid, truncated);
        if (!valid) return false;
    }
    return true;
}

std::string utf8_lossy(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 8);
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    uint32_t cp;
    bool valid, truncated;
    for (size_t i = 0; i < s.size();) {
        const size_t k = utf8_next(p, s.size(), i, cp, valid, truncated);
        if (valid) {
            out.append(s.data() + i, k);
        } else {
            utf8_append(out, k_replacement);
        }
        i += k;
    }
    return out;
}

std::vector<uint32_t> utf8_to_code_points(std::string_view s) {
    std::vector<uint32_t> out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    uint32_t cp;
    bool valid, truncated;
    for (size_t i = 0; i < s.size();) {
        i += utf8_next(p, s.size(), i, cp, valid, truncated);
        out.push_back(cp);
    }
    return out;
}

// ---- NFC ----------------------------------------------------------------------------------------

namespace {

constexpr uint32_t k_hangul_s = 0xAC00, k_hangul_l = 0x1100, k_hangul_v = 0x1161, k_hangul_t = 0x11A7;
constexpr uint32_t k_hangul_l_count = 19, k_hangul_v_count = 21, k_hangul_t_count = 28;
constexpr uint32_t k_hangul_n = k_hangul_v_count * k_hangul_t_count, k_hangul_s_count = k_hangul_l_count * k_hangul_n;

uint8_t combining_class(uint32_t cp) {
    const ud::CodePointPair* end = ud::k_combining_classes + ud::k_n_combining_classes;
    const ud::CodePointPair* it = std::upper_bound(ud::k_combining_classes, end, cp,
                                                   [](uint32_t c, const ud::CodePointPair& r) { return c < r.cp; });
    return it == ud::k_combining_classes ? 0 : uint8_t((it - 1)->value);
}

void decompose(uint32_t cp, std::vector<uint32_t>& out) {
    if (cp >= k_hangul_s && cp < k_hangul_s + k_hangul_s_count) {
        const uint32_t s = cp - k_hangul_s;
        out.push_back(k_hangul_l + s / k_hangul_n);
        out.push_back(k_hangul_v + (s % k_hangul_n) / k_hangul_t_count);
        if (s % k_hangul_t_count) out.push_back(k_hangul_t + s % k_hangul_t_count);
        return;
    }
    const ud::Decomposition* end = ud::k_decompositions + ud::k_n_decompositions;
    const ud::Decomposition* it =
        std::lower_bound(ud::k_decompositions, end, cp, [](const ud::Decomposition& d, uint32_t c) { return d.cp < c; });
    if (it == end || it->cp != cp) {
        out.push_back(cp);
        return;
    }
    decompose(it->first, out);  // decompositions nest (e.g. U+1E69 -> U+1E63 + U+0307)
    if (it->second) out.push_back(it->second);
}

bool compose_pair(uint32_t a, uint32_t b, uint32_t& out) {
    if (a >= k_hangul_l && a < k_hangul_l + k_hangul_l_count && b >= k_hangul_v && b < k_hangul_v + k_hangul_v_count) {
        out = k_hangul_s + ((a - k_hangul_l) * k_hangul_v_count + (b - k_hangul_v)) * k_hangul_t_count;
        return true;
    }
    if (a >= k_hangul_s && a < k_hangul_s + k_hangul_s_count && (a - k_hangul_s) % k_hangul_t_count == 0 &&
        b > k_hangul_t && b < k_hangul_t + k_hangul_t_count) {
        out = a + (b - k_hangul_t);
        return true;
    }
    const ud::Composition* end = ud::k_compositions + ud::k_n_compositions;
    const ud::Composition* it = std::lower_bound(ud::k_compositions, end, std::make_pair(a, b),
                                                 [](const ud::Composition& c, const std::pair<uint32_t, uint32_t>& k) {
                                                     return c.first != k.first ? c.first < k.first : c.second < k.second;
                                                 });
    if (it == end || it->first != a || it->second != b) return false;
    out = it->composite;
    return true;
}

}  // namespace

void nfc(std::vector<uint32_t>& cps) {
    // Below U+0300 nothing decomposes into or composes with a later code point, so such text is NFC.
    if (std::all_of(cps.begin(), cps.end(), [](uint32_t c) { return c < 0x300; })) return;
    std::vector<uint32_t> d;
    d.reserve(cps.size() + 8);
    for (uint32_t cp : cps) decompose(cp, d);
    std::vector<uint8_t> ccc(d.size());
    for (size_t i = 0; i < d.size(); ++i) ccc[i] = combining_class(d[i]);
    // Canonical ordering: stable sort of each run of non-starters by combining class.
    for (size_t i = 0; i < d.size();) {
        if (ccc[i] == 0) {
            ++i;
            continue;
        }
        size_t j = i;
        while (j < d.size() && ccc[j] != 0) ++j;
        std::vector<std::pair<uint8_t, uint32_t>> run;
        for (size_t k = i; k < j; ++k) run.emplace_back(ccc[k], d[k]);
        std::stable_sort(run.begin(), run.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
        for (size_t k = i; k < j; ++k) {
            ccc[k] = run[k - i].first;
            d[k] = run[k - i].second;
        }
        i = j;
    }
    // Canonical composition (UAX #15): a character combines with the last starter unless blocked.
    std::vector<uint32_t> out;
    out.reserve(d.size());
    std::vector<uint8_t> out_ccc;
    out_ccc.reserve(d.size());
    long starter = -1;
    for (size_t i = 0; i < d.size(); ++i) {
        const uint32_t c = d[i];
        const uint8_t cc = ccc[i];
        if (starter >= 0) {
            const uint8_t last_cc = out_ccc.back();
            const bool adjacent = size_t(starter) == out.size() - 1;
            const bool blocked = !adjacent && (last_cc == 0 || last_cc >= cc);
            uint32_t composite;
            if (!blocked && compose_pair(out[size_t(starter)], c, composite)) {
                out[size_t(starter)] = composite;
                continue;
            }
        }
        if (cc == 0) starter = long(out.size());
        out.push_back(c);
        out_ccc.push_back(cc);
    }
    cps.swap(out);
}

}  // namespace glm::unicode
