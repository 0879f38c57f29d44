/* codegen/llvm_desc.c -- the model descriptor (struct nrt_model of netrt.h and
 * the tables it points to) as LLVM constants, the same data c_emit.c prints as
 * C. Each table is built as the real C struct in memory (so the layout is the C
 * compiler's, with no second copy of netrt.h's structs to keep in step); its
 * pointer fields are recorded as relocations to other globals (strings, tables,
 * the entry points) and the bytes become a packed LLVM struct of byte runs and
 * pointers. The layer table comes from c_summary.c's printed rows. */
#include "codegen/llvm.h"

#include "runtime/netrt.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One table being built: its bytes and the pointers inside them. */
struct blob {
    unsigned char *data; /* the C struct(s), pointer fields left NULL */
    size_t size;         /* bytes */
    size_t *roff;        /* vec: byte offsets of pointer fields set */
    LLVMValueRef *rval;  /* vec, parallel: what they point to (i8 *) */
};

static void *blob_init(struct blob *b, size_t size) {
    b->data = calloc(size ? size : 1, 1);
    if (!b->data) NETC_INTERNAL("out of memory");
    b->size = size;
    b->roff = NULL;
    b->rval = NULL;
    return b->data;
}

/* The pointer field at `field` (inside b->data) points to v (NULL: stays NULL). */
static void blob_ptr(struct blob *b, const void *field, LLVMValueRef v) {
    if (!v) return;
    vec_push(b->roff, (size_t)((const unsigned char *)field - b->data));
    vec_push(b->rval, v);
}

/* The blob as a constant global (named, external, when name is not NULL);
 * returns it as i8 *. Frees the blob. */
static LLVMValueRef blob_global(struct lg *g, struct blob *b, const char *name) {
    size_t n = vec_len(b->roff);
    for (size_t i = 1; i < n; i++) /* sort the relocations by offset */
        for (size_t j = i; j > 0 && b->roff[j - 1] > b->roff[j]; j--) {
            size_t t = b->roff[j];
            LLVMValueRef v = b->rval[j];
            b->roff[j] = b->roff[j - 1], b->rval[j] = b->rval[j - 1];
            b->roff[j - 1] = t, b->rval[j - 1] = v;
        }
    LLVMValueRef *el = calloc(2 * n + 2, sizeof *el);
    if (!el) NETC_INTERNAL("out of memory");
    size_t at = 0, k = 0;
    for (size_t i = 0; i <= n; i++) {
        size_t end = i < n ? b->roff[i] : b->size;
        if (end > at)
            el[k++] = LLVMConstStringInContext(g->cx, (const char *)b->data + at, (unsigned)(end - at), 1);
        if (i < n) {
            for (size_t q = 0; q < sizeof(void *); q++)
                if (b->data[end + q]) NETC_INTERNAL("descriptor pointer field at %zu set in memory", end);
            el[k++] = LLVMConstBitCast(b->rval[i], g->p8);
            at = end + sizeof(void *);
        }
    }
    LLVMValueRef init = LLVMConstStructInContext(g->cx, el, (unsigned)k, 1);
    LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), name ? name : "desc");
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, name ? LLVMExternalLinkage : LLVMPrivateLinkage);
    LLVMSetAlignment(gv, 16);
    free(el);
    free(b->data);
    vec_free(b->roff);
    vec_free(b->rval);
    return LLVMConstBitCast(gv, g->p8);
}

/* A C string constant as i8 *, or NULL for NULL. */
static LLVMValueRef str(struct lg *g, const char *s) {
    if (!s) return NULL;
    LLVMValueRef init = LLVMConstStringInContext(g->cx, s, (unsigned)strlen(s), 0);
    LLVMValueRef gv = LLVMAddGlobal(g->mod, LLVMTypeOf(init), "str");
    LLVMSetInitializer(gv, init);
    LLVMSetGlobalConstant(gv, 1);
    LLVMSetLinkage(gv, LLVMPrivateLinkage);
    LLVMSetUnnamedAddress(gv, LLVMGlobalUnnamedAddr);
    return LLVMConstBitCast(gv, g->p8);
}

static enum nrt_dtype dtype_of(enum dtype t) { return t == DT_I32 ? NRT_DT_I32 : NRT_DT_F32; }

static void put_dims(int64_t *dims, const struct shape *s) {
    for (int i = 0; i < s->rank && i < IR_MAX_RANK && i < NRT_MAX_RANK; i++) dims[i] = s->dim[i];
}

static void put_source(struct lg *g, struct blob *b, struct nrt_source_desc *d, const struct ir_source *s) {
    if (!s->kind) return;
    blob_ptr(b, &d->kind, str(g, s->kind));
    blob_ptr(b, &d->path, str(g, s->path));
    d->nargs = s->nargs;
    d->args[0] = s->nargs > 0 ? s->args[0] : 0.0;
    d->args[1] = s->nargs > 1 ? s->args[1] : 0.0;
    d->nkw = s->nkw;
    for (int i = 0; i < s->nkw && i < NRT_MAX_SOURCE_KW; i++) {
        blob_ptr(b, &d->kw[i], str(g, s->kw[i]));
        d->kwval[i] = s->kwval[i];
    }
}

/* "adam(lr=0.001, ...)" as c_emit.c's put_optim writes it. */
static LLVMValueRef optim_str(struct lg *g, const struct ir_optim *o) {
    if (!o->kind) return NULL;
    char text[1024];
    int k = snprintf(text, sizeof text, "%s(", o->kind);
    for (int i = 0; i < o->nkw && k < (int)sizeof text - 40; i++)
        k += snprintf(text + k, sizeof text - (size_t)k, "%s%s=%g", i ? ", " : "", o->kw[i], o->kwval[i]);
    if (k < (int)sizeof text - 2) snprintf(text + k, sizeof text - (size_t)k, ")");
    return str(g, text);
}

static bool reads_input(const struct ir_func *f, const struct ir_buffer *b) {
    if (b->kind != BUF_INPUT) return false;
    for (int id = 0; id < ir_func_len(f); id++)
        if (f->nodes[id].op == OP_INPUT && strcmp(f->nodes[id].sym, b->name) == 0) return true;
    return false;
}

/* A C string literal of c_summary.c's rows at *p (cgc_put_str's escapes) into
 * buf; advances *p past it. False when *p holds no literal. */
static bool read_literal(const char **p, char *buf, size_t len) {
    const char *s = *p;
    while (*s == ' ' || *s == ',') s++;
    if (*s != '"') return false;
    size_t k = 0;
    for (s++; *s && *s != '"'; s++) {
        int ch = (unsigned char)*s;
        if (*s == '\\' && s[1] >= '0' && s[1] <= '7') {
            ch = (s[1] - '0') * 64 + (s[2] - '0') * 8 + (s[3] - '0');
            s += 3;
        } else if (*s == '\\') {
            ch = (unsigned char)*++s;
        }
        if (k + 1 < len) buf[k++] = (char)ch;
    }
    buf[k] = '\0';
    *p = *s ? s + 1 : s;
    return true;
}

/* The layer table: c_summary.c's rows, read back from the C it prints (one row
 * per line: {"op", "name", NRT_DT_X, rank, {dims}, params, flops},). */
static LLVMValueRef layers(struct lg *g, struct cgc_layers *sum) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    if (!f) NETC_INTERNAL("out of memory");
    cgc_emit_layers(g->m, f, sum);
    if (fclose(f) != 0 || !text) NETC_INTERNAL("out of memory");
    struct blob b;
    struct nrt_layer_desc *rows = blob_init(&b, sizeof *rows * (size_t)(sum->n > 0 ? sum->n : 1));
    int r = 0;
    for (char *line = strstr(text, "\n    {\""); line && r < sum->n; line = strstr(line + 1, "\n    {\"")) {
        const char *p = line + 6;
        char op[128], name[256], dt[16];
        int rank = 0, used = 0;
        if (!read_literal(&p, op, sizeof op) || !read_literal(&p, name, sizeof name) ||
            sscanf(p, ", %15[A-Z0-9_], %d, {%n", dt, &rank, &used) < 2)
            NETC_INTERNAL("unexpected layer row: %.60s", line + 1);
        p += used;
        struct nrt_layer_desc *d = &rows[r++];
        blob_ptr(&b, &d->op, str(g, op));
        blob_ptr(&b, &d->name, str(g, name));
        d->dtype = strcmp(dt, "NRT_DT_I32") == 0 ? NRT_DT_I32 : NRT_DT_F32;
        d->rank = rank;
        for (int i = 0; i < (rank ? rank : 1); i++) {
            long long v = 0;
            if (sscanf(p, " %lld%n", &v, &used) < 1) NETC_INTERNAL("unexpected layer row: %.60s", line + 1);
            p += used + 1; /* the number and its ',' or '}' */
            if (i < rank && i < NRT_MAX_RANK) d->dims[i] = v;
        }
        double params = 0, flops = 0;
        if (sscanf(p, ", %lf, %lf", &params, &flops) < 2)
            NETC_INTERNAL("unexpected layer row: %.60s", line + 1);
        d->params = (int64_t)params;
        d->flops = flops;
    }
    if (r != sum->n) NETC_INTERNAL("read %d of %d layer rows", r, sum->n);
    free(text);
    return blob_global(g, &b, NULL);
}

void lg_descriptor(struct lg *g, LLVMValueRef *entry, const size_t *ws_fixed, const size_t *ws_per_n,
                   const struct cg_options *opt) {
    const struct ir_module *m = g->m;
    size_t nb = vec_len(m->buffers), nf = vec_len(m->funcs);
    static const enum nrt_buf_kind kinds[] = {NRT_BUF_INPUT, NRT_BUF_PARAM, NRT_BUF_STATE};
    static const enum nrt_init_kind inits[] = {NRT_INIT_ZEROS, NRT_INIT_CONST, NRT_INIT_UNIFORM,
                                               NRT_INIT_NORMAL, NRT_INIT_RANGE};
    struct blob bb;
    struct nrt_buffer_desc *bufs = blob_init(&bb, sizeof *bufs * (nb ? nb : 1));
    for (size_t i = 0; i < nb; i++) {
        const struct ir_buffer *b = &m->buffers[i];
        struct nrt_buffer_desc *d = &bufs[i];
        blob_ptr(&bb, &d->name, str(g, b->name));
        d->kind = kinds[b->kind];
        d->dtype = dtype_of(b->type.dtype);
        d->rank = b->type.shape.rank;
        put_dims(d->dims, &b->type.shape);
        d->init = inits[b->init.kind];
        d->init_a = b->init.a;
        d->init_b = b->init.b;
        blob_ptr(&bb, &d->group, str(g, b->group));
        put_source(g, &bb, &d->data, &b->data);
        put_source(g, &bb, &d->test, &b->test);
    }
    LLVMValueRef buffers = blob_global(g, &bb, NULL);
    struct blob eb;
    struct nrt_entry_desc *ents = blob_init(&eb, sizeof *ents * (nf ? nf : 1));
    for (size_t e = 0; e < nf; e++) {
        const struct ir_func *f = m->funcs[e];
        struct blob ob, ib;
        size_t no = vec_len(f->outputs);
        struct nrt_output_desc *outs = blob_init(&ob, sizeof *outs * (no ? no : 1));
        for (size_t o = 0; o < no; o++) {
            const struct type *t = &f->nodes[f->outputs[o].value].type;
            blob_ptr(&ob, &outs[o].name, str(g, f->outputs[o].name));
            outs[o].dtype = dtype_of(t->dtype);
            outs[o].rank = t->shape.rank;
            put_dims(outs[o].dims, &t->shape);
        }
        int *ins = blob_init(&ib, sizeof *ins * (nb ? nb : 1)), nin = 0;
        for (size_t i = 0; i < nb; i++)
            if (reads_input(f, &m->buffers[i])) ins[nin++] = (int)i;
        if (!nin) ins[0] = -1;
        struct nrt_entry_desc *d = &ents[e];
        blob_ptr(&eb, &d->name, str(g, f->name));
        d->mode = f->mode == MODE_TRAIN ? NRT_MODE_TRAIN : NRT_MODE_EVAL;
        blob_ptr(&eb, &d->loss, str(g, f->loss));
        blob_ptr(&eb, &d->optimizer, optim_str(g, &f->optim));
        put_source(g, &eb, &d->schedule, &f->optim.schedule);
        d->n_outputs = (int)no;
        blob_ptr(&eb, &d->outputs, blob_global(g, &ob, NULL));
        d->n_inputs = nin;
        blob_ptr(&eb, &d->inputs, blob_global(g, &ib, NULL));
        blob_ptr(&eb, &d->run, entry[e]);
        d->ws_fixed = ws_fixed[e];
        d->ws_per_n = ws_per_n[e];
        struct cgc_roles r = cgc_entry_roles(m, f);
        d->loss_output = r.loss_output;
        d->accuracy_output = r.accuracy_output;
        d->lr_buffer = r.lr_buffer;
    }
    LLVMValueRef entries = blob_global(g, &eb, NULL);
    struct cgc_layers sum;
    LLVMValueRef lays = layers(g, &sum);
    struct blob mb;
    struct nrt_model *md = blob_init(&mb, sizeof *md);
    blob_ptr(&mb, &md->name, str(g, m->name));
    blob_ptr(&mb, &md->netc_version, str(g, opt->netc_version ? opt->netc_version : "unknown"));
    md->n_buffers = (int)nb;
    blob_ptr(&mb, &md->buffers, buffers);
    md->n_entries = (int)nf;
    blob_ptr(&mb, &md->entries, entries);
    md->batch = m->train.batch, md->epochs = m->train.epochs, md->seed = m->train.seed;
    md->patience = m->train.patience;
    md->n_layers = sum.n;
    blob_ptr(&mb, &md->layers, lays);
    md->train_flops = sum.train_flops;
    md->train_flops_fixed = sum.train_fixed;
    cgc_model_roles(m, &md->forward_entry, &md->evaluate_entry, &md->generate_entry, &md->batch_entry);
    blob_ptr(&mb, &md->target, str(g, "llvm")); /* host memory: no device layer */
    blob_ptr(&mb, &md->runtime_hash, str(g, nrt_runtime_hash));
    LLVMValueRef model = blob_global(g, &mb, "netc_model");
    if (!opt->main) return;
    /* int main(int argc, char **argv) { return nrt_main(argc, argv, &netc_model); } */
    LLVMTypeRef pp8 = LLVMPointerType(g->p8, 0), mp[2] = {g->i32, pp8};
    LLVMValueRef fn = LLVMAddFunction(g->mod, "main", LLVMFunctionType(g->i32, mp, 2, 0));
    g->fn = fn;
    LLVMPositionBuilderAtEnd(g->b, LLVMAppendBasicBlockInContext(g->cx, fn, "entry"));
    LLVMTypeRef np[3] = {g->i32, pp8, g->p8};
    LLVMValueRef args[3] = {LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), model};
    LLVMBuildRet(g->b, lg_call(g, "nrt_main", g->i32, np, 3, args));
}
