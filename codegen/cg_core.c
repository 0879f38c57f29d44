/* codegen/cg_core.c -- the core the C-like backends (C, OpenCL) share, so that each
 * keeps only what it spells differently: loop nests and their index arithmetic,
 * $-operand substitution, the elementwise formulas of codegen/formulas.def
 * rendered in a target's spelling (struct cg_lang), the arrays and element
 * expressions of a fused kernel, convolution operand roles, runtime library calls
 * (GEMM, convolution, pooling, upsampling, recurrent geometry), node comments and
 * the canonical text that finds identical functions. Sections: helpers, nests,
 * formulas, kernels, library ops, text. */
#include "codegen/codegen.h"

#include <string.h>

const struct cg_lang cg_lang_c = {"C", CG_DIALECT_C, "nrt_", "", 'v', "double", "int64_t"};
const struct cg_lang cg_lang_opencl = {"OpenCL", CG_DIALECT_OPENCL, "nrt_cl_", "ctx, ", 'o', "acc_t", "long"};

/* ------------------------------------------------------------- helpers */

const char *cg_xs(struct cgc_x x) {
    static char ring[16][CGC_XSTR_MAX];
    static int next;
    char *b = ring[next++ % 16];
    return cgc_xstr(x, b, CGC_XSTR_MAX);
}

const char *cg_fs(double v) {
    static char ring[8][CGC_FLOAT_MAX];
    static int next;
    char *b = ring[next++ % 8];
    return cgc_float(v, b, CGC_FLOAT_MAX);
}

static struct cgc_x xk(int64_t k) { return (struct cgc_x){k, false}; }
static const struct shape *arg_shape(const struct cgc *c, int id, int i) {
    return &cgc_arg(c, id, i)->type.shape;
}
static int arg(const struct cgc *c, int id, int i) { return cgc_node(c, id)->args[i]; }

static const struct cg_lang *lang(const struct cgc *c) {
    NETC_ASSERT(c->lang != NULL);
    return c->lang;
}

/* --------------------------------------------------------------- nests */

void cg_nest_init(struct cg_nest *ns, const struct shape *y, int nops) {
    NETC_ASSERT(nops <= CG_NEST_OPS);
    *ns = (struct cg_nest){.rank = y->rank, .nops = nops};
    for (int d = 0; d < ns->rank; d++) ns->dim[d] = cgc_dim(y, d);
    cgc_strides(y, ns->st[0]);
}

void cg_nest_read(struct cg_nest *ns, int j, const struct shape *x, const struct shape *y, int axis) {
    if (axis < 0)
        cgc_strides_into(x, y, ns->st[j]);
    else
        for (int d = 0; d < ns->rank; d++) ns->st[j][d] = xk(d == axis ? 1 : 0);
}

void cg_nest_merge(struct cg_nest *ns) {
    for (int i = ns->rank - 2; i >= 0; i--) {
        bool ok = true;
        for (int j = 0; j < ns->nops && ok; j++)
            ok = cgc_x_equal(ns->st[j][i], cgc_mul(ns->st[j][i + 1], ns->dim[i + 1]));
        if (!ok) continue;
        ns->dim[i + 1] = cgc_mul(ns->dim[i], ns->dim[i + 1]);
        for (int k = i; k < ns->rank - 1; k++) {
            ns->dim[k] = ns->dim[k + 1];
            for (int j = 0; j < ns->nops; j++) ns->st[j][k] = ns->st[j][k + 1];
        }
        ns->rank--;
    }
}

void cg_nest_index(struct cg_nest *ns) {
    for (int j = 0; j < ns->nops; j++) {
        char *p = ns->idx[j];
        size_t len = sizeof ns->idx[j], k = 0;
        p[0] = '\0';
        for (int d = 0; d < ns->rank; d++) {
            struct cgc_x s = ns->st[j][d];
            if (s.k == 0) continue;
            if (s.k == 1 && !s.n)
                k += (size_t)snprintf(p + k, len - k, "%si%d", k ? " + " : "", d);
            else
                k += (size_t)snprintf(p + k, len - k, "%si%d * (%s)", k ? " + " : "", d, cg_xs(s));
            if (k >= len) NETC_INTERNAL("the index of array %d is longer than %zu characters", j, len - 1);
        }
        if (!k) snprintf(p, len, "0");
    }
}

bool cg_nest_row_sum(struct cg_nest *ns, struct cgc_x *len) {
    cg_nest_merge(ns);
    int r = ns->rank;
    if (r == 0 || ns->st[1][r - 1].k != 0 || !cgc_x_equal(ns->st[0][r - 1], xk(1))) return false;
    *len = ns->dim[r - 1];
    if (!len->n && len->k < CG_SUM_LANES) return false;
    ns->rank = r - 1;
    return true;
}

struct cgc_x cg_nest_total(const struct cg_nest *ns) {
    struct cgc_x total = xk(1);
    for (int d = 0; d < ns->rank; d++) total = cgc_mul(total, ns->dim[d]);
    return total;
}

void cg_subst(char *out, size_t len, const char *tmpl, char ops[][CG_OPERAND_MAX], int nops) {
    size_t k = 0;
    for (const char *p = tmpl; *p; p++) {
        if (*p == '$' && p[1] >= '0' && p[1] - '0' < nops) {
            k += (size_t)snprintf(out + k, len - k, "%s", ops[p[1] - '0']);
            p++;
        } else if (k + 1 < len) {
            out[k++] = *p;
        } else {
            k = len;
        }
        if (k >= len) NETC_INTERNAL("a fused expression is longer than %zu characters", len - 1);
    }
    out[k] = '\0';
}

/* ------------------------------------------------------------ formulas */

/* codegen/formulas.def as tables: per op its templates, per math function its
 * spelling per dialect. */
struct formula {
    const char *select; /* NULL, an int attribute, or "i32" */
    const char *t[2];   /* the templates (t[1] NULL without select) */
};

static const struct formula formulas[OP_COUNT] = {
#define FORMULA(op, select, t0, t1) [OP_##op] = {select, {t0, t1}},
#define KFORMULA(op, t) [OP_##op] = {NULL, {t, NULL}},
#include "codegen/formulas.def"
};

static const struct {
    const char *name;     /* as written after '@' */
    const char *spell[2]; /* per dialect (CG_DIALECT_*) */
} maths[] = {
#define MATH(name, c, opencl) {#name, {c, opencl}},
#include "codegen/formulas.def"
};

/* The attribute a formula names in text (its select, a {attr}); one attrs.def
 * does not declare is a bug in formulas.def. */
static enum attr_id formula_attr(const struct ir_node *n, const char *text, char kind) {
    int id = attr_id_lookup(text, kind);
    if (id < 0)
        NETC_INTERNAL("the formula of %s names '%s', which attrs.def does not declare", op_info[n->op].name,
                      text);
    return (enum attr_id)id;
}

bool cg_formula(const struct ir_node *n, const struct cg_lang *l, char *out, size_t len) {
    const struct formula *fm = &formulas[n->op];
    if (!fm->t[0]) return false;
    bool alt = fm->select && (strcmp(fm->select, "i32") == 0
                                  ? n->type.dtype == DT_I32
                                  : ir_attr_i(n, (struct attr_i){formula_attr(n, fm->select, 'i')}) != 0);
    const char *p = fm->t[alt];
    size_t k = 0;
    while (*p) {
        char word[32];
        size_t w = 0;
        const char *text = NULL;
        if (*p == '@' || *p == '{') { /* a math function or a float attribute */
            char open = *p++;
            while ((*p >= 'a' && *p <= 'z') || *p == '_') {
                if (w + 1 < sizeof word) word[w++] = *p;
                p++;
            }
            word[w] = '\0';
            if (open == '{') {
                NETC_ASSERT(*p == '}');
                p++;
                text = cg_fs(ir_attr_f(n, (struct attr_f){formula_attr(n, word, 'f')}));
            } else {
                for (size_t i = 0; i < sizeof maths / sizeof maths[0] && !text; i++)
                    if (strcmp(maths[i].name, word) == 0) text = maths[i].spell[l->dialect];
                if (!text)
                    NETC_INTERNAL("formula of %s calls @%s, which formulas.def does not spell",
                                  op_info[n->op].name, word);
            }
        }
        size_t tl = text ? strlen(text) : 1;
        if (k + tl >= len)
            NETC_INTERNAL("the formula of %s is longer than %zu characters", op_info[n->op].name, len - 1);
        if (text)
            memcpy(out + k, text, tl);
        else
            out[k] = *p++;
        k += tl;
    }
    out[k] = '\0';
    return true;
}

void cg_ewise_nest(const struct cgc *c, int id, int bias_axis, struct cg_nest *ns) {
    const struct ir_node *n = cgc_node(c, id);
    cg_nest_init(ns, &n->type.shape, 1 + n->nargs);
    for (int a = 0; a < n->nargs; a++)
        cg_nest_read(ns, 1 + a, arg_shape(c, id, a), &n->type.shape, a == 1 ? bias_axis : -1);
}

void cg_ewise_store(const struct cgc *c, int id, const struct cg_nest *ns, char *line, size_t len) {
    const struct ir_node *n = cgc_node(c, id);
    const struct cg_lang *l = lang(c);
    bool i32 = n->type.dtype == DT_I32;
    char tmpl[CGC_TMPL_MAX], ops[CG_NEST_OPS][CG_OPERAND_MAX], expr[2048];
    if (!cg_formula(n, l, tmpl, sizeof tmpl)) NETC_INTERNAL("%s has no formula", op_info[n->op].name);
    for (int a = 0; a < n->nargs; a++)
        snprintf(ops[a], sizeof ops[a], "%s%s%sv%d[%s]", i32 ? "(" : "", i32 ? l->acc : "", i32 ? ")" : "",
                 n->args[a], ns->idx[1 + a]);
    cg_subst(expr, sizeof expr, tmpl, ops, n->nargs);
    if (i32)
        snprintf(line, len, "v%d[%s] = nrt_to_i32(%s);", id, ns->idx[0], expr);
    else
        snprintf(line, len, "v%d[%s] = %s;", id, ns->idx[0], expr);
}

void cg_row_lse(FILE *out, const char *pad, const struct cg_lang *l, const char *cls) {
    fprintf(out, "%sfloat mx = xr[0];\n", pad);
    fprintf(out, "%sfor (%s j = 1; j < %s; j++) mx = xr[j] > mx ? xr[j] : mx;\n", pad, l->idx, cls);
    fprintf(out, "%s%s se = 0;\n", pad, l->acc);
    fprintf(out, "%sfor (%s j = 0; j < %s; j++) se += exp((%s)xr[j] - mx);\n", pad, l->idx, cls, l->acc);
    fprintf(out, "%sconst %s lse = isinf(mx) ? mx : mx + log(se);\n", pad, l->acc);
}

/* ------------------------------------------------------------- kernels */

struct cg_access cg_access_of(const struct cgc *c, int m, int a) {
    const struct ir_node *n = cgc_node(c, m);
    struct cg_access x = {n->args[a], -1};
    if (n->op == OP_BIAS_ADD && a == 1) x.bias = (int)ir_attr_i(n, ATTR_AXIS);
    if (n->op == OP_BATCHNORM && a >= 1) x.bias = 1; /* gamma, beta, mean, var: per channel */
    return x;
}

bool cg_in_register(const struct cgc *c, const struct cgc_kernel *k, int m, int a) {
    int x = cgc_node(c, m)->args[a];
    return x != k->head && c->vals[x].kernel >= 0 && c->vals[x].kernel == c->vals[k->root].kernel;
}

int cg_kernel_accesses(const struct cgc *c, const struct cgc_kernel *k, struct cg_access *acc, int max) {
    int nacc = 0;
    for (size_t i = 0; i < vec_len(k->members); i++) {
        int m = k->members[i];
        if (m == k->head) continue;
        for (int a = 0; a < cgc_node(c, m)->nargs; a++) {
            if (cg_in_register(c, k, m, a)) continue;
            struct cg_access x = cg_access_of(c, m, a);
            bool dup = false;
            for (int j = 0; j < nacc && !dup; j++) dup = acc[j].value == x.value && acc[j].bias == x.bias;
            if (dup) continue;
            if (nacc == max) return max + 1;
            acc[nacc++] = x;
        }
    }
    return nacc;
}

int cg_kernel_nest(const struct cgc *c, const struct cgc_kernel *k, struct cg_nest *ns,
                   struct cg_access *acc) {
    const struct shape *y = &cgc_node(c, k->root)->type.shape;
    int nacc = cg_kernel_accesses(c, k, acc, CG_NEST_OPS - 1);
    NETC_ASSERT(nacc <= CG_NEST_OPS - 1);
    cg_nest_init(ns, y, 1 + nacc);
    for (int j = 0; j < nacc; j++)
        cg_nest_read(ns, 1 + j, &cgc_node(c, acc[j].value)->type.shape, y, acc[j].bias);
    cg_nest_merge(ns);
    return nacc;
}

void cg_kernel_expr(const struct cgc *c, const struct cgc_kernel *k, int m, const struct cg_nest *ns,
                    const struct cg_access *acc, char *expr, size_t len) {
    const struct ir_node *n = cgc_node(c, m);
    char ops[CG_NEST_OPS][CG_OPERAND_MAX], tmpl[CGC_TMPL_MAX];
    if (!cg_formula(n, lang(c), tmpl, sizeof tmpl))
        NETC_INTERNAL("kernel member %d (%s) has no formula", m, op_info[n->op].name);
    for (int a = 0; a < n->nargs && a < CG_NEST_OPS; a++) {
        if (cg_in_register(c, k, m, a)) {
            snprintf(ops[a], sizeof ops[a], "t%d", n->args[a]);
            continue;
        }
        struct cg_access x = cg_access_of(c, m, a);
        int j = 0;
        while (acc[j].value != x.value || acc[j].bias != x.bias) j++;
        snprintf(ops[a], sizeof ops[a], "v%d[%s]", x.value, ns->idx[1 + j]);
    }
    cg_subst(expr, len, tmpl, ops, n->nargs);
}

int cg_kernel_line(const struct cgc *c, const struct cgc_kernel *k, size_t i, const struct cg_nest *ns,
                   const struct cg_access *acc, char *line, size_t len) {
    int m = k->members[i];
    if (m == k->head) return -1;
    char expr[2048];
    cg_kernel_expr(c, k, m, ns, acc, expr, sizeof expr);
    snprintf(line, len, "const float t%d = %s;", m, expr);
    return m;
}

/* ---------------------------------------------------------- library ops */

void cg_conv_roles(const struct ir_func *f, const struct ir_node *n, const struct shape **x,
                   const struct shape **w, const struct shape **y) {
    const struct shape *a0 = &f->nodes[n->args[0]].type.shape, *a1 = &f->nodes[n->args[1]].type.shape;
    switch (n->op) {
    case OP_CONV2D:
        *x = a0, *w = a1, *y = &n->type.shape;
        break;
    case OP_CONV2D_GRAD_INPUT:
        *x = &n->type.shape, *w = a1, *y = a0;
        break;
    case OP_CONV2D_GRAD_WEIGHT:
    case OP_CONV2D_GRAD_WEIGHT_MAXPOOL: /* (x, y, dp) */
        *x = a0, *w = &n->type.shape, *y = a1;
        break;
    default:
        *x = &n->type.shape, *w = a1, *y = a0;
        break; /* CONV_TRANSPOSE2D */
    }
}

/* The runtime's default chunk, or the batch when it is static and smaller, so
 * the fixed scratch never exceeds NRT_CONV_CHUNK_FLOATS by much. */
int64_t cg_conv_chunk(const struct ir_func *f, const struct ir_node *n, int64_t *per) {
    const struct shape *x, *w, *y;
    cg_conv_roles(f, n, &x, &w, &y);
    struct nrt_conv geo = {.n = 1,
                           .ci = x->dim[1],
                           .co = w->dim[0],
                           .kh = w->dim[2],
                           .kw = w->dim[3],
                           .ho = y->dim[2],
                           .wo = y->dim[3],
                           .g = ir_attr_i(n, ATTR_GROUPS)};
    *per = nrt_conv_image_floats(&geo);
    int64_t chunk = nrt_conv_chunk(&geo);
    struct cgc_x batch = cgc_dim(x, 0);
    if (!batch.n && batch.k >= 1 && batch.k < chunk) chunk = batch.k;
    return chunk;
}

struct nrt_conv cg_conv_geo(const struct ir_func *f, const struct ir_node *n) {
    const struct shape *x, *w, *y;
    cg_conv_roles(f, n, &x, &w, &y);
    const int64_t *s = ir_attr_v(n, ATTR_STRIDE, NULL), *p = ir_attr_v(n, ATTR_PAD, NULL);
    const int64_t *d = ir_attr_v(n, ATTR_DILATION, NULL);
    struct nrt_conv geo = {.n = 1,
                           .ci = x->dim[1],
                           .h = x->dim[2],
                           .w = x->dim[3],
                           .co = w->dim[0],
                           .kh = w->dim[2],
                           .kw = w->dim[3],
                           .ho = y->dim[2],
                           .wo = y->dim[3],
                           .g = ir_attr_i(n, ATTR_GROUPS),
                           .s = {s[0], s[1]},
                           .p = {p[0], p[1], p[2], p[3]},
                           .d = {d[0], d[1]}};
    return geo;
}

/* Scratch floats of conv node n: its chunk's (cg_conv_chunk) or what the
 * runtime's Winograd kernels need for the layer, whichever is more
 * (nrt_conv_scratch_floats: the runtime sizes its tasks by the same). */
int64_t cg_conv_scratch(const struct ir_func *f, const struct ir_node *n) {
    int64_t per;
    struct nrt_conv geo = cg_conv_geo(f, n);
    geo.chunk = cg_conv_chunk(f, n, &per);
    return nrt_conv_scratch_floats(&geo);
}

bool cg_pool_grad_weight_fast(const struct ir_func *f, const struct ir_node *gw, const struct ir_node *pg) {
    const int64_t *pk = ir_attr_v(pg, ATTR_KERNEL, NULL), *ps = ir_attr_v(pg, ATTR_STRIDE, NULL);
    const int64_t *pp = ir_attr_v(pg, ATTR_PAD, NULL);
    const struct shape *y = &pg->type.shape, *dp = &f->nodes[pg->args[1]].type.shape;
    if (!pk || !ps || y->rank != 4 || dp->rank != 4) return false;
    static const int64_t nopad[4] = {0, 0, 0, 0};
    if (!pp) pp = nopad;
    struct nrt_conv geo = cg_conv_geo(f, gw);
    struct nrt_pool pgeo = {y->dim[1],  y->dim[2],      y->dim[3],      dp->dim[2],
                            dp->dim[3], {pk[0], pk[1]}, {ps[0], ps[1]}, {pp[0], pp[1], pp[2], pp[3]}};
    return nrt_conv2d_grad_weight_maxpool_fast(&geo, &pgeo);
}

void cg_lib_matmul(struct cgc *c, int id) {
    const struct cg_lang *l = lang(c);
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *a = arg_shape(c, id, 0), *b = arg_shape(c, id, 1), *y = &n->type.shape;
    bool ta = ir_attr_i(n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(n, ATTR_TRANSPOSE_B) != 0;
    char v = l->val;
    if (y->rank > 2) {
        char g[CGC_BGEMM_MAX];
        cgc_emit(c, "%ssgemm_batch(%s%s, 1.0f, %c%d, %c%d, 0.0f, %c%d);", l->lib, l->ctx,
                 cgc_bgemm(a, b, y, ta, tb, g, sizeof g), v, arg(c, id, 0), v, arg(c, id, 1), v, id);
        return;
    }
    cgc_emit(c, "%ssgemm(%s%d, %d, %s, %s, %s, 1.0f, %c%d, %s, %c%d, %s, 0.0f, %c%d, %s);", l->lib, l->ctx,
             ta, tb, cg_xs(cgc_dim(y, 0)), cg_xs(cgc_dim(y, 1)), cg_xs(cgc_dim(a, ta ? 0 : 1)), v,
             arg(c, id, 0), cg_xs(cgc_dim(a, 1)), v, arg(c, id, 1), cg_xs(cgc_dim(b, 1)), v, id,
             cg_xs(cgc_dim(y, 1)));
}

/* With ta and no tb the batch items stack along the contraction: one GEMM with
 * k = items * rows; otherwise one GEMM per item, accumulating. */
void cg_lib_matmul_bsum(struct cgc *c, int id) {
    const struct cg_lang *l = lang(c);
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *a = arg_shape(c, id, 0), *b = arg_shape(c, id, 1), *y = &n->type.shape;
    bool ta = ir_attr_i(n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(n, ATTR_TRANSPOSE_B) != 0;
    int ra = a->rank, rb = b->rank;
    struct cgc_x items = cgc_dims_prod(a, 0, ra - 2), k = cgc_dim(a, ta ? ra - 2 : ra - 1);
    char v = l->val;
    if (ta && !tb) {
        cgc_emit(c, "%ssgemm(%s1, 0, %s, %s, %s, 1.0f, %c%d, %s, %c%d, %s, 0.0f, %c%d, %s);", l->lib, l->ctx,
                 cg_xs(cgc_dim(y, 0)), cg_xs(cgc_dim(y, 1)), cg_xs(cgc_mul(items, k)), v, arg(c, id, 0),
                 cg_xs(cgc_dim(a, ra - 1)), v, arg(c, id, 1), cg_xs(cgc_dim(b, rb - 1)), v, id,
                 cg_xs(cgc_dim(y, 1)));
        return;
    }
    struct cgc_x ma = cgc_dims_prod(a, ra - 2, ra), mb = cgc_dims_prod(b, rb - 2, rb);
    cgc_emit(c, "for (int64_t q = 0; q < %s; q++)", cg_xs(items));
    cgc_emit(c,
             "    %ssgemm(%s%d, %d, %s, %s, %s, 1.0f, %c%d + q * %s, %s, %c%d + q * %s, %s, q ? 1.0f : 0.0f, "
             "%c%d, %s);",
             l->lib, l->ctx, ta, tb, cg_xs(cgc_dim(y, 0)), cg_xs(cgc_dim(y, 1)), cg_xs(k), v, arg(c, id, 0),
             cg_xs(ma), cg_xs(cgc_dim(a, ra - 1)), v, arg(c, id, 1), cg_xs(mb), cg_xs(cgc_dim(b, rb - 1)), v,
             id, cg_xs(cgc_dim(y, 1)));
}

void cg_block_open(struct cgc *c) {
    cgc_emit(c, "{");
    c->indent++;
}

void cg_block_close(struct cgc *c) {
    c->indent--;
    cgc_emit(c, "}");
}

/* `const struct nrt_conv geo = {...};` for conv node n with input x, weights
 * w and output y (cg_conv_roles) and a scratch chunk of that many images. */
static void emit_conv_geo(struct cgc *c, const struct ir_node *n, const struct shape *x,
                          const struct shape *w, const struct shape *y, int64_t chunk) {
    const int64_t *s = ir_attr_v(n, ATTR_STRIDE, NULL), *p = ir_attr_v(n, ATTR_PAD, NULL);
    const int64_t *d = ir_attr_v(n, ATTR_DILATION, NULL);
    cgc_emit(c,
             "const struct nrt_conv geo = {%s, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, %lld, {%lld, "
             "%lld}, {%lld, %lld, %lld, %lld}, {%lld, %lld}, %lld};",
             cg_xs(cgc_dim(x, 0)), (long long)x->dim[1], (long long)x->dim[2], (long long)x->dim[3],
             (long long)w->dim[0], (long long)w->dim[2], (long long)w->dim[3], (long long)y->dim[2],
             (long long)y->dim[3], (long long)ir_attr_i(n, ATTR_GROUPS), (long long)s[0], (long long)s[1],
             (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3], (long long)d[0],
             (long long)d[1], (long long)chunk);
}

/* conv2d, its gradients and conv_transpose2d (the adjoint of conv2d: the
 * input gradient with the roles swapped), on the geometry and the chunk the
 * memory plan sized the scratch s<id> for (cgc_op_scratch). */
void cg_lib_conv(struct cgc *c, int id) { cg_lib_conv_ep(c, id, -1, false, -1, -1); }

void cg_lib_conv_ep(struct cgc *c, int id, int bias, bool relu, int pool, int leaky) {
    const struct cg_lang *l = lang(c);
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *x, *w, *y;
    cg_conv_roles(c->f, n, &x, &w, &y);
    int64_t per, chunk = cg_conv_chunk(c->f, n, &per);
    const char *fn = n->op == OP_CONV2D               ? "conv2d"
                     : n->op == OP_CONV2D_GRAD_WEIGHT ? "conv2d_grad_weight"
                                                      : "conv2d_grad_input";
    cg_block_open(c);
    emit_conv_geo(c, n, x, w, y, chunk);
    /* Inference (C): Winograd allowed (not in training: see netrt.h). */
    bool wino = n->op == OP_CONV2D && l->dialect == CG_DIALECT_C && c->f->mode == MODE_EVAL;
    if (pool >= 0) {
        char b[32];
        snprintf(b, sizeof b, bias >= 0 ? "%c%d" : "NULL", l->val, bias);
        cgc_emit(c, "%sconv2d_bias_act_pool(%s&geo, %c%d, %c%d, %s, %s%s, %c%d, s%d);", l->lib, l->ctx,
                 l->val, arg(c, id, 0), l->val, arg(c, id, 1), b, relu ? "NRT_ACT_RELU" : "NRT_ACT_NONE",
                 wino ? " | NRT_CONV_WINOGRAD" : "", l->val, pool, id);
    } else if (leaky >= 0) {
        char b[32];
        snprintf(b, sizeof b, bias >= 0 ? "%c%d" : "NULL", l->val, bias);
        cgc_emit(c, "%sconv2d_bias_leaky(%s&geo, %c%d, %c%d, %s, %s, %s, %c%d, s%d);", l->lib, l->ctx, l->val,
                 arg(c, id, 0), l->val, arg(c, id, 1), b, cg_fs(ir_attr_f(cgc_node(c, leaky), ATTR_ALPHA)),
                 wino ? "NRT_CONV_WINOGRAD" : "0", l->val, id, id);
    } else if (bias >= 0 || relu || wino) {
        char b[32];
        snprintf(b, sizeof b, bias >= 0 ? "%c%d" : "NULL", l->val, bias);
        cgc_emit(c, "%sconv2d_bias_act(%s&geo, %c%d, %c%d, %s, %s%s, %c%d, s%d);", l->lib, l->ctx, l->val,
                 arg(c, id, 0), l->val, arg(c, id, 1), b, relu ? "NRT_ACT_RELU" : "NRT_ACT_NONE",
                 wino ? " | NRT_CONV_WINOGRAD" : "", l->val, id, id);
    } else {
        cgc_emit(c, "%s%s(%s&geo, %c%d, %c%d, %c%d, s%d);", l->lib, fn, l->ctx, l->val, arg(c, id, 0), l->val,
                 arg(c, id, 1), l->val, id, id);
    }
    cg_block_close(c);
}

/* conv2d_grad_weight_maxpool (x, y, dp): the conv's geometry (one chunk: the
 * runtime takes no scratch), then the pooling's of y. */
void cg_lib_conv_grad_weight_maxpool(struct cgc *c, int id) {
    const struct cg_lang *l = lang(c);
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *x, *w, *y;
    cg_conv_roles(c->f, n, &x, &w, &y);
    const struct shape *dp = arg_shape(c, id, 2);
    const int64_t *pk = ir_attr_v(n, ATTR_POOL_KERNEL, NULL);
    const int64_t *ps = ir_attr_v(n, ATTR_POOL_STRIDE, NULL), *pp = ir_attr_v(n, ATTR_POOL_PAD, NULL);
    char v = l->val;
    cg_block_open(c);
    emit_conv_geo(c, n, x, w, y, 0);
    cgc_emit(c,
             "const struct nrt_pool pgeo = {%s, %lld, %lld, %lld, %lld, {%lld, %lld}, {%lld, %lld}, "
             "{%lld, %lld, %lld, %lld}};",
             cg_xs(cgc_dims_prod(y, 0, 2)), (long long)y->dim[2], (long long)y->dim[3], (long long)dp->dim[2],
             (long long)dp->dim[3], (long long)pk[0], (long long)pk[1], (long long)ps[0], (long long)ps[1],
             (long long)pp[0], (long long)pp[1], (long long)pp[2], (long long)pp[3]);
    cgc_emit(c, "%sconv2d_grad_weight_maxpool(%s&geo, &pgeo, %c%d, %c%d, %c%d, %c%d);", l->lib, l->ctx, v,
             arg(c, id, 0), v, arg(c, id, 1), v, arg(c, id, 2), v, id);
    cg_block_close(c);
}

/* max/avg pooling from x (operand 0) to y (the node, or the gradient's dy). */
void cg_lib_pool(struct cgc *c, int id) {
    const struct cg_lang *l = lang(c);
    const struct ir_node *n = cgc_node(c, id);
    bool grad = n->op == OP_MAXPOOL2D_GRAD || n->op == OP_AVGPOOL2D_GRAD;
    const struct shape *x = arg_shape(c, id, 0), *y = grad ? arg_shape(c, id, 1) : &n->type.shape;
    const int64_t *k = ir_attr_v(n, ATTR_KERNEL, NULL), *s = ir_attr_v(n, ATTR_STRIDE, NULL);
    const int64_t *p = ir_attr_v(n, ATTR_PAD, NULL);
    char args[64], v = l->val;
    if (n->op == OP_MAXPOOL2D_GRAD)
        snprintf(args, sizeof args, "%c%d, %c%d, %c%d", v, arg(c, id, 0), v, arg(c, id, 1), v, id);
    else
        snprintf(args, sizeof args, "%c%d, %c%d", v, arg(c, id, n->op == OP_AVGPOOL2D_GRAD ? 1 : 0), v, id);
    const char *fn = n->op == OP_MAXPOOL2D        ? "maxpool2d"
                     : n->op == OP_AVGPOOL2D      ? "avgpool2d"
                     : n->op == OP_MAXPOOL2D_GRAD ? "maxpool2d_grad"
                                                  : "avgpool2d_grad";
    cg_block_open(c);
    cgc_emit(c,
             "const struct nrt_pool geo = {%s, %lld, %lld, %lld, %lld, {%lld, %lld}, {%lld, %lld}, "
             "{%lld, %lld, %lld, %lld}};",
             cg_xs(cgc_dims_prod(x, 0, 2)), (long long)x->dim[2], (long long)x->dim[3], (long long)y->dim[2],
             (long long)y->dim[3], (long long)k[0], (long long)k[1], (long long)s[0], (long long)s[1],
             (long long)p[0], (long long)p[1], (long long)p[2], (long long)p[3]);
    cgc_emit(c, "%s%s(%s&geo, %s);", l->lib, fn, l->ctx, args);
    cg_block_close(c);
}

/* Nearest-neighbour upsampling (operand 0 the small image) and its gradient
 * (the node the small one). */
void cg_lib_upsample(struct cgc *c, int id) {
    const struct cg_lang *l = lang(c);
    const struct ir_node *n = cgc_node(c, id);
    bool grad = n->op == OP_UPSAMPLE2D_GRAD;
    const struct shape *small = grad ? &n->type.shape : arg_shape(c, id, 0);
    const int64_t *s = ir_attr_v(n, ATTR_FACTOR, NULL);
    cgc_emit(c, "%s%s(%s%s, %lld, %lld, %lld, %lld, %c%d, %c%d);", l->lib,
             grad ? "upsample2d_grad" : "upsample2d", l->ctx, cg_xs(cgc_dims_prod(small, 0, 2)),
             (long long)small->dim[2], (long long)small->dim[3], (long long)s[0], (long long)s[1], l->val,
             arg(c, id, 0), l->val, id);
}

void cg_rnn_geo(struct cgc *c, int id, int ws, int whh, int x) {
    const struct ir_node *n = cgc_node(c, id);
    const struct shape *w = ws < 0 ? &n->type.shape : arg_shape(c, id, ws), *wh = arg_shape(c, id, whh);
    long long f = x >= 0 ? (long long)arg_shape(c, id, x)->dim[2] : 0;
    char dws[64] = ", 0, 0"; /* rnn_bptt: the extent of dws (operand 2) */
    if (n->op == OP_RNN_BPTT)
        snprintf(dws, sizeof dws, ", %lld, %lld", (long long)arg_shape(c, id, 2)->dim[1],
                 (long long)arg_shape(c, id, 2)->dim[2]);
    cgc_emit(c, "const struct nrt_rnn geo = {%s, %lld, %lld, %lld, %d, %d%s};", cg_xs(cgc_dim(w, 0)),
             (long long)w->dim[1], f, (long long)wh->dim[1], (int)ir_attr_i(n, ATTR_CELL),
             (int)ir_attr_i(n, ATTR_REVERSE), dws);
}

/* ---------------------------------------------------------------- text */

void cg_file_head(FILE *out, const struct ir_module *m, const struct cg_options *opt, const char *what,
                  const char *about) {
    char name[128];
    fprintf(out, "/* %s.c -- model %s%s, generated by netc %s. Do not edit.\n",
            cg_comment_safe(m->name, name, sizeof name), name, what,
            opt->netc_version ? opt->netc_version : "");
    fputs(about, out);
    fputs("#include \"netrt.h\"\n\n", out);
}

const char *cg_comment_safe(const char *s, char *buf, size_t len) {
    size_t i = 0;
    for (; s && s[i] && i + 1 < len; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '_' || ch == '.' || ch == '-';
        buf[i] = ok ? ch : '_';
    }
    buf[i] = '\0';
    return buf;
}

void cg_node_comment(struct cgc *c, int id) {
    const struct ir_node *n = cgc_node(c, id);
    char line[512], ty[TYPE_STR_MAX], sym[128];
    int k = snprintf(line, sizeof line, "%%%d = %s", id, op_info[n->op].name);
    if (n->sym)
        k += snprintf(line + k, sizeof line - (size_t)k, " @%s", cg_comment_safe(n->sym, sym, sizeof sym));
    for (int a = 0; a < n->nargs && k < (int)sizeof line - 16; a++)
        k += snprintf(line + k, sizeof line - (size_t)k, "%s%%%d", a ? ", " : "(", n->args[a]);
    if (n->nargs && k < (int)sizeof line - 2) k += snprintf(line + k, sizeof line - (size_t)k, ")");
    if (k < (int)sizeof line - 4)
        snprintf(line + k, sizeof line - (size_t)k, " : %s", type_str(&n->type, ty, sizeof ty));
    cgc_emit(c, "/* %s */", line);
}

void cg_reserve(char **out, size_t *cap, size_t need) {
    while (need >= *cap) {
        char *grown = realloc(*out, *cap *= 2);
        if (!grown) netc_internal_error(__FILE__, __LINE__, "out of memory");
        *out = grown;
    }
}

static bool ident_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

char *cg_canonical(const char *text, const char *name, const char *prefixes) {
    size_t cap = strlen(text) + 1, at = 0, nlen = strlen(name);
    char *out = malloc(cap);
    long *ids = NULL; /* vec: the ids in order of first appearance */
    if (!out) netc_internal_error(__FILE__, __LINE__, "out of memory");
    bool pct = strchr(prefixes, '%') != NULL;
    for (const char *p = text; *p;) {
        bool start = p == text || !ident_char(p[-1]);
        if (start && strncmp(p, name, nlen) == 0) {
            cg_reserve(&out, &cap, at + 2);
            out[at++] = '@';
            p += nlen;
            continue;
        }
        bool prefix = *p == '%' ? pct : start && strchr(prefixes, *p) != NULL;
        if (prefix && p[1] >= '0' && p[1] <= '9') {
            const char *q = p + 1;
            long id = 0;
            while (*q >= '0' && *q <= '9') id = id * 10 + (*q++ - '0');
            if (!ident_char(*q)) {
                size_t pos = 0;
                while (pos < vec_len(ids) && ids[pos] != id) pos++;
                if (pos == vec_len(ids)) vec_push(ids, id);
                cg_reserve(&out, &cap, at + 24);
                at += (size_t)snprintf(out + at, cap - at, "%c%zu", *p, pos);
                p = q;
                continue;
            }
        }
        cg_reserve(&out, &cap, at + 2);
        out[at++] = *p++;
    }
    out[at] = '\0';
    vec_free(ids);
    return out;
}
