// glmrun --bench: a context sweep in the model card's format. For each context length L the
// context is filled with random valid ids (fixed seed) up to L - (warm-up + decode) tokens; the cold
// prefill of that prompt gives prefill tok/s and TTFT, then several repetitions decode warm-up + N
// tokens (N >= 64) ending at depth L; decode tok/s is the median over the repetitions.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/generate.h"
#include "cli/term.h"
#include "engine/config.h"

namespace {
constexpr int64_t k_warmup = 4;

double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

double median(std::vector<double> v) {
    if (v.empty()) return 0.0;
    std::sort(v.begin(), v.end());
    const size_t n = v.size();
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

std::string cpu_model() {
    std::ifstream in("/proc/cpuinfo");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind("model name", 0) == 0) {
            const size_t c = line.find(':');
            if (c != std::string::npos) return line.substr(c + 2);
        }
    return "unknown";
}

std::string label(int64_t n) { return n % 1024 == 0 && n >= 1024 ? std::to_string(n / 1024) + "k" : std::to_string(n); }

struct BenchRow {
    int64_t ctx = 0, n_prompt = 0;
    double prefill_s = 0, ttft_s = 0;
    std::vector<double> rep_decode_tok_s;
    std::vector<std::vector<double>> token_s;  // per repetition, per decoded token (after warm-up)
    double decode_tok_s = 0;
};
}  // namespace

Status run_bench(const CliOptions& o, const std::string& dir) {
    const int64_t n_gen = std::max<int64_t>(64, o.n_predict);
    const int64_t budget = k_warmup + n_gen;
    std::vector<int64_t> lengths = o.bench_ctx;
    if (lengths.empty()) lengths = {256, 4096, 16384, 32768, 65536, 131072};
    int64_t cap = o.n_ctx;
    if (cap <= 0) {
        ModelConfig cfg;
        Status st = load_config(dir, cfg);
        if (!st) return Status::bad_input("{}", st.message());
        cap = cfg.max_position_embeddings > 0 ? cfg.max_position_embeddings : 131072;
    }
    std::vector<int64_t> run;
    for (int64_t l : lengths) {
        if (l > cap) {
            if (!o.quiet) err_write(fmt::format("bench: skipping context {} (over the cap {})\n", label(l), cap));
        } else if (l <= budget) {
            if (!o.quiet) err_write(fmt::format("bench: skipping context {} (needs more than {} tokens)\n", label(l), budget));
        } else {
            run.push_back(l);
        }
    }
    if (run.empty())
        return Status::usage("--bench: no context length fits (lengths must be in ({}, {}]; see --bench-ctx and -c)",
                             budget, cap);
    std::sort(run.begin(), run.end());
    run.erase(std::unique(run.begin(), run.end()), run.end());

    std::unique_ptr<Engine> engine;
    GLM_TRY(load_engine(o, dir, run.back(), engine));
    Session& session = engine->session();
    const int64_t n_vocab = engine->info().n_vocab;

    std::vector<BenchRow> rows;
    bool interrupted = false;
    for (int64_t L : run) {
        BenchRow row;
        row.ctx = L;
        row.n_prompt = L - budget;
        std::mt19937_64 rng(0x676c6d72756eULL + uint64_t(L));
        std::uniform_int_distribution<int32_t> pick(0, int32_t(n_vocab - 1));
        std::vector<int32_t> prompt(static_cast<size_t>(row.n_prompt));
        for (int32_t& t : prompt) t = pick(rng);

        if (!o.quiet) err_write(fmt::format("bench: context {}: prefill {} tokens ...\n", label(L), row.n_prompt));
        session.reset();
        std::vector<float> logits;
        const double t0 = now_s();
        GLM_TRY(prefill(session, prompt.data(), row.n_prompt, o.ubatch, logits, interrupted));
        if (interrupted) break;
        row.prefill_s = now_s() - t0;
        const int32_t first = argmax(logits.data(), n_vocab);
        row.ttft_s = now_s() - t0;

        for (int rep = 0; rep < o.bench_reps && !interrupted; ++rep) {
            session.truncate(row.n_prompt);
            int32_t tok = first;
            std::vector<double> times;
            double t_start = 0;
            for (int64_t i = 0; i < budget; ++i) {
                if (term_interrupted()) {
                    interrupted = true;
                    break;
                }
                if (i == k_warmup) t_start = now_s();
                const double ts = now_s();
                GLM_TRY(session.eval(&tok, 1, &logits));
                tok = argmax(logits.data(), n_vocab);
                if (i >= k_warmup) times.push_back(now_s() - ts);
            }
            if (interrupted) break;
            const double total = now_s() - t_start;
            row.rep_decode_tok_s.push_back(total > 0 ? double(n_gen) / total : 0.0);
            row.token_s.push_back(std::move(times));
        }
        if (row.rep_decode_tok_s.empty()) break;
        row.decode_tok_s = median(row.rep_decode_tok_s);
        if (!o.quiet)
            err_write(fmt::format("bench: context {}: prefill {:.1f} tok/s, TTFT {:.1f} ms, decode {:.2f} tok/s\n",
                                  label(L), row.prefill_s > 0 ? row.n_prompt / row.prefill_s : 0.0,
                                  row.ttft_s * 1e3, row.decode_tok_s));
        rows.push_back(std::move(row));
    }

    const ModelInfo& info = engine->info();
    std::string table = fmt::format("| context | prompt tokens | prefill tok/s (cold) | TTFT (ms) | decode tok/s |\n"
                                    "|--------:|--------------:|---------------------:|----------:|-------------:|\n");
    for (const BenchRow& r : rows)
        table += fmt::format("| {} | {} | {:.1f} | {:.1f} | {:.2f} |\n", label(r.ctx), r.n_prompt,
                             r.prefill_s > 0 ? r.n_prompt / r.prefill_s : 0.0, r.ttft_s * 1e3, r.decode_tok_s);
    out_write(table);
    if (!o.quiet)
        err_write(term_dim(fmt::format("model {} on {}; decode: median of {} repetitions of {} tokens after {} "
                                       "warm-up tokens; kv {}, attn {}\n",
                                       info.name, info.backend, o.bench_reps, n_gen, k_warmup,
                                       o.kv_type.empty() ? "default" : o.kv_type, o.attn)));

    if (!o.bench_json.empty()) {
        nlohmann::json j;
        char host[256] = {0};
        gethostname(host, sizeof host - 1);
        const std::time_t t = std::time(nullptr);
        char when[64];
        std::strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
        j["glmrun_version"] = GLMRUN_VERSION;
        j["git_revision"] = git_revision();
        j["date"] = when;
        j["machine"] = {{"hostname", host}, {"cpu", cpu_model()}, {"n_cpu", sysconf(_SC_NPROCESSORS_ONLN)},
                        {"backend", info.backend}, {"gpus", o.gpus}};
        j["model"] = {{"dir", dir}, {"name", info.name}, {"n_layer", info.n_layer}, {"n_vocab", info.n_vocab},
                      {"n_ctx_train", info.n_ctx_train}, {"weight_bytes", info.weight_bytes}};
        j["flags"] = o.argv;
        j["settings"] = {{"n_ctx", session.n_ctx()}, {"ubatch", o.ubatch}, {"kv_type", o.kv_type.empty() ? "default" : o.kv_type},
                         {"attn", o.attn}, {"warmup_tokens", k_warmup}, {"decode_tokens", n_gen},
                         {"repetitions", o.bench_reps}, {"threads", o.threads}};
        nlohmann::json results = nlohmann::json::array();
        for (const BenchRow& r : rows)
            results.push_back({{"ctx", r.ctx}, {"prompt_tokens", r.n_prompt}, {"prefill_s", r.prefill_s},
                               {"prefill_tok_s", r.prefill_s > 0 ? r.n_prompt / r.prefill_s : 0.0},
                               {"ttft_s", r.ttft_s}, {"decode_tok_s", r.decode_tok_s},
                               {"decode_tok_s_per_rep", r.rep_decode_tok_s}, {"decode_token_s", r.token_s}});
        j["results"] = results;
        j["interrupted"] = interrupted;
        std::ofstream out(o.bench_json, std::ios::binary);
        if (out) out << j.dump(2) << "\n";
        out.close();
        if (!out) return Status::bad_input("cannot write {}", o.bench_json);
    }
    if (interrupted) return Status::error(ErrorKind::interrupted, "interrupted");
    return {};
}
