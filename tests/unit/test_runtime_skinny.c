/* tests/unit/test_runtime_skinny.c -- nrt_sgemm's skinny products (gemv.c's
 * nrt_sgemm_skinny: C of one column, by rows of A or by its columns when
 * transposed; depths of 1 to 8 as outer products) against a double reference,
 * and bit for bit against sgemm.c's packed GEMM (nrt_sgemm_own, the path they
 * replace): every transpose, odd sizes around the 16-row groups, the
 * 128-column passes and the 6 x 64 tiles, depths past the packed GEMM's
 * 384-deep single block, alpha and beta, a padded C (not read when beta is 0,
 * not written past its columns); the same bits at 1, 2 and 3 threads and for
 * rows computed in a separate call (a slice of the batch). */
#include "runtime/internal.h"
#include "runtime/netrt.h"
#include "test.h"

#include <string.h>

/* A deterministic fill in [-1, 1). */
static void fill(float *v, int64_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 7;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = (float)(s >> 8) / 8388608.0f - 1.0f;
    }
}

static float *xalloc(int64_t n) { return nrt_alloc((size_t)(n > 0 ? n : 1) * sizeof(float), 0); }

/* One product's operands, C padded by 2 columns (ldc = n + 2). */
struct prod {
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
    float alpha, beta;
    float *a, *b, *c0; /* c0: C before the call */
};

static void prod_init(struct prod *p, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                      float beta) {
    *p = (struct prod){ta,    tb,   m,    n,    k,   (ta ? m : k) + 3, (tb ? k : n) + 1, n + 2,
                       alpha, beta, NULL, NULL, NULL};
    if (n == 1 && !tb) p->ldb = 1; /* the generated code's column of B */
    p->a = xalloc((ta ? k : m) * p->lda), p->b = xalloc((tb ? n : k) * p->ldb), p->c0 = xalloc(m * p->ldc);
    fill(p->a, (ta ? k : m) * p->lda, (uint32_t)(m * 7 + k)), fill(p->b, (tb ? n : k) * p->ldb, (uint32_t)n);
    fill(p->c0, m * p->ldc, 3);
    if (beta == 0.0f) /* C is not read: NaN there must not come through */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) p->c0[i * p->ldc + j] = NAN;
}

static void prod_free(struct prod *p) { nrt_free(p->a), nrt_free(p->b), nrt_free(p->c0); }

/* nrt_sgemm on rows [r0, r1) of C (into c, a copy of c0 for all rows). */
static void run_rows(const struct prod *p, int64_t r0, int64_t r1, float *c) {
    const float *a = p->ta ? p->a + r0 : p->a + r0 * p->lda;
    nrt_sgemm(p->ta, p->tb, r1 - r0, p->n, p->k, p->alpha, a, p->lda, p->b, p->ldb, p->beta, c + r0 * p->ldc,
              p->ldc);
}

/* The largest error of c against the double reference (the padding: c0's). */
static double ref_err(const struct prod *p, const float *c) {
    double e = 0;
    for (int64_t i = 0; i < p->m; i++)
        for (int64_t j = 0; j < p->ldc; j++) {
            double r = p->c0[i * p->ldc + j];
            if (j < p->n) {
                double s = 0;
                for (int64_t q = 0; q < p->k; q++)
                    s += (double)(p->ta ? p->a[q * p->lda + i] : p->a[i * p->lda + q]) *
                         (p->tb ? p->b[j * p->ldb + q] : p->b[q * p->ldb + j]);
                r = p->alpha * s + (p->beta == 0.0f ? 0.0 : p->beta * r);
            }
            const double d = fabs((double)c[i * p->ldc + j] - r) / (fabs(r) > 1 ? fabs(r) : 1);
            if (!(d <= e)) e = d; /* NaN: the largest */
        }
    return e;
}

static void check(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    struct prod p;
    prod_init(&p, ta, tb, m, n, k, alpha, beta);
    const size_t bytes = sizeof(float) * (size_t)(m * p.ldc);
    float *c = xalloc(m * p.ldc), *own = xalloc(m * p.ldc), *alt = xalloc(m * p.ldc);
    memcpy(c, p.c0, bytes), memcpy(own, p.c0, bytes);
    nrt_threads_set(1);
    run_rows(&p, 0, m, c);
    const double e = ref_err(&p, c);
    /* float rounding: two units in the last place per step of the sum at worst */
    const double tol = 1.2e-7 * (double)(k + 16);
    const char *what = NULL;
    if (!(e <= tol)) what = "error";
    if (!what && nrt_sgemm_own_built()) { /* the packed GEMM's bits */
        nrt_sgemm_own(ta, tb, m, n, k, alpha, p.a, p.lda, p.b, p.ldb, beta, own, p.ldc);
        if (memcmp(c, own, bytes) != 0) what = "bits differ from the packed GEMM";
    }
    for (int t = 2; t <= 3 && !what; t++) { /* the pool's split */
        nrt_threads_set(t);
        memcpy(alt, p.c0, bytes);
        run_rows(&p, 0, m, alt);
        if (memcmp(c, alt, bytes) != 0)
            what = t == 2 ? "bits differ at 2 threads" : "bits differ at 3 threads";
    }
    if (!what && m > 1) { /* rows in two calls: a slice of the batch */
        nrt_threads_set(2);
        const int64_t h = m / 3 + 1;
        memcpy(alt, p.c0, bytes);
        run_rows(&p, 0, h, alt), run_rows(&p, h, m, alt);
        if (memcmp(c, alt, bytes) != 0) what = "bits differ in two calls";
    }
    if (what)
        TEST_FAIL_("skinny ta=%d tb=%d %lldx%lldx%lld alpha %g beta %g: %s (error %g, tol %g)", ta, tb,
                   (long long)m, (long long)n, (long long)k, alpha, beta, what, e, tol);
    else
        test_passed++;
    nrt_free(c), nrt_free(own), nrt_free(alt);
    prod_free(&p);
}

/* alpha and beta by v: 1 0, 0.5 0, 1 1, 0.5 0.25. */
static void check_v(int ta, int tb, int64_t m, int64_t n, int64_t k, int v) {
    check(ta, tb, m, n, k, v & 1 ? 0.5f : 1.0f, v == 2 ? 1.0f : v == 3 ? 0.25f : 0.0f);
}

/* C with one column: dot products of A's rows, or A's rows summed (A
 * transposed), op(B) a column either way. */
static void test_column(void) {
    static const int64_t ms[] = {1, 2, 15, 16, 17, 64, 127, 129, 300};
    static const int64_t ks[] = {1, 7, 16, 33, 384, 385, 700};
    int v = 0;
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            for (size_t q = 0; q < sizeof ks / sizeof *ks; q++)
                check_v(t & 1, t >> 1, ms[i], 1, ks[q], v++ % 4);
    /* the DCGAN's discriminator head at batch 64 and 50: forward, weight gradient */
    for (int t = 0; t < 4; t++) {
        check_v(0, 0, 64, 1, 6272, t), check_v(0, 0, 50, 1, 6272, t);
        check_v(1, 0, 6272, 1, 64, t), check_v(1, 0, 6272, 1, 50, t);
    }
}

/* Depths of 1 to 8: outer products (op(B) by rows; a transposed B at k = 1). */
static void test_outer(void) {
    static const int64_t ms[] = {2, 5, 6, 7, 13, 64}, ns[] = {2, 15, 16, 63, 64, 65, 200};
    int v = 0;
    for (int ta = 0; ta < 2; ta++)
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            for (size_t j = 0; j < sizeof ns / sizeof *ns; j++)
                for (int64_t k = 1; k <= 8; k += k < 3 ? 1 : 5) {
                    check_v(ta, 0, ms[i], ns[j], k, v++ % 4);
                    if (k == 1) check_v(ta, 1, ms[i], ns[j], k, v++ % 4);
                }
    /* the DCGAN's input gradient of the head, batch 64 */
    for (int t = 0; t < 4; t++) check_v(0, 1, 64, 6272, 1, t);
    /* what it leaves to the other paths: a transposed B deeper than 1, k = 9 */
    check_v(0, 1, 13, 40, 3, 0), check_v(1, 1, 13, 40, 5, 1), check_v(0, 0, 13, 40, 9, 2);
}

int main(void) {
    printf("GEMM library: %s\n", nrt_gemm_library());
    test_column();
    test_outer();
    nrt_threads_set(0);
    TEST_DONE();
}
