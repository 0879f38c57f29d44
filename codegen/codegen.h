/* codegen/codegen.h -- the one internal header of codegen/: the reference
 * interpreter's API (interp.c), the interpreter's internals shared with
 * interp_nn.c, the C backend (c_emit.c, c_ops.c), the core the C-like backends
 * share (cg_core.c, with the formulas of codegen/formulas.def) and the OpenCL
 * backend built on them (cl_emit.c, cl_ops.c). Formulas that generated code also
 * needs (the dropout mask) are defined once, in runtime/netrt.h. Sections follow
 * the files. */
#ifndef NETC_CODEGEN_H
#define NETC_CODEGEN_H

#include "ir/ir.h"
#include "passes/passes.h"
#include "runtime/netrt.h" /* the formulas generated code shares (dropout mask), library geometry */

/* ------------------------------------------------------------- interp.c */

/* The reference backend: evaluates one IR function node by node in plain C, every
 * value held in double precision (so it is a tighter reference than any f32
 * backend and gradient checks against it can be strict). Semantics it fixes:
 *   - PARAM reads see buffer values as they were when the run started; ASSIGN
 *     results are collected and written into the buffers only by cg_interp_commit.
 *   - MSE, BCE, BCE_LOGITS, HINGE are means over every element; CROSS_ENTROPY and
 *     ACCURACY are means over the batch (dim 0). VARIANCE is the population
 *     (biased) variance. AVGPOOL2D divides by the full window (padding included).
 *   - i32 values are exact integers; CAST to i32 truncates toward zero, saturating.
 * Errors (a buffer never set, a label out of range, a size mismatch) make the call
 * return false with a message from cg_interp_error. */
struct cg_interp;

/* An interpreter for function f of module m with batch size n (n >= 1). */
struct cg_interp *cg_interp_new(struct ir_module *m, struct ir_func *f, int64_t n);
void cg_interp_free(struct cg_interp *it);
/* The last error message ("" when none). */
const char *cg_interp_error(const struct cg_interp *it);

/* Set a buffer (input, param or state) from host data of exactly its element count
 * (N resolved). The data are copied. i32 buffers take i32 data; f32 buffers take
 * f32 or f64 data. */
bool cg_interp_set_f32(struct cg_interp *it, const char *buffer, const float *data, size_t count);
bool cg_interp_set_f64(struct cg_interp *it, const char *buffer, const double *data, size_t count);
bool cg_interp_set_i32(struct cg_interp *it, const char *buffer, const int32_t *data, size_t count);
/* The training step fed to dropout masks (default 0). */
void cg_interp_set_step(struct cg_interp *it, uint64_t step);

/* Evaluate every node. Every buffer the function reads must have been set. */
bool cg_interp_run(struct cg_interp *it);

/* The element count of output `name` after a run, or 0 if there is no such output. */
size_t cg_interp_output_count(const struct cg_interp *it, const char *name);
/* Copy output `name` (count must equal its element count). f32 outputs read as f32
 * or f64, i32 outputs as i32. */
bool cg_interp_output_f32(struct cg_interp *it, const char *name, float *out, size_t count);
bool cg_interp_output_f64(struct cg_interp *it, const char *name, double *out, size_t count);
bool cg_interp_output_i32(struct cg_interp *it, const char *name, int32_t *out, size_t count);
/* Copy the value the last run ASSIGNed to `buffer` (false if none did). */
bool cg_interp_assigned_f32(struct cg_interp *it, const char *buffer, float *out, size_t count);
bool cg_interp_assigned_f64(struct cg_interp *it, const char *buffer, double *out, size_t count);
/* Write the last run's ASSIGNed values into their buffers, as a training step does. */
void cg_interp_commit(struct cg_interp *it);

/* ------------------------------------------- interp.c, interp_nn.c: internals */

/* One evaluated value. */
struct cg_val {
    struct shape shape; /* dims with N resolved */
    size_t numel;       /* elements */
    double *d;          /* the elements, row-major (i32 values as exact integers) */
};

/* One module buffer. */
struct cg_buf {
    const struct ir_buffer *b; /* its declaration */
    struct shape shape;        /* dims with N resolved */
    size_t numel;              /* elements */
    double *d;                 /* the contents, or NULL while unset */
    double *assigned;          /* what the last run ASSIGNed to it, or NULL */
};

struct cg_interp {
    struct ir_module *m; /* the module */
    struct ir_func *f;   /* the function evaluated */
    int64_t n;           /* the batch size N */
    uint64_t step;       /* training step, for dropout */
    struct cg_val *vals; /* per node */
    struct cg_buf *bufs; /* per module buffer, in module order */
    bool ran;            /* values are those of a complete run */
    char err[256];       /* the last error */
};

/* Evaluate node `id` into it->vals[id] (allocated, zeroed, shaped by the node's
 * type); false after cg_fail. One per op: a column of the op table. */
#define OP(name, arity, kind, flags, attrs) bool cg_eval_##name(struct cg_interp *it, int id);
#include "ir/ops.def"
#undef OP

/* Record an error about node `id` (formatted) and return false. */
bool cg_fail(struct cg_interp *it, int id, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The value of operand i of node id, and the node's own value. */
struct cg_val *cg_arg(struct cg_interp *it, int id, int i);
struct cg_val *cg_out(struct cg_interp *it, int id);
/* The node itself. */
const struct ir_node *cg_node(struct cg_interp *it, int id);

/* ------------------------------------------------- c_emit.c, c_ops.c: the C backend */

struct cg_lang;

/* How a module is emitted. */
struct cg_options {
    const char *netc_version; /* recorded in the generated descriptor */
    bool main;                /* also emit main() calling nrt_main (a program, not a library) */
    bool mpi;                 /* main() calls nrt_mpi_main with the gradient buckets (--mpi) */
    /* The C target, when part is set: the functions of kernels and ops go to
     * further translation units of about part_bytes each, part(part_ctx, i)
     * opening the i-th (1, 2, ...; NULL: fail, reported by part), so that they
     * compile in parallel and are cached one by one; out keeps the entry points
     * (with the functions' prototypes), the descriptor and main. */
    FILE *(*part)(void *part_ctx, int i);
    void *part_ctx;
    size_t part_bytes;
};

/* A backend: a struct of data and function pointers (STYLE.md section 9),
 * registered once in targets.c's table. tools/ reads every field from here and
 * names no backend: --target, usage texts, link lines and errors come from the table. */
struct cg_target {
    const char *name; /* as given to --target */
    const char *ext;  /* extension of the emitted source, ".c" */
    const char *help; /* one line for --help: what the target makes */
    /* Emit the whole module to out as one program's source (with main() when
     * opt->main). False (with a diag_error) on a module the backend cannot
     * handle. NULL: a target for `netc emit` only (emit_lib). */
    bool (*emit)(const struct ir_module *m, FILE *out, const struct cg_options *opt);
    /* Emit the module as a library to embed: c_out, and h_out (the header
     * c_out includes as header_name), its API named after prefix. NULL: none. */
    bool (*emit_lib)(const struct ir_module *m, FILE *c_out, FILE *h_out, const char *prefix,
                     const char *header_name, const struct cg_options *opt);
    bool parts;              /* emit honours cg_options.part (several translation units) */
    const char *runtime_lib; /* a runtime library linked before libnetrt.a, found beside it ("libnetrt_cl.a"),
                                or NULL */
    const char *link_flags;  /* libraries linked after the runtime's, space-separated ("-lOpenCL"), or NULL */
    const char *needs;       /* when runtime_lib is missing: what to install and rebuild, or NULL */
    /* What the fuse and memplan passes plan for: the kernels it emits whole,
     * the scratch of its ops. The driver sets pass_target to it before the
     * pipeline, and emit reads the plan from the IR. */
    const struct pass_target *plan;
    /* A target that compiles itself: write an object file for the host (with
     * main() when opt->main), linked with the runtime like the C build's
     * sources; NULL: emit is C source for the C compiler. */
    bool (*emit_object)(const struct ir_module *m, const struct cg_options *opt, const char *path);
    /* `netc run` in process (a JIT): run the module's program with argv and
     * return its exit status, or -1 after an error was reported; NULL: build
     * the program into the cache and execute it. */
    int (*run)(const struct ir_module *m, const struct cg_options *opt, int argc, char **argv);
    bool no_mpi; /* --mpi (data parallelism) is not supported yet */
};

extern const struct cg_target cg_target_c;
extern const struct pass_target cgc_plan_c;  /* the C target's kernel and scratch planning (c_emit.c) */
extern const struct cg_target cg_target_lib; /* c_lib.c: the C target as a library (emit_lib) */
/* c_lib.c: `netc emit --target=lib`: the C of the model (emit_c, the
 * descriptor renamed PREFIX_netc_model) plus a small API named after `prefix` (PREFIX_open, _forward,
 * _train_step, ...; docs/embedding.md) into c_out, and its header into h_out,
 * which `header_name` names for the #include. */
bool cg_emit_lib(const struct ir_module *m, FILE *c_out, FILE *h_out, const char *prefix,
                 const char *header_name, const struct cg_options *opt);

/* ---------------------------------------------------- targets.c: the registry */

/* Every target, in the order --help lists them (the first is the default),
 * ending with NULL. */
extern const struct cg_target *const cg_targets[];
/* The target named name, or NULL. */
const struct cg_target *cg_target_find(const char *name);
/* The names of the targets that build programs (emit set) or, with lib, of
 * every target, as "a, b, c" into buf; returns buf. */
const char *cg_target_names(char *buf, size_t size, bool lib);

/* A size expression of generated code: k, times the batch size n when `n`. The
 * IR has at most one batch dim, so products of dims stay of this form. */
struct cgc_x {
    int64_t k; /* static factor */
    bool n;    /* times n */
};

/* Where a value of the function being emitted lives. */
struct cgc_val {
    int alias;          /* node id whose storage it shares, or -1 */
    int buffer;         /* module buffer it is (input/param leaves, and kernel outputs
                           stored in place into the buffer they are assigned to), or -1 */
    bool per_n;         /* its slot is in the per-batch region */
    size_t off;         /* slot offset in its region (bytes; per-n slots: per batch item) */
    size_t size;        /* slot bytes (per batch item for per-n slots) */
    int64_t scratch;    /* scratch floats the op needs (per batch item if scratch_n) */
    bool scratch_n;     /* scratch scales with n */
    size_t scratch_off; /* scratch slot offset in its region */
    int last_use;       /* last node reading it (INT_MAX: an output or assigned) */
    int uses;           /* readers, outputs included */
    int kernel;         /* index into cgc.kernels of the fused kernel it belongs to, or -1 */
    int bucket;         /* the gradient bucket its slot is in (an ALLREDUCE operand), or -1 */
};

/* A kernel of the IR (nodes with the same `kernel=K`) emitted as one C function:
 * the head (if any) computes into the root's storage, then one loop nest computes
 * every elementwise member per element in registers and stores only the kernel's
 * outputs: the root, and the members used after the kernel (later nodes, assigns,
 * function outputs). An output may be stored straight into the buffer its assign
 * writes (cgc_val.buffer set on a computed value; docs/ir.md, "Kernels"), and an
 * input that is that same buffer is then read through the output's pointer. */
struct cgc_kernel {
    int root;     /* its last node, always stored */
    int head;     /* its matmul/conv2d head, or -1 */
    int *members; /* vec of node ids, increasing (root last) */
    int *inputs;  /* vec of distinct values read from outside, in order of first use by the
                     members (so identical kernels of other functions print alike) */
    int *outputs; /* vec of the members stored, increasing (root last) */
};

/* The state of the C emitter while it prints one function. */
struct cgc {
    FILE *out;                  /* where the C goes */
    int indent;                 /* current indentation, in levels of 4 spaces */
    const struct ir_module *m;  /* the module */
    const struct ir_func *f;    /* the function being emitted */
    struct cgc_val *vals;       /* per node */
    size_t fixed_total;         /* bytes of the fixed region (per-n slots follow it) */
    size_t per_n_total;         /* bytes per batch item of the per-n region */
    struct cgc_kernel *kernels; /* vec: the kernels emitted fused */
    const struct cg_lang *lang; /* the target's spelling (cg_core.c); NULL where
                                   nothing is printed (sizes only) */
    struct cgc_seen *seen;      /* the kernels printed so far in the module, or NULL */
    char **kname;               /* per node: the C name of the kernel rooted there, once printed */
};

/* The kernels printed so far in a module, so that an identical kernel (the
 * forward kernels of several entry points, the layers of repeated blocks) is
 * printed once and called by every entry point that needs it. */
struct cgc_seen {
    char **text; /* vec: each kernel's text with node ids renamed by first appearance (owned) */
    char **name; /* vec, parallel: its C name (owned) */
    const struct cg_options *opt; /* opt->part: functions go to further translation units */
    FILE *part;                   /* the translation unit being filled, or NULL */
    int parts;                    /* translation units opened */
    size_t part_len;              /* bytes in part */
    bool failed;                  /* opening one failed */
};

/* Print one line of C at the current indentation (chibicc's println). */
void cgc_emit(struct cgc *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Size expressions: a dim, the element count of a shape, and printing. */
struct cgc_x cgc_dim(const struct shape *s, int i);
struct cgc_x cgc_count(const struct shape *s);
struct cgc_x cgc_mul(struct cgc_x a, struct cgc_x b);
/* The product of the dims of s in [from, to); row-major strides of s; strides
 * of `small` read at the indices of `big` (numpy broadcasting: a missing or
 * size-1 dim has stride 0); equality of sizes (0 equals 0 with or without n). */
struct cgc_x cgc_dims_prod(const struct shape *s, int from, int to);
void cgc_strides(const struct shape *s, struct cgc_x *st);
void cgc_strides_into(const struct shape *small, const struct shape *big, struct cgc_x *st);
bool cgc_x_equal(struct cgc_x a, struct cgc_x b);
/* The batch dims of the batched product y = op(a) op(b) of rank >= 3
 * (torch.matmul broadcasting): per batch dim d, its extent, a's and b's element
 * strides (struct nrt_bgemm's dim, sa, sb) in batch[0..2][d]; returns their
 * count. */
int cgc_bgemm_batch(const struct shape *a, const struct shape *b, const struct shape *y,
                    struct cgc_x batch[3][IR_MAX_RANK]);
/* The C text of a pointer to a struct nrt_bgemm (runtime/netrt.h) for the
 * batched product y = op(a) op(b) of rank >= 3 (torch.matmul broadcasting). */
#define CGC_BGEMM_MAX 640
char *cgc_bgemm(const struct shape *a, const struct shape *b, const struct shape *y, bool ta, bool tb,
                char *buf, size_t len);
/* Prints x as C ("784", "784 * n", "n") into buf; returns buf. */
char *cgc_xstr(struct cgc_x x, char *buf, size_t len);
#define CGC_XSTR_MAX 48
/* A float literal that parses back to v ("0.5f", "1e-07f", "-INFINITY"). */
char *cgc_float(double v, char *buf, size_t len);
#define CGC_FLOAT_MAX 48
/* The node being emitted, its operand nodes, and the C name of a value ("v12"). */
const struct ir_node *cgc_node(const struct cgc *c, int id);
const struct ir_node *cgc_arg(const struct cgc *c, int id, int i);
/* The C element type of a value: "float" or "int32_t". */
const char *cgc_ctype(enum dtype t);

/* c_ops.c: the per-op column. cgc_op_<NAME> prints the C that computes node id
 * into its value pointer v<id> (operands are v<arg>). */
#define OP(name, arity, kind, flags, attrs) void cgc_op_##name(struct cgc *c, int id);
#include "ir/ops.def"
#undef OP
/* Emit node id by its op's column (c_emit.c). */
void cgc_op_emit(struct cgc *c, int id);
/* The input's shape with the reduced dims of node id set to 1 (the keepdims
 * form, laid out like the result either way); *count receives the number of
 * elements each result element reduces (c_ops.c; the LLVM backend's too). */
struct shape cgc_kept_shape(const struct cgc *c, int id, struct cgc_x *count);
/* Whether SUM node n reduces f32 x [N, C, ...] (rank 3 or more, static but
 * for the batch) over every axis but 1: a conv's bias gradient, which both
 * CPU backends compute by nrt_sum_planes(N, *ch, *hw, x, y) (c_ops.c). */
bool cg_sum_planes(const struct ir_func *f, const struct ir_node *n, int64_t *ch, int64_t *hw);
/* An earlier MEAN of the same value over the same axes, still in memory at node
 * id (batch norm's statistics, reused by VARIANCE), or -1 (c_ops.c). */
int cgc_same_mean(const struct cgc *c, int id);
/* Fill k->head, k->inputs and k->outputs from k->members; false when the kernel
 * is beyond what one loop nest handles (fuse, planning for this target through
 * struct pass_target, never forms one: the emitter then stops with an internal
 * error). */
bool cgc_kernel_plan(const struct cgc *c, struct cgc_kernel *k);
/* Whether member m of k is one of its outputs; whether input x of k is read
 * through an output's pointer (the same buffer), and that output. */
bool cgc_kernel_stores(const struct cgc_kernel *k, int m);
int cgc_kernel_inplace(const struct cgc *c, const struct cgc_kernel *k, int x);
/* The body of kernel k's function: its parameters are n, v<output>...,
 * v<input>... (but the in-place ones) and s<head> when the head needs scratch.
 * cgc_kernel_body prints the head's call and the whole loop nest. The nest
 * alone, over outer indices [lo, hi) of its first loop (parameters lo, hi),
 * is cgc_kernel_range; cgc_kernel_outer gives that loop's extent and the
 * elements per outer index (false for a rank-0 nest). */
void cgc_kernel_body(struct cgc *c, const struct cgc_kernel *k);
/* A gemm-update kernel's body (passes/fuse.c, pass_gemm_adam): the struct
 * nrt_adam and the nrt_sgemm_adam call, the head's scratch s<head>. */
void cgc_gemm_adam(struct cgc *c, const struct pass_gemm_adam *u);
/* Whether kernel k is a conv2d head, a bias_add on its channels and maybe a
 * relu or leaky_relu, with only the last stored: its body is then one
 * nrt_conv2d_bias_act (nrt_conv2d_bias_leaky) call (no loop nest); or the same closed by a 2x2 max
 * pool root (the bias may be missing too): one nrt_conv2d_bias_act_pool
 * call. *bias (-1: none) and *relu (either may be NULL) receive the bias
 * value and whether relu follows. */
bool cgc_kernel_conv_ep(const struct cgc *c, const struct cgc_kernel *k, int *bias, bool *relu);
/* The same, with a leaky_relu in place of the relu allowed (no pool): *leaky
 * its node (else -1), which nrt_conv2d_bias_leaky applies as the conv writes
 * y (the C and LLVM backends' call alike). */
bool cgc_kernel_conv_act(const struct cgc *c, const struct cgc_kernel *k, int *bias, bool *relu, int *leaky);
void cgc_kernel_head(struct cgc *c, const struct cgc_kernel *k);
void cgc_kernel_range(struct cgc *c, const struct cgc_kernel *k);
bool cgc_kernel_outer(const struct cgc *c, const struct cgc_kernel *k, struct cgc_x *outer,
                      struct cgc_x *inner);
#define CGC_TMPL_MAX 256
/* Scratch floats node n needs besides its value; *per_n tells whether the
 * count is per batch item. */
int64_t cgc_op_scratch(const struct ir_func *f, const struct ir_node *n, bool *per_n);
/* The C and LLVM targets' pass_target.pool_grad_weight: whether the runtime's
 * nrt_conv2d_grad_weight_maxpool has its fast path for conv weight gradient
 * gw behind max pooling gradient pg (nrt_conv2d_grad_weight_maxpool_fast). */
bool cg_pool_grad_weight_fast(const struct ir_func *f, const struct ir_node *gw, const struct ir_node *pg);

/* c_emit.c, shared with other backends: the memory plan of c->f as the IR has it
 * (passes/memplan.c; fills c->vals, c->kernels, c->fixed_total, c->per_n_total)
 * and its release; the module descriptor
 * (buffers, entries `entry_<E>` with their workspace sizes, layer table) with
 * `extra` (or NULL) printed as the last fields of the netc_model initializer; the
 * index of a module buffer by name; a C string literal. */
/* What every backend requires of a module: f32 and i32 buffers and values only,
 * no batch dim in parameter or state buffers, at most 64 outputs per entry point;
 * false after a diag_error naming `backend` ("C", "OpenCL"). */
bool cgc_check_module(const struct ir_module *m, const char *backend);
void cgc_layout(struct cgc *c);
void cgc_layout_free(struct cgc *c);
/* Before the call of fused kernel k: a C comment `kernel=K fuses %a %b ...` naming
 * the IR's kernel and the members emitted in it (what tests compare with
 * `netc dump`). */
void cgc_kernel_comment(struct cgc *c, const struct cgc_kernel *k);
/* Gradient buckets of c->f after cgc_layout (ALLREDUCE nodes with bucket >= 0,
 * passes/dp.c): each bucket's operands are contiguous slots at the start of the
 * fixed region, never reused. cgc_buckets gives the number of buckets and, per
 * bucket b < max, its byte offset, bytes and tensor count. */
int cgc_buckets(const struct cgc *c, int max, size_t *off, size_t *bytes, int *tensors);
/* main() of a program: nrt_main, or with opt->mpi nrt_mpi_main and the table
 * of every training entry point's buckets. */
void cgc_emit_main(const struct ir_module *m, FILE *out, const struct cg_options *opt);
/* What the runtime driver reads of an entry, as indices (-1: none): its loss
 * (a batch function's: its first step's) and first accuracy output, and
 * (train) the learning-rate buffer. */
struct cgc_roles {
    int loss_output, accuracy_output, lr_buffer;
};
struct cgc_roles cgc_entry_roles(const struct ir_module *m, const struct ir_func *f);
/* The forward, evaluate and generate_step entries and the batch function, or -1. */
void cgc_model_roles(const struct ir_module *m, int *forward, int *evaluate, int *generate, int *batch);
/* The model descriptor `netc_model` (struct nrt_model), with the indices the
 * runtime reads (loss, accuracy and learning-rate of each entry point; the
 * forward, evaluate and generate entries). extra initialises its last fields,
 * target, device and device_program (OpenCL: "\"opencl\", &nrt_cl_device_ops,
 * &cl_program"); NULL: the C target's ("c", no device). */
void cgc_emit_descriptor(const struct ir_module *m, FILE *out, const struct cg_options *opt,
                         const size_t *ws_fixed, const size_t *ws_per_n, const char *extra);
int cgc_buffer_index(const struct ir_module *m, const char *name);
/* The n chars of s escaped for a C string literal (no quotes around them). */
void cgc_put_chars(FILE *out, const char *s, size_t n);
void cgc_put_str(FILE *out, const char *s);

/* ------------------------------------ cg_core.c: the core of the C-like backends */

/* What the C and OpenCL backends share (tinygrad's CStyleLanguage): loop nests and
 * the index arithmetic over them, substitution of operands into formulas, the
 * arrays and expressions of a fused kernel, the roles of a convolution's operands,
 * the geometry of runtime library calls and the calls themselves, node comments
 * and the renaming that finds identical functions. Each backend prints a nest its
 * own way (C: for loops; OpenCL: a work-item's index decomposed) and supplies its
 * spelling in a struct cg_lang. */

/* How a C-like target spells what the shared emitters print. */
struct cg_lang {
    const char *name; /* "C", "OpenCL" */
    int dialect;      /* its column of codegen/formulas.def's math names (CG_DIALECT_*) */
    const char *lib;  /* prefix of the runtime library's calls: "nrt_", "nrt_cl_" */
    const char *ctx;  /* their leading arguments: "", "ctx, " */
    char val;         /* a value passed to them: 'v' (v<id>, a pointer), 'o' (o<id>, an arena offset) */
    const char *acc;  /* the accumulator type of sums and of i32 formulas: "double", "acc_t" */
    const char *idx;  /* the type of loop indices: "int64_t", "long" */
};
#define CG_DIALECT_C 0
#define CG_DIALECT_OPENCL 1
extern const struct cg_lang cg_lang_c, cg_lang_opencl;

/* Prints "{" and indents, unindents and prints "}" (a block around a library
 * call on `geo`, or an op's locals). */
void cg_block_open(struct cgc *c);
void cg_block_close(struct cgc *c);

/* Short-lived text of a size expression and of a float literal (rings of 16 and
 * 8 buffers: valid until that many later calls). */
const char *cg_xs(struct cgc_x x);
const char *cg_fs(double v);

/* A loop nest over `dim` indexing `nops` arrays through their strides. */
#define CG_NEST_OPS 16     /* arrays of one nest at most */
#define CG_IDX_MAX 200     /* characters of one array's index */
#define CG_OPERAND_MAX 240 /* characters of one operand's element expression */
struct cg_nest {
    int rank;                                  /* loops */
    struct cgc_x dim[IR_MAX_RANK];             /* their extents */
    int nops;                                  /* arrays indexed */
    struct cgc_x st[CG_NEST_OPS][IR_MAX_RANK]; /* per array, per loop: its stride */
    char idx[CG_NEST_OPS][CG_IDX_MAX];         /* after cg_nest_index: each array's index */
    bool range;                                /* C: the first loop runs over [lo, hi) */
};
/* A nest over shape y for nops arrays; array 0 is y itself (row-major). */
void cg_nest_init(struct cg_nest *ns, const struct shape *y, int nops);
/* Array j reads x broadcast into y (numpy), or with axis >= 0 a vector along that axis of y. */
void cg_nest_read(struct cg_nest *ns, int j, const struct shape *x, const struct shape *y, int axis);
/* Merges loop i into loop i+1 wherever every array walks them contiguously, so
 * that same-shape elementwise ops become one flat loop. */
void cg_nest_merge(struct cg_nest *ns);
/* Fills ns->idx: each array's index over the loop variables i0, i1, ... */
void cg_nest_index(struct cg_nest *ns);
/* The elements the nest visits. */
struct cgc_x cg_nest_total(const struct cg_nest *ns);
/* Lanes of the partial sums of a row sum: two AVX-512 registers of doubles. */
#define CG_SUM_LANES 16
/* A sum's nest (array 0 the source, array 1 the destination; merged here) whose
 * innermost loop runs along contiguous source elements into one destination
 * element, at least CG_SUM_LANES of them or a dynamic count: that loop is taken
 * off the nest and its extent is *len, for CG_SUM_LANES partial sums along each
 * row (c_ops.c's sum_rows, llvm_ops.c's sum_into); false otherwise. */
bool cg_nest_row_sum(struct cg_nest *ns, struct cgc_x *len);
/* Substitutes $0..$9 in tmpl by ops[]; a result that does not fit is an
 * internal error, never code cut short. */
void cg_subst(char *out, size_t len, const char *tmpl, char ops[][CG_OPERAND_MAX], int nops);

/* One array a fused kernel's nest reads: a value, and the axis along which it is
 * a per-channel vector (-1: numpy broadcasting into the root's shape). */
struct cg_access {
    int value; /* node id */
    int bias;  /* bias axis, or -1 */
};
/* How member m reads its operand a; whether that operand is computed in a
 * register of kernel k (an earlier member, not the head). */
struct cg_access cg_access_of(const struct cgc *c, int m, int a);
bool cg_in_register(const struct cgc *c, const struct cgc_kernel *k, int m, int a);
/* The arrays of k's nest after the root's: every distinct access in order of
 * use, at most max (max + 1: more). */
int cg_kernel_accesses(const struct cgc *c, const struct cgc_kernel *k, struct cg_access *acc, int max);
/* k's nest, merged (the outputs, all of the root's shape, share array 0), and its
 * accesses; returns their count. */
int cg_kernel_nest(const struct cgc *c, const struct cgc_kernel *k, struct cg_nest *ns,
                   struct cg_access *acc);
/* Member m's element expression in k's nest (indices filled): its formula in
 * c->lang's spelling with registers t<id> and array elements v<id>[index] for
 * operands. */
void cg_kernel_expr(const struct cgc *c, const struct cgc_kernel *k, int m, const struct cg_nest *ns,
                    const struct cg_access *acc, char *expr, size_t len);
/* The formula of node n's op (codegen/formulas.def) in l's spelling, with $0,
 * $1, ... for its operands, into out; false when the op has none. */
bool cg_formula(const struct ir_node *n, const struct cg_lang *l, char *out, size_t len);

/* Elementwise node id as one nest: array 0 the node, array 1 + a its operand a
 * broadcast (or, for a == 1 with bias_axis >= 0, a vector along that axis); and,
 * once the indices are filled, the statement computing one element by the op's
 * formula (i32 results in the accumulator type, converted as the IR converts). */
void cg_ewise_nest(const struct cgc *c, int id, int bias_axis, struct cg_nest *ns);
void cg_ewise_store(const struct cgc *c, int id, const struct cg_nest *ns, char *line, size_t len);
/* Member i of kernel k as the statement computing its register t<id> ("const
 * float t7 = ...;"); -1 for the head (computed before the nest), else its id. */
int cg_kernel_line(const struct cgc *c, const struct cgc_kernel *k, size_t i, const struct cg_nest *ns,
                   const struct cg_access *acc, char *line, size_t len);
/* Prints, each line after `pad`, the largest element mx and the log-sum-exp lse
 * (in the accumulator type) of the row xr of `cls` (an expression) elements. */
void cg_row_lse(FILE *out, const char *pad, const struct cg_lang *l, const char *cls);
/* The head of a generated C file of module m: a comment naming it ("model NAME"
 * then `what`, the netc version, then the lines of `about`), and the runtime
 * header. */
void cg_file_head(FILE *out, const struct ir_module *m, const struct cg_options *opt, const char *what,
                  const char *about);

/* The (input, weight, output) shapes of a conv-family node's geometry; the
 * images per GEMM its kernels take (struct nrt_conv's chunk) and the scratch
 * floats per image. */
void cg_conv_roles(const struct ir_func *f, const struct ir_node *n, const struct shape **x,
                   const struct shape **w, const struct shape **y);
int64_t cg_conv_chunk(const struct ir_func *f, const struct ir_node *n, int64_t *per);
int64_t cg_conv_scratch(const struct ir_func *f, const struct ir_node *n);
/* Conv-family node n's struct nrt_conv for one image (n = 1, chunk 0: the
 * runtime's default). */
struct nrt_conv cg_conv_geo(const struct ir_func *f, const struct ir_node *n);

/* Runtime library ops in the target's spelling (c->lang), in a block where they
 * need a geometry: matmul, matmul_bsum; conv2d and its gradients and
 * conv_transpose2d (scratch s<id>); max/avg pooling and their gradients;
 * upsampling and its gradient. cg_rnn_geo declares `geo`, the nrt_rnn of a
 * recurrent node whose ws is operand `ws` (-1: the node) and w_hh operand `whh`,
 * x operand `x` (-1: none). */
void cg_lib_matmul(struct cgc *c, int id);
void cg_lib_matmul_bsum(struct cgc *c, int id);
void cg_lib_conv(struct cgc *c, int id);
/* conv2d node id with its epilogue in the same call (C only): bias value
 * `bias` (-1: none) added per output channel, then relu when asked, or the
 * leaky relu of node `leaky` (>= 0; nrt_conv2d_bias_leaky). */
/* pool >= 0: the 2x2 max pool closing the kernel, its value the one written. */
void cg_lib_conv_ep(struct cgc *c, int id, int bias, bool relu, int pool, int leaky);
void cg_lib_pool(struct cgc *c, int id);
/* conv2d_grad_weight_maxpool: one runtime call, no scratch (C only). */
void cg_lib_conv_grad_weight_maxpool(struct cgc *c, int id);
void cg_lib_upsample(struct cgc *c, int id);
void cg_rnn_geo(struct cgc *c, int id, int ws, int whh, int x);

/* Prints node id's one-line IR as a comment; a name made safe for a comment
 * (identifier characters, '.' and '-'). */
void cg_node_comment(struct cgc *c, int id);
const char *cg_comment_safe(const char *s, char *buf, size_t len);
/* A function's text as its computation: `name` (where an identifier starts)
 * replaced by '@', and the ids after the one-letter prefixes in `prefixes`
 * (and '%' when it is among them) numbered by first appearance, so that two
 * functions compare equal exactly when they compute the same from their
 * parameters in the same order. Returns a new string. */
char *cg_canonical(const char *text, const char *name, const char *prefixes);
/* Grows *out (of *cap bytes) to hold at least need bytes. */
void cg_reserve(char **out, size_t *cap, size_t need);

/* ------------------------------------------ cl_emit.c, cl_ops.c: the OpenCL backend */

/* --target=opencl: the memory plan and kernels of the IR and the host frame of
 * the C backend, with every value computed on the device. Each entry point becomes a
 * host C function that uploads the inputs it reads and the state (when the host
 * copy is newer), launches one OpenCL kernel per node or fused kernel (or a
 * runtime library op: GEMM, convolution, pooling), copies assigned values into
 * their buffers on the device, and downloads only its outputs. Every kernel
 * takes the runtime's arena `__global float *A`, the batch size `long n` and one
 * `long` element offset per value it touches (runtime/netrt.h, the contract). */
extern const struct cg_target cg_target_opencl;

/* Rows at least this long are reduced by a work-group rather than one work-item. */
#define CLC_WG_MIN 256

/* The state of the OpenCL emitter while it prints one function. */
struct clc {
    struct cgc c;    /* memory plan of the function; c.out receives the host C */
    FILE *src;       /* the OpenCL C program of the whole module being built */
    int entry;       /* index of the function's entry point */
    char **names;    /* vec: kernel names (owned), in launch-index order */
    char **bodies;   /* vec, parallel to names: each kernel's text with its name
                        blanked (owned; NULL for netc_copy), so that identical
                        kernels (the forward ops of several entry points) are
                        emitted and compiled once */
    bool uses_step;  /* the function's kernels read the training step (dropout) */
    FILE *main_src;  /* while a kernel is being printed: src, which then points
                        to a buffer for the kernel's text */
    char *kbuf;      /* that buffer (open_memstream) */
    size_t kbuf_len; /* its length */
    char kname[64];  /* the name of the kernel being printed */
    int kv_n;        /* its values (parameters o<id>, pointers v<id>) */
    int kv_id[64];   /* their node ids, in parameter order */
    bool split;      /* an elementwise nest (nest_open): kend may split its
                        body at the range guard (cl_ops.c's split_guard) */
};

/* Print one line of OpenCL C into k->src. */
void clc_src(struct clc *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Register a kernel name (formatted); returns its launch index. */
int clc_kernel_name(struct clc *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* cl_ops.c: the per-op column. clc_op_<NAME> prints, for node id, the OpenCL
 * kernel that computes it into k->src and the host C that launches it (or the
 * runtime library call) into k->c.out; host variable o<id> holds the element
 * offset of value id in the arena. */
#define OP(name, arity, kind, flags, attrs) void clc_op_##name(struct clc *k, int id);
#include "ir/ops.def"
#undef OP
/* Emit node id by its op's column. */
void clc_op_emit(struct clc *k, int id);
/* Whether the members of IR kernel `kernel` of f form a kernel this backend fuses
 * (elementwise members, at most one matmul/conv2d head of the root's shape, no
 * batchnorm): what fuse ensures for --target=opencl, checked by the emitter. */
bool clc_kernel_supported(const struct ir_func *f, int kernel);
/* The host code (head call, then one launch) and OpenCL kernel of fused kernel kn. */
void clc_kernel_emit(struct clc *k, const struct cgc_kernel *kn);
/* The prologue of every program: types, helpers, and kernel 0, netc_copy(A, dst,
 * src, count) which assignments use. */
void clc_prologue(FILE *src);

/* The memory a program of module m allocates once, before its first step: the
 * workspace shared by the entry points (the largest plan at batch `batch`), and
 * the parameter and state buffers (their own region, outside the workspace). */
struct cgc_arena {
    size_t ws_fixed;    /* workspace bytes that do not scale with the batch (of the largest plan) */
    size_t ws_per_n;    /* and bytes per batch item */
    size_t ws_bytes;    /* the workspace at the batch given */
    size_t param_bytes; /* parameter and state buffers */
};
void cgc_arena_sizes(const struct ir_module *m, int64_t batch, struct cgc_arena *a);

/* c_summary.c: the layer table of the forward function (`./model info`). */
struct cgc_layers {
    int n;                /* rows emitted */
    double forward_flops; /* FLOPs per item of the rows together */
    double train_flops;   /* FLOPs per item of the first training function */
    double train_fixed;   /* its FLOPs per step that do not scale with the batch */
};
/* Prints `static const struct nrt_layer_desc layers[]` and fills *sum. */
void cgc_emit_layers(const struct ir_module *m, FILE *out, struct cgc_layers *sum);
/* The FLOPs of node n of f by the table's convention: per batch item when
 * *per_n, else per run (NETC_PROFILE's units, c_emit.c). */
double cgc_node_flops(const struct ir_func *f, const struct ir_node *n, bool *per_n);

/* ------------------------------------------ llvm_*.c: the LLVM backend */

/* --target=llvm (llvm_target.c's entry; llvm_emit.c, llvm_ops.c, llvm_desc.c,
 * llvm_jit.c, or llvm_none.c when netc is built without LLVM 14, where all
 * three report that): the C backend's memory plan and kernels emitted as LLVM
 * IR through the LLVM-C API, the runtime's kernels called, the descriptor as
 * data. cg_llvm_emit (cg_target_llvm.emit) prints the IR text; cg_llvm_object writes an optimised object file
 * for the host processor (with main() when opt->main); cg_llvm_run JIT-compiles the module in process and
 * runs nrt_main(argc, argv) on it, returning its exit status, or -1 after an error was reported. */
extern const struct cg_target cg_target_llvm;
bool cg_llvm_emit(const struct ir_module *m, FILE *out, const struct cg_options *opt);
bool cg_llvm_object(const struct ir_module *m, const struct cg_options *opt, const char *path);
int cg_llvm_run(const struct ir_module *m, const struct cg_options *opt, int argc, char **argv);

#endif
