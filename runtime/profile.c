/* runtime/profile.c -- NETC_PROFILE=1: per-kernel time of a compiled model.
 * nrt_ctx_run brackets each run of an entry point (nrt_prof_begin/end); the
 * generated entry marks where each unit of its code starts (NRT_PROF_MARK: a
 * kernel or node call, or a node's code inline), so the time between two marks
 * is the earlier unit's. At nrt_ctx_free the table of each entry point that
 * ran goes to stderr: units sorted by time, with their share of the entry's
 * time (the rest, code between the units, on a row of its own), calls, the
 * fastest call, and the GFLOP/s and GB/s that the descriptor's per-unit FLOPs
 * and bytes give. NETC_PROFILE=cpu times by the calling thread's CPU clock
 * instead of the wall clock: at --threads 1, time other processes take from
 * the core is not counted (a shared, busy machine). */
#include "runtime/internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* The counters of one unit. */
struct prof_row {
    double sec;    /* time inside it */
    int64_t calls; /* times it started */
    double items;  /* the batch sizes of those calls, summed */
    double best;   /* the fastest call (robust to a busy machine), or 0 */
};

/* The counters of one entry point. */
struct prof_entry {
    double sec;            /* time inside its runs */
    int64_t calls;         /* runs */
    double items;          /* batch items over all runs */
    struct prof_row *rows; /* per unit (n_prof of them) */
};

struct nrt_prof {
    const struct nrt_model *m; /* the model */
    struct prof_entry *entry;  /* per entry point */
    int cur_entry;             /* the entry running, or -1 */
    int cur;                   /* the unit running, or -1 */
    int64_t n;                 /* the batch of the run */
    double t0;                 /* when the run started */
    double t;                  /* when the unit running started */
};

/* The clock of the table: CLOCK_MONOTONIC, or CLOCK_THREAD_CPUTIME_ID under
 * NETC_PROFILE=cpu (set once, by nrt_prof_open). */
static clockid_t prof_clock = CLOCK_MONOTONIC;

static double now(void) {
    struct timespec ts;
    clock_gettime(prof_clock, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

struct nrt_prof *nrt_prof_open(const struct nrt_model *m) {
    const char *v = getenv("NETC_PROFILE");
    if (!v || !*v || strcmp(v, "0") == 0) return NULL;
    if (strcmp(v, "cpu") == 0) prof_clock = CLOCK_THREAD_CPUTIME_ID;
    struct nrt_prof *p = nrt_alloc_zero(sizeof *p, 0);
    if (!p) return NULL;
    p->m = m;
    p->cur_entry = p->cur = -1;
    p->entry = nrt_alloc_zero(sizeof *p->entry * (size_t)(m->n_entries ? m->n_entries : 1), 0);
    for (int e = 0; p->entry && e < m->n_entries; e++) {
        int units = m->entries[e].n_prof;
        p->entry[e].rows = nrt_alloc_zero(sizeof *p->entry[e].rows * (size_t)(units ? units : 1), 0);
        if (!p->entry[e].rows) {
            nrt_prof_close(p); /* prints nothing: nothing ran */
            return NULL;
        }
    }
    if (!p->entry) {
        nrt_free(p);
        return NULL;
    }
    return p;
}

void nrt_prof_begin(struct nrt_prof *p, int e, int64_t n) {
    p->cur_entry = e;
    p->cur = -1;
    p->n = n;
    p->t0 = p->t = now();
}

/* Closes the unit running at time t. */
static void close_unit(struct nrt_prof *p, double t) {
    if (p->cur >= 0) {
        struct prof_row *r = &p->entry[p->cur_entry].rows[p->cur];
        r->sec += t - p->t;
        if (r->best == 0 || t - p->t < r->best) r->best = t - p->t;
    }
    p->cur = -1;
}

void nrt_prof_end(struct nrt_prof *p) {
    if (p->cur_entry < 0) return;
    double t = now();
    close_unit(p, t);
    struct prof_entry *e = &p->entry[p->cur_entry];
    e->sec += t - p->t0;
    e->calls++;
    e->items += (double)p->n;
    p->cur_entry = -1;
}

void nrt_prof_mark(struct nrt_ctx *ctx, int u) {
    struct nrt_prof *p = ctx->prof;
    if (p->cur_entry < 0) return; /* an entry called outside nrt_ctx_run */
    double t = now();
    close_unit(p, t);
    if (u < 0 || u >= p->m->entries[p->cur_entry].n_prof) return;
    struct prof_row *r = &p->entry[p->cur_entry].rows[u];
    r->calls++;
    r->items += (double)p->n;
    p->cur = u;
    p->t = t;
}

/* Sorting units by time, longest first. */
static const struct prof_row *sort_rows;
static int by_time(const void *a, const void *b) {
    double x = sort_rows[*(const int *)a].sec, y = sort_rows[*(const int *)b].sec;
    return x < y ? 1 : x > y ? -1 : *(const int *)a - *(const int *)b;
}

/* "12.34" for a rate, "-" when there is nothing to divide. */
static const char *rate(double amount, double sec, char *buf, size_t len) {
    if (amount <= 0 || sec <= 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%.2f", amount / sec * 1e-9);
    return buf;
}

static void print_entry(const struct nrt_prof *p, int e) {
    const struct nrt_entry_desc *d = &p->m->entries[e];
    const struct prof_entry *pe = &p->entry[e];
    fprintf(stderr, "netc profile: %s, entry point %s: %lld runs, %.0f items, %.3f ms, %.4f ms per run\n",
            p->m->name, d->name, (long long)pe->calls, pe->items, pe->sec * 1e3,
            pe->sec * 1e3 / (double)pe->calls);
    if (!d->n_prof) {
        fprintf(stderr, "  the %s target marks no units: only the entry point's total is timed\n",
                p->m->target ? p->m->target : "model's");
        return;
    }
    int *order = nrt_alloc(sizeof *order * (size_t)d->n_prof, 0);
    if (!order) return;
    for (int u = 0; u < d->n_prof; u++) order[u] = u;
    sort_rows = pe->rows;
    qsort(order, (size_t)d->n_prof, sizeof *order, by_time);
    fprintf(stderr, "  %10s %7s %8s %9s %9s %8s  %-22s %s\n", "time(ms)", "share", "calls", "best(us)",
            "GFLOP/s", "GB/s", "function", "ops (layer)");
    double units = 0;
    for (int i = 0; i < d->n_prof; i++) {
        const struct nrt_prof_desc *u = &d->prof[order[i]];
        const struct prof_row *r = &pe->rows[order[i]];
        char g[32], b[32];
        units += r->sec;
        if (!r->calls) continue;
        double flops = u->flops * (double)r->calls + u->flops_n * r->items;
        double bytes = u->bytes * (double)r->calls + u->bytes_n * r->items;
        fprintf(stderr, "  %10.3f %6.2f%% %8lld %9.2f %9s %8s  %-22s %s%s%s%s\n", r->sec * 1e3,
                pe->sec > 0 ? 100 * r->sec / pe->sec : 0.0, (long long)r->calls, r->best * 1e6,
                rate(flops, r->sec, g, sizeof g), rate(bytes, r->sec, b, sizeof b), u->fn, u->ops,
                *u->layer ? " (" : "", u->layer, *u->layer ? ")" : "");
    }
    double rest = pe->sec - units;
    fprintf(stderr, "  %10.3f %6.2f%% %8lld %9s %9s %8s  %-22s %s\n", rest * 1e3,
            pe->sec > 0 ? 100 * rest / pe->sec : 0.0, (long long)pe->calls, "-", "-", "-", "(entry)",
            "the entry point's own code between the units");
    nrt_free(order);
}

void nrt_prof_close(struct nrt_prof *p) {
    if (!p) return;
    fflush(stdout); /* the program's own lines first */
    for (int e = 0; p->entry && e < p->m->n_entries; e++)
        if (p->entry[e].calls) print_entry(p, e);
    for (int e = 0; p->entry && e < p->m->n_entries; e++) nrt_free(p->entry[e].rows);
    nrt_free(p->entry);
    nrt_free(p);
}
