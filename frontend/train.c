/* frontend/train.c -- the `train { }` block: each line is `key value...`. The
 * settings go into the module (batch, epochs, seed, early stopping), the data
 * lines bind files to the data inputs in declaration order (noise inputs are
 * skipped), optimizers are stored with every option in canonical order, defaults
 * filled, and `step NAME { }` blocks become one training function each (lower.c
 * makes them). Sections: values; optimizers and schedules; data; steps; the block. */
#include "frontend/frontend.h"

#include <string.h>

static const char *const train_keys[] = {"optimizer", "schedule", "batch", "epochs", "seed", "early_stopping",
                                         "data",      "test",     "step",  "init",   NULL};
static const char *const step_keys[] = {"loss", "optimizer", "schedule", "update", NULL};

/* ------------------------------------------------------------------- values */

/* A constant argument: a number (folded), a string, true/false, or name=value. */
static bool const_arg(struct lower *L, const struct ast_expr *e, struct fe_arg *out) {
    out->kw = NULL;
    out->loc = e->loc;
    if (e->kind == AST_KWARG) {
        out->kw = e->str;
        e = e->lhs;
    }
    if (e->kind == AST_STR) {
        out->v = (struct val){.kind = V_STR, .str = e->str};
        return true;
    }
    if (e->kind == AST_BOOL) {
        out->v = (struct val){.kind = V_BOOL, .num = e->num};
        return true;
    }
    double v;
    bool is_int;
    if (!lw_fold(L, e, &v, &is_int)) return false;
    out->v = lw_num(v, is_int);
    return true;
}

/* The arguments of a call in the train block. */
static bool const_args(struct lower *L, const struct ast_expr *call, struct fe_arg *out, int max) {
    if (call->kind != AST_CALL) return true;
    if (call->nargs > max) {
        lw_error(L, call->loc, "%s takes at most %d arguments", call->str, max);
        return false;
    }
    for (int i = 0; i < call->nargs; i++)
        if (!const_arg(L, call->args[i], &out[i])) return false;
    return true;
}

static bool line_int(struct lower *L, const struct ast_tline *t, const char *key, int64_t lo, int64_t hi,
                     int64_t *out) {
    if (t->n != 2) {
        lw_error(L, t->loc, "'%s' takes one integer, as in `%s %lld`", key, key, (long long)lo);
        return false;
    }
    struct fe_arg a;
    return const_arg(L, t->v[1], &a) && fe_opt_int(L, key, "the value", &a, 0, lo, hi, out);
}

/* ------------------------------------------------------ optimizers, schedules */

struct optim_spec {
    const char *name;    /* as written */
    const char *opts[8]; /* canonical order, NULL-terminated */
    double defs[8];      /* defaults */
};

static const struct optim_spec optims[] = {
    {"sgd", {"lr", "momentum", "nesterov", "weight_decay", "clipnorm", "clipvalue"}, {0.01, 0, 0, 0, 0, 0}},
    {"adam",
     {"lr", "beta1", "beta2", "eps", "weight_decay", "clipnorm", "clipvalue"},
     {0.001, 0.9, 0.999, 1e-7, 0, 0, 0}},
    {"adamw",
     {"lr", "beta1", "beta2", "eps", "weight_decay", "clipnorm", "clipvalue"},
     {0.001, 0.9, 0.999, 1e-7, 0.01, 0, 0}},
    {"rmsprop", {"lr", "rho", "eps", "momentum", "clipnorm", "clipvalue"}, {0.001, 0.9, 1e-7, 0, 0, 0}},
};

/* Gradient clipping, an option of every optimizer; 0 (off) is left out of the IR. */
static bool is_clip(const char *opt) { return strcmp(opt, "clipnorm") == 0 || strcmp(opt, "clipvalue") == 0; }
static const char *const optim_names[] = {"sgd", "adam", "adamw", "rmsprop", NULL};

static struct ir_optim optim_fill(struct lower *L, const struct optim_spec *s, const double *vals) {
    struct ir_optim o;
    memset(&o, 0, sizeof o);
    o.kind = arena_strdup(L->m->arena, s->name);
    for (int i = 0; s->opts[i]; i++) {
        if (is_clip(s->opts[i]) && vals[i] == 0) continue;
        o.kw[o.nkw] = arena_strdup(L->m->arena, s->opts[i]);
        o.kwval[o.nkw++] = vals[i];
    }
    return o;
}

struct ir_optim fe_optim_default(struct lower *L) {
    struct ir_optim o = optim_fill(L, &optims[1], optims[1].defs);
    return o;
}

/* `optimizer adam(lr=0.001, ...)` or `optimizer sgd`. */
static bool read_optim(struct lower *L, const struct ast_tline *t, struct ir_optim *out) {
    if (t->n != 2 || (t->v[1]->kind != AST_CALL && t->v[1]->kind != AST_NAME)) {
        lw_error(L, t->loc,
                 "expected an optimizer after 'optimizer', as in `optimizer adam(lr=0.001)`; "
                 "optimizers: %s",
                 lw_name_list(L, optim_names));
        return false;
    }
    const struct ast_expr *e = t->v[1];
    const struct optim_spec *spec = NULL;
    for (size_t i = 0; i < sizeof optims / sizeof optims[0]; i++)
        if (strcmp(optims[i].name, e->str) == 0) spec = &optims[i];
    if (!spec) {
        lw_unknown(L, e->loc, "optimizer", e->str, optim_names, "optimizers");
        return false;
    }
    struct fe_arg args[16], *o[FE_MAX_OPTS];
    if (!const_args(L, e, args, 16)) return false;
    if (!fe_bind(L, spec->name, spec->opts, args, e->kind == AST_CALL ? e->nargs : 0, o, e->loc))
        return false;
    double vals[8];
    for (int i = 0; spec->opts[i]; i++) {
        const char *n = spec->opts[i];
        bool ok;
        if (strcmp(n, "nesterov") == 0) {
            bool b = false; /* unset when the option is not a bool */
            ok = fe_opt_bool(L, spec->name, n, o[i], false, &b);
            vals[i] = ok && b;
        } else if (strcmp(n, "lr") == 0) {
            ok = fe_opt_num(L, spec->name, n, o[i], spec->defs[i], 0, 1e6,
                            &vals[i]); /* 0: frozen, as --lr 0 */
        } else if (strcmp(n, "eps") == 0) {
            ok = fe_opt_num(L, spec->name, n, o[i], spec->defs[i], 1e-30, 1, &vals[i]);
        } else if (is_clip(n)) {
            ok = fe_opt_num(L, spec->name, n, o[i], 0, 0, 1e30, &vals[i]);
        } else if (strcmp(n, "weight_decay") == 0) {
            ok = fe_opt_num(L, spec->name, n, o[i], spec->defs[i], 0, 1e6, &vals[i]);
        } else { /* momentum, beta1, beta2, rho: [0, 1) */
            ok = fe_opt_num(L, spec->name, n, o[i], spec->defs[i], 0, 0.999999999, &vals[i]);
        }
        if (!ok) return false;
    }
    if (strcmp(spec->name, "sgd") == 0 && vals[2] != 0 && vals[1] == 0) {
        lw_error(L, e->loc, "sgd: nesterov needs momentum > 0");
        return false;
    }
    struct ir_source sched = out->schedule;
    *out = optim_fill(L, spec, vals);
    out->schedule = sched;
    return true;
}

/* `schedule KIND(options)`: the schedules of runtime/schedule.c. Options are
 * integers (step counts) except gamma; required ones have no default. */
struct sched_spec {
    const char *name;    /* as written */
    const char *opts[3]; /* option names, NULL-terminated */
    bool required[2];    /* per option */
    double defs[2];      /* defaults of optional ones */
};

static const struct sched_spec scheds[] = {
    {"step", {"every", "gamma"}, {true, false}, {0, 0.1}},
    {"cosine", {"t_max"}, {true}, {0}},
    {"linear_warmup", {"warmup"}, {true}, {0}},
    {"warmup_cosine", {"warmup", "t_max"}, {true, true}, {0, 0}},
    {"exponential", {"gamma"}, {true}, {0}},
};
static const char *const sched_names[] = {"step",          "cosine",      "linear_warmup",
                                          "warmup_cosine", "exponential", NULL};
#define SCHED_USAGE                                                                                          \
    "step(every=E, gamma=G), cosine(t_max=T), linear_warmup(warmup=W), warmup_cosine(warmup=W, t_max=T) or " \
    "exponential(gamma=G)"

static bool read_schedule(struct lower *L, const struct ast_tline *t, struct ir_source *out) {
    const struct ast_expr *e = t->n == 2 ? t->v[1] : NULL;
    if (!e || e->kind != AST_CALL) {
        lw_error(L, t->loc, "expected a schedule: " SCHED_USAGE);
        return false;
    }
    const struct sched_spec *sp = NULL;
    for (size_t i = 0; i < sizeof scheds / sizeof scheds[0]; i++)
        if (strcmp(scheds[i].name, e->str) == 0) sp = &scheds[i];
    if (!sp) {
        lw_unknown(L, e->loc, "schedule", e->str, sched_names, "schedules");
        return false;
    }
    struct fe_arg args[8], *o[FE_MAX_OPTS];
    if (!const_args(L, e, args, 8) || !fe_bind(L, e->str, sp->opts, args, e->nargs, o, e->loc)) return false;
    memset(out, 0, sizeof *out);
    out->kind = arena_strdup(L->m->arena, e->str);
    for (int i = 0; sp->opts[i]; i++) {
        const char *n = sp->opts[i];
        if (!o[i] && sp->required[i]) {
            lw_error(L, e->loc, "%s needs '%s'", e->str, n);
            return false;
        }
        double v;
        if (strcmp(n, "gamma") == 0) {
            if (!fe_opt_num(L, e->str, n, o[i], sp->defs[i], 1e-12, 1, &v)) return false;
        } else {
            int64_t k;
            if (!fe_opt_int(L, e->str, n, o[i], 1, 1, 1 << 30, &k)) return false;
            v = (double)k;
        }
        out->kw[out->nkw] = n;
        out->kwval[out->nkw++] = v;
    }
    if (strcmp(e->str, "warmup_cosine") == 0 && out->kwval[1] <= out->kwval[0]) {
        lw_error(L, e->loc, "warmup_cosine: t_max (%g) must be larger than warmup (%g)", out->kwval[1],
                 out->kwval[0]);
        return false;
    }
    return true;
}

/* A data file path as the program reads it: relative paths are relative to the
 * .net file's directory (made absolute here), others stay as written. */
static const char *resolve_path(struct lower *L, const char *path) {
    const char *dir = L->p->base_dir;
    if (!dir || !path[0] || path[0] == '/') return arena_strdup(L->m->arena, path);
    return arena_printf(L->m->arena, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", path);
}

/* --------------------------------------------------------------------- data */

static bool read_text(struct lower *L, const struct ast_tline *t, bool test, const char **inputs,
                      int ninputs);

/* The `NAME NUMBER` pairs after a data line's files (t->v[2..]): the option
 * names in opts (NULL-terminated), each at most once; val[k], has[k] and at[k]
 * (its number's expression, for later errors) for the option opts[k]. */
static bool read_options(struct lower *L, const struct ast_tline *t, const char *what,
                         const char *const *opts, double *val, bool *has, const struct ast_expr **at) {
    for (int i = 2; i < t->n; i += 2) {
        const struct ast_expr *m = t->v[i];
        int k = -1;
        for (int j = 0; m->kind == AST_NAME && opts[j]; j++)
            if (strcmp(m->str, opts[j]) == 0) k = j;
        if (k < 0) {
            if (m->kind == AST_NAME)
                lw_unknown(L, m->loc, what, m->str, opts, "options");
            else
                lw_error(L, m->loc, "expected a %s (%s) here, got %s", what, lw_name_list(L, opts),
                         ast_describe(L->a, m));
            return false;
        }
        if (i + 1 >= t->n) {
            lw_error(L, m->loc, "'%s' needs a number after it", m->str);
            return false;
        }
        if (has[k]) {
            lw_error(L, m->loc, "'%s' is given twice", m->str);
            return false;
        }
        if (!lw_fold(L, t->v[i + 1], &val[k], NULL)) return false;
        has[k] = true;
        at[k] = t->v[i + 1];
    }
    return true;
}

/* `data idx("a.gz", "b.gz") scale 1/255 shift -1`, `data csv("f.csv")`, `data npy(...)`,
 * `data text("a.txt", "b.txt") vocab 96 holdout 0.1` (read_text). */
static bool read_data(struct lower *L, const struct ast_tline *t, bool test) {
    static const char *const formats[] = {"idx", "csv", "npy", "text", NULL};
    static const char *const mods[] = {"scale", "shift", NULL};
    const char *key = test ? "test" : "data";
    const struct ast_expr *e = t->n >= 2 ? t->v[1] : NULL;
    if (!e || e->kind != AST_CALL) {
        lw_error(L, e ? e->loc : t->loc,
                 "expected files after '%s', as in `%s idx(\"images.gz\", \"labels.gz\")`; "
                 "formats: idx, csv, npy, text",
                 key, key);
        return false;
    }
    bool known = false;
    for (const char *const *f = formats; *f; f++) known |= strcmp(*f, e->str) == 0;
    if (!known) {
        lw_unknown(L, e->loc, "data format", e->str, formats, "formats");
        return false;
    }
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i]->kind != AST_STR) {
            lw_error(L, e->args[i]->loc, "%s takes file names (strings)", e->str);
            return false;
        }
    if (e->nargs == 0) {
        lw_error(L, e->loc, "%s needs at least one file", e->str);
        return false;
    }
    if (strcmp(e->str, "text") == 0) {
        const char **inputs = NULL;
        for (size_t i = 0; i < vec_len(L->syms); i++)
            if (L->syms[i]->kind == SYM_INPUT && !L->syms[i]->noise && ir_buffer_find(L->m, L->syms[i]->name))
                vec_push(inputs, L->syms[i]->name);
        bool ok = read_text(L, t, test, inputs, (int)vec_len(inputs));
        vec_free(inputs);
        return ok;
    }
    double mod[2] = {1, 0};
    bool has[2] = {false, false};
    const struct ast_expr *at[2];
    if (!read_options(L, t, "data option", mods, mod, has, at)) return false;
    /* The data inputs, in declaration order. */
    const char **inputs = NULL;
    for (size_t i = 0; i < vec_len(L->syms); i++)
        if (L->syms[i]->kind == SYM_INPUT && !L->syms[i]->noise && ir_buffer_find(L->m, L->syms[i]->name))
            vec_push(inputs, L->syms[i]->name);
    int ninputs = (int)vec_len(inputs);
    bool csv = strcmp(e->str, "csv") == 0;
    bool ok = true;
    if (csv && e->nargs != 1) {
        lw_error(L, e->loc, "csv takes one file; its columns go to the inputs in order");
        ok = false;
    } else if (!csv && e->nargs != ninputs) {
        vec_push(inputs, NULL);
        lw_error(L, e->loc, "%s(...) gives %d file%s, but the model has %d data input%s%s%s%s", e->str,
                 e->nargs, e->nargs == 1 ? "" : "s", ninputs, ninputs == 1 ? "" : "s", ninputs ? " (" : "",
                 ninputs ? lw_name_list(L, inputs) : "", ninputs ? ")" : "");
        ok = false;
    }
    int64_t column = 0;
    for (int k = 0; ok && k < ninputs; k++) {
        struct ir_buffer *b = ir_buffer_find(L->m, inputs[k]);
        struct ir_source src;
        memset(&src, 0, sizeof src);
        src.kind = arena_strdup(L->m->arena, e->str);
        src.path = resolve_path(L, e->args[csv ? 0 : k]->str);
        if (csv) {
            src.kw[src.nkw] = "column";
            src.kwval[src.nkw++] = (double)column;
            column += shape_static_numel(&b->type.shape);
        }
        if (b->type.dtype == DT_F32)
            for (int m = 0; m < 2; m++)
                if (has[m]) {
                    src.kw[src.nkw] = mods[m];
                    src.kwval[src.nkw++] = mod[m];
                }
        if (test)
            b->test = src;
        else
            b->data = src;
    }
    vec_free(inputs);
    return ok;
}

/* `data text("a", "b", ...) [vocab V] [holdout H] [bytes 1]`: the first data input
 * gets the tokens (role 0, i32[N, T]), the second, if any, the targets (role 1):
 * i32[N, T] next tokens (language model) or i32[N] labels (one file per class).
 * The files travel as one comma-separated path. With a holdout, the test source is
 * the held-out part of the same files (part=1) unless a `test` line says otherwise;
 * a `test text(...)` line reads its files whole (part=2). */
static bool read_text(struct lower *L, const struct ast_tline *t, bool test, const char **inputs,
                      int ninputs) {
    static const char *const opts[] = {"vocab", "holdout", "bytes", NULL};
    const struct ast_expr *e = t->v[1];
    double val[3] = {256, 0, 0};
    bool has[3] = {false, false, false};
    const struct ast_expr *at[3];
    if (!read_options(L, t, "text option", opts, val, has, at)) return false;
    static const double lo[] = {3, 0, 0}, hi[] = {1 << 22, 0.9, 1};
    for (int k = 0; k < 3; k++)
        if (has[k] &&
            (!(val[k] >= lo[k] && val[k] <= hi[k]) || (k != 1 && val[k] != (double)(int64_t)val[k]))) {
            lw_error(L, at[k]->loc, "%s must be %s in [%.10g, %.10g], got %.10g", opts[k],
                     k == 1 ? "a number" : "an integer", lo[k], hi[k], val[k]);
            return false;
        }
    if (test && (has[0] || has[1] || has[2])) {
        lw_error(L, t->v[2]->loc,
                 "a test text line takes no options: the vocabulary and token kind come from the "
                 "data line");
        return false;
    }
    if (ninputs < 1 || ninputs > 2) {
        lw_error(L, e->loc,
                 "text data feeds a token input i32[N, T] and optionally a target input (i32[N, T] next "
                 "tokens or i32[N] labels); the model has %d data input%s",
                 ninputs, ninputs == 1 ? "" : "s");
        return false;
    }
    struct ir_buffer *tok = ir_buffer_find(L->m, inputs[0]),
                     *tgt = ninputs > 1 ? ir_buffer_find(L->m, inputs[1]) : NULL;
    char ts[TYPE_STR_MAX];
    if (tok->type.dtype != DT_I32 || tok->type.shape.rank != 2 || tok->type.shape.dim[0] != IR_DIM_N) {
        lw_error(L, e->loc, "text tokens go to an i32[N, T] input, but '%s' is %s", tok->name,
                 type_str(&tok->type, ts, sizeof ts));
        return false;
    }
    if (tgt && (tgt->type.dtype != DT_I32 || tgt->type.shape.dim[0] != IR_DIM_N ||
                !(tgt->type.shape.rank == 1 ||
                  (tgt->type.shape.rank == 2 && tgt->type.shape.dim[1] == tok->type.shape.dim[1])))) {
        lw_error(L, e->loc,
                 "text targets go to an i32[N, %lld] input (next tokens) or an i32[N] input (labels), but "
                 "'%s' is %s",
                 (long long)tok->type.shape.dim[1], tgt->name, type_str(&tgt->type, ts, sizeof ts));
        return false;
    }
    if (tgt && tgt->type.shape.rank == 1 && e->nargs < 2) {
        lw_error(L, e->loc, "text classification reads one file per class; give at least 2 files");
        return false;
    }
    char *path = NULL;
    size_t len = 0;
    for (int i = 0; i < e->nargs; i++) {
        const char *f = e->args[i]->str;
        if (!*f || strchr(f, ',')) {
            lw_error(L, e->args[i]->loc, "text file names must be non-empty and without ','");
            return false;
        }
        len += strlen(resolve_path(L, f)) + 1;
    }
    path = arena_alloc(L->m->arena, len + 1);
    for (int i = 0; i < e->nargs; i++) {
        if (i) strcat(path, ",");
        strcat(path, resolve_path(L, e->args[i]->str));
    }
    for (int k = 0; k < ninputs; k++) {
        struct ir_buffer *b = k ? tgt : tok;
        struct ir_source src;
        memset(&src, 0, sizeof src);
        src.kind = "text";
        src.path = path;
        src.kw[src.nkw] = "role", src.kwval[src.nkw++] = k;
        if (!test) {
            src.kw[src.nkw] = "vocab", src.kwval[src.nkw++] = val[0];
            if (val[1] > 0) src.kw[src.nkw] = "holdout", src.kwval[src.nkw++] = val[1];
            if (val[2] > 0) src.kw[src.nkw] = "bytes", src.kwval[src.nkw++] = val[2];
            b->data = src;
            if (val[1] > 0 && !b->test.kind) { /* the held-out part, unless a test line gave files */
                src.kw[src.nkw] = "part", src.kwval[src.nkw++] = 1;
                b->test = src;
            }
        } else {
            src.kw[src.nkw] = "part", src.kwval[src.nkw++] = 2;
            b->test = src;
        }
    }
    return true;
}

/* -------------------------------------------------------------------- steps */

static const char *key_of(struct lower *L, const struct ast_tline *t) {
    const struct ast_expr *k = t->v[0];
    if (k->kind == AST_NAME || k->kind == AST_CALL) return k->str;
    lw_error(L, k->loc, "expected a setting name here, got %s", ast_describe(L->a, k));
    return NULL;
}

static void unknown_key(struct lower *L, const struct ast_expr *k, const char *const *keys,
                        const char *where) {
    char what[64];
    snprintf(what, sizeof what, "%s setting", where);
    lw_unknown(L, k->loc, what, k->str, keys, "settings");
}

static bool read_step(struct lower *L, const struct ast_tline *t) {
    if (t->n != 2 || t->v[1]->kind != AST_NAME) {
        lw_error(L, t->loc, "expected `step NAME { ... }`");
        return false;
    }
    const char *name = t->v[1]->str;
    static const char *const taken[] = {"forward", "evaluate", "train_step", NULL};
    for (const char *const *k = taken; *k; k++)
        if (strcmp(*k, name) == 0) {
            lw_error(L, t->v[1]->loc, "'%s' is the name of a function netc makes; choose another step name",
                     name);
            return false;
        }
    for (size_t i = 0; i < vec_len(L->steps); i++)
        if (strcmp(L->steps[i].name, name) == 0) {
            lw_error(L, t->v[1]->loc, "a second step named '%s'", name);
            return false;
        }
    struct fe_step st;
    memset(&st, 0, sizeof st);
    st.name = name;
    st.loc = t->loc;
    st.optim = L->have_optim ? L->optim : fe_optim_default(L);
    bool ok = true, have_loss = false;
    for (int i = 0; i < t->nbody && ok; i++) {
        const struct ast_tline *l = t->body[i];
        const char *key = key_of(L, l);
        if (!key) {
            ok = false;
        } else if (l->has_body) {
            lw_error(L, l->brace, "a step cannot contain a block");
            ok = false;
        } else if (strcmp(key, "loss") == 0) {
            if (l->n != 2 || l->v[1]->kind != AST_NAME) {
                lw_error(L, l->loc, "expected `loss NAME`, naming a loss of the model");
                ok = false;
            } else {
                st.loss = l->v[1]->str;
                st.loss_loc = l->v[1]->loc;
                have_loss = true;
            }
        } else if (strcmp(key, "optimizer") == 0) {
            ok = read_optim(L, l, &st.optim);
        } else if (strcmp(key, "schedule") == 0) {
            ok = read_schedule(L, l, &st.optim.schedule);
        } else if (strcmp(key, "update") == 0) {
            if (l->n < 2) {
                lw_error(L, l->loc, "expected `update NET[, NET...]`");
                ok = false;
            }
            for (int k = 1; k < l->n && ok; k++) {
                const struct ast_expr *g = l->v[k];
                struct fe_sym *s = g->kind == AST_NAME ? lw_sym(L, g->str) : NULL;
                if (g->kind == AST_NAME && (strcmp(g->str, L->m->name) == 0 || (s && s->kind == SYM_NET))) {
                    vec_push(st.update, g->str);
                    continue;
                }
                const char **nets = NULL;
                for (size_t j = 0; j < vec_len(L->syms); j++)
                    if (L->syms[j]->kind == SYM_NET) vec_push(nets, L->syms[j]->name);
                vec_push(nets, NULL);
                const char *near = g->kind == AST_NAME ? fe_nearest(g->str, nets) : NULL;
                if (near)
                    lw_error(L, g->loc, "update: '%s' is not a net (did you mean '%s'?)", g->str, near);
                else
                    lw_error(L, g->loc, "update names nets whose parameters this step trains; nets: %s",
                             vec_len(nets) > 1 ? lw_name_list(L, nets) : "none");
                vec_free(nets);
                ok = false;
            }
        } else {
            unknown_key(L, l->v[0], step_keys, "step");
            ok = false;
        }
    }
    if (ok && !have_loss) {
        lw_error(L, t->loc, "step '%s' needs a `loss NAME` line", name);
        ok = false;
    }
    if (!ok) {
        vec_free(st.update);
        return false;
    }
    vec_push(L->steps, st);
    return true;
}

/* -------------------------------------------------------------------- block */

bool fe_train_read(struct lower *L) {
    const struct ast_stmt *s = L->train;
    if (!s) {
        L->optim = fe_optim_default(L);
        return true;
    }
    int errors = L->nerrors;
    bool seen[sizeof train_keys / sizeof train_keys[0]] = {false};
    struct ir_source sched = {0};
    /* Settings first, then the steps (which start from the block's optimizer). */
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < s->nlines; i++) {
            const struct ast_tline *t = s->lines[i];
            const char *key = key_of(L, t);
            if (!key) continue;
            int k = -1;
            for (int j = 0; train_keys[j]; j++)
                if (strcmp(train_keys[j], key) == 0) k = j;
            bool is_step = k >= 0 && strcmp(key, "step") == 0;
            if (pass != (is_step ? 1 : 0)) continue;
            if (k < 0) {
                unknown_key(L, t->v[0], train_keys, "train");
                continue;
            }
            if (t->has_body && !is_step) {
                lw_error(L, t->brace, "only `step NAME` takes a block");
                continue;
            }
            if (is_step) {
                if (!t->has_body)
                    lw_error(L, t->loc, "expected `step NAME { ... }`");
                else
                    read_step(L, t);
                continue;
            }
            if (seen[k] && strcmp(key, "step") != 0) {
                lw_error(L, t->v[0]->loc, "'%s' is set twice", key);
                continue;
            }
            seen[k] = true;
            if (t->v[0]->kind == AST_CALL && strcmp(key, "early_stopping") != 0) {
                lw_error(L, t->v[0]->loc, "write `%s value`, not %s(...)", key, key);
                continue;
            }
            int64_t v;
            if (strcmp(key, "optimizer") == 0) {
                if (read_optim(L, t, &L->optim)) L->have_optim = true;
            } else if (strcmp(key, "schedule") == 0) {
                read_schedule(L, t, &sched);
            } else if (strcmp(key, "batch") == 0) {
                if (line_int(L, t, key, 1, 1 << 24, &v)) L->m->train.batch = v;
            } else if (strcmp(key, "epochs") == 0) {
                if (line_int(L, t, key, 1, 1 << 24, &v)) L->m->train.epochs = v;
            } else if (strcmp(key, "seed") == 0) {
                if (line_int(L, t, key, 0, (int64_t)1 << 53, &v)) L->m->train.seed = v;
            } else if (strcmp(key, "early_stopping") == 0) {
                const struct ast_expr *e = t->v[0];
                if (e->kind == AST_CALL) {
                    static const char *const opts[] = {"patience", NULL};
                    struct fe_arg args[4], *o[FE_MAX_OPTS];
                    if (t->n == 1 && const_args(L, e, args, 4) &&
                        fe_bind(L, key, opts, args, e->nargs, o, e->loc) &&
                        fe_opt_int(L, key, "patience", o[0], 3, 1, 1 << 20, &v))
                        L->m->train.patience = v;
                    else if (t->n != 1)
                        lw_error(L, t->v[1]->loc, "unexpected value after early_stopping(...)");
                } else if (line_int(L, t, key, 1, 1 << 20, &v)) {
                    L->m->train.patience = v;
                }
            } else if (strcmp(key, "data") == 0 || strcmp(key, "test") == 0) {
                read_data(L, t, strcmp(key, "test") == 0);
            } else if (strcmp(key, "init") == 0) { /* init.c: keras (the default) or pytorch */
                const struct ast_expr *e = t->v[t->n > 1 ? 1 : 0];
                bool name = t->n == 2 && e->kind == AST_NAME;
                if (name && (strcmp(e->str, "pytorch") == 0 || strcmp(e->str, "keras") == 0))
                    L->init_pytorch = strcmp(e->str, "pytorch") == 0;
                else
                    lw_error(L, e->loc, "init expects `pytorch` or `keras`");
            }
        }
    if (!L->have_optim) L->optim = fe_optim_default(L);
    L->optim.schedule = sched;
    for (size_t i = 0; i < vec_len(L->steps); i++)
        if (!L->steps[i].optim.schedule.kind) L->steps[i].optim.schedule = sched;
    return L->nerrors == errors;
}
