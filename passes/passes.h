/* passes/passes.h -- the one internal header of passes/: the pass registry built
 * from passes.def, the pass manager (run a pipeline, verify and dump after each
 * pass), and each pass's entry point. Sections follow the files. */
#ifndef NETC_PASSES_H
#define NETC_PASSES_H

#include "ir/ir.h"

/* ------------------------------------------------------------ manager.c */

/* A pass rewrites the module in place. Returns -1 on a user error (reported with
 * diag_error), else the number of changes it made (0: nothing changed). */
typedef int (*pass_fn)(struct ir_module *m);

/* One row of the registry. */
struct pass_info {
    const char *name; /* as given to --pass and --after */
    pass_fn run;      /* entry point */
    int in_pipeline;  /* part of the default pipeline */
    const char *help; /* one line for --help */
};

extern const struct pass_info pass_table[];
extern const int pass_count;
/* The pass named `name`, or NULL. */
const struct pass_info *pass_find(const char *name);

/* How the manager runs a list of passes. */
struct pass_options {
    bool verify;       /* run ir_verify after every pass (always on in debug builds) */
    const char *after; /* print the IR after this pass, "all" for every pass, or NULL */
    bool only_changed; /* with `after`: print only when the pass changed something */
    bool dot;          /* print Graphviz DOT instead of IR text */
    FILE *out;         /* where dumps go */
};

/* Run the passes (NULL-terminated list of names, already checked with pass_find).
 * A pass that changes a planned module drops its memory plan (docs/ir.md).
 * Returns false after a user error or a verifier failure (reported). A verifier
 * failure after a pass is a compiler bug: it prints the pass and the IR and exits 70. */
bool pass_run_list(struct ir_module *m, const char *const *names, const struct pass_options *opt);
/* The default pipeline, NULL-terminated. */
const char *const *pass_pipeline(void);
/* The default pipeline without the passes named in `skip`, comma-separated
 * (NULL: nothing skipped); used for --no-fuse (PASS_NO_FUSE). */
const char *const *pass_pipeline_except(const char *skip);
/* What --no-fuse skips: kernel formation and the rewrites that serve it (the
 * masks that read activations pay off when a kernel holds the activation). */
#define PASS_NO_FUSE "simplify,fuse"
/* Print the banner and the IR (or DOT) for pass `name`. */
void pass_dump(FILE *out, const struct ir_module *m, const char *name, bool dot);

/* What the passes that plan for a backend (fuse, memplan) ask of it: one value
 * per backend, which codegen/ defines and its struct cg_target points to. */
struct pass_target {
    const char *name;      /* the backend, as given to --target */
    int fuse_max_inputs;   /* distinct values from outside a kernel its members read */
    int fuse_max_outputs;  /* values one kernel stores, its root included */
    int fuse_max_arrays;   /* arrays one kernel's loop nest reads: values from
                              outside and its head, counted once per way of
                              reading them (whole, or per channel of an axis) */
    bool fuse_batchnorm;   /* whether batchnorm may be a member of a kernel */
    bool fuse_pool;        /* whether a 2x2 max pool may close a conv2d kernel
                              (ir_kernel_pool_op): the kernel stores the pooled
                              result only */
    bool fuse_gemm_update; /* whether the matmul of a weight gradient may head
                              the kernel of its Adam update (pass_gemm_adam):
                              the backend fuses the update into the GEMM */
    /* Whether simplify may fold max pooling gradient pg into conv weight
     * gradient gw, its only reader (conv2d_grad_weight_maxpool): where the
     * backend's kernel for the fused op is faster than the two it replaces.
     * NULL: never. */
    bool (*pool_grad_weight)(const struct ir_func *f, const struct ir_node *gw, const struct ir_node *pg);
    /* Scratch floats node n needs besides its value; *per_n tells whether the
     * count is per batch item. */
    int64_t (*scratch)(const struct ir_func *f, const struct ir_node *n, bool *per_n);
};

/* The backend fuse and memplan plan for (set by the driver from --target;
 * NULL: pass_target_default). */
extern const struct pass_target *pass_target;
/* Fusion limits of the C backend and no scratch: for planning IR that no
 * backend will emit (unit tests of the passes). */
extern const struct pass_target pass_target_default;
/* pass_target, or the default when it is unset. */
const struct pass_target *pass_target_get(void);

/* ------------------------------------------------ shape.c, dce.c, cse.c */

int pass_shape(struct ir_module *m);
int pass_dce(struct ir_module *m);
int pass_cse(struct ir_module *m);

/* ----------------------------------------------------------- simplify.c */

/* Algebraic rewrites that keep every value's meaning (docs/ir.md, "Passes"):
 * backward masks read the activation instead of its input, and a mask after a
 * max pooling gradient moves before it, onto the pooled tensor. Returns the
 * rewrites made. */
int pass_simplify(struct ir_module *m);

/* A gemm-update kernel (fuse.c): a matmul head g and exactly Adam's update
 * of one parameter from it, optim.c's sequence (passes/optim.c):
 *     g' = g + wd*w (Adam's L2, or g' = g)
 *     m' = b1*m + c1*g',  v' = b2*v + c2*(g'*g')
 *     w' = base - step * (m' / (sqrt(v') / bc2 + eps)),  base = w*decay or w
 * with the scalars f32[] values from outside, m, v and w arrays of the root's
 * shape from outside (not read by the head), m' and v' stored (assigned) and
 * nothing else used outside. The backend computes it whole (the gradient
 * never stored as a value; the head's scratch, as many floats as its value,
 * where the GEMM cannot hold it). Node ids; decay and wd -1 when absent. */
struct pass_gemm_adam {
    int head;                                      /* the matmul */
    int m_old, v_old, w_old;                       /* arrays read */
    int m_new, v_new, w_new;                       /* members stored (w_new the root) */
    int b1, c1, b2, c2, bc2, eps, step, decay, wd; /* scalars */
};
/* Whether kernel k of f is a gemm-update kernel; fills *u then (u may be NULL). */
bool pass_gemm_adam(const struct ir_func *f, int k, struct pass_gemm_adam *u);

/* ------------------------------------------------------------ memplan.c */

/* The memory plan of every function (docs/ir.md, "Memory plan"): where each
 * value lives (ir_node.mem) and the workspace it needs (ir_func.ws_fixed,
 * ws_batch). Values that need storage get slots in two regions of one
 * workspace, fixed-size and per batch item, reused first-fit by liveness; a
 * kernel's members other than its outputs live in registers; kernel outputs
 * assigned to a buffer are stored straight into it when that is safe; gradient
 * buckets come first. Runs after fuse; returns the functions planned. */
int pass_memplan(struct ir_module *m);
/* Whether node n shares the storage of its operand 0 (reshape, stop_gradient,
 * assign, an allreduce in a bucket) instead of having storage of its own. */
bool pass_memplan_aliases(const struct ir_node *n);
/* Liveness as the plan sees it: per node, the last node that reads it (a fused
 * member reads at its kernel's root; INT_MAX: an output or assigned, or read
 * through an alias that is) and its readers, outputs included. */
void pass_memplan_live(const struct ir_func *f, int *last_use, int *uses);

/* ----------------------------------------------------------- autodiff.c */

/* Reverse-mode AD of every training function with a loss: appends the backward
 * graph and a `grad.<param>` output per parameter of its update groups (all
 * parameters when the list is empty) that the loss reaches. */
int pass_autodiff(struct ir_module *m);
/* The same for one function; with `inputs`, also `grad.<input>` for every f32
 * model input the loss reaches (gradient checks, saliency). Does nothing to a
 * function already differentiated (grad.* outputs, or ASSIGNs to parameters after
 * optimizer lowering). Returns the nodes added. */
int pass_autodiff_func(struct ir_module *m, struct ir_func *f, bool inputs);

/* --------------------------------------------------------------- fuse.c */

/* Group each function's nodes into kernels (docs/ir.md, "Kernels"): elementwise
 * chains and trees whose intermediates have one use, with a matmul or conv2d
 * producer as head (bias and activation epilogues). Returns the kernels formed. */
int pass_fuse(struct ir_module *m);

/* -------------------------------------------------------------- optim.c */

/* Lower each training function's optimizer (sgd, adam, adamw, rmsprop) into update
 * ops: state buffers `<func>.lr`, `<func>.step`, `<func>.<opt>.<slot>.<param>`,
 * ASSIGNs of the new parameter and state values; drops the `grad.<param>`
 * outputs. The driver's contract (who writes `<func>.lr`) is at the top of optim.c. */
int pass_optim(struct ir_module *m);

/* -------------------------------------------------------------- batch.c */

/* Where the module has several training functions (each with a loss), append
 * `train_batch`, a batch function (steps=[...]) that runs them in order as one:
 * a later step reads what earlier ones assigned, reads of the same input or
 * untouched buffer are one node (so cse merges what the steps share), and its
 * outputs are the steps' losses in order, then the first step's metrics, each
 * named "<step>.<name>". Nothing when there is a batch function already. */
int pass_batch(struct ir_module *m);

/* ----------------------------------------------------------------- dp.c */

/* Data parallelism over MPI (`netc build --mpi`): ALLREDUCE ops, the mean over
 * the ranks weighted by each rank's share of the step's items. */
struct pass_dp_options {
    size_t bucket_bytes;       /* a gradient bucket closes before it would pass this;
                                  0: a quarter of the function's gradient bytes,
                                  clamped to 64 KiB .. 4 MiB */
    size_t first_bucket_bytes; /* the same for the first bucket (started soonest) */
};
extern struct pass_dp_options pass_dp_options; /* 0 (by the model), 1 MiB */
/* Before autodiff: training batch norms normalise with the statistics of the
 * global batch (mean and variance reduced over the ranks). */
int pass_syncbn(struct ir_module *m);
/* After autodiff, before optim: every grad.<param> output becomes
 * ALLREDUCE(g) {bucket=B}, B numbering buckets in the order the backward pass
 * fills them (-1: reduced alone, blocking, when g cannot be reduced in place). */
int pass_buckets(struct ir_module *m);
/* The default pipeline without the passes in `skip` (as pass_pipeline_except),
 * with syncbn before autodiff when sync_bn and buckets after it when mpi. */
const char *const *pass_pipeline_dp(const char *skip, bool mpi, bool sync_bn);

#endif
