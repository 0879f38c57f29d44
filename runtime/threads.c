/* runtime/threads.c -- the runtime's persistent thread pool. nrt_parallel_for
 * cuts [0, n) into contiguous chunks that the calling thread and threads-1
 * workers take from one shared ticket. Workers start on first use, spin for a
 * short while after each job (a training step issues jobs back to back) and
 * then sleep on a condition variable until the next one. */
#include "runtime/internal.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

#define MAX_THREADS 256 /* most threads a pool runs, the caller included */
#define SPIN_NS 200000  /* how long an idle thread spins before sleeping */

typedef void (*range_fn)(void *arg, int64_t lo, int64_t hi);

/* The one pool. The job fields are atomics because a late worker may read them
 * while the next job is being published; a chunk only runs when the ticket
 * still carries that job's generation, which proves the fields it read belong
 * to it (the caller rewrites them only after every chunk has finished). */
static struct {
    pthread_mutex_t lock;       /* guards the two condition variables' waits */
    pthread_cond_t wake;        /* idle workers sleep here */
    pthread_cond_t finished;    /* the caller sleeps here for the last chunk */
    pthread_t tid[MAX_THREADS]; /* the workers */
    int nworkers;               /* workers running */
    int threads;                /* threads wanted, the caller included; 0: not set */
    _Atomic int busy;           /* a job is running (a second caller runs serially) */
    _Atomic int stop;           /* tells the workers to exit */
    _Atomic int sleepers;       /* workers waiting on `wake` */
    _Atomic int ready;          /* workers that have finished starting */
    _Atomic int caller_waits;   /* the caller waits on `finished` */
    _Atomic uint32_t gen;       /* generation of the current job; bumped to publish one */
    _Atomic uint64_t ticket;    /* gen << 32 | index of the next chunk to take */
    _Atomic int64_t done;       /* chunks of the current job finished */
    _Atomic(range_fn) fn;       /* the job: fn(arg, lo, hi) per chunk */
    _Atomic(void *) arg;        /* its argument */
    _Atomic int64_t n;          /* its range [0, n) */
    _Atomic int64_t nchunks;    /* the number of chunks it is cut into */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER,
          .wake = PTHREAD_COND_INITIALIZER,
          .finished = PTHREAD_COND_INITIALIZER};

/* Set in workers and in a caller while its job runs: nested calls run serially. */
static _Thread_local int in_pool;

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Takes and runs chunks of job generation gen until none are left. */
static void run_chunks(uint32_t gen, range_fn fn, void *arg, int64_t n, int64_t nchunks) {
    for (;;) {
        uint64_t t = atomic_load(&pool.ticket);
        int64_t i = (int64_t)(uint32_t)t;
        if ((uint32_t)(t >> 32) != gen || i >= nchunks) return;
        if (!atomic_compare_exchange_weak(&pool.ticket, &t, t + 1)) continue;
        fn(arg, n * i / nchunks, n * (i + 1) / nchunks);
        if (atomic_fetch_add(&pool.done, 1) + 1 == nchunks && atomic_load(&pool.caller_waits)) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_signal(&pool.finished);
            pthread_mutex_unlock(&pool.lock);
        }
    }
}

/* Waits until the generation differs from seen or the pool stops: spins for
 * SPIN_NS, then sleeps. Returns the new generation. */
static uint32_t wait_job(uint32_t seen) {
    int64_t start = now_ns();
    for (int spins = 0;; spins++) {
        uint32_t g = atomic_load(&pool.gen);
        if (g != seen || atomic_load(&pool.stop)) return g;
        cpu_relax();
        if ((spins & 63) == 63 && now_ns() - start > SPIN_NS) break;
    }
    pthread_mutex_lock(&pool.lock);
    atomic_fetch_add(&pool.sleepers, 1);
    while (atomic_load(&pool.gen) == seen && !atomic_load(&pool.stop))
        pthread_cond_wait(&pool.wake, &pool.lock);
    atomic_fetch_sub(&pool.sleepers, 1);
    pthread_mutex_unlock(&pool.lock);
    return atomic_load(&pool.gen);
}

static void *worker_main(void *unused) {
    (void)unused;
    in_pool = 1;
    nrt_sgemm_thread_ready();
    uint32_t seen = atomic_load(&pool.gen);
    atomic_fetch_add(&pool.ready, 1);
    for (;;) {
        seen = wait_job(seen);
        if (atomic_load(&pool.stop)) return NULL;
        run_chunks(seen, atomic_load(&pool.fn), atomic_load(&pool.arg), atomic_load(&pool.n),
                   atomic_load(&pool.nchunks));
    }
}

/* The number of online CPUs, at least 1 and at most MAX_THREADS. */
static int cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > MAX_THREADS ? MAX_THREADS : (int)n;
}

/* Stops and joins the workers (none may be running a job). */
static void workers_stop(void) {
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, 1);
    pthread_cond_broadcast(&pool.wake);
    pthread_mutex_unlock(&pool.lock);
    for (int i = 0; i < pool.nworkers; i++) pthread_join(pool.tid[i], NULL);
    pool.nworkers = 0;
    atomic_store(&pool.ready, 0);
    atomic_store(&pool.stop, 0);
}

/* Starts the workers the thread count asks for (fewer if the system refuses)
 * and waits until each has set itself up: a worker's start-up (its GEMM
 * packing buffer, its first look at the generation) then never overlaps the
 * job that started it or a later one. */
static void workers_start(void) {
    while (pool.nworkers < nrt_threads_get() - 1 &&
           pthread_create(&pool.tid[pool.nworkers], NULL, worker_main, NULL) == 0)
        pool.nworkers++;
    while (atomic_load(&pool.ready) < pool.nworkers) sched_yield();
}

void nrt_threads_set(int threads) {
    int t = threads <= 0 ? cpu_count() : threads > MAX_THREADS ? MAX_THREADS : threads;
    if (t == pool.threads) return;
    if (pool.nworkers > t - 1) workers_stop();
    pool.threads = t;
}

int nrt_threads_get(void) {
    if (pool.threads == 0) pool.threads = cpu_count();
    return pool.threads;
}

int nrt_threads_inside(void) { return in_pool; }

int nrt_threads_serial_begin(void) {
    int was = in_pool;
    in_pool = 1;
    return was;
}

void nrt_threads_serial_end(int was) { in_pool = was; }

void nrt_parallel_for(int64_t n, int64_t grain, void (*fn)(void *arg, int64_t lo, int64_t hi), void *arg) {
    if (n <= 0) return;
    if (grain < 1) grain = 1;
    int64_t threads = nrt_threads_get(), nchunks = n / grain < threads ? n / grain : threads;
    if (nchunks < 2 || in_pool || atomic_exchange(&pool.busy, 1)) {
        fn(arg, 0, n);
        return;
    }
    in_pool = 1;
    if (pool.nworkers < threads - 1) workers_start();
    if (pool.nworkers == 0) {
        fn(arg, 0, n);
    } else {
        /* Publish: the fields, then the ticket and generation, then wake sleepers. */
        uint32_t gen = atomic_load(&pool.gen) + 1;
        atomic_store(&pool.fn, fn);
        atomic_store(&pool.arg, arg);
        atomic_store(&pool.n, n);
        atomic_store(&pool.nchunks, nchunks);
        atomic_store(&pool.done, 0);
        atomic_store(&pool.ticket, (uint64_t)gen << 32);
        atomic_store(&pool.gen, gen);
        if (atomic_load(&pool.sleepers) > 0) {
            pthread_mutex_lock(&pool.lock);
            pthread_cond_broadcast(&pool.wake);
            pthread_mutex_unlock(&pool.lock);
        }
        run_chunks(gen, fn, arg, n, nchunks);
        /* The other chunks: spin a little, then sleep until the last one signals. */
        int64_t start = now_ns();
        for (int spins = 0; atomic_load(&pool.done) < nchunks; spins++) {
            cpu_relax();
            if ((spins & 63) == 63 && now_ns() - start > SPIN_NS) {
                pthread_mutex_lock(&pool.lock);
                atomic_store(&pool.caller_waits, 1);
                while (atomic_load(&pool.done) < nchunks) pthread_cond_wait(&pool.finished, &pool.lock);
                atomic_store(&pool.caller_waits, 0);
                pthread_mutex_unlock(&pool.lock);
            }
        }
    }
    in_pool = 0;
    atomic_store(&pool.busy, 0);
}
