/* runtime/driver.c -- nrt_main, the command line of every program netc builds:
 * `train`, `eval`, `predict` and `info`. Sections: messages and options; feeds
 * (the model inputs' data loaded from their sources or --data/--test files, and
 * noise inputs drawn per batch); evaluation; the training loop with its progress
 * display, per-epoch metrics lines and checkpoints; predict; info; nrt_main.
 * Every error is one line `NAME: error: message` and exit status 1. */
#include "runtime/internal.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ messages -- */

static const char *prog = "model"; /* the program's name in messages */

static int fail(const char *fmt, ...) NRT_PRINTF(1, 2);
static int fail(const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "%s: error: ", prog);
    if (nrt_dp_size() > 1) /* mpirun: which rank */
        fprintf(stderr, "rank %d: ", nrt_dp_rank());
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

/* Reports the runtime's last error. */
static int fail_rt(void) { return fail("%s", nrt_error()); }

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------- options -- */

struct opts {
    const char *data, *test; /* --data, --test: comma-separated files */
    const char *save, *load; /* checkpoints */
    const char *metrics;     /* --metrics: JSON lines */
    const char *inputs[64];  /* predict: the input files */
    int n_inputs;
    int64_t epochs, max_steps; /* 0: from the model; max_steps -1: unlimited */
    int64_t batch;             /* 0: from the model */
    int64_t seed;              /* -1: from the model */
    double lr;                 /* --lr, when lr_set */
    int lr_set;
    int threads;      /* 0: OpenBLAS's default */
    int quiet;        /* --quiet: no progress */
    int64_t patience; /* --patience, when patience_set (0: off) */
    int patience_set;
    const char *device;  /* --device: the device layer's spec, or NULL */
    const char *samples; /* --samples DIR: a sample grid per epoch (samples.c) */
    const char *plot;    /* --plot F: curves redrawn every epoch (plot.c) */
    int64_t log_every;   /* --log-every N: a metrics record every N steps */
};

static const char usage_main[] = "usage: %s <command> [options]\n"
                                 "\n"
                                 "commands:\n"
                                 "  train     train the model (data sources from the model, or --data)\n"
                                 "  eval      evaluate a checkpoint on the test data\n"
                                 "  predict   run the model on an input file (IDX, .npy, CSV, PGM or PNG)\n"
                                 "  info      entry points, inputs, parameter count, memory\n"
                                 "  generate  sample text from a trained language model\n"
                                 "  sample    image generators: a PNG grid of generated images\n"
                                 "\n"
                                 "`%s <command> --help` documents each command's options.\n";

static const char usage_train[] =
    "usage: %s train [options]\n"
    "\n"
    "  --data F[,F2]     training files, replacing the model's data sources in order\n"
    "  --test F[,F2]     test files, evaluated at the end of every epoch\n"
    "  --epochs N        epochs to train (default: the model's train block)\n"
    "  --max-steps N     stop after N training steps (0: none; with --save, the\n"
    "                    initialised weights are saved)\n"
    "  --batch N         batch size (default: the model's)\n"
    "  --lr X            learning rate, replacing the optimizer's (0 allowed)\n"
    "  --seed S          random seed for initialisation, shuffling and noise\n"
    "  --threads T       threads (OpenBLAS and the runtime's; OpenCL builds: also\n"
    "                    PoCL's CPU device, unless POCL_MAX_PTHREAD_COUNT is set)\n"
    "  --load F          start from checkpoint F\n"
    "  --save F          write a checkpoint to F after every epoch (atomically)\n"
    "  --metrics F       write one JSON object per epoch to F\n"
    "  --log-every N     also write a record every N steps (\"type\":\"step\", the mean\n"
    "                    loss and accuracy of those steps) to the metrics\n"
    "  --plot F          draw the loss and accuracy curves into PNG F after every\n"
    "                    epoch (the metrics' records; see `netc plot`)\n"
    "  --samples DIR     image generators: write DIR/epoch-NNN.png after every\n"
    "                    epoch, a grid of generated images from the same noise\n"
    "  --patience N      early stopping: stop when the test loss has not improved\n"
    "                    for N epochs (default: the model's early_stopping; 0: off)\n"
    "  --device D        OpenCL builds: the device, P:D or a name substring;\n"
    "                    `--device list` prints them (default: $NETC_DEVICE, else\n"
    "                    the first GPU, else the first device)\n"
    "  --quiet           no progress display\n"
    "\n"
    "Built with `netc build --mpi`, `mpirun -np K PROGRAM train ...` trains on K\n"
    "ranks: --batch is per rank, rank 0 prints, saves and writes metrics, and\n"
    "--device A,B,... gives the rank with local rank l entry l mod count.\n";

static const char usage_eval[] =
    "usage: %s eval --load F [--test F[,F2]] [--batch N] [--threads T] [--device D]\n"
    "\n"
    "Evaluate checkpoint F on the model's test data (or --test files) and print\n"
    "the loss and metrics.\n";

static const char usage_predict[] =
    "usage: %s predict --load F INPUT... [--threads T] [--device D]\n"
    "\n"
    "Run the forward entry point on each INPUT (IDX, .npy or CSV; one item or a batch,\n"
    "scaled like the training data; or an 8-bit PGM or PNG image of exactly the\n"
    "input's height and width, colour converted to gray). Classifiers print each\n"
    "item's class and its probability, other models the output values; with\n"
    "several INPUTs, each file's lines follow a line `INPUT:`.\n";

static const char usage_info[] =
    "usage: %s info [--device list]\n\nDescribe the model: entry points, inputs, parameters, memory.\n";

static int parse_int(const char *flag, const char *v, int64_t lo, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo)
        return fail("%s expects an integer >= %lld, got '%s'", flag, (long long)lo, v);
    *out = x;
    return 0;
}

/* Parses the options of a command; `allowed` lists its flags. Returns 0 to go
 * on, -1 after --help, else an exit status. */
static int parse_opts(int argc, char **argv, const char *usage, const char *allowed, struct opts *o) {
    memset(o, 0, sizeof *o);
    o->seed = -1;
    o->max_steps = -1;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf(usage, prog);
            return -1;
        }
        if (a[0] != '-' || a[1] == '\0') {
            if (strstr(allowed, "INPUT") && o->n_inputs < (int)(sizeof o->inputs / sizeof *o->inputs)) {
                o->inputs[o->n_inputs++] = a;
                continue;
            }
            fail("unexpected argument '%s'", a);
            return 2;
        }
        char flag[64];
        const char *eq = strchr(a, '=');
        size_t flen = eq ? (size_t)(eq - a) : strlen(a);
        if (flen >= sizeof flag) flen = sizeof flag - 1;
        memcpy(flag, a, flen);
        flag[flen] = '\0';
        char key[72];
        snprintf(key, sizeof key, "%s ", flag);
        if (!strstr(allowed, key)) {
            fail("unknown option '%s' (see `%s --help`)", flag, prog);
            return 2;
        }
        if (strcmp(flag, "--quiet") == 0) {
            o->quiet = 1;
            continue;
        }
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else {
            fail("%s needs a value", flag);
            return 2;
        }
        int64_t v = 0;
        int rc = 0;
        if (strcmp(flag, "--data") == 0)
            o->data = val;
        else if (strcmp(flag, "--test") == 0)
            o->test = val;
        else if (strcmp(flag, "--save") == 0)
            o->save = val;
        else if (strcmp(flag, "--load") == 0)
            o->load = val;
        else if (strcmp(flag, "--metrics") == 0)
            o->metrics = val;
        else if (strcmp(flag, "--device") == 0)
            o->device = val;
        else if (strcmp(flag, "--samples") == 0)
            o->samples = val;
        else if (strcmp(flag, "--plot") == 0)
            o->plot = val;
        else if (strcmp(flag, "--log-every") == 0)
            rc = parse_int(flag, val, 1, &o->log_every);
        else if (strcmp(flag, "--epochs") == 0)
            rc = parse_int(flag, val, 1, &o->epochs);
        else if (strcmp(flag, "--max-steps") == 0)
            rc = parse_int(flag, val, 0, &o->max_steps);
        else if (strcmp(flag, "--patience") == 0) {
            rc = parse_int(flag, val, 0, &o->patience);
            o->patience_set = 1;
        } else if (strcmp(flag, "--batch") == 0)
            rc = parse_int(flag, val, 1, &o->batch);
        else if (strcmp(flag, "--seed") == 0)
            rc = parse_int(flag, val, 0, &o->seed);
        else if (strcmp(flag, "--threads") == 0) {
            rc = parse_int(flag, val, 1, &v);
            o->threads = v > 1024 ? 1024 : (int)v;
        } else if (strcmp(flag, "--lr") == 0) {
            char *end;
            o->lr = strtod(val, &end);
            if (end == val || *end || !(o->lr >= 0) || o->lr > 1e6)
                rc = fail("--lr expects a number from 0 to 1e6, got '%s'", val);
            o->lr_set = 1;
        }
        if (rc) return 1;
    }
    return 0;
}

/* --------------------------------------------------------------- feeds -- */

#define MAX_FILES 16

/* The data of the model's inputs for one purpose (training or test). */
struct feed {
    struct nrt_array *arr;              /* per buffer: loaded samples (data NULL: none or noise) */
    const struct nrt_source_desc **src; /* per buffer: its source, or NULL */
    struct nrt_source_desc
        *own;         /* per buffer: the source of a --data file for an input the model gives none */
    int64_t n;        /* samples (0: no file input) */
    const char *what; /* "training" or "test", for messages */
};

static void feed_free(const struct nrt_model *m, struct feed *f) {
    if (f->arr)
        for (int i = 0; i < m->n_buffers; i++) nrt_array_free(&f->arr[i]);
    free(f->arr);
    free(f->src);
    free(f->own);
    memset(f, 0, sizeof *f);
}

static int is_text_source(const struct nrt_source_desc *s) { return s->kind && strcmp(s->kind, "text") == 0; }

static int is_file_source(const struct nrt_source_desc *s) {
    return s->kind && (strcmp(s->kind, "idx") == 0 || strcmp(s->kind, "csv") == 0 ||
                       strcmp(s->kind, "npy") == 0 || is_text_source(s));
}

static int is_noise_source(const struct nrt_source_desc *s) {
    return s->kind && (strcmp(s->kind, "normal") == 0 || strcmp(s->kind, "uniform") == 0);
}

static double source_kw(const struct nrt_source_desc *s, const char *key, double def) {
    for (int i = 0; i < s->nkw; i++)
        if (strcmp(s->kw[i], key) == 0) return s->kwval[i];
    return def;
}

/* Splits "a,b" into at most MAX_FILES paths (pointers into buf). */
static int split_files(char *buf, const char **out) {
    int n = 0;
    for (char *p = buf; p && n < MAX_FILES;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        out[n++] = p;
        p = comma ? comma + 1 : NULL;
    }
    return n;
}

/* Items (product of the static dims) of one sample of buffer b. */
static int64_t row_count(const struct nrt_buffer_desc *b) {
    int64_t k = 1;
    for (int d = 0; d < b->rank; d++)
        if (b->dims[d] != NRT_DIM_N) k *= b->dims[d];
    return k;
}

/* Takes the `row` columns from `col` of CSV table t (raw values) into *out as
 * buffer b's dtype: features value*scale + shift, labels checked. Frees t. */
static int csv_columns(const struct nrt_buffer_desc *b, const char *path, struct nrt_array *t, int64_t col,
                       double scale, double shift, int32_t classes, struct nrt_array *out) {
    int64_t row = row_count(b), cols = t->dims[1];
    if (col < 0 || col + row > cols) {
        nrt_array_free(t);
        return fail("%s: input '%s' needs columns %lld..%lld, the file has %lld", path, b->name,
                    (long long)col, (long long)(col + row - 1), (long long)cols);
    }
    int64_t dims[2] = {t->dims[0], row};
    if (nrt_array_init(out, b->dtype, 2, dims)) {
        nrt_array_free(t);
        return fail_rt();
    }
    const float *src = t->data;
    for (int64_t r = 0; r < t->dims[0]; r++)
        for (int64_t k = 0; k < row; k++) {
            double v = src[r * cols + col + k];
            if (b->dtype == NRT_DT_F32) {
                ((float *)out->data)[r * row + k] = (float)(v * scale + shift);
                continue;
            }
            if (v != (double)(int32_t)v || (classes > 0 && (v < 0 || v >= classes))) {
                nrt_array_free(t);
                nrt_array_free(out);
                return fail("%s: line %lld: label %g of input '%s' is not %s", path, (long long)(r + 1), v,
                            b->name, classes > 0 ? "a class index in range" : "an integer");
            }
            ((int32_t *)out->data)[r * row + k] = (int32_t)v;
        }
    nrt_array_free(t);
    return 0;
}

/* Loads one file-sourced input from path into *out, checked against buffer b.
 * A file of the model's own source is read as the source says; a file given by
 * --data or --test (`given`) is read by its content: .npy, IDX (raw or gzip) or
 * CSV (columns from the source's `column` when the source is CSV, else 0). */
static int load_input(const struct nrt_buffer_desc *b, const struct nrt_source_desc *s, const char *path,
                      int given, struct nrt_array *out) {
    double scale = source_kw(s, "scale", 1), shift = source_kw(s, "shift", 0);
    int32_t classes = (int32_t)source_kw(s, "classes", 0);
    struct nrt_load_opts o =
        b->dtype == NRT_DT_I32 ? nrt_load_opts_labels(classes) : nrt_load_opts_features(scale, shift);
    struct nrt_load_opts raw = nrt_load_opts_features(1, 0);
    int64_t row = row_count(b), col = strcmp(s->kind, "csv") == 0 ? (int64_t)source_kw(s, "column", 0) : 0;
    int rc, csv = strcmp(s->kind, "csv") == 0;
    if (given) {
        if ((rc = nrt_data_load(out, path, &o, &raw, &csv))) return fail_rt();
        if (csv) {
            struct nrt_array t = *out;
            memset(out, 0, sizeof *out);
            if (csv_columns(b, path, &t, col, scale, shift, classes, out)) return 1;
        }
    } else if (csv) {
        struct nrt_array t = {0};
        if ((rc = nrt_csv_load(&t, path, &raw))) return fail_rt();
        if (csv_columns(b, path, &t, col, scale, shift, classes, out)) return 1;
    } else {
        rc = strcmp(s->kind, "idx") == 0 ? nrt_idx_load(out, path, &o) : nrt_npy_load(out, path, &o);
        if (rc) return fail_rt();
    }
    int64_t per = out->rank > 0 && out->dims[0] > 0 ? out->count / out->dims[0] : 0;
    if (out->rank < 1 || per != row) {
        char want[96], got[96];
        nrt_shape_format(want, sizeof want, b->dtype, b->rank, b->dims);
        nrt_shape_format(got, sizeof got, out->dtype, out->rank, out->dims);
        nrt_array_free(out);
        return fail("%s: input '%s' is %s (%lld values per item), the file holds %s", path, b->name, want,
                    (long long)row, got);
    }
    return 0;
}

/* The vocabulary of a text model (text sources), shared by the training and
 * test feeds and saved in checkpoints: from --load's checkpoint, else built
 * from the training files. */
static struct nrt_vocab text_vocab;

/* Loads the text inputs of a feed (sources `text`, runtime/text.c): role 0 is
 * the tokens i32[N, T], role 1 the next-token targets i32[N, T] (a language
 * model) or the class labels i32[N] (one file per class). `files` (--data or
 * --test, comma-separated) replaces the source's file list. The vocabulary is
 * built from the training files, so a test feed first reads those. */
static int text_feed(const struct nrt_model *m, struct feed *f, int test, const char *files) {
    int tok = -1, tgt = -1;
    for (int i = 0; i < m->n_buffers; i++)
        if (f->src[i] && is_text_source(f->src[i])) {
            int role = (int)source_kw(f->src[i], "role", 0);
            if (role == 0 && tok < 0)
                tok = i;
            else if (role == 1 && tgt < 0)
                tgt = i;
            else
                return fail("input '%s': a text source feeds one token input and one target input",
                            m->buffers[i].name);
        }
    if (tok < 0) return fail("text data needs a token input i32[N, T]");
    const struct nrt_buffer_desc *bt = &m->buffers[tok], *by = tgt >= 0 ? &m->buffers[tgt] : NULL;
    if (bt->dtype != NRT_DT_I32 || bt->rank != 2)
        return fail("input '%s': text tokens go to an i32[N, T] input", bt->name);
    int classify = by && by->rank == 1;
    if (by && (by->dtype != NRT_DT_I32 || (by->rank != 1 && (by->rank != 2 || by->dims[1] != bt->dims[1]))))
        return fail(
            "input '%s': text targets go to an i32[N, %lld] input (language model) or an i32[N] input "
            "(class labels)",
            by->name, (long long)bt->dims[1]);
    const struct nrt_source_desc *s = f->src[tok];
    struct nrt_text_opts o = {.t = bt->dims[1],
                              .classify = classify,
                              .bytes = source_kw(s, "bytes", 0) != 0,
                              .vocab = (int32_t)source_kw(s, "vocab", 256),
                              .holdout = source_kw(s, "holdout", 0),
                              .part = (int)source_kw(s, "part", test ? NRT_TEXT_ALL : NRT_TEXT_TRAIN)};
    char *buf = strdup(files ? files : s->path ? s->path : "");
    const char **paths = malloc(sizeof *paths * (strlen(buf) + 2));
    int rc = 0, n = 0;
    if (!buf || !paths) {
        rc = fail("out of memory");
        goto out;
    }
    for (char *p = buf; p;) {
        char *comma = strchr(p, ',');
        if (comma) *comma = '\0';
        if (*p) paths[n++] = p;
        p = comma ? comma + 1 : NULL;
    }
    if (!n) {
        rc = fail("text data: no files given");
        goto out;
    }
    if (!text_vocab.size && test) { /* the vocabulary of the training files */
        const struct nrt_source_desc *ts = &bt->data;
        if (!is_text_source(ts)) {
            rc = fail("input '%s': test text needs the training text's vocabulary (a checkpoint from --load)",
                      bt->name);
            goto out;
        }
        struct nrt_dataset tmp;
        char *tb = strdup(ts->path ? ts->path : "");
        const char **tp = malloc(sizeof *tp * (strlen(tb ? tb : "") + 2));
        int tn = 0;
        for (char *p = tb; p && tp;) {
            char *comma = strchr(p, ',');
            if (comma) *comma = '\0';
            if (*p) tp[tn++] = p;
            p = comma ? comma + 1 : NULL;
        }
        struct nrt_text_opts to = o;
        to.part = NRT_TEXT_TRAIN;
        to.holdout = source_kw(ts, "holdout", 0);
        rc = tb && tp ? nrt_text_dataset_load(&tmp, &text_vocab, &to, tn, tp)
                      : nrt_error_set(NRT_ERR_NOMEM, "out of memory");
        nrt_dataset_free(&tmp);
        free(tb);
        free(tp);
        if (rc) {
            rc = fail_rt();
            goto out;
        }
    }
    struct nrt_dataset ds;
    if (nrt_text_dataset_load(&ds, &text_vocab, &o, n, paths)) {
        rc = fail_rt();
        goto out;
    }
    f->arr[tok] = ds.x;
    if (tgt >= 0)
        f->arr[tgt] = ds.y;
    else
        nrt_array_free(&ds.y);
    f->n = ds.n;
out:
    free(buf);
    free(paths);
    return rc;
}

/* For a text model resumed from a checkpoint: its vocabulary, before any text is read. */
static int text_vocab_load(const struct nrt_model *m, const char *ckpt) {
    int text = 0;
    for (int i = 0; i < m->n_buffers; i++)
        text |= is_text_source(&m->buffers[i].data) || is_text_source(&m->buffers[i].test);
    if (!text || !ckpt || text_vocab.size) return 0;
    return nrt_vocab_ckpt_load(&text_vocab, ckpt) ? fail_rt() : 0;
}

/* Whether any of the listed entry points reads buffer i. */
static int read_by(const struct nrt_model *m, const int *entries, int ne, int i) {
    for (int k = 0; k < ne; k++) {
        const struct nrt_entry_desc *e = &m->entries[entries[k]];
        for (int j = 0; j < e->n_inputs; j++)
            if (e->inputs[j] == i) return 1;
    }
    return 0;
}

/* Loads what the listed entry points read: for `test`, the model's test sources
 * (or its data sources' layout with the --test files); files replace the
 * sources' paths in order of first appearance. Returns 0, 1 after an error, or
 * -1 when there is no test data at all. */
static int feed_load(const struct nrt_model *m, struct feed *f, int test, const char *files,
                     const int *entries, int ne) {
    memset(f, 0, sizeof *f);
    f->what = test ? "test" : "training";
    f->arr = calloc((size_t)m->n_buffers + 1, sizeof *f->arr);
    f->src = calloc((size_t)m->n_buffers + 1, sizeof *f->src);
    f->own = calloc((size_t)m->n_buffers + 1, sizeof *f->own);
    if (!f->arr || !f->src || !f->own) return fail("out of memory");
    const char *paths[MAX_FILES];
    int npaths = 0;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind != NRT_BUF_INPUT || !read_by(m, entries, ne, i)) continue;
        const struct nrt_source_desc *s = test ? &b->test : &b->data;
        if (test && !s->kind && !files) return -1; /* no test data: training goes on without evaluation */
        if (test && !s->kind) s = &b->data;        /* --test files take the training sources' layout */
        if (!s->kind && files) { /* one file per such input, in declaration order, read by content */
            f->own[i] = (struct nrt_source_desc){.kind = "npy", .path = b->name};
            s = &f->own[i];
        }
        if (!s->kind)
            return fail("input '%s' has no %s data source; give files with --%s", b->name, f->what,
                        test ? "test" : "data");
        f->src[i] = s;
        if (is_text_source(s)) continue; /* text_feed below */
        if (!is_file_source(s)) {
            if (!is_noise_source(s)) return fail("input '%s': unknown data source '%s'", b->name, s->kind);
            continue;
        }
        int k = 0;
        while (k < npaths && strcmp(paths[k], s->path) != 0) k++;
        if (k == npaths && npaths < MAX_FILES) paths[npaths++] = s->path;
    }
    int texts = 0;
    for (int i = 0; i < m->n_buffers; i++) texts += f->src[i] && is_text_source(f->src[i]);
    if (texts) {
        if (npaths) return fail("a model cannot read text data and other data files together");
        return text_feed(m, f, test, files);
    }
    char buf[4096];
    const char *repl[MAX_FILES];
    int nrepl = 0;
    if (files) {
        snprintf(buf, sizeof buf, "%s", files);
        nrepl = split_files(buf, repl);
        if (nrepl != npaths)
            return fail("--%s gives %d file%s, but the model reads %d %s file%s", test ? "test" : "data",
                        nrepl, nrepl == 1 ? "" : "s", npaths, f->what, npaths == 1 ? "" : "s");
    }
    const char *first = NULL;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_source_desc *s = f->src[i];
        if (!s || !is_file_source(s)) continue;
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->rank < 1 || b->dims[0] != NRT_DIM_N)
            return fail("input '%s' must have the batch dim N first to be fed from a file", b->name);
        const char *path = s->path;
        for (int k = 0; k < npaths && files; k++)
            if (strcmp(paths[k], s->path) == 0) path = repl[k];
        if (load_input(b, s, path, files != NULL, &f->arr[i])) return 1;
        if (!first) {
            first = path;
            f->n = f->arr[i].dims[0];
        } else if (f->arr[i].dims[0] != f->n) {
            return fail("%s has %lld items but %s has %lld", path, (long long)f->arr[i].dims[0], first,
                        (long long)f->n);
        }
    }
    if (!first && !test) return fail("the model reads no data file; give --data");
    return 0;
}

/* Fills the inputs of a batch: items perm[start..start+count) (or start... when
 * perm is NULL), and noise drawn from rng. */
static void feed_batch(struct nrt_ctx *ctx, const struct feed *f, const int64_t *perm, int64_t start,
                       int64_t count, struct nrt_rng *rng) {
    const struct nrt_model *m = ctx->model;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_source_desc *s = f->src[i];
        if (!s) continue;
        const struct nrt_buffer_desc *b = &m->buffers[i];
        int64_t row = row_count(b);
        if (is_noise_source(s)) {
            float *p = ctx->buf[i];
            double a = s->nargs > 0 ? s->args[0] : 0, c = s->nargs > 1 ? s->args[1] : 1;
            if (strcmp(s->kind, "normal") == 0)
                nrt_rng_fill_normal(rng, p, (size_t)(row * count), (float)a, (float)c);
            else
                nrt_rng_fill_uniform(rng, p, (size_t)(row * count), (float)a, (float)c);
            continue;
        }
        size_t bytes = (size_t)row * 4;
        const char *src = f->arr[i].data;
        char *dst = ctx->buf[i];
        for (int64_t k = 0; k < count; k++) {
            int64_t item = perm ? perm[start + k] : start + k;
            memcpy(dst + (size_t)k * bytes, src + (size_t)item * bytes, bytes);
        }
    }
}

/* ---------------------------------------------------------- evaluation -- */

/* Weighted means of an entry point's scalar f32 outputs over a whole feed. */
struct scores {
    double loss, accuracy; /* NAN where the entry has no such output */
    int64_t items;
};

static int evaluate(struct nrt_ctx *ctx, int e, const struct feed *f, struct nrt_rng *rng,
                    struct scores *out) {
    const struct nrt_entry_desc *ent = &ctx->model->entries[e];
    int li = ent->loss_output, ai = ent->accuracy_output;
    double sl = 0, sa = 0;
    int64_t lo, mine; /* mpirun: this rank's part of the data, summed below */
    nrt_dp_share(f->n, &lo, &mine);
    for (int64_t start = lo; start < lo + mine; start += ctx->max_n) {
        int64_t count = lo + mine - start < ctx->max_n ? lo + mine - start : ctx->max_n;
        feed_batch(ctx, f, NULL, start, count, rng);
        int r = nrt_ctx_run(ctx, e, count);
        if (r) return r == NRT_ERR_RANGE ? fail("%s data: %s", f->what, nrt_error()) : fail_rt();
        if (li >= 0) sl += (double)*(float *)ctx->out[li] * (double)count;
        if (ai >= 0) sa += (double)*(float *)ctx->out[ai] * (double)count;
    }
    double sums[2] = {sl, sa};
    nrt_dp_sum(sums, 2);
    sl = sums[0], sa = sums[1];
    out->items = f->n;
    out->loss = li >= 0 && f->n ? sl / (double)f->n : NAN;
    out->accuracy = ai >= 0 && f->n ? sa / (double)f->n : NAN;
    return 0;
}

/* The entry point that evaluates the loss on test data, or -1. */
static int eval_entry(const struct nrt_model *m) { return m->evaluate_entry; }

/* ------------------------------------------------------------- training -- */

/* Writes the learning rate of every training entry for epoch e at the context's
 * step (the buffer the descriptor names, lr_buffer; schedule.c has the
 * formulas); with only_per_step, only the entries whose schedule moves every
 * step. Returns the main entry's rate. */
static double set_lr(struct nrt_ctx *ctx, const struct opts *o, int64_t e, int only_per_step) {
    double first = NAN;
    const struct nrt_model *m = ctx->model;
    for (int k = 0; k < m->n_entries; k++) {
        const struct nrt_entry_desc *ent = &m->entries[k];
        if (ent->mode != NRT_MODE_TRAIN) continue;
        int b = ent->lr_buffer;
        if (b < 0 || b >= m->n_buffers || m->buffers[b].dtype != NRT_DT_F32) continue;
        double base = o->lr_set ? o->lr : m->buffers[b].init_a;
        if (only_per_step && !nrt_schedule_per_step(&ent->schedule)) continue;
        double lr = nrt_schedule_lr(&ent->schedule, base, e, (int64_t)ctx->step);
        if (isnan(first)) first = lr;
        if (*(float *)ctx->buf[b] == (float)lr && !ctx->host_dirty) continue;
        nrt_ctx_sync(ctx); /* a device model: the other state is newer on the device */
        *(float *)ctx->buf[b] = (float)lr;
        ctx->host_dirty = 1;
    }
    return first;
}

static void json_num(FILE *f, const char *key, double v) {
    if (isfinite(v))
        fprintf(f, ",\"%s\":%.9g", key, v);
    else
        fprintf(f, ",\"%s\":null", key);
}

/* A --log-every record: the mean loss and accuracy of the steps since the last
 * one (sums l, a over n items), at fractional epoch x; then the window restarts
 * at the running sums. */
static void log_steps(FILE *f, int64_t step, double x, double l, double a, int64_t n, double *wl, double *wa,
                      int64_t *wn, double sl, double sa, int64_t items) {
    fprintf(f, "{\"type\":\"step\",\"step\":%lld,\"epoch\":%.6g", (long long)step, x);
    json_num(f, "loss", n ? l / (double)n : NAN);
    json_num(f, "train_accuracy", n ? a / (double)n : NAN);
    *wl = sl, *wa = sa, *wn = items;
}

/* The progress line of a terminal: rewritten in place. */
static void progress(int64_t epoch, int64_t epochs, int64_t b, int64_t nb, double loss, double acc,
                     double ips) {
    int width = 24, done = nb ? (int)(width * b / nb) : width;
    char bar[32];
    for (int i = 0; i < width; i++) bar[i] = i < done ? '=' : i == done ? '>' : ' ';
    bar[width] = '\0';
    printf("\repoch %lld/%lld [%s] %3d%% loss %.4f", (long long)epoch, (long long)epochs, bar,
           nb ? (int)(100 * b / nb) : 100, loss);
    if (isfinite(acc)) printf(" acc %.4f", acc);
    printf(" %.0f items/s\033[K", ips);
    fflush(stdout);
}

static int cmd_train(const struct nrt_model *m, const struct opts *o) {
    struct opts own = *o; /* mpirun: rank 0 alone prints, writes metrics and saves */
    if (nrt_dp_rank() > 0) own.quiet = 1, own.metrics = NULL, own.save = NULL;
    o = &own;
    int train[32], nt = 0;
    for (int k = 0; k < m->n_entries && nt < 32; k++)
        if (m->entries[k].mode == NRT_MODE_TRAIN && k != m->batch_entry) train[nt++] = k;
    if (!nt) return fail("model '%s' has no training step (no loss?)", m->name);
    /* Several steps a batch: their batch function runs them as one (output k
     * the loss of step k); NETC_TRAIN_BATCH=0 runs them apart. */
    const char *apart = getenv("NETC_TRAIN_BATCH");
    int be = m->batch_entry >= 0 && m->entries[m->batch_entry].n_outputs >= nt &&
                     !(apart && strcmp(apart, "0") == 0)
                 ? m->batch_entry
                 : -1;
    int ev = eval_entry(m);
    int64_t batch = o->batch ? o->batch : m->batch ? m->batch : 32;
    int64_t epochs = o->epochs ? o->epochs : m->epochs ? m->epochs : 1;
    uint64_t seed = o->seed >= 0 ? (uint64_t)o->seed : (uint64_t)m->seed;
    struct feed tr, te;
    int rc = text_vocab_load(m, o->load);
    if (!rc) rc = feed_load(m, &tr, 0, o->data, train, nt);
    int has_test = 0;
    memset(&te, 0, sizeof te);
    if (!rc && ev >= 0) {
        int t = feed_load(m, &te, 1, o->test, &ev, 1);
        if (t > 0) rc = 1;
        has_test = t == 0 && te.n > 0;
    }
    struct nrt_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    FILE *mf = NULL;
    int64_t *perm = NULL;
    char tmp_metrics[4096] = "";
    if (rc) goto done;
    if (nrt_ctx_init(&ctx, m, batch, seed)) {
        rc = fail_rt();
        goto done;
    }
    if (o->load && nrt_dp_rank() == 0 && nrt_ckpt_load(&ctx, o->load)) {
        rc = fail_rt();
        goto done;
    }
    nrt_dp_bcast_ctx(&ctx); /* mpirun: rank 0's start, initialised or loaded */
    ctx.vocab = text_vocab.size ? &text_vocab : NULL;
    /* --plot draws from the metrics: without --metrics they go to a temporary file. */
    if (o->plot && !o->metrics)
        snprintf(tmp_metrics, sizeof tmp_metrics, "%s.metrics.tmp.%ld", o->plot, (long)getpid());
    const char *metrics = o->metrics ? o->metrics : tmp_metrics[0] ? tmp_metrics : NULL;
    if (o->samples && nrt_samples_check(m)) {
        rc = fail("--samples: %s", nrt_error());
        goto done;
    }
    if (metrics && !(mf = fopen(metrics, "w"))) {
        rc = fail("cannot write '%s': %s", metrics, strerror(errno));
        goto done;
    }
    perm = malloc(sizeof *perm * (size_t)(tr.n ? tr.n : 1));
    if (!perm) {
        rc = fail("out of memory");
        goto done;
    }
    struct nrt_rng shuffle, noise;
    nrt_rng_init(&shuffle, seed, 1);
    nrt_rng_init(&noise, seed, nrt_dp_rank() ? (uint64_t)1 << 32 | (uint64_t)nrt_dp_rank() : 2);
    const struct nrt_entry_desc *main_ent = &m->entries[train[0]];
    int loss_out[32];
    for (int k = 0; k < nt; k++) {
        const struct nrt_entry_desc *ent = &m->entries[train[k]];
        loss_out[k] = be >= 0 ? k : ent->loss_output;
    }
    int ai = be >= 0 ? m->entries[be].accuracy_output : main_ent->accuracy_output;
    int tty = isatty(STDOUT_FILENO) && !o->quiet && nrt_dp_size() == 1; /* mpirun gives ranks a pty */
    /* mpirun -np K: a step takes a global batch of K*batch items, shared out. */
    int64_t ranks = nrt_dp_size(), gbatch = batch * ranks;
    int64_t nb = nrt_dataset_batch_count(&(struct nrt_dataset){.n = tr.n}, gbatch);
    int64_t steps = 0, first_epoch = ctx.epoch;
    int stop = o->max_steps == 0, cut = 0; /* stop: --max-steps reached; cut: inside an epoch */
    if (!o->quiet)
        printf("training %s: %lld items, batch %lld%s, %lld epoch%s%s\n", m->name, (long long)tr.n,
               (long long)batch, ranks > 1 ? " per rank" : "", (long long)epochs, epochs == 1 ? "" : "s",
               has_test ? "" : ", no test data");
    if (!o->quiet && ranks > 1)
        printf("data parallel: %lld ranks, global batch %lld\n", (long long)ranks, (long long)gbatch);
    /* Early stopping watches the test loss at the end of each epoch. */
    int64_t patience = o->patience_set ? o->patience : m->patience, stale = 0, best_epoch = 0;
    double best_loss = INFINITY;
    if (patience > 0 && !has_test && !o->quiet)
        printf("early stopping needs test data: it is off for this run\n");
    for (int64_t e = 0; e < epochs && !stop; e++) {
        int64_t epoch = first_epoch + e;
        double lr = set_lr(&ctx, o, epoch, 0);
        int lr_steps = nrt_schedule_per_step(&main_ent->schedule);
        nrt_rng_perm(&shuffle, perm, tr.n);
        double t0 = now(), last_draw = 0, sl = 0, sa = 0;
        int64_t items = 0;
        double entry_loss[32] = {0}, win_e[32] = {0}, win_l = 0, win_a = 0;
        int64_t win_n = 0;
        for (int64_t b = 0; b < nb; b++) {
            int64_t start = b * gbatch, first, count;
            nrt_dp_share(tr.n - start < gbatch ? tr.n - start : gbatch, &first, &count);
            /* A rank without items in the last step runs one with weight 0. */
            feed_batch(&ctx, &tr, perm, count ? start + first : start, count ? count : 1, &noise);
            uint64_t salt = (uint64_t)nrt_dp_rank() << 40; /* dropout masks differ per rank */
            if (lr_steps) lr = set_lr(&ctx, o, epoch, 1);
            for (int k = 0; k < (be >= 0 ? 1 : nt); k++) {
                ctx.step += salt;
                int r = nrt_ctx_run(&ctx, be >= 0 ? be : train[k], count ? count : 1);
                ctx.step -= salt;
                if (r) {
                    rc = r == NRT_ERR_RANGE ? fail("training data: %s", nrt_error()) : fail_rt();
                    goto done;
                }
                int j0 = be >= 0 ? 0 : k, j1 = be >= 0 ? nt : k + 1; /* the steps this run took */
                for (int j = j0; j < j1; j++)
                    if (loss_out[j] >= 0)
                        entry_loss[j] += (double)*(float *)ctx.out[loss_out[j]] * (double)count;
                if (k == 0 && ai >= 0) sa += (double)*(float *)ctx.out[ai] * (double)count;
            }
            sl = entry_loss[0];
            ctx.step++;
            steps++;
            items += count;
            double t = now(), loss = sl / (double)items, acc = ai >= 0 ? sa / (double)items : NAN;
            if (tty && (t - last_draw > 0.1 || b + 1 == nb)) {
                progress(epoch + 1, first_epoch + epochs, b + 1, nb, loss, acc,
                         (double)(items * ranks) / (t - t0 + 1e-9));
                last_draw = t;
            } else if (!tty && !o->quiet && t - last_draw >= 5 && b + 1 < nb) {
                last_draw = t;
                printf("epoch %lld step %lld/%lld loss %.4f", (long long)(epoch + 1), (long long)(b + 1),
                       (long long)nb, loss);
                if (ai >= 0) printf(" acc %.4f", acc);
                printf("\n");
                fflush(stdout);
            }
            if (mf && o->log_every && steps % o->log_every == 0) {
                int64_t wn = items - win_n;
                log_steps(mf, steps, (double)epoch + (double)(b + 1) / (double)nb, sl - win_l,
                          ai >= 0 ? sa - win_a : NAN, wn, &win_l, &win_a, &win_n, sl, sa, items);
                for (int k = 0; k < nt && nt > 1; k++) { /* each training step's own loss */
                    json_num(mf, m->entries[train[k]].name,
                             wn ? (entry_loss[k] - win_e[k]) / (double)wn : NAN);
                    win_e[k] = entry_loss[k];
                }
                fprintf(mf, "}\n");
            }
            if (o->max_steps >= 0 && steps >= o->max_steps) {
                stop = 1;
                cut = b + 1 < nb;
                break;
            }
        }
        double secs = now() - t0;
        ctx.epoch = epoch + 1;
        double comm = nrt_dp_comm_seconds();
        if (ranks > 1) { /* the job's sums, and rank 0's state everywhere */
            double v[35] = {sl, sa, (double)items};
            for (int k = 0; k < nt; k++) v[3 + k] = entry_loss[k];
            nrt_dp_sum(v, 3 + nt);
            sl = v[0], sa = v[1], items = (int64_t)v[2];
            for (int k = 0; k < nt; k++) entry_loss[k] = v[3 + k];
            nrt_dp_bcast_ctx(&ctx);
        }
        struct scores ts = {NAN, NAN, 0};
        if (has_test && evaluate(&ctx, ev, &te, &noise, &ts)) {
            rc = 1;
            goto done;
        }
        double loss = items ? sl / (double)items : NAN, acc = ai >= 0 && items ? sa / (double)items : NAN;
        if (tty) printf("\r\033[K");
        if (!o->quiet) {
            printf("epoch %lld/%lld: loss %.4f", (long long)(epoch + 1), (long long)(first_epoch + epochs),
                   loss);
            for (int k = 1; k < nt && items; k++)
                printf(" %s %.4f",
                       m->entries[train[k]].loss ? m->entries[train[k]].loss : m->entries[train[k]].name,
                       entry_loss[k] / (double)items);
            if (ai >= 0) printf(" acc %.4f", acc);
            if (has_test) {
                printf(" | test loss %.4f", ts.loss);
                if (isfinite(ts.accuracy)) printf(" acc %.4f", ts.accuracy);
            }
            if (main_ent->schedule.kind && isfinite(lr)) printf(" | lr %.3g", lr);
            printf(" | %.1fs, %.0f items/s%s\n", secs, (double)items / (secs + 1e-9),
                   cut ? " (--max-steps)" : "");
            fflush(stdout);
        }
        if (mf) {
            fprintf(mf, "{\"epoch\":%lld", (long long)(epoch + 1));
            json_num(mf, "loss", loss);
            json_num(mf, "train_accuracy", acc);
            json_num(mf, "test_accuracy", ts.accuracy);
            json_num(mf, "test_loss", ts.loss);
            json_num(mf, "seconds", secs);
            json_num(mf, "images_per_second", (double)items / (secs + 1e-9));
            json_num(mf, "lr", lr);
            for (int k = 0; k < nt && nt > 1; k++)
                json_num(mf, m->entries[train[k]].name, items ? entry_loss[k] / (double)items : NAN);
            if (ranks > 1) /* waiting for gradient reductions, mean over the ranks */
                json_num(mf, "allreduce_seconds", comm);
            fprintf(mf, ",\"steps\":%lld,\"complete\":%s}\n", (long long)steps, cut ? "false" : "true");
            fflush(mf);
        }
        if (o->samples && nrt_samples_epoch(&ctx, o->samples, epoch + 1, seed)) {
            rc = fail("--samples: %s", nrt_error());
            goto done;
        }
        if (o->plot && nrt_plot_metrics(metrics, o->plot, m->name)) {
            rc = fail("--plot: %s", nrt_error());
            goto done;
        }
        if (o->save) nrt_ctx_sync(&ctx);
        if (o->save &&
            (ctx.failed ? nrt_error_set(NRT_ERR_IO, "%s", ctx.err) : nrt_ckpt_save(&ctx, o->save))) {
            rc = fail_rt();
            goto done;
        }
        if (patience > 0 && has_test && isfinite(ts.loss)) {
            if (ts.loss < best_loss) {
                best_loss = ts.loss;
                best_epoch = epoch + 1;
                stale = 0;
            } else if (++stale >= patience) {
                if (!o->quiet)
                    printf(
                        "early stopping: the test loss has not improved for %lld epoch%s (best %.4f at epoch "
                        "%lld)\n",
                        (long long)stale, stale == 1 ? "" : "s", best_loss, (long long)best_epoch);
                break;
            }
        }
    }
    if (o->max_steps == 0 && o->save) { /* no step: the initialised (or loaded) weights */
        nrt_ctx_sync(&ctx);
        if (ctx.failed ? nrt_error_set(NRT_ERR_IO, "%s", ctx.err) : nrt_ckpt_save(&ctx, o->save)) {
            rc = fail_rt();
            goto done;
        }
    }
    if (o->save && !o->quiet) printf("saved %s\n", o->save);
done:
    if (mf && fclose(mf) && !rc) rc = fail("cannot write '%s'", o->metrics ? o->metrics : tmp_metrics);
    if (tmp_metrics[0]) remove(tmp_metrics);
    free(perm);
    if (ctx.model) nrt_ctx_free(&ctx);
    feed_free(m, &tr);
    feed_free(m, &te);
    nrt_vocab_free(&text_vocab);
    return rc;
}

static int cmd_eval(const struct nrt_model *m, const struct opts *o) {
    int ev = eval_entry(m);
    if (ev < 0) return fail("model '%s' has no evaluate entry point (no loss?)", m->name);
    if (!o->load) return fail("eval needs a checkpoint: --load F");
    struct feed te;
    memset(&te, 0, sizeof te);
    if (text_vocab_load(m, o->load)) return 1;
    int rc = feed_load(m, &te, 1, o->test, &ev, 1);
    if (rc < 0) {
        feed_free(m, &te);
        return fail("model '%s' declares no test data; give files with --test", m->name);
    }
    struct nrt_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int64_t batch = o->batch ? o->batch : m->batch ? m->batch : 32;
    struct scores s;
    struct nrt_rng noise;
    nrt_rng_init(&noise, (uint64_t)m->seed, 3);
    if (rc) goto done;
    if (nrt_ctx_init(&ctx, m, batch, (uint64_t)m->seed) || nrt_ckpt_load(&ctx, o->load)) {
        rc = fail_rt();
        goto done;
    }
    if ((rc = evaluate(&ctx, ev, &te, &noise, &s))) goto done;
    if (nrt_dp_rank() == 0) {
        printf("test: %lld items, loss %.6f", (long long)s.items, s.loss);
        if (isfinite(s.accuracy)) printf(", accuracy %.4f", s.accuracy);
        printf("\n");
    }
done:
    if (ctx.model) nrt_ctx_free(&ctx);
    feed_free(m, &te);
    nrt_vocab_free(&text_vocab);
    return rc;
}

/* -------------------------------------------------------------- predict -- */

/* Whether path starts like a PGM or PNG image (the loader checks the rest). */
static int is_image(const char *path) {
    unsigned char head[8];
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    size_t n = fread(head, 1, sizeof head, f);
    fclose(f);
    return nrt_image_kind(head, n) != 0;
}

/* Runs the forward entry point on the items of one input file. */
static int predict_file(const struct nrt_model *m, const struct opts *o, const char *input) {
    int fw = m->forward_entry;
    if (fw < 0) return fail("model '%s' has no forward entry point", m->name);
    if (!o->load) return fail("predict needs a checkpoint: --load F");
    const struct nrt_entry_desc *ent = &m->entries[fw];
    if (ent->n_inputs != 1)
        return fail("predict handles models whose forward pass reads one input; '%s' reads %d", m->name,
                    ent->n_inputs);
    int bi = ent->inputs[0];
    const struct nrt_buffer_desc *b = &m->buffers[bi];
    const struct nrt_source_desc *s = b->data.kind ? &b->data : &b->test;
    struct nrt_load_opts lo =
        b->dtype == NRT_DT_I32 ? nrt_load_opts_labels(0)
                               : nrt_load_opts_features(source_kw(s, "scale", 1), source_kw(s, "shift", 0));
    struct nrt_array in = {0};
    if (nrt_array_load(&in, input, &lo)) return fail_rt();
    int64_t row = row_count(b), items = row ? in.count / row : 0;
    if (is_image(input) && (b->rank < 2 || b->dims[b->rank - 1] != in.dims[2] ||
                            b->dims[b->rank - 2] != in.dims[1] || row != in.count)) {
        char want[96];
        long long w = in.dims[2], h = in.dims[1];
        nrt_shape_format(want, sizeof want, b->dtype, b->rank, b->dims);
        nrt_array_free(&in);
        return fail("%s is %lldx%lld, model input %s is %s", input, w, h, b->name, want);
    }
    if (items < 1 || items * row != in.count) {
        nrt_array_free(&in);
        return fail("%s: %lld values do not make items of %lld values for input '%s'", input,
                    (long long)in.count, (long long)row, b->name);
    }
    struct nrt_ctx ctx;
    int64_t cap = items < 256 ? items : 256;
    if (nrt_ctx_init(&ctx, m, cap, (uint64_t)m->seed)) {
        nrt_array_free(&in);
        return fail_rt();
    }
    int rc = 0;
    if (nrt_ckpt_load(&ctx, o->load)) {
        rc = fail_rt();
        goto done;
    }
    int classifier = 0, ev = eval_entry(m);
    if (ev >= 0 && m->entries[ev].accuracy_output >= 0) classifier = 1;
    for (int64_t start = 0; start < items; start += cap) {
        int64_t count = items - start < cap ? items - start : cap;
        memcpy(ctx.buf[bi], (char *)in.data + (size_t)(start * row) * 4, (size_t)(count * row) * 4);
        if (nrt_ctx_run(&ctx, fw, count)) {
            rc = fail_rt();
            goto done;
        }
        for (int k = 0; k < ent->n_outputs; k++) {
            const struct nrt_output_desc *od = &ent->outputs[k];
            int64_t total = nrt_desc_count(od->rank, od->dims, count);
            int64_t per = od->rank > 0 && od->dims[0] == NRT_DIM_N ? total / count : 0;
            for (int64_t i = 0; i < count; i++) {
                if (!per && i > 0) break;
                const float *y = (const float *)ctx.out[k] + (per ? i * per : 0);
                int64_t len = per ? per : total;
                printf("%lld %s:", (long long)(start + i), od->name);
                if (classifier && od->dtype == NRT_DT_F32 && od->rank == 2 && len > 1) {
                    int64_t best = 0;
                    double mx = y[0], se = 0;
                    for (int64_t j = 1; j < len; j++)
                        if (y[j] > y[best]) best = j;
                    mx = y[best];
                    for (int64_t j = 0; j < len; j++) se += exp((double)y[j] - mx);
                    printf(" class %lld probability %.4f\n", (long long)best, 1.0 / se);
                    continue;
                }
                for (int64_t j = 0; j < len; j++) {
                    if (od->dtype == NRT_DT_I32)
                        printf(" %d", ((const int32_t *)ctx.out[k])[(per ? i * per : 0) + j]);
                    else
                        printf(" %.6g", y[j]);
                }
                printf("\n");
            }
        }
    }
done:
    nrt_ctx_free(&ctx);
    nrt_array_free(&in);
    return rc;
}

static int cmd_predict(const struct nrt_model *m, const struct opts *o) {
    if (!o->n_inputs) return fail("predict needs an input file");
    for (int i = 0; i < o->n_inputs; i++) {
        if (o->n_inputs > 1) printf("%s:\n", o->inputs[i]);
        int rc = predict_file(m, o, o->inputs[i]);
        if (rc) return rc;
    }
    return 0;
}

/* ----------------------------------------------------------------- info -- */

static void print_dims(const struct nrt_buffer_desc *b) {
    printf("%s[", nrt_dtype_name(b->dtype));
    for (int d = 0; d < b->rank; d++) {
        if (b->dims[d] == NRT_DIM_N)
            printf("%sN", d ? "," : "");
        else
            printf("%s%lld", d ? "," : "", (long long)b->dims[d]);
    }
    printf("]");
}

/* FLOPs as "12.3 MFLOPs". */
static const char *flops_str(double f, char *buf, size_t len) {
    const char *unit[] = {"", "K", "M", "G", "T"};
    int u = 0;
    while (f >= 1000 && u < 4) {
        f /= 1000;
        u++;
    }
    snprintf(buf, len, u ? "%.2f %sFLOPs" : "%.0f %sFLOPs", f, unit[u]);
    return buf;
}

/* The layer table of the forward entry point (computed by the compiler). */
static void print_layers(const struct nrt_model *m) {
    if (m->n_layers <= 0 || !m->layers) return;
    printf("layers of forward (FLOPs per item: 2 per multiply-add in conv and matmul, the window per pooled\n"
           "output, 0 for reshapes, 1 per element otherwise; elementwise ops join the layer before them):\n");
    printf("  %-44s %-20s %10s %12s\n", "layer", "output shape", "params", "FLOPs");
    int64_t params = 0;
    double flops = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const struct nrt_layer_desc *l = &m->layers[i];
        char label[128], shape[96];
        snprintf(label, sizeof label, "%-16s %s", l->op, l->name && l->name[0] ? l->name : "-");
        nrt_shape_format(shape, sizeof shape, l->dtype, l->rank, l->dims);
        printf("  %-44s %-20s %10lld %12.0f\n", label, shape, (long long)l->params, l->flops);
        params += l->params;
        flops += l->flops;
    }
    char a[32], b[32];
    printf("total: %lld parameters; forward %s per item (%.0f)\n", (long long)params,
           flops_str(flops, a, sizeof a), flops);
    if (m->train_flops > 0)
        printf("training step (all ops of %s): %s per item + %s per step\n",
               m->batch_entry >= 0 ? m->entries[m->batch_entry].name : "all training entry points",
               flops_str(m->train_flops, a, sizeof a), flops_str(m->train_flops_fixed, b, sizeof b));
}

static int cmd_info(const struct nrt_model *m) {
    int64_t batch = m->batch ? m->batch : 32, nparams = 0, ptensors = 0, state = 0;
    char hash[17];
    nrt_model_hash(m, hash);
    printf("model %s (netc %s, layout %s), target %s, OpenBLAS core %s, large GEMMs by %s\n", m->name,
           m->netc_version, hash, m->target ? m->target : "?", nrt_blas_core(), nrt_gemm_library());
    printf("inputs:\n");
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind == NRT_BUF_INPUT) {
            printf("  %-24s ", b->name);
            print_dims(b);
            if (b->data.kind) printf("  data %s(%s)", b->data.kind, b->data.path ? b->data.path : "");
            printf("\n");
        } else if (b->kind == NRT_BUF_PARAM) {
            nparams += nrt_desc_count(b->rank, b->dims, 1);
            ptensors++;
        } else {
            state += nrt_desc_count(b->rank, b->dims, 1);
        }
    }
    printf("parameters: %lld in %lld tensors (%.2f MB); optimizer and other state: %lld values\n",
           (long long)nparams, (long long)ptensors, (double)nparams * 4 / 1e6, (long long)state);
    printf("entry points:\n");
    size_t ws = 0;
    for (int k = 0; k < m->n_entries; k++) {
        const struct nrt_entry_desc *e = &m->entries[k];
        size_t need = e->ws_fixed + e->ws_per_n * (size_t)batch;
        if (need > ws) ws = need;
        printf("  %-12s %s", e->name, e->mode == NRT_MODE_TRAIN ? "train" : "eval ");
        if (e->optimizer) printf("  %s", e->optimizer);
        printf("  ->");
        for (int j = 0; j < e->n_outputs; j++) printf(" %s", e->outputs[j].name);
        printf("  (workspace %zu + %zu*N bytes)\n", e->ws_fixed, e->ws_per_n);
    }
    print_layers(m);
    nrt_dp_info(m);
    printf("memory at batch %lld: workspace %.2f MB, parameters and state %.2f MB\n", (long long)batch,
           (double)ws / 1e6, (double)(nparams + state) * 4 / 1e6);
    if (m->batch || m->epochs)
        printf("train: batch %lld, epochs %lld, seed %lld\n", (long long)m->batch, (long long)m->epochs,
               (long long)m->seed);
    return 0;
}

/* ------------------------------------------------------------- nrt_main -- */

/* The device options of a device model (its layer, struct nrt_device_ops):
 * --threads goes to the layer too; --device `list` prints the devices
 * (returns -1: exit 0), a spec selects one for nrt_ctx_init. Returns 0 to go
 * on, or an exit status. */
static int use_device(const struct nrt_model *m, const struct opts *o) {
    if (m->device && o->threads > 0) m->device->threads(o->threads);
    if (!o->device) return 0;
    if (!m->device)
        return fail(
            "--device: '%s' was built for the %s target, which runs on the host (CPU); build it for a "
            "device target (`netc build --help` lists them) to run it on a device",
            m->name, m->target ? m->target : "?");
    if (strcmp(o->device, "list") == 0) return m->device->list() ? fail_rt() : -1;
    nrt_ctx_device_set(o->device);
    return 0;
}

int nrt_main(int argc, char **argv, const struct nrt_model *model) {
    if (argc > 0 && argv[0]) {
        const char *slash = strrchr(argv[0], '/');
        prog = slash ? slash + 1 : argv[0];
    }
    int threads = 0;
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strncmp(argv[i], "--threads=", 10) == 0)
            threads = atoi(argv[i] + 10);
    nrt_blas_setup(argc, argv, threads);
    if (argc < 2) {
        fprintf(stderr, usage_main, prog, prog);
        return 2;
    }
    const char *cmd = argv[1];
    struct opts o;
    int rc;
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        printf(usage_main, prog, prog);
        return 0;
    }
    if (strcmp(cmd, "train") == 0) {
        rc = parse_opts(
            argc - 2, argv + 2, usage_train,
            "--data --test --epochs --max-steps --batch --lr --seed --threads --save --load --metrics "
            "--patience --device --quiet --samples --plot --log-every ",
            &o);
        if (rc) return rc < 0 ? 0 : rc;
        if ((rc = use_device(model, &o))) return rc < 0 ? 0 : rc;
        nrt_blas_threads(o.threads);
        return cmd_train(model, &o);
    }
    if (strcmp(cmd, "eval") == 0) {
        rc = parse_opts(argc - 2, argv + 2, usage_eval, "--load --test --batch --threads --device ", &o);
        if (rc) return rc < 0 ? 0 : rc;
        if ((rc = use_device(model, &o))) return rc < 0 ? 0 : rc;
        nrt_blas_threads(o.threads);
        return cmd_eval(model, &o);
    }
    if (strcmp(cmd, "predict") == 0) {
        rc = parse_opts(argc - 2, argv + 2, usage_predict, "--load --threads --device INPUT ", &o);
        if (rc) return rc < 0 ? 0 : rc;
        if ((rc = use_device(model, &o))) return rc < 0 ? 0 : rc;
        nrt_blas_threads(o.threads);
        return cmd_predict(model, &o);
    }
    if (strcmp(cmd, "sample") == 0) return nrt_sample_main(prog, argc - 2, argv + 2, model);
    if (strcmp(cmd, "info") == 0) {
        rc = parse_opts(argc - 2, argv + 2, usage_info, "--device ", &o);
        if (rc) return rc < 0 ? 0 : rc;
        if ((rc = use_device(model, &o))) return rc < 0 ? 0 : rc;
        return cmd_info(model);
    }
    if (strcmp(cmd, "generate") == 0) return nrt_generate_main(argc - 2, argv + 2, model, prog);
    fprintf(stderr,
            "%s: error: unknown command '%s' (commands: train, eval, predict, info, generate, sample)\n",
            prog, cmd);
    return 2;
}
