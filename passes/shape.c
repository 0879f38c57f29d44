/* passes/shape.c -- the `shape` pass: infers every node's type again by its op's
 * shape rule (ir/shape.c), in node order, and reports the first node whose
 * operands disagree; counts the types that changed. */
#include "passes/passes.h"

int pass_shape(struct ir_module *m) {
    int changed = 0;
    char err[256];
    for (size_t fi = 0; fi < vec_len(m->funcs); fi++) {
        struct ir_func *f = m->funcs[fi];
        for (int i = 0; i < ir_func_len(f); i++) {
            struct type before = f->nodes[i].type;
            if (!ir_infer(m, f, i, err, sizeof err)) {
                diag_error(f->nodes[i].loc, "%s", err);
                return -1;
            }
            const struct type *after = &f->nodes[i].type;
            if (before.dtype != after->dtype || !shape_equal(&before.shape, &after->shape)) changed++;
        }
    }
    return changed;
}
