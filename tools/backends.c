/* tools/backends.c -- `netc check FILE.net --backends=A,B`: build the model for
 * two targets, run one training step of each from the same seed (the same
 * initial weights, the same first batch), and compare what they computed: every
 * parameter and state tensor of the two checkpoints, and every number of the
 * step's metrics line (losses, accuracies). Sections: running the programs,
 * reading their results, the comparison. */
#include "tools/backends.h"

#include "runtime/netrt.h"
#include "tools/build.h"

#include <errno.h>
#include <stdarg.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define PATH_MAX_ 4096

static void check_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void check_error(const char *fmt, ...) {
    va_list ap;
    fprintf(stderr, "netc check: error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* ------------------------------------------------------------- running */

/* Runs `prog train` for one step, saving the checkpoint and the metrics line;
 * true on exit status 0. The program's output goes to ours. */
static bool run_step(const char *prog, const struct backends_options *o, const char *ckpt,
                     const char *metrics) {
    char seed[32];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)o->seed);
    const char *fixed[] = {prog, "train",   "--max-steps", "1",  "--epochs",  "1",    "--seed",
                           seed, "--quiet", "--save",      ckpt, "--metrics", metrics};
    int nfixed = (int)(sizeof fixed / sizeof *fixed);
    char **argv = calloc((size_t)(nfixed + o->nargs + 1), sizeof *argv);
    if (!argv) return false;
    for (int i = 0; i < nfixed; i++) argv[i] = (char *)fixed[i];
    for (int i = 0; i < o->nargs; i++) argv[nfixed + i] = o->args[i];
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        execv(prog, argv);
        fprintf(stderr, "netc check: error: cannot run '%s': %s\n", prog, strerror(errno));
        _exit(127);
    }
    free(argv);
    int st = 0;
    while (pid > 0 && waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return false;
    if (pid > 0 && WIFEXITED(st) && WEXITSTATUS(st) == 0) return true;
    if (pid < 0)
        check_error("cannot start '%s': %s", prog, strerror(errno));
    else
        check_error("the %s program failed its training step (%s %d)", strrchr(prog, '/') + 1,
                    WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return false;
}

/* --------------------------------------------------------------- results */

/* The numbers of a metrics line: `"key":value` pairs (null values skipped). */
struct metrics {
    int n;            /* pairs */
    char key[32][48]; /* their keys */
    double val[32];   /* their values */
};

static bool read_metrics(const char *path, struct metrics *m) {
    memset(m, 0, sizeof *m);
    FILE *f = fopen(path, "r");
    char line[4096];
    if (!f || !fgets(line, sizeof line, f)) {
        check_error("no metrics in '%s'", path);
        if (f) fclose(f);
        return false;
    }
    fclose(f);
    for (char *p = line; (p = strchr(p, '"')) && m->n < 32;) {
        char *end = strchr(p + 1, '"');
        if (!end) break;
        size_t len = (size_t)(end - p - 1);
        char *v = end + 1;
        if (*v == ':') v++;
        char *num_end;
        double d = strtod(v, &num_end);
        if (num_end != v && len < sizeof m->key[0]) {
            memcpy(m->key[m->n], p + 1, len);
            m->key[m->n][len] = '\0';
            m->val[m->n++] = d;
        }
        p = num_end != v ? num_end : end + 1;
    }
    return true;
}

/* Metrics that measure time, not results. */
static bool timing_key(const char *k) {
    return strcmp(k, "seconds") == 0 || strcmp(k, "images_per_second") == 0 || strcmp(k, "epoch") == 0 ||
           strcmp(k, "steps") == 0;
}

/* ----------------------------------------------------------- comparison */

/* Differences of two arrays: the largest absolute and relative ones, and
 * whether every element is within atol + rtol * scale, where scale is the
 * largest magnitude of the whole tensor on either side (for a scalar metric,
 * max(|a|, |b|)). Scaling by the tensor, not the element, is the float32
 * noise criterion: an element near zero is the sum of terms as large as the
 * tensor's others, and Adam's first step turns a gradient near its epsilon
 * into an update whose rounding noise is lr/eps times the gradient's. */
struct diff {
    double abs, rel; /* largest |a-b| and |a-b| / max(|a|,|b|) */
    bool ok;         /* within tolerance */
};

static void diff_add(struct diff *d, double a, double b, double scale, const struct backends_options *o) {
    double e = fabs(a - b), m = fmax(fabs(a), fabs(b));
    if (isnan(a) != isnan(b)) e = INFINITY;
    if (e > d->abs) d->abs = e;
    if (m > 0 && e / m > d->rel) d->rel = e / m;
    if (!(e <= o->atol + o->rtol * scale) && !(isnan(a) && isnan(b))) d->ok = false;
}

static void diff_print(const char *what, const char *name, const char *shape, const struct diff *d) {
    printf("  %-6s %-36s %-14s max abs %-10.3g max rel %-10.3g %s\n", what, name, shape, d->abs, d->rel,
           d->ok ? "ok" : "DIFFERS");
}

/* Compares every tensor of checkpoint a (reference) with b. */
static bool compare_ckpts(const char *pa, const char *pb, const struct backends_options *o) {
    struct nrt_st_reader a, b;
    if (nrt_st_reader_init(&a, pa)) {
        check_error("%s", nrt_error());
        return false;
    }
    if (nrt_st_reader_init(&b, pb)) {
        check_error("%s", nrt_error());
        nrt_st_reader_free(&a);
        return false;
    }
    bool ok = true;
    for (int i = 0; i < a.n_tensors; i++) {
        const struct nrt_st_tensor *ta = &a.tensors[i], *tb = nrt_st_reader_find(&b, ta->name);
        char shape[64];
        int at = snprintf(shape, sizeof shape, "[");
        for (int d = 0; d < ta->rank && at < (int)sizeof shape - 12; d++)
            at += snprintf(shape + at, sizeof shape - (size_t)at, "%s%lld", d ? "," : "",
                           (long long)ta->dims[d]);
        snprintf(shape + at, sizeof shape - (size_t)at, "]");
        if (!tb || tb->count != ta->count || tb->dtype != ta->dtype) {
            printf("  tensor %-36s %-14s missing or of another shape in the %s checkpoint\n", ta->name, shape,
                   o->targets[1]);
            ok = false;
            continue;
        }
        struct diff d = {0, 0, true};
        double scale = 0;
        for (int pass = 0; pass < 2; pass++)
            for (int64_t k = 0; k < ta->count; k++) {
                double x =
                    ta->dtype == NRT_DT_I32 ? ((const int32_t *)ta->data)[k] : ((const float *)ta->data)[k];
                double y =
                    tb->dtype == NRT_DT_I32 ? ((const int32_t *)tb->data)[k] : ((const float *)tb->data)[k];
                if (pass == 0)
                    scale = fmax(scale, fmax(fabs(x), fabs(y)));
                else
                    diff_add(&d, x, y, scale, o);
            }
        diff_print("tensor", ta->name, shape, &d);
        ok &= d.ok;
    }
    nrt_st_reader_free(&a);
    nrt_st_reader_free(&b);
    return ok;
}

static bool compare_metrics(const char *pa, const char *pb, const struct backends_options *o) {
    struct metrics a, b;
    if (!read_metrics(pa, &a) || !read_metrics(pb, &b)) return false;
    bool ok = true;
    for (int i = 0; i < a.n; i++) {
        if (timing_key(a.key[i])) continue;
        int j = 0;
        while (j < b.n && strcmp(a.key[i], b.key[j]) != 0) j++;
        if (j == b.n) {
            printf("  output %-36s missing from the %s run\n", a.key[i], o->targets[1]);
            ok = false;
            continue;
        }
        struct diff d = {0, 0, true};
        diff_add(&d, a.val[i], b.val[j], fmax(fabs(a.val[i]), fabs(b.val[j])), o);
        char vals[64];
        snprintf(vals, sizeof vals, "%.6g", a.val[i]);
        diff_print("output", a.key[i], vals, &d);
        ok &= d.ok;
    }
    return ok;
}

/* ------------------------------------------------------------- command */

bool backends_check(const char *file, const struct backends_options *o, const char *version) {
    const char *tdir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[PATH_MAX_];
    snprintf(dir, sizeof dir, "%s/netc-check-XXXXXX", tdir);
    if (!mkdtemp(dir)) {
        check_error("cannot create a temporary directory in %s: %s", tdir, strerror(errno));
        return false;
    }
    char prog[2][PATH_MAX_ + 32], ckpt[2][PATH_MAX_ + 32], met[2][PATH_MAX_ + 32];
    bool ok = true;
    for (int t = 0; t < 2 && ok; t++) {
        snprintf(prog[t], sizeof prog[t], "%s/model_%s", dir, o->targets[t]);
        snprintf(ckpt[t], sizeof ckpt[t], "%s/step_%s.safetensors", dir, o->targets[t]);
        snprintf(met[t], sizeof met[t], "%s/step_%s.jsonl", dir, o->targets[t]);
        ok = build_program("check", file, o->targets[t], prog[t], version) &&
             run_step(prog[t], o, ckpt[t], met[t]);
    }
    if (ok) {
        printf(
            "%s: one training step (seed %llu) on %s and %s; tolerance |%s - %s| <= %g + %g * (the tensor's "
            "largest |value|)\n",
            file, (unsigned long long)o->seed, o->targets[0], o->targets[1], o->targets[1], o->targets[0],
            o->atol, o->rtol);
        bool same = compare_ckpts(ckpt[0], ckpt[1], o);
        same &= compare_metrics(met[0], met[1], o);
        printf("%s: %s\n", file, same ? "the backends agree" : "the backends DIFFER beyond the tolerance");
        ok = same;
    }
    for (int t = 0; t < 2; t++) {
        remove(prog[t]);
        remove(ckpt[t]);
        remove(met[t]);
    }
    rmdir(dir);
    return ok;
}
