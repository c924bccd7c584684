// .npy reader/writer. The header is a Python dict literal, so it gets a small dedicated scanner
// for the three keys NumPy writes (descr, fortran_order, shape) rather than a JSON parser.
#include "engine/npy.h"

#include <cctype>
#include <cstring>

#include "engine/safetensors.h"

namespace {

// Value text following 'key': in the header dict, or empty.
std::string dict_value(const std::string& h, const std::string& key) {
    size_t k = h.find("'" + key + "'");
    if (k == std::string::npos) return {};
    size_t c = h.find(':', k);
    if (c == std::string::npos) return {};
    size_t s = c + 1;
    while (s < h.size() && std::isspace(uint8_t(h[s]))) ++s;
    if (s >= h.size()) return {};
    size_t e = s;
    if (h[s] == '(') {
        e = h.find(')', s);
        return e == std::string::npos ? std::string() : h.substr(s, e - s + 1);
    }
    if (h[s] == '\'') {
        e = h.find('\'', s + 1);
        return e == std::string::npos ? std::string() : h.substr(s + 1, e - s - 1);
    }
    while (e < h.size() && h[e] != ',' && h[e] != '}') ++e;
    return h.substr(s, e - s);
}

Status npy_write(const std::string& path, const char* descr, const void* data, size_t elem,
                 const std::vector<int64_t>& shape) {
    int64_t n = 1;
    std::string shp = "(";
    for (size_t i = 0; i < shape.size(); ++i) {
        n *= shape[i];
        shp += std::to_string(shape[i]) + (shape.size() == 1 ? "," : (i + 1 < shape.size() ? ", " : ""));
    }
    shp += ")";
    std::string header = fmt::format("{{'descr': '{}', 'fortran_order': False, 'shape': {}, }}", descr, shp);
    // Pad with spaces so magic + version + length + header + '\n' is a multiple of 64 (NumPy does this).
    while ((10 + header.size() + 1) % 64 != 0) header.push_back(' ');
    header.push_back('\n');
    std::vector<uint8_t> buf(10 + header.size() + size_t(n) * elem);
    const uint8_t magic[8] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0};
    std::memcpy(buf.data(), magic, 8);
    buf[8] = uint8_t(header.size() & 0xff);
    buf[9] = uint8_t(header.size() >> 8);
    std::memcpy(buf.data() + 10, header.data(), header.size());
    if (n) std::memcpy(buf.data() + 10 + header.size(), data, size_t(n) * elem);
    return write_file_atomic(path, buf.data(), buf.size());
}

}  // namespace

int64_t NpyArray::numel() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

Status npy_read(const std::string& path, NpyArray& out) {
    std::string bytes;
    GLM_TRY(read_text_file(path, bytes));
    if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
        return Status::bad_input("{}: not a .npy file", path);
    const uint8_t major = uint8_t(bytes[6]);
    size_t hlen = 0, hstart = 0;
    if (major == 1) {
        hlen = uint8_t(bytes[8]) | (size_t(uint8_t(bytes[9])) << 8);
        hstart = 10;
    } else if ((major == 2 || major == 3) && bytes.size() >= 12) {
        for (int i = 3; i >= 0; --i) hlen = (hlen << 8) | uint8_t(bytes[8 + size_t(i)]);
        hstart = 12;
    } else {
        return Status::bad_input("{}: unsupported .npy version {}", path, major);
    }
    if (hstart + hlen > bytes.size()) return Status::bad_input("{}: truncated .npy header", path);
    const std::string h = bytes.substr(hstart, hlen);
    const std::string descr = dict_value(h, "descr");
    NpyArray a;
    if (descr == "<f4") a.is_int32 = false;
    else if (descr == "<i4") a.is_int32 = true;
    else return Status::bad_input("{}: dtype '{}' is not supported (float32 '<f4' or int32 '<i4')", path, descr);
    if (dict_value(h, "fortran_order") != "False")
        return Status::bad_input("{}: Fortran-order arrays are not supported; save with C order", path);
    const std::string shp = dict_value(h, "shape");
    if (shp.empty()) return Status::bad_input("{}: no shape in the .npy header", path);
    int64_t n = 1;
    for (size_t i = 1; i < shp.size();) {
        if (std::isdigit(uint8_t(shp[i]))) {
            int64_t v = 0;
            while (i < shp.size() && std::isdigit(uint8_t(shp[i]))) {
                v = v * 10 + (shp[i] - '0');
                if (v > (int64_t(1) << 40)) return Status::bad_input("{}: implausible .npy shape", path);
                ++i;
            }
            a.shape.push_back(v);
            n *= v;
            if (n > (int64_t(1) << 40)) return Status::bad_input("{}: implausible .npy shape", path);
        } else {
            ++i;
        }
    }
    const size_t need = size_t(n) * 4;
    const size_t off = hstart + hlen;
    if (bytes.size() - off != need)
        return Status::bad_input("{}: data is {} bytes, shape needs {}", path, bytes.size() - off, need);
    if (a.is_int32) {
        a.i32.resize(size_t(n));
        if (n) std::memcpy(a.i32.data(), bytes.data() + off, need);
    } else {
        a.f32.resize(size_t(n));
        if (n) std::memcpy(a.f32.data(), bytes.data() + off, need);
    }
    out = std::move(a);
    return {};
}

Status npy_write_f32(const std::string& path, const float* data, const std::vector<int64_t>& shape) {
    return npy_write(path, "<f4", data, 4, shape);
}

Status npy_write_i32(const std::string& path, const int32_t* data, const std::vector<int64_t>& shape) {
    return npy_write(path, "<i4", data, 4, shape);
}
