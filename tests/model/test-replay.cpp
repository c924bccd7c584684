// Recorded steps on the CPU: a backend that records like the CUDA one (the ranges given to it between
// capture_begin and capture_end are kept, not run; replay runs them again on the same tensors), so the
// session's choice of recorded graph and the inputs it writes before each replay are tested against
// eager steps here, not only on a GPU. The DSA model's decode crosses index_topk: below it the short
// twin (no scoring, no top-k) replays, above it the graph built for the whole context.
#include <doctest/doctest.h>

#include "model-fixture.h"
#include "spec-check.h"

namespace {

class RecordingCpuBackend final : public glm_backend {
public:
    RecordingCpuBackend() : inner_(glm_backend_cpu_create(2)) {}
    const char* name() const override { return "cpu (recording)"; }
    Status alloc_buffer(size_t size, const std::string& name, glm_buffer** out) override {
        check_not_frozen(name);
        return inner_->alloc_buffer(size, name, out);
    }
    void tensor_set(glm_tensor* t, const void* data, size_t offset, size_t size) override {
        inner_->tensor_set(t, data, offset, size);
    }
    void tensor_get(const glm_tensor* t, void* data, size_t offset, size_t size) override {
        inner_->tensor_get(t, data, offset, size);
    }
    void buffer_clear(glm_buffer* buffer, uint8_t value) override { inner_->buffer_clear(buffer, value); }
    bool supports_op(const glm_tensor* t) const override { return inner_->supports_op(t); }
    void synchronize() override { inner_->synchronize(); }
    void tensor_fill_random(glm_tensor* t, uint64_t seed, float mean, float scale,
                            const glm_fill_slice& slice) override {
        inner_->tensor_fill_random(t, seed, mean, scale, slice);
    }
    Status graph_compute_range(const glm_graph& graph, size_t begin, size_t end) override {
        if (!capturing_) return inner_->graph_compute_range(graph, begin, end);
        open_.push_back({&graph, begin, end});
        return {};
    }
    bool supports_capture() const override { return true; }
    Status capture_begin() override {
        if (capturing_) return Status::device("capture already open");
        capturing_ = true;
        open_.clear();
        return {};
    }
    Status capture_end(int* id) override {
        if (!capturing_) return Status::device("no capture open");
        capturing_ = false;
        recordings_.push_back(std::move(open_));
        *id = int(recordings_.size()) - 1;
        return {};
    }
    Status replay(int id) override {
        if (id < 0 || id >= int(recordings_.size())) return Status::device("no recording {}", id);
        ++replays;
        for (const Range& r : recordings_[size_t(id)]) GLM_TRY(inner_->graph_compute_range(*r.graph, r.begin, r.end));
        return {};
    }

    int replays = 0;

private:
    struct Range {
        const glm_graph* graph;
        size_t begin, end;
    };
    std::unique_ptr<glm_backend> inner_;
    bool capturing_ = false;
    std::vector<Range> open_;
    std::vector<std::vector<Range>> recordings_;
};

}  // namespace

TEST_CASE("recorded decode steps (CPU recording backend) equal eager steps across index_topk") {
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";
    TestModel eager_model, replay_model;
    eager_model.load_dir(dir);
    auto recording = std::make_unique<RecordingCpuBackend>();
    RecordingCpuBackend* rec = recording.get();
    replay_model.load_dir(dir, std::move(recording));
    REQUIRE(replay_model.hp.index_topk == 64);
    const std::vector<int32_t> prompt = {1, 50, 300, 7, 1000, 22, 5, 91, 4000, 12, 3, 77, 8, 64, 310, 2, 9, 1200, 45, 6};

    SessionParams p;
    p.n_ctx = 160;  // > index_topk: the whole-context graph has a DSA selection
    p.kv_type = GLM_TYPE_F32;
    const int steps = 80;  // positions 20 .. 99: 44 steps within index_topk, 36 past it
    p.replay_decode = false;
    std::vector<float> eager_rows;
    const std::vector<int32_t> eager_ids =
        greedy_continuation(*eager_model.session(p), prompt, steps, eager_model.hp.n_vocab, eager_rows);

    p.replay_decode = true;
    auto s = replay_model.session(p);
    std::vector<float> rows;
    const std::vector<int32_t> ids = greedy_continuation(*s, prompt, steps, replay_model.hp.n_vocab, rows);
    CHECK(rec->replays == steps);     // every decode step replayed
    CHECK(s->recorded_graphs() == 2);  // the short twin and the whole-context graph
    CHECK(ids == eager_ids);
    REQUIRE(rows.size() == eager_rows.size());
    const size_t V = size_t(replay_model.hp.n_vocab);
    double worst = 0;
    for (size_t i = 0; i < rows.size() / V; ++i)
        worst = std::max(worst, rel_error(rows.data() + i * V, eager_rows.data() + i * V, V));
    MESSAGE("replayed vs eager decode, worst step logits rel. error ", worst);
    CHECK(worst <= 1e-5);

    // A context within index_topk has no selection anywhere: one graph, no twin.
    p.n_ctx = 64;
    auto short_session = replay_model.session(p);
    std::vector<float> short_rows;
    greedy_continuation(*short_session, prompt, 8, replay_model.hp.n_vocab, short_rows);
    CHECK(short_session->recorded_graphs() == 1);
}

TEST_CASE("recorded MTP steps (CPU recording backend) stay lossless across index_topk") {
    // Verify batches and draft steps replay too, each size with its short twin below index_topk.
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";
    TestModel tiny;
    auto recording = std::make_unique<RecordingCpuBackend>();
    RecordingCpuBackend* rec = recording.get();
    tiny.load_dir(dir, std::move(recording));
    REQUIRE(tiny.tensors().has_mtp);
    const std::vector<int32_t> prompt = {1, 50, 300, 7, 1000, 22, 5, 91, 4000, 12};
    SessionParams p;
    p.n_ctx = 160;
    p.kv_type = GLM_TYPE_F32;
    // 80 tokens from position 10: the rounds cross index_topk = 64.
    check_lossless([&](SessionParams sp) { return tiny.session(sp); }, prompt, p, 80, "glm-tiny, recorded steps",
                   /*oracle=*/true);
    CHECK(rec->replays > 0);
}
