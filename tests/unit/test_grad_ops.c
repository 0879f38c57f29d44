/* tests/unit/test_grad_ops.c -- every differentiable op of ops.def against central
 * finite differences. Each case builds a tiny training function through the IR API
 * (small odd shapes, batch N = 3), takes loss = sum(op(...) * fixed random weights),
 * runs autodiff (with input gradients on) and compares every gradient element the
 * interpreter computes with (L(v + eps) - L(v - eps)) / 2 eps, all in double.
 * Error = |analytic - numeric| / max(|analytic|, |numeric|, 1e-3); eps 1e-5 and
 * tolerance 1e-6 unless a case states otherwise. A last check walks OP_COUNT and
 * fails if a differentiable op (not OF_NOGRAD, not a leaf) has no case. */
#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/unit/test.h"
#include "tests/unit/test_ir_build.h"

#include <stdarg.h>
#include <string.h>

#define N IR_DIM_N
#define BATCH 3
#define MAX_BUFS 16

/* How a buffer's test data are drawn (all deterministic). */
enum gen {
    G_UNIFORM,  /* uniform in [-1, 1) */
    G_POS,      /* uniform in [0.5, 2) */
    G_AWAY,     /* |v| in [0.2, 1), random sign: away from kinks at 0 */
    G_DISTINCT, /* a shuffled grid with step 0.07: no ties (max, maxpool) */
    G_GRID,     /* multiples of 0.1 in [-1, 1] */
    G_GRID5,    /* multiples of 0.1 plus 0.05: never equal to G_GRID values */
    G_PROB,     /* uniform in [0.1, 0.9) */
    G_SIGN,     /* +1 or -1 */
    G_HINGE,    /* |v| in [0.2, 0.8) or [1.2, 2): t s never near 1 for t = +-1 */
    G_DIST,     /* positive rows (last dim) that sum to 1 */
    G_LABEL,    /* i32 class labels in [0, last dim of the case's "logits") */
};

static enum gen gen_of[MAX_BUFS]; /* per buffer */
static int64_t classes;           /* for G_LABEL */
static uint64_t rng_state;        /* test data RNG */

static uint64_t rng_next(void) { return nrt_mix64(rng_state++); }
static double urand(double lo, double hi) { return lo + (hi - lo) * (double)(rng_next() >> 11) * 0x1p-53; }

static int leaf(enum op op, const char *name, enum dtype dt, struct shape s, enum gen g) {
    if (!ir_buffer_find(M, name)) {
        int b =
            ir_buffer_add(M, op == OP_INPUT ? BUF_INPUT : BUF_PARAM, name, (struct type){dt, s}, LOC_NONE);
        gen_of[b] = g;
    }
    int id = ir_node_add(M, F, op, NULL, 0, LOC_NONE);
    ir_set_sym(M, &F->nodes[id], name);
    return fin(id);
}

static int in(const char *name, struct shape s, enum gen g) { return leaf(OP_INPUT, name, DT_F32, s, g); }
static int par(const char *name, struct shape s, enum gen g) { return leaf(OP_PARAM, name, DT_F32, s, g); }

static int reduce(enum op op, int x, int keep, int count, ...) {
    int id = node(op, 1, x);
    int64_t v[IR_MAX_LIST];
    va_list ap;
    va_start(ap, count);
    for (int i = 0; i < count; i++) v[i] = va_arg(ap, int);
    va_end(ap);
    ir_attr_set_v(at(id), ATTR_AXES, v, count);
    ir_attr_set_i(at(id), ATTR_KEEPDIMS, keep);
    return fin(id);
}

static int typed(enum op op, int x, struct shape s) {
    int id = node(op, 1, x);
    at(id)->type = (struct type){DT_F32, s};
    return fin(id);
}

static int with_int(enum op op, int x, struct attr_i name, int v) {
    int id = node(op, 1, x);
    ir_attr_set_i(at(id), name, v);
    return fin(id);
}

/* ----------------------------------------------------------------- cases */

static int c_neg(void) { return op1(OP_NEG, in("x", S(2, N, 3), G_UNIFORM)); }
static int c_exp(void) { return op1(OP_EXP, in("x", S(2, N, 3), G_UNIFORM)); }
static int c_log(void) { return op1(OP_LOG, in("x", S(2, N, 3), G_POS)); }
static int c_sqrt(void) { return op1(OP_SQRT, in("x", S(2, N, 3), G_POS)); }
static int c_abs(void) { return op1(OP_ABS, in("x", S(3, N, 2, 3), G_AWAY)); }
static int c_relu(void) { return op1(OP_RELU, in("x", S(3, N, 2, 3), G_AWAY)); }
static int c_sigmoid(void) { return op1(OP_SIGMOID, in("x", S(2, N, 5), G_UNIFORM)); }
static int c_tanh(void) { return op1(OP_TANH, in("x", S(2, N, 5), G_UNIFORM)); }
static int c_erf(void) { return op1(OP_ERF, in("x", S(2, N, 5), G_UNIFORM)); }
static int c_gelu(int approx) {
    int id = node(OP_GELU, 1, in("x", S(3, N, 2, 5), G_UNIFORM));
    ir_attr_set_i(at(id), ATTR_APPROXIMATE, approx);
    return fin(id);
}
static int c_gelu_erf(void) { return c_gelu(0); }
static int c_gelu_tanh(void) { return c_gelu(1); }

static int c_leaky_relu(void) {
    int id = node(OP_LEAKY_RELU, 1, in("x", S(2, N, 5), G_AWAY));
    ir_attr_set_f(at(id), ATTR_ALPHA, 0.1);
    return fin(id);
}

static int c_add_row(void) {
    return op2(OP_ADD, in("x", S(2, N, 3), G_UNIFORM), par("b", S(1, 3), G_UNIFORM));
}
static int c_add_col(void) {
    return op2(OP_ADD, in("x", S(2, N, 1), G_UNIFORM), in("y", S(2, N, 4), G_UNIFORM));
}
static int c_add_scalar(void) {
    return op2(OP_ADD, par("s", S(0), G_UNIFORM), in("y", S(2, N, 4), G_UNIFORM));
}
static int c_sub(void) {
    return op2(OP_SUB, in("x", S(3, N, 1, 4), G_UNIFORM), par("y", S(2, 3, 1), G_UNIFORM));
}
static int c_mul_row(void) {
    return op2(OP_MUL, in("x", S(2, N, 3), G_UNIFORM), par("b", S(1, 3), G_UNIFORM));
}
static int c_mul_col(void) {
    return op2(OP_MUL, in("x", S(2, N, 1), G_UNIFORM), in("y", S(2, N, 4), G_UNIFORM));
}
static int c_div(void) { return op2(OP_DIV, in("x", S(2, N, 3), G_UNIFORM), par("b", S(1, 3), G_POS)); }
static int c_div_col(void) { return op2(OP_DIV, par("a", S(1, 4), G_UNIFORM), in("y", S(2, N, 1), G_POS)); }
static int c_maximum(void) {
    return op2(OP_MAXIMUM, in("x", S(2, N, 3), G_GRID), par("b", S(1, 3), G_GRID5));
}
static int c_pow(void) { return op2(OP_POW, in("x", S(2, N, 3), G_POS), par("e", S(1, 3), G_UNIFORM)); }

static int c_bias_add(void) {
    int id = node(OP_BIAS_ADD, 2, in("x", S(3, N, 4, 3), G_UNIFORM), par("b", S(1, 4), G_UNIFORM));
    ir_attr_set_i(at(id), ATTR_AXIS, 1);
    return fin(id);
}

static int c_sum(void) { return reduce(OP_SUM, in("x", S(3, N, 3, 4), G_UNIFORM), 0, 1, 1); }
static int c_sum_n(void) { return reduce(OP_SUM, in("x", S(3, N, 3, 4), G_UNIFORM), 1, 2, 0, 2); }
static int c_sum_all(void) { return reduce(OP_SUM, in("x", S(2, N, 3), G_UNIFORM), 0, 0); }
static int c_mean(void) { return reduce(OP_MEAN, in("x", S(3, N, 3, 4), G_UNIFORM), 1, 1, 2); }
static int c_mean_n(void) { return reduce(OP_MEAN, in("x", S(3, N, 3, 4), G_UNIFORM), 0, 1, 0); }
static int c_mean_all(void) { return reduce(OP_MEAN, in("x", S(3, N, 3, 4), G_UNIFORM), 0, 0); }
static int c_max(void) { return reduce(OP_MAX, in("x", S(3, N, 3, 4), G_DISTINCT), 0, 1, 1); }
static int c_max_all(void) { return reduce(OP_MAX, in("x", S(2, N, 5), G_DISTINCT), 1, 0); }
static int c_variance(void) { return reduce(OP_VARIANCE, in("x", S(3, N, 3, 4), G_UNIFORM), 0, 2, 0, 2); }
static int c_variance_k(void) { return reduce(OP_VARIANCE, in("x", S(3, N, 3, 4), G_UNIFORM), 1, 1, 1); }
static int c_sum_to(void) { return typed(OP_SUM_TO, in("x", S(3, N, 3, 4), G_UNIFORM), S(2, 3, 1)); }
static int c_broadcast_to(void) {
    return typed(OP_BROADCAST_TO, par("b", S(2, 3, 1), G_UNIFORM), S(3, N, 3, 4));
}

static int mm(int a, int b, int ta, int tb) {
    int id = node(OP_MATMUL, 2, a, b);
    ir_attr_set_i(at(id), ATTR_TRANSPOSE_A, ta);
    ir_attr_set_i(at(id), ATTR_TRANSPOSE_B, tb);
    return fin(id);
}

static int c_mm(void) { return mm(in("x", S(2, N, 3), G_UNIFORM), par("w", S(2, 3, 4), G_UNIFORM), 0, 0); }
static int c_mm_tb(void) { return mm(in("x", S(2, N, 3), G_UNIFORM), par("w", S(2, 4, 3), G_UNIFORM), 0, 1); }
static int c_mm_ta(void) { return mm(in("x", S(2, N, 3), G_UNIFORM), in("y", S(2, N, 4), G_UNIFORM), 1, 0); }
static int c_mm_tab(void) {
    return mm(par("a", S(2, 4, 3), G_UNIFORM), par("b", S(2, 5, 4), G_UNIFORM), 1, 1);
}

/* Batched (torch.matmul): shared weight, both batched, broadcast batch dims, transposes. */
static int c_bmm_w(void) {
    return mm(in("x", S(3, N, 2, 3), G_UNIFORM), par("w", S(2, 3, 4), G_UNIFORM), 0, 0);
}
static int c_bmm(void) {
    return mm(in("x", S(3, N, 2, 3), G_UNIFORM), in("y", S(3, N, 3, 4), G_UNIFORM), 0, 0);
}
static int c_bmm_tb(void) {
    return mm(in("x", S(4, N, 2, 2, 3), G_UNIFORM), in("y", S(4, N, 2, 4, 3), G_UNIFORM), 0, 1);
}
static int c_bmm_bc(void) {
    return mm(in("x", S(4, N, 1, 2, 3), G_UNIFORM), par("w", S(3, 2, 3, 4), G_UNIFORM), 0, 0);
}
static int c_bmm_ta(void) {
    return mm(par("a", S(3, 2, 3, 2), G_UNIFORM), in("y", S(4, N, 1, 3, 4), G_UNIFORM), 1, 0);
}
static int c_bmm_tab(void) {
    return mm(in("x", S(3, N, 3, 2), G_UNIFORM), par("w", S(2, 4, 3), G_UNIFORM), 1, 1);
}

static int c_reshape(void) { return typed(OP_RESHAPE, in("x", S(3, N, 3, 4), G_UNIFORM), S(3, N, 2, 6)); }

static int c_transpose(void) {
    int id = node(OP_TRANSPOSE, 1, in("x", S(3, N, 3, 4), G_UNIFORM));
    ints(id, ATTR_PERM, 3, 2, 0, 1);
    return fin(id);
}

static int c_slice(void) {
    int id = node(OP_SLICE, 1, in("x", S(3, N, 5, 2), G_UNIFORM));
    ir_attr_set_i(at(id), ATTR_AXIS, 1), ir_attr_set_i(at(id), ATTR_START, 1),
        ir_attr_set_i(at(id), ATTR_SIZE, 3);
    return fin(id);
}

static int c_pad(void) {
    int id = node(OP_PAD, 1, in("x", S(3, N, 3, 2), G_UNIFORM));
    ir_attr_set_i(at(id), ATTR_AXIS, 2), ir_attr_set_i(at(id), ATTR_BEFORE, 1),
        ir_attr_set_i(at(id), ATTR_AFTER, 2);
    return fin(id);
}

static int c_concat(void) {
    int id = node(OP_CONCAT, 3, in("x", S(2, N, 2), G_UNIFORM), in("y", S(2, N, 3), G_UNIFORM),
                  in("z", S(2, N, 1), G_UNIFORM));
    ir_attr_set_i(at(id), ATTR_AXIS, 1);
    return fin(id);
}

static int c_softmax(void) { return with_int(OP_SOFTMAX, in("x", S(3, N, 3, 4), G_UNIFORM), ATTR_AXIS, 1); }
static int attn_softmax(int x, double scale, int causal) {
    int id = node(OP_ATTN_SOFTMAX, 1, x);
    ir_attr_set_f(at(id), ATTR_SCALE, scale);
    ir_attr_set_i(at(id), ATTR_CAUSAL, causal);
    return fin(id);
}
static int c_attn_sm(void) { return attn_softmax(in("x", S(4, N, 2, 3, 4), G_UNIFORM), 0.5, 0); }
static int c_attn_sm_causal(void) { return attn_softmax(in("x", S(3, N, 4, 4), G_UNIFORM), 0.7, 1); }
static int c_attn_sm_causal_kv(void) { return attn_softmax(in("x", S(3, N, 2, 5), G_UNIFORM), 1.0, 1); }
static int attention(int qkv, int64_t heads, double scale, int causal) {
    int id = node(OP_ATTENTION, 1, qkv);
    ir_attr_set_i(at(id), ATTR_HEADS, heads);
    ir_attr_set_f(at(id), ATTR_SCALE, scale);
    ir_attr_set_i(at(id), ATTR_CAUSAL, causal);
    return fin(id);
}
static int c_attention_causal(void) { return attention(in("qkv", S(3, N, 4, 12), G_UNIFORM), 2, 0.7, 1); }
static int c_attention_full(void) { return attention(in("qkv", S(3, N, 3, 9), G_UNIFORM), 1, 0.5, 0); }
static int layernorm(int x, double eps) {
    int id = node(OP_LAYERNORM, 1, x);
    ir_attr_set_f(at(id), ATTR_EPS, eps);
    return fin(id);
}
static int c_layernorm(void) { return layernorm(in("x", S(3, N, 2, 5), G_UNIFORM), 1e-5); }
/* A row of 9 in a rank-2 value, eps large enough to matter. */
static int c_layernorm_eps(void) { return layernorm(in("x", S(2, N, 9), G_UNIFORM), 0.1); }
static int c_log_softmax(void) {
    return with_int(OP_LOG_SOFTMAX, in("x", S(2, N, 5), G_UNIFORM), ATTR_AXIS, 1);
}

static int c_mse(void) { return op2(OP_MSE, in("p", S(2, N, 4), G_UNIFORM), in("t", S(2, N, 4), G_UNIFORM)); }
static int c_bce(void) { return op2(OP_BCE, in("p", S(2, N, 4), G_PROB), in("t", S(2, N, 4), G_PROB)); }
static int c_bce_logits(void) {
    return op2(OP_BCE_LOGITS, in("x", S(2, N, 4), G_UNIFORM), in("t", S(2, N, 4), G_PROB));
}
static int c_hinge(void) { return op2(OP_HINGE, in("s", S(2, N, 4), G_HINGE), in("t", S(2, N, 4), G_SIGN)); }

static int c_ce_labels(void) {
    classes = 5;
    return op2(OP_CROSS_ENTROPY, in("x", S(2, N, 5), G_UNIFORM),
               leaf(OP_INPUT, "y", DT_I32, S(1, N), G_LABEL));
}

static int c_ce_probs(void) {
    return op2(OP_CROSS_ENTROPY, in("x", S(2, N, 5), G_UNIFORM), in("t", S(2, N, 5), G_DIST));
}

/* Tokens: 4 ids per item from 5 rows, so rows repeat (the scatter-add sums). */
static int ids_in(const char *name, struct shape s, int64_t k) {
    classes = k;
    return leaf(OP_INPUT, name, DT_I32, s, G_LABEL);
}

static int c_embedding(void) {
    return op2(OP_EMBEDDING, par("w", S(2, 5, 3), G_UNIFORM), ids_in("ids", S(2, N, 4), 5));
}

static int masked_ce(struct shape xs, struct shape ts, int ignore) {
    int id = node(OP_MASKED_CROSS_ENTROPY, 2, in("x", xs, G_UNIFORM), ids_in("t", ts, xs.dim[xs.rank - 1]));
    ir_attr_set_i(at(id), ATTR_IGNORE, ignore);
    return fin(id);
}

/* Target 0 (a fifth of the positions) is skipped; with ignore -100 none is. */
static int c_mce_pad(void) { return masked_ce(S(3, N, 4, 5), S(2, N, 4), 0); }
static int c_mce_rank2(void) { return masked_ce(S(2, N, 5), S(1, N), -100); }
static int c_mce_rank4(void) { return masked_ce(S(4, N, 2, 3, 4), S(3, N, 2, 3), 2); }

/* Pooling over 5 steps where id 0 (a third of the steps) is padding. */
static int masked_pool(enum op op, enum gen g) {
    int id = node(op, 2, in("x", S(4, N, 5, 2, 3), g), ids_in("ids", S(2, N, 5), 3));
    ir_attr_set_i(at(id), ATTR_PAD_ID, 0);
    return fin(id);
}

static int c_masked_mean(void) { return masked_pool(OP_MASKED_MEAN, G_UNIFORM); }
static int c_masked_max(void) { return masked_pool(OP_MASKED_MAX, G_DISTINCT); }

static int conv(enum op op, int x, int w, int s0, int s1, int p0, int p1, int p2, int p3, int d0, int d1,
                int g) {
    int id = node(op, 2, x, w);
    ints(id, ATTR_STRIDE, 2, s0, s1);
    ints(id, ATTR_PAD, 4, p0, p1, p2, p3);
    ints(id, ATTR_DILATION, 2, d0, d1);
    ir_attr_set_i(at(id), ATTR_GROUPS, g);
    return id;
}

/* stride 2, padding 1, dilation 2, groups 2, odd sizes. */
static int c_conv_a(void) {
    return fin(conv(OP_CONV2D, in("x", S(4, N, 4, 9, 7), G_UNIFORM), par("w", S(4, 6, 2, 3, 3), G_UNIFORM), 2,
                    2, 1, 1, 1, 1, 2, 2, 2));
}

/* Uneven stride and padding, a window that leaves input rows unread. */
static int c_conv_b(void) {
    return fin(conv(OP_CONV2D, in("x", S(4, N, 3, 6, 6), G_UNIFORM), par("w", S(4, 4, 3, 2, 3), G_UNIFORM), 3,
                    2, 0, 1, 2, 0, 1, 1, 1));
}

static int c_convt_a(void) {
    int id = conv(OP_CONV_TRANSPOSE2D, in("x", S(4, N, 4, 3, 4), G_UNIFORM),
                  par("w", S(4, 4, 3, 3, 3), G_UNIFORM), 2, 2, 1, 1, 1, 1, 1, 1, 2);
    ints(id, ATTR_OUTPUT_PAD, 2, 1, 1);
    return fin(id);
}

/* output_pad >= stride (allowed by dilation): conv2d(dy, w) overhangs dx. */
static int c_convt_b(void) {
    int id = conv(OP_CONV_TRANSPOSE2D, in("x", S(4, N, 2, 4, 3), G_UNIFORM),
                  par("w", S(4, 2, 3, 2, 3), G_UNIFORM), 1, 2, 1, 0, 0, 1, 2, 1, 1);
    ints(id, ATTR_OUTPUT_PAD, 2, 1, 1);
    return fin(id);
}

static int pool(enum op op, int x) {
    int id = node(op, 1, x);
    ints(id, ATTR_KERNEL, 2, 3, 2);
    ints(id, ATTR_STRIDE, 2, 2, 3);
    ints(id, ATTR_PAD, 4, 1, 1, 1, 0);
    return fin(id);
}

static int c_maxpool(void) { return pool(OP_MAXPOOL2D, in("x", S(4, N, 2, 7, 8), G_DISTINCT)); }
static int c_avgpool(void) { return pool(OP_AVGPOOL2D, in("x", S(4, N, 2, 7, 8), G_UNIFORM)); }

static int c_upsample(void) {
    int id = node(OP_UPSAMPLE2D, 1, in("x", S(4, N, 2, 3, 2), G_UNIFORM));
    ints(id, ATTR_FACTOR, 2, 2, 3);
    return fin(id);
}

static int c_allreduce(void) {
    int id = node(OP_ALLREDUCE, 1, op1(OP_TANH, in("x", S(2, N, 4), G_UNIFORM)));
    ir_attr_set_i(at(id), ATTR_BUCKET, -1);
    return fin(id);
}

static int c_allreduce_sum(void) {
    return fin(node(OP_ALLREDUCE_SUM, 1, op1(OP_TANH, in("x", S(2, N, 4), G_UNIFORM))));
}

static int c_dropout(void) {
    int id = node(OP_DROPOUT, 1, in("x", S(3, N, 4, 5), G_UNIFORM));
    ir_attr_set_f(at(id), ATTR_RATE, 0.3);
    ir_attr_set_i(at(id), ATTR_SEED, 7);
    return fin(id);
}

static int batchnorm(int x, int mean, int var) {
    int c = (int)F->nodes[x].type.shape.dim[1];
    int id = node(OP_BATCHNORM, 5, x, par("gamma", S(1, c), G_UNIFORM), par("beta", S(1, c), G_UNIFORM), mean,
                  var);
    ir_attr_set_f(at(id), ATTR_EPS, 1e-5);
    return fin(id);
}

/* Train mode: mean and var are the batch statistics of x. */
static int c_bn_train(void) {
    int x = in("x", S(4, N, 3, 4, 2), G_UNIFORM);
    return batchnorm(x, reduce(OP_MEAN, x, 0, 3, 0, 2, 3), reduce(OP_VARIANCE, x, 0, 3, 0, 2, 3));
}

static int c_bn_train2(void) {
    int x = in("x", S(2, N, 4), G_UNIFORM);
    return batchnorm(x, reduce(OP_MEAN, x, 0, 1, 0), reduce(OP_VARIANCE, x, 0, 1, 0));
}

/* Eval mode: running statistics as parameters (differentiated too). */
static int c_bn_eval(void) {
    return batchnorm(in("x", S(4, N, 3, 2, 3), G_UNIFORM), par("mean", S(1, 3), G_UNIFORM),
                     par("var", S(1, 3), G_POS));
}

/* A recurrent layer over T steps of F features, H units, from a random initial
 * state; lengths random in [0, T] (padding: the state passes through) or all T. */
static int rnn_case(int cell, int rev, int t, int f, int h, bool lengths) {
    int g = ir_rnn_gates(cell), st = ir_rnn_state(cell) * h;
    int x = in("x", S(3, N, t, f), G_UNIFORM);
    int wi = par("wi", S(2, g * h, f), G_UNIFORM), wh = par("wh", S(2, g * h, h), G_UNIFORM);
    int bi = par("bi", S(1, g * h), G_UNIFORM), bh = par("bh", S(1, g * h), G_UNIFORM);
    int s0 = in("s0", S(2, N, st), G_UNIFORM), len;
    if (lengths) {
        classes = t + 1;
        len = leaf(OP_INPUT, "len", DT_I32, S(1, N), G_LABEL);
    } else {
        len = node(OP_CONST, 0);
        at(len)->type = (struct type){DT_I32, S(1, N)};
        ir_attr_set_f(at(len), ATTR_VALUE, t);
        fin(len);
    }
    int id = node(OP_RNN, 7, x, wi, wh, bi, bh, s0, len);
    ir_attr_set_i(at(id), ATTR_CELL, cell);
    ir_attr_set_i(at(id), ATTR_REVERSE, rev);
    return fin(id);
}

static int c_lstm(void) { return rnn_case(IR_RNN_LSTM, 0, 4, 2, 3, false); }
static int c_lstm_rev_len(void) { return rnn_case(IR_RNN_LSTM, 1, 5, 3, 2, true); }
static int c_lstm_len(void) { return rnn_case(IR_RNN_LSTM, 0, 5, 2, 3, true); }
static int c_gru(void) { return rnn_case(IR_RNN_GRU, 0, 4, 3, 3, false); }
static int c_gru_rev_len(void) { return rnn_case(IR_RNN_GRU, 1, 5, 2, 3, true); }
static int c_rnn_tanh_len(void) { return rnn_case(IR_RNN_TANH, 0, 5, 3, 4, true); }
static int c_rnn_relu_rev(void) { return rnn_case(IR_RNN_RELU, 1, 4, 2, 3, false); }
static int c_rnn_sigmoid(void) { return rnn_case(IR_RNN_SIGMOID, 0, 4, 2, 3, true); }
/* Long sequences: 40 steps, padded. */
static int c_lstm_long(void) { return rnn_case(IR_RNN_LSTM, 0, 40, 2, 2, true); }
static int c_gru_long(void) { return rnn_case(IR_RNN_GRU, 1, 40, 2, 2, true); }

/* A slice of a recurrent case's value along axis at [start, start + size). */
static int rnn_slice(int y, int axis, int start, int size) {
    int id = node(OP_SLICE, 1, y);
    ir_attr_set_i(at(id), ATTR_AXIS, axis), ir_attr_set_i(at(id), ATTR_START, start),
        ir_attr_set_i(at(id), ATTR_SIZE, size);
    return fin(id);
}

/* The final state h [N, 1, H] (step T-1, reverse: 0), or every state h
 * [N, T, H]: autodiff hands rnn_bptt the narrow gradient [N, 1, H] or [N, T, H]. */
static int rnn_last(int cell, int rev, int t, int f, int h, bool lengths, bool every) {
    int y = rnn_case(cell, rev, t, f, h, lengths);
    if (!every) y = rnn_slice(y, 1, rev ? 0 : t - 1, 1);
    return rnn_slice(y, 2, 0, h);
}
static int c_gru_last(void) { return rnn_last(IR_RNN_GRU, 0, 5, 3, 3, true, false); }
static int c_lstm_rev_last(void) { return rnn_last(IR_RNN_LSTM, 1, 4, 2, 3, true, false); }
static int c_lstm_states(void) { return rnn_last(IR_RNN_LSTM, 0, 4, 3, 2, true, true); }
static int c_rnn_tanh_rev_last(void) { return rnn_last(IR_RNN_TANH, 1, 5, 2, 3, false, false); }

/* A value used twice and a parameter read by two nodes: gradients accumulate. */
static int c_shared(void) {
    int x = in("x", S(2, N, 3), G_UNIFORM);
    int t = op2(OP_MUL, op1(OP_TANH, x), x);
    return op2(OP_MUL, op2(OP_ADD, t, par("w", S(1, 3), G_UNIFORM)), par("w", S(1, 3), G_UNIFORM));
}

/* A two-layer net with a residual-style reuse of the hidden layer. (Finite
 * differences cannot see a stop-gradient; test_grad_pass.c checks it.) */
static int c_mlp(void) {
    int x = in("x", S(2, N, 3), G_UNIFORM);
    int h = op1(OP_TANH, mm(x, par("w1", S(2, 3, 4), G_UNIFORM), 0, 0));
    int r = op2(OP_ADD, h, op2(OP_MUL, h, h));
    return mm(r, par("w2", S(2, 4, 2), G_UNIFORM), 0, 0);
}

struct gcase {
    const char *name;   /* for messages */
    int (*build)(void); /* builds the forward graph, returns the value checked */
    double eps, tol;    /* 0: the defaults */
    enum op ops[3];     /* the ops it checks (OP_INPUT ends the list early) */
};

static const struct gcase cases[] = {
    {"neg", c_neg, 0, 0, {OP_NEG}},
    {"exp", c_exp, 0, 0, {OP_EXP}},
    {"log", c_log, 0, 0, {OP_LOG}},
    {"sqrt", c_sqrt, 0, 0, {OP_SQRT}},
    {"abs", c_abs, 0, 0, {OP_ABS}},
    {"relu", c_relu, 0, 0, {OP_RELU}},
    {"leaky_relu", c_leaky_relu, 0, 0, {OP_LEAKY_RELU}},
    {"sigmoid", c_sigmoid, 0, 0, {OP_SIGMOID}},
    {"tanh", c_tanh, 0, 0, {OP_TANH}},
    {"erf", c_erf, 0, 0, {OP_ERF}},
    {"gelu exact", c_gelu_erf, 0, 0, {OP_GELU}},
    {"gelu tanh", c_gelu_tanh, 0, 0, {OP_GELU}},
    {"add [N,3]+[3]", c_add_row, 0, 0, {OP_ADD}},
    {"add [N,1]+[N,4]", c_add_col, 0, 0, {OP_ADD}},
    {"add []+[N,4]", c_add_scalar, 0, 0, {OP_ADD}},
    {"sub [N,1,4]-[3,1]", c_sub, 0, 0, {OP_SUB}},
    {"mul [N,3]*[3]", c_mul_row, 0, 0, {OP_MUL}},
    {"mul [N,1]*[N,4]", c_mul_col, 0, 0, {OP_MUL}},
    {"div [N,3]/[3]", c_div, 0, 0, {OP_DIV}},
    {"div [4]/[N,1]", c_div_col, 0, 0, {OP_DIV}},
    {"maximum [N,3],[3]", c_maximum, 0, 0, {OP_MAXIMUM}},
    {"pow", c_pow, 0, 0, {OP_POW}},
    {"bias_add axis 1", c_bias_add, 0, 0, {OP_BIAS_ADD}},
    {"sum axis 1", c_sum, 0, 0, {OP_SUM}},
    {"sum axes 0,2 keep", c_sum_n, 0, 0, {OP_SUM}},
    {"sum all", c_sum_all, 0, 0, {OP_SUM}},
    {"mean axis 2 keep", c_mean, 0, 0, {OP_MEAN}},
    {"mean over N", c_mean_n, 0, 0, {OP_MEAN}},
    {"mean all", c_mean_all, 0, 0, {OP_MEAN}},
    {"max axis 1", c_max, 0, 0, {OP_MAX}},
    {"max all keep", c_max_all, 0, 0, {OP_MAX}},
    {"variance axes 0,2", c_variance, 0, 0, {OP_VARIANCE}},
    {"variance axis 1 keep", c_variance_k, 0, 0, {OP_VARIANCE}},
    {"sum_to", c_sum_to, 0, 0, {OP_SUM_TO}},
    {"broadcast_to", c_broadcast_to, 0, 0, {OP_BROADCAST_TO}},
    {"matmul", c_mm, 0, 0, {OP_MATMUL}},
    {"matmul b^T", c_mm_tb, 0, 0, {OP_MATMUL}},
    {"matmul a^T (over N)", c_mm_ta, 0, 0, {OP_MATMUL}},
    {"matmul a^T b^T", c_mm_tab, 0, 0, {OP_MATMUL}},
    {"matmul [N,2,3]@[3,4]", c_bmm_w, 0, 0, {OP_MATMUL}},
    {"matmul [N,2,3]@[N,3,4]", c_bmm, 0, 0, {OP_MATMUL}},
    {"matmul [N,2,2,3]@[N,2,4,3]^T", c_bmm_tb, 0, 0, {OP_MATMUL}},
    {"matmul [N,1,2,3]@[2,3,4] broadcast", c_bmm_bc, 0, 0, {OP_MATMUL}},
    {"matmul [2,3,2]^T@[N,1,3,4] broadcast", c_bmm_ta, 0, 0, {OP_MATMUL}},
    {"matmul [N,3,2]^T@[4,3]^T", c_bmm_tab, 0, 0, {OP_MATMUL}},
    {"reshape", c_reshape, 0, 0, {OP_RESHAPE}},
    {"transpose", c_transpose, 0, 0, {OP_TRANSPOSE}},
    {"slice", c_slice, 0, 0, {OP_SLICE}},
    {"pad", c_pad, 0, 0, {OP_PAD}},
    {"concat", c_concat, 0, 0, {OP_CONCAT}},
    {"softmax axis 1 of 3", c_softmax, 0, 0, {OP_SOFTMAX}},
    {"attn_softmax", c_attn_sm, 0, 0, {OP_ATTN_SOFTMAX}},
    {"attn_softmax causal", c_attn_sm_causal, 0, 0, {OP_ATTN_SOFTMAX}},
    {"attn_softmax causal Tq<Tk", c_attn_sm_causal_kv, 0, 0, {OP_ATTN_SOFTMAX}},
    {"attention causal, 2 heads", c_attention_causal, 0, 0, {OP_ATTENTION}},
    {"attention full, 1 head", c_attention_full, 0, 0, {OP_ATTENTION}},
    {"log_softmax", c_log_softmax, 0, 0, {OP_LOG_SOFTMAX}},
    {"layernorm", c_layernorm, 0, 0, {OP_LAYERNORM}},
    {"layernorm eps 0.1", c_layernorm_eps, 0, 0, {OP_LAYERNORM}},
    {"mse", c_mse, 0, 0, {OP_MSE}},
    {"cross_entropy labels", c_ce_labels, 0, 0, {OP_CROSS_ENTROPY}},
    {"cross_entropy probs", c_ce_probs, 0, 0, {OP_CROSS_ENTROPY}},
    {"masked_cross_entropy pad 0", c_mce_pad, 0, 0, {OP_MASKED_CROSS_ENTROPY}},
    {"masked_cross_entropy rank 2", c_mce_rank2, 0, 0, {OP_MASKED_CROSS_ENTROPY}},
    {"masked_cross_entropy rank 4", c_mce_rank4, 0, 0, {OP_MASKED_CROSS_ENTROPY}},
    {"embedding, repeated ids", c_embedding, 0, 0, {OP_EMBEDDING}},
    {"masked_mean over time", c_masked_mean, 0, 0, {OP_MASKED_MEAN}},
    {"masked_max over time", c_masked_max, 0, 0, {OP_MASKED_MAX}},
    {"bce", c_bce, 0, 0, {OP_BCE}},
    {"bce_logits", c_bce_logits, 0, 0, {OP_BCE_LOGITS}},
    {"hinge", c_hinge, 0, 0, {OP_HINGE}},
    {"conv2d s2 p1 d2 g2", c_conv_a, 0, 0, {OP_CONV2D}},
    {"conv2d s3,2 uneven pad", c_conv_b, 0, 0, {OP_CONV2D}},
    {"conv_transpose2d s2 g2 op1", c_convt_a, 0, 0, {OP_CONV_TRANSPOSE2D}},
    {"conv_transpose2d d2 op1", c_convt_b, 0, 0, {OP_CONV_TRANSPOSE2D}},
    {"maxpool2d k3,2 s2,3 pad", c_maxpool, 0, 0, {OP_MAXPOOL2D}},
    {"avgpool2d k3,2 s2,3 pad", c_avgpool, 0, 0, {OP_AVGPOOL2D}},
    {"upsample2d 2,3", c_upsample, 0, 0, {OP_UPSAMPLE2D}},
    {"allreduce (one process)", c_allreduce, 0, 0, {OP_ALLREDUCE}},
    {"allreduce_sum (one process)", c_allreduce_sum, 0, 0, {OP_ALLREDUCE_SUM}},
    {"dropout 0.3", c_dropout, 0, 0, {OP_DROPOUT}},
    {"batchnorm train NCHW", c_bn_train, 0, 0, {OP_BATCHNORM, OP_MEAN, OP_VARIANCE}},
    {"batchnorm train NC", c_bn_train2, 0, 0, {OP_BATCHNORM, OP_MEAN, OP_VARIANCE}},
    {"batchnorm eval", c_bn_eval, 0, 0, {OP_BATCHNORM}},
    {"lstm", c_lstm, 0, 0, {OP_RNN}},
    {"lstm reverse, lengths", c_lstm_rev_len, 0, 0, {OP_RNN}},
    {"lstm lengths", c_lstm_len, 0, 0, {OP_RNN}},
    {"gru", c_gru, 0, 0, {OP_RNN}},
    {"gru reverse, lengths", c_gru_rev_len, 0, 0, {OP_RNN}},
    {"rnn tanh lengths", c_rnn_tanh_len, 0, 0, {OP_RNN}},
    {"rnn relu reverse", c_rnn_relu_rev, 0, 0, {OP_RNN}},
    {"rnn sigmoid lengths", c_rnn_sigmoid, 0, 0, {OP_RNN}},
    {"lstm 40 steps, lengths", c_lstm_long, 0, 1e-5, {OP_RNN}},
    {"gru reverse 40 steps, lengths", c_gru_long, 0, 1e-5, {OP_RNN}},
    {"gru final state, lengths", c_gru_last, 0, 0, {OP_RNN}},
    {"lstm reverse final state, lengths", c_lstm_rev_last, 0, 0, {OP_RNN}},
    {"lstm every h, lengths", c_lstm_states, 0, 0, {OP_RNN}},
    {"rnn tanh reverse final state", c_rnn_tanh_rev_last, 0, 0, {OP_RNN}},
    {"shared value and param", c_shared, 0, 0, {OP_MUL, OP_ADD, OP_TANH}},
    {"mlp, hidden reused", c_mlp, 0, 0, {OP_MATMUL, OP_TANH}},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* ------------------------------------------------------------ the check */

/* Test data for buffer b (count elements). */
static void fill(const struct ir_buffer *b, enum gen g, double *v, size_t count) {
    size_t last = b->type.shape.rank ? (size_t)b->type.shape.dim[b->type.shape.rank - 1] : 1;
    for (size_t i = 0; i < count; i++) {
        double s = rng_next() & 1 ? 1 : -1;
        switch (g) {
        case G_UNIFORM:
            v[i] = urand(-1, 1);
            break;
        case G_POS:
            v[i] = urand(0.5, 2);
            break;
        case G_AWAY:
            v[i] = s * urand(0.2, 1);
            break;
        case G_DISTINCT:
            v[i] = ((double)i - (double)count / 2) * 0.07;
            break;
        case G_GRID:
            v[i] = (double)((int)(rng_next() % 21) - 10) * 0.1;
            break;
        case G_GRID5:
            v[i] = (double)((int)(rng_next() % 20) - 10) * 0.1 + 0.05;
            break;
        case G_PROB:
            v[i] = urand(0.1, 0.9);
            break;
        case G_SIGN:
            v[i] = s;
            break;
        case G_HINGE:
            v[i] = s * (rng_next() & 2 ? urand(0.2, 0.8) : urand(1.2, 2));
            break;
        case G_DIST:
            v[i] = urand(0.1, 1);
            break;
        case G_LABEL:
            v[i] = (double)(rng_next() % (uint64_t)classes);
            break;
        }
    }
    if (g == G_DISTINCT) /* shuffle */
        for (size_t i = count; i > 1; i--) {
            size_t j = rng_next() % i;
            double t = v[i - 1];
            v[i - 1] = v[j], v[j] = t;
        }
    if (g == G_DIST)
        for (size_t r = 0; r + last <= count; r += last) {
            double s = 0;
            for (size_t j = 0; j < last; j++) s += v[r + j];
            for (size_t j = 0; j < last; j++) v[r + j] /= s;
        }
}

static size_t buf_numel(const struct ir_buffer *b) {
    size_t n = 1;
    for (int i = 0; i < b->type.shape.rank; i++)
        n *= (size_t)(b->type.shape.dim[i] == N ? BATCH : b->type.shape.dim[i]);
    return n;
}

static bool set_buf(struct cg_interp *it, const struct ir_buffer *b, const double *v, size_t count) {
    if (b->type.dtype == DT_F32) return cg_interp_set_f64(it, b->name, v, count);
    int32_t *iv = malloc(sizeof *iv * count);
    for (size_t i = 0; i < count; i++) iv[i] = (int32_t)v[i];
    bool ok = cg_interp_set_i32(it, b->name, iv, count);
    free(iv);
    return ok;
}

static double loss_at(struct cg_interp *it) {
    double l = NAN;
    if (!cg_interp_run(it) || !cg_interp_output_f64(it, "loss", &l, 1))
        fprintf(stderr, "run failed: %s\n", cg_interp_error(it));
    return l;
}

static double worst_by_op[OP_COUNT]; /* worst error over the cases of each op */

/* Build case c, differentiate, compare. Returns the worst error. */
static double run_case(const struct gcase *c) {
    double eps = c->eps ? c->eps : 1e-5, tol = c->tol ? c->tol : 1e-6;
    M = ir_module_new("grad");
    F = ir_func_add(M, "train", MODE_TRAIN);
    rng_state = 0x1234u + (uint64_t)(c - cases) * 7919u;
    int y = c->build();
    int w = in("wts", F->nodes[y].type.shape, G_UNIFORM);
    int loss = reduce(OP_SUM, op2(OP_MUL, y, w), 0, 0);
    ir_output_add(M, F, "loss", loss);
    F->loss = arena_strdup(M->arena, "loss");
    pass_autodiff_func(M, F, true);
    if (!ir_verify(M)) {
        TEST_FAIL_("%s: the IR is invalid after autodiff", c->name);
        ir_print(stderr, M);
    }

    size_t nb = vec_len(M->buffers);
    double *data[MAX_BUFS];
    struct cg_interp *it = cg_interp_new(M, F, BATCH);
    for (size_t b = 0; b < nb; b++) {
        size_t count = buf_numel(&M->buffers[b]);
        data[b] = malloc(sizeof(double) * count);
        fill(&M->buffers[b], gen_of[b], data[b], count);
        if (!set_buf(it, &M->buffers[b], data[b], count)) TEST_FAIL_("%s: %s", c->name, cg_interp_error(it));
    }
    loss_at(it);
    double worst = 0;
    for (size_t b = 0; b < nb; b++) {
        const struct ir_buffer *buf = &M->buffers[b];
        if (buf->type.dtype != DT_F32) continue;
        char name[128];
        snprintf(name, sizeof name, "grad.%s", buf->name);
        size_t count = buf_numel(buf);
        if (cg_interp_output_count(it, name) != count) {
            TEST_FAIL_("%s: no gradient output %s", c->name, name);
            continue;
        }
        double *g = malloc(sizeof(double) * count);
        loss_at(it); /* the unperturbed run */
        cg_interp_output_f64(it, name, g, count);
        for (size_t i = 0; i < count; i++) {
            double v = data[b][i];
            data[b][i] = v + eps;
            set_buf(it, buf, data[b], count);
            double lp = loss_at(it);
            data[b][i] = v - eps;
            set_buf(it, buf, data[b], count);
            double lm = loss_at(it);
            data[b][i] = v;
            set_buf(it, buf, data[b], count);
            double num = (lp - lm) / (2 * eps);
            double den = fmax(fmax(fabs(g[i]), fabs(num)), 1e-3);
            double err = fabs(g[i] - num) / den;
            if (!(err <= worst)) worst = err;
            if (!(err <= tol))
                TEST_FAIL_("%s: d loss / d %s[%zu]: autodiff %.10g, finite differences %.10g (rel err %.2e)",
                           c->name, buf->name, i, g[i], num, err);
            else
                test_passed++;
        }
        free(g);
    }
    printf("%-30s worst rel err %.2e  (eps %g, tol %g)\n", c->name, worst, eps, tol);
    for (int k = 0; k < 3; k++)
        if (c->ops[k] != OP_INPUT && !(worst <= worst_by_op[c->ops[k]])) worst_by_op[c->ops[k]] = worst;
    for (size_t b = 0; b < nb; b++) free(data[b]);
    cg_interp_free(it);
    ir_module_free(M);
    return worst;
}

/* Every differentiable op has a case. */
static void test_coverage(void) {
    bool covered[OP_COUNT] = {false};
    for (int c = 0; c < NCASES; c++)
        for (int k = 0; k < 3; k++)
            if (cases[c].ops[k] != OP_INPUT) covered[cases[c].ops[k]] = true;
    for (int op = 0; op < OP_COUNT; op++) {
        if ((op_info[op].flags & OF_NOGRAD) || op_info[op].kind == OK_LEAF) continue;
        if (covered[op])
            test_passed++;
        else
            TEST_FAIL_("differentiable op %s has no gradient check case", op_info[op].name);
    }
}

int main(void) {
    for (int c = 0; c < NCASES; c++) run_case(&cases[c]);
    printf("worst per op:\n");
    for (int op = 0; op < OP_COUNT; op++)
        if (!(op_info[op].flags & OF_NOGRAD) && op_info[op].kind != OK_LEAF)
            printf("  %-20s %.2e\n", op_info[op].name, worst_by_op[op]);
    test_coverage();
    TEST_DONE();
}
