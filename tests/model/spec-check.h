// Speculative-decoding checks shared by the CPU tests (tests/model) and the multi-GPU tests
// (tests/tp): plain and MTP generation driven as cli/generate.cpp drives them, and the lossless check.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "engine/sampler.h"
#include "engine/session.h"
#include "engine/speculative.h"

std::vector<int32_t> generate_plain(Session& s, const std::vector<int32_t>& prompt, Sampler& sampler, size_t n);
std::vector<int32_t> generate_spec(Session& s, SpeculativeDecoder& spec, const std::vector<int32_t>& prompt,
                                   Sampler& sampler, size_t n);
SamplerParams greedy_params();
// Greedy ids with and without MTP for drafts 1..3 are identical. oracle: replace the MTP layer's
// drafts by the plain run's tokens, 3 positions in 11 wrong, so that accepted and rejected drafts
// both occur.
void check_lossless(const std::function<std::unique_ptr<Session>(SessionParams)>& make,
                    const std::vector<int32_t>& prompt, int64_t ubatch, size_t n_gen, const std::string& what,
                    bool oracle);
