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
    const char *name;  /* as given to --pass and --after */
    pass_fn run;       /* entry point */
    int in_pipeline;   /* part of the default pipeline */
    const char *help;  /* one line for --help */
};

extern const struct pass_info pass_table[];
extern const int pass_count;
/* The pass named `name`, or NULL. */
const struct pass_info *pass_find(const char *name);

/* How the manager runs a list of passes. */
struct pass_options {
    bool verify;          /* run ir_verify after every pass (always on in debug builds) */
    const char *after;    /* print the IR after this pass, "all" for every pass, or NULL */
    bool only_changed;    /* with `after`: print only when the pass changed something */
    bool dot;             /* print Graphviz DOT instead of IR text */
    FILE *out;            /* where dumps go */
};

/* Run the passes (NULL-terminated list of names, already checked with pass_find).
 * Returns false after a user error or a verifier failure (reported). A verifier
 * failure after a pass is a compiler bug: it prints the pass and the IR and exits 70. */
bool pass_run_list(struct ir_module *m, const char *const *names, const struct pass_options *opt);
/* The default pipeline, NULL-terminated. */
const char *const *pass_pipeline(void);
/* The default pipeline without the pass named `skip` (NULL: nothing skipped);
 * used for --no-fuse. */
const char *const *pass_pipeline_except(const char *skip);
/* Print the banner and the IR (or DOT) for pass `name`. */
void pass_dump(FILE *out, const struct ir_module *m, const char *name, bool dot);

/* -------------------------------------------------------------- passes */

int pass_shape(struct ir_module *m);
int pass_dce(struct ir_module *m);
int pass_cse(struct ir_module *m);

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
/* The default pipeline without `skip`, with syncbn before autodiff when sync_bn
 * and buckets after it when mpi. */
const char *const *pass_pipeline_dp(const char *skip, bool mpi, bool sync_bn);

#endif
