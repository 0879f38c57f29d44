/* runtime/kernels.c -- the kernels that generated code calls for the heavy ops.
 * Sections: SGEMM through the runtime's own AVX-512 kernel (sgemm.c), or
 * single-threaded oneDNN (dnnl_sgemm, loaded at run time where built with it
 * and found, NETC_GEMM=onednn) or OpenBLAS, split over the thread pool
 * when large (plus picking OpenBLAS's core type before it initialises);
 * convolution -- im2col/col2im + SGEMM, and with AVX-512 direct register-tiled
 * kernels (channel vectors for deep layers, wide rows for first layers, the
 * input gradient of unpadded layers by scatter; strided layers: the forward
 * in groups of images, few-tap ones by phase images on the wide rows and
 * their input gradient by tap sums, the input gradient by sub-pixels) --
 * with each pool thread on its own images (pooling and upsampling are in
 * pool.c). The index relations are those of the reference interpreter (codegen/interp_nn.c). */
#include "runtime/internal.h"

#include <cblas.h>
#ifdef NETC_HAVE_DNNL
#include <dlfcn.h>
#include <oneapi/dnnl/dnnl.h>
#include <pthread.h>
#endif
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

/* ------------------------------------------------------------------ BLAS -- */

/* OpenBLAS runs single-threaded: the pool does the threading (large GEMMs
 * are split below, the conv kernels give each thread its own images), so
 * OpenBLAS's own threads never spin in sched_yield next to ours. */
static void blas_single(void) {
    static _Atomic int done;
    if (!atomic_load_explicit(&done, memory_order_acquire)) {
        openblas_set_num_threads(1);
        atomic_store_explicit(&done, 1, memory_order_release);
    }
}

/* GEMMs below this many FLOPs run on one thread (a split costs a hand-over
 * and a second packing of the shared operand: a few microseconds). */
#define SGEMM_SPLIT_FLOPS 2e6
/* Columns or rows of C per block of a split. */
#define SGEMM_BLOCK 16

/* One GEMM split over the pool by blocks of C's columns (by_cols) or rows. */
struct sgemm_job {
    int ta, tb, by_cols;   /* transposes; which dim of C is split */
    int64_t m, n, k;       /* sizes */
    float alpha, beta;     /* scales */
    const float *a, *b;    /* operands */
    int64_t lda, ldb, ldc; /* leading dims */
    float *c;              /* the result */
};

/* oneDNN's dnnl_sgemm measured 10-30 % faster than OpenBLAS 0.3.21 on one
 * core here for the shapes of tiny_gpt (M = 2048, N and K 96-512, and the
 * transposed weight gradients with K = 2048) and of the CNN im2col GEMMs, and
 * it writes C itself when beta = 0 (OpenBLAS first clears C in a pass of its
 * own); OpenBLAS stays faster below about 0.5 MFLOP (bench/sgemm.c, run with
 * and without NETC_GEMM=onednn). But dnnl_sgemm mallocs its packing buffers on
 * every call, and a training step must allocate nothing (test_cgen_fused's
 * driver loop counts the calls), so it is opt-in: NETC_GEMM=onednn. libdnnl is
 * opened at run time, so programs link as before and run where it is missing.
 * Debian's libdnnl uses OpenMP: each calling thread asks it for one thread
 * (the pool splits). */
#define SGEMM_DNNL_FLOPS 5e5

#ifdef NETC_HAVE_DNNL
typedef __typeof__(dnnl_sgemm) dnnl_sgemm_fn;
static dnnl_sgemm_fn *dnnl_sgemm_ptr;
static void (*dnnl_omp_threads)(int);
static int dnnl_there; /* set once by dnnl_open */
static pthread_once_t dnnl_once = PTHREAD_ONCE_INIT;

static void dnnl_open(void) {
    const char *want = getenv("NETC_GEMM");
    void *h = want && strcasecmp(want, "onednn") == 0 ? dlopen("libdnnl.so.2", RTLD_NOW | RTLD_LOCAL) : NULL;
    if (h) {
        dnnl_sgemm_ptr = (dnnl_sgemm_fn *)dlsym(h, "dnnl_sgemm");
        dnnl_omp_threads = (void (*)(int))dlsym(h, "omp_set_num_threads");
    }
    dnnl_there = dnnl_sgemm_ptr && dnnl_omp_threads;
}

/* Whether dnnl_sgemm did the GEMM. */
static int dnnl_call(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    static _Thread_local int single;
    pthread_once(&dnnl_once, dnnl_open);
    if (!dnnl_there) return 0;
    if (!single) { /* the OpenMP thread count is per calling thread */
        dnnl_omp_threads(1);
        single = 1;
    }
    return dnnl_sgemm_ptr(ta ? 'T' : 'N', tb ? 'T' : 'N', m, n, k, alpha, a, lda, b, ldb, beta, c, ldc) ==
           dnnl_success;
}
#endif

/* The runtime's own GEMM (sgemm.c) for GEMMs of this many FLOPs and up where
 * built for AVX-512, unless NETC_GEMM names a library (openblas, onednn). */
#define SGEMM_OWN_FLOPS 5e5

static int own_wanted(void) {
    static _Atomic int want = -1;
    int w = atomic_load_explicit(&want, memory_order_relaxed);
    if (w < 0) {
        const char *e = getenv("NETC_GEMM");
        w = !e || !*e || strcasecmp(e, "own") == 0;
        atomic_store_explicit(&want, w, memory_order_relaxed);
    }
    return w;
}

int nrt_gemm_own_wanted(void) { return own_wanted() && nrt_sgemm_own_built(); }

/* Which GEMM library runs the large GEMMs ("oneDNN", "netc (AVX-512)" or "OpenBLAS"). */
const char *nrt_gemm_library(void) {
#ifdef NETC_HAVE_DNNL
    pthread_once(&dnnl_once, dnnl_open);
    if (dnnl_there) return "oneDNN";
#endif
    if (own_wanted() && nrt_sgemm_own_built()) return "netc (AVX-512)";
    return "OpenBLAS";
}

static void sgemm_call(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                       int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    const double flops = 2.0 * (double)m * (double)n * (double)k;
    if (flops >= SGEMM_OWN_FLOPS && own_wanted() &&
        nrt_sgemm_own(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
        return;
#ifdef NETC_HAVE_DNNL
    if (flops >= SGEMM_DNNL_FLOPS && dnnl_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return;
#endif
    if (beta == 0.0f) { /* OpenBLAS's beta = 0 pass (sgemm_beta) is slow on strided C: clear it here */
        for (int64_t i = 0; i < m; i++) memset(c + i * ldc, 0, sizeof *c * (size_t)n);
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, (blasint)m,
                (blasint)n, (blasint)k, alpha, a, (blasint)lda, b, (blasint)ldb, beta, c, (blasint)ldc);
}

static void sgemm_blocks(void *arg, int64_t lo, int64_t hi) {
    const struct sgemm_job *g = arg;
    int64_t extent = g->by_cols ? g->n : g->m, i0 = lo * SGEMM_BLOCK;
    int64_t i1 = hi * SGEMM_BLOCK < extent ? hi * SGEMM_BLOCK : extent;
    if (g->by_cols) /* columns i0..i1 of op(B) and C */
        sgemm_call(g->ta, g->tb, g->m, i1 - i0, g->k, g->alpha, g->a, g->lda,
                   g->b + (g->tb ? i0 * g->ldb : i0), g->ldb, g->beta, g->c + i0, g->ldc);
    else /* rows i0..i1 of op(A) and C */
        sgemm_call(g->ta, g->tb, i1 - i0, g->n, g->k, g->alpha, g->a + (g->ta ? i0 : i0 * g->lda), g->lda,
                   g->b, g->ldb, g->beta, g->c + i0 * g->ldc, g->ldc);
}

void nrt_sgemm(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
               const float *b, int64_t ldb, float beta, float *c, int64_t ldc) {
    if (m <= 0 || n <= 0) return;
    if (k <= 0) {
        for (int64_t i = 0; i < m; i++)
            for (int64_t j = 0; j < n; j++) c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j];
        return;
    }
    if (nrt_sgemm_skinny(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)) return; /* gemv.c */
    if (m == 1) { /* one row (batch 1): gemv.c, no packing of B */
        nrt_sgemv_row(ta, tb, n, k, alpha, a, lda, b, ldb, beta, c);
        return;
    }
    if (m <= NRT_SGEMM_ROWS_MAX && nrt_sgemm_rows(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc))
        return;
    blas_single();
    if (2.0 * (double)m * (double)n * (double)k < SGEMM_SPLIT_FLOPS || nrt_threads_get() < 2 ||
        nrt_threads_inside()) {
        sgemm_call(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
        return;
    }
    /* Split the larger dim of C, so the operand both halves pack is the smaller. */
    struct sgemm_job g = {ta, tb, n >= m, m, n, k, alpha, beta, a, b, lda, ldb, ldc, c};
    int64_t extent = g.by_cols ? n : m;
    nrt_parallel_for((extent + SGEMM_BLOCK - 1) / SGEMM_BLOCK, 1, sgemm_blocks, &g);
}

const char *nrt_blas_core(void) { return openblas_get_corename(); }

void nrt_blas_threads(int threads) {
    if (threads > 0) nrt_threads_set(threads);
    blas_single();
}

/* Whether OpenBLAS's core name is one of names (NULL-terminated), any case. */
static int core_is(const char *core, const char *const *names) {
    for (; *names; names++)
        if (strcasecmp(core, *names) == 0) return 1;
    return 0;
}

/* OpenBLAS picks its kernels in a library constructor, before main, from the
 * CPU or OPENBLAS_CORETYPE; Debian's 0.3.21 does not recognise some recent CPUs
 * and falls back to SSE3 kernels. Setting the variable in main is too late (it
 * is read once, measured: the core stays the same), so when the CPU has AVX-512
 * (AVX2) but OpenBLAS chose a core without it, the variable is set and the
 * program started again, once (NETC_BLAS_SETUP marks the second run). The
 * thread count needs no restart: nrt_blas_threads sets it at any time. */
void nrt_blas_setup(int argc, char **argv, int threads) {
    (void)argc;
    (void)threads;
    if (getenv("NETC_BLAS_SETUP") || getenv("OPENBLAS_CORETYPE")) return;
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
    if (!want) return;
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

int64_t nrt_conv_scratch(const struct nrt_conv *c) { return nrt_conv_scratch_floats(c); }

/* The output columns ow in [*lo, *hi) whose tap j reads inside a row. */
static void tap_range(const struct nrt_conv *c, int64_t j, int64_t *lo, int64_t *hi) {
    int64_t off = j * c->d[1] - c->p[1];
    *lo = 0, *hi = c->wo;
    while (*lo < *hi && *lo * c->s[1] + off < 0) ++*lo;
    while (*hi > *lo && (*hi - 1) * c->s[1] + off >= c->w) --*hi;
}

/* col[(ch*kh + i)*kw + j][oh*wo + ow] = x[ch, ih, iw] (0 outside), for one
 * image and one group's cig channels starting at x; rows are ld floats apart. */
static void im2col(const struct nrt_conv *c, const float *x, int64_t cig, float *col, int64_t ld) {
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
                        for (int64_t ow = 0; ow < c->wo; ow++) r[ow] = 0;
                        continue;
                    }
                    /* Rows are short (tens of floats): loops, not memcpy calls. */
                    const float *line = plane + ih * c->w;
                    for (int64_t ow = 0; ow < lo; ow++) r[ow] = 0;
                    if (c->s[1] == 1)
                        for (int64_t ow = lo; ow < hi; ow++) r[ow] = line[ow + off];
                    else
                        for (int64_t ow = lo; ow < hi; ow++) r[ow] = line[ow * c->s[1] + off];
                    for (int64_t ow = hi; ow < c->wo; ow++) r[ow] = 0;
                }
            }
}

/* The adjoint of im2col: x[ch, ih, iw] += col[...] (x is not cleared). */
static void col2im(const struct nrt_conv *c, const float *col, int64_t ld, int64_t cig, float *x) {
    for (int64_t ch = 0; ch < cig; ch++)
        for (int64_t i = 0; i < c->kh; i++)
            for (int64_t j = 0; j < c->kw; j++) {
                const float *row = col + ((ch * c->kh + i) * c->kw + j) * ld;
                float *plane = x + ch * c->h * c->w;
                int64_t off = j * c->d[1] - c->p[1], lo, hi;
                tap_range(c, j, &lo, &hi);
                for (int64_t oh = 0; oh < c->ho; oh++) {
                    int64_t ih = oh * c->s[0] - c->p[0] + i * c->d[0];
                    if (ih < 0 || ih >= c->h) continue;
                    float *line = plane + ih * c->w;
                    const float *r = row + oh * c->wo;
                    if (c->s[1] == 1) {
                        for (int64_t ow = lo; ow < hi; ow++) line[ow + off] += r[ow];
                    } else {
                        for (int64_t ow = lo; ow < hi; ow++) line[ow * c->s[1] + off] += r[ow];
                    }
                }
            }
}

/* t[o][b*hw + k] = a[b, g*cog + o, k] for the nb images of a ([nb, co, hw]). */
static void to_channel_major(const struct nrt_conv *c, int64_t nb, int64_t g, const float *a, float *t) {
    int64_t cog = c->co / c->g, hw = c->ho * c->wo;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < cog; o++)
            memcpy(t + (o * nb + b) * hw, a + (b * c->co + g * cog + o) * hw, sizeof *t * (size_t)hw);
}

/* The inverse of to_channel_major. */
static void from_channel_major(const struct nrt_conv *c, int64_t nb, int64_t g, const float *t, float *a) {
    int64_t cog = c->co / c->g, hw = c->ho * c->wo;
    for (int64_t b = 0; b < nb; b++)
        for (int64_t o = 0; o < cog; o++)
            memcpy(a + (b * c->co + g * cog + o) * hw, t + (o * nb + b) * hw, sizeof *t * (size_t)hw);
}

/* ------------------------------------------------- direct conv (AVX-512) -- */

/* With AVX-512, convolutions with many taps (DIRECT_MIN_TAPS: the second
 * layer of a CNN, not a first layer on one channel) and 16k output channels
 * skip im2col and OpenBLAS. A micro-kernel keeps 24 vectors of accumulators
 * in registers -- V vectors of 16 channels by 24/V output pixels (dconv_tile)
 * or by 24/V taps (dw_tile) -- and per step loads V vectors of channels and
 * broadcasts one input value per pixel or tap. Weights are packed [tap][co]
 * once per call; tiles are stored pixel-major and transposed into NCHW.
 * Padding copies each image into a zero-bordered plane first. The input
 * gradient (stride 1) is the same kernel on the padded dy with the weights
 * flipped and transposed. Each pool thread takes whole images. */
#if defined(__AVX512F__)
#include <immintrin.h>

#define DIRECT_MIN_TAPS 64
#define DIRECT_ACC 24 /* accumulator vectors of a tile */

/* Software prefetch spread over a kernel's tiles: the next image's operands
 * (whose first loads otherwise wait on L3: the dy transpose was 15 % of
 * mnist_cnn's second-layer weight gradient) and the current image's output
 * (fetched for writing). PF_RUNS regions per kernel call, a slice per tile. */
#define PF_RUNS 2
struct pf_run {
    const char *p;       /* the region (NULL: none) */
    int64_t n, at, step; /* its bytes, the next one to fetch, bytes per slice */
    int write;           /* fetched for writing */
};

static void pf_init(struct pf_run *r, const void *p, int64_t bytes, int64_t slices, int write) {
    r->p = p, r->n = p ? bytes : 0, r->at = 0, r->write = write;
    slices = slices > 0 ? slices : 1;
    r->step = (r->n + slices * 64 - 1) / (slices * 64) * 64;
}

static inline void pf_next(struct pf_run *r) {
    for (int k = 0; k < PF_RUNS; k++, r++)
        for (int64_t e = r->at + r->step; r->at < e && r->at < r->n; r->at += 64) {
            if (r->write)
                __builtin_prefetch(r->p + r->at, 1, 3);
            else
                __builtin_prefetch(r->p + r->at, 0, 3);
        }
}

/* One image's direct convolution: input planes [cin][hp][wp], padded. */
struct dconv {
    int64_t cin, hp, wp;            /* the (padded) input */
    int64_t cout;                   /* output channels, a multiple of 16 */
    int64_t kh, kw, s0, s1, d0, d1; /* window, stride, dilation */
    int64_t ho, wo;                 /* the output */
};

/* out[p][c0 + 16v + l] = sum over taps of wp[tap][c0 + 16v + l] * x[base[p] + tap's offset]
 * for P pixels (wp and out already offset by c0); rows of out are cout apart. */
static inline __attribute__((always_inline)) void dconv_tile(const struct dconv *g, const int V, const int P,
                                                             const float *x, const int64_t *base,
                                                             const float *wp, float *out) {
    __m512 acc[4][DIRECT_ACC];
#pragma GCC unroll 4
    for (int v = 0; v < V; v++)
#pragma GCC unroll 24
        for (int p = 0; p < P; p++) acc[v][p] = _mm512_setzero_ps();
    const float *wt = wp;
    for (int64_t ci = 0; ci < g->cin; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++, wt += g->cout) {
                const float *xt = x + (ci * g->hp + i * g->d0) * g->wp + j * g->d1;
                __m512 w[4];
#pragma GCC unroll 4
                for (int v = 0; v < V; v++) w[v] = _mm512_loadu_ps(wt + 16 * v);
#pragma GCC unroll 24
                for (int p = 0; p < P; p++) {
                    __m512 xb = _mm512_set1_ps(xt[base[p]]);
#pragma GCC unroll 4
                    for (int v = 0; v < V; v++) acc[v][p] = _mm512_fmadd_ps(w[v], xb, acc[v][p]);
                }
            }
#pragma GCC unroll 24
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) _mm512_storeu_ps(out + p * g->cout + 16 * v, acc[v][p]);
}

/* The output pixels [p0, p0 + n) of one image as input offsets, the last one
 * repeated up to DIRECT_ACC entries. */
static void dconv_bases(const struct dconv *g, int64_t p0, int64_t n, int64_t *base) {
    int64_t hw = g->ho * g->wo;
    for (int64_t k = 0; k < n; k++) {
        int64_t q = p0 + k < hw ? p0 + k : hw - 1;
        base[k] = q / g->wo * g->s0 * g->wp + q % g->wo * g->s1;
    }
}

/* y[co][p] for the output pixels [q0, q1) of one padded image x by packed
 * weights wp (q0 a multiple of DIRECT_ACC, so that tiles of every V start
 * there); tmp holds the pixel-major tiles (dconv_tmp floats, indexed by
 * pixel), turned into planes 16 pixels at a time by gathers, with bias[o]
 * added (bias NULL: none) and relu applied when asked as they are written. */
static void dconv_image(const struct dconv *g, const float *x, const float *wp, float *tmp, float *y,
                        int64_t q0, int64_t q1, const float *bias, int relu, struct pf_run *pf) {
    int64_t hw = g->ho * g->wo, base[DIRECT_ACC];
    for (int64_t c0 = 0; c0 < g->cout;) {
        int64_t left = (g->cout - c0) / 16;
        int V = left >= 4 ? 4 : left >= 2 ? 2 : 1, P = DIRECT_ACC / V;
        for (int64_t p0 = q0; p0 < q1; p0 += P) {
            pf_next(pf);
            dconv_bases(g, p0, P, base);
            float *out = tmp + p0 * g->cout + c0;
            if (V == 4)
                dconv_tile(g, 4, DIRECT_ACC / 4, x, base, wp + c0, out);
            else if (V == 2)
                dconv_tile(g, 2, DIRECT_ACC / 2, x, base, wp + c0, out);
            else
                dconv_tile(g, 1, DIRECT_ACC, x, base, wp + c0, out);
        }
        c0 += 16 * V;
    }
    const __m512i rows =
        _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                           _mm512_set1_epi32((int)g->cout));
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t o = 0; o < g->cout; o++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
        const __mmask16 tail = (__mmask16)((1u << ((q1 - q0) % 16)) - 1);
        int64_t p = q0;
        for (; p + 16 <= q1; p += 16) {
            __m512 v = _mm512_add_ps(_mm512_i32gather_ps(rows, tmp + p * g->cout + o, 4), b);
            _mm512_storeu_ps(y + o * hw + p, relu ? _mm512_max_ps(v, zero) : v);
        }
        if (p < q1) {
            __m512 v = _mm512_add_ps(_mm512_mask_i32gather_ps(zero, tail, rows, tmp + p * g->cout + o, 4), b);
            _mm512_mask_storeu_ps(y + o * hw + p, tail, relu ? _mm512_max_ps(v, zero) : v);
        }
    }
}

/* wp[t][o] = w[o][t] for cout (a multiple of 16) rows of kk taps: 16 rows at
 * a time by gathers (the scalar transpose cost a batch-1 forward ~30 us). */
static void dconv_pack(const float *w, int64_t cout, int64_t kk, float *wp) {
    const __m512i rows = _mm512_mullo_epi32(
        _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0), _mm512_set1_epi32((int)kk));
    for (int64_t o = 0; o < cout; o += 16)
        for (int64_t t = 0; t < kk; t++)
            _mm512_storeu_ps(wp + t * cout + o, _mm512_i32gather_ps(rows, w + o * kk + t, 4));
}

/* Floats of dconv_image's tmp: whole tiles of the smallest V. */
static int64_t dconv_tmp(const struct dconv *g) {
    int64_t hw = g->ho * g->wo;
    return (hw + DIRECT_ACC - 1) / DIRECT_ACC * DIRECT_ACC * g->cout;
}

/* b[c*ldb + r] = a[r*lda + c] for r < rows, c < cols: 16x16 blocks transposed
 * in registers (unpacks, then shuffles within and across 128-bit lanes), the
 * edges by masked loads and stores. For the backward kernels' changes between
 * channel-major planes and pixel-major tiles (winograd.c's too). */
void nrt_transpose16(const float *a, int64_t lda, int64_t rows, int64_t cols, float *b, int64_t ldb) {
    for (int64_t r0 = 0; r0 < rows; r0 += 16) {
        int nr = rows - r0 < 16 ? (int)(rows - r0) : 16;
        __mmask16 rm = (__mmask16)((1u << nr) - 1);
        for (int64_t c0 = 0; c0 < cols; c0 += 16) {
            int nc = cols - c0 < 16 ? (int)(cols - c0) : 16;
            __mmask16 cm = (__mmask16)((1u << nc) - 1);
            __m512 r[16], t[16];
            for (int i = 0; i < 16; i++)
                r[i] = i < nr ? _mm512_maskz_loadu_ps(cm, a + (r0 + i) * lda + c0) : _mm512_setzero_ps();
            for (int i = 0; i < 8; i++) {
                t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
                t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
            }
            for (int i = 0; i < 4; i++) {
                r[4 * i] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
                r[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
                r[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
                r[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
            }
            for (int i = 0; i < 4; i++) {
                t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
                t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xDD);
                t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
                t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xDD);
            }
            for (int i = 0; i < 4; i++) {
                r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
                r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xDD);
                r[4 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0x88);
                r[12 + i] = _mm512_shuffle_f32x4(t[4 + i], t[12 + i], 0xDD);
            }
            for (int i = 0; i < nc; i++) _mm512_mask_storeu_ps(b + (c0 + i) * ldb + r0, rm, r[i]);
        }
    }
}
/* dwt[t][c0 + 16v + l] += sum over pixels of dyt[p][c0 + 16v + l] * x[base(p) + toff[t]]
 * for T taps (dyt and dwt already offset by c0; rows cout apart). */
static inline __attribute__((always_inline)) void dw_tile(const struct dconv *g, const int V, const int T,
                                                          const float *x, const float *dyt,
                                                          const int64_t *toff, float *dwt) {
    __m512 acc[4][DIRECT_ACC];
#pragma GCC unroll 4
    for (int v = 0; v < V; v++)
#pragma GCC unroll 24
        for (int t = 0; t < T; t++) acc[v][t] = _mm512_loadu_ps(dwt + t * g->cout + 16 * v);
    for (int64_t oh = 0; oh < g->ho; oh++)
        for (int64_t ow = 0; ow < g->wo; ow++) {
            const float *xp = x + oh * g->s0 * g->wp + ow * g->s1, *d = dyt + (oh * g->wo + ow) * g->cout;
            __m512 dv[4];
#pragma GCC unroll 4
            for (int v = 0; v < V; v++) dv[v] = _mm512_loadu_ps(d + 16 * v);
#pragma GCC unroll 24
            for (int t = 0; t < T; t++) {
                __m512 xb = _mm512_set1_ps(xp[toff[t]]);
#pragma GCC unroll 4
                for (int v = 0; v < V; v++) acc[v][t] = _mm512_fmadd_ps(dv[v], xb, acc[v][t]);
            }
        }
#pragma GCC unroll 24
    for (int t = 0; t < T; t++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) _mm512_storeu_ps(dwt + t * g->cout + 16 * v, acc[v][t]);
}

/* dwt[kk][cout] += the weight gradient of one padded image x for dyt [hw][cout],
 * the rows of taps [t_lo, t_hi) (multiples of DIRECT_ACC, or t_hi = kk). dwt
 * has whole tiles of DIRECT_ACC taps (rows past kk are scratch). */
static void dw_image(const struct dconv *g, const float *x, const float *dyt, float *dwt, int64_t t_lo,
                     int64_t t_hi, struct pf_run *pf) {
    int64_t kk = g->cin * g->kh * g->kw, toff[DIRECT_ACC];
    for (int64_t c0 = 0; c0 < g->cout;) {
        int64_t left = (g->cout - c0) / 16;
        int V = left >= 4 ? 4 : left >= 2 ? 2 : 1, T = DIRECT_ACC / V;
        /* tap t = (ci, i, j), stepped without divisions (they cost a quarter
         * of a 4x4/s2 layer's tiles); taps past kk repeat the last one */
        int64_t ci = t_lo / (g->kh * g->kw), i = t_lo / g->kw % g->kh, j = t_lo % g->kw, last = 0;
        for (int64_t t0 = t_lo; t0 < t_hi; t0 += T) {
            for (int64_t k = 0; k < T; k++) {
                if (t0 + k < kk) {
                    last = (ci * g->hp + i * g->d0) * g->wp + j * g->d1;
                    if (++j == g->kw) j = 0, i++;
                    if (i == g->kh) i = 0, ci++;
                }
                toff[k] = last;
            }
            float *out = dwt + t0 * g->cout + c0;
            pf_next(pf);
            if (V == 4)
                dw_tile(g, 4, DIRECT_ACC / 4, x, dyt + c0, toff, out);
            else if (V == 2)
                dw_tile(g, 2, DIRECT_ACC / 2, x, dyt + c0, toff, out);
            else
                dw_tile(g, 1, DIRECT_ACC, x, dyt + c0, toff, out);
        }
        c0 += 16 * V;
    }
}

/* dst [ch][hp][wp] = src [ch][h][w] placed at (top, left), zeros elsewhere;
 * rows or columns that fall outside dst are dropped. */
static void pad_planes(const float *src, int64_t ch, int64_t h, int64_t w, int64_t top, int64_t left,
                       float *dst, int64_t hp, int64_t wp) {
    memset(dst, 0, sizeof *dst * (size_t)(ch * hp * wp));
    int64_t c0 = left < 0 ? -left : 0, c1 = w + left > wp ? wp - left : w;
    for (int64_t c = 0; c < ch; c++)
        for (int64_t r = 0; r < h; r++) {
            int64_t rp = r + top;
            if (rp >= 0 && rp < hp && c1 > c0)
                memcpy(dst + (c * hp + rp) * wp + left + c0, src + (c * h + r) * w + c0,
                       sizeof *dst * (size_t)(c1 - c0));
        }
}

/* Stride-1 convolutions with few taps (a first layer on one channel) use
 * the wide-row kernels instead: output positions q = oh*wp + ow over the
 * padded width wp are contiguous in the input at every tap (x[q + tap]),
 * so a tile of R channels by Q vectors of 16 positions loads Q input vectors
 * and broadcasts R weights per tap; lanes with ow >= wo are computed and
 * dropped by masked stores. The weight gradient runs the same walk with dy
 * spread to the padded width (zeros at ow >= wo) and R x T sums per tile. */
#define ROWS_R 6       /* forward: channels per tile */
#define ROWS_Q 4       /* forward: vectors of positions per tile */
#define ROWS_DR 3      /* weight gradient: channels per tile */
#define ROWS_DT 8      /* weight gradient: taps per tile */
#define ROWS_PACK 8192 /* forward: floats of packed weights (on the stack) */

/* Where the real outputs among positions qs..qs+15 of the padded-width
 * output go in y [ho][wo]: up to `n` pieces, each a masked store at an offset. */
struct rows_dst {
    int n;             /* pieces */
    int64_t off[18];   /* y offset of lane 0 for piece i */
    uint32_t mask[18]; /* its lanes (not __mmask16: GCC 12 at -O1/-O3 drops the
                          stores when the masks sit in a __mmask16 array) */
};

static void rows_dst_init(const struct dconv *g, int64_t qs, struct rows_dst *d) {
    d->n = 0;
    for (int64_t r = qs / g->wp; r < g->ho && r * g->wp < qs + 16; r++) {
        int64_t l0 = r * g->wp - qs, l1 = l0 + g->wo;
        l0 = l0 < 0 ? 0 : l0, l1 = l1 > 16 ? 16 : l1;
        if (l1 > l0) {
            d->mask[d->n] = ((1u << l1) - 1) & ~((1u << l0) - 1);
            d->off[d->n++] = r * g->wo + qs - r * g->wp;
        }
    }
}

/* One forward tile: R channels (weights wt[tap][R], packed) by Q vectors of
 * positions q0.. of one padded image x, written to the y planes yr[0..nr)
 * through dst[0..Q) (rows_dst of each vector) with the epilogue: bias bv[r]
 * added, then relu when asked; `two`: every dst has 2 pieces. */
static inline __attribute__((always_inline)) void rows_tile(const struct dconv *g, const int R, const int Q,
                                                            const float *x, const float *wt, float *const *yr,
                                                            int nr, int64_t q0, const struct rows_dst *dst,
                                                            const __m512 *bv, int relu, const int two) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int r = 0; r < R; r++)
#pragma GCC unroll 4
        for (int u = 0; u < Q; u++) acc[r][u] = bv[r];
    for (int64_t ci = 0; ci < g->cin; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++, wt += R) {
                const float *xt = x + (ci * g->hp + i * g->d0) * g->wp + j * g->d1 + q0;
                __m512 xv[4];
#pragma GCC unroll 4
                for (int u = 0; u < Q; u++) xv[u] = _mm512_loadu_ps(xt + 16 * u);
#pragma GCC unroll 8
                for (int r = 0; r < R; r++) {
                    __m512 wb = _mm512_set1_ps(wt[r]);
#pragma GCC unroll 4
                    for (int u = 0; u < Q; u++) acc[r][u] = _mm512_fmadd_ps(wb, xv[u], acc[r][u]);
                }
            }
    const __m512 zero = _mm512_setzero_ps();
    if (relu)
#pragma GCC unroll 8
        for (int r = 0; r < R; r++)
#pragma GCC unroll 4
            for (int u = 0; u < Q; u++) acc[r][u] = _mm512_max_ps(acc[r][u], zero);
    if (two) /* at most 2 pieces, the second one's mask 0 when unused: no branches */
#pragma GCC unroll 4
        for (int u = 0; u < Q; u++)
#pragma GCC unroll 8
            for (int r = 0; r < R; r++)
                if (r < nr) {
                    _mm512_mask_storeu_ps(yr[r] + dst[u].off[0], (__mmask16)dst[u].mask[0], acc[r][u]);
                    _mm512_mask_storeu_ps(yr[r] + dst[u].off[1], (__mmask16)dst[u].mask[1], acc[r][u]);
                }
    if (!two)
#pragma GCC unroll 4
        for (int u = 0; u < Q; u++)
            for (int r = 0; r < nr; r++)
                for (int i = 0; i < dst[u].n; i++) /* masked lanes are not touched */
                    _mm512_mask_storeu_ps(yr[r] + dst[u].off[i], (__mmask16)dst[u].mask[i], acc[r][u]);
}

/* Floats a padded image needs for the wide-row kernels: the planes plus the
 * overrun of the last tile and the last tap (kept zero). */
static int64_t rows_in_floats(const struct dconv *g) {
    return g->cin * g->hp * g->wp + 16 * ROWS_Q + g->wp * g->d0 * g->kh + g->kw * g->d1 + 16;
}

/* Positions of the padded-width output, rounded up to whole vectors. */
static int64_t rows_q(const struct dconv *g) { return (g->ho * g->wp + 15) / 16 * 16; }

static void rows_part(const struct dconv *g, const float *x, const float *wpk, float *y, int64_t oa,
                      int64_t ob, const float *bias, int relu, const int R, const int Q);

/* Channels per forward tile: 8 (by 3 vectors) when cout is a multiple of 8,
 * else ROWS_R (by ROWS_Q vectors). */
static int rows_r(const struct dconv *g) { return g->cout % 8 == 0 ? 8 : ROWS_R; }

/* Output channels [c0, c1) (c0 a multiple of rows_r) of one padded image x,
 * y = act(conv + bias) (bias NULL: none; relu: act is relu). Positions are
 * the outer loop, so that each vector's rows_dst is worked out once and its
 * input stays in L1 across the channel tiles. */
static void rows_image(const struct dconv *g, const float *x, const float *w, float *y, int64_t c0,
                       int64_t c1, const float *bias, int relu) {
    int64_t kk = g->cin * g->kh * g->kw;
    const int R = rows_r(g), Q = R == 8 ? 3 : ROWS_Q;
    c1 = c1 < g->cout ? c1 : g->cout;
    /* The weights of the tiles packed [tile][tap][R] (a partial tile repeats
     * its last channel): one pointer for a tile's broadcasts. All tiles at
     * once when they fit in ROWS_PACK floats, else one tile at a time (then
     * the outer loop, kk <= ROWS_PACK / 8 by rows_ok). */
    float wpk[ROWS_PACK];
    int all = (c1 - c0 + R - 1) / R * kk * R <= ROWS_PACK;
    for (int64_t oa = c0; oa < c1; oa += all ? c1 - c0 : R) {
        int64_t ob = all ? c1 : oa + R < c1 ? oa + R : c1;
        for (int64_t o0 = oa; o0 < ob; o0 += R)
            for (int r = 0; r < R; r++) {
                int64_t o = o0 + r < c1 ? o0 + r : c1 - 1;
                for (int64_t t = 0; t < kk; t++) wpk[((o0 - oa) * kk + t * R) + r] = w[o * kk + t];
            }
        rows_part(g, x, wpk, y, oa, ob, bias, relu, R, Q);
    }
}

/* rows_image's channels [oa, ob) with their packed weights wpk. */
static void rows_part(const struct dconv *g, const float *x, const float *wpk, float *y, int64_t oa,
                      int64_t ob, const float *bias, int relu, const int R, const int Q) {
    int64_t kk = g->cin * g->kh * g->kw, hw = g->ho * g->wo, nq = g->ho * g->wp, c0 = oa, c1 = ob;
    for (int64_t q0 = 0; q0 < nq; q0 += 16 * Q) {
        struct rows_dst dst[ROWS_Q];
        for (int u = 0; u < Q; u++) {
            rows_dst_init(g, q0 + 16 * u, &dst[u]);
            for (int i = dst[u].n; i < 2; i++) /* empty pieces for the branch-free stores */
                dst[u].off[i] = 0, dst[u].mask[i] = 0;
        }
        int two = g->wp >= 16; /* 16 positions meet at most 2 rows */
        for (int64_t o0 = c0; o0 < c1; o0 += R) {
            const float *wt = wpk + (o0 - c0) * kk;
            float *yr[8];
            __m512 bv[8];
            int nr = c1 - o0 < R ? (int)(c1 - o0) : R;
            for (int r = 0; r < R; r++) {
                int64_t o = o0 + (r < nr ? r : nr - 1);
                yr[r] = y + o * hw;
                bv[r] = _mm512_set1_ps(bias ? bias[o] : 0.0f);
            }
            if (R == 8 && two)
                rows_tile(g, 8, 3, x, wt, yr, nr, q0, dst, bv, relu, 1);
            else if (R == 8)
                rows_tile(g, 8, 3, x, wt, yr, nr, q0, dst, bv, relu, 0);
            else if (two)
                rows_tile(g, ROWS_R, ROWS_Q, x, wt, yr, nr, q0, dst, bv, relu, 1);
            else
                rows_tile(g, ROWS_R, ROWS_Q, x, wt, yr, nr, q0, dst, bv, relu, 0);
        }
    }
}

/* With few taps (COLS_MAX_TAPS: a first layer on 1-3 channels) and 8k output
 * channels, the forward runs on the image's columns instead: col[t][p] for
 * output pixels p = oh*wo + ow (im2col from the padded planes, into L1), so
 * the R x Q tiles of rows_tile store whole vectors of y's planes, with no
 * per-row pieces (whose masked stores and branches were 60 % of
 * mnist_cnn's first layer). */
#define COLS_MAX_TAPS 32

/* Output pixels of the columns, rounded up to whole tiles of ROWS_R_COLS vectors. */
#define COLS_Q 3
static int64_t cols_ld(const struct dconv *g) {
    return (g->ho * g->wo + 16 * COLS_Q - 1) / (16 * COLS_Q) * (16 * COLS_Q);
}

/* Whether the column kernels take this wide-row forward. */
static int cols_ok(const struct dconv *g) {
    return g->cin * g->kh * g->kw <= COLS_MAX_TAPS && g->cout % 8 == 0;
}

/* col[t][oh*wo + ow] = x[ci][oh + i*d0][ow + j*d1] for tap t = (ci, i, j) of
 * the padded planes x; the pixels past ho*wo up to cols_ld are zeros. */
static void cols_fill(const struct dconv *g, const float *x, float *col) {
    int64_t ld = cols_ld(g), hw = g->ho * g->wo, wo = g->wo, full = wo / 16 * 16;
    __mmask16 tail = (__mmask16)((1u << (wo - full)) - 1);
    for (int64_t ci = 0, t = 0; ci < g->cin; ci++)
        for (int64_t i = 0; i < g->kh; i++)
            for (int64_t j = 0; j < g->kw; j++, t++) {
                float *dst = col + t * ld;
                for (int64_t oh = 0; oh < g->ho; oh++) {
                    const float *src = x + (ci * g->hp + oh + i * g->d0) * g->wp + j * g->d1;
                    float *d = dst + oh * wo;
                    for (int64_t k = 0; k < full; k += 16) _mm512_storeu_ps(d + k, _mm512_loadu_ps(src + k));
                    if (tail) _mm512_mask_storeu_ps(d + full, tail, _mm512_maskz_loadu_ps(tail, src + full));
                }
                for (int64_t p = hw; p < ld; p++) dst[p] = 0;
            }
}

/* 8 channels (weights wt[tap][8]) by COLS_Q vectors of pixels of the columns
 * xc (ld apart per tap), y = act(conv + bias) written to y's 8 planes from
 * yp (hw apart); `part`: the vectors' masks m[] (the last tile), else whole
 * vectors. Pointers step by adds (an array of plane pointers spilled). */
static inline __attribute__((always_inline)) void cols_tile(int64_t kk, int64_t ld, const float *xc,
                                                            const float *wt, float *yp, int64_t hw,
                                                            const float *bias, int relu, const int part,
                                                            const __mmask16 *m) {
    __m512 acc[8][COLS_Q];
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++)
#pragma GCC unroll 3
        for (int u = 0; u < COLS_Q; u++) acc[r][u] = bias ? _mm512_set1_ps(bias[r]) : _mm512_setzero_ps();
    for (int64_t t = 0; t < kk; t++, wt += 8, xc += ld) {
        __m512 xv[COLS_Q];
#pragma GCC unroll 3
        for (int u = 0; u < COLS_Q; u++) xv[u] = _mm512_loadu_ps(xc + 16 * u);
#pragma GCC unroll 8
        for (int r = 0; r < 8; r++) {
            __m512 wb = _mm512_set1_ps(wt[r]);
#pragma GCC unroll 3
            for (int u = 0; u < COLS_Q; u++) acc[r][u] = _mm512_fmadd_ps(wb, xv[u], acc[r][u]);
        }
    }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 8
    for (int r = 0; r < 8; r++, yp += hw)
#pragma GCC unroll 3
        for (int u = 0; u < COLS_Q; u++) {
            __m512 v = relu ? _mm512_max_ps(acc[r][u], zero) : acc[r][u];
            if (part)
                _mm512_mask_storeu_ps(yp + 16 * u, m[u], v);
            else
                _mm512_storeu_ps(yp + 16 * u, v);
        }
}

/* Output channels [c0, c1) (multiples of 8) of one padded image x by its
 * columns col (cols_fill'ed by the caller), y = act(conv + bias). */
static void cols_image(const struct dconv *g, const float *col, const float *w, float *y, int64_t c0,
                       int64_t c1, const float *bias, int relu, struct pf_run *pf) {
    int64_t kk = g->cin * g->kh * g->kw, hw = g->ho * g->wo, ld = cols_ld(g);
    c1 = c1 < g->cout ? c1 : g->cout;
    float wpk[8 * COLS_MAX_TAPS * 8]; /* one group of 8 tiles at a time */
    for (int64_t oa = c0; oa < c1; oa += 64) {
        int64_t ob = oa + 64 < c1 ? oa + 64 : c1;
        for (int64_t o = oa; o < ob; o++)
            for (int64_t t = 0; t < kk; t++)
                wpk[(o - oa) / 8 * kk * 8 + t * 8 + (o - oa) % 8] = w[o * kk + t];
        for (int64_t q0 = 0; q0 < hw; q0 += 16 * COLS_Q) {
            int part = q0 + 16 * COLS_Q > hw;
            __mmask16 m[COLS_Q];
            for (int u = 0; u < COLS_Q; u++) {
                int64_t n = hw - q0 - 16 * u;
                m[u] = (__mmask16)(n >= 16 ? 0xffff : n > 0 ? (1u << n) - 1 : 0);
            }
            for (int64_t o0 = oa; o0 < ob; o0 += 8) {
                const float *wt = wpk + (o0 - oa) * kk, *bo = bias ? bias + o0 : NULL;
                pf_next(pf);
                float *yp = y + o0 * hw + q0;
                if (part)
                    cols_tile(kk, ld, col + q0, wt, yp, hw, bo, relu, 1, m);
                else
                    cols_tile(kk, ld, col + q0, wt, yp, hw, bo, relu, 0, m);
            }
        }
    }
}

/* One weight-gradient tile: R channels (dy rows dr[]) by T taps (input
 * pointers xt[]) summed over the padded-width positions, the 16 lane sums
 * added to part[(o0 + r) * kk + t0 + k][16]. */
static inline __attribute__((always_inline)) void rows_dw_tile(const struct dconv *g, const int R,
                                                               const int T, const float *const *dr,
                                                               const float *const *xt, int nr, int nt,
                                                               float *part, int64_t kk) {
    __m512 acc[3][9];
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 9
        for (int k = 0; k < T; k++) acc[r][k] = _mm512_setzero_ps();
    for (int64_t q = 0, nq = rows_q(g); q < nq; q += 16) {
        __m512 d[3];
#pragma GCC unroll 3
        for (int r = 0; r < R; r++) d[r] = _mm512_loadu_ps(dr[r] + q);
#pragma GCC unroll 9
        for (int k = 0; k < T; k++) {
            __m512 xv = _mm512_loadu_ps(xt[k] + q);
            /* one load for the R products: GCC otherwise folds it into each
             * FMA, loading (mostly across cache lines) R times */
            __asm__("" : "+v"(xv));
#pragma GCC unroll 3
            for (int r = 0; r < R; r++) acc[r][k] = _mm512_fmadd_ps(d[r], xv, acc[r][k]);
        }
    }
    /* Constant indices only: an acc[r][k] indexed at run time makes GCC keep
     * every sum in memory, stored after each FMA. */
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 9
        for (int k = 0; k < T; k++)
            if (r < nr && k < nt) {
                float *v = part + ((int64_t)r * kk + k) * 16;
                _mm512_storeu_ps(v, _mm512_add_ps(_mm512_loadu_ps(v), acc[r][k]));
            }
}

/* The weight gradient of one padded image x: part[o][t][16] += lane sums over
 * positions of dyw[o][q] * x[q + tap t], dyw being dy at the padded width.
 * Tiles are 3 channels x 9 taps for 3x3 windows, else 3 x 8. */
static void rows_dw_image(const struct dconv *g, const float *x, const float *dyw, float *part) {
    int64_t kk = g->cin * g->kh * g->kw, nq = rows_q(g);
    int R = 3, T = kk % 9 == 0 ? 9 : 8;
    for (int64_t o0 = 0; o0 < g->cout; o0 += R) {
        int nr = g->cout - o0 < R ? (int)(g->cout - o0) : R;
        const float *dr[3];
        for (int r = 0; r < R; r++) dr[r] = dyw + (o0 + (r < nr ? r : nr - 1)) * nq;
        for (int64_t t0 = 0; t0 < kk; t0 += T) {
            int nt = kk - t0 < T ? (int)(kk - t0) : T;
            const float *xt[9];
            for (int k = 0; k < T; k++) {
                int64_t t = t0 + (k < nt ? k : nt - 1);
                int64_t ci = t / (g->kh * g->kw), i = t / g->kw % g->kh, j = t % g->kw;
                xt[k] = x + (ci * g->hp + i * g->d0) * g->wp + j * g->d1;
            }
            float *pt = part + (o0 * kk + t0) * 16;
            if (T == 9)
                rows_dw_tile(g, 3, 9, dr, xt, nr, nt, pt, kk);
            else
                rows_dw_tile(g, 3, 8, dr, xt, nr, nt, pt, kk);
        }
    }
}

/* The weight gradient by columns (cols_ok's layers): part[o][t][16] += lane
 * sums over the pixels of dy[o][p] * col[t][p], dy's planes read as they are
 * (no spread to the padded width) and the columns' rows whole tiles apart.
 * The whole vectors run in a loop of their own, the last partial one (dy's
 * masked lanes read as zeros) after it. */
static inline __attribute__((always_inline)) void cols_dw_step(const int R, const int T, __m512 (*acc)[9],
                                                               const float *const *dr, const float *const *xk,
                                                               int64_t q, __mmask16 m) {
    __m512 d[3];
#pragma GCC unroll 3
    for (int r = 0; r < R; r++) d[r] = _mm512_maskz_loadu_ps(m, dr[r] + q);
#pragma GCC unroll 9
    for (int k = 0; k < T; k++) {
        __m512 xv = _mm512_loadu_ps(xk[k] + q);
        __asm__("" : "+v"(xv)); /* one load for the R products (see rows_dw_tile) */
#pragma GCC unroll 3
        for (int r = 0; r < R; r++) acc[r][k] = _mm512_fmadd_ps(d[r], xv, acc[r][k]);
    }
}

static inline __attribute__((always_inline)) void cols_dw_tile(const int R, const int T, int64_t hw,
                                                               int64_t ld, const float *const *dr,
                                                               const float *xc, int nr, int nt, float *part,
                                                               int64_t kk) {
    __m512 acc[3][9];
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 9
        for (int k = 0; k < T; k++) acc[r][k] = _mm512_setzero_ps();
    int64_t full = hw / 16 * 16;
    const float *xk[9];
#pragma GCC unroll 9
    for (int k = 0; k < T; k++) xk[k] = xc + (k < nt ? k : nt - 1) * ld;
    for (int64_t q = 0; q < full; q += 16) cols_dw_step(R, T, acc, dr, xk, q, (__mmask16)0xffff);
    if (hw > full) cols_dw_step(R, T, acc, dr, xk, full, (__mmask16)((1u << (hw - full)) - 1));
        /* Constant indices only: an acc[r][k] indexed at run time makes GCC keep
         * every sum in memory, stored after each FMA. */
#pragma GCC unroll 3
    for (int r = 0; r < R; r++)
#pragma GCC unroll 9
        for (int k = 0; k < T; k++)
            if (r < nr && k < nt) {
                float *v = part + ((int64_t)r * kk + k) * 16;
                _mm512_storeu_ps(v, _mm512_add_ps(_mm512_loadu_ps(v), acc[r][k]));
            }
}

/* One image's weight gradient from its columns col and dy [cout][hw]. */
static void cols_dw_image(const struct dconv *g, const float *col, const float *dy, float *part,
                          struct pf_run *pf) {
    int64_t kk = g->cin * g->kh * g->kw, hw = g->ho * g->wo, ld = cols_ld(g);
    int R = 3, T = kk % 9 == 0 ? 9 : 8;
    for (int64_t o0 = 0; o0 < g->cout; o0 += R) {
        int nr = g->cout - o0 < R ? (int)(g->cout - o0) : R;
        const float *dr[3];
        for (int r = 0; r < R; r++) dr[r] = dy + (o0 + (r < nr ? r : nr - 1)) * hw;
        for (int64_t t0 = 0; t0 < kk; t0 += T) {
            int nt = kk - t0 < T ? (int)(kk - t0) : T;
            float *pt = part + (o0 * kk + t0) * 16;
            pf_next(pf);
            if (T == 9)
                cols_dw_tile(3, 9, hw, ld, dr, col + t0 * ld, nr, nt, pt, kk);
            else
                cols_dw_tile(3, 8, hw, ld, dr, col + t0 * ld, nr, nt, pt, kk);
        }
    }
}

/* Floats in front of the weight gradient's partials in a task's work: dy at
 * the padded width, or the columns. */
static int64_t dw4_front(const struct dconv *g, int cols) {
    return cols ? (g->cin * g->kh * g->kw * cols_ld(g) + 15) / 16 * 16 : g->cout * rows_q(g);
}

/* dy [cout][ho][wo] spread to dyw [cout][nq] at the padded width, zeros
 * elsewhere: each row with its zero tail (wp - wo <= 16 floats when wp < wo +
 * 16, as for 3x3 windows) by masked vector moves, not memset and memcpy calls
 * (which took 40 % of mnist_cnn's first-layer weight gradient). */
static void rows_spread(const struct dconv *g, const float *dy, float *dyw) {
    int64_t nq = rows_q(g), wo = g->wo, wp = g->wp;
    if (wp - wo > 16) {
        memset(dyw, 0, sizeof *dyw * (size_t)(g->cout * nq));
        for (int64_t o = 0; o < g->cout; o++)
            for (int64_t r = 0; r < g->ho; r++)
                memcpy(dyw + o * nq + r * wp, dy + (o * g->ho + r) * wo, sizeof *dyw * (size_t)wo);
        return;
    }
    int64_t full = wo / 16 * 16, rest = wo - full, tail = wp - full; /* rest < 16, tail <= 31 */
    __mmask16 ld = (__mmask16)((1u << rest) - 1);
    __mmask16 st0 = (__mmask16)(tail >= 16 ? 0xffffu : (1u << tail) - 1);
    __mmask16 st1 = (__mmask16)(tail > 16 ? (1u << (tail - 16)) - 1 : 0);
    for (int64_t o = 0; o < g->cout; o++) {
        const float *src = dy + o * g->ho * wo;
        float *dst = dyw + o * nq;
        for (int64_t r = 0; r < g->ho; r++, src += wo, dst += wp) {
            for (int64_t k = 0; k < full; k += 16) _mm512_storeu_ps(dst + k, _mm512_loadu_ps(src + k));
            _mm512_mask_storeu_ps(dst + full, st0, _mm512_maskz_loadu_ps(ld, src + full));
            if (st1) _mm512_mask_storeu_ps(dst + full + 16, st1, _mm512_setzero_ps());
        }
        for (int64_t q = g->ho * wp; q < nq; q++) dst[q - g->ho * wp] = 0;
    }
}

/* A direct conv call: the per-image problem, the scratch split and the tensors. */
struct direct_job {
    const struct nrt_conv *c; /* the layer (n: the batch) */
    int kind;                 /* 0 forward, 1 input gradient, 2 weight gradient,
                                 3 forward and 4 weight gradient by wide rows */
    struct dconv g;           /* one image's problem */
    int64_t src_h, src_w;     /* the unpadded planes of `in` */
    int64_t top, left;        /* where they land in the padded ones */
    int pad;                  /* whether images are copied into padded planes */
    const float *in;          /* forward and dw: x; dx: dy */
    const float *dy;          /* dw: dy */
    const float *w;           /* wide-row forward: the weights as they are */
    const float *bias;        /* forward: bias [cout] added as y is written (NULL: none) */
    int relu;                 /* forward: relu applied as y is written */
    float *out;               /* forward: y; dx: dx; dw: dw */
    float *wp;                /* packed weights (forward, dx) */
    float *scratch;           /* task i's part starts at scratch + i*region */
    int64_t padf;             /* floats of a padded image at the start of a part */
    int64_t region;           /* floats per task */
    int64_t tasks;            /* image ranges, or (split > 1) parts of images */
    int64_t split;            /* forward, batch below the threads: parts per image
                                 (pixel ranges; wide rows: channel ranges), else 1 */
    int tapsplit;             /* dw: tasks take tap ranges of every image into one
                                 dwt at wp (a partial per task did not fit) */
    int cols;                 /* kinds 3 and 4: by columns (cols_ok; NETC_CONV_NOCOLS unset) */
    int nocols;               /* never by columns (the phase images' tasks use the rows layout) */
};

/* The weight-gradient tiles' taps rounded up to whole tiles. */
static int64_t dw_rows(const struct dconv *g) {
    return (g->cin * g->kh * g->kw + DIRECT_ACC - 1) / DIRECT_ACC * DIRECT_ACC;
}

/* Splits the scratch: packed weights (wfloats), then per task a padded image
 * and its work floats. Returns 0 when that does not fit in the conv's scratch. */
static int direct_plan(struct direct_job *j, float *scratch, int64_t wfloats) {
    const struct nrt_conv *c = j->c;
    int64_t hw = j->g.ho * j->g.wo;
    int64_t kk = j->g.cin * j->g.kh * j->g.kw;
    j->cols = j->kind >= 3 && !j->nocols && cols_ok(&j->g) && !getenv("NETC_CONV_NOCOLS");
    int64_t work = j->kind == 2   ? hw * j->g.cout + dw_rows(&j->g) * j->g.cout
                   : j->kind == 3 ? (j->cols ? j->g.cin * j->g.kh * j->g.kw * cols_ld(&j->g) : 0)
                   : j->kind == 4 ? dw4_front(&j->g, j->cols) + j->g.cout * kk * 16
                                  : dconv_tmp(&j->g);
    j->pad = j->kind >= 3 || j->g.hp != j->src_h || j->g.wp != j->src_w || j->top != 0 || j->left != 0;
    j->padf = !j->pad ? 0 : (j->kind >= 3 ? rows_in_floats(&j->g) : j->g.cin * j->g.hp * j->g.wp) + 15;
    j->padf = j->padf / 16 * 16;
    j->tasks = nrt_threads_get() < c->n ? nrt_threads_get() : c->n;
    j->split = 1;
    if ((j->kind == 0 || j->kind == 3) && c->n > 0 && nrt_threads_get() >= 2 * c->n) {
        j->split = nrt_threads_get() / c->n; /* batch 1 on every core */
        j->tasks = c->n * j->split;
    }
    wfloats = (wfloats + 15) / 16 * 16;
    j->region = j->padf + (work + 15) / 16 * 16;
    if (j->kind == 2 && j->tasks > 1 && wfloats + j->tasks * j->region > nrt_conv_scratch(c)) {
        /* Each task pads and transposes every image, for its taps only. */
        j->tapsplit = 1;
        wfloats = dw_rows(&j->g) * j->g.cout;
        j->region = j->padf + (hw * j->g.cout + 15) / 16 * 16;
    }
    j->wp = scratch;
    j->scratch = scratch + wfloats;
    return c->n > 0 && wfloats + j->tasks * j->region <= nrt_conv_scratch(c);
}

static void direct_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct direct_job *j = arg;
    const struct dconv *g = &j->g;
    int64_t n = j->c->n, hw = g->ho * g->wo, in_plane = g->cin * j->src_h * j->src_w;
    for (int64_t i = lo; i < hi; i++) {
        float *part = j->scratch + i * j->region, *work = part + j->padf;
        float *dyt = work, *dwt = work + hw * g->cout, *dyw = work, *part4 = work + dw4_front(g, j->cols);
        int64_t t_lo = 0, t_hi = g->cin * g->kh * g->kw, u0 = 0, u1 = n * j->split;
        if (j->tapsplit) { /* tiles of DIRECT_ACC taps i/tasks.., all images */
            int64_t tiles = dw_rows(g) / DIRECT_ACC;
            t_lo = tiles * i / j->tasks * DIRECT_ACC, t_hi = tiles * (i + 1) / j->tasks * DIRECT_ACC;
            dwt = j->wp + t_lo * g->cout;
            memset(dwt, 0, sizeof *dwt * (size_t)((t_hi - t_lo) * g->cout));
            dwt = j->wp;
        } else {
            u0 = n * j->split * i / j->tasks, u1 = n * j->split * (i + 1) / j->tasks;
            if (j->kind == 2) memset(dwt, 0, sizeof *dwt * (size_t)(dw_rows(g) * g->cout));
        }
        if (j->kind == 4) memset(part4, 0, sizeof *part4 * (size_t)(g->cout * g->cin * g->kh * g->kw * 16));
        if (j->kind >= 3) /* the wide-row kernels read past the planes: zeros */
            memset(part, 0, sizeof *part * (size_t)j->padf);
        int64_t sp = j->split;
        for (int64_t u = u0; u < u1; u++) {
            int64_t b = u / sp, k = u % sp;
            const float *x = j->in + b * in_plane;
            if (j->pad) {
                pad_planes(x, g->cin, j->src_h, j->src_w, j->top, j->left, part, g->hp, g->wp);
                x = part;
            }
            if (j->kind < 2) { /* part k of sp: whole DIRECT_ACC blocks of pixels */
                int64_t blocks = (hw + DIRECT_ACC - 1) / DIRECT_ACC;
                int64_t q0 = blocks * k / sp * DIRECT_ACC, q1 = blocks * (k + 1) / sp * DIRECT_ACC;
                /* the next image's input, this one's output (whole images) */
                struct pf_run pf[PF_RUNS];
                int64_t tiles = (q1 - q0 + DIRECT_ACC / 4 - 1) / (DIRECT_ACC / 4) * ((g->cout + 63) / 64);
                pf_init(&pf[0], sp == 1 && u + 1 < u1 ? j->in + (b + 1) * in_plane : NULL,
                        sizeof *x * in_plane, tiles, 0);
                pf_init(&pf[1], sp == 1 ? j->out + b * g->cout * hw : NULL, sizeof *x * g->cout * hw, tiles,
                        1);
                dconv_image(g, x, j->wp, work, j->out + b * g->cout * hw, q0, q1 < hw ? q1 : hw, j->bias,
                            j->relu, pf);
                continue;
            }
            if (j->kind == 3) { /* part k of sp: whole tiles of rows_r channels */
                int64_t R = rows_r(g), tiles = (g->cout + R - 1) / R;
                if (j->cols) { /* prefetched: this image's output (whole images) */
                    struct pf_run pf[PF_RUNS];
                    int64_t calls = (hw + 16 * COLS_Q - 1) / (16 * COLS_Q) * ((g->cout + 7) / 8);
                    pf_init(&pf[0], sp == 1 ? j->out + b * g->cout * hw : NULL, sizeof *x * g->cout * hw,
                            calls, 1);
                    pf_init(&pf[1], NULL, 0, 1, 0);
                    cols_fill(g, x, work);
                    cols_image(g, work, j->w, j->out + b * g->cout * hw, tiles * k / sp * R,
                               tiles * (k + 1) / sp * R, j->bias, j->relu, pf);
                    continue;
                }
                rows_image(g, x, j->w, j->out + b * g->cout * hw, tiles * k / sp * R,
                           tiles * (k + 1) / sp * R, j->bias, j->relu);
                continue;
            }
            if (j->kind == 4) {
                if (j->cols) { /* prefetched: the next image's dy */
                    struct pf_run pf[PF_RUNS];
                    pf_init(&pf[0], u + 1 < u1 ? j->dy + (b + 1) * g->cout * hw : NULL,
                            sizeof *x * g->cout * hw, (g->cout + 2) / 3, 0);
                    pf_init(&pf[1], NULL, 0, 1, 0);
                    cols_fill(g, x, dyw);
                    cols_dw_image(g, dyw, j->dy + b * g->cout * hw, part4, pf);
                    continue;
                }
                rows_spread(g, j->dy + b * g->cout * hw, dyw);
                rows_dw_image(g, x, dyw, part4);
                continue;
            }
            nrt_transpose16(j->dy + b * g->cout * hw, hw, g->cout, hw, dyt, g->cout);
            struct pf_run pf[PF_RUNS];
            int64_t tiles = (t_hi - t_lo + DIRECT_ACC - 1) / DIRECT_ACC * ((g->cout + 63) / 64);
            pf_init(&pf[0], u + 1 < u1 ? j->dy + (b + 1) * g->cout * hw : NULL, sizeof *dyt * g->cout * hw,
                    tiles, 0);
            pf_init(&pf[1], u + 1 < u1 ? j->in + (b + 1) * in_plane : NULL, sizeof *x * in_plane, tiles, 0);
            dw_image(g, x, dyt, dwt, t_lo, t_hi, pf);
        }
    }
}

/* dw[o][t] for taps [lo, hi): the tasks' partials [t][o] summed into task
 * 0's (rows lo..hi, contiguous), then transposed by 16x16 blocks (the scalar
 * strided stores were 6 % of the DCGAN 4x4/s2 layer's weight gradient). */
static void direct_dw_sum(void *arg, int64_t lo, int64_t hi) {
    const struct direct_job *j = arg;
    int64_t co = j->g.cout, kk = j->g.cin * j->g.kh * j->g.kw, hw = j->g.ho * j->g.wo;
    float *p0 = j->tapsplit ? j->wp : j->scratch + j->padf + hw * co;
    for (int64_t i = 1; i < (j->tapsplit ? 1 : j->tasks); i++) {
        const float *pi = p0 + i * j->region;
        for (int64_t k = lo * co; k < hi * co; k++) p0[k] += pi[k];
    }
    nrt_transpose16(p0 + lo * co, co, hi - lo, co, j->out + lo, kk);
}

/* dw[o][t] for output channels [lo, hi): the sum of the tasks' partials. */
static void rows_dw_sum(void *arg, int64_t lo, int64_t hi) {
    const struct direct_job *j = arg;
    int64_t kk = j->g.cin * j->g.kh * j->g.kw, off = j->padf + dw4_front(&j->g, j->cols);
    for (int64_t k = lo * kk; k < hi * kk; k++) {
        float s = 0;
        for (int64_t i = 0; i < j->tasks; i++)
            for (int l = 0; l < 16; l++) s += j->scratch[i * j->region + off + k * 16 + l];
        j->out[k] = s;
    }
}

/* Whether the wide-row kernels take c (forward, weight gradient): one group,
 * stride 1, and not a case for the channel-vector kernels. */
static int rows_ok(const struct nrt_conv *c) {
    return c->g == 1 && c->s[0] == 1 && c->s[1] == 1 && !getenv("NETC_CONV_IM2COL") &&
           c->ci * c->kh * c->kw <= ROWS_PACK / 8 &&
           (c->ci * c->kh * c->kw < DIRECT_MIN_TAPS || c->co % 16 != 0);
}

/* Whether the direct kernels take c: one group, 16k output channels (input
 * channels for dx), enough taps, and (dx) stride 1. */
static int direct_ok(const struct nrt_conv *c, int kind) {
    if (c->g != 1 || c->ci * c->kh * c->kw < DIRECT_MIN_TAPS || getenv("NETC_CONV_IM2COL")) return 0;
    if (kind == 1)
        return c->ci % 16 == 0 && c->co * c->kh * c->kw >= DIRECT_MIN_TAPS && c->s[0] == 1 && c->s[1] == 1;
    return c->co % 16 == 0;
}

/* The forward or weight-gradient problem of c: x padded as the layer says. */
static void direct_init(struct direct_job *j, const struct nrt_conv *c, int kind) {
    memset(j, 0, sizeof *j);
    j->c = c, j->kind = kind;
    j->src_h = c->h, j->src_w = c->w, j->top = c->p[0], j->left = c->p[1];
    j->g = (struct dconv){c->ci,
                          c->h + c->p[0] + c->p[2],
                          c->w + c->p[1] + c->p[3],
                          c->co,
                          c->kh,
                          c->kw,
                          c->s[0],
                          c->s[1],
                          c->d[0],
                          c->d[1],
                          c->ho,
                          c->wo};
}

/* y = conv(x, w), with bias [co] added (NULL: none) and relu applied when
 * asked as y is written. Returns 0 when the direct kernels do not take c. */
static int direct_conv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch,
                         const float *bias, int relu) {
    struct direct_job j;
    if (!direct_ok(c, 0)) {
        direct_init(&j, c, 3);
        if (!rows_ok(c) || !direct_plan(&j, scratch, 0)) return 0;
        j.in = x, j.w = w, j.out = y, j.bias = bias, j.relu = relu;
        nrt_parallel_for(j.tasks, 1, direct_tasks, &j);
        return 1;
    }
    direct_init(&j, c, 0);
    int64_t kk = c->ci * c->kh * c->kw;
    if (!direct_plan(&j, scratch, kk * c->co)) return 0;
    dconv_pack(w, c->co, kk, j.wp);
    j.in = x, j.out = y, j.bias = bias, j.relu = relu;
    nrt_parallel_for(j.tasks, 1, direct_tasks, &j);
    return 1;
}

/* dx = the stride-1 conv of dy, padded by dilation*(k-1) - pad on each side,
 * with the weights flipped in space and their channel dims swapped. */
static int direct_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                             float *scratch) {
    struct direct_job j;
    if (!direct_ok(c, 1)) return 0;
    memset(&j, 0, sizeof j);
    j.c = c, j.kind = 1;
    j.src_h = c->ho, j.src_w = c->wo;
    j.top = c->d[0] * (c->kh - 1) - c->p[0], j.left = c->d[1] * (c->kw - 1) - c->p[1];
    j.g = (struct dconv){c->co,
                         c->h + c->d[0] * (c->kh - 1),
                         c->w + c->d[1] * (c->kw - 1),
                         c->ci,
                         c->kh,
                         c->kw,
                         1,
                         1,
                         c->d[0],
                         c->d[1],
                         c->h,
                         c->w};
    int64_t kk = c->ci * c->kh * c->kw, area = c->kh * c->kw;
    if (!direct_plan(&j, scratch, kk * c->co)) return 0;
    /* wp[(o, i', j')][ci] = w[o][ci][kh-1-i'][kw-1-j'] */
    for (int64_t o = 0; o < c->co; o++)
        for (int64_t ci = 0; ci < c->ci; ci++)
            for (int64_t t = 0; t < area; t++)
                j.wp[(o * area + t) * c->ci + ci] = w[(o * c->ci + ci) * area + area - 1 - t];
    j.in = dy, j.out = dx;
    nrt_parallel_for(j.tasks, 1, direct_tasks, &j);
    return 1;
}

static int direct_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                              float *scratch) {
    struct direct_job j;
    if (!direct_ok(c, 2)) {
        direct_init(&j, c, 4);
        if (!rows_ok(c) || !direct_plan(&j, scratch, 0)) return 0;
        j.in = x, j.dy = dy, j.out = dw;
        nrt_parallel_for(j.tasks, 1, direct_tasks, &j);
        nrt_parallel_for(c->co, 4, rows_dw_sum, &j);
        return 1;
    }
    direct_init(&j, c, 2);
    if (!direct_plan(&j, scratch, 0)) return 0;
    j.in = x, j.dy = dy, j.out = dw;
    nrt_parallel_for(j.tasks, 1, direct_tasks, &j);
    nrt_parallel_for(c->ci * c->kh * c->kw, 64, direct_dw_sum, &j);
    return 1;
}
/* Strided convolutions with few taps (a DCGAN's first layer on one channel,
 * 4x4 at stride 2) by space-to-depth: x's s0*s1 phase images
 * P[(ch, a, b)][m][n] = x[ch][s0*m + a - pad][s1*n + b - pad] (zero outside)
 * turn the layer into a stride-1 one over ci*s0*s1 channels with a
 * ceil(kh/s0) x ceil(kw/s1) window (taps past kh or kw weigh zero), which the
 * wide-row kernels above compute (forward, weight gradient; the weights and
 * their gradient are permuted to and from the phase order). Taken only where
 * the phase window adds at most a quarter of zero taps (4x4/s2: none). */
struct s2d {
    int64_t s0, s1; /* the layer's stride */
    int64_t K0, K1; /* the phase window */
};

/* The phase-window problem of c, or 0 when these kernels do not take it. */
static int s2d_init(struct direct_job *j, struct s2d *q, const struct nrt_conv *c, int kind) {
    if (c->g != 1 || c->d[0] != 1 || c->d[1] != 1 || (c->s[0] == 1 && c->s[1] == 1) || c->n < 1 ||
        getenv("NETC_CONV_IM2COL"))
        return 0;
    q->s0 = c->s[0], q->s1 = c->s[1];
    q->K0 = (c->kh + q->s0 - 1) / q->s0, q->K1 = (c->kw + q->s1 - 1) / q->s1;
    int64_t cin = c->ci * q->s0 * q->s1, kk = cin * q->K0 * q->K1;
    if (4 * kk > 5 * c->ci * c->kh * c->kw || kk > ROWS_PACK / 8 ||
        (kk >= DIRECT_MIN_TAPS && c->co % 16 == 0))
        return 0;
    memset(j, 0, sizeof *j);
    j->c = c, j->kind = kind, j->nocols = 1;
    j->src_h = c->h, j->src_w = c->w, j->top = c->p[0], j->left = c->p[1];
    /* Planes at least 16 wide: rows_tile's stores then take the branch-free
     * 2-piece path (at 15, the DCGAN's, the general one took 30 % of the time). */
    int64_t wp = c->wo + q->K1 - 1 > 16 ? c->wo + q->K1 - 1 : 16;
    j->g = (struct dconv){cin, c->ho + q->K0 - 1, wp, c->co, q->K0, q->K1, 1, 1, 1, 1, c->ho, c->wo};
    return 1;
}

/* w's entry for phase-window tap t' of output channel o ([o][ch][a][b][i'][j']
 * order), -1 for a zero tap. */
static int64_t s2d_tap(const struct nrt_conv *c, const struct s2d *q, int64_t o, int64_t t) {
    int64_t jp = t % q->K1, ip = t / q->K1 % q->K0, b = t / (q->K1 * q->K0) % q->s1,
            a = t / (q->K1 * q->K0 * q->s1) % q->s0, ch = t / (q->K1 * q->K0 * q->s1 * q->s0);
    int64_t i = q->s0 * ip + a, jj = q->s1 * jp + b;
    return i < c->kh && jj < c->kw ? ((o * c->ci + ch) * c->kh + i) * c->kw + jj : -1;
}

/* The phase images of one image src [ci][h][w] into dst [ci*s0*s1][hp][wp]. */
static void s2d_planes(const struct direct_job *j, const struct s2d *q, const float *src, float *dst) {
    const struct dconv *g = &j->g;
    int64_t h = j->src_h, w = j->src_w;
    memset(dst, 0, sizeof *dst * (size_t)(g->cin * g->hp * g->wp));
    for (int64_t p = 0; p < g->cin; p++) {
        int64_t b = p % q->s1, a = p / q->s1 % q->s0, ch = p / (q->s1 * q->s0);
        /* columns n with 0 <= s1*n + b - left < w */
        int64_t n0 = j->left - b > 0 ? (j->left - b + q->s1 - 1) / q->s1 : 0;
        int64_t n1 = (w - 1 - b + j->left) / q->s1 + 1;
        n1 = n1 < g->wp ? n1 : g->wp;
        for (int64_t m = 0; m < g->hp; m++) {
            int64_t r = q->s0 * m + a - j->top;
            if (r < 0 || r >= h) continue;
            const float *row = src + (ch * h + r) * w + b - j->left;
            float *out = dst + (p * g->hp + m) * g->wp;
            for (int64_t n = n0; n < n1; n++) out[n] = row[q->s1 * n];
        }
    }
}

struct s2d_job {
    struct direct_job j; /* kind 3 (forward) or 4 (weight gradient) on the phase images */
    struct s2d q;
};

/* direct_tasks's wide-row kinds with the phase split in place of the padding. */
static void s2d_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct s2d_job *sj = arg;
    const struct direct_job *j = &sj->j;
    const struct dconv *g = &j->g;
    int64_t n = j->c->n, hw = g->ho * g->wo, in_plane = j->c->ci * j->src_h * j->src_w, sp = j->split;
    for (int64_t i = lo; i < hi; i++) {
        float *part = j->scratch + i * j->region, *work = part + j->padf;
        float *dyw = work, *part4 = work + g->cout * rows_q(g);
        if (j->kind == 4) memset(part4, 0, sizeof *part4 * (size_t)(g->cout * g->cin * g->kh * g->kw * 16));
        memset(part, 0, sizeof *part * (size_t)j->padf); /* the kernels read past the planes: zeros */
        for (int64_t u = n * sp * i / j->tasks, u1 = n * sp * (i + 1) / j->tasks; u < u1; u++) {
            int64_t b = u / sp, k = u % sp;
            s2d_planes(j, &sj->q, j->in + b * in_plane, part);
            if (j->kind == 3) { /* part k of sp: whole tiles of rows_r channels */
                int64_t R = rows_r(g), tiles = (g->cout + R - 1) / R;
                rows_image(g, part, j->w, j->out + b * g->cout * hw, tiles * k / sp * R,
                           tiles * (k + 1) / sp * R, j->bias, j->relu);
            } else {
                rows_spread(g, j->dy + b * g->cout * hw, dyw);
                rows_dw_image(g, part, dyw, part4);
            }
        }
    }
}

static int s2d_conv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch,
                      const float *bias, int relu) {
    struct s2d_job s;
    if (!s2d_init(&s.j, &s.q, c, 3)) return 0;
    int64_t kk = s.j.g.cin * s.j.g.kh * s.j.g.kw;
    if (!direct_plan(&s.j, scratch, c->co * kk)) return 0;
    for (int64_t o = 0; o < c->co; o++)
        for (int64_t t = 0; t < kk; t++) {
            int64_t at = s2d_tap(c, &s.q, o, t);
            s.j.wp[o * kk + t] = at < 0 ? 0.0f : w[at];
        }
    s.j.in = x, s.j.w = s.j.wp, s.j.out = y, s.j.bias = bias, s.j.relu = relu;
    nrt_parallel_for(s.j.tasks, 1, s2d_tasks, &s);
    return 1;
}

static int s2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                           float *scratch) {
    struct s2d_job s;
    if (!s2d_init(&s.j, &s.q, c, 4)) return 0;
    int64_t kk = s.j.g.cin * s.j.g.kh * s.j.g.kw;
    if (!direct_plan(&s.j, scratch, c->co * kk)) return 0;
    s.j.in = x, s.j.dy = dy, s.j.out = s.j.wp; /* the phase-order gradient, then permuted */
    nrt_parallel_for(s.j.tasks, 1, s2d_tasks, &s);
    nrt_parallel_for(c->co, 4, rows_dw_sum, &s.j);
    for (int64_t o = 0; o < c->co; o++)
        for (int64_t t = 0; t < kk; t++) {
            int64_t at = s2d_tap(c, &s.q, o, t);
            if (at >= 0) dw[at] = s.j.wp[o * kk + t];
        }
    return 1;
}

/* The input gradient of convolutions with few input channels (at stride > 1,
 * where the channel-vector kernels need 16k of them): per image the products
 * Y[t][p] = sum over o of w[o][t] dy[o][p] for every tap t = (ch, i, j) -- a
 * register tile of 8 taps by 3 vectors of dy pixels, the reduction over the
 * output channels, dy read as it lies -- then added into dx by col2im. */
#define TAPSUM_T 8
#define TAPSUM_Q 3

struct tapsum_job {
    const struct nrt_conv *c;
    const float *dy;
    float *dx;
    const float *wq; /* weights [tap tile][co][TAPSUM_T], zero past kk */
    float *scratch;  /* task i's Y at scratch + i * region */
    int64_t hwq;     /* Y's row length: dy's pixels rounded up to vectors */
    int64_t region, tasks;
};

static void tapsum_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct tapsum_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t hw = c->ho * c->wo, kk = c->ci * c->kh * c->kw, plane = c->ci * c->h * c->w;
    for (int64_t i = lo; i < hi; i++) {
        float *Y = j->scratch + i * j->region;
        for (int64_t b = c->n * i / j->tasks; b < c->n * (i + 1) / j->tasks; b++) {
            const float *dy = j->dy + b * c->co * hw;
            for (int64_t q0 = 0; q0 < hw; q0 += 16 * TAPSUM_Q) {
                __mmask16 m[TAPSUM_Q];
                for (int u = 0; u < TAPSUM_Q; u++) {
                    int64_t left = hw - q0 - 16 * u;
                    m[u] = (__mmask16)(left >= 16 ? 0xffffu : left > 0 ? (1u << left) - 1 : 0);
                }
                for (int64_t t0 = 0; t0 < kk; t0 += TAPSUM_T) {
                    const float *wt = j->wq + t0 * c->co;
                    __m512 acc[TAPSUM_T][TAPSUM_Q];
#pragma GCC unroll 8
                    for (int r = 0; r < TAPSUM_T; r++)
#pragma GCC unroll 3
                        for (int u = 0; u < TAPSUM_Q; u++) acc[r][u] = _mm512_setzero_ps();
                    const float *d = dy + q0;
                    for (int64_t o = 0; o < c->co; o++, d += hw, wt += TAPSUM_T) {
                        __m512 dv[TAPSUM_Q];
#pragma GCC unroll 3
                        for (int u = 0; u < TAPSUM_Q; u++) dv[u] = _mm512_maskz_loadu_ps(m[u], d + 16 * u);
#pragma GCC unroll 8
                        for (int r = 0; r < TAPSUM_T; r++) {
                            __m512 wb = _mm512_set1_ps(wt[r]);
#pragma GCC unroll 3
                            for (int u = 0; u < TAPSUM_Q; u++)
                                acc[r][u] = _mm512_fmadd_ps(wb, dv[u], acc[r][u]);
                        }
                    }
                    /* whole tiles (rows past kk: zero weights, unread): a
                     * bound known at compile time keeps acc in registers */
#pragma GCC unroll 8
                    for (int r = 0; r < TAPSUM_T; r++)
#pragma GCC unroll 3
                        for (int u = 0; u < TAPSUM_Q; u++)
                            _mm512_mask_storeu_ps(Y + (t0 + r) * j->hwq + q0 + 16 * u, m[u], acc[r][u]);
                }
            }
            float *dx = j->dx + b * plane;
            memset(dx, 0, sizeof *dx * (size_t)plane);
            col2im(c, Y, j->hwq, c->ci, dx);
        }
    }
}

static int tapsum_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                             float *scratch) {
    int64_t kk = c->ci * c->kh * c->kw;
    if (c->g != 1 || c->ci % 16 == 0 || (c->s[0] == 1 && c->s[1] == 1) || kk > 512 || c->co < 8 || c->n < 1 ||
        getenv("NETC_CONV_IM2COL"))
        return 0;
    struct tapsum_job j = {.c = c, .dy = dy, .dx = dx};
    int64_t tiles = (kk + TAPSUM_T - 1) / TAPSUM_T, wfloats = (tiles * TAPSUM_T * c->co + 15) / 16 * 16;
    j.hwq = (c->ho * c->wo + 15) / 16 * 16;
    j.region = tiles * TAPSUM_T * j.hwq;
    j.tasks = nrt_threads_get() < c->n ? nrt_threads_get() : c->n;
    while (j.tasks > 1 && wfloats + j.tasks * j.region > nrt_conv_scratch(c)) j.tasks--;
    if (wfloats + j.tasks * j.region > nrt_conv_scratch(c)) return 0;
    /* wq[tile][o][r] = w[o][tile * T + r] */
    float *wq = scratch;
    for (int64_t t = 0; t < tiles * TAPSUM_T; t++)
        for (int64_t o = 0; o < c->co; o++)
            wq[(t / TAPSUM_T * c->co + o) * TAPSUM_T + t % TAPSUM_T] = t < kk ? w[o * kk + t] : 0.0f;
    j.wq = wq, j.scratch = scratch + wfloats;
    nrt_parallel_for(j.tasks, 1, tapsum_tasks, &j);
    return 1;
}

/* The input gradient at stride s > 1 by sub-pixel decomposition: the rows
 * ih = s*a + ph of dx (one residue ph) take only taps i = i0 + t*s with
 * i0 = (ph + p) mod s, from dy row a + base - t, base = (ph + p - i0) / s;
 * so each of the s0*s1 residue classes of (ih, iw) is a stride-1 correlation
 * of dy (co channels in, ci out) with a window of T x U taps, which the
 * channel-vector kernel (dconv_tile) computes on dy, padded once per image
 * into a plane that holds every class's window (each class reads it from its
 * own corner). nb images at a time: their planes lie one after another and
 * a tile's pixels may span two images (7x7 classes fill tiles of 6 pixels with
 * 9 % waste alone, 1 % four at a time). The classes' pixel-major tiles lie side
 * by side in one buffer, and each 16-pixel piece of a dx row is one gather from
 * them (the classes interleave along the row). No col2im, no zero taps. */
struct subpix {
    struct dconv g;       /* the class's stride-1 problem (hp, wp: the shared plane's) */
    int64_t ph, pw;       /* residues */
    int64_t i0, j0, T, U; /* first tap and tap counts along h and w */
    int64_t top, left;    /* where dy lands in the class's own padded plane */
    int64_t xoff;         /* the class's corner in the shared plane */
    int64_t toff;         /* its tiles' offset in the tile buffer (nb images') */
    float *wp;            /* packed weights [T*U*co][ci] */
};

struct subpix_job {
    const struct nrt_conv *c;
    const float *dy;
    float *dx;
    struct subpix cls[16]; /* s0 * s1 classes (s <= 4 each) */
    int ncls;
    int64_t top, left, hp, wp; /* the shared padded plane of dy */
    int64_t planef;            /* its floats */
    int64_t nb;                /* images per group: planes and tiles */
    float *scratch;            /* task i's part: scratch + i * region */
    int64_t region, tasks;
};

static void subpix_class(const struct nrt_conv *c, int64_t ph, int64_t pw, struct subpix *k) {
    k->ph = ph, k->pw = pw;
    k->i0 = (ph + c->p[0]) % c->s[0], k->j0 = (pw + c->p[1]) % c->s[1];
    k->T = k->i0 < c->kh ? (c->kh - k->i0 + c->s[0] - 1) / c->s[0] : 0;
    k->U = k->j0 < c->kw ? (c->kw - k->j0 + c->s[1] - 1) / c->s[1] : 0;
    int64_t bh = (ph + c->p[0] - k->i0) / c->s[0], bw = (pw + c->p[1] - k->j0) / c->s[1];
    int64_t A = ph < c->h ? (c->h - ph + c->s[0] - 1) / c->s[0] : 0;
    int64_t B = pw < c->w ? (c->w - pw + c->s[1] - 1) / c->s[1] : 0;
    /* output a reads dy rows a + bh - (T - 1) + i', i' < T */
    k->top = k->T - 1 - bh, k->left = k->U - 1 - bw;
    k->g = (struct dconv){c->co, A + k->T - 1, B + k->U - 1, c->ci, k->T, k->U, 1, 1, 1, 1, A, B};
}

/* out[p][c0 + 16v + l] = the sum over dy channels and taps of
 * wt[...][16v + l] * x[base[p] + tap's offset]: dconv_tile with the class's
 * window KH x KW fixed at compile time when nonzero (2x2, the 4x4/s2 layers of
 * a DCGAN: the tap loops unrolled), else read from g. */
static inline __attribute__((always_inline)) void subpix_tile(const struct dconv *g, const int V, const int P,
                                                              const int KH, const int KW, const float *x,
                                                              const int64_t *base, const float *wt,
                                                              float *out) {
    __m512 acc[4][DIRECT_ACC];
    const int64_t kh = KH ? KH : g->kh, kw = KW ? KW : g->kw;
#pragma GCC unroll 4
    for (int v = 0; v < V; v++)
#pragma GCC unroll 24
        for (int p = 0; p < P; p++) acc[v][p] = _mm512_setzero_ps();
    for (int64_t ci = 0; ci < g->cin; ci++)
#pragma GCC unroll 4
        for (int64_t i = 0; i < kh; i++)
#pragma GCC unroll 4
            for (int64_t j = 0; j < kw; j++, wt += g->cout) {
                const float *xt = x + (ci * g->hp + i) * g->wp + j;
                __m512 w[4];
#pragma GCC unroll 4
                for (int v = 0; v < V; v++) w[v] = _mm512_loadu_ps(wt + 16 * v);
#pragma GCC unroll 24
                for (int p = 0; p < P; p++) {
                    __m512 xb = _mm512_set1_ps(xt[base[p]]);
#pragma GCC unroll 4
                    for (int v = 0; v < V; v++) acc[v][p] = _mm512_fmadd_ps(w[v], xb, acc[v][p]);
                }
            }
#pragma GCC unroll 24
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) _mm512_storeu_ps(out + p * g->cout + 16 * v, acc[v][p]);
}

/* The pixels [p0, p0 + n) of nb images (planes planef floats apart) as input
 * offsets, the last one repeated up to DIRECT_ACC entries. */
static void subpix_bases(const struct dconv *g, int64_t nb, int64_t planef, int64_t p0, int64_t n,
                         int64_t *base) {
    int64_t hw = g->ho * g->wo;
    for (int64_t k = 0; k < n; k++) {
        int64_t q = p0 + k < nb * hw ? p0 + k : nb * hw - 1, r = q % hw;
        base[k] = q / hw * planef + r / g->wo * g->wp + r % g->wo;
    }
}

/* The pixel-major tiles of one class for nb padded images from x (the first
 * one's corner). */
static void subpix_tiles(const struct subpix *k, int64_t nb, int64_t planef, const float *x, float *tmp) {
    const struct dconv *g = &k->g;
    int64_t hw = nb * g->ho * g->wo, base[DIRECT_ACC];
    if (k->T == 0 || k->U == 0) { /* no tap reaches these pixels */
        memset(tmp, 0, sizeof *tmp * (size_t)(hw * g->cout));
        return;
    }
    int two = g->kh == 2 && g->kw == 2;
    for (int64_t c0 = 0; c0 < g->cout;) {
        int64_t left = (g->cout - c0) / 16;
        int V = left >= 4 ? 4 : left >= 2 ? 2 : 1, P = DIRECT_ACC / V;
        for (int64_t p0 = 0; p0 < hw; p0 += P) {
            subpix_bases(g, nb, planef, p0, P, base);
            float *out = tmp + p0 * g->cout + c0;
            const float *wt = k->wp + c0;
            if (V == 4 && two)
                subpix_tile(g, 4, DIRECT_ACC / 4, 2, 2, x, base, wt, out);
            else if (V == 4)
                subpix_tile(g, 4, DIRECT_ACC / 4, 0, 0, x, base, wt, out);
            else if (V == 2)
                subpix_tile(g, 2, DIRECT_ACC / 2, 0, 0, x, base, wt, out);
            else
                subpix_tile(g, 1, DIRECT_ACC, 0, 0, x, base, wt, out);
        }
        c0 += 16 * V;
    }
}

/* dx[ch][ih][iw] of one image from the classes' tiles: per row piece of 16
 * pixels one vector of tile offsets (class and pixel), then one gather per
 * channel. */
static void subpix_gather(const struct subpix_job *j, const float *tiles, int64_t b, float *dx) {
    const struct nrt_conv *c = j->c;
    int64_t plane = c->h * c->w;
    int32_t idx[16];
    for (int64_t ih = 0; ih < c->h; ih++)
        for (int64_t iw0 = 0; iw0 < c->w; iw0 += 16) {
            int n = c->w - iw0 < 16 ? (int)(c->w - iw0) : 16;
            for (int l = 0; l < 16; l++) {
                int64_t iw = iw0 + (l < n ? l : 0);
                const struct subpix *k = &j->cls[ih % c->s[0] * c->s[1] + iw % c->s[1]];
                idx[l] = (int32_t)(k->toff + ((b * k->g.ho + ih / c->s[0]) * k->g.wo + iw / c->s[1]) * c->ci);
            }
            __m512i vi = _mm512_loadu_si512(idx);
            __mmask16 m = (__mmask16)((1u << n) - 1);
            float *out = dx + ih * c->w + iw0;
            for (int64_t ch = 0; ch < c->ci; ch++, out += plane)
                _mm512_mask_storeu_ps(out, m,
                                      _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, vi, tiles + ch, 4));
        }
}

static void subpix_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct subpix_job *j = arg;
    const struct nrt_conv *c = j->c;
    for (int64_t t = lo; t < hi; t++) {
        float *pad = j->scratch + t * j->region, *tiles = pad + j->nb * j->planef;
        for (int64_t b0 = c->n * t / j->tasks, b1 = c->n * (t + 1) / j->tasks; b0 < b1; b0 += j->nb) {
            int64_t nb = b1 - b0 < j->nb ? b1 - b0 : j->nb;
            for (int64_t b = 0; b < nb; b++)
                pad_planes(j->dy + (b0 + b) * c->co * c->ho * c->wo, c->co, c->ho, c->wo, j->top, j->left,
                           pad + b * j->planef, j->hp, j->wp);
            for (int q = 0; q < j->ncls; q++)
                subpix_tiles(&j->cls[q], nb, j->planef, pad + j->cls[q].xoff, tiles + j->cls[q].toff);
            for (int64_t b = 0; b < nb; b++)
                subpix_gather(j, tiles, b, j->dx + (b0 + b) * c->ci * c->h * c->w);
        }
    }
}

/* Scratch floats of one task with nb images per group; sets the classes' tile offsets. */
static int64_t subpix_region(struct subpix_job *j, int64_t nb) {
    int64_t tilef = 0;
    for (int q = 0; q < j->ncls; q++) {
        struct subpix *k = &j->cls[q];
        k->toff = tilef;
        tilef += (nb * k->g.ho * k->g.wo + DIRECT_ACC - 1) / DIRECT_ACC * DIRECT_ACC * k->g.cout;
    }
    return tilef > INT32_MAX / 2 ? INT64_MAX / 4
                                 : (nb * j->planef + tilef + 15) / 16 * 16; /* 32-bit gathers */
}

static int subpix_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                             float *scratch) {
    if (c->g != 1 || c->ci % 16 != 0 || c->d[0] != 1 || c->d[1] != 1 || c->s[0] < 2 || c->s[1] < 2 ||
        c->s[0] > 4 || c->s[1] > 4 || c->n < 1 || getenv("NETC_CONV_IM2COL"))
        return 0;
    if (c->co * ((c->kh + c->s[0] - 1) / c->s[0]) * ((c->kw + c->s[1] - 1) / c->s[1]) < DIRECT_MIN_TAPS)
        return 0;
    struct subpix_job j = {.c = c, .dy = dy, .dx = dx};
    int64_t wfloats = 0;
    for (int64_t ph = 0; ph < c->s[0]; ph++)
        for (int64_t pw = 0; pw < c->s[1]; pw++) {
            struct subpix *k = &j.cls[j.ncls++];
            subpix_class(c, ph, pw, k);
            wfloats += (k->T * k->U * c->co * c->ci + 15) / 16 * 16;
            j.top = k->top > j.top ? k->top : j.top, j.left = k->left > j.left ? k->left : j.left;
        }
    /* The shared plane: dy at (top, left), every class's window inside. */
    j.hp = j.top + c->ho, j.wp = j.left + c->wo;
    for (int q = 0; q < j.ncls; q++) {
        const struct subpix *k = &j.cls[q];
        int64_t hp = k->g.hp + j.top - k->top, wp = k->g.wp + j.left - k->left;
        j.hp = hp > j.hp ? hp : j.hp, j.wp = wp > j.wp ? wp : j.wp;
    }
    for (int q = 0; q < j.ncls; q++) {
        struct subpix *k = &j.cls[q];
        k->xoff = (j.top - k->top) * j.wp + j.left - k->left;
        k->g.hp = j.hp, k->g.wp = j.wp;
    }
    j.planef = (c->co * j.hp * j.wp + 15) / 16 * 16;
    j.tasks = nrt_threads_get() < c->n ? nrt_threads_get() : c->n;
    if (j.tasks < 1) j.tasks = 1;
    /* Up to 4 images per group (their tiles fill up), as the scratch allows. */
    j.nb = (c->n + j.tasks - 1) / j.tasks;
    j.nb = j.nb < 4 ? j.nb : 4;
    while (j.nb > 1 && wfloats + j.tasks * subpix_region(&j, j.nb) > nrt_conv_scratch(c)) j.nb--;
    while (j.tasks > 1 && wfloats + j.tasks * subpix_region(&j, j.nb) > nrt_conv_scratch(c)) j.tasks--;
    j.region = subpix_region(&j, j.nb);
    if (wfloats + j.tasks * j.region > nrt_conv_scratch(c)) return 0;
    /* wp[(o, i', j')][ci] = w[o][ci][i0 + (T-1-i') s0][j0 + (U-1-j') s1] */
    float *wp = scratch;
    for (int q = 0; q < j.ncls; q++) {
        struct subpix *k = &j.cls[q];
        k->wp = wp;
        for (int64_t o = 0; o < c->co; o++)
            for (int64_t ip = 0; ip < k->T; ip++)
                for (int64_t jp = 0; jp < k->U; jp++) {
                    int64_t i = k->i0 + (k->T - 1 - ip) * c->s[0], jj = k->j0 + (k->U - 1 - jp) * c->s[1];
                    float *dst = wp + ((o * k->T + ip) * k->U + jp) * c->ci;
                    for (int64_t ci = 0; ci < c->ci; ci++)
                        dst[ci] = w[((o * c->ci + ci) * c->kh + i) * c->kw + jj];
                }
        wp += (k->T * k->U * c->co * c->ci + 15) / 16 * 16;
    }
    j.scratch = scratch + wfloats;
    nrt_parallel_for(j.tasks, 1, subpix_tasks, &j);
    return 1;
}

/* The forward of strided layers with many taps (the DCGAN's 4x4/s2 64 -> 128)
 * in image groups: the channel-vector tile (subpix_tile, the 4x4 window
 * unrolled) over the pixels of up to 4 padded images at once, so that tiles
 * of 6 or 12 pixels do not straddle a 7x7 image's end alone (49 pixels in
 * tiles of 6: 9 % of the multiplies wasted; 196: 1 %), then one gather per
 * 16 pixels and channel into y with the bias and relu. Stride 1 stays with
 * dconv_image; batches below the threads with its pixel split. */
struct group_job {
    const struct nrt_conv *c;
    struct dconv g; /* one padded image's problem */
    const float *x, *wp, *bias;
    int relu;
    float *y, *scratch; /* task i's planes, then tiles: scratch + i * region */
    int64_t planef, nb, region, tasks;
};

/* The pixels [p0, p0 + n) of nb padded images as input offsets at the
 * layer's stride, the last one repeated up to DIRECT_ACC entries. */
static void group_bases(const struct dconv *g, int64_t nb, int64_t planef, int64_t p0, int64_t n,
                        int64_t *base) {
    int64_t hw = g->ho * g->wo;
    for (int64_t k = 0; k < n; k++) {
        int64_t q = p0 + k < nb * hw ? p0 + k : nb * hw - 1, r = q % hw;
        base[k] = q / hw * planef + r / g->wo * g->s0 * g->wp + r % g->wo * g->s1;
    }
}

static void group_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct group_job *j = arg;
    const struct nrt_conv *c = j->c;
    const struct dconv *g = &j->g;
    int64_t hw = g->ho * g->wo, base[DIRECT_ACC];
    int k4 = g->kh == 4 && g->kw == 4;
    for (int64_t t = lo; t < hi; t++) {
        float *pad = j->scratch + t * j->region, *tiles = pad + j->nb * j->planef;
        for (int64_t b0 = c->n * t / j->tasks, b1 = c->n * (t + 1) / j->tasks; b0 < b1; b0 += j->nb) {
            int64_t nb = b1 - b0 < j->nb ? b1 - b0 : j->nb, np = nb * hw;
            for (int64_t b = 0; b < nb; b++)
                pad_planes(j->x + (b0 + b) * c->ci * c->h * c->w, c->ci, c->h, c->w, c->p[0], c->p[1],
                           pad + b * j->planef, g->hp, g->wp);
            for (int64_t c0 = 0; c0 < g->cout;) {
                int64_t left = (g->cout - c0) / 16;
                int V = left >= 4 ? 4 : left >= 2 ? 2 : 1, P = DIRECT_ACC / V;
                for (int64_t p0 = 0; p0 < np; p0 += P) {
                    group_bases(g, nb, j->planef, p0, P, base);
                    float *out = tiles + p0 * g->cout + c0;
                    const float *wt = j->wp + c0;
                    if (V == 4 && k4)
                        subpix_tile(g, 4, DIRECT_ACC / 4, 4, 4, pad, base, wt, out);
                    else if (V == 4)
                        subpix_tile(g, 4, DIRECT_ACC / 4, 0, 0, pad, base, wt, out);
                    else if (V == 2)
                        subpix_tile(g, 2, DIRECT_ACC / 2, 0, 0, pad, base, wt, out);
                    else
                        subpix_tile(g, 1, DIRECT_ACC, 0, 0, pad, base, wt, out);
                }
                c0 += 16 * V;
            }
            /* y[b][o][p] = act(tiles[b*hw + p][o] + bias[o]) */
            const __m512i rows =
                _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                   _mm512_set1_epi32((int)g->cout));
            const __m512 zero = _mm512_setzero_ps();
            const __mmask16 tail = (__mmask16)((1u << (hw % 16)) - 1);
            for (int64_t b = 0; b < nb; b++) {
                float *y = j->y + (b0 + b) * g->cout * hw;
                const float *tb = tiles + b * hw * g->cout;
                for (int64_t o = 0; o < g->cout; o++) {
                    const __m512 bv = _mm512_set1_ps(j->bias ? j->bias[o] : 0.0f);
                    int64_t p = 0;
                    for (; p + 16 <= hw; p += 16) {
                        __m512 v = _mm512_add_ps(_mm512_i32gather_ps(rows, tb + p * g->cout + o, 4), bv);
                        _mm512_storeu_ps(y + o * hw + p, j->relu ? _mm512_max_ps(v, zero) : v);
                    }
                    if (p < hw) {
                        __m512 v = _mm512_add_ps(
                            _mm512_mask_i32gather_ps(zero, tail, rows, tb + p * g->cout + o, 4), bv);
                        _mm512_mask_storeu_ps(y + o * hw + p, tail, j->relu ? _mm512_max_ps(v, zero) : v);
                    }
                }
            }
        }
    }
}

/* Scratch floats of one task with nb images per group. */
static int64_t group_region(const struct group_job *j, int64_t nb) {
    int64_t hw = j->g.ho * j->g.wo;
    return nb * j->planef + (nb * hw + DIRECT_ACC - 1) / DIRECT_ACC * DIRECT_ACC * j->g.cout;
}

static int group_conv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch,
                        const float *bias, int relu) {
    int64_t kk = c->ci * c->kh * c->kw, threads = nrt_threads_get();
    if (c->g != 1 || c->co % 16 != 0 || kk < DIRECT_MIN_TAPS || c->d[0] != 1 || c->d[1] != 1 ||
        (c->s[0] == 1 && c->s[1] == 1) || c->n < 1 || threads >= 2 * c->n || getenv("NETC_CONV_IM2COL"))
        return 0;
    struct group_job j = {.c = c, .x = x, .bias = bias, .relu = relu, .y = y};
    j.g = (struct dconv){c->ci,
                         c->h + c->p[0] + c->p[2],
                         c->w + c->p[1] + c->p[3],
                         c->co,
                         c->kh,
                         c->kw,
                         c->s[0],
                         c->s[1],
                         1,
                         1,
                         c->ho,
                         c->wo};
    /* the last tap's reach past the padded plane (rows cut by the output size) */
    int64_t need_h = (c->ho - 1) * c->s[0] + c->kh, need_w = (c->wo - 1) * c->s[1] + c->kw;
    j.g.hp = j.g.hp > need_h ? j.g.hp : need_h, j.g.wp = j.g.wp > need_w ? j.g.wp : need_w;
    j.planef = (c->ci * j.g.hp * j.g.wp + 15) / 16 * 16;
    int64_t wfloats = (kk * c->co + 15) / 16 * 16;
    j.tasks = threads < c->n ? threads : c->n;
    j.nb = (c->n + j.tasks - 1) / j.tasks;
    j.nb = j.nb < 4 ? j.nb : 4;
    while (j.nb > 1 && wfloats + j.tasks * group_region(&j, j.nb) > nrt_conv_scratch(c)) j.nb--;
    while (j.tasks > 1 && wfloats + j.tasks * group_region(&j, j.nb) > nrt_conv_scratch(c)) j.tasks--;
    j.region = group_region(&j, j.nb);
    if (wfloats + j.tasks * j.region > nrt_conv_scratch(c) ||
        (j.nb * c->ho * c->wo + DIRECT_ACC) * c->co > INT32_MAX / 2)
        return 0;
    float *wp = scratch;
    dconv_pack(w, c->co, kk, wp);
    j.wp = wp, j.scratch = scratch + wfloats;
    nrt_parallel_for(j.tasks, 1, group_tasks, &j);
    return 1;
}

/* The input gradient by scatter, for convolutions whose input is larger than
 * their output (unpadded "valid" layers, such as mnist_cnn's second): the
 * correlation of padded dy above spends up to 40 % of its multiplies on the
 * zero border. Here each dy pixel meets each tap once: for a tile of P dy
 * pixels and one tap t, acc[16v + l][p] = sum over co of w[co][c0 + 16v + l][t]
 * * dy[co][p] (V vectors of input channels by P pixels in registers, the
 * reduction over the output channels), added into a pixel-major image
 * T[ih + p0][iw + p1][ci] at the pixel the tap reaches; T's interior is then
 * gathered into dx's planes. Weights are packed [t][co][ci] once per call. */
#define SCATTER_MAX_V 4

/* acc over the output channels for the P dy pixels from dy's (consecutive, so
 * their broadcasts take constant offsets), added into T at the float offsets
 * dst[] for pixels lo.. (those before belong to the previous tile). */
static inline __attribute__((always_inline)) void scatter_tile(const int V, const int P, const float *dy,
                                                               int64_t hw, int64_t co, const float *wq,
                                                               int64_t ci, float *t, const int64_t *dst,
                                                               int lo) {
    __m512 acc[SCATTER_MAX_V][DIRECT_ACC];
#pragma GCC unroll 4
    for (int v = 0; v < V; v++)
#pragma GCC unroll 24
        for (int p = 0; p < P; p++) acc[v][p] = _mm512_setzero_ps();
    for (int64_t o = 0; o < co; o++, dy += hw, wq += ci) {
        __m512 w[SCATTER_MAX_V];
#pragma GCC unroll 4
        for (int v = 0; v < V; v++) w[v] = _mm512_loadu_ps(wq + 16 * v);
#pragma GCC unroll 24
        for (int p = 0; p < P; p++) {
            __m512 d = _mm512_set1_ps(dy[p]);
#pragma GCC unroll 4
            for (int v = 0; v < V; v++) acc[v][p] = _mm512_fmadd_ps(w[v], d, acc[v][p]);
        }
    }
#pragma GCC unroll 24
    for (int p = 0; p < P; p++)
        if (p >= lo)
#pragma GCC unroll 4
            for (int v = 0; v < V; v++) {
                float *at = t + dst[p] + 16 * v;
                _mm512_storeu_ps(at, _mm512_add_ps(_mm512_loadu_ps(at), acc[v][p]));
            }
}

/* One tile's call with P a compile-time constant: P in (pmax/2, pmax] for
 * V = 24/pmax vectors (scatter_p), the smallest of them as the default. */
#define SCATTER_CASE(V, P)                                  \
    case P:                                                 \
        scatter_tile(V, P, dy, hw, co, wq, ci, t, dst, lo); \
        return;
static void scatter_call(int V, int P, const float *dy, int64_t hw, int64_t co, const float *wq, int64_t ci,
                         float *t, const int64_t *dst, int lo) {
    if (V == 4) {
        switch (P) {
            SCATTER_CASE(4, 6)
            SCATTER_CASE(4, 5)
        default:
            scatter_tile(4, 4, dy, hw, co, wq, ci, t, dst, lo);
        }
    } else if (V == 2) {
        switch (P) {
            SCATTER_CASE(2, 12)
            SCATTER_CASE(2, 11)
            SCATTER_CASE(2, 10)
            SCATTER_CASE(2, 9)
            SCATTER_CASE(2, 8)
        default:
            scatter_tile(2, 7, dy, hw, co, wq, ci, t, dst, lo);
        }
    } else {
        switch (P) {
            SCATTER_CASE(1, 24)
            SCATTER_CASE(1, 23)
            SCATTER_CASE(1, 22)
            SCATTER_CASE(1, 21)
            SCATTER_CASE(1, 20)
            SCATTER_CASE(1, 19)
            SCATTER_CASE(1, 18)
            SCATTER_CASE(1, 17)
            SCATTER_CASE(1, 16)
            SCATTER_CASE(1, 15)
            SCATTER_CASE(1, 14)
        default:
            scatter_tile(1, 13, dy, hw, co, wq, ci, t, dst, lo);
        }
    }
}
#undef SCATTER_CASE

struct scatter_job {
    const struct nrt_conv *c;
    const float *dy;
    float *dx;
    const float *wq; /* packed weights [kh*kw][co][ci] */
    float *scratch;  /* task i's T at scratch + i * region */
    int64_t ht, wt;  /* T's padded plane */
    int64_t region;  /* floats per task */
    int64_t tasks;   /* image ranges */
};

/* Tiles of P pixels with P in (pmax/2, pmax] (hw >= pmax): as even as whole
 * tiles allow. */
static int scatter_p(int64_t hw, int pmax) {
    int64_t tiles = (hw + pmax - 1) / pmax;
    return (int)((hw + tiles - 1) / tiles);
}

static void scatter_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct scatter_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t hw = c->ho * c->wo, ci = c->ci, co = c->co, plane = c->h * c->w, taps = c->kh * c->kw;
    int64_t base[DIRECT_ACC], dst[DIRECT_ACC];
    for (int64_t i = lo; i < hi; i++) {
        float *t = j->scratch + i * j->region;
        for (int64_t b = c->n * i / j->tasks; b < c->n * (i + 1) / j->tasks; b++) {
            const float *dy = j->dy + b * co * hw;
            /* the next image's dy, this one's dx (pf_run) */
            struct pf_run pf[PF_RUNS];
            int64_t calls = (hw + DIRECT_ACC / 2 - 1) / (DIRECT_ACC / 2) * taps * ((ci + 63) / 64);
            pf_init(&pf[0], b + 1 < c->n * (i + 1) / j->tasks ? dy + co * hw : NULL, sizeof *dy * co * hw,
                    calls, 0);
            pf_init(&pf[1], j->dx + b * ci * plane, sizeof *dy * ci * plane, calls, 1);
            memset(t, 0, sizeof *t * (size_t)(j->ht * j->wt * ci));
            for (int64_t c0 = 0; c0 < ci;) {
                int64_t left = (ci - c0) / 16;
                int V = left >= 4 ? 4 : left >= 2 ? 2 : 1, pmax = DIRECT_ACC / V, P = scatter_p(hw, pmax);
                for (int64_t q1 = 0; q1 < hw; q1 += P) {
                    /* the last tile ends at hw, overlapping the one before */
                    int64_t q0 = q1 + P <= hw ? q1 : hw - P;
                    int lo = (int)(q1 - q0);
                    for (int k = 0; k < P; k++)
                        base[k] = (q0 + k) / c->wo * c->s[0] * j->wt + (q0 + k) % c->wo * c->s[1];
                    for (int64_t tap = 0; tap < taps; tap++) {
                        int64_t off = tap / c->kw * c->d[0] * j->wt + tap % c->kw * c->d[1];
                        pf_next(pf);
                        for (int k = 0; k < P; k++) dst[k] = (base[k] + off) * ci;
                        scatter_call(V, P, dy + q0, hw, co, j->wq + tap * co * ci + c0, ci, t + c0, dst, lo);
                    }
                }
                c0 += 16 * V;
            }
            /* dx[ch][ih][iw] = T[ih + p0][iw + p1][ch]: one transpose without padding */
            float *dx = j->dx + b * ci * plane;
            if (j->ht == c->h && j->wt == c->w)
                nrt_transpose16(t, ci, plane, ci, dx, plane);
            else
                for (int64_t ih = 0; ih < c->h; ih++)
                    nrt_transpose16(t + ((ih + c->p[0]) * j->wt + c->p[1]) * ci, ci, c->w, ci, dx + ih * c->w,
                                    plane);
        }
    }
}

/* Whether the scatter kernel takes c: one group, 16k input channels, and an
 * input at least 10 % larger than the output (stride 1: where the padded
 * correlation would multiply that many border zeros). */
static int scatter_ok(const struct nrt_conv *c) {
    return c->g == 1 && c->ci % 16 == 0 && c->s[0] == 1 && c->s[1] == 1 && c->co >= 16 && c->n > 0 &&
           c->ho * c->wo >= DIRECT_ACC && 10 * c->h * c->w > 11 * c->ho * c->wo &&
           !getenv("NETC_CONV_IM2COL");
}

static int scatter_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                              float *scratch) {
    if (!scatter_ok(c)) return 0;
    int64_t taps = c->kh * c->kw, wfloats = (taps * c->co * c->ci + 15) / 16 * 16;
    struct scatter_job j = {.c = c, .dy = dy, .dx = dx, .wq = scratch};
    j.ht = c->h + c->p[0] + c->p[2], j.wt = c->w + c->p[1] + c->p[3];
    /* the last tap's reach past the plane (rows cut by the output size) */
    int64_t need_h = (c->ho - 1) * c->s[0] + (c->kh - 1) * c->d[0] + 1,
            need_w = (c->wo - 1) * c->s[1] + (c->kw - 1) * c->d[1] + 1;
    j.ht = j.ht > need_h ? j.ht : need_h, j.wt = j.wt > need_w ? j.wt : need_w;
    j.region = (j.ht * j.wt * c->ci + 15) / 16 * 16;
    j.tasks = nrt_threads_get() < c->n ? nrt_threads_get() : c->n;
    if (j.tasks < 1) j.tasks = 1;
    while (j.tasks > 1 && wfloats + j.tasks * j.region > nrt_conv_scratch(c)) j.tasks--;
    if (wfloats + j.tasks * j.region > nrt_conv_scratch(c)) return 0;
    /* wq[t][o][ci] = w[o][ci][t] */
    float *wq = scratch;
    for (int64_t o = 0; o < c->co; o++)
        for (int64_t ch = 0; ch < c->ci; ch++)
            for (int64_t t = 0; t < taps; t++)
                wq[(t * c->co + o) * c->ci + ch] = w[(o * c->ci + ch) * taps + t];
    j.scratch = scratch + wfloats;
    nrt_parallel_for(j.tasks, 1, scatter_tasks, &j);
    return 1;
}
#else
/* Without AVX-512 no direct path is taken: the callers fall back to im2col + GEMM. */
#define NO_CONV_PATH(name)                                                                                  \
    static int name(const struct nrt_conv *c, const float *a, const float *b, float *out, float *scratch) { \
        (void)c, (void)a, (void)b, (void)out, (void)scratch;                                                \
        return 0;                                                                                           \
    }
#define NO_CONV_FWD_PATH(name)                                                                          \
    static int name(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch, \
                    const float *bias, int relu) {                                                      \
        (void)c, (void)x, (void)w, (void)y, (void)scratch, (void)bias, (void)relu;                      \
        return 0;                                                                                       \
    }
NO_CONV_FWD_PATH(direct_conv2d)
NO_CONV_FWD_PATH(s2d_conv2d)
NO_CONV_FWD_PATH(group_conv2d)
NO_CONV_PATH(direct_grad_input)
NO_CONV_PATH(direct_grad_weight)
NO_CONV_PATH(subpix_grad_input)
NO_CONV_PATH(scatter_grad_input)
NO_CONV_PATH(s2d_grad_weight)
NO_CONV_PATH(tapsum_grad_input)
#endif

/* ------------------------------------------------- pointwise (1x1) conv -- */

/* A 1x1 convolution at stride 1 without padding or groups is a matrix product
 * per image on x [ci, hw] and y [co, hw] as they lie in NCHW: y = W x,
 * dx = W^T dy, dW = sum over images of dy x^T. No im2col, no transposes: the
 * GEMMs read and write the activations in place. Each pool thread takes whole
 * images; for dW, thread i > 0 sums into its own partial in the scratch. */
static int pointwise_ok(const struct nrt_conv *c) {
    return c->kh == 1 && c->kw == 1 && c->g == 1 && c->s[0] == 1 && c->s[1] == 1 && c->p[0] == 0 &&
           c->p[1] == 0 && c->p[2] == 0 && c->p[3] == 0 && c->ho == c->h && c->wo == c->w && c->n > 0 &&
           !getenv("NETC_CONV_IM2COL");
}

struct pw_job {
    const struct nrt_conv *c;
    int kind;                /* 0 forward, 1 input gradient, 2 weight gradient */
    const float *a, *w, *dy; /* x (forward, dw) or dy (dx); the weights; dy (dw) */
    float *out;              /* y, dx or dw */
    float *part;             /* dw: task i > 0's partial at part + (i - 1) * co * ci */
    int64_t tasks;
};

static void pw_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct pw_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t hw = c->h * c->w, ci = c->ci, co = c->co;
    for (int64_t i = lo; i < hi; i++)
        for (int64_t b = c->n * i / j->tasks, b1 = c->n * (i + 1) / j->tasks, first = b; b < b1; b++) {
            if (j->kind == 0)
                nrt_sgemm(0, 0, co, hw, ci, 1.0f, j->w, ci, j->a + b * ci * hw, hw, 0.0f,
                          j->out + b * co * hw, hw);
            else if (j->kind == 1)
                nrt_sgemm(1, 0, ci, hw, co, 1.0f, j->w, ci, j->a + b * co * hw, hw, 0.0f,
                          j->out + b * ci * hw, hw);
            else
                nrt_sgemm(0, 1, co, ci, hw, 1.0f, j->dy + b * co * hw, hw, j->a + b * ci * hw, hw,
                          b == first ? 0.0f : 1.0f, i == 0 ? j->out : j->part + (i - 1) * co * ci, ci);
        }
}

/* dw[lo, hi) += the partials of tasks 1.. */
static void pw_dw_sum(void *arg, int64_t lo, int64_t hi) {
    const struct pw_job *j = arg;
    int64_t size = j->c->co * j->c->ci;
    for (int64_t i = 1; i < j->tasks; i++)
        for (int64_t k = lo; k < hi; k++) j->out[k] += j->part[(i - 1) * size + k];
}

static int pointwise(const struct nrt_conv *c, int kind, const float *a, const float *w, const float *dy,
                     float *out, float *scratch) {
    if (!pointwise_ok(c)) return 0;
    struct pw_job j = {c, kind, a, w, dy, out, scratch, nrt_threads_get()};
    if (j.tasks > c->n) j.tasks = c->n;
    if (j.tasks < 1) j.tasks = 1;
    if (kind == 2)
        while (j.tasks > 1 && (j.tasks - 1) * c->co * c->ci > nrt_conv_scratch(c)) j.tasks--;
    nrt_parallel_for(j.tasks, 1, pw_tasks, &j);
    if (kind == 2 && j.tasks > 1) nrt_parallel_for(c->co * c->ci, 4096, pw_dw_sum, &j);
    return 1;
}

/* Threading: the batch is cut into `tasks` contiguous image ranges, one per
 * pool thread, each with its own 1/tasks of the scratch (so `sub` images per
 * GEMM) and single-threaded GEMMs: no thread waits on another inside a layer.
 * With one task (one thread, one image per chunk, or a batch of one) the
 * chunks run in turn and nrt_sgemm splits each GEMM over the pool. */
struct conv_job {
    const struct nrt_conv *c; /* the geometry */
    const float *x, *w, *dy;  /* inputs (those the kernel reads) */
    float *y, *dx, *dw;       /* the output it writes */
    float *scratch;           /* all the scratch: task i's part starts at i*region */
    int64_t tasks;            /* image ranges */
    int64_t region;           /* scratch floats per task */
    int64_t sub;              /* images per GEMM within a task */
    int64_t part;             /* grad_weight: floats of a task's partial dw (0: none) */
};

/* The number of tasks for c: pool threads, at most one per chunk image and
 * one per batch image. */
static int64_t conv_tasks(const struct nrt_conv *c) {
    int64_t t = nrt_threads_get(), chunk = nrt_conv_chunk(c);
    t = t < chunk ? t : chunk;
    t = t < c->n ? t : c->n;
    return t < 1 ? 1 : t;
}

static struct conv_job conv_job_init(const struct nrt_conv *c, float *scratch) {
    struct conv_job j = {.c = c, .scratch = scratch, .tasks = conv_tasks(c)};
    j.sub = nrt_conv_chunk(c) / j.tasks;
    j.region = j.sub * nrt_conv_image_floats(c);
    return j;
}

/* Task i's images [*b0, *b1) and scratch. */
static float *conv_task(const struct conv_job *j, int64_t i, int64_t *b0, int64_t *b1) {
    *b0 = j->c->n * i / j->tasks, *b1 = j->c->n * (i + 1) / j->tasks;
    return j->scratch + i * j->region;
}

static void conv_fwd_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct conv_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    for (int64_t i = lo; i < hi; i++) {
        int64_t b1, b0;
        float *col = conv_task(j, i, &b0, &b1);
        for (; b0 < b1; b0 += j->sub) {
            int64_t nb = b1 - b0 < j->sub ? b1 - b0 : j->sub, ld = nb * hw;
            float *t = col + kk * ld;
            for (int64_t g = 0; g < c->g; g++) {
                for (int64_t b = 0; b < nb; b++)
                    im2col(c, j->x + ((b0 + b) * c->ci + g * cig) * c->h * c->w, cig, col + b * hw, ld);
                nrt_sgemm(0, 0, cog, ld, kk, 1.0f, j->w + g * cog * kk, kk, col, ld, 0.0f, t, ld);
                from_channel_major(c, nb, g, t, j->y + b0 * c->co * hw);
            }
        }
    }
}

void nrt_conv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch) {
    if (pointwise(c, 0, x, w, NULL, y, scratch)) return;
    if (nrt_wino_conv2d_train(c, x, w, NULL, 0, y, scratch)) return;
    if (nrt_ws2_conv2d(c, x, w, NULL, 0, y, scratch)) return;
    if (nrt_dwconv2d(c, x, w, y, scratch)) return;
    if (group_conv2d(c, x, w, y, scratch, NULL, 0)) return;
    if (direct_conv2d(c, x, w, y, scratch, NULL, 0)) return;
    if (s2d_conv2d(c, x, w, y, scratch, NULL, 0)) return;
    struct conv_job j = conv_job_init(c, scratch);
    j.x = x, j.w = w, j.y = y;
    nrt_parallel_for(j.tasks, 1, conv_fwd_tasks, &j);
}

/* The epilogue pass of the kernels that do not apply it as they write:
 * planes [lo, hi) of y [n*co][ho*wo]. */
struct conv_ep_job {
    const struct nrt_conv *c;
    const float *bias;
    int act;
    float *y;
};

static void conv_ep_planes(void *arg, int64_t lo, int64_t hi) {
    const struct conv_ep_job *j = arg;
    int64_t hw = j->c->ho * j->c->wo;
    for (int64_t q = lo; q < hi; q++) {
        float b = j->bias ? j->bias[q % j->c->co] : 0.0f, *p = j->y + q * hw;
        if (j->act == NRT_ACT_RELU)
            for (int64_t k = 0; k < hw; k++) p[k] = p[k] + b > 0.0f ? p[k] + b : 0.0f;
        else
            for (int64_t k = 0; k < hw; k++) p[k] += b;
    }
}

void nrt_conv2d_bias_act(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int act,
                         float *y, float *scratch) {
    int relu = (act & ~NRT_CONV_WINOGRAD) == NRT_ACT_RELU;
    if (!pointwise_ok(c) &&
        (((act & NRT_CONV_WINOGRAD) ? nrt_wino_conv2d(c, x, w, bias, relu, y, scratch)
                                    : nrt_wino_conv2d_train(c, x, w, bias, relu, y, scratch)) ||
         nrt_ws2_conv2d(c, x, w, bias, relu, y, scratch) || group_conv2d(c, x, w, y, scratch, bias, relu) ||
         direct_conv2d(c, x, w, y, scratch, bias, relu) || s2d_conv2d(c, x, w, y, scratch, bias, relu)))
        return;
    nrt_conv2d(c, x, w, y, scratch);
    if (!bias && !relu) return;
    struct conv_ep_job j = {c, bias, relu ? NRT_ACT_RELU : NRT_ACT_NONE, y};
    int64_t hw = c->ho * c->wo;
    nrt_parallel_for(c->n * c->co, (32768 + hw - 1) / hw, conv_ep_planes, &j);
}

/* ---- conv2d + bias + act + 2x2 max pooling (inference: nothing but the
 * pooled result is stored). */

int64_t nrt_conv_pool_scratch(const struct nrt_conv *c) {
    return nrt_conv_scratch(c) + nrt_conv_chunk(c) * c->co * c->ho * c->wo;
}

#if defined(__AVX512F__)
/* A first layer (one input channel, 3x3, stride 1, no padding, 16k output
 * channels): per pooled pixel, its 4 outputs for 2 vectors of 16 channels in
 * registers (the 9 taps' weight vectors held across the row), pooled there,
 * then a row of pooled pixels transposed into channel planes. */
struct first_pool_job {
    const struct nrt_conv *c;
    const float *x, *wt, *bias; /* wt [9][co]: the weights by tap */
    int relu;
    float *y;
};

static int first_pool_ok(const struct nrt_conv *c) {
    return c->ci == 1 && c->g == 1 && c->kh == 3 && c->kw == 3 && c->s[0] == 1 && c->s[1] == 1 &&
           c->d[0] == 1 && c->d[1] == 1 && !c->p[0] && !c->p[1] && !c->p[2] && !c->p[3] && c->co % 16 == 0 &&
           c->ho == c->h - 2 && c->wo == c->w - 2 && c->ho >= 2 && c->wo >= 2 && c->wo / 2 <= 256;
}

/* Pooled row pr of image b, channels [o, o + 16 V), into t [pw][32]. */
static inline __attribute__((always_inline)) void first_pool_row(const struct first_pool_job *j, const int V,
                                                                 int64_t b, int64_t pr, int64_t o, float *t) {
    const struct nrt_conv *c = j->c;
    int64_t pw = c->wo / 2, co = c->co;
    __m512 wv[9][2], bv[2];
    for (int v = 0; v < V; v++) {
        for (int q = 0; q < 9; q++) wv[q][v] = _mm512_loadu_ps(j->wt + q * co + o + 16 * v);
        bv[v] = j->bias ? _mm512_loadu_ps(j->bias + o + 16 * v) : _mm512_setzero_ps();
    }
    const float *x = j->x + (b * c->h + 2 * pr) * c->w;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t pc = 0; pc < pw; pc++) {
        const float *p = x + 2 * pc;
        __m512 acc[4][2];
        for (int a = 0; a < 4; a++)
            for (int v = 0; v < V; v++) acc[a][v] = zero;
        for (int ky = 0; ky < 3; ky++)
            for (int kx = 0; kx < 3; kx++)
                for (int a = 0; a < 4; a++) {
                    __m512 xv = _mm512_set1_ps(p[(a / 2 + ky) * c->w + a % 2 + kx]);
                    for (int v = 0; v < V; v++)
                        acc[a][v] = _mm512_fmadd_ps(wv[3 * ky + kx][v], xv, acc[a][v]);
                }
        for (int v = 0; v < V; v++) {
            __m512 m = zero;
            for (int a = 0; a < 4; a++) {
                __m512 y = _mm512_add_ps(acc[a][v], bv[v]);
                if (j->relu) y = _mm512_max_ps(y, zero);
                m = a ? _mm512_max_ps(m, y) : y;
            }
            _mm512_storeu_ps(t + pc * 32 + 16 * v, m);
        }
    }
}

/* Pooled row pr of image b, channels [o0, o1) (multiples of 16), by way of t [256][32]. */
static inline __attribute__((always_inline)) void
first_pool_part(const struct first_pool_job *j, int64_t b, int64_t pr, int64_t o0, int64_t o1, float *t) {
    const struct nrt_conv *c = j->c;
    int64_t ph = c->ho / 2, pw = c->wo / 2, co = c->co;
    for (int64_t o = o0; o < o1; o += 32) {
        int V = o1 - o >= 32 ? 2 : 1;
        if (V == 2)
            first_pool_row(j, 2, b, pr, o, t);
        else
            first_pool_row(j, 1, b, pr, o, t);
        nrt_transpose16(t, 32, pw, 16 * V, j->y + (b * co + o) * ph * pw + pr * pw, ph * pw);
    }
}

/* Tasks: halves of (image, pooled row) pairs, each half a range of channel
 * vectors, so two threads get equal parts of an odd number of rows (batch 1:
 * 13 rows of mnist_cnn's first layer); a chunk's whole rows go at once. */
static void first_pool_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct first_pool_job *j = arg;
    int64_t ph = j->c->ho / 2, vecs = j->c->co / 16, mid = vecs / 2 * 16;
    float t[256 * 32];
    for (int64_t u = lo; u < hi;) {
        int64_t i = u / 2, b = i / ph, pr = i % ph;
        int64_t o0 = u % 2 ? mid : 0, o1 = u % 2 == 0 && u + 1 < hi ? 16 * vecs : u % 2 ? 16 * vecs : mid;
        first_pool_part(j, b, pr, o0, o1, t);
        u += o0 == 0 && o1 == 16 * vecs ? 2 : 1;
    }
}
#endif

static int first_pool(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                      float *y, float *scratch) {
#if defined(__AVX512F__)
    if (!first_pool_ok(c) || nrt_conv_scratch(c) < 9 * c->co) return 0;
    for (int64_t o = 0; o < c->co; o++)
        for (int q = 0; q < 9; q++) scratch[q * c->co + o] = w[o * 9 + q];
    struct first_pool_job j = {c, x, scratch, bias, relu, y};
    nrt_parallel_for(2 * c->n * (c->ho / 2), 4, first_pool_tasks, &j);
    return 1;
#else
    (void)c, (void)x, (void)w, (void)bias, (void)relu, (void)y, (void)scratch;
    return 0;
#endif
}

void nrt_conv2d_bias_act_pool(const struct nrt_conv *c, const float *x, const float *w, const float *bias,
                              int act, float *y, float *scratch) {
    int relu = (act & ~NRT_CONV_WINOGRAD) == NRT_ACT_RELU;
    int64_t ph = c->ho / 2, pw = c->wo / 2, chunk = nrt_conv_chunk(c);
    if (first_pool(c, x, w, bias, relu, y, scratch)) return;
    if ((act & NRT_CONV_WINOGRAD) && nrt_wino_conv2d_pool(c, x, w, bias, relu, y, scratch)) return;
    float *full = scratch + nrt_conv_scratch(c);
    for (int64_t b = 0; b < c->n; b += chunk) {
        struct nrt_conv s = *c;
        s.n = c->n - b < chunk ? c->n - b : chunk;
        nrt_conv2d_bias_act(&s, x + b * c->ci * c->h * c->w, w, bias, act, full, scratch);
        struct nrt_pool p = {s.n * c->co, c->ho, c->wo, ph, pw, {2, 2}, {2, 2}, {0, 0, 0, 0}};
        nrt_maxpool2d(&p, full, y + b * c->co * ph * pw);
    }
}

static void conv_dx_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct conv_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int64_t plane = c->h * c->w;
    for (int64_t i = lo; i < hi; i++) {
        int64_t b1, b0;
        float *col = conv_task(j, i, &b0, &b1);
        memset(j->dx + b0 * c->ci * plane, 0, sizeof *j->dx * (size_t)((b1 - b0) * c->ci * plane));
        for (; b0 < b1; b0 += j->sub) {
            int64_t nb = b1 - b0 < j->sub ? b1 - b0 : j->sub, ld = nb * hw;
            float *t = col + kk * ld;
            for (int64_t g = 0; g < c->g; g++) {
                to_channel_major(c, nb, g, j->dy + b0 * c->co * hw, t);
                nrt_sgemm(1, 0, kk, ld, cog, 1.0f, j->w + g * cog * kk, kk, t, ld, 0.0f, col, ld);
                for (int64_t b = 0; b < nb; b++)
                    col2im(c, col + b * hw, ld, cig, j->dx + ((b0 + b) * c->ci + g * cig) * plane);
            }
        }
    }
}

void nrt_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                           float *scratch) {
    if (pointwise(c, 1, dy, w, NULL, dx, scratch)) return;
    if (nrt_dwconv2d_grad_input(c, dy, w, dx, scratch)) return;
    if (nrt_wino_conv2d_grad_input(c, dy, w, dx, scratch)) return;
    if (nrt_ws2_conv2d_grad_input(c, dy, w, dx, scratch)) return;
    if (scatter_grad_input(c, dy, w, dx, scratch)) return;
    if (direct_grad_input(c, dy, w, dx, scratch)) return;
    if (subpix_grad_input(c, dy, w, dx, scratch)) return;
    if (tapsum_grad_input(c, dy, w, dx, scratch)) return;
    struct conv_job j = conv_job_init(c, scratch);
    j.dy = dy, j.w = w, j.dx = dx;
    nrt_parallel_for(j.tasks, 1, conv_dx_tasks, &j);
}

/* Task i > 0 sums its images' weight gradient into a partial dw at the start
 * of its scratch (task 0 into dw itself); the partials are added at the end. */
static void conv_dw_tasks(void *arg, int64_t lo, int64_t hi) {
    const struct conv_job *j = arg;
    const struct nrt_conv *c = j->c;
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    for (int64_t i = lo; i < hi; i++) {
        int64_t b1, b0;
        float *col = conv_task(j, i, &b0, &b1), *dw = j->dw;
        if (i > 0) dw = col, col += j->part;
        for (int64_t first = b0; b0 < b1; b0 += j->sub) {
            int64_t nb = b1 - b0 < j->sub ? b1 - b0 : j->sub, ld = nb * hw;
            float *t = col + kk * ld;
            for (int64_t g = 0; g < c->g; g++) {
                for (int64_t b = 0; b < nb; b++)
                    im2col(c, j->x + ((b0 + b) * c->ci + g * cig) * c->h * c->w, cig, col + b * hw, ld);
                to_channel_major(c, nb, g, j->dy + b0 * c->co * hw, t);
                nrt_sgemm(0, 1, cog, kk, ld, 1.0f, t, ld, col, ld, b0 == first ? 0.0f : 1.0f,
                          dw + g * cog * kk, kk);
            }
        }
    }
}

/* dw[lo, hi) += the partials of tasks 1.. */
static void conv_dw_sum(void *arg, int64_t lo, int64_t hi) {
    const struct conv_job *j = arg;
    for (int64_t i = 1; i < j->tasks; i++) {
        const float *part = j->scratch + i * j->region;
        for (int64_t k = lo; k < hi; k++) j->dw[k] += part[k];
    }
}

void nrt_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                            float *scratch) {
    if (pointwise(c, 2, x, NULL, dy, dw, scratch)) return;
    if (nrt_dwconv2d_grad_weight(c, x, dy, dw, scratch)) return;
    if (nrt_wino_conv2d_grad_weight(c, x, dy, dw, scratch)) return;
    if (nrt_ws2_conv2d_grad_weight(c, x, dy, dw, scratch)) return;
    if (direct_grad_weight(c, x, dy, dw, scratch)) return;
    if (s2d_grad_weight(c, x, dy, dw, scratch)) return;
    struct conv_job j = conv_job_init(c, scratch);
    j.x = x, j.dy = dy, j.dw = dw;
    int64_t per = nrt_conv_image_floats(c), wsize = c->co * (c->ci / c->g) * c->kh * c->kw;
    if (j.tasks > 1) {
        /* A partial dw in front of each task's scratch: fewer images per GEMM;
         * one task when a partial leaves no room for an image. */
        j.part = (wsize + 15) / 16 * 16;
        j.sub = (j.region - j.part) / per;
        if (j.sub < 1) j.tasks = 1, j.part = 0, j.sub = nrt_conv_chunk(c), j.region = j.sub * per;
    }
    nrt_parallel_for(j.tasks, 1, conv_dw_tasks, &j);
    if (j.tasks > 1) nrt_parallel_for(wsize, 4096, conv_dw_sum, &j);
}
