/* tests/unit/test_cl_runtime.c -- the OpenCL device layer (runtime/cl.c) on the
 * machine's first OpenCL device (PoCL's CPU device in CI): device choice and
 * its errors, the binary cache, copies, launches and failure handling, and every
 * library op against its CPU version in runtime/kernels.c.
 *
 * Tolerances. Pooling, upsampling and the conv input gradient's col2im add the
 * same terms in the same order as the CPU code, so they must agree to 1e-6
 * relative (bitwise in practice; the slack covers a compiler contracting a
 * multiply-add). GEMM sums k products in another order than OpenBLAS (tiles of
 * TK, fused multiply-adds), so each element is checked against the magnitude of
 * what it sums: |cl - cpu| <= 1e-4 * (|alpha| sum_p |a_ip b_pj| + |beta c_ij|),
 * a relative bound of 1e-4 where no cancellation happens, which also covers the
 * convolutions (GEMMs on im2col matrices). */
#include "test.h"
#include "test_runtime.h"

#include <dirent.h>
#include <stdlib.h>

/* A model with one OpenCL kernel (y = 2 x + w), one input, one parameter,
 * one state buffer and a workspace big enough for every op below. */
static const char model_src[] = "__kernel void twice(__global float *A, long x, long w, long y, int n) {\n"
                                "    int i = get_global_id(0);\n"
                                "    if (i < n) A[y + i] = 2.0f * A[x + i] + A[w + i % 4];\n"
                                "}\n";
static const char *const model_kernels[] = {"twice"};
static const struct nrt_cl_program model_cl = {model_src, 1, model_kernels};

#define WS_FLOATS (6 << 20) /* 24 MiB of workspace */

static const struct nrt_buffer_desc bufs[] = {
    {.name = "x", .kind = NRT_BUF_INPUT, .dtype = NRT_DT_F32, .rank = 2, .dims = {NRT_DIM_N, 3}},
    {.name = "w",
     .kind = NRT_BUF_PARAM,
     .dtype = NRT_DT_F32,
     .rank = 1,
     .dims = {4},
     .init = NRT_INIT_UNIFORM,
     .init_a = -1,
     .init_b = 1},
    {.name = "count",
     .kind = NRT_BUF_STATE,
     .dtype = NRT_DT_I32,
     .rank = 1,
     .dims = {1},
     .init = NRT_INIT_CONST,
     .init_a = 7},
};

/* The entry point: y (workspace) = twice(x) for n items, downloaded to ctx->ws. */
static void run_twice(struct nrt_ctx *ctx, int64_t n) {
    int64_t y = ctx->ws_off, cnt = n * 3;
    nrt_cl_upload(ctx, ctx->buf_off[0], ctx->buf[0], (size_t)cnt * 4);
    nrt_cl_upload_state(ctx);
    struct nrt_cl_arg args[] = {{NRT_CL_ARENA, 0, 0},
                                {NRT_CL_LONG, ctx->buf_off[0], 0},
                                {NRT_CL_LONG, ctx->buf_off[1], 0},
                                {NRT_CL_LONG, y, 0},
                                {NRT_CL_INT, cnt, 0}};
    size_t global = (size_t)cnt;
    nrt_cl_launch(ctx, 0, 1, &global, NULL, 5, args);
    nrt_cl_download(ctx, y, ctx->ws, (size_t)cnt * 4);
    ctx->out[0] = ctx->ws;
}

static const struct nrt_output_desc outs[] = {
    {.name = "y", .dtype = NRT_DT_F32, .rank = 2, .dims = {NRT_DIM_N, 3}}};
static const int entry_inputs[] = {0};
static const struct nrt_entry_desc entries[] = {{.name = "forward",
                                                 .mode = NRT_MODE_EVAL,
                                                 .n_outputs = 1,
                                                 .outputs = outs,
                                                 .n_inputs = 1,
                                                 .inputs = entry_inputs,
                                                 .run = run_twice,
                                                 .ws_fixed = (size_t)WS_FLOATS * 4}};
static const struct nrt_model model = {.name = "cltest",
                                       .netc_version = "test",
                                       .n_buffers = 3,
                                       .buffers = bufs,
                                       .n_entries = 1,
                                       .entries = entries,
                                       .seed = 1,
                                       .target = "opencl",
                                       .device = &nrt_cl_device_ops,
                                       .device_program = &model_cl};

static struct nrt_ctx ctx; /* the context the op tests share */

/* Fills n floats with values in [-1, 1) from seed. */
static float *randv(int64_t n, uint64_t seed) {
    float *p = malloc(sizeof *p * (size_t)(n ? n : 1));
    struct nrt_rng r;
    nrt_rng_init(&r, seed, 0);
    nrt_rng_fill_uniform(&r, p, (size_t)n, -1, 1);
    return p;
}

/* Bump allocation of workspace element offsets for one test. */
static int64_t ws_next;
static int64_t ws_take(int64_t n) {
    int64_t at = ctx.ws_off + ws_next;
    ws_next += (n + 15) / 16 * 16;
    if (ws_next > WS_FLOATS) {
        fprintf(stderr, "test workspace exhausted\n");
        exit(1);
    }
    return at;
}

static int64_t put(const float *p, int64_t n) {
    int64_t at = ws_take(n);
    nrt_cl_upload(&ctx, at, p, (size_t)n * 4);
    return at;
}

static float *get(int64_t at, int64_t n) {
    float *p = malloc(sizeof *p * (size_t)(n ? n : 1));
    nrt_cl_download(&ctx, at, p, (size_t)n * 4);
    return p;
}

/* Every element within rel of the reference (relative to max(1e-3, |ref|)
 * unless scale gives each element's magnitude); reports the worst one. */
static void expect_close(const char *what, const float *got, const float *ref, const double *scale, int64_t n,
                         double rel) {
    int64_t bad = -1;
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double mag = scale ? scale[i] : fabs((double)ref[i]);
        double err = fabs((double)got[i] - (double)ref[i]) / (mag > 1e-3 ? mag : 1e-3);
        if (!(err <= worst) || got[i] != got[i]) {
            worst = err;
            if (!(err <= rel)) bad = i;
        }
    }
    if (bad >= 0)
        TEST_FAIL_("%s: element %lld is %.9g, expected %.9g (relative error %.3g > %g)", what, (long long)bad,
                   got[bad], ref[bad], worst, rel);
    else
        test_passed++;
}

/* ------------------------------------------------------------------ tests -- */

static void test_device_errors(void) {
    struct nrt_ctx c;
    nrt_ctx_device_set("no-such-device-xyz");
    EXPECT_ERR(nrt_ctx_init(&c, &model, 4, 1), "no device matches 'no-such-device-xyz'");
    CHECK(c.dev == NULL && c.buf == NULL);
    nrt_ctx_device_set("9:9");
    EXPECT_ERR(nrt_ctx_init(&c, &model, 4, 1), "--device list");
    nrt_ctx_device_set("0:0");
    EXPECT_OK(nrt_ctx_init(&c, &model, 4, 1));
    CHECK(strstr(nrt_cl_device_name(&c), " / ") != NULL);
    nrt_ctx_free(&c);
    nrt_ctx_device_set(NULL);
    /* A build error shows in the message. */
    static const struct nrt_cl_program broken = {"__kernel void twice(__global float *A) { oops; }", 1,
                                                 model_kernels};
    struct nrt_model bad = model;
    bad.device_program = &broken;
    EXPECT_ERR(nrt_ctx_init(&c, &bad, 4, 1), "building the model kernels failed");
    EXPECT_OK(nrt_cl_device_list());
}

/* Counts the cache's files. */
static int cache_files(const char *d) {
    DIR *dp = opendir(d);
    int n = 0;
    if (!dp) return 0;
    for (struct dirent *e; (e = readdir(dp));) n += e->d_name[0] != '.';
    closedir(dp);
    return n;
}

/* Truncates every cache file to a few bytes, or fills it with junk. */
static void cache_damage(const char *d, int junk) {
    DIR *dp = opendir(d);
    if (!dp) return;
    for (struct dirent *e; (e = readdir(dp));) {
        if (e->d_name[0] == '.') continue;
        char p[600];
        snprintf(p, sizeof p, "%s/%s", d, e->d_name);
        write_file(p, junk ? "NETCCLB1\x10\0\0\0\0\0\0\0garbagegarbagegarbage!!" : "NETC", junk ? 40 : 4);
    }
    closedir(dp);
}

static void test_cache(void) {
    struct nrt_ctx c;
    char home[100], cdir[300];
    snprintf(home, sizeof home, "%s/cache2", dir); /* empty: the tests before filled the first */
    setenv("XDG_CACHE_HOME", home, 1);
    snprintf(cdir, sizeof cdir, "%s/netc/cl", home);
    EXPECT_OK(nrt_ctx_init(&c, &model, 4, 1));
    ASSERT(1, nrt_cl_built_from_source(&c));
    nrt_ctx_free(&c);
    ASSERT(2, cache_files(cdir)); /* the runtime's program and the model's */
    EXPECT_OK(nrt_ctx_init(&c, &model, 4, 1));
    ASSERT(0, nrt_cl_built_from_source(&c));
    nrt_ctx_free(&c);
    for (int junk = 0; junk < 2; junk++) {
        cache_damage(cdir, junk);
        EXPECT_OK(nrt_ctx_init(&c, &model, 4, 1));
        ASSERT(1, nrt_cl_built_from_source(&c));
        nrt_ctx_free(&c);
        EXPECT_OK(nrt_ctx_init(&c, &model, 4, 1));
        ASSERT(0, nrt_cl_built_from_source(&c));
        nrt_ctx_free(&c);
    }
    setenv("NETC_CL_CACHE", "0", 1);
    EXPECT_OK(nrt_ctx_init(&c, &model, 4, 1));
    ASSERT(1, nrt_cl_built_from_source(&c));
    nrt_ctx_free(&c);
    unsetenv("NETC_CL_CACHE");
    setenv("XDG_CACHE_HOME", dir, 1);
}

/* Launch, copies, state upload and sync, and failure handling. */
static void test_launch_and_state(void) {
    struct nrt_ctx c;
    EXPECT_OK(nrt_ctx_init(&c, &model, 5, 3));
    if (!c.dev) return;
    CHECK(c.host_dirty == 1 && c.dev_dirty == 0);
    float *x = c.buf[0], *w = c.buf[1];
    for (int i = 0; i < 15; i++) x[i] = (float)i - 4.5f;
    EXPECT_OK(nrt_ctx_run(&c, 0, 5));
    CHECK(c.host_dirty == 0);
    const float *y = c.out[0];
    int ok = 1;
    for (int i = 0; i < 15; i++) ok &= y[i] == 2.0f * x[i] + w[i % 4];
    CHECK(ok);
    /* The device's state is newer: sync brings it back. */
    float wdev[4] = {10, 20, 30, 40};
    int32_t cnt = 99;
    nrt_cl_upload(&c, c.buf_off[1], wdev, sizeof wdev);
    nrt_cl_upload(&c, c.buf_off[2], &cnt, sizeof cnt);
    ASSERT(7, *(int32_t *)c.buf[2]);
    nrt_ctx_sync(&c); /* not dev_dirty: nothing happens */
    ASSERT(7, *(int32_t *)c.buf[2]);
    c.dev_dirty = 1;
    nrt_ctx_sync(&c);
    ASSERT(99, *(int32_t *)c.buf[2]);
    CHECK(w[3] == 40.0f && c.dev_dirty == 0);
    /* A host write (reset) goes up at the next run. */
    nrt_ctx_reset(&c, 3);
    CHECK(c.host_dirty == 1 && w[3] != 40.0f);
    EXPECT_OK(nrt_ctx_run(&c, 0, 5));
    float back[4];
    nrt_cl_download(&c, c.buf_off[1], back, sizeof back);
    CHECK(memcmp(back, w, sizeof back) == 0);
    /* A bad launch is an OpenCL error that sticks. */
    size_t g = 4;
    nrt_cl_launch(&c, 5, 1, &g, NULL, 0, NULL);
    CHECK(c.failed && strstr(c.err, "OpenCL: launch of kernel 5"));
    c.failed = 0;
    nrt_cl_upload(&c, 0, x, 4);
    CHECK(c.failed);
    EXPECT_ERR(nrt_ctx_run(&c, 0, 5), "OpenCL: launch of kernel 5");
    nrt_ctx_free(&c);
    /* Out of the arena. */
    EXPECT_OK(nrt_ctx_init(&c, &model, 5, 3));
    nrt_cl_download(&c, (int64_t)1 << 40, x, 4);
    CHECK(c.failed && strstr(c.err, "outside"));
    nrt_ctx_free(&c);
}

/* One GEMM against nrt_sgemm. */
static void gemm_case(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, float beta, int64_t pad) {
    int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
    int64_t na = (ta ? k : m) * lda, nb = (tb ? n : k) * ldb, nc = m * ldc;
    float *a = randv(na, 1 + (uint64_t)m), *b = randv(nb, 2 + (uint64_t)n), *c = randv(nc, 3 + (uint64_t)k);
    double *scale = calloc((size_t)nc, sizeof *scale);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            double s = 0;
            for (int64_t p = 0; p < k; p++)
                s += fabs((double)a[ta ? p * lda + i : i * lda + p] *
                          (double)b[tb ? j * ldb + p : p * ldb + j]);
            scale[i * ldc + j] = fabs((double)alpha) * s + fabs((double)beta * c[i * ldc + j]);
        }
    ws_next = 0;
    float *bias = randv(n, 4 + (uint64_t)n);
    int relu = (int)((m + n + k) % 2);
    int64_t da = put(a, na), db = put(b, nb), dc = put(c, nc), dc2 = put(c, nc), dbias = put(bias, n);
    nrt_cl_sgemm(&ctx, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc, ldc);
    /* The same GEMM with a fused bias per column (and relu): nrt_cl_fuse_next. */
    nrt_cl_fuse_next(&ctx, dbias, relu);
    nrt_cl_sgemm(&ctx, ta, tb, m, n, k, alpha, da, lda, db, ldb, beta, dc2, ldc);
    /* Again with B at the very end of the arena: the register-block GEMM's
     * last column block cannot read whole vectors past n there. */
    int64_t db3 = ctx.ws_off + WS_FLOATS - nb, dc3 = put(c, nc);
    CHECK(db3 >= ctx.ws_off + ws_next);
    nrt_cl_upload(&ctx, db3, b, sizeof *b * (size_t)nb);
    nrt_cl_sgemm(&ctx, ta, tb, m, n, k, alpha, da, lda, db3, ldb, beta, dc3, ldc);
    nrt_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    float *got = get(dc, nc), *got2 = get(dc2, nc), *got3 = get(dc3, nc);
    char what[128];
    snprintf(what, sizeof what, "sgemm ta=%d tb=%d m=%lld n=%lld k=%lld alpha=%g beta=%g ld+%lld", ta, tb,
             (long long)m, (long long)n, (long long)k, alpha, beta, (long long)pad);
    expect_close(what, got, c, scale, nc, 1e-4);
    strcat(what, " B at the arena's end");
    expect_close(what, got3, c, scale, nc, 1e-4);
    for (int64_t i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float v = c[i * ldc + j] + bias[j];
            c[i * ldc + j] = relu && !(v > 0.0f) ? 0.0f : v;
            scale[i * ldc + j] += fabs((double)bias[j]);
        }
    snprintf(what, sizeof what, "sgemm+bias%s ta=%d tb=%d m=%lld n=%lld k=%lld", relu ? "+relu" : "", ta, tb,
             (long long)m, (long long)n, (long long)k);
    expect_close(what, got2, c, scale, nc, 1e-4);
    free(a), free(b), free(c), free(got), free(got2), free(got3), free(scale), free(bias);
}

static void test_sgemm(void) {
    static const int64_t shapes[][3] = {{1, 1, 1},       {1, 1, 300},     {1, 100, 7},   {100, 1, 7},
                                        {3, 5, 2},       {16, 16, 16},    {64, 64, 64},  {65, 63, 17},
                                        {33, 129, 5},    {128, 10, 1600}, {10, 128, 64}, {200, 150, 99},
                                        {32, 6084, 9},   {32, 9, 6084},   {3, 5, 1001},  {64, 1600, 128},
                                        {1600, 64, 128}, {17, 33, 40},    {9, 47, 300}};
    for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
        for (int t = 0; t < 4; t++)
            gemm_case(t >> 1, t & 1, shapes[s][0], shapes[s][1], shapes[s][2], 1.0f, 0.0f, 0);
    gemm_case(0, 0, 37, 41, 19, 0.5f, 1.0f, 3);
    gemm_case(1, 1, 37, 41, 19, -2.0f, 0.25f, 5);
    gemm_case(0, 1, 70, 20, 33, 1.0f, 1.0f, 1);
    gemm_case(1, 0, 20, 70, 0, 1.0f, 0.5f, 0); /* k = 0: C = beta C */
    ASSERT(0, ctx.failed);
}

/* conv_case places dy at the very end of the workspace, the arena's last
 * floats: nrt_conv_dx_rb's partial pixel blocks cannot read whole vectors
 * past it (its bover 0). */
static int conv_dy_last;

/* One convolution geometry: forward, input and weight gradients. */
static void conv_case(int64_t n, int64_t ci, int64_t h, int64_t w, int64_t co, int64_t kh, int64_t kw,
                      int64_t g, int64_t s0, int64_t s1, const int64_t p[4], int64_t d0, int64_t d1,
                      int64_t chunk) {
    struct nrt_conv c = {.n = n,
                         .ci = ci,
                         .h = h,
                         .w = w,
                         .co = co,
                         .kh = kh,
                         .kw = kw,
                         .g = g,
                         .s = {s0, s1},
                         .p = {p[0], p[1], p[2], p[3]},
                         .d = {d0, d1},
                         .chunk = chunk};
    c.ho = (h + p[0] + p[2] - d0 * (kh - 1) - 1) / s0 + 1;
    c.wo = (w + p[1] + p[3] - d1 * (kw - 1) - 1) / s1 + 1;
    int64_t nx = n * ci * h * w, nw = co * (ci / g) * kh * kw, ny = n * co * c.ho * c.wo,
            ns = nrt_conv_scratch(&c);
    float *x = randv(nx, 11), *wt = randv(nw, 12), *dy = randv(ny, 13);
    float *y = malloc(sizeof *y * (size_t)ny), *dx = malloc(sizeof *dx * (size_t)nx);
    float *dw = malloc(sizeof *dw * (size_t)nw), *scr = malloc(sizeof *scr * (size_t)ns);
    nrt_conv2d(&c, x, wt, y, scr);
    nrt_conv2d_grad_input(&c, dy, wt, dx, scr);
    nrt_conv2d_grad_weight(&c, x, dy, dw, scr);
    ws_next = 0;
    int64_t dX = put(x, nx), dW = put(wt, nw), dDY = put(dy, ny), dY = ws_take(ny), dDX = ws_take(nx),
            dDW = ws_take(nw);
    if (conv_dy_last) {
        dDY = ctx.ws_off + WS_FLOATS - ny;
        nrt_cl_upload(&ctx, dDY, dy, sizeof *dy * (size_t)ny);
    }
    /* Scratch exactly nrt_conv_scratch floats, with a guard after it. */
    int64_t dS = ws_take(ns + 16);
    float guard[16];
    for (int i = 0; i < 16; i++) guard[i] = 12345.0f + (float)i;
    nrt_cl_upload(&ctx, dS + ns, guard, sizeof guard);
    nrt_cl_conv2d(&ctx, &c, dX, dW, dY, dS);
    nrt_cl_conv2d_grad_input(&ctx, &c, dDY, dW, dDX, dS);
    nrt_cl_conv2d_grad_weight(&ctx, &c, dX, dDY, dDW, dS);
    /* The forward again with a fused bias per channel and relu (nrt_cl_fuse_next). */
    float *bias = randv(co, 14);
    int64_t dB = put(bias, co), dY2 = ws_take(ny);
    nrt_cl_fuse_next(&ctx, dB, 1);
    nrt_cl_conv2d(&ctx, &c, dX, dW, dY2, dS);
    float *gy = get(dY, ny), *gdx = get(dDX, nx), *gdw = get(dDW, nw), *gg = get(dS + ns, 16);
    float *gy2 = get(dY2, ny);
    /* Each element's magnitude: the same op on |x|, |w|, |dy| sums the
     * absolute values of its terms (the GEMM tolerance above). */
    float *ax = malloc(sizeof *ax * (size_t)nx), *aw = malloc(sizeof *aw * (size_t)nw),
          *ady = malloc(sizeof *ady * (size_t)ny), *fy = malloc(sizeof *fy * (size_t)ny),
          *fx = malloc(sizeof *fx * (size_t)nx), *fw = malloc(sizeof *fw * (size_t)nw);
    for (int64_t i = 0; i < nx; i++) ax[i] = fabsf(x[i]);
    for (int64_t i = 0; i < nw; i++) aw[i] = fabsf(wt[i]);
    for (int64_t i = 0; i < ny; i++) ady[i] = fabsf(dy[i]);
    nrt_conv2d(&c, ax, aw, fy, scr);
    nrt_conv2d_grad_input(&c, ady, aw, fx, scr);
    nrt_conv2d_grad_weight(&c, ax, ady, fw, scr);
    double *sy = malloc(sizeof *sy * (size_t)ny), *sx = malloc(sizeof *sx * (size_t)nx),
           *sw = malloc(sizeof *sw * (size_t)nw);
    for (int64_t i = 0; i < ny; i++) sy[i] = fy[i];
    for (int64_t i = 0; i < nx; i++) sx[i] = fx[i];
    for (int64_t i = 0; i < nw; i++) sw[i] = fw[i];
    free(ax), free(aw), free(ady), free(fy), free(fx), free(fw);
    char what[160];
    snprintf(what, sizeof what,
             "conv n%lld ci%lld %lldx%lld co%lld k%lldx%lld g%lld s%lld,%lld d%lld,%lld chunk%lld",
             (long long)n, (long long)ci, (long long)h, (long long)w, (long long)co, (long long)kh,
             (long long)kw, (long long)g, (long long)s0, (long long)s1, (long long)d0, (long long)d1,
             (long long)chunk);
    char w2[200];
    snprintf(w2, sizeof w2, "%s forward", what);
    expect_close(w2, gy, y, sy, ny, 1e-4);
    int64_t hw = c.ho * c.wo;
    for (int64_t i = 0; i < ny; i++) {
        float v = y[i] + bias[i / hw % co];
        y[i] = v > 0.0f ? v : 0.0f;
        sy[i] += fabs((double)bias[i / hw % co]);
    }
    snprintf(w2, sizeof w2, "%s forward+bias+relu", what);
    expect_close(w2, gy2, y, sy, ny, 1e-4);
    snprintf(w2, sizeof w2, "%s grad_input", what);
    expect_close(w2, gdx, dx, sx, nx, 1e-4);
    snprintf(w2, sizeof w2, "%s grad_weight", what);
    expect_close(w2, gdw, dw, sw, nw, 1e-4);
    CHECK(memcmp(gg, guard, sizeof guard) == 0);
    free(x), free(wt), free(dy), free(y), free(dx), free(dw), free(scr);
    free(gy), free(gdx), free(gdw), free(gg), free(sy), free(sx), free(sw), free(gy2), free(bias);
}

static void test_conv(void) {
    static const int64_t p0[4] = {0, 0, 0, 0}, p1[4] = {1, 1, 1, 1}, pa[4] = {2, 0, 1, 3};
    conv_case(2, 1, 28, 28, 32, 3, 3, 1, 1, 1, p0, 1, 1, 0);  /* mnist_cnn's first layer */
    conv_case(3, 32, 13, 13, 64, 3, 3, 1, 1, 1, p0, 1, 1, 0); /* and its second */
    conv_case(5, 3, 9, 11, 4, 3, 2, 1, 2, 1, pa, 1, 1, 2);    /* strides, asymmetric padding, chunks of 2 */
    conv_case(3, 4, 10, 10, 6, 3, 3, 2, 1, 2, p1, 2, 1, 1);   /* groups, dilation, chunks of 1 */
    conv_case(2, 6, 7, 8, 6, 1, 1, 3, 1, 1, p0, 1, 1, 0);     /* 1x1, three groups */
    conv_case(4, 2, 5, 5, 3, 5, 5, 1, 3, 3, p1, 1, 1, 3);     /* window larger than the stride */
    conv_case(3, 5, 9, 7, 7, 3, 3, 1, 1, 1, p1, 1, 1,
              2); /* odd sizes, kk = 45: the blocked weight gradient */
    conv_case(2, 8, 6, 6, 4, 3, 3, 2, 2, 2, p0, 1, 1, 1); /* groups, stride 2, kk = 36 */
    conv_case(3, 10, 9, 7, 34, 3, 3, 2, 1, 1, p1, 1, 1,
              2);     /* groups, cog = 17 <= kk = 45: the weight gradient from dy transposed */
    conv_dy_last = 1; /* dy ending the arena: 121, 35, 25 output pixels, last blocks of 25, 3, 25 */
    conv_case(2, 6, 13, 13, 8, 3, 3, 1, 1, 1, p0, 1, 1, 0);
    conv_case(3, 4, 7, 5, 6, 3, 3, 2, 1, 1, p1, 1, 1, 0);
    conv_case(2, 3, 9, 9, 4, 5, 5, 1, 1, 1, p0, 1, 1, 0);
    conv_dy_last = 0;
    /* Winograd F(4x4, 3x3) on CPU devices (cl_lib.c wino_*: 3x3 stride 1, one
     * group, channels in and out 16k): padding of 1 (partial last tiles),
     * uneven and of 2, a plane smaller than a tile, 48 channels (3 vectors);
     * chunks of 2 images over 5 (2, 2, 1); and the old paths for comparison
     * (NETC_CL_WINOGRAD=0) */
    conv_case(2, 16, 9, 10, 32, 3, 3, 1, 1, 1, p1, 1, 1, 0);
    conv_case(3, 32, 10, 9, 16, 3, 3, 1, 1, 1, pa, 1, 1, 0);
    static const int64_t p2[4] = {2, 2, 2, 2};
    conv_case(2, 16, 2, 3, 48, 3, 3, 1, 1, 1, p2, 1, 1, 0);
    setenv("NETC_CL_WINO_IMAGES", "2", 1);
    conv_case(5, 32, 13, 13, 64, 3, 3, 1, 1, 1, p0, 1, 1, 0);
    unsetenv("NETC_CL_WINO_IMAGES");
    setenv("NETC_CL_WINOGRAD", "0", 1);
    conv_case(3, 32, 13, 13, 64, 3, 3, 1, 1, 1, p0, 1, 1, 0);
    unsetenv("NETC_CL_WINOGRAD");
    ASSERT(0, ctx.failed);
}

/* The Winograd forward's outputs whose 3x3 field is all zero are exactly
 * act(bias), as direct convolution gives them (a relu after them must not
 * see rounding noise): x zero but for a few pixels, and equality checked
 * there; the rest against the C build as in conv_case. */
static void test_wino_zero_fields(void) {
    struct nrt_conv c = {.n = 2,
                         .ci = 16,
                         .h = 12,
                         .w = 11,
                         .co = 32,
                         .kh = 3,
                         .kw = 3,
                         .g = 1,
                         .s = {1, 1},
                         .p = {1, 1, 1, 1},
                         .d = {1, 1}};
    c.ho = c.h, c.wo = c.w;
    int64_t nx = c.n * c.ci * c.h * c.w, nw = c.co * c.ci * 9, ny = c.n * c.co * c.ho * c.wo, hw = c.h * c.w;
    float *x = calloc((size_t)nx, sizeof *x), *wt = randv(nw, 21), *bias = randv(c.co, 22);
    float *ref = malloc(sizeof *ref * (size_t)ny), *scr = malloc(sizeof *scr * (size_t)nrt_conv_scratch(&c));
    /* image 0: one pixel at (5, 4) in channel 3; image 1: a 2x2 block at the corner in every channel */
    x[3 * hw + 5 * c.w + 4] = 0.75f;
    for (int64_t ch = 0; ch < c.ci; ch++)
        for (int64_t i = 0; i < 4; i++) x[(c.ci + ch) * hw + i / 2 * c.w + i % 2] = 0.5f - 0.01f * (float)ch;
    nrt_conv2d(&c, x, wt, ref, scr);
    ws_next = 0;
    int64_t dX = put(x, nx), dW = put(wt, nw), dB = put(bias, c.co), dY = ws_take(ny),
            dS = ws_take(nrt_conv_scratch(&c));
    nrt_cl_fuse_next(&ctx, dB, 1);
    nrt_cl_conv2d(&ctx, &c, dX, dW, dY, dS);
    float *y = get(dY, ny);
    int exact = 0, bad = 0;
    for (int64_t b = 0; b < c.n; b++)
        for (int64_t o = 0; o < c.co; o++)
            for (int64_t oy = 0; oy < c.ho; oy++)
                for (int64_t ox = 0; ox < c.wo; ox++) {
                    int64_t i = ((b * c.co + o) * c.ho + oy) * c.wo + ox;
                    int zero = 1; /* the field in the input, padding 1 */
                    for (int64_t ch = 0; ch < c.ci; ch++)
                        for (int64_t a = -1; a <= 1; a++)
                            for (int64_t e = -1; e <= 1; e++) {
                                int64_t yy = oy + a, xx = ox + e;
                                if (yy >= 0 && yy < c.h && xx >= 0 && xx < c.w &&
                                    x[((b * c.ci + ch) * c.h + yy) * c.w + xx] != 0.0f)
                                    zero = 0;
                            }
                    float want = ref[i] + bias[o];
                    want = want > 0.0f ? want : 0.0f;
                    if (zero) {
                        exact++;
                        bad += y[i] != (bias[o] > 0.0f ? bias[o] : 0.0f);
                    } else
                        bad += !(fabsf(y[i] - want) <= 1e-4f * (1.0f + fabsf(want)));
                }
    CHECK(exact > 1000);
    ASSERT(0, bad);
    ASSERT(0, ctx.failed);
    free(x), free(wt), free(bias), free(ref), free(scr), free(y);
}

static void pool_case(int64_t planes, int64_t h, int64_t w, int64_t k0, int64_t k1, int64_t s0, int64_t s1,
                      const int64_t p[4]) {
    struct nrt_pool pp = {
        .planes = planes, .h = h, .w = w, .k = {k0, k1}, .s = {s0, s1}, .p = {p[0], p[1], p[2], p[3]}};
    pp.ho = (h + p[0] + p[2] - k0) / s0 + 1;
    pp.wo = (w + p[1] + p[3] - k1) / s1 + 1;
    int64_t nx = planes * h * w, ny = planes * pp.ho * pp.wo;
    float *x = randv(nx, 21), *dy = randv(ny, 22);
    for (int64_t i = 0; i < nx; i += 7) x[i] = x[i / 2]; /* ties */
    float *y = malloc(sizeof *y * (size_t)ny), *dx = malloc(sizeof *dx * (size_t)nx);
    ws_next = 0;
    int64_t dX = put(x, nx), dDY = put(dy, ny), dY = ws_take(ny), dDX = ws_take(nx);
    char what[128];
    for (int avg = 0; avg < 2; avg++) {
        if (avg) {
            nrt_avgpool2d(&pp, x, y);
            nrt_avgpool2d_grad(&pp, dy, dx);
            nrt_cl_avgpool2d(&ctx, &pp, dX, dY);
            nrt_cl_avgpool2d_grad(&ctx, &pp, dDY, dDX);
        } else {
            nrt_maxpool2d(&pp, x, y);
            nrt_maxpool2d_grad(&pp, x, dy, dx);
            nrt_cl_maxpool2d(&ctx, &pp, dX, dY);
            nrt_cl_maxpool2d_grad(&ctx, &pp, dX, dDY, dDX);
        }
        float *gy = get(dY, ny), *gdx = get(dDX, nx);
        snprintf(what, sizeof what, "%s %lldx%lld k%lldx%lld s%lld,%lld p%lld,%lld",
                 avg ? "avgpool" : "maxpool", (long long)h, (long long)w, (long long)k0, (long long)k1,
                 (long long)s0, (long long)s1, (long long)p[0], (long long)p[1]);
        expect_close(what, gy, y, NULL, ny, 1e-6);
        strcat(what, " grad");
        expect_close(what, gdx, dx, NULL, nx, 1e-6);
        free(gy), free(gdx);
    }
    free(x), free(dy), free(y), free(dx);
}

static void upsample_case(int64_t planes, int64_t h, int64_t w, int64_t s0, int64_t s1) {
    int64_t nx = planes * h * w, ny = nx * s0 * s1;
    float *x = randv(nx, 31), *dy = randv(ny, 32), *y = malloc(sizeof *y * (size_t)ny),
          *dx = malloc(sizeof *dx * (size_t)nx);
    nrt_upsample2d(planes, h, w, s0, s1, x, y);
    nrt_upsample2d_grad(planes, h, w, s0, s1, dy, dx);
    ws_next = 0;
    int64_t dX = put(x, nx), dDY = put(dy, ny), dY = ws_take(ny), dDX = ws_take(nx);
    nrt_cl_upsample2d(&ctx, planes, h, w, s0, s1, dX, dY);
    nrt_cl_upsample2d_grad(&ctx, planes, h, w, s0, s1, dDY, dDX);
    float *gy = get(dY, ny), *gdx = get(dDX, nx);
    expect_close("upsample", gy, y, NULL, ny, 0);
    expect_close("upsample grad", gdx, dx, NULL, nx, 1e-6);
    free(x), free(dy), free(y), free(dx), free(gy), free(gdx);
}

static void test_pool_upsample(void) {
    static const int64_t p0[4] = {0, 0, 0, 0}, p1[4] = {1, 1, 1, 1}, pa[4] = {1, 0, 0, 1};
    pool_case(6, 26, 26, 2, 2, 2, 2, p0); /* mnist_cnn */
    pool_case(5, 11, 11, 2, 2, 2, 2, p0); /* odd sizes: the last row and column unused */
    pool_case(3, 37, 35, 2, 2, 2, 2, p0); /* 17 windows a row: two vectors of 8 and one more */
    pool_case(2, 32, 32, 2, 2, 2, 2, p0); /* 16: vectors only */
    pool_case(3, 9, 8, 3, 3, 2, 2, p1);   /* overlapping, padded */
    pool_case(2, 7, 9, 3, 2, 1, 3, pa);
    upsample_case(4, 7, 7, 2, 2);
    upsample_case(3, 5, 6, 3, 1);
    ASSERT(0, ctx.failed);
}

int main(void) {
    if (!test_dir_make("netc_cl")) return 1;
    setenv("XDG_CACHE_HOME", dir, 1);
    unsetenv("NETC_DEVICE");
    unsetenv("NETC_CL_CACHE");
    test_device_errors();
    test_cache();
    test_launch_and_state();
    if (nrt_ctx_init(&ctx, &model, 4, 1)) {
        TEST_FAIL_("nrt_ctx_init: %s", nrt_error());
        TEST_DONE();
    }
    test_sgemm();
    test_conv();
    test_wino_zero_fields();
    test_pool_upsample();
    nrt_ctx_free(&ctx);
    /* Tiles given by NETC_CL_GEMM: the tiled SGEMM (GPUs' path) on this device too. */
    setenv("NETC_CL_GEMM", "4,4,8,8,16", 1);
    if (nrt_ctx_init(&ctx, &model, 4, 1)) {
        TEST_FAIL_("nrt_ctx_init (tiled SGEMM): %s", nrt_error());
        TEST_DONE();
    }
    test_sgemm();
    test_conv();
    nrt_ctx_free(&ctx);
    unsetenv("NETC_CL_GEMM");
    ASSERT(0, live_blocks());
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    TEST_DONE();
}
