/* passes/cse.c -- common subexpression elimination: per function, in node order,
 * a node with the same op, operands, attributes, type and kernel as an earlier
 * one (and no side effect) is replaced by it, found through a hash table; the
 * replaced nodes are then removed. */
#include "passes/passes.h"

#include <string.h>

/* Two nodes compute the same value when op, operands, attributes and type agree
 * and the op has no side effect. Leaves read the same buffer. */
static bool same_node(const struct ir_node *a, const struct ir_node *b) {
    if (a->op != b->op || a->nargs != b->nargs || a->kernel != b->kernel) return false;
    if (op_info[a->op].flags & OF_EFFECT) return false;
    if (a->type.dtype != b->type.dtype || !shape_equal(&a->type.shape, &b->type.shape)) return false;
    if (a->nargs && memcmp(a->args, b->args, sizeof *a->args * (size_t)a->nargs) != 0) return false;
    if (memcmp(a->ia, b->ia, sizeof a->ia) != 0 || memcmp(a->fa, b->fa, sizeof a->fa) != 0) return false;
    if ((a->sym == NULL) != (b->sym == NULL)) return false;
    return !a->sym || strcmp(a->sym, b->sym) == 0;
}

static unsigned long node_hash(const struct ir_node *n) {
    unsigned long h = (unsigned long)n->op * 2654435761u;
    for (int i = 0; i < n->nargs; i++) h = h * 31 + (unsigned long)n->args[i];
    for (int i = 0; i < IR_MAX_IATTR; i++) h = h * 31 + (unsigned long)n->ia[i];
    if (n->sym)
        for (const char *p = n->sym; *p; p++) h = h * 31 + (unsigned char)*p;
    return h;
}

static int cse_func(struct ir_func *f) {
    int n = ir_func_len(f), merged = 0;
    if (n == 0) return 0;
    size_t cap = 1;
    while (cap < (size_t)n * 2) cap <<= 1;
    int *table = malloc(sizeof *table * cap);
    int *repl = malloc(sizeof *repl * (size_t)n);
    if (!table || !repl) exit(1);
    for (size_t i = 0; i < cap; i++) table[i] = -1;
    for (int i = 0; i < n; i++) {
        struct ir_node *node = &f->nodes[i];
        for (int a = 0; a < node->nargs; a++) node->args[a] = repl[node->args[a]];
        repl[i] = i;
        size_t slot = node_hash(node) & (cap - 1);
        for (; table[slot] >= 0; slot = (slot + 1) & (cap - 1)) {
            if (same_node(&f->nodes[table[slot]], node)) {
                repl[i] = table[slot];
                merged++;
                break;
            }
        }
        if (repl[i] == i) table[slot] = i;
    }
    for (size_t i = 0; i < vec_len(f->outputs); i++) f->outputs[i].value = repl[f->outputs[i].value];
    free(table);
    free(repl);
    if (merged) ir_func_dce(f);
    return merged;
}

int pass_cse(struct ir_module *m) {
    int merged = 0;
    for (size_t fi = 0; fi < vec_len(m->funcs); fi++) merged += cse_func(m->funcs[fi]);
    return merged;
}
