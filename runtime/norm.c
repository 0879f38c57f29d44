/* runtime/norm.c -- layer normalization over the last axis (the IR's LAYERNORM
 * and LAYERNORM_GRAD, netrt.h): one task per block of rows; per row, its sums
 * in float over NORM_LANES independent partial sums added pairwise (loops the
 * compiler vectorizes; it may not reorder one serial sum; the mean is taken
 * first, so the variance has no cancellation), then one pass that writes the
 * row. Compiled with -O3 -march=native (CMakeLists.txt). */
#include "runtime/netrt.h"

#include <math.h>

#define NORM_LANES 16           /* partial sums per row: one AVX-512 register of floats */
#define NORM_GRAIN_FLOATS 16384 /* floats per task at least */

/* The NORM_LANES partial sums added pairwise. */
static float lanes_sum(const float *restrict a) {
    float b[NORM_LANES / 2], c[NORM_LANES / 4];
    for (int l = 0; l < NORM_LANES / 2; l++) b[l] = a[l] + a[l + NORM_LANES / 2];
    for (int l = 0; l < NORM_LANES / 4; l++) c[l] = b[l] + b[l + NORM_LANES / 4];
    return (c[0] + c[2]) + (c[1] + c[3]);
}

/* The sum of x[0..d). */
static float row_sum(const float *restrict x, int64_t d) {
    float acc[NORM_LANES] = {0}, s = 0;
    int64_t j = 0;
    for (; j + NORM_LANES <= d; j += NORM_LANES)
        for (int l = 0; l < NORM_LANES; l++) acc[l] += x[j + l];
    for (; j < d; j++) s += x[j];
    return s + lanes_sum(acc);
}

/* The sum of (x - m)^2 over the row. */
static float row_dev2(const float *restrict x, int64_t d, float m) {
    float acc[NORM_LANES] = {0}, s = 0;
    int64_t j = 0;
    for (; j + NORM_LANES <= d; j += NORM_LANES)
        for (int l = 0; l < NORM_LANES; l++) {
            const float c = x[j + l] - m;
            acc[l] += c * c;
        }
    for (; j < d; j++) s += (x[j] - m) * (x[j] - m);
    return s + lanes_sum(acc);
}

/* A row's mean and 1 / sqrt(var + eps) (two passes: no cancellation). */
static void row_stats(const float *restrict x, int64_t d, double eps, float *mean, float *rstd) {
    *mean = row_sum(x, d) / (float)d;
    *rstd = (float)(1 / sqrt((double)row_dev2(x, d, *mean) / (double)d + eps));
}

struct norm_job {
    int64_t d;
    double eps;
    const float *x, *dy;
    float *out;
};

static void norm_rows(void *arg, int64_t lo, int64_t hi) {
    const struct norm_job *j = arg;
    const int64_t d = j->d;
    for (int64_t r = lo; r < hi; r++) {
        const float *restrict x = j->x + r * d;
        float *restrict y = j->out + r * d;
        float m, rs;
        row_stats(x, d, j->eps, &m, &rs);
        for (int64_t k = 0; k < d; k++) y[k] = (x[k] - m) * rs;
    }
}

static void norm_grad_rows(void *arg, int64_t lo, int64_t hi) {
    const struct norm_job *j = arg;
    const int64_t d = j->d;
    for (int64_t r = lo; r < hi; r++) {
        const float *restrict x = j->x + r * d, *restrict g = j->dy + r * d;
        float *restrict dx = j->out + r * d;
        float m, rs;
        row_stats(x, d, j->eps, &m, &rs);
        /* sums of dy and of dy * (x - mean), the latter times rstd below */
        float ag[NORM_LANES] = {0}, agc[NORM_LANES] = {0}, sg = 0, sgc = 0;
        int64_t k = 0;
        for (; k + NORM_LANES <= d; k += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) {
                ag[l] += g[k + l];
                agc[l] += g[k + l] * (x[k + l] - m);
            }
        for (; k < d; k++) {
            sg += g[k];
            sgc += g[k] * (x[k] - m);
        }
        sg += lanes_sum(ag), sgc += lanes_sum(agc);
        /* dx = rs (g - sg/d - (x - m) rs * sgc rs / d) */
        const float mg = sg / (float)d, c2 = sgc * rs * rs / (float)d;
        for (k = 0; k < d; k++) dx[k] = rs * (g[k] - mg - (x[k] - m) * c2);
    }
}

static int64_t norm_grain(int64_t d) { return d >= NORM_GRAIN_FLOATS ? 1 : NORM_GRAIN_FLOATS / d; }

void nrt_layernorm(int64_t rows, int64_t d, double eps, const float *x, float *y) {
    if (rows <= 0 || d <= 0) return;
    struct norm_job j = {d, eps, x, NULL, y};
    nrt_parallel_for(rows, norm_grain(d), norm_rows, &j);
}

void nrt_layernorm_grad(int64_t rows, int64_t d, double eps, const float *x, const float *dy, float *dx) {
    if (rows <= 0 || d <= 0) return;
    struct norm_job j = {d, eps, x, dy, dx};
    nrt_parallel_for(rows, norm_grain(d), norm_grad_rows, &j);
}
