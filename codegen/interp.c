/* codegen/interp.c -- the reference interpreter: its API (buffers in, outputs out),
 * the run loop over a function's nodes, and the evaluation of the generic ops
 * (leaves, elementwise, reductions, matmul, data movement) in plain double-precision
 * C. The neural-network ops (softmax, losses, convolution, pooling, dropout, batch
 * norm) are in interp_nn.c. Order: errors, shape helpers, the API, then the ops in
 * ops.def order, and last eval_rule[] (the column built from ops.def) and the run
 * loop. */
#include "codegen/codegen.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- errors */

bool cg_fail(struct cg_interp *it, int id, const char *fmt, ...) {
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (id >= 0)
        snprintf(it->err, sizeof it->err, "in @%s, %%%d (%s): %s", it->f->name, id,
                 op_info[it->f->nodes[id].op].name, msg);
    else
        snprintf(it->err, sizeof it->err, "in @%s: %s", it->f->name, msg);
    return false;
}

const char *cg_interp_error(const struct cg_interp *it) { return it->err; }

static void *xcalloc(size_t n, size_t size) {
    void *p = calloc(n ? n : 1, size);
    if (!p) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

/* ------------------------------------------------------------ shapes */

/* The shape with N replaced by the batch size. */
static struct shape resolve(const struct cg_interp *it, const struct shape *s) {
    struct shape r = *s;
    for (int i = 0; i < r.rank; i++)
        if (r.dim[i] == IR_DIM_N) r.dim[i] = it->n;
    return r;
}

static size_t numel(const struct shape *s) {
    size_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= (size_t)s->dim[i];
    return n;
}

/* Row-major strides of s. */
static void strides(const struct shape *s, int64_t st[IR_MAX_RANK]) {
    int64_t k = 1;
    for (int i = s->rank - 1; i >= 0; i--) {
        st[i] = k;
        k *= s->dim[i];
    }
}

/* For each dim of `big`, the stride of the trailing-aligned dim of `small`, or 0
 * where small lacks it or has size 1 (numpy broadcasting). */
static void strides_into(const struct shape *small, const struct shape *big, int64_t st[IR_MAX_RANK]) {
    int64_t s[IR_MAX_RANK];
    strides(small, s);
    for (int i = 0; i < big->rank; i++) {
        int j = small->rank - big->rank + i;
        st[i] = j >= 0 && small->dim[j] != 1 ? s[j] : 0;
    }
}

/* The index, through strides st, of element `flat` of a row-major array of shape s. */
static size_t map_index(const struct shape *s, const int64_t *st, size_t flat) {
    size_t idx = 0;
    for (int i = s->rank - 1; i >= 0; i--) {
        size_t c = flat % (size_t)s->dim[i];
        flat /= (size_t)s->dim[i];
        idx += c * (size_t)st[i];
    }
    return idx;
}

/* ------------------------------------------------------------ accessors */

const struct ir_node *cg_node(struct cg_interp *it, int id) { return &it->f->nodes[id]; }
struct cg_val *cg_out(struct cg_interp *it, int id) {
    return &it->vals[id];
}
struct cg_val *cg_arg(struct cg_interp *it, int id, int i) {
    return &it->vals[it->f->nodes[id].args[i]];
}

static struct cg_buf *buf_find(struct cg_interp *it, const char *name) {
    for (size_t i = 0; i < vec_len(it->m->buffers); i++)
        if (strcmp(it->bufs[i].b->name, name) == 0) return &it->bufs[i];
    return NULL;
}

/* A double as an i32 value: truncated toward zero, saturated, NaN as 0. */
static double to_i32(double v) {
    if (v != v) return 0;
    if (v >= 2147483647.0) return 2147483647.0;
    if (v <= -2147483648.0) return -2147483648.0;
    return (double)(int32_t)v;
}

/* ----------------------------------------------------------------- API */

struct cg_interp *cg_interp_new(struct ir_module *m, struct ir_func *f, int64_t n) {
    struct cg_interp *it = xcalloc(1, sizeof *it);
    it->m = m;
    it->f = f;
    it->n = n < 1 ? 1 : n;
    it->bufs = xcalloc(vec_len(m->buffers), sizeof *it->bufs);
    for (size_t i = 0; i < vec_len(m->buffers); i++) {
        it->bufs[i].b = &m->buffers[i];
        it->bufs[i].shape = resolve(it, &m->buffers[i].type.shape);
        it->bufs[i].numel = numel(&it->bufs[i].shape);
    }
    it->vals = xcalloc((size_t)ir_func_len(f), sizeof *it->vals);
    return it;
}

static void vals_release(struct cg_interp *it) {
    for (int i = 0; i < ir_func_len(it->f); i++) {
        free(it->vals[i].d);
        it->vals[i].d = NULL;
    }
    for (size_t i = 0; i < vec_len(it->m->buffers); i++) {
        free(it->bufs[i].assigned);
        it->bufs[i].assigned = NULL;
    }
    it->ran = false;
}

void cg_interp_free(struct cg_interp *it) {
    if (!it) return;
    vals_release(it);
    for (size_t i = 0; i < vec_len(it->m->buffers); i++) free(it->bufs[i].d);
    free(it->bufs);
    free(it->vals);
    free(it);
}

/* The buffer `name` ready to receive `count` elements of dtype dt. */
static struct cg_buf *buf_for_set(struct cg_interp *it, const char *name, enum dtype dt, size_t count) {
    struct cg_buf *b = buf_find(it, name);
    if (!b) return cg_fail(it, -1, "no buffer named '%s'", name), NULL;
    if (b->b->type.dtype != dt)
        return cg_fail(it, -1, "buffer '%s' is %s, not %s", name, dtype_name(b->b->type.dtype),
                       dtype_name(dt)),
               NULL;
    if (count != b->numel)
        return cg_fail(it, -1, "buffer '%s' holds %zu elements, got %zu", name, b->numel, count), NULL;
    if (!b->d) b->d = xcalloc(b->numel, sizeof *b->d);
    return b;
}

bool cg_interp_set_f32(struct cg_interp *it, const char *name, const float *data, size_t count) {
    struct cg_buf *b = buf_for_set(it, name, DT_F32, count);
    if (!b) return false;
    for (size_t i = 0; i < count; i++) b->d[i] = data[i];
    return true;
}

bool cg_interp_set_f64(struct cg_interp *it, const char *name, const double *data, size_t count) {
    struct cg_buf *b = buf_for_set(it, name, DT_F32, count);
    if (!b) return false;
    memcpy(b->d, data, sizeof *data * count);
    return true;
}

bool cg_interp_set_i32(struct cg_interp *it, const char *name, const int32_t *data, size_t count) {
    struct cg_buf *b = buf_for_set(it, name, DT_I32, count);
    if (!b) return false;
    for (size_t i = 0; i < count; i++) b->d[i] = data[i];
    return true;
}

void cg_interp_set_step(struct cg_interp *it, uint64_t step) { it->step = step; }

static const struct cg_val *output_val(struct cg_interp *it, const char *name, enum dtype dt, size_t count) {
    if (!it->ran) return cg_fail(it, -1, "no complete run to read output '%s' from", name), NULL;
    int k = ir_output_find(it->f, name);
    if (k < 0) return cg_fail(it, -1, "no output named '%s'", name), NULL;
    int id = it->f->outputs[k].value;
    const struct cg_val *v = &it->vals[id];
    if (it->f->nodes[id].type.dtype != dt)
        return cg_fail(it, -1, "output '%s' is %s, not %s", name, dtype_name(it->f->nodes[id].type.dtype),
                       dtype_name(dt)),
               NULL;
    if (count != v->numel)
        return cg_fail(it, -1, "output '%s' has %zu elements, asked for %zu", name, v->numel, count), NULL;
    return v;
}

size_t cg_interp_output_count(const struct cg_interp *it, const char *name) {
    int k = ir_output_find(it->f, name);
    return k < 0 || !it->ran ? 0 : it->vals[it->f->outputs[k].value].numel;
}

bool cg_interp_output_f32(struct cg_interp *it, const char *name, float *out, size_t count) {
    const struct cg_val *v = output_val(it, name, DT_F32, count);
    if (!v) return false;
    for (size_t i = 0; i < count; i++) out[i] = (float)v->d[i];
    return true;
}

bool cg_interp_output_f64(struct cg_interp *it, const char *name, double *out, size_t count) {
    const struct cg_val *v = output_val(it, name, DT_F32, count);
    if (!v) return false;
    memcpy(out, v->d, sizeof *out * count);
    return true;
}

bool cg_interp_output_i32(struct cg_interp *it, const char *name, int32_t *out, size_t count) {
    const struct cg_val *v = output_val(it, name, DT_I32, count);
    if (!v) return false;
    for (size_t i = 0; i < count; i++) out[i] = (int32_t)v->d[i];
    return true;
}

static const struct cg_buf *assigned(struct cg_interp *it, const char *name, size_t count) {
    struct cg_buf *b = buf_find(it, name);
    if (!b) return cg_fail(it, -1, "no buffer named '%s'", name), NULL;
    if (!b->assigned) return cg_fail(it, -1, "the last run assigned nothing to '%s'", name), NULL;
    if (count != b->numel)
        return cg_fail(it, -1, "buffer '%s' holds %zu elements, asked for %zu", name, b->numel, count), NULL;
    return b;
}

bool cg_interp_assigned_f32(struct cg_interp *it, const char *name, float *out, size_t count) {
    const struct cg_buf *b = assigned(it, name, count);
    if (!b) return false;
    for (size_t i = 0; i < count; i++) out[i] = (float)b->assigned[i];
    return true;
}

bool cg_interp_assigned_f64(struct cg_interp *it, const char *name, double *out, size_t count) {
    const struct cg_buf *b = assigned(it, name, count);
    if (!b) return false;
    memcpy(out, b->assigned, sizeof *out * count);
    return true;
}

void cg_interp_commit(struct cg_interp *it) {
    for (size_t i = 0; i < vec_len(it->m->buffers); i++) {
        struct cg_buf *b = &it->bufs[i];
        if (!b->assigned) continue;
        free(b->d);
        b->d = b->assigned;
        b->assigned = NULL;
    }
}

/* --------------------------------------------------------------- leaves */

static bool eval_buffer(struct cg_interp *it, int id) {
    const struct ir_node *n = cg_node(it, id);
    struct cg_buf *b = buf_find(it, n->sym);
    if (!b) return cg_fail(it, id, "no buffer named '%s'", n->sym);
    if (!b->d) return cg_fail(it, id, "buffer '%s' was not set", n->sym);
    struct cg_val *y = cg_out(it, id);
    if (y->numel != b->numel) return cg_fail(it, id, "buffer '%s' does not match the node's type", n->sym);
    memcpy(y->d, b->d, sizeof *y->d * y->numel);
    return true;
}

bool cg_eval_INPUT(struct cg_interp *it, int id) { return eval_buffer(it, id); }
bool cg_eval_PARAM(struct cg_interp *it, int id) { return eval_buffer(it, id); }

bool cg_eval_CONST(struct cg_interp *it, int id) {
    struct cg_val *y = cg_out(it, id);
    double v = ir_attr_f(cg_node(it, id), ATTR_VALUE);
    if (cg_node(it, id)->type.dtype == DT_I32) v = to_i32(v);
    for (size_t i = 0; i < y->numel; i++) y->d[i] = v;
    return true;
}

bool cg_eval_ASSIGN(struct cg_interp *it, int id) {
    struct cg_buf *b = buf_find(it, cg_node(it, id)->sym);
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    if (!b || b->numel != x->numel) return cg_fail(it, id, "assign to a missing or mismatched buffer");
    memcpy(y->d, x->d, sizeof *y->d * y->numel);
    free(b->assigned);
    b->assigned = xcalloc(b->numel, sizeof *b->assigned);
    memcpy(b->assigned, x->d, sizeof *x->d * x->numel);
    return true;
}

/* --------------------------------------------------------- elementwise */

/* y = fn(x, a) elementwise, with a the op's float attribute where it has one. */
static bool unary(struct cg_interp *it, int id, double (*fn)(double, double)) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    const struct ir_node *n = cg_node(it, id);
    double a = op_info[n->op].nattrs && op_info[n->op].attrs[0].kind == AK_FLOAT ? n->fa[0] : 0;
    for (size_t i = 0; i < y->numel; i++) y->d[i] = fn(x->d[i], a);
    if (n->type.dtype == DT_I32)
        for (size_t i = 0; i < y->numel; i++) y->d[i] = to_i32(y->d[i]);
    return true;
}

static double f_neg(double x, double a) { return -x; }
static double f_exp(double x, double a) { return exp(x); }
static double f_log(double x, double a) { return log(x); }
static double f_sqrt(double x, double a) { return sqrt(x); }
static double f_abs(double x, double a) { return fabs(x); }
static double f_relu(double x, double a) { return x > 0 ? x : 0; }
static double f_leaky(double x, double a) { return x > 0 ? x : a * x; }
static double f_tanh(double x, double a) { return tanh(x); }
static double f_id(double x, double a) { return x; }

/* Stable for large |x| of either sign. */
static double f_sigmoid(double x, double a) {
    if (x >= 0) return 1 / (1 + exp(-x));
    double e = exp(x);
    return e / (1 + e);
}

bool cg_eval_NEG(struct cg_interp *it, int id) { return unary(it, id, f_neg); }
bool cg_eval_EXP(struct cg_interp *it, int id) { return unary(it, id, f_exp); }
bool cg_eval_LOG(struct cg_interp *it, int id) { return unary(it, id, f_log); }
bool cg_eval_SQRT(struct cg_interp *it, int id) { return unary(it, id, f_sqrt); }
bool cg_eval_ABS(struct cg_interp *it, int id) { return unary(it, id, f_abs); }
bool cg_eval_RELU(struct cg_interp *it, int id) { return unary(it, id, f_relu); }
bool cg_eval_LEAKY_RELU(struct cg_interp *it, int id) { return unary(it, id, f_leaky); }
bool cg_eval_SIGMOID(struct cg_interp *it, int id) { return unary(it, id, f_sigmoid); }
bool cg_eval_TANH(struct cg_interp *it, int id) { return unary(it, id, f_tanh); }
static double f_erf(double x, double a) { return erf(x); }
bool cg_eval_ERF(struct cg_interp *it, int id) { return unary(it, id, f_erf); }

/* GELU and its derivative, exact (erf) or tanh-approximated (PyTorch's formulas). */
static double gelu(double x, bool approx, double *deriv) {
    if (!approx) {
        double cdf = 0.5 * (1 + erf(x * 0.70710678118654752440));
        *deriv = cdf + x * exp(-0.5 * x * x) * 0.39894228040143267794; /* 1/sqrt(2 pi) */
        return x * cdf;
    }
    const double k = 0.79788456080286535588, c = 0.044715; /* sqrt(2/pi) */
    double t = tanh(k * (x + c * x * x * x));
    *deriv = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * k * (1 + 3 * c * x * x);
    return 0.5 * x * (1 + t);
}

bool cg_eval_GELU(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    bool approx = ir_attr_i(cg_node(it, id), ATTR_APPROXIMATE) != 0;
    double d;
    for (size_t i = 0; i < y->numel; i++) y->d[i] = gelu(x->d[i], approx, &d);
    return true;
}

bool cg_eval_GELU_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dx = cg_out(it, id);
    bool approx = ir_attr_i(cg_node(it, id), ATTR_APPROXIMATE) != 0;
    double d;
    for (size_t i = 0; i < dx->numel; i++) {
        gelu(x->d[i], approx, &d);
        dx->d[i] = dy->d[i] * d;
    }
    return true;
}
bool cg_eval_GELU_DERIV(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    bool approx = ir_attr_i(cg_node(it, id), ATTR_APPROXIMATE) != 0;
    for (size_t i = 0; i < y->numel; i++) gelu(x->d[i], approx, &y->d[i]);
    return true;
}
bool cg_eval_STOP_GRADIENT(struct cg_interp *it, int id) { return unary(it, id, f_id); }
/* One process: every rank's share is 1. */
bool cg_eval_ALLREDUCE(struct cg_interp *it, int id) { return unary(it, id, f_id); }
bool cg_eval_ALLREDUCE_SUM(struct cg_interp *it, int id) { return unary(it, id, f_id); }
/* CAST's target dtype is the node's; unary() truncates for i32. */
bool cg_eval_CAST(struct cg_interp *it, int id) { return unary(it, id, f_id); }

/* y = fn(a, b, attr) with numpy broadcasting. */
static bool binary(struct cg_interp *it, int id, double (*fn)(double, double, double)) {
    struct cg_val *a = cg_arg(it, id, 0), *b = cg_arg(it, id, 1), *y = cg_out(it, id);
    const struct ir_node *n = cg_node(it, id);
    double attr = op_info[n->op].nattrs && op_info[n->op].attrs[0].kind == AK_FLOAT ? n->fa[0] : 0;
    int64_t sa[IR_MAX_RANK], sb[IR_MAX_RANK];
    strides_into(&a->shape, &y->shape, sa);
    strides_into(&b->shape, &y->shape, sb);
    bool int_div = n->op == OP_DIV && n->type.dtype == DT_I32;
    for (size_t i = 0; i < y->numel; i++) {
        double va = a->d[map_index(&y->shape, sa, i)], vb = b->d[map_index(&y->shape, sb, i)];
        if (int_div && vb == 0) return cg_fail(it, id, "integer division by zero");
        y->d[i] = fn(va, vb, attr);
    }
    if (n->type.dtype == DT_I32)
        for (size_t i = 0; i < y->numel; i++) y->d[i] = to_i32(y->d[i]);
    return true;
}

static double f_add(double a, double b, double c) { return a + b; }
static double f_sub(double a, double b, double c) { return a - b; }
static double f_mul(double a, double b, double c) { return a * b; }
static double f_div(double a, double b, double c) { return a / b; }
static double f_max(double a, double b, double c) { return a > b ? a : b; }
static double f_pow(double a, double b, double c) { return pow(a, b); }
static double f_greater(double a, double b, double c) { return a > b ? 1.0 : 0.0; }
static double f_relu_grad(double x, double dy, double c) { return x > 0 ? dy : 0; }
static double f_leaky_grad(double x, double dy, double alpha) { return x > 0 ? dy : alpha * dy; }
static double f_sigmoid_grad(double y, double dy, double c) { return dy * y * (1 - y); }
static double f_tanh_grad(double y, double dy, double c) { return dy * (1 - y * y); }

bool cg_eval_ADD(struct cg_interp *it, int id) { return binary(it, id, f_add); }
bool cg_eval_SUB(struct cg_interp *it, int id) { return binary(it, id, f_sub); }
bool cg_eval_MUL(struct cg_interp *it, int id) { return binary(it, id, f_mul); }
bool cg_eval_DIV(struct cg_interp *it, int id) { return binary(it, id, f_div); }
bool cg_eval_MAXIMUM(struct cg_interp *it, int id) { return binary(it, id, f_max); }
bool cg_eval_POW(struct cg_interp *it, int id) { return binary(it, id, f_pow); }
bool cg_eval_GREATER(struct cg_interp *it, int id) { return binary(it, id, f_greater); }
bool cg_eval_RELU_GRAD(struct cg_interp *it, int id) { return binary(it, id, f_relu_grad); }
bool cg_eval_LEAKY_RELU_GRAD(struct cg_interp *it, int id) { return binary(it, id, f_leaky_grad); }
bool cg_eval_SIGMOID_GRAD(struct cg_interp *it, int id) { return binary(it, id, f_sigmoid_grad); }
bool cg_eval_TANH_GRAD(struct cg_interp *it, int id) { return binary(it, id, f_tanh_grad); }

bool cg_eval_BIAS_ADD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *b = cg_arg(it, id, 1), *y = cg_out(it, id);
    int64_t axis = ir_attr_i(cg_node(it, id), ATTR_AXIS), st[IR_MAX_RANK];
    strides(&x->shape, st);
    for (size_t i = 0; i < y->numel; i++)
        y->d[i] = x->d[i] + b->d[(i / (size_t)st[axis]) % (size_t)x->shape.dim[axis]];
    return true;
}

/* ----------------------------------------------------------- reductions */

/* The input's shape with the reduced dims of node id set to 1 (the keepdims form,
 * whose row-major layout equals that of the result either way). */
static struct shape kept_shape(struct cg_interp *it, int id, size_t *count) {
    const struct cg_val *x = cg_arg(it, id, 0);
    int n;
    const int64_t *axes = ir_attr_v(cg_node(it, id), ATTR_AXES, &n);
    struct shape s = x->shape;
    *count = 1;
    for (int i = 0; i < s.rank; i++) {
        bool drop = n == 0;
        for (int k = 0; k < n; k++) drop |= axes[k] == i;
        if (drop) *count *= (size_t)s.dim[i], s.dim[i] = 1;
    }
    return s;
}

/* Sum (or max) of x over the reduced dims of node id into y (y->d zeroed). */
static void reduce_into(struct cg_interp *it, int id, const double *x, double *y, bool max) {
    size_t count;
    struct shape k = kept_shape(it, id, &count);
    const struct cg_val *xv = cg_arg(it, id, 0);
    int64_t st[IR_MAX_RANK];
    strides_into(&k, &xv->shape, st);
    size_t ny = numel(&k);
    if (max)
        for (size_t i = 0; i < ny; i++) y[i] = -INFINITY;
    for (size_t i = 0; i < xv->numel; i++) {
        size_t o = map_index(&xv->shape, st, i);
        if (max)
            y[o] = x[i] > y[o] ? x[i] : y[o];
        else
            y[o] += x[i];
    }
}

bool cg_eval_SUM(struct cg_interp *it, int id) {
    reduce_into(it, id, cg_arg(it, id, 0)->d, cg_out(it, id)->d, false);
    return true;
}

bool cg_eval_MAX(struct cg_interp *it, int id) {
    reduce_into(it, id, cg_arg(it, id, 0)->d, cg_out(it, id)->d, true);
    return true;
}

bool cg_eval_MEAN(struct cg_interp *it, int id) {
    size_t count;
    kept_shape(it, id, &count);
    struct cg_val *y = cg_out(it, id);
    reduce_into(it, id, cg_arg(it, id, 0)->d, y->d, false);
    for (size_t i = 0; i < y->numel; i++) y->d[i] /= (double)count;
    return true;
}

/* Two passes: the mean, then the mean squared deviation. */
bool cg_eval_VARIANCE(struct cg_interp *it, int id) {
    size_t count;
    struct shape k = kept_shape(it, id, &count);
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    double *mean = xcalloc(y->numel, sizeof *mean), *dev = xcalloc(x->numel, sizeof *dev);
    reduce_into(it, id, x->d, mean, false);
    for (size_t i = 0; i < y->numel; i++) mean[i] /= (double)count;
    int64_t st[IR_MAX_RANK];
    strides_into(&k, &x->shape, st);
    for (size_t i = 0; i < x->numel; i++) {
        double d = x->d[i] - mean[map_index(&x->shape, st, i)];
        dev[i] = d * d;
    }
    reduce_into(it, id, dev, y->d, false);
    for (size_t i = 0; i < y->numel; i++) y->d[i] /= (double)count;
    free(mean);
    free(dev);
    return true;
}

/* The first index of the maximum along `axis`. */
bool cg_eval_ARGMAX(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    int64_t axis = ir_attr_i(cg_node(it, id), ATTR_AXIS);
    size_t inner = 1, k = (size_t)x->shape.dim[axis];
    for (int i = (int)axis + 1; i < x->shape.rank; i++) inner *= (size_t)x->shape.dim[i];
    for (size_t o = 0; o < y->numel; o++) {
        size_t outer = o / inner, in = o % inner, best = 0;
        for (size_t j = 1; j < k; j++)
            if (x->d[(outer * k + j) * inner + in] > x->d[(outer * k + best) * inner + in]) best = j;
        y->d[o] = (double)best;
    }
    return true;
}

bool cg_eval_SUM_TO(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    int64_t st[IR_MAX_RANK];
    strides_into(&y->shape, &x->shape, st);
    for (size_t i = 0; i < x->numel; i++) y->d[map_index(&x->shape, st, i)] += x->d[i];
    return true;
}

bool cg_eval_BROADCAST_TO(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    int64_t st[IR_MAX_RANK];
    strides_into(&x->shape, &y->shape, st);
    for (size_t i = 0; i < y->numel; i++) y->d[i] = x->d[map_index(&y->shape, st, i)];
    return true;
}

/* --------------------------------------------------------------- matmul */

/* torch.matmul: for each item of the broadcast batch dims of y, y[b] = op(a[b]) op(b[b]). */
bool cg_eval_MATMUL(struct cg_interp *it, int id) {
    struct cg_val *a = cg_arg(it, id, 0), *b = cg_arg(it, id, 1), *y = cg_out(it, id);
    bool ta = ir_attr_i(cg_node(it, id), ATTR_TRANSPOSE_A) != 0,
         tb = ir_attr_i(cg_node(it, id), ATTR_TRANSPOSE_B) != 0;
    int ry = y->shape.rank, ra = a->shape.rank, rb = b->shape.rank;
    size_t m = (size_t)y->shape.dim[ry - 2], n = (size_t)y->shape.dim[ry - 1];
    size_t k = (size_t)(ta ? a->shape.dim[ra - 2] : a->shape.dim[ra - 1]);
    size_t lda = (size_t)a->shape.dim[ra - 1], ldb = (size_t)b->shape.dim[rb - 1];
    struct shape batch = y->shape, ba = a->shape, bb = b->shape;
    batch.rank -= 2, ba.rank -= 2, bb.rank -= 2;
    int64_t sa[IR_MAX_RANK], sb[IR_MAX_RANK];
    strides_into(&ba, &batch, sa);
    strides_into(&bb, &batch, sb);
    size_t nb = numel(&batch), ma = (size_t)a->shape.dim[ra - 2] * lda,
           mb = (size_t)b->shape.dim[rb - 2] * ldb;
    for (size_t q = 0; q < nb; q++) {
        const double *pa = a->d + map_index(&batch, sa, q) * ma, *pb = b->d + map_index(&batch, sb, q) * mb;
        double *py = y->d + q * m * n;
        for (size_t i = 0; i < m; i++)
            for (size_t j = 0; j < n; j++) {
                double s = 0;
                for (size_t p = 0; p < k; p++)
                    s += pa[ta ? p * lda + i : i * lda + p] * pb[tb ? j * ldb + p : p * ldb + j];
                py[i * n + j] = s;
            }
    }
    return true;
}

/* Sum over the (equal) batch dims of op(a[q]) op(b[q]). */
bool cg_eval_MATMUL_BSUM(struct cg_interp *it, int id) {
    struct cg_val *a = cg_arg(it, id, 0), *b = cg_arg(it, id, 1), *y = cg_out(it, id);
    bool ta = ir_attr_i(cg_node(it, id), ATTR_TRANSPOSE_A) != 0,
         tb = ir_attr_i(cg_node(it, id), ATTR_TRANSPOSE_B) != 0;
    int ra = a->shape.rank, rb = b->shape.rank;
    size_t m = (size_t)y->shape.dim[0], n = (size_t)y->shape.dim[1];
    size_t k = (size_t)(ta ? a->shape.dim[ra - 2] : a->shape.dim[ra - 1]);
    size_t lda = (size_t)a->shape.dim[ra - 1], ldb = (size_t)b->shape.dim[rb - 1];
    size_t ma = (size_t)a->shape.dim[ra - 2] * lda, mb = (size_t)b->shape.dim[rb - 2] * ldb,
           nb = a->numel / ma;
    for (size_t i = 0; i < m; i++)
        for (size_t j = 0; j < n; j++) {
            double s = 0;
            for (size_t q = 0; q < nb; q++) {
                const double *pa = a->d + q * ma, *pb = b->d + q * mb;
                for (size_t p = 0; p < k; p++)
                    s += pa[ta ? p * lda + i : i * lda + p] * pb[tb ? j * ldb + p : p * ldb + j];
            }
            y->d[i * n + j] = s;
        }
    return true;
}

/* ----------------------------------------------------------------- shape */

bool cg_eval_RESHAPE(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    if (x->numel != y->numel) return cg_fail(it, id, "reshape of %zu elements to %zu", x->numel, y->numel);
    memcpy(y->d, x->d, sizeof *y->d * y->numel);
    return true;
}

bool cg_eval_TRANSPOSE(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    const int64_t *perm = ir_attr_v(cg_node(it, id), ATTR_PERM, NULL);
    int64_t sx[IR_MAX_RANK], st[IR_MAX_RANK];
    strides(&x->shape, sx);
    for (int i = 0; i < y->shape.rank; i++) st[i] = sx[perm[i]];
    for (size_t i = 0; i < y->numel; i++) y->d[i] = x->d[map_index(&y->shape, st, i)];
    return true;
}

/* Sizes before, along and after `axis` of shape s. */
static void split_axis(const struct shape *s, int64_t axis, size_t *outer, size_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= (size_t)s->dim[i];
    for (int i = (int)axis + 1; i < s->rank; i++) *inner *= (size_t)s->dim[i];
}

/* Copy rows [from, from + len) of axis blocks of x into rows [to, ...) of y. */
static void copy_along(const struct cg_val *x, struct cg_val *y, int64_t axis, size_t from, size_t to,
                       size_t len) {
    size_t outer, inner;
    split_axis(&x->shape, axis, &outer, &inner);
    size_t kx = (size_t)x->shape.dim[axis], ky = (size_t)y->shape.dim[axis];
    for (size_t o = 0; o < outer; o++)
        memcpy(&y->d[(o * ky + to) * inner], &x->d[(o * kx + from) * inner], sizeof *y->d * len * inner);
}

bool cg_eval_SLICE(struct cg_interp *it, int id) {
    const struct ir_node *n = cg_node(it, id);
    int64_t axis = ir_attr_i(n, ATTR_AXIS);
    copy_along(cg_arg(it, id, 0), cg_out(it, id), axis, (size_t)ir_attr_i(n, ATTR_START), 0,
               (size_t)ir_attr_i(n, ATTR_SIZE));
    return true;
}

bool cg_eval_PAD(struct cg_interp *it, int id) {
    const struct ir_node *n = cg_node(it, id);
    int64_t axis = ir_attr_i(n, ATTR_AXIS);
    struct cg_val *x = cg_arg(it, id, 0);
    copy_along(x, cg_out(it, id), axis, 0, (size_t)ir_attr_i(n, ATTR_BEFORE), (size_t)x->shape.dim[axis]);
    return true;
}

bool cg_eval_CONCAT(struct cg_interp *it, int id) {
    int64_t axis = ir_attr_i(cg_node(it, id), ATTR_AXIS);
    size_t at = 0;
    for (int i = 0; i < cg_node(it, id)->nargs; i++) {
        struct cg_val *x = cg_arg(it, id, i);
        copy_along(x, cg_out(it, id), axis, 0, at, (size_t)x->shape.dim[axis]);
        at += (size_t)x->shape.dim[axis];
    }
    return true;
}

/* ------------------------------------------------------------- the column */

typedef bool (*eval_fn)(struct cg_interp *it, int id);

static const eval_fn eval_rule[OP_COUNT] = {
#define OP(name, arity, kind, flags, attrs) [OP_##name] = cg_eval_##name,
#include "ir/ops.def"
#undef OP
};

bool cg_interp_run(struct cg_interp *it) {
    vals_release(it);
    it->err[0] = '\0';
    for (int id = 0; id < ir_func_len(it->f); id++) {
        struct cg_val *v = &it->vals[id];
        v->shape = resolve(it, &it->f->nodes[id].type.shape);
        v->numel = numel(&v->shape);
        v->d = xcalloc(v->numel, sizeof *v->d);
        if (!eval_rule[it->f->nodes[id].op](it, id)) return false;
    }
    it->ran = true;
    return true;
}
