/* codegen/cl_ops.c -- the OpenCL backend's column of the op table: clc_op_<NAME>
 * prints one OpenCL C kernel for a node into the program source and the host C
 * that launches it. Elementwise ops take their formula from codegen/formulas.def
 * in OpenCL's spelling and run one work-item per element, decomposing the flat
 * index over a merged loop nest (cg_core.c); reductions,
 * softmax rows and losses run one work-item per row, or one work-group per row
 * (a tree in local memory) when rows are long; GEMM, convolution, pooling and
 * upsampling call the runtime's device library (cg_core.c's calls with
 * OpenCL's spelling). Semantics are the C backend's
 * (c_ops.c), which in turn follows the reference interpreter. Sections follow
 * ops.def; the last one builds fused kernels. */
#include "codegen/codegen.h"
#include "runtime/netrt.h" /* nrt_to_i32 of constants */

#include <ctype.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

void clc_src(struct clc *k, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vfprintf(k->src, fmt, ap);
    va_end(ap);
    fputc('\n', k->src);
}

int clc_kernel_name(struct clc *k, const char *fmt, ...) {
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    char *s = strdup(buf);
    if (!s) netc_internal_error(__FILE__, __LINE__, "out of memory");
    vec_push(k->names, s);
    return (int)vec_len(k->names) - 1;
}

static const struct ir_node *node(const struct clc *k, int id) { return cgc_node(&k->c, id); }
static const struct shape *shape_of(const struct clc *k, int id) { return &node(k, id)->type.shape; }
static const struct shape *arg_shape(const struct clc *k, int id, int i) {
    return &cgc_arg(&k->c, id, i)->type.shape;
}
static int arg(const struct clc *k, int id, int i) { return node(k, id)->args[i]; }
static bool is_i32(const struct clc *k, int id) { return node(k, id)->type.dtype == DT_I32; }
static struct cgc_x xk(int64_t v) { return (struct cgc_x){v, false}; }

/* ------------------------------------------------------ kernels and launches */

/* The values a kernel reads or writes, in parameter order, without repeats. */
#define MAX_VALS 64
struct kvals {
    int n;            /* values */
    int id[MAX_VALS]; /* their node ids */
};

static void kv_add(struct kvals *v, int id) {
    for (int i = 0; i < v->n; i++)
        if (v->id[i] == id) return;
    NETC_ASSERT(v->n < MAX_VALS);
    v->id[v->n++] = id;
}

/* The values of node id: itself, then its operands. */
static struct kvals kv_node(const struct clc *k, int id) {
    struct kvals v = {0, {0}};
    kv_add(&v, id);
    for (int a = 0; a < node(k, id)->nargs; a++) kv_add(&v, arg(k, id, a));
    return v;
}

/* Opens kernel `name` over values v (pointers v<id> of their element types);
 * `wg`: a work-group reduction kernel of NETC_WG work-items (a power of two
 * the runtime defines per device when it builds the program) with local arrays
 * redf (float), redd (acc_t) and redi (int). The kernel's text goes to a buffer
 * until kend. Returns -1: kend gives the launch index. */
static int kbegin(struct clc *k, const char *name, const struct kvals *v, bool wg, bool step) {
    snprintf(k->kname, sizeof k->kname, "%s", name);
    k->kv_n = v->n;
    for (int i = 0; i < v->n; i++) k->kv_id[i] = v->id[i];
    k->main_src = k->src;
    k->src = open_memstream(&k->kbuf, &k->kbuf_len);
    if (!k->src) netc_internal_error(__FILE__, __LINE__, "out of memory");
    char params[2048];
    size_t at = (size_t)snprintf(params, sizeof params, "__global float *A, long n");
    for (int i = 0; i < v->n && at < sizeof params; i++)
        at += (size_t)snprintf(params + at, sizeof params - at, ", long o%d", v->id[i]);
    if (step && at < sizeof params) snprintf(params + at, sizeof params - at, ", long step");
    clc_src(k, "%s", "");
    if (wg)
        clc_src(k, "__kernel __attribute__((reqd_work_group_size(NETC_WG, 1, 1)))");
    else
        clc_src(k, "__kernel");
    clc_src(k, "void @KERNEL@(%s)", params); /* the name goes in at kend */
    clc_src(k, "{");
    clc_src(k, "    (void)n;");
    for (int i = 0; i < v->n; i++) {
        const char *t = is_i32(k, v->id[i]) ? "int" : "float";
        clc_src(k, "    __global %s *const v%d = (__global %s *)(A + o%d);", t, v->id[i], t, v->id[i]);
    }
    if (wg) {
        clc_src(k, "    __local float redf[NETC_WG];");
        clc_src(k, "    __local acc_t redd[NETC_WG];");
        clc_src(k, "    __local int redi[NETC_WG];");
        clc_src(k, "    (void)redf, (void)redd, (void)redi;");
    }
    return -1;
}

/* Whether text reads a scalar operand: "v<id>[0]" never stored to. */
static bool reads_scalar(const char *text) {
    for (const char *p = strchr(text, 'v'); p; p = strchr(p + 1, 'v')) {
        int id = -1, len = 0;
        if ((p > text && (isalnum((unsigned char)p[-1]) || p[-1] == '_')) ||
            sscanf(p, "v%d[0]%n", &id, &len) != 1 || len == 0 || p[1] < '0' || p[1] > '9')
            continue;
        char tok[32];
        snprintf(tok, sizeof tok, "v%d[", id);
        bool stored = false;
        for (const char *q = strstr(text, tok); q && !stored; q = strstr(q + 1, tok)) {
            const char *e = strchr(q, ']');
            stored = (q == text || !(isalnum((unsigned char)q[-1]) || q[-1] == '_')) && e &&
                     strncmp(e, "] = ", 4) == 0;
        }
        if (!stored) return true;
    }
    return false;
}

/* An elementwise nest that reads a scalar operand (Adam's bias corrections
 * and rates), its body after the range guard `if (i >= N) return;` printed
 * twice: for work-groups wholly inside the range, unguarded, and for the
 * last one, guarded. Under the guard PoCL's vectorised work-group loop read
 * each scalar by a masked gather per vector (Adam's update of mnist_cnn's
 * 204,800 dense weights, 7 scalars: 1.2 ms a step; 0.2-0.4 ms split); the
 * branch on the group alone is the same for all its work-items, so the
 * unguarded loop has plain loads and broadcasts. Returns the new text
 * (malloc'd), or NULL: unchanged. */
static char *split_guard(const char *text) {
    static const char gid[] = "    const long i = get_global_id(0);\n    if (i >= ";
    const char *g = strstr(text, gid), *end = strrchr(text, '}');
    if (!g || !end || !reads_scalar(text)) return NULL;
    const char *x = g + strlen(gid), *xe = strstr(x, ") return;\n");
    if (!xe || memchr(x, '\n', (size_t)(xe - x))) return NULL;
    const char *body = xe + strlen(") return;\n");
    char *out = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&out, &len);
    if (!f) netc_internal_error(__FILE__, __LINE__, "out of memory");
    fprintf(f, "%.*s", (int)(x - text - strlen("    if (i >= ")), text); /* through gid's first line */
    fprintf(f, "    if ((long)(get_group_id(0) + 1) * (long)get_local_size(0) <= %.*s) {\n", (int)(xe - x),
            x);
    for (int pass = 0; pass < 2; pass++) {
        for (const char *l = body; l < end;) {
            const char *nl = memchr(l, '\n', (size_t)(end - l));
            const char *le = nl ? nl + 1 : end;
            fprintf(f, "    %.*s", (int)(le - l), l);
            l = le;
        }
        if (pass == 0) fprintf(f, "    } else if (i < %.*s) {\n", (int)(xe - x), x);
    }
    fprintf(f, "    }\n%s", end);
    if (fclose(f) != 0 || !out) netc_internal_error(__FILE__, __LINE__, "out of memory");
    return out;
}

/* Closes the kernel: the index of an identical kernel printed before, or the
 * kernel goes into the program under its name. Returns its launch index. */
static int kend(struct clc *k) {
    clc_src(k, "}");
    if (fclose(k->src) != 0 || !k->kbuf) netc_internal_error(__FILE__, __LINE__, "out of memory");
    k->src = k->main_src;
    if (k->split) {
        char *t = split_guard(k->kbuf);
        if (t) free(k->kbuf), k->kbuf = t;
        k->split = false;
    }
    char *text = cg_canonical(k->kbuf, "@KERNEL@", "ovt"); /* the name becomes "@" */
    free(k->kbuf);
    k->kbuf = NULL;
    for (size_t i = 0; i < vec_len(k->bodies); i++)
        if (k->bodies[i] && strcmp(k->bodies[i], text) == 0) {
            free(text);
            return (int)i;
        }
    const char *at = strchr(text, '@');
    NETC_ASSERT(at != NULL);
    fprintf(k->src, "%.*s%s%s", (int)(at - text), text, k->kname, at + 1);
    while (vec_len(k->bodies) < vec_len(k->names)) vec_push(k->bodies, NULL);
    vec_push(k->bodies, text);
    return clc_kernel_name(k, "%s", k->kname);
}

/* Host: launch kernel idx over v with `items` work-items (one-dimensional), or
 * with `items` work-groups of the program's NETC_WG when wg. */
static void klaunch(struct clc *k, int idx, const struct kvals *v, struct cgc_x items, bool wg, bool step) {
    struct cgc *c = &k->c;
    char args[4096];
    size_t at = (size_t)snprintf(args, sizeof args, "{NRT_CL_ARENA, 0, 0}, {NRT_CL_LONG, n, 0}");
    for (int i = 0; i < v->n && at < sizeof args; i++)
        at += (size_t)snprintf(args + at, sizeof args - at, ", {NRT_CL_LONG, o%d, 0}", v->id[i]);
    if (step && at < sizeof args)
        snprintf(args + at, sizeof args - at, ", {NRT_CL_LONG, (int64_t)ctx->step, 0}");
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "const struct nrt_cl_arg a[] = {%s};", args);
    if (wg) {
        cgc_emit(c, "nrt_cl_launch_rows(ctx, %d, (size_t)(%s), %d, a);", idx, cg_xs(items),
                 v->n + 2 + (step ? 1 : 0));
    } else {
        cgc_emit(c, "const size_t g[1] = {(size_t)(%s)};", cg_xs(items));
        cgc_emit(c, "nrt_cl_launch(ctx, %d, 1, g, NULL, %d, a);", idx, v->n + 2 + (step ? 1 : 0));
    }
    c->indent--;
    cgc_emit(c, "}");
}

/* The name of node id's kernel. */
static const char *kname(const struct clc *k, int id) {
    static char buf[64];
    snprintf(buf, sizeof buf, "e%d_n%d", k->entry, id);
    return buf;
}

/* In the kernel: the guarded work-item index i, its loop indices i0.., and each
 * array's index in ns->idx. Returns the element count (the launch size). */
static struct cgc_x nest_open(struct clc *k, struct cg_nest *ns) {
    cg_nest_merge(ns);
    struct cgc_x total = cg_nest_total(ns);
    k->split = true;
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(total));
    if (ns->rank == 1)
        clc_src(k, "    const long i0 = i;");
    else if (ns->rank > 1) {
        clc_src(k, "    long q = i;");
        for (int d = ns->rank - 1; d > 0; d--) {
            clc_src(k, "    const long i%d = q %% (%s);", d, cg_xs(ns->dim[d]));
            clc_src(k, "    q /= %s;", cg_xs(ns->dim[d]));
        }
        clc_src(k, "    const long i0 = q;");
    }
    cg_nest_index(ns);
    return total;
}

/* y = formula($0, ...) elementwise with numpy broadcasting; a bias operand
 * (bias_axis >= 0 for operand 1) is read along that axis. For i32 results the
 * formula is evaluated in acc_t and converted as the IR converts. */
static void ewise_bias(struct clc *k, int id, int bias_axis) {
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    struct cg_nest ns;
    char line[2304];
    cg_ewise_nest(&k->c, id, bias_axis, &ns);
    struct cgc_x total = nest_open(k, &ns);
    cg_ewise_store(&k->c, id, &ns, line, sizeof line);
    clc_src(k, "    %s", line);
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

static void ewise(struct clc *k, int id) { ewise_bias(k, id, -1); }

/* ------------------------------------------------------------- reductions */

/* A reduction of x over some of its dims: the kept dims enumerate the results
 * (row-major, as the result is laid out), the reduced ones the elements each
 * result combines. Both lists are merged where contiguous. */
struct rplan {
    int nk, nr;                                    /* kept and reduced dims */
    struct cgc_x kd[IR_MAX_RANK], ks[IR_MAX_RANK]; /* kept extents and x strides */
    struct cgc_x rd[IR_MAX_RANK], rs[IR_MAX_RANK]; /* reduced extents and x strides */
    struct cgc_x rows, count;                      /* results, elements per result */
};

static void rgroup_add(int *nd, struct cgc_x *d, struct cgc_x *s, struct cgc_x dim, struct cgc_x st) {
    if (dim.k == 1 && !dim.n) return;
    if (*nd > 0 && cgc_x_equal(s[*nd - 1], cgc_mul(st, dim))) { /* merge with the outer one */
        d[*nd - 1] = cgc_mul(d[*nd - 1], dim);
        s[*nd - 1] = st;
        return;
    }
    d[*nd] = dim;
    s[*nd] = st;
    (*nd)++;
}

static struct rplan rplan_make(const struct shape *x, const bool *reduced) {
    struct rplan p;
    memset(&p, 0, sizeof p);
    struct cgc_x st[IR_MAX_RANK];
    cgc_strides(x, st);
    p.rows = p.count = xk(1);
    for (int i = 0; i < x->rank; i++) {
        struct cgc_x d = cgc_dim(x, i);
        if (reduced[i])
            rgroup_add(&p.nr, p.rd, p.rs, d, st[i]), p.count = cgc_mul(p.count, d);
        else
            rgroup_add(&p.nk, p.kd, p.ks, d, st[i]), p.rows = cgc_mul(p.rows, d);
    }
    return p;
}

/* Prints `long var = <offset in x of flat index `from` over dims d/s>;`. */
static void decompose(struct clc *k, const char *var, const char *from, int nd, const struct cgc_x *d,
                      const struct cgc_x *s, const char *indent) {
    if (nd == 0) {
        clc_src(k, "%sconst long %s = 0;", indent, var);
        return;
    }
    if (nd == 1) {
        clc_src(k, "%sconst long %s = (%s) * (%s);", indent, var, from, cg_xs(s[0]));
        return;
    }
    clc_src(k, "%slong %s = 0;", indent, var);
    clc_src(k, "%s{", indent);
    clc_src(k, "%s    long q = %s;", indent, from);
    for (int i = nd - 1; i > 0; i--) {
        clc_src(k, "%s    %s += (q %% (%s)) * (%s);", indent, var, cg_xs(d[i]), cg_xs(s[i]));
        clc_src(k, "%s    q /= %s;", indent, cg_xs(d[i]));
    }
    clc_src(k, "%s    %s += q * (%s);", indent, var, cg_xs(s[0]));
    clc_src(k, "%s}", indent);
}

/* Opens a kernel body over `rows` rows of `count` elements: one work-item per
 * row, or one work-group per row when rows are long. In scope after it: r (the
 * row), t (the first element this work-item takes) and L (the step). Returns
 * whether it is a work-group kernel. */
static bool rows_open(struct clc *k, const char *name, const struct kvals *v, struct cgc_x count,
                      struct cgc_x rows, int *idx) {
    bool wg = count.n || count.k >= CLC_WG_MIN;
    *idx = kbegin(k, name, v, wg, false);
    if (wg) {
        clc_src(k, "    const long r = get_group_id(0);");
        clc_src(k, "    const long t = get_local_id(0), L = NETC_WG;");
    } else {
        clc_src(k, "    const long r = get_global_id(0);");
        clc_src(k, "    const long t = 0, L = 1;");
    }
    clc_src(k, "    if (r >= %s) return;", cg_xs(rows));
    clc_src(k, "    (void)t, (void)L;");
    return wg;
}

/* In a rows kernel: combine var over the work-group (fn: netc_wg_sumf, ...). */
static void wg_combine(struct clc *k, bool wg, const char *var, const char *fn, const char *local) {
    if (wg) clc_src(k, "    %s = %s(%s, %s);", var, fn, local, var);
}

/* The reductions of ops.def: every result combines `count` elements of x with
 * `init` and `combine` ($0 the accumulator, $1 the element) in type `acc`; `fin`
 * writes the result from `a`. */
static void reduce(struct clc *k, int id, const bool *reduced, const char *acc, const char *init,
                   const char *combine, const char *wgfn, const char *wglocal, const char *fin) {
    int x = arg(k, id, 0);
    struct rplan p = rplan_make(arg_shape(k, id, 0), reduced);
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, p.count, p.rows, &idx);
    decompose(k, "base", "r", p.nk, p.kd, p.ks, "    ");
    clc_src(k, "    %s a = %s;", acc, init);
    clc_src(k, "    for (long j = t; j < %s; j += L) {", cg_xs(p.count));
    decompose(k, "at", "j", p.nr, p.rd, p.rs, "        ");
    char ops[2][CG_OPERAND_MAX], line[512];
    snprintf(ops[0], sizeof ops[0], "a");
    snprintf(ops[1], sizeof ops[1], "v%d[base + at]", x);
    cg_subst(line, sizeof line, combine, ops, 2);
    clc_src(k, "        a = %s;", line);
    clc_src(k, "    }");
    wg_combine(k, wg, "a", wgfn, wglocal);
    clc_src(k, "    if (t == 0) %s;", fin);
    idx = kend(k);
    klaunch(k, idx, &v, p.rows, wg, false);
}

/* Partial sums along a contiguous run in the row sums below. */
#define CLC_SUM_LANES 16

/* One step of a sum: a += term (a primary expression), c the running
 * compensation (acc_t a, c in the kernel), at indentation pad (NETC_SUM: the
 * prologue's). */
static void kahan_add(struct clc *k, const char *pad, const char *term) {
    clc_src(k, "%sNETC_SUM(a, c, %s);", pad, term);
}

/* A float sum of x over the reduced dims, accurate to float32 rounding at any
 * size: each work-item sums its elements in acc_t, double where the device
 * has it (as the C backend's sums), else float with Kahan's compensation
 * (NETC_SUM), the work-group combines the partial sums in a tree; `fin`
 * writes the result from `a` (an acc_t). */
static void reduce_sum(struct clc *k, int id, const bool *reduced, const char *fin) {
    int x = arg(k, id, 0);
    struct rplan p = rplan_make(arg_shape(k, id, 0), reduced);
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, p.count, p.rows, &idx);
    decompose(k, "base", "r", p.nk, p.kd, p.ks, "    ");
    struct cgc_x len = p.nr > 0 ? p.rd[p.nr - 1] : xk(0);
    if (wg && cgc_x_equal(p.rs[p.nr - 1], xk(1)) && (len.n || len.k >= CLC_SUM_LANES)) {
        /* Contiguous runs (bias gradients: the pixels of one image and
         * channel): each work-item takes whole runs, CLC_SUM_LANES
         * independent compensated sums along each, instead of one serial
         * chain with an index decomposition per element. */
        struct cgc_x runs = xk(1);
        for (int i = 0; i < p.nr - 1; i++) runs = cgc_mul(runs, p.rd[i]);
        clc_src(k, "    acc_t a = 0, c = 0, al[%d] = {0}, cl[%d] = {0};", CLC_SUM_LANES, CLC_SUM_LANES);
        clc_src(k, "    if (%s >= L) {", cg_xs(runs));
        clc_src(k, "    for (long o = t; o < %s; o += L) {", cg_xs(runs));
        decompose(k, "at", "o", p.nr - 1, p.rd, p.rs, "        ");
        clc_src(k, "        __global const float *const row = v%d + base + at;", x);
        clc_src(k, "        long j = 0;");
        clc_src(k, "        for (; j + %d <= %s; j += %d)", CLC_SUM_LANES, cg_xs(len), CLC_SUM_LANES);
        clc_src(k, "            for (int l = 0; l < %d; l++) {", CLC_SUM_LANES);
        clc_src(k, "                NETC_SUM(al[l], cl[l], (acc_t)row[j + l]);");
        clc_src(k, "            }");
        clc_src(k, "        for (; j < %s; j++) {", cg_xs(len));
        kahan_add(k, "            ", "(acc_t)row[j]");
        clc_src(k, "        }");
        clc_src(k, "    }");
        /* Fewer runs than work-items (a whole-tensor sum is one run: on a GPU's
         * 256 work-items, whole runs left 255 idle and one summing 65536
         * elements, 0.95 ms on an H200): the runs' chunks of CLC_SUM_LANES
         * are dealt out instead, one division per chunk. */
        clc_src(k, "    } else {");
        clc_src(k, "    const long nc = (%s + %d) / %d;", cg_xs(len), CLC_SUM_LANES - 1, CLC_SUM_LANES);
        clc_src(k, "    for (long u = t; u < %s * nc; u += L) {", cg_xs(runs));
        clc_src(k, "        const long o = u / nc, j = (u - o * nc) * %d;", CLC_SUM_LANES);
        decompose(k, "at", "o", p.nr - 1, p.rd, p.rs, "        ");
        clc_src(k, "        __global const float *const row = v%d + base + at;", x);
        clc_src(k, "        if (j + %d <= %s)", CLC_SUM_LANES, cg_xs(len));
        clc_src(k, "            for (int l = 0; l < %d; l++) {", CLC_SUM_LANES);
        clc_src(k, "                NETC_SUM(al[l], cl[l], (acc_t)row[j + l]);");
        clc_src(k, "            }");
        clc_src(k, "        else");
        clc_src(k, "            for (long q = j; q < %s; q++) {", cg_xs(len));
        kahan_add(k, "                ", "(acc_t)row[q]");
        clc_src(k, "            }");
        clc_src(k, "    }");
        clc_src(k, "    }");
        clc_src(k, "    for (int l = 0; l < %d; l++) {", CLC_SUM_LANES);
        kahan_add(k, "        ", "(al[l] - cl[l])");
        clc_src(k, "    }");
    } else {
        clc_src(k, "    acc_t a = 0, c = 0;");
        clc_src(k, "    for (long j = t; j < %s; j += L) {", cg_xs(p.count));
        decompose(k, "at", "j", p.nr, p.rd, p.rs, "        ");
        char term[64];
        snprintf(term, sizeof term, "(acc_t)v%d[base + at]", x);
        kahan_add(k, "        ", term);
        clc_src(k, "    }");
    }
    clc_src(k, "    a -= c;");
    wg_combine(k, wg, "a", "netc_wg_sum", "redd");
    clc_src(k, "    if (t == 0) %s;", fin);
    idx = kend(k);
    klaunch(k, idx, &v, p.rows, wg, false);
}

/* The dims of node id's operand that it reduces (its `axes`, empty: all). */
static void reduced_axes(const struct clc *k, int id, bool *red) {
    int na;
    const int64_t *axes = ir_attr_v(node(k, id), ATTR_AXES, &na);
    const struct shape *s = arg_shape(k, id, 0);
    for (int i = 0; i < s->rank; i++) {
        red[i] = na == 0;
        for (int q = 0; q < na; q++) red[i] |= axes[q] == i;
    }
}

/* ------------------------------------------------------------ the column */

void clc_op_emit(struct clc *k, int id) {
    static void (*const column[OP_COUNT])(struct clc *, int) = {
#define OP(name, arity, kind, flags, attrs) [OP_##name] = clc_op_##name,
#include "ir/ops.def"
#undef OP
    };
    column[node(k, id)->op](k, id);
}

/* --------------------------------------------------------------- leaves */

void clc_op_INPUT(struct clc *k, int id) { (void)k, (void)id; /* uploaded at the entry */ }
void clc_op_PARAM(struct clc *k, int id) { (void)k, (void)id; /* in the arena */ }

void clc_op_CONST(struct clc *k, int id) {
    const struct ir_node *nd = node(k, id);
    double val = ir_attr_f(nd, ATTR_VALUE);
    char lit[64];
    if (nd->type.dtype == DT_I32)
        snprintf(lit, sizeof lit, "%d", (int)nrt_to_i32(val));
    else
        cgc_float(val, lit, sizeof lit);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    struct cgc_x cnt = cgc_count(&nd->type.shape);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i < %s) v%d[i] = %s;", cg_xs(cnt), id, lit);
    idx = kend(k);
    klaunch(k, idx, &v, cnt, false, false);
}

void clc_op_ASSIGN(struct clc *k, int id) { (void)k, (void)id; /* copied into the buffer at the end */ }

/* --------------------------------------------------------- elementwise */

/* The ops of codegen/formulas.def: one work-item per element. */
#define FORMULA(op, ...) \
    void clc_op_##op(struct clc *k, int id) { ewise(k, id); }
#include "codegen/formulas.def"

void clc_op_STOP_GRADIENT(struct clc *k, int id) { (void)k, (void)id; /* an alias */ }

/* Copies cnt elements of value src into value id (kernel 0, a copy). */
static void copy_operand(struct cgc *c, int id, int src, const char *cnt) {
    cgc_emit(c, "{");
    cgc_emit(c,
             "    const struct nrt_cl_arg a[] = {{NRT_CL_ARENA, 0, 0}, {NRT_CL_LONG, o%d, 0}, "
             "{NRT_CL_LONG, o%d, 0}, {NRT_CL_LONG, %s, 0}};",
             id, src, cnt);
    cgc_emit(c, "    const size_t g[1] = {(size_t)(%s)};", cnt);
    cgc_emit(c, "    nrt_cl_launch(ctx, 0, 1, g, NULL, 4, a);");
    cgc_emit(c, "}");
}

/* Reduced over the ranks through host memory, blocking (nrt_cl_allreduce): a
 * gradient bucket's member in place (an alias), other values after a copy of
 * the operand (netc_copy, kernel 0). */
void clc_op_ALLREDUCE(struct clc *k, int id) {
    struct cgc *c = &k->c;
    const struct ir_node *n = node(k, id);
    char cnt[CGC_XSTR_MAX];
    cgc_xstr(cgc_count(&n->type.shape), cnt, sizeof cnt);
    if (ir_attr_i(n, ATTR_BUCKET) < 0) copy_operand(c, id, n->args[0], cnt);
    cgc_emit(c, "nrt_cl_allreduce(ctx, o%d, (int64_t)(%s));", id, cnt);
}

/* A copy of the operand (kernel 0) summed over the ranks that hold items,
 * through host memory (nrt_cl_allsum). */
void clc_op_ALLREDUCE_SUM(struct clc *k, int id) {
    struct cgc *c = &k->c;
    const struct ir_node *n = node(k, id);
    char cnt[CGC_XSTR_MAX];
    cgc_xstr(cgc_count(&n->type.shape), cnt, sizeof cnt);
    copy_operand(c, id, n->args[0], cnt);
    cgc_emit(c, "nrt_cl_allsum(ctx, o%d, (int64_t)(%s));", id, cnt);
}
void clc_op_BIAS_ADD(struct clc *k, int id) { ewise_bias(k, id, (int)ir_attr_i(node(k, id), ATTR_AXIS)); }

/* ----------------------------------------------------------- reductions */

void clc_op_SUM(struct clc *k, int id) {
    bool red[IR_MAX_RANK];
    reduced_axes(k, id, red);
    char fin[64];
    snprintf(fin, sizeof fin, is_i32(k, id) ? "v%d[r] = a" : "v%d[r] = (float)a", id);
    if (is_i32(k, id))
        reduce(k, id, red, "int", "0", "nrt_to_i32((acc_t)$0 + (acc_t)$1)", "netc_wg_sumi", "redi", fin);
    else
        reduce_sum(k, id, red, fin);
}

void clc_op_MEAN(struct clc *k, int id) {
    bool red[IR_MAX_RANK];
    reduced_axes(k, id, red);
    struct rplan p = rplan_make(arg_shape(k, id, 0), red);
    char fin[96];
    snprintf(fin, sizeof fin, "v%d[r] = (float)(a / (acc_t)(%s))", id, cg_xs(p.count));
    reduce_sum(k, id, red, fin);
}

void clc_op_MAX(struct clc *k, int id) {
    bool red[IR_MAX_RANK];
    reduced_axes(k, id, red);
    char fin[64];
    snprintf(fin, sizeof fin, "v%d[r] = a", id);
    if (is_i32(k, id))
        reduce(k, id, red, "int", "INT_MIN", "($1 > $0 ? $1 : $0)", "netc_wg_maxi", "redi", fin);
    else
        reduce(k, id, red, "float", "-INFINITY", "($1 > $0 ? $1 : $0)", "netc_wg_maxf", "redf", fin);
}

/* Two passes over each row, as the C backend: the mean, then the mean squared
 * deviation (no scratch: the mean stays in a register), both compensated sums
 * in acc_t as reduce_sum's. */
void clc_op_VARIANCE(struct clc *k, int id) {
    bool red[IR_MAX_RANK];
    reduced_axes(k, id, red);
    int x = arg(k, id, 0);
    struct rplan p = rplan_make(arg_shape(k, id, 0), red);
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, p.count, p.rows, &idx);
    decompose(k, "base", "r", p.nk, p.kd, p.ks, "    ");
    clc_src(k, "    acc_t mu = 0, a = 0, c = 0;");
    for (int pass = 0; pass < 2; pass++) {
        const char *acc = pass ? "a" : "mu";
        clc_src(k, "    c = 0;");
        clc_src(k, "    for (long j = t; j < %s; j += L) {", cg_xs(p.count));
        decompose(k, "at", "j", p.nr, p.rd, p.rs, "        ");
        if (pass == 0)
            clc_src(k, "        const acc_t y = (acc_t)v%d[base + at] - c, s = mu + y;", x);
        else
            clc_src(k, "        const acc_t d = (acc_t)v%d[base + at] - mu, y = d * d - c, s = a + y;", x);
        clc_src(k, "        c = (s - %s) - y;", acc);
        clc_src(k, "        %s = s;", acc);
        clc_src(k, "    }");
        clc_src(k, "    %s -= c;", acc);
        wg_combine(k, wg, acc, "netc_wg_sum", "redd");
        if (pass == 0) clc_src(k, "    mu /= (acc_t)(%s);", cg_xs(p.count));
    }
    clc_src(k, "    if (t == 0) v%d[r] = (float)(a / (acc_t)(%s));", id, cg_xs(p.count));
    idx = kend(k);
    klaunch(k, idx, &v, p.rows, wg, false);
}

/* The first index of the largest element along `axis`. */
void clc_op_ARGMAX(struct clc *k, int id) {
    const struct shape *xsh = arg_shape(k, id, 0);
    int axis = (int)ir_attr_i(node(k, id), ATTR_AXIS);
    bool red[IR_MAX_RANK] = {false};
    red[axis] = true;
    struct rplan p = rplan_make(xsh, red);
    struct cgc_x inner = cgc_dims_prod(xsh, axis + 1, xsh->rank);
    int x = arg(k, id, 0);
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, p.count, p.rows, &idx);
    decompose(k, "base", "r", p.nk, p.kd, p.ks, "    ");
    clc_src(k, "    long best = t < %s ? t : 0;", cg_xs(p.count));
    clc_src(k, "    for (long j = t + L; j < %s; j += L)", cg_xs(p.count));
    clc_src(k, "        if (v%d[base + j * (%s)] > v%d[base + best * (%s)]) best = j;", x, cg_xs(inner), x,
            cg_xs(inner));
    if (wg) {
        clc_src(k, "    redf[t] = v%d[base + best * (%s)];", x, cg_xs(inner));
        clc_src(k, "    redi[t] = t < %s ? (int)best : INT_MAX;", cg_xs(p.count));
        clc_src(k, "    best = netc_wg_argmax(redf, redi);");
    }
    clc_src(k, "    if (t == 0) v%d[r] = (int)best;", id);
    idx = kend(k);
    klaunch(k, idx, &v, p.rows, wg, false);
}

/* Sums x over the dims where the result (numpy-aligned) has none or 1. */
void clc_op_SUM_TO(struct clc *k, int id) {
    const struct shape *xsh = arg_shape(k, id, 0), *y = shape_of(k, id);
    bool red[IR_MAX_RANK];
    for (int i = 0; i < xsh->rank; i++) {
        int j = y->rank - xsh->rank + i;
        red[i] = j < 0 || y->dim[j] == 1;
    }
    char fin[64];
    snprintf(fin, sizeof fin, is_i32(k, id) ? "v%d[r] = a" : "v%d[r] = (float)a", id);
    if (is_i32(k, id))
        reduce(k, id, red, "int", "0", "nrt_to_i32((acc_t)$0 + (acc_t)$1)", "netc_wg_sumi", "redi", fin);
    else
        reduce_sum(k, id, red, fin);
}

/* --------------------------------------------------------------- matmul */

void clc_op_MATMUL(struct clc *k, int id) { cg_lib_matmul(&k->c, id); }
void clc_op_MATMUL_BSUM(struct clc *k, int id) { cg_lib_matmul_bsum(&k->c, id); }

/* ----------------------------------------------------------------- shape */

void clc_op_RESHAPE(struct clc *k, int id) { (void)k, (void)id; /* an alias */ }

void clc_op_TRANSPOSE(struct clc *k, int id) {
    const struct shape *y = shape_of(k, id), *x = arg_shape(k, id, 0);
    const int64_t *perm = ir_attr_v(node(k, id), ATTR_PERM, NULL);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    struct cg_nest ns;
    cg_nest_init(&ns, y, 2);
    struct cgc_x sx[IR_MAX_RANK];
    cgc_strides(x, sx);
    for (int d = 0; d < y->rank; d++) ns.st[1][d] = sx[perm[d]];
    struct cgc_x total = nest_open(k, &ns);
    clc_src(k, "    v%d[%s] = v%d[%s];", id, ns.idx[0], arg(k, id, 0), ns.idx[1]);
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

/* A kernel over the result of node id split at `axis` into (o, j, in): the
 * statements `body` (which assign v<id>[i]) see o, j and in. */
static void along_axis(struct clc *k, int id, int64_t axis, const char *body) {
    const struct shape *y = shape_of(k, id);
    struct cgc_x inner = cgc_dims_prod(y, (int)axis + 1, y->rank), total = cgc_count(y);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(total));
    clc_src(k, "    const long in = i %% (%s), j = (i / (%s)) %% %lld, o = i / ((%s) * %lld);", cg_xs(inner),
            cg_xs(inner), (long long)y->dim[axis], cg_xs(inner), (long long)y->dim[axis]);
    clc_src(k, "    (void)o, (void)j, (void)in;");
    clc_src(k, "%s", body);
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

void clc_op_SLICE(struct clc *k, int id) {
    const struct ir_node *nd = node(k, id);
    int64_t axis = ir_attr_i(nd, ATTR_AXIS);
    const struct shape *x = arg_shape(k, id, 0);
    struct cgc_x inner = cgc_dims_prod(x, (int)axis + 1, x->rank);
    char body[512];
    snprintf(body, sizeof body, "    v%d[i] = v%d[(o * %lld + j + %lld) * (%s) + in];", id, arg(k, id, 0),
             (long long)x->dim[axis], (long long)ir_attr_i(nd, ATTR_START), cg_xs(inner));
    along_axis(k, id, axis, body);
}

void clc_op_PAD(struct clc *k, int id) {
    const struct ir_node *nd = node(k, id);
    int64_t axis = ir_attr_i(nd, ATTR_AXIS), before = ir_attr_i(nd, ATTR_BEFORE);
    const struct shape *x = arg_shape(k, id, 0);
    long long kx = (long long)x->dim[axis];
    struct cgc_x inner = cgc_dims_prod(x, (int)axis + 1, x->rank);
    char body[512];
    snprintf(body, sizeof body,
             "    const long jj = j - %lld;\n    v%d[i] = jj >= 0 && jj < %lld ? v%d[(o * %lld + jj) * (%s) "
             "+ in] : 0;",
             (long long)before, id, kx, arg(k, id, 0), kx, cg_xs(inner));
    along_axis(k, id, axis, body);
}

void clc_op_CONCAT(struct clc *k, int id) {
    const struct ir_node *nd = node(k, id);
    int64_t axis = ir_attr_i(nd, ATTR_AXIS), at = 0;
    char body[4096];
    size_t len = 0;
    for (int a = 0; a < nd->nargs && len < sizeof body; a++) {
        const struct shape *x = arg_shape(k, id, a);
        long long kx = (long long)x->dim[axis];
        len += (size_t)snprintf(body + len, sizeof body - len,
                                "%s    %sif (j < %lld) v%d[i] = v%d[(o * %lld + j - %lld) * (%s) + in];",
                                a ? "\n" : "", a ? "else " : "", (long long)(at + kx), id, arg(k, id, a), kx,
                                (long long)at, cg_xs(cgc_dims_prod(x, (int)axis + 1, x->rank)));
        at += kx;
    }
    along_axis(k, id, axis, body);
}

/* --------------------------------------------------------------- softmax */

/* The rows of node id's operand along `axis`: in scope after it, base and st
 * (the row's first element and stride), plus rows_open's r, t, L. */
static bool axis_rows_open(struct clc *k, int id, struct cgc_x *kk, int *idx, struct cgc_x *rows,
                           const struct kvals *v) {
    const struct shape *x = arg_shape(k, id, 0);
    int axis = (int)ir_attr_i(node(k, id), ATTR_AXIS);
    struct cgc_x outer = cgc_dims_prod(x, 0, axis), inner = cgc_dims_prod(x, axis + 1, x->rank);
    *kk = cgc_dim(x, axis);
    *rows = cgc_mul(outer, inner);
    bool wg = rows_open(k, kname(k, id), v, *kk, *rows, idx);
    clc_src(k, "    const long base = (r / (%s)) * (%s) * (%s) + r %% (%s), st = %s;", cg_xs(inner),
            cg_xs(*kk), cg_xs(inner), cg_xs(inner), cg_xs(inner));
    return wg;
}

/* The largest element and log-sum-exp of a row: mx, s and lse in scope. */
static void row_lse(struct clc *k, bool wg, const char *elem, struct cgc_x kk) {
    clc_src(k, "    float mx = -INFINITY;");
    clc_src(k, "    for (long j = t; j < %s; j += L) mx = %s > mx ? %s : mx;", cg_xs(kk), elem, elem);
    wg_combine(k, wg, "mx", "netc_wg_maxf", "redf");
    clc_src(k, "    acc_t s = 0;");
    clc_src(k, "    for (long j = t; j < %s; j += L) s += exp((acc_t)%s - mx);", cg_xs(kk), elem);
    wg_combine(k, wg, "s", "netc_wg_sum", "redd");
    clc_src(k, "    const acc_t lse = isinf(mx) ? (acc_t)mx : mx + log(s);");
}

static void softmax(struct clc *k, int id, bool log_out) {
    struct kvals v = kv_node(k, id);
    struct cgc_x kk, rows;
    int idx, x = arg(k, id, 0);
    bool wg = axis_rows_open(k, id, &kk, &idx, &rows, &v);
    char elem[64];
    snprintf(elem, sizeof elem, "v%d[base + j * st]", x);
    row_lse(k, wg, elem, kk);
    if (log_out)
        clc_src(k, "    for (long j = t; j < %s; j += L) v%d[base + j * st] = (float)(%s - lse);", cg_xs(kk),
                id, elem);
    else
        clc_src(k, "    for (long j = t; j < %s; j += L) v%d[base + j * st] = (float)exp(%s - lse);",
                cg_xs(kk), id, elem);
    idx = kend(k);
    klaunch(k, idx, &v, rows, wg, false);
}

void clc_op_SOFTMAX(struct clc *k, int id) { softmax(k, id, false); }
void clc_op_LOG_SOFTMAX(struct clc *k, int id) { softmax(k, id, true); }

/* One work-item per row of the last axis, as the C column (c_ops.c). */
void clc_op_ATTN_SOFTMAX(struct clc *k, int id) {
    const struct ir_node *nd = node(k, id);
    const struct shape *s = &nd->type.shape;
    long long tk = (long long)s->dim[s->rank - 1], tq = (long long)s->dim[s->rank - 2];
    struct cgc_x rows = cgc_dims_prod(s, 0, s->rank - 1);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long r = get_global_id(0);");
    clc_src(k, "    if (r >= %s) return;", cg_xs(rows));
    clc_src(k, "    __global const float *x = v%d + r * %lld;", arg(k, id, 0), tk);
    clc_src(k, "    __global float *y = v%d + r * %lld;", id, tk);
    if (ir_attr_i(nd, ATTR_CAUSAL))
        clc_src(k, "    const long lim = r %% %lld + %lld, kn = lim < 0 ? 0 : lim > %lld ? %lld : lim;", tq,
                tk - tq + 1, tk, tk);
    else
        clc_src(k, "    const long kn = %lld;", tk);
    clc_src(k, "    float mx = -INFINITY;");
    clc_src(k, "    acc_t s = 0;");
    clc_src(k, "    for (long j = 0; j < kn; j++) mx = x[j] > mx ? x[j] : mx;");
    clc_src(k, "    for (long j = 0; j < kn; j++) {");
    clc_src(k, "        const float e = exp(%s * (x[j] - mx));", cg_fs(ir_attr_f(nd, ATTR_SCALE)));
    clc_src(k, "        y[j] = e;");
    clc_src(k, "        s += e;");
    clc_src(k, "    }");
    clc_src(k, "    const float inv = (float)(1 / s);");
    clc_src(k, "    for (long j = 0; j < kn; j++) y[j] *= inv;");
    clc_src(k, "    for (long j = kn; j < %lld; j++) y[j] = 0.0f;", tk);
    idx = kend(k);
    klaunch(k, idx, &v, rows, false, false);
}

/* The fused self-attention core: one work-item per (item, head, row); the
 * kernel's prelude names the row's head base, q_i, and kn, the keys it sees. */
static void attn_prelude(struct clc *k, int id, const char *row) {
    const struct ir_node *nd = node(k, id);
    const struct shape *x = arg_shape(k, id, 0);
    long long t = (long long)x->dim[1], e = (long long)x->dim[2] / 3,
              h = (long long)ir_attr_i(nd, ATTR_HEADS);
    clc_src(k, "    const long r = get_global_id(0);");
    clc_src(k, "    if (r >= %s * %lld) return;", cg_xs(cgc_dim(x, 0)), h * t);
    clc_src(k, "    const long %s = r %% %lld, h = (r / %lld) %% %lld, b = r / %lld;", row, t, t, h, h * t);
    clc_src(k, "    __global const float *base = v%d + b * %lld + h * %lld;", arg(k, id, 0), t * 3 * e,
            e / h);
    clc_src(k, "    const float sc = %s;", cg_fs(ir_attr_f(nd, ATTR_SCALE)));
}

/* Work-items of the attention kernels: items * heads * steps. */
static struct cgc_x attn_rows(struct clc *k, int id) {
    const struct shape *x = arg_shape(k, id, 0);
    struct cgc_x b = cgc_dim(x, 0);
    b.k *= ir_attr_i(node(k, id), ATTR_HEADS) * x->dim[1];
    return b;
}

/* Row i's score with key j: sc q_i.k_j (the operand's q and k of the head). */
static void attn_score(struct clc *k, long long d, long long e, const char *i, const char *j) {
    clc_src(k, "        float s = 0.0f;");
    clc_src(k,
            "        for (long c = 0; c < %lld; c++) s += base[%s * %lld + c] * base[%s * %lld + %lld + c];",
            d, i, 3 * e, j, 3 * e, e);
    clc_src(k, "        s *= sc;");
}

/* y_i = sum_j p_ij v_j with the softmax computed online (running maximum m
 * and sum l, the accumulator rescaled when m grows). */
void clc_op_ATTENTION(struct clc *k, int id) {
    const struct shape *x = arg_shape(k, id, 0);
    long long t = (long long)x->dim[1], e = (long long)x->dim[2] / 3,
              d = e / ir_attr_i(node(k, id), ATTR_HEADS);
    bool causal = ir_attr_i(node(k, id), ATTR_CAUSAL) != 0;
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    attn_prelude(k, id, "i");
    if (causal)
        clc_src(k, "    const long kn = i + 1;");
    else
        clc_src(k, "    const long kn = %lld;", t);
    clc_src(k, "    float acc[%lld], m = -INFINITY, l = 0.0f;", d);
    clc_src(k, "    for (long c = 0; c < %lld; c++) acc[c] = 0.0f;", d);
    clc_src(k, "    for (long j = 0; j < kn; j++) {");
    attn_score(k, d, e, "i", "j");
    clc_src(k, "        const float mn = fmax(m, s), a = exp(m - mn), p = exp(s - mn);");
    clc_src(k, "        l = l * a + p;");
    clc_src(k, "        for (long c = 0; c < %lld; c++) acc[c] = acc[c] * a + p * base[j * %lld + %lld + c];",
            d, 3 * e, 2 * e);
    clc_src(k, "        m = mn;");
    clc_src(k, "    }");
    clc_src(k, "    __global float *y = v%d + (b * %lld + i) * %lld + h * %lld;", id, t, e, d);
    clc_src(k, "    for (long c = 0; c < %lld; c++) y[c] = acc[c] / l;", d);
    idx = kend(k);
    klaunch(k, idx, &v, attn_rows(k, id), false, false);
}

/* ATTENTION_GRAD (qkv, y, dy) -> dqkv in three kernels over rows: (a) row i's
 * log-sum-exp of scores into dq_i[0], a stash; (b) per key j, dk_j and dv_j
 * from the rows that see it, their weights exp(s_ij - lse_i); (c) dq_i, read
 * after the row's own stash. sum_j p_ij dp_ij is dy_i . y_i. */
void clc_op_ATTENTION_GRAD(struct clc *k, int id) {
    const struct shape *x = arg_shape(k, id, 0);
    long long t = (long long)x->dim[1], e = (long long)x->dim[2] / 3,
              d = e / ir_attr_i(node(k, id), ATTR_HEADS);
    bool causal = ir_attr_i(node(k, id), ATTR_CAUSAL) != 0;
    int yv = arg(k, id, 1), dyv = arg(k, id, 2);
    struct kvals v = kv_node(k, id);
    char name[80];
    /* (a) */
    snprintf(name, sizeof name, "%s_lse", kname(k, id));
    int idx = kbegin(k, name, &v, false, false);
    attn_prelude(k, id, "i");
    if (causal)
        clc_src(k, "    const long kn = i + 1;");
    else
        clc_src(k, "    const long kn = %lld;", t);
    clc_src(k, "    float m = -INFINITY, l = 0.0f;");
    clc_src(k, "    for (long j = 0; j < kn; j++) {");
    attn_score(k, d, e, "i", "j");
    clc_src(k, "        const float mn = fmax(m, s);");
    clc_src(k, "        l = l * exp(m - mn) + exp(s - mn);");
    clc_src(k, "        m = mn;");
    clc_src(k, "    }");
    clc_src(k, "    v%d[(b * %lld + i) * %lld + h * %lld] = m + log(l);", id, t, 3 * e, d);
    idx = kend(k);
    klaunch(k, idx, &v, attn_rows(k, id), false, false);
    /* (b) */
    snprintf(name, sizeof name, "%s_kv", kname(k, id));
    idx = kbegin(k, name, &v, false, false);
    attn_prelude(k, id, "j");
    clc_src(k, "    float dk[%lld], dv[%lld];", d, d);
    clc_src(k, "    for (long c = 0; c < %lld; c++) dk[c] = dv[c] = 0.0f;", d);
    clc_src(k, "    for (long i = %s; i < %lld; i++) {", causal ? "j" : "0", t);
    attn_score(k, d, e, "i", "j");
    clc_src(k, "        __global const float *dyi = v%d + (b * %lld + i) * %lld + h * %lld;", dyv, t, e, d);
    clc_src(k, "        __global const float *yi = v%d + (b * %lld + i) * %lld + h * %lld;", yv, t, e, d);
    clc_src(k, "        const float p = exp(s - v%d[(b * %lld + i) * %lld + h * %lld]);", id, t, 3 * e, d);
    clc_src(k, "        float dp = 0.0f, dd = 0.0f;");
    clc_src(k, "        for (long c = 0; c < %lld; c++) {", d);
    clc_src(k, "            dp += dyi[c] * base[j * %lld + %lld + c];", 3 * e, 2 * e);
    clc_src(k, "            dd += dyi[c] * yi[c];");
    clc_src(k, "        }");
    clc_src(k, "        const float ds = sc * p * (dp - dd);");
    clc_src(k, "        for (long c = 0; c < %lld; c++) {", d);
    clc_src(k, "            dk[c] += ds * base[i * %lld + c];", 3 * e);
    clc_src(k, "            dv[c] += p * dyi[c];");
    clc_src(k, "        }");
    clc_src(k, "    }");
    clc_src(k, "    __global float *o = v%d + (b * %lld + j) * %lld + h * %lld;", id, t, 3 * e, d);
    clc_src(k, "    for (long c = 0; c < %lld; c++) {", d);
    clc_src(k, "        o[%lld + c] = dk[c];", e);
    clc_src(k, "        o[%lld + c] = dv[c];", 2 * e);
    clc_src(k, "    }");
    idx = kend(k);
    klaunch(k, idx, &v, attn_rows(k, id), false, false);
    /* (c) */
    snprintf(name, sizeof name, "%s_q", kname(k, id));
    idx = kbegin(k, name, &v, false, false);
    attn_prelude(k, id, "i");
    if (causal)
        clc_src(k, "    const long kn = i + 1;");
    else
        clc_src(k, "    const long kn = %lld;", t);
    clc_src(k, "    __global const float *dyi = v%d + (b * %lld + i) * %lld + h * %lld;", dyv, t, e, d);
    clc_src(k, "    __global const float *yi = v%d + (b * %lld + i) * %lld + h * %lld;", yv, t, e, d);
    clc_src(k, "    __global float *dq = v%d + (b * %lld + i) * %lld + h * %lld;", id, t, 3 * e, d);
    clc_src(k, "    const float lse = dq[0];");
    clc_src(k, "    float acc[%lld], dd = 0.0f;", d);
    clc_src(k, "    for (long c = 0; c < %lld; c++) {", d);
    clc_src(k, "        acc[c] = 0.0f;");
    clc_src(k, "        dd += dyi[c] * yi[c];");
    clc_src(k, "    }");
    clc_src(k, "    for (long j = 0; j < kn; j++) {");
    attn_score(k, d, e, "i", "j");
    clc_src(k, "        float dp = 0.0f;");
    clc_src(k, "        for (long c = 0; c < %lld; c++) dp += dyi[c] * base[j * %lld + %lld + c];", d, 3 * e,
            2 * e);
    clc_src(k, "        const float ds = sc * exp(s - lse) * (dp - dd);");
    clc_src(k, "        for (long c = 0; c < %lld; c++) acc[c] += ds * base[j * %lld + %lld + c];", d, 3 * e,
            e);
    clc_src(k, "    }");
    clc_src(k, "    for (long c = 0; c < %lld; c++) dq[c] = acc[c];", d);
    idx = kend(k);
    klaunch(k, idx, &v, attn_rows(k, id), false, false);
}
/* (y, dy): softmax dx = y (dy - sum(dy y)); log-softmax dx = dy - exp(y) sum(dy). */
static void softmax_grad(struct clc *k, int id, bool log_in) {
    struct kvals v = kv_node(k, id);
    struct cgc_x kk, rows;
    int idx, y = arg(k, id, 0), dy = arg(k, id, 1);
    bool wg = axis_rows_open(k, id, &kk, &idx, &rows, &v);
    clc_src(k, "    acc_t s = 0;");
    if (log_in) {
        clc_src(k, "    for (long j = t; j < %s; j += L) s += v%d[base + j * st];", cg_xs(kk), dy);
        wg_combine(k, wg, "s", "netc_wg_sum", "redd");
        clc_src(k, "    for (long j = t; j < %s; j += L)", cg_xs(kk));
        clc_src(
            k,
            "        v%d[base + j * st] = (float)(v%d[base + j * st] - exp((acc_t)v%d[base + j * st]) * s);",
            id, dy, y);
    } else {
        clc_src(k,
                "    for (long j = t; j < %s; j += L) s += (acc_t)v%d[base + j * st] * v%d[base + j * st];",
                cg_xs(kk), dy, y);
        wg_combine(k, wg, "s", "netc_wg_sum", "redd");
        clc_src(k, "    for (long j = t; j < %s; j += L)", cg_xs(kk));
        clc_src(k, "        v%d[base + j * st] = (float)(v%d[base + j * st] * (v%d[base + j * st] - s));", id,
                y, dy);
    }
    idx = kend(k);
    klaunch(k, idx, &v, rows, wg, false);
}

void clc_op_SOFTMAX_GRAD(struct clc *k, int id) { softmax_grad(k, id, false); }
void clc_op_LOG_SOFTMAX_GRAD(struct clc *k, int id) { softmax_grad(k, id, true); }

/* ---------------------------------------------------------------- losses */

/* Mean over every element of a per-element loss `l` (p and t in scope as acc_t). */
static void ewise_loss(struct clc *k, int id, const char *l) {
    struct cgc_x cnt = cgc_count(arg_shape(k, id, 0));
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, cnt, xk(1), &idx);
    clc_src(k, "    acc_t sum = 0;");
    clc_src(k, "    for (long i = t; i < %s; i += L) {", cg_xs(cnt));
    clc_src(k, "        const acc_t p = v%d[i], t = v%d[i];", arg(k, id, 0), arg(k, id, 1));
    clc_src(k, "        sum += %s;", l);
    clc_src(k, "    }");
    wg_combine(k, wg, "sum", "netc_wg_sum", "redd");
    clc_src(k, "    if (t == 0) v%d[0] = (float)(sum / (acc_t)(%s));", id, cg_xs(cnt));
    idx = kend(k);
    klaunch(k, idx, &v, xk(1), wg, false);
}

/* dx = g / count * d(p, t); the statements in d set `d`. */
static void ewise_loss_grad(struct clc *k, int id, const char *d) {
    struct cgc_x cnt = cgc_count(arg_shape(k, id, 0));
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(cnt));
    clc_src(k, "    const acc_t g = (acc_t)v%d[0] / (acc_t)(%s);", arg(k, id, 2), cg_xs(cnt));
    clc_src(k, "    const acc_t p = v%d[i], t = v%d[i];", arg(k, id, 0), arg(k, id, 1));
    clc_src(k, "    acc_t d;");
    clc_src(k, "    %s", d);
    clc_src(k, "    v%d[i] = (float)(g * d);", id);
    idx = kend(k);
    klaunch(k, idx, &v, cnt, false, false);
}

/* The losses of codegen/formulas.def and their gradients. */
#define LOSS(op, loss, grad)                                             \
    void clc_op_##op(struct clc *k, int id) { ewise_loss(k, id, loss); } \
    void clc_op_##op##_GRAD(struct clc *k, int id) { ewise_loss_grad(k, id, grad); }
#include "codegen/formulas.def"

/* Host: the labels of a class op, when they are a model input, are checked
 * before anything runs (the C backend's message); labels computed on the device
 * are guarded in the kernels (a row with a bad label is skipped). */
static void host_label_check(struct clc *k, int id) {
    if (!is_i32(k, arg(k, id, 1))) return;
    int l = arg(k, id, 1);
    while (k->c.vals[l].alias >= 0) l = k->c.vals[l].alias;
    if (node(k, l)->op != OP_INPUT) return;
    const struct shape *x = arg_shape(k, id, 0);
    long long cls = (long long)x->dim[1];
    struct cgc *c = &k->c;
    cgc_emit(c, "for (int64_t r = 0; r < %s; r++) {", cg_xs(cgc_dim(x, 0)));
    cgc_emit(c, "    const int32_t y = ((const int32_t *)ctx->buf[%d])[r];", k->c.vals[l].buffer);
    cgc_emit(c, "    if (y < 0 || y >= %lld) {", cls);
    cgc_emit(c,
             "        nrt_ctx_fail(ctx, \"label %%d of batch item %%lld is out of range for %lld classes\", "
             "(int)y, "
             "(long long)r);",
             cls);
    cgc_emit(c, "        return;");
    cgc_emit(c, "    }");
    cgc_emit(c, "}");
}

/* In a rows kernel over the class rows of scores x: xr (the row) and, with
 * need_lse, mx, s and lse; with i32 labels, y (the row's label). */
static void class_row(struct clc *k, int id, bool wg, bool need_lse, const char *row, const char *pad) {
    const struct shape *x = arg_shape(k, id, 0);
    long long cls = (long long)x->dim[1];
    clc_src(k, "%s__global const float *xr = v%d + %s * %lld;", pad, arg(k, id, 0), row, cls);
    if (need_lse) row_lse(k, wg, "xr[j]", xk(cls));
    if (is_i32(k, arg(k, id, 1))) clc_src(k, "%sconst int y = v%d[%s];", pad, arg(k, id, 1), row);
}

/* Mean over rows of -sum_c t_c log_softmax(x)_c; t one-hot from labels. One
 * work-item (or work-group) walks the rows; each row's classes serially. */
void clc_op_CROSS_ENTROPY(struct clc *k, int id) {
    host_label_check(k, id);
    bool labels = is_i32(k, arg(k, id, 1));
    const struct shape *x = arg_shape(k, id, 0);
    long long cls = (long long)x->dim[1];
    struct cgc_x rows = cgc_dim(x, 0);
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, rows, xk(1), &idx);
    clc_src(k, "    acc_t sum = 0;");
    clc_src(k, "    for (long row = t; row < %s; row += L) {", cg_xs(rows));
    clc_src(k, "        __global const float *xr = v%d + row * %lld;", arg(k, id, 0), cls);
    char n[24];
    snprintf(n, sizeof n, "%lld", cls);
    cg_row_lse(k->src, "        ", &cg_lang_opencl, n);
    if (labels) {
        clc_src(k, "        const int y = v%d[row];", arg(k, id, 1));
        clc_src(k, "        if (y >= 0 && y < %lld) sum += lse - xr[y];", cls);
    } else {
        clc_src(k, "        for (long j = 0; j < %lld; j++) sum -= v%d[row * %lld + j] * (xr[j] - lse);", cls,
                arg(k, id, 1), cls);
    }
    clc_src(k, "    }");
    wg_combine(k, wg, "sum", "netc_wg_sum", "redd");
    clc_src(k, "    if (t == 0) v%d[0] = (float)(sum / (acc_t)(%s));", id, cg_xs(rows));
    idx = kend(k);
    klaunch(k, idx, &v, xk(1), wg, false);
}

/* dx = (softmax(x) sum_c t_c - t) g / rows, one row per work-item (work-group
 * for long rows). */
void clc_op_CROSS_ENTROPY_GRAD(struct clc *k, int id) {
    host_label_check(k, id);
    bool labels = is_i32(k, arg(k, id, 1));
    const struct shape *x = arg_shape(k, id, 0);
    long long cls = (long long)x->dim[1];
    int tg = arg(k, id, 1);
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, xk(cls), cgc_dim(x, 0), &idx);
    clc_src(k, "    const acc_t g = (acc_t)v%d[0] / (acc_t)(%s);", arg(k, id, 2), cg_xs(cgc_dim(x, 0)));
    class_row(k, id, wg, true, "r", "    ");
    clc_src(k, "    __global float *dr = v%d + r * %lld;", id, cls);
    if (labels) {
        clc_src(k,
                "    for (long j = t; j < %lld; j += L) dr[j] = (float)(g * (exp(xr[j] - lse) - (j == y ? 1 "
                ": 0)));",
                cls);
    } else {
        clc_src(k, "    acc_t ts = 0;");
        clc_src(k, "    for (long j = t; j < %lld; j += L) ts += v%d[r * %lld + j];", cls, tg, cls);
        wg_combine(k, wg, "ts", "netc_wg_sum", "redd");
        clc_src(k,
                "    for (long j = t; j < %lld; j += L) dr[j] = (float)(g * (exp(xr[j] - lse) * ts - v%d[r * "
                "%lld + j]));",
                cls, tg, cls);
    }
    idx = kend(k);
    klaunch(k, idx, &v, cgc_dim(x, 0), wg, false);
}

/* Fraction of rows whose first argmax equals the label (or the target's). */
void clc_op_ACCURACY(struct clc *k, int id) {
    host_label_check(k, id);
    bool labels = is_i32(k, arg(k, id, 1));
    const struct shape *x = arg_shape(k, id, 0);
    long long cls = (long long)x->dim[1];
    struct cgc_x rows = cgc_dim(x, 0);
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = rows_open(k, kname(k, id), &v, rows, xk(1), &idx);
    clc_src(k, "    int hits = 0;");
    clc_src(k, "    for (long row = t; row < %s; row += L) {", cg_xs(rows));
    clc_src(k, "        __global const float *xr = v%d + row * %lld;", arg(k, id, 0), cls);
    clc_src(k, "        long best = 0;");
    clc_src(k, "        for (long j = 1; j < %lld; j++) if (xr[j] > xr[best]) best = j;", cls);
    if (labels) {
        clc_src(k, "        const long y = v%d[row];", arg(k, id, 1));
    } else {
        clc_src(k, "        __global const float *tr = v%d + row * %lld;", arg(k, id, 1), cls);
        clc_src(k, "        long y = 0;");
        clc_src(k, "        for (long j = 1; j < %lld; j++) if (tr[j] > tr[y]) y = j;", cls);
    }
    clc_src(k, "        hits += best == y;");
    clc_src(k, "    }");
    wg_combine(k, wg, "hits", "netc_wg_sumi", "redi");
    clc_src(k, "    if (t == 0) v%d[0] = (float)((acc_t)hits / (acc_t)(%s));", id, cg_xs(rows));
    idx = kend(k);
    klaunch(k, idx, &v, xk(1), wg, false);
}

/* ----------------------------------------------------------- convolution */

void clc_op_CONV2D(struct clc *k, int id) { cg_lib_conv(&k->c, id); }
void clc_op_CONV2D_GRAD_INPUT(struct clc *k, int id) { cg_lib_conv(&k->c, id); }
void clc_op_CONV2D_GRAD_WEIGHT(struct clc *k, int id) { cg_lib_conv(&k->c, id); }
void clc_op_CONV_TRANSPOSE2D(struct clc *k, int id) { cg_lib_conv(&k->c, id); }

/* conv2d_grad_weight_maxpool (x, y, dp): a work-item per weight, summing over
 * the batch and the pooled outputs the tap of the patch at each window's first
 * maximum (maxpool2d_grad's choice), zero dp skipped as the C runtime does. */
void clc_op_CONV2D_GRAD_WEIGHT_MAXPOOL(struct clc *k, int id) {
    const struct ir_node *nd = node(k, id);
    const struct shape *x = arg_shape(k, id, 0), *y = arg_shape(k, id, 1), *dp = arg_shape(k, id, 2);
    const struct shape *w = shape_of(k, id);
    const int64_t *s = ir_attr_v(nd, ATTR_STRIDE, NULL), *p = ir_attr_v(nd, ATTR_PAD, NULL);
    const int64_t *d = ir_attr_v(nd, ATTR_DILATION, NULL), *pk = ir_attr_v(nd, ATTR_POOL_KERNEL, NULL);
    const int64_t *ps = ir_attr_v(nd, ATTR_POOL_STRIDE, NULL), *pp = ir_attr_v(nd, ATTR_POOL_PAD, NULL);
    long long ci = (long long)x->dim[1], h = (long long)x->dim[2], wd = (long long)x->dim[3];
    long long co = (long long)w->dim[0], cig = (long long)w->dim[1], kh = (long long)w->dim[2],
              kw = (long long)w->dim[3], cog = co / (long long)ir_attr_i(nd, ATTR_GROUPS);
    long long yh = (long long)y->dim[2], yw = (long long)y->dim[3], ph = (long long)dp->dim[2],
              pw = (long long)dp->dim[3];
    int xv = arg(k, id, 0), yv = arg(k, id, 1), gv = arg(k, id, 2);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %lld) return;", co * cig * kh * kw);
    clc_src(k, "    const long j = i %% %lld, r = (i / %lld) %% %lld, c = (i / %lld) %% %lld, o = i / %lld;",
            kw, kw, kh, kw * kh, cig, kw * kh * cig);
    clc_src(k, "    const long xc = o / %lld * %lld + c;", cog, cig);
    clc_src(k, "    float s = 0.0f;");
    clc_src(k, "    for (long b = 0; b < %s; b++) {", cg_xs(cgc_dim(x, 0)));
    clc_src(k, "        __global const float *yp = v%d + (b * %lld + o) * %lld;", yv, co, yh * yw);
    clc_src(k, "        __global const float *gp = v%d + (b * %lld + o) * %lld;", gv, co, ph * pw);
    clc_src(k, "        __global const float *xp = v%d + (b * %lld + xc) * %lld;", xv, ci, h * wd);
    clc_src(k, "        for (long q = 0; q < %lld; q++) {", ph * pw);
    clc_src(k, "            const float g = gp[q];");
    clc_src(k, "            if (g == 0.0f) continue;");
    clc_src(k, "            long best = -1;");
    clc_src(k, "            for (long a = 0; a < %lld; a++) {", (long long)pk[0]);
    clc_src(k, "                const long ih = q / %lld * %lld - %lld + a;", pw, (long long)ps[0],
            (long long)pp[0]);
    clc_src(k, "                if (ih < 0 || ih >= %lld) continue;", yh);
    clc_src(k, "                for (long e = 0; e < %lld; e++) {", (long long)pk[1]);
    clc_src(k, "                    const long iw = q %% %lld * %lld - %lld + e;", pw, (long long)ps[1],
            (long long)pp[1]);
    clc_src(k, "                    if (iw < 0 || iw >= %lld) continue;", yw);
    clc_src(k, "                    const long at = ih * %lld + iw;", yw);
    clc_src(k, "                    if (best < 0 || yp[at] > yp[best]) best = at;");
    clc_src(k, "                }");
    clc_src(k, "            }");
    clc_src(k, "            if (best < 0) continue;");
    clc_src(k, "            const long xh = best / %lld * %lld - %lld + r * %lld;", yw, (long long)s[0],
            (long long)p[0], (long long)d[0]);
    clc_src(k, "            const long xw = best %% %lld * %lld - %lld + j * %lld;", yw, (long long)s[1],
            (long long)p[1], (long long)d[1]);
    clc_src(k, "            if (xh >= 0 && xh < %lld && xw >= 0 && xw < %lld) s += g * xp[xh * %lld + xw];",
            h, wd, wd);
    clc_src(k, "        }");
    clc_src(k, "    }");
    clc_src(k, "    v%d[i] = s;", id);
    idx = kend(k);
    klaunch(k, idx, &v, xk(co * cig * kh * kw), false, false);
}

/* ------------------------------------------------------------- recurrent */

/* Host: `geo` (as the C backend's) and the device library's call. */
static void rnn_call(struct clc *k, int id, int ws, int whh, int x, const char *call) {
    struct cgc *c = &k->c;
    cgc_emit(c, "{");
    c->indent++;
    cg_rnn_geo(c, id, ws, whh, x);
    cgc_emit(c, "%s", call);
    c->indent--;
    cgc_emit(c, "}");
}

void clc_op_RNN(struct clc *k, int id) {
    char call[256];
    snprintf(call, sizeof call, "nrt_cl_rnn_forward(ctx, &geo, o%d, o%d, o%d, o%d, o%d, o%d, o%d, o%d);",
             arg(k, id, 0), arg(k, id, 1), arg(k, id, 2), arg(k, id, 3), arg(k, id, 4), arg(k, id, 5),
             arg(k, id, 6), id);
    rnn_call(k, id, -1, 2, 0, call);
}

void clc_op_RNN_BPTT(struct clc *k, int id) {
    char call[256];
    snprintf(call, sizeof call, "nrt_cl_rnn_bptt(ctx, &geo, o%d, o%d, o%d, o%d, o%d, o%d);", arg(k, id, 0),
             arg(k, id, 1), arg(k, id, 2), arg(k, id, 3), arg(k, id, 4), id);
    rnn_call(k, id, 1, 0, -1, call);
}

void clc_op_RNN_GRAD(struct clc *k, int id) {
    char call[256];
    snprintf(call, sizeof call, "nrt_cl_rnn_grad(ctx, &geo, %d, o%d, o%d, o%d, o%d, o%d, o%d);",
             (int)ir_attr_i(node(k, id), ATTR_WRT), arg(k, id, 0), arg(k, id, 1), arg(k, id, 2),
             arg(k, id, 4), arg(k, id, 5), id);
    rnn_call(k, id, 4, 3, 1, call);
}

/* --------------------------------------------------------------- pooling */

void clc_op_MAXPOOL2D(struct clc *k, int id) { cg_lib_pool(&k->c, id); }
void clc_op_AVGPOOL2D(struct clc *k, int id) { cg_lib_pool(&k->c, id); }
void clc_op_MAXPOOL2D_GRAD(struct clc *k, int id) { cg_lib_pool(&k->c, id); }
void clc_op_AVGPOOL2D_GRAD(struct clc *k, int id) { cg_lib_pool(&k->c, id); }
void clc_op_UPSAMPLE2D(struct clc *k, int id) { cg_lib_upsample(&k->c, id); }
void clc_op_UPSAMPLE2D_GRAD(struct clc *k, int id) { cg_lib_upsample(&k->c, id); }

/* ---------------------------------------------------- dropout, batchnorm */

/* The mask of netrt.h's nrt_dropout_keep, whose text the prologue embeds, so
 * both backends keep exactly the same elements. */
static void dropout(struct clc *k, int id) {
    const struct ir_node *nd = node(k, id);
    double rate = ir_attr_f(nd, ATTR_RATE);
    struct cgc_x cnt = cgc_count(&nd->type.shape);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, true);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(cnt));
    clc_src(k, "    v%d[i] = nrt_dropout_keep(%lluUL, (ulong)step, (ulong)i, %luU) ? v%d[i] * %s : 0.0f;", id,
            (unsigned long long)(uint64_t)ir_attr_i(nd, ATTR_SEED),
            (unsigned long)nrt_dropout_threshold(rate), arg(k, id, 0), cg_fs(1.0 / (1.0 - rate)));
    idx = kend(k);
    klaunch(k, idx, &v, cnt, false, true);
    k->uses_step = true;
}

void clc_op_DROPOUT(struct clc *k, int id) { dropout(k, id); }
void clc_op_DROPOUT_GRAD(struct clc *k, int id) { dropout(k, id); }

/* gamma (x - mean) / sqrt(var + eps) + beta, per channel of axis 1. */
void clc_op_BATCHNORM(struct clc *k, int id) {
    const struct shape *x = arg_shape(k, id, 0);
    struct cgc_x inner = cgc_dims_prod(x, 2, x->rank), cnt = cgc_count(x);
    long long ch = (long long)x->dim[1];
    int xv = arg(k, id, 0), g = arg(k, id, 1), b = arg(k, id, 2), mu = arg(k, id, 3), var = arg(k, id, 4);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(cnt));
    clc_src(k, "    const long c = (i / (%s)) %% %lld;", cg_xs(inner), ch);
    clc_src(k, "    const float sc = v%d[c] / sqrt(v%d[c] + %s);", g, var,
            cg_fs(ir_attr_f(node(k, id), ATTR_EPS)));
    clc_src(k, "    v%d[i] = sc * (v%d[i] - v%d[c]) + v%d[c];", id, xv, mu, b);
    idx = kend(k);
    klaunch(k, idx, &v, cnt, false, false);
}

/* Batch norm's training gradient: BATCHNORM_GRAD_SUMS one work-item per
 * channel summing its planes in acc_t, BATCHNORM_GRAD one per element. */
void clc_op_BATCHNORM_GRAD_SUMS(struct clc *k, int id) {
    const struct shape *x = arg_shape(k, id, 0);
    struct cgc_x outer = cgc_dim(x, 0), inner = cgc_dims_prod(x, 2, x->rank);
    long long ch = (long long)x->dim[1];
    int xv = arg(k, id, 0), g = arg(k, id, 1), mu = arg(k, id, 2);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long c = get_global_id(0);");
    clc_src(k, "    if (c >= %lld) return;", ch);
    clc_src(k, "    acc_t sg = 0, sgc = 0;");
    clc_src(k, "    for (long b = 0; b < %s; b++)", cg_xs(outer));
    clc_src(k, "        for (long i = 0; i < %s; i++) {", cg_xs(inner));
    clc_src(k, "            const long at = (b * %lld + c) * (%s) + i;", ch, cg_xs(inner));
    clc_src(k, "            sg += v%d[at];", g);
    clc_src(k, "            sgc += (acc_t)v%d[at] * ((acc_t)v%d[at] - v%d[c]);", g, xv, mu);
    clc_src(k, "        }");
    clc_src(k, "    v%d[c] = (float)sg;", id);
    clc_src(k, "    v%d[%lld + c] = (float)sgc;", id, ch);
    idx = kend(k);
    klaunch(k, idx, &v, xk(ch), false, false);
}

void clc_op_BATCHNORM_GRAD(struct clc *k, int id) {
    const struct shape *x = arg_shape(k, id, 0);
    struct cgc_x inner = cgc_dims_prod(x, 2, x->rank), cnt = cgc_count(x), outer = cgc_dim(x, 0);
    long long ch = (long long)x->dim[1];
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(cnt));
    clc_src(k, "    const long c = (i / (%s)) %% %lld;", cg_xs(inner), ch);
    clc_src(k, "    const float m = (float)(%s) * (float)(%s);", cg_xs(outer), cg_xs(inner));
    clc_src(k, "    const float r = 1.0f / sqrt(v%d[c] + %s);", arg(k, id, 4),
            cg_fs(ir_attr_f(node(k, id), ATTR_EPS)));
    clc_src(
        k, "    v%d[i] = v%d[c] * r * (v%d[i] - v%d[c] / m - (v%d[i] - v%d[c]) * r * r * v%d[%lld + c] / m);",
        id, arg(k, id, 2), arg(k, id, 1), arg(k, id, 5), arg(k, id, 0), arg(k, id, 3), arg(k, id, 5), ch);
    idx = kend(k);
    klaunch(k, idx, &v, cnt, false, false);
}

/* One work-item per row of the last axis, as runtime/norm.c: the row's mean and
 * 1 / sqrt(var + eps) in acc_t (two passes), then the row (LAYERNORM) or, from
 * the sums of dy and dy (x - mean), its gradient (LAYERNORM_GRAD, plus its
 * fourth operand when there is one). */
static void layernorm(struct clc *k, int id, bool grad) {
    const struct shape *s = arg_shape(k, id, 0);
    long long d = (long long)s->dim[s->rank - 1];
    struct cgc_x rows = cgc_dims_prod(s, 0, s->rank - 1);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    clc_src(k, "    const long r = get_global_id(0);");
    clc_src(k, "    if (r >= %s) return;", cg_xs(rows));
    clc_src(k, "    __global const float *x = v%d + r * %lld;", arg(k, id, 0), d);
    clc_src(k, "    __global float *y = v%d + r * %lld;", id, d);
    clc_src(k, "    acc_t m = 0, q = 0;");
    clc_src(k, "    for (long j = 0; j < %lld; j++) m += x[j];", d);
    clc_src(k, "    m /= %lld;", d);
    clc_src(k, "    for (long j = 0; j < %lld; j++) q += (x[j] - m) * (x[j] - m);", d);
    clc_src(k, "    const acc_t rs = 1 / sqrt(q / %lld + (acc_t)%s);", d,
            cg_fs(ir_attr_f(node(k, id), ATTR_EPS)));
    if (grad) {
        clc_src(k, "    __global const float *dy = v%d + r * %lld;", arg(k, id, 1), d);
        if (node(k, id)->nargs >= 3) /* dy times gamma */
            clc_src(k, "#define G(j) (dy[j] * v%d[j])", arg(k, id, 2));
        else
            clc_src(k, "#define G(j) dy[j]");
        clc_src(k, "    acc_t sg = 0, sgc = 0;");
        clc_src(k, "    for (long j = 0; j < %lld; j++) {", d);
        clc_src(k, "        sg += G(j);");
        clc_src(k, "        sgc += G(j) * (x[j] - m);");
        clc_src(k, "    }");
        clc_src(k, "    const acc_t mg = sg / %lld, c2 = sgc * rs * rs / %lld;", d, d);
        if (node(k, id)->nargs == 4) /* plus the residual's gradient */
            clc_src(k,
                    "    for (long j = 0; j < %lld; j++) y[j] = (float)(rs * (G(j) - mg - (x[j] - m) * c2)) "
                    "+ v%d[r * %lld + j];",
                    d, arg(k, id, 3), d);
        else
            clc_src(k,
                    "    for (long j = 0; j < %lld; j++) y[j] = (float)(rs * (G(j) - mg - (x[j] - m) * c2));",
                    d);
        clc_src(k, "#undef G");
    } else {
        clc_src(k, "    for (long j = 0; j < %lld; j++) y[j] = (float)((x[j] - m) * rs);", d);
    }
    idx = kend(k);
    klaunch(k, idx, &v, rows, false, false);
}

void clc_op_LAYERNORM(struct clc *k, int id) { layernorm(k, id, false); }
void clc_op_LAYERNORM_GRAD(struct clc *k, int id) { layernorm(k, id, true); }

/* Beta's and gamma's gradient sums over the rows, in acc_t: a work-group per
 * LN_COLS adjacent columns, its NETC_WG work-items split into lanes of
 * LN_COLS (adjacent columns: reads of a row coalesce) that stride over the
 * rows, the lanes' sums added by a tree in local memory. On CPU devices
 * (NETC_WG 4) that is a work-item per column over all the rows, in order; a
 * GPU's 256 give 64 lanes (tiny_gpt's 128 columns had 128 work-items, each
 * summing 2,048 rows: 11% of an H200's step). */
#define LN_COLS 4
void clc_op_LAYERNORM_GRAD_SUMS(struct clc *k, int id) {
    const struct shape *s = arg_shape(k, id, 0);
    long long d = (long long)s->dim[s->rank - 1];
    struct cgc_x rows = cgc_dims_prod(s, 0, s->rank - 1);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, true, false);
    clc_src(k, "    const int nc = NETC_WG < %d ? NETC_WG : %d, lanes = NETC_WG / nc;", LN_COLS, LN_COLS);
    clc_src(k, "    const long t = get_local_id(0), lane = t / nc;");
    clc_src(k, "    for (long u = t %% nc; u < %d; u += nc) {", LN_COLS);
    clc_src(k, "        const long c = get_group_id(0) * %d + u;", LN_COLS);
    clc_src(k, "        acc_t sg = 0, sgy = 0;");
    clc_src(k, "        if (c < %lld)", d);
    clc_src(k, "            for (long r = lane; r < %s; r += lanes) {", cg_xs(rows));
    clc_src(k, "                const float g = v%d[r * %lld + c];", arg(k, id, 1), d);
    clc_src(k, "                sg += g;");
    clc_src(k, "                sgy += (acc_t)g * v%d[r * %lld + c];", arg(k, id, 0), d);
    clc_src(k, "            }");
    clc_src(k, "        for (int which = 0; which < 2; which++) {");
    clc_src(k, "            redd[t] = which ? sgy : sg;");
    clc_src(k, "            barrier(CLK_LOCAL_MEM_FENCE);");
    clc_src(k, "            for (int h = lanes / 2; h > 0; h >>= 1) {");
    clc_src(k, "                if (lane < h) redd[t] += redd[t + h * nc];");
    clc_src(k, "                barrier(CLK_LOCAL_MEM_FENCE);");
    clc_src(k, "            }");
    clc_src(k, "            if (lane == 0 && c < %lld) v%d[which * %lld + c] = (float)redd[t];", d, id, d);
    clc_src(k, "            barrier(CLK_LOCAL_MEM_FENCE);");
    clc_src(k, "        }");
    clc_src(k, "    }");
    idx = kend(k);
    klaunch(k, idx, &v, xk((d + LN_COLS - 1) / LN_COLS), true, false);
}

/* ------------------------------------------------------ tokens, sequences */

/* Host: i32 ids read by node id (operand i), when they are a model input, are
 * checked before anything runs: each in [0, limit), or equal to `skip` when
 * has_skip (the C backend's message); ids computed on the device are guarded
 * in the kernels. */
static void host_ids_check(struct clc *k, int id, int i, long long limit, bool has_skip, long long skip,
                           const char *msg) {
    int l = arg(k, id, i);
    while (k->c.vals[l].alias >= 0) l = k->c.vals[l].alias;
    if (node(k, l)->op != OP_INPUT) return;
    struct cgc *c = &k->c;
    cgc_emit(c, "for (int64_t p = 0; p < %s; p++) {", cg_xs(cgc_count(arg_shape(k, id, i))));
    cgc_emit(c, "    const int32_t v = ((const int32_t *)ctx->buf[%d])[p];", k->c.vals[l].buffer);
    char skipc[64] = "";
    if (has_skip) snprintf(skipc, sizeof skipc, "v != %lld && ", skip);
    cgc_emit(c, "    if (%s(v < 0 || v >= %lld)) {", skipc, limit);
    cgc_emit(c,
             "        nrt_ctx_fail(ctx, \"%s %%d at position %%lld is out of range for %lld\", (int)v, (long "
             "long)p);",
             msg, limit);
    cgc_emit(c, "        return;");
    cgc_emit(c, "    }");
    cgc_emit(c, "}");
}

/* Rows of table w gathered by ids: one work-item per element of the result. */
void clc_op_EMBEDDING(struct clc *k, int id) {
    const struct shape *w = arg_shape(k, id, 0);
    long long rows = (long long)w->dim[0], d = (long long)w->dim[1];
    host_ids_check(k, id, 1, rows, false, 0, "token id");
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    struct cgc_x total = cgc_count(shape_of(k, id));
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(total));
    clc_src(k, "    const int t = v%d[i / %lld];", arg(k, id, 1), d);
    clc_src(k, "    v%d[i] = t >= 0 && t < %lld ? v%d[(long)t * %lld + i %% %lld] : 0.0f;", id, rows,
            arg(k, id, 0), d, d);
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

/* Every element adds the rows of its token in index order, from 0 (the same
 * sums in the same order on every run and device). CPU devices (NETC_WG <
 * 32): a work-item per column scatters every position into its column, the
 * launch's other work-items idle. GPUs: a work-item per element scans the
 * token ids for its own (tiny_gpt's 128 columns of 2,048 positions had 128
 * work-items: 0.43 ms a step on an H200). */
void clc_op_EMBEDDING_GRAD(struct clc *k, int id) {
    const struct shape *dw = shape_of(k, id);
    long long rows = (long long)dw->dim[0], d = (long long)dw->dim[1];
    host_ids_check(k, id, 0, rows, false, 0, "token id");
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    const char *cnt = cg_xs(cgc_count(arg_shape(k, id, 0)));
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "#if NETC_WG < 32");
    clc_src(k, "    const long j = i;");
    clc_src(k, "    if (j >= %lld) return;", d);
    clc_src(k, "    for (long r = 0; r < %lld; r++) v%d[r * %lld + j] = 0.0f;", rows, id, d);
    clc_src(k, "    for (long p = 0; p < %s; p++) {", cnt);
    clc_src(k, "        const int t = v%d[p];", arg(k, id, 0));
    clc_src(k, "        if (t >= 0 && t < %lld) v%d[(long)t * %lld + j] += v%d[p * %lld + j];", rows, id, d,
            arg(k, id, 1), d);
    clc_src(k, "    }");
    clc_src(k, "#else");
    clc_src(k, "    if (i >= %lld) return;", rows * d);
    clc_src(k, "    const int r = (int)(i / %lld);", d);
    clc_src(k, "    const long j = i %% %lld;", d);
    clc_src(k, "    float s = 0.0f;");
    clc_src(k, "    for (long p = 0; p < %s; p++)", cnt);
    clc_src(k, "        if (v%d[p] == r) s += v%d[p * %lld + j];", arg(k, id, 0), arg(k, id, 1), d);
    clc_src(k, "    v%d[i] = s;", id);
    clc_src(k, "#endif");
    idx = kend(k);
    klaunch(k, idx, &v, xk(rows * d), false, false);
}

void clc_op_ONE_HOT(struct clc *k, int id) {
    long long cls = (long long)ir_attr_i(node(k, id), ATTR_CLASSES);
    struct kvals v = kv_node(k, id);
    int idx = kbegin(k, kname(k, id), &v, false, false);
    struct cgc_x total = cgc_count(shape_of(k, id));
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(total));
    clc_src(k, "    v%d[i] = v%d[i / %lld] == (int)(i %% %lld) ? 1.0f : 0.0f;", id, arg(k, id, 0), cls, cls);
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

/* The masked losses run as one work-group (or one work-item for few rows):
 * `kept` counted over every target first, then the rows strided over the
 * work-items. In scope after it: rows, cls, ign, tg (the targets), kept. The
 * gradient (masked_open_rows) runs as a work-group per MASKED_ROWS rows
 * instead, each counting `kept` itself (tiny_gpt's 2,048 rows of 96 classes
 * in one group of 256 took 0.5 ms a step on an H200). */
#define MASKED_ROWS 64
static bool masked_open_rows(struct clc *k, int id, const struct kvals *v, int *idx, bool blocks);
static bool masked_open(struct clc *k, int id, const struct kvals *v, int *idx) {
    return masked_open_rows(k, id, v, idx, false);
}
static bool masked_open_rows(struct clc *k, int id, const struct kvals *v, int *idx, bool blocks) {
    const struct shape *x = arg_shape(k, id, 0);
    long long cls = (long long)x->dim[x->rank - 1];
    long long ign = (long long)ir_attr_i(node(k, id), ATTR_IGNORE);
    struct cgc_x rows = cgc_dims_prod(x, 0, x->rank - 1);
    host_ids_check(k, id, 1, cls, true, ign, "target");
    /* blocks: ceil(rows.k / MASKED_ROWS) groups per item of the batch when rows has the factor n */
    struct cgc_x groups = {blocks ? (rows.k + MASKED_ROWS - 1) / MASKED_ROWS : 1, blocks && rows.n};
    bool wg = rows_open(k, kname(k, id), v, rows, groups, idx);
    clc_src(k, "    const long rows = %s, cls = %lld;", cg_xs(rows), cls);
    clc_src(k, "    const int ign = %lld;", ign);
    clc_src(k, "    __global const int *tg = v%d;", arg(k, id, 1));
    clc_src(k, "    int kept = 0;");
    clc_src(k, "    for (long q = t; q < rows; q += L) kept += tg[q] != ign && tg[q] >= 0 && tg[q] < cls;");
    wg_combine(k, wg, "kept", "netc_wg_sumi", "redi");
    return wg;
}

static void masked_lse(struct clc *k, int id) {
    clc_src(k, "        __global const float *xr = v%d + q * cls;", arg(k, id, 0));
    cg_row_lse(k->src, "        ", &cg_lang_opencl, "cls");
}

void clc_op_MASKED_CROSS_ENTROPY(struct clc *k, int id) {
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = masked_open(k, id, &v, &idx);
    clc_src(k, "    acc_t sum = 0;");
    clc_src(k, "    for (long q = t; q < rows; q += L) {");
    clc_src(k, "        const int y = tg[q];");
    clc_src(k, "        if (y == ign || y < 0 || y >= cls) continue;");
    masked_lse(k, id);
    clc_src(k, "        sum += lse - xr[y];");
    clc_src(k, "    }");
    wg_combine(k, wg, "sum", "netc_wg_sum", "redd");
    clc_src(k, "    if (t == 0) v%d[0] = kept ? (float)(sum / (acc_t)kept) : 0.0f;", id);
    idx = kend(k);
    klaunch(k, idx, &v, xk(1), wg, false);
}

void clc_op_MASKED_CROSS_ENTROPY_GRAD(struct clc *k, int id) {
    struct kvals v = kv_node(k, id);
    int idx;
    const struct shape *x = arg_shape(k, id, 0);
    long long rk = (long long)cgc_dims_prod(x, 0, x->rank - 1).k, gk = (rk + MASKED_ROWS - 1) / MASKED_ROWS;
    bool wg = masked_open_rows(k, id, &v, &idx, true);
    clc_src(k, "    const acc_t g = kept ? (acc_t)v%d[0] / (acc_t)kept : 0;", arg(k, id, 2));
    /* a work-group: its block of rows, group r = (item of the batch, block); one work-item: every row */
    if (wg)
        clc_src(k,
                "    const long q0 = r / %lld * %lld + r %% %lld * %d, q1 = r / %lld * %lld + min(%lldL, (r "
                "%% %lld + 1) * %d);",
                gk, rk, gk, MASKED_ROWS, gk, rk, rk, gk, MASKED_ROWS);
    else
        clc_src(k, "    const long q0 = 0, q1 = rows;");
    clc_src(k, "    for (long q = q0 + t; q < q1; q += L) {");
    clc_src(k, "        __global float *dr = v%d + q * cls;", id);
    clc_src(k, "        const int y = tg[q];");
    clc_src(k, "        if (y == ign || y < 0 || y >= cls) {");
    clc_src(k, "            for (long j = 0; j < cls; j++) dr[j] = 0.0f;");
    clc_src(k, "            continue;");
    clc_src(k, "        }");
    masked_lse(k, id);
    clc_src(
        k,
        "        for (long j = 0; j < cls; j++) dr[j] = (float)(g * (exp(xr[j] - lse) - (j == y ? 1 : 0)));");
    clc_src(k, "    }");
    idx = kend(k);
    klaunch(k, idx, &v, wg ? (struct cgc_x){gk, cgc_dims_prod(x, 0, x->rank - 1).n} : xk(1), wg, false);
}

void clc_op_MASKED_ACCURACY(struct clc *k, int id) {
    struct kvals v = kv_node(k, id);
    int idx;
    bool wg = masked_open(k, id, &v, &idx);
    clc_src(k, "    int hits = 0;");
    clc_src(k, "    for (long q = t; q < rows; q += L) {");
    clc_src(k, "        const int y = tg[q];");
    clc_src(k, "        if (y == ign || y < 0 || y >= cls) continue;");
    clc_src(k, "        __global const float *xr = v%d + q * cls;", arg(k, id, 0));
    clc_src(k, "        long best = 0;");
    clc_src(k, "        for (long j = 1; j < cls; j++) if (xr[j] > xr[best]) best = j;");
    clc_src(k, "        hits += best == y;");
    clc_src(k, "    }");
    wg_combine(k, wg, "hits", "netc_wg_sumi", "redi");
    clc_src(k, "    if (t == 0) v%d[0] = kept ? (float)((acc_t)hits / (acc_t)kept) : 0.0f;", id);
    idx = kend(k);
    klaunch(k, idx, &v, xk(1), wg, false);
}

/* Masked pooling: one work-item per (batch item, feature) of the pooled value;
 * x is [B, T, R], ids [B, T]. `x` names the operand or result that is [B, T, R]. */
static struct cgc_x pool_open(struct clc *k, int id, const struct shape *x, int ids, const struct kvals *v,
                              int *idx) {
    *idx = kbegin(k, kname(k, id), v, false, false);
    struct cgc_x r = cgc_dims_prod(x, 2, x->rank), total = cgc_mul(cgc_dim(x, 0), r);
    clc_src(k, "    const long i = get_global_id(0);");
    clc_src(k, "    if (i >= %s) return;", cg_xs(total));
    clc_src(k, "    const long T = %lld, R = %s, b = i / R, j = i %% R;", (long long)x->dim[1], cg_xs(r));
    clc_src(k, "    const int pad = %lld;", (long long)ir_attr_i(node(k, id), ATTR_PAD_ID));
    clc_src(k, "    __global const int *ib = v%d + b * T;", ids);
    return total;
}

static void masked_pool_fwd(struct clc *k, int id, bool max) {
    struct kvals v = kv_node(k, id);
    int idx;
    struct cgc_x total = pool_open(k, id, arg_shape(k, id, 0), arg(k, id, 1), &v, &idx);
    clc_src(k, "    __global const float *xb = v%d + b * T * R + j;", arg(k, id, 0));
    clc_src(k, "    float a = 0.0f;");
    clc_src(k, "    long kept = 0;");
    clc_src(k, "    for (long s = 0; s < T; s++) {");
    clc_src(k, "        if (ib[s] == pad) continue;");
    if (max)
        clc_src(k, "        a = kept == 0 || xb[s * R] > a ? xb[s * R] : a;");
    else
        clc_src(k, "        a += xb[s * R];");
    clc_src(k, "        kept++;");
    clc_src(k, "    }");
    if (max)
        clc_src(k, "    v%d[i] = a;", id);
    else
        clc_src(k, "    v%d[i] = kept ? a / (float)kept : 0.0f;", id);
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

void clc_op_MASKED_MEAN(struct clc *k, int id) { masked_pool_fwd(k, id, false); }
void clc_op_MASKED_MAX(struct clc *k, int id) { masked_pool_fwd(k, id, true); }

void clc_op_MASKED_MEAN_GRAD(struct clc *k, int id) {
    struct kvals v = kv_node(k, id);
    int idx;
    struct cgc_x total = pool_open(k, id, shape_of(k, id), arg(k, id, 0), &v, &idx);
    clc_src(k, "    __global float *db = v%d + b * T * R + j;", id);
    clc_src(k, "    long kept = 0;");
    clc_src(k, "    for (long s = 0; s < T; s++) kept += ib[s] != pad;");
    clc_src(k, "    const float g = kept ? v%d[i] / (float)kept : 0.0f;", arg(k, id, 1));
    clc_src(k, "    for (long s = 0; s < T; s++) db[s * R] = ib[s] != pad ? g : 0.0f;");
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

void clc_op_MASKED_MAX_GRAD(struct clc *k, int id) {
    struct kvals v = kv_node(k, id);
    int idx;
    struct cgc_x total = pool_open(k, id, arg_shape(k, id, 0), arg(k, id, 1), &v, &idx);
    clc_src(k, "    __global const float *xb = v%d + b * T * R + j;", arg(k, id, 0));
    clc_src(k, "    __global float *db = v%d + b * T * R + j;", id);
    clc_src(k, "    long best = -1;");
    clc_src(k, "    for (long s = 0; s < T; s++) {");
    clc_src(k, "        if (ib[s] != pad && (best < 0 || xb[s * R] > xb[best * R])) best = s;");
    clc_src(k, "        db[s * R] = 0.0f;");
    clc_src(k, "    }");
    clc_src(k, "    if (best >= 0) db[best * R] = v%d[i];", arg(k, id, 2));
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

/* --------------------------------------------------------------- kernels */

bool clc_kernel_supported(const struct ir_func *f, int kernel) {
    int root = -1, heads = 0;
    for (int id = 0; id < ir_func_len(f); id++)
        if (f->nodes[id].kernel == kernel) root = id;
    if (root < 0) return false;
    for (int id = 0; id <= root; id++) {
        const struct ir_node *n = &f->nodes[id];
        if (n->kernel != kernel) continue;
        if (ir_kernel_head_op(n->op))
            heads++;
        else if (!ir_kernel_ewise_op(n->op))
            return false;
        /* batchnorm reads its statistics, scale and shift per channel (axis 1), an
         * access the fused OpenCL kernel does not make yet: node by node. */
        if (n->op == OP_BATCHNORM) return false;
        if (n->type.dtype != DT_F32 || !shape_equal(&n->type.shape, &f->nodes[root].type.shape)) return false;
    }
    return heads <= 1;
}

/* The nest of kernel kn on work-items (the arrays, the head's among them, as
 * the C backend's: cg_kernel_nest), its members in registers, the outputs
 * stored last. */
/* Whether kernel kn is a conv2d or 2-D matmul head, a bias_add of its result
 * along the channels (conv) or columns (matmul), and optionally a relu of
 * that, storing only the root: the runtime's GEMM then writes the result
 * (nrt_cl_fuse_next), with no pass of its own. *bias: the bias value. */
static bool epilogue_fusable(const struct clc *k, const struct cgc_kernel *kn, int *bias, bool *relu) {
    int nm = (int)vec_len(kn->members);
    if (kn->head < 0 || vec_len(kn->outputs) != 1 || nm < 2 || nm > 3 || kn->members[0] != kn->head)
        return false;
    const struct ir_node *h = node(k, kn->head), *ba = node(k, kn->members[1]);
    if (h->op != OP_CONV2D && !(h->op == OP_MATMUL && h->type.shape.rank == 2)) return false;
    if (ba->op != OP_BIAS_ADD || ba->args[0] != kn->head || ir_attr_i(ba, ATTR_AXIS) != 1 ||
        node(k, ba->args[1])->type.dtype != DT_F32)
        return false;
    *relu = nm == 3;
    if (*relu &&
        (node(k, kn->members[2])->op != OP_RELU || node(k, kn->members[2])->args[0] != kn->members[1]))
        return false;
    *bias = ba->args[1];
    return true;
}

void clc_kernel_emit(struct clc *k, const struct cgc_kernel *kn) {
    struct cgc *c = &k->c;
    int bias;
    bool relu;
    if (epilogue_fusable(k, kn, &bias, &relu)) {
        cgc_emit(c, "nrt_cl_fuse_next(ctx, o%d, %d);", bias, relu ? 1 : 0);
        clc_op_emit(k, kn->head); /* into the root's storage, bias and relu applied */
        return;
    }
    if (kn->head >= 0) clc_op_emit(k, kn->head); /* into the root's storage: o<head> = o<root> */
    struct cg_nest ns;
    struct cg_access acc[CG_NEST_OPS];
    int nacc = cg_kernel_nest(c, kn, &ns, acc);
    struct kvals v = {0, {0}};
    for (size_t i = 0; i < vec_len(kn->outputs); i++)
        kv_add(&v, kn->outputs[i]); /* the root, and members used later */
    for (int j = 0; j < nacc; j++) kv_add(&v, acc[j].value);
    char name[64];
    snprintf(name, sizeof name, "e%d_k%d", k->entry, node(k, kn->root)->kernel);
    int idx = kbegin(k, name, &v, false, false);
    struct cgc_x total = nest_open(k, &ns);
    for (size_t i = 0; i < vec_len(kn->members); i++) {
        char line[2304];
        if (cg_kernel_line(c, kn, i, &ns, acc, line, sizeof line) >= 0) clc_src(k, "    %s", line);
    }
    /* The stores come last: an input may be the buffer an output is stored into
     * in place (an optimizer update), read above before it is overwritten. */
    for (int j = 0; j < v.n && cgc_kernel_stores(kn, v.id[j]); j++)
        clc_src(k, "    v%d[%s] = t%d;", v.id[j], ns.idx[0], v.id[j]);
    idx = kend(k);
    klaunch(k, idx, &v, total, false, false);
}

/* --------------------------------------------------------------- prologue */

/* The text of a macro's expansion. */
#define CL_STR_(...) #__VA_ARGS__
#define CL_STR(...) CL_STR_(__VA_ARGS__)

void clc_prologue(FILE *src) {
    fputs(
        "/* OpenCL C 1.2. acc_t: the accumulator of losses and softmax rows (double\n"
        " * where the device has it, as the C backend). */\n"
        "#ifdef cl_khr_fp64\n"
        "#pragma OPENCL EXTENSION cl_khr_fp64 : enable\n"
        "typedef double acc_t;\n"
        "#else\n"
        "typedef float acc_t;\n"
        "#endif\n"
        "/* Work-items of a work-group reduction: the runtime defines it per device\n"
        " * (a power of two: 256 on GPUs, fewer on CPU devices, where a work-group\n"
        " * runs as loops on one core). */\n"
        "#ifndef NETC_WG\n"
        "#define NETC_WG 256\n"
        "#endif\n"
        "/* a += x in the sums: in double as is, in float with Kahan's compensation c. */\n"
        "#ifdef cl_khr_fp64\n"
        "#define NETC_SUM(a, c, x) ((a) += (x))\n"
        "#else\n"
        "#define NETC_SUM(a, c, x) \\\n"
        "    do { \\\n"
        "        const acc_t y_ = (x) - (c), s_ = (a) + y_; \\\n"
        "        (c) = (s_ - (a)) - y_; \\\n"
        "        (a) = s_; \\\n"
        "    } while (0)\n"
        "#endif\n"
        "/* The runtime's GELU functions (netrt.h) by the builtins, for the\n"
        " * formulas of codegen/formulas.def. */\n"
        "float nrt_gelu_phi(float x) { return 0.5f * (1.0f + erf(x * 0.70710678f)); }\n"
        "float nrt_gelu_grad(float x)\n"
        "{\n"
        "    return 0.5f * (1.0f + erf(x * 0.70710678f)) + x * 0.39894228f * exp(-0.5f * x * x);\n"
        "}\n"
        "\n"
        "float nrt_gelu_tanh_grad(float x)\n"
        "{\n"
        "    const float th = tanh(0.79788456f * (x + 0.044715f * x * x * x));\n"
        "    return 0.5f * (1.0f + th) + 0.5f * x * (1.0f - th * th) * 0.79788456f * (1.0f + 0.134145f * x * "
        "x);\n"
        "}\n"
        "\n"
        "/* The IR's conversion to i32 (toward zero, saturating, NaN as 0): the text of\n"
        " * runtime/netrt.h's, over acc_t. */\n" CL_STR(NRT_TO_I32_DEFS(
            , acc_t,
            int)) "\n"
                  "\n"
                  "/* The dropout mask: the text of runtime/netrt.h's, over OpenCL's types. */\n" CL_STR(
                      NRT_DROPOUT_DEFS(
                          , ulong,
                          uint)) "\n"
                                 "\n"
                                 "/* Work-group reductions over a power-of-two group: every work-item gets "
                                 "the\n"
                                 " * result. */\n"
                                 "#define NETC_WG_REDUCE(T, name, combine)                        \\\n"
                                 "    T name(__local T *r, T v)                                   \\\n"
                                 "    {                                                           \\\n"
                                 "        const int t = get_local_id(0);                          \\\n"
                                 "        r[t] = v;                                               \\\n"
                                 "        barrier(CLK_LOCAL_MEM_FENCE);                           \\\n"
                                 "        for (int s = get_local_size(0) / 2; s > 0; s >>= 1) {   \\\n"
                                 "            if (t < s) { T a = r[t], b = r[t + s]; r[t] = combine; } \\\n"
                                 "            barrier(CLK_LOCAL_MEM_FENCE);                       \\\n"
                                 "        }                                                       \\\n"
                                 "        v = r[0];                                               \\\n"
                                 "        barrier(CLK_LOCAL_MEM_FENCE);                           \\\n"
                                 "        return v;                                               \\\n"
                                 "    }\n"
                                 "NETC_WG_REDUCE(float, netc_wg_sumf, a + b)\n"
                                 "NETC_WG_REDUCE(acc_t, netc_wg_sum, a + b)\n"
                                 "NETC_WG_REDUCE(int, netc_wg_sumi, nrt_to_i32((acc_t)a + (acc_t)b))\n"
                                 "NETC_WG_REDUCE(float, netc_wg_maxf, (b > a ? b : a))\n"
                                 "NETC_WG_REDUCE(int, netc_wg_maxi, (b > a ? b : a))\n"
                                 "\n"
                                 "/* The first index of the largest value over a work-group: (rv, ri) hold "
                                 "each\n"
                                 " * work-item's candidate (ri INT_MAX: none). */\n"
                                 "long netc_wg_argmax(__local float *rv, __local int *ri)\n"
                                 "{\n"
                                 "    const int t = get_local_id(0);\n"
                                 "    barrier(CLK_LOCAL_MEM_FENCE);\n"
                                 "    for (int s = get_local_size(0) / 2; s > 0; s >>= 1) {\n"
                                 "        if (t < s && ri[t + s] != INT_MAX &&\n"
                                 "            (ri[t] == INT_MAX || rv[t + s] > rv[t] || (rv[t + s] == rv[t] "
                                 "&& ri[t + s] < ri[t]))) {\n"
                                 "            rv[t] = rv[t + s];\n"
                                 "            ri[t] = ri[t + s];\n"
                                 "        }\n"
                                 "        barrier(CLK_LOCAL_MEM_FENCE);\n"
                                 "    }\n"
                                 "    const long best = ri[0];\n"
                                 "    barrier(CLK_LOCAL_MEM_FENCE);\n"
                                 "    return best;\n"
                                 "}\n"
                                 "\n"
                                 "/* Kernel 0: copy count elements (assignments into parameter buffers). */\n"
                                 "__kernel void netc_copy(__global float *A, long dst, long src, long "
                                 "count)\n"
                                 "{\n"
                                 "    const long i = get_global_id(0);\n"
                                 "    if (i < count) A[dst + i] = A[src + i];\n"
                                 "}\n",
        src);
}
