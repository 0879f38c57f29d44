/* ir/dot.c -- the Graphviz DOT printer. Nodes nest in clusters: function, then
 * (training functions) phase -- forward, backward, optimizer, found from the graph
 * by ir_dot_phases --, then the net and the layer of the .net source line each node
 * comes from (read back from the registered source text: a line inside a
 * `net NAME(...) { }` body belongs to that net). Scalar constants are inlined into
 * their users' labels, and each parameter's optimizer update (moments, bias
 * correction, the new weight) is one box. Node ids are f<func>_n<node> so no user
 * name reaches the DOT syntax unescaped. Sections: text, phases, source lines,
 * the printer. */
#include "ir/ir.h"

#include <string.h>

/* ------------------------------------------------------------------ text */

/* Text inside a DOT double-quoted string: escape `"` and `\`, make other control and
 * non-ASCII bytes visible as \xNN (with the backslash itself escaped). */
static void dot_textn(FILE *out, const char *s, size_t n) {
    for (size_t i = 0; s && i < n && s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\\\x%02x", c);
        else
            fputc(c, out);
    }
}

static void dot_text(FILE *out, const char *s) { dot_textn(out, s, (size_t)-1); }

static void dot_attrs(FILE *out, const struct ir_node *n) {
    const struct op_info *info = &op_info[n->op];
    bool first = true;
    for (int i = 0; i < info->nattrs; i++) {
        const struct attr_desc *a = &info->attrs[i];
        if (a->kind == AK_STR || (n->op == OP_CONST && a->kind == AK_FLOAT)) continue;
        fprintf(out, "%s%s=", first ? "\\n" : " ", a->name);
        first = false;
        const int64_t *v = &n->ia[a->slot];
        int count = a->count;
        if (a->kind == AK_INT) {
            fprintf(out, "%lld", (long long)v[0]);
            continue;
        }
        if (a->kind == AK_FLOAT) {
            fprintf(out, "%.9g", n->fa[a->slot]);
            continue;
        }
        if (a->kind == AK_LIST) {
            count = v[0] < 0 ? 0 : v[0] > IR_MAX_LIST ? IR_MAX_LIST : (int)v[0];
            v++;
        }
        fputc('[', out);
        for (int k = 0; k < count; k++) fprintf(out, "%s%lld", k ? "," : "", (long long)v[k]);
        fputc(']', out);
    }
}

static bool valid_op(const struct ir_node *n) { return (unsigned)n->op < OP_COUNT; }

/* A constant drawn inside its users' labels rather than as a node of its own. */
static bool inlined(const struct ir_node *n) { return n->op == OP_CONST && n->type.shape.rank == 0; }

/* ---------------------------------------------------------------- phases */

/* Whether buffer name `sym` is state of function `f` (its optimizer's moments,
 * learning rate and step counter are named "<func>.<...>"). */
static bool own_state(const struct ir_func *f, const char *sym) {
    size_t k = strlen(f->name);
    return sym && strncmp(sym, f->name, k) == 0 && sym[k] == '.';
}

void ir_dot_phases(const struct ir_func *f, unsigned char *ph) {
    int n = ir_func_len(f);
    if (f->mode != MODE_TRAIN) {
        memset(ph, PHASE_FORWARD, (size_t)n);
        return;
    }
    /* Optimizer: what reads the function's own state, and everything after it. */
    unsigned char *opt = calloc((size_t)n + 1, 1), *fwd = calloc((size_t)n + 1, 1);
    if (!opt || !fwd) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    for (int i = 0; i < n; i++) {
        const struct ir_node *x = &f->nodes[i];
        opt[i] = x->op == OP_PARAM && own_state(f, x->sym);
        for (int k = 0; k < x->nargs && !opt[i]; k++)
            if (x->args[k] >= 0 && x->args[k] < i && opt[x->args[k]]) opt[i] = 1;
    }
    /* Forward: what the outputs read, and state updates that read no gradient
     * or optimizer value (batch-norm running statistics) with what they read. */
    for (size_t o = 0; o < vec_len(f->outputs); o++)
        if (f->outputs[o].value >= 0 && f->outputs[o].value < n) fwd[f->outputs[o].value] = 1;
    for (int i = n - 1; i >= 0; i--) {
        if (!fwd[i]) continue;
        const struct ir_node *x = &f->nodes[i];
        for (int k = 0; k < x->nargs; k++)
            if (x->args[k] >= 0 && x->args[k] < i) fwd[x->args[k]] = 1;
    }
    /* Other state updates (batch-norm running statistics) and what they read
     * back to the forward pass are forward too. */
    for (int i = 0; i < n; i++)
        if (f->nodes[i].op == OP_ASSIGN && !opt[i] && !fwd[i]) fwd[i] = 2;
    for (int i = n - 1; i >= 0; i--) {
        if (fwd[i] != 2) continue;
        const struct ir_node *x = &f->nodes[i];
        for (int k = 0; k < x->nargs; k++)
            if (x->args[k] >= 0 && x->args[k] < i && !opt[x->args[k]] && !fwd[x->args[k]])
                fwd[x->args[k]] = 2;
    }
    /* Optimizer lowering appends its nodes after the backward pass, starting
     * with a read of its state: past that point, a value only the optimizer
     * reads (the (1 - beta) g of a moment update) is the optimizer's too. */
    int start = n;
    for (int i = 0; i < n && start == n; i++)
        if (opt[i] && f->nodes[i].nargs == 0) start = i;
    int *last_user = malloc(sizeof *last_user * ((size_t)n + 1));
    bool *only_opt = malloc(sizeof *only_opt * ((size_t)n + 1));
    if (!last_user || !only_opt) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    for (int i = 0; i < n; i++) last_user[i] = -1, only_opt[i] = true;
    for (int i = n - 1; i >= 0; i--) {
        ph[i] = fwd[i]                                                       ? PHASE_FORWARD
                : opt[i] || (i >= start && last_user[i] >= 0 && only_opt[i]) ? PHASE_OPTIMIZER
                                                                             : PHASE_BACKWARD;
        const struct ir_node *x = &f->nodes[i];
        for (int k = 0; k < x->nargs; k++) {
            int a = x->args[k];
            if (a < 0 || a >= i) continue;
            if (last_user[a] < 0) last_user[a] = i;
            if (ph[i] != PHASE_OPTIMIZER) only_opt[a] = false;
        }
    }
    free(last_user);
    free(only_opt);
    /* A leaf outside the forward pass belongs where its first user is. */
    for (int i = n - 1; i >= 0; i--) {
        const struct ir_node *x = &f->nodes[i];
        for (int k = 0; k < x->nargs; k++) {
            int a = x->args[k];
            if (a >= 0 && a < i && f->nodes[a].nargs == 0 && !fwd[a] && !opt[a]) ph[a] = ph[i];
        }
    }
    free(opt);
    free(fwd);
}

/* ---------------------------------------------------------- source lines */

/* One line of a registered source: its text and the net whose body holds it. */
struct src_line {
    const char *text; /* start of the line */
    int len;          /* its length without the comment and trailing space */
    const char *net;  /* name of the enclosing net (not NUL-terminated), or NULL */
    int net_len;      /* its length */
};

struct src_map {
    const char *file;       /* the file (interned name, as in locs) */
    struct src_line *lines; /* lines[0] is line 1 */
    int nlines;
};

static bool ident_char(char c) {
    return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}

/* Splits a source into lines and finds the nets: `net NAME` at brace depth 0
 * names the block its next `{` opens. Comments (#) and strings are skipped. */
static void src_scan(struct src_map *s, const char *text, size_t len) {
    int nl = 1;
    for (size_t i = 0; i < len; i++) nl += text[i] == '\n';
    s->lines = calloc((size_t)nl + 1, sizeof *s->lines);
    if (!s->lines) return;
    s->nlines = nl;
    int depth = 0, line = 0;
    const char *pending = NULL, *net = NULL;
    int pending_len = 0, net_len = 0;
    bool line_start = true;
    for (size_t i = 0; i <= len; i++) {
        if (line_start) {
            struct src_line *L = &s->lines[line];
            L->text = text + i;
            L->net = depth > 0 ? net : NULL;
            L->net_len = net_len;
            size_t e = i;
            while (e < len && text[e] != '\n' && text[e] != '#') e++;
            while (e > i && (text[e - 1] == ' ' || text[e - 1] == '\t' || text[e - 1] == '\r')) e--;
            while (i < e && (text[i] == ' ' || text[i] == '\t')) L->text++, i++;
            L->len = (int)(text + e - L->text);
            line_start = false;
        }
        if (i == len) break;
        char c = text[i];
        if (c == '\n') {
            line++;
            line_start = true;
        } else if (c == '#') {
            while (i + 1 < len && text[i + 1] != '\n') i++;
        } else if (c == '"') {
            while (i + 1 < len && text[i + 1] != '"' && text[i + 1] != '\n') i += 1 + (text[i + 1] == '\\');
            i++;
        } else if (c == '{') {
            if (depth++ == 0) net = pending, net_len = pending_len;
            pending = NULL;
        } else if (c == '}') {
            if (depth > 0 && --depth == 0) net = NULL;
        } else if (depth == 0 && strncmp(text + i, "net", 3) == 0 && (i == 0 || !ident_char(text[i - 1])) &&
                   (text[i + 3] == ' ' || text[i + 3] == '\t')) {
            size_t k = i + 3;
            while (text[k] == ' ' || text[k] == '\t') k++;
            size_t b = k;
            while (ident_char(text[k])) k++;
            if (k > b) pending = text + b, pending_len = (int)(k - b);
            i = k - 1;
        }
    }
}

static const struct src_line *src_line_find(struct src_map **maps, struct loc loc);

/* The line of loc, or NULL without a registered source or when it is a line of
 * IR text (`%3 = ...`: the module was parsed from IR, not lowered from a .net). */
static const struct src_line *src_line_of(struct src_map **maps, struct loc loc) {
    const struct src_line *l = src_line_find(maps, loc);
    return l && l->len > 0 && l->text[0] != '%' ? l : NULL;
}

static const struct src_line *src_line_find(struct src_map **maps, struct loc loc) {
    if (!loc.file || loc.line <= 0) return NULL;
    for (size_t i = 0; i < vec_len(*maps); i++)
        if ((*maps)[i].file == loc.file || strcmp((*maps)[i].file, loc.file) == 0)
            return loc.line <= (*maps)[i].nlines && (*maps)[i].lines ? &(*maps)[i].lines[loc.line - 1] : NULL;
    struct src_map s = {loc.file, NULL, 0};
    size_t len;
    const char *text = diag_source_text(loc.file, &len);
    if (text) src_scan(&s, text, len);
    vec_push(*maps, s);
    return s.lines && loc.line <= s.nlines ? &s.lines[loc.line - 1] : NULL;
}

/* --------------------------------------------------------------- printer */

/* One thing drawn: a node, or an optimizer box standing for several. */
struct item {
    int node;                  /* the node (for a box: its first member) */
    int box;                   /* -1: a node; else the box index */
    unsigned char phase;       /* PHASE_* */
    const struct src_line *at; /* its source line, or NULL */
};

struct box {
    int param;  /* the parameter's buffer index in the module; -1: shared values */
    int count;  /* member nodes */
    int kernel; /* a kernel of one of them, 0: none */
    int first;  /* the first member */
};

static const char *phase_name(unsigned p) {
    return p == PHASE_FORWARD ? "forward" : p == PHASE_BACKWARD ? "backward" : "optimizer";
}

static void node_label(FILE *out, const struct ir_func *f, int i) {
    char t[TYPE_STR_MAX];
    const struct ir_node *n = &f->nodes[i];
    bool valid = valid_op(n);
    fprintf(out, "%%%d %s", i, valid ? op_info[n->op].name : "?");
    if (n->sym) {
        fputs(" @", out);
        dot_text(out, n->sym);
    }
    if (n->op == OP_CONST) fprintf(out, " %g", n->fa[0]);
    if (n->nargs) {
        fputc('(', out);
        for (int k = 0; k < n->nargs; k++) {
            int a = n->args[k];
            if (k) fputs(", ", out);
            if (a >= 0 && a < i && inlined(&f->nodes[a]))
                fprintf(out, "%g", f->nodes[a].fa[0]);
            else
                fprintf(out, "%%%d", a);
        }
        fputc(')', out);
    }
    fputs("\\n", out);
    dot_text(out, type_str(&n->type, t, sizeof t));
    if (valid) dot_attrs(out, n);
    if (n->kernel) fprintf(out, "\\nkernel %d", n->kernel);
}

static void item_draw(FILE *out, const struct ir_module *m, const struct ir_func *f, size_t fi,
                      const struct item *it, const struct box *boxes, const char *indent) {
    if (it->box >= 0) {
        const struct box *b = &boxes[it->box];
        fprintf(out, "%sf%zu_b%d [shape=box3d, label=\"%s", indent, fi, it->box,
                f->optim.kind ? f->optim.kind : "update");
        if (b->param >= 0) {
            char t[TYPE_STR_MAX];
            fputs(" update @", out);
            dot_text(out, m->buffers[b->param].name);
            fputs("\\n", out);
            dot_text(out, type_str(&m->buffers[b->param].type, t, sizeof t));
        } else {
            fputs(": step count, learning rate, bias corrections", out);
        }
        fprintf(out, "\\n%d ops", b->count);
        if (b->kernel) fprintf(out, ", kernel %d", b->kernel);
        fputs("\"", out);
        if (b->kernel) fprintf(out, ", style=filled, fillcolor=\"/pastel19/%d\"", b->kernel % 9 + 1);
        fputs("];\n", out);
        return;
    }
    const struct ir_node *n = &f->nodes[it->node];
    fprintf(out, "%sf%zu_n%d [label=\"", indent, fi, it->node);
    node_label(out, f, it->node);
    fputs("\"", out);
    if (n->kernel)
        fprintf(out, ", style=filled, fillcolor=\"/pastel19/%d\"", n->kernel % 9 + 1);
    else if (valid_op(n) && (op_info[n->op].flags & OF_EFFECT))
        fputs(", style=bold", out);
    else if (valid_op(n) && op_info[n->op].kind == OK_LEAF)
        fputs(", style=rounded", out);
    fputs("];\n", out);
}

/* Optimizer boxes: each optimizer node goes to the box of the one parameter
 * whose update it feeds (moment updates go with their parameter), or to the
 * shared box when it feeds several (learning rate, step, bias corrections).
 * box_of[i] receives the box index, -1 for nodes drawn on their own. */
static int make_boxes(const struct ir_module *m, const struct ir_func *f, const unsigned char *ph,
                      const int *uoff, const int *users, int *box_of, struct box **boxes) {
    int n = ir_func_len(f);
    int *key = malloc(sizeof *key * ((size_t)n + 1));
    if (!key) return 0;
    enum { NONE = -1, MANY = -2 };
    for (int i = n - 1; i >= 0; i--) {
        const struct ir_node *x = &f->nodes[i];
        key[i] = NONE;
        if (ph[i] != PHASE_OPTIMIZER) continue;
        if (x->op == OP_ASSIGN) {
            const struct ir_buffer *b = NULL;
            for (size_t k = 0; x->sym && k < vec_len(m->buffers) && !b; k++)
                if (strcmp(m->buffers[k].name, x->sym) == 0) b = &m->buffers[k];
            if (b && b->kind == BUF_PARAM && !own_state(f, x->sym)) key[i] = (int)(b - m->buffers);
            continue;
        }
        for (int u = uoff[i]; u < uoff[i + 1]; u++) {
            int ku = key[users[u]];
            if (ph[users[u]] != PHASE_OPTIMIZER || ku == NONE) continue;
            key[i] = key[i] == NONE ? ku : key[i] == ku ? ku : MANY;
        }
    }
    /* State assigns (the moments) join the box of the value they store. */
    for (int i = 0; i < n; i++)
        if (ph[i] == PHASE_OPTIMIZER && f->nodes[i].op == OP_ASSIGN && key[i] == NONE && f->nodes[i].nargs)
            key[i] = key[f->nodes[i].args[0]];
    int nbox = 0;
    int *param_box = calloc(vec_len(m->buffers) + 1, sizeof *param_box);
    *boxes = calloc((size_t)n + 2, sizeof **boxes);
    int shared = -1;
    for (int i = 0; i < n && param_box && *boxes; i++) {
        box_of[i] = -1;
        if (ph[i] != PHASE_OPTIMIZER || inlined(&f->nodes[i])) continue;
        int b;
        if (key[i] >= 0) {
            if (!param_box[key[i]]) {
                param_box[key[i]] = ++nbox;
                (*boxes)[nbox - 1] = (struct box){key[i], 0, 0, i};
            }
            b = param_box[key[i]] - 1;
        } else {
            if (shared < 0) {
                shared = nbox++;
                (*boxes)[shared] = (struct box){-1, 0, 0, i};
            }
            b = shared;
        }
        box_of[i] = b;
        (*boxes)[b].count++;
        if (!(*boxes)[b].kernel) (*boxes)[b].kernel = f->nodes[i].kernel;
    }
    free(param_box);
    free(key);
    return nbox;
}

static int cmp_edge(const void *a, const void *b) {
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* A node, box or stub reference (see dot_func's edges). */
static void ref_print(FILE *out, size_t fi, int r, int n, int nbox) {
    if (r < n)
        fprintf(out, "f%zu_n%d", fi, r);
    else if (r < n + nbox)
        fprintf(out, "f%zu_b%d", fi, r - n);
    else
        fprintf(out, "f%zu_s%d", fi, r - n - nbox);
}

static void dot_func(FILE *out, const struct ir_module *m, const struct ir_func *f, size_t fi,
                     const struct ir_dot_options *o, struct src_map **maps) {
    int n = ir_func_len(f);
    unsigned want = o->phases ? o->phases : PHASE_FORWARD | PHASE_BACKWARD | PHASE_OPTIMIZER;
    unsigned char *ph = malloc((size_t)n + 1);
    int *uoff = calloc((size_t)n + 2, sizeof *uoff), *users = NULL,
        *box_of = malloc(sizeof(int) * ((size_t)n + 1));
    int *rep = malloc(sizeof(int) * ((size_t)n + 1)); /* what stands for node i: node id, or -2-box */
    struct item *items = calloc((size_t)n + 1, sizeof *items);
    struct box *boxes = NULL;
    if (!ph || !uoff || !box_of || !rep || !items) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    ir_dot_phases(f, ph);
    /* Scalar constants are not drawn but inlined into their users' labels,
     * unless they are outputs. */
    bool *hidden = calloc((size_t)n + 1, sizeof *hidden);
    if (!hidden) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    for (int i = 0; i < n; i++) hidden[i] = inlined(&f->nodes[i]);
    for (size_t q = 0; q < vec_len(f->outputs); q++)
        if (f->outputs[q].value >= 0 && f->outputs[q].value < n) hidden[f->outputs[q].value] = false;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < f->nodes[i].nargs; k++)
            if (f->nodes[i].args[k] >= 0 && f->nodes[i].args[k] < i) uoff[f->nodes[i].args[k] + 1]++;
    for (int i = 0; i < n; i++) uoff[i + 1] += uoff[i];
    users = malloc(sizeof *users * ((size_t)uoff[n] + 1));
    int *fill = calloc((size_t)n + 1, sizeof *fill);
    if (!users || !fill) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    for (int i = 0; i < n; i++)
        for (int k = 0; k < f->nodes[i].nargs; k++) {
            int a = f->nodes[i].args[k];
            if (a >= 0 && a < i) users[uoff[a] + fill[a]++] = i;
        }
    free(fill);
    for (int i = 0; i < n; i++) box_of[i] = -1;
    int nbox = o->expand || f->mode != MODE_TRAIN ? 0 : make_boxes(m, f, ph, uoff, users, box_of, &boxes);

    /* The items, in node order; a box appears once, at its first member. */
    int nitems = 0;
    for (int i = 0; i < n; i++) {
        rep[i] = box_of[i] >= 0 ? -2 - box_of[i] : i;
        if (hidden[i] || !(ph[i] & want)) continue;
        if (box_of[i] >= 0 && boxes[box_of[i]].first != i) continue;
        items[nitems++] = (struct item){i, box_of[i], ph[i], src_line_of(maps, f->nodes[i].loc)};
    }

    /* Edges between what is drawn (refs: node i, n + box, n + nbox + i for the
     * stub of forward value i in the backward pass). A value of a phase left
     * out is drawn as a dashed stub (stub[i] 1); so is a forward value the
     * backward pass reads (stub[i] 2, drawn in the backward cluster): with the
     * activations' edges between the two passes, dot lays large graphs out for
     * minutes, and the graph reads the same. */
    int64_t *edges = NULL;
    unsigned char *stub = calloc((size_t)n + 1, 1);
    for (int i = 0; i < n && stub; i++) {
        if (hidden[i] || !(ph[i] & want)) continue;
        int ri = rep[i] >= 0 ? rep[i] : n + (-2 - rep[i]);
        for (int k = 0; k < f->nodes[i].nargs; k++) {
            int a = f->nodes[i].args[k];
            if (a < 0 || a >= i || hidden[a] || rep[a] == rep[i]) continue;
            int ra = rep[a] >= 0 ? rep[a] : n + (-2 - rep[a]);
            if (!(ph[a] & want)) {
                stub[a] = 1;
                ra = a;
            } else if (ph[a] == PHASE_FORWARD && ph[i] == PHASE_BACKWARD) {
                stub[a] |= 2;
                ra = n + nbox + a;
            }
            vec_push(edges, ((int64_t)ra << 32) | (int64_t)ri);
        }
    }

    fputs("  subgraph \"cluster_", out);
    dot_text(out, f->name);
    fputs("\" {\n    label=\"@", out);
    dot_text(out, f->name);
    fprintf(out, " (%s)\";\n", f->mode == MODE_TRAIN ? "train" : "eval");
    /* Clusters: phase (training functions), net, layer (source line). */
    unsigned char *done = calloc((size_t)nitems + 1, 1);
    for (unsigned p = PHASE_FORWARD; p <= PHASE_OPTIMIZER && done; p <<= 1) {
        bool any = false;
        for (int k = 0; k < nitems && !any; k++) any = items[k].phase == p;
        if (!any) continue;
        bool phased = f->mode == MODE_TRAIN;
        if (phased) {
            fprintf(out, "    subgraph cluster_f%zu_p%u {\n      label=\"%s\"; style=dashed;\n", fi, p,
                    phase_name(p));
            if (p == PHASE_OPTIMIZER && f->optim.kind) {
                fputs("      label=\"optimizer: ", out);
                dot_text(out, f->optim.kind);
                fputs("\";\n", out);
            }
        }
        for (int k = 0; k < nitems; k++) {
            if (done[k] || items[k].phase != p) continue;
            const struct src_line *at = items[k].at;
            const char *net = at ? at->net : NULL;
            int net_len = at ? at->net_len : 0;
            if (net) {
                fprintf(out, "      subgraph cluster_f%zu_p%u_i%d {\n        label=\"net ", fi, p, k);
                dot_textn(out, net, (size_t)net_len);
                fputs("\"; style=rounded;\n", out);
            }
            /* Every line of this net (or of the top level) in this phase. */
            for (int j = k; j < nitems; j++) {
                const struct src_line *aj = items[j].at;
                const char *nj = aj ? aj->net : NULL;
                if (done[j] || items[j].phase != p || nj != net) continue;
                if (aj && aj->len > 0) {
                    fprintf(out, "        subgraph cluster_f%zu_p%u_l%d {\n          label=\"", fi, p, j);
                    dot_textn(out, aj->text, (size_t)(aj->len > 48 ? 48 : aj->len));
                    fprintf(out, "%s\"; style=solid; color=gray;\n", aj->len > 48 ? "..." : "");
                }
                for (int q = j; q < nitems; q++) {
                    if (done[q] || items[q].phase != p || items[q].at != aj) continue;
                    item_draw(out, m, f, fi, &items[q], boxes, "          ");
                    done[q] = 1;
                }
                if (aj && aj->len > 0) fputs("        }\n", out);
            }
            if (net) fputs("      }\n", out);
        }
        for (int i = 0; i < n && p == PHASE_BACKWARD && stub; i++)
            if (stub[i] & 2)
                fprintf(out, "      f%zu_s%d [style=dashed, label=\"%%%d %s (forward)\"];\n", fi, i, i,
                        valid_op(&f->nodes[i]) ? op_info[f->nodes[i].op].name : "?");
        if (phased) fputs("    }\n", out);
    }
    for (int i = 0; i < n && stub; i++)
        if (stub[i] & 1)
            fprintf(out, "    f%zu_n%d [style=dashed, label=\"%%%d %s (%s)\"];\n", fi, i, i,
                    valid_op(&f->nodes[i]) ? op_info[f->nodes[i].op].name : "?", phase_name(ph[i]));
    free(done);

    /* Edges, drawn once each. */
    if (edges) qsort(edges, vec_len(edges), sizeof *edges, cmp_edge);
    for (size_t e = 0; e < vec_len(edges); e++) {
        if (e && edges[e] == edges[e - 1]) continue;
        int ra = (int)(edges[e] >> 32), rb = (int)(edges[e] & 0xffffffff);
        fputs("    ", out);
        ref_print(out, fi, ra, n, nbox);
        fputs(" -> ", out);
        ref_print(out, fi, rb, n, nbox);
        /* Edges into the optimizer (the gradients) do not rank the layout. */
        int na = ra < n ? ra : ra < n + nbox ? boxes[ra - n].first : ra - n - nbox;
        int nb = rb < n ? rb : boxes[rb - n].first;
        fputs(ph[nb] == PHASE_OPTIMIZER && ph[na] != PHASE_OPTIMIZER && ra < n + nbox
                  ? " [constraint=false, color=gray];\n"
                  : ";\n",
              out);
    }
    vec_free(edges);
    free(stub);
    for (size_t q = 0; q < vec_len(f->outputs); q++) {
        int v = f->outputs[q].value;
        if (v < 0 || v >= n || !(ph[v] & want)) continue;
        fprintf(out, "    f%zu_out%zu [shape=ellipse, label=\"", fi, q);
        dot_text(out, f->outputs[q].name);
        if (f->loss && f->outputs[q].name && strcmp(f->loss, f->outputs[q].name) == 0) fputs(" (loss)", out);
        fputs("\"];\n", out);
        if (rep[v] >= 0)
            fprintf(out, "    f%zu_n%d -> f%zu_out%zu;\n", fi, rep[v], fi, q);
        else
            fprintf(out, "    f%zu_b%d -> f%zu_out%zu;\n", fi, -2 - rep[v], fi, q);
    }
    fputs("  }\n", out);
    free(ph);
    free(hidden);
    free(uoff);
    free(users);
    free(box_of);
    free(rep);
    free(items);
    free(boxes);
}

void ir_print_dot_opts(FILE *out, const struct ir_module *m, const struct ir_dot_options *o) {
    struct src_map *maps = NULL;
    fputs("digraph \"", out);
    dot_text(out, m->name);
    fputs("\" {\n  node [shape=box, fontname=\"monospace\"];\n  compound=true;\n", out);
    for (size_t i = 0; i < vec_len(m->funcs); i++)
        if (!o->func || strcmp(o->func, m->funcs[i]->name) == 0) dot_func(out, m, m->funcs[i], i, o, &maps);
    fputs("}\n", out);
    for (size_t i = 0; i < vec_len(maps); i++) free(maps[i].lines);
    vec_free(maps);
}

void ir_print_dot(FILE *out, const struct ir_module *m) {
    struct ir_dot_options o = {0, NULL, false};
    ir_print_dot_opts(out, m, &o);
}
