/* runtime/cl_internal.h -- what the OpenCL device layer (cl.c: devices,
 * binary cache, programs, context, copies and launches) shares with its
 * library ops (cl_lib.c: GEMMs, convolutions, pooling, recurrent layers):
 * struct nrt_cl, the runtime kernels' ids and the launch helpers. Private to
 * libnetrt_cl. */
#ifndef NETC_RUNTIME_CL_INTERNAL_H
#define NETC_RUNTIME_CL_INTERNAL_H

#include "runtime/internal.h"

#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>

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

extern const char *const nrt_cl_lib_kernel_names[LK_COUNT];

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
/* Marks the device dead with "OpenCL: what: CODE" and records it in ctx. */
void nrt_cl_fail(struct nrt_ctx *ctx, cl_int e, const char *fmt, ...) NRT_PRINTF(3, 4);
/* Whether calls must be skipped: no device, or one that failed. */
int nrt_cl_dead(struct nrt_ctx *ctx);
/* A work-group shape for a range of dims extents of at most limit items. */
void nrt_cl_local_choose(const struct nrt_cl *cl, int dims, const size_t *global, size_t limit,
                         size_t *local);
/* Enqueues k over global (rounded up to local), profiled as name. */
void nrt_cl_enqueue(struct nrt_ctx *ctx, cl_kernel k, const char *name, int dims, const size_t *global,
                    const size_t *local);

#endif
