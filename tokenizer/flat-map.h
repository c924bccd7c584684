// Open-addressing hash tables for the tokenizer's big lookup tables. They are built once per load with
// 10^5..10^6 entries, and std::unordered_map's one allocation per node dominated load time.
// Insert keeps the first value for a key (HF keeps the lowest merge rank). No erase.
#pragma once
#include <cstdint>
#include <string_view>
#include <vector>

#include <xxhash.h>

namespace glm {

// string_view -> int32 id. Keys are not copied: the caller keeps their storage alive and unmoved.
class StringIdMap {
public:
    void reserve(size_t n) {
        size_t cap = 16;
        while (cap < n * 2) cap <<= 1;
        slots_.assign(cap, Slot{});
        mask_ = cap - 1;
        size_ = 0;
    }
    bool insert(std::string_view key, int32_t id) {
        if ((size_ + 1) * 2 > slots_.size()) grow();
        const uint64_t h = XXH3_64bits(key.data(), key.size());
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            Slot& s = slots_[i];
            if (s.id < 0) {
                s = {h, key, id};
                ++size_;
                return true;
            }
            if (s.hash == h && s.key == key) return false;
        }
    }
    void assign(std::string_view key, int32_t id) {
        if (!insert(key, id)) {
            const uint64_t h = XXH3_64bits(key.data(), key.size());
            for (size_t i = h & mask_;; i = (i + 1) & mask_) {
                if (slots_[i].hash == h && slots_[i].key == key) {
                    slots_[i].id = id;
                    return;
                }
            }
        }
    }
    int32_t find(std::string_view key) const {
        if (slots_.empty()) return -1;
        const uint64_t h = XXH3_64bits(key.data(), key.size());
        for (size_t i = h & mask_;; i = (i + 1) & mask_) {
            const Slot& s = slots_[i];
            if (s.id < 0) return -1;
            if (s.hash == h && s.key == key) return s.id;
        }
    }
    size_t size() const { return size_; }

private:
    struct Slot {
        uint64_t hash = 0;
        std::string_view key;
        int32_t id = -1;
    };
    void grow() {
        std::vector<Slot> old;
        old.swap(slots_);
        reserve(old.empty() ? 8 : old.size());
        for (const Slot& s : old) {
            if (s.id >= 0) insert(s.key, s.id);
        }
    }
    std::vector<Slot> slots_;
    size_t mask_ = 0, size_ = 0;
};

// (left id, right id) -> (rank, merged id).
struct MergeInfo {
    int32_t rank;
    int32_t new_id;
};

class MergeMap {
public:
    void reserve(size_t n) {
        size_t cap = 16;
        while (cap < n * 2) cap <<= 1;
        keys_.assign(cap, k_empty);
        values_.assign(cap, MergeInfo{});
        mask_ = cap - 1;
    }
    void insert(int32_t left, int32_t right, MergeInfo v) {
        const uint64_t key = pack(left, right);
        for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
            if (keys_[i] == k_empty) {
                keys_[i] = key;
                values_[i] = v;
                return;
            }
            if (keys_[i] == key) return;
        }
    }
    const MergeInfo* find(int32_t left, int32_t right) const {
        const uint64_t key = pack(left, right);
        for (size_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
            if (keys_[i] == key) return &values_[i];
            if (keys_[i] == k_empty) return nullptr;
        }
    }

private:
    static constexpr uint64_t k_empty = ~uint64_t(0);
    static uint64_t pack(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
    static uint64_t mix(uint64_t x) {  // splitmix64 finalizer: ids are dense, so spread them
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9ULL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebULL;
        return x ^ (x >> 31);
    }
    std::vector<uint64_t> keys_;
    std::vector<MergeInfo> values_;
    size_t mask_ = 0;
};

}  // namespace glm
