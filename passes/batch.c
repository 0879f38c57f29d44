/* passes/batch.c -- the batch function. A module with several training
 * functions (a GAN's D and G steps) has the train loop run every one of them on
 * each batch, in order, on the same inputs (data and noise are drawn once a
 * batch). This pass appends one function, `train_batch`, that does the same as
 * one: each step's nodes in turn, where
 * - a read of a buffer that an earlier step assigns reads the value that step
 *   assigned (a later step sees the parameters and statistics the earlier one
 *   updated, as when they run apart);
 * - reads of an input, or of a buffer no earlier step assigns, are one node;
 * - an assign that a later step's assign to the same buffer supersedes is
 *   dropped (its value still feeds the later one: batch-norm running
 *   statistics that both steps update).
 * cse then computes once what the steps share: G's forward pass, which D's step
 * runs on the batch's noise and G's step runs again on the same noise with the
 * same parameters. Outputs: each step's loss, in step order, named
 * "<step>.<loss>", then the first step's metrics, "<step>.<name>" (what the
 * train loop reads; the other steps' metrics are left to them). The gradient
 * buckets of a data-parallel build (ALLREDUCE) are renumbered after the earlier
 * steps'. The train loop runs the batch function where the model has one
 * (runtime/driver.c; NETC_TRAIN_BATCH=0 runs the steps apart). */
#include "passes/passes.h"

#define BATCH_NAME "train_batch"

/* The index of the module buffer named by leaf or assign n. */
static int buffer_of(struct ir_module *m, const struct ir_node *n) {
    const struct ir_buffer *b = ir_buffer_find(m, n->sym);
    if (!b) NETC_INTERNAL("%s of unknown buffer '%s'", op_info[n->op].name, n->sym);
    return (int)(b - m->buffers);
}

/* Append a copy of node n of a step to the batch function, its operands
 * renamed by map; returns its id. */
static int copy_node(struct ir_module *m, struct ir_func *b, const struct ir_node *n, const int *map) {
    int id = ir_node_copy(m, b, n);
    struct ir_node *d = &b->nodes[id];
    for (int i = 0; i < d->nargs; i++) d->args[i] = map[d->args[i]];
    return id;
}

/* Append step f (the k-th) to b. leaf[i]: b's read of buffer i at the start
 * (-1: none yet); val[i]: the value an earlier step assigned to it (-1: none);
 * last[i]: the last step that assigns it. *bucket: the buckets numbered so far. */
static void append_step(struct ir_module *m, struct ir_func *b, const struct ir_func *f, int k, int *leaf,
                        int *val, const int *last, int64_t *bucket) {
    int len = ir_func_len(f);
    int *map = malloc(sizeof *map * (size_t)(len ? len : 1));
    int *assigned = NULL; /* buffer, value pairs of this step's assigns */
    if (!map) netc_internal_error(__FILE__, __LINE__, "out of memory");
    int64_t buckets = 0;
    for (int id = 0; id < len; id++) {
        const struct ir_node *n = &f->nodes[id];
        if (n->op == OP_INPUT || n->op == OP_PARAM) {
            int i = buffer_of(m, n);
            if (val[i] < 0 && leaf[i] < 0) leaf[i] = copy_node(m, b, n, map);
            map[id] = val[i] >= 0 ? val[i] : leaf[i];
            continue;
        }
        if (n->op == OP_ASSIGN) {
            int i = buffer_of(m, n);
            vec_push(assigned, i);
            vec_push(assigned, map[n->args[0]]);
            map[id] = last[i] == k ? copy_node(m, b, n, map) : map[n->args[0]];
            continue;
        }
        map[id] = copy_node(m, b, n, map);
        if (n->op == OP_ALLREDUCE) {
            struct ir_node *d = &b->nodes[map[id]];
            int64_t own = ir_attr_i(d, ATTR_BUCKET); /* -1: reduced alone */
            if (own + 1 > buckets) buckets = own + 1;
            if (own >= 0) ir_attr_set_i(d, ATTR_BUCKET, *bucket + own);
        }
    }
    /* Later steps read what this one assigned (its own reads saw the values at
     * its start). */
    for (size_t j = 0; j < vec_len(assigned); j += 2) val[assigned[j]] = assigned[j + 1];
    *bucket += buckets;
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        char *name = arena_printf(m->arena, "%s.%s", f->name, f->outputs[o].name);
        ir_output_add(m, b, name, map[f->outputs[o].value]);
    }
    vec_free(assigned);
    free(map);
}

int pass_batch(struct ir_module *m) {
    struct ir_func **steps = NULL;
    for (size_t e = 0; e < vec_len(m->funcs); e++) {
        struct ir_func *f = m->funcs[e];
        if (vec_len(f->steps)) { /* there is one already (IR text) */
            vec_free(steps);
            return 0;
        }
        if (f->mode == MODE_TRAIN && f->loss) vec_push(steps, f);
    }
    size_t ns = vec_len(steps), nb = vec_len(m->buffers);
    if (ns < 2 || ir_func_find(m, BATCH_NAME)) {
        vec_free(steps);
        return 0;
    }
    int *leaf = malloc(sizeof *leaf * (nb + 1)), *val = malloc(sizeof *val * (nb + 1));
    int *last = malloc(sizeof *last * (nb + 1));
    if (!leaf || !val || !last) netc_internal_error(__FILE__, __LINE__, "out of memory");
    for (size_t i = 0; i < nb; i++) leaf[i] = val[i] = last[i] = -1;
    for (size_t k = 0; k < ns; k++)
        for (int id = 0; id < ir_func_len(steps[k]); id++)
            if (steps[k]->nodes[id].op == OP_ASSIGN) last[buffer_of(m, &steps[k]->nodes[id])] = (int)k;
    struct ir_func *b = ir_func_add(m, BATCH_NAME, MODE_TRAIN);
    b->loc = steps[0]->loc;
    int64_t bucket = 0;
    for (size_t k = 0; k < ns; k++) {
        vec_push(b->steps, steps[k]->name);
        append_step(m, b, steps[k], (int)k, leaf, val, last, &bucket);
    }
    /* The losses first, in step order: the train loop reads output k as step
     * k's loss; then the first step's metrics, which it shows. */
    struct ir_output *outs = b->outputs;
    b->outputs = NULL;
    size_t at = 0;
    for (size_t k = 0; k < ns; k++) {
        size_t n = vec_len(steps[k]->outputs);
        int lo = ir_output_find(steps[k], steps[k]->loss);
        if (lo < 0) NETC_INTERNAL("@%s has no output '%s'", steps[k]->name, steps[k]->loss);
        vec_push(b->outputs, outs[at + (size_t)lo]);
        at += n;
    }
    int lo = ir_output_find(steps[0], steps[0]->loss);
    for (size_t o = 0; o < vec_len(steps[0]->outputs); o++)
        if ((int)o != lo) vec_push(b->outputs, outs[o]);
    vec_free(outs);
    free(leaf);
    free(val);
    free(last);
    vec_free(steps);
    return ir_func_len(b);
}
