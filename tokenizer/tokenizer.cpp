// Encoding and decoding (loading is in tokenizer-load.cpp, BPE merging in bpe.cpp).
#include "tokenizer/tokenizer.h"

#include <cstring>

#include "tokenizer/tokenizer-impl.h"
#include "tokenizer/unicode.h"

namespace glm {

namespace {

struct Match {
    size_t start;  // including lstrip-ed whitespace
    size_t stop;   // including rstrip-ed whitespace
    token_id id;
};

bool is_word_char(uint32_t cp) {
    return cp == '_' || (unicode::flags(cp) & (unicode::CP_LETTER | unicode::CP_NUMBER));
}

// Last / first code point of s before / after a byte offset (s is valid UTF-8).
uint32_t code_point_before(std::string_view s, size_t pos) {
    size_t i = pos;
    while (i > 0 && (uint8_t(s[i - 1]) & 0xC0) == 0x80) --i;
    if (i > 0) --i;
    uint32_t cp;
    bool valid, truncated;
    unicode::utf8_next(reinterpret_cast<const uint8_t*>(s.data()), pos, i, cp, valid, truncated);
    return cp;
}

uint32_t code_point_at(std::string_view s, size_t pos, size_t* len = nullptr) {
    uint32_t cp;
    bool valid, truncated;
    const size_t n = unicode::utf8_next(reinterpret_cast<const uint8_t*>(s.data()), s.size(), pos, cp, valid, truncated);
    if (len) *len = n;
    return cp;
}

// Finds the next acceptable added token at or after `from`, honouring single_word/lstrip/rstrip the
// way HF's AddedVocabulary::find_matches does. `floor` is where the previous match stopped: lstrip
// never reaches back past it.
bool next_match(const Tokenizer::Impl& impl, const AddedTokenMatcher& m, std::string_view s, size_t from,
                size_t floor, bool parse_special, Match& out, size_t& resume) {
    const auto* p = reinterpret_cast<const uint8_t*>(s.data());
    for (size_t pos = from; pos < s.size(); ++pos) {
        if (!m.is_first_byte[p[pos]]) continue;
        for (uint32_t index : m.by_first_byte[p[pos]]) {
            const AddedToken& t = impl.added[index];
            if (t.content.size() > s.size() - pos || std::memcmp(s.data() + pos, t.content.data(), t.content.size()) != 0) {
                continue;
            }
            size_t start = pos, stop = pos + t.content.size();
            // The automaton reports the longest token here and iteration moves past it, so a token we
            // reject is not replaced by a shorter one at the same position.
            resume = stop;
            if (t.special && !parse_special) break;
            if (t.single_word) {
                const bool start_ok = start == 0 || !is_word_char(code_point_before(s, start));
                const bool stop_ok = stop == s.size() || !is_word_char(code_point_at(s, stop));
                if (!start_ok || !stop_ok) break;
            }
            if (t.lstrip) {
                while (start > floor && (unicode::flags(code_point_before(s, start)) & unicode::CP_WHITESPACE)) {
                    size_t k = start - 1;
                    while (k > 0 && (uint8_t(s[k]) & 0xC0) == 0x80) --k;
                    start = k;
                }
            }
            if (t.rstrip) {
                size_t len = 0;
                while (stop < s.size() && (unicode::flags(code_point_at(s, stop, &len)) & unicode::CP_WHITESPACE)) stop += len;
            }
            out = {start, stop, t.id};
            return true;
        }
        if (resume > pos) pos = resume - 1;  // a rejected match: continue after it
    }
    return false;
}

struct EncodeScratch {
    std::vector<uint32_t> cps;
    std::vector<uint8_t> flags;
    std::vector<std::pair<uint32_t, uint32_t>> pieces;
    std::vector<uint32_t> offsets;  // byte offset of each code point in text, plus the end
    std::string text;
};

void encode_normalized(const Tokenizer::Impl& impl, const uint32_t* cps, size_t n, std::vector<token_id>& out) {
    thread_local EncodeScratch sc;
    sc.flags.resize(n);
    sc.offsets.resize(n + 1);
    sc.text.clear();
    for (size_t i = 0; i < n; ++i) {
        sc.flags[i] = unicode::flags(cps[i]);
        sc.offsets[i] = uint32_t(sc.text.size());
        unicode::utf8_append(sc.text, cps[i]);
    }
    sc.offsets[n] = uint32_t(sc.text.size());
    impl.pre.split(cps, sc.flags.data(), n, sc.pieces);
    const auto* bytes = reinterpret_cast<const uint8_t*>(sc.text.data());
    for (const auto& [b, e] : sc.pieces) impl.bpe(bytes + sc.offsets[b], sc.offsets[e] - sc.offsets[b], out);
}

void encode_segment(const Tokenizer::Impl& impl, std::string_view seg, bool parse_special, std::vector<token_id>& out) {
    if (seg.empty()) return;
    std::vector<uint32_t> cps = unicode::utf8_to_code_points(seg);
    if (impl.nfc) unicode::nfc(cps);
    if (impl.normalized_matcher.empty) {
        encode_normalized(impl, cps.data(), cps.size(), out);
        return;
    }
    // Tokens flagged normalized are matched on the normalizer's output (HF's second pass).
    std::string norm;
    for (uint32_t c : cps) unicode::utf8_append(norm, c);
    size_t done = 0, from = 0, resume = 0;
    Match m;
    while (next_match(impl, impl.normalized_matcher, norm, from, done, parse_special, m, resume)) {
        const auto gap = unicode::utf8_to_code_points(std::string_view(norm).substr(done, m.start - done));
        encode_normalized(impl, gap.data(), gap.size(), out);
        out.push_back(m.id);
        done = from = m.stop;
    }
    const auto rest = unicode::utf8_to_code_points(std::string_view(norm).substr(done));
    encode_normalized(impl, rest.data(), rest.size(), out);
}

}  // namespace

void Tokenizer::encode(std::string_view text, std::vector<token_id>& out, EncodeOptions options) const {
    const Impl& impl = *impl_;
    std::string valid;
    if (!unicode::utf8_is_valid(text)) {
        valid = unicode::utf8_lossy(text);
        text = valid;
    }
    size_t done = 0, from = 0, resume = 0;
    Match m;
    if (!impl.raw_matcher.empty) {
        while (next_match(impl, impl.raw_matcher, text, from, done, options.parse_special, m, resume)) {
            encode_segment(impl, text.substr(done, m.start - done), options.parse_special, out);
            out.push_back(m.id);
            done = from = m.stop;
        }
    }
    encode_segment(impl, text.substr(done), options.parse_special, out);
}

std::vector<token_id> Tokenizer::encode(std::string_view text, EncodeOptions options) const {
    std::vector<token_id> out;
    encode(text, out, options);
    return out;
}

std::vector<std::string> Tokenizer::pre_tokenize(std::string_view text) const {
    const std::vector<uint32_t> cps = unicode::utf8_to_code_points(text);
    std::vector<uint8_t> flags(cps.size());
    for (size_t i = 0; i < cps.size(); ++i) flags[i] = unicode::flags(cps[i]);
    std::vector<std::pair<uint32_t, uint32_t>> ranges;
    impl_->pre.split(cps.data(), flags.data(), cps.size(), ranges);
    std::vector<std::string> out;
    for (const auto& [b, e] : ranges) {
        std::string piece;
        for (uint32_t i = b; i < e; ++i) unicode::utf8_append(piece, cps[i]);
        out.push_back(std::move(piece));
    }
    return out;
}

std::string Tokenizer::decode(const std::vector<token_id>& ids, bool skip_special) const {
    const Impl& impl = *impl_;
    std::string out;
    for (token_id id : ids) {
        if (id < 0 || size_t(id) >= impl.n_ids) continue;
        if (skip_special && impl.special[size_t(id)]) continue;
        out += impl.bytes[size_t(id)];
    }
    return out;
}

std::string Tokenizer::decode_text(const std::vector<token_id>& ids, bool skip_special) const {
    return unicode::utf8_lossy(decode(ids, skip_special));
}

const std::string& Tokenizer::token_bytes(token_id id) const {
    static const std::string empty;
    if (id < 0 || size_t(id) >= impl_->n_ids) return empty;
    return impl_->bytes[size_t(id)];
}

std::optional<token_id> Tokenizer::token_to_id(std::string_view content) const {
    const std::string key(content);
    if (auto it = impl_->added_by_content.find(key); it != impl_->added_by_content.end()) return it->second;
    if (const token_id id = impl_->vocab.find(key); id >= 0) return id;
    return std::nullopt;
}

std::optional<std::string> Tokenizer::id_to_token(token_id id) const {
    if (id < 0 || size_t(id) >= impl_->n_ids) return std::nullopt;
    for (const AddedToken& t : impl_->added) {
        if (t.id == id) return t.content;
    }
    if (impl_->pieces[size_t(id)].empty()) return std::nullopt;
    return std::string(impl_->pieces[size_t(id)]);
}

bool Tokenizer::is_special(token_id id) const {
    return id >= 0 && size_t(id) < impl_->n_ids && impl_->special[size_t(id)];
}

size_t Tokenizer::n_tokens() const { return impl_->n_ids; }

const std::vector<AddedToken>& Tokenizer::added_tokens() const { return impl_->added; }

}  // namespace glm
