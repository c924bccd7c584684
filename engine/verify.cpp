// Whole-checkpoint verification. Hashing is per tensor (not per file) so a mismatch names the
// tensor, and a re-sharded copy of the same weights still verifies.
#include "engine/verify.h"

#include <xxhash.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <sstream>
#include <thread>
#include <vector>

#include "engine/checkpoint.h"

namespace {

// Non-finite values in a float tensor (F8_E4M3 scale bytes 0x7f/0xff are NaN).
int64_t count_non_finite(const TensorRecord& r) {
    int64_t bad = 0;
    const int64_t n = r.numel();
    switch (r.dtype) {
        case GLM_TYPE_F32:
            for (int64_t i = 0; i < n; ++i) {
                float v;
                std::memcpy(&v, r.data + 4 * i, 4);
                bad += !std::isfinite(v);
            }
            break;
        case GLM_TYPE_BF16:
        case GLM_TYPE_F16:
            for (int64_t i = 0; i < n; ++i) {
                uint16_t v;
                std::memcpy(&v, r.data + 2 * i, 2);
                const bool nonfinite = r.dtype == GLM_TYPE_BF16 ? (v & 0x7f80u) == 0x7f80u : (v & 0x7c00u) == 0x7c00u;
                bad += nonfinite;
            }
            break;
        case GLM_TYPE_F8_E4M3:
            for (int64_t i = 0; i < n; ++i) bad += (r.data[i] & 0x7f) == 0x7f;
            break;
        default: break;
    }
    return bad;
}

Status read_manifest(const std::string& path, std::map<std::string, uint64_t>& out) {
    std::string text;
    GLM_TRY(read_text_file(path, text));
    std::istringstream in(text);
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
        ++lineno;
        if (line.empty() || line[0] == '#') continue;
        std::istringstream ls(line);
        std::string hex, name;
        uint64_t nbytes = 0;
        if (!(ls >> hex >> nbytes >> name) || hex.size() != 16)
            return Status::bad_input("{}:{}: malformed manifest line; delete the file and rerun with --write-manifest",
                                     path, lineno);
        out[name] = std::stoull(hex, nullptr, 16);
    }
    return {};
}

}  // namespace

Status verify_model(const std::string& dir, bool write_manifest, int n_threads, VerifyReport* report) {
    VerifyReport rep;
    Checkpoint ck;
    GLM_TRY(Checkpoint::open(dir, ck));
    ModelWeights w;
    GLM_TRY(ck.bind(w));  // presence, shapes, dtypes, finite positive weight_scale_2

    const auto& recs = ck.tensors();
    std::vector<size_t> order(recs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    // Largest first so the slowest tensors start early and threads finish together.
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return recs[a].nbytes > recs[b].nbytes; });
    std::vector<uint64_t> hashes(recs.size(), 0);
    std::vector<int64_t> non_finite(recs.size(), 0);
    if (n_threads <= 0) n_threads = int(std::max(1u, std::thread::hardware_concurrency()));
    n_threads = std::min<int>(n_threads, int(std::max<size_t>(1, recs.size())));
    std::atomic<size_t> next{0};
    const auto t0 = std::chrono::steady_clock::now();
    auto worker = [&]() {
        for (size_t k; (k = next.fetch_add(1)) < order.size();) {
            const TensorRecord& r = recs[order[k]];
            hashes[order[k]] = XXH3_64bits(r.data, r.nbytes);
            // Scales must be finite; weights too (a NaN weight poisons every logit).
            non_finite[order[k]] = count_non_finite(r);
        }
    };
    std::vector<std::thread> pool;
    for (int t = 0; t < n_threads; ++t) pool.emplace_back(worker);
    for (auto& t : pool) t.join();
    rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    rep.n_tensors = int64_t(recs.size());
    rep.bytes = ck.total_bytes();
    rep.gb_per_s = rep.seconds > 0 ? double(rep.bytes) / 1e9 / rep.seconds : 0.0;
    log_info("verify: hashed {} tensors, {:.3f} GB in {:.2f} s ({:.2f} GB/s, {} threads)", rep.n_tensors,
             double(rep.bytes) / 1e9, rep.seconds, rep.gb_per_s, n_threads);

    for (size_t i = 0; i < recs.size(); ++i)
        if (non_finite[i]) {
            if (report) *report = rep;
            return Status::bad_input("{}: tensor '{}' has {} non-finite values; the shard is corrupt, re-download it",
                                     *recs[i].file, recs[i].name, non_finite[i]);
        }

    const std::string mpath = ck.dir() + "/" + k_manifest_name;
    std::map<std::string, uint64_t> manifest;
    struct stat st {};
    if (!write_manifest && ::stat(mpath.c_str(), &st) == 0) {
        rep.manifest_found = true;
        GLM_TRY(read_manifest(mpath, manifest));
        std::string first;
        for (size_t i = 0; i < recs.size(); ++i) {
            auto it = manifest.find(recs[i].name);
            if (it == manifest.end() || it->second != hashes[i]) {
                ++rep.n_mismatch;
                const char* why = it == manifest.end() ? "is not in the manifest" : "changed since the manifest";
                log_error("verify: tensor '{}' in {} {}", recs[i].name, *recs[i].file, why);
                if (first.empty()) first = fmt::format("tensor '{}' in {} {}", recs[i].name, *recs[i].file, why);
            }
        }
        for (const auto& [name, h] : manifest)
            if (!ck.find(name)) {
                ++rep.n_mismatch;
                log_error("verify: tensor '{}' of the manifest is missing", name);
                if (first.empty()) first = fmt::format("tensor '{}' of the manifest is missing", name);
            }
        if (report) *report = rep;
        if (rep.n_mismatch)
            return Status::bad_input("{}: {}{}; re-download that shard (or rerun with --write-manifest if the change is "
                                     "intended)", ck.dir(), first,
                                     rep.n_mismatch > 1 ? fmt::format(" (and {} more)", rep.n_mismatch - 1) : "");
        log_info("verify: all {} tensors match {}", rep.n_tensors, mpath);
    }
    if (write_manifest) {
        std::vector<size_t> by_name(recs.size());
        for (size_t i = 0; i < by_name.size(); ++i) by_name[i] = i;
        std::sort(by_name.begin(), by_name.end(), [&](size_t a, size_t b) { return recs[a].name < recs[b].name; });
        std::string text = "# glmrun xxh3 manifest v1: XXH3-64 of each tensor's bytes, byte count, tensor name\n";
        for (size_t i : by_name) text += fmt::format("{:016x} {} {}\n", hashes[i], recs[i].nbytes, recs[i].name);
        GLM_TRY(write_file_atomic(mpath, text.data(), text.size()));
        rep.manifest_written = true;
        log_info("verify: wrote {}", mpath);
    }
    if (report) *report = rep;
    return {};
}
