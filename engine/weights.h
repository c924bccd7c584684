// Map a bound checkpoint (zero-copy records) into runtime tensors placed in one weight buffer of a
// backend, and derive the graph's hyperparameters from the config.
#pragma once

#include <string>

#include "engine/checkpoint.h"
#include "engine/model.h"

// Hyperparameters for the graph; index_pattern (one F/S per layer, empty = the config's) overrides
// which layers run their own indexer.
Status make_hparams(const ModelConfig& config, const std::string& index_pattern, ModelHparams& out);

// Bytes the weights take on the device (layout of upload_weights).
size_t weight_buffer_bytes(const ModelConfig& config, const ModelWeights& ckpt);

// Create the runtime tensors in ctx, allocate one weight buffer on backend and upload every tensor
// (several threads read the shards ahead of the upload; a progress bar on a terminal when asked).
// Routed experts are stacked per layer ([in, out, E]); NVFP4 keeps its codes, block scales and a
// global scale per expert.
Status upload_weights(const ModelConfig& config, const ModelWeights& ckpt, glm_backend* backend,
                      glm_context& ctx, ModelTensors& out, glm_buffer** buffer, bool show_progress = false);

// A checkpoint opened, bound and mapped into runtime tensors on one backend: what the engine and the
// tests share. open_model reads and checks (no device memory yet, so a memory plan can come
// between); upload_model places the weights; load_model does both.
struct LoadedModel {
    Checkpoint checkpoint;
    ModelWeights records;
    ModelHparams hp;
    glm_context ctx;
    ModelTensors tensors;
    glm_buffer* weights = nullptr;
};
Status open_model(const std::string& dir, const std::string& index_pattern, LoadedModel& out);
Status upload_model(glm_backend* backend, bool show_progress, LoadedModel& model);
Status load_model(const std::string& dir, const std::string& index_pattern, glm_backend* backend, LoadedModel& out);
