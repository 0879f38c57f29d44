/* bench/wino_s2_error.c -- the error of the 4x4 stride-2 phase-Winograd
 * kernels (runtime/wino_s2.c: F(3, 2) and F(2, 2) segments) against the
 * direct kernels, both against a double reference, at 1 thread: max and rms
 * |error| over max |reference|, for the forward (y), the input gradient (dx)
 * and the weight gradient (dw). The input: leaky-relu-like activations (half
 * of them negative and scaled by 0.2, the rest uniform [0, 1)), weights
 * uniform +-1/sqrt(16 ci) (PyTorch's default initialisation scale), dy
 * uniform +-1e-3 (a batch-mean loss's gradient).
 *   cc -O2 -march=native -I. -Ibuild/runtime bench/wino_s2_error.c build/runtime/libnetrt.a \
 *      -lopenblas -lz -lpng -lm -lpthread -ldl -o s2err
 *   ./s2err N CI CO H      (the DCGAN's 64 -> 128 layer at 14x14: ./s2err 16 64 128 14) */
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
    if (argc < 5) return fprintf(stderr, "usage: %s N CI CO H\n", argv[0]), 2;
    int n = atoi(argv[1]), ci = atoi(argv[2]), co = atoi(argv[3]), h = atoi(argv[4]);
    struct nrt_conv c = {n, ci, h, h, co, 4, 4, h / 2, h / 2, 1, {2, 2}, {1, 1, 1, 1}, {1, 1}, 0};
    int64_t nx = (int64_t)n * ci * h * h, nw = (int64_t)co * ci * 16, ny = (int64_t)n * co * c.ho * c.wo;
    float *x = malloc(4 * nx), *w = malloc(4 * nw), *dy = malloc(4 * ny), *a = malloc(4 * (nx + nw + ny)),
          *b = malloc(4 * (nx + nw + ny));
    float *s = malloc(4 * nrt_conv_scratch(&c) + 64);
    double *rdx = calloc(nx, 8), *rdw = calloc(nw, 8), *ry = calloc(ny, 8);
    unsigned sd = 1;
    for (int64_t i = 0; i < nx; i++) x[i] = (float)(rnd(&sd) < 0.5 ? -0.2 * rnd(&sd) : rnd(&sd));
    for (int64_t i = 0; i < nw; i++) w[i] = (float)((rnd(&sd) * 2 - 1) / sqrt(ci * 16.0));
    for (int64_t i = 0; i < ny; i++) dy[i] = (float)((rnd(&sd) * 2 - 1) * 1e-3);
    for (int bb = 0; bb < n; bb++)
        for (int o = 0; o < co; o++)
            for (int oy = 0; oy < c.ho; oy++)
                for (int ox = 0; ox < c.wo; ox++) {
                    int64_t yi = (((int64_t)bb * co + o) * c.ho + oy) * c.wo + ox;
                    for (int i = 0; i < ci; i++)
                        for (int ky = 0; ky < 4; ky++)
                            for (int kx = 0; kx < 4; kx++) {
                                int iy = 2 * oy + ky - 1, ix = 2 * ox + kx - 1;
                                if (iy < 0 || ix < 0 || iy >= h || ix >= h) continue;
                                int64_t xi = (((int64_t)bb * ci + i) * h + iy) * h + ix,
                                        wi = (((int64_t)o * ci + i) * 4 + ky) * 4 + kx;
                                rdx[xi] += (double)w[wi] * dy[yi], rdw[wi] += (double)x[xi] * dy[yi];
                                ry[yi] += (double)x[xi] * w[wi];
                            }
                }
    nrt_threads_set(1);
    printf("n %d ci %d co %d %dx%d, 4x4 stride 2 pad 1\n", n, ci, co, h, h);
    setenv("NETC_CONV_WINOGRAD", "0", 1);
    nrt_conv2d(&c, x, w, a, s);
    nrt_conv2d_grad_input(&c, dy, w, a + ny, s);
    nrt_conv2d_grad_weight(&c, x, dy, a + ny + nx, s);
    unsetenv("NETC_CONV_WINOGRAD");
    if (nrt_ws2_conv2d(&c, x, w, NULL, 0, b, s)) stat("y", a, b, ry, ny);
    if (nrt_ws2_conv2d_grad_input(&c, dy, w, b + ny, s)) stat("dx", a + ny, b + ny, rdx, nx);
    if (nrt_ws2_conv2d_grad_weight(&c, x, dy, b + ny + nx, s)) stat("dw", a + ny + nx, b + ny + nx, rdw, nw);
    return 0;
}
