/* runtime/norm.c -- layer normalization over the last axis (the IR's LAYERNORM
 * and LAYERNORM_GRAD, netrt.h): one task per block of rows; per row, its sums
 * in float over NORM_LANES independent partial sums added pairwise (loops the
 * compiler vectorizes; it may not reorder one serial sum; the mean is taken
 * first, so the variance has no cancellation), then one pass that writes the
 * row; LAYERNORM_GRAD_SUMS's column sums by blocks of rows per task. Then batch norm's training gradient
 * (BATCHNORM_GRAD_SUMS, BATCHNORM_GRAD): the per-channel sums in one pass over the images in memory order
 * (AVX-512 lanes per plane, planes added in double), then dx in one; and batch norm's forward
 * statistics (mean and variance per channel) in one pass, planes merged in double. Compiled with
 * -O3 -march=native (CMakeLists.txt). */
#include "runtime/netrt.h"

#include <math.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

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
    const float *gamma; /* the gradient's dy times gamma, or NULL: dy */
    const float *res;   /* added to the gradient (a residual's gradient), or NULL */
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

/* A block of NORM_LANES floats as a GCC/clang vector, at any float alignment:
 * lane l of a row's partial sums in one register (the same sums, in the same
 * order, as the float arrays above). */
typedef float vlanes __attribute__((vector_size(NORM_LANES * sizeof(float)), aligned(sizeof(float))));
static inline vlanes vl_load(const float *p) { return *(const vlanes *)(const void *)p; }
static inline void vl_store(float *p, vlanes x) { *(vlanes *)(void *)p = x; }
static inline float vl_sum(vlanes v) {
    float a[NORM_LANES];
    vl_store(a, v);
    return lanes_sum(a);
}

/* The gradient of R rows at once (R a constant where inlined: R independent
 * chains of sums in flight, not one row's latency after another): the row
 * statistics as row_stats computes them, the sums of g and g (x - mean), then
 * dx = rs (g - sg/d - (x - m) rs * sgc rs / d), g = dy, or dy gamma when G (a
 * constant where inlined, as R; g is recomputed, never stored). */
static inline __attribute__((always_inline)) void grad_rows_r(const int R, const int G, const int A,
                                                              const struct norm_job *j, int64_t r0) {
    const int64_t d = j->d, dv = d / NORM_LANES * NORM_LANES;
    const float *restrict x[4], *restrict g[4];
    const float *restrict gm = j->gamma;
    float m[4], rs[4], mg[4], c2[4];
    for (int r = 0; r < R; r++) x[r] = j->x + (r0 + r) * d, g[r] = j->dy + (r0 + r) * d;
    vlanes acc[4], acc2[4];
    for (int r = 0; r < R; r++) acc[r] = (vlanes){0};
    for (int64_t k = 0; k < dv; k += NORM_LANES)
        for (int r = 0; r < R; r++) acc[r] += vl_load(x[r] + k);
    for (int r = 0; r < R; r++) {
        float s = 0;
        for (int64_t k = dv; k < d; k++) s += x[r][k];
        m[r] = (s + vl_sum(acc[r])) / (float)d;
        acc[r] = (vlanes){0};
    }
    for (int64_t k = 0; k < dv; k += NORM_LANES)
        for (int r = 0; r < R; r++) {
            const vlanes c = vl_load(x[r] + k) - m[r];
            acc[r] += c * c;
        }
    for (int r = 0; r < R; r++) {
        float s = 0;
        for (int64_t k = dv; k < d; k++) s += (x[r][k] - m[r]) * (x[r][k] - m[r]);
        rs[r] = (float)(1 / sqrt((double)(s + vl_sum(acc[r])) / (double)d + j->eps));
        acc[r] = acc2[r] = (vlanes){0};
    }
    for (int64_t k = 0; k < dv; k += NORM_LANES)
        for (int r = 0; r < R; r++) {
            const vlanes gk = G ? vl_load(g[r] + k) * vl_load(gm + k) : vl_load(g[r] + k);
            acc[r] += gk;
            acc2[r] += gk * (vl_load(x[r] + k) - m[r]);
        }
    for (int r = 0; r < R; r++) {
        float sg = 0, sgc = 0;
        for (int64_t k = dv; k < d; k++) {
            const float gk = G ? g[r][k] * gm[k] : g[r][k];
            sg += gk;
            sgc += gk * (x[r][k] - m[r]);
        }
        sg += vl_sum(acc[r]), sgc += vl_sum(acc2[r]);
        mg[r] = sg / (float)d, c2[r] = sgc * rs[r] * rs[r] / (float)d;
    }
    for (int r = 0; r < R; r++) {
        float *restrict dx = j->out + (r0 + r) * d;
        const float *restrict ar = A ? j->res + (r0 + r) * d : NULL;
        int64_t k = 0;
        for (; k < dv; k += NORM_LANES) {
            const vlanes gk = G ? vl_load(g[r] + k) * vl_load(gm + k) : vl_load(g[r] + k);
            const vlanes v = rs[r] * (gk - mg[r] - (vl_load(x[r] + k) - m[r]) * c2[r]);
            vl_store(dx + k, A ? v + vl_load(ar + k) : v);
        }
        for (; k < d; k++) {
            const float v = rs[r] * ((G ? g[r][k] * gm[k] : g[r][k]) - mg[r] - (x[r][k] - m[r]) * c2[r]);
            dx[k] = A ? v + ar[k] : v;
        }
    }
}

static void norm_grad_rows(void *arg, int64_t lo, int64_t hi) {
    const struct norm_job *j = arg;
    int64_t r = lo;
    if (j->gamma && j->res) {
        for (; r + 4 <= hi; r += 4) grad_rows_r(4, 1, 1, j, r);
        for (; r < hi; r++) grad_rows_r(1, 1, 1, j, r);
        return;
    }
    if (j->gamma) {
        for (; r + 4 <= hi; r += 4) grad_rows_r(4, 1, 0, j, r);
        for (; r < hi; r++) grad_rows_r(1, 1, 0, j, r);
        return;
    }
    if (j->res) {
        for (; r + 4 <= hi; r += 4) grad_rows_r(4, 0, 1, j, r);
        for (; r < hi; r++) grad_rows_r(1, 0, 1, j, r);
        return;
    }
    for (; r + 4 <= hi; r += 4) grad_rows_r(4, 0, 0, j, r);
    for (; r < hi; r++) grad_rows_r(1, 0, 0, j, r);
}

static int64_t norm_grain(int64_t d) { return d >= NORM_GRAIN_FLOATS ? 1 : NORM_GRAIN_FLOATS / d; }

void nrt_layernorm(int64_t rows, int64_t d, double eps, const float *x, float *y) {
    if (rows <= 0 || d <= 0) return;
    struct norm_job j = {d, eps, x, NULL, y, NULL, NULL};
    nrt_parallel_for(rows, norm_grain(d), norm_rows, &j);
}

void nrt_layernorm_grad(int64_t rows, int64_t d, double eps, const float *x, const float *dy, float *dx) {
    nrt_layernorm_grad_gamma(rows, d, eps, x, dy, NULL, dx);
}

void nrt_layernorm_grad_gamma(int64_t rows, int64_t d, double eps, const float *x, const float *dy,
                              const float *gamma, float *dx) {
    nrt_layernorm_grad_res(rows, d, eps, x, dy, gamma, NULL, dx);
}

void nrt_layernorm_grad_res(int64_t rows, int64_t d, double eps, const float *x, const float *dy,
                            const float *gamma, const float *res, float *dx) {
    if (rows <= 0 || d <= 0) return;
    struct norm_job j = {d, eps, x, dy, dx, gamma, res};
    nrt_parallel_for(rows, norm_grain(d), norm_grad_rows, &j);
}

/* --------------------------------------- layer norm's gamma and beta sums -- */

#define LN_PART_DOUBLES 4096 /* the sums' per-task partials, on the caller's stack */
#define LN_COLS 256          /* columns per block of float sums */
#define LN_CHUNK_ROWS 64     /* rows summed in float before the block goes into double */

struct ln_sums_job {
    int64_t rows, d, tasks;
    const float *y, *dy;
    double *part; /* task t's partials S(dy), S(dy y) at part + 2 d t */
    float *out;   /* the sums, when tasks own column blocks (wide rows) */
};

/* Rows [r0, r1) of columns [c0, c0 + w), w <= LN_COLS: S(dy) and S(dy y) added
 * to sg[0..w) and sgy[0..w), in float over chunks of LN_CHUNK_ROWS rows (loops
 * across the row, which the compiler vectorizes), each chunk added in double. */
static void ln_sums_block(const struct ln_sums_job *j, int64_t r0, int64_t r1, int64_t c0, int64_t w,
                          double *sg, double *sgy) {
    float a[LN_COLS], b[LN_COLS];
    const int64_t d = j->d;
    for (int64_t r = r0; r < r1; r += LN_CHUNK_ROWS) {
        const int64_t re = r + LN_CHUNK_ROWS < r1 ? r + LN_CHUNK_ROWS : r1;
        for (int64_t k = 0; k < w; k++) a[k] = b[k] = 0;
        for (int64_t i = r; i < re; i++) {
            const float *restrict g = j->dy + i * d + c0, *restrict y = j->y + i * d + c0;
            for (int64_t k = 0; k < w; k++) {
                a[k] += g[k];
                b[k] += g[k] * y[k];
            }
        }
        for (int64_t k = 0; k < w; k++) sg[k] += a[k], sgy[k] += b[k];
    }
}

/* Task t's rows [rows t / tasks, rows (t + 1) / tasks), every column. */
static void ln_sums_rows(void *arg, int64_t lo, int64_t hi) {
    const struct ln_sums_job *j = arg;
    const int64_t d = j->d;
    for (int64_t t = lo; t < hi; t++) {
        double *acc = j->part + t * 2 * d;
        for (int64_t k = 0; k < 2 * d; k++) acc[k] = 0;
        for (int64_t c0 = 0; c0 < d; c0 += LN_COLS)
            ln_sums_block(j, j->rows * t / j->tasks, j->rows * (t + 1) / j->tasks, c0,
                          d - c0 < LN_COLS ? d - c0 : LN_COLS, acc + c0, acc + d + c0);
    }
}

/* Rows too wide for the partials: a task per block of LN_COLS columns, over every row. */
static void ln_sums_cols(void *arg, int64_t lo, int64_t hi) {
    const struct ln_sums_job *j = arg;
    for (int64_t b = lo; b < hi; b++) {
        const int64_t c0 = b * LN_COLS, w = j->d - c0 < LN_COLS ? j->d - c0 : LN_COLS;
        double sg[LN_COLS] = {0}, sgy[LN_COLS] = {0};
        ln_sums_block(j, 0, j->rows, c0, w, sg, sgy);
        for (int64_t k = 0; k < w; k++) j->out[c0 + k] = (float)sg[k], j->out[j->d + c0 + k] = (float)sgy[k];
    }
}

void nrt_layernorm_grad_sums(int64_t rows, int64_t d, const float *y, const float *dy, float *sums) {
    if (d <= 0) return;
    double part[LN_PART_DOUBLES]; /* no allocation in a training step */
    struct ln_sums_job j = {rows < 0 ? 0 : rows, d, 0, y, dy, part, sums};
    if (2 * d > LN_PART_DOUBLES) {
        nrt_parallel_for((d + LN_COLS - 1) / LN_COLS, 1, ln_sums_cols, &j);
        return;
    }
    /* a task per thread, each of NORM_GRAIN_FLOATS floats at least */
    int64_t most = j.rows * d / NORM_GRAIN_FLOATS;
    j.tasks = nrt_threads_get() < most ? nrt_threads_get() : most;
    while (j.tasks > 1 && j.tasks * 2 * d > LN_PART_DOUBLES) j.tasks--;
    if (j.tasks < 1) j.tasks = 1;
    nrt_parallel_for(j.tasks, 1, ln_sums_rows, &j);
    for (int64_t k = 0; k < 2 * d; k++) {
        double s = 0;
        for (int64_t t = 0; t < j.tasks; t++) s += j.part[t * 2 * d + k];
        sums[k] = (float)s;
    }
}

/* ------------------------------------------------- batch norm's gradient -- */

#define BN_PART_DOUBLES 4096 /* the sums' per-thread partials, on the caller's stack */

struct bn_job {
    int64_t n, c, hw;
    double eps;
    const float *x, *dy, *gamma, *mean, *var, *sums;
    float *out;
    double *part; /* the sums: task t's partials at part + 2 c t */
    int64_t tasks;
};

/* S(g) and S(g (x - m)) over one plane of hw floats, added to *sg, *sgc: in
 * float over 16 lanes within the plane (a few hundred terms per lane), the
 * plane's total added in double. */
static void bn_plane_sums(const float *restrict x, const float *restrict g, int64_t hw, float m, double *sg,
                          double *sgc) {
    int64_t k = 0;
    double s = 0, sc = 0;
#if defined(__AVX512F__)
    __m512 ag = _mm512_setzero_ps(), agc = _mm512_setzero_ps(), mv = _mm512_set1_ps(m);
    for (; k + 16 <= hw; k += 16) {
        __m512 gv = _mm512_loadu_ps(g + k);
        ag = _mm512_add_ps(ag, gv);
        agc = _mm512_fmadd_ps(gv, _mm512_sub_ps(_mm512_loadu_ps(x + k), mv), agc);
    }
    if (k < hw) {
        __mmask16 t = (__mmask16)((1u << (hw - k)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(t, g + k);
        ag = _mm512_add_ps(ag, gv);
        agc = _mm512_fmadd_ps(gv, _mm512_maskz_sub_ps(t, _mm512_maskz_loadu_ps(t, x + k), mv), agc);
        k = hw;
    }
    /* the 16 lanes added in double, as a tree in registers */
    s = _mm512_reduce_add_pd(
        _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(ag)),
                      _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(ag), 1)))));
    sc = _mm512_reduce_add_pd(
        _mm512_add_pd(_mm512_cvtps_pd(_mm512_castps512_ps256(agc)),
                      _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(agc), 1)))));
#endif
    for (; k < hw; k++) {
        s += g[k];
        sc += (double)g[k] * (double)(x[k] - m);
    }
    *sg += s, *sgc += sc;
}

/* Task t's images [n t / tasks, n (t + 1) / tasks) in memory order (one
 * stream the prefetchers follow, not a plane per image per channel): per
 * channel, S(dy) and S(dy (x - mean)) into its partials part[t][2c]. */
static void bn_sums_images(void *arg, int64_t lo, int64_t hi) {
    const struct bn_job *j = arg;
    int64_t c = j->c, hw = j->hw;
    for (int64_t t = lo; t < hi; t++) {
        double *acc = j->part + t * 2 * c;
        for (int64_t k = 0; k < 2 * c; k++) acc[k] = 0;
        for (int64_t b = j->n * t / j->tasks; b < j->n * (t + 1) / j->tasks; b++)
            for (int64_t ch = 0; ch < c; ch++) {
                const float *x = j->x + (b * c + ch) * hw, *g = j->dy + (b * c + ch) * hw;
                if (hw >= 16) {
                    bn_plane_sums(x, g, hw, j->mean[ch], &acc[ch], &acc[c + ch]);
                    continue;
                }
                for (int64_t k = 0; k < hw; k++) {
                    acc[ch] += g[k];
                    acc[c + ch] += (double)g[k] * ((double)x[k] - j->mean[ch]);
                }
            }
    }
}

/* Too many channels for the partials: a task per channel range. */
static void bn_sums_channels(void *arg, int64_t lo, int64_t hi) {
    const struct bn_job *j = arg;
    for (int64_t ch = lo; ch < hi; ch++) {
        double sg = 0, sgc = 0;
        for (int64_t b = 0; b < j->n; b++) {
            int64_t at = (b * j->c + ch) * j->hw;
            bn_plane_sums(j->x + at, j->dy + at, j->hw, j->mean[ch], &sg, &sgc);
        }
        j->out[ch] = (float)sg, j->out[j->c + ch] = (float)sgc;
    }
}

void nrt_batchnorm_grad_sums(int64_t n, int64_t c, int64_t hw, const float *x, const float *dy,
                             const float *mean, float *sums) {
    if (c <= 0) return;
    double part[BN_PART_DOUBLES]; /* no allocation in a training step */
    struct bn_job j = {n, c, hw, 0, x, dy, NULL, mean, NULL, NULL, sums, part, 0};
    j.tasks = nrt_threads_get() < n ? nrt_threads_get() : n;
    if (j.tasks < 1) j.tasks = 1;
    while (j.tasks > 1 && j.tasks * 2 * c > BN_PART_DOUBLES) j.tasks--;
    if (2 * c > BN_PART_DOUBLES) {
        nrt_parallel_for(c, 1, bn_sums_channels, &j);
        return;
    }
    nrt_parallel_for(j.tasks, 1, bn_sums_images, &j);
    for (int64_t k = 0; k < 2 * c; k++) {
        double s = 0;
        for (int64_t t = 0; t < j.tasks; t++) s += j.part[t * 2 * c + k];
        sums[k] = (float)s;
    }
}

/* Planes [lo, hi) of dx (plane p: image p / c, channel p % c). */
static void bn_grad_planes(void *arg, int64_t lo, int64_t hi) {
    const struct bn_job *j = arg;
    const double count = (double)j->n * (double)j->hw;
    for (int64_t p = lo; p < hi; p++) {
        int64_t ch = p % j->c;
        double r = 1 / sqrt((double)j->var[ch] + j->eps);
        const float k = (float)(j->gamma[ch] * r), mk = j->mean[ch];
        const float mg = (float)(j->sums[ch] / count), c2 = (float)(r * r * j->sums[j->c + ch] / count);
        const float *restrict x = j->x + p * j->hw, *restrict g = j->dy + p * j->hw;
        float *restrict dx = j->out + p * j->hw;
        for (int64_t i = 0; i < j->hw; i++) dx[i] = k * (g[i] - mg - (x[i] - mk) * c2);
    }
}

void nrt_batchnorm_grad(int64_t n, int64_t c, int64_t hw, double eps, const float *x, const float *dy,
                        const float *gamma, const float *mean, const float *var, const float *sums,
                        float *dx) {
    if (n <= 0 || c <= 0 || hw <= 0) return;
    struct bn_job j = {n, c, hw, eps, x, dy, gamma, mean, var, sums, dx, NULL, 0};
    nrt_parallel_for(n * c, hw >= NORM_GRAIN_FLOATS ? 1 : NORM_GRAIN_FLOATS / hw, bn_grad_planes, &j);
}

/* ------------------------------------- batch norm's forward statistics -- */

/* S(d) and S(d^2) of one plane of hw floats, d = x - k exactly (in double),
 * added to *s1 and *s2: double lanes, several chains in flight, so that the
 * arithmetic hides under the stream of x. */
static void bn_plane_shifted(const float *restrict x, int64_t hw, double k, double *s1, double *s2) {
    int64_t j = 0;
    double s = 0, q = 0;
#if defined(__AVX512F__)
    const __m512d kv = _mm512_set1_pd(k);
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0, q0 = a0, q1 = a0, q2 = a0, q3 = a0;
    for (; j + 32 <= hw; j += 32) {
        const __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j)), kv);
        const __m512d b = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j + 8)), kv);
        const __m512d e = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j + 16)), kv);
        const __m512d g = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j + 24)), kv);
        a0 = _mm512_add_pd(a0, a), a1 = _mm512_add_pd(a1, b), a2 = _mm512_add_pd(a2, e),
        a3 = _mm512_add_pd(a3, g);
        q0 = _mm512_fmadd_pd(a, a, q0), q1 = _mm512_fmadd_pd(b, b, q1);
        q2 = _mm512_fmadd_pd(e, e, q2), q3 = _mm512_fmadd_pd(g, g, q3);
    }
    for (; j + 8 <= hw; j += 8) {
        const __m512d a = _mm512_sub_pd(_mm512_cvtps_pd(_mm256_loadu_ps(x + j)), kv);
        a0 = _mm512_add_pd(a0, a), q0 = _mm512_fmadd_pd(a, a, q0);
    }
    s = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(a0, a1), _mm512_add_pd(a2, a3)));
    q = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(q0, q1), _mm512_add_pd(q2, q3)));
#endif
    for (; j < hw; j++) {
        const double d = (double)x[j] - k;
        s += d, q += d * d;
    }
    *s1 += s, *s2 += q;
}

struct bn_stats_job {
    int64_t n, c, hw, tasks;
    const float *x;
    double *shift;     /* per channel: the mean of image 0's plane */
    double *part;      /* task t's per-channel S(d), S(d^2) at part + 2 c t */
    float *mean, *var; /* by channel tasks */
};

/* The shift of channel ch: the mean of image 0's plane (a plane's deviations
 * from its channel's mean are a few standard deviations at most, so
 * S(d^2) / M - (S(d) / M)^2 in double loses nothing a float keeps). */
static double bn_shift(const struct bn_stats_job *j, int64_t ch) {
    double s = 0, q = 0;
    bn_plane_shifted(j->x + ch * j->hw, j->hw, 0.0, &s, &q);
    return s / (double)j->hw;
}

/* The mean and variance from the shift and the sums. */
static void bn_stats_out(const struct bn_stats_job *j, int64_t ch, double shift, double s1, double s2) {
    const double count = (double)j->n * (double)j->hw, m = s1 / count, v = s2 / count - m * m;
    j->mean[ch] = (float)(shift + m), j->var[ch] = (float)(v > 0 ? v : 0);
}

/* Task t's images [n t / tasks, n (t + 1) / tasks) in memory order (one
 * stream): per channel S(x - shift) and S((x - shift)^2) into its partials. */
static void bn_stats_images(void *arg, int64_t lo, int64_t hi) {
    const struct bn_stats_job *j = arg;
    const int64_t c = j->c, hw = j->hw;
    for (int64_t t = lo; t < hi; t++) {
        double *acc = j->part + t * 2 * c;
        for (int64_t k = 0; k < 2 * c; k++) acc[k] = 0;
        for (int64_t b = j->n * t / j->tasks; b < j->n * (t + 1) / j->tasks; b++)
            for (int64_t ch = 0; ch < c; ch++)
                bn_plane_shifted(j->x + (b * c + ch) * hw, hw, j->shift[ch], &acc[ch], &acc[c + ch]);
    }
}

/* Too many channels for the partials: channels [lo, hi), each over every image. */
static void bn_stats_channels(void *arg, int64_t lo, int64_t hi) {
    const struct bn_stats_job *j = arg;
    for (int64_t ch = lo; ch < hi; ch++) {
        double k = bn_shift(j, ch), s1 = 0, s2 = 0;
        for (int64_t b = 0; b < j->n; b++)
            bn_plane_shifted(j->x + (b * j->c + ch) * j->hw, j->hw, k, &s1, &s2);
        bn_stats_out(j, ch, k, s1, s2);
    }
}

void nrt_batchnorm_stats(int64_t n, int64_t c, int64_t hw, const float *x, float *mean, float *var) {
    if (c <= 0) return;
    if (n <= 0 || hw <= 0) { /* the IR's MEAN and VARIANCE of nothing */
        for (int64_t k = 0; k < c; k++) mean[k] = var[k] = NAN;
        return;
    }
    double part[BN_PART_DOUBLES]; /* no allocation in a training step: shifts at the end */
    struct bn_stats_job j = {n, c, hw, 0, x, part + BN_PART_DOUBLES - c, part, mean, var};
    j.tasks = nrt_threads_get() < n ? nrt_threads_get() : n;
    if (j.tasks < 1) j.tasks = 1;
    while (j.tasks > 1 && (j.tasks * 2 + 1) * c > BN_PART_DOUBLES) j.tasks--;
    if (3 * c > BN_PART_DOUBLES) {
        nrt_parallel_for(c, 1, bn_stats_channels, &j);
        return;
    }
    for (int64_t ch = 0; ch < c; ch++) j.shift[ch] = bn_shift(&j, ch);
    nrt_parallel_for(j.tasks, 1, bn_stats_images, &j);
    for (int64_t k = 0; k < c; k++) {
        double s1 = 0, s2 = 0;
        for (int64_t t = 0; t < j.tasks; t++) s1 += part[t * 2 * c + k], s2 += part[t * 2 * c + c + k];
        bn_stats_out(&j, k, j.shift[k], s1, s2);
    }
}
