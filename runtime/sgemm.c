/* runtime/sgemm.c -- the runtime's own single-threaded SGEMM for AVX-512 (the
 * default for the large GEMMs where the CPU has it; OpenBLAS otherwise): a
 * 12x32 register tile (24 accumulators); op(B) packed into 32-column panels by
 * blocks of KC rows (read by rows of B), A read in place (by rows, or by
 * columns when transposed), the edge rows packed (4, 8 or 12-row tiles); while
 * a block computes, the next block's rows of B (and of a transposed A) are
 * prefetched into L2. The buffers are per thread, allocated once. Each C element sums k in order
 * within a block, blocks in order: the result does not depend on M, N or how
 * the pool splits C. Compiled with -O3 -march=native. */
#include "runtime/internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

#define MR 12  /* rows of the register tile */
#define NR 32  /* columns of the register tile (two vectors) */
#define KC 256 /* rows of op(B) per packed block (K <= KC_WHOLE: all of K) */
#define KC_WHOLE 384
#define NC 512 /* columns of op(B) per packed block */
#define KC_MAX KC_WHOLE

/* Lines to prefetch into L2 while a block computes (the next block's rows of
 * B and of a transposed A, which its packing reads from L3 otherwise without
 * overlap): n lines from p, quota per tile. */
struct pf {
    const char *p, *p2; /* n lines from p, then n2 from p2 */
    int64_t n, n2, quota;
};

/* This thread's packing buffers: op(B) blocks (KC_MAX x NC) and the edge rows
 * of A (MR x KC_MAX), allocated by nrt_sgemm_thread_ready (or on first use)
 * and freed when the thread ends. */
struct pack {
    float b[KC_MAX * NC];
    float a[MR * KC_MAX];
};

static pthread_key_t pack_key;
static pthread_once_t pack_once = PTHREAD_ONCE_INIT;
static _Thread_local struct pack *pack_mine;

static void pack_free(void *p) { free(p); }
static void pack_key_make(void) { pthread_key_create(&pack_key, pack_free); }

static struct pack *pack_get(void) {
    if (pack_mine) return pack_mine;
    pthread_once(&pack_once, pack_key_make);
    void *p = NULL;
    if (posix_memalign(&p, 64, sizeof(struct pack)) != 0) return NULL;
    pack_mine = p;
    pthread_setspecific(pack_key, p);
    return pack_mine;
}

/* r[j][i] = r[i][j] for 16 vectors of 16. */
static inline void transpose16(__m512 *r) {
    __m512 t[16];
    for (int j = 0; j < 16; j += 2) {
        t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 16; j += 4) {
        r[j] = _mm512_shuffle_ps(t[j], t[j + 2], 0x44);
        r[j + 1] = _mm512_shuffle_ps(t[j], t[j + 2], 0xee);
        r[j + 2] = _mm512_shuffle_ps(t[j + 1], t[j + 3], 0x44);
        r[j + 3] = _mm512_shuffle_ps(t[j + 1], t[j + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0x88);
        t[j + 4] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0xdd);
        t[j + 8] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0x88);
        t[j + 12] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0xdd);
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}

/* op(B) rows k0..k0+kb, columns j0..j0+nc into panels of NR columns (k-major,
 * zero past nc). */
static void pack_b(int tb, const float *b, int64_t ldb, int64_t k0, int64_t j0, int64_t kb, int64_t nc,
                   float *restrict dst) {
    if (!tb) {
        /* by rows of B, read in order (a panel's rows are ldb apart: read panel by
         * panel, they come from L3 at its latency), each into every panel */
        const int64_t full = nc / NR * NR, w = nc - full;
        const __mmask16 m0 = w >= 16 ? 0xffff : (__mmask16)((1u << w) - 1);
        const __mmask16 m1 = w <= 16 ? 0 : (__mmask16)((1u << (w - 16)) - 1);
        for (int64_t k = 0; k < kb; k++) {
            const float *s = b + (k0 + k) * ldb + j0;
            float *restrict d = dst + k * NR;
            for (int64_t p = 0; p < full; p += NR) {
                _mm512_store_ps(d + p * kb, _mm512_loadu_ps(s + p));
                _mm512_store_ps(d + p * kb + 16, _mm512_loadu_ps(s + p + 16));
            }
            if (w) {
                _mm512_store_ps(d + full * kb, _mm512_maskz_loadu_ps(m0, s + full));
                _mm512_store_ps(d + full * kb + 16, _mm512_maskz_loadu_ps(m1, s + full + 16));
            }
        }
        return;
    }
    for (int64_t p = 0; p < nc; p += NR) {
        const int64_t w = nc - p < NR ? nc - p : NR;
        float *restrict d = dst + p * kb;
        {
            /* op(B)[k][j] = b[j * ldb + k]: 16x16 transposes by blocks of k */
            const float *s = b + (j0 + p) * ldb + k0;
            int64_t k = 0;
            for (; k + 16 <= kb; k += 16)
                for (int h = 0; h < 2; h++) {
                    __m512 r[16];
                    for (int j = 0; j < 16; j++)
                        r[j] = h * 16 + j < w ? _mm512_loadu_ps(s + (h * 16 + j) * ldb + k)
                                              : _mm512_setzero_ps();
                    transpose16(r);
                    for (int j = 0; j < 16; j++) _mm512_store_ps(d + (k + j) * NR + h * 16, r[j]);
                }
            for (; k < kb; k++)
                for (int j = 0; j < NR; j++) d[k * NR + j] = j < w ? s[j * ldb + k] : 0.0f;
        }
    }
}

/* The rows x 32 tile (rows <= MR): acc = sum over k < kb of A[r][k] * bp[k][0..32), with A[r][k]
 * at a[r * rsa + k * csa] (inlined with one of the strides a constant 1), then
 * written to the mr x nr corner of C: C = alpha * acc when mode 0, C = beta * C
 * + alpha * acc when 1, C += alpha * acc when 2. */
static inline __attribute__((always_inline)) void tile(int rows, int64_t kb, const float *a, int64_t rsa,
                                                       int64_t csa, const float *restrict bp, struct pf *pf,
                                                       float *c, int64_t ldc, int mode, float alpha,
                                                       float beta, int mr, int nr) {
    if (pf->n == 0 && pf->n2 > 0) pf->p = pf->p2, pf->n = pf->n2, pf->n2 = 0;
    const char *pp = pf->p;
    int64_t pn = pf->n < pf->quota ? pf->n : pf->quota;
    pf->p += pn * 64, pf->n -= pn;
    __m512 acc[MR][2];
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++) acc[r][0] = acc[r][1] = _mm512_setzero_ps();
#pragma GCC unroll 2
    for (int64_t k = 0; k < kb; k++) {
        const __m512 b0 = _mm512_load_ps(bp + k * NR), b1 = _mm512_load_ps(bp + k * NR + 16);
        if (pn > 0) { /* one line of the next block's operands into L2 */
            _mm_prefetch(pp, _MM_HINT_T1);
            pp += 64, pn--;
        }
#pragma GCC unroll 12
        for (int r = 0; r < rows; r++) {
            const __m512 x = _mm512_set1_ps(a[r * rsa + k * csa]);
            acc[r][0] = _mm512_fmadd_ps(x, b0, acc[r][0]);
            acc[r][1] = _mm512_fmadd_ps(x, b1, acc[r][1]);
        }
    }
    const __mmask16 m0 = nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1);
    const __mmask16 m1 = nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
    const __m512 va = _mm512_set1_ps(alpha), vb = _mm512_set1_ps(beta);
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++) {
        if (r >= mr) break;
        float *cr = c + r * ldc;
        __m512 y0 = acc[r][0], y1 = acc[r][1];
        if (alpha != 1.0f) y0 = _mm512_mul_ps(y0, va), y1 = _mm512_mul_ps(y1, va);
        if (mode == 1) {
            y0 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m0, cr), y0);
            y1 = _mm512_fmadd_ps(vb, _mm512_maskz_loadu_ps(m1, cr + 16), y1);
        } else if (mode == 2) {
            y0 = _mm512_add_ps(_mm512_maskz_loadu_ps(m0, cr), y0);
            y1 = _mm512_add_ps(_mm512_maskz_loadu_ps(m1, cr + 16), y1);
        }
        _mm512_mask_storeu_ps(cr, m0, y0);
        _mm512_mask_storeu_ps(cr + 16, m1, y1);
    }
}

/* A read in place by rows (A[r][k] at a[r * lda + k]), or packed (at
 * a[k * MR + r]). */
static void tile_rows(int64_t kb, const float *a, int64_t lda, const float *bp, struct pf *pf, float *c,
                      int64_t ldc, int mode, float alpha, float beta, int mr, int nr) {
    tile(MR, kb, a, lda, 1, bp, pf, c, ldc, mode, alpha, beta, mr, nr);
}

static void tile_cols(int64_t kb, const float *a, int64_t lda, const float *bp, struct pf *pf, float *c,
                      int64_t ldc, int mode, float alpha, float beta, int mr, int nr) {
    tile(MR, kb, a, 1, lda, bp, pf, c, ldc, mode, alpha, beta, mr, nr);
}

static void tile_packed(int64_t kb, const float *a, const float *bp, struct pf *pf, float *c, int64_t ldc,
                        int mode, float alpha, float beta, int mr, int nr) {
    tile(MR, kb, a, 1, MR, bp, pf, c, ldc, mode, alpha, beta, mr, nr);
}

/* The edge rows' tiles: 4 or 8 rows of the packed A (MR per k). */
static void tile_packed4(int64_t kb, const float *a, const float *bp, struct pf *pf, float *c, int64_t ldc,
                         int mode, float alpha, float beta, int mr, int nr) {
    tile(4, kb, a, 1, MR, bp, pf, c, ldc, mode, alpha, beta, mr, nr);
}

static void tile_packed8(int64_t kb, const float *a, const float *bp, struct pf *pf, float *c, int64_t ldc,
                         int mode, float alpha, float beta, int mr, int nr) {
    tile(8, kb, a, 1, MR, bp, pf, c, ldc, mode, alpha, beta, mr, nr);
}

/* Rows i0..i0+mr (mr <= MR) of op(A), columns k0..k0+kb, packed k-major (MR
 * per k, zero past mr): A's edge rows. */
static void pack_a_rows(const float *a, int64_t lda, int64_t i0, int64_t k0, int64_t kb, int mr,
                        float *restrict dst) {
    for (int64_t k = 0; k < kb; k++)
        for (int r = 0; r < MR; r++) dst[k * MR + r] = r >= mr ? 0.0f : a[(i0 + r) * lda + k0 + k];
}

/* Transposed A's edge: rows i0..i0+mr (mr < MR) of op(A) (columns of A),
 * columns k0..k0+kb, packed k-major (MR per k, zero past mr). */
static void pack_a_cols(const float *a, int64_t lda, int64_t i0, int mr, int64_t k0, int64_t kb,
                        float *restrict dst) {
    const __mmask16 mk = (__mmask16)((1u << mr) - 1);
    for (int64_t k = 0; k < kb; k++)
        _mm512_mask_storeu_ps(dst + k * MR, 0x0fff, _mm512_maskz_loadu_ps(mk, a + (k0 + k) * lda + i0));
}

int nrt_sgemm_own_built(void) { return 1; }

void nrt_sgemm_thread_ready(void) { (void)pack_get(); }

int nrt_sgemm_own(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0 || k <= 0) return 0;
    struct pack *pk = pack_get();
    if (!pk) return 0;
    const int64_t kc = k <= KC_WHOLE ? k : KC;
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = n - jc < NC ? n - jc : NC;
        for (int64_t pc = 0; pc < k; pc += kc) {
            const int64_t kb = k - pc < kc ? k - pc : kc;
            const int mode = pc > 0 ? 2 : beta == 0.0f ? 0 : 1;
            pack_b(tb, b, ldb, pc, jc, kb, nc, pk->b);
            struct pf pf = {NULL, NULL, 0, 0, 0};
            if (pc + kb < k && !tb) { /* the next block's rows of B, then of a transposed A */
                const int64_t kn = k - pc - kb < kc ? k - pc - kb : kc;
                pf.p = (const char *)(b + (pc + kb) * ldb + jc);
                pf.n = ((kn - 1) * ldb + nc) * 4 / 64;
                if (ta) pf.p2 = (const char *)(a + (pc + kb) * lda), pf.n2 = kn * lda * 4 / 64;
                const int64_t tiles = (m + MR - 1) / MR * ((nc + NR - 1) / NR);
                pf.quota = (pf.n + pf.n2) / tiles + 1;
            }
            for (int64_t i = 0; i < m; i += MR) {
                const int mr = m - i < MR ? (int)(m - i) : MR;
                const float *ap = mr < MR ? pk->a : ta ? a + pc * lda + i : a + i * lda + pc;
                if (mr < MR && ta) pack_a_cols(a, lda, i, mr, pc, kb, pk->a);
                if (mr < MR && !ta) pack_a_rows(a, lda, i, pc, kb, mr, pk->a);
                for (int64_t j = 0; j < nc; j += NR) {
                    const int nr = nc - j < NR ? (int)(nc - j) : NR;
                    float *cp = c + i * ldc + jc + j;
                    const float *bp = pk->b + j * kb;
                    if (mr <= 4)
                        tile_packed4(kb, ap, bp, &pf, cp, ldc, mode, alpha, beta, mr, nr);
                    else if (mr <= 8)
                        tile_packed8(kb, ap, bp, &pf, cp, ldc, mode, alpha, beta, mr, nr);
                    else if (mr < MR)
                        tile_packed(kb, ap, bp, &pf, cp, ldc, mode, alpha, beta, mr, nr);
                    else if (ta)
                        tile_cols(kb, ap, lda, bp, &pf, cp, ldc, mode, alpha, beta, MR, nr);
                    else
                        tile_rows(kb, ap, lda, bp, &pf, cp, ldc, mode, alpha, beta, MR, nr);
                }
            }
        }
    }
    return 1;
}
#else
int nrt_sgemm_own_built(void) { return 0; }

void nrt_sgemm_thread_ready(void) {}

int nrt_sgemm_own(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)alpha, (void)a, (void)lda, (void)b, (void)ldb;
    (void)beta, (void)c, (void)ldc;
    return 0;
}
#endif
