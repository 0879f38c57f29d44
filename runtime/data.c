/* runtime/data.c -- data files and datasets. Loaders for IDX (the MNIST format),
 * NumPy .npy and CSV each read the whole file (gunzipping it when it starts with
 * 1f 8b), parse the header, check that the data is exactly what the header
 * promises, and hand the values to nrt_array_convert. Sections: IDX, .npy (with
 * a parser for the Python dict of its header), CSV, the loader entry points with
 * format detection, then datasets (features plus labels, or one CSV split by
 * columns) and batching, which gathers through a permutation without allocating. */
#include "runtime/internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct nrt_load_opts nrt_load_opts_features(double scale, double shift) {
    struct nrt_load_opts o = {NRT_DT_F32, scale, shift, 0, -1};
    return o;
}

struct nrt_load_opts nrt_load_opts_labels(int32_t num_classes) {
    struct nrt_load_opts o = {NRT_DT_I32, 1.0, 0.0, num_classes, -1};
    return o;
}

/* "60000x28x28" for messages. */
static void dims_format(char *buf, size_t size, int rank, const int64_t *dims) {
    size_t at = 0;
    buf[0] = '\0';
    for (int i = 0; i < rank && at < size; i++) {
        int n = snprintf(buf + at, size - at, "%s%lld", i ? "x" : "", (long long)dims[i]);
        if (n < 0) return;
        at += (size_t)n;
    }
}

/* Checks that the data after the header is exactly count elements of elem bytes. */
static int check_data_size(const char *name, const char *fmt, size_t have, int64_t count, size_t elem,
                           enum nrt_dtype dt, int rank, const int64_t *dims) {
    uint64_t want = (uint64_t)count * elem;
    if (have == want) return NRT_OK;
    char shape[160];
    dims_format(shape, sizeof shape, rank, dims);
    if (have < want)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: truncated %s data: dims %s of %s need %llu bytes, file has %zu", name, fmt,
                             shape, nrt_dtype_name(dt), (unsigned long long)want, have);
    return nrt_error_set(
        NRT_ERR_FORMAT, "%s: %llu extra bytes after the %s data (dims %s of %s need %llu bytes)", name,
        (unsigned long long)(have - want), fmt, shape, nrt_dtype_name(dt), (unsigned long long)want);
}

/* -------------------------------------------------------------------- IDX -- */

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* The dtype of an IDX type code, or NRT_DT_COUNT if the code is unknown. */
static enum nrt_dtype idx_dtype(unsigned code) {
    switch (code) {
    case 0x08:
        return NRT_DT_U8;
    case 0x09:
        return NRT_DT_I8;
    case 0x0B:
        return NRT_DT_I16;
    case 0x0C:
        return NRT_DT_I32;
    case 0x0D:
        return NRT_DT_F32;
    case 0x0E:
        return NRT_DT_F64;
    default:
        return NRT_DT_COUNT;
    }
}

/* Whether the first bytes look like an IDX header (used for detection). */
static int idx_plausible(const unsigned char *d, size_t len) {
    return len >= 4 && d[0] == 0 && d[1] == 0 && idx_dtype(d[2]) != NRT_DT_COUNT && d[3] >= 1 &&
           d[3] <= NRT_MAX_RANK;
}

static int idx_parse(struct nrt_array *out, const char *name, const unsigned char *d, size_t len,
                     const struct nrt_load_opts *opts) {
    if (len < 4)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: file too short for an IDX header (%zu bytes)", name, len);
    uint32_t magic = be32(d);
    enum nrt_dtype dt = idx_dtype(d[2]);
    if (d[0] != 0 || d[1] != 0 || dt == NRT_DT_COUNT)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: bad IDX magic 0x%08x (expected 0x0000TTRR, type TT one of 08 u8, "
                             "09 i8, 0b i16, 0c i32, 0d f32, 0e f64, and RR the rank)",
                             name, (unsigned)magic);
    int rank = d[3];
    if (rank < 1 || rank > NRT_MAX_RANK)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: IDX magic 0x%08x gives rank %d, expected 1..%d", name,
                             (unsigned)magic, rank, NRT_MAX_RANK);
    size_t hdr = 4 + 4 * (size_t)rank;
    if (len < hdr)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: truncated IDX header: rank %d needs %zu header bytes, file has %zu", name,
                             rank, hdr, len);
    int64_t dims[NRT_MAX_RANK], count;
    for (int i = 0; i < rank; i++) dims[i] = be32(d + 4 + 4 * i);
    if (nrt_dims_count(rank, dims, nrt_dtype_size(dt), &count)) return nrt_error_prefix(NRT_ERR_FORMAT, name);
    int rc = check_data_size(name, "IDX", len - hdr, count, nrt_dtype_size(dt), dt, rank, dims);
    if (rc) return rc;
    return nrt_array_convert(out, name, dt, 1, d + hdr, rank, dims, opts);
}

/* -------------------------------------------------------------------- npy -- */

/* A cursor over the header text, a Python dict literal such as
 * {'descr': '<f4', 'fortran_order': False, 'shape': (60000, 28, 28), } */
struct pyparse {
    const char *s;    /* next character */
    const char *end;  /* end of the header text */
    const char *name; /* file name for messages */
};

static void py_ws(struct pyparse *p) {
    while (p->s < p->end && (*p->s == ' ' || *p->s == '\t' || *p->s == '\n' || *p->s == '\r')) p->s++;
}

static int py_fail(struct pyparse *p, const char *what) {
    return nrt_error_set(NRT_ERR_FORMAT, "%s: bad .npy header: %s", p->name, what);
}

static int py_expect(struct pyparse *p, char c) {
    py_ws(p);
    if (p->s >= p->end || *p->s != c) {
        char what[48];
        snprintf(what, sizeof what, "expected '%c'", c);
        return py_fail(p, what);
    }
    p->s++;
    return NRT_OK;
}

/* A quoted string without escapes (npy headers never need them) into buf. */
static int py_string(struct pyparse *p, char *buf, size_t size) {
    py_ws(p);
    if (p->s >= p->end || (*p->s != '\'' && *p->s != '"')) return py_fail(p, "expected a quoted string");
    char q = *p->s++;
    size_t n = 0;
    while (p->s < p->end && *p->s != q) {
        if (*p->s == '\\' || *p->s == '\n' || n + 1 >= size)
            return py_fail(p, "unsupported or overlong string");
        buf[n++] = *p->s++;
    }
    if (p->s >= p->end) return py_fail(p, "unterminated string");
    p->s++;
    buf[n] = '\0';
    return NRT_OK;
}

static int py_int(struct pyparse *p, int64_t *v) {
    py_ws(p);
    if (p->s >= p->end || !isdigit((unsigned char)*p->s))
        return py_fail(p, "expected a non-negative integer in the shape");
    int64_t x = 0;
    while (p->s < p->end && isdigit((unsigned char)*p->s)) {
        int dgt = *p->s++ - '0';
        if (x > (INT64_MAX - dgt) / 10) return py_fail(p, "shape dim overflows 64 bits");
        x = x * 10 + dgt;
    }
    if (p->s < p->end && *p->s == 'L') /* Python 2 long suffix */
        p->s++;
    *v = x;
    return NRT_OK;
}

/* (d0, d1, ...) with an optional trailing comma; () is a scalar. */
static int py_shape(struct pyparse *p, int *rank, int64_t *dims) {
    int rc = py_expect(p, '(');
    if (rc) return rc;
    *rank = 0;
    for (;;) {
        py_ws(p);
        if (p->s < p->end && *p->s == ')') {
            p->s++;
            return NRT_OK;
        }
        if (*rank == NRT_MAX_RANK) return py_fail(p, "shape has more than 8 dims");
        if ((rc = py_int(p, &dims[(*rank)++])) != NRT_OK) return rc;
        py_ws(p);
        if (p->s < p->end && *p->s == ',')
            p->s++;
        else if (p->s >= p->end || *p->s != ')')
            return py_fail(p, "expected ',' or ')' in the shape");
    }
}

static int py_bool(struct pyparse *p, int *v) {
    py_ws(p);
    size_t left = (size_t)(p->end - p->s);
    if (left >= 4 && memcmp(p->s, "True", 4) == 0) {
        p->s += 4;
        *v = 1;
    } else if (left >= 5 && memcmp(p->s, "False", 5) == 0) {
        p->s += 5;
        *v = 0;
    } else {
        return py_fail(p, "fortran_order must be True or False");
    }
    return NRT_OK;
}

static const struct {
    const char *descr; /* numpy type string */
    enum nrt_dtype dt; /* its dtype */
} npy_types[] = {
    {"<f4", NRT_DT_F32}, {"<f8", NRT_DT_F64}, {"<i4", NRT_DT_I32},
    {"<i8", NRT_DT_I64}, {"|u1", NRT_DT_U8},  {"|i1", NRT_DT_I8},
};

/* Parses the header dict: descr, fortran_order and shape, each exactly once. */
static int npy_header(struct pyparse *p, enum nrt_dtype *dt, int *rank, int64_t *dims) {
    int seen[3] = {0, 0, 0}, fortran = 0, rc;
    char key[32], descr[32];
    if ((rc = py_expect(p, '{')) != NRT_OK) return rc;
    for (;;) {
        py_ws(p);
        if (p->s < p->end && *p->s == '}') {
            p->s++;
            break;
        }
        if ((rc = py_string(p, key, sizeof key)) || (rc = py_expect(p, ':'))) return rc;
        int k = strcmp(key, "descr") == 0           ? 0
                : strcmp(key, "fortran_order") == 0 ? 1
                : strcmp(key, "shape") == 0         ? 2
                                                    : -1;
        if (k < 0 || seen[k]) {
            char what[80];
            snprintf(what, sizeof what, "%s key '%s'", k < 0 ? "unknown" : "duplicate", key);
            return py_fail(p, what);
        }
        seen[k] = 1;
        rc = k == 0   ? py_string(p, descr, sizeof descr)
             : k == 1 ? py_bool(p, &fortran)
                      : py_shape(p, rank, dims);
        if (rc) return rc;
        py_ws(p);
        if (p->s < p->end && *p->s == ',')
            p->s++;
        else if (p->s >= p->end || *p->s != '}')
            return py_fail(p, "expected ',' or '}' after a value");
    }
    py_ws(p);
    if (p->s != p->end) return py_fail(p, "text after the dict");
    if (!seen[0] || !seen[1] || !seen[2])
        return py_fail(p, !seen[0]   ? "no 'descr' key"
                          : !seen[1] ? "no 'fortran_order' key"
                                     : "no 'shape' key");
    if (fortran)
        return nrt_error_set(NRT_ERR_FORMAT,
                             "%s: fortran_order True is not supported (save a C-ordered array)", p->name);
    for (size_t i = 0; i < sizeof npy_types / sizeof npy_types[0]; i++)
        if (strcmp(descr, npy_types[i].descr) == 0) {
            *dt = npy_types[i].dt;
            return NRT_OK;
        }
    return nrt_error_set(NRT_ERR_FORMAT,
                         "%s: unsupported .npy dtype '%s' (supported: <f4 <f8 <i4 <i8 |u1 |i1)", p->name,
                         descr);
}

#define NPY_MAX_HEADER (1u << 20) /* longest header accepted; numpy writes < 1 KB */

static int npy_parse(struct nrt_array *out, const char *name, const unsigned char *d, size_t len,
                     const struct nrt_load_opts *opts) {
    if (len < 10 || memcmp(d, "\x93NUMPY", 6) != 0)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: bad .npy magic (expected \\x93NUMPY)", name);
    int major = d[6], minor = d[7];
    size_t hlen, at;
    if (major == 1) {
        hlen = (size_t)d[8] | (size_t)d[9] << 8;
        at = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) return nrt_error_set(NRT_ERR_FORMAT, "%s: truncated .npy header", name);
        hlen = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
        at = 12;
    } else {
        return nrt_error_set(NRT_ERR_FORMAT, "%s: unsupported .npy version %d.%d", name, major, minor);
    }
    if (hlen > NPY_MAX_HEADER)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: .npy header length %zu exceeds %u bytes", name, hlen,
                             NPY_MAX_HEADER);
    if (len - at < hlen)
        return nrt_error_set(NRT_ERR_FORMAT, "%s: truncated .npy header: %zu bytes promised, %zu present",
                             name, hlen, len - at);
    struct pyparse p = {(const char *)d + at, (const char *)d + at + hlen, name};
    enum nrt_dtype dt = NRT_DT_F32;
    int rank = 0;
    int64_t dims[NRT_MAX_RANK], count;
    int rc = npy_header(&p, &dt, &rank, dims);
    if (rc) return rc;
    if (nrt_dims_count(rank, dims, nrt_dtype_size(dt), &count)) return nrt_error_prefix(NRT_ERR_FORMAT, name);
    at += hlen;
    rc = check_data_size(name, ".npy", len - at, count, nrt_dtype_size(dt), dt, rank, dims);
    if (rc) return rc;
    return nrt_array_convert(out, name, dt, 0, d + at, rank, dims, opts);
}

/* ------------------------------------------------------------ size hints -- */

size_t nrt_data_size_hint(const unsigned char *d, size_t len) {
    size_t at;
    int rank = 0;
    int64_t dims[NRT_MAX_RANK], count;
    enum nrt_dtype dt = NRT_DT_F32;
    if (len >= 10 && memcmp(d, "\x93NUMPY", 6) == 0) {
        size_t hlen;
        if (d[6] == 1) {
            hlen = (size_t)d[8] | (size_t)d[9] << 8;
            at = 10;
        } else if ((d[6] == 2 || d[6] == 3) && len >= 12) {
            hlen = (size_t)d[8] | (size_t)d[9] << 8 | (size_t)d[10] << 16 | (size_t)d[11] << 24;
            at = 12;
        } else {
            return 0;
        }
        if (hlen > NPY_MAX_HEADER || len - at < hlen) return 0;
        struct pyparse p = {(const char *)d + at, (const char *)d + at + hlen, ""};
        if (npy_header(&p, &dt, &rank, dims) != NRT_OK) {
            nrt_error_clear();
            return 0;
        }
        at += hlen;
    } else if (idx_plausible(d, len)) {
        rank = d[3];
        dt = idx_dtype(d[2]);
        at = 4 + 4 * (size_t)rank;
        if (len < at) return 0;
        for (int i = 0; i < rank; i++) dims[i] = be32(d + 4 + 4 * i);
    } else {
        return 0;
    }
    if (nrt_dims_count(rank, dims, nrt_dtype_size(dt), &count) != NRT_OK) {
        nrt_error_clear();
        return 0;
    }
    uint64_t bytes = (uint64_t)count * nrt_dtype_size(dt); /* < 2^63: checked above */
    return bytes > SIZE_MAX - at ? SIZE_MAX : at + (size_t)bytes;
}

/* -------------------------------------------------------------------- CSV -- */

/* One field of a line: [b, e) after trimming blanks and one pair of quotes. */
struct csv_field {
    const char *b; /* first character */
    const char *e; /* one past the last */
};

static int is_blank(char c) { return c == ' ' || c == '\t' || c == '\r'; }

/* Splits [s, end) at commas outside double quotes; returns the field count or
 * -1 on an unterminated quote. Fields beyond max are counted, not stored. */
static int64_t csv_split(const char *s, const char *end, struct csv_field *f, int64_t max) {
    int64_t n = 0;
    for (;;) {
        const char *b = s;
        int quoted = 0;
        while (s < end && (*s != ',' || quoted)) {
            if (*s == '"') quoted = !quoted;
            s++;
        }
        if (quoted) return -1;
        const char *e = s;
        while (b < e && is_blank(*b)) b++;
        while (e > b && is_blank(e[-1])) e--;
        if (e - b >= 2 && *b == '"' && e[-1] == '"') {
            b++;
            e--;
        }
        if (n < max) f[n] = (struct csv_field){b, e};
        n++;
        if (s >= end) return n;
        s++; /* the comma */
    }
}

/* A decimal number filling the whole field; no hex, inf or nan. */
static int csv_number(struct csv_field f, double *v) {
    char tmp[128];
    size_t n = (size_t)(f.e - f.b);
    if (n == 0 || n >= sizeof tmp) return 0;
    for (size_t i = 0; i < n; i++)
        if (!f.b[i] || !strchr("0123456789+-.eE", f.b[i])) return 0;
    memcpy(tmp, f.b, n);
    tmp[n] = '\0';
    char *endp;
    *v = strtod(tmp, &endp);
    return endp == tmp + n && isfinite(*v);
}

int nrt_csv_parse(struct nrt_csv_table *t, const char *name, const char *text, size_t len, int header) {
    struct nrt_buf vals = {0};
    struct csv_field *fields = NULL;
    int64_t cols = -1, rows = 0, cap = 0;
    long line_no = 0, first_line = 0;
    int rc = NRT_OK;
    const char *s = text, *end = text + len;
    memset(t, 0, sizeof *t);
    while (s < end && rc == NRT_OK) {
        const char *nl = memchr(s, '\n', (size_t)(end - s));
        const char *e = nl ? nl : end;
        const char *next = nl ? nl + 1 : end;
        line_no++;
        const char *q = s;
        while (q < e && is_blank(*q)) q++;
        if (q == e) { /* blank line */
            s = next;
            continue;
        }
        if (memchr(s, '\0', (size_t)(e - s))) {
            rc =
                nrt_error_set(NRT_ERR_FORMAT, "%s:%ld: NUL byte in a CSV line (binary file?)", name, line_no);
            break;
        }
        int64_t n = csv_split(s, e, fields, cap);
        if (n < 0) {
            rc = nrt_error_set(NRT_ERR_FORMAT, "%s:%ld: unterminated quote", name, line_no);
            break;
        }
        if (n > cap) {
            struct csv_field *nf = nrt_realloc(fields, (size_t)n * sizeof *nf);
            if (!nf) {
                rc = nrt_error_prefix(NRT_ERR_NOMEM, name);
                break;
            }
            fields = nf;
            cap = n;
            csv_split(s, e, fields, cap);
        }
        int is_first = cols < 0;
        if (is_first) {
            cols = n;
            first_line = line_no;
            double v;
            int numeric = 1;
            for (int64_t i = 0; i < n && numeric; i++) numeric = csv_number(fields[i], &v);
            if (header == 1 || (header < 0 && !numeric)) {
                s = next;
                continue;
            }
        } else if (n != cols) {
            rc = nrt_error_set(NRT_ERR_FORMAT, "%s:%ld: %lld fields, expected %lld as on line %ld", name,
                               line_no, (long long)n, (long long)cols, first_line);
            break;
        }
        if ((rc = nrt_buf_reserve(&vals, (size_t)n * sizeof(double))) != NRT_OK) {
            nrt_error_prefix(rc, name);
            break;
        }
        double *row = (double *)(void *)(vals.data + vals.len);
        for (int64_t i = 0; i < n; i++) {
            if (!csv_number(fields[i], &row[i])) {
                int w = (int)(fields[i].e - fields[i].b);
                rc = nrt_error_set(NRT_ERR_FORMAT, "%s:%ld: field %lld is not a number: '%.*s'%s", name,
                                   line_no, (long long)i + 1, w > 40 ? 40 : w, fields[i].b,
                                   w > 40 ? "..." : "");
                break;
            }
        }
        if (rc) break;
        vals.len += (size_t)n * sizeof(double);
        rows++;
        s = next;
    }
    nrt_free(fields);
    if (rc == NRT_OK && rows == 0)
        rc = nrt_error_set(NRT_ERR_FORMAT, "%s: no data rows in the CSV file", name);
    if (rc) {
        nrt_buf_free(&vals);
        return rc;
    }
    t->values = (double *)(void *)vals.data;
    t->rows = rows;
    t->cols = cols;
    return NRT_OK;
}

static int csv_to_array(struct nrt_array *out, const char *name, const unsigned char *d, size_t len,
                        const struct nrt_load_opts *opts) {
    struct nrt_csv_table t;
    int rc = nrt_csv_parse(&t, name, (const char *)d, len, opts ? opts->csv_header : -1);
    if (rc) return rc;
    int64_t dims[2] = {t.rows, t.cols};
    rc = nrt_array_convert(out, name, NRT_DT_F64, 0, t.values, 2, dims, opts);
    nrt_free(t.values);
    return rc;
}

/* ------------------------------------------------------------ entry points -- */

typedef int parse_fn(struct nrt_array *, const char *, const unsigned char *, size_t,
                     const struct nrt_load_opts *);

static int load_with(parse_fn *parse, struct nrt_array *out, const char *path,
                     const struct nrt_load_opts *opts) {
    unsigned char *d;
    size_t len;
    memset(out, 0, sizeof *out);
    int rc = nrt_file_read(path, &d, &len);
    if (rc) return rc;
    if (!parse)
        parse = len >= 6 && memcmp(d, "\x93NUMPY", 6) == 0 ? npy_parse
                : nrt_image_kind(d, len)                   ? nrt_image_parse
                : idx_plausible(d, len)                    ? idx_parse
                                                           : csv_to_array;
    rc = parse(out, path, d, len, opts);
    nrt_free(d);
    return rc;
}

int nrt_idx_load(struct nrt_array *out, const char *path, const struct nrt_load_opts *opts) {
    return load_with(idx_parse, out, path, opts);
}

int nrt_npy_load(struct nrt_array *out, const char *path, const struct nrt_load_opts *opts) {
    return load_with(npy_parse, out, path, opts);
}

int nrt_csv_load(struct nrt_array *out, const char *path, const struct nrt_load_opts *opts) {
    return load_with(csv_to_array, out, path, opts);
}

int nrt_array_load(struct nrt_array *out, const char *path, const struct nrt_load_opts *opts) {
    return load_with(NULL, out, path, opts);
}

int nrt_data_load(struct nrt_array *out, const char *path, const struct nrt_load_opts *opts,
                  const struct nrt_load_opts *csv_opts, int *csv) {
    unsigned char *d;
    size_t len;
    memset(out, 0, sizeof *out);
    *csv = 0;
    int rc = nrt_file_read(path, &d, &len);
    if (rc) return rc;
    if (len >= 6 && memcmp(d, "\x93NUMPY", 6) == 0)
        rc = npy_parse(out, path, d, len, opts);
    else if (idx_plausible(d, len))
        rc = idx_parse(out, path, d, len, opts);
    else
        *csv = 1, rc = csv_to_array(out, path, d, len, csv_opts);
    nrt_free(d);
    return rc;
}

/* --------------------------------------------------- datasets, batching -- */

/* Elements per sample: the product of dims[1..]. */
static int64_t row_elems(const struct nrt_array *a) {
    int64_t n = 1;
    for (int i = 1; i < a->rank; i++) n *= a->dims[i];
    return n;
}

int nrt_dataset_init(struct nrt_dataset *ds, struct nrt_array *x, const char *x_name, struct nrt_array *y,
                     const char *y_name) {
    struct nrt_array xa = *x, ya = {0};
    memset(x, 0, sizeof *x);
    if (y) {
        ya = *y;
        memset(y, 0, sizeof *y);
    }
    memset(ds, 0, sizeof *ds);
    x_name = x_name ? x_name : "features";
    y_name = y_name ? y_name : "labels";
    int rc = NRT_OK;
    if (!xa.data || xa.rank < 1)
        rc = nrt_error_set(NRT_ERR_ARG, "%s: features need at least one dim (samples), got rank %d", x_name,
                           xa.data ? xa.rank : 0);
    else if (ya.data && ya.rank < 1)
        rc = nrt_error_set(NRT_ERR_ARG, "%s: labels need at least one dim (samples), got rank 0", y_name);
    else if (ya.data && ya.dims[0] != xa.dims[0])
        rc = nrt_error_set(NRT_ERR_FORMAT, "%s has %lld samples but %s has %lld", x_name,
                           (long long)xa.dims[0], y_name, (long long)ya.dims[0]);
    if (rc) {
        nrt_array_free(&xa);
        nrt_array_free(&ya);
        return rc;
    }
    ds->x = xa;
    ds->y = ya;
    ds->n = xa.dims[0];
    ds->x_row = row_elems(&xa);
    ds->y_row = ya.data ? row_elems(&ya) : 0;
    return NRT_OK;
}

void nrt_dataset_free(struct nrt_dataset *ds) {
    nrt_array_free(&ds->x);
    nrt_array_free(&ds->y);
    memset(ds, 0, sizeof *ds);
}

int nrt_dataset_load(struct nrt_dataset *ds, const char *x_path, const struct nrt_load_opts *x_opts,
                     const char *y_path, const struct nrt_load_opts *y_opts) {
    struct nrt_array x, y = {0};
    memset(ds, 0, sizeof *ds);
    int rc = nrt_array_load(&x, x_path, x_opts);
    if (rc) return rc;
    if (y_path && (rc = nrt_array_load(&y, y_path, y_opts)) != NRT_OK) {
        nrt_array_free(&x);
        return rc;
    }
    return nrt_dataset_init(ds, &x, x_path, &y, y_path);
}

int nrt_dataset_load_csv(struct nrt_dataset *ds, const char *path, int64_t y_first, int64_t y_count,
                         const struct nrt_load_opts *x_opts, const struct nrt_load_opts *y_opts) {
    unsigned char *text;
    size_t len;
    struct nrt_csv_table t;
    memset(ds, 0, sizeof *ds);
    int rc = nrt_file_read(path, &text, &len);
    if (rc) return rc;
    rc = nrt_csv_parse(&t, path, (const char *)text, len, x_opts ? x_opts->csv_header : -1);
    nrt_free(text);
    if (rc) return rc;

    int64_t first = y_first < 0 ? t.cols + y_first : y_first;
    if (y_count < 1 || first < 0 || first > t.cols - y_count || t.cols - y_count < 1) {
        nrt_free(t.values);
        return nrt_error_set(NRT_ERR_ARG,
                             "%s: cannot take %lld label columns from column %lld of %lld and keep "
                             "at least one feature column",
                             path, (long long)y_count, (long long)y_first, (long long)t.cols);
    }
    int64_t xc = t.cols - y_count;
    double *xs = nrt_alloc((size_t)(t.rows * xc) * sizeof *xs, 0);
    double *ys = nrt_alloc((size_t)(t.rows * y_count) * sizeof *ys, 0);
    if (!xs || !ys) {
        nrt_free(xs);
        nrt_free(ys);
        nrt_free(t.values);
        return nrt_error_prefix(NRT_ERR_NOMEM, path);
    }
    for (int64_t r = 0; r < t.rows; r++) {
        const double *row = t.values + r * t.cols;
        double *xr = xs + r * xc;
        for (int64_t c = 0, k = 0; c < t.cols; c++) {
            if (c >= first && c < first + y_count)
                ys[r * y_count + (c - first)] = row[c];
            else
                xr[k++] = row[c];
        }
    }
    int64_t xdims[2] = {t.rows, xc}, ydims[2] = {t.rows, y_count};
    struct nrt_array x, y;
    nrt_free(t.values);
    rc = nrt_array_convert(&x, path, NRT_DT_F64, 0, xs, 2, xdims, x_opts);
    if (rc == NRT_OK) {
        rc = nrt_array_convert(&y, path, NRT_DT_F64, 0, ys, y_count == 1 ? 1 : 2, ydims, y_opts);
        if (rc) nrt_array_free(&x);
    }
    nrt_free(xs);
    nrt_free(ys);
    if (rc) return rc;
    return nrt_dataset_init(ds, &x, path, &y, path);
}

int64_t nrt_dataset_batch_count(const struct nrt_dataset *ds, int64_t batch_size) {
    if (batch_size < 1) {
        nrt_error_set(NRT_ERR_ARG, "batch size %lld is not positive", (long long)batch_size);
        return -1;
    }
    return ds->n / batch_size + (ds->n % batch_size != 0);
}

int64_t nrt_dataset_batch_get(const struct nrt_dataset *ds, const int64_t *perm, int64_t batch_size,
                              int64_t b, void *x_out, void *y_out) {
    int64_t batches = nrt_dataset_batch_count(ds, batch_size);
    if (batches < 0) return -1;
    if (b < 0 || b >= batches) {
        nrt_error_set(NRT_ERR_RANGE, "batch %lld is out of range [0, %lld) for %lld samples", (long long)b,
                      (long long)batches, (long long)ds->n);
        return -1;
    }
    if (y_out && !ds->y.data) {
        nrt_error_set(NRT_ERR_ARG, "the dataset has no labels to gather");
        return -1;
    }
    int64_t start = b * batch_size;
    int64_t n = ds->n - start < batch_size ? ds->n - start : batch_size;
    size_t xbytes = (size_t)ds->x_row * nrt_dtype_size(ds->x.dtype);
    size_t ybytes = (size_t)ds->y_row * nrt_dtype_size(ds->y.dtype);
    const char *xs = ds->x.data, *ys = ds->y.data;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = perm ? perm[start + i] : start + i;
        if (s < 0 || s >= ds->n) {
            nrt_error_set(NRT_ERR_RANGE, "permutation entry %lld is %lld, not in [0, %lld)",
                          (long long)(start + i), (long long)s, (long long)ds->n);
            return -1;
        }
        if (x_out) memcpy((char *)x_out + (size_t)i * xbytes, xs + (size_t)s * xbytes, xbytes);
        if (y_out) memcpy((char *)y_out + (size_t)i * ybytes, ys + (size_t)s * ybytes, ybytes);
    }
    return n;
}
