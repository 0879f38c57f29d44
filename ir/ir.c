/* ir/ir.c -- the op table built from ops.def (names, arity, attribute schemas and
 * their slots), dtypes and shapes, and the IR data structures: modules, buffers,
 * functions, nodes, attribute access, dead-code removal and cloning. */
#include "ir/ir.h"

#include <ctype.h>
#include <string.h>

/* ------------------------------------------------------------ op table */

static const struct {
    const char *upper; /* the enum name, e.g. "CONV2D" */
    int arity;
    enum op_kind kind;
    unsigned flags;
    const char *schema; /* "stride:i2 pad:i4" */
} op_rows[OP_COUNT] = {
#define OP(name, arity, kind, flags, attrs) [OP_##name] = {#name, arity, kind, flags, attrs},
#include "ir/ops.def"
#undef OP
};

struct op_info op_info[OP_COUNT];
static char op_names[OP_COUNT][32];

/* attrs.def: each id's text name and kind letter. */
static const struct {
    const char *text;
    char kind; /* 'i', 'v' or 'f' */
} attr_rows[AID_COUNT] = {
#define ATTR(id, text, kind) [AID_##id] = {text, #kind[0]},
#include "ir/attrs.def"
#undef ATTR
};

/* The kind letter of attrs.def that a schema kind is read through. */
static char attr_kind_letter(enum attr_kind k) {
    return k == AK_INT ? 'i' : k == AK_FLOAT ? 'f' : k == AK_STR ? 's' : 'v';
}

/* Map each attribute of the op's schema onto its attrs.def id. */
static void schema_ids(enum op op) {
    struct op_info *info = &op_info[op];
    memset(info->attr_of, -1, sizeof info->attr_of);
    for (int i = 0; i < info->nattrs; i++) {
        const struct attr_desc *a = &info->attrs[i];
        if (a->kind == AK_STR) continue; /* the symbol, n->sym */
        int id = 0;
        while (id < AID_COUNT &&
               !(strcmp(attr_rows[id].text, a->name) == 0 && attr_rows[id].kind == attr_kind_letter(a->kind)))
            id++;
        if (id == AID_COUNT)
            netc_internal_error(__FILE__, __LINE__, "attribute '%s' of op %s is not in attrs.def", a->name,
                                op_rows[op].upper);
        info->attr_of[id] = (signed char)i;
    }
}

/* Parse one schema string into descriptors with slots. A malformed schema is a
 * bug in ops.def, caught the first time any netc binary starts. */
static void schema_parse(enum op op, const char *s) {
    struct op_info *info = &op_info[op];
    int islot = 0, fslot = 0;
    while (*s) {
        while (*s == ' ') s++;
        if (!*s) break;
        const char *colon = strchr(s, ':');
        if (!colon || info->nattrs == IR_MAX_ATTRS)
            netc_internal_error(__FILE__, __LINE__, "bad schema for op %s", op_rows[op].upper);
        struct attr_desc *a = &info->attrs[info->nattrs++];
        size_t n = (size_t)(colon - s);
        char *name = malloc(n + 1);
        if (!name) exit(1);
        memcpy(name, s, n);
        name[n] = '\0';
        a->name = name;
        s = colon + 1;
        switch (*s++) {
        case 'i':
            if (*s == '*') {
                s++;
                a->kind = AK_LIST, a->count = IR_MAX_LIST, a->slot = islot;
                islot += 1 + IR_MAX_LIST;
            } else if (isdigit((unsigned char)*s)) {
                a->kind = AK_INTS, a->count = (int)strtol(s, (char **)&s, 10), a->slot = islot;
                islot += a->count;
            } else {
                a->kind = AK_INT, a->count = 1, a->slot = islot++;
            }
            break;
        case 'f':
            a->kind = AK_FLOAT, a->count = 1, a->slot = fslot++;
            break;
        case 's':
            a->kind = AK_STR, a->count = 1, a->slot = 0;
            break;
        default:
            netc_internal_error(__FILE__, __LINE__, "bad schema for op %s", op_rows[op].upper);
        }
        if (islot > IR_MAX_IATTR || fslot > IR_MAX_FATTR)
            netc_internal_error(__FILE__, __LINE__, "too many attribute slots for op %s", op_rows[op].upper);
    }
}

__attribute__((constructor)) static void op_table_init(void) {
    for (int op = 0; op < OP_COUNT; op++) {
        const char *u = op_rows[op].upper;
        size_t i = 0;
        for (; u[i] && i + 1 < sizeof op_names[op]; i++) op_names[op][i] = (char)tolower((unsigned char)u[i]);
        op_names[op][i] = '\0';
        op_info[op].name = op_names[op];
        op_info[op].arity = op_rows[op].arity;
        op_info[op].kind = op_rows[op].kind;
        op_info[op].flags = op_rows[op].flags;
        schema_parse((enum op)op, op_rows[op].schema);
        schema_ids((enum op)op);
    }
}

int op_lookup(const char *name) {
    for (int op = 0; op < OP_COUNT; op++)
        if (strcmp(op_info[op].name, name) == 0) return op;
    return -1;
}

const struct attr_desc *op_attr(enum op op, const char *name) {
    const struct op_info *info = &op_info[op];
    for (int i = 0; i < info->nattrs; i++)
        if (strcmp(info->attrs[i].name, name) == 0) return &info->attrs[i];
    return NULL;
}

/* ------------------------------------------------------- types, shapes */

static const char *const dtype_names[DT_COUNT] = {"f32", "i32", "f16", "bf16", "i8"};
static const size_t dtype_sizes[DT_COUNT] = {4, 4, 2, 2, 1};

const char *dtype_name(enum dtype t) { return (unsigned)t < DT_COUNT ? dtype_names[t] : "?"; }
size_t dtype_size(enum dtype t) { return (unsigned)t < DT_COUNT ? dtype_sizes[t] : 0; }

int dtype_lookup(const char *name) {
    for (int t = 0; t < DT_COUNT; t++)
        if (strcmp(dtype_names[t], name) == 0) return t;
    return -1;
}

bool shape_equal(const struct shape *a, const struct shape *b) {
    if (a->rank != b->rank) return false;
    for (int i = 0; i < a->rank; i++)
        if (a->dim[i] != b->dim[i]) return false;
    return true;
}

bool shape_has_n(const struct shape *s) {
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] == IR_DIM_N) return true;
    return false;
}

int64_t shape_static_numel(const struct shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++)
        if (s->dim[i] != IR_DIM_N) n *= s->dim[i];
    return n;
}

bool shape_numel_ok(const struct shape *s) {
    int64_t n = 1;
    for (int i = 0; i < s->rank; i++) {
        if (s->dim[i] == IR_DIM_N) continue;
        if (s->dim[i] < 0 || s->dim[i] > IR_MAX_NUMEL) return false;
        n *= s->dim[i]; /* both <= 2^31 */
        if (n > IR_MAX_NUMEL) return false;
    }
    return true;
}

char *type_str(const struct type *t, char *buf, size_t len) {
    size_t o = (size_t)snprintf(buf, len, "%s[", dtype_name(t->dtype));
    for (int i = 0; i < t->shape.rank && o < len; i++) {
        if (t->shape.dim[i] == IR_DIM_N)
            o += (size_t)snprintf(buf + o, len - o, "%sN", i ? "," : "");
        else
            o += (size_t)snprintf(buf + o, len - o, "%s%lld", i ? "," : "", (long long)t->shape.dim[i]);
    }
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

/* ------------------------------------------------------------- modules */

struct ir_module *ir_module_new(const char *name) {
    struct arena *a = arena_new();
    struct ir_module *m = arena_alloc(a, sizeof *m);
    m->arena = a;
    m->name = arena_strdup(a, name ? name : "model");
    return m;
}

static void func_release(struct ir_func *f) {
    for (size_t i = 0; i < vec_len(f->nodes); i++) free(f->nodes[i].args);
    vec_free(f->nodes);
    vec_free(f->outputs);
    vec_free(f->update);
    vec_free(f->steps);
}

void ir_module_free(struct ir_module *m) {
    if (!m) return;
    for (size_t i = 0; i < vec_len(m->funcs); i++) func_release(m->funcs[i]);
    vec_free(m->funcs);
    vec_free(m->buffers);
    arena_free(m->arena);
}

int ir_buffer_add(struct ir_module *m, enum buf_kind kind, const char *name, struct type type,
                  struct loc loc) {
    struct ir_buffer b;
    memset(&b, 0, sizeof b);
    b.name = arena_strdup(m->arena, name);
    b.kind = kind;
    b.type = type;
    b.loc = loc;
    vec_push(m->buffers, b);
    return (int)vec_len(m->buffers) - 1;
}

struct ir_buffer *ir_buffer_find(struct ir_module *m, const char *name) {
    for (size_t i = 0; i < vec_len(m->buffers); i++)
        if (strcmp(m->buffers[i].name, name) == 0) return &m->buffers[i];
    return NULL;
}

struct ir_func *ir_func_add(struct ir_module *m, const char *name, enum func_mode mode) {
    struct ir_func *f = arena_alloc(m->arena, sizeof *f);
    f->name = arena_strdup(m->arena, name);
    f->mode = mode;
    vec_push(m->funcs, f);
    return f;
}

struct ir_func *ir_func_find(struct ir_module *m, const char *name) {
    for (size_t i = 0; i < vec_len(m->funcs); i++)
        if (strcmp(m->funcs[i]->name, name) == 0) return m->funcs[i];
    return NULL;
}

int ir_func_len(const struct ir_func *f) { return (int)vec_len(f->nodes); }

int ir_node_add(struct ir_module *m, struct ir_func *f, enum op op, const int *args, int nargs,
                struct loc loc) {
    (void)m;
    struct ir_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.nargs = nargs;
    n.loc = loc;
    if (nargs > 0) {
        n.args = malloc(sizeof *n.args * (size_t)nargs);
        if (!n.args) {
            fputs("netc: out of memory\n", stderr);
            exit(1);
        }
        memcpy(n.args, args, sizeof *n.args * (size_t)nargs);
    }
    vec_push(f->nodes, n);
    return (int)vec_len(f->nodes) - 1;
}

int ir_node_copy(struct ir_module *m, struct ir_func *f, const struct ir_node *src) {
    int id = ir_node_add(m, f, src->op, src->args, src->nargs, src->loc);
    struct ir_node *dst = &f->nodes[id];
    dst->type = src->type;
    memcpy(dst->ia, src->ia, sizeof dst->ia);
    memcpy(dst->fa, src->fa, sizeof dst->fa);
    dst->sym = src->sym;
    return id;
}

void ir_output_add(struct ir_module *m, struct ir_func *f, const char *name, int value) {
    struct ir_output o = {arena_strdup(m->arena, name), value};
    vec_push(f->outputs, o);
}

int ir_output_find(const struct ir_func *f, const char *name) {
    for (size_t i = 0; i < vec_len(f->outputs); i++)
        if (strcmp(f->outputs[i].name, name) == 0) return (int)i;
    return -1;
}

/* ---------------------------------------------------------- attributes */

int attr_id_lookup(const char *text, char kind) {
    for (int id = 0; id < AID_COUNT; id++)
        if (attr_rows[id].kind == kind && strcmp(attr_rows[id].text, text) == 0) return id;
    return -1;
}

/* The schema entry of attribute `id` of the node's op; an op without it is a bug. */
static const struct attr_desc *attr_need(const struct ir_node *n, enum attr_id id) {
    int i = op_info[n->op].attr_of[id];
    if (i < 0)
        netc_internal_error(__FILE__, __LINE__, "op %s has no attribute '%s' (%c)", op_info[n->op].name,
                            attr_rows[id].text, attr_rows[id].kind);
    return &op_info[n->op].attrs[i];
}

int64_t ir_attr_i(const struct ir_node *n, struct attr_i a) { return n->ia[attr_need(n, a.id)->slot]; }

double ir_attr_f(const struct ir_node *n, struct attr_f a) { return n->fa[attr_need(n, a.id)->slot]; }

const int64_t *ir_attr_v(const struct ir_node *n, struct attr_v a, int *count) {
    const struct attr_desc *d = attr_need(n, a.id);
    if (d->kind == AK_INTS) {
        if (count) *count = d->count;
        return &n->ia[d->slot];
    }
    if (count) *count = (int)n->ia[d->slot];
    return &n->ia[d->slot + 1];
}

void ir_attr_set_i(struct ir_node *n, struct attr_i a, int64_t v) { n->ia[attr_need(n, a.id)->slot] = v; }

void ir_attr_set_f(struct ir_node *n, struct attr_f a, double v) { n->fa[attr_need(n, a.id)->slot] = v; }

void ir_attr_set_v(struct ir_node *n, struct attr_v a, const int64_t *v, int count) {
    const struct attr_desc *d = attr_need(n, a.id);
    if (d->kind == AK_INTS) {
        NETC_ASSERT(count == d->count);
        memcpy(&n->ia[d->slot], v, sizeof *v * (size_t)count);
    } else {
        NETC_ASSERT(count >= 0 && count <= IR_MAX_LIST);
        n->ia[d->slot] = count;
        if (count) memcpy(&n->ia[d->slot + 1], v, sizeof *v * (size_t)count);
    }
}

void ir_set_sym(struct ir_module *m, struct ir_node *n, const char *sym) {
    n->sym = arena_strdup(m->arena, sym);
}

/* ------------------------------------------------------- whole-function */

int ir_func_dce(struct ir_func *f) {
    int n = ir_func_len(f);
    if (n == 0) return 0;
    char *live = calloc((size_t)n, 1);
    int *remap = malloc(sizeof *remap * (size_t)n);
    if (!live || !remap) exit(1);
    for (size_t i = 0; i < vec_len(f->outputs); i++) live[f->outputs[i].value] = 1;
    for (int i = 0; i < n; i++)
        if (op_info[f->nodes[i].op].flags & OF_EFFECT) live[i] = 1;
    for (int i = n - 1; i >= 0; i--)
        if (live[i])
            for (int a = 0; a < f->nodes[i].nargs; a++) live[f->nodes[i].args[a]] = 1;
    int k = 0;
    for (int i = 0; i < n; i++) {
        if (!live[i]) {
            free(f->nodes[i].args);
            remap[i] = -1;
            continue;
        }
        struct ir_node node = f->nodes[i];
        for (int a = 0; a < node.nargs; a++) node.args[a] = remap[node.args[a]];
        remap[i] = k;
        f->nodes[k++] = node;
    }
    for (size_t i = 0; i < vec_len(f->outputs); i++) f->outputs[i].value = remap[f->outputs[i].value];
    int removed = n - k;
    vec_hdr_(f->nodes)->len = (size_t)k;
    free(live);
    free(remap);
    return removed;
}

struct ir_func *ir_func_clone(struct ir_module *m, const struct ir_func *f, const char *name) {
    struct ir_func *c = ir_func_add(m, name, f->mode);
    c->loss = f->loss;
    c->optim = f->optim;
    c->loc = f->loc;
    for (size_t i = 0; i < vec_len(f->update); i++) vec_push(c->update, f->update[i]);
    for (size_t i = 0; i < vec_len(f->steps); i++) vec_push(c->steps, f->steps[i]);
    for (int i = 0; i < ir_func_len(f); i++) {
        const struct ir_node *src = &f->nodes[i];
        int id = ir_node_copy(m, c, src); /* it may move c->nodes */
        c->nodes[id].kernel = src->kernel;
        c->nodes[id].mem = src->mem;
    }
    c->planned = f->planned, c->ws_fixed = f->ws_fixed, c->ws_batch = f->ws_batch;
    for (size_t i = 0; i < vec_len(f->outputs); i++) vec_push(c->outputs, f->outputs[i]);
    return c;
}
