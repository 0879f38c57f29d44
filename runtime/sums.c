/* runtime/sums.c -- per-channel sums of [n][c][hw] tensors over the images and
 * the pixels (the bias gradients of convolutions), for the C and LLVM
 * backends alike: each plane's total in double (16 lanes, then a fixed tree),
 * the threads splitting the images as the producers of such tensors do (the
 * planes are still in their cache), then each channel's totals added over
 * the images in order: the same bits at any thread count. */
#include "runtime/internal.h"

#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

struct sums_job {
    int64_t n, c, hw; /* the tensor */
    const float *x;
    double *part;  /* [n][c]: each plane's total */
    int64_t tasks; /* tasks split the images */
};

/* The total of the plane p of hw floats: element j into lane j % 16 (the lanes
 * past the end of the last vector add zeros), then the 16 lanes as a fixed
 * tree (pairs 8 apart, then 4, 2, 1), in double. */
static double plane_total(const float *restrict p, int64_t hw) {
#if defined(__AVX512F__)
    __m512d lo = _mm512_setzero_pd(), hi = _mm512_setzero_pd();
    int64_t j = 0;
    for (; j + 16 <= hw; j += 16) {
        __m512 v = _mm512_loadu_ps(p + j);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        hi = _mm512_add_pd(hi,
                           _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    if (j < hw) {
        __m512 v = _mm512_maskz_loadu_ps((__mmask16)((1u << (hw - j)) - 1), p + j);
        lo = _mm512_add_pd(lo, _mm512_cvtps_pd(_mm512_castps512_ps256(v)));
        hi = _mm512_add_pd(hi,
                           _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1))));
    }
    /* the tree in registers (through memory, the reloads missed store forwarding) */
    __m512d t8 = _mm512_add_pd(lo, hi);
    __m256d t4 = _mm256_add_pd(_mm512_castpd512_pd256(t8), _mm512_extractf64x4_pd(t8, 1));
    __m128d t2 = _mm_add_pd(_mm256_castpd256_pd128(t4), _mm256_extractf128_pd(t4, 1));
    return _mm_cvtsd_f64(_mm_add_sd(t2, _mm_unpackhi_pd(t2, t2)));
#else
    double lane[16];
    for (int l = 0; l < 16; l++) lane[l] = 0;
    for (int64_t j = 0; j < hw; j += 16)
        for (int l = 0; l < 16; l++) lane[l] += j + l < hw ? (double)p[j + l] : 0.0;
    for (int w = 8; w >= 1; w /= 2)
        for (int l = 0; l < w; l++) lane[l] += lane[l + w];
    return lane[0];
#endif
}

/* Task t's images, in memory order (where the producer's same task wrote them). */
static void sums_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct sums_job *j = arg;
    for (int64_t t = lo; t < hi; t++)
        for (int64_t q = j->n * t / j->tasks * j->c; q < j->n * (t + 1) / j->tasks * j->c; q++)
            j->part[q] = plane_total(j->x + q * j->hw, j->hw);
}

void nrt_sum_planes(int64_t n, int64_t c, int64_t hw, const float *x, float *y, double *scratch) {
    struct sums_job j = {n, c, hw, x, scratch, 1};
    /* a task per thread where each has 1M floats or more: smaller sums run at
     * L2/L3 speed on one thread (the DCGAN's 3.2 MB in 80 us), where a second
     * one gained little (62-84 us, best of 30) and lost much while the
     * machine was busy (means 2-3x the single thread's at load 6) */
    int64_t t = nrt_threads_get();
    j.tasks = t < n ? t : n;
    if (j.tasks < 1 || n * c * hw < ((int64_t)1 << 20) * t) j.tasks = 1;
    nrt_parallel_for(j.tasks, 1, sums_tasks, &j);
    for (int64_t ch = 0; ch < c; ch++) { /* the images in order */
        double s = 0;
        for (int64_t b = 0; b < n; b++) s += scratch[b * c + ch];
        y[ch] = (float)s;
    }
}
