/* runtime/internal.h -- declarations shared by the runtime's source files and not
 * part of the public interface (netrt.h). One section per source file. Every .c
 * file of runtime/ includes this header first, so the feature-test macro below
 * comes before any system header. */
#ifndef NETRT_INTERNAL_H
#define NETRT_INTERNAL_H

#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>
#include <stdint.h>

#include "runtime/netrt.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "libnetrt assumes a little-endian host (safetensors and .npy data are read in place)"
#endif

/* -------------------------------------------------------------- program.c -- */

/* Runs entry point ent of ctx on n items (ent->run), with ctx's parameter
 * token (struct nrt_ctx's params_token) visible to nrt_params_token on the
 * calling thread while an inference entry point runs. */
void nrt_entry_run(struct nrt_ctx *ctx, const struct nrt_entry_desc *ent, int64_t n);
/* The parameter token of the inference entry point running on this thread
 * when bytes at p lie inside one of its context's parameter buffers, else 0.
 * Two calls that return the same nonzero token saw the same bytes at p: the
 * parameters of a context change only between runs (train-mode entry points,
 * checkpoint loads, resets, and writers that set host_dirty), and each such
 * change makes the next inference run issue a new token. Inference kernels
 * key what they derive from weights (winograd.c's transforms) on it. */
uint64_t nrt_params_token(const void *p, size_t bytes);
/* The clock (seconds) that times inference runs for their pace (which way
 * they run: split or serial); tests set a clock of their own. */
extern double (*nrt_pace_clock)(void);

/* --------------------------------------------------------------- slices.c -- */

/* Sets up ctx->slices when an entry point has slices smaller than max_n
 * (gathered outputs); nonzero when out of memory. */
int nrt_slices_alloc(struct nrt_ctx *ctx);
void nrt_slices_free(struct nrt_ctx *ctx);
/* Runs entry e for a batch of n in slices and returns 1, or returns 0 when
 * it does not slice (then the caller runs it whole). */
int nrt_slices_run(struct nrt_ctx *ctx, int e, int64_t n);

/* ----------------------------------------------------------------- gemv.c -- */

/* nrt_sgemm for m == 1 (k >= 1): c[0][0..n) = alpha * row . op(B) + beta * c
 * (c not read when beta is 0), split over the pool when large. */
void nrt_sgemv_row(int ta, int tb, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c);

/* nrt_sgemm for rows by weights [k][n] (a dense layer on a batch or a slice
 * of one: 2 <= m <= NRT_SGEMM_ROWS_MAX, neither operand transposed, k >= 256,
 * 16 <= n <= 2048) without packing B; returns 0 (nothing written) otherwise.
 * Up to 256 rows it beat sgemm.c's packed GEMM at every shape measured
 * (1 thread, 2026-12-05: 64x256x784, the MLP's first layer, 222.6 us against
 * 240.5; 64x128x1600, the CNN's dense layer, 228.9 against 247.1; 256x256x784
 * 882.6 against 905.1): packing the weights costs more than their re-reads
 * from L2. */
#define NRT_SGEMM_ROWS_MAX 256
int nrt_sgemm_rows(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                   const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* nrt_sgemm for skinny products: n == 1 (any m and k: dot products of op(A)'s
 * rows, or A's rows summed when A is transposed), or m >= 2 with a depth k <=
 * 8 and op(B)'s rows contiguous (an outer product); returns 0 (nothing
 * written) otherwise. Each element as sgemm.c's packed GEMM computes it, bit
 * for bit; split over the pool when large. */
int nrt_sgemm_skinny(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a,
                     int64_t lda, const float *b, int64_t ldb, float beta, float *c, int64_t ldc);

/* ---------------------------------------------------------------- sgemm.c -- */

/* The depth of sgemm.c's blocks: k <= NRT_SGEMM_KC_WHOLE in one, else blocks
 * of NRT_SGEMM_KC (the last shorter), each summed in order and added to C in
 * order. gemv.c's rows GEMM sums by the same blocks, so both give the same
 * bits. */
#define NRT_SGEMM_KC 256
#define NRT_SGEMM_KC_WHOLE 384

/* The runtime's own single-threaded SGEMM (AVX-512 builds): C = alpha op(A)
 * op(B) + beta C (C not read when beta is 0), as nrt_sgemm's arguments, m, n,
 * k >= 1. Returns 0 without touching C where not built for AVX-512 (or its
 * packing buffer could not be allocated). */
int nrt_sgemm_own(int ta, int tb, int64_t m, int64_t n, int64_t k, float alpha, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float beta, float *c, int64_t ldc);
/* Whether nrt_sgemm_own is there (built for AVX-512). */
int nrt_sgemm_own_built(void);
/* Whether the runtime's own GEMM is wanted (NETC_GEMM unset or "own";
 * kernels.c): it takes the large GEMMs where built. */
int nrt_gemm_own_wanted(void);
/* Allocates the calling thread's packing buffer now (each pool worker when it
 * starts, the thread that creates a context), so that which thread happens to
 * run a step's first GEMM never decides whether a later step allocates. */
void nrt_sgemm_thread_ready(void);

/* --------------------------------------------------------------- dwconv.c -- */

/* Depthwise convolution (c->g > 1 groups of one input channel each): each
 * computes what nrt_conv2d, nrt_conv2d_grad_input or nrt_conv2d_grad_weight
 * (netrt.h) would and returns 1, or returns 0 without writing when c is not
 * depthwise (or NETC_CONV_IM2COL is set, or the scratch is too small). */
int nrt_dwconv2d(const struct nrt_conv *c, const float *x, const float *w, float *y, float *scratch);
int nrt_dwconv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                            float *scratch);
int nrt_dwconv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                             float *scratch);

/* ------------------------------------------------------------- winograd.c -- */

/* b[c*ldb + r] = a[r*lda + c] for r < rows, c < cols, by 16x16 blocks in
 * AVX-512 registers (kernels.c; AVX-512 builds only). */
void nrt_transpose16(const float *a, int64_t lda, int64_t rows, int64_t cols, float *b, int64_t ldb);

/* y = act(conv2d(x, w) + bias) by Winograd F(4x4, 3x3) (16k input channels)
 * or F(2x2, 3x3) (a batch of at least one image per thread) (bias NULL: none;
 * relu: act is relu) and returns 1, or returns 0 without writing when c is not
 * a 3x3 stride-1 conv it takes (AVX-512, 16k output channels, >= 16 input
 * channels, the scratch big enough; NETC_CONV_WINOGRAD=0 or NETC_CONV_IM2COL
 * turns it off, NETC_CONV_WINOGRAD=2 leaves F(2x2, 3x3) only). nrt_conv2d_bias_act
 * calls it when asked (NRT_CONV_WINOGRAD: the C of inference entry points). */
int nrt_wino_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                    float *y, float *scratch);
/* The same with 2x2 max pooling of the results (floor): y [n][co][ho/2][wo/2];
 * F(4x4, 3x3) only (returns 0 where that does not run). */
int nrt_wino_conv2d_pool(const struct nrt_conv *c, const float *x, const float *w, const float *bias,
                         int relu, float *y, float *scratch);
/* Training's input and weight gradients by F(4x4, 3x3) transposed (the
 * weights transformed on every call, no cache): dx = the input gradient of c
 * from dy, B [U . (A dy A^T)] B^T added into the padded input planes per
 * tile; dw = the weight gradient from x and dy, G^T [sum over the tiles of
 * (A dy A^T) . (B^T d B)] G. Each returns 0 without writing where it does not
 * run (as nrt_wino_conv2d, 16k input channels; a scratch of the conv's size
 * with room for a task per thread; dx: at least one image per thread). The
 * training forward is F(2x2, 3x3): nrt_wino_conv2d_train. */
int nrt_wino_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                               float *scratch);
/* Training's forward by F(2x2, 3x3): y = act(conv2d(x, w) + bias) as
 * nrt_wino_conv2d (see winograd.c for why not F(4x4)), each image's results
 * the same whatever the batch and the threads; or 0 without writing (the
 * layer does not suit it, or one task's part does not fit the scratch). */
int nrt_wino_conv2d_train(const struct nrt_conv *c, const float *x, const float *w, const float *bias,
                          int relu, float *y, float *scratch);
int nrt_wino_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                                float *scratch);

/* -------------------------------------------------------------- wino_s2.c -- */

/* 4x4 stride-2 convs with padding 1 and h = 2 ho, w = 2 wo (16k channels in
 * and out) by phases and Winograd F(3, 2) / F(2, 2): y = act(conv2d(x, w) + bias)
 * (bias NULL: none; relu: act is relu) and dx = the input gradient of c from
 * dy (conv_transpose2d's forward). Each returns 1, or 0 without writing where
 * c does not suit them or the scratch does not hold one task
 * (nrt_conv_ws2_floats; NETC_CONV_WINOGRAD=0 or NETC_CONV_IM2COL turns them
 * off). An image's results are the same at any batch size and thread count. */
int nrt_ws2_conv2d(const struct nrt_conv *c, const float *x, const float *w, const float *bias, int relu,
                   float *y, float *scratch);
int nrt_ws2_conv2d_grad_input(const struct nrt_conv *c, const float *dy, const float *w, float *dx,
                              float *scratch);
/* dw = the weight gradient of c for x and dy the same way (the transposed
 * products summed over the batch, NRT_WS2_DW_TASKS partials added in order). */
int nrt_ws2_conv2d_grad_weight(const struct nrt_conv *c, const float *x, const float *dy, float *dw,
                               float *scratch);

/* -------------------------------------------------------------- samples.c -- */

/* `PROGRAM sample ...` (argv after the command name); returns the exit status. */
int nrt_sample_main(const char *prog, int argc, char **argv, const struct nrt_model *m);
/* NRT_OK when the model can draw sample grids (forward reads only noise and has
 * an image output), else an error saying why. */
int nrt_samples_check(const struct nrt_model *m);
/* train --samples DIR: writes DIR/epoch-NNN.png, a grid of min(64, max_n)
 * images from the same seeded noise every epoch. */
int nrt_samples_epoch(struct nrt_ctx *ctx, const char *dir, int64_t epoch, uint64_t seed);

/* ---------------------------------------------------------------- alloc.c -- */

/* Prepends "prefix: " to this thread's message, keeping the status. Used to
 * name the file when a lower layer (nrt_alloc) failed. Returns status. */
int nrt_error_prefix(int status, const char *prefix);

/* A growable byte buffer over nrt_realloc; a zeroed struct is empty. */
struct nrt_buf {
    char *data; /* bytes, NUL-terminated when non-NULL */
    size_t len; /* bytes used, the NUL excluded */
    size_t cap; /* bytes allocated */
};

/* Makes room for `extra` more bytes plus a NUL; NRT_ERR_NOMEM on failure. */
int nrt_buf_reserve(struct nrt_buf *b, size_t extra);
/* Appends n bytes. */
int nrt_buf_append(struct nrt_buf *b, const void *p, size_t n);
/* Appends formatted text. */
int nrt_buf_printf(struct nrt_buf *b, const char *fmt, ...) NRT_PRINTF(2, 3);
/* Frees the data and zeroes the struct. */
void nrt_buf_free(struct nrt_buf *b);

/* ---------------------------------------------------------------- array.c -- */

/* Opens path for reading: never blocks (a FIFO without a writer), refuses
 * directories, FIFOs, devices and sockets. Returns the descriptor and *size
 * (when size is not NULL), or -1 with the error set. */
int nrt_file_open(const char *path, int64_t *size);

/* Reads a whole file into *data (nrt_alloc'd, NUL-terminated, *len bytes
 * without the NUL), decompressing it if it starts with the gzip magic 1f 8b.
 * Errors name the path. */
int nrt_file_read(const char *path, unsigned char **data, size_t *len);

/* Product of dims into *count; NRT_ERR_FORMAT (message without a prefix) if a
 * dim is negative or the product, times elem_size, would exceed INT64_MAX. */
int nrt_dims_count(int rank, const int64_t *dims, size_t elem_size, int64_t *count);

/* Writes "f32[60000,28,28]" into buf (truncated to size); NRT_DIM_N prints as N. */
void nrt_shape_format(char *buf, size_t size, enum nrt_dtype dt, int rank, const int64_t *dims);

/* Converts count elements of src (dtype src_dt, big-endian if big_endian; any
 * integer or float dtype among u8 i8 i16 i32 i64 f32 f64) to out, a fresh array
 * of shape dims and dtype opts->dtype, applying scale/shift or the label checks.
 * name is the file for error messages. src needs no alignment. */
int nrt_array_convert(struct nrt_array *out, const char *name, enum nrt_dtype src_dt, int big_endian,
                      const void *src, int rank, const int64_t *dims, const struct nrt_load_opts *opts);

/* image.c: 1 for a PGM (P5/P2), 2 for a PNG by the first bytes, else 0. */
int nrt_image_kind(const unsigned char *d, size_t len);
/* Parses an image file's bytes (PGM or PNG) into f32 [1, H, W]; name is the file. */
int nrt_image_parse(struct nrt_array *out, const char *name, const unsigned char *d, size_t len,
                    const struct nrt_load_opts *opts);

/* Whether s[0..n) is well-formed UTF-8 (no overlongs, surrogates or > U+10FFFF). */
int nrt_utf8_valid(const char *s, size_t n);

/* ----------------------------------------------------------------- data.c -- */

/* A CSV table parsed to doubles (data.c parses, the dataset code splits it). */
struct nrt_csv_table {
    double *values; /* rows * cols values, row-major, nrt_alloc'd */
    int64_t rows;   /* data rows (header excluded) */
    int64_t cols;   /* fields per row */
};

/* The size of a whole .npy or IDX file as promised by the header at the start
 * of d[0..len); 0 when d does not (yet) hold a complete valid header. */
size_t nrt_data_size_hint(const unsigned char *d, size_t len);

/* Parses a NUL-terminated CSV text; header: -1 detect, 0 none, 1 present. */
int nrt_csv_parse(struct nrt_csv_table *t, const char *name, const char *text, size_t len, int header);

/* ------------------------------------------------------------------- dp.c -- */
/* The driver's side of data parallelism (the identity without nrt_dp_layer). */

/* This rank's part [*first, *first + *count) of a global batch of total items,
 * split as evenly as the ranks allow (the first total % K ranks take one more);
 * sets the layer's weight to *count / total. */
void nrt_dp_share(int64_t total, int64_t *first, int64_t *count);
/* Sums v[0..n) over the ranks, in place. */
void nrt_dp_sum(double *v, int n);
/* Rank 0's parameters, state, step and epoch to every rank (sets host_dirty). */
void nrt_dp_bcast_ctx(struct nrt_ctx *ctx);
/* Seconds the ranks waited for reductions since the last call, their mean (0
 * in one process). A collective: every rank calls it. */
double nrt_dp_comm_seconds(void);
/* `info`: the gradient buckets of a --mpi build (nothing otherwise). */
void nrt_dp_info(const struct nrt_model *m);

/* ------------------------------------------------------------------- cl.c -- */

/* The text of runtime/cl_kernels.cl (embedded by cl_embed.cmake). */
extern const char nrt_cl_kernels_source[];

/* -------------------------------------------------------------- threads.c -- */

/* Whether the calling thread is running a chunk of a parallel_for (where a
 * nested parallel_for runs serially): kernels then call OpenBLAS directly. */
int nrt_threads_inside(void);
/* Until the matching end, the calling thread's parallel_for calls run serially
 * on it and nrt_threads_inside() is 1 (a run too small to gain from the pool);
 * begin returns what end restores. */
int nrt_threads_serial_begin(void);
void nrt_threads_serial_end(int was);

#endif
