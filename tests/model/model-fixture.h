// Loading a reference fixture (tests/fixtures/NAME: checkpoint + reference.json + .npy files made by
// scripts/make_fixtures.py with transformers) and running it on the CPU reference backend.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/checkpoint.h"
#include "engine/npy.h"
#include "engine/session.h"
#include "engine/weights.h"

struct ModelFixture {
    std::string dir;
    nlohmann::json ref;
    NpyArray logits;         // [sum of prompt lengths, vocab]
    NpyArray decode_logits;  // [prompts * steps, vocab]
    Checkpoint checkpoint;
    ModelWeights records;
    ModelHparams hp;
    std::unique_ptr<glm_backend> backend;
    glm_context ctx;
    ModelTensors tensors;
    glm_buffer* weights = nullptr;

    // Load fixture `name`; index_pattern overrides the config's F/S pattern when not empty.
    void load(const std::string& name, const std::string& index_pattern = "");
    // The same on a given backend (the CUDA tests pass theirs).
    void load_on(const std::string& name, std::unique_ptr<glm_backend> on, const std::string& index_pattern = "");
    std::unique_ptr<Session> session(SessionParams params) const;
    std::vector<int32_t> prompt(size_t i) const;
};

std::vector<std::string> fixture_names();  // every model fixture under tests/fixtures
// ||a - b|| / ||b|| over n values
double rel_error(const float* a, const float* b, size_t n);
