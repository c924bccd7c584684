// The scalar conversions of ggml-like/types.h against independent definitions (format-ref.h):
// every code decodes to the value its bit fields define, every value round-trips, narrowing
// rounds to the nearest representable value with ties to the even code, and NVFP4 rows dequantise
// as e2m1(code) * e4m3(block scale) * global scale.
#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

#include "ggml-like/types.h"
#include "tests/ops/format-ref.h"

namespace {

bool same_value(double a, double b) {
    if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
    return a == b && std::signbit(a) == std::signbit(b);
}

// Inputs that stress rounding for a format: every exact midpoint between neighbours (both signs),
// the f32 values just below and above it, every representable value, and random f32 values.
std::vector<float> rounding_inputs(const fmtref::Format& f, size_t n_random) {
    std::vector<float> xs;
    const auto& es = fmtref::table(f).entries;
    for (size_t i = 0; i + 1 < es.size(); ++i) {
        const float mid = float(0.5 * (es[i].first + es[i + 1].first));
        REQUIRE(double(mid) == 0.5 * (es[i].first + es[i + 1].first));  // midpoints are exact in f32
        for (float x : {mid, std::nextafter(mid, 0.0f), std::nextafter(mid, INFINITY), float(es[i].first)}) {
            xs.push_back(x);
            xs.push_back(-x);
        }
    }
    std::mt19937 gen(1234);
    std::uniform_int_distribution<uint32_t> bits;
    for (size_t i = 0; i < n_random; ++i) xs.push_back(glm_bits_to_f32(bits(gen)));  // any f32, NaN/Inf included
    for (float x : {0.0f, -0.0f, INFINITY, -INFINITY, NAN, 1e-45f, -1e-45f, 3.4e38f, 65504.0f, 65519.99f, 65520.0f,
                    448.0f, 449.0f, 464.0f, 465.0f, 1e9f, -1e9f, 0.0009765625f, 0.001953125f})
        xs.push_back(x);
    return xs;
}

}  // namespace

TEST_CASE("bf16: decode every code, round-trip, round to nearest even") {
    for (uint32_t c = 0; c < 65536; ++c) {
        CAPTURE(c);
        REQUIRE(same_value(glm_bf16_to_f32(uint16_t(c)), fmtref::decode(fmtref::BF16, c)));
        if (!std::isnan(fmtref::decode(fmtref::BF16, c))) REQUIRE(glm_f32_to_bf16(glm_bf16_to_f32(uint16_t(c))) == c);
    }
    for (float x : rounding_inputs(fmtref::BF16, 200000)) {
        CAPTURE(x);
        REQUIRE(same_value(glm_bf16_to_f32(glm_f32_to_bf16(x)), fmtref::round_to(fmtref::BF16, x)));
    }
}

TEST_CASE("f16: decode every code, round-trip, round to nearest even") {
    for (uint32_t c = 0; c < 65536; ++c) {
        CAPTURE(c);
        REQUIRE(same_value(glm_f16_to_f32(uint16_t(c)), fmtref::decode(fmtref::F16, c)));
        if (!std::isnan(fmtref::decode(fmtref::F16, c))) REQUIRE(glm_f32_to_f16(glm_f16_to_f32(uint16_t(c))) == c);
    }
    for (float x : rounding_inputs(fmtref::F16, 200000)) {
        CAPTURE(x);
        REQUIRE(same_value(glm_f16_to_f32(glm_f32_to_f16(x)), fmtref::round_to(fmtref::F16, x)));
    }
}

TEST_CASE("e4m3: decode every code, round-trip, round to nearest even, saturate") {
    for (uint32_t c = 0; c < 256; ++c) {
        CAPTURE(c);
        REQUIRE(same_value(glm_e4m3_to_f32(uint8_t(c)), fmtref::decode(fmtref::E4M3, c)));
        if (!std::isnan(fmtref::decode(fmtref::E4M3, c))) REQUIRE(glm_f32_to_e4m3(glm_e4m3_to_f32(uint8_t(c))) == c);
    }
    CHECK(glm_f32_to_e4m3(NAN) == 0x7f);
    CHECK(glm_f32_to_e4m3(INFINITY) == 0x7e);   // saturating: +448
    CHECK(glm_f32_to_e4m3(-INFINITY) == 0xfe);  // -448
    for (float x : rounding_inputs(fmtref::E4M3, 200000)) {
        CAPTURE(x);
        REQUIRE(same_value(glm_e4m3_to_f32(glm_f32_to_e4m3(x)), fmtref::round_to(fmtref::E4M3, x)));
    }
}

TEST_CASE("e2m1 table") {
    for (uint32_t c = 0; c < 16; ++c) {
        CAPTURE(c);
        CHECK(same_value(glm_e2m1_to_f32(uint8_t(c)), fmtref::decode(fmtref::E2M1, c)));
    }
}

TEST_CASE("nvfp4 row dequant matches e2m1 * e4m3 * global") {
    std::mt19937 gen(77);
    for (int64_t n : {16, 32, 48, 256}) {
        std::vector<uint8_t> codes(size_t(n / 2)), scales(size_t(n / 16));
        for (uint8_t& c : codes) c = uint8_t(gen());
        for (uint8_t& s : scales) {
            s = uint8_t(gen() & 0x7f);
            if (s == 0x7f) s = 0x7e;  // not NaN
        }
        const float global = 0.0123f;
        std::vector<float> got(static_cast<size_t>(n));
        glm_nvfp4_row_to_f32(codes.data(), scales.data(), global, got.data(), n);
        for (int64_t i = 0; i < n; ++i) {
            CAPTURE(i);
            const uint8_t code = (i & 1) ? uint8_t(codes[size_t(i / 2)] >> 4) : uint8_t(codes[size_t(i / 2)] & 0xf);
            // exact product in double (2 x 4 x 24 significant bits), rounded once to f32
            const double expected = fmtref::decode(fmtref::E2M1, code) * fmtref::decode(fmtref::E4M3, scales[size_t(i / 16)]) * double(global);
            CHECK(same_value(got[size_t(i)], double(float(expected))));
        }
    }
    CHECK(glm_row_bytes(GLM_TYPE_NVFP4, 32) == 16);
    CHECK(glm_type_block_elements(GLM_TYPE_NVFP4) == 2);
}
