/* tests/fuzz/fuzz_load.c -- libFuzzer targets for the runtime's data loaders,
 * one binary per format from this file (FUZZ_FORMAT, set by CMakeLists.txt):
 *   npy     nrt_npy_load          .npy 1.0/2.0/3.0, raw or gzip
 *   idx     nrt_idx_load          IDX, raw (or gzip when the input is gzip)
 *   idx_gz  nrt_idx_load          IDX with the input gzip-compressed first, so
 *                                 mutations reach the parser through zlib
 *   csv     nrt_csv_load and nrt_dataset_load_csv (label column first and last)
 *   image   nrt_image_load        PGM P5/P2 and PNG
 *   array   nrt_array_load        the content sniffing that picks one of them
 * Each input is loaded twice, as f32 features and as i32 labels of 10 classes,
 * from a memfd path, so the file reading (and gzip) code runs too. A load either
 * succeeds with an array whose count matches its dims or fails with a message. */
#include "tests/fuzz/fuzz.h"

#include <zlib.h>

#include "runtime/netrt.h"

#ifndef FUZZ_FORMAT
#error "FUZZ_FORMAT must name the loader (tests/fuzz/CMakeLists.txt sets it)"
#endif
#define FMT_npy 1
#define FMT_idx 2
#define FMT_idx_gz 3
#define FMT_csv 4
#define FMT_image 5
#define FMT_array 6
#define CAT_(a, b) a##b
#define CAT(a, b) CAT_(a, b)
#define FORMAT CAT(FMT_, FUZZ_FORMAT)

/* An array a loader returned: its count must be the product of its dims. */
static void check_array(const struct nrt_array *a) {
    int64_t n = 1;
    for (int i = 0; i < a->rank; i++) n *= a->dims[i];
    if (a->rank < 0 || a->rank > NRT_MAX_RANK || n != a->count || (a->count && !a->data)) abort();
    if (a->dtype == NRT_DT_I32)
        for (int64_t i = 0; i < a->count; i++)
            if (((const int32_t *)a->data)[i] < 0 || ((const int32_t *)a->data)[i] >= 10)
                abort(); /* labels must have been range-checked */
}

static void load(const char *path, const struct nrt_load_opts *o) {
    struct nrt_array a = {0};
    int rc;
#if FORMAT == FMT_npy
    rc = nrt_npy_load(&a, path, o);
#elif FORMAT == FMT_idx || FORMAT == FMT_idx_gz
    rc = nrt_idx_load(&a, path, o);
#elif FORMAT == FMT_csv
    rc = nrt_csv_load(&a, path, o);
#elif FORMAT == FMT_image
    rc = nrt_image_load(&a, path, o);
#else
    rc = nrt_array_load(&a, path, o);
#endif
    if (rc == NRT_OK)
        check_array(&a);
    else if (!nrt_error()[0])
        abort(); /* a failure always leaves a message */
    nrt_array_free(&a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
#if FORMAT == FMT_idx_gz
    static unsigned char *gz;
    static size_t gz_cap;
    uLongf n = compressBound(size) + 32;
    if (n > gz_cap && !(gz = realloc(gz, gz_cap = n))) abort();
    /* A gzip stream: deflateInit2 with windowBits 16+15 writes the gzip wrapper. */
    z_stream z = {0};
    if (deflateInit2(&z, 1, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    z.next_in = (Bytef *)data;
    z.avail_in = (uInt)size;
    z.next_out = gz;
    z.avail_out = (uInt)gz_cap;
    if (deflate(&z, Z_FINISH) != Z_STREAM_END) abort();
    const char *path = fuzz_file(gz, z.total_out);
    deflateEnd(&z);
#else
    const char *path = fuzz_file(data, size);
#endif
    struct nrt_load_opts f = nrt_load_opts_features(1.0 / 255, 0);
    struct nrt_load_opts l = nrt_load_opts_labels(10);
    load(path, &f);
    load(path, &l);
#if FORMAT == FMT_csv
    struct nrt_dataset ds;
    for (int last = 0; last < 2; last++) {
        if (nrt_dataset_load_csv(&ds, path, last ? -1 : 0, 1, &f, &l) == NRT_OK) {
            if (ds.x.count != ds.n * ds.x_row || ds.y.count != ds.n) abort();
            nrt_dataset_free(&ds);
        }
    }
#endif
    return 0;
}
