/* tests/unit/test_cgen_fused.c -- fused against unfused C, and no allocation per
 * training step. Every example goes through the whole pipeline twice, with and
 * without the fuse pass; both C programs start from the same parameters, state
 * and batch, and run every training entry point STEPS times. After each step
 * every output must agree within TOL of the largest magnitude of its tensor, and
 * after the last one every parameter and state buffer too (fusion only reorders
 * float sums and keeps values in registers, so the two agree to rounding; a
 * wrong kernel differs by far more). The harness links libnetrt with malloc,
 * calloc, realloc, posix_memalign and aligned_alloc wrapped (-Wl,--wrap) and
 * checks that steps after the first allocate nothing, neither through nrt_alloc
 * nor raw. Last, the driver's whole training loop: a built program run with a
 * preloaded counting malloc makes as many allocation calls training 3 steps as
 * training 30. */
#include "codegen/codegen.h"
#include "frontend/frontend.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <string.h>
#include <unistd.h>

#define BATCH 3
#include "tests/unit/test_cgen.h"
#define STEPS 3
#define TOL 1e-4
#define MAX_BUFS 256

static const char *const examples[] = {
    "mlp", "mnist_cnn", "lenet", "lstm", "linear_regression", "mlp_regression", "dcgan", "tiny_gpt"};
#define NEXAMPLES ((int)(sizeof examples / sizeof *examples))
/* Model 2e is example e fused, 2e+1 unfused. */
#define NMODELS (2 * NEXAMPLES)

static const char *const fused[] = {"shape",    "autodiff", "optim",   "dce", "cse",
                                    "simplify", "fuse",     "memplan", NULL};
static const char *const unfused[] = {"shape", "autodiff", "optim", "dce", "cse", "memplan", NULL};

static struct ir_module *mods[NMODELS];

/* The harness: per model, per training entry, STEPS runs writing the outputs of
 * each (out_K_E_S.bin), then every buffer (buf_K_E.bin); allocation calls
 * counted over steps 2.. are printed as "allocations K E calls". */
static void write_harness(FILE *out) {
    fputs("#include \"netrt.h\"\n#include <stdio.h>\n#include <stdlib.h>\n\n"
          "static long raw_calls;\n"
          "void *__real_malloc(size_t n);\n"
          "void *__real_calloc(size_t k, size_t n);\n"
          "void *__real_realloc(void *p, size_t n);\n"
          "int __real_posix_memalign(void **p, size_t a, size_t n);\n"
          "void *__real_aligned_alloc(size_t a, size_t n);\n"
          "void *__wrap_malloc(size_t n) { raw_calls++; return __real_malloc(n); }\n"
          "void *__wrap_calloc(size_t k, size_t n) { raw_calls++; return __real_calloc(k, n); }\n"
          "void *__wrap_realloc(void *p, size_t n) { raw_calls++; return __real_realloc(p, n); }\n"
          "int __wrap_posix_memalign(void **p, size_t a, size_t n) { raw_calls++; return "
          "__real_posix_memalign(p, a, n); }\n"
          "void *__wrap_aligned_alloc(size_t a, size_t n) { raw_calls++; return __real_aligned_alloc(a, n); "
          "}\n\n",
          out);
    for (int k = 0; k < NMODELS; k++) fprintf(out, "extern const struct nrt_model netc_model_%d;\n", k);
    fputs("static const struct nrt_model *const models[] = {", out);
    for (int k = 0; k < NMODELS; k++) fprintf(out, "%s&netc_model_%d", k ? ", " : "", k);
    fputs("};\n\n", out);
    fprintf(out,
            "static int load(struct nrt_ctx *ctx, int k)\n{\n"
            "    const struct nrt_model *m = models[k];\n"
            "    char path[64];\n"
            "    snprintf(path, sizeof path, \"in_%%d.bin\", k / 2);\n"
            "    FILE *f = fopen(path, \"rb\");\n"
            "    if (!f) return 1;\n"
            "    for (int i = 0; i < m->n_buffers; i++) {\n"
            "        size_t c = (size_t)nrt_desc_count(m->buffers[i].rank, m->buffers[i].dims, %d);\n"
            "        if (fread(ctx->buf[i], 4, c, f) != c) return 1;\n"
            "    }\n"
            "    fclose(f);\n"
            "    return 0;\n}\n\n",
            BATCH);
    fprintf(out,
            "int main(void)\n{\n"
            "    for (int k = 0; k < %d; k++) {\n"
            "        const struct nrt_model *m = models[k];\n"
            "        for (int e = 0; e < m->n_entries; e++) {\n"
            "            const struct nrt_entry_desc *d = &m->entries[e];\n"
            "            if (d->mode != NRT_MODE_TRAIN) continue;\n"
            "            struct nrt_ctx ctx;\n"
            "            char path[64];\n"
            "            if (nrt_ctx_init(&ctx, m, %d, 0) || load(&ctx, k)) return 1;\n"
            "            long calls = 0;\n"
            "            uint64_t nrt_calls = 0;\n"
            "            for (int s = 1; s <= %d; s++) {\n"
            "                long before = raw_calls;\n"
            "                uint64_t nrt_before = nrt_alloc_count();\n"
            "                ctx.step = (uint64_t)s;\n"
            "                if (nrt_ctx_run(&ctx, e, %d)) {\n"
            "                    fprintf(stderr, \"model %%d entry %%d: %%s\\n\", k, e, nrt_error());\n"
            "                    return 1;\n"
            "                }\n"
            "                if (s > 1) calls += raw_calls - before, nrt_calls += nrt_alloc_count() - "
            "nrt_before;\n"
            "                snprintf(path, sizeof path, \"out_%%d_%%d_%%d.bin\", k, e, s);\n"
            "                FILE *f = fopen(path, \"wb\");\n"
            "                if (!f) return 1;\n"
            "                for (int o = 0; o < d->n_outputs; o++)\n"
            "                    fwrite(ctx.out[o], 4, (size_t)nrt_desc_count(d->outputs[o].rank, "
            "d->outputs[o].dims, %d), f);\n"
            "                if (fclose(f)) return 1;\n"
            "            }\n"
            "            printf(\"allocations %%d %%d %%ld %%llu\\n\", k, e, calls, (unsigned long "
            "long)nrt_calls);\n"
            "            snprintf(path, sizeof path, \"buf_%%d_%%d.bin\", k, e);\n"
            "            FILE *f = fopen(path, \"wb\");\n"
            "            if (!f) return 1;\n"
            "            for (int i = 0; i < m->n_buffers; i++)\n"
            "                fwrite(ctx.buf[i], 4, (size_t)nrt_desc_count(m->buffers[i].rank, "
            "m->buffers[i].dims, %d), f);\n"
            "            if (fclose(f)) return 1;\n"
            "            nrt_ctx_free(&ctx);\n"
            "        }\n"
            "    }\n"
            "    return 0;\n}\n",
            NMODELS, BATCH, STEPS, BATCH, BATCH, BATCH);
}

/* Reads count floats at *at of file path into a fresh array (NULL: missing). */
static float *read_floats(const char *path, size_t at, size_t count) {
    FILE *f = fopen(path, "rb");
    float *v = calloc(count ? count : 1, sizeof *v);
    bool ok = f && fseek(f, (long)(at * 4), SEEK_SET) == 0 && fread(v, 4, count, f) == count;
    if (f) fclose(f);
    if (!ok) free(v);
    return ok ? v : NULL;
}

/* Compares one tensor of the fused program against the unfused one. */
static int compare_tensor(const char *name, const char *what, const float *a, const float *b, size_t count,
                          double *worst) {
    double scale = 0;
    int bad = 0;
    for (size_t i = 0; i < count; i++) scale = fmax(scale, fabs(b[i]));
    for (size_t i = 0; i < count; i++) {
        double err = fabs((double)a[i] - b[i]) / fmax(scale, 1e-3);
        *worst = fmax(*worst, err);
        if (!(err <= TOL) && bad++ < 3)
            TEST_FAIL_("%s: %s[%zu] = %.8g fused, %.8g unfused (max |value| %.3g)", name, what, i, a[i], b[i],
                       scale);
    }
    return bad;
}

/* Fused model 2x against unfused 2x+1: outputs of every step, then buffers. */
static void compare(int x, int e) {
    const struct ir_module *m = mods[2 * x];
    const struct ir_func *f = m->funcs[e], *g = mods[2 * x + 1]->funcs[e];
    char name[128], pa[64], pb[64];
    snprintf(name, sizeof name, "%s/%s", examples[x], f->name);
    int bad = 0;
    double worst = 0;
    ASSERT(vec_len(g->outputs), vec_len(f->outputs));
    for (int s = 1; s <= STEPS; s++) {
        size_t at = 0;
        snprintf(pa, sizeof pa, "out_%d_%d_%d.bin", 2 * x, e, s);
        snprintf(pb, sizeof pb, "out_%d_%d_%d.bin", 2 * x + 1, e, s);
        for (size_t o = 0; o < vec_len(f->outputs); o++) {
            const struct type *t = &f->nodes[f->outputs[o].value].type;
            size_t count = numel(&t->shape);
            float *va = read_floats(pa, at, count), *vb = read_floats(pb, at, count);
            char what[160];
            snprintf(what, sizeof what, "step %d %s", s, f->outputs[o].name);
            if (!va || !vb) {
                TEST_FAIL_("%s: %s missing", name, what);
                bad++;
            } else if (t->dtype == DT_F32)
                bad += compare_tensor(name, what, va, vb, count, &worst);
            else
                bad += memcmp(va, vb, count * 4) != 0;
            free(va);
            free(vb);
            at += count;
        }
    }
    snprintf(pa, sizeof pa, "buf_%d_%d.bin", 2 * x, e);
    snprintf(pb, sizeof pb, "buf_%d_%d.bin", 2 * x + 1, e);
    size_t at = 0;
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        size_t count = numel(&buf->type.shape);
        float *va = read_floats(pa, at, count), *vb = read_floats(pb, at, count);
        if (!va || !vb) {
            TEST_FAIL_("%s: buffer %s missing", name, buf->name);
            bad++;
        } else if (buf->kind != BUF_INPUT && buf->type.dtype == DT_F32)
            bad += compare_tensor(name, buf->name, va, vb, count, &worst);
        free(va);
        free(vb);
        at += count;
    }
    if (!bad) test_passed++;
    printf("%-28s %d steps, %zu buffers, worst difference %.2e %s\n", name, STEPS, vec_len(m->buffers), worst,
           bad ? "MISMATCH" : "ok");
}

/* Fills the input file of example x from m's buffer list. */
static void write_inputs(int x, const struct ir_module *m) {
    char path[64];
    snprintf(path, sizeof path, "in_%d.bin", x);
    FILE *f = fopen(path, "wb");
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        size_t count = numel(&buf->type.shape);
        for (size_t i = 0; i < count; i++) {
            float v;
            if (buf->type.dtype == DT_I32) {
                int32_t l = (int32_t)(nrt_mix64(rng_state++) % 10);
                memcpy(&v, &l, 4);
            } else if (buf->kind == BUF_INPUT)
                v = (float)urand(0, 1);
            else if (buf->kind == BUF_STATE)
                v = (float)urand(0.5, 1); /* variances, lr */
            else
                v = (float)urand(-0.3, 0.3);
            fwrite(&v, 4, 1, f);
        }
    }
    fclose(f);
}

/* The driver's training loop: equal allocation counts for 3 and 30 steps. */
static void driver_loop(void) {
    FILE *f = fopen("count.c", "w");
    fputs("#include <errno.h>\n#include <stdio.h>\n#include <stdlib.h>\n"
          "extern void *__libc_malloc(size_t);\nextern void *__libc_calloc(size_t, size_t);\n"
          "extern void *__libc_realloc(void *, size_t);\nextern void *__libc_memalign(size_t, size_t);\n"
          "static long calls;\n"
          "void *malloc(size_t n) { calls++; return __libc_malloc(n); }\n"
          "void *calloc(size_t k, size_t n) { calls++; return __libc_calloc(k, n); }\n"
          "void *realloc(void *p, size_t n) { calls++; return __libc_realloc(p, n); }\n"
          "void *aligned_alloc(size_t a, size_t n) { calls++; return __libc_memalign(a, n); }\n"
          "void *memalign(size_t a, size_t n) { calls++; return __libc_memalign(a, n); }\n"
          "int posix_memalign(void **p, size_t a, size_t n) {\n"
          "    calls++;\n    *p = __libc_memalign(a, n);\n    return *p ? 0 : ENOMEM;\n}\n"
          "__attribute__((destructor)) static void report(void) {\n"
          "    const char *path = getenv(\"COUNT_FILE\");\n"
          "    FILE *f = path ? fopen(path, \"w\") : NULL;\n"
          "    if (f) fprintf(f, \"%ld\\n\", calls), fclose(f);\n}\n",
          f);
    fclose(f);
    char cmd[2048];
    snprintf(
        cmd, sizeof cmd,
        "cc -O1 -shared -fPIC count.c -o count.so && %s/netc build %s/examples/mlp.net -o mlp && "
        "for s in 3 30; do COUNT_FILE=calls_$s LD_PRELOAD=./count.so ./mlp train --max-steps $s --threads 2 "
        "--quiet > /dev/null || exit 1; done",
        NETC_BINARY_DIR, NETC_SOURCE_DIR);
    ASSERT(0, system(cmd));
    long a = -1, b = -2;
    FILE *fa = fopen("calls_3", "r"), *fb = fopen("calls_30", "r");
    if (fa && fscanf(fa, "%ld", &a) != 1) a = -1;
    if (fb && fscanf(fb, "%ld", &b) != 1) b = -2;
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    printf("mlp train: %ld allocation calls for 3 steps, %ld for 30\n", a, b);
    CHECK(a > 0);
    ASSERT(a, b);
}

int main(void) {
    rng_state = 0x5eed;
    char dir[] = "/tmp/netc-cgen-fused-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("temporary directory");
        return 1;
    }
    char cmd[8192];
    int k0 = snprintf(cmd, sizeof cmd,
                      "cc -std=c11 -O2 -march=native -Wall -Wextra -Werror" SAN_FLAGS " -I%s/runtime",
                      NETC_SOURCE_DIR);
    for (int k = 0; k < NMODELS; k++) {
        mods[k] = load_example(examples[k / 2], k % 2 ? unfused : fused);
        if (!mods[k]) return 1;
        if (k % 2 == 0) write_inputs(k / 2, mods[k]);
        emit_model(mods[k], "model", k, cmd, sizeof cmd, &k0);
    }
    FILE *h = fopen("harness.c", "w");
    write_harness(h);
    fclose(h);
    snprintf(cmd + k0, sizeof cmd - (size_t)k0,
             " harness.c %s/runtime/libnetrt.a -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,"
             "--wrap=posix_memalign,--wrap=aligned_alloc -lopenblas -lpng -lz -lm -lpthread -o harness && "
             "./harness > allocations.txt",
             NETC_BINARY_DIR);
    int rc = system(cmd);
    ASSERT(0, rc);
    FILE *al = fopen("allocations.txt", "r");
    int k, e, lines = 0;
    long calls;
    unsigned long long nrt_calls;
    while (al && fscanf(al, "allocations %d %d %ld %llu\n", &k, &e, &calls, &nrt_calls) == 4) {
        lines++;
        if (calls || nrt_calls)
            TEST_FAIL_("%s%s/%d: %ld malloc-family and %llu nrt_alloc calls in steps 2..%d", examples[k / 2],
                       k % 2 ? " (unfused)" : "", e, calls, nrt_calls, STEPS);
        else
            test_passed++;
    }
    if (al) fclose(al);
    printf("%d training entry points: no allocation in steps 2..%d\n", lines, STEPS);
    CHECK(lines >= NMODELS);
    for (int x = 0; x < NEXAMPLES && rc == 0; x++)
        for (size_t fe = 0; fe < vec_len(mods[2 * x]->funcs); fe++)
            if (mods[2 * x]->funcs[fe]->mode == MODE_TRAIN) compare(x, (int)fe);
    driver_loop();
    for (int m = 0; m < NMODELS; m++)
        if (mods[m]) ir_module_free(mods[m]);
    if (!test_failed && system("rm -f *.bin *.c *.so *.txt calls_* harness mlp") == 0 && chdir("/") == 0)
        rmdir(dir);
    else
        printf("files kept in %s\n", dir);
    diag_free();
    TEST_DONE();
}
