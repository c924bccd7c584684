// Helpers shared by the tokenizer tests.
#pragma once
#include <fstream>
#include <sstream>
#include <string>

#include <nlohmann/json.hpp>

namespace glm::test {

inline std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

inline std::string fixture_path(const std::string& name) {
    return std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures/tokenizer/" + name;
}

inline std::string vocab_path(const std::string& name) {
    return std::string(GLM_TOKVOCAB_DIR) + "/" + name + "/tokenizer.json";
}

inline nlohmann::json read_json(const std::string& path) { return nlohmann::json::parse(read_file(path)); }

inline std::string from_hex(const std::string& hex) {
    std::string out;
    for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(char(std::stoi(hex.substr(i, 2), nullptr, 16)));
    return out;
}

// The corpus entry as the bytes our encoder receives (invalid UTF-8 kept as is).
inline std::string corpus_bytes(const nlohmann::json& c) {
    return c.contains("text") ? c["text"].get<std::string>() : from_hex(c["hex"].get<std::string>());
}

}  // namespace glm::test
