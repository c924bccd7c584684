// safetensors files: read-only memory maps with a fully validated header, and an atomic writer
// (tests, --dump-tensors). Nothing here knows GLM-5; checkpoint.h builds the model view on top.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "ggml-like/common.h"
#include "ggml-like/types.h"

// One tensor as described by a header: offsets are relative to the start of the data section.
struct SafetensorsEntry {
    std::string name;
    glm_type dtype = GLM_TYPE_F32;
    std::vector<int64_t> shape;
    uint64_t begin = 0;  // [begin, end) inside the data section
    uint64_t end = 0;
};

// Name of a glm_type as safetensors spells it ("BF16", "F8_E4M3", ...).
const char* safetensors_dtype_name(glm_type type);
// Parse a safetensors dtype string; false for anything glmrun does not load.
bool safetensors_dtype_from_name(const std::string& name, glm_type& out);
// Bytes per element of a plain (non-block) dtype.
size_t safetensors_dtype_size(glm_type type);

// Validate the whole file layout given its first `size` bytes (the full file): 8-byte little-endian
// header length inside the file, JSON object, known dtypes, shapes, offsets inside the data section,
// size == product(shape) x dtype size, no overlaps. `label` names the file in errors. Pure function
// of the bytes (the fuzzer drives it). data_offset receives 8 + header length.
Status parse_safetensors_header(const uint8_t* bytes, size_t size, const std::string& label,
                                std::vector<SafetensorsEntry>& out, uint64_t& data_offset,
                                std::map<std::string, std::string>* metadata = nullptr);

// A read-only, zero-copy memory map of one file.
class MappedFile {
public:
    MappedFile() = default;
    ~MappedFile();
    MappedFile(const MappedFile&) = delete;
    MappedFile& operator=(const MappedFile&) = delete;
    MappedFile(MappedFile&& other) noexcept;
    MappedFile& operator=(MappedFile&& other) noexcept;

    Status open(const std::string& path);
    const uint8_t* data() const { return data_; }
    size_t size() const { return size_; }
    const std::string& path() const { return path_; }

private:
    void reset();
    const uint8_t* data_ = nullptr;
    size_t size_ = 0;
    std::string path_;
};

// One mapped, validated safetensors file.
class SafetensorsFile {
public:
    Status open(const std::string& path);
    const std::string& path() const { return map_.path(); }
    const std::vector<SafetensorsEntry>& entries() const { return entries_; }
    const uint8_t* tensor_data(const SafetensorsEntry& e) const { return map_.data() + data_offset_ + e.begin; }
    uint64_t data_offset() const { return data_offset_; }
    size_t file_size() const { return map_.size(); }

private:
    MappedFile map_;
    std::vector<SafetensorsEntry> entries_;
    uint64_t data_offset_ = 0;
};

// A tensor to write: dtype, shape and its raw little-endian bytes.
struct SafetensorsTensorOut {
    std::string name;
    glm_type dtype = GLM_TYPE_F32;
    std::vector<int64_t> shape;
    std::vector<uint8_t> bytes;
};

// Write a safetensors file atomically (temp file in the same directory, then rename).
Status write_safetensors(const std::string& path, const std::vector<SafetensorsTensorOut>& tensors,
                         const std::map<std::string, std::string>& metadata = {});

// Write a whole file atomically (temp + rename); used for manifests and JSON outputs.
Status write_file_atomic(const std::string& path, const void* data, size_t size);
// Read a whole (small) file into a string.
Status read_text_file(const std::string& path, std::string& out);
