/* runtime/transpose16.h -- the in-register transpose of a 16 x 16 block of
 * floats (16 AVX-512 vectors), for the kernels that need a block's columns as
 * vectors: sgemm.c's packing of a transposed B, gemv.c's row dot products
 * (one lane per row). Private to libnetrt; AVX-512 only. */
#ifndef NETC_RUNTIME_TRANSPOSE16_H
#define NETC_RUNTIME_TRANSPOSE16_H

#if defined(__AVX512F__)
#include <immintrin.h>

/* r[j][i] = r[i][j] for 16 vectors of 16 (64 shuffles). */
static inline void nrt_transpose16_regs(__m512 *r) {
    __m512 t[16];
    for (int j = 0; j < 16; j += 2) {
        t[j] = _mm512_unpacklo_ps(r[j], r[j + 1]);
        t[j + 1] = _mm512_unpackhi_ps(r[j], r[j + 1]);
    }
    for (int j = 0; j < 16; j += 4) {
        r[j] = _mm512_shuffle_ps(t[j], t[j + 2], 0x44);
        r[j + 1] = _mm512_shuffle_ps(t[j], t[j + 2], 0xee);
        r[j + 2] = _mm512_shuffle_ps(t[j + 1], t[j + 3], 0x44);
        r[j + 3] = _mm512_shuffle_ps(t[j + 1], t[j + 3], 0xee);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0x88);
        t[j + 4] = _mm512_shuffle_f32x4(r[j], r[j + 4], 0xdd);
        t[j + 8] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0x88);
        t[j + 12] = _mm512_shuffle_f32x4(r[j + 8], r[j + 12], 0xdd);
    }
    for (int j = 0; j < 8; j++) {
        r[j] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0x88);
        r[j + 8] = _mm512_shuffle_f32x4(t[j], t[j + 8], 0xdd);
    }
}
#endif

#endif
