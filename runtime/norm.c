/* runtime/norm.c -- layer normalization over the last axis (the IR's LAYERNORM
 * and LAYERNORM_GRAD, netrt.h): one task per block of rows; per row, its sums
 * in double over NORM_LANES independent partial sums (loops the compiler
 * vectorizes; it may not reorder one serial double sum), then one pass that
 * writes the row. Compiled with -O3 -march=native (CMakeLists.txt). */
#include "runtime/netrt.h"

#include <math.h>

#define NORM_LANES 8            /* partial sums per row: two AVX2 registers of doubles */
#define NORM_GRAIN_FLOATS 16384 /* floats per task at least */

/* The sum of x[0..d) in double. */
static double row_sum(const float *restrict x, int64_t d) {
    double acc[NORM_LANES] = {0}, s = 0;
    int64_t j = 0;
    for (; j + NORM_LANES <= d; j += NORM_LANES)
        for (int l = 0; l < NORM_LANES; l++) acc[l] += x[j + l];
    for (; j < d; j++) s += x[j];
    for (int l = 0; l < NORM_LANES; l++) s += acc[l];
    return s;
}

/* The sum of (x - m)^2 over the row, in double. */
static double row_dev2(const float *restrict x, int64_t d, double m) {
    double acc[NORM_LANES] = {0}, s = 0;
    int64_t j = 0;
    for (; j + NORM_LANES <= d; j += NORM_LANES)
        for (int l = 0; l < NORM_LANES; l++) {
            const double c = (double)x[j + l] - m;
            acc[l] += c * c;
        }
    for (; j < d; j++) s += ((double)x[j] - m) * ((double)x[j] - m);
    for (int l = 0; l < NORM_LANES; l++) s += acc[l];
    return s;
}

/* A row's mean and 1 / sqrt(var + eps). */
static void row_stats(const float *restrict x, int64_t d, double eps, double *mean, double *rstd) {
    *mean = row_sum(x, d) / (double)d;
    *rstd = 1 / sqrt(row_dev2(x, d, *mean) / (double)d + eps);
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
        double m, rs;
        row_stats(x, d, j->eps, &m, &rs);
        for (int64_t k = 0; k < d; k++) y[k] = (float)(((double)x[k] - m) * rs);
    }
}

static void norm_grad_rows(void *arg, int64_t lo, int64_t hi) {
    const struct norm_job *j = arg;
    const int64_t d = j->d;
    for (int64_t r = lo; r < hi; r++) {
        const float *restrict x = j->x + r * d, *restrict g = j->dy + r * d;
        float *restrict dx = j->out + r * d;
        double m, rs;
        row_stats(x, d, j->eps, &m, &rs);
        /* sums of dy and of dy * (x - mean), the latter times rstd below */
        double ag[NORM_LANES] = {0}, agc[NORM_LANES] = {0}, sg = 0, sgc = 0;
        int64_t k = 0;
        for (; k + NORM_LANES <= d; k += NORM_LANES)
            for (int l = 0; l < NORM_LANES; l++) {
                ag[l] += g[k + l];
                agc[l] += (double)g[k + l] * ((double)x[k + l] - m);
            }
        for (; k < d; k++) {
            sg += g[k];
            sgc += (double)g[k] * ((double)x[k] - m);
        }
        for (int l = 0; l < NORM_LANES; l++) sg += ag[l], sgc += agc[l];
        /* dx = rs (g - sg/d - (x - m) rs * sgc rs / d) */
        const double mg = sg / (double)d, c2 = sgc * rs * rs / (double)d;
        for (k = 0; k < d; k++) dx[k] = (float)(rs * ((double)g[k] - mg - ((double)x[k] - m) * c2));
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
