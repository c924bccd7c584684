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
using MakeSession = std::function<std::unique_ptr<Session>(SessionParams)>;
// Greedy ids with and without MTP for drafts 1..3 are identical, both with the default repetition
// penalty (the host picks from the logits) and without penalties (the device's argmax picks: only
// (max, id) pairs come back). oracle: replace the MTP layer's drafts by the plain run's tokens, 3
// positions in 11 wrong, so that accepted and rejected drafts both occur. p: the sessions' parameters
// (n_ctx must hold prompt + n_gen; n_verify is set to 4). Returns the plain runs' ids: with the
// penalty, then without.
std::vector<std::vector<int32_t>> check_lossless(const MakeSession& make, const std::vector<int32_t>& prompt,
                                                 SessionParams p, size_t n_gen, const std::string& what, bool oracle);
// The same in a context of prompt + n_gen + 8 with prefill chunks of ubatch.
void check_lossless(const MakeSession& make, const std::vector<int32_t>& prompt, int64_t ubatch, size_t n_gen,
                    const std::string& what, bool oracle);
