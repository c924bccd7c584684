#include "tokenizer/json-reader.h"

#include <stdexcept>

namespace glm {

namespace {

using json = nlohmann::json;

class Reader : public nlohmann::json_sax<json> {
public:
    explicit Reader(TokenizerJson& out) : out_(out) {}

    bool null() override { return value(json(nullptr)); }
    bool boolean(bool v) override { return value(json(v)); }
    bool number_integer(number_integer_t v) override { return integer(v, v >= 0); }
    bool number_unsigned(number_unsigned_t v) override { return integer(int64_t(v), v <= uint64_t(INT64_MAX)); }
    bool number_float(number_float_t v, const string_t&) override { return value(json(v)); }
    bool binary(binary_t&) override { return value(json()); }
    bool string(string_t& v) override {
        if (mode_ == Mode::VOCAB && skip_ == 0) {
            out_.vocab.push_back({std::move(key_), -1});
            return true;
        }
        if (mode_ == Mode::MERGES && skip_ == 0) {
            MergeEntry m;
            m.line = std::move(v);
            out_.merges.push_back(std::move(m));
            return true;
        }
        if (mode_ == Mode::MERGE_PAIR && skip_ == 0) {
            pair_.push_back(std::move(v));
            return true;
        }
        return value(json(std::move(v)));
    }
    bool key(string_t& v) override {
        key_ = std::move(v);
        return true;
    }
    bool start_object(std::size_t) override { return open(true); }
    bool start_array(std::size_t) override { return open(false); }
    bool end_object() override { return close(); }
    bool end_array() override { return close(); }
    bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& e) override {
        throw std::runtime_error(std::string("not valid JSON: ") + e.what());
    }

private:
    enum class Mode { DOM, VOCAB, MERGES, MERGE_PAIR };

    // model.vocab / model.merges sit at depth 2 under the root key "model".
    bool at_model() const { return stack_.size() == 2 && model_open_; }

    bool integer(int64_t v, bool ok) {
        if (mode_ == Mode::VOCAB && skip_ == 0) {
            out_.vocab.push_back({std::move(key_), ok ? v : -1});
            return true;
        }
        return value(json(v));
    }

    // A value in capture mode that does not fit the expected shape marks the entry invalid.
    bool bad_capture_value() {
        if (mode_ == Mode::VOCAB) out_.vocab.push_back({std::move(key_), -1});
        if (mode_ == Mode::MERGES) out_.merges.push_back({"", "", "", false, false});
        if (mode_ == Mode::MERGE_PAIR) pair_ok_ = false;
        return true;
    }

    bool value(json v) {
        if (mode_ != Mode::DOM) return skip_ > 0 ? true : bad_capture_value();
        if (stack_.empty()) {
            out_.doc = std::move(v);
        } else if (stack_.back()->is_object()) {
            (*stack_.back())[key_] = std::move(v);
        } else {
            stack_.back()->push_back(std::move(v));
        }
        return true;
    }

    bool open(bool object) {
        if (mode_ != Mode::DOM) {
            if (skip_ == 0 && mode_ == Mode::MERGES && !object) {
                mode_ = Mode::MERGE_PAIR;  // the ["a", "b"] form
                pair_.clear();
                pair_ok_ = true;
                return true;
            }
            // Any other container inside the captured data is an invalid entry: skip its content.
            if (skip_ == 0) bad_capture_value();
            ++skip_;
            return true;
        }
        if (at_model() && stack_.back()->is_object() && (key_ == "vocab" || key_ == "merges")) {
            const bool vocab = key_ == "vocab";
            if (vocab == object) {
                (*stack_.back())[key_] = object ? json::object() : json::array();
                mode_ = vocab ? Mode::VOCAB : Mode::MERGES;
                (vocab ? out_.has_vocab : out_.has_merges) = true;
                return true;
            }
        }
        json c = object ? json::object() : json::array();
        json* slot;
        if (stack_.empty()) {
            out_.doc = std::move(c);
            slot = &out_.doc;
        } else if (stack_.back()->is_object()) {
            if (stack_.size() == 1 && key_ == "model") model_open_ = true;
            slot = &((*stack_.back())[key_] = std::move(c));
        } else {
            stack_.back()->push_back(std::move(c));
            slot = &stack_.back()->back();
        }
        stack_.push_back(slot);
        return true;
    }

    bool close() {
        if (skip_ > 0) {
            --skip_;
            return true;
        }
        if (mode_ == Mode::MERGE_PAIR) {
            MergeEntry m;
            m.is_pair = true;
            m.valid = pair_ok_ && pair_.size() == 2;
            if (m.valid) {
                m.left = std::move(pair_[0]);
                m.right = std::move(pair_[1]);
            }
            out_.merges.push_back(std::move(m));
            mode_ = Mode::MERGES;
            return true;
        }
        if (mode_ != Mode::DOM) {
            mode_ = Mode::DOM;
            return true;
        }
        if (stack_.size() == 2 && model_open_) model_open_ = false;
        stack_.pop_back();
        return true;
    }

    TokenizerJson& out_;
    std::vector<json*> stack_;
    std::string key_;
    Mode mode_ = Mode::DOM;
    int skip_ = 0;
    bool model_open_ = false;
    std::vector<std::string> pair_;
    bool pair_ok_ = true;
};

}  // namespace

TokenizerJson read_tokenizer_json(std::string_view text) {
    TokenizerJson out;
    Reader reader(out);
    json::sax_parse(text.begin(), text.end(), &reader);
    return out;
}

}  // namespace glm
