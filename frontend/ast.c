/* frontend/ast.c -- the front end's entry points and its AST. fe_load reads the
 * file; fe_load_text registers the text for diagnostics, rejects bytes that are not
 * UTF-8 (and NUL bytes) before any scanning, parses (lexer.l, parser.y) and lowers
 * (lower.c). The rest are the AST constructors the grammar calls, with the
 * expression depth limit that keeps the recursive lowering on a bounded stack. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "frontend/frontend.h"

#include <errno.h>
#include <stdarg.h>
#include <string.h>

/* ------------------------------------------------------------ diagnostics */

void fe_error(struct parser *p, struct loc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(loc, fmt, ap);
    va_end(ap);
    p->nerrors++;
}

/* ------------------------------------------------------------- constructors */

struct ast_expr *ast_expr_new(struct parser *p, enum ast_kind kind, struct loc loc) {
    struct ast_expr *e = arena_alloc(p->arena, sizeof *e);
    e->kind = kind;
    e->loc = loc;
    e->depth = 1;
    return e;
}

/* Record the height of e from its children; report the limit once. */
static void set_depth(struct parser *p, struct ast_expr *e, int child) {
    e->depth = child + 1;
    if (e->depth > FE_MAX_EXPR_DEPTH && !p->depth_reported) {
        p->depth_reported = true;
        fe_error(p, e->loc, "expression nested too deeply (the limit is %d levels)", FE_MAX_EXPR_DEPTH);
    }
}

struct ast_expr *ast_binary(struct parser *p, int op, struct ast_expr *l, struct ast_expr *r,
                            struct loc loc) {
    struct ast_expr *e = ast_expr_new(p, AST_BINARY, loc);
    e->op = op;
    e->lhs = l;
    e->rhs = r;
    set_depth(p, e, l->depth > r->depth ? l->depth : r->depth);
    return e;
}

struct ast_expr *ast_unary(struct parser *p, enum ast_kind kind, struct ast_expr *x, struct loc loc) {
    struct ast_expr *e = ast_expr_new(p, kind, loc);
    e->lhs = x;
    set_depth(p, e, x->depth);
    return e;
}

struct ast_expr *ast_call(struct parser *p, const char *callee, struct ast_expr **args, struct loc loc) {
    struct ast_expr *e = ast_expr_new(p, AST_CALL, loc);
    e->str = callee;
    e->args = ast_exprs_take(p, args, &e->nargs);
    int d = 0;
    for (int i = 0; i < e->nargs; i++)
        if (e->args[i]->depth > d) d = e->args[i]->depth;
    set_depth(p, e, d);
    return e;
}

struct ast_expr *ast_stack(struct parser *p, struct ast_expr **chain) {
    if (vec_len(chain) == 1) {
        struct ast_expr *e = chain[0];
        vec_free(chain);
        return e;
    }
    struct ast_expr *e = ast_call(p, NULL, chain, chain[0]->loc);
    e->kind = AST_STACK;
    return e;
}

struct ast_stmt *ast_stmt_new(struct parser *p, enum stmt_kind kind, struct loc loc) {
    struct ast_stmt *s = arena_alloc(p->arena, sizeof *s);
    s->kind = kind;
    s->loc = loc;
    return s;
}

#define TAKE(T, name)                                              \
    T **name(struct parser *p, T **vec, int *n) {                  \
        *n = (int)vec_len(vec);                                    \
        T **out = NULL;                                            \
        if (*n) {                                                  \
            out = arena_alloc(p->arena, sizeof *out * (size_t)*n); \
            memcpy(out, vec, sizeof *out *(size_t)*n);             \
        }                                                          \
        vec_free(vec);                                             \
        return out;                                                \
    }

TAKE(struct ast_expr, ast_exprs_take)
TAKE(struct ast_stmt, ast_stmts_take)
TAKE(struct ast_tline, ast_tlines_take)

/* |a[i] - b[i]| at the one position where a and b differ, or -1. */
static int subst_diff(const char *a, const char *b) {
    if (strlen(a) != strlen(b)) return -1;
    int diff = -1;
    for (size_t i = 0; a[i]; i++)
        if (a[i] != b[i]) {
            if (diff >= 0) return -1;
            diff = abs(a[i] - b[i]);
        }
    return diff;
}

const char *fe_nearest(const char *name, const char *const *cands) {
    const char *best = diag_nearest(name, cands);
    int bd = best ? subst_diff(name, best) : -1;
    if (bd < 0) return best;
    for (const char *const *c = cands; *c; c++) {
        int d = subst_diff(name, *c);
        if (d >= 0 && d < bd) best = *c, bd = d;
    }
    return best;
}

const char *ast_describe(struct arena *a, const struct ast_expr *e) {
    switch (e->kind) {
    case AST_NUM:
        return arena_printf(a, "%g", e->num);
    case AST_STR:
        return "a string";
    case AST_BOOL:
        return e->num != 0 ? "true" : "false";
    case AST_NAME:
        return arena_printf(a, "'%s'", e->str);
    case AST_CALL:
        return arena_printf(a, "%s(...)", e->str);
    case AST_KWARG:
        return arena_printf(a, "%s=...", e->str);
    default:
        return "an expression";
    }
}

/* ------------------------------------------------------------- entry points */

/* The first byte that is not valid UTF-8, or a NUL byte: report it and return
 * false. Columns count bytes, as everywhere else. */
static bool check_utf8(const char *file, const unsigned char *s, size_t len) {
    int line = 1, col = 1;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        struct loc loc = {file, line, col};
        if (c == 0) {
            diag_error(loc, "NUL byte in the source (is this a binary file?)");
            return false;
        }
        if (c < 0x80) {
            if (c == '\n')
                line++, col = 1;
            else
                col++;
            i++;
            continue;
        }
        size_t n = (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3 : (c & 0xf8) == 0xf0 ? 4 : 0;
        bool ok = n != 0 && i + n <= len;
        for (size_t k = 1; ok && k < n; k++) ok = (s[i + k] & 0xc0) == 0x80;
        if (ok) {
            /* Reject overlong forms, surrogates and code points past U+10FFFF. */
            unsigned long cp = c & (0x7f >> n);
            for (size_t k = 1; k < n; k++) cp = (cp << 6) | (s[i + k] & 0x3f);
            if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
                (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
                ok = false;
        }
        if (!ok) {
            diag_error(loc, "invalid UTF-8 byte 0x%02x", c);
            return false;
        }
        i += n;
        col += (int)n;
    }
    return true;
}

/* fe_load_text with relative data paths resolved against base_dir (or kept as
 * written when it is NULL). */
static struct ir_module *load_text(const char *name, const char *text, size_t len, const char *base_dir) {
    const char *file = diag_source_add(name, text, len);
    if (!check_utf8(file, (const unsigned char *)text, len)) return NULL;
    if (len > (size_t)1 << 30) {
        diag_error((struct loc){file, 0, 0}, "file is too large");
        return NULL;
    }
    struct parser p;
    memset(&p, 0, sizeof p);
    p.arena = arena_new();
    p.file = file;
    p.base_dir = base_dir;
    int status = fe_parse(&p, text, len);
    struct ir_module *m = NULL;
    if (status == 0 && p.nerrors == 0) m = fe_lower(&p);
    vec_free(p.stmts);
    arena_free(p.arena);
    return m;
}

struct ir_module *fe_load_text(const char *name, const char *text, size_t len) {
    return load_text(name, text, len, NULL);
}

struct ir_module *fe_load(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_error(LOC_NONE, "cannot open '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                fputs("netc: out of memory\n", stderr);
                exit(1);
            }
            buf = nb;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        diag_error(LOC_NONE, "cannot read '%s': %s", path, strerror(err));
        free(buf);
        return NULL;
    }
    /* Data paths in the file are relative to its directory, wherever netc runs
     * and wherever the program it builds runs: resolve them to absolute paths. */
    char *real = realpath(path, NULL), *slash = real ? strrchr(real, '/') : NULL;
    if (slash) *(slash == real ? slash + 1 : slash) = '\0';
    struct ir_module *m = load_text(path, buf, len, slash ? real : NULL);
    free(real);
    free(buf);
    return m;
}
