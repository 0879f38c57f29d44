/* runtime/array.c -- dtypes, arrays and the helpers every loader shares: reading
 * a whole (possibly gzip-compressed) file, checked shape arithmetic, formatting
 * shapes for messages, converting loaded values to F32 features or I32 labels,
 * and UTF-8 validation. The dtype facts come from NRT_DTYPE_LIST in netrt.h. */
#include "runtime/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

/* ----------------------------------------------------------------- dtypes -- */

static const size_t dtype_size[NRT_DT_COUNT] = {
#define NRT_X_(name, bytes, short_name, st_name) [NRT_DT_##name] = bytes,
    NRT_DTYPE_LIST(NRT_X_)
#undef NRT_X_
};

static const char *const dtype_name[NRT_DT_COUNT] = {
#define NRT_X_(name, bytes, short_name, st_name) [NRT_DT_##name] = short_name,
    NRT_DTYPE_LIST(NRT_X_)
#undef NRT_X_
};

size_t nrt_dtype_size(enum nrt_dtype dt) { return (unsigned)dt < NRT_DT_COUNT ? dtype_size[dt] : 0; }

const char *nrt_dtype_name(enum nrt_dtype dt) { return (unsigned)dt < NRT_DT_COUNT ? dtype_name[dt] : "?"; }

/* ----------------------------------------------------------------- arrays -- */

int nrt_dims_count(int rank, const int64_t *dims, size_t elem_size, int64_t *count) {
    int64_t n = 1;
    if (rank < 0 || rank > NRT_MAX_RANK)
        return nrt_error_set(NRT_ERR_FORMAT, "rank %d is not in 0..%d", rank, NRT_MAX_RANK);
    for (int i = 0; i < rank; i++) {
        if (dims[i] < 0)
            return nrt_error_set(NRT_ERR_FORMAT, "dim %d is negative (%lld)", i, (long long)dims[i]);
        if (dims[i] != 0 && n > INT64_MAX / dims[i])
            return nrt_error_set(NRT_ERR_FORMAT, "dims overflow 64 bits");
        n *= dims[i];
    }
    if (elem_size && n > INT64_MAX / (int64_t)elem_size)
        return nrt_error_set(NRT_ERR_FORMAT, "dims overflow 64 bits");
    if ((uint64_t)n * (elem_size ? elem_size : 1) > SIZE_MAX)
        return nrt_error_set(NRT_ERR_FORMAT, "dims exceed the address space");
    *count = n;
    return NRT_OK;
}

void nrt_shape_format(char *buf, size_t size, enum nrt_dtype dt, int rank, const int64_t *dims) {
    size_t at = 0;
    int n = snprintf(buf, size, "%s[", nrt_dtype_name(dt));
    for (int i = 0; n >= 0 && i <= rank; i++) {
        at += (size_t)n;
        if (at >= size) return;
        if (i == rank)
            n = snprintf(buf + at, size - at, "]");
        else if (dims[i] == NRT_DIM_N)
            n = snprintf(buf + at, size - at, "%sN", i ? "," : "");
        else
            n = snprintf(buf + at, size - at, "%s%lld", i ? "," : "", (long long)dims[i]);
    }
}

int nrt_array_init(struct nrt_array *a, enum nrt_dtype dt, int rank, const int64_t *dims) {
    memset(a, 0, sizeof *a);
    if ((unsigned)dt >= NRT_DT_COUNT) return nrt_error_set(NRT_ERR_ARG, "invalid dtype %d", (int)dt);
    int64_t count;
    int rc = nrt_dims_count(rank, dims, dtype_size[dt], &count);
    if (rc) return rc;
    void *data = nrt_alloc_zero((size_t)count * dtype_size[dt], 0);
    if (!data) return NRT_ERR_NOMEM;
    a->dtype = dt;
    a->rank = rank;
    for (int i = 0; i < rank; i++) a->dims[i] = dims[i];
    a->count = count;
    a->data = data;
    return NRT_OK;
}

void nrt_array_free(struct nrt_array *a) {
    nrt_free(a->data);
    memset(a, 0, sizeof *a);
}

size_t nrt_array_bytes(const struct nrt_array *a) { return (size_t)a->count * nrt_dtype_size(a->dtype); }

/* ------------------------------------------------------------ file input -- */

#define READ_CHUNK (1u << 30) /* largest single gzread request */
#define READ_SLACK (1u << 16) /* bytes read past the size a header promises */

int nrt_file_open(const char *path, int64_t *size) {
    /* O_NONBLOCK: opening a FIFO with no writer must not wait forever. */
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return nrt_error_set(NRT_ERR_IO, "%s: cannot open: %s", path, strerror(errno)), -1;
    struct stat st;
    int rc = NRT_OK;
    if (fstat(fd, &st) != 0)
        rc = nrt_error_set(NRT_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    else if (S_ISDIR(st.st_mode))
        rc = nrt_error_set(NRT_ERR_IO, "%s: is a directory, not a regular file", path);
    else if (!S_ISREG(st.st_mode))
        rc = nrt_error_set(NRT_ERR_IO,
                           "%s: not a regular file (a FIFO, device or socket cannot be read as data)", path);
    else if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) != 0)
        rc = nrt_error_set(NRT_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
    if (rc) {
        close(fd);
        return -1;
    }
    if (size) *size = (int64_t)st.st_size;
    return fd;
}

int nrt_file_read(const char *path, unsigned char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    int64_t size;
    int fd = nrt_file_open(path, &size);
    if (fd < 0) return NRT_ERR_IO;
    gzFile gz = gzdopen(fd, "rb");
    if (!gz) {
        close(fd);
        return nrt_error_set(NRT_ERR_NOMEM, "%s: cannot start zlib", path);
    }
    gzbuffer(gz, 1u << 17);

    /* A raw file fits exactly; compressed data grows the buffer by doubling.
     * Once the header of a gzip'd .npy or IDX file is in, reading stops
     * READ_SLACK bytes past the size it promises (the parser names a few
     * extra bytes exactly) and more is an error: a stream that expands
     * without end is cut there instead of filling memory. */
    struct nrt_buf b = {0};
    size_t first = size > 0 && (uint64_t)size < SIZE_MAX / 2 ? (size_t)size : 4096;
    size_t limit = 0; /* 0: not known */
    int rc = nrt_buf_reserve(&b, first);
    if (rc) nrt_error_prefix(rc, path);
    while (rc == NRT_OK) {
        if (limit && b.len >= limit) {
            rc = nrt_error_set(NRT_ERR_FORMAT,
                               "%s: the gzip data goes on more than %u bytes past the %zu bytes "
                               "its header describes",
                               path, READ_SLACK, limit - READ_SLACK - 1);
            break;
        }
        /* When the buffer is full, probe one byte before growing it, so that a
         * raw file read into an exactly sized buffer never doubles at EOF. */
        size_t room = b.cap - b.len - 1;
        if (limit && room > limit - b.len) room = limit - b.len;
        unsigned char probe = 0;
        unsigned char *dst = room ? (unsigned char *)b.data + b.len : &probe;
        unsigned want = room ? (room > READ_CHUNK ? READ_CHUNK : (unsigned)room) : 1;
        int n = gzread(gz, dst, want);
        int zerr = Z_OK;
        const char *msg = n <= 0 ? gzerror(gz, &zerr) : NULL;
        if (n < 0 && zerr == Z_ERRNO) {
            rc = nrt_error_set(NRT_ERR_IO, "%s: read error: %s", path, strerror(errno));
        } else if (n <= 0 && zerr != Z_OK && zerr != Z_STREAM_END) {
            rc = nrt_error_set(NRT_ERR_FORMAT, "%s: corrupt gzip data: %s", path, msg);
        } else if (n <= 0) {
            break;
        } else if (!room) {
            size_t grow = limit && limit - b.len < b.cap ? limit - b.len : b.cap;
            if ((rc = nrt_buf_reserve(&b, grow)) != NRT_OK)
                nrt_error_prefix(rc, path);
            else
                b.data[b.len++] = (char)probe;
        } else {
            b.len += (size_t)n;
        }
        if (!rc && !limit && !gzdirect(gz)) {
            size_t promised = nrt_data_size_hint((const unsigned char *)b.data, b.len);
            if (promised) limit = promised < SIZE_MAX - READ_SLACK - 1 ? promised + READ_SLACK + 1 : SIZE_MAX;
        }
    }
    gzclose(gz);
    if (rc) {
        nrt_buf_free(&b);
        return rc;
    }
    b.data[b.len] = '\0';
    *data = (unsigned char *)b.data;
    *len = b.len;
    return NRT_OK;
}

/* ------------------------------------------------------------- conversion -- */

/* Reads element i of an integer source as int64. */
static int64_t load_int(enum nrt_dtype dt, int be, const unsigned char *src, int64_t i) {
    unsigned char b[8];
    size_t size = dtype_size[dt];
    const unsigned char *p = src + (size_t)i * size;
    for (size_t k = 0; k < size; k++) b[k] = be ? p[size - 1 - k] : p[k];
    switch (dt) {
    case NRT_DT_U8:
        return b[0];
    case NRT_DT_I8:
        return (int8_t)b[0];
    case NRT_DT_I16: {
        int16_t v;
        memcpy(&v, b, 2);
        return v;
    }
    case NRT_DT_I32: {
        int32_t v;
        memcpy(&v, b, 4);
        return v;
    }
    default: {
        int64_t v;
        memcpy(&v, b, 8);
        return v;
    } /* NRT_DT_I64 */
    }
}

/* Reads element i of a float source as double. */
static double load_float(enum nrt_dtype dt, int be, const unsigned char *src, int64_t i) {
    unsigned char b[8];
    size_t size = dtype_size[dt];
    const unsigned char *p = src + (size_t)i * size;
    for (size_t k = 0; k < size; k++) b[k] = be ? p[size - 1 - k] : p[k];
    if (dt == NRT_DT_F32) {
        float v;
        memcpy(&v, b, 4);
        return v;
    }
    double v;
    memcpy(&v, b, 8);
    return v;
}

static int is_float_src(enum nrt_dtype dt) { return dt == NRT_DT_F32 || dt == NRT_DT_F64; }

static int to_f32(float *out, const char *name, enum nrt_dtype dt, int be, const unsigned char *src,
                  int64_t n, double scale, double shift) {
    if (dt == NRT_DT_U8) {
        /* The same formula as below, tabulated: the common image case. */
        float lut[256];
        for (int v = 0; v < 256; v++) lut[v] = (float)((double)v * scale + shift);
        for (int64_t i = 0; i < n; i++) out[i] = lut[src[i]];
        return NRT_OK;
    }
    if (is_float_src(dt)) {
        for (int64_t i = 0; i < n; i++) {
            double v = load_float(dt, be, src, i);
            if (!isfinite(v))
                return nrt_error_set(NRT_ERR_FORMAT, "%s: value %g at index %lld is not finite", name, v,
                                     (long long)i);
            out[i] = (float)(v * scale + shift);
        }
        return NRT_OK;
    }
    for (int64_t i = 0; i < n; i++) out[i] = (float)((double)load_int(dt, be, src, i) * scale + shift);
    return NRT_OK;
}

static int label_range_error(const char *name, const char *value, int64_t i, int32_t classes) {
    if (classes > 0)
        return nrt_error_set(NRT_ERR_RANGE, "%s: label %s at index %lld is out of range [0, %d)", name, value,
                             (long long)i, (int)classes);
    return nrt_error_set(NRT_ERR_RANGE, "%s: label %s at index %lld does not fit in i32", name, value,
                         (long long)i);
}

static int to_i32(int32_t *out, const char *name, enum nrt_dtype dt, int be, const unsigned char *src,
                  int64_t n, int32_t classes) {
    int64_t lo = classes > 0 ? 0 : INT32_MIN, hi = classes > 0 ? classes - 1 : INT32_MAX;
    char text[64];
    for (int64_t i = 0; i < n; i++) {
        int64_t v;
        if (is_float_src(dt)) {
            double d = load_float(dt, be, src, i);
            if (!isfinite(d) || d != floor(d)) {
                snprintf(text, sizeof text, "%.9g", d);
                return nrt_error_set(NRT_ERR_FORMAT, "%s: label %s at index %lld is not an integer", name,
                                     text, (long long)i);
            }
            if (d < (double)lo || d > (double)hi) {
                snprintf(text, sizeof text, "%.9g", d);
                return label_range_error(name, text, i, classes);
            }
            v = (int64_t)d;
        } else {
            v = load_int(dt, be, src, i);
            if (v < lo || v > hi) {
                snprintf(text, sizeof text, "%lld", (long long)v);
                return label_range_error(name, text, i, classes);
            }
        }
        out[i] = (int32_t)v;
    }
    return NRT_OK;
}

int nrt_array_convert(struct nrt_array *out, const char *name, enum nrt_dtype src_dt, int big_endian,
                      const void *src, int rank, const int64_t *dims, const struct nrt_load_opts *opts) {
    struct nrt_load_opts def = nrt_load_opts_features(1.0, 0.0);
    if (!opts) opts = &def;
    memset(out, 0, sizeof *out);
    if (opts->dtype != NRT_DT_F32 && opts->dtype != NRT_DT_I32)
        return nrt_error_set(NRT_ERR_ARG, "%s: loaders convert to f32 or i32, not %s", name,
                             nrt_dtype_name(opts->dtype));
    struct nrt_array a;
    int rc = nrt_array_init(&a, opts->dtype, rank, dims);
    if (rc) return nrt_error_prefix(rc, name);
    if (opts->dtype == NRT_DT_F32)
        rc = to_f32(a.data, name, src_dt, big_endian, src, a.count, opts->scale, opts->shift);
    else
        rc = to_i32(a.data, name, src_dt, big_endian, src, a.count, opts->num_classes);
    if (rc) {
        nrt_array_free(&a);
        return rc;
    }
    *out = a;
    return NRT_OK;
}

/* ------------------------------------------------------------------ UTF-8 -- */

int nrt_utf8_valid(const char *str, size_t n) {
    const unsigned char *s = (const unsigned char *)str;
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t extra;
        uint32_t cp, min;
        if ((c & 0xE0) == 0xC0) {
            extra = 1;
            cp = c & 0x1F;
            min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            extra = 2;
            cp = c & 0x0F;
            min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            extra = 3;
            cp = c & 0x07;
            min = 0x10000;
        } else
            return 0;
        if (n - i <= extra) return 0;
        for (size_t k = 1; k <= extra; k++) {
            if ((s[i + k] & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
        i += extra + 1;
    }
    return 1;
}
