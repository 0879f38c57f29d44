/* runtime/cl_lib.c -- the OpenCL runtime's library ops, whose OpenCL C lives
 * in cl_kernels.cl: SGEMM (tiled in local memory on GPUs, blocked in registers
 * on CPU devices), convolution by im2col/col2im + GEMM with the bias and relu
 * fused and by Winograd F(4x4, 3x3) on CPU devices, pooling, upsampling and
 * the recurrent layers. The device layer is cl.c. */
#include "runtime/cl_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

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
    if (e != CL_SUCCESS) nrt_cl_fail(ctx, e, "clSetKernelArg(%s)", nrt_cl_lib_kernel_names[id]);
    return e == CL_SUCCESS;
}

#define ARG(v) sizeof(v), (const void *)&(v)

/* Launches library kernel id over a 1-D range of n; profiled as the
 * kernel's name followed by `what` (NULL: nothing), e.g. a plane's shape. */
static void lib_run1_as(struct nrt_ctx *ctx, int id, int64_t n, const char *what) {
    size_t g = (size_t)n, l;
    nrt_cl_local_choose(ctx->dev, 1, &g, CL(ctx)->max_wg, &l);
    char name[96];
    snprintf(name, sizeof name, "%s%s%s", nrt_cl_lib_kernel_names[id], what ? " " : "", what ? what : "");
    nrt_cl_enqueue(ctx, CL(ctx)->lk[id], name, 1, &g, &l);
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
    nrt_cl_fail(ctx, CL_INVALID_VALUE, "%s: %lld elements exceed the kernels' 32-bit indices", what,
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
            nrt_cl_fail(ctx, e, "clSetKernelArg(nrt_gemm_rb, %u)", args[i].i);
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
    nrt_cl_enqueue(ctx, k, name, 3, global, local);
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
        nrt_cl_fail(ctx, e, "clCreateBuffer(%zu bytes for a packed GEMM operand)", want * 4);
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
    nrt_cl_local_choose(ctx->dev, 1, global, CL(ctx)->max_wg, local);
    local[1] = 1;
    nrt_cl_enqueue(ctx, CL(ctx)->lk[LK_TRANSPOSE], "nrt_transpose", 2, global, local);
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
    if (nrt_cl_dead(ctx)) return;
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
    nrt_cl_local_choose(ctx->dev, 2, global, CL(ctx)->max_wg, local);
    if (CL(ctx)->cpu) local[0] = local[1] = 1; /* its vectors are explicit: one work-item per group */
    CL(ctx)->next_flop = 2.0 * (double)m * (double)n * (double)(kl * ns);
    nrt_cl_enqueue(ctx, CL(ctx)->lk[LK_SGEMM_DOT], "nrt_sgemm_dot", 2, global, local);
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
            nrt_cl_fail(ctx, e, "clSetKernelArg(nrt_sgemm, %zu)", i);
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
    nrt_cl_enqueue(ctx, k, name, 3, global, local);
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
    nrt_cl_local_choose(ctx->dev, 2, global, CL(ctx)->max_wg, local);
    nrt_cl_enqueue(ctx, CL(ctx)->lk[LK_SUM_Z], "nrt_sum_z", 2, global, local);
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
    if (nrt_cl_dead(ctx) || m <= 0 || n <= 0) return;
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
    nrt_cl_enqueue(ctx, cl->lk[LK_WINO_U], "nrt_wino_u", 2, global, local);
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
    nrt_cl_enqueue(ctx, cl->lk[LK_WINO_V], "nrt_wino_v", 1, global, local);
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
    nrt_cl_enqueue(ctx, cl->lk[LK_WINO_E], "nrt_wino_e", 1, global, local);
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
        nrt_cl_enqueue(ctx, cl->lk[LK_WINO_Y], "nrt_wino_y", 2, global, local);
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
        nrt_cl_enqueue(ctx, cl->lk[LK_WINO_DX], "nrt_wino_dx", 2, global, local);
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
    nrt_cl_enqueue(ctx, cl->lk[LK_WINO_DW], "nrt_wino_dw", 2, global, local);
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
        nrt_cl_fail(ctx, e, "clCreateBuffer(%zu bytes for a GPU path's buffer)", want * 4);
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
    nrt_cl_local_choose(ctx->dev, 3, global, CL(ctx)->max_wg, l);
    nrt_cl_enqueue(ctx, CL(ctx)->lk[id], nrt_cl_lib_kernel_names[id], 3, global, l);
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
    if (nrt_cl_dead(ctx) || !conv_ok(ctx, c)) return;
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
    nrt_cl_enqueue(ctx, cl->lk[LK_CONV_DX_RB], name, 2, global, local);
}

/* GPUs: gpu_conv2d_grad_input. CPU devices: per chunk and group, dcol_b =
 * W_g^T dy_b [kk, hw] for every image, then col2im gathers them into dx; or
 * (conv_dx_direct) both in one launch. */
void nrt_cl_conv2d_grad_input(struct nrt_ctx *ctx, const struct nrt_conv *c, int64_t dy, int64_t w,
                              int64_t dx, int64_t scratch) {
    if (nrt_cl_dead(ctx) || !conv_ok(ctx, c)) return;
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
    if (nrt_cl_dead(ctx) || !conv_ok(ctx, c)) return;
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
    return !nrt_cl_dead(ctx) && p->s[0] > 0 && p->s[1] > 0 &&
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
    if (nrt_cl_dead(ctx) || !fits_int(ctx, "upsample", planes * h * s0 * w * s1) || s0 < 1 || s1 < 1) return;
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
    return !nrt_cl_dead(ctx) && d->n > 0 && d->t > 0 && fits_int(ctx, "rnn value", d->n * d->t * d->row) &&
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
