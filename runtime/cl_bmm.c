/* runtime/cl_bmm.c -- the OpenCL batched GEMM (struct nrt_bgemm, see bmm.c):
 * one tiled nrt_cl_sgemm when the batch stacks into rows, else one per batch
 * item at its arena offsets. */
#include "runtime/netrt.h"

void nrt_cl_sgemm_batch(struct nrt_ctx *ctx, const struct nrt_bgemm *g, float alpha, int64_t a, int64_t b,
                        float beta, int64_t c) {
    int64_t nb = nrt_bgemm_count(g);
    if (nb <= 0) return;
    if (nrt_bgemm_rows(g)) {
        nrt_cl_sgemm(ctx, 0, g->tb, nb * g->m, g->n, g->k, alpha, a, g->lda, b, g->ldb, beta, c, g->ldc);
        return;
    }
    for (int64_t q = 0; q < nb; q++) {
        int64_t ao, bo;
        nrt_bgemm_offsets(g, q, &ao, &bo);
        nrt_cl_sgemm(ctx, g->ta, g->tb, g->m, g->n, g->k, alpha, a + ao, g->lda, b + bo, g->ldb, beta,
                     c + q * g->m * g->ldc, g->ldc);
    }
}
