// Tensors, the op vocabulary and graph building. A tensor is metadata (type, ne/nb, op, sources,
// name) plus a placement (buffer + offset) that the arena planner or a weight/KV allocation gives it.
//
// Shapes follow ggml: ne[0] is the innermost (contiguous) dimension, nb[i] is the stride of
// dimension i in bytes. A Linear weight [out, in] from PyTorch is a tensor with ne = {in, out}.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <string>
#include <unordered_set>
#include <vector>

#include "ggml-like/types.h"

constexpr int GLM_MAX_DIMS = 4;
constexpr int GLM_MAX_SRC = 6;
constexpr int GLM_MAX_OP_PARAMS = 8;

enum glm_op : int32_t {
    GLM_OP_NONE = 0,   // leaf: weight, input, or cache; holds data it did not compute
    // metadata only (no compute, share the source's bytes)
    GLM_OP_VIEW,       // view/reshape/permute/transpose of src0
    // elementwise / row ops (F32 activations)
    GLM_OP_GET_ROWS,   // dst[:, i] = float(src0[:, src1[i]])                       src1: I32 [n]
    GLM_OP_ADD,        // dst = src0 + src1 (src1 broadcast along dims where its ne == 1)
    GLM_OP_MUL,        // dst = src0 * src1 (same broadcast)
    GLM_OP_SCALE,      // dst = src0 * p.f[0]
    GLM_OP_SILU,       // dst = x * sigmoid(x)
    GLM_OP_SIGMOID,    // dst = 1 / (1 + exp(-x))
    GLM_OP_SWIGLU,     // dst = silu(src0) * src1
    GLM_OP_RMS_NORM,   // dst = x / sqrt(mean(x^2) + eps) [* src1 weight]               p.f[0] = eps
    GLM_OP_LAYER_NORM, // dst = (x - mean) / sqrt(var + eps) * src1 + src2              p.f[0] = eps
    GLM_OP_SOFT_MAX,   // dst = softmax(src0 * p.f[0]) along ne[0] (an all -inf row gives NaN)
    GLM_OP_ROPE,       // rotary embedding of the first p.i[0] dims of each row; src1 = positions I32
    GLM_OP_CONCAT,     // dst = concat(src0, src1) along dim p.i[0]
    GLM_OP_REPEAT,     // dst[i] = src0[i mod src0->ne] (tile src0 to dst's shape)
    GLM_OP_CPY,        // write src0 (converted) into src1 (any layout); dst is a view of src1
    GLM_OP_CONT,       // contiguous F32 copy of src0
    GLM_OP_SET_ROWS,   // src0 (cache [ne0, rows]) rows src2[i] = src1[:, i]; dst is a view of src0
    // matrix products
    GLM_OP_MUL_MAT,    // dst[m, n, b2, b3] = sum_k src0[k, m, b2', b3'] * src1[k, n, b2, b3]
    GLM_OP_MUL_MAT_ID, // experts: dst[m, j, t] = sum_k src0[k, m, src2[j, t]] * src1[k, j or 0, t]
    // attention
    GLM_OP_ATTN,       // MLA / MHA / MQA attention with causal mask and optional key subset
    GLM_OP_INDEXER,    // DSA lightning-indexer scores with causal mask
    GLM_OP_TOP_K,      // indices of the k largest values of each column (ties: lower index first)
    // mixture of experts
    GLM_OP_MOE_SELECT,   // router expert choice (bias for selection only, group-limited top-k)
    GLM_OP_MOE_WEIGHTS,  // routing weights from unbiased scores, normalised and scaled
    GLM_OP_MOE_COMBINE,  // dst[:, t] = sum_j w[j, t] * y[:, j, t], in ascending expert id order
    // misc
    GLM_OP_ARGMAX,     // dst[i] = argmax over ne[0] of column i (first maximum wins)
    GLM_OP_MAX_ARG,    // dst[:, i] = (max of column i, its index + p.i[0] as a float)
    GLM_OP_ALL_REDUCE, // sum over tensor-parallel ranks (identity on one device)
    // context-parallel caches (positions split over tensor-parallel ranks)
    GLM_OP_PAD_BLOCK,  // src0 placed at block p.i[2] of p.i[1] along dim p.i[0], zeros elsewhere
    GLM_OP_TOPK_CANDIDATES, // a rank's top-k candidates as (score, position) pairs
    GLM_OP_TOPK_MERGE,      // this rank's share of the top-k over every rank's candidates
    GLM_OP_ATTN_MERGE, // one rank's attention partial rescaled to the log-sum-exp over all ranks
    GLM_OP_COUNT,
};

const char* glm_op_name(glm_op op);

enum glm_rope_mode : int32_t {
    GLM_ROPE_INTERLEAVED = 0,  // GPT-J / DeepSeek pairs (2j, 2j+1), output in the same places
    GLM_ROPE_NEOX = 1,         // half-split pairs (j, j + n/2)
};

enum glm_tensor_flags : int32_t {
    GLM_FLAG_INPUT = 1,   // written by the host before compute (token ids, positions ...)
    GLM_FLAG_OUTPUT = 2,  // read by the host after compute: kept alive to the end of the graph
    GLM_FLAG_WEIGHT = 4,  // model parameter, lives in a weight buffer
    GLM_FLAG_CACHE = 8,   // KV / indexer cache, lives in a cache buffer
};

// How a weight (or activation) is split across tensor-parallel ranks.
enum glm_split : int32_t {
    GLM_SPLIT_NONE = 0,   // replicated (mirrored) on every rank
    GLM_SPLIT_ROWS,       // split along ne[1] (output features)
    GLM_SPLIT_COLS,       // split along ne[0] (input features): outputs are partial sums
};

struct glm_buffer;

union glm_op_param {
    int32_t i;
    float f;
};

struct glm_tensor {
    glm_type type = GLM_TYPE_F32;
    int64_t ne[GLM_MAX_DIMS] = {1, 1, 1, 1};
    size_t nb[GLM_MAX_DIMS] = {0, 0, 0, 0};

    glm_op op = GLM_OP_NONE;
    glm_op_param params[GLM_MAX_OP_PARAMS] = {};
    glm_tensor* src[GLM_MAX_SRC] = {};

    // Views (and in-place ops) share the bytes of view_src at view_offset.
    glm_tensor* view_src = nullptr;
    size_t view_offset = 0;

    // NVFP4 companions: block_scale F8_E4M3 [ne0/16, ne1, ne2, ne3], global_scale F32 [ne2, ne3].
    glm_tensor* block_scale = nullptr;
    glm_tensor* global_scale = nullptr;

    int32_t flags = 0;
    glm_split split = GLM_SPLIT_NONE;

    glm_buffer* buffer = nullptr;
    size_t offset = 0;        // within buffer
    void* data = nullptr;     // buffer base + offset (host or device address)

    std::string name;
};

int64_t glm_nelements(const glm_tensor* t);
int64_t glm_nrows(const glm_tensor* t);  // ne1 * ne2 * ne3
size_t glm_nbytes(const glm_tensor* t);  // bytes spanned (for views: from first to last element)
bool glm_is_contiguous(const glm_tensor* t);
bool glm_same_shape(const glm_tensor* a, const glm_tensor* b);
std::string glm_shape_string(const glm_tensor* t);  // "[4096, 7, 1, 1] bf16"

// ---- context: owns tensor metadata (never the data) ------------------------------------------
class glm_context {
public:
    glm_tensor* new_tensor(glm_type type, int n_dims, const int64_t* ne);
    glm_tensor* new_tensor_1d(glm_type type, int64_t ne0);
    glm_tensor* new_tensor_2d(glm_type type, int64_t ne0, int64_t ne1);
    glm_tensor* new_tensor_3d(glm_type type, int64_t ne0, int64_t ne1, int64_t ne2);
    glm_tensor* new_tensor_4d(glm_type type, int64_t ne0, int64_t ne1, int64_t ne2, int64_t ne3);
    // NVFP4 weight [ne0, ne1, ne2] with its two scale companions (all three unplaced).
    glm_tensor* new_nvfp4(int64_t ne0, int64_t ne1, int64_t ne2);

    glm_tensor* find(const std::string& name) const;
    const std::deque<glm_tensor>& tensors() const { return tensors_; }
    size_t size() const { return tensors_.size(); }

private:
    std::deque<glm_tensor> tensors_;  // deque: stable addresses
};

// Name a tensor (printf-style helpers live in callers via fmt). Returns t for chaining.
glm_tensor* glm_set_name(glm_tensor* t, std::string name);

// ---- views (no compute) ----------------------------------------------------------------------
glm_tensor* glm_view(glm_context& ctx, glm_tensor* a, int n_dims, const int64_t* ne, const size_t* nb,
                     size_t offset);
glm_tensor* glm_view_1d(glm_context& ctx, glm_tensor* a, int64_t ne0, size_t offset);
glm_tensor* glm_view_2d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1, size_t nb1, size_t offset);
glm_tensor* glm_view_3d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1, int64_t ne2, size_t nb1,
                        size_t nb2, size_t offset);
glm_tensor* glm_reshape(glm_context& ctx, glm_tensor* a, int n_dims, const int64_t* ne);  // a contiguous
glm_tensor* glm_reshape_2d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1);
glm_tensor* glm_reshape_3d(glm_context& ctx, glm_tensor* a, int64_t ne0, int64_t ne1, int64_t ne2);
// dst dim axis[i] = a dim i (ggml_permute semantics)
glm_tensor* glm_permute(glm_context& ctx, glm_tensor* a, int ax0, int ax1, int ax2, int ax3);
glm_tensor* glm_transpose(glm_context& ctx, glm_tensor* a);  // swap dims 0 and 1

// ---- ops (each returns a new F32 tensor unless stated) -----------------------------------------
glm_tensor* glm_get_rows(glm_context& ctx, glm_tensor* table, glm_tensor* ids);
// A table split by rows over ranks (the vocabulary share of an embedding): table holds rows
// [first_row, first_row + ne1) of the whole; ids outside that range give zero columns, so the sum
// over ranks (an all-reduce) is the whole lookup. p.i[0] = first_row, p.i[1] = 1.
glm_tensor* glm_get_rows_shard(glm_context& ctx, glm_tensor* table, glm_tensor* ids, int32_t first_row);
glm_tensor* glm_add(glm_context& ctx, glm_tensor* a, glm_tensor* b);
glm_tensor* glm_mul(glm_context& ctx, glm_tensor* a, glm_tensor* b);
glm_tensor* glm_scale(glm_context& ctx, glm_tensor* a, float s);
glm_tensor* glm_silu(glm_context& ctx, glm_tensor* a);
glm_tensor* glm_sigmoid(glm_context& ctx, glm_tensor* a);
glm_tensor* glm_swiglu(glm_context& ctx, glm_tensor* gate, glm_tensor* up);
glm_tensor* glm_rms_norm(glm_context& ctx, glm_tensor* x, glm_tensor* weight, float eps);  // weight may be null
glm_tensor* glm_layer_norm(glm_context& ctx, glm_tensor* x, glm_tensor* weight, glm_tensor* bias, float eps);
glm_tensor* glm_soft_max(glm_context& ctx, glm_tensor* a, float scale);
// x: [n, ...] (rows may be strided views); positions: I32 with one entry per ne[2] index of x
// (x viewed as [dims, heads, tokens]). Rotates dims [0, n_rot) of each row, copies the rest.
glm_tensor* glm_rope(glm_context& ctx, glm_tensor* x, glm_tensor* positions, int n_rot, float theta,
                     glm_rope_mode mode);
glm_tensor* glm_concat(glm_context& ctx, glm_tensor* a, glm_tensor* b, int dim);
// Tile a to shape ne (each ne[i] a multiple of a->ne[i]); F32 result.
glm_tensor* glm_repeat(glm_context& ctx, glm_tensor* a, const int64_t ne[4]);
glm_tensor* glm_cpy(glm_context& ctx, glm_tensor* a, glm_tensor* b);  // returns view of b
glm_tensor* glm_cont(glm_context& ctx, glm_tensor* a);
// a's elements in a contiguous tensor of `type` (a CONT node): I32 -> F32 and F32 -> I32, exact for
// integers of magnitude below 2^24 (positions, selected slots), so they can travel through the
// float-only exchanges (glm_pad_block, glm_all_reduce). F32 -> I32 rounds to nearest.
glm_tensor* glm_cast(glm_context& ctx, glm_tensor* a, glm_type type);
// cache: [ne0, n_slots] of any float type; rows: F32 [ne0, n]; slots: I32 [n]; a negative slot skips
// its row (a context-parallel rank stores only the positions it owns). Returns a view of the whole
// cache, so readers placed after it see the new rows.
glm_tensor* glm_set_rows(glm_context& ctx, glm_tensor* cache, glm_tensor* rows, glm_tensor* slots);
// w: [K, M, B2, B3] any type (NVFP4 needs contiguous rows); x: F32 [K, N, B2*r2, B3*r3];
// x slice b2 is multiplied by weight slice b2 / r2 (ggml's broadcast rule).
glm_tensor* glm_mul_mat(glm_context& ctx, glm_tensor* w, glm_tensor* x);
// experts: [K, M, E]; x: F32 [K, 1 or n_used, T]; ids: I32 [n_used, T] -> F32 [M, n_used, T]
glm_tensor* glm_mul_mat_id(glm_context& ctx, glm_tensor* experts, glm_tensor* x, glm_tensor* ids);

// Attention. q: [Dk, H, S]; k: [Dk, Hk, T]; v: [Dv, Hk, T] with Hk == H or Hk == 1 (MQA, as in
// absorbed MLA); q_pos: I32 [S], the position of each query; key slot t holds position t and is
// visible to query s iff t <= q_pos[s] (a query with no visible key outputs zeros). key_ids (optional): I32 [n_sel, S], the only key slots
// query s may attend (entries < 0 or > q_pos[s] ignored). Softmax in f32 with scale.
// Result: F32 [Dv, H, S]. k and v may be strided views of any float type (caches).
glm_tensor* glm_attn(glm_context& ctx, glm_tensor* q, glm_tensor* k, glm_tensor* v, glm_tensor* q_pos,
                     glm_tensor* key_ids, float scale);
// The same attention over this rank's keys only, for a merge over ranks: F32 [Dv + 1, H, S], each row
// the normalised output over the visible keys followed by their log-sum-exp, ln(sum_t exp(scale *
// q.k_t)); a query with no visible key gives zeros and -inf. p.i[1] = 1.
glm_tensor* glm_attn_part(glm_context& ctx, glm_tensor* q, glm_tensor* k, glm_tensor* v, glm_tensor* q_pos,
                          glm_tensor* key_ids, float scale);
// DSA indexer. q: [D, Hi, S]; k: [D, T] (any float type); w: F32 [Hi, S]; q_pos: I32 [S].
// dst[t, s] = sum_h (w[h, s] * weight_scale) * relu(scale * dot(q[:, h, s], k[:, t])) for t <= q_pos[s],
// -inf after; the f32 product w * weight_scale is the one a separate glm_scale of w would give.
glm_tensor* glm_indexer(glm_context& ctx, glm_tensor* q, glm_tensor* k, glm_tensor* w, glm_tensor* q_pos,
                        float scale, float weight_scale = 1.0f);
// I32 [k, ncols]: the k largest entries of each column of a [n, ncols] (k <= n), in descending order
// of value, ties broken by the lower index. NaN ranks below every number (-inf included).
// With q_pos (I32 [ncols]), column c's candidates are entries 0..q_pos[c] only (a graph built for the
// whole context then costs what the filled part costs); places past the candidates hold -1.
glm_tensor* glm_top_k(glm_context& ctx, glm_tensor* a, int k, glm_tensor* q_pos = nullptr);
// The same selection as glm_top_k, listed by ascending index (-1 places still last): for consumers
// that need the set only (attention over the DSA selection). A GPU skips the sort by value, and the
// attention then reads the cache in position order. p.i[1] = 1.
glm_tensor* glm_top_k_by_index(glm_context& ctx, glm_tensor* a, int k, glm_tensor* q_pos = nullptr);
// probs: F32 [E, T] (sigmoid scores); bias: F32 [E] or null (added for the choice only).
// Group stage: experts split into n_group equal groups, a group's score is the sum of its two best
// biased scores, the topk_group best groups stay eligible (the others are masked to -inf, as
// transformers' masked_fill does). Returns I32 [k, T], in descending order of biased score, ties
// broken by the lower expert id.
glm_tensor* glm_moe_select(glm_context& ctx, glm_tensor* probs, glm_tensor* bias, int k, int n_group,
                           int topk_group);
// w[j, t] = probs[ids[j, t], t]; if normalize: w /= (sum_j w + 1e-20); then w *= scaling.
glm_tensor* glm_moe_weights(glm_context& ctx, glm_tensor* probs, glm_tensor* ids, bool normalize, float scaling);
// y: F32 [D, n_used, T]; w: F32 [n_used, T]; ids: I32 [n_used, T] -> F32 [D, T]. Accumulates
// w*y into zero in ascending expert id order (the reference's order, for closeness).
glm_tensor* glm_moe_combine(glm_context& ctx, glm_tensor* y, glm_tensor* w, glm_tensor* ids);
glm_tensor* glm_argmax(glm_context& ctx, glm_tensor* a);  // I32 [ne1]
// F32 [2, ne1]: per column of a, the largest value and index_offset + its index (first maximum wins;
// the index is exact as a float below 2^24). Tensor-parallel greedy decoding: each rank reduces its
// slice of the vocabulary and the host compares one pair per rank.
glm_tensor* glm_max_arg(glm_context& ctx, glm_tensor* a, int32_t index_offset);
glm_tensor* glm_all_reduce(glm_context& ctx, glm_tensor* a);

// ---- context-parallel caches ---------------------------------------------------------------------
// With the latent and indexer caches split by position over N tensor-parallel ranks (rank r holds
// positions r, r + N, r + 2N ... at slots 0, 1, 2 ...), each rank attends over its own keys and the
// ranks exchange small tensors through all-reduces of zero-padded blocks (an all-gather).
//
// F32 with ne[dim] = a->ne[dim] * n_blocks: a (F32, any strides) at block `block`, zeros elsewhere.
glm_tensor* glm_pad_block(glm_context& ctx, glm_tensor* a, int dim, int n_blocks, int block);
// scores: F32 [n, S] (this rank's indexer scores over its slots); ids: I32 [k, S] (its top-k slots,
// -1 for none) -> F32 [k, 2, S]: dst[i, 0, s] = scores[ids[i, s], s] and dst[i, 1, s] = the slot's
// position ids[i, s] * n_ranks + rank; -inf and -1 where ids[i, s] < 0.
glm_tensor* glm_topk_candidates(glm_context& ctx, glm_tensor* scores, glm_tensor* ids, int n_ranks, int rank);
// local_ids: I32 [k_l, S], this rank's candidate slots; all: F32 [M, 2, S], every rank's candidates
// (glm_topk_candidates) laid end to end, rank q's entry i at q * k_l + i; best: I32 [k, S], glm_top_k
// of all's scores (its last entry gives the k-th largest score). The k best entries of all by score,
// ties by the lower position (what one rank's top-k over every position picks), are the selection;
// entries scored -inf or NaN are no candidates (fewer than k others: all of those are selected).
// dst[i, s] = local_ids[i, s] if entry rank * k_l + i is selected, else -1.
glm_tensor* glm_topk_merge(glm_context& ctx, glm_tensor* local_ids, glm_tensor* all, glm_tensor* best, int rank);
// part: F32 [Dv + 1, H, S] (glm_attn_part of this rank); lse_all: F32 [N, H, S], every rank's
// log-sum-exp. dst[:, h, s] = part[:Dv, h, s] * exp(part[Dv, h, s] - L), L = ln(sum_r exp(lse_all[r, h,
// s])); zeros where part's lse is -inf. The sum of dst over ranks is the attention over all keys.
glm_tensor* glm_attn_merge(glm_context& ctx, glm_tensor* part, glm_tensor* lse_all);

// ---- graph ------------------------------------------------------------------------------------
struct glm_graph {
    std::vector<glm_tensor*> nodes;  // computed tensors, in execution order
    std::vector<glm_tensor*> leafs;  // tensors with no op that nodes read (weights, inputs, caches)
    // Every tensor in nodes or leafs: glm_graph_expand adds to it, so expanding a graph piece by
    // piece (the builders do, once or twice per layer) costs what the new tensors cost.
    std::unordered_set<const glm_tensor*> members;
};

// Append the ancestors of t (not yet in the graph) and t itself, in dependency order.
void glm_graph_expand(glm_graph& graph, glm_tensor* t);
// The tensor that owns the bytes of t (follows view_src to the root).
glm_tensor* glm_view_root(glm_tensor* t);
