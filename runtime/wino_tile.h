/* runtime/wino_tile.h -- the register tile of the Winograd kernels' batched
 * GEMMs (winograd.c's F(4x4, 3x3) and F(2x2, 3x3), wino_s2.c's phase
 * Winograd) and their weight gradients: P rows of V vectors of 16 output
 * channels, the depth summed in order from 0, so a row's sums are the same
 * whatever P and V. Private to libnetrt; AVX-512 only. */
#ifndef NETC_RUNTIME_WINO_TILE_H
#define NETC_RUNTIME_WINO_TILE_H

#if defined(__AVX512F__)
#include <immintrin.h>
#include <stdint.h>

#define NRT_WINO_TILE_P 6 /* rows per tile at most (by 4 vectors: 24 accumulators) */

/* m[p][16 j + l] = sum over k < K of v[p K + k] * u[k N + 16 j + l] for p < P,
 * j < V (P <= NRT_WINO_TILE_P, V <= 4): v's rows K apart, u's and m's N apart. */
static inline __attribute__((always_inline)) void
nrt_wino_tile(const int P, const int V, int64_t K, int64_t N, const float *v, const float *u, float *m) {
    __m512 acc[NRT_WINO_TILE_P][4];
#pragma GCC unroll 6
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) acc[p][j] = _mm512_setzero_ps();
    for (int64_t k = 0; k < K; k++, u += N) {
        __m512 uv[4];
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) uv[j] = _mm512_loadu_ps(u + 16 * j);
#pragma GCC unroll 6
        for (int p = 0; p < P; p++) {
            __m512 b = _mm512_set1_ps(v[p * K + k]);
#pragma GCC unroll 4
            for (int j = 0; j < V; j++) acc[p][j] = _mm512_fmadd_ps(uv[j], b, acc[p][j]);
        }
    }
#pragma GCC unroll 6
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) _mm512_storeu_ps(m + p * N + 16 * j, acc[p][j]);
}

/* The weight gradient's tile: m[p][16 j + l] += sum over t < T of v[t K + p] *
 * e[t N + 16 j + l] for p < P channels, j < V vectors (P <= 8, V <= 4, P V <=
 * 24): v's rows K apart, e's and m's N apart, t in order from 0. */
static inline __attribute__((always_inline)) void nrt_wino_dw_tile(const int P, const int V, int64_t T,
                                                                   int64_t K, int64_t N, const float *v,
                                                                   const float *e, float *m) {
    __m512 acc[8][4];
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) acc[p][j] = _mm512_loadu_ps(m + p * N + 16 * j);
    for (int64_t t = 0; t < T; t++, v += K, e += N) {
        __m512 ev[4];
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) ev[j] = _mm512_loadu_ps(e + 16 * j);
#pragma GCC unroll 8
        for (int p = 0; p < P; p++) {
            __m512 b = _mm512_set1_ps(v[p]);
#pragma GCC unroll 4
            for (int j = 0; j < V; j++) acc[p][j] = _mm512_fmadd_ps(ev[j], b, acc[p][j]);
        }
    }
#pragma GCC unroll 8
    for (int p = 0; p < P; p++)
#pragma GCC unroll 4
        for (int j = 0; j < V; j++) _mm512_storeu_ps(m + p * N + 16 * j, acc[p][j]);
}
#endif

#endif
