/* tests/unit/test_ir_verify.c -- the verifier: a valid module passes silently, and
 * each kind of broken module is rejected with the right message at the right place.
 * Most cases are IR text (parsed, then verified); the ones the parser already
 * refuses (operands defined later, bad op numbers) are built through the API. */
#include "ir/ir.h"
#include "tests/unit/test.h"

#include <string.h>

static char *diag_text; /* what the last verify_text printed */
static size_t diag_len; /* its length */

/* Parse `body` (appended to a standard header) and verify it. Returns the verifier's
 * answer; the diagnostics land in diag_text. A parse failure counts as a test failure. */
static const char header[] = "module v\n"
                             "input @x : f32[N,4]\n"
                             "input @img : f32[N,2,8,8]\n"
                             "input @label : i32[N]\n"
                             "param @w : f32[4,3] init=uniform(-0.5, 0.5) group=main\n"
                             "param @k : f32[4,2,3,3] init=normal(0, 0.1) group=main\n"
                             "state @s : f32[] init=zeros\n";

static int errors_seen; /* diag_error_count() after the last verify_text */

static bool verify_text(const char *body) {
    char text[4096];
    snprintf(text, sizeof text, "%s%s", header, body);
    free(diag_text);
    diag_text = NULL;
    FILE *f = open_memstream(&diag_text, &diag_len);
    diag_set_stream(f);
    diag_reset();
    struct ir_module *m = ir_parse("v.ir", text, strlen(text));
    bool ok = false;
    if (!m) {
        fclose(f);
        diag_set_stream(NULL);
        fprintf(stderr, "does not parse:\n%s\n%s", text, diag_text);
        test_failed++;
        return true;
    }
    ok = ir_verify(m);
    errors_seen = diag_error_count();
    fclose(f);
    diag_set_stream(NULL);
    ir_module_free(m);
    return ok;
}

/* The verifier rejects `body` and says `msg` (a substring of its output). */
#define REJECTS(body, msg)                                                                                   \
    do {                                                                                                     \
        bool ok_ = verify_text(body);                                                                        \
        if (!ok_ && strstr(diag_text, msg)) {                                                                \
            test_passed++;                                                                                   \
        } else {                                                                                             \
            TEST_FAIL_("verifier %s; expected \"%s\", got:\n%s", ok_ ? "accepted" : "said", msg, diag_text); \
        }                                                                                                    \
    } while (0)

static void test_valid(void) {
    bool ok = verify_text("func @forward train loss=loss optimizer=sgd(lr=0.1) update=[main] {\n"
                          "  %0 = input @x : f32[N,4]\n"
                          "  %1 = param @w : f32[4,3]\n"
                          "  %2 = matmul(%0, %1) {transpose_a=0, transpose_b=0} : f32[N,3]\n"
                          "  %3 = input @label : i32[N]\n"
                          "  %4 = cross_entropy(%2, %3) : f32[]\n"
                          "  %5 = assign @w(%1) : f32[4,3]\n"
                          "  %6 = param @s : f32[]\n"
                          "  return loss=%4, logits=%2\n"
                          "}\n");
    CHECK(ok);
    ASSERT(0, (long long)diag_len);
}

/* Types that disagree with the shape rules, and shape rules that fail. */
static void test_types(void) {
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  %1 = relu(%0) : f32[N,5]\n"
            "  return y=%1\n"
            "}\n",
            "v.ir:10:3: error: in @f, %1 (relu): has type f32[N,5] but its operands give f32[N,4]");
    REJECTS("func @f eval {\n"
            "  %0 = input @img : f32[N,2,8,8]\n"
            "  %1 = param @k : f32[4,2,3,3]\n"
            "  %2 = conv2d(%0, %1) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=1} : f32[N,4,8,8]\n"
            "  return y=%2\n"
            "}\n",
            "v.ir:11:3: error: in @f, %2 (conv2d): has type f32[N,4,8,8] but its operands give f32[N,4,6,6]");
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  %1 = param @w : f32[4,3]\n"
            "  %2 = add(%0, %1) : f32[N,4]\n"
            "  return y=%2\n"
            "}\n",
            "in @f, %2 (add): add: shapes f32[N,4] and f32[4,3] do not broadcast");
    /* The source line is quoted with a caret. */
    CHECK(strstr(diag_text, "\n    %2 = add(%0, %1) : f32[N,4]\n    ^\n") != NULL);
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  %1 = relu(%0) : f32[N,N]\n"
            "  return y=%1\n"
            "}\n",
            "in @f, %1 (relu): its type has more than one batch dim N");
    REJECTS("func @f eval {\n"
            "  %0 = input @x : i32[N,4]\n"
            "  return y=%0\n"
            "}\n",
            "in @f, %0 (input): has type i32[N,4] but buffer @x is f32[N,4]");
}

static void test_operands(void) {
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  %1 = relu(%0, %0) : f32[N,4]\n"
            "  return y=%1\n"
            "}\n",
            "in @f, %1 (relu): takes 1 operand, got 2");
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  %1 = matmul(%0) {transpose_a=0, transpose_b=0} : f32[N,4]\n"
            "  return y=%1\n"
            "}\n",
            "in @f, %1 (matmul): takes 2 operands, got 1");
    REJECTS("func @f eval {\n"
            "  %0 = concat {axis=0} : f32[N,4]\n"
            "  return y=%0\n"
            "}\n",
            "in @f, %0 (concat): takes at least 1 operand, got 0");

    /* Through the API: an operand defined after its user, and a bad op. */
    struct ir_module *m = ir_module_new("api");
    ir_buffer_add(m, BUF_INPUT, "x", (struct type){DT_F32, {1, {3}}}, LOC_NONE);
    struct ir_func *f = ir_func_add(m, "f", MODE_EVAL);
    int later = 1;
    ir_node_add(m, f, OP_RELU, &later, 1, LOC_NONE);
    int in = ir_node_add(m, f, OP_INPUT, NULL, 0, LOC_NONE);
    ir_set_sym(m, &f->nodes[in], "x");
    f->nodes[in].type = (struct type){DT_F32, {1, {3}}};
    ir_node_add(m, f, (enum op)OP_COUNT, NULL, 0, LOC_NONE);
    ir_output_add(m, f, "y", 7);
    free(diag_text);
    diag_text = NULL;
    FILE *s = open_memstream(&diag_text, &diag_len);
    diag_set_stream(s);
    bool ok = ir_verify(m);
    fclose(s);
    diag_set_stream(NULL);
    CHECK(!ok);
    CHECK(strstr(diag_text,
                 "netc: error: in @f, %0 (relu): operand 1 refers to %1, which is not defined before it"));
    CHECK(strstr(diag_text, "in @f, %2: invalid op"));
    CHECK(strstr(diag_text, "in @f: output 'y' refers to %7, which does not exist"));
    ir_module_free(m);
}

static void test_symbols(void) {
    REJECTS("func @f eval {\n"
            "  %0 = input @xx : f32[N,4]\n"
            "  return y=%0\n"
            "}\n",
            "in @f, %0 (input): unknown buffer @xx (did you mean @x?)");
    REJECTS("func @f eval {\n"
            "  %0 = input @w : f32[4,3]\n"
            "  return y=%0\n"
            "}\n",
            "in @f, %0 (input): @w is a param buffer, expected an input");
    REJECTS("func @f eval {\n"
            "  %0 = param @x : f32[N,4]\n"
            "  return y=%0\n"
            "}\n",
            "in @f, %0 (param): @x is an input buffer, expected a param or state buffer");
    REJECTS("func @f eval {\n"
            "  %0 = param @w : f32[4,4]\n"
            "  return y=%0\n"
            "}\n",
            "in @f, %0 (param): has type f32[4,4] but buffer @w is f32[4,3]");
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  %1 = assign @w(%0) : f32[N,4]\n"
            "  return\n"
            "}\n",
            "in @f, %1 (assign): assigns f32[N,4] to @w of type f32[4,3]");
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  %1 = assign @x(%0) : f32[N,4]\n"
            "  return\n"
            "}\n",
            "in @f, %1 (assign): @x is an input buffer, expected a param or state buffer");
}

static void test_attributes(void) {
    static const struct {
        const char *node; /* the node %1, applied to %0 = input @img */
        const char *msg;
    } cases[] = {
        {"conv2d(%0, %9) {stride=[0,1], pad=[0,0,0,0], dilation=[1,1], groups=1} : f32[N,4,6,8]",
         "an element of stride must be at least 1, got 0"},
        {"conv2d(%0, %9) {stride=[1,1], pad=[0,-1,0,0], dilation=[1,1], groups=1} : f32[N,4,6,6]",
         "an element of pad must not be negative, got -1"},
        {"conv2d(%0, %9) {stride=[1,1], pad=[0,0,0,0], dilation=[1,0], groups=1} : f32[N,4,6,6]",
         "an element of dilation must be at least 1, got 0"},
        {"conv2d(%0, %9) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=0} : f32[N,4,6,6]",
         "groups must be at least 1, got 0"},
        {"maxpool2d(%0) {kernel=[2,0], stride=[2,2], pad=[0,0,0,0]} : f32[N,2,4,4]",
         "an element of kernel must be at least 1, got 0"},
        {"upsample2d(%0) {scale=[2,-2]} : f32[N,2,16,16]", "an element of scale must be at least 1, got -2"},
        {"softmax(%0) {axis=4} : f32[N,2,8,8]", "axis 4 is out of range for an operand of rank 4"},
        {"softmax(%0) {axis=-1} : f32[N,2,8,8]", "axis -1 is out of range for an operand of rank 4"},
        {"sum(%0) {axes=[1,1], keepdims=0} : f32[N,8,8]", "axes lists axis 1 twice"},
        {"sum(%0) {axes=[1], keepdims=2} : f32[N,8,8]", "keepdims must be 0 or 1, got 2"},
        {"transpose(%0) {perm=[0,1,1,2]} : f32[N,2,8,8]", "perm lists axis 1 twice: not a permutation"},
        {"transpose(%0) {perm=[0,1]} : f32[N,2,8,8]", "perm has 2 axes but the operand has rank 4"},
        {"slice(%0) {axis=1, start=-1, size=1} : f32[N,1,8,8]", "start must not be negative, got -1"},
        {"slice(%0) {axis=1, start=0, size=0} : f32[N,0,8,8]", "size must be at least 1, got 0"},
        {"pad(%0) {axis=2, before=1, after=-1} : f32[N,2,8,8]", "after must not be negative, got -1"},
        {"dropout(%0) {rate=1, seed=0} : f32[N,2,8,8]", "rate must be in [0, 1), got 1"},
        {"dropout(%0) {rate=-0.5, seed=0} : f32[N,2,8,8]", "rate must be in [0, 1), got -0.5"},
        {"leaky_relu(%0) {alpha=inf} : f32[N,2,8,8]", "alpha must be finite, got inf"},
        {"leaky_relu(%0) {alpha=nan} : f32[N,2,8,8]", "alpha must be finite, got nan"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024];
        snprintf(body, sizeof body,
                 "func @f eval {\n"
                 "  %%0 = input @img : f32[N,2,8,8]\n"
                 "  %%9 = param @k : f32[4,2,3,3]\n"
                 "  %%10 = %s\n"
                 "  return y=%%10\n"
                 "}\n",
                 cases[i].node);
        char msg[256];
        snprintf(msg, sizeof msg, "v.ir:11:3: error: in @f, %%2 (%.*s): %s", (int)strcspn(cases[i].node, "("),
                 cases[i].node, cases[i].msg);
        REJECTS(body, msg);
        /* One problem, one message: the shape rule is not run on bad attributes. */
        ASSERT(1, errors_seen);
    }
    REJECTS("func @f eval {\n"
            "  %0 = const {value=nan} : f32[]\n"
            "  %1 = matmul(%0, %0) {transpose_a=2, transpose_b=0} : f32[]\n"
            "  %2 = batchnorm(%0, %0, %0, %0, %0) {eps=0} : f32[]\n"
            "  return\n"
            "}\n",
            "in @f, %0 (const): value is NaN");
    CHECK(strstr(diag_text, "in @f, %1 (matmul): transpose_a must be 0 or 1, got 2"));
    CHECK(strstr(diag_text, "in @f, %2 (batchnorm): eps must be positive, got 0"));
    ASSERT(3, errors_seen);
}

static void test_module_level(void) {
    REJECTS("param @w : f32[2] init=zeros\n", "v.ir:8:1: error: buffer @w is declared twice");
    REJECTS("param @p : f32[N,2] init=zeros\n",
            "param @p has type f32[N,2]: only inputs may have the batch dim N");
    REJECTS("param @p : f32[2] init=uniform(1, -1)\n", "param @p: uniform(1, -1) has its bounds reversed");
    REJECTS("state @p : f32[2] init=normal(0, -1)\n", "state @p: normal(0, -1) has a negative stddev");
    REJECTS("state @p : f32[2] init=const(inf)\n", "state @p has a non-finite initializer");
    REJECTS("func @f eval {\n  return\n}\nfunc @f eval {\n  return\n}\n",
            "v.ir:11:1: error: function @f is defined twice");
    REJECTS("func @f eval {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  return y=%0, y=%0\n"
            "}\n",
            "v.ir:8:1: error: in @f: output 'y' is returned twice");
    REJECTS("func @f train loss=los {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  return loss=%0\n"
            "}\n",
            "in @f: the loss 'los' is not an output");
    REJECTS("func @f train loss=loss {\n"
            "  %0 = input @x : f32[N,4]\n"
            "  return loss=%0\n"
            "}\n",
            "in @f: the loss 'loss' must be a scalar f32[], got f32[N,4]");
    REJECTS("func @f train update=[main,gan] {\n"
            "  return\n"
            "}\n",
            "in @f: update group 'gan' owns no parameter");
    REJECTS("func @f train optimizer=sgd(lr=inf) {\n"
            "  return\n"
            "}\n",
            "in @f: optimizer option lr is not finite");
}

/* Every problem is reported, not just the first. */
static void test_reports_all(void) {
    bool ok = verify_text("param @w : f32[1] init=zeros\n"
                          "func @f eval {\n"
                          "  %0 = input @x : f32[N,4]\n"
                          "  %1 = relu(%0) : f32[N,5]\n"
                          "  %2 = exp(%1) : f32[N,6]\n"
                          "  %3 = softmax(%2) {axis=7} : f32[N,5]\n"
                          "  return y=%3, y=%0\n"
                          "}\n");
    CHECK(!ok);
    ASSERT(5, errors_seen);
    CHECK(strstr(diag_text, "%2 (exp): has type f32[N,6] but its operands give f32[N,5]"));
}

int main(void) {
    test_valid();
    test_types();
    test_operands();
    test_symbols();
    test_attributes();
    test_module_level();
    test_reports_all();
    free(diag_text);
    diag_free();
    TEST_DONE();
}
