/* passes/optim.c -- optimizer lowering. For every training function with an
 * optimizer and `grad.<param>` outputs (made by autodiff) it creates the optimizer's
 * state buffers, appends the update math as ordinary IR ops and ASSIGNs the new
 * parameter and state values, then drops the gradient outputs. Sections: the
 * contract with the training driver (below), option tables, builders, one update
 * rule per optimizer, the pass.
 *
 * Contract with the runtime driver (the program that calls the training function
 * once per batch). For a lowered training function F it finds, by name:
 *
 *   @F.lr    state f32[], init=const(lr). The learning rate of every update of F.
 *            F reads it and never writes it: the driver owns it. Before each epoch
 *            e (0-based: 0 for the first epoch) the driver writes
 *                base = the --lr command-line value if given, else F's optimizer
 *                       option `lr` (the buffer's init value);
 *                no schedule:               lr(e) = base
 *                schedule step(every=E, gamma=G):
 *                                           lr(e) = base * G^floor(e / E)
 *                schedule cosine(t_max=T):  lr(e) = base * (1 + cos(pi * e / T)) / 2
 *            These are PyTorch's StepLR(step_size=E, gamma=G) and
 *            CosineAnnealingLR(T_max=T, eta_min=0) stepped once per epoch; like
 *            PyTorch's closed form, cosine is not clamped at e >= T (the rate comes
 *            back up with period 2T). The schedule is F->optim.schedule, kept on F.
 *   @F.step  state f32[], init=zeros (adam and adamw only). The number of steps
 *            taken; F increments it itself. The driver leaves it alone, but it (like
 *            every buffer below) belongs in checkpoints so that a resumed run keeps
 *            Adam's bias correction.
 *   @F.<opt>.<slot>.<param>  state, the parameter's type, init=zeros, same group
 *            as the parameter: sgd.momentum (PyTorch momentum_buffer), adam.m and
 *            adam.v (exp_avg, exp_avg_sq; adamw.m, adamw.v), rmsprop.v (square_avg)
 *            and rmsprop.momentum (momentum_buffer). Written only by F.
 * Buffers are named after F, so two training functions (a GAN's d_step and g_step)
 * keep separate state even when they update the same parameter.
 *
 * The update rules, g the gradient, p the parameter, lr = @F.lr, every product
 * elementwise, all of them PyTorch's (torch.optim, single-tensor path, defaults
 * maximize=False, amsgrad=False, centered=False, dampening=0):
 *   sgd(lr, momentum=mu, nesterov, weight_decay=wd):
 *       g = g + wd*p                              (when wd != 0: L2)
 *       b = mu*b + g                              (when mu != 0; b starts at 0,
 *       g = nesterov ? g + mu*b : b                so the first b is g, as in PyTorch)
 *       p = p - lr*g
 *   adam(lr, beta1=b1, beta2=b2, eps, weight_decay=wd), adamw(same):
 *       t = t + 1                                 (the incremented t is used below)
 *       g = g + wd*p                              (adam, when wd != 0: L2)
 *       p = p * (1 - lr*wd)                       (adamw, when wd != 0: decoupled)
 *       m = b1*m + (1-b1)*g
 *       v = b2*v + (1-b2)*g*g
 *       p = p - (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 *     1 - b^t is accurate to float32 rounding (one_minus_pow), as PyTorch's
 *     double bias corrections are once applied to float32 tensors; t counts in
 *     f32, exactly up to 2^24 steps, as PyTorch's float32 `step` tensor.
 *     eps is added to sqrt(v_hat) = sqrt(v)/sqrt(1-b2^t), as PyTorch does
 *     (`denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)`), not to
 *     sqrt(v) as in the paper's "eps-hat" form that Keras and TensorFlow use.
 *   rmsprop(lr, rho, eps, momentum=mu):
 *       v = rho*v + (1-rho)*g*g
 *       a = sqrt(v) + eps
 *       mu != 0:  b = mu*b + g/a;  p = p - lr*b
 *       mu == 0:  p = p - lr*g/a
 * Hyper-parameters are f32[] constants, folded in double where they do not depend
 * on lr or t (1-b1 is one constant). */
#include "passes/passes.h"

#include <math.h>
#include <string.h>

/* ---------------------------------------------------------------- options */

enum optim_kind { OPT_SGD, OPT_ADAM, OPT_ADAMW, OPT_RMSPROP };

#define OPT_MAX 7 /* options of the longest optimizer */

/* One optimizer: its options in canonical order with the language's defaults (the
 * front end's; used only when a hand-written .ir file leaves an option out). */
struct optim_desc {
    const char *name;              /* as in the IR text */
    const char *opts[OPT_MAX + 1]; /* NULL-terminated */
    double defs[OPT_MAX];          /* defaults */
};

static const struct optim_desc optim_descs[] = {
    [OPT_SGD] = {"sgd",
                 {"lr", "momentum", "nesterov", "weight_decay", "clipnorm", "clipvalue"},
                 {0.01, 0, 0, 0, 0, 0}},
    [OPT_ADAM] = {"adam",
                  {"lr", "beta1", "beta2", "eps", "weight_decay", "clipnorm", "clipvalue"},
                  {0.001, 0.9, 0.999, 1e-7, 0, 0, 0}},
    [OPT_ADAMW] = {"adamw",
                   {"lr", "beta1", "beta2", "eps", "weight_decay", "clipnorm", "clipvalue"},
                   {0.001, 0.9, 0.999, 1e-7, 0.01, 0, 0}},
    [OPT_RMSPROP] = {"rmsprop",
                     {"lr", "rho", "eps", "momentum", "clipnorm", "clipvalue"},
                     {0.001, 0.9, 1e-7, 0, 0, 0}},
};
#define OPTIM_COUNT ((int)(sizeof optim_descs / sizeof optim_descs[0]))

/* Resolve f's optimizer into its kind and option values (canonical order). Reports
 * unknown optimizers and options, and values PyTorch would reject. */
static bool read_optim(const struct ir_func *f, enum optim_kind *kind, double val[OPT_MAX]) {
    const struct ir_optim *o = &f->optim;
    int k = 0;
    while (k < OPTIM_COUNT && strcmp(optim_descs[k].name, o->kind) != 0) k++;
    if (k == OPTIM_COUNT) {
        diag_error(f->loc, "in @%s: unknown optimizer '%s'; optimizers: sgd, adam, adamw, rmsprop", f->name,
                   o->kind);
        return false;
    }
    const struct optim_desc *d = &optim_descs[k];
    for (int i = 0; d->opts[i]; i++) val[i] = d->defs[i];
    for (int j = 0; j < o->nkw; j++) {
        int i = 0;
        while (d->opts[i] && strcmp(d->opts[i], o->kw[j]) != 0) i++;
        if (!d->opts[i]) {
            diag_error(f->loc, "in @%s: %s has no option '%s'", f->name, d->name, o->kw[j]);
            return false;
        }
        val[i] = o->kwval[j];
    }
    *kind = (enum optim_kind)k;
    if (!(val[0] >= 0)) { /* 0 is a frozen run, as `train --lr 0` */
        diag_error(f->loc, "in @%s: %s: lr must be 0 or positive, got %g", f->name, d->name, val[0]);
        return false;
    }
    for (int i = 0; d->opts[i]; i++)
        if (strncmp(d->opts[i], "clip", 4) == 0 && !(val[i] >= 0)) {
            diag_error(f->loc, "in @%s: %s: %s must be 0 (off) or positive, got %g", f->name, d->name,
                       d->opts[i], val[i]);
            return false;
        }
    if (k == OPT_SGD && val[2] != 0 && val[1] == 0) {
        diag_error(f->loc, "in @%s: sgd: nesterov needs momentum > 0", f->name);
        return false;
    }
    return true;
}

/* -------------------------------------------------------------- builders */

#define CONST_CACHE 16 /* distinct constants shared within one function's lowering */

/* The state of one function's lowering. */
struct lower {
    struct ir_build b;        /* appends to the training function, with the loc of
                                 the update being built (ir/build.c) */
    enum optim_kind kind;     /* its optimizer */
    double opt[OPT_MAX];      /* its options, canonical order */
    int lr;                   /* node reading @F.lr */
    int nconst;               /* constants cached */
    double cval[CONST_CACHE]; /* their values */
    int cid[CONST_CACHE];     /* their nodes */
};

/* The builder's calls (ir/build.c): update rules build only well-typed nodes,
 * so a node its shape rule rejects is an internal error. */
static int fin(struct lower *L, int id) { return ir_build_fin(&L->b, id); }
static int add(struct lower *L, enum op op, const int *args, int nargs) {
    return ir_build_add(&L->b, op, args, nargs);
}
static int op1(struct lower *L, enum op op, int a) { return ir_build_op1(&L->b, op, a); }
static int op2(struct lower *L, enum op op, int a, int b) { return ir_build_op2(&L->b, op, a, b); }

/* A scalar f32[] constant, one node per value. */
static int cst(struct lower *L, double v) {
    for (int i = 0; i < L->nconst; i++)
        if (L->cval[i] == v) return L->cid[i];
    int id = ir_build_const(&L->b, v, DT_F32);
    if (L->nconst < CONST_CACHE) {
        L->cval[L->nconst] = v;
        L->cid[L->nconst++] = id;
    }
    return id;
}

/* Read a parameter or state buffer. */
static int read_buf(struct lower *L, const char *name) {
    int id = add(L, OP_PARAM, NULL, 0);
    ir_set_sym(L->b.m, &L->b.f->nodes[id], name);
    return fin(L, id);
}

static void assign(struct lower *L, const char *name, int value) {
    int id = add(L, OP_ASSIGN, &value, 1);
    ir_set_sym(L->b.m, &L->b.f->nodes[id], name);
    fin(L, id);
}

/* The state buffer `name` of type t, made if missing (zeros or const(a)). A buffer
 * of that name left by an earlier lowering is reused; any other is an error.
 * Returns its interned name, or NULL after reporting. */
static const char *state_buf(struct lower *L, const char *name, struct type t, struct ir_init init,
                             const char *group) {
    struct ir_buffer *b = ir_buffer_find(L->b.m, name);
    if (b) {
        if (b->kind == BUF_STATE && b->type.dtype == t.dtype && shape_equal(&b->type.shape, &t.shape))
            return b->name;
        char ts[TYPE_STR_MAX];
        diag_error(L->b.f->loc,
                   "in @%s: the optimizer needs a state buffer @%s of type %s, but that name is taken",
                   L->b.f->name, name, type_str(&t, ts, sizeof ts));
        if (b->loc.file) diag_note(b->loc, "@%s is declared here", name);
        return NULL;
    }
    int i = ir_buffer_add(L->b.m, BUF_STATE, name, t, L->b.f->loc);
    L->b.m->buffers[i].init = init;
    L->b.m->buffers[i].group = group;
    return L->b.m->buffers[i].name;
}

static const struct ir_init zeros = {INIT_ZEROS, 0, 0};

/* A zero-initialized state buffer shaped like parameter p: `<F>.<opt>.<slot>.<p>`. */
static const char *slot_buf(struct lower *L, const struct ir_buffer *p, const char *slot) {
    char *name =
        arena_printf(L->b.m->arena, "%s.%s.%s.%s", L->b.f->name, optim_descs[L->kind].name, slot, p->name);
    return state_buf(L, name, p->type, zeros, p->group);
}

/* a*x + b*y with a, b constants. */
static int axpby(struct lower *L, double a, int x, double b, int y) {
    return op2(L, OP_ADD, op2(L, OP_MUL, cst(L, a), x), op2(L, OP_MUL, cst(L, b), y));
}

/* ---------------------------------------------------------- update rules */

/* Per-function scalars of Adam: step size lr/(1-b1^t) and sqrt(1-b2^t). */
struct adam_scalars {
    int step_size; /* lr / (1 - b1^t) */
    int bc2_sqrt;  /* sqrt(1 - b2^t) */
    int decay;     /* adamw: 1 - lr*wd, or -1 */
};

/* 1 - b^t to float32 rounding for every t. The plain f32 form 1 - powf(b, t)
 * cancels: 0.999 rounds to 0.99900001287, so 1 - 0.999^1 came out 9.99987e-4
 * and every first Adam update 6.4e-6 too large. Here b^t = exp(t ln b) with
 * ln b folded in double, and 1 - exp(x) = -expm1(x) = -2 th / (1 - th),
 * th = tanh(x / 2): no subtraction of nearby values (th <= 0, so 1 - th is in
 * [1, 2]), exact at both ends (x = 0: 0; x -> -inf: th -> -1, 1; b = 0: ln b =
 * -1e30 stands for -inf, 1). tanh is accurate to a few ulp relative (C and OpenCL). */
static int one_minus_pow(struct lower *L, double b, int t) {
    int th = op1(L, OP_TANH, op2(L, OP_MUL, t, cst(L, b > 0 ? 0.5 * log(b) : -1e30)));
    return op2(L, OP_DIV, op2(L, OP_MUL, th, cst(L, -2)), op2(L, OP_SUB, cst(L, 1), th));
}

/* t = t + 1, stored, and the bias corrections of the incremented t. */
static bool adam_prologue(struct lower *L, struct adam_scalars *s) {
    double b1 = L->opt[1], b2 = L->opt[2], wd = L->opt[4];
    const char *step = state_buf(L, arena_printf(L->b.m->arena, "%s.step", L->b.f->name),
                                 (struct type){DT_F32, {0, {0}}}, zeros, NULL);
    if (!step) return false;
    int t = op2(L, OP_ADD, read_buf(L, step), cst(L, 1));
    assign(L, step, t);
    int bc1 = one_minus_pow(L, b1, t), bc2 = one_minus_pow(L, b2, t);
    s->step_size = op2(L, OP_DIV, L->lr, bc1);
    s->bc2_sqrt = op1(L, OP_SQRT, bc2);
    s->decay =
        L->kind == OPT_ADAMW && wd != 0 ? op2(L, OP_SUB, cst(L, 1), op2(L, OP_MUL, L->lr, cst(L, wd))) : -1;
    return true;
}

/* The new value of parameter p (read as node pv) given its gradient g, with the
 * state updates ASSIGNed; -1 after an error. */
static int update_sgd(struct lower *L, const struct ir_buffer *p, int pv, int g) {
    double mu = L->opt[1], nesterov = L->opt[2], wd = L->opt[3];
    if (wd != 0) g = op2(L, OP_ADD, g, op2(L, OP_MUL, cst(L, wd), pv));
    if (mu != 0) {
        const char *bn = slot_buf(L, p, "momentum");
        if (!bn) return -1;
        int b = op2(L, OP_ADD, op2(L, OP_MUL, cst(L, mu), read_buf(L, bn)), g);
        assign(L, bn, b);
        g = nesterov != 0 ? op2(L, OP_ADD, g, op2(L, OP_MUL, cst(L, mu), b)) : b;
    }
    return op2(L, OP_SUB, pv, op2(L, OP_MUL, L->lr, g));
}

static int update_adam(struct lower *L, const struct adam_scalars *s, const struct ir_buffer *p, int pv,
                       int g) {
    double b1 = L->opt[1], b2 = L->opt[2], eps = L->opt[3], wd = L->opt[4];
    if (L->kind == OPT_ADAM && wd != 0) g = op2(L, OP_ADD, g, op2(L, OP_MUL, cst(L, wd), pv));
    const char *mn = slot_buf(L, p, "m"), *vn = slot_buf(L, p, "v");
    if (!mn || !vn) return -1;
    int m = axpby(L, b1, read_buf(L, mn), 1 - b1, g);
    int v = axpby(L, b2, read_buf(L, vn), 1 - b2, op2(L, OP_MUL, g, g));
    assign(L, mn, m);
    assign(L, vn, v);
    int denom = op2(L, OP_ADD, op2(L, OP_DIV, op1(L, OP_SQRT, v), s->bc2_sqrt), cst(L, eps));
    int base = s->decay >= 0 ? op2(L, OP_MUL, pv, s->decay) : pv;
    return op2(L, OP_SUB, base, op2(L, OP_MUL, s->step_size, op2(L, OP_DIV, m, denom)));
}

static int update_rmsprop(struct lower *L, const struct ir_buffer *p, int pv, int g) {
    double rho = L->opt[1], eps = L->opt[2], mu = L->opt[3];
    const char *vn = slot_buf(L, p, "v");
    if (!vn) return -1;
    int v = axpby(L, rho, read_buf(L, vn), 1 - rho, op2(L, OP_MUL, g, g));
    assign(L, vn, v);
    int step = op2(L, OP_DIV, g, op2(L, OP_ADD, op1(L, OP_SQRT, v), cst(L, eps)));
    if (mu != 0) {
        const char *bn = slot_buf(L, p, "momentum");
        if (!bn) return -1;
        step = op2(L, OP_ADD, op2(L, OP_MUL, cst(L, mu), read_buf(L, bn)), step);
        assign(L, bn, step);
    }
    return op2(L, OP_SUB, pv, op2(L, OP_MUL, L->lr, step));
}

/* ---------------------------------------------------------------- the pass */

/* The parameter whose gradient output `o` is (`grad.<param>`), or NULL. */
static const struct ir_buffer *grad_param(struct ir_module *m, const struct ir_output *o) {
    if (strncmp(o->name, "grad.", 5) != 0) return NULL;
    const struct ir_buffer *b = ir_buffer_find(m, o->name + 5);
    return b && b->kind == BUF_PARAM ? b : NULL;
}

/* The node reading parameter p already in f (forward pass), or a new one. */
static int param_node(struct lower *L, const struct ir_buffer *p) {
    for (int i = 0; i < ir_func_len(L->b.f); i++)
        if (L->b.f->nodes[i].op == OP_PARAM && strcmp(L->b.f->nodes[i].sym, p->name) == 0) return i;
    return read_buf(L, p->name);
}

/* The value of option `name` of L's optimizer. */
static double opt_named(const struct lower *L, const char *name) {
    const struct optim_desc *d = &optim_descs[L->kind];
    for (int i = 0; d->opts[i]; i++)
        if (strcmp(d->opts[i], name) == 0) return L->opt[i];
    return 0;
}

/* Gradient clipping before the updates, on the gradient outputs of f in place:
 * clipvalue=c clamps every element to [-c, c]; then clipnorm=c scales all of
 * them by min(1, c / (norm + 1e-6)), norm the global L2 norm over every
 * gradient (torch.nn.utils.clip_grad_value_ and clip_grad_norm_). */
static void clip_grads(struct lower *L, struct ir_module *m) {
    struct ir_func *f = L->b.f;
    double cv = opt_named(L, "clipvalue"), cn = opt_named(L, "clipnorm");
    if (cv > 0)
        for (size_t i = 0; i < vec_len(f->outputs); i++) {
            if (!grad_param(m, &f->outputs[i])) continue;
            int g = f->outputs[i].value;
            int lo = op2(L, OP_MAXIMUM, g, cst(L, -cv));                                  /* max(g, -c) */
            int hi = op1(L, OP_NEG, op2(L, OP_MAXIMUM, op1(L, OP_NEG, lo), cst(L, -cv))); /* min(., c) */
            f->outputs[i].value = hi;
        }
    if (!(cn > 0)) return;
    int total = -1;
    for (size_t i = 0; i < vec_len(f->outputs); i++) {
        if (!grad_param(m, &f->outputs[i])) continue;
        int g = f->outputs[i].value;
        int sq = add(L, OP_SUM, (int[]){op2(L, OP_MUL, g, g)}, 1);
        ir_attr_set_v(&L->b.f->nodes[sq], ATTR_AXES, (int64_t[]){0}, 0);
        ir_attr_set_i(&L->b.f->nodes[sq], ATTR_KEEPDIMS, 0);
        fin(L, sq);
        total = total < 0 ? sq : op2(L, OP_ADD, total, sq);
    }
    int norm = op1(L, OP_SQRT, total);
    int ratio = op2(L, OP_DIV, cst(L, cn), op2(L, OP_ADD, norm, cst(L, 1e-6)));
    int coef = op1(L, OP_NEG, op2(L, OP_MAXIMUM, op1(L, OP_NEG, ratio), cst(L, -1.0))); /* min(ratio, 1) */
    for (size_t i = 0; i < vec_len(f->outputs); i++)
        if (grad_param(m, &f->outputs[i])) f->outputs[i].value = op2(L, OP_MUL, f->outputs[i].value, coef);
}

/* Lower f's optimizer. Returns the nodes added, or -1 after a reported error. */
static int optim_func(struct ir_module *m, struct ir_func *f) {
    if (f->mode != MODE_TRAIN || !f->optim.kind) return 0;
    size_t ngrads = 0;
    for (size_t i = 0; i < vec_len(f->outputs); i++)
        if (grad_param(m, &f->outputs[i])) ngrads++;
    if (ngrads == 0) return 0;

    struct lower L = {.b = {m, f, f->loc, 0, "optimizer lowering", NULL, NULL}};
    if (!read_optim(f, &L.kind, L.opt)) return -1;
    const char *lr = state_buf(&L, arena_printf(m->arena, "%s.lr", f->name), (struct type){DT_F32, {0, {0}}},
                               (struct ir_init){INIT_CONST, L.opt[0], 0}, NULL);
    if (!lr) return -1;
    L.lr = read_buf(&L, lr);
    clip_grads(&L, m);
    struct adam_scalars as = {-1, -1, -1};
    if ((L.kind == OPT_ADAM || L.kind == OPT_ADAMW) && !adam_prologue(&L, &as)) return -1;

    /* Outputs are read by index: lowering appends nodes, never outputs. */
    size_t kept = 0;
    for (size_t i = 0; i < vec_len(f->outputs); i++) {
        struct ir_output o = f->outputs[i];
        const struct ir_buffer *pp = grad_param(m, &o);
        if (!pp) {
            f->outputs[kept++] = o;
            continue;
        }
        /* A copy: adding state buffers moves m->buffers. */
        struct ir_buffer pbuf = *pp, *p = &pbuf;
        const struct type *gt = &f->nodes[o.value].type;
        if (gt->dtype != p->type.dtype || !shape_equal(&gt->shape, &p->type.shape)) {
            /* IR text can say anything here (autodiff always matches the types). */
            char a[TYPE_STR_MAX], b[TYPE_STR_MAX];
            diag_error(f->nodes[o.value].loc, "in @%s, output %s is %s, but parameter @%s is %s", f->name,
                       o.name, type_str(gt, a, sizeof a), p->name, type_str(&p->type, b, sizeof b));
            return -1;
        }
        L.b.loc = f->nodes[o.value].loc;
        int pv = param_node(&L, p), nv = -1;
        switch (L.kind) {
        case OPT_SGD:
            nv = update_sgd(&L, p, pv, o.value);
            break;
        case OPT_ADAM:
        case OPT_ADAMW:
            nv = update_adam(&L, &as, p, pv, o.value);
            break;
        case OPT_RMSPROP:
            nv = update_rmsprop(&L, p, pv, o.value);
            break;
        }
        if (nv < 0) return -1;
        assign(&L, p->name, nv);
    }
    vec_hdr_(f->outputs)->len = kept;
    ir_func_dce(f);
    return L.b.added;
}

int pass_optim(struct ir_module *m) {
    int changed = 0;
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        int n = optim_func(m, m->funcs[i]);
        if (n < 0) return -1;
        changed += n;
    }
    return changed;
}
