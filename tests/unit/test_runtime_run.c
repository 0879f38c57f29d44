/* tests/unit/test_runtime_run.c -- what nrt_ctx_run (runtime/program.c)
 * decides about an inference run: its parameter token, and whether a small
 * run splits over the thread pool or runs on the calling thread alone.
 *
 * The token and what keys on it, the Winograd F(4x4, 3x3) weight transforms
 * that winograd.c keeps between calls: a model made here by hand has an
 * inference entry point running mnist_cnn's second layer (conv 32 -> 64, 3x3,
 * bias, relu, 2x2 max pool, with Winograd) on a parameter buffer, and a
 * training entry point that changes that parameter in place. After every way
 * the parameters can change (a write flagged by host_dirty, a training step,
 * a checkpoint load, a reset, a context freed and another made) the inference
 * output must equal, bit for bit, the same kernel run with the cache turned
 * off (NETC_WINOGRAD_CACHE=0: the weights transformed anew).
 *
 * The pace: an inference entry point that takes ten times longer one way
 * than the other (split over the pool, or serially) runs the fast way after
 * its first runs (both ways timed), probing the slow way in pairs of runs
 * whose first is not timed (its times from a clock the test advances:
 * nrt_pace_clock). */
#include "runtime/internal.h"
#include "test_runtime.h"

#include <stdlib.h>

/* The layer: mnist_cnn's conv2d1 at batch n. */
static struct nrt_conv geo(int64_t n) {
    struct nrt_conv c = {n, 32, 13, 13, 64, 3, 3, 11, 11, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    return c;
}

enum { B_X, B_W, B_B, B_STEPS, N_BUFS };
#define Y_FLOATS (64 * 5 * 5) /* per item */

/* What the inference entry saw: the tokens of its weight, bias and input. */
static uint64_t seen_w, seen_b, seen_x, seen_past;

/* forward: y = maxpool(relu(conv(x, w) + b)) into the workspace (y, then the scratch). */
static void run_forward(struct nrt_ctx *ctx, int64_t n) {
    struct nrt_conv c = geo(n);
    float *y = (float *)ctx->ws, *scratch = y + Y_FLOATS * ctx->max_n;
    const float *w = ctx->buf[B_W];
    seen_w = nrt_params_token(w, sizeof *w * 64 * 32 * 9);
    seen_b = nrt_params_token(ctx->buf[B_B], sizeof(float) * 64);
    seen_x = nrt_params_token(ctx->buf[B_X], sizeof(float) * 4);
    seen_past = nrt_params_token(w + 1, sizeof *w * 64 * 32 * 9); /* one float past the end */
    nrt_conv2d_bias_act_pool(&c, ctx->buf[B_X], w, ctx->buf[B_B], NRT_ACT_RELU | NRT_CONV_WINOGRAD, y,
                             scratch);
    ctx->out[0] = y;
}

/* train: a stand-in for an optimizer step, writing the weights in place. */
static void run_train(struct nrt_ctx *ctx, int64_t n) {
    (void)n;
    float *w = ctx->buf[B_W];
    for (int i = 0; i < 64 * 32 * 9; i++) w[i] = w[i] * 0.75f + 0.01f * (float)(i % 7 - 3);
    ((float *)ctx->buf[B_STEPS])[0] += 1;
}

static struct nrt_buffer_desc bufs[N_BUFS] = {
    {.name = "x", .kind = NRT_BUF_INPUT, .dtype = NRT_DT_F32, .rank = 4, .dims = {NRT_DIM_N, 32, 13, 13}},
    {.name = "w",
     .kind = NRT_BUF_PARAM,
     .dtype = NRT_DT_F32,
     .rank = 4,
     .dims = {64, 32, 3, 3},
     .init = NRT_INIT_UNIFORM,
     .init_a = -0.1,
     .init_b = 0.1},
    {.name = "b",
     .kind = NRT_BUF_PARAM,
     .dtype = NRT_DT_F32,
     .rank = 1,
     .dims = {64},
     .init = NRT_INIT_UNIFORM,
     .init_a = -0.1,
     .init_b = 0.1},
    {.name = "steps", .kind = NRT_BUF_STATE, .dtype = NRT_DT_F32, .rank = 0},
};
static const struct nrt_output_desc y_out = {
    .name = "y", .dtype = NRT_DT_F32, .rank = 4, .dims = {NRT_DIM_N, 64, 5, 5}};
static struct nrt_entry_desc entries[2] = {
    {.name = "forward", .mode = NRT_MODE_EVAL, .n_outputs = 1, .outputs = &y_out, .run = run_forward},
    {.name = "train_step", .mode = NRT_MODE_TRAIN, .run = run_train},
};
static struct nrt_model model = {.name = "params",
                                 .netc_version = "test",
                                 .n_buffers = N_BUFS,
                                 .buffers = bufs,
                                 .n_entries = 2,
                                 .entries = entries,
                                 .forward_entry = 0,
                                 .evaluate_entry = -1,
                                 .generate_entry = -1,
                                 .batch_entry = -1};

#define MAX_N 3

/* The workspace: the outputs of MAX_N items and the layer's scratch. */
static void model_init(void) {
    struct nrt_conv c = geo(MAX_N);
    entries[0].ws_fixed = sizeof(float) * (size_t)(Y_FLOATS * MAX_N + nrt_conv_pool_scratch(&c));
    entries[0].ws_per_n = 0;
}

static void fill_x(struct nrt_ctx *ctx, uint64_t seed) {
    struct nrt_rng r;
    nrt_rng_init(&r, seed, 0);
    nrt_rng_fill_uniform(&r, ctx->buf[B_X], 32 * 13 * 13 * MAX_N, 0, 1);
}

/* Runs forward on n items and checks its output against the uncached kernel. */
static void check_fresh(struct nrt_ctx *ctx, int64_t n, const char *what) {
    EXPECT_OK(nrt_ctx_run(ctx, 0, n));
    static float got[Y_FLOATS * MAX_N], want[Y_FLOATS * MAX_N];
    memcpy(got, ctx->out[0], sizeof(float) * Y_FLOATS * (size_t)n);
    struct nrt_conv c = geo(n);
    float *scratch = malloc(sizeof(float) * (size_t)nrt_conv_pool_scratch(&c));
    setenv("NETC_WINOGRAD_CACHE", "0", 1);
    nrt_conv2d_bias_act_pool(&c, ctx->buf[B_X], ctx->buf[B_W], ctx->buf[B_B],
                             NRT_ACT_RELU | NRT_CONV_WINOGRAD, want, scratch);
    unsetenv("NETC_WINOGRAD_CACHE");
    free(scratch);
    if (memcmp(got, want, sizeof(float) * Y_FLOATS * (size_t)n))
        TEST_FAIL_("%s: the inference output differs from the uncached kernel's", what);
    else
        test_passed++;
}

static void scale_w(struct nrt_ctx *ctx, float s) {
    float *w = ctx->buf[B_W];
    for (int i = 0; i < 64 * 32 * 9; i++) w[i] *= s;
}

static void test_token(void) {
    struct nrt_ctx a, b;
    EXPECT_OK(nrt_ctx_init(&a, &model, MAX_N, 1));
    fill_x(&a, 5);
    ASSERT(0, nrt_params_token(a.buf[B_W], 4)); /* outside a run: none */
    check_fresh(&a, 1, "first run");
    uint64_t t0 = seen_w;
    CHECK(t0 != 0);
    ASSERT(t0, seen_b);
    ASSERT(0, seen_x);    /* inputs: never */
    ASSERT(0, seen_past); /* bytes past a parameter buffer: none */
    ASSERT(0, nrt_params_token(a.buf[B_W], 4));
    /* Runs without a change keep the token (and the cache serves). */
    check_fresh(&a, 2, "second run");
    ASSERT(t0, seen_w);
    check_fresh(&a, 1, "third run");
    ASSERT(t0, seen_w);

    /* The token path serves without reading the weights: a write that does
     * not set host_dirty is not seen (which is why every writer sets it). */
    static float before[Y_FLOATS];
    memcpy(before, a.out[0], sizeof before);
    float *w = a.buf[B_W];
    float keep = w[5];
    w[5] += 1.0f;
    EXPECT_OK(nrt_ctx_run(&a, 0, 1));
    ASSERT(t0, seen_w);
    CHECK(!memcmp(before, a.out[0], sizeof before));
    static float now[Y_FLOATS];
    struct nrt_conv c = geo(1);
    float *scratch = malloc(sizeof(float) * (size_t)nrt_conv_pool_scratch(&c));
    setenv("NETC_WINOGRAD_CACHE", "0", 1);
    nrt_conv2d_bias_act_pool(&c, a.buf[B_X], w, a.buf[B_B], NRT_ACT_RELU | NRT_CONV_WINOGRAD, now, scratch);
    unsetenv("NETC_WINOGRAD_CACHE");
    CHECK(memcmp(before, now, sizeof before) != 0); /* the write does change the output */
    free(scratch);
    w[5] = keep;

    /* A write in place flagged by host_dirty: a new token, fresh transforms. */
    scale_w(&a, -1.5f);
    a.host_dirty = 1;
    check_fresh(&a, 1, "after a flagged write");
    uint64_t t1 = seen_w;
    CHECK(t1 != 0 && t1 != t0);

    /* A training step writes the parameters: the next inference run sees them. */
    EXPECT_OK(nrt_ctx_run(&a, 1, 1));
    ASSERT(0, a.params_token);
    check_fresh(&a, 3, "after a training step");
    uint64_t t2 = seen_w;
    CHECK(t2 != 0 && t2 != t1);

    /* A second context with other weights, alternating with the first: each
     * has its own token and its own cache entry. */
    EXPECT_OK(nrt_ctx_init(&b, &model, MAX_N, 2));
    fill_x(&b, 5);
    check_fresh(&b, 1, "second context");
    CHECK(seen_w != 0 && seen_w != t2);
    check_fresh(&a, 1, "first context again");
    ASSERT(t2, seen_w);
    check_fresh(&b, 2, "second context again");

    /* A checkpoint load replaces the parameters. */
    const char *path = tmp_path("b.safetensors");
    EXPECT_OK(nrt_ckpt_save(&b, path));
    EXPECT_OK(nrt_ckpt_load(&a, path));
    check_fresh(&a, 1, "after a checkpoint load");
    CHECK(seen_w != t2);
    CHECK(!memcmp(a.buf[B_W], b.buf[B_W], sizeof(float) * 64 * 32 * 9));
    unlink(path);

    /* A reset draws new parameters. */
    uint64_t t3 = seen_w;
    nrt_ctx_reset(&a, 7);
    check_fresh(&a, 2, "after a reset");
    CHECK(seen_w != t3);

    /* Contexts freed and made again (their buffers may reuse the addresses,
     * with other weights): never the old transforms. */
    for (uint64_t seed = 10; seed < 14; seed++) {
        nrt_ctx_free(&b);
        EXPECT_OK(nrt_ctx_init(&b, &model, MAX_N, seed));
        fill_x(&b, seed);
        check_fresh(&b, 1 + (int64_t)(seed % 3), "a new context");
    }
    nrt_ctx_free(&a);
    nrt_ctx_free(&b);
}

/* An entry point whose run takes 30 us one way and 300 us the other, on a
 * clock of its own (nrt_pace_clock): the pace's decisions, not the machine's
 * load, are under test. */
static int slow_serially;
static double fake_now;
static double fake_clock(void) { return fake_now; }
static void run_spin(struct nrt_ctx *ctx, int64_t n) {
    (void)ctx, (void)n;
    int slow = nrt_threads_inside() == slow_serially;
    fake_now += slow ? 300e-6 : 30e-6;
    ctx->out[0] = ctx->ws;
    ((float *)ctx->ws)[0] = (float)nrt_threads_inside();
}

static void test_pace(void) {
    static const struct nrt_prof_desc unit = {"spin", "spin", "", 1e6, 0, 0, 0};
    static const struct nrt_output_desc out = {.name = "inside", .dtype = NRT_DT_F32, .rank = 1, .dims = {1}};
    struct nrt_entry_desc ent = {.name = "forward",
                                 .mode = NRT_MODE_EVAL,
                                 .n_outputs = 1,
                                 .outputs = &out,
                                 .run = run_spin,
                                 .ws_fixed = 64,
                                 .n_prof = 1,
                                 .prof = &unit};
    struct nrt_model m = {.name = "pace",
                          .netc_version = "test",
                          .n_entries = 1,
                          .entries = &ent,
                          .forward_entry = 0,
                          .evaluate_entry = -1,
                          .generate_entry = -1,
                          .batch_entry = -1};
    double (*clock)(void) = nrt_pace_clock;
    nrt_pace_clock = fake_clock;
    nrt_threads_set(2);
    for (slow_serially = 0; slow_serially < 2; slow_serially++) {
        struct nrt_ctx ctx;
        EXPECT_OK(nrt_ctx_init(&ctx, &m, 4, 1));
        int serial = 0;
        for (int r = 0; r < 96; r++) {
            EXPECT_OK(nrt_ctx_run(&ctx, 0, 1));
            if (r >= 16) serial += ((float *)ctx.out[0])[0] == 1.0f;
        }
        /* 80 runs after the 16 that alternate: 4 of them probe the slow way,
         * in pairs whose first run is not timed (32 and 64), so the slow
         * way's times (a ring of 8) hold its 8 first runs and 2 probes, the
         * fast way's its 8 first runs and the other 76. */
        if (slow_serially)
            CHECK(serial <= 4);
        else
            CHECK(serial >= 76);
        ASSERT(2, ctx.pace.next[slow_serially]);
        ASSERT(4, ctx.pace.next[!slow_serially]);
        /* Another batch size starts over: its first run splits. */
        EXPECT_OK(nrt_ctx_run(&ctx, 0, 2));
        ASSERT(0, ((float *)ctx.out[0])[0]);
        ASSERT(1, ctx.pace.runs);
        nrt_ctx_free(&ctx);
    }
    /* One thread: nothing to decide. */
    nrt_threads_set(1);
    slow_serially = 0;
    struct nrt_ctx ctx;
    EXPECT_OK(nrt_ctx_init(&ctx, &m, 4, 1));
    EXPECT_OK(nrt_ctx_run(&ctx, 0, 1));
    ASSERT(0, ctx.pace.runs);
    nrt_ctx_free(&ctx);
    nrt_pace_clock = clock;
}

/* A model whose descriptor carries another runtime header's hash (a netc
 * built against another netrt.h than this libnetrt) is refused with a message
 * that says so; the library's own hash, or none (a descriptor written by
 * hand), is accepted. */
static void test_runtime_hash(void) {
    struct nrt_model m = model;
    struct nrt_ctx ctx;
    m.runtime_hash = "0123456789abcdef";
    ASSERT(NRT_ERR_ARG, nrt_ctx_init(&ctx, &m, 1, 1));
    CHECK(strstr(nrt_error(), "model 'params' was generated by a netc built with another runtime header "
                              "(netrt.h 0123456789abcdef) than this libnetrt") != NULL);
    static char mem[1 << 16];
    ASSERT(NRT_ERR_ARG, nrt_ctx_init_mem(&ctx, &m, 1, 1, mem, sizeof mem));
    ASSERT(16, (long long)strlen(nrt_runtime_hash));
    m.runtime_hash = nrt_runtime_hash;
    EXPECT_OK(nrt_ctx_init(&ctx, &m, 1, 1));
    nrt_ctx_free(&ctx);
}

int main(void) {
    if (!test_dir_make("netrt_run")) return 1;
    model_init();
    for (int t = 1; t <= 2; t++) {
        nrt_threads_set(t);
        test_token();
    }
    test_pace();
    test_runtime_hash();
    rmdir(dir);
    TEST_DONE();
}
