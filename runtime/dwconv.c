/* runtime/dwconv.c -- depthwise convolution (the IR's conv2d and its
 * gradients when every group has one input channel): forward, input gradient
 * and weight gradient, called by kernels.c's nrt_conv2d* before the im2col +
 * GEMM path. Compiled with -O3 -march=native (CMakeLists.txt): the row loops
 * are written for the compiler to vectorise. */
#include "runtime/internal.h"

#include <stdlib.h>
#include <string.h>

/* Groups of one input channel each (depthwise: g = ci, co = m*g outputs, m per
 * input channel): each output plane is a small 2-D correlation of one input
 * plane with kh*kw weights. As im2col + GEMM this is one GEMM row per group
 * and the time goes to im2col; here the planes are split over the threads.
 * Each input plane is first copied into a zero-bordered buffer (the padding)
 * in the task's scratch.
 *
 * At stride 1 ("wide" rows) output (oh, ow) reads the padded plane at
 * oh*wp + ow + off(tap), off = i*d0*wp + j*d1: computing outputs for every
 * column of the padded width makes each tap one contiguous loop over the
 * whole plane, yw[p] += w * xp[p + off] for p < q (q = ho*wp rounded up to
 * 16; the extra columns are discarded, the buffer has zero slack past the
 * plane for them). The input gradient is the adjoint (dxp[p + off] += w *
 * dyw[p], dy spread to the padded width with zeros in the extra columns), the
 * weight gradient a dot product per tap over the same loops, kept in 16
 * independent partial sums the compiler vectorises. Other strides run row by
 * row. */
struct dw_job {
    const struct nrt_conv *c;
    const float *x, *w, *dy;
    float *y, *dx, *dw;
    float *scratch;
    int64_t tasks, units; /* task i takes units [units*i/tasks, units*(i+1)/tasks) */
    int64_t hp, wp;       /* the padded plane */
    int wide;             /* stride 1: the whole-plane loops */
    int64_t q;            /* wide: outputs per plane at the padded width, a multiple of 16 */
    int64_t xfloats;      /* the padded plane's buffer, slack included */
    int64_t per_task;     /* scratch floats per task */
};

#define DW_LANES 16

/* The offset of tap (i, j) in the padded plane. */
static inline int64_t dw_off(const struct nrt_conv *c, int64_t wp, int64_t i, int64_t jj) {
    return i * c->d[0] * wp + jj * c->d[1];
}

/* Copies one input plane into buf's zero-bordered padded plane. */
static const float *dw_pad_plane(const struct dw_job *j, const float *plane, float *buf) {
    const struct nrt_conv *c = j->c;
    memset(buf, 0, sizeof *buf * (size_t)j->xfloats);
    for (int64_t ih = 0; ih < c->h; ih++)
        memcpy(buf + (ih + c->p[0]) * j->wp + c->p[1], plane + ih * c->w, sizeof *buf * (size_t)c->w);
    return buf;
}

/* dyw = one dy plane at the padded width: zeros in the extra columns and past ho rows. */
static void dw_spread(const struct dw_job *j, const float *dy, float *dyw) {
    const struct nrt_conv *c = j->c;
    memset(dyw, 0, sizeof *dyw * (size_t)j->q);
    for (int64_t oh = 0; oh < c->ho; oh++)
        memcpy(dyw + oh * j->wp, dy + oh * c->wo, sizeof *dyw * (size_t)c->wo);
}

/* Wide forward: y (one plane) from xp, via yw (q floats). */
static void dw_wide_fwd(const struct dw_job *j, const float *restrict xp, const float *restrict w,
                        float *restrict yw, float *restrict y) {
    const struct nrt_conv *c = j->c;
    int64_t q = j->q, wp = j->wp;
    for (int64_t p = 0; p < q; p++) yw[p] = 0;
    for (int64_t i = 0; i < c->kh; i++)
        for (int64_t jj = 0; jj < c->kw; jj++) {
            const float wv = w[i * c->kw + jj];
            const float *restrict src = xp + dw_off(c, wp, i, jj);
            for (int64_t p = 0; p < q; p++) yw[p] += wv * src[p];
        }
    for (int64_t oh = 0; oh < c->ho; oh++) memcpy(y + oh * c->wo, yw + oh * wp, sizeof *y * (size_t)c->wo);
}

/* Wide input gradient: dxp (the padded plane) += the adjoint for dyw. */
static void dw_wide_dx(const struct dw_job *j, const float *restrict dyw, const float *restrict w,
                       float *restrict dxp) {
    const struct nrt_conv *c = j->c;
    for (int64_t i = 0; i < c->kh; i++)
        for (int64_t jj = 0; jj < c->kw; jj++) {
            const float wv = w[i * c->kw + jj];
            float *restrict dst = dxp + dw_off(c, j->wp, i, jj);
            for (int64_t p = 0; p < j->q; p++) dst[p] += wv * dyw[p];
        }
}

/* Wide weight gradient: acc[tap][lane] += the products of dyw and xp. */
static void dw_wide_dw(const struct dw_job *j, const float *restrict xp, const float *restrict dyw,
                       float *restrict acc) {
    const struct nrt_conv *c = j->c;
    for (int64_t i = 0; i < c->kh; i++)
        for (int64_t jj = 0; jj < c->kw; jj++) {
            const float *restrict src = xp + dw_off(c, j->wp, i, jj);
            float *restrict a = acc + (i * c->kw + jj) * DW_LANES;
            for (int64_t p = 0; p < j->q; p += DW_LANES)
                for (int l = 0; l < DW_LANES; l++) a[l] += dyw[p + l] * src[p + l];
        }
}

/* Row by row (any stride): y (one plane) = the correlation of xp with w. */
static void dw_plane_fwd(const struct nrt_conv *c, int64_t wp, const float *restrict xp,
                         const float *restrict w, float *restrict y) {
    int64_t wo = c->wo, s1 = c->s[1];
    for (int64_t oh = 0; oh < c->ho; oh++) {
        float *restrict yr = y + oh * wo;
        for (int64_t ow = 0; ow < wo; ow++) yr[ow] = 0;
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t jj = 0; jj < c->kw; jj++) {
                const float wv = w[i * c->kw + jj];
                const float *restrict src = xp + oh * c->s[0] * wp + dw_off(c, wp, i, jj);
                for (int64_t ow = 0; ow < wo; ow++) yr[ow] += wv * src[ow * s1];
            }
    }
}

/* Row by row: dxp (the padded plane, accumulated) += the adjoint for dy. */
static void dw_plane_dx(const struct nrt_conv *c, int64_t wp, const float *restrict dy,
                        const float *restrict w, float *restrict dxp) {
    int64_t wo = c->wo, s1 = c->s[1];
    for (int64_t oh = 0; oh < c->ho; oh++) {
        const float *restrict g = dy + oh * wo;
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t jj = 0; jj < c->kw; jj++) {
                const float wv = w[i * c->kw + jj];
                float *restrict dst = dxp + oh * c->s[0] * wp + dw_off(c, wp, i, jj);
                for (int64_t ow = 0; ow < wo; ow++) dst[ow * s1] += wv * g[ow];
            }
    }
}

/* Row by row: acc[tap][ow] += dy[oh][ow] * xp[tap at (oh, ow)] over every oh,
 * summed over rows but not yet along them, so the inner loop is elementwise. */
static void dw_plane_dw(const struct nrt_conv *c, int64_t wp, const float *restrict xp,
                        const float *restrict dy, float *restrict acc) {
    int64_t wo = c->wo, s1 = c->s[1];
    for (int64_t oh = 0; oh < c->ho; oh++) {
        const float *restrict g = dy + oh * wo;
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t jj = 0; jj < c->kw; jj++) {
                const float *restrict src = xp + oh * c->s[0] * wp + dw_off(c, wp, i, jj);
                float *restrict a = acc + (i * c->kw + jj) * wo;
                for (int64_t ow = 0; ow < wo; ow++) a[ow] += g[ow] * src[ow * s1];
            }
    }
}

/* Forward: units are (image, input channel) pairs, each producing its m outputs. */
static void dw_fwd_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct dw_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t m = c->co / c->g, taps = c->kh * c->kw, plane = c->h * c->w, oplane = c->ho * c->wo;
    for (int64_t t = lo; t < hi; t++) {
        float *buf = j->scratch + t * j->per_task, *yw = buf + j->xfloats;
        for (int64_t u = j->units * t / j->tasks; u < j->units * (t + 1) / j->tasks; u++) {
            int64_t b = u / c->ci, ch = u % c->ci;
            const float *xp = dw_pad_plane(j, j->x + (b * c->ci + ch) * plane, buf);
            for (int64_t k = 0; k < m; k++) {
                int64_t o = ch * m + k;
                float *y = j->y + (b * c->co + o) * oplane;
                if (j->wide)
                    dw_wide_fwd(j, xp, j->w + o * taps, yw, y);
                else
                    dw_plane_fwd(c, j->wp, xp, j->w + o * taps, y);
            }
        }
    }
}

/* Input gradient: units as in the forward pass. */
static void dw_dx_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct dw_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t m = c->co / c->g, taps = c->kh * c->kw, oplane = c->ho * c->wo;
    for (int64_t t = lo; t < hi; t++) {
        float *dxp = j->scratch + t * j->per_task, *dyw = dxp + j->xfloats;
        for (int64_t u = j->units * t / j->tasks; u < j->units * (t + 1) / j->tasks; u++) {
            int64_t b = u / c->ci, ch = u % c->ci;
            memset(dxp, 0, sizeof *dxp * (size_t)j->xfloats);
            for (int64_t k = 0; k < m; k++) {
                int64_t o = ch * m + k;
                const float *dy = j->dy + (b * c->co + o) * oplane;
                if (j->wide) {
                    dw_spread(j, dy, dyw);
                    dw_wide_dx(j, dyw, j->w + o * taps, dxp);
                } else {
                    dw_plane_dx(c, j->wp, dy, j->w + o * taps, dxp);
                }
            }
            float *dx = j->dx + (b * c->ci + ch) * c->h * c->w;
            for (int64_t ih = 0; ih < c->h; ih++)
                memcpy(dx + ih * c->w, dxp + (ih + c->p[0]) * j->wp + c->p[1], sizeof *dx * (size_t)c->w);
        }
    }
}

/* Weight gradient: units are input channels (each owns its m outputs' weights,
 * so no task shares an output); the batch is summed inside, in float partial
 * sums (DW_LANES per tap when wide, wo per tap otherwise) added in double at
 * the end. */
static void dw_dw_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct dw_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t m = c->co / c->g, taps = c->kh * c->kw, plane = c->h * c->w, oplane = c->ho * c->wo;
    int64_t lanes = j->wide ? DW_LANES : c->wo;
    for (int64_t t = lo; t < hi; t++) {
        float *buf = j->scratch + t * j->per_task, *dyw = buf + j->xfloats, *acc = dyw + j->q;
        for (int64_t ch = j->units * t / j->tasks; ch < j->units * (t + 1) / j->tasks; ch++)
            for (int64_t k = 0; k < m; k++) {
                int64_t o = ch * m + k;
                memset(acc, 0, sizeof *acc * (size_t)(taps * lanes));
                for (int64_t b = 0; b < c->n; b++) {
                    const float *xp = dw_pad_plane(j, j->x + (b * c->ci + ch) * plane, buf);
                    const float *dy = j->dy + (b * c->co + o) * oplane;
                    if (j->wide) {
                        dw_spread(j, dy, dyw);
                        dw_wide_dw(j, xp, dyw, acc);
                    } else {
                        dw_plane_dw(c, j->wp, xp, dy, acc);
                    }
                }
                for (int64_t tap = 0; tap < taps; tap++) {
                    double s = 0;
                    for (int64_t l = 0; l < lanes; l++) s += acc[tap * lanes + l];
                    j->dw[o * taps + tap] = (float)s;
                }
            }
    }
}

#if defined(__AVX512F__)
/* ------------------------------------ 3x3, stride 1, "same" padding, m = 1 --
 * MobileNet's depthwise layer, register-blocked: each output row in blocks of
 * 16 columns, the nine taps' shifted input rows read straight from the plane
 * by masked loads (lanes outside the plane read as zeros and never touch
 * memory), the sum in a register, stored once: one pass over x and y, no
 * padded copy; the weight gradient by blocks of channels, images in memory
 * order. The forward pass adds the taps in the order of the wide loops above
 * (i, then j, each a fused multiply-add onto the running sum): the same floats
 * as before; the input gradient adds its tap rows in the opposite order (its
 * rows too are read in memory order). */
#include <immintrin.h>

static int dw3_ok(const struct nrt_conv *c) {
    return c->g >= 2 && c->ci == c->g && c->co == c->g && c->kh == 3 && c->kw == 3 && c->s[0] == 1 &&
           c->s[1] == 1 && c->d[0] == 1 && c->d[1] == 1 && c->p[0] == 1 && c->p[1] == 1 && c->p[2] == 1 &&
           c->p[3] == 1 && c->ho == c->h && c->wo == c->w && c->w >= 1 && c->h >= 1 &&
           !getenv("NETC_CONV_IM2COL");
}

/* The lanes of columns [c0 + sh, c0 + sh + 16) that lie in [0, w) and belong
 * to outputs c0 + l < w. */
static inline __mmask16 dw3_mask(int64_t w, int64_t c0, int64_t sh) {
    uint32_t m = 0;
    for (int l = 0; l < 16; l++) {
        int64_t col = c0 + sh + l;
        if (c0 + l < w && col >= 0 && col < w) m |= 1u << l;
    }
    return (__mmask16)m;
}

/* One plane: out[r][c] = sum over taps (i, j) of wt[i][j] * in[r + si(i)][c + sj(j)],
 * si(i) = i - 1 and sj(j) = j - 1 for the forward pass (dir 1), 1 - i and
 * 1 - j for the input gradient (dir -1, the adjoint). The input rows are
 * visited once, in memory order: each row's three shifted vectors serve three
 * outputs (the one behind, then stored; its own; the one ahead). */
static void dw3_plane(const float *restrict in, const float *restrict wt, float *restrict out, int64_t h,
                      int64_t w, int dir) {
    /* the rows in memory order: tap row a of the output behind, b of its own, e of the one ahead */
    const int a = dir > 0 ? 2 : 0, e = 2 - a;
    __m512 wv[9];
    for (int t = 0; t < 9; t++) wv[t] = _mm512_set1_ps(wt[t]);
    for (int64_t c0 = 0; c0 < w; c0 += 16) {
        const __mmask16 mo = dw3_mask(w, c0, 0), m0 = dw3_mask(w, c0, -dir), m2 = dw3_mask(w, c0, dir);
        __m512 cur = _mm512_setzero_ps(), back = _mm512_setzero_ps(); /* outputs rr and rr - 1 */
        for (int64_t rr = 0; rr < h; rr++) {
            const float *row = in + rr * w + c0;
            const __m512 v0 = _mm512_maskz_loadu_ps(m0, row - dir), v1 = _mm512_maskz_loadu_ps(mo, row),
                         v2 = _mm512_maskz_loadu_ps(m2, row + dir);
            if (rr > 0) {
                back = _mm512_fmadd_ps(wv[3 * a], v0, back);
                back = _mm512_fmadd_ps(wv[3 * a + 1], v1, back);
                back = _mm512_fmadd_ps(wv[3 * a + 2], v2, back);
                _mm512_mask_storeu_ps(out + (rr - 1) * w + c0, mo, back);
            }
            cur = _mm512_fmadd_ps(wv[3], v0, cur);
            cur = _mm512_fmadd_ps(wv[4], v1, cur);
            cur = _mm512_fmadd_ps(wv[5], v2, cur);
            __m512 ahead = _mm512_fmadd_ps(wv[3 * e], v0, _mm512_setzero_ps());
            ahead = _mm512_fmadd_ps(wv[3 * e + 1], v1, ahead);
            ahead = _mm512_fmadd_ps(wv[3 * e + 2], v2, ahead);
            back = cur, cur = ahead;
        }
        _mm512_mask_storeu_ps(out + (h - 1) * w + c0, mo, back); /* the last row: nothing below */
    }
}

struct dw3_job {
    const struct nrt_conv *c;
    const float *in, *w, *x, *dy;
    float *out, *dw;
    int dir;
};

/* Planes [lo, hi) (image p / c, channel p % c) of the forward pass or the input gradient. */
static void dw3_planes(void *arg, int64_t lo, int64_t hi) {
    const struct dw3_job *j = arg;
    const struct nrt_conv *c = j->c;
    const int64_t plane = c->h * c->w;
    for (int64_t p = lo; p < hi; p++)
        dw3_plane(j->in + p * plane, j->w + p % c->ci * 9, j->out + p * plane, c->h, c->w, j->dir);
}

#define DW3_BLOCK 16 /* channels per weight-gradient task */
#define DW3_FLUSH 8  /* images summed in float before the partials go into double */

/* One plane's weight-gradient terms added to part[9][16] (float lanes):
 * tap (i, j) += dy[r][c] x[r + i - 1][c + j - 1], each x row's three shifted
 * vectors loaded once for the three dy rows that use them. */
static void dw3_dw_plane(const float *restrict x, const float *restrict g, int64_t h, int64_t w,
                         float *restrict part) {
    __m512 acc[9];
    for (int t = 0; t < 9; t++) acc[t] = _mm512_loadu_ps(part + 16 * t);
    for (int64_t c0 = 0; c0 < w; c0 += 16) {
        const __mmask16 mo = dw3_mask(w, c0, 0), m0 = dw3_mask(w, c0, -1), m2 = dw3_mask(w, c0, 1);
        for (int64_t rr = 0; rr < h; rr++) {
            const float *row = x + rr * w + c0;
            const __m512 v0 = _mm512_maskz_loadu_ps(m0, row - 1), v1 = _mm512_maskz_loadu_ps(mo, row),
                         v2 = _mm512_maskz_loadu_ps(m2, row + 1);
            for (int i = 0; i < 3; i++) { /* dy row rr + 1 - i */
                const int64_t r = rr + 1 - i;
                if (r < 0 || r >= h) continue;
                const __m512 gv = _mm512_maskz_loadu_ps(mo, g + r * w + c0);
                acc[3 * i] = _mm512_fmadd_ps(gv, v0, acc[3 * i]);
                acc[3 * i + 1] = _mm512_fmadd_ps(gv, v1, acc[3 * i + 1]);
                acc[3 * i + 2] = _mm512_fmadd_ps(gv, v2, acc[3 * i + 2]);
            }
        }
    }
    for (int t = 0; t < 9; t++) _mm512_storeu_ps(part + 16 * t, acc[t]);
}

/* Blocks [lo, hi) of DW3_BLOCK channels of the weight gradient, the images in
 * memory order (each image's block of planes one stream): per channel float
 * lanes over DW3_FLUSH images, then added into double lanes, summed at the end. */
static void dw3_dw_blocks(void *arg, int64_t lo, int64_t hi) {
    const struct dw3_job *j = arg;
    const struct nrt_conv *c = j->c;
    const int64_t plane = c->h * c->w;
    float part[DW3_BLOCK][9 * 16];
    double tot[DW3_BLOCK][9 * 16];
    for (int64_t blk = lo; blk < hi; blk++) {
        const int64_t ch0 = blk * DW3_BLOCK, nc = c->ci - ch0 < DW3_BLOCK ? c->ci - ch0 : DW3_BLOCK;
        memset(part, 0, sizeof part), memset(tot, 0, sizeof tot);
        for (int64_t b = 0; b < c->n; b++) {
            for (int64_t k = 0; k < nc; k++) {
                const int64_t at = (b * c->ci + ch0 + k) * plane;
                dw3_dw_plane(j->x + at, j->dy + at, c->h, c->w, part[k]);
            }
            if ((b + 1) % DW3_FLUSH == 0 || b + 1 == c->n)
                for (int64_t k = 0; k < nc; k++)
                    for (int l = 0; l < 9 * 16; l++) tot[k][l] += part[k][l], part[k][l] = 0;
        }
        for (int64_t k = 0; k < nc; k++)
            for (int t = 0; t < 9; t++) {
                double s = 0;
                for (int l = 0; l < 16; l++) s += tot[k][16 * t + l];
                j->dw[(ch0 + k) * 9 + t] = (float)s;
            }
    }
}

static int64_t dw3_grain(const struct nrt_conv *c) {
    int64_t plane = c->h * c->w;
    return plane >= 16384 ? 1 : 16384 / plane;
}
#endif

/* Runs fn over the pool when the depthwise kernels apply to c (one input
 * channel per group, several groups, and a task's buffers fit the scratch the
 * memory plan gave the layer, nrt_conv_scratch), with j's pointers set by the
 * caller; 0 otherwise. grad_weight: the tasks need the weight gradient's
 * partial sums too. */
static int dw_run(struct dw_job *j, const struct nrt_conv *c, float *scratch, int64_t units, int grad_weight,
                  void (*fn)(void *arg, int64_t lo, int64_t hi)) {
    if (c->g < 2 || c->ci != c->g || getenv("NETC_CONV_IM2COL")) return 0;
    j->c = c, j->scratch = scratch, j->units = units;
    j->hp = c->h + c->p[0] + c->p[2], j->wp = c->w + c->p[1] + c->p[3];
    j->wide = c->s[0] == 1 && c->s[1] == 1;
    int64_t taps = c->kh * c->kw;
    if (j->wide) {
        j->q = (c->ho * j->wp + DW_LANES - 1) / DW_LANES * DW_LANES;
        int64_t reach = j->q + dw_off(c, j->wp, c->kh - 1, c->kw - 1); /* the last tap's end */
        j->xfloats = reach > j->hp * j->wp ? reach : j->hp * j->wp;
        j->per_task = j->xfloats + j->q + (grad_weight ? taps * DW_LANES : 0);
    } else {
        j->xfloats = j->hp * j->wp;
        j->per_task = j->xfloats + (grad_weight ? taps * c->wo : 0);
    }
    j->xfloats = (j->xfloats + 15) / 16 * 16;
    j->per_task = (j->per_task + 31) / 16 * 16;
    if (j->per_task > nrt_conv_scratch(c)) return 0;
    int64_t t = nrt_threads_get();
    j->tasks = t < units ? t : units;
    if (j->tasks < 1) j->tasks = 1;
    while (j->tasks > 1 && j->tasks * j->per_task > nrt_conv_scratch(c)) j->tasks--;
    nrt_parallel_for(j->tasks, 1, fn, j);
    return 1;
}

int nrt_dwconv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch) {
#if defined(__AVX512F__)
    if (dw3_ok(c)) {
        struct dw3_job k = {.c = c, .in = x, .w = w, .out = y, .dir = 1};
        nrt_parallel_for(c->n * c->ci, dw3_grain(c), dw3_planes, &k);
        return 1;
    }
#endif
    struct dw_job j = {.x = x, .w = w, .y = y};
    return dw_run(&j, c, scratch, c->n * c->ci, 0, dw_fwd_tasks);
}

int nrt_dwconv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                            float *scratch) {
#if defined(__AVX512F__)
    if (dw3_ok(c)) {
        struct dw3_job k = {.c = c, .in = dy, .w = w, .out = dx, .dir = -1};
        nrt_parallel_for(c->n * c->ci, dw3_grain(c), dw3_planes, &k);
        return 1;
    }
#endif
    struct dw_job j = {.dy = dy, .w = w, .dx = dx};
    return dw_run(&j, c, scratch, c->n * c->ci, 0, dw_dx_tasks);
}

int nrt_dwconv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                             float *scratch) {
#if defined(__AVX512F__)
    if (dw3_ok(c)) {
        struct dw3_job k = {.c = c, .x = x, .dy = dy, .dw = dw};
        nrt_parallel_for((c->ci + DW3_BLOCK - 1) / DW3_BLOCK, 1, dw3_dw_blocks, &k);
        return 1;
    }
#endif
    struct dw_job j = {.x = x, .dy = dy, .dw = dw};
    return dw_run(&j, c, scratch, c->ci, 1, dw_dw_tasks);
}
