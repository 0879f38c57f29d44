/* tests/fuzz/fuzz_ckpt.c -- libFuzzer target: the safetensors checkpoint reader
 * (nrt_st_reader_init on the input as a file), then a round trip of whatever it
 * accepts: every tensor and metadata pair goes through the writer
 * (nrt_st_writer_save, to a scratch directory on tmpfs) and is read back, and
 * the second reading must hold the same names, dtypes, shapes, bytes and
 * metadata. The writer may refuse a name the reader took (the writer is
 * stricter: no empty or reserved names); nothing else may differ. */
#include "tests/fuzz/fuzz.h"

#include "runtime/netrt.h"

static void same_or_abort(const struct nrt_st_reader *a, const struct nrt_st_reader *b) {
    if (a->n_tensors != b->n_tensors || a->n_meta != b->n_meta) abort();
    for (int i = 0; i < a->n_tensors; i++) {
        const struct nrt_st_tensor *x = &a->tensors[i];
        const struct nrt_st_tensor *y = nrt_st_reader_find(b, x->name);
        if (!y || x->dtype != y->dtype || x->rank != y->rank || x->nbytes != y->nbytes ||
            memcmp(x->dims, y->dims, sizeof x->dims[0] * (size_t)x->rank) != 0 ||
            (x->nbytes && memcmp(x->data, y->data, x->nbytes) != 0))
            abort();
    }
    for (int i = 0; i < a->n_meta; i++) {
        const char *v = nrt_st_reader_meta_get(b, a->meta[i].key);
        if (!v || strcmp(v, nrt_st_reader_meta_get(a, a->meta[i].key)) != 0) abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct nrt_st_reader r;
    if (nrt_st_reader_init(&r, fuzz_file(data, size)) != NRT_OK) {
        if (!nrt_error()[0]) abort();
        return 0;
    }
    struct nrt_st_writer w;
    nrt_st_writer_init(&w);
    int rc = NRT_OK;
    for (int i = 0; i < r.n_tensors && !rc; i++) {
        const struct nrt_st_tensor *t = &r.tensors[i];
        rc = nrt_st_writer_add(&w, t->name, t->dtype, t->rank, t->dims, t->data);
    }
    for (int i = 0; i < r.n_meta && !rc; i++) rc = nrt_st_writer_meta_set(&w, r.meta[i].key, r.meta[i].value);
    if (rc == NRT_OK) {
        char path[300];
        snprintf(path, sizeof path, "%s/ck.safetensors", fuzz_dir());
        if (nrt_st_writer_save(&w, path) != NRT_OK) abort();
        struct nrt_st_reader back;
        if (nrt_st_reader_init(&back, path) != NRT_OK) {
            fprintf(stderr, "the writer's file does not read back: %s\n", nrt_error());
            abort();
        }
        same_or_abort(&r, &back);
        nrt_st_reader_free(&back);
    }
    nrt_st_writer_free(&w);
    nrt_st_reader_free(&r);
    return 0;
}
