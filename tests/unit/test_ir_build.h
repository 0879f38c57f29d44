/* tests/unit/test_ir_build.h -- building small IR modules by hand in the unit
 * tests: the module and function under construction (M, F), shapes S(rank, ...),
 * nodes with operands (node, op1, op2), attribute lists (ints), and fin(), which
 * infers a node's type and stops the test if the case itself is ill-typed. */
#ifndef NETC_TEST_IR_BUILD_H
#define NETC_TEST_IR_BUILD_H

#include "ir/ir.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static struct ir_module *M; /* the module being built */
static struct ir_func *F;   /* the function being built */

/* A shape from its dims (IR_DIM_N for the batch dim). */
static inline struct shape S(int rank, ...) {
    struct shape s = {rank, {0}};
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++) s.dim[i] = va_arg(ap, int);
    va_end(ap);
    return s;
}

/* Infer node id's type; an ill-typed node is a bug in the test case. */
static inline int
fin(int id) {
    char err[256];
    if (!ir_infer(M, F, id, err, sizeof err)) {
        fprintf(stderr, "test builds an ill-typed node: %s\n", err);
        exit(2);
    }
    return id;
}

/* A node; attributes are set by the caller through at(), then fin(). */
static inline int node(enum op op, int nargs, ...) {
    int args[8];
    va_list ap;
    va_start(ap, nargs);
    for (int i = 0; i < nargs; i++) args[i] = va_arg(ap, int);
    va_end(ap);
    return ir_node_add(M, F, op, args, nargs, LOC_NONE);
}

static inline struct ir_node *at(int id) { return &F->nodes[id]; }
static inline int op1(enum op op, int a) { return fin(node(op, 1, a)); }
static inline int op2(enum op op, int a, int b) { return fin(node(op, 2, a, b)); }

/* Set an int-list attribute from count ints. */
static inline void ints(int id, struct attr_v name, int count, ...) {
    int64_t v[IR_MAX_LIST];
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) v[i] = va_arg(ap, int);
    va_end(ap);
    ir_attr_set_v(at(id), name, v, count);
}

#endif
