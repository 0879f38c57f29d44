/* ir/verify.c -- the IR verifier: checks every invariant of a module and reports
 * each problem at the offending buffer, function or node. Buffers first (names,
 * types, initializers), then each function: per node the op, operands, symbol,
 * attribute ranges (a small table keyed by attribute name, so a new op with a
 * `stride` or an `axis` is checked for free) and the type against ir_infer; its
 * kernels and memory plan; then outputs, loss, optimizer and update groups. */
#include "ir/ir.h"

#include <math.h>
#include <string.h>

struct verifier {
    struct ir_module *m; /* the module being checked */
    struct ir_func *f;   /* the function being checked, or NULL */
    bool ok;             /* no problem found so far */
};

static void verror(struct verifier *v, struct loc loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void verror(struct verifier *v, struct loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(loc, fmt, ap);
    va_end(ap);
    v->ok = false;
}

/* An error about node `id`: "in @func, %id (op): message". */
static void node_error(struct verifier *v, int id, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void node_error(struct verifier *v, int id, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    const struct ir_node *n = &v->f->nodes[id];
    const char *op = (unsigned)n->op < OP_COUNT ? op_info[n->op].name : "?";
    verror(v, n->loc, "in @%s, %%%d (%s): %s", v->f->name ? v->f->name : "", id, op, msg);
}

static const char *tstr(const struct type *t, char buf[TYPE_STR_MAX]) {
    return type_str(t, buf, TYPE_STR_MAX);
}

/* What is wrong with a type, or NULL: a dtype out of range, a bad rank, a negative
 * dim, more than one N. */
static const char *type_problem(const struct type *t) {
    if ((unsigned)t->dtype >= DT_COUNT) return "has an invalid dtype";
    if (t->shape.rank < 0 || t->shape.rank > IR_MAX_RANK) return "has an invalid rank";
    int nn = 0;
    for (int i = 0; i < t->shape.rank; i++) {
        if (t->shape.dim[i] == IR_DIM_N)
            nn++;
        else if (t->shape.dim[i] < 0)
            return "has a negative dimension";
    }
    return nn > 1 ? "has more than one batch dim N" : NULL;
}

/* ------------------------------------------------------------- buffers */

static void check_buffers(struct verifier *v) {
    static const char *const kinds[] = {"input", "param", "state"};
    struct ir_buffer *bs = v->m->buffers;
    for (size_t i = 0; i < vec_len(bs); i++) {
        struct ir_buffer *b = &bs[i];
        const char *name = b->name ? b->name : "";
        if (!*name) verror(v, b->loc, "a buffer has an empty name");
        for (size_t j = 0; j < i; j++)
            if (bs[j].name && strcmp(bs[j].name, name) == 0) {
                verror(v, b->loc, "buffer @%s is declared twice", name);
                if (bs[j].loc.file) diag_note(bs[j].loc, "first declared here");
                break;
            }
        if ((unsigned)b->kind > BUF_STATE) {
            verror(v, b->loc, "buffer @%s has an invalid kind", name);
            continue;
        }
        const char *tp = type_problem(&b->type);
        if (tp) verror(v, b->loc, "buffer @%s %s", name, tp);
        if (b->kind == BUF_INPUT) continue;
        if (!tp && shape_has_n(&b->type.shape)) {
            char t[TYPE_STR_MAX];
            verror(v, b->loc, "%s @%s has type %s: only inputs may have the batch dim N", kinds[b->kind],
                   name, tstr(&b->type, t));
        }
        const struct ir_init *in = &b->init;
        if ((unsigned)in->kind > INIT_RANGE)
            verror(v, b->loc, "%s @%s has an invalid initializer", kinds[b->kind], name);
        else if (!isfinite(in->a) || !isfinite(in->b))
            verror(v, b->loc, "%s @%s has a non-finite initializer", kinds[b->kind], name);
        else if (in->kind == INIT_UNIFORM && in->a > in->b)
            verror(v, b->loc, "%s @%s: uniform(%g, %g) has its bounds reversed", kinds[b->kind], name, in->a,
                   in->b);
        else if (in->kind == INIT_NORMAL && in->b < 0)
            verror(v, b->loc, "%s @%s: normal(%g, %g) has a negative stddev", kinds[b->kind], name, in->a,
                   in->b);
        else if (in->kind == INIT_RANGE &&
                 !(in->a >= 0 && in->a <= in->b && in->a == floor(in->a) && in->b == floor(in->b)))
            verror(v, b->loc, "%s @%s: range(%g, %g) is not a range of indices", kinds[b->kind], name, in->a,
                   in->b);
    }
}

/* ----------------------------------------------------------- attributes */

/* How an attribute's values are checked. */
enum attr_rule {
    AR_POS,    /* every int >= 1 */
    AR_NONNEG, /* every int >= 0 */
    AR_BOOL,   /* 0 or 1 */
    AR_AXIS,   /* an axis of operand 0 */
    AR_AXES,   /* distinct axes of operand 0 */
    AR_PERM,   /* a permutation of operand 0's axes */
    AR_RATE,   /* a float in [0, 1) */
    AR_FINITE, /* a finite float */
    AR_NOTNAN, /* a float that is not NaN */
    AR_EPS,    /* a finite float > 0 */
};

/* Attribute names and their rule; names not listed are not range-checked. */
static const struct {
    const char *name;    /* as in ops.def */
    enum attr_rule rule; /* the check */
} attr_rules[] = {
    {"stride", AR_POS},       {"dilation", AR_POS},     {"groups", AR_POS},   {"kernel", AR_POS},
    {"scale", AR_POS},        {"size", AR_POS},         {"pad", AR_NONNEG},   {"output_pad", AR_NONNEG},
    {"before", AR_NONNEG},    {"after", AR_NONNEG},     {"start", AR_NONNEG}, {"keepdims", AR_BOOL},
    {"transpose_a", AR_BOOL}, {"transpose_b", AR_BOOL}, {"axis", AR_AXIS},    {"axes", AR_AXES},
    {"perm", AR_PERM},        {"rate", AR_RATE},        {"alpha", AR_FINITE}, {"value", AR_NOTNAN},
    {"eps", AR_EPS},
};

/* Check one attribute of node `id`; `rank` is operand 0's rank or -1 if unknown. */
static bool check_attr(struct verifier *v, int id, const struct attr_desc *a, int rank) {
    const struct ir_node *n = &v->f->nodes[id];
    int r = -1;
    for (size_t i = 0; i < sizeof attr_rules / sizeof attr_rules[0]; i++)
        if (strcmp(attr_rules[i].name, a->name) == 0) r = (int)attr_rules[i].rule;
    if (a->kind == AK_FLOAT) {
        double x = n->fa[a->slot];
        if (r == AR_RATE && !(x >= 0 && x < 1))
            return node_error(v, id, "%s must be in [0, 1), got %g", a->name, x), false;
        if (r == AR_FINITE && !isfinite(x))
            return node_error(v, id, "%s must be finite, got %g", a->name, x), false;
        if (r == AR_NOTNAN && isnan(x)) return node_error(v, id, "%s is NaN", a->name), false;
        if (r == AR_EPS && !(isfinite(x) && x > 0))
            return node_error(v, id, "%s must be positive, got %g", a->name, x), false;
        return true;
    }
    if (a->kind == AK_STR) return true;
    const int64_t *x = &n->ia[a->slot];
    int count = a->count;
    if (a->kind == AK_LIST) {
        if (x[0] < 0 || x[0] > IR_MAX_LIST)
            return node_error(v, id, "%s has %lld ints, at most %d allowed", a->name, (long long)x[0],
                              IR_MAX_LIST),
                   false;
        count = (int)x[0];
        x++;
    }
    if (r == AR_PERM && rank >= 0 && count != rank)
        return node_error(v, id, "perm has %d axes but the operand has rank %d", count, rank), false;
    for (int i = 0; i < count; i++) {
        const char *which = count > 1 || a->kind != AK_INT ? "an element of " : "";
        switch (r) {
        case AR_POS:
            if (x[i] < 1)
                return node_error(v, id, "%s%s must be at least 1, got %lld", which, a->name,
                                  (long long)x[i]),
                       false;
            break;
        case AR_NONNEG:
            if (x[i] < 0)
                return node_error(v, id, "%s%s must not be negative, got %lld", which, a->name,
                                  (long long)x[i]),
                       false;
            break;
        case AR_BOOL:
            if (x[i] != 0 && x[i] != 1)
                return node_error(v, id, "%s must be 0 or 1, got %lld", a->name, (long long)x[i]), false;
            break;
        case AR_AXIS:
        case AR_AXES:
        case AR_PERM:
            if (rank >= 0 && (x[i] < 0 || x[i] >= rank))
                return node_error(v, id, "%s%s %lld is out of range for an operand of rank %d", which,
                                  a->name, (long long)x[i], rank),
                       false;
            for (int k = 0; k < i; k++)
                if (x[k] == x[i])
                    return node_error(v, id, "%s lists axis %lld twice%s", a->name, (long long)x[i],
                                      r == AR_PERM ? ": not a permutation" : ""),
                           false;
            break;
        default:
            break;
        }
    }
    return true;
}

/* ---------------------------------------------------------------- nodes */

/* Is the node's symbol right for its op? INPUT reads an input, PARAM a param or
 * state buffer, ASSIGN writes a param or state buffer of its operand's type. */
static bool check_sym(struct verifier *v, int id, bool args_ok) {
    static const char *const kinds[] = {"input", "param", "state"};
    const struct ir_node *n = &v->f->nodes[id];
    bool wants = false;
    for (int i = 0; i < op_info[n->op].nattrs; i++)
        if (op_info[n->op].attrs[i].kind == AK_STR) wants = true;
    if (!wants) {
        if (n->sym) return node_error(v, id, "the op takes no symbol, got @%s", n->sym), false;
        return true;
    }
    if (!n->sym || !*n->sym) return node_error(v, id, "missing buffer name"), false;
    struct ir_buffer *b = ir_buffer_find(v->m, n->sym);
    if (!b) {
        const char **cands = NULL;
        for (size_t i = 0; i < vec_len(v->m->buffers); i++)
            if (v->m->buffers[i].name) vec_push(cands, v->m->buffers[i].name);
        vec_push(cands, (const char *)NULL);
        const char *near = diag_nearest(n->sym, cands);
        node_error(v, id, "unknown buffer @%s%s%s%s", n->sym, near ? " (did you mean @" : "",
                   near ? near : "", near ? "?)" : "");
        vec_free(cands);
        return false;
    }
    if ((unsigned)b->kind > BUF_STATE || type_problem(&b->type)) return false; /* reported with the buffer */
    bool want_input = n->op == OP_INPUT;
    if (want_input != (b->kind == BUF_INPUT))
        return node_error(v, id, "@%s is a%s %s buffer, expected %s", b->name,
                          b->kind == BUF_INPUT ? "n" : "", kinds[b->kind],
                          want_input ? "an input" : "a param or state buffer"),
               false;
    char t1[TYPE_STR_MAX], t2[TYPE_STR_MAX];
    if (n->op == OP_ASSIGN) {
        if (!args_ok) return true;
        const struct type *t = &v->f->nodes[n->args[0]].type;
        if (t->dtype != b->type.dtype || !shape_equal(&t->shape, &b->type.shape))
            return node_error(v, id, "assigns %s to @%s of type %s", tstr(t, t1), b->name,
                              tstr(&b->type, t2)),
                   false;
    } else if (n->type.dtype != b->type.dtype || !shape_equal(&n->type.shape, &b->type.shape)) {
        return node_error(v, id, "has type %s but buffer @%s is %s", tstr(&n->type, t1), b->name,
                          tstr(&b->type, t2)),
               false;
    }
    return true;
}

/* Check node `id`. bad[i] marks earlier nodes whose own type is unusable. */
static void check_node(struct verifier *v, int id, char *bad) {
    struct ir_node *n = &v->f->nodes[id];
    bad[id] = 1;
    if ((unsigned)n->op >= OP_COUNT) {
        verror(v, n->loc, "in @%s, %%%d: invalid op %d", v->f->name ? v->f->name : "", id, (int)n->op);
        return;
    }
    const struct op_info *info = &op_info[n->op];
    const char *tp = type_problem(&n->type);
    if (tp) node_error(v, id, "its type %s", tp);
    bad[id] = tp != NULL;
    bool ok = !tp;
    /* Operands. */
    bool args_ok = true;
    if (n->nargs < 0 || (n->nargs > 0 && !n->args)) {
        node_error(v, id, "has an invalid operand list");
        return;
    }
    if (info->arity >= 0 ? n->nargs != info->arity : n->nargs < 1) {
        if (info->arity >= 0)
            node_error(v, id, "takes %d operand%s, got %d", info->arity, info->arity == 1 ? "" : "s",
                       n->nargs);
        else
            node_error(v, id, "takes at least 1 operand, got %d", n->nargs);
        args_ok = false;
    }
    for (int i = 0; i < n->nargs; i++) {
        int a = n->args[i];
        if (a < 0 || a >= id) {
            node_error(v, id, "operand %d refers to %%%d, which is not defined before it", i + 1, a);
            args_ok = false;
        } else if (bad[a]) {
            args_ok = false; /* already reported at the operand */
            ok = false;
        }
    }
    ok = ok && args_ok;
    /* Symbol and attributes. */
    if (!check_sym(v, id, args_ok)) ok = false;
    int rank = args_ok && n->nargs > 0 ? v->f->nodes[n->args[0]].type.shape.rank : -1;
    for (int i = 0; i < info->nattrs; i++)
        if (!check_attr(v, id, &info->attrs[i], rank)) ok = false;
    if (!ok) return;
    /* The type its shape rule gives. */
    char err[512], t1[TYPE_STR_MAX], t2[TYPE_STR_MAX];
    struct type saved = n->type;
    bool inferred = ir_infer(v->m, v->f, id, err, sizeof err);
    n = &v->f->nodes[id];
    struct type got = n->type;
    n->type = saved;
    if (!inferred)
        node_error(v, id, "%s", err[0] ? err : "its shape rule fails");
    else if (got.dtype != saved.dtype || !shape_equal(&got.shape, &saved.shape))
        node_error(v, id, "has type %s but its operands give %s", tstr(&saved, t1), tstr(&got, t2));
}

/* ---------------------------------------------------------- memory plan */

/* Whether a slot of `bytes` at `off` of region `where` fits the function's
 * workspace; both a multiple of IR_SLOT_ALIGN. */
static bool slot_fits(const struct ir_func *f, enum mem_where where, int64_t off, int64_t bytes) {
    int64_t size = where == MEM_BATCH ? f->ws_batch : f->ws_fixed;
    bytes = (bytes + IR_SLOT_ALIGN - 1) / IR_SLOT_ALIGN * IR_SLOT_ALIGN;
    return off >= 0 && off % IR_SLOT_ALIGN == 0 && bytes <= size && off <= size - bytes;
}

/* The memory plan's form (docs/ir.md, "Memory plan"): slots inside the
 * workspace, in the region the type asks for (per item with N); leaves and
 * assigns without storage of their own; a value stored in place only into an
 * assigned buffer of its type; nothing planned in an unplanned function. */
static void check_plan(struct verifier *v) {
    struct ir_func *f = v->f;
    char t1[TYPE_STR_MAX], t2[TYPE_STR_MAX];
    for (int i = 0; i < ir_func_len(f); i++) {
        const struct ir_node *n = &f->nodes[i];
        const struct ir_mem *mem = &n->mem;
        if (!f->planned) {
            if (mem->where != MEM_NONE || mem->scratch_where != MEM_NONE)
                node_error(v, i, "has a place in a memory plan, but @%s has no workspace", f->name);
            continue;
        }
        bool leaf = n->op == OP_INPUT || n->op == OP_PARAM || n->op == OP_ASSIGN;
        if (mem->where != MEM_NONE && leaf) node_error(v, i, "is a buffer's: it takes no storage of its own");
        if (mem->where == MEM_FIXED || mem->where == MEM_BATCH) {
            if ((mem->where == MEM_BATCH) != shape_has_n(&n->type.shape))
                node_error(v, i, "of type %s is planned in the %s region", tstr(&n->type, t1),
                           mem->where == MEM_BATCH ? "per-item" : "fixed");
            else if (!slot_fits(f, mem->where, mem->off,
                                shape_static_numel(&n->type.shape) * (int64_t)dtype_size(n->type.dtype)))
                node_error(v, i, "slot at %lld does not fit the workspace of @%s", (long long)mem->off,
                           f->name);
        } else if (mem->where == MEM_BUFFER) {
            const struct ir_buffer *b =
                mem->off >= 0 && (size_t)mem->off < vec_len(v->m->buffers) ? &v->m->buffers[mem->off] : NULL;
            bool assigned = false;
            for (int j = i + 1; b && j < ir_func_len(f); j++)
                assigned |= f->nodes[j].op == OP_ASSIGN && f->nodes[j].args[0] == i &&
                            strcmp(f->nodes[j].sym, b->name) == 0;
            if (!b || !assigned)
                node_error(v, i, "is stored in place into a buffer that no assign of it writes");
            else if (b->type.dtype != n->type.dtype || !shape_equal(&b->type.shape, &n->type.shape))
                node_error(v, i, "of type %s is stored in place into @%s of type %s", tstr(&n->type, t1),
                           b->name, tstr(&b->type, t2));
        } else if (mem->where != MEM_NONE) {
            node_error(v, i, "has an invalid memory plan");
        }
        if (mem->scratch_where == MEM_FIXED || mem->scratch_where == MEM_BATCH) {
            if (mem->scratch <= 0 || !slot_fits(f, mem->scratch_where, mem->scratch_off, mem->scratch * 4))
                node_error(v, i, "scratch of %lld floats at %lld does not fit the workspace of @%s",
                           (long long)mem->scratch, (long long)mem->scratch_off, f->name);
        } else if (mem->scratch_where != MEM_NONE || mem->scratch) {
            node_error(v, i, "has an invalid scratch plan");
        }
    }
}

/* -------------------------------------------------------------- kernels */

bool ir_kernel_head_op(enum op op) { return op == OP_MATMUL || op == OP_CONV2D; }

bool ir_kernel_ewise_op(enum op op) {
    return (op_info[op].kind == OK_EWISE && op != OP_CAST && op != OP_STOP_GRADIENT) || op == OP_BATCHNORM;
}

bool ir_kernel_pool_op(const struct ir_node *n) {
    if (n->op != OP_MAXPOOL2D || n->nargs != 1) return false;
    const int64_t *k = ir_attr_v(n, ATTR_KERNEL, NULL), *s = ir_attr_v(n, ATTR_STRIDE, NULL);
    const int64_t *p = ir_attr_v(n, ATTR_PAD, NULL);
    return k && s && p && k[0] == 2 && k[1] == 2 && s[0] == 2 && s[1] == 2 && !p[0] && !p[1] && !p[2] &&
           !p[3];
}

/* The kernel invariant of docs/ir.md: members are elementwise ops of the root's
 * f32 type (plus at most one matmul/conv2d head whose operands come from outside,
 * and, after a conv2d head, a 2x2 max-pool root), and members are used outside
 * the kernel only once it has run (after the root, the highest-numbered member). */
static void check_kernels(struct verifier *v) {
    struct ir_func *f = v->f;
    int len = ir_func_len(f);
    int *root = NULL, *head = NULL; /* per node id: its kernel's root and head, by kernel */
    int maxk = 0;
    for (int i = 0; i < len; i++) {
        if (f->nodes[i].kernel < 0) node_error(v, i, "kernel number %d is negative", f->nodes[i].kernel);
        if (f->nodes[i].kernel > maxk) maxk = f->nodes[i].kernel;
    }
    if (maxk == 0) return;
    if (maxk > len) {
        for (int i = 0; i < len; i++)
            if (f->nodes[i].kernel > len) {
                int k = f->nodes[i].kernel;
                node_error(v, i, "kernel number %d is larger than the function (%d nodes)", k, len);
                return;
            }
    }
    root = malloc(sizeof *root * (size_t)(maxk + 1));
    head = malloc(sizeof *head * (size_t)(maxk + 1));
    if (!root || !head) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    for (int k = 0; k <= maxk; k++) root[k] = head[k] = -1;
    char t1[TYPE_STR_MAX], t2[TYPE_STR_MAX];
    for (int i = 0; i < len; i++) {
        const struct ir_node *n = &f->nodes[i];
        int k = n->kernel;
        if (k <= 0) continue;
        root[k] = i;
        if (ir_kernel_head_op(n->op)) {
            if (head[k] >= 0)
                node_error(v, i, "kernel %d already has a head, %%%d", k, head[k]);
            else
                head[k] = i;
        } else if (!ir_kernel_ewise_op(n->op) && !ir_kernel_pool_op(n)) {
            node_error(v, i,
                       "cannot be part of kernel %d: a kernel holds elementwise ops and at most one "
                       "matmul or conv2d head (and a 2x2 max-pool root after a conv2d)",
                       k);
        }
        if (n->type.dtype != DT_F32)
            node_error(v, i, "member of kernel %d must be f32, got %s", k, tstr(&n->type, t1));
        for (int a = 0; a < n->nargs; a++) {
            const struct ir_node *x = &f->nodes[n->args[a]];
            if (x->type.dtype != DT_F32)
                node_error(v, i, "member of kernel %d reads %%%d of type %s, not f32", k, n->args[a],
                           tstr(&x->type, t1));
            if (ir_kernel_head_op(n->op) && x->kernel == k)
                node_error(v, i,
                           "head of kernel %d reads %%%d of the same kernel; a head's operands must "
                           "come from outside",
                           k, n->args[a]);
        }
    }
    for (int i = 0; i < len; i++) {
        const struct ir_node *n = &f->nodes[i];
        int k = n->kernel;
        if (k <= 0) continue;
        /* A pooling root: the last member, behind a conv2d head, reading a member;
         * the others have the shape of its operand. */
        int body = root[k];
        if (f->nodes[body].op == OP_MAXPOOL2D) {
            const struct ir_node *r = &f->nodes[body];
            if (r->nargs == 1 && f->nodes[r->args[0]].kernel == k) body = r->args[0];
            if (i == root[k] && (head[k] < 0 || f->nodes[head[k]].op != OP_CONV2D || body == root[k]))
                node_error(v, i,
                           "max-pool root of kernel %d needs a conv2d head and an operand in the kernel", k);
            if (i == root[k]) continue;
        } else if (n->op == OP_MAXPOOL2D) {
            node_error(v, i, "max pooling in kernel %d is not its last node %%%d", k, root[k]);
            continue;
        }
        const struct ir_node *r = &f->nodes[body];
        if (!shape_equal(&n->type.shape, &r->type.shape))
            node_error(v, i, "member of kernel %d has type %s but the kernel's last node %%%d has %s", k,
                       tstr(&n->type, t1), body, tstr(&r->type, t2));
    }
    /* Members escape only where the kernel has already run: to users after the
     * root, to assigns (which take effect at the end of the function) and as
     * outputs. The head never escapes (it computes into the root's storage). */
    for (int j = 0; j < len; j++) {
        const struct ir_node *u = &f->nodes[j];
        for (int a = 0; a < u->nargs; a++) {
            int i = u->args[a], k = f->nodes[i].kernel;
            if (k <= 0 || u->kernel == k) continue;
            if (i == head[k] && i != root[k])
                node_error(v, i, "head of kernel %d is used by %%%d outside the kernel", k, j);
            else if (i != root[k] && f->nodes[root[k]].op == OP_MAXPOOL2D)
                node_error(v, i,
                           "member of kernel %d is used by %%%d; a max-pool kernel stores its root only", k,
                           j);
            else if (j < root[k] && u->op != OP_ASSIGN)
                node_error(v, i, "member of kernel %d is used by %%%d, before the kernel's last node %%%d", k,
                           j, root[k]);
        }
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        int i = f->outputs[o].value, k = i >= 0 && i < len ? f->nodes[i].kernel : 0;
        if (k > 0 && i != root[k] && (i == head[k] || f->nodes[root[k]].op == OP_MAXPOOL2D))
            node_error(v, i, "%s of kernel %d is returned as '%s'", i == head[k] ? "head" : "member", k,
                       f->outputs[o].name ? f->outputs[o].name : "");
    }
    free(root);
    free(head);
}

/* ------------------------------------------------------------ functions */

static void check_func(struct verifier *v, struct ir_func *f) {
    v->f = f;
    const char *fname = f->name ? f->name : "";
    if (!*fname) verror(v, f->loc, "a function has an empty name");
    if ((unsigned)f->mode > MODE_TRAIN) verror(v, f->loc, "@%s has an invalid mode", fname);
    int len = ir_func_len(f);
    char *bad = calloc((size_t)len + 1, 1);
    if (!bad) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    bool nodes_ok = v->ok;
    v->ok = true;
    for (int i = 0; i < len; i++) check_node(v, i, bad);
    free(bad);
    if (v->ok) check_kernels(v);
    if (v->ok) check_plan(v);
    v->ok = v->ok && nodes_ok;
    /* Outputs. */
    for (size_t i = 0; i < vec_len(f->outputs); i++) {
        const struct ir_output *o = &f->outputs[i];
        const char *oname = o->name ? o->name : "";
        if (!*oname) verror(v, f->loc, "in @%s: output %zu has an empty name", fname, i + 1);
        for (size_t j = 0; j < i; j++)
            if (f->outputs[j].name && strcmp(f->outputs[j].name, oname) == 0) {
                verror(v, f->loc, "in @%s: output '%s' is returned twice", fname, oname);
                break;
            }
        if (o->value < 0 || o->value >= len)
            verror(v, f->loc, "in @%s: output '%s' refers to %%%d, which does not exist", fname, oname,
                   o->value);
    }
    /* Loss. */
    if (f->loss) {
        int k = ir_output_find(f, f->loss);
        if (k < 0) {
            verror(v, f->loc, "in @%s: the loss '%s' is not an output", fname, f->loss);
        } else if (f->outputs[k].value >= 0 && f->outputs[k].value < len) {
            const struct type *t = &f->nodes[f->outputs[k].value].type;
            char ts[TYPE_STR_MAX];
            if (t->dtype != DT_F32 || t->shape.rank != 0)
                verror(v, f->loc, "in @%s: the loss '%s' must be a scalar f32[], got %s", fname, f->loss,
                       tstr(t, ts));
        }
    }
    /* Optimizer. */
    const struct ir_optim *o = &f->optim;
    if (o->nkw < 0 || o->nkw > IR_MAX_OPT_KW) {
        verror(v, f->loc, "in @%s: the optimizer has an invalid option count", fname);
    } else {
        if (o->nkw > 0 && !o->kind)
            verror(v, f->loc, "in @%s: optimizer options without an optimizer", fname);
        for (int i = 0; i < o->nkw; i++) {
            if (!o->kw[i] || !*o->kw[i])
                verror(v, f->loc, "in @%s: optimizer option %d has no name", fname, i + 1);
            else if (!isfinite(o->kwval[i]))
                verror(v, f->loc, "in @%s: optimizer option %s is not finite", fname, o->kw[i]);
        }
        if (o->schedule.kind && !o->kind)
            verror(v, f->loc, "in @%s: a learning-rate schedule without an optimizer", fname);
    }
    /* Update groups name groups that own parameters. */
    for (size_t i = 0; i < vec_len(f->update); i++) {
        const char *g = f->update[i];
        bool found = false;
        for (size_t j = 0; g && j < vec_len(v->m->buffers); j++)
            if (v->m->buffers[j].kind == BUF_PARAM && v->m->buffers[j].group &&
                strcmp(v->m->buffers[j].group, g) == 0)
                found = true;
        if (!found) verror(v, f->loc, "in @%s: update group '%s' owns no parameter", fname, g ? g : "");
    }
    /* A batch function runs training functions of the module, each once, and
     * minimises no loss of its own. */
    for (size_t i = 0; i < vec_len(f->steps); i++) {
        const char *s = f->steps[i] ? f->steps[i] : "";
        const struct ir_func *t = ir_func_find(v->m, s);
        if (!t || t->mode != MODE_TRAIN || !t->loss || vec_len(t->steps))
            verror(v, f->loc, "in @%s: step '%s' is not a training function of the module", fname, s);
        for (size_t j = 0; j < i; j++)
            if (f->steps[j] && strcmp(f->steps[j], s) == 0)
                verror(v, f->loc, "in @%s: step '%s' is listed twice", fname, s);
    }
    if (vec_len(f->steps) && (f->mode != MODE_TRAIN || f->loss || f->optim.kind))
        verror(v, f->loc, "in @%s: a batch function (steps=) is a train function without a loss or optimizer",
               fname);
    v->f = NULL;
}

bool ir_verify(struct ir_module *m) {
    struct verifier v = {m, NULL, true};
    check_buffers(&v);
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        struct ir_func *f = m->funcs[i];
        for (size_t j = 0; j < i; j++)
            if (f->name && m->funcs[j]->name && strcmp(f->name, m->funcs[j]->name) == 0) {
                verror(&v, f->loc, "function @%s is defined twice", f->name);
                break;
            }
        check_func(&v, f);
    }
    return v.ok;
}
