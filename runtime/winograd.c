/* runtime/winograd.c -- 3x3 stride-1 convolutions by Winograd's F(2x2, 3x3)
 * (Lavin & Gray 2015) with AVX-512: each 2x2 output tile is A^T[(G g G^T) .*
 * (B^T d B)]A over a 4x4 input patch, 16 multiplies per tile and channel pair
 * instead of 36. Per image: transform the input patches (V), 16 small GEMMs
 * M[e] = V[e] U[e] over the input channels, transform back with bias and relu,
 * and write NCHW. Called by kernels.c's forward before the direct kernels. */
#include "runtime/internal.h"

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
    float *scratch; /* task i's part at scratch + i * (xf + vf + mf) */
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

int nrt_wino_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                    float *y, float *scratch) {
    /* Below one image per thread the direct kernels split images instead. */
    if (!wino_ok(c) || c->n < nrt_threads_get()) return 0;
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
#else
int nrt_wino_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                    float *y, float *scratch) {
    (void)c, (void)x, (void)w, (void)bias, (void)relu, (void)y, (void)scratch;
    return 0;
}
#endif
