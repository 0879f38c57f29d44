/* tests/unit/test_runtime_threads.c -- the thread pool (runtime/threads.c):
 * chunks cover the range exactly once and respect the grain, small ranges and
 * nested calls run serially, thread counts change between jobs, many short
 * jobs in a row (the spin/sleep hand-over), and calls from two threads at once. */
#define _POSIX_C_SOURCE 200809L /* nanosleep */

#include "runtime/netrt.h"
#include "test.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define MAXN 100000

/* What a job records: how often each index ran, the chunks and their sizes. */
struct rec {
    _Atomic int hits[MAXN];  /* runs per index */
    _Atomic int calls;       /* fn calls (chunks) */
    _Atomic int64_t min_len; /* smallest chunk */
    _Atomic int nested;      /* nested parallel_for calls that ran serially */
    int nest;                /* whether fn calls parallel_for inside itself */
};

static struct rec rec;

static void rec_reset(int nest) {
    for (int i = 0; i < MAXN; i++) atomic_store(&rec.hits[i], 0);
    atomic_store(&rec.calls, 0);
    atomic_store(&rec.min_len, INT64_MAX);
    atomic_store(&rec.nested, 0);
    rec.nest = nest;
}

static void count_inner(void *arg, int64_t lo, int64_t hi) {
    (void)arg;
    if (lo == 0 && hi == 10) atomic_fetch_add(&rec.nested, 1);
}

static void mark(void *arg, int64_t lo, int64_t hi) {
    (void)arg;
    atomic_fetch_add(&rec.calls, 1);
    int64_t len = hi - lo, m = atomic_load(&rec.min_len);
    while (len < m && !atomic_compare_exchange_weak(&rec.min_len, &m, len))
        ;
    for (int64_t i = lo; i < hi; i++) atomic_fetch_add(&rec.hits[i], 1);
    if (rec.nest) nrt_parallel_for(10, 1, count_inner, NULL);
}

/* Every index in [0, n) ran exactly once. */
static int covered_once(int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (atomic_load(&rec.hits[i]) != 1) return 0;
    for (int64_t i = n; i < MAXN; i++)
        if (atomic_load(&rec.hits[i]) != 0) return 0;
    return 1;
}

static void test_cover(void) {
    static const int64_t ns[] = {1, 2, 3, 7, 64, 1000, 99991, MAXN};
    static const int64_t grains[] = {1, 2, 5, 100, 50000};
    for (int t = 1; t <= 4; t++) {
        nrt_threads_set(t);
        ASSERT(t, nrt_threads_get());
        for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
            for (size_t b = 0; b < sizeof grains / sizeof *grains; b++) {
                rec_reset(0);
                nrt_parallel_for(ns[a], grains[b], mark, NULL);
                CHECK(covered_once(ns[a]));
                int64_t chunks = ns[a] / grains[b] < t ? ns[a] / grains[b] : t;
                if (chunks < 2) /* serial: one call over everything */
                    ASSERT(1, atomic_load(&rec.calls));
                else {
                    ASSERT(chunks, atomic_load(&rec.calls));
                    CHECK(atomic_load(&rec.min_len) >= grains[b]);
                }
            }
    }
}

static void test_serial_cases(void) {
    nrt_threads_set(2);
    rec_reset(0);
    nrt_parallel_for(0, 1, mark, NULL); /* empty: no call */
    ASSERT(0, atomic_load(&rec.calls));
    nrt_parallel_for(-5, 1, mark, NULL);
    ASSERT(0, atomic_load(&rec.calls));
    rec_reset(0);
    nrt_parallel_for(100, 0, mark, NULL); /* grain 0 acts as 1 */
    CHECK(covered_once(100));
    rec_reset(0);
    nrt_parallel_for(19, 10, mark, NULL); /* n < 2*grain: serial */
    ASSERT(1, atomic_load(&rec.calls));
    CHECK(covered_once(19));
    /* Nested calls run serially inside each chunk. */
    rec_reset(1);
    nrt_parallel_for(1000, 1, mark, NULL);
    CHECK(covered_once(1000));
    ASSERT(atomic_load(&rec.calls), atomic_load(&rec.nested));
}

/* Sums of many short jobs, with pauses long enough for the workers to fall
 * asleep between some of them. */
static double sums[4];
static void add_sums(void *arg, int64_t lo, int64_t hi) {
    double *s = arg;
    for (int64_t i = lo; i < hi; i++) s[i] += (double)i;
}

static void test_many_jobs(void) {
    nrt_threads_set(0);
    CHECK(nrt_threads_get() >= 1);
    nrt_threads_set(3);
    memset(sums, 0, sizeof sums);
    for (int r = 0; r < 20000; r++) {
        nrt_parallel_for(4, 1, add_sums, sums);
        if (r % 5000 == 0) /* longer than the spin: workers sleep */
            nanosleep(&(struct timespec){.tv_nsec = 2000000}, NULL);
    }
    for (int i = 0; i < 4; i++) ASSERT_NEAR(20000.0 * i, sums[i], 0);
}

/* Two threads calling at once: one gets the pool, the other runs serially;
 * both cover their own ranges. */
struct caller {
    double v[1000]; /* per-index counts of this caller's job */
};

static void add_one(void *arg, int64_t lo, int64_t hi) {
    struct caller *c = arg;
    for (int64_t i = lo; i < hi; i++) c->v[i] += 1;
}

static void *caller_main(void *arg) {
    for (int r = 0; r < 2000; r++) nrt_parallel_for(1000, 10, add_one, arg);
    return NULL;
}

static void test_two_callers(void) {
    nrt_threads_set(2);
    static struct caller c[2];
    pthread_t t;
    CHECK(pthread_create(&t, NULL, caller_main, &c[1]) == 0);
    caller_main(&c[0]);
    pthread_join(t, NULL);
    int ok = 1;
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 1000; i++) ok &= c[k].v[i] == 2000;
    CHECK(ok);
}

int main(void) {
    test_cover();
    test_serial_cases();
    test_many_jobs();
    test_two_callers();
    nrt_threads_set(1); /* stops the workers */
    TEST_DONE();
}
