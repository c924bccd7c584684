#pragma once
#include <cmath>

#include "cuda/ops.cuh"

// The rope frequencies 1 / theta^(2j / n_rot), j < n_rot / 2, exactly as the CPU reference computes
// them (f32 pow, f32 reciprocal): the rope kernel and the fused rows share them bit for bit.
inline void rope_inv_freq(float theta, int n_rot, float* inv_freq) {
    for (int j = 0; j < n_rot / 2; ++j) inv_freq[j] = 1.0f / std::pow(theta, float(2 * j) / float(n_rot));
}
