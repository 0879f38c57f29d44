/* tests/unit/test_runtime_rng.c -- libnetrt's Philox4x32-10 generator: the
 * Random123 known answers, pinned output for seed 42 (so any change to the
 * sequence is caught), reproducibility, stream independence, the ranges and
 * rough moments of uniform, normal and below(), permutations, and the stateless
 * dropout hash. */
#include "runtime/netrt.h"
#include "test.h"

#include <string.h>

static void test_known_answers(void) {
    /* Random123 kat_vectors: counter, key -> output. */
    static const uint32_t kat[3][10] = {
        {0, 0, 0, 0, 0, 0, 0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8},
        {0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0xffffffff, 0x408f276d, 0x41c83b0e,
         0xa20bc7c6, 0x6d5451fd},
        {0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0, 0xd16cfe09, 0x94fdcceb,
         0x5001e420, 0x24126ea1},
    };
    for (int i = 0; i < 3; i++) {
        uint32_t out[4];
        nrt_philox4x32(kat[i], kat[i] + 4, out);
        for (int k = 0; k < 4; k++) ASSERT(kat[i][6 + k], out[k]);
    }
}

static void test_pinned_sequence(void) {
    /* Pinned output of seed 42, stream 0: a change here changes every run. */
    static const uint32_t words[6] = {0x9ceaf053, 0x77f5493b, 0x12bf50ad, 0x5742b3d7, 0xfcdb2127, 0x53ba6cfd};
    static const float unif[4] = {0.612959862f, 0.468586504f, 0.0732316971f, 0.340861499f};
    static const float norm[4] = {-0.97018981f, 0.19401896f, -1.23562074f, 1.92392671f};
    static const int64_t perm[10] = {6, 0, 5, 8, 4, 3, 2, 7, 1, 9};
    struct nrt_rng r;
    nrt_rng_init(&r, 42, 0);
    for (int i = 0; i < 6; i++) ASSERT(words[i], nrt_rng_u32(&r));
    nrt_rng_init(&r, 42, 0);
    for (int i = 0; i < 4; i++) ASSERT_NEAR(unif[i], nrt_rng_uniform(&r), 0);
    nrt_rng_init(&r, 42, 0);
    for (int i = 0; i < 4; i++) ASSERT_NEAR(norm[i], nrt_rng_normal(&r, 0, 1), 1e-6);
    int64_t p[10];
    nrt_rng_init(&r, 42, 0);
    nrt_rng_perm(&r, p, 10);
    for (int i = 0; i < 10; i++) ASSERT(perm[i], p[i]);
    ASSERT(0x9ceaf053, nrt_rng_hash(42, 0, 0)); /* block 0 of stream 0, word 0 */
    ASSERT(0x6a918f7e, nrt_rng_hash(42, 7, 123456));
}

static void test_reproducible(void) {
    struct nrt_rng a, b, c, d;
    nrt_rng_init(&a, 1234, 0);
    nrt_rng_init(&b, 1234, 0);
    nrt_rng_init(&c, 1235, 0);
    nrt_rng_init(&d, 1234, 1);
    int same_ab = 1, same_ac = 0, same_ad = 0;
    for (int i = 0; i < 10000; i++) {
        uint32_t x = nrt_rng_u32(&a), y = nrt_rng_u32(&b), z = nrt_rng_u32(&c), w = nrt_rng_u32(&d);
        same_ab &= x == y;
        same_ac += x == z;
        same_ad += x == w;
    }
    CHECK(same_ab);
    CHECK(same_ac < 3);
    CHECK(same_ad < 3);

    /* The 64-bit block counter carries into its high word. */
    nrt_rng_init(&a, 9, 0);
    a.ctr[0] = 0xffffffffu;
    nrt_rng_u32(&a);
    ASSERT(0, a.ctr[0]);
    ASSERT(1, a.ctr[1]);

    /* u64 is two words, the first low. */
    nrt_rng_init(&a, 5, 0);
    nrt_rng_init(&b, 5, 0);
    uint64_t v = nrt_rng_u64(&a);
    uint64_t lo = nrt_rng_u32(&b), hi = nrt_rng_u32(&b);
    CHECK(v == (lo | hi << 32));
}

static void test_uniform(void) {
    struct nrt_rng r;
    nrt_rng_init(&r, 7, 0);
    double sum = 0, sum2 = 0;
    float lo = 1, hi = 0;
    int n = 200000, bins[10] = {0};
    for (int i = 0; i < n; i++) {
        float u = nrt_rng_uniform(&r);
        lo = u < lo ? u : lo;
        hi = u > hi ? u : hi;
        sum += u;
        sum2 += (double)u * u;
        bins[(int)(u * 10)]++;
    }
    CHECK(lo >= 0.0f && hi < 1.0f);
    ASSERT_NEAR(0.5, sum / n, 0.005);
    ASSERT_NEAR(1.0 / 12, sum2 / n - (sum / n) * (sum / n), 0.002);
    for (int b = 0; b < 10; b++) ASSERT_NEAR(n / 10, bins[b], n / 10 * 0.05);

    int in_range = 1;
    for (int i = 0; i < 100000; i++) {
        float x = nrt_rng_uniform_range(&r, -0.25f, 0.75f);
        in_range &= x >= -0.25f && x < 0.75f;
    }
    CHECK(in_range);
    /* A tiny interval: rounding may never reach b. */
    float a = 1.0f, b = nextafterf(1.0f, 2.0f);
    in_range = 1;
    for (int i = 0; i < 1000; i++) in_range &= nrt_rng_uniform_range(&r, a, b) == a;
    CHECK(in_range);
    ASSERT_NEAR(3.0, nrt_rng_uniform_range(&r, 3.0f, 3.0f), 0);

    float buf[1000];
    nrt_rng_fill_uniform(&r, buf, 1000, 2.0f, 4.0f);
    in_range = 1;
    for (int i = 0; i < 1000; i++) in_range &= buf[i] >= 2.0f && buf[i] < 4.0f;
    CHECK(in_range);
}

static void test_normal(void) {
    struct nrt_rng r;
    nrt_rng_init(&r, 11, 3);
    int n = 200000, within1 = 0, finite = 1;
    double sum = 0, sum2 = 0;
    for (int i = 0; i < n; i++) {
        float z = nrt_rng_normal(&r, 0.0f, 1.0f);
        finite &= isfinite(z);
        sum += z;
        sum2 += (double)z * z;
        within1 += fabsf(z) < 1.0f;
    }
    CHECK(finite);
    ASSERT_NEAR(0.0, sum / n, 0.01);
    ASSERT_NEAR(1.0, sum2 / n, 0.015);
    ASSERT_NEAR(0.6827, (double)within1 / n, 0.005);

    static float buf[100000];
    nrt_rng_fill_normal(&r, buf, 100000, 5.0f, 0.5f);
    sum = sum2 = 0;
    for (int i = 0; i < 100000; i++) {
        sum += buf[i];
        sum2 += (double)buf[i] * buf[i];
    }
    double mean = sum / 100000;
    ASSERT_NEAR(5.0, mean, 0.01);
    ASSERT_NEAR(0.25, sum2 / 100000 - mean * mean, 0.01);
}

static void test_below_and_perm(void) {
    struct nrt_rng r;
    nrt_rng_init(&r, 99, 0);
    ASSERT(0, nrt_rng_below(&r, 0));
    ASSERT(0, nrt_rng_below(&r, 1));
    int counts[7] = {0}, ok = 1;
    for (int i = 0; i < 70000; i++) {
        uint64_t x = nrt_rng_below(&r, 7);
        ok &= x < 7;
        if (x < 7) counts[x]++;
    }
    CHECK(ok);
    for (int k = 0; k < 7; k++) ASSERT_NEAR(10000, counts[k], 500);
    uint64_t big = (UINT64_C(1) << 63) + 12345;
    ok = 1;
    for (int i = 0; i < 1000; i++) ok &= nrt_rng_below(&r, big) < big;
    CHECK(ok);

    /* Permutations: every index exactly once, same seed same order. */
    enum { N = 60000 };
    static int64_t p[N], q[N];
    static unsigned char seen[N];
    struct nrt_rng a, b;
    nrt_rng_init(&a, 2024, 0);
    nrt_rng_init(&b, 2024, 0);
    nrt_rng_perm(&a, p, N);
    nrt_rng_perm(&b, q, N);
    ok = 1;
    int fixed = 0;
    for (int i = 0; i < N; i++) {
        ok &= p[i] >= 0 && p[i] < N && !seen[p[i]] && p[i] == q[i];
        if (p[i] >= 0 && p[i] < N) seen[p[i]] = 1;
        fixed += p[i] == i;
    }
    CHECK(ok);
    CHECK(fixed < 10); /* a random permutation has about one fixed point */
    /* A second shuffle (the next epoch) differs. */
    nrt_rng_shuffle(&a, p, N);
    int diff = 0;
    for (int i = 0; i < N; i++) diff += p[i] != q[i];
    CHECK(diff > N / 2);
    nrt_rng_perm(&a, p, 0);
    nrt_rng_perm(&a, p, 1);
    ASSERT(0, p[0]);

    /* Position i of a permutation of 3 is uniform over the 3 values. */
    int first[3] = {0};
    for (int t = 0; t < 30000; t++) {
        int64_t s[3];
        nrt_rng_perm(&r, s, 3);
        first[s[0]]++;
    }
    for (int k = 0; k < 3; k++) ASSERT_NEAR(10000, first[k], 400);
}

static void test_hash(void) {
    /* Same seed, step and index give the same bits; others differ. */
    ASSERT(nrt_rng_hash(1, 2, 3), nrt_rng_hash(1, 2, 3));
    CHECK(nrt_rng_hash(1, 2, 3) != nrt_rng_hash(1, 2, 4));
    CHECK(nrt_rng_hash(1, 2, 3) != nrt_rng_hash(1, 3, 3));
    CHECK(nrt_rng_hash(1, 2, 3) != nrt_rng_hash(2, 2, 3));
    CHECK(nrt_rng_hash(1, 0, (uint64_t)1 << 32) != nrt_rng_hash(1, 0, 0));
    CHECK(nrt_rng_hash((uint64_t)1 << 32, 0, 0) != nrt_rng_hash(0, 0, 0));

    /* A dropout mask with p = 0.3 keeps about 70%, and is reproducible. */
    int kept = 0, n = 100000;
    for (int i = 0; i < n; i++) kept += nrt_rng_hash_uniform(77, 5, (uint64_t)i) >= 0.3f;
    ASSERT_NEAR(0.7, (double)kept / n, 0.01);
    int again = 0;
    for (int i = 0; i < n; i++) again += nrt_rng_hash_uniform(77, 5, (uint64_t)i) >= 0.3f;
    ASSERT(kept, again);
    float u = nrt_rng_hash_uniform(3, 4, 5);
    CHECK(u >= 0.0f && u < 1.0f);
    /* Each output bit is set about half the time. */
    int bits[32] = {0};
    for (int i = 0; i < 20000; i++) {
        uint32_t h = nrt_rng_hash(9, 1, (uint64_t)i);
        for (int k = 0; k < 32; k++) bits[k] += (h >> k) & 1;
    }
    for (int k = 0; k < 32; k++) ASSERT_NEAR(10000, bits[k], 400);
}

int main(void) {
    test_known_answers();
    test_pinned_sequence();
    test_reproducible();
    test_uniform();
    test_normal();
    test_below_and_perm();
    test_hash();
    TEST_DONE();
}
