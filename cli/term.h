// Terminal plumbing of the command line: colour decisions, Ctrl-C handling, stdout/stderr writers
// and a line reader that survives Ctrl-C (EINTR) for the REPL.
#pragma once

#include <string>

// --color auto|always|never (auto: stderr is a terminal and NO_COLOR is unset or empty).
void term_init(const std::string& color_mode);
bool term_color();                       // colour on stderr
bool term_stdin_tty();
bool term_stdout_tty();
std::string term_dim(const std::string& text);  // dim when colour is on

// Ctrl-C: the first press sets a flag the loops poll; in one-shot mode a second press exits 130 at
// once. In REPL mode every press only sets the flag.
void term_install_sigint(bool repl);
bool term_interrupted();
void term_clear_interrupt();

// Write to stdout / stderr unbuffered-ish (flushes). out_write returns false once stdout is gone
// (closed pipe): generation then stops.
bool out_write(const std::string& text);
void err_write(const std::string& text);

// Line editing and history through libedit when stdin and stdout are terminals and libedit.so.2
// can be loaded at run time (the build does not link it); plain line input otherwise.
bool term_line_editing();
void term_disable_line_editing();  // --simple-io
// Show prompt and read one line like term_read_line (history kept in memory for libedit).
int term_prompt_line(const std::string& prompt, std::string& line);
void term_add_history(const std::string& line);

// Read one line from stdin (without the newline). Returns 1 on a line, 0 on end of input (Ctrl-D
// on an empty line), -1 when Ctrl-C interrupted the read (the partial line is dropped).
int term_read_line(std::string& line);
