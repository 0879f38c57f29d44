/* codegen/c_summary.c -- the layer table of `./model info`, computed at compile
 * time and emitted into the model descriptor as static data. A "layer" is a node
 * of the forward function that is a contraction or NN op (conv2d, matmul,
 * pooling, softmax, batchnorm, dropout), a flatten (reshape), or reads a
 * parameter; the members of its fused kernel (activation, bias) and elementwise
 * ops reading the same layer's parameters join its row, and other loose nodes add
 * their FLOPs to the row before them. FLOPs per batch item: conv and matmul 2 per
 * multiply-accumulate; pooling the window per output; reshapes and data movement
 * 0; reductions 1 per input element; every other op 1 per output element. Values
 * without the batch dim (optimizer updates) are reported per step. */
#include "codegen/codegen.h"

#include <string.h>

/* FLOPs of one node: k, times the batch when n (then the value is per item). */
struct flops {
    double k; /* FLOPs per item (n) or per batch (!n) */
    bool n;   /* whether they scale with the batch */
};

static struct flops x_of(struct cgc_x x) { return (struct flops){(double)x.k, x.n}; }

static struct flops fmul(struct flops a, double k) { return (struct flops){a.k * k, a.n}; }

static struct flops dim_x(const struct shape *s, int i) { return x_of(cgc_dim(s, i)); }

static struct flops fprod(struct flops a, struct flops b) { return (struct flops){a.k * b.k, a.n || b.n}; }

static const struct shape *arg_shape(const struct ir_func *f, const struct ir_node *n, int i) {
    return &f->nodes[n->args[i]].type.shape;
}

/* FLOPs of node n of f by the convention above. */
static struct flops node_flops(const struct ir_func *f, const struct ir_node *n) {
    struct flops out = x_of(cgc_count(&n->type.shape));
    const struct shape *w;
    switch (n->op) {
    case OP_INPUT:
    case OP_PARAM:
    case OP_CONST:
    case OP_ASSIGN:
    case OP_RESHAPE:
    case OP_TRANSPOSE:
    case OP_SLICE:
    case OP_PAD:
    case OP_CONCAT:
    case OP_BROADCAST_TO:
    case OP_STOP_GRADIENT:
    case OP_CAST:
        return (struct flops){0, false};
    case OP_MATMUL: {
        int ta = (int)ir_attr_i(n, ATTR_TRANSPOSE_A), ra = arg_shape(f, n, 0)->rank;
        return fmul(fprod(out, dim_x(arg_shape(f, n, 0), ta ? ra - 2 : ra - 1)), 2);
    }
    case OP_MATMUL_BSUM: { /* every item of the batch contracts into the result */
        int tb = (int)ir_attr_i(n, ATTR_TRANSPOSE_B), rb = arg_shape(f, n, 1)->rank;
        return fmul(x_of(cgc_count(arg_shape(f, n, 0))),
                    2.0 * (double)arg_shape(f, n, 1)->dim[tb ? rb - 2 : rb - 1]);
    }
    case OP_CONV2D: /* (x, w[co, ci/g, kh, kw]) -> y */
        w = arg_shape(f, n, 1);
        return fmul(out, 2.0 * (double)(w->dim[1] * w->dim[2] * w->dim[3]));
    case OP_CONV2D_GRAD_INPUT: /* (dy, w) -> dx: as many MACs as the forward conv */
        w = arg_shape(f, n, 1);
        return fmul(x_of(cgc_count(arg_shape(f, n, 0))), 2.0 * (double)(w->dim[1] * w->dim[2] * w->dim[3]));
    case OP_CONV2D_GRAD_WEIGHT: /* (x, dy) -> dw[co, ci/g, kh, kw] */
        w = &n->type.shape;
        return fmul(x_of(cgc_count(arg_shape(f, n, 1))), 2.0 * (double)(w->dim[1] * w->dim[2] * w->dim[3]));
    case OP_CONV2D_GRAD_WEIGHT_MAXPOOL: /* (x, y, dp): one patch per pooled gradient */
        w = &n->type.shape;
        return fmul(x_of(cgc_count(arg_shape(f, n, 2))), 2.0 * (double)(w->dim[1] * w->dim[2] * w->dim[3]));
    case OP_CONV_TRANSPOSE2D: /* (x, w[ci, co/g, kh, kw]): every input meets co/g*kh*kw taps */
        w = arg_shape(f, n, 1);
        return fmul(x_of(cgc_count(arg_shape(f, n, 0))), 2.0 * (double)(w->dim[1] * w->dim[2] * w->dim[3]));
    case OP_ATTENTION:
    case OP_ATTENTION_GRAD: { /* as the unfused core: the full T x T scores */
        const struct shape *x = arg_shape(f, n, 0);
        double t = (double)x->dim[1], e = (double)x->dim[2] / 3, h = (double)ir_attr_i(n, ATTR_HEADS);
        double per = n->op == OP_ATTENTION ? 4 * t * t * e + 2 * t * t * h : 10 * t * t * e + 4 * t * t * h;
        return fprod((struct flops){per, false}, dim_x(x, 0));
    }
    case OP_MAXPOOL2D:
    case OP_AVGPOOL2D: {
        int cnt;
        const int64_t *k = ir_attr_v(n, ATTR_KERNEL, &cnt);
        return fmul(out, (double)(k[0] * k[1]));
    }
    case OP_RNN:
    case OP_RNN_BPTT:
    case OP_RNN_GRAD: { /* 2 per MAC of the GEMMs, plus the gates */
        const struct shape *whh = arg_shape(f, n, n->op == OP_RNN ? 2 : n->op == OP_RNN_BPTT ? 0 : 3);
        const struct shape *ws =
            n->op == OP_RNN ? &n->type.shape : arg_shape(f, n, n->op == OP_RNN_BPTT ? 1 : 4);
        double gh = (double)whh->dim[0], h = (double)whh->dim[1], t = (double)ws->dim[1];
        double fi = n->op == OP_RNN_BPTT ? 0 : (double)arg_shape(f, n, n->op == OP_RNN ? 0 : 1)->dim[2];
        int64_t wrt = n->op == OP_RNN_GRAD ? ir_attr_i(n, ATTR_WRT) : -1;
        double per = n->op == OP_RNN        ? 2 * t * gh * (fi + h) + 8 * t * gh
                     : n->op == OP_RNN_BPTT ? 2 * t * gh * h + 8 * t * gh
                     : wrt <= 1             ? 2 * t * gh * fi
                     : wrt == 2             ? 2 * t * gh * h
                     : wrt <= 4             ? t * gh
                                            : 0;
        if (ws->dim[0] != IR_DIM_N) return (struct flops){per * (double)ws->dim[0], false};
        return (struct flops){per, true};
    }
    default:
        if (op_info[n->op].kind == OK_REDUCE && n->op != OP_BROADCAST_TO)
            return x_of(cgc_count(arg_shape(f, n, 0)));
        return out;
    }
}

double cgc_node_flops(const struct ir_func *f, const struct ir_node *n, bool *per_n) {
    struct flops fl = node_flops(f, n);
    *per_n = fl.n;
    return fl.k;
}

/* Whether node n of f starts a row of its own: contractions, NN ops, reshapes
 * (flatten; but not the reshape of a slice) and nodes reading a parameter. */
static bool is_layer(const struct ir_func *f, const struct ir_node *n) {
    enum op_kind k = op_info[n->op].kind;
    if (k == OK_CONTRACT || k == OK_NN) return true;
    if (n->op == OP_RESHAPE) return f->nodes[n->args[0]].op != OP_SLICE;
    for (int a = 0; a < n->nargs; a++)
        if (f->nodes[n->args[a]].op == OP_PARAM) return true;
    return false;
}

/* The parameter's name without its last component ("classifier.conv2d0"). */
static void prefix_of(const char *sym, char *buf, size_t len) {
    snprintf(buf, len, "%s", sym);
    char *dot = strrchr(buf, '.');
    if (dot) *dot = '\0';
}

/* One row while it is being built. */
struct row {
    char op[64];               /* "conv2d+relu" */
    char name[128];            /* parameter prefix, or "" */
    const struct ir_node *out; /* the node whose type is the row's output */
    double params;             /* parameter elements read for the first time */
    double flops;              /* FLOPs per item */
};

static void put_row(FILE *out, const struct row *r) {
    const struct shape *s = &r->out->type.shape;
    fputs("    {", out);
    cgc_put_str(out, r->op);
    fputs(", ", out);
    cgc_put_str(out, r->name);
    fprintf(out, ", %s, %d, {", r->out->type.dtype == DT_I32 ? "NRT_DT_I32" : "NRT_DT_F32", s->rank);
    for (int i = 0; i < s->rank; i++) fprintf(out, "%s%lld", i ? ", " : "", (long long)s->dim[i]);
    if (!s->rank) fputc('0', out);
    fprintf(out, "}, %.0f, %.17g},\n", r->params, r->flops);
}

/* Adds the parameters node n reads that no earlier row counted (trained
 * parameters only: batch norm's running statistics are state, as in the header). */
static void count_params(const struct ir_module *m, const struct ir_func *f, const struct ir_node *n,
                         struct row *r, const char ***seen) {
    for (int a = 0; a < n->nargs; a++) {
        const struct ir_node *p = &f->nodes[n->args[a]];
        if (p->op != OP_PARAM) continue;
        const struct ir_buffer *b = ir_buffer_find((struct ir_module *)m, p->sym);
        if (b && b->kind != BUF_PARAM) continue;
        bool dup = false;
        for (size_t i = 0; i < vec_len(*seen) && !dup; i++) dup = strcmp((*seen)[i], p->sym) == 0;
        if (dup) continue;
        vec_push(*seen, p->sym);
        r->params += (double)shape_static_numel(&p->type.shape);
        if (!r->name[0]) prefix_of(p->sym, r->name, sizeof r->name);
    }
}

void cgc_emit_layers(const struct ir_module *m, FILE *out, struct cgc_layers *sum) {
    memset(sum, 0, sizeof *sum);
    const struct ir_func *fw = ir_func_find((struct ir_module *)m, "forward");
    struct row *rows = NULL;
    const char **seen = NULL;
    int len = fw ? ir_func_len(fw) : 0;
    double loose = 0; /* FLOPs of loose nodes before the first row */
    for (int id = 0; id < len; id++) {
        const struct ir_node *n = &fw->nodes[id];
        struct flops fl = node_flops(fw, n);
        double per_item = fl.k; /* nodes without the batch dim: counted once per item anyway */
        int kn = n->kernel;
        struct row *last = vec_len(rows) ? &rows[vec_len(rows) - 1] : NULL;
        /* fused members join their kernel's row; so does an elementwise op reading
         * parameters of the same layer (the bias of conv_transpose2d) */
        bool joins = last && kn > 0 && last->out->kernel == kn && n->op != OP_MAXPOOL2D; /* a pooling
                                                                                           root: a layer */
        if (last && !joins && op_info[n->op].kind == OK_EWISE)
            for (int a = 0; a < n->nargs && !joins; a++) {
                const struct ir_node *p = &fw->nodes[n->args[a]];
                char pre[128];
                if (p->op != OP_PARAM) continue;
                prefix_of(p->sym, pre, sizeof pre);
                joins = strcmp(pre, last->name) == 0;
            }
        if (joins) {
            last->out = n;
            last->flops += per_item;
            count_params(m, fw, n, last, &seen);
            if (op_info[n->op].kind == OK_EWISE && n->op != OP_BIAS_ADD && n->op != OP_ADD) {
                size_t l = strlen(last->op);
                snprintf(last->op + l, sizeof last->op - l, "+%s", op_info[n->op].name);
            }
            continue;
        }
        if (is_layer(fw, n)) {
            struct row r = {{0}, {0}, n, 0, per_item + loose};
            loose = 0;
            snprintf(r.op, sizeof r.op, "%s", op_info[n->op].name);
            count_params(m, fw, n, &r, &seen);
            vec_push(rows, r);
            continue;
        }
        if (last)
            last->flops += per_item;
        else
            loose += per_item;
    }
    fputs("static const struct nrt_layer_desc layers[] = {\n", out);
    for (size_t i = 0; i < vec_len(rows); i++) {
        put_row(out, &rows[i]);
        sum->forward_flops += rows[i].flops;
    }
    if (!vec_len(rows)) fputs("    {NULL, NULL, NRT_DT_F32, 0, {0}, 0, 0},\n", out);
    fputs("};\n\n", out);
    sum->n = (int)vec_len(rows);
    vec_free(rows);
    vec_free(seen);
    /* The training step: every node of the batch function where there is one
     * (passes/batch.c: what it computes once is counted once), else of every
     * train function, since the driver runs each of them once a batch. */
    bool batch = false;
    for (size_t e = 0; e < vec_len(m->funcs); e++) batch |= vec_len(m->funcs[e]->steps) > 0;
    for (size_t e = 0; e < vec_len(m->funcs); e++) {
        const struct ir_func *f = m->funcs[e];
        if (f->mode != MODE_TRAIN || batch != (vec_len(f->steps) > 0)) continue;
        for (int id = 0; id < ir_func_len(f); id++) {
            struct flops fl = node_flops(f, &f->nodes[id]);
            if (fl.n)
                sum->train_flops += fl.k;
            else
                sum->train_fixed += fl.k;
        }
    }
}
