/* tests/unit/test_runtime_alloc.c -- libnetrt's allocation pair and errors:
 * alignment, counters, realloc, failure injection, and an out-of-memory sweep
 * that makes the n-th allocation of every loader and of checkpoint I/O fail for
 * n = 0, 1, 2, ... and checks for a clean error, no leak and no partial file. */
#include "runtime/netrt.h"
#include "test.h"
#include "test_runtime.h"

#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Under AddressSanitizer, let an impossible malloc return NULL as libc's does
 * instead of aborting, so that the real failure path is tested too. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

static void test_alignment(void) {
    void *p = nrt_alloc(100, 0);
    CHECK(p != NULL);
    ASSERT(0, (uintptr_t)p % NRT_ALIGN);
    memset(p, 0xAB, 100);
    nrt_free(p);

    size_t aligns[] = {16, 128, 4096};
    for (int i = 0; i < 3; i++) {
        p = nrt_alloc(1000, aligns[i]);
        CHECK(p != NULL);
        ASSERT(0, (uintptr_t)p % aligns[i]);
        nrt_free(p);
    }
    p = nrt_alloc(10, 8); /* raised to the minimum alignment */
    CHECK(p != NULL);
    ASSERT(0, (uintptr_t)p % 16);
    nrt_free(p);

    p = nrt_alloc(10, 48);
    CHECK(p == NULL);
    CHECK(strstr(nrt_error(), "not a power of two") != NULL);

    void *a = nrt_alloc(0, 0), *b = nrt_alloc(0, 0);
    CHECK(a != NULL && b != NULL && a != b);
    nrt_free(a);
    nrt_free(b);
    nrt_free(NULL);

    p = nrt_alloc(SIZE_MAX, 0);
    CHECK(p == NULL);
    CHECK(strstr(nrt_error(), "out of memory") != NULL);
    p = nrt_alloc(SIZE_MAX / 2, 0);
    CHECK(p == NULL);
    p = nrt_alloc((size_t)1 << 50, 0); /* reaches posix_memalign, which fails */
    CHECK(p == NULL);
    CHECK(strstr(nrt_error(), "out of memory allocating 1125899906842624 bytes") != NULL);
}

static void test_counters(void) {
    struct nrt_alloc_stats s0, s1, s2;
    nrt_alloc_stats_get(&s0);
    uint64_t c0 = nrt_alloc_count();
    ASSERT(s0.calls, c0);
    void *p = nrt_alloc(1000, 0), *q = nrt_alloc_zero(24, 0);
    nrt_alloc_stats_get(&s1);
    ASSERT(c0 + 2, nrt_alloc_count());
    ASSERT(s0.live + 2, s1.live);
    ASSERT(s0.live_bytes + 1024, s1.live_bytes);
    CHECK(s1.peak_bytes >= s1.live_bytes);
    for (int i = 0; i < 24; i++) ASSERT(0, ((unsigned char *)q)[i]);
    nrt_free(p);
    nrt_free(q);
    nrt_alloc_stats_get(&s2);
    ASSERT(s0.live, s2.live);
    ASSERT(s0.live_bytes, s2.live_bytes);
    ASSERT(s1.frees + 2, s2.frees);
}

static void test_realloc(void) {
    unsigned char *p = nrt_alloc(16, 256);
    for (int i = 0; i < 16; i++) p[i] = (unsigned char)i;
    p = nrt_realloc(p, 100000);
    CHECK(p != NULL);
    ASSERT(0, (uintptr_t)p % 256);
    for (int i = 0; i < 16; i++) ASSERT(i, p[i]);
    p = nrt_realloc(p, 4);
    ASSERT(3, p[3]);
    /* A failed realloc keeps the old block. */
    nrt_alloc_fail_after(0);
    unsigned char *q = nrt_realloc(p, 64);
    nrt_alloc_fail_after(-1);
    CHECK(q == NULL);
    ASSERT(2, p[2]);
    nrt_free(p);
    void *n = nrt_realloc(NULL, 10);
    CHECK(n != NULL);
    nrt_free(n);
}

static void test_fail_after(void) {
    struct nrt_alloc_stats s0, s1;
    nrt_alloc_stats_get(&s0);
    nrt_alloc_fail_after(2);
    void *a = nrt_alloc(8, 0), *b = nrt_alloc(8, 0), *c = nrt_alloc(8, 0), *d = nrt_alloc(8, 0);
    nrt_alloc_fail_after(-1);
    CHECK(a != NULL && b != NULL);
    CHECK(c == NULL && d == NULL);
    CHECK(strstr(nrt_error(), "out of memory allocating 8 bytes") != NULL);
    void *e = nrt_alloc(8, 0);
    CHECK(e != NULL);
    nrt_alloc_stats_get(&s1);
    ASSERT(s0.calls + 5, s1.calls);
    ASSERT(s0.failures + 2, s1.failures);
    nrt_free(a);
    nrt_free(b);
    nrt_free(e);

    struct nrt_array arr;
    int64_t dims[2] = {3, 4};
    nrt_alloc_fail_after(0);
    ASSERT(NRT_ERR_NOMEM, nrt_array_init(&arr, NRT_DT_F32, 2, dims));
    nrt_alloc_fail_after(-1);
    CHECK(arr.data == NULL);
    nrt_array_free(&arr);
}

static void test_errors(void) {
    ASSERT(NRT_ERR_ARG, nrt_error_set(NRT_ERR_ARG, "bad %s %d\nsecond line", "thing", 7));
    CHECK(strcmp(nrt_error(), "bad thing 7 second line") == 0);
    nrt_error_clear();
    ASSERT(0, strlen(nrt_error()));
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    nrt_error_set(NRT_ERR_IO, "%s", big); /* truncated, never overflows */
    CHECK(strlen(nrt_error()) < sizeof big);
}

/* ------------------------------------------------------------ OOM sweeps -- */

typedef int op_fn(void);

static const char *p_idx, *p_lbl, *p_csv, *p_npy, *p_st, *p_st_out;

static int op_idx(void) {
    struct nrt_array a;
    struct nrt_load_opts o = nrt_load_opts_features(1.0 / 255, 0);
    int rc = nrt_idx_load(&a, p_idx, &o);
    if (!rc) {
        ASSERT(24, a.count);
        nrt_array_free(&a);
    }
    return rc;
}

static int op_csv(void) {
    struct nrt_array a;
    int rc = nrt_csv_load(&a, p_csv, NULL);
    if (!rc) {
        ASSERT(300, a.count);
        nrt_array_free(&a);
    }
    return rc;
}

static int op_npy(void) {
    struct nrt_array a;
    int rc = nrt_array_load(&a, p_npy, NULL);
    if (!rc) {
        ASSERT(6, a.count);
        nrt_array_free(&a);
    }
    return rc;
}

static int op_dataset(void) {
    struct nrt_dataset ds;
    struct nrt_load_opts l = nrt_load_opts_labels(10);
    int rc = nrt_dataset_load(&ds, p_idx, NULL, p_lbl, &l);
    if (!rc) {
        ASSERT(2, ds.n);
        nrt_dataset_free(&ds);
    }
    return rc;
}

static int op_dataset_csv(void) {
    struct nrt_dataset ds;
    struct nrt_load_opts l = nrt_load_opts_labels(0);
    int rc = nrt_dataset_load_csv(&ds, p_csv, -1, 1, NULL, &l);
    if (!rc) {
        ASSERT(100, ds.n);
        nrt_dataset_free(&ds);
    }
    return rc;
}

static int op_st_write(void) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    int32_t s[1] = {7};
    int64_t dw[2] = {2, 3}, ds[1] = {1};
    struct nrt_st_writer wr;
    nrt_st_writer_init(&wr);
    int rc = nrt_st_writer_add(&wr, "w", NRT_DT_F32, 2, dw, w);
    if (!rc) rc = nrt_st_writer_add(&wr, "step", NRT_DT_I32, 1, ds, s);
    if (!rc) rc = nrt_st_writer_meta_set(&wr, "model", "oom");
    if (!rc) rc = nrt_st_writer_meta_set(&wr, "model", "oom2");
    if (!rc) rc = nrt_st_writer_save(&wr, p_st_out);
    nrt_st_writer_free(&wr);
    return rc;
}

static int op_st_read(void) {
    struct nrt_st_reader r;
    int rc = nrt_st_reader_init(&r, p_st);
    if (!rc) {
        ASSERT(2, r.n_tensors);
        CHECK(nrt_st_reader_meta_get(&r, "model") != NULL);
        nrt_st_reader_free(&r);
    }
    return rc;
}

/* Runs op with the n-th allocation failing for n = 0, 1, ... until it succeeds. */
static void sweep(const char *what, op_fn *op) {
    int64_t base = live_blocks();
    int failures = 0, n;
    for (n = 0; n < 500; n++) {
        nrt_error_clear();
        nrt_alloc_fail_after(n);
        int rc = op();
        nrt_alloc_fail_after(-1);
        ASSERT(base, live_blocks());
        if (rc == 0) break;
        failures++;
        if (rc != NRT_ERR_NOMEM || !strstr(nrt_error(), "out of memory"))
            fprintf(stderr, "%s: allocation %d failed as: [%d] %s\n", what, n, rc, nrt_error());
        ASSERT(NRT_ERR_NOMEM, rc);
        CHECK(strstr(nrt_error(), "out of memory") != NULL);
    }
    CHECK(n < 500);
    CHECK(failures > 0);
    printf("oom sweep %-12s %d failing points, then success\n", what, failures);
}

static void test_oom(void) {
    /* IDX: 2 images of 3x4 u8, gzip-compressed; labels 2 x u8. */
    unsigned char idx[16 + 24] = {0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4};
    for (int i = 0; i < 24; i++) idx[16 + i] = (unsigned char)(i * 10);
    unsigned char lbl[8 + 2] = {0, 0, 8, 1, 0, 0, 0, 2, 3, 9};
    p_idx = tmp_path("img.idx.gz");
    write_gz(p_idx, idx, sizeof idx);
    p_lbl = tmp_path("lbl.idx");
    write_file(p_lbl, lbl, sizeof lbl);

    /* CSV: a header and 100 rows of 3 columns (label last). */
    char csv[4096];
    size_t at = (size_t)snprintf(csv, sizeof csv, "a,b,label\n");
    for (int i = 0; i < 100; i++)
        at += (size_t)snprintf(csv + at, sizeof csv - at, "%d.5,%d,%d\n", i, -i, i % 3);
    p_csv = tmp_path("t.csv");
    write_file(p_csv, csv, at);

    /* .npy: <i4 (2, 3). */
    char npy[128 + 24];
    memset(npy, ' ', 128);
    memcpy(npy, "\x93NUMPY\x01\x00\x76\x00", 10);
    const char *h = "{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }";
    memcpy(npy + 10, h, strlen(h));
    npy[127] = '\n';
    for (int i = 0; i < 6; i++) {
        int32_t v = i;
        memcpy(npy + 128 + 4 * i, &v, 4);
    }
    p_npy = tmp_path("a.npy");
    write_file(p_npy, npy, sizeof npy);

    p_st = tmp_path("good.safetensors");
    p_st_out = p_st;
    ASSERT(0, op_st_write());
    p_st_out = tmp_path("oom.safetensors");

    sweep("idx", op_idx);
    sweep("csv", op_csv);
    sweep("npy", op_npy);
    sweep("dataset", op_dataset);
    sweep("dataset_csv", op_dataset_csv);
    sweep("st_read", op_st_read);
    sweep("st_write", op_st_write);

    /* A failed save leaves neither a temp file nor a target. */
    unlink(p_st_out);
    nrt_alloc_fail_after(3);
    CHECK(op_st_write() != 0);
    nrt_alloc_fail_after(-1);
    CHECK(access(p_st_out, F_OK) != 0);
    char tmpname[300];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", p_st_out, (long)getpid());
    CHECK(access(tmpname, F_OK) != 0);

    const char *files[] = {p_idx, p_lbl, p_csv, p_npy, p_st, p_st_out};
    for (int i = 0; i < 6; i++) unlink(files[i]);
}

int main(void) {
    if (!test_dir_make("netrt_alloc")) return 1;
    test_alignment();
    test_counters();
    test_realloc();
    test_fail_after();
    test_errors();
    test_oom();
    ASSERT(0, live_blocks());
    rmdir(dir);
    TEST_DONE();
}
