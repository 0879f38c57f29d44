/* bench/sgemm.c -- SGEMM throughput through libnetrt's nrt_sgemm (oneDNN or
 * OpenBLAS), to compare the GEMM libraries and what OPENBLAS_CORETYPE does on
 * this CPU. Run it several ways:
 *   NETC_GEMM=onednn ./sgemm         oneDNN for the large GEMMs, where built with it
 *   ./sgemm                          OpenBLAS, nrt_blas_setup's core choice
 *   NETC_BLAS_SETUP=1 ./sgemm        OpenBLAS's own core choice (no re-exec)
 *   NETC_BLAS_SETUP=1 ./sgemm 0 setenv   setenv in main, before the first BLAS call
 * Prints GFLOP/s for square sizes, the MLP's training shapes and tiny_gpt's
 * (M = 2048 rows of 32 windows of 64 tokens; NT/TN: a transposed operand, as
 * the backward's). Optional argument: the thread count. Build:
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I. bench/sgemm.c build/runtime/libnetrt.a \
 *      -lopenblas -lpng -lz -lm -lpthread -o sgemm */
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

/* GFLOP/s of C[m,n] = op(A) op(B) (op: transposed where ta, tb), repeated for
 * about 0.5 s. */
static double bench(int ta, int tb, int64_t m, int64_t n, int64_t k) {
    float *a = nrt_alloc((size_t)(m * k) * 4, 0), *b = nrt_alloc((size_t)(k * n) * 4, 0);
    float *c = nrt_alloc((size_t)(m * n) * 4, 0);
    const int64_t lda = ta ? m : k, ldb = tb ? k : n;
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)(i % 13) * 0.1f;
    for (int64_t i = 0; i < k * n; i++) b[i] = (float)(i % 7) * 0.1f;
    nrt_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
    int reps = 0;
    double t0 = now(), t;
    do {
        nrt_sgemm(ta, tb, m, n, k, 1, a, lda, b, ldb, 0, c, n);
        reps++;
    } while ((t = now() - t0) < 0.5);
    nrt_free(a);
    nrt_free(b);
    nrt_free(c);
    return 2.0 * (double)m * (double)n * (double)k * reps / t / 1e9;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 0;
    if (argc > 2 && strcmp(argv[2], "setenv") == 0) setenv("OPENBLAS_CORETYPE", "SkylakeX", 1);
    nrt_blas_setup(argc, argv, threads);
    nrt_blas_threads(threads);
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
    return 0;
}
