/* tests/fuzz/fuzz_text.c -- libFuzzer target: text data (runtime/text.c). The
 * first four bytes choose the options (byte or character mode, language-model
 * windows or classification records, T, vocabulary capacity, holdout, part);
 * the rest, cut at 0x00 bytes into up to four texts, goes through
 * nrt_text_dataset_mem, and whole through nrt_text_dataset_load from a file.
 * Checked: every id is within the vocabulary, x is [items, T], the vocabulary's
 * metadata string parses back to the same vocabulary, encoding is
 * deterministic and decoding stays within its buffer and ends it with a NUL; the input itself is
 * also given to the strict metadata parser. */
#include "tests/fuzz/fuzz.h"

#include "runtime/netrt.h"

static void check_dataset(const struct nrt_dataset *ds, const struct nrt_vocab *v,
                          const struct nrt_text_opts *o) {
    if (ds->x.dtype != NRT_DT_I32 || ds->x.rank != 2 || ds->x.dims[1] != o->t || ds->x.dims[0] != ds->n)
        abort();
    const int32_t *x = ds->x.data, *y = ds->y.data;
    for (int64_t i = 0; i < ds->x.count; i++)
        if (x[i] < 0 || x[i] >= v->size) abort();
    if (!o->classify)
        for (int64_t i = 0; i < ds->y.count; i++)
            if (y[i] < 0 || y[i] >= v->size) abort();
}

static void check_vocab(const struct nrt_vocab *v) {
    char *meta = NULL;
    if (nrt_vocab_meta_format(v, &meta) != NRT_OK) abort();
    struct nrt_vocab back = {0};
    if (nrt_vocab_meta_parse(&back, meta) != NRT_OK || back.size != v->size || back.bytes != v->bytes ||
        memcmp(back.sym, v->sym, sizeof *v->sym * (size_t)v->size) != 0) {
        fprintf(stderr, "vocabulary metadata does not parse back: %s\n", meta);
        abort();
    }
    nrt_vocab_free(&back);
    nrt_free(meta);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 4) return 0;
    struct nrt_text_opts o = {0};
    o.bytes = data[0] & 1;
    o.classify = data[0] >> 1 & 1;
    o.part = (data[0] >> 2) % 3;
    o.t = 1 + data[1] % 16;
    o.vocab = 2 + data[2];
    o.holdout = (data[3] % 10) / 10.0;
    const char *body = (const char *)data + 4;
    size_t len = size - 4;

    /* Up to four texts in memory, cut at NUL bytes. */
    const char *texts[4];
    size_t lens[4];
    int n = 0;
    size_t start = 0;
    for (size_t i = 0; i <= len && n < 4; i++)
        if (i == len || (body[i] == '\0' && n < 3)) {
            texts[n] = body + start;
            lens[n++] = i - start;
            start = i + 1;
        }
    struct nrt_dataset ds;
    struct nrt_vocab v = {0};
    if (nrt_text_dataset_mem(&ds, &v, &o, n, NULL, texts, lens) == NRT_OK) {
        check_dataset(&ds, &v, &o);
        check_vocab(&v);
        nrt_dataset_free(&ds);
        /* Encoding twice gives the same ids; decoding fits in what it says. */
        int32_t ids[64], again[64];
        int64_t k = nrt_text_encode(&v, body, len, ids, 64);
        if (k >= 0) {
            if (nrt_text_encode(&v, body, len, again, 64) != k ||
                memcmp(ids, again, sizeof *ids * (size_t)(k < 64 ? k : 64)) != 0)
                abort();
            /* A small heap buffer (ASan sees any overrun) that truncation
             * must end with a NUL; the text itself may hold U+0000. */
            size_t cap = 1 + data[1] % 48;
            char *out = malloc(cap);
            if (!out) abort();
            size_t need = nrt_text_decode(&v, ids, k < 64 ? k : 64, out, cap);
            if (out[need < cap ? need : cap - 1] != '\0') abort();
            free(out);
        }
    }
    nrt_vocab_free(&v);

    /* The whole body as one file, with a fresh vocabulary. */
    struct nrt_vocab v2 = {0};
    const char *path = fuzz_file((const uint8_t *)body, len);
    if (nrt_text_dataset_load(&ds, &v2, &o, 1, &path) == NRT_OK) {
        check_dataset(&ds, &v2, &o);
        nrt_dataset_free(&ds);
    }
    nrt_vocab_free(&v2);

    /* The strict metadata parser on the raw input. */
    char *s = malloc(len + 1);
    if (!s) abort();
    memcpy(s, body, len);
    s[len] = '\0';
    struct nrt_vocab v3 = {0};
    if (nrt_vocab_meta_parse(&v3, s) == NRT_OK) check_vocab(&v3);
    nrt_vocab_free(&v3);
    free(s);
    return 0;
}
