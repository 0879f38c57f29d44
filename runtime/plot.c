/* runtime/plot.c -- training curves as a PNG, drawn with cairo: `PROGRAM train
 * --plot F` and `netc plot METRICS.jsonl -o F`. Reads the metrics file the
 * driver writes (one JSON object per line: per-epoch records, and per-step
 * records {"type":"step", ...} with --log-every), and draws the losses (train,
 * test, each training step's loss of several-loss models, the per-step loss as a
 * thin line) and the accuracies (train, test) against the epoch, in two panels.
 * Sections: reading the metrics, series, axes, drawing. Without cairo (netc
 * configured where libcairo2-dev was missing) nrt_plot_metrics reports that. */
#include "runtime/internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#ifdef NETC_HAVE_CAIRO
#include <cairo.h>
#endif

#ifdef NETC_HAVE_CAIRO

/* ------------------------------------------------------ reading the metrics -- */

#define PLOT_PI 3.14159265358979323846
#define PLOT_MAX_SERIES 12
#define PLOT_MAX_NAME 48

/* One curve: points (x = epoch, y) in file order. */
struct series {
    char name[PLOT_MAX_NAME]; /* the JSON key, or "loss (per step)" */
    int step;                 /* from per-step records */
    int panel;                /* 0 losses, 1 accuracies */
    double *x, *y;            /* points */
    int n, cap;
};

struct plot {
    struct series s[PLOT_MAX_SERIES];
    int ns;
    double last_step_x; /* x of the last per-step record */
};

static struct series *series_get(struct plot *p, const char *key, int step) {
    for (int i = 0; i < p->ns; i++)
        if (p->s[i].step == step && strcmp(p->s[i].name, key) == 0) return &p->s[i];
    if (p->ns == PLOT_MAX_SERIES) return NULL;
    struct series *s = &p->s[p->ns++];
    memset(s, 0, sizeof *s);
    size_t len = strnlen(key, sizeof s->name - 1);
    memcpy(s->name, key, len);
    s->name[len] = '\0';
    s->step = step;
    s->panel = strstr(key, "accuracy") != NULL;
    return s;
}

static int series_add(struct series *s, double x, double y) {
    if (s->n == s->cap) {
        int cap = s->cap ? 2 * s->cap : 64;
        double *nx = nrt_realloc(s->x, sizeof *nx * (size_t)cap);
        if (!nx) return NRT_ERR_NOMEM;
        s->x = nx;
        double *ny = nrt_realloc(s->y, sizeof *ny * (size_t)cap);
        if (!ny) return NRT_ERR_NOMEM;
        s->y = ny;
        s->cap = cap;
    }
    s->x[s->n] = x;
    s->y[s->n++] = y;
    return NRT_OK;
}

/* Keys that are not curves. */
static int plot_skip(const char *key) {
    static const char *const skip[] = {"epoch", "seconds", "images_per_second", "steps", "step", "complete",
                                       "type",  NULL};
    for (int i = 0; skip[i]; i++)
        if (strcmp(key, skip[i]) == 0) return 1;
    return 0;
}

/* Parses one line, a flat JSON object of numbers, null, booleans and strings,
 * into its series. Returns NRT_OK, or NRT_ERR_FORMAT with the message set. */
static int plot_line(struct plot *p, const char *path, int lineno, const char *s) {
    char keys[24][PLOT_MAX_NAME];
    double vals[24];
    int nk = 0, is_step = 0, incomplete = 0;
    double epoch = NAN;
    while (*s == ' ' || *s == '\t') s++;
    if (*s == '\0' || *s == '\n' || *s == '\r') return NRT_OK;
    if (*s++ != '{') goto bad;
    for (;;) {
        while (*s == ' ' || *s == ',') s++;
        if (*s == '}') break;
        if (*s++ != '"') goto bad;
        char key[PLOT_MAX_NAME];
        size_t k = 0;
        while (*s && *s != '"') {
            if (k + 1 < sizeof key) key[k++] = *s;
            s++;
        }
        key[k] = '\0';
        if (*s++ != '"') goto bad;
        while (*s == ' ') s++;
        if (*s++ != ':') goto bad;
        while (*s == ' ') s++;
        double v = NAN;
        if (*s == '"') {
            const char *e = strchr(s + 1, '"');
            if (!e) goto bad;
            if (strcmp(key, "type") == 0 && e - s - 1 == 4 && strncmp(s + 1, "step", 4) == 0) is_step = 1;
            s = e + 1;
            continue;
        } else if (strncmp(s, "null", 4) == 0) {
            s += 4;
        } else if (strncmp(s, "true", 4) == 0 || strncmp(s, "false", 5) == 0) {
            if (strcmp(key, "complete") == 0 && *s == 'f') incomplete = 1;
            s += *s == 't' ? 4 : 5;
        } else {
            char *end;
            v = strtod(s, &end);
            if (end == s) goto bad;
            s = end;
        }
        if (strcmp(key, "epoch") == 0)
            epoch = v;
        else if (!plot_skip(key) && nk < 24) {
            memcpy(keys[nk], key, sizeof key);
            vals[nk++] = v;
        }
    }
    if (!isfinite(epoch))
        return nrt_error_set(NRT_ERR_FORMAT, "%s:%d: a metrics record without an \"epoch\"", path, lineno);
    /* An epoch cut short (--max-steps) ends where its last step record is. */
    if (is_step)
        p->last_step_x = epoch;
    else if (incomplete && p->last_step_x > epoch - 1 && p->last_step_x < epoch)
        epoch = p->last_step_x;
    /* Models with several training steps log each step's loss under its name;
     * "loss" is then the first of them again. */
    int per_entry = 0;
    for (int i = 0; i < nk; i++)
        per_entry |= strcmp(keys[i], "loss") != 0 && strcmp(keys[i], "test_loss") != 0 &&
                     strstr(keys[i], "accuracy") == NULL;
    for (int i = 0; i < nk; i++) {
        if (!isfinite(vals[i]) || (per_entry && strcmp(keys[i], "loss") == 0)) continue;
        struct series *se = series_get(p, keys[i], is_step);
        if (se && series_add(se, epoch, vals[i])) return NRT_ERR_NOMEM;
    }
    return NRT_OK;
bad:
    return nrt_error_set(NRT_ERR_FORMAT, "%s:%d: not a metrics line (a JSON object of numbers)", path,
                         lineno);
}

static void plot_free(struct plot *p) {
    for (int i = 0; i < p->ns; i++) {
        nrt_free(p->s[i].x);
        nrt_free(p->s[i].y);
    }
    memset(p, 0, sizeof *p);
}

static int plot_read(struct plot *p, const char *path) {
    FILE *f = fopen(path, "r");
    if (!f) return nrt_error_set(NRT_ERR_IO, "cannot open '%s': %s", path, strerror(errno));
    char line[4096];
    int rc = NRT_OK, no = 0;
    while (!rc && fgets(line, sizeof line, f)) {
        no++;
        rc = plot_line(p, path, no, line);
    }
    fclose(f);
    if (!rc && p->ns == 0) rc = nrt_error_set(NRT_ERR_FORMAT, "%s: no losses or accuracies to plot", path);
    return rc;
}

/* ------------------------------------------------------------- drawing -- */

/* A "nice" tick step (1, 2 or 5 times a power of ten) for about n ticks. */
static double nice_step(double span, int n) {
    double raw = span / n, p = pow(10, floor(log10(raw))), f = raw / p;
    return (f < 1.5 ? 1 : f < 3.5 ? 2 : f < 7.5 ? 5 : 10) * p;
}

struct frame {
    double x0, y0, w, h;           /* the plot area in pixels */
    double xmin, xmax, ymin, ymax; /* the data range */
};

static double fx(const struct frame *f, double x) {
    return f->x0 + (x - f->xmin) / (f->xmax - f->xmin) * f->w;
}
static double fy(const struct frame *f, double y) {
    return f->y0 + f->h - (y - f->ymin) / (f->ymax - f->ymin) * f->h;
}

static void text(cairo_t *cr, double x, double y, const char *s, double align) {
    cairo_text_extents_t e;
    cairo_text_extents(cr, s, &e);
    cairo_move_to(cr, x - e.width * align - e.x_bearing * (1 - align), y);
    cairo_show_text(cr, s);
}

static void axes(cairo_t *cr, const struct frame *f, const char *title, const char *ylabel) {
    cairo_set_source_rgb(cr, 1, 1, 1);
    cairo_rectangle(cr, f->x0, f->y0, f->w, f->h);
    cairo_fill(cr);
    cairo_set_line_width(cr, 1);
    char buf[32];
    double xs = nice_step(f->xmax - f->xmin, 8), ys = nice_step(f->ymax - f->ymin, 6);
    cairo_set_font_size(cr, 12);
    for (double x = ceil(f->xmin / xs) * xs; x <= f->xmax + xs * 1e-9; x += xs) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, fx(f, x) + 0.5, f->y0);
        cairo_line_to(cr, fx(f, x) + 0.5, f->y0 + f->h);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, "%g", fabs(x) < xs * 1e-9 ? 0 : x);
        text(cr, fx(f, x), f->y0 + f->h + 16, buf, 0.5);
    }
    for (double y = ceil(f->ymin / ys) * ys; y <= f->ymax + ys * 1e-9; y += ys) {
        cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
        cairo_move_to(cr, f->x0, fy(f, y) + 0.5);
        cairo_line_to(cr, f->x0 + f->w, fy(f, y) + 0.5);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
        snprintf(buf, sizeof buf, "%g", fabs(y) < ys * 1e-9 ? 0 : y);
        text(cr, f->x0 - 6, fy(f, y) + 4, buf, 1);
    }
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_rectangle(cr, f->x0 + 0.5, f->y0 + 0.5, f->w, f->h);
    cairo_stroke(cr);
    cairo_set_font_size(cr, 14);
    cairo_set_source_rgb(cr, 0, 0, 0);
    text(cr, f->x0 + f->w / 2, f->y0 - 10, title, 0.5);
    cairo_set_font_size(cr, 12);
    text(cr, f->x0 + f->w / 2, f->y0 + f->h + 34, "epoch", 0.5);
    cairo_save(cr);
    cairo_translate(cr, f->x0 - 48, f->y0 + f->h / 2);
    cairo_rotate(cr, -PLOT_PI / 2);
    text(cr, 0, 0, ylabel, 0.5);
    cairo_restore(cr);
}

static const double palette[][3] = {{0.12, 0.47, 0.71}, {1.0, 0.5, 0.05},  {0.17, 0.63, 0.17},
                                    {0.84, 0.15, 0.16}, {0.58, 0.4, 0.74}, {0.55, 0.34, 0.29}};

/* Draws the series of one panel with a legend; returns 0 when it has none. */
static int panel(cairo_t *cr, struct plot *p, int which, struct frame *f, const char *title,
                 const char *ylabel) {
    int any = 0;
    f->xmin = INFINITY, f->xmax = -INFINITY, f->ymin = INFINITY, f->ymax = -INFINITY;
    for (int i = 0; i < p->ns; i++) {
        struct series *s = &p->s[i];
        if (s->panel != which) continue;
        for (int k = 0; k < s->n; k++) {
            any = 1;
            f->xmin = fmin(f->xmin, s->x[k]), f->xmax = fmax(f->xmax, s->x[k]);
            f->ymin = fmin(f->ymin, s->y[k]), f->ymax = fmax(f->ymax, s->y[k]);
        }
    }
    if (!any) return 0;
    /* Epoch records sit at the end of their epoch: the axis starts at 0. */
    f->xmin = fmin(f->xmin, 0);
    if (f->xmax - f->xmin < 1e-9) f->xmax = f->xmin + 1;
    if (which == 1)
        f->ymin = fmax(0, f->ymin - 0.05), f->ymax = fmin(1, f->ymax + 0.02);
    else
        f->ymin = f->ymin >= 0 ? 0 : f->ymin;
    if (f->ymax - f->ymin < 1e-12) f->ymax = f->ymin + 1;
    axes(cr, f, title, ylabel);
    /* One colour per name: a per-step curve is a thin line in its name's colour. */
    const char *names[PLOT_MAX_SERIES];
    int nn = 0, color_of[PLOT_MAX_SERIES], has_step[PLOT_MAX_SERIES] = {0};
    for (int i = 0; i < p->ns; i++) {
        if (p->s[i].panel != which || p->s[i].n == 0) continue;
        int k = 0;
        while (k < nn && strcmp(names[k], p->s[i].name) != 0) k++;
        if (k == nn) names[nn++] = p->s[i].name;
        color_of[i] = k;
        has_step[k] |= p->s[i].step;
    }
    cairo_save(cr);
    cairo_rectangle(cr, f->x0, f->y0, f->w, f->h);
    cairo_clip(cr);
    for (int pass = 0; pass < 2; pass++) /* per-step curves first, under the epochs' */
        for (int i = 0; i < p->ns; i++) {
            struct series *s = &p->s[i];
            if (s->panel != which || s->n == 0 || s->step != !pass) continue;
            const double *c = palette[color_of[i] % 6];
            cairo_set_source_rgba(cr, c[0], c[1], c[2], s->step ? 0.5 : 1);
            cairo_set_line_width(cr, s->step ? 1 : 2.2);
            for (int k = 0; k < s->n; k++)
                (k ? cairo_line_to : cairo_move_to)(cr, fx(f, s->x[k]), fy(f, s->y[k]));
            cairo_stroke(cr);
            if (!s->step)
                for (int k = 0; k < s->n; k++) {
                    cairo_arc(cr, fx(f, s->x[k]), fy(f, s->y[k]), 3, 0, 2 * PLOT_PI);
                    cairo_fill(cr);
                }
        }
    cairo_restore(cr);
    /* The legend on white, inside the frame: top right for losses (they fall),
     * bottom right for accuracies (they rise). */
    cairo_set_font_size(cr, 12);
    char labels[PLOT_MAX_SERIES][PLOT_MAX_NAME + 24];
    double lw = 0;
    for (int k = 0; k < nn; k++) {
        const char *nm = names[k];
        snprintf(labels[k], sizeof labels[k], "%s%s",
                 strcmp(nm, "loss") == 0             ? "train loss"
                 : strcmp(nm, "train_accuracy") == 0 ? "train accuracy"
                 : strcmp(nm, "test_accuracy") == 0  ? "test accuracy"
                 : strcmp(nm, "test_loss") == 0      ? "test loss"
                                                     : nm,
                 has_step[k] ? " (thin: per step)" : "");
        cairo_text_extents_t e;
        cairo_text_extents(cr, labels[k], &e);
        lw = fmax(lw, e.x_advance + 44);
    }
    double lx = f->x0 + f->w - lw - 8, top = which == 0 ? f->y0 + 8 : f->y0 + f->h - 16 - 16 * nn;
    cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
    cairo_rectangle(cr, lx, top, lw, 8 + 16 * nn);
    cairo_fill(cr);
    for (int k = 0; k < nn; k++) {
        const double *c = palette[k % 6];
        double ly = top + 18 + 16 * k;
        cairo_set_source_rgb(cr, c[0], c[1], c[2]);
        cairo_set_line_width(cr, 2.2);
        cairo_move_to(cr, lx + 6, ly - 4);
        cairo_line_to(cr, lx + 28, ly - 4);
        cairo_stroke(cr);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text(cr, lx + 34, ly, labels[k], 0);
    }
    return 1;
}

static int plot_draw(struct plot *p, const char *png, const char *title) {
    int has_acc = 0;
    for (int i = 0; i < p->ns; i++) has_acc |= p->s[i].panel == 1 && p->s[i].n > 0;
    int pw = 560, width = has_acc ? 2 * pw : pw, height = 420;
    cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, width, height);
    cairo_t *cr = cairo_create(sf);
    cairo_set_source_rgb(cr, 0.97, 0.97, 0.97);
    cairo_paint(cr);
    cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
    if (title && *title) {
        cairo_set_font_size(cr, 15);
        cairo_set_source_rgb(cr, 0, 0, 0);
        text(cr, width / 2.0, 22, title, 0.5);
    }
    struct frame f = {70, 60, pw - 100, height - 120, 0, 1, 0, 1};
    panel(cr, p, 0, &f, "loss", "loss");
    if (has_acc) {
        f.x0 += pw;
        panel(cr, p, 1, &f, "accuracy", "accuracy");
    }
    cairo_destroy(cr);
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", png, (long)getpid());
    cairo_status_t st = cairo_surface_write_to_png(sf, tmp);
    cairo_surface_destroy(sf);
    if (st != CAIRO_STATUS_SUCCESS) {
        remove(tmp);
        return nrt_error_set(NRT_ERR_IO, "cannot write '%s': %s", png, cairo_status_to_string(st));
    }
    if (rename(tmp, png) != 0) {
        int rc = nrt_error_set(NRT_ERR_IO, "cannot write '%s': %s", png, strerror(errno));
        remove(tmp);
        return rc;
    }
    return NRT_OK;
}

#endif

int nrt_plot_metrics(const char *metrics, const char *png, const char *title) {
#ifndef NETC_HAVE_CAIRO
    (void)metrics, (void)png, (void)title;
    return nrt_error_set(NRT_ERR_ARG, "cannot plot: netc was built without cairo (install libcairo2-dev and "
                                      "rebuild netc)");
#else
    struct plot p;
    memset(&p, 0, sizeof p);
    int rc = plot_read(&p, metrics);
    if (!rc) rc = plot_draw(&p, png, title);
    plot_free(&p);
    return rc;
#endif
}
