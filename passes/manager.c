/* passes/manager.c -- the pass registry (from passes.def) and the pass manager:
 * runs passes in order, verifies the IR after each one when asked (always in
 * debug builds), and prints the IR after a named pass or after all of them. */
#include "passes/passes.h"

#include <string.h>

const struct pass_info pass_table[] = {
#define PASS(name, fn, in_pipeline, help) {name, fn, in_pipeline, help},
#include "passes/passes.def"
#undef PASS
};
const int pass_count = (int)(sizeof pass_table / sizeof pass_table[0]);

const struct pass_info *pass_find(const char *name) {
    for (int i = 0; i < pass_count; i++)
        if (strcmp(pass_table[i].name, name) == 0) return &pass_table[i];
    return NULL;
}

/* Whether `name` is one of the comma-separated names of `list`. */
static bool in_list(const char *list, const char *name) {
    size_t len = strlen(name);
    for (const char *p = list; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (strncmp(p, name, len) == 0 && (p[len] == ',' || p[len] == '\0')) return true;
    return false;
}

const char *const *pass_pipeline_except(const char *skip) {
    static const char *names[sizeof pass_table / sizeof pass_table[0] + 1];
    int k = 0;
    for (int i = 0; i < pass_count; i++)
        if (pass_table[i].in_pipeline && !in_list(skip, pass_table[i].name)) names[k++] = pass_table[i].name;
    names[k] = NULL;
    return names;
}

const char *const *pass_pipeline(void) { return pass_pipeline_except(NULL); }

void pass_dump(FILE *out, const struct ir_module *m, const char *name, bool dot) {
    if (dot) {
        fprintf(out, "// ----- IR after %s ----- //\n", name);
        ir_print_dot(out, m);
    } else {
        fprintf(out, "// ----- IR after %s ----- //\n", name);
        ir_print(out, m);
    }
}

/* A memory plan describes the IR it was made for: a pass that changes the IR
 * after memplan drops it (memplan must run again before emission). */
static void drop_plans(struct ir_module *m) {
    for (size_t i = 0; i < vec_len(m->funcs); i++) {
        struct ir_func *f = m->funcs[i];
        if (!f->planned) continue;
        f->planned = false, f->ws_fixed = 0, f->ws_batch = 0;
        for (int id = 0; id < ir_func_len(f); id++)
            f->nodes[id].mem = (struct ir_mem){MEM_NONE, 0, MEM_NONE, 0, 0};
    }
}

bool pass_run_list(struct ir_module *m, const char *const *names, const struct pass_options *opt) {
    FILE *out = opt->out ? opt->out : stdout;
    for (int i = 0; names[i]; i++) {
        const struct pass_info *p = pass_find(names[i]);
        NETC_ASSERT(p);
        int changed = p->run(m);
        if (changed < 0 || diag_error_count() > 0) return false;
        if (changed > 0 && p->run != pass_memplan) drop_plans(m);
        bool verify = opt->verify;
#ifndef NDEBUG
        verify = true;
#endif
        if (verify) {
            FILE *mem = tmpfile();
            if (mem) diag_set_stream(mem);
            bool ok = ir_verify(m);
            diag_set_stream(NULL);
            if (!ok) {
                fflush(stdout);
                fprintf(stderr, "netc: internal error: the IR is invalid after pass '%s':\n", p->name);
                if (mem) {
                    rewind(mem);
                    int ch;
                    while ((ch = fgetc(mem)) != EOF) fputc(ch, stderr);
                }
                fprintf(stderr, "// ----- IR after %s (invalid) ----- //\n", p->name);
                ir_print(stderr, m);
                exit(70);
            }
            if (mem) fclose(mem);
        }
        if (opt->after && (strcmp(opt->after, "all") == 0 || strcmp(opt->after, p->name) == 0) &&
            (!opt->only_changed || changed > 0))
            pass_dump(out, m, p->name, opt->dot);
    }
    return true;
}
