#pragma once
#include <memory>

#include <doctest/doctest.h>

#include "cuda/backend.h"

// A CUDA backend on device 0, or null (with a message) where no GPU exists: the tests then skip.
inline std::unique_ptr<glm_backend> cuda_backend_or_skip() {
    if (glm_cuda_device_count() == 0) {
        MESSAGE("no CUDA device: skipping (these tests run on the GPU machine)");
        return nullptr;
    }
    std::unique_ptr<glm_backend> b;
    const Status st = glm_backend_cuda_create(0, b);
    REQUIRE_MESSAGE(st.ok(), st.message());
    return b;
}
