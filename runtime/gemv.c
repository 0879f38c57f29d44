/* runtime/gemv.c -- the one-row SGEMM (a dense layer at batch 1, a step of
 * generation) and the few-row one (a dense layer on a slice of a batch, below): c[1][n] = alpha * a[1][k] .
 * op(B)[k][n] + beta * c, without OpenBLAS's packing of B (which costs more than the product at this size).
 * B as stored ([k][n]): 16-column vectors of c accumulate k scaled rows of B;
 * transposed ([n][k]): one dot product per column. Large ones split their
 * columns over the thread pool, so each thread streams its part of B; a long
 * k with few columns is summed in two halves (which two threads split). */
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
/* B as stored with k >= GEMV_HALVES_K and n <= GEMV_HALVES_N: the sum in two halves (below). */
#define GEMV_HALVES_K 512
#define GEMV_HALVES_N 1024

static float finish(const struct gemv_job *g, float acc, int64_t j) {
    return g->beta == 0.0f ? g->alpha * acc : g->alpha * acc + g->beta * g->c[j];
}

#if defined(__AVX512F__)
/* Rows of B per pass of the zero-skipping loop below (its index list). */
#define GEMV_SKIP_ROWS 1024

/* acc[v] += x[i] B[i][j + 16 v] over the rows i in [i0, i1) with x[i] != 0, in
 * order: a row times zero adds nothing (to a sum that starts at +0, for finite
 * B), so skipping it gives the same bits and spares reading the row. The input
 * of a dense layer behind relu (and pooling) is often a third or more zeros,
 * and at batch 1 the layer's time is the reading of B. NaN x are kept. */
static int64_t rows_nonzero(const struct gemv_job *g, int64_t i0, int64_t i1, int32_t *idx) { /* i - i0 */
    int64_t cnt = 0, i = i0;
    const __m512i step = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    if (g->xs == 1)
        for (; i + 16 <= i1; i += 16) {
            __mmask16 nz = _mm512_cmp_ps_mask(_mm512_loadu_ps(g->x + i), _mm512_setzero_ps(), _CMP_NEQ_UQ);
            _mm512_mask_compressstoreu_epi32(idx + cnt, nz,
                                             _mm512_add_epi32(step, _mm512_set1_epi32((int)(i - i0))));
            cnt += __builtin_popcount(nz);
        }
    for (; i < i1; i++)
        if (!(g->x[i * g->xs] == 0.0f)) idx[cnt++] = (int32_t)(i - i0);
    return cnt;
}

/* acc[0..NV) += x[i] B[i][j + 16 v] over the cnt rows i0 + idx[q], NV whole
 * vectors (inlined per NV, so the accumulators stay in registers). */
static inline __attribute__((always_inline)) void rows_full(const struct gemv_job *g, const int NV,
                                                            const float *row, int64_t i0, const int32_t *idx,
                                                            int64_t cnt, __m512 *acc) {
    for (int64_t q = 0; q < cnt; q++) {
        int64_t i = i0 + idx[q];
        const float *r = row + i * g->ldb;
        __m512 xb = _mm512_set1_ps(g->x[i * g->xs]);
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[v] = _mm512_fmadd_ps(_mm512_loadu_ps(r + 16 * v), xb, acc[v]);
    }
}

/* Columns [j0, j1) of B as stored over its rows [k0, k1): rows with x[i] != 0
 * only (above). part NULL: c = alpha sum + beta c; else part[j] = the sum. */
static void cols_rows_part(const struct gemv_job *g, int64_t j0, int64_t j1, int64_t k0, int64_t k1,
                           float *part) {
    int32_t idx[GEMV_SKIP_ROWS];
    for (int64_t j = j0; j < j1; j += 16 * GEMV_VECS) {
        int64_t left = j1 - j;
        int nv = left >= 16 * GEMV_VECS ? GEMV_VECS : (int)((left + 15) / 16);
        __mmask16 last = (__mmask16)(left >= 16 * nv ? 0xffff : (1u << (left - 16 * (nv - 1))) - 1);
        __m512 acc[GEMV_VECS];
        for (int v = 0; v < GEMV_VECS; v++) acc[v] = _mm512_setzero_ps();
        const float *row = g->b + j;
        for (int64_t i0 = k0; i0 < k1; i0 += GEMV_SKIP_ROWS) {
            int64_t i1 = k1 - i0 < GEMV_SKIP_ROWS ? k1 : i0 + GEMV_SKIP_ROWS;
            int64_t cnt = rows_nonzero(g, i0, i1, idx);
            /* The common cases without masks: 8 vectors, or the 4 of half a
             * 128-column layer split over two threads. */
            if (nv == GEMV_VECS && last == 0xffff)
                rows_full(g, GEMV_VECS, row, i0, idx, cnt, acc);
            else if (nv == 4 && last == 0xffff)
                rows_full(g, 4, row, i0, idx, cnt, acc);
            else
                for (int64_t q = 0; q < cnt; q++) {
                    int64_t i = i0 + idx[q];
                    const float *r = row + i * g->ldb;
                    __m512 xb = _mm512_set1_ps(g->x[i * g->xs]);
                    for (int v = 0; v < nv; v++) {
                        __mmask16 m = v == nv - 1 ? last : 0xffff;
                        acc[v] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, r + 16 * v), xb, acc[v]);
                    }
                }
        }
        for (int v = 0; v < nv; v++) {
            __mmask16 m = v == nv - 1 ? last : 0xffff;
            if (part) {
                _mm512_mask_storeu_ps(part + j + 16 * v, m, acc[v]);
                continue;
            }
            __m512 r = _mm512_mul_ps(_mm512_set1_ps(g->alpha), acc[v]);
            if (g->beta != 0.0f)
                r = _mm512_fmadd_ps(_mm512_set1_ps(g->beta), _mm512_maskz_loadu_ps(m, g->c + j + 16 * v), r);
            _mm512_mask_storeu_ps(g->c + j + 16 * v, m, r);
        }
    }
}

static void cols_rows(const struct gemv_job *g, int64_t j0, int64_t j1) {
    cols_rows_part(g, j0, j1, 0, g->k, NULL);
}

/* c = alpha (p0 + p1) + beta c over n columns: the two halves' sums. */
static void halves_finish(const struct gemv_job *g, const float *p0, const float *p1) {
    for (int64_t j = 0; j < g->n; j += 16) {
        __mmask16 m = (__mmask16)(g->n - j >= 16 ? 0xffff : (1u << (g->n - j)) - 1);
        __m512 s = _mm512_add_ps(_mm512_maskz_loadu_ps(m, p0 + j), _mm512_maskz_loadu_ps(m, p1 + j));
        __m512 r = _mm512_mul_ps(_mm512_set1_ps(g->alpha), s);
        if (g->beta != 0.0f)
            r = _mm512_fmadd_ps(_mm512_set1_ps(g->beta), _mm512_maskz_loadu_ps(m, g->c + j), r);
        _mm512_mask_storeu_ps(g->c + j, m, r);
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

#if defined(__AVX512F__)
/* ---- A few rows (a dense layer on a slice of a batch): C [m][n] = alpha A B
 * + beta C with A [m][k] and B [k][n] as stored, without packing B (the
 * weights: packing them cost more than the product at m this small): tiles
 * of up to 6 rows by 4 vectors of 16 columns, 24 accumulators summing k in
 * order, B's rows read in place (a tile column of B stays in L2 across the
 * row tiles). */
struct rows_job {
    int64_t m, n, k;
    float alpha, beta;
    const float *a, *b;
    int64_t lda, ldb;
    float *c;
    int64_t ldc;
};

/* An R x (16 NV) tile, the last vector's columns `last` (R, NV constants
 * where inlined: every load but the last one unmasked, no FMA wasted on
 * missing vectors). k is summed by sgemm.c's blocks (NRT_SGEMM_KC), each
 * block's sums added to C, as sgemm.c does: the same bits. */
static inline __attribute__((always_inline)) void
rows_tile_nv(const struct rows_job *g, const int R, const int NV, int64_t i0, int64_t j, __mmask16 last) {
    const int64_t kc = g->k <= NRT_SGEMM_KC_WHOLE ? g->k : NRT_SGEMM_KC;
    const float *a = g->a + i0 * g->lda;
    for (int64_t k0 = 0; k0 < g->k; k0 += kc) {
        const int64_t k1 = g->k - k0 < kc ? g->k : k0 + kc;
        __m512 acc[6][4];
#pragma GCC unroll 6
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
        const float *row = g->b + k0 * g->ldb + j;
        for (int64_t i = k0; i < k1; i++, row += g->ldb) {
            __m512 bv[4];
#pragma GCC unroll 4
            for (int v = 0; v < NV - 1; v++) bv[v] = _mm512_loadu_ps(row + 16 * v);
            bv[NV - 1] = _mm512_maskz_loadu_ps(last, row + 16 * (NV - 1));
#pragma GCC unroll 6
            for (int r = 0; r < R; r++) {
                __m512 x = _mm512_set1_ps(a[r * g->lda + i]);
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(bv[v], x, acc[r][v]);
            }
        }
        /* the first block: C = alpha acc (+ beta C); the others: C += alpha acc */
#pragma GCC unroll 6
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                __mmask16 m = v == NV - 1 ? last : 0xffff;
                float *c = g->c + (i0 + r) * g->ldc + j + 16 * v;
                __m512 y = g->alpha != 1.0f ? _mm512_mul_ps(_mm512_set1_ps(g->alpha), acc[r][v]) : acc[r][v];
                if (k0 > 0)
                    y = _mm512_add_ps(_mm512_maskz_loadu_ps(m, c), y);
                else if (g->beta != 0.0f)
                    y = _mm512_fmadd_ps(_mm512_set1_ps(g->beta), _mm512_maskz_loadu_ps(m, c), y);
                _mm512_mask_storeu_ps(c, m, y);
            }
    }
}

/* An R x (16 nv) tile (nv 1..4). */
static inline __attribute__((always_inline)) void rows_tile(const struct rows_job *g, const int R, int64_t i0,
                                                            int64_t j, int nv, __mmask16 last) {
    switch (nv) {
    case 4:
        rows_tile_nv(g, R, 4, i0, j, last);
        break;
    case 3:
        rows_tile_nv(g, R, 3, i0, j, last);
        break;
    case 2:
        rows_tile_nv(g, R, 2, i0, j, last);
        break;
    default:
        rows_tile_nv(g, R, 1, i0, j, last);
        break;
    }
}

/* Rows per task of the split (a multiple of the tile's 6): more rows than
 * that are split by rows too, so that a few column blocks still keep every
 * thread busy. Each element's sum is the same whatever the split. */
#define ROWS_CHUNK 24

/* Tasks [lo, hi): (column block of 64, chunk of ROWS_CHUNK rows), by column block. */
static void rows_blocks(void *arg, int64_t lo, int64_t hi) {
    const struct rows_job *g = arg;
    const int64_t chunks = (g->m + ROWS_CHUNK - 1) / ROWS_CHUNK;
    for (int64_t t = lo; t < hi; t++) {
        int64_t j = t / chunks * 64, left = g->n - j, r0 = t % chunks * ROWS_CHUNK;
        int64_t r1 = r0 + ROWS_CHUNK < g->m ? r0 + ROWS_CHUNK : g->m;
        int nv = left >= 64 ? 4 : (int)((left + 15) / 16);
        __mmask16 last = (__mmask16)(left >= 16 * nv ? 0xffff : (1u << (left - 16 * (nv - 1))) - 1);
        for (int64_t i0 = r0; i0 < r1;) {
            int64_t rows = r1 - i0;
            if (rows >= 6)
                rows_tile(g, 6, i0, j, nv, last), i0 += 6;
            else if (rows >= 4)
                rows_tile(g, 4, i0, j, nv, last), i0 += 4;
            else if (rows >= 2)
                rows_tile(g, 2, i0, j, nv, last), i0 += 2;
            else
                rows_tile(g, 1, i0, j, nv, last), i0 += 1;
        }
    }
}
#endif

int nrt_sgemm_rows(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
#if defined(__AVX512F__)
    if (ta || tb || m < 2 || m > NRT_SGEMM_ROWS_MAX || k < 256 || n < 16 || n > 2048) return 0;
    struct rows_job g = {m, n, k, alpha, beta, a, b, lda, ldb, c, ldc};
    int64_t blocks = (n + 63) / 64 * ((m + ROWS_CHUNK - 1) / ROWS_CHUNK);
    if (2.0 * (double)m * (double)n * (double)k < GEMV_SPLIT_FLOPS || nrt_threads_get() < 2 ||
        nrt_threads_inside())
        rows_blocks(&g, 0, blocks);
    else
        nrt_parallel_for(blocks, 1, rows_blocks, &g);
    return 1;
#else
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)c, (void)ldc;
    return 0;
#endif
}

#if defined(__AVX512F__)
/* B as stored with a long k and few columns (mnist_cnn's 1600x128 dense
 * layer): the sum over k in two halves, added at the end, whatever the
 * threads (so one thread and two give the same bits). Split over two threads
 * by halves, each streams a contiguous half of B (rows [0, k/2) or [k/2, k))
 * that stays in its core's L2 from run to run; split by columns, each would
 * read every row's part, and the L2 prefetcher fetches the rows whole. */
struct halves_job {
    const struct gemv_job *g;
    int64_t blocks; /* column blocks of 16 GEMV_VECS */
    float *part[2]; /* the halves' sums [n] */
};

/* Tasks: (half, column block), half-major. */
static void halves_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct halves_job *h = arg;
    const struct gemv_job *g = h->g;
    for (int64_t t = lo; t < hi; t++) {
        int64_t half = t / h->blocks, j0 = t % h->blocks * 16 * GEMV_VECS;
        int64_t j1 = j0 + 16 * GEMV_VECS < g->n ? j0 + 16 * GEMV_VECS : g->n;
        cols_rows_part(g, j0, j1, half ? g->k / 2 : 0, half ? g->k : g->k / 2, h->part[half]);
    }
}

static int halves(const struct gemv_job *g) {
    if (g->tb || g->k < GEMV_HALVES_K || g->n > GEMV_HALVES_N) return 0;
    float part[2][GEMV_HALVES_N];
    struct halves_job h = {g, (g->n + 16 * GEMV_VECS - 1) / (16 * GEMV_VECS), {part[0], part[1]}};
    if (2.0 * (double)g->n * (double)g->k < GEMV_SPLIT_FLOPS || nrt_threads_get() < 2 || nrt_threads_inside())
        halves_tasks(&h, 0, 2 * h.blocks);
    else
        nrt_parallel_for(2 * h.blocks, 1, halves_tasks, &h);
    halves_finish(g, part[0], part[1]);
    return 1;
}
#endif

void nrt_sgemv_row(int ta, int tb, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c) {
    struct gemv_job g = {tb, n, k, alpha, beta, a, ta ? lda : 1, b, ldb, c};
#if defined(__AVX512F__)
    if (halves(&g)) return;
#endif
    int64_t blocks = (n + GEMV_BLOCK - 1) / GEMV_BLOCK;
    if (2.0 * (double)n * (double)k < GEMV_SPLIT_FLOPS || nrt_threads_get() < 2 || nrt_threads_inside())
        gemv_blocks(&g, 0, blocks);
    else
        nrt_parallel_for(blocks, 1, gemv_blocks, &g);
}

/* ---- Skinny products (nrt_sgemm_skinny): C with one column (a dense layer
 * of one unit: its forward, op(A) by rows, and its weight gradient, op(A) by
 * columns), or a depth of a few (its input gradient: an outer product). The
 * packed GEMM's 12 x 32 register tile would run them with 31 of its 32
 * columns idle, or spend a tile's set-up and a packing pass per few FMAs.
 * Each element of C gets the packed GEMM's arithmetic, bit for bit (sgemm.c's
 * tile): k summed in order from 0, one fused multiply-add per step, by blocks
 * of NRT_SGEMM_KC past NRT_SGEMM_KC_WHOLE; a block's sum times alpha, plus
 * beta C (the first block, beta != 0) or added to C (the others). So the
 * result of a row depends neither on M nor on how the pool splits C. */
#if defined(__AVX512F__)
#include "runtime/transpose16.h"

/* One call's operands, the transposes folded into strides. */
struct skinny_job {
    int64_t m, n, k;
    float alpha, beta;
    const float *a;
    int64_t ars, acs; /* op(A)[i][q] at a[i ars + q acs] */
    const float *b;
    int64_t brs, bcs; /* op(B)[q][j] at b[q brs + j bcs] */
    float *c;
    int64_t ldc;
};

/* Products below this many FLOPs (or, for the outer products, elements of C
 * times 8) run on the calling thread. */
#define SKINNY_SPLIT_FLOPS 2e5
/* The largest depth taken as an outer product. */
#define SKINNY_OUTER_K 8
/* Columns of op(A) (rows of C) per pass of the column sums: 8 vectors. */
#define SKINNY_COLS (16 * 8)
/* The outer products' register tile: rows by vectors of 16 columns. */
#define OUTER_R 6
#define OUTER_NV 4

static inline __mmask16 lanes(int64_t w) { return w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1); }

/* The lanes msk of 16 elements of C ldc apart. */
static inline __m512 c_load(const float *c, int64_t ldc, __mmask16 msk) {
    if (ldc == 1) return _mm512_maskz_loadu_ps(msk, c);
    float t[16] = {0};
    for (int l = 0; l < 16; l++)
        if (msk >> l & 1) t[l] = c[l * ldc];
    return _mm512_loadu_ps(t);
}

static inline void c_store(float *c, int64_t ldc, __mmask16 msk, __m512 v) {
    if (ldc == 1) {
        _mm512_mask_storeu_ps(c, msk, v);
        return;
    }
    float t[16];
    _mm512_storeu_ps(t, v);
    for (int l = 0; l < 16; l++)
        if (msk >> l & 1) c[l * ldc] = t[l];
}

/* A block's sums acc into C (sgemm.c's tile): the first block gives alpha acc
 * (+ beta prev, prev the old C, when beta != 0), a later one prev + alpha acc
 * (prev the sum so far). */
static inline __m512 block_finish(const struct skinny_job *g, __m512 acc, int first, __m512 prev) {
    const __m512 y = g->alpha != 1.0f ? _mm512_mul_ps(acc, _mm512_set1_ps(g->alpha)) : acc;
    if (!first) return _mm512_add_ps(prev, y);
    return g->beta != 0.0f ? _mm512_fmadd_ps(_mm512_set1_ps(g->beta), prev, y) : y;
}

/* The depth of the blocks k is summed by. */
static inline int64_t block_depth(int64_t k) { return k <= NRT_SGEMM_KC_WHOLE ? k : NRT_SGEMM_KC; }

/* acc (lane t: row t) += op(A)[t][q] op(B)[q] over the w <= 16 steps from q0
 * of the r-row group at a (r <= 16, the other lanes zero), in order: the 16 x
 * 16 block of A transposed in registers so that each step is one FMA. */
static inline __attribute__((always_inline)) __m512 dots_step(const struct skinny_job *g, int r,
                                                              const float *a, int64_t q0, int w, __m512 acc) {
    const __mmask16 qm = lanes(w);
    __m512 v[16];
#pragma GCC unroll 16
    for (int t = 0; t < 16; t++)
        v[t] = t < r ? _mm512_maskz_loadu_ps(qm, a + t * g->ars + q0) : _mm512_setzero_ps();
    nrt_transpose16_regs(v);
    if (w == 16) {
#pragma GCC unroll 16
        for (int j = 0; j < 16; j++)
            acc = _mm512_fmadd_ps(v[j], _mm512_set1_ps(g->b[(q0 + j) * g->brs]), acc);
    } else
        for (int j = 0; j < w; j++) acc = _mm512_fmadd_ps(v[j], _mm512_set1_ps(g->b[(q0 + j) * g->brs]), acc);
    return acc;
}

/* C's rows [i0, i0 + r) (r <= 16, a constant 16 where inlined so) of its one
 * column: lane t sums row i0 + t of op(A) (A by rows) times op(B)'s column. */
static inline __attribute__((always_inline)) void dots_group(const struct skinny_job *g, int64_t i0, int r) {
    const int64_t kc = block_depth(g->k);
    const float *a = g->a + i0 * g->ars;
    const __mmask16 rm = lanes(r);
    __m512 tot = g->beta != 0.0f ? c_load(g->c + i0 * g->ldc, g->ldc, rm) : _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 < g->k; k0 += kc) {
        const int64_t k1 = g->k - k0 < kc ? g->k : k0 + kc;
        __m512 acc = _mm512_setzero_ps();
        int64_t q0 = k0;
        for (; q0 + 16 <= k1; q0 += 16) acc = dots_step(g, r, a, q0, 16, acc);
        if (q0 < k1) acc = dots_step(g, r, a, q0, (int)(k1 - q0), acc);
        tot = block_finish(g, acc, k0 == 0, tot);
    }
    c_store(g->c + i0 * g->ldc, g->ldc, rm, tot);
}

/* Groups [lo, hi) of 16 rows. */
static void dots_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct skinny_job *g = arg;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t i0 = t * 16;
        if (g->m - i0 >= 16)
            dots_group(g, i0, 16);
        else
            dots_group(g, i0, (int)(g->m - i0));
    }
}

/* C's rows [i, i + 16 NV) (the last vector's lanes `last`) of one column from
 * op(A)'s columns (A transposed: op(A)[i][q] at a[i + q acs]): 16 NV sums in
 * order over q, each step a row of A times one element of op(B). */
static inline __attribute__((always_inline)) void cols_pass(const struct skinny_job *g, const int NV,
                                                            int64_t i, __mmask16 last) {
    const int64_t kc = block_depth(g->k);
    __m512 tot[8] = {0};
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
        tot[v] = g->beta != 0.0f ? c_load(g->c + (i + 16 * v) * g->ldc, g->ldc, v == NV - 1 ? last : 0xffff)
                                 : _mm512_setzero_ps();
    for (int64_t k0 = 0; k0 < g->k; k0 += kc) {
        const int64_t k1 = g->k - k0 < kc ? g->k : k0 + kc;
        __m512 acc[8];
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) acc[v] = _mm512_setzero_ps();
        for (int64_t q = k0; q < k1; q++) {
            const float *row = g->a + q * g->acs + i;
            const __m512 x = _mm512_set1_ps(g->b[q * g->brs]);
#pragma GCC unroll 8
            for (int v = 0; v < NV - 1; v++)
                acc[v] = _mm512_fmadd_ps(_mm512_loadu_ps(row + 16 * v), x, acc[v]);
            acc[NV - 1] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(last, row + 16 * (NV - 1)), x, acc[NV - 1]);
        }
#pragma GCC unroll 8
        for (int v = 0; v < NV; v++) tot[v] = block_finish(g, acc[v], k0 == 0, tot[v]);
    }
#pragma GCC unroll 8
    for (int v = 0; v < NV; v++)
        c_store(g->c + (i + 16 * v) * g->ldc, g->ldc, v == NV - 1 ? last : 0xffff, tot[v]);
}

/* Passes [lo, hi) of SKINNY_COLS rows of C. */
static void cols_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct skinny_job *g = arg;
    for (int64_t t = lo; t < hi; t++) {
        const int64_t i = t * SKINNY_COLS, left = g->m - i;
        if (left >= SKINNY_COLS) {
            cols_pass(g, 8, i, 0xffff);
            continue;
        }
        const int nv = (int)((left + 15) / 16);
        const __mmask16 last = lanes(left - 16 * (nv - 1));
        switch (nv) { /* each NV inlined: the accumulators in registers */
        case 7:
            cols_pass(g, 7, i, last);
            break;
        case 6:
            cols_pass(g, 6, i, last);
            break;
        case 5:
            cols_pass(g, 5, i, last);
            break;
        case 4:
            cols_pass(g, 4, i, last);
            break;
        case 3:
            cols_pass(g, 3, i, last);
            break;
        case 2:
            cols_pass(g, 2, i, last);
            break;
        default:
            cols_pass(g, nv == 8 ? 8 : 1, i, last);
            break;
        }
    }
}

/* Rows [i0, i0 + R) of C (R <= 6, a constant where inlined) from a depth of
 * a few (k <= SKINNY_OUTER_K, op(B) by rows), by tiles of R rows by NV <= 4
 * vectors of columns (the last one's lanes `last`): op(B)'s k rows scaled by
 * op(A)'s and summed in order, each vector of op(B) loaded once per tile. */
static inline __attribute__((always_inline)) void
outer_tile(const struct skinny_job *g, const int R, const int NV, int64_t i0, int64_t j, __mmask16 last) {
    __m512 acc[OUTER_R][OUTER_NV];
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) acc[r][v] = _mm512_setzero_ps();
    for (int64_t q = 0; q < g->k; q++) {
        const float *row = g->b + q * g->brs + j;
        __m512 bv[4];
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) bv[v] = _mm512_maskz_loadu_ps(v == NV - 1 ? last : 0xffff, row + 16 * v);
#pragma GCC unroll 6
        for (int r = 0; r < R; r++) {
            const __m512 x = _mm512_set1_ps(g->a[(i0 + r) * g->ars + q * g->acs]);
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) acc[r][v] = _mm512_fmadd_ps(x, bv[v], acc[r][v]);
        }
    }
    if (g->alpha == 1.0f && g->beta == 0.0f) { /* C = the sums (stores unmasked where whole: faster) */
#pragma GCC unroll 6
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int v = 0; v < NV; v++) {
                float *c = g->c + (i0 + r) * g->ldc + j + 16 * v;
                if (v < NV - 1 || last == 0xffff)
                    _mm512_storeu_ps(c, acc[r][v]);
                else
                    _mm512_mask_storeu_ps(c, last, acc[r][v]);
            }
        return;
    }
#pragma GCC unroll 6
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++) {
            const __mmask16 m = v == NV - 1 ? last : 0xffff;
            float *c = g->c + (i0 + r) * g->ldc + j + 16 * v;
            const __m512 old = g->beta != 0.0f ? _mm512_maskz_loadu_ps(m, c) : acc[r][v];
            _mm512_mask_storeu_ps(c, m, block_finish(g, acc[r][v], 1, old));
        }
}

/* Rows [i0, i0 + R) of C, all its columns. */
static inline __attribute__((always_inline)) void outer_rows(const struct skinny_job *g, const int R,
                                                             int64_t i0) {
    int64_t j = 0;
    for (; j + 16 * OUTER_NV <= g->n; j += 16 * OUTER_NV) outer_tile(g, R, OUTER_NV, i0, j, 0xffff);
    const int64_t left = g->n - j;
    const __mmask16 last = lanes(left - (left - 1) / 16 * 16);
    switch ((left + 15) / 16) { /* the last columns: one tile, its last vector masked */
    case 3:
        outer_tile(g, R, 3, i0, j, last);
        break;
    case 2:
        outer_tile(g, R, 2, i0, j, last);
        break;
    case 1:
        outer_tile(g, R, 1, i0, j, last);
        break;
    case 0:
        break;
    default:
        outer_tile(g, R, 4, i0, j, last);
        break;
    }
}

/* Tasks [lo, hi): groups of 6 rows. */
static void outer_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct skinny_job *g = arg;
    const int64_t i1 = hi * OUTER_R < g->m ? hi * OUTER_R : g->m;
    int64_t i = lo * OUTER_R;
    for (; i + OUTER_R <= i1; i += OUTER_R) outer_rows(g, OUTER_R, i);
    if (i + 4 <= i1) outer_rows(g, 4, i), i += 4;
    if (i + 2 <= i1) outer_rows(g, 2, i), i += 2;
    if (i < i1) outer_rows(g, 1, i);
}

/* Runs the tasks on the calling thread when the work is small (or the pool
 * is busy or single), else splits them. */
static void skinny_run(const struct skinny_job *g, int64_t tasks, double work,
                       void (*fn)(void *, int64_t, int64_t)) {
    if (work < SKINNY_SPLIT_FLOPS || nrt_threads_get() < 2 || nrt_threads_inside())
        fn((void *)g, 0, tasks);
    else
        nrt_parallel_for(tasks, 1, fn, (void *)g);
}
#endif

int nrt_sgemm_skinny(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
#if defined(__AVX512F__)
    if (m < 1 || n < 1 || k < 1) return 0;
    struct skinny_job g = {
        m, n, k, alpha, beta, a, ta ? 1 : lda, ta ? lda : 1, b, tb ? 1 : ldb, tb ? ldb : 1, c, ldc};
    const double flops = 2.0 * (double)m * (double)n * (double)k;
    if (n == 1 && !ta) { /* dot products of A's rows with op(B)'s column */
        skinny_run(&g, (m + 15) / 16, flops, dots_tasks);
        return 1;
    }
    if (n == 1) { /* sums of A's rows (op(A)'s columns) scaled by op(B)'s column */
        skinny_run(&g, (m + SKINNY_COLS - 1) / SKINNY_COLS, flops, cols_tasks);
        return 1;
    }
    if (m >= 2 && k <= SKINNY_OUTER_K && g.bcs == 1) { /* rows of op(B) scaled and summed */
        skinny_run(&g, (m + OUTER_R - 1) / OUTER_R, 8.0 * (double)m * (double)n, outer_tasks);
        return 1;
    }
    return 0;
#else
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)c, (void)ldc;
    return 0;
#endif
}
