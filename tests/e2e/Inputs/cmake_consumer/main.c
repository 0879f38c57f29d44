/* tests/e2e/Inputs/cmake_consumer/main.c -- links the installed libnetrt through
 * find_package(netrt): draws from the runtime's Philox generator and loads a CSV. */
#include <netrt.h>
#include <stdio.h>

int main(int argc, char **argv) {
    struct nrt_rng r;
    nrt_rng_init(&r, 42, 0);
    printf("philox %u\n", (unsigned)nrt_rng_u32(&r));
    struct nrt_array a = {0};
    if (argc > 1 && nrt_csv_load(&a, argv[1], NULL) == NRT_OK)
        printf("csv %lld x %lld\n", (long long)a.dims[0], (long long)a.dims[1]);
    nrt_array_free(&a);
    return 0;
}
