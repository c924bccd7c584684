// Command-line options of glmrun: one struct filled by CLI11 (flag names follow llama.cpp), the
// grouped --help text, and the small value parsers the flags share.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "ggml-like/common.h"

struct CliOptions {
    // model and prompt
    std::string model_dir;            // -m (empty: the bundled tiny model)
    std::optional<std::string> prompt;  // -p
    std::string prompt_file;          // -f
    std::optional<std::string> system;  // --system
    bool think = true;                // --think on|off
    bool show_think = false;          // --show-think
    bool raw = false;                 // --raw
    std::string prompt_ids_text;      // --prompt-ids
    std::vector<int32_t> prompt_ids;  // parsed --prompt-ids
    bool print_ids = false;           // --print-ids
    std::string logits_out;           // --logits-out FILE.npy
    bool tokenize = false;            // --tokenize
    bool interactive = false;         // -i
    bool simple_io = false;           // --simple-io: plain line input even on a terminal

    // generation
    int64_t n_predict = -1;           // -n (-1: until EOS or the context is full)
    int64_t n_ctx = 0;                // -c (0: min(4096, the model's max positions))
    std::optional<uint64_t> seed;     // -s
    std::optional<float> temp, top_p, min_p, repeat_penalty, frequency_penalty, presence_penalty;
    std::optional<int> top_k, repeat_last_n;
    std::string mtp = "auto";         // --mtp on|off (auto: on with an MTP layer on a GPU)
    int n_draft = 3;                  // --draft N

    // backend
    bool cpu = false;                 // --cpu
    std::vector<int> gpus;            // --gpus / -tp (GPU ids; empty with --cpu)
    int tp = 0;                       // -tp N as given (0: absent); with --cpu, N CPU ranks
    bool p2p = true;                  // --no-p2p: NCCL for every all-reduce
    bool no_graph_replay = false;     // --no-graph-replay
    bool precise = false;             // --precise
    bool no_fuse = false;             // --no-fuse
    bool no_warmup = false;           // --no-warmup
    std::string pdl = "auto";         // --pdl on|off|auto
    int threads = 0;                  // -t
    std::string kv_type;              // --kv-type
    std::string kv_split = "auto";    // --kv-split on|off|auto
    std::string attn = "dsa";         // --attn
    std::string index_pattern;        // --index-pattern
    int64_t ubatch = 512;             // --ubatch (the engine's choice when ubatch_auto)
    bool ubatch_auto = true;          // no --ubatch: the engine picks the chunk (GPUs: largest that fits)
    std::vector<std::string> dump_tensors;  // --dump-tensors
    std::string dump_dir = ".";       // --dump-dir

    // checks and benchmarks
    bool verify = false;              // --verify
    bool write_manifest = false;      // --write-manifest
    bool bench = false;               // --bench
    std::vector<int64_t> bench_ctx;   // --bench-ctx
    std::string bench_json;           // --bench-json FILE
    int bench_reps = 3;               // --bench-reps
    bool synthetic = false;           // --synthetic: random weights of the config's shapes, no shards
    uint64_t synthetic_seed = 1;      // --synthetic-seed
    bool plan_only = false;           // --plan-only: print the memory plan and exit, allocating nothing

    // output
    bool verbose = false, quiet = false;
    std::string color = "auto";       // --color
    bool version = false, help = false;

    std::vector<std::string> argv;    // the command line as given (for --bench-json)
};

// --draft's upper bound: the verify batch (drafts + 1) is one small graph.
constexpr int k_max_draft = 15;

// Parse argv into opts. Usage errors come back as ErrorKind::usage with one line.
Status parse_cli(int argc, char** argv, CliOptions& opts);
// The grouped help text (fits 80 columns).
std::string cli_help_text();
// The backend and weight choices of the command line in EngineParams: --cpu (with -tp N: N CPU
// ranks), the GPU list, --no-p2p, --synthetic and its seed. The rest of EngineParams is untouched.
void apply_engine_flags(const CliOptions& opts, EngineParams& params);

// "1,2, 3" / "[1, 2, 3]" -> ids. false on anything that is not a non-negative integer list.
bool parse_id_list(const std::string& text, std::vector<int32_t>& out);
// "256,4k,16k,128K" -> lengths (k = 1024).
bool parse_size_list(const std::string& text, std::vector<int64_t>& out);
