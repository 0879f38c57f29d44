/* tests/unit/test_runtime_safetensors.c -- libnetrt's safetensors checkpoints:
 * round trip of every kind of tensor and of metadata, the exact file layout,
 * atomic saves (temp file and rename, nothing left behind on failure), writer
 * argument checks, a table of corrupt files that must each give a clean error,
 * and a fuzz loop. With arguments it is the C side of safetensors_compat.py:
 *   test_runtime_safetensors --write PATH   writes the reference checkpoint
 *   test_runtime_safetensors --check PATH   checks the one Python wrote */
#include "runtime/netrt.h"
#include "test.h"
#include "test_runtime.h"

#include <sys/wait.h>

#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static size_t read_file(const char *path, unsigned char *buf, size_t cap) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

/* A safetensors file from header text (not padded) and data bytes. */
static void write_st(const char *path, const char *json, const void *data, size_t n) {
    unsigned char buf[4096];
    size_t h = strlen(json);
    for (int i = 0; i < 8; i++) buf[i] = (unsigned char)((uint64_t)h >> (8 * i));
    memcpy(buf + 8, json, h);
    memcpy(buf + 8 + h, data, n);
    write_file(path, buf, 8 + h + n);
}

/* Names in dir other than the ones the tests keep. */
static int stray_files(void) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) n += strstr(e->d_name, ".tmp.") != NULL;
    if (d) closedir(d);
    return n;
}

/* -------------------------------------------------------------- round trip -- */

static float w1[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11.5f};
static float b1[4] = {-1, 0.5f, 2, 1e-8f};
static int64_t step = 1234567890123LL;
static uint8_t mask[5] = {1, 0, 1, 1, 0};
static int32_t ids[4] = {-7, 8, 2147483647, -2147483647 - 1};
static double dbl[2] = {3.141592653589793, -2.5};

static int write_reference(const char *path) {
    struct nrt_st_writer w;
    int64_t dw[2] = {3, 4}, db[1] = {4}, dm[1] = {5}, di[2] = {2, 2}, de[2] = {0, 3}, dd[1] = {2};
    nrt_st_writer_init(&w);
    int rc = 0;
    rc = rc ? rc : nrt_st_writer_add(&w, "layer1.weight", NRT_DT_F32, 2, dw, w1);
    rc = rc ? rc : nrt_st_writer_add(&w, "layer1.bias", NRT_DT_F32, 1, db, b1);
    rc = rc ? rc : nrt_st_writer_add(&w, "step", NRT_DT_I64, 0, NULL, &step);
    rc = rc ? rc : nrt_st_writer_add(&w, "mask", NRT_DT_U8, 1, dm, mask);
    rc = rc ? rc : nrt_st_writer_add(&w, "ids", NRT_DT_I32, 2, di, ids);
    rc = rc ? rc : nrt_st_writer_add(&w, "empty", NRT_DT_F32, 2, de, NULL);
    rc = rc ? rc : nrt_st_writer_add(&w, "double", NRT_DT_F64, 1, dd, dbl);
    rc = rc ? rc : nrt_st_writer_meta_set(&w, "model", "mnist_cnn");
    rc = rc ? rc : nrt_st_writer_meta_set(&w, "step", "99");
    rc = rc ? rc : nrt_st_writer_meta_set(&w, "epoch", "3");
    rc = rc ? rc : nrt_st_writer_meta_set(&w, "step", "100"); /* replaces */
    rc = rc ? rc : nrt_st_writer_meta_set(&w, "note", "a \"quoted\" \\ value\n\t\x01 \xc3\xbc");
    rc = rc ? rc : nrt_st_writer_save(&w, path);
    nrt_st_writer_free(&w);
    return rc;
}

static void test_roundtrip(void) {
    const char *p = tmp_path("model.safetensors");
    EXPECT_OK(write_reference(p));
    struct nrt_st_reader r;
    EXPECT_OK(nrt_st_reader_init(&r, p));
    ASSERT(7, r.n_tensors);
    ASSERT(4, r.n_meta);
    CHECK(strcmp(nrt_st_reader_meta_get(&r, "model"), "mnist_cnn") == 0);
    CHECK(strcmp(nrt_st_reader_meta_get(&r, "step"), "100") == 0);
    CHECK(strcmp(nrt_st_reader_meta_get(&r, "epoch"), "3") == 0);
    CHECK(strcmp(nrt_st_reader_meta_get(&r, "note"), "a \"quoted\" \\ value\n\t\x01 \xc3\xbc") == 0);
    CHECK(nrt_st_reader_meta_get(&r, "absent") == NULL);

    const struct nrt_st_tensor *t = nrt_st_reader_find(&r, "layer1.weight");
    CHECK(t != NULL);
    if (t) {
        ASSERT(NRT_DT_F32, t->dtype);
        ASSERT(2, t->rank);
        ASSERT(3, t->dims[0]);
        ASSERT(4, t->dims[1]);
        ASSERT(48, t->nbytes);
        CHECK(memcmp(t->data, w1, 48) == 0);
    }
    float wb[12] = {0};
    int64_t dw[2] = {3, 4}, dwt[2] = {4, 3};
    EXPECT_OK(nrt_st_reader_copy(&r, "layer1.weight", NRT_DT_F32, 2, dw, wb));
    CHECK(memcmp(wb, w1, sizeof wb) == 0);
    EXPECT_ERR(nrt_st_reader_copy(&r, "layer1.weight", NRT_DT_F32, 2, dwt, wb),
               "model.safetensors: tensor 'layer1.weight' is f32[3,4], expected f32[4,3]");
    EXPECT_ERR(nrt_st_reader_copy(&r, "layer1.weight", NRT_DT_F64, 2, dw, wb), "expected f64[3,4]");
    EXPECT_ERR(nrt_st_reader_copy(&r, "layer2.weight", NRT_DT_F32, 2, dw, wb),
               "no tensor named 'layer2.weight'");
    ASSERT(NRT_ERR_NOTFOUND, nrt_st_reader_copy(&r, "x", NRT_DT_F32, 2, dw, wb));

    int64_t s = 0;
    EXPECT_OK(nrt_st_reader_copy(&r, "step", NRT_DT_I64, 0, NULL, &s));
    CHECK(s == step);
    t = nrt_st_reader_find(&r, "mask");
    CHECK(t && t->dtype == NRT_DT_U8 && memcmp(t->data, mask, 5) == 0);
    t = nrt_st_reader_find(&r, "ids");
    CHECK(t && t->dtype == NRT_DT_I32 && memcmp(t->data, ids, 16) == 0);
    t = nrt_st_reader_find(&r, "empty");
    CHECK(t && t->count == 0 && t->nbytes == 0 && t->dims[0] == 0 && t->dims[1] == 3);
    t = nrt_st_reader_find(&r, "double");
    CHECK(t && t->dtype == NRT_DT_F64 && memcmp(t->data, dbl, 16) == 0);
    /* Every tensor is aligned to its element size within the data section. */
    for (int i = 0; i < r.n_tensors; i++) ASSERT(0, r.tensors[i].offset % nrt_dtype_size(r.tensors[i].dtype));
    nrt_st_reader_free(&r);
    CHECK(r.tensors == NULL && r.data == NULL);

    /* The layout on disk. */
    unsigned char buf[4096];
    size_t n = read_file(p, buf, sizeof buf);
    uint64_t h = 0;
    for (int i = 7; i >= 0; i--) h = h << 8 | buf[i];
    ASSERT(0, h % 8);
    ASSERT(8 + h + 48 + 16 + 8 + 5 + 16 + 16, n);
    ASSERT('{', buf[8]);
    CHECK(buf[8 + h - 1] == ' ' || buf[8 + h - 1] == '}');
    char json[4096];
    memcpy(json, buf + 8, h);
    json[h] = '\0';
    CHECK(strncmp(json, "{\"__metadata__\":{\"model\":\"mnist_cnn\",\"step\":\"100\"", 49) == 0);
    CHECK(strstr(json, "\"step\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[") != NULL);
    CHECK(strstr(json, "\"layer1.weight\":{\"dtype\":\"F32\",\"shape\":[3,4]") != NULL);
    CHECK(strstr(json, "\\\"quoted\\\" \\\\ value\\n\\t\\u0001") != NULL);
    /* 8-byte tensors first (double, step), then 4-byte, then bytes. */
    CHECK(memcmp(buf + 8 + h, dbl, 16) == 0);
    CHECK(memcmp(buf + 8 + h + 16, &step, 8) == 0);
    CHECK(memcmp(buf + n - 5, mask, 5) == 0);

    /* An empty checkpoint is valid too. */
    struct nrt_st_writer w;
    nrt_st_writer_init(&w);
    const char *e = tmp_path("empty.safetensors");
    EXPECT_OK(nrt_st_writer_save(&w, e));
    EXPECT_OK(nrt_st_reader_init(&r, e));
    ASSERT(0, r.n_tensors);
    ASSERT(0, r.n_meta);
    CHECK(nrt_st_reader_find(&r, "x") == NULL);
    nrt_st_reader_free(&r);
    nrt_st_writer_free(&w);
    unlink(e);
    unlink(p);
}

/* ----------------------------------------------------------- atomic saves -- */

static void test_atomic(void) {
    const char *p = tmp_path("ckpt.safetensors");
    float v1[2] = {1, 1}, v2[2] = {2, 2};
    int64_t d[1] = {2};
    struct nrt_st_writer w;
    nrt_st_writer_init(&w);
    EXPECT_OK(nrt_st_writer_add(&w, "v", NRT_DT_F32, 1, d, v1));
    EXPECT_OK(nrt_st_writer_save(&w, p));
    w.tensors[0].data = v2;
    EXPECT_OK(nrt_st_writer_save(&w, p)); /* replaces the file */
    ASSERT(0, stray_files());
    struct nrt_st_reader r;
    float got[2];
    EXPECT_OK(nrt_st_reader_init(&r, p));
    EXPECT_OK(nrt_st_reader_copy(&r, "v", NRT_DT_F32, 1, d, got));
    ASSERT_NEAR(2, got[0], 0);
    nrt_st_reader_free(&r);

    /* A save that fails midway leaves the last good file. */
    nrt_alloc_fail_after(0);
    CHECK(nrt_st_writer_save(&w, p) != 0);
    nrt_alloc_fail_after(-1);
    w.tensors[0].data = v1;
    EXPECT_ERR(nrt_st_writer_save(&w, tmp_path("no/such/dir/x.safetensors")), "x.safetensors: cannot write");
    ASSERT(0, stray_files());
    /* rename() over a directory fails: the temp file is removed. */
    const char *sub = tmp_path("adir");
    CHECK(mkdir(sub, 0755) == 0);
    EXPECT_ERR(nrt_st_writer_save(&w, sub), "adir: cannot replace it");
    ASSERT(0, stray_files());
    rmdir(sub);
    /* A full disk (here: a file size limit, EFBIG) names the file asked for, not
     * the temporary file, and leaves the previous checkpoint as it was. */
    {
        unsigned char before[4096], after[4096];
        size_t nb = read_file(p, before, sizeof before);
        struct rlimit old;
        CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
        struct rlimit small = {16, old.rlim_max};
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        CHECK(setrlimit(RLIMIT_FSIZE, &small) == 0);
        int rc = nrt_st_writer_save(&w, p);
        CHECK(setrlimit(RLIMIT_FSIZE, &old) == 0);
        signal(SIGXFSZ, prev);
        CHECK(rc == NRT_ERR_IO);
        CHECK(strstr(nrt_error(), ".tmp.") == NULL);
        CHECK(strncmp(nrt_error(), p, strlen(p)) == 0 && strstr(nrt_error(), "write error"));
        ASSERT(0, stray_files());
        ASSERT(nb, read_file(p, after, sizeof after));
        CHECK(memcmp(before, after, nb) == 0);
    }
    EXPECT_OK(nrt_st_reader_init(&r, p));
    EXPECT_OK(nrt_st_reader_copy(&r, "v", NRT_DT_F32, 1, d, got));
    ASSERT_NEAR(2, got[0], 0);
    nrt_st_reader_free(&r);
    /* A stale temp file from a killed run does not disturb the next save. */
    char stale[300];
    snprintf(stale, sizeof stale, "%s.tmp.%ld", p, (long)getpid());
    write_file(stale, "junk", 4);
    EXPECT_OK(nrt_st_writer_save(&w, p));
    CHECK(access(stale, F_OK) != 0);
    /* Temp files of dead processes are removed by the next save; those of live
     * processes (our parent) and other names are kept. */
    pid_t child = fork();
    if (child == 0) _exit(0);
    waitpid(child, NULL, 0);
    char dead[300], live[300], other[300];
    snprintf(dead, sizeof dead, "%s.tmp.%ld", p, (long)child);
    snprintf(live, sizeof live, "%s.tmp.%ld", p, (long)getppid());
    snprintf(other, sizeof other, "%s.tmp.notapid", p);
    write_file(dead, "junk", 4);
    write_file(live, "junk", 4);
    write_file(other, "junk", 4);
    EXPECT_OK(nrt_st_writer_save(&w, p));
    CHECK(access(dead, F_OK) != 0);
    CHECK(access(live, F_OK) == 0);
    CHECK(access(other, F_OK) == 0);
    unlink(live);
    unlink(other);
    nrt_st_writer_free(&w);
    unlink(p);
}

/* --------------------------------------------------------- writer checks -- */

static void test_writer_args(void) {
    struct nrt_st_writer w;
    float v[4] = {0};
    int64_t d[1] = {4}, neg[1] = {-1}, nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    nrt_st_writer_init(&w);
    EXPECT_OK(nrt_st_writer_add(&w, "a", NRT_DT_F32, 1, d, v));
    EXPECT_ERR(nrt_st_writer_add(&w, "a", NRT_DT_F32, 1, d, v), "duplicate tensor name 'a'");
    EXPECT_ERR(nrt_st_writer_add(&w, "", NRT_DT_F32, 1, d, v), "invalid tensor name");
    EXPECT_ERR(nrt_st_writer_add(&w, "__metadata__", NRT_DT_F32, 1, d, v), "invalid tensor name");
    EXPECT_ERR(nrt_st_writer_add(&w, "bad\xff", NRT_DT_F32, 1, d, v), "not valid UTF-8");
    EXPECT_ERR(nrt_st_writer_add(&w, NULL, NRT_DT_F32, 1, d, v), "is NULL");
    EXPECT_ERR(nrt_st_writer_add(&w, "b", NRT_DT_F32, 1, neg, v), "negative");
    EXPECT_ERR(nrt_st_writer_add(&w, "b", NRT_DT_F32, 9, nine, v), "rank 9");
    EXPECT_ERR(nrt_st_writer_add(&w, "b", NRT_DT_F32, 1, d, NULL), "has no data");
    EXPECT_ERR(nrt_st_writer_add(&w, "b", (enum nrt_dtype)99, 1, d, v), "invalid dtype");
    EXPECT_ERR(nrt_st_writer_meta_set(&w, "k", "\xc0\x80"), "not valid UTF-8");     /* overlong NUL */
    EXPECT_ERR(nrt_st_writer_meta_set(&w, "k", "\xed\xa0\x80"), "not valid UTF-8"); /* surrogate */
    EXPECT_OK(nrt_st_writer_meta_set(&w, "k", "\xf0\x9f\x98\x80"));                 /* U+1F600 */
    ASSERT(1, w.n_tensors);
    /* Many tensors: the arrays grow. */
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "t%03d", i);
        EXPECT_OK(nrt_st_writer_add(&w, name, NRT_DT_F32, 1, d, v));
    }
    const char *p = tmp_path("many.safetensors");
    EXPECT_OK(nrt_st_writer_save(&w, p));
    struct nrt_st_reader r;
    EXPECT_OK(nrt_st_reader_init(&r, p));
    ASSERT(101, r.n_tensors);
    CHECK(nrt_st_reader_find(&r, "t057") != NULL);
    CHECK(strcmp(nrt_st_reader_meta_get(&r, "k"), "\xf0\x9f\x98\x80") == 0);
    nrt_st_reader_free(&r);
    nrt_st_writer_free(&w);
    unlink(p);
}

/* ---------------------------------------------------------- corrupt files -- */

static void test_corrupt(void) {
    const char *p = tmp_path("bad.safetensors");
    struct nrt_st_reader r;
    unsigned char d[64];
    for (int i = 0; i < 64; i++) d[i] = (unsigned char)i;

    write_file(p, "\x10\0\0\0\0", 5);
    EXPECT_ERR(nrt_st_reader_init(&r, p), "bad.safetensors: file of 5 bytes is too short");
    CHECK(r.path == NULL && r.tensors == NULL);
    unsigned char huge[16] = {0, 0, 0, 0x20, 0, 0, 0, 0, '{', '}'}; /* 512 MiB */
    write_file(p, huge, 16);
    EXPECT_ERR(nrt_st_reader_init(&r, p), "header length 536870912 exceeds the limit");
    memset(huge, 0xff, 8);
    write_file(p, huge, 16);
    EXPECT_ERR(nrt_st_reader_init(&r, p), "header length 18446744073709551615 exceeds the limit");
    unsigned char over[16] = {100, 0, 0, 0, 0, 0, 0, 0, '{', '}', ' ', ' ', ' ', ' ', ' ', ' '};
    write_file(p, over, 16);
    EXPECT_ERR(nrt_st_reader_init(&r, p), "header length 100 exceeds the 8 bytes after it");
    EXPECT_ERR(nrt_st_reader_init(&r, tmp_path("missing.safetensors")), "cannot open");
    EXPECT_ERR(nrt_st_reader_init(&r, dir), "not a regular file");

    static const struct {
        const char *json; /* header text */
        size_t data;      /* data bytes after it */
        const char *msg;  /* expected part of the message */
    } bad[] = {
        {"", 0, "header does not start with '{'"},
        {"[]", 0, "header does not start with '{'"},
        {" {}", 0, "header does not start with '{'"},
        {"{", 0, "expected a string"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8, "expected '}'"},
        {"{\"a\":{\"dtype\":\"F99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "unknown dtype 'F99'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}}", 4,
         "tensor 'a' is f32[2] (8 bytes) but data_offsets [0, 4] span 4 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}", 8,
         "outside the data section of 8 bytes"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "outside the data"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}",
         12, "tensor 'b' starts at data byte 4, expected 8 (it overlaps the tensor before it)"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
         20, "a gap precedes it"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 12,
         "the tensors cover 8 data bytes but the file has 12"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
         "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",
         8, "duplicate tensor 'a'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"foo\":1}}", 8,
         "unknown field 'foo'"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8,
         "duplicate field 'dtype'"},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, "tensor 'a' lacks dtype, shape"},
        {"{\"a\":{}}", 0, "lacks dtype"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8,
         "expected an unsigned integer"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, "not a fraction"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2e0],\"data_offsets\":[0,8]}}", 8, "not a fraction"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[02],\"data_offsets\":[0,8]}}", 8, "leading zero"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8,
         "data_offsets has too many entries"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "needs 2 entries"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,1],\"data_offsets\":[0,4]}}", 4,
         "shape has too many entries"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,4]}}", 4,
         "overflows 64 bits"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4294967296],"
         "\"data_offsets\":[0,4]}}",
         4, "tensor 'a' shape f32[4294967296,4294967296,4294967296] is too large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}", 8,
         "expected an unsigned integer"},
        {"{\"a\":{\"dtype\":F32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "expected a string"},
        {"{\"a\" {\"dtype\":\"F32\"}}", 0, "expected ':'"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} x", 8,
         "unexpected text after the header object"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},}", 8, "expected a string"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "expected a string"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, "duplicate metadata key 'k'"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, "duplicate __metadata__"},
        {"{\"__metadata__\":[]}", 0, "expected '{'"},
        {"{\"__metadata__\":null}", 0, "expected '{'"},
        {"{\"a\tb\":{}}", 0, "control character in a string"},
        {"{\"a\xff\":{}}", 0, "string is not valid UTF-8"},
        {"{\"a\\x\":{}}", 0, "bad escape sequence"},
        {"{\"a\\ud800\":{}}", 0, "bad escape sequence"},
        {"{\"a\\udc00\":{}}", 0, "bad escape sequence"},
        {"{\"a\\u12\":{}}", 0, "bad escape sequence"},
        {"{\"a\\u0000\":{}}", 0, "bad escape sequence"},
        {"{\"a\\", 0, "unterminated string"},
        {"{\"a", 0, "unterminated string"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_st(p, bad[i].json, d, bad[i].data);
        EXPECT_ERR(nrt_st_reader_init(&r, p), bad[i].msg);
        CHECK(strstr(nrt_error(), "bad.safetensors: ") == nrt_error() + strlen(dir) + 1);
        CHECK(r.tensors == NULL && r.meta == NULL && r.data == NULL);
    }
    /* JSON errors say where. */
    write_st(p, "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8] x}}", d, 8);
    EXPECT_ERR(nrt_st_reader_init(&r, p), "bad safetensors header at byte 61: expected '}'");

    /* Valid oddities: escapes, blanks, key order, zero-size tensors sharing an offset. */
    write_st(p,
             "{ \"a\\u00e9\\ud83d\\ude00\\n\" : { \"shape\" : [ 2 ] , \"data_offsets\" : [ 0 , 8 ] ,"
             " \"dtype\" : \"I32\" } , \"z\":{\"dtype\":\"BF16\",\"shape\":[0],\"data_offsets\":[8,8]},"
             "\"y\":{\"dtype\":\"BOOL\",\"shape\":[0, 5],\"data_offsets\":[0,0]},"
             "\"__metadata__\":{\"format\":\"pt\"}}\n\t  ",
             d, 8);
    EXPECT_OK(nrt_st_reader_init(&r, p));
    ASSERT(3, r.n_tensors);
    const struct nrt_st_tensor *t = nrt_st_reader_find(&r, "a\xc3\xa9\xf0\x9f\x98\x80\n");
    CHECK(t && t->dtype == NRT_DT_I32 && memcmp(t->data, d, 8) == 0);
    CHECK(strcmp(nrt_st_reader_meta_get(&r, "format"), "pt") == 0);
    nrt_st_reader_free(&r);

    /* Truncating a good file anywhere gives an error, never a crash. */
    const char *good = tmp_path("good.safetensors");
    EXPECT_OK(write_reference(good));
    unsigned char buf[4096];
    size_t n = read_file(good, buf, sizeof buf);
    int all_fail = 1;
    for (size_t cut = 0; cut < n; cut++) {
        write_file(p, buf, cut);
        all_fail &= nrt_st_reader_init(&r, p) != 0 && nrt_error()[0] != '\0';
    }
    CHECK(all_fail);
    unlink(good);
    unlink(p);
}

/* ------------------------------------------------------------------ fuzz -- */

static void test_fuzz(void) {
    const char *good = tmp_path("fgood.safetensors"), *p = tmp_path("fuzz.safetensors");
    EXPECT_OK(write_reference(good));
    unsigned char buf[4096], out[4096 + 32];
    size_t n = read_file(good, buf, sizeof buf);
    struct nrt_rng rng;
    nrt_rng_init(&rng, 777, 0);
    int64_t base = live_blocks();
    int rejected = 0, accepted = 0, sane = 1;
    for (int it = 0; it < 4000; it++) {
        memcpy(out, buf, n);
        size_t m = n;
        uint32_t how = nrt_rng_u32(&rng) % 4;
        if (how == 0 || how == 2) {
            int flips = 1 + (int)nrt_rng_below(&rng, 4);
            for (int i = 0; i < flips; i++) {
                /* Aim most flips at the 8-byte length and the JSON header. */
                size_t at =
                    nrt_rng_below(&rng, 4) ? nrt_rng_below(&rng, n < 400 ? n : 400) : nrt_rng_below(&rng, n);
                out[at] = (unsigned char)nrt_rng_u32(&rng);
            }
        }
        if (how == 1 || how == 2) m = (size_t)nrt_rng_below(&rng, n + 1);
        if (how == 3) {
            size_t extra = 1 + (size_t)nrt_rng_below(&rng, 32);
            for (size_t i = 0; i < extra; i++) out[m + i] = (unsigned char)nrt_rng_u32(&rng);
            m += extra;
        }
        write_file(p, out, m);
        struct nrt_st_reader r;
        if (nrt_st_reader_init(&r, p) != 0) {
            rejected++;
            sane &= nrt_error()[0] != '\0';
            continue;
        }
        accepted++;
        /* Whatever was accepted stays inside the data section. */
        for (int i = 0; i < r.n_tensors; i++) {
            const struct nrt_st_tensor *t = &r.tensors[i];
            sane &= t->offset + t->nbytes <= r.data_size &&
                    (const char *)t->data == (const char *)r.data + t->offset;
            sane &= nrt_st_reader_find(&r, t->name) == t;
        }
        nrt_st_reader_free(&r);
    }
    CHECK(sane);
    CHECK(rejected > 0);
    ASSERT(base, live_blocks());
    printf("fuzz safetensors 4000 runs, %d rejected, %d accepted\n", rejected, accepted);
    unlink(good);
    unlink(p);
}

/* ------------------------------------------- the C side of the Python check -- */

/* Checks the file safetensors_compat.py wrote with safetensors.numpy.save_file. */
static int check_python_file(const char *path) {
    struct nrt_st_reader r;
    EXPECT_OK(nrt_st_reader_init(&r, path));
    if (r.path == NULL) TEST_DONE();
    float w[12];
    int64_t dw[2] = {3, 4}, dl[1] = {5}, db[1] = {7};
    EXPECT_OK(nrt_st_reader_copy(&r, "weight", NRT_DT_F32, 2, dw, w));
    for (int i = 0; i < 12; i++) ASSERT_NEAR(i * 0.5, w[i], 0);
    int32_t l[5];
    EXPECT_OK(nrt_st_reader_copy(&r, "labels", NRT_DT_I32, 1, dl, l));
    ASSERT(4, l[2]);
    int64_t s;
    EXPECT_OK(nrt_st_reader_copy(&r, "step", NRT_DT_I64, 0, NULL, &s));
    ASSERT(1234, s);
    uint8_t b[7];
    EXPECT_OK(nrt_st_reader_copy(&r, "bytes", NRT_DT_U8, 1, db, b));
    ASSERT(6, b[6]);
    const struct nrt_st_tensor *t = nrt_st_reader_find(&r, "half");
    CHECK(t && t->dtype == NRT_DT_F16 && t->count == 2);
    if (t) {
        uint16_t h[2];
        memcpy(h, t->data, 4);
        ASSERT(0x3c00, h[0]); /* 1.0 */
        ASSERT(0xc000, h[1]); /* -2.0 */
    }
    const char *m = nrt_st_reader_meta_get(&r, "model");
    CHECK(m && strcmp(m, "compat") == 0);
    m = nrt_st_reader_meta_get(&r, "epoch");
    CHECK(m && strcmp(m, "2") == 0);
    nrt_st_reader_free(&r);
    TEST_DONE();
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "--write") == 0) {
        if (write_reference(argv[2]) != 0) {
            fprintf(stderr, "%s\n", nrt_error());
            return 1;
        }
        return 0;
    }
    if (argc == 3 && strcmp(argv[1], "--check") == 0) return check_python_file(argv[2]);

    if (!test_dir_make("netrt_st")) return 1;
    int64_t base = live_blocks();
    test_roundtrip();
    test_atomic();
    test_writer_args();
    test_corrupt();
    test_fuzz();
    ASSERT(base, live_blocks());
    if (rmdir(dir) != 0) TEST_FAIL_("temp dir %s not empty after the tests", dir);
    TEST_DONE();
}
