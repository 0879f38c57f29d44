/* ir/shape.c -- the shape rule of every op: from operand types and attributes to
 * the node's type, or a message naming the shapes that disagree. The rules are a
 * column of the op table: shape_rule[] is built from ops.def, so an op without a
 * shape_<NAME> function fails the build. Helpers come first, then the rules in the
 * order of ops.def, then ir_infer. */
#include "ir/ir.h"

#include <string.h>

/* What a rule sees: the module (for buffers), the node, its operand types. */
struct rule_ctx {
    struct ir_module *m;     /* for buffer look-ups */
    struct ir_node *n;       /* the node being typed; rules write n->type */
    const struct type *a[8]; /* operand types (first 8) */
    char *err;               /* message buffer */
    size_t errlen;           /* its size */
};

typedef bool (*shape_fn)(struct rule_ctx *c);

static bool fail(struct rule_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(struct rule_ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, c->errlen, fmt, ap);
    va_end(ap);
    return false;
}

/* Short-lived type strings for messages (a small ring of buffers). */
static const char *ts(const struct type *t) {
    static char ring[6][TYPE_STR_MAX];
    static int next;
    char *b = ring[next++ % 6];
    return type_str(t, b, TYPE_STR_MAX);
}

static const char *opname(const struct rule_ctx *c) { return op_info[c->n->op].name; }

static void set_type(struct rule_ctx *c, enum dtype dt, const struct shape *s) {
    c->n->type.dtype = dt;
    c->n->type.shape = *s;
}

static struct shape scalar_shape(void) {
    struct shape s;
    memset(&s, 0, sizeof s);
    return s;
}

static bool need_f32(struct rule_ctx *c, int i) {
    if (c->a[i]->dtype == DT_F32) return true;
    return fail(c, "%s expects an f32 operand, got %s", opname(c), ts(c->a[i]));
}

static bool same_shape(struct rule_ctx *c, int i, int j) {
    if (shape_equal(&c->a[i]->shape, &c->a[j]->shape)) return true;
    return fail(c, "%s expects operands of the same shape, got %s and %s", opname(c), ts(c->a[i]),
                ts(c->a[j]));
}

/* Numpy broadcasting of two shapes; false if they do not broadcast. */
static bool broadcast(const struct shape *x, const struct shape *y, struct shape *out) {
    int r = x->rank > y->rank ? x->rank : y->rank;
    out->rank = r;
    for (int i = 0; i < r; i++) {
        int xi = x->rank - r + i, yi = y->rank - r + i;
        int64_t dx = xi >= 0 ? x->dim[xi] : 1, dy = yi >= 0 ? y->dim[yi] : 1;
        if (dx == dy)
            out->dim[i] = dx;
        else if (dx == 1)
            out->dim[i] = dy;
        else if (dy == 1)
            out->dim[i] = dx;
        else
            return false;
    }
    return true;
}

static bool axis_ok(struct rule_ctx *c, int64_t axis, int rank) {
    if (axis >= 0 && axis < rank) return true;
    return fail(c, "%s: axis %lld is out of range for rank %d", opname(c), (long long)axis, rank);
}

/* The static size of dim `axis` of operand i, or a message if it is N. */
static bool static_dim(struct rule_ctx *c, int i, int axis, int64_t *out) {
    *out = c->a[i]->shape.dim[axis];
    if (*out != IR_DIM_N) return true;
    return fail(c, "%s cannot work along the batch dim N of %s", opname(c), ts(c->a[i]));
}

/* --------------------------------------------------------------- leaves */

static bool shape_buffer(struct rule_ctx *c, enum buf_kind kind) {
    static const char *const kinds[] = {"input", "param", "state"};
    if (!c->n->sym) return fail(c, "%s has no buffer name", opname(c));
    struct ir_buffer *b = ir_buffer_find(c->m, c->n->sym);
    if (!b) return fail(c, "%s refers to unknown buffer @%s", opname(c), c->n->sym);
    bool ok = kind == BUF_INPUT ? b->kind == BUF_INPUT : b->kind != BUF_INPUT;
    if (!ok)
        return fail(c, "%s refers to @%s, which is a%s %s", opname(c), b->name,
                    b->kind == BUF_INPUT ? "n" : "", kinds[b->kind]);
    c->n->type = b->type;
    return true;
}

static bool shape_INPUT(struct rule_ctx *c) { return shape_buffer(c, BUF_INPUT); }
static bool shape_PARAM(struct rule_ctx *c) { return shape_buffer(c, BUF_PARAM); }
static bool shape_CONST(struct rule_ctx *c) { return true; }

static bool shape_ASSIGN(struct rule_ctx *c) {
    if (!c->n->sym) return fail(c, "assign has no buffer name");
    struct ir_buffer *b = ir_buffer_find(c->m, c->n->sym);
    if (!b) return fail(c, "assign to unknown buffer @%s", c->n->sym);
    if (b->kind == BUF_INPUT) return fail(c, "assign to input @%s", b->name);
    if (b->type.dtype != c->a[0]->dtype || !shape_equal(&b->type.shape, &c->a[0]->shape))
        return fail(c, "assign of %s to @%s of type %s", ts(c->a[0]), b->name, ts(&b->type));
    c->n->type = *c->a[0];
    return true;
}

/* ----------------------------------------------------------- elementwise */

static bool unary_f32(struct rule_ctx *c) {
    if (!need_f32(c, 0)) return false;
    c->n->type = *c->a[0];
    return true;
}

static bool shape_NEG(struct rule_ctx *c) {
    c->n->type = *c->a[0];
    return true;
}
static bool shape_EXP(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_LOG(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_SQRT(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_ABS(struct rule_ctx *c) { return shape_NEG(c); }
static bool shape_RELU(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_LEAKY_RELU(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_SIGMOID(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_TANH(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_ERF(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_GELU(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_STOP_GRADIENT(struct rule_ctx *c) { return shape_NEG(c); }
static bool shape_ALLREDUCE(struct rule_ctx *c) { return unary_f32(c); }
static bool shape_ALLREDUCE_SUM(struct rule_ctx *c) { return unary_f32(c); }

static bool shape_CAST(struct rule_ctx *c) {
    /* The target dtype is the one already on the node. */
    c->n->type.shape = c->a[0]->shape;
    return true;
}

static bool binary(struct rule_ctx *c, enum dtype out) {
    if (c->a[0]->dtype != c->a[1]->dtype)
        return fail(c, "%s of different element types: %s and %s", opname(c), ts(c->a[0]), ts(c->a[1]));
    struct shape s;
    if (!broadcast(&c->a[0]->shape, &c->a[1]->shape, &s))
        return fail(c, "%s: shapes %s and %s do not broadcast", opname(c), ts(c->a[0]), ts(c->a[1]));
    set_type(c, out, &s);
    return true;
}

static bool shape_ADD(struct rule_ctx *c) { return binary(c, c->a[0]->dtype); }
static bool shape_SUB(struct rule_ctx *c) { return binary(c, c->a[0]->dtype); }
static bool shape_MUL(struct rule_ctx *c) { return binary(c, c->a[0]->dtype); }
static bool shape_DIV(struct rule_ctx *c) { return binary(c, c->a[0]->dtype); }
static bool shape_MAXIMUM(struct rule_ctx *c) { return binary(c, c->a[0]->dtype); }
static bool shape_POW(struct rule_ctx *c) { return need_f32(c, 0) && binary(c, DT_F32); }
static bool shape_GREATER(struct rule_ctx *c) { return binary(c, DT_F32); }

/* (x or y, dy) -> dx, all of one shape. */
static bool act_grad(struct rule_ctx *c) {
    if (!need_f32(c, 0) || !need_f32(c, 1) || !same_shape(c, 0, 1)) return false;
    c->n->type = *c->a[1];
    return true;
}

static bool shape_RELU_GRAD(struct rule_ctx *c) { return act_grad(c); }
static bool shape_LEAKY_RELU_GRAD(struct rule_ctx *c) { return act_grad(c); }
static bool shape_SIGMOID_GRAD(struct rule_ctx *c) { return act_grad(c); }
static bool shape_TANH_GRAD(struct rule_ctx *c) { return act_grad(c); }
static bool shape_GELU_GRAD(struct rule_ctx *c) { return act_grad(c); }
static bool shape_GELU_DERIV(struct rule_ctx *c) { return unary_f32(c); }

static bool shape_BIAS_ADD(struct rule_ctx *c) {
    int64_t axis = ir_attr_i(c->n, ATTR_AXIS);
    if (!need_f32(c, 0) || !need_f32(c, 1)) return false;
    if (!axis_ok(c, axis, c->a[0]->shape.rank)) return false;
    if (c->a[1]->shape.rank != 1 || c->a[1]->shape.dim[0] != c->a[0]->shape.dim[axis])
        return fail(c, "bias_add of %s to %s: the bias must be [%lld], the size of axis %lld", ts(c->a[1]),
                    ts(c->a[0]), (long long)c->a[0]->shape.dim[axis], (long long)axis);
    c->n->type = *c->a[0];
    return true;
}

/* ------------------------------------------------------------ reductions */

static bool reduce(struct rule_ctx *c, enum dtype out) {
    int count;
    const int64_t *axes = ir_attr_v(c->n, ATTR_AXES, &count);
    int64_t keep = ir_attr_i(c->n, ATTR_KEEPDIMS);
    const struct shape *in = &c->a[0]->shape;
    bool drop[IR_MAX_RANK] = {false};
    for (int i = 0; i < count; i++) {
        if (!axis_ok(c, axes[i], in->rank)) return false;
        if (drop[axes[i]]) return fail(c, "%s: axis %lld is listed twice", opname(c), (long long)axes[i]);
        drop[axes[i]] = true;
    }
    if (count == 0)
        for (int i = 0; i < in->rank; i++) drop[i] = true;
    struct shape s = scalar_shape();
    for (int i = 0; i < in->rank; i++) {
        if (!drop[i])
            s.dim[s.rank++] = in->dim[i];
        else if (keep)
            s.dim[s.rank++] = 1;
    }
    set_type(c, out, &s);
    return true;
}

static bool shape_SUM(struct rule_ctx *c) { return reduce(c, c->a[0]->dtype); }
static bool shape_MEAN(struct rule_ctx *c) { return need_f32(c, 0) && reduce(c, DT_F32); }
static bool shape_MAX(struct rule_ctx *c) { return reduce(c, c->a[0]->dtype); }
static bool shape_VARIANCE(struct rule_ctx *c) { return need_f32(c, 0) && reduce(c, DT_F32); }

static bool shape_ARGMAX(struct rule_ctx *c) {
    int64_t axis = ir_attr_i(c->n, ATTR_AXIS);
    const struct shape *in = &c->a[0]->shape;
    if (!axis_ok(c, axis, in->rank)) return false;
    struct shape s = scalar_shape();
    for (int i = 0; i < in->rank; i++)
        if (i != axis) s.dim[s.rank++] = in->dim[i];
    set_type(c, DT_I32, &s);
    return true;
}

static bool shape_SUM_TO(struct rule_ctx *c) {
    struct shape s;
    if (!broadcast(&c->n->type.shape, &c->a[0]->shape, &s) || !shape_equal(&s, &c->a[0]->shape))
        return fail(c, "sum_to: %s cannot be summed down to %s", ts(c->a[0]), ts(&c->n->type));
    c->n->type.dtype = c->a[0]->dtype;
    return true;
}

static bool shape_BROADCAST_TO(struct rule_ctx *c) {
    struct shape s;
    if (!broadcast(&c->n->type.shape, &c->a[0]->shape, &s) || !shape_equal(&s, &c->n->type.shape))
        return fail(c, "broadcast_to: %s does not broadcast to %s", ts(c->a[0]), ts(&c->n->type));
    c->n->type.dtype = c->a[0]->dtype;
    return true;
}

/* --------------------------------------------------------------- matmul */

/* torch.matmul on rank >= 2: the last two dims multiply (each optionally
 * transposed), the dims before them are batch dims that broadcast. */
static bool shape_MATMUL(struct rule_ctx *c) {
    const struct shape *sa = &c->a[0]->shape, *sb = &c->a[1]->shape;
    if (sa->rank < 2 || sb->rank < 2)
        return fail(c, "matmul expects operands of rank 2 or more, got %s and %s", ts(c->a[0]), ts(c->a[1]));
    if (!need_f32(c, 0) || !need_f32(c, 1)) return false;
    bool ta = ir_attr_i(c->n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(c->n, ATTR_TRANSPOSE_B) != 0;
    const int64_t *a = sa->dim + sa->rank - 2, *b = sb->dim + sb->rank - 2;
    int64_t m = ta ? a[1] : a[0], ka = ta ? a[0] : a[1];
    int64_t kb = tb ? b[1] : b[0], n = tb ? b[0] : b[1];
    if (ka != kb)
        return fail(c, "matmul of %s%s and %s%s: inner dimensions differ", ts(c->a[0]), ta ? "^T" : "",
                    ts(c->a[1]), tb ? "^T" : "");
    struct shape ba = *sa, bb = *sb, s;
    ba.rank -= 2, bb.rank -= 2;
    if (!broadcast(&ba, &bb, &s))
        return fail(c, "matmul of %s and %s: the batch dims do not broadcast", ts(c->a[0]), ts(c->a[1]));
    if (s.rank + 2 > IR_MAX_RANK) return fail(c, "matmul: the result has more than %d dims", IR_MAX_RANK);
    s.dim[s.rank] = m, s.dim[s.rank + 1] = n;
    s.rank += 2;
    int nn = 0;
    for (int i = 0; i < s.rank; i++) nn += s.dim[i] == IR_DIM_N;
    if (nn > 1)
        return fail(c, "matmul of %s and %s: the batch dim N would appear twice", ts(c->a[0]), ts(c->a[1]));
    set_type(c, DT_F32, &s);
    return true;
}

static bool shape_MATMUL_BSUM(struct rule_ctx *c) {
    const struct shape *sa = &c->a[0]->shape, *sb = &c->a[1]->shape;
    if (!need_f32(c, 0) || !need_f32(c, 1)) return false;
    bool same = sa->rank == sb->rank && sa->rank >= 3;
    for (int i = 0; same && i < sa->rank - 2; i++) same = sa->dim[i] == sb->dim[i];
    if (!same)
        return fail(c,
                    "matmul_bsum expects operands of rank 3 or more with the same batch dims, got %s and %s",
                    ts(c->a[0]), ts(c->a[1]));
    bool ta = ir_attr_i(c->n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(c->n, ATTR_TRANSPOSE_B) != 0;
    const int64_t *a = sa->dim + sa->rank - 2, *b = sb->dim + sb->rank - 2;
    if ((ta ? a[0] : a[1]) != (tb ? b[1] : b[0]))
        return fail(c, "matmul_bsum of %s%s and %s%s: inner dimensions differ", ts(c->a[0]), ta ? "^T" : "",
                    ts(c->a[1]), tb ? "^T" : "");
    struct shape s = {2, {ta ? a[1] : a[0], tb ? b[0] : b[1]}};
    int nn = (s.dim[0] == IR_DIM_N) + (s.dim[1] == IR_DIM_N);
    if (nn > 1) return fail(c, "matmul_bsum: the batch dim N would appear twice");
    set_type(c, DT_F32, &s);
    return true;
}

/* ----------------------------------------------------------------- shape */

static bool shape_RESHAPE(struct rule_ctx *c) {
    const struct shape *in = &c->a[0]->shape, *out = &c->n->type.shape;
    if (shape_has_n(in) != shape_has_n(out) || shape_static_numel(in) != shape_static_numel(out)) {
        struct type t = {c->a[0]->dtype, *out};
        return fail(c, "cannot reshape %s to %s: the sizes differ", ts(c->a[0]), ts(&t));
    }
    c->n->type.dtype = c->a[0]->dtype;
    return true;
}

static bool shape_TRANSPOSE(struct rule_ctx *c) {
    int count;
    const int64_t *perm = ir_attr_v(c->n, ATTR_PERM, &count);
    const struct shape *in = &c->a[0]->shape;
    if (count != in->rank)
        return fail(c, "transpose of %s needs a permutation of %d axes, got %d", ts(c->a[0]), in->rank,
                    count);
    bool seen[IR_MAX_RANK] = {false};
    struct shape s = scalar_shape();
    s.rank = in->rank;
    for (int i = 0; i < count; i++) {
        if (perm[i] < 0 || perm[i] >= in->rank || seen[perm[i]])
            return fail(c, "transpose: perm is not a permutation of 0..%d", in->rank - 1);
        seen[perm[i]] = true;
        s.dim[i] = in->dim[perm[i]];
    }
    set_type(c, c->a[0]->dtype, &s);
    return true;
}

static bool shape_SLICE(struct rule_ctx *c) {
    int64_t axis = ir_attr_i(c->n, ATTR_AXIS), start = ir_attr_i(c->n, ATTR_START),
            size = ir_attr_i(c->n, ATTR_SIZE);
    if (!axis_ok(c, axis, c->a[0]->shape.rank)) return false;
    int64_t dim;
    if (!static_dim(c, 0, (int)axis, &dim)) return false;
    if (start < 0 || size < 1 || start > dim || size > dim - start)
        return fail(c, "slice of %lld from %lld of axis %lld is outside %s", (long long)size,
                    (long long)start, (long long)axis, ts(c->a[0]));
    struct shape s = c->a[0]->shape;
    s.dim[axis] = size;
    set_type(c, c->a[0]->dtype, &s);
    return true;
}

static bool shape_PAD(struct rule_ctx *c) {
    int64_t axis = ir_attr_i(c->n, ATTR_AXIS), before = ir_attr_i(c->n, ATTR_BEFORE),
            after = ir_attr_i(c->n, ATTR_AFTER);
    if (!axis_ok(c, axis, c->a[0]->shape.rank)) return false;
    int64_t dim;
    if (!static_dim(c, 0, (int)axis, &dim)) return false;
    if (before < 0 || after < 0) return fail(c, "pad amounts must not be negative");
    struct shape s = c->a[0]->shape;
    if (__builtin_add_overflow(dim, before, &s.dim[axis]) ||
        __builtin_add_overflow(s.dim[axis], after, &s.dim[axis]))
        return fail(c, "pad of %lld and %lld makes axis %lld of %s too large", (long long)before,
                    (long long)after, (long long)axis, ts(c->a[0]));
    set_type(c, c->a[0]->dtype, &s);
    return true;
}

static bool shape_CONCAT(struct rule_ctx *c) {
    int64_t axis = ir_attr_i(c->n, ATTR_AXIS);
    if (!axis_ok(c, axis, c->a[0]->shape.rank)) return false;
    struct shape s = c->a[0]->shape;
    int64_t total = 0;
    int nargs = c->n->nargs < 8 ? c->n->nargs : 8;
    for (int i = 0; i < nargs; i++) {
        const struct type *t = c->a[i];
        if (t->dtype != c->a[0]->dtype || t->shape.rank != s.rank)
            return fail(c, "concat of %s and %s", ts(c->a[0]), ts(t));
        for (int d = 0; d < s.rank; d++)
            if (d != axis && t->shape.dim[d] != s.dim[d])
                return fail(c, "concat along axis %lld of %s and %s: other dims differ", (long long)axis,
                            ts(c->a[0]), ts(t));
        int64_t dim;
        if (!static_dim(c, i, (int)axis, &dim)) return false;
        total += dim;
    }
    if (c->n->nargs > 8) return fail(c, "concat takes at most 8 operands");
    s.dim[axis] = total;
    set_type(c, c->a[0]->dtype, &s);
    return true;
}

/* --------------------------------------------------------------- softmax */

static bool softmax_like(struct rule_ctx *c) {
    if (!need_f32(c, 0) || !axis_ok(c, ir_attr_i(c->n, ATTR_AXIS), c->a[0]->shape.rank)) return false;
    c->n->type = *c->a[0];
    return true;
}

static bool shape_SOFTMAX(struct rule_ctx *c) { return softmax_like(c); }
static bool shape_LOG_SOFTMAX(struct rule_ctx *c) { return softmax_like(c); }
static bool shape_SOFTMAX_GRAD(struct rule_ctx *c) { return softmax_like(c) && act_grad(c); }
static bool shape_LOG_SOFTMAX_GRAD(struct rule_ctx *c) { return softmax_like(c) && act_grad(c); }

/* Scores [..., Tq, Tk]: rank 2 or more, static last two dims. */
static bool shape_ATTN_SOFTMAX(struct rule_ctx *c) {
    const struct shape *s = &c->a[0]->shape;
    if (!need_f32(c, 0)) return false;
    if (s->rank < 2) return fail(c, "attn_softmax expects scores [..., Tq, Tk], got %s", ts(c->a[0]));
    if (!(ir_attr_f(c->n, ATTR_SCALE) > 0)) return fail(c, "attn_softmax needs a positive scale");
    int64_t d;
    if (!static_dim(c, 0, s->rank - 1, &d) || !static_dim(c, 0, s->rank - 2, &d)) return false;
    c->n->type = *c->a[0];
    return true;
}

/* qkv [B, T, 3E] with T and E static, E divisible by heads; the result [B, T, E]
 * (ATTENTION) or qkv's shape (ATTENTION_GRAD, whose y and dy are [B, T, E]). */
static bool attention_like(struct rule_ctx *c, struct shape *y) {
    const struct shape *s = &c->a[0]->shape;
    int64_t t, e3, h = ir_attr_i(c->n, ATTR_HEADS), causal = ir_attr_i(c->n, ATTR_CAUSAL);
    if (!need_f32(c, 0)) return false;
    if (s->rank != 3) return fail(c, "%s expects qkv [N, T, 3E], got %s", opname(c), ts(c->a[0]));
    if (!static_dim(c, 0, 1, &t) || !static_dim(c, 0, 2, &e3)) return false;
    if (h < 1 || e3 % (3 * h))
        return fail(c, "%s: qkv's last dim %lld is not a multiple of 3 * heads (%lld heads)", opname(c),
                    (long long)e3, (long long)h);
    if (!(ir_attr_f(c->n, ATTR_SCALE) > 0)) return fail(c, "%s needs a positive scale", opname(c));
    if (causal != 0 && causal != 1)
        return fail(c, "%s: causal must be 0 or 1, got %lld", opname(c), (long long)causal);
    *y = *s;
    y->dim[2] = e3 / 3;
    return true;
}

static bool shape_ATTENTION(struct rule_ctx *c) {
    struct shape y;
    if (!attention_like(c, &y)) return false;
    set_type(c, DT_F32, &y);
    return true;
}

static bool shape_ATTENTION_GRAD(struct rule_ctx *c) {
    struct shape y;
    if (!attention_like(c, &y) || !need_f32(c, 1) || !need_f32(c, 2) || !same_shape(c, 1, 2)) return false;
    if (!shape_equal(&c->a[1]->shape, &y))
        return fail(c, "%s: y and dy must be [N, T, E] for qkv %s, got %s", opname(c), ts(c->a[0]),
                    ts(c->a[1]));
    c->n->type = *c->a[0];
    return true;
}

/* ---------------------------------------------------------------- losses */

static bool scalar_out(struct rule_ctx *c) {
    struct shape s = scalar_shape();
    set_type(c, DT_F32, &s);
    return true;
}

static bool same_shape_loss(struct rule_ctx *c) {
    if (!need_f32(c, 0) || !need_f32(c, 1)) return false;
    if (!shape_equal(&c->a[0]->shape, &c->a[1]->shape))
        return fail(c, "%s of a prediction %s and a target %s: shapes differ", opname(c), ts(c->a[0]),
                    ts(c->a[1]));
    return scalar_out(c);
}

/* logits [N, C] with labels i32[N] or probabilities f32[N, C]. */
static bool class_target(struct rule_ctx *c) {
    const struct type *x = c->a[0], *y = c->a[1];
    if (x->shape.rank != 2 || x->dtype != DT_F32)
        return fail(c, "%s expects f32 scores of rank 2 [N, classes], got %s", opname(c), ts(x));
    if (y->dtype == DT_I32) {
        if (y->shape.rank != 1 || y->shape.dim[0] != x->shape.dim[0])
            return fail(c, "%s of scores %s needs i32 labels [%s], got %s", opname(c), ts(x),
                        x->shape.dim[0] == IR_DIM_N ? "N" : "batch", ts(y));
        return true;
    }
    if (!shape_equal(&x->shape, &y->shape))
        return fail(c, "%s of scores %s and target %s: shapes differ", opname(c), ts(x), ts(y));
    return true;
}

static bool shape_MSE(struct rule_ctx *c) { return same_shape_loss(c); }
static bool shape_CROSS_ENTROPY(struct rule_ctx *c) { return class_target(c) && scalar_out(c); }
static bool shape_BCE(struct rule_ctx *c) { return same_shape_loss(c); }
static bool shape_BCE_LOGITS(struct rule_ctx *c) { return same_shape_loss(c); }
static bool shape_HINGE(struct rule_ctx *c) { return same_shape_loss(c); }

/* (prediction, target, dloss) -> d prediction. */
static bool loss_grad(struct rule_ctx *c, shape_fn check) {
    if (c->a[2]->shape.rank != 0 || c->a[2]->dtype != DT_F32)
        return fail(c, "%s expects a scalar f32[] loss gradient, got %s", opname(c), ts(c->a[2]));
    if (!check(c)) return false;
    c->n->type = *c->a[0];
    return true;
}

static bool shape_MSE_GRAD(struct rule_ctx *c) { return loss_grad(c, same_shape_loss); }
static bool shape_CROSS_ENTROPY_GRAD(struct rule_ctx *c) { return loss_grad(c, class_target); }
static bool shape_BCE_GRAD(struct rule_ctx *c) { return loss_grad(c, same_shape_loss); }
static bool shape_BCE_LOGITS_GRAD(struct rule_ctx *c) { return loss_grad(c, same_shape_loss); }
static bool shape_HINGE_GRAD(struct rule_ctx *c) { return loss_grad(c, same_shape_loss); }

static bool shape_ACCURACY(struct rule_ctx *c) { return class_target(c) && scalar_out(c); }

/* logits f32[..., C] (rank >= 2) with i32 targets of the logits' shape without C. */
static bool seq_target(struct rule_ctx *c) {
    const struct type *x = c->a[0], *y = c->a[1];
    if (x->dtype != DT_F32 || x->shape.rank < 2)
        return fail(c, "%s expects f32 scores [..., classes] of rank 2 or more, got %s", opname(c), ts(x));
    bool ok = y->dtype == DT_I32 && y->shape.rank == x->shape.rank - 1;
    for (int i = 0; ok && i < y->shape.rank; i++) ok = y->shape.dim[i] == x->shape.dim[i];
    if (!ok) {
        struct type want = {DT_I32, x->shape};
        want.shape.rank--;
        return fail(c, "%s of scores %s needs i32 targets %s, got %s", opname(c), ts(x), ts(&want), ts(y));
    }
    return true;
}

static bool shape_MASKED_CROSS_ENTROPY(struct rule_ctx *c) { return seq_target(c) && scalar_out(c); }
static bool shape_MASKED_CROSS_ENTROPY_GRAD(struct rule_ctx *c) { return loss_grad(c, seq_target); }
static bool shape_MASKED_ACCURACY(struct rule_ctx *c) { return seq_target(c) && scalar_out(c); }

/* ----------------------------------------------------------- convolution */

/* Checks common to every 2-D window op over NCHW operand i. */
static bool nchw(struct rule_ctx *c, int i) {
    if (!need_f32(c, i)) return false;
    if (c->a[i]->shape.rank != 4)
        return fail(c, "%s expects a rank-4 [N, C, H, W] input, got %s", opname(c), ts(c->a[i]));
    for (int d = 1; d < 4; d++)
        if (c->a[i]->shape.dim[d] == IR_DIM_N)
            return fail(c, "%s: only the first dim of %s may be N", opname(c), ts(c->a[i]));
    return true;
}

static bool window_attrs(struct rule_ctx *c, const int64_t *k, const int64_t *s, const int64_t *p,
                         const int64_t *d) {
    for (int i = 0; i < 2; i++) {
        if (k[i] < 1)
            return fail(c, "%s: window size must be at least 1, got %lld", opname(c), (long long)k[i]);
        if (s[i] < 1) return fail(c, "%s: stride must be at least 1, got %lld", opname(c), (long long)s[i]);
        if (d && d[i] < 1)
            return fail(c, "%s: dilation must be at least 1, got %lld", opname(c), (long long)d[i]);
    }
    for (int i = 0; i < 4; i++)
        if (p[i] < 0)
            return fail(c, "%s: padding must not be negative, got %lld", opname(c), (long long)p[i]);
    return true;
}

/* Output spatial size of a strided window; <= 0 means the window does not fit
 * (also when the window or the padding overflows 64 bits). */
static int64_t window_out(int64_t in, int64_t k, int64_t s, int64_t p0, int64_t p1, int64_t d) {
    int64_t span, room;
    if (__builtin_mul_overflow(d, k - 1, &span) || __builtin_add_overflow(in, p0, &room) ||
        __builtin_add_overflow(room, p1, &room))
        return 0;
    room = room - span - 1; /* room >= 0 and span >= 0: no overflow */
    return room < 0 ? 0 : room / s + 1;
}

/* The conv2d output for input x and weight w (both 4-D), into *out. */
static bool conv_out(struct rule_ctx *c, const struct type *x, const struct type *w, struct type *out) {
    const int64_t *st = ir_attr_v(c->n, ATTR_STRIDE, NULL), *pad = ir_attr_v(c->n, ATTR_PAD, NULL);
    const int64_t *dil = ir_attr_v(c->n, ATTR_DILATION, NULL);
    int64_t g = ir_attr_i(c->n, ATTR_GROUPS);
    if (w->shape.rank != 4 || shape_has_n(&w->shape))
        return fail(c, "%s expects a rank-4 weight [out, in/groups, kh, kw], got %s", opname(c), ts(w));
    if (g < 1) return fail(c, "%s: groups must be at least 1, got %lld", opname(c), (long long)g);
    if (!window_attrs(c, &w->shape.dim[2], st, pad, dil)) return false;
    int64_t cin = x->shape.dim[1], cout = w->shape.dim[0], wcin;
    if (__builtin_mul_overflow(w->shape.dim[1], g, &wcin) || wcin != cin)
        return fail(c, "%s: input %s has %lld channels but weight %s expects %lld per group (groups %lld)",
                    opname(c), ts(x), (long long)cin, ts(w), (long long)w->shape.dim[1], (long long)g);
    if (cout % g)
        return fail(c, "%s: %lld output channels do not split into %lld groups", opname(c), (long long)cout,
                    (long long)g);
    int64_t ho = window_out(x->shape.dim[2], w->shape.dim[2], st[0], pad[0], pad[2], dil[0]);
    int64_t wo = window_out(x->shape.dim[3], w->shape.dim[3], st[1], pad[1], pad[3], dil[1]);
    if (ho < 1 || wo < 1)
        return fail(c, "%s: the %lldx%lld kernel does not fit the input %s", opname(c),
                    (long long)w->shape.dim[2], (long long)w->shape.dim[3], ts(x));
    out->dtype = DT_F32;
    out->shape = (struct shape){4, {x->shape.dim[0], cout, ho, wo}};
    return true;
}

static bool shape_CONV2D(struct rule_ctx *c) {
    struct type t;
    if (!nchw(c, 0) || !conv_out(c, c->a[0], c->a[1], &t)) return false;
    c->n->type = t;
    return true;
}

/* (dy, w) -> dx; dx's shape is the node's own (the forward input's). */
static bool shape_CONV2D_GRAD_INPUT(struct rule_ctx *c) {
    struct type x = {DT_F32, c->n->type.shape}, y;
    c->a[7] = &x;
    if (!nchw(c, 0) || !nchw(c, 7) || !conv_out(c, &x, c->a[1], &y)) return false;
    if (!shape_equal(&y.shape, &c->a[0]->shape))
        return fail(c, "conv2d_grad_input: a conv2d of %s gives %s, not the gradient's %s", ts(&x), ts(&y),
                    ts(c->a[0]));
    c->n->type.dtype = DT_F32;
    return true;
}

/* (x, dy) -> dw; dw's shape is the node's own (the weight's). */
static bool shape_CONV2D_GRAD_WEIGHT(struct rule_ctx *c) {
    struct type w = {DT_F32, c->n->type.shape}, y;
    if (!nchw(c, 0) || !nchw(c, 1) || !conv_out(c, c->a[0], &w, &y)) return false;
    if (!shape_equal(&y.shape, &c->a[1]->shape))
        return fail(c, "conv2d_grad_weight: a conv2d of %s with %s gives %s, not the gradient's %s",
                    ts(c->a[0]), ts(&w), ts(&y), ts(c->a[1]));
    c->n->type.dtype = DT_F32;
    return true;
}

static bool pool_geo_out(struct rule_ctx *c, const struct type *x, const int64_t *k, const int64_t *st,
                         const int64_t *pad, struct type *out);

/* (x, y, dp) -> dw, the node's own shape (the weight's): y is the conv2d of x
 * with dw's shape, dp the max pooling of y by the pool_* attributes. */
static bool shape_CONV2D_GRAD_WEIGHT_MAXPOOL(struct rule_ctx *c) {
    struct type w = {DT_F32, c->n->type.shape}, y, p;
    if (!nchw(c, 0) || !nchw(c, 1) || !nchw(c, 2) || !conv_out(c, c->a[0], &w, &y)) return false;
    if (!shape_equal(&y.shape, &c->a[1]->shape))
        return fail(c, "%s: a conv2d of %s with %s gives %s, not the pooled activation's %s", opname(c),
                    ts(c->a[0]), ts(&w), ts(&y), ts(c->a[1]));
    if (!pool_geo_out(c, c->a[1], ir_attr_v(c->n, ATTR_POOL_KERNEL, NULL),
                      ir_attr_v(c->n, ATTR_POOL_STRIDE, NULL), ir_attr_v(c->n, ATTR_POOL_PAD, NULL), &p))
        return false;
    if (!shape_equal(&p.shape, &c->a[2]->shape))
        return fail(c, "%s: pooling %s gives %s, not the gradient's %s", opname(c), ts(c->a[1]), ts(&p),
                    ts(c->a[2]));
    c->n->type.dtype = DT_F32;
    return true;
}

static bool shape_CONV_TRANSPOSE2D(struct rule_ctx *c) {
    const struct type *x = c->a[0], *w = c->a[1];
    if (!nchw(c, 0)) return false;
    const int64_t *st = ir_attr_v(c->n, ATTR_STRIDE, NULL), *pad = ir_attr_v(c->n, ATTR_PAD, NULL);
    const int64_t *dil = ir_attr_v(c->n, ATTR_DILATION, NULL), *op = ir_attr_v(c->n, ATTR_OUTPUT_PAD, NULL);
    int64_t g = ir_attr_i(c->n, ATTR_GROUPS);
    if (w->shape.rank != 4 || shape_has_n(&w->shape))
        return fail(c, "conv_transpose2d expects a rank-4 weight [in, out/groups, kh, kw], got %s", ts(w));
    if (g < 1) return fail(c, "conv_transpose2d: groups must be at least 1, got %lld", (long long)g);
    if (!window_attrs(c, &w->shape.dim[2], st, pad, dil)) return false;
    if (w->shape.dim[0] != x->shape.dim[1] || x->shape.dim[1] % g)
        return fail(c, "conv_transpose2d: input %s has %lld channels but weight %s expects %lld", ts(x),
                    (long long)x->shape.dim[1], ts(w), (long long)w->shape.dim[0]);
    int64_t hw[2];
    for (int i = 0; i < 2; i++) {
        if (op[i] < 0 || (op[i] >= st[i] && op[i] >= dil[i]))
            return fail(c,
                        "conv_transpose2d: output padding %lld must be smaller than the stride or dilation",
                        (long long)op[i]);
        /* (in - 1) * stride - pads + dilation * (k - 1) + output_pad + 1, checked */
        int64_t a, b;
        bool over = __builtin_mul_overflow(x->shape.dim[2 + i] - 1, st[i], &a) ||
                    __builtin_mul_overflow(dil[i], w->shape.dim[2 + i] - 1, &b) ||
                    __builtin_add_overflow(a, b, &a) || __builtin_add_overflow(a, op[i] + 1, &a) ||
                    __builtin_sub_overflow(a, pad[i], &a) || __builtin_sub_overflow(a, pad[i + 2], &a);
        if (over) return fail(c, "conv_transpose2d: the output of %s would be too large", ts(x));
        hw[i] = a;
        if (hw[i] < 1) return fail(c, "conv_transpose2d: the output of %s would be empty", ts(x));
    }
    int64_t cout;
    if (__builtin_mul_overflow(w->shape.dim[1], g, &cout))
        return fail(c, "conv_transpose2d: the output of %s would be too large", ts(x));
    struct shape s = {4, {x->shape.dim[0], cout, hw[0], hw[1]}};
    set_type(c, DT_F32, &s);
    return true;
}

/* --------------------------------------------------------------- pooling */

/* The pooled shape of x under window k, stride st and padding pad, into *out. */
static bool pool_geo_out(struct rule_ctx *c, const struct type *x, const int64_t *k, const int64_t *st,
                         const int64_t *pad, struct type *out) {
    if (!window_attrs(c, k, st, pad, NULL)) return false;
    if (pad[0] > k[0] / 2 || pad[1] > k[1] / 2 || pad[2] > k[0] / 2 || pad[3] > k[1] / 2)
        return fail(c, "%s: padding must be at most half the window", opname(c));
    int64_t ho = window_out(x->shape.dim[2], k[0], st[0], pad[0], pad[2], 1);
    int64_t wo = window_out(x->shape.dim[3], k[1], st[1], pad[1], pad[3], 1);
    if (ho < 1 || wo < 1)
        return fail(c, "%s: the %lldx%lld window does not fit the input %s", opname(c), (long long)k[0],
                    (long long)k[1], ts(x));
    out->dtype = DT_F32;
    out->shape = (struct shape){4, {x->shape.dim[0], x->shape.dim[1], ho, wo}};
    return true;
}

static bool pool_out(struct rule_ctx *c, const struct type *x, struct type *out) {
    return pool_geo_out(c, x, ir_attr_v(c->n, ATTR_KERNEL, NULL), ir_attr_v(c->n, ATTR_STRIDE, NULL),
                        ir_attr_v(c->n, ATTR_PAD, NULL), out);
}

static bool pool(struct rule_ctx *c) {
    struct type t;
    if (!nchw(c, 0) || !pool_out(c, c->a[0], &t)) return false;
    c->n->type = t;
    return true;
}

/* (x, dy) -> dx. */
static bool pool_grad(struct rule_ctx *c) {
    struct type y;
    if (!nchw(c, 0) || !nchw(c, 1) || !pool_out(c, c->a[0], &y)) return false;
    if (!shape_equal(&y.shape, &c->a[1]->shape))
        return fail(c, "%s: pooling %s gives %s, not the gradient's %s", opname(c), ts(c->a[0]), ts(&y),
                    ts(c->a[1]));
    c->n->type = *c->a[0];
    return true;
}

static bool shape_MAXPOOL2D(struct rule_ctx *c) { return pool(c); }
static bool shape_AVGPOOL2D(struct rule_ctx *c) { return pool(c); }
static bool shape_MAXPOOL2D_GRAD(struct rule_ctx *c) { return pool_grad(c); }
static bool shape_AVGPOOL2D_GRAD(struct rule_ctx *c) { return pool_grad(c); }

static bool shape_UPSAMPLE2D(struct rule_ctx *c) {
    const int64_t *sc = ir_attr_v(c->n, ATTR_FACTOR, NULL);
    if (!nchw(c, 0)) return false;
    if (sc[0] < 1 || sc[1] < 1) return fail(c, "upsample2d: scale must be at least 1");
    struct shape s = c->a[0]->shape;
    if (__builtin_mul_overflow(s.dim[2], sc[0], &s.dim[2]) ||
        __builtin_mul_overflow(s.dim[3], sc[1], &s.dim[3]))
        return fail(c, "upsample2d: scaling %s by %lldx%lld is too large", ts(c->a[0]), (long long)sc[0],
                    (long long)sc[1]);
    set_type(c, DT_F32, &s);
    return true;
}

static bool shape_UPSAMPLE2D_GRAD(struct rule_ctx *c) {
    const int64_t *sc = ir_attr_v(c->n, ATTR_FACTOR, NULL);
    if (!nchw(c, 0)) return false;
    if (sc[0] < 1 || sc[1] < 1) return fail(c, "upsample2d_grad: scale must be at least 1");
    struct shape s = c->a[0]->shape;
    if (s.dim[2] % sc[0] || s.dim[3] % sc[1])
        return fail(c, "upsample2d_grad: %s is not a multiple of the scale", ts(c->a[0]));
    s.dim[2] /= sc[0];
    s.dim[3] /= sc[1];
    set_type(c, DT_F32, &s);
    return true;
}

/* ---------------------------------------------------- dropout, batchnorm */

static bool dropout_like(struct rule_ctx *c) {
    double rate = ir_attr_f(c->n, ATTR_RATE);
    if (!(rate >= 0 && rate < 1)) return fail(c, "%s: rate must be in [0, 1), got %g", opname(c), rate);
    return unary_f32(c);
}

static bool shape_DROPOUT(struct rule_ctx *c) { return dropout_like(c); }
static bool shape_DROPOUT_GRAD(struct rule_ctx *c) { return dropout_like(c); }

/* ----------------------------------------------------------------- tokens */

static bool need_ids(struct rule_ctx *c, int i) {
    if (c->a[i]->dtype == DT_I32) return true;
    return fail(c, "%s expects i32 ids, got %s", opname(c), ts(c->a[i]));
}

/* ids [...] -> [..., last]. */
static bool ids_plus(struct rule_ctx *c, const struct shape *ids, int64_t last) {
    if (ids->rank + 1 > IR_MAX_RANK)
        return fail(c, "%s: the result would have more than %d dims", opname(c), IR_MAX_RANK);
    struct shape s = *ids;
    s.dim[s.rank++] = last;
    set_type(c, DT_F32, &s);
    return true;
}

static bool shape_EMBEDDING(struct rule_ctx *c) {
    const struct type *w = c->a[0];
    if (!need_f32(c, 0) || !need_ids(c, 1)) return false;
    if (w->shape.rank != 2 || w->shape.dim[0] == IR_DIM_N || w->shape.dim[1] == IR_DIM_N)
        return fail(c, "embedding expects a static table [rows, dim], got %s", ts(w));
    return ids_plus(c, &c->a[1]->shape, w->shape.dim[1]);
}

static bool shape_EMBEDDING_GRAD(struct rule_ctx *c) {
    const struct type *ids = c->a[0], *dy = c->a[1];
    if (!need_ids(c, 0) || !need_f32(c, 1)) return false;
    bool ok = dy->shape.rank == ids->shape.rank + 1;
    for (int i = 0; ok && i < ids->shape.rank; i++) ok = dy->shape.dim[i] == ids->shape.dim[i];
    if (!ok || dy->shape.dim[dy->shape.rank - 1] == IR_DIM_N)
        return fail(c, "embedding_grad of ids %s needs a gradient of shape [ids..., dim], got %s", ts(ids),
                    ts(dy));
    int64_t rows = ir_attr_i(c->n, ATTR_ROWS);
    if (rows < 1) return fail(c, "embedding_grad: rows must be at least 1, got %lld", (long long)rows);
    struct shape s = {2, {rows, dy->shape.dim[dy->shape.rank - 1]}};
    set_type(c, DT_F32, &s);
    return true;
}

static bool shape_ONE_HOT(struct rule_ctx *c) {
    if (!need_ids(c, 0)) return false;
    int64_t k = ir_attr_i(c->n, ATTR_CLASSES);
    if (k < 1) return fail(c, "one_hot: classes must be at least 1, got %lld", (long long)k);
    return ids_plus(c, &c->a[0]->shape, k);
}

/* x [N, T, ...] and ids i32[N, T]. */
static bool masked_pool_args(struct rule_ctx *c, const struct type *x, const struct type *ids) {
    if (x->dtype != DT_F32 || x->shape.rank < 2)
        return fail(c, "%s expects f32 values [N, T, ...], got %s", opname(c), ts(x));
    if (ids->dtype != DT_I32 || ids->shape.rank != 2 || ids->shape.dim[0] != x->shape.dim[0] ||
        ids->shape.dim[1] != x->shape.dim[1])
        return fail(c, "%s of %s needs i32 ids [%s, %s] for its mask, got %s", opname(c), ts(x),
                    x->shape.dim[0] == IR_DIM_N ? "N" : "batch", "T", ts(ids));
    if (x->shape.dim[1] == IR_DIM_N)
        return fail(c, "%s: the time dim of %s must be static", opname(c), ts(x));
    return true;
}

static bool masked_pool(struct rule_ctx *c) {
    const struct type *x = c->a[0];
    if (!masked_pool_args(c, x, c->a[1])) return false;
    struct shape s = x->shape;
    for (int i = 1; i + 1 < s.rank; i++) s.dim[i] = s.dim[i + 1];
    s.rank--;
    set_type(c, DT_F32, &s);
    return true;
}

static bool shape_MASKED_MEAN(struct rule_ctx *c) { return masked_pool(c); }
static bool shape_MASKED_MAX(struct rule_ctx *c) { return masked_pool(c); }

/* (ids [N, T], dy [N, ...]) -> [N, T, ...]. */
static bool shape_MASKED_MEAN_GRAD(struct rule_ctx *c) {
    const struct type *ids = c->a[0], *dy = c->a[1];
    if (!need_ids(c, 0) || !need_f32(c, 1)) return false;
    if (ids->shape.rank != 2 || dy->shape.rank < 1 || dy->shape.rank + 1 > IR_MAX_RANK ||
        dy->shape.dim[0] != ids->shape.dim[0])
        return fail(c, "masked_mean_grad of ids %s and gradient %s: shapes disagree", ts(ids), ts(dy));
    struct shape s = dy->shape;
    for (int i = s.rank; i > 1; i--) s.dim[i] = s.dim[i - 1];
    s.dim[1] = ids->shape.dim[1];
    s.rank++;
    set_type(c, DT_F32, &s);
    return true;
}

static bool shape_MASKED_MAX_GRAD(struct rule_ctx *c) {
    if (!masked_pool(c)) return false; /* checks x and ids, then the pooled type */
    if (!shape_equal(&c->n->type.shape, &c->a[2]->shape) || c->a[2]->dtype != DT_F32)
        return fail(c, "masked_max_grad of %s needs a gradient %s, got %s", ts(c->a[0]), ts(&c->n->type),
                    ts(c->a[2]));
    c->n->type = *c->a[0];
    return true;
}

static bool shape_BATCHNORM(struct rule_ctx *c) {
    const struct type *x = c->a[0];
    if (!need_f32(c, 0)) return false;
    if (x->shape.rank < 2)
        return fail(c, "batchnorm expects an input of rank 2 or more [N, C, ...], got %s", ts(x));
    int64_t ch = x->shape.dim[1];
    for (int i = 1; i < 5; i++) {
        const struct type *t = c->a[i];
        if (t->dtype != DT_F32 || t->shape.rank != 1 || t->shape.dim[0] != ch)
            return fail(c, "batchnorm of %s needs per-channel f32[%lld] operands, operand %d is %s", ts(x),
                        (long long)ch, i + 1, ts(t));
    }
    if (!(ir_attr_f(c->n, ATTR_EPS) > 0)) return fail(c, "batchnorm: eps must be positive");
    c->n->type = *x;
    return true;
}

/* Operands x, dy (x's shape, rank 2 or more, a static channel axis 1) and the
 * per-channel f32[C] operands from `first` to `last`. */
static bool bn_grad_operands(struct rule_ctx *c, int first, int last) {
    const struct type *x = c->a[0];
    if (!need_f32(c, 0) || !need_f32(c, 1) || !same_shape(c, 0, 1)) return false;
    if (x->shape.rank < 2 || x->shape.dim[1] == IR_DIM_N)
        return fail(c, "%s expects an input of rank 2 or more [N, C, ...], got %s", opname(c), ts(x));
    int64_t ch = x->shape.dim[1];
    for (int i = first; i <= last; i++) {
        const struct type *t = c->a[i];
        if (t->dtype != DT_F32 || t->shape.rank != 1 || t->shape.dim[0] != ch)
            return fail(c, "%s of %s needs per-channel f32[%lld] operands, operand %d is %s", opname(c),
                        ts(x), (long long)ch, i + 1, ts(t));
    }
    return true;
}

/* (x, dy, mean) -> f32[2, C]. */
static bool shape_BATCHNORM_GRAD_SUMS(struct rule_ctx *c) {
    if (!bn_grad_operands(c, 2, 2)) return false;
    struct shape s = {2, {2, c->a[0]->shape.dim[1]}};
    set_type(c, DT_F32, &s);
    return true;
}

/* (x, dy, gamma, mean, var, sums) -> dx, sums as BATCHNORM_GRAD_SUMS gives them. */
static bool shape_BATCHNORM_GRAD(struct rule_ctx *c) {
    if (c->n->nargs != 6)
        return fail(c, "batchnorm_grad takes 6 operands (x, dy, gamma, mean, var, sums), got %d",
                    c->n->nargs);
    if (!bn_grad_operands(c, 2, 4)) return false;
    const struct type *s = c->a[5];
    if (s->dtype != DT_F32 || s->shape.rank != 2 || s->shape.dim[0] != 2 ||
        s->shape.dim[1] != c->a[0]->shape.dim[1])
        return fail(c, "batchnorm_grad of %s needs sums f32[2,%lld], got %s", ts(c->a[0]),
                    (long long)c->a[0]->shape.dim[1], ts(s));
    if (!(ir_attr_f(c->n, ATTR_EPS) > 0)) return fail(c, "batchnorm_grad: eps must be positive");
    c->n->type = *c->a[0];
    return true;
}

/* Rows of the last axis, which is static; LAYERNORM_GRAD's dy has x's shape. */
static bool layernorm_like(struct rule_ctx *c) {
    const struct type *x = c->a[0];
    int64_t d;
    if (!need_f32(c, 0)) return false;
    if (x->shape.rank < 1)
        return fail(c, "%s expects an input of rank 1 or more [..., D], got %s", opname(c), ts(x));
    if (!static_dim(c, 0, x->shape.rank - 1, &d)) return false;
    if (!(ir_attr_f(c->n, ATTR_EPS) > 0)) return fail(c, "%s: eps must be positive", opname(c));
    c->n->type = *x;
    return true;
}

static bool shape_LAYERNORM(struct rule_ctx *c) { return layernorm_like(c); }
/* (x, dy[, gamma[, r]]): gamma f32[D], D the last dim; r of x's shape. */
static bool shape_LAYERNORM_GRAD(struct rule_ctx *c) {
    if (c->n->nargs < 2 || c->n->nargs > 4)
        return fail(c, "layernorm_grad takes 2 to 4 operands (x, dy[, gamma[, r]]), got %d", c->n->nargs);
    if (!layernorm_like(c) || !need_f32(c, 1) || !same_shape(c, 0, 1)) return false;
    if (c->n->nargs == 4 && (!need_f32(c, 3) || !same_shape(c, 0, 3))) return false;
    const struct type *x = c->a[0];
    if (c->n->nargs >= 3) {
        const struct type *gm = c->a[2];
        int64_t d = x->shape.dim[x->shape.rank - 1];
        if (gm->dtype != DT_F32 || gm->shape.rank != 1 || gm->shape.dim[0] != d)
            return fail(c, "layernorm_grad of %s needs gamma f32[%lld], got %s", ts(x), (long long)d, ts(gm));
    }
    c->n->type = *x;
    return true;
}

/* (y, dy) -> f32[2, D]. */
static bool shape_LAYERNORM_GRAD_SUMS(struct rule_ctx *c) {
    const struct type *y = c->a[0];
    int64_t d;
    if (!need_f32(c, 0) || !need_f32(c, 1)) return false;
    if (y->shape.rank < 1)
        return fail(c, "%s expects an input of rank 1 or more [..., D], got %s", opname(c), ts(y));
    if (!static_dim(c, 0, y->shape.rank - 1, &d) || !same_shape(c, 0, 1)) return false;
    struct shape s = {2, {2, d}};
    set_type(c, DT_F32, &s);
    return true;
}

/* ------------------------------------------------------------- recurrent */

/* Checks the attributes and the operands shared by the recurrent ops: x (when
 * ix >= 0), w_ih, w_hh, ws, s0; fills the sizes. */
struct rnn_dims {
    int cell;            /* IR_RNN_* */
    int64_t t, f, h, gh; /* steps, features, hidden, gates * hidden */
    struct shape batch;  /* [N] (or the static batch) of x */
};

static bool rnn_cell(struct rule_ctx *c, struct rnn_dims *d) {
    int64_t cell = ir_attr_i(c->n, ATTR_CELL), rev = ir_attr_i(c->n, ATTR_REVERSE);
    if (cell < 0 || cell >= IR_RNN_CELLS)
        return fail(c, "%s: cell must be 0 to %d, got %lld", opname(c), IR_RNN_CELLS - 1, (long long)cell);
    if (rev != 0 && rev != 1)
        return fail(c, "%s: reverse must be 0 or 1, got %lld", opname(c), (long long)rev);
    d->cell = (int)cell;
    return true;
}

/* w_hh [G*H, H] at operand i: sets h and gh. */
static bool rnn_whh(struct rule_ctx *c, int i, struct rnn_dims *d) {
    const struct type *w = c->a[i];
    int g = ir_rnn_gates(d->cell);
    if (w->dtype != DT_F32 || w->shape.rank != 2 || w->shape.dim[1] < 1 ||
        w->shape.dim[0] != g * w->shape.dim[1])
        return fail(c, "%s: the recurrent weight must be f32[%d*H, H], got %s", opname(c), g, ts(w));
    d->h = w->shape.dim[1];
    d->gh = w->shape.dim[0];
    return true;
}

/* An operand of type f32/i32 [batch, inner...] with the given static inner dims. */
static bool rnn_operand(struct rule_ctx *c, int i, enum dtype dt, const struct rnn_dims *d, int rank,
                        int64_t d1, int64_t d2, const char *what) {
    const struct type *t = c->a[i];
    bool ok = t->dtype == dt && t->shape.rank == rank && t->shape.dim[0] == d->batch.dim[0];
    if (ok && rank > 1) ok = t->shape.dim[1] == d1;
    if (ok && rank > 2) ok = t->shape.dim[2] == d2;
    if (ok) return true;
    char want[96];
    if (rank == 1)
        snprintf(want, sizeof want, "%s[batch]", dtype_name(dt));
    else if (rank == 2)
        snprintf(want, sizeof want, "%s[batch, %lld]", dtype_name(dt), (long long)d1);
    else
        snprintf(want, sizeof want, "%s[batch, %lld, %lld]", dtype_name(dt), (long long)d1, (long long)d2);
    return fail(c, "%s: %s must be %s with the batch of the sequence, got %s", opname(c), what, want, ts(t));
}

/* ws [batch, T, row*H] at operand i: sets t and the batch. */
static bool rnn_ws(struct rule_ctx *c, int i, struct rnn_dims *d) {
    const struct type *w = c->a[i];
    if (w->dtype != DT_F32 || w->shape.rank != 3 || w->shape.dim[1] < 1 || w->shape.dim[1] == IR_DIM_N ||
        w->shape.dim[2] != ir_rnn_row(d->cell) * d->h)
        return fail(c, "%s: the recurrent value must be f32[batch, T, %lld], got %s", opname(c),
                    (long long)(ir_rnn_row(d->cell) * d->h), ts(w));
    d->t = w->shape.dim[1];
    d->batch = (struct shape){1, {w->shape.dim[0]}};
    return true;
}

static bool shape_RNN(struct rule_ctx *c) {
    struct rnn_dims d;
    if (c->n->nargs != 7)
        return fail(c, "rnn takes 7 operands (x, w_ih, w_hh, b_ih, b_hh, s0, lengths), got %d", c->n->nargs);
    if (!rnn_cell(c, &d) || !rnn_whh(c, 2, &d)) return false;
    const struct type *x = c->a[0];
    if (x->dtype != DT_F32 || x->shape.rank != 3 || x->shape.dim[1] < 1 || x->shape.dim[1] == IR_DIM_N ||
        x->shape.dim[2] < 1 || x->shape.dim[2] == IR_DIM_N)
        return fail(c, "rnn expects a sequence f32[N, T, F] with static T and F, got %s", ts(x));
    d.t = x->shape.dim[1], d.f = x->shape.dim[2];
    d.batch = (struct shape){1, {x->shape.dim[0]}};
    const struct type *wi = c->a[1];
    if (wi->dtype != DT_F32 || wi->shape.rank != 2 || wi->shape.dim[0] != d.gh || wi->shape.dim[1] != d.f)
        return fail(c, "rnn: the input weight must be f32[%lld, %lld] for %s, got %s", (long long)d.gh,
                    (long long)d.f, ts(x), ts(wi));
    for (int i = 3; i <= 4; i++)
        if (c->a[i]->dtype != DT_F32 || c->a[i]->shape.rank != 1 || c->a[i]->shape.dim[0] != d.gh)
            return fail(c, "rnn: the biases must be f32[%lld], got %s", (long long)d.gh, ts(c->a[i]));
    if (!rnn_operand(c, 5, DT_F32, &d, 2, ir_rnn_state(d.cell) * d.h, 0, "the initial state") ||
        !rnn_operand(c, 6, DT_I32, &d, 1, 0, 0, "the lengths"))
        return false;
    struct shape s = {3, {x->shape.dim[0], d.t, ir_rnn_row(d.cell) * d.h}};
    set_type(c, DT_F32, &s);
    return true;
}

/* dws at operand i: the gradient of ws [batch, T, R*H], or of its first C <= S
 * (state) columns [batch, T, C], or of those of the final step only [batch, 1, C]. */
static bool rnn_dws(struct rule_ctx *c, int i, const struct rnn_dims *d) {
    const struct type *t = c->a[i];
    int64_t row = ir_rnn_row(d->cell) * d->h, st = ir_rnn_state(d->cell) * d->h;
    if (t->dtype == DT_F32 && t->shape.rank == 3 && t->shape.dim[0] == d->batch.dim[0] &&
        (t->shape.dim[1] == d->t || t->shape.dim[1] == 1) &&
        (t->shape.dim[2] == row || (t->shape.dim[2] >= 1 && t->shape.dim[2] <= st)))
        return true;
    return fail(
        c,
        "%s: the gradient of the recurrent value must be f32[batch, %lld or 1, %lld or at most %lld], got %s",
        opname(c), (long long)d->t, (long long)row, (long long)st, ts(t));
}

static bool shape_RNN_BPTT(struct rule_ctx *c) {
    struct rnn_dims d;
    if (!rnn_cell(c, &d) || !rnn_whh(c, 0, &d) || !rnn_ws(c, 1, &d) || !rnn_dws(c, 2, &d) ||
        !rnn_operand(c, 3, DT_F32, &d, 2, ir_rnn_state(d.cell) * d.h, 0, "the initial state") ||
        !rnn_operand(c, 4, DT_I32, &d, 1, 0, 0, "the lengths"))
        return false;
    struct shape s = {3, {d.batch.dim[0], d.t, ir_rnn_grad_row(d.cell) * d.h}};
    set_type(c, DT_F32, &s);
    return true;
}

static bool shape_RNN_GRAD(struct rule_ctx *c) {
    struct rnn_dims d;
    if (c->n->nargs != 6)
        return fail(c, "rnn_grad takes 6 operands (dg, x, w_ih, w_hh, ws, s0), got %d", c->n->nargs);
    if (!rnn_cell(c, &d) || !rnn_whh(c, 3, &d) || !rnn_ws(c, 4, &d) ||
        !rnn_operand(c, 0, DT_F32, &d, 3, d.t, ir_rnn_grad_row(d.cell) * d.h, "the gate gradients") ||
        !rnn_operand(c, 5, DT_F32, &d, 2, ir_rnn_state(d.cell) * d.h, 0, "the initial state"))
        return false;
    const struct type *x = c->a[1], *wi = c->a[2];
    if (x->dtype != DT_F32 || x->shape.rank != 3 || x->shape.dim[0] != d.batch.dim[0] ||
        x->shape.dim[1] != d.t || wi->dtype != DT_F32 || wi->shape.rank != 2 || wi->shape.dim[0] != d.gh ||
        wi->shape.dim[1] != x->shape.dim[2])
        return fail(c, "rnn_grad: sequence %s and input weight %s do not match", ts(x), ts(wi));
    int64_t wrt = ir_attr_i(c->n, ATTR_WRT);
    struct shape bias = {1, {d.gh}};
    switch (wrt) {
    case 0:
        c->n->type = *x;
        return true;
    case 1:
        c->n->type = *wi;
        return true;
    case 2:
        c->n->type = *c->a[3];
        return true;
    case 3:
    case 4:
        set_type(c, DT_F32, &bias);
        return true;
    case 5:
        c->n->type = *c->a[5];
        return true;
    default:
        return fail(c, "rnn_grad: wrt must be 0 to 5 (an operand of rnn), got %lld", (long long)wrt);
    }
}

/* ------------------------------------------------------------- the rule */

static const shape_fn shape_rule[OP_COUNT] = {
#define OP(name, arity, kind, flags, attrs) [OP_##name] = shape_##name,
#include "ir/ops.def"
#undef OP
};

bool ir_infer(struct ir_module *m, struct ir_func *f, int id, char *err, size_t errlen) {
    NETC_ASSERT(id >= 0 && id < ir_func_len(f));
    struct ir_node *n = &f->nodes[id];
    const struct op_info *info = &op_info[n->op];
    struct rule_ctx c = {m, n, {NULL}, err, errlen};
    if (errlen) err[0] = '\0';
    if (info->arity >= 0 ? n->nargs != info->arity : n->nargs < 1)
        return fail(&c, "%s takes %d operand%s, got %d", info->name, info->arity, info->arity == 1 ? "" : "s",
                    n->nargs);
    for (int i = 0; i < n->nargs && i < 8; i++) {
        int a = n->args[i];
        if (a < 0 || a >= id)
            return fail(&c, "%s: operand %d refers to %%%d, which is not defined before it", info->name,
                        i + 1, a);
        c.a[i] = &f->nodes[a].type;
    }
    for (int i = 0; i < n->nargs && i < 8; i++)
        if (c.a[i]->shape.rank < 0 || c.a[i]->shape.rank > IR_MAX_RANK)
            return fail(&c, "%s: operand %d has no valid type", info->name, i + 1);
    if (!shape_rule[n->op](&c)) return false;
    /* Every value stays within IR_MAX_NUMEL elements per batch item, so that
     * sizes computed from shapes (memory plan, emitters, runtime) cannot wrap. */
    if (!shape_numel_ok(&n->type.shape))
        return fail(&c, "%s: the result %s is too large (more than 2^31 elements per batch item)", info->name,
                    ts(&n->type));
    return true;
}
