/* runtime/rng.c -- the runtime's random numbers: Philox4x32-10, a counter-based
 * generator (Salmon, Moraes, Dror, Shaw, SC 2011; the constants of Random123).
 * First the bijection itself, then the sequential generator over it (struct
 * nrt_rng: uniform, range, normal, integers, shuffles), then the stateless hash
 * that generated kernels use for dropout masks. Every function here is exact
 * integer or IEEE arithmetic, so a seed gives the same numbers on every run. */
#include "runtime/internal.h"

#include <math.h>

/* ----------------------------------------------------------------- philox -- */

#define PHILOX_M0 0xD2511F53u /* multiplier of words 0-1 */
#define PHILOX_M1 0xCD9E8D57u /* multiplier of words 2-3 */
#define PHILOX_W0 0x9E3779B9u /* key bump of key word 0 (golden ratio) */
#define PHILOX_W1 0xBB67AE85u /* key bump of key word 1 (sqrt(3) - 1) */
#define PHILOX_ROUNDS 10

void nrt_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
    uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (int round = 0; round < PHILOX_ROUNDS; round++) {
        if (round > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * c0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * c2;
        uint32_t hi0 = (uint32_t)(p0 >> 32), lo0 = (uint32_t)p0;
        uint32_t hi1 = (uint32_t)(p1 >> 32), lo1 = (uint32_t)p1;
        c0 = hi1 ^ c1 ^ k0;
        c1 = lo1;
        c2 = hi0 ^ c3 ^ k1;
        c3 = lo0;
    }
    out[0] = c0;
    out[1] = c1;
    out[2] = c2;
    out[3] = c3;
}

/* ------------------------------------------------------------- generator -- */

void nrt_rng_init(struct nrt_rng *r, uint64_t seed, uint64_t stream) {
    r->key[0] = (uint32_t)seed;
    r->key[1] = (uint32_t)(seed >> 32);
    r->ctr[0] = 0;
    r->ctr[1] = 0;
    r->ctr[2] = (uint32_t)stream;
    r->ctr[3] = (uint32_t)(stream >> 32);
    for (int i = 0; i < 4; i++) r->buf[i] = 0;
    r->pos = 4;
    r->has_spare = 0;
    r->spare = 0.0;
}

/* Computes the next block and advances the 64-bit block counter. */
static void refill(struct nrt_rng *r) {
    nrt_philox4x32(r->ctr, r->key, r->buf);
    if (++r->ctr[0] == 0) ++r->ctr[1];
    r->pos = 0;
}

uint32_t nrt_rng_u32(struct nrt_rng *r) {
    if (r->pos >= 4) refill(r);
    return r->buf[r->pos++];
}

uint64_t nrt_rng_u64(struct nrt_rng *r) {
    uint64_t lo = nrt_rng_u32(r);
    uint64_t hi = nrt_rng_u32(r);
    return lo | hi << 32;
}

uint64_t nrt_rng_below(struct nrt_rng *r, uint64_t n) {
    if (n == 0) return 0;
    /* Reject the top UINT64_MAX % n + 1 values (mod n) so that every residue
     * is equally likely; fewer than half the draws are ever rejected. */
    uint64_t limit = UINT64_MAX - (UINT64_MAX % n + 1) % n;
    for (;;) {
        uint64_t x = nrt_rng_u64(r);
        if (x <= limit) return x % n;
    }
}

/* The 24 high bits of a word as a float in [0, 1): exact in binary32. */
static float word_to_unit(uint32_t w) { return (float)(w >> 8) * (1.0f / 16777216.0f); }

float nrt_rng_uniform(struct nrt_rng *r) { return word_to_unit(nrt_rng_u32(r)); }

float nrt_rng_uniform_range(struct nrt_rng *r, float a, float b) {
    float u = nrt_rng_uniform(r);
    if (!(a < b)) return a;
    float x = a + (b - a) * u;
    /* Rounding can land on b itself; the interval is half open. */
    return x < b ? x : nextafterf(b, a);
}

float nrt_rng_normal(struct nrt_rng *r, float mean, float std) {
    double z;
    if (r->has_spare) {
        z = r->spare;
        r->has_spare = 0;
    } else {
        /* Box-Muller on u1 in (0, 1] (no log of 0) and u2 in [0, 1). */
        double u1 = ((double)nrt_rng_u32(r) + 1.0) * (1.0 / 4294967296.0);
        double u2 = (double)nrt_rng_u32(r) * (1.0 / 4294967296.0);
        double rad = sqrt(-2.0 * log(u1));
        double th = 6.283185307179586476925286766559 * u2;
        z = rad * cos(th);
        r->spare = rad * sin(th);
        r->has_spare = 1;
    }
    return (float)(mean + std * z);
}

void nrt_rng_fill_uniform(struct nrt_rng *r, float *dst, size_t n, float a, float b) {
    for (size_t i = 0; i < n; i++) dst[i] = nrt_rng_uniform_range(r, a, b);
}

void nrt_rng_fill_normal(struct nrt_rng *r, float *dst, size_t n, float mean, float std) {
    for (size_t i = 0; i < n; i++) dst[i] = nrt_rng_normal(r, mean, std);
}

void nrt_rng_shuffle(struct nrt_rng *r, int64_t *perm, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)nrt_rng_below(r, (uint64_t)i + 1);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

void nrt_rng_perm(struct nrt_rng *r, int64_t *perm, int64_t n) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    nrt_rng_shuffle(r, perm, n);
}

/* -------------------------------------------------------- stateless hash -- */

uint32_t nrt_rng_hash(uint64_t seed, uint64_t step, uint64_t index) {
    const uint32_t ctr[4] = {(uint32_t)index, (uint32_t)(index >> 32), (uint32_t)step,
                             (uint32_t)(step >> 32)};
    const uint32_t key[2] = {(uint32_t)seed, (uint32_t)(seed >> 32)};
    uint32_t out[4];
    nrt_philox4x32(ctr, key, out);
    return out[0];
}

float nrt_rng_hash_uniform(uint64_t seed, uint64_t step, uint64_t index) {
    return word_to_unit(nrt_rng_hash(seed, step, index));
}
