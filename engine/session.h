// A session: one conversation's KV cache and activation arena on one backend, and the evaluation
// of token batches through the forward graph. Buffers are allocated once in init(); eval() only
// plans into them.
#pragma once

#include <deque>
#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "engine/model.h"
#include "ggml-like/arena.h"
#include "ggml-like/tp.h"

struct SessionParams {
    int64_t n_ctx = 4096;
    int64_t n_ubatch = 512;          // prefill chunk: longer prompts are evaluated in pieces
    glm_type kv_type = GLM_TYPE_F32;
    AttnMode attn = AttnMode::dsa;
    bool logits_all = false;         // keep logits of every position (tests, --logits-out of prompts)
    // The largest batch eval() is given an EvalCapture for (0: none): capture keeps every layer's
    // outputs alive to the end of the graph, room the arena otherwise does not reserve (1 GiB for a
    // 512-token chunk of the full-size model).
    int64_t n_capture = 0;
    int64_t n_verify = 0;            // largest eval_verify batch (speculative decoding: drafts + 1; 0 = none)
    // Decode, verify and MTP draft steps of up to n_verify tokens replay graphs recorded once (CUDA
    // graphs, one per step kind and size) built for the whole context, when every rank's backend can
    // record; false (--no-graph-replay): a graph is built and launched node by node for every step.
    bool replay_decode = true;
    // Tensor parallelism: split the latent and indexer caches by position over the ranks (model.h,
    // KvCache) instead of keeping a copy on each. Ignored with one rank.
    bool kv_split = false;
    std::vector<std::string> dump_names;  // intermediates to write as .npy (--dump-tensors)
    std::string dump_dir = ".";
};

// Discrete choices of one evaluation, read back for comparisons with the reference.
struct EvalCapture {
    // [layer][position] -> selected key slots (empty when the layer attended densely, or the cache is
    // split over ranks: rank 0 selects only among its own positions)
    std::vector<std::vector<std::vector<int32_t>>> topk;
    // [layer][position] -> routed expert ids (empty for dense layers)
    std::vector<std::vector<std::vector<int32_t>>> experts;
    // [layer] -> residual stream after the layer, [n_embd * n_tokens]
    std::vector<std::vector<float>> layer_out;
    // final-norm hidden state of every position, [n_embd * n_tokens] (what the MTP draft consumes)
    std::vector<float> hidden;
};

// One tensor-parallel rank of a session: its backend and its share of the weights.
struct SessionRank {
    glm_backend* backend = nullptr;
    const ModelTensors* weights = nullptr;
};

class Session {
public:
    Session(glm_backend* backend, const ModelHparams& hp, const ModelTensors& weights, const SessionParams& params);
    // Tensor parallelism: one rank per entry (weights split as engine/weights.h describes); comm sums
    // the partial results (may be null with one rank). hp is the whole model's.
    Session(std::vector<SessionRank> ranks, glm_comm* comm, const ModelHparams& hp, const SessionParams& params);
    Status init();
    // The activation arena rank 0 would allocate (bytes), without allocating anything: the weights
    // may be unplaced (a measuring pass) and the backends null. For memory plans.
    size_t arena_estimate();
    // Evaluate n tokens at the current position. logits receives n_vocab floats (the last position),
    // or n_vocab * n when logits_all. capture (optional) receives the discrete choices.
    // hidden (optional) receives the final-norm hidden state of every position, [n_embd * n], without
    // the cost of the per-layer capture.
    Status eval(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture = nullptr,
                std::vector<float>* hidden = nullptr);
    // Speculative verify: n <= params.n_verify tokens in one graph; logits of every position
    // ([n_vocab * n]) and the final-norm hidden state of every position ([n_embd * n]).
    Status eval_verify(const int32_t* tokens, int64_t n, std::vector<float>* logits, std::vector<float>* hidden);
    // The same for greedy sampling without penalties: ids receives the id of the largest logit of every
    // position (n ids, first maximum wins, as argmax()); only (max, id) pairs come back, not the logits.
    Status eval_verify_greedy(const int32_t* tokens, int64_t n, std::vector<int32_t>* ids, std::vector<float>* hidden);
    // Greedy step: evaluate n tokens and return the id of the largest logit of the last position (first
    // maximum wins, as argmax()). Only (max, id) pairs come back from the device, not the logits.
    Status eval_greedy(const int32_t* tokens, int64_t n, int32_t* next);
    // MTP draft step: n tokens at positions pos.., each with the target's final-norm hidden state of
    // the position before it ([n_embd * n]); logits (n_vocab per token) and the draft's hidden state.
    // Requires a model with an MTP layer; writes the MTP layer's own caches.
    Status eval_draft(const int32_t* tokens, const float* prev_hidden, int64_t n, int64_t pos,
                      std::vector<float>* logits, std::vector<float>* hidden = nullptr);
    // The same with the id of the largest logit of every token (n ids) instead of the logits.
    Status eval_draft_greedy(const int32_t* tokens, const float* prev_hidden, int64_t n, int64_t pos,
                             std::vector<int32_t>* ids, std::vector<float>* hidden = nullptr);
    bool has_draft() const { return ranks_.front().weights->has_mtp; }
    int n_ranks() const { return int(ranks_.size()); }
    int64_t n_past() const { return n_past_; }
    int64_t n_ctx() const { return params_.n_ctx; }
    void reset() { n_past_ = 0; }
    // Forget everything after the first n tokens (the cache rows past n are simply overwritten later).
    void truncate(int64_t n) { n_past_ = std::min(n_past_, n); }
    const SessionParams& params() const { return params_; }
    // Turn the recorded graphs off (profiling: node timers need node-by-node launches) or on.
    void set_replay_decode(bool on) { params_.replay_decode = on; }
    // How many step graphs have been recorded so far (tests: recording really happened).
    size_t recorded_graphs() const { return recorded_.size(); }
    // Host time of replayed steps since the last reset: writing the inputs and launching every rank's
    // graph (the decode step reads its token before the next launch, so this is on the critical path),
    // and then waiting for the GPUs.
    struct ReplayTime {
        double launch_s = 0, wait_s = 0;
        int64_t steps = 0;
    };
    const ReplayTime& replay_time() const { return replay_time_; }
    void reset_replay_time() { replay_time_ = {}; }
    const ModelHparams& hparams() const { return hp_; }
    size_t kv_bytes() const { return ranks_.front().kv_bytes; }  // per rank
    bool kv_split() const { return ranks_.front().kv.split; }
    size_t arena_bytes() const { return ranks_.front().arena ? ranks_.front().arena->size : 0; }

private:
    struct Rank {
        glm_backend* backend = nullptr;
        const ModelTensors* weights = nullptr;
        int index = 0;               // rank number
        ModelHparams hp;             // the rank's share (heads)
        int32_t vocab_offset = 0;    // first lm_head row of this rank
        glm_context cache_ctx;
        KvCache kv;
        glm_buffer* kv_buffer = nullptr;
        glm_buffer* arena = nullptr;
        size_t kv_bytes = 0;
    };
    struct Reference;
    // One graph per rank for one evaluation.
    struct Step {
        std::deque<glm_context> ctx;
        std::vector<ForwardGraph> fg;
        // When the step's tensor sizes depend on the context length (a DSA selection scores every
        // cached row): the same step built at the end of the context, whose arena plan places fg
        // (glm_arena_allocate_as), so what init() measured holds at every length. Null otherwise.
        const Reference* reference = nullptr;
    };
    // A step built at the end of the context and each rank's arena plan of it: one per step shape,
    // kept for the session (every prefill chunk of one size is placed by the same plan).
    struct Reference {
        Step step;
        std::vector<glm_arena_plan> plans;
    };
    using ReferenceKey = std::tuple<int, int64_t, bool, bool, bool>;  // kind, tokens, all_logits, keep, max_arg
    std::map<ReferenceKey, Reference> references_;
    enum class GraphKind { forward, draft };

    size_t make_caches(Rank& rank, std::vector<std::pair<glm_tensor*, size_t>>& placement);
    size_t measure_arena(Rank& rank) const;
    Status check_tokens(const int32_t* tokens, int64_t n) const;
    ForwardOptions options(const Rank& rank, bool all_logits, bool keep, bool max_arg) const;
    // One graph per rank of (kind, n tokens at pos), the intermediates --dump-tensors names marked as
    // outputs on rank 0.
    void build_graphs(std::deque<glm_context>& contexts, std::vector<ForwardGraph>& graphs, GraphKind kind, int64_t n,
                      int64_t pos, const ForwardOptions& base);
    void build(Step& step, GraphKind kind, int64_t n, int64_t pos, const ForwardOptions& base);
    // greedy (optional) receives the device's argmax of every logits column (the last position only
    // unless all_logits).
    Status eval_chunk(const int32_t* tokens, int64_t n, std::vector<float>* logits, EvalCapture* capture,
                      std::vector<float>* hidden, bool all_logits, std::vector<int32_t>* greedy = nullptr);
    Status verify(const int32_t* tokens, int64_t n, std::vector<float>* logits, std::vector<int32_t>* greedy,
                  std::vector<float>* hidden);
    Status draft(const int32_t* tokens, const float* prev_hidden, int64_t n, int64_t pos, std::vector<float>* logits,
                 std::vector<int32_t>* greedy, std::vector<float>* hidden);
    // Place each rank's graph in its arena, write the inputs (positions pos..pos+n-1), compute on all
    // ranks (meeting at the all-reduces) and wait.
    Status run(Step& step, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden);
    void write_inputs(const Step& step, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden);
    void read_f32(const Rank& rank, const glm_tensor* t, std::vector<float>& out, bool append) const;
    // Logits of all ranks' vocabulary shares, position by position.
    void read_logits(const Step& step, std::vector<float>& out) const;
    // The id of the largest logit of every logits column, from the ranks' (max, id) pairs.
    void read_greedy(const Step& step, std::vector<int32_t>& ids) const;
    Status dump(const glm_context& ctx);

    // Recorded steps: graphs built once for T = n_ctx (kernels bound their work by the positions, which
    // live in device memory), captured on every rank, replayed with fresh inputs. One per step kind and
    // token count: the decode step, each verify size, each MTP step size (a draft step, a round's rows).
    // With DSA and a context longer than index_topk each also has a short twin built for T =
    // index_topk, replayed while the step ends within it: there the selection keeps every key, so the
    // twin skips the indexer's scoring and top-k (the keys are still stored) and attends densely,
    // the same arithmetic the long graph's selection would give.
    struct Recorded {
        Step step;
        std::vector<int> ids;  // one recorded graph per rank
    };
    int64_t max_recorded() const;
    ForwardOptions recorded_options(const Rank& rank) const;
    // Whether steps of n tokens may replay recorded graphs (recording a new one also needs !record_failed_).
    bool can_replay(int64_t n) const;
    // Whether a recorded step ending at position `end` (exclusive) replays the short twin.
    bool short_twin(int64_t end) const;
    // Build (kind, n) at the end of the context (short: of the first index_topk positions), place it in
    // the arena and capture it on every rank.
    Status record(GraphKind kind, int64_t n, bool short_ctx, Recorded& rec);
    // Replay the recorded graph of (kind, n) at positions pos..pos+n-1, recording it first if needed;
    // *replayed is the step whose outputs to read, or null when the step must run eagerly.
    Status replay(GraphKind kind, const int32_t* tokens, int64_t n, int64_t pos, const float* prev_hidden,
                  const Step** replayed);

    std::deque<Rank> ranks_;
    glm_comm* comm_ = nullptr;
    std::map<std::tuple<GraphKind, int64_t, bool>, Recorded> recorded_;  // kind, tokens, short twin
    ReplayTime replay_time_;
    bool record_failed_ = false;  // a capture was refused: no more recording, steps without one run eagerly
    ModelHparams hp_;
    SessionParams params_;
    int64_t n_past_ = 0;
};
