// tokenizer-bench TOKENIZER_JSON [TEXT_FILE]
// Prints the load time of TOKENIZER_JSON and the encode throughput (MB/s, one thread) of TEXT_FILE,
// or, without one, of ~8 MB of English built from the prose and code of the tokenizer test corpus.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <random>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

#include "tokenizer/tokenizer.h"

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::string english_text(size_t bytes) {
    const auto corpus = nlohmann::json::parse(read_file(std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures/tokenizer/corpus.json"));
    std::vector<std::string> parts;
    for (const auto& c : corpus["cases"]) {
        const std::string tag = c["tag"].get<std::string>();
        if ((tag == "prose" || tag == "code") && c.contains("text")) parts.push_back(c["text"].get<std::string>());
    }
    std::mt19937 rng(1);
    std::string out;
    while (out.size() < bytes) {
        out += parts[rng() % parts.size()];
        out += rng() % 4 == 0 ? "\n\n" : " ";
    }
    return out;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::fprintf(stderr, "usage: %s TOKENIZER_JSON [TEXT_FILE]\n", argv[0]);
        return 2;
    }
    const std::string path = argv[1];
    std::string error;
    std::optional<glm::Tokenizer> tok;
    double best_load = 1e9;
    for (int i = 0; i < 3; ++i) {
        const auto t0 = std::chrono::steady_clock::now();
        tok = glm::Tokenizer::load(path, error);
        best_load = std::min(best_load, seconds_since(t0));
        if (!tok) {
            std::fprintf(stderr, "%s\n", error.c_str());
            return 2;
        }
    }
    const std::string text = argc > 2 ? read_file(argv[2]) : english_text(8u << 20);
    std::vector<glm::token_id> ids;
    // The first encode runs with an empty word cache (a fresh tokenizer); later ones reuse it.
    double cold = 0, best_encode = 1e9;
    for (int i = 0; i < 3; ++i) {
        ids.clear();
        const auto t0 = std::chrono::steady_clock::now();
        tok->encode(text, ids);
        const double t = seconds_since(t0);
        if (i == 0) cold = t;
        best_encode = std::min(best_encode, t);
    }
    std::printf("tokenizer.json: %s (%.1f MB)\n", path.c_str(), double(read_file(path).size()) / 1e6);
    std::printf("load:   %.3f s (best of 3)\n", best_load);
    const double mb = double(text.size()) / 1e6;
    std::printf("encode: %.1f MB of text -> %zu tokens: cold cache %.1f MB/s, warm %.1f MB/s (one thread)\n", mb,
                ids.size(), mb / cold, mb / best_encode);
    return 0;
}
