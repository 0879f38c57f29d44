/* codegen/c_ops.c -- the C backend's column of the op table: cgc_op_<NAME> prints
 * the C that computes one node. Elementwise ops, reductions and data movement
 * become loop nests (cg_core.c's nests merge contiguous dims, so most
 * become one flat loop); softmax, losses and metrics become short row loops;
 * GEMM, convolution and pooling become calls into libnetrt's kernels. The
 * semantics are the reference interpreter's (interp.c, interp_nn.c); sections
 * follow ops.def. The last section builds the body of a fused kernel: its head's
 * call, then one nest computing every elementwise member in registers by its
 * formula (codegen/formulas.def, rendered by cg_core.c). */
#include "codegen/codegen.h"
#include "runtime/netrt.h" /* the conv kernels' chunk and scratch sizes */

#include <string.h>

/* ------------------------------------------------------------- helpers */

static const struct shape *shape_of(const struct cgc *c, int id) { return &cgc_node(c, id)->type.shape; }
static const struct shape *arg_shape(const struct cgc *c, int id, int i) {
    return &cgc_arg(c, id, i)->type.shape;
}
static int arg(const struct cgc *c, int id, int i) { return cgc_node(c, id)->args[i]; }

static struct cgc_x xk(int64_t k) { return (struct cgc_x){k, false}; }

/* Opens the loops (a block even for rank 0) and fills ns->idx. */
static void nest_open(struct cgc *c, struct cg_nest *ns) {
    cg_nest_merge(ns);
    cgc_emit(c, "{");
    c->indent++;
    for (int d = 0; d < ns->rank; d++) {
        if (d == 0 && ns->range)
            cgc_emit(c, "for (int64_t i0 = lo; i0 < hi; i0++) {");
        else
            cgc_emit(c, "for (int64_t i%d = 0; i%d < %s; i%d++) {", d, d, cg_xs(ns->dim[d]), d);
        c->indent++;
    }
    cg_nest_index(ns);
}

static void nest_close(struct cgc *c, const struct cg_nest *ns) {
    for (int d = 0; d <= ns->rank; d++) {
        c->indent--;
        cgc_emit(c, "}");
    }
}

/* y = formula($0, $1, ...) elementwise with numpy broadcasting (the formula of
 * codegen/formulas.def). For i32 results the formula is evaluated in double and
 * converted as the IR converts. */
static void ewise(struct cgc *c, int id) {
    struct cg_nest ns;
    char line[2304];
    cg_ewise_nest(c, id, -1, &ns);
    nest_open(c, &ns);
    cg_ewise_store(c, id, &ns, line, sizeof line);
    cgc_emit(c, "%s", line);
    nest_close(c, &ns);
}

/* ----------------------------------------------------------------- scratch */

int64_t cgc_op_scratch(const struct ir_func *f, const struct ir_node *n, bool *per_n) {
    *per_n = false;
    if (n->op == OP_CONV2D || n->op == OP_CONV2D_GRAD_INPUT || n->op == OP_CONV2D_GRAD_WEIGHT ||
        n->op == OP_CONV_TRANSPOSE2D) {
        int64_t per, chunk = cg_conv_chunk(f, n, &per);
        /* A kernel closed by a max pool (fuse.c): a chunk's full-size results too
         * (nrt_conv_pool_scratch). */
        for (int j = (int)(n - f->nodes) + 1; n->kernel > 0 && j < ir_func_len(f); j++)
            if (f->nodes[j].kernel == n->kernel && f->nodes[j].op == OP_MAXPOOL2D)
                return cg_conv_scratch(f, n) + chunk * shape_static_numel(&n->type.shape);
        return cg_conv_scratch(f, n);
    }
    /* A gemm-update kernel's head: its value, where the GEMM cannot keep it
     * (nrt_sgemm_adam) */
    if (n->op == OP_MATMUL && n->kernel > 0 && pass_target_get()->fuse_gemm_update &&
        pass_gemm_adam(f, n->kernel, NULL))
        return shape_static_numel(&n->type.shape);
    if (n->op == OP_RNN || n->op == OP_RNN_BPTT) { /* w_hh packed for the recurrent GEMMs */
        const struct shape *whh = &f->nodes[n->args[n->op == OP_RNN ? 2 : 0]].type.shape;
        int64_t feat = n->op == OP_RNN ? f->nodes[n->args[0]].type.shape.dim[2] : 0;
        struct nrt_rnn geo = {.f = feat, .h = whh->dim[1], .cell = (int)ir_attr_i(n, ATTR_CELL)};
        return nrt_rnn_scratch_floats(&geo, n->op == OP_RNN_BPTT);
    }
    if (n->op == OP_ATTENTION || n->op == OP_ATTENTION_GRAD) { /* per (item, head): runtime/attn.c */
        const struct shape *x = &f->nodes[n->args[0]].type.shape;
        int64_t h = ir_attr_i(n, ATTR_HEADS),
                per = h * nrt_attn_scratch_floats(x->dim[1], x->dim[2] / 3 / h, n->op == OP_ATTENTION_GRAD);
        *per_n = x->dim[0] == IR_DIM_N;
        return *per_n ? per : per * x->dim[0];
    }
    bool fsum = n->type.dtype == DT_F32 && (n->op == OP_SUM || n->op == OP_MEAN || n->op == OP_SUM_TO);
    int64_t ch, hw;
    if (cg_sum_planes(f, n, &ch, &hw)) { /* nrt_sum_planes: a double per image and channel */
        const struct shape *x = &f->nodes[n->args[0]].type.shape;
        *per_n = x->dim[0] == IR_DIM_N;
        return 2 * ch * (*per_n ? 1 : x->dim[0]);
    }
    if (fsum || n->op == OP_VARIANCE) { /* double accumulators (reductions below): 2 floats per double */
        struct cgc_x cnt = cgc_count(&n->type.shape);
        *per_n = cnt.n;
        return (n->op == OP_VARIANCE ? 4 : 2) * cnt.k;
    }
    return 0;
}

/* --------------------------------------------------------------- leaves */

void cgc_op_INPUT(struct cgc *c, int id) { (void)c, (void)id; }
void cgc_op_PARAM(struct cgc *c, int id) { (void)c, (void)id; }

void cgc_op_CONST(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    double v = ir_attr_f(n, ATTR_VALUE);
    char lit[64];
    if (n->type.dtype == DT_I32)
        snprintf(lit, sizeof lit, "nrt_to_i32(%.17g)", v);
    else
        cgc_float(v, lit, sizeof lit);
    cgc_emit(c, "for (int64_t i = 0; i < %s; i++) v%d[i] = %s;", cg_xs(cgc_count(&n->type.shape)), id, lit);
}

void cgc_op_ASSIGN(struct cgc *c, int id) { (void)c, (void)id; /* copied into the buffer at the end */ }

/* --------------------------------------------------------- elementwise */

/* The ops of codegen/formulas.def: their formula in a nest. */
#define FORMULA(op, ...) \
    void cgc_op_##op(struct cgc *c, int id) { ewise(c, id); }
#include "codegen/formulas.def"

void cgc_op_STOP_GRADIENT(struct cgc *c, int id) { (void)c, (void)id; }

/* A gradient bucket's member is an alias whose bucket c_emit.c starts and waits
 * for; otherwise a copy of the operand reduced over the ranks, blocking. */
void cgc_op_ALLREDUCE(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    if (ir_attr_i(n, ATTR_BUCKET) >= 0) return;
    char cnt[CGC_XSTR_MAX];
    cgc_xstr(cgc_count(&n->type.shape), cnt, sizeof cnt);
    cgc_emit(c, "memcpy(v%d, v%d, sizeof(float) * (size_t)(%s));", id, n->args[0], cnt);
    cgc_emit(c, "nrt_dp_allreduce(ctx, v%d, (int64_t)(%s));", id, cnt);
}

/* A copy of the operand summed over the ranks that hold items, blocking. */
void cgc_op_ALLREDUCE_SUM(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    char cnt[CGC_XSTR_MAX];
    cgc_xstr(cgc_count(&n->type.shape), cnt, sizeof cnt);
    cgc_emit(c, "memcpy(v%d, v%d, sizeof(float) * (size_t)(%s));", id, n->args[0], cnt);
    cgc_emit(c, "nrt_dp_allsum(ctx, v%d, (int64_t)(%s));", id, cnt);
}

/* Sizes before, along and after `axis` of s. */
static void split_axis(const struct shape *s, int64_t axis, struct cgc_x *outer, struct cgc_x *along,
                       struct cgc_x *inner) {
    *outer = cgc_dims_prod(s, 0, (int)axis);
    *along = cgc_dim(s, (int)axis);
    *inner = cgc_dims_prod(s, (int)axis + 1, s->rank);
}

/* x + b broadcast along `axis`: a nest whose bias stride is 1 on the axis. */
void cgc_op_BIAS_ADD(struct cgc *c, int id) {
    const struct shape *y = shape_of(c, id);
    int64_t axis = ir_attr_i(cgc_node(c, id), ATTR_AXIS);
    struct cg_nest ns;
    cg_nest_init(&ns, y, 3);
    cgc_strides(y, ns.st[1]);
    cg_nest_read(&ns, 2, y, y, (int)axis);
    nest_open(c, &ns);
    cgc_emit(c, "v%d[%s] = v%d[%s] + v%d[%s];", id, ns.idx[0], arg(c, id, 0), ns.idx[1], arg(c, id, 1),
             ns.idx[2]);
    nest_close(c, &ns);
}

/* ----------------------------------------------------------- reductions */

struct shape cgc_kept_shape(const struct cgc *c, int id, struct cgc_x *count) {
    int na;
    const int64_t *axes = ir_attr_v(cgc_node(c, id), ATTR_AXES, &na);
    struct shape s = *arg_shape(c, id, 0);
    *count = xk(1);
    for (int i = 0; i < s.rank; i++) {
        bool drop = na == 0;
        for (int k = 0; k < na; k++) drop |= axes[k] == i;
        if (drop) *count = cgc_mul(*count, cgc_dim(&s, i)), s.dim[i] = 1;
    }
    return s;
}

/* Float sums (SUM, MEAN, VARIANCE, SUM_TO; bias gradients and batch-norm
 * statistics among them) accumulate in double, in the node's scratch (one
 * double per result, `d<id>`), and are rounded to float once: accurate to
 * float32 rounding of the exact sum at any size (a float accumulator drifts by
 * up to count x eps: batch norm's variance over 32 images was 1.5e-4 off). */

/* A sum whose innermost loop runs along contiguous source elements into one
 * destination element (bias gradients: sums over the batch and the pixels of
 * each channel; batch norm's statistics): that loop accumulates CG_SUM_LANES
 * independent partial sums, which the compiler keeps in vector registers,
 * instead of one serial chain through memory. With `center` (an array of
 * doubles indexed like dst) it sums squared deviations from center instead:
 * the variance's second pass. False (nothing printed) when the nest has
 * another form. */
static bool sum_rows(struct cgc *c, struct cg_nest *ns, int src, const char *dst, const char *center) {
    struct cgc_x len;
    if (!cg_nest_row_sum(ns, &len)) return false;
    nest_open(c, ns);
    cgc_emit(c, "const float *const row = v%d + %s;", src, ns->idx[0]);
    cgc_emit(c, "double acc[%d] = {0}, sum = 0;", CG_SUM_LANES);
    if (center) cgc_emit(c, "const double mu = %s[%s];", center, ns->idx[1]);
    cgc_emit(c, "int64_t j = 0;");
    cgc_emit(c, "for (; j + %d <= %s; j += %d)", CG_SUM_LANES, cg_xs(len), CG_SUM_LANES);
    if (center)
        cgc_emit(
            c,
            "    for (int l = 0; l < %d; l++) { const double d = (double)row[j + l] - mu; acc[l] += d * d; }",
            CG_SUM_LANES);
    else
        cgc_emit(c, "    for (int l = 0; l < %d; l++) acc[l] += row[j + l];", CG_SUM_LANES);
    if (len.n || len.k % CG_SUM_LANES) { /* no tail loop that never runs (GCC warns about it) */
        if (center)
            cgc_emit(c, "for (; j < %s; j++) { const double d = (double)row[j] - mu; sum += d * d; }",
                     cg_xs(len));
        else
            cgc_emit(c, "for (; j < %s; j++) sum += row[j];", cg_xs(len));
    }
    cgc_emit(c, "for (int l = 0; l < %d; l++) sum += acc[l];", CG_SUM_LANES);
    cgc_emit(c, "%s[%s] += sum;", dst, ns->idx[1]);
    nest_close(c, ns);
    return true;
}

/* The loop nest over x (node id's operand) and its index into kept. */
static void reduce_nest(struct cgc *c, int id, const struct shape *kept, struct cg_nest *ns) {
    const struct shape *x = arg_shape(c, id, 0);
    cg_nest_init(ns, x, 2);
    cg_nest_read(ns, 1, kept, x, -1);
}

/* Loops over x (node id's operand) with dst[kept index] OP= body. */
static void reduce_loop(struct cgc *c, int id, const struct shape *kept, const char *dst, const char *body) {
    struct cg_nest ns;
    reduce_nest(c, id, kept, &ns);
    if (strcmp(body, "$0 += $1;") == 0 && sum_rows(c, &ns, arg(c, id, 0), dst, NULL)) return;
    nest_open(c, &ns);
    /* body: $0 the destination element, $1 the source element, $2 the
     * destination index. */
    char line[1024], ops[3][CG_OPERAND_MAX];
    snprintf(ops[0], sizeof ops[0], "%s[%s]", dst, ns.idx[1]);
    snprintf(ops[1], sizeof ops[1], "v%d[%s]", arg(c, id, 0), ns.idx[0]);
    snprintf(ops[2], sizeof ops[2], "%s", ns.idx[1]);
    cg_subst(line, sizeof line, body, ops, 3);
    cgc_emit(c, "%s", line);
    nest_close(c, &ns);
}

static void reduce(struct cgc *c, int id, const char *init, const char *body, bool mean) {
    struct cgc_x count;
    struct shape kept = cgc_kept_shape(c, id, &count);
    struct cgc_x ny = cgc_count(shape_of(c, id));
    char dst[16];
    snprintf(dst, sizeof dst, "v%d", id);
    cgc_emit(c, "for (int64_t i = 0; i < %s; i++) v%d[i] = %s;", cg_xs(ny), id, init);
    reduce_loop(c, id, &kept, dst, body);
    if (mean)
        cgc_emit(c, "for (int64_t i = 0; i < %s; i++) v%d[i] /= (float)(%s);", cg_xs(ny), id, cg_xs(count));
}

/* A float sum over `kept` (the destination's layout) in double: d<id>, then
 * v<id> = d<id> (divided by count for a mean). */
static void reduce_f32(struct cgc *c, int id, const struct shape *kept, struct cgc_x count, bool mean) {
    struct cgc_x ny = cgc_count(shape_of(c, id));
    char dst[16];
    snprintf(dst, sizeof dst, "d%d", id);
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "double *const d%d = (double *)(void *)s%d;", id, id);
    cgc_emit(c, "for (int64_t i = 0; i < %s; i++) d%d[i] = 0;", cg_xs(ny), id);
    reduce_loop(c, id, kept, dst, "$0 += $1;");
    if (mean)
        cgc_emit(c, "for (int64_t i = 0; i < %s; i++) v%d[i] = (float)(d%d[i] / (double)(%s));", cg_xs(ny),
                 id, id, cg_xs(count));
    else
        cgc_emit(c, "for (int64_t i = 0; i < %s; i++) v%d[i] = (float)d%d[i];", cg_xs(ny), id, id);
    c->indent--;
    cgc_emit(c, "}");
}

bool cg_sum_planes(const struct ir_func *f, const struct ir_node *n, int64_t *ch, int64_t *hw) {
    if (n->op != OP_SUM || n->type.dtype != DT_F32) return false;
    int na;
    const int64_t *axes = ir_attr_v(n, ATTR_AXES, &na);
    const struct shape *x = &f->nodes[n->args[0]].type.shape;
    if (x->rank < 3 || na != x->rank - 1) return false;
    *hw = 1;
    for (int i = 1; i < x->rank; i++) {
        if (x->dim[i] == IR_DIM_N) return false;
        if (i >= 2) *hw *= x->dim[i];
    }
    for (int i = 0; i < x->rank; i++) { /* every axis but 1 reduced, and only those */
        bool in = false;
        for (int k = 0; k < na; k++) in |= axes[k] == i;
        if (in != (i != 1)) return false;
    }
    *ch = x->dim[1];
    return true;
}

void cgc_op_SUM(struct cgc *c, int id) {
    int64_t ch, hw;
    if (cg_sum_planes(c->f, cgc_node(c, id), &ch, &hw)) {
        cgc_emit(c, "nrt_sum_planes(%s, %lld, %lld, v%d, v%d, (double *)(void *)s%d);",
                 cg_xs(cgc_dim(arg_shape(c, id, 0), 0)), (long long)ch, (long long)hw, arg(c, id, 0), id, id);
        return;
    }
    if (cgc_node(c, id)->type.dtype == DT_I32) {
        reduce(c, id, "0", "$0 = nrt_to_i32((double)$0 + (double)$1);", false);
        return;
    }
    struct cgc_x count;
    struct shape kept = cgc_kept_shape(c, id, &count);
    reduce_f32(c, id, &kept, count, false);
}

/* Batch norm's statistics in one pass: node id (MEAN or VARIANCE) reduces f32
 * x [N, C, ...] over every axis but 1 into [C], x's planes of 16 floats or
 * more. */
static bool bn_stat_node(const struct cgc *c, int id, struct cgc_x *hw) {
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *x = arg_shape(c, id, 0);
    int na;
    const int64_t *axes = ir_attr_v(n, ATTR_AXES, &na);
    if (n->type.dtype != DT_F32 || ir_attr_i(n, ATTR_KEEPDIMS) || x->rank < 3 || na != x->rank - 1)
        return false;
    for (int i = 0; i < na; i++)
        if (axes[i] != (i == 0 ? 0 : i + 1)) return false;
    *hw = cgc_dims_prod(x, 2, x->rank);
    return !hw->n && hw->k >= 16;
}

/* For a VARIANCE node: the MEAN whose value it shares (cgc_same_mean) when
 * both are batch-norm statistics and nothing reads the mean before the
 * variance, so that nrt_batchnorm_stats computes both at the variance (the
 * MEAN then prints nothing); -1 otherwise. */
static int bn_stats_mean(const struct cgc *c, int var) {
    struct cgc_x hw;
    if (!c->vals || cgc_node(c, var)->op != OP_VARIANCE || c->vals[var].kernel >= 0 ||
        !bn_stat_node(c, var, &hw))
        return -1;
    int mean = cgc_same_mean(c, var);
    if (mean < 0) return -1;
    for (int j = mean + 1; j < var; j++) {
        const struct ir_node *n = cgc_node(c, j);
        for (int a = 0; a < n->nargs; a++)
            if (n->args[a] == mean) return -1;
    }
    return mean;
}

/* For a MEAN node: the VARIANCE that computes it with itself (bn_stats_mean), or -1. */
static int bn_stats_var(const struct cgc *c, int mean) {
    if (!c->vals) return -1;
    const struct ir_node *m = cgc_node(c, mean);
    for (int j = mean + 1; j < ir_func_len(c->f) && j <= c->vals[mean].last_use; j++) {
        const struct ir_node *n = cgc_node(c, j);
        if (n->op == OP_VARIANCE && n->args[0] == m->args[0] && bn_stats_mean(c, j) == mean) return j;
    }
    return -1;
}

void cgc_op_MEAN(struct cgc *c, int id) {
    if (bn_stats_var(c, id) >= 0) { /* computed with the variance */
        cgc_emit(c, "(void)s%d;", id);
        return;
    }
    struct cgc_x count;
    struct shape kept = cgc_kept_shape(c, id, &count);
    reduce_f32(c, id, &kept, count, true);
}

void cgc_op_MAX(struct cgc *c, int id) {
    bool i32 = cgc_node(c, id)->type.dtype == DT_I32;
    reduce(c, id, i32 ? "INT32_MIN" : "-INFINITY", "if ($1 > $0) $0 = $1;", false);
}

/* Two passes, as the interpreter: the mean into scratch, then the mean squared
 * deviation. */
int cgc_same_mean(const struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    int na, nb;
    const int64_t *axes = ir_attr_v(n, ATTR_AXES, &na);
    for (int j = id - 1; j >= 0; j--) {
        const struct ir_node *m = cgc_node(c, j);
        if (m->op != OP_MEAN || m->args[0] != n->args[0] || c->vals[j].kernel >= 0 ||
            c->vals[j].last_use < id)
            continue;
        const int64_t *mx = ir_attr_v(m, ATTR_AXES, &nb);
        if (na != nb || memcmp(axes, mx, sizeof *axes * (size_t)na) != 0) continue;
        if (ir_attr_i(m, ATTR_KEEPDIMS) != ir_attr_i(n, ATTR_KEEPDIMS) ||
            !shape_equal(&m->type.shape, &n->type.shape))
            continue;
        return j;
    }
    return -1;
}

/* In double (the scratch holds the mean m<id> and the sum of squares d<id>):
 * the mean, or the MEAN node's (its float rounding changes the sum of squared
 * deviations by count x (rounding)^2 only), then the mean squared deviation. */
void cgc_op_VARIANCE(struct cgc *c, int id) {
    int bn_mean = bn_stats_mean(c, id);
    if (bn_mean >= 0) { /* batch norm's statistics: both in one pass by libnetrt (runtime/norm.c) */
        const struct shape *x = arg_shape(c, id, 0);
        struct cgc_x hw = cgc_dims_prod(x, 2, x->rank);
        cgc_emit(c, "(void)s%d;", id);
        cgc_emit(c, "nrt_batchnorm_stats(%s, %lld, %s, v%d, v%d, v%d);", cg_xs(cgc_dim(x, 0)),
                 (long long)x->dim[1], cg_xs(hw), arg(c, id, 0), bn_mean, id);
        return;
    }
    struct cgc_x count;
    struct shape kept = cgc_kept_shape(c, id, &count);
    struct cgc_x ny = cgc_count(shape_of(c, id));
    char dst[16], body[128];
    snprintf(dst, sizeof dst, "m%d", id);
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "double *const m%d = (double *)(void *)s%d, *const d%d = m%d + %s;", id, id, id, id,
             cg_xs(ny));
    int mean = c->vals ? cgc_same_mean(c, id) : -1;
    if (mean >= 0) {
        cgc_emit(c, "for (int64_t i = 0; i < %s; i++) m%d[i] = v%d[i], d%d[i] = 0;", cg_xs(ny), id, mean, id);
    } else {
        cgc_emit(c, "for (int64_t i = 0; i < %s; i++) m%d[i] = 0, d%d[i] = 0;", cg_xs(ny), id, id);
        reduce_loop(c, id, &kept, dst, "$0 += $1;");
        cgc_emit(c, "for (int64_t i = 0; i < %s; i++) m%d[i] /= (double)(%s);", cg_xs(ny), id, cg_xs(count));
    }
    /* The deviation pass writes d<id> at the same index as m<id>. */
    struct cg_nest ns;
    reduce_nest(c, id, &kept, &ns);
    char squares[16];
    snprintf(squares, sizeof squares, "d%d", id);
    if (!sum_rows(c, &ns, arg(c, id, 0), squares, dst)) { /* into d<id>, centred on m<id> */
        snprintf(body, sizeof body, "{ const double d = (double)$1 - $0; d%d[$2] += d * d; }", id);
        reduce_loop(c, id, &kept, dst, body);
    }
    cgc_emit(c, "for (int64_t i = 0; i < %s; i++) v%d[i] = (float)(d%d[i] / (double)(%s));", cg_xs(ny), id,
             id, cg_xs(count));
    c->indent--;
    cgc_emit(c, "}");
}

void cgc_op_ARGMAX(struct cgc *c, int id) {
    struct cgc_x outer, k, inner;
    split_axis(arg_shape(c, id, 0), ir_attr_i(cgc_node(c, id), ATTR_AXIS), &outer, &k, &inner);
    int x = arg(c, id, 0);
    cgc_emit(c, "for (int64_t o = 0; o < %s; o++)", cg_xs(outer));
    cgc_emit(c, "    for (int64_t in = 0; in < %s; in++) {", cg_xs(inner));
    cgc_emit(c, "        const int64_t base = o * (%s) * (%s) + in;", cg_xs(k), cg_xs(inner));
    cgc_emit(c, "        int64_t best = 0;");
    cgc_emit(c, "        for (int64_t j = 1; j < %s; j++)", cg_xs(k));
    cgc_emit(c, "            if (v%d[base + j * (%s)] > v%d[base + best * (%s)]) best = j;", x, cg_xs(inner),
             x, cg_xs(inner));
    cgc_emit(c, "        v%d[o * (%s) + in] = (int32_t)best;", id, cg_xs(inner));
    cgc_emit(c, "    }");
}

void cgc_op_SUM_TO(struct cgc *c, int id) {
    const struct shape *y = shape_of(c, id);
    char dst[16];
    snprintf(dst, sizeof dst, "v%d", id);
    if (cgc_node(c, id)->type.dtype != DT_I32) {
        reduce_f32(c, id, y, xk(1), false);
        return;
    }
    cgc_emit(c, "for (int64_t i = 0; i < %s; i++) v%d[i] = 0;", cg_xs(cgc_count(y)), id);
    reduce_loop(c, id, y, dst, "$0 = nrt_to_i32((double)$0 + (double)$1);");
}

/* --------------------------------------------------------------- matmul */

void cgc_op_MATMUL(struct cgc *c, int id) { cg_lib_matmul(c, id); }
void cgc_op_MATMUL_BSUM(struct cgc *c, int id) { cg_lib_matmul_bsum(c, id); }

/* ----------------------------------------------------------------- shape */

void cgc_op_RESHAPE(struct cgc *c, int id) { (void)c, (void)id; }

void cgc_op_TRANSPOSE(struct cgc *c, int id) {
    const struct shape *y = shape_of(c, id), *x = arg_shape(c, id, 0);
    const int64_t *perm = ir_attr_v(cgc_node(c, id), ATTR_PERM, NULL);
    struct cg_nest ns;
    cg_nest_init(&ns, y, 2);
    struct cgc_x sx[IR_MAX_RANK];
    cgc_strides(x, sx);
    for (int d = 0; d < y->rank; d++) ns.st[1][d] = sx[perm[d]];
    nest_open(c, &ns);
    cgc_emit(c, "v%d[%s] = v%d[%s];", id, ns.idx[0], arg(c, id, 0), ns.idx[1]);
    nest_close(c, &ns);
}

/* Copies `len` rows of every outer block of operand a (rows `from`...) into rows
 * `to`... of node id, along axis. */
static void copy_along(struct cgc *c, int id, int a, int64_t axis, int64_t from, int64_t to, int64_t len) {
    const struct shape *x = arg_shape(c, id, a), *y = shape_of(c, id);
    struct cgc_x outer = cgc_dims_prod(y, 0, (int)axis), inner = cgc_dims_prod(y, (int)axis + 1, y->rank);
    int64_t kx = x->dim[axis], ky = y->dim[axis];
    cgc_emit(c, "for (int64_t o = 0; o < %s; o++)", cg_xs(outer));
    cgc_emit(c,
             "    memcpy(v%d + (o * %lld + %lld) * (%s), v%d + (o * %lld + %lld) * (%s), sizeof *v%d * "
             "(size_t)(%s));",
             id, (long long)ky, (long long)to, cg_xs(inner), arg(c, id, a), (long long)kx, (long long)from,
             cg_xs(inner), id, cg_xs(cgc_mul(xk(len), inner)));
}

void cgc_op_SLICE(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    copy_along(c, id, 0, ir_attr_i(n, ATTR_AXIS), ir_attr_i(n, ATTR_START), 0, ir_attr_i(n, ATTR_SIZE));
}

void cgc_op_PAD(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    int64_t axis = ir_attr_i(n, ATTR_AXIS);
    cgc_emit(c, "memset(v%d, 0, sizeof *v%d * (size_t)(%s));", id, id, cg_xs(cgc_count(&n->type.shape)));
    copy_along(c, id, 0, axis, 0, ir_attr_i(n, ATTR_BEFORE), arg_shape(c, id, 0)->dim[axis]);
}

void cgc_op_CONCAT(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    int64_t axis = ir_attr_i(n, ATTR_AXIS), at = 0;
    for (int a = 0; a < n->nargs; a++) {
        int64_t k = arg_shape(c, id, a)->dim[axis];
        copy_along(c, id, a, axis, 0, at, k);
        at += k;
    }
}

/* --------------------------------------------------------------- softmax */

/* Loops over every row along `axis` of the operand: base and stride in scope. */
static void axis_rows_open(struct cgc *c, int id, struct cgc_x *k, struct cgc_x *inner) {
    struct cgc_x outer;
    split_axis(arg_shape(c, id, 0), ir_attr_i(cgc_node(c, id), ATTR_AXIS), &outer, k, inner);
    cgc_emit(c, "for (int64_t o = 0; o < %s; o++)", cg_xs(outer));
    cgc_emit(c, "    for (int64_t in = 0; in < %s; in++) {", cg_xs(*inner));
    c->indent += 2;
    cgc_emit(c, "const int64_t base = o * (%s) * (%s) + in, st = %s;", cg_xs(*k), cg_xs(*inner),
             cg_xs(*inner));
}

static void axis_rows_close(struct cgc *c) {
    c->indent -= 2;
    cgc_emit(c, "    }");
}

static void softmax(struct cgc *c, int id, bool log_out) {
    struct cgc_x k, inner;
    int x = arg(c, id, 0);
    axis_rows_open(c, id, &k, &inner);
    cgc_emit(c, "float mx = -INFINITY;");
    cgc_emit(c, "for (int64_t j = 0; j < %s; j++) mx = v%d[base + j * st] > mx ? v%d[base + j * st] : mx;",
             cg_xs(k), x, x);
    cgc_emit(c, "double s = 0;");
    cgc_emit(c, "for (int64_t j = 0; j < %s; j++) s += exp((double)v%d[base + j * st] - mx);", cg_xs(k), x);
    cgc_emit(c, "const double lse = isinf(mx) ? mx : mx + log(s);");
    if (log_out)
        cgc_emit(c,
                 "for (int64_t j = 0; j < %s; j++) v%d[base + j * st] = (float)(v%d[base + j * st] - lse);",
                 cg_xs(k), id, x);
    else
        cgc_emit(
            c, "for (int64_t j = 0; j < %s; j++) v%d[base + j * st] = (float)exp(v%d[base + j * st] - lse);",
            cg_xs(k), id, x);
    axis_rows_close(c);
}

void cgc_op_SOFTMAX(struct cgc *c, int id) { softmax(c, id, false); }
void cgc_op_LOG_SOFTMAX(struct cgc *c, int id) { softmax(c, id, true); }

/* Rows of the last axis (contiguous); with causal, row i of each [Tq, Tk] block
 * keeps its first i + Tk - Tq + 1 entries (clamped), the rest are 0. */
void cgc_op_ATTN_SOFTMAX(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *s = &n->type.shape;
    int64_t tk = s->dim[s->rank - 1], tq = s->dim[s->rank - 2];
    bool causal = ir_attr_i(n, ATTR_CAUSAL) != 0;
    struct cgc_x rows = cgc_dims_prod(s, 0, s->rank - 1);
    cgc_emit(c, "for (int64_t r = 0; r < %s; r++) {", cg_xs(rows));
    cgc_emit(c, "    const float *x = v%d + r * %lld;", arg(c, id, 0), (long long)tk);
    cgc_emit(c, "    float *y = v%d + r * %lld;", id, (long long)tk);
    if (causal)
        cgc_emit(c, "    const int64_t lim = r %% %lld + %lld, kn = lim < 0 ? 0 : lim > %lld ? %lld : lim;",
                 (long long)tq, (long long)(tk - tq + 1), (long long)tk, (long long)tk);
    else
        cgc_emit(c, "    const int64_t kn = %lld;", (long long)tk);
    cgc_emit(c, "    float mx = -INFINITY, s = 0.0f;");
    cgc_emit(c, "    for (int64_t j = 0; j < kn; j++) mx = x[j] > mx ? x[j] : mx;");
    cgc_emit(c, "    for (int64_t j = 0; j < kn; j++) {");
    cgc_emit(c, "        y[j] = nrt_expf(%s * (x[j] - mx));", cg_fs(ir_attr_f(n, ATTR_SCALE)));
    cgc_emit(c, "        s += y[j];");
    cgc_emit(c, "    }");
    cgc_emit(c, "    const float inv = 1.0f / s;");
    cgc_emit(c, "    for (int64_t j = 0; j < kn; j++) y[j] *= inv;");
    cgc_emit(c, "    for (int64_t j = kn; j < %lld; j++) y[j] = 0.0f;", (long long)tk);
    cgc_emit(c, "}");
}

/* The fused self-attention core, by libnetrt (runtime/attn.c) in the node's scratch. */
static void attention(struct cgc *c, int id, bool grad) {
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *x = arg_shape(c, id, 0);
    char scale[64];
    cgc_float(ir_attr_f(n, ATTR_SCALE), scale, sizeof scale);
    cgc_emit(c, "{");
    cgc_emit(c, "    const struct nrt_attn geo = {%s, %lld, %lld, %lld, %s, %d};", cg_xs(cgc_dim(x, 0)),
             (long long)x->dim[1], (long long)(x->dim[2] / 3), (long long)ir_attr_i(n, ATTR_HEADS), scale,
             (int)ir_attr_i(n, ATTR_CAUSAL));
    if (grad)
        cgc_emit(c, "    nrt_attention_grad(&geo, v%d, v%d, v%d, v%d, s%d);", arg(c, id, 0), arg(c, id, 1),
                 arg(c, id, 2), id, id);
    else
        cgc_emit(c, "    nrt_attention(&geo, v%d, v%d, s%d);", arg(c, id, 0), id, id);
    cgc_emit(c, "}");
}

void cgc_op_ATTENTION(struct cgc *c, int id) { attention(c, id, false); }
void cgc_op_ATTENTION_GRAD(struct cgc *c, int id) { attention(c, id, true); }

/* (y, dy): softmax dx = y (dy - sum(dy y)); log-softmax dx = dy - exp(y) sum(dy). */
static void softmax_grad(struct cgc *c, int id, bool log_in) {
    struct cgc_x k, inner;
    int y = arg(c, id, 0), dy = arg(c, id, 1);
    axis_rows_open(c, id, &k, &inner);
    cgc_emit(c, "double s = 0;");
    if (log_in) {
        cgc_emit(c, "for (int64_t j = 0; j < %s; j++) s += v%d[base + j * st];", cg_xs(k), dy);
        cgc_emit(c, "for (int64_t j = 0; j < %s; j++)", cg_xs(k));
        cgc_emit(
            c, "    v%d[base + j * st] = (float)(v%d[base + j * st] - exp((double)v%d[base + j * st]) * s);",
            id, dy, y);
    } else {
        cgc_emit(c, "for (int64_t j = 0; j < %s; j++) s += (double)v%d[base + j * st] * v%d[base + j * st];",
                 cg_xs(k), dy, y);
        cgc_emit(c, "for (int64_t j = 0; j < %s; j++)", cg_xs(k));
        cgc_emit(c, "    v%d[base + j * st] = (float)(v%d[base + j * st] * (v%d[base + j * st] - s));", id, y,
                 dy);
    }
    axis_rows_close(c);
}

void cgc_op_SOFTMAX_GRAD(struct cgc *c, int id) { softmax_grad(c, id, false); }
void cgc_op_LOG_SOFTMAX_GRAD(struct cgc *c, int id) { softmax_grad(c, id, true); }

/* ---------------------------------------------------------------- losses */

/* Mean over every element of a per-element loss `l`, in double; p and t are in
 * scope as doubles. */
static void ewise_loss(struct cgc *c, int id, const char *l) {
    struct cgc_x cnt = cgc_count(arg_shape(c, id, 0));
    cgc_emit(c, "{");
    cgc_emit(c, "    double sum = 0;");
    cgc_emit(c, "    for (int64_t i = 0; i < %s; i++) {", cg_xs(cnt));
    cgc_emit(c, "        const double p = v%d[i], t = v%d[i];", arg(c, id, 0), arg(c, id, 1));
    cgc_emit(c, "        sum += %s;", l);
    cgc_emit(c, "    }");
    cgc_emit(c, "    v%d[0] = (float)(sum / (double)(%s));", id, cg_xs(cnt));
    cgc_emit(c, "}");
}

/* dx = g / count * d(p, t); the statements in d set `d`. */
static void ewise_loss_grad(struct cgc *c, int id, const char *d) {
    struct cgc_x cnt = cgc_count(arg_shape(c, id, 0));
    cgc_emit(c, "{");
    cgc_emit(c, "    const double g = (double)v%d[0] / (double)(%s);", arg(c, id, 2), cg_xs(cnt));
    cgc_emit(c, "    for (int64_t i = 0; i < %s; i++) {", cg_xs(cnt));
    cgc_emit(c, "        const double p = v%d[i], t = v%d[i];", arg(c, id, 0), arg(c, id, 1));
    cgc_emit(c, "        double d;");
    cgc_emit(c, "        %s", d);
    cgc_emit(c, "        v%d[i] = (float)(g * d);", id);
    cgc_emit(c, "    }");
    cgc_emit(c, "}");
}

/* The losses of codegen/formulas.def and their gradients. */
#define LOSS(op, loss, grad)                                             \
    void cgc_op_##op(struct cgc *c, int id) { ewise_loss(c, id, loss); } \
    void cgc_op_##op##_GRAD(struct cgc *c, int id) { ewise_loss_grad(c, id, grad); }
#include "codegen/formulas.def"

/* Opens a loop over the rows of scores x [rows, classes]: xr, lse and, with i32
 * labels, the checked label `y` are in scope. */
static void class_rows_open(struct cgc *c, int id, bool need_lse) {
    const struct shape *xs_ = arg_shape(c, id, 0);
    bool labels = cgc_arg(c, id, 1)->type.dtype == DT_I32;
    long long cls = (long long)xs_->dim[1];
    cgc_emit(c, "for (int64_t r = 0; r < %s; r++) {", cg_xs(cgc_dim(xs_, 0)));
    c->indent++;
    cgc_emit(c, "const float *xr = v%d + r * %lld;", arg(c, id, 0), cls);
    if (need_lse) {
        char pad[64], n[24];
        snprintf(pad, sizeof pad, "%*s", 4 * c->indent, "");
        snprintf(n, sizeof n, "%lld", cls);
        cg_row_lse(c->out, pad, &cg_lang_c, n);
    }
    if (labels) {
        cgc_emit(c, "const int32_t y = v%d[r];", arg(c, id, 1));
        cgc_emit(c, "if (y < 0 || y >= %lld) {", cls);
        cgc_emit(c,
                 "    nrt_ctx_fail(ctx, \"label %%d of batch item %%lld is out of range for %lld classes\", "
                 "(int)y, "
                 "(long long)r);",
                 cls);
        cgc_emit(c, "    return;");
        cgc_emit(c, "}");
    }
}

static void class_rows_close(struct cgc *c) {
    c->indent--;
    cgc_emit(c, "}");
}

/* Mean over rows of -sum_c t_c log_softmax(x)_c; t one-hot from labels. */
void cgc_op_CROSS_ENTROPY(struct cgc *c, int id) {
    bool labels = cgc_arg(c, id, 1)->type.dtype == DT_I32;
    const struct shape *x = arg_shape(c, id, 0);
    long long cls = (long long)x->dim[1];
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "double sum = 0;");
    class_rows_open(c, id, true);
    if (labels)
        cgc_emit(c, "sum += lse - xr[y];");
    else
        cgc_emit(c, "for (int64_t j = 0; j < %lld; j++) sum -= v%d[r * %lld + j] * (xr[j] - lse);", cls,
                 arg(c, id, 1), cls);
    class_rows_close(c);
    cgc_emit(c, "v%d[0] = (float)(sum / (double)(%s));", id, cg_xs(cgc_dim(x, 0)));
    c->indent--;
    cgc_emit(c, "}");
}

/* dx = (softmax(x) sum_c t_c - t) g / rows. */
void cgc_op_CROSS_ENTROPY_GRAD(struct cgc *c, int id) {
    bool labels = cgc_arg(c, id, 1)->type.dtype == DT_I32;
    const struct shape *x = arg_shape(c, id, 0);
    long long cls = (long long)x->dim[1];
    int t = arg(c, id, 1);
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "const double g = (double)v%d[0] / (double)(%s);", arg(c, id, 2), cg_xs(cgc_dim(x, 0)));
    class_rows_open(c, id, true);
    cgc_emit(c, "float *dr = v%d + r * %lld;", id, cls);
    if (labels) {
        cgc_emit(c,
                 "for (int64_t j = 0; j < %lld; j++) dr[j] = (float)(g * (exp(xr[j] - lse) - (j == y ? 1.0 : "
                 "0.0)));",
                 cls);
    } else {
        cgc_emit(c, "double ts = 0;");
        cgc_emit(c, "for (int64_t j = 0; j < %lld; j++) ts += v%d[r * %lld + j];", cls, t, cls);
        cgc_emit(c,
                 "for (int64_t j = 0; j < %lld; j++) dr[j] = (float)(g * (exp(xr[j] - lse) * ts - v%d[r * "
                 "%lld + j]));",
                 cls, t, cls);
    }
    class_rows_close(c);
    c->indent--;
    cgc_emit(c, "}");
}

/* Fraction of rows whose first argmax equals the label (or the target's). */
void cgc_op_ACCURACY(struct cgc *c, int id) {
    bool labels = cgc_arg(c, id, 1)->type.dtype == DT_I32;
    const struct shape *x = arg_shape(c, id, 0);
    long long cls = (long long)x->dim[1];
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "int64_t hits = 0;");
    class_rows_open(c, id, false);
    cgc_emit(c, "int64_t best = 0;");
    cgc_emit(c, "for (int64_t j = 1; j < %lld; j++) if (xr[j] > xr[best]) best = j;", cls);
    if (!labels) {
        cgc_emit(c, "const float *tr = v%d + r * %lld;", arg(c, id, 1), cls);
        cgc_emit(c, "int64_t y = 0;");
        cgc_emit(c, "for (int64_t j = 1; j < %lld; j++) if (tr[j] > tr[y]) y = j;", cls);
    }
    cgc_emit(c, "hits += best == y;");
    class_rows_close(c);
    cgc_emit(c, "v%d[0] = (float)((double)hits / (double)(%s));", id, cg_xs(cgc_dim(x, 0)));
    c->indent--;
    cgc_emit(c, "}");
}

/* ----------------------------------------------------------- convolution */

void cgc_op_CONV2D(struct cgc *c, int id) { cg_lib_conv(c, id); }
void cgc_op_CONV2D_GRAD_INPUT(struct cgc *c, int id) { cg_lib_conv(c, id); }
void cgc_op_CONV2D_GRAD_WEIGHT(struct cgc *c, int id) { cg_lib_conv(c, id); }
void cgc_op_CONV_TRANSPOSE2D(struct cgc *c, int id) { cg_lib_conv(c, id); }
void cgc_op_CONV2D_GRAD_WEIGHT_MAXPOOL(struct cgc *c, int id) { cg_lib_conv_grad_weight_maxpool(c, id); }

/* --------------------------------------------------------------- pooling */

void cgc_op_MAXPOOL2D(struct cgc *c, int id) { cg_lib_pool(c, id); }
void cgc_op_AVGPOOL2D(struct cgc *c, int id) { cg_lib_pool(c, id); }
void cgc_op_MAXPOOL2D_GRAD(struct cgc *c, int id) { cg_lib_pool(c, id); }
void cgc_op_AVGPOOL2D_GRAD(struct cgc *c, int id) { cg_lib_pool(c, id); }
void cgc_op_UPSAMPLE2D(struct cgc *c, int id) { cg_lib_upsample(c, id); }
void cgc_op_UPSAMPLE2D_GRAD(struct cgc *c, int id) { cg_lib_upsample(c, id); }

/* ---------------------------------------------------- dropout, batchnorm */

/* The mask of netrt.h's nrt_dropout_keep, regenerated alike by the gradient. */
static void dropout(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    double rate = ir_attr_f(n, ATTR_RATE);
    uint64_t seed = (uint64_t)ir_attr_i(n, ATTR_SEED);
    cgc_emit(c, "for (int64_t i = 0; i < %s; i++)", cg_xs(cgc_count(&n->type.shape)));
    cgc_emit(c, "    v%d[i] = nrt_dropout_keep(%lluull, ctx->step, (uint64_t)i, %luu) ? v%d[i] * %s : 0.0f;",
             id, (unsigned long long)seed, (unsigned long)nrt_dropout_threshold(rate), arg(c, id, 0),
             cg_fs(1.0 / (1.0 - rate)));
}

void cgc_op_DROPOUT(struct cgc *c, int id) { dropout(c, id); }
void cgc_op_DROPOUT_GRAD(struct cgc *c, int id) { dropout(c, id); }

/* gamma (x - mean) / sqrt(var + eps) + beta, per channel of axis 1. In a
 * kernel its formula (the same float operations per element), the statistics
 * read along axis 1 (cg_access_of). */
void cgc_op_BATCHNORM(struct cgc *c, int id) {
    const struct shape *x = arg_shape(c, id, 0);
    struct cgc_x outer = cgc_dim(x, 0), inner = cgc_dims_prod(x, 2, x->rank);
    long long ch = (long long)x->dim[1];
    int xv = arg(c, id, 0), g = arg(c, id, 1), b = arg(c, id, 2), mu = arg(c, id, 3), var = arg(c, id, 4);
    cgc_emit(c, "for (int64_t o = 0; o < %s; o++)", cg_xs(outer));
    cgc_emit(c, "    for (int64_t k = 0; k < %lld; k++) {", ch);
    cgc_emit(c, "        const int64_t at = (o * %lld + k) * (%s);", ch, cg_xs(inner));
    cgc_emit(c, "        const float sc = v%d[k] / sqrtf(v%d[k] + %s), mk = v%d[k], bk = v%d[k];", g, var,
             cg_fs(ir_attr_f(cgc_node(c, id), ATTR_EPS)), mu, b);
    cgc_emit(c, "        for (int64_t i = 0; i < %s; i++) v%d[at + i] = sc * (v%d[at + i] - mk) + bk;",
             cg_xs(inner), id, xv);
    cgc_emit(c, "    }");
}

/* Batch norm's training gradient, by libnetrt (runtime/norm.c) on x as
 * [n, c, inner]. */
static void bn_grad(struct cgc *c, int id, bool sums) {
    const struct shape *x = arg_shape(c, id, 0);
    struct cgc_x outer = cgc_dim(x, 0), inner = cgc_dims_prod(x, 2, x->rank);
    long long ch = (long long)x->dim[1];
    if (sums) {
        cgc_emit(c, "nrt_batchnorm_grad_sums(%s, %lld, %s, v%d, v%d, v%d, v%d);", cg_xs(outer), ch,
                 cg_xs(inner), arg(c, id, 0), arg(c, id, 1), arg(c, id, 2), id);
        return;
    }
    cgc_emit(c, "nrt_batchnorm_grad(%s, %lld, %s, %.17g, v%d, v%d, v%d, v%d, v%d, v%d, v%d);", cg_xs(outer),
             ch, cg_xs(inner), ir_attr_f(cgc_node(c, id), ATTR_EPS), arg(c, id, 0), arg(c, id, 1),
             arg(c, id, 2), arg(c, id, 3), arg(c, id, 4), arg(c, id, 5), id);
}

void cgc_op_BATCHNORM_GRAD_SUMS(struct cgc *c, int id) { bn_grad(c, id, true); }
void cgc_op_BATCHNORM_GRAD(struct cgc *c, int id) { bn_grad(c, id, false); }

/* Rows of the last axis, by libnetrt (runtime/norm.c). */
static void layernorm(struct cgc *c, int id, bool grad) {
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *x = arg_shape(c, id, 0);
    long long d = (long long)x->dim[x->rank - 1];
    struct cgc_x rows = cgc_dims_prod(x, 0, x->rank - 1);
    double eps = ir_attr_f(n, ATTR_EPS);
    if (grad && n->nargs == 4)
        cgc_emit(c, "nrt_layernorm_grad_res(%s, %lld, %.17g, v%d, v%d, v%d, v%d, v%d);", cg_xs(rows), d, eps,
                 arg(c, id, 0), arg(c, id, 1), arg(c, id, 2), arg(c, id, 3), id);
    else if (grad && n->nargs == 3)
        cgc_emit(c, "nrt_layernorm_grad_gamma(%s, %lld, %.17g, v%d, v%d, v%d, v%d);", cg_xs(rows), d, eps,
                 arg(c, id, 0), arg(c, id, 1), arg(c, id, 2), id);
    else if (grad)
        cgc_emit(c, "nrt_layernorm_grad(%s, %lld, %.17g, v%d, v%d, v%d);", cg_xs(rows), d, eps, arg(c, id, 0),
                 arg(c, id, 1), id);
    else
        cgc_emit(c, "nrt_layernorm(%s, %lld, %.17g, v%d, v%d);", cg_xs(rows), d, eps, arg(c, id, 0), id);
}

void cgc_op_LAYERNORM(struct cgc *c, int id) { layernorm(c, id, false); }
void cgc_op_LAYERNORM_GRAD(struct cgc *c, int id) { layernorm(c, id, true); }

/* Beta's and gamma's gradient sums over the rows, by libnetrt (runtime/norm.c). */
void cgc_op_LAYERNORM_GRAD_SUMS(struct cgc *c, int id) {
    const struct shape *y = arg_shape(c, id, 0);
    cgc_emit(c, "nrt_layernorm_grad_sums(%s, %lld, v%d, v%d, v%d);", cg_xs(cgc_dims_prod(y, 0, y->rank - 1)),
             (long long)y->dim[y->rank - 1], arg(c, id, 0), arg(c, id, 1), id);
}

/* ------------------------------------------------------------- recurrent */

void cgc_op_RNN(struct cgc *c, int id) {
    cgc_emit(c, "{");
    c->indent++;
    cg_rnn_geo(c, id, -1, 2, 0);
    cgc_emit(c, "nrt_rnn_forward(&geo, v%d, v%d, v%d, v%d, v%d, v%d, v%d, v%d, s%d);", arg(c, id, 0),
             arg(c, id, 1), arg(c, id, 2), arg(c, id, 3), arg(c, id, 4), arg(c, id, 5), arg(c, id, 6), id,
             id);
    c->indent--;
    cgc_emit(c, "}");
}

void cgc_op_RNN_BPTT(struct cgc *c, int id) {
    cgc_emit(c, "{");
    c->indent++;
    cg_rnn_geo(c, id, 1, 0, -1);
    cgc_emit(c, "nrt_rnn_bptt(&geo, v%d, v%d, v%d, v%d, v%d, v%d, s%d);", arg(c, id, 0), arg(c, id, 1),
             arg(c, id, 2), arg(c, id, 3), arg(c, id, 4), id, id);
    c->indent--;
    cgc_emit(c, "}");
}

void cgc_op_RNN_GRAD(struct cgc *c, int id) {
    cgc_emit(c, "{");
    c->indent++;
    cg_rnn_geo(c, id, 4, 3, 1);
    cgc_emit(c, "nrt_rnn_grad(&geo, %d, v%d, v%d, v%d, v%d, v%d, v%d);",
             (int)ir_attr_i(cgc_node(c, id), ATTR_WRT), arg(c, id, 0), arg(c, id, 1), arg(c, id, 2),
             arg(c, id, 4), arg(c, id, 5), id);
    c->indent--;
    cgc_emit(c, "}");
}

/* --------------------------------------------------------------- kernels */

/* Whether node x is a member of k. */
static bool kernel_member(const struct cgc *c, const struct cgc_kernel *k, int x) {
    return c->vals[x].kernel >= 0 && c->vals[x].kernel == c->vals[k->root].kernel;
}

bool cgc_kernel_stores(const struct cgc_kernel *k, int m) {
    for (size_t i = 0; i < vec_len(k->outputs); i++)
        if (k->outputs[i] == m) return true;
    return false;
}

int cgc_kernel_inplace(const struct cgc *c, const struct cgc_kernel *k, int x) {
    int b = c->vals[x].buffer;
    for (size_t i = 0; b >= 0 && i < vec_len(k->outputs); i++)
        if (c->vals[k->outputs[i]].buffer == b) return k->outputs[i];
    return -1;
}

/* Whether member m is read after the kernel: by a node outside it or as an output. */
static bool escapes(const struct cgc *c, const struct cgc_kernel *k, int m) {
    const struct ir_func *f = c->f;
    for (int u = m + 1; u < ir_func_len(f); u++) {
        const struct ir_node *un = &f->nodes[u];
        if (kernel_member(c, k, u)) continue;
        for (int a = 0; a < un->nargs; a++)
            if (un->args[a] == m) return true;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        if (f->outputs[o].value == m) return true;
    return false;
}

bool cgc_kernel_plan(const struct cgc *c, struct cgc_kernel *k) {
    k->head = -1;
    vec_clear(k->inputs);
    vec_clear(k->outputs);
    for (size_t i = 0; i < vec_len(k->members); i++) {
        int m = k->members[i];
        const struct ir_node *n = cgc_node(c, m);
        if (ir_kernel_head_op(n->op))
            k->head = m;
        else if (m == k->root || escapes(c, k, m))
            vec_push(k->outputs, m);
        for (int a = 0; a < n->nargs; a++) {
            int x = n->args[a];
            if (c->f->nodes[x].kernel == n->kernel) continue;
            bool dup = false;
            for (size_t j = 0; j < vec_len(k->inputs) && !dup; j++) dup = k->inputs[j] == x;
            if (!dup) vec_push(k->inputs, x);
        }
    }
    struct cg_access acc[CG_NEST_OPS];
    if (cgc_node(c, k->root)->op == OP_MAXPOOL2D) return cgc_kernel_conv_ep(c, k, NULL, NULL);
    /* The head's value may not escape: it is computed into the root's storage. */
    if (k->head >= 0 && k->head != k->root && escapes(c, k, k->head)) return false;
    return vec_len(k->members) >= 2 && k->head != k->root &&
           cg_kernel_accesses(c, k, acc, CG_NEST_OPS - 1) <= CG_NEST_OPS - 1;
}

void cgc_kernel_head(struct cgc *c, const struct cgc_kernel *k) {
    if (k->head < 0) return;
    cgc_emit(c, "float *const v%d = v%d; /* the head computes into the result */", k->head, k->root);
    cgc_op_emit(c, k->head);
}

bool cgc_kernel_outer(const struct cgc *c, const struct cgc_kernel *k, struct cgc_x *outer,
                      struct cgc_x *inner) {
    struct cg_nest ns;
    struct cg_access acc[CG_NEST_OPS];
    cg_kernel_nest(c, k, &ns, acc);
    if (ns.rank == 0) return false;
    *outer = ns.dim[0];
    *inner = xk(1);
    for (int d = 1; d < ns.rank; d++) *inner = cgc_mul(*inner, ns.dim[d]);
    return true;
}

/* The nest of kernel k; with `range`, its first loop runs over [lo, hi). */
static void kernel_loops(struct cgc *c, const struct cgc_kernel *k, bool range) {
    struct cg_nest ns;
    struct cg_access acc[CG_NEST_OPS];
    cg_kernel_nest(c, k, &ns, acc);
    ns.range = range && ns.rank > 0;
    nest_open(c, &ns);
    for (size_t i = 0; i < vec_len(k->members); i++) {
        char line[2304];
        int m = cg_kernel_line(c, k, i, &ns, acc, line, sizeof line);
        if (m < 0) continue;
        cgc_emit(c, "%s", line);
        bool used = cgc_kernel_stores(k, m);
        for (size_t u = i + 1; u < vec_len(k->members) && !used; u++) {
            const struct ir_node *un = cgc_node(c, k->members[u]);
            for (int a = 0; a < un->nargs; a++) used |= un->args[a] == m;
        }
        if (!used) cgc_emit(c, "(void)t%d;", m);
    }
    /* Stores last: an output stored in place into a buffer the kernel also
     * reads has been read, at this element, by then. */
    for (size_t i = 0; i < vec_len(k->outputs); i++)
        cgc_emit(c, "v%d[%s] = t%d;", k->outputs[i], ns.idx[0], k->outputs[i]);
    nest_close(c, &ns);
}

void cgc_kernel_range(struct cgc *c, const struct cgc_kernel *k) { kernel_loops(c, k, true); }

bool cgc_kernel_conv_ep(const struct cgc *c, const struct cgc_kernel *k, int *bias, bool *relu) {
    return cgc_kernel_conv_act(c, k, bias, relu, NULL);
}

bool cgc_kernel_conv_act(const struct cgc *c, const struct cgc_kernel *k, int *bias, bool *relu, int *leaky) {
    size_t len = vec_len(k->members);
    bool pool = cgc_node(c, k->root)->op == OP_MAXPOOL2D;
    if (k->head < 0 || cgc_node(c, k->head)->op != OP_CONV2D || len < 2 || len > 3 + (size_t)pool ||
        k->members[0] != k->head || vec_len(k->outputs) != 1 || k->outputs[0] != k->root)
        return false;
    /* conv2d, bias_add, relu or leaky_relu (a pooled kernel: either may be
     * missing; no leaky one), max pool */
    int b = -1, prev = k->head, lk = -1;
    bool r = false;
    for (size_t i = 1; i + (size_t)pool < len; i++) {
        const struct ir_node *n = cgc_node(c, k->members[i]);
        if (n->args[0] != prev) return false;
        if (n->op == OP_BIAS_ADD && b < 0 && !r && lk < 0 && n->args[1] != k->head &&
            ir_attr_i(n, ATTR_AXIS) == 1 && n->type.dtype == DT_F32)
            b = n->args[1];
        else if (n->op == OP_RELU && !r && lk < 0)
            r = true;
        else if (n->op == OP_LEAKY_RELU && !r && lk < 0 && !pool && n->type.dtype == DT_F32)
            lk = k->members[i];
        else
            return false;
        prev = k->members[i];
    }
    if (!pool && b < 0) return false;
    if (pool && (len < 3 || cgc_node(c, k->root)->args[0] != prev)) return false;
    if (bias) *bias = b;
    if (relu) *relu = r;
    if (leaky) *leaky = lk;
    return true;
}

void cgc_gemm_adam(struct cgc *c, const struct pass_gemm_adam *u) {
    const struct ir_node *n = cgc_node(c, u->head);
    const struct shape *a = &c->f->nodes[n->args[0]].type.shape, *b = &c->f->nodes[n->args[1]].type.shape;
    const struct shape *y = &n->type.shape;
    bool ta = ir_attr_i(n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(n, ATTR_TRANSPOSE_B) != 0;
    char decay[24] = "NULL", wd[24] = "NULL";
    if (u->decay >= 0) snprintf(decay, sizeof decay, "v%d", u->decay);
    if (u->wd >= 0) snprintf(wd, sizeof wd, "v%d", u->wd);
    cgc_emit(
        c,
        "const struct nrt_adam u = {v%d, v%d, v%d, v%d, v%d, v%d, v%d, v%d, v%d, v%d, v%d, v%d, v%d, %s, "
        "%s};",
        u->m_old, u->v_old, u->w_old, u->m_new, u->v_new, u->w_new, u->b1, u->c1, u->b2, u->c2, u->bc2,
        u->eps, u->step, decay, wd);
    cgc_emit(c, "nrt_sgemm_adam(%d, %d, %s, %s, %s, v%d, %s, v%d, %s, s%d, &u);", ta, tb,
             cg_xs(cgc_dim(y, 0)), cg_xs(cgc_dim(y, 1)), cg_xs(cgc_dim(a, ta ? 0 : 1)), n->args[0],
             cg_xs(cgc_dim(a, 1)), n->args[1], cg_xs(cgc_dim(b, 1)), u->head);
}

void cgc_kernel_body(struct cgc *c, const struct cgc_kernel *k) {
    int bias, leaky;
    bool relu;
    if (cgc_kernel_conv_act(c, k, &bias, &relu, &leaky)) {
        if (cgc_node(c, k->root)->op == OP_MAXPOOL2D) { /* pooled as it is computed */
            cg_lib_conv_ep(c, k->head, bias, relu, k->root, -1);
            return;
        }
        cgc_emit(c, "float *const v%d = v%d; /* the head computes into the result */", k->head, k->root);
        cg_lib_conv_ep(c, k->head, bias, relu, -1, leaky);
        return;
    }
    cgc_kernel_head(c, k);
    kernel_loops(c, k, false);
}
