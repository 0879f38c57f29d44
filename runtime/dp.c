/* runtime/dp.c -- the data-parallel interface of libnetrt: the calls that code
 * generated with `netc build --mpi` makes (bucket start, wait, progress, blocking
 * reductions), dispatched to nrt_dp_layer when libnetrt_mpi.a installed one and
 * the identity of a single process otherwise; and the driver's helpers (each
 * rank's share of a global batch, rank 0's state to every rank, sums of
 * metrics, the bucket table of `info`). Only mpi.c talks to MPI. */
#include "runtime/internal.h"

#include <stdio.h>

struct nrt_dp *nrt_dp_layer;

static int multi(void) { return nrt_dp_layer && nrt_dp_layer->size > 1; }

int nrt_dp_rank(void) { return nrt_dp_layer ? nrt_dp_layer->rank : 0; }
int nrt_dp_size(void) { return nrt_dp_layer ? nrt_dp_layer->size : 1; }

/* ------------------------------------------------- called by generated code */

void nrt_dp_start(struct nrt_ctx *ctx, int bucket, float *p, int64_t count) {
    (void)ctx;
    if (multi()) nrt_dp_layer->start(bucket, p, count);
}

void nrt_dp_wait(struct nrt_ctx *ctx, int bucket) {
    (void)ctx;
    if (multi()) nrt_dp_layer->wait(bucket);
}

void nrt_dp_progress(struct nrt_ctx *ctx) {
    (void)ctx;
    if (multi()) nrt_dp_layer->progress();
}

void nrt_dp_allreduce(struct nrt_ctx *ctx, float *p, int64_t count) {
    (void)ctx;
    if (multi()) nrt_dp_layer->allreduce(p, count);
}

/* The plain sum of p over the ranks holding items (weight > 0), blocking:
 * through the layer's sum of doubles, in pieces of a fixed buffer. */
static void allsum(float *p, int64_t count) {
    double v[256];
    int held = nrt_dp_layer->weight > 0;
    for (int64_t at = 0; at < count; at += 256) {
        int k = count - at < 256 ? (int)(count - at) : 256;
        for (int i = 0; i < k; i++) v[i] = held ? (double)p[at + i] : 0.0;
        nrt_dp_layer->sum(v, k);
        for (int i = 0; i < k; i++) p[at + i] = (float)v[i];
    }
}

void nrt_dp_allsum(struct nrt_ctx *ctx, float *p, int64_t count) {
    (void)ctx;
    if (multi()) allsum(p, count);
}

/* The device values at off reduced by fn through host memory (the copies of
 * the model's device layer). */
static void cl_reduce(struct nrt_ctx *ctx, int64_t off, int64_t count, void (*fn)(float *, int64_t)) {
    static float *host; /* grows to the largest value reduced, kept */
    static int64_t host_cap;
    const struct nrt_device_ops *dev = ctx->model->device;
    if (!multi() || count <= 0 || !dev || ctx->failed) return;
    if (count > host_cap) {
        float *p = nrt_realloc(host, sizeof *host * (size_t)count);
        if (!p) {
            nrt_ctx_fail_code(ctx, NRT_ERR_DEVICE, "%s: out of memory for a %lld-value reduction", dev->name,
                              (long long)count);
            return;
        }
        host = p;
        host_cap = count;
    }
    dev->download(ctx, off, host, sizeof *host * (size_t)count);
    fn(host, count);
    dev->upload(ctx, off, host, sizeof *host * (size_t)count);
}

static void weighted(float *p, int64_t count) { nrt_dp_layer->allreduce(p, count); }

void nrt_cl_allreduce(struct nrt_ctx *ctx, int64_t off, int64_t count) {
    cl_reduce(ctx, off, count, weighted);
}
void nrt_cl_allsum(struct nrt_ctx *ctx, int64_t off, int64_t count) { cl_reduce(ctx, off, count, allsum); }

/* ------------------------------------------------------ driver's helpers */

void nrt_dp_share(int64_t total, int64_t *first, int64_t *count) {
    int k = nrt_dp_size(), r = nrt_dp_rank();
    int64_t q = total / k, rest = total % k;
    *count = q + (r < rest);
    *first = r * q + (r < rest ? r : rest);
    if (nrt_dp_layer) nrt_dp_layer->weight = total > 0 ? (double)*count / (double)total : 0;
}

void nrt_dp_sum(double *v, int n) {
    if (multi()) nrt_dp_layer->sum(v, n);
}

void nrt_dp_bcast_ctx(struct nrt_ctx *ctx) {
    if (!multi()) return;
    const struct nrt_model *m = ctx->model;
    nrt_ctx_sync(ctx);
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind != NRT_BUF_INPUT)
            nrt_dp_layer->bcast(ctx->buf[i],
                                (size_t)nrt_desc_count(b->rank, b->dims, 1) * nrt_dtype_size(b->dtype));
    }
    uint64_t se[2] = {ctx->step, (uint64_t)ctx->epoch};
    nrt_dp_layer->bcast(se, sizeof se);
    ctx->step = se[0];
    ctx->epoch = (int64_t)se[1];
    ctx->host_dirty = 1;
}

double nrt_dp_comm_seconds(void) {
    if (!multi() || !nrt_dp_layer->comm_seconds) return 0;
    double s = nrt_dp_layer->comm_seconds();
    nrt_dp_layer->sum(&s, 1);
    return s / nrt_dp_layer->size;
}

void nrt_dp_info(const struct nrt_model *m) {
    if (!nrt_dp_layer) return;
    const struct nrt_dp *d = nrt_dp_layer;
    /* The buckets of a batch: the batch function's where there is one (the
     * train loop runs it instead of the steps, whose buckets are listed too). */
    int64_t total = 0;
    int n = 0;
    for (int i = 0; i < d->n_buckets; i++)
        if (m->batch_entry < 0 || d->buckets[i].entry == m->batch_entry) total += d->buckets[i].bytes, n++;
    printf(
        "data parallel (built with --mpi; `mpirun -np K %s train`): %d gradient bucket%s, %.2f MB%s%s, each\n"
        "  reduced in place by a nonblocking allreduce as soon as the backward pass has written it:\n",
        m->name, n, n == 1 ? "" : "s", (double)total / 1e6, m->batch_entry >= 0 ? " in " : "",
        m->batch_entry >= 0 ? m->entries[m->batch_entry].name : "");
    for (int i = 0; i < d->n_buckets; i++) {
        const struct nrt_dp_bucket *b = &d->buckets[i];
        printf("  %-12s bucket %d: %9.1f KB at workspace +%lld, %d tensor%s\n", m->entries[b->entry].name,
               b->index, (double)b->bytes / 1e3, (long long)b->offset, b->tensors,
               b->tensors == 1 ? "" : "s");
    }
}
