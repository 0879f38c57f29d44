/* runtime/winograd.c -- 3x3 stride-1 convolutions by Winograd's F(4x4, 3x3)
 * (36 multiplies per 4x4 outputs and channel pair instead of 144, on vectors
 * of 16 channels, the weights' transform cached between calls) and F(2x2,
 * 3x3) (Lavin & Gray 2015; 16 instead of 36, on vectors of 16 tiles) with
 * AVX-512, called by kernels.c before the direct kernels: inference's
 * forward by F(4x4) (F(2x2) where it does not fit), training's forward by
 * F(2x2), training's input and weight gradients by F(4x4) transposed.
 * Training's forward is F(2x2) for its rounding. With F(4x4) (rms error 3x
 * the direct kernels', bench/wino_grad_error.c) the trajectory of a step
 * after step parted from itself under a rounding's change of the weights:
 * one process against 2 MPI ranks (tests/e2e/dp_cnn.test) 3e-4 apart after
 * 6 steps instead of 1e-6, one process at 1 against 2 threads as much,
 * though each image's outputs are bit-identical at any batch and thread
 * count; relu and max-pool kinks (about a million outputs a step of
 * mnist_cnn) amplify the difference. F(2x2)'s error is below the direct
 * kernels', its transforms only add and subtract, and each output reads
 * only its own 3x3 field: a field of zeros gives exactly act(bias) and a
 * flat field (a background) one value wherever it lies, as the direct
 * kernels give. The gradients have no kink after them within the step. */
#include "runtime/internal.h"
#include "runtime/wino_tile.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

#define WINO_P 6 /* tiles per GEMM micro-tile (by 4 vectors of 16 channels) */

/* One call's problem and its scratch. */
struct wino {
    const struct nrt_conv *c;
    int64_t th, tw, t, tp; /* tiles: rows, columns, per image, rounded up to WINO_P */
    int64_t hp, wp;        /* the padded input planes: 2 th + 2 by 2 tw + 2 */
    int64_t xf, vf, mf;    /* floats of the padded image (and slack), V and M */
    const float *x, *bias;
    int relu;
    float *u;       /* transformed weights [16][ci][co] */
    float *scratch; /* task i's part at scratch + i * (xf + vf + mf + ff) */
    float *y;
    int64_t tasks;
};

/* Whether c is a 3x3 stride-1 undilated ungrouped conv with 16k output
 * channels and enough input channels for the transforms to pay. */
static int wino_ok(const struct nrt_conv *c) {
    const char *e = getenv("NETC_CONV_WINOGRAD");
    if (e && e[0] == '0') return 0;
    return c->kh == 3 && c->kw == 3 && c->s[0] == 1 && c->s[1] == 1 && c->d[0] == 1 && c->d[1] == 1 &&
           c->g == 1 && c->co % 16 == 0 && c->ci >= 16 && c->n >= 1 && c->ho >= 2 && c->wo >= 2 &&
           !getenv("NETC_CONV_IM2COL");
}

/* u[e][ci][co] = (G g G^T)[e] for every weight plane g = w[co][ci]: the taps
 * gathered 16 output channels at a time, the transform on vectors. */
static void wino_weights(const struct nrt_conv *c, const float *w, float *u) {
    int64_t ci = c->ci, co = c->co, kk = ci * 9;
    const __m512i rows = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)kk));
    const __m512 half = _mm512_set1_ps(0.5f);
    for (int64_t o = 0; o < co; o += 16)
        for (int64_t i = 0; i < ci; i++) {
            __m512 g[9], t[4][3];
            for (int k = 0; k < 9; k++) g[k] = _mm512_i32gather_ps(rows, w + o * kk + i * 9 + k, 4);
            for (int j = 0; j < 3; j++) { /* t = G g: rows g0, (g0+g1+g2)/2, (g0-g1+g2)/2, g2 */
                __m512 a = g[j], b = g[3 + j], d = g[6 + j], s = _mm512_add_ps(a, d);
                t[0][j] = a;
                t[1][j] = _mm512_mul_ps(_mm512_add_ps(s, b), half);
                t[2][j] = _mm512_mul_ps(_mm512_sub_ps(s, b), half);
                t[3][j] = d;
            }
            for (int r = 0; r < 4; r++) { /* u = t G^T: the same on the columns */
                __m512 a = t[r][0], b = t[r][1], d = t[r][2], s = _mm512_add_ps(a, d);
                __m512 v[4] = {a, _mm512_mul_ps(_mm512_add_ps(s, b), half),
                               _mm512_mul_ps(_mm512_sub_ps(s, b), half), d};
                for (int k = 0; k < 4; k++) _mm512_storeu_ps(u + ((r * 4 + k) * ci + i) * co + o, v[k]);
            }
        }
}

/* v[e][ch][t] = (B^T d B)[e] for the 4x4 patches d at (2 ty, 2 tx) of the
 * padded planes xp, 16 tiles of a row at a time: row combinations on vectors
 * of columns, then even and odd columns picked out by permutes. */
static void wino_input(const struct wino *k, const float *xp, float *v) {
    int64_t ci = k->c->ci, plane = k->hp * k->wp;
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
    for (int64_t ch = 0; ch < ci; ch++)
        for (int64_t ty = 0; ty < k->th; ty++)
            for (int64_t tx0 = 0; tx0 < k->tw; tx0 += 16) {
                const float *r = xp + ch * plane + 2 * ty * k->wp + 2 * tx0;
                __mmask16 m = (__mmask16)(k->tw - tx0 >= 16 ? 0xffff : (1u << (k->tw - tx0)) - 1);
                __m512 e[4][4];               /* [row combination][column offset 0..3 of each tile] */
                for (int q = 0; q < 2; q++) { /* columns 2tx+0/1 (q 0), 2tx+2/3 (q 1) */
                    __m512 lo[4], hi[4];
                    for (int i = 0; i < 4; i++) {
                        lo[i] = _mm512_loadu_ps(r + i * k->wp + 2 * q);
                        hi[i] = _mm512_loadu_ps(r + i * k->wp + 2 * q + 16);
                    }
                    __m512 c[4][2] = {{_mm512_sub_ps(lo[0], lo[2]), _mm512_sub_ps(hi[0], hi[2])},
                                      {_mm512_add_ps(lo[1], lo[2]), _mm512_add_ps(hi[1], hi[2])},
                                      {_mm512_sub_ps(lo[2], lo[1]), _mm512_sub_ps(hi[2], hi[1])},
                                      {_mm512_sub_ps(lo[1], lo[3]), _mm512_sub_ps(hi[1], hi[3])}};
                    for (int a = 0; a < 4; a++) {
                        e[a][2 * q] = _mm512_permutex2var_ps(c[a][0], ev, c[a][1]);
                        e[a][2 * q + 1] = _mm512_permutex2var_ps(c[a][0], od, c[a][1]);
                    }
                }
                int64_t at = ty * k->tw + tx0;
                for (int a = 0; a < 4; a++) {
                    __m512 col[4] = {_mm512_sub_ps(e[a][0], e[a][2]), _mm512_add_ps(e[a][1], e[a][2]),
                                     _mm512_sub_ps(e[a][2], e[a][1]), _mm512_sub_ps(e[a][1], e[a][3])};
                    for (int b = 0; b < 4; b++)
                        _mm512_mask_storeu_ps(v + ((a * 4 + b) * ci + ch) * k->tp + at, m, col[b]);
                }
            }
}

/* out[p][c0 + 16 j + l] = sum over ch of vt[ch][t0 + p] * ut[ch][c0 + 16 j + l]
 * for WINO_P tiles p and 64 channels (rows of out co apart). */
static inline void wino_tile(int64_t ci, int64_t co, int64_t tp, const float *vt, const float *ut,
                             float *out) {
    __m512 acc[4][WINO_P];
    for (int j = 0; j < 4; j++)
        for (int p = 0; p < WINO_P; p++) acc[j][p] = _mm512_setzero_ps();
    for (int64_t ch = 0; ch < ci; ch++, vt += tp, ut += co) {
        __m512 wv[4];
        for (int j = 0; j < 4; j++) wv[j] = _mm512_loadu_ps(ut + 16 * j);
        for (int p = 0; p < WINO_P; p++) {
            __m512 b = _mm512_set1_ps(vt[p]);
            for (int j = 0; j < 4; j++) acc[j][p] = _mm512_fmadd_ps(wv[j], b, acc[j][p]);
        }
    }
    for (int p = 0; p < WINO_P; p++)
        for (int j = 0; j < 4; j++) _mm512_storeu_ps(out + p * co + 16 * j, acc[j][p]);
}

/* The same for 16 channels (co not a multiple of 64: the last ones). */
static inline void wino_tile16(int64_t ci, int64_t co, int64_t tp, const float *vt, const float *ut,
                               float *out) {
    __m512 acc[WINO_P];
    for (int p = 0; p < WINO_P; p++) acc[p] = _mm512_setzero_ps();
    for (int64_t ch = 0; ch < ci; ch++, vt += tp, ut += co) {
        __m512 wv = _mm512_loadu_ps(ut);
        for (int p = 0; p < WINO_P; p++) acc[p] = _mm512_fmadd_ps(wv, _mm512_set1_ps(vt[p]), acc[p]);
    }
    for (int p = 0; p < WINO_P; p++) _mm512_storeu_ps(out + p * co, acc[p]);
}

/* One image: x [ci][h][w] to y [co][ho][wo]; part: its scratch. */
static void wino_image(const struct wino *k, const float *x, float *y, float *part) {
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, co = c->co, hw = c->ho * c->wo;
    float *xp = part, *v = part + k->xf, *m = v + k->vf;
    /* The padded planes: the layer's padding at the top left, zeros to 2 th + 2, 2 tw + 2. */
    memset(xp, 0, sizeof *xp * (size_t)k->xf);
    for (int64_t ch = 0; ch < ci; ch++)
        for (int64_t r = 0; r < c->h; r++) {
            int64_t rp = r + c->p[0], c0 = c->p[1] < 0 ? -c->p[1] : 0;
            int64_t c1 = c->w + c->p[1] > k->wp ? k->wp - c->p[1] : c->w;
            if (rp < k->hp && c1 > c0)
                memcpy(xp + (ch * k->hp + rp) * k->wp + c->p[1] + c0, x + (ch * c->h + r) * c->w + c0,
                       sizeof *xp * (size_t)(c1 - c0));
        }
    wino_input(k, xp, v);
    for (int e = 0; e < 16; e++) {
        const float *ve = v + e * ci * k->tp, *ue = k->u + e * ci * co;
        float *me = m + e * k->tp * co;
        for (int64_t t0 = 0; t0 < k->tp; t0 += WINO_P) {
            int64_t o = 0;
            for (; o + 64 <= co; o += 64) wino_tile(ci, co, k->tp, ve + t0, ue + o, me + t0 * co + o);
            for (; o < co; o += 16) wino_tile16(ci, co, k->tp, ve + t0, ue + o, me + t0 * co + o);
        }
    }
    /* Back to 2x2 outputs, pixel-major in tmp [hw][co] (V's floats, no longer
     * needed), then planes by gathers with the bias and relu. */
    float *tmp = v;
    for (int64_t t = 0; t < k->t; t++) {
        int64_t ty = t / k->tw, tx = t % k->tw, oh = 2 * ty, ow = 2 * tx;
        for (int64_t o = 0; o < co; o += 16) {
            __m512 s[2][4];
            for (int b = 0; b < 4; b++) {
                __m512 m0 = _mm512_loadu_ps(m + ((0 + b) * k->tp + t) * co + o);
                __m512 m1 = _mm512_loadu_ps(m + ((4 + b) * k->tp + t) * co + o);
                __m512 m2 = _mm512_loadu_ps(m + ((8 + b) * k->tp + t) * co + o);
                __m512 m3 = _mm512_loadu_ps(m + ((12 + b) * k->tp + t) * co + o);
                s[0][b] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2);
                s[1][b] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
            }
            for (int i = 0; i < 2 && oh + i < c->ho; i++) {
                __m512 y0 = _mm512_add_ps(_mm512_add_ps(s[i][0], s[i][1]), s[i][2]);
                __m512 y1 = _mm512_sub_ps(_mm512_sub_ps(s[i][1], s[i][2]), s[i][3]);
                int64_t p = (oh + i) * c->wo + ow;
                _mm512_storeu_ps(tmp + p * co + o, y0);
                if (ow + 1 < c->wo) _mm512_storeu_ps(tmp + (p + 1) * co + o, y1);
            }
        }
    }
    const __m512i rows = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)co));
    const __m512 zero = _mm512_setzero_ps();
    const __mmask16 tail = (__mmask16)((1u << (hw % 16)) - 1);
    for (int64_t o = 0; o < co; o++) {
        const __m512 b = _mm512_set1_ps(k->bias ? k->bias[o] : 0.0f);
        int64_t p = 0;
        for (; p + 16 <= hw; p += 16) {
            __m512 r = _mm512_add_ps(_mm512_i32gather_ps(rows, tmp + p * co + o, 4), b);
            _mm512_storeu_ps(y + o * hw + p, k->relu ? _mm512_max_ps(r, zero) : r);
        }
        if (p < hw) {
            __m512 r = _mm512_add_ps(_mm512_mask_i32gather_ps(zero, tail, rows, tmp + p * co + o, 4), b);
            _mm512_mask_storeu_ps(y + o * hw + p, tail, k->relu ? _mm512_max_ps(r, zero) : r);
        }
    }
}

static void wino_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct wino *k = arg;
    const struct nrt_conv *c = k->c;
    for (int64_t i = lo; i < hi; i++) {
        float *part = k->scratch + i * (k->xf + k->vf + k->mf);
        for (int64_t b = c->n * i / k->tasks; b < c->n * (i + 1) / k->tasks; b++)
            wino_image(k, k->x + b * c->ci * c->h * c->w, k->y + b * c->co * c->ho * c->wo, part);
    }
}

/* ---- F(4x4, 3x3): 6x6 input patches, 36 multiplies per 4x4 outputs (of 144).
 * Everything runs on vectors of 16 channels: the images are transposed to
 * pixel-major planes [hp][wp][ci] (padded), so a patch is 36 contiguous
 * channel vectors; V [36][tile][ci], U [36][ci][co] and M [36][tile][co] keep
 * channels innermost, and the outputs are written pixel-major [hw][co] with
 * the bias and relu, then transposed to NCHW. */

#define W4_P NRT_WINO_TILE_P /* tiles per GEMM micro-tile (by V vectors of 16 output channels) */

struct wino4 {
    const struct nrt_conv *c;
    int64_t th, tw, t;  /* tiles per image: rows, columns, all */
    int64_t hp, wp;     /* the padded pixel-major planes: 4 th + 2 by 4 tw + 2 */
    int64_t group;      /* images transformed and multiplied together */
    int64_t tp;         /* tiles of a group, rounded up to 3 */
    int64_t xf, vf, mf; /* floats of a group's planes, V (and the outputs), M */
    int64_t split;      /* tasks per image range: output channel ranges (batch below the threads) */
    int64_t tasks;
    const float *x, *bias;
    int relu, pool;    /* pool: 2x2 max pooling of the outputs (floor) */
    int share;         /* one image split by output channels: tasks may share task 0's V (w4_tasks) */
    _Atomic int ready; /* with share: task 0's planes and V are complete */
    const float *u;    /* [36][ci][co] */
    float *scratch;    /* task i's part at scratch + i * (xf + vf + mf) */
    float *y;
};

/* The transforms for the points 0, 1, -1, 1/2, -2 and infinity: about half
 * the float32 error of Lavin & Gray's 0, +-1, +-2 (Barabasz et al. 2020; 1.8e-5
 * against 3.3e-5 on uniform [-1, 1) data at 32 input channels, simulated). */
static const float W4_BT[6][6] = {{1, -1.5f, -2, 1.5f, 1, 0}, {0, -1, 0.5f, 2.5f, 1, 0},
                                  {0, 1, -2.5f, 0.5f, 1, 0},  {0, -2, -1, 2, 1, 0},
                                  {0, 0.5f, -1, -0.5f, 1, 0}, {0, 1, -1.5f, -2, 1.5f, 1}};
static const float W4_G[6][3] = {{1, 0, 0},
                                 {1.0f / 3, 1.0f / 3, 1.0f / 3},
                                 {-1.0f / 3, 1.0f / 3, -1.0f / 3},
                                 {-16.0f / 15, -8.0f / 15, -4.0f / 15},
                                 {1.0f / 15, -2.0f / 15, 4.0f / 15},
                                 {0, 0, 1}};
static const float W4_AT[4][6] = {
    {1, 1, 1, 1, 1, 0}, {0, 1, -1, 0.5f, -2, 0}, {0, 1, 1, 0.25f, 4, 0}, {0, 1, -1, 0.125f, -8, 1}};

/* r[i] = sum over k < K of m[i][k] d[k] for i < I, m a constant matrix (the
 * calls unroll, so zeros drop out and ones become adds). */
static inline __attribute__((always_inline)) void w4_lin(const int I, const int K, const float *m,
                                                         const __m512 *d, __m512 *r) {
#pragma GCC unroll 6
    for (int i = 0; i < I; i++) {
        __m512 acc = _mm512_setzero_ps();
        int first = 1;
#pragma GCC unroll 6
        for (int k = 0; k < K; k++) {
            float c = m[i * K + k];
            if (c == 0) continue;
            if (first)
                acc = c == 1    ? d[k]
                      : c == -1 ? _mm512_sub_ps(_mm512_setzero_ps(), d[k])
                                : _mm512_mul_ps(_mm512_set1_ps(c), d[k]);
            else
                acc = c == 1    ? _mm512_add_ps(acc, d[k])
                      : c == -1 ? _mm512_sub_ps(acc, d[k])
                                : _mm512_fmadd_ps(_mm512_set1_ps(c), d[k], acc);
            first = 0;
        }
        r[i] = acc;
    }
}

/* u[e][ci][co] = (G g G^T)[e] from wt [ci*9][co] (the weights transposed). */
static void w4_weights(int64_t ci, int64_t co, const float *wt, float *u) {
    for (int64_t i = 0; i < ci; i++)
        for (int64_t o = 0; o < co; o += 16) {
            __m512 t[6][3];
            for (int j = 0; j < 3; j++) { /* t = G g on the columns of g */
                __m512 d[3], r[6];
                for (int k = 0; k < 3; k++) d[k] = _mm512_loadu_ps(wt + (i * 9 + 3 * k + j) * co + o);
                w4_lin(6, 3, &W4_G[0][0], d, r);
                for (int k = 0; k < 6; k++) t[k][j] = r[k];
            }
            for (int r = 0; r < 6; r++) { /* u = t G^T: the same on the rows */
                __m512 v[6];
                w4_lin(6, 3, &W4_G[0][0], t[r], v);
                for (int k = 0; k < 6; k++) _mm512_storeu_ps(u + ((r * 6 + k) * ci + i) * co + o, v[k]);
            }
        }
}

/* B^T applied to 6 vectors d[0..5] into r[0..5]. */
static inline __attribute__((always_inline)) void w4_bt(const __m512 *d, __m512 *r) {
    w4_lin(6, 6, &W4_BT[0][0], d, r);
}

/* v[e][t0 + t][ci] = (B^T d B)[e] for the tiles of nb images' padded planes xp. */
static void w4_input(const struct wino4 *k, int64_t nb, const float *xp, float *v) {
    int64_t ci = k->c->ci, ld = k->tp * ci;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < k->th; ty++)
            for (int64_t tx = 0; tx < k->tw; tx++) {
                const float *p = xp + ((b * k->hp + 4 * ty) * k->wp + 4 * tx) * ci;
                float *out = v + ((b * k->th + ty) * k->tw + tx) * ci;
                for (int64_t ch = 0; ch < ci; ch += 16) {
                    __m512 t[6][6]; /* [B^T row][column] */
                    for (int j = 0; j < 6; j++) {
                        __m512 d[6], r[6];
                        for (int i = 0; i < 6; i++) d[i] = _mm512_loadu_ps(p + (i * k->wp + j) * ci + ch);
                        w4_bt(d, r);
                        for (int i = 0; i < 6; i++) t[i][j] = r[i];
                    }
                    for (int i = 0; i < 6; i++) {
                        __m512 r[6];
                        w4_bt(t[i], r);
                        for (int j = 0; j < 6; j++) _mm512_storeu_ps(out + (i * 6 + j) * ld + ch, r[j]);
                    }
                }
            }
    for (int64_t e = 0; e < 36; e++) /* rows past the tiles: zeros, not stale floats */
        memset(v + e * ld + nb * k->t * ci, 0, sizeof *v * (size_t)((k->tp - nb * k->t) * ci));
}

/* M[e] = V[e] U[e] for the tp tiles and output channels [o0, o1). */
static void w4_gemm(const struct wino4 *k, const float *v, float *m, int64_t o0, int64_t o1) {
    int64_t ci = k->c->ci, co = k->c->co;
    for (int64_t e = 0; e < 36; e++) {
        const float *ve = v + e * k->tp * ci, *ue = k->u + e * ci * co;
        float *me = m + e * k->tp * co;
        for (int64_t t0 = 0; t0 < k->tp;) {
            int P = k->tp - t0 >= W4_P ? W4_P : 3;
            for (int64_t o = o0; o < o1;) {
                int64_t left = (o1 - o) / 16;
                int V = left >= 4 ? 4 : left >= 2 ? 2 : 1;
                const float *vt = ve + t0 * ci, *uo = ue + o;
                float *mt = me + t0 * co + o;
                if (P == W4_P && V == 4)
                    nrt_wino_tile(W4_P, 4, ci, co, vt, uo, mt);
                else if (P == W4_P && V == 2)
                    nrt_wino_tile(W4_P, 2, ci, co, vt, uo, mt);
                else if (P == W4_P)
                    nrt_wino_tile(W4_P, 1, ci, co, vt, uo, mt);
                else if (V == 4)
                    nrt_wino_tile(3, 4, ci, co, vt, uo, mt);
                else if (V == 2)
                    nrt_wino_tile(3, 2, ci, co, vt, uo, mt);
                else
                    nrt_wino_tile(3, 1, ci, co, vt, uo, mt);
                o += 16 * V;
            }
            t0 += P;
        }
    }
}

/* A^T applied to 6 vectors m[0..5] into r[0..3]. */
static inline __attribute__((always_inline)) void w4_at(const __m512 *m, __m512 *r) {
    w4_lin(4, 6, &W4_AT[0][0], m, r);
}

/* The outputs of image b of the group, channels [o0, o1): A^T M A per tile,
 * bias and relu, into out [hw][co] (pixel-major); with k->pool, their 2x2
 * maxima into out [ho/2 * wo/2][co] (a 4x4 tile holds whole windows). Only
 * the rows and columns of a tile that are stored (or pooled) are computed:
 * the last tiles of mnist_cnn's 11x11 layer need 2 of their 4. */
static void w4_output(const struct wino4 *k, int64_t b, const float *m, float *out, int64_t o0, int64_t o1) {
    const struct nrt_conv *c = k->c;
    int64_t co = c->co, ld = k->tp * co, ph = c->ho / 2, pw = c->wo / 2;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t ty = 0; ty < k->th; ty++)
        for (int64_t tx = 0; tx < k->tw; tx++) {
            const float *mt = m + ((b * k->th + ty) * k->tw + tx) * co;
            /* The outputs of the tile that are needed: nh x nw (pooled: the
             * 2x2 windows within ph x pw, pi x pj of them). */
            int64_t nh = c->ho - 4 * ty < 4 ? c->ho - 4 * ty : 4,
                    nw = c->wo - 4 * tx < 4 ? c->wo - 4 * tx : 4;
            int64_t pi = ph - 2 * ty < 2 ? ph - 2 * ty : 2, pj = pw - 2 * tx < 2 ? pw - 2 * tx : 2;
            if (k->pool) nh = 2 * pi, nw = 2 * pj;
            if (nh <= 0 || nw <= 0) continue;
            for (int64_t o = o0; o < o1; o += 16) {
                __m512 t[4][6], bv = _mm512_set1_ps(0.0f);
                if (k->bias) bv = _mm512_loadu_ps(k->bias + o);
                for (int j = 0; j < 6; j++) { /* A^T on the columns: the first nh rows */
                    __m512 d[6], r[4];
                    for (int i = 0; i < 6; i++) d[i] = _mm512_loadu_ps(mt + (i * 6 + j) * ld + o);
                    if (nh > 2)
                        w4_lin(4, 6, &W4_AT[0][0], d, r);
                    else
                        w4_lin(2, 6, &W4_AT[0][0], d, r);
                    for (int i = 0; i < nh; i++) t[i][j] = r[i];
                }
                if (k->pool) {
                    __m512 r[4][4];
                    for (int i = 0; i < nh; i++) {
                        if (nw > 2)
                            w4_lin(4, 6, &W4_AT[0][0], t[i], r[i]);
                        else
                            w4_lin(2, 6, &W4_AT[0][0], t[i], r[i]);
                        for (int j = 0; j < nw; j++) {
                            r[i][j] = _mm512_add_ps(r[i][j], bv);
                            if (k->relu) r[i][j] = _mm512_max_ps(r[i][j], zero);
                        }
                    }
                    for (int i = 0; i < pi; i++)
                        for (int j = 0; j < pj; j++) {
                            __m512 m =
                                _mm512_max_ps(_mm512_max_ps(r[2 * i][2 * j], r[2 * i][2 * j + 1]),
                                              _mm512_max_ps(r[2 * i + 1][2 * j], r[2 * i + 1][2 * j + 1]));
                            _mm512_storeu_ps(out + ((2 * ty + i) * pw + 2 * tx + j) * co + o, m);
                        }
                    continue;
                }
                for (int i = 0; i < nh; i++) {
                    __m512 r[4];
                    w4_at(t[i], r);
                    float *dst = out + ((4 * ty + i) * c->wo + 4 * tx) * co + o;
                    for (int j = 0; j < nw; j++) {
                        __m512 y = _mm512_add_ps(r[j], bv);
                        _mm512_storeu_ps(dst + j * co, k->relu ? _mm512_max_ps(y, zero) : y);
                    }
                }
            }
        }
}

/* Transformed weights kept between calls: inference runs the same weights
 * call after call, and their transform was about half of a batch-1 call. An
 * entry keeps a copy of the weights it came from. Inside an inference run
 * whose weights are parameters of the running context (nrt_params_token), it
 * serves while it carries that run's token, which proves the weights have not
 * changed since it was made or checked; otherwise (another token, none: a
 * direct call) it serves only while the weights equal its copy (memcmp, ~1 us
 * for mnist_cnn's 73 KB), so weights changed in place are always seen. Readers
 * hold the lock while they use an entry's u. */
#define W4_CACHE 8                /* entries, replaced in turn */
#define W4_CACHE_FLOATS (1 << 22) /* the largest entry (copy and u): 16 MB */
static struct w4_entry {
    const float *w;
    int64_t ci, co;
    float *copy, *u;
    _Atomic uint64_t token; /* the parameter token the weights were last seen under; 0: none */
} w4_cache[W4_CACHE];
static int w4_next;
static pthread_rwlock_t w4_lock = PTHREAD_RWLOCK_INITIALIZER;

/* u = the transform of w [co][ci][3][3] by way of wt (9 ci co floats). */
static void w4_transform(int64_t ci, int64_t co, const float *w, float *wt, float *u) {
    nrt_transpose16(w, 9 * ci, co, 9 * ci, wt, co);
    w4_weights(ci, co, wt, u);
}

/* The cached transform of w, with the read lock held (the caller unlocks),
 * or NULL (no lock held) when it is too large or memory runs out. */
static const float *w4_cached(int64_t ci, int64_t co, const float *w, float *wt) {
    size_t nw = (size_t)(9 * ci * co);
    if (45 * ci * co > W4_CACHE_FLOATS) return NULL;
    uint64_t token = nrt_params_token(w, sizeof *w * nw);
    for (int pass = 0; pass < 2; pass++) {
        pthread_rwlock_rdlock(&w4_lock);
        for (int i = 0; i < W4_CACHE; i++) {
            struct w4_entry *e = &w4_cache[i];
            if (e->w != w || e->ci != ci || e->co != co) continue;
            if (token && atomic_load(&e->token) == token) return e->u;
            if (!memcmp(e->copy, w, sizeof *w * nw)) {
                if (token) atomic_store(&e->token, token);
                return e->u;
            }
        }
        pthread_rwlock_unlock(&w4_lock);
        if (pass) break;
        pthread_rwlock_wrlock(&w4_lock);
        struct w4_entry *e = NULL;
        for (int i = 0; i < W4_CACHE && !e; i++)
            if (w4_cache[i].w == w && w4_cache[i].ci == ci && w4_cache[i].co == co) e = &w4_cache[i];
        if (!e) {
            e = &w4_cache[w4_next];
            w4_next = (w4_next + 1) % W4_CACHE;
            free(e->copy), free(e->u);
            e->copy = malloc(sizeof *w * nw), e->u = malloc(sizeof *w * 4 * nw);
            e->w = w, e->ci = ci, e->co = co;
        }
        atomic_store(&e->token, 0);
        if (e->copy && e->u) {
            memcpy(e->copy, w, sizeof *w * nw);
            w4_transform(ci, co, w, wt, e->u);
        } else {
            free(e->copy), free(e->u);
            e->copy = e->u = NULL, e->w = NULL;
        }
        pthread_rwlock_unlock(&w4_lock);
    }
    return NULL;
}

/* The nb images x [nb][ci][h][w] pixel-major into xp [nb][hp][wp][ci], at
 * the padding's offset in planes whose other pixels (the rows above and
 * below, the columns left and right) are zeroed. */
static void w4_planes(const struct wino4 *k, const float *x, int64_t nb, float *xp) {
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, plane = c->h * c->w;
    int64_t p0 = c->p[0], p1 = c->p[1], right = k->wp - p1 - c->w, rowf = k->wp * ci;
    for (int64_t b = 0; b < nb; b++) {
        float *pb = xp + b * k->hp * rowf;
        memset(pb, 0, sizeof *xp * (size_t)(p0 * rowf));
        memset(pb + (p0 + c->h) * rowf, 0, sizeof *xp * (size_t)((k->hp - p0 - c->h) * rowf));
        for (int64_t row = 0; row < c->h; row++) {
            float *pr = pb + (row + p0) * rowf;
            memset(pr, 0, sizeof *xp * (size_t)(p1 * ci));
            memset(pr + (p1 + c->w) * ci, 0, sizeof *xp * (size_t)(right * ci));
            nrt_transpose16(x + b * ci * plane + row * c->w, plane, ci, c->w, pr + p1 * ci, ci);
        }
    }
}

/* Task i: images [b0, b1) (a range of images, or all of them with a range of
 * output channels when split > 1), by groups. One image split by output
 * channels (batch 1, k->share): task 0 publishes its planes and V when done
 * (k->ready), and a task that starts after that multiplies them instead of
 * transforming the image again (so a run whose tasks all fall to one thread
 * transforms once; running together, each transforms its own); task 0
 * writes its outputs over its planes, which it alone reads. */
static void w4_tasks(void *arg, int64_t lo, int64_t hi) {
    struct wino4 *k = arg;
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, co = c->co, hw = k->pool ? c->ho / 2 * (c->wo / 2) : c->ho * c->wo,
            plane = c->h * c->w;
    for (int64_t i = lo; i < hi; i++) {
        float *xp = k->scratch + i * (k->xf + k->vf + k->mf), *v = xp + k->xf, *m = v + k->vf, *out = v;
        int64_t r = i / k->split, s = i % k->split, ranges = k->tasks / k->split;
        int64_t b0 = c->n * r / ranges, b1 = c->n * (r + 1) / ranges, vecs = co / 16;
        int64_t o0 = vecs * s / k->split * 16, o1 = vecs * (s + 1) / k->split * 16;
        if (k->share) out = xp;
        if (k->share && i > 0 && atomic_load_explicit(&k->ready, memory_order_acquire)) {
            w4_gemm(k, k->scratch + k->xf, m, o0, o1);
            w4_output(k, 0, m, out, o0, o1);
            nrt_transpose16(out + o0, co, hw, o1 - o0, k->y + o0 * hw, hw);
            continue;
        }
        for (int64_t g = b0; g < b1; g += k->group) {
            int64_t nb = b1 - g < k->group ? b1 - g : k->group;
            w4_planes(k, k->x + g * ci * plane, nb, xp);
            w4_input(k, nb, xp, v);
            if (k->share && i == 0) atomic_store_explicit(&k->ready, 1, memory_order_release);
            w4_gemm(k, v, m, o0, o1);
            for (int64_t b = 0; b < nb; b++) { /* V's floats hold the outputs now (or the planes') */
                w4_output(k, b, m, out, o0, o1);
                nrt_transpose16(out + o0, co, hw, o1 - o0, k->y + ((g + b) * co + o0) * hw, hw);
            }
        }
    }
}

/* Floats of an image's outputs per channel (pooled or not). */
static int64_t hw_out(const struct nrt_conv *c, int pool) {
    return pool ? c->ho / 2 * (c->wo / 2) : c->ho * c->wo;
}

/* F(4x4, 3x3) when c suits it: 16k input and output channels, no negative
 * padding, and the scratch holds the weights and one group per task. */
static int wino4_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                        int pool, float *y, float *scratch) {
    if (c->ci % 16 || c->p[0] < 0 || c->p[1] < 0 || c->p[2] < 0 || c->p[3] < 0) return 0;
    struct wino4 k = {.c = c, .x = x, .bias = bias, .relu = relu, .pool = pool, .y = y};
    /* Inside a pool job (a slice of a large batch) the tasks run in turn: one. */
    int64_t ci = c->ci, co = c->co, threads = nrt_threads_inside() ? 1 : nrt_threads_get();
    k.th = (c->ho + 3) / 4, k.tw = (c->wo + 3) / 4, k.t = k.th * k.tw;
    k.hp = 4 * k.th + 2, k.wp = 4 * k.tw + 2;
    if (c->h + c->p[0] > k.hp || c->w + c->p[1] > k.wp) return 0;
    k.group = k.t >= 18 ? 1 : (18 + k.t - 1) / k.t;
    k.split = 1, k.tasks = threads < c->n ? threads : c->n;
    if (c->n < threads)
        k.split = threads / c->n < co / 16 ? threads / c->n : co / 16, k.tasks = c->n * k.split;
    int64_t uf = 36 * ci * co, wtf = (9 * ci * co + 15) / 16 * 16;
    for (;;) {
        int64_t nb = k.group < c->n ? k.group : c->n;
        k.tp = (nb * k.t + 2) / 3 * 3;
        k.xf = (nb * k.hp * k.wp * ci + 15) / 16 * 16;
        k.vf = 36 * k.tp * ci > nb * c->ho * c->wo * co ? 36 * k.tp * ci : nb * c->ho * c->wo * co;
        k.vf = (k.vf + 15) / 16 * 16;
        k.mf = 36 * k.tp * co;
        if (uf + wtf + k.tasks * (k.xf + k.vf + k.mf) <= nrt_conv_scratch(c)) break;
        if (k.group > 1)
            k.group = (k.group + 1) / 2;
        else if (k.tasks > k.split)
            k.tasks -= k.split;
        else
            return 0;
    }
    k.share = c->n == 1 && k.split > 1 && k.xf >= hw_out(c, pool) * co;
    k.scratch = scratch + uf + wtf;
    const char *e = getenv("NETC_WINOGRAD_CACHE");
    const float *u = e && e[0] == '0' ? NULL : w4_cached(ci, co, w, scratch + uf);
    if (!u) w4_transform(ci, co, w, scratch + uf, scratch);
    k.u = u ? u : scratch;
    nrt_parallel_for(k.tasks, 1, w4_tasks, &k);
    if (u) pthread_rwlock_unlock(&w4_lock);
    return 1;
}

/* F(2x2, 3x3) on tasks of whole images, as many as the scratch holds: an
 * image's results do not depend on the batch or the threads. */
static int wino2_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                        float *y, float *scratch) {
    struct wino k = {.c = c, .x = x, .bias = bias, .relu = relu, .y = y};
    k.th = (c->ho + 1) / 2, k.tw = (c->wo + 1) / 2, k.t = k.th * k.tw;
    k.tp = (k.t + WINO_P - 1) / WINO_P * WINO_P;
    k.hp = 2 * k.th + 2, k.wp = 2 * k.tw + 2;
    if (c->h + c->p[0] > k.hp + 2 || c->w + c->p[1] > k.wp + 2) return 0; /* sizes that do not add up */
    /* The input loads read up to 2 tiles' worth of columns past a row's tiles. */
    k.xf = (c->ci * k.hp * k.wp + 48 + 15) / 16 * 16;
    int64_t tmpf = c->ho * c->wo * c->co; /* aliases V */
    k.vf = 16 * c->ci * k.tp > tmpf ? 16 * c->ci * k.tp : tmpf;
    k.vf = (k.vf + 15) / 16 * 16;
    k.mf = 16 * k.tp * c->co;
    int64_t uf = (16 * c->ci * c->co + 15) / 16 * 16, region = k.xf + k.vf + k.mf;
    k.tasks = nrt_threads_get() < c->n ? nrt_threads_get() : c->n;
    while (k.tasks > 1 && uf + k.tasks * region > nrt_conv_scratch(c)) k.tasks--;
    if (uf + k.tasks * region > nrt_conv_scratch(c)) return 0;
    k.u = scratch, k.scratch = scratch + uf;
    wino_weights(c, w, k.u);
    nrt_parallel_for(k.tasks, 1, wino_tasks, &k);
    return 1;
}

int nrt_wino_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                    float *y, float *scratch) {
    if (!wino_ok(c)) return 0;
    const char *e = getenv("NETC_CONV_WINOGRAD");
    if (!(e && e[0] == '2') && wino4_conv2d(c, x, w, bias, relu, 0, y, scratch)) return 1;
    /* F(2x2, 3x3): below one image per thread the direct kernels split images instead. */
    if (c->n < nrt_threads_get()) return 0;
    return wino2_conv2d(c, x, w, bias, relu, y, scratch);
}

int nrt_wino_conv2d_train(const struct nrt_conv *c, const float *x, const float *w, const float *bias,
                          int relu, float *y, float *scratch) {
    return wino_ok(c) && wino2_conv2d(c, x, w, bias, relu, y, scratch);
}

int nrt_wino_conv2d_pool(const struct nrt_conv *c, const float *x, const float *w, const float *bias,
                         int relu, float *y, float *scratch) {
    const char *e = getenv("NETC_CONV_WINOGRAD");
    return wino_ok(c) && !(e && e[0] == '2') && wino4_conv2d(c, x, w, bias, relu, 1, y, scratch);
}

/* Whether training runs c by F(4x4, 3x3): 16k channels in and out, no
 * negative padding. */
static int wino_train_ok(const struct nrt_conv *c) {
    const char *e = getenv("NETC_CONV_WINOGRAD");
    if (!wino_ok(c) || (e && e[0] == '2') || c->ci % 16) return 0;
    return c->p[0] >= 0 && c->p[1] >= 0 && c->p[2] >= 0 && c->p[3] >= 0;
}

/* ---- The weight gradient by F(4x4, 3x3) transposed. The forward computes a
 * tile's outputs as A^T [(G g G^T) . (B^T d B)] A, linear in the weights g,
 * so g's gradient is G^T [(A dy A^T) . (B^T d B)] G summed over the tiles:
 * the output gradient's 4x4 tiles (zero past the outputs) transformed to 6x6
 * by A, the input's 6x6 patches by B^T as in the forward, their products
 * summed over every tile of the batch in 36 GEMMs M[e] [ci][co] (36 ci co
 * multiplies per tile instead of the direct 144 ci co), then G^T M G. */

/* A (6x4): A^T transposed, the output gradient's transform. G^T (3x6). */
static const float W4_A[6][4] = {{1, 0, 0, 0},   {1, 1, 1, 1}, {1, -1, 1, -1}, {1, 0.5f, 0.25f, 0.125f},
                                 {1, -2, 4, -8}, {0, 0, 0, 1}};
static const float W4_GT[3][6] = {{1, 1.0f / 3, -1.0f / 3, -16.0f / 15, 1.0f / 15, 0},
                                  {0, 1.0f / 3, 1.0f / 3, -8.0f / 15, -2.0f / 15, 0},
                                  {0, 1.0f / 3, -1.0f / 3, -4.0f / 15, 4.0f / 15, 1}};

#define W4_DWP 8 /* input channels per GEMM micro-tile (by V vectors of 16 output channels) */

struct w4dw {
    struct wino4 k;     /* the forward's tiling (k.c, th, tw, t, hp, wp, group, tasks, xf) */
    const float *dy;    /* [n][co][ho][wo] */
    int64_t df, ef, mf; /* floats of a group's dy planes [nb][4 th][4 tw][co], E [36][nb t][co], M */
    int64_t vf;         /* floats of V [36][nb t][ci] */
    float *dw;          /* [co][ci][3][3] */
};

/* E[e][tile][co] = (A dy A^T)[e] for the tiles of nb images' dy planes dp
 * (E's components rows tiles apart). */
static void w4_dy(const struct wino4 *k, int64_t nb, int64_t rows, const float *dp, float *e) {
    int64_t co = k->c->co, ld = rows * co, wq = 4 * k->tw;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < k->th; ty++)
            for (int64_t tx = 0; tx < k->tw; tx++) {
                const float *p = dp + ((b * 4 * k->th + 4 * ty) * wq + 4 * tx) * co;
                float *out = e + ((b * k->th + ty) * k->tw + tx) * co;
                for (int64_t o = 0; o < co; o += 16) {
                    __m512 t[6][4]; /* [A row][column] */
                    for (int c = 0; c < 4; c++) {
                        __m512 d[4], r[6];
                        for (int i = 0; i < 4; i++) d[i] = _mm512_loadu_ps(p + (i * wq + c) * co + o);
                        w4_lin(6, 4, &W4_A[0][0], d, r);
                        for (int i = 0; i < 6; i++) t[i][c] = r[i];
                    }
                    for (int i = 0; i < 6; i++) {
                        __m512 r[6];
                        w4_lin(6, 4, &W4_A[0][0], t[i], r);
                        for (int c = 0; c < 6; c++) _mm512_storeu_ps(out + (i * 6 + c) * ld + o, r[c]);
                    }
                }
            }
}

/* The nb images' output gradient dy [nb][co][ho][wo] pixel-major into dp
 * [nb][4 th][4 tw][co], zero past the outputs. */
static void w4_dy_planes(const struct wino4 *k, const float *dy, int64_t nb, float *dp) {
    const struct nrt_conv *c = k->c;
    int64_t co = c->co, hw = c->ho * c->wo, wq = 4 * k->tw, hq = 4 * k->th;
    memset(dp, 0, sizeof *dp * (size_t)(nb * hq * wq * co));
    for (int64_t b = 0; b < nb; b++)
        for (int64_t r = 0; r < c->ho; r++)
            nrt_transpose16(dy + b * co * hw + r * c->wo, hw, co, c->wo, dp + (b * hq + r) * wq * co, co);
}

/* M[e] += V[e]^T E[e] over a group's T tiles. */
static void w4_dw_gemm(int64_t T, int64_t ci, int64_t co, const float *v, const float *e, float *m) {
    for (int64_t q = 0; q < 36; q++) {
        const float *vq = v + q * T * ci, *eq = e + q * T * co;
        float *mq = m + q * ci * co;
        for (int64_t i = 0; i < ci; i += W4_DWP)
            for (int64_t o = 0; o < co; o += 32) {
                if (co - o >= 32)
                    nrt_wino_dw_tile(W4_DWP, 2, T, ci, co, vq + i, eq + o, mq + i * co + o);
                else
                    nrt_wino_dw_tile(W4_DWP, 1, T, ci, co, vq + i, eq + o, mq + i * co + o);
            }
    }
}

/* Task i: M (at the end of its scratch) for images [b0, b1), by groups. */
static void w4_dw_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct w4dw *j = arg;
    const struct wino4 *k = &j->k;
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, co = c->co, hw = c->ho * c->wo;
    for (int64_t i = lo; i < hi; i++) {
        float *xp = k->scratch + i * (k->xf + j->vf + j->df + j->ef + j->mf), *v = xp + k->xf,
              *dp = v + j->vf, *e = dp + j->df, *m = e + j->ef;
        int64_t b0 = c->n * i / k->tasks, b1 = c->n * (i + 1) / k->tasks;
        memset(m, 0, sizeof *m * (size_t)(36 * ci * co));
        for (int64_t g = b0; g < b1; g += k->group) {
            int64_t nb = b1 - g < k->group ? b1 - g : k->group, T = nb * k->t;
            w4_planes(k, k->x + g * ci * c->h * c->w, nb, xp);
            /* V [36][T][ci]: w4_input's rows are tp apart; here T apart. */
            struct wino4 kk = *k;
            kk.tp = T;
            w4_input(&kk, nb, xp, v);
            w4_dy_planes(k, j->dy + g * co * hw, nb, dp);
            w4_dy(k, nb, T, dp, e);
            w4_dw_gemm(T, ci, co, v, e, m);
        }
    }
}

/* M[lo, hi) of task 0 += those of the other tasks. */
static void w4_dw_sum(void *arg, int64_t lo, int64_t hi) {
    const struct w4dw *j = arg;
    int64_t region = j->k.xf + j->vf + j->df + j->ef + j->mf;
    float *m0 = j->k.scratch + region - j->mf;
    for (int64_t t = 1; t < j->k.tasks; t++) {
        const float *m = m0 + t * region;
        for (int64_t q = lo; q < hi; q++) m0[q] += m[q];
    }
}

/* dw = G^T M G, from M [36][ci][co] to dw [co][ci][3][3]. */
static void w4_dw_out(const struct nrt_conv *c, const float *m, float *dw) {
    int64_t ci = c->ci, co = c->co;
    for (int64_t i = 0; i < ci; i++)
        for (int64_t o = 0; o < co; o += 16) {
            __m512 t[3][6];
            for (int col = 0; col < 6; col++) {
                __m512 d[6], r[3];
                for (int q = 0; q < 6; q++) d[q] = _mm512_loadu_ps(m + ((q * 6 + col) * ci + i) * co + o);
                w4_lin(3, 6, &W4_GT[0][0], d, r);
                for (int a = 0; a < 3; a++) t[a][col] = r[a];
            }
            float out[9][16];
            for (int a = 0; a < 3; a++) {
                __m512 r[3];
                w4_lin(3, 6, &W4_GT[0][0], t[a], r);
                for (int b = 0; b < 3; b++) _mm512_storeu_ps(out[3 * a + b], r[b]);
            }
            for (int l = 0; l < 16; l++)
                for (int q = 0; q < 9; q++) dw[((o + l) * ci + i) * 9 + q] = out[q][l];
        }
}

int nrt_wino_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                                float *scratch) {
    if (!wino_train_ok(c) || c->n < 1) return 0;
    struct w4dw j = {.k = {.c = c, .x = x}, .dy = dy, .dw = dw};
    struct wino4 *k = &j.k;
    int64_t ci = c->ci, co = c->co, threads = nrt_threads_inside() ? 1 : nrt_threads_get();
    k->th = (c->ho + 3) / 4, k->tw = (c->wo + 3) / 4, k->t = k->th * k->tw;
    k->hp = 4 * k->th + 2, k->wp = 4 * k->tw + 2;
    if (c->h + c->p[0] > k->hp || c->w + c->p[1] > k->wp) return 0;
    /* Groups of about 64 tiles: the GEMMs' sums run that long between
     * loads and stores of M. */
    k->group = k->t >= 64 ? 1 : (64 + k->t - 1) / k->t;
    k->tasks = threads < c->n ? threads : c->n;
    j.mf = (36 * ci * co + 15) / 16 * 16;
    for (;;) {
        int64_t nb = k->group < c->n ? k->group : c->n;
        k->xf = (nb * k->hp * k->wp * ci + 15) / 16 * 16;
        j.vf = (36 * nb * k->t * ci + 15) / 16 * 16;
        j.df = (nb * 16 * k->t * co + 15) / 16 * 16;
        j.ef = (36 * nb * k->t * co + 15) / 16 * 16;
        if (k->tasks * (k->xf + j.vf + j.df + j.ef + j.mf) <= nrt_conv_scratch(c)) break;
        if (k->group > 1) /* fewer tasks than threads: the direct kernels use every thread */
            k->group = (k->group + 1) / 2;
        else
            return 0;
    }
    k->scratch = scratch;
    nrt_parallel_for(k->tasks, 1, w4_dw_tasks, &j);
    if (k->tasks > 1) nrt_parallel_for(36 * ci * co, 4096, w4_dw_sum, &j);
    w4_dw_out(c, scratch + k->xf + j.vf + j.df + j.ef, dw);
    return 1;
}

/* ---- The input gradient by F(4x4, 3x3) transposed: a tile's outputs are
 * A^T [U . (B^T d B)] A, so the gradient of its 6x6 input patch d is
 * B [U . (A dy A^T)] B^T: the output gradient's tiles transformed by A as
 * for the weight gradient, multiplied by the transformed weights with input
 * and output channels swapped (Z[e] = E[e] U[e]^T, the forward's GEMM), and
 * B Z B^T added into the padded input planes (patches overlap by 2 pixels).
 * Only the output's tiles are multiplied: 9 per 11x11 image, where the
 * input gradient as a correlation padded by 2 would take 16 for 13x13. */

/* B (6x6): B^T transposed. */
static const float W4_B[6][6] = {{1, 0, 0, 0, 0, 0},
                                 {-1.5f, -1, 1, -2, 0.5f, 1},
                                 {-2, 0.5f, -2.5f, -1, -1, -1.5f},
                                 {1.5f, 2.5f, 0.5f, 2, -0.5f, -2},
                                 {1, 1, 1, 1, 1, 1.5f},
                                 {0, 0, 0, 0, 0, 1}};

struct w4dx {
    struct wino4 k;     /* the forward's tiling; k.u: U^T [36][co][ci] */
    struct nrt_conv t;  /* the GEMM's view: ci and co swapped (w4_gemm) */
    const float *dy;    /* [n][co][ho][wo] */
    int64_t df, ef, zf; /* floats of a group's dy planes, E [36][tp][co], Z [36][tp][ci] */
    float *dx;          /* [n][ci][h][w] */
};

/* The padded input planes xp [nb][hp][wp][ci] += B Z B^T per tile. */
static void w4_dx_out(const struct wino4 *k, int64_t nb, const float *z, float *xp) {
    int64_t ci = k->c->ci, ld = k->tp * ci;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < k->th; ty++)
            for (int64_t tx = 0; tx < k->tw; tx++) {
                float *p = xp + ((b * k->hp + 4 * ty) * k->wp + 4 * tx) * ci;
                const float *zt = z + ((b * k->th + ty) * k->tw + tx) * ci;
                for (int64_t ch = 0; ch < ci; ch += 16) {
                    __m512 t[6][6]; /* [B row][column] */
                    for (int j = 0; j < 6; j++) {
                        __m512 d[6], r[6];
                        for (int i = 0; i < 6; i++) d[i] = _mm512_loadu_ps(zt + (i * 6 + j) * ld + ch);
                        w4_lin(6, 6, &W4_B[0][0], d, r);
                        for (int i = 0; i < 6; i++) t[i][j] = r[i];
                    }
                    for (int i = 0; i < 6; i++) {
                        __m512 r[6];
                        w4_lin(6, 6, &W4_B[0][0], t[i], r);
                        for (int j = 0; j < 6; j++) {
                            float *q = p + (i * k->wp + j) * ci + ch;
                            _mm512_storeu_ps(q, _mm512_add_ps(_mm512_loadu_ps(q), r[j]));
                        }
                    }
                }
            }
}

/* Task i: images [b0, b1), by groups. */
static void w4_dx_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct w4dx *j = arg;
    const struct wino4 *k = &j->k;
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, co = c->co, plane = c->h * c->w, rowf = k->wp * ci;
    struct wino4 g4 = *k; /* the GEMM's view */
    g4.c = &j->t;
    for (int64_t i = lo; i < hi; i++) {
        float *xp = k->scratch + i * (k->xf + j->df + j->ef + j->zf), *dp = xp + k->xf, *e = dp + j->df,
              *z = e + j->ef;
        int64_t b0 = c->n * i / k->tasks, b1 = c->n * (i + 1) / k->tasks;
        for (int64_t g = b0; g < b1; g += k->group) {
            int64_t nb = b1 - g < k->group ? b1 - g : k->group;
            w4_dy_planes(k, j->dy + g * co * c->ho * c->wo, nb, dp);
            w4_dy(k, nb, k->tp, dp, e);
            for (int64_t q = 0; q < 36; q++) /* rows past the tiles: zeros */
                memset(e + (q * k->tp + nb * k->t) * co, 0, sizeof *e * (size_t)((k->tp - nb * k->t) * co));
            w4_gemm(&g4, e, z, 0, ci);
            memset(xp, 0, sizeof *xp * (size_t)(nb * k->hp * rowf));
            w4_dx_out(k, nb, z, xp);
            for (int64_t b = 0; b < nb; b++) /* the planes' inside, channel-major */
                for (int64_t r = 0; r < c->h; r++)
                    nrt_transpose16(xp + ((b * k->hp + r + c->p[0]) * k->wp + c->p[1]) * ci, ci, c->w, ci,
                                    j->dx + (g + b) * ci * plane + r * c->w, plane);
        }
    }
}

int nrt_wino_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                               float *scratch) {
    if (!wino_train_ok(c) || c->n < 1) return 0;
    struct w4dx j = {.k = {.c = c}, .dy = dy, .dx = dx};
    struct wino4 *k = &j.k;
    int64_t ci = c->ci, co = c->co, threads = nrt_threads_inside() ? 1 : nrt_threads_get();
    k->th = (c->ho + 3) / 4, k->tw = (c->wo + 3) / 4, k->t = k->th * k->tw;
    k->hp = 4 * k->th + 2, k->wp = 4 * k->tw + 2;
    if (c->h + c->p[0] > k->hp || c->w + c->p[1] > k->wp) return 0;
    if (c->n < threads) return 0; /* the direct kernels split an image's pixels */
    k->group = k->t >= 18 ? 1 : (18 + k->t - 1) / k->t;
    k->tasks = threads;
    j.t = *c, j.t.ci = co, j.t.co = ci;
    int64_t uf = 36 * ci * co, wtf = (9 * ci * co + 15) / 16 * 16;
    for (;;) {
        int64_t nb = k->group < c->n ? k->group : c->n;
        k->tp = (nb * k->t + 2) / 3 * 3;
        k->xf = (nb * k->hp * k->wp * ci + 15) / 16 * 16;
        j.df = (nb * 16 * k->t * co + 15) / 16 * 16;
        j.ef = 36 * k->tp * co, j.zf = 36 * k->tp * ci;
        int64_t tf = k->tasks * (k->xf + j.df + j.ef + j.zf);
        if (uf + (wtf > tf ? wtf : tf) <= nrt_conv_scratch(c)) break;
        if (k->group > 1) /* fewer tasks than threads: the direct kernels use every thread */
            k->group = (k->group + 1) / 2;
        else
            return 0;
    }
    /* U^T [36][co][ci] by way of wt [co*9][ci] = w [co][ci][9] transposed per output channel. */
    float *wt = scratch + uf;
    for (int64_t o = 0; o < co; o++)
        for (int64_t i = 0; i < ci; i++)
            for (int q = 0; q < 9; q++) wt[(o * 9 + q) * ci + i] = w[(o * ci + i) * 9 + q];
    w4_weights(co, ci, wt, scratch);
    k->u = scratch, k->scratch = scratch + uf;
    nrt_parallel_for(k->tasks, 1, w4_dx_tasks, &j);
    return 1;
}
#else
int nrt_wino_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                               float *scratch) {
    (void)c, (void)dy, (void)w, (void)dx, (void)scratch;
    return 0;
}

int nrt_wino_conv2d_train(const struct nrt_conv *c, const float *x, const float *w, const float *bias,
                          int relu, float *y, float *scratch) {
    (void)c, (void)x, (void)w, (void)bias, (void)relu, (void)y, (void)scratch;
    return 0;
}

int nrt_wino_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                                float *scratch) {
    (void)c, (void)x, (void)dy, (void)dw, (void)scratch;
    return 0;
}

int nrt_wino_conv2d_pool(const struct nrt_conv *c, const float *x, const float *w, const float *bias,
                         int relu, float *y, float *scratch) {
    (void)c, (void)x, (void)w, (void)bias, (void)relu, (void)y, (void)scratch;
    return 0;
}

int nrt_wino_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                    float *y, float *scratch) {
    (void)c, (void)x, (void)w, (void)bias, (void)relu, (void)y, (void)scratch;
    return 0;
}
#endif
