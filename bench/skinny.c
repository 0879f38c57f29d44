/* bench/skinny.c -- microseconds per call of nrt_sgemm and nrt_sgemm_adam on
 * the skinny products of a training step (one of the sizes 1 or small: the
 * DCGAN's dense layers 6272 -> 1 and 100 -> 6272 at batch 64, with the
 * leading dims the generated code passes), the best of R timings (wall clock)
 * at the given thread count. Usage: ./skinny [threads [repeats]]. Build:
 *   cc -O3 -march=native -std=c11 -D_POSIX_C_SOURCE=200809L -I. bench/skinny.c \
 *      build/runtime/libnetrt.a -lopenblas -lpng -lz -lm -lpthread -lcairo -o skinny */
#include "runtime/netrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static float *filled(int64_t n, int seed) {
    float *v = nrt_alloc((size_t)(n > 0 ? n : 1) * 4, 0);
    for (int64_t i = 0; i < n; i++) v[i] = (float)((i * 7 + seed) % 23) * 0.01f - 0.1f;
    return v;
}

/* One product: nrt_sgemm's arguments (alpha 1, beta 0). */
struct shape {
    const char *what;
    int ta, tb;
    int64_t m, n, k, lda, ldb, ldc;
};

static double time_gemm(const struct shape *s, int reps) {
    const int64_t ar = s->ta ? s->k : s->m, br = s->tb ? s->n : s->k;
    float *a = filled(ar * s->lda, 1), *b = filled(br * s->ldb, 2), *c = filled(s->m * s->ldc, 3);
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        nrt_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, s->lda, b, s->ldb, 0.0f, c, s->ldc);
        const double t = now() - t0;
        best = t < best ? t : best;
    }
    nrt_free(a), nrt_free(b), nrt_free(c);
    return best * 1e6;
}

/* nrt_sgemm_adam's gradient product with the update over its m x n elements. */
static double time_adam(const struct shape *s, int reps) {
    const int64_t ar = s->ta ? s->k : s->m, br = s->tb ? s->n : s->k, mn = s->m * s->n;
    float *a = filled(ar * s->lda, 1), *b = filled(br * s->ldb, 2), *scratch = filled(mn, 3);
    float *st[3], sc[7] = {0.5f, 0.5f, 0.999f, 0.001f, 0.03f, 1e-8f, 2e-4f};
    for (int i = 0; i < 3; i++) st[i] = filled(mn, 4 + i);
    for (int64_t p = 0; p < mn; p++) st[1][p] = st[1][p] * st[1][p];
    const struct nrt_adam u = {st[0],  st[1],  st[2],  st[0],  st[1],  st[2], &sc[0], &sc[1],
                               &sc[2], &sc[3], &sc[4], &sc[5], &sc[6], NULL,  NULL};
    double best = 1e9;
    for (int r = 0; r < reps; r++) {
        const double t0 = now();
        nrt_sgemm_adam(s->ta, s->tb, s->m, s->n, s->k, a, s->lda, b, s->ldb, scratch, &u);
        const double t = now() - t0;
        best = t < best ? t : best;
    }
    nrt_free(a), nrt_free(b), nrt_free(scratch);
    for (int i = 0; i < 3; i++) nrt_free(st[i]);
    return best * 1e6;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 200;
    nrt_blas_setup(argc, argv, threads);
    nrt_blas_threads(threads);
    static const struct shape gemms[] = {
        {"D.dense0 forward (matvec)", 0, 0, 64, 1, 6272, 6272, 1, 1},
        {"D.dense0 weight grad (A^T x)", 1, 0, 6272, 1, 64, 6272, 1, 1},
        {"D.dense0 input grad (k=1)", 0, 1, 64, 6272, 1, 1, 1, 6272},
        {"G.dense0 forward", 0, 0, 64, 6272, 100, 100, 6272, 6272},
        {"matvec 256 rows", 0, 0, 256, 1, 6272, 6272, 1, 1},
        {"matvec batch 1", 0, 0, 1, 1, 6272, 6272, 1, 1},
        {"A^T x, 3 cols", 1, 0, 6272, 3, 64, 6272, 3, 3},
        {"k=3 outer", 0, 0, 64, 6272, 3, 3, 6272, 6272},
        {"G.dense0 weight grad alone", 1, 0, 100, 6272, 64, 100, 6272, 6272},
    };
    static const struct shape adams[] = {
        {"G.dense0 weight grad + Adam", 1, 0, 100, 6272, 64, 100, 6272, 6272},
        {"D.dense0 weight grad + Adam", 1, 0, 6272, 1, 64, 6272, 1, 1},
    };
    printf("threads %d, best of %d, GEMM library %s\n", threads, reps, nrt_gemm_library());
    for (size_t i = 0; i < sizeof gemms / sizeof *gemms; i++) {
        const struct shape *s = &gemms[i];
        const double us = time_gemm(s, reps);
        printf("  %-30s %s%s m=%-5lld n=%-5lld k=%-5lld %9.1f us %7.1f GFLOP/s\n", s->what, s->ta ? "T" : "N",
               s->tb ? "T" : "N", (long long)s->m, (long long)s->n, (long long)s->k, us,
               2.0 * (double)(s->m * s->n * s->k) / us / 1e3);
    }
    for (size_t i = 0; i < sizeof adams / sizeof *adams; i++) {
        const struct shape *s = &adams[i];
        const double us = time_adam(s, reps);
        printf("  %-30s %s%s m=%-5lld n=%-5lld k=%-5lld %9.1f us %7.1f GFLOP/s (GEMM only)\n", s->what,
               s->ta ? "T" : "N", s->tb ? "T" : "N", (long long)s->m, (long long)s->n, (long long)s->k, us,
               2.0 * (double)(s->m * s->n * s->k) / us / 1e3);
    }
    return 0;
}
