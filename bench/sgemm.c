/* bench/sgemm.c -- SGEMM throughput through libnetrt's nrt_sgemm (OpenBLAS), to
 * measure what OPENBLAS_CORETYPE does on this CPU. Run it twice:
 *   NETC_BLAS_SETUP=1 ./sgemm        OpenBLAS's own core choice (no re-exec)
 *   ./sgemm                          nrt_blas_setup's choice (SkylakeX on AVX-512)
 *   NETC_BLAS_SETUP=1 ./sgemm 0 setenv   setenv in main, before the first BLAS call
 * Prints GFLOP/s for square sizes and for the MLP's training shapes. Optional
 * argument: the thread count. Build:
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

/* GFLOP/s of C[m,n] = A[m,k] B[k,n], repeated for about 0.5 s. */
static double bench(int64_t m, int64_t n, int64_t k) {
    float *a = nrt_alloc((size_t)(m * k) * 4, 0), *b = nrt_alloc((size_t)(k * n) * 4, 0);
    float *c = nrt_alloc((size_t)(m * n) * 4, 0);
    for (int64_t i = 0; i < m * k; i++) a[i] = (float)(i % 13) * 0.1f;
    for (int64_t i = 0; i < k * n; i++) b[i] = (float)(i % 7) * 0.1f;
    nrt_sgemm(0, 0, m, n, k, 1, a, k, b, n, 0, c, n);
    int reps = 0;
    double t0 = now(), t;
    do {
        nrt_sgemm(0, 0, m, n, k, 1, a, k, b, n, 0, c, n);
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
    printf("OPENBLAS_CORETYPE=%s, OpenBLAS core %s, threads=%s\n", core ? core : "(unset)", nrt_blas_core(),
           threads ? argv[1] : "default");
    static const int64_t shapes[][3] = {{256, 256, 256}, {512, 512, 512}, {1024, 1024, 1024},
                                        {64, 256, 784},  {784, 256, 64},  {64, 784, 256}};
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++)
        printf("  m=%-5lld n=%-5lld k=%-5lld %7.1f GFLOP/s\n", (long long)shapes[i][0],
               (long long)shapes[i][1], (long long)shapes[i][2],
               bench(shapes[i][0], shapes[i][1], shapes[i][2]));
    return 0;
}
