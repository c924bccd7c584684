// glmrun -i: multi-turn chat through the chat template. The KV cache keeps the tokens of the last
// turn; each turn renders the whole conversation, keeps the longest common prefix with the cache and
// prefills only the rest.
#include <chrono>
#include <fstream>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli/app.h"
#include "cli/chat.h"
#include "cli/generate.h"
#include "cli/term.h"

namespace {

const char* k_repl_help =
    "commands:\n"
    "  /help            this list\n"
    "  /reset           forget the conversation (keeps /system)\n"
    "  /system [TEXT]   set the system prompt (no TEXT: clear it)\n"
    "  /think on|off    thinking for the next answers\n"
    "  /temp X          sampling temperature (0 = greedy)\n"
    "  /save FILE       write the conversation as JSON\n"
    "  /load FILE       read a conversation written by /save\n"
    "  /stats           context use and speed\n"
    "  /quit            leave (Ctrl-D too)\n"
    "input: end a line with \\ to continue it; a line \"\"\" starts and ends a paste block.\n"
    "line editing and history: libedit when installed (off with --simple-io).\n"
    "Ctrl-C stops an answer (the partial answer stays in the history, marked).\n";

double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

std::string trim(const std::string& s) {
    const size_t b = s.find_first_not_of(" \t\r\n");
    if (b == std::string::npos) return "";
    const size_t e = s.find_last_not_of(" \t\r\n");
    return s.substr(b, e - b + 1);
}

class Repl {
public:
    Repl(const CliOptions& o, Engine& engine, SpeculativeDecoder* spec)
        : o_(o), engine_(engine), session_(engine.session()), spec_(spec), think_(o.think),
          sampling_(make_sampler_params(o, engine.info())), system_(o.system) {}

    Status run() {
        if (!o_.quiet)
            note(fmt::format("glmrun chat: {} on {}, context {} tokens. /help for commands, Ctrl-D to quit.",
                             engine_.info().name, engine_.info().backend, session_.n_ctx()));
        if (o_.prompt && !o_.prompt->empty()) {  // -p with -i: the first user turn
            if (term_stdin_tty()) out_write("> " + *o_.prompt + "\n");
            GLM_TRY(turn(*o_.prompt));
        }
        for (;;) {
            std::string input;
            const int r = read_input(input);
            if (r == 0) {
                if (term_stdin_tty()) out_write("\n");
                return {};
            }
            if (r < 0) continue;  // Ctrl-C at the prompt: a fresh prompt
            const std::string cmd = trim(input);
            if (cmd.empty()) continue;
            if (cmd[0] == '/') {
                if (!command(cmd)) return {};
                continue;
            }
            GLM_TRY(turn(input));
        }
    }

private:
    void note(const std::string& text) { err_write(term_dim(text) + "\n"); }

    // One logical input (continuation lines and paste blocks joined). 1 input, 0 end, -1 Ctrl-C.
    int read_input(std::string& out) {
        const bool tty = term_stdin_tty();
        const std::string more = tty ? "... " : "";
        std::string line;
        int r = term_prompt_line(tty ? "> " : "", line);
        if (r < 0) {
            term_clear_interrupt();
            if (!term_line_editing()) out_write("\n");
            return -1;
        }
        if (r == 0) return 0;
        auto cancelled = [&]() {
            term_clear_interrupt();
            if (!term_line_editing()) out_write("\n");
            return -1;
        };
        if (trim(line) == "\"\"\"") {  // paste block
            for (;;) {
                r = term_prompt_line(more, line);
                if (r < 0) return cancelled();
                if (r == 0 || trim(line) == "\"\"\"") break;
                out += line + "\n";
            }
            if (!out.empty()) out.pop_back();
            term_add_history(out);
            return 1;
        }
        while (!line.empty() && line.back() == '\\') {
            line.pop_back();
            out += line + "\n";
            r = term_prompt_line(more, line);
            if (r < 0) return cancelled();
            if (r == 0) {
                line.clear();
                break;
            }
        }
        out += line;
        term_add_history(out);
        return 1;
    }

    std::vector<ChatMessage> conversation() const {
        std::vector<ChatMessage> all;
        if (system_ && !system_->empty()) all.push_back({"system", *system_, "", false});
        all.insert(all.end(), messages_.begin(), messages_.end());
        return all;
    }

    Status turn(const std::string& text) {
        messages_.push_back({"user", text, "", false});
        const std::vector<int32_t> ids = engine_.tokenizer().encode(render_chat(conversation(), think_));
        const int64_t n_ctx = session_.n_ctx();
        if (int64_t(ids.size()) > n_ctx) {
            messages_.pop_back();
            err_write(fmt::format("the context is full: this turn needs {} tokens, the context holds {}. "
                                  "Type /reset to start over (or restart with a larger -c).\n",
                                  ids.size(), n_ctx));
            return {};
        }
        // Keep the common prefix with what the cache holds; at least one token is evaluated for logits.
        size_t keep = 0;
        while (keep < cached_.size() && keep < ids.size() && cached_[keep] == ids[keep]) ++keep;
        if (keep == ids.size()) --keep;
        session_.truncate(int64_t(keep));
        cached_.resize(keep);

        const double t0 = now_s();
        std::vector<float> logits;
        bool interrupted = false;
        Status st = prefill(session_, ids.data() + keep, int64_t(ids.size() - keep), logits, interrupted, spec_);
        cached_.assign(ids.begin(), ids.begin() + std::min<int64_t>(session_.n_past(), int64_t(ids.size())));
        if (!st.ok() || interrupted) {
            messages_.pop_back();
            term_clear_interrupt();
            if (!st.ok()) {
                if (st.kind() == ErrorKind::device) return st;
                err_write(fmt::format("error: {}\n", st.message()));
            } else {
                note("[interrupted]");
            }
            return {};
        }
        const double t_prefill = now_s() - t0;

        Sampler sampler(sampling_);
        for (int32_t id : ids) sampler.accept(id);
        GenOptions g;
        g.n_predict = o_.n_predict;
        g.chat = true;
        g.think = think_;
        g.show_think = o_.show_think;
        g.quiet = o_.quiet;
        g.spec = spec_;
        GenResult r;
        st = generate(engine_, sampler, std::move(logits), g, r);
        cached_.insert(cached_.end(), r.evaluated.begin(), r.evaluated.end());
        if (!st.ok()) {
            // keep the conversation consistent: the partial answer is dropped with its question
            messages_.pop_back();
            session_.truncate(0);
            cached_.clear();
            if (st.kind() == ErrorKind::device) return st;
            err_write(fmt::format("\nerror: {}\n", st.message()));
            return {};
        }
        ChatMessage answer{"assistant", trim(r.content), trim(r.reasoning), r.interrupted || r.ctx_full};
        messages_.push_back(answer);
        out_write("\n");
        if (r.interrupted) {
            term_clear_interrupt();
            note("[interrupted: the partial answer stays in the history]");
        }
        if (r.ctx_full)
            err_write(fmt::format("the context is full ({} tokens): the answer was cut. Type /reset to start "
                                  "over.\n", n_ctx));
        last_tokens_ = int64_t(r.ids.size());
        last_tps_ = r.decode_s > 0 ? double(r.ids.size()) / r.decode_s : 0.0;
        last_prefill_tokens_ = int64_t(ids.size() - keep);
        last_prefill_tps_ = t_prefill > 0 ? double(last_prefill_tokens_) / t_prefill : 0.0;
        total_tokens_ += last_tokens_;
        if (!o_.quiet)
            note(fmt::format("[{} tokens, {:.1f} tok/s, prefill {} tokens, context {}/{}]", last_tokens_, last_tps_,
                             last_prefill_tokens_, session_.n_past(), n_ctx));
        return {};
    }

    // false: leave the REPL.
    bool command(const std::string& line) {
        const size_t sp = line.find_first_of(" \t");
        const std::string name = line.substr(0, sp);
        const std::string arg = sp == std::string::npos ? "" : trim(line.substr(sp));
        if (name == "/quit" || name == "/exit" || name == "/q") return false;
        if (name == "/help") {
            err_write(k_repl_help);
        } else if (name == "/reset") {
            messages_.clear();
            session_.reset();
            cached_.clear();
            note("[conversation cleared]");
        } else if (name == "/system") {
            if (arg.empty()) system_.reset();
            else system_ = arg;
            note(arg.empty() ? "[system prompt cleared]" : "[system prompt set]");
        } else if (name == "/think") {
            if (arg != "on" && arg != "off") {
                err_write("usage: /think on|off\n");
            } else {
                think_ = arg == "on";
                note(fmt::format("[thinking {}]", arg));
            }
        } else if (name == "/temp") {
            float t = -1;
            try {
                size_t used = 0;
                t = std::stof(arg, &used);
                if (used != arg.size()) t = -1;
            } catch (...) {
                t = -1;
            }
            if (!(t >= 0.0f && t <= 100.0f)) {
                err_write("usage: /temp X (a number >= 0; 0 = greedy)\n");
            } else {
                sampling_.temperature = t;
                note(fmt::format("[temperature {}]", t));
            }
        } else if (name == "/save") {
            if (arg.empty()) err_write("usage: /save FILE\n");
            else save(arg);
        } else if (name == "/load") {
            if (arg.empty()) err_write("usage: /load FILE\n");
            else load(arg);
        } else if (name == "/stats") {
            err_write(fmt::format("turns {}, context {}/{} tokens, KV cache {:.1f} MiB\n"
                                  "last answer: {} tokens at {:.1f} tok/s (prefill {} tokens at {:.1f} tok/s); "
                                  "total generated {}\n"
                                  "temperature {}, thinking {}, system prompt {}\n",
                                  messages_.size(), session_.n_past(), session_.n_ctx(),
                                  double(session_.kv_bytes()) / 1048576.0, last_tokens_, last_tps_,
                                  last_prefill_tokens_, last_prefill_tps_, total_tokens_, sampling_.temperature,
                                  think_ ? "on" : "off", system_ ? "set" : "none"));
            if (spec_) err_write(spec_->stats().summary() + "\n");
        } else {
            err_write(fmt::format("unknown command {} (/help lists them)\n", name));
        }
        return true;
    }

    void save(const std::string& path) {
        nlohmann::json j;
        j["format"] = "glmrun-chat";
        j["version"] = 1;
        j["think"] = think_;
        j["temperature"] = sampling_.temperature;
        nlohmann::json msgs = nlohmann::json::array();
        for (const ChatMessage& m : conversation()) {
            nlohmann::json jm{{"role", m.role}, {"content", m.content}};
            if (!m.reasoning.empty()) jm["reasoning_content"] = m.reasoning;
            if (m.interrupted) jm["interrupted"] = true;
            msgs.push_back(jm);
        }
        j["messages"] = msgs;
        std::ofstream out(path, std::ios::binary);
        if (out) out << j.dump(2) << "\n";
        out.close();
        if (!out) {
            err_write(fmt::format("error: cannot write {}\n", path));
            return;
        }
        note(fmt::format("[saved {} messages to {}]", msgs.size(), path));
    }

    void load(const std::string& path) {
        std::ifstream in(path, std::ios::binary);
        if (!in) {
            err_write(fmt::format("error: cannot read {}\n", path));
            return;
        }
        std::optional<std::string> system;
        std::vector<ChatMessage> msgs;
        bool think = think_;
        try {
            const nlohmann::json j = nlohmann::json::parse(in);
            if (!j.is_object() || !j.contains("messages") || !j["messages"].is_array())
                throw std::runtime_error("no \"messages\" array");
            if (j.contains("think")) think = j["think"].get<bool>();
            for (const auto& jm : j["messages"]) {
                ChatMessage m;
                m.role = jm.at("role").get<std::string>();
                m.content = jm.at("content").get<std::string>();
                if (jm.contains("reasoning_content")) m.reasoning = jm["reasoning_content"].get<std::string>();
                if (jm.contains("interrupted")) m.interrupted = jm["interrupted"].get<bool>();
                if (m.role == "system" && msgs.empty()) system = m.content;
                else if (m.role == "user" || m.role == "assistant") msgs.push_back(m);
                else throw std::runtime_error("unexpected role '" + m.role + "'");
            }
        } catch (const std::exception& e) {
            err_write(fmt::format("error: {} is not a conversation saved by /save: {}\n", path, e.what()));
            return;
        }
        messages_ = std::move(msgs);
        system_ = system;
        think_ = think;
        note(fmt::format("[loaded {} messages from {}]", messages_.size(), path));
    }

    const CliOptions& o_;
    Engine& engine_;
    Session& session_;
    SpeculativeDecoder* spec_;  // null: MTP off
    bool think_;
    SamplerParams sampling_;
    std::optional<std::string> system_;
    std::vector<ChatMessage> messages_;  // user / assistant turns
    std::vector<int32_t> cached_;        // tokens whose K/V the session holds
    int64_t last_tokens_ = 0, last_prefill_tokens_ = 0, total_tokens_ = 0;
    double last_tps_ = 0, last_prefill_tps_ = 0;
};

}  // namespace

Status run_repl(const CliOptions& o, const std::string& dir) {
    if (o.simple_io) term_disable_line_editing();
    std::unique_ptr<Engine> engine;
    GLM_TRY(load_engine(o, dir, 0, engine));
    if (!engine->has_tokenizer())
        return Status::usage("{} has no tokenizer.json: the chat needs one (a synthetic model runs --bench)", dir);
    std::unique_ptr<SpeculativeDecoder> spec;
    GLM_TRY(make_speculative(o, *engine, spec));
    Repl repl(o, *engine, spec.get());
    return repl.run();
}
