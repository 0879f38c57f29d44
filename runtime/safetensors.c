/* runtime/safetensors.c -- checkpoints in the safetensors format, written and
 * read. Sections: the dtype names; a strict JSON reader for exactly the header's
 * subset (an object of tensor objects plus "__metadata__", strings, unsigned
 * integers and arrays of them); the reader, which loads a whole file and checks
 * every offset before handing out tensors; and the writer, which builds the
 * header, pads it to 8 bytes and writes through a temporary file and rename(). */
#include "runtime/internal.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define ST_MAX_HEADER 100000000u /* header bytes accepted, the reference's limit */
#define ST_META_KEY "__metadata__"

static const char *const st_dtype_names[NRT_DT_COUNT] = {
#define NRT_X_(name, bytes, short_name, st_name) [NRT_DT_##name] = st_name,
    NRT_DTYPE_LIST(NRT_X_)
#undef NRT_X_
};

/* The dtype of a safetensors name, or NRT_DT_COUNT. */
static enum nrt_dtype st_dtype_lookup(const char *s) {
    for (int i = 0; i < NRT_DT_COUNT; i++)
        if (strcmp(s, st_dtype_names[i]) == 0) return (enum nrt_dtype)i;
    return NRT_DT_COUNT;
}

static char *str_dup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = nrt_alloc(n, 0);
    if (d) memcpy(d, s, n);
    return d;
}

static void tensors_free(struct nrt_st_tensor *t, int n) {
    for (int i = 0; i < n; i++) nrt_free(t[i].name);
    nrt_free(t);
}

static void meta_free(struct nrt_st_meta *m, int n) {
    for (int i = 0; i < n; i++) {
        nrt_free(m[i].key);
        nrt_free(m[i].value);
    }
    nrt_free(m);
}

/* Returns p grown so that slot n of elem bytes fits (p itself if it already
 * does), or NULL with the error set and p untouched. */
static void *grow(void *p, int n, int *cap, size_t elem) {
    if (n < *cap) return p;
    if (*cap > (1 << 28)) {
        nrt_error_set(NRT_ERR_NOMEM, "too many entries (%d)", n);
        return NULL;
    }
    int nc = *cap ? *cap * 2 : 16;
    void *q = nrt_realloc(p, (size_t)nc * elem);
    if (q) *cap = nc;
    return q;
}

/* ------------------------------------------------------------ JSON reader -- */

struct json {
    const char *s;     /* next character */
    const char *begin; /* start of the header text */
    const char *end;   /* end of the header text */
    const char *path;  /* file name for messages */
};

static int js_fail(struct json *j, const char *fmt, ...) NRT_PRINTF(2, 3);

static int js_fail(struct json *j, const char *fmt, ...) {
    char what[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return nrt_error_set(NRT_ERR_FORMAT, "%s: bad safetensors header at byte %zu: %s", j->path,
                         (size_t)(j->s - j->begin) + 8, what);
}

static void js_ws(struct json *j) {
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r')) j->s++;
}

/* Skips blanks and consumes c if it is next. */
static int js_eat(struct json *j, char c) {
    js_ws(j);
    if (j->s < j->end && *j->s == c) {
        j->s++;
        return 1;
    }
    return 0;
}

static int js_expect(struct json *j, char c) {
    if (js_eat(j, c)) return NRT_OK;
    char what[4] = {'\'', c, '\'', 0};
    return js_fail(j, "expected %s", what);
}

static int hex4(const char *s, uint32_t *v) {
    *v = 0;
    for (int i = 0; i < 4; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0) return 0;
        *v = *v << 4 | (uint32_t)d;
    }
    return 1;
}

static size_t utf8_put(char *o, uint32_t cp) {
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A JSON string, decoded into a fresh NUL-terminated UTF-8 buffer. */
static int js_string(struct json *j, char **out) {
    *out = NULL;
    js_ws(j);
    if (j->s >= j->end || *j->s != '"') return js_fail(j, "expected a string");
    const char *b = ++j->s;
    while (j->s < j->end && *j->s != '"') {
        if ((unsigned char)*j->s < 0x20) return js_fail(j, "control character in a string");
        j->s += *j->s == '\\' && j->end - j->s > 1 ? 2 : 1;
    }
    if (j->s >= j->end) return js_fail(j, "unterminated string");
    const char *e = j->s++;
    if (!nrt_utf8_valid(b, (size_t)(e - b))) return js_fail(j, "string is not valid UTF-8");
    char *o = nrt_alloc((size_t)(e - b) + 1, 0); /* escapes only shrink */
    if (!o) return nrt_error_prefix(NRT_ERR_NOMEM, j->path);
    size_t n = 0;
    for (const char *p = b; p < e; p++) {
        if (*p != '\\') {
            o[n++] = *p;
            continue;
        }
        char c = *++p;
        static const char named[] = "\"\\/bfnrt", raw[] = "\"\\/\b\f\n\r\t";
        const char *simple = c ? strchr(named, c) : NULL;
        if (simple) {
            o[n++] = raw[simple - named];
            continue;
        }
        uint32_t cp, lo;
        if (c != 'u' || e - p < 5 || !hex4(p + 1, &cp)) goto bad_escape;
        p += 4;
        if (cp >= 0xDC00 && cp <= 0xDFFF) goto bad_escape;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
            if (e - p < 7 || p[1] != '\\' || p[2] != 'u' || !hex4(p + 3, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                goto bad_escape;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            p += 6;
        }
        if (cp == 0) goto bad_escape; /* names are C strings */
        n += utf8_put(o + n, cp);
    }
    o[n] = '\0';
    *out = o;
    return NRT_OK;
bad_escape:
    nrt_free(o);
    j->s = b - 1;
    return js_fail(j, "bad escape sequence in a string");
}

/* An unsigned integer without sign, fraction, exponent or leading zeros. */
static int js_uint(struct json *j, int64_t *v) {
    js_ws(j);
    const char *b = j->s;
    int64_t x = 0;
    while (j->s < j->end && *j->s >= '0' && *j->s <= '9') {
        int d = *j->s++ - '0';
        if (x > (INT64_MAX - d) / 10) return js_fail(j, "integer overflows 64 bits");
        x = x * 10 + d;
    }
    if (j->s == b) return js_fail(j, "expected an unsigned integer");
    if (j->s - b > 1 && *b == '0') return js_fail(j, "leading zero in an integer");
    if (j->s < j->end && (*j->s == '.' || *j->s == 'e' || *j->s == 'E'))
        return js_fail(j, "expected an integer, not a fraction");
    *v = x;
    return NRT_OK;
}

/* [u, u, ...] into v (at most max, count into *n). */
static int js_uint_array(struct json *j, int64_t *v, int max, int *n, const char *what) {
    int rc = js_expect(j, '[');
    *n = 0;
    if (rc || js_eat(j, ']')) return rc;
    do {
        if (*n == max) return js_fail(j, "%s has too many entries", what);
        if ((rc = js_uint(j, &v[(*n)++])) != NRT_OK) return rc;
    } while (js_eat(j, ','));
    return js_expect(j, ']');
}

/* {"dtype": "F32", "shape": [..], "data_offsets": [b, e]} into t (name set). */
static int js_tensor(struct json *j, struct nrt_st_tensor *t, int64_t off[2]) {
    int seen[3] = {0, 0, 0}, rc = js_expect(j, '{');
    if (rc) return rc;
    if (!js_eat(j, '}')) {
        do {
            char *key, *val;
            if ((rc = js_string(j, &key)) != NRT_OK) return rc;
            int k = strcmp(key, "dtype") == 0          ? 0
                    : strcmp(key, "shape") == 0        ? 1
                    : strcmp(key, "data_offsets") == 0 ? 2
                                                       : -1;
            if (k < 0 || seen[k]) {
                rc = js_fail(j, k < 0 ? "unknown field '%s'" : "duplicate field '%s'", key);
                nrt_free(key);
                return rc;
            }
            nrt_free(key);
            seen[k] = 1;
            if ((rc = js_expect(j, ':')) != NRT_OK) return rc;
            int n;
            if (k == 0) {
                if ((rc = js_string(j, &val)) != NRT_OK) return rc;
                t->dtype = st_dtype_lookup(val);
                if (t->dtype == NRT_DT_COUNT) rc = js_fail(j, "unknown dtype '%s'", val);
                nrt_free(val);
            } else if (k == 1) {
                rc = js_uint_array(j, t->dims, NRT_MAX_RANK, &t->rank, "shape");
            } else {
                rc = js_uint_array(j, off, 2, &n, "data_offsets");
                if (!rc && n != 2) rc = js_fail(j, "data_offsets needs 2 entries");
            }
            if (rc) return rc;
        } while (js_eat(j, ','));
        if ((rc = js_expect(j, '}')) != NRT_OK) return rc;
    }
    if (!seen[0] || !seen[1] || !seen[2])
        return js_fail(j, "tensor '%s' lacks dtype, shape or data_offsets", t->name);
    return NRT_OK;
}

/* {"key": "value", ...} appended to the reader's metadata. */
static int js_meta(struct json *j, struct nrt_st_reader *r) {
    int cap = 0, rc = js_expect(j, '{');
    if (rc || js_eat(j, '}')) return rc;
    do {
        char *key = NULL, *val = NULL;
        struct nrt_st_meta *m = grow(r->meta, r->n_meta, &cap, sizeof *m);
        if (!m) return nrt_error_prefix(NRT_ERR_NOMEM, j->path);
        r->meta = m;
        if ((rc = js_string(j, &key)) || (rc = js_expect(j, ':')) || (rc = js_string(j, &val))) {
            nrt_free(key);
            return rc;
        }
        for (int i = 0; i < r->n_meta; i++)
            if (strcmp(r->meta[i].key, key) == 0) rc = js_fail(j, "duplicate metadata key '%s'", key);
        if (rc) {
            nrt_free(key);
            nrt_free(val);
            return rc;
        }
        r->meta[r->n_meta++] = (struct nrt_st_meta){key, val};
    } while (js_eat(j, ','));
    return js_expect(j, '}');
}

/* The whole header into r->tensors (offsets checked later) and r->meta. */
static int js_header(struct json *j, struct nrt_st_reader *r, int64_t **offs) {
    int cap = 0, ocap = 0, seen_meta = 0, rc;
    if (j->s >= j->end || *j->s != '{') return js_fail(j, "header does not start with '{'");
    j->s++;
    if (!js_eat(j, '}')) {
        do {
            char *key;
            if ((rc = js_string(j, &key)) || (rc = js_expect(j, ':'))) {
                nrt_free(key);
                return rc;
            }
            if (strcmp(key, ST_META_KEY) == 0) {
                nrt_free(key);
                if (seen_meta++) return js_fail(j, "duplicate %s", ST_META_KEY);
                if ((rc = js_meta(j, r)) != NRT_OK) return rc;
                continue;
            }
            struct nrt_st_tensor *ts = grow(r->tensors, r->n_tensors, &cap, sizeof *ts);
            if (ts) r->tensors = ts;
            int64_t *os = ts ? grow(*offs, r->n_tensors, &ocap, 2 * sizeof *os) : NULL;
            if (!os) {
                nrt_free(key);
                return nrt_error_prefix(NRT_ERR_NOMEM, j->path);
            }
            *offs = os;
            struct nrt_st_tensor *t = &r->tensors[r->n_tensors++];
            memset(t, 0, sizeof *t);
            t->name = key;
            if ((rc = js_tensor(j, t, *offs + 2 * (r->n_tensors - 1))) != NRT_OK) return rc;
        } while (js_eat(j, ','));
        if ((rc = js_expect(j, '}')) != NRT_OK) return rc;
    }
    js_ws(j);
    if (j->s != j->end) return js_fail(j, "unexpected text after the header object");
    return NRT_OK;
}

/* ----------------------------------------------------------------- reader -- */

static int cmp_offset(const void *a, const void *b) {
    const struct nrt_st_tensor *x = a, *y = b;
    if (x->offset != y->offset) return x->offset < y->offset ? -1 : 1;
    return (x->nbytes > y->nbytes) - (x->nbytes < y->nbytes);
}

static int cmp_name(const void *a, const void *b) {
    return strcmp(((const struct nrt_st_tensor *)a)->name, ((const struct nrt_st_tensor *)b)->name);
}

/* Checks each tensor's size against its offsets, then that the tensors tile the
 * data section exactly (no overlap, no gap, nothing out of range). */
static int check_tensors(struct nrt_st_reader *r, const int64_t *offs) {
    char shape[200];
    for (int i = 0; i < r->n_tensors; i++) {
        struct nrt_st_tensor *t = &r->tensors[i];
        int64_t b = offs[2 * i], e = offs[2 * i + 1];
        size_t es = nrt_dtype_size(t->dtype);
        nrt_shape_format(shape, sizeof shape, t->dtype, t->rank, t->dims);
        if (nrt_dims_count(t->rank, t->dims, es, &t->count))
            return nrt_error_set(NRT_ERR_FORMAT, "%s: tensor '%s' shape %s is too large", r->path, t->name,
                                 shape);
        t->nbytes = (size_t)t->count * es;
        if (e < b || (uint64_t)e > r->data_size)
            return nrt_error_set(NRT_ERR_FORMAT,
                                 "%s: tensor '%s' data_offsets [%lld, %lld] are outside the data "
                                 "section of %zu bytes",
                                 r->path, t->name, (long long)b, (long long)e, r->data_size);
        if ((uint64_t)(e - b) != t->nbytes)
            return nrt_error_set(NRT_ERR_FORMAT,
                                 "%s: tensor '%s' is %s (%zu bytes) but data_offsets [%lld, %lld] "
                                 "span %lld bytes",
                                 r->path, t->name, shape, t->nbytes, (long long)b, (long long)e,
                                 (long long)(e - b));
        t->offset = (size_t)b;
        t->data = (const char *)r->data + t->offset;
    }
    if (r->n_tensors > 1) qsort(r->tensors, (size_t)r->n_tensors, sizeof *r->tensors, cmp_offset);
    size_t at = 0;
    for (int i = 0; i < r->n_tensors; i++) {
        const struct nrt_st_tensor *t = &r->tensors[i];
        if (t->offset != at)
            return nrt_error_set(NRT_ERR_FORMAT, "%s: tensor '%s' starts at data byte %zu, expected %zu (%s)",
                                 r->path, t->name, t->offset, at,
                                 t->offset < at ? "it overlaps the tensor before it" : "a gap precedes it");
        at += t->nbytes;
    }
    if (at != r->data_size)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: the tensors cover %zu data bytes but the file has %zu",
                             r->path, at, r->data_size);
    if (r->n_tensors > 1) qsort(r->tensors, (size_t)r->n_tensors, sizeof *r->tensors, cmp_name);
    for (int i = 1; i < r->n_tensors; i++)
        if (strcmp(r->tensors[i - 1].name, r->tensors[i].name) == 0)
            return nrt_error_set(NRT_ERR_FORMAT, "%s: duplicate tensor '%s'", r->path, r->tensors[i].name);
    return NRT_OK;
}

/* Reads exactly n bytes at the current position. */
static int read_full(int fd, void *buf, size_t n, const char *path) {
    char *p = buf;
    while (n > 0) {
        ssize_t k = read(fd, p, n > (1u << 30) ? (1u << 30) : n);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) return nrt_error_set(NRT_ERR_IO, "%s: read error: %s", path, strerror(errno));
        if (k == 0) return nrt_error_set(NRT_ERR_IO, "%s: file shrank while being read", path);
        p += k;
        n -= (size_t)k;
    }
    return NRT_OK;
}

static int reader_load(struct nrt_st_reader *r, int fd, const char *path) {
    struct stat st;
    if (fstat(fd, &st) != 0) return nrt_error_set(NRT_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    if (!S_ISREG(st.st_mode)) return nrt_error_set(NRT_ERR_IO, "%s: not a regular file", path);
    uint64_t size = (uint64_t)st.st_size;
    unsigned char len8[8];
    if (size < 8)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: file of %llu bytes is too short for a safetensors header",
                             path, (unsigned long long)size);
    int rc = read_full(fd, len8, 8, path);
    if (rc) return rc;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > ST_MAX_HEADER)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: safetensors header length %llu exceeds the limit of %u bytes", path,
                             (unsigned long long)hlen, ST_MAX_HEADER);
    if (hlen > size - 8)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: safetensors header length %llu exceeds the %llu bytes after it "
                             "(truncated file?)",
                             path, (unsigned long long)hlen, (unsigned long long)(size - 8));
    char *hdr = nrt_alloc((size_t)hlen + 1, 0);
    if (!hdr) return nrt_error_prefix(NRT_ERR_NOMEM, path);
    r->data_size = (size_t)(size - 8 - hlen);
    r->data = nrt_alloc(r->data_size, 0);
    if (!r->data) {
        nrt_free(hdr);
        return nrt_error_prefix(NRT_ERR_NOMEM, path);
    }
    int64_t *offs = NULL;
    if ((rc = read_full(fd, hdr, (size_t)hlen, path)) == NRT_OK &&
        (rc = read_full(fd, r->data, r->data_size, path)) == NRT_OK) {
        hdr[hlen] = '\0';
        struct json j = {hdr, hdr, hdr + hlen, path};
        rc = js_header(&j, r, &offs);
        if (rc == NRT_OK) rc = check_tensors(r, offs);
    }
    nrt_free(offs);
    nrt_free(hdr);
    return rc;
}

int nrt_st_reader_init(struct nrt_st_reader *r, const char *path) {
    memset(r, 0, sizeof *r);
    int fd = nrt_file_open(path, NULL);
    if (fd < 0) return NRT_ERR_IO;
    int rc = NRT_OK;
    if (!(r->path = str_dup(path)))
        rc = nrt_error_prefix(NRT_ERR_NOMEM, path);
    else
        rc = reader_load(r, fd, path);
    close(fd);
    if (rc) nrt_st_reader_free(r);
    return rc;
}

void nrt_st_reader_free(struct nrt_st_reader *r) {
    tensors_free(r->tensors, r->n_tensors);
    meta_free(r->meta, r->n_meta);
    nrt_free(r->data);
    nrt_free(r->path);
    memset(r, 0, sizeof *r);
}

const struct nrt_st_tensor *nrt_st_reader_find(const struct nrt_st_reader *r, const char *name) {
    struct nrt_st_tensor key;
    key.name = (char *)name;
    const struct nrt_st_tensor *t =
        r->n_tensors ? bsearch(&key, r->tensors, (size_t)r->n_tensors, sizeof *r->tensors, cmp_name) : NULL;
    if (!t) nrt_error_set(NRT_ERR_NOTFOUND, "%s: no tensor named '%s'", r->path ? r->path : "?", name);
    return t;
}

const char *nrt_st_reader_meta_get(const struct nrt_st_reader *r, const char *key) {
    for (int i = 0; i < r->n_meta; i++)
        if (strcmp(r->meta[i].key, key) == 0) return r->meta[i].value;
    return NULL;
}

int nrt_st_reader_copy(const struct nrt_st_reader *r, const char *name, enum nrt_dtype dt, int rank,
                       const int64_t *dims, void *dst) {
    const struct nrt_st_tensor *t = nrt_st_reader_find(r, name);
    if (!t) return NRT_ERR_NOTFOUND;
    int same = t->dtype == dt && t->rank == rank;
    for (int i = 0; same && i < rank; i++) same = t->dims[i] == dims[i];
    if (!same) {
        char have[200], want[200];
        nrt_shape_format(have, sizeof have, t->dtype, t->rank, t->dims);
        nrt_shape_format(want, sizeof want, dt, rank, dims);
        return nrt_error_set(NRT_ERR_FORMAT, "%s: tensor '%s' is %s, expected %s", r->path, name, have, want);
    }
    if (t->nbytes) memcpy(dst, t->data, t->nbytes);
    return NRT_OK;
}

/* ----------------------------------------------------------------- writer -- */

void nrt_st_writer_init(struct nrt_st_writer *w) { memset(w, 0, sizeof *w); }

void nrt_st_writer_free(struct nrt_st_writer *w) {
    tensors_free(w->tensors, w->n_tensors);
    meta_free(w->meta, w->n_meta);
    memset(w, 0, sizeof *w);
}

static int check_text(const char *what, const char *s) {
    if (!s) return nrt_error_set(NRT_ERR_ARG, "safetensors %s is NULL", what);
    if (!nrt_utf8_valid(s, strlen(s)))
        return nrt_error_set(NRT_ERR_ARG, "safetensors %s is not valid UTF-8", what);
    return NRT_OK;
}

int nrt_st_writer_add(struct nrt_st_writer *w, const char *name, enum nrt_dtype dt, int rank,
                      const int64_t *dims, const void *data) {
    int rc = check_text("tensor name", name);
    if (rc) return rc;
    if (!*name || strcmp(name, ST_META_KEY) == 0)
        return nrt_error_set(NRT_ERR_ARG, "invalid tensor name '%s'", name);
    if ((unsigned)dt >= NRT_DT_COUNT)
        return nrt_error_set(NRT_ERR_ARG, "tensor '%s': invalid dtype %d", name, (int)dt);
    for (int i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return nrt_error_set(NRT_ERR_ARG, "duplicate tensor name '%s'", name);
    struct nrt_st_tensor t;
    memset(&t, 0, sizeof t);
    if (nrt_dims_count(rank, dims, nrt_dtype_size(dt), &t.count)) return nrt_error_prefix(NRT_ERR_ARG, name);
    if (!data && t.count) return nrt_error_set(NRT_ERR_ARG, "tensor '%s' has no data", name);
    t.dtype = dt;
    t.rank = rank;
    for (int i = 0; i < rank; i++) t.dims[i] = dims[i];
    t.nbytes = (size_t)t.count * nrt_dtype_size(dt);
    t.data = data;
    struct nrt_st_tensor *ts = grow(w->tensors, w->n_tensors, &w->cap_tensors, sizeof t);
    if (!ts) return NRT_ERR_NOMEM;
    w->tensors = ts;
    if (!(t.name = str_dup(name))) return NRT_ERR_NOMEM;
    w->tensors[w->n_tensors++] = t;
    return NRT_OK;
}

int nrt_st_writer_meta_set(struct nrt_st_writer *w, const char *key, const char *value) {
    int rc = check_text("metadata key", key);
    if (rc || (rc = check_text("metadata value", value))) return rc;
    char *v = str_dup(value);
    if (!v) return NRT_ERR_NOMEM;
    for (int i = 0; i < w->n_meta; i++)
        if (strcmp(w->meta[i].key, key) == 0) {
            nrt_free(w->meta[i].value);
            w->meta[i].value = v;
            return NRT_OK;
        }
    char *k = str_dup(key);
    struct nrt_st_meta *m = k ? grow(w->meta, w->n_meta, &w->cap_meta, sizeof *m) : NULL;
    if (!m) {
        nrt_free(k);
        nrt_free(v);
        return NRT_ERR_NOMEM;
    }
    w->meta = m;
    w->meta[w->n_meta++] = (struct nrt_st_meta){k, v};
    return NRT_OK;
}

/* A JSON string literal with the escapes JSON requires. */
static int put_string(struct nrt_buf *b, const char *s) {
    int rc = nrt_buf_append(b, "\"", 1);
    for (; !rc && *s; s++) {
        unsigned char c = (unsigned char)*s;
        static const char raw[] = "\"\\\b\f\n\r\t", named[] = "\"\\bfnrt";
        const char *esc = c ? strchr(raw, c) : NULL;
        if (esc)
            rc = nrt_buf_printf(b, "\\%c", named[esc - raw]);
        else if (c < 0x20)
            rc = nrt_buf_printf(b, "\\u%04x", c);
        else
            rc = nrt_buf_append(b, s, 1);
    }
    return rc ? rc : nrt_buf_append(b, "\"", 1);
}

/* Storage order: larger elements first, then by name, so that every tensor
 * starts at a multiple of its element size. */
static int cmp_store(const void *a, const void *b) {
    const struct nrt_st_tensor *x = *(const struct nrt_st_tensor *const *)a;
    const struct nrt_st_tensor *y = *(const struct nrt_st_tensor *const *)b;
    size_t sx = nrt_dtype_size(x->dtype), sy = nrt_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The header JSON for tensors in order, padded with spaces to a multiple of 8. */
static int build_header(struct nrt_buf *b, const struct nrt_st_writer *w,
                        const struct nrt_st_tensor *const *order) {
    int rc = nrt_buf_append(b, "{", 1);
    if (!rc && w->n_meta) {
        rc = nrt_buf_printf(b, "\"%s\":{", ST_META_KEY);
        for (int i = 0; !rc && i < w->n_meta; i++) {
            rc = i ? nrt_buf_append(b, ",", 1) : 0;
            if (!rc && !(rc = put_string(b, w->meta[i].key)) && !(rc = nrt_buf_append(b, ":", 1)))
                rc = put_string(b, w->meta[i].value);
        }
        if (!rc) rc = nrt_buf_append(b, "}", 1);
    }
    size_t at = 0;
    for (int i = 0; !rc && i < w->n_tensors; i++) {
        const struct nrt_st_tensor *t = order[i];
        if ((w->n_meta || i) && (rc = nrt_buf_append(b, ",", 1))) break;
        if ((rc = put_string(b, t->name)) ||
            (rc = nrt_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_names[t->dtype])))
            break;
        for (int d = 0; !rc && d < t->rank; d++)
            rc = nrt_buf_printf(b, "%s%lld", d ? "," : "", (long long)t->dims[d]);
        if (!rc) rc = nrt_buf_printf(b, "],\"data_offsets\":[%zu,%zu]}", at, at + t->nbytes);
        at += t->nbytes;
    }
    if (!rc) rc = nrt_buf_append(b, "}", 1);
    while (!rc && b->len % 8) rc = nrt_buf_append(b, " ", 1);
    return rc;
}

/* Errors of a save name the file asked for, not the temporary file written
 * first (which is removed), and say that an existing file was not touched. */
#define KEPT " (nothing was saved; an existing file is unchanged)"

/* Writes header and data to f; returns 0 or sets an error naming path. */
static int write_all(FILE *f, const char *path, const struct nrt_buf *hdr,
                     const struct nrt_st_tensor *const *order, int n) {
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hdr->len >> (8 * i));
    int ok = fwrite(len8, 1, 8, f) == 8 && fwrite(hdr->data, 1, hdr->len, f) == hdr->len;
    for (int i = 0; ok && i < n; i++)
        ok = order[i]->nbytes == 0 || fwrite(order[i]->data, 1, order[i]->nbytes, f) == order[i]->nbytes;
    if (!ok || fflush(f) != 0)
        return nrt_error_set(NRT_ERR_IO, "%s: write error: %s%s", path, strerror(errno), KEPT);
    if (fsync(fileno(f)) != 0)
        return nrt_error_set(NRT_ERR_IO, "%s: fsync failed: %s%s", path, strerror(errno), KEPT);
    return NRT_OK;
}

/* The directory part of path into dir ("." when there is none); false if it
 * does not fit. */
static bool parent_dir(const char *path, char *dir, size_t len) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, len, ".");
    else if (slash == path)
        snprintf(dir, len, "/");
    else if ((size_t)(slash - path) < len)
        snprintf(dir, len, "%.*s", (int)(slash - path), path);
    else
        return false;
    return true;
}

/* Makes the rename durable; a failure here is not an error of the save. */
static void sync_parent_dir(const char *path) {
    char dir[4096];
    if (!parent_dir(path, dir, sizeof dir)) return;
    int fd = open(dir, O_RDONLY);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
}

/* Removes `<path>.tmp.<pid>` files left by saves of this path whose process is
 * gone (a run killed mid-save): they never replace the checkpoint, but they would
 * pile up. Files of live processes, and anything else, are left alone. */
static void remove_stale_temps(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char dir[4096];
    if (!parent_dir(path, dir, sizeof dir)) return;
    DIR *d = opendir(dir);
    if (!d) return;
    size_t blen = strlen(base);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        if (strncmp(name, base, blen) != 0 || strncmp(name + blen, ".tmp.", 5) != 0) continue;
        const char *digits = name + blen + 5;
        char *end;
        long pid = strtol(digits, &end, 10);
        if (end == digits || *end || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char full[8192];
        if ((size_t)snprintf(full, sizeof full, "%s/%s", dir, name) < sizeof full) unlink(full);
    }
    closedir(d);
}

int nrt_st_writer_save(const struct nrt_st_writer *w, const char *path) {
    struct nrt_buf hdr = {0}, tmp = {0};
    const struct nrt_st_tensor **order =
        nrt_alloc((size_t)(w->n_tensors ? w->n_tensors : 1) * sizeof *order, 0);
    int rc = order ? NRT_OK : NRT_ERR_NOMEM;
    if (!rc) {
        for (int i = 0; i < w->n_tensors; i++) order[i] = &w->tensors[i];
        if (w->n_tensors > 1) qsort(order, (size_t)w->n_tensors, sizeof *order, cmp_store);
        rc = build_header(&hdr, w, order);
    }
    if (!rc) rc = nrt_buf_printf(&tmp, "%s.tmp.%ld", path, (long)getpid());
    if (rc) {
        nrt_error_prefix(rc, path);
    } else {
        int fd = open(tmp.data, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        FILE *f = fd >= 0 ? fdopen(fd, "wb") : NULL;
        if (!f) {
            rc = nrt_error_set(NRT_ERR_IO, "%s: cannot write: %s%s", path, strerror(errno), KEPT);
            if (fd >= 0) close(fd);
        } else {
            rc = write_all(f, path, &hdr, order, w->n_tensors);
            if (fclose(f) != 0 && !rc)
                rc = nrt_error_set(NRT_ERR_IO, "%s: write error: %s%s", path, strerror(errno), KEPT);
            if (!rc && rename(tmp.data, path) != 0)
                rc = nrt_error_set(NRT_ERR_IO, "%s: cannot replace it: %s%s", path, strerror(errno), KEPT);
        }
        if (rc && (fd >= 0)) unlink(tmp.data);
        if (!rc) {
            sync_parent_dir(path);
            remove_stale_temps(path);
        }
    }
    nrt_buf_free(&tmp);
    nrt_buf_free(&hdr);
    nrt_free((void *)order);
    return rc;
}
