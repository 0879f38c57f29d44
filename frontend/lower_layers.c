/* frontend/lower_layers.c -- the builtin layers and functions. One table row per
 * builtin names its forms (layer, function or both), its options in positional
 * order and the lowering routine. Layers make their parameters on first use,
 * named <net>.<layer><k>.<w|b|gamma|beta|running_mean|running_var>; recurrent layers
 * name theirs as PyTorch does (weight_ih_l0, ...) and become one RNN op per layer
 * and direction. Sections: option binding; dense and convolutions; pooling and
 * shape layers; normalization and dropout; activations; recurrent layers;
 * functions; the table. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

typedef struct val (*layer_fn)(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                               int x, struct loc loc);
typedef struct val (*func_fn)(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              struct loc loc);

struct fe_builtin {
    const char *name;                  /* as written */
    unsigned forms;                    /* BI_LAYER, BI_FUNC */
    const char *opts[FE_MAX_OPTS + 1]; /* options in positional order, NULL-terminated */
    layer_fn layer;                    /* the layer (the function form too, when it takes x first) */
    func_fn func;                      /* a function with its own argument rules, or NULL */
    enum op op;                        /* for the simple ones: the IR op */
};

static const struct fe_builtin builtins[];
static int tensor_arg(struct lower *L, const char *what, struct fe_arg *args, int nargs, int k,
                      struct loc loc);
static int builtin_index(const struct fe_builtin *b) { return (int)(b - builtins); }

/* ------------------------------------------------------------ option binding */

static const char *opt_list(struct lower *L, const char *const *names) {
    size_t len = 1;
    for (const char *const *n = names; *n; n++) len += strlen(*n) + 2;
    char *s = arena_alloc(L->a, len), *o = s;
    for (const char *const *n = names; *n; n++) o += sprintf(o, "%s%s", n == names ? "" : ", ", *n);
    return s;
}

bool fe_bind(struct lower *L, const char *what, const char *const *names, struct fe_arg *args, int nargs,
             struct fe_arg **out, struct loc loc) {
    int nn = 0;
    while (names[nn]) out[nn++] = NULL;
    int pos = 0;
    for (int i = 0; i < nargs; i++) {
        struct fe_arg *a = &args[i];
        int k = -1;
        if (!a->kw) {
            if (pos >= nn) {
                if (nn)
                    lw_error(L, a->loc, "%s takes at most %d argument%s (%s), got %d", what, nn,
                             nn == 1 ? "" : "s", opt_list(L, names), nargs);
                else
                    lw_error(L, a->loc, "%s takes no arguments", what);
                return false;
            }
            k = pos++;
        } else {
            for (int j = 0; j < nn; j++)
                if (strcmp(names[j], a->kw) == 0) k = j;
            if (k < 0) {
                const char *near = fe_nearest(a->kw, names);
                if (!nn)
                    lw_error(L, a->loc, "%s has no options", what);
                else if (near)
                    lw_error(L, a->loc, "%s has no option '%s' (did you mean '%s'?); options: %s", what,
                             a->kw, near, opt_list(L, names));
                else
                    lw_error(L, a->loc, "%s has no option '%s'; options: %s", what, a->kw,
                             opt_list(L, names));
                return false;
            }
        }
        if (out[k]) {
            lw_error(L, a->loc, "%s: '%s' is given twice", what, names[k]);
            return false;
        }
        out[k] = a;
    }
    (void)loc;
    return true;
}

static const char *val_str(struct lower *L, const struct val *v) {
    switch (v->kind) {
    case V_NUM:
        return arena_printf(L->a, "%g", v->num);
    case V_STR:
        return arena_printf(L->a, "\"%s\"", v->str);
    case V_BOOL:
        return v->num != 0 ? "true" : "false";
    case V_TENSOR:
        return lw_tstr(L, lw_type(L, v->id));
    default:
        return "nothing";
    }
}

bool fe_opt_int(struct lower *L, const char *what, const char *name, const struct fe_arg *a, int64_t def,
                int64_t lo, int64_t hi, int64_t *out) {
    if (!a) {
        *out = def;
        return true;
    }
    if (a->v.kind != V_NUM || a->v.num != floor(a->v.num)) {
        lw_error(L, a->loc, "%s: %s must be an integer, got %s", what, name, val_str(L, &a->v));
        return false;
    }
    if (a->v.num < (double)lo || a->v.num > (double)hi) {
        lw_error(L, a->loc, "%s: %s must be from %lld to %lld, got %s", what, name, (long long)lo,
                 (long long)hi, val_str(L, &a->v));
        return false;
    }
    *out = (int64_t)a->v.num;
    return true;
}

bool fe_opt_num(struct lower *L, const char *what, const char *name, const struct fe_arg *a, double def,
                double lo, double hi, double *out) {
    if (!a) {
        *out = def;
        return true;
    }
    if (a->v.kind != V_NUM) {
        lw_error(L, a->loc, "%s: %s must be a number, got %s", what, name, val_str(L, &a->v));
        return false;
    }
    if (!(a->v.num >= lo && a->v.num <= hi)) {
        lw_error(L, a->loc, "%s: %s must be from %g to %g, got %g", what, name, lo, hi, a->v.num);
        return false;
    }
    *out = a->v.num;
    return true;
}

bool fe_opt_bool(struct lower *L, const char *what, const char *name, const struct fe_arg *a, bool def,
                 bool *out) {
    if (!a) {
        *out = def;
        return true;
    }
    if (a->v.kind == V_BOOL || (a->v.kind == V_NUM && (a->v.num == 0 || a->v.num == 1))) {
        *out = a->v.num != 0;
        return true;
    }
    lw_error(L, a->loc, "%s: %s must be true or false, got %s", what, name, val_str(L, &a->v));
    return false;
}

/* A required option. */
static bool need(struct lower *L, const char *what, const char *name, const struct fe_arg *a,
                 struct loc loc) {
    if (a) return true;
    lw_error(L, loc, "%s needs '%s'", what, name);
    return false;
}

#define MAX_UNITS ((int64_t)1 << 24)
#define MAX_WINDOW 4096

/* Bind b's options; `o` receives them in table order. */
#define BIND(o)                    \
    struct fe_arg *o[FE_MAX_OPTS]; \
    if (!fe_bind(L, b->name, b->opts, args, nargs, o, loc)) return lw_err()

static int count_layer(struct lower *L, const struct fe_builtin *b) {
    return L->sc->count[builtin_index(b)]++;
}

static bool need_rank(struct lower *L, const char *what, int x, int rank, const char *shape, const char *hint,
                      struct loc loc) {
    const struct type *t = lw_type(L, x);
    if (t->shape.rank == rank && t->dtype == DT_F32) return true;
    lw_error(L, loc, "%s expects a rank-%d f32 input %s, got %s%s", what, rank, shape, lw_tstr(L, t), hint);
    return false;
}

static struct type f32_type(int rank, const int64_t *dims) {
    struct type t;
    memset(&t, 0, sizeof t);
    t.dtype = DT_F32;
    t.shape.rank = rank;
    for (int i = 0; i < rank; i++) t.shape.dim[i] = dims[i];
    return t;
}

static int bias_add(struct lower *L, int y, int bias, int axis, struct loc loc) {
    if (y < 0 || bias < 0) return -1;
    int id = lw_node(L, OP_BIAS_ADD, (int[]){y, bias}, 2, loc);
    ir_attr_set_i(lw_n(L, id), ATTR_AXIS, axis);
    return lw_fin(L, id);
}

static int matmul(struct lower *L, int a, int b, struct loc loc) {
    if (a < 0 || b < 0) return -1;
    return lw_fin(L, lw_node(L, OP_MATMUL, (int[]){a, b}, 2, loc));
}

/* ------------------------------------------------------ dense, convolutions */

static struct val layer_dense(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc) {
    BIND(o);
    int64_t units;
    bool bias;
    if (!need(L, "dense", "units", o[0], loc) ||
        !fe_opt_int(L, "dense", "units", o[0], 0, 1, MAX_UNITS, &units) ||
        !fe_opt_bool(L, "dense", "bias", o[1], true, &bias))
        return lw_err();
    const struct type *t = lw_type(L, x);
    if (t->shape.rank < 2 || t->dtype != DT_F32) {
        lw_error(L, loc, "dense expects an f32 input of rank 2 or more [..., features], got %s",
                 lw_tstr(L, t));
        return lw_err();
    }
    int rank = t->shape.rank; /* dense acts on the last axis (PyTorch Linear, Keras Dense) */
    int64_t in = t->shape.dim[rank - 1];
    if (in == IR_DIM_N) {
        lw_error(L, loc, "dense needs a static number of features, got %s", lw_tstr(L, t));
        return lw_err();
    }
    int k = count_layer(L, b);
    int w = lw_param(L, "dense", k, "w", BUF_PARAM, f32_type(2, (int64_t[]){in, units}), lw_glorot(in, units),
                     loc);
    int y = rank == 2 ? matmul(L, x, w, loc) : fe_matmul_last(L, x, w, loc);
    if (bias)
        y = bias_add(L, y,
                     lw_param(L, "dense", k, "b", BUF_PARAM, f32_type(1, &units), (struct ir_init){0}, loc),
                     rank - 1, loc);
    return lw_tensor(y);
}

/* padding=0 | int | "valid" | "same": [top, left, bottom, right]. "same" follows
 * TensorFlow: out = ceil(in / stride), the odd pixel going bottom/right. */
static bool padding(struct lower *L, const char *what, const struct fe_arg *a, const struct type *t,
                    int64_t k, int64_t s, int64_t d, bool allow_same, int64_t pad[4]) {
    memset(pad, 0, sizeof(int64_t) * 4);
    if (!a) return true;
    if (a->v.kind == V_STR) {
        if (strcmp(a->v.str, "valid") == 0) return true;
        if (strcmp(a->v.str, "same") == 0 && allow_same) {
            for (int i = 0; i < 2; i++) {
                int64_t in = t->shape.dim[2 + i], out = (in + s - 1) / s;
                int64_t total = (out - 1) * s + (k - 1) * d + 1 - in;
                if (total < 0) total = 0;
                pad[i] = total / 2;
                pad[i + 2] = total - total / 2;
            }
            return true;
        }
        lw_error(L, a->loc, "%s: padding must be an integer%s, got \"%s\"", what,
                 allow_same ? ", \"same\" or \"valid\"" : " or \"valid\"", a->v.str);
        return false;
    }
    int64_t p;
    if (!fe_opt_int(L, what, "padding", a, 0, 0, MAX_WINDOW, &p)) return false;
    for (int i = 0; i < 4; i++) pad[i] = p;
    return true;
}

static struct val layer_conv2d(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                               int x, struct loc loc) {
    BIND(o); /* filters, kernel, stride, padding, dilation, groups, bias */
    int64_t filters, k, s, d, g, pad[4];
    bool bias;
    if (!need(L, "conv2d", "filters", o[0], loc) || !need(L, "conv2d", "kernel", o[1], loc) ||
        !fe_opt_int(L, "conv2d", "filters", o[0], 0, 1, MAX_UNITS, &filters) ||
        !fe_opt_int(L, "conv2d", "kernel", o[1], 0, 1, MAX_WINDOW, &k) ||
        !fe_opt_int(L, "conv2d", "stride", o[2], 1, 1, MAX_WINDOW, &s) ||
        !fe_opt_int(L, "conv2d", "dilation", o[4], 1, 1, MAX_WINDOW, &d) ||
        !fe_opt_int(L, "conv2d", "groups", o[5], 1, 1, MAX_UNITS, &g) ||
        !fe_opt_bool(L, "conv2d", "bias", o[6], true, &bias))
        return lw_err();
    if (!need_rank(L, "conv2d", x, 4, "[N, C, H, W]", "", loc)) return lw_err();
    const struct type *t = lw_type(L, x);
    int64_t cin = t->shape.dim[1];
    if (cin % g || filters % g) {
        lw_error(L, loc,
                 "conv2d with groups=%lld expects input channels and filters divisible by %lld, got %s and "
                 "%lld filters",
                 (long long)g, (long long)g, lw_tstr(L, t), (long long)filters);
        return lw_err();
    }
    if (!padding(L, "conv2d", o[3], t, k, s, d, true, pad)) return lw_err();
    int kk = count_layer(L, b);
    int64_t fan_in = cin / g * k * k, fan_out = filters * k * k;
    int w = lw_param(L, "conv2d", kk, "w", BUF_PARAM, f32_type(4, (int64_t[]){filters, cin / g, k, k}),
                     lw_glorot(fan_in, fan_out), loc);
    if (w < 0) return lw_err();
    int y = lw_node(L, OP_CONV2D, (int[]){x, w}, 2, loc);
    struct ir_node *n = lw_n(L, y);
    ir_attr_set_v(n, ATTR_STRIDE, (int64_t[]){s, s}, 2);
    ir_attr_set_v(n, ATTR_PAD, pad, 4);
    ir_attr_set_v(n, ATTR_DILATION, (int64_t[]){d, d}, 2);
    ir_attr_set_i(n, ATTR_GROUPS, g);
    y = lw_fin(L, y);
    if (bias && y >= 0)
        y = bias_add(
            L, y, lw_param(L, "conv2d", kk, "b", BUF_PARAM, f32_type(1, &filters), (struct ir_init){0}, loc),
            1, loc);
    return lw_tensor(y);
}

static struct val layer_conv2d_t(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                 int x, struct loc loc) {
    BIND(o); /* filters, kernel, stride, padding, output_padding, bias */
    const char *what = "conv2d_transpose";
    int64_t filters, k, s, op, pad[4];
    bool bias;
    if (!need(L, what, "filters", o[0], loc) || !need(L, what, "kernel", o[1], loc) ||
        !fe_opt_int(L, what, "filters", o[0], 0, 1, MAX_UNITS, &filters) ||
        !fe_opt_int(L, what, "kernel", o[1], 0, 1, MAX_WINDOW, &k) ||
        !fe_opt_int(L, what, "stride", o[2], 1, 1, MAX_WINDOW, &s) ||
        !fe_opt_int(L, what, "output_padding", o[4], 0, 0, MAX_WINDOW, &op) ||
        !fe_opt_bool(L, what, "bias", o[5], true, &bias))
        return lw_err();
    if (!need_rank(L, what, x, 4, "[N, C, H, W]", "", loc)) return lw_err();
    const struct type *t = lw_type(L, x);
    if (!padding(L, what, o[3], t, k, s, 1, false, pad)) return lw_err();
    if (op >= s) {
        lw_error(L, o[4]->loc, "%s: output_padding must be smaller than the stride (%lld)", what,
                 (long long)s);
        return lw_err();
    }
    int64_t cin = t->shape.dim[1];
    int kk = count_layer(L, b);
    int w = lw_param(L, what, kk, "w", BUF_PARAM, f32_type(4, (int64_t[]){cin, filters, k, k}),
                     lw_glorot(cin * k * k, filters * k * k), loc);
    if (w < 0) return lw_err();
    int y = lw_node(L, OP_CONV_TRANSPOSE2D, (int[]){x, w}, 2, loc);
    struct ir_node *n = lw_n(L, y);
    ir_attr_set_v(n, ATTR_STRIDE, (int64_t[]){s, s}, 2);
    ir_attr_set_v(n, ATTR_PAD, pad, 4);
    ir_attr_set_v(n, ATTR_DILATION, (int64_t[]){1, 1}, 2);
    ir_attr_set_i(n, ATTR_GROUPS, 1);
    ir_attr_set_v(n, ATTR_OUTPUT_PAD, (int64_t[]){op, op}, 2);
    y = lw_fin(L, y);
    if (bias && y >= 0)
        y = bias_add(L, y,
                     lw_param(L, what, kk, "b", BUF_PARAM, f32_type(1, &filters), (struct ir_init){0}, loc),
                     1, loc);
    return lw_tensor(y);
}

/* conv2d(x, w, stride=1, padding=0, dilation=1, groups=1): a convolution with an
 * explicit OIHW weight (a declared param), no bias. */
static struct val func_conv2d(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              struct loc loc) {
    static const char *const opts[] = {"stride", "padding", "dilation", "groups", NULL};
    int x = tensor_arg(L, "conv2d", args, nargs, 0, loc),
        w = x < 0 ? -1 : tensor_arg(L, "conv2d", args, nargs, 1, loc);
    if (w < 0) return lw_err();
    struct fe_arg *o[FE_MAX_OPTS];
    if (!fe_bind(L, "conv2d", opts, args + 2, nargs - 2, o, loc)) return lw_err();
    int64_t s, d, g, pad[4];
    if (!fe_opt_int(L, "conv2d", "stride", o[0], 1, 1, MAX_WINDOW, &s) ||
        !fe_opt_int(L, "conv2d", "dilation", o[2], 1, 1, MAX_WINDOW, &d) ||
        !fe_opt_int(L, "conv2d", "groups", o[3], 1, 1, MAX_UNITS, &g))
        return lw_err();
    if (!need_rank(L, "conv2d", x, 4, "[N, C, H, W]", "", loc)) return lw_err();
    const struct type *tx = lw_type(L, x), *tw = lw_type(L, w);
    if (tw->shape.rank != 4 || shape_has_n(&tw->shape) || tw->dtype != DT_F32) {
        lw_error(L, args[1].loc, "conv2d expects a weight f32[out, in, kh, kw], got %s", lw_tstr(L, tw));
        return lw_err();
    }
    if (tw->shape.dim[1] * g != tx->shape.dim[1]) {
        lw_error(L, loc, "conv2d expects %lld input channels (the weight is %s), got %s",
                 (long long)(tw->shape.dim[1] * g), lw_tstr(L, tw), lw_tstr(L, tx));
        return lw_err();
    }
    if (!padding(L, "conv2d", o[1], tx, tw->shape.dim[2], s, d, true, pad)) return lw_err();
    int y = lw_node(L, OP_CONV2D, (int[]){x, w}, 2, loc);
    struct ir_node *n = lw_n(L, y);
    ir_attr_set_v(n, ATTR_STRIDE, (int64_t[]){s, s}, 2);
    ir_attr_set_v(n, ATTR_PAD, pad, 4);
    ir_attr_set_v(n, ATTR_DILATION, (int64_t[]){d, d}, 2);
    ir_attr_set_i(n, ATTR_GROUPS, g);
    return lw_tensor(lw_fin(L, y));
}

/* ----------------------------------------------------- pooling, shape layers */

static struct val layer_pool(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                             int x, struct loc loc) {
    BIND(o); /* kernel, stride, padding */
    int64_t k, s, pad[4];
    if (!need(L, b->name, "kernel", o[0], loc) ||
        !fe_opt_int(L, b->name, "kernel", o[0], 0, 1, MAX_WINDOW, &k) ||
        !fe_opt_int(L, b->name, "stride", o[1], k, 1, MAX_WINDOW, &s))
        return lw_err();
    if (!need_rank(L, b->name, x, 4, "[N, C, H, W]", "", loc)) return lw_err();
    if (!padding(L, b->name, o[2], lw_type(L, x), k, s, 1, false, pad)) return lw_err();
    int y = lw_node(L, b->op, &x, 1, loc);
    struct ir_node *n = lw_n(L, y);
    ir_attr_set_v(n, ATTR_KERNEL, (int64_t[]){k, k}, 2);
    ir_attr_set_v(n, ATTR_STRIDE, (int64_t[]){s, s}, 2);
    ir_attr_set_v(n, ATTR_PAD, pad, 4);
    return lw_tensor(lw_fin(L, y));
}

static int reduce(struct lower *L, enum op op, int x, const int64_t *axes, int naxes, bool keep,
                  struct loc loc) {
    int y = lw_node(L, op, &x, 1, loc);
    ir_attr_set_v(lw_n(L, y), ATTR_AXES, axes, naxes);
    ir_attr_set_i(lw_n(L, y), ATTR_KEEPDIMS, keep);
    return lw_fin(L, y);
}

static struct val layer_global_avgpool(struct lower *L, const struct fe_builtin *b, struct fe_arg *args,
                                       int nargs, int x, struct loc loc) {
    BIND(o);
    (void)o;
    if (!need_rank(L, "global_avgpool", x, 4, "[N, C, H, W]", "", loc)) return lw_err();
    return lw_tensor(reduce(L, OP_MEAN, x, (int64_t[]){2, 3}, 2, false, loc));
}

static struct val layer_flatten(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                int x, struct loc loc) {
    BIND(o);
    (void)o;
    const struct type *t = lw_type(L, x);
    if (t->shape.rank < 1) {
        lw_error(L, loc, "flatten expects a batch [N, ...], got %s", lw_tstr(L, t));
        return lw_err();
    }
    if (t->shape.rank == 2) return lw_tensor(x);
    struct shape s = {2, {t->shape.dim[0], 1}};
    for (int i = 1; i < t->shape.rank; i++) s.dim[1] *= t->shape.dim[i];
    return lw_tensor(lw_reshape(L, x, &s, loc));
}

/* reshape(d1, d2, ...): the batch dim is kept (when x has one); one dim may be -1. */
static struct val layer_reshape(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                int x, struct loc loc) {
    const struct type *t = lw_type(L, x);
    bool batch = t->shape.rank > 0 && t->shape.dim[0] == IR_DIM_N;
    int lead = batch ? 1 : 0;
    if (nargs < 1 || nargs + lead > IR_MAX_RANK) {
        lw_error(L, loc, "reshape needs 1 to %d dims", IR_MAX_RANK - lead);
        return lw_err();
    }
    struct shape s = {nargs + lead, {IR_DIM_N}};
    int infer = -1;
    int64_t known = 1;
    for (int i = 0; i < nargs; i++) {
        int64_t d;
        if (args[i].kw) {
            lw_error(L, args[i].loc, "reshape takes dims, not '%s='", args[i].kw);
            return lw_err();
        }
        if (!fe_opt_int(L, "reshape", "a dim", &args[i], 0, -1, MAX_UNITS * 64, &d)) return lw_err();
        if (d == 0 || (d == -1 && infer >= 0)) {
            lw_error(L, args[i].loc, "reshape: dims are positive, and at most one may be -1");
            return lw_err();
        }
        if (d == -1)
            infer = lead + i;
        else
            known *= d;
        s.dim[lead + i] = d;
    }
    int64_t have = 1;
    for (int i = lead; i < t->shape.rank; i++) have *= t->shape.dim[i];
    if (infer >= 0 && have % known == 0) s.dim[infer] = have / known, known = have;
    if (known != have) {
        lw_error(L, loc, "reshape to %lld values%s does not fit %s (%lld values%s)", (long long)known,
                 batch ? " per batch item" : "", lw_tstr(L, t), (long long)have,
                 batch ? " per batch item" : "");
        return lw_err();
    }
    return lw_tensor(lw_reshape(L, x, &s, loc));
}

static struct val layer_upsample(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                 int x, struct loc loc) {
    BIND(o);
    int64_t s;
    if (!fe_opt_int(L, "upsample", "scale", o[0], 2, 1, MAX_WINDOW, &s)) return lw_err();
    if (!need_rank(L, "upsample", x, 4, "[N, C, H, W]", "", loc)) return lw_err();
    int y = lw_node(L, OP_UPSAMPLE2D, &x, 1, loc);
    ir_attr_set_v(lw_n(L, y), ATTR_FACTOR, (int64_t[]){s, s}, 2);
    return lw_tensor(lw_fin(L, y));
}

/* ------------------------------------------------- normalization, dropout */

static struct val layer_dropout(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                int x, struct loc loc) {
    BIND(o);
    double rate;
    if (!need(L, "dropout", "rate", o[0], loc) ||
        !fe_opt_num(L, "dropout", "rate", o[0], 0, 0, 0.999999, &rate))
        return lw_err();
    if (L->mode != MODE_TRAIN || rate == 0) return lw_tensor(x);
    int y = lw_node(L, OP_DROPOUT, &x, 1, loc);
    ir_attr_set_f(lw_n(L, y), ATTR_RATE, rate);
    ir_attr_set_i(lw_n(L, y), ATTR_SEED, ++L->dropout_seq);
    return lw_tensor(lw_fin(L, y));
}

/* The unbiased variance that PyTorch's running_var takes: var * n / max(n - 1, 1),
 * n the values per channel (N*H*W; the batch N counted at run time, as the sum
 * of a ones f32[N]). */
static int unbiased_var(struct lower *L, int x, int var, struct loc loc) {
    const struct shape *s = &lw_type(L, x)->shape;
    double per = 1;
    bool has_n = false;
    for (int i = 0; i < s->rank; i++)
        if (i != 1 && s->dim[i] == IR_DIM_N)
            has_n = true;
        else if (i != 1)
            per *= (double)s->dim[i];
    if (!has_n) return lw_emit2(L, OP_MUL, var, lw_const(L, per / (per > 1 ? per - 1 : 1), DT_F32, loc), loc);
    int ones = lw_node(L, OP_CONST, NULL, 0, loc);
    ir_attr_set_f(lw_n(L, ones), ATTR_VALUE, 1);
    lw_n(L, ones)->type = (struct type){DT_F32, {1, {IR_DIM_N}}};
    int n = reduce(L, OP_SUM, lw_fin(L, ones), (int64_t[]){0}, 1, false, loc);
    if (per != 1) n = lw_emit2(L, OP_MUL, n, lw_const(L, per, DT_F32, loc), loc);
    int one = lw_const(L, 1, DT_F32, loc);
    int den = lw_emit2(L, OP_MAXIMUM, lw_emit2(L, OP_SUB, n, one, loc), one, loc);
    return lw_emit2(L, OP_MUL, var, lw_emit2(L, OP_DIV, n, den, loc), loc);
}

/* PyTorch's BatchNorm1d/2d: normalize over every axis but 1 (the channels) with
 * the biased batch variance; running_var takes the unbiased one. */
static struct val layer_batchnorm(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                  int x, struct loc loc) {
    BIND(o);
    double mom, eps;
    if (!fe_opt_num(L, "batchnorm", "momentum", o[0], 0.1, 0, 1, &mom) ||
        !fe_opt_num(L, "batchnorm", "eps", o[1], 1e-5, 1e-30, 1, &eps))
        return lw_err();
    const struct type *t = lw_type(L, x);
    if (t->shape.rank < 2 || t->dtype != DT_F32 || t->shape.dim[1] == IR_DIM_N) {
        lw_error(L, loc, "batchnorm expects an f32 input [N, C] or [N, C, H, W], got %s", lw_tstr(L, t));
        return lw_err();
    }
    int64_t c = t->shape.dim[1];
    int rank = t->shape.rank;
    int k = count_layer(L, b);
    struct type ct = f32_type(1, &c);
    int gamma = lw_param(L, "batchnorm", k, "gamma", BUF_PARAM, ct, (struct ir_init){INIT_CONST, 1, 0}, loc);
    int beta = lw_param(L, "batchnorm", k, "beta", BUF_PARAM, ct, (struct ir_init){INIT_ZEROS, 0, 0}, loc);
    const char *rm_name = arena_printf(L->m->arena, "%s.batchnorm%d.running_mean", L->sc->prefix, k);
    const char *rv_name = arena_printf(L->m->arena, "%s.batchnorm%d.running_var", L->sc->prefix, k);
    int mean, var;
    if (L->mode == MODE_TRAIN) {
        if (!ir_buffer_find(L->m, rm_name)) {
            lw_error(L, loc, "batchnorm: running statistics missing (internal order problem)");
            return lw_err();
        }
        int64_t axes[IR_MAX_RANK];
        int na = 0;
        for (int i = 0; i < rank; i++)
            if (i != 1) axes[na++] = i;
        mean = reduce(L, OP_MEAN, x, axes, na, false, loc);
        var = reduce(L, OP_VARIANCE, x, axes, na, false, loc);
    } else {
        mean = lw_param(L, "batchnorm", k, "running_mean", BUF_STATE, ct, (struct ir_init){INIT_ZEROS, 0, 0},
                        loc);
        var = lw_param(L, "batchnorm", k, "running_var", BUF_STATE, ct, (struct ir_init){INIT_CONST, 1, 0},
                       loc);
    }
    if (gamma < 0 || beta < 0 || mean < 0 || var < 0) return lw_err();
    int y = lw_node(L, OP_BATCHNORM, (int[]){x, gamma, beta, mean, var}, 5, loc);
    ir_attr_set_f(lw_n(L, y), ATTR_EPS, eps);
    y = lw_fin(L, y);
    if (y >= 0 && L->mode == MODE_TRAIN) {
        vec_push(L->bn, ((struct fe_bn_update){rm_name, mean, mom, y, loc}));
        vec_push(L->bn, ((struct fe_bn_update){rv_name, unbiased_var(L, x, var, loc), mom, y, loc}));
    }
    return lw_tensor(y);
}

/* -------------------------------------------------------------- activations */

static int norm_axis(struct lower *L, const char *what, const struct fe_arg *a, int rank, int64_t *axis) {
    int64_t ax;
    if (!fe_opt_int(L, what, "axis", a, -1, -IR_MAX_RANK, IR_MAX_RANK - 1, &ax)) return false;
    if (ax < -rank || ax >= rank) {
        lw_error(L, a->loc, "%s: axis %lld is out of range for rank %d", what, (long long)ax, rank);
        return false;
    }
    *axis = ax < 0 ? ax + rank : ax;
    return true;
}

static struct val layer_unary(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc) {
    BIND(o);
    (void)o;
    return lw_tensor(lw_emit1(L, b->op, x, loc));
}

static struct val layer_leaky_relu(struct lower *L, const struct fe_builtin *b, struct fe_arg *args,
                                   int nargs, int x, struct loc loc) {
    BIND(o);
    double alpha;
    if (!fe_opt_num(L, "leaky_relu", "alpha", o[0], 0.01, 0, 1e6, &alpha)) return lw_err();
    int y = lw_node(L, OP_LEAKY_RELU, &x, 1, loc);
    ir_attr_set_f(lw_n(L, y), ATTR_ALPHA, alpha);
    return lw_tensor(lw_fin(L, y));
}

static struct val layer_softmax(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                int x, struct loc loc) {
    BIND(o);
    int64_t axis;
    if (!norm_axis(L, b->name, o[0], lw_type(L, x)->shape.rank, &axis)) return lw_err();
    int y = lw_node(L, b->op, &x, 1, loc);
    ir_attr_set_i(lw_n(L, y), ATTR_AXIS, axis);
    return lw_tensor(lw_fin(L, y));
}

/* -------------------------------------------------------- recurrent layers */

enum rnn_kind { RK_LSTM, RK_GRU, RK_RNN };

/* One direction of one layer: the RNN op over x with its four parameters
 * (PyTorch's names and layout, `sfx` = "_l<k>" or "_l<k>_reverse"), a zero
 * initial state (in the generation walk: the state buffer `.state<sfx>`,
 * written back after the step) and the lengths. Returns the RNN node. */
static int rnn_direction(struct lower *L, const struct fe_builtin *b, int k, int x, int cell, bool rev,
                         int64_t h, int len, bool forget1, const char *sfx, struct loc loc) {
    const struct type *t = lw_type(L, x);
    int64_t n = t->shape.dim[0], steps = t->shape.dim[1], f = t->shape.dim[2];
    int64_t gh = ir_rnn_gates(cell) * h, st = ir_rnn_state(cell) * h;
    double lim = 1 / sqrt((double)h); /* PyTorch's init of every recurrent tensor */
    struct ir_init u = {INIT_UNIFORM, -lim, lim};
    int w[4];
    w[0] = lw_param(L, b->name, k, arena_printf(L->a, "weight_ih%s", sfx), BUF_PARAM,
                    f32_type(2, (int64_t[]){gh, f}), u, loc);
    w[1] = lw_param(L, b->name, k, arena_printf(L->a, "weight_hh%s", sfx), BUF_PARAM,
                    f32_type(2, (int64_t[]){gh, h}), u, loc);
    /* unit_forget_bias (Keras): the biases start at 0, the forget gate's input bias at 1 */
    struct ir_init bi = forget1 ? (struct ir_init){INIT_RANGE, (double)h, (double)(2 * h)} : u;
    struct ir_init bh = forget1 ? (struct ir_init){INIT_ZEROS, 0, 0} : u;
    w[2] =
        lw_param(L, b->name, k, arena_printf(L->a, "bias_ih%s", sfx), BUF_PARAM, f32_type(1, &gh), bi, loc);
    w[3] =
        lw_param(L, b->name, k, arena_printf(L->a, "bias_hh%s", sfx), BUF_PARAM, f32_type(1, &gh), bh, loc);
    if (w[0] < 0 || w[1] < 0 || w[2] < 0 || w[3] < 0) return -1;
    struct type ts = f32_type(2, (int64_t[]){n, st});
    int s0, state = -1;
    if (L->gen_step) { /* batch-1 state, broadcast to the walk's batch */
        struct type one = f32_type(2, (int64_t[]){1, st});
        state = lw_param(L, b->name, k, arena_printf(L->a, "state%s", sfx), BUF_STATE, one,
                         (struct ir_init){0}, loc);
        if (state < 0) return -1;
        s0 = lw_node(L, OP_BROADCAST_TO, &state, 1, loc);
        lw_n(L, s0)->type = ts;
        s0 = lw_fin(L, s0);
    } else {
        s0 = lw_node(L, OP_CONST, NULL, 0, loc);
        lw_n(L, s0)->type = ts;
        s0 = lw_fin(L, s0);
    }
    if (len < 0) {
        len = lw_node(L, OP_CONST, NULL, 0, loc);
        ir_attr_set_f(lw_n(L, len), ATTR_VALUE, (double)steps);
        lw_n(L, len)->type = (struct type){DT_I32, {1, {n}}};
        len = lw_fin(L, len);
    }
    if (s0 < 0 || len < 0) return -1;
    int y = lw_node(L, OP_RNN, (int[]){x, w[0], w[1], w[2], w[3], s0, len}, 7, loc);
    ir_attr_set_i(lw_n(L, y), ATTR_CELL, cell);
    ir_attr_set_i(lw_n(L, y), ATTR_REVERSE, rev);
    y = lw_fin(L, y);
    if (y >= 0 && state >= 0) { /* the step's final state goes back into the buffer */
        int fin = lw_slice(L, lw_slice(L, y, 1, steps - 1, 1, loc), 2, 0, st, loc);
        fin = lw_reshape(L, fin, &ts.shape, loc);
        int sum = lw_node(L, OP_SUM, &fin, 1, loc);
        ir_attr_set_v(lw_n(L, sum), ATTR_AXES, (int64_t[]){0}, 1);
        ir_attr_set_i(lw_n(L, sum), ATTR_KEEPDIMS, 1);
        sum = lw_fin(L, sum);
        int as = lw_node(L, OP_ASSIGN, &sum, 1, loc);
        ir_set_sym(L->m, lw_n(L, as), lw_n(L, state)->sym);
        if (lw_fin(L, as) < 0) return -1;
    }
    return y;
}

/* The state h of every step [N, T, H], or of the final step [N, H] (a reverse
 * direction ends at step 0), of RNN node y. */
static int rnn_hidden(struct lower *L, int y, int64_t h, bool rev, bool seq, struct loc loc) {
    if (y < 0) return -1;
    const struct type *t = lw_type(L, y);
    int64_t n = t->shape.dim[0], steps = t->shape.dim[1];
    if (seq) return lw_slice(L, y, 2, 0, h, loc);
    int last = lw_slice(L, lw_slice(L, y, 1, rev ? 0 : steps - 1, 1, loc), 2, 0, h, loc);
    struct shape s = {2, {n, h}};
    return last < 0 ? -1 : lw_reshape(L, last, &s, loc);
}

static int concat2(struct lower *L, int a, int b, int axis, struct loc loc) {
    if (a < 0 || b < 0) return -1;
    int c = lw_node(L, OP_CONCAT, (int[]){a, b}, 2, loc);
    ir_attr_set_i(lw_n(L, c), ATTR_AXIS, axis);
    return lw_fin(L, c);
}

/* lstm/gru/rnn(units, [activation,] return_sequences, bidirectional, layers, lengths):
 * one RNN op per layer and direction (docs/language.md, "Recurrent layers"). */
static struct val recurrent(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                            int x, struct loc loc, enum rnn_kind kind) {
    BIND(o); /* units, [activation,] return_sequences, bidirectional, layers, lengths */
    int64_t h, layers;
    bool seq, bidi, forget1 = false;
    int cell = kind == RK_LSTM ? IR_RNN_LSTM : kind == RK_GRU ? IR_RNN_GRU : IR_RNN_TANH;
    if (!need(L, b->name, "units", o[0], loc) || !fe_opt_int(L, b->name, "units", o[0], 0, 1, MAX_UNITS, &h))
        return lw_err();
    int at = 1;
    if (kind == RK_RNN) {
        if (o[1]) {
            const char *s = o[1]->v.kind == V_STR ? o[1]->v.str : "";
            cell = strcmp(s, "tanh") == 0      ? IR_RNN_TANH
                   : strcmp(s, "relu") == 0    ? IR_RNN_RELU
                   : strcmp(s, "sigmoid") == 0 ? IR_RNN_SIGMOID
                                               : -1;
            if (cell < 0) {
                lw_error(L, o[1]->loc, "rnn: activation must be \"tanh\", \"relu\" or \"sigmoid\"");
                return lw_err();
            }
        }
        at = 2;
    }
    if (!fe_opt_bool(L, b->name, "return_sequences", o[at], false, &seq) ||
        !fe_opt_bool(L, b->name, "bidirectional", o[at + 1], false, &bidi) ||
        !fe_opt_int(L, b->name, "layers", o[at + 2], 1, 1, 64, &layers) ||
        (kind == RK_LSTM && !fe_opt_bool(L, b->name, "unit_forget_bias", o[at + 4], false, &forget1)))
        return lw_err();
    if (!need_rank(L, b->name, x, 3, "[N, time, features]", "", loc)) return lw_err();
    const struct type *t = lw_type(L, x);
    int64_t n = t->shape.dim[0], steps = t->shape.dim[1], f = t->shape.dim[2];
    if (steps == IR_DIM_N || f == IR_DIM_N) {
        lw_error(L, loc, "%s needs a static number of time steps and features, got %s", b->name,
                 lw_tstr(L, t));
        return lw_err();
    }
    int len = -1;
    if (o[at + 3]) { /* lengths: a tensor [N] of each sequence's valid steps */
        const struct fe_arg *a = o[at + 3];
        const struct type *lt = a->v.kind == V_TENSOR ? lw_type(L, a->v.id) : NULL;
        if (!lt || lt->shape.rank != 1 || lt->shape.dim[0] != n) {
            lw_error(L, a->loc, "%s: lengths must be a tensor [%s] of valid steps per sequence, got %s",
                     b->name, n == IR_DIM_N ? "N" : "batch", lt ? lw_tstr(L, lt) : val_str(L, &a->v));
            return lw_err();
        }
        len = a->v.id;
        if (lt->dtype != DT_I32) {
            len = lw_node(L, OP_CAST, &len, 1, a->loc);
            lw_n(L, len)->type = (struct type){DT_I32, {1, {n}}};
            len = lw_fin(L, len);
        }
        if (L->gen_step) len = -1; /* one step at a time: every sequence is valid */
    }
    if (len < 0 && L->cur_mask && !L->gen_step) { /* token ids padded with 0: each sequence's length */
        len = fe_mask_lengths(L, L->cur_mask, loc);
        if (len >= 0) {
            len = lw_node(L, OP_CAST, &len, 1, loc);
            lw_n(L, len)->type = (struct type){DT_I32, {1, {n}}};
            len = lw_fin(L, len);
        }
        if (len < 0) return lw_err();
    }
    if (bidi && L->gen_step) {
        lw_error(L, loc, "a bidirectional layer cannot run one step at a time");
        return lw_err();
    }
    int k = count_layer(L, b), y = x;
    for (int64_t l = 0; l < layers && y >= 0; l++) {
        bool last = l == layers - 1, want_seq = !last || seq;
        const char *sfx = arena_printf(L->a, "_l%lld", (long long)l);
        int in = y, fw = rnn_direction(L, b, k, in, cell, false, h, len, forget1, sfx, loc);
        y = rnn_hidden(L, fw, h, false, want_seq, loc);
        if (bidi && y >= 0) {
            int bw = rnn_direction(L, b, k, in, cell, true, h, len, forget1,
                                   arena_printf(L->a, "%s_reverse", sfx), loc);
            y = concat2(L, y, rnn_hidden(L, bw, h, true, want_seq, loc), want_seq ? 2 : 1, loc);
        }
    }
    return lw_tensor(y);
}

static struct val layer_lstm(struct lower *L, const struct fe_builtin *b, struct fe_arg *a, int n, int x,
                             struct loc loc) {
    return recurrent(L, b, a, n, x, loc, RK_LSTM);
}
static struct val layer_gru(struct lower *L, const struct fe_builtin *b, struct fe_arg *a, int n, int x,
                            struct loc loc) {
    return recurrent(L, b, a, n, x, loc, RK_GRU);
}
static struct val layer_rnn(struct lower *L, const struct fe_builtin *b, struct fe_arg *a, int n, int x,
                            struct loc loc) {
    return recurrent(L, b, a, n, x, loc, RK_RNN);
}

/* ---------------------------------------------------------------- functions */

/* The k-th argument as a tensor (positional), or an error. */
static int tensor_arg(struct lower *L, const char *what, struct fe_arg *args, int nargs, int k,
                      struct loc loc) {
    if (k >= nargs || args[k].kw) {
        lw_error(L, k < nargs ? args[k].loc : loc, "%s needs a tensor as argument %d", what, k + 1);
        return -1;
    }
    if (args[k].v.kind == V_TENSOR) return args[k].v.id;
    if (args[k].v.kind == V_NUM) return lw_const(L, args[k].v.num, DT_F32, args[k].loc);
    lw_error(L, args[k].loc, "%s needs a tensor as argument %d", what, k + 1);
    return -1;
}

/* (prediction, target) losses and metrics. */
static struct val func_pair(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                            struct loc loc) {
    if (nargs != 2) {
        lw_error(L, loc, "%s takes 2 tensors (prediction, target), got %d argument%s", b->name, nargs,
                 nargs == 1 ? "" : "s");
        return lw_err();
    }
    int p = tensor_arg(L, b->name, args, nargs, 0, loc), t = tensor_arg(L, b->name, args, nargs, 1, loc);
    if (p < 0 || t < 0) return lw_err();
    return lw_tensor(lw_emit2(L, b->op, p, t, loc));
}

/* mean/sum/max(x, axes..., keepdims=false) */
static struct val func_reduce(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              struct loc loc) {
    int x = tensor_arg(L, b->name, args, nargs, 0, loc);
    if (x < 0) return lw_err();
    int rank = lw_type(L, x)->shape.rank;
    int64_t axes[IR_MAX_RANK];
    int na = 0;
    bool keep = false;
    for (int i = 1; i < nargs; i++) {
        if (args[i].kw) {
            if (strcmp(args[i].kw, "keepdims") != 0) {
                lw_error(L, args[i].loc, "%s has no option '%s'; options: keepdims", b->name, args[i].kw);
                return lw_err();
            }
            if (!fe_opt_bool(L, b->name, "keepdims", &args[i], false, &keep)) return lw_err();
            continue;
        }
        int64_t ax;
        if (na == IR_MAX_RANK || !norm_axis(L, b->name, &args[i], rank, &ax)) {
            if (na == IR_MAX_RANK) lw_error(L, args[i].loc, "%s: too many axes", b->name);
            return lw_err();
        }
        for (int j = 0; j < na; j++)
            if (axes[j] == ax) {
                lw_error(L, args[i].loc, "%s: axis %lld is listed twice", b->name, (long long)ax);
                return lw_err();
            }
        axes[na++] = ax;
    }
    return lw_tensor(reduce(L, b->op, x, axes, na, keep, loc));
}

static struct val func_transpose(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                                 struct loc loc) {
    int x = tensor_arg(L, "transpose", args, nargs, 0, loc);
    if (x < 0) return lw_err();
    int rank = lw_type(L, x)->shape.rank;
    int64_t perm[IR_MAX_RANK];
    if (nargs == 1) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
    } else if (nargs == 3 && rank != 2) { /* transpose(x, a, b): swap two axes (torch.transpose) */
        int64_t ax[2];
        for (int i = 0; i < 2; i++) {
            if (!fe_opt_int(L, "transpose", "an axis", &args[i + 1], 0, -rank, rank - 1, &ax[i]))
                return lw_err();
            if (ax[i] < 0) ax[i] += rank;
        }
        for (int i = 0; i < rank; i++) perm[i] = i;
        perm[ax[0]] = ax[1], perm[ax[1]] = ax[0];
    } else if (nargs - 1 != rank) {
        lw_error(L, loc, "transpose of %s needs %d axes, got %d", lw_tstr(L, lw_type(L, x)), rank, nargs - 1);
        return lw_err();
    } else {
        bool seen[IR_MAX_RANK] = {false};
        for (int i = 1; i < nargs; i++) {
            if (!fe_opt_int(L, "transpose", "an axis", &args[i], 0, 0, rank - 1, &perm[i - 1]))
                return lw_err();
            if (seen[perm[i - 1]]) {
                lw_error(L, args[i].loc, "transpose: axis %lld is listed twice", (long long)perm[i - 1]);
                return lw_err();
            }
            seen[perm[i - 1]] = true;
        }
    }
    int y = lw_node(L, OP_TRANSPOSE, &x, 1, loc);
    ir_attr_set_v(lw_n(L, y), ATTR_PERM, perm, rank);
    return lw_tensor(lw_fin(L, y));
}

/* concat(axis, a, b, ...) */
static struct val func_concat(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              struct loc loc) {
    if (nargs < 3 || nargs > 9) {
        lw_error(L, loc, "concat takes an axis and 2 to 8 tensors: concat(axis, a, b, ...)");
        return lw_err();
    }
    int ids[8];
    for (int i = 1; i < nargs; i++)
        if ((ids[i - 1] = tensor_arg(L, "concat", args, nargs, i, loc)) < 0) return lw_err();
    int64_t axis;
    if (!norm_axis(L, "concat", &args[0], lw_type(L, ids[0])->shape.rank, &axis)) return lw_err();
    int y = lw_node(L, OP_CONCAT, ids, nargs - 1, loc);
    ir_attr_set_i(lw_n(L, y), ATTR_AXIS, axis);
    return lw_tensor(lw_fin(L, y));
}

static struct val func_like(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                            struct loc loc) {
    if (nargs != 1) {
        lw_error(L, loc, "%s takes one tensor", b->name);
        return lw_err();
    }
    int x = tensor_arg(L, b->name, args, nargs, 0, loc);
    if (x < 0) return lw_err();
    int y = lw_node(L, OP_CONST, NULL, 0, loc);
    ir_attr_set_f(lw_n(L, y), ATTR_VALUE, strcmp(b->name, "ones_like") == 0 ? 1 : 0);
    lw_n(L, y)->type = *lw_type(L, x);
    return lw_tensor(lw_fin(L, y));
}

/* -------------------------------------------------------------------- table */

#define L_ BI_LAYER
#define F_ BI_FUNC
static const struct fe_builtin builtins[] = {
    {"dense", L_, {"units", "bias"}, layer_dense, NULL, OP_MATMUL},
    {"conv2d",
     L_ | F_,
     {"filters", "kernel", "stride", "padding", "dilation", "groups", "bias"},
     layer_conv2d,
     func_conv2d,
     OP_CONV2D},
    {"conv2d_transpose",
     L_,
     {"filters", "kernel", "stride", "padding", "output_padding", "bias"},
     layer_conv2d_t,
     NULL,
     OP_CONV_TRANSPOSE2D},
    {"maxpool", L_, {"kernel", "stride", "padding"}, layer_pool, NULL, OP_MAXPOOL2D},
    {"avgpool", L_, {"kernel", "stride", "padding"}, layer_pool, NULL, OP_AVGPOOL2D},
    {"global_avgpool", L_, {NULL}, layer_global_avgpool, NULL, OP_MEAN},
    {"flatten", L_ | F_, {NULL}, layer_flatten, NULL, OP_RESHAPE},
    {"reshape", L_ | F_, {NULL}, layer_reshape, NULL, OP_RESHAPE},
    {"dropout", L_, {"rate"}, layer_dropout, NULL, OP_DROPOUT},
    {"batchnorm", L_, {"momentum", "eps"}, layer_batchnorm, NULL, OP_BATCHNORM},
    {"upsample", L_, {"scale"}, layer_upsample, NULL, OP_UPSAMPLE2D},
    {"relu", L_ | F_, {NULL}, layer_unary, NULL, OP_RELU},
    {"leaky_relu", L_ | F_, {"alpha"}, layer_leaky_relu, NULL, OP_LEAKY_RELU},
    {"sigmoid", L_ | F_, {NULL}, layer_unary, NULL, OP_SIGMOID},
    {"tanh", L_ | F_, {NULL}, layer_unary, NULL, OP_TANH},
    {"softmax", L_ | F_, {"axis"}, layer_softmax, NULL, OP_SOFTMAX},
    {"log_softmax", L_ | F_, {"axis"}, layer_softmax, NULL, OP_LOG_SOFTMAX},
    {"lstm",
     L_,
     {"units", "return_sequences", "bidirectional", "layers", "lengths", "unit_forget_bias"},
     layer_lstm,
     NULL,
     OP_RNN},
    {"gru", L_, {"units", "return_sequences", "bidirectional", "layers", "lengths"}, layer_gru, NULL, OP_RNN},
    {"rnn",
     L_,
     {"units", "activation", "return_sequences", "bidirectional", "layers", "lengths"},
     layer_rnn,
     NULL,
     OP_RNN},
    {"exp", F_, {NULL}, layer_unary, NULL, OP_EXP},
    {"log", F_, {NULL}, layer_unary, NULL, OP_LOG},
    {"sqrt", F_, {NULL}, layer_unary, NULL, OP_SQRT},
    {"abs", F_, {NULL}, layer_unary, NULL, OP_ABS},
    {"stop_gradient", F_, {NULL}, layer_unary, NULL, OP_STOP_GRADIENT},
    {"mean", F_, {NULL}, NULL, func_reduce, OP_MEAN},
    {"sum", F_, {NULL}, NULL, func_reduce, OP_SUM},
    {"max", F_, {NULL}, NULL, func_reduce, OP_MAX},
    {"transpose", F_, {NULL}, NULL, func_transpose, OP_TRANSPOSE},
    /* lower_attn.c */
    {"matmul", F_, {NULL}, NULL, fe_func_matmul, OP_MATMUL},
    {"bmm", F_, {NULL}, NULL, fe_func_matmul, OP_MATMUL},
    {"layernorm", L_, {"eps"}, fe_layer_layernorm, NULL, OP_MEAN},
    {"gelu", L_ | F_, {"approximate"}, fe_layer_gelu, NULL, OP_GELU},
    {"erf", F_, {NULL}, layer_unary, NULL, OP_ERF},
    {"conv1d",
     L_,
     {"filters", "kernel", "stride", "padding", "dilation", "groups", "bias"},
     fe_layer_conv1d,
     NULL,
     OP_CONV2D},
    {"maxpool1d", L_, {"kernel", "stride", "padding"}, fe_layer_pool1d, NULL, OP_MAXPOOL2D},
    {"avgpool1d", L_, {"kernel", "stride", "padding"}, fe_layer_pool1d, NULL, OP_AVGPOOL2D},
    {"attention",
     L_ | F_,
     {"heads", "causal", "dropout", "mask", "key_padding_mask"},
     fe_layer_attention,
     fe_func_attention,
     OP_ATTN_SOFTMAX},
    {"concat", F_, {NULL}, NULL, func_concat, OP_CONCAT},
    {"ones_like", F_, {NULL}, NULL, func_like, OP_CONST},
    {"zeros_like", F_, {NULL}, NULL, func_like, OP_CONST},
    {"mse", F_, {NULL}, NULL, func_pair, OP_MSE},
    {"cross_entropy", F_, {NULL}, NULL, fe_func_class_loss, OP_CROSS_ENTROPY},
    {"bce", F_, {NULL}, NULL, func_pair, OP_BCE},
    {"bce_logits", F_, {NULL}, NULL, func_pair, OP_BCE_LOGITS},
    {"hinge", F_, {NULL}, NULL, func_pair, OP_HINGE},
    {"accuracy", F_, {NULL}, NULL, fe_func_class_loss, OP_ACCURACY},
    {"embedding", L_ | F_, {"vocab", "dim"}, fe_layer_embedding, NULL, OP_EMBEDDING},
    {"one_hot", L_ | F_, {"classes"}, fe_layer_one_hot, NULL, OP_ONE_HOT},
    {"mean_over_time", L_ | F_, {NULL}, fe_layer_time_pool, fe_func_time_pool, OP_MASKED_MEAN},
    {"max_over_time", L_ | F_, {NULL}, fe_layer_time_pool, fe_func_time_pool, OP_MASKED_MAX},
};
#undef L_
#undef F_

#define NBUILTINS ((int)(sizeof builtins / sizeof builtins[0]))
_Static_assert(NBUILTINS <= FE_MAX_LAYER_KINDS, "raise FE_MAX_LAYER_KINDS");

const struct fe_builtin *fe_builtin_find(const char *name) {
    for (int i = 0; i < NBUILTINS; i++)
        if (strcmp(builtins[i].name, name) == 0) return &builtins[i];
    return NULL;
}

unsigned fe_builtin_forms(const struct fe_builtin *b) { return b->forms; }
enum op fe_builtin_op(const struct fe_builtin *b) { return b->op; }
int fe_layer_count(struct lower *L, const struct fe_builtin *b) { return count_layer(L, b); }
const char *fe_builtin_name(const struct fe_builtin *b) { return b->name; }

const char *const *fe_builtin_names(unsigned form) {
    static const char *lists[4][NBUILTINS + 1];
    static bool made[4];
    form &= 3;
    if (!made[form]) {
        int k = 0;
        for (int i = 0; i < NBUILTINS; i++)
            if (builtins[i].forms & form) lists[form][k++] = builtins[i].name;
        lists[form][k] = NULL;
        made[form] = true;
    }
    return lists[form];
}

/* Runs a builtin layer with L->cur_mask set to its input's padding mask; the
 * result keeps the mask when the layer kept the batch and time dims [N, T]. */
static struct val layer_masked(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                               struct val cur, struct loc loc) {
    int saved = L->cur_mask;
    L->cur_mask = cur.mask;
    struct val r = b->layer(L, b, args, nargs, cur.id, loc);
    L->cur_mask = saved;
    if (r.kind == V_TENSOR && !r.mask && cur.mask) {
        const struct shape *m = &lw_type(L, cur.mask - 1)->shape, *s = &lw_type(L, r.id)->shape;
        if (s->rank >= 2 && s->dim[0] == m->dim[0] && s->dim[1] == m->dim[1]) r.mask = cur.mask;
    }
    return r;
}

struct val fe_layer_apply(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                          struct val cur, struct loc loc) {
    if (cur.kind != V_TENSOR) return lw_err();
    return layer_masked(L, b, args, nargs, cur, loc);
}

struct val fe_func_call(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                        struct loc loc) {
    if (b->func) return b->func(L, b, args, nargs, loc);
    /* Functions that are layers with the input first: relu(x), softmax(x, axis=1). */
    int x = tensor_arg(L, b->name, args, nargs, 0, loc);
    if (x < 0) return lw_err();
    for (int i = 1; i < nargs; i++)
        if (args[i].v.kind == V_TENSOR) {
            lw_error(L, args[i].loc, "%s takes one tensor; argument %d is a tensor too", b->name, i + 1);
            return lw_err();
        }
    struct val cur = lw_tensor(x);
    cur.mask = args[0].v.kind == V_TENSOR ? args[0].v.mask : 0;
    return layer_masked(L, b, args + 1, nargs - 1, cur, loc);
}
