/* tests/unit/test_runtime_gemm_adam.c -- nrt_sgemm_adam (runtime/sgemm.c: Adam
 * fused into its gradient's GEMM) against the unfused sequence: the gradient
 * by a plain loop (a fused multiply-add per k, in order: the runtime's own
 * GEMM's sums, bit for bit, where its fused path runs; else nrt_sgemm's
 * result), then the update op by op in float as the IR states it. The new
 * moments and parameter must match bit for bit: transposes, odd sizes (edge
 * rows and columns of the register tile), the depths through the fused path
 * and past it (through scratch), Adam's L2 weight decay and AdamW's decay,
 * outputs in place and apart, C split by rows or by columns, at 1, 2 and 3
 * threads. And gemv.c's rows GEMM
 * (dense layers on batches up to 256 rows) against sgemm.c's packed one: the
 * same bits, its sums taken by the same blocks of k. */
#include "runtime/internal.h"
#include "runtime/netrt.h"
#include "test.h"

#include <math.h>
#include <string.h>

/* A deterministic fill in [lo, lo + span). */
static void fill(float *v, int64_t n, uint32_t seed, float lo, float span) {
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = lo + span * (float)(s >> 8) / 16777216.0f;
    }
}

static float *xalloc(int64_t n) { return nrt_alloc((size_t)(n > 0 ? n : 1) * sizeof(float), 0); }

/* The hyper-parameters: the moments' weights, sqrt(1 - b2^t), eps, the step
 * size, decay and wd (NaN: absent). */
struct hyper {
    float b1, c1, b2, c2, bc2, eps, step, decay, wd;
};

/* The unfused update of one element, op by op (ISO C: no contraction). */
static void ref_update(const struct hyper *h, float g, float *m, float *v, float *w) {
    if (!isnan(h->wd)) g = g + h->wd * *w;
    const float mn = h->b1 * *m + h->c1 * g;
    const float vn = h->b2 * *v + h->c2 * (g * g);
    const float den = sqrtf(vn) / h->bc2 + h->eps;
    const float base = isnan(h->decay) ? *w : *w * h->decay;
    *m = mn, *v = vn, *w = base - h->step * (mn / den);
}

static void check(int ta, int tb, int64_t m, int64_t n, int64_t k, const struct hyper *h, int inplace) {
    const int64_t lda = ta ? m : k, ldb = tb ? k : n, mn = m * n;
    float *a = xalloc(m * k), *b = xalloc(k * n), *g = xalloc(mn), *scratch = xalloc(mn);
    float *st[3], *out[3], *ref[3]; /* m, v, w */
    for (int i = 0; i < 3; i++) {
        st[i] = xalloc(mn), out[i] = inplace ? st[i] : xalloc(mn), ref[i] = xalloc(mn);
        fill(st[i], mn, (uint32_t)(7 + i), i == 1 ? 0.0f : -0.5f, i == 1 ? 0.01f : 1.0f);
    }
    /* some zero gradients and moments, as a border pixel's weights have */
    fill(a, m * k, 3, -1.0f, 2.0f), fill(b, k * n, 4, -0.1f, 0.2f);
    for (int64_t i = 0; i < m * k; i += 5) a[i] = 0.0f;
    if (m > 2)
        for (int64_t j = 0; j < n; j++) st[0][2 * n + j] = st[1][2 * n + j] = 0.0f;
    if (m > 2) /* row 2 of op(A) zero: a zero gradient */
        for (int64_t q = 0; q < k; q++) a[ta ? q * lda + 2 : 2 * lda + q] = 0.0f;
    /* the gradient: the own GEMM's sums where the fused path runs, else nrt_sgemm's */
    if (nrt_gemm_own_wanted() && k <= 384 && n >= 16 && 2.0 * (double)(m * n * k) >= 5e5)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) {
                float acc = 0.0f;
                for (int64_t q = 0; q < k; q++)
                    acc =
                        fmaf(ta ? a[q * lda + i] : a[i * lda + q], tb ? b[j * ldb + q] : b[q * ldb + j], acc);
                g[i * n + j] = acc;
            }
    else
        nrt_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, g, n);
    for (int i = 0; i < 3; i++) memcpy(ref[i], st[i], sizeof(float) * (size_t)mn);
    for (int64_t p = 0; p < mn; p++) ref_update(h, g[p], &ref[0][p], &ref[1][p], &ref[2][p]);
    const struct nrt_adam u = {st[0],
                               st[1],
                               st[2],
                               out[0],
                               out[1],
                               out[2],
                               &h->b1,
                               &h->c1,
                               &h->b2,
                               &h->c2,
                               &h->bc2,
                               &h->eps,
                               &h->step,
                               isnan(h->decay) ? NULL : &h->decay,
                               isnan(h->wd) ? NULL : &h->wd};
    nrt_sgemm_adam(ta, tb, m, n, k, a, lda, b, ldb, scratch, &u);
    int64_t bad = -1;
    int which = 0;
    for (int i = 0; i < 3 && bad < 0; i++)
        for (int64_t p = 0; p < mn && bad < 0; p++)
            if (memcmp(&out[i][p], &ref[i][p], sizeof(float)) != 0) bad = p, which = i;
    if (bad >= 0)
        TEST_FAIL_(
            "sgemm_adam ta=%d tb=%d %lldx%lldx%lld inplace=%d threads=%d: %s[%lld] = %.9g, unfused %.9g", ta,
            tb, (long long)m, (long long)n, (long long)k, inplace, nrt_threads_get(),
            which == 0   ? "m"
            : which == 1 ? "v"
                         : "w",
            (long long)bad, out[which][bad], ref[which][bad]);
    else
        test_passed++;
    for (int i = 0; i < 3; i++) {
        nrt_free(st[i]), nrt_free(ref[i]);
        if (!inplace) nrt_free(out[i]);
    }
    nrt_free(a), nrt_free(b), nrt_free(g), nrt_free(scratch);
}

static void test_gemm_adam(void) {
    /* Adam's default betas at step 3: 1 - b^t in f32, as optim.c's lowering */
    const struct hyper adam = {0.9f,
                               0.1f,
                               0.999f,
                               0.001f,
                               sqrtf(1.0f - powf(0.999f, 3.0f)),
                               1e-7f,
                               1e-3f / (1.0f - powf(0.9f, 3.0f)),
                               NAN,
                               NAN};
    struct hyper adamw = adam, l2 = adam;
    adamw.decay = 1.0f - 1e-3f * 0.01f;
    l2.wd = 0.05f;
    static const int64_t sizes[][3] = {
        {1, 1, 1},     {5, 7, 3},     {12, 32, 16},   {13, 33, 17},   {25, 10, 64}, /* the MLP's last layer */
        {40, 80, 64},  {71, 129, 37}, {256, 128, 64},                               /* its second layer */
        {30, 520, 50},                               /* two blocks of columns */
        {37, 45, 384}, {37, 45, 385}, {20, 33, 700}, /* the deepest fused, past it: through scratch */
        {61, 17, 300}, {25, 40, 300}, {100, 16, 200}, {20, 300, 384}, /* fused, edge rows and columns */
    };
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int t = 0; t < 4; t++)
            check(t & 1, t >> 1, sizes[s][0], sizes[s][1], sizes[s][2], &adam, (int)(s + (size_t)t) % 2);
    check(1, 0, 40, 70, 64, &adamw, 1);
    check(1, 0, 40, 70, 64, &l2, 0);
    check(0, 1, 13, 33, 400, &adamw, 0);
    check(1, 0, 784, 256, 64, &adam, 1); /* the MLP's first layer */
    /* wider than tall: split by columns (the DCGAN's G.dense0 at batch 64, and odd ones) */
    check(1, 0, 100, 6272, 64, &adam, 1);
    check(0, 1, 13, 1000, 70, &adam, 0);
    check(1, 1, 37, 545, 33, &adamw, 1);
}

/* nrt_sgemm (the rows GEMM for these shapes) and nrt_sgemm_own, bit for bit. */
static void check_rows(int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    float *a = xalloc(m * k), *b = xalloc(k * n), *c = xalloc(m * n), *c2 = xalloc(m * n);
    fill(a, m * k, 11, -1.0f, 2.0f), fill(b, k * n, 12, -1.0f, 2.0f), fill(c, m * n, 13, -1.0f, 2.0f);
    memcpy(c2, c, sizeof(float) * (size_t)(m * n));
    nrt_sgemm(0, 0, m, n, k, alpha, a, k, b, n, beta, c, n);
    if (!nrt_sgemm_own(0, 0, m, n, k, alpha, a, k, b, n, beta, c2, n))
        TEST_FAIL_("nrt_sgemm_own refused %lldx%lldx%lld", (long long)m, (long long)n, (long long)k);
    else if (memcmp(c, c2, sizeof(float) * (size_t)(m * n)) != 0)
        TEST_FAIL_("rows GEMM %lldx%lldx%lld alpha %g beta %g: not the packed GEMM's bits", (long long)m,
                   (long long)n, (long long)k, alpha, beta);
    else
        test_passed++;
    nrt_free(a), nrt_free(b), nrt_free(c), nrt_free(c2);
}

static void test_rows_bits(void) {
    if (!nrt_sgemm_own_built()) return;
    static const int64_t sizes[][3] = {{64, 256, 784}, {25, 64, 256},  {61, 130, 300}, {256, 40, 385},
                                       {64, 121, 576}, {7, 100, 1600}, {100, 17, 640}};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int v = 0; v < 3; v++)
            check_rows(sizes[s][0], sizes[s][1], sizes[s][2], v == 1 ? 0.5f : 1.0f, v == 2 ? 0.25f : 0.0f);
}

int main(void) {
    for (int threads = 1; threads <= 3; threads++) {
        nrt_threads_set(threads);
        test_gemm_adam();
        test_rows_bits();
    }
    nrt_threads_set(1);
    TEST_DONE();
}
