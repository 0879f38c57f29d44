/* bench/wino_grad_error.c -- the error of the Winograd kernels
 * (runtime/winograd.c) against the direct kernels, both against a double
 * reference, at 1 thread: max and rms |error| over max |reference|. The
 * forward (y) by training's F(2x2, 3x3) and by inference's F(4x4, 3x3)
 * (y4), training's input and weight gradients by F(4x4, 3x3).
 * The input: relu-like activations (half zeros, the rest uniform [0, 1)),
 * weights uniform +-1/sqrt(9 ci) (PyTorch's default initialisation scale),
 * dy uniform +-1e-3 (a batch-mean loss's gradient).
 *   cc -O2 -march=native -I. -Ibuild/runtime bench/wino_grad_error.c build/runtime/libnetrt.a \
 *      -lopenblas -lz -lpng -lm -lpthread -ldl -o gerr
 *   ./gerr N CI CO H PAD      (mnist_cnn's second layer: ./gerr 64 32 64 13 0) */
#include "runtime/internal.h"
#include "runtime/netrt.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static double rnd(unsigned *s) {
    *s = *s * 1664525u + 1013904223u;
    return (*s >> 8) / 16777216.0;
}
static void stat(const char *what, const float *a, const float *b, const double *r, int64_t n) {
    double m = 0, e1 = 0, e2 = 0, q1 = 0, q2 = 0;
    for (int64_t i = 0; i < n; i++) {
        m = fmax(m, fabs(r[i]));
        double d1 = fabs(a[i] - r[i]), d2 = fabs(b[i] - r[i]);
        e1 = fmax(e1, d1), e2 = fmax(e2, d2), q1 += d1 * d1, q2 += d2 * d2;
    }
    printf("  %-3s max|ref| %.3g  direct max %.2e rms %.2e  winograd max %.2e rms %.2e\n", what, m, e1 / m,
           sqrt(q1 / n) / m, e2 / m, sqrt(q2 / n) / m);
}
int main(int argc, char **argv) {
    int n = atoi(argv[1]), ci = atoi(argv[2]), co = atoi(argv[3]), h = atoi(argv[4]), pad = atoi(argv[5]);
    struct nrt_conv c = {
        n, ci, h, h, co, 3, 3, h + 2 * pad - 2, h + 2 * pad - 2, 1, {1, 1}, {pad, pad, pad, pad}, {1, 1}, 0};
    int64_t nx = n * ci * h * h, nw = co * ci * 9, ny = n * co * c.ho * c.wo;
    float *x = malloc(4 * nx), *w = malloc(4 * nw), *dy = malloc(4 * ny), *a = malloc(4 * (nx + nw + ny)),
          *b = malloc(4 * (nx + nw + ny));
    float *s = malloc(4 * nrt_conv_scratch(&c) + 64);
    double *rdx = calloc(nx, 8), *rdw = calloc(nw, 8), *ry = calloc(ny, 8);
    unsigned sd = 1;
    for (int64_t i = 0; i < nx; i++)
        x[i] = (float)(rnd(&sd) < 0.5 ? 0 : rnd(&sd) * 2); /* relu'd: half zeros */
    for (int64_t i = 0; i < nw; i++) w[i] = (float)((rnd(&sd) * 2 - 1) / sqrt(ci * 9.0));
    for (int64_t i = 0; i < ny; i++) dy[i] = (float)((rnd(&sd) * 2 - 1) * 1e-3);
    for (int bb = 0; bb < n; bb++)
        for (int o = 0; o < co; o++)
            for (int oy = 0; oy < c.ho; oy++)
                for (int ox = 0; ox < c.wo; ox++) {
                    int64_t yi = ((bb * co + o) * c.ho + oy) * c.wo + ox;
                    for (int i = 0; i < ci; i++)
                        for (int ky = 0; ky < 3; ky++)
                            for (int kx = 0; kx < 3; kx++) {
                                int iy = oy + ky - pad, ix = ox + kx - pad;
                                if (iy < 0 || ix < 0 || iy >= h || ix >= h) continue;
                                int64_t xi = ((bb * ci + i) * h + iy) * h + ix,
                                        wi = ((o * ci + i) * 3 + ky) * 3 + kx;
                                rdx[xi] += (double)w[wi] * dy[yi], rdw[wi] += (double)x[xi] * dy[yi];
                                ry[yi] += (double)x[xi] * w[wi];
                            }
                }
    nrt_threads_set(1);
    printf("n %d ci %d co %d %dx%d pad %d\n", n, ci, co, h, h, pad);
    setenv("NETC_CONV_WINOGRAD", "0", 1);
    nrt_conv2d(&c, x, w, a, s);
    nrt_conv2d_grad_input(&c, dy, w, a + ny, s);
    nrt_conv2d_grad_weight(&c, x, dy, a + ny + nx, s);
    unsetenv("NETC_CONV_WINOGRAD");
    float *y4 = malloc(4 * ny);
    int r0 = nrt_wino_conv2d_train(&c, x, w, NULL, 0, b, s);
    if (r0) stat("y", a, b, ry, ny);
    setenv("NETC_WINOGRAD_CACHE", "0", 1);
    if (nrt_wino_conv2d(&c, x, w, NULL, 0, y4, s)) stat("y4", a, y4, ry, ny);
    int r2 = nrt_wino_conv2d_grad_input(&c, dy, w, b + ny, s),
        r3 = nrt_wino_conv2d_grad_weight(&c, x, dy, b + ny + nx, s);
    if (r2) stat("dx", a + ny, b + ny, rdx, nx);
    if (r3) stat("dw", a + ny + nx, b + ny + nx, rdw, nw);
    return 0;
}
