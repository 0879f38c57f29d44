/* passes/autodiff.c -- reverse-mode automatic differentiation in the same IR. For
 * each training function it seeds d(loss) = 1, walks the nodes backwards and applies
 * each op's gradient rule (a column of the op table, grad_rule[] below), which
 * appends nodes and accumulates operand gradients; then it adds a `grad.<param>`
 * output per updated parameter. Helpers first, then the rules in ops.def order. */
#include "passes/passes.h"

#include <string.h>

/* The state of one differentiation. */
struct ad {
    struct ir_build b; /* appends to the function being extended, with the loc
                          of the node being differentiated (ir/build.c) */
    int *grad;         /* per forward node: the node holding d(loss)/d(node), or -1 */
    char *needs;       /* per forward node: whether the loss gradient must reach it */
    int nfwd;          /* forward nodes (those before the walk started) */
};

typedef void (*grad_fn)(struct ad *ad, int id, int g);

/* ------------------------------------------------------------- builders */

static struct ir_node *nd(struct ad *ad, int id) { return &ad->b.f->nodes[id]; }
static const struct type *ty(struct ad *ad, int id) { return &ad->b.f->nodes[id].type; }

/* The builder's calls (ir/build.c): append a node (attributes and preset types
 * set by the caller, then fin() types it by its shape rule: rules only build
 * well-typed nodes, so a failure is an internal error), or a typed node. */
static int add(struct ad *ad, enum op op, const int *args, int nargs) {
    return ir_build_add(&ad->b, op, args, nargs);
}
static int fin(struct ad *ad, int id) { return ir_build_fin(&ad->b, id); }
static int op1(struct ad *ad, enum op op, int a) { return ir_build_op1(&ad->b, op, a); }
static int op2(struct ad *ad, enum op op, int a, int b) { return ir_build_op2(&ad->b, op, a, b); }
static int op3(struct ad *ad, enum op op, int a, int b, int c) { return ir_build_op3(&ad->b, op, a, b, c); }
/* A scalar f32 constant. */
static int cst(struct ad *ad, double v) { return ir_build_const(&ad->b, v, DT_F32); }

/* Unary ops whose target type is the node's own: RESHAPE, BROADCAST_TO, SUM_TO. */
/* Types pass by value, and callers read *ty() only in an argument list that adds no
 * node: a pointer into the nodes dangles once add() moves them. */
static int to_type(struct ad *ad, enum op op, int a, struct type t) {
    if (ty(ad, a)->dtype == t.dtype && shape_equal(&ty(ad, a)->shape, &t.shape)) return a;
    return ir_build_typed(&ad->b, op, a, t);
}

/* A reduction over `axes` (count 0: all). */
static int reduce(struct ad *ad, enum op op, int a, const int64_t *axes, int count, bool keep) {
    static const int64_t none[1];
    int id = add(ad, op, &a, 1);
    ir_attr_set_v(nd(ad, id), ATTR_AXES, count ? axes : none, count); /* never memcpy from NULL */
    ir_attr_set_i(nd(ad, id), ATTR_KEEPDIMS, keep);
    return fin(ad, id);
}

/* The reduced axes of a SUM/MEAN/MAX/VARIANCE node, as a mask over its input's dims. */
static void reduced_axes(struct ad *ad, int id, bool drop[IR_MAX_RANK]) {
    int count;
    const int64_t *axes = ir_attr_v(nd(ad, id), ATTR_AXES, &count);
    int rank = ty(ad, nd(ad, id)->args[0])->shape.rank;
    for (int i = 0; i < IR_MAX_RANK; i++) drop[i] = count == 0 && i < rank;
    for (int i = 0; i < count; i++) drop[axes[i]] = true;
}

/* The gradient g of a reduction node `id`, made broadcastable against its input:
 * reshaped to the keepdims form (the reduced dims as 1). */
static int keepdims_of(struct ad *ad, int id, int g) {
    const struct type *x = ty(ad, nd(ad, id)->args[0]);
    bool drop[IR_MAX_RANK];
    reduced_axes(ad, id, drop);
    struct type t = {ty(ad, g)->dtype, x->shape};
    for (int i = 0; i < x->shape.rank; i++)
        if (drop[i]) t.shape.dim[i] = 1;
    return to_type(ad, OP_RESHAPE, g, t);
}

/* The number of elements of shape s in the dims marked `drop`, as a scalar f32
 * value. Its static part is a constant; when the batch dim N is among them, N
 * itself is SUM(BROADCAST_TO(1, f32[N])), so no op needs to know the batch size. */
static int count_of(struct ad *ad, const struct shape *s, const bool drop[IR_MAX_RANK]) {
    double n = 1;
    bool has_n = false;
    for (int i = 0; i < s->rank; i++) { /* before any add(): s may point into the nodes */
        if (!drop[i]) continue;
        if (s->dim[i] == IR_DIM_N)
            has_n = true;
        else
            n *= (double)s->dim[i];
    }
    int c = cst(ad, n);
    if (!has_n) return c;
    struct type tn = {DT_F32, {1, {IR_DIM_N}}};
    int ones = to_type(ad, OP_BROADCAST_TO, cst(ad, 1.0), tn);
    int batch = reduce(ad, OP_SUM, ones, NULL, 0, false);
    return n == 1 ? batch : op2(ad, OP_MUL, batch, c);
}

/* The number of elements a reduction node `id` folds into each result. */
static int reduced_count(struct ad *ad, int id) {
    bool drop[IR_MAX_RANK];
    reduced_axes(ad, id, drop);
    return count_of(ad, &ty(ad, nd(ad, id)->args[0])->shape, drop);
}

/* --------------------------------------------------------- accumulation */

static bool want(struct ad *ad, int id, int i) { return ad->needs[nd(ad, id)->args[i]]; }

/* Add g into the gradient of node x; g must have x's type. */
static void acc(struct ad *ad, int x, int g) {
    const struct type *tx = ty(ad, x), *tg = ty(ad, g);
    if (tx->dtype != tg->dtype || !shape_equal(&tx->shape, &tg->shape)) {
        char a[TYPE_STR_MAX], b[TYPE_STR_MAX];
        netc_internal_error(__FILE__, __LINE__, "autodiff: gradient %s for a value of type %s",
                            type_str(tg, b, sizeof b), type_str(tx, a, sizeof a));
    }
    ad->grad[x] = ad->grad[x] < 0 ? g : op2(ad, OP_ADD, ad->grad[x], g);
}

/* Add g into operand i of node id, summing broadcast dims down to its type. */
static void acc_arg(struct ad *ad, int id, int i, int g) {
    int x = nd(ad, id)->args[i];
    acc(ad, x, to_type(ad, OP_SUM_TO, g, *ty(ad, x)));
}

/* A per-channel vector [C] of a batch norm over x, shaped to broadcast along axis 1
 * of x: [C] for rank 2, [C, 1, ...] for higher ranks. */
static int per_channel(struct ad *ad, int v, const struct type *x) {
    struct type t = {DT_F32, {x->shape.rank - 1, {x->shape.dim[1], 1, 1, 1, 1}}};
    return to_type(ad, OP_RESHAPE, v, t);
}

/* ------------------------------------------------------- the rules: leaves */

/* Ops that pass nothing back (OF_NOGRAD, leaves, effects). PARAM gradients are
 * collected after the walk. */
static void grad_none(struct ad *ad, int id, int g) {}

#define grad_INPUT grad_none
#define grad_PARAM grad_none
#define grad_CONST grad_none
#define grad_ASSIGN grad_none

/* ------------------------------------------------------ elementwise unary */

static void grad_NEG(struct ad *ad, int id, int g) { acc_arg(ad, id, 0, op1(ad, OP_NEG, g)); }
static void grad_EXP(struct ad *ad, int id, int g) { acc_arg(ad, id, 0, op2(ad, OP_MUL, g, id)); }

static void grad_LOG(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, op2(ad, OP_DIV, g, nd(ad, id)->args[0]));
}

/* d sqrt(x) = dy / (2 y) */
static void grad_SQRT(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, op2(ad, OP_DIV, g, op2(ad, OP_MUL, id, cst(ad, 2.0))));
}

/* d |x| = dy * sign(x), sign(x) = (x > 0) - (0 > x); zero at 0. */
static void grad_ABS(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0], zero = cst(ad, 0.0);
    int sign = op2(ad, OP_SUB, op2(ad, OP_GREATER, x, zero), op2(ad, OP_GREATER, zero, x));
    acc_arg(ad, id, 0, op2(ad, OP_MUL, g, sign));
}

static void grad_RELU(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, op2(ad, OP_RELU_GRAD, nd(ad, id)->args[0], g));
}

static void grad_LEAKY_RELU(struct ad *ad, int id, int g) {
    double alpha = ir_attr_f(nd(ad, id), ATTR_ALPHA);
    int args[2] = {nd(ad, id)->args[0], g};
    int d = add(ad, OP_LEAKY_RELU_GRAD, args, 2);
    ir_attr_set_f(nd(ad, d), ATTR_ALPHA, alpha);
    acc_arg(ad, id, 0, fin(ad, d));
}

static void grad_SIGMOID(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, op2(ad, OP_SIGMOID_GRAD, id, g));
}
static void grad_TANH(struct ad *ad, int id, int g) { acc_arg(ad, id, 0, op2(ad, OP_TANH_GRAD, id, g)); }

/* d erf(x) = dy * 2/sqrt(pi) * exp(-x^2) */
static void grad_ERF(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0];
    int e = op1(ad, OP_EXP, op1(ad, OP_NEG, op2(ad, OP_MUL, x, x)));
    acc_arg(ad, id, 0, op2(ad, OP_MUL, g, op2(ad, OP_MUL, e, cst(ad, 1.1283791670955126))));
}

static void grad_GELU(struct ad *ad, int id, int g) {
    int64_t approx = ir_attr_i(nd(ad, id), ATTR_APPROXIMATE);
    int args[2] = {nd(ad, id)->args[0], g};
    int d = add(ad, OP_GELU_GRAD, args, 2);
    ir_attr_set_i(nd(ad, d), ATTR_APPROXIMATE, approx);
    acc_arg(ad, id, 0, fin(ad, d));
}

#define grad_STOP_GRADIENT grad_none
#define grad_CAST grad_none

/* y = sum_r w_r x_r over the ranks, and each rank's loss enters the job's loss
 * with its weight w_r, so a rank's adjoint of x is sum_r w_r dy_r: the same
 * reduction of dy (blocking, bucket -1). */
static void grad_ALLREDUCE(struct ad *ad, int id, int g) {
    int d = add(ad, OP_ALLREDUCE, &g, 1);
    ir_attr_set_i(nd(ad, d), ATTR_BUCKET, -1);
    acc_arg(ad, id, 0, fin(ad, d));
}

/* y = sum of x_r over the ranks holding items; a rank's adjoint of x is again
 * sum_r w_r dy_r (zero weight for a stand-in, which adds nothing to y). */
static void grad_ALLREDUCE_SUM(struct ad *ad, int id, int g) { grad_ALLREDUCE(ad, id, g); }

/* ----------------------------------------------------- elementwise binary */

static bool layernorm_affine(struct ad *ad, int id, int g);

static void grad_ADD(struct ad *ad, int id, int g) {
    if (layernorm_affine(ad, id, g)) return;
    if (want(ad, id, 0)) acc_arg(ad, id, 0, g);
    if (want(ad, id, 1)) acc_arg(ad, id, 1, g);
}

static void grad_SUB(struct ad *ad, int id, int g) {
    if (want(ad, id, 0)) acc_arg(ad, id, 0, g);
    if (want(ad, id, 1)) acc_arg(ad, id, 1, op1(ad, OP_NEG, g));
}

static void grad_MUL(struct ad *ad, int id, int g) {
    int a = nd(ad, id)->args[0], b = nd(ad, id)->args[1];
    if (want(ad, id, 0)) acc_arg(ad, id, 0, op2(ad, OP_MUL, g, b));
    if (want(ad, id, 1)) acc_arg(ad, id, 1, op2(ad, OP_MUL, g, a));
}

/* y = a / b: da = dy / b, db = -dy * y / b. */
static void grad_DIV(struct ad *ad, int id, int g) {
    int b = nd(ad, id)->args[1];
    if (want(ad, id, 0)) acc_arg(ad, id, 0, op2(ad, OP_DIV, g, b));
    if (want(ad, id, 1)) acc_arg(ad, id, 1, op1(ad, OP_NEG, op2(ad, OP_DIV, op2(ad, OP_MUL, g, id), b)));
}

/* The larger operand takes the gradient; on a tie it goes to b. */
static void grad_MAXIMUM(struct ad *ad, int id, int g) {
    int a = nd(ad, id)->args[0], b = nd(ad, id)->args[1];
    int da = op2(ad, OP_MUL, g, op2(ad, OP_GREATER, a, b));
    if (want(ad, id, 0)) acc_arg(ad, id, 0, da);
    if (want(ad, id, 1)) acc_arg(ad, id, 1, op2(ad, OP_SUB, g, da));
}

/* y = a^b: da = dy * b * a^(b-1), db = dy * y * log(a). */
static void grad_POW(struct ad *ad, int id, int g) {
    int a = nd(ad, id)->args[0], b = nd(ad, id)->args[1];
    if (want(ad, id, 0)) {
        int p = op2(ad, OP_POW, a, op2(ad, OP_SUB, b, cst(ad, 1.0)));
        acc_arg(ad, id, 0, op2(ad, OP_MUL, op2(ad, OP_MUL, g, b), p));
    }
    if (want(ad, id, 1)) acc_arg(ad, id, 1, op2(ad, OP_MUL, op2(ad, OP_MUL, g, id), op1(ad, OP_LOG, a)));
}

#define grad_GREATER grad_none
#define grad_RELU_GRAD grad_none
#define grad_LEAKY_RELU_GRAD grad_none
#define grad_SIGMOID_GRAD grad_none
#define grad_TANH_GRAD grad_none
#define grad_GELU_GRAD grad_none
#define grad_GELU_DERIV grad_none

/* x[..., c, ...] + b[c]: db sums every axis but `axis`. */
static void grad_BIAS_ADD(struct ad *ad, int id, int g) {
    if (want(ad, id, 0)) acc_arg(ad, id, 0, g);
    if (want(ad, id, 1)) {
        int64_t axis = ir_attr_i(nd(ad, id), ATTR_AXIS), axes[IR_MAX_RANK];
        int count = 0;
        for (int i = 0; i < ty(ad, id)->shape.rank; i++)
            if (i != axis) axes[count++] = i;
        int db = count ? reduce(ad, OP_SUM, g, axes, count, false) : g;
        acc_arg(ad, id, 1, db);
    }
}

/* ------------------------------------------------------------ reductions */

static void grad_SUM(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0];
    int k = keepdims_of(ad, id, g);
    acc_arg(ad, id, 0, to_type(ad, OP_BROADCAST_TO, k, *ty(ad, x)));
}

static void grad_MEAN(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0];
    int scaled = op2(ad, OP_DIV, g, reduced_count(ad, id));
    int k = keepdims_of(ad, id, scaled);
    acc_arg(ad, id, 0, to_type(ad, OP_BROADCAST_TO, k, *ty(ad, x)));
}

/* The gradient is shared evenly among the elements equal to the maximum:
 * mask = 1 - (max > x), dx = dy * mask / sum(mask). */
static void grad_MAX(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0];
    int count;
    const int64_t *axes = ir_attr_v(nd(ad, id), ATTR_AXES, &count);
    int64_t ax[IR_MAX_LIST];
    memcpy(ax, axes, sizeof *ax * (size_t)count);
    int mx = keepdims_of(ad, id, id);
    int mask = op2(ad, OP_SUB, cst(ad, 1.0), op2(ad, OP_GREATER, mx, x));
    int ties = reduce(ad, OP_SUM, mask, ax, count, true);
    int share = op2(ad, OP_DIV, keepdims_of(ad, id, g), ties);
    acc_arg(ad, id, 0, op2(ad, OP_MUL, mask, share));
}

/* Population variance: dx = dy * 2 (x - mean) / count (the mean's own gradient
 * vanishes because x - mean sums to zero). */
static void grad_VARIANCE(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0];
    int count;
    const int64_t *axes = ir_attr_v(nd(ad, id), ATTR_AXES, &count);
    int64_t ax[IR_MAX_LIST];
    memcpy(ax, axes, sizeof *ax * (size_t)count);
    int d = op2(ad, OP_SUB, x, reduce(ad, OP_MEAN, x, ax, count, true));
    int k = op2(ad, OP_DIV, op2(ad, OP_MUL, g, cst(ad, 2.0)), reduced_count(ad, id));
    acc_arg(ad, id, 0, op2(ad, OP_MUL, d, keepdims_of(ad, id, k)));
}

#define grad_ARGMAX grad_none

static void grad_SUM_TO(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0];
    acc_arg(ad, id, 0, to_type(ad, OP_BROADCAST_TO, g, *ty(ad, x)));
}

static void grad_BROADCAST_TO(struct ad *ad, int id, int g) { acc_arg(ad, id, 0, g); }

/* ---------------------------------------------------------------- matmul */

static int matmul(struct ad *ad, int a, int b, bool ta, bool tb) {
    int args[2] = {a, b};
    int id = add(ad, OP_MATMUL, args, 2);
    ir_attr_set_i(nd(ad, id), ATTR_TRANSPOSE_A, ta);
    ir_attr_set_i(nd(ad, id), ATTR_TRANSPOSE_B, tb);
    return fin(ad, id);
}

/* A matrix product whose batch is summed away when the operand being
 * differentiated (`own`) is a matrix shared by the whole batch (rank 2, the
 * other operand carrying all of the result's batch dims): one matmul_bsum
 * instead of a batch of products and a sum_to. */
static int matmul_to(struct ad *ad, int own, int a, int b, bool ta, bool tb) {
    bool shared = ty(ad, own)->shape.rank == 2 && ty(ad, a)->shape.rank >= 3 &&
                  ty(ad, a)->shape.rank == ty(ad, b)->shape.rank;
    for (int i = 0; shared && i < ty(ad, a)->shape.rank - 2; i++)
        shared = ty(ad, a)->shape.dim[i] == ty(ad, b)->shape.dim[i];
    if (!shared) return matmul(ad, a, b, ta, tb);
    int args[2] = {a, b};
    int id = add(ad, OP_MATMUL_BSUM, args, 2);
    ir_attr_set_i(nd(ad, id), ATTR_TRANSPOSE_A, ta);
    ir_attr_set_i(nd(ad, id), ATTR_TRANSPOSE_B, tb);
    return fin(ad, id);
}

/* C = op(A) op(B) with op = identity or transpose; each case by the product rule. */
static void grad_MATMUL(struct ad *ad, int id, int g) {
    int a = nd(ad, id)->args[0], b = nd(ad, id)->args[1];
    bool ta = ir_attr_i(nd(ad, id), ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(nd(ad, id), ATTR_TRANSPOSE_B) != 0;
    if (want(ad, id, 0)) {
        int da = !ta ? matmul_to(ad, a, g, b, false, !tb) /* g op(B)^T */
                     : matmul_to(ad, a, b, g, tb, true);  /* op(B) g^T */
        acc_arg(ad, id, 0, da);
    }
    if (want(ad, id, 1)) {
        int db = !tb ? matmul_to(ad, b, a, g, !ta, false) /* op(A)^T g */
                     : matmul_to(ad, b, g, a, true, ta);  /* g^T op(A) */
        acc_arg(ad, id, 1, db);
    }
}

#define grad_MATMUL_BSUM grad_none

/* ----------------------------------------------------------------- shape */

static void grad_RESHAPE(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, to_type(ad, OP_RESHAPE, g, *ty(ad, nd(ad, id)->args[0])));
}

static void grad_TRANSPOSE(struct ad *ad, int id, int g) {
    int count;
    const int64_t *perm = ir_attr_v(nd(ad, id), ATTR_PERM, &count);
    int64_t inv[IR_MAX_LIST];
    for (int i = 0; i < count; i++) inv[perm[i]] = i;
    int t = add(ad, OP_TRANSPOSE, &g, 1);
    ir_attr_set_v(nd(ad, t), ATTR_PERM, inv, count);
    acc_arg(ad, id, 0, fin(ad, t));
}

static int pad(struct ad *ad, int a, int64_t axis, int64_t before, int64_t after) {
    if (before == 0 && after == 0) return a;
    int id = add(ad, OP_PAD, &a, 1);
    ir_attr_set_i(nd(ad, id), ATTR_AXIS, axis);
    ir_attr_set_i(nd(ad, id), ATTR_BEFORE, before);
    ir_attr_set_i(nd(ad, id), ATTR_AFTER, after);
    return fin(ad, id);
}

static int slice(struct ad *ad, int a, int64_t axis, int64_t start, int64_t size) {
    if (start == 0 && size == ty(ad, a)->shape.dim[axis]) return a;
    return ir_build_slice(&ad->b, a, axis, start, size);
}

static void grad_SLICE(struct ad *ad, int id, int g) {
    int64_t axis = ir_attr_i(nd(ad, id), ATTR_AXIS), start = ir_attr_i(nd(ad, id), ATTR_START);
    int64_t size = ir_attr_i(nd(ad, id), ATTR_SIZE);
    int64_t dim = ty(ad, nd(ad, id)->args[0])->shape.dim[axis];
    acc_arg(ad, id, 0, pad(ad, g, axis, start, dim - start - size));
}

static void grad_PAD(struct ad *ad, int id, int g) {
    int64_t axis = ir_attr_i(nd(ad, id), ATTR_AXIS), before = ir_attr_i(nd(ad, id), ATTR_BEFORE);
    acc_arg(ad, id, 0, slice(ad, g, axis, before, ty(ad, nd(ad, id)->args[0])->shape.dim[axis]));
}

static void grad_CONCAT(struct ad *ad, int id, int g) {
    int64_t axis = ir_attr_i(nd(ad, id), ATTR_AXIS), start = 0;
    for (int i = 0; i < nd(ad, id)->nargs; i++) {
        int64_t size = ty(ad, nd(ad, id)->args[i])->shape.dim[axis];
        if (want(ad, id, i)) acc_arg(ad, id, i, slice(ad, g, axis, start, size));
        start += size;
    }
}

/* --------------------------------------------------------------- softmax */

static int with_axis(struct ad *ad, enum op op, int a, int b, int64_t axis) {
    int args[2] = {a, b};
    int id = add(ad, op, args, 2);
    ir_attr_set_i(nd(ad, id), ATTR_AXIS, axis);
    return fin(ad, id);
}

static void grad_SOFTMAX(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, with_axis(ad, OP_SOFTMAX_GRAD, id, g, ir_attr_i(nd(ad, id), ATTR_AXIS)));
}

static void grad_LOG_SOFTMAX(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, with_axis(ad, OP_LOG_SOFTMAX_GRAD, id, g, ir_attr_i(nd(ad, id), ATTR_AXIS)));
}

/* y = softmax(scale * x + mask): dx = scale * softmax_grad(y, dy); left-out
 * entries have y = 0 and so no gradient. */
static void grad_ATTN_SOFTMAX(struct ad *ad, int id, int g) {
    double scale = ir_attr_f(nd(ad, id), ATTR_SCALE);
    int d = with_axis(ad, OP_SOFTMAX_GRAD, id, g, ty(ad, id)->shape.rank - 1);
    acc_arg(ad, id, 0, scale == 1.0 ? d : op2(ad, OP_MUL, d, cst(ad, scale)));
}

/* y = ATTENTION(qkv): dqkv = ATTENTION_GRAD(qkv, y, dy), which recomputes the
 * attention weights from q and k (y gives each row's sum(dy y)). */
static void grad_ATTENTION(struct ad *ad, int id, int g) {
    const struct ir_node *n = nd(ad, id);
    int64_t heads = ir_attr_i(n, ATTR_HEADS), causal = ir_attr_i(n, ATTR_CAUSAL);
    double scale = ir_attr_f(n, ATTR_SCALE);
    int d = add(ad, OP_ATTENTION_GRAD, (int[]){n->args[0], id, g}, 3);
    ir_attr_set_i(nd(ad, d), ATTR_HEADS, heads);
    ir_attr_set_f(nd(ad, d), ATTR_SCALE, scale);
    ir_attr_set_i(nd(ad, d), ATTR_CAUSAL, causal);
    acc_arg(ad, id, 0, fin(ad, d));
}

#define grad_ATTENTION_GRAD grad_none
#define grad_SOFTMAX_GRAD grad_none
#define grad_LOG_SOFTMAX_GRAD grad_none

/* ---------------------------------------------------------------- losses */

/* The losses are means over every element of the prediction (CROSS_ENTROPY: over
 * the batch). Their *_GRAD ops give d/dprediction; the rarely needed d/dtarget is
 * built from plain ops, scaled by g / count (count_of: N is computed at run time). */
static int loss_scale(struct ad *ad, int id, int g, bool batch_only) {
    const struct shape *p = &ty(ad, nd(ad, id)->args[0])->shape;
    bool drop[IR_MAX_RANK];
    for (int i = 0; i < IR_MAX_RANK; i++) drop[i] = i < p->rank && (!batch_only || i == 0);
    return op2(ad, OP_DIV, g, count_of(ad, p, drop));
}

static void loss_pred(struct ad *ad, int id, int g, enum op grad_op) {
    if (want(ad, id, 0)) acc_arg(ad, id, 0, op3(ad, grad_op, nd(ad, id)->args[0], nd(ad, id)->args[1], g));
}

/* MSE is symmetric in its operands up to sign. */
static void grad_MSE(struct ad *ad, int id, int g) {
    loss_pred(ad, id, g, OP_MSE_GRAD);
    if (want(ad, id, 1))
        acc_arg(ad, id, 1,
                op1(ad, OP_NEG, op3(ad, OP_MSE_GRAD, nd(ad, id)->args[0], nd(ad, id)->args[1], g)));
}

/* Probability targets: d/dt of -sum_c t_c log_softmax(x)_c, averaged over the batch. */
static void grad_CROSS_ENTROPY(struct ad *ad, int id, int g) {
    loss_pred(ad, id, g, OP_CROSS_ENTROPY_GRAD);
    if (want(ad, id, 1) && ty(ad, nd(ad, id)->args[1])->dtype == DT_F32) {
        int ls = add(ad, OP_LOG_SOFTMAX, &nd(ad, id)->args[0], 1);
        ir_attr_set_i(nd(ad, ls), ATTR_AXIS, 1);
        fin(ad, ls);
        acc_arg(ad, id, 1, op2(ad, OP_MUL, op1(ad, OP_NEG, ls), loss_scale(ad, id, g, true)));
    }
}

/* d/dt of -(t log p + (1 - t) log(1 - p)) = log(1 - p) - log(p) (clamps ignored). */
static void grad_BCE(struct ad *ad, int id, int g) {
    loss_pred(ad, id, g, OP_BCE_GRAD);
    if (want(ad, id, 1)) {
        int p = nd(ad, id)->args[0];
        int d = op2(ad, OP_SUB, op1(ad, OP_LOG, op2(ad, OP_SUB, cst(ad, 1.0), p)), op1(ad, OP_LOG, p));
        acc_arg(ad, id, 1, op2(ad, OP_MUL, d, loss_scale(ad, id, g, false)));
    }
}

/* d/dt of max(x, 0) - x t + log(1 + exp(-|x|)) = -x. */
static void grad_BCE_LOGITS(struct ad *ad, int id, int g) {
    loss_pred(ad, id, g, OP_BCE_LOGITS_GRAD);
    if (want(ad, id, 1))
        acc_arg(ad, id, 1,
                op2(ad, OP_MUL, op1(ad, OP_NEG, nd(ad, id)->args[0]), loss_scale(ad, id, g, false)));
}

/* d/dt of max(0, 1 - t s) = -s where 1 - t s > 0. */
static void grad_HINGE(struct ad *ad, int id, int g) {
    loss_pred(ad, id, g, OP_HINGE_GRAD);
    if (want(ad, id, 1)) {
        int s = nd(ad, id)->args[0], t = nd(ad, id)->args[1];
        int one = cst(ad, 1.0);
        int active = op2(ad, OP_GREATER, one, op2(ad, OP_MUL, t, s));
        int d = op1(ad, OP_NEG, op2(ad, OP_MUL, s, active));
        acc_arg(ad, id, 1, op2(ad, OP_MUL, d, loss_scale(ad, id, g, false)));
    }
}

#define grad_MSE_GRAD grad_none
#define grad_CROSS_ENTROPY_GRAD grad_none
#define grad_BCE_GRAD grad_none
#define grad_BCE_LOGITS_GRAD grad_none
#define grad_HINGE_GRAD grad_none
#define grad_ACCURACY grad_none

static int with_ignore(struct ad *ad, int id, int d) {
    int64_t v = ir_attr_i(nd(ad, id), ATTR_IGNORE);
    ir_attr_set_i(nd(ad, d), ATTR_IGNORE, v);
    return fin(ad, d);
}

/* Only d/dlogits: the targets are i32. */
static void grad_MASKED_CROSS_ENTROPY(struct ad *ad, int id, int g) {
    if (!want(ad, id, 0)) return;
    int args[3] = {nd(ad, id)->args[0], nd(ad, id)->args[1], g};
    acc_arg(ad, id, 0, with_ignore(ad, id, add(ad, OP_MASKED_CROSS_ENTROPY_GRAD, args, 3)));
}

#define grad_MASKED_CROSS_ENTROPY_GRAD grad_none
#define grad_MASKED_ACCURACY grad_none

/* ----------------------------------------------------------- convolution */

/* A node of the conv2d family with the attributes of conv node `from`; `t`, when
 * given, is its preset type (the *_GRAD_* ops take their shape from the node). */
static int conv_like(struct ad *ad, enum op op, int a, int b, int from, const struct type *t) {
    int args[2] = {a, b};
    struct type copy = t ? *t : (struct type){DT_F32, {0, {0}}}; /* before add() moves the nodes */
    int id = add(ad, op, args, 2);
    const struct attr_v names[] = {ATTR_STRIDE, ATTR_PAD, ATTR_DILATION};
    for (int i = 0; i < 3; i++) {
        int count;
        const int64_t *v = ir_attr_v(nd(ad, from), names[i], &count);
        int64_t copy[4];
        memcpy(copy, v, sizeof *v * (size_t)count);
        ir_attr_set_v(nd(ad, id), names[i], copy, count);
    }
    ir_attr_set_i(nd(ad, id), ATTR_GROUPS, ir_attr_i(nd(ad, from), ATTR_GROUPS));
    if (t) nd(ad, id)->type = copy;
    return fin(ad, id);
}

static void grad_CONV2D(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0], w = nd(ad, id)->args[1];
    if (want(ad, id, 0)) acc_arg(ad, id, 0, conv_like(ad, OP_CONV2D_GRAD_INPUT, g, w, id, ty(ad, x)));
    if (want(ad, id, 1)) acc_arg(ad, id, 1, conv_like(ad, OP_CONV2D_GRAD_WEIGHT, x, g, id, ty(ad, w)));
}

#define grad_CONV2D_GRAD_INPUT grad_none
#define grad_CONV2D_GRAD_WEIGHT grad_none
#define grad_CONV2D_GRAD_WEIGHT_MAXPOOL grad_none

/* conv_transpose2d(x, w) is the adjoint of conv2d(., w) with the same attributes
 * (w [in, out/groups, kh, kw] read as a conv2d weight [O, I/groups, kh, kw] that
 * maps the transposed conv's output back to its input): y = C_w^T x. Hence
 * dx = C_w g = conv2d(g, w), and since <g, C_w^T x> = <C_w g, x>,
 * dw = conv2d_grad_weight(g, x). When output_pad >= stride (possible with
 * dilation), conv2d(g, w) has extra trailing rows/cols: dx drops them and x is
 * padded with zeros to match for dw. */
static void grad_CONV_TRANSPOSE2D(struct ad *ad, int id, int g) {
    int x = nd(ad, id)->args[0], w = nd(ad, id)->args[1];
    int c = conv_like(ad, OP_CONV2D, g, w, id, NULL);
    int64_t extra[2];
    for (int i = 0; i < 2; i++) extra[i] = ty(ad, c)->shape.dim[2 + i] - ty(ad, x)->shape.dim[2 + i];
    NETC_ASSERT(extra[0] >= 0 && extra[1] >= 0);
    if (want(ad, id, 0)) {
        int dx = slice(ad, slice(ad, c, 2, 0, ty(ad, x)->shape.dim[2]), 3, 0, ty(ad, x)->shape.dim[3]);
        acc_arg(ad, id, 0, dx);
    }
    if (want(ad, id, 1)) {
        int xp = pad(ad, pad(ad, x, 2, 0, extra[0]), 3, 0, extra[1]);
        acc_arg(ad, id, 1, conv_like(ad, OP_CONV2D_GRAD_WEIGHT, g, xp, id, ty(ad, w)));
    }
}

/* --------------------------------------------------------------- pooling */

static int pool_grad(struct ad *ad, enum op op, int id, int g) {
    int args[2] = {nd(ad, id)->args[0], g};
    int d = add(ad, op, args, 2);
    const struct attr_v names[] = {ATTR_KERNEL, ATTR_STRIDE, ATTR_PAD};
    for (int i = 0; i < 3; i++) {
        int count;
        const int64_t *v = ir_attr_v(nd(ad, id), names[i], &count);
        int64_t copy[4];
        memcpy(copy, v, sizeof *v * (size_t)count);
        ir_attr_set_v(nd(ad, d), names[i], copy, count);
    }
    return fin(ad, d);
}

static void grad_MAXPOOL2D(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, pool_grad(ad, OP_MAXPOOL2D_GRAD, id, g));
}
static void grad_AVGPOOL2D(struct ad *ad, int id, int g) {
    acc_arg(ad, id, 0, pool_grad(ad, OP_AVGPOOL2D_GRAD, id, g));
}

#define grad_MAXPOOL2D_GRAD grad_none
#define grad_AVGPOOL2D_GRAD grad_none

static void grad_UPSAMPLE2D(struct ad *ad, int id, int g) {
    int d = add(ad, OP_UPSAMPLE2D_GRAD, &g, 1);
    int64_t scale[2];
    memcpy(scale, ir_attr_v(nd(ad, id), ATTR_FACTOR, NULL), sizeof scale);
    ir_attr_set_v(nd(ad, d), ATTR_FACTOR, scale, 2);
    acc_arg(ad, id, 0, fin(ad, d));
}

#define grad_UPSAMPLE2D_GRAD grad_none

/* ---------------------------------------------------------------- tokens */

/* d table = the rows of dy added into their ids' rows; the ids (i32) get none. */
static void grad_EMBEDDING(struct ad *ad, int id, int g) {
    if (!want(ad, id, 0)) return;
    int64_t rows = ty(ad, nd(ad, id)->args[0])->shape.dim[0];
    int args[2] = {nd(ad, id)->args[1], g};
    int d = add(ad, OP_EMBEDDING_GRAD, args, 2);
    ir_attr_set_i(nd(ad, d), ATTR_ROWS, rows);
    acc_arg(ad, id, 0, fin(ad, d));
}

#define grad_EMBEDDING_GRAD grad_none
#define grad_ONE_HOT grad_none

static int with_pad(struct ad *ad, int id, int d) {
    int64_t v = ir_attr_i(nd(ad, id), ATTR_PAD_ID);
    ir_attr_set_i(nd(ad, d), ATTR_PAD_ID, v);
    return fin(ad, d);
}

static void grad_MASKED_MEAN(struct ad *ad, int id, int g) {
    if (!want(ad, id, 0)) return;
    int args[2] = {nd(ad, id)->args[1], g};
    acc_arg(ad, id, 0, with_pad(ad, id, add(ad, OP_MASKED_MEAN_GRAD, args, 2)));
}

static void grad_MASKED_MAX(struct ad *ad, int id, int g) {
    if (!want(ad, id, 0)) return;
    int args[3] = {nd(ad, id)->args[0], nd(ad, id)->args[1], g};
    acc_arg(ad, id, 0, with_pad(ad, id, add(ad, OP_MASKED_MAX_GRAD, args, 3)));
}

#define grad_MASKED_MEAN_GRAD grad_none
#define grad_MASKED_MAX_GRAD grad_none

/* ---------------------------------------------------- dropout, batchnorm */

/* The same (rate, seed) regenerate the same mask. */
static void grad_DROPOUT(struct ad *ad, int id, int g) {
    double rate = ir_attr_f(nd(ad, id), ATTR_RATE);
    int64_t seed = ir_attr_i(nd(ad, id), ATTR_SEED);
    int d = add(ad, OP_DROPOUT_GRAD, &g, 1);
    ir_attr_set_f(nd(ad, d), ATTR_RATE, rate);
    ir_attr_set_i(nd(ad, d), ATTR_SEED, seed);
    acc_arg(ad, id, 0, fin(ad, d));
}

#define grad_DROPOUT_GRAD grad_none

/* Whether node s is op (MEAN or VARIANCE) of x over every axis but 1, as the
 * frontend lowers a batch norm in training mode. */
static bool batch_stat(struct ad *ad, int s, enum op op, int x) {
    const struct ir_node *n = nd(ad, s);
    if (n->op != op || n->args[0] != x || ir_attr_i(n, ATTR_KEEPDIMS)) return false;
    int count, rank = ty(ad, x)->shape.rank;
    const int64_t *axes = ir_attr_v(n, ATTR_AXES, &count);
    if (count != rank - 1) return false;
    for (int i = 0; i < count; i++)
        if (axes[i] != (i == 0 ? 0 : i + 1)) return false;
    return true;
}

/* Training mode (mean and var the batch's own): dx, through the statistics
 * too, by BATCHNORM_GRAD; dgamma and dbeta from the same BATCHNORM_GRAD_SUMS.
 * Nothing goes to mean and var: their part of dx is already in it. */
static void grad_batchnorm_train(struct ad *ad, int id, int g, int r) {
    const int *a = nd(ad, id)->args;
    int x = a[0], gamma = a[1], mean = a[3], var = a[4];
    double eps = ir_attr_f(nd(ad, id), ATTR_EPS);
    int64_t ch = ty(ad, x)->shape.dim[1];
    struct type tc = {DT_F32, {1, {ch}}};
    int sums = fin(ad, add(ad, OP_BATCHNORM_GRAD_SUMS, (int[]){x, g, mean}, 3));
    if (want(ad, id, 0)) {
        int d = add(ad, OP_BATCHNORM_GRAD, (int[]){x, g, gamma, mean, var, sums}, 6);
        ir_attr_set_f(nd(ad, d), ATTR_EPS, eps);
        acc_arg(ad, id, 0, fin(ad, d));
    }
    if (want(ad, id, 1))
        acc_arg(ad, id, 1, op2(ad, OP_MUL, to_type(ad, OP_RESHAPE, slice(ad, sums, 0, 1, 1), tc), r));
    if (want(ad, id, 2)) acc_arg(ad, id, 2, to_type(ad, OP_RESHAPE, slice(ad, sums, 0, 0, 1), tc));
}

/* y = gamma (x - mean) r + beta with r = 1 / sqrt(var + eps), per channel (axis 1).
 * With S(.) the sum over every axis but 1:
 *   dx = dy gamma r          dgamma = S(dy (x - mean)) r     dbeta = S(dy)
 *   dmean = -S(dy) gamma r   dvar = -S(dy (x - mean)) gamma r^3 / 2
 * When mean and var are other values, their own rules carry dmean and dvar on
 * (the full batch-norm gradient by the chain rule); in training mode, where
 * they are MEAN/VARIANCE of x, the fused ops give the same in two passes. */
static void grad_BATCHNORM(struct ad *ad, int id, int g) {
    const int *a = nd(ad, id)->args;
    int x = a[0], gamma = a[1], mean = a[3], var = a[4];
    struct type tx = *ty(ad, x);
    double eps = ir_attr_f(nd(ad, id), ATTR_EPS);
    int64_t axes[IR_MAX_RANK];
    int count = 0;
    for (int i = 0; i < tx.shape.rank; i++)
        if (i != 1) axes[count++] = i;
    int r = op2(ad, OP_DIV, cst(ad, 1.0), op1(ad, OP_SQRT, op2(ad, OP_ADD, var, cst(ad, eps))));
    if (batch_stat(ad, mean, OP_MEAN, x) && batch_stat(ad, var, OP_VARIANCE, x)) {
        grad_batchnorm_train(ad, id, g, r);
        return;
    }
    int gr = op2(ad, OP_MUL, gamma, r);
    if (want(ad, id, 0)) acc_arg(ad, id, 0, op2(ad, OP_MUL, g, per_channel(ad, gr, &tx)));
    int sg = -1, sgx = -1;
    if (want(ad, id, 2) || want(ad, id, 3)) sg = reduce(ad, OP_SUM, g, axes, count, false);
    if (want(ad, id, 1) || want(ad, id, 4)) {
        int xc = op2(ad, OP_SUB, x, per_channel(ad, mean, &tx));
        sgx = reduce(ad, OP_SUM, op2(ad, OP_MUL, g, xc), axes, count, false);
    }
    if (want(ad, id, 1)) acc_arg(ad, id, 1, op2(ad, OP_MUL, sgx, r));
    if (want(ad, id, 2)) acc_arg(ad, id, 2, sg);
    if (want(ad, id, 3)) acc_arg(ad, id, 3, op1(ad, OP_NEG, op2(ad, OP_MUL, sg, gr)));
    if (want(ad, id, 4)) {
        int r3 = op2(ad, OP_MUL, op2(ad, OP_MUL, r, r), gr);
        acc_arg(ad, id, 4, op2(ad, OP_MUL, op2(ad, OP_MUL, sgx, r3), cst(ad, -0.5)));
    }
}

/* y = LAYERNORM(x): dx = LAYERNORM_GRAD(x, dy), which recomputes the row statistics. */
static void grad_LAYERNORM(struct ad *ad, int id, int g) {
    double eps = ir_attr_f(nd(ad, id), ATTR_EPS);
    int d = add(ad, OP_LAYERNORM_GRAD, (int[]){nd(ad, id)->args[0], g}, 2);
    ir_attr_set_f(nd(ad, d), ATTR_EPS, eps);
    acc_arg(ad, id, 0, fin(ad, d));
}

/* The forward nodes that read node x (as often as they name it). */
static int uses(struct ad *ad, int x) {
    int count = 0;
    for (int i = 0; i < ad->nfwd; i++)
        for (int a = 0; a < nd(ad, i)->nargs; a++) count += nd(ad, i)->args[a] == x;
    return count;
}

/* Whether node v is f32[d]: a layer norm's gamma or beta. */
static bool is_vec(struct ad *ad, int v, int64_t d) {
    const struct type *t = ty(ad, v);
    return t->dtype == DT_F32 && t->shape.rank == 1 && t->shape.dim[0] == d;
}

/* o = ADD(MUL(y, gamma), beta) with y = LAYERNORM(x), as the frontend lowers
 * `layernorm` (y and the product read nowhere else; gamma, beta f32[D]): the
 * whole gradient by two ops, one pass over the rows each, instead of dy gamma,
 * S(dy y), S(dy) and LAYERNORM_GRAD in turn:
 *   sums = LAYERNORM_GRAD_SUMS(y, do)   dbeta = sums[0]   dgamma = sums[1]
 *   dx = LAYERNORM_GRAD(x, do, gamma)
 * The product and y get no gradient of their own, so the walk skips them.
 * False (nothing added) for any other ADD. */
static bool layernorm_affine(struct ad *ad, int id, int g) {
    int m = nd(ad, id)->args[0], beta = nd(ad, id)->args[1];
    if (nd(ad, m)->op != OP_MUL) return false;
    int y = nd(ad, m)->args[0], gamma = nd(ad, m)->args[1];
    if (nd(ad, y)->op != OP_LAYERNORM) y = gamma, gamma = nd(ad, m)->args[0];
    if (nd(ad, y)->op != OP_LAYERNORM || y == gamma) return false;
    const struct type *ty_ = ty(ad, y);
    int64_t d = ty_->shape.dim[ty_->shape.rank - 1];
    if (!is_vec(ad, gamma, d) || !is_vec(ad, beta, d) || !shape_equal(&ty(ad, id)->shape, &ty_->shape))
        return false;
    if (uses(ad, m) != 1 || uses(ad, y) != 1) return false;
    int x = nd(ad, y)->args[0];
    double eps = ir_attr_f(nd(ad, y), ATTR_EPS);
    struct type tv = {DT_F32, {1, {d}}};
    if (want(ad, id, 1) || ad->needs[gamma]) {
        int sums = fin(ad, add(ad, OP_LAYERNORM_GRAD_SUMS, (int[]){y, g}, 2));
        if (want(ad, id, 1)) acc(ad, beta, to_type(ad, OP_RESHAPE, slice(ad, sums, 0, 0, 1), tv));
        if (ad->needs[gamma]) acc(ad, gamma, to_type(ad, OP_RESHAPE, slice(ad, sums, 0, 1, 1), tv));
    }
    if (ad->needs[x]) {
        int dx = add(ad, OP_LAYERNORM_GRAD, (int[]){x, g, gamma}, 3);
        ir_attr_set_f(nd(ad, dx), ATTR_EPS, eps);
        acc(ad, x, fin(ad, dx));
    }
    return true;
}

#define grad_LAYERNORM_GRAD grad_none
#define grad_LAYERNORM_GRAD_SUMS grad_none
#define grad_BATCHNORM_GRAD_SUMS grad_none
#define grad_BATCHNORM_GRAD grad_none

/* ------------------------------------------------------------- recurrent */

/* A recurrent op with the cell and direction of RNN node `from`. */
static int rnn_like(struct ad *ad, enum op op, const int *args, int nargs, int from, int wrt) {
    int64_t cell = ir_attr_i(nd(ad, from), ATTR_CELL), rev = ir_attr_i(nd(ad, from), ATTR_REVERSE);
    int id = add(ad, op, args, nargs);
    ir_attr_set_i(nd(ad, id), ATTR_CELL, cell);
    ir_attr_set_i(nd(ad, id), ATTR_REVERSE, rev);
    if (wrt >= 0) ir_attr_set_i(nd(ad, id), ATTR_WRT, wrt);
    return fin(ad, id);
}

/* The gradient g of RNN node id as RNN_BPTT takes it: without the zero
 * padding that the gradients of slicing the final step (forward: T-1, reverse:
 * 0) and the state columns put around it, so a layer that returns its last
 * state passes [N, 1, H] and one that returns every state [N, T, H] instead
 * of [N, T, R*H] mostly zeros (docs/ir.md, "Recurrent ops"). */
static int rnn_dws(struct ad *ad, int id, int g) {
    int64_t rev = ir_attr_i(nd(ad, id), ATTR_REVERSE), steps = ty(ad, id)->shape.dim[1];
    int64_t h = ty(ad, nd(ad, id)->args[2])->shape.dim[1]; /* w_hh [G*H, H] */
    int64_t st = ir_rnn_state((int)ir_attr_i(nd(ad, id), ATTR_CELL)) * h;
    for (;;) {
        const struct ir_node *p = nd(ad, g);
        if (p->op != OP_PAD) return g;
        const struct shape *in = &ty(ad, p->args[0])->shape;
        int64_t axis = ir_attr_i(p, ATTR_AXIS), before = ir_attr_i(p, ATTR_BEFORE);
        bool cols = axis == 2 && before == 0 && in->dim[2] <= st;
        bool last = axis == 1 && in->dim[1] == 1 && before == (rev ? 0 : steps - 1);
        if (!cols && !last) return g;
        g = p->args[0];
    }
}

/* Backpropagation through time: RNN_BPTT turns the gradient of every step's
 * row into the gradients of every step's gate pre-activations and incoming
 * state, from which RNN_GRAD contracts each operand's gradient (x, the
 * weights and biases over all steps at once, s0 from the first step). */
static void grad_RNN(struct ad *ad, int id, int g) {
    int a[7];
    memcpy(a, nd(ad, id)->args, sizeof a);
    int dg = rnn_like(ad, OP_RNN_BPTT, (int[]){a[2], id, rnn_dws(ad, id, g), a[5], a[6]}, 5, id, -1);
    for (int i = 0; i < 6; i++)
        if (want(ad, id, i))
            acc_arg(ad, id, i, rnn_like(ad, OP_RNN_GRAD, (int[]){dg, a[0], a[1], a[2], id, a[5]}, 6, id, i));
}

#define grad_RNN_BPTT grad_none
#define grad_RNN_GRAD grad_none

/* ------------------------------------------------------------- the walk */

static const grad_fn grad_rule[OP_COUNT] = {
#define OP(name, arity, kind, flags, attrs) [OP_##name] = grad_##name,
#include "ir/ops.def"
#undef OP
};

/* Whether PARAM node n reads a trained parameter this function updates. */
static bool updated_param(struct ir_module *m, const struct ir_func *f, const struct ir_node *n) {
    if (n->op != OP_PARAM || !n->sym) return false;
    struct ir_buffer *b = ir_buffer_find(m, n->sym);
    if (!b || b->kind != BUF_PARAM) return false;
    if (vec_len(f->update) == 0) return true;
    for (size_t i = 0; i < vec_len(f->update); i++)
        if (b->group && f->update[i] && strcmp(b->group, f->update[i]) == 0) return true;
    return false;
}

static bool is_grad_target(struct ir_module *m, const struct ir_func *f, const struct ir_node *n,
                           bool inputs) {
    if (n->type.dtype != DT_F32) return false;
    if (updated_param(m, f, n)) return true;
    return inputs && n->op == OP_INPUT;
}

/* Add `grad.<buffer>` outputs for the targets that the loss reaches, summing over
 * every node that reads the same buffer. */
static void add_outputs(struct ad *ad, bool inputs) {
    struct ir_module *m = ad->b.m;
    for (size_t bi = 0; bi < vec_len(m->buffers); bi++) {
        const char *name = m->buffers[bi].name;
        int sum = -1;
        for (int i = 0; i < ad->nfwd; i++) {
            const struct ir_node *n = nd(ad, i);
            if (ad->grad[i] < 0 || !n->sym || strcmp(n->sym, name) != 0) continue;
            if (!is_grad_target(m, ad->b.f, n, inputs)) continue;
            ad->b.loc = n->loc;
            sum = sum < 0 ? ad->grad[i] : op2(ad, OP_ADD, sum, ad->grad[i]);
        }
        if (sum < 0) continue;
        char *out = arena_printf(m->arena, "grad.%s", name);
        ir_output_add(m, ad->b.f, out, sum);
    }
}

int pass_autodiff_func(struct ir_module *m, struct ir_func *f, bool inputs) {
    if (f->mode != MODE_TRAIN || !f->loss) return 0;
    /* Already differentiated: it has grad.* outputs, or (after optimizer lowering)
     * ASSIGNs to trained parameters. */
    for (size_t i = 0; i < vec_len(f->outputs); i++)
        if (strncmp(f->outputs[i].name, "grad.", 5) == 0) return 0;
    for (int i = 0; i < ir_func_len(f); i++) {
        const struct ir_node *n = &f->nodes[i];
        struct ir_buffer *b = n->op == OP_ASSIGN && n->sym ? ir_buffer_find(m, n->sym) : NULL;
        if (b && b->kind == BUF_PARAM) return 0;
    }
    int k = ir_output_find(f, f->loss);
    NETC_ASSERT(k >= 0);
    int loss = f->outputs[k].value, n = ir_func_len(f);
    struct ad ad = {{m, f, LOC_NONE, 0, "autodiff", NULL, NULL},
                    malloc(sizeof(int) * (size_t)n),
                    calloc((size_t)n, 1),
                    n};
    if (!ad.grad || !ad.needs) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        const struct ir_node *node = &f->nodes[i];
        ad.grad[i] = -1;
        if (is_grad_target(m, f, node, inputs)) ad.needs[i] = 1;
        if (node->type.dtype != DT_F32 || (op_info[node->op].flags & OF_NOGRAD)) continue;
        for (int a = 0; a < node->nargs; a++)
            if (ad.needs[node->args[a]]) ad.needs[i] = 1;
    }
    if (ad.needs[loss]) {
        ad.b.loc = f->nodes[loss].loc;
        ad.grad[loss] = cst(&ad, 1.0);
        for (int i = loss; i >= 0; i--) {
            if (ad.grad[i] < 0 || !ad.needs[i]) continue;
            ad.b.loc = f->nodes[i].loc;
            grad_rule[f->nodes[i].op](&ad, i, ad.grad[i]);
        }
        add_outputs(&ad, inputs);
    }
    free(ad.grad);
    free(ad.needs);
    ir_func_dce(f);
    return ad.b.added;
}

int pass_autodiff(struct ir_module *m) {
    int changed = 0;
    for (size_t i = 0; i < vec_len(m->funcs); i++) changed += pass_autodiff_func(m, m->funcs[i], false);
    return changed;
}
