// libFuzzer target: the first input byte picks the parser, the rest is the file content.
//   0: safetensors header + layout validation   1: config.json   2: hf_quant_config.json
//   3: generation_config.json applied to a config
// Any crash, sanitizer report or hang is a bug: every input must end in a Status.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "engine/config.h"
#include "engine/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    if (size < 1) return 0;
    const uint8_t mode = data[0] % 4;
    const uint8_t* p = data + 1;
    const size_t n = size - 1;
    glm_set_log_level(LogLevel::quiet);
    if (mode == 0) {
        std::vector<SafetensorsEntry> entries;
        uint64_t off = 0;
        std::map<std::string, std::string> meta;
        Status st = parse_safetensors_header(p, n, "fuzz", entries, off, &meta);
        if (st.ok()) {
            // Valid layouts must describe bytes that really are inside the buffer.
            for (const auto& e : entries)
                if (off + e.end > n || e.begin > e.end) __builtin_trap();
        }
        return 0;
    }
    const std::string text(reinterpret_cast<const char*>(p), n);
    if (mode == 1) {
        ModelConfig c;
        Status st = parse_model_config(text, "fuzz", c);
        if (st.ok() && int64_t(c.indexer_types.size()) != c.num_hidden_layers) __builtin_trap();
        if (st.ok()) (void)c.summary();
    } else if (mode == 2) {
        QuantConfig q;
        if (parse_hf_quant_config(text, "fuzz", q).ok()) (void)q.is_excluded("model.layers.3.mlp.experts.1.up_proj");
    } else {
        ModelConfig c;
        (void)apply_generation_config(text, "fuzz", c);
    }
    return 0;
}
