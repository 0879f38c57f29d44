/* frontend/parser.y -- the bison grammar of .net files. A file is a list of
 * newline-terminated statements: declarations (model, input, param, net, train),
 * assignments and stacks of layers, loss/metric/output lines. Lists are built in
 * malloc'd vecs (freed by %destructor when error recovery drops them) and moved
 * into the parse arena when their rule is reduced. `error` rules at statement and
 * block level let one run report several syntax errors. */
%code requires {
#include "frontend/frontend.h"
}

%code provides {
int fe_lex(NET_YYSTYPE *yylval_param, NET_YYLTYPE *yylloc_param, void *yyscanner);
}

%code {
#include <string.h>

#define YYMAXDEPTH 2000

static int net_yylex(NET_YYSTYPE *lval, NET_YYLTYPE *lloc, struct parser *p) {
    return fe_lex(lval, lloc, p->scanner);
}

static struct loc L(struct parser *p, NET_YYLTYPE l) {
    return (struct loc){p->file, l.first_line, l.first_column};
}

static void net_yyerror(NET_YYLTYPE *l, struct parser *p, const char *msg);

/* Give up after too many errors: the rest would mostly be noise. YYABORT does
 * not run %destructor on the symbols of the rule whose action aborts, so the
 * rules holding a vec ($1 of `body error NL`, `tlines error NL`) free it first. */
#define CHECK_ERRORS()                                      \
    do {                                                    \
        if (p->nerrors >= FE_MAX_ERRORS) YYABORT;           \
    } while (0)
#define CHECK_ERRORS_FREE(v)                                \
    do {                                                    \
        if (p->nerrors >= FE_MAX_ERRORS) {                  \
            vec_free(v);                                    \
            YYABORT;                                        \
        }                                                   \
    } while (0)

static void add_stmt(struct parser *p, struct ast_stmt *s) {
    if (s) vec_push(p->stmts, s);
}

static struct ast_stmt *items_stmt(struct parser *p, enum stmt_kind k, struct loc loc, const char *name,
                                   struct loc name_loc, struct ast_expr **items) {
    struct ast_stmt *s = ast_stmt_new(p, k, loc);
    s->name = name;
    s->name_loc = name_loc;
    s->items = ast_exprs_take(p, items, &s->nitems);
    return s;
}
}

%define api.pure full
%define api.prefix {net_yy}
%define api.token.prefix {TOK_}
%define parse.error detailed
%locations
%parse-param {struct parser *p}
%lex-param {struct parser *p}

%union {
    double num;               /* INT, FLOAT */
    const char *str;          /* IDENT, CALLEE, STRING (arena) */
    struct ast_expr *expr;    /* arena */
    struct ast_expr **exprs;  /* vec */
    struct ast_stmt *stmt;    /* arena */
    struct ast_stmt **stmts;  /* vec */
    struct ast_tline *tline;  /* arena */
    struct ast_tline **tlines;/* vec */
    struct ast_type *type;    /* arena */
}

%destructor { vec_free($$); } <exprs> <stmts> <tlines>

%token <str> IDENT "name" CALLEE "call" STRING "string"
%token <num> INT "integer" FLOAT "number"
%token NL "end of line" ARROW "'->'" NEG "prefix '-'"
%token MODEL "'model'" INPUT "'input'" PARAM "'param'" NET "'net'" TRAIN "'train'"
%token LOSS "'loss'" METRIC "'metric'" OUTPUT "'output'" RETURN "'return'"
%token TRUE "'true'" FALSE "'false'"

%left '+' '-'
%left '*' '/' '@'
%precedence NEG

%type <expr> expr postfix primary arg telem init_opt
%type <exprs> items args args_opt names names_opt targs exprs chain
%type <stmt> top_stmt stmt body_stmt net_def train_def
%type <stmts> body
%type <tline> tline
%type <tlines> tlines
%type <type> type

%%

program
    : top_lines
    ;

top_lines
    : %empty
    | top_lines top_line
    ;

top_line
    : NL
    | top_stmt NL               { add_stmt(p, $1); }
    | error NL                  { yyerrok; CHECK_ERRORS(); }
    ;

top_stmt
    : MODEL IDENT               { $$ = ast_stmt_new(p, ST_MODEL, L(p, @1)); $$->name = $2; $$->name_loc = L(p, @2); }
    | INPUT IDENT ':' type init_opt {
                                  $$ = ast_stmt_new(p, ST_INPUT, L(p, @1));
                                  $$->name = $2; $$->name_loc = L(p, @2); $$->type = $4; $$->init = $5;
                                }
    | PARAM IDENT ':' type init_opt {
                                  $$ = ast_stmt_new(p, ST_PARAM, L(p, @1));
                                  $$->name = $2; $$->name_loc = L(p, @2); $$->type = $4; $$->init = $5;
                                }
    | net_def
    | train_def
    | LOSS items                { $$ = items_stmt(p, ST_LOSS, L(p, @1), NULL, L(p, @1), $2); }
    | LOSS IDENT '=' items      { $$ = items_stmt(p, ST_LOSS, L(p, @1), $2, L(p, @2), $4); }
    | METRIC items              { $$ = items_stmt(p, ST_METRIC, L(p, @1), NULL, L(p, @1), $2); }
    | METRIC IDENT '=' items    { $$ = items_stmt(p, ST_METRIC, L(p, @1), $2, L(p, @2), $4); }
    | OUTPUT IDENT '=' items    { $$ = items_stmt(p, ST_OUTPUT, L(p, @1), $2, L(p, @2), $4); }
    | stmt
    ;

stmt
    : IDENT '=' items           { $$ = items_stmt(p, ST_ASSIGN, L(p, @1), $1, L(p, @1), $3); }
    | items                     { $$ = items_stmt(p, ST_ITEMS, L(p, @1), NULL, L(p, @1), $1); }
    ;

init_opt
    : %empty                    { $$ = NULL; }
    | '=' expr                  { $$ = $2; }
    ;

type
    : IDENT '[' exprs ']'       {
                                  $$ = arena_alloc(p->arena, sizeof *$$); $$->dtype = $1; $$->loc = L(p, @1);
                                  $$->dims = ast_exprs_take(p, $3, &$$->rank);
                                }
    | IDENT '[' ']'             { $$ = arena_alloc(p->arena, sizeof *$$); $$->dtype = $1; $$->loc = L(p, @1); }
    ;

exprs
    : expr                      { $$ = NULL; vec_push($$, $1); }
    | exprs ',' expr            { $$ = $1; vec_push($$, $3); }
    ;

net_def
    : NET CALLEE '(' names_opt ')' '{' body '}' {
                                  $$ = ast_stmt_new(p, ST_NET, L(p, @1));
                                  $$->name = $2; $$->name_loc = L(p, @2); $$->brace = L(p, @6);
                                  $$->params = ast_exprs_take(p, $4, &$$->nparams);
                                  $$->body = ast_stmts_take(p, $7, &$$->nbody);
                                }
    | NET IDENT '(' names_opt ')' '{' body '}' {
                                  $$ = ast_stmt_new(p, ST_NET, L(p, @1));
                                  $$->name = $2; $$->name_loc = L(p, @2); $$->brace = L(p, @6);
                                  $$->params = ast_exprs_take(p, $4, &$$->nparams);
                                  $$->body = ast_stmts_take(p, $7, &$$->nbody);
                                }
    | NET error '}'             { $$ = NULL; yyerrok; CHECK_ERRORS(); }
    ;

names_opt
    : %empty                    { $$ = NULL; }
    | names
    ;

names
    : IDENT                     { $$ = NULL; struct ast_expr *e = ast_expr_new(p, AST_NAME, L(p, @1)); e->str = $1; vec_push($$, e); }
    | names ',' IDENT           { $$ = $1; struct ast_expr *e = ast_expr_new(p, AST_NAME, L(p, @3)); e->str = $3; vec_push($$, e); }
    ;

body
    : %empty                    { $$ = NULL; }
    | body NL                   { $$ = $1; }
    | body body_stmt NL         { $$ = $1; if ($2) vec_push($$, $2); }
    | body error NL             { yyerrok; CHECK_ERRORS_FREE($1); $$ = $1; }
    ;

body_stmt
    : stmt
    | RETURN items              { $$ = items_stmt(p, ST_RETURN, L(p, @1), NULL, L(p, @1), $2); }
    ;

train_def
    : TRAIN '{' tlines '}'      { $$ = ast_stmt_new(p, ST_TRAIN, L(p, @1)); $$->brace = L(p, @2); $$->lines = ast_tlines_take(p, $3, &$$->nlines); }
    | TRAIN error '}'           { $$ = NULL; yyerrok; CHECK_ERRORS(); }
    ;

tlines
    : %empty                    { $$ = NULL; }
    | tlines NL                 { $$ = $1; }
    | tlines tline NL           { $$ = $1; vec_push($$, $2); }
    | tlines error NL           { yyerrok; CHECK_ERRORS_FREE($1); $$ = $1; }
    ;

tline
    : targs                     { $$ = arena_alloc(p->arena, sizeof *$$); $$->loc = L(p, @1); $$->v = ast_exprs_take(p, $1, &$$->n); }
    | targs '{' tlines '}'      {
                                  $$ = arena_alloc(p->arena, sizeof *$$); $$->loc = L(p, @1);
                                  $$->v = ast_exprs_take(p, $1, &$$->n);
                                  $$->has_body = true; $$->brace = L(p, @2);
                                  $$->body = ast_tlines_take(p, $3, &$$->nbody);
                                }
    ;

targs
    : telem                     { $$ = NULL; vec_push($$, $1); }
    | targs telem               { $$ = $1; vec_push($$, $2); }
    | targs ',' telem           { $$ = $1; vec_push($$, $3); }
    ;

telem
    : expr
    | LOSS                      { $$ = ast_expr_new(p, AST_NAME, L(p, @1)); $$->str = "loss"; }
    | METRIC                    { $$ = ast_expr_new(p, AST_NAME, L(p, @1)); $$->str = "metric"; }
    ;

items
    : expr                      { $$ = NULL; vec_push($$, $1); }
    | items expr                { $$ = $1; vec_push($$, $2); }
    | items ARROW expr          { $$ = $1; vec_push($$, $3); }
    ;

expr
    : expr '+' expr             { $$ = ast_binary(p, '+', $1, $3, L(p, @2)); }
    | expr '-' expr             { $$ = ast_binary(p, '-', $1, $3, L(p, @2)); }
    | expr '*' expr             { $$ = ast_binary(p, '*', $1, $3, L(p, @2)); }
    | expr '/' expr             { $$ = ast_binary(p, '/', $1, $3, L(p, @2)); }
    | expr '@' expr             { $$ = ast_binary(p, '@', $1, $3, L(p, @2)); }
    | NEG expr                  { $$ = ast_unary(p, AST_NEG, $2, L(p, @1)); }
    | postfix
    ;

postfix
    : primary
    | postfix '.' IDENT         { $$ = ast_unary(p, AST_MEMBER, $1, L(p, @3)); $$->str = $3; }
    | postfix '[' expr ']'      { $$ = ast_unary(p, AST_INDEX, $1, L(p, @2)); $$->rhs = $3; }
    ;

primary
    : IDENT                     { $$ = ast_expr_new(p, AST_NAME, L(p, @1)); $$->str = $1; }
    | INT                       { $$ = ast_expr_new(p, AST_NUM, L(p, @1)); $$->num = $1; $$->is_int = true; }
    | FLOAT                     { $$ = ast_expr_new(p, AST_NUM, L(p, @1)); $$->num = $1; }
    | STRING                    { $$ = ast_expr_new(p, AST_STR, L(p, @1)); $$->str = $1; }
    | TRUE                      { $$ = ast_expr_new(p, AST_BOOL, L(p, @1)); $$->num = 1; }
    | FALSE                     { $$ = ast_expr_new(p, AST_BOOL, L(p, @1)); $$->num = 0; }
    | '(' chain ')'             { $$ = ast_stack(p, $2); }
    | CALLEE '(' args_opt ')'   { $$ = ast_call(p, $1, $3, L(p, @1)); }
    ;

args_opt
    : %empty                    { $$ = NULL; }
    | args
    ;

args
    : arg                       { $$ = NULL; vec_push($$, $1); }
    | args ',' arg              { $$ = $1; vec_push($$, $3); }
    ;

arg
    : chain                     { $$ = ast_stack(p, $1); }
    | IDENT '=' chain           { $$ = ast_unary(p, AST_KWARG, ast_stack(p, $3), L(p, @1)); $$->str = $1; }
    ;

chain
    : expr                      { $$ = NULL; vec_push($$, $1); }
    | chain ARROW expr          { $$ = $1; vec_push($$, $3); }
    ;

%%

/* Bison's detailed message is "syntax error, unexpected X, expecting A or B";
 * say it as "syntax error: unexpected X 'text'; expected A or B". */
static void net_yyerror(NET_YYLTYPE *l, struct parser *p, const char *msg) {
    struct loc loc = L(p, *l);
    if (strcmp(msg, "memory exhausted") == 0) {
        if (!p->depth_reported) fe_error(p, loc, "nesting too deep");
        p->depth_reported = true;
        return;
    }
    /* The lexer already reported an unclosed block or parenthesis at the end. */
    if (p->eof_reported && p->eof_seen && p->tok_len == 0) {
        p->nerrors++;
        return;
    }
    /* A declaration keyword inside a block: the block's '}' is missing. */
    int t = p->prev_tok;
    size_t nb = vec_len(p->braces);
    if (nb && (int)nb != p->brace_reported &&
        (t == TOK_MODEL || t == TOK_INPUT || t == TOK_PARAM || t == TOK_NET || t == TOK_TRAIN ||
         t == TOK_LOSS || t == TOK_METRIC || t == TOK_OUTPUT)) {
        fe_error(p, loc, "unterminated block: expected '}' before '%.*s'", p->tok_len, p->tok);
        diag_note(p->braces[nb - 1], "the block opened here");
        p->brace_reported = (int)nb;
        return;
    }
    const char *prefix = "syntax error, ";
    if (strncmp(msg, prefix, strlen(prefix)) != 0) {
        fe_error(p, loc, "%s", msg);
        return;
    }
    msg += strlen(prefix);
    const char *exp = strstr(msg, ", expecting ");
    int head = exp ? (int)(exp - msg) : (int)strlen(msg);
    char near[64] = "";
    bool quoted = p->tok_len > 0 && p->tok[0] != '\n' && p->tok[0] != '\'' && p->tok[0] != '"' &&
                  (strstr(msg, "unexpected name") == msg || strstr(msg, "unexpected call") == msg ||
                   strstr(msg, "unexpected integer") == msg || strstr(msg, "unexpected number") == msg);
    if (quoted) snprintf(near, sizeof near, " '%.*s%s'", p->tok_len > 24 ? 24 : p->tok_len, p->tok,
                         p->tok_len > 24 ? "..." : "");
    if (exp) fe_error(p, loc, "syntax error: %.*s%s; expected %s", head, msg, near, exp + strlen(", expecting "));
    else fe_error(p, loc, "syntax error: %.*s%s", head, msg, near);
    /* Inside ( ) newlines do not end statements: say where it opened, and let
     * newlines count again so that recovery resumes at the next line. */
    size_t no = vec_len(p->opens);
    if (no) {
        diag_note(p->opens[no - 1], "inside this unclosed '%c'", p->open_chars[no - 1]);
        vec_clear(p->opens);
        vec_clear(p->open_chars);
    }
}
