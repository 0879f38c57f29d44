/* frontend/init.c -- `init pytorch` in the train block: every parameter a layer
 * made starts as torch.nn's module of that layer starts it (reset_parameters),
 * instead of the default Glorot/zeros of Keras. One table maps a layer's
 * parameter to its rule; lw_param records each parameter it creates and
 * fe_init_apply rewrites their initial values once lowering is done. A layer
 * parameter with no row is an error under `init pytorch` (a new layer adds its
 * rows here), never a silent Keras value. */
#include "frontend/frontend.h"

#include <math.h>
#include <string.h>

/* How a parameter starts under `init pytorch`. The bound of the uniform rules
 * comes from the shape of another parameter of the same layer, `ref`. */
enum pt_rule {
    PT_KEEP,     /* the layer's own initial value is already PyTorch's (batch norm: 1 and 0) */
    PT_FAN_ROWS, /* U(+-1/sqrt(fan_in)), fan_in = dim 0 of ref (dense's w [in, out]): nn.Linear's
                  * kaiming_uniform(a=sqrt(5)) weight and its bias */
    PT_FAN_COLS, /* U(+-1/sqrt(fan_in)), fan_in = the product of dims 1.. of ref (conv weights OIHW,
                  * transposed IOHW, as torch's _calculate_fan_in_and_fan_out): nn.Conv*d's */
    PT_HIDDEN,   /* U(+-1/sqrt(H)), H = dim 0 of ref (a recurrent kernel u [H, G*H]): nn.LSTM/GRU/RNN,
                  * every weight and bias */
    PT_NORMAL,   /* N(0, 1): nn.Embedding */
    PT_ZEROS,    /* 0: biases PyTorch zeroes (attention's in/out projections) */
};

/* layer (as named in parameter names), parameter (NULL: any), rule, ref. */
static const struct pt_row {
    const char *layer, *what;
    enum pt_rule rule;
    const char *ref;
} rows[] = {
    {"dense", "w", PT_FAN_ROWS, "w"},
    {"dense", "b", PT_FAN_ROWS, "w"},
    {"conv2d", "w", PT_FAN_COLS, "w"},
    {"conv2d", "b", PT_FAN_COLS, "w"},
    {"conv2d_transpose", "w", PT_FAN_COLS, "w"},
    {"conv2d_transpose", "b", PT_FAN_COLS, "w"},
    {"lstm", NULL, PT_KEEP, NULL}, /* already U(+-1/sqrt(units)) in every init (lower_layers.c) */
    {"gru", NULL, PT_KEEP, NULL},  /* already U(+-1/sqrt(units)) in every init (lower_layers.c) */
    {"rnn", NULL, PT_KEEP, NULL},  /* already U(+-1/sqrt(units)) in every init (lower_layers.c) */
    {"batchnorm", NULL, PT_KEEP, NULL},
};

static const struct pt_row *row_of(const char *layer, const char *what) {
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        if (strcmp(rows[i].layer, layer) == 0 && (!rows[i].what || strcmp(rows[i].what, what) == 0))
            return &rows[i];
    return NULL;
}

void fe_init_record(struct lower *L, const char *buf, const char *layer, const char *what, struct loc loc) {
    vec_push(L->lparams, ((struct fe_lparam){arena_strdup(L->a, buf), arena_strdup(L->a, layer),
                                             arena_strdup(L->a, what), loc}));
}

/* The ref parameter of a layer parameter: `<prefix>.<layer><k>.<ref>`. */
static const struct ir_buffer *ref_of(struct lower *L, const char *buf, const char *ref) {
    const char *dot = strrchr(buf, '.');
    char *name = arena_printf(L->a, "%.*s.%s", (int)(dot - buf), buf, ref);
    return ir_buffer_find(L->m, name);
}

bool fe_init_apply(struct lower *L) {
    if (!L->init_pytorch) return true;
    for (size_t i = 0; i < vec_len(L->lparams); i++) {
        const struct fe_lparam *p = &L->lparams[i];
        struct ir_buffer *b = ir_buffer_find(L->m, p->buf);
        if (!b || b->kind != BUF_PARAM) continue;
        const struct pt_row *r = row_of(p->layer, p->what);
        if (!r) {
            lw_error(L, p->loc,
                     "init pytorch: no PyTorch initialisation is known for %s's parameter '%s' (%s)",
                     p->layer, p->what, p->buf);
            continue;
        }
        const struct ir_buffer *ref = r->ref ? ref_of(L, p->buf, r->ref) : NULL;
        if (r->ref && !ref) NETC_UNREACHABLE();
        double fan = 1;
        if (r->rule == PT_FAN_ROWS || r->rule == PT_HIDDEN) fan = (double)ref->type.shape.dim[0];
        if (r->rule == PT_FAN_COLS)
            for (int d = 1; d < ref->type.shape.rank; d++) fan *= (double)ref->type.shape.dim[d];
        double bound = 1 / sqrt(fan > 0 ? fan : 1);
        switch (r->rule) {
        case PT_KEEP:
            break;
        case PT_FAN_ROWS:
        case PT_FAN_COLS:
        case PT_HIDDEN:
            b->init = (struct ir_init){INIT_UNIFORM, -bound, bound};
            break;
        case PT_NORMAL:
            b->init = (struct ir_init){INIT_NORMAL, 0, 1};
            break;
        case PT_ZEROS:
            b->init = (struct ir_init){INIT_ZEROS, 0, 0};
            break;
        }
    }
    return L->nerrors == 0;
}
