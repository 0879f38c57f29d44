/* frontend/frontend.h -- the one internal header of frontend/: the entry points the
 * tools call, the AST the bison grammar builds, the parser state the flex lexer and
 * the grammar share, and the lowering from the AST to IR. Sections follow the files:
 * ast.c (entry points, reading, UTF-8 checks, AST construction), lexer.l, parser.y,
 * lower.c (statements, expressions, nets, entry points), lower_layers.c (builtin
 * layers and functions), train.c (the train block). */
#ifndef NETC_FRONTEND_H
#define NETC_FRONTEND_H

#include "ir/ir.h"

/* ------------------------------------------------------------ entry points */

/* Read a .net file, parse and lower it. Returns the module (to be checked with
 * ir_verify), or NULL after reporting every error with diag_error. Relative
 * paths of data sources become absolute, resolved against the file's directory. */
struct ir_module *fe_load(const char *path);
/* The same on text in memory; `name` is used in diagnostics; data paths stay as
 * written. */
struct ir_module *fe_load_text(const char *name, const char *text, size_t len);

/* ------------------------------------------------------------------- ast.c */

#define FE_MAX_EXPR_DEPTH 200 /* deepest expression tree accepted */
#define FE_MAX_PARENS 100     /* deepest ( [ nesting accepted by the lexer */
#define FE_MAX_ERRORS 20      /* the parser gives up after this many errors */
#define FE_MAX_NAME 128       /* longest name (model, layer, value, net): it becomes C and file names */

/* Expression kinds. */
enum ast_kind {
    AST_NUM,    /* number literal: num (is_int for integer literals) */
    AST_STR,    /* string literal: str */
    AST_BOOL,   /* true / false: num is 1 or 0 */
    AST_NAME,   /* identifier: str */
    AST_CALL,   /* str(args...) */
    AST_KWARG,  /* str = lhs, only inside call arguments */
    AST_BINARY, /* lhs op rhs, op one of + - * / @ */
    AST_NEG,    /* -lhs */
    AST_MEMBER, /* lhs.str (only x.shape) */
    AST_INDEX,  /* lhs[rhs] */
    AST_STACK,  /* (a -> layer -> ...): a stack inside an expression, elements in args */
};

/* An expression. Everything lives in the parse arena. */
struct ast_expr {
    enum ast_kind kind;     /* what it is */
    struct loc loc;         /* first character */
    double num;             /* AST_NUM, AST_BOOL */
    bool is_int;            /* AST_NUM: written as an integer */
    const char *str;        /* name, callee, keyword, member or string contents */
    int op;                 /* AST_BINARY: '+', '-', '*', '/', '@' */
    struct ast_expr *lhs;   /* operand (binary left, unary, member/index base, kwarg value) */
    struct ast_expr *rhs;   /* binary right operand, index */
    struct ast_expr **args; /* AST_CALL: arguments (AST_KWARG for name=value) */
    int nargs;              /* their number */
    int depth;              /* height of the tree, for the nesting limit */
};

/* Statement kinds. */
enum stmt_kind {
    ST_MODEL,  /* model NAME */
    ST_INPUT,  /* input NAME : TYPE [= init] */
    ST_PARAM,  /* param NAME : TYPE [= init] */
    ST_NET,    /* net NAME(params) { body } */
    ST_ASSIGN, /* NAME = items */
    ST_ITEMS,  /* items */
    ST_LOSS,   /* loss [NAME =] items */
    ST_METRIC, /* metric [NAME =] items */
    ST_OUTPUT, /* output NAME = items */
    ST_RETURN, /* return items (nets only) */
    ST_TRAIN,  /* train { lines } */
};

/* A tensor type as written: f32[N, 1, 28, 28]. */
struct ast_type {
    struct loc loc;         /* the dtype name */
    const char *dtype;      /* as written */
    struct ast_expr **dims; /* the dims: N or constant integer expressions */
    int rank;               /* their number */
};

/* One line of a train block: `key value...`, and the nested lines of `step NAME { }`. */
struct ast_tline {
    struct loc loc;          /* the key */
    struct ast_expr **v;     /* the elements, key first (commas dropped) */
    int n;                   /* their number */
    struct ast_tline **body; /* nested lines of a block, or NULL */
    int nbody;               /* their number */
    bool has_body;           /* a { } block followed the elements */
    struct loc brace;        /* its opening brace */
};

/* A statement. */
struct ast_stmt {
    enum stmt_kind kind;      /* what it is */
    struct loc loc;           /* its first token */
    const char *name;         /* declared or assigned name, NULL when there is none */
    struct loc name_loc;      /* where the name is */
    struct ast_expr **items;  /* the elements of an items statement */
    int nitems;               /* their number */
    struct ast_type *type;    /* input, param */
    struct ast_expr *init;    /* input, param: `= init`, or NULL */
    struct ast_expr **params; /* net: parameter names (AST_NAME) */
    int nparams;              /* their number */
    struct ast_stmt **body;   /* net: statements */
    int nbody;                /* their number */
    struct loc brace;         /* net, train: the opening brace */
    struct ast_tline **lines; /* train: lines */
    int nlines;               /* their number */
};

/* State shared by the lexer and the grammar during one parse. No globals. */
struct parser {
    struct arena *arena;     /* the AST and its strings */
    const char *file;        /* interned name for locs */
    void *scanner;           /* the flex scanner */
    int line, col;           /* position of the next character */
    int prev_tok;            /* the last token returned (0 at the start) */
    bool space;              /* whitespace or a comment came since prev_tok */
    struct loc *opens;       /* vec: the open ( and [ */
    char *open_chars;        /* vec: '(' or '[' for each of opens */
    struct loc *braces;      /* vec: the open { */
    struct loc last_end;     /* just after the last token */
    bool eof_seen;           /* the lexer reached the end of the text */
    bool eof_reported;       /* an unclosed block was reported at the end */
    int brace_reported;      /* depth of the block reported as unterminated (0: none) */
    bool depth_reported;     /* the nesting limit was reported */
    bool non_ascii_reported; /* a non-ASCII character outside strings was reported */
    const char *tok;         /* text of the last token (for "near '...'") */
    int tok_len;             /* its length */
    int nerrors;             /* errors reported by lexer and parser */
    struct ast_stmt **stmts; /* vec: top-level statements, in order */
    const char *base_dir;    /* absolute directory of the .net file: relative data
                                paths resolve against it; NULL: kept as written */
};

/* Report an error during parsing (counts it in p->nerrors). */
void fe_error(struct parser *p, struct loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* AST constructors (arena-allocated). */
struct ast_expr *ast_expr_new(struct parser *p, enum ast_kind kind, struct loc loc);
struct ast_expr *ast_binary(struct parser *p, int op, struct ast_expr *l, struct ast_expr *r, struct loc loc);
struct ast_expr *ast_unary(struct parser *p, enum ast_kind kind, struct ast_expr *e, struct loc loc);
struct ast_expr *ast_call(struct parser *p, const char *callee, struct ast_expr **args, struct loc loc);
/* One expression, or an AST_STACK of several joined by '->' (the vec is taken). */
struct ast_expr *ast_stack(struct parser *p, struct ast_expr **chain);
struct ast_stmt *ast_stmt_new(struct parser *p, enum stmt_kind kind, struct loc loc);
/* Move a vec of expressions (freed here) into an arena array. */
struct ast_expr **ast_exprs_take(struct parser *p, struct ast_expr **vec, int *n);
struct ast_stmt **ast_stmts_take(struct parser *p, struct ast_stmt **vec, int *n);
struct ast_tline **ast_tlines_take(struct parser *p, struct ast_tline **vec, int *n);
/* diag_nearest, with ties between one-letter substitutions broken by the
 * closest letter: beta3 -> beta2 rather than beta1. */
const char *fe_nearest(const char *name, const char *const *cands);
/* Human name of an expression for messages ("dense(128)", "x", "a number"). */
const char *ast_describe(struct arena *a, const struct ast_expr *e);

/* ---------------------------------------------------------------- parser.y */

/* Parse p's text into p->stmts. Returns 0 when there was no syntax error. */
int fe_parse(struct parser *p, const char *text, size_t len);

/* ----------------------------------------------------------------- lower.c */

/* Lower a parsed program to a module. NULL after reporting errors. */
struct ir_module *fe_lower(struct parser *p);

/* What an expression evaluates to during lowering. */
enum val_kind {
    V_ERR,    /* an error was reported; quietly propagates */
    V_NONE,   /* nothing (no current value yet) */
    V_TENSOR, /* node `id` of the function being lowered */
    V_NUM,    /* compile-time number */
    V_STR,    /* string */
    V_BOOL,   /* true / false (num is 1 or 0) */
};

struct val {
    enum val_kind kind; /* which of the fields below is meaningful */
    int id;             /* V_TENSOR: node id */
    double num;         /* V_NUM, V_BOOL */
    bool is_int;        /* V_NUM: an integer (literal or folded from integers) */
    const char *str;    /* V_STR */
    int mask;           /* V_TENSOR: 1 + node id of the i32[N, T] token ids whose padding (id 0)
                           masks this value's time axis (axis 1), set by embedding and kept
                           through layers that keep [N, T]; 0: none (docs/language.md) */
};

/* Declared names that live across walks: inputs, explicit params and nets. */
enum sym_kind {
    SYM_INPUT, /* input NAME : TYPE */
    SYM_PARAM, /* param NAME : TYPE */
    SYM_NET,   /* net NAME(...) { } */
};

#define FE_MAX_NET_ARGS 8

struct fe_sym {
    const char *name;                   /* as declared */
    enum sym_kind kind;                 /* what it is */
    struct loc loc;                     /* the name in its declaration */
    const struct ast_stmt *decl;        /* the declaration */
    int walk;                           /* the walk that last passed its declaration */
    bool noise;                         /* inputs: generated by the runtime (= normal(...)) */
    bool called;                        /* nets: called once already; first[] is valid */
    bool broken;                        /* nets: an error was reported inside; later calls are quiet */
    bool active;                        /* nets: being lowered (catches recursion) */
    struct type first[FE_MAX_NET_ARGS]; /* nets: argument types of the first call */
    struct loc first_loc;               /* nets: where the first call is */
};

/* A variable of a scope. */
struct fe_var {
    const char *name; /* as assigned */
    struct val v;     /* its value in the function being lowered */
};

#define FE_MAX_LAYER_KINDS 96

/* The top level or one call of a net. */
struct fe_scope {
    const char *prefix;            /* parameter name prefix and group: the net, or the model */
    struct fe_sym *net;            /* the net being called, NULL at the top level */
    struct fe_var *vars;           /* vec */
    struct val cur;                /* the current value, input of a layer with nothing before it */
    int count[FE_MAX_LAYER_KINDS]; /* layers met so far, per kind (indices of the builtin table) */
};

/* A loss, metric or output statement met during a walk. */
struct fe_record {
    const char *name; /* its name (NULL: none given) */
    int id;           /* its value */
    struct loc loc;   /* the statement */
    const char *pred; /* losses: the variable name of the prediction operand, or NULL */
    const char *fn;   /* losses, metrics: the function called, or NULL */
};

/* A batch-norm running statistic to update in a training function. */
struct fe_bn_update {
    const char *buf; /* state buffer */
    int stat;        /* the batch statistic */
    double momentum; /* running = (1 - momentum) * running + momentum * stat */
    int bn;          /* the batchnorm node: the update is kept only if it is live */
    struct loc loc;  /* the layer */
};

/* One `step NAME { }` of the train block. */
struct fe_step {
    const char *name;      /* function name */
    struct loc loc;        /* the step line */
    const char *loss;      /* the loss it minimizes */
    struct loc loss_loc;   /* where it is named */
    struct ir_optim optim; /* its optimizer */
    const char **update;   /* vec of groups (net names) */
};

/* The lowering state of one compilation. */
/* A parameter a layer made (init.c): its buffer, the layer and the parameter's
 * role, as in `<prefix>.<layer><k>.<what>`. */
struct fe_lparam {
    const char *buf, *layer, *what;
    struct loc loc; /* the layer */
};

struct lower {
    struct parser *p;     /* the parse: file, AST, arena */
    struct ir_module *m;  /* the module being built */
    struct arena *a;      /* scratch (the parse arena) */
    struct fe_sym **syms; /* vec of declarations */
    int walk;             /* how many walks have started */
    int nerrors;          /* errors reported by the lowering */
    struct ir_func *f;    /* the function being lowered */
    enum func_mode mode;  /* its mode */
    struct fe_scope top;  /* the top-level scope of this walk */
    struct fe_scope *sc;  /* the innermost scope */
    int net_depth;        /* nets being called */
    struct {
        const char *name;
        int id;
    } * bufnodes;                 /* vec: input/param nodes made in f */
    struct fe_record *losses;     /* vec, this walk */
    struct fe_record *metrics;    /* vec, this walk */
    struct fe_record *outputs;    /* vec, this walk */
    struct fe_bn_update *bn;      /* vec, this walk (train mode) */
    int dropout_seq;              /* dropout layers met in this walk */
    const struct ast_stmt *train; /* the train block, or NULL */
    bool have_optim;              /* the train block named an optimizer */
    struct ir_optim optim;        /* the train block's optimizer (defaults filled) */
    struct fe_step *steps;        /* vec */
    bool gen_step; /* the generation walk: sequences of one step, recurrent states in buffers */
    int64_t gen_t; /* its sequence length: inputs [N, gen_t, ...] are read as [N, 1, ...] */

    struct fe_lparam *lparams; /* vec: the parameters layers made (init.c) */
    bool init_pytorch;         /* `init pytorch` in the train block */
    int cur_mask;              /* while a builtin layer runs: its input's val.mask (0: none) */
};

/* Report an error (counted). */
void lw_error(struct lower *L, struct loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* "a, b, c": a NULL-terminated list of names joined, in the arena. */
const char *lw_name_list(struct lower *L, const char *const *names);
/* "unknown WHAT 'NAME' (did you mean 'X'?); KINDS: a, b, c", the suggestion only when a name is near. */
void lw_unknown(struct lower *L, struct loc loc, const char *what, const char *name, const char *const *names,
                const char *kinds);
/* Append a node whose attributes the caller sets, then call lw_fin. */
int lw_node(struct lower *L, enum op op, const int *args, int nargs, struct loc loc);
struct ir_node *lw_n(struct lower *L, int id);
const struct type *lw_type(struct lower *L, int id);
/* Infer the node's type; on a shape error report it at the node and return -1. */
int lw_fin(struct lower *L, int id);
/* Shorthands: node with operands and no attributes, inferred. -1 after an error. */
int lw_emit(struct lower *L, enum op op, const int *args, int nargs, struct loc loc);
int lw_emit1(struct lower *L, enum op op, int a, struct loc loc);
int lw_emit2(struct lower *L, enum op op, int a, int b, struct loc loc);
/* A scalar constant of the given dtype. */
int lw_const(struct lower *L, double v, enum dtype dt, struct loc loc);
/* A reshape of `x` to `shape` (same dtype). */
int lw_reshape(struct lower *L, int x, const struct shape *shape, struct loc loc);
/* A slice of `x` along `axis`. */
int lw_slice(struct lower *L, int x, int axis, int64_t start, int64_t size, struct loc loc);
/* A parameter or state buffer named `<prefix>.<layer><k>.<what>`, created on first
 * use (with `init`), and a node reading it. -1 after an error. */
int lw_param(struct lower *L, const char *layer, int k, const char *what, enum buf_kind kind,
             struct type type, struct ir_init init, struct loc loc);
/* A node reading the buffer `name`. */
int lw_buffer_node(struct lower *L, const char *name, enum buf_kind kind, struct loc loc);
/* Glorot (Xavier) uniform bounds for the given fans. */
struct ir_init lw_glorot(int64_t fan_in, int64_t fan_out);
/* "f32[N,1,28,28]" in the scratch arena. */
const char *lw_tstr(struct lower *L, const struct type *t);
struct val lw_err(void);
struct val lw_tensor(int id);
struct val lw_num(double v, bool is_int);
/* Evaluate a constant number expression (no tensors). False after an error. */
bool lw_fold(struct lower *L, const struct ast_expr *e, double *out, bool *is_int);
/* Find a sym visible in this walk, or NULL. */
struct fe_sym *lw_sym(struct lower *L, const char *name);

/* ---------------------------------------------------------- lower_layers.c */

/* An evaluated call argument. */
struct fe_arg {
    const char *kw; /* keyword, NULL for positional */
    struct val v;   /* value */
    struct loc loc; /* where it is */
};

#define FE_MAX_OPTS 10

/* Layer kinds and builtin functions. */
enum { BI_LAYER = 1, BI_FUNC = 2 };
struct fe_builtin;

/* The builtin layer or function named `name`, or NULL. */
const struct fe_builtin *fe_builtin_find(const char *name);
unsigned fe_builtin_forms(const struct fe_builtin *b);
const char *fe_builtin_name(const struct fe_builtin *b);
/* All builtin names with the given form, NULL-terminated (static storage). */
const char *const *fe_builtin_names(unsigned form);
/* Apply layer b with config args to the current value. */
struct val fe_layer_apply(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                          struct val cur, struct loc loc);
/* Call builtin function b. */
struct val fe_func_call(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                        struct loc loc);
/* Bind positional and keyword arguments to the option names of `what`; out[i] is
 * the argument for names[i] or NULL. Reports unknown, repeated and surplus ones. */
bool fe_bind(struct lower *L, const char *what, const char *const *names, struct fe_arg *args, int nargs,
             struct fe_arg **out, struct loc loc);
/* Option values with defaults and range checks; `name` is used in messages. */
bool fe_opt_int(struct lower *L, const char *what, const char *name, const struct fe_arg *a, int64_t def,
                int64_t lo, int64_t hi, int64_t *out);
bool fe_opt_num(struct lower *L, const char *what, const char *name, const struct fe_arg *a, double def,
                double lo, double hi, double *out);
bool fe_opt_bool(struct lower *L, const char *what, const char *name, const struct fe_arg *a, bool def,
                 bool *out);

/* The IR op of builtin b's table row; the next index of its kind in the scope
 * (k of its parameter names <net>.<layer><k>.<what>). */
enum op fe_builtin_op(const struct fe_builtin *b);
int fe_layer_count(struct lower *L, const struct fe_builtin *b);

/* ------------------------------------------------------------ lower_text.c */

/* The lengths f32[N] of the sequences of a padding mask (val.mask, L->cur_mask):
 * the number of ids that are not 0 in each row of the ids [N, T]; -1 when mask
 * is 0 (none) or after an error. For recurrent layers' lengths. */
int fe_mask_lengths(struct lower *L, int mask, struct loc loc);
/* x [N, ..., F] @ w [F, U] -> [N, ..., U] on the last axis (dense on rank > 2),
 * from ops every backend has: the middle dims become the height of a 1x1
 * convolution, [N, F, P, 1] * [U, F, 1, 1]. -1 after an error. */
int fe_matmul_last(struct lower *L, int x, int w, struct loc loc);
/* The token and sequence builtins (table rows in lower_layers.c). */
struct val fe_layer_embedding(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc);
struct val fe_layer_one_hot(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                            int x, struct loc loc);
struct val fe_layer_time_pool(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc);
struct val fe_func_time_pool(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                             struct loc loc);
struct val fe_func_class_loss(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              struct loc loc);

/* ----------------------------------------------------------- lower_attn.c */

/* a @ b (torch.matmul on rank >= 2, batch dims broadcast), errors at loc
 * naming `what` ("'@'", "matmul"). In lower.c. */
struct val lw_matmul(struct lower *L, int a, int b, const char *what, struct loc loc);
/* The builtins of lower_attn.c (rows in lower_layers.c's table). */
struct fe_builtin;
struct fe_arg;
struct val fe_func_matmul(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                          struct loc loc);
struct val fe_layer_layernorm(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc);
struct val fe_layer_gelu(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs, int x,
                         struct loc loc);
struct val fe_layer_conv1d(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs, int x,
                           struct loc loc);
struct val fe_layer_pool1d(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs, int x,
                           struct loc loc);
struct val fe_layer_attention(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                              int x, struct loc loc);
struct val fe_func_attention(struct lower *L, const struct fe_builtin *b, struct fe_arg *args, int nargs,
                             struct loc loc);

/* ---------------------------------------------------------------- train.c */

/* Read the train block into L (settings, optimizer, steps) and the module (batch,
 * epochs, seed, patience, data sources). False after errors. */
bool fe_train_read(struct lower *L);

/* init.c: `init pytorch`. lw_param records each layer parameter it creates;
 * fe_init_apply gives them PyTorch's initial values when the train block asks. */
void fe_init_record(struct lower *L, const char *buf, const char *layer, const char *what, struct loc loc);
bool fe_init_apply(struct lower *L);
/* An optimizer with all its options in canonical order, defaults filled: adam. */
struct ir_optim fe_optim_default(struct lower *L);

#endif
