/* ir/ir.h -- the one internal header of ir/: source locations and diagnostics,
 * the compilation arena, the op table, tensor types, and the IR itself (modules of
 * buffers and functions; functions are arrays of SSA nodes addressed by id).
 * Sections follow the files that implement them: diag.c, arena.c, ir.c, shape.c,
 * print.c, parse.c, verify.c, dot.c. */
#ifndef NETC_IR_H
#define NETC_IR_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ---------------------------------------------------------------- diag.c */

/* A position in a source file (.net or .ir); line and col start at 1. */
struct loc {
    const char *file; /* path as the user gave it; NULL for "no location" */
    int line;         /* 1-based line, 0 when unknown */
    int col;          /* 1-based column, 0 when unknown */
};

#define LOC_NONE ((struct loc){NULL, 0, 0})

/* Register the text of a source file so diagnostics can quote its lines. The text
 * is copied. Returns the interned file name to use in locs. */
const char *diag_source_add(const char *file, const char *text, size_t len);
/* Report a user error: `file:line:col: error: message`, the source line and a caret. */
void diag_error(struct loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void diag_verror(struct loc loc, const char *fmt, va_list ap);
/* A note attached to the previous error (same format, "note:"). */
void diag_note(struct loc loc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Number of errors reported so far; reset between compilations. */
int diag_error_count(void);
void diag_reset(void);
/* The registered text of `file` (NUL-terminated) and its length, or NULL. */
const char *diag_source_text(const char *file, size_t *len);
/* Free every registered source text. */
void diag_free(void);
/* Where diagnostics go (stderr by default). */
void diag_set_stream(FILE *out);
/* Edit distance, for "did you mean" suggestions: the candidate nearest to `name`
 * among `cands` (NULL-terminated), or NULL if none is close enough. */
const char *diag_nearest(const char *name, const char *const *cands);

/* Compiler bugs, never user errors. */
_Noreturn void netc_internal_error(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
#define NETC_UNREACHABLE() netc_internal_error(__FILE__, __LINE__, "unreachable")
#define NETC_INTERNAL(...) netc_internal_error(__FILE__, __LINE__, __VA_ARGS__)
#define NETC_ASSERT(c)                                                                 \
    do {                                                                               \
        if (!(c)) netc_internal_error(__FILE__, __LINE__, "assertion failed: %s", #c); \
    } while (0)

/* --------------------------------------------------------------- arena.c */

/* A bump allocator: everything of one compilation, freed in one call. */
struct arena;
struct arena *arena_new(void);
void arena_free(struct arena *a);
void *arena_alloc(struct arena *a, size_t size); /* zeroed, 16-byte aligned */
char *arena_strdup(struct arena *a, const char *s);
char *arena_strndup(struct arena *a, const char *s, size_t n);
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Growable vector of any element type: `T *v = NULL; vec_push(v, x); vec_len(v)`.
 * Backed by malloc; vec_free releases it. */
struct vec_hdr {
    size_t len; /* elements in use */
    size_t cap; /* elements allocated */
};
#define vec_hdr_(v) ((struct vec_hdr *)(v)-1)
#define vec_len(v) ((v) ? vec_hdr_(v)->len : 0)
#define vec_push(v, x) (vec_grow_((void **)&(v), sizeof *(v)), (v)[vec_hdr_(v)->len++] = (x))
#define vec_free(v) ((v) ? (free(vec_hdr_(v)), (v) = NULL) : NULL)
#define vec_clear(v) ((v) ? (vec_hdr_(v)->len = 0) : 0)
void vec_grow_(void **v, size_t elem_size);

/* ------------------------------------------------------------------ ir.c */

/* The op table, expanded from ops.def. */
enum op {
#define OP(name, arity, kind, flags, attrs) OP_##name,
#include "ir/ops.def"
#undef OP
    OP_COUNT
};

/* What family an op belongs to (drives printing, fusion and emitters). */
enum op_kind {
    OK_LEAF,     /* no operands: inputs, parameters, constants */
    OK_EFFECT,   /* writes a buffer */
    OK_EWISE,    /* elementwise, broadcasting */
    OK_REDUCE,   /* reductions */
    OK_CONTRACT, /* matrix products */
    OK_SHAPE,    /* reshapes and data movement */
    OK_NN,       /* convolution, pooling, softmax, normalization, dropout */
    OK_LOSS,     /* losses and their gradients */
    OK_METRIC,   /* non-differentiable measures */
};

/* Op flags. */
enum {
    OF_COMMUTES = 1 << 0, /* op(a, b) == op(b, a) */
    OF_NOGRAD = 1 << 1,   /* not differentiated through (gradient is zero/none) */
    OF_EFFECT = 1 << 2,   /* has a side effect; never removed as dead */
};

/* Attribute kinds of the schema strings in ops.def. */
enum attr_kind {
    AK_INT,   /* one int */
    AK_INTS,  /* a fixed number of ints */
    AK_LIST,  /* 0..IR_MAX_LIST ints */
    AK_FLOAT, /* one float (double) */
    AK_STR,   /* one string */
};

#define IR_MAX_ATTRS 8  /* attributes per op */
#define IR_MAX_IATTR 20 /* int slots per node */
#define IR_MAX_FATTR 4  /* float slots per node */
#define IR_MAX_LIST 8   /* ints in an i* list */

/* One attribute of an op's schema. */
struct attr_desc {
    const char *name;    /* as printed in the IR text */
    enum attr_kind kind; /* its type */
    int count;           /* ints for AK_INTS, max for AK_LIST, else 1 */
    int slot;            /* first slot in the node's ia[] (count first for AK_LIST) or fa[] */
};

/* Attribute ids, one per row of attrs.def. */
enum attr_id {
#define ATTR(id, text, kind) AID_##id,
#include "ir/attrs.def"
#undef ATTR
    AID_COUNT
};

/* Typed attribute handles: ATTR_AXIS is a `struct attr_i`, ATTR_STRIDE a
 * `struct attr_v`, ATTR_EPS a `struct attr_f`; the accessors below take the
 * matching one, so the kind is checked by the C compiler. */
struct attr_i {
    enum attr_id id;
}; /* one int */
struct attr_v {
    enum attr_id id;
}; /* a fixed count or a list of ints */
struct attr_f {
    enum attr_id id;
}; /* one float */
#define ATTR(id, text, kind) static const struct attr_##kind ATTR_##id = {AID_##id};
#include "ir/attrs.def"
#undef ATTR

/* One row of the op table. */
struct op_info {
    const char *name;                     /* lower-case name used in the IR text, e.g. "conv2d" */
    int arity;                            /* operands, -1 for variadic */
    enum op_kind kind;                    /* family */
    unsigned flags;                       /* OF_* */
    int nattrs;                           /* attributes in the schema */
    struct attr_desc attrs[IR_MAX_ATTRS]; /* the schema, in print order */
    signed char attr_of[AID_COUNT];       /* index into attrs[] of each attribute id, or -1 */
};

extern struct op_info op_info[OP_COUNT]; /* filled at startup from ops.def */
/* The op with this IR-text name, or -1. */
int op_lookup(const char *name);
/* The attribute of op `op` named `name`, or NULL. */
const struct attr_desc *op_attr(enum op op, const char *name);

/* Element types. */
enum dtype {
    DT_F32,  /* 32-bit float */
    DT_I32,  /* 32-bit signed int (labels, indices) */
    DT_F16,  /* reserved */
    DT_BF16, /* reserved */
    DT_I8,   /* reserved */
    DT_COUNT
};
const char *dtype_name(enum dtype t); /* "f32" */
int dtype_lookup(const char *name);   /* DT_* or -1 */
size_t dtype_size(enum dtype t);

#define IR_MAX_RANK 6
#define IR_DIM_N (-1)                   /* the symbolic batch dim, printed N */
#define IR_MAX_NUMEL ((int64_t)1 << 31) /* most elements of a tensor per batch item */

/* A tensor shape: static dims plus at most one IR_DIM_N. Rank 0 is a scalar. */
struct shape {
    int rank;                 /* number of dims */
    int64_t dim[IR_MAX_RANK]; /* sizes, or IR_DIM_N */
};

/* A tensor type. */
struct type {
    enum dtype dtype;   /* element type */
    struct shape shape; /* dims */
};

bool shape_equal(const struct shape *a, const struct shape *b);
bool shape_has_n(const struct shape *s);
/* Elements per batch item (product of the static dims). */
int64_t shape_static_numel(const struct shape *s);
/* Whether every dim is at most IR_MAX_NUMEL and so is their product (the batch
 * dim N counted as 1): the limit on every tensor of the IR. */
bool shape_numel_ok(const struct shape *s);
/* "f32[N,1,28,28]" into buf; returns buf. */
char *type_str(const struct type *t, char *buf, size_t len);
#define TYPE_STR_MAX 128

/* Where the memory plan (passes/memplan.c) puts a value or a node's scratch. */
enum mem_where {
    MEM_NONE,   /* not planned: no storage of its own (a buffer leaf, an alias, a
                   fused member kept in registers), or no plan yet */
    MEM_FIXED,  /* a slot of the workspace's fixed region, at `off` bytes */
    MEM_BATCH,  /* a slot of the per-item region (after the fixed one), at `off`
                   bytes per batch item: fixed + off * max_n */
    MEM_BUFFER, /* stored in place into module buffer `off` (a kernel output that
                   its assign writes) */
};

/* The memory plan of one node (docs/ir.md, "Memory plan"); printed after the
 * node's kernel as `mem=fixed[OFF]`, `mem=batch[OFF]`, `mem=@buffer` and
 * `scratch=fixed[OFF,FLOATS]`. Slot sizes follow from the type (rounded up to
 * IR_SLOT_ALIGN). */
struct ir_mem {
    enum mem_where where;         /* where the value lives */
    int64_t off;                  /* byte offset in its region, or the buffer index */
    enum mem_where scratch_where; /* MEM_NONE, MEM_FIXED or MEM_BATCH */
    int64_t scratch_off;          /* byte offset of the scratch in its region */
    int64_t scratch;              /* scratch floats (per batch item in MEM_BATCH) */
};

#define IR_SLOT_ALIGN 64 /* every workspace slot starts on a cache line */

/* An SSA node. Its id is its index in the function; it defines one value. */
struct ir_node {
    enum op op;               /* what it computes */
    struct type type;         /* the type of its value */
    int nargs;                /* operands in use */
    int *args;                /* operand node ids, all smaller than this id */
    int64_t ia[IR_MAX_IATTR]; /* int attribute slots, laid out by op_info[op].attrs */
    double fa[IR_MAX_FATTR];  /* float attribute slots */
    const char *sym;          /* the `s` attribute (buffer name), arena-owned, or NULL */
    struct loc loc;           /* where in the source it came from */
    int kernel;               /* 0: on its own; k > 0: member of kernel k of its function (fusion) */
    struct ir_mem mem;        /* its storage in the memory plan (all zero before memplan) */
};

/* What a named buffer of the module holds. */
enum buf_kind {
    BUF_INPUT, /* fed by the data loader each step */
    BUF_PARAM, /* trained parameter */
    BUF_STATE, /* non-trained state: optimizer moments, running statistics, counters */
};

/* How a parameter or state buffer starts. */
enum init_kind {
    INIT_ZEROS,   /* all 0 */
    INIT_CONST,   /* all a */
    INIT_UNIFORM, /* uniform in [a, b) */
    INIT_NORMAL,  /* normal with mean a, stddev b */
    INIT_RANGE,   /* 0, and 1 at the flat indices [a, b) (an LSTM's forget-gate bias) */
};

struct ir_init {
    enum init_kind kind; /* distribution */
    double a, b;         /* its parameters */
};

#define IR_MAX_KW 6

/* A data source call, e.g. idx("file.gz", scale=0.0039) or normal(0, 1). */
struct ir_source {
    const char *kind;          /* "idx", "csv", "npy", "normal", "uniform"; NULL: none */
    const char *path;          /* file, for file sources */
    int nargs;                 /* positional numbers (normal(0, 1)) */
    double args[2];            /* their values */
    int nkw;                   /* keyword options */
    const char *kw[IR_MAX_KW]; /* their names: scale, shift, column, classes; text: role, vocab, holdout,
                                  bytes, part */
    double kwval[IR_MAX_KW];   /* their values */
};

/* A named buffer: model input, parameter or state. */
struct ir_buffer {
    const char *name;      /* unique in the module, e.g. "classifier.dense0.w" */
    enum buf_kind kind;    /* input, param or state */
    struct type type;      /* dtype and shape (inputs may have N) */
    struct ir_init init;   /* params and state: initial value */
    const char *group;     /* params: the net that owns it (for `update G`), or NULL */
    struct ir_source data; /* inputs: default training source */
    struct ir_source test; /* inputs: default test source */
    struct loc loc;        /* declaration */
};

/* An optimizer and its hyper-parameters, e.g. adam(lr=0.001, beta1=0.9). */
#define IR_MAX_OPT_KW 8
struct ir_optim {
    const char *kind;              /* "sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop"; NULL: none */
    int nkw;                       /* options in use */
    const char *kw[IR_MAX_OPT_KW]; /* option names, in canonical order */
    double kwval[IR_MAX_OPT_KW];   /* option values */
    struct ir_source schedule;     /* learning-rate schedule: step(every=E, gamma=G) or
                                      cosine(t_max=T); kind NULL: constant rate */
};

/* A named result of a function. */
struct ir_output {
    const char *name; /* e.g. "logits", "loss", "accuracy", "grad.classifier.w" */
    int value;        /* node id */
};

/* How an entry point runs. */
enum func_mode {
    MODE_EVAL,  /* inference: batch norm uses running statistics, no dropout */
    MODE_TRAIN, /* a training step */
};

/* An entry point: forward (inference), train_step, or one per loss. */
struct ir_func {
    const char *name;          /* "forward", "train_step", "d_step", ... */
    enum func_mode mode;       /* eval or train */
    const char *loss;          /* train: the output that is minimized, or NULL */
    struct ir_optim optim;     /* train: the optimizer */
    const char **update;       /* train: vec of groups whose params it updates; empty: all */
    const char **steps;        /* vec: empty, or the training functions (by name, in order)
                                  that this one runs as one (passes/batch.c): a batch
                                  function, which the train loop runs instead of them */
    struct ir_node *nodes;     /* vec of nodes, in topological order */
    struct ir_output *outputs; /* vec of named results */
    struct loc loc;            /* where it was declared (for diagnostics) */
    bool planned;              /* memplan ran: nodes' mem and the workspace below are set */
    int64_t ws_fixed;          /* planned workspace: bytes that do not scale with the batch */
    int64_t ws_batch;          /* and bytes per batch item */
};

/* Training settings of the module (from the `train {}` block). */
struct ir_train {
    int64_t batch;    /* batch size, 0: unset */
    int64_t epochs;   /* epochs, 0: unset */
    int64_t seed;     /* RNG seed */
    int64_t patience; /* early stopping: epochs without test-loss improvement, 0: off */
};

/* A whole compiled model. */
struct ir_module {
    const char *name;          /* from `model NAME` */
    struct ir_train train;     /* training settings */
    struct ir_buffer *buffers; /* vec: inputs, then params, then state, in declaration order */
    struct ir_func **funcs;    /* vec of entry points */
    struct arena *arena;       /* owns every string and the module's small allocations */
};

struct ir_module *ir_module_new(const char *name);
void ir_module_free(struct ir_module *m);
/* Add a buffer (name copied). Returns its index. */
int ir_buffer_add(struct ir_module *m, enum buf_kind kind, const char *name, struct type type,
                  struct loc loc);
/* The buffer named `name`, or NULL. */
struct ir_buffer *ir_buffer_find(struct ir_module *m, const char *name);
/* Add an empty function (name copied). */
struct ir_func *ir_func_add(struct ir_module *m, const char *name, enum func_mode mode);
struct ir_func *ir_func_find(struct ir_module *m, const char *name);
int ir_func_len(const struct ir_func *f);
/* Append a node with the given operands and all attributes zero; its type is
 * unset (call ir_infer). Returns its id. Pointers into f->nodes are invalidated. */
int ir_node_add(struct ir_module *m, struct ir_func *f, enum op op, const int *args, int nargs,
                struct loc loc);
/* Append a copy of node src (op, operands, attributes, symbol, type, loc; not
 * its kernel or memory plan) to f, whose nodes src must not be in. Returns its id. */
int ir_node_copy(struct ir_module *m, struct ir_func *f, const struct ir_node *src);
void ir_output_add(struct ir_module *m, struct ir_func *f, const char *name, int value);
/* The output named `name`, or -1. */
int ir_output_find(const struct ir_func *f, const char *name);

/* Attribute access by typed id (the op must have the attribute, else internal error). */
int64_t ir_attr_i(const struct ir_node *n, struct attr_i a);
double ir_attr_f(const struct ir_node *n, struct attr_f a);
/* Pointer to the ints of a fixed-count or list attribute; *count (if not NULL)
 * receives their number. */
const int64_t *ir_attr_v(const struct ir_node *n, struct attr_v a, int *count);
void ir_attr_set_i(struct ir_node *n, struct attr_i a, int64_t v);
void ir_attr_set_f(struct ir_node *n, struct attr_f a, double v);
/* Set a fixed-count attribute (count must be its size) or a list (count <= IR_MAX_LIST). */
void ir_attr_set_v(struct ir_node *n, struct attr_v a, const int64_t *v, int count);
/* The id of the attribute written `text` of kind 'i', 'v' or 'f' (attrs.def), or
 * -1: for tables that name attributes in text (codegen/formulas.def). */
int attr_id_lookup(const char *text, char kind);
/* Set the node's symbol (the `s` attribute, a buffer name; copied into the arena). */
void ir_set_sym(struct ir_module *m, struct ir_node *n, const char *sym);

/* Remove nodes not reachable from outputs or effects, renumbering the rest in order.
 * Returns the number of nodes removed. */
int ir_func_dce(struct ir_func *f);
/* Deep copy of a function (nodes and outputs) under a new name. */
struct ir_func *ir_func_clone(struct ir_module *m, const struct ir_func *f, const char *name);

/* --------------------------------------------------------------- shape.c */

/* Infer the type of node `id` from its operands and attributes by the op's shape
 * rule and store it. INPUT/PARAM take their buffer's type; CONST, RESHAPE and
 * BROADCAST_TO keep the type already set on the node. On a user error (shapes that
 * disagree) it returns false and writes a message naming both shapes into err. */
bool ir_infer(struct ir_module *m, struct ir_func *f, int id, char *err, size_t errlen);

/* The recurrent ops' cells and layouts, in units of the hidden size H (docs/ir.md,
 * "Recurrent ops"): gates per step, the width of a step's row of RNN's value
 * (state, then gates), of the state s0 (h, and c for LSTM) and of a step's row
 * of RNN_BPTT's value (gate gradients, then the gradient of the state before). */
enum { IR_RNN_LSTM, IR_RNN_GRU, IR_RNN_TANH, IR_RNN_RELU, IR_RNN_SIGMOID, IR_RNN_CELLS };
static inline int ir_rnn_gates(int cell) { return cell == IR_RNN_LSTM ? 4 : cell == IR_RNN_GRU ? 3 : 1; }
static inline int ir_rnn_row(int cell) { return cell == IR_RNN_LSTM ? 6 : cell == IR_RNN_GRU ? 7 : 1; }
static inline int ir_rnn_state(int cell) { return cell == IR_RNN_LSTM ? 2 : 1; }
static inline int ir_rnn_grad_row(int cell) { return cell == IR_RNN_LSTM ? 6 : cell == IR_RNN_GRU ? 7 : 2; }

/* --------------------------------------------------------------- build.c */

/* A builder appends typed nodes to function f of module m (autodiff, the
 * optimizer lowering and the frontend's lowering build through it). Every node
 * gets `loc`. A node its shape rule rejects is reported through `fail` (whose
 * result is returned: -1 for a user error) or, without one, is an internal error
 * naming `who`, since a pass builds only well-typed nodes. */
struct ir_build {
    struct ir_module *m; /* the module (buffers, arena) */
    struct ir_func *f;   /* the function extended */
    struct loc loc;      /* given to new nodes */
    int added;           /* nodes appended */
    const char *who;     /* the builder, in internal errors ("autodiff") */
    int (*fail)(struct ir_build *b, int id, const char *err); /* user errors, or NULL */
    void *ctx;                                                /* for fail */
};
/* Append a node (attributes zero, type unset); set its attributes or a preset
 * type, then ir_build_fin types it by its shape rule: id, or fail's result. */
int ir_build_add(struct ir_build *b, enum op op, const int *args, int nargs);
int ir_build_fin(struct ir_build *b, int id);
/* A typed node of op over args (-1 when an operand is -1). */
int ir_build_op(struct ir_build *b, enum op op, const int *args, int nargs);
int ir_build_op1(struct ir_build *b, enum op op, int a);
int ir_build_op2(struct ir_build *b, enum op op, int a, int c);
int ir_build_op3(struct ir_build *b, enum op op, int a, int c, int d);
/* A scalar constant. */
int ir_build_const(struct ir_build *b, double v, enum dtype dt);
/* A unary op whose type is given (RESHAPE, BROADCAST_TO, SUM_TO), always a new node. */
int ir_build_typed(struct ir_build *b, enum op op, int a, struct type t);
/* `size` rows of a from `start` along axis. */
int ir_build_slice(struct ir_build *b, int a, int64_t axis, int64_t start, int64_t size);

/* --------------------------------------------------------------- print.c */

/* Print the module in the IR text form (parseable by ir_parse). */
void ir_print(FILE *out, const struct ir_module *m);
void ir_print_func(FILE *out, const struct ir_module *m, const struct ir_func *f);
/* Whether nodes print their `loc("file":line:col)` (off by default; --print-loc). */
void ir_print_set_locs(bool on);

/* --------------------------------------------------------------- parse.c */

/* Parse IR text. On error reports through diag_error (file:line:col) and returns
 * NULL. `file` names the text in messages. */
struct ir_module *ir_parse(const char *file, const char *text, size_t len);

/* -------------------------------------------------------------- verify.c */

/* Check every invariant of the module: operand ids in range and before their user,
 * arity, attribute values, types equal to what the shape rules give, symbols that
 * name existing buffers of the right type, unique names, kernels that can be fused
 * (docs/ir.md, "Kernels"), a memory plan inside its workspace (docs/ir.md,
 * "Memory plan"). Reports each problem with
 * diag_error at the node's loc, prefixed by the function and value. Returns true
 * when the module is valid. */
bool ir_verify(struct ir_module *m);
/* Which ops a kernel may hold: its one head (matmul, conv2d), computed first into
 * the kernel's result, and elementwise members (OK_EWISE but cast, stop_gradient;
 * batchnorm, elementwise given its per-channel statistics). */
bool ir_kernel_head_op(enum op op);
bool ir_kernel_ewise_op(enum op op);
/* Whether n may close a kernel with a conv2d head as its root: a 2x2 stride-2
 * unpadded max pool of a member (the pooled result is all the kernel stores;
 * targets that emit it set pass_target.fuse_pool). */
bool ir_kernel_pool_op(const struct ir_node *n);

/* ----------------------------------------------------------------- dot.c */

/* Which parts of a training function a node belongs to (ir_dot_phases). */
enum ir_phase {
    PHASE_FORWARD = 1,   /* the forward pass: what the outputs and state updates read */
    PHASE_BACKWARD = 2,  /* gradients */
    PHASE_OPTIMIZER = 4, /* parameter and optimizer-state updates */
};

/* What the DOT printer shows. */
struct ir_dot_options {
    unsigned phases;  /* PHASE_* bits to draw; 0: all */
    const char *func; /* only the function of this name; NULL: all */
    bool expand;      /* draw every optimizer node instead of one box per parameter */
};

/* Graphviz DOT: a cluster per function, per phase of a training function
 * (forward, backward, optimizer), per net and per layer (the .net source line
 * the nodes come from, labelled with its text); one box per node labelled with
 * op, operands (scalar constants inlined), type and attributes; the optimizer
 * updates of each parameter collapsed into one box. */
void ir_print_dot(FILE *out, const struct ir_module *m);
void ir_print_dot_opts(FILE *out, const struct ir_module *m, const struct ir_dot_options *o);
/* The phase (PHASE_*) of every node of f into ph[ir_func_len(f)]: all forward
 * in an eval function. */
void ir_dot_phases(const struct ir_func *f, unsigned char *ph);

#endif
