/* runtime/alloc.c -- the runtime's error state and its one allocation pair.
 * Errors: a thread-local one-line message plus the status it was set with.
 * Allocation: nrt_alloc/nrt_realloc/nrt_free over posix_memalign, with a small
 * header before each block (its size and alignment), process-wide atomic
 * counters, and failure injection for out-of-memory tests. Last, the growable
 * byte buffer (struct nrt_buf) that the other files build text in. */
#include "runtime/internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------- errors -- */

#define ERR_MAX 1024 /* longest message kept, NUL included */

static _Thread_local char err_msg[ERR_MAX];

const char *nrt_error(void) { return err_msg; }

void nrt_error_clear(void) { err_msg[0] = '\0'; }

/* Replaces newlines so that every message stays one line. */
static void err_one_line(void) {
    for (char *p = err_msg; *p; p++)
        if (*p == '\n' || *p == '\r') *p = ' ';
}

int nrt_error_set(int status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    err_one_line();
    return status;
}

int nrt_error_prefix(int status, const char *prefix) {
    char old[ERR_MAX];
    memcpy(old, err_msg, sizeof old);
    size_t n = strlen(prefix);
    if (n > ERR_MAX / 2) n = ERR_MAX / 2;
    memcpy(err_msg, prefix, n);
    memcpy(err_msg + n, ": ", 2);
    n += 2;
    size_t m = strlen(old);
    if (m > ERR_MAX - 1 - n) m = ERR_MAX - 1 - n;
    memcpy(err_msg + n, old, m);
    err_msg[n + m] = '\0';
    err_one_line();
    return status;
}

/* ------------------------------------------------------------- allocation -- */

/* Stored just below every block: what nrt_free and nrt_realloc need. */
struct block_header {
    size_t size;  /* bytes requested */
    size_t align; /* alignment, also the distance from the raw pointer */
};

#define HDR_SIZE 16 /* sizeof(struct block_header) rounded to the minimum alignment */

static atomic_uint_least64_t st_calls, st_failures, st_frees;
static atomic_int_least64_t st_live;
static atomic_size_t st_live_bytes, st_peak_bytes;
static atomic_int_least64_t fail_budget = -1; /* allocations left before injected failures; <0 off */

_Static_assert(sizeof(struct block_header) <= HDR_SIZE, "block header too large");

/* Whether this call must fail because of nrt_alloc_fail_after. */
static int injected_failure(void) {
    int64_t b = atomic_load(&fail_budget);
    while (b >= 0) {
        if (b == 0) return 1;
        if (atomic_compare_exchange_weak(&fail_budget, &b, b - 1)) return 0;
    }
    return 0;
}

static void note_live(size_t size) {
    atomic_fetch_add(&st_live, 1);
    size_t now = atomic_fetch_add(&st_live_bytes, size) + size;
    size_t peak = atomic_load(&st_peak_bytes);
    while (now > peak && !atomic_compare_exchange_weak(&st_peak_bytes, &peak, now)) {
    }
}

static void *fail(size_t size) {
    atomic_fetch_add(&st_failures, 1);
    nrt_error_set(NRT_ERR_NOMEM, "out of memory allocating %zu bytes", size);
    return NULL;
}

/* The allocation proper; counted calls go through here once. */
static void *alloc_block(size_t size, size_t align) {
    if (align == 0) align = NRT_ALIGN;
    if (align & (align - 1)) {
        atomic_fetch_add(&st_failures, 1);
        nrt_error_set(NRT_ERR_ARG, "alignment %zu is not a power of two", align);
        return NULL;
    }
    if (align < HDR_SIZE) align = HDR_SIZE;
    /* No object may exceed PTRDIFF_MAX bytes: pointer differences must fit. */
    if (injected_failure() || size > (size_t)PTRDIFF_MAX - align) return fail(size);
    void *raw = NULL;
    /* One extra alignment unit in front holds the header and keeps the block aligned. */
    if (posix_memalign(&raw, align, size + align) != 0 || !raw) return fail(size);
    char *p = (char *)raw + align;
    struct block_header h = {size, align};
    memcpy(p - HDR_SIZE, &h, sizeof h);
    note_live(size);
    return p;
}

static struct block_header header_of(const void *p) {
    struct block_header h;
    memcpy(&h, (const char *)p - HDR_SIZE, sizeof h);
    return h;
}

void *nrt_alloc(size_t size, size_t align) {
    atomic_fetch_add(&st_calls, 1);
    return alloc_block(size, align);
}

void *nrt_alloc_zero(size_t size, size_t align) {
    void *p = nrt_alloc(size, align);
    if (p) memset(p, 0, size);
    return p;
}

void nrt_free(void *p) {
    if (!p) return;
    struct block_header h = header_of(p);
    atomic_fetch_add(&st_frees, 1);
    atomic_fetch_sub(&st_live, 1);
    atomic_fetch_sub(&st_live_bytes, h.size);
    free((char *)p - h.align);
}

void *nrt_realloc(void *p, size_t size) {
    if (!p) return nrt_alloc(size, 0);
    atomic_fetch_add(&st_calls, 1);
    struct block_header h = header_of(p);
    void *q = alloc_block(size, h.align);
    if (!q) return NULL;
    memcpy(q, p, h.size < size ? h.size : size);
    nrt_free(p);
    return q;
}

void nrt_alloc_stats_get(struct nrt_alloc_stats *out) {
    out->calls = atomic_load(&st_calls);
    out->failures = atomic_load(&st_failures);
    out->frees = atomic_load(&st_frees);
    out->live = atomic_load(&st_live);
    out->live_bytes = atomic_load(&st_live_bytes);
    out->peak_bytes = atomic_load(&st_peak_bytes);
}

uint64_t nrt_alloc_count(void) { return atomic_load(&st_calls); }

void nrt_alloc_fail_after(int64_t n) { atomic_store(&fail_budget, n < 0 ? -1 : n); }

/* ---------------------------------------------------------- byte buffers -- */

int nrt_buf_reserve(struct nrt_buf *b, size_t extra) {
    if (extra > SIZE_MAX / 2 - b->len)
        return nrt_error_set(NRT_ERR_NOMEM, "buffer of %zu bytes cannot grow by %zu", b->len, extra);
    size_t need = b->len + extra + 1;
    if (need <= b->cap) return NRT_OK;
    size_t cap = b->cap ? b->cap : 256;
    if (!b->cap && need > cap) cap = need; /* the first reservation is exact: callers often know the size */
    while (cap < need) cap *= 2;
    char *d = nrt_realloc(b->data, cap);
    if (!d) return NRT_ERR_NOMEM;
    b->data = d;
    b->cap = cap;
    b->data[b->len] = '\0';
    return NRT_OK;
}

int nrt_buf_append(struct nrt_buf *b, const void *p, size_t n) {
    int rc = nrt_buf_reserve(b, n);
    if (rc) return rc;
    if (n) memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return NRT_OK;
}

int nrt_buf_printf(struct nrt_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return nrt_error_set(NRT_ERR_ARG, "bad format string '%s'", fmt);
    int rc = nrt_buf_reserve(b, (size_t)n);
    if (rc) return rc;
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return NRT_OK;
}

void nrt_buf_free(struct nrt_buf *b) {
    nrt_free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}
