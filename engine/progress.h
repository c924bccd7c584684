// A one-line progress bar on stderr for long loads: bytes, GB/s and ETA. Drawn only on a terminal
// (and when enabled); silent otherwise, so pipes and logs stay clean.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

class ProgressBar {
public:
    ProgressBar(std::string label, uint64_t total_bytes, bool enabled);
    ~ProgressBar();
    void add(uint64_t bytes);  // cheap; redraws at most ten times a second
    void finish();

private:
    void draw(bool final);
    std::string label_;
    uint64_t total_ = 0, done_ = 0;
    bool enabled_ = false, finished_ = false;
    std::chrono::steady_clock::time_point start_, last_draw_;
};
