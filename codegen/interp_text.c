/* codegen/interp_text.c -- the reference interpreter's token and sequence ops:
 * embedding lookup and its deterministic scatter-add gradient, one-hot, the
 * masked (ignore_index) cross-entropy and accuracy over [..., C] logits, and
 * masked mean/max pooling over time. Plain loops in double precision; the C and
 * OpenCL backends (c_text.c, cl_text.c) follow these semantics. */
#include "codegen/codegen.h"

#include <math.h>

/* Elements of a shape from dim `from` on. */
static size_t tail(const struct shape *s, int from) {
    size_t k = 1;
    for (int i = from; i < s->rank; i++) k *= (size_t)s->dim[i];
    return k;
}

/* ---------------------------------------------------------------- tokens */

bool cg_eval_EMBEDDING(struct cg_interp *it, int id) {
    struct cg_val *w = cg_arg(it, id, 0), *ids = cg_arg(it, id, 1), *y = cg_out(it, id);
    size_t rows = (size_t)w->shape.dim[0], d = (size_t)w->shape.dim[1];
    for (size_t p = 0; p < ids->numel; p++) {
        double v = ids->d[p];
        if (v < 0 || v >= (double)rows)
            return cg_fail(it, id,
                           "token id %.0f at position %zu is out of range for an embedding of %zu rows", v, p,
                           rows);
        for (size_t j = 0; j < d; j++) y->d[p * d + j] = w->d[(size_t)v * d + j];
    }
    return true;
}

bool cg_eval_EMBEDDING_GRAD(struct cg_interp *it, int id) {
    struct cg_val *ids = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dw = cg_out(it, id);
    size_t rows = (size_t)dw->shape.dim[0], d = (size_t)dw->shape.dim[1];
    for (size_t p = 0; p < ids->numel; p++) {
        double v = ids->d[p];
        if (v < 0 || v >= (double)rows)
            return cg_fail(it, id,
                           "token id %.0f at position %zu is out of range for an embedding of %zu rows", v, p,
                           rows);
        for (size_t j = 0; j < d; j++) dw->d[(size_t)v * d + j] += dy->d[p * d + j];
    }
    return true;
}

bool cg_eval_ONE_HOT(struct cg_interp *it, int id) {
    struct cg_val *ids = cg_arg(it, id, 0), *y = cg_out(it, id);
    size_t k = (size_t)ir_attr_i(cg_node(it, id), ATTR_CLASSES);
    for (size_t p = 0; p < ids->numel; p++)
        if (ids->d[p] >= 0 && ids->d[p] < (double)k) y->d[p * k + (size_t)ids->d[p]] = 1;
    return true;
}

/* -------------------------------------------------- masked losses, metric */

static double logsumexp(const double *x, size_t k) {
    double mx = -INFINITY, s = 0;
    for (size_t j = 0; j < k; j++) mx = x[j] > mx ? x[j] : mx;
    if (isinf(mx)) return mx;
    for (size_t j = 0; j < k; j++) s += exp(x[j] - mx);
    return mx + log(s);
}

/* Positions whose target is not `ignore`; a target outside [0, C) is an error. */
static bool count_kept(struct cg_interp *it, int id, size_t *kept) {
    struct cg_val *x = cg_arg(it, id, 0), *t = cg_arg(it, id, 1);
    double ignore = (double)ir_attr_i(cg_node(it, id), ATTR_IGNORE);
    size_t c = (size_t)x->shape.dim[x->shape.rank - 1];
    *kept = 0;
    for (size_t r = 0; r < t->numel; r++) {
        if (t->d[r] == ignore) continue;
        if (t->d[r] < 0 || t->d[r] >= (double)c)
            return cg_fail(it, id, "target %.0f at position %zu is out of range for %zu classes", t->d[r], r,
                           c);
        (*kept)++;
    }
    return true;
}

bool cg_eval_MASKED_CROSS_ENTROPY(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *t = cg_arg(it, id, 1);
    double ignore = (double)ir_attr_i(cg_node(it, id), ATTR_IGNORE);
    size_t c = (size_t)x->shape.dim[x->shape.rank - 1], kept;
    if (!count_kept(it, id, &kept)) return false;
    double s = 0;
    for (size_t r = 0; r < t->numel; r++)
        if (t->d[r] != ignore) s += logsumexp(&x->d[r * c], c) - x->d[r * c + (size_t)t->d[r]];
    cg_out(it, id)->d[0] = kept ? s / (double)kept : 0;
    return true;
}

bool cg_eval_MASKED_CROSS_ENTROPY_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *t = cg_arg(it, id, 1), *dx = cg_out(it, id);
    double ignore = (double)ir_attr_i(cg_node(it, id), ATTR_IGNORE);
    size_t c = (size_t)x->shape.dim[x->shape.rank - 1], kept;
    if (!count_kept(it, id, &kept)) return false;
    double k = kept ? cg_arg(it, id, 2)->d[0] / (double)kept : 0;
    for (size_t r = 0; r < t->numel; r++) {
        if (t->d[r] == ignore) continue; /* dx stays 0 */
        const double *xr = &x->d[r * c];
        double lse = logsumexp(xr, c);
        for (size_t j = 0; j < c; j++)
            dx->d[r * c + j] = k * (exp(xr[j] - lse) - (j == (size_t)t->d[r] ? 1 : 0));
    }
    return true;
}

bool cg_eval_MASKED_ACCURACY(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *t = cg_arg(it, id, 1);
    double ignore = (double)ir_attr_i(cg_node(it, id), ATTR_IGNORE);
    size_t c = (size_t)x->shape.dim[x->shape.rank - 1], kept, hits = 0;
    if (!count_kept(it, id, &kept)) return false;
    for (size_t r = 0; r < t->numel; r++) {
        if (t->d[r] == ignore) continue;
        size_t best = 0;
        for (size_t j = 1; j < c; j++)
            if (x->d[r * c + j] > x->d[r * c + best]) best = j;
        hits += best == (size_t)t->d[r];
    }
    cg_out(it, id)->d[0] = kept ? (double)hits / (double)kept : 0;
    return true;
}

/* ---------------------------------------------------------- masked pooling */

/* x [B, T, R...] pooled over T where ids [B, T] != pad: the mean, or the max. */
static bool masked_pool(struct cg_interp *it, int id, bool max) {
    struct cg_val *x = cg_arg(it, id, 0), *ids = cg_arg(it, id, 1), *y = cg_out(it, id);
    double pad = (double)ir_attr_i(cg_node(it, id), ATTR_PAD_ID);
    size_t b = (size_t)x->shape.dim[0], t = (size_t)x->shape.dim[1], r = tail(&x->shape, 2);
    for (size_t n = 0; n < b; n++) {
        size_t kept = 0;
        for (size_t s = 0; s < t; s++) {
            if (ids->d[n * t + s] == pad) continue;
            const double *xs = &x->d[(n * t + s) * r];
            for (size_t j = 0; j < r; j++) {
                double *o = &y->d[n * r + j];
                *o = !max ? *o + xs[j] : kept == 0 || xs[j] > *o ? xs[j] : *o;
            }
            kept++;
        }
        if (!max && kept)
            for (size_t j = 0; j < r; j++) y->d[n * r + j] /= (double)kept;
    }
    return true;
}

bool cg_eval_MASKED_MEAN(struct cg_interp *it, int id) { return masked_pool(it, id, false); }
bool cg_eval_MASKED_MAX(struct cg_interp *it, int id) { return masked_pool(it, id, true); }

bool cg_eval_MASKED_MEAN_GRAD(struct cg_interp *it, int id) {
    struct cg_val *ids = cg_arg(it, id, 0), *dy = cg_arg(it, id, 1), *dx = cg_out(it, id);
    double pad = (double)ir_attr_i(cg_node(it, id), ATTR_PAD_ID);
    size_t b = (size_t)dx->shape.dim[0], t = (size_t)dx->shape.dim[1], r = tail(&dx->shape, 2);
    for (size_t n = 0; n < b; n++) {
        size_t kept = 0;
        for (size_t s = 0; s < t; s++) kept += ids->d[n * t + s] != pad;
        for (size_t s = 0; s < t && kept; s++)
            if (ids->d[n * t + s] != pad)
                for (size_t j = 0; j < r; j++) dx->d[(n * t + s) * r + j] = dy->d[n * r + j] / (double)kept;
    }
    return true;
}

bool cg_eval_MASKED_MAX_GRAD(struct cg_interp *it, int id) {
    struct cg_val *x = cg_arg(it, id, 0), *ids = cg_arg(it, id, 1), *dy = cg_arg(it, id, 2),
                  *dx = cg_out(it, id);
    double pad = (double)ir_attr_i(cg_node(it, id), ATTR_PAD_ID);
    size_t b = (size_t)x->shape.dim[0], t = (size_t)x->shape.dim[1], r = tail(&x->shape, 2);
    for (size_t n = 0; n < b; n++)
        for (size_t j = 0; j < r; j++) {
            size_t best = t;
            for (size_t s = 0; s < t; s++)
                if (ids->d[n * t + s] != pad &&
                    (best == t || x->d[(n * t + s) * r + j] > x->d[(n * t + best) * r + j]))
                    best = s;
            if (best < t) dx->d[(n * t + best) * r + j] = dy->d[n * r + j];
        }
    return true;
}
