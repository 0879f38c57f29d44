/* runtime/wino_s2.c -- 4x4 stride-2 convolutions with padding 1 (a DCGAN's
 * layers: h = 2 ho) by phases and Winograd's minimal filtering: the forward
 * is a 2x2 stride-1 correlation of x's four phase images P_ab[m][n] =
 * xpad[2m+a][2n+b] (4 ci channels, weights w[2u+a][2v+b]); the input
 * gradient (conv_transpose's forward) gives dx's four phases, each a 2x2
 * correlation of dy padded by 1 (weights w[2(1-u)+a][2(1-v)+b]). Each output
 * row (and column) of L is cut into segments of 3 and 2 outputs computed by
 * F(3, 2) (4 products, points 0, 1, -1, infinity) and F(2, 2) (3 products,
 * points 0, 1, infinity): 7 = 3 + 2 + 2 takes 10 products instead of 14, a
 * 7x7 output 100 per channel pair instead of 196. Both transforms of the data
 * only add and subtract, and the weights' rows are four: (-1, 0), (1, 1),
 * (0, 1), (1, -1) (F(3, 2)'s halves moved into its output transform), so the
 * products fall into 16 GEMMs [products][K] x [K][N] per group of images,
 * on channel vectors of pixel-major padded planes; the weight gradient is
 * the same products transposed (16 GEMMs [K][products] x [products][N] over
 * the batch, the weights' transform transposed at the end). The error is at
 * or below the direct kernels' on the DCGAN's layers (bench/wino_s2_error.c;
 * F(4x4, 2x2), 25 products per 4x4, failed the unit tests' 1e-4). Each
 * output's sum over the GEMM's channels runs in one fixed order, so an
 * image's y and dx are the same at any batch size, group and thread count
 * (dw: the same at a given thread count, its tasks' partials added in
 * order). An output of a 3-segment reads the segment's 4 inputs: an all-zero
 * 2x2 field next to a nonzero pixel gives rounding noise, not exactly 0 (the
 * DCGAN's layers have batch norm after them, not a kink). */
#include "runtime/internal.h"
#include "runtime/wino_tile.h"

#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

enum { WS2_A, WS2_B, WS2_C, WS2_D }; /* the weights' rows (-1, 0), (1, 1), (0, 1), (1, -1) */
static const int ws2_gid[2][4] = {{WS2_A, WS2_B, WS2_C, 0}, {WS2_A, WS2_B, WS2_D, WS2_C}};

/* One call's problem: the forward (tr 0: y from x, K = 4 ci phase channels,
 * N = co, one correlation) or the input gradient (tr 1: dx from dy, four
 * correlations q = 2a + b of K = co, N = ci). */
struct ws2 {
    const struct nrt_conv *c;
    int tr, dir; /* dir 2: the weight gradient (tr 0) */
    int64_t K, N;
    int64_t L[2], n3[2], ns[2]; /* per dim (rows, columns): outputs, segments of 3, all segments */
    int64_t R[16], base[16];    /* products of row kind r and column kind c (index 4 r + c) per image;
                                   first row in a group */
    int64_t rows;               /* V's and M's rows per group */
    int64_t ih, iw, kc;         /* the pixel-major padded input plane: rows, columns, channels */
    int64_t G;                  /* images per group */
    int64_t inf, outf, vf, mf, region, tasks;
    const float *in, *bias, *dy;
    int relu;
    float *u;       /* [q][16][K][N]; the weight gradient's sum of the tasks' M [16][K][N] */
    float *scratch; /* task i's part at scratch + i * region */
    float *out;
};

/* Segment s of dim d: its first output and its kind (1: F(3, 2), 0: F(2, 2)). */
static inline int64_t ws2_seg(const struct ws2 *k, int d, int64_t s, int *three) {
    *three = s < k->n3[d];
    return s < k->n3[d] ? 3 * s : 3 * k->n3[d] + 2 * (s - k->n3[d]);
}

/* Segments of dim d that have weight row g. */
static inline int64_t ws2_cnt(const struct ws2 *k, int d, int g) { return g == WS2_D ? k->n3[d] : k->ns[d]; }

/* V's row of image b's product (row kind gr of segment sr, column kind gc of segment sc). */
static inline int64_t ws2_row(const struct ws2 *k, int64_t b, int gr, int64_t sr, int gc, int64_t sc) {
    int cc = gr * 4 + gc;
    return k->base[cc] + b * k->R[cc] + sr * ws2_cnt(k, 1, gc) + sc;
}

/* The weights' row g applied to (g0, g1). */
static inline __m512 ws2_g(int g, __m512 g0, __m512 g1) {
    switch (g) {
    case WS2_A:
        return _mm512_sub_ps(_mm512_setzero_ps(), g0);
    case WS2_B:
        return _mm512_add_ps(g0, g1);
    case WS2_C:
        return g1;
    default:
        return _mm512_sub_ps(g0, g1);
    }
}

/* B^T d: F(2, 2) [d1 - d0, d1, d2 - d1]; F(3, 2) [d2 - d0, d1 + d2, d2 - d1, d3 - d1]. */
static inline void ws2_bt(int three, const __m512 *d, __m512 *o) {
    if (three) {
        o[0] = _mm512_sub_ps(d[2], d[0]), o[1] = _mm512_add_ps(d[1], d[2]);
        o[2] = _mm512_sub_ps(d[2], d[1]), o[3] = _mm512_sub_ps(d[3], d[1]);
    } else {
        o[0] = _mm512_sub_ps(d[1], d[0]), o[1] = d[1], o[2] = _mm512_sub_ps(d[2], d[1]);
    }
}

/* A^T m: F(2, 2) [m0 + m1, m1 + m2]; F(3, 2) with its halves [m0 + h, (m1 - m2) / 2, h + m3], h = (m1 + m2)
 * / 2. */
static inline void ws2_at(int three, const __m512 *m, __m512 *y) {
    if (three) {
        const __m512 half = _mm512_set1_ps(0.5f);
        __m512 h = _mm512_mul_ps(_mm512_add_ps(m[1], m[2]), half);
        y[0] = _mm512_add_ps(m[0], h), y[1] = _mm512_mul_ps(_mm512_sub_ps(m[1], m[2]), half);
        y[2] = _mm512_add_ps(h, m[3]);
    } else {
        y[0] = _mm512_add_ps(m[0], m[1]), y[1] = _mm512_add_ps(m[1], m[2]);
    }
}

/* U[q][gr 4 + gc][k][n] = G_gr g G_gc^T for the 2x2 weights g of (q, k, n):
 * the weights first transposed to wt [ci][16 taps][co] (forward) or
 * [co][16][ci] (input gradient), then the rows on vectors of 16 n. */
static void ws2_weights(const struct ws2 *k, const float *w, float *wt, float *u) {
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, co = c->co, K = k->K, N = k->N, KN = K * N;
    if (k->tr) /* wt [co][16][ci] */
        for (int64_t o = 0; o < co; o++) nrt_transpose16(w + o * ci * 16, 16, ci, 16, wt + o * 16 * ci, ci);
    else /* wt [ci][16][co] */
        nrt_transpose16(w, ci * 16, co, ci * 16, wt, co);
    int64_t rows = k->tr ? co : ci, cols = k->tr ? ci : co; /* wt [rows][16][cols] */
    for (int p = 0; p < 4; p++) {
        int a = p / 2, b = p % 2;
        float *uq = u + (k->tr ? p * 16 * KN : 0);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t q = 0; q < cols; q += 16) {
                __m512 g[2][2], t[4][2];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2;
                         j++) { /* the forward's w[2i+a][2j+b], dx's w[2(1-i)+a][2(1-j)+b] */
                        int ky = 2 * (k->tr ? 1 - i : i) + a, kx = 2 * (k->tr ? 1 - j : j) + b;
                        g[i][j] = _mm512_loadu_ps(wt + (r * 16 + ky * 4 + kx) * cols + q);
                    }
                for (int gr = 0; gr < 4; gr++)
                    for (int j = 0; j < 2; j++) t[gr][j] = ws2_g(gr, g[0][j], g[1][j]);
                int64_t kk = k->tr ? r : p * ci + r, nn = q;
                for (int gr = 0; gr < 4; gr++)
                    for (int gc = 0; gc < 4; gc++)
                        _mm512_storeu_ps(uq + (gr * 4 + gc) * KN + kk * N + nn,
                                         ws2_g(gc, t[gr][0], t[gr][1]));
            }
    }
}

/* V's rows (channels [k0, k0 + kc)) of the group's nb padded planes xp
 * [nb][ih][iw][kc]: the patches at (2 m + a0, 2 n + b0) (forward, pixels 2
 * apart) or (m + a0, n + b0) (dx) of every segment pair, B^T d B. */
static void ws2_input(const struct ws2 *k, int64_t nb, const float *xp, int64_t a0, int64_t b0, int64_t k0,
                      float *v) {
    int64_t kc = k->kc, K = k->K, s = k->tr ? 1 : 2;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t sr = 0; sr < k->ns[0]; sr++)
            for (int64_t sc = 0; sc < k->ns[1]; sc++) {
                int tr3, tc3;
                int64_t o_r = ws2_seg(k, 0, sr, &tr3), oc = ws2_seg(k, 1, sc, &tc3);
                int nr = tr3 ? 4 : 3, nc = tc3 ? 4 : 3;
                const float *base = xp + ((b * k->ih + s * o_r + a0) * k->iw + s * oc + b0) * kc;
                int64_t row[4][4];
                for (int er = 0; er < nr; er++)
                    for (int ec = 0; ec < nc; ec++)
                        row[er][ec] = ws2_row(k, b, ws2_gid[tr3][er], sr, ws2_gid[tc3][ec], sc) * K + k0;
                for (int64_t ch = 0; ch < kc; ch += 16) {
                    __m512 t[4][4];
                    for (int cq = 0; cq < nc; cq++) {
                        __m512 d[4], o[4];
                        for (int r = 0; r < nr; r++)
                            d[r] = _mm512_loadu_ps(base + (s * r * k->iw + s * cq) * kc + ch);
                        ws2_bt(tr3, d, o);
                        for (int r = 0; r < nr; r++) t[r][cq] = o[r];
                    }
                    for (int r = 0; r < nr; r++) {
                        __m512 o[4];
                        ws2_bt(tc3, t[r], o);
                        for (int cq = 0; cq < nc; cq++) _mm512_storeu_ps(v + row[r][cq] + ch, o[cq]);
                    }
                }
            }
}

#define WS2_P NRT_WINO_TILE_P /* rows per GEMM micro-tile (by 4 vectors of 16 channels) */

static void ws2_tile_any(int P, int V, int64_t K, int64_t N, const float *vt, const float *ut, float *m) {
#define WS2_V(p)                              \
    switch (V) {                              \
    case 4:                                   \
        nrt_wino_tile(p, 4, K, N, vt, ut, m); \
        break;                                \
    case 3:                                   \
        nrt_wino_tile(p, 3, K, N, vt, ut, m); \
        break;                                \
    case 2:                                   \
        nrt_wino_tile(p, 2, K, N, vt, ut, m); \
        break;                                \
    default:                                  \
        nrt_wino_tile(p, 1, K, N, vt, ut, m); \
        break;                                \
    }
    switch (P) {
    case 6:
        WS2_V(6) break;
    case 5:
        WS2_V(5) break;
    case 4:
        WS2_V(4) break;
    case 3:
        WS2_V(3) break;
    case 2:
        WS2_V(2) break;
    default:
        WS2_V(1) break;
    }
#undef WS2_V
}

/* M = V U[q][kind] for each of the 16 kinds' rows of the group's nb images. */
static void ws2_gemm(const struct ws2 *k, int64_t nb, const float *uq, const float *v, float *m) {
    int64_t K = k->K, N = k->N;
    for (int cc = 0; cc < 16; cc++) {
        int64_t T = nb * k->R[cc];
        const float *ve = v + k->base[cc] * K, *ue = uq + cc * K * N;
        float *me = m + k->base[cc] * N;
        for (int64_t n0 = 0; n0 < N; n0 += 64) {
            int V = N - n0 >= 64 ? 4 : (int)((N - n0) / 16);
            for (int64_t p0 = 0; p0 < T; p0 += WS2_P) {
                int P = T - p0 >= WS2_P ? WS2_P : (int)(T - p0);
                if (P == WS2_P && V == 4)
                    nrt_wino_tile(WS2_P, 4, K, N, ve + p0 * K, ue + n0, me + p0 * N + n0);
                else
                    ws2_tile_any(P, V, K, N, ve + p0 * K, ue + n0, me + p0 * N + n0);
            }
        }
    }
}

/* The outputs A^T M A of the group's segments into the pixel-major planes yp
 * [nb][pixels][channels]: the forward's ho x wo x co (bias and relu added),
 * dx's phase (a, b) of h x w x ci (rows 2 i + 1 - a, columns 2 j + 1 - b). */
static void ws2_output(const struct ws2 *k, int64_t nb, const float *m, int64_t a, int64_t b_, float *yp) {
    const struct nrt_conv *c = k->c;
    int64_t N = k->N;
    int64_t oh = k->tr ? c->h : c->ho, ow = k->tr ? c->w : c->wo, oc = k->tr ? c->ci : c->co;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        for (int64_t sr = 0; sr < k->ns[0]; sr++)
            for (int64_t sc = 0; sc < k->ns[1]; sc++) {
                int tr3, tc3;
                int64_t o_r = ws2_seg(k, 0, sr, &tr3), ocol = ws2_seg(k, 1, sc, &tc3);
                int nr = tr3 ? 4 : 3, nc = tc3 ? 4 : 3, mr = nr - 1, mc = nc - 1;
                const float *mp[4][4];
                for (int er = 0; er < nr; er++)
                    for (int ec = 0; ec < nc; ec++)
                        mp[er][ec] = m + ws2_row(k, b, ws2_gid[tr3][er], sr, ws2_gid[tc3][ec], sc) * N;
                float *yb = yp + b * oh * ow * oc;
                for (int64_t n = 0; n < N; n += 16) {
                    __m512 t[3][4], y[3][3];
                    for (int ec = 0; ec < nc; ec++) {
                        __m512 d[4], o[3];
                        for (int er = 0; er < nr; er++) d[er] = _mm512_loadu_ps(mp[er][ec] + n);
                        ws2_at(tr3, d, o);
                        for (int i = 0; i < mr; i++) t[i][ec] = o[i];
                    }
                    for (int i = 0; i < mr; i++) ws2_at(tc3, t[i], y[i]);
                    __m512 bv = !k->tr && k->bias ? _mm512_loadu_ps(k->bias + n) : zero;
                    for (int i = 0; i < mr; i++)
                        for (int j = 0; j < mc; j++) {
                            if (o_r + i >= k->L[0] || ocol + j >= k->L[1])
                                continue; /* a segment past L = 1 */
                            int64_t r = k->tr ? 2 * (o_r + i) + 1 - a : o_r + i;
                            int64_t q = k->tr ? 2 * (ocol + j) + 1 - b_ : ocol + j;
                            __m512 val = y[i][j];
                            if (!k->tr && k->bias) val = _mm512_add_ps(val, bv);
                            if (k->relu) val = _mm512_max_ps(val, zero);
                            _mm512_storeu_ps(yb + (r * ow + q) * oc + n, val);
                        }
                }
            }
}

/* ---- The weight gradient. The forward's output y = A^T [sum over k of
 * U[kind][k] V[k]] A is linear in the weights g, so g's gradient is the
 * transposed transforms of M[kind][k][n] = sum over the products of that
 * kind (every image and segment pair) of V[k] E[n], E = A dy A^T the
 * output gradient's transform: 16 GEMMs [K][products] x [products][N]. */

/* A dy: F(2, 2) [dy0, dy0 + dy1, dy1]; F(3, 2) [dy0, (dy0 + dy1 + dy2) / 2, (dy0 - dy1 + dy2) / 2, dy2]. */
static inline void ws2_a(int three, const __m512 *d, __m512 *o) {
    if (three) {
        const __m512 half = _mm512_set1_ps(0.5f);
        __m512 s = _mm512_add_ps(d[0], d[2]);
        o[0] = d[0], o[1] = _mm512_mul_ps(_mm512_add_ps(s, d[1]), half);
        o[2] = _mm512_mul_ps(_mm512_sub_ps(s, d[1]), half), o[3] = d[2];
    } else {
        o[0] = d[0], o[1] = _mm512_add_ps(d[0], d[1]), o[2] = d[1];
    }
}

/* E's rows (M's space) from the group's nb pixel-major output gradients yp
 * [nb][ho][wo][co] (zero past L). */
static void ws2_dy(const struct ws2 *k, int64_t nb, const float *yp, float *e) {
    int64_t N = k->N, ho = k->L[0], wo = k->L[1];
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        for (int64_t sr = 0; sr < k->ns[0]; sr++)
            for (int64_t sc = 0; sc < k->ns[1]; sc++) {
                int tr3, tc3;
                int64_t o_r = ws2_seg(k, 0, sr, &tr3), o_c = ws2_seg(k, 1, sc, &tc3);
                int nr = tr3 ? 4 : 3, nc = tc3 ? 4 : 3, mr = nr - 1, mc = nc - 1;
                int64_t row[4][4];
                for (int er = 0; er < nr; er++)
                    for (int ec = 0; ec < nc; ec++)
                        row[er][ec] = ws2_row(k, b, ws2_gid[tr3][er], sr, ws2_gid[tc3][ec], sc) * N;
                const float *base = yp + ((b * ho + o_r) * wo + o_c) * N;
                for (int64_t n = 0; n < N; n += 16) {
                    __m512 t[4][3];
                    for (int j = 0; j < mc; j++) {
                        __m512 d[3], o[4];
                        for (int i = 0; i < mr; i++)
                            d[i] = o_r + i < ho && o_c + j < wo ? _mm512_loadu_ps(base + (i * wo + j) * N + n)
                                                                : zero;
                        ws2_a(tr3, d, o);
                        for (int er = 0; er < nr; er++) t[er][j] = o[er];
                    }
                    for (int er = 0; er < nr; er++) {
                        __m512 o[4];
                        ws2_a(tc3, t[er], o);
                        for (int ec = 0; ec < nc; ec++) _mm512_storeu_ps(e + row[er][ec] + n, o[ec]);
                    }
                }
            }
}

static void ws2_dw_tile_any(int P, int V, int64_t T, int64_t K, int64_t N, const float *vt, const float *et,
                            float *m) {
#define WS2_V(p)                                    \
    switch (V) {                                    \
    case 4:                                         \
        nrt_wino_dw_tile(p, 4, T, K, N, vt, et, m); \
        break;                                      \
    case 3:                                         \
        nrt_wino_dw_tile(p, 3, T, K, N, vt, et, m); \
        break;                                      \
    case 2:                                         \
        nrt_wino_dw_tile(p, 2, T, K, N, vt, et, m); \
        break;                                      \
    default:                                        \
        nrt_wino_dw_tile(p, 1, T, K, N, vt, et, m); \
        break;                                      \
    }
    switch (P) {
    case 6:
        WS2_V(6) break;
    case 5:
        WS2_V(5) break;
    case 4:
        WS2_V(4) break;
    case 3:
        WS2_V(3) break;
    case 2:
        WS2_V(2) break;
    default:
        WS2_V(1) break;
    }
#undef WS2_V
}

/* M[kind] += V^T E over the kind's rows of the group's nb images. */
static void ws2_dw_gemm(const struct ws2 *k, int64_t nb, const float *v, const float *e, float *m) {
    int64_t K = k->K, N = k->N;
    for (int cc = 0; cc < 16; cc++) {
        int64_t T = nb * k->R[cc];
        const float *ve = v + k->base[cc] * K, *ee = e + k->base[cc] * N;
        float *mc = m + cc * K * N;
        for (int64_t n0 = 0; n0 < N; n0 += 64) {
            int V = N - n0 >= 64 ? 4 : (int)((N - n0) / 16);
            for (int64_t p0 = 0; p0 < K; p0 += WS2_P) {
                int P = K - p0 >= WS2_P ? WS2_P : (int)(K - p0);
                if (P == WS2_P && V == 4)
                    nrt_wino_dw_tile(WS2_P, 4, T, K, N, ve + p0, ee + n0, mc + p0 * N + n0);
                else
                    ws2_dw_tile_any(P, V, T, K, N, ve + p0, ee + n0, mc + p0 * N + n0);
            }
        }
    }
}

/* Task i's partial M (i >= 1; task 0's is u). */
static inline float *ws2_part(const struct ws2 *k, int64_t i) {
    return k->scratch + k->tasks * k->region + (i - 1) * 16 * k->K * k->N;
}

/* Task i's images into its partial M. */
static void ws2_dw_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct ws2 *k = arg;
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, co = c->co, hw = c->ho * c->wo, inplane = ci * c->h * c->w;
    for (int64_t i = lo; i < hi; i++) {
        float *xp = k->scratch + i * k->region, *yp = xp + k->inf, *v = yp + k->outf, *e = v + k->vf,
              *m = i ? ws2_part(k, i) : k->u; /* task 0's partial in u */
        memset(xp, 0, sizeof *xp * (size_t)k->inf);
        memset(m, 0, sizeof *m * (size_t)(16 * k->K * k->N));
        for (int64_t b0 = c->n * i / k->tasks, b1 = c->n * (i + 1) / k->tasks; b0 < b1; b0 += k->G) {
            int64_t nb = b1 - b0 < k->G ? b1 - b0 : k->G;
            for (int64_t b = 0; b < nb; b++) {
                nrt_transpose16(k->in + (b0 + b) * inplane, c->h * c->w, ci, c->h * c->w, v, ci);
                for (int64_t r = 0; r < c->h; r++)
                    memcpy(xp + ((b * k->ih + r + 1) * k->iw + 1) * ci, v + r * c->w * ci,
                           sizeof *v * (size_t)(c->w * ci));
                nrt_transpose16(k->dy + (b0 + b) * co * hw, hw, co, hw, yp + b * hw * co, co);
            }
            for (int p = 0; p < 4; p++) ws2_input(k, nb, xp, p / 2, p % 2, p * ci, v);
            ws2_dy(k, nb, yp, e);
            ws2_dw_gemm(k, nb, v, e, m);
        }
    }
}

/* u (task 0's partial) += the other tasks' partials, in task order, over [lo, hi). */
static void ws2_dw_sum(void *arg, int64_t lo, int64_t hi) {
    const struct ws2 *k = arg;
    for (int64_t q = lo; q < hi; q++) {
        float s = k->u[q];
        for (int64_t i = 1; i < k->tasks; i++) s += ws2_part(k, i)[q];
        k->u[q] = s;
    }
}

/* dw from M = u: dw[o][ch][2 u + a][2 v + b] = sum over the kinds of
 * G_gr[u] G_gc[v] M[gr 4 + gc][p ci + ch][o], by way of wt [ci][16][co]. */
static void ws2_dw_out(const struct ws2 *k, float *wt, float *dw) {
    const struct nrt_conv *c = k->c;
    static const float gw[4][2] = {{-1, 0}, {1, 1}, {0, 1}, {1, -1}}; /* the rows A, B, C, D */
    int64_t ci = c->ci, co = c->co, KN = k->K * k->N;
    for (int p = 0; p < 4; p++)
        for (int64_t ch = 0; ch < ci; ch++)
            for (int64_t o = 0; o < co; o += 16) {
                __m512 t[4][2]; /* [gr][v]: sum over gc of G_gc[v] M[gr][gc] */
                for (int gr = 0; gr < 4; gr++) {
                    const float *mp = k->u + gr * 4 * KN + (p * ci + ch) * co + o;
                    __m512 ma = _mm512_loadu_ps(mp), mb = _mm512_loadu_ps(mp + KN),
                           mc = _mm512_loadu_ps(mp + 2 * KN), md = _mm512_loadu_ps(mp + 3 * KN);
                    /* v 0: -A + B + D; v 1: B + C - D */
                    t[gr][0] = _mm512_add_ps(_mm512_sub_ps(mb, ma), md);
                    t[gr][1] = _mm512_sub_ps(_mm512_add_ps(mb, mc), md);
                }
                for (int u = 0; u < 2; u++)
                    for (int v = 0; v < 2; v++) {
                        __m512 r = _mm512_setzero_ps();
                        for (int gr = 0; gr < 4; gr++)
                            if (gw[gr][u] != 0)
                                r = gw[gr][u] > 0 ? _mm512_add_ps(r, t[gr][v]) : _mm512_sub_ps(r, t[gr][v]);
                        int tap = (2 * u + p / 2) * 4 + 2 * v + p % 2;
                        _mm512_storeu_ps(wt + (ch * 16 + tap) * co + o, r);
                    }
            }
    nrt_transpose16(wt, co, ci * 16, co, dw, ci * 16);
}

static void ws2_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct ws2 *k = arg;
    const struct nrt_conv *c = k->c;
    int64_t ic = k->kc, ih0 = k->tr ? c->ho : c->h, iw0 = k->tr ? c->wo : c->w;
    int64_t oh = k->tr ? c->h : c->ho, ow = k->tr ? c->w : c->wo, oc = k->tr ? c->ci : c->co;
    int64_t inplane = ic * ih0 * iw0, outplane = oc * oh * ow;
    for (int64_t i = lo; i < hi; i++) {
        float *xp = k->scratch + i * k->region, *yp = xp + k->inf, *v = yp + k->outf, *m = v + k->vf;
        /* The padding stays zero: each image writes the same interior. */
        memset(xp, 0, sizeof *xp * (size_t)k->inf);
        for (int64_t b0 = c->n * i / k->tasks, b1 = c->n * (i + 1) / k->tasks; b0 < b1; b0 += k->G) {
            int64_t nb = b1 - b0 < k->G ? b1 - b0 : k->G;
            for (int64_t b = 0; b < nb; b++) { /* pixel-major into V's space, then rows into the planes */
                nrt_transpose16(k->in + (b0 + b) * inplane, ih0 * iw0, ic, ih0 * iw0, v, ic);
                for (int64_t r = 0; r < ih0; r++)
                    memcpy(xp + ((b * k->ih + r + 1) * k->iw + 1) * ic, v + r * iw0 * ic,
                           sizeof *v * (size_t)(iw0 * ic));
            }
            if (!k->tr) {
                for (int p = 0; p < 4; p++) ws2_input(k, nb, xp, p / 2, p % 2, p * c->ci, v);
                ws2_gemm(k, nb, k->u, v, m);
                ws2_output(k, nb, m, 0, 0, yp);
            } else
                for (int p = 0; p < 4; p++) {
                    ws2_input(k, nb, xp, 1 - p / 2, 1 - p % 2, 0, v);
                    ws2_gemm(k, nb, k->u + p * 16 * k->K * k->N, v, m);
                    ws2_output(k, nb, m, p / 2, p % 2, yp);
                }
            for (int64_t b = 0; b < nb; b++)
                nrt_transpose16(yp + b * oh * ow * oc, oc, oh * ow, oc, k->out + (b0 + b) * outplane,
                                oh * ow);
        }
    }
}

/* The plan of c in direction dir (0 forward, 1 input gradient, 2 weight
 * gradient) within the scratch, or 0. */
static int ws2_plan(struct ws2 *k, const struct nrt_conv *c, int dir, float *scratch) {
    const char *e = getenv("NETC_CONV_WINOGRAD");
    if ((e && e[0] == '0') || getenv("NETC_CONV_IM2COL") || c->n < 1 || !nrt_conv_ws2_floats(c)) return 0;
    memset(k, 0, sizeof *k);
    k->c = c, k->dir = dir, k->tr = dir == 1;
    struct nrt_ws2_geo g = nrt_conv_ws2_geo(c, dir);
    k->K = g.K, k->N = g.N, k->ih = g.ih, k->iw = g.iw, k->kc = k->tr ? c->co : c->ci;
    k->G = dir == 2 ? NRT_WS2_DW_GROUP : NRT_WS2_GROUP;
    k->L[0] = c->ho, k->L[1] = c->wo;
    for (int d = 0; d < 2; d++) {
        k->n3[d] = nrt_ws2_n3(k->L[d]);
        k->ns[d] = k->n3[d] + (k->L[d] - 3 * k->n3[d] + 1) / 2;
    }
    for (int cc = 0; cc < 16; cc++) {
        k->R[cc] = ws2_cnt(k, 0, cc / 4) * ws2_cnt(k, 1, cc % 4);
        k->base[cc] = k->rows, k->rows += k->G * k->R[cc];
    }
    int64_t threads = nrt_threads_inside() ? 1 : nrt_threads_get(),
            most = dir == 2 ? NRT_WS2_DW_TASKS : NRT_WINO_TASKS;
    k->tasks = threads < c->n ? threads : c->n;
    k->tasks = k->tasks < most ? k->tasks : most;
    if (k->tasks < 1) k->tasks = 1;
    k->inf = g.inf, k->outf = g.outf, k->vf = g.vf, k->mf = g.mf, k->region = g.region;
    int64_t uf = nrt_wino_r16(64 * c->ci * c->co), wtf = 16 * c->ci * c->co;
    /* the weight gradient's partials of tasks 1.. after the tasks' parts */
    int64_t pf = dir == 2 ? 16 * k->K * k->N : 0;
    while (k->tasks > 1 && uf + nrt_wino_max(wtf, k->tasks * (k->region + pf) - pf) > nrt_conv_scratch(c))
        k->tasks--;
    if (uf + nrt_wino_max(wtf, k->tasks * (k->region + pf) - pf) > nrt_conv_scratch(c)) return 0;
    k->u = scratch, k->scratch = scratch + uf;
    return 1;
}

int nrt_ws2_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                   float *y, float *scratch) {
    struct ws2 k;
    if (!ws2_plan(&k, c, 0, scratch)) return 0;
    ws2_weights(&k, w, k.scratch, k.u);
    k.in = x, k.bias = bias, k.relu = relu, k.out = y;
    nrt_parallel_for(k.tasks, 1, ws2_tasks, &k);
    return 1;
}

int nrt_ws2_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                              float *scratch) {
    struct ws2 k;
    if (!ws2_plan(&k, c, 1, scratch)) return 0;
    ws2_weights(&k, w, k.scratch, k.u);
    k.in = dy, k.out = dx;
    nrt_parallel_for(k.tasks, 1, ws2_tasks, &k);
    return 1;
}

int nrt_ws2_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                               float *scratch) {
    struct ws2 k;
    if (!ws2_plan(&k, c, 2, scratch)) return 0;
    k.in = x, k.dy = dy;
    nrt_parallel_for(k.tasks, 1, ws2_dw_tasks, &k);
    if (k.tasks > 1) nrt_parallel_for(16 * k.K * k.N, 4096, ws2_dw_sum, &k);
    ws2_dw_out(&k, k.scratch, dw);
    return 1;
}

#else

int nrt_ws2_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                   float *y, float *scratch) {
    (void)c, (void)x, (void)w, (void)bias, (void)relu, (void)y, (void)scratch;
    return 0;
}

int nrt_ws2_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                              float *scratch) {
    (void)c, (void)dy, (void)w, (void)dx, (void)scratch;
    return 0;
}

int nrt_ws2_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                               float *scratch) {
    (void)c, (void)x, (void)dy, (void)dw, (void)scratch;
    return 0;
}

#endif
