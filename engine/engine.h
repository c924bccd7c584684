// The engine facade the command line uses: load a model directory (config, tokenizer, weights) onto
// a backend and hand out a Session to evaluate tokens. Everything GLM-5-specific stays behind it.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/session.h"
#include "tokenizer/tokenizer.h"

enum class KvSplitMode { off, on, automatic };
enum class PdlMode { off, on, automatic };

struct EngineParams {
    std::string model_dir;
    bool use_cpu = false;          // --cpu: the scalar reference backend even when a GPU exists
    std::vector<int> gpus;         // --gpus / -tp (empty: one GPU when present, else CPU)
    int n_threads = 0;             // CPU threads (0: all cores)
    std::string index_pattern;     // --index-pattern: one F/S per layer, overrides the config
    SessionParams session;         // -c, --ubatch, --kv-type, --attn, --dump-tensors ...
    // No --kv-type given: bf16 on GPUs (what their attention kernels are built for: tensor-core MLA
    // reads bf16 or fp8 rows), session.kv_type (f32, exact) on the CPU.
    bool kv_type_auto = false;
    // --kv-split: session.kv_split decided at load (auto: only when copies of the cache on every rank
    // do not fit the GPUs and split ones do; never with one rank).
    KvSplitMode kv_split = KvSplitMode::automatic;
    bool show_progress = true;     // load progress bar (only drawn on a TTY)
    int n_cpu_ranks = 1;           // --cpu with -tp N: N CPU ranks through the host communicator (tests)
    bool synthetic = false;        // --synthetic: seeded random weights of the config's shapes, no shards
    uint64_t synthetic_seed = 1;
    // --precise: tensor-core GEMMs (prefill, N > 8) take f32-grade activations (bf16 hi + lo split,
    // about half the rate) instead of bf16-rounded ones; for comparisons against f32 references.
    bool precise = false;
    bool fuse = true;              // --no-fuse: every graph node its own GPU launch (A/B, bisecting)
    // No --ubatch: on GPUs the prefill chunk is the largest of 2048 / 1024 / session.n_ubatch whose
    // memory plan fits (the engine's session().params().n_ubatch says which).
    bool ubatch_auto = false;
    // --pdl: programmatic dependent launch of GPU kernels (cuda/common.cuh). auto: on with one GPU
    // (a TP = 4 rank's kernels on one H100: decode +7-9%), off with several: at TP = 4 one 4x H100
    // host measured decode 62.2 -> 44.0 tok/s with it on (cause not found), while another 4x H100
    // host and two 4x H200 hosts measured +6-9% (bench/RESULTS.md).
    PdlMode programmatic_launch = PdlMode::automatic;
    bool p2p = true;               // --no-p2p: NCCL for every all-reduce (no custom peer-to-peer path)
    // --mtp off: the MTP layer's weights and caches are not loaded (1/79 of the model: 0.94 GiB per
    // rank at full size over 4 GPUs); the session then has no draft layer.
    bool load_mtp = true;
    // --no-warmup: on GPUs the engine runs one prefill chunk and two decode steps of placeholder tokens
    // at load, then empties the session, so the first prompt does not pay what only the first use of
    // a kernel costs (module loading, cuBLAS's kernel choice per shape, recording the decode graphs).
    // Ignored on the CPU (nothing to load lazily there) unless warmup_cpu is set (tests).
    bool warmup = true;
    bool warmup_cpu = false;
};

// What a loaded model tells the command line.
struct ModelInfo {
    std::string name;               // directory base name
    std::string backend;            // "cpu", "cuda:0" ...
    int64_t n_vocab = 0;
    int64_t n_layer = 0;
    int64_t n_ctx_train = 0;        // max_position_embeddings
    bool has_mtp = false;
    std::vector<int32_t> eos_ids;   // generation_config.json, else config.json
    SamplerParams default_sampling; // generation_config.json (temperature, top_p ...) over the card defaults
    size_t weight_bytes = 0;        // on one rank
    int n_ranks = 1;                // tensor-parallel ranks
    bool synthetic = false;
    bool programmatic_launch = false;  // GPU kernels launched programmatically (--pdl as resolved)
};

class Engine {
public:
    static Status load(const EngineParams& params, std::unique_ptr<Engine>& out);
    // What load would place on each rank (weights share, caches, activations) for these params, as a
    // printable report; a device error (with the report) when it does not fit the GPUs present.
    // Allocates nothing: works for rank counts this machine does not have.
    static Status plan(const EngineParams& params, std::string& report);
    ~Engine();

    const ModelInfo& info() const;
    // A synthetic model directory may have no tokenizer.json: then only ids go in and out.
    bool has_tokenizer() const;
    const glm::Tokenizer& tokenizer() const;
    Session& session();
    // The graph's hyperparameters (whole model, not one rank's share) and the ranks' backends
    // (one per tensor-parallel rank; --bench profiles them).
    const ModelHparams& hparams() const;
    std::vector<glm_backend*> backends() const;
    int n_ranks() const;
    bool is_eos(int32_t token) const;

    struct Impl;

private:
    explicit Engine(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

// Only the tokenizer of a model directory (tokenizer.json): --tokenize needs no weights or config.
Status load_tokenizer(const std::string& model_dir, std::unique_ptr<glm::Tokenizer>& out);

// Parse a --kv-type value (f32 | bf16 | f16 | fp8).
Status parse_kv_type(const std::string& text, glm_type& out);
