/* runtime/cl.c -- the OpenCL device layer (libnetrt_cl.a): device listing and
 * choice, the context of an OpenCL model (queue, one arena holding every
 * buffer and the workspace, the runtime's and the model's programs through a
 * binary cache), host<->device copies and kernel launches; the library ops
 * are in cl_lib.c, what both share in cl_internal.h. Sections: errors,
 * devices, binary cache, programs, context, copies and launches, device
 * layer. */
#include "runtime/cl_internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const nrt_cl_lib_kernel_names[LK_COUNT] = {
#define X_(id, name) name,
    LIB_KERNELS(X_)
#undef X_
};

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
void nrt_cl_fail(struct nrt_ctx *ctx, cl_int e, const char *fmt, ...) {
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
int nrt_cl_dead(struct nrt_ctx *ctx) {
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
        if (!(cl->lk[i] = clCreateKernel(cl->lib, nrt_cl_lib_kernel_names[i], &e)))
            return nrt_error_set(NRT_ERR_IO, "OpenCL: clCreateKernel(%s): %s (%d)",
                                 nrt_cl_lib_kernel_names[i], cl_errname(e), (int)e);
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
    nrt_cl_fail(ctx, CL_INVALID_VALUE, "%s of %zu bytes at element %lld outside the %lld-element arena", what,
                bytes, (long long)off, (long long)CL(ctx)->arena_elems);
    return 0;
}

void nrt_cl_upload(struct nrt_ctx *ctx, int64_t off, const void *src, size_t bytes) {
    if (nrt_cl_dead(ctx) || !bytes || !in_arena(ctx, "upload", off, bytes)) return;
    cl_int e = clEnqueueWriteBuffer(CL(ctx)->queue, CL(ctx)->arena, CL_TRUE, (size_t)off * 4, bytes, src, 0,
                                    NULL, NULL);
    if (e != CL_SUCCESS) nrt_cl_fail(ctx, e, "clEnqueueWriteBuffer(%zu bytes)", bytes);
}

void nrt_cl_download(struct nrt_ctx *ctx, int64_t off, void *dst, size_t bytes) {
    if (nrt_cl_dead(ctx) || !bytes || !in_arena(ctx, "download", off, bytes)) return;
    prof_flush(ctx->dev);
    cl_int e = clEnqueueReadBuffer(CL(ctx)->queue, CL(ctx)->arena, CL_TRUE, (size_t)off * 4, bytes, dst, 0,
                                   NULL, NULL);
    if (e != CL_SUCCESS) nrt_cl_fail(ctx, e, "clEnqueueReadBuffer(%zu bytes)", bytes);
}

/* Bytes of buffer i (batch-free: params and state). */
static size_t state_bytes(const struct nrt_ctx *ctx, int i) {
    const struct nrt_buffer_desc *b = &ctx->model->buffers[i];
    return (size_t)nrt_desc_count(b->rank, b->dims, 1) * nrt_dtype_size(b->dtype);
}

void nrt_cl_upload_state(struct nrt_ctx *ctx) {
    if (!ctx->host_dirty || nrt_cl_dead(ctx)) return;
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
    if (nrt_cl_dead(ctx)) return;
    cl_int e = clFinish(CL(ctx)->queue);
    if (e != CL_SUCCESS) nrt_cl_fail(ctx, e, "clFinish");
}

/* A local size for a launch that did not give one: up to 64 work-items (and
 * the kernel's limit), split over the dims from the first, each a power of two
 * no larger than needed. On CPU devices (PoCL runs each work-group on one
 * core) groups small enough that there are 4 per compute unit where the range
 * allows: a conv chunk's 192 planes in groups of 64 left one of 2 cores idle
 * a third of the time, a 2 x 32 range in one group one of them always. */
void nrt_cl_local_choose(const struct nrt_cl *cl, int dims, const size_t *global, size_t limit,
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
void nrt_cl_enqueue(struct nrt_ctx *ctx, cl_kernel k, const char *name, int dims, const size_t *global,
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
        nrt_cl_fail(ctx, e, "clEnqueueNDRangeKernel(%s)", name);
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
    if (nrt_cl_dead(ctx)) return;
    struct nrt_cl *cl = ctx->dev;
    if (kernel < 0 || kernel >= cl->n_kernels || dims < 1 || dims > 3) {
        nrt_cl_fail(ctx, CL_INVALID_KERNEL, "launch of kernel %d (of %d) over %d dims", kernel, cl->n_kernels,
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
            nrt_cl_fail(ctx, e, "clSetKernelArg(%s, %d)", name, i);
            return;
        }
    }
    size_t l[3];
    if (local)
        memcpy(l, local, sizeof *l * (size_t)dims);
    else
        nrt_cl_local_choose(cl, dims, global, cl->kernel_wg[kernel], l);
    nrt_cl_enqueue(ctx, k, name, dims, global, l);
}

void nrt_cl_launch_rows(struct nrt_ctx *ctx, int kernel, size_t rows, int nargs,
                        const struct nrt_cl_arg *args) {
    if (nrt_cl_dead(ctx)) return;
    size_t l = (size_t)CL(ctx)->wg, g = rows * l;
    nrt_cl_launch(ctx, kernel, 1, &g, &l, nargs, args);
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
