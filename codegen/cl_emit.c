/* codegen/cl_emit.c -- the OpenCL backend's frame (--target=opencl). It reads
 * the memory plan and the kernels of the IR (made by memplan and fuse for this
 * target; cgc_layout) as the C backend does, and prints one host C function
 * per entry point: upload the inputs it reads and the state, then per node one
 * kernel launch or runtime library call (cl_ops.c), device copies for the
 * assignments, downloads of the outputs into host staging (ctx->ws at the slot's
 * own offset) and dev_dirty after a training step. The OpenCL C program of all
 * entry points is embedded as a string literal with its kernel names
 * (`cl_program`, the descriptor's last field). */
#include "codegen/codegen.h"

#include <string.h>

/* The body of the comment atop a generated OpenCL host file. */
static const char cl_about[] =
    " * One host function per entry point uploads the inputs, launches one OpenCL\n"
    " * kernel per value or fused kernel (e<E>_n<id>, e<E>_k<K>) or a runtime\n"
    " * library op on the device arena, and downloads the outputs; the OpenCL C\n"
    " * program (cl_source) and the descriptor follow. Link with libnetrt_cl.a\n"
    " * libnetrt.a -lOpenCL. */\n";

/* Every kernel of f is one this backend fuses: fuse planned for it. */
static void check_kernels(const struct ir_func *f) {
    for (int id = 0; id < ir_func_len(f); id++)
        if (f->nodes[id].kernel > 0 && !clc_kernel_supported(f, f->nodes[id].kernel))
            NETC_INTERNAL(
                "kernel %d of @%s is not one the OpenCL backend fuses: fuse formed it for another target",
                f->nodes[id].kernel, f->name);
}

/* -------------------------------------------------------------- entries */

/* The node a value's storage belongs to (through aliases). */
static int storage_of(const struct cgc *c, int id) {
    while (c->vals[id].alias >= 0) id = c->vals[id].alias;
    return id;
}

/* The host expression of a slot's element offset in the arena. */
static void slot_off(const struct cgc *c, bool per_n, size_t off, char *buf, size_t len) {
    if (per_n)
        snprintf(buf, len, "W + %zu + %zu * mn", c->fixed_total / 4, off / 4);
    else
        snprintf(buf, len, "W + %zu", off / 4);
}

/* The host expression of a slot's byte offset in ctx->ws (output staging). */
static void slot_bytes(const struct cgc *c, bool per_n, size_t off, char *buf, size_t len) {
    if (per_n)
        snprintf(buf, len, "%zu + %zu * (size_t)mn", c->fixed_total, off);
    else
        snprintf(buf, len, "%zu", off);
}

/* Declares o<id> (and the scratch s<sid>) for node id. */
static void declare(struct cgc *c, int id, const struct cgc_kernel *kn) {
    const struct cgc_val *v = &c->vals[id];
    char where[128];
    if (v->buffer >= 0)
        cgc_emit(c, "const int64_t o%d = ctx->buf_off[%d];", id, v->buffer);
    else if (v->alias >= 0)
        cgc_emit(c, "const int64_t o%d = o%d;", id, v->alias);
    else {
        slot_off(c, v->per_n, v->off, where, sizeof where);
        cgc_emit(c, "const int64_t o%d = %s;", id, where);
    }
    if (v->uses == 0) cgc_emit(c, "(void)o%d;", id);
    int sid = kn ? kn->head : id;
    if (kn && kn->head >= 0)
        cgc_emit(c, "const int64_t o%d = o%d; /* the head computes into the root */", kn->head, id);
    if (sid >= 0 && c->vals[sid].scratch > 0) {
        const struct ir_node *sn = cgc_node(c, sid);
        bool conv = sn->op == OP_CONV2D || sn->op == OP_CONV2D_GRAD_INPUT ||
                    sn->op == OP_CONV2D_GRAD_WEIGHT || sn->op == OP_CONV_TRANSPOSE2D;
        if (conv) {
            slot_off(c, c->vals[sid].scratch_n, c->vals[sid].scratch_off, where, sizeof where);
            cgc_emit(c, "const int64_t s%d = %s;", sid, where);
        }
    }
}

/* Uploads the model inputs f reads, n items each. */
static void upload_inputs(struct cgc *c) {
    const struct ir_module *m = c->m;
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        bool reads = false;
        for (int id = 0; id < ir_func_len(c->f) && !reads && buf->kind == BUF_INPUT; id++)
            reads = c->f->nodes[id].op == OP_INPUT && strcmp(c->f->nodes[id].sym, buf->name) == 0;
        if (!reads) continue;
        char cnt[CGC_XSTR_MAX];
        cgc_emit(c, "nrt_cl_upload(ctx, ctx->buf_off[%zu], ctx->buf[%zu], sizeof(%s) * (size_t)(%s));", b, b,
                 cgc_ctype(buf->type.dtype), cgc_xstr(cgc_count(&buf->type.shape), cnt, sizeof cnt));
    }
}

/* Assigned values into their buffers (on the device, after every kernel), and
 * the outputs down into host memory. */
static void emit_epilogue(struct clc *k) {
    struct cgc *c = &k->c;
    const struct ir_func *f = c->f;
    for (int id = 0; id < ir_func_len(f); id++) {
        const struct ir_node *n = &f->nodes[id];
        if (n->op != OP_ASSIGN) continue;
        int b = cgc_buffer_index(c->m, n->sym);
        char cnt[CGC_XSTR_MAX];
        cgc_emit(c, "if (o%d != ctx->buf_off[%d]) {", id, b);
        cgc_emit(
            c,
            "    const struct nrt_cl_arg a[] = {{NRT_CL_ARENA, 0, 0}, {NRT_CL_LONG, ctx->buf_off[%d], 0}, "
            "{NRT_CL_LONG, o%d, 0}, {NRT_CL_LONG, %s, 0}};",
            b, id, cgc_xstr(cgc_count(&n->type.shape), cnt, sizeof cnt));
        cgc_emit(c, "    const size_t g[1] = {(size_t)(%s)};", cnt);
        cgc_emit(c, "    nrt_cl_launch(ctx, 0, 1, g, NULL, 4, a);");
        cgc_emit(c, "}");
    }
    for (size_t o = 0; o < vec_len(f->outputs); o++) {
        int id = f->outputs[o].value, s = storage_of(c, id);
        const struct ir_node *n = &f->nodes[id];
        const struct cgc_val *v = &c->vals[s];
        char cnt[CGC_XSTR_MAX], where[128];
        cgc_xstr(cgc_count(&n->type.shape), cnt, sizeof cnt);
        if (v->buffer >= 0 && c->m->buffers[v->buffer].kind == BUF_INPUT) {
            cgc_emit(c, "ctx->out[%zu] = ctx->buf[%d];", o, v->buffer);
            continue;
        }
        if (v->buffer >= 0) { /* a parameter or state buffer: its host copy becomes the device's */
            cgc_emit(c, "nrt_cl_download(ctx, o%d, ctx->buf[%d], sizeof(%s) * (size_t)(%s));", id, v->buffer,
                     cgc_ctype(n->type.dtype), cnt);
            cgc_emit(c, "ctx->out[%zu] = ctx->buf[%d];", o, v->buffer);
            continue;
        }
        slot_bytes(c, v->per_n, v->off, where, sizeof where);
        cgc_emit(c, "nrt_cl_download(ctx, o%d, ws + %s, sizeof(%s) * (size_t)(%s));", id, where,
                 cgc_ctype(n->type.dtype), cnt);
        cgc_emit(c, "ctx->out[%zu] = ws + %s;", o, where);
    }
    if (f->mode == MODE_TRAIN) cgc_emit(c, "ctx->dev_dirty = 1;");
}

static void emit_entry(struct clc *k) {
    struct cgc *c = &k->c;
    const struct ir_func *f = c->f;
    int len = ir_func_len(f);
    cgc_emit(c, "static void entry_%d(struct nrt_ctx *ctx, int64_t n)", k->entry);
    cgc_emit(c, "{");
    c->indent++;
    cgc_emit(c, "const int64_t W = ctx->ws_off, mn = ctx->max_n;");
    cgc_emit(c, "char *const ws = ctx->ws;");
    cgc_emit(c, "(void)W, (void)mn, (void)ws, (void)n;");
    upload_inputs(c);
    cgc_emit(c, "nrt_cl_upload_state(ctx);");
    for (int id = 0; id < len; id++) {
        const struct cgc_val *v = &c->vals[id];
        const struct cgc_kernel *kn = v->kernel >= 0 ? &c->kernels[v->kernel] : NULL;
        cg_node_comment(c, id);
        if (kn && kn->root != id) {                              /* computed by its kernel, at the root */
            if (cgc_kernel_stores(kn, id)) declare(c, id, NULL); /* a member used after the kernel */
            continue;
        }
        declare(c, id, kn);
        if (kn) cgc_kernel_comment(c, kn);
        if (kn)
            clc_kernel_emit(k, kn);
        else
            clc_op_emit(k, id);
    }
    emit_epilogue(k);
    c->indent--;
    cgc_emit(c, "}");
    cgc_emit(c, "%s", "");
}

/* ------------------------------------------------------------- program */

/* The OpenCL source as a C string literal, one source line per literal line
 * ("...\n"); quotes, backslashes, '?' and other bytes escaped as cgc_put_str does. */
static void put_source(FILE *out, const char *src) {
    fputs("static const char cl_source[] =\n", out);
    for (const char *p = src; *p;) {
        size_t len = strcspn(p, "\n");
        fputs("    \"", out);
        cgc_put_chars(out, p, len);
        fputs("\\n\"\n", out);
        p += len;
        if (*p) p++;
    }
    fputs("    \"\";\n\n", out);
}

static void put_program(FILE *out, const char *src, char **names) {
    put_source(out, src);
    fputs("static const char *const cl_kernel_names[] = {\n", out);
    for (size_t i = 0; i < vec_len(names); i++) {
        fputs("    ", out);
        cgc_put_str(out, names[i]);
        fputs(",\n", out);
    }
    fputs("};\n\n", out);
    fprintf(out, "static const struct nrt_cl_program cl_program = {cl_source, %zu, cl_kernel_names};\n\n",
            vec_len(names));
}

static bool emit_opencl(const struct ir_module *m, FILE *out, const struct cg_options *opt) {
    if (!cgc_check_module(m, "OpenCL")) return false;
    char *src_text = NULL;
    size_t src_len = 0;
    FILE *src = open_memstream(&src_text, &src_len);
    if (!src) netc_internal_error(__FILE__, __LINE__, "out of memory");
    clc_prologue(src);
    cg_file_head(out, m, opt, " for OpenCL", cl_about);
    size_t nf = vec_len(m->funcs);
    size_t *ws_fixed = calloc(nf + 1, sizeof *ws_fixed), *ws_per_n = calloc(nf + 1, sizeof *ws_per_n);
    if (!ws_fixed || !ws_per_n) netc_internal_error(__FILE__, __LINE__, "out of memory");
    char **names = NULL, **bodies = NULL;
    char *copy = strdup("netc_copy");
    if (!copy) netc_internal_error(__FILE__, __LINE__, "out of memory");
    vec_push(names, copy);
    for (size_t e = 0; e < nf; e++) {
        const struct ir_func *f = m->funcs[e];
        check_kernels(f);
        struct clc k = {.c = {out, 0, m, f, NULL, 0, 0, NULL, &cg_lang_opencl},
                        .src = src,
                        .entry = (int)e,
                        .names = names,
                        .bodies = bodies};
        cgc_layout(&k.c);
        fprintf(out, "/* entry point %zu (%s) */\n", e, f->mode == MODE_TRAIN ? "train" : "eval");
        fprintf(src, "\n/* ---------------- entry point %zu */\n", e);
        emit_entry(&k);
        names = k.names;
        bodies = k.bodies;
        ws_fixed[e] = k.c.fixed_total;
        ws_per_n[e] = k.c.per_n_total;
        cgc_layout_free(&k.c);
    }
    bool ok = fclose(src) == 0;
    put_program(out, src_text ? src_text : "", names);
    free(src_text);
    for (size_t i = 0; i < vec_len(names); i++) free(names[i]);
    for (size_t i = 0; i < vec_len(bodies); i++) free(bodies[i]);
    vec_free(names);
    vec_free(bodies);
    cgc_emit_descriptor(m, out, opt, ws_fixed, ws_per_n, "\"opencl\", &nrt_cl_device_ops, &cl_program");
    free(ws_fixed);
    free(ws_per_n);
    cgc_emit_main(m, out, opt);
    return ok && !ferror(out);
}

/* The C backend's kernels but those with a batchnorm, whose per-channel reads
 * the fused OpenCL kernel does not make (cl_ops.c); the C ops' scratch. The
 * conv weight gradient stays a GEMM behind the dense pooling gradient:
 * conv2d_grad_weight_maxpool is a work-item per weight here (cl_ops.c), and
 * with it mnist_cnn's first layer took 23.8 ms a training step on PoCL (1
 * thread) against about 2.5 ms for the pooling gradient, im2col and dot
 * products it replaces; a faster kernel would run on GPUs too (one program
 * for every device), unmeasured there. */
static const struct pass_target plan_opencl = {.name = "opencl",
                                               .fuse_max_inputs = 12,
                                               .fuse_max_outputs = 4,
                                               .fuse_max_arrays = 15,
                                               .fuse_batchnorm = false,
                                               .scratch = cgc_op_scratch};

const struct cg_target cg_target_opencl = {
    .name = "opencl",
    .ext = ".c",
    .help = "OpenCL kernels on a device chosen at run time (`PROGRAM train --device`)",
    .emit = emit_opencl,
    .runtime_lib = "libnetrt_cl.a",
    .link_flags = "-lOpenCL",
    .needs = "the OpenCL headers and ICD loader (apt-get install ocl-icd-opencl-dev opencl-headers)",
    .plan = &plan_opencl,
};
