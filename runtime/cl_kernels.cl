/* runtime/cl_kernels.cl -- the runtime's own OpenCL C 1.2 kernels, embedded in
 * libnetrt_cl.a at build time (runtime/cl_embed.cmake) and built once per
 * device by cl.c with the tile and block sizes as -D options: the tiled SGEMM
 * (GPUs), the register-block GEMM (CPU devices), the im2col/col2im kernels
 * around them for convolution, pooling and upsampling. Every kernel takes
 * the arena `A` first and element offsets into it; index relations are those of runtime/kernels.c, and where that code
 * accumulates into an element, the gathers below add the same terms in the
 * same order, so pooling, upsampling and col2im agree bit for bit. */

/* No contraction of a * b + c into fma behind our back: the gathers must add
 * exactly what the CPU code adds. The GEMM asks for fma where it wants one. */
#pragma OPENCL FP_CONTRACT OFF

/* ------------------------------------------------------------------ SGEMM -- */
/* Set by cl.c from the device's limits (CL_DEVICE_MAX_WORK_GROUP_SIZE,
 * CL_DEVICE_LOCAL_MEM_SIZE, CL_DEVICE_PREFERRED_VECTOR_WIDTH_FLOAT):
 *   VW       the vector width: a work-item owns VW adjacent columns of C;
 *   WM       the rows of C a work-item owns (its register block is WM x VW);
 *   RX, RY   the work-group, RX x RY work-items;
 *   TK       the step along k.
 * A work-group computes the C tile of TM = RY*WM rows and TN = RX*VW columns
 * from tiles of op(A) [TM, TK] and op(B) [TK, TN] in local memory; work-item
 * (lx, ly) owns rows ly*WM.. and columns lx*VW.., read from the B tile as one
 * vector load per k step and stored to C as vectors where the tile is whole. */
#ifndef VW
#define VW 4
#endif
#ifndef WM
#define WM 4
#endif
#ifndef RX
#define RX 8
#endif
#ifndef RY
#define RY 8
#endif
#ifndef TK
#define TK 16
#endif
#define TM (RY * WM)
#define TN (RX * VW)
#define NT (RX * RY)
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define floatv CAT(float, VW)
#define vloadv CAT(vload, VW)
#define vstorev CAT(vstore, VW)

/* Tiles of A and B into local memory: as[i][p] = op(A)[row0 + i][p0 + p] and
 * bs[p][j] = op(B)[p0 + p][col0 + j], zero outside the matrices. They are
 * read in vectors of VW words along memory (rows of A and B; columns of A^T
 * and B^T, scattered into place): a vector wholly inside its matrix by one
 * vector load, a vector past the end of its row word by word, a vector of a
 * row past the end as zeros. */
#define VEC_OK ((TK % VW) == 0 && (TM % VW) == 0)

/* VW words from p[0..len) (len < VW) and zeros after them. */
static floatv load_part(__global const float *p, int len)
{
    float t[VW];
    for (int u = 0; u < VW; u++)
        t[u] = u < len ? p[u] : 0.0f;
    return vloadv(0, t);
}

/* Row `row` of a matrix, words [c, c + VW) of `len`; zeros if row >= rows. */
static floatv load_vec(__global const float *a, int ld, int row, int rows, int c, int len)
{
    if (row >= rows || c >= len)
        return (floatv)(0.0f);
    __global const float *p = a + (long)row * ld + c;
    return c + VW <= len ? vloadv(0, p) : load_part(p, len - c);
}

static void tile_a(__local float (*as)[TK], __global const float *a, int lda, int ta, int m, int k, int row0, int p0,
                   int tid)
{
#if VEC_OK
    if (!ta) {
        for (int e = tid; e < TM * TK / VW; e += NT) {
            int i = e / (TK / VW), q = e % (TK / VW);
            vstorev(load_vec(a, lda, row0 + i, m, p0 + q * VW, k), 0, &as[i][q * VW]);
        }
    } else {
        for (int e = tid; e < TM * TK / VW; e += NT) {
            int p = e / (TM / VW), q = e % (TM / VW);
            float t[VW];
            vstorev(load_vec(a, lda, p0 + p, k, row0 + q * VW, m), 0, t);
            for (int u = 0; u < VW; u++)
                as[q * VW + u][p] = t[u];
        }
    }
#else
    for (int e = tid; e < TM * TK; e += NT) {
        int i = ta ? e % TM : e / TK, p = ta ? e / TM : e % TK, r = row0 + i, c = p0 + p;
        as[i][p] = r < m && c < k ? (ta ? a[c * lda + r] : a[r * lda + c]) : 0.0f;
    }
#endif
}

static void tile_b(__local float (*bs)[TN], __global const float *b, int ldb, int tb, int k, int n, int p0, int col0,
                   int tid)
{
    if (!tb) {
        for (int e = tid; e < TK * TN / VW; e += NT) {
            int p = e / (TN / VW), q = e % (TN / VW);
            vstorev(load_vec(b, ldb, p0 + p, k, col0 + q * VW, n), 0, &bs[p][q * VW]);
        }
        return;
    }
#if VEC_OK
    for (int e = tid; e < TK * TN / VW; e += NT) {
        int j = e / (TK / VW), q = e % (TK / VW);
        float t[VW];
        vstorev(load_vec(b, ldb, col0 + j, n, p0 + q * VW, k), 0, t);
        for (int u = 0; u < VW; u++)
            bs[q * VW + u][j] = t[u];
    }
#else
    for (int e = tid; e < TK * TN; e += NT) {
        int j = e / TK, p = e % TK, r = p0 + p, c = col0 + j;
        bs[p][j] = r < k && c < n ? b[c * ldb + r] : 0.0f;
    }
#endif
}

/* C_z[m,n] = alpha op(A_z)[m,k] op(B_z)[k,n] + beta C_z (beta 0: C is not
 * read), then (bmode 1) plus Cb[bias + i] or (bmode 2) plus Cb[bias + j],
 * then max(., 0) when relu: a fused bias and activation. All row-major at
 * element offsets of their buffers (the arena, or cl_lib.c's GPU buffers), the
 * bias in C's; batch item z = group id 2 moves aoff, boff and coff by abz,
 * bbz and cbz (a convolution's images in one launch, or the k slices of a
 * split GEMM, the last of which has klast of k). Launched over
 * (ceil(n/TN)*RX, ceil(m/TM)*RY, batch) with local size (RX, RY, 1). */
__kernel __attribute__((reqd_work_group_size(RX, RY, 1))) void
nrt_sgemm(__global const float *Ab, long aoff, int lda, long abz, __global const float *Bb, long boff, int ldb,
          long bbz, __global float *Cb, long coff, int ldc, long cbz, int m, int n, int k, int ta, int tb,
          float alpha, float beta, long bias, int bmode, int relu, int klast)
{
    __local float as[TM][TK];
    __local float bs[TK][TN];
    const int lx = get_local_id(0), ly = get_local_id(1), tid = ly * RX + lx;
    const int row0 = get_group_id(1) * TM, col0 = get_group_id(0) * TN;
    const long z = get_group_id(2);
    __global const float *a = Ab + aoff + z * abz, *b = Bb + boff + z * bbz;
    if (z == get_num_groups(2) - 1)
        k = klast;
    floatv acc[WM];
    for (int i = 0; i < WM; i++)
        acc[i] = (floatv)(0.0f);
    for (int p0 = 0; p0 < k; p0 += TK) {
        tile_a(as, a, lda, ta, m, k, row0, p0, tid);
        tile_b(bs, b, ldb, tb, k, n, p0, col0, tid);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int p = 0; p < TK; p++) {
            floatv bv = vloadv(0, &bs[p][lx * VW]);
            for (int i = 0; i < WM; i++)
                acc[i] = mad((floatv)(as[ly * WM + i][p]), bv, acc[i]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global float *c = Cb + coff + z * cbz;
    __global const float *bv = Cb + bias;
    const int col = col0 + lx * VW;
    for (int i = 0; i < WM; i++) {
        int r = row0 + ly * WM + i;
        if (r >= m || col >= n)
            continue;
        __global float *cr = c + (long)r * ldc + col;
        floatv v = alpha * acc[i];
        if (col + VW <= n) {
            if (beta != 0.0f)
                v += beta * vloadv(0, cr);
            if (bmode == 1)
                v += (floatv)(bv[r]);
            else if (bmode == 2)
                v += vloadv(0, bv + col);
            if (relu)
                v = fmax(v, (floatv)(0.0f));
            vstorev(v, 0, cr);
            continue;
        }
        float t[VW];
        vstorev(v, 0, t);
        for (int j = 0; j < VW && col + j < n; j++) {
            float e = beta == 0.0f ? t[j] : t[j] + beta * cr[j];
            e += bmode == 1 ? bv[r] : bmode == 2 ? bv[col + j] : 0.0f;
            cr[j] = relu ? fmax(e, 0.0f) : e;
        }
    }
}

/* C = alpha A B^T + beta C as dot products, both operands read along k in
 * vectors: for the few-output, long-k GEMMs (weight gradients of small
 * layers) whose tiled grid would leave most compute units idle. A work-item
 * owns DOTJ adjacent outputs of a row of C, so each vector of A's row is
 * loaded once for DOTJ rows of B. k runs in ns segments of kl, segment s at
 * a + s*asg and b + s*bsg (a conv's weight gradient sums over the images of
 * a chunk). Global (ceil(n/DOTJ), m). */
#define DOTJ 16
__kernel void nrt_sgemm_dot(__global float *A, long aoff, int lda, long boff, int ldb, long coff, int ldc, int m,
                            int n, int kl, float alpha, float beta, int ns, long asg, long bsg)
{
    const int j0 = get_global_id(0) * DOTJ, i = get_global_id(1);
    if (i >= m || j0 >= n)
        return;
    const int nj = min(DOTJ, n - j0);
    floatv acc[DOTJ];
    float s[DOTJ];
#pragma unroll
    for (int u = 0; u < DOTJ; u++)
        acc[u] = (floatv)(0.0f), s[u] = 0.0f;
    for (int g = 0; g < ns; g++) {
        __global const float *a = A + aoff + (long)i * lda + g * asg, *b = A + boff + (long)j0 * ldb + g * bsg;
        int p = 0;
        for (; p + VW <= kl; p += VW) {
            const floatv av = vloadv(0, a + p);
#pragma unroll
            for (int u = 0; u < DOTJ; u++)
                if (u < nj)
                    acc[u] = mad(av, vloadv(0, b + (long)u * ldb + p), acc[u]);
        }
        for (; p < kl; p++)
#pragma unroll
            for (int u = 0; u < DOTJ; u++)
                if (u < nj)
                    s[u] = mad(a[p], b[(long)u * ldb + p], s[u]);
    }
    __global float *c = A + coff + (long)i * ldc + j0;
#pragma unroll
    for (int u = 0; u < DOTJ; u++) {
        if (u >= nj)
            break;
        float t[VW];
        vstorev(acc[u], 0, t);
        float r = s[u];
        for (int l = 0; l < VW; l++)
            r += t[l];
        c[u] = beta == 0.0f ? alpha * r : alpha * r + beta * c[u];
    }
}

/* ------------------------------------------- GPU convolution (cl_lib.c gpu_*) -- */
/* On GPUs (the tiled SGEMM) a convolution runs over a chunk of images per
 * launch, as many as cl_lib.c's column buffer holds (the whole batch of the
 * examples): im2col into that buffer, one batched nrt_sgemm, and for the
 * input gradient col2im back; the weight gradient's per-image products go to
 * a partial buffer that nrt_sum_z adds up. These kernels have a work-item per
 * element (coalesced along the pixels), where the per-plane loops of
 * nrt_im2col / nrt_col2im below (a work-item per image and channel, made for
 * CPU devices) left the GPU with a few hundred work-items. Geometry as for
 * those (g0 = (ci, h, w, kh, kw, ho, wo, cig), g1 = (s0, s1, p0, p1), d). */

/* Col[coff + (b*kk + r)*hw + q] = x[b, ch, ih, iw] (0 outside) for tap row r
 * = (ch*kh + i)*kw + j < kk = cig*kh*kw and pixel q = oh*wo + ow < hw; x at
 * xoff (the chunk's first image, the group's first channel), images ci*h*w
 * apart. Global (hw, kk, nb). */
__kernel void nrt_im2col_px(__global const float *A, long xoff, __global float *Col, long coff, int8 g0, int4 g1,
                            int2 d)
{
    const int q = get_global_id(0), r = get_global_id(1), b = get_global_id(2);
    const int kh = g0.s3, kw = g0.s4, wo = g0.s6, hw = g0.s5 * wo, kk = g0.s7 * kh * kw;
    if (q >= hw || r >= kk)
        return;
    const int ch = r / (kh * kw), i = r / kw % kh, j = r % kw, oh = q / wo, ow = q % wo;
    const int ih = oh * g1.s0 - g1.s2 + i * d.s0, iw = ow * g1.s1 - g1.s3 + j * d.s1;
    const int h = g0.s1, w = g0.s2;
    Col[coff + ((long)b * kk + r) * hw + q] =
        ih >= 0 && ih < h && iw >= 0 && iw < w ? A[xoff + (((long)b * g0.s0 + ch) * h + ih) * w + iw] : 0.0f;
}

/* The adjoint of nrt_im2col_px: dx[b, ch, ih, iw] = the sum of the column
 * entries taken from it, taps (i, j) in ascending order from 0 (as
 * nrt_col2im and kernels.c add them, so bit for bit). dx at dxoff like x
 * above. Global (h*w, cig, nb). */
__kernel void nrt_col2im_px(__global float *A, long dxoff, __global const float *Col, long coff, int8 g0, int4 g1,
                            int2 d)
{
    const int e = get_global_id(0), ch = get_global_id(1), b = get_global_id(2);
    const int h = g0.s1, w = g0.s2, kh = g0.s3, kw = g0.s4, ho = g0.s5, wo = g0.s6, hw = ho * wo;
    if (e >= h * w || ch >= g0.s7)
        return;
    const int ih = e / w, iw = e % w, kk = g0.s7 * kh * kw;
    __global const float *col = Col + coff + ((long)b * kk + ch * kh * kw) * hw;
    float s = 0.0f;
    for (int i = 0; i < kh; i++) {
        const int th = ih + g1.s2 - i * d.s0;
        if (th < 0 || th % g1.s0)
            continue;
        const int oh = th / g1.s0;
        if (oh >= ho)
            continue;
        for (int j = 0; j < kw; j++) {
            const int tw = iw + g1.s3 - j * d.s1;
            if (tw < 0 || tw % g1.s1)
                continue;
            const int ow = tw / g1.s1;
            if (ow < wo)
                s += col[(i * kw + j) * hw + oh * wo + ow];
        }
    }
    A[dxoff + (((long)b * g0.s0 + ch) * h) * w + e] = s;
}

/* C[i, j] = sum over z < nz of P[poff + (z*m + i)*n + j], in order of z, plus
 * beta C[i, j] (beta 0: C is not read), then plus A[bias + i] (bmode 1) or
 * A[bias + j] (bmode 2) and max(., 0) when relu; C at coff of the arena, rows
 * ldc apart: the partial products of a split GEMM (a convolution's weight
 * gradient per image, a long-k product per k slice) added up. Global (n, m). */
__kernel void nrt_sum_z(__global float *A, long coff, int ldc, float beta, long bias, int bmode, int relu,
                        __global const float *P, long poff, int nz, int m, int n)
{
    const int j = get_global_id(0), i = get_global_id(1);
    if (j >= n || i >= m)
        return;
    const long mn = (long)m * n;
    __global const float *p = P + poff + (long)i * n + j;
    float s = p[0];
    for (int z = 1; z < nz; z++)
        s += p[z * mn];
    __global float *c = A + coff + (long)i * ldc + j;
    if (beta != 0.0f)
        s += beta * c[0];
    s += bmode == 1 ? A[bias + i] : bmode == 2 ? A[bias + j] : 0.0f;
    c[0] = relu ? fmax(s, 0.0f) : s;
}

/* ---------------------------------------------------- register-block GEMM -- */
/* For CPU devices (PoCL compiles a work-group into loops over its
 * work-items, so local-memory tiles buy nothing there): one work-item per
 * work-group computes an RBM x (RBN*RBV) block of C in registers, RBN vectors
 * of RBV floats per row, stepping k one at a time: each step loads RBN
 * vectors of a row of B and broadcasts RBM elements of A (bench/cl_gemm.c).
 * Operands anywhere in any buffer (the arena, or cl_lib.c's packing buffer):
 *   A(i, p) = Ab[aoff + row(i) + seg(s, asg) + q*acs]  for p = s*kl + q (k in
 *             ns segments of kl, s < ns: a conv's weight gradient sums over
 *             images and output rows),
 *   B(p, j) = Bb[boff + seg(s, bsg) + q*ldb + j]       (rows along j),
 *   C(i, j) = Cb[coff + i*ldc + col(j)], or Cb[coff + j*ldc + i] when ct;
 * row(i) = (i % rk.s0)*ars.s0 + (i / rk.s0 % rk.s1)*ars.s1 + (i / (rk.s0*rk.s1))*ars.s2
 * (a plain matrix: rk = (1, 1), ars.s2 its row stride; a conv's input read as
 * its im2col matrix: rows (channel, tap row, tap column)), seg(s, sg) =
 * (s % nsd)*sg.s0 + (s / nsd)*sg.s1, and col(j) = j, or with cmap = (cw, cwo)
 * (cw > 0) (j / cw)*cwo + j % cw, the columns with j % cw >= cwo not stored:
 * an implicit convolution computes output pixels at the input's row pitch cw
 * and stores the cwo of each row that exist.
 * C = alpha A B + beta C (beta 0: C is not read), then (bmode 1) plus
 * Cb[bias + i] or (bmode 2, not with cmap) plus Cb[bias + j], then max(., 0)
 * when relu: a fused bias and activation (bover: see `full` below). Batches:
 * global id 2 = z moves aoff, boff and coff by abz, bbz and cbz. Global
 * (ceil(n/(RBN*RBV)), ceil(m/RBM), batch), local (1, 1, 1). Set by cl.c: RBV the device's
 * preferred float width, RBM and RBN from the register file. */
#ifndef RBV
#define RBV 4
#endif
#ifndef RBM
#define RBM 6
#endif
#ifndef RBN
#define RBN 2
#endif
#define floatr CAT(float, RBV)
#define vloadr CAT(vload, RBV)
#define vstorer CAT(vstore, RBV)
#define RBW (RBN * RBV)

/* RBV words from p[0..len) (len < RBV) and zeros after them. */
static floatr rb_part(__global const float *p, int len)
{
    float t[RBV];
    for (int u = 0; u < RBV; u++)
        t[u] = u < len ? p[u] : 0.0f;
    return vloadr(0, t);
}

/* The body of nrt_gemm_rb (implicit 0: a plain row(i) = i*ars.s2, seg(s,
 * sg) = s*sg.s0, no cmap) and nrt_gemm_rbx (implicit 1: all of them), one
 * code specialised twice: the general addressing in the plain GEMM measured
 * up to a third slower on mnist_cnn's layers. */
#define GEMM_RB_ARGS                                                                                           \
    __global const float *Ab, long aoff, long4 ars, long acs, long2 asg, long abz, __global const float *Bb,  \
        long boff, long ldb, long2 bsg, long bbz, __global float *Cb, long coff, long ldc, long cbz, int ct, \
        int m, int n, int kl, int ns, float alpha, float beta, long bias, int bmode, int relu, int bover,    \
        int2 rk, int nsd, int2 cmap
static inline __attribute__((always_inline)) void gemm_rb(GEMM_RB_ARGS, const int implicit)
{
    const int j0 = get_global_id(0) * RBW, i0 = get_global_id(1) * RBM;
    const long z = get_global_id(2);
    if (j0 >= n || i0 >= m)
        return;
    __global const float *a = Ab + aoff + z * abz, *b = Bb + boff + z * bbz + j0;
    long ar[RBM]; /* rows past m read row m - 1 and are not stored */
    /* rk (1, 1) (an implicit forward's weights): plain rows, no division */
    const int plain = !implicit || (rk.s0 == 1 && rk.s1 == 1);
#pragma unroll
    for (int r = 0; r < RBM; r++) {
        const int i = min(i0 + r, m - 1);
        ar[r] = plain ? (long)i * ars.s2
                      : (i % rk.s0) * ars.s0 + (i / rk.s0 % rk.s1) * ars.s1 + (long)(i / (rk.s0 * rk.s1)) * ars.s2;
    }
    floatr acc[RBM][RBN];
#pragma unroll
    for (int r = 0; r < RBM; r++)
#pragma unroll
        for (int v = 0; v < RBN; v++)
            acc[r][v] = (floatr)(0.0f);
    /* bover: B's buffer extends past every whole vector a block past n would
     * read, so a partial block loads whole vectors too (lanes past n are
     * computed and never stored). */
    const int full = bover || j0 + RBW <= n;
    int c0 = 0, c1 = 0; /* s = c1*nsd + c0 when implicit (counted: no division per segment) */
    for (int s = 0; s < ns; s++) {
        const long s0 = implicit ? c0 : s, s1 = implicit ? c1 : 0;
        if (implicit && ++c0 == nsd)
            c0 = 0, c1++;
        const long sa = s0 * asg.s0 + s1 * asg.s1;
        __global const float *ap[RBM];
#pragma unroll
        for (int r = 0; r < RBM; r++)
            ap[r] = a + sa + ar[r];
        __global const float *bp = b + s0 * bsg.s0 + s1 * bsg.s1;
        if (RBN > 1 && j0 + RBV >= n) { /* a last block of one vector or less: the others' FMAs skipped
                                           (mnist_cnn's conv2 forward, n = 141 in 5 blocks of 32) */
            for (int q = 0; q < kl; q++, bp += ldb) {
                const floatr b0 = bover || j0 + RBV <= n ? vloadr(0, bp) : rb_part(bp, n - j0);
#pragma unroll
                for (int r = 0; r < RBM; r++) {
                    acc[r][0] = fma((floatr)(*ap[r]), b0, acc[r][0]);
                    ap[r] += acs;
                }
            }
        } else if (full) {
            for (int q = 0; q < kl; q++, bp += ldb) {
                floatr bv[RBN];
#pragma unroll
                for (int v = 0; v < RBN; v++)
                    bv[v] = vloadr(v, bp);
#pragma unroll
                for (int r = 0; r < RBM; r++) {
                    floatr av = (floatr)(*ap[r]);
                    ap[r] += acs;
#pragma unroll
                    for (int v = 0; v < RBN; v++)
                        acc[r][v] = fma(av, bv[v], acc[r][v]);
                }
            }
        } else {
            for (int q = 0; q < kl; q++, bp += ldb) {
                floatr bv[RBN];
#pragma unroll
                for (int v = 0; v < RBN; v++) {
                    int j = j0 + v * RBV;
                    bv[v] = j + RBV <= n ? vloadr(v, bp) : j < n ? rb_part(bp + v * RBV, n - j) : (floatr)(0.0f);
                }
#pragma unroll
                for (int r = 0; r < RBM; r++) {
                    floatr av = (floatr)(*ap[r]);
                    ap[r] += acs;
#pragma unroll
                    for (int v = 0; v < RBN; v++)
                        acc[r][v] = fma(av, bv[v], acc[r][v]);
                }
            }
        }
    }
    __global float *c = Cb + coff + z * cbz;
    __global const float *bv = Cb + bias;
    if (implicit && cmap.s0 > 0) { /* an implicit convolution's pixels (never ct, bmode 0 or 1) */
        int dst[RBW]; /* each column's offset in its C row, -1 for none */
        int q = j0 % cmap.s0, row = j0 / cmap.s0; /* column j0 + u's, counted on (a division per column cost
                                                      about a sixth of mnist_cnn's forward) */
#pragma unroll
        for (int u = 0; u < RBW; u++) {
            dst[u] = j0 + u < n && q < cmap.s1 ? row * cmap.s1 + q : -1;
            if (++q == cmap.s0)
                q = 0, row++;
        }
        for (int r = 0; r < RBM; r++) {
            const int i = i0 + r;
            if (i >= m)
                break;
            __global float *cr = c + (long)i * ldc;
#pragma unroll
            for (int v = 0; v < RBN; v++) {
                floatr x = alpha * acc[r][v];
                const float bi = bmode == 1 ? bv[i] : 0.0f;
                const int d = dst[v * RBV];
                if (d >= 0 && dst[v * RBV + RBV - 1] == d + RBV - 1) { /* the vector is one run of a C row */
                    if (beta != 0.0f)
                        x += beta * vloadr(0, cr + d);
                    if (bmode == 1)
                        x += (floatr)(bi);
                    if (relu)
                        x = x > (floatr)(0.0f) ? x : (floatr)(0.0f);
                    vstorer(x, 0, cr + d);
                    continue;
                }
                float t[RBV];
                vstorer(x, 0, t);
                /* scalar stores: vectorised, this loop became masked scatters
                 * (microcoded on AMD; a tenth of the forward's samples) */
#pragma clang loop vectorize(disable)
                for (int u = 0; u < RBV; u++) {
                    const int e = dst[v * RBV + u];
                    if (e < 0)
                        continue;
                    float y = beta == 0.0f ? t[u] : t[u] + beta * cr[e];
                    if (bmode == 1)
                        y += bi;
                    cr[e] = relu ? (y > 0.0f ? y : 0.0f) : y;
                }
            }
        }
        return;
    }
#pragma unroll
    for (int r = 0; r < RBM; r++) {
        const int i = i0 + r;
        if (i >= m)
            break;
#pragma unroll
        for (int v = 0; v < RBN; v++) {
            const int j = j0 + v * RBV;
            floatr x = alpha * acc[r][v];
            if (!ct && j + RBV <= n) {
                __global float *cp = c + (long)i * ldc + j;
                if (beta != 0.0f)
                    x += beta * vloadr(0, cp);
                if (bmode == 1)
                    x += (floatr)(bv[i]);
                else if (bmode == 2)
                    x += vloadr(0, bv + j);
                if (relu)
                    x = x > (floatr)(0.0f) ? x : (floatr)(0.0f);
                vstorer(x, 0, cp);
                continue;
            }
            float t[RBV];
            vstorer(x, 0, t);
            for (int u = 0; u < RBV && j + u < n; u++) {
                __global float *cp = ct ? c + (long)(j + u) * ldc + i : c + (long)i * ldc + j + u;
                float y = beta == 0.0f ? t[u] : t[u] + beta * *cp;
                if (bmode)
                    y += bv[bmode == 1 ? i : j + u];
                *cp = relu ? (y > 0.0f ? y : 0.0f) : y;
            }
        }
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void nrt_gemm_rb(GEMM_RB_ARGS)
{
    gemm_rb(Ab, aoff, ars, acs, asg, abz, Bb, boff, ldb, bsg, bbz, Cb, coff, ldc, cbz, ct, m, n, kl, ns, alpha, beta,
            bias, bmode, relu, bover, rk, nsd, cmap, 0);
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void nrt_gemm_rbx(GEMM_RB_ARGS)
{
    gemm_rb(Ab, aoff, ars, acs, asg, abz, Bb, boff, ldb, bsg, bbz, Cb, coff, ldc, cbz, ct, m, n, kl, ns, alpha, beta,
            bias, bmode, relu, bover, rk, nsd, cmap, 1);
}

/* The fused bias and relu where the GEMM did not apply them: y[r*ld + c] +=
 * bias[r % mod] (mod > 0: per row, a conv's channels) or bias[c] (mod 0),
 * then max(., 0) when relu. Global (rows): one row per work-item. */
__kernel void nrt_bias_act(__global float *A, long y, int rows, int cols, int ld, long bias, int mod, int relu)
{
    const int r = get_global_id(0);
    if (r >= rows)
        return;
    __global float *row = A + y + (long)r * ld;
    __global const float *b = A + bias;
    for (int c = 0; c < cols; c++) {
        const float v = row[c] + b[mod > 0 ? r % mod : c];
        row[c] = relu ? (v > 0.0f ? v : 0.0f) : v;
    }
}

/* out_z[p*rows + i] = in[z*bs + i*ld + p] for i < rows, p < cols and each
 * matrix z of a batch, out_z at z*rows*cols: operands packed k-major for
 * nrt_gemm_rb, in the packing buffer. A row of out per work-item, written in
 * order (a work-item per element measured several times slower on CPU
 * devices). Global (cols, batch). */
__kernel void nrt_transpose(__global const float *A, long in, int ld, int rows, int cols, __global float *P,
                            long bs)
{
    const int p = get_global_id(0);
    const long z = get_global_id(1);
    if (p >= cols)
        return;
    __global const float *a = A + in + z * bs + p;
    __global float *out = P + z * rows * cols + (long)p * rows;
    for (int i = 0; i < rows; i++)
        out[i] = a[(long)i * ld];
}

/* ----------------------------------------------------------- convolution -- */
/* The geometry travels as an int8, an int4 and an int2:
 *   g0 = (ci, h, w, kh, kw, ho, wo, cig)   g1 = (s0, s1, p0, p1)   d = (d0, d1).
 * A chunk of nb images and one group at a time (cl_lib.c): the im2col matrix of
 * image b holds col(b, r, q) for tap row r = (ch*kh + i)*kw + j < cig*kh*kw
 * and output pixel q = oh*wo + ow, at col + b*cs.s0 + r*cs.s1 + q*cs.s2:
 * per image [kk, hw] (cs = (kk*hw, hw, 1)) for every GEMM cl_lib.c runs (other
 * layouts, e.g. per pixel [nb*hw, kk], by cs). Every kernel
 * below has a work-item per row (of an image or a plane), looping along it:
 * on CPU devices this measured several times faster than a work-item per
 * element, whose index arithmetic dominates. */

/* col(b, r, oh*wo + ow) = x[b, ch, ih, iw] (0 outside); x at the chunk's
 * first image and the group's first channel, images ci*h*w apart. Global
 * (nb*cig): the kh*kw rows of one image and channel per work-item. */
__kernel void nrt_im2col(__global float *A, long xoff, long coloff, int nb, int8 g0, int4 g1, int2 d, long4 cs)
{
    const int e = get_global_id(0);
    if (e >= nb * g0.s7)
        return;
    const int bimg = e / g0.s7, ch = e % g0.s7, h = g0.s1, w = g0.s2, ho = g0.s5, wo = g0.s6, s1 = g1.s1;
    const long st = cs.s2;
    __global const float *plane = A + xoff + ((long)bimg * g0.s0 + ch) * h * w;
    for (int i = 0; i < g0.s3; i++)
        for (int j = 0; j < g0.s4; j++) {
            const int r = (ch * g0.s3 + i) * g0.s4 + j, off = j * d.s1 - g1.s3;
            __global float *out = A + coloff + bimg * cs.s0 + r * cs.s1;
            for (int oh = 0; oh < ho; oh++, out += wo * st) {
                const int ih = oh * g1.s0 - g1.s2 + i * d.s0;
                if (ih < 0 || ih >= h) {
                    for (int ow = 0; ow < wo; ow++)
                        out[ow * st] = 0.0f;
                    continue;
                }
                __global const float *line = plane + (long)ih * w;
                if (st == 1 && s1 == 1 && off >= 0 && off + wo <= w) {
                    int ow = 0;
                    for (; ow + 8 <= wo; ow += 8) /* a row copied by vectors: the copies are short */
                        vstore8(vload8(0, line + off + ow), 0, out + ow);
                    for (; ow < wo; ow++)
                        out[ow] = line[ow + off];
                    continue;
                }
                for (int ow = 0; ow < wo; ow++) {
                    int iw = ow * s1 + off;
                    out[ow * st] = iw >= 0 && iw < w ? line[iw] : 0.0f;
                }
            }
        }
}

/* The adjoint of im2col: dx[b, ch, ih, iw] = the sum of the col entries
 * that im2col took from it, taps (i, j) in ascending order from a cleared
 * plane, as kernels.c's col2im adds them (so bit for bit). Global (nb*cig):
 * one input plane per work-item, the taps scattered into it in order. */
__kernel void nrt_col2im(__global float *A, long coloff, long dxoff, int nb, int8 g0, int4 g1, int2 d, long4 cs)
{
    const int e = get_global_id(0);
    if (e >= nb * g0.s7)
        return;
    const int bimg = e / g0.s7, ch = e % g0.s7, h = g0.s1, w = g0.s2, ho = g0.s5, wo = g0.s6, s1 = g1.s1;
    const long st = cs.s2;
    __global float *dx = A + dxoff + ((long)bimg * g0.s0 + ch) * h * w;
    for (int q = 0; q < h * w; q++)
        dx[q] = 0.0f;
    for (int i = 0; i < g0.s3; i++)
        for (int j = 0; j < g0.s4; j++) {
            const int r = (ch * g0.s3 + i) * g0.s4 + j, off = j * d.s1 - g1.s3;
            __global const float *col = A + coloff + bimg * cs.s0 + r * cs.s1;
            for (int oh = 0; oh < ho; oh++, col += wo * st) {
                const int ih = oh * g1.s0 - g1.s2 + i * d.s0;
                if (ih < 0 || ih >= h)
                    continue;
                __global float *line = dx + (long)ih * w;
                if (st == 1 && s1 == 1 && off >= 0 && off + wo <= w) {
                    int ow = 0;
                    for (; ow + 8 <= wo; ow += 8) /* the same sums, 8 at a time */
                        vstore8(vload8(0, line + off + ow) + vload8(0, col + ow), 0, line + off + ow);
                    for (; ow < wo; ow++)
                        line[ow + off] += col[ow];
                    continue;
                }
                for (int ow = 0; ow < wo; ow++) {
                    int iw = ow * s1 + off;
                    if (iw >= 0 && iw < w)
                        line[iw] += col[ow * st];
                }
            }
        }
}

/* The input gradient in one pass on CPU devices (cl_lib.c's conv_dx_direct):
 * dx[b, ch] = col2im(W_ch^T dy_b), where W_ch^T is the kh*kw taps of input
 * channel ch by the cog output channels of its group, the GEMM and the
 * scatter of col2im done per block of output pixels in registers, without
 * the dcol matrix in memory. A work-item owns one input plane (clears it,
 * then adds into it), so no two write the same element; it computes DXT taps
 * x DXW output pixels at a time (DXN vectors of RBV: 9 x 2 x 16 floats with
 * AVX-512) over k = cog, like nrt_gemm_rb with A the plane's taps and B dy's
 * rows, then adds each (tap, pixel) to its input pixel when that lies inside
 * the plane, a run of an output row at a time. bover: dy's buffer extends a
 * whole block past every row, so a partial last block loads whole vectors
 * (lanes past hw are not added). Global (ci, n): the plane of channel ch of
 * image b. */
#define DXT 9
#if RBV >= 16
#define DXN 2
#else
#define DXN 1
#endif
#define DXW (DXN * RBV)

/* acc[t][v] = sum over o < cog of ap[o*wst + t] * bp[o*hw + v*RBV ...], the
 * rows t >= nt (a last chunk of taps) reading tap nt - 1. */
static inline __attribute__((always_inline)) void dx_block(floatr acc[DXT][DXN], __global const float *ap,
                                                          long wst, __global const float *bp, int hw, int j0,
                                                          int cog, int full, int nt, const int partial)
{
#pragma unroll
    for (int t = 0; t < DXT; t++)
#pragma unroll
        for (int v = 0; v < DXN; v++)
            acc[t][v] = (floatr)(0.0f);
    for (int o = 0; o < cog; o++, bp += hw, ap += wst) {
        floatr bv[DXN];
#pragma unroll
        for (int v = 0; v < DXN; v++) {
            const int j = j0 + v * RBV;
            bv[v] = full || j + RBV <= hw ? vloadr(v, bp)
                    : j < hw              ? rb_part(bp + v * RBV, hw - j)
                                          : (floatr)(0.0f);
        }
#pragma unroll
        for (int t = 0; t < DXT; t++) {
            const floatr av = (floatr)(ap[partial ? min(t, nt - 1) : t]);
#pragma unroll
            for (int v = 0; v < DXN; v++)
                acc[t][v] = fma(av, bv[v], acc[t][v]);
        }
    }
}

__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
nrt_conv_dx_rb(__global float *A, long dyoff, long woff, long dxoff, int co, int8 g0, int4 g1, int2 d, int bover)
{
    const int ch = get_global_id(0), b = get_global_id(1);
    const int ci = g0.s0, h = g0.s1, w = g0.s2, kw = g0.s4, ho = g0.s5, wo = g0.s6, cig = g0.s7;
    const int s0 = g1.s0, s1 = g1.s1, p0 = g1.s2, p1 = g1.s3;
    if (ch >= ci)
        return;
    const int grp = ch / cig, taps = g0.s3 * kw, hw = ho * wo, cog = co / (ci / cig);
    __global float *plane = A + dxoff + ((long)b * ci + ch) * h * w;
    for (int q = 0; q < h * w; q++)
        plane[q] = 0.0f;
    __global const float *dyb = A + dyoff + ((long)b * co + (long)grp * cog) * hw;
    /* W[grp*cog + o, ch % cig, tap]: o cig*taps apart */
    __global const float *wc = A + woff + (long)grp * cog * cig * taps + (long)(ch % cig) * taps;
    const long wst = (long)cig * taps;
    for (int t0 = 0; t0 < taps; t0 += DXT) {
        const int nt = min(DXT, taps - t0);
        int ti[DXT], tj[DXT]; /* each tap's offset in the plane from its pixel's window corner */
        for (int t = 0; t < nt; t++) {
            ti[t] = (t0 + t) / kw * d.s0;
            tj[t] = (t0 + t) % kw * d.s1;
        }
        for (int j0 = 0; j0 < hw; j0 += DXW) {
            floatr acc[DXT][DXN];
            const int full = bover || j0 + DXW <= hw;
            if (nt == DXT)
                dx_block(acc, wc + t0, wst, dyb + j0, hw, j0, cog, full, nt, 0);
            else
                dx_block(acc, wc + t0, wst, dyb + j0, hw, j0, cog, full, nt, 1);
            float cv[DXT][DXW];
#pragma unroll
            for (int t = 0; t < DXT; t++)
#pragma unroll
                for (int v = 0; v < DXN; v++)
                    vstorer(acc[t][v], v, cv[t]);
            /* col2im of the block, tap by tap, by runs of pixels in one output
             * row (taps outermost: consecutive runs add into different input
             * rows; runs of the taps of one row, one pixel apart, one after
             * the other stalled on store forwarding, a fifth of the kernel) */
            const int un = min(DXW, hw - j0);
            for (int t = 0; t < nt; t++) {
                int oh = j0 / wo, ow = j0 % wo;
                for (int u = 0; u < un; oh++, ow = 0) {
                    const int len = min(un - u, wo - ow), ih = oh * s0 - p0 + ti[t], iw = ow * s1 - p1 + tj[t];
                    const float *src = cv[t] + u;
                    u += len;
                    if (ih < 0 || ih >= h)
                        continue;
                    __global float *line = plane + ih * w;
                    if (s1 == 1 && iw >= 0 && iw + len <= w) {
                        for (int e = 0; e < len; e++)
                            line[iw + e] += src[e];
                        continue;
                    }
                    for (int e = 0; e < len; e++) {
                        const int x = iw + e * s1;
                        if (x >= 0 && x < w)
                            line[x] += src[e];
                    }
                }
            }
        }
    }
}

/* ------------------------------------------------ Winograd F(4x4, 3x3) -- */
/* 3x3 stride-1 convolutions on CPU devices (cl_lib.c's wino_*), the transforms
 * of runtime/winograd.c (its matrices copied here: the points 0, 1, -1, 1/2,
 * -2 and infinity) around 36 batched register-block GEMMs: a 4x4 output tile
 * is A^T [U . V] A with U = G g G^T (the weights) and V = B^T d B (a 6x6
 * input patch d, 4 apart); the input gradient B [U^T . E] B^T with E = A dy
 * A^T (a 4x4 tile of dy) added into the input's padded plane; the weight
 * gradient G^T [sum over tiles of V^T E] G. Channels are the vectors (RBV
 * of them, cl_lib.c asks ci and co to be multiples): the images and dy come
 * pixel-major ([image][pixel][channel], nrt_transpose), V [36][T][ci], E
 * [36][T][co], U [36][ci][co] (or U^T [36][co][ci]) with T the chunk's
 * tiles, tile (b, ty, tx) at (b*th + ty)*tw + tx. Each macro applies one
 * matrix to d[0..] of type TY (float or floatr) into r[0..]. */
#define W4_BT(TY, d, r)                                                                                         \
    do {                                                                                                        \
        r[0] = fma((TY)(1.5f), d[3] - d[1], fma((TY)(-2.0f), d[2], d[0] + d[4]));                               \
        r[1] = fma((TY)(2.5f), d[3], fma((TY)(0.5f), d[2], d[4] - d[1]));                                       \
        r[2] = fma((TY)(0.5f), d[3], fma((TY)(-2.5f), d[2], d[4] + d[1]));                                      \
        r[3] = fma((TY)(2.0f), d[3] - d[1], d[4] - d[2]);                                                       \
        r[4] = fma((TY)(0.5f), d[1] - d[3], d[4] - d[2]);                                                       \
        r[5] = fma((TY)(1.5f), d[4] - d[2], fma((TY)(-2.0f), d[3], d[1] + d[5]));                               \
    } while (0)
#define W4_B(TY, d, r)                                                                                          \
    do {                                                                                                        \
        r[0] = d[0];                                                                                            \
        r[1] = fma((TY)(-1.5f), d[0], fma((TY)(-2.0f), d[3], fma((TY)(0.5f), d[4], d[2] - d[1] + d[5])));       \
        r[2] = fma((TY)(-2.0f), d[0],                                                                           \
                   fma((TY)(0.5f), d[1], fma((TY)(-2.5f), d[2], fma((TY)(-1.5f), d[5], -(d[3] + d[4])))));      \
        r[3] = fma((TY)(2.0f), d[3] - d[5], fma((TY)(0.5f), d[2] - d[4], fma((TY)(2.5f), d[1], (TY)(1.5f) * d[0]))); \
        r[4] = fma((TY)(1.5f), d[5], d[0] + d[1] + d[2] + d[3] + d[4]);                                         \
        r[5] = d[5];                                                                                            \
    } while (0)
#define W4_G(TY, d, r)                                                                                          \
    do {                                                                                                        \
        r[0] = d[0];                                                                                            \
        r[1] = (TY)(1.0f / 3) * (d[0] + d[1] + d[2]);                                                           \
        r[2] = (TY)(1.0f / 3) * (d[1] - d[0] - d[2]);                                                           \
        r[3] = fma((TY)(-16.0f / 15), d[0], fma((TY)(-8.0f / 15), d[1], (TY)(-4.0f / 15) * d[2]));              \
        r[4] = fma((TY)(1.0f / 15), d[0], fma((TY)(-2.0f / 15), d[1], (TY)(4.0f / 15) * d[2]));                 \
        r[5] = d[2];                                                                                            \
    } while (0)
#define W4_GT(TY, d, r)                                                                                         \
    do {                                                                                                        \
        r[0] = fma((TY)(1.0f / 3), d[1] - d[2], fma((TY)(-16.0f / 15), d[3], fma((TY)(1.0f / 15), d[4], d[0]))); \
        r[1] = fma((TY)(1.0f / 3), d[1] + d[2], fma((TY)(-8.0f / 15), d[3], (TY)(-2.0f / 15) * d[4]));          \
        r[2] = fma((TY)(1.0f / 3), d[1] - d[2], fma((TY)(-4.0f / 15), d[3], fma((TY)(4.0f / 15), d[4], d[5]))); \
    } while (0)
#define W4_AT(TY, d, r)                                                                                         \
    do {                                                                                                        \
        r[0] = d[0] + d[1] + d[2] + d[3] + d[4];                                                                \
        r[1] = fma((TY)(0.5f), d[3], fma((TY)(-2.0f), d[4], d[1] - d[2]));                                      \
        r[2] = fma((TY)(0.25f), d[3], fma((TY)(4.0f), d[4], d[1] + d[2]));                                      \
        r[3] = fma((TY)(0.125f), d[3], fma((TY)(-8.0f), d[4], d[1] - d[2] + d[5]));                             \
    } while (0)
#define W4_A(TY, d, r)                                                                                          \
    do {                                                                                                        \
        r[0] = d[0];                                                                                            \
        r[1] = d[0] + d[1] + d[2] + d[3];                                                                       \
        r[2] = d[0] - d[1] + d[2] - d[3];                                                                       \
        r[3] = fma((TY)(0.5f), d[1], fma((TY)(0.25f), d[2], fma((TY)(0.125f), d[3], d[0])));                    \
        r[4] = fma((TY)(-2.0f), d[1], fma((TY)(4.0f), d[2], fma((TY)(-8.0f), d[3], d[0])));                     \
        r[5] = d[3];                                                                                            \
    } while (0)

/* RBV floats p[0], p[st], ..., p[(RBV-1)*st] as a vector (the weights' taps
 * of RBV channels; the compiler may make a gather of it: only for the small
 * weight transform). */
#if RBV == 16
#define GATHER_R(p, st)                                                                                       \
    ((float16)(p[0], p[st], p[2 * st], p[3 * st], p[4 * st], p[5 * st], p[6 * st], p[7 * st], p[8 * st],     \
               p[9 * st], p[10 * st], p[11 * st], p[12 * st], p[13 * st], p[14 * st], p[15 * st]))
#elif RBV == 8
#define GATHER_R(p, st) ((float8)(p[0], p[st], p[2 * st], p[3 * st], p[4 * st], p[5 * st], p[6 * st], p[7 * st]))
#else
#define GATHER_R(p, st) ((float4)(p[0], p[st], p[2 * st], p[3 * st]))
#endif
static inline floatr gather_r(__global const float *p, int st) { return GATHER_R(p, st); }

/* The RBV channel planes at p (plane floats apart) pixel-major: st[q*RBV +
 * l] = p[l*plane + q] for q < n, by 4x4 blocks transposed in registers
 * (gathering each vector measured slower: gather instructions). */
static inline void planes_to_pixels(__global const float *p, long plane, int n, __global float *st)
{
    int q = 0;
    for (; q + 4 <= n; q += 4)
        for (int l = 0; l < RBV; l += 4) {
            __global const float *s = p + l * plane + q;
            const float4 a = vload4(0, s), b = vload4(0, s + plane), c = vload4(0, s + 2 * plane),
                         d = vload4(0, s + 3 * plane);
            __global float *o = st + (long)q * RBV + l;
            vstore4((float4)(a.s0, b.s0, c.s0, d.s0), 0, o);
            vstore4((float4)(a.s1, b.s1, c.s1, d.s1), 0, o + RBV);
            vstore4((float4)(a.s2, b.s2, c.s2, d.s2), 0, o + 2 * RBV);
            vstore4((float4)(a.s3, b.s3, c.s3, d.s3), 0, o + 3 * RBV);
        }
    for (; q < n; q++) /* (vectorised, a gather) */
#pragma clang loop vectorize(disable)
        for (int l = 0; l < RBV; l++)
            st[(long)q * RBV + l] = p[l * plane + q];
}

/* The other way: p[l*plane + y*w + x] = st[((y + oy)*sw + x + ox)*RBV + l]
 * for y < h, x < w (st: pixel-major rows of sw pixels). */
static inline void pixels_to_planes(__global const float *st, int sw, int oy, int ox, int h, int w,
                                    __global float *p, long plane)
{
    for (int y = 0; y < h; y++) {
        __global const float *row = st + ((long)(y + oy) * sw + ox) * RBV;
        __global float *o = p + (long)y * w;
        int x = 0;
        for (; x + 4 <= w; x += 4)
            for (int l = 0; l < RBV; l += 4) {
                __global const float *s = row + x * RBV + l;
                const float4 a = vload4(0, s), b = vload4(0, s + RBV), c = vload4(0, s + 2 * RBV),
                             d = vload4(0, s + 3 * RBV);
                vstore4((float4)(a.s0, b.s0, c.s0, d.s0), 0, o + l * plane + x);
                vstore4((float4)(a.s1, b.s1, c.s1, d.s1), 0, o + (l + 1) * plane + x);
                vstore4((float4)(a.s2, b.s2, c.s2, d.s2), 0, o + (l + 2) * plane + x);
                vstore4((float4)(a.s3, b.s3, c.s3, d.s3), 0, o + (l + 3) * plane + x);
            }
        for (; x < w; x++) /* (vectorised, a scatter: microcoded on AMD) */
#pragma clang loop vectorize(disable)
            for (int l = 0; l < RBV; l++)
                o[l * plane + x] = row[x * RBV + l];
    }
}

/* U[e][r][c] = (G g G^T)[e] for the weights g = w[o][i] [3][3]: tr 0, U
 * [36][ci][co] (r = i, c = o); tr 1, U^T [36][co][ci] (r = o, c = i), so
 * rows = ci or co. A vector of RBV columns per work-item. Global (cols / RBV,
 * rows). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
nrt_wino_u(__global float *A, long woff, __global float *W, long uoff, int ci, int co, int tr)
{
    const int c0 = get_global_id(0) * RBV, r = get_global_id(1), rows = tr ? co : ci, cols = tr ? ci : co;
    if (c0 >= cols || r >= rows)
        return;
    const int st = tr ? 9 : ci * 9;
    __global const float *g = A + woff + (tr ? ((long)r * ci + c0) * 9 : ((long)c0 * ci + r) * 9);
    floatr t[6][3];
#pragma unroll
    for (int j = 0; j < 3; j++) {
        floatr d[3] = {gather_r(g + j, st), gather_r(g + 3 + j, st), gather_r(g + 6 + j, st)}, q[6];
        W4_G(floatr, d, q);
#pragma unroll
        for (int k = 0; k < 6; k++)
            t[k][j] = q[k];
    }
    const long plane = (long)ci * co;
#pragma unroll
    for (int k = 0; k < 6; k++) {
        floatr q[6];
        W4_G(floatr, t[k], q);
#pragma unroll
        for (int e = 0; e < 6; e++)
            vstorer(q[e], 0, W + uoff + (k * 6 + e) * plane + (long)r * cols + c0);
    }
}

/* V[e][id][c] = (B^T d B)[e] for the 6x6 patches d of image b's tiles (at
 * rows 4ty - p0, columns 4tx - p1; zero outside) from x [nb][ci][h][w] in the
 * arena, g = (ci, h, w, ho, wo, th, tw, T): per block of RBV channels the
 * image's planes pixel-major into the work-item's own h*w vectors at S + soff
 * (each float loaded once), then the tiles from them. With zoff >= 0 also
 * W[zoff + id] = the tile's outputs (bit 4i + j of 16) whose 3x3 receptive
 * field is zero in every channel, from a flag per pixel (after the vectors
 * at soff): the forward gives them exactly act(bias), as direct convolution
 * does (nrt_wino_y). Global (nb). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
nrt_wino_v(__global float *A, long xoff, __global float *W, long soff, long voff, long zoff, int8 g, int2 p)
{
    const int b = get_global_id(0), ci = g.s0, h = g.s1, w = g.s2, ho = g.s3, wo = g.s4, th = g.s5, tw = g.s6,
              T = g.s7, hw = h * w;
    if (b * th * tw >= T)
        return;
    __global const float *xb = A + xoff + (long)b * ci * hw;
    __global float *st = W + soff + (long)b * hw * (RBV + 1), *flag = st + (long)hw * RBV;
    if (zoff >= 0)
        for (int q = 0; q < hw; q++)
            flag[q] = 0.0f;
    for (int c0 = 0; c0 < ci; c0 += RBV) {
        planes_to_pixels(xb + (long)c0 * hw, hw, hw, st);
        if (zoff >= 0)
            for (int q = 0; q < hw; q++)
                if (any(vloadr(q, st) != (floatr)(0.0f)))
                    flag[q] = 1.0f;
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++) {
                const int id = (b * th + ty) * tw + tx, y0 = 4 * ty - p.s0, x0 = 4 * tx - p.s1;
                floatr t[6][6];
#pragma unroll
                for (int j = 0; j < 6; j++) {
                    floatr d[6], r[6];
                    const int xx = x0 + j;
#pragma unroll
                    for (int i = 0; i < 6; i++) {
                        const int yy = y0 + i;
                        d[i] = yy >= 0 && yy < h && xx >= 0 && xx < w ? vloadr(yy * w + xx, st) : (floatr)(0.0f);
                    }
                    W4_BT(floatr, d, r);
#pragma unroll
                    for (int i = 0; i < 6; i++)
                        t[i][j] = r[i];
                }
#pragma unroll
                for (int i = 0; i < 6; i++) {
                    floatr r[6];
                    W4_BT(floatr, t[i], r);
#pragma unroll
                    for (int j = 0; j < 6; j++)
                        vstorer(r[j], 0, W + voff + ((long)(i * 6 + j) * T + id) * ci + c0);
                }
            }
    }
    if (zoff < 0)
        return;
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            int z = 0;
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) {
                    const int oy = 4 * ty + i - p.s0, ox = 4 * tx + j - p.s1;
                    float any_nz = 0.0f;
                    for (int a = 0; a < 3; a++)
                        for (int c = 0; c < 3; c++) {
                            const int yy = oy + a, xx = ox + c;
                            if (yy >= 0 && yy < h && xx >= 0 && xx < w)
                                any_nz += flag[yy * w + xx];
                        }
                    if (any_nz == 0.0f)
                        z |= 1 << (i * 4 + j);
                }
            W[zoff + (b * th + ty) * tw + tx] = (float)z;
        }
}

/* y[b][o][4ty + i][4tx + j] = act((A^T M A)[i][j] + bias[o]) from M
 * [36][T][co] (GEMM's) for image b's tiles and RBV output channels, the
 * outputs that lie inside the plane (pixel-major into the work-item's own
 * ho*wo vectors at S + soff, then channel-major into y); those whose field
 * is all zero (bit of W[zoff + id], zoff >= 0) exactly act(bias). g = (co,
 * ho, wo, th, tw, T, bias given, 0). Global (co / RBV, nb). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
nrt_wino_y(__global float *A, __global float *W, long moff, long zoff, long soff, long yoff, long bias, int relu,
           int8 g)
{
    const int o0 = get_global_id(0) * RBV, b = get_global_id(1), co = g.s0, ho = g.s1, wo = g.s2, th = g.s3,
              tw = g.s4, T = g.s5;
    if (b * th * tw >= T || o0 >= co)
        return;
    const floatr bv = g.s6 ? vloadr(0, A + bias + o0) : (floatr)(0.0f);
    const long plane = (long)ho * wo;
    __global float *st = W + soff + ((long)b * (co / RBV) + o0 / RBV) * plane * RBV;
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const int id = (b * th + ty) * tw + tx;
            const int z = zoff >= 0 ? (int)W[zoff + id] : 0;
            floatr t[4][6];
#pragma unroll
            for (int j = 0; j < 6; j++) {
                floatr d[6], r[4];
#pragma unroll
                for (int i = 0; i < 6; i++)
                    d[i] = vloadr(0, W + moff + ((long)(i * 6 + j) * T + id) * co + o0);
                W4_AT(floatr, d, r);
#pragma unroll
                for (int i = 0; i < 4; i++)
                    t[i][j] = r[i];
            }
            for (int i = 0; i < 4 && 4 * ty + i < ho; i++) {
                floatr r[4];
                W4_AT(floatr, t[i], r);
                for (int j = 0; j < 4 && 4 * tx + j < wo; j++) {
                    floatr v = ((z >> (i * 4 + j)) & 1 ? (floatr)(0.0f) : r[j]) + bv;
                    if (relu)
                        v = v > (floatr)(0.0f) ? v : (floatr)(0.0f);
                    vstorer(v, (4 * ty + i) * wo + 4 * tx + j, st);
                }
            }
        }
    pixels_to_planes(st, wo, 0, 0, ho, wo, A + yoff + ((long)b * co + o0) * plane, plane);
}

/* E[e][id][o] = (A d A^T)[e] for the 4x4 blocks d of image b's output
 * gradient dy [nb][co][ho][wo] in the arena (zero past the outputs), g =
 * (co, ho, wo, th, tw, T): per block of RBV channels the planes pixel-major
 * into the work-item's own ho*wo vectors at S + soff, then the tiles from
 * them. Global (nb). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
nrt_wino_e(__global float *A, long doff, __global float *W, long soff, long eoff, int8 g)
{
    const int b = get_global_id(0), co = g.s0, ho = g.s1, wo = g.s2, th = g.s3, tw = g.s4, T = g.s5,
              hw = ho * wo;
    if (b * th * tw >= T)
        return;
    __global const float *db = A + doff + (long)b * co * hw;
    __global float *st = W + soff + (long)b * hw * RBV;
    for (int o0 = 0; o0 < co; o0 += RBV) {
        planes_to_pixels(db + (long)o0 * hw, hw, hw, st);
        for (int ty = 0; ty < th; ty++)
            for (int tx = 0; tx < tw; tx++) {
                const int id = (b * th + ty) * tw + tx;
                floatr t[6][4];
#pragma unroll
                for (int j = 0; j < 4; j++) {
                    floatr d[4], r[6];
                    const int xx = 4 * tx + j;
#pragma unroll
                    for (int i = 0; i < 4; i++) {
                        const int yy = 4 * ty + i;
                        d[i] = yy < ho && xx < wo ? vloadr(yy * wo + xx, st) : (floatr)(0.0f);
                    }
                    W4_A(floatr, d, r);
#pragma unroll
                    for (int i = 0; i < 6; i++)
                        t[i][j] = r[i];
                }
#pragma unroll
                for (int i = 0; i < 6; i++) {
                    floatr r[6];
                    W4_A(floatr, t[i], r);
#pragma unroll
                    for (int j = 0; j < 6; j++)
                        vstorer(r[j], 0, W + eoff + ((long)(i * 6 + j) * T + id) * co + o0);
                }
            }
    }
}

/* dx[b][c][.][.] from Z [36][T][ci] (the GEMM's U^T . E): B Z B^T of each
 * of image b's tiles added, tile by tile in order, into its padded plane
 * (pixel-major vectors of channels [c, c + RBV) at S + soff, hp x wp, its
 * own), whose inside is then stored channel-major. g = (ci, h, w, th, tw,
 * T, hp, wp), q = (p0, p1). Global (ci / RBV, nb). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
nrt_wino_dx(__global float *A, __global float *W, long zoff, long soff, long dxoff, int8 g, int2 q)
{
    const int cb = get_global_id(0), b = get_global_id(1), ci = g.s0, h = g.s1, w = g.s2, th = g.s3, tw = g.s4,
              T = g.s5, hp = g.s6, wp = g.s7, c0 = cb * RBV;
    if (c0 >= ci)
        return;
    __global float *pl = W + soff + ((long)b * (ci / RBV) + cb) * hp * wp * RBV;
    for (int k = 0; k < hp * wp; k++)
        vstorer((floatr)(0.0f), k, pl);
    for (int ty = 0; ty < th; ty++)
        for (int tx = 0; tx < tw; tx++) {
            const int id = (b * th + ty) * tw + tx;
            floatr t[6][6];
#pragma unroll
            for (int j = 0; j < 6; j++) {
                floatr d[6], r[6];
#pragma unroll
                for (int i = 0; i < 6; i++)
                    d[i] = vloadr(0, W + zoff + ((long)(i * 6 + j) * T + id) * ci + c0);
                W4_B(floatr, d, r);
#pragma unroll
                for (int i = 0; i < 6; i++)
                    t[i][j] = r[i];
            }
#pragma unroll
            for (int i = 0; i < 6; i++) {
                floatr r[6];
                W4_B(floatr, t[i], r);
                __global float *row = pl + ((4 * ty + i) * wp + 4 * tx) * RBV;
#pragma unroll
                for (int j = 0; j < 6; j++)
                    vstorer(vloadr(j, row) + r[j], j, row);
            }
        }
    pixels_to_planes(pl, wp, q.s0, q.s1, h, w, A + dxoff + ((long)b * ci + c0) * h * w, (long)h * w);
}

/* dw[o][i][3][3] = G^T M G for M[e][i][o] [36][ci][co] (the summed V^T E),
 * a vector of RBV output channels per work-item. Global (co / RBV, ci). */
__kernel __attribute__((reqd_work_group_size(1, 1, 1))) void
nrt_wino_dw(__global float *A, __global const float *W, long moff, long dwoff, int ci, int co)
{
    const int o0 = get_global_id(0) * RBV, i = get_global_id(1);
    if (o0 >= co || i >= ci)
        return;
    const long plane = (long)ci * co;
    __global const float *m = W + moff + (long)i * co + o0;
    floatr t[3][6];
#pragma unroll
    for (int c = 0; c < 6; c++) {
        floatr d[6], r[3];
#pragma unroll
        for (int k = 0; k < 6; k++)
            d[k] = vloadr(0, m + (k * 6 + c) * plane);
        W4_GT(floatr, d, r);
#pragma unroll
        for (int a = 0; a < 3; a++)
            t[a][c] = r[a];
    }
    float s[9][RBV];
#pragma unroll
    for (int a = 0; a < 3; a++) {
        floatr r[3];
        W4_GT(floatr, t[a], r);
#pragma unroll
        for (int k = 0; k < 3; k++)
            vstorer(r[k], 0, s[a * 3 + k]);
    }
    __global float *dw = A + dwoff + ((long)o0 * ci + i) * 9;
    for (int l = 0; l < RBV; l++)
#pragma clang loop vectorize(disable)
        for (int k = 0; k < 9; k++)
            dw[(long)l * ci * 9 + k] = s[k][l];
}

/* --------------------------------------------------------------- pooling -- */
/* The geometry: g = (h, w, ho, wo, k0, k1, s0, s1), p = (p0, p1). One row of
 * a plane per work-item: global (planes*ho) for outputs, (planes*h) for input
 * gradients. */

/* The flat index within a plane of window (oh, ow)'s first maximum, -1 when
 * it holds only padding (kernels.c's window_argmax). */
static int window_argmax(__global const float *plane, int8 g, int2 p, int oh, int ow)
{
    int best = -1;
    for (int i = 0; i < g.s4; i++) {
        int ih = oh * g.s6 - p.s0 + i;
        if (ih < 0 || ih >= g.s0)
            continue;
        for (int j = 0; j < g.s5; j++) {
            int iw = ow * g.s7 - p.s1 + j;
            if (iw < 0 || iw >= g.s1)
                continue;
            int at = ih * g.s1 + iw;
            if (best < 0 || plane[at] > plane[best])
                best = at;
        }
    }
    return best;
}

/* The output windows that may hold input coordinate i along a dim of kernel
 * k, stride s, padding p and no outputs: [*lo, *hi), from the inverse of
 * i = o*s - p + t, 0 <= t < k. */
static void windows_of(int i, int k, int s, int p, int no, int *lo, int *hi)
{
    int a = i + p - k + 1;
    *lo = a <= 0 ? 0 : (a + s - 1) / s;
    *hi = min((i + p) / s + 1, no);
}

/* Whether every window lies inside its plane and no two overlap (kernels.c's
 * pool_disjoint): each input then has at most one window, found by division. */
static int disjoint(int8 g, int2 p)
{
    return p.s0 == 0 && p.s1 == 0 && g.s6 >= g.s4 && g.s7 >= g.s5 && (g.s2 - 1) * g.s6 + g.s4 <= g.s0 &&
           (g.s3 - 1) * g.s7 + g.s5 <= g.s1;
}

/* Which of a 2x2 window's inputs (a: the top row, b: the bottom one; 0-3 in
 * row-major order) is its first maximum, as nrt_maxpool_grad picks it. */
static int argmax_2x2(float2 a, float2 b)
{
    int best = 0;
    float v = a.x;
    if (a.y > v)
        best = 1, v = a.y;
    if (b.x > v)
        best = 2, v = b.x;
    if (b.y > v)
        best = 3;
    return best;
}

/* The maxima of 8 adjacent 2x2 windows (top rows a, bottom rows b), each the
 * chain of comparisons of nrt_maxpool's scalar loop. */
static float8 max4_8(float16 a, float16 b)
{
    float8 v = select(a.even, a.odd, a.odd > a.even);
    v = select(v, b.even, b.even > v);
    return select(v, b.odd, b.odd > v);
}

/* window_argmax for a window inside the plane. */
static int inner_argmax(__global const float *plane, int8 g, int oh, int ow)
{
    int at0 = oh * g.s6 * g.s1 + ow * g.s7, best = at0;
    for (int i = 0; i < g.s4; i++)
        for (int j = 0; j < g.s5; j++)
            if (plane[at0 + i * g.s1 + j] > plane[best])
                best = at0 + i * g.s1 + j;
    return best;
}

/* y = max over each window (0 for a window of padding only). */
__kernel void nrt_maxpool(__global float *A, long xoff, long yoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0);
    if (e >= planes * g.s2)
        return;
    const int pl = e / g.s2, oh = e % g.s2;
    __global const float *plane = A + xoff + (long)pl * g.s0 * g.s1;
    __global float *y = A + yoff + (long)e * g.s3;
    if (disjoint(g, p) && g.s4 == 2 && g.s5 == 2 && g.s6 == 2 && g.s7 == 2) {
        /* 2x2 windows at stride 2: the first maximum, as argmax4 in kernels.c. */
        __global const float *r0 = plane + 2 * oh * g.s1, *r1 = r0 + g.s1;
        int ow = 0;
        if (g.s3 >= 8) { /* 8 windows as vectors, the last 8 of the row last (again where they overlap) */
            for (int o0 = 0; o0 < g.s3; o0 += 8) {
                const int o = min(o0, g.s3 - 8);
                vstore8(max4_8(vload16(0, r0 + 2 * o), vload16(0, r1 + 2 * o)), 0, y + o);
            }
            ow = g.s3;
        }
        for (; ow < g.s3; ow++) {
            float2 a = vload2(ow, r0), b = vload2(ow, r1);
            float v = a.y > a.x ? a.y : a.x;
            v = b.x > v ? b.x : v;
            y[ow] = b.y > v ? b.y : v;
        }
        return;
    }
    if (disjoint(g, p)) {
        for (int ow = 0; ow < g.s3; ow++)
            y[ow] = plane[inner_argmax(plane, g, oh, ow)];
        return;
    }
    for (int ow = 0; ow < g.s3; ow++) {
        int at = window_argmax(plane, g, p, oh, ow);
        y[ow] = at < 0 ? 0.0f : plane[at];
    }
}

/* dx[at] = the sum of dy over the windows whose first maximum is at, in
 * window order. */
__kernel void nrt_maxpool_grad(__global float *A, long xoff, long dyoff, long dxoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0);
    if (e >= planes * g.s0)
        return;
    const int pl = e / g.s0, ih = e % g.s0;
    __global const float *plane = A + xoff + (long)pl * g.s0 * g.s1;
    __global const float *dy = A + dyoff + (long)pl * g.s2 * g.s3;
    __global float *dx = A + dxoff + (long)e * g.s1;
    if (disjoint(g, p) && g.s4 == 2 && g.s5 == 2 && g.s6 == 2 && g.s7 == 2) {
        /* 2x2 windows at stride 2: each input row lies in one row of windows. */
        int oh = ih / 2, top = ih % 2 == 0;
        for (int iw = 0; iw < g.s1; iw++)
            dx[iw] = 0.0f;
        if (oh >= g.s2)
            return;
        __global const float *r0 = plane + 2 * oh * g.s1, *r1 = r0 + g.s1;
        for (int ow = 0; ow < g.s3; ow++) {
            float2 a = vload2(ow, r0), b = vload2(ow, r1);
            const int best = argmax_2x2(a, b);
            float d = 0.0f + dy[oh * g.s3 + ow];
            if (top && best < 2)
                dx[2 * ow + best] = d;
            else if (!top && best >= 2)
                dx[2 * ow + best - 2] = d;
        }
        return;
    }
    if (disjoint(g, p)) {
        int oh = ih / g.s6, in_row = ih % g.s6 < g.s4 && oh < g.s2;
        for (int iw = 0; iw < g.s1; iw++) {
            int ow = iw / g.s7;
            dx[iw] = in_row && iw % g.s7 < g.s5 && ow < g.s3 && inner_argmax(plane, g, oh, ow) == ih * g.s1 + iw
                         ? 0.0f + dy[oh * g.s3 + ow]
                         : 0.0f;
        }
        return;
    }
    int o0, o1;
    windows_of(ih, g.s4, g.s6, p.s0, g.s2, &o0, &o1);
    for (int iw = 0; iw < g.s1; iw++) {
        int q0, q1, at = ih * g.s1 + iw;
        windows_of(iw, g.s5, g.s7, p.s1, g.s3, &q0, &q1);
        float s = 0.0f;
        for (int oh = o0; oh < o1; oh++)
            for (int ow = q0; ow < q1; ow++)
                if (window_argmax(plane, g, p, oh, ow) == at)
                    s += dy[oh * g.s3 + ow];
        dx[iw] = s;
    }
}

/* 8 disjoint 2x2 windows side by side: a and b are their two input rows (16
 * values each), d their 8 output gradients; each window's first maximum (in
 * argmax_2x2's order) gets its d, the other three inputs 0, stored to the
 * rows d0 and d1. */
static void pool2_grad8(float16 a, float16 b, float8 d, __global float *d0, __global float *d1) {
    const float8 z = (float8)(0.0f);
    int8 best = (int8)(0), m = a.odd > a.even;
    float8 v = select(a.even, a.odd, m);
    best = select(best, (int8)(1), m);
    m = b.even > v;
    v = select(v, b.even, m);
    best = select(best, (int8)(2), m);
    best = select(best, (int8)(3), b.odd > v);
    const uint16 mix = (uint16)(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    vstore16(shuffle2(select(z, d, best == 0), select(z, d, best == 1), mix), 0, d0);
    vstore16(shuffle2(select(z, d, best == 2), select(z, d, best == 3), mix), 0, d1);
}

/* nrt_maxpool_grad for disjoint 2x2 windows at stride 2 without padding,
 * one plane per work-item (global (planes)): rows of windows in order, each
 * input given its final value (0 but at its window's first maximum) by the
 * last write to it. */
__kernel void nrt_maxpool2_grad(__global float *A, long xoff, long dyoff, long dxoff, int planes, int8 g, int2 p)
{
    const int pl = get_global_id(0);
    if (pl >= planes)
        return;
    const int h = g.s0, w = g.s1, ho = g.s2, wo = g.s3;
    __global const float *plane = A + xoff + (long)pl * h * w;
    __global const float *dy = A + dyoff + (long)pl * ho * wo;
    __global float *dx = A + dxoff + (long)pl * h * w;
    /* Rows of fewer than 8 windows whose 16 words from each row of the pair
     * stay inside the plane: the 8-window vectors over the row pair, dy's
     * lanes past wo zero; the words stored past the pair's 2*wo columns
     * land in the plane's later rows (or its tail columns), which this
     * work-item writes afterwards. */
    const int short8 = wo < 8 && (2 * ho - 1) * w + 16 <= h * w;
    for (int oh = 0; oh < ho; oh++) {
        __global const float *r0 = plane + 2 * oh * w, *r1 = r0 + w;
        __global float *d0 = dx + 2 * oh * w, *d1 = d0 + w;
        int ow = 0;
        if (short8) {
            ow = wo;
            const float16 a = vload16(0, r0), b = vload16(0, r1);
            float t[8];
            for (int u = 0; u < 8; u++)
                t[u] = u < wo ? 0.0f + dy[oh * wo + u] : 0.0f;
            const float8 d = vload8(0, t);
            pool2_grad8(a, b, d, d0, d1);
        }
        /* 8 windows as vectors, argmax_2x2's comparisons; the last 8 of the
         * row last (written twice where they overlap, the same values: dx
         * is neither x nor dy) */
        for (int o0 = 0; wo >= 8 && o0 < wo; o0 += 8) {
            const int o = min(o0, wo - 8);
            ow = wo;
            const float16 a = vload16(0, r0 + 2 * o), b = vload16(0, r1 + 2 * o);
            const float8 d = 0.0f + vload8(0, dy + oh * wo + o);
            pool2_grad8(a, b, d, d0 + 2 * o, d1 + 2 * o);
        }
        for (; ow < wo; ow++) {
            float2 a = vload2(ow, r0), b = vload2(ow, r1);
            const int best = argmax_2x2(a, b);
            const float d = 0.0f + dy[oh * wo + ow];
            d0[2 * ow] = best == 0 ? d : 0.0f;
            d0[2 * ow + 1] = best == 1 ? d : 0.0f;
            d1[2 * ow] = best == 2 ? d : 0.0f;
            d1[2 * ow + 1] = best == 3 ? d : 0.0f;
        }
        for (int iw = 2 * wo; iw < w; iw++)
            d0[iw] = d1[iw] = 0.0f;
    }
    for (int ih = 2 * ho; ih < h; ih++)
        for (int iw = 0; iw < w; iw++)
            dx[ih * w + iw] = 0.0f;
}

/* y = the mean over the whole window, padding counted. */
__kernel void nrt_avgpool(__global float *A, long xoff, long yoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0);
    if (e >= planes * g.s2)
        return;
    const int pl = e / g.s2, oh = e % g.s2;
    __global const float *plane = A + xoff + (long)pl * g.s0 * g.s1;
    __global float *y = A + yoff + (long)e * g.s3;
    const float inv = 1.0f / (float)(g.s4 * g.s5);
    for (int ow = 0; ow < g.s3; ow++) {
        float s = 0.0f;
        for (int i = 0; i < g.s4; i++) {
            int ih = oh * g.s6 - p.s0 + i;
            if (ih < 0 || ih >= g.s0)
                continue;
            for (int j = 0; j < g.s5; j++) {
                int iw = ow * g.s7 - p.s1 + j;
                if (iw >= 0 && iw < g.s1)
                    s += plane[ih * g.s1 + iw];
            }
        }
        y[ow] = s * inv;
    }
}

/* dx = the sum of dy/window over the windows holding it. */
__kernel void nrt_avgpool_grad(__global float *A, long dyoff, long dxoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0);
    if (e >= planes * g.s0)
        return;
    const int pl = e / g.s0, ih = e % g.s0;
    __global const float *dy = A + dyoff + (long)pl * g.s2 * g.s3;
    __global float *dx = A + dxoff + (long)e * g.s1;
    const float inv = 1.0f / (float)(g.s4 * g.s5);
    int o0, o1;
    windows_of(ih, g.s4, g.s6, p.s0, g.s2, &o0, &o1);
    for (int iw = 0; iw < g.s1; iw++) {
        int q0, q1;
        windows_of(iw, g.s5, g.s7, p.s1, g.s3, &q0, &q1);
        float s = 0.0f;
        for (int oh = o0; oh < o1; oh++)
            for (int ow = q0; ow < q1; ow++)
                s += dy[oh * g.s3 + ow] * inv;
        dx[iw] = s;
    }
}

/* -------------------------------------------------------------- upsample -- */

/* y[pl, i, j] = x[pl, i/s0, j/s1] on planes [h, w] -> [h*s0, w*s1]. Global
 * (planes*h*s0): one output row per work-item. */
__kernel void nrt_upsample(__global float *A, long xoff, long yoff, int planes, int h, int w, int s0, int s1)
{
    const int e = get_global_id(0), H = h * s0, W = w * s1;
    if (e >= planes * H)
        return;
    const int pl = e / H, i = e % H;
    __global const float *x = A + xoff + ((long)pl * h + i / s0) * w;
    __global float *y = A + yoff + (long)e * W;
    for (int j = 0; j < W; j++)
        y[j] = x[j / s1];
}

/* dx[pl, i, j] = the sum of dy over its s0 x s1 block, row by row. Global
 * (planes*h): one input row per work-item. */
__kernel void nrt_upsample_grad(__global float *A, long dyoff, long dxoff, int planes, int h, int w, int s0, int s1)
{
    const int e = get_global_id(0), W = w * s1;
    if (e >= planes * h)
        return;
    const int pl = e / h, i = e % h;
    __global const float *dy = A + dyoff + ((long)pl * h * s0 + (long)i * s0) * W;
    __global float *dx = A + dxoff + (long)e * w;
    for (int j = 0; j < w; j++) {
        float s = 0.0f;
        for (int a = 0; a < s0; a++)
            for (int b = 0; b < s1; b++)
                s += dy[a * W + j * s1 + b];
        dx[j] = s;
    }
}

/* ------------------------------------------------------- recurrent layers -- */
/* One step of runtime/rnn.c's fused gate loops, one work-item per (sequence,
 * hidden unit); the GEMMs around them are nrt_sgemm launches from cl_lib.c. The
 * sizes: d = (n, t, h, cell, reverse, s, step t, row), e = (st, grow, hoff, soff). */

inline float rnn_sig(float v) { return 1.0f / (1.0f + exp(-v)); }

inline int rnn_padded(__global float *A, long len, int b, int8 d)
{
    int l = ((__global int *)A)[len + b];
    l = l < 0 ? 0 : l > d.s1 ? d.s1 : l;
    int pos = d.s4 ? d.s1 - 1 - d.s5 : d.s5;
    return pos >= l;
}

__kernel void nrt_rnn_fwd(__global float *A, long ws, long prev, int ldp, long bih, long bhh, long len, int8 d,
                          int st)
{
    int i = get_global_id(0), H = d.s2;
    if (i >= d.s0 * H)
        return;
    int b = i / H, k = i % H, cell = d.s3;
    __global float *row = A + ws + ((long)b * d.s1 + d.s6) * d.s7;
    __global const float *pv = A + prev + (long)b * ldp, *bi = A + bih, *bh = A + bhh;
    if (rnn_padded(A, len, b, d)) {
        for (int c = 0; c < d.s7 / H; c++)
            row[c * H + k] = c * H < st ? pv[c * H + k] : 0.0f;
        return;
    }
    if (cell == 0) {
        __global float *z = row + 2 * H;
        float ig = rnn_sig(z[k] + bi[k] + bh[k]);
        float fg = rnn_sig(z[H + k] + bi[H + k] + bh[H + k]);
        float gg = tanh(z[2 * H + k] + bi[2 * H + k] + bh[2 * H + k]);
        float og = rnn_sig(z[3 * H + k] + bi[3 * H + k] + bh[3 * H + k]);
        float c = fg * pv[H + k] + ig * gg;
        row[k] = og * tanh(c), row[H + k] = c;
        z[k] = ig, z[H + k] = fg, z[2 * H + k] = gg, z[3 * H + k] = og;
    } else if (cell == 1) {
        __global float *z = row + H, *gh = row + 4 * H;
        gh[k] += bh[k], gh[H + k] += bh[H + k], gh[2 * H + k] += bh[2 * H + k];
        float rg = rnn_sig(z[k] + bi[k] + gh[k]);
        float zg = rnn_sig(z[H + k] + bi[H + k] + gh[H + k]);
        float nn = tanh(z[2 * H + k] + bi[2 * H + k] + rg * gh[2 * H + k]);
        row[k] = (1 - zg) * nn + zg * pv[k];
        z[k] = rg, z[H + k] = zg, z[2 * H + k] = nn;
    } else {
        float v = row[k] + bi[k] + bh[k];
        row[k] = cell == 3 ? (v > 0 ? v : 0.0f) : cell == 4 ? rnn_sig(v) : tanh(v);
    }
}

/* Element c of this step's row of ws's gradient, sequence b, from dws
 * [n, dd.s0, dd.s1]: every step's first dd.s1 columns, or (dd.s0 = 1 < t) the
 * final step's only; 0 elsewhere. */
float rnn_dw(__global const float *A, long dws, int8 d, int2 dd, int b, int c)
{
    if (c >= dd.s1 || (dd.s0 != d.s1 && d.s5 != d.s1 - 1))
        return 0.0f;
    return A[dws + ((long)b * dd.s0 + (dd.s0 == d.s1 ? d.s6 : 0)) * dd.s1 + c];
}

#define DW(c) rnn_dw(A, dws, d, dd, b, (c))

__kernel void nrt_rnn_bwd(__global float *A, long ws, long dws, long prev, int ldp, long carry, long len, long dg,
                          int8 d, int4 e, int2 dd)
{
    int i = get_global_id(0), H = d.s2;
    if (i >= d.s0 * H)
        return;
    int b = i / H, k = i % H, cell = d.s3;
    long at = (long)b * d.s1 + d.s6;
    __global const float *w = A + ws + at * d.s7, *pv = A + prev + (long)b * ldp;
    __global float *g = A + dg + at * e.s1, *gh = g + e.s2, *sp = g + e.s3;
    float ch = carry >= 0 ? A[carry + (long)b * d.s1 * e.s1 + k] : 0.0f;
    float cc = carry >= 0 && cell == 0 ? A[carry + (long)b * d.s1 * e.s1 + H + k] : 0.0f;
    float dh = DW(k) + ch;
    if (rnn_padded(A, len, b, d)) {
        for (int c = 0; c < e.s3 / H; c++)
            g[c * H + k] = 0.0f;
        sp[k] = dh;
        if (cell == 0)
            sp[H + k] = DW(H + k) + cc;
        return;
    }
    if (cell == 0) {
        float dc = DW(H + k) + cc;
        float c = w[H + k], ig = w[2 * H + k], fg = w[3 * H + k], gg = w[4 * H + k], og = w[5 * H + k];
        float tc = tanh(c);
        float dout = dh * tc + DW(5 * H + k);
        dc += dh * og * (1 - tc * tc);
        g[k] = (dc * gg + DW(2 * H + k)) * ig * (1 - ig);
        g[H + k] = (dc * pv[H + k] + DW(3 * H + k)) * fg * (1 - fg);
        g[2 * H + k] = (dc * ig + DW(4 * H + k)) * (1 - gg * gg);
        g[3 * H + k] = dout * og * (1 - og);
        sp[k] = 0.0f, sp[H + k] = dc * fg;
    } else if (cell == 1) {
        float rg = w[H + k], z = w[2 * H + k], nn = w[3 * H + k], ghn = w[6 * H + k];
        float dn = (dh * (1 - z) + DW(3 * H + k)) * (1 - nn * nn);
        float dr = (dn * ghn + DW(H + k)) * rg * (1 - rg);
        float dz = (dh * (pv[k] - nn) + DW(2 * H + k)) * z * (1 - z);
        g[k] = dr, g[H + k] = dz, g[2 * H + k] = dn;
        gh[k] = dr + DW(4 * H + k), gh[H + k] = dz + DW(5 * H + k), gh[2 * H + k] = dn * rg + DW(6 * H + k);
        sp[k] = dh * z;
    } else {
        float y = w[k];
        float dy = cell == 3 ? (y > 0 ? 1.0f : 0.0f) : cell == 4 ? y * (1 - y) : 1 - y * y;
        g[k] = dh * dy;
        sp[k] = 0.0f;
    }
}

#undef DW

/* out[k] = sum of rows of a [rows, ld] at column k, for k < cols (bias gradients). */
__kernel void nrt_rnn_colsum(__global float *A, long a, int ld, int rows, int cols, long out)
{
    int k = get_global_id(0);
    if (k >= cols)
        return;
    float s = 0.0f;
    for (int i = 0; i < rows; i++)
        s += A[a + (long)i * ld + k];
    A[out + k] = s;
}

/* out[b, k] = a[b * ld + k] for k < w (the initial state's gradient). */
__kernel void nrt_rnn_rows(__global float *A, long a, int ld, int n, int w, long out)
{
    int i = get_global_id(0);
    if (i >= n * w)
        return;
    A[out + i] = A[a + (long)(i / w) * ld + i % w];
}
