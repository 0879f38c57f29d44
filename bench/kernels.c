/* bench/kernels.c -- times libnetrt's heavy kernels on the layer shapes of
 * the seed CNNs (mnist_cnn, lenet) and the pointwise (1x1) convolutions of
 * bench/nets/dwsep.net and the stride-2 4x4 layer of examples/dcgan.net at a given batch and thread count:
 * median microseconds per call (CPU time on one thread, wall time on more) and GFLOP/s. For tuning the
 * kernels one at a time.
 *   cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -I. bench/kernels.c build/runtime/libnetrt.a \
 *      -lopenblas -lpng -lz -lm -lpthread -o kernels
 *   ./kernels [BATCH] [THREADS] [NAME: only the calls whose name holds it] */
#include "runtime/netrt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench/bench_clock.h"

/* What one timed call runs. */
struct call {
    const char *name;        /* printed */
    int op;                  /* 0 conv, 1 conv dx, 2 conv dw, 3 maxpool, 4 maxpool grad, 5 sgemm */
    struct nrt_conv c;       /* conv ops */
    struct nrt_pool p;       /* pool ops */
    int64_t m, n, k, ta, tb; /* sgemm */
};

static float *buf(int64_t n) {
    float *p = nrt_alloc((size_t)(n > 0 ? n : 1) * sizeof *p, 0);
    for (int64_t i = 0; i < n; i++) p[i] = (float)((i * 7919) % 101) / 50.0f - 1.0f;
    return p;
}

static void run(const struct call *k) {
    const struct nrt_conv *c = &k->c;
    const struct nrt_pool *p = &k->p;
    int64_t nx = c->n * c->ci * c->h * c->w, ny = c->n * c->co * c->ho * c->wo,
            nw = c->co * c->ci / (c->g ? c->g : 1) * c->kh * c->kw;
    if (k->op >= 3 && k->op <= 4) nx = p->planes * p->h * p->w, ny = p->planes * p->ho * p->wo;
    if (k->op == 5) nx = k->m * k->k, nw = k->k * k->n, ny = k->m * k->n;
    float *x = buf(nx), *w = buf(nw), *y = buf(ny), *s = buf(k->op < 3 ? nrt_conv_scratch(c) : 0),
          *dx = buf(nx);
    double lat[200], flops = 0;
    int n = 0;
    double t0 = now();
    for (int i = -3; i < 200 && (now() - t0 < 1.0 || n < 5); i++) {
        double t = now();
        switch (k->op) {
        case 0:
            nrt_conv2d(c, x, w, y, s);
            break;
        case 1:
            nrt_conv2d_grad_input(c, y, w, dx, s);
            break;
        case 2:
            nrt_conv2d_grad_weight(c, x, y, w, s);
            break;
        case 3:
            nrt_maxpool2d(p, x, y);
            break;
        case 4:
            nrt_maxpool2d_grad(p, x, y, dx);
            break;
        default:
            nrt_sgemm((int)k->ta, (int)k->tb, k->m, k->n, k->k, 1, x, k->ta ? k->m : k->k, w,
                      k->tb ? k->k : k->n, 0, y, k->n);
        }
        if (i >= 0) lat[n++] = now() - t;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_double);
    if (k->op < 3)
        flops = 2.0 * (double)ny * (double)(c->ci / c->g * c->kh * c->kw);
    else if (k->op == 5)
        flops = 2.0 * (double)(k->m * k->n * k->k);
    printf("%-28s %9.1f us %8.1f GFLOP/s\n", k->name, lat[n / 2] * 1e6, flops / lat[n / 2] / 1e9);
    nrt_free(x), nrt_free(w), nrt_free(y), nrt_free(s), nrt_free(dx);
}

int main(int argc, char **argv) {
    int64_t b = argc > 1 ? atoll(argv[1]) : 64;
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    nrt_blas_setup(argc, argv, threads);
    nrt_blas_threads(threads);
    cpu_clock = nrt_threads_get() == 1;
    struct nrt_conv c1 = {b, 1, 28, 28, 32, 3, 3, 26, 26, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    struct nrt_conv c2 = {b, 32, 13, 13, 64, 3, 3, 11, 11, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    struct nrt_conv l1 = {b, 1, 28, 28, 6, 5, 5, 28, 28, 1, {1, 1}, {2, 2, 2, 2}, {1, 1}, 0};
    struct nrt_conv l2 = {b, 6, 14, 14, 16, 5, 5, 10, 10, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    struct nrt_conv pw1 = {b, 32, 28, 28, 64, 1, 1, 28, 28, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    struct nrt_conv pw2 = {b, 64, 14, 14, 128, 1, 1, 14, 14, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    struct nrt_conv gd = {b, 64, 14, 14, 128, 4, 4, 7, 7, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0};
    struct nrt_conv gd0 = {b, 1, 28, 28, 64, 4, 4, 14, 14, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0};
    struct nrt_pool p1 = {32 * b, 26, 26, 13, 13, {2, 2}, {2, 2}, {0, 0, 0, 0}};
    struct nrt_pool p2 = {64 * b, 11, 11, 5, 5, {2, 2}, {2, 2}, {0, 0, 0, 0}};
    const struct call calls[] = {
        {"cnn conv1 fwd", 0, c1, {0}, 0, 0, 0, 0, 0},
        {"cnn conv1 dw", 2, c1, {0}, 0, 0, 0, 0, 0},
        {"cnn conv2 fwd", 0, c2, {0}, 0, 0, 0, 0, 0},
        {"cnn conv2 dx", 1, c2, {0}, 0, 0, 0, 0, 0},
        {"cnn conv2 dw", 2, c2, {0}, 0, 0, 0, 0, 0},
        {"cnn pool1 fwd", 3, {0}, p1, 0, 0, 0, 0, 0},
        {"cnn pool1 grad", 4, {0}, p1, 0, 0, 0, 0, 0},
        {"cnn pool2 fwd", 3, {0}, p2, 0, 0, 0, 0, 0},
        {"cnn pool2 grad", 4, {0}, p2, 0, 0, 0, 0, 0},
        {"cnn dense1 fwd", 5, {0}, {0}, b, 128, 1600, 0, 0},
        {"cnn dense1 dx", 5, {0}, {0}, b, 1600, 128, 0, 1},
        {"cnn dense1 dw", 5, {0}, {0}, 1600, 128, b, 1, 0},
        {"lenet conv1 fwd", 0, l1, {0}, 0, 0, 0, 0, 0},
        {"lenet conv1 dw", 2, l1, {0}, 0, 0, 0, 0, 0},
        {"lenet conv2 fwd", 0, l2, {0}, 0, 0, 0, 0, 0},
        {"lenet conv2 dx", 1, l2, {0}, 0, 0, 0, 0, 0},
        {"lenet conv2 dw", 2, l2, {0}, 0, 0, 0, 0, 0},
        {"dwsep 1x1 32-64 fwd", 0, pw1, {0}, 0, 0, 0, 0, 0},
        {"dwsep 1x1 32-64 dx", 1, pw1, {0}, 0, 0, 0, 0, 0},
        {"dwsep 1x1 32-64 dw", 2, pw1, {0}, 0, 0, 0, 0, 0},
        {"dwsep 1x1 64-128 fwd", 0, pw2, {0}, 0, 0, 0, 0, 0},
        {"dwsep 1x1 64-128 dx", 1, pw2, {0}, 0, 0, 0, 0, 0},
        {"dwsep 1x1 64-128 dw", 2, pw2, {0}, 0, 0, 0, 0, 0},
        {"dcgan 4x4/s2 64-128 fwd", 0, gd, {0}, 0, 0, 0, 0, 0},
        {"dcgan 4x4/s2 64-128 dx", 1, gd, {0}, 0, 0, 0, 0, 0},
        {"dcgan 4x4/s2 64-128 dw", 2, gd, {0}, 0, 0, 0, 0, 0},
        {"dcgan 4x4/s2 1-64 fwd", 0, gd0, {0}, 0, 0, 0, 0, 0},
        {"dcgan 4x4/s2 1-64 dx", 1, gd0, {0}, 0, 0, 0, 0, 0},
        {"dcgan 4x4/s2 1-64 dw", 2, gd0, {0}, 0, 0, 0, 0, 0},
    };
    printf("batch %lld, %d threads, OpenBLAS core %s\n", (long long)b, nrt_threads_get(), nrt_blas_core());
    for (size_t i = 0; i < sizeof calls / sizeof *calls; i++)
        if (argc <= 3 || strstr(calls[i].name, argv[3])) run(&calls[i]);
    return 0;
}
