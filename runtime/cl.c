/* runtime/cl.c -- the OpenCL device layer (libnetrt_cl.a): device listing and
 * choice, the context of an OpenCL model (queue, one arena holding every
 * buffer and the workspace, the runtime's and the model's programs through a
 * binary cache), host<->device copies, kernel launches, and the library ops
 * (SGEMM: tiled in local memory on GPUs, blocked in registers on CPU devices;
 * convolution by im2col/col2im + GEMM with the bias and relu fused; pooling,
 * upsampling) whose OpenCL C lives in cl_kernels.cl. Sections: errors,
 * devices, binary cache, programs, context, copies and launches, library ops. */
#include "runtime/internal.h"

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* The runtime's kernels, in the order of their names below. */
#define LIB_KERNELS(X)                    \
    X(SGEMM, "nrt_sgemm")                 \
    X(SGEMM_DOT, "nrt_sgemm_dot")         \
    X(IM2COL_PX, "nrt_im2col_px")         \
    X(COL2IM_PX, "nrt_col2im_px")         \
    X(SUM_Z, "nrt_sum_z")                 \
    X(IM2COL, "nrt_im2col")               \
    X(COL2IM, "nrt_col2im")               \
    X(CONV_DX_RB, "nrt_conv_dx_rb")       \
    X(GEMM_RB, "nrt_gemm_rb")             \
    X(GEMM_RBX, "nrt_gemm_rbx")           \
    X(TRANSPOSE, "nrt_transpose")         \
    X(WINO_U, "nrt_wino_u")               \
    X(WINO_V, "nrt_wino_v")               \
    X(WINO_Y, "nrt_wino_y")               \
    X(WINO_E, "nrt_wino_e")               \
    X(WINO_DX, "nrt_wino_dx")             \
    X(WINO_DW, "nrt_wino_dw")             \
    X(BIAS_ACT, "nrt_bias_act")           \
    X(MAXPOOL, "nrt_maxpool")             \
    X(MAXPOOL_GRAD, "nrt_maxpool_grad")   \
    X(MAXPOOL2_GRAD, "nrt_maxpool2_grad") \
    X(AVGPOOL, "nrt_avgpool")             \
    X(AVGPOOL_GRAD, "nrt_avgpool_grad")   \
    X(UPSAMPLE, "nrt_upsample")           \
    X(UPSAMPLE_GRAD, "nrt_upsample_grad") \
    X(RNN_FWD, "nrt_rnn_fwd")             \
    X(RNN_BWD, "nrt_rnn_bwd")             \
    X(RNN_COLSUM, "nrt_rnn_colsum")       \
    X(RNN_ROWS, "nrt_rnn_rows")

enum lib_kernel {
#define X_(id, name) LK_##id,
    LIB_KERNELS(X_)
#undef X_
        LK_COUNT /* number of library kernels */
};

static const char *const lib_kernel_names[LK_COUNT] = {
#define X_(id, name) name,
    LIB_KERNELS(X_)
#undef X_
};

/* SGEMM tiles (cl_kernels.cl): work-items own wm x vw blocks of C (vw the
 * vector width), work-groups of rx x ry work-items own (ry*wm) x (rx*vw)
 * tiles, stepping tk along k. */
struct gemm_tiles {
    int vw, wm, rx, ry, tk;
};

/* The register-block GEMM (nrt_gemm_rb, CPU devices): rbm rows of rbn
 * vectors of rbv floats per work-item; rbm 0: the tiled SGEMM instead.
 * implicit: stride-1 unpadded convolutions read their input as the im2col
 * matrix inside the GEMM (NETC_CL_IM2COL=1: through im2col, for comparison). */
struct gemm_rb {
    int rbv, rbm, rbn, implicit;
};

/* Device time of one kernel name (NETC_PROFILE=1 or NETC_CL_PROFILE=1). */
struct prof {
    char name[96]; /* the kernel (GEMMs: with their shape) */
    double ms;     /* total device milliseconds */
    double flop;   /* floating-point operations counted (GEMMs: 2mnk), 0: not counted */
    long calls;    /* launches */
};

#define PROF_MAX 512     /* kernel names profiled */
#define PROF_PENDING 256 /* launches whose events are read together */

/* A profiled launch not yet read. */
struct prof_pending {
    char name[96];
    cl_event ev;
    double flop;
};

struct nrt_cl {
    cl_platform_id platform;   /* the chosen device's platform */
    cl_device_id device;       /* the device */
    cl_context context;        /* a context over it alone */
    cl_command_queue queue;    /* in-order queue */
    cl_program lib;            /* cl_kernels.cl */
    cl_program prog;           /* the model's program */
    cl_kernel lk[LK_COUNT];    /* library kernels */
    cl_kernel *kernels;        /* the model's kernels, by index */
    size_t *kernel_wg;         /* their CL_KERNEL_WORK_GROUP_SIZE */
    int n_kernels;             /* how many */
    cl_mem arena;              /* every buffer, then the workspace */
    int64_t arena_elems;       /* its size in 4-byte elements */
    struct gemm_tiles tiles;   /* SGEMM tiles for this device */
    struct gemm_rb rb;         /* the register-block GEMM's shape (rbm 0: not used) */
    cl_mem pack;               /* nrt_gemm_rb's packed operands (NULL until needed) */
    size_t pack_elems;         /* its size in floats */
    cl_mem gcol;               /* GPU convolutions: im2col matrices of a chunk of images */
    size_t gcol_elems;         /* its size in floats */
    cl_mem gpart;              /* GPU weight gradients: per-image partial products */
    size_t gpart_elems;        /* its size in floats */
    cl_mem wino;               /* Winograd convolutions' transforms and products (wino_*) */
    size_t wino_elems;         /* its size in floats */
    int64_t ep_bias;           /* nrt_cl_fuse_next's bias offset, -1: none pending */
    int ep_relu;               /* and its relu */
    size_t max_wg;             /* CL_DEVICE_MAX_WORK_GROUP_SIZE */
    int wg;                    /* the model program's NETC_WG (work-group reductions) */
    cl_uint units;             /* CL_DEVICE_MAX_COMPUTE_UNITS */
    int cpu;                   /* a CPU device (CL_DEVICE_TYPE_CPU), unless NETC_CL_AS_GPU=1 */
    int built;                 /* a program was built from source at open */
    struct prof *prof;         /* NETC_PROFILE=1: per-kernel device time, else NULL */
    double next_flop;          /* the FLOPs of the next launch (profiling GEMMs) */
    int n_prof;                /* kernels in prof */
    struct prof_pending *pend; /* profiled launches not yet read (PROF_PENDING) */
    int n_pend;                /* how many */
    double gap_ms;             /* device idle between consecutive launches of a batch */
    double host_ms;            /* from the first launch's queueing to its start */
    long batches;              /* batches of launches read (about one per entry point run) */
    int dead;                  /* an OpenCL call failed: later calls are no-ops */
    char err[256];             /* the message of that failure */
    char name[256];            /* "platform / device" */
};

/* The open device of ctx (struct nrt_ctx's dev). */
#define CL(ctx) ((struct nrt_cl *)(ctx)->dev)
/* The model's program (struct nrt_model's device_program). */
#define PROGRAM(ctx) ((const struct nrt_cl_program *)(ctx)->model->device_program)

/* ----------------------------------------------------------------- errors -- */

/* The name of an OpenCL error code. */
/* clang-format off */
static const char *cl_errname(cl_int e)
{
    switch (e) {
#define E_(c) \
    case c:   \
        return #c;
        E_(CL_DEVICE_NOT_FOUND) E_(CL_DEVICE_NOT_AVAILABLE) E_(CL_COMPILER_NOT_AVAILABLE)
        E_(CL_MEM_OBJECT_ALLOCATION_FAILURE) E_(CL_OUT_OF_RESOURCES) E_(CL_OUT_OF_HOST_MEMORY)
        E_(CL_BUILD_PROGRAM_FAILURE) E_(CL_INVALID_VALUE) E_(CL_INVALID_PLATFORM) E_(CL_INVALID_DEVICE)
        E_(CL_INVALID_CONTEXT) E_(CL_INVALID_COMMAND_QUEUE) E_(CL_INVALID_MEM_OBJECT) E_(CL_INVALID_BINARY)
        E_(CL_INVALID_BUILD_OPTIONS) E_(CL_INVALID_PROGRAM) E_(CL_INVALID_PROGRAM_EXECUTABLE)
        E_(CL_INVALID_KERNEL_NAME) E_(CL_INVALID_KERNEL) E_(CL_INVALID_ARG_INDEX) E_(CL_INVALID_ARG_VALUE)
        E_(CL_INVALID_ARG_SIZE) E_(CL_INVALID_KERNEL_ARGS) E_(CL_INVALID_WORK_DIMENSION)
        E_(CL_INVALID_WORK_GROUP_SIZE) E_(CL_INVALID_WORK_ITEM_SIZE) E_(CL_INVALID_GLOBAL_OFFSET)
        E_(CL_INVALID_EVENT_WAIT_LIST) E_(CL_INVALID_OPERATION) E_(CL_INVALID_BUFFER_SIZE)
        E_(CL_INVALID_GLOBAL_WORK_SIZE) E_(CL_MISALIGNED_SUB_BUFFER_OFFSET)
        E_(CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST)
#undef E_
    case -1001:
        return "CL_PLATFORM_NOT_FOUND_KHR";
    default:
        return "unknown OpenCL error";
    }
}
/* clang-format on */

/* Marks the device dead with "OpenCL: what: CODE" and records it in ctx. */
static void cl_fail(struct nrt_ctx *ctx, cl_int e, const char *fmt, ...) NRT_PRINTF(3, 4);
static void cl_fail(struct nrt_ctx *ctx, cl_int e, const char *fmt, ...) {
    struct nrt_cl *cl = ctx->dev;
    if (cl->dead) return;
    char what[160];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    snprintf(cl->err, sizeof cl->err, "OpenCL: %s: %s (%d)", what, cl_errname(e), (int)e);
    cl->dead = 1;
    nrt_ctx_fail_code(ctx, NRT_ERR_DEVICE, "%s", cl->err);
}

/* Whether calls must be skipped: no device, or one that failed (whose message
 * is recorded in ctx again, since nrt_ctx_run clears it before each run). */
static int cl_dead(struct nrt_ctx *ctx) {
    if (!ctx->dev) {
        nrt_ctx_fail_code(ctx, NRT_ERR_DEVICE, "OpenCL: the context has no device (a host model)");
        return 1;
    }
    if (CL(ctx)->dead) {
        nrt_ctx_fail_code(ctx, NRT_ERR_DEVICE, "%s", CL(ctx)->err);
        return 1;
    }
    return 0;
}

/* ---------------------------------------------------------------- devices -- */

static const char install_hint[] =
    "install an OpenCL driver, e.g. `apt-get install pocl-opencl-icd` for a CPU device";

/* Every platform (up to 16), or an error that says how to install one. */
static int platforms_get(cl_platform_id *ps, cl_uint *np) {
    cl_int e = clGetPlatformIDs(16, ps, np);
    if (e == -1001 /* CL_PLATFORM_NOT_FOUND_KHR */ || (e == CL_SUCCESS && *np == 0))
        return nrt_error_set(NRT_ERR_NOTFOUND, "OpenCL: no platform found: %s", install_hint);
    if (e != CL_SUCCESS)
        return nrt_error_set(NRT_ERR_IO, "OpenCL: clGetPlatformIDs: %s (%d): %s", cl_errname(e), (int)e,
                             install_hint);
    if (*np > 16) *np = 16;
    return NRT_OK;
}

/* The devices of platform p (up to 64); none is not an error. */
static cl_uint devices_get(cl_platform_id p, cl_device_id *ds) {
    cl_uint n = 0;
    if (clGetDeviceIDs(p, CL_DEVICE_TYPE_ALL, 64, ds, &n) != CL_SUCCESS) return 0;
    return n > 64 ? 64 : n;
}

/* "platform / device" into buf. */
static void device_label(cl_platform_id p, cl_device_id d, char *buf, size_t len) {
    char pn[128] = "?", dn[128] = "?";
    clGetPlatformInfo(p, CL_PLATFORM_NAME, sizeof pn, pn, NULL);
    clGetDeviceInfo(d, CL_DEVICE_NAME, sizeof dn, dn, NULL);
    pn[sizeof pn - 1] = dn[sizeof dn - 1] = '\0';
    snprintf(buf, len, "%s / %s", pn, dn);
}

static cl_device_type device_type(cl_device_id d) {
    cl_device_type t = 0;
    clGetDeviceInfo(d, CL_DEVICE_TYPE, sizeof t, &t, NULL);
    return t;
}

int nrt_cl_device_list(void) {
    cl_platform_id ps[16];
    cl_uint np = 0;
    int rc = platforms_get(ps, &np);
    if (rc) return rc;
    for (cl_uint p = 0; p < np; p++) {
        cl_device_id ds[64];
        cl_uint nd = devices_get(ps[p], ds);
        for (cl_uint d = 0; d < nd; d++) {
            char label[288];
            cl_uint cu = 0;
            cl_ulong mem = 0;
            device_label(ps[p], ds[d], label, sizeof label);
            clGetDeviceInfo(ds[d], CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cu, &cu, NULL);
            clGetDeviceInfo(ds[d], CL_DEVICE_GLOBAL_MEM_SIZE, sizeof mem, &mem, NULL);
            cl_device_type t = device_type(ds[d]);
            printf("%u:%u  %s (%s, %u compute units, %llu MiB global memory)\n", p, d, label,
                   t & CL_DEVICE_TYPE_GPU           ? "GPU"
                   : t & CL_DEVICE_TYPE_CPU         ? "CPU"
                   : t & CL_DEVICE_TYPE_ACCELERATOR ? "accelerator"
                                                    : "other",
                   cu, (unsigned long long)(mem >> 20));
        }
    }
    return NRT_OK;
}

/* Case-insensitive substring search. */
static int contains_nocase(const char *hay, const char *needle) {
    size_t n = strlen(needle);
    for (; *hay; hay++)
        if (strncasecmp(hay, needle, n) == 0) return 1;
    return n == 0;
}

/* Picks the device for spec (see nrt_ctx_device_set) into *pp, *dp. */
static int device_choose(const char *spec, cl_platform_id *pp, cl_device_id *dp) {
    cl_platform_id ps[16];
    cl_uint np = 0;
    int rc = platforms_get(ps, &np);
    if (rc) return rc;
    unsigned sp = 0, sd = 0;
    int by_index = 0, consumed = 0;
    if (spec && sscanf(spec, "%u:%u%n", &sp, &sd, &consumed) == 2 && spec[consumed] == '\0') by_index = 1;
    int found = 0;
    for (int pass = 0; pass < 2 && !found; pass++) /* default: a GPU first, then anything */
        for (cl_uint p = 0; p < np && !found; p++) {
            cl_device_id ds[64];
            cl_uint nd = devices_get(ps[p], ds);
            for (cl_uint d = 0; d < nd && !found; d++) {
                char label[288];
                device_label(ps[p], ds[d], label, sizeof label);
                if (by_index)
                    found = p == sp && d == sd;
                else if (spec)
                    found = contains_nocase(label, spec);
                else
                    found = pass == 1 || (device_type(ds[d]) & CL_DEVICE_TYPE_GPU);
                if (found) {
                    *pp = ps[p];
                    *dp = ds[d];
                }
            }
        }
    if (found) return NRT_OK;
    if (spec)
        return nrt_error_set(NRT_ERR_NOTFOUND, "OpenCL: no device matches '%s' (`--device list` shows them)",
                             spec);
    return nrt_error_set(NRT_ERR_NOTFOUND, "OpenCL: the platforms have no device: %s", install_hint);
}

/* ----------------------------------------------------------- binary cache -- */
/* A built program is kept as $XDG_CACHE_HOME/netc/cl/<key>.bin (or under
 * ~/.cache), key = two FNV-1a hashes of platform and device name, driver and
 * device version, build options and source. The file is "NETCCLB1", the
 * binary's size and FNV-1a hash (8 bytes each), then the binary; it is written
 * to a temporary file and renamed. Anything unreadable, short or not matching
 * its hash is ignored and the program built from source. */

#define CACHE_MAGIC "NETCCLB1"

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        h ^= s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

/* The cache directory into buf (created); 0 when the cache is off or unusable. */
static int cache_dir(char *buf, size_t len) {
    const char *off = getenv("NETC_CL_CACHE");
    if (off && strcmp(off, "0") == 0) return 0;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    int n;
    if (xdg && *xdg)
        n = snprintf(buf, len, "%s/netc/cl", xdg);
    else if (home && *home)
        n = snprintf(buf, len, "%s/.cache/netc/cl", home);
    else
        return 0;
    if (n < 0 || (size_t)n >= len) return 0;
    /* mkdir -p */
    for (char *s = buf + 1; *s; s++) {
        if (*s != '/') continue;
        *s = '\0';
        mkdir(buf, 0755);
        *s = '/';
    }
    return mkdir(buf, 0755) == 0 || errno == EEXIST;
}

/* The cache file of a program into path; 0 when the cache is off. */
static int cache_path(struct nrt_cl *cl, const char *opts, const char *src, char *path, size_t len) {
    char dir[1024];
    if (!cache_dir(dir, sizeof dir)) return 0;
    char info[4][256] = {{0}};
    clGetPlatformInfo(cl->platform, CL_PLATFORM_VERSION, sizeof info[0], info[0], NULL);
    clGetDeviceInfo(cl->device, CL_DRIVER_VERSION, sizeof info[1], info[1], NULL);
    clGetDeviceInfo(cl->device, CL_DEVICE_VERSION, sizeof info[2], info[2], NULL);
    snprintf(info[3], sizeof info[3], "%s", cl->name);
    uint64_t h1 = 0xcbf29ce484222325ull, h2 = 0x84222325cbf29ce4ull;
    for (int i = 0; i < 4; i++) {
        h1 = fnv_bytes(h1, info[i], strlen(info[i]) + 1);
        h2 = fnv_bytes(h2, info[i], strlen(info[i]) + 1);
    }
    h1 = fnv_bytes(fnv_bytes(h1, opts, strlen(opts) + 1), src, strlen(src));
    h2 = fnv_bytes(fnv_bytes(h2, opts, strlen(opts) + 1), src, strlen(src));
    int n = snprintf(path, len, "%s/%016llx%016llx.bin", dir, (unsigned long long)h1, (unsigned long long)h2);
    return n > 0 && (size_t)n < len;
}

/* The cached binary at path (nrt_alloc'd), or NULL. */
static unsigned char *cache_read(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char magic[8];
    uint64_t n = 0, h = 0;
    unsigned char *bin = NULL;
    if (fread(magic, 1, 8, f) == 8 && memcmp(magic, CACHE_MAGIC, 8) == 0 && fread(&n, 8, 1, f) == 1 &&
        fread(&h, 8, 1, f) == 1 && n > 0 && n < ((uint64_t)1 << 32) && (bin = nrt_alloc((size_t)n, 0))) {
        if (fread(bin, 1, (size_t)n, f) != n || fgetc(f) != EOF ||
            fnv_bytes(0xcbf29ce484222325ull, bin, (size_t)n) != h) {
            nrt_free(bin);
            bin = NULL;
        }
    }
    fclose(f);
    *size = (size_t)n;
    return bin;
}

/* Writes the program's binary to path, atomically; failures are ignored (the
 * next run builds again). */
static void cache_write(cl_program prog, const char *path) {
    size_t size = 0;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARY_SIZES, sizeof size, &size, NULL) != CL_SUCCESS || !size)
        return;
    unsigned char *bin = nrt_alloc(size, 0);
    if (!bin) return;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = NULL;
    if (clGetProgramInfo(prog, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS &&
        (f = fopen(tmp, "wb"))) {
        uint64_t n = size, h = fnv_bytes(0xcbf29ce484222325ull, bin, size);
        int ok = fwrite(CACHE_MAGIC, 1, 8, f) == 8 && fwrite(&n, 8, 1, f) == 1 && fwrite(&h, 8, 1, f) == 1 &&
                 fwrite(bin, 1, size, f) == size;
        if (fclose(f) == 0 && ok && rename(tmp, path) == 0) tmp[0] = '\0';
        if (tmp[0]) remove(tmp);
    }
    nrt_free(bin);
}

/* --------------------------------------------------------------- programs -- */

/* Builds src with opts for the device, from the cache when it can; what names
 * the program in errors ("runtime kernels", "model kernels"). A build failure
 * is an error carrying the first lines of the build log. */
static int program_build(struct nrt_cl *cl, const char *what, const char *src, const char *opts,
                         cl_program *out) {
    char path[1100];
    int cached = cache_path(cl, opts, src, path, sizeof path);
    cl_int e;
    if (cached) {
        size_t size = 0;
        unsigned char *bin = cache_read(path, &size);
        if (bin) {
            const unsigned char *bins[1] = {bin};
            cl_int st;
            cl_program p = clCreateProgramWithBinary(cl->context, 1, &cl->device, &size, bins, &st, &e);
            nrt_free(bin);
            if (p && e == CL_SUCCESS && st == CL_SUCCESS &&
                clBuildProgram(p, 1, &cl->device, opts, NULL, NULL) == CL_SUCCESS) {
                *out = p;
                return NRT_OK;
            }
            if (p) clReleaseProgram(p);
        }
    }
    cl->built = 1;
    size_t len = strlen(src);
    cl_program p = clCreateProgramWithSource(cl->context, 1, &src, &len, &e);
    if (!p)
        return nrt_error_set(NRT_ERR_IO, "OpenCL: clCreateProgramWithSource(%s): %s (%d)", what,
                             cl_errname(e), (int)e);
    e = clBuildProgram(p, 1, &cl->device, opts, NULL, NULL);
    if (e != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(p, cl->device, CL_PROGRAM_BUILD_LOG, sizeof log, log, NULL);
        log[sizeof log - 1] = '\0';
        clReleaseProgram(p);
        /* The log on stderr in full (it is what the user needs), the error one line. */
        fprintf(stderr, "OpenCL build log of the %s on %s:\n%s\n", what, cl->name, log);
        return nrt_error_set(NRT_ERR_FORMAT, "OpenCL: building the %s failed: %s (%d); build log above", what,
                             cl_errname(e), (int)e);
    }
    if (cached) cache_write(p, path);
    *out = p;
    return NRT_OK;
}

/* Whether tiles t fit a device allowing wg work-items per group (items[0..1]
 * per dim) and `local` bytes of local memory. */
static int tiles_fit(const struct gemm_tiles *t, size_t wg, const size_t *items, cl_ulong local) {
    cl_ulong bytes = (cl_ulong)t->tk * (cl_ulong)(t->ry * t->wm + t->rx * t->vw) * 4;
    return t->vw > 0 && t->wm > 0 && t->rx > 0 && t->ry > 0 && t->tk > 0 && (size_t)(t->rx * t->ry) <= wg &&
           (size_t)t->rx <= items[0] && (size_t)t->ry <= items[1] && bytes <= local;
}

/* SGEMM tiles from the device's limits. The vector width is the device's
 * preferred float width (16 on AVX-512 CPUs, often 1 or 4 on GPUs, taken as
 * 4 then). CPUs (PoCL) run a work-group as loops over its work-items, so
 * there a few work-items with wide register blocks do best (measured with
 * bench/cl_gemm); GPUs get 16x16 work-items with 4x4 blocks. The first
 * candidate that fits the work-group and local memory limits wins.
 * NETC_CL_GEMM="vw,wm,rx,ry,tk" overrides the choice (for tuning). */
static struct gemm_tiles tiles_choose(struct nrt_cl *cl) {
    cl_ulong local = 0;
    size_t wg = 1, items[3] = {1, 1, 1};
    cl_uint pref = 0;
    clGetDeviceInfo(cl->device, CL_DEVICE_LOCAL_MEM_SIZE, sizeof local, &local, NULL);
    clGetDeviceInfo(cl->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
    clGetDeviceInfo(cl->device, CL_DEVICE_MAX_WORK_ITEM_SIZES, sizeof items, items, NULL);
    clGetDeviceInfo(cl->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof pref, &pref, NULL);
    int vw = pref >= 16 ? 16 : pref >= 8 ? 8 : 4;
    const char *env = getenv("NETC_CL_GEMM");
    struct gemm_tiles t;
    if (env && sscanf(env, "%d,%d,%d,%d,%d", &t.vw, &t.wm, &t.rx, &t.ry, &t.tk) == 5 &&
        (t.vw == 1 || t.vw == 2 || t.vw == 4 || t.vw == 8 || t.vw == 16) && tiles_fit(&t, wg, items, local))
        return t;
    int cpu = cl->cpu;
    const struct gemm_tiles cand[] = {
        cpu ? (struct gemm_tiles){vw, 8, 4, 4, 16} : (struct gemm_tiles){4, 4, 16, 16, 16},
        {vw, 4, 4, 4, 16},
        {4, 4, 8, 8, 16},
        {4, 2, 4, 4, 8},
        {1, 1, 1, 1, 1},
    };
    for (size_t i = 0; i < sizeof cand / sizeof *cand; i++)
        if (tiles_fit(&cand[i], wg, items, local)) return cand[i];
    return cand[sizeof cand / sizeof *cand - 1];
}

/* The register-block GEMM for CPU devices (see cl_kernels.cl): vectors of
 * the preferred float width, 8 x 2 of them per work-item with 32 vector
 * registers (AVX-512), 6 x 2 with fewer (bench/cl_gemm.c). Other devices, or
 * NETC_CL_GEMM set (tuning the tiled kernel), take the tiled SGEMM;
 * NETC_CL_RB="rbm,rbn" overrides the block. */
static struct gemm_rb rb_choose(struct nrt_cl *cl) {
    struct gemm_rb r = {0, 0, 0, 0};
    cl_uint pref = 0;
    clGetDeviceInfo(cl->device, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT, sizeof pref, &pref, NULL);
    if (!cl->cpu || getenv("NETC_CL_GEMM")) return r;
    r.rbv = pref >= 16 ? 16 : pref >= 8 ? 8 : 4;
    r.rbm = r.rbv >= 16 ? 8 : 6;
    r.rbn = 2;
    const char *im = getenv("NETC_CL_IM2COL");
    r.implicit = !(im && atoi(im) > 0);
    const char *env = getenv("NETC_CL_RB");
    int m = 0, n = 0;
    if (env && sscanf(env, "%d,%d", &m, &n) == 2 && m >= 1 && m <= 16 && n >= 1 && n <= 4)
        r.rbm = m, r.rbn = n;
    return r;
}

/* The work-items of the model program's work-group reductions (NETC_WG): 256
 * on GPUs; on CPU devices, where PoCL runs a work-group as loops over its
 * work-items on one core, with a barrier between the loops, WG_CPU (a
 * 256-item tree took 0.4 ms a step for mnist_cnn's bias gradients of 1,600
 * elements a row). At most the device's work-group limit; NETC_CL_WG=N (a
 * power of two) overrides it, for tuning. */
#define WG_CPU 4
static int wg_choose(const struct nrt_cl *cl) {
    int want = cl->cpu ? WG_CPU : 256;
    const char *env = getenv("NETC_CL_WG");
    int e = env ? atoi(env) : 0;
    if (e > 0 && e <= 1024 && (e & (e - 1)) == 0) want = e;
    while ((size_t)want > cl->max_wg && want > 1) want /= 2;
    return want;
}

/* ---------------------------------------------------------------- context -- */

/* NETC_CL_AS_GPU=1: every device-type dependent choice as on a GPU (the tiled
 * SGEMM and the GPU convolutions, work-group reductions of 256, local sizes),
 * so that the GPU paths are tested on a CPU device (PoCL in CI). */
static int as_gpu(void) {
    const char *env = getenv("NETC_CL_AS_GPU");
    return env && atoi(env) > 0;
}

/* Builds both programs and creates every kernel. */
static int kernels_create(struct nrt_ctx *ctx) {
    struct nrt_cl *cl = ctx->dev;
    const struct nrt_cl_program *mp = PROGRAM(ctx);
    const struct gemm_tiles *t = &cl->tiles;
    const struct gemm_rb *r = &cl->rb;
    char opts[256];
    snprintf(opts, sizeof opts,
             "-cl-std=CL1.2 -DVW=%d -DWM=%d -DRX=%d -DRY=%d -DTK=%d -DRBV=%d -DRBM=%d -DRBN=%d", t->vw, t->wm,
             t->rx, t->ry, t->tk, r->rbm ? r->rbv : 4, r->rbm ? r->rbm : 6, r->rbm ? r->rbn : 2);
    int rc = program_build(cl, "runtime kernels", nrt_cl_kernels_source, opts, &cl->lib);
    char mopts[64];
    snprintf(mopts, sizeof mopts, "-cl-std=CL1.2 -DNETC_WG=%d", cl->wg);
    if (!rc) rc = program_build(cl, "model kernels", mp->source ? mp->source : "", mopts, &cl->prog);
    if (rc) return rc;
    cl_int e;
    for (int i = 0; i < LK_COUNT; i++)
        if (!(cl->lk[i] = clCreateKernel(cl->lib, lib_kernel_names[i], &e)))
            return nrt_error_set(NRT_ERR_IO, "OpenCL: clCreateKernel(%s): %s (%d)", lib_kernel_names[i],
                                 cl_errname(e), (int)e);
    int n = mp->n_kernels > 0 ? mp->n_kernels : 0;
    cl->kernels = nrt_alloc_zero(sizeof *cl->kernels * (size_t)(n + 1), 0);
    cl->kernel_wg = nrt_alloc_zero(sizeof *cl->kernel_wg * (size_t)(n + 1), 0);
    if (!cl->kernels || !cl->kernel_wg) return NRT_ERR_NOMEM;
    cl->n_kernels = n;
    for (int i = 0; i < n; i++) {
        if (!(cl->kernels[i] = clCreateKernel(cl->prog, mp->kernel_names[i], &e)))
            return nrt_error_set(NRT_ERR_IO, "OpenCL: clCreateKernel(%s): %s (%d)", mp->kernel_names[i],
                                 cl_errname(e), (int)e);
        size_t wg = 1;
        clGetKernelWorkGroupInfo(cl->kernels[i], cl->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
        cl->kernel_wg[i] = wg ? wg : 1;
    }
    return NRT_OK;
}

static void cl_close(struct nrt_ctx *ctx);

/* The device layer's open (struct nrt_device_ops): chooses the device, builds
 * the programs and allocates the arena; on failure ctx->dev stays NULL. */
static int cl_open(struct nrt_ctx *ctx, const char *spec, int64_t arena_elems) {
    struct nrt_cl *cl = nrt_alloc_zero(sizeof *cl, 0);
    if (!cl) return NRT_ERR_NOMEM;
    ctx->dev = cl;
    int rc = device_choose(spec, &cl->platform, &cl->device);
    cl_int e = CL_SUCCESS;
    if (!rc) {
        device_label(cl->platform, cl->device, cl->name, sizeof cl->name);
        clGetDeviceInfo(cl->device, CL_DEVICE_MAX_WORK_GROUP_SIZE, sizeof cl->max_wg, &cl->max_wg, NULL);
        if (!cl->max_wg) cl->max_wg = 1;
        clGetDeviceInfo(cl->device, CL_DEVICE_MAX_COMPUTE_UNITS, sizeof cl->units, &cl->units, NULL);
        cl->cpu = (device_type(cl->device) & CL_DEVICE_TYPE_CPU) && !as_gpu();
        cl->tiles = tiles_choose(cl);
        cl->rb = rb_choose(cl);
        cl->wg = wg_choose(cl);
        cl->ep_bias = -1;
        cl->context = clCreateContext(NULL, 1, &cl->device, NULL, NULL, &e);
        if (!cl->context)
            rc = nrt_error_set(NRT_ERR_IO, "OpenCL: clCreateContext(%s): %s (%d)", cl->name, cl_errname(e),
                               (int)e);
    }
    const char *prof = getenv("NETC_CL_PROFILE"), *prof2 = getenv("NETC_PROFILE");
    int want = (prof && strcmp(prof, "1") == 0) || (prof2 && *prof2 && strcmp(prof2, "0") != 0);
    if (!rc && want &&
        (!(cl->prof = nrt_alloc_zero(sizeof *cl->prof * PROF_MAX, 0)) ||
         !(cl->pend = nrt_alloc_zero(sizeof *cl->pend * PROF_PENDING, 0))))
        rc = NRT_ERR_NOMEM;
    if (!rc && !(cl->queue = clCreateCommandQueue(cl->context, cl->device,
                                                  cl->prof ? CL_QUEUE_PROFILING_ENABLE : 0, &e)))
        rc = nrt_error_set(NRT_ERR_IO, "OpenCL: clCreateCommandQueue: %s (%d)", cl_errname(e), (int)e);
    if (!rc) rc = kernels_create(ctx);
    if (!rc) {
        cl_ulong maxalloc = 0;
        clGetDeviceInfo(cl->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof maxalloc, &maxalloc, NULL);
        cl->arena_elems = arena_elems > 0 ? arena_elems : 1;
        size_t bytes = (size_t)cl->arena_elems * 4;
        if (maxalloc && bytes > maxalloc)
            rc = nrt_error_set(NRT_ERR_NOMEM,
                               "OpenCL: the model needs a %.1f MiB arena, %s allows %.1f MiB per buffer "
                               "(try a smaller --batch)",
                               (double)bytes / 1048576.0, cl->name, (double)maxalloc / 1048576.0);
        else if (!(cl->arena = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, bytes, NULL, &e)))
            rc = nrt_error_set(NRT_ERR_NOMEM, "OpenCL: clCreateBuffer(%zu bytes): %s (%d)", bytes,
                               cl_errname(e), (int)e);
    }
    if (!rc) {
        /* A cleared arena: reads of never-written workspace give 0, not noise. */
        cl_float zero = 0;
        e = clEnqueueFillBuffer(cl->queue, cl->arena, &zero, sizeof zero, 0, (size_t)cl->arena_elems * 4, 0,
                                NULL, NULL);
        if (e == CL_SUCCESS) e = clFinish(cl->queue);
        if (e != CL_SUCCESS)
            rc = nrt_error_set(NRT_ERR_IO, "OpenCL: clEnqueueFillBuffer: %s (%d)", cl_errname(e), (int)e);
    }
    if (rc) {
        cl_close(ctx);
        return rc;
    }
    ctx->host_dirty = 1;
    return NRT_OK;
}

static void prof_flush(struct nrt_cl *cl);

/* Prints the profile, the most expensive kernels first, and frees it: device
 * milliseconds from the queue's event profiling, share, launches, and GFLOP/s
 * where counted; then the device's idle time between consecutive launches
 * (launch overhead, host work between them). */
static void prof_print(struct nrt_cl *cl) {
    if (!cl->prof) return;
    prof_flush(cl);
    double total = 0;
    long launches = 0;
    for (int i = 0; i < cl->n_prof; i++) total += cl->prof[i].ms, launches += cl->prof[i].calls;
    fprintf(stderr, "netc profile: OpenCL device time on %s: %.1f ms of kernels, %ld launches\n", cl->name,
            total, launches);
    fprintf(stderr,
            "  idle between launches queued together: %.1f ms (%.1f us a launch); queued to started, "
            "first of a batch: %.1f ms in %ld batches\n",
            cl->gap_ms, launches ? 1e3 * cl->gap_ms / (double)launches : 0.0, cl->host_ms, cl->batches);
    fprintf(stderr, "  %10s %7s %8s %9s  %s\n", "time(ms)", "share", "calls", "GFLOP/s", "kernel");
    for (int done = 0; done < cl->n_prof && done < 40; done++) {
        int best = -1;
        for (int i = 0; i < cl->n_prof; i++)
            if (cl->prof[i].calls >= 0 && (best < 0 || cl->prof[i].ms > cl->prof[best].ms)) best = i;
        struct prof *p = &cl->prof[best];
        char rate[32] = "-";
        if (p->flop > 0 && p->ms > 0) snprintf(rate, sizeof rate, "%.2f", p->flop / p->ms * 1e-6);
        fprintf(stderr, "  %10.3f %6.1f%% %8ld %9s  %s\n", p->ms, total > 0 ? 100 * p->ms / total : 0,
                p->calls, rate, p->name);
        p->calls = -1;
    }
    nrt_free(cl->prof);
    nrt_free(cl->pend);
    cl->prof = NULL;
    cl->pend = NULL;
}

/* Adds the device time of a finished launch to its kernel's entry. */
static void prof_add(struct nrt_cl *cl, const char *name, double ms, double flop) {
    int i = 0;
    while (i < cl->n_prof && strcmp(cl->prof[i].name, name) != 0) i++;
    if (i == cl->n_prof) {
        if (i == PROF_MAX) return;
        snprintf(cl->prof[cl->n_prof++].name, sizeof cl->prof[i].name, "%s", name);
    }
    cl->prof[i].ms += ms;
    cl->prof[i].flop += flop;
    cl->prof[i].calls++;
}

/* Reads the pending launches' events (waiting for the last) into the
 * profile: each one's device time, the idle time between one's end and the
 * next one's start, and the first one's wait from queueing to start. Called
 * when the pending list is full, before a download (the host waits there
 * anyway) and at close, so the launches of a step run queued as without
 * profiling. */
static void prof_flush(struct nrt_cl *cl) {
    if (!cl->pend || cl->n_pend == 0) return;
    clWaitForEvents(1, &cl->pend[cl->n_pend - 1].ev);
    cl_ulong prev = 0;
    for (int i = 0; i < cl->n_pend; i++) {
        struct prof_pending *p = &cl->pend[i];
        cl_ulong tq = 0, t0 = 0, t1 = 0;
        clWaitForEvents(1, &p->ev);
        clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_QUEUED, sizeof tq, &tq, NULL);
        clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_START, sizeof t0, &t0, NULL);
        clGetEventProfilingInfo(p->ev, CL_PROFILING_COMMAND_END, sizeof t1, &t1, NULL);
        clReleaseEvent(p->ev);
        if (i == 0 && t0 > tq) cl->host_ms += (double)(t0 - tq) * 1e-6;
        if (i > 0 && t0 > prev) cl->gap_ms += (double)(t0 - prev) * 1e-6;
        prev = t1 > prev ? t1 : prev;
        prof_add(cl, p->name, t1 > t0 ? (double)(t1 - t0) * 1e-6 : 0.0, p->flop);
    }
    cl->n_pend = 0;
    cl->batches++;
}

static void cl_close(struct nrt_ctx *ctx) {
    struct nrt_cl *cl = ctx->dev;
    if (!cl) return;
    if (cl->queue) clFinish(cl->queue);
    prof_print(cl);
    for (int i = 0; i < cl->n_kernels; i++)
        if (cl->kernels[i]) clReleaseKernel(cl->kernels[i]);
    for (int i = 0; i < LK_COUNT; i++)
        if (cl->lk[i]) clReleaseKernel(cl->lk[i]);
    nrt_free(cl->kernels);
    nrt_free(cl->kernel_wg);
    if (cl->arena) clReleaseMemObject(cl->arena);
    if (cl->pack) clReleaseMemObject(cl->pack);
    if (cl->gcol) clReleaseMemObject(cl->gcol);
    if (cl->gpart) clReleaseMemObject(cl->gpart);
    if (cl->wino) clReleaseMemObject(cl->wino);
    if (cl->prog) clReleaseProgram(cl->prog);
    if (cl->lib) clReleaseProgram(cl->lib);
    if (cl->queue) clReleaseCommandQueue(cl->queue);
    if (cl->context) clReleaseContext(cl->context);
    nrt_free(cl);
    ctx->dev = NULL;
}

int nrt_cl_built_from_source(const struct nrt_ctx *ctx) { return ctx->dev ? CL(ctx)->built : 0; }

const char *nrt_cl_device_name(const struct nrt_ctx *ctx) { return ctx->dev ? CL(ctx)->name : ""; }

/* ------------------------------------------------------ copies, launches -- */

/* Whether [off, off + bytes) lies in the arena; records an error if not. */
static int in_arena(struct nrt_ctx *ctx, const char *what, int64_t off, size_t bytes) {
    if (off >= 0 && (uint64_t)off * 4 + bytes <= (uint64_t)CL(ctx)->arena_elems * 4) return 1;
    cl_fail(ctx, CL_INVALID_VALUE, "%s of %zu bytes at element %lld outside the %lld-element arena", what,
            bytes, (long long)off, (long long)CL(ctx)->arena_elems);
    return 0;
}

void nrt_cl_upload(struct nrt_ctx *ctx, int64_t off, const void *src, size_t bytes) {
    if (cl_dead(ctx) || !bytes || !in_arena(ctx, "upload", off, bytes)) return;
    cl_int e = clEnqueueWriteBuffer(CL(ctx)->queue, CL(ctx)->arena, CL_TRUE, (size_t)off * 4, bytes, src, 0,
                                    NULL, NULL);
    if (e != CL_SUCCESS) cl_fail(ctx, e, "clEnqueueWriteBuffer(%zu bytes)", bytes);
}

void nrt_cl_download(struct nrt_ctx *ctx, int64_t off, void *dst, size_t bytes) {
    if (cl_dead(ctx) || !bytes || !in_arena(ctx, "download", off, bytes)) return;
    prof_flush(ctx->dev);
    cl_int e = clEnqueueReadBuffer(CL(ctx)->queue, CL(ctx)->arena, CL_TRUE, (size_t)off * 4, bytes, dst, 0,
                                   NULL, NULL);
    if (e != CL_SUCCESS) cl_fail(ctx, e, "clEnqueueReadBuffer(%zu bytes)", bytes);
}

/* Bytes of buffer i (batch-free: params and state). */
static size_t state_bytes(const struct nrt_ctx *ctx, int i) {
    const struct nrt_buffer_desc *b = &ctx->model->buffers[i];
    return (size_t)nrt_desc_count(b->rank, b->dims, 1) * nrt_dtype_size(b->dtype);
}

void nrt_cl_upload_state(struct nrt_ctx *ctx) {
    if (!ctx->host_dirty || cl_dead(ctx)) return;
    const struct nrt_model *m = ctx->model;
    for (int i = 0; i < m->n_buffers && !CL(ctx)->dead; i++)
        if (m->buffers[i].kind != NRT_BUF_INPUT)
            nrt_cl_upload(ctx, ctx->buf_off[i], ctx->buf[i], state_bytes(ctx, i));
    ctx->host_dirty = 0;
}

static void cl_download_state(struct nrt_ctx *ctx) {
    const struct nrt_model *m = ctx->model;
    for (int i = 0; i < m->n_buffers && ctx->dev && !CL(ctx)->dead; i++)
        if (m->buffers[i].kind != NRT_BUF_INPUT)
            nrt_cl_download(ctx, ctx->buf_off[i], ctx->buf[i], state_bytes(ctx, i));
}

void nrt_cl_finish(struct nrt_ctx *ctx) {
    if (cl_dead(ctx)) return;
    cl_int e = clFinish(CL(ctx)->queue);
    if (e != CL_SUCCESS) cl_fail(ctx, e, "clFinish");
}

/* A local size for a launch that did not give one: up to 64 work-items (and
 * the kernel's limit), split over the dims from the first, each a power of two
 * no larger than needed. On CPU devices (PoCL runs each work-group on one
 * core) groups small enough that there are 4 per compute unit where the range
 * allows: a conv chunk's 192 planes in groups of 64 left one of 2 cores idle
 * a third of the time, a 2 x 32 range in one group one of them always. */
static void local_choose(const struct nrt_cl *cl, int dims, const size_t *global, size_t limit,
                         size_t *local) {
    size_t budget = limit < 64 ? limit : 64;
    if (cl->cpu) {
        size_t total = 1, want = 4 * (size_t)(cl->units ? cl->units : 1);
        for (int d = 0; d < dims; d++) total *= global[d];
        while (budget > 1 && total / budget < want) budget /= 2;
    }
    for (int d = 0; d < dims; d++) {
        size_t l = 1;
        while (l * 2 <= budget && l < global[d]) l *= 2;
        local[d] = l;
        budget /= l;
    }
}

/* Enqueues k over global (rounded up to local), after setting its args. */
static void enqueue(struct nrt_ctx *ctx, cl_kernel k, const char *name, int dims, const size_t *global,
                    const size_t *local) {
    size_t g[3];
    double flop = CL(ctx)->next_flop;
    CL(ctx)->next_flop = 0;
    for (int d = 0; d < dims; d++) {
        if (global[d] == 0) return;
        g[d] = (global[d] + local[d] - 1) / local[d] * local[d];
    }
    cl_event ev = NULL;
    cl_int e = clEnqueueNDRangeKernel(CL(ctx)->queue, k, (cl_uint)dims, NULL, g, local, 0, NULL,
                                      CL(ctx)->prof ? &ev : NULL);
    if (e != CL_SUCCESS)
        cl_fail(ctx, e, "clEnqueueNDRangeKernel(%s)", name);
    else if (ev) {
        struct nrt_cl *cl = ctx->dev;
        if (cl->n_pend == PROF_PENDING) prof_flush(cl);
        struct prof_pending *p = &cl->pend[cl->n_pend++];
        snprintf(p->name, sizeof p->name, "%s", name);
        p->ev = ev;
        p->flop = flop;
    }
}

void nrt_cl_launch(struct nrt_ctx *ctx, int kernel, int dims, const size_t *global, const size_t *local,
                   int nargs, const struct nrt_cl_arg *args) {
    if (cl_dead(ctx)) return;
    struct nrt_cl *cl = ctx->dev;
    if (kernel < 0 || kernel >= cl->n_kernels || dims < 1 || dims > 3) {
        cl_fail(ctx, CL_INVALID_KERNEL, "launch of kernel %d (of %d) over %d dims", kernel, cl->n_kernels,
                dims);
        return;
    }
    const char *name = PROGRAM(ctx)->kernel_names[kernel];
    cl_kernel k = cl->kernels[kernel];
    for (int i = 0; i < nargs; i++) {
        cl_int e;
        const struct nrt_cl_arg *a = &args[i];
        cl_long l = (cl_long)a->i;
        cl_int n = (cl_int)a->i;
        cl_float f = (cl_float)a->f;
        switch (a->kind) {
        case NRT_CL_ARENA:
            e = clSetKernelArg(k, (cl_uint)i, sizeof cl->arena, &cl->arena);
            break;
        case NRT_CL_LONG:
            e = clSetKernelArg(k, (cl_uint)i, sizeof l, &l);
            break;
        case NRT_CL_INT:
            e = clSetKernelArg(k, (cl_uint)i, sizeof n, &n);
            break;
        case NRT_CL_FLOAT:
            e = clSetKernelArg(k, (cl_uint)i, sizeof f, &f);
            break;
        default:
            e = CL_INVALID_ARG_VALUE;
        }
        if (e != CL_SUCCESS) {
            cl_fail(ctx, e, "clSetKernelArg(%s, %d)", name, i);
            return;
        }
    }
    size_t l[3];
    if (local)
        memcpy(l, local, sizeof *l * (size_t)dims);
    else
        local_choose(cl, dims, global, cl->kernel_wg[kernel], l);
    enqueue(ctx, k, name, dims, global, l);
}

void nrt_cl_launch_rows(struct nrt_ctx *ctx, int kernel, size_t rows, int nargs,
                        const struct nrt_cl_arg *args) {
    if (cl_dead(ctx)) return;
    size_t l = (size_t)CL(ctx)->wg, g = rows * l;
    nrt_cl_launch(ctx, kernel, 1, &g, &l, nargs, args);
}

/* ------------------------------------------------------------ library ops -- */

/* Sets the args of library kernel id from a list of (size, pointer) pairs
 * after the arena; 0 on failure (recorded). */
static int lib_args(struct nrt_ctx *ctx, int id, int n, ...) {
    struct nrt_cl *cl = ctx->dev;
    cl_kernel k = cl->lk[id];
    cl_int e = clSetKernelArg(k, 0, sizeof cl->arena, &cl->arena);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n && e == CL_SUCCESS; i++) {
        size_t size = va_arg(ap, size_t);
        const void *p = va_arg(ap, const void *);
        e = clSetKernelArg(k, (cl_uint)(i + 1), size, p);
    }
    va_end(ap);
    if (e != CL_SUCCESS) cl_fail(ctx, e, "clSetKernelArg(%s)", lib_kernel_names[id]);
    return e == CL_SUCCESS;
}

#define ARG(v) sizeof(v), (const void *)&(v)

/* Launches library kernel id over a 1-D range of n; profiled as the
 * kernel's name followed by `what` (NULL: nothing), e.g. a plane's shape. */
static void lib_run1_as(struct nrt_ctx *ctx, int id, int64_t n, const char *what) {
    size_t g = (size_t)n, l;
    local_choose(ctx->dev, 1, &g, CL(ctx)->max_wg, &l);
    char name[96];
    snprintf(name, sizeof name, "%s%s%s", lib_kernel_names[id], what ? " " : "", what ? what : "");
    enqueue(ctx, CL(ctx)->lk[id], name, 1, &g, &l);
}

static void lib_run1(struct nrt_ctx *ctx, int id, int64_t n) { lib_run1_as(ctx, id, n, NULL); }

/* "HxW" of a pooling's input planes, for the profile. */
static const char *pool_shape(const struct nrt_pool *p, char *buf, size_t len) {
    snprintf(buf, len, "%lldx%lld", (long long)p->h, (long long)p->w);
    return buf;
}

/* Whether every extent fits the kernels' int indices. */
static int fits_int(struct nrt_ctx *ctx, const char *what, int64_t elems) {
    if (elems >= 0 && elems < INT32_MAX) return 1;
    cl_fail(ctx, CL_INVALID_VALUE, "%s: %lld elements exceed the kernels' 32-bit indices", what,
            (long long)elems);
    return 0;
}

/* One nrt_gemm_rb launch (cl_kernels.cl has the operands' layout): A and B
 * in buffer abuf / bbuf (the arena or the packing buffer), C in the arena;
 * k = kl*ns, batch nz. A's row i at aoff + row(i): rk = {0, 0} (taken as
 * {1, 1}) a plain matrix of row stride ars; segment s at (s % nsd)*asg +
 * (s / nsd)*asg1 (nsd 0: taken as ns, asg1 unused), likewise for B; cw > 0
 * maps C's columns to pixels (cmap in cl_kernels.cl). */
struct rb_gemm {
    cl_mem abuf;
    int64_t aoff, ars, acs, asg, abz;
    cl_mem bbuf;
    int64_t boff, ldb, bsg, bbz;
    cl_mem cbuf; /* C's buffer (NULL: the arena, which a fused bias is read from too) */
    int64_t coff, ldc, cbz;
    int ct;
    int64_t m, n, kl, ns, nz;
    float alpha, beta;
    int64_t bias; /* the fused bias's offset (bmode 1: per row i, 2: per column j) */
    int bmode, relu;
    int64_t rk[2], rs[2];    /* row(i) = (i % rk0)*rs0 + (i / rk0 % rk1)*rs1 + i / (rk0*rk1) * ars */
    int64_t nsd, asg1, bsg1; /* the segments' second level */
    int64_t cw, cwo;         /* C's column map */
};
static void rb_run(struct nrt_ctx *ctx, const struct rb_gemm *g) {
    struct nrt_cl *cl = ctx->dev;
    if (g->m <= 0 || g->n <= 0 || g->nz <= 0) return;
    int implicit = g->rk[0] > 0 || g->nsd > 0 || g->cw > 0;
    cl_kernel k = cl->lk[implicit ? LK_GEMM_RBX : LK_GEMM_RB];
    int64_t nsd = g->nsd > 0 ? g->nsd : g->ns > 0 ? g->ns : 1;
    cl_long4 ars = {{g->rk[0] > 0 ? g->rs[0] : 0, g->rk[0] > 0 ? g->rs[1] : 0, g->ars, 0}};
    cl_long2 asg = {{g->asg, g->asg1}}, bsg = {{g->bsg, g->bsg1}};
    cl_long l[8] = {g->aoff, g->acs, g->abz, g->boff, g->ldb, g->bbz, g->coff, g->ldc};
    cl_long cbz = g->cbz;
    cl_int ints[5] = {g->ct, (cl_int)g->m, (cl_int)g->n, (cl_int)(g->kl > 0 ? g->kl : 0), (cl_int)g->ns};
    cl_float f[2] = {g->alpha, g->beta};
    cl_long bias = g->bias;
    cl_int2 rk = {{g->rk[0] > 0 ? (cl_int)g->rk[0] : 1, g->rk[1] > 0 ? (cl_int)g->rk[1] : 1}};
    cl_int insd = (cl_int)nsd;
    cl_int2 cmap = {{(cl_int)g->cw, (cl_int)g->cwo}};
    /* Whether B's buffer holds every whole vector of the last column block
     * (the kernel's bover): all strides are >= 0. */
    int64_t w = (int64_t)cl->rb.rbn * cl->rb.rbv, ns = g->ns > 0 ? g->ns : 1,
            last = g->boff + (g->nz - 1) * g->bbz + ((ns < nsd ? ns : nsd) - 1) * g->bsg +
                   (ns - 1) / nsd * g->bsg1 + (g->kl > 0 ? g->kl - 1 : 0) * g->ldb + (g->n - 1) / w * w + w;
    int64_t belems = g->bbuf == cl->arena  ? cl->arena_elems
                     : g->bbuf == cl->wino ? (int64_t)cl->wino_elems
                                           : (int64_t)cl->pack_elems;
    cl_mem cbuf = g->cbuf ? g->cbuf : cl->arena;
    cl_int ep[3] = {g->bmode, g->relu, last <= belems};
    /* (index, size, pointer) of each argument */
    const struct {
        cl_uint i;
        size_t size;
        const void *p;
    } args[] = {
        {0, sizeof(cl_mem), &g->abuf},
        {1, 8, &l[0]},
        {2, sizeof ars, &ars},
        {3, 8, &l[1]},
        {4, sizeof asg, &asg},
        {5, 8, &l[2]},
        {6, sizeof(cl_mem), &g->bbuf},
        {7, 8, &l[3]},
        {8, 8, &l[4]},
        {9, sizeof bsg, &bsg},
        {10, 8, &l[5]},
        {11, sizeof(cl_mem), &cbuf},
        {12, 8, &l[6]},
        {13, 8, &l[7]},
        {14, 8, &cbz},
        {15, 4, &ints[0]},
        {16, 4, &ints[1]},
        {17, 4, &ints[2]},
        {18, 4, &ints[3]},
        {19, 4, &ints[4]},
        {20, 4, &f[0]},
        {21, 4, &f[1]},
        {22, 8, &bias},
        {23, 4, &ep[0]},
        {24, 4, &ep[1]},
        {25, 4, &ep[2]},
        {26, sizeof rk, &rk},
        {27, 4, &insd},
        {28, sizeof cmap, &cmap},
    };
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        cl_int e = clSetKernelArg(k, args[i].i, args[i].size, args[i].p);
        if (e != CL_SUCCESS) {
            cl_fail(ctx, e, "clSetKernelArg(nrt_gemm_rb, %u)", args[i].i);
            return;
        }
    }
    size_t global[3] = {(size_t)((g->n + w - 1) / w), (size_t)((g->m + cl->rb.rbm - 1) / cl->rb.rbm),
                        (size_t)g->nz},
           local[3] = {1, 1, 1};
    char name[96];
    snprintf(name, sizeof name, "%s", implicit ? "nrt_gemm_rbx" : "nrt_gemm_rb");
    cl->next_flop = 2.0 * (double)g->m * (double)g->n * (double)(g->kl * g->ns) * (double)g->nz;
    if (cl->prof)
        snprintf(name, sizeof name, "%s %lldx%lldx%lld%s%s", implicit ? "nrt_gemm_rbx" : "nrt_gemm_rb",
                 (long long)g->m, (long long)g->n, (long long)(g->kl * g->ns), g->nz > 1 ? " batch" : "",
                 g->ct ? " ct" : "");
    enqueue(ctx, k, name, 3, global, local);
}

/* The packing buffer with room for elems floats (grown as needed), or NULL
 * (the failure recorded). */
static cl_mem pack_get(struct nrt_ctx *ctx, int64_t elems) {
    struct nrt_cl *cl = ctx->dev;
    size_t want = (size_t)(elems > 0 ? elems : 1);
    if (cl->pack && cl->pack_elems >= want) return cl->pack;
    if (cl->pack) clReleaseMemObject(cl->pack);
    cl->pack = NULL;
    cl->pack_elems = 0;
    if (want < cl->pack_elems * 2) want = cl->pack_elems * 2;
    cl_int e;
    cl->pack = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, want * 4, NULL, &e);
    if (!cl->pack) {
        cl_fail(ctx, e, "clCreateBuffer(%zu bytes for a packed GEMM operand)", want * 4);
        return NULL;
    }
    cl->pack_elems = want;
    return cl->pack;
}

/* P_z[p*rows + i] = arena[in + z*bs + i*ld + p] (i < rows, p < cols, z <
 * nz; P_z at z*rows*cols) into the packing buffer, which it returns (NULL on
 * failure). */
static cl_mem transpose_pack(struct nrt_ctx *ctx, int64_t in, int64_t ld, int64_t rows, int64_t cols,
                             int64_t nz, int64_t bs) {
    if (!fits_int(ctx, "packed operand", rows * cols)) return NULL;
    cl_mem p = pack_get(ctx, nz * rows * cols);
    if (!p || nz * rows * cols == 0) return p;
    cl_long io = in, ibs = bs;
    cl_int ild = (cl_int)ld, ir = (cl_int)rows, ic = (cl_int)cols;
    if (!lib_args(ctx, LK_TRANSPOSE, 6, ARG(io), ARG(ild), ARG(ir), ARG(ic), ARG(p), ARG(ibs))) return NULL;
    size_t global[2] = {(size_t)cols, (size_t)nz}, local[2];
    local_choose(ctx->dev, 1, global, CL(ctx)->max_wg, local);
    local[1] = 1;
    enqueue(ctx, CL(ctx)->lk[LK_TRANSPOSE], "nrt_transpose", 2, global, local);
    return p;
}

/* C = alpha op(A) op(B) + beta C by nrt_gemm_rb: A B and A^T B directly, A^T
 * B^T as its transpose C^T = B A (C stored transposed), A B^T with the smaller
 * of A and B transposed into the packing buffer first. */
static void sgemm_rb(struct nrt_ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     int64_t a, int64_t lda, int64_t b, int64_t ldb, float beta, int64_t c, int64_t ldc,
                     int64_t bias, int relu) {
    cl_mem arena = CL(ctx)->arena;
    struct rb_gemm g = {.abuf = arena,
                        .bbuf = arena,
                        .coff = c,
                        .ldc = ldc,
                        .kl = k,
                        .ns = 1,
                        .nz = 1,
                        .alpha = alpha,
                        .beta = beta,
                        .bias = bias < 0 ? 0 : bias,
                        .relu = relu};
    if (!tb) { /* C = op(A) B */
        g.aoff = a, g.ars = ta ? 1 : lda, g.acs = ta ? lda : 1;
        g.boff = b, g.ldb = ldb, g.m = m, g.n = n;
    } else if (ta) { /* C^T = B A: A' = B [n, k] by rows, B' = A [k, m] */
        g.aoff = b, g.ars = ldb, g.acs = 1;
        g.boff = a, g.ldb = lda, g.m = n, g.n = m, g.ct = 1;
    } else if (m <= n) { /* C^T = B A^T, A^T [k, m] packed */
        if (!(g.bbuf = transpose_pack(ctx, a, lda, m, k, 1, 0))) return;
        g.aoff = b, g.ars = ldb, g.acs = 1;
        g.boff = 0, g.ldb = m, g.m = n, g.n = m, g.ct = 1;
    } else { /* C = A B^T, B^T [k, n] packed */
        if (!(g.bbuf = transpose_pack(ctx, b, ldb, n, k, 1, 0))) return;
        g.aoff = a, g.ars = lda, g.acs = 1;
        g.boff = 0, g.ldb = n, g.m = m, g.n = n;
    }
    if (bias >= 0) g.bmode = g.ct ? 1 : 2; /* per column of C */
    rb_run(ctx, &g);
}

void nrt_cl_fuse_next(struct nrt_ctx *ctx, int64_t bias, int relu) {
    if (cl_dead(ctx)) return;
    CL(ctx)->ep_bias = bias;
    CL(ctx)->ep_relu = relu;
}

/* The pending nrt_cl_fuse_next (bias -1: none), cleared. */
static int64_t fuse_take(struct nrt_ctx *ctx, int *relu) {
    struct nrt_cl *cl = ctx->dev;
    int64_t b = cl ? cl->ep_bias : -1;
    *relu = cl ? cl->ep_relu : 0;
    if (cl) cl->ep_bias = -1, cl->ep_relu = 0;
    return b;
}

/* The fused bias and relu over y [rows, cols] (rows ld apart) where the GEMM
 * did not apply them: bias per row r % mod (mod > 0), else per column. */
static void bias_act(struct nrt_ctx *ctx, int64_t y, int64_t rows, int64_t cols, int64_t ld, int64_t bias,
                     int64_t mod, int relu) {
    cl_long yo = y, bo = bias;
    cl_int ir = (cl_int)rows, ic = (cl_int)cols, il = (cl_int)ld, im = (cl_int)mod, irl = relu;
    if (lib_args(ctx, LK_BIAS_ACT, 7, ARG(yo), ARG(ir), ARG(ic), ARG(il), ARG(bo), ARG(im), ARG(irl)))
        lib_run1(ctx, LK_BIAS_ACT, rows);
}

/* C = alpha A B^T + beta C by nrt_sgemm_dot, k in ns segments of kl (see
 * cl_kernels.cl). */
static void sgemm_dot(struct nrt_ctx *ctx, int64_t m, int64_t n, int64_t kl, int64_t ns, float alpha,
                      int64_t a, int64_t lda, int64_t asg, int64_t b, int64_t ldb, int64_t bsg, float beta,
                      int64_t c, int64_t ldc) {
    cl_long ao = a, bo = b, co = c, as = asg, bs = bsg;
    cl_int ilda = (cl_int)lda, ildb = (cl_int)ldb, ildc = (cl_int)ldc, im = (cl_int)m, in = (cl_int)n,
           ik = (cl_int)(kl > 0 ? kl : 0), ins = (cl_int)ns;
    cl_float al = alpha, be = beta;
    if (!lib_args(ctx, LK_SGEMM_DOT, 14, ARG(ao), ARG(ilda), ARG(bo), ARG(ildb), ARG(co), ARG(ildc), ARG(im),
                  ARG(in), ARG(ik), ARG(al), ARG(be), ARG(ins), ARG(as), ARG(bs)))
        return;
    size_t global[2] = {(size_t)((n + 15) / 16), (size_t)m}, local[2]; /* DOTJ = 16 outputs per work-item */
    local_choose(ctx->dev, 2, global, CL(ctx)->max_wg, local);
    if (CL(ctx)->cpu) local[0] = local[1] = 1; /* its vectors are explicit: one work-item per group */
    CL(ctx)->next_flop = 2.0 * (double)m * (double)n * (double)(kl * ns);
    enqueue(ctx, CL(ctx)->lk[LK_SGEMM_DOT], "nrt_sgemm_dot", 2, global, local);
}

/* A batch of nz tiled GEMMs by nrt_sgemm (cl_kernels.cl): C_z = alpha
 * op(A_z) op(B_z) + beta C_z, then the bias (bmode 1: per row of C, 2: per
 * column; at `bias` in C's buffer) and relu; A_z at aoff + z*abz in abuf,
 * likewise B and C; the last item's k is klast (a split GEMM's last k slice). */
struct tiled_gemm {
    cl_mem abuf;
    int64_t aoff, lda, abz;
    cl_mem bbuf;
    int64_t boff, ldb, bbz;
    cl_mem cbuf;
    int64_t coff, ldc, cbz;
    int64_t m, n, k, nz;
    int64_t klast; /* k of the last batch item (0: k) */
    int ta, tb;
    float alpha, beta;
    int64_t bias;
    int bmode, relu;
};
static void tiled_run(struct nrt_ctx *ctx, const struct tiled_gemm *g) {
    struct nrt_cl *cl = ctx->dev;
    const struct gemm_tiles *t = &cl->tiles;
    if (g->m <= 0 || g->n <= 0 || g->nz <= 0) return;
    cl_long l[7] = {g->aoff, g->abz, g->boff, g->bbz, g->coff, g->cbz, g->bmode ? g->bias : 0};
    cl_int ints[8] = {(cl_int)g->lda, (cl_int)g->ldb, (cl_int)g->ldc,
                      (cl_int)g->m,   (cl_int)g->n,   (cl_int)(g->k > 0 ? g->k : 0),
                      g->ta != 0,     g->tb != 0};
    cl_int ep[3] = {g->bmode, g->relu, (cl_int)(g->klast > 0 ? g->klast : g->k > 0 ? g->k : 0)};
    cl_float f[2] = {g->alpha, g->beta};
    const struct {
        size_t size;
        const void *p;
    } args[] = {
        {sizeof(cl_mem), &g->abuf},
        {8, &l[0]},
        {4, &ints[0]},
        {8, &l[1]},
        {sizeof(cl_mem), &g->bbuf},
        {8, &l[2]},
        {4, &ints[1]},
        {8, &l[3]},
        {sizeof(cl_mem), &g->cbuf},
        {8, &l[4]},
        {4, &ints[2]},
        {8, &l[5]},
        {4, &ints[3]},
        {4, &ints[4]},
        {4, &ints[5]},
        {4, &ints[6]},
        {4, &ints[7]},
        {4, &f[0]},
        {4, &f[1]},
        {8, &l[6]},
        {4, &ep[0]},
        {4, &ep[1]},
        {4, &ep[2]},
    };
    cl_kernel k = cl->lk[LK_SGEMM];
    for (size_t i = 0; i < sizeof args / sizeof *args; i++) {
        cl_int e = clSetKernelArg(k, (cl_uint)i, args[i].size, args[i].p);
        if (e != CL_SUCCESS) {
            cl_fail(ctx, e, "clSetKernelArg(nrt_sgemm, %zu)", i);
            return;
        }
    }
    int64_t tm = t->ry * t->wm, tn = t->rx * t->vw;
    size_t local[3] = {(size_t)t->rx, (size_t)t->ry, 1};
    size_t global[3] = {(size_t)((g->n + tn - 1) / tn) * local[0], (size_t)((g->m + tm - 1) / tm) * local[1],
                        (size_t)g->nz};
    char name[96] = "nrt_sgemm";
    cl->next_flop = 2.0 * (double)g->m * (double)g->n * (double)(g->k * (g->nz - 1) + ep[2]);
    if (cl->prof)
        snprintf(name, sizeof name, "nrt_sgemm %lldx%lldx%lld%s%s%s", (long long)g->m, (long long)g->n,
                 (long long)g->k, g->ta ? " ta" : "", g->tb ? " tb" : "", g->nz > 1 ? " batch" : "");
    enqueue(ctx, k, name, 3, global, local);
}

/* C [m, n] at c (rows ldc apart, in the arena) = the sum of the nz partial
 * products P_z [m, n] in part + beta C, the bias (bmode 1: per row, 2: per
 * column) and relu after (nrt_sum_z). */
static void sum_z(struct nrt_ctx *ctx, cl_mem part, int64_t nz, int64_t m, int64_t n, int64_t c, int64_t ldc,
                  float beta, int64_t bias, int bmode, int relu) {
    cl_long co = c, bo = bmode ? bias : 0, po = 0;
    cl_int il = (cl_int)ldc, ib = bmode, ir = relu, inz = (cl_int)nz, im = (cl_int)m, in = (cl_int)n;
    cl_float be = beta;
    if (!lib_args(ctx, LK_SUM_Z, 11, ARG(co), ARG(il), ARG(be), ARG(bo), ARG(ib), ARG(ir), ARG(part), ARG(po),
                  ARG(inz), ARG(im), ARG(in)))
        return;
    size_t global[2] = {(size_t)n, (size_t)m}, local[2];
    local_choose(ctx->dev, 2, global, CL(ctx)->max_wg, local);
    enqueue(ctx, CL(ctx)->lk[LK_SUM_Z], "nrt_sum_z", 2, global, local);
}

/* Device buffer *buf of the GPU paths with room for elems floats (below). */
static cl_mem gpu_buf(struct nrt_ctx *ctx, cl_mem *buf, size_t *have, int64_t elems);

/* With the tiled SGEMM, a product whose tile grid covers under half the
 * compute units and whose k is long (mnist_cnn's first dense layer: 64 x 128
 * outputs, 2 tiles, k = 1600) is split along k into up to `units / tiles`
 * slices of at least SPLIT_K, summed by nrt_sum_z. 0: not split. */
#define SPLIT_K 128
static int split_k(struct nrt_ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                   int64_t a, int64_t lda, int64_t b, int64_t ldb, float beta, int64_t c, int64_t ldc,
                   int64_t bias, int relu) {
    struct nrt_cl *cl = ctx->dev;
    const struct gemm_tiles *t = &cl->tiles;
    int64_t tiles = ((m + t->ry * t->wm - 1) / (t->ry * t->wm)) * ((n + t->rx * t->vw - 1) / (t->rx * t->vw));
    int64_t s = (int64_t)cl->units / tiles, ks;
    if (k / SPLIT_K < s) s = k / SPLIT_K;
    if (s < 2 || 2 * tiles > (int64_t)cl->units) return 0;
    ks = (k + s - 1) / s;
    ks = (ks + t->tk - 1) / t->tk * t->tk;
    s = (k + ks - 1) / ks;
    if (s < 2 || !fits_int(ctx, "split GEMM", s * m * n)) return 0;
    cl_mem part = gpu_buf(ctx, &cl->gpart, &cl->gpart_elems, s * m * n);
    if (!part) return 1;
    struct tiled_gemm g = {.abuf = cl->arena,
                           .aoff = a,
                           .lda = lda,
                           .abz = ks * (ta ? lda : 1),
                           .bbuf = cl->arena,
                           .boff = b,
                           .ldb = ldb,
                           .bbz = ks * (tb ? 1 : ldb),
                           .cbuf = part,
                           .ldc = n,
                           .cbz = m * n,
                           .m = m,
                           .n = n,
                           .k = ks,
                           .nz = s,
                           .klast = k - (s - 1) * ks,
                           .ta = ta,
                           .tb = tb,
                           .alpha = alpha};
    tiled_run(ctx, &g);
    sum_z(ctx, part, s, m, n, c, ldc, beta, bias, bias >= 0 ? 2 : 0, relu);
    return 1;
}

/* nrt_cl_sgemm, the fused bias (-1: none) and relu applied. */
static void sgemm_ep(struct nrt_ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     int64_t a, int64_t lda, int64_t b, int64_t ldb, float beta, int64_t c, int64_t ldc,
                     int64_t bias, int relu);

void nrt_cl_sgemm(struct nrt_ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                  int64_t a, int64_t lda, int64_t b, int64_t ldb, float beta, int64_t c, int64_t ldc) {
    int relu;
    int64_t bias = fuse_take(ctx, &relu);
    sgemm_ep(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, relu);
}

static void sgemm_ep(struct nrt_ctx *ctx, int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha,
                     int64_t a, int64_t lda, int64_t b, int64_t ldb, float beta, int64_t c, int64_t ldc,
                     int64_t bias, int relu) {
    if (cl_dead(ctx) || m <= 0 || n <= 0) return;
    if (k < 0) k = 0;
    if (!fits_int(ctx, "sgemm A", (ta ? k : m) * lda) || !fits_int(ctx, "sgemm B", (tb ? n : k) * ldb) ||
        !fits_int(ctx, "sgemm C", m * ldc))
        return;
    const struct nrt_cl *cl = ctx->dev;
    const struct gemm_tiles *t = &cl->tiles;
    int64_t tm = t->ry * t->wm, tn = t->rx * t->vw, groups = ((m + tm - 1) / tm) * ((n + tn - 1) / tn);
    if (cl->rb.rbm) {
        int64_t w = (int64_t)cl->rb.rbn * cl->rb.rbv, bm = cl->rb.rbm;
        groups = m <= n ? ((n + bm - 1) / bm) * ((m + w - 1) / w) : ((m + bm - 1) / bm) * ((n + w - 1) / w);
    }
    if (!cl->rb.rbm && split_k(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, relu)) return;
    if (!ta && tb && k >= 256 &&
        groups < 2 * (int64_t)cl->units) { /* Too few tiles to fill the device: a dot product per output. */
        sgemm_dot(ctx, m, n, k, 1, alpha, a, lda, 0, b, ldb, 0, beta, c, ldc);
        if (bias >= 0) bias_act(ctx, c, m, n, ldc, bias, 0, relu);
        return;
    }
    if (cl->rb.rbm) {
        sgemm_rb(ctx, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc, bias, relu);
        return;
    }
    struct tiled_gemm g = {.abuf = cl->arena,
                           .aoff = a,
                           .lda = lda,
                           .bbuf = cl->arena,
                           .boff = b,
                           .ldb = ldb,
                           .cbuf = cl->arena,
                           .coff = c,
                           .ldc = ldc,
                           .m = m,
                           .n = n,
                           .k = k,
                           .nz = 1,
                           .ta = ta,
                           .tb = tb,
                           .alpha = alpha,
                           .beta = beta,
                           .bias = bias,
                           .bmode = bias >= 0 ? 2 : 0,
                           .relu = relu};
    tiled_run(ctx, &g);
}

/* nz GEMMs C_z = op(A_z) B_z (beta 0) for the convolutions, A_z(i, p) at
 * a + z*abz + i*ars + p*acs (one of ars, acs 1), B_z [k, n] at b + z*bbz by
 * rows of ldb, C_z at c + z*cbz by rows of ldc: one nrt_gemm_rb launch (the
 * register-block GEMM's devices; with the tiled SGEMM convolutions take
 * gpu_conv2d and its gradients). */
static void gemm_batch(struct nrt_ctx *ctx, int64_t nz, int64_t m, int64_t n, int64_t k, int64_t a,
                       int64_t ars, int64_t acs, int64_t abz, int64_t b, int64_t ldb, int64_t bbz, int64_t c,
                       int64_t ldc, int64_t cbz, int64_t bias, int relu) {
    struct rb_gemm g = {.abuf = CL(ctx)->arena,
                        .aoff = a,
                        .ars = ars,
                        .acs = acs,
                        .abz = abz,
                        .bbuf = CL(ctx)->arena,
                        .boff = b,
                        .ldb = ldb,
                        .bbz = bbz,
                        .coff = c,
                        .ldc = ldc,
                        .cbz = cbz,
                        .m = m,
                        .n = n,
                        .kl = k,
                        .ns = 1,
                        .nz = nz,
                        .alpha = 1.0f,
                        .beta = 0.0f,
                        .bias = bias < 0 ? 0 : bias,
                        .bmode = bias >= 0 ? 1 : 0,
                        .relu = relu};
    rb_run(ctx, &g);
}

/* The conv geometry as the kernels take it. */
struct conv_args {
    cl_int8 g0; /* ci, h, w, kh, kw, ho, wo, cig */
    cl_int4 g1; /* s0, s1, p0, p1 */
    cl_int2 d;  /* d0, d1 */
};

static struct conv_args conv_args(const struct nrt_conv *c) {
    struct conv_args a;
    memset(&a, 0, sizeof a);
    int64_t v[8] = {c->ci, c->h, c->w, c->kh, c->kw, c->ho, c->wo, c->ci / c->g};
    for (int i = 0; i < 8; i++) a.g0.s[i] = (cl_int)v[i];
    a.g1.s[0] = (cl_int)c->s[0], a.g1.s[1] = (cl_int)c->s[1], a.g1.s[2] = (cl_int)c->p[0];
    a.g1.s[3] = (cl_int)c->p[1];
    a.d.s[0] = (cl_int)c->d[0], a.d.s[1] = (cl_int)c->d[1];
    return a;
}

/* The im2col matrix of nb images from x (group g) at col, col(b, r, q) at
 * col + b*cs0 + r*cs1 + q*cs2 (cl_kernels.cl). */
static void im2col(struct nrt_ctx *ctx, const struct nrt_conv *c, const struct conv_args *ca, int64_t x,
                   int64_t nb, int64_t g, int64_t col, int64_t cs0, int64_t cs1, int64_t cs2) {
    int64_t cig = c->ci / c->g;
    cl_long xo = x + g * cig * c->h * c->w, co = col;
    cl_long4 cs = {{cs0, cs1, cs2, 0}};
    cl_int inb = (cl_int)nb;
    if (lib_args(ctx, LK_IM2COL, 7, ARG(xo), ARG(co), ARG(inb), ARG(ca->g0), ARG(ca->g1), ARG(ca->d),
                 ARG(cs)))
        lib_run1(ctx, LK_IM2COL, nb * cig);
}

/* Checks a conv geometry against the kernels' int indices. */
static int conv_ok(struct nrt_ctx *ctx, const struct nrt_conv *c) {
    return c->g > 0 && fits_int(ctx, "conv input", c->n * c->ci * c->h * c->w) &&
           fits_int(ctx, "conv output", c->n * c->co * c->ho * c->wo) &&
           fits_int(ctx, "conv scratch", nrt_conv_scratch(c));
}

/* Images per chunk: as many im2col matrices of one group as the scratch
 * (nrt_conv_scratch floats) holds. */
static int64_t conv_images(const struct nrt_conv *c) {
    int64_t per = c->ci / c->g * c->kh * c->kw * c->ho * c->wo, nb = per > 0 ? nrt_conv_scratch(c) / per : 1;
    return nb < 1 ? 1 : nb > c->n ? c->n : nb;
}

/* Whether conv c reads its input inside the GEMM (implicit GEMM): the
 * register-block GEMM, stride 1 and no padding, so that tap (ch, i, j) of
 * output pixel (oh, ow) is x[ch*h*w + i*d0*w + j*d1 + oh*w + ow]. */
static int conv_implicit(const struct nrt_cl *cl, const struct nrt_conv *c) {
    return cl->rb.rbm && cl->rb.implicit && c->s[0] == 1 && c->s[1] == 1 && !c->p[0] && !c->p[1] &&
           !c->p[2] && !c->p[3];
}

/* ------------------------------------------ Winograd convolutions (CPU) -- */
/* 3x3 stride-1 convolutions (one group, channels in and out multiples of the
 * vector width, no negative padding) on CPU devices by Winograd's F(4x4,
 * 3x3), the forward pass and both gradients, each where NETC_CL_WINOGRAD
 * allows it (a mask: 1 forward, 2 input gradient, 4 weight gradient; default
 * all; 0 none): the transforms of cl_kernels.cl around 36 batched
 * register-block GEMMs (36 multiplies per 4x4 outputs and channel pair
 * instead of 144), a chunk of images at a time in a buffer of their own
 * (cl->wino). The forward's outputs whose 3x3 field is all zero come out
 * exactly act(bias), as direct convolution gives them (Winograd's 6x6 patch
 * would turn them into rounding noise, and a relu after them would take
 * either side of its kink at random). */

#define WINO_FWD 1
#define WINO_DX 2
#define WINO_DW 4

/* Whether op `which` of conv c runs by Winograd here. */
static int wino_ok(const struct nrt_cl *cl, const struct nrt_conv *c, int which) {
    const char *env = getenv("NETC_CL_WINOGRAD");
    int mask = env && *env ? atoi(env) : WINO_FWD | WINO_DX | WINO_DW;
    return (mask & which) && cl->rb.rbm && cl->rb.implicit && c->kh == 3 && c->kw == 3 && c->s[0] == 1 &&
           c->s[1] == 1 && c->d[0] == 1 && c->d[1] == 1 && c->g == 1 && c->ci % cl->rb.rbv == 0 &&
           c->co % cl->rb.rbv == 0 && c->p[0] >= 0 && c->p[1] >= 0 && c->p[2] >= 0 && c->p[3] >= 0 &&
           c->ho >= 1 && c->wo >= 1 && c->n >= 1;
}

/* One call's tiling: th x tw tiles of 4x4 outputs per image, chunks of nb
 * images (T = nb*t tiles), and the floats of its buffers. */
struct wino {
    int64_t th, tw, t, nb;
};

/* Floats of a chunk's buffers besides the weights' (about 1.5 MiB: a chunk's
 * V and M stay in the caches between the transforms and the GEMMs;
 * mnist_cnn's second layer: 8 images a chunk, 10.4 ms a training step at 1
 * thread against 13.3 ms with the whole batch of 64 and 12.4 ms with 2). */
#define WINO_FLOATS ((int64_t)3 << 17)

/* The tiling of c, with chunks of as many images as WINO_FLOATS hold at
 * `per` floats an image (NETC_CL_WINO_IMAGES=N: N), evened out over the
 * batch. */
static struct wino wino_tiling(const struct nrt_conv *c, int64_t per) {
    struct wino k = {(c->ho + 3) / 4, (c->wo + 3) / 4, 0, 1};
    k.t = k.th * k.tw;
    const char *env = getenv("NETC_CL_WINO_IMAGES");
    int64_t nb = env && atoll(env) > 0 ? atoll(env) : WINO_FLOATS / (per > 0 ? per : 1);
    if (nb < 1) nb = 1;
    if (nb > c->n) nb = c->n;
    int64_t chunks = (c->n + nb - 1) / nb;
    k.nb = (c->n + chunks - 1) / chunks;
    return k;
}

/* Floats rounded up to 16 (64-byte aligned offsets). */
static int64_t al16(int64_t n) { return (n + 15) / 16 * 16; }

/* U (tr 0: [36][ci][co]) or U^T (tr 1: [36][co][ci]) of the weights at w
 * into cl->wino at uoff. */
static void wino_weights(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t w, int64_t uoff, int tr) {
    struct nrt_cl *cl = ctx->dev;
    cl_long wo = w, uo = uoff;
    cl_int ci = (cl_int)c->ci, co = (cl_int)c->co, itr = tr;
    if (!lib_args(ctx, LK_WINO_U, 6, ARG(wo), ARG(cl->wino), ARG(uo), ARG(ci), ARG(co), ARG(itr))) return;
    size_t global[2] = {(size_t)((tr ? c->ci : c->co) / cl->rb.rbv), (size_t)(tr ? c->co : c->ci)},
           local[2] = {1, 1};
    enqueue(ctx, cl->lk[LK_WINO_U], "nrt_wino_u", 2, global, local);
}

/* The tiles' V (and with zoff >= 0 their all-zero outputs) of nb images at
 * x into cl->wino (nrt_wino_v, staging at soff: nb*h*w*(rbv + 1) floats). */
static void wino_input(struct nrt_ctx *ctx, const struct nrt_conv *c, const struct wino *k, int64_t x,
                       int64_t nb, int64_t soff, int64_t voff, int64_t zoff) {
    struct nrt_cl *cl = ctx->dev;
    cl_long xo = x, so = soff, vo = voff, zo = zoff;
    cl_int8 g = {{(cl_int)c->ci, (cl_int)c->h, (cl_int)c->w, (cl_int)c->ho, (cl_int)c->wo, (cl_int)k->th,
                  (cl_int)k->tw, (cl_int)(nb * k->t)}};
    cl_int2 p = {{(cl_int)c->p[0], (cl_int)c->p[1]}};
    if (!lib_args(ctx, LK_WINO_V, 7, ARG(xo), ARG(cl->wino), ARG(so), ARG(vo), ARG(zo), ARG(g), ARG(p)))
        return;
    size_t global[1] = {(size_t)nb}, local[1] = {1};
    enqueue(ctx, cl->lk[LK_WINO_V], "nrt_wino_v", 1, global, local);
}

/* The tiles' E of nb images' output gradient at dy into cl->wino
 * (nrt_wino_e, staging at soff: nb*ho*wo*rbv floats). */
static void wino_dy(struct nrt_ctx *ctx, const struct nrt_conv *c, const struct wino *k, int64_t dy,
                    int64_t nb, int64_t soff, int64_t eoff) {
    struct nrt_cl *cl = ctx->dev;
    cl_long dof = dy, so = soff, eo = eoff;
    cl_int8 g = {{(cl_int)c->co, (cl_int)c->ho, (cl_int)c->wo, (cl_int)k->th, (cl_int)k->tw,
                  (cl_int)(nb * k->t), 0, 0}};
    if (!lib_args(ctx, LK_WINO_E, 5, ARG(dof), ARG(cl->wino), ARG(so), ARG(eo), ARG(g))) return;
    size_t global[1] = {(size_t)nb}, local[1] = {1};
    enqueue(ctx, cl->lk[LK_WINO_E], "nrt_wino_e", 1, global, local);
}

/* The 36 products C[e] = A[e] B[e] (A [m][k] by rows of ars, or ars 1 and
 * columns of acs: A^T), all in cl->wino, one batched launch. */
static void wino_gemm(struct nrt_ctx *ctx, int64_t m, int64_t n, int64_t kl, int64_t a, int64_t ars,
                      int64_t acs, int64_t b, int64_t c, float beta) {
    struct nrt_cl *cl = ctx->dev;
    struct rb_gemm g = {.abuf = cl->wino,
                        .aoff = a,
                        .ars = ars,
                        .acs = acs,
                        .abz = m * kl,
                        .bbuf = cl->wino,
                        .boff = b,
                        .ldb = n,
                        .bbz = kl * n,
                        .cbuf = cl->wino,
                        .coff = c,
                        .ldc = n,
                        .cbz = m * n,
                        .m = m,
                        .n = n,
                        .kl = kl,
                        .ns = 1,
                        .nz = 36,
                        .alpha = 1.0f,
                        .beta = beta};
    rb_run(ctx, &g);
}

/* y = act(conv2d(x, w) + bias) (bias < 0: none). */
static void wino_conv2d(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t x, int64_t w, int64_t y,
                        int64_t bias, int relu) {
    struct nrt_cl *cl = ctx->dev;
    int64_t ci = c->ci, co = c->co, hw = c->h * c->w, rbv = cl->rb.rbv;
    int64_t uf = al16(36 * ci * co), t = (c->ho + 3) / 4 * ((c->wo + 3) / 4), howo = c->ho * c->wo;
    struct wino k = wino_tiling(c, hw * (rbv + 1) + 36 * t * (ci + co) + t + howo * co + 64);
    int64_t T = k.nb * k.t, soff = uf, voff = soff + al16(k.nb * hw * (rbv + 1)),
            moff = voff + al16(36 * T * ci), zoff = moff + al16(36 * T * co), yst = zoff + al16(T),
            end = yst + k.nb * howo * co;
    if (!fits_int(ctx, "Winograd buffer", end) || !gpu_buf(ctx, &cl->wino, &cl->wino_elems, end)) return;
    wino_weights(ctx, c, w, 0, 0);
    for (int64_t b0 = 0; b0 < c->n; b0 += k.nb) {
        int64_t nb = c->n - b0 < k.nb ? c->n - b0 : k.nb, Tc = nb * k.t;
        wino_input(ctx, c, &k, x + b0 * ci * hw, nb, soff, voff, zoff);
        wino_gemm(ctx, Tc, co, ci, voff, ci, 1, 0, moff, 0.0f);
        cl_long mo = moff, zo = zoff, so = yst, yo = y + b0 * co * howo, bo = bias >= 0 ? bias : 0;
        cl_int irelu = relu;
        cl_int8 g = {
            {(cl_int)co, (cl_int)c->ho, (cl_int)c->wo, (cl_int)k.th, (cl_int)k.tw, (cl_int)Tc, bias >= 0, 0}};
        if (!lib_args(ctx, LK_WINO_Y, 8, ARG(cl->wino), ARG(mo), ARG(zo), ARG(so), ARG(yo), ARG(bo),
                      ARG(irelu), ARG(g)))
            return;
        size_t global[2] = {(size_t)(co / rbv), (size_t)nb}, local[2] = {1, 1};
        enqueue(ctx, cl->lk[LK_WINO_Y], "nrt_wino_y", 2, global, local);
    }
}

/* dx = conv2d_grad_input(dy, w). */
static void wino_grad_input(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t dy, int64_t w,
                            int64_t dx) {
    struct nrt_cl *cl = ctx->dev;
    int64_t ci = c->ci, co = c->co, th = (c->ho + 3) / 4, tw = (c->wo + 3) / 4, hp = 4 * th + 2,
            wp = 4 * tw + 2;
    int64_t uf = al16(36 * ci * co), rbv = cl->rb.rbv, howo = c->ho * c->wo;
    struct wino k = wino_tiling(c, howo * rbv + 36 * th * tw * (ci + co) + hp * wp * ci + 48);
    int64_t T = k.nb * k.t, soff = uf, eoff = soff + al16(k.nb * howo * rbv), zoff = eoff + al16(36 * T * co),
            poff = zoff + al16(36 * T * ci), end = poff + k.nb * hp * wp * ci;
    if (!fits_int(ctx, "Winograd buffer", end) || !gpu_buf(ctx, &cl->wino, &cl->wino_elems, end)) return;
    wino_weights(ctx, c, w, 0, 1);
    for (int64_t b0 = 0; b0 < c->n; b0 += k.nb) {
        int64_t nb = c->n - b0 < k.nb ? c->n - b0 : k.nb, Tc = nb * k.t;
        wino_dy(ctx, c, &k, dy + b0 * co * howo, nb, soff, eoff);
        wino_gemm(ctx, Tc, ci, co, eoff, co, 1, 0, zoff, 0.0f);
        cl_long zo = zoff, po = poff, dxo = dx + b0 * ci * c->h * c->w;
        cl_int8 g = {{(cl_int)ci, (cl_int)c->h, (cl_int)c->w, (cl_int)th, (cl_int)tw, (cl_int)Tc, (cl_int)hp,
                      (cl_int)wp}};
        cl_int2 q = {{(cl_int)c->p[0], (cl_int)c->p[1]}};
        if (!lib_args(ctx, LK_WINO_DX, 6, ARG(cl->wino), ARG(zo), ARG(po), ARG(dxo), ARG(g), ARG(q))) return;
        size_t global[2] = {(size_t)(ci / rbv), (size_t)nb}, local[2] = {1, 1};
        enqueue(ctx, cl->lk[LK_WINO_DX], "nrt_wino_dx", 2, global, local);
    }
}

/* dw = conv2d_grad_weight(x, dy). */
static void wino_grad_weight(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t x, int64_t dy,
                             int64_t dw) {
    struct nrt_cl *cl = ctx->dev;
    int64_t ci = c->ci, co = c->co, th = (c->ho + 3) / 4, tw = (c->wo + 3) / 4, rbv = cl->rb.rbv;
    int64_t mf = al16(36 * ci * co), hw = c->h * c->w, howo = c->ho * c->wo;
    struct wino k = wino_tiling(c, hw * (rbv + 1) + howo * rbv + 36 * th * tw * (ci + co) + 64);
    int64_t T = k.nb * k.t, sx = mf, sd = sx + al16(k.nb * hw * (rbv + 1)),
            voff = sd + al16(k.nb * howo * rbv), eoff = voff + al16(36 * T * ci), end = eoff + 36 * T * co;
    if (!fits_int(ctx, "Winograd buffer", end) || !gpu_buf(ctx, &cl->wino, &cl->wino_elems, end)) return;
    for (int64_t b0 = 0; b0 < c->n; b0 += k.nb) {
        int64_t nb = c->n - b0 < k.nb ? c->n - b0 : k.nb, Tc = nb * k.t;
        wino_input(ctx, c, &k, x + b0 * ci * hw, nb, sx, voff, -1);
        wino_dy(ctx, c, &k, dy + b0 * co * howo, nb, sd, eoff);
        /* M[e] [ci][co] (+)= V[e]^T E[e], k along the chunk's tiles */
        wino_gemm(ctx, ci, co, Tc, voff, 1, ci, eoff, 0, b0 ? 1.0f : 0.0f);
    }
    cl_long mo = 0, dwo = dw;
    cl_int ici = (cl_int)ci, ico = (cl_int)co;
    if (!lib_args(ctx, LK_WINO_DW, 5, ARG(cl->wino), ARG(mo), ARG(dwo), ARG(ici), ARG(ico))) return;
    size_t global[2] = {(size_t)(co / rbv), (size_t)ci}, local[2] = {1, 1};
    enqueue(ctx, cl->lk[LK_WINO_DW], "nrt_wino_dw", 2, global, local);
}

/* ------------------------------------------------- GPU convolutions -- */
/* With the tiled SGEMM (GPUs, or NETC_CL_AS_GPU=1): a chunk of images per
 * launch, as many as GCOL_MAX floats of im2col matrices hold (mnist_cnn's
 * whole batch of 64 in 9 MB), in buffers of their own rather than the memory
 * plan's ~1 MiB scratch; kernels with a work-item per element. On an H200
 * the per-chunk, per-plane im2col/col2im (a work-item per image and
 * channel), one GEMM launch per image forward and the weight gradient's dot
 * products (32 work-items for mnist_cnn's first layer) took 75% of the
 * step. */
#define GCOL_MAX ((int64_t)16 << 20)

/* Device buffer *buf with room for elems floats (grown as needed), or NULL
 * (the failure recorded). */
static cl_mem gpu_buf(struct nrt_ctx *ctx, cl_mem *buf, size_t *have, int64_t elems) {
    struct nrt_cl *cl = ctx->dev;
    size_t want = (size_t)(elems > 0 ? elems : 1);
    if (*buf && *have >= want) return *buf;
    if (*buf) clReleaseMemObject(*buf);
    *buf = NULL;
    *have = 0;
    cl_int e;
    if (!(*buf = clCreateBuffer(cl->context, CL_MEM_READ_WRITE, want * 4, NULL, &e))) {
        cl_fail(ctx, e, "clCreateBuffer(%zu bytes for a GPU path's buffer)", want * 4);
        return NULL;
    }
    *have = want;
    return *buf;
}

/* Images per GPU chunk, and the column buffer for them (NULL on failure):
 * as many as GCOL_MAX floats hold, counting `extra` floats an image besides
 * its im2col matrix (the weight gradient's partial products).
 * NETC_CL_GPU_COLS=N caps them at N floats instead (the tests take small
 * chunks so). */
static cl_mem gpu_cols(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t extra, int64_t *chunk) {
    int64_t per = c->ci / c->g * c->kh * c->kw * c->ho * c->wo, cap = GCOL_MAX;
    const char *env = getenv("NETC_CL_GPU_COLS");
    if (env && atoll(env) > 0) cap = atoll(env);
    int64_t nb = per + extra > 0 ? cap / (per + extra) : 1;
    *chunk = nb < 1 ? 1 : nb > c->n ? c->n : nb;
    return fits_int(ctx, "conv columns", *chunk * per)
               ? gpu_buf(ctx, &CL(ctx)->gcol, &CL(ctx)->gcol_elems, *chunk * per)
               : NULL;
}

/* 3-D launch of library kernel id over global, local from local_choose. */
static void lib_run3(struct nrt_ctx *ctx, int id, const size_t *global) {
    size_t l[3];
    local_choose(ctx->dev, 3, global, CL(ctx)->max_wg, l);
    enqueue(ctx, CL(ctx)->lk[id], lib_kernel_names[id], 3, global, l);
}

/* The im2col matrices [kk, hw] of nb images (group g) from x into cols. */
static void gpu_im2col(struct nrt_ctx *ctx, const struct nrt_conv *c, const struct conv_args *ca, int64_t x,
                       int64_t nb, int64_t g, cl_mem cols) {
    int64_t cig = c->ci / c->g;
    cl_long xo = x + g * cig * c->h * c->w, co = 0;
    if (lib_args(ctx, LK_IM2COL_PX, 6, ARG(xo), ARG(cols), ARG(co), ARG(ca->g0), ARG(ca->g1), ARG(ca->d))) {
        size_t global[3] = {(size_t)(c->ho * c->wo), (size_t)(cig * c->kh * c->kw), (size_t)nb};
        lib_run3(ctx, LK_IM2COL_PX, global);
    }
}

/* Per chunk and group: im2col, then y_b = W_g col_b + bias (relu) for every
 * image of the chunk in one launch. */
static void gpu_conv2d(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t x, int64_t w, int64_t y) {
    struct conv_args ca = conv_args(c);
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo, chunk;
    int relu;
    int64_t bias = fuse_take(ctx, &relu);
    cl_mem cols = gpu_cols(ctx, c, 0, &chunk);
    for (int64_t b0 = 0; cols && b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk;
        for (int64_t g = 0; g < c->g; g++) {
            gpu_im2col(ctx, c, &ca, x + b0 * c->ci * c->h * c->w, nb, g, cols);
            struct tiled_gemm gm = {.abuf = CL(ctx)->arena,
                                    .aoff = w + g * cog * kk,
                                    .lda = kk,
                                    .bbuf = cols,
                                    .ldb = hw,
                                    .bbz = kk * hw,
                                    .cbuf = CL(ctx)->arena,
                                    .coff = y + (b0 * c->co + g * cog) * hw,
                                    .ldc = hw,
                                    .cbz = c->co * hw,
                                    .m = cog,
                                    .n = hw,
                                    .k = kk,
                                    .nz = nb,
                                    .alpha = 1.0f,
                                    .bias = bias >= 0 ? bias + g * cog : 0,
                                    .bmode = bias >= 0 ? 1 : 0,
                                    .relu = relu};
            tiled_run(ctx, &gm);
        }
    }
}

/* Per chunk and group: dcol_b = W_g^T dy_b [kk, hw] for every image in one
 * launch, then col2im gathers them into dx, a work-item per element. */
static void gpu_conv2d_grad_input(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t dy, int64_t w,
                                  int64_t dx) {
    struct conv_args ca = conv_args(c);
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo, chunk;
    cl_mem cols = gpu_cols(ctx, c, 0, &chunk);
    for (int64_t b0 = 0; cols && b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk;
        for (int64_t g = 0; g < c->g; g++) {
            struct tiled_gemm gm = {.abuf = CL(ctx)->arena,
                                    .aoff = w + g * cog * kk,
                                    .lda = kk,
                                    .bbuf = CL(ctx)->arena,
                                    .boff = dy + (b0 * c->co + g * cog) * hw,
                                    .ldb = hw,
                                    .bbz = c->co * hw,
                                    .cbuf = cols,
                                    .ldc = hw,
                                    .cbz = kk * hw,
                                    .m = kk,
                                    .n = hw,
                                    .k = cog,
                                    .nz = nb,
                                    .ta = 1,
                                    .alpha = 1.0f};
            tiled_run(ctx, &gm);
            cl_long co = 0, xo = dx + (b0 * c->ci + g * cig) * c->h * c->w;
            if (lib_args(ctx, LK_COL2IM_PX, 6, ARG(xo), ARG(cols), ARG(co), ARG(ca.g0), ARG(ca.g1),
                         ARG(ca.d))) {
                size_t global[3] = {(size_t)(c->h * c->w), (size_t)cig, (size_t)nb};
                lib_run3(ctx, LK_COL2IM_PX, global);
            }
        }
    }
}

/* Per chunk and group: im2col, the products dy_b col_b^T [cog, kk] of every
 * image in one launch (a tile grid per image: mnist_cnn's first layer's
 * 32 x 9 outputs over k = 64 x 676 had filled 32 work-items as dot
 * products), then nrt_sum_z adds them over the images into dW_g (and over
 * the chunks). */
static void gpu_conv2d_grad_weight(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t x, int64_t dy,
                                   int64_t dw) {
    struct conv_args ca = conv_args(c);
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo, chunk;
    cl_mem cols = gpu_cols(ctx, c, cog * kk, &chunk);
    cl_mem part = cols && fits_int(ctx, "conv partial products", chunk * cog * kk)
                      ? gpu_buf(ctx, &CL(ctx)->gpart, &CL(ctx)->gpart_elems, chunk * cog * kk)
                      : NULL;
    for (int64_t b0 = 0; part && b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk;
        for (int64_t g = 0; g < c->g; g++) {
            gpu_im2col(ctx, c, &ca, x + b0 * c->ci * c->h * c->w, nb, g, cols);
            struct tiled_gemm gm = {.abuf = CL(ctx)->arena,
                                    .aoff = dy + (b0 * c->co + g * cog) * hw,
                                    .lda = hw,
                                    .abz = c->co * hw,
                                    .bbuf = cols,
                                    .ldb = hw,
                                    .bbz = kk * hw,
                                    .cbuf = part,
                                    .ldc = kk,
                                    .cbz = cog * kk,
                                    .m = cog,
                                    .n = kk,
                                    .k = hw,
                                    .nz = nb,
                                    .tb = 1,
                                    .alpha = 1.0f};
            tiled_run(ctx, &gm);
            sum_z(ctx, part, nb, cog, kk, dw + g * cog * kk, kk, b0 > 0 ? 1.0f : 0.0f, 0, 0, 0);
        }
    }
}

/* Per chunk and group: im2col per image [kk, hw], then y_b = W_g col_b for
 * every image b of the chunk, written in place into y. An implicit conv:
 * per group, one GEMM over the batch that reads col_b from x: k ordered as
 * a segment of cig channels (ldb h*w) per tap (i, j) (nsd = kw; measured
 * faster than segments of kw taps), its columns the output pixels at the
 * input's row pitch w (n = (ho-1)*w + wo, the columns ow >= wo computed and
 * not stored). */
void nrt_cl_conv2d(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t x, int64_t w, int64_t y,
                   int64_t scratch) {
    if (cl_dead(ctx) || !conv_ok(ctx, c)) return;
    if (!CL(ctx)->rb.rbm) {
        gpu_conv2d(ctx, c, x, w, y);
        return;
    }
    struct conv_args ca = conv_args(c);
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int64_t chunk = conv_images(c);
    int relu;
    int64_t bias = fuse_take(ctx, &relu);
    if (wino_ok(ctx->dev, c, WINO_FWD)) {
        wino_conv2d(ctx, c, x, w, y, bias, relu);
        return;
    }
    int fused = bias >= 0 && CL(ctx)->rb.rbm; /* the register-block GEMM adds it */
    /* Few taps (mnist_cnn's first layer, kk = 9) leave the implicit GEMM
     * bound by its scattered stores: im2col there (measured). */
    if (conv_implicit(ctx->dev, c) && kk >= CL(ctx)->rb.rbn * CL(ctx)->rb.rbv) {
        for (int64_t g = 0; g < c->g; g++) {
            struct rb_gemm gm = {.abuf = CL(ctx)->arena,
                                 .aoff = w + g * cog * kk,
                                 .ars = kk,
                                 .acs = c->kh * c->kw,
                                 .asg = 1,
                                 .asg1 = c->kw,
                                 .bbuf = CL(ctx)->arena,
                                 .boff = x + g * cig * c->h * c->w,
                                 .ldb = c->h * c->w,
                                 .bsg = c->d[1],
                                 .bsg1 = c->d[0] * c->w,
                                 .bbz = c->ci * c->h * c->w,
                                 .nsd = c->kw,
                                 .coff = y + g * cog * hw,
                                 .ldc = hw,
                                 .cbz = c->co * hw,
                                 .m = cog,
                                 .n = (c->ho - 1) * c->w + c->wo,
                                 .kl = cig,
                                 .ns = c->kh * c->kw,
                                 .nz = c->n,
                                 .alpha = 1.0f,
                                 .beta = 0.0f,
                                 .bias = bias >= 0 ? bias + g * cog : 0,
                                 .bmode = bias >= 0,
                                 .relu = relu,
                                 .cw = c->w,
                                 .cwo = c->wo};
            rb_run(ctx, &gm);
        }
        return;
    }
    for (int64_t b0 = 0; b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk;
        for (int64_t g = 0; g < c->g; g++) {
            im2col(ctx, c, &ca, x + b0 * c->ci * c->h * c->w, nb, g, scratch, kk * hw, hw, 1);
            gemm_batch(ctx, nb, cog, hw, kk, w + g * cog * kk, kk, 1, 0, scratch, hw, kk * hw,
                       y + (b0 * c->co + g * cog) * hw, hw, c->co * hw, fused ? bias + g * cog : -1, relu);
        }
    }
    if (bias >= 0 && !fused) bias_act(ctx, y, c->n * c->co, hw, hw, bias, c->co, relu);
}

/* Whether conv c's input gradient takes nrt_conv_dx_rb (CPU devices, the
 * register-block GEMM): the GEMM and col2im in one launch, each work-item
 * an input plane, 9 taps at a time, so with at least 3/4 of its rows taps
 * (3x3, 5x5, 4x4; not 1x1 or 2x2). mnist_cnn's second layer: 19 launches a
 * step (9 GEMM chunks, 10 col2im) in one, no dcol matrix in memory. */
#define DX_TAPS 9 /* DXT in cl_kernels.cl */
static int conv_dx_direct(const struct nrt_cl *cl, const struct nrt_conv *c) {
    int64_t taps = c->kh * c->kw, rows = (taps + DX_TAPS - 1) / DX_TAPS * DX_TAPS;
    return cl->rb.rbm && cl->rb.implicit && 4 * taps >= 3 * rows;
}

/* nrt_conv_dx_rb over every input plane (conv_dx_direct). */
static void conv_dx_rb(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t dy, int64_t w, int64_t dx) {
    struct nrt_cl *cl = ctx->dev;
    struct conv_args ca = conv_args(c);
    int64_t hw = c->ho * c->wo, dxw = cl->rb.rbv >= 16 ? 2 * cl->rb.rbv : cl->rb.rbv;
    cl_long dyo = dy, wo = w, dxo = dx;
    cl_int co = (cl_int)c->co, bover = dy + c->n * c->co * hw + dxw <= cl->arena_elems;
    if (!lib_args(ctx, LK_CONV_DX_RB, 8, ARG(dyo), ARG(wo), ARG(dxo), ARG(co), ARG(ca.g0), ARG(ca.g1),
                  ARG(ca.d), ARG(bover)))
        return;
    size_t global[2] = {(size_t)c->ci, (size_t)c->n}, local[2] = {1, 1};
    char name[64];
    snprintf(name, sizeof name, "nrt_conv_dx_rb");
    if (cl->prof)
        snprintf(name, sizeof name, "nrt_conv_dx_rb %lldx%lldx%lld batch",
                 (long long)(c->ci / c->g * c->kh * c->kw), (long long)hw, (long long)(c->co / c->g));
    cl->next_flop =
        2.0 * (double)c->n * (double)c->ci * (double)(c->kh * c->kw) * (double)hw * (double)(c->co / c->g);
    enqueue(ctx, cl->lk[LK_CONV_DX_RB], name, 2, global, local);
}

/* GPUs: gpu_conv2d_grad_input. CPU devices: per chunk and group, dcol_b =
 * W_g^T dy_b [kk, hw] for every image, then col2im gathers them into dx; or
 * (conv_dx_direct) both in one launch. */
void nrt_cl_conv2d_grad_input(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t dy, int64_t w,
                              int64_t dx, int64_t scratch) {
    if (cl_dead(ctx) || !conv_ok(ctx, c)) return;
    if (!CL(ctx)->rb.rbm) {
        gpu_conv2d_grad_input(ctx, c, dy, w, dx);
        return;
    }
    if (wino_ok(ctx->dev, c, WINO_DX)) {
        wino_grad_input(ctx, c, dy, w, dx);
        return;
    }
    if (conv_dx_direct(ctx->dev, c)) {
        conv_dx_rb(ctx, c, dy, w, dx);
        return;
    }
    struct conv_args ca = conv_args(c);
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int64_t chunk = conv_images(c);
    for (int64_t b0 = 0; b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk;
        for (int64_t g = 0; g < c->g; g++) {
            gemm_batch(ctx, nb, kk, hw, cog, w + g * cog * kk, 1, kk, 0, dy + (b0 * c->co + g * cog) * hw, hw,
                       c->co * hw, scratch, hw, kk * hw, -1, 0);
            /* Each dx element of the chunk and group is written once. */
            cl_long co = scratch, xo = dx + (b0 * c->ci + g * cig) * c->h * c->w;
            cl_long4 cs = {{kk * hw, hw, 1, 0}};
            cl_int inb = (cl_int)nb;
            if (lib_args(ctx, LK_COL2IM, 7, ARG(co), ARG(xo), ARG(inb), ARG(ca.g0), ARG(ca.g1), ARG(ca.d),
                         ARG(cs)))
                lib_run1(ctx, LK_COL2IM, nb * cig);
        }
    }
}

/* Per chunk and group, dW_g += sum over the chunk's images of dy_b col_b^T,
 * from im2col per image [kk, hw]. With the register-block GEMM when cog fills
 * its vectors and dy is no larger than the im2col matrix (co <= kk): dy
 * transposed once into the packing buffer (dy_b^T [hw, co] per image), then
 * dW_g^T [kk, cog] = sum_b col_b dy_b^T, k in nb segments of hw, stored
 * transposed (measured faster than im2col per pixel [hw, kk], whose rows
 * cost a scattered write per word); else by dot products. An implicit conv
 * (conv_implicit) takes col_b from x in that GEMM, one launch per group over
 * the batch: A's row (ch, i, j) at ch*h*w + i*d0*w + j*d1, k in segments of
 * an output row (wo pixels) per image and output row (nsd = ho). */
void nrt_cl_conv2d_grad_weight(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t x, int64_t dy,
                               int64_t dw, int64_t scratch) {
    if (cl_dead(ctx) || !conv_ok(ctx, c)) return;
    if (!CL(ctx)->rb.rbm) {
        gpu_conv2d_grad_weight(ctx, c, x, dy, dw);
        return;
    }
    const struct nrt_cl *cl = ctx->dev;
    if (wino_ok(cl, c, WINO_DW)) {
        wino_grad_weight(ctx, c, x, dy, dw);
        return;
    }
    struct conv_args ca = conv_args(c);
    int64_t cig = c->ci / c->g, cog = c->co / c->g, kk = cig * c->kh * c->kw, hw = c->ho * c->wo;
    int64_t chunk = conv_images(c);
    cl_mem dyt = NULL;
    if (cl->rb.rbm && 2 * cog >= cl->rb.rbn * cl->rb.rbv && kk >= c->co &&
        !(dyt = transpose_pack(ctx, dy, hw, c->co, hw, c->n, c->co * hw)))
        return;
    if (dyt && conv_implicit(cl, c)) {
        for (int64_t g = 0; g < c->g; g++) {
            struct rb_gemm gm = {.abuf = cl->arena,
                                 .aoff = x + g * cig * c->h * c->w,
                                 .rk = {c->kw, c->kh},
                                 .rs = {c->d[1], c->d[0] * c->w},
                                 .ars = c->h * c->w,
                                 .acs = 1,
                                 .asg = c->w,
                                 .asg1 = c->ci * c->h * c->w,
                                 .nsd = c->ho,
                                 .bbuf = dyt,
                                 .boff = g * cog,
                                 .ldb = c->co,
                                 .bsg = c->wo * c->co,
                                 .bsg1 = hw * c->co,
                                 .coff = dw + g * cog * kk,
                                 .ldc = kk,
                                 .ct = 1,
                                 .m = kk,
                                 .n = cog,
                                 .kl = c->wo,
                                 .ns = c->n * c->ho,
                                 .nz = 1,
                                 .alpha = 1.0f,
                                 .beta = 0.0f};
            rb_run(ctx, &gm);
        }
        return;
    }
    for (int64_t b0 = 0; b0 < c->n; b0 += chunk) {
        int64_t nb = c->n - b0 < chunk ? c->n - b0 : chunk;
        float beta = b0 == 0 ? 0.0f : 1.0f;
        for (int64_t g = 0; g < c->g; g++) {
            im2col(ctx, c, &ca, x + b0 * c->ci * c->h * c->w, nb, g, scratch, kk * hw, hw, 1);
            if (!dyt) {
                sgemm_dot(ctx, cog, kk, hw, nb, 1.0f, dy + (b0 * c->co + g * cog) * hw, hw, c->co * hw,
                          scratch, hw, kk * hw, beta, dw + g * cog * kk, kk);
                continue;
            }
            struct rb_gemm gm = {.abuf = cl->arena,
                                 .aoff = scratch,
                                 .ars = hw,
                                 .acs = 1,
                                 .asg = kk * hw,
                                 .bbuf = dyt,
                                 .boff = b0 * hw * c->co + g * cog,
                                 .ldb = c->co,
                                 .bsg = hw * c->co,
                                 .coff = dw + g * cog * kk,
                                 .ldc = kk,
                                 .ct = 1,
                                 .m = kk,
                                 .n = cog,
                                 .kl = hw,
                                 .ns = nb,
                                 .nz = 1,
                                 .alpha = 1.0f,
                                 .beta = beta};
            rb_run(ctx, &gm);
        }
    }
}

/* The pooling geometry as the kernels take it. */
static void pool_args(const struct nrt_pool *p, cl_int8 *g, cl_int2 *pad) {
    int64_t v[8] = {p->h, p->w, p->ho, p->wo, p->k[0], p->k[1], p->s[0], p->s[1]};
    for (int i = 0; i < 8; i++) g->s[i] = (cl_int)v[i];
    pad->s[0] = (cl_int)p->p[0];
    pad->s[1] = (cl_int)p->p[1];
}

static int pool_ok(struct nrt_ctx *ctx, const struct nrt_pool *p) {
    return !cl_dead(ctx) && p->s[0] > 0 && p->s[1] > 0 &&
           fits_int(ctx, "pool input", p->planes * p->h * p->w) &&
           fits_int(ctx, "pool output", p->planes * p->ho * p->wo);
}

void nrt_cl_maxpool2d(struct nrt_ctx *ctx, const struct nrt_pool *p, int64_t x, int64_t y) {
    if (!pool_ok(ctx, p)) return;
    cl_int8 g;
    cl_int2 pad;
    pool_args(p, &g, &pad);
    cl_long xo = x, yo = y;
    cl_int pl = (cl_int)p->planes;
    char shape[48];
    if (lib_args(ctx, LK_MAXPOOL, 5, ARG(xo), ARG(yo), ARG(pl), ARG(g), ARG(pad)))
        lib_run1_as(ctx, LK_MAXPOOL, p->planes * p->ho, pool_shape(p, shape, sizeof shape));
}

void nrt_cl_maxpool2d_grad(struct nrt_ctx *ctx, const struct nrt_pool *p, int64_t x, int64_t dy, int64_t dx) {
    if (!pool_ok(ctx, p)) return;
    cl_int8 g;
    cl_int2 pad;
    pool_args(p, &g, &pad);
    cl_long xo = x, dyo = dy, dxo = dx;
    cl_int pl = (cl_int)p->planes;
    /* Disjoint 2x2 windows at stride 2 (the kernel's test `disjoint`): a plane per work-item, on
     * CPU devices; a GPU takes the general kernel's work-item per input row (mnist_cnn's 2,048
     * planes of 26x26 had 2,048 work-items: 84 us a step on an H200). */
    int two = CL(ctx)->cpu && p->k[0] == 2 && p->k[1] == 2 && p->s[0] == 2 && p->s[1] == 2 && !p->p[0] &&
              !p->p[1] && 2 * p->ho <= p->h && 2 * p->wo <= p->w;
    int id = two ? LK_MAXPOOL2_GRAD : LK_MAXPOOL_GRAD;
    char shape[48];
    if (lib_args(ctx, id, 6, ARG(xo), ARG(dyo), ARG(dxo), ARG(pl), ARG(g), ARG(pad)))
        lib_run1_as(ctx, id, two ? p->planes : p->planes * p->h, pool_shape(p, shape, sizeof shape));
}

void nrt_cl_avgpool2d(struct nrt_ctx *ctx, const struct nrt_pool *p, int64_t x, int64_t y) {
    if (!pool_ok(ctx, p)) return;
    cl_int8 g;
    cl_int2 pad;
    pool_args(p, &g, &pad);
    cl_long xo = x, yo = y;
    cl_int pl = (cl_int)p->planes;
    if (lib_args(ctx, LK_AVGPOOL, 5, ARG(xo), ARG(yo), ARG(pl), ARG(g), ARG(pad)))
        lib_run1(ctx, LK_AVGPOOL, p->planes * p->ho);
}

void nrt_cl_avgpool2d_grad(struct nrt_ctx *ctx, const struct nrt_pool *p, int64_t dy, int64_t dx) {
    if (!pool_ok(ctx, p)) return;
    cl_int8 g;
    cl_int2 pad;
    pool_args(p, &g, &pad);
    cl_long dyo = dy, dxo = dx;
    cl_int pl = (cl_int)p->planes;
    if (lib_args(ctx, LK_AVGPOOL_GRAD, 5, ARG(dyo), ARG(dxo), ARG(pl), ARG(g), ARG(pad)))
        lib_run1(ctx, LK_AVGPOOL_GRAD, p->planes * p->h);
}

/* upsample (LK_UPSAMPLE, over the output) or its gradient (over the input). */
static void upsample(struct nrt_ctx *ctx, int id, int64_t planes, int64_t h, int64_t w, int64_t s0,
                     int64_t s1, int64_t from, int64_t to) {
    if (cl_dead(ctx) || !fits_int(ctx, "upsample", planes * h * s0 * w * s1) || s0 < 1 || s1 < 1) return;
    cl_long fo = from, tofs = to;
    cl_int ip = (cl_int)planes, ih = (cl_int)h, iw = (cl_int)w, i0 = (cl_int)s0, i1 = (cl_int)s1;
    if (lib_args(ctx, id, 7, ARG(fo), ARG(tofs), ARG(ip), ARG(ih), ARG(iw), ARG(i0), ARG(i1)))
        lib_run1(ctx, id, id == LK_UPSAMPLE ? planes * h * s0 : planes * h);
}

void nrt_cl_upsample2d(struct nrt_ctx *ctx, int64_t planes, int64_t h, int64_t w, int64_t s0, int64_t s1,
                       int64_t x, int64_t y) {
    upsample(ctx, LK_UPSAMPLE, planes, h, w, s0, s1, x, y);
}

void nrt_cl_upsample2d_grad(struct nrt_ctx *ctx, int64_t planes, int64_t h, int64_t w, int64_t s0, int64_t s1,
                            int64_t dy, int64_t dx) {
    upsample(ctx, LK_UPSAMPLE_GRAD, planes, h, w, s0, s1, dy, dx);
}

/* ------------------------------------------------------- recurrent layers -- */
/* runtime/rnn.c's steps on the device: the same GEMMs through nrt_cl_sgemm,
 * the fused gate loops as nrt_rnn_fwd / nrt_rnn_bwd over (sequence, unit). */

struct rnn_dims {
    int64_t n, t, f, h, gh, row, st, grow, goff, hoff, soff;
};

static struct rnn_dims rnn_dims_of(const struct nrt_rnn *r) {
    struct rnn_dims d;
    int lstm = r->cell == 0, gru = r->cell == 1;
    d.n = r->n, d.t = r->t, d.f = r->f, d.h = r->h, d.gh = (lstm ? 4 : gru ? 3 : 1) * r->h;
    d.row = (lstm  ? 6
             : gru ? 7
                   : 1) *
            r->h,
    d.st = (lstm ? 2 : 1) * r->h, d.grow = (lstm || gru ? 6 + gru : 2) * r->h;
    d.goff = lstm ? 2 * r->h : gru ? r->h : 0;
    d.hoff = gru ? d.gh : 0, d.soff = gru ? 2 * d.gh : d.gh;
    return d;
}

static int rnn_ok(struct nrt_ctx *ctx, const struct rnn_dims *d) {
    return !cl_dead(ctx) && d->n > 0 && d->t > 0 && fits_int(ctx, "rnn value", d->n * d->t * d->row) &&
           fits_int(ctx, "rnn gradients", d->n * d->t * d->grow);
}

static cl_int8 rnn_d8(const struct nrt_rnn *r, const struct rnn_dims *d, int64_t s) {
    int64_t t = r->reverse ? d->t - 1 - s : s;
    cl_int8 v = {{(cl_int)d->n, (cl_int)d->t, (cl_int)d->h, r->cell, r->reverse, (cl_int)s, (cl_int)t,
                  (cl_int)d->row}};
    return v;
}

void nrt_cl_rnn_forward(struct nrt_ctx *ctx, const struct nrt_rnn *r, int64_t x, int64_t wih, int64_t whh,
                        int64_t bih, int64_t bhh, int64_t s0, int64_t len, int64_t ws) {
    struct rnn_dims d = rnn_dims_of(r);
    if (!rnn_ok(ctx, &d)) return;
    nrt_cl_sgemm(ctx, 0, 1, d.n * d.t, d.gh, d.f, 1.0f, x, d.f, wih, d.f, 0.0f, ws + d.goff, d.row);
    for (int64_t s = 0; s < d.t; s++) {
        int64_t t = r->reverse ? d.t - 1 - s : s;
        int64_t prev = s == 0 ? s0 : ws + (r->reverse ? t + 1 : t - 1) * d.row,
                ldp = s == 0 ? d.st : d.t * d.row;
        nrt_cl_sgemm(ctx, 0, 1, d.n, d.gh, d.h, 1.0f, prev, ldp, whh, d.h, r->cell == 1 ? 0.0f : 1.0f,
                     ws + t * d.row + (r->cell == 1 ? 4 * d.h : d.goff), d.t * d.row);
        cl_int8 d8 = rnn_d8(r, &d, s);
        cl_long wso = ws, po = prev, bio = bih, bho = bhh, lo = len;
        cl_int lp = (cl_int)ldp, st = (cl_int)d.st;
        if (lib_args(ctx, LK_RNN_FWD, 8, ARG(wso), ARG(po), ARG(lp), ARG(bio), ARG(bho), ARG(lo), ARG(d8),
                     ARG(st)))
            lib_run1(ctx, LK_RNN_FWD, d.n * d.h);
    }
}

void nrt_cl_rnn_bptt(struct nrt_ctx *ctx, const struct nrt_rnn *r, int64_t whh, int64_t ws, int64_t dws,
                     int64_t s0, int64_t len, int64_t dg) {
    struct rnn_dims d = rnn_dims_of(r);
    if (!rnn_ok(ctx, &d)) return;
    for (int64_t s = d.t - 1; s >= 0; s--) {
        int64_t t = r->reverse ? d.t - 1 - s : s;
        int64_t prev = s == 0 ? s0 : ws + (r->reverse ? t + 1 : t - 1) * d.row,
                ldp = s == 0 ? d.st : d.t * d.row;
        int64_t carry = s < d.t - 1 ? dg + (r->reverse ? t - 1 : t + 1) * d.grow + d.soff : -1;
        cl_int8 d8 = rnn_d8(r, &d, s);
        cl_int4 e = {{(cl_int)d.st, (cl_int)d.grow, (cl_int)d.hoff, (cl_int)d.soff}};
        cl_long wso = ws, dwo = dws, po = prev, co = carry, lo = len, go = dg;
        cl_int lp = (cl_int)ldp;
        cl_int2 dd = {{(cl_int)(r->dt > 0 ? r->dt : d.t), (cl_int)(r->dc > 0 ? r->dc : d.row)}};
        if (lib_args(ctx, LK_RNN_BWD, 10, ARG(wso), ARG(dwo), ARG(po), ARG(lp), ARG(co), ARG(lo), ARG(go),
                     ARG(d8), ARG(e), ARG(dd)))
            lib_run1(ctx, LK_RNN_BWD, d.n * d.h);
        nrt_cl_sgemm(ctx, 0, 0, d.n, d.h, d.gh, 1.0f, dg + t * d.grow + d.hoff, d.t * d.grow, whh, d.h, 1.0f,
                     dg + t * d.grow + d.soff, d.t * d.grow);
    }
}

void nrt_cl_rnn_grad(struct nrt_ctx *ctx, const struct nrt_rnn *r, int wrt, int64_t dg, int64_t x,
                     int64_t wih, int64_t ws, int64_t s0, int64_t out) {
    struct rnn_dims d = rnn_dims_of(r);
    if (!rnn_ok(ctx, &d)) return;
    int64_t rows = d.n * d.t, gk = d.t * d.grow, wk = d.t * d.row, gh = dg + d.hoff;
    switch (wrt) {
    case 0:
        nrt_cl_sgemm(ctx, 0, 0, rows, d.f, d.gh, 1.0f, dg, d.grow, wih, d.f, 0.0f, out, d.f);
        break;
    case 1:
        nrt_cl_sgemm(ctx, 1, 0, d.gh, d.f, rows, 1.0f, dg, d.grow, x, d.f, 0.0f, out, d.f);
        break;
    case 2: /* as runtime/rnn.c's grad_whh: shifted rows, minus the pairs across sequences, plus s0 */
        if (!r->reverse) {
            nrt_cl_sgemm(ctx, 1, 0, d.gh, d.h, d.n, 1.0f, gh, gk, s0, d.st, 0.0f, out, d.h);
            nrt_cl_sgemm(ctx, 1, 0, d.gh, d.h, rows - 1, 1.0f, gh + d.grow, d.grow, ws, d.row, 1.0f, out,
                         d.h);
            nrt_cl_sgemm(ctx, 1, 0, d.gh, d.h, d.n - 1, -1.0f, gh + gk, gk, ws + (d.t - 1) * d.row, wk, 1.0f,
                         out, d.h);
        } else {
            nrt_cl_sgemm(ctx, 1, 0, d.gh, d.h, d.n, 1.0f, gh + (d.t - 1) * d.grow, gk, s0, d.st, 0.0f, out,
                         d.h);
            nrt_cl_sgemm(ctx, 1, 0, d.gh, d.h, rows - 1, 1.0f, gh, d.grow, ws + d.row, d.row, 1.0f, out, d.h);
            nrt_cl_sgemm(ctx, 1, 0, d.gh, d.h, d.n - 1, -1.0f, gh + (d.t - 1) * d.grow, gk, ws + wk, wk, 1.0f,
                         out, d.h);
        }
        break;
    case 3:
    case 4: {
        cl_long ao = wrt == 4 ? gh : dg, oo = out;
        cl_int ld = (cl_int)d.grow, nr = (cl_int)rows, nc = (cl_int)d.gh;
        if (lib_args(ctx, LK_RNN_COLSUM, 5, ARG(ao), ARG(ld), ARG(nr), ARG(nc), ARG(oo)))
            lib_run1(ctx, LK_RNN_COLSUM, d.gh);
        break;
    }
    default: {
        cl_long ao = dg + (r->reverse ? d.t - 1 : 0) * d.grow + d.soff, oo = out;
        cl_int ld = (cl_int)gk, nb = (cl_int)d.n, w = (cl_int)d.st;
        if (lib_args(ctx, LK_RNN_ROWS, 5, ARG(ao), ARG(ld), ARG(nb), ARG(w), ARG(oo)))
            lib_run1(ctx, LK_RNN_ROWS, d.n * d.st);
        break;
    }
    }
}

/* --------------------------------------------------------- device layer -- */

/* PoCL reads its thread count when the OpenCL platform first loads, which is
 * later, in nrt_ctx_init; other drivers ignore the variable. */
static void cl_threads(int threads) {
    if (threads > 0 && !getenv("POCL_MAX_PTHREAD_COUNT")) {
        char t[16];
        snprintf(t, sizeof t, "%d", threads);
        setenv("POCL_MAX_PTHREAD_COUNT", t, 1);
    }
}

const struct nrt_device_ops nrt_cl_device_ops = {
    .name = "OpenCL",
    .open = cl_open,
    .close = cl_close,
    .download_state = cl_download_state,
    .upload = nrt_cl_upload,
    .download = nrt_cl_download,
    .list = nrt_cl_device_list,
    .threads = cl_threads,
};
