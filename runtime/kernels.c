/* runtime/kernels.c -- the GEMMs that generated code and the conv kernels call:
 * SGEMM through the runtime's own AVX-512 kernel (sgemm.c), or
 * single-threaded oneDNN (dnnl_sgemm, loaded at run time where built with it
 * and found, NETC_GEMM=onednn) or OpenBLAS, split over the thread pool
 * when large (plus picking OpenBLAS's core type before it initialises).
 * The convolutions are in conv.c. */
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
