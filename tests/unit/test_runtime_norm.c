/* tests/unit/test_runtime_norm.c -- runtime/norm.c (nrt_layernorm,
 * nrt_layernorm_grad with and without gamma, float sums over 16 lanes, and
 * nrt_layernorm_grad_sums) against the formulas in double, at row widths below,
 * at and between multiples of the 16 lanes, on rows with a large mean
 * (cancellation: looser, float32's own rounding of the inputs), at 1, 2 and 3 threads. */
#include "runtime/netrt.h"
#include "test.h"

/* A deterministic fill in [offset - 1, offset + 1). */
static void fill(float *v, int64_t n, uint32_t seed, float offset) {
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = offset + (float)((s >> 8) % 65536) / 32768.0f - 1.0f;
    }
}

static void check_norm(int64_t rows, int64_t d, double eps, float offset) {
    float *x = nrt_alloc((size_t)(rows * d) * 4, 0), *g = nrt_alloc((size_t)(rows * d) * 4, 0);
    float *y = nrt_alloc((size_t)(rows * d) * 4, 0), *dx = nrt_alloc((size_t)(rows * d) * 4, 0);
    float *dxg = nrt_alloc((size_t)(rows * d) * 4, 0), *gamma = nrt_alloc((size_t)d * 4, 0);
    float *sums = nrt_alloc((size_t)d * 8, 0);
    double *ws = calloc((size_t)d * 4, sizeof(double)); /* S(dy), S(dy y), S|dy|, S|dy y| */
    fill(x, rows * d, 1, offset), fill(g, rows * d, 2, 0.0f), fill(gamma, d, 3, 1.0f);
    nrt_layernorm(rows, d, eps, x, y);
    nrt_layernorm_grad(rows, d, eps, x, g, dx);
    nrt_layernorm_grad_gamma(rows, d, eps, x, g, gamma, dxg);
    nrt_layernorm_grad_sums(rows, d, y, g, sums);
    double ey = 0, eg = 0, egg = 0, es = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * d, *gr = g + r * d;
        double m = 0, v = 0, sg = 0, sgh = 0, sgg = 0, sggh = 0;
        for (int64_t k = 0; k < d; k++) m += xr[k];
        m /= (double)d;
        for (int64_t k = 0; k < d; k++) v += (xr[k] - m) * (xr[k] - m);
        const double rs = 1 / sqrt(v / (double)d + eps);
        for (int64_t k = 0; k < d; k++) sg += gr[k], sgh += gr[k] * (xr[k] - m) * rs;
        for (int64_t k = 0; k < d; k++) sgg += gr[k] * gamma[k], sggh += gr[k] * gamma[k] * (xr[k] - m) * rs;
        for (int64_t k = 0; k < d; k++) { /* dx = rs (g - mean(g) - xhat mean(g xhat)) */
            const double xh = (xr[k] - m) * rs, want = rs * (gr[k] - sg / (double)d - xh * sgh / (double)d);
            const double gk = (double)gr[k] * gamma[k];
            const double wantg = rs * (gk - sgg / (double)d - xh * sggh / (double)d);
            ey = fmax(ey, fabs(y[r * d + k] - xh) / fmax(1, fabs(xh)));
            eg = fmax(eg, fabs(dx[r * d + k] - want) / fmax(1, fabs(want)));
            egg = fmax(egg, fabs(dxg[r * d + k] - wantg) / fmax(1, fabs(wantg)));
            /* the sums over the rows of the runtime's own y */
            const double yk = y[r * d + k];
            ws[k] += gr[k], ws[d + k] += gr[k] * yk, ws[2 * d + k] += fabs(gr[k]),
                ws[3 * d + k] += fabs(gr[k] * yk);
        }
    }
    /* the sums relative to the sums of magnitudes: float over blocks of 64 rows */
    for (int64_t k = 0; k < d; k++) {
        es = fmax(es, fabs(sums[k] - ws[k]) / fmax(1, ws[2 * d + k]));
        es = fmax(es, fabs(sums[d + k] - ws[d + k]) / fmax(1, ws[3 * d + k]));
    }
    if (es > 1e-5 || egg > (offset == 0 ? 2e-5 : 1e-4))
        TEST_FAIL_("layernorm gamma/sums rows=%lld d=%lld offset=%g threads=%d: error dx %g sums %g",
                   (long long)rows, (long long)d, offset, nrt_threads_get(), egg, es);
    else
        test_passed++;
    /* with a residual's gradient (x here) added: the same values plus it, bit
     * for bit, with and without gamma */
    float *dxr = nrt_alloc((size_t)(rows * d) * 4, 0), *dxr1 = nrt_alloc((size_t)(rows * d) * 4, 0);
    nrt_layernorm_grad_res(rows, d, eps, x, g, gamma, x, dxr);
    nrt_layernorm_grad_res(rows, d, eps, x, g, NULL, x, dxr1);
    int64_t bad = 0;
    for (int64_t i = 0; i < rows * d; i++) bad += dxr[i] != dxg[i] + x[i] || dxr1[i] != dx[i] + x[i];
    if (bad)
        TEST_FAIL_("layernorm_grad_res rows=%lld d=%lld threads=%d: %lld elements differ from dx + r",
                   (long long)rows, (long long)d, nrt_threads_get(), (long long)bad);
    else
        test_passed++;
    nrt_free(dxr), nrt_free(dxr1);
    nrt_free(dxg), nrt_free(gamma), nrt_free(sums), free(ws);
    /* float32 sums: 2e-5 on centred rows; at mean 100 the inputs carry 3.8e-6
     * of rounding each, 2.5e-5 of a unit-variance xhat measured */
    const double tol = offset == 0 ? 2e-5 : 1e-4;
    if (ey > tol || eg > tol)
        TEST_FAIL_("layernorm rows=%lld d=%lld offset=%g threads=%d: error y %g dx %g", (long long)rows,
                   (long long)d, offset, nrt_threads_get(), ey, eg);
    else
        test_passed++;
    nrt_free(x), nrt_free(g), nrt_free(y), nrt_free(dx);
}

int main(void) {
    static const int64_t widths[] = {1, 2, 7, 16, 21, 33, 128, 300, 2100, 20000};
    for (int threads = 1; threads <= 3; threads++) {
        nrt_threads_set(threads);
        for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
            const int64_t rows = widths[w] > 10000 ? 3 : widths[w] > 1000 ? 40 : 517;
            check_norm(rows, widths[w], 1e-5, 0.0f);
            check_norm(rows, widths[w], 1e-3, 100.0f);
        }
    }
    nrt_threads_set(1);
    TEST_DONE();
}
