/* codegen/llvm_ops.c -- the LLVM backend's column of the op table: the IR of one
 * node, with the semantics of the C backend (c_ops.c) and the reference
 * interpreter. Elementwise ops are formulas (lg_formula) evaluated inside one
 * loop nest per fused kernel (lg_kernel_emit, the C backend's kernels); float
 * sums accumulate in double in the node's scratch, as in C; GEMM, convolution
 * and pooling call libnetrt. Ops not listed in `column` are reported by
 * lg_op_supported as not supported yet. Sections: nests, formulas, kernels,
 * reductions, contractions, losses, NN ops, the column. */
#include "codegen/llvm.h"

#include "runtime/netrt.h"

#include <stddef.h>
#include <string.h>

static const struct ir_node *node(const struct lg *g, int id) { return &g->c.f->nodes[id]; }
static const struct shape *shape_of(const struct lg *g, int id) { return &node(g, id)->type.shape; }
static int arg(const struct lg *g, int id, int i) { return node(g, id)->args[i]; }
static const struct shape *arg_shape(const struct lg *g, int id, int i) { return shape_of(g, arg(g, id, i)); }
static struct cgc_x xk(int64_t k) { return (struct cgc_x){k, false}; }

/* ---------------------------------------------------------------- nests */

/* A loop nest: its geometry (cg_core.c's struct cg_nest, shared with the C
 * backends; its text indices unused here), and the loops and each array's index
 * as IR. */
struct lnest {
    struct cg_nest n;                 /* loops, extents, arrays and strides */
    LLVMValueRef idx[CG_NEST_OPS];    /* after nest_open: each array's index */
    struct lg_loop loop[IR_MAX_RANK]; /* the loops */
    LLVMValueRef lo, hi;              /* when set: the first loop's range */
};

static void nest_open(struct lg *g, struct lnest *ns) {
    cg_nest_merge(&ns->n);
    LLVMValueRef i[IR_MAX_RANK];
    for (int d = 0; d < ns->n.rank; d++)
        i[d] = d == 0 && ns->lo ? lg_loop_open(g, &ns->loop[d], ns->lo, ns->hi)
                                : lg_loop_open(g, &ns->loop[d], lg_i64(g, 0), lg_x(g, ns->n.dim[d]));
    for (int j = 0; j < ns->n.nops; j++) {
        LLVMValueRef at = lg_i64(g, 0);
        for (int d = 0; d < ns->n.rank; d++) {
            struct cgc_x s = ns->n.st[j][d];
            if (s.k == 0) continue;
            LLVMValueRef term = s.k == 1 && !s.n ? i[d] : LLVMBuildNSWMul(g->b, i[d], lg_x(g, s), "");
            at = LLVMIsConstant(at) && LLVMConstIntGetSExtValue(at) == 0
                     ? term
                     : LLVMBuildNSWAdd(g->b, at, term, "");
        }
        ns->idx[j] = at;
    }
}

static void nest_close(struct lg *g, struct lnest *ns) {
    for (int d = ns->n.rank - 1; d >= 0; d--) lg_loop_close(g, &ns->loop[d]);
}

/* ------------------------------------------------------------- formulas */

/* Converts v to type t (float, double or i32 as the IR converts). */
static LLVMValueRef conv(struct lg *g, LLVMValueRef v, LLVMTypeRef t) {
    LLVMTypeRef f = LLVMTypeOf(v);
    if (f == t) return v;
    if (f == g->i32) return LLVMBuildSIToFP(g->b, v, t, "");
    if (t == g->i32) return lg_to_i32(g, f == g->f64 ? v : LLVMBuildFPExt(g->b, v, g->f64, ""));
    return f == g->f32 ? LLVMBuildFPExt(g->b, v, t, "") : LLVMBuildFPTrunc(g->b, v, t, "");
}

LLVMValueRef lg_formula(struct lg *g, const struct ir_node *n, LLVMValueRef *a, LLVMTypeRef t) {
    bool f = t == g->f32;
    LLVMValueRef zero = LLVMConstReal(t, 0), one = LLVMConstReal(t, 1);
    LLVMValueRef x = a[0], y = n->nargs > 1 ? a[1] : NULL;
#define K(v) LLVMConstReal(t, f ? (double)(float)(v) : (v))
    switch (n->op) {
    case OP_NEG:
        return LLVMBuildFNeg(g->b, x, "");
    case OP_EXP:
        return f ? lg_expf(g, x) : lg_exp(g, x);
    case OP_LOG:
        return f ? lg_logf(g, x) : lg_log(g, x);
    case OP_SQRT:
        return lg_sqrt(g, x);
    case OP_ABS:
        return lg_sel(g, LLVMRealOLT, x, zero, LLVMBuildFNeg(g->b, x, ""), x);
    case OP_RELU:
        return lg_sel(g, LLVMRealOGT, x, zero, x, zero);
    case OP_LEAKY_RELU:
        return lg_sel(g, LLVMRealOGT, x, zero, x, lg_fmul(g, K(ir_attr_f(n, ATTR_ALPHA)), x));
    case OP_SIGMOID: {
        LLVMValueRef e = f ? lg_expf(g, x) : lg_exp(g, x),
                     en = f ? lg_expf(g, LLVMBuildFNeg(g->b, x, "")) : lg_exp(g, LLVMBuildFNeg(g->b, x, ""));
        return lg_sel(g, LLVMRealOGE, x, zero, lg_fdiv(g, one, lg_fadd(g, one, en)),
                      lg_fdiv(g, e, lg_fadd(g, one, e)));
    }
    case OP_TANH:
        return f ? lg_tanhf(g, x) : conv(g, lg_tanhf(g, conv(g, x, g->f32)), t);
    case OP_ERF:
        return f ? lg_erff(g, x) : conv(g, lg_erff(g, conv(g, x, g->f32)), t);
    case OP_GELU:
        if (ir_attr_i(n, ATTR_APPROXIMATE)) { /* 0.5 x (1 + tanh(0.79788456 (x + 0.044715 x^3))) */
            LLVMValueRef u = lg_fmul(g, K(0.79788456),
                                     lg_fadd(g, x, lg_fmul(g, lg_fmul(g, lg_fmul(g, K(0.044715), x), x), x)));
            return lg_fmul(g, lg_fmul(g, K(0.5), x), lg_fadd(g, one, lg_tanhf(g, u)));
        }
        return lg_fmul(g, x, f ? lg_gelu_phi(g, x) : conv(g, lg_gelu_phi(g, conv(g, x, g->f32)), t));
    case OP_GELU_GRAD: /* dy times GELU_DERIV */
    case OP_GELU_DERIV: {
        LLVMValueRef d;
        if (ir_attr_i(n, ATTR_APPROXIMATE)) {
            LLVMValueRef u = lg_fmul(g, K(0.79788456),
                                     lg_fadd(g, x, lg_fmul(g, lg_fmul(g, lg_fmul(g, K(0.044715), x), x), x)));
            LLVMValueRef th = lg_tanhf(g, u);
            LLVMValueRef l = lg_fmul(g, K(0.5), lg_fadd(g, one, th));
            LLVMValueRef r = lg_fmul(
                g, lg_fmul(g, lg_fmul(g, K(0.5), x), lg_fsub(g, one, lg_fmul(g, th, th))), K(0.79788456));
            r = lg_fmul(g, r, lg_fadd(g, one, lg_fmul(g, lg_fmul(g, K(0.134145), x), x)));
            d = lg_fadd(g, l, r);
        } else {
            d = f ? lg_gelu_grad(g, x) : conv(g, lg_gelu_grad(g, conv(g, x, g->f32)), t);
        }
        return n->op == OP_GELU_GRAD ? lg_fmul(g, y, d) : d;
    }
    case OP_CAST:
    case OP_BROADCAST_TO:
    case OP_STOP_GRADIENT:
        return x;
    case OP_ADD:
    case OP_BIAS_ADD:
        return lg_fadd(g, x, y);
    case OP_SUB:
        return lg_fsub(g, x, y);
    case OP_MUL:
        return lg_fmul(g, x, y);
    case OP_DIV:
        return lg_fdiv(g, x, y);
    case OP_MAXIMUM:
        return lg_sel(g, LLVMRealOGT, x, y, x, y);
    case OP_POW: {
        LLVMTypeRef p[2] = {t, t};
        LLVMValueRef args[2] = {x, y};
        return lg_call(g, f ? "powf" : "pow", t, p, 2, args);
    }
    case OP_GREATER:
        return lg_sel(g, LLVMRealOGT, x, y, one, zero);
    case OP_RELU_GRAD:
        return lg_sel(g, LLVMRealOGT, x, zero, y, zero);
    case OP_LEAKY_RELU_GRAD:
        return lg_sel(g, LLVMRealOGT, x, zero, y, lg_fmul(g, K(ir_attr_f(n, ATTR_ALPHA)), y));
    case OP_SIGMOID_GRAD:
        return lg_fmul(g, lg_fmul(g, y, x), lg_fsub(g, one, x));
    case OP_TANH_GRAD:
        return lg_fmul(g, y, lg_fsub(g, one, lg_fmul(g, x, x)));
    case OP_BATCHNORM: /* (gamma / sqrt(var + eps)) * (x - mean) + beta, per channel */
        return lg_fadd(g,
                       lg_fmul(g, lg_fdiv(g, y, lg_sqrt(g, lg_fadd(g, a[4], K(ir_attr_f(n, ATTR_EPS))))),
                               lg_fsub(g, x, a[3])),
                       a[2]);
    default:
        NETC_INTERNAL("%s is not an elementwise formula", op_info[n->op].name);
    }
#undef K
}

static bool has_formula(enum op op) {
    switch (op) {
    case OP_NEG:
    case OP_EXP:
    case OP_LOG:
    case OP_SQRT:
    case OP_ABS:
    case OP_RELU:
    case OP_LEAKY_RELU:
    case OP_SIGMOID:
    case OP_TANH:
    case OP_ERF:
    case OP_GELU:
    case OP_GELU_GRAD:
    case OP_GELU_DERIV:
    case OP_CAST:
    case OP_BROADCAST_TO:
    case OP_ADD:
    case OP_BIAS_ADD:
    case OP_SUB:
    case OP_MUL:
    case OP_DIV:
    case OP_MAXIMUM:
    case OP_POW:
    case OP_GREATER:
    case OP_RELU_GRAD:
    case OP_LEAKY_RELU_GRAD:
    case OP_SIGMOID_GRAD:
    case OP_TANH_GRAD:
    case OP_BATCHNORM:
        return true;
    default:
        return false;
    }
}

/* -------------------------------------------------------------- kernels */

/* Elements per chunk of a kernel's loop split over the thread pool (c_emit.c's
 * KERNEL_GRAIN): smaller kernels run on the calling thread alone. */
#define KERNEL_GRAIN 32768

/* The loop nest of kernel k (its head already computed): over the root's shape,
 * every member per element in registers, the outputs stored. */
static void kernel_nest(struct lg *g, const struct cgc_kernel *k, struct lnest *ns, struct cg_access *acc,
                        int nacc);

static void gemm_adam(struct lg *g, const struct pass_gemm_adam *u);
static void conv_ep(struct lg *g, const struct cgc_kernel *k, int bias, bool relu, int leaky);

void lg_kernel_emit(struct lg *g, const struct cgc_kernel *k) {
    struct pass_gemm_adam u;
    if (pass_gemm_adam(g->c.f, node(g, k->root)->kernel, &u)) { /* the update within the GEMM */
        gemm_adam(g, &u);
        return;
    }
    int bias, leaky;
    bool relu;
    if (node(g, k->root)->op != OP_MAXPOOL2D && cgc_kernel_conv_act(&g->c, k, &bias, &relu, &leaky)) {
        conv_ep(g, k, bias, relu, leaky); /* the C backend's call (cgc_kernel_body) */
        return;
    }
    if (k->head >= 0) lg_op_emit(g, k->head);
    const struct shape *y = shape_of(g, k->root);
    struct cg_access acc[CG_NEST_OPS];
    struct lnest ns = {.lo = NULL};
    int nacc = cg_kernel_nest(&g->c, k, &ns.n, acc);
    /* The pointers the nest takes, each storage once (C's kernel parameters):
     * the outputs, then the inputs but the head's result (the root's storage)
     * and those read through an output's pointer (the same buffer). They are
     * noalias parameters of the range function, as C's restrict ones. */
    int *vals = NULL, *same = calloc((size_t)k->root + 1, sizeof *same);
    if (!same) NETC_INTERNAL("out of memory");
    for (size_t i = 0; i < vec_len(k->outputs); i++) vec_push(vals, k->outputs[i]);
    for (int j = 0; j < nacc; j++) {
        int x = acc[j].value, o = x == k->head ? k->root : cgc_kernel_inplace(&g->c, k, x);
        bool dup = false;
        for (size_t i = 0; i < vec_len(vals); i++) dup |= vals[i] == x;
        if (o >= 0)
            same[x] = o + 1;
        else if (!dup)
            vec_push(vals, x);
    }
    int nv = (int)vec_len(vals);
    LLVMTypeRef rp[3 + 2 * CG_NEST_OPS];
    rp[0] = rp[1] = rp[2] = g->i64;
    for (int i = 0; i < nv; i++) rp[3 + i] = g->p8;
    LLVMTypeRef rt = LLVMFunctionType(g->v, rp, (unsigned)(3 + nv), 0);
    char name[64];
    snprintf(name, sizeof name, "kernel_n%d_range", k->root);
    LLVMValueRef range = LLVMAddFunction(g->mod, name, rt);
    LLVMSetLinkage(range, LLVMInternalLinkage);
    /* noinline, as C's kernels (NRT_NOINLINE): entry points stay small, and the
     * identical kernels of several entry points are merged (mergefunc). */
    LLVMAddAttributeAtIndex(
        range, LLVMAttributeFunctionIndex,
        LLVMCreateEnumAttribute(g->cx, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
    unsigned noalias = LLVMGetEnumAttributeKindForName("noalias", 7);
    for (int i = 0; i < nv; i++)
        LLVMAddAttributeAtIndex(range, (unsigned)(4 + i), LLVMCreateEnumAttribute(g->cx, noalias, 0));
    /* Its body. */
    LLVMValueRef saved_fn = g->fn, saved_n = g->n, *saved_ptr = g->ptr;
    LLVMBasicBlockRef saved_bb = LLVMGetInsertBlock(g->b);
    g->ptr = calloc((size_t)ir_func_len(g->c.f) + 1, sizeof *g->ptr);
    if (!g->ptr) NETC_INTERNAL("out of memory");
    g->fn = range;
    LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->cx, range, "entry"));
    g->n = LLVMGetParam(range, 2);
    for (int i = 0; i < nv; i++) g->ptr[vals[i]] = LLVMGetParam(range, (unsigned)(3 + i));
    for (int j = 0; j < nacc; j++)
        if (same[acc[j].value]) g->ptr[acc[j].value] = g->ptr[same[acc[j].value] - 1];
    if (ns.n.rank > 0) ns.lo = LLVMGetParam(range, 0), ns.hi = LLVMGetParam(range, 1);
    kernel_nest(g, k, &ns, acc, nacc);
    LLVMBuildRetVoid(g->b);
    free(g->ptr);
    free(same);
    g->ptr = saved_ptr, g->fn = saved_fn, g->n = saved_n;
    LLVMPositionBuilderAtEnd(g->b, saved_bb);
    LLVMValueRef outer = ns.n.rank > 0 ? lg_x(g, ns.n.dim[0]) : lg_i64(g, 1);
    struct cgc_x total = cgc_count(y);
    if (ns.n.rank == 0 || !(total.n || total.k >= 2 * KERNEL_GRAIN)) { /* on this thread */
        LLVMValueRef ra[3 + 2 * CG_NEST_OPS] = {lg_i64(g, 0), outer, g->n};
        for (int i = 0; i < nv; i++) ra[3 + i] = lg_ptr8(g, vals[i]);
        LLVMBuildCall2(g->b, rt, range, ra, (unsigned)(3 + nv), "");
        vec_free(vals);
        return;
    }
    /* Split over the thread pool by the first loop, as the C backend does:
     * chunk(args, lo, hi) calls range(lo, hi, n, pointers...) from args. */
    LLVMTypeRef at = LLVMArrayType(g->p8, (unsigned)nv + 1);
    LLVMValueRef args = lg_var(g, at, NULL);
    LLVMValueRef argp = LLVMBuildBitCast(g->b, args, LLVMPointerType(g->p8, 0), "");
    lg_store(g, LLVMBuildIntToPtr(g->b, g->n, g->p8, ""), argp, lg_i64(g, 0));
    for (int i = 0; i < nv; i++) lg_store(g, lg_ptr8(g, vals[i]), argp, lg_i64(g, i + 1));
    struct cgc_x inner = xk(1);
    for (int d = 1; d < ns.n.rank; d++) inner = cgc_mul(inner, ns.n.dim[d]);
    LLVMValueRef in = lg_x(g, inner);
    LLVMValueRef grain = LLVMBuildSDiv(g->b, LLVMBuildAdd(g->b, lg_i64(g, KERNEL_GRAIN - 1), in, ""), in, "");
    LLVMTypeRef cp[3] = {g->p8, g->i64, g->i64};
    LLVMTypeRef ct = LLVMFunctionType(g->v, cp, 3, 0);
    snprintf(name, sizeof name, "kernel_n%d_chunk", k->root);
    LLVMValueRef fn = LLVMAddFunction(g->mod, name, ct);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->cx, fn, "entry"));
    LLVMValueRef ap = LLVMBuildBitCast(g->b, LLVMGetParam(fn, 0), LLVMPointerType(g->p8, 0), "");
    LLVMValueRef ra[3 + 2 * CG_NEST_OPS] = {
        LLVMGetParam(fn, 1), LLVMGetParam(fn, 2),
        LLVMBuildPtrToInt(g->b, lg_load(g, ap, lg_i64(g, 0)), g->i64, "")};
    for (int i = 0; i < nv; i++) ra[3 + i] = lg_load(g, ap, lg_i64(g, i + 1));
    LLVMBuildCall2(g->b, rt, range, ra, (unsigned)(3 + nv), "");
    LLVMBuildRetVoid(g->b);
    LLVMPositionBuilderAtEnd(g->b, saved_bb);
    vec_free(vals);
    LLVMTypeRef pp[4] = {g->i64, g->i64, LLVMPointerType(ct, 0), g->p8};
    LLVMValueRef pa[4] = {outer, grain, fn, LLVMBuildBitCast(g->b, args, g->p8, "")};
    lg_call(g, "nrt_parallel_for", g->v, pp, 4, pa);
}

static void kernel_nest(struct lg *g, const struct cgc_kernel *k, struct lnest *ns, struct cg_access *acc,
                        int nacc) {
    LLVMValueRef ptrs[CG_NEST_OPS];
    for (int j = 0; j < nacc; j++) ptrs[j] = lg_ptr(g, acc[j].value);
    LLVMValueRef *t = calloc((size_t)k->root + 1, sizeof *t);
    if (!t) NETC_INTERNAL("out of memory");
    nest_open(g, ns);
    for (size_t i = 0; i < vec_len(k->members); i++) {
        int m = k->members[i];
        if (m == k->head) continue;
        const struct ir_node *n = node(g, m);
        LLVMTypeRef ty = n->type.dtype == DT_I32 ? g->f64 : g->f32; /* i32 results: computed in double */
        LLVMValueRef ops[8];
        for (int a = 0; a < n->nargs && a < 8; a++) {
            if (cg_in_register(&g->c, k, m, a)) {
                ops[a] = conv(g, t[n->args[a]], ty);
                continue;
            }
            struct cg_access x = cg_access_of(&g->c, m, a);
            int j = 0;
            while (acc[j].value != x.value || acc[j].bias != x.bias) j++;
            ops[a] = conv(g, lg_load(g, ptrs[j], ns->idx[1 + j]), ty);
        }
        t[m] = lg_formula(g, n, ops, ty);
    }
    /* Stores last: an output stored in place into a buffer the kernel also
     * reads has been read, at this element, by then. */
    for (size_t i = 0; i < vec_len(k->outputs); i++) {
        int o = k->outputs[i];
        LLVMValueRef p = lg_ptr(g, o);
        lg_store(g, conv(g, t[o], node(g, o)->type.dtype == DT_I32 ? g->i32 : g->f32), p, ns->idx[0]);
    }
    nest_close(g, ns);
    free(t);
}

/* ----------------------------------------------------------- reductions */

/* for i < count: p[i] = v. */
static void fill(struct lg *g, LLVMValueRef p, struct cgc_x count, LLVMValueRef v) {
    struct lg_loop l;
    LLVMValueRef i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, count));
    lg_store(g, v, p, i);
    lg_loop_close(g, &l);
}

/* dst[kept index] += src element, in double (dst: double *), over the operand
 * of node id; the C backend's sum_rows (CG_SUM_LANES partial sums along a
 * contiguous innermost row) where it applies, so the sums are the same. */
static void sum_into(struct lg *g, int id, const struct shape *kept, LLVMValueRef dst, LLVMValueRef center) {
    const struct shape *x = arg_shape(g, id, 0);
    struct lnest ns = {.lo = NULL};
    cg_nest_init(&ns.n, x, 2);
    cg_nest_read(&ns.n, 1, kept, x, -1);
    LLVMValueRef src = lg_ptr(g, arg(g, id, 0));
    struct cgc_x len;
    if (cg_nest_row_sum(&ns.n, &len)) {
        nest_open(g, &ns);
        LLVMValueRef acc = lg_var(g, LLVMArrayType(g->f64, CG_SUM_LANES), NULL),
                     sum = lg_var(g, g->f64, lg_f64(g, 0));
        LLVMValueRef accp = LLVMBuildBitCast(g->b, acc, g->pf64, "");
        for (int l = 0; l < CG_SUM_LANES; l++) lg_store(g, lg_f64(g, 0), accp, lg_i64(g, l));
        LLVMValueRef rowat = ns.idx[0];
        LLVMValueRef mu = center ? lg_load(g, center, ns.idx[1]) : NULL;
        LLVMValueRef lenv = lg_x(g, len);
        LLVMValueRef blocks = LLVMBuildSDiv(g->b, lenv, lg_i64(g, CG_SUM_LANES), "");
        struct lg_loop lb;
        LLVMValueRef q = lg_loop_open(g, &lb, lg_i64(g, 0), blocks);
        LLVMValueRef j0 =
            LLVMBuildNSWAdd(g->b, rowat, LLVMBuildNSWMul(g->b, q, lg_i64(g, CG_SUM_LANES), ""), "");
        for (int l = 0; l < CG_SUM_LANES; l++) {
            LLVMValueRef v = LLVMBuildFPExt(
                g->b, lg_load(g, src, LLVMBuildNSWAdd(g->b, j0, lg_i64(g, l), "")), g->f64, "");
            if (mu) v = lg_fsub(g, v, mu), v = lg_fmul(g, v, v);
            lg_store(g, lg_fadd(g, lg_load(g, accp, lg_i64(g, l)), v), accp, lg_i64(g, l));
        }
        lg_loop_close(g, &lb);
        struct lg_loop lt;
        LLVMValueRef j =
            lg_loop_open(g, &lt, LLVMBuildNSWMul(g->b, blocks, lg_i64(g, CG_SUM_LANES), ""), lenv);
        LLVMValueRef v =
            LLVMBuildFPExt(g->b, lg_load(g, src, LLVMBuildNSWAdd(g->b, rowat, j, "")), g->f64, "");
        if (mu) v = lg_fsub(g, v, mu), v = lg_fmul(g, v, v);
        LLVMBuildStore(g->b, lg_fadd(g, LLVMBuildLoad2(g->b, g->f64, sum, ""), v), sum);
        lg_loop_close(g, &lt);
        LLVMValueRef s = LLVMBuildLoad2(g->b, g->f64, sum, "");
        for (int l = 0; l < CG_SUM_LANES; l++) s = lg_fadd(g, s, lg_load(g, accp, lg_i64(g, l)));
        lg_store(g, lg_fadd(g, lg_load(g, dst, ns.idx[1]), s), dst, ns.idx[1]);
        nest_close(g, &ns);
        return;
    }
    nest_open(g, &ns);
    LLVMValueRef v = LLVMBuildFPExt(g->b, lg_load(g, src, ns.idx[0]), g->f64, "");
    if (center) v = lg_fsub(g, v, lg_load(g, center, ns.idx[1])), v = lg_fmul(g, v, v);
    lg_store(g, lg_fadd(g, lg_load(g, dst, ns.idx[1]), v), dst, ns.idx[1]);
    nest_close(g, &ns);
}

/* A float sum (or mean) over `kept` in double in the node's scratch, then rounded. */
static void reduce_f32(struct lg *g, int id, const struct shape *kept, struct cgc_x count, bool mean) {
    struct cgc_x ny = cgc_count(shape_of(g, id));
    LLVMValueRef d = LLVMBuildBitCast(g->b, g->sptr[id], g->pf64, "");
    fill(g, d, ny, lg_f64(g, 0));
    sum_into(g, id, kept, d, NULL);
    LLVMValueRef y = lg_ptr(g, id);
    struct lg_loop l;
    LLVMValueRef i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, ny));
    LLVMValueRef v = lg_load(g, d, i);
    if (mean) v = lg_fdiv(g, v, LLVMBuildSIToFP(g->b, lg_x(g, count), g->f64, ""));
    lg_store(g, LLVMBuildFPTrunc(g->b, v, g->f32, ""), y, i);
    lg_loop_close(g, &l);
}

static void op_sum(struct lg *g, int id) {
    int64_t ch, hw;
    if (cg_sum_planes(g->c.f, node(g, id), &ch, &hw)) { /* as the C backend: nrt_sum_planes */
        LLVMTypeRef pt[6] = {g->i64, g->i64, g->i64, g->pf32, g->pf32, g->pf64};
        LLVMValueRef args[6] = {lg_x(g, cgc_dim(arg_shape(g, id, 0), 0)),
                                lg_i64(g, ch),
                                lg_i64(g, hw),
                                lg_ptr(g, arg(g, id, 0)),
                                lg_ptr(g, id),
                                LLVMBuildBitCast(g->b, g->sptr[id], g->pf64, "")};
        lg_call(g, "nrt_sum_planes", g->v, pt, 6, args);
        return;
    }
    struct cgc_x count;
    struct shape kept = cgc_kept_shape(&g->c, id, &count);
    reduce_f32(g, id, &kept, count, node(g, id)->op == OP_MEAN);
}

static void op_sum_to(struct lg *g, int id) { reduce_f32(g, id, shape_of(g, id), xk(1), false); }

/* MAX over axes: -inf, then y = x > y ? x : y over the operand. */
static void op_max(struct lg *g, int id) {
    struct cgc_x count;
    struct shape kept = cgc_kept_shape(&g->c, id, &count);
    LLVMValueRef y = lg_ptr(g, id), src = lg_ptr(g, arg(g, id, 0));
    fill(g, y, cgc_count(shape_of(g, id)), lg_f32(g, -1.0 / 0.0));
    const struct shape *x = arg_shape(g, id, 0);
    struct lnest ns = {.lo = NULL};
    cg_nest_init(&ns.n, x, 2);
    cg_nest_read(&ns.n, 1, &kept, x, -1);
    nest_open(g, &ns);
    LLVMValueRef v = lg_load(g, src, ns.idx[0]), cur = lg_load(g, y, ns.idx[1]);
    lg_store(g, lg_sel(g, LLVMRealOGT, v, cur, v, cur), y, ns.idx[1]);
    nest_close(g, &ns);
}

/* ---------------------------------------------------------- contractions */

static LLVMValueRef sgemm(struct lg *g, int ta, int tb, LLVMValueRef m, LLVMValueRef n, LLVMValueRef k,
                          LLVMValueRef a, LLVMValueRef lda, LLVMValueRef b, LLVMValueRef ldb,
                          LLVMValueRef beta, LLVMValueRef c, LLVMValueRef ldc) {
    LLVMTypeRef p[13] = {g->i32, g->i32,  g->i64, g->i64, g->i64,  g->f32, g->pf32,
                         g->i64, g->pf32, g->i64, g->f32, g->pf32, g->i64};
    LLVMValueRef args[13] = {lg_i32(g, ta), lg_i32(g, tb), m, n,  k, lg_f32(g, 1), a, lda, b,
                             ldb,           beta,          c, ldc};
    return lg_call(g, "nrt_sgemm", g->v, p, 13, args);
}

static void op_matmul(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const struct shape *a = arg_shape(g, id, 0), *b = arg_shape(g, id, 1), *y = &n->type.shape;
    bool ta = ir_attr_i(n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(n, ATTR_TRANSPOSE_B) != 0;
    if (y->rank > 2) { /* nrt_sgemm_batch with netrt.h's struct nrt_bgemm */
        struct nrt_bgemm geo;
        memset(&geo, 0, sizeof geo);
        struct cgc_x bx[3][IR_MAX_RANK];
        int nd = cgc_bgemm_batch(a, b, y, bx);
        size_t off[3 * NRT_BGEMM_MAX_DIMS];
        LLVMValueRef vals[3 * NRT_BGEMM_MAX_DIMS];
        int nv = 0;
        geo.ta = ta, geo.tb = tb;
        geo.m = y->dim[y->rank - 2], geo.n = y->dim[y->rank - 1];
        geo.k = a->dim[ta ? a->rank - 2 : a->rank - 1], geo.lda = a->dim[a->rank - 1],
        geo.ldb = b->dim[b->rank - 1];
        geo.ldc = geo.n;
        geo.nd = nd;
        for (int d = 0; d < nd; d++) {
            struct cgc_x xs[3] = {bx[0][d], bx[1][d], bx[2][d]};
            int64_t *f[3] = {&geo.dim[d], &geo.sa[d], &geo.sb[d]};
            size_t fo[3] = {offsetof(struct nrt_bgemm, dim) + 8 * (size_t)d,
                            offsetof(struct nrt_bgemm, sa) + 8 * (size_t)d,
                            offsetof(struct nrt_bgemm, sb) + 8 * (size_t)d};
            for (int q = 0; q < 3; q++) {
                *f[q] = xs[q].k;
                if (xs[q].n) off[nv] = fo[q], vals[nv++] = lg_x(g, xs[q]);
            }
        }
        LLVMValueRef gp = lg_struct(g, &geo, sizeof geo, off, vals, nv);
        LLVMTypeRef p[6] = {g->p8, g->f32, g->pf32, g->pf32, g->f32, g->pf32};
        LLVMValueRef args[6] = {
            gp,           lg_f32(g, 1), lg_ptr(g, arg(g, id, 0)), lg_ptr(g, arg(g, id, 1)),
            lg_f32(g, 0), lg_ptr(g, id)};
        lg_call(g, "nrt_sgemm_batch", g->v, p, 6, args);
        return;
    }
    sgemm(g, ta, tb, lg_x(g, cgc_dim(y, 0)), lg_x(g, cgc_dim(y, 1)), lg_x(g, cgc_dim(a, ta ? 0 : 1)),
          lg_ptr(g, arg(g, id, 0)), lg_x(g, cgc_dim(a, 1)), lg_ptr(g, arg(g, id, 1)), lg_x(g, cgc_dim(b, 1)),
          lg_f32(g, 0), lg_ptr(g, id), lg_x(g, cgc_dim(y, 1)));
}

/* A gemm-update kernel (passes/fuse.c, pass_gemm_adam): netrt.h's struct
 * nrt_adam (15 pointers) on the stack and one nrt_sgemm_adam call, as the C
 * backend's (cgc_gemm_adam). */
static void gemm_adam(struct lg *g, const struct pass_gemm_adam *u) {
    const struct ir_node *n = node(g, u->head);
    const struct shape *a = arg_shape(g, u->head, 0), *b = arg_shape(g, u->head, 1), *y = &n->type.shape;
    bool ta = ir_attr_i(n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(n, ATTR_TRANSPOSE_B) != 0;
    const int vals[15] = {u->m_old, u->v_old, u->w_old, u->m_new, u->v_new, u->w_new, u->b1, u->c1,
                          u->b2,    u->c2,    u->bc2,   u->eps,   u->step,  u->decay, u->wd};
    LLVMValueRef st = lg_var(g, LLVMArrayType(g->p8, 15), NULL);
    LLVMValueRef sp = LLVMBuildBitCast(g->b, st, LLVMPointerType(g->p8, 0), "");
    for (int i = 0; i < 15; i++)
        lg_store(g, vals[i] >= 0 ? lg_ptr8(g, vals[i]) : LLVMConstNull(g->p8), sp, lg_i64(g, i));
    if (!g->sptr[u->head]) NETC_INTERNAL("gemm-update head %%%d has no scratch", u->head);
    LLVMTypeRef p[11] = {g->i32, g->i32,  g->i64, g->i64,  g->i64, g->pf32,
                         g->i64, g->pf32, g->i64, g->pf32, g->p8};
    LLVMValueRef args[11] = {lg_i32(g, ta),
                             lg_i32(g, tb),
                             lg_x(g, cgc_dim(y, 0)),
                             lg_x(g, cgc_dim(y, 1)),
                             lg_x(g, cgc_dim(a, ta ? 0 : 1)),
                             lg_ptr(g, n->args[0]),
                             lg_x(g, cgc_dim(a, 1)),
                             lg_ptr(g, n->args[1]),
                             lg_x(g, cgc_dim(b, 1)),
                             g->sptr[u->head],
                             LLVMBuildBitCast(g->b, st, g->p8, "")};
    lg_call(g, "nrt_sgemm_adam", g->v, p, 11, args);
}

static LLVMValueRef gep(struct lg *g, LLVMValueRef p, LLVMValueRef i) {
    return LLVMBuildGEP2(g->b, LLVMGetElementType(LLVMTypeOf(p)), p, &i, 1, "");
}

static void op_matmul_bsum(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const struct shape *a = arg_shape(g, id, 0), *b = arg_shape(g, id, 1), *y = &n->type.shape;
    bool ta = ir_attr_i(n, ATTR_TRANSPOSE_A) != 0, tb = ir_attr_i(n, ATTR_TRANSPOSE_B) != 0;
    int ra = a->rank, rb = b->rank;
    struct cgc_x items = cgc_dims_prod(a, 0, ra - 2), k = cgc_dim(a, ta ? ra - 2 : ra - 1);
    LLVMValueRef pa = lg_ptr(g, arg(g, id, 0)), pb = lg_ptr(g, arg(g, id, 1)), py = lg_ptr(g, id);
    if (ta && !tb) {
        sgemm(g, 1, 0, lg_x(g, cgc_dim(y, 0)), lg_x(g, cgc_dim(y, 1)), lg_x(g, cgc_mul(items, k)), pa,
              lg_x(g, cgc_dim(a, ra - 1)), pb, lg_x(g, cgc_dim(b, rb - 1)), lg_f32(g, 0), py,
              lg_x(g, cgc_dim(y, 1)));
        return;
    }
    struct cgc_x ma = cgc_dims_prod(a, ra - 2, ra), mb = cgc_dims_prod(b, rb - 2, rb);
    struct lg_loop l;
    LLVMValueRef q = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, items));
    LLVMValueRef beta = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntNE, q, lg_i64(g, 0), ""),
                                        lg_f32(g, 1), lg_f32(g, 0), "");
    sgemm(g, ta, tb, lg_x(g, cgc_dim(y, 0)), lg_x(g, cgc_dim(y, 1)), lg_x(g, k),
          gep(g, pa, LLVMBuildNSWMul(g->b, q, lg_x(g, ma), "")), lg_x(g, cgc_dim(a, ra - 1)),
          gep(g, pb, LLVMBuildNSWMul(g->b, q, lg_x(g, mb), "")), lg_x(g, cgc_dim(b, rb - 1)), beta, py,
          lg_x(g, cgc_dim(y, 1)));
    lg_loop_close(g, &l);
}

/* ---------------------------------------------------------------- losses */

/* The elementwise losses of codegen.h (CG_LOSS_*), in double, per element. */
static LLVMValueRef loss_of(struct lg *g, enum op op, LLVMValueRef p, LLVMValueRef t) {
    LLVMValueRef one = lg_f64(g, 1), zero = lg_f64(g, 0);
    switch (op) {
    case OP_MSE:
        return lg_fmul(g, lg_fsub(g, p, t), lg_fsub(g, p, t));
    case OP_HINGE: {
        LLVMValueRef h = lg_fsub(g, one, lg_fmul(g, t, p));
        return lg_sel(g, LLVMRealOGT, h, zero, h, zero);
    }
    case OP_BCE_LOGITS: {
        LLVMValueRef ap = lg_sel(g, LLVMRealOLT, p, zero, LLVMBuildFNeg(g->b, p, ""), p); /* fabs */
        LLVMValueRef lp = LLVMBuildFNeg(g->b, ap, "");
        LLVMValueRef l1 = lg_call(g, "log1p", g->f64, &g->f64, 1, (LLVMValueRef[]){lg_exp(g, lp)});
        return lg_fadd(g, lg_fsub(g, lg_sel(g, LLVMRealOGT, p, zero, p, zero), lg_fmul(g, p, t)), l1);
    }
    case OP_BCE: {
        LLVMValueRef lp = lg_log(g, p), lq = lg_log(g, lg_fsub(g, one, p)), c = lg_f64(g, -100);
        lp = lg_sel(g, LLVMRealOGT, lp, c, lp, c);
        lq = lg_sel(g, LLVMRealOGT, lq, c, lq, c);
        return LLVMBuildFNeg(g->b, lg_fadd(g, lg_fmul(g, t, lp), lg_fmul(g, lg_fsub(g, one, t), lq)), "");
    }
    default:
        NETC_UNREACHABLE();
    }
}

/* Their gradients d(p, t). */
static LLVMValueRef loss_grad_of(struct lg *g, enum op op, LLVMValueRef p, LLVMValueRef t) {
    LLVMValueRef one = lg_f64(g, 1), zero = lg_f64(g, 0);
    switch (op) {
    case OP_MSE_GRAD:
        return lg_fmul(g, lg_f64(g, 2), lg_fsub(g, p, t));
    case OP_HINGE_GRAD:
        return lg_sel(g, LLVMRealOGT, lg_fsub(g, one, lg_fmul(g, t, p)), zero, LLVMBuildFNeg(g->b, t, ""),
                      zero);
    case OP_BCE_LOGITS_GRAD: {
        LLVMValueRef en = lg_exp(g, LLVMBuildFNeg(g->b, p, "")), ep = lg_exp(g, p);
        LLVMValueRef s = lg_sel(g, LLVMRealOGE, p, zero, lg_fdiv(g, one, lg_fadd(g, one, en)),
                                lg_fdiv(g, ep, lg_fadd(g, one, ep)));
        return lg_fsub(g, s, t);
    }
    case OP_BCE_GRAD: {
        LLVMValueRef c = lg_f64(g, -100);
        LLVMValueRef a =
            lg_sel(g, LLVMRealOGT, lg_log(g, p), c, lg_fdiv(g, LLVMBuildFNeg(g->b, t, ""), p), zero);
        LLVMValueRef q = lg_fsub(g, one, p);
        LLVMValueRef b = lg_sel(g, LLVMRealOGT, lg_log(g, q), c, lg_fdiv(g, lg_fsub(g, one, t), q), zero);
        return lg_fadd(g, a, b);
    }
    default:
        NETC_UNREACHABLE();
    }
}

static void op_ewise_loss(struct lg *g, int id) {
    struct cgc_x cnt = cgc_count(arg_shape(g, id, 0));
    LLVMValueRef pp = lg_ptr(g, arg(g, id, 0)), pt = lg_ptr(g, arg(g, id, 1));
    LLVMValueRef sum = lg_var(g, g->f64, lg_f64(g, 0));
    struct lg_loop l;
    LLVMValueRef i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, cnt));
    LLVMValueRef p = LLVMBuildFPExt(g->b, lg_load(g, pp, i), g->f64, ""),
                 t = LLVMBuildFPExt(g->b, lg_load(g, pt, i), g->f64, "");
    LLVMBuildStore(g->b, lg_fadd(g, LLVMBuildLoad2(g->b, g->f64, sum, ""), loss_of(g, node(g, id)->op, p, t)),
                   sum);
    lg_loop_close(g, &l);
    LLVMValueRef r =
        lg_fdiv(g, LLVMBuildLoad2(g->b, g->f64, sum, ""), LLVMBuildSIToFP(g->b, lg_x(g, cnt), g->f64, ""));
    lg_store(g, LLVMBuildFPTrunc(g->b, r, g->f32, ""), lg_ptr(g, id), lg_i64(g, 0));
}

static void op_ewise_loss_grad(struct lg *g, int id) {
    struct cgc_x cnt = cgc_count(arg_shape(g, id, 0));
    LLVMValueRef pp = lg_ptr(g, arg(g, id, 0)), pt = lg_ptr(g, arg(g, id, 1)), py = lg_ptr(g, id);
    LLVMValueRef gv = LLVMBuildFPExt(g->b, lg_load(g, lg_ptr(g, arg(g, id, 2)), lg_i64(g, 0)), g->f64, "");
    gv = lg_fdiv(g, gv, LLVMBuildSIToFP(g->b, lg_x(g, cnt), g->f64, ""));
    struct lg_loop l;
    LLVMValueRef i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, cnt));
    LLVMValueRef p = LLVMBuildFPExt(g->b, lg_load(g, pp, i), g->f64, ""),
                 t = LLVMBuildFPExt(g->b, lg_load(g, pt, i), g->f64, "");
    LLVMValueRef d = loss_grad_of(g, node(g, id)->op, p, t);
    lg_store(g, LLVMBuildFPTrunc(g->b, lg_fmul(g, gv, d), g->f32, ""), py, i);
    lg_loop_close(g, &l);
}

/* The row loop of scores x [rows, classes] (c_ops.c's class_rows_open): r, the
 * row pointer, and with need_lse the row's log-sum-exp (double); with i32
 * labels, the label y (i64), checked: out of range fails the context and
 * returns from the entry point. */
struct rows {
    struct lg_loop l; /* over rows */
    LLVMValueRef r;   /* the row */
    LLVMValueRef xr;  /* float * to its scores */
    LLVMValueRef lse; /* double, or NULL */
    LLVMValueRef y;   /* i64 label, or NULL */
    int64_t cls;      /* classes */
};

static void fail_if(struct lg *g, LLVMValueRef cond, const char *fmt, int n, LLVMValueRef *args);

/* The largest of xr[0..cls) as a float (`v > m` from xr[0] on): the shift of
 * the cross-entropy rows (rows_open) and the masked losses (masked_lse). */
static LLVMValueRef row_max(struct lg *g, LLVMValueRef xr, int64_t cls) {
    LLVMValueRef mx = lg_var(g, g->f32, lg_load(g, xr, lg_i64(g, 0)));
    struct lg_loop l;
    LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 1), lg_i64(g, cls));
    LLVMValueRef v = lg_load(g, xr, j), cur = LLVMBuildLoad2(g->b, g->f32, mx, "");
    LLVMBuildStore(g->b, lg_sel(g, LLVMRealOGT, v, cur, v, cur), mx);
    lg_loop_close(g, &l);
    return LLVMBuildLoad2(g->b, g->f32, mx, "");
}

static void rows_open(struct lg *g, int id, struct rows *w, bool need_lse) {
    const struct shape *xs = arg_shape(g, id, 0);
    bool labels = node(g, arg(g, id, 1))->type.dtype == DT_I32;
    w->cls = xs->dim[1];
    LLVMValueRef x = lg_ptr(g, arg(g, id, 0));
    w->r = lg_loop_open(g, &w->l, lg_i64(g, 0), lg_x(g, cgc_dim(xs, 0)));
    w->xr = gep(g, x, LLVMBuildNSWMul(g->b, w->r, lg_i64(g, w->cls), ""));
    w->lse = w->y = NULL;
    if (need_lse) {
        LLVMValueRef m = row_max(g, w->xr, w->cls);
        struct lg_loop l;
        LLVMValueRef md = LLVMBuildFPExt(g->b, m, g->f64, "");
        LLVMValueRef se = lg_var(g, g->f64, lg_f64(g, 0));
        LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 0), lg_i64(g, w->cls));
        LLVMValueRef e = lg_exp(g, lg_fsub(g, LLVMBuildFPExt(g->b, lg_load(g, w->xr, j), g->f64, ""), md));
        LLVMBuildStore(g->b, lg_fadd(g, LLVMBuildLoad2(g->b, g->f64, se, ""), e), se);
        lg_loop_close(g, &l);
        LLVMValueRef lse = lg_fadd(g, md, lg_log(g, LLVMBuildLoad2(g->b, g->f64, se, "")));
        LLVMValueRef inf = LLVMBuildFCmp(
            g->b, LLVMRealOEQ, lg_sel(g, LLVMRealOLT, md, lg_f64(g, 0), LLVMBuildFNeg(g->b, md, ""), md),
            lg_f64(g, 1.0 / 0.0), "");
        w->lse = LLVMBuildSelect(g->b, inf, md, lse, "");
    }
    if (labels) {
        LLVMValueRef y32 = lg_load(g, lg_ptr(g, arg(g, id, 1)), w->r);
        LLVMValueRef bad =
            LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, y32, lg_i32(g, 0), ""),
                        LLVMBuildICmp(g->b, LLVMIntSGE, y32, lg_i32(g, (int32_t)w->cls), ""), "");
        char fmt[128];
        snprintf(fmt, sizeof fmt, "label %%d of batch item %%lld is out of range for %lld classes",
                 (long long)w->cls);
        LLVMValueRef fa[2] = {y32, w->r};
        fail_if(g, bad, fmt, 2, fa);
        w->y = LLVMBuildSExt(g->b, y32, g->i64, "");
    }
}

static void op_cross_entropy(struct lg *g, int id) {
    bool labels = node(g, arg(g, id, 1))->type.dtype == DT_I32;
    const struct shape *x = arg_shape(g, id, 0);
    LLVMValueRef sum = lg_var(g, g->f64, lg_f64(g, 0));
    struct rows w;
    rows_open(g, id, &w, true);
    if (labels) {
        LLVMValueRef v = LLVMBuildFPExt(g->b, lg_load(g, w.xr, w.y), g->f64, "");
        LLVMBuildStore(g->b, lg_fadd(g, LLVMBuildLoad2(g->b, g->f64, sum, ""), lg_fsub(g, w.lse, v)), sum);
    } else {
        LLVMValueRef tr = gep(g, lg_ptr(g, arg(g, id, 1)), LLVMBuildNSWMul(g->b, w.r, lg_i64(g, w.cls), ""));
        struct lg_loop l;
        LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 0), lg_i64(g, w.cls));
        LLVMValueRef tv = LLVMBuildFPExt(g->b, lg_load(g, tr, j), g->f64, "");
        LLVMValueRef d = lg_fsub(g, LLVMBuildFPExt(g->b, lg_load(g, w.xr, j), g->f64, ""), w.lse);
        LLVMBuildStore(g->b, lg_fsub(g, LLVMBuildLoad2(g->b, g->f64, sum, ""), lg_fmul(g, tv, d)), sum);
        lg_loop_close(g, &l);
    }
    lg_loop_close(g, &w.l);
    LLVMValueRef r = lg_fdiv(g, LLVMBuildLoad2(g->b, g->f64, sum, ""),
                             LLVMBuildSIToFP(g->b, lg_x(g, cgc_dim(x, 0)), g->f64, ""));
    lg_store(g, LLVMBuildFPTrunc(g->b, r, g->f32, ""), lg_ptr(g, id), lg_i64(g, 0));
}

static void op_cross_entropy_grad(struct lg *g, int id) {
    bool labels = node(g, arg(g, id, 1))->type.dtype == DT_I32;
    const struct shape *x = arg_shape(g, id, 0);
    LLVMValueRef gv = LLVMBuildFPExt(g->b, lg_load(g, lg_ptr(g, arg(g, id, 2)), lg_i64(g, 0)), g->f64, "");
    gv = lg_fdiv(g, gv, LLVMBuildSIToFP(g->b, lg_x(g, cgc_dim(x, 0)), g->f64, ""));
    struct rows w;
    rows_open(g, id, &w, true);
    LLVMValueRef dr = gep(g, lg_ptr(g, id), LLVMBuildNSWMul(g->b, w.r, lg_i64(g, w.cls), ""));
    LLVMValueRef tr =
        labels ? NULL : gep(g, lg_ptr(g, arg(g, id, 1)), LLVMBuildNSWMul(g->b, w.r, lg_i64(g, w.cls), ""));
    LLVMValueRef ts = NULL;
    struct lg_loop l;
    if (!labels) {
        LLVMValueRef tsv = lg_var(g, g->f64, lg_f64(g, 0));
        LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 0), lg_i64(g, w.cls));
        LLVMBuildStore(g->b,
                       lg_fadd(g, LLVMBuildLoad2(g->b, g->f64, tsv, ""),
                               LLVMBuildFPExt(g->b, lg_load(g, tr, j), g->f64, "")),
                       tsv);
        lg_loop_close(g, &l);
        ts = LLVMBuildLoad2(g->b, g->f64, tsv, "");
    }
    LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 0), lg_i64(g, w.cls));
    /* exp(xr[j] - lse): float xr[j] promoted to double, as C's usual conversions. */
    LLVMValueRef e = lg_exp(g, lg_fsub(g, LLVMBuildFPExt(g->b, lg_load(g, w.xr, j), g->f64, ""), w.lse));
    LLVMValueRef d;
    if (labels) {
        LLVMValueRef hit = LLVMBuildICmp(g->b, LLVMIntEQ, j, w.y, "");
        d = lg_fsub(g, e, LLVMBuildSelect(g->b, hit, lg_f64(g, 1), lg_f64(g, 0), ""));
    } else {
        d = lg_fsub(g, lg_fmul(g, e, ts), LLVMBuildFPExt(g->b, lg_load(g, tr, j), g->f64, ""));
    }
    lg_store(g, LLVMBuildFPTrunc(g->b, lg_fmul(g, gv, d), g->f32, ""), dr, j);
    lg_loop_close(g, &l);
    lg_loop_close(g, &w.l);
}

/* The index of the first maximum of row p[0..cls). */
static LLVMValueRef row_argmax(struct lg *g, LLVMValueRef p, int64_t cls) {
    LLVMValueRef best = lg_var(g, g->i64, lg_i64(g, 0));
    struct lg_loop l;
    LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 1), lg_i64(g, cls));
    LLVMValueRef b = LLVMBuildLoad2(g->b, g->i64, best, "");
    LLVMValueRef gt = LLVMBuildFCmp(g->b, LLVMRealOGT, lg_load(g, p, j), lg_load(g, p, b), "");
    LLVMBuildStore(g->b, LLVMBuildSelect(g->b, gt, j, b, ""), best);
    lg_loop_close(g, &l);
    return LLVMBuildLoad2(g->b, g->i64, best, "");
}

static void op_accuracy(struct lg *g, int id) {
    bool labels = node(g, arg(g, id, 1))->type.dtype == DT_I32;
    const struct shape *x = arg_shape(g, id, 0);
    LLVMValueRef hits = lg_var(g, g->i64, lg_i64(g, 0));
    struct rows w;
    rows_open(g, id, &w, false);
    LLVMValueRef best = row_argmax(g, w.xr, w.cls);
    LLVMValueRef y = w.y;
    if (!labels)
        y = row_argmax(g, gep(g, lg_ptr(g, arg(g, id, 1)), LLVMBuildNSWMul(g->b, w.r, lg_i64(g, w.cls), "")),
                       w.cls);
    LLVMValueRef hit = LLVMBuildZExt(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, best, y, ""), g->i64, "");
    LLVMBuildStore(g->b, LLVMBuildAdd(g->b, LLVMBuildLoad2(g->b, g->i64, hits, ""), hit, ""), hits);
    lg_loop_close(g, &w.l);
    LLVMValueRef r = lg_fdiv(g, LLVMBuildSIToFP(g->b, LLVMBuildLoad2(g->b, g->i64, hits, ""), g->f64, ""),
                             LLVMBuildSIToFP(g->b, lg_x(g, cgc_dim(x, 0)), g->f64, ""));
    lg_store(g, LLVMBuildFPTrunc(g->b, r, g->f32, ""), lg_ptr(g, id), lg_i64(g, 0));
}

/* --------------------------------------------------------------- NN ops */

/* A pointer to conv node n's struct nrt_conv, its batch the run's where it has N. */
static LLVMValueRef conv_geo(struct lg *g, const struct ir_node *n) {
    const struct shape *x, *w, *y;
    cg_conv_roles(g->c.f, n, &x, &w, &y);
    struct nrt_conv geo = cg_conv_geo(g->c.f, n);
    int64_t per;
    geo.chunk = cg_conv_chunk(g->c.f, n, &per);
    struct cgc_x batch = cgc_dim(x, 0);
    geo.n = batch.k;
    size_t off = offsetof(struct nrt_conv, n);
    LLVMValueRef nv = lg_x(g, batch);
    return lg_struct(g, &geo, sizeof geo, &off, &nv, batch.n ? 1 : 0);
}

static void op_conv(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    LLVMValueRef gp = conv_geo(g, n);
    const char *fn = n->op == OP_CONV2D               ? "nrt_conv2d"
                     : n->op == OP_CONV2D_GRAD_WEIGHT ? "nrt_conv2d_grad_weight"
                                                      : "nrt_conv2d_grad_input";
    LLVMTypeRef pt[5] = {g->p8, g->pf32, g->pf32, g->pf32, g->pf32};
    LLVMValueRef args[5] = {gp, lg_ptr(g, arg(g, id, 0)), lg_ptr(g, arg(g, id, 1)), lg_ptr(g, id),
                            g->sptr[id]};
    if (!args[4]) NETC_INTERNAL("conv %%%d has no scratch", id);
    /* Inference's forward with Winograd F(4x4, 3x3) allowed, as the C
     * backend's (cg_lib_conv_ep): the bias and activation come after, in
     * their own loops, and add to the same values. */
    if (n->op == OP_CONV2D && g->c.f->mode == MODE_EVAL) {
        LLVMTypeRef bt[7] = {g->p8, g->pf32, g->pf32, g->pf32, g->i32, g->pf32, g->pf32};
        LLVMValueRef bargs[7] = {
            args[0], args[1], args[2], LLVMConstNull(g->pf32), lg_i32(g, NRT_CONV_WINOGRAD),
            args[3], args[4]};
        lg_call(g, "nrt_conv2d_bias_act", g->v, bt, 7, bargs);
        return;
    }
    lg_call(g, fn, g->v, pt, 5, args);
}

/* A conv2d kernel with its bias and relu or leaky relu (cgc_kernel_conv_act):
 * one nrt_conv2d_bias_act or nrt_conv2d_bias_leaky call into the root's
 * buffer, as the C backend's (cg_lib_conv_ep), Winograd allowed in inference. */
static void conv_ep(struct lg *g, const struct cgc_kernel *k, int bias, bool relu, int leaky) {
    const struct ir_node *n = node(g, k->head);
    LLVMValueRef gp = conv_geo(g, n);
    if (!g->sptr[k->head]) NETC_INTERNAL("conv %%%d has no scratch", k->head);
    int wino = g->c.f->mode == MODE_EVAL ? NRT_CONV_WINOGRAD : 0;
    LLVMValueRef bp = bias >= 0 ? lg_ptr(g, bias) : LLVMConstNull(g->pf32);
    if (leaky >= 0) {
        LLVMTypeRef pt[8] = {g->p8, g->pf32, g->pf32, g->pf32, g->f32, g->i32, g->pf32, g->pf32};
        LLVMValueRef args[8] = {gp,
                                lg_ptr(g, n->args[0]),
                                lg_ptr(g, n->args[1]),
                                bp,
                                lg_f32(g, ir_attr_f(node(g, leaky), ATTR_ALPHA)),
                                lg_i32(g, wino),
                                lg_ptr(g, k->root),
                                g->sptr[k->head]};
        lg_call(g, "nrt_conv2d_bias_leaky", g->v, pt, 8, args);
        return;
    }
    LLVMTypeRef pt[7] = {g->p8, g->pf32, g->pf32, g->pf32, g->i32, g->pf32, g->pf32};
    LLVMValueRef args[7] = {gp,
                            lg_ptr(g, n->args[0]),
                            lg_ptr(g, n->args[1]),
                            bp,
                            lg_i32(g, (relu ? NRT_ACT_RELU : NRT_ACT_NONE) | wino),
                            lg_ptr(g, k->root),
                            g->sptr[k->head]};
    lg_call(g, "nrt_conv2d_bias_act", g->v, pt, 7, args);
}

/* conv2d_grad_weight_maxpool (x, y, dp): the conv's and the pooling's
 * geometry (the batch patched into both), one runtime call. */
static void op_conv_grad_weight_maxpool(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const struct shape *x, *w, *y, *dp = arg_shape(g, id, 2);
    cg_conv_roles(g->c.f, n, &x, &w, &y);
    const int64_t *pk = ir_attr_v(n, ATTR_POOL_KERNEL, NULL), *ps = ir_attr_v(n, ATTR_POOL_STRIDE, NULL);
    const int64_t *pp = ir_attr_v(n, ATTR_POOL_PAD, NULL);
    struct cgc_x batch = cgc_dim(x, 0), planes = cgc_dims_prod(y, 0, 2);
    struct nrt_conv geo = cg_conv_geo(g->c.f, n);
    geo.n = batch.k;
    struct nrt_pool pgeo = {planes.k,   y->dim[2],      y->dim[3],      dp->dim[2],
                            dp->dim[3], {pk[0], pk[1]}, {ps[0], ps[1]}, {pp[0], pp[1], pp[2], pp[3]}};
    size_t off = offsetof(struct nrt_conv, n), poff = offsetof(struct nrt_pool, planes);
    LLVMValueRef nv = lg_x(g, batch), pv = lg_x(g, planes);
    LLVMValueRef gp = lg_struct(g, &geo, sizeof geo, &off, &nv, batch.n ? 1 : 0);
    LLVMValueRef pgp = lg_struct(g, &pgeo, sizeof pgeo, &poff, &pv, planes.n ? 1 : 0);
    LLVMTypeRef pt[6] = {g->p8, g->p8, g->pf32, g->pf32, g->pf32, g->pf32};
    LLVMValueRef args[6] = {
        gp, pgp, lg_ptr(g, arg(g, id, 0)), lg_ptr(g, arg(g, id, 1)), lg_ptr(g, arg(g, id, 2)), lg_ptr(g, id)};
    lg_call(g, "nrt_conv2d_grad_weight_maxpool", g->v, pt, 6, args);
}

static void op_pool(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    bool grad = n->op == OP_MAXPOOL2D_GRAD || n->op == OP_AVGPOOL2D_GRAD;
    const struct shape *x = arg_shape(g, id, 0), *y = grad ? arg_shape(g, id, 1) : shape_of(g, id);
    const int64_t *k = ir_attr_v(n, ATTR_KERNEL, NULL), *s = ir_attr_v(n, ATTR_STRIDE, NULL);
    const int64_t *p = ir_attr_v(n, ATTR_PAD, NULL);
    struct cgc_x planes = cgc_dims_prod(x, 0, 2);
    struct nrt_pool geo = {planes.k,  x->dim[2],    x->dim[3],    y->dim[2],
                           y->dim[3], {k[0], k[1]}, {s[0], s[1]}, {p[0], p[1], p[2], p[3]}};
    size_t off = offsetof(struct nrt_pool, planes);
    LLVMValueRef pv = lg_x(g, planes);
    LLVMValueRef gp = lg_struct(g, &geo, sizeof geo, &off, &pv, planes.n ? 1 : 0);
    LLVMTypeRef pt[4] = {g->p8, g->pf32, g->pf32, g->pf32};
    LLVMValueRef args[4] = {gp, NULL, NULL, NULL};
    const char *fn;
    int na;
    switch (n->op) {
    case OP_MAXPOOL2D:
        fn = "nrt_maxpool2d", na = 3, args[1] = lg_ptr(g, arg(g, id, 0)), args[2] = lg_ptr(g, id);
        break;
    case OP_AVGPOOL2D:
        fn = "nrt_avgpool2d", na = 3, args[1] = lg_ptr(g, arg(g, id, 0)), args[2] = lg_ptr(g, id);
        break;
    case OP_MAXPOOL2D_GRAD:
        fn = "nrt_maxpool2d_grad", na = 4;
        args[1] = lg_ptr(g, arg(g, id, 0)), args[2] = lg_ptr(g, arg(g, id, 1)), args[3] = lg_ptr(g, id);
        break;
    default:
        fn = "nrt_avgpool2d_grad", na = 3, args[1] = lg_ptr(g, arg(g, id, 1)), args[2] = lg_ptr(g, id);
        break;
    }
    lg_call(g, fn, g->v, pt, na, args);
}

/* ------------------------------------------------ calls, copies, failures */

/* void name(args...): pointers pass as i8 * (the runtime's prototypes take
 * float * or int32_t *, the same in the ABI). */
static void rtcall(struct lg *g, const char *name, int n, LLVMValueRef *args) {
    LLVMTypeRef p[16];
    for (int i = 0; i < n; i++) {
        if (LLVMGetTypeKind(LLVMTypeOf(args[i])) == LLVMPointerTypeKind)
            args[i] = LLVMBuildBitCast(g->b, args[i], g->p8, "");
        p[i] = LLVMTypeOf(args[i]);
    }
    lg_call(g, name, g->v, p, n, args);
}

/* if (cond) { nrt_ctx_fail(ctx, fmt, args...); return; } */
static void fail_if(struct lg *g, LLVMValueRef cond, const char *fmt, int n, LLVMValueRef *args) {
    g->may_fail = true;
    LLVMBasicBlockRef after = lg_if(g, cond);
    LLVMTypeRef p[2] = {g->p8, g->p8};
    LLVMTypeRef ft = LLVMFunctionType(g->v, p, 2, 1);
    LLVMValueRef fn = LLVMGetNamedFunction(g->mod, "nrt_ctx_fail");
    if (!fn) fn = LLVMAddFunction(g->mod, "nrt_ctx_fail", ft);
    LLVMValueRef all[8] = {g->ctx, LLVMBuildGlobalStringPtr(g->b, fmt, "")};
    for (int i = 0; i < n && i < 6; i++) all[2 + i] = args[i];
    LLVMBuildCall2(g->b, ft, fn, all, (unsigned)(2 + n), "");
    LLVMBuildBr(g->b, g->ret);
    LLVMPositionBuilderAtEnd(g->b, after);
}

static LLVMValueRef bytes(struct lg *g, LLVMValueRef elems) {
    return LLVMBuildNSWMul(g->b, elems, lg_i64(g, 4), "");
}

/* Copies `len` rows of every outer block of operand a (rows from...) into rows
 * to... of node id along axis (c_ops.c's copy_along). */
static void copy_along(struct lg *g, int id, int a, int64_t axis, int64_t from, int64_t to, int64_t len) {
    const struct shape *x = arg_shape(g, id, a), *y = shape_of(g, id);
    struct cgc_x outer = cgc_dims_prod(y, 0, (int)axis), inner = cgc_dims_prod(y, (int)axis + 1, y->rank);
    int64_t kx = x->dim[axis], ky = y->dim[axis];
    LLVMValueRef px = lg_ptr(g, arg(g, id, a)), py = lg_ptr(g, id), in = lg_x(g, inner);
    struct lg_loop l;
    LLVMValueRef o = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, outer));
    LLVMValueRef dy = LLVMBuildNSWMul(
        g->b, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, o, lg_i64(g, ky), ""), lg_i64(g, to), ""), in, "");
    LLVMValueRef dx = LLVMBuildNSWMul(
        g->b, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, o, lg_i64(g, kx), ""), lg_i64(g, from), ""), in,
        "");
    LLVMBuildMemCpy(g->b, gep(g, py, dy), 4, gep(g, px, dx), 4,
                    bytes(g, LLVMBuildNSWMul(g->b, lg_i64(g, len), in, "")));
    lg_loop_close(g, &l);
}

static void op_slice(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    copy_along(g, id, 0, ir_attr_i(n, ATTR_AXIS), ir_attr_i(n, ATTR_START), 0, ir_attr_i(n, ATTR_SIZE));
}

static void op_pad(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    int64_t axis = ir_attr_i(n, ATTR_AXIS);
    LLVMBuildMemSet(g->b, lg_ptr8(g, id), LLVMConstInt(g->i8, 0, 0),
                    bytes(g, lg_x(g, cgc_count(&n->type.shape))), 4);
    copy_along(g, id, 0, axis, 0, ir_attr_i(n, ATTR_BEFORE), arg_shape(g, id, 0)->dim[axis]);
}

static void op_concat(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    int64_t axis = ir_attr_i(n, ATTR_AXIS), at = 0;
    for (int a = 0; a < n->nargs; a++) {
        int64_t k = arg_shape(g, id, a)->dim[axis];
        copy_along(g, id, a, axis, 0, at, k);
        at += k;
    }
}

static void op_transpose(struct lg *g, int id) {
    const struct shape *y = shape_of(g, id), *x = arg_shape(g, id, 0);
    const int64_t *perm = ir_attr_v(node(g, id), ATTR_PERM, NULL);
    struct lnest ns = {.lo = NULL};
    cg_nest_init(&ns.n, y, 2);
    struct cgc_x sx[IR_MAX_RANK];
    cgc_strides(x, sx);
    for (int d = 0; d < y->rank; d++) ns.n.st[1][d] = sx[perm[d]];
    LLVMValueRef px = lg_ptr(g, arg(g, id, 0)), py = lg_ptr(g, id);
    nest_open(g, &ns);
    lg_store(g, lg_load(g, px, ns.idx[1]), py, ns.idx[0]);
    nest_close(g, &ns);
}

/* ---------------------------------------------------------------- softmax */

/* Rows along `axis` of operand 0 (c_ops.c's axis_rows_open): base and stride. */
struct axrows {
    struct lg_loop lo, li; /* outer blocks, inner positions */
    LLVMValueRef base, st; /* the row's first element and its stride */
    LLVMValueRef k;        /* its length */
};

static void axrows_open(struct lg *g, int id, struct axrows *w) {
    const struct shape *s = arg_shape(g, id, 0);
    int axis = (int)ir_attr_i(node(g, id), ATTR_AXIS);
    struct cgc_x outer = cgc_dims_prod(s, 0, axis), k = cgc_dim(s, axis),
                 inner = cgc_dims_prod(s, axis + 1, s->rank);
    w->k = lg_x(g, k);
    w->st = lg_x(g, inner);
    LLVMValueRef o = lg_loop_open(g, &w->lo, lg_i64(g, 0), lg_x(g, outer));
    LLVMValueRef in = lg_loop_open(g, &w->li, lg_i64(g, 0), w->st);
    w->base =
        LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, LLVMBuildNSWMul(g->b, o, w->k, ""), w->st, ""), in, "");
}

static void axrows_close(struct lg *g, struct axrows *w) {
    lg_loop_close(g, &w->li);
    lg_loop_close(g, &w->lo);
}

static LLVMValueRef at_row(struct lg *g, struct axrows *w, LLVMValueRef j) {
    return LLVMBuildNSWAdd(g->b, w->base, LLVMBuildNSWMul(g->b, j, w->st, ""), "");
}

static LLVMValueRef ld64(struct lg *g, LLVMValueRef p, LLVMValueRef i) {
    return LLVMBuildFPExt(g->b, lg_load(g, p, i), g->f64, "");
}

static void accumulate(struct lg *g, LLVMValueRef var, LLVMValueRef v) {
    LLVMBuildStore(g->b, lg_fadd(g, LLVMBuildLoad2(g->b, LLVMTypeOf(v), var, ""), v), var);
}

static void op_softmax(struct lg *g, int id) {
    bool log_out = node(g, id)->op == OP_LOG_SOFTMAX;
    LLVMValueRef x = lg_ptr(g, arg(g, id, 0)), y = lg_ptr(g, id);
    struct axrows w;
    axrows_open(g, id, &w);
    LLVMValueRef mx = lg_var(g, g->f32, lg_f32(g, -1.0 / 0.0)), s = lg_var(g, g->f64, lg_f64(g, 0));
    struct lg_loop l;
    LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 0), w.k);
    LLVMValueRef v = lg_load(g, x, at_row(g, &w, j)), cur = LLVMBuildLoad2(g->b, g->f32, mx, "");
    LLVMBuildStore(g->b, lg_sel(g, LLVMRealOGT, v, cur, v, cur), mx);
    lg_loop_close(g, &l);
    LLVMValueRef md = LLVMBuildFPExt(g->b, LLVMBuildLoad2(g->b, g->f32, mx, ""), g->f64, "");
    j = lg_loop_open(g, &l, lg_i64(g, 0), w.k);
    accumulate(g, s, lg_exp(g, lg_fsub(g, ld64(g, x, at_row(g, &w, j)), md)));
    lg_loop_close(g, &l);
    LLVMValueRef amd = lg_sel(g, LLVMRealOLT, md, lg_f64(g, 0), LLVMBuildFNeg(g->b, md, ""), md);
    LLVMValueRef lse = lg_sel(g, LLVMRealOEQ, amd, lg_f64(g, 1.0 / 0.0), md,
                              lg_fadd(g, md, lg_log(g, LLVMBuildLoad2(g->b, g->f64, s, ""))));
    j = lg_loop_open(g, &l, lg_i64(g, 0), w.k);
    LLVMValueRef d = lg_fsub(g, ld64(g, x, at_row(g, &w, j)), lse);
    lg_store(g, LLVMBuildFPTrunc(g->b, log_out ? d : lg_exp(g, d), g->f32, ""), y, at_row(g, &w, j));
    lg_loop_close(g, &l);
    axrows_close(g, &w);
}

/* (y, dy): softmax dx = y (dy - sum(dy y)); log-softmax dx = dy - exp(y) sum(dy). */
static void op_softmax_grad(struct lg *g, int id) {
    bool log_in = node(g, id)->op == OP_LOG_SOFTMAX_GRAD;
    LLVMValueRef y = lg_ptr(g, arg(g, id, 0)), dy = lg_ptr(g, arg(g, id, 1)), dx = lg_ptr(g, id);
    struct axrows w;
    axrows_open(g, id, &w);
    LLVMValueRef s = lg_var(g, g->f64, lg_f64(g, 0));
    struct lg_loop l;
    LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 0), w.k), at = at_row(g, &w, j);
    accumulate(g, s, log_in ? ld64(g, dy, at) : lg_fmul(g, ld64(g, dy, at), ld64(g, y, at)));
    lg_loop_close(g, &l);
    LLVMValueRef sv = LLVMBuildLoad2(g->b, g->f64, s, "");
    j = lg_loop_open(g, &l, lg_i64(g, 0), w.k);
    at = at_row(g, &w, j);
    LLVMValueRef r = log_in ? lg_fsub(g, ld64(g, dy, at), lg_fmul(g, lg_exp(g, ld64(g, y, at)), sv))
                            : lg_fmul(g, ld64(g, y, at), lg_fsub(g, ld64(g, dy, at), sv));
    lg_store(g, LLVMBuildFPTrunc(g->b, r, g->f32, ""), dx, at);
    lg_loop_close(g, &l);
    axrows_close(g, &w);
}

/* ------------------------------------------------- norms, attention, rnn */

static void op_layernorm(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const struct shape *x = arg_shape(g, id, 0);
    LLVMValueRef args[8] = {lg_x(g, cgc_dims_prod(x, 0, x->rank - 1)),
                            lg_i64(g, x->dim[x->rank - 1]),
                            lg_f64(g, n->op == OP_LAYERNORM_GRAD_SUMS ? 0 : ir_attr_f(n, ATTR_EPS)),
                            lg_ptr(g, arg(g, id, 0)),
                            NULL,
                            NULL,
                            NULL,
                            NULL};
    if (n->op == OP_LAYERNORM_GRAD_SUMS) {
        LLVMValueRef s[5] = {args[0], args[1], args[3], lg_ptr(g, arg(g, id, 1)), lg_ptr(g, id)};
        rtcall(g, "nrt_layernorm_grad_sums", 5, s);
    } else if (n->op == OP_LAYERNORM_GRAD && n->nargs == 4) {
        args[4] = lg_ptr(g, arg(g, id, 1)), args[5] = lg_ptr(g, arg(g, id, 2));
        args[6] = lg_ptr(g, arg(g, id, 3)), args[7] = lg_ptr(g, id);
        rtcall(g, "nrt_layernorm_grad_res", 8, args);
    } else if (n->op == OP_LAYERNORM_GRAD && n->nargs == 3) {
        args[4] = lg_ptr(g, arg(g, id, 1)), args[5] = lg_ptr(g, arg(g, id, 2)), args[6] = lg_ptr(g, id);
        rtcall(g, "nrt_layernorm_grad_gamma", 7, args);
    } else if (n->op == OP_LAYERNORM_GRAD) {
        args[4] = lg_ptr(g, arg(g, id, 1)), args[5] = lg_ptr(g, id);
        rtcall(g, "nrt_layernorm_grad", 6, args);
    } else {
        args[4] = lg_ptr(g, id);
        rtcall(g, "nrt_layernorm", 5, args);
    }
}

/* Batch norm's training gradient: runtime/norm.c on x as [n, c, inner]. */
static void op_batchnorm_grad(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const struct shape *x = arg_shape(g, id, 0);
    LLVMValueRef args[11] = {lg_x(g, cgc_dim(x, 0)), lg_i64(g, x->dim[1]),
                             lg_x(g, cgc_dims_prod(x, 2, x->rank))};
    if (n->op == OP_BATCHNORM_GRAD_SUMS) {
        for (int i = 0; i < 3; i++) args[3 + i] = lg_ptr(g, arg(g, id, i));
        args[6] = lg_ptr(g, id);
        rtcall(g, "nrt_batchnorm_grad_sums", 7, args);
        return;
    }
    args[3] = lg_f64(g, ir_attr_f(n, ATTR_EPS));
    for (int i = 0; i < 6; i++) args[4 + i] = lg_ptr(g, arg(g, id, i));
    args[10] = lg_ptr(g, id);
    rtcall(g, "nrt_batchnorm_grad", 11, args);
}

static LLVMValueRef scratch(struct lg *g, int id) {
    if (!g->sptr[id]) NETC_INTERNAL("node %%%d has no scratch", id);
    return g->sptr[id];
}

static void op_attention(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const struct shape *x = arg_shape(g, id, 0);
    struct nrt_attn geo;
    memset(&geo, 0, sizeof geo);
    struct cgc_x items = cgc_dim(x, 0);
    geo.n = items.k, geo.t = x->dim[1], geo.e = x->dim[2] / 3, geo.h = ir_attr_i(n, ATTR_HEADS);
    geo.scale = (float)ir_attr_f(n, ATTR_SCALE);
    geo.causal = (int)ir_attr_i(n, ATTR_CAUSAL);
    size_t off = offsetof(struct nrt_attn, n);
    LLVMValueRef nv = lg_x(g, items);
    LLVMValueRef gp = lg_struct(g, &geo, sizeof geo, &off, &nv, items.n ? 1 : 0);
    if (n->op == OP_ATTENTION_GRAD) {
        LLVMValueRef args[6] = {gp,
                                lg_ptr(g, arg(g, id, 0)),
                                lg_ptr(g, arg(g, id, 1)),
                                lg_ptr(g, arg(g, id, 2)),
                                lg_ptr(g, id),
                                scratch(g, id)};
        rtcall(g, "nrt_attention_grad", 6, args);
    } else {
        LLVMValueRef args[4] = {gp, lg_ptr(g, arg(g, id, 0)), lg_ptr(g, id), scratch(g, id)};
        rtcall(g, "nrt_attention", 4, args);
    }
}

/* struct nrt_rnn of a recurrent node whose ws is operand `ws` (-1: the node)
 * and w_hh operand `whh`, x operand `x` (-1: none), c_ops.c's rnn_geo. */
static LLVMValueRef rnn_geo(struct lg *g, int id, int ws, int whh, int x) {
    const struct ir_node *n = node(g, id);
    const struct shape *w = ws < 0 ? shape_of(g, id) : arg_shape(g, id, ws), *wh = arg_shape(g, id, whh);
    struct nrt_rnn geo;
    memset(&geo, 0, sizeof geo);
    struct cgc_x items = cgc_dim(w, 0);
    geo.n = items.k, geo.t = w->dim[1], geo.f = x >= 0 ? arg_shape(g, id, x)->dim[2] : 0, geo.h = wh->dim[1];
    geo.cell = (int)ir_attr_i(n, ATTR_CELL), geo.reverse = (int)ir_attr_i(n, ATTR_REVERSE);
    if (n->op == OP_RNN_BPTT) geo.dt = arg_shape(g, id, 2)->dim[1], geo.dc = arg_shape(g, id, 2)->dim[2];
    size_t off = offsetof(struct nrt_rnn, n);
    LLVMValueRef nv = lg_x(g, items);
    return lg_struct(g, &geo, sizeof geo, &off, &nv, items.n ? 1 : 0);
}

static void op_rnn(struct lg *g, int id) {
    LLVMValueRef args[10] = {rnn_geo(g, id, -1, 2, 0)};
    for (int a = 0; a < 7; a++) args[1 + a] = lg_ptr(g, arg(g, id, a));
    args[8] = lg_ptr(g, id), args[9] = scratch(g, id);
    rtcall(g, "nrt_rnn_forward", 10, args);
}

static void op_rnn_bptt(struct lg *g, int id) {
    LLVMValueRef args[8] = {rnn_geo(g, id, 1, 0, -1)};
    for (int a = 0; a < 5; a++) args[1 + a] = lg_ptr(g, arg(g, id, a));
    args[6] = lg_ptr(g, id), args[7] = scratch(g, id);
    rtcall(g, "nrt_rnn_bptt", 8, args);
}

static void op_rnn_grad(struct lg *g, int id) {
    LLVMValueRef args[8] = {rnn_geo(g, id, 4, 3, 1),  lg_i32(g, (int32_t)ir_attr_i(node(g, id), ATTR_WRT)),
                            lg_ptr(g, arg(g, id, 0)), lg_ptr(g, arg(g, id, 1)),
                            lg_ptr(g, arg(g, id, 2)), lg_ptr(g, arg(g, id, 4)),
                            lg_ptr(g, arg(g, id, 5)), lg_ptr(g, id)};
    rtcall(g, "nrt_rnn_grad", 8, args);
}

/* ----------------------------------------------------------------- tokens */

/* The i32 id at p[i], failing the step when outside [0, rows). */
static LLVMValueRef checked_id(struct lg *g, LLVMValueRef ids, LLVMValueRef i, int64_t rows) {
    LLVMValueRef v = lg_load(g, ids, i);
    LLVMValueRef bad = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, v, lg_i32(g, 0), ""),
                                   LLVMBuildICmp(g->b, LLVMIntSGE, v, lg_i32(g, (int32_t)rows), ""), "");
    char fmt[128];
    snprintf(fmt, sizeof fmt, "token id %%d at position %%lld is out of range for an embedding of %lld rows",
             (long long)rows);
    LLVMValueRef fa[2] = {v, i};
    fail_if(g, bad, fmt, 2, fa);
    return LLVMBuildSExt(g->b, v, g->i64, "");
}

static void op_embedding(struct lg *g, int id) {
    const struct shape *w = arg_shape(g, id, 0);
    int64_t rows = w->dim[0], d = w->dim[1];
    LLVMValueRef pw = lg_ptr(g, arg(g, id, 0)), ids = lg_ptr(g, arg(g, id, 1)), py = lg_ptr(g, id);
    struct lg_loop l;
    LLVMValueRef p = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, cgc_count(arg_shape(g, id, 1))));
    LLVMValueRef v = checked_id(g, ids, p, rows);
    LLVMBuildMemCpy(g->b, gep(g, py, LLVMBuildNSWMul(g->b, p, lg_i64(g, d), "")), 4,
                    gep(g, pw, LLVMBuildNSWMul(g->b, v, lg_i64(g, d), "")), 4, lg_i64(g, 4 * d));
    lg_loop_close(g, &l);
}

static void op_embedding_grad(struct lg *g, int id) {
    const struct shape *dw = shape_of(g, id);
    int64_t rows = dw->dim[0], d = dw->dim[1];
    LLVMValueRef ids = lg_ptr(g, arg(g, id, 0)), pg = lg_ptr(g, arg(g, id, 1)), pd = lg_ptr(g, id);
    LLVMBuildMemSet(g->b, lg_ptr8(g, id), LLVMConstInt(g->i8, 0, 0), lg_i64(g, 4 * rows * d), 4);
    struct lg_loop l, lj;
    LLVMValueRef p = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, cgc_count(arg_shape(g, id, 0))));
    LLVMValueRef v = checked_id(g, ids, p, rows);
    LLVMValueRef dr = gep(g, pd, LLVMBuildNSWMul(g->b, v, lg_i64(g, d), "")),
                 gr = gep(g, pg, LLVMBuildNSWMul(g->b, p, lg_i64(g, d), ""));
    LLVMValueRef j = lg_loop_open(g, &lj, lg_i64(g, 0), lg_i64(g, d));
    lg_store(g, lg_fadd(g, lg_load(g, dr, j), lg_load(g, gr, j)), dr, j);
    lg_loop_close(g, &lj);
    lg_loop_close(g, &l);
}

/* Masked sequence losses (c_text.c): rows of logits [..., cls] with i32 targets;
 * a target equal to `ignore` skips its row; others must be in [0, cls). */
struct masked {
    LLVMValueRef rows, t, kept; /* rows (i64), targets (i32 *), kept rows (i64 var) */
    int64_t cls, ignore;        /* classes, the ignored target */
    struct lg_loop l;           /* over rows (after masked_rows) */
    LLVMValueRef r, tr, xr;     /* the row, its target (i64), its logits */
    LLVMBasicBlockRef skip;     /* the end of the row's body */
};

static void masked_open(struct lg *g, int id, struct masked *w) {
    const struct shape *x = arg_shape(g, id, 0);
    w->ignore = ir_attr_i(node(g, id), ATTR_IGNORE);
    w->cls = x->dim[x->rank - 1];
    w->rows = lg_x(g, cgc_dims_prod(x, 0, x->rank - 1));
    w->t = lg_ptr(g, arg(g, id, 1));
    w->kept = lg_var(g, g->i64, lg_i64(g, 0));
    struct lg_loop l;
    LLVMValueRef r = lg_loop_open(g, &l, lg_i64(g, 0), w->rows);
    LLVMValueRef t = lg_load(g, w->t, r);
    LLVMBasicBlockRef after = lg_if(g, LLVMBuildICmp(g->b, LLVMIntNE, t, lg_i32(g, (int32_t)w->ignore), ""));
    LLVMValueRef bad = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, t, lg_i32(g, 0), ""),
                                   LLVMBuildICmp(g->b, LLVMIntSGE, t, lg_i32(g, (int32_t)w->cls), ""), "");
    LLVMValueRef fa[3] = {t, r, lg_i64(g, w->cls)};
    fail_if(g, bad, "target %d at position %lld is out of range for %lld classes", 3, fa);
    LLVMBuildStore(g->b, LLVMBuildAdd(g->b, LLVMBuildLoad2(g->b, g->i64, w->kept, ""), lg_i64(g, 1), ""),
                   w->kept);
    lg_endif(g, after);
    lg_loop_close(g, &l);
}

/* Opens the loop over kept rows: r, tr and xr are set. */
static void masked_rows(struct lg *g, int id, struct masked *w) {
    w->r = lg_loop_open(g, &w->l, lg_i64(g, 0), w->rows);
    LLVMValueRef t = lg_load(g, w->t, w->r);
    w->skip = lg_if(g, LLVMBuildICmp(g->b, LLVMIntNE, t, lg_i32(g, (int32_t)w->ignore), ""));
    w->tr = LLVMBuildSExt(g->b, t, g->i64, "");
    w->xr = gep(g, lg_ptr(g, arg(g, id, 0)), LLVMBuildNSWMul(g->b, w->r, lg_i64(g, w->cls), ""));
}

static void masked_rows_close(struct lg *g, struct masked *w) {
    lg_endif(g, w->skip);
    lg_loop_close(g, &w->l);
}

/* The row's largest logit *m and sum of exp(x - m) (a double) as c_text.c
 * computes them: nrt_expf, 16 float lanes, then the tail and the lanes in
 * double; with dr, the exponentials are stored there too. */
static LLVMValueRef masked_sum(struct lg *g, struct masked *w, LLVMValueRef dr, LLVMValueRef *m) {
    *m = row_max(g, w->xr, w->cls);
    struct lg_loop l;
    LLVMValueRef acc[16];
    int64_t full = w->cls / 16 * 16;
    for (int q = 0; q < 16; q++) acc[q] = lg_var(g, g->f32, lg_f32(g, 0));
    if (full > 0) {
        LLVMValueRef b = lg_loop_open(g, &l, lg_i64(g, 0), lg_i64(g, full / 16));
        for (int q = 0; q < 16; q++) {
            LLVMValueRef at =
                LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, b, lg_i64(g, 16), ""), lg_i64(g, q), "");
            LLVMValueRef e = lg_expf(g, lg_fsub(g, lg_load(g, w->xr, at), *m));
            if (dr) lg_store(g, e, dr, at);
            accumulate(g, acc[q], e);
        }
        lg_loop_close(g, &l);
    }
    LLVMValueRef tail = lg_var(g, g->f64, lg_f64(g, 0));
    LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, full), lg_i64(g, w->cls));
    LLVMValueRef e = lg_expf(g, lg_fsub(g, lg_load(g, w->xr, j), *m));
    if (dr) lg_store(g, e, dr, j);
    accumulate(g, tail, LLVMBuildFPExt(g->b, e, g->f64, ""));
    lg_loop_close(g, &l);
    LLVMValueRef se = LLVMBuildLoad2(g->b, g->f64, tail, "");
    for (int q = 0; q < 16; q++)
        se = lg_fadd(g, se, LLVMBuildFPExt(g->b, LLVMBuildLoad2(g->b, g->f32, acc[q], ""), g->f64, ""));
    return se;
}

/* The row's log-sum-exp: m + log(se), or m where m is infinite. */
static LLVMValueRef masked_lse(struct lg *g, struct masked *w) {
    LLVMValueRef m, se = masked_sum(g, w, NULL, &m);
    LLVMValueRef md = LLVMBuildFPExt(g->b, m, g->f64, "");
    LLVMValueRef amd = lg_sel(g, LLVMRealOLT, md, lg_f64(g, 0), LLVMBuildFNeg(g->b, md, ""), md);
    return lg_sel(g, LLVMRealOEQ, amd, lg_f64(g, 1.0 / 0.0), md, lg_fadd(g, md, lg_log(g, se)));
}

/* kept ? v / kept : 0, as float. */
static LLVMValueRef per_kept(struct lg *g, struct masked *w, LLVMValueRef v) {
    LLVMValueRef k = LLVMBuildLoad2(g->b, g->i64, w->kept, "");
    LLVMValueRef r = lg_fdiv(g, v, LLVMBuildSIToFP(g->b, k, g->f64, ""));
    return LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntNE, k, lg_i64(g, 0), ""), r, lg_f64(g, 0), "");
}

static void op_masked_ce(struct lg *g, int id) {
    struct masked w;
    masked_open(g, id, &w);
    LLVMValueRef sum = lg_var(g, g->f64, lg_f64(g, 0));
    masked_rows(g, id, &w);
    LLVMValueRef lse = masked_lse(g, &w);
    accumulate(g, sum, lg_fsub(g, lse, ld64(g, w.xr, w.tr)));
    masked_rows_close(g, &w);
    LLVMValueRef r = per_kept(g, &w, LLVMBuildLoad2(g->b, g->f64, sum, ""));
    lg_store(g, LLVMBuildFPTrunc(g->b, r, g->f32, ""), lg_ptr(g, id), lg_i64(g, 0));
}

static void op_masked_ce_grad(struct lg *g, int id) {
    struct masked w;
    masked_open(g, id, &w);
    LLVMValueRef gv = per_kept(g, &w, ld64(g, lg_ptr(g, arg(g, id, 2)), lg_i64(g, 0)));
    LLVMValueRef gf = LLVMBuildFPTrunc(g->b, gv, g->f32, "");
    LLVMValueRef py = lg_ptr(g, id);
    LLVMBuildMemSet(g->b, lg_ptr8(g, id), LLVMConstInt(g->i8, 0, 0),
                    bytes(g, LLVMBuildNSWMul(g->b, w.rows, lg_i64(g, w.cls), "")), 4);
    masked_rows(g, id, &w);
    LLVMValueRef dr = gep(g, py, LLVMBuildNSWMul(g->b, w.r, lg_i64(g, w.cls), "")), m;
    LLVMValueRef se = masked_sum(g, &w, dr, &m);
    LLVMValueRef sc = LLVMBuildFPTrunc(g->b, lg_fdiv(g, gv, se), g->f32, "");
    struct lg_loop l;
    LLVMValueRef k = lg_loop_open(g, &l, lg_i64(g, 0), lg_i64(g, w.cls));
    lg_store(g, lg_fmul(g, lg_load(g, dr, k), sc), dr, k);
    lg_loop_close(g, &l);
    lg_store(g, lg_fsub(g, lg_load(g, dr, w.tr), gf), dr, w.tr);
    masked_rows_close(g, &w);
}

static void op_masked_accuracy(struct lg *g, int id) {
    struct masked w;
    masked_open(g, id, &w);
    LLVMValueRef hits = lg_var(g, g->i64, lg_i64(g, 0));
    masked_rows(g, id, &w);
    LLVMValueRef best = row_argmax(g, w.xr, w.cls);
    LLVMValueRef hit = LLVMBuildZExt(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, best, w.tr, ""), g->i64, "");
    LLVMBuildStore(g->b, LLVMBuildAdd(g->b, LLVMBuildLoad2(g->b, g->i64, hits, ""), hit, ""), hits);
    masked_rows_close(g, &w);
    LLVMValueRef r =
        per_kept(g, &w, LLVMBuildSIToFP(g->b, LLVMBuildLoad2(g->b, g->i64, hits, ""), g->f64, ""));
    lg_store(g, LLVMBuildFPTrunc(g->b, r, g->f32, ""), lg_ptr(g, id), lg_i64(g, 0));
}

/* Two passes in double, as C: the mean (or the MEAN node's), then the mean
 * squared deviation from it. */
static void op_variance(struct lg *g, int id) {
    struct cgc_x count;
    struct shape kept = cgc_kept_shape(&g->c, id, &count);
    struct cgc_x ny = cgc_count(shape_of(g, id));
    LLVMValueRef m = LLVMBuildBitCast(g->b, scratch(g, id), g->pf64, "");
    LLVMValueRef d = gep(g, m, lg_x(g, ny));
    LLVMValueRef cnt = LLVMBuildSIToFP(g->b, lg_x(g, count), g->f64, "");
    int mean = cgc_same_mean(&g->c, id);
    struct lg_loop l;
    LLVMValueRef i;
    if (mean >= 0) {
        LLVMValueRef pm = lg_ptr(g, mean);
        i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, ny));
        lg_store(g, ld64(g, pm, i), m, i);
        lg_store(g, lg_f64(g, 0), d, i);
        lg_loop_close(g, &l);
    } else {
        i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, ny));
        lg_store(g, lg_f64(g, 0), m, i);
        lg_store(g, lg_f64(g, 0), d, i);
        lg_loop_close(g, &l);
        sum_into(g, id, &kept, m, NULL);
        i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, ny));
        lg_store(g, lg_fdiv(g, lg_load(g, m, i), cnt), m, i);
        lg_loop_close(g, &l);
    }
    sum_into(g, id, &kept, d, m);
    LLVMValueRef y = lg_ptr(g, id);
    i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, ny));
    lg_store(g, LLVMBuildFPTrunc(g->b, lg_fdiv(g, lg_load(g, d, i), cnt), g->f32, ""), y, i);
    lg_loop_close(g, &l);
}

/* splitmix64's finalizer (codegen.h's nrt_mix64) on an i64. */
static LLVMValueRef mix64(struct lg *g, LLVMValueRef z) {
    z = LLVMBuildAdd(g->b, z, LLVMConstInt(g->i64, 0x9e3779b97f4a7c15ull, 0), "");
    z = LLVMBuildMul(g->b, LLVMBuildXor(g->b, z, LLVMBuildLShr(g->b, z, lg_i64(g, 30), ""), ""),
                     LLVMConstInt(g->i64, 0xbf58476d1ce4e5b9ull, 0), "");
    z = LLVMBuildMul(g->b, LLVMBuildXor(g->b, z, LLVMBuildLShr(g->b, z, lg_i64(g, 27), ""), ""),
                     LLVMConstInt(g->i64, 0x94d049bb133111ebull, 0), "");
    return LLVMBuildXor(g->b, z, LLVMBuildLShr(g->b, z, lg_i64(g, 31), ""), "");
}

/* y = keep(i) ? x * 1/(1-rate) : 0 with codegen.h's mask (nrt_dropout_keep). */
static void op_dropout(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    double rate = ir_attr_f(n, ATTR_RATE);
    uint64_t seed = (uint64_t)ir_attr_i(n, ATTR_SEED);
    LLVMValueRef sp = LLVMBuildGEP2(
        g->b, g->i8, g->ctx, (LLVMValueRef[]){lg_i64(g, (int64_t)offsetof(struct nrt_ctx, step))}, 1, "");
    LLVMValueRef step = LLVMBuildLoad2(g->b, g->i64, LLVMBuildBitCast(g->b, sp, g->p64, ""), "");
    LLVMValueRef a = mix64(g, LLVMBuildXor(g->b, LLVMConstInt(g->i64, nrt_mix64(seed), 0), step, ""));
    LLVMValueRef x = lg_ptr(g, arg(g, id, 0)), y = lg_ptr(g, id);
    struct lg_loop l;
    LLVMValueRef i = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, cgc_count(&n->type.shape)));
    LLVMValueRef h = LLVMBuildLShr(g->b, mix64(g, LLVMBuildXor(g->b, a, i, "")), lg_i64(g, 40), "");
    LLVMValueRef keep = LLVMBuildICmp(g->b, LLVMIntUGE, h, lg_i64(g, nrt_dropout_threshold(rate)), "");
    LLVMValueRef v = lg_fmul(g, lg_load(g, x, i), lg_f32(g, 1.0 / (1.0 - rate)));
    lg_store(g, LLVMBuildSelect(g->b, keep, v, lg_f32(g, 0), ""), y, i);
    lg_loop_close(g, &l);
}

static void op_argmax(struct lg *g, int id) {
    const struct shape *s = arg_shape(g, id, 0);
    int axis = (int)ir_attr_i(node(g, id), ATTR_AXIS);
    struct cgc_x outer = cgc_dims_prod(s, 0, axis), k = cgc_dim(s, axis),
                 inner = cgc_dims_prod(s, axis + 1, s->rank);
    LLVMValueRef x = lg_ptr(g, arg(g, id, 0)), y = lg_ptr(g, id), kv = lg_x(g, k), in = lg_x(g, inner);
    struct lg_loop lo, li, lj;
    LLVMValueRef o = lg_loop_open(g, &lo, lg_i64(g, 0), lg_x(g, outer));
    LLVMValueRef q = lg_loop_open(g, &li, lg_i64(g, 0), in);
    LLVMValueRef base =
        LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, LLVMBuildNSWMul(g->b, o, kv, ""), in, ""), q, "");
    LLVMValueRef best = lg_var(g, g->i64, lg_i64(g, 0));
    LLVMValueRef j = lg_loop_open(g, &lj, lg_i64(g, 1), kv);
    LLVMValueRef b = LLVMBuildLoad2(g->b, g->i64, best, "");
    LLVMValueRef xj = lg_load(g, x, LLVMBuildNSWAdd(g->b, base, LLVMBuildNSWMul(g->b, j, in, ""), ""));
    LLVMValueRef xb = lg_load(g, x, LLVMBuildNSWAdd(g->b, base, LLVMBuildNSWMul(g->b, b, in, ""), ""));
    LLVMBuildStore(g->b, LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealOGT, xj, xb, ""), j, b, ""), best);
    lg_loop_close(g, &lj);
    LLVMValueRef r = LLVMBuildTrunc(g->b, LLVMBuildLoad2(g->b, g->i64, best, ""), g->i32, "");
    lg_store(g, r, y, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, o, in, ""), q, ""));
    lg_loop_close(g, &li);
    lg_loop_close(g, &lo);
}

static void op_one_hot(struct lg *g, int id) {
    int64_t k = ir_attr_i(node(g, id), ATTR_CLASSES);
    LLVMValueRef ids = lg_ptr(g, arg(g, id, 0)), y = lg_ptr(g, id);
    LLVMBuildMemSet(g->b, lg_ptr8(g, id), LLVMConstInt(g->i8, 0, 0),
                    bytes(g, lg_x(g, cgc_count(shape_of(g, id)))), 4);
    struct lg_loop l;
    LLVMValueRef p = lg_loop_open(g, &l, lg_i64(g, 0), lg_x(g, cgc_count(arg_shape(g, id, 0))));
    LLVMValueRef v = lg_load(g, ids, p);
    LLVMValueRef ok = LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntSGE, v, lg_i32(g, 0), ""),
                                   LLVMBuildICmp(g->b, LLVMIntSLT, v, lg_i32(g, (int32_t)k), ""), "");
    LLVMBasicBlockRef after = lg_if(g, ok);
    lg_store(g, lg_f32(g, 1), y,
             LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, p, lg_i64(g, k), ""),
                             LLVMBuildSExt(g->b, v, g->i64, ""), ""));
    lg_endif(g, after);
    lg_loop_close(g, &l);
}

static void op_upsample(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const int64_t *sc = ir_attr_v(n, ATTR_FACTOR, NULL);
    const struct shape *small = n->op == OP_UPSAMPLE2D ? arg_shape(g, id, 0) : shape_of(g, id);
    LLVMValueRef args[7] = {lg_x(g, cgc_dims_prod(small, 0, 2)),
                            lg_i64(g, small->dim[2]),
                            lg_i64(g, small->dim[3]),
                            lg_i64(g, sc[0]),
                            lg_i64(g, sc[1]),
                            lg_ptr(g, arg(g, id, 0)),
                            lg_ptr(g, id)};
    rtcall(g, n->op == OP_UPSAMPLE2D ? "nrt_upsample2d" : "nrt_upsample2d_grad", 7, args);
}

/* Masked pooling over time (c_text.c): x [N, T, R...] with ids i32 [N, T]. */
static void op_masked_pool(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    bool grad = n->op == OP_MASKED_MEAN_GRAD || n->op == OP_MASKED_MAX_GRAD;
    const struct shape *x = grad ? shape_of(g, id) : arg_shape(g, id, 0);
    int ids_arg = n->op == OP_MASKED_MEAN_GRAD ? 0 : 1;
    int64_t T = x->dim[1];
    LLVMValueRef R = lg_x(g, cgc_dims_prod(x, 2, x->rank)),
                 pad = lg_i32(g, (int32_t)ir_attr_i(n, ATTR_PAD_ID));
    LLVMValueRef ids = lg_ptr(g, arg(g, id, ids_arg)), out = lg_ptr(g, id);
    LLVMValueRef TR = LLVMBuildNSWMul(g->b, lg_i64(g, T), R, "");
    struct lg_loop lb, ls, lj;
    LLVMValueRef b = lg_loop_open(g, &lb, lg_i64(g, 0), lg_x(g, cgc_dim(x, 0)));
    LLVMValueRef ib = gep(g, ids, LLVMBuildNSWMul(g->b, b, lg_i64(g, T), ""));
    LLVMValueRef kept = lg_var(g, g->i64, lg_i64(g, 0)), s, j;
    switch (n->op) {
    case OP_MASKED_MEAN:
    case OP_MASKED_MAX: {
        bool mx = n->op == OP_MASKED_MAX;
        LLVMValueRef yb = gep(g, out, LLVMBuildNSWMul(g->b, b, R, "")),
                     xb = gep(g, lg_ptr(g, arg(g, id, 0)), LLVMBuildNSWMul(g->b, b, TR, ""));
        LLVMBuildMemSet(g->b, LLVMBuildBitCast(g->b, yb, g->p8, ""), LLVMConstInt(g->i8, 0, 0), bytes(g, R),
                        4);
        s = lg_loop_open(g, &ls, lg_i64(g, 0), lg_i64(g, T));
        LLVMBasicBlockRef after = lg_if(g, LLVMBuildICmp(g->b, LLVMIntNE, lg_load(g, ib, s), pad, ""));
        LLVMValueRef k0 = LLVMBuildLoad2(g->b, g->i64, kept, "");
        if (!mx) LLVMBuildStore(g->b, LLVMBuildAdd(g->b, k0, lg_i64(g, 1), ""), kept);
        j = lg_loop_open(g, &lj, lg_i64(g, 0), R);
        LLVMValueRef xv = lg_load(g, xb, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, s, R, ""), j, "")),
                     yv = lg_load(g, yb, j);
        if (mx) {
            LLVMValueRef take = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntEQ, k0, lg_i64(g, 0), ""),
                                            LLVMBuildFCmp(g->b, LLVMRealOGT, xv, yv, ""), "");
            lg_store(g, LLVMBuildSelect(g->b, take, xv, yv, ""), yb, j);
        } else {
            lg_store(g, lg_fadd(g, yv, xv), yb, j);
        }
        lg_loop_close(g, &lj);
        if (mx) LLVMBuildStore(g->b, LLVMBuildAdd(g->b, k0, lg_i64(g, 1), ""), kept);
        lg_endif(g, after);
        lg_loop_close(g, &ls);
        if (!mx) {
            LLVMValueRef k = LLVMBuildLoad2(g->b, g->i64, kept, "");
            LLVMBasicBlockRef a2 = lg_if(g, LLVMBuildICmp(g->b, LLVMIntNE, k, lg_i64(g, 0), ""));
            LLVMValueRef kf = LLVMBuildSIToFP(g->b, k, g->f32, "");
            j = lg_loop_open(g, &lj, lg_i64(g, 0), R);
            lg_store(g, lg_fdiv(g, lg_load(g, yb, j), kf), yb, j);
            lg_loop_close(g, &lj);
            lg_endif(g, a2);
        }
        break;
    }
    case OP_MASKED_MEAN_GRAD: {
        LLVMValueRef xb = gep(g, out, LLVMBuildNSWMul(g->b, b, TR, "")),
                     gb = gep(g, lg_ptr(g, arg(g, id, 1)), LLVMBuildNSWMul(g->b, b, R, ""));
        s = lg_loop_open(g, &ls, lg_i64(g, 0), lg_i64(g, T));
        LLVMValueRef in =
            LLVMBuildZExt(g->b, LLVMBuildICmp(g->b, LLVMIntNE, lg_load(g, ib, s), pad, ""), g->i64, "");
        LLVMBuildStore(g->b, LLVMBuildAdd(g->b, LLVMBuildLoad2(g->b, g->i64, kept, ""), in, ""), kept);
        lg_loop_close(g, &ls);
        LLVMValueRef kf = LLVMBuildSIToFP(g->b, LLVMBuildLoad2(g->b, g->i64, kept, ""), g->f32, "");
        s = lg_loop_open(g, &ls, lg_i64(g, 0), lg_i64(g, T));
        LLVMValueRef on = LLVMBuildICmp(g->b, LLVMIntNE, lg_load(g, ib, s), pad, "");
        j = lg_loop_open(g, &lj, lg_i64(g, 0), R);
        LLVMValueRef v = LLVMBuildSelect(g->b, on, lg_fdiv(g, lg_load(g, gb, j), kf), lg_f32(g, 0), "");
        lg_store(g, v, xb, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, s, R, ""), j, ""));
        lg_loop_close(g, &lj);
        lg_loop_close(g, &ls);
        break;
    }
    default: { /* MASKED_MAX_GRAD (x, ids, dy) */
        LLVMValueRef db = gep(g, out, LLVMBuildNSWMul(g->b, b, TR, "")),
                     xb = gep(g, lg_ptr(g, arg(g, id, 0)), LLVMBuildNSWMul(g->b, b, TR, ""));
        LLVMValueRef gb = gep(g, lg_ptr(g, arg(g, id, 2)), LLVMBuildNSWMul(g->b, b, R, ""));
        LLVMBuildMemSet(g->b, LLVMBuildBitCast(g->b, db, g->p8, ""), LLVMConstInt(g->i8, 0, 0), bytes(g, TR),
                        4);
        LLVMValueRef best = lg_var(g, g->i64, NULL);
        j = lg_loop_open(g, &lj, lg_i64(g, 0), R);
        LLVMBuildStore(g->b, lg_i64(g, -1), best);
        s = lg_loop_open(g, &ls, lg_i64(g, 0), lg_i64(g, T));
        LLVMValueRef bv = LLVMBuildLoad2(g->b, g->i64, best, "");
        LLVMValueRef bi = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, bv, lg_i64(g, 0), ""),
                                          lg_i64(g, 0), bv, "");
        LLVMValueRef xs = lg_load(g, xb, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, s, R, ""), j, ""));
        LLVMValueRef xbest = lg_load(g, xb, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, bi, R, ""), j, ""));
        LLVMValueRef better = LLVMBuildOr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, bv, lg_i64(g, 0), ""),
                                          LLVMBuildFCmp(g->b, LLVMRealOGT, xs, xbest, ""), "");
        LLVMValueRef take =
            LLVMBuildAnd(g->b, LLVMBuildICmp(g->b, LLVMIntNE, lg_load(g, ib, s), pad, ""), better, "");
        LLVMBuildStore(g->b, LLVMBuildSelect(g->b, take, s, bv, ""), best);
        lg_loop_close(g, &ls);
        LLVMValueRef fb = LLVMBuildLoad2(g->b, g->i64, best, "");
        LLVMBasicBlockRef after = lg_if(g, LLVMBuildICmp(g->b, LLVMIntSGE, fb, lg_i64(g, 0), ""));
        lg_store(g, lg_load(g, gb, j), db, LLVMBuildNSWAdd(g->b, LLVMBuildNSWMul(g->b, fb, R, ""), j, ""));
        lg_endif(g, after);
        lg_loop_close(g, &lj);
        break;
    }
    }
    lg_loop_close(g, &lb);
}

/* Softmax over the last axis of scale * x, causal rows cut (c_ops.c). */
static void op_attn_softmax(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    const struct shape *s = &n->type.shape;
    int64_t tk = s->dim[s->rank - 1], tq = s->dim[s->rank - 2];
    bool causal = ir_attr_i(n, ATTR_CAUSAL) != 0;
    LLVMValueRef px = lg_ptr(g, arg(g, id, 0)), py = lg_ptr(g, id),
                 scale = lg_f32(g, ir_attr_f(n, ATTR_SCALE));
    struct lg_loop lr, l;
    LLVMValueRef r = lg_loop_open(g, &lr, lg_i64(g, 0), lg_x(g, cgc_dims_prod(s, 0, s->rank - 1)));
    LLVMValueRef x = gep(g, px, LLVMBuildNSWMul(g->b, r, lg_i64(g, tk), "")),
                 y = gep(g, py, LLVMBuildNSWMul(g->b, r, lg_i64(g, tk), ""));
    LLVMValueRef kn = lg_i64(g, tk);
    if (causal) {
        LLVMValueRef lim =
            LLVMBuildAdd(g->b, LLVMBuildSRem(g->b, r, lg_i64(g, tq), ""), lg_i64(g, tk - tq + 1), "");
        lim = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, lim, lg_i64(g, 0), ""), lg_i64(g, 0), lim,
                              "");
        kn = LLVMBuildSelect(g->b, LLVMBuildICmp(g->b, LLVMIntSGT, lim, lg_i64(g, tk), ""), lg_i64(g, tk),
                             lim, "");
    }
    LLVMValueRef mx = lg_var(g, g->f32, lg_f32(g, -1.0 / 0.0)), sum = lg_var(g, g->f32, lg_f32(g, 0));
    LLVMValueRef j = lg_loop_open(g, &l, lg_i64(g, 0), kn);
    LLVMValueRef v = lg_load(g, x, j), cur = LLVMBuildLoad2(g->b, g->f32, mx, "");
    LLVMBuildStore(g->b, lg_sel(g, LLVMRealOGT, v, cur, v, cur), mx);
    lg_loop_close(g, &l);
    LLVMValueRef m = LLVMBuildLoad2(g->b, g->f32, mx, "");
    j = lg_loop_open(g, &l, lg_i64(g, 0), kn);
    LLVMValueRef e = lg_expf(g, lg_fmul(g, scale, lg_fsub(g, lg_load(g, x, j), m)));
    lg_store(g, e, y, j);
    accumulate(g, sum, e);
    lg_loop_close(g, &l);
    LLVMValueRef inv = lg_fdiv(g, lg_f32(g, 1), LLVMBuildLoad2(g->b, g->f32, sum, ""));
    j = lg_loop_open(g, &l, lg_i64(g, 0), kn);
    lg_store(g, lg_fmul(g, lg_load(g, y, j), inv), y, j);
    lg_loop_close(g, &l);
    j = lg_loop_open(g, &l, kn, lg_i64(g, tk));
    lg_store(g, lg_f32(g, 0), y, j);
    lg_loop_close(g, &l);
    lg_loop_close(g, &lr);
}

/* ---------------------------------------------------------------- column */

static void op_none(struct lg *g, int id) { (void)g, (void)id; }

static void op_const(struct lg *g, int id) {
    const struct ir_node *n = node(g, id);
    double v = ir_attr_f(n, ATTR_VALUE);
    LLVMValueRef k;
    if (n->type.dtype == DT_I32)
        k = lg_to_i32(g, lg_f64(g, v));
    else
        k = lg_f32(g, v);
    fill(g, lg_ptr(g, id), cgc_count(&n->type.shape), k);
}

/* An elementwise node outside any kernel: a kernel of one member. */
static void op_ewise(struct lg *g, int id) {
    struct cgc_kernel one = {id, -1, NULL, NULL, NULL};
    vec_push(one.members, id);
    vec_push(one.outputs, id);
    lg_kernel_emit(g, &one);
    vec_free(one.members);
    vec_free(one.outputs);
}

typedef void (*lg_op_fn)(struct lg *g, int id);

static lg_op_fn column(enum op op) {
    if (has_formula(op)) return op_ewise;
    switch (op) {
    case OP_INPUT:
    case OP_PARAM:
    case OP_ASSIGN:
    case OP_RESHAPE:
    case OP_STOP_GRADIENT:
        return op_none;
    case OP_CONST:
        return op_const;
    case OP_SUM:
    case OP_MEAN:
        return op_sum;
    case OP_SUM_TO:
        return op_sum_to;
    case OP_MAX:
        return op_max;
    case OP_MATMUL:
        return op_matmul;
    case OP_MATMUL_BSUM:
        return op_matmul_bsum;
    case OP_MSE:
    case OP_BCE:
    case OP_BCE_LOGITS:
    case OP_HINGE:
        return op_ewise_loss;
    case OP_MSE_GRAD:
    case OP_BCE_GRAD:
    case OP_BCE_LOGITS_GRAD:
    case OP_HINGE_GRAD:
        return op_ewise_loss_grad;
    case OP_CROSS_ENTROPY:
        return op_cross_entropy;
    case OP_CROSS_ENTROPY_GRAD:
        return op_cross_entropy_grad;
    case OP_ACCURACY:
        return op_accuracy;
    case OP_CONV2D:
    case OP_CONV2D_GRAD_INPUT:
    case OP_CONV2D_GRAD_WEIGHT:
    case OP_CONV_TRANSPOSE2D:
        return op_conv;
    case OP_CONV2D_GRAD_WEIGHT_MAXPOOL:
        return op_conv_grad_weight_maxpool;
    case OP_MAXPOOL2D:
    case OP_AVGPOOL2D:
    case OP_MAXPOOL2D_GRAD:
    case OP_AVGPOOL2D_GRAD:
        return op_pool;
    case OP_SLICE:
        return op_slice;
    case OP_PAD:
        return op_pad;
    case OP_CONCAT:
        return op_concat;
    case OP_TRANSPOSE:
        return op_transpose;
    case OP_SOFTMAX:
    case OP_LOG_SOFTMAX:
        return op_softmax;
    case OP_SOFTMAX_GRAD:
    case OP_LOG_SOFTMAX_GRAD:
        return op_softmax_grad;
    case OP_LAYERNORM:
    case OP_LAYERNORM_GRAD:
    case OP_LAYERNORM_GRAD_SUMS:
        return op_layernorm;
    case OP_BATCHNORM_GRAD_SUMS:
    case OP_BATCHNORM_GRAD:
        return op_batchnorm_grad;
    case OP_ATTENTION:
    case OP_ATTENTION_GRAD:
        return op_attention;
    case OP_RNN:
        return op_rnn;
    case OP_RNN_BPTT:
        return op_rnn_bptt;
    case OP_RNN_GRAD:
        return op_rnn_grad;
    case OP_EMBEDDING:
        return op_embedding;
    case OP_EMBEDDING_GRAD:
        return op_embedding_grad;
    case OP_MASKED_CROSS_ENTROPY:
        return op_masked_ce;
    case OP_MASKED_CROSS_ENTROPY_GRAD:
        return op_masked_ce_grad;
    case OP_MASKED_ACCURACY:
        return op_masked_accuracy;
    case OP_VARIANCE:
        return op_variance;
    case OP_DROPOUT:
    case OP_DROPOUT_GRAD:
        return op_dropout;
    case OP_ARGMAX:
        return op_argmax;
    case OP_ONE_HOT:
        return op_one_hot;
    case OP_UPSAMPLE2D:
    case OP_UPSAMPLE2D_GRAD:
        return op_upsample;
    case OP_MASKED_MEAN:
    case OP_MASKED_MAX:
    case OP_MASKED_MEAN_GRAD:
    case OP_MASKED_MAX_GRAD:
        return op_masked_pool;
    case OP_ATTN_SOFTMAX:
        return op_attn_softmax;
    default:
        return NULL;
    }
}

/* Whether the column handles op with i32 operands or results (labels, token
 * ids, lengths, data movement); the others are written for f32. */
static bool takes_i32(enum op op) {
    if (has_formula(op) || column(op) == op_none) return true;
    switch (op) {
    case OP_CONST:
    case OP_CROSS_ENTROPY:
    case OP_CROSS_ENTROPY_GRAD:
    case OP_ACCURACY:
    case OP_RNN:
    case OP_RNN_BPTT:
    case OP_RNN_GRAD:
    case OP_EMBEDDING:
    case OP_EMBEDDING_GRAD:
    case OP_MASKED_CROSS_ENTROPY:
    case OP_MASKED_CROSS_ENTROPY_GRAD:
    case OP_MASKED_ACCURACY:
    case OP_SLICE:
    case OP_PAD:
    case OP_CONCAT:
    case OP_TRANSPOSE:
    case OP_ARGMAX:
    case OP_ONE_HOT:
    case OP_MASKED_MEAN:
    case OP_MASKED_MAX:
    case OP_MASKED_MEAN_GRAD:
    case OP_MASKED_MAX_GRAD:
        return true;
    default:
        return false;
    }
}

bool lg_op_supported(struct lg *g, int id, const char **why) {
    const struct ir_node *n = node(g, id);
    *why = NULL;
    if (!column(n->op)) return false;
    static char buf[96];
    bool i32 = n->type.dtype == DT_I32;
    for (int a = 0; a < n->nargs; a++) i32 |= node(g, n->args[a])->type.dtype == DT_I32;
    if (i32 && !takes_i32(n->op)) {
        snprintf(buf, sizeof buf, "%s on i32 values", op_info[n->op].name);
        *why = buf;
        return false;
    }
    if (n->op == OP_MATMUL && n->type.shape.rank > 2 + NRT_BGEMM_MAX_DIMS) return false;
    return true;
}

void lg_op_emit(struct lg *g, int id) { column(node(g, id)->op)(g, id); }
