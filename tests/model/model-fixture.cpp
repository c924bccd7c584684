#include "model-fixture.h"

#include "engine/sampler.h"

#include <dirent.h>
#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>

#include <doctest/doctest.h>

std::vector<std::string> fixture_names() {
    std::vector<std::string> names;
    const std::string root = std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures";
    if (DIR* d = opendir(root.c_str())) {
        while (dirent* e = readdir(d)) {
            const std::string name = e->d_name;
            struct stat st;
            if (name[0] != '.' && ::stat((root + "/" + name + "/reference.json").c_str(), &st) == 0)
                names.push_back(name);
        }
        closedir(d);
    }
    std::sort(names.begin(), names.end());
    return names;
}

double mean_next_token_nll(const std::vector<float>& logits, const std::vector<int32_t>& ids, int64_t n_vocab) {
    REQUIRE(ids.size() >= 2);
    REQUIRE(logits.size() >= (ids.size() - 1) * size_t(n_vocab));
    double total = 0;
    for (size_t i = 0; i + 1 < ids.size(); ++i) {
        const float* row = logits.data() + i * size_t(n_vocab);
        double mx = row[0];
        for (int64_t v = 1; v < n_vocab; ++v) mx = std::max(mx, double(row[v]));
        double sum = 0;
        for (int64_t v = 0; v < n_vocab; ++v) sum += std::exp(double(row[v]) - mx);
        total += -(double(row[ids[i + 1]]) - mx - std::log(sum));
    }
    return total / double(ids.size() - 1);
}

double rel_error(const float* a, const float* b, size_t n) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; ++i) {
        num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
        den += double(b[i]) * b[i];
    }
    return std::sqrt(num / std::max(den, 1e-30));
}

void ModelFixture::load(const std::string& name, const std::string& index_pattern) {
    load_on(name, glm_backend_cpu_create(2), index_pattern);
}

void TestModel::load_dir(const std::string& dir, std::unique_ptr<glm_backend> on, const std::string& index_pattern) {
    backend = on ? std::move(on) : glm_backend_cpu_create(2);
    const Status st = load_model(dir, index_pattern, backend.get(), *this);
    REQUIRE_MESSAGE(st.ok(), st.message());
}

// Tests capture per-layer outputs of whole prompts: the arena keeps room for them.
static SessionParams with_capture(SessionParams params) {
    if (params.n_capture == 0) params.n_capture = params.n_ctx;
    return params;
}

std::unique_ptr<Session> TestModel::session(SessionParams params) const {
    params = with_capture(params);
    auto s = std::make_unique<Session>(backend.get(), hp, tensors(), params);
    const Status st = s->init();
    REQUIRE_MESSAGE(st.ok(), st.message());
    return s;
}

void ModelFixture::load_on(const std::string& name, std::unique_ptr<glm_backend> on, const std::string& index_pattern) {
    dir = std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures/" + name;
    std::ifstream in(dir + "/reference.json");
    REQUIRE(in.good());
    ref = nlohmann::json::parse(in);
    Status st = npy_read(dir + "/reference_logits.npy", logits);
    REQUIRE_MESSAGE(st.ok(), st.message());
    st = npy_read(dir + "/reference_decode_logits.npy", decode_logits);
    REQUIRE_MESSAGE(st.ok(), st.message());
    load_dir(dir, std::move(on), index_pattern);
}

std::vector<int32_t> ModelFixture::prompt(size_t i) const { return ref["prompts"][i].get<std::vector<int32_t>>(); }

Status TpTestModel::load(const std::string& dir, std::vector<std::unique_ptr<glm_backend>> ranks,
                         std::unique_ptr<glm_comm> communicator, uint64_t synthetic_seed) {
    backends = std::move(ranks);
    std::vector<glm_backend*> raw;
    for (auto& b : backends) raw.push_back(b.get());
    comm = communicator ? std::move(communicator) : glm_comm_host_create(raw);
    GLM_TRY(synthetic_seed ? open_synthetic_model(dir, "", synthetic_seed, model) : open_model(dir, "", model));
    return upload_model(raw, /*show_progress=*/false, model);
}

std::unique_ptr<Session> TpTestModel::session(SessionParams params) const {
    std::vector<SessionRank> ranks;
    for (const RankWeights& rw : model.ranks) ranks.push_back({rw.backend, &rw.tensors});
    auto s = std::make_unique<Session>(std::move(ranks), comm.get(), model.hp, with_capture(params));
    const Status st = s->init();
    REQUIRE_MESSAGE(st.ok(), st.message());
    return s;
}

std::vector<int32_t> greedy_continuation(Session& s, const std::vector<int32_t>& prompt, int steps, int64_t vocab,
                                         std::vector<float>& rows) {
    std::vector<int32_t> out;
    std::vector<float> logits;
    REQUIRE(s.eval(prompt.data(), int64_t(prompt.size()), &logits).ok());
    for (int i = 0; i < steps; ++i) {
        rows.insert(rows.end(), logits.begin(), logits.end());
        const int32_t next = argmax(logits.data(), vocab);
        out.push_back(next);
        REQUIRE(s.eval(&next, 1, &logits).ok());
    }
    return out;
}
