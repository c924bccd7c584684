// .npy files (NumPy format 1.0-3.0), float32 and int32, C order, little-endian: the exchange format
// for reference tensors in tests, --dump-tensors and --logits-out.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ggml-like/common.h"

struct NpyArray {
    std::vector<int64_t> shape;
    bool is_int32 = false;           // element type: int32 when true, float32 otherwise
    std::vector<float> f32;          // filled when !is_int32
    std::vector<int32_t> i32;        // filled when is_int32
    int64_t numel() const;
};

Status npy_read(const std::string& path, NpyArray& out);
// Written atomically (temp file + rename).
Status npy_write_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape);
Status npy_write_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape);
