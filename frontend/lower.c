/* frontend/lower.c -- from the AST to IR. Each entry point (forward, evaluate,
 * train_step or one function per `step`) is made by walking the statements again
 * in its mode, then removing dead nodes. Declarations (inputs, params, nets) are
 * syms that outlive the walks; a net's parameters are made by its first call and
 * shared by the later ones. Sections: helpers for nodes and buffers; names;
 * expressions and calls; items (stacks of layers); nets; statements; the walks. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

void lw_error(struct lower *L, struct loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (!L->gen_step) diag_verror(loc, fmt, ap); /* the generation walk is a try: it is dropped on errors */
    va_end(ap);
    L->nerrors++;
}

struct val lw_err(void) {
    return (struct val){.kind = V_ERR};
}
struct val lw_tensor(int id) {
    return id < 0 ? lw_err() : (struct val){.kind = V_TENSOR, .id = id};
}
struct val lw_num(double v, bool is_int) {
    return (struct val){.kind = V_NUM, .num = v, .is_int = is_int};
}

struct ir_node *lw_n(struct lower *L, int id) {
    return &L->f->nodes[id];
}
const struct type *lw_type(struct lower *L, int id) { return &L->f->nodes[id].type; }

const char *lw_tstr(struct lower *L, const struct type *t) {
    char buf[TYPE_STR_MAX];
    return arena_strdup(L->a, type_str(t, buf, sizeof buf));
}

/* Static elements of a shape, saturating at INT64_MAX. */
static int64_t numel_sat(const struct shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        int64_t d = s->dim[i] == IR_DIM_N ? 1 : s->dim[i];
        if (d > 0 && n > INT64_MAX / d) return INT64_MAX;
        n *= d;
    }
    return n;
}

#define FE_MAX_NUMEL ((int64_t)1 << 31)

/* A node its shape rule rejects is a user error at the node. */
static int lw_reject(struct ir_build *b, int id, const char *err) {
    struct lower *L = b->ctx;
    lw_error(L, lw_n(L, id)->loc, "%s", err);
    return -1;
}

/* The IR builder (ir/build.c) appending to L's function at loc. */
static struct ir_build lw_builder(struct lower *L, struct loc loc) {
    return (struct ir_build){L->m, L->f, loc, 0, "lowering", lw_reject, L};
}

/* id, or -1 after an error when its value would be too large. */
static int lw_sized(struct lower *L, int id) {
    if (id >= 0 && numel_sat(&lw_type(L, id)->shape) > FE_MAX_NUMEL) {
        lw_error(L, lw_n(L, id)->loc, "%s would make a tensor %s, which is too large",
                 op_info[lw_n(L, id)->op].name, lw_tstr(L, lw_type(L, id)));
        return -1;
    }
    return id;
}

int lw_node(struct lower *L, enum op op, const int *args, int nargs, struct loc loc) {
    struct ir_build b = lw_builder(L, loc);
    return ir_build_add(&b, op, args, nargs);
}

int lw_fin(struct lower *L, int id) {
    struct ir_build b = lw_builder(L, LOC_NONE);
    return lw_sized(L, ir_build_fin(&b, id));
}

int lw_emit(struct lower *L, enum op op, const int *args, int nargs, struct loc loc) {
    struct ir_build b = lw_builder(L, loc);
    return lw_sized(L, ir_build_op(&b, op, args, nargs));
}

int lw_emit1(struct lower *L, enum op op, int a, struct loc loc) { return lw_emit(L, op, &a, 1, loc); }

int lw_emit2(struct lower *L, enum op op, int a, int b, struct loc loc) {
    int args[2] = {a, b};
    return lw_emit(L, op, args, 2, loc);
}

int lw_const(struct lower *L, double v, enum dtype dt, struct loc loc) {
    struct ir_build b = lw_builder(L, loc);
    return lw_sized(L, ir_build_const(&b, v, dt));
}

int lw_reshape(struct lower *L, int x, const struct shape *shape, struct loc loc) {
    if (x < 0) return -1;
    struct ir_build b = lw_builder(L, loc);
    return lw_sized(L, ir_build_typed(&b, OP_RESHAPE, x, (struct type){lw_type(L, x)->dtype, *shape}));
}

int lw_slice(struct lower *L, int x, int axis, int64_t start, int64_t size, struct loc loc) {
    struct ir_build b = lw_builder(L, loc);
    return lw_sized(L, ir_build_slice(&b, x, axis, start, size));
}

int lw_buffer_node(struct lower *L, const char *name, enum buf_kind kind, struct loc loc) {
    for (size_t i = 0; i < vec_len(L->bufnodes); i++)
        if (strcmp(L->bufnodes[i].name, name) == 0) return L->bufnodes[i].id;
    int id = lw_node(L, kind == BUF_INPUT ? OP_INPUT : OP_PARAM, NULL, 0, loc);
    ir_set_sym(L->m, lw_n(L, id), name);
    id = lw_fin(L, id);
    const char *sym = id >= 0 ? lw_n(L, id)->sym : NULL;
    if (id >= 0 && L->gen_step && kind == BUF_INPUT && lw_type(L, id)->shape.rank >= 2 &&
        lw_type(L, id)->shape.dim[1] == L->gen_t)
        id = lw_slice(L, id, 1, 0, 1, loc); /* one step of the sequence */
    if (id >= 0) {
        vec_push(L->bufnodes, ((__typeof__(*L->bufnodes)){sym, id}));
    }
    return id;
}

struct ir_init lw_glorot(int64_t fan_in, int64_t fan_out) {
    double limit = sqrt(6.0 / (double)(fan_in + fan_out > 0 ? fan_in + fan_out : 1));
    return (struct ir_init){INIT_UNIFORM, -limit, limit};
}

int lw_param(struct lower *L, const char *layer, int k, const char *what, enum buf_kind kind,
             struct type type, struct ir_init init, struct loc loc) {
    const char *name = arena_printf(L->a, "%s.%s%d.%s", L->sc->prefix, layer, k, what);
    struct ir_buffer *b = ir_buffer_find(L->m, name);
    if (b) {
        if (b->kind != kind || b->type.dtype != type.dtype || !shape_equal(&b->type.shape, &type.shape)) {
            lw_error(L, loc, "%s needs its parameter '%s' to be %s, but an earlier use made it %s", layer,
                     name, lw_tstr(L, &type), lw_tstr(L, &b->type));
            return -1;
        }
    } else {
        if (numel_sat(&type.shape) > FE_MAX_NUMEL) {
            lw_error(L, loc, "%s would need a parameter %s, which is too large", layer, lw_tstr(L, &type));
            return -1;
        }
        int i = ir_buffer_add(L->m, kind, name, type, loc);
        L->m->buffers[i].init = init;
        L->m->buffers[i].group = arena_strdup(L->m->arena, L->sc->prefix);
        fe_init_record(L, name, layer, what, loc);
    }
    return lw_buffer_node(L, name, kind, loc);
}

/* -------------------------------------------------------------------- names */

struct fe_sym *lw_sym(struct lower *L, const char *name) {
    for (size_t i = 0; i < vec_len(L->syms); i++)
        if (L->syms[i]->walk == L->walk && strcmp(L->syms[i]->name, name) == 0) return L->syms[i];
    return NULL;
}

static struct fe_var *var_find(struct fe_scope *sc, const char *name) {
    for (size_t i = vec_len(sc->vars); i-- > 0;)
        if (strcmp(sc->vars[i].name, name) == 0) return &sc->vars[i];
    return NULL;
}

static const char *const sym_kind_names[] = {"an input", "a param", "a net"};

/* Can `name` be given to a variable, a net parameter or a declaration? */
static bool name_free(struct lower *L, const char *name, struct loc loc, bool is_var) {
    const struct fe_builtin *b = fe_builtin_find(name);
    if (b) {
        lw_error(L, loc, "'%s' is the name of a builtin %s; choose another name", name,
                 fe_builtin_forms(b) & BI_LAYER ? "layer" : "function");
        return false;
    }
    struct fe_sym *s = lw_sym(L, name);
    if (s) {
        lw_error(L, loc, "'%s' is already %s (declared at line %d)", name, sym_kind_names[s->kind],
                 s->loc.line);
        return false;
    }
    if (!is_var && var_find(&L->top, name)) {
        lw_error(L, loc, "'%s' is already a variable", name);
        return false;
    }
    if (strcmp(name, "N") == 0) {
        lw_error(L, loc, "'N' is reserved for the batch dim");
        return false;
    }
    return true;
}

static void var_set(struct fe_scope *sc, const char *name, struct val v) {
    struct fe_var *x = var_find(sc, name);
    if (x)
        x->v = v;
    else
        vec_push(sc->vars, ((struct fe_var){name, v}));
}

/* Every name visible here (variables, syms) plus the builtins of `forms`, for
 * "did you mean". The vec is the caller's. */
static const char **visible_names(struct lower *L, unsigned forms, bool with_vars) {
    const char **v = NULL;
    if (with_vars)
        for (size_t i = 0; i < vec_len(L->sc->vars); i++) vec_push(v, L->sc->vars[i].name);
    for (size_t i = 0; i < vec_len(L->syms); i++)
        if (L->syms[i]->walk == L->walk && (with_vars || L->syms[i]->kind == SYM_NET))
            vec_push(v, L->syms[i]->name);
    for (const char *const *b = fe_builtin_names(forms); forms && *b; b++) vec_push(v, *b);
    vec_push(v, NULL);
    return v;
}

static const char *nearest(struct lower *L, const char *name, unsigned forms, bool with_vars) {
    const char **v = visible_names(L, forms, with_vars);
    const char *n = fe_nearest(name, v);
    vec_free(v);
    return n;
}

const char *lw_name_list(struct lower *L, const char *const *names) {
    size_t len = 1;
    for (const char *const *n = names; *n; n++) len += strlen(*n) + 2;
    char *s = arena_alloc(L->a, len), *o = s;
    for (const char *const *n = names; *n; n++) o += sprintf(o, "%s%s", n == names ? "" : ", ", *n);
    return s;
}

void lw_unknown(struct lower *L, struct loc loc, const char *what, const char *name, const char *const *names,
                const char *kinds) {
    const char *near = fe_nearest(name, names);
    if (near)
        lw_error(L, loc, "unknown %s '%s' (did you mean '%s'?); %s: %s", what, name, near, kinds,
                 lw_name_list(L, names));
    else
        lw_error(L, loc, "unknown %s '%s'; %s: %s", what, name, kinds, lw_name_list(L, names));
}

static void undefined(struct lower *L, const char *name, struct loc loc) {
    const char *n = nearest(L, name, BI_LAYER | BI_FUNC, true);
    if (n)
        lw_error(L, loc, "undefined name '%s' (did you mean '%s'?)", name, n);
    else
        lw_error(L, loc, "undefined name '%s'", name);
}

/* ------------------------------------------------------------- expressions */

static struct val lower_expr(struct lower *L, const struct ast_expr *e);
static struct val lower_call(struct lower *L, const struct ast_expr *e, struct val *cur);
static struct val lower_items(struct lower *L, struct ast_expr *const *items, int n);
static struct val call_net(struct lower *L, struct fe_sym *net, struct val *args, const struct loc *locs,
                           int nargs, struct loc loc);

bool lw_fold(struct lower *L, const struct ast_expr *e, double *out, bool *is_int) {
    bool i1 = true, i2 = true;
    double a, b;
    switch (e->kind) {
    case AST_NUM:
        *out = e->num;
        if (is_int) *is_int = e->is_int;
        return true;
    case AST_NEG:
        if (!lw_fold(L, e->lhs, &a, is_int)) return false;
        *out = -a;
        return true;
    case AST_BINARY:
        if (!lw_fold(L, e->lhs, &a, &i1) || !lw_fold(L, e->rhs, &b, &i2)) return false;
        switch (e->op) {
        case '+':
            *out = a + b;
            break;
        case '-':
            *out = a - b;
            break;
        case '*':
            *out = a * b;
            break;
        case '/':
            if (b == 0) {
                lw_error(L, e->loc, "division by zero");
                return false;
            }
            *out = a / b;
            i1 = false;
            break;
        default:
            lw_error(L, e->loc, "'@' needs tensors, not numbers");
            return false;
        }
        if (!isfinite(*out)) {
            lw_error(L, e->loc, "the result of this arithmetic is out of range");
            return false;
        }
        if (is_int) *is_int = i1 && i2 && fabs(*out) <= 9007199254740992.0;
        return true;
    default:
        lw_error(L, e->loc, "expected a number here, got %s", ast_describe(L->a, e));
        return false;
    }
}

/* The tensor for a value: numbers become scalar constants of dtype `like`. */
static int as_tensor(struct lower *L, struct val v, enum dtype like, struct loc loc) {
    if (v.kind == V_TENSOR) return v.id;
    if (v.kind == V_NUM || v.kind == V_BOOL) return lw_const(L, v.num, like, loc);
    if (v.kind == V_STR) lw_error(L, loc, "a string cannot be used as a tensor");
    if (v.kind == V_NONE) lw_error(L, loc, "this has no value");
    return -1;
}

static bool broadcasts(const struct shape *x, const struct shape *y) {
    int r = x->rank > y->rank ? x->rank : y->rank;
    for (int i = 0; i < r; i++) {
        int xi = x->rank - r + i, yi = y->rank - r + i;
        int64_t dx = xi >= 0 ? x->dim[xi] : 1, dy = yi >= 0 ? y->dim[yi] : 1;
        if (dx != dy && dx != 1 && dy != 1) return false;
    }
    return true;
}

/* a @ b with torch.matmul's rules on rank >= 2 (batch dims broadcast). */
struct val lw_matmul(struct lower *L, int a, int b, const char *what, struct loc loc) {
    const struct type *ta = lw_type(L, a), *tb = lw_type(L, b);
    const struct shape *sa = &ta->shape, *sb = &tb->shape;
    if (sa->rank < 2 || sb->rank < 2) {
        lw_error(L, loc, "%s multiplies matrices or batches of them (rank 2 or more), got %s @ %s", what,
                 lw_tstr(L, ta), lw_tstr(L, tb));
        return lw_err();
    }
    if (sa->dim[sa->rank - 1] != sb->dim[sb->rank - 2]) {
        lw_error(L, loc, "%s of %s and %s: the inner dims differ", what, lw_tstr(L, ta), lw_tstr(L, tb));
        return lw_err();
    }
    int id = lw_node(L, OP_MATMUL, (int[]){a, b}, 2, loc);
    return lw_tensor(lw_fin(L, id));
}

static struct val lower_binary(struct lower *L, const struct ast_expr *e) {
    struct val l = lower_expr(L, e->lhs);
    if (l.kind == V_ERR) return l;
    struct val r = lower_expr(L, e->rhs);
    if (r.kind == V_ERR) return r;
    bool lnum = l.kind == V_NUM || l.kind == V_BOOL, rnum = r.kind == V_NUM || r.kind == V_BOOL;
    if (lnum && rnum) {
        double v;
        switch (e->op) {
        case '+':
            v = l.num + r.num;
            break;
        case '-':
            v = l.num - r.num;
            break;
        case '*':
            v = l.num * r.num;
            break;
        case '/':
            if (r.num == 0) {
                lw_error(L, e->loc, "division by zero");
                return lw_err();
            }
            v = l.num / r.num;
            break;
        default:
            lw_error(L, e->loc, "'@' needs tensors, not numbers");
            return lw_err();
        }
        if (!isfinite(v)) {
            lw_error(L, e->loc, "the result of this arithmetic is out of range");
            return lw_err();
        }
        return lw_num(v, l.is_int && r.is_int && e->op != '/' && fabs(v) <= 9007199254740992.0);
    }
    if (l.kind != V_TENSOR && r.kind != V_TENSOR) {
        lw_error(L, e->loc, "'%c' needs numbers or tensors", e->op);
        return lw_err();
    }
    enum dtype dt = l.kind == V_TENSOR ? lw_type(L, l.id)->dtype : lw_type(L, r.id)->dtype;
    int a = as_tensor(L, l, dt, e->lhs->loc), b = as_tensor(L, r, dt, e->rhs->loc);
    if (a < 0 || b < 0) return lw_err();
    const struct type *ta = lw_type(L, a), *tb = lw_type(L, b);
    if (e->op == '@') {
        return lw_matmul(L, a, b, "'@'", e->loc);
    }
    static const char *const verb[] = {
        ['+'] = "add", ['-'] = "subtract", ['*'] = "multiply", ['/'] = "divide"};
    if (!broadcasts(&ta->shape, &tb->shape)) {
        lw_error(L, e->loc, "cannot %s %s and %s: the shapes do not broadcast", verb[e->op], lw_tstr(L, ta),
                 lw_tstr(L, tb));
        return lw_err();
    }
    if (ta->dtype != tb->dtype) {
        lw_error(L, e->loc, "cannot %s %s and %s: the element types differ", verb[e->op], lw_tstr(L, ta),
                 lw_tstr(L, tb));
        return lw_err();
    }
    enum op op = e->op == '+' ? OP_ADD : e->op == '-' ? OP_SUB : e->op == '*' ? OP_MUL : OP_DIV;
    return lw_tensor(lw_emit2(L, op, a, b, e->loc));
}

/* x.shape[i]: a compile-time integer. */
static struct val lower_index(struct lower *L, const struct ast_expr *e) {
    const struct ast_expr *m = e->lhs;
    if (m->kind != AST_MEMBER || strcmp(m->str, "shape") != 0) {
        lw_error(L, e->loc, "only x.shape[i] can be indexed; tensors cannot be indexed");
        return lw_err();
    }
    struct val x = lower_expr(L, m->lhs);
    if (x.kind == V_ERR) return x;
    if (x.kind != V_TENSOR) {
        lw_error(L, m->loc, ".shape needs a tensor, got %s", ast_describe(L->a, m->lhs));
        return lw_err();
    }
    double iv;
    bool is_int;
    if (!lw_fold(L, e->rhs, &iv, &is_int)) return lw_err();
    const struct type *t = lw_type(L, x.id);
    if (!is_int || iv < -t->shape.rank || iv >= t->shape.rank) {
        lw_error(L, e->rhs->loc, "index %g is out of range for %s (rank %d)", iv, lw_tstr(L, t),
                 t->shape.rank);
        return lw_err();
    }
    int i = (int)iv < 0 ? (int)iv + t->shape.rank : (int)iv;
    if (t->shape.dim[i] == IR_DIM_N) {
        lw_error(L, e->loc, "dim %d of %s is the batch dim N, which is not known at compile time", i,
                 lw_tstr(L, t));
        return lw_err();
    }
    return lw_num((double)t->shape.dim[i], true);
}

static struct val lower_name(struct lower *L, const struct ast_expr *e) {
    struct fe_var *v = var_find(L->sc, e->str);
    if (v) return v->v;
    struct fe_sym *s = lw_sym(L, e->str);
    if (s && s->kind != SYM_NET) {
        if (!ir_buffer_find(L->m, s->name)) return lw_err(); /* its declaration had an error */
        return lw_tensor(lw_buffer_node(L, s->name, s->kind == SYM_INPUT ? BUF_INPUT : BUF_PARAM, e->loc));
    }
    if (s) {
        lw_error(L, e->loc, "'%s' is a net: call it, %s(x), or use it in a stack, x -> %s", e->str, e->str,
                 e->str);
        return lw_err();
    }
    const struct fe_builtin *b = fe_builtin_find(e->str);
    if (b) {
        if (fe_builtin_forms(b) & BI_LAYER)
            lw_error(L, e->loc, "'%s' is a layer: apply it to a value, x -> %s, or call %s(x)", e->str,
                     e->str, e->str);
        else
            lw_error(L, e->loc, "'%s' is a function: call it with arguments, %s(...)", e->str, e->str);
        return lw_err();
    }
    undefined(L, e->str, e->loc);
    return lw_err();
}

static struct val lower_expr(struct lower *L, const struct ast_expr *e) {
    switch (e->kind) {
    case AST_NUM:
        return lw_num(e->num, e->is_int);
    case AST_STR:
        return (struct val){.kind = V_STR, .str = e->str};
    case AST_BOOL:
        return (struct val){.kind = V_BOOL, .num = e->num};
    case AST_NAME:
        return lower_name(L, e);
    case AST_CALL:
        return lower_call(L, e, NULL);
    case AST_BINARY:
        return lower_binary(L, e);
    case AST_INDEX:
        return lower_index(L, e);
    case AST_NEG: {
        struct val x = lower_expr(L, e->lhs);
        if (x.kind == V_NUM) return lw_num(-x.num, x.is_int);
        if (x.kind != V_TENSOR) {
            if (x.kind != V_ERR) lw_error(L, e->loc, "'-' needs a number or a tensor");
            return lw_err();
        }
        return lw_tensor(lw_emit1(L, OP_NEG, x.id, e->loc));
    }
    case AST_MEMBER:
        if (strcmp(e->str, "shape") == 0)
            lw_error(L, e->loc, "x.shape is not a value; index it, as in x.shape[1]");
        else
            lw_error(L, e->loc, "unknown member '%s' (only x.shape[i] exists)", e->str);
        return lw_err();
    case AST_KWARG:
        lw_error(L, e->loc, "'%s=' is allowed only in call arguments", e->str);
        return lw_err();
    case AST_STACK: {
        /* A stack inside an expression starts afresh: its first element is the value. */
        struct val saved = L->sc->cur, v;
        L->sc->cur = (struct val){.kind = V_NONE};
        v = lower_items(L, e->args, e->nargs);
        L->sc->cur = saved;
        return v;
    }
    }
    NETC_UNREACHABLE();
}

/* Evaluate a call's arguments. False if one had an error (already reported). */
static bool eval_args(struct lower *L, const struct ast_expr *e, struct fe_arg *out) {
    bool ok = true;
    for (int i = 0; i < e->nargs; i++) {
        const struct ast_expr *a = e->args[i];
        out[i].kw = a->kind == AST_KWARG ? a->str : NULL;
        out[i].loc = a->loc;
        out[i].v = lower_expr(L, a->kind == AST_KWARG ? a->lhs : a);
        if (out[i].v.kind == V_ERR) ok = false;
    }
    return ok;
}

static void unknown_callee(struct lower *L, const struct ast_expr *e, bool layer_like) {
    const char *n = nearest(L, e->str, BI_LAYER | BI_FUNC, false);
    const char *what = layer_like ? "layer" : "function";
    if (n) {
        lw_error(L, e->loc, "unknown %s '%s' (did you mean '%s'?)", what, e->str, n);
        return;
    }
    lw_error(L, e->loc, "unknown %s '%s'; %ss: %s", what, e->str, what,
             lw_name_list(L, fe_builtin_names(layer_like ? BI_LAYER : BI_FUNC)));
}

/* A call. `cur` is the current value when the call is an element of a stack (so
 * it may be a layer), NULL in an expression. */
static struct val lower_call(struct lower *L, const struct ast_expr *e, struct val *cur) {
    if (e->nargs > 64) {
        lw_error(L, e->loc, "too many arguments (%d)", e->nargs);
        return lw_err();
    }
    struct fe_arg args[64];
    if (var_find(L->sc, e->str)) {
        lw_error(L, e->loc, "'%s' is a variable, not a function or net", e->str);
        return lw_err();
    }
    struct fe_sym *s = lw_sym(L, e->str);
    if (s && s->kind != SYM_NET) {
        lw_error(L, e->loc, "'%s' is %s, not a function or net", e->str, sym_kind_names[s->kind]);
        return lw_err();
    }
    const struct fe_builtin *b = s ? NULL : fe_builtin_find(e->str);
    if (!s && !b) {
        bool layer_like = cur != NULL;
        for (int i = 0; i < e->nargs; i++)
            if (e->args[i]->kind == AST_NAME || e->args[i]->kind == AST_CALL) layer_like = false;
        eval_args(L, e, args); /* report what is wrong inside first */
        unknown_callee(L, e, layer_like);
        return lw_err();
    }
    if (!eval_args(L, e, args)) return lw_err();
    int ntensor = 0;
    for (int i = 0; i < e->nargs; i++)
        if (args[i].v.kind == V_TENSOR && !args[i].kw) ntensor++;
    if (s) {
        struct val vals[FE_MAX_NET_ARGS];
        struct loc locs[FE_MAX_NET_ARGS];
        if (e->nargs > FE_MAX_NET_ARGS) {
            lw_error(L, e->loc, "a net takes at most %d inputs", FE_MAX_NET_ARGS);
            return lw_err();
        }
        for (int i = 0; i < e->nargs; i++) {
            if (args[i].kw) {
                lw_error(L, args[i].loc, "nets take positional tensor arguments, not '%s='", args[i].kw);
                return lw_err();
            }
            vals[i] = args[i].v;
            locs[i] = args[i].loc;
        }
        return call_net(L, s, vals, locs, e->nargs, e->loc);
    }
    unsigned forms = fe_builtin_forms(b);
    if ((forms & BI_FUNC) && (ntensor > 0 || !(forms & BI_LAYER)))
        return fe_func_call(L, b, args, e->nargs, e->loc);
    if (!cur) {
        lw_error(L, e->loc, "%s(...) is a layer: apply it to a value, as in x -> %s(...)%s", e->str, e->str,
                 forms & BI_FUNC ? ", or pass the tensor first" : "");
        return lw_err();
    }
    for (int i = 0; i < e->nargs; i++) /* tensors only as `lengths=` (recurrent layers) */
        if (args[i].v.kind == V_TENSOR && !(args[i].kw && strcmp(args[i].kw, "lengths") == 0)) {
            lw_error(L, args[i].loc,
                     "%s takes configuration arguments (numbers, strings), not a tensor; "
                     "apply it to a value with x -> %s(...)",
                     e->str, e->str);
            return lw_err();
        }
    if (cur->kind == V_ERR) return *cur;
    if (cur->kind != V_TENSOR) {
        lw_error(L, e->loc, "layer %s has no input: start the line with a value, as in x -> %s(...)", e->str,
                 e->str);
        return lw_err();
    }
    return fe_layer_apply(L, b, args, e->nargs, *cur, e->loc);
}

/* -------------------------------------------------------------------- items */

/* One element of a stack given as a bare name: a value, a layer without
 * arguments, or a net applied to the current value. `first`: the stack's first
 * element (at the top level, a value's place even when a value flows on). */
static struct val lower_bare(struct lower *L, const struct ast_expr *e, struct val cur, bool first) {
    if (var_find(L->sc, e->str)) return lower_name(L, e);
    struct fe_sym *s = lw_sym(L, e->str);
    if (s && s->kind != SYM_NET) return lower_name(L, e);
    const struct fe_builtin *b = s ? NULL : fe_builtin_find(e->str);
    if (!s && !b) {
        const char *nv = nearest(L, e->str, 0, true), *nl = nearest(L, e->str, BI_LAYER, false);
        /* after a value (`x -> foo`, or a net's line), a bare name is in a
         * layer's place: an unknown layer, unless it is near a variable's name */
        bool layer_place = (cur.kind == V_TENSOR || cur.kind == V_ERR) && (!first || L->sc->net);
        if (nl && !nv)
            lw_error(L, e->loc, "unknown layer '%s' (did you mean '%s'?)", e->str, nl);
        else if (layer_place && !nv)
            unknown_callee(L, e, true);
        else
            undefined(L, e->str, e->loc);
        return lw_err();
    }
    if (b && !(fe_builtin_forms(b) & BI_LAYER)) return lower_name(L, e);
    if (cur.kind == V_ERR) return cur;
    if (cur.kind != V_TENSOR) {
        lw_error(L, e->loc, "%s '%s' has no input: start the line with a value, as in x -> %s",
                 s ? "net" : "layer", e->str, e->str);
        return lw_err();
    }
    if (s) return call_net(L, s, &cur, &e->loc, 1, e->loc);
    return fe_layer_apply(L, b, NULL, 0, cur, e->loc);
}

/* Elements left to right: a layer replaces the current value by its output, a
 * value replaces it by itself. Returns the last current value. */
static struct val lower_items(struct lower *L, struct ast_expr *const *items, int n) {
    struct val cur = L->sc->cur;
    for (int i = 0; i < n; i++) {
        const struct ast_expr *e = items[i];
        if (e->kind == AST_NAME)
            cur = lower_bare(L, e, cur, i == 0);
        else if (e->kind == AST_CALL)
            cur = lower_call(L, e, &cur);
        else
            cur = lower_expr(L, e);
        if (cur.kind == V_ERR) return cur;
    }
    return cur;
}

/* --------------------------------------------------------------------- nets */

#define FE_MAX_NET_DEPTH 32

static struct val call_net(struct lower *L, struct fe_sym *net, struct val *args, const struct loc *locs,
                           int nargs, struct loc loc) {
    const struct ast_stmt *d = net->decl;
    if (net->broken) return lw_err();
    if (nargs != d->nparams) {
        lw_error(L, loc, "net '%s' takes %d input%s, got %d", net->name, d->nparams,
                 d->nparams == 1 ? "" : "s", nargs);
        return lw_err();
    }
    for (int i = 0; i < nargs; i++) {
        if (args[i].kind == V_ERR) return args[i];
        if (args[i].kind != V_TENSOR) {
            lw_error(L, locs[i], "net '%s' takes tensors, but input %d is not a tensor", net->name, i + 1);
            return lw_err();
        }
    }
    if (net->active) {
        lw_error(L, loc, "net '%s' calls itself; nets cannot be recursive", net->name);
        return lw_err();
    }
    if (L->net_depth >= FE_MAX_NET_DEPTH) {
        lw_error(L, loc, "nets are nested too deeply (the limit is %d)", FE_MAX_NET_DEPTH);
        return lw_err();
    }
    for (int i = 0; i < nargs; i++) {
        const struct type *t = lw_type(L, args[i].id);
        if (!net->called) {
            net->first[i] = *t;
        } else if (!L->gen_step && /* the generation walk reads sequences at one step; forward checked them */
                   (t->dtype != net->first[i].dtype || !shape_equal(&t->shape, &net->first[i].shape))) {
            lw_error(L, locs[i],
                     "net '%s' is called with %s here, but with %s at line %d; its calls share "
                     "parameters, so their inputs must have the same shape",
                     net->name, lw_tstr(L, t), lw_tstr(L, &net->first[i]), net->first_loc.line);
            diag_note(net->first_loc, "the first call of '%s'", net->name);
            return lw_err();
        }
    }
    if (!net->called) net->first_loc = loc;
    net->called = true;

    struct fe_scope sc;
    memset(&sc, 0, sizeof sc);
    sc.prefix = net->name;
    sc.net = net;
    sc.cur = args[0];
    for (int i = 0; i < nargs; i++) var_set(&sc, d->params[i]->str, args[i]);
    struct fe_scope *saved = L->sc;
    L->sc = &sc;
    net->active = true;
    L->net_depth++;
    int errors = L->nerrors;
    struct val result = {.kind = V_NONE};
    bool returned = false;
    for (int i = 0; i < d->nbody && !returned; i++) {
        const struct ast_stmt *s = d->body[i];
        if (s->kind == ST_INPUT || s->kind == ST_PARAM) continue; /* reported with the definition */
        struct val v = lower_items(L, s->items, s->nitems);
        if (s->kind == ST_RETURN) {
            result = v;
            returned = true;
        } else if (s->kind == ST_ASSIGN) {
            if (v.kind != V_ERR && !name_free(L, s->name, s->name_loc, true)) v = lw_err();
            var_set(&sc, s->name, v);
            sc.cur = v;
        } else {
            sc.cur = v;
        }
    }
    if (!returned) result = sc.cur;
    L->net_depth--;
    net->active = false;
    L->sc = saved;
    vec_free(sc.vars);
    if (L->nerrors > errors) {
        net->broken = true;
        return lw_err();
    }
    if (result.kind != V_TENSOR) {
        lw_error(L, d->loc, "net '%s' does not produce a tensor", net->name);
        net->broken = true;
        return lw_err();
    }
    return result;
}

/* --------------------------------------------------------------- statements */

/* Check a written type and make the IR type. */
static bool lower_type(struct lower *L, const struct ast_type *at, bool allow_n, struct type *out) {
    memset(out, 0, sizeof *out);
    if (strcmp(at->dtype, "f32") == 0)
        out->dtype = DT_F32;
    else if (strcmp(at->dtype, "i32") == 0)
        out->dtype = DT_I32;
    else {
        int dt = dtype_lookup(at->dtype);
        if (dt >= 0)
            lw_error(L, at->loc, "dtype '%s' is not supported yet; use f32 or i32", at->dtype);
        else
            lw_error(L, at->loc, "unknown dtype '%s'; use f32 or i32", at->dtype);
        return false;
    }
    if (at->rank > IR_MAX_RANK) {
        lw_error(L, at->dims[IR_MAX_RANK]->loc, "a tensor has at most %d dims", IR_MAX_RANK);
        return false;
    }
    out->shape.rank = at->rank;
    for (int i = 0; i < at->rank; i++) {
        const struct ast_expr *d = at->dims[i];
        if (d->kind == AST_NAME) {
            if (strcmp(d->str, "N") != 0) {
                lw_error(L, d->loc, "unknown dim '%s': dims are integers or N, the batch dim", d->str);
                return false;
            }
            if (!allow_n) {
                lw_error(L, d->loc, "a param cannot have the batch dim N");
                return false;
            }
            if (i != 0) {
                lw_error(L, d->loc, "N, the batch dim, must be the first dim");
                return false;
            }
            out->shape.dim[i] = IR_DIM_N;
            continue;
        }
        double v;
        bool is_int;
        if (!lw_fold(L, d, &v, &is_int)) return false;
        if (!is_int || v < 1 || v > (double)(1 << 30)) {
            lw_error(L, d->loc, "a dim must be a positive integer (at most 2^30), got %g", v);
            return false;
        }
        out->shape.dim[i] = (int64_t)v;
    }
    if (numel_sat(&out->shape) > FE_MAX_NUMEL) {
        lw_error(L, at->loc, "%s is too large", lw_tstr(L, out));
        return false;
    }
    return true;
}

/* `= name` or `= name(args)` of a declaration: the name and its numbers. */
static bool init_call(struct lower *L, const struct ast_expr *e, const char **name, double *nums, int *n,
                      const char *const *kw_names, int max) {
    *n = 0;
    if (e->kind == AST_NAME) {
        *name = e->str;
        return true;
    }
    if (e->kind != AST_CALL) {
        lw_error(L, e->loc, "expected an initializer such as zeros, normal(0, 1) or glorot_uniform");
        return false;
    }
    *name = e->str;
    if (e->nargs > max) {
        lw_error(L, e->loc, "%s takes %d argument%s", e->str, max, max == 1 ? "" : "s");
        return false;
    }
    for (int i = 0; i < e->nargs; i++) {
        const struct ast_expr *a = e->args[i];
        int slot = i;
        if (a->kind == AST_KWARG) {
            slot = -1;
            for (int k = 0; k < max && kw_names && kw_names[k]; k++)
                if (strcmp(kw_names[k], a->str) == 0) slot = k;
            if (slot < 0) {
                lw_error(L, a->loc, "%s has no option '%s'", e->str, a->str);
                return false;
            }
            a = a->lhs;
        }
        if (!lw_fold(L, a, &nums[slot], NULL)) return false;
        if (slot + 1 > *n) *n = slot + 1;
    }
    return true;
}

static const char *const param_inits[] = {
    "zeros",          "ones",          "const",     "normal",     "uniform",
    "glorot_uniform", "glorot_normal", "he_normal", "he_uniform", NULL};

/* Keras fans of a param shape: [in, out] matrices, OIHW kernels. */
static void fans(const struct shape *s, int64_t *fi, int64_t *fo) {
    if (s->rank == 0)
        *fi = *fo = 1;
    else if (s->rank == 1)
        *fi = *fo = s->dim[0];
    else if (s->rank == 2)
        *fi = s->dim[0], *fo = s->dim[1];
    else {
        int64_t rf = 1;
        for (int i = 2; i < s->rank; i++) rf *= s->dim[i];
        *fi = s->dim[1] * rf, *fo = s->dim[0] * rf;
    }
}

static bool lower_param_init(struct lower *L, const struct ast_expr *e, const struct shape *shape,
                             struct ir_init *out) {
    *out = (struct ir_init){INIT_ZEROS, 0, 0};
    if (!e) return true;
    const char *name;
    double a[2] = {0, 0};
    int n;
    static const char *const mean_std[] = {"mean", "std", NULL}, *const lo_hi[] = {"lo", "hi", NULL},
                             *const value[] = {"value", NULL};
    const char *const *kws = NULL;
    if (e->kind == AST_CALL)
        kws = strcmp(e->str, "normal") == 0 ? mean_std : strcmp(e->str, "uniform") == 0 ? lo_hi : value;
    if (!init_call(L, e, &name, a, &n, kws, e->kind == AST_CALL && strcmp(e->str, "const") == 0 ? 1 : 2))
        return false;
    int64_t fi, fo;
    fans(shape, &fi, &fo);
    if (strcmp(name, "zeros") == 0 && n == 0)
        *out = (struct ir_init){INIT_ZEROS, 0, 0};
    else if (strcmp(name, "ones") == 0 && n == 0)
        *out = (struct ir_init){INIT_CONST, 1, 0};
    else if (strcmp(name, "const") == 0 && n == 1)
        *out = (struct ir_init){INIT_CONST, a[0], 0};
    else if (strcmp(name, "normal") == 0 && n == 2 && a[1] >= 0)
        *out = (struct ir_init){INIT_NORMAL, a[0], a[1]};
    else if (strcmp(name, "uniform") == 0 && n == 2 && a[0] <= a[1])
        *out = (struct ir_init){INIT_UNIFORM, a[0], a[1]};
    else if (strcmp(name, "glorot_uniform") == 0 && n == 0)
        *out = lw_glorot(fi, fo);
    else if (strcmp(name, "glorot_normal") == 0 && n == 0)
        *out = (struct ir_init){INIT_NORMAL, 0, sqrt(2.0 / (double)(fi + fo))};
    else if (strcmp(name, "he_normal") == 0 && n == 0)
        *out = (struct ir_init){INIT_NORMAL, 0, sqrt(2.0 / (double)fi)};
    else if (strcmp(name, "he_uniform") == 0 && n == 0)
        *out = (struct ir_init){INIT_UNIFORM, -sqrt(6.0 / (double)fi), sqrt(6.0 / (double)fi)};
    else {
        bool known = false;
        for (const char *const *k = param_inits; *k; k++) known |= strcmp(*k, name) == 0;
        const char *near = fe_nearest(name, param_inits);
        if (known)
            lw_error(L, e->loc,
                     "bad arguments for %s: write zeros, ones, const(v), normal(mean, std) with std >= 0, "
                     "uniform(lo, hi) with lo <= hi, or glorot_uniform, glorot_normal, he_normal, he_uniform",
                     name);
        else if (near)
            lw_error(L, e->loc, "unknown initializer '%s' (did you mean '%s'?)", name, near);
        else
            lw_error(L, e->loc, "unknown initializer '%s'; initializers: %s", name,
                     lw_name_list(L, param_inits));
        return false;
    }
    return true;
}

/* input NAME : TYPE [= normal(mean, std) | uniform(lo, hi)] */
static void lower_input_decl(struct lower *L, const struct ast_stmt *s, struct fe_sym *sym) {
    struct type t;
    if (!lower_type(L, s->type, true, &t)) return;
    if (t.shape.rank == 0 || t.shape.dim[0] != IR_DIM_N) {
        lw_error(L, s->type->loc, "input '%s' needs the batch dim N first, as in %s[N, ...]", s->name,
                 s->type->dtype);
        return;
    }
    int bi = ir_buffer_add(L->m, BUF_INPUT, s->name, t, s->name_loc);
    if (!s->init) return;
    const char *name;
    double a[2] = {0, 0};
    int n;
    static const char *const mean_std[] = {"mean", "std", NULL}, *const lo_hi[] = {"lo", "hi", NULL};
    bool is_normal = s->init->kind == AST_CALL && strcmp(s->init->str, "normal") == 0;
    if (!init_call(L, s->init, &name, a, &n, is_normal ? mean_std : lo_hi, 2)) return;
    bool ok = (strcmp(name, "normal") == 0 && n == 2 && a[1] >= 0) ||
              (strcmp(name, "uniform") == 0 && n == 2 && a[0] <= a[1]);
    if (!ok) {
        lw_error(L, s->init->loc, "an input is either data or noise: normal(mean, std) or uniform(lo, hi)");
        return;
    }
    if (t.dtype != DT_F32) {
        lw_error(L, s->init->loc, "a noise input must be f32");
        return;
    }
    struct ir_source src = {.kind = arena_strdup(L->m->arena, name), .nargs = 2, .args = {a[0], a[1]}};
    L->m->buffers[bi].data = src;
    L->m->buffers[bi].test = src;
    sym->noise = true;
}

/* A declaration (input, param, net) is a sym; the first walk checks and makes it. */
static void lower_decl(struct lower *L, const struct ast_stmt *s) {
    struct fe_sym *sym = NULL;
    for (size_t i = 0; i < vec_len(L->syms); i++)
        if (L->syms[i]->decl == s) sym = L->syms[i];
    if (sym) {
        sym->walk = L->walk;
        return;
    }
    if (!name_free(L, s->name, s->name_loc, false)) return;
    sym = arena_alloc(L->a, sizeof *sym);
    sym->name = s->name;
    sym->loc = s->name_loc;
    sym->decl = s;
    sym->kind = s->kind == ST_INPUT ? SYM_INPUT : s->kind == ST_PARAM ? SYM_PARAM : SYM_NET;
    int errors = L->nerrors;
    if (s->kind == ST_INPUT) {
        lower_input_decl(L, s, sym);
    } else if (s->kind == ST_PARAM) {
        struct type t;
        struct ir_init init;
        if (lower_type(L, s->type, false, &t) && lower_param_init(L, s->init, &t.shape, &init)) {
            if (t.dtype != DT_F32)
                lw_error(L, s->type->loc, "a param must be f32 (it is trained)");
            else {
                int bi = ir_buffer_add(L->m, BUF_PARAM, s->name, t, s->name_loc);
                L->m->buffers[bi].init = init;
                L->m->buffers[bi].group = L->m->name;
            }
        }
    } else {
        if (s->nparams == 0) lw_error(L, s->name_loc, "net '%s' needs at least one input", s->name);
        for (int i = 0; i < s->nparams; i++) {
            const char *pn = s->params[i]->str;
            /* Inputs of a net may shadow declarations (net G(z) with input z). */
            if (fe_builtin_find(pn))
                lw_error(L, s->params[i]->loc, "'%s' is the name of a builtin; choose another name", pn);
            for (int j = 0; j < i; j++)
                if (strcmp(s->params[j]->str, pn) == 0)
                    lw_error(L, s->params[i]->loc, "input '%s' is listed twice", pn);
        }
        if (s->nparams > FE_MAX_NET_ARGS)
            lw_error(L, s->name_loc, "a net takes at most %d inputs", FE_MAX_NET_ARGS);
        for (int i = 0; i < s->nbody; i++)
            if (s->body[i]->kind == ST_INPUT || s->body[i]->kind == ST_PARAM)
                lw_error(L, s->body[i]->loc, "%s declarations belong at the top level, not inside net '%s'%s",
                         s->body[i]->kind == ST_INPUT ? "input" : "param", s->name,
                         s->body[i]->kind == ST_PARAM
                             ? " (a net's layers make its parameters; a top-level param "
                               "can be used inside it)"
                             : "");
        for (int i = 0; i < s->nbody; i++)
            if (s->body[i]->kind == ST_RETURN && i + 1 < s->nbody) {
                lw_error(L, s->body[i + 1]->loc, "statement after return");
                break;
            }
    }
    (void)errors; /* pushed even after an error, so later uses do not cascade */
    sym->walk = L->walk;
    vec_push(L->syms, sym);
}

/* The variable name of a loss's prediction operand: cross_entropy(logits, y) -> logits. */
static const char *pred_name(const struct ast_stmt *s) {
    if (s->nitems != 1 || s->items[0]->kind != AST_CALL || s->items[0]->nargs < 1) return NULL;
    const struct ast_expr *a = s->items[0]->args[0];
    return a->kind == AST_NAME ? a->str : NULL;
}

static void lower_top(struct lower *L, const struct ast_stmt *s) {
    struct val v;
    switch (s->kind) {
    case ST_MODEL:
        return;
    case ST_TRAIN:
        if (L->walk == 1) {
            if (L->train)
                lw_error(L, s->loc, "a second train block (the first is at line %d)", L->train->loc.line);
            else
                L->train = s;
        }
        return;
    case ST_INPUT:
    case ST_PARAM:
    case ST_NET:
        lower_decl(L, s);
        return;
    case ST_RETURN:
        lw_error(L, s->loc, "return outside a net");
        return;
    case ST_ASSIGN:
    case ST_ITEMS:
    case ST_LOSS:
    case ST_METRIC:
    case ST_OUTPUT:
        break;
    }
    v = lower_items(L, s->items, s->nitems);
    if (v.kind == V_ERR) {
        if (s->name) var_set(L->sc, s->name, v);
        return;
    }
    if (v.kind != V_TENSOR && s->kind != ST_ASSIGN && s->kind != ST_ITEMS) {
        lw_error(L, s->items[0]->loc, "this %s must be a tensor",
                 s->kind == ST_LOSS     ? "loss"
                 : s->kind == ST_METRIC ? "metric"
                                        : "output");
        return;
    }
    if (s->name && !var_find(L->sc, s->name) && !name_free(L, s->name, s->name_loc, true)) return;
    if (s->name) var_set(L->sc, s->name, v);
    if (s->kind == ST_ASSIGN || s->kind == ST_ITEMS) {
        L->sc->cur = v;
        return;
    }
    const struct type *t = lw_type(L, v.id);
    if ((s->kind == ST_LOSS || s->kind == ST_METRIC) && (t->shape.rank != 0 || t->dtype != DT_F32)) {
        lw_error(L, s->items[0]->loc, "a %s must be a scalar f32[], got %s%s",
                 s->kind == ST_LOSS ? "loss" : "metric", lw_tstr(L, t),
                 t->dtype == DT_F32 ? "; take mean(...) of it" : "");
        return;
    }
    struct fe_record r = {s->name, v.id, s->loc, NULL, NULL};
    if (s->nitems == 1 && s->items[0]->kind == AST_CALL) r.fn = s->items[0]->str;
    if (s->kind == ST_LOSS) {
        r.pred = pred_name(s);
        vec_push(L->losses, r);
    } else if (s->kind == ST_METRIC) {
        vec_push(L->metrics, r);
    } else {
        for (size_t i = 0; i < vec_len(L->outputs); i++)
            if (strcmp(L->outputs[i].name, s->name) == 0) {
                lw_error(L, s->name_loc, "a second output named '%s'", s->name);
                return;
            }
        vec_push(L->outputs, r);
    }
}

/* ------------------------------------------------------------------- walks */

static void walk_reset(struct lower *L) {
    vec_free(L->top.vars);
    memset(&L->top, 0, sizeof L->top);
    L->top.prefix = L->m->name;
    L->top.cur = (struct val){.kind = V_NONE};
    L->sc = &L->top;
    vec_free(L->bufnodes);
    vec_free(L->losses);
    vec_free(L->metrics);
    vec_free(L->outputs);
    vec_free(L->bn);
    L->dropout_seq = 0;
    for (size_t i = 0; i < vec_len(L->syms); i++) L->syms[i]->broken = false;
}

/* Lower every statement into a new function. False after errors. */
static bool walk(struct lower *L, const char *name, enum func_mode mode) {
    L->walk++;
    walk_reset(L);
    L->f = ir_func_add(L->m, name, mode);
    L->mode = mode;
    int errors = L->nerrors;
    for (size_t i = 0; i < vec_len(L->p->stmts) && L->nerrors - errors < FE_MAX_ERRORS; i++)
        lower_top(L, L->p->stmts[i]);
    return L->nerrors == errors;
}

/* A unique output name: `name`, else name_2, name_3... */
static const char *out_name(struct lower *L, const char *name) {
    if (ir_output_find(L->f, name) < 0) return name;
    for (int k = 2;; k++) {
        const char *n = arena_printf(L->a, "%s_%d", name, k);
        if (ir_output_find(L->f, n) < 0) return n;
    }
}

static const char *loss_out_name(struct lower *L, size_t i) {
    if (L->losses[i].name) return L->losses[i].name;
    return vec_len(L->losses) == 1 ? "loss" : arena_printf(L->a, "loss%zu", i);
}

static void add_metrics(struct lower *L) {
    for (size_t i = 0; i < vec_len(L->metrics); i++) {
        const struct fe_record *r = &L->metrics[i];
        ir_output_add(L->m, L->f, out_name(L, r->name ? r->name : r->fn ? r->fn : "metric"), r->id);
    }
}

/* Emit the running-statistics updates of the live batchnorm layers, chained per
 * buffer in the order the layers ran, then remove dead nodes. */
static void finish_func(struct lower *L) {
    int n = ir_func_len(L->f);
    if (vec_len(L->bn)) {
        char *live = calloc((size_t)n, 1);
        if (!live) exit(1);
        for (size_t i = 0; i < vec_len(L->f->outputs); i++) live[L->f->outputs[i].value] = 1;
        for (int i = n - 1; i >= 0; i--)
            if (live[i])
                for (int a = 0; a < L->f->nodes[i].nargs; a++) live[L->f->nodes[i].args[a]] = 1;
        for (size_t i = 0; i < vec_len(L->bn); i++) {
            struct fe_bn_update *u = &L->bn[i];
            if (!u->buf || !live[u->bn]) continue;
            int r = lw_buffer_node(L, u->buf, BUF_STATE, u->loc);
            for (size_t j = i; j < vec_len(L->bn); j++) {
                struct fe_bn_update *w = &L->bn[j];
                if (!w->buf || strcmp(w->buf, u->buf) != 0 || !live[w->bn]) continue;
                int keep = lw_emit2(L, OP_MUL, r, lw_const(L, 1 - w->momentum, DT_F32, w->loc), w->loc);
                int add = lw_emit2(L, OP_MUL, w->stat, lw_const(L, w->momentum, DT_F32, w->loc), w->loc);
                r = lw_emit2(L, OP_ADD, keep, add, w->loc);
                if (j > i) w->buf = NULL;
            }
            int as = lw_node(L, OP_ASSIGN, &r, 1, u->loc);
            ir_set_sym(L->m, lw_n(L, as), u->buf);
            lw_fin(L, as);
            u->buf = NULL;
        }
        free(live);
    }
    ir_func_dce(L->f);
}

/* Inputs, then params, then state, each in the order they were made. */
static void sort_buffers(struct ir_module *m) {
    size_t n = vec_len(m->buffers);
    struct ir_buffer *tmp = malloc(sizeof *tmp * (n ? n : 1));
    if (!tmp) exit(1);
    size_t k = 0;
    for (int kind = BUF_INPUT; kind <= BUF_STATE; kind++)
        for (size_t i = 0; i < n; i++)
            if ((int)m->buffers[i].kind == kind) tmp[k++] = m->buffers[i];
    memcpy(m->buffers, tmp, sizeof *tmp * n);
    free(tmp);
}

/* The value a step minimizes: a loss by name, else a scalar variable. */
static int step_loss(struct lower *L, const struct fe_step *st, bool report) {
    for (size_t i = 0; i < vec_len(L->losses); i++)
        if (L->losses[i].name && strcmp(L->losses[i].name, st->loss) == 0) return L->losses[i].id;
    struct fe_var *v = var_find(&L->top, st->loss);
    if (v && v->v.kind == V_TENSOR) {
        const struct type *t = lw_type(L, v->v.id);
        if (t->shape.rank == 0 && t->dtype == DT_F32) return v->v.id;
        if (report)
            lw_error(L, st->loss_loc, "step '%s' minimizes '%s', which is %s, not a scalar f32[]", st->name,
                     st->loss, lw_tstr(L, t));
        return -1;
    }
    if (report) {
        const char **names = NULL;
        for (size_t i = 0; i < vec_len(L->losses); i++)
            if (L->losses[i].name) vec_push(names, L->losses[i].name);
        vec_push(names, NULL);
        const char *near = fe_nearest(st->loss, names);
        if (near)
            lw_error(L, st->loss_loc, "unknown loss '%s' (did you mean '%s'?)", st->loss, near);
        else if (vec_len(names) > 1)
            lw_error(L, st->loss_loc, "unknown loss '%s'; losses: %s", st->loss, lw_name_list(L, names));
        else
            lw_error(L, st->loss_loc, "unknown loss '%s'; name a loss, as in `loss %s = ...`", st->loss,
                     st->loss);
        vec_free(names);
    }
    return -1;
}

static bool lower_all(struct lower *L) {
    const struct ast_stmt *first = vec_len(L->p->stmts) ? L->p->stmts[0] : NULL;
    if (!first || first->kind != ST_MODEL) {
        struct loc loc = first ? first->loc : (struct loc){L->p->file, 1, 1};
        lw_error(L, loc, "a .net file starts with `model NAME`");
        return false;
    }
    for (size_t i = 1; i < vec_len(L->p->stmts); i++)
        if (L->p->stmts[i]->kind == ST_MODEL) {
            lw_error(L, L->p->stmts[i]->loc, "a second model line (the first is at line %d)",
                     first->loc.line);
            return false;
        }

    /* forward: the outputs, else each loss's prediction. */
    bool walked = walk(L, "forward", MODE_EVAL);
    if (!fe_train_read(L) || !walked) return false;
    for (size_t i = 0; i < vec_len(L->outputs); i++)
        ir_output_add(L->m, L->f, L->outputs[i].name, L->outputs[i].id);
    if (!vec_len(L->outputs))
        for (size_t i = 0; i < vec_len(L->losses); i++) {
            const char *n = L->losses[i].pred;
            if (!n) continue;
            struct fe_var *v = var_find(&L->top, n);
            if (v && v->v.kind == V_TENSOR && ir_output_find(L->f, n) < 0)
                ir_output_add(L->m, L->f, n, v->v.id);
            else if (!v) {
                struct fe_sym *s = lw_sym(L, n);
                if (s && s->kind != SYM_NET && ir_output_find(L->f, n) < 0)
                    ir_output_add(
                        L->m, L->f, n,
                        lw_buffer_node(L, n, s->kind == SYM_INPUT ? BUF_INPUT : BUF_PARAM, first->loc));
            }
        }
    /* Neither: the value of the last top-level assignment. */
    for (size_t i = vec_len(L->p->stmts); !vec_len(L->f->outputs) && i-- > 0;) {
        const struct ast_stmt *s = L->p->stmts[i];
        struct fe_var *v = s->kind == ST_ASSIGN ? var_find(&L->top, s->name) : NULL;
        if (v && v->v.kind == V_TENSOR) ir_output_add(L->m, L->f, s->name, v->v.id);
    }
    if (!vec_len(L->f->outputs)) {
        lw_error(L, first->loc, "model '%s' computes nothing: add `output NAME = ...` or a `loss`",
                 L->m->name);
        return false;
    }
    size_t nloss = vec_len(L->losses);
    for (size_t i = 0; i < vec_len(L->steps); i++) step_loss(L, &L->steps[i], true);
    if (nloss > 1 && !vec_len(L->steps)) {
        lw_error(L, L->losses[1].loc,
                 "a second loss: with several losses, give the train block one `step` per "
                 "loss, as in `step d_step { loss d_loss  update D }`");
        return false;
    }
    if (L->train && !nloss && !vec_len(L->steps)) {
        lw_error(L, L->train->loc, "the train block has no loss to minimize: add a `loss` line");
        return false;
    }
    if (L->nerrors) return false;
    finish_func(L);

    /* evaluate: every loss and metric. */
    if (nloss || vec_len(L->metrics)) {
        if (!walk(L, "evaluate", MODE_EVAL)) return false;
        for (size_t i = 0; i < vec_len(L->losses); i++)
            ir_output_add(L->m, L->f, out_name(L, loss_out_name(L, i)), L->losses[i].id);
        add_metrics(L);
        finish_func(L);
    }

    /* training: one function per step, or train_step for the one loss. */
    if (vec_len(L->steps)) {
        for (size_t i = 0; i < vec_len(L->steps); i++) {
            struct fe_step *st = &L->steps[i];
            if (!walk(L, st->name, MODE_TRAIN)) return false;
            int id = step_loss(L, st, true);
            if (id < 0) return false;
            ir_output_add(L->m, L->f, st->loss, id);
            add_metrics(L);
            L->f->loss = arena_strdup(L->m->arena, st->loss);
            L->f->optim = st->optim;
            L->f->loc = st->loc;
            for (size_t k = 0; k < vec_len(st->update); k++)
                vec_push(L->f->update, arena_strdup(L->m->arena, st->update[k]));
            finish_func(L);
        }
    } else if (nloss == 1) {
        if (!walk(L, "train_step", MODE_TRAIN)) return false;
        const char *ln = out_name(L, loss_out_name(L, 0));
        ir_output_add(L->m, L->f, ln, L->losses[0].id);
        add_metrics(L);
        L->f->loss = arena_strdup(L->m->arena, ln);
        L->f->optim = L->optim;
        L->f->loc = L->train ? L->train->loc : L->losses[0].loc;
        finish_func(L);
    }
    return fe_init_apply(L) && L->nerrors == 0;
}

/* generate_step: when the model reads tokens i32[N, T] and its forward has
 * recurrent layers (forward direction only) and a first output [N, T, ...],
 * the whole program once more with every [N, T, ...] input read at one step
 * and each recurrent layer's state kept in a state buffer `<layer>.state_l<k>`
 * [1, S] (batch 1) from step to step: `PROGRAM generate` feeds it one token at
 * a time without recomputing the prefix. Models where that walk fails (a
 * layer that needs all T steps) simply have no generate_step. */
static void lower_gen_step(struct lower *L) {
    const struct ir_func *fw = ir_func_find(L->m, "forward");
    int64_t t = 0;
    for (size_t i = 0; i < vec_len(L->m->buffers); i++) {
        const struct ir_buffer *b = &L->m->buffers[i];
        if (b->kind == BUF_INPUT && b->type.dtype == DT_I32 && b->type.shape.rank == 2 &&
            b->type.shape.dim[1] > 1 && b->type.shape.dim[0] == IR_DIM_N) {
            t = b->type.shape.dim[1];
            break;
        }
    }
    if (!fw || !t || !vec_len(fw->outputs)) return;
    bool rnn = false;
    for (int i = 0; i < ir_func_len(fw); i++)
        if (fw->nodes[i].op == OP_RNN) {
            if (ir_attr_i(&fw->nodes[i], ATTR_REVERSE)) return;
            rnn = true;
        }
    const struct ir_output *o = &fw->outputs[0];
    const struct type *ot = &fw->nodes[o->value].type;
    if (!rnn || ot->shape.rank < 3 || ot->shape.dim[1] != t) return;
    size_t nbuf = vec_len(L->m->buffers);
    int errors = L->nerrors;
    L->gen_step = true;
    L->gen_t = t;
    bool ok = walk(L, "generate_step", MODE_EVAL);
    int id = -1;
    for (size_t i = 0; i < vec_len(L->outputs) && id < 0; i++)
        if (strcmp(L->outputs[i].name, o->name) == 0) id = L->outputs[i].id;
    struct fe_var *v = id < 0 ? var_find(&L->top, o->name) : NULL;
    if (v && v->v.kind == V_TENSOR) id = v->v.id;
    if (ok && id >= 0 && lw_type(L, id)->shape.rank == ot->shape.rank && lw_type(L, id)->shape.dim[1] == 1) {
        ir_output_add(L->m, L->f, o->name, id);
        finish_func(L);
    } else { /* drop the function and the buffers it made */
        struct ir_func *f = L->f;
        for (int i = 0; i < ir_func_len(f); i++) free(f->nodes[i].args);
        vec_free(f->nodes);
        vec_free(f->outputs);
        vec_free(f->update);
        vec_hdr_(L->m->funcs)->len--;
        vec_hdr_(L->m->buffers)->len = nbuf;
    }
    L->gen_step = false;
    L->nerrors = errors;
}

struct ir_module *fe_lower(struct parser *p) {
    struct lower L;
    memset(&L, 0, sizeof L);
    L.p = p;
    L.a = p->arena;
    const struct ast_stmt *first = vec_len(p->stmts) ? p->stmts[0] : NULL;
    L.m = ir_module_new(first && first->kind == ST_MODEL ? first->name : "model");
    bool ok = lower_all(&L);
    if (ok) lower_gen_step(&L);
    if (ok) sort_buffers(L.m);
    vec_free(L.syms);
    vec_free(L.top.vars);
    vec_free(L.bufnodes);
    vec_free(L.losses);
    vec_free(L.metrics);
    vec_free(L.outputs);
    vec_free(L.bn);
    for (size_t i = 0; i < vec_len(L.steps); i++) vec_free(L.steps[i].update);
    vec_free(L.steps);
    vec_free(L.lparams);
    if (!ok) {
        ir_module_free(L.m);
        return NULL;
    }
    return L.m;
}
