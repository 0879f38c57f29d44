/* tools/gradcheck.c -- `netc check --gradcheck`: after shape inference and
 * autodiff (no optimizer), each training function runs once in the reference
 * interpreter (double precision) on a random batch, and its grad.<param> outputs
 * are compared with central finite differences of the loss at a few elements of
 * every parameter. The differences run a copy of the function cut down to its
 * loss (no backward graph), with the same dropout step, so masks match.
 * Sections: random data, the check of one function, the driver. */
#include "tools/gradcheck.h"

#include "codegen/codegen.h"
#include "passes/passes.h"

#include <math.h>
#include <string.h>

/* --------------------------------------------------------- random data */

/* splitmix64: uniform doubles in [0, 1) and normals by Box-Muller. */
struct rng {
    uint64_t s; /* state */
};

static double rng_unit(struct rng *r) { return (double)(nrt_mix64(r->s++) >> 11) * 0x1p-53; }

static double rng_normal(struct rng *r) {
    double u = rng_unit(r), v = rng_unit(r);
    return sqrt(-2 * log(1 - u)) * cos(6.283185307179586 * v);
}

static size_t buf_numel(const struct ir_buffer *b, int64_t n) {
    size_t c = 1;
    for (int i = 0; i < b->type.shape.rank; i++)
        c *= (size_t)(b->type.shape.dim[i] == IR_DIM_N ? n : b->type.shape.dim[i]);
    return c;
}

/* The loss or metric node that reads input `name` as its target (operand 1), in
 * any function; *pred gets its prediction operand's type. OP_COUNT if none. */
static enum op target_of(const struct ir_module *m, const char *name, struct type *pred) {
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        const struct ir_func *f = m->funcs[i];
        for (int id = 0; id < ir_func_len(f); id++) {
            const struct ir_node *n = &f->nodes[id];
            if (n->nargs != 2 || op_info[n->op].kind != OK_LOSS) continue;
            if (n->op != OP_CROSS_ENTROPY && n->op != OP_MASKED_CROSS_ENTROPY && n->op != OP_MSE &&
                n->op != OP_BCE && n->op != OP_BCE_LOGITS && n->op != OP_HINGE)
                continue;
            const struct ir_node *t = &f->nodes[n->args[1]];
            if (t->op == OP_INPUT && t->sym && strcmp(t->sym, name) == 0) {
                *pred = f->nodes[n->args[0]].type;
                return n->op;
            }
        }
    }
    return OP_COUNT;
}

/* Values valid for what reads them: class labels in [0, C) where C is the
 * classifier's width; probability rows for cross-entropy targets; [0, 1] for
 * binary cross-entropy; -1/+1 for hinge; other inputs normal(0, 1) (or their own
 * noise distribution); parameters and state from their init specs. */
static void fill(const struct ir_module *m, const struct ir_buffer *b, double *v, size_t count,
                 struct rng *r) {
    struct type pred = {0};
    enum op use = b->kind == BUF_INPUT ? target_of(m, b->name, &pred) : OP_COUNT;
    int64_t width = pred.shape.rank > 0 ? pred.shape.dim[pred.shape.rank - 1] : 1;
    if (b->kind == BUF_INPUT && b->type.dtype == DT_I32) {
        int64_t classes =
            (use == OP_CROSS_ENTROPY || use == OP_MASKED_CROSS_ENTROPY) && width > 1 ? width : 2;
        for (size_t i = 0; i < count; i++) v[i] = (double)(nrt_mix64(r->s++) % (uint64_t)classes);
    } else if (b->kind == BUF_INPUT && use == OP_CROSS_ENTROPY && width > 0 && count % (size_t)width == 0) {
        for (size_t row = 0; row < count; row += (size_t)width) {
            double sum = 0;
            for (int64_t k = 0; k < width; k++) sum += v[row + k] = exp(rng_normal(r));
            for (int64_t k = 0; k < width; k++) v[row + k] /= sum;
        }
    } else if (b->kind == BUF_INPUT) {
        const struct ir_source *s = &b->data;
        bool uni = s->kind && strcmp(s->kind, "uniform") == 0 && s->nargs == 2;
        bool nrm = s->kind && strcmp(s->kind, "normal") == 0 && s->nargs == 2;
        for (size_t i = 0; i < count; i++) {
            if (use == OP_BCE || use == OP_BCE_LOGITS)
                v[i] = rng_unit(r);
            else if (use == OP_HINGE)
                v[i] = rng_unit(r) < 0.5 ? -1 : 1;
            else if (uni)
                v[i] = s->args[0] + (s->args[1] - s->args[0]) * rng_unit(r);
            else if (nrm)
                v[i] = s->args[0] + s->args[1] * rng_normal(r);
            else
                v[i] = rng_normal(r);
        }
    } else {
        const struct ir_init *in = &b->init;
        for (size_t i = 0; i < count; i++) {
            switch (in->kind) {
            case INIT_ZEROS:
                v[i] = 0;
                break;
            case INIT_CONST:
                v[i] = in->a;
                break;
            case INIT_UNIFORM:
                v[i] = in->a + (in->b - in->a) * rng_unit(r);
                break;
            case INIT_NORMAL:
                v[i] = in->a + in->b * rng_normal(r);
                break;
            case INIT_RANGE:
                v[i] = (double)i >= in->a && (double)i < in->b ? 1 : 0;
                break;
            }
        }
    }
}

/* ------------------------------------------------ the check of one function */

static bool set_buf(struct cg_interp *it, const struct ir_buffer *b, const double *v, size_t count) {
    if (b->type.dtype != DT_I32) return cg_interp_set_f64(it, b->name, v, count);
    int32_t *iv = malloc(sizeof *iv * (count ? count : 1));
    if (!iv) return false;
    for (size_t i = 0; i < count; i++) iv[i] = (int32_t)v[i];
    bool ok = cg_interp_set_i32(it, b->name, iv, count);
    free(iv);
    return ok;
}

/* An interpreter for f with every buffer set from data, or NULL (reported). */
static struct cg_interp *interp_for(struct ir_module *m, struct ir_func *f, double **data, int64_t n) {
    struct cg_interp *it = cg_interp_new(m, f, n);
    cg_interp_set_step(it, 1);
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        if (!set_buf(it, &m->buffers[b], data[b], buf_numel(&m->buffers[b], n))) {
            fprintf(stderr, "netc check: error: gradcheck: %s: %s\n", f->name, cg_interp_error(it));
            cg_interp_free(it);
            return NULL;
        }
    }
    return it;
}

static bool loss_of(struct cg_interp *it, const char *loss, double *l) {
    if (cg_interp_run(it) && cg_interp_output_f64(it, loss, l, 1)) return true;
    fprintf(stderr, "netc check: error: gradcheck: %s: %s\n", it->f->name, cg_interp_error(it));
    return false;
}

/* Column widths of the report. */
struct widths {
    int func, param, type; /* characters */
};

/* Check f (a training function with grad.* outputs); fwd is its copy cut down to
 * the loss. Updates *worst; false on an evaluation error. */
static bool check_func(struct ir_module *m, struct ir_func *f, struct ir_func *fwd, double **data,
                       const struct gradcheck_options *opt, struct rng *r, const struct widths *w, FILE *out,
                       double *worst, bool *failed) {
    struct cg_interp *full = interp_for(m, f, data, opt->batch);
    struct cg_interp *it = full ? interp_for(m, fwd, data, opt->batch) : NULL;
    double l0;
    bool ok = it && loss_of(full, f->loss, &l0);
    for (size_t b = 0; ok && b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        char name[512];
        snprintf(name, sizeof name, "grad.%s", buf->name);
        if (buf->kind != BUF_PARAM || ir_output_find(f, name) < 0) continue;
        size_t count = buf_numel(buf, opt->batch);
        double *g = malloc(sizeof *g * count);
        if (!g || !cg_interp_output_f64(full, name, g, count)) {
            fprintf(stderr, "netc check: error: gradcheck: %s: %s\n", f->name,
                    g ? cg_interp_error(full) : "out of memory");
            free(g);
            ok = false;
            break;
        }
        double err = 0;
        int retried = 0;
        size_t samples = count < (size_t)opt->samples ? count : (size_t)opt->samples;
        for (size_t s = 0; ok && s < samples; s++) {
            size_t i = samples == count ? s : (size_t)(nrt_mix64(r->s++) % count);
            double v = data[b][i], best = INFINITY;
            for (int shrink = 0; ok && shrink < 4 && !(best <= GRADCHECK_RETRY); shrink++) {
                double h = GRADCHECK_EPS * pow(10, -shrink) * fmax(1, fabs(v)), l[2];
                for (int k = 0; ok && k < 2; k++) {
                    data[b][i] = v + (k ? -h : h);
                    ok = set_buf(it, buf, data[b], count) && loss_of(it, fwd->loss, &l[k]);
                }
                if (!ok) break;
                double num = (l[0] - l[1]) / (2 * h);
                double e = fabs(g[i] - num) / fmax(fmax(fabs(g[i]), fabs(num)), GRADCHECK_FLOOR);
                if (e < best) best = e; /* a NaN error leaves best infinite: a failure */
                retried += shrink == 1;
            }
            data[b][i] = v;
            ok = ok && set_buf(it, buf, data[b], count);
            if (!(best <= err)) err = best; /* NaN counts as the worst */
        }
        free(g);
        if (!ok) break;
        char ty[TYPE_STR_MAX], note[64] = "";
        if (retried) snprintf(note, sizeof note, "  (%d retried with a smaller step)", retried);
        fprintf(out, "  %-*s  %-*s  %-*s  max rel err %.1e%s%s\n", w->func, f->name, w->param, buf->name,
                w->type, type_str(&buf->type, ty, sizeof ty), err, note,
                err <= GRADCHECK_TOL ? "" : "  FAILED");
        if (!(err <= GRADCHECK_TOL)) *failed = true;
        if (!(err <= *worst)) *worst = err;
    }
    if (full) cg_interp_free(full);
    if (it) cg_interp_free(it);
    return ok;
}

/* ---------------------------------------------------------------- driver */

/* A copy of f computing only its loss, added to m. */
static struct ir_func *loss_only(struct ir_module *m, struct ir_func *f) {
    char name[256];
    snprintf(name, sizeof name, "%s.gradcheck", f->name);
    struct ir_func *c = ir_func_clone(m, f, name);
    int k = ir_output_find(c, f->loss);
    c->outputs[0] = c->outputs[k];
    vec_hdr_(c->outputs)->len = 1;
    ir_func_dce(c);
    return c;
}

bool gradcheck_run(struct ir_module *m, const struct gradcheck_options *opt, FILE *out) {
    if (pass_shape(m) < 0 || pass_autodiff(m) < 0 || !ir_verify(m)) return false;
    size_t nf = vec_len(m->funcs), nb = vec_len(m->buffers);
    struct ir_func **train = calloc(nf + 1, sizeof *train);
    double **data = calloc(nb + 1, sizeof *data);
    if (!train || !data) {
        free(train);
        free(data);
        return false;
    }
    struct widths w = {0, 0, 0};
    size_t nt = 0;
    for (size_t i = 0; i < nf; i++) {
        struct ir_func *f = m->funcs[i];
        if (f->mode != MODE_TRAIN || !f->loss || ir_output_find(f, f->loss) < 0) continue;
        train[nt++] = f;
        if ((int)strlen(f->name) > w.func) w.func = (int)strlen(f->name);
    }
    struct rng r = {opt->seed * 0x9e3779b97f4a7c15ull + 1};
    for (size_t b = 0; b < nb; b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        size_t count = buf_numel(buf, opt->batch);
        data[b] = malloc(sizeof(double) * (count ? count : 1));
        if (data[b]) fill(m, buf, data[b], count, &r);
        char ty[TYPE_STR_MAX];
        if (buf->kind != BUF_PARAM) continue;
        if ((int)strlen(buf->name) > w.param) w.param = (int)strlen(buf->name);
        if ((int)strlen(type_str(&buf->type, ty, sizeof ty)) > w.type) w.type = (int)strlen(ty);
    }
    fprintf(out, "gradcheck: batch %lld, seed %llu, up to %d elements per parameter, eps %g, tolerance %g\n",
            (long long)opt->batch, (unsigned long long)opt->seed, opt->samples, GRADCHECK_EPS, GRADCHECK_TOL);
    double worst = 0;
    bool ok = true, failed = false;
    for (size_t b = 0; b < nb; b++) ok = ok && data[b];
    if (nt == 0) fprintf(out, "gradcheck: no training function with a loss\n");
    for (size_t i = 0; ok && i < nt; i++)
        ok = check_func(m, train[i], loss_only(m, train[i]), data, opt, &r, &w, out, &worst, &failed);
    if (ok) fprintf(out, "gradcheck: %s (worst %.1e)\n", failed ? "FAILED" : "ok", worst);
    for (size_t b = 0; b < nb; b++) free(data[b]);
    free(data);
    free(train);
    return ok && !failed;
}
