// glmrun -m DIR --verify [--write-manifest]: check every tensor against the catalogue, hash every
// tensor (XXH3-64, several threads) and compare with / write DIR/glmrun.xxh3.
#pragma once

#include <cstdint>
#include <string>

#include "ggml-like/common.h"

struct VerifyReport {
    int64_t n_tensors = 0;
    uint64_t bytes = 0;
    double seconds = 0.0;
    double gb_per_s = 0.0;
    bool manifest_found = false;
    bool manifest_written = false;
    int64_t n_mismatch = 0;  // tensors whose hash differs from the manifest (or are missing/extra)
};

// Manifest file name inside the model directory.
constexpr const char* k_manifest_name = "glmrun.xxh3";

// Returns ok only when every check passes. A changed byte -> bad_input naming the tensor and its
// shard. write_manifest writes DIR/glmrun.xxh3 atomically (after all checks other than the
// manifest comparison pass; an existing manifest is replaced). n_threads <= 0: hardware threads.
Status verify_model(const std::string& dir, bool write_manifest, int n_threads = 0, VerifyReport* report = nullptr);
