// --mtp / --draft: MTP speculative decoding from the command line gives the same ids and text as plain
// decoding (greedy), prints its statistics on stderr, and rejects what it cannot do.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "cli-harness.h"

namespace {
const std::string k_tiny = GLMRUN_SOURCE_DIR "/models/glm-tiny";
const std::string k_dense = FIXTURES "/dense_moe";
}  // namespace

TEST_CASE("--mtp on: the same greedy ids and text as --mtp off, with its statistics on stderr") {
    const std::vector<std::string> base = {"-m", k_tiny, "--cpu", "--temp", "0"};
    // Raw completion with ids (an odd -n: the last round is cut by the token budget) ...
    auto raw = base;
    raw.insert(raw.end(), {"--raw", "-p", "The history of the city begins", "-n", "37", "--print-ids"});
    auto raw_on = raw, raw_off = raw;
    raw_on.insert(raw_on.end(), {"--mtp", "on", "--draft", "3"});
    raw_off.insert(raw_off.end(), {"--mtp", "off"});
    const RunResult on = run_glmrun(raw_on), off = run_glmrun(raw_off), dflt = run_glmrun(raw);
    CAPTURE(on.err);
    REQUIRE(on.rc == 0);
    REQUIRE(off.rc == 0);
    CHECK(on.out == off.out);
    CHECK(on.err.find("mean accepted length") != std::string::npos);
    CHECK(off.err.find("mtp:") == std::string::npos);
    CHECK(dflt.err.find("mtp:") == std::string::npos);  // the CPU backend leaves it off by default
    CHECK(dflt.out == off.out);
    // ... and a chat answer until EOS (the stop token may come inside a round of drafts).
    for (const char* draft : {"1", "2"}) {
        auto chat = base;
        chat.insert(chat.end(), {"-p", "Tell me about rivers.", "-n", "200"});
        auto chat_on = chat;
        chat_on.insert(chat_on.end(), {"--mtp", "on", "--draft", draft});
        const RunResult c_on = run_glmrun(chat_on), c_off = run_glmrun(chat);
        CAPTURE(draft);
        REQUIRE(c_on.rc == 0);
        CHECK(c_on.out == c_off.out);
    }
}

TEST_CASE("--mtp / --draft usage errors") {
    struct Case {
        std::vector<std::string> args;
        int rc;
        const char* says;
    };
    const std::vector<Case> cases = {
        {{"--mtp", "maybe"}, 1, "--mtp"},
        {{"--draft", "0"}, 1, "--draft"},
        {{"--draft", "16"}, 1, "--draft"},
        {{"--mtp", "on", "--logits-out", "/tmp/glmrun-mtp-x.npy"}, 1, "--logits-out"},
        {{"-m", FIXTURES "/index_cache", "--mtp", "on"}, 2, "no MTP layer"},
    };
    for (const Case& c : cases) {
        std::vector<std::string> args = c.args;
        if (args[0] != "-m") args.insert(args.begin(), {"-m", k_dense});
        args.insert(args.end(), {"--cpu", "--raw", "-p", "x", "-n", "2"});
        const RunResult r = run_glmrun(args);
        CAPTURE(c.args[1]);
        CHECK(r.rc == c.rc);
        CHECK(r.err.find(c.says) != std::string::npos);
    }
}
