/* runtime/attn.c -- the fused self-attention core (the IR's ATTENTION and
 * ATTENTION_GRAD, netrt.h): one task per (item, head) over the thread pool. A
 * task packs its head's rows of q (times the scale), k, v (and dy) out of the
 * rows of 3E floats into its scratch, zero-padded to multiples of 16 floats,
 * and transposes q (and dy) by 16 x 16 register blocks. The weights are kept
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
static inline v16 vmax(v16 a, v16 b) { return vsel(a > b, a, b); }
static const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

static int64_t up(int64_t x) { return (x + BLK - 1) / BLK * BLK; }

/* 2^x on 16 lanes for x <= 0 (the softmax's shifted scores times log2 e): n =
 * x rounded, 2^(x - n) by Cephes exp2f's polynomial on [-1/2, 1/2] (1.7e-7
 * relative), times 2^n. Below -125 it gives 2^-125 (a normal float, ~2e-38). */
static inline v16 vexp2(v16 x) {
    x = vsel(x < splat(-125.0f), splat(-125.0f), x);
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

static inline float lanes_sum(v16 v) {
    float x[BLK], a[BLK / 2], b[BLK / 4];
    vstore(x, v);
    for (int l = 0; l < BLK / 2; l++) a[l] = x[l] + x[l + BLK / 2];
    for (int l = 0; l < BLK / 4; l++) b[l] = a[l] + a[l + BLK / 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
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

/* Rows [tp][dp] of t rows of d floats at src (pitch ld) times mul, zero-padded
 * (vector by vector: GCC would make a copy by 1.0 a memmove call per row). */
static void pack(const float *src, int64_t ld, int64_t t, int64_t d, float mul, float *restrict dst) {
    const int64_t dp = up(d), tp = up(t);
    const v16 m = splat(mul);
    for (int64_t j = 0; j < t; j++) {
        const float *restrict s = src + j * ld;
        float *restrict o = dst + j * dp;
        int64_t c = 0;
        if (mul == 1.0f)
            for (; c + BLK <= d; c += BLK) vstore(o + c, vload(s + c) + (v16){0});
        else
            for (; c + BLK <= d; c += BLK) vstore(o + c, vload(s + c) * m);
        for (; c < d; c++) o[c] = s[c] * mul;
        for (; c < dp; c++) o[c] = 0.0f;
    }
    for (int64_t j = t * dp; j < tp * dp; j++) dst[j] = 0.0f;
}

/* dst [dp][tp] = the transpose of rows [tp][dp], by blocks of 16 x 16 in
 * registers: four rounds of swapping the off-diagonal halves of 2h x 2h blocks
 * (h = 8, 4, 2, 1), two rows at a time. */
static void transpose(const float *restrict src, int64_t tp, int64_t dp, float *restrict dst) {
#if defined(__clang__) /* no __builtin_shuffle with a mask vector: element by element */
    for (int64_t j = 0; j < tp; j++)
        for (int64_t c = 0; c < dp; c++) dst[c * tp + j] = src[j * dp + c];
#else
    typedef int32_t idx16 __attribute__((vector_size(BLK * sizeof(int32_t))));
#define HALF_MASKS(h)                                                                              \
    {(0 & h) ? 16 + 0 - h : 0,    (1 & h) ? 16 + 1 - h : 1,    (2 & h) ? 16 + 2 - h : 2,           \
     (3 & h) ? 16 + 3 - h : 3,    (4 & h) ? 16 + 4 - h : 4,    (5 & h) ? 16 + 5 - h : 5,           \
     (6 & h) ? 16 + 6 - h : 6,    (7 & h) ? 16 + 7 - h : 7,    (8 & h) ? 16 + 8 - h : 8,           \
     (9 & h) ? 16 + 9 - h : 9,    (10 & h) ? 16 + 10 - h : 10, (11 & h) ? 16 + 11 - h : 11,        \
     (12 & h) ? 16 + 12 - h : 12, (13 & h) ? 16 + 13 - h : 13, (14 & h) ? 16 + 14 - h : 14,        \
     (15 & h) ? 16 + 15 - h : 15},                                                                 \
    {                                                                                              \
        (0 & h) ? 16 + 0 : 0 + h, (1 & h) ? 16 + 1 : 1 + h, (2 & h) ? 16 + 2 : 2 + h,              \
            (3 & h) ? 16 + 3 : 3 + h, (4 & h) ? 16 + 4 : 4 + h, (5 & h) ? 16 + 5 : 5 + h,          \
            (6 & h) ? 16 + 6 : 6 + h, (7 & h) ? 16 + 7 : 7 + h, (8 & h) ? 16 + 8 : 8 + h,          \
            (9 & h) ? 16 + 9 : 9 + h, (10 & h) ? 16 + 10 : 10 + h, (11 & h) ? 16 + 11 : 11 + h,    \
            (12 & h) ? 16 + 12 : 12 + h, (13 & h) ? 16 + 13 : 13 + h, (14 & h) ? 16 + 14 : 14 + h, \
            (15 & h) ? 16 + 15 : 15 + h                                                            \
    }
    static const idx16 m[4][2] = {{HALF_MASKS(8)}, {HALF_MASKS(4)}, {HALF_MASKS(2)}, {HALF_MASKS(1)}};
#undef HALF_MASKS
    for (int64_t j0 = 0; j0 < tp; j0 += BLK)
        for (int64_t c0 = 0; c0 < dp; c0 += BLK) {
            v16 r[BLK];
            for (int i = 0; i < BLK; i++) r[i] = vload(src + (j0 + i) * dp + c0);
            for (int s = 0, h = 8; s < 4; s++, h /= 2)
                for (int i = 0; i < BLK; i++)
                    if (!(i & h)) {
                        const v16 a = r[i], b = r[i + h];
                        r[i] = __builtin_shuffle(a, b, m[s][0]);
                        r[i + h] = __builtin_shuffle(a, b, m[s][1]);
                    }
            for (int i = 0; i < BLK; i++) vstore(dst + (c0 + i) * tp + j0, r[i]);
        }
#endif
}

/* One task's view of its head: the packed operands and the weights by keys. */
struct head {
    int64_t t, tp, d, dp, nv; /* steps, steps padded, width, width padded, vectors of rows (tp / 16) */
    int causal;
    const float *kr, *qt; /* keys' rows [tp][dp]; q^T (scaled) [dp][tp] */
    float *pt;            /* the scores, then the weights, by keys: [t][tp] */
    float *mx, *inv;      /* per row: the largest score, then 1 / the sum of exps [tp] each */
};

/* Scores of keys j0..j0+R-1 (those < t) against the rows of J vectors from v:
 * pt[j][16 v'..] = sum_c k_jc qt[c][16 v'..]; the lanes of rows i < j of the
 * diagonal vector vd are -inf; mx is the running maximum. */
static inline __attribute__((always_inline)) void scores_rj(const int R, const int J, const struct head *hd,
                                                            int64_t j0, int64_t v, int64_t vd) {
    const float *restrict kr = hd->kr, *restrict qt = hd->qt;
    const int64_t tp = hd->tp, dp = hd->dp;
    v16 c[RMAX][JMAX];
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++) c[r][jj] = (v16){0};
    for (int64_t k = 0; k < hd->d; k++) {
        const float *bk = qt + k * tp + v * BLK;
        v16 bv[JMAX];
        for (int jj = 0; jj < J; jj++) bv[jj] = vload(bk + jj * BLK);
        for (int r = 0; r < R; r++) {
            const float s = kr[(j0 + r) * dp + k];
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

/* Prefetches rows [i0, i0 + n) of d floats at src (pitch ld), for the next
 * head while this one computes (its rows come from L3 or memory). */
static inline void prefetch_rows(const float *src, int64_t ld, int64_t i0, int64_t n, int64_t t, int64_t d) {
    for (int64_t i = i0; i < i0 + n && i < t; i++)
        for (int64_t c = 0; c < d; c += BLK) __builtin_prefetch(src + i * ld + c, 0, 3);
}

struct attn_job {
    const struct nrt_attn *g;
    const float *qkv, *y, *dy;
    float *out, *scratch;
};

static struct head head_of(const struct nrt_attn *g) {
    const int64_t d = g->e / g->h;
    return (struct head){g->t, up(g->t), d, up(d), up(g->t) / BLK, g->causal, NULL, NULL, NULL, NULL, NULL};
}

static void attn_fwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    struct head hd = head_of(g);
    const int64_t d = hd.d, dp = hd.dp, t = hd.t, tp = hd.tp, ld = 3 * g->e, R = dp <= 2 * BLK ? 8 : 4;
    float *restrict qs = jb->scratch + lo * nrt_attn_scratch_floats(t, d, 0), *restrict qt = qs + tp * dp;
    float *restrict kr = qt + dp * tp, *restrict vr = kr + tp * dp, *restrict pt = vr + tp * dp;
    float *restrict mx = pt + tp * tp, *restrict inv = mx + tp, *restrict acc = inv + tp;
    hd.kr = kr, hd.qt = qt, hd.pt = pt, hd.mx = mx, hd.inv = inv;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d;
        pack(base, ld, t, d, g->scale, qs);
        transpose(qs, tp, dp, qt);
        pack(base + g->e, ld, t, d, 1.0f, kr);
        pack(base + 2 * g->e, ld, t, d, 1.0f, vr);
        weights(&hd);
        const float *next = q + 1 < hi ? jb->qkv + (q + 1) / g->h * t * ld + (q + 1) % g->h * d : NULL;
        for (int64_t i0 = 0; i0 < t; i0 += R) { /* y_i = sum_j p_ji v_j / sum */
            const int64_t kn = g->causal && i0 + R < t ? i0 + R : t;
            if (next)
                for (int part = 0; part < 3; part++) prefetch_rows(next + part * g->e, ld, i0, R, t, d);
            tile((int)R, dp, pt + i0, 1, tp, vr, dp, 0, kn, acc, dp);
            put_rows((int)R, acc, dp, i0, t, d, inv + i0, jb->out + b * t * g->e + h * d, g->e);
        }
    }
}

/* dP^T of keys j0..j0+R-1 (< t) against the rows of J vectors from v: dp_ji =
 * v_j . dy_i; with p_ji normalised (stored back), ds_ji = p_ji (dp_ji - dy_i . y_i). */
static inline __attribute__((always_inline)) void dsoft_rj(const int R, const int J, const struct head *hd,
                                                           const float *restrict vr, const float *restrict gt,
                                                           const float *restrict dd, float *restrict dt,
                                                           int64_t j0, int64_t v) {
    const int64_t tp = hd->tp, dp = hd->dp;
    v16 c[RMAX][JMAX];
    for (int r = 0; r < R; r++)
        for (int jj = 0; jj < J; jj++) c[r][jj] = (v16){0};
    for (int64_t k = 0; k < hd->d; k++) {
        const float *bk = gt + k * tp + v * BLK;
        v16 bv[JMAX];
        for (int jj = 0; jj < J; jj++) bv[jj] = vload(bk + jj * BLK);
        for (int r = 0; r < R; r++) {
            const float s = vr[(j0 + r) * dp + k];
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
static void dsoft(const struct head *hd, const float *vr, const float *gt, const float *dd, float *dt) {
    for (int64_t kb = 0; kb * BLK < hd->t; kb++)
        for (int64_t v = hd->causal ? kb : 0; v < hd->nv; v += JMAX) {
            const int J = hd->nv - v < JMAX ? (int)(hd->nv - v) : JMAX, R = J <= 2 ? 8 : 4;
            for (int64_t j0 = kb * BLK; j0 < kb * BLK + BLK && j0 < hd->t; j0 += R) switch (J) {
                case 4:
                    dsoft_rj(4, 4, hd, vr, gt, dd, dt, j0, v);
                    break;
                case 3:
                    dsoft_rj(4, 3, hd, vr, gt, dd, dt, j0, v);
                    break;
                case 2:
                    dsoft_rj(8, 2, hd, vr, gt, dd, dt, j0, v);
                    break;
                default:
                    dsoft_rj(8, 1, hd, vr, gt, dd, dt, j0, v);
                }
        }
}

/* Per head: the weights as in the forward, dS^T by tiles of keys (q scaled in
 * the packing, so ds is kept without the scale: dq = scale ds k, dk = ds^T
 * (scale q)); then dk and dv by blocks of keys, dq by blocks of rows. */
static void attn_bwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    struct head hd = head_of(g);
    const int64_t d = hd.d, dp = hd.dp, t = hd.t, tp = hd.tp, ld = 3 * g->e, R = dp <= 2 * BLK ? 8 : 4;
    float *restrict qs = jb->scratch + lo * nrt_attn_scratch_floats(t, d, 1), *restrict qt = qs + tp * dp;
    float *restrict kr = qt + dp * tp, *restrict vr = kr + tp * dp, *restrict gr = vr + tp * dp;
    float *restrict gt = gr + tp * dp, *restrict pt = gt + dp * tp, *restrict dt = pt + tp * tp;
    float *restrict mx = dt + tp * tp, *restrict inv = mx + tp, *restrict dd = inv + tp, *restrict acc = dd + tp;
    hd.kr = kr, hd.qt = qt, hd.pt = pt, hd.mx = mx, hd.inv = inv;
    const float scale[RMAX] = {g->scale, g->scale, g->scale, g->scale, g->scale, g->scale, g->scale, g->scale},
                one[RMAX] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d, *dy = jb->dy + b * t * g->e + h * d,
                    *y = jb->y + b * t * g->e + h * d;
        float *o = jb->out + b * t * ld + h * d;
        pack(base, ld, t, d, g->scale, qs);
        transpose(qs, tp, dp, qt);
        pack(base + g->e, ld, t, d, 1.0f, kr);
        pack(base + 2 * g->e, ld, t, d, 1.0f, vr);
        pack(dy, g->e, t, d, 1.0f, gr);
        transpose(gr, tp, dp, gt);
        for (int64_t i = 0; i < tp; i++) { /* dy_i . y_i */
            float s = 0;
            if (i < t) {
                v16 a = {0};
                int64_t c = 0;
                for (; c + BLK <= d; c += BLK) a += vload(gr + i * dp + c) * vload(y + i * g->e + c);
                s = lanes_sum(a);
                for (; c < d; c++) s += gr[i * dp + c] * y[i * g->e + c];
            }
            dd[i] = s;
        }
        weights(&hd);
        dsoft(&hd, vr, gt, dd, dt);
        for (int64_t j = t * tp; j < (t + R - 1) / R * R * tp; j++) /* the last block of keys' rows past t */
            pt[j] = dt[j] = 0.0f;
        const int64_t nb = (q + 1) / g->h, nh = (q + 1) % g->h;
        for (int64_t j0 = 0; j0 < t; j0 += R) { /* dk_j = sum_i ds_ji (scale q_i), dv_j = sum_i p_ji dy_i */
            if (q + 1 < hi) {
                for (int part = 0; part < 3; part++)
                    prefetch_rows(jb->qkv + nb * t * ld + nh * d + part * g->e, ld, j0, R, t, d);
                prefetch_rows(jb->dy + nb * t * g->e + nh * d, g->e, j0, R, t, d);
                prefetch_rows(jb->y + nb * t * g->e + nh * d, g->e, j0, R, t, d);
            }
            const int64_t i0 = g->causal ? j0 : 0;
            tile((int)R, dp, dt + j0 * tp, tp, 1, qs, dp, i0, t, acc, dp);
            put_rows((int)R, acc, dp, j0, t, d, one, o + g->e, ld);
            tile((int)R, dp, pt + j0 * tp, tp, 1, gr, dp, i0, t, acc, dp);
            put_rows((int)R, acc, dp, j0, t, d, one, o + 2 * g->e, ld);
        }
        for (int64_t i0 = 0; i0 < t; i0 += R) { /* dq_i = scale sum_j ds_ji k_j */
            const int64_t kn = g->causal && i0 + R < t ? i0 + R : t;
            tile((int)R, dp, dt + i0, 1, tp, kr, dp, 0, kn, acc, dp);
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
