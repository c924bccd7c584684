// One-shot runs through pipes: stdout holds exactly the answer, exit codes per error class, the
// fixtures' greedy ids and logits reproduced through --prompt-ids / --print-ids / --logits-out.
#include <doctest/doctest.h>
#include <unistd.h>

#include <sys/stat.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "cli-harness.h"
#include "engine/npy.h"
#include "tokenizer/tokenizer.h"

namespace {
const std::string k_dense = FIXTURES "/dense_moe";

std::string join(const std::vector<int32_t>& ids) {
    std::string s;
    for (size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + std::to_string(ids[i]);
    return s;
}

std::vector<int32_t> parse_ids(std::string text) {
    std::vector<int32_t> ids;
    while (!text.empty() && (text.back() == '\n')) text.pop_back();
    size_t pos = 0;
    while (pos < text.size()) {
        size_t end = text.find(',', pos);
        if (end == std::string::npos) end = text.size();
        ids.push_back(std::stoi(text.substr(pos, end - pos)));
        pos = end + 1;
    }
    return ids;
}

glm::Tokenizer load_tok(const std::string& dir) {
    std::string error;
    auto tok = glm::Tokenizer::load(dir + "/tokenizer.json", error);
    REQUIRE_MESSAGE(tok.has_value(), error);
    return *tok;
}

nlohmann::json load_reference(const std::string& dir) {
    return nlohmann::json::parse(read_text_file(dir + "/reference.json"));
}
}  // namespace

TEST_CASE("help fits 80 columns and names the exit codes; version") {
    RunResult r = run_glmrun({"--help"});
    CHECK(r.rc == 0);
    CHECK(r.err.empty());
    for (const std::string& line : split_lines(r.out)) CHECK_MESSAGE(line.size() <= 80, line);
    CHECK(r.out.find("Exit codes") != std::string::npos);
    for (const char* flag : {"--prompt-ids", "--logits-out", "--bench-ctx", "--kv-type", "--color", "-tp N"})
        CHECK_MESSAGE(r.out.find(flag) != std::string::npos, flag);
    r = run_glmrun({"--version"});
    CHECK(r.rc == 0);
    CHECK(r.out.rfind("glmrun ", 0) == 0);
}

TEST_CASE("exit codes per error class, one line on stderr") {
    struct Case {
        std::vector<std::string> args;
        std::string stdin_text;
        int rc;
    };
    const std::string long_prompt(400, 'x');
    const std::vector<Case> cases = {
        {{"--no-such-flag"}, "", 1},
        {{"-m", k_dense, "-p", "hi", "--kv-type", "int3"}, "", 1},
        {{"-m", k_dense, "-p", "hi", "--think", "maybe"}, "", 1},
        {{"-m", k_dense, "-p", "hi", "--temp", "warm"}, "", 1},
        {{"-m", k_dense, "-p", "hi", "--attn", "sparse"}, "", 1},
        {{"-m", k_dense, "--prompt-ids", "1,x,3"}, "", 1},
        {{"-m", k_dense, "--bench", "--bench-ctx", "zero"}, "", 1},
        {{"-m", k_dense, "-p", "hi", "-i", "--bench"}, "", 1},
        {{"-m", k_dense, "--synthetic", "--synthetic-seed", "x", "--bench"}, "", 1},
        {{"-m", k_dense, "--synthetic-seed", "3", "-p", "hi"}, "", 1},
        {{"-m", k_dense, "--plan-only", "--bench"}, "", 1},
        {{"-m", k_dense, "--no-p2p=maybe", "-p", "hi"}, "", 1},
        {{"-m", k_dense, "-n", "4"}, "", 1},  // no prompt at all (stdin empty)
        {{"-m", "/nonexistent/model", "-p", "hi"}, "", 2},
        {{"-m", FIXTURES, "-p", "hi"}, "", 2},  // a directory without a model
        {{"-m", k_dense, "-f", "/nonexistent/prompt.txt"}, "", 2},
        {{"-m", k_dense, "-c", "16", "-p", long_prompt}, "", 2},
        {{"-m", k_dense, "-c", "16", "--think", "off"}, long_prompt, 2},
        {{"-m", k_dense, "--prompt-ids", "1,2,999999", "-n", "2"}, "", 2},
    };
    for (const Case& c : cases) {
        std::string cmd;
        for (const std::string& a : c.args) cmd += (a.size() > 40 ? a.substr(0, 40) + "..." : a) + " ";
        CAPTURE(cmd);
        const RunResult r = run_glmrun(c.args, c.stdin_text);
        CAPTURE(r.err);
        CHECK(r.rc == c.rc);
        CHECK(r.out.empty());
        const std::vector<std::string> lines = split_lines(r.err);
        REQUIRE(!lines.empty());
        CHECK(lines.back().rfind("error: ", 0) == 0);
        CHECK(r.err.find("Traceback") == std::string::npos);
        CHECK(r.err.find("terminate") == std::string::npos);
    }
}

TEST_CASE("pipes: stdout holds exactly the answer") {
    const glm::Tokenizer tok = load_tok(k_dense);
    // --raw: the answer is the decoded ids, byte for byte (the stop token excluded)
    const std::vector<std::string> base = {"-m", k_dense, "-p", "hello world", "--raw", "--temp", "0", "-n", "24"};
    const RunResult a = run_glmrun(base);
    const RunResult b = run_glmrun(base);
    std::vector<std::string> with_ids = base;
    with_ids.push_back("--print-ids");
    const RunResult ids = run_glmrun(with_ids);
    REQUIRE(a.rc == 0);
    REQUIRE(b.rc == 0);
    REQUIRE(ids.rc == 0);
    CHECK(a.out == b.out);
    CHECK(!a.out.empty());
    std::vector<int32_t> gen = parse_ids(ids.out);
    REQUIRE(!gen.empty());
    const std::vector<int32_t> eos = {0, 7, 9};
    if (std::find(eos.begin(), eos.end(), gen.back()) != eos.end()) gen.pop_back();
    CHECK(a.out == tok.decode_text(gen));
    CHECK(a.err.find(a.out) == std::string::npos);

    // chat template, thinking off: stdout repeats exactly, nothing of the rest leaks into it
    const std::vector<std::string> chat = {"-m", k_dense, "-p", "hello", "--think", "off", "--temp", "0", "-n", "16"};
    const RunResult c1 = run_glmrun(chat), c2 = run_glmrun(chat);
    CHECK(c1.rc == 0);
    CHECK(c1.out == c2.out);
    CHECK(c1.out.find("note:") == std::string::npos);

    // thinking on: reasoning goes to stderr unless --show-think, which wraps it on stdout
    const std::vector<std::string> think = {"-m", k_dense, "-p", "hello", "--temp", "0", "-n", "40"};
    const RunResult t1 = run_glmrun(think);
    std::vector<std::string> show = think;
    show.push_back("--show-think");
    const RunResult t2 = run_glmrun(show);
    CHECK(t1.rc == 0);
    CHECK(t2.rc == 0);
    // same answer at the end; anything before it is the reasoning inside <think>...</think>
    REQUIRE(t2.out.size() >= t1.out.size());
    CHECK(t2.out.compare(t2.out.size() - t1.out.size(), std::string::npos, t1.out) == 0);
    if (t2.out != t1.out) {
        CHECK(t2.out.rfind("<think>", 0) == 0);
        CHECK(t2.out.find("</think>") != std::string::npos);
        CHECK(t1.err.find(t2.out.substr(7, t2.out.find("</think>") - 7)) != std::string::npos);
    }
}

TEST_CASE("-p with piped stdin: the instruction, a blank line, then the piped text") {
    const glm::Tokenizer tok = load_tok(k_dense);
    const RunResult r = run_glmrun({"-m", k_dense, "--raw", "--tokenize", "-p", "Summarize:"}, "some notes\n");
    REQUIRE(r.rc == 0);
    CHECK(r.out == join(tok.encode("Summarize:\n\nsome notes\n")) + "\n");
    const RunResult chat = run_glmrun({"-m", k_dense, "--tokenize", "--think", "off", "-p", "hi"});
    REQUIRE(chat.rc == 0);
    CHECK(chat.out == join(tok.encode("[gMASK]<sop><|user|>hi<|assistant|></think>")) + "\n");
}

TEST_CASE("--prompt-ids / --print-ids reproduce the fixtures' greedy ids") {
    for (const char* name : {"dense_moe", "groups", "index_cache"}) {
        const std::string dir = std::string(FIXTURES) + "/" + name;
        if (access((dir + "/reference.json").c_str(), R_OK) != 0) continue;
        const nlohmann::json ref = load_reference(dir);
        for (const auto& g : ref["greedy"]) {
            const int p = g["prompt"].get<int>();
            const std::vector<int32_t> prompt = ref["prompts"][size_t(p)].get<std::vector<int32_t>>();
            const std::vector<int32_t> want = g["ids"].get<std::vector<int32_t>>();
            CAPTURE(name);
            CAPTURE(p);
            const RunResult r = run_glmrun({"-m", dir, "--prompt-ids", join(prompt), "-n", std::to_string(want.size()),
                                            "--temp", "0", "--repeat-penalty", "1", "--print-ids", "--cpu", "--raw"});
            CAPTURE(r.err);
            REQUIRE(r.rc == 0);
            CHECK(r.out == join(want) + "\n");
        }
    }
}

TEST_CASE("--logits-out matches the reference logits") {
    const nlohmann::json ref = load_reference(k_dense);
    NpyArray want, want_decode;
    REQUIRE(npy_read(k_dense + "/reference_logits.npy", want).ok());
    // reference_decode_logits: per greedy run, the logits after each of its generated tokens
    REQUIRE(npy_read(k_dense + "/reference_decode_logits.npy", want_decode).ok());
    REQUIRE(want.shape.size() == 2);
    const int64_t n_vocab = want.shape[1];
    const std::string out = std::string(GLMRUN_BINARY_DIR) + "/test-cli-logits.npy";
    for (const auto& pre : ref["prefill"]) {
        const int p = pre["prompt"].get<int>();
        const int64_t row = pre["logits_offset"].get<int64_t>() + pre["length"].get<int64_t>() - 1;
        const std::vector<int32_t> prompt = ref["prompts"][size_t(p)].get<std::vector<int32_t>>();
        const RunResult r = run_glmrun({"-m", k_dense, "--prompt-ids", join(prompt), "-n", "16", "--temp", "0",
                                        "--repeat-penalty", "1", "--cpu", "--logits-out", out});
        CAPTURE(p);
        CAPTURE(r.err);
        REQUIRE(r.rc == 0);
        NpyArray got;
        REQUIRE(npy_read(out, got).ok());
        REQUIRE(got.shape.size() == 2);
        CHECK(got.shape[1] == n_vocab);
        REQUIRE(got.shape[0] == 16);  // the prompt's last position + 15 generated steps
        auto compare = [&](const float* ref_row, int64_t got_row) {
            double max_ref = 0, max_diff = 0;
            for (int64_t v = 0; v < n_vocab; ++v) {
                const double w = ref_row[v];
                max_ref = std::max(max_ref, std::fabs(w));
                max_diff = std::max(max_diff, std::fabs(double(got.f32[size_t(got_row * n_vocab + v)]) - w));
            }
            CAPTURE(got_row);
            CHECK(max_diff <= 1e-4 * std::max(max_ref, 1.0));
        };
        compare(want.f32.data() + row * n_vocab, 0);
        for (int64_t s = 1; s < 16; ++s) compare(want_decode.f32.data() + (int64_t(p) * 16 + s - 1) * n_vocab, s);
    }
    // -n 0: just the prompt's row
    const std::vector<int32_t> prompt0 = ref["prompts"][0].get<std::vector<int32_t>>();
    const RunResult r0 = run_glmrun({"-m", k_dense, "--prompt-ids", join(prompt0), "-n", "0", "--logits-out", out});
    REQUIRE(r0.rc == 0);
    CHECK(r0.out.empty());
    NpyArray one;
    REQUIRE(npy_read(out, one).ok());
    CHECK(one.shape == std::vector<int64_t>{1, n_vocab});
    unlink(out.c_str());
}

TEST_CASE("--bench runs on the CPU with the tiny model and writes JSON") {
    const std::string json = std::string(GLMRUN_BINARY_DIR) + "/test-cli-bench.json";
    const RunResult r = run_glmrun({"-m", k_dense, "--cpu", "--bench", "--bench-ctx", "96,128", "--bench-reps", "2",
                                    "--bench-json", json});
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    const std::vector<std::string> lines = split_lines(r.out);
    // The machine header, then the sweep table (header, separator, two rows), then the roofline.
    const auto at = std::find_if(lines.begin(), lines.end(),
                                 [](const std::string& l) { return l.rfind("| context", 0) == 0; });
    REQUIRE(at != lines.end());
    const size_t i = size_t(at - lines.begin());
    REQUIRE(lines.size() > i + 4);
    CHECK(lines[i + 2].rfind("| 96 |", 0) == 0);
    CHECK(lines[i + 3].rfind("| 128 |", 0) == 0);
    CHECK(lines[i + 4].empty());
    for (const char* says : {"- machine: ", "1 rank on cpu", "- copy bandwidth: n/a on the CPU backend",
                             "- attention: dsa, index pattern all F", "- weights: from the checkpoint",
                             "### Bytes read per decoded token", "| routed experts |", "### Roofline",
                             "### Decode step profile"})
        CHECK_MESSAGE(r.out.find(says) != std::string::npos, says);
    const nlohmann::json j = nlohmann::json::parse(read_text_file(json));
    CHECK(j["results"][0]["roofline"]["total_bytes_per_token_per_rank"].get<double>() > 0);
    CHECK(j["results"][0]["roofline"]["roofline_tok_s"].is_null());  // no copy bandwidth on the CPU
    CHECK(j["settings"]["n_ranks"] == 1);
    CHECK(j["settings"]["synthetic"] == false);
    CHECK(j["results"].size() == 2);
    CHECK(j["results"][0]["decode_token_s"].size() == 2);
    CHECK(j["results"][0]["decode_token_s"][0].size() >= 64);
    CHECK(j["results"][1]["decode_tok_s"].get<double>() > 0);
    CHECK(j.contains("git_revision"));
    CHECK(j["machine"].contains("cpu"));
    unlink(json.c_str());
}

TEST_CASE("Ctrl-C stops a one-shot run: exit 130 after flushing") {
    // The penalties keep the stop tokens (in the prompt) away, so generation runs long.
    const RunResult r = run_glmrun({"-m", k_dense, "--raw", "--prompt-ids", "0,7,9,2,4,111,112", "--temp", "0",
                                    "--repeat-penalty", "100", "--repeat-last-n", "-1", "-n", "100000", "-c", "4096",
                                    "--print-ids"},
                                   "", 300.0, /*interrupt_on_output=*/true);
    CHECK(r.rc == 130);
    CHECK(!r.out.empty());
    CHECK(r.err.find("interrupted") != std::string::npos);
}

TEST_CASE("--color: reasoning is dim on stderr when colour is on, never on stdout") {
    const std::vector<std::string> base = {"-m", k_dense, "-p", "hello", "--temp", "0", "-n", "40"};
    std::vector<std::string> always = base, never = base;
    always.insert(always.end(), {"--color", "always"});
    never.insert(never.end(), {"--color", "never"});
    const RunResult a = run_glmrun(always), n = run_glmrun(never);
    REQUIRE(a.rc == 0);
    REQUIRE(n.rc == 0);
    CHECK(a.err.find("\x1b[2m") != std::string::npos);
    CHECK(a.out.find("\x1b[") == std::string::npos);
    CHECK(n.err.find("\x1b[") == std::string::npos);
    CHECK(a.out == n.out);
}

TEST_CASE("--logits-out refuses to replace something that is not a regular file") {
    // the .npy writer renames a temporary file over the target: a device or directory must be refused
    const RunResult r = run_glmrun({"-m", k_dense, "--raw", "-p", "x", "-n", "2", "--logits-out", GLMRUN_BINARY_DIR});
    CHECK(r.rc == 1);
    CHECK(r.out.empty());
}

TEST_CASE("--tokenize needs only tokenizer.json; -m defaults to the bundled model") {
    const std::string dir = std::string(GLMRUN_BINARY_DIR) + "/test-cli-tokonly";
    mkdir(dir.c_str(), 0755);
    {
        std::ofstream out(dir + "/tokenizer.json", std::ios::binary);
        out << read_text_file(k_dense + "/tokenizer.json");
    }
    const RunResult a = run_glmrun({"-m", dir, "--tokenize", "-p", "hi"});
    const RunResult b = run_glmrun({"-m", k_dense, "--tokenize", "-p", "hi"});
    CHECK(a.rc == 0);
    CHECK(a.out == b.out);
    unlink((dir + "/tokenizer.json").c_str());
    rmdir(dir.c_str());

    const RunResult d = run_glmrun({"-p", "hi", "-n", "4"});
    CAPTURE(d.err);
    CHECK(d.rc == 0);
}

TEST_CASE("REPL through pipes: the answers on stdout, the rest on stderr") {
    const std::vector<std::string> args = {"-m", k_dense, "-i", "--temp", "0", "-n", "6", "--think", "off"};
    const RunResult r = run_glmrun(args, "hello\n/stats\nsecond\n");
    CAPTURE(r.err);
    REQUIRE(r.rc == 0);
    const RunResult one = run_glmrun({"-m", k_dense, "-p", "hello", "--temp", "0", "-n", "6", "--think", "off"});
    REQUIRE(one.rc == 0);
    // the first answer equals the one-shot answer; each answer ends with a newline
    CHECK(r.out.rfind(one.out + "\n", 0) == 0);
    CHECK(std::count(r.out.begin(), r.out.end(), '\n') >= 2);
    CHECK(r.err.find("turns 2,") != std::string::npos);
    CHECK(r.out.find("turns") == std::string::npos);
}
