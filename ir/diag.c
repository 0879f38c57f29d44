/* ir/diag.c -- diagnostics shared by every part of the compiler: the registry of
 * source texts (so an error can quote its line), `file:line:col: error: ...` with a
 * caret, "did you mean" suggestions by edit distance, and internal errors. */
#include "ir/ir.h"

#include <string.h>

struct source {
    char *file; /* name used in locs */
    char *text; /* NUL-terminated copy */
    size_t len; /* bytes of text */
};

static struct source *sources; /* vec */
static int nerrors;
static FILE *diag_out;

static FILE *out(void) { return diag_out ? diag_out : stderr; }

void diag_set_stream(FILE *f) { diag_out = f; }
int diag_error_count(void) { return nerrors; }
void diag_reset(void) { nerrors = 0; }

const char *diag_source_add(const char *file, const char *text, size_t len) {
    struct source s;
    s.file = strdup(file);
    s.text = malloc(len + 1);
    if (!s.file || !s.text) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    memcpy(s.text, text, len);
    s.text[len] = '\0';
    s.len = len;
    vec_push(sources, s);
    return s.file;
}

void diag_free(void) {
    for (size_t i = 0; i < vec_len(sources); i++) {
        free(sources[i].file);
        free(sources[i].text);
    }
    vec_free(sources);
}

static const struct source *source_find(const char *file) {
    for (size_t i = vec_len(sources); i-- > 0;)
        if (sources[i].file == file || strcmp(sources[i].file, file) == 0) return &sources[i];
    return NULL;
}

const char *diag_source_text(const char *file, size_t *len) {
    const struct source *s = file ? source_find(file) : NULL;
    if (s && len) *len = s->len;
    return s ? s->text : NULL;
}

/* Print the line `loc` points into and a caret under its column. Tabs are kept in
 * the caret line so it lines up; bytes that are not printable ASCII show as '?'. */
static void quote_line(struct loc loc) {
    const struct source *s = loc.file ? source_find(loc.file) : NULL;
    if (!s || loc.line <= 0) return;
    const char *p = s->text, *end = s->text + s->len;
    for (int l = 1; l < loc.line && p < end; l++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) return;
        p = nl + 1;
    }
    const char *eol = memchr(p, '\n', (size_t)(end - p));
    if (!eol) eol = end;
    FILE *f = out();
    fputs("  ", f);
    for (const char *q = p; q < eol; q++) {
        unsigned char c = (unsigned char)*q;
        fputc(c == '\t' || (c >= 0x20 && c < 0x7f) ? c : (c == '\r' ? ' ' : '?'), f);
    }
    fputs("\n  ", f);
    for (int c = 1; c < loc.col && p + c - 1 < eol; c++) fputc(p[c - 1] == '\t' ? '\t' : ' ', f);
    fputs("^\n", f);
}

static void report(struct loc loc, const char *kind, const char *fmt, va_list ap) {
    FILE *f = out();
    if (loc.file && loc.line > 0)
        fprintf(f, "%s:%d:%d: %s: ", loc.file, loc.line, loc.col > 0 ? loc.col : 1, kind);
    else if (loc.file)
        fprintf(f, "%s: %s: ", loc.file, kind);
    else
        fprintf(f, "netc: %s: ", kind);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    quote_line(loc);
}

void diag_verror(struct loc loc, const char *fmt, va_list ap) {
    nerrors++;
    report(loc, "error", fmt, ap);
}

void diag_error(struct loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(loc, fmt, ap);
    va_end(ap);
}

void diag_note(struct loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    report(loc, "note", fmt, ap);
    va_end(ap);
}

static size_t edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64) return (size_t)-1;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++) row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            size_t best = diag + cost;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            if (up + 1 < best) best = up + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

const char *diag_nearest(const char *name, const char *const *cands) {
    const char *best = NULL;
    size_t best_d = (size_t)-1;
    for (const char *const *c = cands; *c; c++) {
        size_t d = edit_distance(name, *c);
        if (d < best_d) best_d = d, best = *c;
    }
    size_t len = strlen(name);
    size_t limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
    return best_d <= limit ? best : NULL;
}

_Noreturn void netc_internal_error(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    fflush(stdout);
    fprintf(stderr, "netc: internal error at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputs("\nthis is a bug in netc, not in your model; please report it\n", stderr);
    exit(70);
}
