// Map a bound checkpoint (zero-copy records) into runtime tensors placed in one weight buffer of a
// backend, and derive the graph's hyperparameters from the config.
#pragma once

#include <deque>
#include <string>
#include <vector>

#include "engine/checkpoint.h"
#include "engine/synthetic.h"
#include "engine/model.h"

// Hyperparameters for the graph; index_pattern (one F/S per layer, empty = the config's) overrides
// which layers run their own indexer.
Status make_hparams(const ModelConfig& config, const std::string& index_pattern, ModelHparams& out);

// One tensor-parallel rank's share of the weights. Split by heads: q_b, kv_b (rows) and o_proj
// (columns); by intermediate dimension: routed experts, the shared expert and dense MLPs (gate/up
// rows, down columns: every rank computes all selected experts partially, then one all-reduce);
// lm_head and the embedding by vocabulary rows (uneven shares allowed). Everything else (norms, q_a,
// kv_a, the indexer, the router, MTP's eh_proj) is replicated: it is small next to what is split, and
// replicating q_a/kv_a/the indexer avoids all-gathers on the decode path.
struct TpShard {
    int rank = 0;
    int n_ranks = 1;
};
// Whether the model can be split over n ranks (heads and intermediate sizes divisible; NVFP4
// column shares whole 16-element blocks). A usage error naming the dimension otherwise.
Status check_tp_split(const ModelConfig& config, const ModelWeights& ckpt, int n_ranks);
// The vocabulary rows [first, first + count) of lm_head held by a rank.
void vocab_share(int64_t n_vocab, TpShard shard, int64_t& first, int64_t& count);

// Bytes one rank's weights take on its device (layout of upload_weights).
size_t weight_buffer_bytes(const ModelConfig& config, const ModelWeights& ckpt, TpShard shard = {});
// One rank's weight tensors with shapes and no bytes (what graphs need for a memory estimate); returns
// the bytes they would take.
size_t map_weights_unplaced(const ModelWeights& ckpt, TpShard shard, glm_context& ctx, ModelTensors& out);

// Create the runtime tensors of one rank in ctx, allocate one weight buffer on backend and upload its
// share of every tensor (several threads read the shards ahead of the upload; a progress bar on a
// terminal when asked). Routed experts are stacked per layer ([in, out, E]); NVFP4 keeps its codes,
// block scales and a global scale per expert. synthetic_seed != 0: no bytes are read; every tensor
// is filled on the backend with seeded random values (glm_backend::tensor_fill_random), a function of
// (seed, tensor name, index in the whole tensor): any rank count holds shares of one model.
Status upload_weights(const ModelConfig& config, const ModelWeights& ckpt, glm_backend* backend,
                      glm_context& ctx, ModelTensors& out, glm_buffer** buffer, bool show_progress = false,
                      TpShard shard = {}, uint64_t synthetic_seed = 0);

// A checkpoint opened, bound and mapped into runtime tensors on one backend: what the engine and the
// tests share. open_model reads and checks (no device memory yet, so a memory plan can come
// between); upload_model places the weights; load_model does both.
struct RankWeights {
    glm_backend* backend = nullptr;
    glm_context ctx;
    ModelTensors tensors;
    glm_buffer* buffer = nullptr;
};
struct LoadedModel {
    Checkpoint checkpoint;          // empty for a synthetic model
    SyntheticCheckpoint synthetic;  // the layout of a synthetic model (no bytes)
    ModelWeights records;
    ModelHparams hp;
    std::deque<RankWeights> ranks;  // one per tensor-parallel rank (deque: stable addresses)
    uint64_t synthetic_seed = 0;    // != 0: records carry no bytes, weights are generated on the devices

    const ModelConfig& config() const { return synthetic_seed ? synthetic.config : checkpoint.config(); }
    // Rank 0's tensors: the whole model when there is one rank.
    const ModelTensors& tensors() const { return ranks.front().tensors; }
};
Status open_model(const std::string& dir, const std::string& index_pattern, LoadedModel& out);
// A synthetic model: config.json (+ hf_quant_config.json) only; weights generated from seed (>= 1).
Status open_synthetic_model(const std::string& dir, const std::string& index_pattern, uint64_t seed, LoadedModel& out);
// One rank per backend (backends.size() ranks); checks the split first.
Status upload_model(const std::vector<glm_backend*>& backends, bool show_progress, LoadedModel& model);
Status upload_model(glm_backend* backend, bool show_progress, LoadedModel& model);
Status load_model(const std::string& dir, const std::string& index_pattern, glm_backend* backend, LoadedModel& out);
