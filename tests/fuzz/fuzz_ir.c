/* tests/fuzz/fuzz_ir.c -- libFuzzer target: IR text (what `netc dump` prints and
 * `netc opt` reads) through the IR parser and the verifier; a module that
 * verifies must print and parse back to the same text (the dump is the input
 * language), then go through the default pass pipeline and the C emitter. */
#include "tests/fuzz/fuzz.h"

#include "codegen/codegen.h"
#include "ir/ir.h"
#include "passes/passes.h"

/* The IR text of m, malloc'd, *len bytes. */
static char *print(const struct ir_module *m, size_t *len) {
    char *text = NULL;
    FILE *f = open_memstream(&text, len);
    if (!f) abort();
    ir_print(f, m);
    fclose(f);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    FILE *null = fuzz_null();
    diag_set_stream(null);
    diag_reset();
    struct ir_module *m = ir_parse("fuzz.ir", (const char *)data, size);
    if (m && ir_verify(m)) {
        size_t len1, len2;
        char *t1 = print(m, &len1);
        struct ir_module *m2 = ir_parse("fuzz2.ir", t1, len1);
        if (!m2) {
            fprintf(stderr, "printed IR does not parse back:\n%s\n", t1);
            abort();
        }
        char *t2 = print(m2, &len2);
        if (len1 != len2 || memcmp(t1, t2, len1) != 0) {
            fprintf(stderr, "print -> parse -> print differs:\n%s\n-----\n%s\n", t1, t2);
            abort();
        }
        free(t1);
        free(t2);
        ir_module_free(m2);
        struct pass_options opt = {true, NULL, false, false, null};
        pass_target = cg_target_c.plan;
        if (pass_run_list(m, pass_pipeline(), &opt)) {
            struct cg_options copt = {"fuzz", true};
            cg_target_c.emit(m, null, &copt);
        }
    }
    if (m) ir_module_free(m);
    diag_free();
    return 0;
}
