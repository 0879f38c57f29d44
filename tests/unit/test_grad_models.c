/* tests/unit/test_grad_models.c -- whole-model gradient checks: every example .net
 * is lowered by the front end, differentiated by pass_autodiff, and each training
 * function's grad.<param> outputs (evaluated by the interpreter, batch N = 2) are
 * checked against central finite differences of its loss at SAMPLES random
 * elements of every parameter (few, so the sanitizer build stays quick;
 * test_grad_ops checks every element of every op). Perturbing all elements along
 * a random direction instead was tried and rejected: it moves many ReLU/max-pool
 * inputs at once and crosses kinks. Double precision throughout: eps 1e-5, error
 * |analytic - numeric| / max(|analytic|, |numeric|, 1e-3) within 1e-5. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <string.h>

#define BATCH 2
#define SAMPLES 1             /* elements checked per parameter */
static int samples = SAMPLES; /* ... in the run at hand (more after simplify) */
#define EPS 1e-5
#define TOL 1e-5

static uint64_t rng_state = 99; /* test data RNG */
static double urand(double lo, double hi) {
    return lo + (hi - lo) * (double)(nrt_mix64(rng_state++) >> 11) * 0x1p-53;
}

static size_t numel(const struct ir_buffer *b) {
    size_t n = 1;
    for (int i = 0; i < b->type.shape.rank; i++)
        n *= (size_t)(b->type.shape.dim[i] == IR_DIM_N ? BATCH : b->type.shape.dim[i]);
    return n;
}

/* Test values: inputs uniform in [-1, 1], labels 0/1 (valid for any classifier),
 * parameters uniform scaled by fan-in, state at its initial value. */
static void fill(const struct ir_buffer *b, double *v, size_t count) {
    size_t fan = b->type.shape.rank > 1 ? count / (size_t)b->type.shape.dim[0] : 1;
    for (size_t i = 0; i < count; i++) {
        if (b->type.dtype == DT_I32)
            v[i] = (double)(i % 2);
        else if (b->kind == BUF_INPUT)
            v[i] = urand(-1, 1);
        else if (b->kind == BUF_PARAM)
            v[i] = urand(-1, 1) / sqrt((double)fan);
        else
            v[i] = b->init.kind == INIT_CONST ? b->init.a : 0;
    }
}

static bool set(struct cg_interp *it, const struct ir_buffer *b, const double *v, size_t count) {
    if (b->type.dtype == DT_F32) return cg_interp_set_f64(it, b->name, v, count);
    int32_t *iv = malloc(sizeof *iv * count);
    for (size_t i = 0; i < count; i++) iv[i] = (int32_t)v[i];
    bool ok = cg_interp_set_i32(it, b->name, iv, count);
    free(iv);
    return ok;
}

static double loss_of(struct cg_interp *it, const char *loss) {
    double l = NAN;
    if (!cg_interp_run(it) || !cg_interp_output_f64(it, loss, &l, 1))
        TEST_FAIL_("run: %s", cg_interp_error(it));
    return l;
}

/* For each parameter with a gradient output, SAMPLES random elements: the analytic
 * gradient of one run against central differences of the loss. */
static void check_func(struct ir_module *m, struct ir_func *f, double **data, const char *model) {
    struct cg_interp *it = cg_interp_new(m, f, BATCH);
    cg_interp_set_step(it, 3);
    for (size_t b = 0; b < vec_len(m->buffers); b++)
        if (!set(it, &m->buffers[b], data[b], numel(&m->buffers[b]))) TEST_FAIL_("%s", cg_interp_error(it));
    size_t nb = vec_len(m->buffers);
    double **grad = calloc(nb, sizeof *grad), worst = 0;
    int grads = 0, checked = 0;
    loss_of(it, f->loss);
    for (size_t b = 0; b < nb; b++) {
        char name[256];
        snprintf(name, sizeof name, "grad.%s", m->buffers[b].name);
        if (ir_output_find(f, name) < 0) continue;
        size_t count = numel(&m->buffers[b]);
        grad[b] = malloc(sizeof(double) * count);
        if (!cg_interp_output_f64(it, name, grad[b], count)) TEST_FAIL_("%s", cg_interp_error(it));
    }
    for (size_t b = 0; b < nb; b++) {
        if (!grad[b]) continue;
        const struct ir_buffer *buf = &m->buffers[b];
        size_t count = numel(buf);
        grads++;
        for (int s = 0; s < samples; s++) {
            size_t i = (size_t)(nrt_mix64(rng_state++) % count);
            double v = data[b][i], l[2];
            for (int k = 0; k < 2; k++) {
                data[b][i] = v + (k ? -EPS : EPS);
                set(it, buf, data[b], count);
                l[k] = loss_of(it, f->loss);
            }
            data[b][i] = v;
            set(it, buf, data[b], count);
            double num = (l[0] - l[1]) / (2 * EPS), g = grad[b][i];
            double err = fabs(g - num) / fmax(fmax(fabs(g), fabs(num)), 1e-3);
            worst = fmax(worst, err);
            checked++;
            if (err <= TOL)
                test_passed++;
            else
                TEST_FAIL_(
                    "%s @%s: d %s / d %s[%zu]: autodiff %.10g, finite differences %.10g (rel err %.2e)",
                    model, f->name, f->loss, buf->name, i, g, num, err);
        }
        free(grad[b]);
    }
    free(grad);
    CHECK(grads > 0);
    printf("%-22s @%-11s %2d params, %2d elements, worst rel err %.2e\n", model, f->name, grads, checked,
           worst);
    cg_interp_free(it);
}

/* simplify: also run pass_simplify after autodiff, so that its rewrites of
 * the backward graph (masks and sums before pooling gradients, the conv
 * weight gradient through a max pooling) are checked as well. */
static void check_model(const char *file, bool simplify) {
    char path[512];
    snprintf(path, sizeof path, "%s/examples/%s", NETC_SOURCE_DIR, file);
    diag_reset();
    struct ir_module *m = fe_load(path);
    if (!m) {
        TEST_FAIL_("%s does not load", path);
        return;
    }
    CHECK(pass_shape(m) >= 0);
    CHECK(pass_autodiff(m) > 0);
    if (simplify) CHECK(pass_simplify(m) > 0);
    CHECK(ir_verify(m));
    size_t nb = vec_len(m->buffers);
    double **data = calloc(nb, sizeof *data);
    for (size_t b = 0; b < nb; b++) {
        size_t count = numel(&m->buffers[b]);
        data[b] = malloc(sizeof(double) * count);
        fill(&m->buffers[b], data[b], count);
    }
    for (size_t i = 0; i < vec_len(m->funcs); i++)
        if (m->funcs[i]->mode == MODE_TRAIN && m->funcs[i]->loss) check_func(m, m->funcs[i], data, file);
    for (size_t b = 0; b < nb; b++) free(data[b]);
    free(data);
    ir_module_free(m);
}

int main(void) {
    static const char *const models[] = {"linear_regression.net",
                                         "mlp_regression.net",
                                         "mlp.net",
                                         "mnist_cnn.net",
                                         "lenet.net",
                                         "lstm.net",
                                         "dcgan.net"};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) check_model(models[i], false);
    samples = 12; /* conv2d_grad_weight_maxpool's elements among them */
    check_model("mnist_cnn.net", true);
    TEST_DONE();
}
