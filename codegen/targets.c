/* codegen/targets.c -- the registry of targets: one line per backend. The
 * `netc` command finds --target here, and lists the targets in its usage texts
 * and errors from here, so adding a backend is its own files, a line below and
 * the build files. Each target's struct lives with its backend. */
#include "codegen/codegen.h"

#include <string.h>

const struct cg_target *const cg_targets[] = {
    &cg_target_c,      /* c_emit.c (the default) */
    &cg_target_opencl, /* cl_emit.c */
    &cg_target_llvm,   /* llvm_*.c (llvm_none.c without LLVM) */
    &cg_target_lib,    /* c_lib.c */
    NULL,
};

const struct cg_target *cg_target_find(const char *name) {
    for (const struct cg_target *const *t = cg_targets; *t; t++)
        if (strcmp((*t)->name, name) == 0) return *t;
    return NULL;
}

const char *cg_target_names(char *buf, size_t size, bool lib) {
    size_t n = 0;
    if (size) buf[0] = '\0';
    for (const struct cg_target *const *t = cg_targets; *t; t++) {
        if (!(*t)->emit && !lib) continue;
        int k = snprintf(buf + n, n < size ? size - n : 0, "%s%s", n ? ", " : "", (*t)->name);
        if (k > 0) n += (size_t)k;
    }
    return buf;
}
