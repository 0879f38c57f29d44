/* codegen/llvm_none.c -- --target=llvm in a netc built without LLVM 14 (CMake
 * found no llvm-config-14): the target exists (llvm_target.c), so that naming
 * it gives one clear error saying how to get it, instead of "unknown target". */
#include "codegen/codegen.h"

#include <stdio.h>

static bool unavailable(void) {
    fprintf(stderr, "netc: error: --target=llvm: this netc was built without LLVM; install LLVM 14 "
                    "(apt-get install llvm-14-dev) and rebuild netc\n");
    return false;
}

bool cg_llvm_emit(const struct ir_module *m, FILE *out, const struct cg_options *opt) {
    (void)m, (void)out, (void)opt;
    return unavailable();
}

bool cg_llvm_object(const struct ir_module *m, const struct cg_options *opt, const char *path) {
    (void)m, (void)opt, (void)path;
    return unavailable();
}

int cg_llvm_run(const struct ir_module *m, const struct cg_options *opt, int argc, char **argv) {
    (void)m, (void)opt, (void)argc, (void)argv;
    unavailable();
    return -1;
}
