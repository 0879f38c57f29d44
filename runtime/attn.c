/* runtime/attn.c -- the fused self-attention core (the IR's ATTENTION and
 * ATTENTION_GRAD, netrt.h): one task per (item, head) over the thread pool. A
 * task packs its head's q (times the scale), k and v (and dy) out of the rows of
 * 3E floats into its scratch, zero-padded to multiples of 16 floats, keys also
 * transposed, and works in blocks of RB = 4 rows. Every product is one register
 * tile (tile_j): RB rows times up to 4 blocks of 16 columns, summed over a range
 * of k with each A element broadcast and each B block loaded once per k, so a
 * score block, y = P v, dq = dS k, dk = dS^T q and dv = P^T dy all run the same
 * FMA loop. When causal, a block of rows stops at its last row's key (the masked
 * upper triangle is skipped but for the padding of a block) and the backward's
 * key blocks start at their own row. The softmax is in vectors (an exp of 16
 * lanes: the same Cephes formula as nrt_expf). The forward keeps nothing of size
 * T x T; the backward recomputes the weights and keeps p and ds ([T][T] each) for
 * the pass by keys. Compiled with -O3 -march=native -ffp-contract=fast. */
#include "runtime/netrt.h"

#include <math.h>

#define BLK 16 /* floats per block: one AVX-512 register */
#define RB 4   /* rows per tile (NRT_ATTN_ROWS in netrt.h's scratch formula) */
#define JMAX 4 /* blocks of 16 columns per tile at most */

/* A block as a GCC/clang vector (two AVX2 or four SSE registers where there is
 * no AVX-512), read and written at any float alignment. */
typedef float v16 __attribute__((vector_size(BLK * sizeof(float)), aligned(sizeof(float))));
typedef int32_t v16i __attribute__((vector_size(BLK * sizeof(int32_t)), aligned(sizeof(int32_t))));

static inline v16 vload(const float *p) { return *(const v16 *)(const void *)p; }
static inline void vstore(float *p, v16 x) { *(v16 *)(void *)p = x; }
static inline v16 splat(float x) { return (v16){0} + x; }
static inline v16 vsel(v16i m, v16 a, v16 b) { return (v16)(((v16i)a & m) | ((v16i)b & ~m)); }

static int64_t up(int64_t x) { return (x + BLK - 1) / BLK * BLK; }

/* nrt_expf (netrt.h) on 16 lanes, step for step. */
static inline v16 vexp(v16 x) {
    x = vsel(x < splat(-88.0f), splat(-88.0f), x);
    x = vsel(x > splat(88.7f), splat(88.7f), x);
    const v16 n = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const v16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
    v16 p = splat(1.9875691500e-4f);
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const v16i s = (__builtin_convertvector(n, v16i) + 127) * 8388608;
    return p * (v16)s;
}

/* The sum and the largest of a block's floats, pairwise (4 steps of latency,
 * not 15 of a serial loop). */
static inline float lanes_sum(v16 v) {
    float x[BLK], a[BLK / 2], b[BLK / 4];
    vstore(x, v);
    for (int l = 0; l < BLK / 2; l++) a[l] = x[l] + x[l + BLK / 2];
    for (int l = 0; l < BLK / 4; l++) b[l] = a[l] + a[l + BLK / 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}
static inline float lanes_max(v16 v) {
    float x[BLK], a[BLK / 2], b[BLK / 4];
    vstore(x, v);
    for (int l = 0; l < BLK / 2; l++) a[l] = x[l] > x[l + BLK / 2] ? x[l] : x[l + BLK / 2];
    for (int l = 0; l < BLK / 4; l++) b[l] = a[l] > a[l + BLK / 4] ? a[l] : a[l + BLK / 4];
    const float c0 = b[0] > b[2] ? b[0] : b[2], c1 = b[1] > b[3] ? b[1] : b[3];
    return c0 > c1 ? c0 : c1;
}

/* o[r * ldo + 0..16J) = sum_{k0 <= k < k1} a[r * ars + k * aks] b[k * ldb + 0..16J)
 * for r < RB: RB x J sums in registers (J a constant where it is inlined). */
static inline __attribute__((always_inline)) void tile_j(const int J, const float *restrict a, int64_t ars,
                                                         int64_t aks, const float *restrict b, int64_t ldb,
                                                         int64_t k0, int64_t k1, float *restrict o,
                                                         int64_t ldo) {
    v16 c[RB][JMAX];
    for (int r = 0; r < RB; r++)
        for (int jj = 0; jj < J; jj++) c[r][jj] = (v16){0};
    for (int64_t k = k0; k < k1; k++) {
        const float *ak = a + k * aks, *bk = b + k * ldb;
        v16 bv[JMAX];
        for (int jj = 0; jj < J; jj++) bv[jj] = vload(bk + jj * BLK);
        for (int r = 0; r < RB; r++) {
            const float s = ak[r * ars];
            for (int jj = 0; jj < J; jj++) c[r][jj] += s * bv[jj];
        }
    }
    for (int r = 0; r < RB; r++)
        for (int jj = 0; jj < J; jj++) vstore(o + r * ldo + jj * BLK, c[r][jj]);
}

/* tile_j over n columns (a multiple of 16), up to 4 blocks at a time. */
static void tile(int64_t n, const float *restrict a, int64_t ars, int64_t aks, const float *restrict b,
                 int64_t ldb, int64_t k0, int64_t k1, float *restrict o, int64_t ldo) {
    for (int64_t j = 0; j < n;) {
        switch ((n - j) / BLK >= JMAX ? JMAX : (n - j) / BLK) {
        case 4:
            tile_j(4, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
            j += 4 * BLK;
            break;
        case 3:
            tile_j(3, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
            j += 3 * BLK;
            break;
        case 2:
            tile_j(2, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
            j += 2 * BLK;
            break;
        default:
            tile_j(1, a, ars, aks, b + j, ldb, k0, k1, o + j, ldo);
            j += BLK;
        }
    }
}

/* dst[0..dp) = mul src[0..d), zero from d on. */
static inline void row_copy(float *restrict dst, const float *restrict src, int64_t d, int64_t dp,
                            float mul) {
    int64_t c = 0;
    for (; c + BLK <= d; c += BLK) vstore(dst + c, vload(src + c) * mul);
    for (; c < d; c++) dst[c] = src[c] * mul;
    for (; c < dp; c++) dst[c] = 0.0f;
}

/* Rows [tp][dp] of t rows of d floats at src (pitch ld) times mul, zero-padded. */
static void pack(const float *src, int64_t ld, int64_t t, int64_t d, float mul, float *restrict dst) {
    const int64_t dp = up(d), tp = up(t);
    for (int64_t j = 0; j < t; j++) row_copy(dst + j * dp, src + j * ld, d, dp, mul);
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

/* The exps e^(s_j - max) of RB rows (pitch tp) in place over [0, kp), 0 from
 * kr[r] on (the keys row r may not see), the rows side by side (four chains of
 * maxima and sums in flight); inv[r] = 1 / row r's sum. */
static void rows_exp(float *restrict s, int64_t tp, int64_t kp, const int64_t *kr, float *inv) {
    const v16i lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    const v16 ninf = splat(-INFINITY);
    v16 m[RB], sum[RB];
    float mx[RB];
    for (int r = 0; r < RB; r++) m[r] = ninf, sum[r] = (v16){0};
    for (int64_t j = 0; j < kp; j += BLK)
        for (int r = 0; r < RB; r++) {
            const v16 x = vsel(lane + (int32_t)j < (int32_t)kr[r], vload(s + r * tp + j), ninf);
            m[r] = vsel(x > m[r], x, m[r]);
        }
    for (int r = 0; r < RB; r++) mx[r] = lanes_max(m[r]);
    for (int64_t j = 0; j < kp; j += BLK)
        for (int r = 0; r < RB; r++) {
            const v16 e =
                vsel(lane + (int32_t)j < (int32_t)kr[r], vexp(vload(s + r * tp + j) - mx[r]), (v16){0});
            vstore(s + r * tp + j, e);
            sum[r] += e;
        }
    for (int r = 0; r < RB; r++) inv[r] = 1.0f / lanes_sum(sum[r]);
}

/* The keys row i sees: j < kr. */
static int64_t row_keys(const struct nrt_attn *g, int64_t i) {
    return g->causal && i + 1 < g->t ? i + 1 : g->t;
}

/* Prefetches rows [i0, i0 + RB) of d floats at src (pitch ld), for the next
 * head while this one computes (its rows come from L3 or memory). */
static inline void prefetch_rows(const float *src, int64_t ld, int64_t i0, int64_t t, int64_t d) {
    for (int64_t i = i0; i < i0 + RB && i < t; i++)
        for (int64_t c = 0; c < d; c += BLK) __builtin_prefetch(src + i * ld + c, 0, 3);
}

struct attn_job {
    const struct nrt_attn *g;
    const float *qkv, *y, *dy;
    float *out, *scratch;
};

/* Writes min(RB, t - i0) rows of o (pitch ldo) times mul to dst + i * ld, d floats each. */
static void put_rows(const float *restrict o, int64_t ldo, int64_t i0, int64_t t, int64_t d, const float *mul,
                     float *restrict dst, int64_t ld) {
    for (int64_t r = 0; r < RB && i0 + r < t; r++) {
        float *restrict yr = dst + (i0 + r) * ld;
        const float *restrict orow = o + r * ldo;
        int64_t c = 0;
        for (; c + BLK <= d; c += BLK) vstore(yr + c, vload(orow + c) * mul[r]);
        for (; c < d; c++) yr[c] = orow[c] * mul[r];
    }
}

static void attn_fwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d;
        float *restrict qs = jb->scratch + lo * nrt_attn_scratch_floats(t, d, 0), *restrict kt = qs + tp * dp;
        float *restrict v = kt + dp * tp, *restrict s = v + tp * dp, *restrict acc = s + RB * tp;
        pack(base, ld, t, d, g->scale, qs);
        pack(base + g->e, ld, t, d, 1.0f, v); /* the keys' rows in v's place, for the transpose */
        transpose(v, tp, dp, kt);
        pack(base + 2 * g->e, ld, t, d, 1.0f, v);
        const float *next = q + 1 < hi ? jb->qkv + (q + 1) / g->h * t * ld + (q + 1) % g->h * d : NULL;
        for (int64_t i0 = 0; i0 < t; i0 += RB) {
            const int64_t kn = row_keys(g, i0 + RB - 1), kp = up(kn);
            if (next)
                for (int part = 0; part < 3; part++) prefetch_rows(next + part * g->e, ld, i0, t, d);
            tile(kp, qs + i0 * dp, dp, 1, kt, tp, 0, d, s, tp); /* the scores */
            float inv[RB];
            int64_t krow[RB];
            for (int r = 0; r < RB; r++) krow[r] = row_keys(g, i0 + r);
            rows_exp(s, tp, kp, krow, inv);
            tile(dp, s, tp, 1, v, dp, 0, kn, acc, dp); /* the exps times v */
            put_rows(acc, dp, i0, t, d, inv, jb->out + b * t * g->e + h * d, g->e);
        }
    }
}

/* Two passes per head: by blocks of rows, the weights p and ds (kept, [t][tp]
 * each) and dq; then by blocks of keys, dk and dv. With q scaled in the packing,
 * ds is kept without the scale: dq = scale ds k, dk = ds^T (scale q). */
static void attn_bwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d, *dy = jb->dy + b * t * g->e + h * d,
                    *y = jb->y + b * t * g->e + h * d;
        float *restrict qs = jb->scratch + lo * nrt_attn_scratch_floats(t, d, 1), *restrict kr = qs + tp * dp;
        float *restrict kt = kr + tp * dp, *restrict vr = kt + dp * tp, *restrict vt = vr + tp * dp;
        float *restrict gr = vt + dp * tp, *restrict pm = gr + tp * dp, *restrict sm = pm + tp * tp;
        float *restrict acc = sm + tp * tp, *o = jb->out + b * t * ld + h * d;
        pack(base, ld, t, d, g->scale, qs);
        pack(base + g->e, ld, t, d, 1.0f, kr);
        transpose(kr, tp, dp, kt);
        pack(base + 2 * g->e, ld, t, d, 1.0f, vr);
        transpose(vr, tp, dp, vt);
        pack(dy, g->e, t, d, 1.0f, gr);
        const float scale[RB] = {g->scale, g->scale, g->scale, g->scale}, one[RB] = {1, 1, 1, 1};
        const int64_t nb = (q + 1) / g->h, nh = (q + 1) % g->h;
        for (int64_t i0 = 0; i0 < t; i0 += RB) {
            const int64_t kn = row_keys(g, i0 + RB - 1), kp = up(kn);
            float *p = pm + i0 * tp, *ds = sm + i0 * tp;
            if (q + 1 < hi) {
                for (int part = 0; part < 3; part++)
                    prefetch_rows(jb->qkv + nb * t * ld + nh * d + part * g->e, ld, i0, t, d);
                prefetch_rows(jb->dy + nb * t * g->e + nh * d, g->e, i0, t, d);
                prefetch_rows(jb->y + nb * t * g->e + nh * d, g->e, i0, t, d);
            }
            tile(kp, qs + i0 * dp, dp, 1, kt, tp, 0, d, p, tp);  /* the scores */
            tile(kp, gr + i0 * dp, dp, 1, vt, tp, 0, d, ds, tp); /* dy_i . v_j */
            int64_t krow[RB];
            float inv[RB];
            for (int r = 0; r < RB; r++) krow[r] = row_keys(g, i0 + r);
            rows_exp(p, tp, kp, krow, inv);
            for (int64_t r = 0; r < RB; r++) {
                float dd = 0; /* dy_i . y_i */
                if (i0 + r < t) {
                    v16 a = {0};
                    int64_t c = 0;
                    for (; c + BLK <= d; c += BLK)
                        a += vload(gr + (i0 + r) * dp + c) * vload(y + (i0 + r) * g->e + c);
                    dd = lanes_sum(a);
                    for (; c < d; c++) dd += gr[(i0 + r) * dp + c] * y[(i0 + r) * g->e + c];
                }
                for (int64_t j = 0; j < kp; j += BLK) {
                    const v16 pj = vload(p + r * tp + j) * inv[r];
                    vstore(p + r * tp + j, pj);
                    vstore(ds + r * tp + j, pj * (vload(ds + r * tp + j) - dd));
                }
            }
            tile(dp, ds, tp, 1, kr, dp, 0, kn, acc, dp); /* dq */
            put_rows(acc, dp, i0, t, d, scale, o, ld);
        }
        for (int64_t j0 = 0; j0 < t; j0 += RB) { /* dk_j = sum_i ds_ij (scale q_i), dv_j = sum_i p_ij dy_i */
            const int64_t i0 = g->causal ? j0 : 0;
            tile(dp, sm + j0, 1, tp, qs, dp, i0, t, acc, dp);
            put_rows(acc, dp, j0, t, d, one, o + g->e, ld);
            tile(dp, pm + j0, 1, tp, gr, dp, i0, t, acc, dp);
            put_rows(acc, dp, j0, t, d, one, o + 2 * g->e, ld);
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
