// The modes of the command line, each returning the Status main turns into an exit code.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "cli/options.h"
#include "engine/engine.h"
#include "engine/speculative.h"

// -m, or the bundled tiny model (falling back to the test fixture with a note while it is absent).
std::string resolve_model_dir(const CliOptions& opts);
// Check the directory exists and load the engine for this command line (n_ctx_override > 0 replaces -c).
Status load_engine(const CliOptions& opts, const std::string& model_dir, int64_t n_ctx_override,
                   std::unique_ptr<Engine>& out);
// Tokens of the prompt whose routed experts --bench reports (a capture: the session keeps room for it).
constexpr int64_t k_bench_usage_tokens = 128;
// The model's sampling defaults with the flags given on the command line on top.
SamplerParams make_sampler_params(const CliOptions& opts, const ModelInfo& info);
// The MTP speculative decoder this command line asks for (--mtp, --draft), or null when MTP is off.
// --mtp on with a model without the layer is an error; the default turns it on for GPU backends only.
Status make_speculative(const CliOptions& opts, Engine& engine, std::unique_ptr<SpeculativeDecoder>& out);
// The source tree's git revision ("unknown" when not a checkout with commits).
std::string git_revision();

Status run_oneshot(const CliOptions& opts, const std::string& model_dir);
// --plan-only: the per-rank memory plan (weights, caches, activations) for the asked ranks and
// context, and whether it fits common cards; allocates nothing.
Status run_plan(const CliOptions& opts, const std::string& model_dir);
// The engine settings the flags ask for (shared by every mode that loads a model).
Status make_engine_params(const CliOptions& opts, const std::string& model_dir, int64_t n_ctx_override,
                          EngineParams& out);
Status run_verify(const CliOptions& opts, const std::string& model_dir);
Status run_tokenize(const CliOptions& opts, const std::string& model_dir);
Status run_repl(const CliOptions& opts, const std::string& model_dir);
Status run_bench(const CliOptions& opts, const std::string& model_dir);
