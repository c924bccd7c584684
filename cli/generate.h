// The generation loop shared by one-shot runs and the REPL: prefill in interruptible chunks, then
// sample, stream-decode and route text (answer to stdout, reasoning to stderr) until EOS, -n, the end
// of the context or Ctrl-C.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/speculative.h"

struct GenOptions {
    int64_t n_predict = -1;       // -1: no limit
    bool chat = true;             // split reasoning / content (false: --raw, everything is content)
    bool think = true;            // the prompt ends inside <think>
    bool show_think = false;      // reasoning on stdout inside <think>...</think>
    bool print_ids = false;       // ids on stdout instead of text
    bool quiet = false;           // no reasoning on stderr
    bool keep_logits = false;     // collect logits rows (--logits-out)
    SpeculativeDecoder* spec = nullptr;  // MTP speculative decoding (--mtp; not with keep_logits)
};

struct GenResult {
    std::vector<int32_t> ids;         // generated ids (the stop token included)
    std::vector<int32_t> evaluated;   // generated ids that went through the model (all but the last)
    std::string content, reasoning;
    std::vector<float> logits_rows;   // [rows, n_vocab] when keep_logits
    bool interrupted = false;
    bool hit_eos = false;
    bool ctx_full = false;
    bool stdout_gone = false;
    int64_t n_prefilled = 0;
    double prefill_s = 0, decode_s = 0;
};

// Evaluate tokens at the session's current position in chunks of the session's prefill chunk
// (--ubatch, or the engine's choice), polling Ctrl-C between chunks. logits receives the last
// position's logits. Sets interrupted (and returns ok) on Ctrl-C. spec (optional) is shown every
// chunk's hidden states, so its MTP layer keeps up with the prompt.
Status prefill(Session& session, const int32_t* tokens, int64_t n, std::vector<float>& logits, bool& interrupted,
               SpeculativeDecoder* spec = nullptr);

// Generate from the logits of the last prefilled position. The sampler must already have accepted
// the prompt tokens.
Status generate(Engine& engine, Sampler& sampler, std::vector<float> logits, const GenOptions& opt, GenResult& out);
