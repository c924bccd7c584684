// A checkpoint without weights: every tensor a real checkpoint of a config.json would hold, with
// the same names, shapes, dtypes and formats (NVFP4 where the quantisation config says so), but no
// bytes behind them. Speed depends only on shapes and dtypes, so full-size speed runs use this
// with weights generated on the devices (glm_backend::tensor_fill_random) instead of read from disk.
//
//   SyntheticCheckpoint s;
//   GLM_TRY(open_synthetic(dir, s));               // config.json (+ hf_quant_config.json) only
//   const LinearWeight& g = s.weights.layers[3].experts[7].gate;  // synthetic: data == nullptr
//   // place every tensor as for a real checkpoint, then fill it on the device
#pragma once

#include <cstdint>
#include <deque>
#include <string>

#include "engine/checkpoint.h"

struct SyntheticCheckpoint {
    std::string dir;
    ModelConfig config;
    // Every tensor the shards would hold, in catalogue order. A deque, because `weights` points at
    // its elements: growing it never moves them, and moving the whole object keeps them in place.
    std::deque<TensorRecord> records;
    // What Checkpoint::bind gives for a real checkpoint of this config: per-expert layout, every
    // LinearWeight and TensorRecord marked synthetic, data / scales null, nbytes as on disk.
    ModelWeights weights;

    SyntheticCheckpoint() = default;
    SyntheticCheckpoint(SyntheticCheckpoint&&) = default;
    SyntheticCheckpoint& operator=(SyntheticCheckpoint&&) = default;
    // A copy would point into the original's records.
    SyntheticCheckpoint(const SyntheticCheckpoint&) = delete;
    SyntheticCheckpoint& operator=(const SyntheticCheckpoint&) = delete;
};

// Read DIR/config.json (+ generation_config.json, hf_quant_config.json) and lay out the tensors of
// the checkpoint it describes. A Linear is NVFP4 exactly when the quantisation config is present and
// its exclude_modules do not match it (the rule ModelOpt exports follow); everything else is BF16,
// except the tensors real exports keep in F32 (router score bias, indexer k_norm). Optional tensors
// glmrun never reads (the MTP layer's own embed_tokens and shared_head.head) are left out; the MTP
// layers the config announces are included.
Status open_synthetic(const std::string& dir, SyntheticCheckpoint& out);

// Bytes the safetensors shards of this checkpoint would hold (tensor data only, no headers).
uint64_t synthetic_bytes(const SyntheticCheckpoint& checkpoint);
