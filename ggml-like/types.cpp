#include "ggml-like/types.h"

#include <cmath>

#include "ggml-like/common.h"

const char* glm_type_name(glm_type type) {
    switch (type) {
        case GLM_TYPE_F32: return "f32";
        case GLM_TYPE_F16: return "f16";
        case GLM_TYPE_BF16: return "bf16";
        case GLM_TYPE_F8_E4M3: return "f8_e4m3";
        case GLM_TYPE_I32: return "i32";
        case GLM_TYPE_U8: return "u8";
        case GLM_TYPE_NVFP4: return "nvfp4";
        default: return "?";
    }
}

int64_t glm_type_block_elements(glm_type type) { return type == GLM_TYPE_NVFP4 ? 2 : 1; }

size_t glm_type_block_bytes(glm_type type) {
    switch (type) {
        case GLM_TYPE_F32: case GLM_TYPE_I32: return 4;
        case GLM_TYPE_F16: case GLM_TYPE_BF16: return 2;
        case GLM_TYPE_F8_E4M3: case GLM_TYPE_U8: case GLM_TYPE_NVFP4: return 1;
        default: GLM_ABORT("bad type {}", int(type));
    }
}

size_t glm_row_bytes(glm_type type, int64_t n) {
    const int64_t blk = glm_type_block_elements(type);
    GLM_ASSERT(n % blk == 0);
    return size_t(n / blk) * glm_type_block_bytes(type);
}

bool glm_type_is_float(glm_type type) {
    return type == GLM_TYPE_F32 || type == GLM_TYPE_F16 || type == GLM_TYPE_BF16 || type == GLM_TYPE_F8_E4M3;
}

float glm_f16_to_f32(uint16_t h) {
    const uint32_t sign = uint32_t(h & 0x8000) << 16;
    const uint32_t exp = (h >> 10) & 0x1f;
    const uint32_t man = h & 0x3ff;
    if (exp == 0) {
        const float mag = std::ldexp(float(man), -24);  // subnormal (or zero)
        return sign ? -mag : mag;
    }
    if (exp == 31) return glm_bits_to_f32(sign | 0x7f800000u | (man << 13));
    return glm_bits_to_f32(sign | ((exp + 112) << 23) | (man << 13));
}

uint16_t glm_f32_to_f16(float f) {
    const uint32_t bits = glm_f32_to_bits(f);
    const uint16_t sign = uint16_t((bits >> 16) & 0x8000);
    const float a = std::fabs(f);
    if (std::isnan(f)) return uint16_t(sign | 0x7e00);
    if (a >= 65520.0f) return uint16_t(sign | 0x7c00);  // rounds to infinity
    if (a < 6.103515625e-05f) {
        // subnormal: value = m * 2^-24, round to nearest even
        const float m = a * 16777216.0f;
        return uint16_t(sign | uint16_t(std::nearbyint(m)));
    }
    uint32_t abits = bits & 0x7fffffffu;
    abits += 0xfffu + ((abits >> 13) & 1u);
    const uint32_t exp = (abits >> 23) - 112;
    return uint16_t(sign | (exp << 10) | ((abits >> 13) & 0x3ff));
}

float glm_e4m3_to_f32(uint8_t v) {
    const bool neg = v & 0x80;
    const int exp = (v >> 3) & 0xf;
    const int man = v & 0x7;
    float mag;
    if (exp == 15 && man == 7) return std::nanf("");
    if (exp == 0) mag = std::ldexp(float(man), -9);
    else mag = std::ldexp(1.0f + float(man) / 8.0f, exp - 7);
    return neg ? -mag : mag;
}

uint8_t glm_f32_to_e4m3(float f) {
    if (std::isnan(f)) return 0x7f;
    const uint8_t sign = std::signbit(f) ? 0x80 : 0;
    float a = std::fabs(f);
    if (a >= 448.0f) return uint8_t(sign | 0x7e);  // saturate (E4M3FN has no infinity)
    // Find the exponent bucket; below 2^-6 values are subnormal with step 2^-9.
    int exp;
    std::frexp(a, &exp);  // a = m * 2^exp, m in [0.5, 1)
    int e = exp - 1;      // a in [2^e, 2^(e+1))
    if (e < -6) e = -6;
    const float step = std::ldexp(1.0f, e - 3);
    const float q = std::nearbyint(a / step);  // current rounding mode: nearest even
    float r = q * step;
    if (r >= 448.0f) return uint8_t(sign | 0x7e);
    if (r == 0.0f) return sign;
    int re;
    std::frexp(r, &re);
    re -= 1;
    if (re < -6) return uint8_t(sign | uint8_t(std::lround(r / std::ldexp(1.0f, -9))));
    const int man = int(std::lround(r / std::ldexp(1.0f, re - 3))) - 8;
    return uint8_t(sign | uint8_t((re + 7) << 3) | uint8_t(man));
}

void glm_nvfp4_row_to_f32(const uint8_t* codes, const uint8_t* scales, float global_scale, float* dst,
                          int64_t n) {
    GLM_ASSERT(n % GLM_NVFP4_BLOCK == 0);
    for (int64_t b = 0; b < n / GLM_NVFP4_BLOCK; ++b) {
        // E2M1 x E4M3 is exact in f32; the global scale is applied last, as ModelOpt's dequant does.
        const float block_scale = glm_e4m3_to_f32(scales[b]);
        for (int64_t j = 0; j < GLM_NVFP4_BLOCK / 2; ++j) {
            const uint8_t byte = codes[b * 8 + j];
            dst[b * 16 + 2 * j] = glm_e2m1_to_f32(byte & 0xf) * block_scale * global_scale;
            dst[b * 16 + 2 * j + 1] = glm_e2m1_to_f32(byte >> 4) * block_scale * global_scale;
        }
    }
}

void glm_row_to_f32(glm_type type, const void* src, float* dst, int64_t n) {
    switch (type) {
        case GLM_TYPE_F32: std::memcpy(dst, src, size_t(n) * 4); return;
        case GLM_TYPE_F16: {
            const uint16_t* s = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = glm_f16_to_f32(s[i]);
            return;
        }
        case GLM_TYPE_BF16: {
            const uint16_t* s = static_cast<const uint16_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = glm_bf16_to_f32(s[i]);
            return;
        }
        case GLM_TYPE_F8_E4M3: {
            const uint8_t* s = static_cast<const uint8_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = glm_e4m3_to_f32(s[i]);
            return;
        }
        case GLM_TYPE_I32: {
            const int32_t* s = static_cast<const int32_t*>(src);
            for (int64_t i = 0; i < n; ++i) dst[i] = float(s[i]);
            return;
        }
        default: GLM_ABORT("glm_row_to_f32: unsupported type {}", glm_type_name(type));
    }
}

void glm_row_from_f32(glm_type type, const float* src, void* dst, int64_t n) {
    switch (type) {
        case GLM_TYPE_F32: std::memcpy(dst, src, size_t(n) * 4); return;
        case GLM_TYPE_F16: {
            uint16_t* d = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = glm_f32_to_f16(src[i]);
            return;
        }
        case GLM_TYPE_BF16: {
            uint16_t* d = static_cast<uint16_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = glm_f32_to_bf16(src[i]);
            return;
        }
        case GLM_TYPE_F8_E4M3: {
            uint8_t* d = static_cast<uint8_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = glm_f32_to_e4m3(src[i]);
            return;
        }
        case GLM_TYPE_I32: {  // glm_cast: integral values below 2^24, rounded to nearest as on CUDA
            int32_t* d = static_cast<int32_t*>(dst);
            for (int64_t i = 0; i < n; ++i) d[i] = int32_t(std::lrintf(src[i]));
            return;
        }
        default: GLM_ABORT("glm_row_from_f32: unsupported type {}", glm_type_name(type));
    }
}
