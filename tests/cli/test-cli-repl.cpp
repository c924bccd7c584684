// The REPL driven through a pseudo-terminal: two turns (the second prefills only new tokens),
// /reset, Ctrl-C during generation, /save and /load round trip, Ctrl-D.
#include <doctest/doctest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>
#include <regex>

#include "cli-harness.h"

namespace {
const std::string k_dense = FIXTURES "/dense_moe";

// The numbers of the stats line "[N tokens, X tok/s, prefill P tokens, context U/C]" after `from`.
bool stats_after(const std::string& out, size_t from, long& prefill, long& used) {
    static const std::regex re(R"(\[(\d+) tokens, [0-9.]+ tok/s, prefill (\d+) tokens, context (\d+)/(\d+)\])");
    std::smatch m;
    const std::string tail = out.substr(from);
    if (!std::regex_search(tail, m, re)) return false;
    prefill = std::stol(m[2]);
    used = std::stol(m[3]);
    return true;
}
}  // namespace

TEST_CASE("REPL: two turns, /reset, /save and /load, Ctrl-D") {
    PtyProcess p({"-m", k_dense, "-i", "--simple-io", "--temp", "0", "-n", "8", "--think", "off", "--color", "never"});
    size_t at = p.expect("/help", 0);
    REQUIRE(at != std::string::npos);

    p.send("hello there\n");
    at = p.expect("context ", at + 5);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());
    at = p.expect("]", at);
    long prefill1 = 0, used1 = 0;
    REQUIRE(stats_after(p.output(), 0, prefill1, used1));
    CHECK(prefill1 == used1 - 8 + 1);  // all of the first prompt (the last answer token is not evaluated)

    p.send("and a second turn\n");
    const size_t turn2 = at;
    at = p.expect("context ", at + 1);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());
    at = p.expect("]", at);
    long prefill2 = 0, used2 = 0;
    REQUIRE(stats_after(p.output(), turn2, prefill2, used2));
    CHECK(used2 > used1);
    CHECK(prefill2 < used2 - 8);  // only the new part of the conversation was prefilled

    const std::string save1 = std::string(GLMRUN_BINARY_DIR) + "/test-cli-chat1.json";
    const std::string save2 = std::string(GLMRUN_BINARY_DIR) + "/test-cli-chat2.json";
    p.send("/save " + save1 + "\n");
    at = p.expect("[saved 4 messages", at);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());

    p.send("/reset\n");
    at = p.expect("[conversation cleared]", at);
    REQUIRE(at != std::string::npos);
    p.send("/stats\n");
    at = p.expect("turns 0, context 0/", at);
    CHECK(at != std::string::npos);

    p.send("/load " + save1 + "\n");
    at = p.expect("[loaded 4 messages", at);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());
    p.send("/save " + save2 + "\n");
    at = p.expect("[saved 4 messages", at);
    REQUIRE(at != std::string::npos);
    const nlohmann::json a = nlohmann::json::parse(read_text_file(save1));
    const nlohmann::json b = nlohmann::json::parse(read_text_file(save2));
    CHECK(a == b);
    CHECK(a["messages"][0]["content"] == "hello there");
    CHECK(a["messages"][2]["content"] == "and a second turn");

    // after /load the conversation continues: the third turn sees all of it
    p.send("third\n");
    const size_t turn3 = at;
    at = p.expect("context ", at + 1);
    REQUIRE(at != std::string::npos);
    at = p.expect("]", at);
    long prefill3 = 0, used3 = 0;
    REQUIRE(stats_after(p.output(), turn3, prefill3, used3));
    CHECK(used3 > used2);

    p.send("/load /nonexistent/chat.json\n");
    at = p.expect("error: cannot read", at);
    CHECK(at != std::string::npos);

    p.send("\x04");  // Ctrl-D at an empty prompt
    CHECK(p.wait_exit() == 0);
    unlink(save1.c_str());
    unlink(save2.c_str());
}

TEST_CASE("REPL: Ctrl-C stops the answer, keeps it in history, marked; the REPL goes on") {
    // Stop tokens sit in the user text and the penalties look at the whole history: a long answer.
    PtyProcess p({"-m", k_dense, "-i", "--simple-io", "--temp", "0", "-n", "100000", "-c", "4096", "--think", "off",
                  "--repeat-penalty", "100", "--repeat-last-n", "-1", "--color", "never"});
    size_t at = p.expect("/help", 0);
    REQUIRE(at != std::string::npos);
    p.send("<|endoftext|><|user|><|observation|>go on\n");
    at = p.expect("go on", at);  // the echo
    REQUIRE(at != std::string::npos);
    // wait for some of the answer, then press Ctrl-C
    const size_t echo_end = at + 6;
    for (int i = 0; i < 600 && p.output().size() < echo_end + 8; ++i) p.expect("\x01never", 0, 0.05);
    p.send("\x03");
    at = p.expect("[interrupted", echo_end);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());

    const std::string save = std::string(GLMRUN_BINARY_DIR) + "/test-cli-chat3.json";
    p.send("/save " + save + "\n");
    at = p.expect("[saved 2 messages", at);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());
    const nlohmann::json j = nlohmann::json::parse(read_text_file(save));
    CHECK(j["messages"][1]["role"] == "assistant");
    CHECK(j["messages"][1]["interrupted"] == true);

    // Ctrl-C at the prompt only gives a fresh prompt (typed input waits for it: the terminal may flush
    // what was typed ahead of the new prompt); /quit leaves with 0
    const size_t before = p.output().size();
    p.send("\x03");
    at = p.expect("> ", before);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());
    p.send("/quit\n");
    const int rc = p.wait_exit();
    CHECK_MESSAGE(rc == 0, p.output());
    unlink(save.c_str());
}

TEST_CASE("REPL: a turn longer than the context is refused without losing the conversation") {
    PtyProcess p({"-m", k_dense, "-i", "--simple-io", "--temp", "0", "-n", "4", "-c", "48", "--think", "off", "--color", "never"});
    size_t at = p.expect("/help", 0);
    REQUIRE(at != std::string::npos);
    p.send("hi\n");
    at = p.expect("context ", at + 5);
    REQUIRE(at != std::string::npos);
    p.send(std::string(200, 'z') + "\n");
    at = p.expect("the context is full", at);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());
    CHECK(p.output().find("/reset", at) != std::string::npos);
    p.send("/stats\n");
    at = p.expect("turns 2,", at);  // the first exchange is still there
    CHECK(at != std::string::npos);
    p.send("/quit\n");
    CHECK(p.wait_exit() == 0);
}

TEST_CASE("REPL on a terminal honours NO_COLOR with --color auto") {
    setenv("NO_COLOR", "1", 1);
    PtyProcess p({"-m", k_dense, "-i", "--simple-io", "--temp", "0", "-n", "24", "--color", "auto"});
    unsetenv("NO_COLOR");
    size_t at = p.expect("/help", 0);
    REQUIRE(at != std::string::npos);
    p.send("hello\n");
    at = p.expect("context ", at);
    REQUIRE(at != std::string::npos);
    CHECK(p.output().find("\x1b[2m") == std::string::npos);
    p.send("/quit\n");
    CHECK(p.wait_exit() == 0);

    PtyProcess c({"-m", k_dense, "-i", "--simple-io", "--temp", "0", "-n", "24", "--color", "auto"});
    at = c.expect("/help", 0);
    REQUIRE(at != std::string::npos);
    CHECK(c.output().find("\x1b[2m") != std::string::npos);  // the dim banner
    c.send("/quit\n");
    CHECK(c.wait_exit() == 0);
}

TEST_CASE("REPL with line editing (libedit when present): a turn and /quit, waiting for each prompt") {
    PtyProcess p({"-m", k_dense, "-i", "--temp", "0", "-n", "4", "--think", "off", "--color", "never"});
    size_t at = p.expect("> ", 0);
    REQUIRE(at != std::string::npos);
    p.send("hi\n");
    at = p.expect("context ", at);
    REQUIRE_MESSAGE(at != std::string::npos, p.output());
    at = p.expect("> ", at);
    REQUIRE(at != std::string::npos);
    p.send("/quit\n");
    const int rc = p.wait_exit();
    CHECK_MESSAGE(rc == 0, p.output());
}
