/* codegen/interp_nn.c -- the reference interpreter's neural-network ops: softmax
 * family, losses and their gradients, accuracy, convolutions (direct loops sharing
 * one index relation), pooling, upsampling, dropout and batch normalization. Plain
 * loops in double precision; sections follow ops.def. */
#include "codegen/codegen.h"

#include <math.h>
#include <string.h>

/* Sizes before and after `axis` of shape s. */
static void split_axis(const struct shape *s, int64_t axis, size_t *outer, size_t *inner) {
    *outer = *inner = 1;
    for (int i = 0; i < axis; i++) *outer *= (size_t)s->dim[i];
    for (int i = (int)axis + 1; i < s->rank; i++) *inner *= (size_t)s->dim[i];
}

/* --------------------------------------------------------------- softmax */

/* Log-sum-exp of x[0], x[st], ..., x[(k-1) st], shifted by its maximum. */
static double logsumexp(const double *x, size_t k, size_t st) {
    double mx = -INFINITY, s = 0;
    for (size_t j = 0; j < k; j++) mx = x[j * st] > mx ? x[j * st] : mx;
    if (isinf(mx)) return mx;
    for (size_t j = 0; j < k; j++) s += exp(x[j * st] - mx);
    return mx + log(s);
}

static bool softmax(struct cg_interp *it, int id, bool log_out) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    int64_t axis = ir_attr_i(cg_node(it, id), ATTR_AXIS);
    size_t outer, inner, k = (size_t)x->shape.dim[axis];
    split_axis(&x->shape, axis, &outer, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t in = 0; in < inner; in++) {
            size_t base = o * k * inner + in;
            double lse = logsumexp(&x->d[base], k, inner);
            for (size_t j = 0; j < k; j++) {
                double l = x->d[base + j * inner] - lse;
                y->d[base + j * inner] = log_out ? l : exp(l);
            }
        }
    return true;
}

bool cg_eval_SOFTMAX(struct cg_interp *it, int id) { return softmax(it, id, false); }
bool cg_eval_LOG_SOFTMAX(struct cg_interp *it, int id) { return softmax(it, id, true); }

/* Rows of the last axis: softmax of scale * x over j <= i + (Tk - Tq) when causal. */
bool cg_eval_ATTN_SOFTMAX(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    double scale = ir_attr_f(cg_node(it, id), ATTR_SCALE);
    bool causal = ir_attr_i(cg_node(it, id), ATTR_CAUSAL) != 0;
    size_t tk = (size_t)x->shape.dim[x->shape.rank - 1], tq = (size_t)x->shape.dim[x->shape.rank - 2];
    double row[4096];
    if (tk > 4096) return cg_fail(it, id, "rows longer than 4096");
    for (size_t r = 0; r < x->numel / tk; r++) {
        size_t i = r % tq;
        long long lim = causal ? (long long)i + (long long)tk - (long long)tq : (long long)tk - 1;
        size_t n = lim < 0 ? 0 : lim + 1 > (long long)tk ? tk : (size_t)lim + 1;
        for (size_t j = 0; j < n; j++) row[j] = scale * x->d[r * tk + j];
        double lse = n ? logsumexp(row, n, 1) : 0;
        for (size_t j = 0; j < tk; j++) y->d[r * tk + j] = j < n ? exp(row[j] - lse) : 0;
    }
    return true;
}

/* ATTENTION's geometry: items b, steps t, width e (qkv has 3e columns), heads h of d. */
struct attn_geo {
    size_t b, t, e, h, d; /* sizes */
    double scale;         /* of q.k */
    bool causal;          /* row i sees j <= i */
};

static struct attn_geo attn_geo(struct cg_interp *it, int id) {
    const struct cg_val *qkv = cg_arg(it, id, 0);
    const struct ir_node *n = cg_node(it, id);
    struct attn_geo g = {(size_t)qkv->shape.dim[0],
                         (size_t)qkv->shape.dim[1],
                         (size_t)qkv->shape.dim[2] / 3,
                         (size_t)ir_attr_i(n, ATTR_HEADS),
                         0,
                         ir_attr_f(n, ATTR_SCALE),
                         ir_attr_i(n, ATTR_CAUSAL) != 0};
    g.d = g.e / g.h;
    return g;
}

/* Element c of head h of q (part 0), k (1) or v (2) at step j of item b. */
static double attn_at(const struct attn_geo *g, const double *qkv, size_t b, size_t part, size_t j, size_t h,
                      size_t c) {
    return qkv[(b * g->t + j) * 3 * g->e + part * g->e + h * g->d + c];
}

/* The attention weights p[0..t) of row i of head h of item b (0 past the causal limit). */
static void attn_row(const struct attn_geo *g, const double *qkv, size_t b, size_t h, size_t i, double *p) {
    size_t kn = g->causal ? i + 1 : g->t;
    for (size_t j = 0; j < kn; j++) {
        double s = 0;
        for (size_t c = 0; c < g->d; c++)
            s += attn_at(g, qkv, b, 0, i, h, c) * attn_at(g, qkv, b, 1, j, h, c);
        p[j] = g->scale * s;
    }
    double lse = logsumexp(p, kn, 1);
    for (size_t j = 0; j < g->t; j++) p[j] = j < kn ? exp(p[j] - lse) : 0;
}

/* y[b, i, h*d + c] = sum_j p_ij v[b, j, h*d + c]. */
bool cg_eval_ATTENTION(struct cg_interp *it, int id) {
    struct attn_geo g = attn_geo(it, id);
    const double *qkv = cg_arg(it, id, 0)->d;
    struct cg_val *y = cg_out(it, id);
    double p[4096];
    if (g.t > 4096) return cg_fail(it, id, "sequences longer than 4096");
    for (size_t b = 0; b < g.b; b++)
        for (size_t h = 0; h < g.h; h++)
            for (size_t i = 0; i < g.t; i++) {
                attn_row(&g, qkv, b, h, i, p);
                for (size_t c = 0; c < g.d; c++) {
                    double s = 0;
                    for (size_t j = 0; j < g.t; j++) s += p[j] * attn_at(&g, qkv, b, 2, j, h, c);
                    y->d[(b * g.t + i) * g.e + h * g.d + c] = s;
                }
            }
    return true;
}

/* (qkv, y, dy) -> dqkv: per row i, dp_ij = dy_i.v_j, ds_ij = p_ij (dp_ij - dy_i.y_i);
 * dq_i = scale sum_j ds_ij k_j, dk_j += scale ds_ij q_i, dv_j += p_ij dy_i. */
bool cg_eval_ATTENTION_GRAD(struct cg_interp *it, int id) {
    struct attn_geo g = attn_geo(it, id);
    const double *qkv = cg_arg(it, id, 0)->d, *y = cg_arg(it, id, 1)->d, *dy = cg_arg(it, id, 2)->d;
    struct cg_val *dx = cg_out(it, id);
    double p[4096];
    if (g.t > 4096) return cg_fail(it, id, "sequences longer than 4096");
    memset(dx->d, 0, sizeof *dx->d * dx->numel);
    for (size_t b = 0; b < g.b; b++)
        for (size_t h = 0; h < g.h; h++)
            for (size_t i = 0; i < g.t; i++) {
                attn_row(&g, qkv, b, h, i, p);
                const double *dyi = dy + (b * g.t + i) * g.e + h * g.d,
                             *yi = y + (b * g.t + i) * g.e + h * g.d;
                double dd = 0;
                for (size_t c = 0; c < g.d; c++) dd += dyi[c] * yi[c];
                for (size_t j = 0; j < g.t; j++) {
                    double dp = 0;
                    for (size_t c = 0; c < g.d; c++) dp += dyi[c] * attn_at(&g, qkv, b, 2, j, h, c);
                    double ds = g.scale * p[j] * (dp - dd);
                    double *dq = dx->d + (b * g.t + i) * 3 * g.e + h * g.d,
                           *dk = dx->d + (b * g.t + j) * 3 * g.e + g.e + h * g.d;
                    for (size_t c = 0; c < g.d; c++) {
                        dq[c] += ds * attn_at(&g, qkv, b, 1, j, h, c);
                        dk[c] += ds * attn_at(&g, qkv, b, 0, i, h, c);
                        dk[g.e + c] += p[j] * dyi[c];
                    }
                }
            }
    return true;
}

/* (y, dy): softmax dx = y (dy - sum(dy y)); log-softmax dx = dy - exp(y) sum(dy). */
static bool softmax_grad(struct cg_interp *it, int id, bool log_in) {
    struct cg_val *y = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dx = cg_out(it, id);
    int64_t axis = ir_attr_i(cg_node(it, id), ATTR_AXIS);
    size_t outer, inner, k = (size_t)y->shape.dim[axis];
    split_axis(&y->shape, axis, &outer, &inner);
    for (size_t o = 0; o < outer; o++)
        for (size_t in = 0; in < inner; in++) {
            size_t base = o * k * inner + in;
            double s = 0;
            for (size_t j = 0; j < k; j++) {
                size_t i = base + j * inner;
                s += log_in ? dy->d[i] : dy->d[i] * y->d[i];
            }
            for (size_t j = 0; j < k; j++) {
                size_t i = base + j * inner;
                dx->d[i] = log_in ? dy->d[i] - exp(y->d[i]) * s : y->d[i] * (dy->d[i] - s);
            }
        }
    return true;
}

bool cg_eval_SOFTMAX_GRAD(struct cg_interp *it, int id) { return softmax_grad(it, id, false); }
bool cg_eval_LOG_SOFTMAX_GRAD(struct cg_interp *it, int id) { return softmax_grad(it, id, true); }

/* ---------------------------------------------------------------- losses */

/* Per-element loss l(p, t) and its derivative dl/dp; the loss is their mean. */
static double mse_l(double p, double t) { return (p - t) * (p - t); }
static double mse_d(double p, double t) { return 2 * (p - t); }

/* BCE clamps each log at -100 like PyTorch, so p = 0 or 1 stays finite; the
 * derivative is that of the clamped function (zero where a clamp is active). */
static double bce_l(double p, double t) {
    double lp = log(p), lq = log(1 - p);
    return -(t * (lp > -100 ? lp : -100) + (1 - t) * (lq > -100 ? lq : -100));
}
static double bce_d(double p, double t) {
    double d = 0;
    if (log(p) > -100) d -= t / p;
    if (log(1 - p) > -100) d += (1 - t) / (1 - p);
    return d;
}

/* max(x, 0) - x t + log(1 + exp(-|x|)): stable for any x. */
static double bce_logits_l(double x, double t) { return (x > 0 ? x : 0) - x * t + log1p(exp(-fabs(x))); }
static double bce_logits_d(double x, double t) {
    double s = x >= 0 ? 1 / (1 + exp(-x)) : exp(x) / (1 + exp(x));
    return s - t;
}

/* max(0, 1 - t s), targets +-1. */
static double hinge_l(double s, double t) { return 1 - t * s > 0 ? 1 - t * s : 0; }
static double hinge_d(double s, double t) { return 1 - t * s > 0 ? -t : 0; }

static bool ewise_loss(struct cg_interp *it, int id, double (*l)(double, double)) {
    struct cg_val *p = cg_arg(it, id, 0), *t = cg_arg(it, id, 1);
    double s = 0;
    for (size_t i = 0; i < p->numel; i++) s += l(p->d[i], t->d[i]);
    cg_out(it, id)->d[0] = s / (double)p->numel;
    return true;
}

static bool ewise_loss_grad(struct cg_interp *it, int id, double (*d)(double, double)) {
    struct cg_val *p = cg_arg(it, id, 0), *t = cg_arg(it, id, 1), *dx = cg_out(it, id);
    double k = cg_arg(it, id, 2)->d[0] / (double)p->numel;
    for (size_t i = 0; i < p->numel; i++) dx->d[i] = k * d(p->d[i], t->d[i]);
    return true;
}

bool cg_eval_MSE(struct cg_interp *it, int id) { return ewise_loss(it, id, mse_l); }
bool cg_eval_BCE(struct cg_interp *it, int id) { return ewise_loss(it, id, bce_l); }
bool cg_eval_BCE_LOGITS(struct cg_interp *it, int id) { return ewise_loss(it, id, bce_logits_l); }
bool cg_eval_HINGE(struct cg_interp *it, int id) { return ewise_loss(it, id, hinge_l); }
bool cg_eval_MSE_GRAD(struct cg_interp *it, int id) { return ewise_loss_grad(it, id, mse_d); }
bool cg_eval_BCE_GRAD(struct cg_interp *it, int id) { return ewise_loss_grad(it, id, bce_d); }
bool cg_eval_BCE_LOGITS_GRAD(struct cg_interp *it, int id) { return ewise_loss_grad(it, id, bce_logits_d); }
bool cg_eval_HINGE_GRAD(struct cg_interp *it, int id) { return ewise_loss_grad(it, id, hinge_d); }

/* The class label of row r of an i32 target, checked against the class count. */
static bool label_of(struct cg_interp *it, int id, const struct cg_val *t, size_t r, size_t classes,
                     size_t *out) {
    double v = t->d[r];
    if (v < 0 || v >= (double)classes)
        return cg_fail(it, id, "label %.0f of batch item %zu is out of range for %zu classes", v, r, classes);
    *out = (size_t)v;
    return true;
}

/* Logits [B, C] with i32 labels [B] or f32 probabilities [B, C]; mean over B of
 * -sum_c t_c log_softmax(x)_c, by a max-shifted log-sum-exp. */
bool cg_eval_CROSS_ENTROPY(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *t = cg_arg(it, id, 1);
    bool labels = cg_node(it, cg_node(it, id)->args[1])->type.dtype == DT_I32;
    size_t rows = (size_t)x->shape.dim[0], c = (size_t)x->shape.dim[1];
    double s = 0;
    for (size_t r = 0; r < rows; r++) {
        const double *xr = &x->d[r * c];
        double lse = logsumexp(xr, c, 1);
        if (labels) {
            size_t y = 0;
            if (!label_of(it, id, t, r, c, &y)) return false;
            s += lse - xr[y];
        } else {
            for (size_t j = 0; j < c; j++) s -= t->d[r * c + j] * (xr[j] - lse);
        }
    }
    cg_out(it, id)->d[0] = s / (double)rows;
    return true;
}

/* d/dx = (softmax(x) sum_c t_c - t) g / B; with labels t is one-hot. */
bool cg_eval_CROSS_ENTROPY_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *t = cg_arg(it, id, 1), *dx = cg_out(it, id);
    bool labels = cg_node(it, cg_node(it, id)->args[1])->type.dtype == DT_I32;
    size_t rows = (size_t)x->shape.dim[0], c = (size_t)x->shape.dim[1];
    double k = cg_arg(it, id, 2)->d[0] / (double)rows;
    for (size_t r = 0; r < rows; r++) {
        const double *xr = &x->d[r * c];
        double lse = logsumexp(xr, c, 1), tsum = 1;
        size_t y = 0;
        if (labels && !label_of(it, id, t, r, c, &y)) return false;
        if (!labels) {
            tsum = 0;
            for (size_t j = 0; j < c; j++) tsum += t->d[r * c + j];
        }
        for (size_t j = 0; j < c; j++) {
            double tj = labels ? (j == y ? 1 : 0) : t->d[r * c + j];
            dx->d[r * c + j] = k * (exp(xr[j] - lse) * tsum - tj);
        }
    }
    return true;
}

/* The first index of the maximum of x[0..k). */
static size_t argmax(const double *x, size_t k) {
    size_t best = 0;
    for (size_t j = 1; j < k; j++)
        if (x[j] > x[best]) best = j;
    return best;
}

/* Fraction of rows whose argmax equals the label (or the target's argmax). */
bool cg_eval_ACCURACY(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *t = cg_arg(it, id, 1);
    bool labels = cg_node(it, cg_node(it, id)->args[1])->type.dtype == DT_I32;
    size_t rows = (size_t)x->shape.dim[0], c = (size_t)x->shape.dim[1], hits = 0;
    for (size_t r = 0; r < rows; r++) {
        size_t y = 0;
        if (labels && !label_of(it, id, t, r, c, &y)) return false;
        if (!labels) y = argmax(&t->d[r * c], c);
        hits += argmax(&x->d[r * c], c) == y;
    }
    cg_out(it, id)->d[0] = (double)hits / (double)rows;
    return true;
}

/* ----------------------------------------------------------- convolution */

/* The geometry of a conv2d: input x [n, ci, h, w], weight [co, ci/g, kh, kw],
 * output y [n, co, ho, wo]. */
struct conv {
    size_t n, ci, h, w;       /* input */
    size_t co, kh, kw;        /* weight */
    size_t ho, wo;            /* output */
    size_t g;                 /* groups */
    int64_t s[2], p[4], d[2]; /* stride, pad [top, left, bottom, right], dilation */
};

static void conv_attrs(const struct ir_node *n, struct conv *c) {
    memcpy(c->s, ir_attr_v(n, ATTR_STRIDE, NULL), sizeof c->s);
    memcpy(c->p, ir_attr_v(n, ATTR_PAD, NULL), sizeof c->p);
    memcpy(c->d, ir_attr_v(n, ATTR_DILATION, NULL), sizeof c->d);
    c->g = (size_t)ir_attr_i(n, ATTR_GROUPS);
}

static void conv_shapes(struct conv *c, const struct shape *x, const struct shape *w, const struct shape *y) {
    c->n = (size_t)x->dim[0], c->ci = (size_t)x->dim[1], c->h = (size_t)x->dim[2], c->w = (size_t)x->dim[3];
    c->co = (size_t)w->dim[0], c->kh = (size_t)w->dim[2], c->kw = (size_t)w->dim[3];
    c->ho = (size_t)y->dim[2], c->wo = (size_t)y->dim[3];
}

/* What conv_loop computes from the three arrays (x, w, y in conv2d's roles). */
enum conv_mode {
    CONV_FWD, /* y = conv(x, w) */
    CONV_DX,  /* x += conv^T(y, w): the input gradient, and conv_transpose2d */
    CONV_DW,  /* w += correlation of x with y: the weight gradient */
};

/* The outputs o in [0, out) whose tap o * s - p + k lands inside [0, in): [*lo, *hi). */
static void tap_range(int64_t out, int64_t in, int64_t s, int64_t p, int64_t k, int64_t *lo, int64_t *hi) {
    int64_t a = p - k; /* need o * s >= a and o * s < in + a */
    *lo = a <= 0 ? 0 : (a + s - 1) / s;
    *hi = in + a <= 0 ? 0 : (in + a - 1) / s + 1;
    if (*hi > out) *hi = out;
    if (*lo > *hi) *lo = *hi;
}

/* Every (input, weight, output) index triple of a conv2d, each multiply once:
 *   y[b, o, oh, ow] += x[b, grp*ci/g + c, oh*s0 - p0 + i*d0, ow*s1 - p1 + j*d1] * w[o, c, i, j]
 * with grp = o / (co/g); taps outside the input read zero padding. The loops run
 * over the weight outside and the output positions inside (contiguous rows). */
static void conv_loop(const struct conv *c, double *x, double *w, double *y, enum conv_mode mode) {
    size_t cig = c->ci / c->g, cog = c->co / c->g;
    for (size_t b = 0; b < c->n; b++)
        for (size_t o = 0; o < c->co; o++)
            for (size_t ch = 0; ch < cig; ch++) {
                size_t plane = (b * c->ci + (o / cog) * cig + ch) * c->h * c->w;
                for (size_t i = 0; i < c->kh; i++) {
                    int64_t oh0, oh1;
                    tap_range((int64_t)c->ho, (int64_t)c->h, c->s[0], c->p[0], (int64_t)i * c->d[0], &oh0,
                              &oh1);
                    for (size_t j = 0; j < c->kw; j++) {
                        int64_t ow0, ow1;
                        tap_range((int64_t)c->wo, (int64_t)c->w, c->s[1], c->p[1], (int64_t)j * c->d[1], &ow0,
                                  &ow1);
                        double *wp = &w[((o * cig + ch) * c->kh + i) * c->kw + j], acc = 0;
                        for (int64_t oh = oh0; oh < oh1; oh++) {
                            int64_t ih = oh * c->s[0] - c->p[0] + (int64_t)i * c->d[0];
                            double *xr = &x[plane + (size_t)ih * c->w];
                            double *yr = &y[((b * c->co + o) * c->ho + (size_t)oh) * c->wo];
                            int64_t iw = ow0 * c->s[1] - c->p[1] + (int64_t)j * c->d[1];
                            for (int64_t ow = ow0; ow < ow1; ow++, iw += c->s[1]) {
                                if (mode == CONV_FWD)
                                    yr[ow] += xr[iw] * *wp;
                                else if (mode == CONV_DX)
                                    xr[iw] += yr[ow] * *wp;
                                else
                                    acc += yr[ow] * xr[iw];
                            }
                        }
                        if (mode == CONV_DW) *wp += acc;
                    }
                }
            }
}

bool cg_eval_CONV2D(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *w = cg_arg(it, id, 1), *y = cg_out(it, id);
    struct conv c;
    conv_attrs(cg_node(it, id), &c);
    conv_shapes(&c, &x->shape, &w->shape, &y->shape);
    conv_loop(&c, x->d, w->d, y->d, CONV_FWD);
    return true;
}

/* (dy, w) -> dx of the node's (the forward input's) shape. */
bool cg_eval_CONV2D_GRAD_INPUT(struct cg_interp *it, int id) {
    struct cg_val *dy = cg_arg(it, id, 0), *w = cg_arg(it, id, 1), *dx = cg_out(it, id);
    struct conv c;
    conv_attrs(cg_node(it, id), &c);
    conv_shapes(&c, &dx->shape, &w->shape, &dy->shape);
    conv_loop(&c, dx->d, w->d, dy->d, CONV_DX);
    return true;
}

/* (x, dy) -> dw of the node's (the weight's) shape. */
bool cg_eval_CONV2D_GRAD_WEIGHT(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dw = cg_out(it, id);
    struct conv c;
    conv_attrs(cg_node(it, id), &c);
    conv_shapes(&c, &x->shape, &dw->shape, &dy->shape);
    conv_loop(&c, x->d, dw->d, dy->d, CONV_DW);
    return true;
}

/* The adjoint of conv2d with weight w [in, out/g, kh, kw] read as a conv2d weight
 * [O, I/g, kh, kw]: the conv2d maps this op's output (its "input") to this op's
 * input (its "output"), so y = conv2d_grad_input(x, w), as in PyTorch. output_pad
 * only enlarges y; the extra rows receive whatever taps reach them. */
bool cg_eval_CONV_TRANSPOSE2D(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *w = cg_arg(it, id, 1), *y = cg_out(it, id);
    struct conv c;
    conv_attrs(cg_node(it, id), &c);
    conv_shapes(&c, &y->shape, &w->shape, &x->shape);
    conv_loop(&c, y->d, w->d, x->d, CONV_DX);
    return true;
}

/* --------------------------------------------------------------- pooling */

/* A pooling window geometry over x [n*c planes, h, w] to [ho, wo]. */
struct pool {
    size_t planes, h, w, ho, wo; /* sizes */
    int64_t k[2], s[2], p[4];    /* kernel, stride, pad */
};

static void pool_geo(struct cg_interp *it, int id, const struct shape *x, const struct shape *y,
                     struct pool *p) {
    const struct ir_node *n = cg_node(it, id);
    memcpy(p->k, ir_attr_v(n, ATTR_KERNEL, NULL), sizeof p->k);
    memcpy(p->s, ir_attr_v(n, ATTR_STRIDE, NULL), sizeof p->s);
    memcpy(p->p, ir_attr_v(n, ATTR_PAD, NULL), sizeof p->p);
    p->planes = (size_t)(x->dim[0] * x->dim[1]);
    p->h = (size_t)x->dim[2], p->w = (size_t)x->dim[3], p->ho = (size_t)y->dim[2], p->wo = (size_t)y->dim[3];
}

/* The flat index (within a plane) of the first maximum of window (oh, ow); padding
 * never wins. */
static size_t window_argmax(const struct pool *p, const double *plane, size_t oh, size_t ow) {
    size_t best = (size_t)-1;
    for (int64_t i = 0; i < p->k[0]; i++) {
        int64_t ih = (int64_t)oh * p->s[0] - p->p[0] + i;
        if (ih < 0 || ih >= (int64_t)p->h) continue;
        for (int64_t j = 0; j < p->k[1]; j++) {
            int64_t iw = (int64_t)ow * p->s[1] - p->p[1] + j;
            if (iw < 0 || iw >= (int64_t)p->w) continue;
            size_t at = (size_t)ih * p->w + (size_t)iw;
            if (best == (size_t)-1 || plane[at] > plane[best]) best = at;
        }
    }
    return best;
}

bool cg_eval_MAXPOOL2D(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    struct pool p;
    pool_geo(it, id, &x->shape, &y->shape, &p);
    for (size_t pl = 0; pl < p.planes; pl++)
        for (size_t oh = 0; oh < p.ho; oh++)
            for (size_t ow = 0; ow < p.wo; ow++) {
                const double *plane = &x->d[pl * p.h * p.w];
                size_t at = window_argmax(&p, plane, oh, ow);
                y->d[(pl * p.ho + oh) * p.wo + ow] = at == (size_t)-1 ? 0 : plane[at];
            }
    return true;
}

/* (x, dy): each window's gradient goes to its first maximum. */
bool cg_eval_MAXPOOL2D_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dx = cg_out(it, id);
    struct pool p;
    pool_geo(it, id, &x->shape, &dy->shape, &p);
    for (size_t pl = 0; pl < p.planes; pl++)
        for (size_t oh = 0; oh < p.ho; oh++)
            for (size_t ow = 0; ow < p.wo; ow++) {
                size_t at = window_argmax(&p, &x->d[pl * p.h * p.w], oh, ow);
                if (at != (size_t)-1) dx->d[pl * p.h * p.w + at] += dy->d[(pl * p.ho + oh) * p.wo + ow];
            }
    return true;
}

/* (x, y, dp) -> dw: the dense gradient maxpool2d_grad(y, dp) by the pool_*
 * attributes, then conv2d_grad_weight(x, that), as the op is defined. */
bool cg_eval_CONV2D_GRAD_WEIGHT_MAXPOOL(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_arg(it, id, 1), *dp = cg_arg(it, id, 2),
                  *dw = cg_out(it, id);
    const struct ir_node *n = cg_node(it, id);
    struct pool p;
    memcpy(p.k, ir_attr_v(n, ATTR_POOL_KERNEL, NULL), sizeof p.k);
    memcpy(p.s, ir_attr_v(n, ATTR_POOL_STRIDE, NULL), sizeof p.s);
    memcpy(p.p, ir_attr_v(n, ATTR_POOL_PAD, NULL), sizeof p.p);
    p.planes = (size_t)(y->shape.dim[0] * y->shape.dim[1]);
    p.h = (size_t)y->shape.dim[2], p.w = (size_t)y->shape.dim[3];
    p.ho = (size_t)dp->shape.dim[2], p.wo = (size_t)dp->shape.dim[3];
    double *g = calloc(y->numel ? y->numel : 1, sizeof *g);
    if (!g) return cg_fail(it, id, "out of memory");
    for (size_t pl = 0; pl < p.planes; pl++)
        for (size_t oh = 0; oh < p.ho; oh++)
            for (size_t ow = 0; ow < p.wo; ow++) {
                size_t at = window_argmax(&p, &y->d[pl * p.h * p.w], oh, ow);
                if (at != (size_t)-1) g[pl * p.h * p.w + at] += dp->d[(pl * p.ho + oh) * p.wo + ow];
            }
    struct conv c;
    conv_attrs(n, &c);
    conv_shapes(&c, &x->shape, &dw->shape, &y->shape);
    conv_loop(&c, x->d, dw->d, g, CONV_DW);
    free(g);
    return true;
}

/* Average over the full window, padding counted (PyTorch's count_include_pad). In
 * the forward direction dx is NULL; in the gradient direction y holds dy. */
static void avgpool(const struct pool *p, const double *x, double *y, double *dx) {
    double inv = 1.0 / (double)(p->k[0] * p->k[1]);
    for (size_t pl = 0; pl < p->planes; pl++)
        for (size_t oh = 0; oh < p->ho; oh++)
            for (size_t ow = 0; ow < p->wo; ow++) {
                double *yp = &y[(pl * p->ho + oh) * p->wo + ow], s = 0;
                for (int64_t i = 0; i < p->k[0]; i++) {
                    int64_t ih = (int64_t)oh * p->s[0] - p->p[0] + i;
                    if (ih < 0 || ih >= (int64_t)p->h) continue;
                    for (int64_t j = 0; j < p->k[1]; j++) {
                        int64_t iw = (int64_t)ow * p->s[1] - p->p[1] + j;
                        if (iw < 0 || iw >= (int64_t)p->w) continue;
                        size_t at = (pl * p->h + (size_t)ih) * p->w + (size_t)iw;
                        if (dx)
                            dx[at] += *yp * inv;
                        else
                            s += x[at];
                    }
                }
                if (!dx) *yp = s * inv;
            }
}

bool cg_eval_AVGPOOL2D(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    struct pool p;
    pool_geo(it, id, &x->shape, &y->shape, &p);
    avgpool(&p, x->d, y->d, NULL);
    return true;
}

bool cg_eval_AVGPOOL2D_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dx = cg_out(it, id);
    struct pool p;
    pool_geo(it, id, &x->shape, &dy->shape, &p);
    avgpool(&p, x->d, dy->d, dx->d);
    return true;
}

/* Nearest neighbour: y[.., h, w] = x[.., h / s0, w / s1]; the gradient sums each
 * s0 x s1 block. `small` is x's shape (the gradient's output). */
static void upsample(struct cg_interp *it, int id, const struct shape *small, double *x, double *y,
                     bool grad) {
    const int64_t *sc = ir_attr_v(cg_node(it, id), ATTR_FACTOR, NULL);
    size_t planes = (size_t)(small->dim[0] * small->dim[1]), h = (size_t)small->dim[2],
           w = (size_t)small->dim[3];
    size_t s0 = (size_t)sc[0], s1 = (size_t)sc[1], H = h * s0, W = w * s1;
    for (size_t pl = 0; pl < planes; pl++)
        for (size_t i = 0; i < H; i++)
            for (size_t j = 0; j < W; j++) {
                size_t big = (pl * H + i) * W + j, at = (pl * h + i / s0) * w + j / s1;
                if (grad)
                    x[at] += y[big];
                else
                    y[big] = x[at];
            }
}

bool cg_eval_UPSAMPLE2D(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0);
    upsample(it, id, &x->shape, x->d, cg_out(it, id)->d, false);
    return true;
}

bool cg_eval_UPSAMPLE2D_GRAD(struct cg_interp *it, int id) {
    struct cg_val *dx = cg_out(it, id);
    upsample(it, id, &dx->shape, dx->d, cg_arg(it, id, 0)->d, true);
    return true;
}

/* ---------------------------------------------------- dropout, batchnorm */

/* The mask of netrt.h's nrt_dropout_keep; DROPOUT and DROPOUT_GRAD are the same map. */
static bool dropout(struct cg_interp *it, int id) {
    const struct ir_node *n = cg_node(it, id);
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    double rate = ir_attr_f(n, ATTR_RATE);
    uint64_t seed = (uint64_t)ir_attr_i(n, ATTR_SEED);
    uint32_t thr = nrt_dropout_threshold(rate);
    double scale = 1.0 / (1.0 - rate);
    for (size_t i = 0; i < y->numel; i++)
        y->d[i] = nrt_dropout_keep(seed, it->step, i, thr) ? x->d[i] * scale : 0;
    return true;
}

bool cg_eval_DROPOUT(struct cg_interp *it, int id) { return dropout(it, id); }
bool cg_eval_DROPOUT_GRAD(struct cg_interp *it, int id) { return dropout(it, id); }

/* gamma (x - mean) / sqrt(var + eps) + beta, per channel of axis 1. */
bool cg_eval_BATCHNORM(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    const double *gamma = cg_arg(it, id, 1)->d, *beta = cg_arg(it, id, 2)->d;
    const double *mean = cg_arg(it, id, 3)->d, *var = cg_arg(it, id, 4)->d;
    double eps = ir_attr_f(cg_node(it, id), ATTR_EPS);
    size_t outer, inner, ch = (size_t)x->shape.dim[1];
    split_axis(&x->shape, 1, &outer, &inner);
    for (size_t i = 0; i < x->numel; i++) {
        size_t c = (i / inner) % ch;
        y->d[i] = gamma[c] * (x->d[i] - mean[c]) / sqrt(var[c] + eps) + beta[c];
    }
    return true;
}

/* (x, dy, mean) -> [2, C]: S(dy), S(dy (x - mean)) per channel of axis 1. */
bool cg_eval_BATCHNORM_GRAD_SUMS(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *s = cg_out(it, id);
    const double *mean = cg_arg(it, id, 2)->d;
    size_t outer, inner, ch = (size_t)x->shape.dim[1];
    split_axis(&x->shape, 1, &outer, &inner);
    for (size_t c = 0; c < 2 * ch; c++) s->d[c] = 0;
    for (size_t i = 0; i < x->numel; i++) {
        size_t c = (i / inner) % ch;
        s->d[c] += dy->d[i];
        s->d[ch + c] += dy->d[i] * (x->d[i] - mean[c]);
    }
    return true;
}

/* (x, dy, gamma, mean, var, sums) -> dx = gamma r (dy - S(dy)/M - (x - mean) r^2 S(dy (x - mean))/M). */
bool cg_eval_BATCHNORM_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dx = cg_out(it, id);
    const double *gamma = cg_arg(it, id, 2)->d, *mean = cg_arg(it, id, 3)->d, *var = cg_arg(it, id, 4)->d;
    const double *s = cg_arg(it, id, 5)->d;
    double eps = ir_attr_f(cg_node(it, id), ATTR_EPS);
    size_t outer, inner, ch = (size_t)x->shape.dim[1];
    split_axis(&x->shape, 1, &outer, &inner);
    double count = (double)(x->numel / ch);
    for (size_t i = 0; i < x->numel; i++) {
        size_t c = (i / inner) % ch;
        double r = 1 / sqrt(var[c] + eps);
        dx->d[i] = gamma[c] * r * (dy->d[i] - s[c] / count - (x->d[i] - mean[c]) * r * r * s[ch + c] / count);
    }
    return true;
}

/* Rows of the last axis: the mean and 1 / sqrt(var + eps) of row r of x. */
static void row_stats(const struct cg_val *x, size_t d, size_t r, double eps, double *mean, double *rstd) {
    double s = 0, v = 0;
    for (size_t j = 0; j < d; j++) s += x->d[r * d + j];
    *mean = s / (double)d;
    for (size_t j = 0; j < d; j++) v += (x->d[r * d + j] - *mean) * (x->d[r * d + j] - *mean);
    *rstd = 1 / sqrt(v / (double)d + eps);
}

/* (x - mean) / sqrt(var + eps) over the last axis. */
bool cg_eval_LAYERNORM(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *y = cg_out(it, id);
    double eps = ir_attr_f(cg_node(it, id), ATTR_EPS), mean, rstd;
    size_t d = (size_t)x->shape.dim[x->shape.rank - 1];
    for (size_t r = 0; d && r < x->numel / d; r++) {
        row_stats(x, d, r, eps, &mean, &rstd);
        for (size_t j = 0; j < d; j++) y->d[r * d + j] = (x->d[r * d + j] - mean) * rstd;
    }
    return true;
}

/* (x, dy[, gamma[, r]]): dx = rstd (g - mean(g) - y mean(g y)) (+ r), y the
 * normalized x, g = dy (times gamma). */
bool cg_eval_LAYERNORM_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dx = cg_out(it, id);
    const double *gamma = cg_node(it, id)->nargs >= 3 ? cg_arg(it, id, 2)->d : NULL;
    const double *res = cg_node(it, id)->nargs == 4 ? cg_arg(it, id, 3)->d : NULL;
    double eps = ir_attr_f(cg_node(it, id), ATTR_EPS), mean, rstd;
    size_t d = (size_t)x->shape.dim[x->shape.rank - 1];
#define G(j) (dy->d[r * d + (j)] * (gamma ? gamma[j] : 1))
    for (size_t r = 0; d && r < x->numel / d; r++) {
        row_stats(x, d, r, eps, &mean, &rstd);
        double sg = 0, sgy = 0;
        for (size_t j = 0; j < d; j++) {
            sg += G(j);
            sgy += G(j) * (x->d[r * d + j] - mean) * rstd;
        }
        for (size_t j = 0; j < d; j++) {
            double yj = (x->d[r * d + j] - mean) * rstd;
            dx->d[r * d + j] =
                rstd * (G(j) - sg / (double)d - yj * sgy / (double)d) + (res ? res[r * d + j] : 0);
        }
    }
#undef G
    return true;
}

/* (y, dy) -> [2, D]: S(dy), S(dy y) over the rows. */
bool cg_eval_LAYERNORM_GRAD_SUMS(struct cg_interp *it, int id) {
    struct cg_val *y = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *s = cg_out(it, id);
    size_t d = (size_t)y->shape.dim[y->shape.rank - 1];
    for (size_t j = 0; j < 2 * d; j++) s->d[j] = 0;
    for (size_t i = 0; i < y->numel; i++) {
        s->d[i % d] += dy->d[i];
        s->d[d + i % d] += dy->d[i] * y->d[i];
    }
    return true;
}
