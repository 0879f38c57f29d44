/* tests/fuzz/fuzz_net.c -- libFuzzer target: a .net file through the whole
 * compiler -- the flex/bison front end and lowering, the verifier, the default
 * pass pipeline (with the verifier after every pass), and both emitters (C and
 * OpenCL, each after a pipeline planned for it) into /dev/null. Any input must end in C or in diagnostics; a
 * crash, a sanitizer report, a leak or an internal error (exit 70) is a finding. */
#include "tests/fuzz/fuzz.h"

#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *null = fuzz_null();
    diag_set_stream(null);
    diag_reset();
    const struct cg_target *targets[] = {&cg_target_c, &cg_target_opencl};
    for (int t = 0; t < 2; t++) { /* the pipeline plans for the target that emits */
        struct ir_module *m = fe_load_text("fuzz.net", (const char *)data, size);
        if (!m) break;
        pass_target = targets[t]->plan;
        struct pass_options opt = {true, NULL, false, false, null};
        if (ir_verify(m) && pass_run_list(m, pass_pipeline(), &opt)) {
            struct cg_options copt = {"fuzz", true};
            targets[t]->emit(m, null, &copt); /* may refuse with a diagnostic */
        }
        ir_module_free(m);
    }
    diag_free();
    return 0;
}
