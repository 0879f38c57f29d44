/* codegen/llvm.h -- internals of the LLVM backend (llvm_emit.c: module, entry
 * points, loops and math; llvm_ops.c: the per-op column; llvm_desc.c: the model
 * descriptor as data; llvm_jit.c: optimisation, JIT and object files). Only
 * these files include it: it needs llvm-c, which the rest of netc builds without.
 * The backend's public face is the LLVM section of codegen.h. */
#ifndef NETC_CODEGEN_LLVM_H
#define NETC_CODEGEN_LLVM_H

#include "codegen/codegen.h"

#include <llvm-c/Core.h>

/* The state of the LLVM emitter: the module, and while an entry point is being
 * emitted, the C backend's memory plan of its function (struct cgc: slots,
 * aliases, fused kernels) and the LLVM values of its frame. */
struct lg {
    LLVMContextRef cx;                         /* the context owning everything below */
    LLVMModuleRef mod;                         /* the module being built */
    LLVMBuilderRef b;                          /* where instructions go */
    LLVMTypeRef v, i1, i8, i32, i64, f32, f64; /* void and the scalar types */
    LLVMTypeRef p8, p32, p64, pf32, pf64;      /* pointers to them */
    const struct ir_module *m;                 /* the netc module */
    struct cgc c;                              /* memory plan of the function being emitted */
    LLVMValueRef fn;                           /* the LLVM function being emitted */
    LLVMValueRef ctx;                          /* its struct nrt_ctx * (as i8 *) */
    LLVMValueRef n;                            /* its batch size (i64) */
    LLVMValueRef ws, mn;                       /* ctx->ws (i8 *) and ctx->max_n (i64) */
    LLVMValueRef *ptr;                         /* per node: its storage (i8 *), or NULL */
    LLVMValueRef *sptr;                        /* per node: its scratch (float *), or NULL */
    LLVMBasicBlockRef ret;                     /* the block returning from the function being emitted */
    bool may_fail; /* code since this was cleared can fail the step (nrt_ctx_fail) */
};

/* llvm_emit.c: values and types. */
LLVMValueRef lg_i64(struct lg *g, int64_t v);
LLVMValueRef lg_i32(struct lg *g, int32_t v);
LLVMValueRef lg_f32(struct lg *g, double v);
LLVMValueRef lg_f64(struct lg *g, double v);
/* Float arithmetic (no fast-math flags: the results are IEEE's, as the C
 * backend's, which compiles without -ffast-math and, being ISO C11, without
 * contraction into FMAs). */
LLVMValueRef lg_fadd(struct lg *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef lg_fsub(struct lg *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef lg_fmul(struct lg *g, LLVMValueRef a, LLVMValueRef b);
LLVMValueRef lg_fdiv(struct lg *g, LLVMValueRef a, LLVMValueRef b);
/* A size expression (k, or k * n) as an i64. */
LLVMValueRef lg_x(struct lg *g, struct cgc_x x);
/* The storage of value id as float * or int32_t * (by its dtype), and as i8 *. */
LLVMValueRef lg_ptr(struct lg *g, int id);
LLVMValueRef lg_ptr8(struct lg *g, int id);
/* p[i] for a typed pointer p and i64 i; stores likewise. */
LLVMValueRef lg_load(struct lg *g, LLVMValueRef p, LLVMValueRef i);
void lg_store(struct lg *g, LLVMValueRef v, LLVMValueRef p, LLVMValueRef i);
/* A local variable (an alloca in the entry block; promoted to a register). */
LLVMValueRef lg_var(struct lg *g, LLVMTypeRef t, LLVMValueRef init);
/* A call of runtime (or libm) function `name`: ret (name)(params...). */
LLVMValueRef lg_call(struct lg *g, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int np,
                     LLVMValueRef *args);
/* A constant block of bytes (a geometry struct of netrt.h built by the
 * compiler) copied to the stack, with the i64 fields at byte offsets off[i]
 * set to vals[i] (batch-dependent sizes); returns its i8 *. */
LLVMValueRef lg_struct(struct lg *g, const void *bytes, size_t size, const size_t *off, LLVMValueRef *vals,
                       int nv);
/* Counted loops: i from lo while i < hi, step 1. */
struct lg_loop {
    LLVMBasicBlockRef head, body, exit; /* its blocks */
    LLVMValueRef i;                     /* the index (a phi) */
};
LLVMValueRef lg_loop_open(struct lg *g, struct lg_loop *l, LLVMValueRef lo, LLVMValueRef hi);
void lg_loop_close(struct lg *g, struct lg_loop *l);
/* if (cond) { ... } */
LLVMBasicBlockRef lg_if(struct lg *g, LLVMValueRef cond);
void lg_endif(struct lg *g, LLVMBasicBlockRef after);
/* Vectorisable float math in IR (netrt.h's nrt_expf and nrt_tanhf, Cephes'
 * logf, netrt.h's nrt_erff), on float values; libm's exp/log on doubles. */
LLVMValueRef lg_expf(struct lg *g, LLVMValueRef x);
LLVMValueRef lg_logf(struct lg *g, LLVMValueRef x);
LLVMValueRef lg_tanhf(struct lg *g, LLVMValueRef x);
LLVMValueRef lg_erff(struct lg *g, LLVMValueRef x);
/* netrt.h's nrt_gelu_phi (the normal distribution) and nrt_gelu_grad, on floats. */
LLVMValueRef lg_gelu_phi(struct lg *g, LLVMValueRef x);
LLVMValueRef lg_gelu_grad(struct lg *g, LLVMValueRef x);
LLVMValueRef lg_sqrt(struct lg *g, LLVMValueRef x);
LLVMValueRef lg_exp(struct lg *g, LLVMValueRef x);
LLVMValueRef lg_log(struct lg *g, LLVMValueRef x);
/* a > b ? x : y and friends on floats. */
LLVMValueRef lg_sel(struct lg *g, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b, LLVMValueRef x,
                    LLVMValueRef y);
/* netrt.h's nrt_to_i32 of a double. */
LLVMValueRef lg_to_i32(struct lg *g, LLVMValueRef d);

/* llvm_ops.c: the per-op column. lg_op_supported says whether node id can be
 * emitted (else *why names the op); lg_op_emit emits node id (not a fused member)
 * into its storage; lg_formula is the value of elementwise node n from its
 * operands' values (each of type t: float, or double for i32 results). */
bool lg_op_supported(struct lg *g, int id, const char **why);
void lg_op_emit(struct lg *g, int id);
LLVMValueRef lg_formula(struct lg *g, const struct ir_node *n, LLVMValueRef *a, LLVMTypeRef t);
/* Emit a fused kernel of the plan (head, then one loop nest). */
void lg_kernel_emit(struct lg *g, const struct cgc_kernel *k);

/* llvm_desc.c: the global `netc_model` (struct nrt_model) of module m, whose
 * entry points are the functions entry[e]; plus `main` with opt->main. */
void lg_descriptor(struct lg *g, LLVMValueRef *entry, const size_t *ws_fixed, const size_t *ws_per_n,
                   const struct cg_options *opt);

/* llvm_emit.c: the whole module, in context g->cx (set by the caller, who
 * disposes of it and with it the module); false after a diag_error. */
bool lg_module(const struct ir_module *m, const struct cg_options *opt, struct lg *g);

#endif
