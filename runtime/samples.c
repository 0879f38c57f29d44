/* runtime/samples.c -- what an image generator generates, as a PNG grid: the
 * `sample` command (`PROGRAM sample --load CK -n 64 -o grid.png`) and train's
 * `--samples DIR` (one grid per epoch from the same noise). The forward entry
 * point runs on seeded noise; its image output [N, C, H, W] (C 1 or 3) or
 * [N, H, W] is mapped back to 0..255 by inverting the scaling of the model's
 * image data (x*scale + shift), and the images are tiled with a gray border.
 * Sections: PNG writing, choosing the output, the grid, the two commands. */
#include "runtime/internal.h"

#include <errno.h>
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------ PNG writing -- */

int nrt_png_write(const char *path, const unsigned char *pixels, int width, int height, int channels) {
    if (width < 1 || height < 1 || (channels != 1 && channels != 3))
        return nrt_error_set(NRT_ERR_ARG, "%s: cannot write a %dx%d image of %d channels", path, width,
                             height, channels);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)width;
    img.height = (png_uint_32)height;
    img.format = channels == 1 ? PNG_FORMAT_GRAY : PNG_FORMAT_RGB;
    if (!png_image_write_to_file(&img, tmp, 0, pixels, 0, NULL)) {
        int rc = nrt_error_set(NRT_ERR_IO, "cannot write '%s': %s", path,
                               img.message[0] ? img.message : strerror(errno));
        png_image_free(&img);
        remove(tmp);
        return rc;
    }
    png_image_free(&img);
    if (rename(tmp, path) != 0) {
        int rc = nrt_error_set(NRT_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
        remove(tmp);
        return rc;
    }
    return NRT_OK;
}

/* ------------------------------------------------------ choosing the output -- */

/* How a model's image output becomes pixels. */
struct sampler {
    int entry;           /* the forward entry point */
    int out;             /* its image output */
    int64_t c, h, w;     /* channels, height, width of one image */
    double scale, shift; /* the image data's scaling, inverted: pixel = (v - shift) / scale */
    const char *from;    /* the input whose scaling is inverted, or NULL (values taken as 0..1) */
};

/* Finds the forward entry point, checks that it reads only noise, and picks the
 * image output (`name`, else "sample", else the first image-shaped one). */
static int sampler_init(const struct nrt_model *m, const char *name, struct sampler *s) {
    memset(s, 0, sizeof *s);
    s->entry = m->forward_entry;
    if (s->entry < 0) return nrt_error_set(NRT_ERR_ARG, "model '%s' has no forward entry point", m->name);
    const struct nrt_entry_desc *e = &m->entries[s->entry];
    for (int j = 0; j < e->n_inputs; j++) {
        const struct nrt_buffer_desc *b = &m->buffers[e->inputs[j]];
        const char *k = b->data.kind;
        if (!k || (strcmp(k, "normal") != 0 && strcmp(k, "uniform") != 0))
            return nrt_error_set(NRT_ERR_ARG,
                                 "sample runs models whose forward pass reads only noise inputs (`input z : "
                                 "f32[N, 100] = normal(0, 1)`); '%s' reads input '%s' (use predict)",
                                 m->name, b->name);
    }
    s->out = -1;
    for (int pass = 0; pass < 2 && s->out < 0; pass++)
        for (int k = 0; k < e->n_outputs && s->out < 0; k++) {
            const struct nrt_output_desc *o = &e->outputs[k];
            const char *want = name ? name : pass == 0 ? "sample" : NULL;
            if (want && strcmp(o->name, want) != 0) continue;
            int img = o->dtype == NRT_DT_F32 && o->rank >= 3 && o->rank <= 4 && o->dims[0] == NRT_DIM_N &&
                      (o->rank == 3 || o->dims[1] == 1 || o->dims[1] == 3);
            if (!img && (name || pass == 0)) {
                if (name)
                    return nrt_error_set(NRT_ERR_ARG,
                                         "output '%s' is not an image batch [N, C, H, W] (C 1 or 3) "
                                         "or [N, H, W]",
                                         name);
                continue;
            }
            if (img) s->out = k;
        }
    if (s->out < 0)
        return nrt_error_set(NRT_ERR_ARG,
                             name ? "model '%s' has no output '%s'"
                                  : "model '%s' has no image output [N, C, H, W] or [N, H, W]%s",
                             m->name, name ? name : "");
    const struct nrt_output_desc *o = &e->outputs[s->out];
    s->c = o->rank == 4 ? o->dims[1] : 1;
    s->h = o->dims[o->rank - 2];
    s->w = o->dims[o->rank - 1];
    /* The scaling of training images of the same shape: invert it. */
    s->scale = 1.0 / 255;
    s->shift = 0;
    for (int i = 0; i < m->n_buffers; i++) {
        const struct nrt_buffer_desc *b = &m->buffers[i];
        if (b->kind != NRT_BUF_INPUT || !b->data.kind || b->rank != o->rank || b->dtype != NRT_DT_F32)
            continue;
        int same = 1;
        for (int d = 1; d < b->rank && same; d++) same = b->dims[d] == o->dims[d];
        if (!same) continue;
        s->scale = 1, s->shift = 0;
        for (int k = 0; k < b->data.nkw; k++) {
            if (strcmp(b->data.kw[k], "scale") == 0)
                s->scale = b->data.kwval[k];
            else if (strcmp(b->data.kw[k], "shift") == 0)
                s->shift = b->data.kwval[k];
        }
        s->from = b->name;
        break;
    }
    if (s->scale == 0)
        return nrt_error_set(NRT_ERR_ARG, "input '%s' is scaled by 0: its images cannot be recovered",
                             s->from);
    return NRT_OK;
}

/* --------------------------------------------------------------- the grid -- */

#define GRID_PAD 2         /* pixels between and around images */
#define GRID_PAD_VALUE 128 /* their gray */

/* Runs forward on n images of seeded noise and writes them as a PNG grid of
 * `cols` columns (0: ceil(sqrt(n))), each pixel zoom x zoom. */
static int sample_grid(struct nrt_ctx *ctx, const struct sampler *s, int64_t n, uint64_t seed, int64_t cols,
                       int64_t zoom, const char *path) {
    const struct nrt_model *m = ctx->model;
    const struct nrt_entry_desc *e = &m->entries[s->entry];
    if (cols <= 0) cols = (int64_t)ceil(sqrt((double)n));
    if (cols > n) cols = n;
    int64_t rows = (n + cols - 1) / cols, cw = s->w * zoom + GRID_PAD, ch = s->h * zoom + GRID_PAD;
    int64_t width = cols * cw + GRID_PAD, height = rows * ch + GRID_PAD;
    if (width > 32768 || height > 32768)
        return nrt_error_set(NRT_ERR_ARG, "a grid of %lldx%lld pixels is too large (at most 32768 a side)",
                             (long long)width, (long long)height);
    unsigned char *px = nrt_alloc((size_t)(width * height * s->c), 0);
    if (!px) return NRT_ERR_NOMEM;
    memset(px, GRID_PAD_VALUE, (size_t)(width * height * s->c));
    struct nrt_rng rng;
    nrt_rng_init(&rng, seed, 7); /* a stream of its own: the same seed gives the same images */
    int rc = NRT_OK;
    for (int64_t start = 0; start < n && !rc; start += ctx->max_n) {
        int64_t count = n - start < ctx->max_n ? n - start : ctx->max_n;
        for (int j = 0; j < e->n_inputs; j++) {
            const struct nrt_buffer_desc *b = &m->buffers[e->inputs[j]];
            const struct nrt_source_desc *src = &b->data;
            double a = src->nargs > 0 ? src->args[0] : 0, c = src->nargs > 1 ? src->args[1] : 1;
            size_t k = (size_t)nrt_desc_count(b->rank, b->dims, count);
            if (strcmp(src->kind, "normal") == 0)
                nrt_rng_fill_normal(&rng, ctx->buf[e->inputs[j]], k, (float)a, (float)c);
            else
                nrt_rng_fill_uniform(&rng, ctx->buf[e->inputs[j]], k, (float)a, (float)c);
        }
        if ((rc = nrt_ctx_run(ctx, s->entry, count))) break;
        const float *y = ctx->out[s->out];
        for (int64_t i = 0; i < count; i++) {
            int64_t g = start + i, x0 = GRID_PAD + (g % cols) * cw, y0 = GRID_PAD + (g / cols) * ch;
            for (int64_t c = 0; c < s->c; c++)
                for (int64_t r = 0; r < s->h * zoom; r++)
                    for (int64_t q = 0; q < s->w * zoom; q++) {
                        double v = y[((i * s->c + c) * s->h + r / zoom) * s->w + q / zoom];
                        double p = (v - s->shift) / s->scale;
                        p = p != p ? 0 : p < 0 ? 0 : p > 255 ? 255 : p;
                        px[((y0 + r) * width + x0 + q) * s->c + c] = (unsigned char)lrint(p);
                    }
        }
    }
    if (!rc) rc = nrt_png_write(path, px, (int)width, (int)height, (int)s->c);
    nrt_free(px);
    return rc;
}

/* ----------------------------------------------------------- the commands -- */

int nrt_samples_epoch(struct nrt_ctx *ctx, const char *dir, int64_t epoch, uint64_t seed) {
    struct sampler s;
    int rc = sampler_init(ctx->model, NULL, &s);
    if (rc) return rc;
    if (mkdir(dir, 0777) != 0 && errno != EEXIST)
        return nrt_error_set(NRT_ERR_IO, "cannot create directory '%s': %s", dir, strerror(errno));
    char path[4096];
    snprintf(path, sizeof path, "%s/epoch-%03lld.png", dir, (long long)epoch);
    nrt_ctx_sync(ctx);
    return sample_grid(ctx, &s, ctx->max_n < 64 ? ctx->max_n : 64, seed, 0, 2, path);
}

int nrt_samples_check(const struct nrt_model *m) {
    struct sampler s;
    return sampler_init(m, NULL, &s);
}

static const char usage_sample[] =
    "usage: %s sample --load F [-n N] [-o FILE.png] [--seed S] [--cols C] [--zoom Z] [--output NAME]\n"
    "\n"
    "Run the forward entry point on N draws of the model's noise inputs (seeded:\n"
    "the same seed gives the same images) and write its image output as a PNG\n"
    "grid. Values are mapped back to 0..255 by inverting the scaling of the\n"
    "model's training images of the same shape (`scale 2/255 shift -1` makes a\n"
    "tanh output in [-1, 1] 0..255 again), else taken as 0..1.\n"
    "\n"
    "  --load F      the checkpoint (required)\n"
    "  -n N          images (default 64)\n"
    "  -o FILE       the PNG to write (default samples.png)\n"
    "  --seed S      seed of the noise (default the model's seed)\n"
    "  --cols C      images per row (default ceil(sqrt(N)))\n"
    "  --zoom Z      pixels per image pixel, each way (default 2)\n"
    "  --output NAME the output to draw (default `sample`, else the first image-shaped one)\n"
    "  --threads T   threads\n";

/* An integer option value in [lo, hi]. */
static int sample_int(const char *prog, const char *flag, const char *v, int64_t lo, int64_t hi,
                      int64_t *out) {
    char *end;
    errno = 0;
    long long x = v ? strtoll(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "%s: error: %s expects an integer in [%lld, %lld], got '%s'\n", prog, flag,
                (long long)lo, (long long)hi, v ? v : "nothing");
        return 2;
    }
    *out = x;
    return 0;
}

int nrt_sample_main(const char *prog, int argc, char **argv, const struct nrt_model *m) {
    const char *load = NULL, *out = "samples.png", *output = NULL;
    int64_t n = 64, seed = m->seed, cols = 0, zoom = 2, threads = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int rc = 0;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            printf(usage_sample, prog);
            return 0;
        } else if (strcmp(a, "--load") == 0 && v) {
            load = v, i++;
        } else if (strcmp(a, "-o") == 0 && v) {
            out = v, i++;
        } else if (strcmp(a, "--output") == 0 && v) {
            output = v, i++;
        } else if (strcmp(a, "-n") == 0) {
            rc = sample_int(prog, a, v, 1, 4096, &n), i++;
        } else if (strcmp(a, "--seed") == 0) {
            rc = sample_int(prog, a, v, 0, INT64_MAX, &seed), i++;
        } else if (strcmp(a, "--cols") == 0) {
            rc = sample_int(prog, a, v, 1, 4096, &cols), i++;
        } else if (strcmp(a, "--zoom") == 0) {
            rc = sample_int(prog, a, v, 1, 16, &zoom), i++;
        } else if (strcmp(a, "--threads") == 0) {
            rc = sample_int(prog, a, v, 1, 1024, &threads), i++;
        } else {
            fprintf(stderr, "%s: error: %s '%s' (see `%s sample --help`)\n", prog,
                    a[0] == '-' && !v ? "missing value or unknown option" : "unexpected argument", a, prog);
            return 2;
        }
        if (rc) return rc;
    }
    if (!load) {
        fprintf(stderr, "%s: error: sample needs a checkpoint: --load F\n", prog);
        return 1;
    }
    nrt_blas_threads((int)threads);
    struct sampler s;
    struct nrt_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    int rc = sampler_init(m, output, &s);
    if (!rc) rc = nrt_ctx_init(&ctx, m, n < 256 ? n : 256, (uint64_t)m->seed);
    if (!rc) rc = nrt_ckpt_load(&ctx, load);
    if (!rc) rc = sample_grid(&ctx, &s, n, (uint64_t)seed, cols, zoom, out);
    if (ctx.model) nrt_ctx_free(&ctx);
    if (rc) {
        fprintf(stderr, "%s: error: %s\n", prog, nrt_error());
        return 1;
    }
    printf("wrote %s: %lld images of %lldx%lld%s, pixels = (%s - %g) / %g%s%s\n", out, (long long)n,
           (long long)s.w, (long long)s.h, s.c == 3 ? " RGB" : "", m->entries[s.entry].outputs[s.out].name,
           s.shift, s.scale, s.from ? ", the scaling of input " : " (no image input to invert)",
           s.from ? s.from : "");
    return 0;
}
