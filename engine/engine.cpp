#include "engine/engine.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <deque>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/checkpoint.h"
#include "engine/memory-plan.h"
#include "engine/weights.h"
#include "ggml-like/tp.h"
#ifdef GLMRUN_HAVE_CUDA
#include "cuda/backend.h"
#endif

struct Engine::Impl {
    EngineParams params;
    ModelInfo info;
    std::unique_ptr<glm::Tokenizer> tokenizer;
    std::vector<std::unique_ptr<glm_backend>> backends;  // one per tensor-parallel rank
    std::unique_ptr<glm_comm> comm;                      // null with one rank
    LoadedModel model;
    std::unique_ptr<Session> session;
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;
const ModelInfo& Engine::info() const { return impl_->info; }
bool Engine::has_tokenizer() const { return impl_->tokenizer != nullptr; }
const glm::Tokenizer& Engine::tokenizer() const {
    GLM_ASSERT(impl_->tokenizer);
    return *impl_->tokenizer;
}
Session& Engine::session() { return *impl_->session; }
const ModelHparams& Engine::hparams() const { return impl_->model.hp; }
int Engine::n_ranks() const { return int(impl_->backends.size()); }
std::vector<glm_backend*> Engine::backends() const {
    std::vector<glm_backend*> out;
    for (const auto& b : impl_->backends) out.push_back(b.get());
    return out;
}

bool Engine::is_eos(int32_t token) const {
    for (int32_t e : impl_->info.eos_ids)
        if (e == token) return true;
    return false;
}

Status parse_kv_type(const std::string& text, glm_type& out) {
    if (text == "f32") out = GLM_TYPE_F32;
    else if (text == "bf16") out = GLM_TYPE_BF16;
    else if (text == "f16") out = GLM_TYPE_F16;
    else if (text == "fp8" || text == "f8" || text == "f8_e4m3") out = GLM_TYPE_F8_E4M3;
    else return Status::usage("--kv-type '{}' is not one of f32, bf16, f16, fp8", text);
    return {};
}

static bool is_directory(const std::string& path) {
    struct stat st;
    return ::stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

Status load_tokenizer(const std::string& model_dir, std::unique_ptr<glm::Tokenizer>& out) {
    if (!is_directory(model_dir))
        return Status::bad_input("model directory '{}' does not exist (pass -m with a Hugging Face model directory)",
                                 model_dir);
    const std::string path = model_dir + "/tokenizer.json";
    std::string error;
    std::optional<glm::Tokenizer> tok = glm::Tokenizer::load(path, error);
    if (!tok) return Status::bad_input("{}", error.empty() ? fmt::format("{}: cannot load the tokenizer", path) : error);
    out = std::make_unique<glm::Tokenizer>(std::move(*tok));
    return {};
}

// Sampling defaults: the model card's, overridden by generation_config.json where it says more.
static SamplerParams read_sampling_defaults(const std::string& dir) {
    SamplerParams p;
    std::ifstream in(dir + "/generation_config.json");
    if (!in) return p;
    const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
    if (!j.is_object()) return p;  // the loader reports a malformed file; sampling keeps defaults
    if (j.contains("temperature") && j["temperature"].is_number()) p.temperature = j["temperature"].get<float>();
    if (j.contains("top_p") && j["top_p"].is_number()) p.top_p = j["top_p"].get<float>();
    if (j.contains("top_k") && j["top_k"].is_number_integer()) p.top_k = j["top_k"].get<int>();
    if (j.contains("repetition_penalty") && j["repetition_penalty"].is_number())
        p.repeat_penalty = j["repetition_penalty"].get<float>();
    return p;
}

// --cpu (with -tp N: N CPU ranks), or the GPUs asked for (one rank each), or one GPU when present,
// else the CPU. Several ranks get a communicator: the host one for CPU ranks, the CUDA one (peer to
// peer or NCCL) for GPUs.
// --pdl as resolved for this many GPUs (EngineParams::programmatic_launch says why auto is one GPU only).
static bool programmatic_launch_on(const EngineParams& params, size_t n_gpus) {
    return params.programmatic_launch == PdlMode::on ||
           (params.programmatic_launch == PdlMode::automatic && n_gpus == 1);
}

static Status create_backends(const EngineParams& params, std::vector<std::unique_ptr<glm_backend>>& out,
                              std::unique_ptr<glm_comm>& comm) {
    const int threads = params.n_threads > 0 ? params.n_threads : int(std::max(1u, std::thread::hardware_concurrency()));
    auto cpu_ranks = [&](int n) {
        for (int r = 0; r < n; ++r) out.push_back(glm_backend_cpu_create(std::max(1, threads / n)));
        std::vector<glm_backend*> ranks;
        for (auto& b : out) ranks.push_back(b.get());
        if (n > 1) comm = glm_comm_host_create(ranks);
    };
    if (params.use_cpu) {
        if (params.n_cpu_ranks < 1) return Status::usage("-tp must be at least 1 (got {})", params.n_cpu_ranks);
        cpu_ranks(params.n_cpu_ranks);
        return {};
    }
#ifdef GLMRUN_HAVE_CUDA
    const int n_devices = glm_cuda_device_count();
    std::vector<int> gpus = params.gpus;
    if (gpus.empty() && n_devices > 0) gpus = {0};
    if (!gpus.empty()) {
        if (int(gpus.size()) > n_devices)
            return Status::device("{} GPUs asked for, but {} CUDA device(s) found (use -tp {} or fewer, or --cpu)",
                                  gpus.size(), n_devices, std::max(1, n_devices));
        for (size_t i = 0; i < gpus.size(); ++i) {
            if (gpus[i] < 0 || gpus[i] >= n_devices)
                return Status::device("GPU {} asked for, but {} CUDA device(s) found (use --gpus with ids 0..{}, or --cpu)",
                                      gpus[i], n_devices, n_devices - 1);
            for (size_t j = 0; j < i; ++j)
                if (gpus[j] == gpus[i]) return Status::usage("--gpus lists GPU {} twice: give each GPU once", gpus[i]);
        }
        glm_cuda_set_precise_prefill(params.precise);
        glm_cuda_set_fusion(params.fuse);
        glm_cuda_set_programmatic_launch(programmatic_launch_on(params, gpus.size()));
        for (int device : gpus) {
            std::unique_ptr<glm_backend> b;
            // cuBLAS comes after the memory plan (enable_blas_if_room): its ~100 MiB per card decide
            // whether the longest contexts fit 80 GB cards.
            GLM_TRY(glm_backend_cuda_create(device, b, /*with_blas=*/false));
            out.push_back(std::move(b));
        }
        if (out.size() > 1) {
            std::vector<glm_backend*> ranks;
            for (auto& b : out) ranks.push_back(b.get());
            CudaCommOptions options;
            options.allow_p2p = params.p2p;
            // A split cache gathers every head's query and attention partial (147 KB per token at
            // full size): up to 4 verify positions stay on the recordable peer-to-peer path, which
            // costs ~5 us more than NCCL per call above 256 KiB but lets the step be replayed.
            if (params.kv_split != KvSplitMode::off) options.p2p_max_bytes = size_t(1) << 20;
            GLM_TRY(glm_cuda_comm_create(ranks, options, comm));
        }
        return {};
    }
#else
    if (!params.gpus.empty())
        return Status::usage("this glmrun was built without CUDA: run with --cpu, or rebuild where nvcc is found");
#endif
    cpu_ranks(1);
    return {};
}

// The smallest free memory of the GPUs the n ranks use (--gpus, else 0..n-1): it bounds every rank.
static uint64_t min_free_gpu_bytes(const EngineParams& params, int n) {
    uint64_t capacity = 0;
#ifdef GLMRUN_HAVE_CUDA
    for (int r = 0; r < n; ++r) {
        CudaDeviceInfo dev;
        const int device = params.gpus.empty() ? r : params.gpus[size_t(r)];
        if (glm_cuda_device_info(device, dev).ok())
            capacity = capacity ? std::min<uint64_t>(capacity, dev.free_bytes) : dev.free_bytes;
    }
#else
    (void)params;
    (void)n;
#endif
    return capacity;
}

// The KV type a run uses: --kv-type, else bf16 on GPUs and the session default on the CPU.
static EngineParams with_kv_type(EngineParams params, bool on_gpu) {
    if (params.kv_type_auto && on_gpu) params.session.kv_type = GLM_TYPE_BF16;
    return params;
}

// --mtp off: the MTP layers stay on disk (their records are dropped before anything is placed).
static void drop_mtp_layers(LoadedModel& model) {
    std::vector<LayerWeights>& layers = model.records.layers;
    layers.erase(std::remove_if(layers.begin(), layers.end(), [](const LayerWeights& L) { return L.is_mtp; }),
                 layers.end());
}

// The memory plan of n ranks: each rank's weight share, its caches and activations, against
// capacity (0: not checked).
static MemoryPlan plan_ranks(const LoadedModel& model, const EngineParams& params, int n, uint64_t capacity,
                             uint64_t reserve, bool kv_split) {
    MemoryPlanParams pp;
    pp.kv_split = kv_split && n > 1;
    pp.mtp = params.load_mtp;
    pp.context = params.session.n_ctx;
    pp.kv_type = params.session.kv_type;
    pp.device_capacity = capacity;
    pp.reserve = reserve;
    std::vector<uint64_t> weights;
    std::deque<glm_context> ctx{size_t(n)};
    std::vector<ModelTensors> tensors{size_t(n)};
    std::vector<SessionRank> ranks;
    for (int r = 0; r < n; ++r) {
        weights.push_back(map_weights_unplaced(model.records, TpShard{r, n}, ctx[size_t(r)], tensors[size_t(r)]));
        ranks.push_back({nullptr, &tensors[size_t(r)]});
    }
    // The activation term measured as the session will (its graphs, planned).
    SessionParams sp = params.session;
    sp.kv_split = pp.kv_split;
    Session measure(std::move(ranks), nullptr, model.hp, sp);
    pp.activations = measure.arena_estimate();
    return plan_memory(model.config(), weights, pp);
}

// The plans with the cache copied on every rank and split over the ranks (several ranks only), and the
// one --kv-split picks: on / off as asked (on needs ranks to split over); auto splits only when copies
// do not fit and split ones do (a split costs four more small all-reduces per layer).
struct CachePlans {
    MemoryPlan copied, split;
    bool use_split = false;
    const MemoryPlan& chosen() const { return use_split ? split : copied; }
};

static Status plan_caches(const LoadedModel& model, const EngineParams& params, int n, uint64_t capacity,
                          uint64_t reserve, CachePlans& out) {
    if (params.kv_split == KvSplitMode::on && n < 2)
        return Status::usage("--kv-split on splits the KV cache over tensor-parallel ranks: add -tp N (N >= 2)");
    out.copied = plan_ranks(model, params, n, capacity, reserve, false);
    if (n > 1) out.split = plan_ranks(model, params, n, capacity, reserve, true);
    out.use_split = params.kv_split == KvSplitMode::on ||
                    (params.kv_split == KvSplitMode::automatic && n > 1 && capacity > 0 && !out.copied.fits() &&
                     out.split.fits());
    if (out.use_split && params.kv_split == KvSplitMode::automatic)
        log_info("KV cache split by position over the {} ranks: a copy on each does not fit (--kv-split off to "
                 "refuse)", n);
    return {};
}

// The prefill chunk when --ubatch is not given, on GPUs: the largest of 2048 / 1024 / the default whose
// plan fits `capacity`, with the cache layout the default chunk's plan chose (a bigger chunk never
// costs the copied cache its place). Bigger chunks give the grouped expert GEMMs more tokens per
// expert: one TP = 4 rank of the full model on an H100 prefilled 4k tokens at 19.3k / 28.2k / 32.8k
// tok/s with chunks of 512 / 1024 / 2048. The DSA scores of a chunk grow with it (chunk x context
// floats per layer), so at long contexts the plan decides. `plans` are the default chunk's plans on
// entry and the chosen chunk's on return.
static Status choose_prefill_chunk(const LoadedModel& model, const EngineParams& params, int n, uint64_t capacity,
                                   uint64_t reserve, CachePlans& plans, int64_t& chunk_out) {
    chunk_out = params.session.n_ubatch;
    EngineParams bigger = params;
    bigger.kv_split = plans.use_split ? KvSplitMode::on : KvSplitMode::off;
    for (int64_t chunk : {int64_t(2048), int64_t(1024)}) {
        if (chunk <= params.session.n_ubatch) break;
        if (chunk / 2 >= params.session.n_ctx) continue;  // the context already fits a smaller chunk
        bigger.session.n_ubatch = chunk;
        CachePlans candidate;
        GLM_TRY(plan_caches(model, bigger, n, capacity, reserve, candidate));
        if (!candidate.chosen().fits()) continue;
        chunk_out = chunk;
        plans = candidate;
        return {};
    }
    return {};
}

static Status plan_prefill_chunk(const LoadedModel& model, EngineParams& params, int n, uint64_t capacity,
                                 uint64_t reserve, CachePlans& plans) {
    GLM_TRY(plan_caches(model, params, n, capacity, reserve, plans));
    if (!params.ubatch_auto || capacity == 0) return {};
    return choose_prefill_chunk(model, params, n, capacity, reserve, plans, params.session.n_ubatch);
}

// The largest rank's need with the runtime reserve, in GiB.
static double need_gib(const MemoryPlan& plan) {
    const DeviceMemory& worst = *std::max_element(plan.devices.begin(), plan.devices.end(),
                                                  [](const DeviceMemory& a, const DeviceMemory& b) { return a.total() < b.total(); });
    return double(worst.total() + plan.params.reserve) / double(1ull << 30);
}

Status Engine::plan(const EngineParams& requested, std::string& report) {
    const EngineParams params = with_kv_type(requested, !requested.use_cpu);  // a plan is for GPUs unless --cpu
    LoadedModel model;
    if (params.synthetic) GLM_TRY(open_synthetic_model(params.model_dir, params.index_pattern, params.synthetic_seed, model));
    else GLM_TRY(open_model(params.model_dir, params.index_pattern, model));
    if (!params.load_mtp) drop_mtp_layers(model);
    const ModelConfig& config = model.config();
    const int n = params.use_cpu ? params.n_cpu_ranks : std::max<int>(1, int(params.gpus.size()));
    GLM_TRY(check_tp_split(config, model.records, n));
#ifdef GLMRUN_HAVE_CUDA
    const bool gpus_here = !params.use_cpu && glm_cuda_device_count() >= n;
#else
    const bool gpus_here = false;
#endif
    const uint64_t capacity = gpus_here ? min_free_gpu_bytes(params, n) : 0, reserve = 1ull << 30;
    CachePlans plans;
    GLM_TRY(plan_caches(model, params, n, capacity, reserve, plans));
    const bool split = plans.use_split;
    const MemoryPlan& plan = plans.chosen();
    const MemoryPlanParams& pp = plan.params;
    const std::string capacity_note =
        gpus_here ? fmt::format("capacity: free memory of the {} GPU(s) here", n) : "no GPU here: capacity not checked";
    int64_t vocab_first = 0, vocab_rows = 0;
    vocab_share(config.vocab_size, TpShard{0, n}, vocab_first, vocab_rows);
    report = fmt::format("{}: {}{}\n{} rank(s): {} heads, routed/shared expert intermediate {} / {}, {} vocabulary rows "
                         "(rank 0) per rank; context {}, {} cache{}\n{}",
                         params.model_dir, config.summary(), params.synthetic ? " (synthetic)" : "", n,
                         config.num_attention_heads / n, config.moe_intermediate_size / n,
                         config.moe_intermediate_size * config.n_shared_experts / n, vocab_rows, pp.context,
                         glm_type_name(pp.kv_type), split ? ", split by position over the ranks" : "", plan.table());
    // Whether the largest rank fits the cards users run (usable memory after the CUDA context; the
    // H100's is what a 4-GPU run found free on each card, peer access included), with the cache copied
    // on every rank and split over them.
    const double need_copied = need_gib(plans.copied), need_split = n > 1 ? need_gib(plans.split) : 0.0;
    for (auto [card, gib] : {std::pair{"H100 80 GB", 78.27}, std::pair{"RTX PRO 6000 96 GB", 94.5},
                             std::pair{"H200 141 GB", 139.3}}) {
        report += fmt::format("{:<20} {:>7.2f} GiB per rank needed of {:.2f}: {}", card, need_copied, gib,
                              need_copied <= gib ? "fits" : "does not fit");
        if (n > 1)
            report += fmt::format("; cache split over the ranks (--kv-split on): {:.2f} GiB: {}", need_split,
                                  need_split <= gib ? "fits" : "does not fit");
        if (params.ubatch_auto) {  // what a run on this card picks (this --kv-split, no --ubatch)
            const uint64_t card_bytes = uint64_t(gib * double(1ull << 30));
            CachePlans card;
            GLM_TRY(plan_caches(model, params, n, card_bytes, reserve, card));
            int64_t chunk = 0;
            if (card.chosen().fits()) GLM_TRY(choose_prefill_chunk(model, params, n, card_bytes, reserve, card, chunk));
            if (chunk > 0)
                report += fmt::format("; runs with the cache {}, prefill chunk {}", card.use_split ? "split" : "copied",
                                      chunk);
        }
        report += "\n";
    }
    report += capacity_note + "\n";
    return check_memory_plan(plan);
}

namespace {

// The dense BF16 prefill products run through cuBLAS when the plan leaves every card kCudaBlasBytes
// beyond its reserve, else on the hand-written tiles (1.5-2.9x slower on those products; the same
// results up to rounding), so a context that fits without cuBLAS never fails for want of it.
void enable_blas_if_room(const MemoryPlan& plan, const std::vector<std::unique_ptr<glm_backend>>& backends) {
#ifdef GLMRUN_HAVE_CUDA
    uint64_t largest = 0;
    for (const DeviceMemory& d : plan.devices) largest = std::max(largest, d.total() + plan.params.reserve);
    const uint64_t room = plan.params.device_capacity > largest ? plan.params.device_capacity - largest : 0;
    if (room < kCudaBlasBytes) {
        log_info("prefill GEMMs: hand-written tiles (cuBLAS needs {} MiB per GPU; the plan leaves {} MiB)",
                 kCudaBlasBytes >> 20, room >> 20);
        return;
    }
    size_t taken = 0;
    for (const auto& b : backends) {
        size_t bytes = 0;
        glm_cuda_enable_blas(b.get(), &bytes);
        taken = std::max(taken, bytes);
    }
    log_info("prefill GEMMs: dense BF16 products through cuBLAS ({:.0f} MiB per GPU)", double(taken) / 1048576.0);
#else
    (void)plan;
    (void)backends;
#endif
}

// One prefill chunk and a decode step after it, then a decode step at position 0, then an empty
// session: what the first use of every kernel costs (lazy module loading, cuBLAS's choice of kernel
// per shape, recording the decode graphs: the whole-context one and its short twin, session.h) is
// paid here, not by the first prompt. The cache rows written here are never read again: attention
// reads positions below the session's length only.
Status warm_up(Session& session, int64_t n_vocab) {
    const auto t0 = std::chrono::steady_clock::now();
    const int64_t n = std::min(session.params().n_ubatch, session.params().n_ctx - 1);
    if (n < 1 || n_vocab < 1) return {};
    std::vector<int32_t> tokens(size_t(n) + 1);
    for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t((int64_t(i) * 7919 + 13) % n_vocab);
    std::vector<float> logits;
    GLM_TRY(session.eval(tokens.data(), n, &logits));
    GLM_TRY(session.eval(tokens.data() + n, 1, &logits));
    session.reset();
    GLM_TRY(session.eval(tokens.data(), 1, &logits));
    session.reset();
    session.reset_replay_time();
    log_info("warm-up: {} + 2 placeholder tokens in {:.2f} s (--no-warmup skips it)", n,
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return {};
}

}  // namespace

Status Engine::load(const EngineParams& requested, std::unique_ptr<Engine>& out) {
    auto impl = std::make_unique<Impl>();
    EngineParams params = requested;
    const std::string& dir = params.model_dir;
    struct stat st;
    const bool has_tokenizer = ::stat((dir + "/tokenizer.json").c_str(), &st) == 0;
    if (!params.synthetic || has_tokenizer) GLM_TRY(load_tokenizer(dir, impl->tokenizer));
    else log_info("{}: no tokenizer.json; token ids only (--bench, --raw --prompt-ids)", dir);
    if (params.synthetic) GLM_TRY(open_synthetic_model(dir, params.index_pattern, params.synthetic_seed, impl->model));
    else GLM_TRY(open_model(dir, params.index_pattern, impl->model));
    if (!params.load_mtp) drop_mtp_layers(impl->model);
    const ModelConfig& config = impl->model.config();

    if (params.session.n_ctx < 1) return Status::usage("-c must be at least 1 (got {})", params.session.n_ctx);
    if (params.session.n_ubatch < 1) return Status::usage("--ubatch must be at least 1 (got {})", params.session.n_ubatch);
    // The memory plan comes before any allocation: a model that cannot fit fails here, with the
    // table and what to change, instead of half-way through the upload.
    GLM_TRY(create_backends(params, impl->backends, impl->comm));
    const int n_ranks = int(impl->backends.size());
    GLM_TRY(check_tp_split(config, impl->model.records, n_ranks));
    const bool on_gpu = std::string(impl->backends.front()->name()).rfind("cuda:", 0) == 0;
    params = with_kv_type(params, on_gpu);
    impl->params = params;
    uint64_t capacity = 0, reserve = 1ull << 30;
    if (on_gpu) {
        capacity = min_free_gpu_bytes(params, n_ranks);
    } else {
        const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0) capacity = uint64_t(pages) * uint64_t(page) / uint64_t(n_ranks);
        reserve = 256ull << 20;
    }
    CachePlans plans;
    if (on_gpu) GLM_TRY(plan_prefill_chunk(impl->model, params, n_ranks, capacity, reserve, plans));
    else GLM_TRY(plan_caches(impl->model, params, n_ranks, capacity, reserve, plans));
    params.session.kv_split = plans.use_split;
    impl->params = params;
    const MemoryPlan& plan = plans.chosen();
    log_info("memory plan ({} rank{} on {}{}):\n{}", n_ranks, n_ranks > 1 ? "s" : "", impl->backends.front()->name(),
             n_ranks > 1 ? " ..." : "", plan.table());
    GLM_TRY(check_memory_plan(plan));
    if (on_gpu) enable_blas_if_room(plan, impl->backends);
    std::vector<glm_backend*> ranks;
    for (auto& b : impl->backends) ranks.push_back(b.get());
    GLM_TRY(upload_model(ranks, params.show_progress, impl->model));

    std::vector<SessionRank> session_ranks;
    for (const RankWeights& rw : impl->model.ranks) session_ranks.push_back({rw.backend, &rw.tensors});
    impl->session = std::make_unique<Session>(std::move(session_ranks), impl->comm.get(), impl->model.hp, params.session);
    GLM_TRY(impl->session->init());
    for (auto& b : impl->backends) b->freeze_allocations();
    if (params.warmup && (on_gpu || params.warmup_cpu)) GLM_TRY(warm_up(*impl->session, config.vocab_size));

    ModelInfo& info = impl->info;
    const size_t slash = dir.find_last_of('/', dir.size() > 1 ? dir.size() - 2 : 0);
    info.name = slash == std::string::npos ? dir : dir.substr(slash + 1);
    if (!info.name.empty() && info.name.back() == '/') info.name.pop_back();
    info.backend = impl->backends.front()->name();
    if (n_ranks > 1) info.backend += fmt::format(" +{} (tensor parallel, {})", n_ranks - 1, impl->comm->name());
    info.n_vocab = config.vocab_size;
    info.n_layer = config.num_hidden_layers;
    info.n_ctx_train = config.max_position_embeddings;
    info.has_mtp = impl->model.tensors().has_mtp;
    info.eos_ids = config.eos_token_ids;
    info.default_sampling = read_sampling_defaults(dir);
    info.weight_bytes = impl->model.ranks.front().buffer->size;
    info.n_ranks = n_ranks;
    info.synthetic = impl->model.synthetic_seed != 0;
    info.programmatic_launch = on_gpu && programmatic_launch_on(params, size_t(n_ranks));
    log_info("model: {} ({}), backend {}, weights {:.1f} MiB{}, KV {:.1f} MiB, arena {:.1f} MiB, prefill chunk {}",
             info.name, config.summary(), info.backend, double(info.weight_bytes) / 1048576.0,
             n_ranks > 1 ? " per rank" : "", double(impl->session->kv_bytes()) / 1048576.0,
             double(impl->session->arena_bytes()) / 1048576.0, params.session.n_ubatch);
    out.reset(new Engine(std::move(impl)));
    return {};
}
