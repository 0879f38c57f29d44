/* tests/unit/test_grad_pass.c -- the autodiff pass as a whole: which functions it
 * touches, which grad.* outputs it adds (update groups, unreached and state
 * buffers, shared parameters), stop-gradient, side effects kept, a batch-size
 * independent mean gradient, idempotence, and that its output verifies and
 * round-trips through the IR text form. Values come from the interpreter. */
#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/unit/test.h"
#include "tests/unit/test_ir_build.h"

#include <stdarg.h>
#include <string.h>

#define N IR_DIM_N

static int buf(enum op op, enum buf_kind kind, const char *name, struct shape s, const char *group) {
    if (!ir_buffer_find(M, name)) {
        int b = ir_buffer_add(M, kind, name, (struct type){DT_F32, s}, LOC_NONE);
        if (group) M->buffers[b].group = arena_strdup(M->arena, group);
    }
    int id = ir_node_add(M, F, op, NULL, 0, LOC_NONE);
    ir_set_sym(M, &F->nodes[id], name);
    return fin(id);
}

static int in(const char *name, struct shape s) { return buf(OP_INPUT, BUF_INPUT, name, s, NULL); }
static int par(const char *name, struct shape s, const char *g) {
    return buf(OP_PARAM, BUF_PARAM, name, s, g);
}

static int mean_all(int x) {
    int id = ir_node_add(M, F, OP_MEAN, &x, 1, LOC_NONE);
    ir_attr_set_v(&F->nodes[id], ATTR_AXES, (int64_t[]){0}, 0);
    return fin(id);
}

static int sum_all(int x) {
    int id = ir_node_add(M, F, OP_SUM, &x, 1, LOC_NONE);
    ir_attr_set_v(&F->nodes[id], ATTR_AXES, (int64_t[]){0}, 0);
    return fin(id);
}

static void train(const char *name, const char *update) {
    F = ir_func_add(M, name, MODE_TRAIN);
    F->loss = "loss";
    if (update) vec_push(F->update, arena_strdup(M->arena, update));
}

static bool has_output(const char *name) { return ir_output_find(F, name) >= 0; }

static int count_op(const struct ir_func *f, enum op op) {
    int k = 0;
    for (int i = 0; i < ir_func_len(f); i++) k += f->nodes[i].op == op;
    return k;
}

/* Two nets, `update D`: only D's parameters get gradients; a parameter the loss
 * does not reach and a state buffer get none; eval functions are untouched. */
static void test_groups(void) {
    M = ir_module_new("gan");
    F = ir_func_add(M, "forward", MODE_EVAL);
    ir_output_add(M, F, "y", op2(OP_MUL, in("x", S(2, N, 2)), par("g", S(1, 2), "G")));
    int eval_len = ir_func_len(F);
    train("d_step", "D");
    int x = in("x", S(2, N, 2));
    int fake = op2(OP_MUL, x, par("g", S(1, 2), "G"));
    int s = op2(OP_MUL, fake, par("d", S(1, 2), "D"));
    s = op2(OP_ADD, s, buf(OP_PARAM, BUF_STATE, "st", S(1, 2), NULL));
    par("unused", S(1, 2), "D");
    ir_output_add(M, F, "loss", mean_all(s));
    struct ir_func *d = F;
    train("all_step", NULL);
    ir_output_add(M, F, "loss", mean_all(op2(OP_MUL, in("x", S(2, N, 2)), par("g", S(1, 2), "G"))));
    struct ir_func *all = F;
    train("lowered", NULL); /* optimizer already lowered: ASSIGNs to a parameter */
    int g = par("g", S(1, 2), "G");
    ir_output_add(M, F, "loss", mean_all(op2(OP_MUL, in("x", S(2, N, 2)), g)));
    int a = ir_node_add(M, F, OP_ASSIGN, &g, 1, LOC_NONE);
    ir_set_sym(M, &F->nodes[a], "g");
    fin(a);
    struct ir_func *lowered = F;
    int lowered_len = ir_func_len(F);
    CHECK(pass_autodiff(M) > 0);
    ASSERT(lowered_len, ir_func_len(lowered));
    F = d;
    CHECK(has_output("grad.d"));
    CHECK(!has_output("grad.g"));
    CHECK(!has_output("grad.unused"));
    CHECK(!has_output("grad.st"));
    CHECK(!has_output("grad.x"));
    F = all;
    CHECK(has_output("grad.g"));
    ASSERT(eval_len, ir_func_len(M->funcs[0]));
    ASSERT(1, (long long)vec_len(M->funcs[0]->outputs));
    ASSERT(0, pass_autodiff(M)); /* idempotent */
    CHECK(ir_verify(M));
    ir_module_free(M);
}

/* loss = sum(x * w + stop_gradient(x * w)): grad.w is sum_n x, not twice it. A
 * parameter read by two PARAM nodes gets one summed output. */
static void test_stop_gradient_and_sharing(void) {
    M = ir_module_new("sg");
    train("step", NULL);
    int x = in("x", S(2, N, 2));
    int xw = op2(OP_MUL, x, par("w", S(1, 2), NULL));
    int t = op2(OP_ADD, xw, op1(OP_STOP_GRADIENT, xw));
    t = op2(OP_ADD, t, op2(OP_MUL, x, par("w", S(1, 2), NULL))); /* second read of @w */
    ir_output_add(M, F, "loss", sum_all(t));
    pass_autodiff(M);
    CHECK(ir_verify(M));
    struct cg_interp *it = cg_interp_new(M, F, 2);
    CHECK(cg_interp_set_f32(it, "x", (float[]){1, 2, 3, 4}, 4));
    CHECK(cg_interp_set_f32(it, "w", (float[]){5, 7}, 2));
    CHECK(cg_interp_run(it));
    double g[2];
    CHECK(cg_interp_output_f64(it, "grad.w", g, 2));
    ASSERT_NEAR(2 * (1 + 3), g[0], 1e-12);
    ASSERT_NEAR(2 * (2 + 4), g[1], 1e-12);
    cg_interp_free(it);
    ir_module_free(M);
}

/* d mean(x @ w) / dw depends on the run-time N: one graph, two batch sizes. */
static void test_mean_over_batch(void) {
    M = ir_module_new("mean");
    train("step", NULL);
    int mmid =
        ir_node_add(M, F, OP_MATMUL, (int[]){in("x", S(2, N, 2)), par("w", S(2, 2, 1), NULL)}, 2, LOC_NONE);
    ir_output_add(M, F, "loss", mean_all(fin(mmid)));
    pass_autodiff(M);
    for (int n = 2; n <= 5; n += 3) {
        struct cg_interp *it = cg_interp_new(M, F, n);
        float x[10];
        double want0 = 0, want1 = 0;
        for (int i = 0; i < 2 * n; i++) x[i] = (float)(i + 1);
        for (int i = 0; i < n; i++) want0 += (double)x[2 * i] / n, want1 += (double)x[2 * i + 1] / n;
        CHECK(cg_interp_set_f32(it, "x", x, (size_t)(2 * n)));
        CHECK(cg_interp_set_f32(it, "w", (float[]){0.5f, -1}, 2));
        CHECK(cg_interp_run(it));
        double g[2];
        CHECK(cg_interp_output_f64(it, "grad.w", g, 2));
        ASSERT_NEAR(want0, g[0], 1e-12);
        ASSERT_NEAR(want1, g[1], 1e-12);
        cg_interp_free(it);
    }
    ir_module_free(M);
}

/* Batch norm in train mode: running-statistics ASSIGNs survive, the result
 * verifies, and it prints and parses back to the same text. */
static void test_effects_and_text(void) {
    M = ir_module_new("bn");
    train("step", NULL);
    int x = in("x", S(2, N, 3));
    int mean = ir_node_add(M, F, OP_MEAN, &x, 1, LOC_NONE);
    ir_attr_set_v(&F->nodes[mean], ATTR_AXES, (int64_t[]){0}, 1);
    fin(mean);
    int var = ir_node_add(M, F, OP_VARIANCE, &x, 1, LOC_NONE);
    ir_attr_set_v(&F->nodes[var], ATTR_AXES, (int64_t[]){0}, 1);
    fin(var);
    int rm = buf(OP_PARAM, BUF_STATE, "rm", S(1, 3), NULL);
    int a = ir_node_add(M, F, OP_ASSIGN, (int[]){op2(OP_ADD, rm, mean)}, 1, LOC_NONE);
    ir_set_sym(M, &F->nodes[a], "rm");
    fin(a);
    int bn = ir_node_add(M, F, OP_BATCHNORM,
                         (int[]){x, par("gamma", S(1, 3), NULL), par("beta", S(1, 3), NULL), mean, var}, 5,
                         LOC_NONE);
    ir_attr_set_f(&F->nodes[bn], ATTR_EPS, 1e-5);
    fin(bn);
    ir_output_add(M, F, "loss", mean_all(op1(OP_TANH, bn)));
    pass_autodiff(M);
    ASSERT(1, count_op(F, OP_ASSIGN));
    CHECK(has_output("grad.gamma") && has_output("grad.beta"));
    CHECK(ir_verify(M));
    char *text1 = NULL, *text2 = NULL;
    size_t len1 = 0, len2 = 0;
    FILE *f1 = open_memstream(&text1, &len1);
    ir_print(f1, M);
    fclose(f1);
    struct ir_module *back = ir_parse("bn.ir", text1, len1);
    CHECK(back != NULL);
    if (back) {
        FILE *f2 = open_memstream(&text2, &len2);
        ir_print(f2, back);
        fclose(f2);
        CHECK(len1 == len2 && memcmp(text1, text2, len1) == 0);
        ir_module_free(back);
    }
    free(text1);
    free(text2);
    ir_module_free(M);
}

int main(void) {
    test_groups();
    test_stop_gradient_and_sharing();
    test_mean_over_batch();
    test_effects_and_text();
    TEST_DONE();
}
