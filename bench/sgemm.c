/* bench/sgemm.c -- SGEMM throughput through libnetrt's nrt_sgemm (the
 * runtime's own kernel, oneDNN or OpenBLAS), to compare the GEMM libraries and
 * what OPENBLAS_CORETYPE does on this CPU. Run it several ways:
 *   ./sgemm 1                        the runtime's own GEMM (runtime/sgemm.c, AVX-512 builds)
 *   NETC_GEMM=onednn ./sgemm         oneDNN for the large GEMMs, where built with it
 *   NETC_GEMM=openblas ./sgemm       OpenBLAS, nrt_blas_setup's core choice
 *   NETC_BLAS_SETUP=1 ./sgemm        OpenBLAS's own core choice (no re-exec)
 *   NETC_BLAS_SETUP=1 ./sgemm 0 setenv   setenv in main, before the first BLAS call
 * Prints GFLOP/s for square sizes, the MLP's training shapes and tiny_gpt's
 * (M = 2048 rows of 32 windows of 64 tokens; NT/TN: a transposed operand, as
 * the backward's); then, with "panels" as the third argument, tiny_gpt's GEMMs
 * with an elementwise tail (bias + GELU into two outputs, or GELU's gradient)
 * done whole then tail, or by row panels of P rows each finished by the tail
 * while in cache (per-call overhead of the split, choice of P). Optional
 * first argument: the thread count (at 1: the best of 15 timings in CPU time,
 * the machine being shared; else the wall clock). Build:
 *   cc -O3 -march=native -fno-math-errno -fno-trapping-math -std=c11 -D_POSIX_C_SOURCE=200809L -I.
 * bench/sgemm.c build/runtime/libnetrt.a \ -lopenblas -lpng -lz -lm -lpthread -lcairo -o sgemm */
#include "runtime/netrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* This thread's CPU seconds (the machine is shared: less disturbed than the wall clock). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The clock bench() times by: this thread's CPU time at one thread (the
 * machine is shared), else the wall clock. */
static int use_cpu_clock;
static double timer(void) { return use_cpu_clock ? cpu_now() : now(); }

/* GFLOP/s of C[m,n] = op(A) op(B) (op: transposed where ta, tb): the best of
 * 15 timings. */
static double bench(int ta, int tb, int64_t m, int64_t n, int64_t k) {
    float *a = nrt_alloc((size_t)(m * k) * 4, 0), *b = nrt_alloc((size_t)(k * n) * 4, 0);
    float *c = nrt_alloc((size_t)(m * n) * 4, 0);
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)(i % 13) * 0.1f;
    for (int64_t i = 0; i < k * n; i++) b[i] = (float)(i % 7) * 0.1f;
    nrt_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
    double best = 1e9;
    for (int rep = 0; rep < 15; rep++) { /* best of 15 timings of 3 calls, CPU or wall clock */
        const double t0 = timer();
        for (int i = 0; i < 3; i++) nrt_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
        const double t = (timer() - t0) / 3;
        best = t < best ? t : best;
    }
    nrt_free(a);
    nrt_free(b);
    nrt_free(c);
    return 2.0 * (double)m * (double)n * (double)k / best / 1e9;
}

/* The tail of tiny_gpt's fc1: pre = c + bias, c = gelu(pre) (rows of n); and
 * of its backward: c *= gelu'(x). */
static void tail_gelu(int64_t rows, int64_t n, float *restrict c, float *restrict pre,
                      const float *restrict bias) {
    for (int64_t i = 0; i < rows; i++)
        for (int64_t j = 0; j < n; j++) {
            const float t = c[i * n + j] + bias[j];
            pre[i * n + j] = t;
            c[i * n + j] = t * nrt_gelu_phi(t); /* as the generated code */
        }
}

static void tail_grad(int64_t count, float *restrict c, const float *restrict x) {
    for (int64_t e = 0; e < count; e++) c[e] = c[e] * nrt_gelu_grad(x[e]);
}

static void tail(int grad, int64_t rows, int64_t n, float *c, float *pre, const float *bias, const float *x) {
    if (grad)
        tail_grad(rows * n, c, x);
    else
        tail_gelu(rows, n, c, pre, bias);
}

/* Milliseconds per GEMM C[m,n] = A op(B) (+ the tail when `with`), by panels of
 * p rows (p = m: one GEMM, then one tail pass), single-threaded: the best of 25
 * in CPU time. */
static double panels(int tb, int64_t m, int64_t n, int64_t k, int64_t p, int with, int grad) {
    float *a = nrt_alloc((size_t)(m * k) * 4, 0), *b = nrt_alloc((size_t)(k * n) * 4, 0);
    float *c = nrt_alloc((size_t)(m * n) * 4, 0), *pre = nrt_alloc((size_t)(m * n) * 4, 0);
    float *x = nrt_alloc((size_t)(m * n) * 4, 0), *bias = nrt_alloc((size_t)n * 4, 0);
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)(i % 13) * 0.01f;
    for (int64_t i = 0; i < k * n; i++) b[i] = (float)(i % 7) * 0.01f;
    for (int64_t i = 0; i < m * n; i++) x[i] = (float)(i % 11) * 0.1f - 0.5f;
    for (int64_t i = 0; i < n; i++) bias[i] = 0.01f * (float)i;
    const int64_t ldb = tb ? k : n;
    double best = 1e9;
    for (int rep = 0; rep < 25; rep++) { /* the best of 25, in this thread's CPU time */
        const double t0 = cpu_now();
        for (int64_t r = 0; r < m; r += p) {
            const int64_t rows = m - r < p ? m - r : p;
            nrt_sgemm(0, tb, rows, n, k, 1, a + r * k, k, b, ldb, 0, c + r * n, n);
            if (with && p < m) tail(grad, rows, n, c + r * n, pre + r * n, bias, x + r * n);
        }
        if (with && p >= m) tail(grad, m, n, c, pre, bias, x);
        const double t = cpu_now() - t0;
        best = t < best ? t : best;
    }
    float *bufs[] = {a, b, c, pre, x, bias};
    for (size_t i = 0; i < sizeof bufs / sizeof *bufs; i++) nrt_free(bufs[i]);
    return best * 1e3;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2 && strcmp(argv[2], "setenv") == 0) setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    nrt_blas_setup(argc, argv, threads);
    nrt_blas_threads(threads);
    use_cpu_clock = threads == 1;
    const char *core = getenv("OPENBLAS_CORETYPE");
    printf("GEMM library %s; OPENBLAS_CORETYPE=%s, OpenBLAS core %s, threads=%s\n", nrt_gemm_library(),
           core ? core : "(unset)", nrt_blas_core(), threads ? argv[1] : "default");
    static const int64_t shapes[][5] = {
        {0, 0, 256, 256, 256},  {0, 0, 512, 512, 512},  {0, 0, 1024, 1024, 1024}, {0, 0, 64, 256, 784},
        {0, 0, 784, 256, 64},   {0, 0, 64, 784, 256},   {0, 1, 2048, 384, 128},   {0, 0, 2048, 512, 128},
        {0, 0, 2048, 128, 512}, {0, 0, 2048, 96, 128},  {0, 1, 2048, 512, 128},   {0, 1, 2048, 128, 512},
        {0, 0, 2048, 128, 384}, {1, 0, 128, 512, 2048}, {1, 0, 384, 128, 2048},   {1, 0, 128, 96, 2048}};
    double total = 0;
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const double gf =
            bench((int)shapes[i][0], (int)shapes[i][1], shapes[i][2], shapes[i][3], shapes[i][4]);
        printf("  %s%s m=%-5lld n=%-5lld k=%-5lld %7.1f GFLOP/s\n", shapes[i][0] ? "T" : "N",
               shapes[i][1] ? "T" : "N", (long long)shapes[i][2], (long long)shapes[i][3],
               (long long)shapes[i][4], gf);
        if (i >= 6) total += 2.0 * (double)(shapes[i][2] * shapes[i][3] * shapes[i][4]) / gf / 1e6;
    }
    printf("tiny_gpt shapes: %.2f ms for one of each\n", total);
    if (argc < 4 || strcmp(argv[3], "panels") != 0) return 0;
    nrt_threads_set(1);
    static const int64_t tails[][5] = {/* tb, m, n, k, grad */
                                       {0, 2048, 512, 128, 0},
                                       {1, 2048, 512, 128, 1},
                                       {0, 2048, 128, 512, 1}};
    static const int64_t ps[] = {2048, 512, 256, 128, 64, 32};
    printf("one thread, ms per call: GEMM alone | GEMM + tail, by panels of P rows\n");
    for (size_t i = 0; i < sizeof tails / sizeof *tails; i++)
        for (size_t j = 0; j < sizeof ps / sizeof *ps; j++) {
            const int64_t *s = tails[i];
            const double g = panels((int)s[0], s[1], s[2], s[3], ps[j], 0, (int)s[4]);
            const double gt = panels((int)s[0], s[1], s[2], s[3], ps[j], 1, (int)s[4]);
            printf("  N%s m=%lld n=%-4lld k=%-4lld %s P=%-5lld %7.3f | %7.3f ms  (%5.1f GFLOP/s with tail)\n",
                   s[0] ? "T" : "N", (long long)s[1], (long long)s[2], (long long)s[3],
                   s[4] ? "gelu_grad" : "add+gelu ", (long long)ps[j], g, gt,
                   2.0 * (double)(s[1] * s[2] * s[3]) / gt / 1e6);
        }
    return 0;
}
