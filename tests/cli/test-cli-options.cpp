// Command-line parsing in process (no glmrun binary): the speed-run flags (--synthetic,
// --synthetic-seed, --no-p2p, --plan-only, --cpu -tp N, --pdl, --ubatch), what they become in
// EngineParams, and one bad value each.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "cli/options.h"

namespace {

struct Parsed {
    Status status;
    CliOptions opts;
    EngineParams params;
};

Parsed parse(std::vector<std::string> args) {
    args.insert(args.begin(), "glmrun");
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    Parsed p;
    p.status = parse_cli(int(argv.size()), argv.data(), p.opts);
    if (p.status.ok()) apply_engine_flags(p.opts, p.params);
    return p;
}

void check_usage_error(const std::vector<std::string>& args, const std::string& says) {
    std::string cmd;
    for (const std::string& a : args) cmd += a + " ";
    CAPTURE(cmd);
    const Parsed p = parse(args);
    CHECK(p.status.kind() == ErrorKind::usage);
    CAPTURE(p.status.message());
    CHECK(p.status.message().find(says) != std::string::npos);
}

}  // namespace

TEST_CASE("options: defaults leave real weights, peer-to-peer and one rank") {
    const Parsed p = parse({"-p", "hi"});
    REQUIRE(p.status.ok());
    CHECK(!p.opts.synthetic);
    CHECK(!p.opts.plan_only);
    CHECK(p.params.p2p);
    CHECK(!p.params.synthetic);
    CHECK(p.params.synthetic_seed == 1);
    CHECK(p.params.n_cpu_ranks == 1);
    CHECK(p.params.gpus.empty());
}

TEST_CASE("options: --synthetic and --synthetic-seed") {
    Parsed p = parse({"--synthetic", "--bench"});
    REQUIRE(p.status.ok());
    CHECK(p.params.synthetic);
    CHECK(p.params.synthetic_seed == 1);
    p = parse({"--synthetic", "--synthetic-seed", "42", "--bench"});
    REQUIRE(p.status.ok());
    CHECK(p.params.synthetic_seed == 42);
    p = parse({"--synthetic", "--synthetic-seed=18446744073709551615", "--bench"});
    REQUIRE(p.status.ok());
    CHECK(p.params.synthetic_seed == 18446744073709551615ull);

    check_usage_error({"--synthetic=maybe"}, "synthetic");
    check_usage_error({"--synthetic", "--synthetic-seed", "x"}, "--synthetic-seed expects");
    check_usage_error({"--synthetic", "--synthetic-seed", "0"}, "1..2^64-1");  // 0: weights from shards
    check_usage_error({"--synthetic", "--synthetic-seed", "-1"}, "--synthetic-seed");
    check_usage_error({"--synthetic", "--synthetic-seed", "18446744073709551616"}, "--synthetic-seed expects");
    check_usage_error({"--synthetic-seed", "7"}, "needs --synthetic");
    check_usage_error({"--synthetic", "--verify"}, "no shards");
}

TEST_CASE("options: --no-p2p") {
    const Parsed p = parse({"-tp", "2", "--no-p2p", "--bench"});
    REQUIRE(p.status.ok());
    CHECK(!p.params.p2p);
    CHECK(p.params.gpus == std::vector<int>{0, 1});
    check_usage_error({"--no-p2p=maybe"}, "p2p");
}

TEST_CASE("options: --plan-only is a mode of its own") {
    const Parsed p = parse({"-tp", "4", "--synthetic", "--plan-only"});
    REQUIRE(p.status.ok());
    CHECK(p.opts.plan_only);
    CHECK(p.params.gpus.size() == 4);
    check_usage_error({"--plan-only=maybe"}, "plan-only");
    check_usage_error({"--plan-only", "--bench"}, "exclude each other");
}

TEST_CASE("options: --cpu with -tp N gives N CPU ranks, not GPUs") {
    Parsed p = parse({"--cpu", "-tp", "4", "-p", "hi"});
    REQUIRE(p.status.ok());
    CHECK(p.params.use_cpu);
    CHECK(p.params.gpus.empty());
    CHECK(p.params.n_cpu_ranks == 4);
    p = parse({"-tp", "3", "--cpu", "-p", "hi"});  // order does not matter
    REQUIRE(p.status.ok());
    CHECK(p.params.n_cpu_ranks == 3);
    CHECK(p.params.gpus.empty());
    p = parse({"-tp", "4", "-p", "hi"});
    REQUIRE(p.status.ok());
    CHECK(!p.params.use_cpu);
    CHECK(p.params.gpus == std::vector<int>{0, 1, 2, 3});
    CHECK(p.params.n_cpu_ranks == 1);
    check_usage_error({"--cpu", "--gpus", "0,1"}, "exclude each other");
    check_usage_error({"--cpu", "-tp", "0"}, "-tp expects");
}

TEST_CASE("options: --pdl, and --ubatch given or left to the engine") {
    Parsed p = parse({"-tp", "4", "--bench"});
    REQUIRE(p.status.ok());
    CHECK(p.params.programmatic_launch == PdlMode::automatic);
    CHECK(p.opts.ubatch_auto);
    p = parse({"--pdl", "on", "--ubatch", "1024", "--bench"});
    REQUIRE(p.status.ok());
    CHECK(p.params.programmatic_launch == PdlMode::on);
    CHECK(!p.opts.ubatch_auto);
    CHECK(p.opts.ubatch == 1024);
    p = parse({"--pdl", "off", "--ubatch", "512", "--bench"});  // the old default, now asked for
    REQUIRE(p.status.ok());
    CHECK(p.params.programmatic_launch == PdlMode::off);
    CHECK(!p.opts.ubatch_auto);
    check_usage_error({"--pdl", "maybe"}, "--pdl");
    check_usage_error({"--ubatch", "0", "-p", "hi"}, "--ubatch must be >= 1");
}

TEST_CASE("options: the help lists the new flags within 80 columns") {
    const std::string help = cli_help_text();
    for (const char* flag : {"--synthetic ", "--synthetic-seed N", "--no-p2p", "--plan-only", "200000", "--pdl M"})
        CHECK_MESSAGE(help.find(flag) != std::string::npos, flag);
    size_t start = 0;
    while (start < help.size()) {
        size_t end = help.find('\n', start);
        if (end == std::string::npos) end = help.size();
        CHECK_MESSAGE(end - start <= 80, help.substr(start, end - start));
        start = end + 1;
    }
}
