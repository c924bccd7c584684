// Unicode tables against independent references: the code point classes Oniguruma (inside HF
// tokenizers) gives \p{L}, \p{N}, \s (fixture unicode-classes.json, from make_expected.py), and
// Python's lossy UTF-8 decoding (hf-facts.json).
#include <doctest/doctest.h>

#include "tests/tokenizer/tokenizer-test-util.h"
#include "tokenizer/unicode.h"

using namespace glm::unicode;

TEST_CASE("code point classes match Oniguruma as used by HF tokenizers") {
    const auto fx = glm::test::read_json(glm::test::fixture_path("unicode-classes.json"));
    const auto& runs = fx["runs"];
    REQUIRE(runs.size() > 100);
    // HF's Oniguruma carries a newer Unicode than the Python that generated our tables, so code points
    // assigned since then may differ; any other difference is a bug.
    size_t mismatches = 0, checked = 0, newer = 0;
    for (size_t r = 0; r < runs.size(); ++r) {
        const uint32_t first = runs[r][0].get<uint32_t>();
        const uint32_t last = r + 1 < runs.size() ? runs[r + 1][0].get<uint32_t>() : 0x110000;
        const std::string cls = runs[r][1].get<std::string>();
        if (cls == "X") continue;  // surrogates: not representable in a Python str
        for (uint32_t cp = first; cp < last; ++cp) {
            const uint8_t f = flags(cp);
            const char ours = (f & CP_LETTER) ? 'L' : (f & CP_NUMBER) ? 'N' : (f & CP_WHITESPACE) ? 'S' : 'O';
            ++checked;
            if (ours == cls[0]) continue;
            if (f == 0) {
                ++newer;
                continue;
            }
            if (++mismatches <= 10) {
                MESSAGE("U+" << std::hex << unsigned(cp) << std::dec << ": Oniguruma " << cls << ", ours " << ours);
            }
        }
    }
    MESSAGE(checked << " code points checked against Oniguruma: " << mismatches << " differ, " << newer
                    << " more differ because they are unassigned in our tables (Unicode " << std::string(version()) << ")");
    CHECK(mismatches == 0);
}

TEST_CASE("case folding for contractions matches Oniguruma") {
    const auto fx = glm::test::read_json(glm::test::fixture_path("unicode-classes.json"));
    std::vector<uint32_t> folds;
    for (uint32_t cp = 0; cp < 0x110000; ++cp) {
        const uint32_t f = fold_ascii(cp);
        if ((flags(cp) & CP_LETTER) && (f == 's' || f == 't' || f == 'm' || f == 'd')) folds.push_back(cp);
    }
    CHECK(folds == fx["contraction_folds"].get<std::vector<uint32_t>>());
}

TEST_CASE("lossy UTF-8 decoding matches Python's errors=replace as fed to HF") {
    // hf-facts.json: HF rejects str with surrogate escapes, so bytes reach it decoded with
    // errors="replace"; lossy_encode_ids is HF's encoding of b"ab\xffcd" decoded that way.
    const auto facts = glm::test::read_json(glm::test::fixture_path("hf-facts.json"));
    CHECK(facts["surrogateescape_encode"]["ok"] == false);
    CHECK(facts["lossy_encode_ids"].size() == 7);  // a, b, 3 bytes of U+FFFD, c, d
    CHECK(utf8_lossy("ab\xff" "cd") == "ab\xef\xbf\xbd" "cd");
    CHECK(facts["decode_lone_ff"] == "\xef\xbf\xbd");
}
