// Device memory bandwidth as a device-to-device copy sees it: the "100%" of the --bench roofline.
// Plain C++ (no CUDA types), like cuda/backend.h, so the command line can call it.
#pragma once

#include "ggml-like/common.h"

// Copy a buffer to another on `device` several times and report the median of (bytes read + bytes
// written) / time. The two buffers are allocated and freed inside, so call this before the engine
// loads (its backends freeze allocations after start-up, and a full-size model leaves little free
// memory): it never touches a backend's buffers. Fails with a Status when the device cannot be
// used or not even a small pair of buffers fits.
Status glm_cuda_copy_bandwidth(int device, double& bytes_per_s);
