// glmrun --bench: a context sweep in the model card's format. For each context length L the
// context is filled with random valid ids (fixed seed) up to L - (warm-up + decode) tokens; the cold
// prefill of that prompt gives prefill tok/s and TTFT, then several repetitions decode warm-up + N
// tokens (N >= 64) ending at depth L; decode tok/s is the median over the repetitions.
// Beside it: the bytes one decoded token reads per rank (engine/roofline.h), the bound they give at
// the device's measured copy bandwidth and the fraction of it reached, and a profiled decode pass
// per length that shows where a step's time goes by kernel class (the rest is gaps between them).
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <functional>
#include <random>

#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/generate.h"
#include "cli/term.h"
#include "engine/config.h"
#include "engine/roofline.h"
#ifdef GLMRUN_HAVE_CUDA
#include "cuda/backend.h"
#include "cuda/copy-bench.h"
#endif

namespace {
constexpr int64_t k_warmup = 4;
constexpr int64_t k_profile_steps = 4;  // profiled decode steps per length (timers cost a wait per node)
constexpr int k_classes = int(KernelClass::count);

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

// Device time of the profiled steps, per decoded token.
struct StepProfile {
    bool have = false;                  // false: the backends have no timers
    std::vector<KernelTimes> per_rank;  // us per token, each rank
    double class_us[k_classes] = {};    // us per token, mean over the ranks
    double kernel_us = 0;               // sum of the classes
};

struct BenchRow {
    int64_t ctx = 0, n_prompt = 0;
    double prefill_s = 0, ttft_s = 0;
    std::vector<double> rep_decode_tok_s;
    std::vector<std::vector<double>> token_s;  // per repetition, per decoded token (after warm-up)
    double decode_tok_s = 0;
    DecodeBytes bytes;                  // read per decoded token, per rank, at depth ctx
    StepProfile profile;
    StepProfile prefill_profile;  // the prompt's last chunk, us per chunk
    int64_t prefill_chunk = 0;
    // Host time per replayed decode step (us): inputs written and every rank's graph launched, then the
    // wait for the GPUs (Session::replay_time); 0 when the steps ran node by node.
    double launch_us = 0, wait_us = 0;
    // --mtp on: one more repetition decoding through MTP speculative rounds (greedy)
    bool mtp = false;
    double mtp_tok_s = 0;
    SpecStats mtp_stats;
};

// Expected tokens per second of MTP decoding at per-position acceptance rates `accept` (unconditional:
// position i is accepted only when 1..i-1 were), from measured times per round: one verify of
// n_draft + 1 positions and n_draft draft steps.
double mtp_expected_tok_s(const std::vector<double>& accept, double verify_s, double draft_s) {
    double tokens = 1.0;
    for (double a : accept) tokens += a;
    const double round_s = verify_s + draft_s;
    return round_s > 0 ? tokens / round_s : 0.0;
}
// GLM-5.1's published MTP acceptance per draft position (issue 12).
const std::vector<double> k_published_acceptance = {0.80, 0.55, 0.29};

// The measured (unprofiled) time of one decode step.
double step_us(const BenchRow& r) { return r.decode_tok_s > 0 ? 1e6 / r.decode_tok_s : 0.0; }

// What the run is measured on, probed before the engine loads: the copy benchmark allocates its
// own buffers, which the backends forbid once they are frozen (and a full-size model leaves no room).
struct Machine {
    std::vector<std::string> devices;  // GPU names, or the CPU model
    bool gpu = false;
    std::vector<double> copy_bytes_per_s;  // per GPU, read + written
    double copy_bw = 0;                    // the slowest GPU's: ranks step together (0: unknown)
    std::string copy_note;                 // why there is no figure
};

Machine probe_machine(const CliOptions& o) {
    Machine m;
#ifdef GLMRUN_HAVE_CUDA
    if (!o.cpu && glm_cuda_device_count() > 0) {
        m.gpu = true;
        const std::vector<int> ids = o.gpus.empty() ? std::vector<int>{0} : o.gpus;
        for (int id : ids) {
            CudaDeviceInfo dev;
            m.devices.push_back(glm_cuda_device_info(id, dev).ok() ? dev.name : fmt::format("cuda:{} (unknown)", id));
            double bw = 0;
            const Status st = glm_cuda_copy_bandwidth(id, bw);
            if (st.ok()) m.copy_bytes_per_s.push_back(bw);
            else m.copy_note = st.message();
        }
        if (m.copy_bytes_per_s.size() == ids.size())
            m.copy_bw = *std::min_element(m.copy_bytes_per_s.begin(), m.copy_bytes_per_s.end());
        return m;
    }
#endif
    (void)o;
    m.devices.push_back(cpu_model());
    m.copy_note = "n/a on the CPU backend";
    return m;
}

// "4x NVIDIA H100 80GB HBM3", or the names one by one when they differ.
std::string describe_devices(const std::vector<std::string>& names) {
    if (names.empty()) return "unknown";
    if (std::all_of(names.begin(), names.end(), [&](const std::string& n) { return n == names[0]; }))
        return names.size() == 1 ? names[0] : fmt::format("{}x {}", names.size(), names[0]);
    std::string out;
    for (size_t i = 0; i < names.size(); ++i) out += (i ? ", " : "") + names[i];
    return out;
}

// "all F (78 indexers)" or the F/S string with its count.
std::string describe_index_pattern(const ModelHparams& hp) {
    std::string pattern;
    int64_t full = 0;
    for (bool shared : hp.indexer_shared) {
        pattern += shared ? 'S' : 'F';
        full += !shared;
    }
    if (full == int64_t(pattern.size())) return fmt::format("all F ({} indexers)", full);
    return fmt::format("{} ({} F of {})", pattern, full, pattern.size());
}

// Sum every rank's node timers over one profiled pass, divided by `per` (steps or chunks).
Status profiled_pass(Engine& engine, const std::function<Status()>& pass, double per, StepProfile& out) {
    const std::vector<glm_backend*> ranks = engine.backends();
    for (glm_backend* b : ranks) {
        b->take_profile();  // drop anything left from before
        b->set_profiling(true);
    }
    const Status st = pass();
    for (glm_backend* b : ranks) b->set_profiling(false);
    GLM_TRY(st);
    for (glm_backend* b : ranks) {
        const std::vector<glm_node_time> nodes = b->take_profile();
        if (nodes.empty()) continue;
        KernelTimes t = sum_profile(nodes);
        for (double& us : t.us) us /= per;
        out.per_rank.push_back(t);
    }
    out.have = !out.per_rank.empty();
    for (const KernelTimes& t : out.per_rank)
        for (int c = 0; c < k_classes; ++c) out.class_us[c] += t.us[c] / double(out.per_rank.size());
    for (double us : out.class_us) out.kernel_us += us;
    return {};
}

// A few decode steps at depth n_prompt with every rank's timers on.
Status profile_decode(Engine& engine, Session& session, int64_t n_prompt, int32_t first, StepProfile& out) {
    session.truncate(n_prompt);
    // Node timers need node-by-node launches: the replayed graph is set aside for the pass (the
    // same kernels run either way; the launch gaps are what the replay removes).
    const bool replay = session.params().replay_decode;
    session.set_replay_decode(false);
    const Status st = profiled_pass(engine, [&]() -> Status {
        int32_t tok = first;
        for (int64_t i = 0; i < k_profile_steps; ++i) GLM_TRY(session.eval_greedy(&tok, 1, &tok));
        return {};
    }, double(k_profile_steps), out);
    session.set_replay_decode(replay);
    return st;
}

// The prompt's last prefill chunk again (same tokens, same depth) with every rank's timers on.
Status profile_prefill(Engine& engine, Session& session, const std::vector<int32_t>& prompt, StepProfile& out) {
    const int64_t n = std::min<int64_t>(session.params().n_ubatch, int64_t(prompt.size()));
    const int64_t start = int64_t(prompt.size()) - n;
    session.truncate(start);
    std::vector<float> logits;
    return profiled_pass(engine, [&]() { return session.eval(prompt.data() + start, n, &logits); }, 1.0, out);
}

std::string gb_per_s(double bytes_per_s) { return fmt::format("{:.0f} GB/s", bytes_per_s / 1e9); }

// Megabytes readable at both ends: the full-size model reads GB per token, the fixtures a few KB.
std::string mb(double bytes) {
    const double v = bytes / 1e6;
    return v >= 10 || v == 0 ? fmt::format("{:.1f}", v) : fmt::format("{:.4f}", v);
}

// The roofline and profile tables (Markdown), one column or row per context length.
std::string roofline_tables(const std::vector<BenchRow>& rows, const Machine& machine, int n_ranks) {
    std::string out = fmt::format("\n### Bytes read per decoded token, per rank of {} (MB)\n\n| class |", n_ranks);
    std::string rule = "|---|";
    for (const BenchRow& r : rows) {
        out += fmt::format(" {} |", label(r.ctx));
        rule += "---:|";
    }
    out += "\n" + rule + "\n";
    if (!rows.empty()) {
        const auto first = rows[0].bytes.rows();
        for (size_t k = 0; k < first.size(); ++k) {
            out += "| " + first[k].first + " |";
            for (const BenchRow& r : rows) out += " " + mb(r.bytes.rows()[k].second) + " |";
            out += "\n";
        }
        out += "| **total** |";
        for (const BenchRow& r : rows) out += " **" + mb(r.bytes.total()) + "** |";
        out += "\n";
    }

    out += fmt::format("\n### Roofline (copy bandwidth {})\n\n", machine.copy_bw > 0 ? gb_per_s(machine.copy_bw)
                                                                                        : machine.copy_note);
    out += "| context | MB / token / rank | roofline tok/s | decode tok/s | achieved |\n"
           "|--------:|------------------:|---------------:|-------------:|---------:|\n";
    for (const BenchRow& r : rows) {
        const double bound = roofline_tok_s(r.bytes, machine.copy_bw);
        out += fmt::format("| {} | {} | {} | {:.2f} | {} |\n", label(r.ctx), mb(r.bytes.total()),
                           bound > 0 ? fmt::format("{:.1f}", bound) : "n/a", r.decode_tok_s,
                           bound > 0 ? fmt::format("{:.1f}%", 100.0 * r.decode_tok_s / bound) : "n/a");
    }

    const bool any = std::any_of(rows.begin(), rows.end(), [](const BenchRow& r) { return r.profile.have; });
    out += fmt::format("\n### Decode step profile (us per token, mean over ranks, {} profiled steps)\n\n",
                       k_profile_steps);
    if (!any) return out + "n/a: this backend has no kernel timers\n";
    out += "| class |";
    for (const BenchRow& r : rows) out += fmt::format(" {} |", label(r.ctx));
    out += "\n" + rule + "\n";
    // One row per class and the total, from the profile `which` of each BenchRow.
    auto class_lines = [&](StepProfile BenchRow::*which) -> std::function<void(const std::string&,
                                                                                 std::function<double(const BenchRow&)>)> {
        auto line = [&out, &rows, which](const std::string& name, std::function<double(const BenchRow&)> value) {
            out += "| " + name + " |";
            for (const BenchRow& r : rows) out += (r.*which).have ? fmt::format(" {:.1f} |", value(r)) : " n/a |";
            out += "\n";
        };
        for (int c = 0; c < k_classes; ++c)
            line(kernel_class_name(KernelClass(c)), [c, which](const BenchRow& r) { return (r.*which).class_us[c]; });
        line("**kernels**", [which](const BenchRow& r) { return (r.*which).kernel_us; });
        return line;
    };
    const auto line = class_lines(&BenchRow::profile);
    line("gaps (step - kernels)", [](const BenchRow& r) { return step_us(r) - r.profile.kernel_us; });
    line("**step (measured)**", [](const BenchRow& r) { return step_us(r); });

    // The prefill chunk: where a cold prompt's time goes (mostly large GEMMs, attention, indexer).
    out += "\n### Prefill chunk profile (us per chunk: the prompt's last chunk at its depth, mean over ranks)\n\n| class |";
    for (const BenchRow& r : rows) out += fmt::format(" {} ({} tok) |", label(r.ctx), r.prefill_chunk);
    out += "\n" + rule + "\n";
    class_lines(&BenchRow::prefill_profile);
    return out;
}
}  // namespace

Status run_bench(const CliOptions& o, const std::string& dir) {
    const int64_t n_gen = std::max<int64_t>(64, o.n_predict);
    const int64_t budget = k_warmup + n_gen;
    std::vector<int64_t> lengths = o.bench_ctx;
    if (lengths.empty()) lengths = {256, 4096, 16384, 32768, 65536, 131072, 200000};
    int64_t cap = o.n_ctx;
    if (cap <= 0) {
        ModelConfig cfg;
        Status st = load_config(dir, cfg);
        if (!st) return Status::bad_input("{}", st.message());
        cap = cfg.max_position_embeddings > 0 ? cfg.max_position_embeddings : 131072;
    }
    std::vector<int64_t> run;
    std::vector<std::string> skipped;
    for (int64_t l : lengths) {
        if (l > cap) {
            skipped.push_back(fmt::format("{} (over the cap {}, from {})", label(l), cap,
                                          o.n_ctx > 0 ? "-c" : "the model's max_position_embeddings"));
        } else if (l <= budget) {
            skipped.push_back(fmt::format("{} (needs more than {} tokens)", label(l), budget));
        } else {
            run.push_back(l);
        }
    }
    if (!o.quiet)
        for (const std::string& why : skipped) err_write(fmt::format("bench: skipping context {}\n", why));
    if (run.empty())
        return Status::usage("--bench: no context length fits (lengths must be in ({}, {}]; see --bench-ctx and -c)",
                             budget, cap);
    std::sort(run.begin(), run.end());
    run.erase(std::unique(run.begin(), run.end()), run.end());

    Machine machine = probe_machine(o);  // before the engine: it allocates buffers of its own
    std::unique_ptr<Engine> engine;
    GLM_TRY(load_engine(o, dir, run.back(), engine));
    Session& session = engine->session();
    const int64_t n_vocab = engine->info().n_vocab;
    const ModelHparams& hp = engine->hparams();
    const int n_ranks = engine->n_ranks();
    if (machine.gpu && engine->info().backend.rfind("cuda", 0) != 0) {
        machine = Machine();  // the engine chose the CPU after all
        machine.devices.push_back(cpu_model());
        machine.copy_note = "n/a on the CPU backend";
    }
    RooflineParams roof;
    roof.n_ranks = n_ranks;
    roof.kv_type = session.params().kv_type;
    roof.attn = session.params().attn;
    roof.kv_split = session.kv_split();

    std::unique_ptr<SpeculativeDecoder> spec;  // --mtp on only (the bench's default is plain decoding)
    if (o.mtp == "on") GLM_TRY(make_speculative(o, *engine, spec));

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
        GLM_TRY(prefill(session, prompt.data(), row.n_prompt, logits, interrupted, spec.get()));
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
                if (i == k_warmup && rep == 0) session.reset_replay_time();
                const double ts = now_s();
                // Greedy on the device, as plain greedy generation runs: only the id comes back.
                GLM_TRY(session.eval_greedy(&tok, 1, &tok));
                if (i >= k_warmup) times.push_back(now_s() - ts);
            }
            if (interrupted) break;
            const double total = now_s() - t_start;
            row.rep_decode_tok_s.push_back(total > 0 ? double(n_gen) / total : 0.0);
            row.token_s.push_back(std::move(times));
        }
        if (row.rep_decode_tok_s.empty()) break;
        row.decode_tok_s = median(row.rep_decode_tok_s);
        if (const Session::ReplayTime& rt = session.replay_time(); rt.steps > 0) {
            row.launch_us = 1e6 * rt.launch_s / double(rt.steps);
            row.wait_us = 1e6 * rt.wait_s / double(rt.steps);
        }
        if (spec && !interrupted) {
            // The same depth again, through speculative rounds: what MTP costs at this context with these
            // weights (synthetic weights make the draft wrong, so acceptance is near 0 there; the round's
            // cost is what carries over to real weights).
            session.truncate(row.n_prompt);
            spec->reset_stats();
            Sampler greedy(SamplerParams{0.0f, 0, 1.0f, 0.0f, 1.0f, 64, 0.0f, 0.0f, 0});
            for (int32_t t : prompt) greedy.accept(t);
            greedy.accept(first);
            int32_t tok = first;
            int64_t produced = 0;
            std::vector<int32_t> out;
            const double t0m = now_s();
            while (produced < budget && !interrupted) {
                if (term_interrupted()) interrupted = true;
                GLM_TRY(spec->step(tok, greedy, budget - produced, [](int32_t) { return false; }, out));
                produced += int64_t(out.size());
                tok = out.back();
            }
            row.mtp = true;
            row.mtp_tok_s = double(produced) / std::max(now_s() - t0m, 1e-9);
            row.mtp_stats = spec->stats();
        }
        roof.n_ctx = L;  // the decoded tokens end at depth L (they start budget tokens before)
        row.bytes = decode_bytes_per_rank(hp, roof);
        if (!interrupted) GLM_TRY(profile_decode(*engine, session, row.n_prompt, first, row.profile));
        if (!interrupted) {
            row.prefill_chunk = std::min<int64_t>(session.params().n_ubatch, row.n_prompt);
            GLM_TRY(profile_prefill(*engine, session, prompt, row.prefill_profile));
        }
        if (!o.quiet)
            err_write(fmt::format("bench: context {}: prefill {:.1f} tok/s, TTFT {:.1f} ms, decode {:.2f} tok/s\n",
                                  label(L), row.prefill_s > 0 ? row.n_prompt / row.prefill_s : 0.0,
                                  row.ttft_s * 1e3, row.decode_tok_s));
        rows.push_back(std::move(row));
    }

    // Expert usage over one prompt (synthetic weights must spread tokens like real ones): per MoE
    // layer, how many experts got a token, and tokens per expert over all layers.
    std::string usage;
    if (!interrupted && hp.n_expert > 0) {
        const int64_t n = std::min<int64_t>(k_bench_usage_tokens, run.front() - budget);
        std::vector<int32_t> ids(static_cast<size_t>(n));
        std::mt19937_64 rng(7);
        for (int32_t& t : ids) t = int32_t(rng() % uint64_t(n_vocab));
        session.reset();
        EvalCapture cap;
        GLM_TRY(session.eval(ids.data(), n, nullptr, &cap));
        std::vector<int64_t> per_expert(static_cast<size_t>(hp.n_expert), 0);
        double used_sum = 0;
        int64_t moe_layers = 0;
        for (const auto& layer : cap.experts) {
            if (layer.empty()) continue;
            std::vector<bool> used(static_cast<size_t>(hp.n_expert), false);
            for (const auto& pos : layer)
                for (int32_t e : pos) ++per_expert[size_t(e)], used[size_t(e)] = true;
            used_sum += double(std::count(used.begin(), used.end(), true));
            ++moe_layers;
        }
        std::vector<int64_t> sorted = per_expert;
        std::sort(sorted.begin(), sorted.end());
        if (moe_layers > 0)
            usage = fmt::format("- expert usage ({} tokens x {} MoE layers x {} slots): {:.1f} of {} experts used per layer "
                                "on average; tokens per expert over all layers min {} / median {} / max {}\n",
                                n, moe_layers, hp.n_expert_used, used_sum / double(moe_layers), hp.n_expert,
                                sorted.front(), sorted[sorted.size() / 2], sorted.back());
    }

    const ModelInfo& info = engine->info();
    const std::string kv_name = glm_type_name(session.params().kv_type);
    const char* attn_name = session.params().attn == AttnMode::dense ? "dense" : "dsa";
    std::string header = fmt::format("## glmrun --bench: {}\n\n", info.name);
    header += fmt::format("- machine: {} ({} rank{} on {})\n", describe_devices(machine.devices), n_ranks,
                          n_ranks == 1 ? "" : "s", info.backend);
    header += fmt::format("- copy bandwidth: {}\n",
                          machine.copy_bw > 0 ? gb_per_s(machine.copy_bw) + " per device (read + written, median of "
                                                                            "9 device-to-device copies)"
                                              : machine.copy_note);
    header += fmt::format("- attention: {}, index pattern {}; kv {}{}; prefill chunk {}\n", attn_name,
                          describe_index_pattern(hp), kv_name,
                          session.kv_split() ? fmt::format(", split by position over {} ranks", n_ranks) : "",
                          session.params().n_ubatch);
    if (info.backend.rfind("cuda:", 0) == 0) {
        const char* fusion = o.no_fuse ? "every node its own kernel (--no-fuse)" : "fused patterns";
        const char* order = info.programmatic_launch ? "programmatic dependent launch" : "plain stream order";
        header += fmt::format("- GPU launches: {}, {} (--pdl {})\n", fusion, order, o.pdl);
    }
    header += fmt::format("- weights: {}\n", info.synthetic ? fmt::format("synthetic (seed {})", o.synthetic_seed)
                                                             : std::string("from the checkpoint"));
    header += usage;
    for (const std::string& why : skipped) header += "- skipped: " + why + "\n";
    std::string table = header + "\n" + fmt::format("| context | prompt tokens | prefill tok/s (cold) | TTFT (ms) | decode tok/s |\n"
                                    "|--------:|--------------:|---------------------:|----------:|-------------:|\n");
    for (const BenchRow& r : rows)
        table += fmt::format("| {} | {} | {:.1f} | {:.1f} | {:.2f} |\n", label(r.ctx), r.n_prompt,
                             r.prefill_s > 0 ? r.n_prompt / r.prefill_s : 0.0, r.ttft_s * 1e3, r.decode_tok_s);
    if (std::any_of(rows.begin(), rows.end(), [](const BenchRow& r) { return r.launch_us > 0; })) {
        table += "\n### Host time per replayed decode step (us; every rank's graph launched from one thread)\n\n"
                 "| context | inputs + launches | waiting for the GPUs |\n|---|---:|---:|\n";
        for (const BenchRow& r : rows) table += fmt::format("| {} | {:.1f} | {:.1f} |\n", label(r.ctx), r.launch_us, r.wait_us);
    }
    if (std::any_of(rows.begin(), rows.end(), [](const BenchRow& r) { return r.mtp; })) {
        table += "\n### MTP speculative decoding (greedy, one repetition per context)\n\n"
                 "| context | decode tok/s | MTP tok/s | accepted length | verify ms / round | draft ms / round | "
                 "verify / decode step | expected tok/s at 0.80/0.55/0.29 |\n"
                 "|--:|--:|--:|--:|--:|--:|--:|--:|\n";
        for (const BenchRow& r : rows) {
            if (!r.mtp) continue;
            const SpecStats& s = r.mtp_stats;
            const double rounds = double(std::max<int64_t>(s.rounds, 1));
            const double verify_s = s.verify_s / rounds, draft_s = s.draft_s / rounds;
            const double step_s = r.decode_tok_s > 0 ? 1.0 / r.decode_tok_s : 0.0;
            table += fmt::format("| {} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f} | {:.2f}x | {:.1f} |\n", label(r.ctx),
                                 r.decode_tok_s, r.mtp_tok_s, s.mean_accepted_length(), verify_s * 1e3, draft_s * 1e3,
                                 step_s > 0 ? verify_s / step_s : 0.0,
                                 mtp_expected_tok_s(k_published_acceptance, verify_s, draft_s));
        }
    }
    out_write(table + roofline_tables(rows, machine, n_ranks));
    if (!o.quiet)
        err_write(term_dim(fmt::format("model {} on {}; decode: median of {} repetitions of {} tokens after {} "
                                       "warm-up tokens; kv {}, attn {}\n",
                                       info.name, info.backend, o.bench_reps, n_gen, k_warmup, kv_name, o.attn)));

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
                        {"backend", info.backend}, {"gpus", o.gpus}, {"devices", machine.devices},
                        {"copy_bytes_per_s_per_device", machine.copy_bytes_per_s},
                        {"copy_bytes_per_s", machine.copy_bw > 0 ? nlohmann::json(machine.copy_bw) : nlohmann::json()}};
        j["model"] = {{"dir", dir}, {"name", info.name}, {"n_layer", info.n_layer}, {"n_vocab", info.n_vocab},
                      {"n_ctx_train", info.n_ctx_train}, {"weight_bytes", info.weight_bytes}};
        j["flags"] = o.argv;
        j["settings"] = {{"n_ctx", session.n_ctx()}, {"ubatch", session.params().n_ubatch}, {"kv_type", kv_name},
                         {"kv_split", session.kv_split()}, {"fused", !o.no_fuse},
                         {"programmatic_launch", info.programmatic_launch}, {"attn", o.attn},
                         {"warmup_tokens", k_warmup}, {"decode_tokens", n_gen},
                         {"repetitions", o.bench_reps}, {"threads", o.threads}, {"n_ranks", n_ranks},
                         {"index_pattern", describe_index_pattern(hp)}, {"synthetic", info.synthetic},
                         {"synthetic_seed", info.synthetic ? nlohmann::json(o.synthetic_seed) : nlohmann::json()},
                         {"profile_steps", k_profile_steps}, {"skipped", skipped}};
        nlohmann::json results = nlohmann::json::array();
        for (const BenchRow& r : rows) {
            nlohmann::json bytes = nlohmann::json::object();
            for (const auto& [name, b] : r.bytes.rows()) bytes[name] = b;
            const double bound = roofline_tok_s(r.bytes, machine.copy_bw);
            nlohmann::json roofline = {{"bytes_per_token_per_rank", bytes},
                                       {"total_bytes_per_token_per_rank", r.bytes.total()},
                                       {"roofline_tok_s", bound > 0 ? nlohmann::json(bound) : nlohmann::json()},
                                       {"achieved", bound > 0 ? nlohmann::json(r.decode_tok_s / bound) : nlohmann::json()}};
            auto classes = [](const double* us) {
                nlohmann::json c = nlohmann::json::object();
                for (int k = 0; k < k_classes; ++k) c[kernel_class_name(KernelClass(k))] = us[k];
                return c;
            };
            nlohmann::json profile;  // null when the backends have no timers
            if (r.profile.have) {
                nlohmann::json per_rank = nlohmann::json::array();
                for (const KernelTimes& t : r.profile.per_rank) per_rank.push_back(classes(t.us));
                profile = {{"kernel_us_per_token", classes(r.profile.class_us)}, {"per_rank", per_rank},
                           {"kernels_us", r.profile.kernel_us}, {"step_us", step_us(r)},
                           {"gaps_us", step_us(r) - r.profile.kernel_us}};
            }
            results.push_back({{"ctx", r.ctx}, {"prompt_tokens", r.n_prompt}, {"prefill_s", r.prefill_s},
                               {"prefill_tok_s", r.prefill_s > 0 ? r.n_prompt / r.prefill_s : 0.0},
                               {"ttft_s", r.ttft_s}, {"decode_tok_s", r.decode_tok_s},
                               {"host_launch_us", r.launch_us}, {"host_wait_us", r.wait_us},
                               {"decode_tok_s_per_rep", r.rep_decode_tok_s}, {"decode_token_s", r.token_s},
                               {"roofline", roofline}, {"profile", profile},
                               {"mtp", r.mtp ? nlohmann::json{{"tok_s", r.mtp_tok_s}, {"rounds", r.mtp_stats.rounds},
                                                              {"tokens", r.mtp_stats.tokens},
                                                              {"accepted_length", r.mtp_stats.mean_accepted_length()},
                                                              {"verify_s", r.mtp_stats.verify_s}, {"draft_s", r.mtp_stats.draft_s}}
                                             : nlohmann::json()},
                               {"prefill_profile", r.prefill_profile.have
                                                       ? nlohmann::json{{"chunk_tokens", r.prefill_chunk},
                                                                        {"kernel_us_per_chunk", classes(r.prefill_profile.class_us)},
                                                                        {"kernels_us", r.prefill_profile.kernel_us}}
                                                       : nlohmann::json()}});
        }
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
