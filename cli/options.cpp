#include "cli/options.h"

#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <CLI/CLI.hpp>

namespace {

const char* k_help = R"(glmrun - run GLM-5 / GLM-5.1 checkpoints (one-shot, chat REPL, benchmark)

usage: glmrun [-m DIR] [-p TEXT | -f FILE | < stdin] [options]
       glmrun [-m DIR] -i [options]
       glmrun [-m DIR] --bench [--bench-ctx LIST] [options]

Model and prompt:
  -m, --model DIR         model directory (default: the bundled tiny model)
  -p, --prompt TEXT       prompt (user turn); with piped stdin or -f, the
                          instruction that precedes that text
  -f, --file FILE         read the prompt from FILE
      --system TEXT       add a system turn
      --think on|off      thinking (default on); off renders the template
                          with thinking disabled
      --show-think        print the reasoning on stdout inside <think>...
                          </think> (default: stderr, dim on a terminal)
      --raw               no chat template: plain completion
      --prompt-ids LIST   feed token ids directly, e.g. 1,2,3 (implies --raw)
      --print-ids         print generated token ids instead of text (the
                          stop token included)
      --logits-out F.npy  write float32 logits [steps, vocab]: last prompt
                          position, then every generated step
      --tokenize          print the prompt's token ids and exit (needs only
                          tokenizer.json)
  -i, --interactive       chat REPL (type /help inside); -p gives the first turn
      --simple-io         REPL: plain line input, no libedit line editing

Generation:
  -n, --n-predict N       tokens to generate (default: until EOS)
  -c, --ctx-size N        context size (default: min(4096, model maximum))
  -s, --seed N            sampling seed (default 0)
      --temp X            temperature, 0 = greedy (model default 0.5)
      --top-k N           top-k, 0 = off
      --top-p X           top-p, 1 = off
      --min-p X           min-p, 0 = off
      --repeat-penalty X  repetition penalty, 1 = off
      --repeat-last-n N   tokens the penalties look at (-1 = all)
      --frequency-penalty X, --presence-penalty X
                          OpenAI-style penalties, 0 = off
      --mtp on|off        MTP speculative decoding with the model's NextN
                          layer (default: on when the model has one and runs
                          on a GPU); the output is the same as without it;
                          off also leaves the layer's weights unloaded
      --draft N           tokens the MTP layer drafts per step (default 3)

Backend:
      --cpu               run on the CPU reference backend (with -tp N: N
                          CPU ranks, for tests)
      --gpus LIST         GPUs to use, e.g. 0,1,2,3 (tensor parallel)
  -tp N                   tensor parallel over GPUs 0..N-1
      --no-p2p            all-reduce through NCCL only (no peer-to-peer
                          path)
      --no-graph-replay   launch every decode step node by node (no CUDA
                          graph replay; for comparisons)
      --precise           f32-grade activations in the GPU's prefill GEMMs
                          (about half their speed; default bf16)
      --no-fuse           run every graph node as its own GPU kernel (no
                          fused launches; for comparisons)
      --no-warmup         skip the GPU warm-up at load (one prefill chunk and
                          two decode steps of placeholder tokens)
      --pdl M             on | off | auto: programmatic dependent launch (a
                          kernel's blocks start while the previous kernel
                          finishes; auto: on with one GPU, off with several,
                          where one host measured it slower and others
                          6-9% faster)
  -t, --threads N         CPU threads (default: all cores)
      --kv-type T         KV cache type: f32 | bf16 | f16 | fp8 (default bf16
                          on GPUs, f32 on the CPU)
      --kv-split M        on | off | auto: split the KV cache by position
                          over the tensor-parallel GPUs instead of a copy
                          on each (1/N of the memory, more all-reduces;
                          auto: only when the copies do not fit)
      --attn dsa|dense    sparse (DSA, default) or dense attention
      --index-pattern P   one F (full) / S (shared) per layer for the indexer
      --ubatch N          prefill chunk size (default on GPUs: 2048, 1024 or
                          512, the largest the memory plan fits; 512 on the
                          CPU)
      --dump-tensors LIST write these intermediates as .npy (comma list)
      --dump-dir DIR      where --dump-tensors writes (default .)

Checks and benchmark:
      --verify            check every tensor of the checkpoint (shapes, XXH3
                          against DIR/glmrun.xxh3 when present) and exit
      --write-manifest    verify, then write DIR/glmrun.xxh3 and exit
      --bench             context sweep: prefill tok/s, TTFT, decode tok/s,
                          bytes per token against the bandwidth roofline,
                          and a profile by kernel class (-n: decoded tokens
                          per repetition, at least 64)
      --bench-ctx LIST    lengths (default 256,4k,16k,32k,64k,128k,200000,
                          capped by -c and the model's maximum)
      --bench-reps N      decode repetitions per length (default 3)
      --bench-json FILE   also write the raw figures as JSON
      --synthetic         seeded random weights of the config's shapes, made
                          on the device: only config.json is read (speed
                          runs; the text is noise)
      --synthetic-seed N  seed of the --synthetic weights (default 1)
      --plan-only         print the memory plan for the devices (-tp, --gpus)
                          and exit without allocating

Output:
  -v, --verbose           more detail on stderr
  -q, --quiet             only errors on stderr
      --color WHEN        auto | always | never (auto honours NO_COLOR)
      --version           print the version and exit
  -h, --help              print this help and exit

stdout carries only the answer; reasoning, progress and stats go to stderr.
Exit codes: 0 ok, 1 bad usage, 2 bad model or input, 3 out of memory or
device failure, 130 interrupted.
)";

bool parse_float(const std::string& text, float& out) {
    try {
        size_t used = 0;
        out = std::stof(text, &used);
        return used == text.size();
    } catch (...) {
        return false;
    }
}

}  // namespace

std::string cli_help_text() { return k_help; }

void apply_engine_flags(const CliOptions& o, EngineParams& p) {
    p.use_cpu = o.cpu;
    p.gpus = o.gpus;
    p.n_cpu_ranks = o.cpu && o.tp > 0 ? o.tp : 1;
    p.p2p = o.p2p;
    p.precise = o.precise;
    p.fuse = !o.no_fuse;
    p.warmup = !o.no_warmup;
    p.programmatic_launch = o.pdl == "on" ? PdlMode::on : o.pdl == "off" ? PdlMode::off : PdlMode::automatic;
    p.synthetic = o.synthetic;
    p.synthetic_seed = o.synthetic_seed;
}

bool parse_id_list(const std::string& text, std::vector<int32_t>& out) {
    out.clear();
    std::string cur;
    auto flush = [&]() {
        if (cur.empty()) return true;
        if (cur.size() > 10) return false;
        const long long v = std::stoll(cur);
        if (v > INT32_MAX) return false;
        out.push_back(int32_t(v));
        cur.clear();
        return true;
    };
    for (char c : text) {
        if (std::isdigit(static_cast<unsigned char>(c))) {
            cur += c;
        } else if (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '[' || c == ']') {
            if (!flush()) return false;
        } else {
            return false;
        }
    }
    return flush() && !out.empty();
}

bool parse_size_list(const std::string& text, std::vector<int64_t>& out) {
    out.clear();
    size_t pos = 0;
    while (pos <= text.size()) {
        size_t end = text.find(',', pos);
        if (end == std::string::npos) end = text.size();
        std::string item = text.substr(pos, end - pos);
        while (!item.empty() && item.back() == ' ') item.pop_back();
        while (!item.empty() && item.front() == ' ') item.erase(item.begin());
        if (item.empty()) return false;
        int64_t mult = 1;
        if (item.back() == 'k' || item.back() == 'K') {
            mult = 1024;
            item.pop_back();
        }
        if (item.empty() || item.size() > 9) return false;
        for (char c : item)
            if (!std::isdigit(static_cast<unsigned char>(c))) return false;
        const int64_t v = std::stoll(item) * mult;
        if (v <= 0) return false;
        out.push_back(v);
        pos = end + 1;
    }
    return !out.empty();
}

Status parse_cli(int argc, char** argv, CliOptions& o) {
    for (int i = 0; i < argc; ++i) o.argv.emplace_back(argv[i]);

    CLI::App app{"glmrun"};
    app.set_help_flag();  // our own grouped help
    app.allow_windows_style_options(false);

    std::string think = "on", prompt_ids, gpus, bench_ctx, dump_tensors;
    std::string s_temp, s_top_p, s_min_p, s_rp, s_fp, s_pp;
    int tp = 0;
    std::string prompt_text, system_text;

    app.add_option("-m,--model", o.model_dir);
    auto* opt_prompt = app.add_option("-p,--prompt", prompt_text);
    app.add_option("-f,--file", o.prompt_file);
    auto* opt_system = app.add_option("--system", system_text);
    app.add_option("--think", think)->check(CLI::IsMember({"on", "off"}));
    app.add_flag("--show-think", o.show_think);
    app.add_flag("--raw", o.raw);
    auto* opt_ids = app.add_option("--prompt-ids", prompt_ids);
    app.add_flag("--print-ids", o.print_ids);
    app.add_option("--logits-out", o.logits_out);
    app.add_flag("--tokenize", o.tokenize);
    app.add_flag("-i,--interactive", o.interactive);
    app.add_flag("--simple-io", o.simple_io);

    app.add_option("-n,--n-predict", o.n_predict);
    app.add_option("-c,--ctx-size", o.n_ctx);
    uint64_t seed = 0;
    auto* opt_seed = app.add_option("-s,--seed", seed);
    app.add_option("--temp", s_temp);
    app.add_option("--top-p", s_top_p);
    app.add_option("--min-p", s_min_p);
    app.add_option("--repeat-penalty", s_rp);
    app.add_option("--frequency-penalty", s_fp);
    app.add_option("--presence-penalty", s_pp);
    int top_k = 0, repeat_last_n = 0;
    auto* opt_top_k = app.add_option("--top-k", top_k);
    auto* opt_rln = app.add_option("--repeat-last-n", repeat_last_n);
    app.add_option("--mtp", o.mtp)->check(CLI::IsMember({"on", "off"}));
    app.add_option("--draft", o.n_draft);

    app.add_flag("--cpu", o.cpu);
    bool no_p2p = false;
    app.add_flag("--no-p2p", no_p2p);
    app.add_flag("--no-graph-replay", o.no_graph_replay);
    app.add_flag("--precise", o.precise);
    app.add_flag("--no-fuse", o.no_fuse);
    app.add_flag("--no-warmup", o.no_warmup);
    app.add_option("--pdl", o.pdl)->check(CLI::IsMember({"on", "off", "auto"}));
    auto* opt_gpus = app.add_option("--gpus", gpus);
    auto* opt_tp = app.add_option("--tensor-parallel", tp);
    app.add_option("-t,--threads", o.threads);
    app.add_option("--kv-type", o.kv_type);
    app.add_option("--kv-split", o.kv_split)->check(CLI::IsMember({"on", "off", "auto"}));
    app.add_option("--attn", o.attn)->check(CLI::IsMember({"dsa", "dense"}));
    app.add_option("--index-pattern", o.index_pattern);
    auto* opt_ubatch = app.add_option("--ubatch", o.ubatch);
    app.add_option("--dump-tensors", dump_tensors);
    app.add_option("--dump-dir", o.dump_dir);

    app.add_flag("--verify", o.verify);
    app.add_flag("--write-manifest", o.write_manifest);
    app.add_flag("--bench", o.bench);
    auto* opt_bench_ctx = app.add_option("--bench-ctx", bench_ctx);
    app.add_option("--bench-json", o.bench_json);
    app.add_option("--bench-reps", o.bench_reps);
    app.add_flag("--synthetic", o.synthetic);
    std::string synthetic_seed;
    auto* opt_synthetic_seed = app.add_option("--synthetic-seed", synthetic_seed);
    app.add_flag("--plan-only", o.plan_only);

    app.add_flag("-v,--verbose", o.verbose);
    app.add_flag("-q,--quiet", o.quiet);
    app.add_option("--color", o.color)->check(CLI::IsMember({"auto", "always", "never"}));
    app.add_flag("--version", o.version);
    app.add_flag("-h,--help", o.help);

    // CLI11 short names are one letter: spell llama.cpp's "-tp N" as the long form.
    std::vector<std::string> args;
    for (int i = argc - 1; i >= 1; --i) {
        std::string a = argv[i];
        if (a == "-tp") a = "--tensor-parallel";
        else if (a.rfind("-tp=", 0) == 0) a = "--tensor-parallel=" + a.substr(4);
        args.push_back(a);
    }
    try {
        app.parse(args);
    } catch (const CLI::ParseError& e) {
        std::string what = e.what();
        if (what.empty()) what = "invalid command line";
        return Status::usage("{} (see glmrun --help)", what);
    }
    if (o.help || o.version) return {};

    if (*opt_prompt) o.prompt = prompt_text;
    if (*opt_system) o.system = system_text;
    o.think = think == "on";
    if (*opt_seed) o.seed = seed;
    if (*opt_top_k) {
        if (top_k < 0) return Status::usage("--top-k must be >= 0 (got {})", top_k);
        o.top_k = top_k;
    }
    if (*opt_rln) {
        if (repeat_last_n < -1) return Status::usage("--repeat-last-n must be >= -1 (got {})", repeat_last_n);
        o.repeat_last_n = repeat_last_n;
    }
    struct FloatFlag {
        const char* name;
        const std::string& text;
        std::optional<float>& out;
        float lo, hi;
    };
    const FloatFlag floats[] = {
        {"--temp", s_temp, o.temp, 0.0f, 100.0f},
        {"--top-p", s_top_p, o.top_p, 0.0f, 1.0f},
        {"--min-p", s_min_p, o.min_p, 0.0f, 1.0f},
        {"--repeat-penalty", s_rp, o.repeat_penalty, 0.0f, 100.0f},
        {"--frequency-penalty", s_fp, o.frequency_penalty, -100.0f, 100.0f},
        {"--presence-penalty", s_pp, o.presence_penalty, -100.0f, 100.0f},
    };
    for (const FloatFlag& f : floats) {
        if (f.text.empty()) continue;
        float v = 0;
        if (!parse_float(f.text, v) || !(v >= f.lo && v <= f.hi))
            return Status::usage("{} expects a number in [{}, {}] (got '{}')", f.name, f.lo, f.hi, f.text);
        if (std::string(f.name) == "--repeat-penalty" && v <= 0.0f)
            return Status::usage("--repeat-penalty must be > 0 (got '{}')", f.text);
        f.out = v;
    }

    if (*opt_ids) {
        if (!parse_id_list(prompt_ids, o.prompt_ids))
            return Status::usage("--prompt-ids expects comma-separated token ids, e.g. 1,2,3 (got '{}')", prompt_ids);
        o.raw = true;
    }
    if (*opt_gpus && *opt_tp) return Status::usage("use either --gpus or -tp, not both");
    if (*opt_gpus) {
        std::vector<int32_t> ids;
        if (!parse_id_list(gpus, ids)) return Status::usage("--gpus expects a list like 0,1,2,3 (got '{}')", gpus);
        o.gpus.assign(ids.begin(), ids.end());
    }
    if (*opt_tp) {
        if (tp < 1 || tp > 64) return Status::usage("-tp expects a rank count in 1..64 (got {})", tp);
        o.tp = tp;
        // With --cpu the ranks are CPU ranks (tests of the tensor-parallel graph without a GPU).
        if (!o.cpu)
            for (int i = 0; i < tp; ++i) o.gpus.push_back(i);
    }
    if (o.cpu && !o.gpus.empty())
        return Status::usage("--cpu and --gpus exclude each other (use --cpu -tp N for N CPU ranks)");
    o.p2p = !no_p2p;
    o.ubatch_auto = !*opt_ubatch;
    if (*opt_synthetic_seed) {
        if (!o.synthetic) return Status::usage("--synthetic-seed needs --synthetic");
        bool digits = !synthetic_seed.empty() && synthetic_seed.size() <= 20;
        for (char c : synthetic_seed) digits = digits && std::isdigit(static_cast<unsigned char>(c));
        errno = 0;
        const unsigned long long v = digits ? std::strtoull(synthetic_seed.c_str(), nullptr, 10) : 0;
        // 0 is reserved: the engine keeps "seed 0" to mean weights read from the shards.
        if (!digits || errno == ERANGE || v == 0)
            return Status::usage("--synthetic-seed expects an integer in 1..2^64-1 (got '{}')", synthetic_seed);
        o.synthetic_seed = uint64_t(v);
    }
    if (o.synthetic && (o.verify || o.write_manifest))
        return Status::usage("--synthetic has no shards to check: drop --verify / --write-manifest, or --synthetic");
    if (*opt_bench_ctx) {
        if (!parse_size_list(bench_ctx, o.bench_ctx))
            return Status::usage("--bench-ctx expects lengths like 256,4k,16k (got '{}')", bench_ctx);
    }
    if (!dump_tensors.empty()) {
        size_t pos = 0;
        while (pos <= dump_tensors.size()) {
            size_t end = dump_tensors.find(',', pos);
            if (end == std::string::npos) end = dump_tensors.size();
            if (end > pos) o.dump_tensors.push_back(dump_tensors.substr(pos, end - pos));
            pos = end + 1;
        }
    }
    for (char c : o.index_pattern)
        if (c != 'F' && c != 'S' && c != 'f' && c != 's')
            return Status::usage("--index-pattern expects one F or S per layer (got '{}')", o.index_pattern);
    for (char& c : o.index_pattern) c = char(std::toupper(static_cast<unsigned char>(c)));

    if (o.n_predict < -1) return Status::usage("-n must be >= 0, or -1 for no limit (got {})", o.n_predict);
    if (o.n_ctx < 0) return Status::usage("-c must be > 0 (got {})", o.n_ctx);
    if (o.ubatch < 1) return Status::usage("--ubatch must be >= 1 (got {})", o.ubatch);
    if (o.threads < 0) return Status::usage("-t must be >= 0 (got {})", o.threads);
    if (o.n_draft < 1 || o.n_draft > k_max_draft)
        return Status::usage("--draft expects 1..{} (got {})", k_max_draft, o.n_draft);
    if (o.mtp == "on" && (!o.logits_out.empty() || !o.dump_tensors.empty()))
        return Status::usage("--mtp on does not combine with --logits-out or --dump-tensors (they read every "
                             "decode step's graph)");
    if (o.bench_reps < 1) return Status::usage("--bench-reps must be >= 1 (got {})", o.bench_reps);
    if (o.verbose && o.quiet) return Status::usage("-v and -q exclude each other");

    int modes = int(o.interactive) + int(o.bench) + int(o.tokenize) + int(o.verify || o.write_manifest) +
                int(o.plan_only);
    if (modes > 1)
        return Status::usage("-i, --bench, --tokenize, --verify, --write-manifest and --plan-only exclude each other");
    if (o.interactive && (o.print_ids || !o.logits_out.empty() || !o.prompt_ids.empty()))
        return Status::usage("-i does not combine with --prompt-ids, --print-ids or --logits-out");
    if (o.print_ids && o.show_think) return Status::usage("--print-ids and --show-think exclude each other");
    return {};
}
