/* tests/unit/test_interp_ops.c -- the reference interpreter's forward values against
 * small hand-computed expectations, a few per op family, plus its error handling
 * (unset buffers, bad sizes, labels out of range) and ASSIGN/commit semantics. Each
 * test builds a one-function module through the IR API and runs it. */
#include "codegen/codegen.h"
#include "tests/unit/test.h"
#include "tests/unit/test_ir_build.h"

#include <stdarg.h>
#include <string.h>

#define N IR_DIM_N

static void begin(enum func_mode mode) {
    M = ir_module_new("t");
    F = ir_func_add(M, "f", mode);
}

static int leaf(enum op op, enum buf_kind kind, const char *name, enum dtype dt, struct shape s) {
    if (!ir_buffer_find(M, name)) ir_buffer_add(M, kind, name, (struct type){dt, s}, LOC_NONE);
    int id = ir_node_add(M, F, op, NULL, 0, LOC_NONE);
    ir_set_sym(M, &F->nodes[id], name);
    return fin(id);
}

static int in(const char *name, struct shape s) { return leaf(OP_INPUT, BUF_INPUT, name, DT_F32, s); }

static int with_int(enum op op, int x, struct attr_i name, int v) {
    int id = node(op, 1, x);
    ir_attr_set_i(at(id), name, v);
    return fin(id);
}

static int reduce(enum op op, int x, int keep, int count, ...) {
    int id = node(op, 1, x);
    int64_t v[IR_MAX_LIST] = {0};
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) v[i] = va_arg(ap, int);
    va_end(ap);
    ir_attr_set_v(at(id), ATTR_AXES, v, count);
    ir_attr_set_i(at(id), ATTR_KEEPDIMS, keep);
    return fin(id);
}

static void out(const char *name, int id) { ir_output_add(M, F, name, id); }

/* Run with batch n; inputs are set by the caller through `it` first. */
static struct cg_interp *interp(int64_t n) { return cg_interp_new(M, F, n); }

static void set(struct cg_interp *it, const char *name, size_t count, const float *v) {
    if (!cg_interp_set_f32(it, name, v, count)) TEST_FAIL_("set %s: %s", name, cg_interp_error(it));
}

static void run(struct cg_interp *it) {
    if (!cg_interp_run(it)) TEST_FAIL_("run: %s", cg_interp_error(it));
}

/* Output `name` equals want[0..count) within tol. */
static void expect(struct cg_interp *it, const char *name, size_t count, const double *want, double tol) {
    double got[256];
    if (count > 256 || !cg_interp_output_f64(it, name, got, count)) {
        TEST_FAIL_("output %s: %s", name, cg_interp_error(it));
        return;
    }
    for (size_t i = 0; i < count; i++) {
        if (fabs(got[i] - want[i]) <= tol)
            test_passed++;
        else
            TEST_FAIL_("output %s[%zu] = %.9g, expected %.9g", name, i, got[i], want[i]);
    }
}

#define EXPECT(it, name, tol, ...)                           \
    do {                                                     \
        const double w_[] = {__VA_ARGS__};                   \
        expect(it, name, sizeof w_ / sizeof w_[0], w_, tol); \
    } while (0)

static void end(struct cg_interp *it) {
    cg_interp_free(it);
    ir_module_free(M);
}

/* ---------------------------------------------------------- elementwise */

static void test_unary(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 4));
    out("neg", op1(OP_NEG, x));
    out("abs", op1(OP_ABS, x));
    out("relu", op1(OP_RELU, x));
    int l = node(OP_LEAKY_RELU, 1, x);
    ir_attr_set_f(at(l), ATTR_ALPHA, 0.1);
    out("leaky", fin(l));
    out("sigmoid", op1(OP_SIGMOID, x));
    out("tanh", op1(OP_TANH, x));
    out("exp", op1(OP_EXP, x));
    int p = in("p", S(1, 3));
    out("log", op1(OP_LOG, p));
    out("sqrt", op1(OP_SQRT, p));
    struct cg_interp *it = interp(1);
    set(it, "x", 4, (float[]){-2, -0.5f, 0, 1.5f});
    set(it, "p", 3, (float[]){1, 4, 0.25f});
    run(it);
    EXPECT(it, "neg", 0, 2, 0.5, 0, -1.5);
    EXPECT(it, "abs", 0, 2, 0.5, 0, 1.5);
    EXPECT(it, "relu", 0, 0, 0, 0, 1.5);
    EXPECT(it, "leaky", 1e-12, -0.2, -0.05, 0, 1.5);
    EXPECT(it, "sigmoid", 1e-8, 0.119202922, 0.377540669, 0.5, 0.817574476);
    EXPECT(it, "tanh", 1e-8, -0.964027580, -0.462117157, 0, 0.905148254);
    EXPECT(it, "exp", 1e-8, 0.135335283, 0.606530660, 1, 4.48168907);
    EXPECT(it, "log", 1e-8, 0, 1.38629436, -1.38629436);
    EXPECT(it, "sqrt", 1e-12, 1, 2, 0.5);
    end(it);
}

static void test_binary(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 3)), b = in("b", S(1, 3)), c = in("c", S(2, N, 1));
    out("add", op2(OP_ADD, x, b));
    out("sub", op2(OP_SUB, c, b)); /* [N,1] - [3] -> [N,3] */
    out("mul", op2(OP_MUL, x, c));
    out("div", op2(OP_DIV, x, b));
    out("max", op2(OP_MAXIMUM, x, b));
    out("pow", op2(OP_POW, b, b));
    out("gt", op2(OP_GREATER, x, b));
    int bias = node(OP_BIAS_ADD, 2, x, b);
    ir_attr_set_i(at(bias), ATTR_AXIS, 1);
    out("bias", fin(bias));
    struct cg_interp *it = interp(2);
    set(it, "x", 6, (float[]){1, 2, 3, 4, 5, 6});
    set(it, "b", 3, (float[]){1, 2, 4});
    set(it, "c", 2, (float[]){10, 20});
    run(it);
    EXPECT(it, "add", 0, 2, 4, 7, 5, 7, 10);
    EXPECT(it, "sub", 0, 9, 8, 6, 19, 18, 16);
    EXPECT(it, "mul", 0, 10, 20, 30, 80, 100, 120);
    EXPECT(it, "div", 1e-12, 1, 1, 0.75, 4, 2.5, 1.5);
    EXPECT(it, "max", 0, 1, 2, 4, 4, 5, 6);
    EXPECT(it, "pow", 1e-12, 1, 4, 256);
    EXPECT(it, "gt", 0, 0, 0, 0, 1, 1, 1);
    EXPECT(it, "bias", 0, 2, 4, 7, 5, 7, 10);
    end(it);
}

static void test_cast_const(void) {
    begin(MODE_EVAL);
    int x = in("x", S(1, 4));
    int c = node(OP_CAST, 1, x);
    at(c)->type.dtype = DT_I32;
    fin(c);
    out("i", c);
    int k = ir_node_add(M, F, OP_CONST, NULL, 0, LOC_NONE);
    at(k)->type = (struct type){DT_F32, S(2, 2, 2)};
    ir_attr_set_f(at(k), ATTR_VALUE, 2.5);
    out("k", fin(k));
    struct cg_interp *it = interp(1);
    set(it, "x", 4, (float[]){1.7f, -1.7f, 3e10f, -0.5f});
    run(it);
    int32_t got[4];
    CHECK(cg_interp_output_i32(it, "i", got, 4));
    ASSERT(1, got[0]);
    ASSERT(-1, got[1]);
    ASSERT(2147483647, got[2]);
    ASSERT(0, got[3]);
    EXPECT(it, "k", 0, 2.5, 2.5, 2.5, 2.5);
    end(it);
}

/* ----------------------------------------------------------- reductions */

static void test_reductions(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 4)); /* [[1,2,3,4],[5,6,7,9]] */
    out("sum1", reduce(OP_SUM, x, 0, 1, 1));
    out("sum0k", reduce(OP_SUM, x, 1, 1, 0));
    out("mean0", reduce(OP_MEAN, x, 0, 1, 0));
    out("meanall", reduce(OP_MEAN, x, 0, 0));
    out("max1", reduce(OP_MAX, x, 0, 1, 1));
    out("var1", reduce(OP_VARIANCE, x, 0, 1, 1));
    out("argmax", with_int(OP_ARGMAX, in("t", S(2, N, 3)), ATTR_AXIS, 1));
    int st = node(OP_SUM_TO, 1, x);
    at(st)->type = (struct type){DT_F32, S(1, 4)};
    out("sum_to", fin(st));
    int bt = node(OP_BROADCAST_TO, 1, in("b", S(2, 2, 1)));
    at(bt)->type = (struct type){DT_F32, S(2, 2, 3)};
    out("bcast", fin(bt));
    struct cg_interp *it = interp(2);
    set(it, "x", 8, (float[]){1, 2, 3, 4, 5, 6, 7, 9});
    set(it, "t", 6, (float[]){1, 3, 3, 7, 2, 7});
    set(it, "b", 2, (float[]){-1, 5});
    run(it);
    EXPECT(it, "sum1", 0, 10, 27);
    EXPECT(it, "sum0k", 0, 6, 8, 10, 13);
    EXPECT(it, "mean0", 0, 3, 4, 5, 6.5);
    EXPECT(it, "meanall", 1e-12, 37.0 / 8);
    EXPECT(it, "max1", 0, 4, 9);
    EXPECT(it, "var1", 1e-12, 1.25, 2.1875);
    int32_t am[2];
    CHECK(cg_interp_output_i32(it, "argmax", am, 2));
    ASSERT(1, am[0]); /* first of the tied maxima */
    ASSERT(0, am[1]);
    EXPECT(it, "sum_to", 0, 6, 8, 10, 13);
    EXPECT(it, "bcast", 0, -1, -1, -1, 5, 5, 5);
    end(it);
}

/* ----------------------------------------------------- matmul and shape */

static void test_matmul(void) {
    begin(MODE_EVAL);
    int a = in("a", S(2, 2, 2)), b = in("b", S(2, 2, 2));
    const char *names[4] = {"ab", "atb", "abt", "atbt"};
    for (int k = 0; k < 4; k++) {
        int id = node(OP_MATMUL, 2, a, b);
        ir_attr_set_i(at(id), ATTR_TRANSPOSE_A, k & 1);
        ir_attr_set_i(at(id), ATTR_TRANSPOSE_B, k >> 1);
        out(names[k], fin(id));
    }
    struct cg_interp *it = interp(1);
    set(it, "a", 4, (float[]){1, 2, 3, 4});
    set(it, "b", 4, (float[]){5, 6, 7, 8});
    run(it);
    EXPECT(it, "ab", 0, 19, 22, 43, 50);
    EXPECT(it, "atb", 0, 26, 30, 38, 44);
    EXPECT(it, "abt", 0, 17, 23, 39, 53);
    EXPECT(it, "atbt", 0, 23, 31, 34, 46);
    end(it);
}

static void test_shape_ops(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 3)); /* [[1,2,3],[4,5,6]] */
    int t = node(OP_TRANSPOSE, 1, x);
    ints(t, ATTR_PERM, 2, 1, 0);
    out("t", fin(t));
    int s = node(OP_SLICE, 1, x);
    ir_attr_set_i(at(s), ATTR_AXIS, 1), ir_attr_set_i(at(s), ATTR_START, 1),
        ir_attr_set_i(at(s), ATTR_SIZE, 2);
    out("slice", fin(s));
    int p = node(OP_PAD, 1, x);
    ir_attr_set_i(at(p), ATTR_AXIS, 1), ir_attr_set_i(at(p), ATTR_BEFORE, 1),
        ir_attr_set_i(at(p), ATTR_AFTER, 0);
    out("pad", fin(p));
    int c = node(OP_CONCAT, 2, x, s);
    ir_attr_set_i(at(c), ATTR_AXIS, 1);
    out("concat", fin(c));
    int r = node(OP_RESHAPE, 1, x);
    at(r)->type = (struct type){DT_F32, S(3, N, 1, 3)};
    out("reshape", fin(r));
    struct cg_interp *it = interp(2);
    set(it, "x", 6, (float[]){1, 2, 3, 4, 5, 6});
    run(it);
    EXPECT(it, "t", 0, 1, 4, 2, 5, 3, 6);
    EXPECT(it, "slice", 0, 2, 3, 5, 6);
    EXPECT(it, "pad", 0, 0, 1, 2, 3, 0, 4, 5, 6);
    EXPECT(it, "concat", 0, 1, 2, 3, 2, 3, 4, 5, 6, 5, 6);
    EXPECT(it, "reshape", 0, 1, 2, 3, 4, 5, 6);
    end(it);
}

/* ------------------------------------------------------ softmax, losses */

static void test_softmax(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 3));
    int y = with_int(OP_SOFTMAX, x, ATTR_AXIS, 1);
    out("sm", y);
    int ly = with_int(OP_LOG_SOFTMAX, x, ATTR_AXIS, 1);
    out("lsm", ly);
    out("sm0", with_int(OP_SOFTMAX, x, ATTR_AXIS, 0));
    int dy = in("dy", S(2, N, 3));
    int g = node(OP_SOFTMAX_GRAD, 2, y, dy);
    ir_attr_set_i(at(g), ATTR_AXIS, 1);
    out("smg", fin(g));
    int lg = node(OP_LOG_SOFTMAX_GRAD, 2, ly, dy);
    ir_attr_set_i(at(lg), ATTR_AXIS, 1);
    out("lsmg", fin(lg));
    struct cg_interp *it = interp(1);
    set(it, "x", 3, (float[]){1, 2, 3});
    set(it, "dy", 3, (float[]){1, 0, 0});
    run(it);
    double s0 = 0.0900305732, s1 = 0.244728471, s2 = 0.665240956;
    EXPECT(it, "sm", 1e-8, s0, s1, s2);
    EXPECT(it, "lsm", 1e-8, -2.40760596, -1.40760596, -0.407605964);
    EXPECT(it, "sm0", 0, 1, 1, 1);
    EXPECT(it, "smg", 1e-8, s0 * (1 - s0), -s1 * s0, -s2 * s0);
    EXPECT(it, "lsmg", 1e-8, 1 - s0, -s1, -s2);
    end(it);
}

static void test_losses(void) {
    begin(MODE_EVAL);
    int p = in("p", S(2, N, 2)), t = in("t", S(2, N, 2));
    out("mse", op2(OP_MSE, p, t));
    out("bce", op2(OP_BCE, in("q", S(2, N, 2)), t));
    out("bcel", op2(OP_BCE_LOGITS, p, t));
    out("hinge", op2(OP_HINGE, p, in("s", S(2, N, 2))));
    int x = in("x", S(2, N, 3));
    int lab = leaf(OP_INPUT, BUF_INPUT, "y", DT_I32, S(1, N));
    out("ce", op2(OP_CROSS_ENTROPY, x, lab));
    out("cep", op2(OP_CROSS_ENTROPY, x, in("d", S(2, N, 3))));
    out("acc", op2(OP_ACCURACY, x, lab));
    out("accp", op2(OP_ACCURACY, x, in("d", S(2, N, 3))));
    int k = ir_node_add(M, F, OP_CONST, NULL, 0, LOC_NONE);
    at(k)->type = (struct type){DT_F32, S(0)};
    ir_attr_set_f(at(k), ATTR_VALUE, 2.0);
    fin(k);
    out("mseg", fin(node(OP_MSE_GRAD, 3, p, t, k)));
    out("ceg", fin(node(OP_CROSS_ENTROPY_GRAD, 3, x, lab, k)));
    out("hingeg", fin(node(OP_HINGE_GRAD, 3, p, in("s", S(2, N, 2)), k)));
    out("bceg", fin(node(OP_BCE_GRAD, 3, in("q", S(2, N, 2)), t, k)));
    out("bcelg", fin(node(OP_BCE_LOGITS_GRAD, 3, p, t, k)));
    struct cg_interp *it = interp(2);
    set(it, "p", 4, (float[]){1, 2, 0, 100});
    set(it, "t", 4, (float[]){0, 0, 1, 1});
    set(it, "q", 4, (float[]){0.5f, 0, 0.5f, 0});
    set(it, "s", 4, (float[]){1, 1, -1, 1});
    set(it, "x", 6, (float[]){0, 0, 0, 1, 3, 2});
    CHECK(cg_interp_set_i32(it, "y", (int32_t[]){1, 2}, 2));
    set(it, "d", 6, (float[]){0.25f, 0.5f, 0.25f, 0, 1, 0});
    run(it);
    EXPECT(it, "mse", 1e-12, (1 + 4 + 1 + 99.0 * 99) / 4);
    /* BCE: -log 0.5, -log(1 - 0) = 0, -log 0.5, -max(log 0, -100) = 100 */
    EXPECT(it, "bce", 1e-8, (0.693147181 * 2 + 100) / 4);
    /* BCE logits: log(1 + e), 2 + log(1 + e^-2), log 2, 100 - 100 + log(1 + e^-100) */
    EXPECT(it, "bcel", 1e-8, (1.31326169 + 2.12692801 + 0.693147181 + 3.72e-44) / 4);
    /* hinge: max(0, 1 - s p) = 0, 0, 1, 0 */
    EXPECT(it, "hinge", 1e-12, 0.25);
    double lse1 = 3.40760596; /* log(e + e^3 + e^2) */
    EXPECT(it, "ce", 1e-8, (1.09861229 + lse1 - 2) / 2);
    EXPECT(it, "cep", 1e-8, (1.09861229 + lse1 - 3) / 2);
    EXPECT(it, "acc", 0, 0.0);  /* row 0: argmax 0 (ties: first) vs 1; row 1: 1 vs 2 */
    EXPECT(it, "accp", 0, 0.5); /* row 0: 0 vs argmax(d) 1; row 1: 1 vs 1 */
    EXPECT(it, "mseg", 1e-12, 2 * 2 * 1.0 / 4, 2 * 2 * 2.0 / 4, 2 * 2 * -1.0 / 4, 2 * 2 * 99.0 / 4);
    double s0 = 1.0 / 3, e1 = 0.0900305732, e3 = 0.665240956, e2 = 0.244728471;
    EXPECT(it, "ceg", 1e-8, s0, s0 - 1, s0, e1, e3, e2 - 1); /* * 2 / 2 */
    EXPECT(it, "hingeg", 1e-12, 0, 0, 2.0 / 4, 0);
    /* BCE grad: d/dq of the clamped loss: 2/4 * (-(t/q) + (1-t)/(1-q)) where unclamped */
    EXPECT(it, "bceg", 1e-12, 0.5 * 2, 0.5 * 1, 0.5 * -2, 0);
    EXPECT(it, "bcelg", 1e-8, 0.5 * 0.731058579, 0.5 * 0.880797078, 0.5 * (0.5 - 1), 0.5 * 0);
    end(it);
}

static void test_label_range(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 3));
    out("ce", op2(OP_CROSS_ENTROPY, x, leaf(OP_INPUT, BUF_INPUT, "y", DT_I32, S(1, N))));
    struct cg_interp *it = interp(2);
    set(it, "x", 6, (float[]){0, 0, 0, 0, 0, 0});
    CHECK(cg_interp_set_i32(it, "y", (int32_t[]){1, 3}, 2));
    CHECK(!cg_interp_run(it));
    CHECK(strstr(cg_interp_error(it), "label 3 of batch item 1 is out of range for 3 classes") != NULL);
    end(it);
}

/* ---------------------------------------------------------- convolution */

static int conv(enum op op, int x, int w, int s, int pad, int d, int g) {
    int id = node(op, 2, x, w);
    ints(id, ATTR_STRIDE, 2, s, s);
    ints(id, ATTR_PAD, 4, pad, pad, pad, pad);
    ints(id, ATTR_DILATION, 2, d, d);
    ir_attr_set_i(at(id), ATTR_GROUPS, g);
    return id;
}

static void test_conv2d(void) {
    begin(MODE_EVAL);
    int x = in("x", S(4, N, 1, 3, 3)), w = in("w", S(4, 1, 1, 2, 2));
    out("plain", fin(conv(OP_CONV2D, x, w, 1, 0, 1, 1)));
    out("s2p1", fin(conv(OP_CONV2D, x, w, 2, 1, 1, 1)));
    out("d2", fin(conv(OP_CONV2D, x, w, 1, 0, 2, 1)));
    out("grouped", fin(conv(OP_CONV2D, in("xg", S(4, N, 2, 1, 1)), in("wg", S(4, 2, 1, 1, 1)), 1, 0, 1, 2)));
    int dy = in("dy", S(4, N, 1, 2, 2));
    int gi = conv(OP_CONV2D_GRAD_INPUT, dy, w, 1, 0, 1, 1);
    at(gi)->type = (struct type){DT_F32, S(4, N, 1, 3, 3)};
    out("gi", fin(gi));
    int gw = conv(OP_CONV2D_GRAD_WEIGHT, x, dy, 1, 0, 1, 1);
    at(gw)->type = (struct type){DT_F32, S(4, 1, 1, 2, 2)};
    out("gw", fin(gw));
    struct cg_interp *it = interp(1);
    set(it, "x", 9, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    set(it, "w", 4, (float[]){1, 1, 1, 1});
    set(it, "xg", 2, (float[]){1, 2});
    set(it, "wg", 2, (float[]){3, 4});
    set(it, "dy", 4, (float[]){1, 0, 0, 2});
    run(it);
    EXPECT(it, "plain", 0, 12, 16, 24, 28);
    EXPECT(it, "s2p1", 0, 1, 5, 11, 28);
    EXPECT(it, "d2", 0, 20);
    EXPECT(it, "grouped", 0, 3, 8);
    EXPECT(it, "gi", 0, 1, 1, 0, 1, 3, 2, 0, 2, 2);
    EXPECT(it, "gw", 0, 1 + 10, 2 + 12, 4 + 16, 5 + 18);
    end(it);
}

/* conv_transpose2d scatters each input through the kernel (PyTorch semantics). */
static void test_conv_transpose2d(void) {
    begin(MODE_EVAL);
    int x = in("x", S(4, N, 1, 2, 2)), w = in("w", S(4, 1, 1, 2, 2));
    int a = conv(OP_CONV_TRANSPOSE2D, x, w, 2, 0, 1, 1);
    ints(a, ATTR_OUTPUT_PAD, 2, 0, 0);
    out("s2", fin(a));
    int b = conv(OP_CONV_TRANSPOSE2D, x, w, 1, 0, 1, 1);
    ints(b, ATTR_OUTPUT_PAD, 2, 0, 0);
    out("s1", fin(b));
    int c = conv(OP_CONV_TRANSPOSE2D, x, w, 1, 1, 1, 1);
    ints(c, ATTR_OUTPUT_PAD, 2, 0, 0);
    out("s1p1", fin(c));
    int d = conv(OP_CONV_TRANSPOSE2D, x, w, 2, 0, 1, 1);
    ints(d, ATTR_OUTPUT_PAD, 2, 1, 1);
    out("op1", fin(d));
    struct cg_interp *it = interp(1);
    set(it, "x", 4, (float[]){1, 2, 3, 4});
    set(it, "w", 4, (float[]){1, 1, 1, 1});
    run(it);
    EXPECT(it, "s2", 0, 1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4);
    EXPECT(it, "s1", 0, 1, 3, 2, 4, 10, 6, 3, 7, 4);
    EXPECT(it, "s1p1", 0, 10);
    EXPECT(it, "op1", 0, 1, 1, 2, 2, 0, 1, 1, 2, 2, 0, 3, 3, 4, 4, 0, 3, 3, 4, 4, 0, 0, 0, 0, 0, 0);
    end(it);
}

/* ------------------------------------------------------------- pooling */

static int pool(enum op op, int x, int k, int s, int p) {
    int id = node(op, 1, x);
    ints(id, ATTR_KERNEL, 2, k, k);
    ints(id, ATTR_STRIDE, 2, s, s);
    ints(id, ATTR_PAD, 4, p, p, p, p);
    return fin(id);
}

static void test_pool(void) {
    begin(MODE_EVAL);
    int x = in("x", S(4, N, 1, 3, 3));
    out("max", pool(OP_MAXPOOL2D, x, 2, 2, 1));
    out("avg", pool(OP_AVGPOOL2D, x, 2, 2, 1));
    int dy = in("dy", S(4, N, 1, 2, 2));
    int mg = node(OP_MAXPOOL2D_GRAD, 2, in("e", S(4, N, 1, 3, 3)), dy);
    ints(mg, ATTR_KERNEL, 2, 2, 2), ints(mg, ATTR_STRIDE, 2, 1, 1), ints(mg, ATTR_PAD, 4, 0, 0, 0, 0);
    out("maxg", fin(mg));
    int ag = node(OP_AVGPOOL2D_GRAD, 2, x, dy);
    ints(ag, ATTR_KERNEL, 2, 2, 2), ints(ag, ATTR_STRIDE, 2, 2, 2), ints(ag, ATTR_PAD, 4, 1, 1, 1, 1);
    out("avgg", fin(ag));
    int u = node(OP_UPSAMPLE2D, 1, in("u", S(4, N, 1, 1, 2)));
    ints(u, ATTR_FACTOR, 2, 2, 2);
    out("up", fin(u));
    int ug = node(OP_UPSAMPLE2D_GRAD, 1, in("ud", S(4, N, 1, 2, 4)));
    ints(ug, ATTR_FACTOR, 2, 2, 2);
    out("upg", fin(ug));
    struct cg_interp *it = interp(1);
    set(it, "x", 9, (float[]){1, 2, 3, 4, 5, 6, 7, 8, 9});
    set(it, "e", 9, (float[]){1, 1, 1, 1, 1, 1, 1, 1, 1});
    set(it, "dy", 4, (float[]){1, 2, 3, 4});
    set(it, "u", 2, (float[]){1, 2});
    set(it, "ud", 8, (float[]){1, 2, 3, 4, 5, 6, 7, 8});
    run(it);
    EXPECT(it, "max", 0, 1, 3, 7, 9);
    EXPECT(it, "avg", 1e-12, 0.25, 1.25, 2.75, 7);
    /* all-equal windows of a 2x2/stride-1 pool: each gradient goes to the window's first element */
    EXPECT(it, "maxg", 0, 1, 2, 0, 3, 4, 0, 0, 0, 0);
    EXPECT(it, "avgg", 1e-12, 0.25, 0.5, 0.5, 0.75, 1, 1, 0.75, 1, 1);
    EXPECT(it, "up", 0, 1, 1, 2, 2, 1, 1, 2, 2);
    EXPECT(it, "upg", 0, 1 + 2 + 5 + 6, 3 + 4 + 7 + 8);
    end(it);
}

/* ---------------------------------------------------- dropout, batchnorm */

static void test_dropout(void) {
    begin(MODE_TRAIN);
    int x = in("x", S(2, N, 1000));
    int d = node(OP_DROPOUT, 1, x);
    ir_attr_set_f(at(d), ATTR_RATE, 0.25), ir_attr_set_i(at(d), ATTR_SEED, 42);
    out("y", fin(d));
    int g = node(OP_DROPOUT_GRAD, 1, x);
    ir_attr_set_f(at(g), ATTR_RATE, 0.25), ir_attr_set_i(at(g), ATTR_SEED, 42);
    out("g", fin(g));
    int z = node(OP_DROPOUT, 1, x);
    ir_attr_set_f(at(z), ATTR_RATE, 0.0), ir_attr_set_i(at(z), ATTR_SEED, 42);
    out("z", fin(z));
    struct cg_interp *it = interp(3);
    static float ones[3000];
    for (int i = 0; i < 3000; i++) ones[i] = 1;
    set(it, "x", 3000, ones);
    cg_interp_set_step(it, 5);
    run(it);
    static double y[3000], gv[3000], zv[3000], y2[3000];
    CHECK(cg_interp_output_f64(it, "y", y, 3000));
    CHECK(cg_interp_output_f64(it, "g", gv, 3000));
    CHECK(cg_interp_output_f64(it, "z", zv, 3000));
    int kept = 0, agree = 1, formula = 1, zero_ok = 1;
    for (int i = 0; i < 3000; i++) {
        kept += y[i] != 0;
        agree &= y[i] == gv[i];
        formula &= (y[i] != 0) == nrt_dropout_keep(42, 5, (uint64_t)i, nrt_dropout_threshold(0.25));
        formula &= y[i] == 0 || fabs(y[i] - 1 / 0.75) < 1e-12;
        zero_ok &= zv[i] == 1;
    }
    CHECK(agree);
    CHECK(formula);
    CHECK(zero_ok);
    CHECK(kept > 2100 && kept < 2400); /* 2250 expected */
    cg_interp_set_step(it, 6);
    run(it);
    CHECK(cg_interp_output_f64(it, "y", y2, 3000));
    CHECK(memcmp(y, y2, sizeof y) != 0);
    end(it);
}

static void test_batchnorm(void) {
    begin(MODE_EVAL);
    int x = in("x", S(4, N, 2, 1, 2));
    int id = node(OP_BATCHNORM, 5, x, in("g", S(1, 2)), in("b", S(1, 2)), in("m", S(1, 2)), in("v", S(1, 2)));
    ir_attr_set_f(at(id), ATTR_EPS, 1e-5);
    out("y", fin(id));
    struct cg_interp *it = interp(1);
    set(it, "x", 4, (float[]){1, 3, 2, 6});
    set(it, "g", 2, (float[]){1, 2});
    set(it, "b", 2, (float[]){0, 1});
    set(it, "m", 2, (float[]){2, 4});
    set(it, "v", 2, (float[]){1, 4});
    run(it);
    double r1 = 1 / sqrt(1 + 1e-5), r2 = 1 / sqrt(4 + 1e-5);
    EXPECT(it, "y", 1e-12, -r1, r1, 2 * -2 * r2 + 1, 2 * 2 * r2 + 1);
    end(it);
}

/* Rows [1, 2, 3, 4] and [5, 5, 5, 5]: mean 2.5, var 1.25; a constant row is 0,
 * and its gradient rstd (dy - mean(dy)) (y = 0). */
static void test_layernorm(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 4));
    int id = node(OP_LAYERNORM, 1, x);
    ir_attr_set_f(at(id), ATTR_EPS, 1e-5);
    out("y", fin(id));
    int g = node(OP_LAYERNORM_GRAD, 2, x, in("dy", S(2, N, 4)));
    ir_attr_set_f(at(g), ATTR_EPS, 1e-5);
    out("dx", fin(g));
    struct cg_interp *it = interp(2);
    set(it, "x", 8, (float[]){1, 2, 3, 4, 5, 5, 5, 5});
    set(it, "dy", 8, (float[]){1, 0, 0, 0, 1, 2, 3, 6});
    run(it);
    double r = 1 / sqrt(1.25 + 1e-5), r0 = 1 / sqrt(1e-5);
    EXPECT(it, "y", 1e-12, -1.5 * r, -0.5 * r, 0.5 * r, 1.5 * r, 0, 0, 0, 0);
    /* row 1: y_j = (j - 1.5) r, mean(dy) = 0.25, mean(dy y) = -1.5 r / 4 */
    double c = -1.5 * r / 4;
    EXPECT(it, "dx", 1e-9, r * (1 - 0.25 + 1.5 * r * c), r * (-0.25 + 0.5 * r * c), r * (-0.25 - 0.5 * r * c),
           r * (-0.25 - 1.5 * r * c), r0 * (1 - 3), r0 * (2 - 3), r0 * (3 - 3), r0 * (6 - 3));
    end(it);
}

/* ----------------------------------------------------- effects, errors */

static void test_assign_commit(void) {
    begin(MODE_TRAIN);
    int s = leaf(OP_PARAM, BUF_STATE, "s", DT_F32, S(1, 2));
    int k = ir_node_add(M, F, OP_CONST, NULL, 0, LOC_NONE);
    at(k)->type = (struct type){DT_F32, S(0)};
    ir_attr_set_f(at(k), ATTR_VALUE, 1.0);
    fin(k);
    int a = node(OP_ASSIGN, 1, op2(OP_ADD, s, k));
    ir_set_sym(M, at(a), "s");
    fin(a);
    out("read", op2(OP_MUL, s, k)); /* sees the value at the start of the run */
    struct cg_interp *it = interp(1);
    set(it, "s", 2, (float[]){1, 2});
    run(it);
    EXPECT(it, "read", 0, 1, 2);
    float got[2];
    CHECK(cg_interp_assigned_f32(it, "s", got, 2));
    ASSERT_NEAR(2, got[0], 0);
    ASSERT_NEAR(3, got[1], 0);
    run(it);
    EXPECT(it, "read", 0, 1, 2); /* not committed yet */
    cg_interp_commit(it);
    run(it);
    EXPECT(it, "read", 0, 2, 3);
    end(it);
}

static void test_errors(void) {
    begin(MODE_EVAL);
    int x = in("x", S(2, N, 3));
    out("y", op1(OP_NEG, x));
    struct cg_interp *it = interp(2);
    CHECK(!cg_interp_run(it));
    CHECK(strstr(cg_interp_error(it), "buffer 'x' was not set") != NULL);
    CHECK(!cg_interp_set_f32(it, "x", (float[]){1, 2, 3}, 3));
    CHECK(strstr(cg_interp_error(it), "holds 6 elements, got 3") != NULL);
    CHECK(!cg_interp_set_f32(it, "nope", (float[]){1}, 1));
    CHECK(strstr(cg_interp_error(it), "no buffer named 'nope'") != NULL);
    CHECK(!cg_interp_set_i32(it, "x", (int32_t[]){1, 2, 3, 4, 5, 6}, 6));
    double y[6];
    CHECK(!cg_interp_output_f64(it, "y", y, 6)); /* no complete run yet */
    set(it, "x", 6, (float[]){1, 2, 3, 4, 5, 6});
    run(it);
    CHECK(!cg_interp_output_f64(it, "z", y, 6));
    CHECK(!cg_interp_output_f64(it, "y", y, 5));
    ASSERT(6, (long long)cg_interp_output_count(it, "y"));
    float f;
    CHECK(!cg_interp_assigned_f32(it, "x", &f, 1));
    end(it);
}

int main(void) {
    test_unary();
    test_binary();
    test_cast_const();
    test_reductions();
    test_matmul();
    test_shape_ops();
    test_softmax();
    test_losses();
    test_label_range();
    test_conv2d();
    test_conv_transpose2d();
    test_pool();
    test_dropout();
    test_batchnorm();
    test_layernorm();
    test_assign_commit();
    test_errors();
    TEST_DONE();
}
