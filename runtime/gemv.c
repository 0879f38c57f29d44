/* runtime/gemv.c -- the one-row SGEMM (a dense layer at batch 1, a step of
 * generation): c[1][n] = alpha * a[1][k] . op(B)[k][n] + beta * c, without
 * OpenBLAS's packing of B (which costs more than the product at this size).
 * B as stored ([k][n]): 16-column vectors of c accumulate k scaled rows of B;
 * transposed ([n][k]): one dot product per column. Large ones split their
 * columns over the thread pool, so each thread streams its part of B. */
#include "runtime/internal.h"

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

/* One call's operands. */
struct gemv_job {
    int tb;       /* B is [n][k] */
    int64_t n, k; /* sizes */
    float alpha, beta;
    const float *x; /* a's row (xs apart) */
    int64_t xs;     /* stride of x: 1, or lda when A is transposed */
    const float *b; /* B */
    int64_t ldb;    /* its leading dim */
    float *c;       /* the row of C */
};

/* GEMV_VECS vectors of 16 columns per pass over B's rows. */
#define GEMV_VECS 8
/* Columns per chunk of a split (whole vectors). */
#define GEMV_BLOCK 16
/* Products below this many FLOPs run on the calling thread. */
#define GEMV_SPLIT_FLOPS 2e5

static float finish(const struct gemv_job *g, float acc, int64_t j) {
    return g->beta == 0.0f ? g->alpha * acc : g->alpha * acc + g->beta * g->c[j];
}

#if defined(__AVX512F__)
/* Columns [j0, j1) of B as stored. */
static void cols_rows(const struct gemv_job *g, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j += 16 * GEMV_VECS) {
        int64_t left = j1 - j;
        int nv = left >= 16 * GEMV_VECS ? GEMV_VECS : (int)((left + 15) / 16);
        __mmask16 last = (__mmask16)(left >= 16 * nv ? 0xffff : (1u << (left - 16 * (nv - 1))) - 1);
        __m512 acc[GEMV_VECS];
        for (int v = 0; v < GEMV_VECS; v++) acc[v] = _mm512_setzero_ps();
        const float *row = g->b + j;
        if (nv == GEMV_VECS && last == 0xffff) /* the common case: no masks */
            for (int64_t i = 0; i < g->k; i++, row += g->ldb) {
                __m512 xb = _mm512_set1_ps(g->x[i * g->xs]);
#pragma GCC unroll 8
                for (int v = 0; v < GEMV_VECS; v++)
                    acc[v] = _mm512_fmadd_ps(_mm512_loadu_ps(row + 16 * v), xb, acc[v]);
            }
        else
            for (int64_t i = 0; i < g->k; i++, row += g->ldb) {
                __m512 xb = _mm512_set1_ps(g->x[i * g->xs]);
                for (int v = 0; v < nv; v++) {
                    __mmask16 m = v == nv - 1 ? last : 0xffff;
                    acc[v] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row + 16 * v), xb, acc[v]);
                }
            }
        for (int v = 0; v < nv; v++) {
            __mmask16 m = v == nv - 1 ? last : 0xffff;
            __m512 r = _mm512_mul_ps(_mm512_set1_ps(g->alpha), acc[v]);
            if (g->beta != 0.0f)
                r = _mm512_fmadd_ps(_mm512_set1_ps(g->beta), _mm512_maskz_loadu_ps(m, g->c + j + 16 * v), r);
            _mm512_mask_storeu_ps(g->c + j + 16 * v, m, r);
        }
    }
}

/* The dot product of x with k floats at b (x contiguous). */
static float dot(const float *x, const float *b, int64_t k) {
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t i = 0;
    for (; i + 32 <= k; i += 32) {
        acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(b + i), acc0);
        acc1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(b + i + 16), acc1);
    }
    for (; i < k; i += 16) {
        __mmask16 m = (__mmask16)(k - i >= 16 ? 0xffff : (1u << (k - i)) - 1);
        acc0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, b + i), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}
#else
/* Without AVX-512: c scaled first, then B's rows added in order (rows, not
 * columns, so that B streams). */
static void cols_rows(const struct gemv_job *g, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j++) g->c[j] = g->beta == 0.0f ? 0.0f : g->beta * g->c[j];
    for (int64_t i = 0; i < g->k; i++) {
        float s = g->alpha * g->x[i * g->xs];
        const float *row = g->b + i * g->ldb;
        for (int64_t j = j0; j < j1; j++) g->c[j] += s * row[j];
    }
}

static float dot(const float *x, const float *b, int64_t k) {
    float acc = 0;
    for (int64_t i = 0; i < k; i++) acc += x[i] * b[i];
    return acc;
}
#endif

/* Columns [j0, j1) of B transposed: one dot product each. */
static void cols_dots(const struct gemv_job *g, int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; j++) {
        const float *b = g->b + j * g->ldb;
        float acc;
        if (g->xs == 1)
            acc = dot(g->x, b, g->k);
        else {
            acc = 0;
            for (int64_t i = 0; i < g->k; i++) acc += g->x[i * g->xs] * b[i];
        }
        g->c[j] = finish(g, acc, j);
    }
}

static void gemv_blocks(void *arg, int64_t lo, int64_t hi) {
    const struct gemv_job *g = arg;
    int64_t j0 = lo * GEMV_BLOCK, j1 = hi * GEMV_BLOCK < g->n ? hi * GEMV_BLOCK : g->n;
    if (g->tb)
        cols_dots(g, j0, j1);
    else
        cols_rows(g, j0, j1);
}

void nrt_sgemv_row(int ta, int tb, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c) {
    struct gemv_job g = {tb, n, k, alpha, beta, a, ta ? lda : 1, b, ldb, c};
    int64_t blocks = (n + GEMV_BLOCK - 1) / GEMV_BLOCK;
    if (2.0 * (double)n * (double)k < GEMV_SPLIT_FLOPS || nrt_threads_get() < 2 || nrt_threads_inside())
        gemv_blocks(&g, 0, blocks);
    else
        nrt_parallel_for(blocks, 1, gemv_blocks, &g);
}
