// Tensor parallelism on CPU ranks (the host communicator): every fixture and the bundled model split
// over 2 and 4 ranks give the same greedy continuation and the same logits as one rank. The split
// itself (heads, intermediate shares, vocabulary rows, NVFP4 column blocks) is what is under test;
// the GPU communicators are tested against the host one in tests/tp.
#include <doctest/doctest.h>

#include <cstring>
#include <sstream>

#include "engine/engine.h"
#include "engine/sampler.h"
#include "model-fixture.h"
#include "spec-check.h"

namespace {

std::vector<std::unique_ptr<glm_backend>> cpu_ranks(int n) {
    std::vector<std::unique_ptr<glm_backend>> out;
    for (int r = 0; r < n; ++r) out.push_back(glm_backend_cpu_create(1));
    return out;
}

// seed != 0: the config of dir with --synthetic weights of that seed on every layout.
void compare_tp(const std::string& dir, const std::vector<int32_t>& prompt, int steps, std::vector<int> rank_counts = {2, 4},
                uint64_t seed = 0) {
    SessionParams p;
    p.n_ctx = int64_t(prompt.size()) + steps + 1;
    p.kv_type = GLM_TYPE_F32;
    TpTestModel one;
    REQUIRE(one.load(dir, cpu_ranks(1), nullptr, seed).ok());
    std::vector<float> ref_logits;
    const std::vector<int32_t> ref = greedy_continuation(*one.session(p), prompt, steps, one.model.hp.n_vocab, ref_logits);
    std::vector<std::pair<int, bool>> runs;
    for (bool split : {false, true})
        for (int n : rank_counts) runs.emplace_back(n, split);
    for (auto [n, split] : runs) {
        CAPTURE(n);
        CAPTURE(split);
        p.kv_split = split;
        TpTestModel tp;
        const Status st = tp.load(dir, cpu_ranks(n), nullptr, seed);
        REQUIRE_MESSAGE(st.ok(), st.message());
        REQUIRE(tp.model.ranks.size() == size_t(n));
        // Each rank holds a share of the split tensors (not a copy).
        CHECK(tp.model.ranks[0].tensors.layers[0].q_b->ne[1] * n == one.model.tensors().layers[0].q_b->ne[1]);
        CHECK(tp.model.ranks[0].tensors.layers[0].q_b->split == GLM_SPLIT_ROWS);  // each weight carries its split
        CHECK(tp.model.ranks[0].tensors.layers[0].o->split == GLM_SPLIT_COLS);
        CHECK(tp.model.ranks[0].tensors.layers[0].q_a->split == GLM_SPLIT_NONE);
        auto session = tp.session(p);
        // A split cache: each rank holds ceil(n_ctx / n) positions of every layer, not all of them.
        CHECK(session->kv_split() == split);
        if (split) CHECK(session->kv_bytes() < one.session(p)->kv_bytes() / size_t(n) + 4096 * one.model.hp.n_layer);
        std::vector<float> logits;
        const std::vector<int32_t> ids = greedy_continuation(*session, prompt, steps, tp.model.hp.n_vocab, logits);
        CHECK(ids == ref);
        REQUIRE(logits.size() == ref_logits.size());
        const double err = rel_error(logits.data(), ref_logits.data(), logits.size());
        MESSAGE(dir.substr(dir.find_last_of('/') + 1), std::string(seed ? " (synthetic)" : ""), " TP=", n,
                std::string(split ? " (cache split by position)" : ""), ": ", steps,
                " greedy tokens identical=", ids == ref, ", logits rel. error ", err);
        CHECK(err <= 1e-4);  // f32 on both sides: only the summation order of the partial sums differs

        // The device-side greedy path (max_arg pairs per rank) picks what argmax over all logits picks.
        auto greedy = tp.session(p);
        int32_t next = -1;
        REQUIRE(greedy->eval_greedy(prompt.data(), int64_t(prompt.size()), &next).ok());
        CHECK(next == ref[0]);
    }
}

}  // namespace

TEST_CASE("tensor parallel over 2 and 4 CPU ranks equals one rank on every fixture") {
    for (const std::string& name : fixture_names()) {
        CAPTURE(name);
        ModelFixture fx;
        fx.load(name);
        compare_tp(fx.dir, fx.prompt(2), 32);
    }
}

TEST_CASE("tensor parallel: the bundled model over 4 ranks") {
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";
    compare_tp(dir, {1, 50, 300, 7, 1000, 22, 5}, 32);
}

TEST_CASE("tensor parallel over 8 CPU ranks equals one rank (8-head checkpoint, random weights)") {
    // What TP = 8 on the full model needs, at toy size: 8 heads (one per rank), intermediate shares of
    // whole NVFP4 blocks (16 columns of the experts' down projection per rank), uneven vocabulary
    // shares (520 rows), the cache copied and split by position over 8 ranks. No transformers
    // reference (scripts/fixtures/make_tp8_fixture.py writes the weights): one rank is the reference.
    // 4 indexer heads with random weights zero every head's relu for several keys: exact score ties at
    // the top-k boundary, which the split cache's merge must break by position as one rank does.
    compare_tp(std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures/synthetic_tp8",
               {1, 50, 300, 7, 100, 22, 5, 91, 400, 12, 3, 77, 8, 64}, 32, {2, 4, 8});
}

namespace {

std::vector<uint8_t> read_bytes(const RankWeights& rw, const glm_tensor* t) {
    std::vector<uint8_t> out(glm_nbytes(t));
    rw.backend->tensor_get(t, out.data(), 0, out.size());
    return out;
}

// part (a rank's share) holds rows [row0, row0 + ne1) x columns [col0, col0 + ne0) of every matrix
// of whole (stacked experts: of each expert), byte for byte; block scales along with NVFP4 codes.
void check_window(const RankWeights& whole_rank, const glm_tensor* whole, const RankWeights& part_rank,
                  const glm_tensor* part, int64_t row0, int64_t col0) {
    CAPTURE(part->name);
    REQUIRE(part->type == whole->type);
    REQUIRE(part->ne[2] == whole->ne[2]);
    const std::vector<uint8_t> a = read_bytes(whole_rank, whole), b = read_bytes(part_rank, part);
    const size_t whole_row = glm_row_bytes(whole->type, whole->ne[0]), part_row = glm_row_bytes(part->type, part->ne[0]);
    const size_t at = glm_row_bytes(whole->type, col0);
    size_t differ = 0;
    for (int64_t e = 0; e < part->ne[2]; ++e)
        for (int64_t r = 0; r < part->ne[1]; ++r)
            differ += std::memcmp(b.data() + size_t(e * part->ne[1] + r) * part_row,
                                  a.data() + size_t(e * whole->ne[1] + row0 + r) * whole_row + at, part_row) != 0;
    CHECK(differ == 0);
    if (part->block_scale)
        check_window(whole_rank, whole->block_scale, part_rank, part->block_scale, row0, col0 / GLM_NVFP4_BLOCK);
}

}  // namespace

TEST_CASE("tensor parallel: synthetic weights are one model on every layout (1 vs 2, 4, 8 CPU ranks)") {
    // --synthetic values depend on (seed, tensor name, index in the whole tensor), not on the rank:
    // replicated tensors are equal on every rank and a split tensor's shares are slices of the one-rank
    // tensor, so the layouts give the same tokens (a rank-dependent seed gave a full-size TP = 4 run
    // different logits with the cache copied and split, since the two computed with other weights).
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures/synthetic_tp8";
    constexpr uint64_t seed = 1234;
    TpTestModel one, four;
    REQUIRE(one.load(dir, cpu_ranks(1), nullptr, seed).ok());
    REQUIRE(four.load(dir, cpu_ranks(4), nullptr, seed).ok());
    const RankWeights& whole = one.model.ranks[0];
    const LayerTensors& W0 = whole.tensors.layers[0];
    const LayerTensors& W1 = whole.tensors.layers[1];  // the first MoE layer: NVFP4 experts
    REQUIRE(W1.exp_gate);
    REQUIRE(W1.exp_gate->type == GLM_TYPE_NVFP4);
    for (int r = 0; r < 4; ++r) {
        CAPTURE(r);
        const RankWeights& rank = four.model.ranks[size_t(r)];
        const LayerTensors& L0 = rank.tensors.layers[0];
        const LayerTensors& L1 = rank.tensors.layers[1];
        // Replicated: the same bytes as rank 0 and as the one-rank model.
        CHECK(read_bytes(rank, L0.q_a) == read_bytes(four.model.ranks[0], four.model.ranks[0].tensors.layers[0].q_a));
        CHECK(read_bytes(rank, L0.q_a) == read_bytes(whole, W0.q_a));
        CHECK(read_bytes(rank, L1.router) == read_bytes(whole, W1.router));
        CHECK(read_bytes(rank, L0.attn_norm) == read_bytes(whole, W0.attn_norm));
        // Split by rows (heads, vocabulary, each expert's intermediate rows) and by columns.
        check_window(whole, W0.q_b, rank, L0.q_b, r * L0.q_b->ne[1], 0);
        check_window(whole, W0.o, rank, L0.o, 0, r * L0.o->ne[0]);
        int64_t first = 0, count = 0;
        vocab_share(one.model.hp.n_vocab, TpShard{r, 4}, first, count);
        check_window(whole, whole.tensors.tok_embd, rank, rank.tensors.tok_embd, first, 0);
        check_window(whole, whole.tensors.lm_head, rank, rank.tensors.lm_head, first, 0);
        check_window(whole, W1.exp_gate, rank, L1.exp_gate, r * L1.exp_gate->ne[1], 0);
        check_window(whole, W1.exp_down, rank, L1.exp_down, 0, r * L1.exp_down->ne[0]);
    }
    // The same tokens and logits over 2, 4 and 8 ranks, the cache copied and split by position.
    compare_tp(dir, {1, 50, 300, 7, 100, 22, 5, 91, 400, 12, 3, 77, 8, 64}, 32, {2, 4, 8}, seed);
}

TEST_CASE("tensor parallel: a split that does not divide is a usage error") {
    ModelFixture fx;
    fx.load("dense_moe");
    TpTestModel tp;
    const Status st = tp.load(fx.dir, cpu_ranks(3));  // 4 heads over 3 ranks
    CHECK(st.kind() == ErrorKind::usage);
    CHECK(st.message().find("num_attention_heads") != std::string::npos);
    TpTestModel eight;
    const Status st8 = eight.load(fx.dir, cpu_ranks(8));  // 4 heads over 8 ranks
    CHECK(st8.kind() == ErrorKind::usage);
}

TEST_CASE("tensor parallel: MTP speculative decoding stays lossless over 4 CPU ranks") {
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";
    TpTestModel tp;
    REQUIRE(tp.load(dir, cpu_ranks(4)).ok());
    REQUIRE(tp.model.tensors().has_mtp);
    const std::vector<int32_t> prompt = {1, 50, 300, 7, 1000, 22, 5, 91, 4000, 12};
    check_lossless([&](SessionParams p) { return tp.session(p); }, prompt, 512, 64, "glm-tiny TP=4", false);
    check_lossless(
        [&](SessionParams p) {
            p.kv_split = true;
            return tp.session(p);
        },
        prompt, 512, 64, "glm-tiny TP=4, cache split by position", false);
}

TEST_CASE("tensor parallel: the full-size layout splits over 1, 2, 4 and 8 ranks (plan only)") {
    // What TP = 8 needs that can be checked without 8 GPUs: divisibility, per-rank shares, bytes.
    LoadedModel m;
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-5.1-reap-160";
    REQUIRE(open_synthetic_model(dir, "", 1, m).ok());
    const ModelConfig& c = m.config();
    const uint64_t one = weight_buffer_bytes(c, m.records, TpShard{0, 1});
    uint64_t previous = one;
    for (int n : {2, 4, 8}) {
        CAPTURE(n);
        REQUIRE(check_tp_split(c, m.records, n).ok());
        uint64_t sum = 0;
        for (int r = 0; r < n; ++r) sum += weight_buffer_bytes(c, m.records, TpShard{r, n});
        const uint64_t rank0 = weight_buffer_bytes(c, m.records, TpShard{0, n});
        CHECK(rank0 < previous);  // each doubling shrinks a rank's share
        CHECK(sum >= one);        // the replicated tensors are counted on every rank
        MESSAGE("TP=", n, ": rank 0 holds ", double(rank0) / double(1ull << 30), " GiB of ",
                double(one) / double(1ull << 30), " GiB");
        previous = rank0;
        int64_t first = 0, rows = 0, total = 0;
        for (int r = 0; r < n; ++r) {
            vocab_share(c.vocab_size, TpShard{r, n}, first, rows);
            CHECK(first == total);
            total += rows;
        }
        CHECK(total == c.vocab_size);
    }
    CHECK(c.num_attention_heads / 8 == 8);
    CHECK(c.moe_intermediate_size / 8 == 256);  // 16 NVFP4 blocks per row of a down-projection share
    CHECK(check_tp_split(c, m.records, 3).kind() == ErrorKind::usage);
    CHECK(check_tp_split(c, m.records, 128).kind() == ErrorKind::usage);  // 64 heads
}

namespace {

// Row 0's weights and total (reserve included) from an Engine::plan report, in GiB.
std::pair<double, double> plan_rank0(const EngineParams& p) {
    std::string report;
    // On a machine with these GPUs the plan is also checked against them (a device error when the
    // copied cache does not fit): the table is in the report either way.
    const Status st = Engine::plan(p, report);
    REQUIRE_MESSAGE((st.ok() || st.kind() == ErrorKind::device), st.message());
    std::istringstream lines(report);
    for (std::string line; std::getline(lines, line);) {
        std::istringstream row(line);
        std::string device, unit;
        double weights = 0, kv = 0, index = 0, act = 0, total = 0;
        if (row >> device >> weights >> unit >> kv >> unit >> index >> unit >> act >> unit >> total && device == "0")
            return {weights, total};
    }
    FAIL("no row 0 in the plan:\n" << report);
    return {0, 0};
}

}  // namespace

TEST_CASE("plan: the full model with its whole 202,752-token fp8 context fits 80 GB cards with the cache split") {
    EngineParams p;
    p.model_dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-5.1-reap-160";
    p.synthetic = true;
    p.gpus = {0, 1, 2, 3};
    p.session.n_ctx = 202752;
    p.session.kv_type = GLM_TYPE_F8_E4M3;
    p.session.n_verify = 4;  // MTP's verify steps, as the command line sets them
    // Free memory of each H100 80 GB HBM3 as a 4-GPU glmrun found it (CUDA contexts and peer access in
    // place; driver 580.159), from the 202,752-token run of bench/RESULTS.md (sixth session).
    constexpr double k_h100_gib = 78.27;
    p.kv_split = KvSplitMode::off;
    const auto [weights, copied] = plan_rank0(p);
    p.kv_split = KvSplitMode::on;
    const auto [weights_split, split] = plan_rank0(p);
    MESSAGE("per rank at 202,752 fp8, TP = 4: weights ", weights, " GiB; total ", copied, " GiB copied, ", split,
            " GiB split");
    CHECK(weights == weights_split);
    CHECK(copied > k_h100_gib);
    CHECK(split < k_h100_gib);
    // Without --ubatch the prefill chunk is the largest of 2048 / 1024 / 512 that fits the card, with
    // the cache layout --kv-split auto picks there: on an H100 the split cache leaves room for 512 only
    // (what the run on 4x H100 picked), on an H200 the copied cache and 2048 fit.
    p.kv_split = KvSplitMode::automatic;
    p.ubatch_auto = true;
    std::string report;
    const Status st = Engine::plan(p, report);
    REQUIRE_MESSAGE((st.ok() || st.kind() == ErrorKind::device), st.message());
    auto card_line = [&](const std::string& card) {
        std::istringstream lines(report);
        for (std::string line; std::getline(lines, line);)
            if (line.rfind(card, 0) == 0) return line;
        return std::string();
    };
    CHECK_MESSAGE(card_line("H100 80 GB").find("runs with the cache split, prefill chunk 512") != std::string::npos, report);
    CHECK_MESSAGE(card_line("H200 141 GB").find("runs with the cache copied, prefill chunk 2048") != std::string::npos, report);
    p.ubatch_auto = false;
    p.kv_split = KvSplitMode::on;

    // --mtp off leaves the MTP layer (BF16 experts: ~3 GiB per rank) and its caches on disk.
    p.load_mtp = false;
    const auto [weights_no_mtp, split_no_mtp] = plan_rank0(p);
    CHECK(weights - weights_no_mtp > 2.5);
    CHECK(split_no_mtp < split - 2.5);
}

TEST_CASE("tensor parallel: a captured prompt (expert choices, layer outputs) over split caches equals one rank") {
    // --bench reports expert usage from a captured prompt; with the cache split by position the capture
    // takes the eager path with every layer's outputs kept. Same choices and outputs as one rank.
    const std::string dir = std::string(GLMRUN_SOURCE_DIR) + "/models/glm-tiny";
    std::vector<int32_t> prompt;
    for (int i = 0; i < 40; ++i) prompt.push_back(int32_t((i * 977 + 31) % 4000));
    SessionParams p;
    p.n_ctx = 512;  // most positions of each rank's block stay empty, as in a short prompt of a long context
    p.kv_type = GLM_TYPE_F32;
    p.n_capture = 64;
    auto capture = [&](TpTestModel& m, bool split) {
        p.kv_split = split;
        auto s = m.session(p);
        EvalCapture cap;
        const Status st = s->eval(prompt.data(), int64_t(prompt.size()), nullptr, &cap);
        REQUIRE_MESSAGE(st.ok(), st.message());
        return cap;
    };
    TpTestModel one;
    REQUIRE(one.load(dir, cpu_ranks(1)).ok());
    const EvalCapture ref = capture(one, false);
    for (bool split : {false, true}) {
        CAPTURE(split);
        TpTestModel tp;
        REQUIRE(tp.load(dir, cpu_ranks(4)).ok());
        const EvalCapture cap = capture(tp, split);
        REQUIRE(cap.experts.size() == ref.experts.size());
        size_t differ = 0, total = 0;
        for (size_t il = 0; il < ref.experts.size(); ++il) {
            REQUIRE(cap.experts[il].size() == ref.experts[il].size());
            for (size_t s = 0; s < ref.experts[il].size(); ++s, ++total) differ += cap.experts[il][s] != ref.experts[il][s];
        }
        CHECK(total > 0);
        CHECK(differ == 0);
        REQUIRE(cap.layer_out.size() == ref.layer_out.size());
        const std::vector<float>& a = cap.layer_out.back();
        const std::vector<float>& b = ref.layer_out.back();
        REQUIRE(a.size() == b.size());
        CHECK(rel_error(a.data(), b.data(), a.size()) <= 1e-4);
    }
}
