#include "cli-harness.h"

#include <fcntl.h>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace {
double now_s() {
    using namespace std::chrono;
    return duration<double>(steady_clock::now().time_since_epoch()).count();
}

[[noreturn]] void exec_glmrun(const std::vector<std::string>& args) {
    std::vector<char*> argv;
    std::string bin = GLMRUN_BIN;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (std::string& a : copy) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(bin.c_str(), argv.data());
    _exit(127);
}

int decode_status(int status) {
    if (WIFEXITED(status)) return WEXITSTATUS(status);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return -1;
}
}  // namespace

RunResult run_glmrun(const std::vector<std::string>& args, const std::string& stdin_text, double timeout_s,
                     bool interrupt_on_output) {
    int in[2], out[2], err[2];
    if (pipe(in) || pipe(out) || pipe(err)) throw std::runtime_error("pipe failed");
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        for (int fd : {in[0], in[1], out[0], out[1], err[0], err[1]}) close(fd);
        exec_glmrun(args);
    }
    close(in[0]);
    close(out[1]);
    close(err[1]);
    signal(SIGPIPE, SIG_IGN);
    size_t written = 0;
    if (stdin_text.empty()) {
        close(in[1]);
        in[1] = -1;
    }
    RunResult r;
    bool out_open = true, err_open = true, interrupted = false;
    const double deadline = now_s() + timeout_s;
    while (out_open || err_open) {
        if (now_s() > deadline) {
            kill(pid, SIGKILL);
            break;
        }
        std::vector<pollfd> fds;
        if (out_open) fds.push_back({out[0], POLLIN, 0});
        if (err_open) fds.push_back({err[0], POLLIN, 0});
        if (in[1] >= 0) fds.push_back({in[1], POLLOUT, 0});
        if (poll(fds.data(), fds.size(), 200) < 0 && errno != EINTR) break;
        for (const pollfd& p : fds) {
            if (!p.revents) continue;
            if (p.fd == in[1]) {
                const ssize_t w = write(in[1], stdin_text.data() + written, stdin_text.size() - written);
                if (w > 0) written += size_t(w);
                if (w < 0 || written == stdin_text.size()) {
                    close(in[1]);
                    in[1] = -1;
                }
                continue;
            }
            char buf[4096];
            const ssize_t n = read(p.fd, buf, sizeof buf);
            if (n <= 0) {
                (p.fd == out[0] ? out_open : err_open) = false;
                continue;
            }
            (p.fd == out[0] ? r.out : r.err).append(buf, size_t(n));
            if (interrupt_on_output && !interrupted && p.fd == out[0]) {
                interrupted = true;
                kill(pid, SIGINT);
            }
        }
    }
    if (in[1] >= 0) close(in[1]);
    close(out[0]);
    close(err[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    r.rc = decode_status(status);
    return r;
}

PtyProcess::PtyProcess(const std::vector<std::string>& args) {
    struct winsize ws {};
    ws.ws_row = 40;
    ws.ws_col = 120;
    pid_ = forkpty(&fd_, nullptr, nullptr, &ws);
    if (pid_ < 0) throw std::runtime_error("forkpty failed");
    if (pid_ == 0) exec_glmrun(args);
}

PtyProcess::~PtyProcess() {
    if (pid_ > 0) {
        kill(pid_, SIGKILL);
        int status = 0;
        waitpid(pid_, &status, 0);
    }
    if (fd_ >= 0) close(fd_);
}

void PtyProcess::send(const std::string& text) {
    size_t done = 0;
    while (done < text.size()) {
        const ssize_t w = write(fd_, text.data() + done, text.size() - done);
        if (w <= 0) break;
        done += size_t(w);
    }
}

bool PtyProcess::pump(double timeout_s) {
    pollfd p{fd_, POLLIN, 0};
    const int r = poll(&p, 1, int(timeout_s * 1000));
    if (r <= 0) return r == 0;
    char buf[4096];
    const ssize_t n = read(fd_, buf, sizeof buf);
    if (n <= 0) return false;  // EIO: the child closed the terminal
    out_.append(buf, size_t(n));
    return true;
}

size_t PtyProcess::expect(const std::string& pattern, size_t from, double timeout_s) {
    const double deadline = now_s() + timeout_s;
    for (;;) {
        const size_t pos = out_.find(pattern, from);
        if (pos != std::string::npos) return pos;
        if (now_s() > deadline) return std::string::npos;
        if (!pump(0.2) && out_.find(pattern, from) == std::string::npos) {
            // closed: nothing more will come
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 0) > 0 && (p.revents & (POLLHUP | POLLERR)) && !(p.revents & POLLIN))
                return out_.find(pattern, from);
        }
    }
}

int PtyProcess::wait_exit(double timeout_s) {
    const double deadline = now_s() + timeout_s;
    while (now_s() < deadline) {
        pump(0.1);
        int status = 0;
        const pid_t r = waitpid(pid_, &status, WNOHANG);
        if (r == pid_) {
            pid_ = -1;
            return decode_status(status);
        }
    }
    return -1;
}

std::string read_text_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream ss;
    ss << in.rdbuf();
    return ss.str();
}

std::vector<std::string> split_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream ss(text);
    std::string line;
    while (std::getline(ss, line)) lines.push_back(line);
    return lines;
}
