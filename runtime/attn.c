/* runtime/attn.c -- the fused self-attention core (the IR's ATTENTION and
 * ATTENTION_GRAD, netrt.h): one task per (item, head) over the thread pool. A
 * task copies its head's k and v (backward: also q and k as rows) out of the
 * in-projection's output (rows of 3E floats) into its scratch, padded to
 * multiples of 16 floats (keys also transposed, so a row of scores is a loop
 * over keys), and goes by blocks of RB query rows: their scores over the keys
 * the rows may see (j <= i when causal: the masked upper triangle is skipped but
 * for the padding of the last block), each row's softmax, then y (forward) or
 * ds and dq (backward, the weights recomputed; p and ds kept in the scratch for
 * a second pass by blocks of RB keys: dk_j, dv_j). A block of rows shares every
 * load of a key or value vector, so the sums are FMA-bound, not load-bound. The
 * forward keeps nothing of size T x T. The loops run over whole blocks of 16
 * floats (a GCC/clang vector type) with the sums in registers. Compiled with
 * -O3 -march=native -ffp-contract=fast (CMakeLists.txt). */
#include "runtime/netrt.h"

#include <math.h>

#define BLK 16 /* floats per block: one AVX-512 register */
#define RB 4   /* query rows (backward's second pass: keys) per block; divides BLK */

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

/* s[r * tp + j] = sum_c x_r[c] t[c * tp + j] for j < kp and the RB rows x_r =
 * x + min(r, nr - 1) * ldx (rows from nr on repeat the last: computed, unused):
 * two blocks of keys by RB rows in registers over c. */
static void block_scores(int64_t d, int64_t tp, int64_t kp, const float *x, int64_t ldx, int nr,
                         const float *restrict t, float *restrict s) {
    const float *x0 = x, *x1 = x + (nr > 1 ? 1 : 0) * ldx, *x2 = x + (nr > 2 ? 2 : nr - 1) * ldx;
    const float *x3 = x + (nr > 3 ? 3 : nr - 1) * ldx;
    int64_t j = 0;
    for (; j + 2 * BLK <= kp; j += 2 * BLK) {
        v16 a0 = {0}, b0 = {0}, a1 = {0}, b1 = {0}, a2 = {0}, b2 = {0}, a3 = {0}, b3 = {0};
        for (int64_t c = 0; c < d; c++) {
            const v16 t0 = vload(t + c * tp + j), t1 = vload(t + c * tp + j + BLK);
            const float q0 = x0[c], q1 = x1[c], q2 = x2[c], q3 = x3[c];
            a0 += q0 * t0, b0 += q0 * t1;
            a1 += q1 * t0, b1 += q1 * t1;
            a2 += q2 * t0, b2 += q2 * t1;
            a3 += q3 * t0, b3 += q3 * t1;
        }
        vstore(s + j, a0), vstore(s + j + BLK, b0);
        vstore(s + tp + j, a1), vstore(s + tp + j + BLK, b1);
        vstore(s + 2 * tp + j, a2), vstore(s + 2 * tp + j + BLK, b2);
        vstore(s + 3 * tp + j, a3), vstore(s + 3 * tp + j + BLK, b3);
    }
    if (j < kp) {
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t c = 0; c < d; c++) {
            const v16 t0 = vload(t + c * tp + j);
            a0 += x0[c] * t0, a1 += x1[c] * t0, a2 += x2[c] * t0, a3 += x3[c] * t0;
        }
        vstore(s + j, a0), vstore(s + tp + j, a1), vstore(s + 2 * tp + j, a2), vstore(s + 3 * tp + j, a3);
    }
}

/* The softmax of scale * p[0..kn) in place, p[kn..kp) set to 0 (kp: a
 * multiple of BLK >= kn). Returns 1 / (the sum of the exponentials); the
 * weights are normalized only when norm != 0 (else the caller scales). */
static float softmax_row(float *restrict p, int64_t kn, int64_t kp, float scale, int norm) {
    float m[BLK], s[BLK];
    for (int l = 0; l < BLK; l++) m[l] = -INFINITY, s[l] = 0.0f;
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++) {
            const float x = j + l < kn ? p[j + l] * scale : -INFINITY;
            p[j + l] = x;
            m[l] = x > m[l] ? x : m[l];
        }
    const float mx = lanes_max(m);
    for (int64_t j = 0; j < kp; j += BLK)
        for (int l = 0; l < BLK; l++) { /* exp(-inf - mx) -> nrt_expf(-88) = 0 */
            const float e = nrt_expf(p[j + l] - mx);
            p[j + l] = e;
            s[l] += e;
        }
    const float inv = 1.0f / lanes_sum(s);
    if (norm)
        for (int64_t j = 0; j < kp; j += BLK)
            for (int l = 0; l < BLK; l++) p[j + l] *= inv;
    return inv;
}

/* o_r[c] = sc_r * sum_{j < kn} w[r * tp + j] m[j * dp + c] for the first min(BLK, d - c) c of each block
 * and the nr rows o_r = o + r * ldo, RB rows by a block of c in registers over j (w is 0 from a row's
 * own count on, up to kn). */
static void block_rows(int64_t d, int64_t dp, int64_t tp, int64_t kn, const float *restrict w,
                       const float *restrict m, const float *sc, float *o, int64_t ldo, int nr) {
    for (int64_t c = 0; c < dp; c += BLK) {
        v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t j = 0; j < kn; j++) {
            const v16 v = vload(m + j * dp + c);
            a0 += w[j] * v, a1 += w[tp + j] * v, a2 += w[2 * tp + j] * v, a3 += w[3 * tp + j] * v;
        }
        const v16 acc[RB] = {a0, a1, a2, a3};
        for (int r = 0; r < nr; r++) {
            float tmp[BLK];
            vstore(tmp, acc[r] * sc[r]);
            float *restrict or = o + r * ldo;
            for (int64_t l = 0; l < BLK && c + l < d; l++) or [c + l] = tmp[l];
        }
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
    for (int64_t j = 0; j < t; j++) /* rows d.. are never read; by source rows, each read once */
        for (int64_t c = 0; c < d; c++) dst[c * tp + j] = src[j * ld + c];
    for (int64_t c = 0; c < d; c++)
        for (int64_t j = t; j < tp; j++) dst[c * tp + j] = 0.0f;
}

/* The keys rows i0.. of a block see: kn(i) = i + 1 when causal, else t. */
static int64_t keys_seen(const struct nrt_attn *g, int64_t i) { return g->causal ? i + 1 : g->t; }

static void attn_fwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    for (int64_t q = lo; q < hi; q++) {
        const int64_t b = q / g->h, h = q % g->h;
        const float *base = jb->qkv + b * t * ld + h * d;
        float *restrict kt = jb->scratch + q * nrt_attn_scratch_floats(t, d, 0), *restrict v = kt + dp * tp;
        float *restrict p = v + tp * dp; /* [RB][tp] */
        head_copy(g, base, 1, kt, 0);
        head_copy(g, base, 2, v, 1);
        for (int64_t i0 = 0; i0 < t; i0 += RB) {
            const int nr = t - i0 < RB ? (int)(t - i0) : RB;
            const int64_t kmax = keys_seen(g, i0 + nr - 1), kp = up(kmax);
            block_scores(d, tp, kp, base + i0 * ld, ld, nr, kt, p);
            float inv[RB] = {0};
            for (int r = 0; r < nr; r++)
                inv[r] = softmax_row(p + r * tp, keys_seen(g, i0 + r), kp, g->scale, 0);
            block_rows(d, dp, tp, kmax, p, v, inv, jb->out + (b * t + i0) * g->e + h * d, g->e, nr);
        }
    }
}

/* Two passes per head: by blocks of rows, the weights p_i and ds_i (kept,
 * [tp][tp] each) and dq_i; then by blocks of keys, dk_j and dv_j. */
static void attn_bwd(void *arg, int64_t lo, int64_t hi) {
    const struct attn_job *jb = arg;
    const struct nrt_attn *g = jb->g;
    const int64_t d = g->e / g->h, dp = up(d), t = g->t, tp = up(t), ld = 3 * g->e;
    static const float ones[RB] = {1.0f, 1.0f, 1.0f, 1.0f};
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
        for (int64_t i0 = 0; i0 < t; i0 += RB) {
            const int nr = t - i0 < RB ? (int)(t - i0) : RB;
            const int64_t kmax = keys_seen(g, i0 + nr - 1), kp = up(kmax);
            const float *dy0 = jb->dy + (b * t + i0) * g->e + h * d;
            block_scores(d, tp, kp, base + i0 * ld, ld, nr, kt, pm + i0 * tp);
            block_scores(d, tp, kp, dy0, g->e, nr, vt, sm + i0 * tp); /* dy_i . v_j */
            for (int r = 0; r < nr; r++) {
                const int64_t i = i0 + r;
                const float *dyi = dy0 + r * g->e, *yi = jb->y + (b * t + i) * g->e + h * d;
                float *restrict gi = gr + i * dp, *restrict p = pm + i * tp, *restrict ds = sm + i * tp;
                for (int64_t c = 0; c < dp; c++) gi[c] = c < d ? dyi[c] : 0.0f;
                v16 acc = {0}; /* dd = dy_i . y_i */
                int64_t c = 0;
                for (; c + BLK <= d; c += BLK) acc += vload(dyi + c) * vload(yi + c);
                float lanes[BLK];
                vstore(lanes, acc);
                float dd = lanes_sum(lanes);
                for (; c < d; c++) dd += dyi[c] * yi[c];
                softmax_row(p, keys_seen(g, i), kp, g->scale, 1);
                for (int64_t j = 0; j < kp; j += BLK)
                    for (int l = 0; l < BLK; l++) ds[j + l] = g->scale * p[j + l] * (ds[j + l] - dd);
            }
            block_rows(d, dp, tp, kmax, sm + i0 * tp, kr, ones, jb->out + (b * t + i0) * ld + h * d, ld, nr);
        }
        /* dk_j = sum_i ds_ij q_i, dv_j = sum_i p_ij dy_i: RB keys by a block of c over the rows i
         * that see key j0 (from j0 on when causal; ds and p are 0 where a row does not see a key) */
        for (int64_t j0 = 0; j0 < t; j0 += RB) {
            const int nk = t - j0 < RB ? (int)(t - j0) : RB;
            float *o = jb->out + (b * t + j0) * ld + h * d;
            for (int64_t c = 0; c < dp; c += BLK) {
                v16 k0 = {0}, k1 = {0}, k2 = {0}, k3 = {0}, u0 = {0}, u1 = {0}, u2 = {0}, u3 = {0};
                for (int64_t i = g->causal ? j0 : 0; i < t; i++) {
                    const v16 qv = vload(qr + i * dp + c), gv = vload(gr + i * dp + c);
                    const float *s = sm + i * tp + j0, *pp = pm + i * tp + j0;
                    k0 += s[0] * qv, k1 += s[1] * qv, k2 += s[2] * qv, k3 += s[3] * qv;
                    u0 += pp[0] * gv, u1 += pp[1] * gv, u2 += pp[2] * gv, u3 += pp[3] * gv;
                }
                const v16 kk[RB] = {k0, k1, k2, k3}, vv[RB] = {u0, u1, u2, u3};
                for (int r = 0; r < nk; r++) {
                    float tk[BLK], tv[BLK];
                    vstore(tk, kk[r]), vstore(tv, vv[r]);
                    float *restrict ok = o + r * ld + g->e, *restrict ov = o + r * ld + 2 * g->e;
                    for (int64_t l = 0; l < BLK && c + l < d; l++) ok[c + l] = tk[l], ov[c + l] = tv[l];
                }
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
