/* ir/print.c -- the IR text printer, in the form docs/ir.md defines and ir_parse
 * reads back: the module header, buffers, then each function's nodes and outputs.
 * Names that are not plain identifiers print as quoted strings; floats print with
 * %.9g; a node's kernel and its place in the memory plan print after its type when
 * it has them (a planned function's workspace in its header); locations print only
 * after ir_print_set_locs(true). */
#include "ir/ir.h"

#include <string.h>

static bool print_locs; /* print `loc("file":line:col)` after each node's type */

void ir_print_set_locs(bool on) { print_locs = on; }

/* [A-Za-z_][A-Za-z0-9_.]*: what the parser reads as a bare NAME. */
static bool is_ident(const char *s) {
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
    for (s++; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '.'))
            return false;
    return true;
}

/* A quoted string with C escapes: \" \\ and \xNN for every byte outside ' '..'~'. */
static void print_string(FILE *out, const char *s) {
    fputc('"', out);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\x%02x", c);
        else
            fputc(c, out);
    }
    fputc('"', out);
}

/* A NAME: bare when it is an identifier, else quoted. */
static void print_name(FILE *out, const char *s) {
    if (s && is_ident(s))
        fputs(s, out);
    else
        print_string(out, s ? s : "");
}

static void print_num(FILE *out, double v) { fprintf(out, "%.9g", v); }

static void print_type(FILE *out, const struct type *t) {
    char buf[TYPE_STR_MAX];
    fputs(type_str(t, buf, sizeof buf), out);
}

/* Positional numbers and keyword options of a source or optimizer call. */
static void print_call_args(FILE *out, bool first, int nargs, const double *args, int nkw,
                            const char *const *kw, const double *kwval) {
    for (int i = 0; i < nargs; i++) {
        fputs(first ? "" : ", ", out);
        print_num(out, args[i]);
        first = false;
    }
    for (int i = 0; i < nkw; i++) {
        fputs(first ? "" : ", ", out);
        print_name(out, kw[i]);
        fputc('=', out);
        print_num(out, kwval[i]);
        first = false;
    }
}

static void print_source(FILE *out, const char *key, const struct ir_source *s) {
    if (!s->kind) return;
    fprintf(out, " %s=", key);
    print_name(out, s->kind);
    fputc('(', out);
    if (s->path) print_string(out, s->path);
    int nargs = s->nargs < 0 ? 0 : s->nargs > 2 ? 2 : s->nargs;
    int nkw = s->nkw < 0 ? 0 : s->nkw > IR_MAX_KW ? IR_MAX_KW : s->nkw;
    print_call_args(out, !s->path, nargs, s->args, nkw, s->kw, s->kwval);
    fputc(')', out);
}

static void print_init(FILE *out, const struct ir_init *init) {
    switch (init->kind) {
    case INIT_ZEROS:
        fputs(" init=zeros", out);
        break;
    case INIT_CONST:
        fputs(" init=const(", out);
        print_num(out, init->a);
        fputc(')', out);
        break;
    case INIT_UNIFORM:
    case INIT_NORMAL:
    case INIT_RANGE:
        fputs(init->kind == INIT_UNIFORM  ? " init=uniform("
              : init->kind == INIT_NORMAL ? " init=normal("
                                          : " init=range(",
              out);
        print_num(out, init->a);
        fputs(", ", out);
        print_num(out, init->b);
        fputc(')', out);
        break;
    default:
        fputs(" init=?", out);
        break;
    }
}

static void print_buffer(FILE *out, const struct ir_buffer *b) {
    static const char *const kinds[] = {"input", "param", "state"};
    fputs((unsigned)b->kind < 3 ? kinds[b->kind] : "?", out);
    fputs(" @", out);
    print_name(out, b->name);
    fputs(" : ", out);
    print_type(out, &b->type);
    if (b->kind == BUF_INPUT) {
        print_source(out, "data", &b->data);
        print_source(out, "test", &b->test);
    } else {
        print_init(out, &b->init);
        if (b->group) {
            fputs(" group=", out);
            print_name(out, b->group);
        }
    }
    fputc('\n', out);
}

/* The attributes of a node other than its symbol: `{stride=[1,1], groups=1}`. */
static void print_attrs(FILE *out, const struct ir_node *n) {
    const struct op_info *info = &op_info[n->op];
    bool first = true;
    for (int i = 0; i < info->nattrs; i++) {
        const struct attr_desc *a = &info->attrs[i];
        if (a->kind == AK_STR) continue;
        fputs(first ? " {" : ", ", out);
        first = false;
        fprintf(out, "%s=", a->name);
        const int64_t *v = &n->ia[a->slot];
        int count = a->count;
        switch (a->kind) {
        case AK_INT:
            fprintf(out, "%lld", (long long)v[0]);
            break;
        case AK_FLOAT:
            print_num(out, n->fa[a->slot]);
            break;
        case AK_LIST:
            count = v[0] < 0 ? 0 : v[0] > IR_MAX_LIST ? IR_MAX_LIST : (int)v[0];
            v++;
            /* fall through */
        case AK_INTS:
            fputc('[', out);
            for (int k = 0; k < count; k++) fprintf(out, "%s%lld", k ? "," : "", (long long)v[k]);
            fputc(']', out);
            break;
        case AK_STR:
            break;
        }
    }
    if (!first) fputc('}', out);
}

/* A node's place in the memory plan: ` mem=fixed[64]`, ` mem=batch[0]`,
 * ` mem=@buffer`, then ` scratch=fixed[128,4096]` (offset, floats). */
static void print_mem(FILE *out, const struct ir_module *m, const struct ir_mem *mem) {
    static const char *const region[] = {"none", "fixed", "batch", "buffer"};
    if (mem->where == MEM_BUFFER) {
        fputs(" mem=@", out);
        bool ok = m && mem->off >= 0 && (size_t)mem->off < vec_len(m->buffers);
        print_name(out, ok ? m->buffers[mem->off].name : "?");
    } else if (mem->where == MEM_FIXED || mem->where == MEM_BATCH) {
        fprintf(out, " mem=%s[%lld]", region[mem->where], (long long)mem->off);
    }
    if (mem->scratch_where == MEM_FIXED || mem->scratch_where == MEM_BATCH)
        fprintf(out, " scratch=%s[%lld,%lld]", region[mem->scratch_where], (long long)mem->scratch_off,
                (long long)mem->scratch);
}

static void print_node(FILE *out, const struct ir_module *m, const struct ir_func *f, int id) {
    const struct ir_node *n = &f->nodes[id];
    fprintf(out, "  %%%d = ", id);
    if ((unsigned)n->op >= OP_COUNT) {
        fprintf(out, "<bad op %d> : ", (int)n->op);
        print_type(out, &n->type);
        fputc('\n', out);
        return;
    }
    fputs(op_info[n->op].name, out);
    if (n->sym) {
        fputs(" @", out);
        print_name(out, n->sym);
    }
    if (n->nargs > 0) {
        fputc('(', out);
        for (int i = 0; i < n->nargs; i++) fprintf(out, "%s%%%d", i ? ", " : "", n->args[i]);
        fputc(')', out);
    }
    print_attrs(out, n);
    fputs(" : ", out);
    print_type(out, &n->type);
    if (n->kernel) fprintf(out, " kernel=%d", n->kernel);
    print_mem(out, m, &n->mem);
    if (print_locs && n->loc.file) {
        fputs(" loc(", out);
        print_string(out, n->loc.file);
        fprintf(out, ":%d:%d)", n->loc.line, n->loc.col);
    }
    fputc('\n', out);
}

/* ` KEY=[a,b]` for a non-empty vec of names. */
static void print_names(FILE *out, const char *key, const char *const *names) {
    if (!vec_len(names)) return;
    fprintf(out, " %s=[", key);
    for (size_t i = 0; i < vec_len(names); i++) {
        if (i) fputc(',', out);
        print_name(out, names[i]);
    }
    fputc(']', out);
}

void ir_print_func(FILE *out, const struct ir_module *m, const struct ir_func *f) {
    fputs("func @", out);
    print_name(out, f->name);
    fputs(f->mode == MODE_TRAIN ? " train" : " eval", out);
    if (f->loss) {
        fputs(" loss=", out);
        print_name(out, f->loss);
    }
    if (f->optim.kind) {
        fputs(" optimizer=", out);
        print_name(out, f->optim.kind);
        fputc('(', out);
        int nkw = f->optim.nkw < 0 ? 0 : f->optim.nkw > IR_MAX_OPT_KW ? IR_MAX_OPT_KW : f->optim.nkw;
        print_call_args(out, true, 0, NULL, nkw, f->optim.kw, f->optim.kwval);
        fputc(')', out);
        print_source(out, "schedule", &f->optim.schedule);
    }
    print_names(out, "update", f->update);
    print_names(out, "steps", f->steps);
    if (f->planned) fprintf(out, " workspace=[%lld,%lld]", (long long)f->ws_fixed, (long long)f->ws_batch);
    fputs(" {\n", out);
    for (int i = 0; i < ir_func_len(f); i++) print_node(out, m, f, i);
    fputs("  return", out);
    for (size_t i = 0; i < vec_len(f->outputs); i++) {
        fputs(i ? ", " : " ", out);
        print_name(out, f->outputs[i].name);
        fprintf(out, "=%%%d", f->outputs[i].value);
    }
    fputs("\n}\n", out);
}

void ir_print(FILE *out, const struct ir_module *m) {
    fputs("module ", out);
    print_name(out, m->name);
    fputc('\n', out);
    const struct ir_train *t = &m->train;
    if (t->batch || t->epochs || t->seed || t->patience) {
        fprintf(out, "train batch=%lld epochs=%lld seed=%lld", (long long)t->batch, (long long)t->epochs,
                (long long)t->seed);
        if (t->patience) fprintf(out, " patience=%lld", (long long)t->patience);
        fputc('\n', out);
    }
    if (vec_len(m->buffers) > 0) fputc('\n', out);
    for (size_t i = 0; i < vec_len(m->buffers); i++) print_buffer(out, &m->buffers[i]);
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        fputc('\n', out);
        ir_print_func(out, m, m->funcs[i]);
    }
}
