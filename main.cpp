// glmrun entry point: parse the command line, pick the mode, turn the result into an exit code
// (0 ok, 1 bad usage, 2 bad model or input, 3 out of memory or device failure, 130 interrupted).
#include <cstdio>
#include <exception>
#include <new>

#include "cli/app.h"
#include "cli/options.h"
#include "cli/term.h"
#include "ggml-like/common.h"

namespace {
int report(const Status& st) {
    if (st.ok()) return 0;
    if (st.kind() == ErrorKind::interrupted) {
        err_write("\ninterrupted\n");
        return st.exit_code();
    }
    err_write(fmt::format("error: {}\n", st.message()));
    return st.exit_code();
}

Status run(int argc, char** argv) {
    CliOptions opts;
    GLM_TRY(parse_cli(argc, argv, opts));
    if (opts.help) {
        out_write(cli_help_text());
        return {};
    }
    if (opts.version) {
        out_write(fmt::format("glmrun {} (git {})\n", GLMRUN_VERSION, git_revision()));
        return {};
    }
    term_init(opts.color);
    glm_set_log_level(opts.quiet ? LogLevel::error : opts.verbose ? LogLevel::debug : LogLevel::warn);

    const std::string model_dir = resolve_model_dir(opts);
    if (opts.verify || opts.write_manifest) return run_verify(opts, model_dir);
    if (opts.tokenize) return run_tokenize(opts, model_dir);
    if (opts.plan_only) return run_plan(opts, model_dir);
    term_install_sigint(opts.interactive);
    if (opts.bench) return run_bench(opts, model_dir);
    if (opts.interactive) return run_repl(opts, model_dir);
    return run_oneshot(opts, model_dir);
}
}  // namespace

int main(int argc, char** argv) {
    try {
        return report(run(argc, argv));
    } catch (const std::bad_alloc&) {
        return report(Status::device("out of memory"));
    } catch (const std::exception& e) {
        return report(Status::bad_input("{}", e.what()));
    }
}
