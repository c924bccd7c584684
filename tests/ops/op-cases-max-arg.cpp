// max_arg: the per-column (max, index + offset) pair tensor-parallel greedy decoding compares across
// ranks. Exact: inputs without ties, the maximum planted at the first and last rows.
#include <cstring>
#include <numeric>

#include "tests/ops/op-cases.h"

namespace optest {

void add_max_arg_cases(std::vector<OpCase>& cases) {
    struct Shape { int64_t n, cols; int32_t offset; bool strided; };
    for (Shape g : {Shape{29, 5, 0, false}, Shape{1, 3, 7, false}, Shape{17, 4, 38720, true}, Shape{1000, 2, 5, false}}) {
        OpCase c;
        c.name = fmt::format("max_arg n={} cols={} offset={}{}", g.n, g.cols, g.offset, g.strided ? " strided" : "");
        c.build = [g](OpBuild& b) {
            auto perm = std::make_shared<std::vector<int32_t>>(b.rng.distinct(g.n * g.cols, g.n * g.cols));
            glm_tensor* a = b.values(GLM_TYPE_F32, {g.strided ? g.n + 2 : g.n, g.cols},
                                     [perm](int64_t i) { return 0.5 * (*perm)[size_t(i % int64_t(perm->size()))] - 7; });
            if (g.n > 1) {  // maxima at the first row of column 0 and the last row of the last column
                const float big = 1e6f;
                std::memcpy(b.host[a].data(), &big, 4);
                std::memcpy(b.host[a].data() + (a->ne[0] * (g.cols - 1) + g.n - 1) * 4, &big, 4);
            }
            if (g.strided) a = glm_view_2d(b.ctx, a, g.n, g.cols, a->nb[1], 4);
            b.in = {a};
            return glm_max_arg(b.ctx, a, g.offset);
        };
        c.reference = [g](const OpBuild& b, const glm_tensor* out) {
            std::vector<double> r;
            for (int64_t col = 0; col < out->ne[1]; ++col) {
                int64_t best = 0;
                for (int64_t i = 1; i < g.n; ++i)
                    if (b.get(b.in[0], i, col) > b.get(b.in[0], best, col)) best = i;
                r.push_back(b.get(b.in[0], best, col));
                r.push_back(double(best + g.offset));
            }
            return r;
        };
        c.tol = {0, std::numeric_limits<double>::infinity()};
        cases.push_back(std::move(c));
    }
}

}  // namespace optest
