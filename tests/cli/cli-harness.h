// Runs the glmrun binary for the command-line tests: through pipes (stdin text in, stdout and stderr
// captured apart) or through a pseudo-terminal driven like a person at a keyboard.
#pragma once

#include <sys/types.h>

#include <string>
#include <vector>

#define GLMRUN_BIN GLMRUN_BINARY_DIR "/glmrun"
#define FIXTURES GLMRUN_SOURCE_DIR "/tests/fixtures"

struct RunResult {
    int rc = -1;  // exit code; 128 + signal when killed
    std::string out, err;
};

// Run glmrun with args; stdin gets stdin_text then EOF. interrupt_on_output: send SIGINT once, as
// soon as the first bytes arrive on stdout. A run past timeout_s is killed (rc 137).
RunResult run_glmrun(const std::vector<std::string>& args, const std::string& stdin_text = "",
                     double timeout_s = 300.0, bool interrupt_on_output = false);

// A glmrun process on a pseudo-terminal (stdout and stderr both go to it).
class PtyProcess {
public:
    explicit PtyProcess(const std::vector<std::string>& args);
    ~PtyProcess();
    void send(const std::string& text);
    // Read until `pattern` appears in the output after `from` (or timeout). Returns its position or npos.
    size_t expect(const std::string& pattern, size_t from, double timeout_s = 120.0);
    // Wait for the process to exit; returns its exit code (-1 on timeout).
    int wait_exit(double timeout_s = 60.0);
    const std::string& output() const { return out_; }

private:
    bool pump(double timeout_s);
    pid_t pid_ = -1;
    int fd_ = -1;
    std::string out_;
};

std::string read_text_file(const std::string& path);
std::vector<std::string> split_lines(const std::string& text);
