/* passes/dp.c -- data parallelism (`netc build --mpi`): two passes that put
 * ALLREDUCE ops (the mean over the ranks of an MPI job, each weighted by its
 * share of the step's items; the identity in one process) into training
 * functions. `syncbn` (before autodiff, with --sync-bn) makes batch norm use the
 * statistics of the whole global batch and its item count, as PyTorch's
 * SyncBatchNorm (ALLREDUCE_SUM: the job's count for running_var); autodiff
 * then differentiates through the reductions. `buckets` (after autodiff, before
 * optim) reduces every `grad.<param>` output, grouping the gradients into
 * buckets in the order the backward pass produces them; the memory plan
 * (codegen/c_emit.c) gives each bucket one contiguous block so that it is
 * reduced in place, and the generated code starts a bucket's nonblocking
 * reduction as soon as its last gradient is written. */
#include "passes/passes.h"

#include <string.h>

struct pass_dp_options pass_dp_options = {0, 1u << 20};

/* ------------------------------------------------------------- helpers */

/* Appends ALLREDUCE(x) {bucket=b} to f; returns its id. */
static int allreduce(struct ir_module *m, struct ir_func *f, int x, int64_t b) {
    int id = ir_node_add(m, f, OP_ALLREDUCE, &x, 1, f->nodes[x].loc);
    ir_attr_set_i(&f->nodes[id], ATTR_BUCKET, b);
    f->nodes[id].type = f->nodes[x].type;
    return id;
}

static int binary(struct ir_module *m, struct ir_func *f, enum op op, int a, int b) {
    int args[2] = {a, b};
    int id = ir_node_add(m, f, op, args, 2, f->nodes[a].loc);
    char err[256];
    if (!ir_infer(m, f, id, err, sizeof err)) netc_internal_error(__FILE__, __LINE__, "syncbn: %s", err);
    return id;
}

static int uses_of(const struct ir_func *f, int x) {
    int k = 0;
    for (int i = 0; i < ir_func_len(f); i++)
        for (int a = 0; a < f->nodes[i].nargs; a++) k += f->nodes[i].args[a] == x;
    for (size_t o = 0; o < vec_len(f->outputs); o++) k += f->outputs[o].value == x;
    return k;
}

/* -------------------------------------------------------------- syncbn */

/* The batch norms of f whose statistics are MEAN and VARIANCE of their input. */
static bool is_train_bn(const struct ir_func *f, const struct ir_node *n) {
    if (n->op != OP_BATCHNORM) return false;
    const struct ir_node *mean = &f->nodes[n->args[3]], *var = &f->nodes[n->args[4]];
    return mean->op == OP_MEAN && var->op == OP_VARIANCE && mean->args[0] == n->args[0] &&
           var->args[0] == n->args[0];
}

static bool is_scalar(const struct ir_node *n) {
    return n->type.dtype == DT_F32 && !shape_has_n(&n->type.shape) && shape_static_numel(&n->type.shape) == 1;
}

/* Whether x is the frontend's count of the batch's items: the SUM of a
 * constant f32[N] (frontend/lower_layers.c, unbiased_var). */
static bool is_batch_count(const struct ir_func *f, int x) {
    const struct ir_node *n = &f->nodes[x];
    if (n->op != OP_SUM || !is_scalar(n)) return false;
    const struct ir_node *c = &f->nodes[n->args[0]];
    return c->op == OP_CONST && c->type.shape.rank == 1 && c->type.shape.dim[0] == IR_DIM_N;
}

/* Marks the batch counts in the scalar expression x (running_var's unbiased
 * factor n/max(n-1, 1), n = count * values per channel). */
static void mark_counts(const struct ir_func *f, int x, int depth, bool *counts) {
    const struct ir_node *n = &f->nodes[x];
    if (depth > 8 || !is_scalar(n)) return;
    if (is_batch_count(f, x)) {
        counts[x] = true;
        return;
    }
    for (int a = 0; a < n->nargs; a++) mark_counts(f, n->args[a], depth + 1, counts);
}

/* Rebuilds f with, after the later of each training batch norm's mean m and
 * variance v, the job's statistics (exact for any split of the items):
 *     gm = allreduce(m)    gv = allreduce(v + (m - gm)^2)
 * and every later use of m and v (the normalisation, the running statistics)
 * reading gm and gv instead; and the item count n of the unbiased factor that
 * scales v into running_var (a product v * factor) the job's count,
 * allreduce_sum(n), as SyncBatchNorm. Returns the batch norms rewritten. */
static int syncbn_func(struct ir_module *m, struct ir_func *f) {
    int len = ir_func_len(f), count = 0;
    int *after = malloc(sizeof *after * (size_t)(len + 1)); /* per node: a bn whose stats end here, or -1 */
    int *map = malloc(sizeof *map * (size_t)(len + 1));
    bool *counts = calloc((size_t)(len + 1), sizeof *counts); /* per node: a batch count to make global */
    if (!after || !map || !counts) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (int i = 0; i < len; i++) after[i] = -1;
    for (int i = 0; i < len; i++) {
        const struct ir_node *n = &f->nodes[i];
        if (!is_train_bn(f, n)) continue;
        int at = n->args[3] > n->args[4] ? n->args[3] : n->args[4];
        if (after[at] < 0) after[at] = i, count++;
        for (int u = 0; u < len; u++) { /* the products v * factor */
            const struct ir_node *p = &f->nodes[u];
            if (p->op != OP_MUL) continue;
            for (int a = 0; a < 2; a++)
                if (p->args[a] == n->args[4]) mark_counts(f, p->args[1 - a], 0, counts);
        }
    }
    if (!count) {
        free(after);
        free(map);
        free(counts);
        return 0;
    }
    struct ir_node *old = f->nodes;
    f->nodes = NULL;
    for (int i = 0; i < len; i++) {
        struct ir_node *o = &old[i];
        for (int a = 0; a < o->nargs; a++) o->args[a] = map[o->args[a]];
        int id = ir_node_copy(m, f, o);
        f->nodes[id].kernel = o->kernel;
        free(o->args);
        map[i] = id;
        if (counts[i]) {
            int all = ir_node_add(m, f, OP_ALLREDUCE_SUM, &id, 1, o->loc);
            f->nodes[all].type = f->nodes[id].type;
            map[i] = all;
        }
        if (after[i] < 0) continue;
        const struct ir_node *bn = &old[after[i]];
        int mean = map[bn->args[3]], var = map[bn->args[4]];
        int gm = allreduce(m, f, mean, -1);
        int d = binary(m, f, OP_SUB, mean, gm);
        int t = binary(m, f, OP_ADD, var, binary(m, f, OP_MUL, d, d));
        int gv = allreduce(m, f, t, -1);
        map[bn->args[3]] = gm;
        map[bn->args[4]] = gv;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) f->outputs[o].value = map[f->outputs[o].value];
    vec_free(old);
    free(after);
    free(map);
    free(counts);
    return count;
}

int pass_syncbn(struct ir_module *m) {
    int changes = 0;
    for (size_t i = 0; i < vec_len(m->funcs); i++)
        if (m->funcs[i]->mode == MODE_TRAIN) changes += syncbn_func(m, m->funcs[i]);
    return changes;
}

/* ------------------------------------------------------------- buckets */

/* Whether gradient value g can be reduced in place in a bucket: computed into
 * a slot of its own (no leaf, alias or buffer) and read by nothing but its
 * output. Others are reduced by a blocking ALLREDUCE into a copy. */
static bool bucketable(const struct ir_func *f, int g) {
    const struct ir_node *n = &f->nodes[g];
    switch (n->op) {
    case OP_INPUT:
    case OP_PARAM:
    case OP_CONST:
    case OP_ASSIGN:
    case OP_RESHAPE:
    case OP_STOP_GRADIENT:
    case OP_ALLREDUCE:
        return false;
    default:
        break;
    }
    return n->type.dtype == DT_F32 && !shape_has_n(&n->type.shape) && uses_of(f, g) == 1;
}

static size_t padded_bytes(const struct ir_node *n) {
    size_t b = (size_t)shape_static_numel(&n->type.shape) * dtype_size(n->type.dtype);
    return (b + 63) / 64 * 64;
}

/* The default bucket size for gradients of `total` bytes: a quarter of them,
 * so that a model of a few MB still gets several buckets and the first ones
 * are reduced during the rest of the backward pass (DDP's fixed 4 MiB would
 * put every example's gradients into one bucket, started only at the end);
 * at least 64 KiB (fewer, larger messages for tiny models), at most 4 MiB. */
static size_t default_bucket_bytes(size_t total) {
    size_t b = total / 4;
    return b < (64u << 10) ? 64u << 10 : b > (4u << 20) ? 4u << 20 : b;
}

static int buckets_func(struct ir_module *m, struct ir_func *f) {
    size_t no = vec_len(f->outputs);
    int *grads = NULL; /* output indices of grad.*, by producing node */
    for (size_t o = 0; o < no; o++)
        if (strncmp(f->outputs[o].name, "grad.", 5) == 0) vec_push(grads, (int)o);
    size_t ng = vec_len(grads);
    for (size_t i = 1; i < ng; i++) /* insertion sort by node id: the order of production */
        for (size_t j = i; j > 0 && f->outputs[grads[j]].value < f->outputs[grads[j - 1]].value; j--) {
            int t = grads[j];
            grads[j] = grads[j - 1], grads[j - 1] = t;
        }
    size_t total = 0, size = pass_dp_options.bucket_bytes;
    for (size_t i = 0; i < ng; i++)
        if (bucketable(f, f->outputs[grads[i]].value))
            total += padded_bytes(&f->nodes[f->outputs[grads[i]].value]);
    if (!size) size = default_bucket_bytes(total);
    int64_t bucket = -1;
    size_t fill = 0, cap = 0;
    for (size_t i = 0; i < ng; i++) {
        int g = f->outputs[grads[i]].value;
        int64_t b = -1;
        if (bucketable(f, g)) {
            size_t sz = padded_bytes(&f->nodes[g]);
            if (bucket < 0 || fill + sz > cap) {
                bucket++;
                fill = 0;
                cap = size;
                if (bucket == 0 && pass_dp_options.first_bucket_bytes < cap)
                    cap = pass_dp_options.first_bucket_bytes;
            }
            fill += sz;
            b = bucket;
        }
        f->outputs[grads[i]].value = allreduce(m, f, g, b);
    }
    vec_free(grads);
    return (int)ng;
}

int pass_buckets(struct ir_module *m) {
    int changes = 0;
    for (size_t i = 0; i < vec_len(m->funcs); i++)
        if (m->funcs[i]->mode == MODE_TRAIN) changes += buckets_func(m, m->funcs[i]);
    return changes;
}

/* ------------------------------------------------------------ pipeline */

const char *const *pass_pipeline_dp(const char *skip, bool mpi, bool sync_bn) {
    static const char *names[64];
    const char *const *base = pass_pipeline_except(skip);
    int k = 0;
    for (int i = 0; base[i] && k < 60; i++) {
        if (sync_bn && strcmp(base[i], "autodiff") == 0) names[k++] = "syncbn";
        names[k++] = base[i];
        if (mpi && strcmp(base[i], "autodiff") == 0) names[k++] = "buckets";
    }
    names[k] = NULL;
    return names;
}
