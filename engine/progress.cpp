#include "engine/progress.h"

#include <unistd.h>

#include <cstdio>

#include <fmt/format.h>

ProgressBar::ProgressBar(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)), total_(total_bytes), enabled_(enabled && isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::add(uint64_t bytes) {
    done_ += bytes;
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    if (now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw(false);
}

void ProgressBar::finish() {
    if (finished_) return;
    finished_ = true;
    if (enabled_) draw(true);
}

void ProgressBar::draw(bool final) {
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
    const double gb = double(done_) / 1e9, total_gb = double(total_) / 1e9;
    const double rate = secs > 0 ? gb / secs : 0.0;
    const double eta = rate > 0 ? (total_gb - gb) / rate : 0.0;
    const int width = 30;
    const int filled = total_ ? int(double(width) * double(done_) / double(total_)) : width;
    std::string bar(size_t(std::min(filled, width)), '#');
    bar.resize(size_t(width), '.');
    std::fputs(fmt::format("\r{} [{}] {:.2f}/{:.2f} GB  {:.2f} GB/s  {}", label_, bar, gb, total_gb, rate,
                           final ? fmt::format("{:.1f} s   \n", secs) : fmt::format("ETA {:.0f} s   ", eta))
                   .c_str(),
               stderr);
    std::fflush(stderr);
}
