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

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

#include "runtime/transpose16.h"

#define MR 12           /* rows of the register tile */
#define NR 32           /* columns of the register tile (two vectors) */
#define KC NRT_SGEMM_KC /* rows of op(B) per packed block (K <= KC_WHOLE: all of K) */
#define KC_WHOLE NRT_SGEMM_KC_WHOLE
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
                    nrt_transpose16_regs(r);
                    for (int j = 0; j < 16; j++) _mm512_store_ps(d + (k + j) * NR + h * 16, r[j]);
                }
            for (; k < kb; k++)
                for (int j = 0; j < NR; j++) d[k * NR + j] = j < w ? s[j * ldb + k] : 0.0f;
        }
    }
}

/* acc[r][0..2) = sum over k < kb of A[r][k] * bp[k][0..32) for the rows x 32
 * tile (rows <= MR), with A[r][k] at a[r * rsa + k * csa] (inlined with one of
 * the strides a constant 1), prefetching pf's quota meanwhile. */
static inline __attribute__((always_inline)) void tile_acc(int rows, int64_t kb, const float *a, int64_t rsa,
                                                           int64_t csa, const float *restrict bp,
                                                           struct pf *pf, __m512 acc[MR][2]) {
    if (pf->n == 0 && pf->n2 > 0) pf->p = pf->p2, pf->n = pf->n2, pf->n2 = 0;
    const char *pp = pf->p;
    int64_t pn = pf->n < pf->quota ? pf->n : pf->quota;
    pf->p += pn * 64, pf->n -= pn;
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
}

/* The masks of a tile's two vectors for nr columns. */
static inline __mmask16 mask_lo(int nr) { return nr >= 16 ? 0xffff : (__mmask16)((1u << nr) - 1); }
static inline __mmask16 mask_hi(int nr) {
    return nr >= 32 ? 0xffff : nr <= 16 ? 0 : (__mmask16)((1u << (nr - 16)) - 1);
}

/* The rows x 32 tile (tile_acc) written to the mr x nr corner of C: C = alpha
 * * acc when mode 0, C = beta * C + alpha * acc when 1, C += alpha * acc when 2. */
static inline __attribute__((always_inline)) void tile(int rows, int64_t kb, const float *a, int64_t rsa,
                                                       int64_t csa, const float *restrict bp, struct pf *pf,
                                                       float *c, int64_t ldc, int mode, float alpha,
                                                       float beta, int mr, int nr) {
    __m512 acc[MR][2];
    tile_acc(rows, kb, a, rsa, csa, bp, pf, acc);
    const __mmask16 m0 = mask_lo(nr), m1 = mask_hi(nr);
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
        if (nr == NR) { /* whole: unmasked stores (a masked one costs more here) */
            _mm512_storeu_ps(cr, y0);
            _mm512_storeu_ps(cr + 16, y1);
        } else {
            _mm512_mask_storeu_ps(cr, m0, y0);
            _mm512_mask_storeu_ps(cr + 16, m1, y1);
        }
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

/* ---- Adam fused into its gradient's GEMM (nrt_sgemm_adam) */

/* The update's scalars, broadcast. */
struct adam_k {
    __m512 b1, c1, b2, c2, bc2, eps, step, decay, wd;
    int decays, l2; /* whether decay, wd are there */
};

static void adam_k_init(struct adam_k *s, const struct nrt_adam *u) {
    s->b1 = _mm512_set1_ps(*u->b1), s->c1 = _mm512_set1_ps(*u->c1);
    s->b2 = _mm512_set1_ps(*u->b2), s->c2 = _mm512_set1_ps(*u->c2);
    s->bc2 = _mm512_set1_ps(*u->bc2), s->eps = _mm512_set1_ps(*u->eps), s->step = _mm512_set1_ps(*u->step);
    s->decays = u->decay != NULL, s->l2 = u->wd != NULL;
    s->decay = _mm512_set1_ps(s->decays ? *u->decay : 1.0f), s->wd = _mm512_set1_ps(s->l2 ? *u->wd : 0.0f);
}

/* Each op rounded on its own (no contraction into a fused multiply-add):
 * the IR's sequence, bit for bit. */
#define RN (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
#define VMUL(x, y) _mm512_mul_round_ps(x, y, RN)
#define VADD(x, y) _mm512_add_round_ps(x, y, RN)

/* The update of the msk lanes of 16 elements at element p, g their gradient
 * (nrt_adam's sequence; every operand read before anything is stored). */
static inline __attribute__((always_inline)) void adam_vec(const struct adam_k *s, const struct nrt_adam *u,
                                                           int64_t p, __mmask16 msk, __m512 g) {
    const __m512 w = _mm512_maskz_loadu_ps(msk, u->w + p), m = _mm512_maskz_loadu_ps(msk, u->m + p);
    const __m512 v = _mm512_maskz_loadu_ps(msk, u->v + p);
    if (s->l2) g = VADD(g, VMUL(s->wd, w));
    const __m512 mn = VADD(VMUL(s->b1, m), VMUL(s->c1, g));
    const __m512 vn = VADD(VMUL(s->b2, v), VMUL(s->c2, VMUL(g, g)));
    const __m512 den = VADD(_mm512_div_round_ps(_mm512_sqrt_round_ps(vn, RN), s->bc2, RN), s->eps);
    const __m512 base = s->decays ? VMUL(w, s->decay) : w;
    const __m512 wn = _mm512_sub_round_ps(base, VMUL(s->step, _mm512_div_round_ps(mn, den, RN)), RN);
    _mm512_mask_storeu_ps(u->m_out + p, msk, mn);
    _mm512_mask_storeu_ps(u->v_out + p, msk, vn);
    _mm512_mask_storeu_ps(u->w_out + p, msk, wn);
}

/* n elements from p of the update, the gradient read from g (g[0] is element p). */
static void adam_span(const struct adam_k *s, const struct nrt_adam *u, int64_t p, int64_t n,
                      const float *g) {
    for (int64_t i = 0; i < n; i += 16) {
        const __mmask16 msk = n - i >= 16 ? 0xffff : (__mmask16)((1u << (n - i)) - 1);
        adam_vec(s, u, p + i, msk, _mm512_maskz_loadu_ps(msk, g + i));
    }
}

/* The rows x 32 tile (tile_acc), its mr x nr corner updated from registers:
 * C's element (r, j) is element p + r * ldu + j of the update's arrays. */
static inline __attribute__((always_inline)) void tile_adam(int rows, int64_t kb, const float *a, int64_t rsa,
                                                            int64_t csa, const float *restrict bp,
                                                            const struct adam_k *s, const struct nrt_adam *u,
                                                            int64_t p, int64_t ldu, int mr, int nr) {
    struct pf pf = {NULL, NULL, 0, 0, 0};
    __m512 acc[MR][2];
    tile_acc(rows, kb, a, rsa, csa, bp, &pf, acc);
    const __mmask16 m0 = mask_lo(nr), m1 = mask_hi(nr);
#pragma GCC unroll 12
    for (int r = 0; r < rows; r++) {
        if (r >= mr) break;
        adam_vec(s, u, p + r * ldu, m0, acc[r][0]);
        if (m1) adam_vec(s, u, p + r * ldu + 16, m1, acc[r][1]);
    }
}

static void tile_adam_rows(int64_t kb, const float *a, int64_t lda, const float *bp, const struct adam_k *s,
                           const struct nrt_adam *u, int64_t p, int64_t ldu, int nr) {
    tile_adam(MR, kb, a, lda, 1, bp, s, u, p, ldu, MR, nr);
}

static void tile_adam_cols(int64_t kb, const float *a, int64_t lda, const float *bp, const struct adam_k *s,
                           const struct nrt_adam *u, int64_t p, int64_t ldu, int nr) {
    tile_adam(MR, kb, a, 1, lda, bp, s, u, p, ldu, MR, nr);
}

/* The edge rows' tiles: 4, 8 or 12 rows of the packed A (MR per k). */
static void tile_adam_packed(int rows, int64_t kb, const float *a, const float *bp, const struct adam_k *s,
                             const struct nrt_adam *u, int64_t p, int64_t ldu, int mr, int nr) {
    if (rows <= 4)
        tile_adam(4, kb, a, 1, MR, bp, s, u, p, ldu, mr, nr);
    else if (rows <= 8)
        tile_adam(8, kb, a, 1, MR, bp, s, u, p, ldu, mr, nr);
    else
        tile_adam(MR, kb, a, 1, MR, bp, s, u, p, ldu, mr, nr);
}

/* Whether the fused kernel below takes a GEMM of depth k (one packed block). */
static int adam_own_fits(int64_t k) { return k >= 1 && k <= KC_WHOLE; }

/* nrt_sgemm_adam's GEMM and update of a block of m x n elements of C (u's
 * arrays from its first element on, rows ldu apart), single-threaded: op(B)
 * packed in blocks of NC columns of all k rows, each tile's sums updated from
 * registers; 0 when the packing buffer is missing (nothing written). */
static int sgemm_adam_own(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                          const float *b, int64_t ldb, const struct nrt_adam *u, int64_t ldu) {
    struct pack *pk = pack_get();
    if (!pk) return 0;
    struct adam_k s;
    adam_k_init(&s, u);
    for (int64_t jc = 0; jc < n; jc += NC) {
        const int64_t nc = n - jc < NC ? n - jc : NC;
        pack_b(tb, b, ldb, 0, jc, k, nc, pk->b);
        for (int64_t i = 0; i < m; i += MR) {
            const int mr = m - i < MR ? (int)(m - i) : MR;
            const float *ap = mr < MR ? pk->a : ta ? a + i : a + i * lda;
            if (mr < MR && ta) pack_a_cols(a, lda, i, mr, 0, k, pk->a);
            if (mr < MR && !ta) pack_a_rows(a, lda, i, 0, k, mr, pk->a);
            for (int64_t j = 0; j < nc; j += NR) {
                const int nr = nc - j < NR ? (int)(nc - j) : NR;
                const float *bp = pk->b + j * k;
                const int64_t p = i * ldu + jc + j;
                if (mr < MR)
                    tile_adam_packed(mr, k, ap, bp, &s, u, p, ldu, mr, nr);
                else if (ta)
                    tile_adam_cols(k, ap, lda, bp, &s, u, p, ldu, nr);
                else
                    tile_adam_rows(k, ap, lda, bp, &s, u, p, ldu, nr);
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

/* ------------------------------------------------------- nrt_sgemm_adam -- */

#if !defined(__AVX512F__)
static int adam_own_fits(int64_t k) {
    (void)k;
    return 0;
}

static int sgemm_adam_own(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                          const float *b, int64_t ldb, const struct nrt_adam *u, int64_t ldu) {
    (void)ta, (void)tb, (void)m, (void)n, (void)k, (void)a, (void)lda, (void)b, (void)ldb, (void)u, (void)ldu;
    return 0;
}
#endif

/* Rows or columns of C per task of the split (the register tile's): C is
 * split along its longer side, so that each thread packs only its part of
 * op(B) when that is the larger operand, and neither thread gets a larger
 * share of the tiles (G's first dense layer in the DCGAN, 100 x 6272: by
 * rows, 9 blocks of 12 went 5 to one thread and 4 to the other). */
#define ADAM_ROWS 12
#define ADAM_COLS 32
/* Below this much work (GEMM FLOPs plus about 64 per updated element) the
 * update runs on the calling thread. */
#define ADAM_SPLIT_WORK 2e6
/* GEMMs of fewer FLOPs or columns go through scratch, as nrt_sgemm takes
 * them (OpenBLAS: the register tile's 32 columns would be mostly idle). */
#define ADAM_OWN_FLOPS 5e5
#define ADAM_OWN_COLS 16

/* The update of elements [p0, p1), the gradient at g[p] for element p. */
static void adam_elems(const struct nrt_adam *u, int64_t p0, int64_t p1, const float *g) {
#if defined(__AVX512F__)
    struct adam_k s;
    adam_k_init(&s, u);
    adam_span(&s, u, p0, p1 - p0, g + p0);
#else
    const float b1 = *u->b1, c1 = *u->c1, b2 = *u->b2, c2 = *u->c2, bc2 = *u->bc2, eps = *u->eps;
    const float step = *u->step, decay = u->decay ? *u->decay : 1.0f, wd = u->wd ? *u->wd : 0.0f;
    for (int64_t p = p0; p < p1; p++) { /* ISO C: each op rounded, no contraction */
        const float w = u->w[p], m = u->m[p], v = u->v[p];
        float gv = g[p];
        if (u->wd) gv = gv + wd * w;
        const float mn = b1 * m + c1 * gv, vn = b2 * v + c2 * (gv * gv);
        const float den = sqrtf(vn) / bc2 + eps, base = u->decay ? w * decay : w;
        u->m_out[p] = mn, u->v_out[p] = vn, u->w_out[p] = base - step * (mn / den);
    }
#endif
}

/* One call's operands. */
struct adam_job {
    int ta, tb;
    int64_t m, n, k;
    const float *a, *b;
    int64_t lda, ldb;
    float *g; /* the scratch */
    const struct nrt_adam *u;
};

/* The block of C's rows [r0, r1) and columns [c0, c1): fused where the
 * packing buffer is there, else through the scratch (its GEMM, then its
 * update). */
static void adam_block(const struct adam_job *j, int64_t r0, int64_t r1, int64_t c0, int64_t c1) {
    const int64_t off = r0 * j->n + c0;
    const float *a = j->ta ? j->a + r0 : j->a + r0 * j->lda, *b = j->tb ? j->b + c0 * j->ldb : j->b + c0;
    struct nrt_adam u = *j->u;
    u.m += off, u.v += off, u.w += off, u.m_out += off, u.v_out += off, u.w_out += off;
    if (sgemm_adam_own(j->ta, j->tb, r1 - r0, c1 - c0, j->k, a, j->lda, b, j->ldb, &u, j->n)) return;
    nrt_sgemm(j->ta, j->tb, r1 - r0, c1 - c0, j->k, 1.0f, a, j->lda, b, j->ldb, 0.0f, j->g + off, j->n);
    for (int64_t i = r0; i < r1; i++) adam_elems(j->u, i * j->n + c0, i * j->n + c1, j->g);
}

/* Row blocks [lo, hi) of ADAM_ROWS, all columns. */
static void adam_own_rows(void *arg, int64_t lo, int64_t hi) {
    const struct adam_job *j = arg;
    adam_block(j, lo * ADAM_ROWS, hi * ADAM_ROWS < j->m ? hi * ADAM_ROWS : j->m, 0, j->n);
}

/* Column blocks [lo, hi) of ADAM_COLS, all rows. */
static void adam_own_cols(void *arg, int64_t lo, int64_t hi) {
    const struct adam_job *j = arg;
    adam_block(j, 0, j->m, lo * ADAM_COLS, hi * ADAM_COLS < j->n ? hi * ADAM_COLS : j->n);
}

/* Elements [lo, hi) of the update from the scratch. */
static void adam_elems_chunk(void *arg, int64_t lo, int64_t hi) {
    const struct adam_job *j = arg;
    adam_elems(j->u, lo, hi, j->g);
}

void nrt_sgemm_adam(int ta, int tb, int64_t m, int64_t n, int64_t k, const float *a, int64_t lda,
                    const float *b, int64_t ldb, float *scratch, const struct nrt_adam *u) {
    if (m <= 0 || n <= 0) return;
    struct adam_job j = {ta, tb, m, n, k, a, b, lda, ldb, scratch, u};
    const int alone =
        2.0 * (double)m * (double)n * (double)k + 64.0 * (double)m * (double)n < ADAM_SPLIT_WORK ||
        nrt_threads_get() < 2 || nrt_threads_inside();
    if (adam_own_fits(k) && nrt_gemm_own_wanted() && n >= ADAM_OWN_COLS &&
        2.0 * (double)m * (double)n * (double)k >= ADAM_OWN_FLOPS) {
        if (alone)
            adam_block(&j, 0, m, 0, n);
        else if (n > m)
            nrt_parallel_for((n + ADAM_COLS - 1) / ADAM_COLS, 1, adam_own_cols, &j);
        else
            nrt_parallel_for((m + ADAM_ROWS - 1) / ADAM_ROWS, 1, adam_own_rows, &j);
        return;
    }
    /* The GEMM whole (split as nrt_sgemm splits it), then the update. */
    nrt_sgemm(ta, tb, m, n, k, 1.0f, a, lda, b, ldb, 0.0f, scratch, n);
    if (alone)
        adam_elems(u, 0, m * n, scratch);
    else
        nrt_parallel_for(m * n, 16384, adam_elems_chunk, &j);
}
