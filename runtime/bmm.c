/* runtime/bmm.c -- batched matrix products with broadcast batch dims (the IR's
 * matmul on rank >= 3, torch.matmul semantics). A product is a struct nrt_bgemm:
 * the GEMM sizes, and per batch dim of the result its size and the strides (in
 * elements, 0 where broadcast) of the two operands. The result is contiguous.
 * One GEMM when B is shared and A's batch is contiguous, else the batch items
 * split over the thread pool. The OpenCL version is in cl_bmm.c. */
#include "runtime/netrt.h"

int64_t nrt_bgemm_count(const struct nrt_bgemm *g) {
    int64_t n = 1;
    for (int d = 0; d < g->nd; d++) n *= g->dim[d];
    return n;
}

void nrt_bgemm_offsets(const struct nrt_bgemm *g, int64_t q, int64_t *ao, int64_t *bo) {
    *ao = *bo = 0;
    for (int d = g->nd - 1; d >= 0; d--) {
        int64_t c = q % g->dim[d];
        q /= g->dim[d];
        *ao += c * g->sa[d];
        *bo += c * g->sb[d];
    }
}

int nrt_bgemm_rows(const struct nrt_bgemm *g) {
    if (g->ta) return 0;
    int64_t want = (g->ta ? g->k : g->m) * g->lda;
    for (int d = g->nd - 1; d >= 0; d--) {
        if (g->sb[d] != 0 || g->sa[d] != want) return 0;
        want *= g->dim[d];
    }
    return 1;
}

struct bgemm_job {
    const struct nrt_bgemm *g;
    float alpha, beta;
    const float *a, *b;
    float *c;
};

static void bgemm_items(void *arg, int64_t lo, int64_t hi) {
    const struct bgemm_job *j = arg;
    const struct nrt_bgemm *g = j->g;
    for (int64_t q = lo; q < hi; q++) {
        int64_t ao, bo;
        nrt_bgemm_offsets(g, q, &ao, &bo);
        nrt_sgemm(g->ta, g->tb, g->m, g->n, g->k, j->alpha, j->a + ao, g->lda, j->b + bo, g->ldb, j->beta,
                  j->c + q * g->m * g->ldc, g->ldc);
    }
}

void nrt_sgemm_batch(const struct nrt_bgemm *g, float alpha, const float *a, const float *b, float beta,
                     float *c) {
    int64_t nb = nrt_bgemm_count(g);
    if (nb <= 0) return;
    if (nrt_bgemm_rows(g)) { /* B shared, A's items stacked: one GEMM of nb*m rows */
        nrt_sgemm(0, g->tb, nb * g->m, g->n, g->k, alpha, a, g->lda, b, g->ldb, beta, c, g->ldc);
        return;
    }
    struct bgemm_job j = {g, alpha, beta, a, b, c};
    if (nb == 1 || 2.0 * (double)g->m * (double)g->n * (double)g->k > 4e6) {
        for (int64_t q = 0; q < nb; q++) /* large items: each GEMM splits over the pool itself */
            bgemm_items(&j, q, q + 1);
        return;
    }
    nrt_parallel_for(nb, 1, bgemm_items, &j);
}
