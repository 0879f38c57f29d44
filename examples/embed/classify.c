/* examples/embed/classify.c -- a C application with a trained Fashion-MNIST CNN
 * inside it: classifies PNG or PGM images (28x28, gray) with the library that
 * `netc emit examples/mnist_cnn.net --target=lib -o out` writes, built against
 * the installed runtime (see Makefile):
 *
 *   ./classify mnist_cnn.safetensors shirt.png boot.png ...
 *
 * prints one line per image, `FILE: class K (NAME) probability P`, the same
 * class and probability as `./mnist_cnn predict --load CK FILE`. The model
 * lives in one block of memory the application allocates up front
 * (mnist_cnn_memory_size); classifying allocates nothing. */
#include "mnist_cnn.h"
#include "netrt.h" /* nrt_image_load: PNG/PGM reading, from the same runtime */

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static const char *const names[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                      "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CHECKPOINT IMAGE...\n", argv[0]);
        return 2;
    }
    enum { BATCH = 16 };
    size_t bytes = mnist_cnn_memory_size(BATCH);
    void *memory = malloc(bytes);
    mnist_cnn *model;
    if (!memory || mnist_cnn_open(&model, BATCH, 0, memory, bytes) || mnist_cnn_load(model, argv[1])) {
        fprintf(stderr, "classify: %s\n", memory ? mnist_cnn_error() : "out of memory");
        free(memory);
        return 1;
    }
    int status = 0;
    for (int first = 2; first < argc; first += BATCH) {
        int n = 0;
        float *x = mnist_cnn_input_image(model);
        for (int i = first; i < argc && n < BATCH; i++, n++) {
            /* Scaled as in training (mnist_cnn.net: scale 1/255). */
            struct nrt_load_opts scale = nrt_load_opts_features(1.0 / 255, 0);
            struct nrt_array img = {0};
            if (nrt_image_load(&img, argv[i], &scale) || img.count != MNIST_CNN_IMAGE_ITEM) {
                fprintf(stderr, "classify: %s: %s\n", argv[i], img.data ? "not a 28x28 image" : nrt_error());
                nrt_array_free(&img);
                mnist_cnn_close(model);
                free(memory);
                return 1;
            }
            memcpy(x + (size_t)n * MNIST_CNN_IMAGE_ITEM, img.data, sizeof(float) * MNIST_CNN_IMAGE_ITEM);
            nrt_array_free(&img);
        }
        if (mnist_cnn_forward(model, n)) {
            fprintf(stderr, "classify: %s\n", mnist_cnn_error());
            status = 1;
            break;
        }
        const float *logits = mnist_cnn_forward_logits(model);
        for (int k = 0; k < n; k++) {
            const float *y = logits + 10 * k;
            int best = 0;
            for (int j = 1; j < 10; j++)
                if (y[j] > y[best]) best = j;
            double sum = 0;
            for (int j = 0; j < 10; j++) sum += exp((double)y[j] - y[best]);
            printf("%s: class %d (%s) probability %.4f\n", argv[first + k], best, names[best], 1.0 / sum);
        }
    }
    mnist_cnn_close(model);
    free(memory);
    return status;
}
