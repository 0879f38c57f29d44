/* codegen/interp_rnn.c -- the reference interpreter's recurrent ops (RNN, RNN_BPTT,
 * RNN_GRAD): one sequence at a time, one step at a time, every gate as its own
 * dot products, in double. The layouts are docs/ir.md's "Recurrent ops"; the
 * runtime (runtime/rnn.c) computes the same with GEMMs and must agree. */
#include "codegen/codegen.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The sizes of a recurrent node, read from its operands. */
struct rnn {
    int cell, rev;         /* IR_RNN_*, direction */
    size_t n, t, f, h, gh; /* batch, steps, features, hidden, gates*hidden */
    size_t row, st, grow;  /* widths of a ws row, of s0, of a BPTT row */
    size_t hoff, soff;     /* BPTT row: the recurrent gate block and the state block */
};

static struct rnn rnn_sizes(struct cg_interp *it, int id, int whh, int ws) {
    const struct ir_node *nd = cg_node(it, id);
    struct rnn r;
    r.cell = (int)ir_attr_i(nd, ATTR_CELL);
    r.rev = (int)ir_attr_i(nd, ATTR_REVERSE) != 0;
    const struct cg_val *w = cg_arg(it, id, whh), *v = cg_arg(it, id, ws);
    r.h = (size_t)w->shape.dim[1];
    r.gh = (size_t)w->shape.dim[0];
    r.n = (size_t)v->shape.dim[0];
    r.t = (size_t)v->shape.dim[1];
    r.f = 0;
    r.row = (size_t)ir_rnn_row(r.cell) * r.h;
    r.st = (size_t)ir_rnn_state(r.cell) * r.h;
    r.grow = (size_t)ir_rnn_grad_row(r.cell) * r.h;
    r.hoff = r.cell == IR_RNN_GRU ? r.gh : 0;
    r.soff = r.cell == IR_RNN_GRU ? 2 * r.gh : r.gh;
    return r;
}

/* The valid steps of sequence b: its length clamped to [0, T]. */
static size_t rnn_len(const struct cg_val *lengths, size_t b, size_t t) {
    double l = lengths->d[b];
    return l < 0 ? 0 : l > (double)t ? t : (size_t)l;
}

/* Step s of the processing order; its predecessor's row, or -1 (s0). */
static size_t step_at(const struct rnn *r, size_t s) { return r->rev ? r->t - 1 - s : s; }

static const double *prev_state(const struct rnn *r, const double *ws, const double *s0, size_t b, size_t s) {
    if (s == 0) return s0 + b * r->st;
    size_t tp = r->rev ? step_at(r, s) + 1 : step_at(r, s) - 1;
    return ws + (b * r->t + tp) * r->row;
}

static double sigm(double v) { return 1 / (1 + exp(-v)); }

static double act(int cell, double v) {
    switch (cell) {
    case IR_RNN_RELU:
        return v > 0 ? v : 0;
    case IR_RNN_SIGMOID:
        return sigm(v);
    default:
        return tanh(v);
    }
}

/* d act / d pre, from the activation's output y. */
static double act_grad(int cell, double y) {
    switch (cell) {
    case IR_RNN_RELU:
        return y > 0 ? 1 : 0;
    case IR_RNN_SIGMOID:
        return y * (1 - y);
    default:
        return 1 - y * y;
    }
}

bool cg_eval_RNN(struct cg_interp *it, int id) {
    struct rnn r = rnn_sizes(it, id, 2, 0);
    const struct cg_val *x = cg_arg(it, id, 0), *len = cg_arg(it, id, 6);
    const double *wi = cg_arg(it, id, 1)->d, *wh = cg_arg(it, id, 2)->d, *bi = cg_arg(it, id, 3)->d;
    const double *bh = cg_arg(it, id, 4)->d, *s0 = cg_arg(it, id, 5)->d;
    double *ws = cg_out(it, id)->d;
    r.f = (size_t)x->shape.dim[2];
    double *xi = calloc(r.gh, sizeof *xi), *hh = calloc(r.gh, sizeof *hh);
    if (!xi || !hh) {
        free(xi), free(hh);
        return cg_fail(it, id, "out of memory");
    }
    size_t H = r.h;
    for (size_t b = 0; b < r.n; b++) {
        size_t valid = rnn_len(len, b, r.t);
        for (size_t s = 0; s < r.t; s++) {
            size_t t = step_at(&r, s);
            const double *prev = prev_state(&r, ws, s0, b, s);
            double *row = ws + (b * r.t + t) * r.row;
            if (r.rev ? r.t - 1 - s >= valid : s >= valid) { /* padding: the state passes through */
                memcpy(row, prev, sizeof *row * r.st);
                continue;
            }
            for (size_t k = 0; k < r.gh; k++) {
                double a = bi[k], c = bh[k];
                for (size_t j = 0; j < r.f; j++) a += wi[k * r.f + j] * x->d[(b * r.t + t) * r.f + j];
                for (size_t j = 0; j < H; j++) c += wh[k * H + j] * prev[j];
                xi[k] = a, hh[k] = c;
            }
            for (size_t j = 0; j < H; j++) {
                if (r.cell == IR_RNN_LSTM) {
                    double i = sigm(xi[j] + hh[j]), f = sigm(xi[H + j] + hh[H + j]);
                    double g = tanh(xi[2 * H + j] + hh[2 * H + j]), o = sigm(xi[3 * H + j] + hh[3 * H + j]);
                    double c = f * prev[H + j] + i * g;
                    row[j] = o * tanh(c), row[H + j] = c;
                    row[2 * H + j] = i, row[3 * H + j] = f, row[4 * H + j] = g, row[5 * H + j] = o;
                } else if (r.cell == IR_RNN_GRU) {
                    double rg = sigm(xi[j] + hh[j]), z = sigm(xi[H + j] + hh[H + j]);
                    double nn = tanh(xi[2 * H + j] + rg * hh[2 * H + j]);
                    row[j] = (1 - z) * nn + z * prev[j];
                    row[H + j] = rg, row[2 * H + j] = z, row[3 * H + j] = nn;
                    row[4 * H + j] = hh[j], row[5 * H + j] = hh[H + j], row[6 * H + j] = hh[2 * H + j];
                } else {
                    row[j] = act(r.cell, xi[j] + hh[j]);
                }
            }
        }
    }
    free(xi), free(hh);
    return true;
}

/* Element c of step t's row of ws's gradient, sequence b, from dws [n, dt, dc]:
 * every step's first dc columns, or (dt = 1 < t) the final step's; 0 elsewhere. */
static double dws_at(const struct rnn *r, const struct cg_val *dws, size_t b, size_t t, size_t c) {
    size_t dt = (size_t)dws->shape.dim[1], dc = (size_t)dws->shape.dim[2];
    size_t last = r->rev ? 0 : r->t - 1;
    if (c >= dc || (dt != r->t && t != last)) return 0;
    return dws->d[(b * dt + (dt == r->t ? t : 0)) * dc + c];
}

/* (w_hh, ws, dws, s0, lengths): per step, from the last one processed back. */
bool cg_eval_RNN_BPTT(struct cg_interp *it, int id) {
    struct rnn r = rnn_sizes(it, id, 0, 1);
    const double *wh = cg_arg(it, id, 0)->d, *ws = cg_arg(it, id, 1)->d;
    const struct cg_val *dws = cg_arg(it, id, 2);
    double *d = calloc(r.row ? r.row : 1, sizeof *d); /* one step's row of ws's gradient */
    if (!d) return cg_fail(it, id, "out of memory");
    const double *s0 = cg_arg(it, id, 3)->d;
    const struct cg_val *len = cg_arg(it, id, 4);
    double *dg = cg_out(it, id)->d;
    size_t H = r.h;
    for (size_t b = 0; b < r.n; b++) {
        size_t valid = rnn_len(len, b, r.t);
        const double *carry = NULL; /* the state gradient row of the step after */
        for (size_t s = r.t; s-- > 0;) {
            size_t t = step_at(&r, s);
            const double *prev = prev_state(&r, ws, s0, b, s), *w = ws + (b * r.t + t) * r.row;
            for (size_t c = 0; c < r.row; c++) d[c] = dws_at(&r, dws, b, t, c);
            double *g = dg + (b * r.t + t) * r.grow, *gx = g, *gh = g + r.hoff, *sp = g + r.soff;
            bool pad = r.rev ? r.t - 1 - s >= valid : s >= valid;
            for (size_t j = 0; j < H; j++) {
                double dh = d[j] + (carry ? carry[j] : 0);
                double dc = r.cell == IR_RNN_LSTM ? d[H + j] + (carry ? carry[H + j] : 0) : 0;
                if (pad) {
                    sp[j] = dh;
                    if (r.cell == IR_RNN_LSTM) sp[H + j] = dc;
                    continue;
                }
                if (r.cell == IR_RNN_LSTM) {
                    double c = w[H + j], i = w[2 * H + j], f = w[3 * H + j], gg = w[4 * H + j],
                           o = w[5 * H + j];
                    double tc = tanh(c);
                    double dout = dh * tc + d[5 * H + j];
                    dc += dh * o * (1 - tc * tc);
                    gx[j] = (dc * gg + d[2 * H + j]) * i * (1 - i);
                    gx[H + j] = (dc * prev[H + j] + d[3 * H + j]) * f * (1 - f);
                    gx[2 * H + j] = (dc * i + d[4 * H + j]) * (1 - gg * gg);
                    gx[3 * H + j] = dout * o * (1 - o);
                    sp[j] = 0;
                    sp[H + j] = dc * f;
                } else if (r.cell == IR_RNN_GRU) {
                    double rg = w[H + j], z = w[2 * H + j], nn = w[3 * H + j], ghn = w[6 * H + j];
                    double dn = (dh * (1 - z) + d[3 * H + j]) * (1 - nn * nn);
                    double dr = (dn * ghn + d[H + j]) * rg * (1 - rg);
                    double dz = (dh * (prev[j] - nn) + d[2 * H + j]) * z * (1 - z);
                    gx[j] = dr, gx[H + j] = dz, gx[2 * H + j] = dn;
                    gh[j] = dr + d[4 * H + j], gh[H + j] = dz + d[5 * H + j],
                    gh[2 * H + j] = dn * rg + d[6 * H + j];
                    sp[j] = dh * z;
                } else {
                    gx[j] = dh * act_grad(r.cell, w[j]);
                    sp[j] = 0;
                }
            }
            if (!pad)
                for (size_t j = 0; j < H; j++)
                    for (size_t k = 0; k < r.gh; k++) sp[j] += gh[k] * wh[k * H + j];
            carry = sp;
        }
    }
    free(d);
    return true;
}

/* (dg, x, w_ih, w_hh, ws, s0) -> d operand `wrt` of RNN. */
bool cg_eval_RNN_GRAD(struct cg_interp *it, int id) {
    struct rnn r = rnn_sizes(it, id, 3, 4);
    const double *dg = cg_arg(it, id, 0)->d, *x = cg_arg(it, id, 1)->d, *wi = cg_arg(it, id, 2)->d;
    const double *ws = cg_arg(it, id, 4)->d, *s0 = cg_arg(it, id, 5)->d;
    double *y = cg_out(it, id)->d;
    r.f = (size_t)cg_arg(it, id, 1)->shape.dim[2];
    int64_t wrt = ir_attr_i(cg_node(it, id), ATTR_WRT);
    size_t H = r.h;
    for (size_t b = 0; b < r.n; b++)
        for (size_t s = 0; s < r.t; s++) {
            size_t t = step_at(&r, s), at = b * r.t + t;
            const double *g = dg + at * r.grow, *gx = g, *gh = g + r.hoff;
            switch (wrt) {
            case 0:
                for (size_t j = 0; j < r.f; j++)
                    for (size_t k = 0; k < r.gh; k++) y[at * r.f + j] += gx[k] * wi[k * r.f + j];
                break;
            case 1:
                for (size_t k = 0; k < r.gh; k++)
                    for (size_t j = 0; j < r.f; j++) y[k * r.f + j] += gx[k] * x[at * r.f + j];
                break;
            case 2: {
                const double *prev = prev_state(&r, ws, s0, b, s);
                for (size_t k = 0; k < r.gh; k++)
                    for (size_t j = 0; j < H; j++) y[k * H + j] += gh[k] * prev[j];
                break;
            }
            case 3:
                for (size_t k = 0; k < r.gh; k++) y[k] += gx[k];
                break;
            case 4:
                for (size_t k = 0; k < r.gh; k++) y[k] += gh[k];
                break;
            default:
                if (s == 0) memcpy(y + b * r.st, g + r.soff, sizeof *y * r.st);
                break;
            }
        }
    return true;
}
