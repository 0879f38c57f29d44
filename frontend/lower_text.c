/* frontend/lower_text.c -- the builtins for tokens and sequences: `embedding`
 * (whose result carries its ids' padding mask, docs/language.md "Text and
 * sequences"), `one_hot`, `mean_over_time`/`max_over_time` (masked when their
 * input carries a mask or ids are given), and `cross_entropy`/`accuracy` with
 * [..., C] scores and PyTorch's `ignore_index`. The table rows are in
 * lower_layers.c; the IR ops in ops.def's "tokens" and "sequence losses". */
#include "frontend/frontend.h"

#include <string.h>

#define MAX_ROWS ((int64_t)1 << 24)

static bool bind(struct lower *L, const struct fe_builtin *b, const char *const *names, struct fe_arg *args,
                 int nargs, struct fe_arg **o, struct loc loc) {
    return fe_bind(L, fe_builtin_name(b), names, args, nargs, o, loc);
}

static bool need(struct lower *L, const char *what, const char *name, const struct fe_arg *a,
                 struct loc loc) {
    if (a) return true;
    lw_error(L, loc, "%s needs '%s'", what, name);
    return false;
}

/* A value carrying the padding mask of ids x, when x is [N, T]. */
static struct val masked_by(struct lower *L, int y, int ids) {
    struct val v = lw_tensor(y);
    if (v.kind == V_TENSOR && lw_type(L, ids)->shape.rank == 2) v.mask = ids + 1;
    return v;
}

static bool need_ids(struct lower *L, const char *what, int x, struct loc loc) {
    const struct type *t = lw_type(L, x);
    if (t->dtype == DT_I32) return true;
    lw_error(L, loc, "%s expects i32 token ids, got %s", what, lw_tstr(L, t));
    return false;
}

int fe_mask_lengths(struct lower *L, int mask, struct loc loc) {
    if (!mask) return -1;
    int ids = mask - 1;
    struct type f = *lw_type(L, ids);
    f.dtype = DT_F32;
    int c = lw_node(L, OP_CAST, &ids, 1, loc);
    lw_n(L, c)->type = f;
    int nz = lw_emit2(L, OP_GREATER, lw_fin(L, c), lw_const(L, 0.5, DT_F32, loc), loc);
    if (nz < 0) return -1;
    int id = lw_node(L, OP_SUM, &nz, 1, loc);
    int64_t axis = 1;
    ir_attr_set_v(lw_n(L, id), ATTR_AXES, &axis, 1);
    return lw_fin(L, id);
}

static int transpose(struct lower *L, int x, const int64_t *perm, int rank, struct loc loc) {
    if (x < 0) return -1;
    int id = lw_node(L, OP_TRANSPOSE, &x, 1, loc);
    ir_attr_set_v(lw_n(L, id), ATTR_PERM, perm, rank);
    return lw_fin(L, id);
}

static int reshape(struct lower *L, int x, int rank, const int64_t *dims, struct loc loc) {
    struct shape s = {rank, {0}};
    for (int i = 0; i < rank; i++) s.dim[i] = dims[i];
    return x < 0 ? -1 : lw_reshape(L, x, &s, loc);
}

int fe_matmul_last(struct lower *L, int x, int w, struct loc loc) {
    struct shape xs = lw_type(L, x)->shape;
    int64_t n = xs.dim[0], f = xs.dim[xs.rank - 1], u = lw_type(L, w)->shape.dim[1], p = 1;
    for (int i = 1; i + 1 < xs.rank; i++) p *= xs.dim[i];
    int x4 =
        reshape(L, transpose(L, reshape(L, x, 3, (int64_t[]){n, p, f}, loc), (int64_t[]){0, 2, 1}, 3, loc), 4,
                (int64_t[]){n, f, p, 1}, loc);
    int w4 = reshape(L, transpose(L, w, (int64_t[]){1, 0}, 2, loc), 4, (int64_t[]){u, f, 1, 1}, loc);
    if (x4 < 0 || w4 < 0) return -1;
    int y = lw_node(L, OP_CONV2D, (int[]){x4, w4}, 2, loc);
    struct ir_node *c = lw_n(L, y);
    ir_attr_set_v(c, ATTR_STRIDE, (int64_t[]){1, 1}, 2);
    ir_attr_set_v(c, ATTR_PAD, (int64_t[]){0, 0, 0, 0}, 4);
    ir_attr_set_v(c, ATTR_DILATION, (int64_t[]){1, 1}, 2);
    ir_attr_set_i(c, ATTR_GROUPS, 1);
    y = transpose(L, reshape(L, lw_fin(L, y), 3, (int64_t[]){n, u, p}, loc), (int64_t[]){0, 2, 1}, 3, loc);
    xs.dim[xs.rank - 1] = u;
    return y < 0 ? -1 : lw_reshape(L, y, &xs, loc);
}

/* embedding(vocab, dim): ids i32[...] -> f32[..., dim]; table `w : [vocab, dim]`,
 * normal(0, 1) like PyTorch's nn.Embedding. */
struct val fe_layer_embedding(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc) {
    static const char *const names[] = {"vocab", "dim", NULL};
    struct fe_arg *o[FE_MAX_OPTS];
    int64_t vocab, dim;
    if (!bind(L, b, names, args, nargs, o, loc) || !need(L, "embedding", "vocab", o[0], loc) ||
        !need(L, "embedding", "dim", o[1], loc) ||
        !fe_opt_int(L, "embedding", "vocab", o[0], 0, 1, MAX_ROWS, &vocab) ||
        !fe_opt_int(L, "embedding", "dim", o[1], 0, 1, MAX_ROWS, &dim) || !need_ids(L, "embedding", x, loc))
        return lw_err();
    struct type t = {DT_F32, {2, {vocab, dim}}};
    int w = lw_param(L, "embedding", fe_layer_count(L, b), "w", BUF_PARAM, t,
                     (struct ir_init){INIT_NORMAL, 0, 1}, loc);
    if (w < 0) return lw_err();
    return masked_by(L, lw_emit2(L, OP_EMBEDDING, w, x, loc), x);
}

/* one_hot(classes): ids i32[...] -> f32[..., classes]. */
struct val fe_layer_one_hot(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                            int x, struct loc loc) {
    static const char *const names[] = {"classes", NULL};
    struct fe_arg *o[FE_MAX_OPTS];
    int64_t k;
    if (!bind(L, b, names, args, nargs, o, loc) || !need(L, "one_hot", "classes", o[0], loc) ||
        !fe_opt_int(L, "one_hot", "classes", o[0], 0, 1, MAX_ROWS, &k) || !need_ids(L, "one_hot", x, loc))
        return lw_err();
    int id = lw_node(L, OP_ONE_HOT, &x, 1, loc);
    ir_attr_set_i(lw_n(L, id), ATTR_CLASSES, k);
    return masked_by(L, lw_fin(L, id), x);
}

/* Mean or max over axis 1 of x [N, T, ...]; masked by ids (1 + node id, 0: none). */
static struct val time_pool(struct lower *L, const struct fe_builtin *b, int x, int mask, struct loc loc) {
    const char *what = fe_builtin_name(b);
    const struct type *t = lw_type(L, x);
    if (t->dtype != DT_F32 || t->shape.rank < 3) {
        lw_error(L, loc, "%s expects f32 values [N, T, features], got %s", what, lw_tstr(L, t));
        return lw_err();
    }
    bool max = fe_builtin_op(b) == OP_MASKED_MAX;
    if (!mask) {
        int id = lw_node(L, max ? OP_MAX : OP_MEAN, &x, 1, loc);
        int64_t axis = 1;
        ir_attr_set_v(lw_n(L, id), ATTR_AXES, &axis, 1);
        return lw_tensor(lw_fin(L, id));
    }
    int args[2] = {x, mask - 1};
    int id = lw_node(L, max ? OP_MASKED_MAX : OP_MASKED_MEAN, args, 2, loc);
    ir_attr_set_i(lw_n(L, id), ATTR_PAD_ID, 0);
    return lw_tensor(lw_fin(L, id));
}

/* As a layer: masked by the input's padding mask, if it carries one. */
struct val fe_layer_time_pool(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc) {
    struct fe_arg *o[FE_MAX_OPTS];
    static const char *const names[] = {NULL};
    if (!bind(L, b, names, args, nargs, o, loc)) return lw_err();
    return time_pool(L, b, x, L->cur_mask, loc);
}

/* As a function: (x) masked by x's own mask, or (x, ids) masked by ids. */
struct val fe_func_time_pool(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                             struct loc loc) {
    const char *what = fe_builtin_name(b);
    if (nargs < 1 || nargs > 2 || args[0].kw || (nargs == 2 && args[1].kw) || args[0].v.kind != V_TENSOR ||
        (nargs == 2 && args[1].v.kind != V_TENSOR)) {
        lw_error(L, loc, "%s takes the values [N, T, ...] and optionally the token ids [N, T] that mask them",
                 what);
        return lw_err();
    }
    int mask = args[0].v.mask;
    if (nargs == 2) {
        int ids = args[1].v.id;
        const struct type *t = lw_type(L, ids), *xt = lw_type(L, args[0].v.id);
        if (t->dtype != DT_I32 || t->shape.rank != 2 || xt->shape.rank < 2 ||
            t->shape.dim[0] != xt->shape.dim[0] || t->shape.dim[1] != xt->shape.dim[1]) {
            lw_error(L, args[1].loc, "%s of %s is masked by i32 ids [N, T] of its first two dims, got %s",
                     what, lw_tstr(L, xt), lw_tstr(L, t));
            return lw_err();
        }
        mask = ids + 1;
    }
    return time_pool(L, b, args[0].v.id, mask, loc);
}

/* cross_entropy / accuracy (scores, target[, ignore_index=K]). Scores [N, C] with
 * labels [N] or probabilities [N, C] and no ignore_index: the plain ops. Scores
 * [..., C] of rank 3 or more, or an ignore_index: the masked ops, i32 targets of
 * the scores' shape without C, PyTorch's default ignore_index -100. */
struct val fe_func_class_loss(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              struct loc loc) {
    const char *what = fe_builtin_name(b);
    int pos = 0;
    const struct fe_arg *ign = NULL;
    for (int i = 0; i < nargs; i++) {
        if (!args[i].kw) {
            pos++;
            continue;
        }
        if (strcmp(args[i].kw, "ignore_index") != 0 || ign) {
            lw_error(L, args[i].loc, "%s has %s option '%s'; options: ignore_index", what,
                     ign ? "a repeated" : "no", args[i].kw);
            return lw_err();
        }
        ign = &args[i];
    }
    if (pos != 2 || args[0].kw || args[1].kw) {
        lw_error(L, loc,
                 "%s takes 2 tensors (prediction, target) and optionally ignore_index=K, got %d argument%s",
                 what, nargs, nargs == 1 ? "" : "s");
        return lw_err();
    }
    int p = args[0].v.kind == V_TENSOR ? args[0].v.id : -1,
        t = args[1].v.kind == V_TENSOR ? args[1].v.id : -1;
    if (p < 0 || t < 0) {
        lw_error(L, args[p < 0 ? 0 : 1].loc, "%s needs a tensor as argument %d", what, p < 0 ? 1 : 2);
        return lw_err();
    }
    int64_t k = -100;
    if (ign && !fe_opt_int(L, what, "ignore_index", ign, -100, INT32_MIN, INT32_MAX, &k)) return lw_err();
    bool masked = ign || lw_type(L, p)->shape.rank > 2;
    enum op op = fe_builtin_op(b);
    if (!masked) return lw_tensor(lw_emit2(L, op, p, t, loc));
    const struct type *pt = lw_type(L, p), *tt = lw_type(L, t);
    if (!ign && tt->shape.rank == 1 && pt->shape.rank > 2) {
        lw_error(L, loc,
                 "%s of scores %s and labels %s: scores [N, classes] take labels [N] (flatten before the "
                 "last dense layer?), scores [..., classes] take targets [...]",
                 what, lw_tstr(L, pt), lw_tstr(L, tt));
        return lw_err();
    }
    if (tt->dtype != DT_I32) {
        lw_error(L, args[1].loc, "%s of %s with ignore_index needs i32 class targets, got %s", what,
                 lw_tstr(L, pt), lw_tstr(L, tt));
        return lw_err();
    }
    int args2[2] = {p, t};
    int id = lw_node(L, op == OP_ACCURACY ? OP_MASKED_ACCURACY : OP_MASKED_CROSS_ENTROPY, args2, 2, loc);
    ir_attr_set_i(lw_n(L, id), ATTR_IGNORE, k);
    return lw_tensor(lw_fin(L, id));
}
