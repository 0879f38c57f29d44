/* runtime/text.c -- text data: UTF-8 files turned into token ids. Sections: UTF-8
 * decoding and cleaning (ANSI colour codes removed, bad UTF-8 reported with its
 * line), the vocabulary (ids 0 = padding, 1 = unknown, 2.. = code points or bytes,
 * built from the training text and kept in checkpoint metadata), encode/decode
 * for prompts and generated text, and the two datasets: language-model windows
 * (targets shifted by one) and classification records (one file per class,
 * records split by `%` lines). Every function works on memory; the _load and
 * _ckpt_ variants read files first. */
#include "runtime/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEXT_MAX_T ((int64_t)1 << 20)     /* tokens per item */
#define TEXT_MAX_VOCAB ((int32_t)1 << 22) /* vocabulary capacity */
#define TEXT_MAX_FILES 4096               /* files of one dataset */

/* ---------------------------------------------------------- UTF-8, cleaning -- */

/* Decodes one UTF-8 sequence at s[0..n) into *cp; returns its length, or 0 when
 * it is malformed (overlong, surrogate, > U+10FFFF, truncated). */
static int utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len = c >= 0xF0 && c <= 0xF4 ? 4 : c >= 0xE0 ? (c <= 0xEF ? 3 : 0) : c >= 0xC2 && c <= 0xDF ? 2 : 0;
    if (!len || (size_t)len > n) return 0;
    uint32_t v = c & (len == 2 ? 0x1F : len == 3 ? 0x0F : 0x07);
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        v = v << 6 | (s[i] & 0x3F);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10FFFF)) ||
        (v >= 0xD800 && v <= 0xDFFF))
        return 0;
    *cp = v;
    return len;
}

/* Appends the UTF-8 form of cp to out (room for 4 bytes); returns its length. */
static int utf8_encode(uint32_t cp, char *out) {
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | cp >> 6);
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | cp >> 12);
        out[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | cp >> 18);
    out[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    out[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* The symbols of one text: code points (or bytes), ANSI escape sequences
 * (ESC [ params final, or ESC and one character) and the CR of CR LF removed.
 * Bad UTF-8 is an error naming the line and byte. */
static int text_symbols(const char *name, const char *text, size_t len, int bytes, uint32_t **out,
                        int64_t *n) {
    const unsigned char *s = (const unsigned char *)text;
    uint32_t *sym = nrt_alloc((len + 1) * sizeof *sym, 0);
    if (!sym) return nrt_error_prefix(NRT_ERR_NOMEM, name);
    int64_t k = 0, line = 1;
    for (size_t i = 0; i < len;) {
        if (s[i] == 0x1B) { /* ESC: a colour code such as ESC[32m, or ESC and one character */
            size_t j = i + 1;
            if (j < len && s[j] == '[') {
                j++;
                while (j < len && s[j] >= 0x20 && s[j] <= 0x3F) j++;
                if (j < len && s[j] >= 0x40 && s[j] <= 0x7E) j++;
            } else if (j < len && s[j] >= 0x40 && s[j] <= 0x5F) {
                j++;
            }
            i = j;
            continue;
        }
        if (s[i] == '\r' && i + 1 < len && s[i + 1] == '\n') {
            i++;
            continue;
        }
        uint32_t cp = s[i];
        int l = 1;
        if (!bytes && !(l = utf8_decode(s + i, len - i, &cp))) {
            nrt_free(sym);
            return nrt_error_set(
                NRT_ERR_FORMAT,
                "%s:%lld: invalid UTF-8 (byte 0x%02x at offset %zu); text data must be UTF-8, or "
                "use byte-level tokens (bytes=1)",
                name, (long long)line, s[i], i);
        }
        if (cp == '\n') line++;
        sym[k++] = cp;
        i += (size_t)l;
    }
    *out = sym;
    *n = k;
    return NRT_OK;
}

/* ------------------------------------------------------------ vocabulary -- */

static uint32_t sym_hash(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    return x ^ (x >> 16);
}

/* Builds v->slot, the open-addressing table symbol -> id, from v->sym. */
static int vocab_index(struct nrt_vocab *v) {
    uint32_t ns = 16;
    while (ns < (uint32_t)v->size * 2u) ns *= 2;
    v->slot = nrt_alloc(ns * sizeof *v->slot, 0);
    if (!v->slot) return NRT_ERR_NOMEM;
    v->nslot = ns;
    for (uint32_t i = 0; i < ns; i++) v->slot[i] = -1;
    for (int32_t id = 2; id < v->size; id++) {
        uint32_t h = sym_hash(v->sym[id]) & (ns - 1);
        while (v->slot[h] >= 0) {
            if (v->sym[v->slot[h]] == v->sym[id])
                return nrt_error_set(NRT_ERR_FORMAT, "vocabulary lists symbol %u twice",
                                     (unsigned)v->sym[id]);
            h = (h + 1) & (ns - 1);
        }
        v->slot[h] = id;
    }
    return NRT_OK;
}

void nrt_vocab_free(struct nrt_vocab *v) {
    if (!v) return;
    nrt_free(v->sym);
    nrt_free(v->slot);
    memset(v, 0, sizeof *v);
}

int32_t nrt_vocab_id(const struct nrt_vocab *v, uint32_t sym) {
    if (!v->nslot) return NRT_TOKEN_UNK;
    uint32_t h = sym_hash(sym) & (v->nslot - 1);
    for (; v->slot[h] >= 0; h = (h + 1) & (v->nslot - 1))
        if (v->sym[v->slot[h]] == sym) return v->slot[h];
    return NRT_TOKEN_UNK;
}

struct sym_count {
    uint32_t sym;
    int64_t count;
};

static int by_count(const void *a, const void *b) {
    const struct sym_count *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->sym < y->sym ? -1 : x->sym > y->sym;
}

static int by_sym(const void *a, const void *b) {
    const struct sym_count *x = a, *y = b;
    return x->sym < y->sym ? -1 : x->sym > y->sym;
}

/* The vocabulary of symbol arrays: the max_size - 2 most frequent symbols (ties:
 * the smaller code point), numbered from 2 in code-point order. */
static int vocab_from_symbols(struct nrt_vocab *v, int bytes, int32_t max_size, int n, uint32_t *const *syms,
                              const int64_t *lens) {
    memset(v, 0, sizeof *v);
    if (max_size < 3 || max_size > TEXT_MAX_VOCAB)
        return nrt_error_set(NRT_ERR_ARG, "vocabulary size %d is out of range [3, %d]", (int)max_size,
                             (int)TEXT_MAX_VOCAB);
    /* Count in a growable open-addressing table of (symbol, count). */
    uint32_t ns = 1024, used = 0;
    struct sym_count *t = nrt_alloc_zero(ns * sizeof *t, 0);
    if (!t) return NRT_ERR_NOMEM;
    for (uint32_t i = 0; i < ns; i++) t[i].count = -1;
    for (int f = 0; f < n; f++)
        for (int64_t i = 0; i < lens[f]; i++) {
            uint32_t s = syms[f][i], h = sym_hash(s) & (ns - 1);
            while (t[h].count >= 0 && t[h].sym != s) h = (h + 1) & (ns - 1);
            if (t[h].count >= 0) {
                t[h].count++;
                continue;
            }
            t[h].sym = s;
            t[h].count = 1;
            if (++used * 2 > ns) { /* grow */
                struct sym_count *g = nrt_alloc(2 * ns * sizeof *g, 0);
                if (!g) {
                    nrt_free(t);
                    return NRT_ERR_NOMEM;
                }
                for (uint32_t j = 0; j < 2 * ns; j++) g[j].count = -1;
                for (uint32_t j = 0; j < ns; j++)
                    if (t[j].count >= 0) {
                        uint32_t k = sym_hash(t[j].sym) & (2 * ns - 1);
                        while (g[k].count >= 0) k = (k + 1) & (2 * ns - 1);
                        g[k] = t[j];
                    }
                nrt_free(t);
                t = g;
                ns *= 2;
            }
        }
    uint32_t k = 0;
    for (uint32_t i = 0; i < ns; i++)
        if (t[i].count >= 0) t[k++] = t[i];
    qsort(t, k, sizeof *t, by_count);
    if (k > (uint32_t)max_size - 2) k = (uint32_t)max_size - 2;
    qsort(t, k, sizeof *t, by_sym);
    v->bytes = bytes;
    v->size = (int32_t)k + 2;
    v->sym = nrt_alloc_zero((size_t)v->size * sizeof *v->sym, 0);
    int rc = v->sym ? NRT_OK : NRT_ERR_NOMEM;
    for (uint32_t i = 0; i < k && !rc; i++) v->sym[i + 2] = t[i].sym;
    nrt_free(t);
    if (!rc) rc = vocab_index(v);
    if (rc) nrt_vocab_free(v);
    return rc;
}

int nrt_vocab_build(struct nrt_vocab *v, int bytes, int32_t max_size, int n, const char *const *names,
                    const char *const *texts, const size_t *lens) {
    memset(v, 0, sizeof *v);
    if (n < 0 || n > TEXT_MAX_FILES)
        return nrt_error_set(NRT_ERR_ARG, "%d texts (at most %d)", n, TEXT_MAX_FILES);
    uint32_t **syms = calloc((size_t)n + 1, sizeof *syms);
    int64_t *cnt = calloc((size_t)n + 1, sizeof *cnt);
    int rc = syms && cnt ? NRT_OK : nrt_error_set(NRT_ERR_NOMEM, "out of memory");
    for (int f = 0; f < n && !rc; f++)
        rc = text_symbols(names ? names[f] : "text", texts[f], lens[f], bytes, &syms[f], &cnt[f]);
    if (!rc) rc = vocab_from_symbols(v, bytes, max_size, n, syms, cnt);
    for (int f = 0; syms && f < n; f++) nrt_free(syms[f]);
    free(syms);
    free(cnt);
    return rc;
}

int64_t nrt_text_encode(const struct nrt_vocab *v, const char *text, size_t len, int32_t *ids, int64_t cap) {
    uint32_t *sym;
    int64_t n;
    if (text_symbols("text", text, len, v->bytes, &sym, &n)) return -1;
    for (int64_t i = 0; i < n && i < cap; i++) ids[i] = nrt_vocab_id(v, sym[i]);
    nrt_free(sym);
    return n;
}

size_t nrt_text_decode(const struct nrt_vocab *v, const int32_t *ids, int64_t n, char *out, size_t cap) {
    size_t k = 0;
    char u[4];
    for (int64_t i = 0; i < n; i++) {
        int l;
        if (ids[i] == NRT_TOKEN_PAD || ids[i] < 0 || ids[i] >= v->size + (v->size == 0 ? 2 : 0)) continue;
        if (ids[i] == NRT_TOKEN_UNK)
            l = utf8_encode(0xFFFD, u);
        else if (v->bytes)
            u[0] = (char)v->sym[ids[i]], l = 1;
        else
            l = utf8_encode(v->sym[ids[i]], u);
        for (int j = 0; j < l; j++, k++)
            if (cap && k < cap - 1) out[k] = u[j];
    }
    if (cap) out[k < cap - 1 ? k : cap - 1] = '\0';
    return k;
}

/* "char:10,32,33" or "byte:10,32": the mode, then the symbol of each id from 2. */
int nrt_vocab_meta_format(const struct nrt_vocab *v, char **out) {
    struct nrt_buf b = {0};
    int rc = nrt_buf_printf(&b, "%s:", v->bytes ? "byte" : "char");
    for (int32_t id = 2; id < v->size && !rc; id++)
        rc = nrt_buf_printf(&b, "%s%u", id > 2 ? "," : "", (unsigned)v->sym[id]);
    if (rc) {
        nrt_buf_free(&b);
        return rc;
    }
    *out = b.data;
    return NRT_OK;
}

int nrt_vocab_meta_parse(struct nrt_vocab *v, const char *s) {
    memset(v, 0, sizeof *v);
    int bytes = strncmp(s, "byte:", 5) == 0;
    if (!bytes && strncmp(s, "char:", 5) != 0)
        return nrt_error_set(NRT_ERR_FORMAT, "vocabulary metadata must start with 'char:' or 'byte:'");
    const char *p = s + 5;
    int64_t n = *p ? 1 : 0;
    for (const char *q = p; *q; q++) n += *q == ',';
    if (n + 2 > TEXT_MAX_VOCAB)
        return nrt_error_set(NRT_ERR_FORMAT, "vocabulary metadata lists %lld symbols (at most %d)",
                             (long long)n, (int)TEXT_MAX_VOCAB - 2);
    v->bytes = bytes;
    v->size = (int32_t)n + 2;
    v->sym = nrt_alloc_zero((size_t)v->size * sizeof *v->sym, 0);
    if (!v->sym) {
        v->size = 0;
        return NRT_ERR_NOMEM;
    }
    for (int64_t i = 0; i < n; i++) {
        uint64_t x = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 8) x = x * 10 + (uint64_t)(*p++ - '0'), digits++;
        if (!digits || x > (bytes ? 255u : 0x10FFFFu) || (!bytes && x >= 0xD800 && x <= 0xDFFF) ||
            (*p != (i + 1 < n ? ',' : '\0'))) {
            nrt_vocab_free(v);
            return nrt_error_set(NRT_ERR_FORMAT, "vocabulary metadata: bad symbol %lld", (long long)i + 2);
        }
        v->sym[i + 2] = (uint32_t)x;
        p += *p == ',';
    }
    int rc = vocab_index(v);
    if (rc) nrt_vocab_free(v);
    return rc;
}

int nrt_vocab_ckpt_load(struct nrt_vocab *v, const char *path) {
    memset(v, 0, sizeof *v);
    struct nrt_st_reader r;
    int rc = nrt_st_reader_init(&r, path);
    if (rc) return rc;
    const char *s = nrt_st_reader_meta_get(&r, NRT_VOCAB_META_KEY);
    if (!s)
        rc = nrt_error_set(NRT_ERR_NOTFOUND,
                           "%s: no vocabulary (metadata '%s'); was the model trained on text data?", path,
                           NRT_VOCAB_META_KEY);
    else if ((rc = nrt_vocab_meta_parse(v, s)))
        nrt_error_prefix(rc, path);
    nrt_st_reader_free(&r);
    return rc;
}

/* -------------------------------------------------------------- datasets -- */

/* One record of a classification file: symbols [lo, hi) of its file. */
struct record {
    int64_t lo, hi;
};

/* Splits a file's symbols into records at lines that are exactly "%"; records
 * of whitespace only are dropped and each record's final newline is not part
 * of it. */
static int split_records(const uint32_t *s, int64_t n, struct record **out, int64_t *count) {
    struct record *r = NULL;
    int64_t nr = 0, cap = 0, start = 0;
    for (int64_t i = 0; i <= n; i++) {
        int at_sep = i < n && (i == 0 || s[i - 1] == '\n') && s[i] == '%' && (i + 1 == n || s[i + 1] == '\n');
        if (!at_sep && i < n) continue;
        int64_t hi = i;
        while (hi > start && s[hi - 1] == '\n') hi--;
        int blank = 1;
        for (int64_t j = start; j < hi && blank; j++) blank = s[j] == ' ' || s[j] == '\t' || s[j] == '\n';
        if (!blank) {
            if (nr == cap) {
                cap = cap ? 2 * cap : 64;
                struct record *g = nrt_realloc(r, (size_t)cap * sizeof *r);
                if (!g) {
                    nrt_free(r);
                    return NRT_ERR_NOMEM;
                }
                r = g;
            }
            r[nr++] = (struct record){start, hi};
        }
        start = i + 2;
        if (i < n) i++;
    }
    *out = r;
    *count = nr;
    return NRT_OK;
}

/* Whether record k (of a file) is held out: every stride-th one. */
static int held_out(int64_t k, double holdout) {
    if (holdout <= 0) return 0;
    int64_t stride = (int64_t)(1.0 / holdout + 0.5);
    if (stride < 2) stride = 2;
    return k % stride == stride - 1;
}

static int in_part(int held, int part) { return part == NRT_TEXT_ALL || (part == NRT_TEXT_HELDOUT) == held; }

/* The language-model part of a file: [lo, hi) of its n symbols. */
static void lm_range(int64_t n, double holdout, int part, int64_t *lo, int64_t *hi) {
    int64_t cut = (int64_t)((double)n * (1.0 - holdout));
    *lo = part == NRT_TEXT_HELDOUT ? cut : 0;
    *hi = part == NRT_TEXT_TRAIN ? cut : n;
}

static int check_opts(const struct nrt_text_opts *o, int n) {
    if (o->t < 1 || o->t > TEXT_MAX_T)
        return nrt_error_set(NRT_ERR_ARG, "text: %lld tokens per item is out of range [1, %lld]",
                             (long long)o->t, (long long)TEXT_MAX_T);
    if (!(o->holdout >= 0 && o->holdout <= 0.9))
        return nrt_error_set(NRT_ERR_ARG, "text: holdout %g is out of range [0, 0.9]", o->holdout);
    if (o->part < NRT_TEXT_TRAIN || o->part > NRT_TEXT_ALL)
        return nrt_error_set(NRT_ERR_ARG, "text: part %d is not 0, 1 or 2", o->part);
    if (o->part == NRT_TEXT_HELDOUT && o->holdout <= 0)
        return nrt_error_set(NRT_ERR_ARG, "text: the held-out part needs holdout > 0");
    if (n < 1 || n > TEXT_MAX_FILES)
        return nrt_error_set(NRT_ERR_ARG, "text: %d files (1 to %d)", n, TEXT_MAX_FILES);
    if (o->classify && n < 2)
        return nrt_error_set(NRT_ERR_ARG, "text classification needs one file per class, at least 2 files");
    return NRT_OK;
}

/* Tokens of symbols [lo, hi) into dst[0..t), padded; returns the tokens written. */
static int64_t fill_item(const struct nrt_vocab *v, const uint32_t *s, int64_t lo, int64_t hi, int32_t *dst,
                         int64_t t) {
    int64_t k = 0;
    for (; k < t && lo + k < hi; k++) dst[k] = nrt_vocab_id(v, s[lo + k]);
    for (int64_t j = k; j < t; j++) dst[j] = NRT_TOKEN_PAD;
    return k;
}

static int build_lm(struct nrt_dataset *ds, const struct nrt_vocab *v, const struct nrt_text_opts *o, int n,
                    uint32_t *const *syms, const int64_t *lens) {
    int64_t total = 0;
    for (int f = 0; f < n; f++) {
        int64_t lo, hi;
        lm_range(lens[f], o->holdout, o->part, &lo, &hi);
        total += hi - lo;
    }
    if (total < 2)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "text: the %s part has %lld characters; a language model needs at least 2",
                             o->part == NRT_TEXT_HELDOUT ? "held-out" : "training", (long long)total);
    uint32_t *s = nrt_alloc((size_t)total * sizeof *s, 0);
    if (!s) return NRT_ERR_NOMEM;
    int64_t k = 0;
    for (int f = 0; f < n; f++) {
        int64_t lo, hi;
        lm_range(lens[f], o->holdout, o->part, &lo, &hi);
        memcpy(s + k, syms[f] + lo, (size_t)(hi - lo) * sizeof *s);
        k += hi - lo;
    }
    int64_t t = o->t, items = (total - 1 + t - 1) / t;
    struct nrt_array x = {0}, y = {0};
    int rc = nrt_array_init(&x, NRT_DT_I32, 2, (int64_t[]){items, t});
    if (!rc) rc = nrt_array_init(&y, NRT_DT_I32, 2, (int64_t[]){items, t});
    if (!rc) {
        int32_t *xd = x.data, *yd = y.data;
        for (int64_t i = 0; i < items; i++) {
            int64_t got = fill_item(v, s, i * t, total - 1, xd + i * t, t);
            fill_item(v, s, i * t + 1, i * t + 1 + got, yd + i * t, t);
        }
        rc = nrt_dataset_init(ds, &x, "text tokens", &y, "text targets");
    } else {
        nrt_array_free(&x);
    }
    nrt_free(s);
    return rc;
}

static int build_classes(struct nrt_dataset *ds, const struct nrt_vocab *v, const struct nrt_text_opts *o,
                         int n, const char *const *names, uint32_t *const *syms, struct record *const *rec,
                         const int64_t *nrec) {
    int64_t items = 0;
    for (int f = 0; f < n; f++)
        for (int64_t k = 0; k < nrec[f]; k++) items += in_part(held_out(k, o->holdout), o->part);
    if (!items)
        return nrt_error_set(NRT_ERR_FORMAT, "text: no records in the %s part",
                             o->part == NRT_TEXT_HELDOUT ? "held-out" : "training");
    struct nrt_array x = {0}, y = {0};
    int rc = nrt_array_init(&x, NRT_DT_I32, 2, (int64_t[]){items, o->t});
    if (!rc) rc = nrt_array_init(&y, NRT_DT_I32, 1, (int64_t[]){items});
    if (rc) {
        nrt_array_free(&x);
        return rc;
    }
    int32_t *xd = x.data, *yd = y.data;
    int64_t i = 0;
    for (int f = 0; f < n; f++)
        for (int64_t k = 0; k < nrec[f]; k++)
            if (in_part(held_out(k, o->holdout), o->part)) {
                fill_item(v, syms[f], rec[f][k].lo, rec[f][k].hi, xd + i * o->t, o->t);
                yd[i++] = f;
            }
    (void)names;
    return nrt_dataset_init(ds, &x, "text tokens", &y, "text labels");
}

int nrt_text_dataset_mem(struct nrt_dataset *ds, struct nrt_vocab *v, const struct nrt_text_opts *o, int n,
                         const char *const *names, const char *const *texts, const size_t *lens) {
    memset(ds, 0, sizeof *ds);
    int rc = check_opts(o, n);
    if (rc) return rc;
    if (!v->size && (o->vocab < 3 || o->vocab > TEXT_MAX_VOCAB))
        return nrt_error_set(NRT_ERR_ARG, "text: vocabulary size %d is out of range [3, %d]", (int)o->vocab,
                             (int)TEXT_MAX_VOCAB);
    if (v->size && v->bytes != o->bytes)
        return nrt_error_set(NRT_ERR_ARG,
                             "text: the vocabulary is %s-level but the data asks for %s-level tokens",
                             v->bytes ? "byte" : "character", o->bytes ? "byte" : "character");
    uint32_t **syms = calloc((size_t)n, sizeof *syms), **train = calloc((size_t)n, sizeof *train);
    int64_t *cnt = calloc((size_t)n, sizeof *cnt), *tcnt = calloc((size_t)n, sizeof *tcnt);
    int64_t *nrec = calloc((size_t)n, sizeof *nrec);
    struct record **rec = calloc((size_t)n, sizeof *rec);
    if (!syms || !train || !cnt || !tcnt || !nrec || !rec) rc = nrt_error_set(NRT_ERR_NOMEM, "out of memory");
    for (int f = 0; f < n && !rc; f++) {
        const char *name = names ? names[f] : "text";
        rc = text_symbols(name, texts[f], lens[f], o->bytes, &syms[f], &cnt[f]);
        if (!rc && cnt[f] == 0) rc = nrt_error_set(NRT_ERR_FORMAT, "%s: no text (the file is empty)", name);
        if (!rc && o->classify) {
            rc = split_records(syms[f], cnt[f], &rec[f], &nrec[f]);
            if (!rc && !nrec[f])
                rc = nrt_error_set(NRT_ERR_FORMAT, "%s: no records (only blank text and '%%' lines)", name);
        }
    }
    /* The vocabulary comes from the training part only. */
    int64_t lo, hi;
    for (int f = 0; f < n && !rc && !v->size; f++) {
        if (!o->classify) {
            lm_range(cnt[f], o->holdout, NRT_TEXT_TRAIN, &lo, &hi);
            train[f] = syms[f] + lo;
            tcnt[f] = hi - lo;
            continue;
        }
        train[f] = nrt_alloc((size_t)cnt[f] * sizeof **train + 4, 0);
        if (!train[f]) {
            rc = NRT_ERR_NOMEM;
            break;
        }
        for (int64_t k = 0; k < nrec[f]; k++)
            if (!held_out(k, o->holdout)) {
                memcpy(train[f] + tcnt[f], syms[f] + rec[f][k].lo,
                       (size_t)(rec[f][k].hi - rec[f][k].lo) * sizeof **train);
                tcnt[f] += rec[f][k].hi - rec[f][k].lo;
            }
    }
    int built = !rc && !v->size;
    if (built) rc = vocab_from_symbols(v, o->bytes, o->vocab, n, train, tcnt);
    if (!rc)
        rc = o->classify ? build_classes(ds, v, o, n, names, syms, rec, nrec)
                         : build_lm(ds, v, o, n, syms, cnt);
    if (rc && built) nrt_vocab_free(v);
    for (int f = 0; f < n; f++) {
        if (syms) nrt_free(syms[f]);
        if (train && o->classify) nrt_free(train[f]);
        if (rec) nrt_free(rec[f]);
    }
    free(syms), free(train), free(cnt), free(tcnt), free(nrec), free(rec);
    return rc;
}

int nrt_text_dataset_load(struct nrt_dataset *ds, struct nrt_vocab *v, const struct nrt_text_opts *o, int n,
                          const char *const *paths) {
    memset(ds, 0, sizeof *ds);
    if (n < 1 || n > TEXT_MAX_FILES)
        return nrt_error_set(NRT_ERR_ARG, "text: %d files (1 to %d)", n, TEXT_MAX_FILES);
    unsigned char **data = calloc((size_t)n, sizeof *data);
    size_t *lens = calloc((size_t)n, sizeof *lens);
    int rc = data && lens ? NRT_OK : nrt_error_set(NRT_ERR_NOMEM, "out of memory");
    for (int f = 0; f < n && !rc; f++) rc = nrt_file_read(paths[f], &data[f], &lens[f]);
    if (!rc) rc = nrt_text_dataset_mem(ds, v, o, n, paths, (const char *const *)data, lens);
    for (int f = 0; data && f < n; f++) nrt_free(data[f]);
    free(data);
    free(lens);
    return rc;
}
