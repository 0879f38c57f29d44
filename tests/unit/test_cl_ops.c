/* tests/unit/test_cl_ops.c -- the OpenCL backend against the C backend, op by op,
 * forward and backward. Each case is one IR function whose output `y` is the op
 * under test; unless it is marked nograd, the test adds loss = sum(y * wts) and
 * runs autodiff with input gradients, so the backward ops are checked too. The
 * cases become the entry points of two modules (one as is, one after the
 * simplify and fuse passes, for the fused-kernel path: matmul/conv2d heads,
 * elementwise chains, and kernels with several stored values: fused_chain's
 * sigmoid, which the backward reads, and fused_dense_gelu's derivative beside
 * the activation);
 * both are emitted for both targets, and one harness per target (C: OpenBLAS;
 * OpenCL: the first device, PoCL in CI) feeds the same random buffers, runs every
 * entry point at the same training step and writes every output and every
 * param/state buffer. Every f32 value must agree within 1e-4 relative
 * (|cl - c| <= 1e-4 * max(|c|, 1e-2): below 1e-2 the bound is absolute, since
 * values near zero come from cancellation that no summation order fixes), i32
 * values exactly. Reductions here sum at most 300 elements, so the tree order of
 * the work-group reductions stays well inside that bound. Long rows (300
 * elements) take the work-group paths, short ones the one-work-item paths. A
 * last check fails if some op of ops.def appears in no case. */
#include "codegen/codegen.h"
#include "passes/passes.h"
#include "tests/unit/test.h"

#include <ctype.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BATCH 3
#include "tests/unit/test_cgen.h"
#define STEP 7

/* One case: the nodes of a function (inputs %0...); buffer names choose the test
 * data: p* positive, q* probabilities, s* signs, l* labels < 5, d* rows summing
 * to 1, anything else uniform in [-1, 1). */
struct ccase {
    const char *name; /* for messages */
    const char *bufs; /* buffer declarations */
    const char *body; /* the nodes; the last line is `return y=%K` */
    bool nograd;      /* no loss, no autodiff */
    bool fuse;        /* in the module that goes through the fuse pass */
};

static const struct ccase cases[] = {
#define UN(op, attrs, buf)                                                                               \
    {                                                                                                    \
        op, "input @" buf " : f32[N,4]\n",                                                               \
            "%0 = input @" buf " : f32[N,4]\n%1 = " op "(%0)" attrs " : f32[N,4]\nreturn y=%1\n", false, \
            false                                                                                        \
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
            false, false                                                                                 \
    }
    BIN("add", "x", "b", "[N,4]", "[4]", "[N,4]"),
    BIN("sub", "x", "b", "[N,3,4]", "[3,1]", "[N,3,4]"),
    BIN("mul", "x", "b", "[N,1,4]", "[3,1]", "[N,3,4]"),
    BIN("div", "x", "pb", "[N,4]", "[N,4]", "[N,4]"),
    BIN("maximum", "x", "b", "[N,4]", "[N,4]", "[N,4]"),
    BIN("pow", "px", "b", "[N,4]", "[4]", "[N,4]"),
#undef BIN
    {"greater", "input @x : f32[N,4]\ninput @b : f32[4]\n",
     "%0 = input @x : f32[N,4]\n%1 = input @b : f32[4]\n%2 = greater(%0, %1) : f32[N,4]\nreturn y=%2\n", true,
     false},
    {"cast", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = const {value=3} : f32[]\n%2 = mul(%0, %1) : f32[N,4]\n"
     "%3 = cast(%2) : i32[N,4]\n%4 = cast(%3) : f32[N,4]\n%5 = neg(%3) : i32[N,4]\n%6 = const {value=-7} : "
     "i32[]\n"
     "%7 = add(%5, %6) : i32[N,4]\n%8 = sum(%7) {axes=[1], keepdims=0} : i32[N]\n%9 = max(%7) {axes=[0], "
     "keepdims=0} : i32[4]\n"
     "return y=%4, z=%5, s=%8, m=%9\n",
     true, false},
    {"bias_add", "input @x : f32[N,3,2,2]\ninput @b : f32[3]\n",
     "%0 = input @x : f32[N,3,2,2]\n%1 = input @b : f32[3]\n%2 = bias_add(%0, %1) {axis=1} : "
     "f32[N,3,2,2]\nreturn y=%2\n",
     false, false},
    {"const", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = const {value=2.5} : f32[]\n%2 = add(%0, %1) : f32[N,4]\nreturn y=%2\n",
     false, false},
#define RED(op, attrs, sx, sy)                                                                              \
    {                                                                                                       \
        op, "input @x : f32" sx "\n",                                                                       \
            "%0 = input @x : f32" sx "\n%1 = " op "(%0) " attrs " : f32" sy "\nreturn y=%1\n", false, false \
    }
    RED("sum", "{axes=[1], keepdims=0}", "[N,3,4]", "[N,4]"),
    RED("sum", "{axes=[], keepdims=0}", "[N,3,4]", "[]"),
    RED("mean", "{axes=[0,2], keepdims=1}", "[N,3,4]", "[1,3,1]"),
    RED("max", "{axes=[1], keepdims=0}", "[N,3,4]", "[N,4]"),
    RED("variance", "{axes=[2], keepdims=0}", "[N,3,4]", "[N,3]"),
    RED("variance", "{axes=[0], keepdims=1}", "[N,3,4]", "[1,3,4]"),
    /* long rows: the work-group reductions */
    RED("sum", "{axes=[2], keepdims=0}", "[N,3,300]", "[N,3]"),
    RED("mean", "{axes=[], keepdims=0}", "[N,100]", "[]"),
    RED("max", "{axes=[1], keepdims=0}", "[N,300]", "[N]"),
    RED("variance", "{axes=[0,2], keepdims=1}", "[N,4,100]", "[1,4,1]"),
#undef RED
    {"argmax", "input @x : f32[N,3,4]\n",
     "%0 = input @x : f32[N,3,4]\n%1 = argmax(%0) {axis=1} : i32[N,4]\nreturn y=%1\n", true, false},
    {"argmax_long", "input @x : f32[N,300]\n",
     "%0 = input @x : f32[N,300]\n%1 = argmax(%0) {axis=1} : i32[N]\nreturn y=%1\n", true, false},
    {"sum_to", "input @x : f32[N,4]\n", "%0 = input @x : f32[N,4]\n%1 = sum_to(%0) : f32[4]\nreturn y=%1\n",
     false, false},
    {"sum_to_long", "input @x : f32[N,4,10,10]\n",
     "%0 = input @x : f32[N,4,10,10]\n%1 = sum_to(%0) : f32[4,1,1]\nreturn y=%1\n", false, false},
    {"broadcast_to", "input @x : f32[3,1]\n",
     "%0 = input @x : f32[3,1]\n%1 = broadcast_to(%0) : f32[N,3,4]\nreturn y=%1\n", false, false},
    {"matmul", "input @x : f32[N,5]\ninput @w : f32[5,3]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @w : f32[5,3]\n%2 = matmul(%0, %1) {transpose_a=0, transpose_b=0} "
     ": f32[N,3]\n"
     "return y=%2\n",
     false, false},
    {"matmul_t", "input @x : f32[5,N]\ninput @w : f32[3,5]\n",
     "%0 = input @x : f32[5,N]\n%1 = input @w : f32[3,5]\n%2 = matmul(%0, %1) {transpose_a=1, transpose_b=1} "
     ": f32[N,3]\n"
     "return y=%2\n",
     false, false},
    /* k = 300 with few outputs: split along k with the tiled GEMM (NETC_CL_AS_GPU=1; dot products for
     * A B^T on CPU devices). Positive operands (p...): with signed ones the loss, a signed sum of 18
     * outputs of ~5, cancelled down to 0.018, below the float32 noise that the 1e-4 relative check
     * allows the loss. */
    {"matmul_longk", "input @px : f32[N,300]\ninput @pw : f32[300,6]\n",
     "%0 = input @px : f32[N,300]\n%1 = input @pw : f32[300,6]\n%2 = matmul(%0, %1) {transpose_a=0, "
     "transpose_b=0} : f32[N,6]\nreturn y=%2\n",
     false, false},
    {"matmul_longk_t", "input @px : f32[300,N]\ninput @pw : f32[6,300]\n",
     "%0 = input @px : f32[300,N]\n%1 = input @pw : f32[6,300]\n%2 = matmul(%0, %1) {transpose_a=1, "
     "transpose_b=1} : f32[N,6]\nreturn y=%2\n",
     false, false},
    {"matmul_longk_tb", "input @px : f32[N,300]\ninput @pw : f32[6,300]\n",
     "%0 = input @px : f32[N,300]\n%1 = input @pw : f32[6,300]\n%2 = matmul(%0, %1) {transpose_a=0, "
     "transpose_b=1} : f32[N,6]\nreturn y=%2\n",
     false, false},
    {"reshape_transpose", "input @x : f32[N,2,3]\n",
     "%0 = input @x : f32[N,2,3]\n%1 = transpose(%0) {perm=[2,0,1]} : f32[3,N,2]\n%2 = reshape(%1) : "
     "f32[6,N]\n"
     "return y=%2\n",
     false, false},
    {"slice_pad", "input @x : f32[N,4,2]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = slice(%0) {axis=1, start=1, size=2} : f32[N,2,2]\n"
     "%2 = pad(%1) {axis=2, before=1, after=2} : f32[N,2,5]\nreturn y=%2\n",
     false, false},
    {"concat", "input @a : f32[N,2]\ninput @b : f32[N,3]\n",
     "%0 = input @a : f32[N,2]\n%1 = input @b : f32[N,3]\n%2 = concat(%0, %1, %0) {axis=1} : "
     "f32[N,7]\nreturn y=%2\n",
     false, false},
    {"softmax", "input @x : f32[N,3,4]\n",
     "%0 = input @x : f32[N,3,4]\n%1 = softmax(%0) {axis=1} : f32[N,3,4]\nreturn y=%1\n", false, false},
    {"log_softmax", "input @x : f32[N,5]\n",
     "%0 = input @x : f32[N,5]\n%1 = log_softmax(%0) {axis=1} : f32[N,5]\nreturn y=%1\n", false, false},
    {"softmax_long", "input @x : f32[N,300]\n",
     "%0 = input @x : f32[N,300]\n%1 = softmax(%0) {axis=1} : f32[N,300]\nreturn y=%1\n", false, false},
    {"log_softmax_long", "input @x : f32[N,300,2]\n",
     "%0 = input @x : f32[N,300,2]\n%1 = log_softmax(%0) {axis=1} : f32[N,300,2]\nreturn y=%1\n", false,
     false},
#define LOSS(op, a, b, s)                                                          \
    {                                                                              \
        op, "input @" a " : f32" s "\ninput @" b " : f32" s "\n",                  \
            "%0 = input @" a " : f32" s "\n%1 = input @" b " : f32" s "\n%2 = " op \
            "(%0, %1) : f32[]\nreturn y=%2\n",                                     \
            false, false                                                           \
    }
    LOSS("mse", "x", "t", "[N,3]"),
    LOSS("bce", "qx", "qt", "[N,3]"),
    LOSS("bce_logits", "x", "qt", "[N,3]"),
    LOSS("hinge", "x", "st", "[N,3]"),
    LOSS("cross_entropy", "x", "dt", "[N,5]"),
    LOSS("mse", "x", "t", "[N,100]"),
    LOSS("cross_entropy", "x", "dt", "[N,300]"),
#undef LOSS
    {"cross_entropy_labels", "input @x : f32[N,5]\ninput @lt : i32[N]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @lt : i32[N]\n%2 = cross_entropy(%0, %1) : f32[]\nreturn y=%2\n",
     false, false},
    {"cross_entropy_labels_long", "input @x : f32[N,300]\ninput @lt : i32[N]\n",
     "%0 = input @x : f32[N,300]\n%1 = input @lt : i32[N]\n%2 = cross_entropy(%0, %1) : f32[]\nreturn y=%2\n",
     false, false},
    {"accuracy", "input @x : f32[N,5]\ninput @lt : i32[N]\ninput @dt : f32[N,5]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @lt : i32[N]\n%2 = accuracy(%0, %1) : f32[]\n%3 = input @dt : "
     "f32[N,5]\n"
     "%4 = accuracy(%0, %3) : f32[]\nreturn y=%2, z=%4\n",
     true, false},
    /* Tokens and sequences: l* ids are in [0, 5), so id 0 (padding, ignored) appears. */
    {"embedding", "input @w : f32[5,3]\ninput @lt : i32[N,4]\n",
     "%0 = input @w : f32[5,3]\n%1 = input @lt : i32[N,4]\n%2 = embedding(%0, %1) : f32[N,4,3]\nreturn "
     "y=%2\n",
     false, false},
    {"one_hot", "input @lt : i32[N,3]\n",
     "%0 = input @lt : i32[N,3]\n%1 = one_hot(%0) {classes=4} : f32[N,3,4]\nreturn y=%1\n", true, false},
    {"masked_cross_entropy", "input @x : f32[N,4,5]\ninput @lt : i32[N,4]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @lt : i32[N,4]\n%2 = masked_cross_entropy(%0, %1) {ignore=0} : "
     "f32[]\n"
     "return y=%2\n",
     false, false},
    {"masked_cross_entropy_long", "input @x : f32[N,100,7]\ninput @lt : i32[N,100]\n",
     "%0 = input @x : f32[N,100,7]\n%1 = input @lt : i32[N,100]\n%2 = masked_cross_entropy(%0, %1) "
     "{ignore=3} : f32[]\n"
     "return y=%2\n",
     false, false},
    {"masked_accuracy", "input @x : f32[N,4,5]\ninput @lt : i32[N,4]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @lt : i32[N,4]\n%2 = masked_accuracy(%0, %1) {ignore=0} : "
     "f32[]\n"
     "return y=%2\n",
     true, false},
    {"masked_mean", "input @x : f32[N,5,2,3]\ninput @lt : i32[N,5]\n",
     "%0 = input @x : f32[N,5,2,3]\n%1 = input @lt : i32[N,5]\n%2 = masked_mean(%0, %1) {pad=0} : "
     "f32[N,2,3]\n"
     "return y=%2\n",
     false, false},
    {"masked_max", "input @x : f32[N,5,3]\ninput @lt : i32[N,5]\n",
     "%0 = input @x : f32[N,5,3]\n%1 = input @lt : i32[N,5]\n%2 = masked_max(%0, %1) {pad=1} : f32[N,3]\n"
     "return y=%2\n",
     false, false},
    {"conv2d", "input @x : f32[N,2,5,5]\ninput @w : f32[4,2,3,3]\n",
     "%0 = input @x : f32[N,2,5,5]\n%1 = input @w : f32[4,2,3,3]\n"
     "%2 = conv2d(%0, %1) {stride=[1,1], pad=[1,1,1,1], dilation=[1,1], groups=1} : f32[N,4,5,5]\nreturn "
     "y=%2\n",
     false, false},
    {"conv2d_strided", "input @x : f32[N,4,7,6]\ninput @w : f32[6,2,2,3]\n",
     "%0 = input @x : f32[N,4,7,6]\n%1 = input @w : f32[6,2,2,3]\n"
     "%2 = conv2d(%0, %1) {stride=[2,1], pad=[0,1,1,0], dilation=[2,1], groups=2} : f32[N,6,3,5]\nreturn "
     "y=%2\n",
     false, false},
    {"conv2d_s2", "input @x : f32[N,3,14,14]\ninput @w : f32[8,3,4,4]\n",
     "%0 = input @x : f32[N,3,14,14]\n%1 = input @w : f32[8,3,4,4]\n"
     "%2 = conv2d(%0, %1) {stride=[2,2], pad=[1,1,1,1], dilation=[1,1], groups=1} : f32[N,8,7,7]\nreturn "
     "y=%2\n",
     false, false},
    {"conv_transpose2d", "input @x : f32[N,3,3,3]\ninput @w : f32[3,2,4,4]\n",
     "%0 = input @x : f32[N,3,3,3]\n%1 = input @w : f32[3,2,4,4]\n"
     "%2 = conv_transpose2d(%0, %1) {stride=[2,2], pad=[1,1,1,1], dilation=[1,1], groups=1, "
     "output_pad=[0,0]} : "
     "f32[N,2,6,6]\nreturn y=%2\n",
     false, false},
    {"maxpool2d", "input @x : f32[N,2,4,4]\n",
     "%0 = input @x : f32[N,2,4,4]\n%1 = maxpool2d(%0) {kernel=[2,2], stride=[2,2], pad=[0,0,0,0]} : "
     "f32[N,2,2,2]\n"
     "return y=%1\n",
     false, false},
    {"maxpool2d_pad", "input @x : f32[N,1,5,5]\n",
     "%0 = input @x : f32[N,1,5,5]\n%1 = maxpool2d(%0) {kernel=[3,3], stride=[2,2], pad=[1,1,1,1]} : "
     "f32[N,1,3,3]\n"
     "return y=%1\n",
     false, false},
    {"avgpool2d", "input @x : f32[N,1,5,5]\n",
     "%0 = input @x : f32[N,1,5,5]\n%1 = avgpool2d(%0) {kernel=[3,3], stride=[2,2], pad=[1,1,1,1]} : "
     "f32[N,1,3,3]\n"
     "return y=%1\n",
     false, false},
    {"upsample2d", "input @x : f32[N,2,2,3]\n",
     "%0 = input @x : f32[N,2,2,3]\n%1 = upsample2d(%0) {scale=[2,3]} : f32[N,2,4,9]\nreturn y=%1\n", false,
     false},
    {"allreduce", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = allreduce(%0) {bucket=-1} : f32[N,4]\nreturn y=%1\n", false, false},
    {"allreduce_sum", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = allreduce_sum(%0) : f32[N,4]\nreturn y=%1\n", false, false},
    {"dropout", "input @x : f32[N,4,5]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = dropout(%0) {rate=0.3, seed=5} : f32[N,4,5]\nreturn y=%1\n", false,
     false},
    {"lstm lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[8,3]\ninput @wh : f32[8,2]\ninput @bi : f32[8]\ninput @bh : "
     "f32[8]\ninput @s0 : f32[N,4]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[8,3]\n%2 = input @wh : f32[8,2]\n%3 = input @bi : "
     "f32[8]\n%4 = input @bh : f32[8]\n%5 = input @s0 : f32[N,4]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=0} : f32[N,4,12]\nreturn y=%7\n",
     false, false},
    {"lstm reverse lengths",
     "input @x : f32[N,4,2]\ninput @wi : f32[12,2]\ninput @wh : f32[12,3]\ninput @bi : f32[12]\ninput @bh : "
     "f32[12]\ninput @s0 : f32[N,6]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = input @wi : f32[12,2]\n%2 = input @wh : f32[12,3]\n%3 = input @bi : "
     "f32[12]\n%4 = input @bh : f32[12]\n%5 = input @s0 : f32[N,6]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=1} : f32[N,4,18]\nreturn y=%7\n",
     false, false},
    {"gru reverse lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[6,3]\ninput @wh : f32[6,2]\ninput @bi : f32[6]\ninput @bh : "
     "f32[6]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[6,3]\n%2 = input @wh : f32[6,2]\n%3 = input @bi : "
     "f32[6]\n%4 = input @bh : f32[6]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=1, reverse=1} : f32[N,4,14]\nreturn y=%7\n",
     false, false},
    {"gru",
     "input @x : f32[N,3,2]\ninput @wi : f32[9,2]\ninput @wh : f32[9,3]\ninput @bi : f32[9]\ninput @bh : "
     "f32[9]\ninput @s0 : f32[N,3]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[9,2]\n%2 = input @wh : f32[9,3]\n%3 = input @bi : "
     "f32[9]\n%4 = input @bh : f32[9]\n%5 = input @s0 : f32[N,3]\n%6 = const {value=3} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=1, reverse=0} : f32[N,3,21]\nreturn y=%7\n",
     false, false},
    {"rnn tanh lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[2,3]\ninput @wh : f32[2,2]\ninput @bi : f32[2]\ninput @bh : "
     "f32[2]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[2,3]\n%2 = input @wh : f32[2,2]\n%3 = input @bi : "
     "f32[2]\n%4 = input @bh : f32[2]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=2, reverse=0} : f32[N,4,2]\nreturn y=%7\n",
     false, false},
    {"rnn relu reverse",
     "input @x : f32[N,4,2]\ninput @wi : f32[3,2]\ninput @wh : f32[3,3]\ninput @bi : f32[3]\ninput @bh : "
     "f32[3]\ninput @s0 : f32[N,3]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = input @wi : f32[3,2]\n%2 = input @wh : f32[3,3]\n%3 = input @bi : "
     "f32[3]\n%4 = input @bh : f32[3]\n%5 = input @s0 : f32[N,3]\n%6 = const {value=4} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=3, reverse=1} : f32[N,4,3]\nreturn y=%7\n",
     false, false},
    {"rnn sigmoid",
     "input @x : f32[N,3,2]\ninput @wi : f32[2,2]\ninput @wh : f32[2,2]\ninput @bi : f32[2]\ninput @bh : "
     "f32[2]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[2,2]\n%2 = input @wh : f32[2,2]\n%3 = input @bi : "
     "f32[2]\n%4 = input @bh : f32[2]\n%5 = input @s0 : f32[N,2]\n%6 = const {value=3} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=4, reverse=0} : f32[N,3,2]\nreturn y=%7\n",
     false, false},
    {"gru final state, lengths",
     "input @x : f32[N,4,3]\ninput @wi : f32[6,3]\ninput @wh : f32[6,2]\ninput @bi : f32[6]\ninput @bh : "
     "f32[6]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[6,3]\n%2 = input @wh : f32[6,2]\n%3 = input @bi : "
     "f32[6]\n%4 = input @bh : f32[6]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=1, reverse=0} : f32[N,4,14]\n%8 = slice(%7) {axis=1, start=3, size=1} : "
     "f32[N,1,14]\n%9 = slice(%8) {axis=2, start=0, size=2} : f32[N,1,2]\nreturn y=%9\n",
     false, false},
    {"gru reverse final state, h 20",
     "input @x : f32[N,3,2]\ninput @wi : f32[60,2]\ninput @wh : f32[60,20]\ninput @bi : f32[60]\ninput @bh : "
     "f32[60]\ninput @s0 : f32[N,20]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[60,2]\n%2 = input @wh : f32[60,20]\n%3 = input @bi : "
     "f32[60]\n%4 = input @bh : f32[60]\n%5 = input @s0 : f32[N,20]\n%6 = const {value=3} : i32[N]\n%7 = "
     "rnn(%0, %1, %2, %3, %4, %5, %6) {cell=1, reverse=1} : f32[N,3,140]\n%8 = slice(%7) {axis=1, start=0, "
     "size=1} : f32[N,1,140]\n%9 = slice(%8) {axis=2, start=0, size=20} : f32[N,1,20]\nreturn y=%9\n",
     false, false},
    {"lstm reverse final state, lengths",
     "input @x : f32[N,4,2]\ninput @wi : f32[12,2]\ninput @wh : f32[12,3]\ninput @bi : f32[12]\ninput @bh : "
     "f32[12]\ninput @s0 : f32[N,6]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,2]\n%1 = input @wi : f32[12,2]\n%2 = input @wh : f32[12,3]\n%3 = input @bi : "
     "f32[12]\n%4 = input @bh : f32[12]\n%5 = input @s0 : f32[N,6]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=1} : f32[N,4,18]\n%8 = slice(%7) {axis=1, start=0, size=1} : "
     "f32[N,1,18]\n%9 = slice(%8) {axis=2, start=0, size=3} : f32[N,1,3]\nreturn y=%9\n",
     false, false},
    {"lstm every h, h 17, lengths",
     "input @x : f32[N,3,2]\ninput @wi : f32[68,2]\ninput @wh : f32[68,17]\ninput @bi : f32[68]\ninput @bh : "
     "f32[68]\ninput @s0 : f32[N,34]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @wi : f32[68,2]\n%2 = input @wh : f32[68,17]\n%3 = input @bi : "
     "f32[68]\n%4 = input @bh : f32[68]\n%5 = input @s0 : f32[N,34]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=0, reverse=0} : f32[N,3,102]\n%8 = slice(%7) {axis=2, start=0, size=17} "
     ": f32[N,3,17]\nreturn y=%8\n",
     false, false},
    {"rnn tanh final state",
     "input @x : f32[N,4,3]\ninput @wi : f32[2,3]\ninput @wh : f32[2,2]\ninput @bi : f32[2]\ninput @bh : "
     "f32[2]\ninput @s0 : f32[N,2]\ninput @lens : i32[N]\n",
     "%0 = input @x : f32[N,4,3]\n%1 = input @wi : f32[2,3]\n%2 = input @wh : f32[2,2]\n%3 = input @bi : "
     "f32[2]\n%4 = input @bh : f32[2]\n%5 = input @s0 : f32[N,2]\n%6 = input @lens : i32[N]\n%7 = rnn(%0, "
     "%1, %2, %3, %4, %5, %6) {cell=2, reverse=0} : f32[N,4,2]\n%8 = slice(%7) {axis=1, start=3, size=1} : "
     "f32[N,1,2]\n%9 = slice(%8) {axis=2, start=0, size=2} : f32[N,1,2]\nreturn y=%9\n",
     false, false},
    {"batchnorm",
     "input @x : f32[N,3,2]\ninput @g : f32[3]\ninput @b : f32[3]\ninput @m : f32[3]\ninput @pv : f32[3]\n",
     "%0 = input @x : f32[N,3,2]\n%1 = input @g : f32[3]\n%2 = input @b : f32[3]\n%3 = input @m : f32[3]\n"
     "%4 = input @pv : f32[3]\n%5 = batchnorm(%0, %1, %2, %3, %4) {eps=1e-05} : f32[N,3,2]\nreturn y=%5\n",
     false, false},
    {"batchnorm_train", "input @x : f32[N,8,7,7]\ninput @g : f32[8]\ninput @b : f32[8]\n",
     "%0 = input @x : f32[N,8,7,7]\n%1 = input @g : f32[8]\n%2 = input @b : f32[8]\n"
     "%3 = mean(%0) {axes=[0,2,3], keepdims=0} : f32[8]\n%4 = variance(%0) {axes=[0,2,3], keepdims=0} : "
     "f32[8]\n"
     "%5 = batchnorm(%0, %1, %2, %3, %4) {eps=1e-05} : f32[N,8,7,7]\n%6 = leaky_relu(%5) {alpha=0.2} : "
     "f32[N,8,7,7]\n"
     "return y=%6\n",
     false, false},
    {"assign", "input @x : f32[N,4]\nparam @w : f32[4] init=zeros\nstate @s : f32[4] init=zeros\n",
     "%0 = input @x : f32[N,4]\n%1 = param @w : f32[4]\n%2 = sum_to(%0) : f32[4]\n%3 = sub(%1, %2) : f32[4]\n"
     "%4 = assign @w(%3) : f32[4]\n%5 = add(%1, %1) : f32[4]\n%6 = assign @s(%5) : f32[4]\nreturn y=%5\n",
     true, false},
    /* fused kernels: heads with bias and activation epilogues, broadcasting chains */
    {"fused_dense", "input @x : f32[N,5]\ninput @w : f32[5,4]\ninput @b : f32[4]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @w : f32[5,4]\n%2 = input @b : f32[4]\n"
     "%3 = matmul(%0, %1) {transpose_a=0, transpose_b=0} : f32[N,4]\n%4 = bias_add(%3, %2) {axis=1} : "
     "f32[N,4]\n"
     "%5 = relu(%4) : f32[N,4]\nreturn y=%5\n",
     false, true},
    {"fused_dense_longk", "input @x : f32[N,300]\ninput @w : f32[300,4]\ninput @b : f32[4]\n",
     "%0 = input @x : f32[N,300]\n%1 = input @w : f32[300,4]\n%2 = input @b : f32[4]\n"
     "%3 = matmul(%0, %1) {transpose_a=0, transpose_b=0} : f32[N,4]\n%4 = bias_add(%3, %2) {axis=1} : "
     "f32[N,4]\n"
     "%5 = relu(%4) : f32[N,4]\nreturn y=%5\n",
     false, true},
    {"fused_conv", "input @x : f32[N,2,5,5]\ninput @w : f32[3,2,3,3]\ninput @b : f32[3]\n",
     "%0 = input @x : f32[N,2,5,5]\n%1 = input @w : f32[3,2,3,3]\n%2 = input @b : f32[3]\n"
     "%3 = conv2d(%0, %1) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=1} : f32[N,3,3,3]\n"
     "%4 = bias_add(%3, %2) {axis=1} : f32[N,3,3,3]\n%5 = tanh(%4) : f32[N,3,3,3]\nreturn y=%5\n",
     false, true},
    {"fused_chain", "input @x : f32[N,3,4]\ninput @a : f32[3,1]\ninput @b : f32[4]\n",
     "%0 = input @x : f32[N,3,4]\n%1 = input @a : f32[3,1]\n%2 = input @b : f32[4]\n%3 = mul(%0, %1) : "
     "f32[N,3,4]\n"
     "%4 = add(%3, %2) : f32[N,3,4]\n%5 = sigmoid(%4) : f32[N,3,4]\n%6 = mul(%5, %0) : f32[N,3,4]\nreturn "
     "y=%6\n",
     false, true},
/* the transformer ops (last, so that the cases above keep their random data) */
#define UN(op, attrs, buf)                                                                               \
    {                                                                                                    \
        op, "input @" buf " : f32[N,4]\n",                                                               \
            "%0 = input @" buf " : f32[N,4]\n%1 = " op "(%0)" attrs " : f32[N,4]\nreturn y=%1\n", false, \
            false                                                                                        \
    }
    UN("erf", "", "x"),
    UN("gelu", " {approximate=0}", "x"),
    UN("gelu", " {approximate=1}", "x"),
#undef UN
    {"bmm_shared_w", "input @x : f32[N,4,5]\ninput @w : f32[5,3]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @w : f32[5,3]\n%2 = matmul(%0, %1) {transpose_a=0, "
     "transpose_b=0} : f32[N,4,3]\n"
     "return y=%2\n",
     false, false},
    {"bmm_tb", "input @x : f32[N,2,4,5]\ninput @z : f32[N,2,3,5]\n",
     "%0 = input @x : f32[N,2,4,5]\n%1 = input @z : f32[N,2,3,5]\n%2 = matmul(%0, %1) {transpose_a=0, "
     "transpose_b=1} : f32[N,2,4,3]\n"
     "return y=%2\n",
     false, false},
    {"bmm_broadcast_ta", "input @x : f32[2,5,4]\ninput @z : f32[N,1,5,3]\n",
     "%0 = input @x : f32[2,5,4]\n%1 = input @z : f32[N,1,5,3]\n%2 = matmul(%0, %1) {transpose_a=1, "
     "transpose_b=0} : f32[N,2,4,3]\n"
     "return y=%2\n",
     false, false},
    {"matmul_bsum_ta", "input @x : f32[N,4,5]\ninput @z : f32[N,4,3]\n",
     "%0 = input @x : f32[N,4,5]\n%1 = input @z : f32[N,4,3]\n%2 = matmul_bsum(%0, %1) {transpose_a=1, "
     "transpose_b=0} : f32[5,3]\n"
     "return y=%2\n",
     false, false},
    {"matmul_bsum_tb", "input @x : f32[N,2,4,5]\ninput @z : f32[N,2,3,5]\n",
     "%0 = input @x : f32[N,2,4,5]\n%1 = input @z : f32[N,2,3,5]\n%2 = matmul_bsum(%0, %1) {transpose_a=0, "
     "transpose_b=1} : f32[4,3]\n"
     "return y=%2\n",
     false, false},
    {"attn_softmax", "input @x : f32[N,2,3,4]\n",
     "%0 = input @x : f32[N,2,3,4]\n%1 = attn_softmax(%0) {scale=0.5, causal=0} : f32[N,2,3,4]\nreturn "
     "y=%1\n",
     false, false},
    {"attn_softmax_causal", "input @x : f32[N,2,3,5]\n",
     "%0 = input @x : f32[N,2,3,5]\n%1 = attn_softmax(%0) {scale=0.25, causal=1} : f32[N,2,3,5]\nreturn "
     "y=%1\n",
     false, false},
    /* the fused attention core: d = 3 and d = 17 (padding of the runtime's blocks
     * of 16, a second block), T = 19 (two blocks of keys), causal and not */
    {"attention_causal", "input @x : f32[N,5,18]\n",
     "%0 = input @x : f32[N,5,18]\n%1 = attention(%0) {heads=2, scale=0.6, causal=1} : f32[N,5,6]\nreturn "
     "y=%1\n",
     false, false},
    {"attention_long", "input @x : f32[N,19,12]\n",
     "%0 = input @x : f32[N,19,12]\n%1 = attention(%0) {heads=1, scale=0.5, causal=0} : f32[N,19,4]\nreturn "
     "y=%1\n",
     false, false},
    {"attention_wide", "input @x : f32[N,18,102]\n",
     "%0 = input @x : f32[N,18,102]\n%1 = attention(%0) {heads=2, scale=0.25, causal=1} : "
     "f32[N,18,34]\nreturn y=%1\n",
     false, false},
    /* layernorm: rows shorter than the runtime's 8 lanes, and 2 lanes plus a tail */
    {"layernorm", "input @x : f32[N,3,7]\n",
     "%0 = input @x : f32[N,3,7]\n%1 = layernorm(%0) {eps=1e-05} : f32[N,3,7]\nreturn y=%1\n", false, false},
    {"layernorm_wide", "input @x : f32[N,21]\n",
     "%0 = input @x : f32[N,21]\n%1 = layernorm(%0) {eps=0.001} : f32[N,21]\nreturn y=%1\n", false, false},
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
        false,
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
        false,
    },
    /* stride-1 unpadded convolutions with 32 taps or more: on CPU devices the
     * register-block GEMM reads the input in place (implicit GEMM) in the
     * forward pass and the weight gradient; dilation, groups, and output
     * rows split across the GEMM's column blocks */
    {"conv2d_implicit", "input @x : f32[N,8,10,9]\ninput @w : f32[32,4,3,3]\n",
     "%0 = input @x : f32[N,8,10,9]\n%1 = input @w : f32[32,4,3,3]\n"
     "%2 = conv2d(%0, %1) {stride=[1,1], pad=[0,0,0,0], dilation=[1,2], groups=2} : f32[N,32,8,5]\nreturn "
     "y=%2\n",
     false, false},
    {"conv2d_implicit_wide", "input @x : f32[N,6,3,20]\ninput @w : f32[20,6,2,3]\n",
     "%0 = input @x : f32[N,6,3,20]\n%1 = input @w : f32[20,6,2,3]\n"
     "%2 = conv2d(%0, %1) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=1} : f32[N,20,2,18]\nreturn "
     "y=%2\n",
     false, false},
    /* 2x2 max pooling of planes with rows of fewer than 8 windows (the
     * gradient's vectors over a row pair), odd and even sizes */
    {"maxpool2d_short", "input @x : f32[N,3,11,11]\n",
     "%0 = input @x : f32[N,3,11,11]\n%1 = maxpool2d(%0) {kernel=[2,2], stride=[2,2], pad=[0,0,0,0]} : "
     "f32[N,3,5,5]\n"
     "return y=%1\n",
     false, false},
    {"maxpool2d_short_even", "input @x : f32[N,2,7,12]\n",
     "%0 = input @x : f32[N,2,7,12]\n%1 = maxpool2d(%0) {kernel=[2,2], stride=[2,2], pad=[0,0,0,0]} : "
     "f32[N,2,3,6]\n"
     "return y=%1\n",
     false, false},
    {"fused_conv_implicit", "input @x : f32[N,5,6,6]\ninput @w : f32[12,5,3,3]\ninput @b : f32[12]\n",
     "%0 = input @x : f32[N,5,6,6]\n%1 = input @w : f32[12,5,3,3]\n%2 = input @b : f32[12]\n"
     "%3 = conv2d(%0, %1) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=1} : f32[N,12,4,4]\n"
     "%4 = bias_add(%3, %2) {axis=1} : f32[N,12,4,4]\n%5 = relu(%4) : f32[N,12,4,4]\nreturn y=%5\n",
     false, true}, /* (last, so that the cases above keep their random data) */
    /* GELU's derivative alone (simplify's, beside the forward's gelu) */
    {"gelu_deriv", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = gelu_deriv(%0) {approximate=0} : f32[N,4]\nreturn y=%1\n", true, false},
    {"gelu_deriv_tanh", "input @x : f32[N,4]\n",
     "%0 = input @x : f32[N,4]\n%1 = gelu_deriv(%0) {approximate=1} : f32[N,4]\nreturn y=%1\n", true, false},
    {"fused_dense_gelu", "input @x : f32[N,5]\ninput @w : f32[5,4]\ninput @b : f32[4]\n",
     "%0 = input @x : f32[N,5]\n%1 = input @w : f32[5,4]\n%2 = input @b : f32[4]\n"
     "%3 = matmul(%0, %1) {transpose_a=0, transpose_b=0} : f32[N,4]\n%4 = bias_add(%3, %2) {axis=1} : "
     "f32[N,4]\n"
     "%5 = gelu(%4) {approximate=0} : f32[N,4]\nreturn y=%5\n",
     false, true},
    /* The conv weight gradient behind a max pooling (nograd: a gradient op):
     * the C runtime's 2x2 fast path (3x3 stride 1, two 16-lane blocks per row
     * of the wide case) and its generic loop (strided, padded, grouped conv,
     * overlapping padded 3x3 windows). In the fused module, whose data comes
     * after every other case's. */
    {"conv2d_grad_weight_maxpool",
     "input @x : f32[N,2,7,8]\ninput @y : f32[N,3,7,8]\ninput @g : f32[N,3,3,4]\n",
     "%0 = input @x : f32[N,2,7,8]\n%1 = input @y : f32[N,3,7,8]\n%2 = input @g : f32[N,3,3,4]\n"
     "%3 = conv2d_grad_weight_maxpool(%0, %1, %2) {stride=[1,1], pad=[1,1,1,1], dilation=[1,1], groups=1, "
     "pool_kernel=[2,2], pool_stride=[2,2], pool_pad=[0,0,0,0]} : f32[3,2,3,3]\nreturn y=%3\n",
     true, true},
    {"conv2d_grad_weight_maxpool_wide",
     "input @x : f32[N,1,6,38]\ninput @y : f32[N,2,4,36]\ninput @g : f32[N,2,2,18]\n",
     "%0 = input @x : f32[N,1,6,38]\n%1 = input @y : f32[N,2,4,36]\n%2 = input @g : f32[N,2,2,18]\n"
     "%3 = conv2d_grad_weight_maxpool(%0, %1, %2) {stride=[1,1], pad=[0,0,0,0], dilation=[1,1], groups=1, "
     "pool_kernel=[2,2], pool_stride=[2,2], pool_pad=[0,0,0,0]} : f32[2,1,3,3]\nreturn y=%3\n",
     true, true},
    {"conv2d_grad_weight_maxpool_generic",
     "input @x : f32[N,2,7,7]\ninput @y : f32[N,4,4,4]\ninput @g : f32[N,4,2,2]\n",
     "%0 = input @x : f32[N,2,7,7]\n%1 = input @y : f32[N,4,4,4]\n%2 = input @g : f32[N,4,2,2]\n"
     "%3 = conv2d_grad_weight_maxpool(%0, %1, %2) {stride=[2,2], pad=[1,1,1,1], dilation=[1,1], groups=2, "
     "pool_kernel=[3,3], pool_stride=[2,2], pool_pad=[1,1,1,1]} : f32[4,1,3,3]\nreturn y=%3\n",
     true, true},
};
#define NCASES ((int)(sizeof cases / sizeof *cases))

/* Appends text with every @name renamed @name_k (buffers of different cases
 * stay apart in one module). */
static size_t put_renamed(char *out, size_t at, size_t cap, const char *text, int k) {
    for (const char *p = text; *p && at + 16 < cap; p++) {
        out[at++] = *p;
        if (*p != '@') continue;
        while (p[1] && (isalnum((unsigned char)p[1]) || p[1] == '_') && at + 16 < cap) out[at++] = *++p;
        at += (size_t)snprintf(out + at, cap - at, "_%d", k);
    }
    out[at] = '\0';
    return at;
}

/* The module of the cases with fuse == fused: one function @f<k> per case, with
 * the loss and the backward graph added; after the fuse pass when fused. */
static struct ir_module *build(bool fused, int *entry_case) {
    static char text[1 << 17];
    size_t at = (size_t)snprintf(text, sizeof text, "module t%s\n", fused ? "fused" : "ops");
    for (int k = 0; k < NCASES; k++)
        if (cases[k].fuse == fused) at = put_renamed(text, at, sizeof text, cases[k].bufs, k);
    for (int k = 0; k < NCASES; k++) {
        if (cases[k].fuse != fused) continue;
        at += (size_t)snprintf(text + at, sizeof text - at, "func @f%d train {\n", k);
        at = put_renamed(text, at, sizeof text, cases[k].body, k);
        at += (size_t)snprintf(text + at, sizeof text - at, "}\n");
    }
    struct ir_module *m = ir_parse(fused ? "fused" : "ops", text, strlen(text));
    if (!m || !ir_verify(m)) {
        TEST_FAIL_("the %s module does not parse or verify", fused ? "fused" : "ops");
        if (m) ir_module_free(m);
        return NULL;
    }
    int e = 0;
    for (int k = 0; k < NCASES; k++) {
        if (cases[k].fuse != fused) continue;
        entry_case[e] = k;
        struct ir_func *f = m->funcs[e++];
        if (cases[k].nograd) continue;
        int y = f->outputs[0].value;
        struct type t = f->nodes[y].type;
        char wname[32], err[256];
        snprintf(wname, sizeof wname, "wts_%d", k);
        ir_buffer_add(m, BUF_INPUT, wname, t, LOC_NONE);
        int w = ir_node_add(m, f, OP_INPUT, NULL, 0, LOC_NONE);
        ir_set_sym(m, &f->nodes[w], wname);
        ir_infer(m, f, w, err, sizeof err);
        int args[2] = {y, w};
        int p = ir_node_add(m, f, OP_MUL, args, 2, LOC_NONE);
        ir_infer(m, f, p, err, sizeof err);
        int l = ir_node_add(m, f, OP_SUM, &p, 1, LOC_NONE);
        ir_infer(m, f, l, err, sizeof err);
        ir_output_add(m, f, "loss", l);
        f->loss = arena_strdup(m->arena, "loss");
        pass_autodiff_func(m, f, true);
    }
    pass_target = cg_target_opencl.plan; /* kernels both backends emit */
    if (fused) pass_simplify(m);         /* GELU's derivative beside the forward's (fused_dense_gelu) */
    if (fused) CHECK(pass_fuse(m) >= 3);
    if (!ir_verify(m)) TEST_FAIL_("invalid IR after autodiff%s", fused ? " and fusion" : "");
    return m;
}

/* The harness: per model, read its buffers, run every entry point at step STEP
 * writing its outputs, then write every param/state buffer (synced from the
 * device first). */
static void write_harness(FILE *out) {
    fputs("#include \"netrt.h\"\n#include <stdio.h>\n"
          "extern const struct nrt_model netc_model_0, netc_model_1;\n"
          "static const struct nrt_model *const models[] = {&netc_model_0, &netc_model_1};\n",
          out);
    fprintf(out,
            "int main(int argc, char **argv)\n{\n"
            "    (void)argc;\n"
            "    for (int k = 0; k < 2; k++) {\n"
            "        const struct nrt_model *m = models[k];\n"
            "        struct nrt_ctx ctx;\n"
            "        char path[256];\n"
            "        if (nrt_ctx_init(&ctx, m, %d, 0)) { fprintf(stderr, \"init: %%s\\n\", nrt_error()); "
            "return 1; }\n"
            "        snprintf(path, sizeof path, \"in_%%d.bin\", k);\n"
            "        FILE *f = fopen(path, \"rb\");\n"
            "        if (!f) return 1;\n"
            "        for (int i = 0; i < m->n_buffers; i++) {\n"
            "            size_t c = (size_t)nrt_desc_count(m->buffers[i].rank, m->buffers[i].dims, %d);\n"
            "            if (fread(ctx.buf[i], 4, c, f) != c) return 1;\n"
            "        }\n"
            "        fclose(f);\n"
            "        ctx.host_dirty = 1;\n"
            "        ctx.step = %d;\n"
            "        snprintf(path, sizeof path, \"%%s_%%d.bin\", argv[1], k);\n"
            "        f = fopen(path, \"wb\");\n"
            "        if (!f) return 1;\n"
            "        for (int e = 0; e < m->n_entries; e++) {\n"
            "            const struct nrt_entry_desc *ent = &m->entries[e];\n"
            "            if (nrt_ctx_run(&ctx, e, %d)) { fprintf(stderr, \"%%s: %%s\\n\", ent->name, "
            "nrt_error()); return 1; }\n"
            "            for (int o = 0; o < ent->n_outputs; o++)\n"
            "                fwrite(ctx.out[o], 4, (size_t)nrt_desc_count(ent->outputs[o].rank, "
            "ent->outputs[o].dims, %d), f);\n"
            "        }\n"
            "        nrt_ctx_sync(&ctx);\n"
            "        for (int i = 0; i < m->n_buffers; i++)\n"
            "            if (m->buffers[i].kind != NRT_BUF_INPUT)\n"
            "                fwrite(ctx.buf[i], 4, (size_t)nrt_desc_count(m->buffers[i].rank, "
            "m->buffers[i].dims, 1), f);\n"
            "        fclose(f);\n"
            "        nrt_ctx_free(&ctx);\n"
            "    }\n"
            "    return 0;\n}\n",
            BATCH, BATCH, STEP, BATCH, BATCH);
}

static bool close_enough(float c, float cl) { return fabsf(cl - c) <= 1e-4f * fmaxf(fabsf(c), 1e-2f); }

/* Compares `count` values of case k's `what` in the two result files. */
static int compare_values(int k, const char *what, bool i32, FILE *fc, FILE *fcl, size_t count) {
    float *a = calloc(count, 4), *b = calloc(count, 4);
    int bad = 0;
    if (fread(a, 4, count, fc) != count || fread(b, 4, count, fcl) != count) {
        TEST_FAIL_("%s: %s missing from the results", cases[k].name, what);
        bad = 1;
    }
    for (size_t i = 0; i < count && !bad; i++) {
        bool ok = i32 ? ((int32_t *)a)[i] == ((int32_t *)b)[i] : close_enough(a[i], b[i]);
        if (ok) continue;
        if (bad++ < 4) {
            if (i32)
                TEST_FAIL_("%s: %s[%zu] = %d on OpenCL, %d on C", cases[k].name, what, i, ((int32_t *)b)[i],
                           ((int32_t *)a)[i]);
            else
                TEST_FAIL_("%s: %s[%zu] = %.8g on OpenCL, %.8g on C", cases[k].name, what, i, b[i], a[i]);
        }
    }
    free(a);
    free(b);
    return bad;
}

/* Walks module mi's result files in the harness's order. */
static void compare(int mi, struct ir_module *m, const int *entry_case, int *bad_case) {
    char pc[64], pcl[64];
    snprintf(pc, sizeof pc, "c_%d.bin", mi);
    snprintf(pcl, sizeof pcl, "cl_%d.bin", mi);
    FILE *fc = fopen(pc, "rb"), *fcl = fopen(pcl, "rb");
    CHECK(fc && fcl);
    if (!fc || !fcl) {
        if (fc) fclose(fc);
        if (fcl) fclose(fcl);
        return;
    }
    for (size_t e = 0; e < vec_len(m->funcs); e++) {
        const struct ir_func *f = m->funcs[e];
        for (size_t o = 0; o < vec_len(f->outputs); o++) {
            const struct ir_node *n = &f->nodes[f->outputs[o].value];
            bad_case[entry_case[e]] += compare_values(
                entry_case[e], f->outputs[o].name, n->type.dtype == DT_I32, fc, fcl, numel(&n->type.shape));
        }
    }
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        const struct ir_buffer *buf = &m->buffers[b];
        if (buf->kind == BUF_INPUT) continue;
        int k = atoi(strrchr(buf->name, '_') + 1);
        bad_case[k] +=
            compare_values(k, buf->name, buf->type.dtype == DT_I32, fc, fcl, numel(&buf->type.shape));
    }
    fclose(fc);
    fclose(fcl);
}

/* Writes module mi's inputs and its sources for both targets. */
static bool prepare(int mi, struct ir_module *m) {
    char path[64];
    snprintf(path, sizeof path, "in_%d.bin", mi);
    FILE *f = fopen(path, "wb");
    if (!f) return false;
    for (size_t b = 0; b < vec_len(m->buffers); b++) {
        size_t count = numel(&m->buffers[b].type.shape);
        float *data = calloc(count, 4);
        fill(&m->buffers[b], data, (int32_t *)data, count);
        fwrite(data, 4, count, f);
        free(data);
    }
    fclose(f);
    const struct cg_target *targets[2] = {&cg_target_c, &cg_target_opencl};
    for (int t = 0; t < 2; t++) {
        snprintf(path, sizeof path, "%s_%d.c", t ? "cl" : "c", mi);
        f = fopen(path, "w");
        if (!f) return false;
        fprintf(f, "#define netc_model netc_model_%d\n", mi);
        struct cg_options opt = {"test", false, false, NULL, NULL, 0};
        pass_target = targets[t]->plan;
        pass_memplan(m);
        bool ok = targets[t]->emit(m, f, &opt);
        fclose(f);
        if (!ok) return false;
    }
    return true;
}

int main(void) {
    char dir[] = "/tmp/netc-clops-XXXXXX";
    if (!mkdtemp(dir) || chdir(dir) != 0) {
        perror("temporary directory");
        return 1;
    }
    rng_state = 0x5eed;
    int entry_case[2][NCASES], bad_case[NCASES] = {0};
    struct ir_module *mods[2] = {build(false, entry_case[0]), build(true, entry_case[1])};
    bool ok = mods[0] && mods[1];
    for (int mi = 0; mi < 2 && ok; mi++) ok = prepare(mi, mods[mi]);
    CHECK(ok);
    FILE *h = fopen("harness.c", "w");
    write_harness(h);
    fclose(h);
    char cmd[4096];
    const char *cc = "cc -std=c11 -O1 -Wall -Wextra -Werror -I" NETC_SOURCE_DIR "/runtime";
    snprintf(
        cmd, sizeof cmd,
        "%s c_0.c c_1.c harness.c " NETC_BINARY_DIR
        "/runtime/libnetrt.a -lopenblas -lpng -lz -lm -lpthread -o "
        "harness_c && ./harness_c c && "
        "%s cl_0.c cl_1.c harness.c " NETC_BINARY_DIR "/runtime/libnetrt_cl.a " NETC_BINARY_DIR
        "/runtime/libnetrt.a -lOpenCL -lopenblas -lpng -lz -lm -lpthread -o harness_cl && ./harness_cl cl",
        cc, cc);
    int rc = ok ? system(cmd) : 1;
    ASSERT(0, rc);
    if (rc == 0)
        for (int mi = 0; mi < 2; mi++) compare(mi, mods[mi], entry_case[mi], bad_case);
    bool covered[OP_COUNT] = {false};
    for (int mi = 0; mi < 2; mi++)
        for (size_t e = 0; mods[mi] && e < vec_len(mods[mi]->funcs); e++)
            for (int id = 0; id < ir_func_len(mods[mi]->funcs[e]); id++)
                covered[mods[mi]->funcs[e]->nodes[id].op] = true;
    for (int k = 0; k < NCASES && rc == 0; k++) {
        printf("%-28s %s\n", cases[k].name, bad_case[k] ? "MISMATCH" : "ok");
        if (!bad_case[k]) test_passed++;
    }
    for (int op = 0; op < OP_COUNT; op++) {
        if (covered[op])
            test_passed++;
        else
            TEST_FAIL_("op %s is covered by no case", op_info[op].name);
    }
    for (int mi = 0; mi < 2; mi++)
        if (mods[mi]) ir_module_free(mods[mi]);
    if (!test_failed && system("rm -f *.bin *.c harness_c harness_cl") == 0 && chdir("/") == 0)
        rmdir(dir);
    else
        printf("files kept in %s\n", dir);
    TEST_DONE();
}
