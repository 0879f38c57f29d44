/* passes/dce.c -- dead code elimination: removes the nodes that no output or
 * side effect (assign) reaches, in every function, renumbering the
 * rest in order (ir_func_dce). */
#include "passes/passes.h"

int pass_dce(struct ir_module *m) {
    int removed = 0;
    for (size_t fi = 0; fi < vec_len(m->funcs); fi++) removed += ir_func_dce(m->funcs[fi]);
    return removed;
}
