/* ir/dot.c -- the Graphviz DOT printer: one `cluster_<func>` subgraph per function,
 * a box per node labelled `%i op @sym`, its type and its attributes, edges from
 * operand to user, and each output as an ellipse fed by its value; kernel members
 * are filled with a colour per kernel. Node ids are f<func>_n<node> so no user
 * name reaches the DOT syntax unescaped. */
#include "ir/ir.h"

#include <string.h>

/* Text inside a DOT double-quoted string: escape `"` and `\`, make other control and
 * non-ASCII bytes visible as \xNN (with the backslash itself escaped). */
static void dot_text(FILE *out, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(out, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            fprintf(out, "\\\\x%02x", c);
        else
            fputc(c, out);
    }
}

static void dot_attrs(FILE *out, const struct ir_node *n) {
    const struct op_info *info = &op_info[n->op];
    bool first = true;
    for (int i = 0; i < info->nattrs; i++) {
        const struct attr_desc *a = &info->attrs[i];
        if (a->kind == AK_STR) continue;
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

static void dot_func(FILE *out, const struct ir_func *f, size_t fi) {
    char t[TYPE_STR_MAX];
    fputs("  subgraph \"cluster_", out);
    dot_text(out, f->name);
    fputs("\" {\n    label=\"@", out);
    dot_text(out, f->name);
    fprintf(out, " (%s)\";\n", f->mode == MODE_TRAIN ? "train" : "eval");
    int len = ir_func_len(f);
    for (int i = 0; i < len; i++) {
        const struct ir_node *n = &f->nodes[i];
        bool valid = (unsigned)n->op < OP_COUNT;
        fprintf(out, "    f%zu_n%d [label=\"%%%d %s", fi, i, i, valid ? op_info[n->op].name : "?");
        if (n->sym) {
            fputs(" @", out);
            dot_text(out, n->sym);
        }
        fputs("\\n", out);
        dot_text(out, type_str(&n->type, t, sizeof t));
        if (valid) dot_attrs(out, n);
        if (n->kernel) fprintf(out, "\\nkernel %d", n->kernel);
        fputs("\"", out);
        if (n->kernel) fprintf(out, ", style=filled, fillcolor=\"/pastel19/%d\"", n->kernel % 9 + 1);
        else if (valid && (op_info[n->op].flags & OF_EFFECT)) fputs(", style=bold", out);
        else if (valid && op_info[n->op].kind == OK_LEAF) fputs(", style=rounded", out);
        fputs("];\n", out);
    }
    for (int i = 0; i < len; i++) {
        const struct ir_node *n = &f->nodes[i];
        for (int k = 0; k < n->nargs; k++)
            if (n->args[k] >= 0 && n->args[k] < len) fprintf(out, "    f%zu_n%d -> f%zu_n%d;\n", fi, n->args[k], fi, i);
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        fprintf(out, "    f%zu_out%zu [shape=ellipse, label=\"", fi, o);
        dot_text(out, f->outputs[o].name);
        if (f->loss && f->outputs[o].name && strcmp(f->loss, f->outputs[o].name) == 0) fputs(" (loss)", out);
        fputs("\"];\n", out);
        int v = f->outputs[o].value;
        if (v >= 0 && v < len) fprintf(out, "    f%zu_n%d -> f%zu_out%zu;\n", fi, v, fi, o);
    }
    fputs("  }\n", out);
}

void ir_print_dot(FILE *out, const struct ir_module *m) {
    fputs("digraph \"", out);
    dot_text(out, m->name);
    fputs("\" {\n  node [shape=box, fontname=\"monospace\"];\n", out);
    for (size_t i = 0; i < vec_len(m->funcs); i++) dot_func(out, m->funcs[i], i);
    fputs("}\n", out);
}
