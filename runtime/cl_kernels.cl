/* runtime/cl_kernels.cl -- the runtime's own OpenCL C 1.2 kernels, embedded in
 * libnetrt_cl.a at build time (runtime/cl_embed.cmake) and built once per
 * device by cl.c with the tile sizes as -D options: the tiled SGEMM, the
 * im2col/col2im and layout kernels around it for convolution, pooling and
 * upsampling. Every kernel takes the arena `A` first and element offsets into
 * it; index relations are those of runtime/kernels.c, and where that code
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

/* C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C (beta 0: C is not read), all
 * row-major at element offsets of the arena. Launched over
 * (ceil(n/TN)*RX, ceil(m/TM)*RY) with local size (RX, RY). */
/* Tiles of A and B into local memory: as[i][p] = op(A)[row0 + i][p0 + p] and
 * bs[p][j] = op(B)[p0 + p][col0 + j]. full is 2 for a tile inside the
 * matrices, 1 for one inside along m and n but not k, else 0. Inside tiles are
 * read by vector loads along memory (rows of A and B, columns of A^T and B^T
 * scattered into place), also when only k runs out for the layouts whose
 * vectors run along m or n; the others word by word with zeros outside. */
#define VEC_OK ((TK % VW) == 0 && (TM % VW) == 0)
static void tile_a(__local float (*as)[TK], __global const float *a, int lda, int ta, int m, int k, int row0, int p0,
                   int full, int tid)
{
#if VEC_OK
    if (full == 2 && !ta) {
        for (int e = tid; e < TM * TK / VW; e += NT) {
            int i = e / (TK / VW), q = e % (TK / VW);
            vstorev(vloadv(0, a + (long)(row0 + i) * lda + p0 + q * VW), 0, &as[i][q * VW]);
        }
        return;
    }
    if (full && ta) { /* rows of A^T past k read as zeros */
        for (int e = tid; e < TM * TK / VW; e += NT) {
            int p = e / (TM / VW), q = e % (TM / VW);
            float t[VW];
            vstorev(p0 + p < k ? vloadv(0, a + (long)(p0 + p) * lda + row0 + q * VW) : (floatv)(0.0f), 0, t);
            for (int u = 0; u < VW; u++)
                as[q * VW + u][p] = t[u];
        }
        return;
    }
#endif
    for (int e = tid; e < TM * TK; e += NT) {
        int i = ta ? e % TM : e / TK, p = ta ? e / TM : e % TK, r = row0 + i, c = p0 + p;
        as[i][p] = r < m && c < k ? (ta ? a[c * lda + r] : a[r * lda + c]) : 0.0f;
    }
}

static void tile_b(__local float (*bs)[TN], __global const float *b, int ldb, int tb, int k, int n, int p0, int col0,
                   int full, int tid)
{
    if (full && !tb) { /* rows of B past k read as zeros */
        for (int e = tid; e < TK * TN / VW; e += NT) {
            int p = e / (TN / VW), q = e % (TN / VW);
            floatv v = p0 + p < k ? vloadv(0, b + (long)(p0 + p) * ldb + col0 + q * VW) : (floatv)(0.0f);
            vstorev(v, 0, &bs[p][q * VW]);
        }
        return;
    }
#if VEC_OK
    if (full == 2) {
        for (int e = tid; e < TK * TN / VW; e += NT) {
            int j = e / (TK / VW), q = e % (TK / VW);
            float t[VW];
            vstorev(vloadv(0, b + (long)(col0 + j) * ldb + p0 + q * VW), 0, t);
            for (int u = 0; u < VW; u++)
                bs[q * VW + u][j] = t[u];
        }
        return;
    }
#endif
    for (int e = tid; e < TK * TN; e += NT) {
        int j = tb ? e / TK : e % TN, p = tb ? e % TK : e / TN, r = p0 + p, c = col0 + j;
        bs[p][j] = r < k && c < n ? (tb ? b[c * ldb + r] : b[r * ldb + c]) : 0.0f;
    }
}

/* C[m,n] = alpha op(A)[m,k] op(B)[k,n] + beta C (beta 0: C is not read), all
 * row-major at element offsets of the arena. Launched over
 * (ceil(n/TN)*RX, ceil(m/TM)*RY) with local size (RX, RY). */
__kernel __attribute__((reqd_work_group_size(RX, RY, 1))) void
nrt_sgemm(__global float *A, long aoff, int lda, long boff, int ldb, long coff, int ldc, int m, int n, int k,
          int ta, int tb, float alpha, float beta)
{
    __local float as[TM][TK];
    __local float bs[TK][TN];
    const int lx = get_local_id(0), ly = get_local_id(1), tid = ly * RX + lx;
    const int row0 = get_group_id(1) * TM, col0 = get_group_id(0) * TN;
    const int inside = row0 + TM <= m && col0 + TN <= n;
    __global const float *a = A + aoff, *b = A + boff;
    floatv acc[WM];
    for (int i = 0; i < WM; i++)
        acc[i] = (floatv)(0.0f);
    for (int p0 = 0; p0 < k; p0 += TK) {
        int full = inside ? (p0 + TK <= k ? 2 : 1) : 0;
        tile_a(as, a, lda, ta, m, k, row0, p0, full, tid);
        tile_b(bs, b, ldb, tb, k, n, p0, col0, full, tid);
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int p = 0; p < TK; p++) {
            floatv bv = vloadv(0, &bs[p][lx * VW]);
            for (int i = 0; i < WM; i++)
                acc[i] = mad((floatv)(as[ly * WM + i][p]), bv, acc[i]);
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    __global float *c = A + coff;
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
            vstorev(v, 0, cr);
            continue;
        }
        float t[VW];
        vstorev(v, 0, t);
        for (int j = 0; j < VW && col + j < n; j++)
            cr[j] = beta == 0.0f ? t[j] : t[j] + beta * cr[j];
    }
}

/* ----------------------------------------------------------- convolution -- */
/* The geometry travels as an int8 and an int4:
 *   g0 = (ci, h, w, kh, kw, ho, wo, cig)   g1 = (s0, s1, p0, p1) and d = (d0, d1).
 * A chunk of nb images and one group at a time, as kernels.c does: col is
 * [cig*kh*kw, nb*ho*wo], t one group's output [cog, nb*ho*wo]. */

/* col[(ch*kh + i)*kw + j][b*hw + oh*wo + ow] = x[b, ch, ih, iw] (0 outside);
 * x at the chunk's first image and the group's first channel, images ci*h*w
 * apart. Global (nb*hw, cig*kh*kw). */
__kernel void nrt_im2col(__global float *A, long xoff, long coloff, int nb, int8 g0, int4 g1, int2 d)
{
    const int q = get_global_id(0), r = get_global_id(1);
    const int hw = g0.s5 * g0.s6, ld = nb * hw;
    if (q >= ld || r >= g0.s7 * g0.s3 * g0.s4)
        return;
    const int bimg = q / hw, pix = q % hw, oh = pix / g0.s6, ow = pix % g0.s6;
    const int ch = r / (g0.s3 * g0.s4), i = r / g0.s4 % g0.s3, j = r % g0.s4;
    const int ih = oh * g1.s0 - g1.s2 + i * d.s0, iw = ow * g1.s1 - g1.s3 + j * d.s1;
    float v = 0.0f;
    if (ih >= 0 && ih < g0.s1 && iw >= 0 && iw < g0.s2)
        v = A[xoff + ((long)bimg * g0.s0 + ch) * g0.s1 * g0.s2 + ih * g0.s2 + iw];
    A[coloff + (long)r * ld + q] = v;
}

/* The adjoint of im2col as a gather: dx[b, ch, ih, iw] = the sum of the col
 * entries that im2col took from it, taps (i, j) in ascending order, as
 * kernels.c's col2im adds them into a cleared dx. Global (nb*cig*h*w). */
__kernel void nrt_col2im(__global float *A, long coloff, long dxoff, int nb, int8 g0, int4 g1, int2 d)
{
    const int e = get_global_id(0), hw_in = g0.s1 * g0.s2;
    if (e >= nb * g0.s7 * hw_in)
        return;
    const int bimg = e / (g0.s7 * hw_in), ch = e / hw_in % g0.s7, ih = e % hw_in / g0.s2, iw = e % g0.s2;
    const int hw = g0.s5 * g0.s6, ld = nb * hw;
    float s = 0.0f;
    for (int i = 0; i < g0.s3; i++) {
        int oy = ih + g1.s2 - i * d.s0;
        if (oy < 0 || oy % g1.s0)
            continue;
        int oh = oy / g1.s0;
        if (oh >= g0.s5)
            continue;
        for (int j = 0; j < g0.s4; j++) {
            int ox = iw + g1.s3 - j * d.s1;
            if (ox < 0 || ox % g1.s1)
                continue;
            int ow = ox / g1.s1;
            if (ow < g0.s6)
                s += A[coloff + (long)((ch * g0.s3 + i) * g0.s4 + j) * ld + bimg * hw + oh * g0.s6 + ow];
        }
    }
    A[dxoff + ((long)bimg * g0.s0 + ch) * hw_in + ih * g0.s2 + iw] = s;
}

/* Between y-like [nb, co, hw] at yoff (the chunk's first image) and one
 * group's channel-major t [cog, nb*hw]: to_cm copies y into t, from_cm t into
 * y. Global (cog*nb*hw). */
__kernel void nrt_to_cm(__global float *A, long yoff, long toff, int nb, int co, int cog, int g, int hw)
{
    const int e = get_global_id(0);
    if (e >= cog * nb * hw)
        return;
    const int o = e / (nb * hw), bimg = e / hw % nb, k = e % hw;
    A[toff + e] = A[yoff + ((long)bimg * co + g * cog + o) * hw + k];
}

__kernel void nrt_from_cm(__global float *A, long toff, long yoff, int nb, int co, int cog, int g, int hw)
{
    const int e = get_global_id(0);
    if (e >= cog * nb * hw)
        return;
    const int o = e / (nb * hw), bimg = e / hw % nb, k = e % hw;
    A[yoff + ((long)bimg * co + g * cog + o) * hw + k] = A[toff + e];
}

/* --------------------------------------------------------------- pooling -- */
/* The geometry: g = (h, w, ho, wo, k0, k1, s0, s1), p = (p0, p1); planes are
 * the launch's extent. */

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

/* The output windows that may hold input (ih, iw): rows [*o0, *o1), columns
 * [*q0, *q1), from the inverse of ih = oh*s - p + i, 0 <= i < k. */
static void windows_of(int8 g, int2 p, int ih, int iw, int *o0, int *o1, int *q0, int *q1)
{
    int a = ih + p.s0 - g.s4 + 1, b = iw + p.s1 - g.s5 + 1;
    *o0 = a <= 0 ? 0 : (a + g.s6 - 1) / g.s6;
    *o1 = min((ih + p.s0) / g.s6 + 1, g.s2);
    *q0 = b <= 0 ? 0 : (b + g.s7 - 1) / g.s7;
    *q1 = min((iw + p.s1) / g.s7 + 1, g.s3);
    if (ih + p.s0 < 0)
        *o1 = 0;
    if (iw + p.s1 < 0)
        *q1 = 0;
}

/* y = max over each window (0 for a window of padding only). Global (planes*ho*wo). */
__kernel void nrt_maxpool(__global float *A, long xoff, long yoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0), per = g.s2 * g.s3;
    if (e >= planes * per)
        return;
    const int pl = e / per, oh = e % per / g.s3, ow = e % g.s3;
    __global const float *plane = A + xoff + (long)pl * g.s0 * g.s1;
    int at = window_argmax(plane, g, p, oh, ow);
    A[yoff + e] = at < 0 ? 0.0f : plane[at];
}

/* dx[at] = the sum of dy over the windows whose first maximum is at, in
 * window order. Global (planes*h*w). */
__kernel void nrt_maxpool_grad(__global float *A, long xoff, long dyoff, long dxoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0), per = g.s0 * g.s1;
    if (e >= planes * per)
        return;
    const int pl = e / per, at = e % per, ih = at / g.s1, iw = at % g.s1;
    __global const float *plane = A + xoff + (long)pl * per;
    __global const float *dy = A + dyoff + (long)pl * g.s2 * g.s3;
    int o0, o1, q0, q1;
    windows_of(g, p, ih, iw, &o0, &o1, &q0, &q1);
    float s = 0.0f;
    for (int oh = o0; oh < o1; oh++)
        for (int ow = q0; ow < q1; ow++)
            if (window_argmax(plane, g, p, oh, ow) == at)
                s += dy[oh * g.s3 + ow];
    A[dxoff + e] = s;
}

/* y = the mean over the whole window, padding counted. Global (planes*ho*wo). */
__kernel void nrt_avgpool(__global float *A, long xoff, long yoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0), per = g.s2 * g.s3;
    if (e >= planes * per)
        return;
    const int pl = e / per, oh = e % per / g.s3, ow = e % g.s3;
    __global const float *plane = A + xoff + (long)pl * g.s0 * g.s1;
    const float inv = 1.0f / (float)(g.s4 * g.s5);
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
    A[yoff + e] = s * inv;
}

/* dx = the sum of dy/window over the windows holding it. Global (planes*h*w). */
__kernel void nrt_avgpool_grad(__global float *A, long dyoff, long dxoff, int planes, int8 g, int2 p)
{
    const int e = get_global_id(0), per = g.s0 * g.s1;
    if (e >= planes * per)
        return;
    const int pl = e / per, ih = e % per / g.s1, iw = e % g.s1;
    __global const float *dy = A + dyoff + (long)pl * g.s2 * g.s3;
    const float inv = 1.0f / (float)(g.s4 * g.s5);
    int o0, o1, q0, q1;
    windows_of(g, p, ih, iw, &o0, &o1, &q0, &q1);
    float s = 0.0f;
    for (int oh = o0; oh < o1; oh++)
        for (int ow = q0; ow < q1; ow++)
            s += dy[oh * g.s3 + ow] * inv;
    A[dxoff + e] = s;
}

/* -------------------------------------------------------------- upsample -- */

/* y[pl, i, j] = x[pl, i/s0, j/s1] on planes [h, w] -> [h*s0, w*s1]. Global (planes*h*s0*w*s1). */
__kernel void nrt_upsample(__global float *A, long xoff, long yoff, int planes, int h, int w, int s0, int s1)
{
    const int e = get_global_id(0), H = h * s0, W = w * s1;
    if (e >= planes * H * W)
        return;
    const int pl = e / (H * W), i = e % (H * W) / W, j = e % W;
    A[yoff + e] = A[xoff + ((long)pl * h + i / s0) * w + j / s1];
}

/* dx[pl, i, j] = the sum of dy over its s0 x s1 block, row by row. Global (planes*h*w). */
__kernel void nrt_upsample_grad(__global float *A, long dyoff, long dxoff, int planes, int h, int w, int s0, int s1)
{
    const int e = get_global_id(0), H = h * s0, W = w * s1;
    if (e >= planes * h * w)
        return;
    const int pl = e / (h * w), i = e % (h * w) / w, j = e % w;
    __global const float *dy = A + dyoff + (long)pl * H * W;
    float s = 0.0f;
    for (int a = 0; a < s0; a++)
        for (int b = 0; b < s1; b++)
            s += dy[(i * s0 + a) * W + j * s1 + b];
    A[dxoff + e] = s;
}
