/* runtime/dataset.c -- datasets (a features array plus an optional labels or
 * targets array with the same number of samples) and batching. Loading goes
 * through the loaders of data.c; a single CSV file can also be split into
 * feature and label columns. Batches are gathered through a permutation into
 * caller buffers with plain copies: nothing here allocates once loaded. */
#include "runtime/internal.h"

#include <stdio.h>
#include <string.h>

/* Elements per sample: the product of dims[1..]. */
static int64_t row_elems(const struct nrt_array *a)
{
    int64_t n = 1;
    for (int i = 1; i < a->rank; i++)
        n *= a->dims[i];
    return n;
}

int nrt_dataset_init(struct nrt_dataset *ds, struct nrt_array *x, const char *x_name,
                     struct nrt_array *y, const char *y_name)
{
    struct nrt_array xa = *x, ya = {0};
    memset(x, 0, sizeof *x);
    if (y) {
        ya = *y;
        memset(y, 0, sizeof *y);
    }
    memset(ds, 0, sizeof *ds);
    x_name = x_name ? x_name : "features";
    y_name = y_name ? y_name : "labels";
    int rc = NRT_OK;
    if (!xa.data || xa.rank < 1)
        rc = nrt_error_set(NRT_ERR_ARG, "%s: features need at least one dim (samples), got rank %d",
                           x_name, xa.data ? xa.rank : 0);
    else if (ya.data && ya.rank < 1)
        rc = nrt_error_set(NRT_ERR_ARG, "%s: labels need at least one dim (samples), got rank 0",
                           y_name);
    else if (ya.data && ya.dims[0] != xa.dims[0])
        rc = nrt_error_set(NRT_ERR_FORMAT, "%s has %lld samples but %s has %lld", x_name,
                           (long long)xa.dims[0], y_name, (long long)ya.dims[0]);
    if (rc) {
        nrt_array_free(&xa);
        nrt_array_free(&ya);
        return rc;
    }
    ds->x = xa;
    ds->y = ya;
    ds->n = xa.dims[0];
    ds->x_row = row_elems(&xa);
    ds->y_row = ya.data ? row_elems(&ya) : 0;
    return NRT_OK;
}

void nrt_dataset_free(struct nrt_dataset *ds)
{
    nrt_array_free(&ds->x);
    nrt_array_free(&ds->y);
    memset(ds, 0, sizeof *ds);
}

int nrt_dataset_load(struct nrt_dataset *ds, const char *x_path, const struct nrt_load_opts *x_opts,
                     const char *y_path, const struct nrt_load_opts *y_opts)
{
    struct nrt_array x, y = {0};
    memset(ds, 0, sizeof *ds);
    int rc = nrt_array_load(&x, x_path, x_opts);
    if (rc)
        return rc;
    if (y_path && (rc = nrt_array_load(&y, y_path, y_opts)) != NRT_OK) {
        nrt_array_free(&x);
        return rc;
    }
    return nrt_dataset_init(ds, &x, x_path, &y, y_path);
}

int nrt_dataset_load_csv(struct nrt_dataset *ds, const char *path, int64_t y_first,
                         int64_t y_count, const struct nrt_load_opts *x_opts,
                         const struct nrt_load_opts *y_opts)
{
    unsigned char *text;
    size_t len;
    struct nrt_csv_table t;
    memset(ds, 0, sizeof *ds);
    int rc = nrt_file_read(path, &text, &len);
    if (rc)
        return rc;
    rc = nrt_csv_parse(&t, path, (const char *)text, len, x_opts ? x_opts->csv_header : -1);
    nrt_free(text);
    if (rc)
        return rc;

    int64_t first = y_first < 0 ? t.cols + y_first : y_first;
    if (y_count < 1 || first < 0 || first > t.cols - y_count || t.cols - y_count < 1) {
        nrt_free(t.values);
        return nrt_error_set(NRT_ERR_ARG,
                             "%s: cannot take %lld label columns from column %lld of %lld and keep "
                             "at least one feature column",
                             path, (long long)y_count, (long long)y_first, (long long)t.cols);
    }
    int64_t xc = t.cols - y_count;
    double *xs = nrt_alloc((size_t)(t.rows * xc) * sizeof *xs, 0);
    double *ys = nrt_alloc((size_t)(t.rows * y_count) * sizeof *ys, 0);
    if (!xs || !ys) {
        nrt_free(xs);
        nrt_free(ys);
        nrt_free(t.values);
        return nrt_error_prefix(NRT_ERR_NOMEM, path);
    }
    for (int64_t r = 0; r < t.rows; r++) {
        const double *row = t.values + r * t.cols;
        double *xr = xs + r * xc;
        for (int64_t c = 0, k = 0; c < t.cols; c++) {
            if (c >= first && c < first + y_count)
                ys[r * y_count + (c - first)] = row[c];
            else
                xr[k++] = row[c];
        }
    }
    int64_t xdims[2] = {t.rows, xc}, ydims[2] = {t.rows, y_count};
    struct nrt_array x, y;
    nrt_free(t.values);
    rc = nrt_array_convert(&x, path, NRT_DT_F64, 0, xs, 2, xdims, x_opts);
    if (rc == NRT_OK) {
        rc = nrt_array_convert(&y, path, NRT_DT_F64, 0, ys, y_count == 1 ? 1 : 2, ydims, y_opts);
        if (rc)
            nrt_array_free(&x);
    }
    nrt_free(xs);
    nrt_free(ys);
    if (rc)
        return rc;
    return nrt_dataset_init(ds, &x, path, &y, path);
}

int64_t nrt_dataset_batch_count(const struct nrt_dataset *ds, int64_t batch_size)
{
    if (batch_size < 1) {
        nrt_error_set(NRT_ERR_ARG, "batch size %lld is not positive", (long long)batch_size);
        return -1;
    }
    return ds->n / batch_size + (ds->n % batch_size != 0);
}

int64_t nrt_dataset_batch_get(const struct nrt_dataset *ds, const int64_t *perm,
                              int64_t batch_size, int64_t b, void *x_out, void *y_out)
{
    int64_t batches = nrt_dataset_batch_count(ds, batch_size);
    if (batches < 0)
        return -1;
    if (b < 0 || b >= batches) {
        nrt_error_set(NRT_ERR_RANGE, "batch %lld is out of range [0, %lld) for %lld samples",
                      (long long)b, (long long)batches, (long long)ds->n);
        return -1;
    }
    if (y_out && !ds->y.data) {
        nrt_error_set(NRT_ERR_ARG, "the dataset has no labels to gather");
        return -1;
    }
    int64_t start = b * batch_size;
    int64_t n = ds->n - start < batch_size ? ds->n - start : batch_size;
    size_t xbytes = (size_t)ds->x_row * nrt_dtype_size(ds->x.dtype);
    size_t ybytes = (size_t)ds->y_row * nrt_dtype_size(ds->y.dtype);
    const char *xs = ds->x.data, *ys = ds->y.data;
    for (int64_t i = 0; i < n; i++) {
        int64_t s = perm ? perm[start + i] : start + i;
        if (s < 0 || s >= ds->n) {
            nrt_error_set(NRT_ERR_RANGE, "permutation entry %lld is %lld, not in [0, %lld)",
                          (long long)(start + i), (long long)s, (long long)ds->n);
            return -1;
        }
        if (x_out)
            memcpy((char *)x_out + (size_t)i * xbytes, xs + (size_t)s * xbytes, xbytes);
        if (y_out)
            memcpy((char *)y_out + (size_t)i * ybytes, ys + (size_t)s * ybytes, ybytes);
    }
    return n;
}
