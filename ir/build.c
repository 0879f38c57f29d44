/* ir/build.c -- appending typed nodes to a function: the builder that autodiff,
 * the optimizer lowering and the frontend's lowering share. A node is added with
 * every attribute zero and the builder's loc; the caller sets attributes (or a
 * preset type), then ir_build_fin types it by its shape rule. Operands of -1
 * (an earlier failure) give -1, so that callers chain without checks. */
#include "ir/ir.h"

int ir_build_add(struct ir_build *b, enum op op, const int *args, int nargs) {
    b->added++;
    return ir_node_add(b->m, b->f, op, args, nargs, b->loc);
}

int ir_build_fin(struct ir_build *b, int id) {
    char err[512];
    if (id < 0 || ir_infer(b->m, b->f, id, err, sizeof err)) return id;
    if (b->fail) return b->fail(b, id, err);
    netc_internal_error(__FILE__, __LINE__, "%s built an ill-typed %s: %s", b->who,
                        op_info[b->f->nodes[id].op].name, err);
}

int ir_build_op(struct ir_build *b, enum op op, const int *args, int nargs) {
    for (int i = 0; i < nargs; i++)
        if (args[i] < 0) return -1;
    return ir_build_fin(b, ir_build_add(b, op, args, nargs));
}

int ir_build_op1(struct ir_build *b, enum op op, int a) { return ir_build_op(b, op, &a, 1); }

int ir_build_op2(struct ir_build *b, enum op op, int a, int c) {
    int args[2] = {a, c};
    return ir_build_op(b, op, args, 2);
}

int ir_build_op3(struct ir_build *b, enum op op, int a, int c, int d) {
    int args[3] = {a, c, d};
    return ir_build_op(b, op, args, 3);
}

int ir_build_const(struct ir_build *b, double v, enum dtype dt) {
    int id = ir_build_add(b, OP_CONST, NULL, 0);
    struct ir_node *n = &b->f->nodes[id];
    ir_attr_set_f(n, ATTR_VALUE, v);
    n->type.dtype = dt;
    n->type.shape.rank = 0;
    return ir_build_fin(b, id);
}

int ir_build_typed(struct ir_build *b, enum op op, int a, struct type t) {
    if (a < 0) return -1;
    int id = ir_build_add(b, op, &a, 1);
    b->f->nodes[id].type = t;
    return ir_build_fin(b, id);
}

int ir_build_slice(struct ir_build *b, int a, int64_t axis, int64_t start, int64_t size) {
    if (a < 0) return -1;
    int id = ir_build_add(b, OP_SLICE, &a, 1);
    struct ir_node *n = &b->f->nodes[id];
    ir_attr_set_i(n, ATTR_AXIS, axis);
    ir_attr_set_i(n, ATTR_START, start);
    ir_attr_set_i(n, ATTR_SIZE, size);
    return ir_build_fin(b, id);
}
