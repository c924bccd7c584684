#include "cli/term.h"

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <dlfcn.h>
#include <unistd.h>

namespace {
bool g_color = false;
volatile sig_atomic_t g_interrupt = 0;
volatile sig_atomic_t g_repl = 0;
bool g_stdout_gone = false;

extern "C" void on_sigint(int) {
    if (g_interrupt && !g_repl) {
        static const char msg[] = "\ninterrupted\n";
        ssize_t r = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)r;
        _exit(130);
    }
    g_interrupt = 1;
}
}  // namespace

void term_init(const std::string& mode) {
    if (mode == "always") {
        g_color = true;
    } else if (mode == "never") {
        g_color = false;
    } else {
        const char* no_color = std::getenv("NO_COLOR");  // the one documented environment knob
        g_color = isatty(STDERR_FILENO) && !(no_color && *no_color);
    }
    std::signal(SIGPIPE, SIG_IGN);
}

bool term_color() { return g_color; }
bool term_stdin_tty() { return isatty(STDIN_FILENO); }
bool term_stdout_tty() { return isatty(STDOUT_FILENO); }

std::string term_dim(const std::string& text) {
    if (!g_color || text.empty()) return text;
    return "\x1b[2m" + text + "\x1b[0m";
}

void term_install_sigint(bool repl) {
    g_repl = repl ? 1 : 0;
    struct sigaction sa {};
    sa.sa_handler = on_sigint;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: a blocked read returns EINTR
    sigaction(SIGINT, &sa, nullptr);
}

bool term_interrupted() { return g_interrupt != 0; }
void term_clear_interrupt() { g_interrupt = 0; }

bool out_write(const std::string& text) {
    if (g_stdout_gone) return false;
    if (!text.empty() && std::fwrite(text.data(), 1, text.size(), stdout) != text.size()) g_stdout_gone = true;
    if (std::fflush(stdout) != 0) g_stdout_gone = true;
    return !g_stdout_gone;
}

void err_write(const std::string& text) {
    std::fwrite(text.data(), 1, text.size(), stderr);
    std::fflush(stderr);
}

int term_read_line(std::string& line) {
    line.clear();
    for (;;) {
        char c = 0;
        const ssize_t r = read(STDIN_FILENO, &c, 1);
        if (r == 1) {
            if (c == '\n') return 1;
            line += c;
            continue;
        }
        if (r == 0) return line.empty() ? 0 : 1;
        if (errno == EINTR) {
            if (g_interrupt) {
                line.clear();
                return -1;
            }
            continue;
        }
        return 0;
    }
}

namespace {
struct Libedit {
    bool tried = false;
    void* handle = nullptr;
    char* (*readline)(const char*) = nullptr;
    int (*add_history)(const char*) = nullptr;
};
Libedit g_edit;

bool libedit_ready() {
    if (!g_edit.tried) {
        g_edit.tried = true;
        if (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO)) return false;
        for (const char* name : {"libedit.so.2", "libedit.so"}) {
            g_edit.handle = dlopen(name, RTLD_NOW | RTLD_LOCAL);
            if (g_edit.handle) break;
        }
        if (!g_edit.handle) return false;
        g_edit.readline = reinterpret_cast<char* (*)(const char*)>(dlsym(g_edit.handle, "readline"));
        g_edit.add_history = reinterpret_cast<int (*)(const char*)>(dlsym(g_edit.handle, "add_history"));
        if (!g_edit.readline || !g_edit.add_history) {
            dlclose(g_edit.handle);
            g_edit.handle = nullptr;
            g_edit.readline = nullptr;
        }
    }
    return g_edit.readline != nullptr;
}
}  // namespace

bool term_line_editing() { return libedit_ready(); }
void term_disable_line_editing() { g_edit.tried = true; }

int term_prompt_line(const std::string& prompt, std::string& line) {
    line.clear();
    if (!libedit_ready()) {
        if (!prompt.empty()) out_write(prompt);
        return term_read_line(line);
    }
    std::fflush(stdout);
    char* text = g_edit.readline(prompt.c_str());
    if (!text) {
        // libedit returns NULL for Ctrl-D on an empty line and when a signal interrupted the read
        if (g_interrupt) return -1;
        return 0;
    }
    line = text;
    std::free(text);
    if (g_interrupt) {
        line.clear();
        return -1;
    }
    return 1;
}

void term_add_history(const std::string& line) {
    if (libedit_ready() && !line.empty()) g_edit.add_history(line.c_str());
}
