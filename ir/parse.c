/* ir/parse.c -- the IR text parser: a hand-written lexer (one token of lookahead,
 * each token knowing whether it starts a line) and a recursive-descent parser for
 * the grammar of docs/ir.md. Statements are lines; a token on a new line ends the
 * statement, so "got end of line" errors point just after the last token. The first
 * error is reported through diag_error and unwinds (longjmp) to ir_parse, which
 * frees the half-built module and returns NULL. Types are taken as written: the
 * verifier checks them. */
#include "ir/ir.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <setjmp.h>
#include <string.h>

/* ------------------------------------------------------------------ lexer */

enum tok_kind {
    TK_EOF,    /* end of the text */
    TK_IDENT,  /* [A-Za-z_][A-Za-z0-9_.]* */
    TK_SYM,    /* @name or @"string"; the name in str */
    TK_VALUE,  /* %123; the number in ival */
    TK_INT,    /* -?[0-9]+; ival and fval */
    TK_NUM,    /* a number with a fraction or an exponent; fval */
    TK_STRING, /* "..." with C escapes; the decoded text in str */
    TK_PUNCT,  /* one of = : , ( ) [ ] { } - */
};

struct token {
    enum tok_kind kind; /* what it is */
    const char *text;   /* its bytes in the source */
    size_t len;         /* how many */
    int line, col;      /* where it starts */
    bool bol;           /* the first token on its line */
    int64_t ival;       /* TK_INT, TK_VALUE */
    double fval;        /* TK_INT, TK_NUM */
    char *str;          /* TK_STRING, TK_SYM: arena-owned, NUL-terminated */
};

struct parser {
    const char *file;      /* interned name used in locs */
    const char *src;       /* the text */
    size_t len;            /* its length */
    size_t pos;            /* lexer: next byte */
    int line, col;         /* lexer: position of src[pos] */
    bool bol;              /* lexer: no token yet on the current line */
    struct token tok;      /* the current token */
    int end_line, end_col; /* just after the previous token */
    bool in_stmt;          /* inside a one-line statement: a new line ends it */
    struct ir_module *m;   /* the module being built */
    int *vals;             /* vec: the written number of each node of the current function */
    int *args;             /* vec: operands of the node being parsed */
    jmp_buf fail;          /* where an error unwinds to */
};

static struct loc loc_at(struct parser *p, int line, int col) { return (struct loc){p->file, line, col}; }

static struct loc tok_loc(struct parser *p) { return loc_at(p, p->tok.line, p->tok.col); }

static _Noreturn __attribute__((format(printf, 3, 4))) void fail_at(struct parser *p, struct loc loc,
                                                                    const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(loc, fmt, ap);
    va_end(ap);
    longjmp(p->fail, 1);
}

static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_ident_char(int c) { return is_alpha(c) || is_digit(c) || c == '.'; }

static int peek_at(struct parser *p, size_t off) {
    return p->pos + off < p->len ? (unsigned char)p->src[p->pos + off] : -1;
}

static void advance(struct parser *p, size_t n) {
    for (size_t i = 0; i < n && p->pos < p->len; i++) {
        if (p->src[p->pos++] == '\n') {
            p->line++;
            p->col = 1;
            p->bol = true;
        } else {
            p->col++;
        }
    }
}

/* A byte for a message: itself when printable, else \xNN. */
static const char *byte_str(int c, char buf[8]) {
    if (c >= 0x20 && c < 0x7f && c != '\'')
        snprintf(buf, 8, "%c", c);
    else
        snprintf(buf, 8, "\\x%02x", (unsigned)c & 0xff);
    return buf;
}

static void lex_string(struct parser *p, struct token *t) {
    advance(p, 1);
    size_t start = p->pos, n = 0, end = start;
    while (end < p->len && p->src[end] != '"' && p->src[end] != '\n')
        end += p->src[end] == '\\' && end + 1 < p->len && p->src[end + 1] != '\n' ? 2 : 1;
    char *s = arena_alloc(p->m->arena, end - start + 1); /* decoded text is never longer */
    for (;;) {
        int c = peek_at(p, 0);
        if (c < 0 || c == '\n') fail_at(p, loc_at(p, t->line, t->col), "unterminated string");
        if (c == '"') break;
        if (c != '\\') {
            s[n++] = (char)c;
            advance(p, 1);
            continue;
        }
        int e = peek_at(p, 1), line = p->line, col = p->col;
        char b[8];
        switch (e) {
        case '"':
            s[n++] = '"';
            break;
        case '\\':
            s[n++] = '\\';
            break;
        case 'n':
            s[n++] = '\n';
            break;
        case 't':
            s[n++] = '\t';
            break;
        case 'r':
            s[n++] = '\r';
            break;
        case 'x': {
            int v = 0;
            for (int k = 2; k < 4; k++) {
                int h = peek_at(p, (size_t)k);
                int d = is_digit(h)              ? h - '0'
                        : (h >= 'a' && h <= 'f') ? h - 'a' + 10
                        : (h >= 'A' && h <= 'F') ? h - 'A' + 10
                                                 : -1;
                if (d < 0) fail_at(p, loc_at(p, line, col), "expected two hex digits after '\\x' in string");
                v = v * 16 + d;
            }
            if (v == 0) fail_at(p, loc_at(p, line, col), "string contains a NUL byte");
            s[n++] = (char)v;
            advance(p, 2);
            break;
        }
        default:
            if (e < 0 || e == '\n') fail_at(p, loc_at(p, t->line, t->col), "unterminated string");
            fail_at(p, loc_at(p, line, col), "unknown escape '\\%s' in string", byte_str(e, b));
        }
        advance(p, 2);
    }
    advance(p, 1);
    s[n] = '\0';
    t->str = s;
}

static void lex_number(struct parser *p, struct token *t) {
    size_t start = p->pos, i = 0;
    bool neg = peek_at(p, 0) == '-';
    if (neg) i++;
    int64_t v = 0;
    bool overflow = false;
    for (; is_digit(peek_at(p, i)); i++) {
        int d = peek_at(p, i) - '0';
        if (v > (INT64_MAX - d) / 10)
            overflow = true;
        else
            v = v * 10 + d;
    }
    t->kind = TK_INT;
    if (peek_at(p, i) == '.' && is_digit(peek_at(p, i + 1))) {
        t->kind = TK_NUM;
        for (i++; is_digit(peek_at(p, i)); i++) {
        }
    }
    if (peek_at(p, i) == 'e' || peek_at(p, i) == 'E') {
        size_t j = i + 1;
        if (peek_at(p, j) == '+' || peek_at(p, j) == '-') j++;
        if (is_digit(peek_at(p, j))) {
            t->kind = TK_NUM;
            for (i = j; is_digit(peek_at(p, i)); i++) {
            }
        }
    }
    char buf[64];
    if (i >= sizeof buf) fail_at(p, loc_at(p, t->line, t->col), "number too long");
    memcpy(buf, p->src + start, i);
    buf[i] = '\0';
    if (t->kind == TK_INT && overflow)
        fail_at(p, loc_at(p, t->line, t->col), "integer '%s' is out of range", buf);
    t->ival = neg ? -v : v;
    errno = 0;
    t->fval = strtod(buf, NULL);
    if (errno == ERANGE && isinf(t->fval))
        fail_at(p, loc_at(p, t->line, t->col), "number '%s' is out of range", buf);
    advance(p, i);
}

/* Read the next token into p->tok. */
static void next(struct parser *p) {
    p->end_line = p->tok.line;
    p->end_col = p->tok.col + (int)p->tok.len;
    for (;;) {
        int c = peek_at(p, 0);
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v') {
            advance(p, 1);
        } else if (c == '/' && peek_at(p, 1) == '/') {
            while (p->pos < p->len && p->src[p->pos] != '\n') advance(p, 1);
        } else {
            break;
        }
    }
    struct token *t = &p->tok;
    memset(t, 0, sizeof *t);
    t->line = p->line;
    t->col = p->col;
    t->bol = p->bol;
    p->bol = false;
    size_t start = p->pos;
    t->text = p->src + start;
    int c = peek_at(p, 0);
    char b[8];
    if (c < 0) {
        t->kind = TK_EOF;
    } else if (is_alpha(c)) {
        t->kind = TK_IDENT;
        size_t i = 1;
        while (is_ident_char(peek_at(p, i))) i++;
        advance(p, i);
    } else if (is_digit(c) || (c == '-' && is_digit(peek_at(p, 1)))) {
        lex_number(p, t);
    } else if (c == '"') {
        t->kind = TK_STRING;
        lex_string(p, t);
    } else if (c == '@') {
        t->kind = TK_SYM;
        if (peek_at(p, 1) == '"') {
            advance(p, 1);
            lex_string(p, t);
        } else if (is_alpha(peek_at(p, 1))) {
            size_t i = 2;
            while (is_ident_char(peek_at(p, i))) i++;
            t->str = arena_strndup(p->m->arena, p->src + start + 1, i - 1);
            advance(p, i);
        } else {
            fail_at(p, tok_loc(p), "expected a name after '@'");
        }
    } else if (c == '%') {
        t->kind = TK_VALUE;
        size_t i = 1;
        int64_t v = 0;
        if (!is_digit(peek_at(p, 1))) fail_at(p, tok_loc(p), "expected a value number after '%%'");
        for (; is_digit(peek_at(p, i)); i++) {
            v = v * 10 + (peek_at(p, i) - '0');
            if (v > INT_MAX) fail_at(p, tok_loc(p), "value number is out of range");
        }
        t->ival = v;
        advance(p, i);
    } else if (c != 0 && strchr("=:,()[]{}-", c)) {
        t->kind = TK_PUNCT;
        advance(p, 1);
    } else {
        fail_at(p, tok_loc(p), "unexpected character '%s'", byte_str(c, b));
    }
    t->len = p->pos - start;
}

/* ----------------------------------------------------------- token tests */

/* Whether the current token belongs to the statement being parsed. */
static bool avail(struct parser *p) { return p->tok.kind != TK_EOF && !(p->in_stmt && p->tok.bol); }

static bool is_punct(struct parser *p, char c) {
    return avail(p) && p->tok.kind == TK_PUNCT && p->tok.text[0] == c;
}

static bool is_word(struct parser *p, const char *w) {
    return avail(p) && p->tok.kind == TK_IDENT && p->tok.len == strlen(w) &&
           memcmp(p->tok.text, w, p->tok.len) == 0;
}

/* "expected WHAT, got TOKEN", at the token, or just after the previous one when the
 * statement has ended. */
static _Noreturn void expected(struct parser *p, const char *what) {
    if (p->tok.kind == TK_EOF || !avail(p)) {
        struct loc loc = p->end_line > 0 ? loc_at(p, p->end_line, p->end_col) : tok_loc(p);
        bool eol = p->in_stmt && p->tok.bol;
        fail_at(p, loc, "expected %s, got end of %s", what, eol ? "line" : "file");
    }
    char buf[48];
    size_t n = 0, i = 0;
    for (; i < p->tok.len && n + 8 < sizeof buf; i++) {
        char b[8];
        const char *s = byte_str((unsigned char)p->tok.text[i], b);
        memcpy(buf + n, s, strlen(s));
        n += strlen(s);
    }
    buf[n] = '\0';
    fail_at(p, tok_loc(p), "expected %s, got '%s%s'", what, buf, i < p->tok.len ? "..." : "");
}

static void expect_punct(struct parser *p, char c, const char *what) {
    if (!is_punct(p, c)) expected(p, what);
    next(p);
}

/* Start a one-line statement at the current token. */
static void stmt_begin(struct parser *p) {
    p->in_stmt = true;
    next(p);
}

static void stmt_end(struct parser *p, const char *after) {
    if (avail(p)) {
        char what[80];
        snprintf(what, sizeof what, "end of line after %s", after);
        expected(p, what);
    }
    p->in_stmt = false;
}

/* The current identifier as a C string (arena). */
static char *tok_dup(struct parser *p) { return arena_strndup(p->m->arena, p->tok.text, p->tok.len); }

/* ------------------------------------------------------------ small parts */

/* NAME: an identifier or a quoted string. */
static const char *parse_name(struct parser *p, const char *what) {
    const char *s;
    if (avail(p) && p->tok.kind == TK_IDENT)
        s = tok_dup(p);
    else if (avail(p) && p->tok.kind == TK_STRING)
        s = p->tok.str;
    else
        expected(p, what);
    next(p);
    return s;
}

static int64_t parse_int(struct parser *p, const char *what) {
    if (!avail(p) || p->tok.kind != TK_INT) expected(p, what);
    int64_t v = p->tok.ival;
    next(p);
    return v;
}

/* A number: INT, NUM, or inf/nan (as %.9g prints them), optionally negated. */
static double parse_num(struct parser *p, const char *what) {
    bool neg = false;
    if (is_punct(p, '-')) {
        neg = true;
        next(p);
    }
    double v;
    if (avail(p) && (p->tok.kind == TK_INT || p->tok.kind == TK_NUM) && !neg)
        v = p->tok.fval;
    else if (is_word(p, "inf"))
        v = INFINITY;
    else if (is_word(p, "nan"))
        v = NAN;
    else
        expected(p, what);
    next(p);
    return neg ? -v : v;
}

/* TYPE := DTYPE '[' [DIM {',' DIM}] ']'. */
static struct type parse_type(struct parser *p) {
    struct type t;
    memset(&t, 0, sizeof t);
    if (!avail(p) || p->tok.kind != TK_IDENT) expected(p, "a type such as f32[N,3]");
    char name[16];
    size_t n = p->tok.len < sizeof name - 1 ? p->tok.len : sizeof name - 1;
    memcpy(name, p->tok.text, n);
    name[n] = '\0';
    int dt = p->tok.len < sizeof name - 1 ? dtype_lookup(name) : -1;
    if (dt < 0) {
        const char *cands[DT_COUNT + 1];
        for (int i = 0; i < DT_COUNT; i++) cands[i] = dtype_name((enum dtype)i);
        cands[DT_COUNT] = NULL;
        const char *near = diag_nearest(tok_dup(p), cands);
        if (near) fail_at(p, tok_loc(p), "unknown dtype '%s' (did you mean '%s'?)", tok_dup(p), near);
        fail_at(p, tok_loc(p), "unknown dtype '%s' (expected f32, i32, f16, bf16 or i8)", tok_dup(p));
    }
    t.dtype = (enum dtype)dt;
    next(p);
    expect_punct(p, '[', "'[' after the dtype");
    if (is_punct(p, ']')) {
        next(p);
        return t;
    }
    for (;;) {
        if (t.shape.rank == IR_MAX_RANK) fail_at(p, tok_loc(p), "a type has at most %d dims", IR_MAX_RANK);
        if (is_word(p, "N")) {
            t.shape.dim[t.shape.rank++] = IR_DIM_N;
            next(p);
        } else if (avail(p) && p->tok.kind == TK_INT) {
            if (p->tok.ival < 0) fail_at(p, tok_loc(p), "dimension %lld is negative", (long long)p->tok.ival);
            t.shape.dim[t.shape.rank++] = p->tok.ival;
            next(p);
        } else {
            expected(p, "a dimension (an integer or N)");
        }
        if (is_punct(p, ']')) break;
        expect_punct(p, ',', "',' or ']' in the type");
    }
    if (!shape_numel_ok(&t.shape)) fail_at(p, tok_loc(p), "a type has at most 2^31 elements per batch item");
    next(p);
    return t;
}

/* SOURCE := NAME '(' [STRING] {',' NUM} {',' NAME '=' NUM} ')'. */
static void parse_source(struct parser *p, struct ir_source *s) {
    s->kind = parse_name(p, "a data source such as idx(\"file\")");
    expect_punct(p, '(', "'(' after the source kind");
    bool first = true;
    if (avail(p) && p->tok.kind == TK_STRING) {
        s->path = p->tok.str;
        next(p);
        first = false;
    }
    while (!is_punct(p, ')')) {
        if (!first) expect_punct(p, ',', "',' or ')' in the source arguments");
        first = false;
        if (avail(p) && p->tok.kind == TK_IDENT && !is_word(p, "inf") && !is_word(p, "nan")) {
            if (s->nkw == IR_MAX_KW) fail_at(p, tok_loc(p), "a source takes at most %d options", IR_MAX_KW);
            s->kw[s->nkw] = tok_dup(p);
            next(p);
            expect_punct(p, '=', "'=' after the option name");
            s->kwval[s->nkw++] = parse_num(p, "a number");
        } else {
            if (s->nkw > 0) expected(p, "an option 'name=value' (numbers come before options)");
            if (s->nargs == 2) fail_at(p, tok_loc(p), "a source takes at most 2 numbers");
            s->args[s->nargs++] = parse_num(p, "a number, an option 'name=value' or ')'");
        }
    }
    next(p);
}

/* INIT := zeros | const(NUM) | uniform(NUM, NUM) | normal(NUM, NUM) | range(NUM, NUM). */
static struct ir_init parse_init(struct parser *p) {
    static const char *const names[] = {"zeros", "const", "uniform", "normal", "range", NULL};
    struct ir_init init = {INIT_ZEROS, 0, 0};
    if (!avail(p) || p->tok.kind != TK_IDENT)
        expected(p, "an initializer (zeros, const, uniform, normal, range)");
    int k = 0;
    while (names[k] && !is_word(p, names[k])) k++;
    if (!names[k]) {
        const char *near = diag_nearest(tok_dup(p), names);
        if (near) fail_at(p, tok_loc(p), "unknown initializer '%s' (did you mean '%s'?)", tok_dup(p), near);
        fail_at(p, tok_loc(p), "unknown initializer '%s' (expected zeros, const, uniform, normal or range)",
                tok_dup(p));
    }
    init.kind = (enum init_kind)k;
    next(p);
    if (init.kind == INIT_ZEROS) return init;
    expect_punct(p, '(', "'(' after the initializer");
    init.a = parse_num(p, "a number");
    if (init.kind != INIT_CONST) {
        expect_punct(p, ',', "',' and a second number");
        init.b = parse_num(p, "a number");
    }
    expect_punct(p, ')', "')' closing the initializer");
    return init;
}

/* ------------------------------------------------------------- statements */

/* buffer := ('input' | 'param' | 'state') SYM ':' TYPE attr*. */
static void parse_buffer(struct parser *p) {
    struct loc loc = tok_loc(p);
    enum buf_kind kind = is_word(p, "input") ? BUF_INPUT : is_word(p, "param") ? BUF_PARAM : BUF_STATE;
    stmt_begin(p);
    if (!avail(p) || p->tok.kind != TK_SYM) expected(p, "a buffer name '@name'");
    const char *name = p->tok.str;
    next(p);
    expect_punct(p, ':', "':' before the buffer's type");
    struct type type = parse_type(p);
    struct ir_buffer b;
    memset(&b, 0, sizeof b);
    bool seen[4] = {false, false, false, false};
    while (avail(p)) {
        static const char *const input_keys[] = {"data", "test", NULL};
        static const char *const param_keys[] = {"init", "group", NULL};
        const char *const *keys = kind == BUF_INPUT ? input_keys : param_keys;
        if (p->tok.kind != TK_IDENT)
            expected(p, kind == BUF_INPUT ? "'data=', 'test=' or end of line"
                                          : "'init=', 'group=' or end of line");
        int k = 0;
        while (keys[k] && !is_word(p, keys[k])) k++;
        if (!keys[k]) {
            const char *near = diag_nearest(tok_dup(p), keys);
            fail_at(p, tok_loc(p), "unknown attribute '%s' of %s buffer%s%s%s", tok_dup(p),
                    kind == BUF_INPUT   ? "an input"
                    : kind == BUF_PARAM ? "a param"
                                        : "a state",
                    near ? " (did you mean '" : "", near ? near : "", near ? "'?)" : "");
        }
        if (seen[k]) fail_at(p, tok_loc(p), "'%s' given twice", keys[k]);
        seen[k] = true;
        next(p);
        expect_punct(p, '=', "'=' after the attribute name");
        if (kind == BUF_INPUT)
            parse_source(p, k == 0 ? &b.data : &b.test);
        else if (k == 0)
            b.init = parse_init(p);
        else
            b.group = parse_name(p, "a group name");
    }
    stmt_end(p, "the buffer");
    int id = ir_buffer_add(p->m, kind, name, type, loc);
    struct ir_buffer *nb = &p->m->buffers[id];
    nb->init = b.init;
    nb->group = b.group;
    nb->data = b.data;
    nb->test = b.test;
}

/* The node index of written value number `num`, or -1 (vals is increasing). */
static int value_find(struct parser *p, int64_t num) {
    int lo = 0, hi = (int)vec_len(p->vals) - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (p->vals[mid] == num) return mid;
        if (p->vals[mid] < num)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* VALUE, resolved to a node index of the current function. */
static int parse_value_ref(struct parser *p, const char *what) {
    if (!avail(p) || p->tok.kind != TK_VALUE) expected(p, what);
    int id = value_find(p, p->tok.ival);
    if (id < 0)
        fail_at(p, tok_loc(p), "use of undefined value %%%lld (values must be defined before their use)",
                (long long)p->tok.ival);
    next(p);
    return id;
}

/* One attribute value of kind `a` into the slot arrays. */
static void parse_attr_value(struct parser *p, const struct attr_desc *a, const char *opname, int64_t *ia,
                             double *fa) {
    char what[96];
    if (a->kind == AK_FLOAT) {
        fa[a->slot] = parse_num(p, "a number");
        return;
    }
    if (a->kind == AK_INT) {
        ia[a->slot] = parse_int(p, "an integer");
        return;
    }
    struct loc open = tok_loc(p);
    snprintf(what, sizeof what, "'[' starting the list of %s", a->name);
    expect_punct(p, '[', what);
    int64_t v[IR_MAX_LIST];
    int n = 0;
    if (!is_punct(p, ']')) {
        for (;;) {
            if (n == a->count)
                fail_at(p, tok_loc(p), "attribute '%s' of %s takes %s%d ints", a->name, opname,
                        a->kind == AK_LIST ? "at most " : "", a->count);
            v[n++] = parse_int(p, "an integer");
            if (is_punct(p, ']')) break;
            expect_punct(p, ',', "',' or ']' in the list");
        }
    }
    next(p);
    if (a->kind == AK_INTS) {
        if (n != a->count)
            fail_at(p, open, "attribute '%s' of %s takes %d ints, got %d", a->name, opname, a->count, n);
        memcpy(&ia[a->slot], v, sizeof *v * (size_t)n);
    } else {
        ia[a->slot] = n;
        memcpy(&ia[a->slot + 1], v, sizeof *v * (size_t)n);
    }
}

/* ATTRS := '{' NAME '=' AVAL {',' NAME '=' AVAL} '}': every non-symbol attribute of the
 * schema, each once. */
static void parse_attrs(struct parser *p, enum op op, int64_t *ia, double *fa) {
    const struct op_info *info = &op_info[op];
    bool seen[IR_MAX_ATTRS] = {false};
    bool has_attrs = false;
    const char *cands[IR_MAX_ATTRS + 1];
    int ncands = 0;
    for (int i = 0; i < info->nattrs; i++)
        if (info->attrs[i].kind != AK_STR) cands[ncands++] = info->attrs[i].name;
    cands[ncands] = NULL;
    has_attrs = ncands > 0;
    if (is_punct(p, '{')) {
        if (!has_attrs) fail_at(p, tok_loc(p), "op '%s' takes no attributes", info->name);
        next(p);
        while (!is_punct(p, '}')) {
            if (!avail(p) || p->tok.kind != TK_IDENT) expected(p, "an attribute name");
            char *name = tok_dup(p);
            const struct attr_desc *a = op_attr(op, name);
            if (!a || a->kind == AK_STR) {
                const char *near = diag_nearest(name, cands);
                if (near)
                    fail_at(p, tok_loc(p), "unknown attribute '%s' of op '%s' (did you mean '%s'?)", name,
                            info->name, near);
                fail_at(p, tok_loc(p), "unknown attribute '%s' of op '%s'", name, info->name);
            }
            int idx = (int)(a - info->attrs);
            if (seen[idx]) fail_at(p, tok_loc(p), "attribute '%s' given twice", name);
            seen[idx] = true;
            next(p);
            expect_punct(p, '=', "'=' after the attribute name");
            parse_attr_value(p, a, info->name, ia, fa);
            if (is_punct(p, '}')) break;
            expect_punct(p, ',', "',' or '}' after the attribute");
        }
        next(p);
    }
    for (int i = 0; i < info->nattrs; i++) {
        if (info->attrs[i].kind == AK_STR || seen[i]) continue;
        if (avail(p))
            fail_at(p, tok_loc(p), "missing attribute '%s' of op '%s'", info->attrs[i].name, info->name);
        fail_at(p, loc_at(p, p->end_line, p->end_col), "missing attribute '%s' of op '%s'",
                info->attrs[i].name, info->name);
    }
}

/* A non-negative byte count or offset of the memory plan. */
static int64_t parse_bytes(struct parser *p, const char *what) {
    struct loc at = tok_loc(p);
    int64_t v = parse_int(p, what);
    if (v < 0 || v > ((int64_t)1 << 56))
        fail_at(p, at, "%s %lld is out of range", what + (strncmp(what, "a ", 2) == 0 ? 2 : 0), (long long)v);
    return v;
}

/* REGION '[' INT [',' INT] ']', REGION := 'fixed' | 'batch': a slot of the
 * workspace; with `floats`, the second number is the scratch's float count. */
static enum mem_where parse_slot(struct parser *p, int64_t *off, int64_t *floats) {
    enum mem_where w = MEM_NONE;
    if (is_word(p, "fixed"))
        w = MEM_FIXED;
    else if (is_word(p, "batch"))
        w = MEM_BATCH;
    else
        expected(p, floats ? "'fixed[OFF,FLOATS]' or 'batch[OFF,FLOATS]'"
                           : "'fixed[OFF]', 'batch[OFF]' or '@buffer'");
    next(p);
    expect_punct(p, '[', "'[' and the slot's offset");
    struct loc at = tok_loc(p);
    *off = parse_bytes(p, "a slot offset");
    if (*off % IR_SLOT_ALIGN)
        fail_at(p, at, "slot offset %lld is not a multiple of %d", (long long)*off, IR_SLOT_ALIGN);
    if (floats) {
        expect_punct(p, ',', "',' and the scratch's float count");
        *floats = parse_bytes(p, "a float count");
    }
    expect_punct(p, ']', "']' closing the slot");
    return w;
}

/* The memory plan of a node: ['mem=' (SLOT | SYM)] ['scratch=' SLOT]. */
static struct ir_mem parse_mem(struct parser *p) {
    struct ir_mem mem = {MEM_NONE, 0, MEM_NONE, 0, 0};
    if (is_word(p, "mem")) {
        next(p);
        expect_punct(p, '=', "'=' after 'mem'");
        if (avail(p) && p->tok.kind == TK_SYM) {
            struct loc at = tok_loc(p);
            int b = -1;
            for (size_t i = 0; i < vec_len(p->m->buffers) && b < 0; i++)
                if (strcmp(p->m->buffers[i].name, p->tok.str) == 0) b = (int)i;
            if (b < 0) fail_at(p, at, "unknown buffer '@%s'", p->tok.str);
            next(p);
            mem.where = MEM_BUFFER, mem.off = b;
        } else {
            mem.where = parse_slot(p, &mem.off, NULL);
        }
    }
    if (is_word(p, "scratch")) {
        next(p);
        expect_punct(p, '=', "'=' after 'scratch'");
        mem.scratch_where = parse_slot(p, &mem.scratch_off, &mem.scratch);
    }
    return mem;
}

/* node := VALUE '=' OPNAME [SYM] ['(' VALUE {',' VALUE} ')'] ['{' ATTRS '}'] ':' TYPE
 *         ['kernel=' INT] [MEM] [LOC]. */
static void parse_node(struct parser *p, struct ir_func *f) {
    struct loc loc = tok_loc(p);
    int64_t num = p->tok.ival;
    size_t nvals = vec_len(p->vals);
    if (nvals > 0 && num <= p->vals[nvals - 1])
        fail_at(p, loc,
                value_find(p, num) >= 0 ? "value %%%lld is defined twice"
                                        : "value %%%lld is out of order: numbers must increase",
                (long long)num);
    stmt_begin(p);
    expect_punct(p, '=', "'=' after the value");
    if (!avail(p) || p->tok.kind != TK_IDENT) expected(p, "an op name");
    char *opname = tok_dup(p);
    int op = op_lookup(opname);
    if (op < 0) {
        const char *cands[OP_COUNT + 1];
        for (int i = 0; i < OP_COUNT; i++) cands[i] = op_info[i].name;
        cands[OP_COUNT] = NULL;
        const char *near = diag_nearest(opname, cands);
        if (near) fail_at(p, tok_loc(p), "unknown op '%s' (did you mean '%s'?)", opname, near);
        fail_at(p, tok_loc(p), "unknown op '%s'", opname);
    }
    next(p);
    bool wants_sym = false;
    for (int i = 0; i < op_info[op].nattrs; i++)
        if (op_info[op].attrs[i].kind == AK_STR) wants_sym = true;
    const char *sym = NULL;
    if (avail(p) && p->tok.kind == TK_SYM) {
        if (!wants_sym) fail_at(p, tok_loc(p), "op '%s' takes no symbol", opname);
        sym = p->tok.str;
        next(p);
    } else if (wants_sym) {
        char what[64];
        snprintf(what, sizeof what, "a buffer name '@name' after '%s'", opname);
        expected(p, what);
    }
    vec_clear(p->args);
    if (is_punct(p, '(')) {
        next(p);
        while (!is_punct(p, ')')) {
            vec_push(p->args, parse_value_ref(p, "an operand '%N'"));
            if (is_punct(p, ')')) break;
            expect_punct(p, ',', "',' or ')' after the operand");
        }
        next(p);
    }
    int64_t ia[IR_MAX_IATTR] = {0};
    double fa[IR_MAX_FATTR] = {0};
    parse_attrs(p, (enum op)op, ia, fa);
    expect_punct(p, ':', "':' and the node's type");
    struct type type = parse_type(p);
    int kernel = 0;
    if (is_word(p, "kernel")) {
        next(p);
        expect_punct(p, '=', "'=' after 'kernel'");
        struct loc at = tok_loc(p);
        int64_t k = parse_int(p, "a kernel number");
        if (k < 1 || k > INT_MAX)
            fail_at(p, at, "kernel number %lld is out of range (1 or more)", (long long)k);
        kernel = (int)k;
    }
    struct ir_mem mem = parse_mem(p);
    if (is_word(p, "loc")) {
        next(p);
        expect_punct(p, '(', "'(' after 'loc'");
        if (!avail(p) || p->tok.kind != TK_STRING) expected(p, "a file name string");
        const char *file = p->tok.str;
        next(p);
        expect_punct(p, ':', "':' after the file name");
        int64_t line = parse_int(p, "a line number");
        expect_punct(p, ':', "':' after the line number");
        int64_t col = parse_int(p, "a column number");
        expect_punct(p, ')', "')' closing the location");
        if (line < 0 || line > INT_MAX || col < 0 || col > INT_MAX)
            fail_at(p, loc_at(p, p->end_line, p->end_col), "location out of range");
        loc = (struct loc){file, (int)line, (int)col};
    }
    stmt_end(p, "the node's type");
    int id = ir_node_add(p->m, f, (enum op)op, p->args, (int)vec_len(p->args), loc);
    struct ir_node *n = &f->nodes[id];
    n->type = type;
    memcpy(n->ia, ia, sizeof ia);
    memcpy(n->fa, fa, sizeof fa);
    n->sym = sym;
    n->kernel = kernel;
    n->mem = mem;
    vec_push(p->vals, (int)num);
}

/* 'return' [OUT {',' OUT}], OUT := NAME '=' VALUE. */
static void parse_return(struct parser *p, struct ir_func *f) {
    stmt_begin(p);
    if (avail(p)) {
        for (;;) {
            const char *name = parse_name(p, "an output 'name=%N'");
            expect_punct(p, '=', "'=' after the output name");
            int v = parse_value_ref(p, "a value '%N'");
            ir_output_add(p->m, f, name, v);
            if (!is_punct(p, ',')) break;
            next(p);
        }
    }
    stmt_end(p, "the outputs");
}

/* OPTIM := NAME '(' [NAME '=' NUM {',' NAME '=' NUM}] ')' ['schedule=' SOURCE]. */
static void parse_optim(struct parser *p, struct ir_optim *o) {
    o->kind = parse_name(p, "an optimizer such as adam(lr=0.001)");
    expect_punct(p, '(', "'(' after the optimizer");
    while (!is_punct(p, ')')) {
        if (o->nkw == IR_MAX_OPT_KW)
            fail_at(p, tok_loc(p), "an optimizer takes at most %d options", IR_MAX_OPT_KW);
        o->kw[o->nkw] = parse_name(p, "an option 'name=value' or ')'");
        expect_punct(p, '=', "'=' after the option name");
        o->kwval[o->nkw++] = parse_num(p, "a number");
        if (is_punct(p, ')')) break;
        expect_punct(p, ',', "',' or ')' after the option");
    }
    next(p);
    if (is_word(p, "schedule")) {
        next(p);
        expect_punct(p, '=', "'=' after 'schedule'");
        parse_source(p, &o->schedule);
    }
}

/* KEY '=' '[' NAME (',' NAME)* ']' (the list may be empty), the names pushed on *out. */
static void parse_names(struct parser *p, const char *key, const char *what, const char ***out) {
    char msg[64];
    next(p);
    snprintf(msg, sizeof msg, "'=' after '%s'", key);
    expect_punct(p, '=', msg);
    snprintf(msg, sizeof msg, "'[' starting the list of %ss", what);
    expect_punct(p, '[', msg);
    while (!is_punct(p, ']')) {
        snprintf(msg, sizeof msg, "a %s name", what);
        vec_push(*out, parse_name(p, msg));
        if (is_punct(p, ']')) break;
        snprintf(msg, sizeof msg, "',' or ']' in the list of %ss", what);
        expect_punct(p, ',', msg);
    }
    next(p);
}

/* func := 'func' SYM mode [loss=] [optimizer=] [update=] [steps=] [workspace=] '{' node* return '}'. */
static void parse_func(struct parser *p) {
    struct loc loc = tok_loc(p);
    stmt_begin(p);
    if (!avail(p) || p->tok.kind != TK_SYM) expected(p, "a function name '@name'");
    const char *name = p->tok.str;
    next(p);
    enum func_mode mode = MODE_EVAL;
    if (is_word(p, "eval"))
        mode = MODE_EVAL;
    else if (is_word(p, "train"))
        mode = MODE_TRAIN;
    else
        expected(p, "'eval' or 'train'");
    next(p);
    struct ir_func *f = ir_func_add(p->m, name, mode);
    f->loc = loc;
    bool seen_loss = false, seen_opt = false, seen_upd = false, seen_steps = false;
    while (!is_punct(p, '{')) {
        if (is_word(p, "loss") && !seen_loss) {
            seen_loss = true;
            next(p);
            expect_punct(p, '=', "'=' after 'loss'");
            f->loss = parse_name(p, "the name of the loss output");
        } else if (is_word(p, "optimizer") && !seen_opt) {
            seen_opt = true;
            next(p);
            expect_punct(p, '=', "'=' after 'optimizer'");
            parse_optim(p, &f->optim);
        } else if (is_word(p, "update") && !seen_upd) {
            seen_upd = true;
            parse_names(p, "update", "group", &f->update);
        } else if (is_word(p, "steps") && !seen_steps) {
            seen_steps = true;
            parse_names(p, "steps", "function", &f->steps);
        } else if (is_word(p, "workspace") && !f->planned) {
            f->planned = true;
            next(p);
            expect_punct(p, '=', "'=' after 'workspace'");
            expect_punct(p, '[', "'[' and the workspace's fixed bytes");
            f->ws_fixed = parse_bytes(p, "a byte count");
            expect_punct(p, ',', "',' and the workspace's bytes per batch item");
            f->ws_batch = parse_bytes(p, "a byte count");
            expect_punct(p, ']', "']' closing the workspace");
        } else {
            expected(p, "'loss=', 'optimizer=', 'update=', 'steps=', 'workspace=' or '{'");
        }
    }
    next(p);
    stmt_end(p, "'{'");
    vec_clear(p->vals);
    for (;;) {
        if (p->tok.kind == TK_VALUE) {
            parse_node(p, f);
        } else if (is_word(p, "return")) {
            parse_return(p, f);
            break;
        } else {
            expected(p, "a node '%N = op ...' or 'return'");
        }
    }
    if (!is_punct(p, '}')) expected(p, "'}' closing the function");
    stmt_begin(p);
    stmt_end(p, "'}'");
}

/* module := 'module' NAME ['train' ...] buffer* func*. */
static void parse_module(struct parser *p) {
    if (!is_word(p, "module")) expected(p, "'module NAME' at the start of the file");
    stmt_begin(p);
    p->m->name = parse_name(p, "a module name");
    stmt_end(p, "the module name");
    if (is_word(p, "train")) {
        stmt_begin(p);
        bool seen[4] = {false, false, false, false};
        while (avail(p)) {
            static const char *const keys[] = {"batch", "epochs", "seed", "patience", NULL};
            int k = 0;
            while (keys[k] && !is_word(p, keys[k])) k++;
            if (!keys[k]) expected(p, "'batch=', 'epochs=', 'seed=', 'patience=' or end of line");
            if (seen[k]) fail_at(p, tok_loc(p), "'%s' given twice", keys[k]);
            seen[k] = true;
            next(p);
            expect_punct(p, '=', "'=' after the setting");
            int64_t v = parse_int(p, "an integer");
            if (k == 0)
                p->m->train.batch = v;
            else if (k == 1)
                p->m->train.epochs = v;
            else if (k == 2)
                p->m->train.seed = v;
            else
                p->m->train.patience = v;
        }
        stmt_end(p, "the training settings");
    }
    for (;;) {
        if (p->tok.kind == TK_EOF) break;
        if (is_word(p, "input") || is_word(p, "param") || is_word(p, "state"))
            parse_buffer(p);
        else if (is_word(p, "func"))
            parse_func(p);
        else
            expected(p, "'input', 'param', 'state', 'func' or end of file");
    }
}

struct ir_module *ir_parse(const char *file, const char *text, size_t len) {
    struct parser *p = calloc(1, sizeof *p);
    if (!p) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    p->file = diag_source_add(file ? file : "<ir>", text, len);
    p->src = text;
    p->len = len;
    p->line = 1;
    p->col = 1;
    p->bol = true;
    p->m = ir_module_new("module");
    struct ir_module *m = NULL;
    if (setjmp(p->fail) == 0) {
        next(p);
        parse_module(p);
        m = p->m;
    } else {
        ir_module_free(p->m);
    }
    vec_free(p->vals);
    vec_free(p->args);
    free(p);
    return m;
}
