/* bench/bench_clock.h -- the micro-benchmarks' clock (bench/attn.c,
 * bench/kernels.c): on one thread the calling thread's CPU time (steadier on a
 * busy machine), else wall time; and a comparison for qsort'ing latencies. */
#ifndef NETC_BENCH_CLOCK_H
#define NETC_BENCH_CLOCK_H
#include <time.h>

static int cpu_clock; /* set by main: nrt_threads_get() == 1 */

static double now(void) {
    struct timespec ts;
    clock_gettime(cpu_clock ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}
#endif
