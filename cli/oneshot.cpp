// One-shot runs (-p / -f / stdin / --prompt-ids) and --tokenize, plus the setup the modes share.
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>

#include "cli/app.h"
#include "cli/chat.h"
#include "cli/generate.h"
#include "cli/term.h"
#include "engine/config.h"
#include "engine/npy.h"
#include "engine/verify.h"

namespace {
bool is_dir(const std::string& path) {
    struct stat st {};
    return stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

bool read_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return false;
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return !in.bad();
}

std::string read_all_stdin() {
    std::string out;
    char buf[65536];
    for (;;) {
        const ssize_t r = read(STDIN_FILENO, buf, sizeof buf);
        if (r > 0) out.append(buf, size_t(r));
        else if (r < 0 && errno == EINTR && !term_interrupted()) continue;
        else break;
    }
    return out;
}

// -p, then -f's text or piped stdin, separated by a blank line.
Status gather_prompt(const CliOptions& o, std::string& text) {
    std::string body;
    bool have_body = false;
    if (!o.prompt_file.empty()) {
        if (!read_file(o.prompt_file, body)) return Status::bad_input("cannot read prompt file '{}'", o.prompt_file);
        have_body = true;
    } else if (!term_stdin_tty()) {
        body = read_all_stdin();
        have_body = !body.empty();
    }
    if (o.prompt && have_body) text = *o.prompt + "\n\n" + body;
    else if (o.prompt) text = *o.prompt;
    else if (have_body) text = body;
    else return Status::usage("no prompt: give -p TEXT, -f FILE, pipe text on stdin, or use -i");
    return {};
}

std::string join_ids(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

// The prompt's token ids (template unless --raw).
Status prompt_tokens(const CliOptions& o, std::string text, const glm::Tokenizer& tok, std::vector<int32_t>& ids) {
    if (!o.prompt_ids.empty()) {
        ids = o.prompt_ids;
        return {};
    }
    if (!o.raw) {
        std::vector<ChatMessage> msgs;
        if (o.system) msgs.push_back({"system", *o.system, "", false});
        msgs.push_back({"user", text, "", false});
        text = render_chat(msgs, o.think);
    }
    ids = tok.encode(text);
    if (ids.empty()) return Status::bad_input("the prompt is empty");
    return {};
}

double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}
}  // namespace

std::string resolve_model_dir(const CliOptions& o) {
    if (!o.model_dir.empty()) return o.model_dir;
    const std::string bundled = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";
    if (is_dir(bundled)) return bundled;
    const std::string fixture = std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures/dense_moe";
    if (!o.quiet)
        err_write(term_dim(fmt::format("note: the bundled model {} is not there yet; using the test fixture {} "
                                       "(random weights: the text is noise)\n", bundled, fixture)));
    return fixture;
}

Status make_engine_params(const CliOptions& o, const std::string& dir, int64_t n_ctx_override, EngineParams& p) {
    if (!is_dir(dir)) return Status::bad_input("model directory '{}' not found", dir);
    p.model_dir = dir;
    apply_engine_flags(o, p);  // --cpu / -tp / --gpus / --no-p2p / --synthetic
    p.n_threads = o.threads;
    p.index_pattern = o.index_pattern;
    p.show_progress = !o.quiet;
    p.session.n_ubatch = o.ubatch;
    p.ubatch_auto = o.ubatch_auto;
    p.session.attn = o.attn == "dense" ? AttnMode::dense : AttnMode::dsa;
    p.session.dump_names = o.dump_tensors;
    p.session.dump_dir = o.dump_dir;
    p.session.replay_decode = !o.no_graph_replay;
    if (o.bench) p.session.n_capture = k_bench_usage_tokens;
    // Room for the verify graph whenever MTP may run (its arena share is a few rows of logits).
    if (o.mtp != "off") p.session.n_verify = o.n_draft + 1;
    p.load_mtp = o.mtp != "off";
    p.kv_type_auto = o.kv_type.empty();
    p.kv_split = o.kv_split == "on" ? KvSplitMode::on : o.kv_split == "off" ? KvSplitMode::off : KvSplitMode::automatic;
    if (!o.kv_type.empty()) {
        Status st = parse_kv_type(o.kv_type, p.session.kv_type);
        if (!st) return Status::usage("--kv-type: {}", st.message());
    }
    int64_t n_ctx = n_ctx_override > 0 ? n_ctx_override : o.n_ctx;
    if (n_ctx <= 0) {
        ModelConfig cfg;
        Status st = load_config(dir, cfg);
        if (!st) return Status::bad_input("{}", st.message());
        n_ctx = cfg.max_position_embeddings > 0 ? std::min<int64_t>(4096, cfg.max_position_embeddings) : 4096;
    }
    p.session.n_ctx = n_ctx;
    return {};
}

Status load_engine(const CliOptions& o, const std::string& dir, int64_t n_ctx_override, std::unique_ptr<Engine>& out) {
    EngineParams p;
    GLM_TRY(make_engine_params(o, dir, n_ctx_override, p));
    const int64_t n_ctx = p.session.n_ctx;
    Status st = Engine::load(p, out);
    if (!st) return st;
    log_info("model {} on {}: {} layers, vocab {}, context {}", out->info().name, out->info().backend,
             out->info().n_layer, out->info().n_vocab, n_ctx);
    return {};
}

SamplerParams make_sampler_params(const CliOptions& o, const ModelInfo& info) {
    SamplerParams s = info.default_sampling;
    if (o.temp) s.temperature = *o.temp;
    if (o.top_k) s.top_k = *o.top_k;
    if (o.top_p) s.top_p = *o.top_p;
    if (o.min_p) s.min_p = *o.min_p;
    if (o.repeat_penalty) s.repeat_penalty = *o.repeat_penalty;
    if (o.repeat_last_n) s.repeat_last_n = *o.repeat_last_n;
    if (o.frequency_penalty) s.frequency_penalty = *o.frequency_penalty;
    if (o.presence_penalty) s.presence_penalty = *o.presence_penalty;
    if (o.seed) s.seed = *o.seed;
    return s;
}

Status make_speculative(const CliOptions& o, Engine& engine, std::unique_ptr<SpeculativeDecoder>& out) {
    out.reset();
    const ModelInfo& info = engine.info();
    bool on = false;
    if (o.mtp == "on") {
        if (!info.has_mtp)
            return Status::bad_input("--mtp on: model {} has no MTP layer (model.layers.N with N = num_hidden_layers)",
                                     info.name);
        on = true;
    } else if (o.mtp == "auto") {
        // On the CPU reference backend a verify step costs about as much per token as a decode step, so
        // drafting rarely pays; there it is opt-in.
        on = info.has_mtp && info.backend.rfind("cpu", 0) != 0 && o.logits_out.empty() && o.dump_tensors.empty();
    }
    if (!on) return {};
    SpecParams sp;
    sp.n_draft = o.n_draft;
    sp.seed = make_sampler_params(o, info).seed;
    out = std::make_unique<SpeculativeDecoder>(engine.session(), sp);
    log_info("MTP speculative decoding: {} drafts per step", sp.n_draft);
    return {};
}

std::string git_revision() {
    const std::string git = std::string(GLMRUN_SOURCE_DIR) + "/.git/";
    std::string head;
    if (!read_file(git + "HEAD", head)) return "unknown";
    while (!head.empty() && (head.back() == '\n' || head.back() == '\r')) head.pop_back();
    if (head.rfind("ref: ", 0) != 0) return head.size() >= 12 ? head.substr(0, 12) : "unknown";
    const std::string ref = head.substr(5);
    std::string hash;
    if (read_file(git + ref, hash) && hash.size() >= 12) return hash.substr(0, 12);
    std::string packed;
    if (read_file(git + "packed-refs", packed)) {
        std::istringstream ss(packed);
        std::string line;
        while (std::getline(ss, line))
            if (line.size() > 41 && line.compare(41, std::string::npos, ref) == 0) return line.substr(0, 12);
    }
    return "unknown";
}

Status run_verify(const CliOptions& o, const std::string& dir) {
    if (!is_dir(dir)) return Status::bad_input("model directory '{}' not found", dir);
    VerifyReport rep;
    Status st = verify_model(dir, o.write_manifest, o.threads, &rep);
    if (!o.quiet)
        err_write(fmt::format("{}: {} tensors, {:.2f} GB in {:.2f} s ({:.2f} GB/s){}{}{}\n", dir, rep.n_tensors,
                              double(rep.bytes) / 1e9, rep.seconds, rep.gb_per_s,
                              rep.manifest_found ? ", manifest checked" : ", no manifest",
                              rep.n_mismatch ? fmt::format(", {} mismatches", rep.n_mismatch) : std::string(),
                              rep.manifest_written ? fmt::format(", wrote {}/{}", dir, k_manifest_name) : std::string()));
    return st;
}

Status run_tokenize(const CliOptions& o, const std::string& dir) {
    if (!is_dir(dir)) return Status::bad_input("model directory '{}' not found", dir);
    std::unique_ptr<glm::Tokenizer> tok;
    GLM_TRY(load_tokenizer(dir, tok));
    std::string text;
    if (o.prompt_ids.empty()) GLM_TRY(gather_prompt(o, text));
    std::vector<int32_t> ids;
    GLM_TRY(prompt_tokens(o, text, *tok, ids));
    out_write(join_ids(ids) + "\n");
    return {};
}

Status run_oneshot(const CliOptions& o, const std::string& dir) {
    // Read the prompt before loading (a missing prompt is a usage error, not a slow load).
    if (!o.logits_out.empty()) {
        // The .npy writer renames a temporary file over the target: never over a device or a directory.
        struct stat st {};
        if (stat(o.logits_out.c_str(), &st) == 0 && !S_ISREG(st.st_mode))
            return Status::usage("--logits-out '{}' exists and is not a regular file", o.logits_out);
    }
    std::string text;
    if (o.prompt_ids.empty()) GLM_TRY(gather_prompt(o, text));
    std::unique_ptr<Engine> engine;
    GLM_TRY(load_engine(o, dir, 0, engine));
    Session& session = engine->session();

    std::vector<int32_t> ids;
    if (!engine->has_tokenizer() && (o.prompt_ids.empty() || !o.print_ids))
        return Status::usage("{} has no tokenizer.json: give token ids (--raw --prompt-ids ... --print-ids) or use --bench",
                             dir);
    if (engine->has_tokenizer()) GLM_TRY(prompt_tokens(o, text, engine->tokenizer(), ids));
    else ids = o.prompt_ids;
    log_debug("prompt: {} tokens: {}", ids.size(), join_ids(ids));
    if (int64_t(ids.size()) > session.n_ctx())
        return Status::bad_input("the prompt is {} tokens, longer than the context size {} (raise -c)", ids.size(),
                                 session.n_ctx());

    Sampler sampler(make_sampler_params(o, engine->info()));
    for (int32_t id : ids) sampler.accept(id);
    std::unique_ptr<SpeculativeDecoder> spec;
    GLM_TRY(make_speculative(o, *engine, spec));

    const double t0 = now_s();
    std::vector<float> logits;
    bool interrupted = false;
    GLM_TRY(prefill(session, ids.data(), int64_t(ids.size()), logits, interrupted, spec.get()));
    const double t_prefill = now_s() - t0;
    if (interrupted) return Status::error(ErrorKind::interrupted, "interrupted");

    GenOptions g;
    g.n_predict = o.n_predict;
    g.chat = !o.raw;
    g.think = o.think;
    g.show_think = o.show_think;
    g.print_ids = o.print_ids;
    g.quiet = o.quiet;
    g.keep_logits = !o.logits_out.empty();
    g.spec = spec.get();
    GenResult r;
    std::vector<float> prompt_logits;
    if (g.keep_logits && o.n_predict == 0) prompt_logits = logits;  // -n 0: just the prompt's row
    GLM_TRY(generate(*engine, sampler, std::move(logits), g, r));
    if (g.keep_logits && r.logits_rows.empty()) r.logits_rows = std::move(prompt_logits);

    if (g.keep_logits) {
        const int64_t n_vocab = engine->info().n_vocab;
        GLM_TRY(npy_write_f32(o.logits_out, r.logits_rows.data(), {int64_t(r.logits_rows.size()) / n_vocab, n_vocab}));
    }
    if (o.print_ids) out_write("\n");
    else if (term_stdout_tty() && !r.content.empty()) out_write("\n");

    const int64_t n_gen = int64_t(r.ids.size());
    log_info("{}", term_dim(fmt::format("prompt {} tokens in {:.2f} s ({:.1f} tok/s), generated {} tokens in {:.2f} s "
                                        "({:.1f} tok/s), context {}/{}",
                                        ids.size(), t_prefill, t_prefill > 0 ? ids.size() / t_prefill : 0.0, n_gen,
                                        r.decode_s, r.decode_s > 0 ? n_gen / r.decode_s : 0.0, session.n_past(),
                                        session.n_ctx())));
    if (spec && !o.quiet)
        err_write(term_dim(fmt::format("{}, {:.1f} tok/s\n", spec->stats().summary(),
                                       r.decode_s > 0 ? n_gen / r.decode_s : 0.0)));
    if (r.ctx_full && !o.quiet)
        err_write(fmt::format("note: the context is full ({} tokens); raise -c for longer answers\n", session.n_ctx()));
    if (r.interrupted) return Status::error(ErrorKind::interrupted, "interrupted");
    return {};
}

Status run_plan(const CliOptions& o, const std::string& dir) {
    EngineParams p;
    int64_t n_ctx = o.n_ctx;
    if (n_ctx <= 0) {  // the plan's question is the whole window unless -c says otherwise
        ModelConfig cfg;
        Status st = load_config(dir, cfg);
        if (!st) return Status::bad_input("{}", st.message());
        n_ctx = cfg.max_position_embeddings;
    }
    GLM_TRY(make_engine_params(o, dir, n_ctx, p));
    std::string report;
    const Status st = Engine::plan(p, report);
    out_write(report);
    return st;
}
