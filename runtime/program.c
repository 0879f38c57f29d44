/* runtime/program.c -- the state of a compiled model at run time: descriptor
 * look-ups and the layout hash, the context (every buffer and the workspace,
 * allocated once for the largest batch), parameter initialisation from the
 * seeded Philox generator, running an entry point, and checkpoints (safetensors
 * with the model's name, layout hash, step and epoch as metadata); large
 * batches of inference entry points go through slices.c. Device
 * models also get the device arena's layout here, and their device through
 * the layer their descriptor names (struct nrt_device_ops). */
#include "runtime/internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------ descriptors -- */

int64_t nrt_desc_count(int rank, const int64_t *dims, int64_t n) {
    int64_t c = 1;
    for (int i = 0; i < rank; i++) {
        int64_t d = dims[i] == NRT_DIM_N ? n : dims[i];
        if (d < 0 || (d && c > INT64_MAX / d)) return -1;
        c *= d;
    }
    return c;
}

/* Bytes of buffer b at batch n, or -1 when they would exceed PTRDIFF_MAX. */
static int64_t desc_bytes(const struct nrt_buffer_desc *b, int64_t n) {
    int64_t count = nrt_desc_count(b->rank, b->dims, n), size = (int64_t)nrt_dtype_size(b->dtype);
    if (count < 0 || count > (int64_t)(PTRDIFF_MAX / 2) / size) return -1;
    return count * size;
}

static void fnv(uint64_t *h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        *h ^= s[i];
        *h *= 0x100000001b3ull;
    }
}

void nrt_model_hash(const struct nrt_model *m, char *buf) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind == NRT_BUF_INPUT) continue;
        char line[64];
        fnv(&h, b->name, strlen(b->name) + 1);
        int len = snprintf(line, sizeof line, "%d:%d:%d", (int)b->kind, (int)b->dtype, b->rank);
        fnv(&h, line, (size_t)len);
        for (int d = 0; d < b->rank; d++) {
            len = snprintf(line, sizeof line, ",%lld", (long long)b->dims[d]);
            fnv(&h, line, (size_t)len);
        }
    }
    snprintf(buf, 17, "%016llx", (unsigned long long)h);
}

int nrt_model_entry(const struct nrt_model *m, const char *name) {
    for (int i = 0; i < m->n_entries; i++)
        if (strcmp(m->entries[i].name, name) == 0) return i;
    return -1;
}

int nrt_model_buffer(const struct nrt_model *m, const char *name) {
    for (int i = 0; i < m->n_buffers; i++)
        if (strcmp(m->buffers[i].name, name) == 0) return i;
    return -1;
}

int nrt_entry_output(const struct nrt_entry_desc *e, const char *name) {
    for (int i = 0; i < e->n_outputs; i++)
        if (strcmp(e->outputs[i].name, name) == 0) return i;
    return -1;
}

/* ---------------------------------------------------------------- context -- */

/* The stream of buffer i's initial values: independent of every other buffer
 * and of the shuffling and noise streams the driver uses (0..15). */
#define INIT_STREAM_BASE 1000

static void buffer_init(struct nrt_ctx *ctx, int i, uint64_t seed) {
    const struct nrt_buffer_desc *b = &ctx->model->buffers[i];
    if (b->kind == NRT_BUF_INPUT) return;
    int64_t count = nrt_desc_count(b->rank, b->dims, 1);
    if (b->dtype == NRT_DT_I32) {
        int32_t *p = ctx->buf[i];
        int32_t v = b->init == NRT_INIT_CONST ? nrt_to_i32(b->init_a) : 0;
        for (int64_t k = 0; k < count; k++) p[k] = v;
        return;
    }
    float *p = ctx->buf[i];
    struct nrt_rng r;
    nrt_rng_init(&r, seed, INIT_STREAM_BASE + (uint64_t)i);
    switch (b->init) {
    case NRT_INIT_ZEROS:
        memset(p, 0, sizeof *p * (size_t)count);
        break;
    case NRT_INIT_CONST:
        for (int64_t k = 0; k < count; k++) p[k] = (float)b->init_a;
        break;
    case NRT_INIT_UNIFORM:
        nrt_rng_fill_uniform(&r, p, (size_t)count, (float)b->init_a, (float)b->init_b);
        break;
    case NRT_INIT_NORMAL:
        nrt_rng_fill_normal(&r, p, (size_t)count, (float)b->init_a, (float)b->init_b);
        break;
    case NRT_INIT_RANGE:
        for (int64_t k = 0; k < count; k++)
            p[k] = k >= (int64_t)b->init_a && k < (int64_t)b->init_b ? 1.0f : 0.0f;
        break;
    }
}

void nrt_ctx_reset(struct nrt_ctx *ctx, uint64_t seed) {
    for (int i = 0; i < ctx->model->n_buffers; i++) buffer_init(ctx, i, seed);
    ctx->step = 0;
    ctx->epoch = 0;
    ctx->host_dirty = 1;
    ctx->dev_dirty = 0;
    ctx->params_token = 0;
}

/* The device of device models: set by the driver's --device, else NULL. */
static const char *device_spec;

void nrt_ctx_device_set(const char *spec) { device_spec = spec; }

/* Element offsets in the device arena, 16 elements (64 bytes) apart at least:
 * every buffer with inputs for max_n items, then the workspace. Returns the
 * arena's size in elements, or -1 without memory. */
static int64_t arena_layout(struct nrt_ctx *ctx) {
    const struct nrt_model *m = ctx->model;
    ctx->buf_off = nrt_alloc_zero(sizeof *ctx->buf_off * (size_t)(m->n_buffers ? m->n_buffers : 1), 0);
    if (!ctx->buf_off) return -1;
    int64_t at = 0;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        ctx->buf_off[i] = at;
        at += ((desc_bytes(b, ctx->max_n) + 63) / 64) * 16; /* nrt_ctx_init checked the sizes */
    }
    ctx->ws_off = at;
    return at + (((int64_t)ctx->ws_bytes + 63) / 64) * 16;
}

/* Opens the device of a device model through its layer (struct nrt_device_ops). */
static int ctx_open_device(struct nrt_ctx *ctx) {
    int64_t elems = arena_layout(ctx);
    if (elems < 0) return NRT_ERR_NOMEM;
    const char *spec = device_spec ? device_spec : getenv("NETC_DEVICE");
    return ctx->model->device->open(ctx, spec && *spec ? spec : NULL, elems);
}

void nrt_ctx_sync(struct nrt_ctx *ctx) {
    if (ctx->dev && ctx->dev_dirty) {
        ctx->model->device->download_state(ctx);
        ctx->dev_dirty = 0;
    }
}

#ifndef NRT_HEADER_HASH
#error "NRT_HEADER_HASH: runtime/CMakeLists.txt defines it for program.c"
#endif
const char nrt_runtime_hash[] = NRT_HEADER_HASH;

/* A model generated by a netc built against another netrt.h than this
 * libnetrt: its workspace sizes and descriptor layout cannot be trusted. */
static int check_runtime_hash(const struct nrt_model *m) {
    if (!m->runtime_hash || strcmp(m->runtime_hash, nrt_runtime_hash) == 0) return NRT_OK;
    return nrt_error_set(
        NRT_ERR_ARG,
        "model '%s' was generated by a netc built with another runtime header (netrt.h %.16s) "
        "than this libnetrt (netrt.h %s): rebuild netc and libnetrt from the same sources",
        m->name, m->runtime_hash, nrt_runtime_hash);
}

int nrt_ctx_init(struct nrt_ctx *ctx, const struct nrt_model *m, int64_t max_n, uint64_t seed) {
    memset(ctx, 0, sizeof *ctx);
    if (check_runtime_hash(m)) return NRT_ERR_ARG;
    if (max_n > NRT_MAX_BATCH)
        return nrt_error_set(NRT_ERR_RANGE, "batch size %lld is too large (at most %lld)", (long long)max_n,
                             (long long)NRT_MAX_BATCH);
    /* Every size is checked before anything is allocated: all of them together
     * must stay below PTRDIFF_MAX / 2 bytes, so no sum or product wraps. */
    int64_t total = 0, limit = (int64_t)(PTRDIFF_MAX / 2);
    int64_t n = max_n < 1 ? 1 : max_n;
    for (int i = 0; i < m->n_buffers; i++) {
        int64_t bytes = desc_bytes(&m->buffers[i], n);
        if (bytes < 0 || bytes > limit - total)
            return nrt_error_set(NRT_ERR_RANGE,
                                 "batch size %lld is too large: buffer '%s' would not fit in memory",
                                 (long long)n, m->buffers[i].name);
        total += bytes + 64;
    }
    size_t ws_bytes = 0;
    for (int e = 0; e < m->n_entries; e++) {
        const struct nrt_entry_desc *ent = &m->entries[e];
        if (ent->ws_fixed > (uint64_t)(limit - total) ||
            (ent->ws_per_n &&
             (uint64_t)n > (uint64_t)(limit - total - (int64_t)ent->ws_fixed) / ent->ws_per_n))
            return nrt_error_set(NRT_ERR_RANGE,
                                 "batch size %lld is too large: the workspace of '%s' would not fit "
                                 "in memory",
                                 (long long)n, ent->name);
        size_t need = ent->ws_fixed + ent->ws_per_n * (size_t)n;
        if (need > ws_bytes) ws_bytes = need;
    }
    ctx->model = m;
    ctx->max_n = n;
    ctx->buf = nrt_alloc_zero(sizeof *ctx->buf * (size_t)(m->n_buffers ? m->n_buffers : 1), 0);
    if (!ctx->buf) return NRT_ERR_NOMEM;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        int64_t bytes = desc_bytes(b, ctx->max_n);
        ctx->buf[i] = nrt_alloc_zero((size_t)bytes, 0);
        if (!ctx->buf[i]) {
            nrt_ctx_free(ctx);
            return nrt_error_set(NRT_ERR_NOMEM, "out of memory for buffer '%s' (%lld bytes at batch %lld)",
                                 b->name, (long long)bytes, (long long)n);
        }
    }
    ctx->ws_bytes = ws_bytes;
    ctx->ws = nrt_alloc_zero(ctx->ws_bytes, 0);
    if (!ctx->ws) {
        nrt_ctx_free(ctx);
        return nrt_error_set(NRT_ERR_NOMEM, "out of memory for the %zu-byte workspace", ctx->ws_bytes);
    }
    nrt_ctx_reset(ctx, seed);
    if (!m->device) nrt_sgemm_thread_ready();
    if (m->device) {
        int rc = ctx_open_device(ctx);
        if (rc) {
            nrt_ctx_free(ctx);
            return rc;
        }
    }
    ctx->prof = nrt_prof_open(m);
    if (!m->device && nrt_slices_alloc(ctx)) {
        nrt_ctx_free(ctx);
        return nrt_error_set(NRT_ERR_NOMEM, "out of memory for the outputs of sliced entry points");
    }
    return NRT_OK;
}

/* The workspace bytes of m at batch max_n: the largest entry point's. */
static size_t ws_size(const struct nrt_model *m, int64_t max_n) {
    size_t ws = 0;
    for (int e = 0; e < m->n_entries; e++) {
        size_t need = m->entries[e].ws_fixed + m->entries[e].ws_per_n * (size_t)max_n;
        if (need > ws) ws = need;
    }
    return ws;
}

#define MEM_ALIGN(x) (((x) + 63) & ~(size_t)63)

size_t nrt_ctx_mem_size(const struct nrt_model *m, int64_t max_n) {
    max_n = max_n < 1 ? 1 : max_n;
    size_t total = 64 + MEM_ALIGN(sizeof(void *) * (size_t)(m->n_buffers ? m->n_buffers : 1));
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        total += MEM_ALIGN((size_t)nrt_desc_count(b->rank, b->dims, max_n) * nrt_dtype_size(b->dtype));
    }
    return total + MEM_ALIGN(ws_size(m, max_n));
}

int nrt_ctx_init_mem(struct nrt_ctx *ctx, const struct nrt_model *m, int64_t max_n, uint64_t seed, void *mem,
                     size_t bytes) {
    memset(ctx, 0, sizeof *ctx);
    if (check_runtime_hash(m)) return NRT_ERR_ARG;
    max_n = max_n < 1 ? 1 : max_n;
    size_t need = nrt_ctx_mem_size(m, max_n);
    if (m->device)
        return nrt_error_set(NRT_ERR_ARG, "model '%s' runs on %s: its buffers live on the device", m->name,
                             m->device->name);
    if (!mem || bytes < need)
        return nrt_error_set(NRT_ERR_ARG, "model '%s' needs %zu bytes of memory at batch %lld, got %zu",
                             m->name, need, (long long)max_n, mem ? bytes : 0);
    char *p = (char *)MEM_ALIGN((uintptr_t)mem);
    memset(p, 0, need - 64);
    ctx->model = m;
    ctx->max_n = max_n;
    ctx->mem = mem;
    ctx->buf = (void **)p;
    p += MEM_ALIGN(sizeof(void *) * (size_t)(m->n_buffers ? m->n_buffers : 1));
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        ctx->buf[i] = p;
        p += MEM_ALIGN((size_t)nrt_desc_count(b->rank, b->dims, max_n) * nrt_dtype_size(b->dtype));
    }
    ctx->ws = p;
    ctx->ws_bytes = ws_size(m, max_n);
    nrt_ctx_reset(ctx, seed);
    ctx->prof = nrt_prof_open(m); /* NETC_PROFILE only: its counters are allocated */
    return NRT_OK;
}

void nrt_ctx_free(struct nrt_ctx *ctx) {
    nrt_prof_close(ctx->prof); /* NETC_PROFILE: prints the tables */
    ctx->prof = NULL;
    nrt_slices_free(ctx);
    if (ctx->mem) { /* the caller's block */
        memset(ctx, 0, sizeof *ctx);
        return;
    }
    if (ctx->dev) ctx->model->device->close(ctx);
    nrt_free(ctx->buf_off);
    if (ctx->buf)
        for (int i = 0; i < ctx->model->n_buffers; i++) nrt_free(ctx->buf[i]);
    nrt_free(ctx->buf);
    nrt_free(ctx->ws);
    memset(ctx, 0, sizeof *ctx);
}

static void ctx_vfail(struct nrt_ctx *ctx, int code, const char *fmt, va_list ap) {
    if (ctx->failed) return;
    vsnprintf(ctx->err, sizeof ctx->err, fmt, ap);
    ctx->failed = 1;
    ctx->fail_code = code;
}

void nrt_ctx_fail(struct nrt_ctx *ctx, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ctx_vfail(ctx, NRT_ERR_RANGE, fmt, ap);
    va_end(ap);
}

void nrt_ctx_fail_code(struct nrt_ctx *ctx, int code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    ctx_vfail(ctx, code, fmt, ap);
    va_end(ap);
}

/* The parameter token of the inference run on this thread (nrt_entry_run). */
static _Thread_local struct {
    const struct nrt_ctx *ctx; /* the running context (a slice's copy included) */
    uint64_t token;            /* its params_token; 0: none */
} params_run;

/* Tokens issued so far, by every context of the process. */
static _Atomic uint64_t params_issued;

void nrt_entry_run(struct nrt_ctx *ctx, const struct nrt_entry_desc *ent, int64_t n) {
    if (ent->mode != NRT_MODE_EVAL || !ctx->params_token) {
        ent->run(ctx, n);
        return;
    }
    const struct nrt_ctx *saved_ctx = params_run.ctx;
    uint64_t saved_token = params_run.token;
    params_run.ctx = ctx, params_run.token = ctx->params_token;
    ent->run(ctx, n);
    params_run.ctx = saved_ctx, params_run.token = saved_token;
}

uint64_t nrt_params_token(const void *p, size_t bytes) {
    const struct nrt_ctx *ctx = params_run.ctx;
    if (!ctx || !params_run.token) return 0;
    const struct nrt_model *m = ctx->model;
    const char *a = p;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        const char *lo = ctx->buf[i];
        if (b->kind != NRT_BUF_PARAM || a < lo) continue;
        size_t size = (size_t)nrt_desc_count(b->rank, b->dims, 1) * nrt_dtype_size(b->dtype);
        if ((size_t)(a - lo) <= size && bytes <= size - (size_t)(a - lo)) return params_run.token;
    }
    return 0;
}

/* An inference run with several threads runs whichever way measures faster
 * (pace_way): each layer split over the pool's threads (or, for a batch run
 * in slices, each thread taking whole slices), or everything on the calling
 * thread. Splitting a batch of one costs a few microseconds a layer, and on a
 * busy machine a descheduled pool thread holding a part stalls the run, so
 * which is faster depends on the run and on the machine's load. */
/* Runs of one size between two probes of the other way (to notice a change of load). */
#define PACE_PROBE 32
/* A flag of pace_way's answer: the run is not timed. */
#define PACE_UNTIMED 2

/* The median of the times t[0..8) that are set, or -1 when none are. */
static double pace_median(const float *t) {
    float v[8];
    int k = 0;
    for (int i = 0; i < 8; i++)
        if (t[i] > 0) {
            int j = k++;
            for (; j > 0 && v[j - 1] > t[i]; j--) v[j] = v[j - 1];
            v[j] = t[i];
        }
    return k ? v[k / 2] : -1;
}

/* Which way an inference run of ctx on n items goes: -1 (no choice: one
 * thread, a training step, a device), 0 (split over the pool) or 1 (serially),
 * plus PACE_UNTIMED for a run not to record. The first runs of a size
 * alternate; then the way whose recent median time is lower, with two runs
 * the other way every PACE_PROBE runs, the first untimed: it wakes the pool's
 * threads from their sleep and brings each thread's part of the weights into
 * its cache, which a lone probe paid for (so after a busy spell a split that
 * had become faster again looked slower, and the runs stayed serial).
 * NETC_PACE=split or =serial fixes the way (to time or profile one). */
static int pace_way(struct nrt_ctx *ctx, const struct nrt_entry_desc *ent, int64_t n) {
    if (ctx->dev || ent->mode != NRT_MODE_EVAL || nrt_threads_get() < 2 || nrt_threads_inside()) return -1;
    const char *force = getenv("NETC_PACE");
    if (force && (!strcmp(force, "split") || !strcmp(force, "serial"))) return force[1] == 'e';
    if (ctx->pace.n != n) memset(&ctx->pace, 0, sizeof ctx->pace), ctx->pace.n = n;
    uint32_t r = ctx->pace.runs++;
    if (r < 16) return (int)(r & 1);
    double split = pace_median(ctx->pace.sec[0]), serial = pace_median(ctx->pace.sec[1]);
    int best = serial < split;
    return r % PACE_PROBE == 0 ? (!best) | PACE_UNTIMED : r % PACE_PROBE == 1 ? !best : best;
}

/* Records the time of a run that pace_way sent way `way`. */
static void pace_record(struct nrt_ctx *ctx, int way, double sec) {
    ctx->pace.sec[way][ctx->pace.next[way]] = (float)sec;
    ctx->pace.next[way] = (uint8_t)((ctx->pace.next[way] + 1) % 8);
}

static double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double (*nrt_pace_clock)(void) = now_sec;

int nrt_ctx_run(struct nrt_ctx *ctx, int e, int64_t n) {
    const struct nrt_entry_desc *ent = &ctx->model->entries[e];
    if (n < 1 || n > ctx->max_n)
        return nrt_error_set(NRT_ERR_ARG, "batch of %lld items outside [1, %lld]", (long long)n,
                             (long long)ctx->max_n);
    ctx->failed = 0;
    ctx->err[0] = '\0';
    /* Host models: parameters written since the last run (host_dirty) or by
     * this run (a training step) end the token; an inference run without one
     * issues a new one. */
    if (!ctx->dev) {
        if (ctx->host_dirty || ent->mode != NRT_MODE_EVAL) ctx->params_token = 0;
        ctx->host_dirty = 0;
        if (!ctx->params_token && ent->mode == NRT_MODE_EVAL) ctx->params_token = ++params_issued;
    }
    int pace = pace_way(ctx, ent, n), way = pace < 0 ? -1 : pace & 1,
        timed = pace >= 0 && !(pace & PACE_UNTIMED);
    int was = way == 1 ? nrt_threads_serial_begin() : 0;
    double t0 = timed ? nrt_pace_clock() : 0;
    if (!nrt_slices_run(ctx, e, n)) {
        if (ctx->prof) nrt_prof_begin(ctx->prof, e, n);
        nrt_entry_run(ctx, ent, n);
        if (ctx->prof) nrt_prof_end(ctx->prof);
    }
    if (way == 1) nrt_threads_serial_end(was);
    if (timed) pace_record(ctx, way, nrt_pace_clock() - t0);
    if (ctx->failed && ctx->fail_code == NRT_ERR_DEVICE)
        return nrt_error_set(NRT_ERR_DEVICE, "%s", ctx->err); /* a device error, not bad data */
    if (ctx->failed) return nrt_error_set(NRT_ERR_RANGE, "%s: %s", ent->name, ctx->err);
    return NRT_OK;
}

/* ------------------------------------------------------------ checkpoints -- */

static enum nrt_dtype ckpt_dims(const struct nrt_buffer_desc *b, int64_t *dims) {
    for (int d = 0; d < b->rank; d++) dims[d] = b->dims[d] == NRT_DIM_N ? 1 : b->dims[d];
    return b->dtype;
}

int nrt_ckpt_save(const struct nrt_ctx *ctx, const char *path) {
    const struct nrt_model *m = ctx->model;
    struct nrt_st_writer w;
    nrt_st_writer_init(&w);
    char hash[17], num[32];
    nrt_model_hash(m, hash);
    int rc = nrt_st_writer_meta_set(&w, "netc.model", m->name);
    if (!rc) rc = nrt_st_writer_meta_set(&w, "netc.layout", hash);
    snprintf(num, sizeof num, "%llu", (unsigned long long)ctx->step);
    if (!rc) rc = nrt_st_writer_meta_set(&w, "netc.step", num);
    snprintf(num, sizeof num, "%lld", (long long)ctx->epoch);
    if (!rc) rc = nrt_st_writer_meta_set(&w, "netc.epoch", num);
    if (!rc) rc = nrt_st_writer_meta_set(&w, "netc.version", m->netc_version);
    if (!rc && ctx->vocab && ctx->vocab->size) {
        char *voc = NULL;
        rc = nrt_vocab_meta_format(ctx->vocab, &voc);
        if (!rc) rc = nrt_st_writer_meta_set(&w, NRT_VOCAB_META_KEY, voc);
        nrt_free(voc);
    }
    for (int i = 0; i < m->n_buffers && !rc; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind == NRT_BUF_INPUT) continue;
        int64_t dims[NRT_MAX_RANK];
        enum nrt_dtype dt = ckpt_dims(b, dims);
        rc = nrt_st_writer_add(&w, b->name, dt, b->rank, dims, ctx->buf[i]);
    }
    if (!rc) rc = nrt_st_writer_save(&w, path);
    nrt_st_writer_free(&w);
    return rc;
}

int nrt_ckpt_load(struct nrt_ctx *ctx, const char *path) {
    const struct nrt_model *m = ctx->model;
    struct nrt_st_reader r;
    int rc = nrt_st_reader_init(&r, path);
    if (rc) return rc;
    char hash[17];
    nrt_model_hash(m, hash);
    const char *name = nrt_st_reader_meta_get(&r, "netc.model");
    const char *layout = nrt_st_reader_meta_get(&r, "netc.layout");
    if (!name || !layout) {
        rc = nrt_error_set(NRT_ERR_FORMAT, "%s: not a netc checkpoint (no netc.model/netc.layout metadata)",
                           path);
    } else if (strcmp(name, m->name) != 0) {
        rc = nrt_error_set(NRT_ERR_FORMAT, "%s: checkpoint of model '%s', not '%s'", path, name, m->name);
    } else if (strcmp(layout, hash) != 0) {
        rc = nrt_error_set(NRT_ERR_FORMAT,
                           "%s: checkpoint of a different version of model '%s' (parameter layout %s, "
                           "expected %s)",
                           path, name, layout, hash);
    }
    /* Check every tensor before copying any, so a failure leaves ctx as it was. */
    for (int i = 0; i < m->n_buffers && !rc; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind == NRT_BUF_INPUT) continue;
        const struct nrt_st_tensor *t = nrt_st_reader_find(&r, b->name);
        int64_t dims[NRT_MAX_RANK];
        enum nrt_dtype dt = ckpt_dims(b, dims);
        if (!t) {
            rc = nrt_error_set(NRT_ERR_FORMAT, "%s: no tensor '%s'", path, b->name);
            break;
        }
        int same = t->dtype == dt && t->rank == b->rank;
        for (int d = 0; same && d < b->rank; d++) same = t->dims[d] == dims[d];
        if (!same) {
            char want[96], got[96];
            nrt_shape_format(want, sizeof want, dt, b->rank, dims);
            nrt_shape_format(got, sizeof got, t->dtype, t->rank, t->dims);
            rc =
                nrt_error_set(NRT_ERR_FORMAT, "%s: tensor '%s' is %s, expected %s", path, b->name, got, want);
        }
    }
    for (int i = 0; i < m->n_buffers && !rc; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind == NRT_BUF_INPUT) continue;
        int64_t dims[NRT_MAX_RANK];
        enum nrt_dtype dt = ckpt_dims(b, dims);
        rc = nrt_st_reader_copy(&r, b->name, dt, b->rank, dims, ctx->buf[i]);
    }
    if (!rc) {
        const char *step = nrt_st_reader_meta_get(&r, "netc.step");
        const char *epoch = nrt_st_reader_meta_get(&r, "netc.epoch");
        ctx->step = step ? strtoull(step, NULL, 10) : 0;
        ctx->epoch = epoch ? strtoll(epoch, NULL, 10) : 0;
        ctx->host_dirty = 1;
        ctx->dev_dirty = 0;
    }
    nrt_st_reader_free(&r);
    return rc;
}
