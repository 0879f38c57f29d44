/* passes/simplify.c -- algebraic rewrites that keep every value the same and
 * make later passes cheaper. Backward masks read the activation rather than its
 * input (relu_grad(x, dy) reads relu(x)), so that the pre-activation need not be
 * stored for the backward pass, and a mask after a max pooling gradient moves
 * before it, onto the pooled tensor (a quarter of the elements for 2x2 pooling),
 * as does a spatial sum of such a gradient. A residual's gradient added to a
 * layer norm's input gradient goes into the layer norm gradient's pass. GELU's
 * gradient multiplies by a derivative computed beside the forward's GELU. A
 * conv weight gradient behind a max pooling reads the pooled gradient where
 * nothing else needs the dense one. Nodes already in a kernel are left alone. */
#include "passes/passes.h"

#include <string.h>

/* Users of each node: users[x] is a vec of node ids (one per operand slot). */
static int **users_of(const struct ir_func *f) {
    int len = ir_func_len(f);
    int **users = calloc((size_t)(len ? len : 1), sizeof *users);
    if (!users) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int i = 0; i < len; i++)
        for (int a = 0; a < f->nodes[i].nargs; a++) vec_push(users[f->nodes[i].args[a]], i);
    return users;
}

/* The activation of x that a mask can read instead of x: y = relu(x) (or a
 * leaky relu with a positive slope, for leaky_relu_grad of the same slope)
 * computed before node `before`, or -1. y > 0 exactly where x > 0 (a NaN x gives
 * y = 0 and both masks 0), so the gradient is unchanged. */
static int activation_of(const struct ir_func *f, int x, int before, const struct ir_node *mask) {
    for (int y = x + 1; y < before; y++) {
        const struct ir_node *n = &f->nodes[y];
        if (n->nargs != 1 || n->args[0] != x || !shape_equal(&n->type.shape, &f->nodes[x].type.shape))
            continue;
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
static int masks_read_activations(struct ir_func *f) {
    int changed = 0;
    for (int id = 0; id < ir_func_len(f); id++) {
        struct ir_node *n = &f->nodes[id];
        if ((n->op != OP_RELU_GRAD && n->op != OP_LEAKY_RELU_GRAD) || n->kernel) continue;
        int y = activation_of(f, n->args[0], id, n);
        if (y >= 0 && !f->nodes[y].kernel) n->args[0] = y, changed++; /* (kernels formed before stay valid) */
    }
    return changed;
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
static int masks_before_pooling(struct ir_module *m, struct ir_func *f, int **users) {
    int changed = 0;
    for (int r = 0; r < ir_func_len(f); r++) {
        struct ir_node *rn = &f->nodes[r];
        if (rn->op != OP_RELU_GRAD) continue;
        int y = rn->args[0], g = rn->args[1];
        struct ir_node *gn = &f->nodes[g];
        if (f->nodes[y].op != OP_RELU || gn->op != OP_MAXPOOL2D_GRAD || gn->args[0] != y ||
            vec_len(users[g]) != 1)
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
        changed++;
    }
    return changed;
}

/* A sum over both spatial axes of a max pooling gradient without padding is
 * the sum of the pooled gradient: every window holds an input, and each dy
 * goes to exactly one of them (its first maximum), so sum(maxpool2d_grad(y,
 * dy)) over axes containing 2 and 3 equals sum(dy) over the same axes, read
 * from a quarter of the elements for 2x2 pooling (a convolution's bias
 * gradient behind a pooling layer). The sum's operand changes in place; the
 * values summed are the same, in another order. */
static int sums_before_pooling(struct ir_module *m, struct ir_func *f) {
    int changed = 0;
    for (int id = 0; id < ir_func_len(f); id++) {
        struct ir_node *n = &f->nodes[id];
        if (n->op != OP_SUM || n->kernel) continue;
        const struct ir_node *gn = &f->nodes[n->args[0]];
        if (gn->op != OP_MAXPOOL2D_GRAD || gn->type.shape.rank != 4) continue;
        int count, npad;
        const int64_t *axes = ir_attr_v(n, ATTR_AXES, &count), *pad = ir_attr_v(gn, ATTR_PAD, &npad);
        bool h = count == 0, w = count == 0, padded = false;
        for (int i = 0; i < count; i++) h |= axes[i] == 2, w |= axes[i] == 3;
        for (int i = 0; i < npad; i++) padded |= pad[i] != 0;
        if (!h || !w || padded) continue;
        n->args[0] = gn->args[1];
        char err[256];
        if (!ir_infer(m, f, id, err, sizeof err))
            netc_internal_error(__FILE__, __LINE__, "sum before pooling: %s", err);
        changed++;
    }
    return changed;
}

/* Whether node x is an output of f. */
static bool is_output(const struct ir_func *f, int x) {
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        if (f->outputs[o].value == x) return true;
    return false;
}

/* A residual's gradient added to a layer norm's input gradient: add(r,
 * layernorm_grad(x, dy, gamma)) (either order, the same shapes, the gradient
 * read only there) becomes layernorm_grad(x, dy, gamma, r), which adds r as it
 * writes the row: the pre-norm block's x + f(layernorm(x)) pays no separate pass
 * for the sum of its two gradients. The add's node becomes the fused one (all
 * operands precede it); the old gradient node is left dead, for DCE. */
static int residual_into_layernorm_grad(struct ir_module *m, struct ir_func *f, int **users) {
    int changed = 0;
    for (int id = 0; id < ir_func_len(f); id++) {
        struct ir_node *n = &f->nodes[id];
        if (n->op != OP_ADD || n->kernel || n->type.dtype != DT_F32) continue;
        for (int side = 0; side < 2; side++) {
            int lg = n->args[side], r = n->args[1 - side];
            const struct ir_node *ln = &f->nodes[lg];
            if (ln->op != OP_LAYERNORM_GRAD || ln->nargs != 3 || ln->kernel || vec_len(users[lg]) != 1 ||
                is_output(f, lg) || r == lg)
                continue;
            if (!shape_equal(&ln->type.shape, &n->type.shape) ||
                !shape_equal(&f->nodes[r].type.shape, &n->type.shape) || f->nodes[r].type.dtype != DT_F32)
                continue;
            struct ir_node fused = *ln;
            fused.args = malloc(4 * sizeof *fused.args); /* nodes own their operand arrays */
            if (!fused.args) netc_internal_error(__FILE__, __LINE__, "out of memory");
            for (int a = 0; a < 3; a++) fused.args[a] = ln->args[a];
            fused.args[3] = r;
            fused.nargs = 4;
            fused.mem = n->mem;
            free(n->args);
            *n = fused;
            char err[256];
            if (!ir_infer(m, f, id, err, sizeof err))
                netc_internal_error(__FILE__, __LINE__, "residual into layernorm_grad: %s", err);
            changed++;
            break;
        }
    }
    return changed;
}

/* Appends a node (ir_node_add) and moves it to position pos: the nodes from
 * pos on move up by one, and every reference to them (operands, outputs) with
 * them. Returns pos. Only before fusion and the memory plan (no kernels yet). */
static int node_insert(struct ir_module *m, struct ir_func *f, int pos, enum op op, const int *args,
                       int nargs, struct loc loc) {
    int last = ir_node_add(m, f, op, args, nargs, loc);
    struct ir_node n = f->nodes[last];
    memmove(&f->nodes[pos + 1], &f->nodes[pos], sizeof *f->nodes * (size_t)(last - pos));
    f->nodes[pos] = n;
    for (int id = pos + 1; id <= last; id++)
        for (int a = 0; a < f->nodes[id].nargs; a++)
            if (f->nodes[id].args[a] >= pos) f->nodes[id].args[a]++;
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        if (f->outputs[o].value >= pos) f->outputs[o].value++;
    return pos;
}

/* GELU's derivative beside the forward's GELU: gelu_grad(x, dy) where gelu(x)
 * (the same form) is computed becomes mul(dy, gelu_deriv(x)), with
 * gelu_deriv(x) inserted just before gelu(x). Fusion then computes it in the
 * forward's kernel from the same x (a member beside the activation), which
 * stores it instead of x: the backward multiplies by a stored factor instead
 * of evaluating the derivative (the normal distribution again, ~60 % of the
 * forward's own GELU cost), and the values are the same (dy times the same
 * derivative of the same x). */
static int gelu_derivs_forward(struct ir_module *m, struct ir_func *f) {
    int changed = 0;
    for (int id = 0; id < ir_func_len(f); id++) {
        const struct ir_node *n = &f->nodes[id];
        if (n->op != OP_GELU_GRAD || n->kernel) continue;
        const int x = n->args[0];
        const int64_t approx = ir_attr_i(n, ATTR_APPROXIMATE);
        int y = -1;
        for (int j = x + 1; j < id && y < 0; j++) {
            const struct ir_node *jn = &f->nodes[j];
            if (jn->op == OP_GELU && jn->args[0] == x && !jn->kernel &&
                ir_attr_i(jn, ATTR_APPROXIMATE) == approx)
                y = j;
        }
        if (y < 0) continue;
        int d = -1; /* one derivative per x: a second gradient of the same x reuses it */
        if (f->nodes[y - 1].op == OP_GELU_DERIV && f->nodes[y - 1].args[0] == x &&
            ir_attr_i(&f->nodes[y - 1], ATTR_APPROXIMATE) == approx)
            d = y - 1;
        if (d < 0) {
            d = node_insert(m, f, y, OP_GELU_DERIV, &x, 1, f->nodes[y].loc);
            ir_attr_set_i(&f->nodes[d], ATTR_APPROXIMATE, approx);
            char err[256];
            if (!ir_infer(m, f, d, err, sizeof err))
                netc_internal_error(__FILE__, __LINE__, "gelu_deriv: %s", err);
            id++; /* the gradient moved up by one */
        }
        struct ir_node *g = &f->nodes[id];
        const int dy = g->args[1];
        g->op = OP_MUL;
        g->args[0] = dy;
        g->args[1] = d;
        memset(g->ia, 0, sizeof g->ia);
        memset(g->fa, 0, sizeof g->fa);
        char err[256];
        if (!ir_infer(m, f, id, err, sizeof err))
            netc_internal_error(__FILE__, __LINE__, "gelu_grad to mul: %s", err);
        changed++;
    }
    return changed;
}

/* The weight gradient of a conv2d behind a max pooling, from the pooled
 * gradient: conv2d_grad_weight(x, maxpool2d_grad(y, dp)), the pooling gradient
 * read nowhere else, becomes conv2d_grad_weight_maxpool(x, y, dp) with the
 * pooling's geometry, where the target's kernel is fast for it
 * (pass_target.pool_grad_weight; elsewhere the runtime's is a scalar loop,
 * slower than the dense path: LeNet's 5x5 first layer 1.7 ms against 0.4):
 * a quarter of the multiply-adds for 2x2 pooling, and the dense gradient (1 in
 * 4 nonzero) is never written. The weight gradient's node becomes the fused
 * one; the pooling gradient is left dead, for DCE. */
static int grad_weights_through_pooling(struct ir_module *m, struct ir_func *f, int **users) {
    const struct pass_target *t = pass_target_get();
    if (!t->pool_grad_weight) return 0;
    int changed = 0;
    for (int id = 0; id < ir_func_len(f); id++) {
        struct ir_node *n = &f->nodes[id];
        if (n->op != OP_CONV2D_GRAD_WEIGHT || n->kernel) continue;
        int g = n->args[1];
        const struct ir_node *gn = &f->nodes[g];
        if (gn->op != OP_MAXPOOL2D_GRAD || gn->kernel || vec_len(users[g]) != 1 || is_output(f, g)) continue;
        if (!t->pool_grad_weight(f, n, gn)) continue;
        struct ir_node fused = *n;
        fused.op = OP_CONV2D_GRAD_WEIGHT_MAXPOOL;
        fused.args = malloc(3 * sizeof *fused.args); /* nodes own their operand arrays */
        if (!fused.args) netc_internal_error(__FILE__, __LINE__, "out of memory");
        fused.args[0] = n->args[0], fused.args[1] = gn->args[0], fused.args[2] = gn->args[1];
        fused.nargs = 3;
        memset(fused.ia, 0, sizeof fused.ia);
        memset(fused.fa, 0, sizeof fused.fa);
        ir_attr_set_v(&fused, ATTR_STRIDE, ir_attr_v(n, ATTR_STRIDE, NULL), 2);
        ir_attr_set_v(&fused, ATTR_PAD, ir_attr_v(n, ATTR_PAD, NULL), 4);
        ir_attr_set_v(&fused, ATTR_DILATION, ir_attr_v(n, ATTR_DILATION, NULL), 2);
        ir_attr_set_i(&fused, ATTR_GROUPS, ir_attr_i(n, ATTR_GROUPS));
        ir_attr_set_v(&fused, ATTR_POOL_KERNEL, ir_attr_v(gn, ATTR_KERNEL, NULL), 2);
        ir_attr_set_v(&fused, ATTR_POOL_STRIDE, ir_attr_v(gn, ATTR_STRIDE, NULL), 2);
        ir_attr_set_v(&fused, ATTR_POOL_PAD, ir_attr_v(gn, ATTR_PAD, NULL), 4);
        free(n->args);
        *n = fused;
        char err[256];
        if (!ir_infer(m, f, id, err, sizeof err))
            netc_internal_error(__FILE__, __LINE__, "conv weight gradient through pooling: %s", err);
        changed++;
    }
    return changed;
}

int pass_simplify(struct ir_module *m) {
    int changed = 0;
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        struct ir_func *f = m->funcs[i];
        changed += masks_read_activations(f);
        changed += gelu_derivs_forward(m, f);
        int **users = users_of(f);
        changed += masks_before_pooling(m, f, users);
        int folded = residual_into_layernorm_grad(m, f, users);
        for (int id = 0; id < ir_func_len(f); id++) vec_free(users[id]);
        free(users);
        if (folded) ir_func_dce(f); /* the gradients folded into their adds */
        changed += folded + sums_before_pooling(m, f);
        users = users_of(f); /* the sums moved onto the pooled gradients */
        int through = grad_weights_through_pooling(m, f, users);
        for (int id = 0; id < ir_func_len(f); id++) vec_free(users[id]);
        free(users);
        if (through) ir_func_dce(f); /* the dense pooling gradients */
        changed += through;
    }
    return changed;
}
