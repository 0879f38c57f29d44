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
    if (threads > 0)
        openblas_set_num_threads(threads);
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

int64_t nrt_conv_scratch(const struct nrt_conv *c)
{
    return c->ci / c->g * c->kh * c->kw * c->ho * c->wo;
}

/* col[(ch*kh + i)*kw + j][oh*wo + ow] = x[ch, ih, iw] (0 outside), for one
 * image and one group's cig channels starting at x. */
static void im2col(const struct nrt_conv *c, const float *x, int64_t cig, float *col)
{
    int64_t hw = c->ho * c->wo;
    for (int64_t ch = 0; ch < cig; ch++)
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t j = 0; j < c->kw; j++) {
                float *row = col + ((ch * c->kh + i) * c->kw + j) * hw;
                const float *plane = x + ch * c->h * c->w;
                for (int64_t oh = 0; oh < c->ho; oh++) {
                    int64_t ih = oh * c->s[0] - c->p[0] + i * c->d[0];
                    float *r = row + oh * c->wo;
                    if (ih < 0 || ih >= c->h) {
                        for (int64_t ow = 0; ow < c->wo; ow++)
                            r[ow] = 0;
                        continue;
                    }
                    const float *line = plane + ih * c->w;
                    for (int64_t ow = 0; ow < c->wo; ow++) {
                        int64_t iw = ow * c->s[1] - c->p[1] + j * c->d[1];
                        r[ow] = iw >= 0 && iw < c->w ? line[iw] : 0;
                    }
                }
            }
}

/* The adjoint of im2col: x[ch, ih, iw] += col[...] (x is not cleared). */
static void col2im(const struct nrt_conv *c, const float *col, int64_t cig, float *x)
{
    int64_t hw = c->ho * c->wo;
    for (int64_t ch = 0; ch < cig; ch++)
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t j = 0; j < c->kw; j++) {
                const float *row = col + ((ch * c->kh + i) * c->kw + j) * hw;
                float *plane = x + ch * c->h * c->w;
                for (int64_t oh = 0; oh < c->ho; oh++) {
                    int64_t ih = oh * c->s[0] - c->p[0] + i * c->d[0];
                    if (ih < 0 || ih >= c->h)
                        continue;
                    float *line = plane + ih * c->w;
                    const float *r = row + oh * c->wo;
                    for (int64_t ow = 0; ow < c->wo; ow++) {
                        int64_t iw = ow * c->s[1] - c->p[1] + j * c->d[1];
                        if (iw >= 0 && iw < c->w)
                            line[iw] += r[ow];
                    }
                }
            }
}

/* Whether the conv is a plain 1x1, stride 1, unpadded one: col is x itself. */
static int conv_is_pointwise(const struct nrt_conv *c)
{
    return c->kh == 1 && c->kw == 1 && c->s[0] == 1 && c->s[1] == 1 && c->p[0] == 0 && c->p[1] == 0 &&
           c->p[2] == 0 && c->p[3] == 0;
}

void nrt_conv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch)
{
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    for (int64_t b = 0; b < c->n; b++)
        for (int64_t g = 0; g < c->g; g++) {
            const float *xg = x + (b * c->ci + g * cig) * c->h * c->w;
            const float *col = xg;
            if (!conv_is_pointwise(c)) {
                im2col(c, xg, cig, scratch);
                col = scratch;
            }
            nrt_sgemm(0, 0, cog, hw, kk, 1.0f, w + g * cog * kk, kk, col, hw, 0.0f,
                      y + (b * c->co + g * cog) * hw, hw);
        }
}

void nrt_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                           float *scratch)
{
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int pointwise = conv_is_pointwise(c);
    for (int64_t b = 0; b < c->n; b++)
        for (int64_t g = 0; g < c->g; g++) {
            float *dxg = dx + (b * c->ci + g * cig) * c->h * c->w;
            const float *dyg = dy + (b * c->co + g * cog) * hw;
            if (pointwise) {
                nrt_sgemm(1, 0, kk, hw, cog, 1.0f, w + g * cog * kk, kk, dyg, hw, 0.0f, dxg, hw);
                continue;
            }
            nrt_sgemm(1, 0, kk, hw, cog, 1.0f, w + g * cog * kk, kk, dyg, hw, 0.0f, scratch, hw);
            memset(dxg, 0, sizeof *dxg * (size_t)(cig * c->h * c->w));
            col2im(c, scratch, cig, dxg);
        }
}

void nrt_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                            float *scratch)
{
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    for (int64_t b = 0; b < c->n; b++)
        for (int64_t g = 0; g < c->g; g++) {
            const float *xg = x + (b * c->ci + g * cig) * c->h * c->w;
            const float *col = xg;
            if (!conv_is_pointwise(c)) {
                im2col(c, xg, cig, scratch);
                col = scratch;
            }
            nrt_sgemm(0, 1, cog, kk, hw, 1.0f, dy + (b * c->co + g * cog) * hw, hw, col, hw,
                      b == 0 ? 0.0f : 1.0f, dw + g * cog * kk, kk);
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

void nrt_maxpool2d(const struct nrt_pool *p, const float *x, float *y)
{
    for (int64_t pl = 0; pl < p->planes; pl++) {
        const float *plane = x + pl * p->h * p->w;
        float *out = y + pl * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t at = window_argmax(p, plane, oh, ow);
                out[oh * p->wo + ow] = at < 0 ? 0 : plane[at];
            }
    }
}

void nrt_maxpool2d_grad(const struct nrt_pool *p, const float *x, const float *dy, float *dx)
{
    memset(dx, 0, sizeof *dx * (size_t)(p->planes * p->h * p->w));
    for (int64_t pl = 0; pl < p->planes; pl++) {
        const float *plane = x + pl * p->h * p->w;
        const float *g = dy + pl * p->ho * p->wo;
        for (int64_t oh = 0; oh < p->ho; oh++)
            for (int64_t ow = 0; ow < p->wo; ow++) {
                int64_t at = window_argmax(p, plane, oh, ow);
                if (at >= 0)
                    dx[pl * p->h * p->w + at] += g[oh * p->wo + ow];
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
