/* frontend/lower_attn.c -- the transformer-era builtins: matmul/bmm, layernorm,
 * gelu/erf, conv1d and 1-d pooling (lowered onto their 2-d ops through a height-1
 * reshape), and multi-head self-attention with nn.MultiheadAttention's
 * parameters (in_proj_weight, in_proj_bias, out_proj.weight, out_proj.bias).
 * The rows of the builtin table are in lower_layers.c; each routine here binds
 * its own options. Sections: helpers; functions; normalization and activations;
 * 1-d convolution and pooling; attention. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

/* ----------------------------------------------------------------- helpers */

#define MAX_UNITS ((int64_t)1 << 24)
#define MAX_WINDOW 4096

static struct type f32_of(int rank, const int64_t *dims) {
    struct type t;
    memset(&t, 0, sizeof t);
    t.dtype = DT_F32;
    t.shape.rank = rank;
    for (int i = 0; i < rank; i++) t.shape.dim[i] = dims[i];
    return t;
}

static struct shape shape_of(int rank, const int64_t *dims) { return f32_of(rank, dims).shape; }

static int mm(struct lower *L, int a, int b, bool tb, struct loc loc) {
    if (a < 0 || b < 0) return -1;
    int id = lw_node(L, OP_MATMUL, (int[]){a, b}, 2, loc);
    ir_attr_set_i(lw_n(L, id), ATTR_TRANSPOSE_B, tb);
    return lw_fin(L, id);
}

static int add(struct lower *L, int a, int b, struct loc loc) {
    return a < 0 || b < 0 ? -1 : lw_emit2(L, OP_ADD, a, b, loc);
}

static int mul(struct lower *L, int a, int b, struct loc loc) {
    return a < 0 || b < 0 ? -1 : lw_emit2(L, OP_MUL, a, b, loc);
}

static int transpose(struct lower *L, int x, const int64_t *perm, int rank, struct loc loc) {
    if (x < 0) return -1;
    int id = lw_node(L, OP_TRANSPOSE, &x, 1, loc);
    ir_attr_set_v(lw_n(L, id), ATTR_PERM, perm, rank);
    return lw_fin(L, id);
}

/* The tensor of argument k (a number becomes a scalar constant). */
static int tensor_of(struct lower *L, const char *what, struct fe_arg *args, int nargs, int k,
                     struct loc loc) {
    if (k < nargs && !args[k].kw && args[k].v.kind == V_TENSOR) return args[k].v.id;
    if (k < nargs && !args[k].kw && args[k].v.kind == V_NUM)
        return lw_const(L, args[k].v.num, DT_F32, args[k].loc);
    lw_error(L, k < nargs ? args[k].loc : loc, "%s needs a tensor as argument %d", what, k + 1);
    return -1;
}

/* The static size of the last dim of x, or an error naming `what`. */
static bool last_dim(struct lower *L, const char *what, int x, int64_t *out, struct loc loc) {
    const struct type *t = lw_type(L, x);
    if (t->dtype == DT_F32 && t->shape.rank >= 1 && t->shape.dim[t->shape.rank - 1] != IR_DIM_N) {
        *out = t->shape.dim[t->shape.rank - 1];
        return true;
    }
    lw_error(L, loc, "%s expects an f32 input with static features in its last dim, got %s", what,
             lw_tstr(L, t));
    return false;
}

/* --------------------------------------------------------------- functions */

/* matmul(a, b): a @ b; bmm(a, b): the same on [B, n, k] @ [B, k, m] only. */
struct val fe_func_matmul(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                          struct loc loc) {
    const char *what = fe_builtin_name(b);
    if (nargs != 2 || args[0].kw || args[1].kw) {
        lw_error(L, loc, "%s takes two tensors: %s(a, b)", what, what);
        return lw_err();
    }
    int x = tensor_of(L, what, args, nargs, 0, loc), y = x < 0 ? -1 : tensor_of(L, what, args, nargs, 1, loc);
    if (y < 0) return lw_err();
    if (strcmp(what, "bmm") == 0 && (lw_type(L, x)->shape.rank != 3 || lw_type(L, y)->shape.rank != 3)) {
        lw_error(L, loc, "bmm multiplies batches of matrices [B, n, k] @ [B, k, m], got %s and %s",
                 lw_tstr(L, lw_type(L, x)), lw_tstr(L, lw_type(L, y)));
        return lw_err();
    }
    return lw_matmul(L, x, y, what, loc);
}

/* ------------------------------------------- normalization and activations */

/* layernorm(eps=1e-5) over the last axis, with gamma (ones) and beta (zeros)
 * of the last dim's size: PyTorch's nn.LayerNorm(D) (weight, bias). */
struct val fe_layer_layernorm(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc) {
    static const char *const opts[] = {"eps", NULL};
    struct fe_arg *o[FE_MAX_OPTS];
    double eps;
    int64_t d;
    if (!fe_bind(L, "layernorm", opts, args, nargs, o, loc) ||
        !fe_opt_num(L, "layernorm", "eps", o[0], 1e-5, 1e-30, 1, &eps) ||
        !last_dim(L, "layernorm", x, &d, loc))
        return lw_err();
    int k = fe_layer_count(L, b);
    struct type pt = f32_of(1, &d);
    int gamma = lw_param(L, "layernorm", k, "gamma", BUF_PARAM, pt, (struct ir_init){INIT_CONST, 1, 0}, loc);
    int beta = lw_param(L, "layernorm", k, "beta", BUF_PARAM, pt, (struct ir_init){INIT_ZEROS, 0, 0}, loc);
    if (gamma < 0 || beta < 0) return lw_err();
    int y = lw_node(L, OP_LAYERNORM, &x, 1, loc);
    ir_attr_set_f(lw_n(L, y), ATTR_EPS, eps);
    y = lw_fin(L, y);
    return lw_tensor(add(L, mul(L, y, gamma, loc), beta, loc));
}

/* gelu(approximate="none" | "tanh"), as F.gelu. */
struct val fe_layer_gelu(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs, int x,
                         struct loc loc) {
    static const char *const opts[] = {"approximate", NULL};
    struct fe_arg *o[FE_MAX_OPTS];
    if (!fe_bind(L, "gelu", opts, args, nargs, o, loc)) return lw_err();
    bool approx = false;
    if (o[0]) {
        if (o[0]->v.kind != V_STR || (strcmp(o[0]->v.str, "none") != 0 && strcmp(o[0]->v.str, "tanh") != 0)) {
            lw_error(L, o[0]->loc, "gelu: approximate must be \"none\" or \"tanh\"");
            return lw_err();
        }
        approx = strcmp(o[0]->v.str, "tanh") == 0;
    }
    if (lw_type(L, x)->dtype != DT_F32) {
        lw_error(L, loc, "gelu expects an f32 input, got %s", lw_tstr(L, lw_type(L, x)));
        return lw_err();
    }
    int y = lw_node(L, OP_GELU, &x, 1, loc);
    ir_attr_set_i(lw_n(L, y), ATTR_APPROXIMATE, approx);
    return lw_tensor(lw_fin(L, y));
}

/* --------------------------------------------- 1-d convolution and pooling */

/* [N, C, L] -> [N, C, 1, L] and back. */
static int to_2d(struct lower *L, int x) {
    const struct shape *s = &lw_type(L, x)->shape;
    struct shape t = shape_of(4, (int64_t[]){s->dim[0], s->dim[1], 1, s->dim[2]});
    return lw_reshape(L, x, &t, lw_n(L, x)->loc);
}

static int from_2d(struct lower *L, int y, struct loc loc) {
    if (y < 0) return -1;
    const struct shape *s = &lw_type(L, y)->shape;
    struct shape t = shape_of(3, (int64_t[]){s->dim[0], s->dim[1], s->dim[3]});
    return lw_reshape(L, y, &t, loc);
}

static bool need_ncl(struct lower *L, const char *what, int x, struct loc loc) {
    const struct type *t = lw_type(L, x);
    if (t->shape.rank == 3 && t->dtype == DT_F32 && t->shape.dim[1] != IR_DIM_N &&
        t->shape.dim[2] != IR_DIM_N)
        return true;
    lw_error(L, loc, "%s expects a rank-3 f32 input [N, C, L], got %s", what, lw_tstr(L, t));
    return false;
}

/* padding = int | "valid" | "same" (stride 1 only, as PyTorch): [left, right]. */
static bool pad_1d(struct lower *L, const char *what, const struct fe_arg *a, int64_t k, int64_t s, int64_t d,
                   bool allow_same, int64_t pad[2]) {
    pad[0] = pad[1] = 0;
    if (!a) return true;
    if (a->v.kind == V_STR) {
        if (strcmp(a->v.str, "valid") == 0) return true;
        if (strcmp(a->v.str, "same") == 0 && allow_same) {
            if (s != 1) {
                lw_error(L, a->loc, "%s: padding \"same\" needs stride 1", what);
                return false;
            }
            int64_t total = (k - 1) * d;
            pad[0] = total / 2, pad[1] = total - total / 2;
            return true;
        }
        lw_error(L, a->loc, "%s: padding must be an integer%s, got \"%s\"", what,
                 allow_same ? ", \"same\" or \"valid\"" : " or \"valid\"", a->v.str);
        return false;
    }
    int64_t p;
    if (!fe_opt_int(L, what, "padding", a, 0, 0, MAX_WINDOW, &p)) return false;
    pad[0] = pad[1] = p;
    return true;
}

/* conv1d(filters, kernel, stride=1, padding=0, dilation=1, groups=1, bias=true)
 * on [N, C, L]; weight [filters, C/groups, kernel] (nn.Conv1d's), bias [filters]. */
struct val fe_layer_conv1d(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs, int x,
                           struct loc loc) {
    static const char *const opts[] = {"filters",  "kernel", "stride", "padding",
                                       "dilation", "groups", "bias",   NULL};
    struct fe_arg *o[FE_MAX_OPTS];
    int64_t filters, k, s, d, g, pad[2];
    bool bias;
    if (!fe_bind(L, "conv1d", opts, args, nargs, o, loc)) return lw_err();
    if (!o[0] || !o[1]) {
        lw_error(L, loc, "conv1d needs '%s'", o[0] ? "kernel" : "filters");
        return lw_err();
    }
    if (!fe_opt_int(L, "conv1d", "filters", o[0], 0, 1, MAX_UNITS, &filters) ||
        !fe_opt_int(L, "conv1d", "kernel", o[1], 0, 1, MAX_WINDOW, &k) ||
        !fe_opt_int(L, "conv1d", "stride", o[2], 1, 1, MAX_WINDOW, &s) ||
        !fe_opt_int(L, "conv1d", "dilation", o[4], 1, 1, MAX_WINDOW, &d) ||
        !fe_opt_int(L, "conv1d", "groups", o[5], 1, 1, MAX_UNITS, &g) ||
        !fe_opt_bool(L, "conv1d", "bias", o[6], true, &bias) || !need_ncl(L, "conv1d", x, loc) ||
        !pad_1d(L, "conv1d", o[3], k, s, d, true, pad))
        return lw_err();
    int64_t cin = lw_type(L, x)->shape.dim[1];
    if (cin % g || filters % g) {
        lw_error(L, loc,
                 "conv1d with groups=%lld expects input channels and filters divisible by %lld, got %s and "
                 "%lld filters",
                 (long long)g, (long long)g, lw_tstr(L, lw_type(L, x)), (long long)filters);
        return lw_err();
    }
    int kk = fe_layer_count(L, b);
    int w = lw_param(L, "conv1d", kk, "w", BUF_PARAM, f32_of(3, (int64_t[]){filters, cin / g, k}),
                     lw_glorot(cin / g * k, filters * k), loc);
    if (w < 0) return lw_err();
    struct shape w4 = shape_of(4, (int64_t[]){filters, cin / g, 1, k});
    int x4 = to_2d(L, x), ww = lw_reshape(L, w, &w4, loc);
    if (x4 < 0 || ww < 0) return lw_err();
    int y = lw_node(L, OP_CONV2D, (int[]){x4, ww}, 2, loc);
    struct ir_node *n = lw_n(L, y);
    ir_attr_set_v(n, ATTR_STRIDE, (int64_t[]){1, s}, 2);
    ir_attr_set_v(n, ATTR_PAD, (int64_t[]){0, pad[0], 0, pad[1]}, 4);
    ir_attr_set_v(n, ATTR_DILATION, (int64_t[]){1, d}, 2);
    ir_attr_set_i(n, ATTR_GROUPS, g);
    y = from_2d(L, lw_fin(L, y), loc);
    if (bias && y >= 0) {
        int bb = lw_param(L, "conv1d", kk, "b", BUF_PARAM, f32_of(1, &filters), (struct ir_init){0}, loc);
        if (bb < 0) return lw_err();
        int id = lw_node(L, OP_BIAS_ADD, (int[]){y, bb}, 2, loc);
        ir_attr_set_i(lw_n(L, id), ATTR_AXIS, 1);
        y = lw_fin(L, id);
    }
    return lw_tensor(y);
}

/* maxpool1d / avgpool1d(kernel, stride=kernel, padding=0) on [N, C, L]. */
struct val fe_layer_pool1d(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs, int x,
                           struct loc loc) {
    static const char *const opts[] = {"kernel", "stride", "padding", NULL};
    const char *what = fe_builtin_name(b);
    struct fe_arg *o[FE_MAX_OPTS];
    int64_t k, s, pad[2];
    if (!fe_bind(L, what, opts, args, nargs, o, loc)) return lw_err();
    if (!o[0]) {
        lw_error(L, loc, "%s needs 'kernel'", what);
        return lw_err();
    }
    if (!fe_opt_int(L, what, "kernel", o[0], 0, 1, MAX_WINDOW, &k) ||
        !fe_opt_int(L, what, "stride", o[1], k, 1, MAX_WINDOW, &s) || !need_ncl(L, what, x, loc) ||
        !pad_1d(L, what, o[2], k, s, 1, false, pad))
        return lw_err();
    if (pad[0] * 2 > k) {
        lw_error(L, o[2]->loc, "%s: padding must be at most half the kernel (%lld)", what, (long long)k);
        return lw_err();
    }
    int x4 = to_2d(L, x);
    if (x4 < 0) return lw_err();
    int y = lw_node(L, strcmp(what, "maxpool1d") == 0 ? OP_MAXPOOL2D : OP_AVGPOOL2D, &x4, 1, loc);
    struct ir_node *n = lw_n(L, y);
    ir_attr_set_v(n, ATTR_KERNEL, (int64_t[]){1, k}, 2);
    ir_attr_set_v(n, ATTR_STRIDE, (int64_t[]){1, s}, 2);
    ir_attr_set_v(n, ATTR_PAD, (int64_t[]){0, pad[0], 0, pad[1]}, 4);
    return lw_tensor(from_2d(L, lw_fin(L, y), loc));
}

/* --------------------------------------------------------------- attention */

/* Rows [from, from + e) of the packed projection [N, T, 3E], as heads
 * [N, H, T, d]. */
static int heads_of(struct lower *L, int qkv, int64_t from, int64_t e, int64_t h, struct loc loc) {
    const struct shape *s = &lw_type(L, qkv)->shape;
    int64_t n = s->dim[0], t = s->dim[1];
    struct shape split = shape_of(4, (int64_t[]){n, t, h, e / h});
    int part = lw_reshape(L, lw_slice(L, qkv, 2, from, e, loc), &split, loc);
    return transpose(L, part, (int64_t[]){0, 2, 1, 3}, 4, loc);
}

/* An f32 mask option: additive, broadcast against the scores [N, H, T, T]. */
static int mask_arg(struct lower *L, const struct fe_arg *a, struct loc loc) {
    if (!a) return -2;
    if (a->v.kind != V_TENSOR || lw_type(L, a->v.id)->dtype != DT_F32) {
        lw_error(L, a->loc, "attention: mask must be an f32 tensor (added to the scores)");
        return -1;
    }
    return a->v.id;
}

/* A key padding mask [N, T], nonzero where a key is padding, as an additive
 * [N, 1, 1, T] mask of 0 and -1e30 (scaled like the scores). */
static int padding_mask(struct lower *L, const struct fe_arg *a, int64_t t, struct loc loc) {
    if (!a) return -2;
    int m = a->v.kind == V_TENSOR ? a->v.id : -1;
    const struct type *mt = m >= 0 ? lw_type(L, m) : NULL;
    if (!mt || mt->shape.rank != 2 || mt->shape.dim[0] != IR_DIM_N || mt->shape.dim[1] != t) {
        lw_error(L, a->loc, "attention: key_padding_mask must be a tensor [N, %lld] (nonzero: padding)",
                 (long long)t);
        return -1;
    }
    if (mt->dtype != DT_F32) {
        int c = lw_node(L, OP_CAST, &m, 1, a->loc);
        lw_n(L, c)->type.dtype = DT_F32;
        m = lw_fin(L, c);
    }
    int nz = lw_emit2(L, OP_GREATER, lw_emit1(L, OP_ABS, m, a->loc), lw_const(L, 0, DT_F32, a->loc), a->loc);
    struct shape s4 = shape_of(4, (int64_t[]){IR_DIM_N, 1, 1, t});
    return lw_reshape(L, mul(L, nz, lw_const(L, -1e30, DT_F32, a->loc), loc), &s4, loc);
}

/* attention(heads, causal=false, dropout=0, mask=, key_padding_mask=) on
 * x [N, T, E]: nn.MultiheadAttention(E, heads, batch_first=True) applied as
 * self-attention, attn(x, x, x). Without masks and training dropout the core
 * is one fused ATTENTION op on the in-projection's output; otherwise batched
 * matmuls over heads split out of it, ATTN_SOFTMAX and the masks' additions. */
struct val fe_layer_attention(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc) {
    static const char *const opts[] = {"heads", "causal", "dropout", "mask", "key_padding_mask", NULL};
    struct fe_arg *o[FE_MAX_OPTS];
    int64_t h, e;
    bool causal;
    double rate;
    if (!fe_bind(L, "attention", opts, args, nargs, o, loc)) return lw_err();
    if (!o[0]) {
        lw_error(L, loc, "attention needs 'heads'");
        return lw_err();
    }
    if (!fe_opt_int(L, "attention", "heads", o[0], 0, 1, 4096, &h) ||
        !fe_opt_bool(L, "attention", "causal", o[1], false, &causal) ||
        !fe_opt_num(L, "attention", "dropout", o[2], 0, 0, 0.999999, &rate))
        return lw_err();
    const struct type *xt = lw_type(L, x);
    if (xt->shape.rank != 3 || xt->dtype != DT_F32 || xt->shape.dim[0] != IR_DIM_N ||
        xt->shape.dim[1] == IR_DIM_N || xt->shape.dim[2] == IR_DIM_N) {
        lw_error(L, loc, "attention expects an f32 input [N, T, E], got %s", lw_tstr(L, xt));
        return lw_err();
    }
    int64_t t = xt->shape.dim[1];
    e = xt->shape.dim[2];
    if (e % h) {
        lw_error(L, loc, "attention: the embedding size %lld is not divisible by %lld heads", (long long)e,
                 (long long)h);
        return lw_err();
    }
    int mask = mask_arg(L, o[3], loc), kpm = padding_mask(L, o[4], t, loc);
    if (mask == -1 || kpm == -1) return lw_err();
    int k = fe_layer_count(L, b);
    double bound = 1 / sqrt((double)e);
    int w_in = lw_param(L, "attention", k, "in_proj_weight", BUF_PARAM, f32_of(2, (int64_t[]){3 * e, e}),
                        lw_glorot(e, 3 * e), loc);
    int b_in = lw_param(L, "attention", k, "in_proj_bias", BUF_PARAM, f32_of(1, (int64_t[]){3 * e}),
                        (struct ir_init){INIT_ZEROS, 0, 0}, loc);
    int w_out = lw_param(L, "attention", k, "out_proj.weight", BUF_PARAM, f32_of(2, (int64_t[]){e, e}),
                         (struct ir_init){INIT_UNIFORM, -bound, bound}, loc);
    int b_out = lw_param(L, "attention", k, "out_proj.bias", BUF_PARAM, f32_of(1, &e),
                         (struct ir_init){INIT_ZEROS, 0, 0}, loc);
    if (w_in < 0 || b_in < 0 || w_out < 0 || b_out < 0) return lw_err();
    int qkv = add(L, mm(L, x, w_in, true, loc), b_in, loc);
    if (qkv < 0) return lw_err();
    double scale = 1 / sqrt((double)(e / h));
    struct shape merged = shape_of(3, (int64_t[]){IR_DIM_N, t, e});
    if (mask < 0 && kpm < 0 && !(L->mode == MODE_TRAIN && rate > 0)) { /* the fused core (runtime/attn.c) */
        int a = lw_node(L, OP_ATTENTION, &qkv, 1, loc);
        ir_attr_set_i(lw_n(L, a), ATTR_HEADS, h);
        ir_attr_set_f(lw_n(L, a), ATTR_SCALE, scale);
        ir_attr_set_i(lw_n(L, a), ATTR_CAUSAL, causal);
        a = lw_fin(L, a);
        if (a < 0) return lw_err();
        return lw_tensor(add(L, mm(L, a, w_out, true, loc), b_out, loc));
    }
    int q = heads_of(L, qkv, 0, e, h, loc), kh = heads_of(L, qkv, e, e, h, loc),
        v = heads_of(L, qkv, 2 * e, e, h, loc);
    int s = mm(L, q, kh, true, loc); /* [N, H, T, T] */
    /* softmax(scale * s + m) = softmax(scale * (s + m / scale)) */
    if (mask >= 0) s = add(L, s, mul(L, mask, lw_const(L, 1 / scale, DT_F32, loc), loc), loc);
    if (kpm >= 0) s = add(L, s, kpm, loc);
    if (s < 0) return lw_err();
    int p = lw_node(L, OP_ATTN_SOFTMAX, &s, 1, loc);
    ir_attr_set_f(lw_n(L, p), ATTR_SCALE, scale);
    ir_attr_set_i(lw_n(L, p), ATTR_CAUSAL, causal);
    p = lw_fin(L, p);
    if (p >= 0 && L->mode == MODE_TRAIN && rate > 0) {
        p = lw_node(L, OP_DROPOUT, &p, 1, loc);
        ir_attr_set_f(lw_n(L, p), ATTR_RATE, rate);
        ir_attr_set_i(lw_n(L, p), ATTR_SEED, ++L->dropout_seq);
        p = lw_fin(L, p);
    }
    int ctx = transpose(L, mm(L, p, v, false, loc), (int64_t[]){0, 2, 1, 3}, 4, loc); /* [N, T, H, d] */
    int y = add(L, mm(L, lw_reshape(L, ctx, &merged, loc), w_out, true, loc), b_out, loc);
    return lw_tensor(y);
}

/* attention(x, heads, ...): the function form, with tensor options. */
struct val fe_func_attention(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                             struct loc loc) {
    int x = tensor_of(L, "attention", args, nargs, 0, loc);
    if (x < 0) return lw_err();
    return fe_layer_attention(L, b, args + 1, nargs - 1, x, loc);
}
