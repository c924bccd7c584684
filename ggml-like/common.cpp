#include "ggml-like/common.h"

#include <atomic>
#include <cstdlib>

void glm_abort_impl(const char* file, int line, const std::string& message) {
    std::fflush(stdout);
    std::fprintf(stderr, "glmrun: internal error at %s:%d: %s\n", file, line, message.c_str());
    std::fflush(stderr);
    std::abort();
}

namespace {
std::atomic<int> g_log_level{static_cast<int>(LogLevel::warn)};
}

void glm_set_log_level(LogLevel level) { g_log_level.store(static_cast<int>(level)); }
LogLevel glm_log_level() { return static_cast<LogLevel>(g_log_level.load()); }

void glm_log_write(LogLevel level, const std::string& line) {
    const char* prefix = level == LogLevel::error ? "error: " : level == LogLevel::warn ? "warning: " : "";
    std::fprintf(stderr, "%s%s\n", prefix, line.c_str());
}
