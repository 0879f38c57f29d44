/* tests/unit/test_runtime_text.c -- libnetrt's text data (runtime/text.c): the
 * vocabulary (frequency cut, code-point order, Chinese, bytes), encode/decode
 * round trips, the metadata form and its strict parser, language-model windows
 * (targets shifted by one, padding, the held-out tail), classification records
 * split at `%` lines, colour codes removed, the errors (bad UTF-8 with its line,
 * empty files), the real fortune files when installed, a fuzz loop that must
 * never crash, and no leaks. */
#include "runtime/netrt.h"
#include "test.h"
#include "test_runtime.h"

#include <string.h>
#include <sys/stat.h>

static int ids_equal(const int32_t *a, const int32_t *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a[i] != b[i]) return 0;
    return 1;
}

static void test_vocab(void) {
    const char *texts[] = {"abca\n", "ba"};
    size_t lens[] = {5, 2};
    struct nrt_vocab v;
    EXPECT_OK(nrt_vocab_build(&v, 0, 16, 2, NULL, texts, lens));
    ASSERT(6, v.size); /* pad, unk, \n a b c */
    ASSERT('\n', v.sym[2]);
    ASSERT('a', v.sym[3]);
    ASSERT('c', v.sym[5]);
    ASSERT(4, nrt_vocab_id(&v, 'b'));
    ASSERT(NRT_TOKEN_UNK, nrt_vocab_id(&v, 'z'));
    nrt_vocab_free(&v);
    /* A capacity of 4 keeps the two most frequent: a (3), b (2). */
    EXPECT_OK(nrt_vocab_build(&v, 0, 4, 2, NULL, texts, lens));
    ASSERT(4, v.size);
    ASSERT('a', v.sym[2]);
    ASSERT('b', v.sym[3]);
    ASSERT(NRT_TOKEN_UNK, nrt_vocab_id(&v, 'c'));
    nrt_vocab_free(&v);
    EXPECT_ERR(nrt_vocab_build(&v, 0, 2, 2, NULL, texts, lens), "vocabulary size 2");
}

static void test_encode_decode(void) {
    const char *zh =
        "\xe5\xba\x8a\xe5\x89\x8d\xe6\x98\x8e\xe6\x9c\x88\xe5\x85\x89\xef\xbc\x8c\n"; /* 床前明月光， */
    size_t len = strlen(zh);
    struct nrt_vocab v;
    EXPECT_OK(nrt_vocab_build(&v, 0, 100, 1, NULL, &zh, &len));
    ASSERT(2 + 7, v.size); /* six Chinese characters, the full-width comma, and \n */
    int32_t ids[32];
    ASSERT(7, nrt_text_encode(&v, zh, len, ids, 32));
    char out[64];
    ASSERT((int64_t)len, (int64_t)nrt_text_decode(&v, ids, 7, out, sizeof out));
    CHECK(strcmp(out, zh) == 0);
    /* Unknown characters become id 1 and decode as U+FFFD; padding is skipped. */
    int64_t n = nrt_text_encode(&v, "x\xe6\x98\x8e", 4, ids, 32);
    ASSERT(2, n);
    ASSERT(NRT_TOKEN_UNK, ids[0]);
    ids[2] = NRT_TOKEN_PAD;
    ASSERT(6, (int64_t)nrt_text_decode(&v, ids, 3, out, sizeof out));
    CHECK(strcmp(out, "\xef\xbf\xbd\xe6\x98\x8e") == 0);
    /* Truncation keeps the output NUL-terminated and returns the full length. */
    ASSERT(6, (int64_t)nrt_text_decode(&v, ids, 3, out, 4));
    ASSERT(3, (int64_t)strlen(out));
    /* Bad UTF-8 in a prompt. */
    ASSERT(-1, nrt_text_encode(&v, "a\xff", 2, ids, 32));
    CHECK(strstr(nrt_error(), "invalid UTF-8") != NULL);
    /* Encoding stops writing at cap but counts everything. */
    ASSERT(7, nrt_text_encode(&v, zh, len, ids, 3));
    /* The metadata form round-trips. */
    char *meta = NULL;
    EXPECT_OK(nrt_vocab_meta_format(&v, &meta));
    CHECK(meta && strncmp(meta, "char:10,", 8) == 0);
    struct nrt_vocab w;
    EXPECT_OK(nrt_vocab_meta_parse(&w, meta));
    ASSERT(v.size, w.size);
    CHECK(memcmp(v.sym, w.sym, (size_t)v.size * sizeof *v.sym) == 0);
    ASSERT(nrt_vocab_id(&v, 0x6708), nrt_vocab_id(&w, 0x6708));
    nrt_free(meta);
    nrt_vocab_free(&w);
    nrt_vocab_free(&v);
    EXPECT_ERR(nrt_vocab_meta_parse(&w, "word:1"), "must start with");
    EXPECT_ERR(nrt_vocab_meta_parse(&w, "char:10,,32"), "bad symbol");
    EXPECT_ERR(nrt_vocab_meta_parse(&w, "char:55296"), "bad symbol"); /* a surrogate */
    EXPECT_ERR(nrt_vocab_meta_parse(&w, "byte:256"), "bad symbol");
    EXPECT_ERR(nrt_vocab_meta_parse(&w, "char:10,10"), "twice");
    EXPECT_ERR(nrt_vocab_meta_parse(&w, "char:1x"), "bad symbol");
    EXPECT_OK(nrt_vocab_meta_parse(&w, "byte:"));
    ASSERT(2, w.size);
    nrt_vocab_free(&w);
    /* Byte level: every byte is a symbol, invalid UTF-8 included. */
    const char *raw = "a\xff";
    size_t rl = 2;
    EXPECT_OK(nrt_vocab_build(&v, 1, 10, 1, NULL, &raw, &rl));
    ASSERT(4, v.size);
    ASSERT(0xff, v.sym[3]);
    nrt_vocab_free(&v);
}

static void test_lm(void) {
    /* "abcdefg" with T = 3: windows abc/bcd, def/efg, g../... padded. */
    const char *text = "\x1b[32mabc\x1b[mdefg";
    size_t len = strlen(text);
    struct nrt_vocab v = {0};
    struct nrt_dataset ds;
    struct nrt_text_opts o = {.t = 3, .vocab = 50};
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 1, NULL, &text, &len));
    ASSERT(9, v.size); /* a..g: the colour codes are gone */
    ASSERT(2, ds.n);   /* 6 next-token pairs */
    int32_t a = nrt_vocab_id(&v, 'a');
    int32_t want_x[] = {a, a + 1, a + 2, a + 3, a + 4, a + 5};
    int32_t want_y[] = {a + 1, a + 2, a + 3, a + 4, a + 5, a + 6};
    CHECK(ids_equal(ds.x.data, want_x, 6));
    CHECK(ids_equal(ds.y.data, want_y, 6));
    nrt_dataset_free(&ds);
    /* T = 4: the second window is padded in x and y. */
    o.t = 4;
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 1, NULL, &text, &len));
    ASSERT(2, ds.n);
    int32_t px[] = {a + 4, a + 5, 0, 0}, py[] = {a + 5, a + 6, 0, 0};
    CHECK(ids_equal((int32_t *)ds.x.data + 4, px, 4));
    CHECK(ids_equal((int32_t *)ds.y.data + 4, py, 4));
    nrt_dataset_free(&ds);
    nrt_vocab_free(&v);
    /* Holdout: the vocabulary comes from the first 80% only; the tail is the test part. */
    const char *t2 = "aaaaaaaabz";
    size_t l2 = 10;
    o = (struct nrt_text_opts){.t = 2, .vocab = 50, .holdout = 0.2, .part = NRT_TEXT_HELDOUT};
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 1, NULL, &t2, &l2));
    ASSERT(3, v.size); /* only 'a' */
    ASSERT(1, ds.n);
    int32_t hx[] = {NRT_TOKEN_UNK, 0}, hy[] = {NRT_TOKEN_UNK, 0};
    CHECK(ids_equal(ds.x.data, hx, 2));
    CHECK(ids_equal(ds.y.data, hy, 2));
    nrt_dataset_free(&ds);
    o.part = NRT_TEXT_TRAIN;
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 1, NULL, &t2, &l2));
    ASSERT(4, ds.n); /* 8 characters, 7 pairs, T = 2 */
    nrt_dataset_free(&ds);
    nrt_vocab_free(&v);
}

static void test_classes(void) {
    const char *a = "one\n%\ntwo\nlines\n%\n  \n%\nthree\n%\n", *b = "\xe4\xb8\x80\r\n";
    const char *texts[] = {a, b};
    size_t lens[] = {strlen(a), strlen(b)};
    struct nrt_vocab v = {0};
    struct nrt_dataset ds;
    struct nrt_text_opts o = {.t = 4, .classify = 1, .vocab = 64, .part = NRT_TEXT_ALL};
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 2, NULL, texts, lens));
    ASSERT(4, ds.n); /* one, two\nlines, three | 一 (blank record dropped) */
    int32_t *y = ds.y.data, *x = ds.x.data;
    ASSERT(0, y[0]);
    ASSERT(0, y[2]);
    ASSERT(1, y[3]);
    int32_t o_ = nrt_vocab_id(&v, 'o');
    int32_t want0[] = {o_, nrt_vocab_id(&v, 'n'), nrt_vocab_id(&v, 'e'), NRT_TOKEN_PAD};
    CHECK(ids_equal(x, want0, 4));
    /* "two\nlines" is cut to T = 4: "two\n". */
    ASSERT(nrt_vocab_id(&v, '\n'), x[4 + 3]);
    /* The CR of CR LF is gone and the record's final newline is not part of it. */
    int32_t want3[] = {nrt_vocab_id(&v, 0x4e00), 0, 0, 0};
    CHECK(ids_equal(x + 12, want3, 4));
    CHECK(nrt_vocab_id(&v, '\r') == NRT_TOKEN_UNK);
    nrt_dataset_free(&ds);
    /* holdout 0.5: every second record of each file is held out. */
    o.holdout = 0.5;
    o.part = NRT_TEXT_HELDOUT;
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 2, NULL, texts, lens));
    ASSERT(1, ds.n); /* "two\nlines" */
    nrt_dataset_free(&ds);
    o.part = NRT_TEXT_TRAIN;
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 2, NULL, texts, lens));
    ASSERT(3, ds.n);
    nrt_dataset_free(&ds);
    nrt_vocab_free(&v);
}

static void test_errors(void) {
    struct nrt_vocab v = {0};
    struct nrt_dataset ds;
    struct nrt_text_opts o = {.t = 8, .vocab = 64};
    const char *bad = "ok\nfine\nbad \xc3\x28 here\n";
    size_t bl = strlen(bad);
    const char *name = "poems.txt";
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 1, &name, &bad, &bl),
               "poems.txt:3: invalid UTF-8 (byte 0xc3");
    ASSERT(0, v.size);
    o.bytes = 1;
    EXPECT_OK(nrt_text_dataset_mem(&ds, &v, &o, 1, &name, &bad, &bl));
    nrt_dataset_free(&ds);
    nrt_vocab_free(&v);
    o.bytes = 0;
    const char *empty = "";
    size_t el = 0;
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 1, &name, &empty, &el), "poems.txt: no text");
    const char *esc = "\x1b[31m\x1b[m";
    size_t escl = strlen(esc);
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 1, &name, &esc, &escl), "no text");
    const char *one = "x";
    size_t ol = 1;
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 1, &name, &one, &ol), "at least 2");
    o.classify = 1;
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 1, &name, &one, &ol), "at least 2 files");
    const char *texts[] = {"a\n%\n", "%\n \n%\n"};
    size_t lens[] = {4, 6};
    const char *names[] = {"a.txt", "b.txt"};
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 2, names, texts, lens), "b.txt: no records");
    o.t = 0;
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 2, names, texts, lens), "tokens per item");
    o.t = 4;
    o.holdout = 0.95;
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 2, names, texts, lens), "holdout");
    o.holdout = 0;
    o.part = NRT_TEXT_HELDOUT;
    EXPECT_ERR(nrt_text_dataset_mem(&ds, &v, &o, 2, names, texts, lens), "held-out part needs");
    const char *missing = tmp_path("missing.txt");
    o.part = NRT_TEXT_TRAIN;
    EXPECT_ERR(nrt_text_dataset_load(&ds, &v, &o, 1, &missing), "missing.txt");
    ASSERT(0, v.size);
}

/* A checkpoint keeps the vocabulary in its metadata. */
static void test_ckpt_meta(void) {
    const char *text = "hello";
    size_t len = 5;
    struct nrt_vocab v, w;
    EXPECT_OK(nrt_vocab_build(&v, 0, 10, 1, NULL, &text, &len));
    char *meta = NULL;
    EXPECT_OK(nrt_vocab_meta_format(&v, &meta));
    struct nrt_st_writer wr;
    nrt_st_writer_init(&wr);
    float z = 0;
    EXPECT_OK(nrt_st_writer_add(&wr, "w", NRT_DT_F32, 1, (int64_t[]){1}, &z));
    EXPECT_OK(nrt_st_writer_meta_set(&wr, NRT_VOCAB_META_KEY, meta));
    const char *path = tmp_path("v.safetensors"), *plain = tmp_path("p.safetensors");
    EXPECT_OK(nrt_st_writer_save(&wr, path));
    nrt_st_writer_free(&wr);
    nrt_free(meta);
    EXPECT_OK(nrt_vocab_ckpt_load(&w, path));
    ASSERT(v.size, w.size);
    ASSERT(nrt_vocab_id(&v, 'l'), nrt_vocab_id(&w, 'l'));
    nrt_vocab_free(&w);
    nrt_st_writer_init(&wr);
    EXPECT_OK(nrt_st_writer_add(&wr, "w", NRT_DT_F32, 1, (int64_t[]){1}, &z));
    EXPECT_OK(nrt_st_writer_save(&wr, plain));
    nrt_st_writer_free(&wr);
    EXPECT_ERR(nrt_vocab_ckpt_load(&w, plain), "no vocabulary");
    nrt_vocab_free(&v);
    unlink(path);
    unlink(plain);
}

/* The Debian fortune files, when installed: Chinese poems, English classes. */
static void test_fortunes(void) {
    const char *tang = "/usr/share/games/fortunes/tang300";
    struct stat st;
    if (stat(tang, &st) != 0) {
        printf("skipping the fortune files: not installed (apt-get install fortunes fortunes-zh)\n");
        return;
    }
    struct nrt_vocab v = {0};
    struct nrt_dataset ds;
    struct nrt_text_opts o = {.t = 64, .vocab = 4000, .holdout = 0.1};
    EXPECT_OK(nrt_text_dataset_load(&ds, &v, &o, 1, &tang));
    CHECK(v.size > 1000 && v.size <= 4000);
    CHECK(nrt_vocab_id(&v, 0x6708) >= 2);           /* 月 */
    CHECK(nrt_vocab_id(&v, 0x1b) == NRT_TOKEN_UNK); /* no escape characters left */
    CHECK(ds.n > 300);
    nrt_dataset_free(&ds);
    nrt_vocab_free(&v);
    const char *files[] = {"/usr/share/games/fortunes/computers", "/usr/share/games/fortunes/love"};
    o = (struct nrt_text_opts){
        .t = 32, .classify = 1, .vocab = 128, .holdout = 0.2, .part = NRT_TEXT_HELDOUT};
    EXPECT_OK(nrt_text_dataset_load(&ds, &v, &o, 2, files));
    CHECK(ds.n > 200 && ds.n < 300); /* ~1,200 records, every 5th */
    nrt_dataset_free(&ds);
    nrt_vocab_free(&v);
}

/* Byte flips and truncations of a small corpus never crash. */
static void test_fuzz(void) {
    const char *seed = "\xe5\xba\x8a\xe5\x89\x8d\n%\n\x1b[32mab\x1b[m\r\n%\nxyz\n%\n";
    size_t n = strlen(seed);
    char buf[64];
    struct nrt_rng r;
    nrt_rng_init(&r, 7, 0);
    for (int it = 0; it < 3000; it++) {
        memcpy(buf, seed, n);
        size_t len = n - nrt_rng_below(&r, 4);
        for (int k = 0; k < 3; k++) buf[nrt_rng_below(&r, len)] = (char)nrt_rng_u32(&r);
        const char *texts[] = {buf, seed};
        size_t lens[] = {len, n};
        struct nrt_vocab v = {0};
        struct nrt_dataset ds;
        struct nrt_text_opts o = {.t = 1 + (int64_t)nrt_rng_below(&r, 6),
                                  .classify = it & 1,
                                  .bytes = (it >> 1) & 1,
                                  .vocab = 3 + (int32_t)nrt_rng_below(&r, 20),
                                  .holdout = 0.5 * (double)(it % 3 == 0),
                                  .part = (int)nrt_rng_below(&r, 3)};
        if (o.part == NRT_TEXT_HELDOUT && o.holdout == 0) o.part = NRT_TEXT_ALL;
        if (nrt_text_dataset_mem(&ds, &v, &o, 2, NULL, texts, lens) == NRT_OK) {
            int32_t *x = ds.x.data;
            for (int64_t i = 0; i < ds.n * o.t; i++)
                if (x[i] < 0 || x[i] >= v.size) {
                    TEST_FAIL_("fuzz %d: token %d out of the vocabulary [0, %d)", it, x[i], v.size);
                    break;
                }
            char out[256];
            nrt_text_decode(&v, x, ds.n * o.t < 40 ? ds.n * o.t : 40, out, sizeof out);
            nrt_dataset_free(&ds);
        }
        nrt_vocab_free(&v);
        struct nrt_vocab w;
        buf[len < 63 ? len : 63] = '\0';
        if (nrt_vocab_meta_parse(&w, buf) == NRT_OK) nrt_vocab_free(&w);
    }
    test_passed++;
}

int main(void) {
    if (!test_dir_make("netrt_text")) return 1;
    int64_t base = live_blocks();
    test_vocab();
    test_encode_decode();
    test_lm();
    test_classes();
    test_errors();
    test_ckpt_meta();
    test_fortunes();
    test_fuzz();
    ASSERT(base, live_blocks());
    if (rmdir(dir) != 0) TEST_FAIL_("temp dir %s not empty after the tests", dir);
    TEST_DONE();
}
