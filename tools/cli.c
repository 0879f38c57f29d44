/* tools/cli.c -- what every `netc` command shares: error lines and exit
 * statuses, usage texts with the target registry's list expanded, argument
 * helpers, and atomic output (a temporary file renamed into place). netc.c and
 * build.c use it; neither names a backend. */
#include "tools/cli.h"

#include "codegen/codegen.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------- errors */

static void verror(const char *cmd, const char *fmt, va_list ap) {
    fprintf(stderr, "netc%s%s: error: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(cmd, fmt, ap);
    va_end(ap);
    fprintf(stderr, "run `netc %s%s--help` for usage\n", cmd ? cmd : "", cmd ? " " : "");
}

void cli_user_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    verror(cmd, fmt, ap);
    va_end(ap);
}

/* ------------------------------------------------------------- usage */

/* One line per target: `    NAME    HELP`, (default) after the first. */
static void print_targets(FILE *out, bool lib) {
    for (const struct cg_target *const *t = cg_targets; *t; t++) {
        if (!(*t)->emit && !lib) continue;
        fprintf(out, "                      %-8s %s%s\n", (*t)->name, (*t)->help,
                t == cg_targets ? " (default)" : "");
    }
}

/* One line per target that builds programs: how to compile what `netc emit`
 * wrote for it. */
static void print_link_lines(FILE *out) {
    for (const struct cg_target *const *t = cg_targets; *t; t++) {
        if (!(*t)->emit) continue;
        /* A target that compiles itself emits compiler IR, which clang reads. */
        bool ir = (*t)->emit_object != NULL;
        fprintf(out, "  %-7s %s -O3 DIR/MODEL%s%s %s%slibnetrt.a %s%s-lopenblas -lpng -lz -lm -lpthread\n",
                (*t)->name, ir ? "clang" : "cc", (*t)->ext, ir ? "" : " -IDIR",
                (*t)->runtime_lib ? (*t)->runtime_lib : "", (*t)->runtime_lib ? " " : "",
                (*t)->link_flags ? (*t)->link_flags : "", (*t)->link_flags ? " " : "");
    }
}

void cli_print_usage(FILE *out, const char *text) {
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len == 9 && strncmp(line, "@TARGETS@", 9) == 0) {
            print_targets(out, false);
        } else if (len == 12 && strncmp(line, "@LINK_LINES@", 12) == 0) {
            print_link_lines(out);
        } else if (len == 13 && strncmp(line, "@ALL_TARGETS@", 13) == 0) {
            print_targets(out, true);
        } else {
            fwrite(line, 1, len, out);
            if (end) fputc('\n', out);
        }
        line += len + (end ? 1 : 0);
    }
}

void cli_unknown_target(const char *cmd, const char *what, const char *name, bool lib) {
    char names[512], all[512];
    cg_target_names(names, sizeof names, false);
    cg_target_names(all, sizeof all, true);
    if (lib || strcmp(names, all) == 0) {
        cli_usage_error(cmd, "unknown %s '%s' (%ss: %s)", what, name, what, all);
        return;
    }
    /* The targets for `netc emit` only, named as such. */
    char only[512] = "";
    size_t n = 0;
    for (const struct cg_target *const *t = cg_targets; *t; t++)
        if (!(*t)->emit && n < sizeof only)
            n += (size_t)snprintf(only + n, sizeof only - n, "%s%s", n ? ", " : "", (*t)->name);
    cli_usage_error(cmd, "unknown %s '%s' (%ss: %s; %s %s for `netc emit`)", what, name, what, names, only,
                    strchr(only, ',') ? "are" : "is");
}

/* --------------------------------------------------------- arguments */

bool cli_is_help(const char *arg) { return strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0; }

const char *cli_value(const char *arg, const char *name) {
    size_t len = strlen(name);
    return strncmp(arg, name, len) == 0 && arg[len] == '=' ? arg + len + 1 : NULL;
}

int cli_positional(const char *cmd, const char *arg, const char **file) {
    if (arg[0] == '-' && arg[1]) {
        cli_usage_error(cmd, "unknown option '%s'", arg);
        return CLI_EXIT_USAGE;
    }
    if (*file) {
        cli_usage_error(cmd, "more than one input file ('%s' and '%s')", *file, arg);
        return CLI_EXIT_USAGE;
    }
    *file = arg;
    return 0;
}

int cli_need_file(const char *cmd, const char *file) {
    if (file) return 0;
    cli_usage_error(cmd, "no input file");
    return CLI_EXIT_USAGE;
}

bool cli_bytes(const char *cmd, const char *flag, const char *val, long long *out) {
    char *end;
    long long b = strtoll(val, &end, 10);
    if (*end == 'K' || *end == 'k')
        b <<= 10, end++;
    else if (*end == 'M' || *end == 'm')
        b <<= 20, end++;
    if (end == val || *end || b < 64 || b > (1ll << 40)) {
        cli_usage_error(cmd, "%s expects bytes from 64 to 1T (K or M suffix), got '%s'", flag, val);
        return false;
    }
    *out = b;
    return true;
}

/* ------------------------------------------------------------ output */

void cli_tmp_path(char *buf, size_t size, const char *path) {
    snprintf(buf, size, "%s.tmp.%ld", path, (long)getpid());
}

bool cli_output_open(struct cli_output *o, const char *cmd, const char *path) {
    o->path = path;
    if (!path || strcmp(path, "-") == 0) {
        o->path = NULL;
        o->f = stdout;
        return true;
    }
    cli_tmp_path(o->tmp, sizeof o->tmp, path);
    o->f = fopen(o->tmp, "w");
    if (!o->f) cli_user_error(cmd, "cannot write '%s': %s", path, strerror(errno));
    return o->f != NULL;
}

bool cli_output_close(struct cli_output *o, const char *cmd, bool ok) {
    if (!o->path) {
        fflush(stdout);
        return ok;
    }
    if (fclose(o->f) != 0) ok = false;
    if (ok && rename(o->tmp, o->path) != 0) {
        cli_user_error(cmd, "cannot write '%s': %s", o->path, strerror(errno));
        ok = false;
    }
    if (!ok) remove(o->tmp);
    return ok;
}
