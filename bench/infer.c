/* bench/infer.c -- inference timing of a netc model: links with the C that
 * `netc emit` writes (its main renamed away) and runs the forward entry point
 * on random inputs, one batch at a time, printing one JSON line with the
 * median latency per batch and the images per second it gives.
 *   netc emit model.net -o dir/
 *   cc -O3 -march=native -Dmain=netc_generated_main -c dir/model.c -Idir -o model.o
 *   cc -O3 -march=native model.o bench/infer.c -I. build/runtime/libnetrt.a \
 *      -lcairo -lopenblas -lpng -lz -lm -lpthread -ldl -o infer
 *   ./infer BATCH [THREADS] [SECONDS]
 * bench/bench.py builds and runs it. */
#include "runtime/netrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

extern const struct nrt_model netc_model;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s BATCH [THREADS] [SECONDS]\n", argv[0]);
        return 2;
    }
    int64_t batch = atoll(argv[1]);
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    double seconds = argc > 3 ? atof(argv[3]) : 2.0;
    nrt_blas_setup(argc, argv, threads);
    nrt_blas_threads(threads);
    const struct nrt_model *m = &netc_model;
    int fw = nrt_model_entry(m, "forward");
    struct nrt_ctx ctx;
    if (batch < 1 || fw < 0 || nrt_ctx_init(&ctx, m, batch, 1)) {
        fprintf(stderr, "%s: cannot set up the forward pass: %s\n", argv[0],
                fw < 0 ? "no forward" : nrt_error());
        return 1;
    }
    const struct nrt_entry_desc *e = &m->entries[fw];
    struct nrt_rng rng;
    nrt_rng_init(&rng, 7, 0);
    for (int i = 0; i < e->n_inputs; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[e->inputs[i]];
        int64_t count = nrt_desc_count(b->rank, b->dims, batch);
        if (b->dtype == NRT_DT_F32) nrt_rng_fill_uniform(&rng, ctx.buf[e->inputs[i]], (size_t)count, 0, 1);
    }
    /* Warm up for a tenth of the time, then time every run. */
    double t0 = now();
    while (now() - t0 < seconds / 10) nrt_ctx_run(&ctx, fw, batch);
    size_t cap = 1 << 20, n = 0;
    double *lat = malloc(cap * sizeof *lat);
    t0 = now();
    while (n < cap && (now() - t0 < seconds || n < 5)) {
        double t = now();
        if (nrt_ctx_run(&ctx, fw, batch)) {
            fprintf(stderr, "%s: %s\n", argv[0], nrt_error());
            return 1;
        }
        lat[n++] = now() - t;
    }
    qsort(lat, n, sizeof *lat, cmp_double);
    double med = lat[n / 2];
    printf("{\"batch\": %lld, \"runs\": %zu, \"latency_ms\": %.6f, \"images_per_second\": %.3f}\n",
           (long long)batch, n, med * 1e3, (double)batch / med);
    free(lat);
    nrt_ctx_free(&ctx);
    return 0;
}
