// Shared basics for every module: invariant checks that abort with file:line, the Status type for
// errors a user can cause (0 / ok means success everywhere), and levelled logging to stderr.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include <fmt/format.h>

// ---- invariants: a failed one is a bug in glmrun, never the user's input ------------------------
[[noreturn]] void glm_abort_impl(const char* file, int line, const std::string& message);

#define GLM_ABORT(...) glm_abort_impl(__FILE__, __LINE__, fmt::format(__VA_ARGS__))
#define GLM_ASSERT(cond)                                                       \
    do {                                                                       \
        if (!(cond)) glm_abort_impl(__FILE__, __LINE__, "assertion failed: " #cond); \
    } while (0)

// ---- user-caused errors ----------------------------------------------------------------------
// The exit code a failure maps to in main (documented in README and --help).
enum class ErrorKind : int {
    ok = 0,
    usage = 1,       // bad flags / bad usage
    bad_input = 2,   // bad model files, bad prompt, bad tokenizer.json ...
    device = 3,      // out of memory, device failure
    interrupted = 130,
};

class [[nodiscard]] Status {
public:
    Status() = default;
    static Status error(ErrorKind kind, std::string message) { return Status(kind, std::move(message)); }
    template <typename... Args>
    static Status bad_input(fmt::format_string<Args...> f, Args&&... args) {
        return Status(ErrorKind::bad_input, fmt::format(f, std::forward<Args>(args)...));
    }
    template <typename... Args>
    static Status usage(fmt::format_string<Args...> f, Args&&... args) {
        return Status(ErrorKind::usage, fmt::format(f, std::forward<Args>(args)...));
    }
    template <typename... Args>
    static Status device(fmt::format_string<Args...> f, Args&&... args) {
        return Status(ErrorKind::device, fmt::format(f, std::forward<Args>(args)...));
    }

    bool ok() const { return kind_ == ErrorKind::ok; }
    explicit operator bool() const { return ok(); }
    ErrorKind kind() const { return kind_; }
    int exit_code() const { return static_cast<int>(kind_); }
    const std::string& message() const { return message_; }

private:
    Status(ErrorKind kind, std::string message) : kind_(kind), message_(std::move(message)) {}
    ErrorKind kind_ = ErrorKind::ok;
    std::string message_;
};

// Propagate a failed Status to the caller.
#define GLM_TRY(...)                          \
    do {                                      \
        Status glm_try_status_ = (__VA_ARGS__); \
        if (!glm_try_status_.ok()) return glm_try_status_; \
    } while (0)

// ---- logging ---------------------------------------------------------------------------------
enum class LogLevel : int { quiet = 0, error = 1, warn = 2, info = 3, debug = 4 };
void glm_set_log_level(LogLevel level);
LogLevel glm_log_level();
void glm_log_write(LogLevel level, const std::string& line);

template <typename... Args>
void log_error(fmt::format_string<Args...> f, Args&&... args) {
    if (glm_log_level() >= LogLevel::error) glm_log_write(LogLevel::error, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_warn(fmt::format_string<Args...> f, Args&&... args) {
    if (glm_log_level() >= LogLevel::warn) glm_log_write(LogLevel::warn, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_info(fmt::format_string<Args...> f, Args&&... args) {
    if (glm_log_level() >= LogLevel::info) glm_log_write(LogLevel::info, fmt::format(f, std::forward<Args>(args)...));
}
template <typename... Args>
void log_debug(fmt::format_string<Args...> f, Args&&... args) {
    if (glm_log_level() >= LogLevel::debug) glm_log_write(LogLevel::debug, fmt::format(f, std::forward<Args>(args)...));
}
