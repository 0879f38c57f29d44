/* tests/unit/test_runtime_data.c -- libnetrt's data loaders and datasets. Each
 * test writes small files into a fresh temp dir: good IDX (raw and gzip), CSV
 * and .npy files checked value by value, corrupt ones checked for an error whose
 * message names the problem, then datasets, batching (last partial batch, no
 * allocation), the real Fashion-MNIST from Debian's dataset-fashion-mnist, a
 * fuzz loop of byte flips and truncations that must never crash, and PGM/PNG
 * images (values, errors, the same fuzzing). */
#include "runtime/netrt.h"
#include "test.h"
#include "test_runtime.h"

#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static void write_text(const char *path, const char *text) { write_file(path, text, strlen(text)); }

static size_t file_bytes(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* An IDX header for type code and dims, then raw (already big-endian) data. */
static size_t idx_build(unsigned char *buf, int type, int rank, const uint32_t *dims, const void *data,
                        size_t data_bytes) {
    buf[0] = buf[1] = 0;
    buf[2] = (unsigned char)type;
    buf[3] = (unsigned char)rank;
    for (int i = 0; i < rank; i++)
        for (int k = 0; k < 4; k++) buf[4 + 4 * i + k] = (unsigned char)(dims[i] >> (24 - 8 * k));
    memcpy(buf + 4 + 4 * rank, data, data_bytes);
    return 4 + 4 * (size_t)rank + data_bytes;
}

/* Stores v big-endian in n bytes. */
static void put_be(unsigned char *p, uint64_t v, int n) {
    for (int i = 0; i < n; i++) p[i] = (unsigned char)(v >> (8 * (n - 1 - i)));
}

/* ------------------------------------------------------------------- IDX -- */

static void test_idx_good(void) {
    unsigned char pix[24], buf[256];
    for (int i = 0; i < 24; i++) pix[i] = (unsigned char)(i * 11);
    uint32_t dims[3] = {2, 3, 4};
    size_t n = idx_build(buf, 0x08, 3, dims, pix, 24);
    const char *raw = tmp_path("img-idx3-ubyte"), *gz = tmp_path("img-idx3-ubyte.gz");
    write_file(raw, buf, n);
    write_gz(gz, buf, n);

    struct nrt_load_opts o = nrt_load_opts_features(1.0 / 255, -0.5);
    const char *paths[2] = {raw, gz};
    for (int p = 0; p < 2; p++) {
        struct nrt_array a;
        EXPECT_OK(nrt_idx_load(&a, paths[p], &o));
        ASSERT(NRT_DT_F32, a.dtype);
        ASSERT(3, a.rank);
        ASSERT(2, a.dims[0]);
        ASSERT(3, a.dims[1]);
        ASSERT(4, a.dims[2]);
        ASSERT(24, a.count);
        ASSERT(0, (uintptr_t)a.data % NRT_ALIGN);
        const float *f = a.data;
        for (int i = 0; i < 24; i++) ASSERT_NEAR(i * 11 / 255.0 - 0.5, f[i], 1e-6);
        nrt_array_free(&a);
        /* Detection picks IDX too, gzip or not. */
        EXPECT_OK(nrt_array_load(&a, paths[p], NULL));
        ASSERT(24, a.count);
        ASSERT_NEAR(253, ((float *)a.data)[23], 0);
        nrt_array_free(&a);
    }

    /* Labels as i32 with a class range. */
    unsigned char lab[5] = {0, 9, 3, 3, 7};
    uint32_t ld[1] = {5};
    n = idx_build(buf, 0x08, 1, ld, lab, 5);
    const char *lp = tmp_path("lbl-idx1-ubyte.gz");
    write_gz(lp, buf, n);
    struct nrt_load_opts lo = nrt_load_opts_labels(10);
    struct nrt_array l;
    EXPECT_OK(nrt_idx_load(&l, lp, &lo));
    ASSERT(NRT_DT_I32, l.dtype);
    ASSERT(1, l.rank);
    ASSERT(5, l.count);
    for (int i = 0; i < 5; i++) ASSERT(lab[i], ((int32_t *)l.data)[i]);
    nrt_array_free(&l);

    /* Wider big-endian types: i8, i16, i32, f32, f64. */
    unsigned char d[64];
    uint32_t d3[1] = {3};
    int8_t i8v[3] = {-128, -1, 127};
    n = idx_build(buf, 0x09, 1, d3, i8v, 3);
    write_file(tmp_path("i8.idx"), buf, n);
    struct nrt_array a;
    EXPECT_OK(nrt_idx_load(&a, tmp_path("i8.idx"), NULL));
    ASSERT_NEAR(-128, ((float *)a.data)[0], 0);
    ASSERT_NEAR(127, ((float *)a.data)[2], 0);
    nrt_array_free(&a);

    int16_t i16v[3] = {-30000, 2, 258};
    for (int i = 0; i < 3; i++) put_be(d + 2 * i, (uint16_t)i16v[i], 2);
    n = idx_build(buf, 0x0B, 1, d3, d, 6);
    write_file(tmp_path("i16.idx"), buf, n);
    EXPECT_OK(nrt_idx_load(&a, tmp_path("i16.idx"), NULL));
    ASSERT_NEAR(-30000, ((float *)a.data)[0], 0);
    ASSERT_NEAR(258, ((float *)a.data)[2], 0);
    nrt_array_free(&a);

    int32_t i32v[3] = {-5, 0, 100000};
    for (int i = 0; i < 3; i++) put_be(d + 4 * i, (uint32_t)i32v[i], 4);
    n = idx_build(buf, 0x0C, 1, d3, d, 12);
    write_file(tmp_path("i32.idx"), buf, n);
    struct nrt_load_opts any = nrt_load_opts_labels(0);
    EXPECT_OK(nrt_idx_load(&a, tmp_path("i32.idx"), &any));
    for (int i = 0; i < 3; i++) ASSERT(i32v[i], ((int32_t *)a.data)[i]);
    nrt_array_free(&a);

    float f32v[3] = {1.5f, -2.25f, 1e-3f};
    for (int i = 0; i < 3; i++) {
        uint32_t bits;
        memcpy(&bits, &f32v[i], 4);
        put_be(d + 4 * i, bits, 4);
    }
    n = idx_build(buf, 0x0D, 1, d3, d, 12);
    write_file(tmp_path("f32.idx"), buf, n);
    struct nrt_load_opts x2 = nrt_load_opts_features(2.0, 1.0);
    EXPECT_OK(nrt_idx_load(&a, tmp_path("f32.idx"), &x2));
    for (int i = 0; i < 3; i++) ASSERT_NEAR(f32v[i] * 2.0 + 1.0, ((float *)a.data)[i], 1e-6);
    nrt_array_free(&a);

    double f64v[3] = {3.0, -1e10, 0.125};
    for (int i = 0; i < 3; i++) {
        uint64_t bits;
        memcpy(&bits, &f64v[i], 8);
        put_be(d + 8 * i, bits, 8);
    }
    n = idx_build(buf, 0x0E, 1, d3, d, 24);
    write_file(tmp_path("f64.idx"), buf, n);
    EXPECT_OK(nrt_idx_load(&a, tmp_path("f64.idx"), NULL));
    for (int i = 0; i < 3; i++) ASSERT_NEAR(f64v[i], ((float *)a.data)[i], fabs(f64v[i]) * 1e-7);
    nrt_array_free(&a);
    /* f64 labels must be integral. */
    EXPECT_ERR(nrt_idx_load(&a, tmp_path("f64.idx"), &any), "index 1 does not fit in i32");
    EXPECT_ERR(nrt_idx_load(&a, tmp_path("f32.idx"), &any), "label 1.5 at index 0 is not an integer");
    CHECK(a.data == NULL);

    /* An empty dim is a valid empty array. */
    uint32_t d0[2] = {0, 28};
    n = idx_build(buf, 0x08, 2, d0, "", 0);
    write_file(tmp_path("empty.idx"), buf, n);
    EXPECT_OK(nrt_idx_load(&a, tmp_path("empty.idx"), NULL));
    ASSERT(0, a.count);
    nrt_array_free(&a);
}

static void test_idx_bad(void) {
    unsigned char buf[256], pix[24] = {0};
    uint32_t dims[3] = {2, 3, 4};
    struct nrt_array a;
    size_t n = idx_build(buf, 0x08, 3, dims, pix, 24);

    const char *p = tmp_path("train-images-idx3-ubyte.gz");
    unsigned char bad[256];
    memcpy(bad, buf, n);
    bad[2] = 0;
    bad[3] = 0;
    write_gz(p, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "train-images-idx3-ubyte.gz: bad IDX magic 0x00000000");
    CHECK(a.data == NULL);

    memcpy(bad, buf, n);
    bad[2] = 0x0A; /* no such type */
    write_file(p, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "bad IDX magic 0x00000a03");
    memcpy(bad, buf, n);
    bad[0] = 0x1f; /* looks like neither gzip nor IDX */
    write_file(p, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "bad IDX magic 0x1f000803");

    memcpy(bad, buf, n);
    bad[3] = 0;
    write_file(p, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "rank 0");
    bad[3] = 9;
    write_file(p, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "rank 9");

    write_file(p, buf, 3);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "too short for an IDX header (3 bytes)");
    write_file(p, buf, 10);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "truncated IDX header");
    write_gz(p, buf, n - 1);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "truncated IDX data: dims 2x3x4 of u8 need 24 bytes, file has 23");
    memcpy(bad, buf, n);
    bad[n] = 7;
    write_gz(p, bad, n + 1);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "1 extra bytes after the IDX data");

    /* A header promising far more than the file has fails before allocating it. */
    uint32_t huge[3] = {60000, 60000, 60000};
    n = idx_build(bad, 0x0E, 3, huge, pix, 24);
    write_file(p, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "truncated IDX data");
    uint32_t over[8] = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu, 2, 2, 2, 2};
    n = idx_build(bad, 0x08, 8, over, pix, 4);
    write_file(p, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "overflow");

    /* Labels out of range name the index and value. */
    unsigned char lab[6] = {1, 2, 3, 12, 4, 200};
    uint32_t ld[1] = {6};
    n = idx_build(bad, 0x08, 1, ld, lab, 6);
    const char *lp = tmp_path("t10k-labels-idx1-ubyte.gz");
    write_gz(lp, bad, n);
    struct nrt_load_opts lo = nrt_load_opts_labels(10);
    EXPECT_ERR(nrt_idx_load(&a, lp, &lo),
               "t10k-labels-idx1-ubyte.gz: label 12 at index 3 is out of range [0, 10)");
    ASSERT(NRT_ERR_RANGE, nrt_idx_load(&a, lp, &lo));
    int8_t neg[2] = {0, -1};
    uint32_t nd[1] = {2};
    n = idx_build(bad, 0x09, 1, nd, neg, 2);
    write_file(lp, bad, n);
    EXPECT_ERR(nrt_idx_load(&a, lp, &lo), "label -1 at index 1 is out of range [0, 10)");

    /* A gzip stream cut short or corrupted. */
    n = idx_build(buf, 0x08, 3, dims, pix, 24);
    write_gz(p, buf, n);
    unsigned char z[512];
    size_t zn = file_bytes(p, z, sizeof z);
    CHECK(zn > 20);
    write_file(p, z, zn - 6);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "gzip");
    z[zn - 5] ^= 0xff; /* the length trailer */
    write_file(p, z, zn);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "corrupt gzip data");

    /* Files that are not there or not files. */
    EXPECT_ERR(nrt_idx_load(&a, tmp_path("missing.gz"), NULL), "missing.gz: cannot open");
    EXPECT_ERR(nrt_idx_load(&a, dir, NULL), "is a directory");
    write_file(p, "", 0);
    EXPECT_ERR(nrt_idx_load(&a, p, NULL), "too short");
    struct nrt_load_opts wrong = nrt_load_opts_features(1, 0);
    wrong.dtype = NRT_DT_F64;
    n = idx_build(buf, 0x08, 3, dims, pix, 24);
    write_file(p, buf, n);
    EXPECT_ERR(nrt_idx_load(&a, p, &wrong), "f32 or i32, not f64");
}

/* ------------------------------------------------------------------- CSV -- */

static void test_csv(void) {
    struct nrt_array a;
    const char *p = tmp_path("t.csv");

    write_text(p, "x, y ,label\r\n1,2.5,0\r\n\r\n-3e2, \"4\" ,1\r\n5,.5,2");
    EXPECT_OK(nrt_csv_load(&a, p, NULL));
    ASSERT(2, a.rank);
    ASSERT(3, a.dims[0]);
    ASSERT(3, a.dims[1]);
    static const float want[9] = {1, 2.5f, 0, -300, 4, 1, 5, 0.5f, 2};
    for (int i = 0; i < 9; i++) ASSERT_NEAR(want[i], ((float *)a.data)[i], 1e-6);
    nrt_array_free(&a);

    /* No header, scaled, and detected by content. */
    write_text(p, "1,2\n3,4\n");
    struct nrt_load_opts o = nrt_load_opts_features(0.5, 1);
    EXPECT_OK(nrt_array_load(&a, p, &o));
    ASSERT(2, a.dims[0]);
    ASSERT_NEAR(3.0, ((float *)a.data)[3], 0);
    nrt_array_free(&a);
    /* A forced header skips a numeric first line. */
    o.csv_header = 1;
    EXPECT_OK(nrt_csv_load(&a, p, &o));
    ASSERT(1, a.dims[0]);
    nrt_array_free(&a);
    /* No header allowed: a text first line is a bad field on line 1. */
    write_text(p, "a,b\n1,2\n");
    o.csv_header = 0;
    EXPECT_ERR(nrt_csv_load(&a, p, &o), "t.csv:1: field 1 is not a number: 'a'");

    write_text(p, "a,b\n1,2\n3,abc\n");
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "t.csv:3: field 2 is not a number: 'abc'");
    write_text(p, "1,2\n3,4\n\n5\n");
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "t.csv:4: 1 fields, expected 2 as on line 1");
    write_text(p, "1,2\n3,4,5\n");
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "t.csv:2: 3 fields, expected 2");
    write_text(p, "1,2\n3,\n");
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "t.csv:2: field 2 is not a number: ''");
    write_text(p, "1,nan\n");
    EXPECT_ERR(nrt_csv_load(&a, p, &o), "field 2 is not a number: 'nan'");
    write_text(p, "1,1e999\n");
    EXPECT_ERR(nrt_csv_load(&a, p, &o), "field 2 is not a number");
    write_text(p, "1,0x10\n");
    EXPECT_ERR(nrt_csv_load(&a, p, &o), "field 2 is not a number");
    write_text(p, "1,\"2\n");
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "t.csv:1: unterminated quote");
    write_text(p, "");
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "no data rows");
    write_text(p, "a,b,c\n\n");
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "no data rows");
    write_file(p, "1,2\n\0\0\n", 7);
    EXPECT_ERR(nrt_csv_load(&a, p, NULL), "t.csv:2: NUL byte");

    /* Labels: integral and in range. */
    struct nrt_load_opts lo = nrt_load_opts_labels(3);
    write_text(p, "label\n0\n2\n1\n");
    EXPECT_OK(nrt_csv_load(&a, p, &lo));
    ASSERT(NRT_DT_I32, a.dtype);
    ASSERT(2, ((int32_t *)a.data)[1]);
    nrt_array_free(&a);
    write_text(p, "label\n0\n3\n");
    EXPECT_ERR(nrt_csv_load(&a, p, &lo), "label 3 at index 1 is out of range [0, 3)");
    write_text(p, "label\n0\n1.5\n");
    EXPECT_ERR(nrt_csv_load(&a, p, &lo), "label 1.5 at index 1 is not an integer");

    /* gzip-compressed CSV. */
    const char *gz = tmp_path("t.csv.gz");
    const char *text = "a,b\n1,2\n3,4\n";
    write_gz(gz, text, strlen(text));
    EXPECT_OK(nrt_array_load(&a, gz, NULL));
    ASSERT(4, a.count);
    nrt_array_free(&a);
}

/* ------------------------------------------------------------------- npy -- */

/* A .npy file: magic, version, header dict padded to 64 bytes, then data. */
static size_t npy_build(unsigned char *buf, int major, const char *dict, const void *data, size_t n) {
    size_t pre = major == 1 ? 10 : 12, dl = strlen(dict);
    size_t total = (pre + dl + 1 + 63) / 64 * 64;
    size_t hlen = total - pre;
    memcpy(buf, "\x93NUMPY", 6);
    buf[6] = (unsigned char)major;
    buf[7] = 0;
    for (size_t i = 0; i < pre - 8; i++) buf[8 + i] = (unsigned char)(hlen >> (8 * i));
    memcpy(buf + pre, dict, dl);
    memset(buf + pre + dl, ' ', hlen - dl - 1);
    buf[total - 1] = '\n';
    memcpy(buf + total, data, n);
    return total + n;
}

static void test_npy(void) {
    unsigned char buf[1024];
    struct nrt_array a;
    const char *p = tmp_path("a.npy");

    float f4[6] = {0, 1, 2, 3, 4.5f, -5};
    size_t n =
        npy_build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4, sizeof f4);
    write_file(p, buf, n);
    EXPECT_OK(nrt_npy_load(&a, p, NULL));
    ASSERT(2, a.rank);
    ASSERT(2, a.dims[0]);
    ASSERT(3, a.dims[1]);
    ASSERT_NEAR(4.5, ((float *)a.data)[4], 0);
    nrt_array_free(&a);

    /* Version 2, double quotes, other key order, and detection. */
    double f8[3] = {0.5, 1.5, -2};
    n = npy_build(buf, 2, "{\"shape\": (3,), \"fortran_order\": False, \"descr\": \"<f8\"}", f8, sizeof f8);
    write_file(p, buf, n);
    EXPECT_OK(nrt_array_load(&a, p, NULL));
    ASSERT(1, a.rank);
    ASSERT(3, a.dims[0]);
    ASSERT_NEAR(-2, ((float *)a.data)[2], 0);
    nrt_array_free(&a);

    struct nrt_load_opts lo = nrt_load_opts_labels(10);
    int32_t i4[4] = {1, 9, 0, 5};
    n = npy_build(buf, 1, "{'descr': '<i4', 'fortran_order': False, 'shape': (4,), }", i4, sizeof i4);
    write_file(p, buf, n);
    EXPECT_OK(nrt_npy_load(&a, p, &lo));
    for (int i = 0; i < 4; i++) ASSERT(i4[i], ((int32_t *)a.data)[i]);
    nrt_array_free(&a);

    int64_t i8[2] = {7, 10};
    n = npy_build(buf, 1, "{'descr': '<i8', 'fortran_order': False, 'shape': (2,), }", i8, sizeof i8);
    write_file(p, buf, n);
    EXPECT_ERR(nrt_npy_load(&a, p, &lo), "label 10 at index 1 is out of range [0, 10)");
    EXPECT_OK(nrt_npy_load(&a, p, NULL));
    ASSERT_NEAR(10, ((float *)a.data)[1], 0);
    nrt_array_free(&a);

    unsigned char u1[4] = {0, 128, 255, 1};
    n = npy_build(buf, 1, "{'descr': '|u1', 'fortran_order': False, 'shape': (2, 2), }", u1, 4);
    write_file(p, buf, n);
    struct nrt_load_opts sc = nrt_load_opts_features(1.0 / 255, 0);
    EXPECT_OK(nrt_npy_load(&a, p, &sc));
    ASSERT_NEAR(1.0, ((float *)a.data)[2], 1e-7);
    nrt_array_free(&a);

    int8_t s1[2] = {-3, 4};
    n = npy_build(buf, 1, "{'descr': '|i1', 'fortran_order': False, 'shape': (1, 2), }", s1, 2);
    write_file(p, buf, n);
    EXPECT_OK(nrt_npy_load(&a, p, NULL));
    ASSERT_NEAR(-3, ((float *)a.data)[0], 0);
    nrt_array_free(&a);

    float one = 42;
    n = npy_build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), }", &one, 4);
    write_file(p, buf, n);
    EXPECT_OK(nrt_npy_load(&a, p, NULL));
    ASSERT(0, a.rank);
    ASSERT(1, a.count);
    nrt_array_free(&a);

    /* Bad headers and sizes. */
    struct {
        const char *dict; /* header text */
        const char *msg;  /* expected part of the message */
    } bad[] = {
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", "fortran_order True"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2, 3), }", "unsupported .npy dtype '>f4'"},
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2, 3), }", "unsupported .npy dtype '<c8'"},
        {"{'descr': '<f4', 'fortran_order': False, }", "no 'shape' key"},
        {"{'descr': '<f4', 'shape': (6,), }", "no 'fortran_order' key"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (6,), 'x': 1}", "unknown key 'x'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (6,)}", "duplicate key 'descr'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,,3), }", "non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, -3), }", "non-negative integer"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2, 3], }", "expected '('"},
        {"{'descr': '<f4', 'fortran_order': Maybe, 'shape': (2, 3), }", "True or False"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3)} x", "text after the dict"},
        {"{'descr': '<f4 'fortran_order': False, 'shape': (2, 3)}", "expected ',' or '}' after a value"},
        {"{'descr' '<f4', 'fortran_order': False, 'shape': (2, 3)}", "expected ':'"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,)}", "overflows"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1)}", "more than 8 dims"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), ", "expected a quoted string"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (4, 3), }",
         "truncated .npy data: dims 4x3 of f32 need 48 bytes, file has 24"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (5,), }", "4 extra bytes after the .npy data"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        n = npy_build(buf, 1, bad[i].dict, f4, sizeof f4);
        write_file(p, buf, n);
        EXPECT_ERR(nrt_npy_load(&a, p, NULL), bad[i].msg);
        CHECK(strstr(nrt_error(), "a.npy") != NULL);
    }
    n = npy_build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4, sizeof f4);
    unsigned char copy[1024];
    memcpy(copy, buf, n);
    copy[0] = 0x92;
    write_file(p, copy, n);
    EXPECT_ERR(nrt_npy_load(&a, p, NULL), "bad .npy magic");
    memcpy(copy, buf, n);
    copy[6] = 4;
    write_file(p, copy, n);
    EXPECT_ERR(nrt_npy_load(&a, p, NULL), "unsupported .npy version 4.0");
    memcpy(copy, buf, n);
    copy[8] = 0xff;
    copy[9] = 0xff;
    write_file(p, copy, n);
    EXPECT_ERR(nrt_npy_load(&a, p, NULL), "truncated .npy header");
    memcpy(copy, buf, 12);
    copy[6] = 2;
    copy[8] = copy[9] = copy[10] = copy[11] = 0xff;
    write_file(p, copy, 12);
    EXPECT_ERR(nrt_npy_load(&a, p, NULL), "header length 4294967295 exceeds");
    write_file(p, buf, 9);
    EXPECT_ERR(nrt_npy_load(&a, p, NULL), "bad .npy magic");
}

/* ------------------------------------------------------ datasets, batches -- */

static void test_dataset(void) {
    unsigned char buf[256], pix[36];
    for (int i = 0; i < 36; i++) pix[i] = (unsigned char)i;
    uint32_t dims[3] = {3, 3, 4}, ld[1] = {3}, ld2[1] = {2};
    unsigned char lab[3] = {2, 0, 1};
    const char *xp = tmp_path("x-idx3.gz"), *yp = tmp_path("y-idx1.gz");
    write_gz(xp, buf, idx_build(buf, 0x08, 3, dims, pix, 36));
    write_gz(yp, buf, idx_build(buf, 0x08, 1, ld, lab, 3));
    struct nrt_load_opts lo = nrt_load_opts_labels(3);
    struct nrt_dataset ds;
    EXPECT_OK(nrt_dataset_load(&ds, xp, NULL, yp, &lo));
    ASSERT(3, ds.n);
    ASSERT(12, ds.x_row);
    ASSERT(1, ds.y_row);
    nrt_dataset_free(&ds);

    const char *y2 = tmp_path("y2-idx1.gz");
    write_gz(y2, buf, idx_build(buf, 0x08, 1, ld2, lab, 2));
    EXPECT_ERR(nrt_dataset_load(&ds, xp, NULL, y2, &lo), "x-idx3.gz has 3 samples but");
    CHECK(strstr(nrt_error(), "y2-idx1.gz has 2") != NULL);
    CHECK(ds.x.data == NULL);
    EXPECT_ERR(nrt_dataset_load(&ds, xp, NULL, tmp_path("nope"), &lo), "nope: cannot open");

    /* Unlabelled. */
    EXPECT_OK(nrt_dataset_load(&ds, xp, NULL, NULL, NULL));
    ASSERT(0, ds.y_row);
    float xb[24];
    int32_t yb[2];
    ASSERT(-1, nrt_dataset_batch_get(&ds, NULL, 2, 0, xb, yb));
    CHECK(strstr(nrt_error(), "no labels") != NULL);
    ASSERT(2, nrt_dataset_batch_get(&ds, NULL, 2, 0, xb, NULL));
    nrt_dataset_free(&ds);

    /* One CSV split into features and labels or targets. */
    const char *cp = tmp_path("d.csv");
    write_text(cp, "f1,f2,label,f3\n1,2,0,3\n4,5,1,6\n7,8,2,9\n");
    EXPECT_OK(nrt_dataset_load_csv(&ds, cp, 2, 1, NULL, &lo));
    ASSERT(3, ds.n);
    ASSERT(3, ds.x_row);
    ASSERT(1, ds.y.rank);
    ASSERT(NRT_DT_I32, ds.y.dtype);
    static const float xw[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    for (int i = 0; i < 9; i++) ASSERT_NEAR(xw[i], ((float *)ds.x.data)[i], 0);
    ASSERT(2, ((int32_t *)ds.y.data)[2]);
    nrt_dataset_free(&ds);
    struct nrt_load_opts t = nrt_load_opts_features(1, 0);
    EXPECT_OK(nrt_dataset_load_csv(&ds, cp, -2, 2, NULL, &t));
    ASSERT(2, ds.y.rank);
    ASSERT(2, ds.y.dims[1]);
    ASSERT_NEAR(9, ((float *)ds.y.data)[5], 0);
    ASSERT_NEAR(8, ((float *)ds.x.data)[5], 0);
    nrt_dataset_free(&ds);
    EXPECT_ERR(nrt_dataset_load_csv(&ds, cp, 0, 4, NULL, &t), "keep at least one feature column");
    EXPECT_ERR(nrt_dataset_load_csv(&ds, cp, 4, 1, NULL, &t), "cannot take 1 label columns");
    EXPECT_ERR(nrt_dataset_load_csv(&ds, cp, -5, 1, NULL, &t), "cannot take");
    struct nrt_load_opts l2 = nrt_load_opts_labels(2);
    EXPECT_ERR(nrt_dataset_load_csv(&ds, cp, 2, 1, NULL, &l2), "label 2 at index 2 is out of range [0, 2)");
    write_text(cp, "1,2\n3,x\n");
    EXPECT_ERR(nrt_dataset_load_csv(&ds, cp, -1, 1, NULL, &lo), "d.csv:2: field 2 is not a number");

    /* nrt_dataset_init checks its arrays and always takes them. */
    struct nrt_array x, y;
    int64_t xd[2] = {4, 2}, yd[1] = {5};
    EXPECT_OK(nrt_array_init(&x, NRT_DT_F32, 2, xd));
    EXPECT_OK(nrt_array_init(&y, NRT_DT_I32, 1, yd));
    EXPECT_ERR(nrt_dataset_init(&ds, &x, "xs", &y, "ys"), "xs has 4 samples but ys has 5");
    CHECK(x.data == NULL && y.data == NULL);
    EXPECT_OK(nrt_array_init(&x, NRT_DT_F32, 0, xd));
    EXPECT_ERR(nrt_dataset_init(&ds, &x, "scalar", NULL, NULL), "at least one dim");
}

static void test_batching(void) {
    struct nrt_array x, y;
    int64_t xd[2] = {10, 3}, yd[1] = {10};
    nrt_array_init(&x, NRT_DT_F32, 2, xd);
    nrt_array_init(&y, NRT_DT_I32, 1, yd);
    for (int i = 0; i < 30; i++) ((float *)x.data)[i] = (float)i;
    for (int i = 0; i < 10; i++) ((int32_t *)y.data)[i] = 100 + i;
    struct nrt_dataset ds;
    EXPECT_OK(nrt_dataset_init(&ds, &x, "x", &y, "y"));
    ASSERT(3, nrt_dataset_batch_count(&ds, 4));
    ASSERT(1, nrt_dataset_batch_count(&ds, 10));
    ASSERT(1, nrt_dataset_batch_count(&ds, 64));
    ASSERT(10, nrt_dataset_batch_count(&ds, 1));
    ASSERT(-1, nrt_dataset_batch_count(&ds, 0));

    int64_t perm[10];
    struct nrt_rng r;
    nrt_rng_init(&r, 5, 0);
    nrt_rng_perm(&r, perm, 10);
    float xb[12];
    int32_t yb[4];
    uint64_t calls = nrt_alloc_count();
    int64_t total = 0, seen = 0;
    for (int64_t b = 0; b < 3; b++) {
        int64_t n = nrt_dataset_batch_get(&ds, perm, 4, b, xb, yb);
        ASSERT(b < 2 ? 4 : 2, n);
        for (int64_t i = 0; i < n; i++) {
            int64_t s = perm[b * 4 + i];
            ASSERT(100 + s, yb[i]);
            for (int k = 0; k < 3; k++) ASSERT_NEAR(s * 3 + k, xb[i * 3 + k], 0);
            seen |= (int64_t)1 << s;
        }
        total += n;
    }
    ASSERT(10, total);
    ASSERT(0x3ff, seen); /* every sample, none dropped */
    ASSERT(calls, nrt_alloc_count());

    /* Without a permutation: in order. */
    ASSERT(2, nrt_dataset_batch_get(&ds, NULL, 4, 2, xb, yb));
    ASSERT(108, yb[0]);
    ASSERT(109, yb[1]);
    ASSERT_NEAR(24, xb[0], 0);

    ASSERT(-1, nrt_dataset_batch_get(&ds, perm, 4, 3, xb, yb));
    CHECK(strstr(nrt_error(), "batch 3 is out of range [0, 3)") != NULL);
    ASSERT(-1, nrt_dataset_batch_get(&ds, perm, 4, -1, xb, yb));
    ASSERT(-1, nrt_dataset_batch_get(&ds, perm, 0, 0, xb, yb));
    perm[9] = 10;
    ASSERT(-1, nrt_dataset_batch_get(&ds, perm, 4, 2, xb, yb));
    CHECK(strstr(nrt_error(), "permutation entry 9 is 10") != NULL);
    nrt_dataset_free(&ds);
}

/* ------------------------------------------------ the real Fashion-MNIST -- */

#define FMNIST "/usr/share/datasets/fashion-mnist/"

static void check_fmnist(const char *images, const char *labels, int64_t n) {
    struct nrt_dataset ds;
    struct nrt_load_opts xo = nrt_load_opts_features(1.0 / 255, 0);
    struct nrt_load_opts yo = nrt_load_opts_labels(10);
    EXPECT_OK(nrt_dataset_load(&ds, images, &xo, labels, &yo));
    if (!ds.x.data) return;
    ASSERT(n, ds.n);
    ASSERT(3, ds.x.rank);
    ASSERT(28, ds.x.dims[1]);
    ASSERT(28, ds.x.dims[2]);
    ASSERT(784, ds.x_row);
    ASSERT(1, ds.y.rank);
    const float *px = ds.x.data;
    float lo = 1, hi = 0;
    double sum = 0;
    for (int64_t i = 0; i < ds.x.count; i++) {
        lo = px[i] < lo ? px[i] : lo;
        hi = px[i] > hi ? px[i] : hi;
        sum += px[i];
    }
    ASSERT_NEAR(0.0, lo, 0);
    ASSERT_NEAR(1.0, hi, 0);
    ASSERT_NEAR(0.286, sum / (double)ds.x.count, 0.01); /* Fashion-MNIST's mean pixel */
    int64_t hist[10] = {0}, total = 0;
    const int32_t *lab = ds.y.data;
    for (int64_t i = 0; i < ds.n; i++) hist[lab[i]]++;
    for (int c = 0; c < 10; c++) {
        ASSERT(n / 10, hist[c]); /* balanced: 6000 or 1000 per class */
        total += hist[c];
    }
    ASSERT(n, total);
    ASSERT(9, lab[0]); /* both splits start with an ankle boot */

    /* One epoch in batches of 64: all samples, the last batch partial, no allocation. */
    int64_t *perm = nrt_alloc((size_t)n * sizeof *perm, 0);
    float *xb = nrt_alloc(64 * 784 * sizeof *xb, 0);
    int32_t *yb = nrt_alloc(64 * sizeof *yb, 0);
    struct nrt_rng r;
    nrt_rng_init(&r, 1, 0);
    nrt_rng_perm(&r, perm, n);
    int64_t batches = nrt_dataset_batch_count(&ds, 64), seen = 0, last = 0, hist2[10] = {0};
    ASSERT((n + 63) / 64, batches);
    uint64_t calls = nrt_alloc_count();
    for (int64_t b = 0; b < batches; b++) {
        last = nrt_dataset_batch_get(&ds, perm, 64, b, xb, yb);
        for (int64_t i = 0; i < last; i++) hist2[yb[i]]++;
        seen += last;
    }
    ASSERT(calls, nrt_alloc_count());
    ASSERT(n, seen);
    ASSERT(n % 64, last);
    for (int c = 0; c < 10; c++) ASSERT(hist[c], hist2[c]);
    nrt_free(perm);
    nrt_free(xb);
    nrt_free(yb);
    nrt_dataset_free(&ds);
}

static void test_fashion_mnist(void) {
    if (access(FMNIST "train-images-idx3-ubyte.gz", R_OK) != 0) {
        TEST_FAIL_(FMNIST " is not installed: run scripts/setup.sh (apt-get install dataset-fashion-mnist)");
        return;
    }
    check_fmnist(FMNIST "train-images-idx3-ubyte.gz", FMNIST "train-labels-idx1-ubyte.gz", 60000);
    check_fmnist(FMNIST "t10k-images-idx3-ubyte.gz", FMNIST "t10k-labels-idx1-ubyte.gz", 10000);
    /* Images and labels swapped: the label file is not rank 3 and counts differ. */
    struct nrt_dataset ds;
    struct nrt_load_opts yo = nrt_load_opts_labels(10);
    EXPECT_ERR(nrt_dataset_load(&ds, FMNIST "t10k-labels-idx1-ubyte.gz", NULL,
                                FMNIST "train-labels-idx1-ubyte.gz", &yo),
               "t10k-labels-idx1-ubyte.gz has 10000 samples but");
}

/* ------------------------------------------------------------------ fuzz -- */

/* Mutates good[0..n) into out: byte flips, a truncation, appended garbage. */
static size_t mutate(struct nrt_rng *r, const unsigned char *good, size_t n, unsigned char *out) {
    memcpy(out, good, n);
    uint32_t how = nrt_rng_u32(r) % 4;
    if (how == 0 || how == 2) {
        int flips = 1 + (int)nrt_rng_below(r, 4);
        for (int i = 0; i < flips; i++) out[nrt_rng_below(r, n)] = (unsigned char)nrt_rng_u32(r);
    }
    if (how == 1 || how == 2) n = (size_t)nrt_rng_below(r, n + 1);
    if (how == 3) {
        size_t extra = 1 + (size_t)nrt_rng_below(r, 16);
        for (size_t i = 0; i < extra; i++) out[n + i] = (unsigned char)nrt_rng_u32(r);
        n += extra;
    }
    return n;
}

typedef int loader_fn(struct nrt_array *, const char *, const struct nrt_load_opts *);

static void fuzz(const char *what, const unsigned char *good, size_t n, loader_fn *load, int iters) {
    struct nrt_rng r;
    nrt_rng_init(&r, 12345, (uint64_t)n);
    unsigned char out[2048];
    const char *p = tmp_path("fuzz.bin");
    int64_t base = live_blocks();
    int failed = 0, ok_msgs = 1;
    struct nrt_load_opts lo = nrt_load_opts_labels(10);
    for (int it = 0; it < iters; it++) {
        size_t m = mutate(&r, good, n, out);
        write_file(p, out, m);
        for (int k = 0; k < 3; k++) {
            struct nrt_array a;
            nrt_error_clear();
            int rc = k == 0 ? load(&a, p, NULL) : k == 1 ? load(&a, p, &lo) : nrt_array_load(&a, p, NULL);
            if (rc) {
                failed++;
                ok_msgs &= nrt_error()[0] != '\0' && strstr(nrt_error(), "fuzz.bin") != NULL;
            } else {
                ok_msgs &= a.data != NULL;
                nrt_array_free(&a);
            }
        }
    }
    CHECK(ok_msgs);
    CHECK(failed > 0);
    ASSERT(base, live_blocks());
    printf("fuzz %-8s %d runs, %d rejected\n", what, 3 * iters, failed);
}

/* ---------------------------------------------------------------- images -- */

/* A minimal 8-bit PNG of w x h pixels (colour type 0 gray or 2 RGB) into buf. */
static size_t png_build(unsigned char *buf, int w, int h, int rgb, const unsigned char *px) {
    unsigned char raw[1024], z[1200];
    size_t at = 0, ch = rgb ? 3 : 1;
    for (int y = 0; y < h; y++) {
        raw[at++] = 0; /* filter: none */
        for (int x = 0; x < w; x++)
            for (size_t c = 0; c < ch; c++) raw[at++] = px[y * w + x];
    }
    uLongf zn = sizeof z;
    compress(z, &zn, raw, at);
    size_t n = 0;
    memcpy(buf, "\x89PNG\r\n\x1a\n", 8);
    n = 8;
    const struct {
        const char *kind;
        const unsigned char *data;
        size_t len;
    } chunks[3] = {{"IHDR", NULL, 13}, {"IDAT", z, zn}, {"IEND", NULL, 0}};
    unsigned char ihdr[13] = {0};
    put_be(ihdr, (uint64_t)w, 4);
    put_be(ihdr + 4, (uint64_t)h, 4);
    ihdr[8] = 8;
    ihdr[9] = rgb ? 2 : 0;
    for (int k = 0; k < 3; k++) {
        const unsigned char *d = k == 0 ? ihdr : chunks[k].data;
        put_be(buf + n, chunks[k].len, 4);
        memcpy(buf + n + 4, chunks[k].kind, 4);
        if (chunks[k].len) memcpy(buf + n + 8, d, chunks[k].len);
        uLong crc = crc32(0, buf + n + 4, (uInt)(4 + chunks[k].len));
        put_be(buf + n + 8 + chunks[k].len, crc, 4);
        n += 12 + chunks[k].len;
    }
    return n;
}

static void test_images(void) {
    const char *p = tmp_path("img.pgm");
    struct nrt_array a;
    struct nrt_load_opts o = nrt_load_opts_features(1.0 / 255, 0);
    /* P5, 3x2, scaled */
    write_file(p, "P5\n# c\n3 2\n255\n\x00\x33\xff\x01\x02\x80", 21);
    EXPECT_OK(nrt_array_load(&a, p, &o));
    ASSERT(3, a.rank);
    ASSERT(1, (int)a.dims[0]);
    ASSERT(2, (int)a.dims[1]);
    ASSERT(3, (int)a.dims[2]);
    ASSERT_NEAR(0.2, ((float *)a.data)[1], 1e-6);
    ASSERT_NEAR(1.0, ((float *)a.data)[2], 1e-6);
    nrt_array_free(&a);
    /* P2 with maxval 15 is stretched to 0..255 */
    write_text(p, "P2 2 1 15\n# two pixels\n 0 15\n");
    EXPECT_OK(nrt_image_load(&a, p, NULL));
    ASSERT_NEAR(255.0, ((float *)a.data)[1], 1e-6);
    nrt_array_free(&a);
    write_text(p, "P2 2 1 15 0 16");
    EXPECT_ERR(nrt_image_load(&a, p, NULL), "pixel 2 is 16, above maxval 15");
    write_text(p, "P5 3 2 255\n\x01\x02");
    EXPECT_ERR(nrt_image_load(&a, p, NULL), "truncated PGM");
    write_text(p, "P5 3 -2 255\n");
    EXPECT_ERR(nrt_image_load(&a, p, NULL), "malformed PGM header");
    write_text(p, "P5 1 1 255\nxy");
    EXPECT_ERR(nrt_image_load(&a, p, NULL), "1 bytes after the PGM's pixels");
    write_text(p, "P5 1 1 255\nx");
    EXPECT_ERR(nrt_image_load(&a, p, &(struct nrt_load_opts){NRT_DT_I32, 1, 0, 0, -1}), "not labels");
    write_text(p, "hello");
    EXPECT_ERR(nrt_image_load(&a, p, NULL), "not a PGM (P5, P2) or PNG image");

    /* PNG, gray and RGB */
    unsigned char px[6] = {0, 51, 255, 1, 2, 128}, buf[1500];
    const char *q = tmp_path("img.png");
    size_t n = png_build(buf, 3, 2, 0, px);
    write_file(q, buf, n);
    EXPECT_OK(nrt_array_load(&a, q, &o));
    ASSERT(2, (int)a.dims[1]);
    ASSERT(3, (int)a.dims[2]);
    ASSERT_NEAR(0.2, ((float *)a.data)[1], 1e-6);
    ASSERT_NEAR(128.0 / 255, ((float *)a.data)[5], 1e-6);
    nrt_array_free(&a);
    fuzz("png", buf, n, nrt_image_load, 800);
    n = png_build(buf, 3, 2, 1, px);
    write_file(q, buf, n);
    EXPECT_OK(nrt_image_load(&a, q, NULL));
    ASSERT_NEAR(51.0, ((float *)a.data)[1], 1.0);
    nrt_array_free(&a);
    write_file(q, buf, n / 2);
    EXPECT_ERR(nrt_image_load(&a, q, NULL), "bad PNG");
    write_file(p, "P5\n3 2\n255\n\x00\x33\xff\x01\x02\x80", 17);
    n = file_bytes(p, buf, sizeof buf);
    fuzz("pgm", buf, n, nrt_image_load, 800);
    write_text(p, "P2\n3 2\n255\n0 51 255\n1 2 128\n");
    n = file_bytes(p, buf, sizeof buf);
    fuzz("pgm-p2", buf, n, nrt_image_load, 800);
}

static void test_fuzz(void) {
    unsigned char buf[512], pix[60];
    for (int i = 0; i < 60; i++) pix[i] = (unsigned char)(i % 10);
    uint32_t dims[3] = {3, 4, 5};
    size_t n = idx_build(buf, 0x08, 3, dims, pix, 60);
    fuzz("idx", buf, n, nrt_idx_load, 1500);

    /* The same on the gzip-compressed bytes. */
    const char *gz = tmp_path("fz.gz");
    write_gz(gz, buf, n);
    unsigned char z[512];
    size_t zn = file_bytes(gz, z, sizeof z);
    fuzz("idx.gz", z, zn, nrt_idx_load, 1500);

    float f4[6] = {0, 1, 2, 3, 4, 5};
    n = npy_build(buf, 1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }", f4, sizeof f4);
    fuzz("npy", buf, n, nrt_npy_load, 1500);

    const char *csv = "a,b,label\n1,2,3\n4.5,-6e1,7\n\"8\",9,0\n";
    fuzz("csv", (const unsigned char *)csv, strlen(csv), nrt_csv_load, 1500);
}

int main(void) {
    if (!test_dir_make("netrt_data")) return 1;
    int64_t base = live_blocks();
    test_idx_good();
    test_idx_bad();
    test_csv();
    test_npy();
    test_dataset();
    test_batching();
    test_fashion_mnist();
    test_fuzz();
    test_images();
    ASSERT(base, live_blocks());

    static const char *names[] = {"img-idx3-ubyte",
                                  "img-idx3-ubyte.gz",
                                  "lbl-idx1-ubyte.gz",
                                  "i8.idx",
                                  "i16.idx",
                                  "i32.idx",
                                  "f32.idx",
                                  "f64.idx",
                                  "empty.idx",
                                  "train-images-idx3-ubyte.gz",
                                  "t10k-labels-idx1-ubyte.gz",
                                  "t.csv",
                                  "t.csv.gz",
                                  "a.npy",
                                  "x-idx3.gz",
                                  "y-idx1.gz",
                                  "y2-idx1.gz",
                                  "d.csv",
                                  "fuzz.bin",
                                  "fz.gz",
                                  "img.pgm",
                                  "img.png"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) unlink(tmp_path(names[i]));
    if (rmdir(dir) != 0) TEST_FAIL_("temp dir %s not empty after the tests", dir);
    TEST_DONE();
}
