/* bench/wino_error.c -- the error of Winograd against direct convolution on real
 * data: mnist_cnn's second layer on 1000 Fashion-MNIST test images through the
 * trained first layer, relu and max pool (bench/wino_error.py writes the inputs),
 * by the direct kernels, F(2x2, 3x3) and F(4x4, 3x3), each against a double
 * reference; prints the max absolute error.
 *   cc -O2 -march=native -I. bench/wino_error.c build/runtime/libnetrt.a -lopenblas -lm -lpthread -o werr
 * (and the other libraries netrt.pc lists) */
#include "runtime/internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
static float *rd(const char *f, size_t n) {
    float *p = malloc(4 * n);
    FILE *h = fopen(f, "rb");
    if (fread(p, 4, n, h) != n) exit(1);
    fclose(h);
    return p;
}
int main(void) {
    int N = 1000;
    float *x = rd("x.bin", N * 784), *w0 = rd("w0.bin", 288), *b0 = rd("b0.bin", 32),
          *w1 = rd("w1.bin", 18432), *b1 = rd("b1.bin", 64);
    struct nrt_conv c0 = {N, 1, 28, 28, 32, 3, 3, 26, 26, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    struct nrt_conv c1 = {N, 32, 13, 13, 64, 3, 3, 11, 11, 1, {1, 1}, {0, 0, 0, 0}, {1, 1}, 0};
    float *a0 = malloc(4L * N * 32 * 676), *p0 = malloc(4L * N * 32 * 169), *y = malloc(4L * N * 64 * 121);
    float *s = malloc(
        4 * (nrt_conv_scratch(&c0) > nrt_conv_scratch(&c1) ? nrt_conv_scratch(&c0) : nrt_conv_scratch(&c1)));
    nrt_conv2d_bias_act(&c0, x, w0, b0, NRT_ACT_RELU, a0, s);
    struct nrt_pool pl = {N * 32, 26, 26, 13, 13, {2, 2}, {2, 2}, {0, 0, 0, 0}};
    nrt_maxpool2d(&pl, a0, p0);
    double *r = malloc(8L * N * 64 * 121), big = 0;
    for (int b = 0; b < N; b++)
        for (int o = 0; o < 64; o++)
            for (int oh = 0; oh < 11; oh++)
                for (int ow = 0; ow < 11; ow++) {
                    double a = b1[o];
                    for (int ch = 0; ch < 32; ch++)
                        for (int i = 0; i < 3; i++)
                            for (int j = 0; j < 3; j++)
                                a += (double)p0[((b * 32 + ch) * 13 + oh + i) * 13 + ow + j] *
                                     w1[((o * 32 + ch) * 3 + i) * 3 + j];
                    r[((b * 64 + o) * 11 + oh) * 11 + ow] = a;
                    big = fmax(big, fabs(a));
                }
    const char *modes[] = {"0", "2", "1"}, *names[] = {"direct", "F(2x2,3x3)", "F(4x4,3x3)"};
    printf("conv2 pre-activation over %d test images, max |y| %.3f\n", N, big);
    for (int m = 0; m < 3; m++) {
        setenv("NETC_CONV_WINOGRAD", modes[m], 1);
        for (int b = 0; b < N; b += 4) { /* slices of 4 images, as the inference entry runs them */
            struct nrt_conv c = c1;
            c.n = 4;
            nrt_conv2d_bias_act(&c, p0 + (long)b * 32 * 169, w1, b1, NRT_ACT_NONE | NRT_CONV_WINOGRAD,
                                y + (long)b * 64 * 121, s);
        }
        double e = 0, er = 0;
        for (long i = 0; i < (long)N * 64 * 121; i++) {
            double d = fabs(y[i] - r[i]);
            e = fmax(e, d);
            er = fmax(er, d / fmax(fabs(r[i]), 1e-3 * big));
        }
        printf("  %-11s max abs error %.3g (%.3g of max |y|)\n", names[m], e, e / big);
    }
}
