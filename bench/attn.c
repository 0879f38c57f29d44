/* bench/attn.c -- times runtime/attn.c's nrt_attention and nrt_attention_grad
 * on tiny_gpt's shape (n 32, t 64, e 128, 4 heads, causal) or a given one:
 * median microseconds per call (CPU time on one thread, wall time on more) and
 * GFLOP/s as the profiler counts them (the unfused T x T core, codegen/c_summary.c).
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I. bench/attn.c build/runtime/libnetrt.a \
 *      -lopenblas -lpng -lz -lm -lpthread -o attn_bench
 *   ./attn_bench [THREADS] [N T E H CAUSAL] */
#include "runtime/netrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "bench/bench_clock.h"

static float *buf(int64_t n, int seed) {
    float *p = nrt_alloc((size_t)(n > 0 ? n : 1) * sizeof *p, 0);
    for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 7919 + seed) % 101) / 50.0f - 1.0f;
    return p;
}

int main(int argc, char **argv) {
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    const int64_t n = argc > 6 ? atoll(argv[2]) : 32, t = argc > 6 ? atoll(argv[3]) : 64,
                  e = argc > 6 ? atoll(argv[4]) : 128, h = argc > 6 ? atoll(argv[5]) : 4;
    const int causal = argc > 6 ? atoi(argv[6]) : 1;
    nrt_threads_set(threads);
    cpu_clock = nrt_threads_get() == 1;
    const int64_t d = e / h;
    const struct nrt_attn g = {n, t, e, h, 1.0f / sqrtf((float)d), causal};
    float *qkv = buf(n * t * 3 * e, 1), *y = buf(n * t * e, 2), *dy = buf(n * t * e, 3),
          *dqkv = buf(n * t * 3 * e, 4);
    float *s0 = buf(n * h * nrt_attn_scratch_floats(t, d, 0), 0),
          *s1 = buf(n * h * nrt_attn_scratch_floats(t, d, 1), 0);
    const double tt = (double)t * (double)t, ff = (double)n * (4 * tt * (double)e + 2 * tt * (double)h),
                 fb = (double)n * (10 * tt * (double)e + 4 * tt * (double)h);
    const char *only = getenv("ATTN_ONLY"); /* "fwd" or "bwd": one of the two */
    /* ATTN_COLD=MB: before each call, write that many MB elsewhere (as a training
     * step's other layers do), so that the operands come from L3, not L2. */
    const int64_t cold = getenv("ATTN_COLD") ? atoll(getenv("ATTN_COLD")) << 18 : 0;
    float *sweep = cold ? buf(cold, 5) : NULL;
    for (int pass = only && only[0] == 'b'; pass < (only && only[0] == 'f' ? 1 : 2); pass++) {
        double lat[400];
        int cnt = 0;
        const double t0 = now();
        for (int i = -3; i < 400 && (now() - t0 < 1.0 || cnt < 5); i++) {
            for (int64_t j = 0; j < cold; j += 16) sweep[j] += 1.0f;
            const double a = now();
            if (pass == 0)
                nrt_attention(&g, qkv, y, s0);
            else
                nrt_attention_grad(&g, qkv, y, dy, dqkv, s1);
            if (i >= 0) lat[cnt++] = now() - a;
        }
        qsort(lat, (size_t)cnt, sizeof *lat, cmp_double);
        printf("%-15s n %lld t %lld e %lld h %lld causal %d threads %d: median %7.1f us best %7.1f us  %6.1f "
               "GFLOP/s (as counted)\n",
               pass ? "attention_grad" : "attention", (long long)n, (long long)t, (long long)e, (long long)h,
               causal, nrt_threads_get(), lat[cnt / 2] * 1e6, lat[0] * 1e6,
               (pass ? fb : ff) / lat[cnt / 2] / 1e9);
    }
    nrt_free(qkv), nrt_free(y), nrt_free(dy), nrt_free(dqkv), nrt_free(s0), nrt_free(s1);
    if (sweep) nrt_free(sweep);
    return 0;
}
