// Independent definitions of the storage formats, for checking ggml-like's conversions and for
// computing expected results of narrowing copies. Nothing here calls ggml-like: decoders are
// written from the format definitions (sign, exponent bits, bias, mantissa bits) and encoders
// enumerate every representable value and pick the nearest, ties to the even code (even mantissa).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <utility>
#include <vector>

namespace fmtref {

// A binary floating-point format: 1 sign bit, E exponent bits, M mantissa bits.
// has_inf: IEEE-style (all-ones exponent = Inf/NaN); otherwise OCP E4M3FN style (only
// exponent and mantissa all ones is NaN, no infinities, saturating encoder).
struct Format {
    int exp_bits, man_bits, bias;
    bool has_inf;
    bool has_nan;
};

constexpr Format BF16{8, 7, 127, true, true};
constexpr Format F16{5, 10, 15, true, true};
constexpr Format E4M3{4, 3, 7, false, true};
constexpr Format E2M1{2, 1, 1, false, false};

inline int code_bits(const Format& f) { return 1 + f.exp_bits + f.man_bits; }

// Decode a code (the low code_bits bits of c) to double.
inline double decode(const Format& f, uint32_t c) {
    const uint32_t sign = (c >> (f.exp_bits + f.man_bits)) & 1u;
    const uint32_t e = (c >> f.man_bits) & ((1u << f.exp_bits) - 1);
    const uint32_t m = c & ((1u << f.man_bits) - 1);
    const uint32_t e_max = (1u << f.exp_bits) - 1, m_max = (1u << f.man_bits) - 1;
    double mag;
    if (f.has_inf && e == e_max) {
        if (m != 0) return std::numeric_limits<double>::quiet_NaN();
        mag = std::numeric_limits<double>::infinity();
    } else if (!f.has_inf && f.has_nan && e == e_max && m == m_max) {
        return std::numeric_limits<double>::quiet_NaN();
    } else if (e == 0) {
        mag = std::ldexp(double(m), 1 - f.bias - f.man_bits);
    } else {
        mag = std::ldexp(1.0 + std::ldexp(double(m), -f.man_bits), int(e) - f.bias);
    }
    return sign ? -mag : mag;
}

// Table of the non-negative finite values of a format (ascending, with their codes), plus, for
// IEEE formats, a virtual entry 2^(emax+1) carrying the infinity code (even), so that values at or
// beyond the midpoint above the largest finite round to infinity by the same nearest/even rule.
struct Table {
    Format f;
    std::vector<std::pair<double, uint32_t>> entries;
};

inline Table make_table(const Format& f) {
    Table t{f, {}};
    const uint32_t n = 1u << (f.exp_bits + f.man_bits);  // codes with the sign bit clear
    double max_finite = 0;
    for (uint32_t c = 0; c < n; ++c) {
        const double v = decode(f, c);
        if (std::isnan(v) || std::isinf(v)) continue;
        t.entries.push_back({v, c});
        max_finite = std::max(max_finite, v);
    }
    std::sort(t.entries.begin(), t.entries.end());
    if (f.has_inf) {
        int e;
        std::frexp(max_finite, &e);  // max_finite in [2^(e-1), 2^e)
        const uint32_t inf_code = ((1u << f.exp_bits) - 1) << f.man_bits;
        t.entries.push_back({std::ldexp(1.0, e), inf_code});
    }
    return t;
}

inline const Table& table(const Format& f) {
    static const Table bf16 = make_table(BF16), f16 = make_table(F16), e4m3 = make_table(E4M3),
                       e2m1 = make_table(E2M1);
    if (f.exp_bits == 8) return bf16;
    if (f.exp_bits == 5) return f16;
    if (f.exp_bits == 4) return e4m3;
    return e2m1;
}

// Round x to the nearest representable value, ties to the even code. NaN -> canonical NaN code
// (bf16 0x7fc0, f16 0x7e00, e4m3 0x7f). Saturating formats clamp to the largest finite value.
inline uint32_t encode(const Format& f, double x) {
    const uint32_t sign_bit = 1u << (f.exp_bits + f.man_bits);
    if (std::isnan(x)) {
        if (f.exp_bits == 8) return 0x7fc0;
        if (f.exp_bits == 5) return 0x7e00;
        return 0x7f;
    }
    const uint32_t sign = std::signbit(x) ? sign_bit : 0;
    const double a = std::fabs(x);
    const Table& t = table(f);
    const auto& es = t.entries;
    if (a >= es.back().first) return sign | es.back().second;  // saturate, or infinity
    auto it = std::lower_bound(es.begin(), es.end(), std::make_pair(a, uint32_t(0)));
    // es[i-1].first < a <= es[i].first
    if (it == es.begin()) return sign | it->second;
    const auto hi = *it, lo = *(it - 1);
    const double dlo = a - lo.first, dhi = hi.first - a;
    uint32_t code;
    if (dlo < dhi) code = lo.second;
    else if (dhi < dlo) code = hi.second;
    else code = (lo.second & 1u) == 0 ? lo.second : hi.second;
    return sign | code;
}

inline double round_to(const Format& f, double x) { return decode(f, encode(f, x)); }

}  // namespace fmtref
