/* tests/unit/test_runtime_limits.c -- the runtime's limits on hostile sizes and
 * files (issue 16): a batch whose buffers would overflow 64 bits or exceed the
 * address space is refused before anything is allocated (nrt_ctx_init,
 * nrt_desc_count); data paths naming a FIFO or a device fail at once instead of
 * blocking or reading forever; a gzip stream that expands past what its IDX or
 * .npy header promises is cut there; image headers claiming huge sizes fail
 * before allocating. Allocation peaks are read from nrt_alloc_stats, so the
 * tests that watch them run first, while the peak is still small. */
#include "runtime/netrt.h"
#include "test.h"
#include "test_runtime.h"

#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>

static size_t peak_bytes(void) {
    struct nrt_alloc_stats s;
    nrt_alloc_stats_get(&s);
    return s.peak_bytes;
}

/* An alarm turns a blocking open or an endless read into a failure. */
static void on_alarm(int sig) {
    (void)sig;
    static const char msg[] = "FAIL: a load blocked or read for more than 10 s\n";
    (void)!write(2, msg, sizeof msg - 1);
    _exit(1);
}

static void test_files(void) {
    const size_t peak0 = peak_bytes();
    struct nrt_array a;
    struct nrt_load_opts f = nrt_load_opts_features(1, 0);
    alarm(10);
    /* A FIFO with no writer: open() must not wait for one. */
    const char *fifo = tmp_path("fifo");
    CHECK(mkfifo(fifo, 0600) == 0);
    EXPECT_ERR(nrt_idx_load(&a, fifo, &f), "not a regular file");
    EXPECT_ERR(nrt_array_load(&a, fifo, &f), "not a regular file");
    struct nrt_st_reader r;
    EXPECT_ERR(nrt_st_reader_init(&r, fifo), "not a regular file");
    unlink(fifo);
    /* Devices that never end. */
    EXPECT_ERR(nrt_csv_load(&a, "/dev/zero", &f), "/dev/zero: not a regular file");
    EXPECT_ERR(nrt_npy_load(&a, "/dev/urandom", &f), "not a regular file");
    EXPECT_ERR(nrt_image_load(&a, "/dev/zero", &f), "not a regular file");
    EXPECT_ERR(nrt_idx_load(&a, dir, &f), "is a directory");
    /* An IDX header promising 4 bytes, then 32 MiB of zeros, gzip'd (~32 KB):
     * reading stops 64 KiB after the promise. */
    size_t n = (size_t)32 << 20;
    unsigned char *bomb = calloc(1, n);
    CHECK(bomb != NULL);
    if (bomb) {
        memcpy(bomb, "\0\0\x08\x01\0\0\0\x04", 8);
        const char *gz = tmp_path("bomb-idx1-ubyte.gz");
        write_gz(gz, bomb, n);
        free(bomb);
        EXPECT_ERR(nrt_idx_load(&a, gz, &f),
                   "bomb-idx1-ubyte.gz: the gzip data goes on more than 65536 bytes past the 12 bytes");
        EXPECT_ERR(nrt_array_load(&a, gz, &f),
                   "bomb-idx1-ubyte.gz: the gzip data goes on more than 65536 bytes past the 12 bytes");
    }
    /* The same for .npy: a v1 header for f4 (2,) then 32 MiB of zeros. */
    {
        char hdr[128];
        int len =
            snprintf(hdr + 10, sizeof hdr - 10, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }");
        while ((len + 10) % 64 != 63) hdr[10 + len++] = ' ';
        hdr[10 + len++] = '\n';
        memcpy(hdr, "\x93NUMPY\x01\x00", 8);
        hdr[8] = (char)len;
        hdr[9] = 0;
        unsigned char *big = calloc(1, n);
        CHECK(big != NULL);
        if (big) {
            memcpy(big, hdr, (size_t)len + 10);
            const char *gz = tmp_path("bomb.npy.gz");
            write_gz(gz, big, n);
            free(big);
            EXPECT_ERR(nrt_npy_load(&a, gz, &f),
                       "bomb.npy.gz: the gzip data goes on more than 65536 bytes past the 136 bytes");
        }
    }
    alarm(0);
    printf("peak allocation over the file tests: %zu bytes\n", peak_bytes() - peak0);
    CHECK(peak_bytes() - peak0 < ((size_t)1 << 20));
}

static void test_images(void) {
    const size_t peak0 = peak_bytes();
    struct nrt_array a;
    struct nrt_load_opts f = nrt_load_opts_features(1, 0);
    /* Headers claiming 65536x65536 (4 Gi pixels): refused before allocating. */
    const char *p2 = tmp_path("big2.pgm"), *p5 = tmp_path("big5.pgm"), *png = tmp_path("big.png");
    write_file(p2, "P2\n65536 65536\n255\n0 1 2\n", 25);
    write_file(p5, "P5\n65536 65536\n255\n\x01\x02\x03", 22);
    EXPECT_ERR(nrt_image_load(&a, p2, &f), "big2.pgm");
    EXPECT_ERR(nrt_image_load(&a, p5, &f), "big5.pgm");
    /* A PNG whose IHDR says 65536x65536 gray, with a tiny IDAT. */
    static const unsigned char png_bytes[] = {
        0x89, 'P',  'N',  'G',  '\r', '\n', 0x1a, '\n', 0,    0,    0,    13,  'I',  'H',  'D',  'R',  0,
        1,    0,    0,    0,    1,    0,    0,    8,    0,    0,    0,    0,   0x49, 0xef, 0x6f, 0x3f, 0,
        0,    0,    10,   'I',  'D',  'A',  'T',  0x78, 0x9c, 0x63, 0x60, 0,   0,    0,    0x02, 0,    0x01,
        0x48, 0xaf, 0xa4, 0x71, 0,    0,    0,    0,    'I',  'E',  'N',  'D', 0xae, 0x42, 0x60, 0x82};
    write_file(png, png_bytes, sizeof png_bytes);
    EXPECT_ERR(nrt_image_load(&a, png, &f), "big.png");
    printf("peak allocation over the image tests: %zu bytes\n", peak_bytes() - peak0);
    CHECK(peak_bytes() - peak0 < ((size_t)1 << 20));
}

/* A model of one input [N, per] and one entry point, for nrt_ctx_init. */
static void noop(struct nrt_ctx *ctx, int64_t n) { (void)ctx, (void)n; }

static void test_batch(void) {
    struct nrt_buffer_desc bufs[2] = {
        {.name = "image", .kind = NRT_BUF_INPUT, .dtype = NRT_DT_F32, .rank = 2, .dims = {NRT_DIM_N, 784}},
        {.name = "w", .kind = NRT_BUF_PARAM, .dtype = NRT_DT_F32, .rank = 2, .dims = {784, 10}},
    };
    struct nrt_entry_desc ent = {
        .name = "forward", .mode = NRT_MODE_EVAL, .run = noop, .ws_fixed = 64, .ws_per_n = 40};
    struct nrt_model m = {.name = "m",
                          .netc_version = "test",
                          .n_buffers = 2,
                          .buffers = bufs,
                          .n_entries = 1,
                          .entries = &ent};
    struct nrt_ctx ctx;
    uint64_t calls = nrt_alloc_count();
    /* 2^62 * 784 wraps to 0 in int64: refused, nothing allocated. */
    EXPECT_ERR(nrt_ctx_init(&ctx, &m, (int64_t)1 << 62, 1), "batch size 4611686018427387904 is too large");
    EXPECT_ERR(nrt_ctx_init(&ctx, &m, INT64_MAX, 1), "batch size 9223372036854775807 is too large");
    EXPECT_ERR(nrt_ctx_init(&ctx, &m, NRT_MAX_BATCH + 1, 1), "too large (at most 2147483647)");
    ASSERT(calls, nrt_alloc_count());
    /* Within NRT_MAX_BATCH, a buffer past the address space: refused by name. */
    bufs[0].dims[1] = (int64_t)1 << 40;
    EXPECT_ERR(nrt_ctx_init(&ctx, &m, NRT_MAX_BATCH, 1), "buffer 'image' would not fit in memory");
    bufs[0].dims[1] = 784;
    ent.ws_per_n = (size_t)1 << 40;
    EXPECT_ERR(nrt_ctx_init(&ctx, &m, NRT_MAX_BATCH, 1), "the workspace of 'forward' would not fit");
    ent.ws_per_n = 40;
    ASSERT(calls, nrt_alloc_count());
    /* A sane batch works. */
    EXPECT_OK(nrt_ctx_init(&ctx, &m, 64, 1));
    ASSERT((int64_t)64, ctx.max_n);
    nrt_ctx_free(&ctx);
    /* nrt_desc_count: -1 on overflow and negative dims. */
    int64_t dims[3] = {NRT_DIM_N, (int64_t)1 << 31, (int64_t)1 << 31};
    ASSERT((int64_t)-1, nrt_desc_count(3, dims, (int64_t)1 << 2));
    ASSERT((int64_t)1 << 62, nrt_desc_count(3, dims, 1));
    dims[1] = -5;
    ASSERT((int64_t)-1, nrt_desc_count(2, dims, 1));
}

int main(void) {
    if (!test_dir_make("netrt_limits")) return 1;
    signal(SIGALRM, on_alarm);
    test_files();
    test_images();
    test_batch();
    ASSERT(0, live_blocks());
    rmdir(dir);
    TEST_DONE();
}
