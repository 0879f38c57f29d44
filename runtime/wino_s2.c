/* runtime/wino_s2.c -- 4x4 stride-2 convolutions with padding 1 (a DCGAN's
 * layers: h = 2 ho) by phases and Winograd F(4x4, 2x2): the forward is a 2x2
 * stride-1 correlation of x's four phase images P_ab[m][n] = xpad[2m+a][2n+b]
 * (4 ci channels, weights w[2u+a][2v+b]); the input gradient (conv_transpose's
 * forward) gives dx's four phases, each a 2x2 correlation of dy padded by 1
 * (weights w[2(1-u)+a][2(1-v)+b], 4 ci output channels). Each 2x2 correlation
 * runs on 5x5 tiles in 25 GEMMs per group of images (25 multiplies per 4x4
 * outputs and channel pair instead of 64: 100 instead of 196 for a 7x7
 * output), on channel vectors of pixel-major padded planes. Points 0, 1, -1,
 * 1/2 and infinity; the error is about 6x the direct kernels' (bench/
 * wino_s2_error.c). Each output's sum over the GEMM's channels runs in one
 * fixed order, so an image's results are the same at any batch size, group
 * and thread count. The weight gradient stays on the direct kernels. */
#include "runtime/internal.h"

#include <stdlib.h>
#include <string.h>

#if defined(__AVX512F__)
#include <immintrin.h>

/* One call's problem: the forward (tr 0: y from x, K = 4 ci phase channels,
 * N = co) or the input gradient (tr 1: dx from dy, K = co, N = 4 ci). */
struct ws2 {
    const struct nrt_conv *c;
    int tr;
    int64_t K, N;         /* the GEMMs' reduction and output channels */
    int64_t th, tw, t;    /* 4x4 output tiles per image: rows, columns, all */
    int64_t ih, iw, kc;   /* the pixel-major padded input plane: rows, columns, channels */
    int64_t G;            /* images per group */
    int64_t inf, outf;    /* floats of the padded input plane and of the pixel-major outputs */
    int64_t vf, mf;       /* floats of V [25][G t][K] and M [25][G t][N] */
    int64_t region, tasks;
    const float *in, *bias;
    int relu;
    float *u;       /* [25][K][N] */
    float *scratch; /* task i's part at scratch + i * region */
    float *out;
};

/* (G g G^T) rows: G = [2 0; 1 1; -1/3 1/3; -8/3 -4/3; 0 1]. */
static inline void ws2_g(__m512 g0, __m512 g1, __m512 o[5]) {
    o[0] = _mm512_add_ps(g0, g0);
    o[1] = _mm512_add_ps(g0, g1);
    o[2] = _mm512_mul_ps(_mm512_sub_ps(g1, g0), _mm512_set1_ps(1.0f / 3));
    o[3] = _mm512_mul_ps(_mm512_add_ps(_mm512_add_ps(g0, g0), g1), _mm512_set1_ps(-4.0f / 3));
    o[4] = g1;
}

/* B^T d: B^T = [1/2 -1 -1/2 1 0; 0 -1/2 1/2 1 0; 0 1/2 -3/2 1 0; 0 -1 0 1 0;
 * 0 1/2 -1 -1/2 1]. */
static inline void ws2_bt(const __m512 d[5], __m512 o[5]) {
    const __m512 h = _mm512_set1_ps(0.5f);
    __m512 d31 = _mm512_sub_ps(d[3], d[1]);
    o[0] = _mm512_fmadd_ps(_mm512_sub_ps(d[0], d[2]), h, d31);
    o[1] = _mm512_fmadd_ps(_mm512_sub_ps(d[2], d[1]), h, d[3]);
    o[2] = _mm512_fmadd_ps(_mm512_sub_ps(d[1], d[2]), h, _mm512_sub_ps(d[3], d[2]));
    o[3] = d31;
    o[4] = _mm512_fmadd_ps(_mm512_sub_ps(d[1], d[3]), h, _mm512_sub_ps(d[4], d[2]));
}

/* A^T m: A^T = [1 1 1 1 0; 0 1 -1 1/2 0; 0 1 1 1/4 0; 0 1 -1 1/8 1]. */
static inline void ws2_at(const __m512 m[5], __m512 o[4]) {
    __m512 s = _mm512_add_ps(m[1], m[2]), d = _mm512_sub_ps(m[1], m[2]);
    o[0] = _mm512_add_ps(_mm512_add_ps(m[0], s), m[3]);
    o[1] = _mm512_fmadd_ps(m[3], _mm512_set1_ps(0.5f), d);
    o[2] = _mm512_fmadd_ps(m[3], _mm512_set1_ps(0.25f), s);
    o[3] = _mm512_add_ps(_mm512_fmadd_ps(m[3], _mm512_set1_ps(0.125f), d), m[4]);
}

/* U[e][k][n] = (G g G^T)[e] for the 2x2 phase weights g of (k, n): the
 * weights first permuted to wt [16 taps][ci][co] (forward) or [16][co][ci]
 * (transposed), then the transform on vectors of 16 n. */
static void ws2_weights(const struct ws2 *k, const float *w, float *wt, float *u) {
    const struct nrt_conv *c = k->c;
    int64_t ci = c->ci, co = c->co, K = k->K, N = k->N, KN = K * N;
    for (int64_t o = 0; o < co; o++)
        for (int64_t ch = 0; ch < ci; ch++)
            for (int t = 0; t < 16; t++)
                wt[k->tr ? (t * co + o) * ci + ch : (t * ci + ch) * co + o] = w[(o * ci + ch) * 16 + t];
    int64_t rows = k->tr ? co : ci, cols = k->tr ? ci : co; /* wt's [rows][cols] per tap */
    for (int p = 0; p < 4; p++) {
        int a = p / 2, b = p % 2;
        for (int64_t r = 0; r < rows; r++)
            for (int64_t q = 0; q < cols; q += 16) {
                __m512 g[2][2], t[5][2];
                for (int i = 0; i < 2; i++)
                    for (int j = 0; j < 2; j++) { /* the forward's w[2i+a][2j+b], dx's w[2(1-i)+a][2(1-j)+b] */
                        int ky = 2 * (k->tr ? 1 - i : i) + a, kx = 2 * (k->tr ? 1 - j : j) + b;
                        g[i][j] = _mm512_loadu_ps(wt + ((ky * 4 + kx) * rows + r) * cols + q);
                    }
                for (int j = 0; j < 2; j++) {
                    __m512 o[5];
                    ws2_g(g[0][j], g[1][j], o);
                    for (int i = 0; i < 5; i++) t[i][j] = o[i];
                }
                int64_t kk = k->tr ? r : p * ci + r, nn = k->tr ? p * ci + q : q;
                for (int i = 0; i < 5; i++) {
                    __m512 o[5];
                    ws2_g(t[i][0], t[i][1], o);
                    for (int j = 0; j < 5; j++) _mm512_storeu_ps(u + (i * 5 + j) * KN + kk * N + nn, o[j]);
                }
            }
    }
}

/* V[e][tile][K] = (B^T d B)[e] for the 5x5 patches d of the group's nb padded
 * planes xp [nb][ih][iw][kc]: the forward's phase patches (pixels 2 apart,
 * phase p at offset (p / 2, p % 2), channels p kc + ch), dx's plain ones. */
static void ws2_input(const struct ws2 *k, int64_t nb, const float *xp, float *v) {
    int64_t kc = k->kc, K = k->K, ld = k->G * k->t * K, s = k->tr ? 1 : 2, phases = k->tr ? 1 : 4;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < k->th; ty++)
            for (int64_t tx = 0; tx < k->tw; tx++) {
                float *vt = v + ((b * k->th + ty) * k->tw + tx) * K;
                for (int64_t p = 0; p < phases; p++) {
                    const float *base = xp + ((b * k->ih + 4 * s * ty + p / 2) * k->iw + 4 * s * tx + p % 2) * kc;
                    for (int64_t ch = 0; ch < kc; ch += 16) {
                        __m512 t[5][5];
                        for (int c = 0; c < 5; c++) {
                            __m512 d[5], o[5];
                            for (int r = 0; r < 5; r++) d[r] = _mm512_loadu_ps(base + (s * r * k->iw + s * c) * kc + ch);
                            ws2_bt(d, o);
                            for (int r = 0; r < 5; r++) t[r][c] = o[r];
                        }
                        for (int r = 0; r < 5; r++) {
                            __m512 o[5];
                            ws2_bt(t[r], o);
                            for (int c = 0; c < 5; c++) _mm512_storeu_ps(vt + (r * 5 + c) * ld + p * kc + ch, o[c]);
                        }
                    }
                }
            }
}

/* m[p][16 j + l] = sum over k of vt[p K + k] * ut[k N + 16 j + l] for P
 * tiles and V vectors, k in order from 0 (the same sums for any P and V). */
static inline __attribute__((always_inline)) void ws2_tile(const int P, const int V, int64_t K, int64_t N,
                                                           const float *vt, const float *ut, float *m) {
    __m512 acc[4][4];
#pragma GCC unroll 4
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) acc[p][j] = _mm512_setzero_ps();
    for (int64_t kk = 0; kk < K; kk++, ut += N) {
        __m512 uv[4];
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) uv[j] = _mm512_loadu_ps(ut + 16 * j);
#pragma GCC unroll 4
        for (int p = 0; p < P; p++) {
            __m512 b = _mm512_set1_ps(vt[p * K + kk]);
#pragma GCC unroll 4
            for (int j = 0; j < V; j++) acc[p][j] = _mm512_fmadd_ps(uv[j], b, acc[p][j]);
        }
    }
#pragma GCC unroll 4
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) _mm512_storeu_ps(m + p * N + 16 * j, acc[p][j]);
}

static void ws2_tile_any(int P, int V, int64_t K, int64_t N, const float *vt, const float *ut, float *m) {
#define WS2_V(p)                                                                                                  \
    switch (V) {                                                                                                 \
    case 4: ws2_tile(p, 4, K, N, vt, ut, m); break;                                                              \
    case 3: ws2_tile(p, 3, K, N, vt, ut, m); break;                                                              \
    case 2: ws2_tile(p, 2, K, N, vt, ut, m); break;                                                              \
    default: ws2_tile(p, 1, K, N, vt, ut, m); break;                                                             \
    }
    switch (P) {
    case 4: WS2_V(4) break;
    case 3: WS2_V(3) break;
    case 2: WS2_V(2) break;
    default: WS2_V(1) break;
    }
#undef WS2_V
}

/* M[e] = V[e] U[e] for the group's T tiles. */
static void ws2_gemm(const struct ws2 *k, int64_t T, const float *v, float *m) {
    int64_t K = k->K, N = k->N, rows = k->G * k->t;
    for (int e = 0; e < 25; e++) {
        const float *ve = v + e * rows * K, *ue = k->u + e * K * N;
        float *me = m + e * rows * N;
        for (int64_t n0 = 0; n0 < N; n0 += 64) {
            int V = N - n0 >= 64 ? 4 : (int)((N - n0) / 16);
            for (int64_t p0 = 0; p0 < T; p0 += 4) {
                int P = T - p0 >= 4 ? 4 : (int)(T - p0);
                if (P == 4 && V == 4)
                    ws2_tile(4, 4, K, N, ve + p0 * K, ue + n0, me + p0 * N + n0);
                else
                    ws2_tile_any(P, V, K, N, ve + p0 * K, ue + n0, me + p0 * N + n0);
            }
        }
    }
}

/* The outputs A^T M A of the group's tiles into the pixel-major planes yp
 * [nb][pixels][channels]: the forward's ho x wo x co (bias and relu added),
 * dx's h x w x ci from the four phases' tiles. */
static void ws2_output(const struct ws2 *k, int64_t nb, const float *m, float *yp) {
    const struct nrt_conv *c = k->c;
    int64_t N = k->N, ld = k->G * k->t * N;
    int64_t oh = k->tr ? c->h : c->ho, ow = k->tr ? c->w : c->wo, oc = k->tr ? c->ci : c->co;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t b = 0; b < nb; b++)
        for (int64_t ty = 0; ty < k->th; ty++)
            for (int64_t tx = 0; tx < k->tw; tx++) {
                const float *mt = m + ((b * k->th + ty) * k->tw + tx) * N;
                float *yb = yp + b * oh * ow * oc;
                for (int64_t n = 0; n < N; n += 16) {
                    __m512 t[4][5], y[4][4];
                    for (int j = 0; j < 5; j++) {
                        __m512 d[5], o[4];
                        for (int i = 0; i < 5; i++) d[i] = _mm512_loadu_ps(mt + (i * 5 + j) * ld + n);
                        ws2_at(d, o);
                        for (int i = 0; i < 4; i++) t[i][j] = o[i];
                    }
                    for (int i = 0; i < 4; i++) ws2_at(t[i], y[i]);
                    int64_t p = k->tr ? n / c->ci : 0, ch = k->tr ? n % c->ci : n;
                    __m512 bv = !k->tr && k->bias ? _mm512_loadu_ps(k->bias + n) : zero;
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 4; j++) {
                            /* forward: (4 ty + i, 4 tx + j); dx: phase coordinates to pixels */
                            int64_t r = k->tr ? 2 * (4 * ty + i) + p / 2 - 1 : 4 * ty + i;
                            int64_t q = k->tr ? 2 * (4 * tx + j) + p % 2 - 1 : 4 * tx + j;
                            if (r < 0 || q < 0 || r >= oh || q >= ow) continue;
                            __m512 val = y[i][j];
                            if (!k->tr && k->bias) val = _mm512_add_ps(val, bv);
                            if (k->relu) val = _mm512_max_ps(val, zero);
                            _mm512_storeu_ps(yb + (r * ow + q) * oc + ch, val);
                        }
                }
            }
}

static void ws2_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct ws2 *k = arg;
    const struct nrt_conv *c = k->c;
    int64_t ic = k->tr ? c->co : c->ci, ih0 = k->tr ? c->ho : c->h, iw0 = k->tr ? c->wo : c->w;
    int64_t oh = k->tr ? c->h : c->ho, ow = k->tr ? c->w : c->wo, oc = k->tr ? c->ci : c->co;
    int64_t inplane = ic * ih0 * iw0, outplane = oc * oh * ow;
    for (int64_t i = lo; i < hi; i++) {
        float *xp = k->scratch + i * k->region, *yp = xp + k->inf, *v = yp + k->outf, *m = v + k->vf;
        /* The padding stays zero: each image writes the same interior. */
        memset(xp, 0, sizeof *xp * (size_t)k->inf);
        for (int64_t b0 = c->n * i / k->tasks, b1 = c->n * (i + 1) / k->tasks; b0 < b1; b0 += k->G) {
            int64_t nb = b1 - b0 < k->G ? b1 - b0 : k->G;
            for (int64_t b = 0; b < nb; b++)
                for (int64_t r = 0; r < ih0; r++)
                    nrt_transpose16(k->in + (b0 + b) * inplane + r * iw0, ih0 * iw0, ic, iw0,
                                    xp + ((b * k->ih + r + 1) * k->iw + 1) * ic, ic);
            ws2_input(k, nb, xp, v);
            ws2_gemm(k, nb * k->t, v, m);
            ws2_output(k, nb, m, yp);
            for (int64_t b = 0; b < nb; b++)
                nrt_transpose16(yp + b * oh * ow * oc, oc, oh * ow, oc, k->out + (b0 + b) * outplane, oh * ow);
        }
    }
}

static int ws2_ok(const struct nrt_conv *c) {
    const char *e = getenv("NETC_CONV_WINOGRAD");
    return !(e && e[0] == '0') && !getenv("NETC_CONV_IM2COL") && c->n >= 1 && nrt_conv_ws2_floats(c) > 0;
}

/* The plan of c in direction tr within the scratch, or 0. */
static int ws2_plan(struct ws2 *k, const struct nrt_conv *c, int tr, float *scratch) {
    if (!ws2_ok(c)) return 0;
    memset(k, 0, sizeof *k);
    k->c = c, k->tr = tr;
    struct nrt_ws2_geo g = nrt_conv_ws2_geo(c, tr);
    k->K = g.K, k->N = g.N, k->th = g.th, k->tw = g.tw, k->t = g.th * g.tw, k->ih = g.ih, k->iw = g.iw;
    k->kc = tr ? c->co : c->ci, k->G = NRT_WS2_GROUP;
    int64_t threads = nrt_threads_inside() ? 1 : nrt_threads_get();
    k->tasks = threads < c->n ? threads : c->n;
    k->tasks = k->tasks < NRT_WINO_TASKS ? k->tasks : NRT_WINO_TASKS;
    if (k->tasks < 1) k->tasks = 1;
    k->inf = g.inf, k->outf = g.outf, k->vf = g.vf, k->mf = g.mf, k->region = g.region;
    int64_t uf = nrt_wino_r16(25 * g.K * g.N), wtf = 16 * c->ci * c->co;
    while (k->tasks > 1 && uf + nrt_wino_max(wtf, k->tasks * k->region) > nrt_conv_scratch(c)) k->tasks--;
    if (uf + nrt_wino_max(wtf, k->tasks * k->region) > nrt_conv_scratch(c)) return 0;
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

#endif
