/* bench/peak.c -- the machine's peak single-precision FMA rate: each thread
 * runs a loop of independent vector FMAs (AVX-512, else AVX2+FMA, else scalar
 * as the compiler's target allows) that never touches memory, and the total
 * GFLOP/s (2 per FMA lane) is printed for 1 thread and for THREADS threads.
 *   cc -O2 -march=native -pthread bench/peak.c -o peak && ./peak [THREADS] */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if defined(__AVX512F__) || defined(__FMA__)
#include <immintrin.h>
#endif

#define ACC 12           /* independent accumulators: covers FMA latency x ports */
#define ITERS (1L << 24) /* loop trips per thread */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Runs ITERS trips of ACC FMAs; returns FLOPs done (the result is kept alive). */
static void *fma_loop(void *out) {
#if defined(__AVX512F__)
    __m512 a[ACC], x = _mm512_set1_ps(0.999999f), y = _mm512_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++) a[i] = _mm512_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < ACC; i++) a[i] = _mm512_fmadd_ps(a[i], x, y);
    }
    float s = 0;
    for (int i = 0; i < ACC; i++) s += _mm512_reduce_add_ps(a[i]);
    *(double *)out = 2.0 * 16 * ACC * (double)ITERS + (s == 12345 ? 1 : 0);
#elif defined(__FMA__)
    __m256 a[ACC], x = _mm256_set1_ps(0.999999f), y = _mm256_set1_ps(1e-7f);
    for (int i = 0; i < ACC; i++) a[i] = _mm256_set1_ps((float)i);
    for (long it = 0; it < ITERS; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < ACC; i++) a[i] = _mm256_fmadd_ps(a[i], x, y);
    }
    float v[8], s = 0;
    for (int i = 0; i < ACC; i++) {
        _mm256_storeu_ps(v, a[i]);
        for (int k = 0; k < 8; k++) s += v[k];
    }
    *(double *)out = 2.0 * 8 * ACC * (double)ITERS + (s == 12345 ? 1 : 0);
#else
    volatile float sink;
    float a[ACC];
    for (int i = 0; i < ACC; i++) a[i] = (float)i;
    for (long it = 0; it < ITERS / 16; it++)
        for (int i = 0; i < ACC; i++) a[i] = a[i] * 0.999999f + 1e-7f;
    sink = a[0];
    (void)sink;
    *(double *)out = 2.0 * ACC * (double)(ITERS / 16);
#endif
    return NULL;
}

/* GFLOP/s of t threads running the loop at once (best of 10: a peak). */
static double peak(int t) {
    double best = 0;
    for (int rep = 0; rep < 10; rep++) {
        pthread_t tid[256];
        double flops[256];
        double t0 = now();
        for (int i = 0; i < t; i++) pthread_create(&tid[i], NULL, fma_loop, &flops[i]);
        double total = 0;
        for (int i = 0; i < t; i++) {
            pthread_join(tid[i], NULL);
            total += flops[i];
        }
        double g = total / (now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    return best;
}

int main(int argc, char **argv) {
    int t = argc > 1 ? atoi(argv[1]) : 2;
    t = t < 1 ? 1 : t > 256 ? 256 : t;
    const char *isa =
#if defined(__AVX512F__)
        "avx512";
#elif defined(__FMA__)
        "avx2";
#else
        "scalar";
#endif
    double one = peak(1), all = t > 1 ? peak(t) : one;
    printf("{\"isa\": \"%s\", \"threads\": %d, \"gflops_1\": %.1f, \"gflops\": %.1f}\n", isa, t, one, all);
    return 0;
}
