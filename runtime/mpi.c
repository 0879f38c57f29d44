/* runtime/mpi.c -- libnetrt_mpi.a, the only file that talks to MPI: the
 * nrt_dp_layer of a program built with `netc build --mpi` (gradient buckets
 * summed in place by nonblocking MPI_Iallreduce, tested between kernels so that
 * Open MPI progresses them; blocking reductions; broadcasts from rank 0) and
 * nrt_mpi_main, which starts MPI around nrt_main (on every rank for train and
 * eval, on rank 0 alone for the other commands) and ends the whole job with
 * MPI_Abort when a rank's command fails, so that no rank waits forever. Every
 * reduction is a sum of values each rank has scaled by its weight (its share of
 * the step's items): the mean gradient of the global batch. */
#include "runtime/internal.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static MPI_Request *reqs; /* per bucket index: its reduction in flight, or MPI_REQUEST_NULL */
static int n_reqs;
static double comm_s; /* seconds waited in reductions since the last comm_seconds() */

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void scale(float *p, int64_t count) {
    float w = (float)nrt_dp_layer->weight;
    if (w != 1.0f)
        for (int64_t i = 0; i < count; i++) p[i] *= w;
}

/* MPI counts are ints: reduce in pieces of at most 2^30 values. */
#define PIECE ((int64_t)1 << 30)

static void mpi_start(int b, float *p, int64_t count) {
    if (b < 0 || b >= n_reqs || count > PIECE) { /* not a bucket of the table: blocking */
        nrt_dp_layer->allreduce(p, count);
        return;
    }
    scale(p, count);
    MPI_Iallreduce(MPI_IN_PLACE, p, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &reqs[b]);
}

static void mpi_wait(int b) {
    if (b < 0 || b >= n_reqs || reqs[b] == MPI_REQUEST_NULL) return;
    double t = now();
    MPI_Wait(&reqs[b], MPI_STATUS_IGNORE);
    comm_s += now() - t;
}

static void mpi_progress(void) {
    for (int b = 0; b < n_reqs; b++)
        if (reqs[b] != MPI_REQUEST_NULL) {
            int done = 0;
            MPI_Test(&reqs[b], &done, MPI_STATUS_IGNORE);
        }
}

static void mpi_allreduce(float *p, int64_t count) {
    double t = now();
    scale(p, count);
    for (int64_t at = 0; at < count; at += PIECE) {
        int64_t k = count - at < PIECE ? count - at : PIECE;
        MPI_Allreduce(MPI_IN_PLACE, p + at, (int)k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    comm_s += now() - t;
}

static void mpi_sum(double *v, int n) {
    MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

static void mpi_bcast(void *p, size_t bytes) {
    for (size_t at = 0; at < bytes; at += (size_t)PIECE)
        MPI_Bcast((char *)p + at, (int)(bytes - at < (size_t)PIECE ? bytes - at : (size_t)PIECE), MPI_BYTE, 0,
                  MPI_COMM_WORLD);
}

static void mpi_abort(int status) {
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
}

static double mpi_comm_seconds(void) {
    double s = comm_s;
    comm_s = 0;
    return s;
}

static struct nrt_dp layer = {
    .weight = 1,
    .start = mpi_start,
    .wait = mpi_wait,
    .progress = mpi_progress,
    .allreduce = mpi_allreduce,
    .sum = mpi_sum,
    .bcast = mpi_bcast,
    .abort = mpi_abort,
    .comm_seconds = mpi_comm_seconds,
};

/* Entry l mod count of a comma-separated list, into buf. */
static char *pick_entry(const char *v, int l, char *buf, size_t len) {
    int n = 1;
    for (const char *p = v; *p; p++) n += *p == ',';
    for (int k = l % n; k > 0; k--) v = strchr(v, ',') + 1;
    snprintf(buf, len, "%.*s", (int)strcspn(v, ","), v);
    return buf;
}

/* `--device A,B,...` (or NETC_DEVICE=A,B,...): the process with local rank l
 * takes entry l mod count, so that the ranks on one host use different devices. */
static void device_per_rank(int argc, char **argv, int local) {
    static char pick[256], opt[272], env[256];
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--device") == 0 && i + 1 < argc && strchr(argv[i + 1], ','))
            argv[i + 1] = pick_entry(argv[i + 1], local, pick, sizeof pick);
        else if (strncmp(argv[i], "--device=", 9) == 0 && strchr(argv[i], ',')) {
            snprintf(opt, sizeof opt, "--device=%s", pick_entry(argv[i] + 9, local, pick, sizeof pick));
            argv[i] = opt;
        }
    }
    const char *e = getenv("NETC_DEVICE");
    if (e && strchr(e, ',')) setenv("NETC_DEVICE", pick_entry(e, local, env, sizeof env), 1);
}

int nrt_mpi_main(int argc, char **argv, const struct nrt_model *model, const struct nrt_dp_bucket *buckets,
                 int n_buckets) {
    nrt_blas_setup(argc, argv, 0); /* may re-execute the program: before MPI starts */
    int provided = 0;
    if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        fprintf(stderr, "%s: error: MPI_Init failed\n", argv[0]);
        return 1;
    }
    MPI_Comm local;
    MPI_Comm_rank(MPI_COMM_WORLD, &layer.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &layer.size);
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, layer.rank, MPI_INFO_NULL, &local);
    MPI_Comm_rank(local, &layer.local_rank);
    MPI_Comm_free(&local);
    layer.buckets = buckets;
    layer.n_buckets = n_buckets;
    for (int i = 0; i < n_buckets; i++)
        if (buckets[i].index + 1 > n_reqs) n_reqs = buckets[i].index + 1;
    reqs = malloc(sizeof *reqs * (size_t)(n_reqs ? n_reqs : 1));
    if (!reqs) {
        fprintf(stderr, "%s: error: out of memory\n", argv[0]);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    for (int i = 0; i < n_reqs; i++) reqs[i] = MPI_REQUEST_NULL;
    device_per_rank(argc, argv, layer.local_rank);
    nrt_dp_layer = &layer;
    /* train and eval split the data between the ranks; any other command
     * (predict, info, sample, generate) is rank 0's alone, so it prints once. */
    int split = argc > 1 && (strcmp(argv[1], "train") == 0 || strcmp(argv[1], "eval") == 0);
    int rc = split || layer.rank == 0 ? nrt_main(argc, argv, model) : 0;
    if (rc != 0 && layer.size > 1) mpi_abort(rc); /* the other ranks may be waiting in a reduction */
    MPI_Finalize();
    nrt_dp_layer = NULL;
    free(reqs);
    return rc;
}
