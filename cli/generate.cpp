#include "cli/generate.h"

#include <optional>

#include <chrono>
#include <cstdint>
#include <cstdio>

#include "cli/chat.h"
#include "cli/term.h"
#include "tokenizer/stream-decoder.h"

namespace {
double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

// Routes decided reasoning / content text to the right stream.
struct TextRouter {
    const GenOptions& opt;
    GenResult& out;
    bool think_open = false;      // "<think>" printed on stdout (--show-think)
    bool reasoning_seen = false;  // something went to stderr

    void reasoning(const std::string& text) {
        if (text.empty()) return;
        out.reasoning += text;
        if (opt.show_think) {
            if (!think_open) {
                think_open = true;
                text_out("<think>");
            }
            text_out(text);
        } else if (!opt.quiet) {
            reasoning_seen = true;
            err_write(term_dim(text));
        }
    }
    void content(const std::string& text) {
        if (text.empty()) return;
        close_think();
        out.content += text;
        text_out(text);
    }
    void close_think() {
        if (think_open) {
            think_open = false;
            text_out("</think>");
        }
        if (reasoning_seen) {
            reasoning_seen = false;
            err_write("\n");
        }
    }
    void text_out(const std::string& text) {
        if (!out_write(text)) out.stdout_gone = true;
    }
};
}  // namespace

Status prefill(Session& session, const int32_t* tokens, int64_t n, std::vector<float>& logits, bool& interrupted,
               SpeculativeDecoder* spec) {
    interrupted = false;
    const int64_t ubatch = session.params().n_ubatch;
    for (int64_t done = 0; done < n;) {
        if (term_interrupted()) {
            interrupted = true;
            return {};
        }
        const int64_t chunk = std::min(ubatch, n - done);
        // Only the last chunk's logits are read: reading waits for the devices, and a chunk that
        // nobody waits for overlaps with the host building the next one.
        std::vector<float>* chunk_logits = done + chunk == n ? &logits : nullptr;
        if (spec) {
            std::vector<float> hidden;
            const int64_t start = session.n_past();
            GLM_TRY(session.eval(tokens + done, chunk, chunk_logits, nullptr, &hidden));
            GLM_TRY(spec->observe(tokens + done, chunk, start, hidden.data()));
        } else {
            GLM_TRY(session.eval(tokens + done, chunk, chunk_logits));
        }
        done += chunk;
    }
    return {};
}

Status generate(Engine& engine, Sampler& sampler, std::vector<float> logits, const GenOptions& opt, GenResult& out) {
    Session& session = engine.session();
    // Without a tokenizer (a synthetic model) only ids are printed: run_oneshot checks --print-ids.
    std::optional<glm::StreamDecoder> decoder;
    if (engine.has_tokenizer()) decoder.emplace(engine.tokenizer());
    ReasoningSplitter splitter(opt.chat && opt.think);
    TextRouter router{opt, out};
    const int64_t n_vocab = engine.info().n_vocab;

    const double t0 = now_s();
    const int64_t n_start = session.n_past();
    bool first_id = true;
    GLM_ASSERT(!(opt.spec && opt.keep_logits));
    // With MTP a round yields several tokens at once (already passed to the sampler): they are routed
    // one by one through the same checks as sampled ones.
    std::vector<int32_t> ready;
    size_t ready_at = 0;
    // Plain greedy decoding: the device picks the next id (only 8 bytes per rank come back).
    const bool device_greedy = sampler.is_plain_greedy() && !opt.spec && !opt.keep_logits;
    int32_t device_next = -1;
    for (;;) {
        if (term_interrupted()) {
            out.interrupted = true;
            break;
        }
        if (opt.n_predict >= 0 && int64_t(out.ids.size()) >= opt.n_predict) break;
        int32_t id;
        if (ready_at < ready.size()) {
            id = ready[ready_at++];
        } else if (device_next >= 0) {
            id = device_next;
            sampler.accept(id);
        } else {
            if (int64_t(logits.size()) < n_vocab)
                return Status::device("the engine returned {} logits, expected {}", logits.size(), n_vocab);
            if (opt.keep_logits) out.logits_rows.insert(out.logits_rows.end(), logits.begin(), logits.begin() + n_vocab);
            id = sampler.sample(logits);
            sampler.accept(id);
        }
        out.ids.push_back(id);

        if (opt.print_ids) {
            router.text_out(fmt::format("{}{}", first_id ? "" : ",", id));
            first_id = false;
        }
        if (engine.is_eos(id)) {
            out.hit_eos = true;
            break;
        }
        if (!opt.print_ids) {
            std::string reasoning, content;
            const std::string text = decoder ? decoder->push(id) : std::string();
            if (opt.chat) splitter.push(text, reasoning, content);
            else content = text;
            router.reasoning(reasoning);
            router.content(content);
        }
        if (out.stdout_gone) break;
        if (opt.n_predict >= 0 && int64_t(out.ids.size()) >= opt.n_predict) break;
        if (ready_at < ready.size()) {  // the verify step already evaluated it
            out.evaluated.push_back(id);
            continue;
        }
        if (session.n_past() >= session.n_ctx()) {
            out.ctx_full = true;
            break;
        }
        if (opt.spec) {
            const int64_t max_new = opt.n_predict >= 0 ? opt.n_predict - int64_t(out.ids.size()) : INT64_MAX;
            GLM_TRY(opt.spec->step(id, sampler, max_new, [&](int32_t t) { return engine.is_eos(t); }, ready));
            ready_at = 0;
        } else if (device_greedy) {
            GLM_TRY(session.eval_greedy(&id, 1, &device_next));
        } else {
            GLM_TRY(session.eval(&id, 1, &logits));
        }
        out.evaluated.push_back(id);
    }
    // Stopped inside a round (Ctrl-C, stdout gone): the session keeps what `evaluated` lists.
    if (ready_at < ready.size()) session.truncate(n_start + int64_t(out.evaluated.size()));
    if (!opt.print_ids) {
        std::string reasoning, content;
        const std::string tail = decoder ? decoder->flush() : std::string();
        if (opt.chat) {
            splitter.push(tail, reasoning, content);
            splitter.flush(reasoning, content);
        } else {
            content = tail;
        }
        router.reasoning(reasoning);
        router.content(content);
        router.close_think();
    }
    out.decode_s = now_s() - t0;
    return {};
}

