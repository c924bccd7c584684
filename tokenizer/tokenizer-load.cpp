// tokenizer.json loading. Exceptions from nlohmann/json and our own LoadError stay inside this file;
// the public API reports one line naming the problem.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tokenizer/json-reader.h"
#include "tokenizer/tokenizer-impl.h"
#include "tokenizer/unicode.h"

namespace glm {

using json = nlohmann::json;

namespace {

struct LoadError {
    std::string message;
};

[[noreturn]] void fail(const std::string& message) { throw LoadError{message}; }

// File content echoed in an error: JSON-quoted (so control characters cannot break the one-line
// message) and shortened.
std::string quote_for_error(std::string_view s) {
    constexpr size_t k_max = 80;
    const bool cut = s.size() > k_max;
    std::string q = json(std::string(s.substr(0, k_max))).dump(-1, ' ', false, json::error_handler_t::replace);
    if (cut) q.insert(q.size() - 1, "...");
    return q;
}

const json& need(const json& obj, const char* key, const std::string& where) {
    if (!obj.is_object()) fail(where + " is not an object");
    auto it = obj.find(key);
    if (it == obj.end()) fail(where + "." + key + " is missing");
    return *it;
}

bool get_bool(const json& obj, const char* key, bool fallback, const std::string& where) {
    auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) return fallback;
    if (!it->is_boolean()) fail(where + "." + key + " must be true or false");
    return it->get<bool>();
}

std::string type_of(const json& obj, const std::string& where) {
    const json& t = need(obj, "type", where);
    if (!t.is_string()) fail(where + ".type must be a string");
    return t.get<std::string>();
}

void load_normalizer(const json& n, Tokenizer::Impl& impl, const std::string& where) {
    if (n.is_null()) return;
    const std::string type = type_of(n, where);
    if (type == "NFC") {
        impl.nfc = true;
    } else if (type == "Sequence") {
        const json& list = need(n, "normalizers", where);
        if (!list.is_array()) fail(where + ".normalizers must be an array");
        for (size_t i = 0; i < list.size(); ++i) load_normalizer(list[i], impl, where + ".normalizers[" + std::to_string(i) + "]");
    } else {
        fail(where + ": normalizer type " + quote_for_error(type) + " is not supported (supported: NFC, Sequence)");
    }
}

// Returns true when a ByteLevel step was seen (byte-level BPE needs one).
bool load_pre_tokenizer(const json& p, Tokenizer::Impl& impl, const std::string& where) {
    if (p.is_null()) return false;
    const std::string type = type_of(p, where);
    if (type == "Sequence") {
        const json& list = need(p, "pretokenizers", where);
        if (!list.is_array()) fail(where + ".pretokenizers must be an array");
        bool byte_level = false;
        for (size_t i = 0; i < list.size(); ++i) {
            byte_level |= load_pre_tokenizer(list[i], impl, where + ".pretokenizers[" + std::to_string(i) + "]");
        }
        return byte_level;
    }
    if (type == "Split") {
        const json& pattern = need(p, "pattern", where);
        auto regex = pattern.is_object() ? pattern.find("Regex") : pattern.end();
        if (regex == pattern.end() || !regex->is_string()) {
            fail(where + ".pattern: only {\"Regex\": ...} patterns are supported");
        }
        const json& behavior = need(p, "behavior", where);
        if (!behavior.is_string() || behavior.get<std::string>() != "Isolated") {
            const std::string shown = behavior.is_string() ? quote_for_error(behavior.get<std::string>())
                                                           : quote_for_error(behavior.dump(-1, ' ', false, json::error_handler_t::replace));
            fail(where + ".behavior " + shown + " is not supported (only \"Isolated\")");
        }
        if (get_bool(p, "invert", false, where)) fail(where + ".invert = true is not supported");
        SplitKind kind;
        if (!split_kind_from_regex(regex->get<std::string>(), kind)) {
            fail(where + ": Split regex " + quote_for_error(regex->get<std::string>()) +
                 " is not one of the implemented patterns (Llama-3/GLM, Qwen2, GPT-2, DeepSeek-V3)");
        }
        impl.pre.passes.push_back(kind);
        return false;
    }
    if (type == "ByteLevel") {
        if (get_bool(p, "add_prefix_space", false, where)) fail(where + ".add_prefix_space = true is not supported");
        if (get_bool(p, "use_regex", true, where)) impl.pre.passes.push_back(SplitKind::GPT2);
        return true;
    }
    if (type == "Digits") {
        impl.pre.passes.push_back(get_bool(p, "individual_digits", false, where) ? SplitKind::DIGITS : SplitKind::DIGIT_RUNS);
        return false;
    }
    fail(where + ": pre_tokenizer type " + quote_for_error(type) + " is not supported (supported: Sequence, Split, ByteLevel, Digits)");
}

void load_decoder(const json& d, const std::string& where) {
    // Only decoders whose effect is "map the byte alphabet back to bytes" are accepted; that is what
    // Tokenizer::Impl::bytes precomputes.
    if (d.is_null()) fail(where + " is null; a ByteLevel decoder is required for byte-level BPE");
    const std::string type = type_of(d, where);
    if (type == "ByteLevel") return;
    if (type == "Sequence") {
        const json& list = need(d, "decoders", where);
        if (!list.is_array() || list.size() != 1) fail(where + ": only a Sequence holding one ByteLevel decoder is supported");
        load_decoder(list[0], where + ".decoders[0]");
        return;
    }
    fail(where + ": decoder type " + quote_for_error(type) + " is not supported (supported: ByteLevel)");
}

void build_matcher(const Tokenizer::Impl& impl, bool normalized, AddedTokenMatcher& m) {
    for (uint32_t i = 0; i < impl.added.size(); ++i) {
        const AddedToken& t = impl.added[i];
        if (t.normalized != normalized || t.content.empty()) continue;
        const uint8_t b = uint8_t(t.content[0]);
        m.by_first_byte[b].push_back(i);
        m.is_first_byte[b] = true;
        m.empty = false;
    }
    for (auto& list : m.by_first_byte) {
        std::stable_sort(list.begin(), list.end(), [&](uint32_t a, uint32_t b) {
            return impl.added[a].content.size() > impl.added[b].content.size();
        });
    }
}

// Byte-level decoding of one vocabulary string, as HF's ByteLevel decoder does it: every character
// maps back to its byte, unless one is outside the alphabet, in which case the UTF-8 text is kept.
std::string piece_to_bytes(std::string_view piece) {
    std::string out;
    const auto* p = reinterpret_cast<const uint8_t*>(piece.data());
    uint32_t cp;
    bool valid, truncated;
    for (size_t i = 0; i < piece.size();) {
        i += unicode::utf8_next(p, piece.size(), i, cp, valid, truncated);
        const int b = valid ? code_point_to_byte(cp) : -1;
        if (b < 0) return std::string(piece);
        out.push_back(char(b));
    }
    return out;
}

void load_model(const json& model, TokenizerJson& tj, Tokenizer::Impl& impl) {
    const std::string where = "model";
    const std::string type = model.contains("type") ? type_of(model, where) : "BPE";
    if (type != "BPE") fail("model.type " + quote_for_error(type) + " is not supported (only \"BPE\")");
    for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
        auto it = model.find(key);
        if (it != model.end() && !it->is_null() && !(it->is_string() && it->get<std::string>().empty())) {
            fail(std::string("model.") + key + " is set; it is not supported for byte-level BPE");
        }
    }
    auto dropout = model.find("dropout");
    if (dropout != model.end() && !dropout->is_null() && !(dropout->is_number() && dropout->get<double>() == 0.0)) {
        fail("model.dropout is set; BPE dropout is not supported at inference");
    }
    impl.ignore_merges = get_bool(model, "ignore_merges", false, where);
    impl.byte_fallback = get_bool(model, "byte_fallback", false, where);

    if (!tj.has_vocab) {
        need(model, "vocab", where);
        fail("model.vocab must be an object mapping token -> id");
    }
    impl.vocab_keys.resize(tj.vocab.size());
    impl.vocab.reserve(tj.vocab.size());
    int64_t max_id = -1;
    for (size_t i = 0; i < tj.vocab.size(); ++i) {
        VocabEntry& e = tj.vocab[i];
        if (e.id < 0 || e.id > INT32_MAX / 2) fail("model.vocab[" + quote_for_error(e.token) + "] is not a valid token id");
        max_id = std::max(max_id, e.id);
        impl.vocab_keys[i] = std::move(e.token);
    }
    impl.pieces.resize(size_t(max_id + 1));
    for (size_t i = 0; i < tj.vocab.size(); ++i) {
        // A key repeated in the JSON object keeps its last id, as a JSON parser would.
        const std::string_view key = impl.vocab_keys[i];
        const token_id id = token_id(tj.vocab[i].id);
        if (!impl.vocab.insert(key, id)) impl.vocab.assign(key, id);
        impl.pieces[size_t(id)] = key;
    }

    if (!tj.has_merges) {
        need(model, "merges", where);
        fail("model.merges must be an array");
    }
    impl.merges.reserve(tj.merges.size());
    auto lookup = [&](const std::string& s, size_t rank) -> token_id {
        const token_id id = impl.vocab.find(s);
        if (id < 0) fail("model.merges[" + std::to_string(rank) + "]: " + quote_for_error(s) + " is not in the vocabulary");
        return id;
    };
    std::string a, b, ab;
    for (size_t rank = 0; rank < tj.merges.size(); ++rank) {
        const MergeEntry& m = tj.merges[rank];
        // Two spellings exist: "a b" (older files) and ["a", "b"] (tokenizers >= 0.20).
        if (!m.valid) fail("model.merges[" + std::to_string(rank) + "] must be \"a b\" or [\"a\", \"b\"]");
        if (m.is_pair) {
            a = m.left;
            b = m.right;
        } else {
            const std::string& line = m.line;
            const size_t space = line.find(' ');
            if (space == std::string::npos || line.find(' ', space + 1) != std::string::npos) {
                fail("model.merges[" + std::to_string(rank) + "] " + quote_for_error(line) + " is not two tokens separated by one space");
            }
            a.assign(line, 0, space);
            b.assign(line, space + 1, std::string::npos);
        }
        ab = a;
        ab += b;
        const token_id left = lookup(a, rank), right = lookup(b, rank), merged = lookup(ab, rank);
        impl.merges.insert(left, right, MergeInfo{int32_t(rank), merged});  // first (lowest rank) wins
    }

    auto unk = model.find("unk_token");
    if (unk != model.end() && unk->is_string()) {
        impl.unk_id = impl.vocab.find(unk->get<std::string>());
    }
    const auto& alphabet = byte_to_code_point();
    for (int byte = 0; byte < 256; ++byte) {
        std::string ch;
        unicode::utf8_append(ch, alphabet[size_t(byte)]);
        impl.byte_ids[size_t(byte)] = impl.vocab.find(ch);
        char name[8];
        std::snprintf(name, sizeof(name), "<0x%02X>", byte);
        impl.byte_fallback_ids[size_t(byte)] = impl.vocab.find(name);
    }
}

void load_added_tokens(const json& list, Tokenizer::Impl& impl) {
    if (list.is_null()) return;
    if (!list.is_array()) fail("added_tokens must be an array");
    token_id next_id = token_id(impl.vocab.size());
    for (size_t i = 0; i < list.size(); ++i) {
        const std::string where = "added_tokens[" + std::to_string(i) + "]";
        const json& t = list[i];
        AddedToken tok;
        const json& id = need(t, "id", where);
        const json& content = need(t, "content", where);
        if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > INT32_MAX / 2) fail(where + ".id is not a valid token id");
        if (!content.is_string() || content.get<std::string>().empty()) fail(where + ".content must be a non-empty string");
        tok.id = id.get<token_id>();
        tok.content = content.get<std::string>();
        if (!unicode::utf8_is_valid(tok.content)) fail(where + ".content is not valid UTF-8");
        tok.special = get_bool(t, "special", false, where);
        tok.lstrip = get_bool(t, "lstrip", false, where);
        tok.rstrip = get_bool(t, "rstrip", false, where);
        tok.single_word = get_bool(t, "single_word", false, where);
        tok.normalized = get_bool(t, "normalized", !tok.special, where);
        if (impl.added_by_content.count(tok.content)) continue;  // HF ignores repeats
        // HF does not trust the "id" field (it only warns on a difference): a token already in the
        // vocabulary keeps that id, a new one gets the next id after the vocabulary and the added
        // tokens so far. Real files agree with this; we follow HF where they do not.
        if (const token_id id = impl.vocab.find(tok.content); id >= 0) {
            tok.id = id;
        } else {
            tok.id = next_id;
        }
        if (tok.id >= next_id) next_id = tok.id + 1;
        impl.added_by_content[tok.content] = tok.id;
        impl.added.push_back(std::move(tok));
    }
}

std::shared_ptr<Tokenizer::Impl> load_impl(std::string_view text) {
    TokenizerJson tj = read_tokenizer_json(text);
    const json& doc = tj.doc;
    if (!doc.is_object()) fail("top level is not a JSON object");
    auto impl = std::make_shared<Tokenizer::Impl>();
    load_model(need(doc, "model", "tokenizer"), tj, *impl);
    load_added_tokens(doc.value("added_tokens", json()), *impl);
    load_normalizer(doc.value("normalizer", json()), *impl, "normalizer");
    if (!load_pre_tokenizer(doc.value("pre_tokenizer", json()), *impl, "pre_tokenizer")) {
        fail("pre_tokenizer has no ByteLevel step; only byte-level BPE tokenizers are supported");
    }
    load_decoder(doc.value("decoder", json()), "decoder");
    // post_processor is ignored on purpose: encode never adds BOS/EOS (add_special_tokens = false).

    size_t n = impl->pieces.size();
    for (const AddedToken& t : impl->added) n = std::max(n, size_t(t.id) + 1);
    impl->n_ids = n;
    impl->pieces.resize(n);
    impl->bytes.resize(n);
    impl->special.assign(n, 0);
    for (size_t id = 0; id < impl->pieces.size(); ++id) {
        if (!impl->pieces[id].empty()) impl->bytes[id] = piece_to_bytes(impl->pieces[id]);
    }
    std::vector<uint8_t> is_added(n, 0);
    for (const AddedToken& t : impl->added) {
        // HF resolves ids through the added vocabulary first, so an added token wins over a vocab entry.
        impl->bytes[size_t(t.id)] = piece_to_bytes(t.content);
        impl->special[size_t(t.id)] = t.special;
        is_added[size_t(t.id)] = 1;
    }
    // Views into `bytes`, which no longer changes. An id shared with an added token is kept only
    // when both spell the same bytes.
    impl->vocab_by_bytes.reserve(impl->vocab.size());
    for (size_t id = 0; id < impl->pieces.size(); ++id) {
        const std::string_view piece = impl->pieces[id];
        if (piece.empty()) continue;
        if (!is_added[id] || impl->bytes[id] == piece_to_bytes(piece)) impl->vocab_by_bytes.insert(impl->bytes[id], token_id(id));
    }
    build_matcher(*impl, false, impl->raw_matcher);
    build_matcher(*impl, true, impl->normalized_matcher);
    return impl;
}

}  // namespace

const std::array<uint32_t, 256>& byte_to_code_point() {
    // GPT-2's table: printable Latin-1 bytes keep their code point; the other 68 bytes are mapped,
    // in increasing order, to U+0100 onwards so that every byte is a visible character.
    static const std::array<uint32_t, 256> table = [] {
        std::array<uint32_t, 256> t{};
        uint32_t next = 0x100;
        for (uint32_t b = 0; b < 256; ++b) {
            const bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
            t[b] = keep ? b : next++;
        }
        return t;
    }();
    return table;
}

int code_point_to_byte(uint32_t cp) {
    static const std::array<int16_t, 0x144> inverse = [] {
        std::array<int16_t, 0x144> inv;
        inv.fill(-1);
        const auto& t = byte_to_code_point();
        for (int b = 0; b < 256; ++b) inv[t[size_t(b)]] = int16_t(b);
        return inv;
    }();
    return cp < inverse.size() ? inverse[cp] : -1;
}

namespace {

// The error is one printable line even when it quotes the file (nlohmann's parse errors show the
// last bytes read): control characters are escaped and invalid UTF-8 replaced.
std::string one_line(const std::string& message) {
    std::string out;
    for (char c : unicode::utf8_lossy(message)) {
        if (uint8_t(c) < 0x20) {
            char buf[8];
            std::snprintf(buf, sizeof(buf), "\\x%02x", unsigned(uint8_t(c)));
            out += buf;
        } else {
            out += c;
        }
    }
    return out;
}

}  // namespace

std::optional<Tokenizer> Tokenizer::load_from_string(std::string_view json_text, std::string& error) {
    try {
        return Tokenizer(load_impl(json_text));
    } catch (const LoadError& e) {
        error = one_line("tokenizer.json: " + e.message);
    } catch (const std::exception& e) {
        error = one_line(std::string("tokenizer.json: ") + e.what());
    }
    return std::nullopt;
}

std::optional<Tokenizer> Tokenizer::load(const std::string& path, std::string& error) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        error = "tokenizer.json: cannot open " + path;
        return std::nullopt;
    }
    std::ostringstream ss;
    ss << in.rdbuf();
    auto tok = load_from_string(ss.str(), error);
    if (!tok) error = path + ": " + error.substr(std::string("tokenizer.json: ").size());
    return tok;
}

}  // namespace glm
