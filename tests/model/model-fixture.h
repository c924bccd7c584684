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
#include "ggml-like/tp.h"

// A model directory loaded on a backend (checkpoint, hparams, tensors: LoadedModel), with a
// helper to make sessions. The bundled model's tests use it directly.
struct TestModel : LoadedModel {
    std::unique_ptr<glm_backend> backend;
    // Load the model in dir on the backend (the CPU reference when on is null).
    void load_dir(const std::string& dir, std::unique_ptr<glm_backend> on = nullptr, const std::string& index_pattern = "");
    std::unique_ptr<Session> session(SessionParams params) const;
};

struct ModelFixture : TestModel {
    std::string dir;
    nlohmann::json ref;
    NpyArray logits;         // [sum of prompt lengths, vocab]
    NpyArray decode_logits;  // [prompts * steps, vocab]

    // Load fixture `name`; index_pattern overrides the config's F/S pattern when not empty.
    void load(const std::string& name, const std::string& index_pattern = "");
    // The same on a given backend (the CUDA tests pass theirs).
    void load_on(const std::string& name, std::unique_ptr<glm_backend> on, const std::string& index_pattern = "");
    std::vector<int32_t> prompt(size_t i) const;
};

// A model directory split over n tensor-parallel ranks, one backend each (CPU ranks through the host
// communicator unless a communicator is given).
struct TpTestModel {
    std::vector<std::unique_ptr<glm_backend>> backends;
    std::unique_ptr<glm_comm> comm;
    LoadedModel model;
    // backends.size() ranks; comm null: the host communicator. synthetic_seed != 0: only the config
    // of dir is read and every rank generates its share of the weights (--synthetic).
    Status load(const std::string& dir, std::vector<std::unique_ptr<glm_backend>> ranks,
                std::unique_ptr<glm_comm> communicator = nullptr, uint64_t synthetic_seed = 0);
    std::unique_ptr<Session> session(SessionParams params) const;
};

std::vector<std::string> fixture_names();
// Prefill prompt, then `steps` greedy tokens (host argmax); the logits each token was chosen from are
// appended to rows.
std::vector<int32_t> greedy_continuation(Session& s, const std::vector<int32_t>& prompt, int steps, int64_t vocab,
                                         std::vector<float>& rows);  // every model fixture under tests/fixtures
// Mean of -log softmax(logits[i])[ids[i + 1]] over the n - 1 next-token predictions of a sequence
// of n ids (logits: n rows of n_vocab), in double.
double mean_next_token_nll(const std::vector<float>& logits, const std::vector<int32_t>& ids, int64_t n_vocab);
// ||a - b|| / ||b|| over n values
double rel_error(const float* a, const float* b, size_t n);
