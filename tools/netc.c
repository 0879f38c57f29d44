/* tools/netc.c -- the `netc` command: argument parsing and driving the pipeline.
 * One function per subcommand (dump, opt, check, and the backend commands still
 * to come), each with its --help text; shared helpers for reading files and
 * writing output atomically come first. */
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"
#include "codegen/codegen.h"
#include "tools/backends.h"
#include "tools/build.h"
#include "tools/cli.h"
#include "tools/gradcheck.h"
#include "runtime/netrt.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#define NETC_VERSION "0.1.0"

static const char usage_main[] =
    "usage: netc <command> [options] FILE\n"
    "\n"
    "netc compiles neural networks described in .net files.\n"
    "\n"
    "commands:\n"
    "  check   parse, lower and verify a .net file; print a summary\n"
    "  dump    print the IR of a .net file after any pass, as text or Graphviz DOT\n"
    "  opt     read IR text, run passes on it, print the result\n"
    "  passes  list the passes\n"
    "  build   compile a .net file to a native program\n"
    "  emit    write the generated C sources\n"
    "  run     build into a cache and run the program\n"
    "  plot    draw the curves of a training metrics file as a PNG\n"
    "\n"
    "`netc <command> --help` documents each command's flags.\n"
    "options: --help, --version\n";

static const char usage_dump[] =
    "usage: netc dump FILE.net [--after=PASS|all] [--format=text|dot] [options]\n"
    "\n"
    "Print the IR of FILE.net. Without --after, print the IR at the end of the\n"
    "pipeline. Each dump starts with the banner `// ----- IR after PASS ----- //`.\n"
    "\n"
    "  --after=PASS      print the IR after PASS only; `lower` is the IR straight\n"
    "                    from the front end; `all` prints it after every pass\n"
    "  --only-changed    with --after=all: skip passes that changed nothing\n"
    "  --no-fuse         skip kernel formation (the `simplify` and `fuse` passes)\n"
    "  --target=T        the backend that kernels and the memory plan are made for,\n"
    "                    as `netc build --target`, one of\n"
    "@TARGETS@\n"
    "  --format=FMT      text (default; parses back with `netc opt`) or dot (Graphviz:\n"
    "                    clusters per function, phase, net and layer; one box per\n"
    "                    parameter's optimizer update)\n"
    "  --only=PHASES     dot: draw only these phases of the training functions,\n"
    "                    comma-separated: forward, backward, optimizer (values they\n"
    "                    read from the others appear as dashed stubs)\n"
    "  --func=NAME       dot: draw only the function NAME (forward, train_step, ...)\n"
    "  --expand          dot: draw every optimizer node instead of one box per parameter\n"
    "  --mpi             data parallel, as `netc build --mpi`: gradients reduced over\n"
    "                    the ranks (allreduce ops, `buckets` pass); the memory plan's\n"
    "                    gradient buckets are listed after the IR\n"
    "  --bucket-size=B   --mpi: gradient bucket size in bytes (K or M suffix; default a\n"
    "                    quarter of the gradients, 64K to 4M)\n"
    "  --sync-bn         --mpi: batch-norm statistics over every rank (`syncbn` pass)\n"
    "  --format=FMT      text (default; parses back with `netc opt`) or dot (Graphviz)\n"
    "  --print-loc       print each value's .net source location\n"
    "  --verify          run the verifier after every pass (always on in debug builds)\n"
    "  -o FILE           write to FILE instead of standard output\n";

static const char usage_opt[] =
    "usage: netc opt FILE.ir [--pass=a,b,...] [options]\n"
    "\n"
    "Read IR text (FILE.ir, or - for standard input), verify it, run the named\n"
    "passes in order, and print the result. With no --pass the IR prints back\n"
    "unchanged (the round trip).\n"
    "\n"
    "  --pass=LIST           comma-separated passes (see `netc passes`)\n"
    "  --target=T            the backend fuse and memplan plan for, one of\n"
    "@TARGETS@\n"
    "  --split-input-file    treat `// -----` lines as separators between independent\n"
    "                        inputs; errors keep their real line numbers\n"
    "  --format=FMT          text (default) or dot\n"
    "  --print-loc           print source locations\n"
    "  --verify              run the verifier after every pass\n"
    "  -o FILE               write to FILE instead of standard output\n";

static const char usage_check[] =
    "usage: netc check FILE.net [--verify] [--gradcheck [--batch N] [--seed S] [--samples K]]\n"
    "       netc check FILE.net --backends=A,B [--seed S] [--rtol=R] [--atol=A] [-- TRAIN ARGS...]\n"
    "\n"
    "Parse FILE.net, lower it to IR, run the pipeline and verify the result.\n"
    "Prints a one-line summary; exit status 1 on any error in the file.\n"
    "\n"
    "  --gradcheck   also check the gradients autodiff builds: run shape inference\n"
    "                and autodiff (no optimizer), fill a random batch (labels valid\n"
    "                for their classifier, targets valid probabilities) and the\n"
    "                parameters from their init specs, evaluate each training\n"
    "                function in the reference interpreter (double precision), and\n"
    "                compare every grad.<param> with central finite differences of\n"
    "                the loss at up to 8 elements per parameter: step\n"
    "                1e-5*max(1,|x|), retried 10, 100, 1000 times smaller when the\n"
    "                error is over 1e-6 (a step across a ReLU or max-pool kink);\n"
    "                error |a-n|/max(|a|,|n|,1e-3) must be <= 1e-4. Prints the worst\n"
    "                error per parameter; exit status 1 if any is over 1e-4\n"
    "  --batch N     batch size of the random data (default 4)\n"
    "  --seed S      seed of the random data and parameters (default 1)\n"
    "  --samples K   elements checked per parameter (default 8)\n"
    "  --backends=A,B  build the model for backends A (the reference) and B (targets\n"
    "                of `netc build --target`: see `netc build --help`), run\n"
    "                `PROGRAM train --max-steps 1 --epochs 1 --seed S` with each\n"
    "                (same initial weights, same first batch; TRAIN ARGS after --\n"
    "                are added, e.g. --data/--test files; the test set is evaluated\n"
    "                after the step), and print for every parameter and state\n"
    "                tensor of the two checkpoints and every metric of the step\n"
    "                (loss, accuracy, test loss and accuracy) the largest absolute\n"
    "                and relative difference. Exit status 1 when some element\n"
    "                differs by more than A + R * max(|a|, |b|)\n"
    "  --rtol=R --atol=A  the tolerance of --backends (default R 1e-3, A 1e-5). One\n"
    "                step of f32 arithmetic in another summation order (GEMM tiles,\n"
    "                tree reductions) moves most values by ~1e-6 relative, but long\n"
    "                sums with cancellation (weight gradients of convolutions over\n"
    "                large batches) move by up to ~1e-3, and Adam's first update\n"
    "                (m / sqrt(v), about lr * sign(g)) turns gradients that are 0\n"
    "                up to rounding (a bias before batch normalization) into +-lr\n";

/* ------------------------------------------------------------- helpers */

/* Read a whole file (or standard input for "-"). NULL after reporting an error. */
static char *read_file(const char *path, size_t *len) {
    FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
    if (!f) {
        cli_user_error(NULL, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (n < cap) break;
        char *bigger = realloc(buf, cap * 2);
        if (!bigger) free(buf);
        buf = bigger;
        cap *= 2;
    }
    bool err = ferror(f);
    if (f != stdin) fclose(f);
    if (!buf || err) {
        cli_user_error(NULL, "cannot read '%s'%s", path, buf ? "" : ": out of memory");
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

/* Split "a,b,c" into a NULL-terminated list of pass names, checking each. */
static const char **pass_list(const char *cmd, char *spec) {
    size_t n = 1;
    for (const char *p = spec; *p; p++) n += *p == ',';
    const char **names = calloc(n + 1, sizeof *names);
    if (!names) return NULL;
    size_t k = 0;
    for (char *tok = strtok(spec, ","); tok; tok = strtok(NULL, ",")) {
        if (!pass_find(tok)) {
            cli_usage_error(cmd, "unknown pass '%s'", tok);
            fprintf(stderr, "passes:");
            for (int i = 0; i < pass_count; i++) fprintf(stderr, " %s", pass_table[i].name);
            fputc('\n', stderr);
            free(names);
            return NULL;
        }
        names[k++] = tok;
    }
    return names;
}

/* Common flags of dump and opt. */
struct flags {
    const char *file;               /* the input */
    const char *out;                /* -o */
    const char *after;              /* --after */
    char *passes;                   /* --pass (opt) */
    bool dot;                       /* --format=dot */
    bool only_changed;              /* --only-changed */
    bool no_fuse;                   /* --no-fuse */
    bool print_loc;                 /* --print-loc */
    bool verify;                    /* --verify */
    bool split;                     /* --split-input-file */
    struct ir_dot_options dot_opts; /* --only, --func, --expand */
    bool mpi;                       /* --mpi */
    bool sync_bn;                   /* --sync-bn */
    const char *bucket;             /* --bucket-size */
    const char *target;             /* --target: the backend fuse and memplan plan for */
};

/* Parse argv for a subcommand; `allowed` lists the flags it takes. Returns 0 to go
 * on, or an exit status (after --help or a usage error). */
static int parse_flags(const char *cmd, const char *usage, const char *allowed, int argc, char **argv,
                       struct flags *fl) {
    memset(fl, 0, sizeof *fl);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *val = NULL;
#define FLAG(name) (strcmp(a, name) == 0 && strstr(allowed, name))
#define VALFLAG(name)                                                        \
    (strncmp(a, name "=", strlen(name) + 1) == 0 && strstr(allowed, name) && \
     (val = a + strlen(name) + 1, true))
        if (cli_is_help(a)) {
            cli_print_usage(stdout, usage);
            return -1;
        } else if (VALFLAG("--after")) {
            fl->after = val;
        } else if (VALFLAG("--pass")) {
            fl->passes = (char *)val;
        } else if (VALFLAG("--format")) {
            if (strcmp(val, "dot") == 0)
                fl->dot = true;
            else if (strcmp(val, "text") != 0) {
                cli_usage_error(cmd, "unknown format '%s' (expected text or dot)", val);
                return CLI_EXIT_USAGE;
            }
        } else if (VALFLAG("--only")) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", val);
            for (char *t = strtok(buf, ","); t; t = strtok(NULL, ",")) {
                unsigned p = strcmp(t, "forward") == 0     ? PHASE_FORWARD
                             : strcmp(t, "backward") == 0  ? PHASE_BACKWARD
                             : strcmp(t, "optimizer") == 0 ? PHASE_OPTIMIZER
                                                           : 0;
                if (!p) {
                    cli_usage_error(cmd,
                                    "unknown phase '%s' in --only (phases: forward, backward, optimizer)", t);
                    return CLI_EXIT_USAGE;
                }
                fl->dot_opts.phases |= p;
            }
        } else if (VALFLAG("--func")) {
            fl->dot_opts.func = val;
        } else if (FLAG("--expand")) {
            fl->dot_opts.expand = true;
        } else if (FLAG("--only-changed")) {
            fl->only_changed = true;
        } else if (FLAG("--no-fuse")) {
            fl->no_fuse = true;
        } else if (FLAG("--print-loc")) {
            fl->print_loc = true;
        } else if (FLAG("--verify")) {
            fl->verify = true;
        } else if (FLAG("--split-input-file")) {
            fl->split = true;
        } else if (FLAG("--mpi")) {
            fl->mpi = true;
        } else if (FLAG("--sync-bn")) {
            fl->sync_bn = true;
        } else if (VALFLAG("--bucket-size")) {
            fl->bucket = val;
        } else if (VALFLAG("--target")) {
            if (!cg_target_find(val)) {
                cli_unknown_target(cmd, "target", val, false);
                return CLI_EXIT_USAGE;
            }
            fl->target = val;
        } else if (strcmp(a, "-o") == 0 && strstr(allowed, "-o")) {
            if (++i == argc) {
                cli_usage_error(cmd, "-o needs a file name");
                return CLI_EXIT_USAGE;
            }
            fl->out = argv[i];
        } else {
            int st = cli_positional(cmd, a, &fl->file);
            if (st) return st;
        }
#undef FLAG
#undef VALFLAG
    }
    int st = cli_need_file(cmd, fl->file);
    if (st) return st;
    pass_target = cg_target_find(fl->target ? fl->target : "c")->plan;
    return 0;
}

/* ---------------------------------------------------------------- dump */

/* The gradient buckets of the memory plan, as IR comments. */
static void print_buckets(FILE *out, const struct ir_module *m) {
    for (size_t e = 0; e < vec_len(m->funcs); e++) {
        struct cgc c = {NULL, 0, m, m->funcs[e], NULL, 0, 0, NULL, NULL, NULL, NULL};
        cgc_layout(&c);
        int nb = cgc_buckets(&c, 0, NULL, NULL, NULL);
        size_t *off = calloc((size_t)nb + 1, sizeof *off), *bytes = calloc((size_t)nb + 1, sizeof *bytes);
        int *tensors = calloc((size_t)nb + 1, sizeof *tensors);
        if (!off || !bytes || !tensors) netc_internal_error(__FILE__, __LINE__, "out of memory");
        cgc_buckets(&c, nb, off, bytes, tensors);
        if (nb)
            fprintf(out, "// gradient buckets of @%s (workspace offset, bytes, tensors):\n",
                    m->funcs[e]->name);
        for (int b = 0; b < nb; b++)
            fprintf(out, "//   bucket %d: +%zu, %zu bytes, %d tensor%s\n", b, off[b], bytes[b], tensors[b],
                    tensors[b] == 1 ? "" : "s");
        free(off), free(bytes), free(tensors);
        cgc_layout_free(&c);
    }
}

static int cmd_dump(int argc, char **argv) {
    struct flags fl;
    int st = parse_flags("dump", usage_dump,
                         "--after --format --only-changed --only --func --expand --no-fuse --mpi --sync-bn "
                         "--bucket-size --print-loc --verify --target -o",
                         argc, argv, &fl);
    if (st) return st < 0 ? 0 : st;
    if ((fl.sync_bn || fl.bucket) && !fl.mpi) {
        cli_usage_error("dump", "%s needs --mpi", fl.sync_bn ? "--sync-bn" : "--bucket-size");
        return CLI_EXIT_USAGE;
    }
    if (fl.bucket) {
        long long b;
        if (!cli_bytes("dump", "--bucket-size", fl.bucket, &b)) return CLI_EXIT_USAGE;
        pass_dp_options.bucket_bytes = (size_t)b;
    }
    if (fl.after && strcmp(fl.after, "all") != 0 && strcmp(fl.after, "lower") != 0 && !pass_find(fl.after)) {
        cli_usage_error("dump", "unknown pass '%s' for --after", fl.after);
        fprintf(stderr, "passes: lower");
        for (int i = 0; i < pass_count; i++) fprintf(stderr, " %s", pass_table[i].name);
        fprintf(stderr, " (or all)\n");
        return CLI_EXIT_USAGE;
    }
    if (!fl.dot && (fl.dot_opts.phases || fl.dot_opts.func || fl.dot_opts.expand)) {
        cli_usage_error("dump", "--only, --func and --expand go with --format=dot");
        return CLI_EXIT_USAGE;
    }
    struct ir_module *m = fe_load(fl.file);
    if (!m) return CLI_EXIT_USER;
    struct cli_output o;
    if (!cli_output_open(&o, NULL, fl.out)) {
        ir_module_free(m);
        return CLI_EXIT_USER;
    }
    ir_print_set_locs(fl.print_loc);
    bool all = fl.after && strcmp(fl.after, "all") == 0;
    if (all || (fl.after && strcmp(fl.after, "lower") == 0)) pass_dump(o.f, m, "lower", fl.dot);
    struct pass_options opt = {fl.verify, fl.after, fl.only_changed, fl.dot, o.f};
    bool ok = ir_verify(m) &&
              pass_run_list(m, pass_pipeline_dp(fl.no_fuse ? PASS_NO_FUSE : NULL, fl.mpi, fl.sync_bn), &opt);
    if (ok && !fl.after) {
        if (fl.dot_opts.func && !ir_func_find(m, fl.dot_opts.func)) {
            cli_user_error("dump", "model '%s' has no function '%s'", m->name, fl.dot_opts.func);
            ok = false;
        } else if (fl.dot) {
            ir_print_dot_opts(o.f, m, &fl.dot_opts);
        } else {
            ir_print(o.f, m);
        }
        if (ok && fl.mpi && !fl.dot) print_buckets(o.f, m);
    }
    ok = cli_output_close(&o, NULL, ok);
    ir_module_free(m);
    return ok ? 0 : CLI_EXIT_USER;
}

/* ----------------------------------------------------------------- opt */

/* Run one IR text through parse, verify, passes and print. */
static bool opt_one(const char *file, const char *text, size_t len, const char *const *passes,
                    const struct flags *fl, FILE *out) {
    struct ir_module *m = ir_parse(file, text, len);
    if (!m) return false;
    bool ok = ir_verify(m);
    if (ok && passes) {
        struct pass_options opt = {fl->verify, NULL, false, false, out};
        ok = pass_run_list(m, passes, &opt);
    }
    if (ok) {
        if (fl->dot)
            ir_print_dot(out, m);
        else
            ir_print(out, m);
    }
    ir_module_free(m);
    return ok;
}

static int cmd_opt(int argc, char **argv) {
    struct flags fl;
    int st =
        parse_flags("opt", usage_opt, "--pass --format --print-loc --verify --split-input-file --target -o",
                    argc, argv, &fl);
    if (st) return st < 0 ? 0 : st;
    const char **passes = NULL;
    if (fl.passes && !(passes = pass_list("opt", fl.passes))) return CLI_EXIT_USAGE;
    size_t len;
    char *text = read_file(fl.file, &len);
    if (!text) {
        free(passes);
        return CLI_EXIT_USER;
    }
    struct cli_output o;
    if (!cli_output_open(&o, NULL, fl.out)) {
        free(text);
        free(passes);
        return CLI_EXIT_USER;
    }
    ir_print_set_locs(fl.print_loc);
    const char *name = strcmp(fl.file, "-") == 0 ? "<stdin>" : fl.file;
    bool ok = true;
    if (!fl.split) {
        ok = opt_one(name, text, len, passes, &fl, o.f);
    } else {
        /* Each chunk keeps its line numbers: the text before it becomes blank lines. */
        char *chunk = malloc(len + 1);
        size_t start = 0;
        int nchunk = 0;
        while (chunk && start <= len) {
            size_t end = start;
            while (end < len) {
                size_t eol = end;
                while (eol < len && text[eol] != '\n') eol++;
                if (strncmp(text + end, "// -----", 8) == 0) break;
                end = eol < len ? eol + 1 : eol;
            }
            size_t nl = 0;
            for (size_t i = 0; i < start; i++)
                if (text[i] == '\n') chunk[nl++] = '\n';
            memcpy(chunk + nl, text + start, end - start);
            if (nchunk++) fputs("// -----\n", o.f);
            diag_reset();
            if (!opt_one(name, chunk, nl + end - start, passes, &fl, o.f)) ok = false;
            if (end >= len) break;
            while (end < len && text[end] != '\n') end++;
            start = end + 1;
        }
        if (!chunk) ok = false;
        free(chunk);
    }
    ok = cli_output_close(&o, NULL, ok);
    free(text);
    free(passes);
    return ok ? 0 : CLI_EXIT_USER;
}

/* --------------------------------------------------------------- check */

/* A positive integer option value of check ("--batch 4" or "--batch=4"); false
 * after a usage error. */
static bool check_int(const char *flag, const char *val, int64_t max, int64_t *out) {
    char *end;
    errno = 0;
    long long v = val ? strtoll(val, &end, 10) : 0;
    if (!val || errno || end == val || *end || v < 0 || v > max || (v == 0 && strcmp(flag, "--seed") != 0)) {
        cli_usage_error("check", "%s needs %s integer, got '%s'", flag,
                        strcmp(flag, "--seed") == 0 ? "a non-negative" : "a positive", val ? val : "nothing");
        return false;
    }
    *out = v;
    return true;
}

/* Take check's own flags (--gradcheck, --batch, --seed, --samples) out of argv,
 * leaving the rest for parse_flags; --seed also goes with --backends. Returns 0,
 * or an exit status. */
static int check_flags(int *argc, char **argv, bool backends, bool *gradcheck, struct gradcheck_options *gc) {
    static const char *const valued[] = {"--batch", "--seed", "--samples"};
    const char *given = NULL; /* the last of them given */
    int k = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--gradcheck") == 0) {
            *gradcheck = true;
            continue;
        }
        int which = -1;
        const char *val = NULL;
        for (int j = 0; j < 3; j++) {
            size_t len = strlen(valued[j]);
            if (strcmp(argv[i], valued[j]) == 0) {
                which = j;
                val = i + 1 < *argc ? argv[++i] : NULL;
                break;
            } else if (strncmp(argv[i], valued[j], len) == 0 && argv[i][len] == '=') {
                which = j;
                val = argv[i] + len + 1;
                break;
            }
        }
        if (which < 0) {
            argv[k++] = argv[i];
            continue;
        }
        int64_t v;
        if (!check_int(valued[which], val, which == 1 ? INT64_MAX : 1 << 20, &v)) return CLI_EXIT_USAGE;
        if (which == 0)
            gc->batch = v;
        else if (which == 1)
            gc->seed = (uint64_t)v;
        else
            gc->samples = (int)v;
        given = valued[which];
    }
    *argc = k;
    if (given && !*gradcheck && !(backends && strcmp(given, "--seed") == 0)) {
        cli_usage_error("check", "%s is an option of --gradcheck", given);
        return CLI_EXIT_USAGE;
    }
    return 0;
}

/* Takes `--backends=A,B` out of argv and everything after `--` (the programs'
 * arguments). Returns 0, or an exit status. */
static int backends_flags(int *argc, char **argv, bool *on, struct backends_options *bo) {
    static char list[256];
    const char *tol_given = NULL;
    int k = 0;
    for (int i = 0; i < *argc; i++) {
        if (strcmp(argv[i], "--") == 0) {
            bo->args = argv + i + 1;
            bo->nargs = *argc - i - 1;
            break;
        }
        if (strncmp(argv[i], "--rtol=", 7) == 0 || strncmp(argv[i], "--atol=", 7) == 0) {
            char *end;
            errno = 0;
            double v = strtod(argv[i] + 7, &end);
            if (errno || end == argv[i] + 7 || *end || !(v >= 0) || v > 1e30) {
                cli_usage_error("check", "%.6s needs a non-negative number, got '%s'", argv[i], argv[i] + 7);
                return CLI_EXIT_USAGE;
            }
            *(argv[i][2] == 'r' ? &bo->rtol : &bo->atol) = v;
            tol_given = argv[i];
            continue;
        }
        if (strncmp(argv[i], "--backends=", 11) != 0) {
            argv[k++] = argv[i];
            continue;
        }
        snprintf(list, sizeof list, "%s", argv[i] + 11);
        char *comma = strchr(list, ',');
        if (comma) *comma = '\0';
        bo->targets[0] = list;
        bo->targets[1] = comma ? comma + 1 : "";
        for (int t = 0; t < 2; t++) {
            const struct cg_target *target = cg_target_find(bo->targets[t]);
            if (!target || !target->emit) {
                cli_unknown_target("check", "backend", bo->targets[t], false);
                return CLI_EXIT_USAGE;
            }
        }
        if (strcmp(bo->targets[0], bo->targets[1]) == 0 || strchr(bo->targets[1], ',')) {
            cli_usage_error("check", "--backends takes two different backends, e.g. --backends=%s,%s",
                            cg_targets[0]->name,
                            cg_targets[1] && cg_targets[1]->emit ? cg_targets[1]->name : "B");
            return CLI_EXIT_USAGE;
        }
        *on = true;
    }
    *argc = k;
    if ((bo->nargs || tol_given) && !*on) {
        cli_usage_error("check", "%s %s for --backends", tol_given ? tol_given : "arguments after --",
                        tol_given ? "is an option" : "are");
        return CLI_EXIT_USAGE;
    }
    return 0;
}

static int cmd_check(int argc, char **argv) {
    struct flags fl;
    bool gradcheck = false, backends = false;
    struct gradcheck_options gc = {4, 1, 8};
    struct backends_options bo = {{NULL, NULL}, 0, 1e-3, 1e-5, 0, NULL};
    int st = backends_flags(&argc, argv, &backends, &bo);
    if (!st) st = check_flags(&argc, argv, backends, &gradcheck, &gc);
    if (!st) st = parse_flags("check", usage_check, "--verify", argc, argv, &fl);
    if (st) return st < 0 ? 0 : st;
    struct ir_module *m = fe_load(fl.file);
    if (!m) return CLI_EXIT_USER;
    struct pass_options opt = {true, NULL, false, false, stdout};
    bool ok = ir_verify(m) && pass_run_list(m, pass_pipeline(), &opt);
    if (ok) {
        int64_t nparams = 0, nvalues = 0, ninputs = 0;
        for (size_t i = 0; i < vec_len(m->buffers); i++) {
            const struct ir_buffer *b = &m->buffers[i];
            if (b->kind == BUF_INPUT) ninputs++;
            if (b->kind != BUF_PARAM) continue;
            nparams++;
            nvalues += shape_static_numel(&b->type.shape);
        }
        printf(
            "%s: ok: model %s, %lld input%s, %lld parameter tensor%s (%lld values), %zu function%s:", fl.file,
            m->name, (long long)ninputs, ninputs == 1 ? "" : "s", (long long)nparams, nparams == 1 ? "" : "s",
            (long long)nvalues, vec_len(m->funcs), vec_len(m->funcs) == 1 ? "" : "s");
        for (size_t i = 0; i < vec_len(m->funcs); i++) printf(" %s", m->funcs[i]->name);
        putchar('\n');
    }
    ir_module_free(m);
    if (ok && gradcheck) {
        /* A fresh module: the check differentiates it without optimizer lowering. */
        m = fe_load(fl.file);
        ok = m && gradcheck_run(m, &gc, stdout);
        if (m) ir_module_free(m);
    }
    if (ok && backends) {
        bo.seed = gc.seed;
        ok = backends_check(fl.file, &bo, NETC_VERSION);
    }
    return ok ? 0 : CLI_EXIT_USER;
}

/* ---------------------------------------------------------------- plot */

static const char usage_plot[] =
    "usage: netc plot METRICS.jsonl -o CURVES.png [--title T]\n"
    "\n"
    "Draw the training curves of a metrics file (`PROGRAM train --metrics F`, one\n"
    "JSON object per line) as a PNG, with cairo: losses (train, test, and each\n"
    "training step's own loss for models with several) and accuracies (train,\n"
    "test) against the epoch; records written with --log-every N add the per-step\n"
    "curve. `PROGRAM train --plot F` draws the same picture after every epoch.\n"
    "\n"
    "  -o FILE       the PNG to write (required)\n"
    "  --title T     a title (default: the metrics file's name)\n";

static int cmd_plot(int argc, char **argv) {
    const char *in = NULL, *out = NULL, *title = NULL;
    for (int i = 0; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            cli_print_usage(stdout, usage_plot);
            return 0;
        } else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc) {
            out = argv[++i];
        } else if (strncmp(argv[i], "--title=", 8) == 0) {
            title = argv[i] + 8;
        } else if (strcmp(argv[i], "--title") == 0 && i + 1 < argc) {
            title = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            cli_usage_error("plot", "unknown option or missing value '%s'", argv[i]);
            return CLI_EXIT_USAGE;
        } else {
            int st = cli_positional("plot", argv[i], &in);
            if (st) return st;
        }
    }
    if (!in || !out) {
        cli_usage_error("plot", !in ? "no input file" : "no output file: give -o CURVES.png");
        return CLI_EXIT_USAGE;
    }
    if (nrt_plot_metrics(in, out, title ? title : in)) {
        cli_user_error("plot", "%s", nrt_error());
        return CLI_EXIT_USER;
    }
    return 0;
}

/* -------------------------------------------------------------- passes */

static int cmd_passes(int argc, char **argv) {
    (void)argc, (void)argv;
    printf("passes (those marked * run in the default pipeline, in this order):\n");
    printf("   lower      the IR as the front end produces it (for --after)\n");
    for (int i = 0; i < pass_count; i++)
        printf(" %c %-10s %s\n", pass_table[i].in_pipeline ? '*' : ' ', pass_table[i].name,
               pass_table[i].help);
    return 0;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fputs(usage_main, stderr);
        return CLI_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    int rc;
    if (cli_is_help(cmd) || strcmp(cmd, "help") == 0) {
        fputs(usage_main, stdout);
        return 0;
    } else if (strcmp(cmd, "--version") == 0) {
        const struct runtime_paths *r = build_runtime();
        printf("netc %s\nruntime (%s): %s, headers in %s", NETC_VERSION,
               r->installed ? "installed" : "build tree", r->lib, r->include);
        for (const struct cg_target *const *t = cg_targets; *t; t++)
            if (*build_target_lib(*t)) printf(", %s layer %s", (*t)->name, build_target_lib(*t));
        printf("%s%s\n", *r->mpi_lib ? ", MPI layer " : "", r->mpi_lib);
        return 0;
    } else if (strcmp(cmd, "dump") == 0) {
        rc = cmd_dump(argc - 2, argv + 2);
    } else if (strcmp(cmd, "opt") == 0) {
        rc = cmd_opt(argc - 2, argv + 2);
    } else if (strcmp(cmd, "check") == 0) {
        rc = cmd_check(argc - 2, argv + 2);
    } else if (strcmp(cmd, "passes") == 0) {
        rc = cmd_passes(argc - 2, argv + 2);
    } else if (strcmp(cmd, "build") == 0) {
        rc = build_cmd_build(argc - 2, argv + 2, NETC_VERSION);
    } else if (strcmp(cmd, "emit") == 0) {
        rc = build_cmd_emit(argc - 2, argv + 2, NETC_VERSION);
    } else if (strcmp(cmd, "run") == 0) {
        rc = build_cmd_run(argc - 2, argv + 2, NETC_VERSION);
    } else if (strcmp(cmd, "plot") == 0) {
        rc = cmd_plot(argc - 2, argv + 2);
    } else {
        static const char *const cmds[] = {"check", "dump", "opt",  "passes", "build",
                                           "emit",  "run",  "plot", NULL};
        const char *near = diag_nearest(cmd, cmds);
        cli_usage_error(NULL, "unknown command '%s'%s%s%s", cmd, near ? " (did you mean '" : "",
                        near ? near : "", near ? "'?)" : "");
        return CLI_EXIT_USAGE;
    }
    diag_free();
    return rc;
}
