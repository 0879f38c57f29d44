/* codegen/llvm_emit.c -- the LLVM backend's frame: one LLVM function per entry
 * point, computing every value into the runtime's workspace by the C backend's
 * memory plan and kernel formation (cgc_layout), plus the helpers the op column
 * (llvm_ops.c) builds on: constants, storage pointers, counted loops, runtime
 * calls, and float exp/log/tanh/erf written in IR so that loops using them
 * vectorise (LLVM cannot vectorise libm calls it does not know as vector
 * functions). Sections: helpers, math, entry points, module. */
#include "codegen/llvm.h"

#include "runtime/netrt.h"

#include <stddef.h>
#include <string.h>

/* ------------------------------------------------------------- helpers */

LLVMValueRef lg_i64(struct lg *g, int64_t v) { return LLVMConstInt(g->i64, (unsigned long long)v, 1); }
LLVMValueRef lg_i32(struct lg *g, int32_t v) {
    return LLVMConstInt(g->i32, (unsigned long long)(int64_t)v, 1);
}
LLVMValueRef lg_f32(struct lg *g, double v) { return LLVMConstReal(g->f32, (double)(float)v); }
LLVMValueRef lg_f64(struct lg *g, double v) { return LLVMConstReal(g->f64, v); }

LLVMValueRef lg_fadd(struct lg *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFAdd(g->b, a, b, ""); }
LLVMValueRef lg_fsub(struct lg *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFSub(g->b, a, b, ""); }
LLVMValueRef lg_fmul(struct lg *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFMul(g->b, a, b, ""); }
LLVMValueRef lg_fdiv(struct lg *g, LLVMValueRef a, LLVMValueRef b) { return LLVMBuildFDiv(g->b, a, b, ""); }

LLVMValueRef lg_x(struct lg *g, struct cgc_x x) {
    if (!x.n) return lg_i64(g, x.k);
    if (x.k == 1) return g->n;
    return LLVMBuildMul(g->b, g->n, lg_i64(g, x.k), "");
}

/* ws + off (+ fixed_total + off * max_n for per-batch slots). */
static LLVMValueRef slot(struct lg *g, bool per_n, size_t off) {
    LLVMValueRef at;
    if (per_n) {
        at = LLVMBuildMul(g->b, g->mn, lg_i64(g, (int64_t)off), "");
        at = LLVMBuildAdd(g->b, at, lg_i64(g, (int64_t)g->c.fixed_total), "");
    } else {
        at = lg_i64(g, (int64_t)off);
    }
    return LLVMBuildGEP2(g->b, g->i8, g->ws, &at, 1, "");
}

/* A field of struct nrt_ctx at byte offset off, as a value of type t. */
static LLVMValueRef ctx_field(struct lg *g, size_t off, LLVMTypeRef t) {
    LLVMValueRef at = lg_i64(g, (int64_t)off);
    LLVMValueRef p = LLVMBuildGEP2(g->b, g->i8, g->ctx, &at, 1, "");
    p = LLVMBuildBitCast(g->b, p, LLVMPointerType(t, 0), "");
    return LLVMBuildLoad2(g->b, t, p, "");
}

/* Declares the storage of value id (and its scratch, that of node sid). */
static void declare(struct lg *g, int id, int sid) {
    const struct cgc_val *v = &g->c.vals[id];
    if (v->buffer >= 0) {
        LLVMValueRef at = lg_i64(g, v->buffer);
        LLVMValueRef bufs = ctx_field(g, offsetof(struct nrt_ctx, buf), LLVMPointerType(g->p8, 0));
        g->ptr[id] = LLVMBuildLoad2(g->b, g->p8, LLVMBuildGEP2(g->b, g->p8, bufs, &at, 1, ""), "");
    } else if (v->alias >= 0) {
        if (!g->ptr[v->alias]) NETC_INTERNAL("value %%%d aliases %%%d, which has no storage", id, v->alias);
        g->ptr[id] = g->ptr[v->alias];
    } else {
        g->ptr[id] = slot(g, v->per_n, v->off);
    }
    if (sid >= 0 && g->c.vals[sid].scratch > 0) {
        const struct cgc_val *sv = &g->c.vals[sid];
        g->sptr[sid] = LLVMBuildBitCast(g->b, slot(g, sv->scratch_n, sv->scratch_off), g->pf32, "");
    }
}

LLVMValueRef lg_ptr8(struct lg *g, int id) {
    if (!g->ptr[id]) NETC_INTERNAL("value %%%d has no storage", id);
    return g->ptr[id];
}

LLVMValueRef lg_ptr(struct lg *g, int id) {
    return LLVMBuildBitCast(g->b, lg_ptr8(g, id), g->c.f->nodes[id].type.dtype == DT_I32 ? g->p32 : g->pf32,
                            "");
}

LLVMValueRef lg_load(struct lg *g, LLVMValueRef p, LLVMValueRef i) {
    LLVMTypeRef t = LLVMGetElementType(LLVMTypeOf(p));
    return LLVMBuildLoad2(g->b, t, LLVMBuildGEP2(g->b, t, p, &i, 1, ""), "");
}

void lg_store(struct lg *g, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i) {
    LLVMTypeRef t = LLVMGetElementType(LLVMTypeOf(p));
    LLVMBuildStore(g->b, v, LLVMBuildGEP2(g->b, t, p, &i, 1, ""));
}

LLVMValueRef lg_var(struct lg *g, LLVMTypeRef t, LLVMValueRef init) {
    LLVMBuilderRef eb = LLVMCreateBuilderInContext(g->cx);
    LLVMBasicBlockRef entry = LLVMGetEntryBasicBlock(g->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(eb, first);
    else
        LLVMPositionBuilderAtEnd(eb, entry);
    LLVMValueRef a = LLVMBuildAlloca(eb, t, "");
    LLVMDisposeBuilder(eb);
    if (init) LLVMBuildStore(g->b, init, a);
    return a;
}

LLVMValueRef lg_call(struct lg *g, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int np,
                     LLVMValueRef *args) {
    LLVMTypeRef ft = LLVMFunctionType(ret, params, (unsigned)np, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(g->mod, name);
    if (!fn) fn = LLVMAddFunction(g->mod, name, ft);
    return LLVMBuildCall2(g->b, ft, fn, args, (unsigned)np, "");
}

LLVMValueRef lg_struct(struct lg *g, const void *bytes, size_t size, const size_t *off, LLVMValueRef *vals,
                       int nv) {
    LLVMValueRef init = LLVMConstStringInContext(g->cx, bytes, (unsigned)size, 1);
    LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), "geo");
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetAlignment(gv, 8);
    LLVMValueRef a = lg_var(g, LLVMTypeOf(init), NULL);
    LLVMSetAlignment(a, 8);
    LLVMBuildStore(g->b, LLVMBuildLoad2(g->b, LLVMTypeOf(init), gv, ""), a);
    LLVMValueRef p = LLVMBuildBitCast(g->b, a, g->p8, "");
    for (int i = 0; i < nv; i++) {
        LLVMValueRef at = lg_i64(g, (int64_t)off[i]);
        LLVMValueRef f = LLVMBuildBitCast(g->b, LLVMBuildGEP2(g->b, g->i8, p, &at, 1, ""), g->p64, "");
        LLVMBuildStore(g->b, vals[i], f);
    }
    return p;
}

static LLVMBasicBlockRef block(struct lg *g, const char *name) {
    return LLVMAppendBasicBlockInContext(g->cx, g->fn, name);
}

LLVMValueRef lg_loop_open(struct lg *g, struct lg_loop *l, LLVMValueRef lo, LLVMValueRef hi) {
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(g->b);
    l->head = block(g, "loop");
    l->body = block(g, "body");
    l->exit = block(g, "done");
    LLVMBuildBr(g->b, l->head);
    LLVMPositionBuilderAtEnd(g->b, l->head);
    l->i = LLVMBuildPhi(g->b, g->i64, "i");
    LLVMAddIncoming(l->i, &lo, &pre, 1);
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntSLT, l->i, hi, ""), l->body, l->exit);
    LLVMPositionBuilderAtEnd(g->b, l->body);
    return l->i;
}

void lg_loop_close(struct lg *g, struct lg_loop *l) {
    LLVMValueRef next = LLVMBuildNSWAdd(g->b, l->i, lg_i64(g, 1), "");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(g->b);
    LLVMBuildBr(g->b, l->head);
    LLVMAddIncoming(l->i, &next, &from, 1);
    LLVMPositionBuilderAtEnd(g->b, l->exit);
}

LLVMBasicBlockRef lg_if(struct lg *g, LLVMValueRef cond) {
    LLVMBasicBlockRef then = block(g, "then"), after = block(g, "endif");
    LLVMBuildCondBr(g->b, cond, then, after);
    LLVMPositionBuilderAtEnd(g->b, then);
    return after;
}

void lg_endif(struct lg *g, LLVMBasicBlockRef after) {
    LLVMBuildBr(g->b, after);
    LLVMPositionBuilderAtEnd(g->b, after);
}

LLVMValueRef lg_sel(struct lg *g, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b, LLVMValueRef x,
                    LLVMValueRef y) {
    return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, p, a, b, ""), x, y, "");
}

LLVMValueRef lg_to_i32(struct lg *g, LLVMValueRef d) {
    LLVMValueRef c = lg_sel(g, LLVMRealOGE, d, lg_f64(g, 2147483647.0), lg_f64(g, 2147483647.0), d);
    c = lg_sel(g, LLVMRealOLE, c, lg_f64(g, -2147483648.0), lg_f64(g, -2147483648.0), c);
    LLVMValueRef i = LLVMBuildFPToSI(g->b, c, g->i32, "");
    return LLVMBuildSelect(g->b, LLVMBuildFCmp(g->b, LLVMRealUNO, d, d, ""), lg_i32(g, 0), i, "");
}

/* ---------------------------------------------------------------- math */

static LLVMValueRef fk(struct lg *g, double v) { return lg_f32(g, v); }

static LLVMValueRef intrinsic1(struct lg *g, const char *name, LLVMValueRef x) {
    LLVMTypeRef t = LLVMTypeOf(x);
    return lg_call(g, name, t, &t, 1, &x);
}

LLVMValueRef lg_sqrt(struct lg *g, LLVMValueRef x) {
    return intrinsic1(g, LLVMTypeOf(x) == g->f64 ? "llvm.sqrt.f64" : "llvm.sqrt.f32", x);
}
LLVMValueRef lg_exp(struct lg *g, LLVMValueRef x) { return intrinsic1(g, "exp", x); }
LLVMValueRef lg_log(struct lg *g, LLVMValueRef x) { return intrinsic1(g, "log", x); }

/* netrt.h's nrt_expf, operation for operation (so the two agree bit for bit). */
LLVMValueRef lg_expf(struct lg *g, LLVMValueRef x) {
    x = lg_sel(g, LLVMRealOLT, x, fk(g, -88.0), fk(g, -88.0),
               lg_sel(g, LLVMRealOGT, x, fk(g, 88.7), fk(g, 88.7), x));
    LLVMValueRef n = lg_fsub(g, lg_fadd(g, lg_fmul(g, x, fk(g, 1.44269504088896341)), fk(g, 12582912.0)),
                             fk(g, 12582912.0));
    LLVMValueRef r =
        lg_fadd(g, lg_fsub(g, x, lg_fmul(g, n, fk(g, 0.693359375))), lg_fmul(g, n, fk(g, 2.12194440e-4)));
    static const double c[] = {1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1,
                               5.0000001201e-1};
    LLVMValueRef p = fk(g, 1.9875691500e-4);
    for (int i = 0; i < 5; i++) p = lg_fadd(g, lg_fmul(g, p, r), fk(g, c[i]));
    p = lg_fadd(g, lg_fadd(g, lg_fmul(g, lg_fmul(g, p, r), r), r), fk(g, 1.0));
    LLVMValueRef e = LLVMBuildFPToSI(g->b, n, g->i32, "");
    e = LLVMBuildMul(g->b, LLVMBuildAdd(g->b, e, lg_i32(g, 127), ""), lg_i32(g, 8388608), "");
    return lg_fmul(g, p, LLVMBuildBitCast(g->b, e, g->f32, ""));
}

/* netrt.h's nrt_tanhf. */
LLVMValueRef lg_tanhf(struct lg *g, LLVMValueRef x) {
    LLVMValueRef a = lg_sel(g, LLVMRealOLT, x, fk(g, 0), LLVMBuildFNeg(g->b, x, ""), x), z = lg_fmul(g, x, x);
    LLVMValueRef s = fk(g, -5.70498872745e-3);
    static const double c[] = {2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1, -3.33332819422e-1};
    for (int i = 0; i < 4; i++) s = lg_fadd(g, lg_fmul(g, s, z), fk(g, c[i]));
    LLVMValueRef small = lg_fadd(g, lg_fmul(g, lg_fmul(g, s, z), x), x);
    LLVMValueRef big = lg_fsub(
        g, fk(g, 1.0), lg_fdiv(g, fk(g, 2.0), lg_fadd(g, lg_expf(g, lg_fmul(g, fk(g, 2.0), a)), fk(g, 1.0))));
    big = lg_sel(g, LLVMRealOLT, x, fk(g, 0), LLVMBuildFNeg(g->b, big, ""), big);
    LLVMValueRef r = lg_sel(g, LLVMRealOLT, a, fk(g, 0.625), small, big);
    return lg_sel(g, LLVMRealOEQ, x, fk(g, 0), x, r);
}

/* logf after Cephes: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a
 * degree-9 polynomial in m - 1, ln 2 in two parts. Subnormals are scaled by
 * 2^23 first; 0 gives -inf, negatives and NaN give NaN, +inf gives +inf. */
LLVMValueRef lg_logf(struct lg *g, LLVMValueRef x0) {
    LLVMValueRef sub = LLVMBuildFCmp(g->b, LLVMRealOLT, x0, fk(g, 1.17549435e-38), "");
    LLVMValueRef x = LLVMBuildSelect(g->b, sub, lg_fmul(g, x0, fk(g, 8388608.0)), x0, "");
    LLVMValueRef bits = LLVMBuildBitCast(g->b, x, g->i32, "");
    LLVMValueRef e = LLVMBuildSub(g->b, LLVMBuildLShr(g->b, bits, lg_i32(g, 23), ""), lg_i32(g, 126), "");
    e = LLVMBuildSub(g->b, e, LLVMBuildSelect(g->b, sub, lg_i32(g, 23), lg_i32(g, 0), ""), "");
    LLVMValueRef mb =
        LLVMBuildOr(g->b, LLVMBuildAnd(g->b, bits, lg_i32(g, 0x7fffff), ""), lg_i32(g, 0x3f000000), "");
    LLVMValueRef m = LLVMBuildBitCast(g->b, mb, g->f32, ""); /* [0.5, 1) */
    LLVMValueRef lo = LLVMBuildFCmp(g->b, LLVMRealOLT, m, fk(g, 0.707106781186547524), "");
    e = LLVMBuildSub(g->b, e, LLVMBuildZExt(g->b, lo, g->i32, ""), "");
    LLVMValueRef t =
        LLVMBuildSelect(g->b, lo, lg_fsub(g, lg_fadd(g, m, m), fk(g, 1.0)), lg_fsub(g, m, fk(g, 1.0)), "");
    LLVMValueRef fe = LLVMBuildSIToFP(g->b, e, g->f32, "");
    LLVMValueRef z = lg_fmul(g, t, t);
    static const double c[] = {-1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1, 1.4249322787e-1,
                               -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1};
    LLVMValueRef y = fk(g, 7.0376836292e-2);
    for (int i = 0; i < 8; i++) y = lg_fadd(g, lg_fmul(g, y, t), fk(g, c[i]));
    y = lg_fmul(g, lg_fmul(g, y, t), z);
    y = lg_fadd(g, y, lg_fmul(g, fe, fk(g, -2.12194440e-4)));
    y = lg_fadd(g, y, lg_fmul(g, fk(g, -0.5), z));
    LLVMValueRef r = lg_fadd(g, lg_fadd(g, t, y), lg_fmul(g, fe, fk(g, 0.693359375)));
    r = lg_sel(g, LLVMRealOEQ, x0, fk(g, 0), fk(g, -1.0 / 0.0), r);
    r = lg_sel(g, LLVMRealOEQ, x0, fk(g, 1.0 / 0.0), x0, r);
    return lg_sel(g, LLVMRealULT, x0, fk(g, 0), fk(g, 0.0 / 0.0), r); /* negatives and NaN */
}

/* netrt.h's nrt_erff (nrt_erf_abs_ and nrt_erfc_tail_ inlined). */
LLVMValueRef lg_erff(struct lg *g, LLVMValueRef x) {
    LLVMValueRef a = lg_sel(g, LLVMRealOLT, x, fk(g, 0), LLVMBuildFNeg(g->b, x, ""), x), t = lg_fmul(g, a, a);
    LLVMValueRef e = lg_expf(g, LLVMBuildFNeg(g->b, t, ""));
    static const double sc[] = {-8.304049842990935e-4, 5.213505122810602e-3,   -2.6863837614655495e-2,
                                1.1283766478300095e-1, -3.7612637877464294e-1, 1.28379225730896e-1};
    LLVMValueRef s = fk(g, 9.152904385700822e-5);
    for (int i = 0; i < 6; i++) s = lg_fadd(g, lg_fmul(g, s, t), fk(g, sc[i]));
    LLVMValueRef small = lg_fadd(g, a, lg_fmul(g, a, s));
    LLVMValueRef u = lg_fdiv(g, fk(g, 1.0), lg_sel(g, LLVMRealOLT, a, fk(g, 4.0), a, fk(g, 4.0)));
    static const double rc[] = {7.60529413819313e-2,   -2.4560166895389557e-1, 4.3153390288352966e-1,
                                -3.930654525756836e-1, -9.632775909267366e-4,  5.707781910896301e-1,
                                -1.0242083808407187e-3};
    LLVMValueRef r = fk(g, -1.0126852430403233e-2);
    for (int i = 0; i < 7; i++) r = lg_fadd(g, lg_fmul(g, r, u), fk(g, rc[i]));
    LLVMValueRef big = lg_fsub(g, fk(g, 1.0), lg_fmul(g, e, r));
    LLVMValueRef v = lg_sel(g, LLVMRealOLT, a, fk(g, 0.8), small, big);
    v = lg_sel(g, LLVMRealOLT, x, fk(g, 0), LLVMBuildFNeg(g->b, v, ""), v);
    return lg_sel(g, LLVMRealOEQ, x, x, v, x);
}

/* llvm.fma.f32: one instruction on the host (the JIT targets its features). */
static LLVMValueRef fma3(struct lg *g, LLVMValueRef a, LLVMValueRef b, LLVMValueRef c) {
    LLVMTypeRef pt[3] = {g->f32, g->f32, g->f32};
    LLVMValueRef args[3] = {a, b, c};
    return lg_call(g, "llvm.fma.f32", g->f32, pt, 3, args);
}

/* c[0] x^(n-1) + ... + c[n-1] by Horner's rule with fused multiply-adds. */
static LLVMValueRef horner(struct lg *g, LLVMValueRef x, const double *c, int n) {
    LLVMValueRef p = fk(g, c[0]);
    for (int i = 1; i < n; i++) p = fma3(g, p, x, fk(g, c[i]));
    return p;
}

/* netrt.h's nrt_gelu_phin_: Phi(-u) for u in [0, 6.4], or 0 where `in` is false. */
static LLVMValueRef gelu_phin(struct lg *g, LLVMValueRef u, LLVMValueRef in) {
    static const double hc[] = {3.835290840e-07,  -7.710946193e-06, 6.421421858e-05,
                                -2.514211228e-04, -4.218278264e-05, 6.987720262e-03,
                                -5.246511474e-02, -4.592137337e-01, -1.151104927e+00};
    static const double pc[] = {1.090228034e-04,
                                1.274743350e-03,
                                9.579166770e-03,
                                5.549074337e-02,
                                2.402243614e-01,
                                6.931470633e-01,
                                1.0};
    LLVMValueRef y = fma3(g, u, horner(g, u, hc, 9), fk(g, -1.0));
    LLVMValueRef n = LLVMBuildFPToSI(g->b, y, g->i32, "");
    LLVMValueRef r = lg_fsub(g, y, LLVMBuildSIToFP(g->b, n, g->f32, ""));
    LLVMValueRef p = horner(g, r, pc, 7);
    LLVMValueRef m = LLVMBuildSelect(g->b, in, n, lg_i32(g, -127), "");
    LLVMValueRef bits = LLVMBuildShl(g->b, LLVMBuildAdd(g->b, m, lg_i32(g, 127), ""), lg_i32(g, 23), "");
    return lg_fmul(g, p, LLVMBuildBitCast(g->b, bits, g->f32, ""));
}

/* netrt.h's nrt_gelu_phi: Phi(x). */
LLVMValueRef lg_gelu_phi(struct lg *g, LLVMValueRef x) {
    LLVMValueRef ax = lg_sel(g, LLVMRealOLT, x, fk(g, 0), LLVMBuildFNeg(g->b, x, ""), x);
    LLVMValueRef u = lg_sel(g, LLVMRealOLT, ax, fk(g, 6.4), ax, fk(g, 6.4));
    LLVMValueRef e = gelu_phin(g, u, LLVMBuildFCmp(g->b, LLVMRealOLT, ax, fk(g, 7.0), ""));
    return lg_sel(g, LLVMRealOLT, x, fk(g, 0), e, lg_fsub(g, fk(g, 1.0), e));
}

/* netrt.h's nrt_gelu_grad: Phi(x) + x phi(x). */
LLVMValueRef lg_gelu_grad(struct lg *g, LLVMValueRef x) {
    static const double kc[] = {-2.571292043e-06, 4.488017657e-05, -3.212755837e-04,
                                1.066867728e-03,  1.247901091e-04, -1.936905831e-02,
                                1.091046408e-01,  6.366012692e-01, 7.978857160e-01};
    LLVMValueRef ax = lg_sel(g, LLVMRealOLT, x, fk(g, 0), LLVMBuildFNeg(g->b, x, ""), x);
    LLVMValueRef u = lg_sel(g, LLVMRealOLT, ax, fk(g, 6.4), ax, fk(g, 6.4));
    LLVMValueRef in = LLVMBuildFCmp(g->b, LLVMRealULT, ax, fk(g, 7.0), ""); /* !(ax >= 7) */
    LLVMValueRef e = gelu_phin(g, u, in), k = horner(g, u, kc, 9);
    LLVMValueRef xphi = LLVMBuildSelect(g->b, in, lg_fmul(g, lg_fmul(g, x, e), k), fk(g, 0), "");
    return lg_fadd(g, lg_sel(g, LLVMRealOLT, x, fk(g, 0), e, lg_fsub(g, fk(g, 1.0), e)), xphi);
}

/* --------------------------------------------------------- entry points */

/* Node id's code as a function of its own, node_<id>(ctx, n, its operands'
 * and its own storage, its scratch), noinline as C's outlined nodes: entry
 * points stay small for the optimiser, and the identical ops of several entry
 * points are merged (mergefunc) and compiled once. A step the op fails returns
 * from the entry point too. */
static void emit_outlined(struct lg *g, int id) {
    const struct ir_node *nd = &g->c.f->nodes[id];
    int *vals = calloc((size_t)nd->nargs + 1, sizeof *vals), nv = 0;
    LLVMTypeRef *pt = calloc((size_t)nd->nargs + 4, sizeof *pt);
    LLVMValueRef *args = calloc((size_t)nd->nargs + 4, sizeof *args);
    if (!vals || !pt || !args) NETC_INTERNAL("out of memory");
    for (int a = 0; a <= nd->nargs; a++) {
        int x = a < nd->nargs ? nd->args[a] : id;
        bool dup = false;
        for (int i = 0; i < nv; i++) dup |= vals[i] == x;
        if (!dup) vals[nv++] = x;
    }
    bool scr = g->sptr[id] != NULL;
    pt[0] = g->p8, pt[1] = g->i64;
    for (int i = 0; i < nv; i++) pt[2 + i] = g->p8;
    if (scr) pt[2 + nv] = g->pf32;
    int np = 2 + nv + (scr ? 1 : 0);
    LLVMTypeRef ft = LLVMFunctionType(g->v, pt, (unsigned)np, 0);
    char name[64];
    snprintf(name, sizeof name, "node_%d", id);
    LLVMValueRef fn = LLVMAddFunction(g->mod, name, ft);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    LLVMAddAttributeAtIndex(
        fn, LLVMAttributeFunctionIndex,
        LLVMCreateEnumAttribute(g->cx, LLVMGetEnumAttributeKindForName("noinline", 8), 0));
    args[0] = g->ctx, args[1] = g->n;
    for (int i = 0; i < nv; i++) args[2 + i] = lg_ptr8(g, vals[i]);
    if (scr) args[2 + nv] = g->sptr[id];
    struct lg saved = *g;
    LLVMBasicBlockRef at = LLVMGetInsertBlock(g->b);
    int len = ir_func_len(g->c.f);
    g->ptr = calloc((size_t)len + 1, sizeof *g->ptr);
    g->sptr = calloc((size_t)len + 1, sizeof *g->sptr);
    if (!g->ptr || !g->sptr) NETC_INTERNAL("out of memory");
    g->fn = fn;
    g->ctx = LLVMGetParam(fn, 0);
    g->n = LLVMGetParam(fn, 1);
    LLVMPositionBuilderAtEnd(g->b, block(g, "entry"));
    g->ws = g->mn = NULL; /* an op reaches its storage through its parameters only */
    for (int i = 0; i < nv; i++) g->ptr[vals[i]] = LLVMGetParam(fn, (unsigned)(2 + i));
    if (scr) g->sptr[id] = LLVMGetParam(fn, (unsigned)(2 + nv));
    g->ret = block(g, "return");
    g->may_fail = false;
    lg_op_emit(g, id);
    LLVMBuildBr(g->b, g->ret);
    LLVMPositionBuilderAtEnd(g->b, g->ret);
    LLVMBuildRetVoid(g->b);
    bool fails = g->may_fail;
    free(g->ptr);
    free(g->sptr);
    *g = saved;
    LLVMPositionBuilderAtEnd(g->b, at);
    LLVMBuildCall2(g->b, ft, fn, args, (unsigned)np, "");
    free(vals), free(pt), free(args);
    if (!fails) return;
    LLVMValueRef failed = ctx_field(g, offsetof(struct nrt_ctx, failed), g->i32);
    LLVMBasicBlockRef next = block(g, "next");
    LLVMBuildCondBr(g->b, LLVMBuildICmp(g->b, LLVMIntNE, failed, lg_i32(g, 0), ""), g->ret, next);
    LLVMPositionBuilderAtEnd(g->b, next);
}

/* Emits entry point `index` (the plan is in g->c) as `entry_<index>`. */
static LLVMValueRef emit_entry(struct lg *g, int index) {
    const struct ir_func *f = g->c.f;
    int len = ir_func_len(f);
    char name[64];
    snprintf(name, sizeof name, "entry_%d", index);
    LLVMTypeRef params[2] = {g->p8, g->i64};
    g->fn = LLVMAddFunction(g->mod, name, LLVMFunctionType(g->v, params, 2, 0));
    LLVMSetLinkage(g->fn, LLVMInternalLinkage);
    g->ctx = LLVMGetParam(g->fn, 0);
    g->n = LLVMGetParam(g->fn, 1);
    LLVMPositionBuilderAtEnd(g->b, block(g, "entry"));
    g->ret = NULL;
    g->ws = ctx_field(g, offsetof(struct nrt_ctx, ws), g->p8);
    g->mn = ctx_field(g, offsetof(struct nrt_ctx, max_n), g->i64);
    g->ptr = calloc((size_t)len + 1, sizeof *g->ptr);
    g->sptr = calloc((size_t)len + 1, sizeof *g->sptr);
    if (!g->ptr || !g->sptr) NETC_INTERNAL("out of memory");
    LLVMBasicBlockRef ret = block(g, "return");
    g->ret = ret;
    for (int id = 0; id < len; id++) {
        const struct cgc_val *v = &g->c.vals[id];
        const struct cgc_kernel *k = v->kernel >= 0 ? &g->c.kernels[v->kernel] : NULL;
        if (!k) {
            declare(g, id, id);
            /* Leaves and aliases have no code; a variance may read an earlier mean. */
            enum op op = f->nodes[id].op;
            if (op == OP_INPUT || op == OP_PARAM || op == OP_ASSIGN || op == OP_VARIANCE ||
                pass_memplan_aliases(&f->nodes[id]))
                lg_op_emit(g, id);
            else
                emit_outlined(g, id);
            continue;
        }
        if (id == k->members[0])
            for (size_t i = 0; i < vec_len(k->outputs); i++)
                declare(g, k->outputs[i], k->outputs[i] == k->root ? k->head : -1);
        if (id == k->root) {
            if (k->head >= 0) g->ptr[k->head] = g->ptr[k->root]; /* the head computes into the result */
            lg_kernel_emit(g, k);
        }
    }
    /* ASSIGNs take effect at the end: every PARAM read saw the old values. */
    for (int id = 0; id < len; id++) {
        const struct ir_node *n = &f->nodes[id];
        if (n->op != OP_ASSIGN) continue;
        int b = cgc_buffer_index(g->m, n->sym);
        LLVMValueRef at = lg_i64(g, b);
        LLVMValueRef bufs = ctx_field(g, offsetof(struct nrt_ctx, buf), LLVMPointerType(g->p8, 0));
        LLVMValueRef dst = LLVMBuildLoad2(g->b, g->p8, LLVMBuildGEP2(g->b, g->p8, bufs, &at, 1, ""), "");
        LLVMBasicBlockRef after = lg_if(g, LLVMBuildICmp(g->b, LLVMIntNE, dst, lg_ptr8(g, id), ""));
        LLVMValueRef bytes = LLVMBuildMul(g->b, lg_x(g, cgc_count(&n->type.shape)), lg_i64(g, 4), "");
        LLVMBuildMemCpy(g->b, dst, 4, lg_ptr8(g, id), 4, bytes);
        lg_endif(g, after);
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        LLVMValueRef at = lg_i64(g, (int64_t)(offsetof(struct nrt_ctx, out) + o * sizeof(void *)));
        LLVMValueRef p = LLVMBuildBitCast(g->b, LLVMBuildGEP2(g->b, g->i8, g->ctx, &at, 1, ""),
                                          LLVMPointerType(g->p8, 0), "");
        LLVMBuildStore(g->b, lg_ptr8(g, f->outputs[o].value), p);
    }
    LLVMBuildBr(g->b, ret);
    LLVMPositionBuilderAtEnd(g->b, ret);
    LLVMBuildRetVoid(g->b);
    free(g->ptr);
    free(g->sptr);
    g->ptr = g->sptr = NULL;
    return g->fn;
}

/* ---------------------------------------------------------------- module */

/* Every node of every function is one the column emits; else one error per op. */
static bool check_ops(struct lg *g) {
    bool ok = true, seen[OP_COUNT] = {false};
    for (size_t e = 0; e < vec_len(g->m->funcs); e++) {
        const struct ir_func *f = g->m->funcs[e];
        g->c = (struct cgc){NULL, 0, g->m, f, NULL, 0, 0, NULL, NULL, NULL, NULL};
        cgc_layout(&g->c);
        for (int id = 0; id < ir_func_len(f); id++) {
            const char *why = NULL;
            const struct ir_node *n = &f->nodes[id];
            if (lg_op_supported(g, id, &why) || seen[n->op]) continue;
            seen[n->op] = true;
            diag_error(n->loc, "--target=llvm does not support %s yet (use --target=c)",
                       why ? why : op_info[n->op].name);
            ok = false;
        }
        cgc_layout_free(&g->c);
    }
    return ok;
}

bool lg_module(const struct ir_module *m, const struct cg_options *opt, struct lg *g) {
    LLVMContextRef cx = g->cx;
    memset(g, 0, sizeof *g);
    g->m = m;
    g->cx = cx;
    g->mod = LLVMModuleCreateWithNameInContext(m->name, g->cx);
    g->b = LLVMCreateBuilderInContext(g->cx);
    g->v = LLVMVoidTypeInContext(g->cx);
    g->i1 = LLVMInt1TypeInContext(g->cx);
    g->i8 = LLVMInt8TypeInContext(g->cx);
    g->i32 = LLVMInt32TypeInContext(g->cx);
    g->i64 = LLVMInt64TypeInContext(g->cx);
    g->f32 = LLVMFloatTypeInContext(g->cx);
    g->f64 = LLVMDoubleTypeInContext(g->cx);
    g->p8 = LLVMPointerType(g->i8, 0);
    g->p32 = LLVMPointerType(g->i32, 0);
    g->p64 = LLVMPointerType(g->i64, 0);
    g->pf32 = LLVMPointerType(g->f32, 0);
    g->pf64 = LLVMPointerType(g->f64, 0);
    if (!cgc_check_module(m, "LLVM") || !check_ops(g)) {
        LLVMDisposeBuilder(g->b);
        g->b = NULL;
        return false;
    }
    size_t nf = vec_len(m->funcs);
    LLVMValueRef *entry = calloc(nf + 1, sizeof *entry);
    size_t *ws_fixed = calloc(nf + 1, sizeof *ws_fixed), *ws_per_n = calloc(nf + 1, sizeof *ws_per_n);
    if (!entry || !ws_fixed || !ws_per_n) NETC_INTERNAL("out of memory");
    for (size_t e = 0; e < nf; e++) {
        g->c = (struct cgc){NULL, 0, m, m->funcs[e], NULL, 0, 0, NULL, NULL, NULL, NULL};
        cgc_layout(&g->c);
        entry[e] = emit_entry(g, (int)e);
        ws_fixed[e] = g->c.fixed_total;
        ws_per_n[e] = g->c.per_n_total;
        cgc_layout_free(&g->c);
    }
    lg_descriptor(g, entry, ws_fixed, ws_per_n, opt);
    free(entry);
    free(ws_fixed);
    free(ws_per_n);
    LLVMDisposeBuilder(g->b);
    g->b = NULL;
    return true;
}
