/* tests/unit/test_runtime_kernels.c -- runtime/kernels.c against plain loops
 * in double: SGEMM (transposes, alpha/beta, sizes that split over the pool,
 * through OpenBLAS and, as unit/test_runtime_kernels_onednn with
 * NETC_GEMM=onednn, through oneDNN where netc was built with it),
 * conv2d and both gradients (strides, padding, dilation, groups, odd sizes,
 * chunks of one image up to the batch; Winograd F(4x4, 3x3) on the 3x3
 * stride-1 cases with 16k inputs and outputs: training's input and weight
 * gradients, inference's forward and F(2x2, 3x3) with >= 16 inputs), the
 * forward with its bias and relu epilogue (nrt_conv2d_bias_act), the same
 * followed by 2x2 max pooling (nrt_conv2d_bias_act_pool), and pooling (2x2 fast paths on odd
 * sizes, padded and overlapping windows), the conv weight gradient from a pooled gradient
 * (nrt_conv2d_grad_weight_maxpool: its AVX-512 path and the generic loop), and batch norm's training gradient
 * (runtime/norm.c: small and large planes), each at 1, 2 and 3 threads. */
#include "runtime/internal.h"
#include "runtime/netrt.h"
#include "test.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <string.h>

/* A deterministic fill in [-1, 1) (with repeats, so pooling sees ties). */
static void fill(float *v, int64_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = (float)((s >> 9) % 64) / 32.0f - 1.0f;
    }
}

/* Exactly n floats (so ASan sees any overrun) or n doubles. */
static float *xalloc(int64_t n) { return nrt_alloc((size_t)(n > 0 ? n : 1) * sizeof(float), 0); }
static double *dalloc(int64_t n) { return nrt_alloc((size_t)(n > 0 ? n : 1) * sizeof(double), 0); }

/* ------------------------------------------------------------------ sgemm -- */

/* zeros: most of A zero, in runs and alone (a dense layer behind relu: gemv.c
 * skips B's rows for them), one NaN among them when zeros is 2. */
static void check_sgemm_z(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta,
                          int zeros) {
    int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    float *a = xalloc((ta ? k : m) * lda), *b = xalloc((tb ? n : k) * ldb), *c = xalloc(m * ldc);
    double *ref = dalloc(m * ldc);
    fill(a, (ta ? k : m) * lda, 1), fill(b, (tb ? n : k) * ldb, 2), fill(c, m * ldc, 3);
    for (int64_t i = 0; zeros && i < (ta ? k : m) * lda; i++)
        if (i % 7 != 3 && (i / 40) % 3 != 1) a[i] = i % 2 ? 0.0f : -0.0f;
    if (zeros == 2) a[k / 2 * (ta ? lda : 1)] = NAN;
    if (beta == 0) /* C is not read: NaN there must not come through */
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = NAN;
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ldc; j++) {
            double s = 0;
            for (int64_t p = 0; p < k && j < n; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            ref[i * ldc + j] =
                j < n ? alpha * s + (beta == 0 ? 0 : beta * (double)c[i * ldc + j]) : c[i * ldc + j];
        }
    nrt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    double e = max_err(c, ref, m * ldc);
    if (zeros == 2) { /* the NaN reaches every column of row 0 */
        e = 0;
        for (int64_t j = 0; j < n; j++) e += c[j] == c[j];
    }
    if (e > 1e-4)
        TEST_FAIL_("sgemm ta=%d tb=%d %lldx%lldx%lld: error %g", ta, tb, (long long)m, (long long)n,
                   (long long)k, e);
    else
        test_passed++;
    nrt_free(a), nrt_free(b), nrt_free(c), nrt_free(ref);
}

static void check_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    check_sgemm_z(ta, tb, m, n, k, alpha, beta, 0);
}

static void test_sgemm(void) {
    /* Small (one call), and large enough to split by rows and by columns,
     * with sizes that are not multiples of the 16-wide blocks. */
    /* One row (batch 1: gemv.c) at 1-3 threads: mnist_cnn's dense layers, a
     * tail of columns, fewer columns than a vector, more than one pass of 128. */
    static const int64_t sizes[][3] = {{3, 5, 7},
                                       {64, 10, 128},
                                       {200, 37, 150},
                                       {37, 200, 150},
                                       {131, 129, 67},
                                       {1, 300, 4000},
                                       {300, 1, 4000},
                                       {33, 17, 0},
                                       {1, 128, 1600},
                                       {1, 10, 128},
                                       {1, 7, 5},
                                       {1, 333, 77},
                                       /* A few rows (gemv.c's nrt_sgemm_rows): slices of mnist_cnn's
                                        * dense layer, 6-, 4-, 2- and 1-row tiles, a partial vector,
                                        * 1-3 vectors in the last 64-column block, 2048 columns. */
                                       {18, 128, 1600},
                                       {2, 128, 256},
                                       {7, 100, 300},
                                       {13, 130, 257},
                                       {24, 16, 400},
                                       {5, 2048, 260},
                                       {11, 81, 999},
                                       /* Whole batches (up to 256 rows): split by rows
                                        * too; the MLP's first layer at batch 64, one
                                        * column block in two row chunks, a short last chunk. */
                                       {64, 256, 784},
                                       {25, 64, 256},
                                       {61, 130, 300},
                                       {256, 40, 257}};
    for (int threads = 1; threads <= 3; threads++) {
        nrt_threads_set(threads);
        for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
            for (int t = 0; t < 4; t++)
                check_sgemm(t & 1, t >> 1, sizes[s][0], sizes[s][1], sizes[s][2], t == 3 ? 0.5f : 1.0f,
                            t == 2 ? 0.25f : 0.0f);
    }
    /* Inputs mostly zero (and one NaN) at one row: gemv.c's skipped rows. */
    static const int64_t zsizes[][3] = {{1, 128, 1600}, {1, 100, 3000}, {1, 64, 37}, {1, 130, 2100}};
    for (int threads = 1; threads <= 2; threads++) {
        nrt_threads_set(threads);
        for (size_t s = 0; s < sizeof zsizes / sizeof *zsizes; s++)
            for (int t = 0; t < 4; t++)
                for (int z = 1; z <= 2; z++)
                    check_sgemm_z(t & 1, t >> 1, zsizes[s][0], zsizes[s][1], zsizes[s][2],
                                  t == 3 ? 0.5f : 1.0f, t == 2 ? 0.25f : 0.0f, z);
    }
    nrt_threads_set(0);
    /* tiny_gpt's shapes (oneDNN's range, above SGEMM_DNNL_FLOPS), with odd
     * neighbours: K not a multiple of 16, N not of 32, beta 0 and 1. */
    static const int64_t big[][5] = {{0, 1, 2048, 384, 128}, {0, 0, 2048, 96, 128}, {0, 1, 2048, 128, 96},
                                     {1, 0, 128, 96, 2048},  {1, 0, 97, 131, 1029}, {0, 0, 517, 77, 203},
                                     {0, 1, 250, 129, 515},  {1, 1, 123, 45, 333}};
    for (size_t s = 0; s < sizeof big / sizeof *big; s++)
        check_sgemm((int)big[s][0], (int)big[s][1], big[s][2], big[s][3], big[s][4], 1.0f,
                    s & 1 ? 1.0f : 0.0f);
}

/* sgemm.c's GEMM itself against the reference: m around its 12-row tiles, n
 * around its 32-column tiles and 512-column blocks, k around its 16-row
 * transposes and 256-row blocks (whole up to 384), every transpose, alpha and
 * beta; and its rows computed in two calls (as the pool splits C) give the
 * same bits as one call. */
static void check_own(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta) {
    int64_t lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 1, ldc = n + 2;
    float *a = xalloc((ta ? k : m) * lda), *b = xalloc((tb ? n : k) * ldb), *c = xalloc(m * ldc);
    float *c2 = xalloc(m * ldc);
    double *ref = dalloc(m * ldc);
    fill(a, (ta ? k : m) * lda, 4), fill(b, (tb ? n : k) * ldb, 5), fill(c, m * ldc, 6);
    if (beta == 0)
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = NAN;
    memcpy(c2, c, sizeof *c * (size_t)(m * ldc));
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < ldc; j++) {
            double s = 0;
            for (int64_t p = 0; p < k && j < n; p++)
                s += (double)(ta ? a[p * lda + i] : a[i * lda + p]) * (tb ? b[j * ldb + p] : b[p * ldb + j]);
            ref[i * ldc + j] =
                j < n ? alpha * s + (beta == 0 ? 0 : beta * (double)c[i * ldc + j]) : c[i * ldc + j];
        }
    int done = nrt_sgemm_own(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    const int64_t h = m / 2 + 1; /* rows 0..h and h..m: tile boundaries elsewhere */
    done = done && nrt_sgemm_own(ta, tb, h, n, k, alpha, a, lda, b, ldb, beta, c2, ldc);
    if (h < m)
        done = done && nrt_sgemm_own(ta, tb, m - h, n, k, alpha, ta ? a + h : a + h * lda, lda, b, ldb, beta,
                                     c2 + h * ldc, ldc);
    double e = max_err(c, ref, m * ldc);
    if (!done || e > 1e-4 || memcmp(c, c2, sizeof *c * (size_t)(m * ldc)) != 0)
        TEST_FAIL_("sgemm_own ta=%d tb=%d %lldx%lldx%lld alpha %g beta %g: done %d, error %g, split %s", ta,
                   tb, (long long)m, (long long)n, (long long)k, alpha, beta, done, e,
                   memcmp(c, c2, sizeof *c * (size_t)(m * ldc)) ? "differs" : "same");
    else
        test_passed++;
    nrt_free(a), nrt_free(b), nrt_free(c), nrt_free(c2), nrt_free(ref);
}

static void test_sgemm_own(void) {
    if (!nrt_sgemm_own_built()) {
        printf("sgemm.c's GEMM not built (no AVX-512): skipped\n");
        return;
    }
    static const int64_t ms[] = {1, 11, 12, 13, 25, 40}, ns[] = {1, 17, 32, 33, 80};
    static const int64_t ks[] = {1, 15, 16, 37, 384, 385, 600};
    for (int t = 0; t < 4; t++)
        for (size_t i = 0; i < sizeof ms / sizeof *ms; i++)
            for (size_t j = 0; j < sizeof ns / sizeof *ns; j++)
                for (size_t q = 0; q < sizeof ks / sizeof *ks; q++) {
                    const int v = (int)(i + j + q) % 4; /* alpha, beta: 1 0, 0.5 0, 1 1, 0.5 0.25 */
                    check_own(t & 1, t >> 1, ms[i], ns[j], ks[q], v & 1 ? 0.5f : 1.0f,
                              v == 2   ? 1.0f
                              : v == 3 ? 0.25f
                                       : 0.0f);
                }
    /* more than one block of 512 columns; tiny_gpt's shapes */
    static const int64_t big[][5] = {{0, 0, 30, 1100, 70},   {1, 1, 29, 1030, 300},  {0, 1, 2048, 384, 128},
                                     {1, 0, 128, 512, 2048}, {0, 0, 2048, 128, 512}, {0, 1, 2048, 128, 512},
                                     {1, 0, 384, 128, 2048}};
    for (size_t s = 0; s < sizeof big / sizeof *big; s++)
        check_own((int)big[s][0], (int)big[s][1], big[s][2], big[s][3], big[s][4], 1.0f, s & 1 ? 1.0f : 0.0f);
}

/* ------------------------------------------------------------ convolution -- */

/* x[b, ch, ih, iw] or 0 outside; the reference's index relation. */
static double ref_x(const struct nrt_conv *c, const float *x, int64_t b, int64_t ch, int64_t ih, int64_t iw) {
    if (ih < 0 || ih >= c->h || iw < 0 || iw >= c->w) return 0;
    return x[((b * c->ci + ch) * c->h + ih) * c->w + iw];
}

/* Calls fn(b, o, oh, ow, ch, i, j, ih, iw) for every multiply of the conv. */
#define FOR_TAPS(c, body)                                                                                  \
    for (int64_t b = 0; b < (c)->n; b++)                                                                   \
        for (int64_t o = 0; o < (c)->co; o++)                                                              \
            for (int64_t oh = 0; oh < (c)->ho; oh++)                                                       \
                for (int64_t ow = 0; ow < (c)->wo; ow++)                                                   \
                    for (int64_t ci_ = 0; ci_ < (c)->ci / (c)->g; ci_++)                                   \
                        for (int64_t i = 0; i < (c)->kh; i++)                                              \
                            for (int64_t j = 0; j < (c)->kw; j++) {                                        \
                                int64_t ch = o / ((c)->co / (c)->g) * ((c)->ci / (c)->g) + ci_;            \
                                int64_t ih = oh * (c)->s[0] - (c)->p[0] + i * (c)->d[0];                   \
                                int64_t iw = ow * (c)->s[1] - (c)->p[1] + j * (c)->d[1];                   \
                                int64_t wi = ((o * ((c)->ci / (c)->g) + ci_) * (c)->kh + i) * (c)->kw + j; \
                                int64_t yi = ((b * (c)->co + o) * (c)->ho + oh) * (c)->wo + ow;            \
                                body;                                                                      \
                            }

/* The double references of c's three directions for x, w and dy: ry (the
 * forward), rdx (the input gradient) and rdw (the weight gradient). */
static void conv_ref(const struct nrt_conv *c, const float *x, const float *w, const float *dy, double *ry,
                     double *rdx, double *rdw) {
    int64_t nx = c->n * c->ci * c->h * c->w, nw = c->co * (c->ci / c->g) * c->kh * c->kw,
            ny = c->n * c->co * c->ho * c->wo;
    memset(ry, 0, sizeof *ry * (size_t)ny), memset(rdx, 0, sizeof *rdx * (size_t)nx);
    memset(rdw, 0, sizeof *rdw * (size_t)nw);
    FOR_TAPS(c, {
        double xv = ref_x(c, x, b, ch, ih, iw);
        ry[yi] += xv * w[wi];
        rdw[wi] += xv * dy[yi];
        if (ih >= 0 && ih < c->h && iw >= 0 && iw < c->w)
            rdx[((b * c->ci + ch) * c->h + ih) * c->w + iw] += (double)w[wi] * dy[yi];
    });
}

static void check_conv(struct nrt_conv c, const char *what) {
    c.ho = (c.h + c.p[0] + c.p[2] - c.d[0] * (c.kh - 1) - 1) / c.s[0] + 1;
    c.wo = (c.w + c.p[1] + c.p[3] - c.d[1] * (c.kw - 1) - 1) / c.s[1] + 1;
    int64_t nx = c.n * c.ci * c.h * c.w, nw = c.co * (c.ci / c.g) * c.kh * c.kw,
            ny = c.n * c.co * c.ho * c.wo;
    float *x = xalloc(nx), *w = xalloc(nw), *dy = xalloc(ny), *y = xalloc(ny), *dx = xalloc(nx),
          *dw = xalloc(nw);
    float *scratch = xalloc(nrt_conv_scratch(&c));
    double *ry = dalloc(ny), *rdx = dalloc(nx), *rdw = dalloc(nw);
    fill(x, nx, 4), fill(w, nw, 5), fill(dy, ny, 6);
    conv_ref(&c, x, w, dy, ry, rdx, rdw);
    /* Garbage in the outputs: every kernel must write all of its output. */
    for (int64_t i = 0; i < ny; i++) y[i] = 1e30f;
    for (int64_t i = 0; i < nx; i++) dx[i] = 1e30f;
    for (int64_t i = 0; i < nw; i++) dw[i] = 1e30f;
    nrt_conv2d(&c, x, w, y, scratch);
    nrt_conv2d_grad_input(&c, dy, w, dx, scratch);
    nrt_conv2d_grad_weight(&c, x, dy, dw, scratch);
    double ey = max_err(y, ry, ny), edx = max_err(dx, rdx, nx), edw = max_err(dw, rdw, nw);
    if (ey > 1e-4 || edx > 1e-4 || edw > 1e-4)
        TEST_FAIL_("conv %s (n %lld chunk %lld threads %d): errors y %g dx %g dw %g", what, (long long)c.n,
                   (long long)c.chunk, nrt_threads_get(), ey, edx, edw);
    else
        test_passed++;
    /* The fused epilogue: bias and relu, bias alone, relu alone; then bias
     * and relu, and nothing, with Winograd allowed. */
    float *bias = xalloc(c.co);
    fill(bias, c.co, 9);
    for (int v = 0; v < 5; v++) {
        const float *b = v == 2 || v == 4 ? NULL : bias;
        int act = v == 1 || v == 4 ? NRT_ACT_NONE : NRT_ACT_RELU;
        for (int64_t i = 0; i < ny; i++) y[i] = 1e30f;
        nrt_conv2d_bias_act(&c, x, w, b, act | (v >= 3 ? NRT_CONV_WINOGRAD : 0), y, scratch);
        double e = 0;
        for (int64_t i = 0; i < ny; i++) {
            double r = ry[i] + (b ? b[i / (c.ho * c.wo) % c.co] : 0);
            r = act == NRT_ACT_RELU && r < 0 ? 0 : r;
            double d = y[i] > r ? y[i] - r : r - y[i];
            e = d > e || d != d ? d : e;
        }
        if (e > 1e-4)
            TEST_FAIL_("conv %s bias+act %d (n %lld threads %d): error %g", what, v, (long long)c.n,
                       nrt_threads_get(), e);
        else
            test_passed++;
    }
    /* The leaky relu epilogue (nrt_conv2d_bias_leaky): with the bias, and
     * without it with Winograd allowed. */
    for (int v = 0; v < 2; v++) {
        const float *b = v ? NULL : bias;
        for (int64_t i = 0; i < ny; i++) y[i] = 1e30f;
        nrt_conv2d_bias_leaky(&c, x, w, b, 0.2f, v ? NRT_CONV_WINOGRAD : 0, y, scratch);
        double e = 0;
        for (int64_t i = 0; i < ny; i++) {
            double r = ry[i] + (b ? b[i / (c.ho * c.wo) % c.co] : 0);
            r = r > 0 ? r : 0.2 * r;
            double d = y[i] > r ? y[i] - r : r - y[i];
            e = d > e || d != d ? d : e;
        }
        if (e > 1e-4)
            TEST_FAIL_("conv %s bias+leaky %d (n %lld threads %d): error %g", what, v, (long long)c.n,
                       nrt_threads_get(), e);
        else
            test_passed++;
    }
    /* The same pooled over 2x2 windows (nrt_conv2d_bias_act_pool; the first
     * layer's and Winograd's kernels pool in registers), every output
     * written, against the reference's maxima. */
    int64_t ph = c.ho / 2, pw = c.wo / 2, np = c.n * c.co * ph * pw;
    float *py = xalloc(np), *pscratch = xalloc(nrt_conv_pool_scratch(&c));
    for (int v = 0; v < 4 && np > 0; v++) {
        const float *b = v == 1 ? NULL : bias;
        int act = v == 1 || v == 3 ? NRT_ACT_NONE : NRT_ACT_RELU;
        for (int64_t i = 0; i < np; i++) py[i] = 1e30f;
        nrt_conv2d_bias_act_pool(&c, x, w, b, act | (v >= 2 ? NRT_CONV_WINOGRAD : 0), py, pscratch);
        double e = 0;
        for (int64_t q = 0; q < c.n * c.co; q++)
            for (int64_t i = 0; i < ph; i++)
                for (int64_t j = 0; j < pw; j++) {
                    double m = -1e300;
                    for (int a = 0; a < 4; a++) {
                        double r =
                            ry[(q * c.ho + 2 * i + a / 2) * c.wo + 2 * j + a % 2] + (b ? b[q % c.co] : 0);
                        r = act == NRT_ACT_RELU && r < 0 ? 0 : r;
                        m = r > m ? r : m;
                    }
                    double got = py[(q * ph + i) * pw + j], d = got > m ? got - m : m - got;
                    e = d > e || d != d ? d : e;
                }
        if (e > 1e-4)
            TEST_FAIL_("conv %s pooled %d (n %lld chunk %lld threads %d): error %g", what, v, (long long)c.n,
                       (long long)c.chunk, nrt_threads_get(), e);
        else
            test_passed++;
    }
    nrt_free(py), nrt_free(pscratch);
    nrt_free(bias);
    nrt_free(x), nrt_free(w), nrt_free(dy), nrt_free(y), nrt_free(dx), nrt_free(dw), nrt_free(scratch);
    nrt_free(ry), nrt_free(rdx), nrt_free(rdw);
}

/* Training's Winograd called directly (so a case that falls back to the
 * direct kernels cannot pass unseen): the forward F(2x2, 3x3) with bias and
 * relu, the input gradient and the weight gradient F(4x4, 3x3) run where
 * runs has bit 1, 2, 4 (elsewhere they decline: channels that are not 16k,
 * a scratch of the conv's size without room for a task per thread, the
 * input gradient of fewer images than threads), and match the double
 * reference. Each image's forward is bit-identical when it runs alone at 1
 * thread: the batch and the threads do not change its results. */
static void check_wino_train(struct nrt_conv c, int runs) {
    c.ho = c.h + c.p[0] + c.p[2] - 2, c.wo = c.w + c.p[1] + c.p[3] - 2;
    int64_t nx = c.n * c.ci * c.h * c.w, nw = c.co * c.ci * 9, ny = c.n * c.co * c.ho * c.wo;
    float *x = xalloc(nx), *w = xalloc(nw), *dy = xalloc(ny), *dx = xalloc(nx), *dw = xalloc(nw),
          *scratch = xalloc(nrt_conv_scratch(&c)), *y = xalloc(ny), *y1 = xalloc(ny), *bias = xalloc(c.co);
    double *rdx = dalloc(nx), *rdw = dalloc(nw), *ry = dalloc(ny);
    fill(x, nx, 14), fill(w, nw, 15), fill(dy, ny, 16), fill(bias, c.co, 17);
    conv_ref(&c, x, w, dy, ry, rdx, rdw);
    for (int64_t i = 0; i < nx; i++) dx[i] = 1e30f;
    for (int64_t i = 0; i < nw; i++) dw[i] = 1e30f;
    for (int64_t i = 0; i < ny; i++) {
        ry[i] += bias[i / (c.ho * c.wo) % c.co];
        ry[i] = ry[i] < 0 ? 0 : ry[i];
        y[i] = y1[i] = 1e30f;
    }
    ASSERT(runs & 1, nrt_wino_conv2d_train(&c, x, w, bias, 1, y, scratch));
    ASSERT((runs & 2) / 2, nrt_wino_conv2d_grad_input(&c, dy, w, dx, scratch));
    ASSERT((runs & 4) / 4, nrt_wino_conv2d_grad_weight(&c, x, dy, dw, scratch));
    double ey = runs & 1 ? max_err(y, ry, ny) : 0;
    double edx = runs & 2 ? max_err(dx, rdx, nx) : 0, edw = runs & 4 ? max_err(dw, rdw, nw) : 0;
    if (ey > 1e-4 || edx > 1e-4 || edw > 1e-4)
        TEST_FAIL_("winograd training n %lld ci %lld co %lld %lldx%lld (threads %d): errors y %g dx %g dw %g",
                   (long long)c.n, (long long)c.ci, (long long)c.co, (long long)c.h, (long long)c.w,
                   nrt_threads_get(), ey, edx, edw);
    else
        test_passed++;
    if (runs & 1) { /* each image alone at 1 thread: the same bits */
        int threads = nrt_threads_get(), same = 1;
        struct nrt_conv one = c;
        one.n = 1;
        int64_t xi = c.ci * c.h * c.w, yi = c.co * c.ho * c.wo;
        nrt_threads_set(1);
        for (int64_t b = 0; b < c.n; b++) {
            same &= nrt_wino_conv2d_train(&one, x + b * xi, w, bias, 1, y1 + b * yi, scratch);
            same &= !memcmp(y1 + b * yi, y + b * yi, sizeof *y * (size_t)yi);
        }
        nrt_threads_set(threads);
        if (!same)
            TEST_FAIL_("winograd training forward n %lld ci %lld co %lld %lldx%lld (threads %d): an image "
                       "alone differs",
                       (long long)c.n, (long long)c.ci, (long long)c.co, (long long)c.h, (long long)c.w,
                       threads);
        else
            test_passed++;
    }
    nrt_free(x), nrt_free(w), nrt_free(dy), nrt_free(dx), nrt_free(dw), nrt_free(y), nrt_free(y1);
    nrt_free(bias), nrt_free(scratch), nrt_free(rdx), nrt_free(rdw), nrt_free(ry);
}

/* The training forward on fields that are flat (9 equal pixels): every
 * output whose field is all zeros (a zero background, the padding) is
 * exactly relu(bias), and every output whose field is one constant pixel
 * has one value per channel wherever it lies, in both images, as the direct
 * kernels give: F(2x2, 3x3)'s transforms add and subtract a flat field's
 * pixels exactly, so its sums see only that pixel. Max pooling over such a
 * background then meets exact ties, not roundings that flip with the
 * weights' last bits. */
static void test_wino_train_flat(void) {
    struct nrt_conv c = {2, 32, 12, 13, 48, 3, 3, 12, 13, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0};
    int64_t plane = c.h * c.w, hw = c.ho * c.wo, nx = c.n * c.ci * plane, ny = c.n * c.co * hw;
    float *x = xalloc(nx), *w = xalloc(c.co * c.ci * 9), *y = xalloc(ny), *bias = xalloc(c.co),
          *scratch = xalloc(nrt_conv_scratch(&c)), *pix = xalloc(c.ci);
    fill(x, nx, 21), fill(w, c.co * c.ci * 9, 22), fill(bias, c.co, 23), fill(pix, c.ci, 24);
    /* Rows 0-4: the constant pixel; rows 7-11 zeros but for noise at (9, 5);
     * rows 5-6 stay noise. */
    for (int64_t b = 0; b < c.n; b++)
        for (int64_t ch = 0; ch < c.ci; ch++)
            for (int64_t i = 0; i < plane; i++) {
                int64_t r = i / c.w, q = (b * c.ci + ch) * plane + i;
                if (r <= 4) x[q] = pix[ch];
                if (r >= 7 && i != 9 * c.w + 5) x[q] = 0;
            }
    nrt_threads_set(2);
    int ok = nrt_wino_conv2d_train(&c, x, w, bias, 1, y, scratch), zeros = 0, flats = 0;
    nrt_threads_set(1);
    for (int64_t b = 0; b < c.n && ok; b++)
        for (int64_t o = 0; o < c.co; o++)
            for (int64_t p = 0; p < hw; p++) {
                int64_t oh = p / c.wo, ow = p % c.wo;
                float v = y[(b * c.co + o) * hw + p];
                int zero = oh >= 8, flat = oh >= 2 && oh <= 3 && ow >= 1 && ow <= c.wo - 2;
                if (zero && (oh >= 8 && oh <= 10 && ow >= 4 && ow <= 6)) zero = 0; /* the noise at (9, 5) */
                if (zero) ok &= v == (bias[o] > 0 ? bias[o] : 0.0f), zeros++;
                if (flat) ok &= v == y[o * hw + 2 * c.wo + 1], flats++;
            }
    ASSERT(1, ok && zeros > 0 && flats > 0);
    nrt_free(x), nrt_free(w), nrt_free(y), nrt_free(bias), nrt_free(scratch), nrt_free(pix);
}

/* The 4x4 stride-2 phase Winograd (wino_s2.c) called directly: the forward
 * with bias and relu and the input gradient against the double reference,
 * run where runs says (elsewhere they decline); each image alone at 1 thread
 * gives the same bits as in the batch (both directions), and through
 * nrt_conv2d_bias_act and nrt_conv2d_grad_input the same bits again. */
static void check_ws2(struct nrt_conv c, int runs) {
    c.ho = (c.h + c.p[0] + c.p[2] - 4) / 2 + 1, c.wo = (c.w + c.p[1] + c.p[3] - 4) / 2 + 1;
    int64_t nx = c.n * c.ci * c.h * c.w, nw = c.co * c.ci * 16, ny = c.n * c.co * c.ho * c.wo;
    float *x = xalloc(nx), *w = xalloc(nw), *dy = xalloc(ny), *dx = xalloc(nx), *dx1 = xalloc(nx),
          *scratch = xalloc(nrt_conv_scratch(&c)), *y = xalloc(ny), *y1 = xalloc(ny), *bias = xalloc(c.co),
          *dw = xalloc(nw), *dw1 = xalloc(nw);
    double *rdx = dalloc(nx), *ry = dalloc(ny), *rdw = dalloc(nw);
    fill(x, nx, 31), fill(w, nw, 32), fill(dy, ny, 33), fill(bias, c.co, 34);
    conv_ref(&c, x, w, dy, ry, rdx, rdw);
    for (int64_t i = 0; i < nx; i++) dx[i] = dx1[i] = 1e30f;
    for (int64_t i = 0; i < ny; i++) {
        ry[i] += bias[i / (c.ho * c.wo) % c.co];
        ry[i] = ry[i] < 0 ? 0 : ry[i];
        y[i] = y1[i] = 1e30f;
    }
    ASSERT(runs, nrt_ws2_conv2d(&c, x, w, bias, 1, y, scratch));
    ASSERT(runs, nrt_ws2_conv2d_grad_input(&c, dy, w, dx, scratch));
    for (int64_t i = 0; i < nw; i++) dw[i] = 1e30f;
    ASSERT(runs, nrt_ws2_conv2d_grad_weight(&c, x, dy, dw, scratch));
    double ey = runs ? max_err(y, ry, ny) : 0, edx = runs ? max_err(dx, rdx, nx) : 0;
    double edw = runs ? max_err(dw, rdw, nw) : 0;
    if (ey > 1e-4 || edx > 1e-4 || edw > 1e-4)
        TEST_FAIL_("ws2 n %lld ci %lld co %lld %lldx%lld (threads %d): errors y %g dx %g dw %g",
                   (long long)c.n, (long long)c.ci, (long long)c.co, (long long)c.h, (long long)c.w,
                   nrt_threads_get(), ey, edx, edw);
    else
        test_passed++;
    if (runs) {
        int threads = nrt_threads_get(), same = 1;
        struct nrt_conv one = c;
        one.n = 1;
        int64_t xi = c.ci * c.h * c.w, yi = c.co * c.ho * c.wo;
        nrt_threads_set(1);
        for (int64_t b = 0; b < c.n; b++) {
            same &= nrt_ws2_conv2d(&one, x + b * xi, w, bias, 1, y1 + b * yi, scratch);
            same &= nrt_ws2_conv2d_grad_input(&one, dy + b * yi, w, dx1 + b * xi, scratch);
        }
        same &= !memcmp(y1, y, sizeof *y * (size_t)ny) && !memcmp(dx1, dx, sizeof *dx * (size_t)nx);
        nrt_threads_set(threads);
        nrt_conv2d_bias_act(&c, x, w, bias, NRT_ACT_RELU, y1, scratch);
        nrt_conv2d_grad_input(&c, dy, w, dx1, scratch);
        nrt_conv2d_grad_weight(&c, x, dy, dw1, scratch);
        same &= !memcmp(y1, y, sizeof *y * (size_t)ny) && !memcmp(dx1, dx, sizeof *dx * (size_t)nx) &&
                !memcmp(dw1, dw, sizeof *dw * (size_t)nw);
        if (!same)
            TEST_FAIL_("ws2 n %lld ci %lld co %lld %lldx%lld (threads %d): an image alone differs",
                       (long long)c.n, (long long)c.ci, (long long)c.co, (long long)c.h, (long long)c.w,
                       threads);
        else
            test_passed++;
    }
    nrt_free(x), nrt_free(w), nrt_free(dy), nrt_free(dx), nrt_free(dx1), nrt_free(y), nrt_free(y1);
    nrt_free(bias), nrt_free(scratch), nrt_free(rdx), nrt_free(ry), nrt_free(dw), nrt_free(dw1),
        nrt_free(rdw);
}

static void test_ws2(void) {
    const int avx512 = nrt_sgemm_own_built();
    /*                       n  ci  h   w  co kh kw ho wo g  s       p             d */
    const struct nrt_conv base[] = {
        {5, 64, 14, 14, 128, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0}, /* the DCGAN's D.conv2d1 */
        {1, 128, 14, 14, 64, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0}, /* batch 1, G's transpose */
        {3, 16, 10, 6, 48, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},   /* 5x3 outputs, 3 vectors */
        {2, 32, 16, 18, 16, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},  /* 8x9: whole and partial tiles
                                                                               */
        {4, 16, 2, 2, 32, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},    /* one output pixel */
        {2, 16, 34, 30, 16, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},  /* many tiles */
    };
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        for (size_t k = 0; k < sizeof base / sizeof *base; k++) check_ws2(base[k], avx512);
        /* Not this kernel's: odd sizes, padding 0 or 2, channels not 16k. */
        check_ws2((struct nrt_conv){2, 16, 9, 9, 16, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0}, 0);
        check_ws2((struct nrt_conv){2, 16, 10, 10, 16, 4, 4, 0, 0, 1, {2, 2}, {0, 0, 0, 0}, {1, 1}, 0}, 0);
        check_ws2((struct nrt_conv){2, 16, 10, 10, 16, 4, 4, 0, 0, 1, {2, 2}, {2, 2, 2, 2}, {1, 1}, 0}, 0);
        check_ws2((struct nrt_conv){2, 24, 10, 10, 16, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0}, 0);
        check_ws2((struct nrt_conv){2, 16, 10, 10, 8, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0}, 0);
    }
    nrt_threads_set(1);
}

static void test_wino_train(void) {
    const int avx512 = nrt_sgemm_own_built(); /* the runtime built for AVX-512 */
    /*                       n  ci  h   w  co kh kw ho wo g  s       p             d */
    const struct nrt_conv base[] = {
        {5, 32, 13, 13, 64, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* mnist_cnn's second layer */
        {1, 32, 13, 13, 64, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* batch 1 */
        {3, 16, 7, 5, 48, 3, 3, 0, 0, 1, {1, 1}, {2, 2, 2, 2}, {1, 1}, 0},   /* pad 2, 3 vectors */
        {2, 64, 10, 9, 16, 3, 3, 0, 0, 1, {1, 1}, {0, 1, 2, 0}, {1, 1}, 0},  /* uneven padding */
        {3, 32, 14, 14, 32, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0}, /* vgg_bn-like, partial tiles */
        {2, 16, 34, 35, 32, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0}, /* 81 tiles per image */
        {2, 16, 2, 3, 16, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},   /* smaller than a tile */
    };
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        /* A scratch of 64 images' im2col (chunk 64): room for a task per thread. */
        for (size_t k = 0; k < sizeof base / sizeof *base; k++) {
            struct nrt_conv c = base[k];
            c.chunk = 64;
            check_wino_train(c, !avx512 ? 0 : c.n < t ? 5 : 7);
        }
        /* The default scratch (about 1 MiB) on mnist_cnn's layer at batch 64:
         * both at 1 thread. */
        if (t == 1)
            check_wino_train(
                (struct nrt_conv){64, 32, 13, 13, 64, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
                avx512 ? 7 : 0);
        /* The default scratch (nrt_conv_scratch: the memory plan's) holds
         * NRT_WINO_TASKS tasks of every direction: vgg_bn's 64->64 layer at
         * 14x14 and its 32->32 layer at 28x28 (the input gradient: not below
         * an image per thread). */
        check_wino_train((struct nrt_conv){3, 64, 14, 14, 64, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
                         avx512 ? 7 : 0);
        check_wino_train((struct nrt_conv){2, 32, 28, 28, 32, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
                         !avx512 ? 0
                         : t > 2 ? 5
                                 : 7);
        /* Channels that are not 16k: the direct kernels (input channels:
         * the forward's F(2x2, 3x3) takes any number from 16). */
        check_wino_train((struct nrt_conv){2, 24, 9, 9, 32, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
                         avx512 ? 1 : 0);
        check_wino_train((struct nrt_conv){2, 16, 9, 9, 40, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
                         0);
    }
}

static void test_conv(void) {
    /*                       n  ci  h   w  co kh kw ho wo g  s       p             d */
    const struct nrt_conv base[] = {
        {5, 1, 12, 11, 8, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* mnist_cnn's first layer */
        {7, 6, 9, 9, 10, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},  /* a second layer, odd sizes */
        {4, 1, 10, 10, 6, 5, 5, 0, 0, 1, {1, 1}, {2, 2, 2, 2}, {1, 1}, 0}, /* LeNet's padded 5x5 */
        {3, 4, 11, 8, 6, 3, 2, 0, 0, 2, {2, 3}, {1, 0, 2, 1}, {1, 2}, 0},  /* groups, stride, pad, dilation */
        {6, 3, 7, 5, 4, 1, 1, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},   /* 1x1: a GEMM per image */
        {5, 32, 9, 7, 48, 1, 1, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* 1x1, dwsep-like */
        {4, 16, 4, 4, 64, 1, 1, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* 1x1, dw partials barely fit */
        {3, 8, 6, 6, 16, 1, 1, 0, 0, 1, {2, 2}, {0, 0, 0, 0}, {1, 1}, 0},  /* 1x1 strided: not pointwise */
        {3, 8, 5, 5, 16, 1, 1, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},  /* 1x1 padded: not pointwise */
        {2, 64, 3, 3, 96, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0}, /* tiny image, big weight */
        /* The direct (AVX-512) kernels: 16k channels, >= 64 taps. */
        {5, 32, 13, 13, 64, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* mnist_cnn's second layer */
        {3, 16, 9, 8, 32, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},   /* padded */
        {3, 32, 10, 11, 16, 3, 3, 0, 0, 1, {2, 2}, {1, 0, 1, 2}, {1, 1}, 0}, /* strided: dx by sub-pixels */
        {3, 16, 14, 14, 32, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0}, /* DCGAN-like 4x4/s2 */
        {2, 16, 13, 11, 48, 5, 4, 0, 0, 1, {3, 2}, {2, 1, 0, 2}, {1, 1}, 0}, /* stride 3x2, odd sizes */
        {2, 32, 9, 9, 64, 1, 3, 0, 0, 1, {2, 2}, {0, 1, 0, 1}, {1, 1}, 0},   /* classes with no tap */
        /* dx by sub-pixels: rows past 16 pixels (two gathers, a tail), a
         * class reading below the shared plane's top (pad 3 at stride 3),
         * one tap per class (stride 4). */
        {2, 16, 20, 37, 32, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
        {2, 16, 11, 13, 16, 5, 5, 0, 0, 1, {3, 3}, {3, 2, 3, 4}, {1, 1}, 0},
        {3, 32, 9, 10, 64, 4, 4, 0, 0, 1, {4, 4}, {0, 0, 0, 0}, {1, 1}, 0},
        {2, 16, 12, 12, 48, 3, 3, 0, 0, 1, {1, 1}, {2, 1, 0, 2}, {2, 2}, 0}, /* dilated, 3 vectors */
        {2, 16, 7, 6, 16, 5, 5, 0, 0, 1, {1, 1}, {3, 3, 0, 1}, {1, 1}, 0},   /* pad beyond the window */
        /* The wide-row weight gradient's spread of dy: rows past 16 floats,
         * a zero tail over two vectors, and one longer than a vector. */
        {2, 1, 9, 37, 8, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        {2, 1, 8, 32, 6, 3, 4, 0, 0, 1, {1, 1}, {0, 0, 0, 1}, {1, 1}, 0},
        {2, 1, 6, 8, 4, 3, 19, 0, 0, 1, {1, 1}, {0, 9, 0, 9}, {1, 1}, 0},
        /* dx by scatter (input larger than the output): 3, 2+1 and 4 vectors
         * of input channels, odd sizes, uneven padding, dilation. */
        {3, 48, 9, 10, 16, 3, 3, 0, 0, 1, {1, 1}, {0, 1, 0, 0}, {1, 1}, 0},
        {2, 64, 11, 7, 32, 2, 3, 0, 0, 1, {1, 1}, {0, 0, 1, 0}, {1, 2}, 0},
        {3, 16, 12, 9, 24, 4, 2, 0, 0, 1, {1, 1}, {1, 0, 0, 0}, {1, 1}, 0},
        /* Depthwise (one input channel per group): its own kernels, whole-plane
         * loops at stride 1, row by row otherwise. */
        {4, 8, 9, 10, 8, 3, 3, 0, 0, 8, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},  /* 3x3, padded */
        {3, 6, 11, 9, 12, 3, 3, 0, 0, 6, {2, 2}, {1, 0, 1, 1}, {1, 1}, 0}, /* 2 outputs per channel, strided
                                                                            */
        {2, 5, 12, 13, 5, 5, 3, 0, 0, 5, {1, 2}, {2, 1, 3, 0}, {2, 1}, 0}, /* dilated, uneven pad */
        {3, 16, 14, 14, 16, 3, 3, 0, 0, 16, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* unpadded */
        {2, 4, 10, 9, 8, 3, 3, 0, 0, 4, {1, 1}, {2, 1, 0, 2}, {2, 1}, 0}, /* stride 1, dilated, 2 per channel
                                                                           */
        /* 3x3 same-padded, one output per channel: register-blocked rows of
         * 16 (28: two blocks, 14 and 7: one, 33: three, 1: one lane). */
        {3, 8, 28, 28, 8, 3, 3, 0, 0, 8, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        {4, 6, 14, 14, 6, 3, 3, 0, 0, 6, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        {2, 5, 7, 33, 5, 3, 3, 0, 0, 5, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        {3, 4, 5, 1, 4, 3, 3, 0, 0, 4, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        {2, 3, 1, 16, 3, 3, 3, 0, 0, 3, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        /* The wide-row forward (few taps): 8 channels per tile (32, 16) or 6
         * (12, 20: a partial tile), odd sizes, padding; Cin 1 and 3. */
        {3, 1, 28, 28, 32, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0}, /* mnist_cnn's first layer */
        {2, 1, 13, 17, 16, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0}, /* padded, odd */
        {2, 3, 11, 9, 20, 3, 3, 0, 0, 1, {1, 1}, {1, 0, 2, 1}, {1, 1}, 0},  /* Cin 3, uneven pad */
        {3, 3, 15, 7, 12, 3, 2, 0, 0, 1, {1, 1}, {0, 1, 0, 1}, {1, 1}, 0},  /* 3x2 window */
        {2, 1, 9, 30, 24, 5, 5, 0, 0, 1, {1, 1}, {2, 2, 2, 2}, {1, 1}, 0},  /* wide rows, 5x5 */
        {2, 3, 12, 12, 32, 3, 3, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0}, /* Cin 3 strided: im2col */
        {2, 32, 7, 9, 40, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},  /* packed weights tile by tile */
        /* The column forward (few taps, 8k channels): Cin 3, dilated, uneven pad. */
        {2, 3, 10, 11, 16, 3, 3, 0, 0, 1, {1, 1}, {1, 2, 0, 1}, {2, 1}, 0},
        /* The columns' weight gradient with whole vectors only (8x8 outputs: no tail). */
        {2, 1, 8, 8, 16, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        /* Winograd F(4x4, 3x3) (bias+act with NRT_CONV_WINOGRAD): partial
         * tiles both ways, 5 vectors of output channels (4 + 1), padding; one
         * whole tile per image (groups of several images). */
        {3, 32, 18, 17, 80, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        {4, 16, 6, 6, 16, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
        {2, 48, 11, 9, 32, 3, 3, 0, 0, 1, {1, 1}, {2, 0, 1, 1}, {1, 1}, 0},
        /* Training's F(4x4, 3x3) (forward with bias+act, input gradient as a
         * correlation padded by 2 - p, weight gradient transposed): 3
         * vectors of output channels (2 + 1 in the weight gradient's GEMM),
         * pad 2 (the input gradient unpadded), uneven padding with 4 vectors
         * of input channels, and 81 tiles per image (groups of one image). */
        {3, 16, 7, 5, 48, 3, 3, 0, 0, 1, {1, 1}, {2, 2, 2, 2}, {1, 1}, 0},
        {2, 64, 10, 9, 16, 3, 3, 0, 0, 1, {1, 1}, {0, 1, 2, 0}, {1, 1}, 0},
        {2, 16, 34, 35, 32, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
        /* Strided layers with few taps: forward and weight gradient by phase
         * images (space-to-depth) on the wide-row kernels, the input gradient
         * by tap sums and col2im. The DCGAN's first layer (Cin 1, 4x4/s2),
         * odd sizes, Cin 3 with uneven padding and 6-channel tiles, stride
         * 3x2, a 5x4 window (zero taps in the phase window, 20 taps: a
         * partial tap tile). */
        {3, 1, 14, 14, 64, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
        {2, 1, 13, 11, 8, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
        {2, 3, 12, 9, 12, 4, 4, 0, 0, 1, {2, 2}, {1, 0, 2, 1}, {1, 1}, 0},
        {2, 2, 11, 13, 10, 6, 4, 0, 0, 1, {3, 2}, {2, 1, 0, 2}, {1, 1}, 0},
        {2, 1, 9, 10, 16, 5, 4, 0, 0, 1, {2, 2}, {2, 1, 1, 1}, {1, 1}, 0},
        /* The phase images by columns (8k output channels): the DCGAN's
         * 28x28 (196 pixels: a last tile of 1 vector), and 7x11 outputs (77
         * pixels: a last tile of 2 vectors). */
        {2, 1, 28, 28, 64, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
        {2, 1, 14, 22, 16, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
        /* The strided forward in image groups: the DCGAN's 4x4/s2 64 -> 128
         * (the 4x4 window unrolled, 4 vectors), 5 images: groups of 4 + 1 on
         * one thread, 3 + 2 on two. */
        {5, 64, 14, 14, 128, 4, 4, 0, 0, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
        /* The pooled first layer (Cin 1, 3x3, 16k channels): odd output sizes
         * (a row and column the pooling drops), 3 vectors (2 + 1), a wide row. */
        {3, 1, 15, 12, 32, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
        {2, 1, 9, 11, 48, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
        {2, 1, 5, 41, 16, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
    };
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        for (size_t k = 0; k < sizeof base / sizeof *base; k++)
            for (int64_t chunk = 0; chunk <= base[k].n + 1; chunk++) {
                struct nrt_conv c = base[k];
                c.chunk = chunk; /* 0: the default */
                check_conv(c, "case");
            }
        /* A batch of one: the GEMMs split instead; the direct forward kernels
         * split each image's pixels (channels, by wide rows) over the threads. */
        for (size_t k = 0; k < sizeof base / sizeof *base; k++) {
            struct nrt_conv one = base[k];
            one.n = 1;
            check_conv(one, "batch 1");
        }
    }
}

/* ------------------------------------------------------------ plane sums -- */

/* nrt_sum_planes (a conv's bias gradient) against a double reference (within
 * float rounding of the exact sum), the same bits at 1-3 threads: planes of
 * 1, 15, 16, 17, 49 and 196 pixels, 1 to 200 channels, 1 and 5 images, and
 * one large enough (3.15M floats) for a task per thread at 2 and 3. */
static void test_sum_planes(void) {
    static const int64_t shapes[][3] = {{5, 64, 196}, {5, 128, 49}, {1, 1, 784},  {5, 130, 17},  {1, 3, 16},
                                        {5, 7, 15},   {5, 70, 1},   {2, 200, 33}, {9, 100, 3500}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++) {
        int64_t n = shapes[s][0], c = shapes[s][1], hw = shapes[s][2];
        float *x = xalloc(n * c * hw), *y = xalloc(c), *y1 = xalloc(c);
        double *part = dalloc(n * c);
        fill(x, n * c * hw, 41 + (uint32_t)s);
        int ok = 1;
        for (int t = 1; t <= 3; t++) {
            nrt_threads_set(t);
            for (int64_t k = 0; k < c; k++) y[k] = 1e30f;
            nrt_sum_planes(n, c, hw, x, t == 1 ? y1 : y, part);
            for (int64_t ch = 0; ch < c && t == 1; ch++) {
                double r = 0;
                for (int64_t b = 0; b < n; b++)
                    for (int64_t k = 0; k < hw; k++) r += x[(b * c + ch) * hw + k];
                ok &= fabs(y1[ch] - r) <= 1e-6 * (fabs(r) + 1e-3);
            }
            if (t > 1) ok &= !memcmp(y, y1, sizeof *y * (size_t)c);
        }
        if (!ok)
            TEST_FAIL_("sum_planes n %lld c %lld hw %lld: wrong, or differs between thread counts",
                       (long long)n, (long long)c, (long long)hw);
        else
            test_passed++;
        nrt_free(x), nrt_free(y), nrt_free(y1), nrt_free(part);
    }
    nrt_threads_set(1);
}

/* ---------------------------------------------------------------- pooling -- */

static void check_pool(struct nrt_pool p, int avg) {
    p.ho = (p.h + p.p[0] + p.p[2] - p.k[0]) / p.s[0] + 1;
    p.wo = (p.w + p.p[1] + p.p[3] - p.k[1]) / p.s[1] + 1;
    int64_t nx = p.planes * p.h * p.w, ny = p.planes * p.ho * p.wo;
    float *x = xalloc(nx), *dy = xalloc(ny), *y = xalloc(ny), *dx = xalloc(nx);
    double *ry = dalloc(ny), *rdx = dalloc(nx);
    fill(x, nx, 7), fill(dy, ny, 8);
    /* Odd planes as after a relu: zeros and equal values, so windows tie and
     * the first maximum must win. */
    for (int64_t i = 0; i < nx; i++)
        if (i / (p.h * p.w) % 2) x[i] = x[i] > 0 ? floorf(x[i] * 2) / 2 : 0.0f;
    memset(rdx, 0, sizeof *rdx * (size_t)nx);
    for (int64_t pl = 0; pl < p.planes; pl++)
        for (int64_t oh = 0; oh < p.ho; oh++)
            for (int64_t ow = 0; ow < p.wo; ow++) {
                int64_t yi = (pl * p.ho + oh) * p.wo + ow, best = -1;
                double s = 0;
                for (int64_t i = 0; i < p.k[0]; i++)
                    for (int64_t j = 0; j < p.k[1]; j++) {
                        int64_t ih = oh * p.s[0] - p.p[0] + i, iw = ow * p.s[1] - p.p[1] + j;
                        if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
                        int64_t at = (pl * p.h + ih) * p.w + iw;
                        s += x[at];
                        if (best < 0 || x[at] > x[best]) best = at;
                    }
                if (avg) {
                    double inv = 1.0 / (double)(p.k[0] * p.k[1]);
                    ry[yi] = s * inv;
                    for (int64_t i = 0; i < p.k[0]; i++)
                        for (int64_t j = 0; j < p.k[1]; j++) {
                            int64_t ih = oh * p.s[0] - p.p[0] + i, iw = ow * p.s[1] - p.p[1] + j;
                            if (ih >= 0 && ih < p.h && iw >= 0 && iw < p.w)
                                rdx[(pl * p.h + ih) * p.w + iw] += dy[yi] * inv;
                        }
                } else {
                    ry[yi] = best < 0 ? 0 : x[best];
                    if (best >= 0) rdx[best] += dy[yi];
                }
            }
    for (int64_t i = 0; i < nx; i++) dx[i] = 1e30f;
    if (avg) {
        nrt_avgpool2d(&p, x, y);
        nrt_avgpool2d_grad(&p, dy, dx);
    } else {
        nrt_maxpool2d(&p, x, y);
        nrt_maxpool2d_grad(&p, x, dy, dx);
    }
    double ey = max_err(y, ry, ny), edx = max_err(dx, rdx, nx);
    if (ey > 1e-5 || edx > 1e-5)
        TEST_FAIL_("%s pool %lldx%lld k %lldx%lld s %lldx%lld (threads %d): errors y %g dx %g",
                   avg ? "avg" : "max", (long long)p.h, (long long)p.w, (long long)p.k[0], (long long)p.k[1],
                   (long long)p.s[0], (long long)p.s[1], nrt_threads_get(), ey, edx);
    else
        test_passed++;
    nrt_free(x), nrt_free(dy), nrt_free(y), nrt_free(dx), nrt_free(ry), nrt_free(rdx);
}

static void test_pool(void) {
    static const int64_t hw[][2] = {{26, 26}, {11, 11}, {11, 10}, {10, 11}, {2, 2},
                                    {3, 3},   {1, 7},   {64, 63}, {5, 9},   {9, 5}};
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        for (size_t i = 0; i < sizeof hw / sizeof *hw; i++)
            for (int avg = 0; avg < 2; avg++) {
                if (hw[i][0] < 2 || hw[i][1] < 2) continue;
                /* 2x2/s2 (the fast paths), with many planes so they split. */
                check_pool((struct nrt_pool){300, hw[i][0], hw[i][1], 0, 0, {2, 2}, {2, 2}, {0, 0, 0, 0}},
                           avg);
                /* Overlapping 3x3/s2 windows and padded ones. */
                check_pool(
                    (struct nrt_pool){5, hw[i][0] + 1, hw[i][1] + 2, 0, 0, {3, 3}, {2, 2}, {0, 0, 0, 0}},
                    avg);
                check_pool((struct nrt_pool){7, hw[i][0], hw[i][1], 0, 0, {2, 3}, {2, 1}, {1, 1, 1, 0}}, avg);
            }
    }
}

/* ------------------------------------- conv weight gradient through a pool -- */

/* nrt_conv2d_grad_weight_maxpool against the dense pooling gradient (each dp
 * at its window's first maximum, in double) correlated with x. y is relu-like
 * (zeros, so windows tie) when relu, dp has zeros. k, s, pd: the pooling. */
static void check_gw_pool(struct nrt_conv c, int64_t k, int64_t s, int64_t pd, int relu) {
    c.ho = (c.h + c.p[0] + c.p[2] - c.d[0] * (c.kh - 1) - 1) / c.s[0] + 1;
    c.wo = (c.w + c.p[1] + c.p[3] - c.d[1] * (c.kw - 1) - 1) / c.s[1] + 1;
    struct nrt_pool p = {c.n * c.co, c.ho, c.wo, 0, 0, {k, k}, {s, s}, {pd, pd, pd, pd}};
    p.ho = (p.h + 2 * pd - k) / s + 1, p.wo = (p.w + 2 * pd - k) / s + 1;
    int64_t nx = c.n * c.ci * c.h * c.w, nw = c.co * (c.ci / c.g) * c.kh * c.kw,
            ny = c.n * c.co * c.ho * c.wo, np = p.planes * p.ho * p.wo;
    float *x = xalloc(nx), *y = xalloc(ny), *dp = xalloc(np), *dw = xalloc(nw);
    double *dense = dalloc(ny), *rdw = dalloc(nw);
    fill(x, nx, 21), fill(y, ny, 22), fill(dp, np, 23);
    for (int64_t i = 0; relu && i < ny; i++) y[i] = y[i] < 0 ? 0 : y[i];
    for (int64_t i = 0; i < np; i += 3) dp[i] = 0;
    memset(dense, 0, sizeof *dense * (size_t)ny), memset(rdw, 0, sizeof *rdw * (size_t)nw);
    for (int64_t pl = 0; pl < p.planes; pl++)
        for (int64_t oh = 0; oh < p.ho; oh++)
            for (int64_t ow = 0; ow < p.wo; ow++) {
                int64_t best = -1;
                for (int64_t i = 0; i < k; i++)
                    for (int64_t j = 0; j < k; j++) {
                        int64_t ih = oh * s - pd + i, iw = ow * s - pd + j;
                        if (ih < 0 || ih >= p.h || iw < 0 || iw >= p.w) continue;
                        int64_t at = (pl * p.h + ih) * p.w + iw;
                        if (best < 0 || y[at] > y[best]) best = at;
                    }
                if (best >= 0) dense[best] += dp[(pl * p.ho + oh) * p.wo + ow];
            }
    FOR_TAPS(&c, { rdw[wi] += ref_x(&c, x, b, ch, ih, iw) * dense[yi]; });
    for (int64_t i = 0; i < nw; i++) dw[i] = 1e30f;
    nrt_conv2d_grad_weight_maxpool(&c, &p, x, y, dp, dw);
    double e = max_err(dw, rdw, nw);
    if (e > 1e-4)
        TEST_FAIL_("conv weight gradient through %lldx%lld/s%lld pad %lld pooling (ci %lld co %lld %lldx%lld "
                   "k%lld s%lld pad %lld g %lld, threads %d): error %g",
                   (long long)k, (long long)k, (long long)s, (long long)pd, (long long)c.ci, (long long)c.co,
                   (long long)c.h, (long long)c.w, (long long)c.kh, (long long)c.s[0], (long long)c.p[0],
                   (long long)c.g, nrt_threads_get(), e);
    else
        test_passed++;
    nrt_free(x), nrt_free(y), nrt_free(dp), nrt_free(dw), nrt_free(dense), nrt_free(rdw);
}

static void test_gw_pool(void) {
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        for (int relu = 0; relu < 2; relu++) {
            /* The AVX-512 path: 3x3 stride 1, 2x2 pooling; mnist_cnn's first
             * layer, several input channels, odd sizes, rows of more than 16
             * pooled outputs, padding. */
            check_gw_pool((struct nrt_conv){4, 1, 28, 28, 32, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
                          2, 2, 0, relu);
            check_gw_pool((struct nrt_conv){3, 3, 11, 12, 5, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
                          2, 2, 0, relu);
            check_gw_pool((struct nrt_conv){2, 2, 9, 40, 7, 3, 3, 0, 0, 1, {1, 1}, {1, 1, 1, 1}, {1, 1}, 0},
                          2, 2, 0, relu);
            check_gw_pool((struct nrt_conv){2, 4, 7, 37, 3, 3, 3, 0, 0, 1, {1, 1}, {0, 2, 1, 0}, {1, 1}, 0},
                          2, 2, 0, relu);
            /* The generic loop: more channels, other kernels, strides,
             * dilation and groups, overlapping and padded windows. */
            check_gw_pool((struct nrt_conv){2, 6, 10, 10, 4, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0},
                          2, 2, 0, relu);
            check_gw_pool((struct nrt_conv){2, 2, 12, 11, 3, 5, 5, 0, 0, 1, {1, 1}, {2, 2, 2, 2}, {1, 1}, 0},
                          2, 2, 0, relu);
            check_gw_pool((struct nrt_conv){2, 4, 13, 13, 6, 3, 3, 0, 0, 2, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0},
                          3, 2, 1, relu);
            check_gw_pool((struct nrt_conv){2, 1, 12, 12, 3, 3, 3, 0, 0, 1, {1, 1}, {0, 0, 0, 0}, {2, 2}, 0},
                          3, 3, 0, relu);
        }
    }
}

/* ------------------------------------------------ batch norm's gradient -- */

static void check_bn_grad(int64_t n, int64_t c, int64_t hw) {
    int64_t nx = n * c * hw;
    float *x = xalloc(nx), *dy = xalloc(nx), *dx = xalloc(nx), *sums = xalloc(2 * c);
    float *gamma = xalloc(c), *mean = xalloc(c), *var = xalloc(c);
    double *rs = dalloc(2 * c), *rdx = dalloc(nx);
    fill(x, nx, 9), fill(dy, nx, 10), fill(gamma, c, 11), fill(mean, c, 12), fill(var, c, 13);
    for (int64_t k = 0; k < c; k++) var[k] = var[k] * var[k] + 0.5f;
    memset(rs, 0, sizeof *rs * (size_t)(2 * c));
    for (int64_t i = 0; i < nx; i++) {
        int64_t k = i / hw % c;
        rs[k] += dy[i], rs[c + k] += (double)dy[i] * ((double)x[i] - mean[k]);
    }
    const double eps = 1e-5, count = (double)(n * hw);
    for (int64_t i = 0; i < nx; i++) {
        int64_t k = i / hw % c;
        double r = 1 / sqrt((double)var[k] + eps);
        rdx[i] =
            gamma[k] * r * (dy[i] - rs[k] / count - ((double)x[i] - mean[k]) * r * r * rs[c + k] / count);
    }
    for (int64_t i = 0; i < nx; i++) dx[i] = 1e30f;
    for (int64_t k = 0; k < 2 * c; k++) sums[k] = 1e30f;
    nrt_batchnorm_grad_sums(n, c, hw, x, dy, mean, sums);
    double es = max_err(sums, rs, 2 * c);
    /* dx from the exact sums, so that its error is its own */
    for (int64_t k = 0; k < 2 * c; k++) sums[k] = (float)rs[k];
    nrt_batchnorm_grad(n, c, hw, eps, x, dy, gamma, mean, var, sums, dx);
    double edx = max_err(dx, rdx, nx);
    if (es > 1e-5 || edx > 1e-5)
        TEST_FAIL_("batchnorm grad n %lld c %lld hw %lld (threads %d): errors sums %g dx %g", (long long)n,
                   (long long)c, (long long)hw, nrt_threads_get(), es, edx);
    else
        test_passed++;
    nrt_free(x), nrt_free(dy), nrt_free(dx), nrt_free(sums), nrt_free(gamma), nrt_free(mean), nrt_free(var);
    nrt_free(rs), nrt_free(rdx);
}

static void test_bn_grad(void) {
    static const int64_t geo[][3] = {{5, 7, 1},     {3, 4, 2},   {4, 3, 31},  {3, 5, 37},
                                     {2, 6, 784},   {9, 3, 49},  {1, 17, 16}, {6, 2, 200},
                                     {3, 1000, 17}, {2, 2100, 3}}; /* partials for fewer threads; none */
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        for (size_t i = 0; i < sizeof geo / sizeof *geo; i++) check_bn_grad(geo[i][0], geo[i][1], geo[i][2]);
    }
}

/* ------------------------------------- batch norm's forward statistics -- */

/* nrt_batchnorm_stats against two passes in double, on planes offset by
 * `offset` (a large mean: the variance must not cancel): within float32's
 * rounding of the exact values. */
static void check_bn_stats(int64_t n, int64_t c, int64_t hw, float offset) {
    int64_t nx = n * c * hw;
    float *x = xalloc(nx), *mean = xalloc(c), *var = xalloc(c);
    double *rm = dalloc(c), *rv = dalloc(c);
    fill(x, nx, 14);
    for (int64_t i = 0; i < nx; i++) x[i] += offset + 0.25f * (float)(i / hw % c);
    memset(rm, 0, sizeof *rm * (size_t)c), memset(rv, 0, sizeof *rv * (size_t)c);
    for (int64_t i = 0; i < nx; i++) rm[i / hw % c] += x[i];
    for (int64_t k = 0; k < c; k++) rm[k] /= (double)(n * hw);
    for (int64_t i = 0; i < nx; i++)
        rv[i / hw % c] += ((double)x[i] - rm[i / hw % c]) * ((double)x[i] - rm[i / hw % c]);
    for (int64_t k = 0; k < c; k++) rv[k] /= (double)(n * hw);
    for (int64_t k = 0; k < c; k++) mean[k] = var[k] = 1e30f;
    nrt_batchnorm_stats(n, c, hw, x, mean, var);
    double em = 0, ev = 0;
    for (int64_t k = 0; k < c; k++) {
        em = fmax(em, fabs(mean[k] - rm[k]) / fmax(1e-6, fabs(rm[k])));
        ev = fmax(ev, fabs(var[k] - rv[k]) / rv[k]);
    }
    if (em > 1.2e-7 || ev > 1.2e-7)
        TEST_FAIL_("batchnorm stats n %lld c %lld hw %lld offset %g (threads %d): errors mean %g var %g",
                   (long long)n, (long long)c, (long long)hw, offset, nrt_threads_get(), em, ev);
    else
        test_passed++;
    nrt_free(x), nrt_free(mean), nrt_free(var), nrt_free(rm), nrt_free(rv);
}

static void test_bn_stats(void) {
    static const int64_t geo[][3] = {{5, 7, 1},    {3, 4, 2},     {4, 3, 31},  {3, 5, 37},
                                     {2, 6, 784},  {9, 3, 49},    {1, 17, 16}, {6, 2, 200},
                                     {64, 8, 196}, {3, 1000, 17}, {2, 2100, 3}}; /* partials for fewer
                                                                                    threads; none */
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        for (size_t i = 0; i < sizeof geo / sizeof *geo; i++) {
            check_bn_stats(geo[i][0], geo[i][1], geo[i][2], 0.0f);
            check_bn_stats(geo[i][0], geo[i][1], geo[i][2], 1000.0f);
        }
    }
}

/* ---------------------------------------------------- batch 1, same bits -- */

/* A batch-1 inference run goes split over the pool or serially, whichever
 * measures faster (runtime/program.c pace_way), so its kernels must give the
 * same bits at any thread count: one-row SGEMMs (gemv.c: columns split, the
 * sum in halves) at 1-3 threads, with zeros (skipped rows), alpha and beta;
 * convolutions (below). */
static void check_gemv_bits(int tb, int64_t n, int64_t k, float alpha, float beta, int zeros) {
    int64_t ldb = (tb ? k : n) + 1;
    float *a = xalloc(k), *b = xalloc((tb ? n : k) * ldb), *c0 = xalloc(n), *c = xalloc(n);
    fill(a, k, 11), fill(b, (tb ? n : k) * ldb, 12), fill(c0, n, 13);
    for (int64_t i = 0; zeros && i < k; i++)
        if (i % 5 != 2 && (i / 30) % 3 != 1) a[i] = 0.0f;
    float *ref = xalloc(n);
    for (int threads = 1; threads <= 3; threads++) {
        nrt_threads_set(threads);
        float *dst = threads == 1 ? ref : c;
        memcpy(dst, c0, sizeof *c * (size_t)n);
        nrt_sgemm(0, tb, 1, n, k, alpha, a, k, b, ldb, beta, dst, n);
        if (threads > 1 && memcmp(c, ref, sizeof *c * (size_t)n))
            TEST_FAIL_("gemv tb=%d 1x%lldx%lld: %d threads differ from 1", tb, (long long)n, (long long)k,
                       threads);
        else
            test_passed++;
    }
    nrt_free(a), nrt_free(b), nrt_free(c0), nrt_free(c), nrt_free(ref);
}

/* A job that holds the pool until *release is set (from another thread). */
struct hold {
    _Atomic int started, release;
};

static void hold_chunk(void *arg, int64_t lo, int64_t hi) {
    struct hold *h = arg;
    (void)hi;
    if (lo == 0) atomic_store(&h->started, 1);
    while (!atomic_load(&h->release)) sched_yield();
}

static void *hold_main(void *arg) {
    nrt_parallel_for(2, 1, hold_chunk, arg);
    return NULL;
}

/* conv + bias + relu (+ 2x2 max pooling) of one image at 1 thread, at 2 and 3,
 * and at 2 while another thread holds the pool (the kernel's tasks then run
 * in turn on the calling thread: winograd.c's later tasks reuse the first
 * one's transformed image): the same bits each time. */
static void check_conv1_bits(int64_t ci, int64_t h, int64_t co, int pool) {
    struct nrt_conv c = {1, ci, h, h, co, 3, 3, h - 2, h - 2, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    int64_t ny = pool ? co * (c.ho / 2) * (c.wo / 2) : co * c.ho * c.wo;
    float *x = xalloc(ci * h * h), *w = xalloc(co * ci * 9), *b = xalloc(co), *ref = xalloc(ny),
          *y = xalloc(ny), *scratch = xalloc(nrt_conv_pool_scratch(&c));
    fill(x, ci * h * h, 21), fill(w, co * ci * 9, 22), fill(b, co, 23);
    for (int way = 0; way < 4; way++) {
        nrt_threads_set(way == 0 ? 1 : way == 2 ? 3 : 2);
        float *dst = way ? y : ref;
        for (int64_t i = 0; i < ny; i++) dst[i] = 1e30f;
        struct hold hd = {0, 0};
        pthread_t tid;
        if (way == 3) { /* the pool busy with another thread's job */
            if (pthread_create(&tid, NULL, hold_main, &hd)) break;
            while (!atomic_load(&hd.started)) sched_yield();
        }
        if (pool)
            nrt_conv2d_bias_act_pool(&c, x, w, b, NRT_ACT_RELU | NRT_CONV_WINOGRAD, dst, scratch);
        else
            nrt_conv2d_bias_act(&c, x, w, b, NRT_ACT_RELU | NRT_CONV_WINOGRAD, dst, scratch);
        if (way == 3) {
            atomic_store(&hd.release, 1);
            pthread_join(tid, NULL);
        }
        if (way && memcmp(y, ref, sizeof *y * (size_t)ny))
            TEST_FAIL_("conv %lld->%lld %lldx%lld pool %d at batch 1: way %d differs from 1 thread",
                       (long long)ci, (long long)co, (long long)h, (long long)h, pool, way);
        else
            test_passed++;
    }
    nrt_free(x), nrt_free(w), nrt_free(b), nrt_free(ref), nrt_free(y), nrt_free(scratch);
}

/* A first layer at stride 2 (the DCGAN's D.conv2d0: Cin 1, 4x4/s2, phase
 * images by columns; its input gradient by tap sums): each image's forward
 * (bias and relu, bias and leaky relu) and input gradient are the same bits
 * alone at 1 thread as in a batch of 5 at 1-3 threads, and an all-zero image
 * gives exactly relu(bias) and leaky_relu(bias). */
static void check_first_s2_bits(int64_t h, int64_t w, int64_t co) {
    struct nrt_conv c = {5, 1, h, w, co, 4, 4, h / 2, w / 2, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0};
    int64_t xi = h * w, yi = co * c.ho * c.wo;
    float *x = xalloc(c.n * xi), *wt = xalloc(co * 16), *b = xalloc(co), *dy = xalloc(c.n * yi);
    float *y = xalloc(c.n * yi), *dx = xalloc(c.n * xi), *y1 = xalloc(yi), *dx1 = xalloc(xi);
    float *yl = xalloc(c.n * yi), *yl1 = xalloc(yi);
    float *scratch = xalloc(nrt_conv_scratch(&c));
    fill(x, c.n * xi, 31), fill(wt, co * 16, 32), fill(b, co, 33), fill(dy, c.n * yi, 34);
    memset(x + 2 * xi, 0, sizeof *x * (size_t)xi); /* image 2: all zeros */
    struct nrt_conv one = c;
    one.n = 1;
    for (int t = 1; t <= 3; t++) {
        nrt_threads_set(t);
        nrt_conv2d_bias_act(&c, x, wt, b, NRT_ACT_RELU, y, scratch);
        nrt_conv2d_bias_leaky(&c, x, wt, b, 0.2f, 0, yl, scratch);
        nrt_conv2d_grad_input(&c, dy, wt, dx, scratch);
        nrt_threads_set(1);
        int same = 1;
        for (int64_t i = 0; i < c.n; i++) {
            nrt_conv2d_bias_act(&one, x + i * xi, wt, b, NRT_ACT_RELU, y1, scratch);
            nrt_conv2d_grad_input(&one, dy + i * yi, wt, dx1, scratch);
            nrt_conv2d_bias_leaky(&one, x + i * xi, wt, b, 0.2f, 0, yl1, scratch);
            same &= !memcmp(y1, y + i * yi, sizeof *y * (size_t)yi);
            same &= !memcmp(yl1, yl + i * yi, sizeof *y * (size_t)yi);
            same &= !memcmp(dx1, dx + i * xi, sizeof *dx * (size_t)xi);
        }
        for (int64_t k = 0; k < yi; k++) {
            float bk = b[k / (yi / co)];
            same &= y[2 * yi + k] == (bk > 0 ? bk : 0.0f) && yl[2 * yi + k] == (bk > 0 ? bk : 0.2f * bk);
        }
        if (!same)
            TEST_FAIL_(
                "first layer %lldx%lld -> %lld at stride 2 (threads %d): an image alone differs, or a zero "
                "image is not relu(bias) or leaky_relu(bias)",
                (long long)h, (long long)w, (long long)co, t);
        else
            test_passed++;
    }
    nrt_free(x), nrt_free(wt), nrt_free(b), nrt_free(dy), nrt_free(y), nrt_free(dx), nrt_free(y1);
    nrt_free(dx1), nrt_free(scratch), nrt_free(yl), nrt_free(yl1);
}

static void test_batch1_bits(void) {
    /* mnist_cnn's layers (the first one's own kernel, then F(4x4, 3x3)), an
     * unpooled one whose outputs fit over the planes, channels not split evenly. */
    check_conv1_bits(1, 28, 32, 1);
    check_conv1_bits(32, 13, 64, 1);
    check_conv1_bits(32, 13, 64, 0);
    check_conv1_bits(64, 10, 32, 0);
    check_conv1_bits(48, 9, 48, 1);
    check_first_s2_bits(28, 28, 64);
    check_first_s2_bits(14, 22, 16);
    static const int64_t sizes[][2] = {{128, 1600}, {10, 128},   {300, 4000},
                                       {130, 2100}, {1500, 700}, {64, 513}};
    for (size_t s = 0; s < sizeof sizes / sizeof *sizes; s++)
        for (int t = 0; t < 4; t++)
            check_gemv_bits(t & 1, sizes[s][0], sizes[s][1], t == 3 ? 0.5f : 1.0f, t == 2 ? 0.25f : 0.0f,
                            s % 2);
    nrt_threads_set(1);
}

int main(void) {
    printf("GEMM library: %s\n", nrt_gemm_library());
    test_bn_grad();
    test_sgemm_own();
    test_bn_stats();
    test_sgemm();
    nrt_threads_set(2);
    test_sgemm();
    nrt_threads_set(3);
    test_sgemm();
    test_wino_train();
    if (nrt_sgemm_own_built()) test_wino_train_flat();
    test_ws2();
    nrt_threads_set(2);
    test_conv();
    test_pool();
    test_gw_pool();
    test_batch1_bits();
    test_sum_planes();
    nrt_threads_set(1);
    TEST_DONE();
}
