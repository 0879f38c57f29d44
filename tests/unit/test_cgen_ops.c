/* tests/unit/test_cgen_ops.c -- the C backend against the reference interpreter,
 * op by op, forward and backward. Each case is a one-function module in IR text
 * whose output `y` is the op under test; unless it is marked nograd, the test adds
 * loss = sum(y * wts) and runs autodiff with input gradients, so the backward ops
 * (relu_grad, conv2d_grad_input, maxpool2d_grad, ...) are checked too. Every case
 * is emitted as C, all are compiled with -Wall -Wextra -Werror into one program
 * with a small harness that feeds the same random buffers, runs the function and
 * writes every output and every param/state buffer back; the test compares them
 * with the interpreter's values (relative tolerance 1e-4). A last check fails if
 * some op of ops.def appears in no case. */
#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH 3
#include "tests/unit/test_cgen.h"
#define STEP 7

/* One case: the nodes of function @f (inputs %0...); buffer names choose the
 * test data: p* positive, q* probabilities, s* signs, l* labels < 5, d* rows
 * summing to 1, anything else uniform in [-1, 1). */
struct ccase {
    const char *name; /* for messages */
    const char *bufs; /* buffer declarations */
    const char *body; /* the nodes; the last line is `return y=%K` */
    bool nograd;      /* no loss, no autodiff */
};

static const struct ccase cases[] = {
#define UN(op, attrs, buf)                                                                              \
    {                                                                                                   \
        op, "input @" buf " : f32[N,4]\n",                                                              \
            "%0 = input @" buf " : f32[N,4]\n%1 = " op "(%0)" attrs " : f32[N,4]\nreturn y=%1\n", false \
    }
    UN("neg", "", "x"),
    UN("exp", "", "x"),
    UN("log", "", "px"),
    UN("sqrt", "", "px"),
    UN("abs", "", "x"),
    UN("relu", "", "x"),
    UN("leaky_relu", " {alpha=0.1}", "x"),
    UN("sigmoid", "", "x"),
    UN("tanh", "", "x"),
    UN("stop_gradient", "", "x"),
#undef UN
#define BIN(op, a, b, sa, sb, sy)                                                                        \
    {                                                                                                    \
        op, "input @" a " : f32" sa "\ninput @" b " : f32" sb "\n",                                      \
            "%0 = input @" a " : f32" sa "\n%1 = input @" b " : f32" sb "\n%2 = " op "(%0, %1) : f32" sy \
            "\nreturn y=%2\n",                                                                           \
            false                                                                                        \
    }
    BIN("add", "x", "b", "[N,4]", "[4]", "[N,4]"),
    BIN("sub", "x", "b", "[N,3,4]", "[3,1]", "[N,3,4]"),
    BIN("mul", "x", "b", "[N,1,4]", "[3,1]", "[N,3,4]"),
    BIN("div", "x", "pb", "[N,4]", "[N,4]", "[N,4]"),
    BIN("maximum", "x", "b", "[N,4]", "[N,4]", "[N,4]"),
    BIN("pow", "px", "b", "[N,4]", "[4]", "[N,4]"),
#undef BIN
    {"greater", "input @x : f32[N,4]\ninput @b : f32[4]\n",
     "%0 = input @x : f32[N,4]\n%1 = input @b : f32[4]\n%2 = greater(%0, %1) : f32[N,4]\nreturn y=%2\n",
     true},
    {"cast", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = const {value=3} : f32[]\n%2 = mul(%0, %1) : f32[N,4]\n"
     "%3 = cast(%2) : i32[N,4]\n%4 = cast(%3) : f32[N,4]\n%5 = neg(%3) : i32[N,4]\nreturn y=%4, z=%5\n",
     true},
    {"bias_add", "input @x : f32[N,3,2,2]\ninput @b : f32[3]\n",
     "%0 = input @x : f32[N,3,2,2]\n%1 = input @b : f32[3]\n%2 = bias_add(%0, %1) {axis=1} : "
     "f32[N,3,2,2]\nreturn y=%2\n",
     false},
    {"const", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = const {value=2.5} : f32[]\n%2 = add(%0, %1) : f32[N,4]\nreturn y=%2\n",
     false},
#define RED(op, attrs, sy)                                                                            \
    {                                                                                                 \
        op, "input @x : f32[N,3,4]\n",                                                                \
            "%0 = input @x : f32[N,3,4]\n%1 = " op "(%0) " attrs " : f32" sy "\nreturn y=%1\n", false \
    }
    RED("sum", "{axes=[1], keepdims=0}", "[N,4]"),
    RED("sum", "{axes=[], keepdims=0}", "[]"),
    RED("mean", "{axes=[0,2], keepdims=1}", "[1,3,1]"),
    RED("max", "{axes=[1], keepdims=0}", "[N,4]"),
    RED("variance", "{axes=[2], keepdims=0}", "[N,3]"),
    RED("variance", "{axes=[0], keepdims=1}", "[1,3,4]"),
#undef RED
    {"argmax", "input @x : f32[N,3,4]\n",
     "%0 = input @x : f32[N,3,4]\n%1 = argmax(%0) {axis=1} : i32[N,4]\nreturn y=%1\n", true},
    {"sum_to", "input @x : f32[N,4]\n", "%0 = input @x : f32[N,4]\n%1 = sum_to(%0) : f32[4]\nreturn y=%1\n",
     false},
    {"broadcast_to", "input @x : f32[3,1]\n",
     "%0 = input @x : f32[3,1]\n%1 = broadcast_to(%0) : f32[N,3,4]\nreturn y=%1\n", false},
    {"matmul", "input @x : f32[N,5]\ninput @w : f32[5,3]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @w : f32[5,3]\n%2 = matmul(%0, %1) {transpose_a=0, transpose_b=0} "
     ": f32[N,3]\n"
     "return y=%2\n",
     false},
    {"matmul_t", "input @x : f32[5,N]\ninput @w : f32[3,5]\n",
     "%0 = input @x : f32[5,N]\n%1 = input @w : f32[3,5]\n%2 = matmul(%0, %1) {transpose_a=1, transpose_b=1} "
     ": f32[N,3]\n"
     "return y=%2\n",
     false},
    {"reshape_transpose", "input @x : f32[N,2,3]\n",
     "%0 = input @x : f32[N,2,3]\n%1 = transpose(%0) {perm=[2,0,1]} : f32[3,N,2]\n%2 = reshape(%1) : "
     "f32[6,N]\n"
     "return y=%2\n",
     false},
    {"slice_pad", "input @x : f32[N,4,2]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = slice(%0) {axis=1, start=1, size=2} : f32[N,2,2]\n"
     "%2 = pad(%1) {axis=2, before=1, after=2} : f32[N,2,5]\nreturn y=%2\n",
     false},
    {"concat", "input @a : f32[N,2]\ninput @b : f32[N,3]\n",
     "%0 = input @a : f32[N,2]\n%1 = input @b : f32[N,3]\n%2 = concat(%0, %1, %0) {axis=1} : "
     "f32[N,7]\nreturn y=%2\n",
     false},
    {"softmax", "input @x : f32[N,3,4]\n",
     "%0 = input @x : f32[N,3,4]\n%1 = softmax(%0) {axis=1} : f32[N,3,4]\nreturn y=%1\n", false},
    {"log_softmax", "input @x : f32[N,5]\n",
     "%0 = input @x : f32[N,5]\n%1 = log_softmax(%0) {axis=1} : f32[N,5]\nreturn y=%1\n", false},
#define LOSS(op, a, b, s)                                                          \
    {                                                                              \
        op, "input @" a " : f32" s "\ninput @" b " : f32" s "\n",                  \
            "%0 = input @" a " : f32" s "\n%1 = input @" b " : f32" s "\n%2 = " op \
            "(%0, %1) : f32[]\nreturn y=%2\n",                                     \
            false                                                                  \
    }
    LOSS("mse", "x", "t", "[N,3]"),
    LOSS("bce", "qx", "qt", "[N,3]"),
    LOSS("bce_logits", "x", "qt", "[N,3]"),
    LOSS("hinge", "x", "st", "[N,3]"),
    LOSS("cross_entropy", "x", "dt", "[N,5]"),
#undef LOSS
    {"cross_entropy_labels", "input @x : f32[N,5]\ninput @lt : i32[N]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @lt : i32[N]\n%2 = cross_entropy(%0, %1) : f32[]\nreturn y=%2\n",
     false},
    {"accuracy", "input @x : f32[N,5]\ninput @lt : i32[N]\ninput @dt : f32[N,5]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @lt : i32[N]\n%2 = accuracy(%0, %1) : f32[]\n%3 = input @dt : "
     "f32[N,5]\n"
     "%4 = accuracy(%0, %3) : f32[]\nreturn y=%2, z=%4\n",
     true},
    /* Tokens and sequences: l* ids are in [0, 5), so id 0 (padding, ignored) appears. */
    {"embedding", "input @w : f32[5,3]\ninput @lt : i32[N,4]\n",
     "%0 = input @w : f32[5,3]\n%1 = input @lt : i32[N,4]\n%2 = embedding(%0, %1) : f32[N,4,3]\nreturn "
     "y=%2\n",
     false},
    {"one_hot", "input @lt : i32[N,3]\n",
     "%0 = input @lt : i32[N,3]\n%1 = one_hot(%0) {classes=4} : f32[N,3,4]\nreturn y=%1\n", true},
    {"masked_cross_entropy", "input @x : f32[N,4,5]\ninput @lt : i32[N,4]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @lt : i32[N,4]\n%2 = masked_cross_entropy(%0, %1) {ignore=0} : "
     "f32[]\n"
     "return y=%2\n",
     false},
    {"masked_cross_entropy_long", "input @x : f32[N,100,7]\ninput @lt : i32[N,100]\n",
     "%0 = input @x : f32[N,100,7]\n%1 = input @lt : i32[N,100]\n%2 = masked_cross_entropy(%0, %1) "
     "{ignore=3} : f32[]\n"
     "return y=%2\n",
     false},
    {"masked_accuracy", "input @x : f32[N,4,5]\ninput @lt : i32[N,4]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @lt : i32[N,4]\n%2 = masked_accuracy(%0, %1) {ignore=0} : "
     "f32[]\n"
     "return y=%2\n",
     true},
    {"masked_mean", "input @x : f32[N,5,2,3]\ninput @lt : i32[N,5]\n",
     "%0 = input @x : f32[N,5,2,3]\n%1 = input @lt : i32[N,5]\n%2 = masked_mean(%0, %1) {pad=0} : "
     "f32[N,2,3]\n"
     "return y=%2\n",
     false},
    {"masked_max", "input @x : f32[N,5,3]\ninput @lt : i32[N,5]\n",
     "%0 = input @x : f32[N,5,3]\n%1 = input @lt : i32[N,5]\n%2 = masked_max(%0, %1) {pad=1} : f32[N,3]\n"
     "return y=%2\n",
     false},
    {"conv2d", "input @x : f32[N,2,5,5]\ninput @w : f32[4,2,3,3]\n",
     "%0 = input @x : f32[N,2,5,5]\n%1 = input @w : f32[4,2,3,3]\n"
     "%2 = conv2d(%0, %1) {stride=[1,1], pad=[1,1,1,1], dilation=[1,1], groups=1} : f32[N,4,5,5]\nreturn "
     "y=%2\n",
     false},
    {"conv2d_strided", "input @x : f32[N,4,7,6]\ninput @w : f32[6,2,2,3]\n",
     "%0 = input @x : f32[N,4,7,6]\n%1 = input @w : f32[6,2,2,3]\n"
     "%2 = conv2d(%0, %1) {stride=[2,1], pad=[0,1,1,0], dilation=[2,1], groups=2} : f32[N,6,3,5]\nreturn "
     "y=%2\n",
     false},
    {"conv2d_1x1", "input @x : f32[N,3,4,4]\ninput @w : f32[2,3,1,1]\n",
     "%0 = input @x : f32[N,3,4,4]\n%1 = input @w : f32[2,3,1,1]\n"
     "%2 = conv2d(%0, %1) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=1} : f32[N,2,4,4]\nreturn "
     "y=%2\n",
     false},
    {"conv_transpose2d", "input @x : f32[N,3,3,3]\ninput @w : f32[3,2,4,4]\n",
     "%0 = input @x : f32[N,3,3,3]\n%1 = input @w : f32[3,2,4,4]\n"
     "%2 = conv_transpose2d(%0, %1) {stride=[2,2], pad=[1,1,1,1], dilation=[1,1], groups=1, "
     "output_pad=[0,0]} : "
     "f32[N,2,6,6]\nreturn y=%2\n",
     false},
    {"maxpool2d", "input @x : f32[N,2,4,4]\n",
     "%0 = input @x : f32[N,2,4,4]\n%1 = maxpool2d(%0) {kernel=[2,2], stride=[2,2], pad=[0,0,0,0]} : "
     "f32[N,2,2,2]\n"
     "return y=%1\n",
     false},
    {"maxpool2d_pad", "input @x : f32[N,1,5,5]\n",
     "%0 = input @x : f32[N,1,5,5]\n%1 = maxpool2d(%0) {kernel=[3,3], stride=[2,2], pad=[1,1,1,1]} : "
     "f32[N,1,3,3]\n"
     "return y=%1\n",
     false},
    {"avgpool2d", "input @x : f32[N,1,5,5]\n",
     "%0 = input @x : f32[N,1,5,5]\n%1 = avgpool2d(%0) {kernel=[3,3], stride=[2,2], pad=[1,1,1,1]} : "
     "f32[N,1,3,3]\n"
     "return y=%1\n",
     false},
    {"upsample2d", "input @x : f32[N,2,2,3]\n",
     "%0 = input @x : f32[N,2,2,3]\n%1 = upsample2d(%0) {scale=[2,3]} : f32[N,2,4,9]\nreturn y=%1\n", false},
    {"allreduce", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = allreduce(%0) {bucket=-1} : f32[N,4]\nreturn y=%1\n", false},
    {"allreduce_sum", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = allreduce_sum(%0) : f32[N,4]\nreturn y=%1\n", false},
    {"allreduce_bucket", "input @x : f32[3,4]\n",
     "%0 = input @x : f32[3,4]\n%1 = tanh(%0) : f32[3,4]\n%2 = allreduce(%1) {bucket=0} : f32[3,4]\n"
     "%3 = exp(%0) : f32[3,4]\n%4 = allreduce(%3) {bucket=0} : f32[3,4]\n%5 = add(%2, %4) : f32[3,4]\nreturn "
     "y=%5\n",
     true},
    {"dropout", "input @x : f32[N,4,5]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = dropout(%0) {rate=0.3, seed=5} : f32[N,4,5]\nreturn y=%1\n", false},
    {"lstm lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[8,3]\ninput @wh : f32[8,2]\ninput @bi : f32[8]\ninput @bh : "
     "f32[8]\ninput @s0 : f32[N,4]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[8,3]\n%2 = input @wh : f32[8,2]\n%3 = input @bi : "
     "f32[8]\n%4 = input @bh : f32[8]\n%5 = input @s0 : f32[N,4]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=0} : f32[N,4,12]\nreturn y=%7\n",
     false},
    {"lstm reverse lengths",
     "input @x : f32[N,4,2]\ninput @wi : f32[12,2]\ninput @wh : f32[12,3]\ninput @bi : f32[12]\ninput @bh : "
     "f32[12]\ninput @s0 : f32[N,6]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = input @wi : f32[12,2]\n%2 = input @wh : f32[12,3]\n%3 = input @bi : "
     "f32[12]\n%4 = input @bh : f32[12]\n%5 = input @s0 : f32[N,6]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=1} : f32[N,4,18]\nreturn y=%7\n",
     false},
    {"gru reverse lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[6,3]\ninput @wh : f32[6,2]\ninput @bi : f32[6]\ninput @bh : "
     "f32[6]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[6,3]\n%2 = input @wh : f32[6,2]\n%3 = input @bi : "
     "f32[6]\n%4 = input @bh : f32[6]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=1, reverse=1} : f32[N,4,14]\nreturn y=%7\n",
     false},
    {"gru",
     "input @x : f32[N,3,2]\ninput @wi : f32[9,2]\ninput @wh : f32[9,3]\ninput @bi : f32[9]\ninput @bh : "
     "f32[9]\ninput @s0 : f32[N,3]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[9,2]\n%2 = input @wh : f32[9,3]\n%3 = input @bi : "
     "f32[9]\n%4 = input @bh : f32[9]\n%5 = input @s0 : f32[N,3]\n%6 = const {value=3} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=1, reverse=0} : f32[N,3,21]\nreturn y=%7\n",
     false},
    {"rnn tanh lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[2,3]\ninput @wh : f32[2,2]\ninput @bi : f32[2]\ninput @bh : "
     "f32[2]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[2,3]\n%2 = input @wh : f32[2,2]\n%3 = input @bi : "
     "f32[2]\n%4 = input @bh : f32[2]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=2, reverse=0} : f32[N,4,2]\nreturn y=%7\n",
     false},
    {"rnn relu reverse",
     "input @x : f32[N,4,2]\ninput @wi : f32[3,2]\ninput @wh : f32[3,3]\ninput @bi : f32[3]\ninput @bh : "
     "f32[3]\ninput @s0 : f32[N,3]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = input @wi : f32[3,2]\n%2 = input @wh : f32[3,3]\n%3 = input @bi : "
     "f32[3]\n%4 = input @bh : f32[3]\n%5 = input @s0 : f32[N,3]\n%6 = const {value=4} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=3, reverse=1} : f32[N,4,3]\nreturn y=%7\n",
     false},
    {"rnn sigmoid",
     "input @x : f32[N,3,2]\ninput @wi : f32[2,2]\ninput @wh : f32[2,2]\ninput @bi : f32[2]\ninput @bh : "
     "f32[2]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[2,2]\n%2 = input @wh : f32[2,2]\n%3 = input @bi : "
     "f32[2]\n%4 = input @bh : f32[2]\n%5 = input @s0 : f32[N,2]\n%6 = const {value=3} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=4, reverse=0} : f32[N,3,2]\nreturn y=%7\n",
     false},
    {"gru final state, lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[6,3]\ninput @wh : f32[6,2]\ninput @bi : f32[6]\ninput @bh : "
     "f32[6]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[6,3]\n%2 = input @wh : f32[6,2]\n%3 = input @bi : "
     "f32[6]\n%4 = input @bh : f32[6]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=1, reverse=0} : f32[N,4,14]\n%8 = slice(%7) {axis=1, start=3, size=1} : "
     "f32[N,1,14]\n%9 = slice(%8) {axis=2, start=0, size=2} : f32[N,1,2]\nreturn y=%9\n",
     false},
    {"gru reverse final state, h 20",
     "input @x : f32[N,3,2]\ninput @wi : f32[60,2]\ninput @wh : f32[60,20]\ninput @bi : f32[60]\ninput @bh : "
     "f32[60]\ninput @s0 : f32[N,20]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[60,2]\n%2 = input @wh : f32[60,20]\n%3 = input @bi : "
     "f32[60]\n%4 = input @bh : f32[60]\n%5 = input @s0 : f32[N,20]\n%6 = const {value=3} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=1, reverse=1} : f32[N,3,140]\n%8 = slice(%7) {axis=1, start=0, "
     "size=1} : f32[N,1,140]\n%9 = slice(%8) {axis=2, start=0, size=20} : f32[N,1,20]\nreturn y=%9\n",
     false},
    {"lstm reverse final state, lengths",
     "input @x : f32[N,4,2]\ninput @wi : f32[12,2]\ninput @wh : f32[12,3]\ninput @bi : f32[12]\ninput @bh : "
     "f32[12]\ninput @s0 : f32[N,6]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = input @wi : f32[12,2]\n%2 = input @wh : f32[12,3]\n%3 = input @bi : "
     "f32[12]\n%4 = input @bh : f32[12]\n%5 = input @s0 : f32[N,6]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=1} : f32[N,4,18]\n%8 = slice(%7) {axis=1, start=0, size=1} : "
     "f32[N,1,18]\n%9 = slice(%8) {axis=2, start=0, size=3} : f32[N,1,3]\nreturn y=%9\n",
     false},
    {"lstm every h, h 17, lengths",
     "input @x : f32[N,3,2]\ninput @wi : f32[68,2]\ninput @wh : f32[68,17]\ninput @bi : f32[68]\ninput @bh : "
     "f32[68]\ninput @s0 : f32[N,34]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[68,2]\n%2 = input @wh : f32[68,17]\n%3 = input @bi : "
     "f32[68]\n%4 = input @bh : f32[68]\n%5 = input @s0 : f32[N,34]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=0} : f32[N,3,102]\n%8 = slice(%7) {axis=2, start=0, size=17} "
     ": f32[N,3,17]\nreturn y=%8\n",
     false},
    {"rnn tanh final state",
     "input @x : f32[N,4,3]\ninput @wi : f32[2,3]\ninput @wh : f32[2,2]\ninput @bi : f32[2]\ninput @bh : "
     "f32[2]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[2,3]\n%2 = input @wh : f32[2,2]\n%3 = input @bi : "
     "f32[2]\n%4 = input @bh : f32[2]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=2, reverse=0} : f32[N,4,2]\n%8 = slice(%7) {axis=1, start=3, size=1} : "
     "f32[N,1,2]\n%9 = slice(%8) {axis=2, start=0, size=2} : f32[N,1,2]\nreturn y=%9\n",
     false},
    {"batchnorm",
     "input @x : f32[N,3,2]\ninput @g : f32[3]\ninput @b : f32[3]\ninput @m : f32[3]\ninput @pv : f32[3]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @g : f32[3]\n%2 = input @b : f32[3]\n%3 = input @m : f32[3]\n"
     "%4 = input @pv : f32[3]\n%5 = batchnorm(%0, %1, %2, %3, %4) {eps=1e-05} : f32[N,3,2]\nreturn y=%5\n",
     false},
    {"batchnorm statistics", "input @x : f32[N,3,5,4]\n",
     "%0 = input @x : f32[N,3,5,4]\n%1 = mean(%0) {axes=[0,2,3], keepdims=0} : f32[3]\n"
     "%2 = variance(%0) {axes=[0,2,3], keepdims=0} : f32[3]\n%3 = add(%1, %2) : f32[3]\nreturn y=%3, z=%1\n",
     false},
    {"assign", "input @x : f32[N,4]\nparam @w : f32[4] init=zeros\nstate @s : f32[4] init=zeros\n",
     "%0 = input @x : f32[N,4]\n%1 = param @w : f32[4]\n%2 = sum_to(%0) : f32[4]\n%3 = sub(%1, %2) : f32[4]\n"
     "%4 = assign @w(%3) : f32[4]\n%5 = add(%1, %1) : f32[4]\n%6 = assign @s(%5) : f32[4]\nreturn y=%5\n",
     true},
/* the transformer ops (last, so that the cases above keep their random data) */
#define UN(op, attrs, buf)                                                                              \
    {                                                                                                   \
        op, "input @" buf " : f32[N,4]\n",                                                              \
            "%0 = input @" buf " : f32[N,4]\n%1 = " op "(%0)" attrs " : f32[N,4]\nreturn y=%1\n", false \
    }
    UN("erf", "", "x"),
    UN("gelu", " {approximate=0}", "x"),
    UN("gelu", " {approximate=1}", "x"),
#undef UN
    {"bmm_shared_w", "input @x : f32[N,4,5]\ninput @w : f32[5,3]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @w : f32[5,3]\n%2 = matmul(%0, %1) {transpose_a=0, "
     "transpose_b=0} : f32[N,4,3]\n"
     "return y=%2\n",
     false},
    {"bmm_tb", "input @x : f32[N,2,4,5]\ninput @z : f32[N,2,3,5]\n",
     "%0 = input @x : f32[N,2,4,5]\n%1 = input @z : f32[N,2,3,5]\n%2 = matmul(%0, %1) {transpose_a=0, "
     "transpose_b=1} : f32[N,2,4,3]\n"
     "return y=%2\n",
     false},
    {"bmm_broadcast_ta", "input @x : f32[2,5,4]\ninput @z : f32[N,1,5,3]\n",
     "%0 = input @x : f32[2,5,4]\n%1 = input @z : f32[N,1,5,3]\n%2 = matmul(%0, %1) {transpose_a=1, "
     "transpose_b=0} : f32[N,2,4,3]\n"
     "return y=%2\n",
     false},
    {"matmul_bsum_ta", "input @x : f32[N,4,5]\ninput @z : f32[N,4,3]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @z : f32[N,4,3]\n%2 = matmul_bsum(%0, %1) {transpose_a=1, "
     "transpose_b=0} : f32[5,3]\n"
     "return y=%2\n",
     false},
    {"matmul_bsum_tb", "input @x : f32[N,2,4,5]\ninput @z : f32[N,2,3,5]\n",
     "%0 = input @x : f32[N,2,4,5]\n%1 = input @z : f32[N,2,3,5]\n%2 = matmul_bsum(%0, %1) {transpose_a=0, "
     "transpose_b=1} : f32[4,3]\n"
     "return y=%2\n",
     false},
    {"attn_softmax", "input @x : f32[N,2,3,4]\n",
     "%0 = input @x : f32[N,2,3,4]\n%1 = attn_softmax(%0) {scale=0.5, causal=0} : f32[N,2,3,4]\nreturn "
     "y=%1\n",
     false},
    {"attn_softmax_causal", "input @x : f32[N,2,3,5]\n",
     "%0 = input @x : f32[N,2,3,5]\n%1 = attn_softmax(%0) {scale=0.25, causal=1} : f32[N,2,3,5]\nreturn "
     "y=%1\n",
     false},
    /* the fused attention core: d = 3 and d = 17 (padding of the runtime's blocks
     * of 16, a second block), T = 19 (two blocks of keys), causal and not */
    {"attention_causal", "input @x : f32[N,5,18]\n",
     "%0 = input @x : f32[N,5,18]\n%1 = attention(%0) {heads=2, scale=0.6, causal=1} : f32[N,5,6]\nreturn "
     "y=%1\n",
     false},
    {"attention_long", "input @x : f32[N,19,12]\n",
     "%0 = input @x : f32[N,19,12]\n%1 = attention(%0) {heads=1, scale=0.5, causal=0} : f32[N,19,4]\nreturn "
     "y=%1\n",
     false},
    {"attention_wide", "input @x : f32[N,18,102]\n",
     "%0 = input @x : f32[N,18,102]\n%1 = attention(%0) {heads=2, scale=0.25, causal=1} : "
     "f32[N,18,34]\nreturn y=%1\n",
     false},
    /* layernorm: rows shorter than the runtime's 8 lanes, and 2 lanes plus a tail */
    {"layernorm", "input @x : f32[N,3,7]\n",
     "%0 = input @x : f32[N,3,7]\n%1 = layernorm(%0) {eps=1e-05} : f32[N,3,7]\nreturn y=%1\n", false},
    {"layernorm_wide", "input @x : f32[N,21]\n",
     "%0 = input @x : f32[N,21]\n%1 = layernorm(%0) {eps=0.001} : f32[N,21]\nreturn y=%1\n", false},
    /* layer norm's gradient through gamma and beta: rows of a lane and a tail,
     * and of 2 lanes plus a tail */
    {
        "layernorm_affine_grad",
        "input @x : f32[N,3,21]\ninput @dy : f32[N,3,21]\ninput @g : f32[21]\n",
        "%0 = input @x : f32[N,3,21]\n%1 = input @dy : f32[N,3,21]\n%2 = input @g : f32[21]\n"
        "%3 = layernorm(%0) {eps=1e-05} : f32[N,3,21]\n%4 = layernorm_grad_sums(%3, %1) : f32[2,21]\n"
        "%5 = layernorm_grad(%0, %1, %2) {eps=1e-05} : f32[N,3,21]\n"
        "%6 = layernorm_grad(%0, %1) {eps=1e-05} : f32[N,3,21]\nreturn y=%5, z=%4, w=%6\n",
        false,
    },
    {
        "layernorm_affine_grad_wide",
        "input @x : f32[N,37]\ninput @dy : f32[N,37]\ninput @g : f32[37]\n",
        "%0 = input @x : f32[N,37]\n%1 = input @dy : f32[N,37]\n%2 = input @g : f32[37]\n"
        "%3 = layernorm(%0) {eps=0.001} : f32[N,37]\n%4 = layernorm_grad_sums(%3, %1) : f32[2,37]\n"
        "%5 = layernorm_grad(%0, %1, %2) {eps=0.001} : f32[N,37]\n"
        "%6 = layernorm_grad(%0, %1) {eps=0.001} : f32[N,37]\nreturn y=%5, z=%4, w=%6\n",
        false,
    },
    /* ... with a residual's gradient added (simplify's fold of add(r, layernorm_grad)):
     * without and with gamma, rows of a lane and a tail */
    {
        "layernorm_grad_residual",
        "input @x : f32[N,3,21]\ninput @dy : f32[N,3,21]\ninput @g : f32[21]\ninput @r : f32[N,3,21]\n",
        "%0 = input @x : f32[N,3,21]\n%1 = input @dy : f32[N,3,21]\n%2 = input @g : f32[21]\n"
        "%3 = input @r : f32[N,3,21]\n%4 = layernorm_grad(%0, %1, %2, %3) {eps=1e-05} : f32[N,3,21]\n"
        "return y=%4\n",
        true,
    },
    /* batch norm's gradient: planes of 2 lanes plus a tail (per-channel tasks),
     * and small planes summed channel-innermost */
    {
        "batchnorm_grad",
        "input @x : f32[N,5,37]\ninput @dy : f32[N,5,37]\ninput @g : f32[5]\ninput @m : f32[5]\ninput @pv : "
        "f32[5]\n",
        "%0 = input @x : f32[N,5,37]\n%1 = input @dy : f32[N,5,37]\n%2 = input @g : f32[5]\n%3 = input @m : "
        "f32[5]\n"
        "%4 = input @pv : f32[5]\n%5 = batchnorm_grad_sums(%0, %1, %3) : f32[2,5]\n"
        "%6 = batchnorm_grad(%0, %1, %2, %3, %4, %5) {eps=1e-05} : f32[N,5,37]\nreturn y=%6, z=%5\n",
        false,
    },
    {
        "batchnorm_grad_small",
        "input @x : f32[N,3,2]\ninput @dy : f32[N,3,2]\ninput @g : f32[3]\ninput @m : f32[3]\ninput @pv : "
        "f32[3]\n",
        "%0 = input @x : f32[N,3,2]\n%1 = input @dy : f32[N,3,2]\n%2 = input @g : f32[3]\n%3 = input @m : "
        "f32[3]\n"
        "%4 = input @pv : f32[3]\n%5 = batchnorm_grad_sums(%0, %1, %3) : f32[2,3]\n"
        "%6 = batchnorm_grad(%0, %1, %2, %3, %4, %5) {eps=1e-05} : f32[N,3,2]\nreturn y=%6, z=%5\n",
        false,
    }, /* GELU's derivative alone (simplify computes it beside the forward's gelu;
        * last, so that the cases above keep their random data) */
    {"gelu_deriv", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = gelu_deriv(%0) {approximate=0} : f32[N,4]\nreturn y=%1\n", true},
    {"gelu_deriv_tanh", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = gelu_deriv(%0) {approximate=1} : f32[N,4]\nreturn y=%1\n", true},
    /* The conv weight gradient behind a max pooling (nograd: a gradient op):
     * the C runtime's 2x2 fast path (3x3 stride 1, two 16-lane blocks per row
     * of the wide case) and its generic loop (strided, padded, grouped conv,
     * overlapping padded 3x3 windows). */
    {"conv2d_grad_weight_maxpool",
     "input @x : f32[N,2,7,8]\ninput @y : f32[N,3,7,8]\ninput @g : f32[N,3,3,4]\n",
     "%0 = input @x : f32[N,2,7,8]\n%1 = input @y : f32[N,3,7,8]\n%2 = input @g : f32[N,3,3,4]\n"
     "%3 = conv2d_grad_weight_maxpool(%0, %1, %2) {stride=[1,1], pad=[1,1,1,1], dilation=[1,1], groups=1, "
     "pool_kernel=[2,2], pool_stride=[2,2], pool_pad=[0,0,0,0]} : f32[3,2,3,3]\nreturn y=%3\n",
     true},
    {"conv2d_grad_weight_maxpool_wide",
     "input @x : f32[N,1,6,38]\ninput @y : f32[N,2,4,36]\ninput @g : f32[N,2,2,18]\n",
     "%0 = input @x : f32[N,1,6,38]\n%1 = input @y : f32[N,2,4,36]\n%2 = input @g : f32[N,2,2,18]\n"
     "%3 = conv2d_grad_weight_maxpool(%0, %1, %2) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=1, "
     "pool_kernel=[2,2], pool_stride=[2,2], pool_pad=[0,0,0,0]} : f32[2,1,3,3]\nreturn y=%3\n",
     true},
    {"conv2d_grad_weight_maxpool_generic",
     "input @x : f32[N,2,7,7]\ninput @y : f32[N,4,4,4]\ninput @g : f32[N,4,2,2]\n",
     "%0 = input @x : f32[N,2,7,7]\n%1 = input @y : f32[N,4,4,4]\n%2 = input @g : f32[N,4,2,2]\n"
     "%3 = conv2d_grad_weight_maxpool(%0, %1, %2) {stride=[2,2], pad=[1,1,1,1], dilation=[1,1], groups=2, "
     "pool_kernel=[3,3], pool_stride=[2,2], pool_pad=[1,1,1,1]} : f32[4,1,3,3]\nreturn y=%3\n",
     true},
};
#define NCASES ((int)(sizeof cases / sizeof *cases))

static struct ir_module *mods[NCASES];

/* Parses case c and adds the loss and the backward graph. */
static struct ir_module *build(const struct ccase *c) {
    char text[8192];
    snprintf(text, sizeof text, "module t%s\n%sfunc @f train {\n%s}\n", "", c->bufs, c->body);
    struct ir_module *m = ir_parse(c->name, text, strlen(text));
    if (!m || !ir_verify(m)) {
        TEST_FAIL_("%s: the case does not parse or verify", c->name);
        if (m) ir_module_free(m);
        return NULL;
    }
    struct ir_func *f = m->funcs[0];
    if (!c->nograd) {
        int y = f->outputs[0].value;
        struct type t = f->nodes[y].type;
        ir_buffer_add(m, BUF_INPUT, "wts", t, LOC_NONE);
        char err[256];
        int w = ir_node_add(m, f, OP_INPUT, NULL, 0, LOC_NONE);
        ir_set_sym(m, &f->nodes[w], "wts");
        ir_infer(m, f, w, err, sizeof err);
        int args[2] = {y, w};
        int p = ir_node_add(m, f, OP_MUL, args, 2, LOC_NONE);
        ir_infer(m, f, p, err, sizeof err);
        int l = ir_node_add(m, f, OP_SUM, &p, 1, LOC_NONE);
        ir_infer(m, f, l, err, sizeof err);
        ir_output_add(m, f, "loss", l);
        f->loss = arena_strdup(m->arena, "loss");
        pass_autodiff_func(m, f, true);
        if (!ir_verify(m)) TEST_FAIL_("%s: invalid IR after autodiff", c->name);
    }
    pass_target = cg_target_c.plan;
    pass_memplan(m);
    return m;
}

static const char harness_head[] = "#include \"netrt.h\"\n#include <stdio.h>\n";

/* The harness: for every case, read its buffers, run @f at step STEP, write every
 * output and every param/state buffer. */
static void write_harness(FILE *out) {
    fputs(harness_head, out);
    for (int k = 0; k < NCASES; k++) fprintf(out, "extern const struct nrt_model netc_model_%d;\n", k);
    fputs("static const struct nrt_model *const models[] = {", out);
    for (int k = 0; k < NCASES; k++) fprintf(out, "%s&netc_model_%d", k ? ", " : "", k);
    fputs("};\n", out);
    fprintf(out,
            "int main(void)\n{\n"
            "    for (int k = 0; k < %d; k++) {\n"
            "        const struct nrt_model *m = models[k];\n"
            "        struct nrt_ctx ctx;\n"
            "        char path[64];\n"
            "        if (nrt_ctx_init(&ctx, m, %d, 0)) return 1;\n"
            "        snprintf(path, sizeof path, \"in_%%d.bin\", k);\n"
            "        FILE *f = fopen(path, \"rb\");\n"
            "        if (!f) return 1;\n"
            "        for (int i = 0; i < m->n_buffers; i++) {\n"
            "            size_t c = (size_t)nrt_desc_count(m->buffers[i].rank, m->buffers[i].dims, %d);\n"
            "            if (fread(ctx.buf[i], 4, c, f) != c) return 1;\n"
            "        }\n"
            "        fclose(f);\n"
            "        ctx.step = %d;\n"
            "        int rc = nrt_ctx_run(&ctx, 0, %d);\n"
            "        if (rc) fprintf(stderr, \"case %%d: %%s\\n\", k, nrt_error());\n"
            "        snprintf(path, sizeof path, \"out_%%d.bin\", k);\n"
            "        f = fopen(path, \"wb\");\n"
            "        if (!f) return 1;\n"
            "        const struct nrt_entry_desc *e = &m->entries[0];\n"
            "        for (int o = 0; o < e->n_outputs && !rc; o++)\n"
            "            fwrite(ctx.out[o], 4, (size_t)nrt_desc_count(e->outputs[o].rank, "
            "e->outputs[o].dims, %d), f);\n"
            "        for (int i = 0; i < m->n_buffers && !rc; i++)\n"
            "            if (m->buffers[i].kind != NRT_BUF_INPUT)\n"
            "                fwrite(ctx.buf[i], 4, (size_t)nrt_desc_count(m->buffers[i].rank, "
            "m->buffers[i].dims, 1), f);\n"
            "        fclose(f);\n"
            "        nrt_ctx_free(&ctx);\n"
            "    }\n"
            "    return 0;\n}\n",
            NCASES, BATCH, BATCH, STEP, BATCH, BATCH);
}

static bool close_enough(double ref, double got) { return fabs(ref - got) <= 1e-4 * (1 + fabs(ref)); }

/* Runs the interpreter on case k's data and compares with out_k.bin. */
static void compare(int k, float **data) {
    struct ir_module *m = mods[k];
    struct ir_func *f = m->funcs[0];
    struct cg_interp *it = cg_interp_new(m, f, BATCH);
    cg_interp_set_step(it, STEP);
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        size_t count = numel(&buf->type.shape);
        if (buf->type.dtype == DT_I32)
            cg_interp_set_i32(it, buf->name, (int32_t *)data[b], count);
        else
            cg_interp_set_f32(it, buf->name, data[b], count);
    }
    if (!cg_interp_run(it)) {
        TEST_FAIL_("%s: interpreter: %s", cases[k].name, cg_interp_error(it));
        cg_interp_free(it);
        return;
    }
    char path[64];
    snprintf(path, sizeof path, "out_%d.bin", k);
    FILE *in = fopen(path, "rb");
    CHECK(in != NULL);
    int bad = 0;
    for (size_t o = 0; in && o < vec_len(f->outputs); o++) {
        const struct ir_node *n = &f->nodes[f->outputs[o].value];
        size_t count = numel(&n->type.shape);
        double *ref = calloc(count, sizeof *ref);
        int32_t *iref = calloc(count, sizeof *iref);
        float *got = calloc(count, sizeof *got);
        if (fread(got, 4, count, in) != count) {
            TEST_FAIL_("%s: output %s missing from the C program's results", cases[k].name,
                       f->outputs[o].name);
            bad++;
        } else if (n->type.dtype == DT_I32) {
            cg_interp_output_i32(it, f->outputs[o].name, iref, count);
            for (size_t i = 0; i < count; i++)
                if (iref[i] != ((int32_t *)got)[i] && bad++ < 5)
                    TEST_FAIL_("%s: %s[%zu] = %d, interpreter %d", cases[k].name, f->outputs[o].name, i,
                               ((int32_t *)got)[i], iref[i]);
        } else {
            cg_interp_output_f64(it, f->outputs[o].name, ref, count);
            for (size_t i = 0; i < count; i++)
                if (!close_enough(ref[i], got[i]) && bad++ < 5)
                    TEST_FAIL_("%s: %s[%zu] = %.8g, interpreter %.8g", cases[k].name, f->outputs[o].name, i,
                               got[i], ref[i]);
        }
        free(ref);
        free(iref);
        free(got);
    }
    /* Param/state buffers after the run: assigned values or unchanged. */
    for (size_t b = 0; in && b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        if (buf->kind == BUF_INPUT) continue;
        size_t count = numel(&buf->type.shape);
        double *ref = calloc(count, sizeof *ref);
        float *got = calloc(count, sizeof *got);
        bool assigned = cg_interp_assigned_f64(it, buf->name, ref, count);
        if (!assigned)
            for (size_t i = 0; i < count; i++) ref[i] = data[b][i];
        if (fread(got, 4, count, in) != count) bad++;
        for (size_t i = 0; i < count; i++)
            if (!close_enough(ref[i], got[i]) && bad++ < 5)
                TEST_FAIL_("%s: buffer %s[%zu] = %.8g after the run, expected %.8g", cases[k].name, buf->name,
                           i, got[i], ref[i]);
        free(ref);
        free(got);
    }
    if (in) fclose(in);
    if (!bad) test_passed++;
    printf("%-24s %s\n", cases[k].name, bad ? "MISMATCH" : "ok");
    cg_interp_free(it);
}

int main(void) {
    char dir[] = "/tmp/netc-cgen-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("temporary directory");
        return 1;
    }
    bool covered[OP_COUNT] = {false};
    float *data[NCASES][16] = {{NULL}};
    char cmd[1 << 16];
    int k0 = snprintf(cmd, sizeof cmd, "cc -std=c11 -O1 -Wall -Wextra -Werror" SAN_FLAGS " -I%s/runtime",
                      NETC_SOURCE_DIR);
    for (int k = 0; k < NCASES; k++) {
        rng_state = 0x5eed + (uint64_t)k * 7919;
        mods[k] = build(&cases[k]);
        if (!mods[k]) continue;
        struct ir_module *m = mods[k];
        for (int id = 0; id < ir_func_len(m->funcs[0]); id++) covered[m->funcs[0]->nodes[id].op] = true;
        char path[64];
        snprintf(path, sizeof path, "in_%d.bin", k);
        FILE *f = fopen(path, "wb");
        for (size_t b = 0; b < vec_len(m->buffers) && b < 16; b++) {
            size_t count = numel(&m->buffers[b].type.shape);
            data[k][b] = calloc(count, 4);
            fill(&m->buffers[b], data[k][b], (int32_t *)data[k][b], count);
            fwrite(data[k][b], 4, count, f);
        }
        fclose(f);
        emit_model(m, "case", k, cmd, sizeof cmd, &k0);
    }
    FILE *h = fopen("harness.c", "w");
    write_harness(h);
    fclose(h);
    snprintf(cmd + k0, sizeof cmd - (size_t)k0,
             " harness.c %s/runtime/libnetrt.a -lopenblas -lpng -lz -lm -lpthread -o harness && ./harness",
             NETC_BINARY_DIR);
    int rc = system(cmd);
    ASSERT(0, rc);
    if (rc == 0)
        for (int k = 0; k < NCASES; k++)
            if (mods[k]) compare(k, data[k]);
    for (int op = 0; op < OP_COUNT; op++) {
        if (covered[op])
            test_passed++;
        else
            TEST_FAIL_("op %s is covered by no case", op_info[op].name);
    }
    for (int k = 0; k < NCASES; k++) {
        for (int b = 0; b < 16; b++) free(data[k][b]);
        if (mods[k]) ir_module_free(mods[k]);
    }
    if (!test_failed && system("rm -f *.bin *.c harness") == 0 && chdir("/") == 0)
        rmdir(dir);
    else
        printf("files kept in %s\n", dir);
    TEST_DONE();
}
