/* runtime/kernels.c -- the kernels that generated code calls for the heavy ops:
 * SGEMM through OpenBLAS (plus picking OpenBLAS's core type and thread count
 * before it initialises), conv2d and its two gradients by im2col/col2im + SGEMM,
 * max and average pooling with their gradients, and nearest upsampling. The
 * index relations are those of the reference interpreter (codegen/interp_nn.c). */
#include "runtime/internal.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------------------ BLAS -- */

void nrt_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
               int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc)
{
    if (m <= 0 || n <= 0)
        return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++)
                c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans,
                (blasint)m, (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c,
                (blasint)ldc);
}

const char *nrt_blas_core(void) { return openblas_get_corename(); }

void nrt_blas_threads(int threads)
{
    if (threads > 0) {
        openblas_set_num_threads(threads);
        nrt_threads_set(threads);
    }
}

/* Whether OpenBLAS's core name is one of names (NULL-terminated), any case. */
static int core_is(const char *core, const char *const *names)
{
    for (; *names; names++)
        if (strcasecmp(core, *names) == 0)
            return 1;
    return 0;
}

/* OpenBLAS picks its kernels in a library constructor, before main, from the
 * CPU or OPENBLAS_CORETYPE; Debian's 0.3.21 does not recognise some recent CPUs
 * and falls back to SSE3 kernels. Setting the variable in main is too late (it
 * is read once, measured: the core stays the same), so when the CPU has AVX-512
 * (AVX2) but OpenBLAS chose a core without it, the variable is set and the
 * program started again, once (NETC_BLAS_SETUP marks the second run). The
 * thread count needs no restart: nrt_blas_threads sets it at any time. */
void nrt_blas_setup(int argc, char **argv, int threads)
{
    (void)argc;
    (void)threads;
    if (getenv("NETC_BLAS_SETUP") || getenv("OPENBLAS_CORETYPE"))
        return;
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    const char *core = openblas_get_corename(), *want = NULL;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && !core_is(core, avx512))
        want = "SkylakeX";
    else if (__builtin_cpu_supports("avx2") && !core_is(core, avx2))
        want = "Haswell";
#endif
    if (!want)
        return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    setenv("NETC_BLAS_SETUP", "1", 1);
    fflush(NULL);
    execv("/proc/self/exe", argv);
    /* No /proc: go on with OpenBLAS's own choice. */
}

/* ----------------------------------------------------------- convolution -- */

/* The conv kernels take the batch in chunks of nb = nrt_conv_chunk images:
 * im2col writes the chunk's columns side by side, col [kk, nb*hw], so each
 * group's GEMM has nb*hw columns instead of hw (one large GEMM per layer, not
 * one small one per image). y and dy are [n, co, hw] in memory; the scratch
 * t [cog, nb*hw] after col holds one group of them channel-major. */

int64_t nrt_conv_scratch(const struct nrt_conv *c)
{
    return nrt_conv_chunk(c) * nrt_conv_image_floats(c);
}

/* The output columns ow in [*lo, *hi) whose tap j reads inside a row. */
static void tap_range(const struct nrt_conv *c, int64_t j, int64_t *lo, int64_t *hi)
{
    int64_t off = j * c->d[1] - c->p[1];
    *lo = 0, *hi = c->wo;
    while (*lo < *hi && *lo * c->s[1] + off < 0)
        ++*lo;
    while (*hi > *lo && (*hi - 1) * c->s[1] + off >= c->w)
        --*hi;
}

/* col[(ch*kh + i)*kw + j][oh*wo + ow] = x[ch, ih, iw] (0 outside), for one
 * image and one group's cig channels starting at x; rows are ld floats apart. */
static void im2col(const struct nrt_conv *c, const float *x, int64_t cig, float *col, int64_t ld)
{
    for (int64_t ch = 0; ch < cig; ch++)
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t j = 0; j < c->kw; j++) {
                float *row = col + ((ch * c->kh + i) * c->kw + j) * ld;
                const float *plane = x + ch * c->h * c->w;
                int64_t off = j * c->d[1] - c->p[1], lo, hi;
                tap_range(c, j, &lo, &hi);
                for (int64_t oh = 0; oh < c->ho; oh++) {
                    int64_t ih = oh * c->s[0] - c->p[0] + i * c->d[0];
                    float *r = row + oh * c->wo;
                    if (ih < 0 || ih >= c->h) {
                        for (int64_t ow = 0; ow < c->wo; ow++)
                            r[ow] = 0;
                        continue;
                    }
                    /* Rows are short (tens of floats): loops, not memcpy calls. */
                    const float *line = plane + ih * c->w;
                    for (int64_t ow = 0; ow < lo; ow++)
                        r[ow] = 0;
                    if (c->s[1] == 1)
                        for (int64_t ow = lo; ow < hi; ow++)
                            r[ow] = line[ow + off];
                    else
                        for (int64_t ow = lo; ow < hi; ow++)
                            r[ow] = line[ow * c->s[1] + off];
                    for (int64_t ow = hi; ow < c->wo; ow++)
                        r[ow] = 0;
                }
            }
}

/* The adjoint of im2col: x[ch, ih, iw] += col[...] (x is not cleared). */
static void col2im(const struct nrt_conv *c, const float *col, int64_t ld, int64_t cig, float *x)
{
    for (int64_t ch = 0; ch < cig; ch++)
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t j = 0; j < c->kw; j++) {
                const float *row = col + ((ch * c->kh + i) * c->kw + j) * ld;
                float *plane = x + ch * c->h * c->w;
                int64_t off = j * c->d[1] - c->p[1], lo, hi;
                tap_range(c, j, &lo, &hi);
                for (int64_t oh = 0; oh < c->ho; oh++) {
                    int64_t ih = oh * c->s[0] - c->p[0] + i * c->d[0];
                    if (ih < 0 || ih >= c->h)
                        continue;
                    float *line = plane + ih * c->w;
                    const float *r = row + oh * c->wo;
                    if (c->s[1] == 1) {
                        for (int64_t ow = lo; ow < hi; ow++)
                            line[ow + off] += r[ow];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++)
                            line[ow * c->s[1] + off] += r[ow];
                    }
                }
            }
}

/* t[o][b*hw + k] = a[b, g*cog + o, k] for the nb images of a ([nb, co, hw]). */
static void to_channel_major(const struct nrt_conv *c, int64_t nb, int64_t g, const float *a, float *t)
{
    int64_t cog = c->co / c->g, hw = c->ho * c->wo;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < cog; o++)
            memcpy(t + (o * nb + b) * hw, a + (b * c->co + g * cog + o) * hw, sizeof *t * (size_t)hw);
}

/* The inverse of to_channel_major. */
static void from_channel_major(const struct nrt_conv *c, int64_t nb, int64_t g, const float *t, float *a)
{
    int64_t cog = c->co / c->g, hw = c->ho * c->wo;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < cog; o++)
            memcpy(a + (b * c->co + g * cog + o) * hw, t + (o * nb + b) * hw, sizeof *t * (size_t)hw);
}

void nrt_conv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch)
{
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int64_t chunk = nrt_conv_chunk(c);
    for (int64_t b0 = 0; b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk, ld = nb * hw;
        float *col = scratch, *t = scratch + kk * ld;
        for (int64_t g = 0; g < c->g; g++) {
            for (int64_t b = 0; b < nb; b++)
                im2col(c, x + ((b0 + b) * c->ci + g * cig) * c->h * c->w, cig, col + b * hw, ld);
            nrt_sgemm(0, 0, cog, ld, kk, 1.0f, w + g * cog * kk, kk, col, ld, 0.0f, t, ld);
            from_channel_major(c, nb, g, t, y + b0 * c->co * hw);
        }
    }
}

void nrt_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                           float *scratch)
{
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int64_t chunk = nrt_conv_chunk(c);
    memset(dx, 0, sizeof *dx * (size_t)(c->n * c->ci * c->h * c->w));
    for (int64_t b0 = 0; b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk, ld = nb * hw;
        float *col = scratch, *t = scratch + kk * ld;
        for (int64_t g = 0; g < c->g; g++) {
            to_channel_major(c, nb, g, dy + b0 * c->co * hw, t);
            nrt_sgemm(1, 0, kk, ld, cog, 1.0f, w + g * cog * kk, kk, t, ld, 0.0f, col, ld);
            for (int64_t b = 0; b < nb; b++)
                col2im(c, col + b * hw, ld, cig, dx + ((b0 + b) * c->ci + g * cig) * c->h * c->w);
        }
    }
}

void nrt_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                            float *scratch)
{
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int64_t chunk = nrt_conv_chunk(c);
    for (int64_t b0 = 0; b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk, ld = nb * hw;
        float *col = scratch, *t = scratch + kk * ld;
        for (int64_t g = 0; g < c->g; g++) {
            for (int64_t b = 0; b < nb; b++)
                im2col(c, x + ((b0 + b) * c->ci + g * cig) * c->h * c->w, cig, col + b * hw, ld);
            to_channel_major(c, nb, g, dy + b0 * c->co * hw, t);
            nrt_sgemm(0, 1, cog, kk, ld, 1.0f, t, ld, col, ld, b0 == 0 ? 0.0f : 1.0f, dw + g * cog * kk, kk);
        }
    }
}

/* --------------------------------------------------------------- pooling -- */

/* The flat index within a plane of the first maximum of window (oh, ow), or -1
 * when the window holds only padding. */
static int64_t window_argmax(const struct nrt_pool *p, const float *plane, int64_t oh, int64_t ow)
{
    int64_t best = -1;
    for (int64_t i = 0; i < p->k[0]; i++) {
        int64_t ih = oh * p->s[0] - p->p[0] + i;
        if (ih < 0 || ih >= p->h)
            continue;
        for (int64_t j = 0; j < p->k[1]; j++) {
            int64_t iw = ow * p->s[1] - p->p[1] + j;
            if (iw < 0 || iw >= p->w)
                continue;
            int64_t at = ih * p->w + iw;
            if (best < 0 || plane[at] > plane[best])
                best = at;
        }
    }
    return best;
}

/* Whether every window lies inside its plane (no padding) and no two windows
 * overlap, so each input has at most one window: the fast paths below. */
static int pool_disjoint(const struct nrt_pool *p)
{
    return p->p[0] == 0 && p->p[1] == 0 && p->p[2] == 0 && p->p[3] == 0 && p->s[0] >= p->k[0] &&
           p->s[1] >= p->k[1] && (p->ho - 1) * p->s[0] + p->k[0] <= p->h &&
           (p->wo - 1) * p->s[1] + p->k[1] <= p->w;
}

/* The flat index within a plane of window (oh, ow)'s first maximum, for a
 * window inside the plane (window_argmax without the bounds checks). */
static inline int64_t inner_argmax(const struct nrt_pool *p, const float *plane, int64_t oh, int64_t ow)
{
    int64_t at0 = oh * p->s[0] * p->w + ow * p->s[1], best = at0;
    for (int64_t i = 0; i < p->k[0]; i++)
        for (int64_t j = 0; j < p->k[1]; j++) {
            int64_t at = at0 + i * p->w + j;
            if (plane[at] > plane[best])
                best = at;
        }
    return best;
}

/* 2x2 windows at stride 2: the first maximum of a, b (row 0), c, d (row 1). */
static inline int argmax4(float a, float b, float c, float d)
{
    int best = 0;
    float v = a;
    if (b > v)
        best = 1, v = b;
    if (c > v)
        best = 2, v = c;
    if (d > v)
        best = 3;
    return best;
}

static int pool_is_2x2(const struct nrt_pool *p)
{
    return p->k[0] == 2 && p->k[1] == 2 && p->s[0] == 2 && p->s[1] == 2 && pool_disjoint(p);
}

void nrt_maxpool2d(const struct nrt_pool *p, const float *x, float *y)
{
    int fast = pool_disjoint(p), two = pool_is_2x2(p);
    for (int64_t pl = 0; pl < p->planes; pl++) {
        const float *plane = x + pl * p->h * p->w;
        float *out = y + pl * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            if (two) {
                const float *r0 = plane + 2 * oh * p->w, *r1 = r0 + p->w;
                for (int64_t ow = 0; ow < p->wo; ow++) {
                    float v = r0[2 * ow];
                    v = r0[2 * ow + 1] > v ? r0[2 * ow + 1] : v;
                    v = r1[2 * ow] > v ? r1[2 * ow] : v;
                    v = r1[2 * ow + 1] > v ? r1[2 * ow + 1] : v;
                    out[oh * p->wo + ow] = v;
                }
                continue;
            }
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t at = fast ? inner_argmax(p, plane, oh, ow) : window_argmax(p, plane, oh, ow);
                out[oh * p->wo + ow] = at < 0 ? 0 : plane[at];
            }
        }
    }
}

void nrt_maxpool2d_grad(const struct nrt_pool *p, const float *x, const float *dy, float *dx)
{
    int fast = pool_disjoint(p), two = pool_is_2x2(p);
    /* The 2x2 path stores every input its windows cover. */
    if (!two || p->h % 2 || p->w % 2)
        memset(dx, 0, sizeof *dx * (size_t)(p->planes * p->h * p->w));
    for (int64_t pl = 0; pl < p->planes; pl++) {
        const float *plane = x + pl * p->h * p->w;
        const float *g = dy + pl * p->ho * p->wo;
        float *d = dx + pl * p->h * p->w;
        for (int64_t oh = 0; oh < p->ho; oh++) {
            if (two) {
                /* Each input in one window: store all four (0 + g as the
                 * accumulation into zeros gives, -0 included). */
                const float *r0 = plane + 2 * oh * p->w, *r1 = r0 + p->w;
                float *d0 = d + 2 * oh * p->w, *d1 = d0 + p->w;
                for (int64_t ow = 0; ow < p->wo; ow++) {
                    int k = argmax4(r0[2 * ow], r0[2 * ow + 1], r1[2 * ow], r1[2 * ow + 1]);
                    float v = 0.0f + g[oh * p->wo + ow];
                    d0[2 * ow] = k == 0 ? v : 0.0f;
                    d0[2 * ow + 1] = k == 1 ? v : 0.0f;
                    d1[2 * ow] = k == 2 ? v : 0.0f;
                    d1[2 * ow + 1] = k == 3 ? v : 0.0f;
                }
                continue;
            }
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t at = fast ? inner_argmax(p, plane, oh, ow) : window_argmax(p, plane, oh, ow);
                if (at >= 0)
                    d[at] += g[oh * p->wo + ow];
            }
        }
    }
}

/* Average over the full window, padding counted (count_include_pad). */
void nrt_avgpool2d(const struct nrt_pool *p, const float *x, float *y)
{
    float inv = 1.0f / (float)(p->k[0] * p->k[1]);
    for (int64_t pl = 0; pl < p->planes; pl++)
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                float s = 0;
                for (int64_t i = 0; i < p->k[0]; i++) {
                    int64_t ih = oh * p->s[0] - p->p[0] + i;
                    if (ih < 0 || ih >= p->h)
                        continue;
                    for (int64_t j = 0; j < p->k[1]; j++) {
                        int64_t iw = ow * p->s[1] - p->p[1] + j;
                        if (iw >= 0 && iw < p->w)
                            s += x[(pl * p->h + ih) * p->w + iw];
                    }
                }
                y[(pl * p->ho + oh) * p->wo + ow] = s * inv;
            }
}

void nrt_avgpool2d_grad(const struct nrt_pool *p, const float *dy, float *dx)
{
    float inv = 1.0f / (float)(p->k[0] * p->k[1]);
    memset(dx, 0, sizeof *dx * (size_t)(p->planes * p->h * p->w));
    for (int64_t pl = 0; pl < p->planes; pl++)
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                float g = dy[(pl * p->ho + oh) * p->wo + ow] * inv;
                for (int64_t i = 0; i < p->k[0]; i++) {
                    int64_t ih = oh * p->s[0] - p->p[0] + i;
                    if (ih < 0 || ih >= p->h)
                        continue;
                    for (int64_t j = 0; j < p->k[1]; j++) {
                        int64_t iw = ow * p->s[1] - p->p[1] + j;
                        if (iw >= 0 && iw < p->w)
                            dx[(pl * p->h + ih) * p->w + iw] += g;
                    }
                }
            }
}

void nrt_upsample2d(int64_t planes, int64_t h, int64_t w, int64_t s0, int64_t s1, const float *x, float *y)
{
    int64_t H = h * s0, W = w * s1;
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t i = 0; i < H; i++) {
            const float *src = x + (pl * h + i / s0) * w;
            float *dst = y + (pl * H + i) * W;
            for (int64_t j = 0; j < W; j++)
                dst[j] = src[j / s1];
        }
}

void nrt_upsample2d_grad(int64_t planes, int64_t h, int64_t w, int64_t s0, int64_t s1, const float *dy,
                         float *dx)
{
    int64_t H = h * s0, W = w * s1;
    memset(dx, 0, sizeof *dx * (size_t)(planes * h * w));
    for (int64_t pl = 0; pl < planes; pl++)
        for (int64_t i = 0; i < H; i++) {
            const float *src = dy + (pl * H + i) * W;
            float *dst = dx + (pl * h + i / s0) * w;
            for (int64_t j = 0; j < W; j++)
                dst[j / s1] += src[j];
        }
}
