/* runtime/pool.c -- pooling kernels: max and average pooling with their
 * gradients over plane ranges (2x2 max pooling in AVX-512), nearest
 * upsampling, and the weight gradient of a convolution behind a max pooling
 * taken from the pooled gradient (nrt_conv2d_grad_weight_maxpool: the dense
 * gradient is never written). The index relations are those of the reference
 * interpreter (codegen/interp_nn.c). */
#include "runtime/internal.h"

#include <stdbool.h>
#include <string.h>

/* --------------------------------------------------------------- pooling -- */

/* The flat index within a plane of the first maximum of window (oh, ow), or -1
 * when the window holds only padding. */
static int64_t window_argmax(const struct nrt_pool *p, const float *plane, int64_t oh, int64_t ow) {
    int64_t best = -1;
    for (int64_t i = 0; i < p->k[0]; i++) {
        int64_t ih = oh * p->s[0] - p->p[0] + i;
        if (ih < 0 || ih >= p->h) continue;
        for (int64_t j = 0; j < p->k[1]; j++) {
            int64_t iw = ow * p->s[1] - p->p[1] + j;
            if (iw < 0 || iw >= p->w) continue;
            int64_t at = ih * p->w + iw;
            if (best < 0 || plane[at] > plane[best]) best = at;
        }
    }
    return best;
}

/* Whether every window lies inside its plane (no padding) and no two windows
 * overlap, so each input has at most one window: the fast paths below. */
static int pool_disjoint(const struct nrt_pool *p) {
    return p->p[0] == 0 && p->p[1] == 0 && p->p[2] == 0 && p->p[3] == 0 && p->s[0] >= p->k[0] &&
           p->s[1] >= p->k[1] && (p->ho - 1) * p->s[0] + p->k[0] <= p->h &&
           (p->wo - 1) * p->s[1] + p->k[1] <= p->w;
}

/* The flat index within a plane of window (oh, ow)'s first maximum, for a
 * window inside the plane (window_argmax without the bounds checks). */
static inline int64_t inner_argmax(const struct nrt_pool *p, const float *plane, int64_t oh, int64_t ow) {
    int64_t at0 = oh * p->s[0] * p->w + ow * p->s[1], best = at0;
    for (int64_t i = 0; i < p->k[0]; i++)
        for (int64_t j = 0; j < p->k[1]; j++) {
            int64_t at = at0 + i * p->w + j;
            if (plane[at] > plane[best]) best = at;
        }
    return best;
}

static int pool_is_2x2(const struct nrt_pool *p) {
    return p->k[0] == 2 && p->k[1] == 2 && p->s[0] == 2 && p->s[1] == 2 && pool_disjoint(p);
}

/* Planes [lo, hi) of a pooling op: the pool threads take ranges of planes. */
struct pool_job {
    const struct nrt_pool *p; /* the geometry */
    const float *x, *dy;      /* inputs (those the op reads) */
    float *y, *dx;            /* the output */
};

/* Planes per chunk: about 16K input floats' worth (several microseconds). */
static int64_t pool_grain(const struct nrt_pool *p) {
    int64_t per = p->h * p->w > p->ho * p->wo ? p->h * p->w : p->ho * p->wo;
    return per >= 16384 ? 1 : 16384 / (per > 0 ? per : 1);
}

/* 2x2/s2 max pooling of planes [lo, hi): rows of outputs without branches. */
#if defined(__AVX512F__)
#include <immintrin.h>

/* 2x2/s2 pooling with AVX-512, 16 outputs at a time: the two input rows are
 * loaded 32 floats each and split into even and odd columns by permutes; the
 * window's four values are compared in the scalar code's order (strict >, so
 * the first maximum wins and NaN never does). */
#define POOL_SIMD_MIN_WO 8 /* narrower rows: the scalar loop (measured faster at 5) */
/* The gradient takes the vector rows at every width: on real activations
 * (relu's ties of zeros, random maxima) the scalar loop GCC makes branches and
 * mispredicts; mnist_cnn's 11x11 -> 5x5 gradient ran 4x slower in a training
 * step than on bench/kernels.c's periodic data. */
static const int32_t pool_even[16] = {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30};
static const int32_t pool_odd[16] = {1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31};
static const int32_t pool_lo[16] = {0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23};
static const int32_t pool_hi[16] = {8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31};

/* Lanes of `n` outputs (n <= 16) and of their 2n inputs as two masks. */
static inline void pool_masks(int64_t n, __mmask16 *out, __mmask16 *in0, __mmask16 *in1) {
    uint32_t o = n >= 16 ? 0xffffu : (1u << n) - 1, i = n >= 8 ? 0xffffu : (1u << 2 * n) - 1;
    uint32_t i1 = n >= 16 ? 0xffffu : n > 8 ? (1u << 2 * (n - 8)) - 1 : 0;
    *out = (__mmask16)o, *in0 = (__mmask16)i, *in1 = (__mmask16)i1;
}

/* Loads 2n floats of a row as even and odd columns. */
static inline void pool_split(const float *r, __mmask16 m0, __mmask16 m1, __m512 *even, __m512 *odd) {
    __m512 a = _mm512_maskz_loadu_ps(m0, r), b = _mm512_maskz_loadu_ps(m1, r + 16);
    *even = _mm512_permutex2var_ps(a, _mm512_loadu_si512(pool_even), b);
    *odd = _mm512_permutex2var_ps(a, _mm512_loadu_si512(pool_odd), b);
}

static void maxpool_2x2_row(const float *r0, const float *r1, float *o, int64_t wo) {
    for (int64_t ow = 0; ow < wo; ow += 16) {
        __mmask16 mo, m0, m1;
        pool_masks(wo - ow, &mo, &m0, &m1);
        __m512 a, b, c, e;
        pool_split(r0 + 2 * ow, m0, m1, &a, &b);
        pool_split(r1 + 2 * ow, m0, m1, &c, &e);
        __m512 v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(b, a, _CMP_GT_OQ), a, b);
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(c, v, _CMP_GT_OQ), v, c);
        v = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(e, v, _CMP_GT_OQ), v, e);
        _mm512_mask_storeu_ps(o + ow, mo, v);
    }
}

/* The first maximum of 2x2 windows whose inputs, per lane, are a b (top row)
 * and c e (bottom row), row-major as the forward's strict > keeps it: *kb,
 * *kc, *ke the lanes whose maximum is b, c, e (the rest: a). */
static inline __attribute__((always_inline)) void pool_argmax(__m512 a, __m512 b, __m512 c, __m512 e,
                                                              __mmask16 *kb, __mmask16 *kc, __mmask16 *ke) {
    __mmask16 mb = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ);
    __m512 v = _mm512_mask_blend_ps(mb, a, b);
    __mmask16 mc = _mm512_cmp_ps_mask(c, v, _CMP_GT_OQ);
    v = _mm512_mask_blend_ps(mc, v, c);
    __mmask16 me = _mm512_cmp_ps_mask(e, v, _CMP_GT_OQ);
    mc = (__mmask16)(mc & ~me), mb = (__mmask16)(mb & ~mc & ~me);
    *kb = mb, *kc = mc, *ke = me;
}

/* The gradient g of those windows routed to their first maximum
 * (pool_argmax) as 0 + g, as accumulating into zeros gives; the other three
 * get 0. */
static inline __attribute__((always_inline)) void pool_route(__m512 a, __m512 b, __m512 c, __m512 e, __m512 g,
                                                             __m512 *ga, __m512 *gb, __m512 *gc, __m512 *ge) {
    __mmask16 kb, kc, ke;
    pool_argmax(a, b, c, e, &kb, &kc, &ke);
    __mmask16 ka = (__mmask16) ~(kb | kc | ke);
    __m512 gv = _mm512_add_ps(_mm512_setzero_ps(), g);
    *ga = _mm512_maskz_mov_ps(ka, gv), *gb = _mm512_maskz_mov_ps(kb, gv);
    *gc = _mm512_maskz_mov_ps(kc, gv), *ge = _mm512_maskz_mov_ps(ke, gv);
}

/* The gradient of one output row: every input of the two rows' windows is
 * stored, g at the window's first maximum and 0 elsewhere. */
static void maxpool_2x2_grad_row(const float *r0, const float *r1, const float *g, float *d0, float *d1,
                                 int64_t wo) {
    __m512i lo = _mm512_loadu_si512(pool_lo), hi = _mm512_loadu_si512(pool_hi);
    for (int64_t ow = 0; ow < wo; ow += 16) {
        __mmask16 mo, m0, m1;
        pool_masks(wo - ow, &mo, &m0, &m1);
        __m512 a, b, c, e;
        pool_split(r0 + 2 * ow, m0, m1, &a, &b);
        pool_split(r1 + 2 * ow, m0, m1, &c, &e);
        __m512 ga, gb, gc, ge;
        pool_route(a, b, c, e, _mm512_maskz_loadu_ps(mo, g + ow), &ga, &gb, &gc, &ge);
        _mm512_mask_storeu_ps(d0 + 2 * ow, m0, _mm512_permutex2var_ps(ga, lo, gb));
        _mm512_mask_storeu_ps(d0 + 2 * ow + 16, m1, _mm512_permutex2var_ps(ga, hi, gb));
        _mm512_mask_storeu_ps(d1 + 2 * ow, m0, _mm512_permutex2var_ps(gc, lo, ge));
        _mm512_mask_storeu_ps(d1 + 2 * ow + 16, m1, _mm512_permutex2var_ps(gc, hi, ge));
    }
}

/* maxpool_2x2_grad_row for rows of at most 16 inputs (wo <= 8; mnist_cnn's
 * 11x11 -> 5x5): each input row one masked load, split by one-source
 * permutes, and each output row one masked store of all w inputs, the odd
 * last column's zero included (the lanes past wo are zeros). */
static inline void maxpool_2x2_grad_short(const float *r0, const float *r1, const float *g, float *d0,
                                          float *d1, int64_t wo, int64_t w) {
    const __mmask16 mo = (__mmask16)((1u << wo) - 1), mi = (__mmask16)((1u << 2 * wo) - 1);
    const __mmask16 mw = (__mmask16)(w >= 16 ? 0xffffu : (1u << w) - 1);
    const __m512i ev = _mm512_loadu_si512(pool_even), od = _mm512_loadu_si512(pool_odd);
    const __m512i lo = _mm512_loadu_si512(pool_lo);
    __m512 x0 = _mm512_maskz_loadu_ps(mi, r0), x1 = _mm512_maskz_loadu_ps(mi, r1);
    __m512 a = _mm512_permutexvar_ps(ev, x0), b = _mm512_permutexvar_ps(od, x0);
    __m512 cc = _mm512_permutexvar_ps(ev, x1), e = _mm512_permutexvar_ps(od, x1);
    __m512 ga, gb, gc, ge;
    pool_route(a, b, cc, e, _mm512_maskz_loadu_ps(mo, g), &ga, &gb, &gc, &ge);
    _mm512_mask_storeu_ps(d0, mw, _mm512_permutex2var_ps(ga, lo, gb));
    _mm512_mask_storeu_ps(d1, mw, _mm512_permutex2var_ps(gc, lo, ge));
}
#endif

static void maxpool_2x2(const struct nrt_pool *p, const float *x, float *y, int64_t lo, int64_t hi) {
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *plane = x + pl * p->h * p->w;
        float *out = y + pl * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            const float *restrict r0 = plane + 2 * oh * p->w, *restrict r1 = r0 + p->w;
            float *restrict o = out + oh * p->wo;
#if defined(__AVX512F__)
            if (p->wo >= POOL_SIMD_MIN_WO) {
                maxpool_2x2_row(r0, r1, o, p->wo);
                continue;
            }
#endif
            for (int64_t ow = 0; ow < p->wo; ow++) {
                float v = r0[2 * ow];
                v = r0[2 * ow + 1] > v ? r0[2 * ow + 1] : v;
                v = r1[2 * ow] > v ? r1[2 * ow] : v;
                v = r1[2 * ow + 1] > v ? r1[2 * ow + 1] : v;
                o[ow] = v;
            }
        }
    }
}

static void maxpool_planes(void *arg, int64_t lo, int64_t hi) {
    const struct pool_job *j = arg;
    const struct nrt_pool *p = j->p;
    if (pool_is_2x2(p)) {
        maxpool_2x2(p, j->x, j->y, lo, hi);
        return;
    }
    int fast = pool_disjoint(p);
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *plane = j->x + pl * p->h * p->w;
        float *out = j->y + pl * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t at = fast ? inner_argmax(p, plane, oh, ow) : window_argmax(p, plane, oh, ow);
                out[oh * p->wo + ow] = at < 0 ? 0 : plane[at];
            }
    }
}

void nrt_maxpool2d(const struct nrt_pool *p, const float *x, float *y) {
    struct pool_job j = {.p = p, .x = x, .y = y};
    nrt_parallel_for(p->planes, pool_grain(p), maxpool_planes, &j);
}

/* The 2x2/s2 gradient of planes [lo, hi): each input lies in at most one
 * window, so every input a window covers is stored (0 + g as accumulating into
 * zeros gives, -0 included) and the rest, an odd last row or column, cleared.
 * The first maximum wins, chosen without branches so the loop vectorizes. */
static void maxpool_2x2_grad(const struct nrt_pool *p, const float *x, const float *dy, float *dx, int64_t lo,
                             int64_t hi) {
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *plane = x + pl * p->h * p->w;
        const float *g = dy + pl * p->ho * p->wo;
        float *d = dx + pl * p->h * p->w;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            const float *restrict r0 = plane + 2 * oh * p->w, *restrict r1 = r0 + p->w;
            const float *restrict gr = g + oh * p->wo;
            float *restrict d0 = d + 2 * oh * p->w, *restrict d1 = d0 + p->w;
#if defined(__AVX512F__)
            if (p->w <= 16) { /* a whole row, its odd last column included, in one vector */
                maxpool_2x2_grad_short(r0, r1, gr, d0, d1, p->wo, p->w);
                continue;
            }
            maxpool_2x2_grad_row(r0, r1, gr, d0, d1, p->wo);
#else
            for (int64_t ow = 0; ow < p->wo; ow++) {
                float a = r0[2 * ow], b = r0[2 * ow + 1], c = r1[2 * ow], e = r1[2 * ow + 1];
                float v1 = b > a ? b : a, v2;
                int k = b > a;
                k = c > v1 ? 2 : k, v2 = c > v1 ? c : v1;
                k = e > v2 ? 3 : k;
                float v = 0.0f + gr[ow];
                d0[2 * ow] = k == 0 ? v : 0.0f;
                d0[2 * ow + 1] = k == 1 ? v : 0.0f;
                d1[2 * ow] = k == 2 ? v : 0.0f;
                d1[2 * ow + 1] = k == 3 ? v : 0.0f;
            }
#endif
            if (p->w % 2) d0[p->w - 1] = d1[p->w - 1] = 0.0f;
        }
        if (p->h % 2) memset(d + (p->h - 1) * p->w, 0, sizeof *d * (size_t)p->w);
    }
}

static void maxpool_grad_planes(void *arg, int64_t lo, int64_t hi) {
    const struct pool_job *j = arg;
    const struct nrt_pool *p = j->p;
    if (pool_is_2x2(p) && p->h == 2 * p->ho + p->h % 2 && p->w == 2 * p->wo + p->w % 2) {
        maxpool_2x2_grad(p, j->x, j->dy, j->dx, lo, hi);
        return;
    }
    int fast = pool_disjoint(p);
    memset(j->dx + lo * p->h * p->w, 0, sizeof *j->dx * (size_t)((hi - lo) * p->h * p->w));
    for (int64_t pl = lo; pl < hi; pl++) {
        const float *plane = j->x + pl * p->h * p->w;
        const float *g = j->dy + pl * p->ho * p->wo;
        float *d = j->dx + pl * p->h * p->w;
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t at = fast ? inner_argmax(p, plane, oh, ow) : window_argmax(p, plane, oh, ow);
                if (at >= 0) d[at] += g[oh * p->wo + ow];
            }
    }
}

void nrt_maxpool2d_grad(const struct nrt_pool *p, const float *x, const float *dy, float *dx) {
    struct pool_job j = {.p = p, .x = x, .dy = dy, .dx = dx};
    nrt_parallel_for(p->planes, pool_grain(p), maxpool_grad_planes, &j);
}

/* Average over the full window, padding counted (count_include_pad). */
static void avgpool_planes(void *arg, int64_t lo, int64_t hi) {
    const struct pool_job *j = arg;
    const struct nrt_pool *p = j->p;
    float inv = 1.0f / (float)(p->k[0] * p->k[1]);
    for (int64_t pl = lo; pl < hi; pl++)
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                float s = 0;
                for (int64_t i = 0; i < p->k[0]; i++) {
                    int64_t ih = oh * p->s[0] - p->p[0] + i;
                    if (ih < 0 || ih >= p->h) continue;
                    for (int64_t jj = 0; jj < p->k[1]; jj++) {
                        int64_t iw = ow * p->s[1] - p->p[1] + jj;
                        if (iw >= 0 && iw < p->w) s += j->x[(pl * p->h + ih) * p->w + iw];
                    }
                }
                j->y[(pl * p->ho + oh) * p->wo + ow] = s * inv;
            }
}

void nrt_avgpool2d(const struct nrt_pool *p, const float *x, float *y) {
    struct pool_job j = {.p = p, .x = x, .y = y};
    nrt_parallel_for(p->planes, pool_grain(p), avgpool_planes, &j);
}

static void avgpool_grad_planes(void *arg, int64_t lo, int64_t hi) {
    const struct pool_job *j = arg;
    const struct nrt_pool *p = j->p;
    float inv = 1.0f / (float)(p->k[0] * p->k[1]);
    memset(j->dx + lo * p->h * p->w, 0, sizeof *j->dx * (size_t)((hi - lo) * p->h * p->w));
    for (int64_t pl = lo; pl < hi; pl++)
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                float g = j->dy[(pl * p->ho + oh) * p->wo + ow] * inv;
                for (int64_t i = 0; i < p->k[0]; i++) {
                    int64_t ih = oh * p->s[0] - p->p[0] + i;
                    if (ih < 0 || ih >= p->h) continue;
                    for (int64_t jj = 0; jj < p->k[1]; jj++) {
                        int64_t iw = ow * p->s[1] - p->p[1] + jj;
                        if (iw >= 0 && iw < p->w) j->dx[(pl * p->h + ih) * p->w + iw] += g;
                    }
                }
            }
}

void nrt_avgpool2d_grad(const struct nrt_pool *p, const float *dy, float *dx) {
    struct pool_job j = {.p = p, .dy = dy, .dx = dx};
    nrt_parallel_for(p->planes, pool_grain(p), avgpool_grad_planes, &j);
}

void nrt_upsample2d(int64_t planes, int64_t h, int64_t w, int64_t s0, int64_t s1, const float *x, float *y) {
    int64_t H = h * s0, W = w * s1;
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t i = 0; i < H; i++) {
            const float *src = x + (pl * h + i / s0) * w;
            float *dst = y + (pl * H + i) * W;
            for (int64_t j = 0; j < W; j++) dst[j] = src[j / s1];
        }
}

void nrt_upsample2d_grad(int64_t planes, int64_t h, int64_t w, int64_t s0, int64_t s1, const float *dy,
                         float *dx) {
    int64_t H = h * s0, W = w * s1;
    memset(dx, 0, sizeof *dx * (size_t)(planes * h * w));
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t i = 0; i < H; i++) {
            const float *src = dy + (pl * H + i) * W;
            float *dst = dx + (pl * h + i / s0) * w;
            for (int64_t j = 0; j < W; j++) dst[j / s1] += src[j];
        }
}

/* ------------------------------- conv weight gradient through a max pool -- */

/* dw = conv2d_grad_weight(x, maxpool2d_grad(y, dp)) (the IR's
 * CONV2D_GRAD_WEIGHT_MAXPOOL) without the dense gradient: each pooled output
 * of plane (n, co) adds dp times the input patch of the conv output at its
 * window's first maximum (the im2col row there) to dw[co] (the generic loop
 * skips dp = 0). For finite x that is the dense gradient's sum without its
 * zeros (a non-finite x that no window picks is not multiplied by 0 here). The
 * pool threads take ranges of output channels over the whole batch, so each
 * dw element sums in the same order at any thread count. The AVX-512 path
 * keeps about 170 KiB on the stack (its table and accumulators). */
struct gwp_job {
    const struct nrt_conv *c; /* the convolution, y = conv2d(x, .) */
    const struct nrt_pool *p; /* the pooling of y */
    const float *x, *y, *dp;  /* conv input, pooled activation, pooled gradient */
    float *dw;                /* the result [co, ci/g, kh, kw] */
};

/* Any geometry: the window's first maximum by the loops above, then every tap
 * of its patch. */
static void gwp_generic(const struct gwp_job *j, int64_t lo, int64_t hi) {
    const struct nrt_conv *c = j->c;
    const struct nrt_pool *p = j->p;
    int64_t cig = c->ci / c->g, cog = c->co / c->g, taps = cig * c->kh * c->kw;
    memset(j->dw + lo * taps, 0, sizeof *j->dw * (size_t)((hi - lo) * taps));
    int fast = pool_disjoint(p);
    for (int64_t n = 0; n < c->n; n++)
        for (int64_t co = lo; co < hi; co++) {
            const float *plane = j->y + (n * c->co + co) * c->ho * c->wo;
            const float *g = j->dp + (n * c->co + co) * p->ho * p->wo;
            const float *xg = j->x + (n * c->ci + co / cog * cig) * c->h * c->w;
            float *w = j->dw + co * taps;
            for (int64_t oh = 0; oh < p->ho; oh++)
                for (int64_t ow = 0; ow < p->wo; ow++) {
                    float d = g[oh * p->wo + ow];
                    if (d == 0.0f) continue;
                    int64_t at = fast ? inner_argmax(p, plane, oh, ow) : window_argmax(p, plane, oh, ow);
                    if (at < 0) continue;
                    int64_t yh = at / c->wo, yw = at % c->wo;
                    for (int64_t ci = 0; ci < cig; ci++)
                        for (int64_t kh = 0; kh < c->kh; kh++) {
                            int64_t ih = yh * c->s[0] - c->p[0] + kh * c->d[0];
                            if (ih < 0 || ih >= c->h) continue;
                            const float *xr = xg + (ci * c->h + ih) * c->w;
                            float *wr = w + (ci * c->kh + kh) * c->kw;
                            for (int64_t kw = 0; kw < c->kw; kw++) {
                                int64_t iw = yw * c->s[1] - c->p[1] + kw * c->d[1];
                                if (iw >= 0 && iw < c->w) wr[kw] += d * xr[iw];
                            }
                        }
                }
        }
}

#if defined(__AVX512F__)
/* 2x2/s2 pooling behind a 3x3 stride-1 conv, one group: 16 pooled outputs of a
 * row at a time, one vector lane each. Per image, a table of the input values
 * each lane can need: for every pooled row, input channel, input row a in
 * 0..3 and column b in 0..3 of the 4x4 input patch under a 2x2 window of
 * 3x3 taps, the 16 lanes' x[2 ph + a, 2 (pw + l) + b] (zeros for padding).
 * Then per output channel and pooled row: the windows' first maxima as
 * nrt_maxpool2d_grad picks them, and for each tap (kh, kw) the table vector of
 * (kh + dy, kw + dx) selected per lane by its maximum's place (dy, dx),
 * multiplied by dp into one accumulator vector per tap. Accumulators live in
 * acc[] per output channel and input channel over the batch and are summed
 * across lanes at the end. */
#define GWP_TAB_VECS 2048 /* table vectors per image (128 KiB on the stack) */
#define GWP_CO_CHUNK 16   /* output channels whose accumulators are kept at once */
#define GWP_CI_MAX 4      /* input channels */

/* The first maximum of 16 2x2 windows over rows r0, r1 (lanes of m0, m1), as
 * nrt_maxpool2d_grad picks it: *mb, *mc, *me the lanes whose maximum is the
 * top right, bottom left, bottom right input (the rest: top left). */
static inline void gwp_argmax(const float *r0, const float *r1, __mmask16 m0, __mmask16 m1, __mmask16 *mb,
                              __mmask16 *mc, __mmask16 *me) {
    __m512 a, b, cc, e;
    pool_split(r0, m0, m1, &a, &b);
    pool_split(r1, m0, m1, &cc, &e);
    pool_argmax(a, b, cc, e, mb, mc, me);
}

/* Whether the fast path takes this geometry. */
static bool gwp_fast(const struct nrt_conv *c, const struct nrt_pool *p) {
    int64_t blocks = (p->wo + 15) / 16;
    return pool_is_2x2(p) && c->g == 1 && c->kh == 3 && c->kw == 3 && c->s[0] == 1 && c->s[1] == 1 &&
           c->d[0] == 1 && c->d[1] == 1 && c->ci <= GWP_CI_MAX && p->ho * blocks * c->ci * 16 <= GWP_TAB_VECS;
}
#endif

int nrt_conv2d_grad_weight_maxpool_fast(const struct nrt_conv *c, const struct nrt_pool *p) {
#if defined(__AVX512F__)
    return gwp_fast(c, p);
#else
    (void)c, (void)p;
    return false;
#endif
}
#if defined(__AVX512F__)

/* The table of image xn: T[((ph * blocks + blk) * ci + ch) * 16 + a * 4 + b]. */
static void gwp_table(const struct nrt_conv *c, const struct nrt_pool *p, const float *xn, __m512 *T) {
    int64_t blocks = (p->wo + 15) / 16;
    bool pad = c->p[0] || c->p[1] || c->p[2] || c->p[3];
    for (int64_t ph = 0; ph < p->ho; ph++)
        for (int64_t blk = 0; blk < blocks; blk++) {
            int64_t pw = blk * 16, lanes = p->wo - pw < 16 ? p->wo - pw : 16;
            __mmask16 mo, m0, m1;
            pool_masks(lanes, &mo, &m0, &m1);
            (void)mo;
            for (int64_t ch = 0; ch < c->ci; ch++) {
                __m512 *t = T + ((ph * blocks + blk) * c->ci + ch) * 16;
                const float *plane = xn + ch * c->h * c->w;
                for (int64_t a = 0; a < 4; a++) {
                    int64_t ih = 2 * ph + a - c->p[0];
                    if (!pad) { /* columns 2 (pw + l) + b, b = 0..3, all inside: two even/odd splits */
                        const float *xr = plane + ih * c->w + 2 * pw;
                        pool_split(xr, m0, m1, &t[a * 4], &t[a * 4 + 1]);
                        pool_split(xr + 2, m0, m1, &t[a * 4 + 2], &t[a * 4 + 3]);
                        continue;
                    }
                    for (int64_t b = 0; b < 4; b++) {
                        float v[16] = {0};
                        for (int64_t l = 0; l < lanes; l++) {
                            int64_t iw = 2 * (pw + l) + b - c->p[1];
                            if (ih >= 0 && ih < c->h && iw >= 0 && iw < c->w) v[l] = plane[ih * c->w + iw];
                        }
                        t[a * 4 + b] = _mm512_loadu_ps(v);
                    }
                }
            }
        }
}

static void gwp_simd(const struct gwp_job *j, int64_t lo, int64_t hi) {
    const struct nrt_conv *c = j->c;
    const struct nrt_pool *p = j->p;
    int64_t blocks = (p->wo + 15) / 16, taps = c->ci * 9;
    __m512 T[GWP_TAB_VECS];
    __m512 accm[GWP_CO_CHUNK * GWP_CI_MAX * 9];
    for (int64_t co0 = lo; co0 < hi; co0 += GWP_CO_CHUNK) {
        int64_t co1 = co0 + GWP_CO_CHUNK < hi ? co0 + GWP_CO_CHUNK : hi;
        for (int64_t i = 0; i < (co1 - co0) * taps; i++) accm[i] = _mm512_setzero_ps();
        for (int64_t n = 0; n < c->n; n++) {
            gwp_table(c, p, j->x + n * c->ci * c->h * c->w, T);
            for (int64_t co = co0; co < co1; co++) {
                const float *y = j->y + (n * c->co + co) * p->h * p->w;
                const float *g = j->dp + (n * c->co + co) * p->ho * p->wo;
                for (int64_t ch = 0; ch < c->ci; ch++) {
                    __m512 *am = accm + ((co - co0) * c->ci + ch) * 9, acc[9];
                    for (int t = 0; t < 9; t++) acc[t] = am[t];
                    for (int64_t ph = 0; ph < p->ho; ph++)
                        for (int64_t blk = 0; blk < blocks; blk++) {
                            int64_t pw = blk * 16, lanes = p->wo - pw < 16 ? p->wo - pw : 16;
                            __mmask16 mo, m0, m1, mb, mc, me;
                            pool_masks(lanes, &mo, &m0, &m1);
                            const float *r0 = y + 2 * ph * p->w + 2 * pw;
                            gwp_argmax(r0, r0 + p->w, m0, m1, &mb, &mc, &me);
                            const __m512 gv = _mm512_maskz_loadu_ps(mo, g + ph * p->wo + pw);
                            const __m512 *t = T + ((ph * blocks + blk) * c->ci + ch) * 16;
                            /* the maximum's row (dy = 1: bottom) picks table rows kh or kh + 1,
                             * then its column (dx = 1: right) columns kw or kw + 1 */
                            const __mmask16 dy = (__mmask16)(mc | me), dx = (__mmask16)(mb | me);
                            __m512 tv[16], rv[12];
                            for (int i = 0; i < 16; i++) tv[i] = t[i];
                            for (int i = 0; i < 12; i++) rv[i] = _mm512_mask_mov_ps(tv[i], dy, tv[i + 4]);
                            for (int kh = 0; kh < 3; kh++)
                                for (int kw = 0; kw < 3; kw++) {
                                    __m512 xs = _mm512_mask_mov_ps(rv[kh * 4 + kw], dx, rv[kh * 4 + kw + 1]);
                                    acc[kh * 3 + kw] = _mm512_fmadd_ps(gv, xs, acc[kh * 3 + kw]);
                                }
                        }
                    for (int t = 0; t < 9; t++) am[t] = acc[t];
                }
            }
        }
        for (int64_t i = 0; i < (co1 - co0) * taps; i++)
            j->dw[co0 * taps + i] = _mm512_reduce_add_ps(accm[i]);
    }
}
#endif

static void gwp_channels(void *arg, int64_t lo, int64_t hi) {
    const struct gwp_job *j = arg;
#if defined(__AVX512F__)
    if (gwp_fast(j->c, j->p)) {
        gwp_simd(j, lo, hi);
        return;
    }
#endif
    gwp_generic(j, lo, hi);
}

void nrt_conv2d_grad_weight_maxpool(const struct nrt_conv *c, const struct nrt_pool *p, const float *x,
                                    const float *y, const float *dp, float *dw) {
    struct gwp_job j = {.c = c, .p = p, .x = x, .y = y, .dp = dp, .dw = dw};
    int64_t t = nrt_threads_get(), grain = t > 1 ? c->co / t : c->co;
    nrt_parallel_for(c->co, grain > 0 ? grain : 1, gwp_channels, &j);
}
