/* codegen/c_emit.c -- the C backend's frame: the target struct, the one emit()
 * helper and the small printing helpers the op emitters share, the workspace
 * layout of a function as the IR's memory plan gives it (passes/memplan.c: slots
 * in two regions, fixed-size values and values that scale with the batch), one
 * C function per entry point preceded by one per
 * fused kernel (the IR's `kernel=K`, bodies in c_ops.c) and one per other op
 * with a loop nest (node_E_ID), each noinline so that the C compiler optimises
 * them one at a time, and each printed once per module when identical (compared
 * with node ids renamed), optionally into further translation units
 * (cg_options.part), and the static model descriptor (buffers, inputs' sources,
 * train settings, entry points) that the runtime driver reads. Names from the
 * .net file appear only as escaped string literals; C identifiers are built
 * from indices. */
#include "codegen/codegen.h"

#include <limits.h>
#include <math.h>
#include <string.h>

/* The body of the comment atop a generated C file. */
static const char c_about[] = " * One function per entry point computes every value of the IR into the\n"
                              " * runtime's workspace, calling one function per fused kernel (kernel_E_K:\n"
                              " * entry point E, the IR's kernel=K); the descriptor at the end tells the\n"
                              " * runtime driver about buffers, data sources and entry points. */\n";

/* ------------------------------------------------------------- helpers */

void cgc_emit(struct cgc *c, const char *fmt, ...) {
    va_list ap;
    for (int i = 0; i < c->indent; i++) fputs("    ", c->out);
    va_start(ap, fmt);
    vfprintf(c->out, fmt, ap);
    va_end(ap);
    fputc('\n', c->out);
}

struct cgc_x cgc_dim(const struct shape *s, int i) {
    return s->dim[i] == IR_DIM_N ? (struct cgc_x){1, true} : (struct cgc_x){s->dim[i], false};
}

struct cgc_x cgc_mul(struct cgc_x a, struct cgc_x b) {
    return (struct cgc_x){a.k * b.k, a.n || b.n};
}

struct cgc_x cgc_count(const struct shape *s) {
    struct cgc_x x = {1, false};
    for (int i = 0; i < s->rank; i++) x = cgc_mul(x, cgc_dim(s, i));
    return x;
}

struct cgc_x cgc_dims_prod(const struct shape *s, int from, int to) {
    struct cgc_x x = {1, false};
    for (int i = from; i < to; i++) x = cgc_mul(x, cgc_dim(s, i));
    return x;
}

void cgc_strides(const struct shape *s, struct cgc_x *st) {
    for (int i = 0; i < s->rank; i++) st[i] = cgc_dims_prod(s, i + 1, s->rank);
}

void cgc_strides_into(const struct shape *small, const struct shape *big, struct cgc_x *st) {
    struct cgc_x s[IR_MAX_RANK];
    cgc_strides(small, s);
    for (int i = 0; i < big->rank; i++) {
        int j = small->rank - big->rank + i;
        st[i] = j >= 0 && small->dim[j] != 1 ? s[j] : (struct cgc_x){0, false};
    }
}

int cgc_bgemm_batch(const struct shape *a, const struct shape *b, const struct shape *y,
                    struct cgc_x batch[3][IR_MAX_RANK]) {
    struct shape dims = *y, ba = *a, bb = *b;
    dims.rank -= 2, ba.rank -= 2, bb.rank -= 2;
    struct cgc_x sa[IR_MAX_RANK], sb[IR_MAX_RANK];
    cgc_strides_into(&ba, &dims, sa);
    cgc_strides_into(&bb, &dims, sb);
    struct cgc_x ma = cgc_dims_prod(a, a->rank - 2, a->rank), mb = cgc_dims_prod(b, b->rank - 2, b->rank);
    for (int d = 0; d < dims.rank; d++)
        batch[0][d] = cgc_dim(&dims, d), batch[1][d] = cgc_mul(sa[d], ma), batch[2][d] = cgc_mul(sb[d], mb);
    return dims.rank;
}

char *cgc_bgemm(const struct shape *a, const struct shape *b, const struct shape *y, bool ta, bool tb,
                char *buf, size_t len) {
    struct cgc_x bx[3][IR_MAX_RANK];
    int nd = cgc_bgemm_batch(a, b, y, bx);
    char t[3][6][CGC_XSTR_MAX], lists[3][6 * CGC_XSTR_MAX + 16];
    for (int d = 0; d < nd; d++)
        for (int l = 0; l < 3; l++) cgc_xstr(bx[l][d], t[l][d], CGC_XSTR_MAX);
    for (int l = 0; l < 3; l++) {
        size_t at = (size_t)snprintf(lists[l], sizeof lists[l], "{");
        for (int d = 0; d < nd; d++)
            at += (size_t)snprintf(lists[l] + at, sizeof lists[l] - at, "%s%s", d ? ", " : "", t[l][d]);
        snprintf(lists[l] + at, sizeof lists[l] - at, "%s}", nd ? "" : "0");
    }
    char m[CGC_XSTR_MAX], n[CGC_XSTR_MAX], k[CGC_XSTR_MAX], lda[CGC_XSTR_MAX], ldb[CGC_XSTR_MAX];
    cgc_xstr(cgc_dim(y, y->rank - 2), m, sizeof m);
    cgc_xstr(cgc_dim(y, y->rank - 1), n, sizeof n);
    cgc_xstr(cgc_dim(a, ta ? a->rank - 2 : a->rank - 1), k, sizeof k);
    cgc_xstr(cgc_dim(a, a->rank - 1), lda, sizeof lda);
    cgc_xstr(cgc_dim(b, b->rank - 1), ldb, sizeof ldb);
    snprintf(buf, len, "&(struct nrt_bgemm){%d, %d, %s, %s, %s, %s, %s, %s, %d, %s, %s, %s}", ta, tb, m, n, k,
             lda, ldb, n, nd, lists[0], lists[1], lists[2]);
    return buf;
}

bool cgc_x_equal(struct cgc_x a, struct cgc_x b) { return a.k == b.k && (a.k == 0 || a.n == b.n); }

char *cgc_xstr(struct cgc_x x, char *buf, size_t len) {
    if (x.n && x.k == 1)
        snprintf(buf, len, "n");
    else if (x.n)
        snprintf(buf, len, "%lld * n", (long long)x.k);
    else
        snprintf(buf, len, "%lld", (long long)x.k);
    return buf;
}

char *cgc_float(double v, char *buf, size_t len) {
    if (isnan(v))
        snprintf(buf, len, "NAN");
    else if (isinf(v))
        snprintf(buf, len, "%sINFINITY", v < 0 ? "-" : "");
    else {
        char tmp[40];
        snprintf(tmp, sizeof tmp, "%.9g", v);
        bool dot = strpbrk(tmp, ".e") != NULL;
        /* A float literal out of float range would warn; go through double. */
        if (fabs(v) > 3.4e38 || (v != 0 && fabs(v) < 1.2e-38))
            snprintf(buf, len, "(float)%s%s", tmp, dot ? "" : ".0");
        else
            snprintf(buf, len, "%s%sf", tmp, dot ? "" : ".0");
    }
    return buf;
}

const struct ir_node *cgc_node(const struct cgc *c, int id) { return &c->f->nodes[id]; }
const struct ir_node *cgc_arg(const struct cgc *c, int id, int i) {
    return &c->f->nodes[c->f->nodes[id].args[i]];
}
const char *cgc_ctype(enum dtype t) { return t == DT_I32 ? "int32_t" : "float"; }

/* A string literal for s: printable ASCII as is, everything else (quotes,
 * backslashes, '?' against trigraphs, control and non-ASCII bytes) escaped. */
void cgc_put_chars(FILE *out, const char *s, size_t n) {
    for (const unsigned char *p = (const unsigned char *)s; p < (const unsigned char *)s + n; p++) {
        if (*p == '"' || *p == '\\' || *p == '?')
            fprintf(out, "\\%c", *p);
        else if (*p >= 0x20 && *p < 0x7f)
            fputc(*p, out);
        else
            fprintf(out, "\\%03o", *p);
    }
}

void cgc_put_str(FILE *out, const char *s) {
    if (!s) {
        fputs("NULL", out);
        return;
    }
    fputc('"', out);
    cgc_put_chars(out, s, strlen(s));
    fputc('"', out);
}

static const char *dtype_enum(enum dtype t) { return t == DT_I32 ? "NRT_DT_I32" : "NRT_DT_F32"; }

int cgc_buffer_index(const struct ir_module *m, const char *name) {
    for (size_t i = 0; i < vec_len(m->buffers); i++)
        if (strcmp(m->buffers[i].name, name) == 0) return (int)i;
    return -1;
}

/* -------------------------------------------------------------- layout */

/* The IR's kernels (c->kernels, vals[].kernel), formed by the fuse pass for this
 * target: every one is emitted fused. */
static void form_kernels(struct cgc *c) {
    const struct ir_func *f = c->f;
    int len = ir_func_len(f);
    for (int id = len - 1; id >= 0; id--) { /* a kernel's root is its last member */
        int kn = f->nodes[id].kernel;
        if (kn <= 0 || c->vals[id].kernel >= 0) continue;
        struct cgc_kernel k = {id, -1, NULL, NULL, NULL};
        int q = (int)vec_len(c->kernels);
        for (int j = 0; j <= id; j++)
            if (f->nodes[j].kernel == kn) vec_push(k.members, j), c->vals[j].kernel = q;
        if (!cgc_kernel_plan(c, &k))
            NETC_INTERNAL(
                "kernel %d of @%s is beyond what one loop nest handles: fuse formed it for another target",
                kn, f->name);
        vec_push(c->kernels, k);
    }
}

/* The bucket of node n when it is an ALLREDUCE reduced in place, else -1. */
static int bucket_of(const struct ir_node *n) {
    return n->op == OP_ALLREDUCE ? (int)ir_attr_i(n, ATTR_BUCKET) : -1;
}

int cgc_buckets(const struct cgc *c, int max, size_t *off, size_t *bytes, int *tensors) {
    int nb = 0;
    for (int id = 0; id < ir_func_len(c->f); id++) {
        const struct cgc_val *v = &c->vals[id];
        if (v->bucket < 0) continue;
        if (v->bucket + 1 > nb) nb = v->bucket + 1;
        if (v->bucket >= max) continue;
        if (!tensors[v->bucket] || v->off < off[v->bucket]) off[v->bucket] = v->off;
        bytes[v->bucket] += v->size;
        tensors[v->bucket]++;
    }
    return nb;
}

static size_t round_up(size_t v) { return (v + IR_SLOT_ALIGN - 1) / IR_SLOT_ALIGN * IR_SLOT_ALIGN; }

/* Where each value of f lives, as the memory plan (passes/memplan.c) in the IR
 * says: buffers, aliases, slots, scratch; its liveness and kernels besides. */
void cgc_layout(struct cgc *c) {
    const struct ir_func *f = c->f;
    int len = ir_func_len(f);
    if (!f->planned) NETC_INTERNAL("@%s has no memory plan: the memplan pass has not run", f->name);
    c->vals = calloc((size_t)(len ? len : 1), sizeof *c->vals);
    int *last_use = malloc(sizeof *last_use * (size_t)(len ? len : 1));
    int *uses = malloc(sizeof *uses * (size_t)(len ? len : 1));
    if (!c->vals || !last_use || !uses) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int id = 0; id < len; id++)
        c->vals[id].kernel = -1, c->vals[id].alias = -1, c->vals[id].buffer = -1, c->vals[id].bucket = -1;
    form_kernels(c);
    pass_memplan_live(f, last_use, uses);
    for (int id = 0; id < len; id++) {
        const struct ir_node *n = &f->nodes[id];
        const struct ir_mem *mem = &n->mem;
        struct cgc_val *v = &c->vals[id];
        v->last_use = last_use[id];
        v->uses = uses[id];
        if (n->op == OP_INPUT || n->op == OP_PARAM)
            v->buffer = cgc_buffer_index(c->m, n->sym);
        else if (pass_memplan_aliases(n))
            v->alias = n->args[0];
        if (mem->where == MEM_BUFFER) v->buffer = (int)mem->off;
        if (mem->where == MEM_FIXED || mem->where == MEM_BATCH) {
            v->per_n = mem->where == MEM_BATCH;
            v->off = (size_t)mem->off;
            v->size = round_up((size_t)shape_static_numel(&n->type.shape) * dtype_size(n->type.dtype));
        }
        v->scratch = mem->scratch;
        v->scratch_n = mem->scratch_where == MEM_BATCH;
        v->scratch_off = (size_t)mem->scratch_off;
        if (bucket_of(n) >= 0) c->vals[n->args[0]].bucket = bucket_of(n);
        /* A plan made for no target has no scratch: a bug of the driver. */
        bool per_n;
        if (v->kernel < 0 || ir_kernel_head_op(n->op))
            if (cgc_op_scratch(f, n, &per_n) != v->scratch)
                NETC_INTERNAL("%%%d of @%s: the memory plan gives %lld scratch floats, the C ops need %lld",
                              id, f->name, (long long)v->scratch, (long long)cgc_op_scratch(f, n, &per_n));
    }
    free(last_use);
    free(uses);
    c->fixed_total = (size_t)f->ws_fixed;
    c->per_n_total = (size_t)f->ws_batch;
}

void cgc_layout_free(struct cgc *c) {
    free(c->vals);
    c->vals = NULL;
    for (size_t q = 0; q < vec_len(c->kernels); q++) {
        vec_free(c->kernels[q].members);
        vec_free(c->kernels[q].inputs);
        vec_free(c->kernels[q].outputs);
    }
    vec_free(c->kernels);
}

/* "ws + 1024 + 4096 * mn" for a slot. */
static void slot_expr(const struct cgc *c, bool per_n, size_t off, char *buf, size_t len) {
    if (per_n)
        snprintf(buf, len, "ws + %zu + %zu * mn", c->fixed_total, off);
    else
        snprintf(buf, len, "ws + %zu", off);
}

/* ----------------------------------------------------------- functions */

void cgc_op_emit(struct cgc *c, int id) {
    static void (*const column[OP_COUNT])(struct cgc *, int) = {
#define OP(name, arity, kind, flags, attrs) [OP_##name] = cgc_op_##name,
#include "ir/ops.def"
#undef OP
    };
    column[cgc_node(c, id)->op](c, id);
}

/* How kernel_args prints a kernel's values. */
enum kargs {
    KA_PARAMS, /* "int64_t n, float *restrict v7, const float *restrict v3" */
    KA_CALL,   /* "n, v7, v3" */
    KA_FIELDS, /* "int64_t n; float *v7; const float *v3;" (no scratch) */
    KA_FROM,   /* "a->n, a->v7, a->v3" (no scratch) */
    KA_RANGE,  /* as KA_PARAMS, no scratch */
    KA_INIT,   /* as KA_CALL, no scratch */
};

/* The values kernel k's function takes: n, its outputs, its inputs (but those
 * read through an output's pointer), and its head's scratch. */
static void kernel_args(const struct cgc *c, const struct cgc_kernel *k, enum kargs how, char *buf,
                        size_t len) {
    static const char *const first[] = {"int64_t n", "n", "int64_t n;", "a->n", "int64_t n", "n"};
    static const char *const out[] = {", float *restrict v%d", ", v%d", " float *v%d;", ", a->v%d",
                                      ", float *restrict v%d", ", v%d"};
    static const char *const in[] = {", const float *restrict v%d", ", v%d", " const float *v%d;", ", a->v%d",
                                     ", const float *restrict v%d", ", v%d"};
    size_t at = (size_t)snprintf(buf, len, "%s", first[how]);
    for (size_t i = 0; i < vec_len(k->outputs) && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, out[how], k->outputs[i]);
    for (size_t i = 0; i < vec_len(k->inputs) && at < len; i++)
        if (cgc_kernel_inplace(c, k, k->inputs[i]) < 0)
            at += (size_t)snprintf(buf + at, len - at, in[how], k->inputs[i]);
    if (k->head >= 0 && c->vals[k->head].scratch > 0 && at < len && how <= KA_CALL)
        snprintf(buf + at, len - at, how == KA_PARAMS ? ", float *restrict s%d" : ", s%d", k->head);
}

void cgc_kernel_comment(struct cgc *c, const struct cgc_kernel *k) {
    char line[1024];
    int at = snprintf(line, sizeof line, "/* kernel=%d fuses", c->f->nodes[k->root].kernel);
    for (size_t i = 0; i < vec_len(k->members) && at < (int)sizeof line - 16; i++)
        at += snprintf(line + at, sizeof line - (size_t)at, " %%%d", k->members[i]);
    cgc_emit(c, "%s */", line);
}

/* Elements per chunk of a kernel's loop split over the thread pool: smaller
 * kernels run on the calling thread alone. */
#define KERNEL_GRAIN 32768

/* The inputs of k read through an output's pointer, as locals of that name. */
static void inplace_locals(struct cgc *c, const struct cgc_kernel *k) {
    for (size_t i = 0; i < vec_len(k->inputs); i++) {
        int o = cgc_kernel_inplace(c, k, k->inputs[i]);
        if (o >= 0)
            cgc_emit(c, "const float *const v%d = v%d; /* the same buffer, updated in place */", k->inputs[i],
                     o);
    }
}

/* The C name of kernel k of entry point `index`: kernel_E_K for the IR's
 * kernel=K, kernel_E_nID for a lone elementwise node ID emitted as a kernel. */
static char *kernel_name(const struct cgc *c, int index, const struct cgc_kernel *k, char *buf, size_t len) {
    int kn = c->f->nodes[k->root].kernel;
    if (kn > 0)
        snprintf(buf, len, "kernel_%d_%d", index, kn);
    else
        snprintf(buf, len, "kernel_%d_n%d", index, k->root);
    return buf;
}

/* One kernel: NAME(...) runs the head, then the loop nest, split over the
 * thread pool by its first loop (NAME_range over [lo, hi), called through
 * NAME_chunk with the arguments in a struct) when the nest is big enough. */
static void print_kernel(struct cgc *c, int index, const struct cgc_kernel *k) {
    char name[64], params[2048], buf[2048], cnt[CGC_XSTR_MAX], inner_s[CGC_XSTR_MAX];
    kernel_name(c, index, k, name, sizeof name);
    struct cgc_x outer, inner;
    struct cgc_x total = cgc_count(&c->f->nodes[k->root].type.shape);
    struct pass_gemm_adam u;
    if (pass_gemm_adam(c->f, c->f->nodes[k->root].kernel, &u)) { /* the update within the GEMM */
        kernel_args(c, k, KA_PARAMS, params, sizeof params);
        cgc_emit(c, "static NRT_NOINLINE void %s(%s)", name, params);
        cgc_emit(c, "{");
        c->indent++;
        cgc_emit(c, "(void)n;");
        for (size_t i = 0; i < vec_len(k->members); i++) cg_node_comment(c, k->members[i]);
        inplace_locals(c, k);
        cgc_gemm_adam(c, &u);
        c->indent--;
        cgc_emit(c, "}");
        cgc_emit(c, "%s", "");
        return;
    }
    bool split = !cgc_kernel_conv_ep(c, k, NULL, NULL) && cgc_kernel_outer(c, k, &outer, &inner) &&
                 (total.n || total.k >= 2 * KERNEL_GRAIN);
    kernel_args(c, k, KA_PARAMS, params, sizeof params);
    if (split) {
        kernel_args(c, k, KA_RANGE, buf, sizeof buf);
        cgc_emit(c, "static void %s_range(int64_t lo, int64_t hi, %s)", name, buf);
        cgc_emit(c, "{");
        c->indent++;
        cgc_emit(c, "(void)n;");
        for (size_t i = 0; i < vec_len(k->members); i++) cg_node_comment(c, k->members[i]);
        for (size_t i = 0; i < vec_len(k->inputs); i++) /* the head's operands are read before */
            if (cgc_kernel_inplace(c, k, k->inputs[i]) < 0) cgc_emit(c, "(void)v%d;", k->inputs[i]);
        if (k->head >= 0)
            cgc_emit(c, "const float *const v%d = v%d; /* the head's result */", k->head, k->root);
        inplace_locals(c, k);
        cgc_kernel_range(c, k);
        c->indent--;
        cgc_emit(c, "}");
        kernel_args(c, k, KA_FIELDS, buf, sizeof buf);
        cgc_emit(c, "struct %s_args { %s };", name, buf);
        cgc_emit(c, "static void %s_chunk(void *arg, int64_t lo, int64_t hi)", name);
        cgc_emit(c, "{");
        kernel_args(c, k, KA_FROM, buf, sizeof buf);
        cgc_emit(c, "    const struct %s_args *a = arg;", name);
        cgc_emit(c, "    %s_range(lo, hi, %s);", name, buf);
        cgc_emit(c, "}");
    }
    cgc_emit(c, "static NRT_NOINLINE void %s(%s)", name, params);
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "(void)n;");
    if (!split) {
        for (size_t i = 0; i < vec_len(k->members); i++) cg_node_comment(c, k->members[i]);
        inplace_locals(c, k);
        cgc_kernel_body(c, k);
    } else {
        cgc_kernel_head(c, k);
        kernel_args(c, k, KA_INIT, buf, sizeof buf);
        cgc_emit(c, "struct %s_args a = {%s};", name, buf);
        cgc_xstr(inner, inner_s, sizeof inner_s);
        cgc_emit(c, "nrt_parallel_for(%s, (%d + (%s) - 1) / (%s), %s_chunk, &a);",
                 cgc_xstr(outer, cnt, sizeof cnt), KERNEL_GRAIN, inner_s, inner_s, name);
    }
    c->indent--;
    cgc_emit(c, "}");
    cgc_emit(c, "%s", "");
}

static bool ident_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

static char *dup_str(const char *s) {
    char *d = strdup(s);
    if (!d) netc_internal_error(__FILE__, __LINE__, "out of memory");
    return d;
}

/* Starts capturing what the emitters print (at indentation `indent`) into a
 * string; end_capture returns it and restores the output. */
struct capture {
    FILE *out;  /* the output before */
    int indent; /* the indentation before */
    char *text; /* the captured text */
    size_t len; /* its length */
};

static void begin_capture(struct cgc *c, struct capture *cap, int indent) {
    *cap = (struct capture){c->out, c->indent, NULL, 0};
    c->out = open_memstream(&cap->text, &cap->len);
    if (!c->out) netc_internal_error(__FILE__, __LINE__, "out of memory");
    c->indent = indent;
}

static char *end_capture(struct cgc *c, struct capture *cap) {
    if (fclose(c->out) != 0 || !cap->text) netc_internal_error(__FILE__, __LINE__, "out of memory");
    c->out = cap->out;
    c->indent = cap->indent;
    return cap->text;
}

/* Prints function `text` to out, or with opt->part, to a further translation
 * unit with its function `name` made extern and declared in out. */
static void put_function(struct cgc *c, FILE *out, const char *text, const char *name) {
    struct cgc_seen *s = c->seen;
    if (!s || !s->opt || !s->opt->part || s->failed) {
        fputs(text, out);
        return;
    }
    if (!s->part || s->part_len >= s->opt->part_bytes) {
        if (s->part && fclose(s->part) != 0) s->failed = true;
        s->part = s->failed ? NULL : s->opt->part(s->opt->part_ctx, ++s->parts);
        if (!s->part) {
            s->failed = true;
            fputs(text, out);
            return;
        }
        fputs("/* Functions of the model's kernels and ops, generated by netc. Do not edit. */\n"
              "#include \"netrt.h\"\n\n",
              s->part);
        s->part_len = 0;
    }
    char head[128];
    snprintf(head, sizeof head, "static NRT_NOINLINE void %s(", name);
    const char *at = strstr(text, head), *end = at ? strchr(at, '\n') : NULL;
    NETC_ASSERT(at && end && (at == text || at[-1] == '\n'));
    fprintf(out, "%.*s;\n", (int)(end - at - 7), at + 7); /* the prototype, without "static " */
    fprintf(s->part, "%.*s%s", (int)(at - text), text, at + 7);
    s->part_len += strlen(text);
}

/* Prints function `text` (named `name`) to out unless an identical one was
 * printed before in the module (c->seen). Frees text; returns the name to call
 * (a new string). */
static char *share_function(struct cgc *c, FILE *out, char *text, const char *name) {
    char *canon = c->seen ? cg_canonical(text, name, "%vtsdm") : NULL;
    for (size_t i = 0; canon && i < vec_len(c->seen->text); i++)
        if (strcmp(c->seen->text[i], canon) == 0) {
            free(canon);
            free(text);
            return dup_str(c->seen->name[i]);
        }
    put_function(c, out, text, name);
    free(text);
    if (canon) {
        vec_push(c->seen->text, canon);
        vec_push(c->seen->name, dup_str(name));
    }
    return dup_str(name);
}

/* Prints kernel k unless an identical one was printed before in the module;
 * either way c->kname[k->root] names the function to call. */
static void emit_kernel(struct cgc *c, int index, const struct cgc_kernel *k) {
    char name[64];
    struct capture cap;
    kernel_name(c, index, k, name, sizeof name);
    begin_capture(c, &cap, 0);
    print_kernel(c, index, k);
    char *text = end_capture(c, &cap);
    c->kname[k->root] = share_function(c, c->out, text, name);
}

/* Whether identifier `word` occurs in text as a whole identifier. */
static bool mentions(const char *text, const char *word) {
    size_t n = strlen(word);
    for (const char *p = strstr(text, word); p; p = strstr(p + 1, word))
        if ((p == text || !ident_char(p[-1])) && !ident_char(p[n])) return true;
    return false;
}

/* The values v<id>/s<id> that node id's code `text` names, in order of first
 * appearance, into ids (value ids; scratch as -1 - id); false when it names
 * the workspace itself or a value not declared before it, so that it cannot be
 * moved into a function of its own. */
static bool outline_params(const struct cgc *c, int id, const char *text, int **ids) {
    if (mentions(text, "ws") || mentions(text, "mn")) return false;
    for (const char *p = text; *p;) {
        if (!ident_char(*p)) {
            p++;
            continue;
        }
        const char *q = p;
        while (ident_char(*q)) q++;
        if ((*p == 'v' || *p == 's') && q - p > 1 && p[1] >= '0' && p[1] <= '9') {
            long x = 0;
            bool digits = true;
            for (const char *d = p + 1; d < q; d++) {
                digits &= *d >= '0' && *d <= '9';
                if (digits) x = x * 10 + (*d - '0');
            }
            if (digits) {
                /* Declared before: the node's operands, or values some ops read
                 * beside them (variance reads its mean). */
                if (x > id || (*p == 's' && c->vals[x].scratch <= 0)) return false;
                int key = *p == 'v' ? (int)x : -1 - (int)x;
                bool dup = false;
                for (size_t i = 0; i < vec_len(*ids); i++) dup |= (*ids)[i] == key;
                if (!dup) vec_push(*ids, key);
            }
        }
        p = q;
    }
    return true;
}

/* ------------------------------------------------------------- profile */

/* NETC_PROFILE (runtime/profile.c): the entry point marks the start of each
 * unit of its code, NRT_PROF_MARK(ctx, U) (one predictable branch when the
 * profile is off), and a table prof_E[] describes the units: the function
 * called, the IR ops and values, the layer, FLOPs and bytes per run. */
struct cgc_prof_unit {
    char *fn;              /* the function called, or "(inline)" (owned) */
    char ops[256];         /* "conv2d+bias_add+relu %2 %4 %5" */
    char layer[128];       /* the first parameter's prefix, or "" */
    double flops, flops_n; /* per run: flops + flops_n * n */
    double bytes, bytes_n; /* bytes read and written, likewise */
};

/* Adds value id's bytes to u. */
static void prof_bytes(const struct cgc *c, struct cgc_prof_unit *u, int id, double times) {
    const struct ir_node *n = cgc_node(c, id);
    struct cgc_x x = cgc_count(&n->type.shape);
    double b = (double)x.k * (double)dtype_size(n->type.dtype) * times;
    if (x.n)
        u->bytes_n += b;
    else
        u->bytes += b;
}

/* The parameter that value p is: read (PARAM) or, in a batch function, the
 * value an earlier step assigned to it (passes/batch.c); else NULL. */
static const char *param_of(const struct cgc *c, const struct ir_node *p) {
    if (p->op == OP_PARAM) return p->sym;
    int id = (int)(p - c->f->nodes);
    for (int j = id + 1; j < ir_func_len(c->f) && vec_len(c->f->steps); j++) {
        const struct ir_node *a = &c->f->nodes[j];
        if (a->op != OP_ASSIGN || a->args[0] != id) continue;
        for (size_t b = 0; b < vec_len(c->m->buffers); b++)
            if (strcmp(c->m->buffers[b].name, a->sym) == 0)
                return c->m->buffers[b].kind == BUF_PARAM ? a->sym : NULL;
        return NULL;
    }
    return NULL;
}

/* Adds member id (its op, FLOPs and layer) to u. */
static void prof_member(const struct cgc *c, struct cgc_prof_unit *u, int id) {
    const struct ir_node *n = cgc_node(c, id);
    const char *name = op_info[n->op].name;
    size_t l = strlen(u->ops), nl = strlen(name);
    bool seen = false; /* each op once: "mul+add+sqrt+div" */
    for (const char *p = strstr(u->ops, name); p && !seen; p = strstr(p + 1, name))
        seen = (p == u->ops || p[-1] == '+') && (p[nl] == '+' || !p[nl]);
    if (!seen && l + 40 < sizeof u->ops) snprintf(u->ops + l, sizeof u->ops - l, "%s%s", l ? "+" : "", name);
    bool per_n;
    double fl = cgc_node_flops(c->f, n, &per_n);
    if (per_n)
        u->flops_n += fl;
    else
        u->flops += fl;
    for (int a = 0; a < n->nargs && !u->layer[0]; a++) {
        const char *sym = param_of(c, cgc_arg(c, id, a));
        if (!sym) continue;
        snprintf(u->layer, sizeof u->layer, "%s", sym);
        char *dot = strrchr(u->layer, '.');
        if (dot) *dot = '\0';
    }
}

/* Appends " %a %b" for the ids to u's ops. */
static void prof_values(struct cgc_prof_unit *u, const int *ids, size_t count) {
    for (size_t i = 0; i < count; i++) {
        size_t l = strlen(u->ops);
        if (l + 16 >= sizeof u->ops) break;
        snprintf(u->ops + l, sizeof u->ops - l, " %%%d", ids[i]);
    }
}

/* A unit starts here: the code of node id (kk NULL) or of kernel kk,
 * calling fn (copied). Prints its mark and records it in the vec *prof. */
static void prof_mark(struct cgc *c, struct cgc_prof_unit **prof, int id, const struct cgc_kernel *kk,
                      const char *fn) {
    struct cgc_prof_unit u = {0};
    u.fn = dup_str(fn);
    if (kk) {
        for (size_t i = 0; i < vec_len(kk->members); i++) prof_member(c, &u, kk->members[i]);
        size_t nm = vec_len(kk->members);
        if (nm <= 4)
            prof_values(&u, kk->members, nm);
        else {
            size_t l = strlen(u.ops);
            snprintf(u.ops + l, sizeof u.ops - l, " %%%d..%%%d (%zu nodes)", kk->members[0],
                     kk->members[nm - 1], nm);
        }
        for (size_t i = 0; i < vec_len(kk->inputs); i++) prof_bytes(c, &u, kk->inputs[i], 1);
        for (size_t i = 0; i < vec_len(kk->outputs); i++) prof_bytes(c, &u, kk->outputs[i], 1);
    } else {
        const struct ir_node *n = cgc_node(c, id);
        prof_member(c, &u, id);
        prof_values(&u, &id, 1);
        for (int a = 0; a < n->nargs; a++) {
            bool dup = false;
            for (int b = 0; b < a; b++) dup |= n->args[b] == n->args[a];
            if (!dup) prof_bytes(c, &u, n->args[a], 1);
        }
        prof_bytes(c, &u, id, 1);
    }
    cgc_emit(c, "NRT_PROF_MARK(ctx, %zu);", vec_len(*prof));
    vec_push(*prof, u);
}

/* The runtime function inline code calls first ("nrt_maxpool2d"), else
 * "(inline)"; NULL for code that does nothing (declarations, comments). */
static char *inline_name(const char *text) {
    bool code = false;
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        if (!end) end = p + strlen(p);
        while (p < end && (*p == ' ' || *p == '\t')) p++;
        if (p < end && strncmp(p, "/*", 2) != 0 && strncmp(p, "(void)", 6) != 0) code = true;
        p = *end ? end + 1 : end;
    }
    if (!code) return NULL;
    for (const char *p = strstr(text, "nrt_"); p; p = strstr(p + 1, "nrt_")) {
        if (p > text && ident_char(p[-1])) continue;
        const char *q = p;
        while (ident_char(*q)) q++;
        if (*q != '(') continue;
        char name[64];
        snprintf(name, sizeof name, "%.*s", (int)(q - p), p);
        return dup_str(name);
    }
    return dup_str("(inline)");
}

/* Prints `static const struct nrt_prof_desc prof_E[]` for entry point index
 * from the vec prof, and frees it; returns the number of units. */
static int prof_table(struct cgc *c, int index, struct cgc_prof_unit *prof) {
    fprintf(c->out, "static const struct nrt_prof_desc prof_%d[] = {\n", index);
    for (size_t i = 0; i < vec_len(prof); i++) {
        const struct cgc_prof_unit *u = &prof[i];
        fputs("    {", c->out);
        cgc_put_str(c->out, u->fn);
        fputs(", ", c->out);
        cgc_put_str(c->out, u->ops);
        fputs(", ", c->out);
        cgc_put_str(c->out, u->layer);
        fprintf(c->out, ", %.17g, %.17g, %.17g, %.17g},\n", u->flops, u->flops_n, u->bytes, u->bytes_n);
        free(u->fn);
    }
    if (!vec_len(prof)) fputs("    {NULL, NULL, NULL, 0, 0, 0, 0},\n", c->out);
    fputs("};\n\n", c->out);
    int units = (int)vec_len(prof);
    vec_free(prof);
    return units;
}

/* Node id's code, outside any kernel, as a function of its own,
 * node_E_ID(ctx, n, the values it names), printed to defs before the entry
 * point (once per module when identical), so that the C compiler optimises
 * each op's loops alone and the forward ops of several entry points, or of
 * repeated blocks, are compiled once. Code without a loop stays inline, and
 * so does a loop of one line (a constant's fill). */
static char *emit_node(struct cgc *c, struct cgc_prof_unit **prof, FILE *defs, int index, int id) {
    struct capture cap;
    begin_capture(c, &cap, 1);
    cgc_op_emit(c, id);
    char *text = end_capture(c, &cap);
    int *ids = NULL;
    bool one_line = strchr(text, '\n') == text + strlen(text) - 1;
    if (!strstr(text, "for (") || one_line || !outline_params(c, id, text, &ids)) {
        char *fn = inline_name(text);
        if (fn) prof_mark(c, prof, id, NULL, fn);
        fputs(text, c->out);
        free(text);
        vec_free(ids);
        return fn;
    }
    char name[64], params[4096], args[4096];
    snprintf(name, sizeof name, "node_%d_%d", index, id);
    size_t pa = (size_t)snprintf(params, sizeof params, "struct nrt_ctx *ctx, int64_t n");
    size_t aa = (size_t)snprintf(args, sizeof args, "ctx, n");
    for (size_t i = 0; i < vec_len(ids) && pa < sizeof params && aa < sizeof args; i++) {
        int x = ids[i] >= 0 ? ids[i] : -1 - ids[i];
        const char *ct = ids[i] >= 0 ? cgc_ctype(cgc_node(c, x)->type.dtype) : "float";
        pa += (size_t)snprintf(params + pa, sizeof params - pa, ", %s *const %c%d", ct,
                               ids[i] >= 0 ? 'v' : 's', x);
        aa += (size_t)snprintf(args + aa, sizeof args - aa, ", %c%d", ids[i] >= 0 ? 'v' : 's', x);
    }
    vec_free(ids);
    begin_capture(c, &cap, 1);
    cg_node_comment(c, id);
    char *comment = end_capture(c, &cap);
    char *fn = NULL;
    size_t fn_len = 0;
    FILE *f = open_memstream(&fn, &fn_len);
    if (!f) netc_internal_error(__FILE__, __LINE__, "out of memory");
    fprintf(f, "static NRT_NOINLINE void %s(%s)\n{\n%s    (void)ctx, (void)n;\n%s}\n\n", name, params,
            comment, text);
    free(comment);
    if (fclose(f) != 0 || !fn) netc_internal_error(__FILE__, __LINE__, "out of memory");
    bool fails = mentions(text, "return");
    free(text);
    char *call = share_function(c, defs, fn, name);
    prof_mark(c, prof, id, NULL, call);
    cgc_emit(c, "%s(%s);", call, args);
    if (fails) cgc_emit(c, "if (ctx->failed) return;");
    return call;
}

/* Whether node id, in no kernel, is an f32 elementwise op big enough to be
 * emitted as a kernel of its own (so that its loop is split over the thread
 * pool); fills *k then (free with kernel_free). */
static bool lone_kernel(const struct cgc *c, int id, struct cgc_kernel *k) {
    const struct ir_node *n = cgc_node(c, id);
    const struct cgc_val *v = &c->vals[id];
    if (v->kernel >= 0 || v->alias >= 0 || v->buffer >= 0 || !ir_kernel_ewise_op(n->op)) return false;
    if (n->type.dtype != DT_F32 || n->nargs > 8) return false;
    for (int a = 0; a < n->nargs; a++)
        if (cgc_arg(c, id, a)->type.dtype != DT_F32) return false;
    struct cgc_x total = cgc_count(&n->type.shape);
    if (!total.n && total.k < 2 * KERNEL_GRAIN) return false;
    *k = (struct cgc_kernel){id, -1, NULL, NULL, NULL};
    vec_push(k->members, id);
    vec_push(k->outputs, id);
    for (int a = 0; a < n->nargs; a++) {
        bool dup = false;
        for (size_t j = 0; j < vec_len(k->inputs); j++) dup |= k->inputs[j] == n->args[a];
        if (!dup) vec_push(k->inputs, n->args[a]);
    }
    return true;
}

static void kernel_free(struct cgc_kernel *k) {
    vec_free(k->members);
    vec_free(k->inputs);
    vec_free(k->outputs);
}

/* One static function per fused kernel of entry point `index`, and one per
 * big lone elementwise node. */
static void emit_kernels(struct cgc *c, int index) {
    for (int id = 0; id < ir_func_len(c->f); id++) {
        struct cgc_kernel k;
        if (!lone_kernel(c, id, &k)) continue;
        emit_kernel(c, index, &k);
        kernel_free(&k);
    }
    for (size_t q = vec_len(c->kernels); q-- > 0;) /* formed from the end: print in order */
        emit_kernel(c, index, &c->kernels[q]);
}

/* Declares v<id> (a buffer, an alias or a workspace slot) and s<id>, its scratch. */
static void declare_value(struct cgc *c, int id, int sid) {
    const struct ir_node *n = cgc_node(c, id);
    const struct cgc_val *v = &c->vals[id];
    const char *ct = cgc_ctype(n->type.dtype);
    char where[128];
    if (v->buffer >= 0)
        cgc_emit(c, "%s *const v%d = (%s *)ctx->buf[%d];", ct, id, ct, v->buffer);
    else if (v->alias >= 0)
        cgc_emit(c, "%s *const v%d = (%s *)v%d;", ct, id, ct, v->alias);
    else {
        slot_expr(c, v->per_n, v->off, where, sizeof where);
        cgc_emit(c, "%s *const v%d = (%s *)(%s);", ct, id, ct, where);
    }
    if (sid >= 0 && c->vals[sid].scratch > 0) {
        const struct cgc_val *sv = &c->vals[sid];
        slot_expr(c, sv->scratch_n, sv->scratch_off, where, sizeof where);
        cgc_emit(c, "float *const s%d = (float *)(%s);", sid, where);
    }
    if (v->uses == 0 || v->buffer >= 0)
        cgc_emit(c, "(void)v%d;", id); /* kernels may read a buffer in place */
}

/* The gradient buckets of the function being emitted (data parallelism): each
 * starts right after the code that writes its last gradient, the reductions in
 * flight are progressed after every later kernel, and each is waited for just
 * before the first code that reads one of its reduced gradients. */
struct dp_emit {
    int n;         /* buckets */
    int *start_at; /* per bucket: the node after whose code it starts */
    size_t *off;   /* its byte offset in the workspace */
    size_t *bytes; /* its bytes */
    int *tensors;  /* its gradients */
    bool *started; /* start emitted */
    bool *waited;  /* wait emitted */
};

/* The node at which value id's code runs (its kernel's root). */
static int code_at(const struct cgc *c, int id) {
    return c->vals[id].kernel >= 0 ? c->kernels[c->vals[id].kernel].root : id;
}

static void dp_init(const struct cgc *c, struct dp_emit *d) {
    memset(d, 0, sizeof *d);
    d->n = cgc_buckets(c, 0, NULL, NULL, NULL);
    if (!d->n) return;
    size_t n = (size_t)d->n;
    d->start_at = calloc(n, sizeof *d->start_at), d->off = calloc(n, sizeof *d->off);
    d->bytes = calloc(n, sizeof *d->bytes), d->tensors = calloc(n, sizeof *d->tensors);
    d->started = calloc(n, sizeof *d->started), d->waited = calloc(n, sizeof *d->waited);
    if (!d->start_at || !d->off || !d->bytes || !d->tensors || !d->started || !d->waited)
        netc_internal_error(__FILE__, __LINE__, "out of memory");
    cgc_buckets(c, d->n, d->off, d->bytes, d->tensors);
    for (int id = 0; id < ir_func_len(c->f); id++)
        if (c->vals[id].bucket >= 0 && code_at(c, id) > d->start_at[c->vals[id].bucket])
            d->start_at[c->vals[id].bucket] = code_at(c, id);
}

static void dp_free(struct dp_emit *d) {
    free(d->start_at), free(d->off), free(d->bytes), free(d->tensors), free(d->started), free(d->waited);
}

/* Before the code of node id (all members of a kernel at its root): waits for
 * the buckets whose reduced gradients it reads (through aliases too). */
static void dp_before(struct cgc *c, struct dp_emit *d, int id) {
    if (!d->n) return;
    const struct cgc_kernel *k = c->vals[id].kernel >= 0 ? &c->kernels[c->vals[id].kernel] : NULL;
    if (k && id != k->root) return;
    size_t nm = k ? vec_len(k->members) : 1;
    for (size_t i = 0; i < nm; i++) {
        const struct ir_node *n = cgc_node(c, k ? k->members[i] : id);
        if (bucket_of(n) >= 0) continue;
        for (int a = 0; a < n->nargs; a++)
            for (int x = n->args[a]; x >= 0; x = c->vals[x].alias) {
                int b = bucket_of(cgc_node(c, x));
                if (b < 0 || d->waited[b]) continue;
                cgc_emit(c, "nrt_dp_wait(ctx, %d);", b);
                d->waited[b] = true;
            }
    }
}

/* After the code of node id: progress the reductions in flight, then start
 * the buckets whose last gradient it wrote. */
static void dp_after(struct cgc *c, struct dp_emit *d, int id) {
    if (!d->n) return;
    const struct ir_node *n = cgc_node(c, id);
    if (code_at(c, id) != id || n->op == OP_INPUT || n->op == OP_PARAM || pass_memplan_aliases(n)) return;
    bool flying = false;
    for (int b = 0; b < d->n; b++) flying |= d->started[b] && !d->waited[b];
    if (flying) cgc_emit(c, "nrt_dp_progress(ctx);");
    for (int b = 0; b < d->n; b++)
        if (d->start_at[b] == id && !d->started[b]) {
            cgc_emit(
                c, "nrt_dp_start(ctx, %d, (float *)(ws + %zu), %zu); /* gradient bucket %d: %d tensor%s */",
                b, d->off[b], d->bytes[b] / sizeof(float), b, d->tensors[b], d->tensors[b] == 1 ? "" : "s");
            d->started[b] = true;
        }
}

/* Emits entry point `index` as entry_<index>, and its NETC_PROFILE table;
 * returns the number of units in that. */
static int emit_function(struct cgc *c, int index) {
    const struct ir_func *f = c->f;
    int len = ir_func_len(f);
    struct cgc_prof_unit *prof = NULL; /* vec */
    struct dp_emit dp;
    dp_init(c, &dp);
    c->kname = calloc((size_t)len, sizeof *c->kname);
    if (!c->kname && len) netc_internal_error(__FILE__, __LINE__, "out of memory");
    emit_kernels(c, index);
    FILE *defs = c->out; /* the functions of outlined nodes go before the entry point */
    struct capture entry;
    begin_capture(c, &entry, 0);
    cgc_emit(c, "static void entry_%d(struct nrt_ctx *ctx, int64_t n)", index);
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "char *const ws = ctx->ws;");
    cgc_emit(c, "const size_t mn = (size_t)ctx->max_n;");
    cgc_emit(c, "(void)ws, (void)mn, (void)n;");
    for (int id = 0; id < len; id++) {
        const struct cgc_val *v = &c->vals[id];
        cg_node_comment(c, id);
        const struct cgc_kernel *k = v->kernel >= 0 ? &c->kernels[v->kernel] : NULL;
        char args[2048];
        struct cgc_kernel lone;
        dp_before(c, &dp, id);
        if (!k && lone_kernel(c, id, &lone)) {
            declare_value(c, id, id);
            kernel_args(c, &lone, KA_CALL, args, sizeof args);
            prof_mark(c, &prof, id, &lone, c->kname[id]);
            cgc_emit(c, "%s(%s);", c->kname[id], args);
            kernel_free(&lone);
            dp_after(c, &dp, id);
            continue;
        }
        if (!k) {
            declare_value(c, id, id);
            free(emit_node(c, &prof, defs, index, id));
            dp_after(c, &dp, id);
            continue;
        }
        /* A kernel's outputs are declared at its first member (an assign in
         * between may alias one), and it runs at its root. */
        if (id == k->members[0])
            for (size_t i = 0; i < vec_len(k->outputs); i++)
                declare_value(c, k->outputs[i], k->outputs[i] == k->root ? k->head : -1);
        if (id != k->root) continue;
        cgc_kernel_comment(c, k);
        kernel_args(c, k, KA_CALL, args, sizeof args);
        prof_mark(c, &prof, id, k, c->kname[k->root]);
        cgc_emit(c, "%s(%s);", c->kname[k->root], args);
        dp_after(c, &dp, id);
    }
    for (int b = 0; b < dp.n; b++)
        if (dp.started[b] && !dp.waited[b]) cgc_emit(c, "nrt_dp_wait(ctx, %d);", b);
    dp_free(&dp);
    /* ASSIGNs take effect at the end: every PARAM read saw the old values. */
    struct cgc_prof_unit copies = {dup_str("memcpy"), "assign", "", 0, 0, 0, 0};
    bool copying = false;
    for (int id = 0; id < len; id++) {
        const struct ir_node *n = &f->nodes[id];
        if (n->op != OP_ASSIGN) continue;
        int b = cgc_buffer_index(c->m, n->sym), x = id;
        while (c->vals[x].alias >= 0) x = c->vals[x].alias;
        if (c->vals[x].buffer != b) { /* the plan did not put it in place: a copy */
            if (!copying) cgc_emit(c, "NRT_PROF_MARK(ctx, %zu);", vec_len(prof));
            copying = true;
            prof_bytes(c, &copies, id, 2);
        }
        char cnt[CGC_XSTR_MAX];
        cgc_emit(c, "if ((void *)v%d != ctx->buf[%d]) memcpy(ctx->buf[%d], v%d, sizeof(%s) * (size_t)(%s));",
                 id, b, b, id, cgc_ctype(n->type.dtype),
                 cgc_xstr(cgc_count(&n->type.shape), cnt, sizeof cnt));
    }
    if (copying)
        vec_push(prof, copies);
    else
        free(copies.fn);
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        cgc_emit(c, "ctx->out[%zu] = v%d;", o, f->outputs[o].value);
    for (int id = 0; id < len; id++) free(c->kname[id]);
    free(c->kname);
    c->kname = NULL;
    c->indent--;
    cgc_emit(c, "}");
    cgc_emit(c, "%s", "");
    char *text = end_capture(c, &entry);
    fputs(text, c->out);
    free(text);
    return prof_table(c, index, prof);
}

void cgc_arena_sizes(const struct ir_module *m, int64_t batch, struct cgc_arena *a) {
    *a = (struct cgc_arena){0, 0, 0, 0};
    for (size_t e = 0; e < vec_len(m->funcs); e++) { /* the workspaces of the memory plan */
        const struct ir_func *f = m->funcs[e];
        if (!f->planned) NETC_INTERNAL("@%s has no memory plan: the memplan pass has not run", f->name);
        size_t fixed = (size_t)f->ws_fixed, per_n = (size_t)f->ws_batch;
        size_t need = fixed + per_n * (size_t)(batch > 0 ? batch : 1);
        if (need > a->ws_bytes) *a = (struct cgc_arena){fixed, per_n, need, 0};
    }
    for (size_t i = 0; i < vec_len(m->buffers); i++) {
        const struct ir_buffer *b = &m->buffers[i];
        if (b->kind != BUF_INPUT)
            a->param_bytes += (size_t)shape_static_numel(&b->type.shape) * dtype_size(b->type.dtype);
    }
}

/* -------------------------------------------------------------- slices */

/* Workspace bytes per batch item that one slice of a sliced entry point may
 * take: its activations stay in the core's L2 cache from layer to layer
 * (mnist_cnn's forward measured 3x the images/s at batches of 4-16 as at 256). */
#define SLICE_BYTES (512 * 1024)

/* Whether value v of f has the batch dim first, or no batch dim (*has_n). */
static bool batch_first(const struct ir_func *f, int v, bool *has_n) {
    const struct shape *s = &f->nodes[v].type.shape;
    *has_n = shape_has_n(s);
    return !*has_n || (s->rank > 0 && s->dim[0] == IR_DIM_N);
}

/* Items per slice of eval entry f when every batch item's results depend on
 * that item's inputs alone (inputs, parameters, convolutions, pooling, dense
 * matmuls, reshapes keeping the batch first, elementwise ops; every value and
 * output batch-first), so that the runtime may run a large batch as slices
 * whose activations stay in cache; 0 otherwise. */
static int slice_items(const struct ir_func *f) {
    if (f->mode != MODE_EVAL || !f->ws_batch || !vec_len(f->outputs)) return 0;
    for (int id = 0; id < ir_func_len(f); id++) {
        const struct ir_node *n = &f->nodes[id];
        bool has_n, arg_n, any_arg_n = false;
        if (!batch_first(f, id, &has_n)) return 0;
        for (int a = 0; a < n->nargs; a++) {
            if (!batch_first(f, n->args[a], &arg_n)) return 0;
            any_arg_n |= arg_n;
        }
        if (any_arg_n && !has_n) return 0; /* a reduction over the batch */
        switch (n->op) {
        case OP_INPUT:
        case OP_PARAM:
        case OP_CONV2D:
        case OP_MAXPOOL2D:
        case OP_AVGPOOL2D:
        case OP_RESHAPE:
            break;
        case OP_CONST:
            if (has_n) return 0;
            break;
        case OP_MATMUL: /* rows of a batch-first A by a weight */
            if (ir_attr_i(n, ATTR_TRANSPOSE_A) || !batch_first(f, n->args[1], &arg_n) || arg_n) return 0;
            break;
        default:
            if (!ir_kernel_ewise_op(n->op)) return 0;
        }
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        bool has_n;
        if (!batch_first(f, f->outputs[o].value, &has_n) || !has_n) return 0;
    }
    int64_t items = SLICE_BYTES / f->ws_batch;
    return items < 1 ? 1 : items > 1 << 20 ? 1 << 20 : (int)items;
}

/* ---------------------------------------------------------- descriptor */

static void emit_descriptor(const struct ir_module *m, FILE *out, const struct cg_options *opt,
                            const size_t *ws_fixed, const size_t *ws_per_n, const char *extra,
                            const int *n_prof);

static void put_dims(FILE *out, const struct shape *s) {
    fputc('{', out);
    for (int i = 0; i < s->rank; i++) fprintf(out, "%s%lld", i ? ", " : "", (long long)s->dim[i]);
    if (s->rank == 0) fputc('0', out);
    fputc('}', out);
}

static void put_source(FILE *out, const struct ir_source *s) {
    if (!s->kind) {
        fputs("{NULL, NULL, 0, {0}, 0, {NULL}, {0}}", out);
        return;
    }
    fputc('{', out);
    cgc_put_str(out, s->kind);
    fputs(", ", out);
    cgc_put_str(out, s->path);
    fprintf(out, ", %d, {%.17g, %.17g}, %d, {", s->nargs, s->nargs > 0 ? s->args[0] : 0.0,
            s->nargs > 1 ? s->args[1] : 0.0, s->nkw);
    for (int i = 0; i < s->nkw; i++) {
        if (i) fputs(", ", out);
        cgc_put_str(out, s->kw[i]);
    }
    if (!s->nkw) fputs("NULL", out);
    fputs("}, {", out);
    for (int i = 0; i < s->nkw; i++) fprintf(out, "%s%.17g", i ? ", " : "", s->kwval[i]);
    if (!s->nkw) fputc('0', out);
    fputs("}}", out);
}

static const char *const init_names[] = {"NRT_INIT_ZEROS", "NRT_INIT_CONST", "NRT_INIT_UNIFORM",
                                         "NRT_INIT_NORMAL", "NRT_INIT_RANGE"};
static const char *const kind_names[] = {"NRT_BUF_INPUT", "NRT_BUF_PARAM", "NRT_BUF_STATE"};

static void put_optim(FILE *out, const struct ir_optim *o) {
    if (!o->kind) {
        fputs("NULL", out);
        return;
    }
    char text[1024];
    int k = snprintf(text, sizeof text, "%s(", o->kind);
    for (int i = 0; i < o->nkw && k < (int)sizeof text - 40; i++)
        k += snprintf(text + k, sizeof text - (size_t)k, "%s%s=%g", i ? ", " : "", o->kw[i], o->kwval[i]);
    if (k < (int)sizeof text - 2) snprintf(text + k, sizeof text - (size_t)k, ")");
    cgc_put_str(out, text);
}

/* Whether f reads model input b. */
static bool reads_input(const struct ir_func *f, const struct ir_buffer *b) {
    if (b->kind != BUF_INPUT) return false;
    for (int id = 0; id < ir_func_len(f); id++)
        if (f->nodes[id].op == OP_INPUT && strcmp(f->nodes[id].sym, b->name) == 0) return true;
    return false;
}

/* The index of f's output named name, or -1. */
static int output_named(const struct ir_func *f, const char *name) {
    for (size_t o = 0; name && o < vec_len(f->outputs); o++)
        if (strcmp(f->outputs[o].name, name) == 0) return (int)o;
    return -1;
}

/* The first output of f that an accuracy metric computes (a scalar f32), or -1. */
static int accuracy_output(const struct ir_func *f) {
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        const struct ir_node *n = &f->nodes[f->outputs[o].value];
        if ((n->op == OP_ACCURACY || n->op == OP_MASKED_ACCURACY) && n->type.dtype == DT_F32 &&
            n->type.shape.rank == 0)
            return (int)o;
    }
    return -1;
}

/* The index of the function named name, or -1. */
static int func_named(const struct ir_module *m, const char *name) {
    for (size_t e = 0; e < vec_len(m->funcs); e++)
        if (strcmp(m->funcs[e]->name, name) == 0) return (int)e;
    return -1;
}

/* The indices the driver reads of entry f: the loss (train: the one minimised;
 * eval: the output the front end names loss), the accuracy metric, and the
 * learning rate (optim.c's state buffer "<entry>.lr"). */
struct cgc_roles cgc_entry_roles(const struct ir_module *m, const struct ir_func *f) {
    char lr[300];
    snprintf(lr, sizeof lr, "%s.lr", f->name);
    int loss = vec_len(f->steps) ? 0 : output_named(f, f->loss ? f->loss : "loss"); /* batch: step 0's */
    return (struct cgc_roles){loss, accuracy_output(f), f->mode == MODE_TRAIN ? cgc_buffer_index(m, lr) : -1};
}

/* The entry points the driver runs by role: the front end's names, and the
 * batch function (passes/batch.c). */
void cgc_model_roles(const struct ir_module *m, int *forward, int *evaluate, int *generate, int *batch) {
    *forward = func_named(m, "forward");
    *evaluate = func_named(m, "evaluate");
    *generate = func_named(m, "generate_step");
    *batch = -1;
    for (size_t e = 0; e < vec_len(m->funcs); e++)
        if (vec_len(m->funcs[e]->steps)) *batch = (int)e;
}

void cgc_emit_descriptor(const struct ir_module *m, FILE *out, const struct cg_options *opt,
                         const size_t *ws_fixed, const size_t *ws_per_n, const char *extra) {
    emit_descriptor(m, out, opt, ws_fixed, ws_per_n, extra, NULL);
}

/* cgc_emit_descriptor, with n_prof[e] units in each entry point's table
 * prof_E (NETC_PROFILE), or NULL: no tables. */
static void emit_descriptor(const struct ir_module *m, FILE *out, const struct cg_options *opt,
                            const size_t *ws_fixed, const size_t *ws_per_n, const char *extra,
                            const int *n_prof) {
    size_t nb = vec_len(m->buffers), nf = vec_len(m->funcs);
    int *nin = calloc(nf + 1, sizeof *nin);
    if (!nin) netc_internal_error(__FILE__, __LINE__, "out of memory");
    fputs("static const struct nrt_buffer_desc buffers[] = {\n", out);
    for (size_t i = 0; i < nb; i++) {
        const struct ir_buffer *b = &m->buffers[i];
        fputs("    {", out);
        cgc_put_str(out, b->name);
        fprintf(out, ", %s, %s, %d, ", kind_names[b->kind], dtype_enum(b->type.dtype), b->type.shape.rank);
        put_dims(out, &b->type.shape);
        fprintf(out, ", %s, %.17g, %.17g, ", init_names[b->init.kind], b->init.a, b->init.b);
        cgc_put_str(out, b->group);
        fputs(",\n     ", out);
        put_source(out, &b->data);
        fputs(",\n     ", out);
        put_source(out, &b->test);
        fputs("},\n", out);
    }
    if (!nb)
        fputs("    {NULL, NRT_BUF_INPUT, NRT_DT_F32, 0, {0}, NRT_INIT_ZEROS, 0, 0, NULL, {0}, {0}},\n", out);
    fputs("};\n\n", out);
    for (size_t e = 0; e < nf; e++) {
        const struct ir_func *f = m->funcs[e];
        fprintf(out, "static const struct nrt_output_desc outputs_%zu[] = {\n", e);
        for (size_t o = 0; o < vec_len(f->outputs); o++) {
            const struct type *t = &f->nodes[f->outputs[o].value].type;
            fputs("    {", out);
            cgc_put_str(out, f->outputs[o].name);
            fprintf(out, ", %s, %d, ", dtype_enum(t->dtype), t->shape.rank);
            put_dims(out, &t->shape);
            fputs("},\n", out);
        }
        if (!vec_len(f->outputs)) fputs("    {NULL, NRT_DT_F32, 0, {0}},\n", out);
        fputs("};\n", out);
        fprintf(out, "static const int inputs_%zu[] = {", e);
        nin[e] = 0;
        for (size_t i = 0; i < nb; i++)
            if (reads_input(f, &m->buffers[i])) fprintf(out, "%s%zu", nin[e]++ ? ", " : "", i);
        if (!nin[e]) fputs("-1", out);
        fprintf(out, "};\n\n");
    }
    fputs("static const struct nrt_entry_desc entries[] = {\n", out);
    for (size_t e = 0; e < nf; e++) {
        const struct ir_func *f = m->funcs[e];
        fputs("    {", out);
        cgc_put_str(out, f->name);
        fprintf(out, ", %s, ", f->mode == MODE_TRAIN ? "NRT_MODE_TRAIN" : "NRT_MODE_EVAL");
        cgc_put_str(out, f->loss);
        fputs(", ", out);
        put_optim(out, &f->optim);
        fputs(",\n     ", out);
        put_source(out, &f->optim.schedule);
        fprintf(out, ",\n     %zu, outputs_%zu, %d, inputs_%zu, entry_%zu, %zu, %zu,\n", vec_len(f->outputs),
                e, nin[e], e, e, ws_fixed[e], ws_per_n[e]);
        struct cgc_roles r = cgc_entry_roles(m, f);
        fprintf(out, "     %d, %d, %d", r.loss_output, r.accuracy_output, r.lr_buffer);
        if (n_prof)
            fprintf(out, ",\n     %d, prof_%zu, %d},\n", n_prof[e], e, slice_items(f));
        else
            fputs(", 0, NULL, 0},\n", out);
    }
    fputs("};\n\n", out);
    free(nin);
    struct cgc_layers sum;
    cgc_emit_layers(m, out, &sum);
    fputs("const struct nrt_model netc_model = {\n    ", out);
    cgc_put_str(out, m->name);
    fputs(", ", out);
    cgc_put_str(out, opt->netc_version ? opt->netc_version : "unknown");
    fprintf(
        out,
        ",\n    %zu, buffers, %zu, entries,\n    %lld, %lld, %lld, %lld,\n    %d, layers, %.17g, %.17g,\n",
        nb, nf, (long long)m->train.batch, (long long)m->train.epochs, (long long)m->train.seed,
        (long long)m->train.patience, sum.n, sum.train_flops, sum.train_fixed);
    int fwd, eval, gen, batch;
    cgc_model_roles(m, &fwd, &eval, &gen, &batch);
    fprintf(out, "    %d, %d, %d, %d,\n", fwd, eval, gen, batch);
    fprintf(out, "    %s,\n",
            extra ? extra : "\"c\", NULL, NULL /* the C target: host memory, no device layer */");
    fprintf(out, "    \"%s\" /* nrt_runtime_hash: the netrt.h netc was built with */\n", nrt_runtime_hash);
    fputs("};\n", out);
}

/* ---------------------------------------------------------------- emit */

bool cgc_check_module(const struct ir_module *m, const char *backend) {
    bool ok = true;
    for (size_t i = 0; i < vec_len(m->buffers); i++) {
        const struct ir_buffer *b = &m->buffers[i];
        if (b->type.dtype != DT_F32 && b->type.dtype != DT_I32) {
            diag_error(b->loc, "the %s backend supports f32 and i32 buffers, not %s", backend,
                       dtype_name(b->type.dtype));
            ok = false;
        }
        if (b->kind != BUF_INPUT && shape_has_n(&b->type.shape)) {
            diag_error(b->loc, "parameter or state buffer '%s' cannot have the batch dim N", b->name);
            ok = false;
        }
    }
    for (size_t e = 0; e < vec_len(m->funcs); e++) {
        const struct ir_func *f = m->funcs[e];
        if (vec_len(f->outputs) > 64) {
            diag_error(f->loc, "entry point '%s' has %zu outputs; the runtime takes at most 64", f->name,
                       vec_len(f->outputs));
            ok = false;
        }
        for (int id = 0; id < ir_func_len(f); id++) {
            const struct ir_node *n = &f->nodes[id];
            if (n->type.dtype != DT_F32 && n->type.dtype != DT_I32) {
                diag_error(n->loc, "the %s backend supports f32 and i32 values, not %s", backend,
                           dtype_name(n->type.dtype));
                ok = false;
            }
        }
    }
    return ok;
}

static bool emit_c(const struct ir_module *m, FILE *out, const struct cg_options *opt) {
    if (!cgc_check_module(m, "C")) return false;
    cg_file_head(out, m, opt, "", c_about);
    size_t nf = vec_len(m->funcs);
    size_t *ws_fixed = calloc(nf + 1, sizeof *ws_fixed), *ws_per_n = calloc(nf + 1, sizeof *ws_per_n);
    if (!ws_fixed || !ws_per_n) netc_internal_error(__FILE__, __LINE__, "out of memory");
    int *n_prof = calloc(nf + 1, sizeof *n_prof);
    if (!n_prof) netc_internal_error(__FILE__, __LINE__, "out of memory");
    struct cgc_seen seen = {NULL, NULL, opt, NULL, 0, 0, false};
    for (size_t e = 0; e < nf; e++) {
        struct cgc c = {out, 0, m, m->funcs[e], NULL, 0, 0, NULL, &cg_lang_c, &seen, NULL};
        char fname[128];
        cgc_layout(&c);
        fprintf(out, "/* entry point %s (%s) */\n", cg_comment_safe(m->funcs[e]->name, fname, sizeof fname),
                m->funcs[e]->mode == MODE_TRAIN ? "train" : "eval");
        n_prof[e] = emit_function(&c, (int)e);
        ws_fixed[e] = c.fixed_total;
        ws_per_n[e] = c.per_n_total;
        cgc_layout_free(&c);
    }
    if (seen.part && fclose(seen.part) != 0) seen.failed = true;
    for (size_t i = 0; i < vec_len(seen.text); i++) free(seen.text[i]), free(seen.name[i]);
    vec_free(seen.text);
    vec_free(seen.name);
    emit_descriptor(m, out, opt, ws_fixed, ws_per_n, NULL, n_prof);
    free(n_prof);
    free(ws_fixed);
    free(ws_per_n);
    cgc_emit_main(m, out, opt);
    return !ferror(out) && !seen.failed;
}

void cgc_emit_main(const struct ir_module *m, FILE *out, const struct cg_options *opt) {
    if (!opt->main) return;
    if (!opt->mpi) {
        fputs("\nint main(int argc, char **argv)\n{\n    return nrt_main(argc, argv, &netc_model);\n}\n",
              out);
        return;
    }
    fputs("\n/* Gradient buckets: entry point, bucket, workspace offset, bytes, tensors. */\n"
          "static const struct nrt_dp_bucket dp_buckets[] = {\n",
          out);
    int rows = 0;
    for (size_t e = 0; e < vec_len(m->funcs); e++) {
        struct cgc c = {NULL, 0, m, m->funcs[e], NULL, 0, 0, NULL, NULL, NULL, NULL};
        cgc_layout(&c);
        struct dp_emit d;
        dp_init(&c, &d);
        for (int b = 0; b < d.n; b++, rows++)
            fprintf(out, "    {%zu, %d, %zu, %zu, %d},\n", e, b, d.off[b], d.bytes[b], d.tensors[b]);
        dp_free(&d);
        cgc_layout_free(&c);
    }
    if (!rows) fputs("    {0, 0, 0, 0, 0},\n", out);
    fprintf(out,
            "};\n\nint main(int argc, char **argv)\n{\n    return nrt_mpi_main(argc, argv, &netc_model, "
            "dp_buckets, %d);\n}\n",
            rows);
}

/* Kernels whose loop nest reads at most 15 arrays (c_ops.c's NEST_OPS - 1), of
 * at most 12 values from outside, storing at most 4. The lib target (c_lib.c)
 * emits the same C and plans the same. */
const struct pass_target cgc_plan_c = {.name = "c",
                                       .fuse_max_inputs = 12,
                                       .fuse_max_outputs = 4,
                                       .fuse_max_arrays = 15,
                                       .fuse_batchnorm = true,
                                       .fuse_pool = true,
                                       .fuse_gemm_update = true,
                                       .pool_grad_weight = cg_pool_grad_weight_fast,
                                       .scratch = cgc_op_scratch};

const struct cg_target cg_target_c = {
    .name = "c",
    .ext = ".c",
    .help = "C11 for the system C compiler, OpenBLAS on the CPU",
    .emit = emit_c,
    .parts = true,
    .plan = &cgc_plan_c,
};
