/* runtime/attn.c -- the fused self-attention core (the IR's ATTENTION and
 * ATTENTION_GRAD, netrt.h): one task per (item, head) over the thread pool. A
 * task copies its head's q, k and v out of the in-projection's output (rows of
 * 3E floats) into its scratch, padded to multiples of 16 floats (keys also
 * transposed, so a row of scores is a loop over keys), and goes row by row:
 * the scores of the keys the row may see (j <= i when causal: the masked upper
 * triangle is skipped but for the padding of the last block), their softmax,
 * then y_i (forward) or the row's share of dq, dk and dv (backward, the weights
 * recomputed). Nothing of size T x T is stored. Every loop runs over whole
 * blocks of 16 floats, so the compiler vectorizes them without scalar tails.
 * Compiled with -O3 -march=native (CMakeLists.txt). */
#include "runtime/netrt.h"

#include <math.h>

#define BLK 16 /* floats per block: one AVX-512 register */

static int64_t up(int64_t x) { return (x + BLK - 1) / BLK * BLK; }

struct attn_job {
    const struct nrt_attn *g;
    const float *qkv, *y, *dy;
    float *out, *scratch;
};

/* y[0..n) += a x[0..n), n a multiple of BLK. */
static inline void axpy(int64_t n, float a, const float *restrict x, float *restrict y)
{
    for (int64_t j = 0; j < n; j += BLK)
        for (int l = 0; l < BLK; l++)
            y[j + l] += a * x[j + l];
}

/* x[0..n) = 0, n a multiple of BLK. */
static inline void zero(int64_t n, float *restrict x)
{
    for (int64_t j = 0; j < n; j += BLK)
        for (int l = 0; l < BLK; l++)
            x[j + l] = 0.0f;
}

/* Part `part` (0: q, 1: k, 2: v) of the head at base: rows [t][dp] (rows != 0) or
 * transposed [dp][tp], zero-padded. */
static void head_copy(const struct nrt_attn *g, const float *base, int part, float *restrict dst, int rows)
{
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    zero(rows ? t * dp : dp * tp, dst);
    for (int64_t j = 0; j < t; j++)
        for (int64_t c = 0; c < d; c++) {
            const float x = base[j * ld + part * g->e + c];
            if (rows)
                dst[j * dp + c] = x;
            else
                dst[c * tp + j] = x;
        }
}

/* Row i's attention weights p[0..up(kn)) (0 from kn on) from q_i and the
 * transposed keys kt; returns kn, the keys the row sees. */
static int64_t attn_weights(const struct nrt_attn *g, const float *restrict qi, const float *restrict kt,
                            float *restrict p, int64_t i)
{
    const int64_t d = g->e / g->h, tp = up(g->t), kn = g->causal ? i + 1 : g->t, kp = up(kn);
    zero(kp, p);
    for (int64_t c = 0; c < d; c++)
        axpy(kp, g->scale * qi[c], kt + c * tp, p);
    float m[BLK], s[BLK];
    for (int l = 0; l < BLK; l++) {
        m[l] = -INFINITY;
        s[l] = 0.0f;
    }
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++)
            m[l] = j + l < kn && p[j + l] > m[l] ? p[j + l] : m[l];
    float mx = m[0];
    for (int l = 1; l < BLK; l++)
        mx = m[l] > mx ? m[l] : mx;
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++) {
            const float e = j + l < kn ? nrt_expf(p[j + l] - mx) : 0.0f;
            p[j + l] = e;
            s[l] += e;
        }
    float sum = 0.0f;
    for (int l = 0; l < BLK; l++)
        sum += s[l];
    const float inv = 1.0f / sum;
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++)
            p[j + l] *= inv;
    return kn;
}

static void attn_fwd(void *arg, int64_t lo, int64_t hi)
{
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
            zero(dp, acc);
            for (int64_t j = 0; j < kn; j++)
                axpy(dp, p[j], v + j * dp, acc);
            float *restrict yi = jb->out + (b * t + i) * g->e + h * d;
            for (int64_t c = 0; c < d; c++)
                yi[c] = acc[c];
        }
    }
}

static void attn_bwd(void *arg, int64_t lo, int64_t hi)
{
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d;
        float *restrict kt = jb->scratch + q * nrt_attn_scratch_floats(t, d, 1), *restrict vt = kt + dp * tp;
        float *restrict qr = vt + dp * tp, *restrict kr = qr + tp * dp, *restrict dk = kr + tp * dp;
        float *restrict dv = dk + tp * dp, *restrict p = dv + tp * dp, *restrict ds = p + tp;
        float *restrict gi = ds + tp, *restrict dq = gi + dp;
        head_copy(g, base, 1, kt, 0);
        head_copy(g, base, 2, vt, 0);
        head_copy(g, base, 0, qr, 1);
        head_copy(g, base, 1, kr, 1);
        zero(t * dp, dk);
        zero(t * dp, dv);
        for (int64_t i = 0; i < t; i++) {
            const int64_t kn = attn_weights(g, base + i * ld, kt, p, i), kp = up(kn);
            const float *dyi = jb->dy + (b * t + i) * g->e + h * d, *yi = jb->y + (b * t + i) * g->e + h * d;
            float dd = 0.0f;
            zero(dp, gi);
            for (int64_t c = 0; c < d; c++) {
                gi[c] = dyi[c];
                dd += dyi[c] * yi[c];
            }
            zero(kp, ds);
            for (int64_t c = 0; c < d; c++) /* dy_i . v_j */
                axpy(kp, gi[c], vt + c * tp, ds);
            for (int64_t j = 0; j < kp; j += BLK)
                for (int l = 0; l < BLK; l++)
                    ds[j + l] = g->scale * p[j + l] * (ds[j + l] - dd);
            zero(dp, dq);
            for (int64_t j = 0; j < kn; j++) {
                axpy(dp, ds[j], kr + j * dp, dq);
                axpy(dp, ds[j], qr + i * dp, dk + j * dp);
                axpy(dp, p[j], gi, dv + j * dp);
            }
            float *restrict o = jb->out + (b * t + i) * ld + h * d;
            for (int64_t c = 0; c < d; c++)
                o[c] = dq[c];
        }
        for (int64_t j = 0; j < t; j++) {
            float *restrict o = jb->out + (b * t + j) * ld + h * d;
            for (int64_t c = 0; c < d; c++) {
                o[g->e + c] = dk[j * dp + c];
                o[2 * g->e + c] = dv[j * dp + c];
            }
        }
    }
}

void nrt_attention(const struct nrt_attn *g, const float *qkv, float *y, float *scratch)
{
    struct attn_job jb = {g, qkv, NULL, NULL, y, scratch};
    if (g->n > 0 && g->t > 0)
        nrt_parallel_for(g->n * g->h, 1, attn_fwd, &jb);
}

void nrt_attention_grad(const struct nrt_attn *g, const float *qkv, const float *y, const float *dy, float *dqkv,
                        float *scratch)
{
    struct attn_job jb = {g, qkv, y, dy, dqkv, scratch};
    if (g->n > 0 && g->t > 0)
        nrt_parallel_for(g->n * g->h, 1, attn_bwd, &jb);
}
