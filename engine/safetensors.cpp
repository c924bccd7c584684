// safetensors reader/writer. The header is untrusted input: every number is range-checked before
// it is used as an offset, so a corrupt or hostile file yields a Status, never a crash.
#include "engine/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

using json = nlohmann::json;

namespace {

// Headers of real checkpoints are a few hundred KB; anything far larger is corruption, and the
// limit keeps a hostile length from driving a huge allocation.
constexpr uint64_t k_max_header_bytes = 100ull << 20;
// JSON nesting a valid header never exceeds (object -> tensor object -> shape array).
constexpr int k_max_json_depth = 16;

struct DtypeName {
    glm_type type;
    const char* name;
    size_t size;
};
constexpr DtypeName k_dtypes[] = {
    {GLM_TYPE_BF16, "BF16", 2}, {GLM_TYPE_F16, "F16", 2}, {GLM_TYPE_F32, "F32", 4},
    {GLM_TYPE_F8_E4M3, "F8_E4M3", 1}, {GLM_TYPE_U8, "U8", 1}, {GLM_TYPE_I32, "I32", 4},
};

// Reject pathological nesting before handing the text to the JSON parser (keeps recursion shallow).
bool json_depth_ok(const uint8_t* p, size_t n) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; ++i) {
        const uint8_t c = p[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
            continue;
        }
        if (c == '"') in_string = true;
        else if (c == '{' || c == '[') {
            if (++depth > k_max_json_depth) return false;
        } else if (c == '}' || c == ']') {
            --depth;
        }
    }
    return true;
}

bool get_u64(const json& v, uint64_t& out) {
    if (v.is_number_unsigned()) {
        out = v.get<uint64_t>();
        return true;
    }
    if (v.is_number_integer() && v.get<int64_t>() >= 0) {
        out = uint64_t(v.get<int64_t>());
        return true;
    }
    return false;
}

}  // namespace

const char* safetensors_dtype_name(glm_type type) {
    for (const auto& d : k_dtypes)
        if (d.type == type) return d.name;
    return "?";
}

bool safetensors_dtype_from_name(const std::string& name, glm_type& out) {
    for (const auto& d : k_dtypes)
        if (name == d.name) {
            out = d.type;
            return true;
        }
    return false;
}

size_t safetensors_dtype_size(glm_type type) {
    for (const auto& d : k_dtypes)
        if (d.type == type) return d.size;
    GLM_ABORT("safetensors_dtype_size: type {} has no safetensors element size", int(type));
}

Status parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& label,
                                std::vector<SafetensorsEntry>& out, uint64_t& data_offset,
                                std::map<std::string, std::string>* metadata) {
    out.clear();
    if (size < 8)
        return Status::bad_input("{}: file is {} bytes, too short for a safetensors header; re-download it", label, size);
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | bytes[i];
    if (n > size - 8)
        return Status::bad_input("{}: header length {} goes beyond the end of the file ({} bytes): the file is truncated "
                                 "or not safetensors; re-download it", label, n, size);
    if (n > k_max_header_bytes)
        return Status::bad_input("{}: header length {} is implausibly large; the file is corrupt, re-download it", label, n);
    const uint8_t* h = bytes + 8;
    if (!json_depth_ok(h, size_t(n)))
        return Status::bad_input("{}: header JSON is nested too deeply; the file is corrupt, re-download it", label);
    json doc = json::parse(h, h + n, nullptr, /*allow_exceptions=*/false);
    if (doc.is_discarded())
        return Status::bad_input("{}: header is not valid JSON; the file is corrupt, re-download it", label);
    if (!doc.is_object())
        return Status::bad_input("{}: header JSON is not an object; the file is corrupt, re-download it", label);

    data_offset = 8 + n;
    const uint64_t data_size = uint64_t(size) - data_offset;
    for (auto it = doc.begin(); it != doc.end(); ++it) {
        const std::string& name = it.key();
        const json& v = it.value();
        if (name == "__metadata__") {
            if (!v.is_object())
                return Status::bad_input("{}: __metadata__ is not an object; the file is corrupt, re-download it", label);
            if (metadata)
                for (auto m = v.begin(); m != v.end(); ++m)
                    if (m.value().is_string()) (*metadata)[m.key()] = m.value().get<std::string>();
            continue;
        }
        if (!v.is_object())
            return Status::bad_input("{}: header entry '{}' is not an object; the file is corrupt, re-download it", label, name);
        auto dt = v.find("dtype");
        auto sh = v.find("shape");
        auto off = v.find("data_offsets");
        if (dt == v.end() || sh == v.end() || off == v.end() || !dt->is_string() || !sh->is_array() ||
            !off->is_array() || off->size() != 2)
            return Status::bad_input("{}: tensor '{}' lacks a valid dtype/shape/data_offsets; the file is corrupt, "
                                     "re-download it", label, name);
        SafetensorsEntry e;
        e.name = name;
        const std::string dtype = dt->get<std::string>();
        if (!safetensors_dtype_from_name(dtype, e.dtype))
            return Status::bad_input("{}: tensor '{}' has dtype '{}', which glmrun does not load (supported: BF16, F16, "
                                     "F32, F8_E4M3, U8, I32)", label, name, dtype);
        uint64_t count = 1;
        for (const json& d : *sh) {
            uint64_t dim = 0;
            if (!get_u64(d, dim) || dim > (uint64_t(1) << 62))
                return Status::bad_input("{}: tensor '{}' has an invalid shape entry; the file is corrupt, re-download it",
                                         label, name);
            if (__builtin_mul_overflow(count, dim, &count))
                return Status::bad_input("{}: tensor '{}' shape overflows; the file is corrupt, re-download it", label, name);
            e.shape.push_back(int64_t(dim));
        }
        uint64_t nbytes = 0;
        if (__builtin_mul_overflow(count, uint64_t(safetensors_dtype_size(e.dtype)), &nbytes))
            return Status::bad_input("{}: tensor '{}' size overflows; the file is corrupt, re-download it", label, name);
        if (!get_u64((*off)[0], e.begin) || !get_u64((*off)[1], e.end) || e.begin > e.end)
            return Status::bad_input("{}: tensor '{}' has invalid data_offsets; the file is corrupt, re-download it",
                                     label, name);
        if (e.end > data_size)
            return Status::bad_input("{}: tensor '{}' data [{}, {}) lies outside the data section ({} bytes): the file is "
                                     "truncated or corrupt; re-download it", label, name, e.begin, e.end, data_size);
        if (e.end - e.begin != nbytes)
            return Status::bad_input("{}: tensor '{}' has {} bytes but shape x {} needs {}; the file is corrupt, "
                                     "re-download it", label, name, e.end - e.begin, dtype, nbytes);
        out.push_back(std::move(e));
    }
    std::vector<const SafetensorsEntry*> order;
    order.reserve(out.size());
    for (const auto& e : out) order.push_back(&e);
    std::sort(order.begin(), order.end(), [](const SafetensorsEntry* a, const SafetensorsEntry* b) {
        return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    for (size_t i = 1; i < order.size(); ++i)
        if (order[i]->begin < order[i - 1]->end)
            return Status::bad_input("{}: tensors '{}' and '{}' overlap in the data section; the file is corrupt, "
                                     "re-download it", label, order[i - 1]->name, order[i]->name);
    return {};
}

// ---- MappedFile ---------------------------------------------------------------------------------
MappedFile::~MappedFile() { reset(); }

MappedFile::MappedFile(MappedFile&& other) noexcept
    : data_(other.data_), size_(other.size_), path_(std::move(other.path_)) {
    other.data_ = nullptr;
    other.size_ = 0;
}

MappedFile& MappedFile::operator=(MappedFile&& other) noexcept {
    if (this != &other) {
        reset();
        data_ = other.data_;
        size_ = other.size_;
        path_ = std::move(other.path_);
        other.data_ = nullptr;
        other.size_ = 0;
    }
    return *this;
}

void MappedFile::reset() {
    if (data_ && size_) munmap(const_cast<uint8_t*>(data_), size_);
    data_ = nullptr;
    size_ = 0;
}

Status MappedFile::open(const std::string& path) {
    reset();
    path_ = path;
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return Status::bad_input("{}: cannot open ({}); check the path and permissions", path, std::strerror(errno));
    struct stat st {};
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        ::close(fd);
        return Status::bad_input("{}: not a regular file", path);
    }
    size_ = size_t(st.st_size);
    if (size_ > 0) {
        void* p = mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            const int err = errno;
            ::close(fd);
            size_ = 0;
            return Status::bad_input("{}: mmap failed ({})", path, std::strerror(err));
        }
        data_ = static_cast<const uint8_t*>(p);
    }
    ::close(fd);  // the mapping keeps the file alive
    return {};
}

// ---- SafetensorsFile ----------------------------------------------------------------------------
Status SafetensorsFile::open(const std::string& path) {
    GLM_TRY(map_.open(path));
    return parse_safetensors_header(map_.data(), map_.size(), path, entries_, data_offset_);
}

// ---- writing ------------------------------------------------------------------------------------
Status write_file_atomic(const std::string& path, const void* data, size_t size) {
    // A device or pipe (/dev/stdout, a FIFO) is written in place: renaming over it would replace
    // the special file with a regular one.
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode)) {
        if (S_ISDIR(st.st_mode)) return Status::bad_input("{}: is a directory; give a file name", path);
        FILE* f = std::fopen(path.c_str(), "wb");
        if (!f) return Status::bad_input("{}: cannot open for writing ({})", path, std::strerror(errno));
        const bool ok = (size == 0 || std::fwrite(data, 1, size, f) == size);
        if (std::fclose(f) != 0 || !ok) return Status::bad_input("{}: write failed", path);
        return {};
    }
    const std::string tmp = path + ".tmp." + std::to_string(getpid());
    FILE* f = std::fopen(tmp.c_str(), "wb");
    if (!f) return Status::bad_input("{}: cannot create ({}); check the directory permissions", tmp, std::strerror(errno));
    const bool ok = (size == 0 || std::fwrite(data, 1, size, f) == size) && std::fflush(f) == 0 && fsync(fileno(f)) == 0;
    const int err = errno;
    if (std::fclose(f) != 0 || !ok) {
        std::remove(tmp.c_str());
        return Status::bad_input("{}: write failed ({}); check free disk space", path, std::strerror(err));
    }
    if (std::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e2 = errno;
        std::remove(tmp.c_str());
        return Status::bad_input("{}: cannot rename the finished file into place ({})", path, std::strerror(e2));
    }
    return {};
}

Status read_text_file(const std::string& path, std::string& out) {
    std::ifstream in(path, std::ios::binary);
    if (!in) return Status::bad_input("{}: cannot open ({})", path, std::strerror(errno));
    std::ostringstream ss;
    ss << in.rdbuf();
    out = ss.str();
    return {};
}

Status write_safetensors(const std::string& path, const std::vector<SafetensorsTensorOut>& tensors,
                         const std::map<std::string, std::string>& metadata) {
    json header = json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    uint64_t offset = 0;
    for (const auto& t : tensors) {
        uint64_t count = 1;
        for (int64_t d : t.shape) count *= uint64_t(d);
        if (count * safetensors_dtype_size(t.dtype) != t.bytes.size())
            GLM_ABORT("write_safetensors: tensor {} has {} bytes for its shape", t.name, t.bytes.size());
        header[t.name] = {{"dtype", safetensors_dtype_name(t.dtype)},
                          {"shape", t.shape},
                          {"data_offsets", {offset, offset + t.bytes.size()}}};
        offset += t.bytes.size();
    }
    std::string text = header.dump();
    while ((8 + text.size()) % 8 != 0) text.push_back(' ');  // keep the data section 8-byte aligned
    std::vector<uint8_t> buf(8 + text.size() + offset);
    const uint64_t n = text.size();
    for (int i = 0; i < 8; ++i) buf[size_t(i)] = uint8_t(n >> (8 * i));
    std::memcpy(buf.data() + 8, text.data(), text.size());
    uint8_t* p = buf.data() + 8 + text.size();
    for (const auto& t : tensors) {
        if (!t.bytes.empty()) std::memcpy(p, t.bytes.data(), t.bytes.size());
        p += t.bytes.size();
    }
    return write_file_atomic(path, buf.data(), buf.size());
}
