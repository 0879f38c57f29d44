/* tests/unit/test_optim_lower.c -- the optimizer lowering (passes/optim.c). Small
 * modules built through the API (param w f32[3], a fake gradient grad.w = x*w + c
 * from an input x) are lowered, then run for several steps in the reference
 * interpreter and compared with PyTorch's update rules written out here in double
 * precision, for every optimizer and option; plus the driver's learning-rate buffer
 * under both schedules, separate state per training function, functions the pass
 * must leave alone, errors, and print -> parse -> verify of the lowered IR. */
#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <string.h>

#define NW 3       /* elements of w */
#define STEPS 6    /* training steps per case */
#define GRAD_C 0.3 /* grad.w = x*w + GRAD_C */
#define TOL 1e-12  /* interpreter (double) against the double reference */

static const double w_init[NW] = {0.5, -1.25, 2.0};

/* The input x of step s (1-based): varied so that moments see changing gradients. */
static void x_at(int s, double x[NW]) {
    x[0] = 0.5 + 0.1 * s;
    x[1] = -1.2 + 0.35 * s;
    x[2] = 2.0 - 0.7 * s;
}

/* ------------------------------------------------------------- building */

static struct type scalar_t(void) { return (struct type){DT_F32, {0, {0}}}; }
static struct type vec_t(void) { return (struct type){DT_F32, {1, {NW}}}; }

static int node(struct ir_module *m, struct ir_func *f, enum op op, int a, int b) {
    int args[2] = {a, b}, nargs = op_info[op].arity;
    int id = ir_node_add(m, f, op, args, nargs, LOC_NONE);
    char err[256];
    if (!ir_infer(m, f, id, err, sizeof err)) {
        fprintf(stderr, "test module is ill-typed: %s\n", err);
        exit(2);
    }
    return id;
}

/* A leaf reading buffer `sym`. */
static int leaf(struct ir_module *m, struct ir_func *f, enum op op, const char *sym) {
    int id = ir_node_add(m, f, op, NULL, 0, LOC_NONE);
    ir_set_sym(m, &f->nodes[id], sym);
    char err[256];
    if (!ir_infer(m, f, id, err, sizeof err)) {
        fprintf(stderr, "test module is ill-typed: %s\n", err);
        exit(2);
    }
    return id;
}

/* An optimizer from "k=v" options. */
static void set_optim(struct ir_module *m, struct ir_func *f, const char *kind, int nkw,
                      const char *const *kw, const double *val) {
    memset(&f->optim, 0, sizeof f->optim);
    f->optim.kind = arena_strdup(m->arena, kind);
    f->optim.nkw = nkw;
    for (int i = 0; i < nkw; i++) {
        f->optim.kw[i] = arena_strdup(m->arena, kw[i]);
        f->optim.kwval[i] = val[i];
    }
}

/* Add training function `name` updating param `param`: loss = sum(x*p),
 * grad.<param> = x*p + GRAD_C (a made-up gradient whose value the test controls). */
static struct ir_func *add_train(struct ir_module *m, const char *name, const char *param) {
    struct ir_func *f = ir_func_add(m, name, MODE_TRAIN);
    int x = leaf(m, f, OP_INPUT, "x"), p = leaf(m, f, OP_PARAM, param);
    char err[256];
    int xp = node(m, f, OP_MUL, x, p);
    int loss = ir_node_add(m, f, OP_SUM, &xp, 1, LOC_NONE);
    int64_t none[1] = {0};
    ir_attr_set_v(&f->nodes[loss], ATTR_AXES, none, 0);
    if (!ir_infer(m, f, loss, err, sizeof err)) exit(2);
    int c = ir_node_add(m, f, OP_CONST, NULL, 0, LOC_NONE);
    f->nodes[c].type = scalar_t();
    ir_attr_set_f(&f->nodes[c], ATTR_VALUE, GRAD_C);
    int g = node(m, f, OP_ADD, xp, c);
    ir_output_add(m, f, "loss", loss);
    f->loss = arena_strdup(m->arena, "loss");
    char *gname = arena_printf(m->arena, "grad.%s", param);
    ir_output_add(m, f, gname, g);
    return f;
}

/* A module with input x, params w (and u), and one training function. */
static struct ir_module *build(const char *kind, int nkw, const char *const *kw, const double *val) {
    struct ir_module *m = ir_module_new("t");
    ir_buffer_add(m, BUF_INPUT, "x", vec_t(), LOC_NONE);
    int w = ir_buffer_add(m, BUF_PARAM, "w", vec_t(), LOC_NONE);
    m->buffers[w].init = (struct ir_init){INIT_UNIFORM, -1, 1};
    m->buffers[w].group = arena_strdup(m->arena, "main");
    struct ir_func *f = add_train(m, "train_step", "w");
    set_optim(m, f, kind, nkw, kw, val);
    return m;
}

/* ------------------------------------------------------------ evaluating */

/* An interpreter for f with every param and state buffer set from its initializer
 * (w from w_init). */
static struct cg_interp *interp_for(struct ir_module *m, struct ir_func *f) {
    struct cg_interp *it = cg_interp_new(m, f, 1);
    for (size_t i = 0; i < vec_len(m->buffers); i++) {
        const struct ir_buffer *b = &m->buffers[i];
        if (b->kind == BUF_INPUT) continue;
        int64_t n = shape_static_numel(&b->type.shape);
        double d[NW];
        for (int64_t k = 0; k < n; k++)
            d[k] = b->kind == BUF_PARAM ? w_init[k] : b->init.kind == INIT_CONST ? b->init.a : 0;
        if (!cg_interp_set_f64(it, b->name, d, (size_t)n)) fprintf(stderr, "%s\n", cg_interp_error(it));
    }
    return it;
}

/* One run with input x; false (reported) on an interpreter error. */
static bool run_step(struct cg_interp *it, const double x[NW]) {
    bool ok = cg_interp_set_f64(it, "x", x, NW) && cg_interp_run(it);
    if (!ok) TEST_FAIL_("interpreter: %s", cg_interp_error(it));
    return ok;
}

static void check_assigned(struct cg_interp *it, const char *buf, const double *want, int n, const char *what,
                           int step) {
    double got[NW] = {0};
    if (!cg_interp_assigned_f64(it, buf, got, (size_t)n)) {
        TEST_FAIL_("%s, step %d: nothing assigned to @%s", what, step, buf);
        return;
    }
    for (int k = 0; k < n; k++) {
        if (fabs(got[k] - want[k]) <= TOL * (1 + fabs(want[k]))) {
            test_passed++;
        } else {
            TEST_FAIL_("%s, step %d: @%s[%d] = %.17g, expected %.17g", what, step, buf, k, got[k], want[k]);
        }
    }
}

/* --------------------------------------------- the reference (PyTorch's rules) */

/* One parameter's optimizer state, as torch.optim keeps it. */
struct ref {
    double p[NW];   /* the parameter */
    double buf[NW]; /* momentum_buffer (sgd, rmsprop) */
    double m[NW];   /* exp_avg */
    double v[NW];   /* exp_avg_sq, square_avg */
    double t;       /* step */
};

static void ref_init(struct ref *r) {
    memset(r, 0, sizeof *r);
    memcpy(r->p, w_init, sizeof r->p);
}

/* torch.optim.SGD._single_tensor_sgd, dampening 0, maximize False. */
static void ref_sgd(struct ref *r, const double *g0, double lr, double mu, bool nesterov, double wd) {
    for (int k = 0; k < NW; k++) {
        double g = g0[k];
        if (wd != 0) g = g + wd * r->p[k];
        if (mu != 0) {
            r->buf[k] = r->t == 0 ? g : mu * r->buf[k] + g; /* clone on first step */
            g = nesterov ? g + mu * r->buf[k] : r->buf[k];
        }
        r->p[k] -= lr * g;
    }
    r->t += 1;
}

/* torch.optim.Adam / AdamW._single_tensor_adam(w), amsgrad False, not capturable. */
static void ref_adam(struct ref *r, const double *g0, double lr, double b1, double b2, double eps, double wd,
                     bool decoupled) {
    r->t += 1;
    double bc1 = 1 - pow(b1, r->t), bc2 = 1 - pow(b2, r->t);
    double step_size = lr / bc1, bc2_sqrt = sqrt(bc2);
    for (int k = 0; k < NW; k++) {
        double g = g0[k];
        if (decoupled)
            r->p[k] *= 1 - lr * wd;
        else if (wd != 0)
            g = g + wd * r->p[k];
        r->m[k] += (g - r->m[k]) * (1 - b1); /* lerp_(grad, 1 - beta1) */
        r->v[k] = r->v[k] * b2 + (1 - b2) * g * g;
        double denom = sqrt(r->v[k]) / bc2_sqrt + eps;
        r->p[k] += -step_size * r->m[k] / denom;
    }
}

/* torch.optim.RMSprop._single_tensor_rmsprop, centered False, weight_decay 0. */
static void ref_rmsprop(struct ref *r, const double *g0, double lr, double alpha, double eps, double mu) {
    for (int k = 0; k < NW; k++) {
        double g = g0[k];
        r->v[k] = r->v[k] * alpha + (1 - alpha) * g * g;
        double avg = sqrt(r->v[k]) + eps;
        if (mu > 0) {
            r->buf[k] = r->buf[k] * mu + g / avg;
            r->p[k] += -lr * r->buf[k];
        } else {
            r->p[k] += -lr * g / avg;
        }
    }
    r->t += 1;
}

static void grad_of(const struct ref *r, const double x[NW], double g[NW]) {
    for (int k = 0; k < NW; k++) g[k] = x[k] * r->p[k] + GRAD_C;
}

/* --------------------------------------------------------------- helpers */

static int count_assigns(const struct ir_func *f) {
    int n = 0;
    for (int i = 0; i < ir_func_len(f); i++) n += f->nodes[i].op == OP_ASSIGN;
    return n;
}

static bool has_grad_output(const struct ir_func *f) {
    for (size_t i = 0; i < vec_len(f->outputs); i++)
        if (strncmp(f->outputs[i].name, "grad.", 5) == 0) return true;
    return false;
}

/* Lower m; checks the pass changed something and the result verifies. */
static void lower(struct ir_module *m, const char *what) {
    diag_reset();
    int n = pass_optim(m);
    if (n <= 0)
        TEST_FAIL_("%s: pass_optim returned %d", what, n);
    else
        test_passed++;
    if (!ir_verify(m))
        TEST_FAIL_("%s: the lowered module does not verify", what);
    else
        test_passed++;
}

static char *print_str(const struct ir_module *m) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    ir_print(f, m);
    fclose(f);
    return buf;
}

/* ------------------------------------------------------- update numerics */

enum { K_SGD, K_ADAM, K_ADAMW, K_RMSPROP };

/* One optimizer configuration: the IR options and what the reference needs. */
struct opt_case {
    const char *what;     /* test name */
    int kind;             /* K_* */
    const char *name;     /* IR optimizer */
    int nkw;              /* options */
    const char *kw[5];    /* their names */
    double val[5];        /* their values */
    int assigns;          /* ASSIGN nodes expected after lowering */
    const char *state[3]; /* state buffers to compare with the reference, NULL-terminated */
};

static const struct opt_case cases[] = {
    {"sgd", K_SGD, "sgd", 4, {"lr", "momentum", "nesterov", "weight_decay"}, {0.1, 0, 0, 0}, 1, {NULL}},
    {"sgd momentum",
     K_SGD,
     "sgd",
     4,
     {"lr", "momentum", "nesterov", "weight_decay"},
     {0.05, 0.9, 0, 0},
     2,
     {"train_step.sgd.momentum.w"}},
    {"sgd nesterov",
     K_SGD,
     "sgd",
     4,
     {"lr", "momentum", "nesterov", "weight_decay"},
     {0.05, 0.8, 1, 0},
     2,
     {"train_step.sgd.momentum.w"}},
    {"sgd weight decay",
     K_SGD,
     "sgd",
     4,
     {"lr", "momentum", "nesterov", "weight_decay"},
     {0.1, 0, 0, 0.05},
     1,
     {NULL}},
    {"sgd nesterov weight decay",
     K_SGD,
     "sgd",
     4,
     {"lr", "momentum", "nesterov", "weight_decay"},
     {0.05, 0.9, 1, 0.01},
     2,
     {"train_step.sgd.momentum.w"}},
    {"adam",
     K_ADAM,
     "adam",
     5,
     {"lr", "beta1", "beta2", "eps", "weight_decay"},
     {0.01, 0.9, 0.999, 1e-8, 0},
     4,
     {"train_step.adam.m.w", "train_step.adam.v.w"}},
    {"adam eps 0.1",
     K_ADAM,
     "adam",
     5,
     {"lr", "beta1", "beta2", "eps", "weight_decay"},
     {0.02, 0.8, 0.95, 0.1, 0},
     4,
     {"train_step.adam.m.w", "train_step.adam.v.w"}},
    {"adam weight decay (L2)",
     K_ADAM,
     "adam",
     5,
     {"lr", "beta1", "beta2", "eps", "weight_decay"},
     {0.01, 0.9, 0.99, 1e-7, 0.1},
     4,
     {"train_step.adam.m.w", "train_step.adam.v.w"}},
    {"adamw",
     K_ADAMW,
     "adamw",
     5,
     {"lr", "beta1", "beta2", "eps", "weight_decay"},
     {0.01, 0.9, 0.999, 1e-8, 0.1},
     4,
     {"train_step.adamw.m.w", "train_step.adamw.v.w"}},
    {"adamw no decay",
     K_ADAMW,
     "adamw",
     5,
     {"lr", "beta1", "beta2", "eps", "weight_decay"},
     {0.01, 0.9, 0.999, 1e-8, 0},
     4,
     {"train_step.adamw.m.w", "train_step.adamw.v.w"}},
    {"rmsprop",
     K_RMSPROP,
     "rmsprop",
     4,
     {"lr", "rho", "eps", "momentum"},
     {0.01, 0.99, 1e-8, 0},
     2,
     {"train_step.rmsprop.v.w"}},
    {"rmsprop momentum",
     K_RMSPROP,
     "rmsprop",
     4,
     {"lr", "rho", "eps", "momentum"},
     {0.01, 0.9, 1e-3, 0.9},
     3,
     {"train_step.rmsprop.v.w", "train_step.rmsprop.momentum.w"}},
};

/* The reference's value of a state buffer, by the slot in its name. */
static const double *ref_state(const struct ref *r, const char *buf) {
    if (strstr(buf, ".momentum.")) return r->buf;
    if (strstr(buf, ".m.")) return r->m;
    return r->v;
}

static void ref_update(const struct opt_case *c, struct ref *r, const double *g, double lr) {
    const double *v = c->val;
    switch (c->kind) {
    case K_SGD:
        ref_sgd(r, g, lr, v[1], v[2] != 0, v[3]);
        break;
    case K_ADAM:
        ref_adam(r, g, lr, v[1], v[2], v[3], v[4], false);
        break;
    case K_ADAMW:
        ref_adam(r, g, lr, v[1], v[2], v[3], v[4], true);
        break;
    case K_RMSPROP:
        ref_rmsprop(r, g, lr, v[1], v[2], v[3]);
        break;
    }
}

static void test_case(const struct opt_case *c) {
    struct ir_module *m = build(c->name, c->nkw, c->kw, c->val);
    lower(m, c->what);
    struct ir_func *f = ir_func_find(m, "train_step");
    ASSERT(c->assigns, count_assigns(f));
    CHECK(!has_grad_output(f));
    CHECK(ir_output_find(f, "loss") >= 0);
    struct ir_buffer *lr = ir_buffer_find(m, "train_step.lr");
    CHECK(lr && lr->kind == BUF_STATE && lr->type.shape.rank == 0 && lr->init.kind == INIT_CONST &&
          lr->init.a == c->val[0]);
    bool adam = c->kind == K_ADAM || c->kind == K_ADAMW;
    CHECK((ir_buffer_find(m, "train_step.step") != NULL) == adam);
    struct type vt = vec_t();
    for (int s = 0; c->state[s]; s++) {
        struct ir_buffer *b = ir_buffer_find(m, c->state[s]);
        CHECK(b && b->kind == BUF_STATE && b->init.kind == INIT_ZEROS &&
              shape_equal(&b->type.shape, &vt.shape) && b->group && strcmp(b->group, "main") == 0);
    }

    struct cg_interp *it = interp_for(m, f);
    struct ref r;
    ref_init(&r);
    for (int s = 1; s <= STEPS; s++) {
        double x[NW], g[NW];
        x_at(s, x);
        grad_of(&r, x, g);
        ref_update(c, &r, g, c->val[0]);
        if (!run_step(it, x)) break;
        check_assigned(it, "w", r.p, NW, c->what, s);
        for (int k = 0; c->state[k]; k++)
            check_assigned(it, c->state[k], ref_state(&r, c->state[k]), NW, c->what, s);
        if (adam) check_assigned(it, "train_step.step", &r.t, 1, c->what, s);
        cg_interp_commit(it);
    }
    cg_interp_free(it);
    ir_module_free(m);
}

/* ------------------------------------------------------------ schedules */

/* The learning rate the driver writes before epoch e (the contract in optim.c). */
static double driver_lr(const struct ir_optim *o, double base, int e) {
    const struct ir_source *s = &o->schedule;
    if (!s->kind) return base;
    if (strcmp(s->kind, "step") == 0) return base * pow(s->kwval[1], floor(e / s->kwval[0]));
    return base * (1 + cos(acos(-1.0) * e / s->kwval[0])) / 2;
}

/* Epochs of two steps each, the driver writing @train_step.lr before each epoch;
 * `base` is the --lr override (or the optimizer's lr). */
static void test_schedule(const struct opt_case *c, const char *sched, double k0, double k1, double base) {
    struct ir_module *m = build(c->name, c->nkw, c->kw, c->val);
    struct ir_func *f = ir_func_find(m, "train_step");
    f->optim.schedule.kind = arena_strdup(m->arena, sched);
    bool step = strcmp(sched, "step") == 0;
    f->optim.schedule.nkw = step ? 2 : 1;
    f->optim.schedule.kw[0] = step ? "every" : "t_max";
    f->optim.schedule.kwval[0] = k0;
    f->optim.schedule.kw[1] = "gamma";
    f->optim.schedule.kwval[1] = k1;
    lower(m, sched);
    f = ir_func_find(m, "train_step");
    CHECK(f->optim.schedule.kind && strcmp(f->optim.schedule.kind, sched) == 0); /* kept for the driver */

    struct cg_interp *it = interp_for(m, f);
    struct ref r;
    ref_init(&r);
    int s = 0;
    for (int e = 0; e < 7; e++) {
        double lr = driver_lr(&f->optim, base, e);
        cg_interp_set_f64(it, "train_step.lr", &lr, 1);
        for (int b = 0; b < 2; b++) {
            double x[NW], g[NW];
            x_at(++s, x);
            grad_of(&r, x, g);
            ref_update(c, &r, g, lr);
            if (!run_step(it, x)) break;
            check_assigned(it, "w", r.p, NW, sched, s);
            cg_interp_commit(it);
            double unused;
            CHECK(!cg_interp_assigned_f64(it, "train_step.lr", &unused, 1)); /* F never writes lr */
        }
    }
    /* The function itself never assigns the learning rate. */
    for (int i = 0; i < ir_func_len(f); i++)
        if (f->nodes[i].op == OP_ASSIGN) CHECK(strcmp(f->nodes[i].sym, "train_step.lr") != 0);
    cg_interp_free(it);
    ir_module_free(m);
}

/* -------------------------------------------- two functions, separate state */

static void test_two_funcs(void) {
    static const char *const kw[] = {"lr", "beta1", "beta2", "eps", "weight_decay"};
    static const double d_val[] = {0.01, 0.5, 0.999, 1e-8, 0}, g_val[] = {0.002, 0.9, 0.99, 1e-8, 0};
    struct ir_module *m = build("adam", 5, kw, d_val);
    struct ir_func *d = ir_func_find(m, "train_step");
    struct ir_func *g = add_train(m, "g_step", "w");
    set_optim(m, g, "adam", 5, kw, g_val);
    lower(m, "two functions");
    d = ir_func_find(m, "train_step");
    g = ir_func_find(m, "g_step");
    const char *names[] = {"train_step.lr", "train_step.step", "train_step.adam.m.w", "train_step.adam.v.w",
                           "g_step.lr",     "g_step.step",     "g_step.adam.m.w",     "g_step.adam.v.w"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) CHECK(ir_buffer_find(m, names[i]) != NULL);
    /* Each function writes only its own state (and w). */
    for (int fi = 0; fi < 2; fi++) {
        struct ir_func *f = fi ? g : d;
        size_t len = strlen(f->name);
        for (int i = 0; i < ir_func_len(f); i++) {
            const struct ir_node *n = &f->nodes[i];
            if (n->op != OP_ASSIGN && n->op != OP_PARAM) continue;
            if (strcmp(n->sym, "w") == 0) continue;
            CHECK(strncmp(n->sym, f->name, len) == 0 && n->sym[len] == '.');
        }
    }
    /* Interleave d, d, g, d, g: w is shared, the moments and step are not. */
    struct cg_interp *di = interp_for(m, d), *gi = interp_for(m, g);
    struct ref rd, rg;
    ref_init(&rd);
    ref_init(&rg);
    const char *order = "ddgdgg";
    for (int s = 1; order[s - 1]; s++) {
        bool is_d = order[s - 1] == 'd';
        struct cg_interp *it = is_d ? di : gi, *other = is_d ? gi : di;
        struct ref *r = is_d ? &rd : &rg;
        const double *v = is_d ? d_val : g_val;
        double x[NW], gr[NW];
        x_at(s, x);
        grad_of(r, x, gr);
        ref_adam(r, gr, v[0], v[1], v[2], v[3], v[4], false);
        memcpy(is_d ? rg.p : rd.p, r->p, sizeof r->p); /* shared parameter */
        if (!run_step(it, x)) break;
        check_assigned(it, "w", r->p, NW, is_d ? "d_step" : "g_step", s);
        check_assigned(it, is_d ? "train_step.adam.m.w" : "g_step.adam.m.w", r->m, NW, "moments", s);
        check_assigned(it, is_d ? "train_step.step" : "g_step.step", &r->t, 1, "step", s);
        double w[NW];
        CHECK(cg_interp_assigned_f64(it, "w", w, NW) && cg_interp_set_f64(other, "w", w, NW));
        cg_interp_commit(it);
    }
    ASSERT(3, (int)rd.t);
    ASSERT(3, (int)rg.t);
    cg_interp_free(di);
    cg_interp_free(gi);
    ir_module_free(m);
}

/* ------------------------------------------------ what the pass leaves alone */

static void test_untouched(void) {
    static const char *const kw[] = {"lr"};
    static const double val[] = {0.1};
    struct ir_module *m = build("sgd", 1, kw, val);
    /* An eval function, a training function without an optimizer (gradients only),
     * and one whose only gradient is of an input. */
    struct ir_func *ev = add_train(m, "forward", "w");
    ev->mode = MODE_EVAL;
    ev->loss = NULL;
    add_train(m, "grads_only", "w");
    struct ir_func *gi = add_train(m, "saliency", "w");
    set_optim(m, gi, "sgd", 1, kw, val);
    gi->outputs[1].name = "grad.x";

    diag_reset();
    CHECK(pass_optim(m) > 0);
    CHECK(ir_verify(m));
    ASSERT(0, diag_error_count());
    struct ir_func *f = ir_func_find(m, "train_step");
    /* the default-filled sgd: lr from the option, no momentum buffer */
    ASSERT(1, count_assigns(f));
    CHECK(ir_buffer_find(m, "train_step.sgd.momentum.w") == NULL);
    CHECK(ir_output_find(ir_func_find(m, "forward"), "grad.w") >= 0);
    CHECK(ir_output_find(ir_func_find(m, "grads_only"), "grad.w") >= 0);
    ASSERT(0, count_assigns(ir_func_find(m, "grads_only")));
    CHECK(ir_output_find(ir_func_find(m, "saliency"), "grad.x") >= 0);
    ASSERT(0, count_assigns(ir_func_find(m, "saliency")));
    CHECK(ir_buffer_find(m, "saliency.lr") == NULL);

    /* A second run changes nothing. */
    char *before = print_str(m);
    size_t nbuf = vec_len(m->buffers);
    ASSERT(0, pass_optim(m));
    ASSERT((long long)nbuf, (long long)vec_len(m->buffers));
    char *after = print_str(m);
    CHECK(strcmp(before, after) == 0);
    free(before);
    free(after);
    ir_module_free(m);
}

/* ------------------------------------------------------------- round trip */

static void test_round_trip(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct opt_case *c = &cases[i];
        struct ir_module *m = build(c->name, c->nkw, c->kw, c->val);
        struct ir_func *f = ir_func_find(m, "train_step");
        f->optim.schedule.kind = "step";
        f->optim.schedule.nkw = 2;
        f->optim.schedule.kw[0] = "every";
        f->optim.schedule.kwval[0] = 3;
        f->optim.schedule.kw[1] = "gamma";
        f->optim.schedule.kwval[1] = 0.5;
        lower(m, c->what);
        char *text = print_str(m);
        diag_reset();
        struct ir_module *back = ir_parse("lowered.ir", text, strlen(text));
        CHECK(back != NULL);
        if (back) {
            CHECK(ir_verify(back));
            char *again = print_str(back);
            CHECK(strcmp(text, again) == 0);
            if (strcmp(text, again) != 0) fprintf(stderr, "%s\n-----\n%s\n", text, again);
            /* Lowering the parsed module again does nothing (no grads left). */
            ASSERT(0, pass_optim(back));
            free(again);
            ir_module_free(back);
        }
        if (i == 5) printf("%s", text); /* one sample for the log */
        free(text);
        ir_module_free(m);
    }
}

/* ----------------------------------------------------------------- errors */

static char *diag_buf;
static size_t diag_len;
static FILE *diag_stream;

static void capture_begin(void) {
    diag_stream = open_memstream(&diag_buf, &diag_len);
    diag_set_stream(diag_stream);
    diag_reset();
}

static void capture_end(const char *expect) {
    fclose(diag_stream);
    diag_set_stream(NULL);
    if (diag_buf && strstr(diag_buf, expect))
        test_passed++;
    else
        TEST_FAIL_("expected a diagnostic containing \"%s\", got \"%s\"", expect, diag_buf ? diag_buf : "");
    free(diag_buf);
    diag_buf = NULL;
    diag_reset();
}

static void test_errors(void) {
    static const char *const kw[] = {"lr", "momentum", "nesterov"};
    static const double val[] = {0.1, 0, 1};
    struct ir_module *m = build("adagrad", 1, kw, val);
    capture_begin();
    ASSERT(-1, pass_optim(m));
    capture_end("unknown optimizer 'adagrad'");
    ir_module_free(m);

    static const char *const bad_kw[] = {"lr", "beta3"};
    m = build("adam", 2, bad_kw, val);
    capture_begin();
    ASSERT(-1, pass_optim(m));
    capture_end("adam has no option 'beta3'");
    ir_module_free(m);

    m = build("sgd", 3, kw, val);
    capture_begin();
    ASSERT(-1, pass_optim(m));
    capture_end("nesterov needs momentum > 0");
    ir_module_free(m);

    m = build("sgd", 1, kw, val);
    ir_buffer_add(m, BUF_PARAM, "train_step.lr", vec_t(), LOC_NONE);
    capture_begin();
    ASSERT(-1, pass_optim(m));
    capture_end("@train_step.lr of type f32[], but that name is taken");
    ir_module_free(m);
}

int main(void) {
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) test_case(&cases[i]);
    /* sgd momentum under step(every=2, gamma=0.5) with the optimizer's lr; adam
     * under cosine(t_max=4) with an --lr override of 0.03 (past t_max too). */
    test_schedule(&cases[1], "step", 2, 0.5, cases[1].val[0]);
    test_schedule(&cases[5], "cosine", 4, 0, 0.03);
    test_two_funcs();
    test_untouched();
    test_round_trip();
    test_errors();
    diag_free();
    TEST_DONE();
}
