// Byte-level BPE merging, equivalent to HF tokenizers' Word::merge_all: repeatedly apply the merge of
// lowest rank, leftmost on ties, using a priority queue keyed on (rank, position).
#include <algorithm>
#include <functional>
#include <mutex>

#include "tokenizer/tokenizer-impl.h"

namespace glm {

namespace {

struct Symbol {
    token_id id;
    int32_t prev;
    int32_t next;
    bool alive;
};

struct Candidate {
    int32_t rank;
    int32_t pos;  // index of the left symbol
    token_id new_id;
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
};

struct Scratch {
    std::vector<Symbol> symbols;
    std::vector<Candidate> heap;
};

}  // namespace

void Tokenizer::Impl::bpe(const uint8_t* s, size_t n, std::vector<token_id>& out) const {
    if (n == 0) return;
    if (n == 1 || n > k_cache_max_word) {
        bpe_uncached(s, n, out);
        return;
    }
    thread_local std::string key;
    key.assign(reinterpret_cast<const char*>(s), n);
    {
        std::shared_lock<std::shared_mutex> lock(cache_mutex);
        auto it = cache.find(key);
        if (it != cache.end()) {
            out.insert(out.end(), it->second.begin(), it->second.end());
            return;
        }
    }
    const size_t first = out.size();
    bpe_uncached(s, n, out);
    std::unique_lock<std::shared_mutex> lock(cache_mutex);
    if (cache.size() < k_cache_capacity) cache.emplace(key, std::vector<token_id>(out.begin() + long(first), out.end()));
}

void Tokenizer::Impl::bpe_uncached(const uint8_t* s, size_t n, std::vector<token_id>& out) const {
    if (ignore_merges || n == 1) {
        // HF checks the whole word against the vocabulary before merging when ignore_merges is set;
        // a single byte is always its own symbol anyway.
        const token_id id = vocab_by_bytes.find(std::string_view(reinterpret_cast<const char*>(s), n));
        if (id >= 0) {
            out.push_back(id);
            return;
        }
    }
    thread_local Scratch scratch;
    std::vector<Symbol>& sym = scratch.symbols;
    sym.clear();
    for (size_t i = 0; i < n; ++i) sym.push_back({byte_ids[s[i]], int32_t(i) - 1, int32_t(i + 1), true});
    sym.back().next = -1;

    // A min-heap on a reused thread-local vector: no allocation per word once warm.
    std::vector<Candidate>& heap = scratch.heap;
    heap.clear();
    const std::greater<Candidate> later;
    auto push_pair = [&](int32_t left) {
        const int32_t right = sym[left].next;
        if (right < 0 || sym[left].id < 0 || sym[right].id < 0) return;
        const MergeInfo* m = merges.find(sym[left].id, sym[right].id);
        if (!m) return;
        heap.push_back({m->rank, left, m->new_id});
        std::push_heap(heap.begin(), heap.end(), later);
    };
    for (int32_t i = 0; i + 1 < int32_t(n); ++i) push_pair(i);

    while (!heap.empty()) {
        std::pop_heap(heap.begin(), heap.end(), later);
        const Candidate top = heap.back();
        heap.pop_back();
        Symbol& left = sym[top.pos];
        if (!left.alive || left.next < 0) continue;
        // Stale entry check as HF does it: the pair now at this position must still merge into new_id.
        const Symbol& right = sym[left.next];
        const MergeInfo* m = merges.find(left.id, right.id);
        if (!m || m->new_id != top.new_id) continue;
        const int32_t right_index = left.next;
        left.id = top.new_id;
        left.next = right.next;
        sym[right_index].alive = false;
        if (left.next >= 0) sym[left.next].prev = top.pos;
        if (left.prev >= 0) push_pair(left.prev);
        push_pair(top.pos);
    }
    for (int32_t i = 0; i >= 0; i = sym[i].next) {
        const Symbol& x = sym[i];
        if (x.id >= 0) {
            out.push_back(x.id);
            continue;
        }
        // A byte with no vocabulary entry: byte fallback, else the unknown token, else dropped (as HF).
        const uint8_t b = s[i];
        if (byte_fallback && byte_fallback_ids[b] >= 0) {
            out.push_back(byte_fallback_ids[b]);
        } else if (unk_id >= 0) {
            out.push_back(unk_id);
        }
    }
}

}  // namespace glm
