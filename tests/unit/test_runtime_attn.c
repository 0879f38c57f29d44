/* tests/unit/test_runtime_attn.c -- runtime/attn.c (nrt_attention and
 * nrt_attention_grad) against the textbook formulas in double: softmax(scale
 * q k^T + causal mask) v and its gradient (dv = p^T dy, ds = p (dy v^T - rowsum),
 * dq = scale ds k, dk = scale ds^T q), at head widths and step counts that are
 * and are not multiples of the 16-float blocks and the 4-row blocks, causal and
 * not, at 1, 2 and 3 threads. */
#include "runtime/netrt.h"
#include "test.h"

/* A deterministic fill in [-1, 1). */
static void fill(float *v, int64_t n, uint32_t seed) {
    uint32_t s = seed * 2654435761u + 1;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        v[i] = (float)((s >> 8) % 65536) / 32768.0f - 1.0f;
    }
}

static void check_attn(int64_t n, int64_t t, int64_t e, int64_t h, int causal) {
    const int64_t d = e / h, ld = 3 * e;
    const struct nrt_attn g = {n, t, e, h, 1.0f / sqrtf((float)d), causal};
    float *qkv = nrt_alloc((size_t)(n * t * ld) * 4, 0), *y = nrt_alloc((size_t)(n * t * e) * 4, 0);
    float *dy = nrt_alloc((size_t)(n * t * e) * 4, 0), *dqkv = nrt_alloc((size_t)(n * t * ld) * 4, 0);
    float *s0 = nrt_alloc((size_t)(n * h * nrt_attn_scratch_floats(t, d, 0)) * 4, 0);
    float *s1 = nrt_alloc((size_t)(n * h * nrt_attn_scratch_floats(t, d, 1)) * 4, 0);
    double *ry = calloc((size_t)(n * t * e), sizeof(double)),
           *rd = calloc((size_t)(n * t * ld), sizeof(double));
    double *p = calloc((size_t)(t * t), sizeof(double)), *ds = calloc((size_t)(t * t), sizeof(double));
    fill(qkv, n * t * ld, 1), fill(dy, n * t * e, 2);
    for (int64_t b = 0; b < n; b++)
        for (int64_t hh = 0; hh < h; hh++) {
            const float *q = qkv + b * t * ld + hh * d, *k = q + e, *v = q + 2 * e,
                        *gy = dy + b * t * e + hh * d;
            for (int64_t i = 0; i < t; i++) { /* p_i, y_i */
                double mx = -INFINITY, sum = 0;
                for (int64_t j = 0; j < t; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < d; c++) s += (double)q[i * ld + c] * k[j * ld + c];
                    p[i * t + j] = causal && j > i ? -INFINITY : s * g.scale;
                    mx = p[i * t + j] > mx ? p[i * t + j] : mx;
                }
                for (int64_t j = 0; j < t; j++) sum += p[i * t + j] = exp(p[i * t + j] - mx);
                for (int64_t j = 0; j < t; j++) p[i * t + j] /= sum;
                for (int64_t c = 0; c < d; c++) {
                    double a = 0;
                    for (int64_t j = 0; j < t; j++) a += p[i * t + j] * v[j * ld + c];
                    ry[(b * t + i) * e + hh * d + c] = a;
                }
            }
            for (int64_t i = 0; i < t; i++) { /* ds_ij = p_ij (dy_i . v_j - sum_l p_il dy_i . v_l) */
                double dot = 0;
                for (int64_t j = 0; j < t; j++) {
                    double s = 0;
                    for (int64_t c = 0; c < d; c++) s += (double)gy[i * e + c] * v[j * ld + c];
                    ds[i * t + j] = s;
                    dot += p[i * t + j] * s;
                }
                for (int64_t j = 0; j < t; j++) ds[i * t + j] = p[i * t + j] * (ds[i * t + j] - dot);
            }
            double *o = rd + b * t * ld + hh * d;
            for (int64_t i = 0; i < t; i++)
                for (int64_t c = 0; c < d; c++) {
                    double dq = 0, dk = 0, dv = 0;
                    for (int64_t j = 0; j < t; j++) {
                        dq += ds[i * t + j] * k[j * ld + c];
                        dk += ds[j * t + i] * q[j * ld + c];
                        dv += p[j * t + i] * gy[j * e + c];
                    }
                    o[i * ld + c] = dq * g.scale, o[i * ld + e + c] = dk * g.scale,
                               o[i * ld + 2 * e + c] = dv;
                }
        }
    nrt_attention(&g, qkv, y, s0);
    double ey = max_err(y, ry, n * t * e);
    nrt_attention_grad(&g, qkv, y, dy, dqkv, s1);
    double eg = max_err(dqkv, rd, n * t * ld);
    if (ey > 1e-5 || eg > 1e-5)
        TEST_FAIL_("attention n=%lld t=%lld e=%lld h=%lld causal=%d threads=%d: error y %g dqkv %g",
                   (long long)n, (long long)t, (long long)e, (long long)h, causal, nrt_threads_get(), ey, eg);
    else
        test_passed++;
    nrt_free(qkv), nrt_free(y), nrt_free(dy), nrt_free(dqkv), nrt_free(s0), nrt_free(s1);
    free(ry), free(rd), free(p), free(ds);
}

int main(void) {
    /* n, t, e, h: tiny_gpt's heads (d = 32, t = 64); d = 10, 16, 33 and 1;
     * t not a multiple of 4 or 16, t = 1 and 2; d = 64 and 80 (tiles of 4 and
     * 4 + 1 blocks of columns) with t = 21 and 100; t = 130 (three chunks of
     * up to 4 vectors of rows), d = 16 */
    static const int64_t shapes[][4] = {{2, 64, 128, 4}, {3, 13, 20, 2},   {1, 37, 48, 3}, {2, 18, 66, 2},
                                        {1, 1, 8, 2},    {2, 2, 4, 4},     {1, 70, 32, 1}, {2, 5, 99, 3},
                                        {2, 21, 128, 2}, {1, 100, 192, 3}, {1, 23, 80, 1}, {1, 130, 48, 3}};
    for (int threads = 1; threads <= 3; threads++) {
        nrt_threads_set(threads);
        for (size_t s = 0; s < sizeof shapes / sizeof *shapes; s++)
            for (int causal = 0; causal < 2; causal++)
                check_attn(shapes[s][0], shapes[s][1], shapes[s][2], shapes[s][3], causal);
    }
    nrt_threads_set(1);
    TEST_DONE();
}
