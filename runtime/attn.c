/* runtime/attn.c -- the fused self-attention core (the IR's ATTENTION and
 * ATTENTION_GRAD, netrt.h): one task per (item, head) over the thread pool. A
 * task copies its head's q, k and v out of the in-projection's output (rows of
 * 3E floats) into its scratch, padded to multiples of 16 floats (keys also
 * transposed, so a row of scores is a loop over keys), and goes row by row:
 * the scores of the keys the row may see (j <= i when causal: the masked upper
 * triangle is skipped but for the padding of the last block), their softmax,
 * then y_i (forward) or ds_i and dq_i (backward, the weights recomputed; p and
 * ds kept in the scratch for a second pass by keys: dk_j, dv_j). The forward
 * keeps nothing of size T x T. The loops run over whole blocks of 16 floats (a
 * GCC/clang vector type) with the sums in registers. Compiled with -O3
 * -march=native -ffp-contract=fast (CMakeLists.txt). */
#include "runtime/netrt.h"

#include <math.h>

#define BLK 16 /* floats per block: one AVX-512 register */

/* A block as a GCC/clang vector (two AVX2 or four SSE registers where there is
 * no AVX-512), read and written at any float alignment. */
typedef float v16 __attribute__((vector_size(BLK * sizeof(float)), aligned(sizeof(float))));

static inline v16 vload(const float *p) { return *(const v16 *)(const void *)p; }
static inline void vstore(float *p, v16 x) { *(v16 *)(void *)p = x; }

static int64_t up(int64_t x) { return (x + BLK - 1) / BLK * BLK; }

/* The sum and the largest of a block's floats, pairwise (4 steps of latency,
 * not 15 of a serial loop). */
static inline float lanes_sum(const float *restrict x) {
    float a[BLK / 2], b[BLK / 4];
    for (int l = 0; l < BLK / 2; l++) a[l] = x[l] + x[l + BLK / 2];
    for (int l = 0; l < BLK / 4; l++) b[l] = a[l] + a[l + BLK / 4];
    return (b[0] + b[2]) + (b[1] + b[3]);
}
static inline float lanes_max(const float *restrict x) {
    float a[BLK / 2], b[BLK / 4];
    for (int l = 0; l < BLK / 2; l++) a[l] = x[l] > x[l + BLK / 2] ? x[l] : x[l + BLK / 2];
    for (int l = 0; l < BLK / 4; l++) b[l] = a[l] > a[l + BLK / 4] ? a[l] : a[l + BLK / 4];
    const float c0 = b[0] > b[2] ? b[0] : b[2], c1 = b[1] > b[3] ? b[1] : b[3];
    return c0 > c1 ? c0 : c1;
}

struct attn_job {
    const struct nrt_attn *g;
    const float *qkv, *y, *dy;
    float *out, *scratch;
};

/* p[0..kp) = sum_c x[c] t[c * tp + j]: each block of 16 keys in registers over c. */
static void scores(int64_t d, int64_t tp, int64_t kp, const float *restrict x, const float *restrict t,
                   float *restrict p) {
    int64_t j = 0;
    for (; j + 4 * BLK <= kp; j += 4 * BLK) { /* four independent sums */
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t c = 0; c < d; c++) {
            const float xc = x[c], *r = t + c * tp + j;
            a0 += xc * vload(r);
            a1 += xc * vload(r + BLK);
            a2 += xc * vload(r + 2 * BLK);
            a3 += xc * vload(r + 3 * BLK);
        }
        vstore(p + j, a0);
        vstore(p + j + BLK, a1);
        vstore(p + j + 2 * BLK, a2);
        vstore(p + j + 3 * BLK, a3);
    }
    for (; j < kp; j += BLK) { /* two sums over even and odd c */
        v16 a0 = {0}, a1 = {0};
        int64_t c = 0;
        for (; c + 1 < d; c += 2) {
            a0 += x[c] * vload(t + c * tp + j);
            a1 += x[c + 1] * vload(t + (c + 1) * tp + j);
        }
        if (c < d) a0 += x[c] * vload(t + c * tp + j);
        vstore(p + j, a0 + a1);
    }
}

/* Part `part` (0: q, 1: k, 2: v) of the head at base: rows [t][dp] (rows != 0) or
 * transposed [dp][tp], zero-padded. */
static void head_copy(const struct nrt_attn *g, const float *base, int part, float *restrict dst, int rows) {
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    const float *src = base + part * g->e;
    if (rows) { /* rows t.. are never read */
        for (int64_t j = 0; j < t; j++)
            for (int64_t c = 0; c < dp; c++) dst[j * dp + c] = c < d ? src[j * ld + c] : 0.0f;
        return;
    }
    for (int64_t c = 0; c < d; c++) { /* rows d.. are never read */
        for (int64_t j = 0; j < t; j++) dst[c * tp + j] = src[j * ld + c];
        for (int64_t j = t; j < tp; j++) dst[c * tp + j] = 0.0f;
    }
}

/* Row i's attention weights p[0..up(kn)) (0 from kn on) from q_i and the
 * transposed keys kt; returns kn, the keys the row sees. */
static int64_t attn_weights(const struct nrt_attn *g, const float *restrict qi, const float *restrict kt,
                            float *restrict p, int64_t i) {
    const int64_t d = g->e / g->h, tp = up(g->t), kn = g->causal ? i + 1 : g->t, kp = up(kn);
    scores(d, tp, kp, qi, kt, p);
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++) p[j + l] *= g->scale;
    float m[BLK], s[BLK];
    for (int l = 0; l < BLK; l++) {
        m[l] = -INFINITY;
        s[l] = 0.0f;
    }
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++) m[l] = j + l < kn && p[j + l] > m[l] ? p[j + l] : m[l];
    const float mx = lanes_max(m);
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++) {
            const float e = j + l < kn ? nrt_expf(p[j + l] - mx) : 0.0f;
            p[j + l] = e;
            s[l] += e;
        }
    const float inv = 1.0f / lanes_sum(s);
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++) p[j + l] *= inv;
    return kn;
}

static void attn_fwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d;
        float *restrict kt = jb->scratch + q * nrt_attn_scratch_floats(t, d, 0), *restrict v = kt + dp * tp;
        float *restrict p = v + tp * dp, *restrict acc = p + tp;
        head_copy(g, base, 1, kt, 0);
        head_copy(g, base, 2, v, 1);
        for (int64_t i = 0; i < t; i++) {
            const int64_t kn = attn_weights(g, base + i * ld, kt, p, i);
            for (int64_t c = 0; c < dp; c += BLK) { /* a block of y_i in registers over the keys */
                v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
                int64_t j = 0;
                for (; j + 4 <= kn; j += 4) {
                    a0 += p[j] * vload(v + j * dp + c);
                    a1 += p[j + 1] * vload(v + (j + 1) * dp + c);
                    a2 += p[j + 2] * vload(v + (j + 2) * dp + c);
                    a3 += p[j + 3] * vload(v + (j + 3) * dp + c);
                }
                for (; j < kn; j++) a0 += p[j] * vload(v + j * dp + c);
                vstore(acc + c, (a0 + a1) + (a2 + a3));
            }
            float *restrict yi = jb->out + (b * t + i) * g->e + h * d;
            for (int64_t c = 0; c < d; c++) yi[c] = acc[c];
        }
    }
}

/* Writes the first min(BLK, d - c) floats of x to o + c. */
static void store_part(float *restrict o, int64_t c, int64_t d, v16 x) {
    float tmp[BLK];
    vstore(tmp, x);
    for (int64_t l = 0; l < BLK && c + l < d; l++) o[c + l] = tmp[l];
}

/* Two passes per head: by rows, the weights p_i and ds_i (kept, [t][tp] each)
 * and dq_i; then by keys, dk_j and dv_j, each in registers over the rows. */
static void attn_bwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d;
        float *restrict kt = jb->scratch + q * nrt_attn_scratch_floats(t, d, 1), *restrict vt = kt + dp * tp;
        float *restrict qr = vt + dp * tp, *restrict kr = qr + tp * dp, *restrict gr = kr + tp * dp;
        float *restrict pm = gr + tp * dp, *restrict sm = pm + tp * tp;
        head_copy(g, base, 1, kt, 0);
        head_copy(g, base, 2, vt, 0);
        head_copy(g, base, 0, qr, 1);
        head_copy(g, base, 1, kr, 1);
        for (int64_t i = 0; i < t; i++) {
            const float *dyi = jb->dy + (b * t + i) * g->e + h * d, *yi = jb->y + (b * t + i) * g->e + h * d;
            float *restrict gi = gr + i * dp, *restrict p = pm + i * tp, *restrict ds = sm + i * tp;
            for (int64_t c = 0; c < dp; c++) gi[c] = c < d ? dyi[c] : 0.0f;
            v16 acc = {0}; /* dd = dy_i . y_i */
            int64_t c = 0;
            for (; c + BLK <= d; c += BLK) acc += vload(dyi + c) * vload(yi + c);
            float lanes[BLK];
            vstore(lanes, acc);
            float dd = lanes_sum(lanes);
            for (; c < d; c++) dd += dyi[c] * yi[c];
            const int64_t kn = attn_weights(g, base + i * ld, kt, p, i), kp = up(kn);
            scores(d, tp, kp, gi, vt, ds); /* dy_i . v_j */
            for (int64_t j = 0; j < kp; j += BLK)
                for (int l = 0; l < BLK; l++) ds[j + l] = g->scale * p[j + l] * (ds[j + l] - dd);
            float *restrict o = jb->out + (b * t + i) * ld + h * d;
            for (int64_t c = 0; c < dp; c += BLK) { /* dq_i: sums over even and odd keys */
                v16 a0 = {0}, a1 = {0};
                int64_t j = 0;
                for (; j + 2 <= kn; j += 2) {
                    a0 += ds[j] * vload(kr + j * dp + c);
                    a1 += ds[j + 1] * vload(kr + (j + 1) * dp + c);
                }
                if (j < kn) a0 += ds[j] * vload(kr + j * dp + c);
                store_part(o, c, d, a0 + a1);
            }
        }
        for (int64_t j = 0; j < t; j++) { /* dk_j = sum_i ds_ij q_i, dv_j = sum_i p_ij dy_i */
            float *restrict o = jb->out + (b * t + j) * ld + h * d;
            for (int64_t c = 0; c < dp; c += BLK) {
                v16 k0 = {0}, k1 = {0}, v0 = {0}, v1 = {0};
                int64_t i = g->causal ? j : 0;
                for (; i + 2 <= t; i += 2) {
                    k0 += sm[i * tp + j] * vload(qr + i * dp + c);
                    v0 += pm[i * tp + j] * vload(gr + i * dp + c);
                    k1 += sm[(i + 1) * tp + j] * vload(qr + (i + 1) * dp + c);
                    v1 += pm[(i + 1) * tp + j] * vload(gr + (i + 1) * dp + c);
                }
                if (i < t) {
                    k0 += sm[i * tp + j] * vload(qr + i * dp + c);
                    v0 += pm[i * tp + j] * vload(gr + i * dp + c);
                }
                store_part(o + g->e, c, d, k0 + k1);
                store_part(o + 2 * g->e, c, d, v0 + v1);
            }
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
