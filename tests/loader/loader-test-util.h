// Helpers shared by the loader tests: fixture paths, temp copies, header surgery on shards.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace loader_test {

namespace fs = std::filesystem;

inline std::string fixture(const std::string& name) { return std::string(GLMRUN_SOURCE_DIR) + "/tests/fixtures/" + name; }

// A fresh copy of a fixture in a temp dir, removed when the object dies.
struct TempCopy {
    std::string dir;
    explicit TempCopy(const std::string& name) {
        std::string tmpl = (fs::temp_directory_path() / "glmrun-loader-XXXXXX").string();
        std::vector<char> buf(tmpl.begin(), tmpl.end());
        buf.push_back(0);
        char* d = mkdtemp(buf.data());
        if (!d) std::abort();
        dir = std::string(d) + "/" + name;
        fs::create_directories(dir);
        for (const auto& e : fs::directory_iterator(fixture(name))) {
            fs::copy_file(e.path(), dir + "/" + e.path().filename().string());
            fs::permissions(dir + "/" + e.path().filename().string(), fs::perms::owner_read | fs::perms::owner_write,
                            fs::perm_options::add);
        }
    }
    ~TempCopy() {
        std::error_code ec;
        fs::remove_all(fs::path(dir).parent_path(), ec);
    }
    std::string path(const std::string& f) const { return dir + "/" + f; }
};

inline std::string read_all(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

inline void write_all(const std::string& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(data.data(), std::streamsize(data.size()));
}

// Edit a shard's header JSON in place, keeping the data section bytes unchanged.
inline void edit_header(const std::string& path, const std::function<void(nlohmann::json&)>& fn) {
    std::string bytes = read_all(path);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint8_t(bytes[size_t(i)]);
    nlohmann::json h = nlohmann::json::parse(bytes.substr(8, n));
    fn(h);
    std::string text = h.dump();
    const std::string data = bytes.substr(8 + n);
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[size_t(i)] = char(uint8_t(uint64_t(text.size()) >> (8 * i)));
    write_all(path, out + text + data);
}

inline void edit_json(const std::string& path, const std::function<void(nlohmann::json&)>& fn) {
    nlohmann::json j = nlohmann::json::parse(read_all(path));
    fn(j);
    write_all(path, j.dump(2));
}

// The shard (file name) that holds `tensor`, per the index.
inline std::string shard_of(const std::string& dir, const std::string& tensor) {
    nlohmann::json j = nlohmann::json::parse(read_all(dir + "/model.safetensors.index.json"));
    return j["weight_map"][tensor].get<std::string>();
}

}  // namespace loader_test
