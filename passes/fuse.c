/* passes/fuse.c -- kernel formation: groups nodes into kernels (`kernel=K`, the
 * invariant is in docs/ir.md, "Kernels") so that codegen emits one function per
 * kernel. Per function, from the last node down, each f32 elementwise node not yet
 * grouped roots a kernel that grows through operands of the root's shape: further
 * elementwise ops, and at most one matmul or conv2d head (used only by the kernel;
 * its own operands stay outside). An elementwise operand with other users joins
 * too when those users run after the kernel (later nodes, assigns, outputs): the
 * kernel then stores it as one more result (a multi-output kernel, e.g. Adam's
 * m, v and parameter updates in one loop, or a pre-activation that the backward
 * pass reads next to the activation). Before that, backward masks are pointed
 * at the activation instead of its input (relu_grad(x, dy) reads relu(x)), so
 * that the pre-activation need not be stored at all, and a mask after a max
 * pooling gradient moves before it, onto the pooled tensor. */
#include "passes/passes.h"

#include <string.h>

/* External values one kernel may read: keeps the generated signatures and loop
 * nests small (the C backend emits larger kernels node by node). */
#define FUSE_MAX_INPUTS 12
/* Values one kernel may store, its root included. */
#define FUSE_MAX_OUTPUTS 4

/* Whether node id is f32 and reads only f32 values. */
static bool all_f32(const struct ir_func *f, int id) {
    const struct ir_node *n = &f->nodes[id];
    if (n->type.dtype != DT_F32) return false;
    for (int a = 0; a < n->nargs; a++)
        if (f->nodes[n->args[a]].type.dtype != DT_F32) return false;
    return true;
}

/* Distinct values read from outside kernel k by its members. */
static int count_inputs(const struct ir_func *f, const int *group, int k) {
    int seen[4 * FUSE_MAX_INPUTS], nseen = 0;
    for (size_t g = 0; g < vec_len(group); g++) {
        const struct ir_node *n = &f->nodes[group[g]];
        for (int a = 0; a < n->nargs; a++) {
            int x = n->args[a];
            if (f->nodes[x].kernel == k) continue;
            bool dup = false;
            for (int s = 0; s < nseen && !dup; s++) dup = seen[s] == x;
            if (dup) continue;
            if (nseen == (int)(sizeof seen / sizeof *seen)) return nseen + 1;
            seen[nseen++] = x;
        }
    }
    return nseen;
}

/* Users of each node: users[x] is a vec of node ids (one per operand slot). */
static int **users_of(const struct ir_func *f) {
    int len = ir_func_len(f);
    int **users = calloc((size_t)len, sizeof *users);
    if (!users) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int i = 0; i < len; i++)
        for (int a = 0; a < f->nodes[i].nargs; a++) vec_push(users[f->nodes[i].args[a]], i);
    return users;
}

/* Whether node x may join kernel k rooted at `root` although not all its users
 * are members: every other user runs after the kernel. *escapes tells whether
 * it has such a user (or is an output), so that the kernel must store it. */
static bool joins_after(const struct ir_func *f, int *const *users, int x, int k, int root, bool *escapes) {
    *escapes = false;
    for (size_t u = 0; u < vec_len(users[x]); u++) {
        const struct ir_node *un = &f->nodes[users[x][u]];
        if (un->kernel == k) continue;
        if (users[x][u] < root && un->op != OP_ASSIGN) return false;
        *escapes = true;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) *escapes |= f->outputs[o].value == x;
    return true;
}

/* Groups the nodes of f into kernels numbered from `next`; returns how many. */
static int fuse_func(struct ir_func *f, int next) {
    /* next counts up as kernels form; they are renumbered at the end */
    int len = ir_func_len(f);
    if (len == 0) return 0;
    int *uses = calloc((size_t)len, sizeof *uses);
    if (!uses) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int i = 0; i < len; i++)
        for (int a = 0; a < f->nodes[i].nargs; a++) uses[f->nodes[i].args[a]]++;
    for (size_t o = 0; o < vec_len(f->outputs); o++) uses[f->outputs[o].value]++;
    int **users = users_of(f);
    int formed = 0, *group = NULL;
    for (int root = len - 1; root >= 0; root--) {
        struct ir_node *r = &f->nodes[root];
        if (r->kernel || !ir_kernel_ewise_op(r->op) || !all_f32(f, root)) continue;
        int k = next;
        bool has_head = false;
        int stored = 1; /* the root */
        vec_clear(group);
        vec_push(group, root);
        r->kernel = k;
        for (size_t g = 0; g < vec_len(group); g++) {
            const struct ir_node *m = &f->nodes[group[g]];
            if (ir_kernel_head_op(m->op)) continue; /* a head's operands stay outside */
            for (int a = 0; a < m->nargs; a++) {
                int x = m->args[a];
                struct ir_node *xn = &f->nodes[x];
                if (xn->kernel || !all_f32(f, x)) continue;
                if (!shape_equal(&xn->type.shape, &r->type.shape)) continue;
                bool head = ir_kernel_head_op(xn->op), escapes = false;
                if (!(ir_kernel_ewise_op(xn->op) || (head && !has_head))) continue;
                if (head && uses[x] != 1) continue;
                xn->kernel = k; /* so that joins_after counts the user m as a member */
                if (!head && !joins_after(f, users, x, k, root, &escapes)) {
                    xn->kernel = 0;
                    continue;
                }
                if (escapes && stored == FUSE_MAX_OUTPUTS) {
                    xn->kernel = 0;
                    continue;
                }
                vec_push(group, x);
                if (count_inputs(f, group, k) > FUSE_MAX_INPUTS) {
                    xn->kernel = 0;
                    vec_hdr_(group)->len--;
                    continue;
                }
                has_head |= head;
                stored += escapes;
            }
        }
        if (vec_len(group) < 2) {
            r->kernel = 0;
            continue;
        }
        next++;
        formed++;
    }
    /* Number the kernels in the order of their roots. */
    for (int i = 0; i < len; i++) {
        int k = f->nodes[i].kernel;
        if (k >= next - formed && k < next) f->nodes[i].kernel = 2 * (next - formed) + formed - 1 - k;
    }
    vec_free(group);
    for (int i = 0; i < len; i++) vec_free(users[i]);
    free(users);
    free(uses);
    return formed;
}

/* The activation of x that a mask can read instead of x: y = relu(x) (or a
 * leaky relu with a positive slope, for leaky_relu_grad of the same slope)
 * computed before node `before`, or -1. y > 0 exactly where x > 0 (a NaN x gives
 * y = 0 and both masks 0), so the gradient is unchanged. */
static int activation_of(const struct ir_func *f, int x, int before, const struct ir_node *mask) {
    for (int y = x + 1; y < before; y++) {
        const struct ir_node *n = &f->nodes[y];
        if (n->nargs != 1 || n->args[0] != x || !shape_equal(&n->type.shape, &f->nodes[x].type.shape)) continue;
        if (mask->op == OP_RELU_GRAD && n->op == OP_RELU) return y;
        if (mask->op == OP_LEAKY_RELU_GRAD && n->op == OP_LEAKY_RELU && ir_attr_f(n, ATTR_ALPHA) > 0 &&
            ir_attr_f(n, ATTR_ALPHA) == ir_attr_f(mask, ATTR_ALPHA))
            return y;
    }
    return -1;
}

/* Backward masks read the activation rather than its input: relu_grad(x, dy)
 * becomes relu_grad(relu(x), dy) where relu(x) is computed anyway. The forward
 * kernel then need not store the pre-activation for the backward pass (one
 * store of the whole activation less per layer, and a smaller workspace). */
static void masks_read_activations(struct ir_func *f) {
    for (int id = 0; id < ir_func_len(f); id++) {
        struct ir_node *n = &f->nodes[id];
        if ((n->op != OP_RELU_GRAD && n->op != OP_LEAKY_RELU_GRAD) || n->kernel) continue;
        int y = activation_of(f, n->args[0], id, n);
        if (y >= 0 && !f->nodes[y].kernel) n->args[0] = y; /* (kernels formed before stay valid) */
    }
}

/* Whether nodes a and b have the same int attributes (pooling geometry). */
static bool same_ints(const struct ir_node *a, const struct ir_node *b) {
    for (int i = 0; i < IR_MAX_IATTR; i++)
        if (a->ia[i] != b->ia[i]) return false;
    return true;
}

/* The mask before the pooling gradient: r = relu_grad(y, maxpool2d_grad(y, dy))
 * with y = relu(x) and p = maxpool2d(y) computed, becomes
 * maxpool2d_grad(y, relu_grad(p, dy)): each window passes dy to its (first)
 * maximum, whose y is the window's max p, so masking by p > 0 on the pooled
 * tensor before the scatter is the same as masking by y > 0 after it, on a
 * quarter of the elements for 2x2 pooling. Done in place: the pooling gradient's
 * node becomes the mask (of the pooled shape), the mask's the pooling gradient. */
static void masks_before_pooling(struct ir_module *m, struct ir_func *f, int **users) {
    for (int r = 0; r < ir_func_len(f); r++) {
        struct ir_node *rn = &f->nodes[r];
        if (rn->op != OP_RELU_GRAD) continue;
        int y = rn->args[0], g = rn->args[1];
        struct ir_node *gn = &f->nodes[g];
        if (f->nodes[y].op != OP_RELU || gn->op != OP_MAXPOOL2D_GRAD || gn->args[0] != y || vec_len(users[g]) != 1)
            continue;
        if (rn->kernel || gn->kernel) continue;
        bool out = false;
        for (size_t o = 0; o < vec_len(f->outputs); o++) out |= f->outputs[o].value == g;
        int p = -1;
        for (size_t u = 0; u < vec_len(users[y]) && p < 0; u++) {
            const struct ir_node *un = &f->nodes[users[y][u]];
            if (un->op == OP_MAXPOOL2D && users[y][u] < g && same_ints(un, gn)) p = users[y][u];
        }
        if (out || p < 0) continue;
        int dy = gn->args[1];
        struct ir_node pool = *gn;
        gn->op = OP_RELU_GRAD;
        gn->args[0] = p;
        gn->args[1] = dy;
        memset(gn->ia, 0, sizeof gn->ia);
        memset(gn->fa, 0, sizeof gn->fa);
        gn->type = f->nodes[dy].type;
        rn->op = OP_MAXPOOL2D_GRAD;
        rn->args[0] = y;
        rn->args[1] = g;
        memcpy(rn->ia, pool.ia, sizeof rn->ia);
        memcpy(rn->fa, pool.fa, sizeof rn->fa);
        char err[256];
        if (!ir_infer(m, f, g, err, sizeof err) || !ir_infer(m, f, r, err, sizeof err))
            netc_internal_error(__FILE__, __LINE__, "mask before pooling: %s", err);
    }
}

int pass_fuse(struct ir_module *m) {
    int formed = 0;
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        struct ir_func *f = m->funcs[i];
        masks_read_activations(f);
        int **users = users_of(f);
        masks_before_pooling(m, f, users);
        for (int id = 0; id < ir_func_len(f); id++) vec_free(users[id]);
        free(users);
        int next = 1;
        for (int id = 0; id < ir_func_len(f); id++)
            if (f->nodes[id].kernel >= next) next = f->nodes[id].kernel + 1;
        formed += fuse_func(f, next);
    }
    return formed;
}
