/* tests/unit/test.h -- the tiny assertion kit of the C unit tests.
 * ASSERT(expected, actual) compares two integers and prints the expression text;
 * ASSERT_NEAR compares floats; CHECK(cond) checks a condition. A test file's main()
 * calls its cases and ends with TEST_DONE(), which prints 'N passed, N failed'. */
#ifndef NETC_TEST_H
#define NETC_TEST_H
#include <stdint.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int test_passed, test_failed;

#define TEST_FAIL_(...)                                 \
    do {                                                \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                   \
        fputc('\n', stderr);                            \
        test_failed++;                                  \
    } while (0)

#define ASSERT(expected, actual)                                        \
    do {                                                                \
        long long e_ = (long long)(expected), a_ = (long long)(actual); \
        if (e_ == a_)                                                   \
            test_passed++;                                              \
        else                                                            \
            TEST_FAIL_("%s => %lld, expected %lld", #actual, a_, e_);   \
    } while (0)

#define ASSERT_NEAR(expected, actual, tol)                                                    \
    do {                                                                                      \
        double e_ = (double)(expected), a_ = (double)(actual);                                \
        if (fabs(e_ - a_) <= (tol))                                                           \
            test_passed++;                                                                    \
        else                                                                                  \
            TEST_FAIL_("%s => %.9g, expected %.9g (tol %g)", #actual, a_, e_, (double)(tol)); \
    } while (0)

#define CHECK(cond)                                \
    do {                                           \
        if (cond)                                  \
            test_passed++;                         \
        else                                       \
            TEST_FAIL_("check failed: %s", #cond); \
    } while (0)

#define TEST_DONE()                                                 \
    do {                                                            \
        printf("%d passed, %d failed\n", test_passed, test_failed); \
        return test_failed ? 1 : 0;                                 \
    } while (0)

/* Largest |a - b| relative to max(1, |b|): a float result against its double
 * reference (the runtime kernels' tests). */
static inline double max_err(const float *a, const double *b, int64_t n) {
    double e = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]) / (fabs(b[i]) > 1 ? fabs(b[i]) : 1);
        e = d > e ? d : e;
    }
    return e;
}

#endif
