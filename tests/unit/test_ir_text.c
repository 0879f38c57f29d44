/* tests/unit/test_ir_text.c -- the IR text form: a module that uses every op of the
 * table, built through the API, must print -> parse -> print byte-identically (with
 * and without locations, before and after the memory plan) and verify; malformed texts must fail with a
 * precise file:line:col message; and random mutations of valid text must never crash the parser, the printer
 * or the verifier (run it under ASan/UBSan). */
#include "codegen/codegen.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <string.h>

/* ------------------------------------------------------------- helpers */

/* Everything printed by fn(out, m), as a malloc'd string. */
static char *print_str(const struct ir_module *m, void (*fn)(FILE *, const struct ir_module *)) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fn(f, m);
    fclose(f);
    return buf;
}

static char *diag_buf;    /* diagnostics captured since capture_begin */
static size_t diag_len;   /* their length */
static FILE *diag_stream; /* the memstream behind diag_buf */

static void capture_begin(void) {
    diag_stream = open_memstream(&diag_buf, &diag_len);
    diag_set_stream(diag_stream);
    diag_reset();
}

/* Stop capturing; returns the text (freed by the next capture_end). */
static const char *capture_end(void) {
    static char *last;
    fclose(diag_stream);
    diag_set_stream(NULL);
    free(last);
    last = diag_buf;
    diag_buf = NULL;
    return last;
}

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

static struct ir_module *M; /* module under construction */
static struct ir_func *F;   /* function under construction */
static bool covered[OP_COUNT];

/* Append a node with up to 5 operands (-1 ends the list). */
static int add(enum op op, int a, int b, int c, int d, int e) {
    int args[5] = {a, b, c, d, e}, n = 0;
    while (n < 5 && args[n] >= 0) n++;
    covered[op] = true;
    return ir_node_add(M, F, op, args, n, (struct loc){NULL, 0, 0});
}
#define A0(op) add(OP_##op, -1, -1, -1, -1, -1)
#define A1(op, x) add(OP_##op, x, -1, -1, -1, -1)
#define A2(op, x, y) add(OP_##op, x, y, -1, -1, -1)
#define A3(op, x, y, z) add(OP_##op, x, y, z, -1, -1)
#define ND(id) (&F->nodes[id])

/* Infer node id's type; the module must be well-typed. */
static int fin(int id) {
    char err[256];
    if (!ir_infer(M, F, id, err, sizeof err)) {
        fprintf(stderr, "infer %%%d (%s): %s\n", id, op_info[F->nodes[id].op].name, err);
        test_failed++;
    }
    return id;
}

/* A node whose type is (partly) its own: set it, then let the rule check it. */
static int hint(int id, struct type t) {
    F->nodes[id].type = t;
    return fin(id);
}

static void set2(int id, struct attr_v name, int64_t a, int64_t b) {
    int64_t v[2] = {a, b};
    ir_attr_set_v(ND(id), name, v, 2);
}

static void set4(int id, struct attr_v name, int64_t a, int64_t b, int64_t c, int64_t d) {
    int64_t v[4] = {a, b, c, d};
    ir_attr_set_v(ND(id), name, v, 4);
}

static void conv_attrs(int id, int pad) {
    set2(id, ATTR_STRIDE, 1, 1);
    set4(id, ATTR_PAD, pad, pad, pad, pad);
    set2(id, ATTR_DILATION, 1, 1);
    ir_attr_set_i(ND(id), ATTR_GROUPS, 1);
}

static void pool_attrs(int id) {
    set2(id, ATTR_KERNEL, 2, 2);
    set2(id, ATTR_STRIDE, 2, 2);
    set4(id, ATTR_PAD, 0, 0, 0, 0);
}

/* A module with every op of the table, each with a type its rule accepts. */
static struct ir_module *build_all_ops(void) {
    M = ir_module_new("all_ops");
    M->train.batch = 32, M->train.epochs = 2, M->train.seed = 7, M->train.patience = 3;
    int b;
    ir_buffer_add(M, BUF_INPUT, "x", ty(DT_F32, 2, N, 4), LOC_NONE);
    b = ir_buffer_add(M, BUF_INPUT, "img", ty(DT_F32, 4, N, 2, 8, 8), LOC_NONE);
    M->buffers[b].data = (struct ir_source){
        "idx", "dir with \"quotes\"\\and\ttab/\xc3\xa9.gz", 0, {0, 0}, 1, {"scale"}, {1 / 255.0}};
    M->buffers[b].test = (struct ir_source){"normal", NULL, 2, {0, 1}, 0, {NULL}, {0}};
    b = ir_buffer_add(M, BUF_INPUT, "label", ty(DT_I32, 1, N), LOC_NONE);
    M->buffers[b].data = (struct ir_source){"csv", "l.csv", 0, {0, 0}, 2, {"column", "classes"}, {3, 10}};
    static const struct {
        const char *name;
        enum buf_kind kind;
        struct ir_init init;
    } ps[] = {
        {"w", BUF_PARAM, {INIT_UNIFORM, -0.5, 0.5}},   {"bias", BUF_PARAM, {INIT_ZEROS, 0, 0}},
        {"k", BUF_PARAM, {INIT_NORMAL, 0, 0.1}},       {"kt", BUF_PARAM, {INIT_NORMAL, 0, 0.02}},
        {"gamma", BUF_PARAM, {INIT_CONST, 1, 0}},      {"beta", BUF_PARAM, {INIT_ZEROS, 0, 0}},
        {"bn.mean", BUF_STATE, {INIT_ZEROS, 0, 0}},    {"bn.var", BUF_STATE, {INIT_CONST, 1, 0}},
        {"odd name-1", BUF_STATE, {INIT_ZEROS, 0, 0}}, {"forget", BUF_PARAM, {INIT_RANGE, 1, 3}},
    };
    struct type pt[] = {ty(DT_F32, 2, 4, 3),       ty(DT_F32, 1, 3), ty(DT_F32, 4, 4, 2, 3, 3),
                        ty(DT_F32, 4, 4, 2, 3, 3), ty(DT_F32, 1, 4), ty(DT_F32, 1, 4),
                        ty(DT_F32, 1, 4),          ty(DT_F32, 1, 4), ty(DT_F32, 0),
                        ty(DT_F32, 1, 4)};
    for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) {
        b = ir_buffer_add(M, ps[i].kind, ps[i].name, pt[i], LOC_NONE);
        M->buffers[b].init = ps[i].init;
        if (ps[i].kind == BUF_PARAM) M->buffers[b].group = i < 2 ? "main" : "conv net";
    }

    F = ir_func_add(M, "train_step", MODE_TRAIN);
    F->loss = "loss";
    F->optim.kind = "adam";
    F->optim.nkw = 3;
    F->optim.kw[0] = "lr", F->optim.kw[1] = "beta1", F->optim.kw[2] = "eps";
    F->optim.kwval[0] = 0.001, F->optim.kwval[1] = 0.9, F->optim.kwval[2] = 1e-8;
    F->optim.schedule = (struct ir_source){"step", NULL, 0, {0, 0}, 2, {"every", "gamma"}, {5, 0.5}};
    vec_push(F->update, "main");
    vec_push(F->update, "conv net");

    int x = A0(INPUT), w = A0(PARAM), bias = A0(PARAM), img = A0(INPUT), k = A0(PARAM), kt = A0(PARAM);
    int label = A0(INPUT), gamma = A0(PARAM), beta = A0(PARAM), mean = A0(PARAM), var = A0(PARAM);
    ir_set_sym(M, ND(x), "x");
    ir_set_sym(M, ND(w), "w");
    ir_set_sym(M, ND(bias), "bias");
    ir_set_sym(M, ND(img), "img");
    ir_set_sym(M, ND(k), "k");
    ir_set_sym(M, ND(kt), "kt");
    ir_set_sym(M, ND(label), "label");
    ir_set_sym(M, ND(gamma), "gamma");
    ir_set_sym(M, ND(beta), "beta");
    ir_set_sym(M, ND(mean), "bn.mean");
    ir_set_sym(M, ND(var), "bn.var");
    for (int i = 0; i <= var; i++) fin(i);
    int c = A0(CONST);
    ir_attr_set_f(ND(c), ATTR_VALUE, 0.5);
    hint(c, ty(DT_F32, 0));

    /* Elementwise. */
    int e = fin(A1(NEG, x));
    e = fin(A1(EXP, e));
    e = fin(A1(LOG, e));
    e = fin(A1(SQRT, e));
    e = fin(A1(ABS, e));
    e = fin(A1(RELU, e));
    int lr = A1(LEAKY_RELU, e);
    ir_attr_set_f(ND(lr), ATTR_ALPHA, 0.01);
    fin(lr);
    e = fin(A1(SIGMOID, lr));
    e = fin(A1(TANH, e));
    e = fin(A1(STOP_GRADIENT, e));
    int ar = A1(ALLREDUCE, e);
    ir_attr_set_i(ND(ar), ATTR_BUCKET, 2);
    e = fin(ar);
    e = fin(A1(ALLREDUCE_SUM, e));
    int ci = hint(A1(CAST, e), ty(DT_I32, 2, N, 4));
    e = fin(A2(ADD, e, c));
    e = fin(A2(SUB, e, x));
    e = fin(A2(MUL, e, x));
    e = fin(A2(DIV, e, c));
    e = fin(A2(MAXIMUM, e, x));
    e = fin(A2(POW, e, c));
    e = fin(A2(GREATER, e, x));
    e = fin(A2(RELU_GRAD, x, e));
    int lg = A2(LEAKY_RELU_GRAD, x, e);
    ir_attr_set_f(ND(lg), ATTR_ALPHA, -0.25);
    e = fin(lg);
    e = fin(A2(SIGMOID_GRAD, x, e));
    e = fin(A2(TANH_GRAD, x, e));
    (void)ci;

    /* Contraction, reductions, shape ops. */
    int mm = A2(MATMUL, e, w);
    fin(mm);
    int ba = A2(BIAS_ADD, mm, bias);
    ir_attr_set_i(ND(ba), ATTR_AXIS, 1);
    fin(ba);
    int64_t ax1[] = {1}, none[1] = {0};
    int r = A1(SUM, ba);
    ir_attr_set_v(ND(r), ATTR_AXES, ax1, 1);
    ir_attr_set_i(ND(r), ATTR_KEEPDIMS, 1);
    fin(r);
    r = A1(MEAN, ba);
    ir_attr_set_v(ND(r), ATTR_AXES, none, 0);
    fin(r);
    r = A1(MAX, ba);
    ir_attr_set_v(ND(r), ATTR_AXES, ax1, 1);
    fin(r);
    r = A1(VARIANCE, ba);
    ir_attr_set_v(ND(r), ATTR_AXES, ax1, 1);
    ir_attr_set_i(ND(r), ATTR_KEEPDIMS, 1);
    fin(r);
    int am = A1(ARGMAX, ba);
    ir_attr_set_i(ND(am), ATTR_AXIS, 1);
    fin(am);
    int st = hint(A1(SUM_TO, ba), ty(DT_F32, 1, 3));
    int bt = hint(A1(BROADCAST_TO, st), ty(DT_F32, 2, N, 3));
    int rs = hint(A1(RESHAPE, bt), ty(DT_F32, 3, N, 1, 3));
    int64_t perm[] = {0, 2, 1};
    int tr = A1(TRANSPOSE, rs);
    ir_attr_set_v(ND(tr), ATTR_PERM, perm, 3);
    fin(tr);
    int sl = A1(SLICE, ba);
    ir_attr_set_i(ND(sl), ATTR_AXIS, 1);
    ir_attr_set_i(ND(sl), ATTR_START, 1);
    ir_attr_set_i(ND(sl), ATTR_SIZE, 2);
    fin(sl);
    int pd = A1(PAD, sl);
    ir_attr_set_i(ND(pd), ATTR_AXIS, 1);
    ir_attr_set_i(ND(pd), ATTR_BEFORE, 0);
    ir_attr_set_i(ND(pd), ATTR_AFTER, 1);
    fin(pd);
    int cc = A3(CONCAT, ba, pd, ba);
    ir_attr_set_i(ND(cc), ATTR_AXIS, 1);
    fin(cc);
    int sm = A1(SOFTMAX, cc);
    int ls = A1(LOG_SOFTMAX, cc);
    int sg = A2(SOFTMAX_GRAD, sm, cc);
    int lsg = A2(LOG_SOFTMAX_GRAD, ls, cc);
    ir_attr_set_i(ND(sm), ATTR_AXIS, 1);
    ir_attr_set_i(ND(ls), ATTR_AXIS, 1);
    ir_attr_set_i(ND(sg), ATTR_AXIS, 1);
    ir_attr_set_i(ND(lsg), ATTR_AXIS, 1);
    fin(sm), fin(ls), fin(sg), fin(lsg);

    /* The transformer ops: erf, gelu (its gradient, its derivative), attn_softmax, attention, matmul_bsum. */
    int ef = fin(A1(ERF, x));
    int ge = A1(GELU, ef);
    ir_attr_set_i(ND(ge), ATTR_APPROXIMATE, 1);
    fin(ge);
    int gg = A2(GELU_GRAD, ef, ge);
    ir_attr_set_i(ND(gg), ATTR_APPROXIMATE, 0);
    fin(gg);
    int gd = A1(GELU_DERIV, ef);
    ir_attr_set_i(ND(gd), ATTR_APPROXIMATE, 1);
    fin(gd);
    int asm_ = A1(ATTN_SOFTMAX, tr);
    ir_attr_set_f(ND(asm_), ATTR_SCALE, 0.25);
    ir_attr_set_i(ND(asm_), ATTR_CAUSAL, 1);
    fin(asm_);
    int bs = A2(MATMUL_BSUM, tr, asm_);
    ir_attr_set_i(ND(bs), ATTR_TRANSPOSE_A, 1);
    ir_attr_set_i(ND(bs), ATTR_TRANSPOSE_B, 0);
    fin(bs);
    int at = A1(ATTENTION, rs);
    ir_attr_set_i(ND(at), ATTR_HEADS, 1);
    ir_attr_set_f(ND(at), ATTR_SCALE, 0.5);
    ir_attr_set_i(ND(at), ATTR_CAUSAL, 1);
    fin(at);
    int atg = A3(ATTENTION_GRAD, rs, at, at);
    ir_attr_set_i(ND(atg), ATTR_HEADS, 1);
    ir_attr_set_f(ND(atg), ATTR_SCALE, 0.5);
    ir_attr_set_i(ND(atg), ATTR_CAUSAL, 1);
    fin(atg);
    int lnm = A1(LAYERNORM, asm_);
    ir_attr_set_f(ND(lnm), ATTR_EPS, 1e-5);
    fin(lnm);
    int lng = A2(LAYERNORM_GRAD, asm_, lnm);
    ir_attr_set_f(ND(lng), ATTR_EPS, 1e-5);
    fin(lng);
    fin(A2(LAYERNORM_GRAD_SUMS, lnm, lng));

    /* Losses and metrics. */
    int one = A0(CONST);
    ir_attr_set_f(ND(one), ATTR_VALUE, 1);
    hint(one, ty(DT_F32, 0));
    int loss = fin(A2(CROSS_ENTROPY, ls, label));
    fin(A2(MSE, sm, lsg));
    fin(A2(BCE, sm, sm));
    fin(A2(BCE_LOGITS, cc, sm));
    fin(A2(HINGE, cc, sm));
    fin(A3(MSE_GRAD, sm, lsg, one));
    fin(A3(CROSS_ENTROPY_GRAD, ls, label, one));
    fin(A3(BCE_GRAD, sm, sm, one));
    fin(A3(BCE_LOGITS_GRAD, cc, sm, one));
    fin(A3(HINGE_GRAD, cc, sm, one));
    int acc = fin(A2(ACCURACY, cc, label));

    /* Convolution, pooling, dropout, batch norm. */
    int cv = A2(CONV2D, img, k);
    conv_attrs(cv, 1);
    fin(cv);
    int gi = A2(CONV2D_GRAD_INPUT, cv, k);
    conv_attrs(gi, 1);
    hint(gi, ty(DT_F32, 4, N, 2, 8, 8));
    int gw = A2(CONV2D_GRAD_WEIGHT, img, cv);
    conv_attrs(gw, 1);
    hint(gw, ty(DT_F32, 4, 4, 2, 3, 3));
    int ct = A2(CONV_TRANSPOSE2D, cv, kt);
    conv_attrs(ct, 0);
    set2(ct, ATTR_STRIDE, 2, 2);
    set2(ct, ATTR_OUTPUT_PAD, 1, 0);
    fin(ct);
    int mp = A1(MAXPOOL2D, cv);
    pool_attrs(mp);
    fin(mp);
    int ap = A1(AVGPOOL2D, cv);
    pool_attrs(ap);
    fin(ap);
    int mpg = A2(MAXPOOL2D_GRAD, cv, mp);
    pool_attrs(mpg);
    fin(mpg);
    int apg = A2(AVGPOOL2D_GRAD, cv, ap);
    pool_attrs(apg);
    fin(apg);
    int gwp = A3(CONV2D_GRAD_WEIGHT_MAXPOOL, img, cv, mp);
    conv_attrs(gwp, 1);
    set2(gwp, ATTR_POOL_KERNEL, 2, 2);
    set2(gwp, ATTR_POOL_STRIDE, 2, 2);
    set4(gwp, ATTR_POOL_PAD, 0, 0, 0, 0);
    hint(gwp, ty(DT_F32, 4, 4, 2, 3, 3));
    int up = A1(UPSAMPLE2D, mp);
    set2(up, ATTR_FACTOR, 2, 2);
    fin(up);
    int upg = A1(UPSAMPLE2D_GRAD, up);
    set2(upg, ATTR_FACTOR, 2, 2);
    fin(upg);
    int dr = A1(DROPOUT, up);
    ir_attr_set_f(ND(dr), ATTR_RATE, 0.25);
    ir_attr_set_i(ND(dr), ATTR_SEED, 42);
    fin(dr);
    int drg = A1(DROPOUT_GRAD, dr);
    ir_attr_set_f(ND(drg), ATTR_RATE, 0.25);
    ir_attr_set_i(ND(drg), ATTR_SEED, 42);
    fin(drg);
    int bn = add(OP_BATCHNORM, drg, gamma, beta, mean, var);
    ir_attr_set_f(ND(bn), ATTR_EPS, 1e-5);
    fin(bn);
    int bgs = fin(A3(BATCHNORM_GRAD_SUMS, drg, bn, mean));
    int bng = ir_node_add(M, F, OP_BATCHNORM_GRAD, (int[]){drg, bn, gamma, mean, var, bgs}, 6, LOC_NONE);
    covered[OP_BATCHNORM_GRAD] = true;
    ir_attr_set_f(ND(bng), ATTR_EPS, 1e-5);
    fin(bng);
    /* Tokens and sequences: ci is i32[N, 4], w a [4, 3] table. */
    int emb = fin(A2(EMBEDDING, w, ci));
    int embg = A2(EMBEDDING_GRAD, ci, emb);
    ir_attr_set_i(ND(embg), ATTR_ROWS, 4);
    fin(embg);
    int oh = A1(ONE_HOT, ci);
    ir_attr_set_i(ND(oh), ATTR_CLASSES, 3);
    fin(oh);
    int mce = A2(MASKED_CROSS_ENTROPY, emb, ci);
    ir_attr_set_i(ND(mce), ATTR_IGNORE, 0);
    fin(mce);
    int mceg = A3(MASKED_CROSS_ENTROPY_GRAD, emb, ci, mce);
    ir_attr_set_i(ND(mceg), ATTR_IGNORE, -100);
    fin(mceg);
    int macc = A2(MASKED_ACCURACY, emb, ci);
    fin(macc);
    int mmean = A2(MASKED_MEAN, emb, ci), mmax = A2(MASKED_MAX, oh, ci);
    fin(mmean), fin(mmax);
    int mmeang = A2(MASKED_MEAN_GRAD, ci, mmean), mmaxg = A3(MASKED_MAX_GRAD, oh, ci, mmax);
    ir_attr_set_i(ND(mmeang), ATTR_PAD_ID, 0);
    ir_attr_set_i(ND(mmaxg), ATTR_PAD_ID, 1);
    fin(mmeang), fin(mmaxg);

    int as = A1(ASSIGN, gamma);
    ir_set_sym(M, ND(as), "gamma");
    fin(as);

    /* Recurrent: a tanh RNN of 4 units over x read as 2 steps of 2 features. */
    int seq = hint(A1(RESHAPE, x), ty(DT_F32, 3, N, 2, 2));
    int wih = A0(CONST), whh = A0(CONST);
    ir_attr_set_f(ND(wih), ATTR_VALUE, 0.25);
    hint(wih, ty(DT_F32, 2, 4, 2));
    ir_attr_set_f(ND(whh), ATTR_VALUE, -0.125);
    hint(whh, ty(DT_F32, 2, 4, 4));
    int ra[7] = {seq, wih, whh, gamma, beta, x, label};
    covered[OP_RNN] = covered[OP_RNN_BPTT] = covered[OP_RNN_GRAD] = true;
    int rn = ir_node_add(M, F, OP_RNN, ra, 7, LOC_NONE);
    ir_attr_set_i(ND(rn), ATTR_CELL, IR_RNN_TANH);
    ir_attr_set_i(ND(rn), ATTR_REVERSE, 1);
    fin(rn);
    int rb = ir_node_add(M, F, OP_RNN_BPTT, (int[]){whh, rn, rn, x, label}, 5, LOC_NONE);
    ir_attr_set_i(ND(rb), ATTR_CELL, IR_RNN_TANH);
    ir_attr_set_i(ND(rb), ATTR_REVERSE, 1);
    fin(rb);
    int rg = ir_node_add(M, F, OP_RNN_GRAD, (int[]){rb, seq, wih, whh, rn, x}, 6, LOC_NONE);
    ir_attr_set_i(ND(rg), ATTR_CELL, IR_RNN_TANH);
    ir_attr_set_i(ND(rg), ATTR_REVERSE, 1);
    ir_attr_set_i(ND(rg), ATTR_WRT, 1);
    fin(rg);
    ir_output_add(M, F, "rnn_grad", rg);
    ir_output_add(M, F, "loss", loss);
    ir_output_add(M, F, "accuracy", acc);
    ir_output_add(M, F, "out \"quoted\"", bn);
    ir_output_add(M, F, "grad.w", gw);

    /* A second, small function with no options and no outputs. */
    F = ir_func_add(M, "forward", MODE_EVAL);
    int z = A0(CONST);
    ir_attr_set_f(ND(z), ATTR_VALUE, -0.0);
    hint(z, ty(DT_F32, 1, 2));
    int inf = A0(CONST);
    ir_attr_set_f(ND(inf), ATTR_VALUE, 1e30);
    hint(inf, ty(DT_F32, 0));
    return M;
}

/* ---------------------------------------------------------------- tests */

static void test_roundtrip(void) {
    struct ir_module *m = build_all_ops();
    for (int op = 0; op < OP_COUNT; op++)
        if (!covered[op]) {
            fprintf(stderr, "op %s is not covered by build_all_ops\n", op_info[op].name);
            test_failed++;
        }
    capture_begin();
    bool ok = ir_verify(m);
    const char *d = capture_end();
    CHECK(ok);
    if (!ok) fprintf(stderr, "%s", d);

    char *t1 = print_str(m, ir_print);
    if (getenv("NETC_TEST_DUMP")) fputs(t1, stdout); /* to look at the text */
    capture_begin();
    struct ir_module *m2 = ir_parse("all.ir", t1, strlen(t1));
    d = capture_end();
    CHECK(m2 != NULL);
    if (!m2) {
        fprintf(stderr, "%s\n%s", d, t1);
        ir_module_free(m);
        free(t1);
        return;
    }
    char *t2 = print_str(m2, ir_print);
    CHECK(strcmp(t1, t2) == 0);
    if (strcmp(t1, t2) != 0) fprintf(stderr, "--- printed\n%s--- reprinted\n%s", t1, t2);
    capture_begin();
    ok = ir_verify(m2);
    d = capture_end();
    CHECK(ok);
    if (!ok) fprintf(stderr, "%s", d);

    /* Parsed nodes are located at their line in the text. */
    const char *line = strstr(t1, "  %0 = input @x");
    int lno = 1;
    for (const char *q = t1; q < line; q++) lno += *q == '\n';
    ASSERT(lno, m2->funcs[0]->nodes[0].loc.line);
    ASSERT(3, m2->funcs[0]->nodes[0].loc.col);
    CHECK(strcmp(m2->funcs[0]->nodes[0].loc.file, "all.ir") == 0);
    ASSERT(lno + 1, m2->funcs[0]->nodes[1].loc.line);

    /* With locations: they parse back, and print again identically. */
    ir_print_set_locs(true);
    char *t3 = print_str(m2, ir_print);
    struct ir_module *m3 = ir_parse("locs.ir", t3, strlen(t3));
    CHECK(m3 != NULL);
    if (m3) {
        char *t4 = print_str(m3, ir_print);
        CHECK(strcmp(t3, t4) == 0);
        CHECK(strstr(t3, " loc(\"all.ir\":") != NULL);
        ASSERT(lno, m3->funcs[0]->nodes[0].loc.line);
        CHECK(strcmp(m3->funcs[0]->nodes[0].loc.file, "all.ir") == 0);
        free(t4);
        ir_module_free(m3);
    }
    ir_print_set_locs(false);

    /* The DOT form names every function as a cluster. */
    char *dot = print_str(m2, ir_print_dot);
    CHECK(strncmp(dot, "digraph \"all_ops\" {", 19) == 0);
    CHECK(strstr(dot, "subgraph \"cluster_train_step\"") != NULL);
    CHECK(strstr(dot, "subgraph \"cluster_forward\"") != NULL);
    CHECK(strstr(dot, "label=\"out \\\"quoted\\\"\"") != NULL);
    free(dot);

    free(t1);
    free(t2);
    free(t3);
    ir_module_free(m2);
    ir_module_free(m);
}

static const char tiny[] = "module tiny\n"
                           "train batch=32 epochs=1 seed=0\n"
                           "\n"
                           "input @x : f32[N,3]\n"
                           "param @w : f32[3,1] init=uniform(-0.5, 0.5) group=main\n"
                           "\n"
                           "func @forward eval {\n"
                           "  %0 = input @x : f32[N,3]\n"
                           "  %1 = param @w : f32[3,1]\n"
                           "  %2 = matmul(%0, %1) {transpose_a=0, transpose_b=0} : f32[N,1]\n"
                           "  return y=%2\n"
                           "}\n";

/* The example of docs/ir.md prints back unchanged; comments, blank lines and sparse
 * value numbers are accepted and renumbered. */
static void test_doc_example(void) {
    struct ir_module *m = ir_parse("tiny.ir", tiny, strlen(tiny));
    CHECK(m != NULL);
    if (!m) return;
    char *t = print_str(m, ir_print);
    CHECK(strcmp(t, tiny) == 0);
    CHECK(ir_verify(m));
    free(t);
    ir_module_free(m);

    const char *sparse = "// a comment\nmodule tiny // trailing\n"
                         "input @x : f32[N,3]\n\n"
                         "func @f eval {\n"
                         "  %3 = input @x : f32[N,3]   // read it\n"
                         "  %10 = relu(%3) : f32[N,3]\n"
                         "  return y=%10, z=%3\n"
                         "}\n";
    m = ir_parse("sparse.ir", sparse, strlen(sparse));
    CHECK(m != NULL);
    if (!m) return;
    t = print_str(m, ir_print);
    CHECK(strstr(t, "  %1 = relu(%0) : f32[N,3]\n  return y=%1, z=%0\n") != NULL);
    free(t);
    ir_module_free(m);
}

/* Malformed texts: each must fail with this diagnostic (a prefix of its first line). */
static void test_parse_errors(void) {
    static const struct {
        const char *text;
        const char *diag;
    } cases[] = {
        {"", "e.ir:1:1: error: expected 'module NAME' at the start of the file, got end of file"},
        {"modul x\n", "e.ir:1:1: error: expected 'module NAME' at the start of the file, got 'modul'"},
        {"module\n", "e.ir:1:7: error: expected a module name, got end of line"},
        {"module m extra\n", "e.ir:1:10: error: expected end of line after the module name, got 'extra'"},
        {"module m\ntrain batch=x\n", "e.ir:2:13: error: expected an integer, got 'x'"},
        {"module m\ntrain batch=1 batch=2\n", "e.ir:2:15: error: 'batch' given twice"},
        {"module m\nbogus\n",
         "e.ir:2:1: error: expected 'input', 'param', 'state', 'func' or end of file, got 'bogus'"},
        {"module m\ninput x : f32[3]\n", "e.ir:2:7: error: expected a buffer name '@name', got 'x'"},
        {"module m\ninput @x f32[3]\n", "e.ir:2:10: error: expected ':' before the buffer's type, got 'f32'"},
        {"module m\ninput @x : f33[3]\n", "e.ir:2:12: error: unknown dtype 'f33' (did you mean 'f32'?)"},
        {"module m\ninput @x : f32[3,-1]\n", "e.ir:2:18: error: dimension -1 is negative"},
        {"module m\ninput @x : f32[3]\nfunc @f eval {\n  %0 = input @x : f32[3] kernel=x\n",
         "e.ir:4:33: error: expected a kernel number, got 'x'"},
        {"module m\ninput @x : f32[3]\nfunc @f eval {\n  %0 = input @x : f32[3] kernel 1\n",
         "e.ir:4:33: error: expected '=' after 'kernel', got '1'"},
        {"module m\ninput @x : f32[3\n",
         "e.ir:2:17: error: expected ',' or ']' in the type, got end of line"},
        {"module m\ninput @x : f32[1,2,3,4,5,6,7]\n", "e.ir:2:28: error: a type has at most 6 dims"},
        {"module m\ninput @x : f32[M]\n",
         "e.ir:2:16: error: expected a dimension (an integer or N), got 'M'"},
        {"module m\ninput @x : f32[3] init=zeros\n",
         "e.ir:2:19: error: unknown attribute 'init' of an input buffer"},
        {"module m\nparam @w : f32[3] init=zero\n",
         "e.ir:2:24: error: unknown initializer 'zero' (did you mean 'zeros'?)"},
        {"module m\nparam @w : f32[3] init=uniform(1)\n",
         "e.ir:2:33: error: expected ',' and a second number, got ')'"},
        {"module m\nparam @w : f32[3] grop=a\n",
         "e.ir:2:19: error: unknown attribute 'grop' of a param buffer (did you mean 'group'?)"},
        {"module m\ninput @x : f32[3] data=idx(\"a\" 1)\n",
         "e.ir:2:32: error: expected ',' or ')' in the source arguments, got '1'"},
        {"module m\ninput @x : f32[3] data=idx(\"a\n", "e.ir:2:28: error: unterminated string"},
        {"module m\ninput @x : f32[3] data=idx(\"a\\q\")\n",
         "e.ir:2:30: error: unknown escape '\\q' in string"},
        {"module m\ninput @x : f32[3] data=idx(\"\\x00\")\n", "e.ir:2:29: error: string contains a NUL byte"},
        {"module m\ninput @x : f32[3] data=idx(a=1, 2)\n",
         "e.ir:2:33: error: expected an option 'name=value' (numbers come before options), got '2'"},
        {"module m\nfunc @f {\n}\n", "e.ir:2:9: error: expected 'eval' or 'train', got '{'"},
        {"module m\nfunc @f eval\n", "e.ir:2:13: error: expected 'loss=', 'optimizer=', 'update=', 'steps=', "
                                     "'workspace=' or '{', got end of line"},
        {"module m\nfunc @f eval { %0 = const {value=1} : f32[]\n",
         "e.ir:2:16: error: expected end of line after '{', got '%0'"},
        {"module m\nfunc @f eval {\n  return\n",
         "e.ir:3:9: error: expected '}' closing the function, got end of file"},
        {"module m\nfunc @f eval {\n  %0 = conv2 : f32[]\n",
         "e.ir:3:8: error: unknown op 'conv2' (did you mean 'conv2d'?)"},
        {"module m\nfunc @f eval {\n  %0 = frobnicate : f32[]\n",
         "e.ir:3:8: error: unknown op 'frobnicate'\n"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1}\n",
         "e.ir:3:23: error: expected ':' and the node's type, got end of line"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1} f32[]\n",
         "e.ir:3:24: error: expected ':' and the node's type, got 'f32'"},
        {"module m\nfunc @f eval {\n  %0 = const : f32[]\n",
         "e.ir:3:14: error: missing attribute 'value' of op 'const'"},
        {"module m\nfunc @f eval {\n  %0 = const {valu=1} : f32[]\n",
         "e.ir:3:15: error: unknown attribute 'valu' of op 'const' (did you mean 'value'?)"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1, value=2} : f32[]\n",
         "e.ir:3:24: error: attribute 'value' given twice"},
        {"module m\nfunc @f eval {\n  %0 = relu {x=1} : f32[]\n",
         "e.ir:3:13: error: op 'relu' takes no attributes"},
        {"module m\nfunc @f eval {\n  %0 = relu @x : f32[]\n", "e.ir:3:13: error: op 'relu' takes no symbol"},
        {"module m\nfunc @f eval {\n  %0 = input : f32[]\n",
         "e.ir:3:14: error: expected a buffer name '@name' after 'input', got ':'"},
        {"module m\nfunc @f eval {\n  %0 = relu(%1) : f32[]\n",
         "e.ir:3:13: error: use of undefined value %1"},
        {"module m\nfunc @f eval {\n  %0 = relu(%0) : f32[]\n",
         "e.ir:3:13: error: use of undefined value %0"},
        {"module m\nfunc @f eval {\n  %0 = relu(%0 : f32[]\n", "e.ir:3:13: error: use of undefined value %0"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1} : f32[]\n  %0 = relu(%0) : f32[]\n",
         "e.ir:4:3: error: value %0 is defined twice"},
        {"module m\nfunc @f eval {\n  %5 = const {value=1} : f32[]\n  %2 = relu(%5) : f32[]\n",
         "e.ir:4:3: error: value %2 is out of order: numbers must increase"},
        {"module m\nfunc @f eval {\n  %0 = conv2d {stride=[1], pad=[0,0,0,0], dilation=[1,1], groups=1} : "
         "f32[]\n",
         "e.ir:3:23: error: attribute 'stride' of conv2d takes 2 ints, got 1"},
        {"module m\nfunc @f eval {\n  %0 = conv2d {stride=[1,1,1], pad=[0,0,0,0], dilation=[1,1], groups=1} "
         ": f32[]\n",
         "e.ir:3:28: error: attribute 'stride' of conv2d takes 2 ints"},
        {"module m\nfunc @f eval {\n  %0 = sum {axes=[0,1,2,3,4,5,6,7,8], keepdims=0} : f32[]\n",
         "e.ir:3:35: error: attribute 'axes' of sum takes at most 8 ints"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1.5.} : f32[]\n",
         "e.ir:3:24: error: unexpected character '.'"},
        {"module m\nfunc @f eval {\n  %0 = argmax {axis=1.5} : f32[]\n",
         "e.ir:3:21: error: expected an integer, got '1.5'"},
        {"module m\nfunc @f eval {\n  %0 = argmax {axis=99999999999999999999} : f32[]\n",
         "e.ir:3:21: error: integer '99999999999999999999' is out of range"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1e999} : f32[]\n",
         "e.ir:3:21: error: number '1e999' is out of range"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1} : f32[] loc(\"a\":1)\n",
         "e.ir:3:41: error: expected ':' after the line number, got ')'"},
        {"module m\nfunc @f eval {\n  % = const\n", "e.ir:3:3: error: expected a value number after '%'"},
        {"module m\nfunc @f eval {\n  return y=%0\n", "e.ir:3:12: error: use of undefined value %0"},
        {"module m\nfunc @f eval {\n  return y\n",
         "e.ir:3:11: error: expected '=' after the output name, got end of line"},
        {"module m\nfunc @f eval {\n  return\n} x\n",
         "e.ir:4:3: error: expected end of line after '}', got 'x'"},
        {"module m\nfunc @f train optimizer=adam(lr) {\n",
         "e.ir:2:32: error: expected '=' after the option name, got ')'"},
        {"module m\nfunc @f train update=[a b] {\n",
         "e.ir:2:25: error: expected ',' or ']' in the list of groups, got 'b'"},
        {"module m\n$\n", "e.ir:2:1: error: unexpected character '$'"},
        {"module m\n\x01\n", "e.ir:2:1: error: unexpected character '\\x01'"},
        {"module m\n@\n", "e.ir:2:1: error: expected a name after '@'"},
        {"module m\ninput @x : f32[3]\nfunc @f eval {\n  %0 = exp : f32[3] mem=fixed[32]\n",
         "e.ir:4:31: error: slot offset 32 is not a multiple of 64"},
        {"module m\ninput @x : f32[3]\nfunc @f eval {\n  %0 = exp : f32[3] mem=@y\n",
         "e.ir:4:25: error: unknown buffer '@y'"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1} : f32[] mem=heap[0]\n",
         "e.ir:3:36: error: expected 'fixed[OFF]', 'batch[OFF]' or '@buffer', got 'heap'"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1} : f32[] scratch=fixed[0]\n",
         "e.ir:3:47: error: expected ',' and the scratch's float count, got ']'"},
        {"module m\nfunc @f eval {\n  %0 = const {value=1} : f32[] mem=batch[-64]\n",
         "e.ir:3:42: error: slot offset -64 is out of range"},
        {"module m\nfunc @f eval workspace=[64] {\n",
         "e.ir:2:27: error: expected ',' and the workspace's bytes per batch item, got ']'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        capture_begin();
        struct ir_module *m = ir_parse("e.ir", cases[i].text, strlen(cases[i].text));
        const char *d = capture_end();
        CHECK(m == NULL);
        ir_module_free(m);
        if (strncmp(d, cases[i].diag, strlen(cases[i].diag)) != 0) {
            fprintf(stderr, "case %zu: %s\n  expected: %s\n  got:      %s", i, cases[i].text, cases[i].diag,
                    d);
            test_failed++;
        } else {
            test_passed++;
        }
    }
    /* The error quotes the line with a caret under the column. */
    capture_begin();
    const char *bad = "module m\ninput @x f32[3]\n";
    ir_parse("q.ir", bad, strlen(bad));
    const char *d = capture_end();
    CHECK(strstr(d, "\n  input @x f32[3]\n           ^\n") != NULL);
}

/* ----------------------------------------------------------------- fuzz */

static unsigned long long rng_state = 0x9e3779b97f4a7c15ull;

static unsigned rnd(unsigned n) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* Parse text; when it parses, printing, re-parsing and verifying must work, and
 * printing is a fixed point. */
static void fuzz_one(const char *text, size_t len) {
    struct ir_module *m = ir_parse("fuzz.ir", text, len);
    if (!m) return;
    char *t1 = print_str(m, ir_print);
    ir_verify(m);
    char *dot = print_str(m, ir_print_dot);
    struct ir_module *m2 = ir_parse("fuzz2.ir", t1, strlen(t1));
    if (!m2) {
        fprintf(stderr, "printed text does not parse back:\n%s\n", t1);
        test_failed++;
    } else {
        char *t2 = print_str(m2, ir_print);
        if (strcmp(t1, t2) != 0) {
            fprintf(stderr, "print is not a fixed point:\n%s\n---\n%s\n", t1, t2);
            test_failed++;
        }
        free(t2);
        ir_module_free(m2);
    }
    free(dot);
    free(t1);
    ir_module_free(m);
}

static void test_fuzz(void) {
    struct ir_module *m = build_all_ops();
    char *seed = print_str(m, ir_print);
    ir_module_free(m);
    size_t slen = strlen(seed);
    static const char *const dict[] = {"%",
                                       "@",
                                       "\"",
                                       "{",
                                       "}",
                                       "[",
                                       "]",
                                       "(",
                                       ")",
                                       ",",
                                       "=",
                                       ":",
                                       "\n",
                                       " ",
                                       "N",
                                       "-",
                                       "1e999",
                                       "inf",
                                       "nan",
                                       "-inf",
                                       "%0",
                                       "%999",
                                       "\\x",
                                       "//",
                                       "f32[",
                                       "i32[N]",
                                       "conv2d",
                                       "input @x",
                                       "9999999999999999999999",
                                       "loc(\"a\":1:2)",
                                       "return",
                                       "func @g eval {\n",
                                       "\xff",
                                       "0.5e",
                                       "\\"};
    FILE *null = fopen("/dev/null", "w");
    diag_set_stream(null);
    int fails_before = test_failed;
    char *buf = malloc(slen * 2 + 256);
    int iters = getenv("NETC_FUZZ_ITERS") ? atoi(getenv("NETC_FUZZ_ITERS")) : 20000;
    if (getenv("NETC_FUZZ_SEED")) rng_state = strtoull(getenv("NETC_FUZZ_SEED"), NULL, 0) | 1;
    for (int it = 0; it < iters; it++) {
        size_t len = slen;
        memcpy(buf, seed, slen);
        int nmut = 1 + (int)rnd(4);
        for (int k = 0; k < nmut; k++) {
            size_t at = rnd((unsigned)len + 1);
            switch (rnd(5)) {
            case 0: /* flip a byte */
                if (len) buf[at % len] = (char)rnd(256);
                break;
            case 1: /* delete a span */
                if (len) {
                    size_t n = 1 + rnd(16);
                    if (at + n > len) n = len - at;
                    memmove(buf + at, buf + at + n, len - at - n);
                    len -= n;
                }
                break;
            case 2: { /* insert a dictionary token */
                const char *s = dict[rnd(sizeof dict / sizeof dict[0])];
                size_t n = strlen(s);
                if (len + n > slen * 2 + 200) break;
                memmove(buf + at + n, buf + at, len - at);
                memcpy(buf + at, s, n);
                len += n;
                break;
            }
            case 3: /* truncate */
                len = at;
                break;
            default: /* duplicate a line-sized span */
                if (len > 40 && len + 40 < slen * 2 + 200) {
                    size_t from = rnd((unsigned)(len - 40));
                    memmove(buf + at + 40, buf + at, len - at);
                    memmove(buf + at, buf + (from < at ? from : from + 40), 40);
                    len += 40;
                }
                break;
            }
        }
        fuzz_one(buf, len);
        if (it % 256 == 0) diag_free();
    }
    /* Random bytes, and random token soup. */
    for (int it = 0; it < 3000; it++) {
        size_t len = rnd(200);
        for (size_t i = 0; i < len; i++) buf[i] = (char)rnd(256);
        fuzz_one(buf, len);
        len = 0;
        memcpy(buf, "module m\n", 9);
        len = 9;
        for (int k = rnd(40); k > 0; k--) {
            const char *s = dict[rnd(sizeof dict / sizeof dict[0])];
            memcpy(buf + len, s, strlen(s));
            len += strlen(s);
        }
        fuzz_one(buf, len);
        if (it % 256 == 0) diag_free();
    }
    /* Every truncation of the seed. */
    for (size_t n = 0; n <= slen; n++) fuzz_one(seed, n);
    diag_set_stream(NULL);
    fclose(null);
    free(buf);
    free(seed);
    if (test_failed == fails_before) test_passed++;
}

/* Kernel marks print after the type (before a location), parse back, survive
 * ir_func_clone, and pass the verifier. */
static void test_kernels(void) {
    static const char text[] = "module k\n"
                               "\n"
                               "input @x : f32[N,4]\n"
                               "param @w : f32[4,3] init=zeros\n"
                               "param @b : f32[3] init=zeros\n"
                               "\n"
                               "func @forward eval {\n"
                               "  %0 = input @x : f32[N,4]\n"
                               "  %1 = param @w : f32[4,3]\n"
                               "  %2 = matmul(%0, %1) {transpose_a=0, transpose_b=0} : f32[N,3] kernel=7\n"
                               "  %3 = param @b : f32[3]\n"
                               "  %4 = bias_add(%2, %3) {axis=1} : f32[N,3] kernel=7\n"
                               "  %5 = relu(%4) : f32[N,3] kernel=7\n"
                               "  %6 = exp(%5) : f32[N,3] kernel=2\n"
                               "  %7 = neg(%6) : f32[N,3] kernel=2\n"
                               "  return y=%7\n"
                               "}\n";
    struct ir_module *m = ir_parse("k.ir", text, strlen(text));
    CHECK(m != NULL);
    if (!m) return;
    ASSERT(7, m->funcs[0]->nodes[2].kernel);
    ASSERT(0, m->funcs[0]->nodes[3].kernel);
    ASSERT(2, m->funcs[0]->nodes[7].kernel);
    capture_begin();
    bool ok = ir_verify(m);
    const char *d = capture_end();
    CHECK(ok);
    if (!ok) fprintf(stderr, "%s", d);
    char *t1 = print_str(m, ir_print);
    CHECK(strcmp(t1, text) == 0);
    if (strcmp(t1, text) != 0) fprintf(stderr, "--- printed\n%s", t1);
    char *dot = print_str(m, ir_print_dot);
    CHECK(strstr(dot, "%5 relu(%4)\\nf32[N,3]\\nkernel 7\", style=filled") != NULL);
    free(dot);
    struct ir_func *c = ir_func_clone(m, m->funcs[0], "copy");
    ASSERT(7, c->nodes[5].kernel);
    ir_print_set_locs(true);
    char *t2 = print_str(m, ir_print);
    ir_print_set_locs(false);
    CHECK(strstr(t2, "f32[N,3] kernel=7 loc(\"k.ir\":12:3)") != NULL);
    struct ir_module *m2 = ir_parse("k2.ir", t2, strlen(t2));
    CHECK(m2 != NULL);
    if (m2) {
        char *t3 = print_str(m2, ir_print);
        ir_print_set_locs(true);
        char *t4 = print_str(m2, ir_print);
        ir_print_set_locs(false);
        CHECK(strcmp(t2, t4) == 0);
        CHECK(strstr(t3, "  %5 = relu(%4) : f32[N,3] kernel=7\n") != NULL);
        free(t3);
        free(t4);
        ir_module_free(m2);
    }
    free(t1);
    free(t2);
    ir_module_free(m);
}

/* The memory plan of every op's module (the C target's scratch) prints, parses
 * back to the same plan and prints again byte-identically; a plan in the text
 * sets every field, and ir_func_clone keeps it. */
static void test_memplan(void) {
    struct ir_module *m = build_all_ops();
    for (size_t e = 0; e < vec_len(m->funcs);
         e++) /* the allreduce of N-shaped %21: reduced alone (no bucket) */
        for (int id = 0; id < ir_func_len(m->funcs[e]); id++)
            if (m->funcs[e]->nodes[id].op == OP_ALLREDUCE)
                ir_attr_set_i(&m->funcs[e]->nodes[id], ATTR_BUCKET, -1);
    pass_target = cg_target_c.plan;
    ASSERT((int)vec_len(m->funcs), pass_memplan(m));
    char *t1 = print_str(m, ir_print);
    CHECK(strstr(t1, " workspace=[") != NULL && strstr(t1, " mem=fixed[") != NULL);
    CHECK(strstr(t1, " mem=batch[") != NULL && strstr(t1, " scratch=") != NULL);
    capture_begin();
    struct ir_module *m2 = ir_parse("plan.ir", t1, strlen(t1));
    const char *d = capture_end();
    CHECK(m2 != NULL);
    if (m2) {
        char *t2 = print_str(m2, ir_print);
        CHECK(strcmp(t1, t2) == 0);
        if (strcmp(t1, t2) != 0) fprintf(stderr, "--- printed\n%s--- reprinted\n%s", t1, t2);
        for (size_t e = 0; e < vec_len(m->funcs); e++) {
            const struct ir_func *f = m->funcs[e], *g = m2->funcs[e];
            CHECK(g->planned && g->ws_fixed == f->ws_fixed && g->ws_batch == f->ws_batch);
            for (int id = 0; id < ir_func_len(f); id++)
                CHECK(memcmp(&f->nodes[id].mem, &g->nodes[id].mem, sizeof f->nodes[id].mem) == 0);
        }
        free(t2);
        ir_module_free(m2);
    } else {
        fprintf(stderr, "%s", d);
    }
    free(t1);
    ir_module_free(m);
    pass_target = NULL;

    static const char text[] =
        "module p\n"
        "\n"
        "param @w : f32[3] init=zeros\n"
        "\n"
        "func @f train workspace=[128,64] {\n"
        "  %0 = param @w : f32[3]\n"
        "  %1 = exp(%0) : f32[3] kernel=1\n"
        "  %2 = neg(%1) : f32[3] kernel=1 mem=@w\n"
        "  %3 = assign @w(%2) : f32[3]\n"
        "  %4 = sum(%0) {axes=[0], keepdims=0} : f32[] mem=fixed[64] scratch=batch[0,2]\n"
        "  return s=%4\n"
        "}\n";
    struct ir_module *p = ir_parse("p.ir", text, strlen(text));
    CHECK(p != NULL);
    if (!p) return;
    const struct ir_func *f = p->funcs[0];
    CHECK(f->planned);
    ASSERT(128, (int)f->ws_fixed);
    ASSERT(64, (int)f->ws_batch);
    ASSERT(MEM_NONE, (int)f->nodes[1].mem.where);
    ASSERT(MEM_BUFFER, (int)f->nodes[2].mem.where);
    ASSERT(0, (int)f->nodes[2].mem.off);
    ASSERT(MEM_FIXED, (int)f->nodes[4].mem.where);
    ASSERT(64, (int)f->nodes[4].mem.off);
    ASSERT(MEM_BATCH, (int)f->nodes[4].mem.scratch_where);
    ASSERT(2, (int)f->nodes[4].mem.scratch);
    char *t = print_str(p, ir_print);
    CHECK(strcmp(t, text) == 0);
    if (strcmp(t, text) != 0) fprintf(stderr, "--- printed\n%s", t);
    free(t);
    struct ir_func *c = ir_func_clone(p, p->funcs[0], "copy");
    CHECK(c->planned && c->ws_fixed == 128 && c->nodes[4].mem.scratch_off == 0 &&
          c->nodes[2].mem.where == MEM_BUFFER);
    ir_module_free(p);
}

int main(void) {
    test_roundtrip();
    test_memplan();
    test_kernels();
    test_doc_example();
    test_parse_errors();
    test_fuzz();
    diag_free();
    TEST_DONE();
}
