// A session: one conversation's KV cache and activation arena on one backend, and the evaluation
// of token batches through the forward graph. Buffers are allocated once in init(); eval() only
// plans into them.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/model.h"

struct SessionParams {
    int64_t n_ctx = 4096;
    int64_t n_ubatch = 512;          // prefill chunk: longer prompts are evaluated in pieces
    glm_type kv_type = GLM_TYPE_F32;
    AttnMode attn = AttnMode::dsa;
    bool logits_all = false;         // keep logits of every position (tests, --logits-out of prompts)
    int64_t n_verify = 0;            // largest eval_verify batch (speculative decoding: drafts + 1; 0 = none)
    std::vector<std::string> dump_names;  // intermediates to write as .npy (--dump-tensors)
    std::string dump_dir = ".";
};

// Discrete choices of one evaluation, read back for comparisons with the reference.
struct EvalCapture {
    // [layer][position] -> selected key slots (empty when the layer attended densely)
    std::vector<std::vector<std::vector<int32_t>>> topk;
    // [layer][position] -> routed expert ids (empty for dense layers)
    std::vector<std::vector<std::vector<int32_t>>> experts;
    // [layer] -> residual stream after the layer, [n_embd * n_tokens]
    std::vector<std::vector<float>> layer_out;
    // final-norm hidden state of every position, [n_embd * n_tokens] (what the MTP draft consumes)
    std::vector<float> hidden;
};

class Session {
public:
    Session(glm_backend* backend, const ModelHparams& hp, const ModelTensors& weights, const SessionParams& params);
    Status init();
    // Evaluate n tokens at the current position. logits receives n_vocab floats (the last position),
    // or n_vocab * n when logits_all. capture (optional) receives the discrete choices.
    // hidden (optional) receives the final-norm hidden state of every position, [n_embd * n], without
    // the cost of the per-layer capture.
    Status eval(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture = nullptr,
                std::vector<float>* hidden = nullptr);
    // Speculative verify: n <= params.n_verify tokens in one graph; logits of every position
    // ([n_vocab * n]) and the final-norm hidden state of every position ([n_embd * n]).
    Status eval_verify(const int32_t* tokens, int64_t n, std::vector<float>* logits, std::vector<float>* hidden);
    // MTP draft step: n tokens at positions pos.., each with the target's final-norm hidden state of
    // the position before it ([n_embd * n]); logits (n_vocab per token) and the draft's hidden state.
    // Requires a model with an MTP layer; writes the MTP layer's own caches.
    Status eval_draft(const int32_t* tokens, const float* prev_hidden, int64_t n, int64_t pos,
                      std::vector<float>* logits, std::vector<float>* hidden = nullptr);
    bool has_draft() const { return weights_.has_mtp; }
    int64_t n_past() const { return n_past_; }
    int64_t n_ctx() const { return params_.n_ctx; }
    void reset() { n_past_ = 0; }
    // Forget everything after the first n tokens (the cache rows past n are simply overwritten later).
    void truncate(int64_t n) { n_past_ = std::min(n_past_, n); }
    const SessionParams& params() const { return params_; }
    const ModelHparams& hparams() const { return hp_; }
    size_t kv_bytes() const { return kv_bytes_; }
    size_t arena_bytes() const { return arena_ ? arena_->size : 0; }

private:
    Status check_tokens(const int32_t* tokens, int64_t n) const;
    Status eval_chunk(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture,
                      std::vector<float>* hidden, bool all_logits);
    // Place fg in the arena, write its inputs (positions pos..pos+n-1), compute and wait.
    Status run(const ForwardGraph& fg, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden);
    void read_f32(const glm_tensor* t, std::vector<float>& out, bool append) const;
    Status dump(const glm_context& ctx);

    glm_backend* backend_;
    ModelHparams hp_;
    const ModelTensors& weights_;
    SessionParams params_;
    glm_context cache_ctx_;
    KvCache kv_;
    glm_buffer* kv_buffer_ = nullptr;
    glm_buffer* arena_ = nullptr;
    size_t kv_bytes_ = 0;
    int64_t n_past_ = 0;
};
