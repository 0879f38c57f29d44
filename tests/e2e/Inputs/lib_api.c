/* tests/e2e/Inputs/lib_api.c -- the library API of `netc emit --target=lib` on two
 * models linked into one program (linear_regression and mlp_regression): two
 * instances of the linear regression, one allocated by open and one in the
 * caller's block, trained side by side on y = 3x + 2 give identical parameters
 * (their checkpoints are compared by the test) and recover w = 3, b = 2; the
 * training steps allocate nothing; a too-small block is refused; mlp_regression
 * runs its forward pass in the same program. */
#include "linear_regression.h"
#include "mlp_regression.h"
#include "netrt.h"

#include <stdio.h>
#include <stdlib.h>

#define FAIL(...) (fprintf(stderr, __VA_ARGS__), exit(1))

int main(void) {
    enum { B = 32 };
    linear_regression *a, *b;
    size_t bytes = linear_regression_memory_size(B);
    char *block = malloc(bytes);
    if (linear_regression_open(&a, B, 5, NULL, 0)) FAIL("open: %s\n", linear_regression_error());
    if (!linear_regression_open(&b, B, 5, block, bytes - 100))
        FAIL("a block %zu bytes too small was accepted\n", (size_t)100);
    printf("small block: %s\n", linear_regression_error());
    if (linear_regression_open(&b, B, 5, block, bytes))
        FAIL("open in memory: %s\n", linear_regression_error());
    struct nrt_rng rng;
    nrt_rng_init(&rng, 1, 0);
    uint64_t before = nrt_alloc_count();
    float loss = 0;
    for (int step = 0; step < 3000; step++) {
        linear_regression *m[2] = {a, b};
        float xs[B], ys[B];
        for (int i = 0; i < B; i++) {
            xs[i] = nrt_rng_uniform_range(&rng, -1, 1);
            ys[i] = 3 * xs[i] + 2;
        }
        for (int k = 0; k < 2; k++) {
            memcpy(linear_regression_input_x(m[k]), xs, sizeof xs);
            memcpy(linear_regression_input_y(m[k]), ys, sizeof ys);
            if (linear_regression_train_step(m[k], B)) FAIL("train_step: %s\n", linear_regression_error());
        }
        loss = *linear_regression_train_step_loss(b);
    }
    printf("allocations while training: %llu\n", (unsigned long long)(nrt_alloc_count() - before));
    linear_regression_input_x(b)[0] = 1;
    if (linear_regression_forward(b, 1)) FAIL("forward: %s\n", linear_regression_error());
    printf("loss %.2g, f(1) = %.3f\n", loss, linear_regression_forward_y_hat(b)[0]);
    if (linear_regression_save(a, "a.st") || linear_regression_save(b, "b.st"))
        FAIL("save: %s\n", linear_regression_error());
    linear_regression *c;
    if (linear_regression_open(&c, 1, 9, NULL, 0) || linear_regression_load(c, "b.st"))
        FAIL("load: %s\n", linear_regression_error());
    linear_regression_input_x(c)[0] = 1;
    linear_regression_forward(c, 1);
    printf("reloaded f(1) = %.3f\n", linear_regression_forward_y_hat(c)[0]);
    if (!linear_regression_forward(c, 2)) FAIL("a batch over max_batch was run\n");
    printf("batch 2: %s\n", linear_regression_error());
    linear_regression_close(a);
    linear_regression_close(b);
    linear_regression_close(c);
    free(block);
    mlp_regression *r;
    if (mlp_regression_open(&r, 4, 1, NULL, 0)) FAIL("open: %s\n", mlp_regression_error());
    for (int i = 0; i < 4 * MLP_REGRESSION_X_ITEM; i++) mlp_regression_input_x(r)[i] = (float)i / 10;
    if (mlp_regression_forward(r, 4)) FAIL("forward: %s\n", mlp_regression_error());
    printf("mlp_regression forward: %d values\n", 4 * MLP_REGRESSION_Y_ITEM);
    mlp_regression_close(r);
    return 0;
}
