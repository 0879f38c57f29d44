/* runtime/rnn.c -- the recurrent layers over whole sequences (LSTM, GRU, plain
 * RNN), forward and backward through time. Each pool thread takes its own
 * sequences: the input projection of all their steps as one GEMM into the
 * value's gate columns, then every step: one recurrent GEMM (register tiles
 * below, on weights packed once per call) and one fused loop over the gates.
 * Layouts: docs/ir.md, "Recurrent ops"; the reference is the interpreter's
 * codegen/interp_rnn.c. Sections: sizes, recurrent GEMM, forward, BPTT, gradients. */
#include "runtime/internal.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ sizes -- */

enum { LSTM, GRU, TANH, RELU, SIGMOID };

/* The sizes of one call, in floats. */
struct dims {
    int64_t n, t, f, h, gh; /* batch, steps, features, hidden, gates * hidden */
    int64_t row, st, grow;  /* a row of ws, of s0, of dg */
    int64_t goff;           /* ws: the gate columns the input projection lands in */
    int64_t hoff, soff;     /* dg: the recurrent gate block, the state block */
    int64_t dt, dc;         /* dws: steps (t, or 1: the final step only), columns */
};

static struct dims dims_of(const struct nrt_rnn *r) {
    struct dims d;
    int gates = r->cell == LSTM ? 4 : r->cell == GRU ? 3 : 1;
    d.n = r->n, d.t = r->t, d.f = r->f, d.h = r->h, d.gh = gates * r->h;
    d.row = (r->cell == LSTM ? 6 : r->cell == GRU ? 7 : 1) * r->h;
    d.st = (r->cell == LSTM ? 2 : 1) * r->h;
    d.grow = (r->cell == LSTM ? 6 : r->cell == GRU ? 7 : 2) * r->h;
    d.goff = r->cell == LSTM ? 2 * r->h : r->cell == GRU ? r->h : 0;
    d.hoff = r->cell == GRU ? d.gh : 0;
    d.soff = r->cell == GRU ? 2 * d.gh : d.gh;
    d.dt = r->dt > 0 ? r->dt : r->t;
    d.dc = r->dc > 0 ? r->dc : d.row;
    return d;
}

/* The step processed s-th, and the length of sequence b clamped to [0, t]. */
static int64_t step_at(const struct nrt_rnn *r, int64_t s) { return r->reverse ? r->t - 1 - s : s; }

static int64_t len_of(const int32_t *len, int64_t b, int64_t t) {
    int64_t l = len[b];
    return l < 0 ? 0 : l > t ? t : l;
}

/* The activations, branch-free so that the gate loops vectorize (rnn.c is
 * compiled with -O3 -march=native): netrt.h's nrt_expf and nrt_tanhf (within 2
 * ulp); glibc's scalar tanhf took a third of a GRU's training step. */
static inline float sigf(float v) { return 1.0f / (1.0f + nrt_expf(-v)); }

/* In place x = sigmoid(x), and y = tanh(x) (y may be x): loops that vectorize. */
static void vsig(float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++) x[k] = sigf(x[k]);
}

static void vtanh(float *y, const float *x, int64_t n) {
    for (int64_t k = 0; k < n; k++) y[k] = nrt_tanhf(x[k]);
}

/* Sequences per pool chunk: each chunk runs its sequences through every
 * step, so a chunk only needs enough work to pay one hand-over. */
static int64_t grain_of(const struct dims *d) {
    double flops = 2.0 * (double)d->t * (double)d->gh * (double)(d->h + d->f); /* per sequence */
    return 1 + (int64_t)(2e5 / (flops > 1 ? flops : 1));
}

/* ---------------------------------------------------------- recurrent GEMM -- */

/* C[i, j] (+)= sum over k of A[i, k] B(k, j), for the rows of one thread's
 * sequences, with B packed once per call into panels of PANEL columns
 * (k-major, zero past the last column; nrt_rnn_scratch_floats sizes them). A
 * tile keeps RM rows by NV vectors of accumulators in registers, broadcasts
 * one A value per row and loads NV vectors of B per k, so the sum over k runs
 * in the same order whatever the tile: each row's result is the same however
 * the rows are split over threads. */
#define PANEL 16
#define RM 4
#if defined(__AVX512F__)
#define VL 16 /* floats per vector */
#define NV 4  /* vectors per tile row: 16 accumulators of the 32 registers */
#else
#define VL 8
#define NV 2 /* AVX2 or less: 8 accumulators of 16 registers */
#endif

typedef float vf __attribute__((vector_size(VL * sizeof(float))));

/* Packs B(k, j) = w[j * ldj + k * ldk], j < n, k < kd, into p (64-byte aligned). */
static void pack_b(const float *w, int64_t n, int64_t kd, int64_t ldj, int64_t ldk, float *p) {
    for (int64_t j0 = 0; j0 < n; j0 += PANEL)
        for (int64_t k = 0; k < kd; k++, p += PANEL)
            for (int64_t l = 0; l < PANEL; l++) p[l] = j0 + l < n ? w[(j0 + l) * ldj + k * ldk] : 0.0f;
}

/* One tile: rm rows of A (lda apart) by nv vectors of columns from the packed
 * group p; ncols of them are C's (ldc apart). add: C += A B, else C = A B. */
static inline __attribute__((always_inline)) void gemm_tile(const int rm, const int nv, int64_t kd,
                                                            const float *a, int64_t lda, const float *p,
                                                            float *c, int64_t ldc, int64_t ncols, int add) {
    vf acc[RM][4], b[4];
#pragma GCC unroll 4
    for (int i = 0; i < rm; i++)
#pragma GCC unroll 4
        for (int q = 0; q < nv; q++) acc[i][q] = (vf){0};
    for (int64_t k = 0; k < kd; k++) {
#pragma GCC unroll 4
        for (int q = 0; q < nv; q++)
            b[q] = *(const vf *)(p + (q * VL / PANEL) * PANEL * kd + k * PANEL + q * VL % PANEL);
#pragma GCC unroll 4
        for (int i = 0; i < rm; i++) {
            float x = a[i * lda + k];
#pragma GCC unroll 4
            for (int q = 0; q < nv; q++) acc[i][q] += x * b[q];
        }
    }
#pragma GCC unroll 4
    for (int i = 0; i < rm; i++)
#pragma GCC unroll 4
        for (int q = 0; q < nv; q++) {
            float *dst = c + i * ldc + q * VL;
            if ((q + 1) * VL <= ncols) { /* C's rows need not be aligned: memcpy */
                vf v = acc[i][q], old;
                if (add) {
                    memcpy(&old, dst, sizeof old);
                    v += old;
                }
                memcpy(dst, &v, sizeof v);
            } else if (q * VL < ncols) {
                float t[VL];
                memcpy(t, &acc[i][q], sizeof t);
                for (int64_t l = 0; l < ncols - q * VL; l++) dst[l] = add ? dst[l] + t[l] : t[l];
            }
        }
}

#define TILE(R, V)                                                                       \
    case (R)*8 + (V):                                                                    \
        gemm_tile(R, V, kd, a + i0 * lda, lda, pj, c + i0 * ldc + j0, ldc, n - j0, add); \
        break;

/* C [m, n] (+)= A [m, kd] B [kd, n], B packed by pack_b. */
static void rec_gemm(int64_t m, int64_t n, int64_t kd, const float *a, int64_t lda, const float *p, float *c,
                     int64_t ldc, int add) {
    for (int64_t j0 = 0; j0 < n; j0 += NV * VL) {
        int nv = (int)((n - j0 + VL - 1) / VL < NV ? (n - j0 + VL - 1) / VL : NV);
        const float *pj = p + j0 / PANEL * PANEL * kd;
        for (int64_t i0 = 0; i0 < m; i0 += RM) {
            int rm = (int)(m - i0 < RM ? m - i0 : RM);
            /* clang-format off */
            switch (rm * 8 + nv) {
                TILE(1, 1) TILE(1, 2) TILE(2, 1) TILE(2, 2) TILE(3, 1) TILE(3, 2) TILE(4, 1) TILE(4, 2)
#if NV > 2
                TILE(1, 3) TILE(1, 4) TILE(2, 3) TILE(2, 4) TILE(3, 3) TILE(3, 4) TILE(4, 3) TILE(4, 4)
#endif
            default: /* rm and nv are in range */
                break;
            }
            /* clang-format on */
        }
    }
}
#undef TILE

/* ---------------------------------------------------------------- forward -- */

/* One step of every sequence in [lo, hi): the gate columns hold the input
 * projection plus the recurrent GEMM (GRU: the recurrent part in its own
 * columns); the loop adds the biases and writes states and activations. */
struct fwd_step {
    const struct nrt_rnn *r;
    const struct dims *d;
    const float *bih, *bhh; /* biases */
    const float *prev;      /* the previous state of sequence 0 */
    int64_t ldp;            /* its stride between sequences */
    const int32_t *len;     /* lengths */
    float *ws;              /* the value */
    int64_t t, s;           /* the step, and its position in processing order */
};

static void fwd_rows(void *arg, int64_t lo, int64_t hi) {
    const struct fwd_step *j = arg;
    const struct dims *d = j->d;
    const int64_t H = d->h;
    const float *restrict bih = j->bih, *restrict bhh = j->bhh;
    const int cell = j->r->cell;
    for (int64_t b = lo; b < hi; b++) {
        float *restrict row = j->ws + (b * d->t + j->t) * d->row;
        const float *restrict prev = j->prev + b * j->ldp;
        int64_t pos = j->r->reverse ? d->t - 1 - j->s : j->s;
        if (pos >= len_of(j->len, b, d->t)) { /* padding: the state passes through, gates 0 */
            memmove(row, prev, sizeof *row * (size_t)d->st);
            memset(row + d->st, 0, sizeof *row * (size_t)(d->row - d->st));
            continue;
        }
        switch (cell) {
        case LSTM: { /* pre-activations, the four activations in place, then c and h */
            float *restrict z = row + 2 * H, *restrict hr = row, *restrict cr = row + H;
            const float *restrict cp = prev + H;
            for (int64_t k = 0; k < 4 * H; k++) z[k] += bih[k] + bhh[k];
            vsig(z, 2 * H);
            vtanh(z + 2 * H, z + 2 * H, H);
            vsig(z + 3 * H, H);
            for (int64_t k = 0; k < H; k++) cr[k] = z[H + k] * cp[k] + z[k] * z[2 * H + k];
            vtanh(hr, cr, H);
            for (int64_t k = 0; k < H; k++) hr[k] *= z[3 * H + k];
            break;
        }
        case GRU: { /* r, z, then n = tanh(xn + r (W_hn h + b_hn)), then h */
            float *restrict z = row + H, *restrict gh = row + 4 * H, *restrict hr = row;
            for (int64_t k = 0; k < 3 * H; k++) gh[k] += bhh[k];
            for (int64_t k = 0; k < 2 * H; k++) z[k] += bih[k] + gh[k];
            vsig(z, 2 * H);
            for (int64_t k = 0; k < H; k++) z[2 * H + k] += bih[2 * H + k] + z[k] * gh[2 * H + k];
            vtanh(z + 2 * H, z + 2 * H, H);
            for (int64_t k = 0; k < H; k++) hr[k] = (1 - z[H + k]) * z[2 * H + k] + z[H + k] * prev[k];
            break;
        }
        default:
            for (int64_t k = 0; k < H; k++) row[k] += bih[k] + bhh[k];
            if (cell == RELU)
                for (int64_t k = 0; k < H; k++) row[k] = row[k] > 0 ? row[k] : 0;
            else if (cell == SIGMOID)
                vsig(row, H);
            else
                vtanh(row, row, H);
            break;
        }
    }
}

/* The input projection of every step of the sequences in [lo, hi) (one GEMM
 * into the gate columns), then every step: the recurrent GEMM into the gate
 * columns (GRU: into its own columns) and the gate loop. */
struct fwd_job {
    const struct nrt_rnn *r;
    const struct dims *d;
    const float *bih, *bhh, *s0; /* biases, initial states */
    const int32_t *len;          /* lengths */
    const float *x;              /* the input */
    const float *pk, *pi;        /* w_hh and w_ih packed (pack_b) */
    float *ws;                   /* the value */
};

static void fwd_seqs(void *arg, int64_t lo, int64_t hi) {
    const struct fwd_job *j = arg;
    const struct dims *d = j->d;
    const int gru = j->r->cell == GRU;
    struct fwd_step st = {j->r, d, j->bih, j->bhh, j->s0, d->st, j->len, j->ws, 0, 0};
    rec_gemm((hi - lo) * d->t, d->gh, d->f, j->x + lo * d->t * d->f, d->f, j->pi,
             j->ws + lo * d->t * d->row + d->goff, d->row, 0);
    for (int64_t s = 0; s < d->t; s++) {
        st.s = s, st.t = step_at(j->r, s);
        if (s > 0) {
            st.prev = j->ws + (j->r->reverse ? st.t + 1 : st.t - 1) * d->row;
            st.ldp = d->t * d->row;
        }
        float *dst = j->ws + (lo * d->t + st.t) * d->row + (gru ? 4 * d->h : d->goff);
        rec_gemm(hi - lo, d->gh, d->h, st.prev + lo * st.ldp, st.ldp, j->pk, dst, d->t * d->row, !gru);
        fwd_rows(&st, lo, hi);
    }
}

void nrt_rnn_forward(const struct nrt_rnn *r, const float *x, const float *wih, const float *whh,
                     const float *bih, const float *bhh, const float *s0, const int32_t *len, float *ws,
                     float *scratch) {
    struct dims d = dims_of(r);
    if (d.n <= 0 || d.t <= 0) return;
    float *pi = scratch + (d.gh + PANEL - 1) / PANEL * PANEL * d.h;
    pack_b(whh, d.gh, d.h, d.h, 1, scratch);
    pack_b(wih, d.gh, d.f, d.f, 1, pi);
    struct fwd_job j = {r, &d, bih, bhh, s0, len, x, scratch, pi, ws};
    nrt_parallel_for(d.n, grain_of(&d), fwd_seqs, &j);
}

/* ------------------------------------------------------------------- BPTT -- */

/* One step back for the sequences in [lo, hi): gate gradients into dg's gate
 * blocks, and the direct part of the incoming state's gradient into its state
 * block (the recurrent GEMM adds the rest). */
struct bwd_step {
    const struct nrt_rnn *r;
    const struct dims *d;
    const float *ws, *dws; /* the forward value and its gradient */
    const float *prev;     /* the previous state of sequence 0, and its stride */
    int64_t ldp;
    const float *carry; /* dg's state block of the step after, sequence 0 (stride t*grow), or NULL */
    const int32_t *len; /* lengths */
    float *dg;          /* the result */
    int64_t t, s;       /* the step, and its position in processing order */
};

/* One sequence's step back through an LSTM cell (ws row w, its gradient dw --
 * NULL: zero outside the state columns --, the previous state prev): gate
 * gradients into g, the incoming state's into sp (which holds this step's
 * state gradient on entry). Inlined, so that a NULL dw folds away. */
#define DW(i) (dw ? dw[i] : 0.0f)

static inline __attribute__((always_inline)) void lstm_bwd(int64_t H, const float *restrict w,
                                                           const float *restrict dw,
                                                           const float *restrict prev, float *restrict g,
                                                           float *restrict sp) {
    for (int64_t k = 0; k < H; k++) {
        float dh = sp[k], dc = sp[H + k];
        float c = w[H + k], i = w[2 * H + k], f = w[3 * H + k], gg = w[4 * H + k], o = w[5 * H + k];
        float tc = nrt_tanhf(c);
        float dout = dh * tc + DW(5 * H + k);
        dc += dh * o * (1 - tc * tc);
        g[k] = (dc * gg + DW(2 * H + k)) * i * (1 - i);
        g[H + k] = (dc * prev[H + k] + DW(3 * H + k)) * f * (1 - f);
        g[2 * H + k] = (dc * i + DW(4 * H + k)) * (1 - gg * gg);
        g[3 * H + k] = dout * o * (1 - o);
        sp[k] = 0, sp[H + k] = dc * f;
    }
}

/* The same for a GRU cell; gh: the recurrent-side gate gradients. */
static inline __attribute__((always_inline)) void gru_bwd(int64_t H, const float *restrict w,
                                                          const float *restrict dw,
                                                          const float *restrict prev, float *restrict g,
                                                          float *restrict gh, float *restrict sp) {
    for (int64_t k = 0; k < H; k++) {
        float dh = sp[k];
        float rg = w[H + k], z = w[2 * H + k], nn = w[3 * H + k], ghn = w[6 * H + k];
        float dn = (dh * (1 - z) + DW(3 * H + k)) * (1 - nn * nn);
        float dr = (dn * ghn + DW(H + k)) * rg * (1 - rg);
        float dz = (dh * (prev[k] - nn) + DW(2 * H + k)) * z * (1 - z);
        g[k] = dr, g[H + k] = dz, g[2 * H + k] = dn;
        gh[k] = dr + DW(4 * H + k), gh[H + k] = dz + DW(5 * H + k), gh[2 * H + k] = dn * rg + DW(6 * H + k);
        sp[k] = dh * z;
    }
}
#undef DW

static void bwd_rows(void *arg, int64_t lo, int64_t hi) {
    const struct bwd_step *j = arg;
    const struct dims *d = j->d;
    const int64_t H = d->h;
    const int cell = j->r->cell;
    for (int64_t b = lo; b < hi; b++) {
        int64_t at = b * d->t + j->t;
        const float *restrict w = j->ws + at * d->row;
        const float *restrict prev = j->prev + b * j->ldp;
        float *restrict g = j->dg + at * d->grow, *restrict gh = g + d->hoff, *restrict sp = g + d->soff;
        /* this step's row of dws (NULL: none, the final step's only), its state columns */
        const float *restrict dw = d->dt == d->t      ? j->dws + at * d->dc
                                   : j->s == d->t - 1 ? j->dws + b * d->dc
                                                      : NULL;
        int64_t ns = !dw ? 0 : d->dc < d->st ? d->dc : d->st;
        /* sp first holds the gradient of this step's state: the step after's plus dws */
        if (j->carry) {
            const float *restrict carry = j->carry + b * d->t * d->grow;
            for (int64_t k = 0; k < d->st; k++) sp[k] = carry[k];
        } else {
            memset(sp, 0, sizeof *sp * (size_t)d->st);
        }
        for (int64_t k = 0; k < ns; k++) sp[k] += dw[k];
        if (d->dc != d->row) /* no gate columns */
            dw = NULL;
        int64_t pos = j->r->reverse ? d->t - 1 - j->s : j->s;
        if (pos >= len_of(j->len, b, d->t)) {
            memset(g, 0, sizeof *g * (size_t)d->soff);
            continue;
        }
        switch (cell) {
        case LSTM:
            if (dw)
                lstm_bwd(H, w, dw, prev, g, sp);
            else
                lstm_bwd(H, w, NULL, prev, g, sp);
            break;
        case GRU:
            if (dw)
                gru_bwd(H, w, dw, prev, g, gh, sp);
            else
                gru_bwd(H, w, NULL, prev, g, gh, sp);
            break;
        default:
            for (int64_t k = 0; k < H; k++) {
                float dh = sp[k], y = w[k];
                float dy = cell == RELU ? (y > 0 ? 1.0f : 0.0f) : cell == SIGMOID ? y * (1 - y) : 1 - y * y;
                g[k] = dh * dy;
                sp[k] = 0;
            }
            break;
        }
    }
}

/* Every step back of the sequences in [lo, hi): the gate loop, then the
 * incoming state's gradient through the recurrent weights (0 on padding: its
 * gates are 0). */
struct bwd_job {
    const struct nrt_rnn *r;
    const struct dims *d;
    const float *ws, *dws, *s0; /* the forward value, its gradient, the initial states */
    const int32_t *len;         /* lengths */
    const float *pk;            /* w_hh packed (pack_b), transposed */
    float *dg;                  /* the result */
};

static void bwd_seqs(void *arg, int64_t lo, int64_t hi) {
    const struct bwd_job *j = arg;
    const struct dims *d = j->d;
    struct bwd_step st = {j->r, d, j->ws, j->dws, j->s0, d->st, NULL, j->len, j->dg, 0, 0};
    for (int64_t s = d->t - 1; s >= 0; s--) {
        st.s = s, st.t = step_at(j->r, s);
        if (s > 0) {
            st.prev = j->ws + (j->r->reverse ? st.t + 1 : st.t - 1) * d->row;
            st.ldp = d->t * d->row;
        } else {
            st.prev = j->s0, st.ldp = d->st;
        }
        st.carry = s < d->t - 1 ? j->dg + step_at(j->r, s + 1) * d->grow + d->soff : NULL;
        bwd_rows(&st, lo, hi);
        float *g = j->dg + (lo * d->t + st.t) * d->grow;
        rec_gemm(hi - lo, d->h, d->gh, g + d->hoff, d->t * d->grow, j->pk, g + d->soff, d->t * d->grow, 1);
    }
}

void nrt_rnn_bptt(const struct nrt_rnn *r, const float *whh, const float *ws, const float *dws,
                  const float *s0, const int32_t *len, float *dg, float *scratch) {
    struct dims d = dims_of(r);
    if (d.n <= 0 || d.t <= 0) return;
    pack_b(whh, d.h, d.gh, 1, d.h, scratch);
    struct bwd_job j = {r, &d, ws, dws, s0, len, scratch, dg};
    nrt_parallel_for(d.n, grain_of(&d), bwd_seqs, &j);
}

/* -------------------------------------------------------------- gradients -- */

/* dW_hh = sum over steps of dgh^T h_prev. The previous state of a step is the
 * next (or, in reverse, the previous) row of ws, except at each sequence's
 * first step, where it is s0: one GEMM over all rows shifted by one, minus the
 * pairs across sequences, plus the first steps with s0. */
static void grad_whh(const struct nrt_rnn *r, const struct dims *d, const float *dg, const float *ws,
                     const float *s0, float *out) {
    int64_t rows = d->n * d->t, gk = d->t * d->grow, wk = d->t * d->row;
    memset(out, 0, sizeof *out * (size_t)(d->gh * d->h));
    const float *gh = dg + d->hoff;
    if (!r->reverse) {
        nrt_sgemm(1, 0, d->gh, d->h, rows - 1, 1.0f, gh + d->grow, d->grow, ws, d->row, 1.0f, out, d->h);
        nrt_sgemm(1, 0, d->gh, d->h, d->n - 1, -1.0f, gh + gk, gk, ws + (d->t - 1) * d->row, wk, 1.0f, out,
                  d->h);
        nrt_sgemm(1, 0, d->gh, d->h, d->n, 1.0f, gh, gk, s0, d->st, 1.0f, out, d->h);
    } else {
        nrt_sgemm(1, 0, d->gh, d->h, rows - 1, 1.0f, gh, d->grow, ws + d->row, d->row, 1.0f, out, d->h);
        nrt_sgemm(1, 0, d->gh, d->h, d->n - 1, -1.0f, gh + (d->t - 1) * d->grow, gk, ws + wk, wk, 1.0f, out,
                  d->h);
        nrt_sgemm(1, 0, d->gh, d->h, d->n, 1.0f, gh + (d->t - 1) * d->grow, gk, s0, d->st, 1.0f, out, d->h);
    }
}

/* out[k] = sum over rows i of g[i * ld + k], for the column blocks [lo, hi):
 * each column summed by one thread in row order, whatever the split. */
#define COLSUM_BLOCK 16
struct colsum_job {
    const float *g;
    int64_t rows, cols, ld;
    float *out;
};

static void colsum(void *arg, int64_t lo, int64_t hi) {
    const struct colsum_job *j = arg;
    int64_t c0 = lo * COLSUM_BLOCK, c1 = hi * COLSUM_BLOCK < j->cols ? hi * COLSUM_BLOCK : j->cols;
    float *restrict out = j->out;
    memset(out + c0, 0, sizeof *out * (size_t)(c1 - c0));
    for (int64_t i = 0; i < j->rows; i++) {
        const float *restrict g = j->g + i * j->ld;
        for (int64_t k = c0; k < c1; k++) out[k] += g[k];
    }
}

void nrt_rnn_grad(const struct nrt_rnn *r, int wrt, const float *dg, const float *x, const float *wih,
                  const float *ws, const float *s0, float *out) {
    struct dims d = dims_of(r);
    int64_t rows = d.n * d.t;
    switch (wrt) {
    case 0: /* dx = dgx w_ih */
        nrt_sgemm(0, 0, rows, d.f, d.gh, 1.0f, dg, d.grow, wih, d.f, 0.0f, out, d.f);
        break;
    case 1: /* dw_ih = dgx^T x */
        nrt_sgemm(1, 0, d.gh, d.f, rows, 1.0f, dg, d.grow, x, d.f, 0.0f, out, d.f);
        break;
    case 2:
        grad_whh(r, &d, dg, ws, s0, out);
        break;
    case 3:
    case 4: { /* the biases: column sums of the gate blocks */
        struct colsum_job j = {dg + (wrt == 4 ? d.hoff : 0), rows, d.gh, d.grow, out};
        nrt_parallel_for((d.gh + COLSUM_BLOCK - 1) / COLSUM_BLOCK, 1 + 65536 / (rows * COLSUM_BLOCK + 1),
                         colsum, &j);
        break;
    }
    default: { /* s0: the state gradient of each sequence's first step */
        int64_t first = step_at(r, 0);
        for (int64_t b = 0; b < d.n; b++)
            memcpy(out + b * d.st, dg + (b * d.t + first) * d.grow + d.soff, sizeof *out * (size_t)d.st);
        break;
    }
    }
}
