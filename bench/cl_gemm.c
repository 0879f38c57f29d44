/* bench/cl_gemm.c -- SGEMM throughput on one OpenCL device: libnetrt_cl's
 * generated tiled GEMM (nrt_cl_sgemm) against CLBlast (the yardstick, Debian's
 * libclblast-dev) on the same device, and OpenBLAS (nrt_sgemm) on the host.
 * Square sizes 64..1024 and the GEMM shapes of mnist_cnn's training step at
 * batch 64. Each case repeats for about 0.5 s after a warm-up; GFLOP/s counts
 * 2mnk per call. Usage: cl_gemm [DEVICE-SPEC [netc]] (default 0:0; `netc`
 * measures only libnetrt_cl, for tuning with NETC_CL_GEMM=vw,wm,rx,ry,tk). CMake builds it as
 * build/bench/cl_gemm when CLBlast is installed (apt-get install libclblast-dev). */
#include "runtime/netrt.h"

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
#include <clblast_c.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A model with no kernels of its own and a workspace for three 1024^2 matrices. */
static const char src[] = "__kernel void nop(__global float *A) { }\n";
static const char *const names[] = {"nop"};
static const struct nrt_cl_program prog = {src, 1, names};
static const struct nrt_entry_desc entry = {.name = "none", .ws_fixed = (size_t)12 << 22};
static const struct nrt_model model = {.name = "cl_gemm",
                                       .netc_version = "bench",
                                       .n_entries = 1,
                                       .entries = &entry,
                                       .device = &nrt_cl_device_ops,
                                       .device_program = &prog};

/* One GEMM shape. */
struct shape {
    const char *what;
    int ta, tb;
    int64_t m, n, k;
};

struct clblast_dev {
    cl_context context;
    cl_command_queue queue;
    cl_mem a, b, c;
};

/* CLBlast's context on the device named like the runtime's, buffers for the
 * largest case. */
static int clblast_open(struct clblast_dev *d, const char *spec) {
    unsigned p = 0, dv = 0;
    if (sscanf(spec, "%u:%u", &p, &dv) != 2) p = dv = 0;
    cl_platform_id ps[16];
    cl_device_id ds[64];
    cl_uint np = 0, nd = 0;
    if (clGetPlatformIDs(16, ps, &np) || p >= np || clGetDeviceIDs(ps[p], CL_DEVICE_TYPE_ALL, 64, ds, &nd) ||
        dv >= nd)
        return 1;
    cl_int e;
    d->context = clCreateContext(NULL, 1, &ds[dv], NULL, NULL, &e);
    if (!d->context) return 1;
    d->queue = clCreateCommandQueue(d->context, ds[dv], 0, &e);
    size_t bytes = (size_t)4 << 22;
    d->a = clCreateBuffer(d->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    d->b = clCreateBuffer(d->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    d->c = clCreateBuffer(d->context, CL_MEM_READ_WRITE, bytes, NULL, &e);
    return !d->queue || !d->a || !d->b || !d->c;
}

/* GFLOP/s of one implementation: 0 netc, 1 CLBlast, 2 OpenBLAS. */
static double run(int impl, struct nrt_ctx *ctx, struct clblast_dev *d, const struct shape *s, float *ha,
                  float *hb, float *hc) {
    int64_t lda = s->ta ? s->m : s->k, ldb = s->tb ? s->k : s->n, ldc = s->n;
    int64_t a = ctx->ws_off, b = a + ((int64_t)1 << 22), c = b + ((int64_t)1 << 22);
    double t0 = 0, flops = 2.0 * (double)s->m * (double)s->n * (double)s->k;
    int reps = 0;
    for (int iter = -1; iter < 1000000; iter++) {
        if (iter == 0) t0 = now();
        if (impl == 0) {
            nrt_cl_sgemm(ctx, s->ta, s->tb, s->m, s->n, s->k, 1.0f, a, lda, b, ldb, 0.0f, c, ldc);
            nrt_cl_finish(ctx);
        } else if (impl == 1) {
            CLBlastStatusCode st =
                CLBlastSgemm(CLBlastLayoutRowMajor, s->ta ? CLBlastTransposeYes : CLBlastTransposeNo,
                             s->tb ? CLBlastTransposeYes : CLBlastTransposeNo, (size_t)s->m, (size_t)s->n,
                             (size_t)s->k, 1.0f, d->a, 0, (size_t)lda, d->b, 0, (size_t)ldb, 0.0f, d->c, 0,
                             (size_t)ldc, &d->queue, NULL);
            if (st != CLBlastSuccess) {
                fprintf(stderr, "CLBlastSgemm: status %d\n", (int)st);
                return 0;
            }
            clFinish(d->queue);
        } else {
            nrt_sgemm(s->ta, s->tb, s->m, s->n, s->k, 1.0f, ha, lda, hb, ldb, 0.0f, hc, ldc);
        }
        if (iter >= 0) reps++;
        if (iter >= 0 && now() - t0 > 0.5 && reps >= 3) break;
    }
    if (ctx->failed) {
        fprintf(stderr, "%s\n", ctx->err);
        exit(1);
    }
    return flops * reps / (now() - t0) / 1e9;
}

int main(int argc, char **argv) {
    nrt_blas_setup(argc, argv, 0);
    const char *spec = argc > 1 ? argv[1] : "0:0";
    nrt_ctx_device_set(spec);
    struct nrt_ctx ctx;
    if (nrt_ctx_init(&ctx, &model, 1, 1)) {
        fprintf(stderr, "cl_gemm: %s\n", nrt_error());
        return 1;
    }
    struct clblast_dev d;
    memset(&d, 0, sizeof d);
    if (clblast_open(&d, spec)) {
        fprintf(stderr, "cl_gemm: cannot open device %s for CLBlast\n", spec);
        return 1;
    }
    size_t big = (size_t)1 << 22;
    float *h = malloc(sizeof *h * big * 3);
    for (size_t i = 0; i < big * 3; i++) h[i] = (float)(i % 17) * 0.01f - 0.08f;
    nrt_cl_upload(&ctx, ctx.ws_off, h, sizeof *h * big * 3);
    clEnqueueWriteBuffer(d.queue, d.a, CL_TRUE, 0, big * 4, h, 0, NULL, NULL);
    clEnqueueWriteBuffer(d.queue, d.b, CL_TRUE, 0, big * 4, h + big, 0, NULL, NULL);
    static const struct shape shapes[] = {
        {"square 64", 0, 0, 64, 64, 64},         {"square 128", 0, 0, 128, 128, 128},
        {"square 256", 0, 0, 256, 256, 256},     {"square 512", 0, 0, 512, 512, 512},
        {"square 1024", 0, 0, 1024, 1024, 1024}, {"cnn conv1 fwd", 0, 0, 32, 6084, 9},
        {"cnn conv2 fwd", 0, 0, 64, 726, 288},   {"cnn conv2 dx", 1, 0, 288, 726, 64},
        {"cnn conv2 dw", 0, 1, 64, 288, 726},    {"cnn dense1 fwd", 0, 0, 64, 128, 1600},
        {"cnn dense1 dw", 1, 0, 1600, 128, 64},  {"cnn dense1 dx", 0, 1, 64, 1600, 128},
    };
    printf("device: %s; OpenBLAS core %s\n", nrt_cl_device_name(&ctx), nrt_blas_core());
    printf("%-16s %5s %5s %5s %2s %2s %10s %10s %10s\n", "case", "m", "n", "k", "ta", "tb", "netc", "CLBlast",
           "OpenBLAS");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        const struct shape *s = &shapes[i];
        double g0 = run(0, &ctx, &d, s, h, h + big, h + 2 * big);
        int only = argc > 2 && strcmp(argv[2], "netc") == 0;
        double g1 = only ? 0 : run(1, &ctx, &d, s, h, h + big, h + 2 * big);
        double g2 = only ? 0 : run(2, &ctx, &d, s, h, h + big, h + 2 * big);
        printf("%-16s %5lld %5lld %5lld %2d %2d %10.1f %10.1f %10.1f\n", s->what, (long long)s->m,
               (long long)s->n, (long long)s->k, s->ta, s->tb, g0, g1, g2);
        fflush(stdout);
    }
    printf("(GFLOP/s)\n");
    free(h);
    nrt_ctx_free(&ctx);
    return 0;
}
