/* tests/unit/test_cgen_models.c -- every example network through the C backend
 * against the reference interpreter. Each example .net file is lowered and
 * differentiated (shape, autodiff; no optimizer lowering, so the train functions
 * keep their grad.* outputs), every buffer gets the same random values on both
 * sides (labels in [0, 10)), and every entry point runs once with batch 2 at
 * step 3. Outputs must agree within 1e-3 of the largest magnitude of each
 * output tensor: deep float32 networks drift from the double-precision reference
 * more than single ops do, but any emitter mistake is far larger. Each example is
 * built three ways: unfused, with the fuse pass (kernels emitted as one function
 * each), and through the whole pipeline (optimizer lowering and fusion), where the
 * parameters and state one training step writes are compared too. The C of all
 * models is compiled with -Wall -Wextra -Werror into one program. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <string.h>
#include <unistd.h>

#define BATCH 2
#include "tests/unit/test_cgen.h"
#define STEP 3
#define MAX_BUFS 256

static const char *const examples[] = {
    "mlp", "mnist_cnn", "lenet", "lstm", "linear_regression", "mlp_regression", "dcgan"};
#define NEXAMPLES ((int)(sizeof examples / sizeof *examples))

/* How each example is built: model k is example k % NEXAMPLES, variant k / NEXAMPLES. */
static const char *const *const variants[] = {
    (const char *const[]){"shape", "autodiff", "dce", "memplan", NULL},
    (const char *const[]){"shape", "autodiff", "dce", "fuse", "memplan", NULL},
    (const char *const[]){"shape", "autodiff", "optim", "dce", "cse", "simplify", "fuse", "memplan", NULL},
};
static const char *const variant_names[] = {"", "fused", "pipeline"};
#define NVARIANTS ((int)(sizeof variants / sizeof *variants))
#define NMODELS (NEXAMPLES * NVARIANTS)

static struct ir_module *mods[NMODELS];

static void write_harness(FILE *out) {
    fputs("#include \"netrt.h\"\n#include <stdio.h>\n", out);
    for (int k = 0; k < NMODELS; k++) fprintf(out, "extern const struct nrt_model netc_model_%d;\n", k);
    fputs("static const struct nrt_model *const models[] = {", out);
    for (int k = 0; k < NMODELS; k++) fprintf(out, "%s&netc_model_%d", k ? ", " : "", k);
    fputs("};\n", out);
    fprintf(out,
            "static int load(struct nrt_ctx *ctx, int k)\n{\n"
            "    const struct nrt_model *m = models[k];\n"
            "    char path[64];\n"
            "    snprintf(path, sizeof path, \"in_%%d.bin\", k);\n"
            "    FILE *f = fopen(path, \"rb\");\n"
            "    if (!f) return 1;\n"
            "    for (int i = 0; i < m->n_buffers; i++) {\n"
            "        size_t c = (size_t)nrt_desc_count(m->buffers[i].rank, m->buffers[i].dims, %d);\n"
            "        if (fread(ctx->buf[i], 4, c, f) != c) return 1;\n"
            "    }\n"
            "    fclose(f);\n"
            "    return 0;\n}\n"
            "int main(void)\n{\n"
            "    for (int k = 0; k < %d; k++) {\n"
            "        const struct nrt_model *m = models[k];\n"
            "        for (int e = 0; e < m->n_entries; e++) {\n"
            "            struct nrt_ctx ctx;\n"
            "            char path[64];\n"
            "            if (nrt_ctx_init(&ctx, m, %d, 0) || load(&ctx, k)) return 1;\n"
            "            ctx.step = %d;\n"
            "            int rc = nrt_ctx_run(&ctx, e, %d);\n"
            "            if (rc) fprintf(stderr, \"model %%d entry %%d: %%s\\n\", k, e, nrt_error());\n"
            "            snprintf(path, sizeof path, \"out_%%d_%%d.bin\", k, e);\n"
            "            FILE *f = fopen(path, \"wb\");\n"
            "            if (!f) return 1;\n"
            "            const struct nrt_entry_desc *d = &m->entries[e];\n"
            "            for (int o = 0; o < d->n_outputs && !rc; o++)\n"
            "                fwrite(ctx.out[o], 4, (size_t)nrt_desc_count(d->outputs[o].rank, "
            "d->outputs[o].dims, %d), f);\n"
            "            fclose(f);\n"
            "            snprintf(path, sizeof path, \"buf_%%d_%%d.bin\", k, e);\n"
            "            f = fopen(path, \"wb\");\n"
            "            if (!f) return 1;\n"
            "            for (int i = 0; i < m->n_buffers && !rc; i++)\n"
            "                fwrite(ctx.buf[i], 4,\n"
            "                       (size_t)nrt_desc_count(m->buffers[i].rank, m->buffers[i].dims, %d), f);\n"
            "            fclose(f);\n"
            "            nrt_ctx_free(&ctx);\n"
            "        }\n"
            "    }\n"
            "    return 0;\n}\n",
            BATCH, NMODELS, BATCH, STEP, BATCH, BATCH, BATCH);
}

/* Compares count floats of `what` against the reference; returns the mismatches. */
static int compare_values(const char *name, const char *what, const float *got, const double *ref,
                          size_t count, double *worst) {
    int bad = 0;
    double scale = 0;
    for (size_t i = 0; i < count; i++) scale = fmax(scale, fabs(ref[i]));
    for (size_t i = 0; i < count; i++) {
        double err = fabs(ref[i] - got[i]) / fmax(scale, 1e-3);
        *worst = fmax(*worst, err);
        if (!(err <= 1e-3) && bad++ < 5)
            TEST_FAIL_("%s: %s[%zu] = %.8g, interpreter %.8g (max |value| %.3g)", name, what, i, got[i],
                       ref[i], scale);
    }
    return bad;
}

static void compare(int k, int e, float **data) {
    struct ir_module *m = mods[k];
    struct ir_func *f = m->funcs[e];
    char name[128];
    snprintf(name, sizeof name, "%s%s%s/%s", examples[k % NEXAMPLES], k >= NEXAMPLES ? "+" : "",
             variant_names[k / NEXAMPLES], f->name);
    struct cg_interp *it = cg_interp_new(m, f, BATCH);
    cg_interp_set_step(it, STEP);
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        size_t count = numel(&buf->type.shape);
        if (buf->type.dtype == DT_I32)
            cg_interp_set_i32(it, buf->name, (int32_t *)data[b], count);
        else
            cg_interp_set_f32(it, buf->name, data[b], count);
    }
    if (!cg_interp_run(it)) {
        TEST_FAIL_("%s: interpreter: %s", name, cg_interp_error(it));
        cg_interp_free(it);
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "out_%d_%d.bin", k, e);
    FILE *in = fopen(path, "rb");
    int bad = 0, assigned = 0;
    double worst = 0;
    for (size_t o = 0; in && o < vec_len(f->outputs); o++) {
        const struct ir_node *n = &f->nodes[f->outputs[o].value];
        size_t count = numel(&n->type.shape);
        double *ref = calloc(count, sizeof *ref);
        float *got = calloc(count, sizeof *got);
        if (fread(got, 4, count, in) != count) {
            TEST_FAIL_("%s: output %s missing", name, f->outputs[o].name);
            bad++;
        } else if (n->type.dtype == DT_F32) {
            cg_interp_output_f64(it, f->outputs[o].name, ref, count);
            bad += compare_values(name, f->outputs[o].name, got, ref, count, &worst);
        }
        free(ref);
        free(got);
    }
    if (!in)
        TEST_FAIL_("%s: the C program wrote no results", name);
    else
        fclose(in);
    /* The buffers a training step wrote. */
    snprintf(path, sizeof path, "buf_%d_%d.bin", k, e);
    in = fopen(path, "rb");
    for (size_t b = 0; in && b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        size_t count = numel(&buf->type.shape);
        double *ref = calloc(count, sizeof *ref);
        float *got = calloc(count, sizeof *got);
        if (fread(got, 4, count, in) != count) {
            TEST_FAIL_("%s: buffer %s missing", name, buf->name);
            bad++;
        } else if (buf->type.dtype == DT_F32 && cg_interp_assigned_f64(it, buf->name, ref, count)) {
            assigned++;
            bad += compare_values(name, buf->name, got, ref, count, &worst);
        }
        free(ref);
        free(got);
    }
    if (!in)
        TEST_FAIL_("%s: the C program wrote no buffers", name);
    else
        fclose(in);
    if (!bad) test_passed++;
    printf("%-28s %zu outputs, %d buffers written, worst error %.2e %s\n", name, vec_len(f->outputs),
           assigned, worst, bad ? "MISMATCH" : "ok");
    cg_interp_free(it);
}

int main(void) {
    rng_state = 0xfeed;
    char dir[] = "/tmp/netc-cgen-models-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("temporary directory");
        return 1;
    }
    static float *data[NMODELS][MAX_BUFS];
    char cmd[8192];
    int k0 = snprintf(cmd, sizeof cmd, "cc -std=c11 -O1 -Wall -Wextra -Werror" SAN_FLAGS " -I%s/runtime",
                      NETC_SOURCE_DIR);
    for (int k = 0; k < NMODELS; k++) {
        mods[k] = load_example(examples[k % NEXAMPLES], variants[k / NEXAMPLES]);
        if (!mods[k]) continue;
        struct ir_module *m = mods[k];
        int members = 0;
        for (size_t e = 0; e < vec_len(m->funcs); e++)
            for (int id = 0; id < ir_func_len(m->funcs[e]); id++)
                members += m->funcs[e]->nodes[id].kernel > 0;
        if (k >= NEXAMPLES && members == 0)
            TEST_FAIL_("%s: the fuse pass formed no kernel", examples[k % NEXAMPLES]);
        char path[64];
        snprintf(path, sizeof path, "in_%d.bin", k);
        FILE *f = fopen(path, "wb");
        for (size_t b = 0; b < vec_len(m->buffers) && b < MAX_BUFS; b++) {
            const struct ir_buffer *buf = &m->buffers[b];
            size_t count = numel(&buf->type.shape);
            data[k][b] = calloc(count, 4);
            for (size_t i = 0; i < count; i++) {
                if (buf->type.dtype == DT_I32)
                    ((int32_t *)data[k][b])[i] = (int32_t)(nrt_mix64(rng_state++) % 10);
                else if (buf->kind == BUF_INPUT)
                    data[k][b][i] = (float)urand(0, 1);
                else if (buf->kind == BUF_STATE)
                    data[k][b][i] = (float)urand(0.5, 1); /* variances, lr */
                else
                    data[k][b][i] = (float)urand(-0.3, 0.3);
            }
            fwrite(data[k][b], 4, count, f);
        }
        fclose(f);
        emit_model(m, "model", k, cmd, sizeof cmd, &k0);
    }
    FILE *h = fopen("harness.c", "w");
    write_harness(h);
    fclose(h);
    snprintf(cmd + k0, sizeof cmd - (size_t)k0,
             " harness.c %s/runtime/libnetrt.a -lopenblas -lpng -lz -lm -lpthread -o harness && ./harness",
             NETC_BINARY_DIR);
    int rc = system(cmd);
    ASSERT(0, rc);
    for (int k = 0; k < NMODELS && rc == 0; k++)
        for (size_t e = 0; mods[k] && e < vec_len(mods[k]->funcs); e++) compare(k, (int)e, data[k]);
    for (int k = 0; k < NMODELS; k++) {
        for (int b = 0; b < MAX_BUFS; b++) free(data[k][b]);
        if (mods[k]) ir_module_free(mods[k]);
    }
    if (!test_failed && system("rm -f *.bin *.c harness") == 0 && chdir("/") == 0)
        rmdir(dir);
    else
        printf("files kept in %s\n", dir);
    diag_free();
    TEST_DONE();
}
