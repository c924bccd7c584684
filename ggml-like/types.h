// Element types of ggml-like tensors and their scalar conversions. The conversions here are the
// definitions every backend is checked against (exact for E2M1 x E4M3, round-to-nearest-even for
// the narrowing casts).
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>

enum glm_type : int32_t {
    GLM_TYPE_F32 = 0,
    GLM_TYPE_F16,
    GLM_TYPE_BF16,
    GLM_TYPE_F8_E4M3,  // OCP E4M3FN: no infinities, 0x7f/0xff are NaN, max 448
    GLM_TYPE_I32,
    GLM_TYPE_U8,
    // ModelOpt NVFP4: the tensor's data holds packed E2M1 codes, two per byte, low nibble = even
    // element, rows of ne0/2 bytes. Its companions (glm_tensor::block_scale, ::global_scale) hold
    // one E4M3 scale per 16 elements of a row and one F32 scale per matrix (per ne2 slice).
    // value = e2m1(code) * e4m3(block_scale) * global_scale.
    GLM_TYPE_NVFP4,
    GLM_TYPE_COUNT,
};

constexpr int64_t GLM_NVFP4_BLOCK = 16;  // elements sharing one E4M3 block scale

const char* glm_type_name(glm_type type);
// Elements per storage block and bytes per block (NVFP4: 2 elements per byte; scales are separate).
int64_t glm_type_block_elements(glm_type type);
size_t glm_type_block_bytes(glm_type type);
// Bytes of a row of n elements (n must be a whole number of blocks).
size_t glm_row_bytes(glm_type type, int64_t n);
bool glm_type_is_float(glm_type type);  // F32, F16, BF16, F8_E4M3

// ---- scalar conversions -----------------------------------------------------------------------
inline float glm_bits_to_f32(uint32_t bits) {
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
inline uint32_t glm_f32_to_bits(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    return bits;
}

inline float glm_bf16_to_f32(uint16_t h) { return glm_bits_to_f32(uint32_t(h) << 16); }
inline uint16_t glm_f32_to_bf16(float f) {
    uint32_t bits = glm_f32_to_bits(f);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return uint16_t((bits >> 16) | 0x40);  // quiet NaN
    bits += 0x7fffu + ((bits >> 16) & 1u);  // round to nearest even
    return uint16_t(bits >> 16);
}

float glm_f16_to_f32(uint16_t h);
uint16_t glm_f32_to_f16(float f);
float glm_e4m3_to_f32(uint8_t v);
uint8_t glm_f32_to_e4m3(float f);  // round to nearest even, saturating to +-448, NaN -> 0x7f

// E2M1 magnitudes for codes 0..7; bit 3 is the sign.
inline float glm_e2m1_to_f32(uint8_t code) {
    static const float table[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                                    -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
    return table[code & 0xf];
}

// Dequantise n elements (n % 16 == 0) of one NVFP4 row: codes (n/2 bytes), scales (n/16 bytes).
void glm_nvfp4_row_to_f32(const uint8_t* codes, const uint8_t* scales, float global_scale, float* dst,
                          int64_t n);
// Convert n elements of a non-block type to f32.
void glm_row_to_f32(glm_type type, const void* src, float* dst, int64_t n);
// Convert n f32 values to a non-block float type (F32, F16, BF16, F8_E4M3), or to I32 (glm_cast).
void glm_row_from_f32(glm_type type, const float* src, void* dst, int64_t n);
