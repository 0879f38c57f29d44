/* codegen/c_text.c -- the C backend's column for the token and sequence ops:
 * embedding (row copies, a bad id stops the run through nrt_ctx_fail) and its
 * gradient (zero, then rows added in index order: deterministic), one-hot, the
 * masked cross-entropy/accuracy over [..., C] logits, masked mean/max pooling
 * over time. Semantics: interp_text.c. Each op is a short loop nest in a block. */
#include "codegen/codegen.h"

static const struct shape *shape_of(const struct cgc *c, int id) { return &cgc_node(c, id)->type.shape; }
static const struct shape *arg_shape(const struct cgc *c, int id, int i) {
    return &cgc_arg(c, id, i)->type.shape;
}
static int arg(const struct cgc *c, int id, int i) { return cgc_node(c, id)->args[i]; }

/* ---------------------------------------------------------------- tokens */

/* Checks id `v` (an int32_t in scope) against rows, failing the run. */
static void check_id(struct cgc *c, const char *what, long long rows) {
    cgc_emit(c, "if (v < 0 || v >= %lld) {", rows);
    cgc_emit(
        c,
        "    nrt_ctx_fail(ctx, \"%s %%d at position %%lld is out of range for an embedding of %lld rows\", "
        "(int)v, (long long)p);",
        what, rows);
    cgc_emit(c, "    return;");
    cgc_emit(c, "}");
}

void cgc_op_EMBEDDING(struct cgc *c, int id) {
    const struct shape *w = arg_shape(c, id, 0);
    long long rows = (long long)w->dim[0], d = (long long)w->dim[1];
    cg_block_open(c);
    cgc_emit(c, "for (int64_t p = 0; p < %s; p++) {", cg_xs(cgc_count(arg_shape(c, id, 1))));
    c->indent++;
    cgc_emit(c, "const int32_t v = v%d[p];", arg(c, id, 1));
    check_id(c, "token id", rows);
    cgc_emit(c, "memcpy(v%d + p * %lld, v%d + (int64_t)v * %lld, %lld * sizeof(float));", id, d,
             arg(c, id, 0), d, d);
    cg_block_close(c);
    cg_block_close(c);
}

void cgc_op_EMBEDDING_GRAD(struct cgc *c, int id) {
    const struct shape *dw = shape_of(c, id);
    long long rows = (long long)dw->dim[0], d = (long long)dw->dim[1];
    cg_block_open(c);
    cgc_emit(c, "memset(v%d, 0, %lld * sizeof(float));", id, rows * d);
    cgc_emit(c, "for (int64_t p = 0; p < %s; p++) {", cg_xs(cgc_count(arg_shape(c, id, 0))));
    c->indent++;
    cgc_emit(c, "const int32_t v = v%d[p];", arg(c, id, 0));
    check_id(c, "token id", rows);
    cgc_emit(c, "float *restrict dr = v%d + (int64_t)v * %lld;", id, d);
    cgc_emit(c, "const float *restrict gr = v%d + p * %lld;", arg(c, id, 1), d);
    cgc_emit(c, "for (int64_t j = 0; j < %lld; j++) dr[j] += gr[j];", d);
    cg_block_close(c);
    cg_block_close(c);
}

void cgc_op_ONE_HOT(struct cgc *c, int id) {
    long long k = (long long)ir_attr_i(cgc_node(c, id), ATTR_CLASSES);
    cg_block_open(c);
    cgc_emit(c, "memset(v%d, 0, (size_t)(%s) * sizeof(float));", id, cg_xs(cgc_count(shape_of(c, id))));
    cgc_emit(c, "for (int64_t p = 0; p < %s; p++) {", cg_xs(cgc_count(arg_shape(c, id, 0))));
    cgc_emit(c, "    const int32_t v = v%d[p];", arg(c, id, 0));
    cgc_emit(c, "    if (v >= 0 && v < %lld) v%d[p * %lld + v] = 1.0f;", k, id, k);
    cgc_emit(c, "}");
    cg_block_close(c);
}

/* -------------------------------------------------- masked losses, metric */

/* Opens a block with `kept`, the positions whose target is not ignored (a
 * target out of [0, C) fails the run), and `rows`, `cls` of logits operand 0. */
static void masked_open(struct cgc *c, int id) {
    const struct shape *x = arg_shape(c, id, 0);
    long long ignore = (long long)ir_attr_i(cgc_node(c, id), ATTR_IGNORE);
    cg_block_open(c);
    cgc_emit(c, "const int64_t rows = %s, cls = %lld;", cg_xs(cgc_dims_prod(x, 0, x->rank - 1)),
             (long long)x->dim[x->rank - 1]);
    cgc_emit(c, "const int32_t *restrict t = v%d;", arg(c, id, 1));
    cgc_emit(c, "int64_t kept = 0;");
    cgc_emit(c, "for (int64_t r = 0; r < rows; r++) {");
    cgc_emit(c, "    if (t[r] == %lld) continue;", ignore);
    cgc_emit(c, "    if (t[r] < 0 || t[r] >= cls) {");
    cgc_emit(c, "        nrt_ctx_fail(ctx, \"target %%d at position %%lld is out of range for %%lld "
                "classes\", (int)t[r], "
                "(long long)r, (long long)cls);");
    cgc_emit(c, "        return;");
    cgc_emit(c, "    }");
    cgc_emit(c, "    kept++;");
    cgc_emit(c, "}");
}

/* mx, the largest of xr[0..cls), over 16 lanes (vector compares; one serial
 * chain of 4-cycle maxima per class was 40% of the loss), then the lanes and
 * the tail: the same value as a serial scan that starts at xr[0]. */
static void row_max(struct cgc *c) {
    cgc_emit(c, "float mxl[16], mx;");
    cgc_emit(c, "for (int l = 0; l < 16; l++) mxl[l] = xr[0];");
    cgc_emit(c, "int64_t jm = 0;");
    cgc_emit(c, "for (; jm + 16 <= cls; jm += 16)");
    cgc_emit(c, "    for (int l = 0; l < 16; l++) mxl[l] = xr[jm + l] > mxl[l] ? xr[jm + l] : mxl[l];");
    cgc_emit(c, "mx = mxl[0];");
    cgc_emit(c, "for (int l = 1; l < 16; l++) mx = mxl[l] > mx ? mxl[l] : mx;");
    cgc_emit(c, "for (; jm < cls; jm++) mx = xr[jm] > mx ? xr[jm] : mx;");
}

/* Opens the loop over the kept rows with xr and, when asked, mx and se, the
 * row's largest logit and sum of exp(x - mx), in scope; with `store`, the
 * exponentials go to the row `store` too (the gradient scales them). */
static void masked_rows(struct cgc *c, int id, bool sum, const char *store) {
    cgc_emit(c, "for (int64_t r = 0; r < rows; r++) {");
    c->indent++;
    cgc_emit(c, "if (t[r] == %lld) continue;", (long long)ir_attr_i(cgc_node(c, id), ATTR_IGNORE));
    cgc_emit(c, "const float *restrict xr = v%d + r * cls;", arg(c, id, 0));
    if (!sum) return;
    if (store) cgc_emit(c, "%s", store);
    row_max(c);
    /* exp by netrt.h's branch-free nrt_expf (2 ulp), so the loop vectorizes; the
     * sum over 16 independent float lanes (a few terms each), which needs no
     * reordering, then in double (8 double lanes converting every term were 60%
     * of the loss) */
    cgc_emit(c, "float part[16] = {0};");
    cgc_emit(c, "double se = 0;");
    cgc_emit(c, "int64_t j = 0;");
    cgc_emit(c, "for (; j + 16 <= cls; j += 16)");
    cgc_emit(c, "    for (int l = 0; l < 16; l++) {");
    cgc_emit(c, "        const float e = nrt_expf(xr[j + l] - mx);");
    if (store) cgc_emit(c, "        dr[j + l] = e;");
    cgc_emit(c, "        part[l] += e;");
    cgc_emit(c, "    }");
    cgc_emit(c, "for (; j < cls; j++) {");
    cgc_emit(c, "    const float e = nrt_expf(xr[j] - mx);");
    if (store) cgc_emit(c, "    dr[j] = e;");
    cgc_emit(c, "    se += e;");
    cgc_emit(c, "}");
    cgc_emit(c, "for (int l = 0; l < 16; l++) se += part[l];");
}

void cgc_op_MASKED_CROSS_ENTROPY(struct cgc *c, int id) {
    masked_open(c, id);
    cgc_emit(c, "double sum = 0;");
    masked_rows(c, id, true, NULL);
    cgc_emit(c, "const double lse = isinf(mx) ? mx : mx + log(se);");
    cgc_emit(c, "sum += lse - xr[t[r]];");
    cg_block_close(c);
    cgc_emit(c, "v%d[0] = kept ? (float)(sum / (double)kept) : 0.0f;", id);
    cg_block_close(c);
}

/* g softmax(x) - g onehot(t) per kept row: exp(x - mx) stored, then scaled by
 * g / se (one exponential per logit). */
void cgc_op_MASKED_CROSS_ENTROPY_GRAD(struct cgc *c, int id) {
    masked_open(c, id);
    cgc_emit(c, "const double g = kept ? (double)v%d[0] / (double)kept : 0.0;", arg(c, id, 2));
    cgc_emit(c, "for (int64_t r = 0; r < rows; r++) /* the ignored rows; the others are written below */");
    cgc_emit(c, "    if (t[r] == %lld) memset(v%d + r * cls, 0, (size_t)cls * sizeof(float));",
             (long long)ir_attr_i(cgc_node(c, id), ATTR_IGNORE), id);
    char store[64];
    snprintf(store, sizeof store, "float *restrict dr = v%d + r * cls;", id);
    masked_rows(c, id, true, store);
    cgc_emit(c, "const float s = (float)(g / se);");
    cgc_emit(c, "for (int64_t k = 0; k < cls; k++) dr[k] *= s;");
    cgc_emit(c, "dr[t[r]] -= (float)g;");
    cg_block_close(c);
    cg_block_close(c);
}

void cgc_op_MASKED_ACCURACY(struct cgc *c, int id) {
    masked_open(c, id);
    cgc_emit(c, "int64_t hits = 0;");
    masked_rows(c, id, false, NULL);
    /* the first position of the largest (0 when xr[0] is a NaN, as a scan
     * keeping the first strictly larger value) */
    row_max(c);
    cgc_emit(c, "int64_t best = 0;");
    cgc_emit(c, "while (best < cls && !(xr[best] == mx)) best++;");
    cgc_emit(c, "if (best == cls) best = 0;");
    cgc_emit(c, "hits += best == t[r];");
    cg_block_close(c);
    cgc_emit(c, "v%d[0] = kept ? (float)((double)hits / (double)kept) : 0.0f;", id);
    cg_block_close(c);
}

/* ---------------------------------------------------------- masked pooling */

/* Opens a block over batch items b and features j of x [B, T, R] with ids
 * [B, T]: `b`, `T`, `R` and the pad id in scope. */
static void pool_open(struct cgc *c, int id, const struct shape *x, int ids) {
    cg_block_open(c);
    cgc_emit(c, "const int64_t T = %lld, R = %s;", (long long)x->dim[1], cg_xs(cgc_dims_prod(x, 2, x->rank)));
    cgc_emit(c, "const int32_t *restrict ids = v%d;", ids);
    cgc_emit(c, "for (int64_t b = 0; b < %s; b++) {", cg_xs(cgc_dim(x, 0)));
    c->indent++;
    cgc_emit(c, "const int32_t *restrict ib = ids + b * T;");
    cgc_emit(c, "const int32_t pad = %lld;", (long long)ir_attr_i(cgc_node(c, id), ATTR_PAD_ID));
}

void cgc_op_MASKED_MEAN(struct cgc *c, int id) {
    pool_open(c, id, arg_shape(c, id, 0), arg(c, id, 1));
    cgc_emit(c, "float *restrict yb = v%d + b * R;", id);
    cgc_emit(c, "const float *restrict xb = v%d + b * T * R;", arg(c, id, 0));
    cgc_emit(c, "int64_t kept = 0;");
    cgc_emit(c, "for (int64_t j = 0; j < R; j++) yb[j] = 0;");
    cgc_emit(c, "for (int64_t s = 0; s < T; s++) {");
    cgc_emit(c, "    if (ib[s] == pad) continue;");
    cgc_emit(c, "    kept++;");
    cgc_emit(c, "    for (int64_t j = 0; j < R; j++) yb[j] += xb[s * R + j];");
    cgc_emit(c, "}");
    cgc_emit(c, "if (kept) for (int64_t j = 0; j < R; j++) yb[j] /= (float)kept;");
    cg_block_close(c);
    cg_block_close(c);
}

void cgc_op_MASKED_MAX(struct cgc *c, int id) {
    pool_open(c, id, arg_shape(c, id, 0), arg(c, id, 1));
    cgc_emit(c, "float *restrict yb = v%d + b * R;", id);
    cgc_emit(c, "const float *restrict xb = v%d + b * T * R;", arg(c, id, 0));
    cgc_emit(c, "int64_t kept = 0;");
    cgc_emit(c, "for (int64_t j = 0; j < R; j++) yb[j] = 0;");
    cgc_emit(c, "for (int64_t s = 0; s < T; s++) {");
    cgc_emit(c, "    if (ib[s] == pad) continue;");
    cgc_emit(c, "    for (int64_t j = 0; j < R; j++) yb[j] = kept == 0 || xb[s * R + j] > yb[j] ? xb[s * R + "
                "j] : yb[j];");
    cgc_emit(c, "    kept++;");
    cgc_emit(c, "}");
    cg_block_close(c);
    cg_block_close(c);
}

void cgc_op_MASKED_MEAN_GRAD(struct cgc *c, int id) {
    pool_open(c, id, shape_of(c, id), arg(c, id, 0));
    cgc_emit(c, "float *restrict xb = v%d + b * T * R;", id);
    cgc_emit(c, "const float *restrict gb = v%d + b * R;", arg(c, id, 1));
    cgc_emit(c, "int64_t kept = 0;");
    cgc_emit(c, "for (int64_t s = 0; s < T; s++) kept += ib[s] != pad;");
    cgc_emit(c, "for (int64_t s = 0; s < T; s++)");
    cgc_emit(
        c, "    for (int64_t j = 0; j < R; j++) xb[s * R + j] = ib[s] != pad ? gb[j] / (float)kept : 0.0f;");
    cg_block_close(c);
    cg_block_close(c);
}

void cgc_op_MASKED_MAX_GRAD(struct cgc *c, int id) {
    pool_open(c, id, arg_shape(c, id, 0), arg(c, id, 1));
    cgc_emit(c, "float *restrict db = v%d + b * T * R;", id);
    cgc_emit(c, "const float *restrict xb = v%d + b * T * R;", arg(c, id, 0));
    cgc_emit(c, "const float *restrict gb = v%d + b * R;", arg(c, id, 2));
    cgc_emit(c, "for (int64_t k = 0; k < T * R; k++) db[k] = 0;");
    cgc_emit(c, "for (int64_t j = 0; j < R; j++) {");
    cgc_emit(c, "    int64_t best = -1;");
    cgc_emit(c, "    for (int64_t s = 0; s < T; s++)");
    cgc_emit(c, "        if (ib[s] != pad && (best < 0 || xb[s * R + j] > xb[best * R + j])) best = s;");
    cgc_emit(c, "    if (best >= 0) db[best * R + j] = gb[j];");
    cgc_emit(c, "}");
    cg_block_close(c);
    cg_block_close(c);
}
