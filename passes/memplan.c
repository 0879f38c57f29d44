/* passes/memplan.c -- the memory plan: where every value of each function lives
 * in the one workspace a program allocates (docs/ir.md, "Memory plan"). Kernels
 * come from fuse (`kernel=K`); per function, in node order: gradient buckets
 * first, then a slot per stored value in the fixed or the per-item region, taken
 * first-fit from the blocks freed by values past their last reader; an op's
 * scratch is taken and given back at its node. The result is printed in the IR
 * (`mem=`, `scratch=`, `workspace=`) and read by every backend and by `netc build`. */
#include "passes/passes.h"

#include <limits.h>
#include <string.h>

/* --------------------------------------------------------------- target */

/* The default folds every pooling gradient it can, so the passes' tests see
 * the rewrite whatever the runtime's kernels. */
static bool pool_grad_weight_any(const struct ir_func *f, const struct ir_node *gw,
                                 const struct ir_node *pg) {
    (void)f, (void)gw, (void)pg;
    return true;
}

const struct pass_target pass_target_default = {.name = "default",
                                                .fuse_max_inputs = 12,
                                                .fuse_max_outputs = 4,
                                                .fuse_max_arrays = 15,
                                                .fuse_batchnorm = true,
                                                .pool_grad_weight = pool_grad_weight_any,
                                                .scratch = NULL};
const struct pass_target *pass_target;

const struct pass_target *pass_target_get(void) { return pass_target ? pass_target : &pass_target_default; }

/* -------------------------------------------------------------- kernels */

bool pass_memplan_aliases(const struct ir_node *n) {
    switch (n->op) {
    case OP_RESHAPE:
    case OP_STOP_GRADIENT:
    case OP_ASSIGN:
        return true;
    case OP_ALLREDUCE:
        return ir_attr_i(n, ATTR_BUCKET) >= 0; /* reduced in place */
    default:
        return false;
    }
}

/* The node at which each node's code runs: its kernel's root (last member). */
static int *roots_of(const struct ir_func *f) {
    int len = ir_func_len(f);
    int *root = malloc(sizeof *root * (size_t)(len ? len : 1));
    if (!root) NETC_INTERNAL("out of memory");
    for (int id = len - 1; id >= 0; id--) {
        root[id] = id;
        int k = f->nodes[id].kernel;
        for (int j = id + 1; k > 0 && j < len; j++)
            if (f->nodes[j].kernel == k) root[id] = root[j];
    }
    return root;
}

/* Whether kernel k is one whose head's GEMM the backend fuses with the
 * update (pass_gemm_adam): the head does not compute into the root. */
static bool gemm_update(const struct ir_func *f, int k) {
    return pass_target_get()->fuse_gemm_update && pass_gemm_adam(f, k, NULL);
}

/* Whether fused member m is stored: the kernel's root, or read after the kernel
 * (by a node outside it, or as an output). A head computes into the root. */
static bool kernel_stores(const struct ir_func *f, int m) {
    const struct ir_node *n = &f->nodes[m];
    if (!n->kernel) return true;
    if (ir_kernel_head_op(n->op)) return false;
    for (int u = m + 1; u < ir_func_len(f); u++) {
        const struct ir_node *un = &f->nodes[u];
        if (un->kernel == n->kernel) continue;
        for (int a = 0; a < un->nargs; a++)
            if (un->args[a] == m) return true;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        if (f->outputs[o].value == m) return true;
    int k = n->kernel;
    for (int j = m + 1; j < ir_func_len(f); j++)
        if (f->nodes[j].kernel == k) return false;
    return true; /* the root */
}

void pass_memplan_live(const struct ir_func *f, int *last_use, int *uses) {
    int len = ir_func_len(f);
    int *root = roots_of(f);
    for (int id = 0; id < len; id++) last_use[id] = id, uses[id] = 0;
    for (int id = 0; id < len; id++) {
        const struct ir_node *n = &f->nodes[id];
        for (int a = 0; a < n->nargs; a++) {
            uses[n->args[a]]++;
            if (last_use[n->args[a]] < root[id]) last_use[n->args[a]] = root[id];
        }
        if (n->op == OP_ASSIGN) last_use[n->args[0]] = INT_MAX;
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        uses[f->outputs[o].value]++;
        last_use[f->outputs[o].value] = INT_MAX;
    }
    /* An alias keeps its root alive as long as itself (walk from the end so
     * chains propagate). */
    for (int id = len - 1; id >= 0; id--) {
        const struct ir_node *n = &f->nodes[id];
        if (n->op == OP_INPUT || n->op == OP_PARAM || !pass_memplan_aliases(n)) continue;
        if (last_use[n->args[0]] < last_use[id]) last_use[n->args[0]] = last_use[id];
    }
    free(root);
}

/* Whether value x is read only by members of kernel k (directly, not through an
 * alias) or by nodes whose code runs before `before`, and is no output: then k
 * may overwrite its storage element by element. */
static bool read_before(const struct ir_func *f, const int *root, int x, int k, int before, int depth) {
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        if (f->outputs[o].value == x) return false;
    for (int u = x + 1; u < ir_func_len(f); u++) {
        const struct ir_node *un = &f->nodes[u];
        bool reads = false;
        for (int a = 0; a < un->nargs; a++) reads |= un->args[a] == x;
        if (!reads || (depth == 0 && k > 0 && un->kernel == k)) continue;
        if (root[u] >= before || un->op == OP_ASSIGN) return false;
        if (pass_memplan_aliases(un) && (depth > 8 || !read_before(f, root, u, 0, before, depth + 1)))
            return false;
    }
    return true;
}

/* The module buffer named `name`, or -1. */
static int buffer_index(const struct ir_module *m, const char *name) {
    for (size_t i = 0; i < vec_len(m->buffers); i++)
        if (strcmp(m->buffers[i].name, name) == 0) return (int)i;
    return -1;
}

/* Kernel outputs assigned to a buffer are stored straight into it when that is
 * safe: the function assigns the buffer once, and every read of the buffer's
 * old value happens before the kernel or inside it at the same element (a
 * member reading it has the root's shape, so the same index). That saves a
 * slot and the copy at the end of the function (Adam's m, v and parameter). */
static void store_in_place(const struct ir_module *m, struct ir_func *f, const int *root) {
    int len = ir_func_len(f);
    for (int a = 0; a < len; a++) {
        const struct ir_node *an = &f->nodes[a];
        int x = an->nargs ? an->args[0] : -1;
        if (an->op != OP_ASSIGN || !f->nodes[x].kernel) continue;
        int k = f->nodes[x].kernel, r = root[x];
        bool has_head = false;
        for (int j = 0; j <= r; j++) has_head |= f->nodes[j].kernel == k && ir_kernel_head_op(f->nodes[j].op);
        /* A head computes into the root's storage before the loop reads
         * anything (but a gemm-update kernel's: its scratch, if anywhere). */
        has_head &= !gemm_update(f, k);
        if (!kernel_stores(f, x) || f->nodes[x].mem.where == MEM_BUFFER || (x == r && has_head)) continue;
        bool ok = shape_equal(&an->type.shape, &f->nodes[r].type.shape);
        for (int j = 0; j < len && ok; j++) {
            const struct ir_node *n = &f->nodes[j];
            if (n->op == OP_ASSIGN && j != a && strcmp(n->sym, an->sym) == 0) ok = false;
            if (n->op == OP_PARAM && strcmp(n->sym, an->sym) == 0) ok = read_before(f, root, j, k, r, 0);
        }
        if (ok) f->nodes[x].mem = (struct ir_mem){MEM_BUFFER, buffer_index(m, an->sym), MEM_NONE, 0, 0};
    }
}

/* ---------------------------------------------------------------- slots */

/* Free blocks of one region, for first-fit reuse. */
struct region {
    int64_t top;        /* bytes in use up to here */
    int64_t *free_off;  /* vec: offsets of free blocks */
    int64_t *free_size; /* vec: their sizes */
};

/* The smallest free block that fits (the latest of equals), else the top. */
static int64_t region_alloc(struct region *r, int64_t size) {
    size_t best = (size_t)-1;
    for (size_t i = 0; i < vec_len(r->free_off); i++)
        if (r->free_size[i] >= size && (best == (size_t)-1 || r->free_size[i] < r->free_size[best])) best = i;
    if (best == (size_t)-1) {
        int64_t off = r->top;
        r->top += size;
        return off;
    }
    int64_t off = r->free_off[best];
    size_t last = vec_len(r->free_off) - 1;
    r->free_off[best] = r->free_off[last];
    r->free_size[best] = r->free_size[last];
    vec_hdr_(r->free_off)->len--;
    vec_hdr_(r->free_size)->len--;
    return off;
}

static void region_release(struct region *r, int64_t off, int64_t size) {
    vec_push(r->free_off, off);
    vec_push(r->free_size, size);
}

static int64_t round_up(int64_t v) { return (v + IR_SLOT_ALIGN - 1) / IR_SLOT_ALIGN * IR_SLOT_ALIGN; }

/* Bytes of a value's slot: per batch item when its shape has N. */
static int64_t slot_bytes(const struct ir_node *n) {
    return round_up(shape_static_numel(&n->type.shape) * (int64_t)dtype_size(n->type.dtype));
}

/* The bucket of node n when it is an ALLREDUCE reduced in place, else -1. */
static int bucket_of(const struct ir_node *n) {
    return n->op == OP_ALLREDUCE ? (int)ir_attr_i(n, ATTR_BUCKET) : -1;
}

/* Gradient buckets (passes/dp.c) before anything else: the operands of bucket
 * b's ALLREDUCE nodes, in node order, one after the other from the start of the
 * fixed region, bucket after bucket; their slots are never released, so each
 * bucket is one block that MPI reduces in place. */
static void place_buckets(struct ir_func *f, struct region *fixed, bool *in_bucket) {
    int len = ir_func_len(f), nb = 0;
    for (int id = 0; id < len; id++)
        if (bucket_of(&f->nodes[id]) + 1 > nb) nb = bucket_of(&f->nodes[id]) + 1;
    for (int b = 0; b < nb; b++)
        for (int id = 0; id < len; id++) {
            const struct ir_node *n = &f->nodes[id];
            if (bucket_of(n) != b) continue;
            int g = n->args[0];
            struct ir_node *gn = &f->nodes[g];
            if (pass_memplan_aliases(gn) || gn->mem.where == MEM_BUFFER || gn->op == OP_CONST ||
                gn->op == OP_INPUT || gn->op == OP_PARAM || shape_has_n(&gn->type.shape) || in_bucket[g])
                NETC_INTERNAL("allreduce %%%d: operand %%%d cannot be in bucket %d", id, g, b);
            in_bucket[g] = true;
            gn->mem.where = MEM_FIXED;
            gn->mem.off = fixed->top;
            fixed->top += slot_bytes(gn);
        }
}

/* Plans f: slots by liveness (a value's slot is released after its last
 * reader, so an op's output never overlaps its own operands). */
static void plan_func(const struct ir_module *m, struct ir_func *f, const struct pass_target *t) {
    int len = ir_func_len(f);
    for (int id = 0; id < len; id++) f->nodes[id].mem = (struct ir_mem){MEM_NONE, 0, MEM_NONE, 0, 0};
    int *root = roots_of(f);
    int *last_use = malloc(sizeof *last_use * (size_t)(len ? len : 1));
    int *uses = malloc(sizeof *uses * (size_t)(len ? len : 1));
    int **dies = calloc((size_t)(len ? len : 1), sizeof *dies); /* per node: slots to free after it */
    bool *in_bucket = calloc((size_t)(len ? len : 1), sizeof *in_bucket);
    if (!last_use || !uses || !dies || !in_bucket) NETC_INTERNAL("out of memory");
    store_in_place(m, f, root);
    pass_memplan_live(f, last_use, uses);
    struct region fixed = {0}, per_n = {0};
    place_buckets(f, &fixed, in_bucket);
    for (int id = 0; id < len; id++) {
        struct ir_node *n = &f->nodes[id];
        bool leaf = n->op == OP_INPUT || n->op == OP_PARAM;
        if (!leaf && !pass_memplan_aliases(n) && n->mem.where == MEM_NONE && !in_bucket[id] &&
            kernel_stores(f, id)) {
            n->mem.where = shape_has_n(&n->type.shape) ? MEM_BATCH : MEM_FIXED;
            n->mem.off = region_alloc(n->mem.where == MEM_BATCH ? &per_n : &fixed, slot_bytes(n));
            if (last_use[id] != INT_MAX) vec_push(dies[last_use[id]], id);
        }
        /* A kernel's root takes the scratch of the kernel's head. */
        int sid = id;
        if (n->kernel) {
            sid = -1;
            for (int j = 0; j < id && root[id] == id; j++)
                if (f->nodes[j].kernel == n->kernel && ir_kernel_head_op(f->nodes[j].op)) sid = j;
        }
        bool scratch_n = false;
        struct ir_node *sn = sid >= 0 ? &f->nodes[sid] : NULL;
        int64_t scratch = sn && t->scratch ? t->scratch(f, sn, &scratch_n) : 0;
        if (scratch > 0) {
            struct region *r = scratch_n ? &per_n : &fixed;
            int64_t size = round_up(scratch * (int64_t)sizeof(float));
            sn->mem.scratch_where = scratch_n ? MEM_BATCH : MEM_FIXED;
            sn->mem.scratch = scratch;
            sn->mem.scratch_off = region_alloc(r, size);
            region_release(r, sn->mem.scratch_off, size);
        }
        for (size_t k = 0; k < vec_len(dies[id]); k++) {
            const struct ir_node *d = &f->nodes[dies[id][k]];
            region_release(d->mem.where == MEM_BATCH ? &per_n : &fixed, d->mem.off, slot_bytes(d));
        }
        vec_free(dies[id]);
    }
    f->planned = true;
    f->ws_fixed = round_up(fixed.top);
    f->ws_batch = round_up(per_n.top);
    vec_free(fixed.free_off);
    vec_free(fixed.free_size);
    vec_free(per_n.free_off);
    vec_free(per_n.free_size);
    free(dies);
    free(in_bucket);
    free(uses);
    free(last_use);
    free(root);
}

int pass_memplan(struct ir_module *m) {
    const struct pass_target *t = pass_target_get();
    for (size_t i = 0; i < vec_len(m->funcs); i++) plan_func(m, m->funcs[i], t);
    return (int)vec_len(m->funcs);
}
