#include "engine/engine.h"

#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "engine/checkpoint.h"
#include "engine/memory-plan.h"
#include "engine/weights.h"
#ifdef GLMRUN_HAVE_CUDA
#include "cuda/backend.h"
#endif

struct Engine::Impl {
    EngineParams params;
    ModelInfo info;
    std::unique_ptr<glm::Tokenizer> tokenizer;
    std::unique_ptr<glm_backend> backend;
    LoadedModel model;
    std::unique_ptr<Session> session;
};

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() = default;
const ModelInfo& Engine::info() const { return impl_->info; }
const glm::Tokenizer& Engine::tokenizer() const { return *impl_->tokenizer; }
Session& Engine::session() { return *impl_->session; }

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

// --cpu, or the GPUs asked for, or one GPU when present, else the CPU.
static Status create_backend(const EngineParams& params, std::unique_ptr<glm_backend>& out) {
    const int threads = params.n_threads > 0 ? params.n_threads : int(std::max(1u, std::thread::hardware_concurrency()));
    if (params.use_cpu) {
        out = glm_backend_cpu_create(threads);
        return {};
    }
#ifdef GLMRUN_HAVE_CUDA
    const int n_devices = glm_cuda_device_count();
    if (params.gpus.size() > 1)
        return Status::usage("tensor parallelism over {} GPUs is not available yet: pass one GPU (--gpus N) or --cpu",
                             params.gpus.size());
    if (!params.gpus.empty() || n_devices > 0) {
        const int device = params.gpus.empty() ? 0 : params.gpus[0];
        if (device < 0 || device >= n_devices)
            return Status::device("GPU {} asked for, but {} CUDA device(s) found (use --gpus with ids 0..{}, or --cpu)",
                                  device, n_devices, n_devices - 1);
        return glm_backend_cuda_create(device, out);
    }
#else
    if (!params.gpus.empty())
        return Status::usage("this glmrun was built without CUDA: run with --cpu, or rebuild where nvcc is found");
#endif
    out = glm_backend_cpu_create(threads);
    return {};
}

Status Engine::load(const EngineParams& params, std::unique_ptr<Engine>& out) {
    auto impl = std::make_unique<Impl>();
    impl->params = params;
    const std::string& dir = params.model_dir;
    GLM_TRY(load_tokenizer(dir, impl->tokenizer));
    GLM_TRY(open_model(dir, params.index_pattern, impl->model));
    const ModelConfig& config = impl->model.checkpoint.config();

    if (params.session.n_ctx < 1) return Status::usage("-c must be at least 1 (got {})", params.session.n_ctx);
    if (params.session.n_ubatch < 1) return Status::usage("--ubatch must be at least 1 (got {})", params.session.n_ubatch);
    // The memory plan comes before any allocation: a model that cannot fit fails here, with the
    // table and what to change, instead of half-way through the upload.
    MemoryPlanParams plan_params;
    plan_params.n_devices = 1;
    plan_params.context = params.session.n_ctx;
    plan_params.kv_type = params.session.kv_type;
    plan_params.ubatch = params.session.n_ubatch;
    plan_params.device_capacity = 0;
    GLM_TRY(create_backend(params, impl->backend));
#ifdef GLMRUN_HAVE_CUDA
    if (std::string(impl->backend->name()).rfind("cuda:", 0) == 0) {
        CudaDeviceInfo dev;
        if (glm_cuda_device_info(params.gpus.empty() ? 0 : params.gpus[0], dev).ok()) plan_params.device_capacity = dev.free_bytes;
    }
#endif
    if (plan_params.device_capacity == 0) {
        const long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
        if (pages > 0 && page > 0) plan_params.device_capacity = uint64_t(pages) * uint64_t(page);
        plan_params.reserve = 256ull << 20;
    }
    const MemoryPlan plan = plan_memory(config, weight_buffer_bytes(config, impl->model.records), plan_params);
    log_info("memory plan ({}):\n{}", impl->backend->name(), plan.table());
    GLM_TRY(check_memory_plan(plan));
    GLM_TRY(upload_model(impl->backend.get(), params.show_progress, impl->model));

    impl->session = std::make_unique<Session>(impl->backend.get(), impl->model.hp, impl->model.tensors, params.session);
    GLM_TRY(impl->session->init());
    impl->backend->freeze_allocations();

    ModelInfo& info = impl->info;
    const size_t slash = dir.find_last_of('/', dir.size() > 1 ? dir.size() - 2 : 0);
    info.name = slash == std::string::npos ? dir : dir.substr(slash + 1);
    if (!info.name.empty() && info.name.back() == '/') info.name.pop_back();
    info.backend = impl->backend->name();
    info.n_vocab = config.vocab_size;
    info.n_layer = config.num_hidden_layers;
    info.n_ctx_train = config.max_position_embeddings;
    info.has_mtp = impl->model.tensors.has_mtp;
    info.eos_ids = config.eos_token_ids;
    info.default_sampling = read_sampling_defaults(dir);
    info.weight_bytes = impl->model.weights->size;
    log_info("model: {} ({}), backend {}, weights {:.1f} MiB, KV {:.1f} MiB, arena {:.1f} MiB", info.name,
             config.summary(), info.backend, double(info.weight_bytes) / 1048576.0,
             double(impl->session->kv_bytes()) / 1048576.0, double(impl->session->arena_bytes()) / 1048576.0);
    out.reset(new Engine(std::move(impl)));
    return {};
}
