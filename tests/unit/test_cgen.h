/* tests/unit/test_cgen.h -- the shared kit of the tests that compile generated
 * programs and run them against the reference interpreter or another build
 * (test_cgen_ops.c, test_cgen_models.c, test_cgen_fused.c, test_cl_ops.c): the
 * sanitizer flags the generated code is compiled with, seeded random numbers,
 * element counts at the test's batch, the random inputs of an op case chosen by
 * a buffer's name, and loading an example through a list of passes. The includer
 * defines BATCH first and includes codegen.h, passes.h and test.h. */
#ifndef NETC_TEST_CGEN_H
#define NETC_TEST_CGEN_H

#include "frontend/frontend.h"

#ifndef BATCH
#error "define BATCH (the batch size N of the test) before including test_cgen.h"
#endif

/* The generated C links against libnetrt, built with sanitizers in
 * NETC_SANITIZE builds: compile it the same way. */
#ifdef __SANITIZE_ADDRESS__
#define SAN_FLAGS " -fsanitize=address,undefined"
#else
#define SAN_FLAGS ""
#endif

/* The state of urand and fill (tests seed it as they need). */
static uint64_t rng_state;

/* Uniform in [lo, hi), from nrt_mix64 of a counter. */
static inline double urand(double lo, double hi) {
    return lo + (hi - lo) * (double)(nrt_mix64(rng_state++) >> 11) * 0x1p-53;
}

/* Elements of s with the batch dim N set to BATCH. */
static inline size_t numel(const struct shape *s) {
    size_t n = 1;
    for (int i = 0; i < s->rank; i++) n *= (size_t)(s->dim[i] == IR_DIM_N ? BATCH : s->dim[i]);
    return n;
}

/* Random data for an op case's buffer b by its name's first letter: l labels in
 * [0, 5), p in [0.5, 2), q in [0.1, 0.9), s signs, d rows of a distribution
 * (positive, summing to 1 over the last dim), anything else in [-1, 1). */
static inline void fill(const struct ir_buffer *b, float *f, int32_t *iv, size_t count) {
    char k = b->name[0];
    int64_t last = b->type.shape.rank ? b->type.shape.dim[b->type.shape.rank - 1] : 1;
    for (size_t i = 0; i < count; i++) {
        if (k == 'l')
            iv[i] = (int32_t)(nrt_mix64(rng_state++) % 5);
        else if (k == 'p')
            f[i] = (float)urand(0.5, 2);
        else if (k == 'q')
            f[i] = (float)urand(0.1, 0.9);
        else if (k == 's')
            f[i] = urand(-1, 1) < 0 ? -1.0f : 1.0f;
        else
            f[i] = (float)urand(-1, 1);
    }
    if (k == 'd')
        for (size_t r = 0; r < count / (size_t)last; r++) {
            float s = 0;
            for (int64_t j = 0; j < last; j++) s += f[r * last + j] = (float)urand(0.1, 1);
            for (int64_t j = 0; j < last; j++) f[r * last + j] /= s;
        }
}

/* examples/NAME.net through PASSES, planned for the C target; NULL (and a test
 * failure) when it does not compile. */
static inline struct ir_module *load_example(const char *name, const char *const *passes) {
    char path[512];
    snprintf(path, sizeof path, "%s/examples/%s.net", NETC_SOURCE_DIR, name);
    struct ir_module *m = fe_load(path);
    struct pass_options opt = {true, NULL, false, false, stdout};
    pass_target = cg_target_c.plan;
    if (!m || !ir_verify(m) || !pass_run_list(m, passes, &opt)) {
        TEST_FAIL_("%s: does not compile", name);
        if (m) ir_module_free(m);
        return NULL;
    }
    return m;
}

/* Emit m as the C file PREFIX_K.c whose model is netc_model_K, and append that
 * file's name to the compile command cmd (of size `size`, *len used). */
static inline void emit_model(struct ir_module *m, const char *prefix, int k, char *cmd, size_t size,
                              int *len) {
    char path[64];
    snprintf(path, sizeof path, "%s_%d.c", prefix, k);
    FILE *f = fopen(path, "w");
    fprintf(f, "#define netc_model netc_model_%d\n", k);
    struct cg_options opt = {"test", false, false, NULL, NULL, 0};
    CHECK(cg_target_c.emit(m, f, &opt));
    fclose(f);
    *len += snprintf(cmd + *len, size - (size_t)*len, " %s", path);
}

#endif
