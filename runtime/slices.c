/* runtime/slices.c -- sliced inference. An entry point whose batch items are
 * computed independently carries a slice size from the compiler (struct
 * nrt_entry_desc's slice: the items whose workspace fits in a core's cache);
 * nrt_ctx_run gives a larger batch to nrt_slices_run, which runs it slice by
 * slice with each slice's inputs at their items (buffer pointers moved along)
 * and copies its outputs into buffers for the whole batch, where ctx->out[]
 * points afterwards. With several threads each pool thread takes whole slices,
 * one at a time from a shared counter, in a context of its own (the shared buffers, a workspace of its own,
 * the kernels inside run on that thread alone), so no layer waits on another thread; under NETC_PROFILE the
 * slices run in turn on the calling thread, whose kernels split over the pool as usual. */
#include "runtime/internal.h"

#include <stdatomic.h>

struct nrt_slices {
    void **outs;          /* per entry point, NRT_MAX_OUTPUTS apart: its
                             outputs gathered for max_n items */
    struct nrt_ctx *tctx; /* per pool thread: a context (n_threads) */
    void **tbuf;          /* their buffer tables, n_buffers each */
    char **tws;           /* their workspaces */
    int n_threads;        /* contexts set up */
    size_t tws_bytes;     /* bytes of each workspace */
};

/* Bytes per batch item of an output or buffer whose batch dim comes first, else 0. */
static size_t item_bytes(enum nrt_dtype t, int rank, const int64_t *dims) {
    if (rank < 1 || dims[0] != NRT_DIM_N) return 0;
    return (size_t)nrt_desc_count(rank - 1, dims + 1, 1) * nrt_dtype_size(t);
}

/* Whether entry d of a context for max_n items runs in slices. */
static int sliced(const struct nrt_entry_desc *d, int64_t max_n) {
    return d->slice > 0 && d->slice < max_n && d->n_inputs <= NRT_MAX_OUTPUTS;
}

int nrt_slices_alloc(struct nrt_ctx *ctx) {
    const struct nrt_model *m = ctx->model;
    int any = 0;
    for (int e = 0; e < m->n_entries; e++) any |= sliced(&m->entries[e], ctx->max_n);
    if (!any) return 0;
    struct nrt_slices *sl = nrt_alloc_zero(sizeof *sl, 0);
    if (!sl) return 1;
    ctx->slices = sl;
    sl->outs = nrt_alloc_zero(sizeof *sl->outs * (size_t)m->n_entries * NRT_MAX_OUTPUTS, 0);
    if (!sl->outs) return 1;
    for (int e = 0; e < m->n_entries; e++) {
        const struct nrt_entry_desc *d = &m->entries[e];
        if (!sliced(d, ctx->max_n)) continue;
        for (int o = 0; o < d->n_outputs; o++) {
            const struct nrt_output_desc *od = &d->outputs[o];
            size_t bytes = item_bytes(od->dtype, od->rank, od->dims) * (size_t)ctx->max_n;
            void **slot = &sl->outs[e * NRT_MAX_OUTPUTS + o];
            if (!bytes || !(*slot = nrt_alloc(bytes, 0))) return 1;
        }
    }
    return 0;
}

static void threads_free(struct nrt_slices *sl) {
    for (int i = 0; i < sl->n_threads; i++) nrt_free(sl->tws[i]);
    nrt_free(sl->tctx), nrt_free(sl->tbuf), nrt_free(sl->tws);
    sl->tctx = NULL, sl->tbuf = NULL, sl->tws = NULL, sl->n_threads = 0;
}

void nrt_slices_free(struct nrt_ctx *ctx) {
    struct nrt_slices *sl = ctx->slices;
    if (!sl) return;
    for (int e = 0; sl->outs && e < ctx->model->n_entries; e++)
        for (int o = 0; o < NRT_MAX_OUTPUTS; o++) nrt_free(sl->outs[e * NRT_MAX_OUTPUTS + o]);
    nrt_free(sl->outs);
    threads_free(sl);
    nrt_free(sl);
    ctx->slices = NULL;
}

/* The per-thread contexts for `threads` pool threads (set up on the first
 * parallel run); 0 when out of memory (then the slices run in turn). */
static int threads_setup(struct nrt_ctx *ctx, int threads) {
    struct nrt_slices *sl = ctx->slices;
    if (sl->n_threads >= threads) return 1;
    threads_free(sl);
    const struct nrt_model *m = ctx->model;
    size_t ws = 0;
    for (int e = 0; e < m->n_entries; e++) {
        const struct nrt_entry_desc *d = &m->entries[e];
        size_t need = d->ws_fixed + d->ws_per_n * (size_t)d->slice;
        if (sliced(d, ctx->max_n) && need > ws) ws = need;
    }
    sl->tctx = nrt_alloc_zero(sizeof *sl->tctx * (size_t)threads, 0);
    sl->tbuf =
        nrt_alloc_zero(sizeof *sl->tbuf * (size_t)threads * (size_t)(m->n_buffers ? m->n_buffers : 1), 0);
    sl->tws = nrt_alloc_zero(sizeof *sl->tws * (size_t)threads, 0);
    if (!sl->tctx || !sl->tbuf || !sl->tws) {
        threads_free(sl);
        return 0;
    }
    for (; sl->n_threads < threads; sl->n_threads++)
        if (!(sl->tws[sl->n_threads] = nrt_alloc_zero(ws ? ws : 1, 0))) {
            threads_free(sl);
            return 0;
        }
    sl->tws_bytes = ws;
    return 1;
}

/* One run of entry e over a batch of n in slices of s items. */
struct slice_job {
    struct nrt_ctx *ctx;  /* the caller's context */
    int e;                /* the entry point */
    int64_t n, s;         /* the batch, the slice */
    _Atomic int next;     /* the next per-thread context to hand out */
    _Atomic int failed;   /* a slice failed (its message is in ctx) */
    _Atomic int64_t take; /* the next slice a pool thread takes */
};

/* Slices [lo, hi) of the job on context t; base[q]: where the entry's input
 * q holds the whole batch. */
static void run_range(struct slice_job *j, struct nrt_ctx *t, void *const *base, int64_t lo, int64_t hi) {
    struct nrt_ctx *ctx = j->ctx;
    const struct nrt_model *m = ctx->model;
    const struct nrt_entry_desc *ent = &m->entries[j->e];
    void **gathered = &ctx->slices->outs[j->e * NRT_MAX_OUTPUTS];
    for (int64_t i = lo; i < hi && !atomic_load(&j->failed); i++) {
        int64_t b0 = i * j->s, k = j->n - b0 < j->s ? j->n - b0 : j->s;
        for (int q = 0; q < ent->n_inputs; q++) {
            int bi = ent->inputs[q];
            const struct nrt_buffer_desc *b = &m->buffers[bi];
            t->buf[bi] = (char *)base[q] + (size_t)b0 * item_bytes(b->dtype, b->rank, b->dims);
        }
        if (t->prof) nrt_prof_begin(t->prof, j->e, k);
        nrt_entry_run(t, ent, k);
        if (t->prof) nrt_prof_end(t->prof);
        if (t->failed) {
            if (!atomic_exchange(&j->failed, 1) && t != ctx) {
                memcpy(ctx->err, t->err, sizeof ctx->err);
                ctx->fail_code = t->fail_code;
                ctx->failed = 1;
            }
            return;
        }
        for (int o = 0; o < ent->n_outputs; o++) {
            const struct nrt_output_desc *od = &ent->outputs[o];
            size_t per = item_bytes(od->dtype, od->rank, od->dims);
            memcpy((char *)gathered[o] + (size_t)b0 * per, t->out[o], per * (size_t)k);
        }
    }
}

/* A pool thread's share: a context of its own over the caller's buffers. */
static void slice_tasks(void *arg, int64_t lo, int64_t hi) {
    struct slice_job *j = arg;
    struct nrt_ctx *ctx = j->ctx;
    struct nrt_slices *sl = ctx->slices;
    const struct nrt_entry_desc *ent = &ctx->model->entries[j->e];
    int k = atomic_fetch_add(&j->next, 1);
    int nb = ctx->model->n_buffers;
    void *base[NRT_MAX_OUTPUTS];
    for (int q = 0; q < ent->n_inputs; q++) base[q] = ctx->buf[ent->inputs[q]];
    struct nrt_ctx *t = &sl->tctx[k];
    memcpy(t, ctx, sizeof *t);
    t->buf = &sl->tbuf[(size_t)k * (size_t)(nb ? nb : 1)];
    memcpy(t->buf, ctx->buf, sizeof *t->buf * (size_t)nb);
    t->ws = sl->tws[k], t->ws_bytes = sl->tws_bytes;
    t->max_n = j->s; /* the slot layout of a workspace for one slice */
    t->prof = NULL, t->slices = NULL, t->mem = NULL;
    t->failed = 0, t->err[0] = '\0';
    /* The slices one at a time from the job's counter, not the chunk's own
     * range [lo, hi): a pool thread the system deschedules (a busy machine)
     * holds up one slice, not its share of the batch. */
    (void)lo, (void)hi;
    int64_t count = (j->n + j->s - 1) / j->s;
    for (int64_t i; (i = atomic_fetch_add(&j->take, 1)) < count;) run_range(j, t, base, i, i + 1);
}

int nrt_slices_run(struct nrt_ctx *ctx, int e, int64_t n) {
    const struct nrt_entry_desc *ent = &ctx->model->entries[e];
    struct nrt_slices *sl = ctx->slices;
    if (!sl || !sliced(ent, ctx->max_n) || n <= ent->slice) return 0;
    int threads = nrt_threads_get();
    struct slice_job j = {ctx, e, n, ent->slice, 0, 0, 0};
    int64_t count = (n + j.s - 1) / j.s;
    if (threads >= 2 && count >= 2 && !ctx->prof && !nrt_threads_inside() && threads_setup(ctx, threads)) {
        nrt_parallel_for(count, 1, slice_tasks, &j);
    } else { /* in turn, on ctx itself: its buffer pointers moved and put back */
        void *saved[NRT_MAX_OUTPUTS];
        for (int q = 0; q < ent->n_inputs; q++) saved[q] = ctx->buf[ent->inputs[q]];
        run_range(&j, ctx, saved, 0, count);
        for (int q = 0; q < ent->n_inputs; q++) ctx->buf[ent->inputs[q]] = saved[q];
    }
    for (int o = 0; o < ent->n_outputs; o++) ctx->out[o] = sl->outs[e * NRT_MAX_OUTPUTS + o];
    return 1;
}
