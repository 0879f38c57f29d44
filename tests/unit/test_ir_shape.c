/* tests/unit/test_ir_shape.c -- the shape rules of ir/shape.c: output types of each
 * op family built through the IR API, and the messages of rejected combinations,
 * which must name both shapes. Also checks that every op of the table has a row
 * with a name and a sane arity, and that attribute slots are laid out. */
#include "ir/ir.h"
#include "test.h"

#include <string.h>

static struct ir_module *m;
static struct ir_func *f;

static struct type ty(enum dtype dt, int rank, ...) {
    struct type t;
    memset(&t, 0, sizeof t);
    t.dtype = dt;
    t.shape.rank = rank;
    va_list ap;
    va_start(ap, rank);
    for (int i = 0; i < rank; i++) t.shape.dim[i] = va_arg(ap, int);
    va_end(ap);
    return t;
}

#define N IR_DIM_N

/* A value of the given type: an input buffer read by an INPUT node. */
static int val(const char *name, struct type t) {
    ir_buffer_add(m, BUF_INPUT, name, t, LOC_NONE);
    int id = ir_node_add(m, f, OP_INPUT, NULL, 0, LOC_NONE);
    ir_set_sym(m, &f->nodes[id], name);
    char err[256];
    if (!ir_infer(m, f, id, err, sizeof err)) fprintf(stderr, "val %s: %s\n", name, err);
    return id;
}

static char err[256];
static char got[TYPE_STR_MAX];

/* Add `op` on the operands, infer; return the type string or "ERR". */
static const char *infer(int id) {
    if (!ir_infer(m, f, id, err, sizeof err)) return "ERR";
    return type_str(&f->nodes[id].type, got, sizeof got);
}

static int node(enum op op, int a, int b) {
    int args[2] = {a, b};
    return ir_node_add(m, f, op, args, op_info[op].arity == 1 ? 1 : 2, LOC_NONE);
}

static void fresh(void) {
    if (m) ir_module_free(m);
    m = ir_module_new("t");
    f = ir_func_add(m, "forward", MODE_EVAL);
}

#define ASSERT_STR(expected, actual)                                                \
    do {                                                                            \
        const char *e_ = (expected), *a_ = (actual);                                \
        if (strcmp(e_, a_) == 0)                                                    \
            test_passed++;                                                          \
        else                                                                        \
            TEST_FAIL_("%s => \"%s\", expected \"%s\" (%s)", #actual, a_, e_, err); \
    } while (0)

#define ASSERT_HAS(needle, hay)                                            \
    do {                                                                   \
        if (strstr((hay), (needle)))                                       \
            test_passed++;                                                 \
        else                                                               \
            TEST_FAIL_("\"%s\" does not contain \"%s\"", (hay), (needle)); \
    } while (0)

static void test_table(void) {
    for (int op = 0; op < OP_COUNT; op++) {
        CHECK(op_info[op].name && op_info[op].name[0]);
        CHECK(op_info[op].arity >= -1 && op_info[op].arity <= 5);
        ASSERT(op, op_lookup(op_info[op].name));
        for (int a = 0; a < op_info[op].nattrs; a++) CHECK(op_attr(op, op_info[op].attrs[a].name) != NULL);
    }
    ASSERT(-1, op_lookup("nosuch"));
    ASSERT(OP_CONV2D, op_lookup("conv2d"));
    const struct attr_desc *pad = op_attr(OP_CONV2D, "pad");
    ASSERT(AK_INTS, pad->kind);
    ASSERT(4, pad->count);
    ASSERT(AK_LIST, op_attr(OP_SUM, "axes")->kind);
}

static void test_elementwise(void) {
    fresh();
    int x = val("x", ty(DT_F32, 2, N, 3)), b = val("b", ty(DT_F32, 1, 3)), c = val("c", ty(DT_F32, 2, N, 1));
    int y = val("y", ty(DT_F32, 2, N, 4)), l = val("l", ty(DT_I32, 1, N));
    ASSERT_STR("f32[N,3]", infer(node(OP_ADD, x, b)));
    ASSERT_STR("f32[N,4]", infer(node(OP_MUL, c, y)));
    ASSERT_STR("f32[N,3]", infer(node(OP_RELU, x, 0)));
    ASSERT_STR("ERR", infer(node(OP_ADD, x, y)));
    ASSERT_HAS("f32[N,3] and f32[N,4] do not broadcast", err);
    ASSERT_STR("ERR", infer(node(OP_SUB, x, l)));
    ASSERT_HAS("i32[N]", err);
    ASSERT_STR("ERR", infer(node(OP_SIGMOID, l, 0)));
    ASSERT_HAS("expects an f32 operand, got i32[N]", err);
    int ba = node(OP_BIAS_ADD, y, b);
    ir_attr_set_i(&f->nodes[ba], ATTR_AXIS, 1);
    ASSERT_STR("ERR", infer(ba));
    ASSERT_HAS("f32[3]", err);
    ASSERT_HAS("f32[N,4]", err);
}

static void test_matmul_reduce(void) {
    fresh();
    int x = val("x", ty(DT_F32, 2, N, 784)), w = val("w", ty(DT_F32, 2, 784, 128));
    int w2 = val("w2", ty(DT_F32, 2, 10, 784)), img = val("img", ty(DT_F32, 4, N, 1, 28, 28));
    ASSERT_STR("f32[N,128]", infer(node(OP_MATMUL, x, w)));
    int t = node(OP_MATMUL, x, w2);
    ir_attr_set_i(&f->nodes[t], ATTR_TRANSPOSE_B, 1);
    ASSERT_STR("f32[N,10]", infer(t));
    int ta = node(OP_MATMUL, x, x);
    ir_attr_set_i(&f->nodes[ta], ATTR_TRANSPOSE_A, 1);
    ASSERT_STR("f32[784,784]", infer(ta));
    ASSERT_STR("ERR", infer(node(OP_MATMUL, img, w)));
    ASSERT_HAS("matmul of f32[N,1,28,28] and f32[784,128]: inner dimensions differ", err);
    int v = val("v", ty(DT_F32, 1, 784));
    ASSERT_STR("ERR", infer(node(OP_MATMUL, x, v)));
    ASSERT_HAS("rank 2 or more, got f32[N,784] and f32[784]", err);
    /* batched: broadcast batch dims (torch.matmul) */
    int q = val("q", ty(DT_F32, 4, N, 4, 7, 16)), k = val("k", ty(DT_F32, 3, 4, 9, 16));
    int qk = node(OP_MATMUL, q, k);
    ir_attr_set_i(&f->nodes[qk], ATTR_TRANSPOSE_B, 1);
    ASSERT_STR("f32[N,4,7,9]", infer(qk));
    int k3 = val("k3", ty(DT_F32, 3, 3, 16, 9));
    ASSERT_STR("ERR", infer(node(OP_MATMUL, q, k3)));
    ASSERT_HAS("batch dims do not broadcast", err);
    int xn = val("xn", ty(DT_F32, 3, N, 5, 784));
    ASSERT_STR("f32[N,5,128]", infer(node(OP_MATMUL, xn, w)));
    int aN = val("aN", ty(DT_F32, 3, 2, N, 3)), bN = val("bN", ty(DT_F32, 3, N, 3, 4));
    ASSERT_STR("ERR", infer(node(OP_MATMUL, aN, bN)));
    ASSERT_STR("ERR", infer(node(OP_MATMUL, x, w2)));
    ASSERT_HAS("inner dimensions differ", err);

    int s = node(OP_SUM, img, 0);
    ir_attr_set_v(&f->nodes[s], ATTR_AXES, (int64_t[]){0, 2, 3}, 3);
    ASSERT_STR("f32[1]", infer(s));
    int mk = node(OP_MEAN, img, 0);
    ir_attr_set_v(&f->nodes[mk], ATTR_AXES, (int64_t[]){1}, 1);
    ir_attr_set_i(&f->nodes[mk], ATTR_KEEPDIMS, 1);
    ASSERT_STR("f32[N,1,28,28]", infer(mk));
    ASSERT_STR("f32[]", infer(node(OP_SUM, x, 0)));
    int am = node(OP_ARGMAX, x, 0);
    ir_attr_set_i(&f->nodes[am], ATTR_AXIS, 1);
    ASSERT_STR("i32[N]", infer(am));
    int bad = node(OP_SUM, x, 0);
    ir_attr_set_v(&f->nodes[bad], ATTR_AXES, (int64_t[]){2}, 1);
    ASSERT_STR("ERR", infer(bad));
    ASSERT_HAS("axis 2 is out of range", err);
}

static void test_shape_ops(void) {
    fresh();
    int img = val("img", ty(DT_F32, 4, N, 64, 5, 5)), seq = val("seq", ty(DT_F32, 3, N, 10, 3));
    int r = node(OP_RESHAPE, img, 0);
    f->nodes[r].type = ty(DT_F32, 2, N, 1600);
    ASSERT_STR("f32[N,1600]", infer(r));
    int r2 = node(OP_RESHAPE, img, 0);
    f->nodes[r2].type = ty(DT_F32, 2, N, 1601);
    ASSERT_STR("ERR", infer(r2));
    ASSERT_HAS("cannot reshape f32[N,64,5,5] to f32[N,1601]", err);
    int sl = node(OP_SLICE, seq, 0);
    ir_attr_set_i(&f->nodes[sl], ATTR_AXIS, 1);
    ir_attr_set_i(&f->nodes[sl], ATTR_START, 9);
    ir_attr_set_i(&f->nodes[sl], ATTR_SIZE, 1);
    ASSERT_STR("f32[N,1,3]", infer(sl));
    ir_attr_set_i(&f->nodes[sl], ATTR_START, 10);
    ASSERT_STR("ERR", infer(sl));
    int tr = node(OP_TRANSPOSE, seq, 0);
    ir_attr_set_v(&f->nodes[tr], ATTR_PERM, (int64_t[]){1, 0, 2}, 3);
    ASSERT_STR("f32[10,N,3]", infer(tr));
    ir_attr_set_v(&f->nodes[tr], ATTR_PERM, (int64_t[]){1, 1, 2}, 3);
    ASSERT_STR("ERR", infer(tr));
    int args[3] = {seq, seq, seq};
    int cc = ir_node_add(m, f, OP_CONCAT, args, 3, LOC_NONE);
    ir_attr_set_i(&f->nodes[cc], ATTR_AXIS, 2);
    ASSERT_STR("f32[N,10,9]", infer(cc));
    ir_attr_set_i(&f->nodes[cc], ATTR_AXIS, 0);
    ASSERT_STR("ERR", infer(cc));
    ASSERT_HAS("batch dim N", err);
}

static void conv_attrs(int id, int s, int p, int d, int g) {
    struct ir_node *n = &f->nodes[id];
    ir_attr_set_v(n, ATTR_STRIDE, (int64_t[]){s, s}, 2);
    ir_attr_set_v(n, ATTR_PAD, (int64_t[]){p, p, p, p}, 4);
    ir_attr_set_v(n, ATTR_DILATION, (int64_t[]){d, d}, 2);
    ir_attr_set_i(n, ATTR_GROUPS, g);
}

static void test_conv_pool(void) {
    fresh();
    int x = val("x", ty(DT_F32, 4, N, 1, 28, 28)), w = val("w", ty(DT_F32, 4, 32, 1, 3, 3));
    int w3 = val("w3", ty(DT_F32, 4, 32, 3, 3, 3)), wg = val("wg", ty(DT_F32, 4, 8, 2, 3, 3));
    int x4 = val("x4", ty(DT_F32, 4, N, 4, 9, 9));
    int c = node(OP_CONV2D, x, w);
    conv_attrs(c, 1, 0, 1, 1);
    ASSERT_STR("f32[N,32,26,26]", infer(c));
    conv_attrs(c, 2, 1, 1, 1);
    ASSERT_STR("f32[N,32,14,14]", infer(c));
    conv_attrs(c, 1, 0, 2, 1);
    ASSERT_STR("f32[N,32,24,24]", infer(c));
    int bad = node(OP_CONV2D, x, w3);
    conv_attrs(bad, 1, 0, 1, 1);
    ASSERT_STR("ERR", infer(bad));
    ASSERT_HAS("f32[N,1,28,28] has 1 channels but weight f32[32,3,3,3] expects 3", err);
    int g = node(OP_CONV2D, x4, wg);
    conv_attrs(g, 2, 1, 1, 2);
    ASSERT_STR("f32[N,8,5,5]", infer(g));

    int gi = node(OP_CONV2D_GRAD_INPUT, c, w);
    conv_attrs(c, 1, 0, 1, 1);
    infer(c);
    conv_attrs(gi, 1, 0, 1, 1);
    f->nodes[gi].type = ty(DT_F32, 4, N, 1, 28, 28);
    ASSERT_STR("f32[N,1,28,28]", infer(gi));
    int gw = node(OP_CONV2D_GRAD_WEIGHT, x, c);
    conv_attrs(gw, 1, 0, 1, 1);
    f->nodes[gw].type = ty(DT_F32, 4, 32, 1, 3, 3);
    ASSERT_STR("f32[32,1,3,3]", infer(gw));

    int z = val("z", ty(DT_F32, 4, N, 128, 7, 7)), wt = val("wt", ty(DT_F32, 4, 128, 64, 4, 4));
    int t = node(OP_CONV_TRANSPOSE2D, z, wt);
    conv_attrs(t, 2, 1, 1, 1);
    ir_attr_set_v(&f->nodes[t], ATTR_OUTPUT_PAD, (int64_t[]){0, 0}, 2);
    ASSERT_STR("f32[N,64,14,14]", infer(t));

    int p = node(OP_MAXPOOL2D, c, 0);
    ir_attr_set_v(&f->nodes[p], ATTR_KERNEL, (int64_t[]){2, 2}, 2);
    ir_attr_set_v(&f->nodes[p], ATTR_STRIDE, (int64_t[]){2, 2}, 2);
    ASSERT_STR("f32[N,32,13,13]", infer(p));
    int pg = node(OP_MAXPOOL2D_GRAD, c, p);
    ir_attr_set_v(&f->nodes[pg], ATTR_KERNEL, (int64_t[]){2, 2}, 2);
    ir_attr_set_v(&f->nodes[pg], ATTR_STRIDE, (int64_t[]){2, 2}, 2);
    ASSERT_STR("f32[N,32,26,26]", infer(pg));
    int big = node(OP_MAXPOOL2D, x, 0);
    ir_attr_set_v(&f->nodes[big], ATTR_KERNEL, (int64_t[]){30, 30}, 2);
    ir_attr_set_v(&f->nodes[big], ATTR_STRIDE, (int64_t[]){1, 1}, 2);
    ASSERT_STR("ERR", infer(big));
    ASSERT_HAS("does not fit the input f32[N,1,28,28]", err);
}

static void test_losses(void) {
    fresh();
    int lg = val("logits", ty(DT_F32, 2, N, 10)), lb = val("label", ty(DT_I32, 1, N));
    int oh = val("onehot", ty(DT_F32, 2, N, 10)), p = val("p", ty(DT_F32, 2, N, 1));
    int bad = val("bad", ty(DT_I32, 1, 10));
    ASSERT_STR("f32[]", infer(node(OP_CROSS_ENTROPY, lg, lb)));
    ASSERT_STR("f32[]", infer(node(OP_CROSS_ENTROPY, lg, oh)));
    ASSERT_STR("f32[]", infer(node(OP_ACCURACY, lg, lb)));
    ASSERT_STR("ERR", infer(node(OP_CROSS_ENTROPY, lg, bad)));
    ASSERT_HAS("i32[10]", err);
    ASSERT_STR("ERR", infer(node(OP_MSE, lg, p)));
    ASSERT_HAS("f32[N,10] and a target f32[N,1]", err);
    int one = ir_node_add(m, f, OP_CONST, NULL, 0, LOC_NONE);
    f->nodes[one].type = ty(DT_F32, 0);
    int args[3] = {lg, lb, one};
    int g = ir_node_add(m, f, OP_CROSS_ENTROPY_GRAD, args, 3, LOC_NONE);
    ASSERT_STR("f32[N,10]", infer(g));
}

static void test_arity_and_buffers(void) {
    fresh();
    int x = val("x", ty(DT_F32, 2, N, 3));
    int bad = ir_node_add(m, f, OP_ADD, &x, 1, LOC_NONE);
    ASSERT_STR("ERR", infer(bad));
    ASSERT_HAS("add takes 2 operands, got 1", err);
    int p = ir_node_add(m, f, OP_PARAM, NULL, 0, LOC_NONE);
    ir_set_sym(m, &f->nodes[p], "missing");
    ASSERT_STR("ERR", infer(p));
    ASSERT_HAS("unknown buffer @missing", err);
    int q = ir_node_add(m, f, OP_PARAM, NULL, 0, LOC_NONE);
    ir_set_sym(m, &f->nodes[q], "x");
    ASSERT_STR("ERR", infer(q));
    ASSERT_HAS("which is an input", err);
}

int main(void) {
    test_table();
    test_elementwise();
    test_matmul_reduce();
    test_shape_ops();
    test_conv_pool();
    test_losses();
    test_arity_and_buffers();
    ir_module_free(m);
    TEST_DONE();
}
