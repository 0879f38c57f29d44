/* runtime/attn.c -- the fused self-attention core (the IR's ATTENTION and
 * ATTENTION_GRAD, netrt.h): one task per (item, head) over the thread pool. A
 * task transposes its head's q (times the scale; and dy) by 16 x 16 register
 * blocks into its scratch, zero-padded to multiples of 16, and reads k, v (q,
 * dy) in place from their rows (packed first where d is not a multiple of 16),
 * prefetching the next head's rows into L2. The weights are kept
 * by keys, P^T [key j][query i], so that a vector holds 16 query rows: a score
 * tile (R keys x J vectors of rows, summed over the head's width with each key
 * element broadcast) keeps the rows' running maxima as plain vector maxima, and
 * the softmax's exps, sums and masks are elementwise (no sums across lanes).
 * The products over keys or rows (y = P v, dq = dS k, dk = dS^T q, dv = P^T dy)
 * are register tiles of R rows x J blocks of 16 columns with a P or dS element
 * broadcast. When causal, key j's scores start at the block of 16 rows holding
 * row j and the products stop at the diagonal (blocks of R = 4 or 8). Nothing of
 * size T x T outlives a task; the backward recomputes the weights. Compiled
 * with -O3 -march=native -ffp-contract=fast. */
#include "runtime/netrt.h"

#include <math.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

#define BLK 16 /* floats per block: one AVX-512 register */
#define RMAX 8 /* rows (keys) per tile at most */
#define JMAX 4 /* blocks of 16 columns per tile at most */

/* A block as a GCC/clang vector (two AVX2 or four SSE registers where there is
 * no AVX-512), read and written at any float alignment. */
typedef float v16 __attribute__((vector_size(BLK * sizeof(float)), aligned(sizeof(float))));
typedef int32_t v16i __attribute__((vector_size(BLK * sizeof(int32_t)), aligned(sizeof(int32_t))));
typedef uint32_t v16u __attribute__((vector_size(BLK * sizeof(uint32_t)), aligned(sizeof(uint32_t))));

static inline v16 vload(const float *p) { return *(const v16 *)(const void *)p; }
static inline void vstore(float *p, v16 x) { *(v16 *)(void *)p = x; }
static inline v16 splat(float x) { return (v16){0} + x; }
static inline v16 vsel(v16i m, v16 a, v16 b) { return (v16)(((v16i)a & m) | ((v16i)b & ~m)); }
#if defined(__AVX512F__)
static inline v16 vmax(v16 a, v16 b) { return (v16)_mm512_max_ps((__m512)a, (__m512)b); }
#else
static inline v16 vmax(v16 a, v16 b) { return vsel(a > b, a, b); }
#endif
static const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static int64_t up(int64_t x) { return (x + BLK - 1) / BLK * BLK; }

/* 2^x on 16 lanes for x <= 0 (the softmax's shifted scores times log2 e): n =
 * x rounded, 2^(x - n) by Cephes exp2f's polynomial on [-1/2, 1/2] (1.7e-7
 * relative), times 2^n. Below -125 it gives 2^-125 (a normal float, ~2e-38). */
static inline v16 vexp2(v16 x) {
    x = vmax(x, splat(-125.0f));
    const v16 y = x + 12582912.0f; /* 1.5 * 2^23: n in y's low mantissa bits */
    const v16 n = y - 12582912.0f, f = x - n;
    v16 p = splat(1.535336188319500e-4f);
    p = p * f + 1.339887440266574e-3f;
    p = p * f + 9.618437357674640e-3f;
    p = p * f + 5.550332471162809e-2f;
    p = p * f + 2.402264791363012e-1f;
    p = p * f + 6.931472028550421e-1f;
    p = p * f + 1.0f;
#if defined(__AVX512F__)
    return (v16)_mm512_scalef_ps((__m512)p, (__m512)n);
#else
    return p * (v16)(((v16u)y + 127u) << 23); /* (n + 127) << 23: the float 2^n */
#endif
}

/* o[r * ldo + 0..16J) = sum_{k0 <= k < k1} a[r * ars + k * aks] b[k * ldb + 0..16J)
 * for r < R: R x J sums in registers (R and J constants where it is inlined). */
static inline __attribute__((always_inline)) void tile_rj(const int R, const int J, const float *restrict a,
                                                          int64_t ars, int64_t aks, const float *restrict b,
                                                          int64_t ldb, int64_t k0, int64_t k1,
                                                          float *restrict o, int64_t ldo) {
    v16 c[RMAX][JMAX];
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++) c[r][jj] = (v16){0};
    for (int64_t k = k0; k < k1; k++) {
        const float *ak = a + k * aks, *bk = b + k * ldb;
        v16 bv[JMAX];
        for (int jj = 0; jj < J; jj++) bv[jj] = vload(bk + jj * BLK);
        for (int r = 0; r < R; r++) {
            const float s = ak[r * ars];
            for (int jj = 0; jj < J; jj++) c[r][jj] += s * bv[jj];
        }
    }
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++) vstore(o + r * ldo + jj * BLK, c[r][jj]);
}

/* tile_rj over n columns (a multiple of 16): R = 8 rows by 1-2 blocks, or R = 4
 * rows by up to 4 blocks. */
static void tile(int R, int64_t n, const float *restrict a, int64_t ars, int64_t aks, const float *restrict b,
                 int64_t ldb, int64_t k0, int64_t k1, float *restrict o, int64_t ldo) {
    for (int64_t j = 0; j < n;) {
        const int64_t left = (n - j) / BLK;
        const int J = R == 8 ? (left >= 2 ? 2 : 1) : left >= JMAX ? JMAX : (int)left;
        if (R == 8 && J == 2)
            tile_rj(8, 2, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
        else if (R == 8)
            tile_rj(8, 1, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
        else if (J == 4)
            tile_rj(4, 4, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
        else if (J == 3)
            tile_rj(4, 3, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
        else if (J == 2)
            tile_rj(4, 2, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
        else
            tile_rj(4, 1, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
        j += J * BLK;
    }
}

/* Rows [tp][dp] of t rows of d floats at src (pitch ld), zero-padded. */
static void pack(const float *src, int64_t ld, int64_t t, int64_t d, float *restrict dst) {
    const int64_t dp = up(d), tp = up(t);
    for (int64_t j = 0; j < tp; j++)
        for (int64_t c = 0; c < dp; c++) dst[j * dp + c] = j < t && c < d ? src[j * ld + c] : 0.0f;
}

/* dst [dp][tp] = mul times the transpose of t rows of d floats at src (pitch
 * ld), zero-padded: by blocks of 16 x 16 in registers (AVX-512: unpacks of
 * 32 and 64 bits, then two rounds of 128-bit lane shuffles, 64 shuffles a
 * block, no control vectors; else element by element). */
static void transpose(const float *restrict src, int64_t ld, int64_t t, int64_t d, float mul,
                      float *restrict dst) {
    const int64_t tp = up(t), dp = up(d);
#if defined(__AVX512F__)
    const __m512 m = _mm512_set1_ps(mul);
    for (int64_t j0 = 0; j0 < tp; j0 += BLK)
        for (int64_t c0 = 0; c0 < dp; c0 += BLK) {
            const __mmask16 cols = d - c0 >= BLK ? 0xffff : (__mmask16)((1u << (d - c0)) - 1);
            __m512 r[BLK], u[BLK];
            for (int i = 0; i < BLK; i++)
                r[i] = j0 + i < t ? _mm512_mul_ps(_mm512_maskz_loadu_ps(cols, src + (j0 + i) * ld + c0), m)
                                  : _mm512_setzero_ps();
            for (int i = 0; i < BLK; i += 2) { /* lane l: r_i[4l], r_i+1[4l], r_i[4l+1], ... */
                u[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
                u[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
            }
            for (int i = 0; i < BLK; i += 4) { /* r[i + c] lane l: column 4l + c of rows i..i+3 */
                r[i] =
                    _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(u[i]), _mm512_castps_pd(u[i + 2])));
                r[i + 1] =
                    _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(u[i]), _mm512_castps_pd(u[i + 2])));
                r[i + 2] = _mm512_castpd_ps(
                    _mm512_unpacklo_pd(_mm512_castps_pd(u[i + 1]), _mm512_castps_pd(u[i + 3])));
                r[i + 3] = _mm512_castpd_ps(
                    _mm512_unpackhi_pd(_mm512_castps_pd(u[i + 1]), _mm512_castps_pd(u[i + 3])));
            }
            for (int h = 0; h < 2;
                 h++) /* u[c], u[c + 4] (c < 4) of rows 8h..8h+7: columns c, c + 8 | c + 4, c + 12 */
                for (int c = 0; c < 4; c++) {
                    u[8 * h + c] = _mm512_shuffle_f32x4(r[8 * h + c], r[8 * h + 4 + c], 0x88);
                    u[8 * h + 4 + c] = _mm512_shuffle_f32x4(r[8 * h + c], r[8 * h + 4 + c], 0xdd);
                }
            for (int c = 0; c < 8; c++) {
                _mm512_storeu_ps(dst + (c0 + c) * tp + j0, _mm512_shuffle_f32x4(u[c], u[8 + c], 0x88));
                _mm512_storeu_ps(dst + (c0 + 8 + c) * tp + j0, _mm512_shuffle_f32x4(u[c], u[8 + c], 0xdd));
            }
        }
#else
    for (int64_t c = 0; c < dp; c++)
        for (int64_t j = 0; j < tp; j++) dst[c * tp + j] = j < t && c < d ? src[j * ld + c] * mul : 0.0f;
#endif
}

/* One task's view of its head: the packed operands and the weights by keys. */
struct head {
    int64_t t, tp, d, dp, nv; /* steps, steps padded, width, width padded, vectors of rows (tp / 16) */
    int causal;
    const float *kr, *qt; /* keys' rows (pitch ldk); q^T (scaled) [dp][tp] */
    int64_t ldk;
    float *pt;       /* the scores, then the weights, by keys: [t][tp] */
    float *mx, *inv; /* per row: the largest score, then 1 / the sum of exps [tp] each */
};

/* Scores of keys j0..j0+R-1 (those < t) against the rows of J vectors from v:
 * pt[j][16 v'..] = sum_c k_jc qt[c][16 v'..]; the lanes of rows i < j of the
 * diagonal vector vd are -inf; mx is the running maximum. */
static inline __attribute__((always_inline)) void scores_rj(const int R, const int J, const struct head *hd,
                                                            int64_t j0, int64_t v, int64_t vd) {
    const float *restrict qt = hd->qt, *kr[RMAX];
    const int64_t tp = hd->tp;
    for (int r = 0; r < R; r++) kr[r] = hd->kr + (j0 + r < hd->t ? j0 + r : hd->t - 1) * hd->ldk;
    v16 c[RMAX][JMAX];
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++) c[r][jj] = (v16){0};
    for (int64_t k = 0; k < hd->d; k++) {
        const float *bk = qt + k * tp + v * BLK;
        v16 bv[JMAX];
        for (int jj = 0; jj < J; jj++) bv[jj] = vload(bk + jj * BLK);
        for (int r = 0; r < R; r++) {
            const float s = kr[r][k];
            for (int jj = 0; jj < J; jj++) c[r][jj] += s * bv[jj];
        }
    }
    const int rn = hd->t - j0 < R ? (int)(hd->t - j0) : R;
    for (int jj = 0; jj < J; jj++) {
        float *m = hd->mx + (v + jj) * BLK;
        v16 x = vload(m);
        for (int r = 0; r < rn; r++) {
            v16 s = c[r][jj];
            if (v + jj == vd) s = vsel(lane >= (int32_t)(j0 + r - vd * BLK), s, splat(-INFINITY));
            vstore(hd->pt + (j0 + r) * tp + (v + jj) * BLK, s);
            x = vmax(x, s);
        }
        vstore(m, x);
    }
}

/* The weights P^T of a head: the scores by tiles of keys, then by vectors of
 * rows e^(s - max) (0 where masked) and 1 / their sum. */
static void weights(const struct head *hd) {
    const int64_t t = hd->t, tp = hd->tp, nv = hd->nv;
    for (int64_t v = 0; v < nv; v++) vstore(hd->mx + v * BLK, splat(-INFINITY));
    for (int64_t kb = 0; kb * BLK < t; kb++) { /* keys by blocks of 16 */
        const int64_t vd = hd->causal ? kb : -1;
        for (int64_t v = hd->causal ? kb : 0; v < nv; v += JMAX) {
            const int J = nv - v < JMAX ? (int)(nv - v) : JMAX, R = J <= 2 ? 8 : 4;
            for (int64_t j0 = kb * BLK; j0 < kb * BLK + BLK && j0 < t; j0 += R) switch (J) {
                case 4:
                    scores_rj(4, 4, hd, j0, v, vd);
                    break;
                case 3:
                    scores_rj(4, 3, hd, j0, v, vd);
                    break;
                case 2:
                    scores_rj(8, 2, hd, j0, v, vd);
                    break;
                default:
                    scores_rj(8, 1, hd, j0, v, vd);
                }
        }
    }
    const float l2e = 1.44269504088896341f;
    for (int64_t v = 0; v < nv; v++) {
        const int64_t jn = hd->causal && (v + 1) * BLK < t ? (v + 1) * BLK : t;
        const v16 ml = vload(hd->mx + v * BLK) * l2e;
        v16 sum0 = {0}, sum1 = {0};
        int64_t j = 0;
        for (; j + 1 < jn; j += 2) {
            float *p0 = hd->pt + j * tp + v * BLK, *p1 = p0 + tp;
            v16 e0 = vexp2(vload(p0) * l2e - ml), e1 = vexp2(vload(p1) * l2e - ml);
            if (hd->causal && j + 1 >= v * BLK) {
                e0 = vsel(lane >= (int32_t)(j - v * BLK), e0, (v16){0});
                e1 = vsel(lane >= (int32_t)(j + 1 - v * BLK), e1, (v16){0});
            }
            vstore(p0, e0), vstore(p1, e1);
            sum0 += e0, sum1 += e1;
        }
        if (j < jn) {
            float *p0 = hd->pt + j * tp + v * BLK;
            v16 e0 = vexp2(vload(p0) * l2e - ml);
            if (hd->causal && j >= v * BLK) e0 = vsel(lane >= (int32_t)(j - v * BLK), e0, (v16){0});
            vstore(p0, e0);
            sum0 += e0;
        }
        vstore(hd->inv + v * BLK, 1.0f / (sum0 + sum1));
    }
}

#if !defined(__AVX512F__)
static inline float lanes_sum(v16 v) {
    float x[BLK], a[BLK / 2], b[BLK / 4];
    vstore(x, v);
    for (int l = 0; l < BLK / 2; l++) a[l] = x[l] + x[l + BLK / 2];
    for (int l = 0; l < BLK / 4; l++) b[l] = a[l] + a[l + BLK / 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}
#endif

/* dd[i] = a_i . b_i for i < t, 0 up to tp: by blocks of 16 rows, each row's
 * products summed in a vector, the 16 vectors' sums by a tree of lane
 * shuffles (AVX-512: 45 operations a block; else lane by lane). */
static void row_dots(const float *a, int64_t lda, const float *b, int64_t ldb, int64_t t, int64_t d,
                     float *restrict dd) {
    for (int64_t i0 = 0; i0 < up(t); i0 += BLK) {
        v16 x[BLK];
        float tail[BLK];
        for (int r = 0; r < BLK; r++) {
            v16 s = {0};
            float u = 0;
            if (i0 + r < t) {
                const float *ar = a + (i0 + r) * lda, *br = b + (i0 + r) * ldb;
                int64_t c = 0;
                for (; c + BLK <= d; c += BLK) s += vload(ar + c) * vload(br + c);
                for (; c < d; c++) u += ar[c] * br[c];
            }
            x[r] = s, tail[r] = u;
        }
#if defined(__AVX512F__)
        __m512 y[BLK / 2], z[BLK / 4], w[2];
        for (int k = 0; k < BLK / 2; k++) /* lane l: rows 2k, 2k+1's pairs of the four floats */
            y[k] = _mm512_add_ps(_mm512_unpacklo_ps((__m512)x[2 * k], (__m512)x[2 * k + 1]),
                                 _mm512_unpackhi_ps((__m512)x[2 * k], (__m512)x[2 * k + 1]));
        for (int k = 0; k < BLK / 4; k++) /* lane l: rows 4k..4k+3's sums of lane l */
            z[k] = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(y[2 * k]),
                                                                     _mm512_castps_pd(y[2 * k + 1]))),
                                 _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(y[2 * k]),
                                                                     _mm512_castps_pd(y[2 * k + 1]))));
        for (int k = 0; k < 2; k++)
            w[k] = _mm512_add_ps(_mm512_shuffle_f32x4(z[2 * k], z[2 * k + 1], 0x88),
                                 _mm512_shuffle_f32x4(z[2 * k], z[2 * k + 1], 0xdd));
        const v16 sums = (v16)_mm512_add_ps(_mm512_shuffle_f32x4(w[0], w[1], 0x88),
                                            _mm512_shuffle_f32x4(w[0], w[1], 0xdd));
        vstore(dd + i0, sums + vload(tail));
#else
        for (int r = 0; r < BLK; r++) dd[i0 + r] = lanes_sum(x[r]) + tail[r];
#endif
    }
}

/* Writes min(R, t - i0) rows of o (pitch ldo) times mul[r] to dst + i * ld, d floats each. */
static void put_rows(int R, const float *restrict o, int64_t ldo, int64_t i0, int64_t t, int64_t d,
                     const float *mul, float *restrict dst, int64_t ld) {
    for (int64_t r = 0; r < R && i0 + r < t; r++) {
        float *restrict yr = dst + (i0 + r) * ld;
        const float *restrict orow = o + r * ldo;
        int64_t c = 0;
        for (; c + BLK <= d; c += BLK) vstore(yr + c, vload(orow + c) * mul[r]);
        for (; c < d; c++) yr[c] = orow[c] * mul[r];
    }
}

/* Prefetches rows [i0, i0 + n) (< t) of d floats at src (pitch ld) into L2,
 * for the next head while this one computes: in a training step its rows come
 * from L3 (-20 % on a backward whose operands are out of L2; into L1 it stalled
 * on full fill buffers, and a prefetch for writing the outputs cost more). */
static inline void prefetch_rows(const float *src, int64_t ld, int64_t i0, int64_t n, int64_t t, int64_t d) {
    for (int64_t i = i0; i < i0 + n && i < t; i++)
        for (int64_t c = 0; c < d; c += BLK) __builtin_prefetch(src + i * ld + c, 0, 2);
}

struct attn_job {
    const struct nrt_attn *g;
    const float *qkv, *y, *dy;
    float *out, *scratch;
};

static struct head head_of(const struct nrt_attn *g) {
    const int64_t d = g->e / g->h;
    return (struct head){g->t, up(g->t), d, up(d), up(g->t) / BLK, g->causal,
                         NULL, NULL,     0, NULL,  NULL,           NULL};
}

/* The forward per head: q^T, the weights P^T, then y_i = sum_j p_ji v_j / sum by
 * blocks of R rows. k and v are read in place (packed first where d is not a
 * multiple of 16, so that no block reads past the rows). */
static void attn_fwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    struct head hd = head_of(g);
    const int64_t d = hd.d, dp = hd.dp, t = hd.t, tp = hd.tp, ld = 3 * g->e, R = dp <= 2 * BLK ? 8 : 4;
    float *restrict qt = jb->scratch + lo * nrt_attn_scratch_floats(t, d, 0), *restrict pt = qt + dp * tp;
    float *restrict mx = pt + tp * tp, *restrict inv = mx + tp, *restrict acc = inv + tp;
    float *restrict kr = acc + RMAX * dp, *restrict vr = kr + tp * dp;
    hd.qt = qt, hd.pt = pt, hd.mx = mx, hd.inv = inv;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d, *vs = base + 2 * g->e;
        int64_t ldv = ld;
        transpose(base, ld, t, d, g->scale, qt);
        hd.kr = base + g->e, hd.ldk = ld;
        if (d % BLK) {
            pack(base + g->e, ld, t, d, kr), hd.kr = kr, hd.ldk = dp;
            pack(vs, ld, t, d, vr), vs = vr, ldv = dp;
        }
        weights(&hd);
        const int64_t nb = (q + 1) / g->h, nh = (q + 1) % g->h;
        for (int64_t i0 = 0; i0 < t; i0 += R) {
            const int64_t kn = g->causal && i0 + R < t ? i0 + R : t;
            if (q + 1 < hi) /* the next head's rows */
                for (int part = 0; part < 3; part++)
                    prefetch_rows(jb->qkv + nb * t * ld + nh * d + part * g->e, ld, i0, R, t, d);
            tile((int)R, dp, pt + i0, 1, tp, vs, ldv, 0, kn, acc, dp);
            put_rows((int)R, acc, dp, i0, t, d, inv + i0, jb->out + b * t * g->e + h * d, g->e);
        }
    }
}

/* dP^T of keys j0..j0+R-1 (< t) against the rows of J vectors from v: dp_ji =
 * v_j . dy_i; with p_ji normalised (stored back), ds_ji = p_ji (dp_ji - dy_i . y_i). */
static inline __attribute__((always_inline)) void dsoft_rj(const int R, const int J, const struct head *hd,
                                                           const float *vs, int64_t ldv,
                                                           const float *restrict gt, const float *restrict dd,
                                                           float *restrict dt, int64_t j0, int64_t v) {
    const int64_t tp = hd->tp;
    const float *vr[RMAX];
    for (int r = 0; r < R; r++) vr[r] = vs + (j0 + r < hd->t ? j0 + r : hd->t - 1) * ldv;
    v16 c[RMAX][JMAX];
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++) c[r][jj] = (v16){0};
    for (int64_t k = 0; k < hd->d; k++) {
        const float *bk = gt + k * tp + v * BLK;
        v16 bv[JMAX];
        for (int jj = 0; jj < J; jj++) bv[jj] = vload(bk + jj * BLK);
        for (int r = 0; r < R; r++) {
            const float s = vr[r][k];
            for (int jj = 0; jj < J; jj++) c[r][jj] += s * bv[jj];
        }
    }
    const int rn = hd->t - j0 < R ? (int)(hd->t - j0) : R;
    for (int jj = 0; jj < J; jj++) {
        const v16 w = vload(hd->inv + (v + jj) * BLK), dv = vload(dd + (v + jj) * BLK);
        for (int r = 0; r < rn; r++) {
            float *p = hd->pt + (j0 + r) * tp + (v + jj) * BLK;
            const v16 pj = vload(p) * w;
            vstore(p, pj);
            vstore(dt + (j0 + r) * tp + (v + jj) * BLK, pj * (c[r][jj] - dv));
        }
    }
}

/* By tiles of keys and vectors of rows: the weights P^T (normalised, [t][tp])
 * and dS^T ([t][tp]) of a head. */
static void dsoft(const struct head *hd, const float *vs, int64_t ldv, const float *gt, const float *dd,
                  float *dt) {
    for (int64_t kb = 0; kb * BLK < hd->t; kb++)
        for (int64_t v = hd->causal ? kb : 0; v < hd->nv; v += JMAX) {
            const int J = hd->nv - v < JMAX ? (int)(hd->nv - v) : JMAX, R = J <= 2 ? 8 : 4;
            for (int64_t j0 = kb * BLK; j0 < kb * BLK + BLK && j0 < hd->t; j0 += R) switch (J) {
                case 4:
                    dsoft_rj(4, 4, hd, vs, ldv, gt, dd, dt, j0, v);
                    break;
                case 3:
                    dsoft_rj(4, 3, hd, vs, ldv, gt, dd, dt, j0, v);
                    break;
                case 2:
                    dsoft_rj(8, 2, hd, vs, ldv, gt, dd, dt, j0, v);
                    break;
                default:
                    dsoft_rj(8, 1, hd, vs, ldv, gt, dd, dt, j0, v);
                }
        }
}

/* The backward per head: q^T and dy^T, dy_i . y_i, the weights as in the
 * forward, P^T normalised and dS^T by tiles of keys (ds without the scale: dq =
 * scale ds k, dk = scale ds^T q); then dk and dv by blocks of keys, dq by
 * blocks of rows. q, k, v and dy are read in place (packed first where d is not
 * a multiple of 16). */
static void attn_bwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    struct head hd = head_of(g);
    const int64_t d = hd.d, dp = hd.dp, t = hd.t, tp = hd.tp, ld = 3 * g->e, R = dp <= 2 * BLK ? 8 : 4;
    float *restrict qt = jb->scratch + lo * nrt_attn_scratch_floats(t, d, 1), *restrict gt = qt + dp * tp;
    float *restrict pt = gt + dp * tp, *restrict dt = pt + tp * tp, *restrict mx = dt + tp * tp;
    float *restrict inv = mx + tp, *restrict dd = inv + tp, *restrict acc = dd + tp;
    float *restrict qr = acc + RMAX * dp, *restrict kr = qr + tp * dp, *restrict vr = kr + tp * dp,
                    *restrict gr = vr + tp * dp;
    hd.qt = qt, hd.pt = pt, hd.mx = mx, hd.inv = inv;
    float scale[RMAX], one[RMAX];
    for (int r = 0; r < RMAX; r++) scale[r] = g->scale, one[r] = 1.0f;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d, *dy = jb->dy + b * t * g->e + h * d,
                    *y = jb->y + b * t * g->e + h * d;
        const float *qs = base, *ks = base + g->e, *vs = base + 2 * g->e, *gs = dy;
        int64_t ldq = ld, ldg = g->e;
        float *o = jb->out + b * t * ld + h * d;
        transpose(base, ld, t, d, g->scale, qt);
        transpose(dy, g->e, t, d, 1.0f, gt);
        if (d % BLK) {
            pack(qs, ld, t, d, qr), pack(ks, ld, t, d, kr), pack(vs, ld, t, d, vr), pack(gs, g->e, t, d, gr);
            qs = qr, ks = kr, vs = vr, gs = gr, ldq = ldg = dp;
        }
        hd.kr = ks, hd.ldk = ldq;
        row_dots(dy, g->e, y, g->e, t, d, dd);
        weights(&hd);
        dsoft(&hd, vs, ldq, gt, dd, dt);
        for (int64_t j = t * tp; j < (t + R - 1) / R * R * tp; j++) /* the last block of keys' rows past t */
            pt[j] = dt[j] = 0.0f;
        const int64_t nb = (q + 1) / g->h, nh = (q + 1) % g->h;
        for (int64_t j0 = 0; j0 < t; j0 += R) { /* dk_j = scale sum_i ds_ji q_i, dv_j = sum_i p_ji dy_i */
            if (q + 1 < hi) {                   /* the next head's rows */
                const float *nq = jb->qkv + nb * t * ld + nh * d;
                for (int part = 0; part < 3; part++) prefetch_rows(nq + part * g->e, ld, j0, R, t, d);
                prefetch_rows(jb->dy + nb * t * g->e + nh * d, g->e, j0, R, t, d);
                prefetch_rows(jb->y + nb * t * g->e + nh * d, g->e, j0, R, t, d);
            }
            const int64_t i0 = g->causal ? j0 : 0;
            tile((int)R, dp, dt + j0 * tp, tp, 1, qs, ldq, i0, t, acc, dp);
            put_rows((int)R, acc, dp, j0, t, d, scale, o + g->e, ld);
            tile((int)R, dp, pt + j0 * tp, tp, 1, gs, ldg, i0, t, acc, dp);
            put_rows((int)R, acc, dp, j0, t, d, one, o + 2 * g->e, ld);
        }
        for (int64_t i0 = 0; i0 < t; i0 += R) { /* dq_i = scale sum_j ds_ji k_j */
            const int64_t kn = g->causal && i0 + R < t ? i0 + R : t;
            tile((int)R, dp, dt + i0, 1, tp, ks, ldq, 0, kn, acc, dp);
            put_rows((int)R, acc, dp, i0, t, d, scale, o, ld);
        }
    }
}

void nrt_attention(const struct nrt_attn *g, const float *qkv, float *y, float *scratch) {
    struct attn_job jb = {g, qkv, NULL, NULL, y, scratch};
    if (g->n > 0 && g->t > 0) nrt_parallel_for(g->n * g->h, 1, attn_fwd, &jb);
}

void nrt_attention_grad(const struct nrt_attn *g, const float *qkv, const float *y, const float *dy,
                        float *dqkv, float *scratch) {
    struct attn_job jb = {g, qkv, y, dy, dqkv, scratch};
    if (g->n > 0 && g->t > 0) nrt_parallel_for(g->n * g->h, 1, attn_bwd, &jb);
}
