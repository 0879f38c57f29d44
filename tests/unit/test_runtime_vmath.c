/* tests/unit/test_runtime_vmath.c -- the runtime's branch-free float math
 * (netrt.h, "vector math") that generated loops use: nrt_expf, nrt_tanhf,
 * nrt_erff, nrt_gelu_phi, nrt_gelu_grad and nrt_gelu_tanh_grad against libm in double over dense ranges
 * (every 2^-16 or finer, plus a geometric sweep of tiny arguments), measured in ulps of the float result, and
 * their special values (signed zeros, infinities, NaN, underflow and overflow). */
#include "runtime/netrt.h"
#include "test.h"

#include <float.h>

/* |y - ref| in units of the spacing of floats at ref (the spacing of the
 * smallest normal below it). */
static double ulps(float y, double ref) {
    float r = fabsf((float)ref);
    if (r < FLT_MIN) r = FLT_MIN;
    double sp = (double)nextafterf(r, INFINITY) - (double)r;
    return fabs((double)y - ref) / sp;
}

/* The worst ulp error of f against ref over [lo, hi] in steps of h, and over
 * +-[1e-38, lo_tiny] geometrically; *at receives its argument. */
static double sweep(float (*f)(float), double (*ref)(double), double lo, double hi, double h, double *at) {
    double worst = 0;
    for (double x = lo; x <= hi; x += h) {
        float xf = (float)x;
        double e = ulps(f(xf), ref(xf));
        if (e > worst) worst = e, *at = xf;
    }
    for (double x = 1e-38; x < 1e-2; x *= 1.0001) {
        for (int s = -1; s <= 1; s += 2) {
            float xf = (float)(s * x);
            double e = ulps(f(xf), ref(xf));
            if (e > worst) worst = e, *at = xf;
        }
    }
    return worst;
}

static void test_expf(void) {
    double at = 0, w = sweep(nrt_expf, exp, -87.0, 88.0, 1.0 / 4096, &at);
    printf("nrt_expf: %.3f ulp at %.9g\n", w, at);
    CHECK(w <= 2.0);
    ASSERT_NEAR(1.0, nrt_expf(0.0f), 0);
    ASSERT_NEAR(0.0, nrt_expf(-88.5f), 0); /* flushed, as documented */
    ASSERT_NEAR(0.0, nrt_expf(-INFINITY), 0);
    CHECK(isinf(nrt_expf(89.0f)) && isinf(nrt_expf(INFINITY)));
    CHECK(isnan(nrt_expf(NAN)));
}

static double ref_tanh(double x) { return tanh(x); }
static double ref_erf(double x) { return erf(x); }

static void test_tanhf(void) {
    double at = 0, w = sweep(nrt_tanhf, ref_tanh, -12.0, 12.0, 1.0 / 65536, &at);
    printf("nrt_tanhf: %.3f ulp at %.9g\n", w, at);
    CHECK(w <= 2.0);
    ASSERT_NEAR(1.0, nrt_tanhf(INFINITY), 0);
    ASSERT_NEAR(-1.0, nrt_tanhf(-INFINITY), 0);
    CHECK(signbit(nrt_tanhf(-0.0f)) && nrt_tanhf(-0.0f) == 0);
    CHECK(isnan(nrt_tanhf(NAN)));
}

static void test_erff(void) {
    double at = 0, w = sweep(nrt_erff, ref_erf, -7.0, 7.0, 1.0 / 131072, &at);
    printf("nrt_erff: %.3f ulp at %.9g\n", w, at);
    CHECK(w <= 2.0);
    /* Each region on its own, so a break in one is not hidden by the other. */
    double a2 = 0, wb = sweep(nrt_erff, ref_erf, 0.8, 4.0, 1.0 / 1048576, &a2);
    printf("nrt_erff on [0.8, 4]: %.3f ulp at %.9g\n", wb, a2);
    CHECK(wb <= 2.0);
    ASSERT_NEAR(1.0, nrt_erff(INFINITY), 0);
    ASSERT_NEAR(-1.0, nrt_erff(-INFINITY), 0);
    ASSERT_NEAR(1.0, nrt_erff(1e30f), 0);
    CHECK(signbit(nrt_erff(-0.0f)) && nrt_erff(-0.0f) == 0);
    CHECK(!signbit(nrt_erff(0.0f)) && nrt_erff(0.0f) == 0);
    CHECK(isnan(nrt_erff(NAN)));
    /* Odd: erf(-x) = -erf(x) exactly. */
    int odd = 1;
    for (float x = 0; x < 5; x += 0.001f) odd &= nrt_erff(-x) == -nrt_erff(x);
    CHECK(odd);
}

/* The normal distribution Phi(x) of the exact GELU x Phi(x): within 1 eps
 * (it lies in [0, 1]; 0.5 (1 + erf) in float, PyTorch's formula, is exact only
 * to that), so GELU within 1 eps of |x| before its last rounding; and within
 * 2e-5 of itself on [-4, 0], the tail that 0.5 (1 + erf) loses (5e-4 there;
 * the fit weights Phi's absolute error). Every 2^-18 on [-8, 8], 2^-12 out to
 * +-30. */
static void test_gelu_phi(void) {
    double worst = 0, at = 0, tail = 0, tail_at = 0;
    for (double x = -30.0; x <= 30.0; x += (fabs(x) < 8 ? 1.0 / 262144 : 1.0 / 4096)) {
        float xf = (float)x;
        double ref = 0.5 * erfc(-(double)xf / sqrt(2.0)), y = nrt_gelu_phi(xf);
        double e = fabs(y - ref) / FLT_EPSILON;
        if (e > worst) worst = e, at = xf;
        double rel = fabs(y - ref) / ref;
        if (xf >= -4 && xf <= 0 && rel > tail) tail = rel, tail_at = xf;
    }
    printf("nrt_gelu_phi: %.3f eps at %.9g; relative %.3g at %.9g on [-4, 0]\n", worst, at, tail, tail_at);
    CHECK(worst <= 1.0);
    CHECK(tail <= 2e-5);
    ASSERT_NEAR(1.0, nrt_gelu_phi(INFINITY), 0);
    ASSERT_NEAR(0.0, nrt_gelu_phi(-INFINITY), 0);
    ASSERT_NEAR(0.0, nrt_gelu_phi(-7.0f), 0);
    ASSERT_NEAR(1.0, nrt_gelu_phi(7.0f), 0);
    ASSERT_NEAR(0.5, nrt_gelu_phi(0.0f), 0);
    ASSERT_NEAR(0.5, nrt_gelu_phi(-0.0f), 0);
    CHECK(isnan(NAN * nrt_gelu_phi(NAN))); /* GELU(NaN) */
}

/* GELU's derivative Phi(x) + x phi(x): within 2 ulp of 1 (it lies in about
 * [-0.17, 1.13], and 0.5 (1 + erf) is exact only to that) and within 2 ulp of
 * itself where larger. */
static void test_gelu_grad(void) {
    double worst = 0, at = 0;
    for (double x = -20.0; x <= 20.0; x += (fabs(x) < 8 ? 1.0 / 262144 : 1.0 / 65536)) {
        float xf = (float)x;
        double xd = xf,
               ref = 0.5 * (1 + erf(xd / sqrt(2.0))) + xd * exp(-0.5 * xd * xd) * 0.398942280401432678;
        double e = fabs(nrt_gelu_grad(xf) - ref) / (FLT_EPSILON * (fabs(ref) > 1 ? fabs(ref) : 1));
        if (e > worst) worst = e, at = xf;
    }
    printf("nrt_gelu_grad: %.3f eps at %.9g\n", worst, at);
    CHECK(worst <= 2.0);
    ASSERT_NEAR(1.0, nrt_gelu_grad(INFINITY), 0);
    ASSERT_NEAR(0.0, nrt_gelu_grad(-INFINITY), 0);
    ASSERT_NEAR(0.5, nrt_gelu_grad(0.0f), 0);
    CHECK(isnan(nrt_gelu_grad(NAN)));
}

/* The tanh GELU's derivative against its formula in double, in eps of the
 * larger of 1, the result and |dg/dtanh| (the formula's own amplification of an
 * error in tanh, up to 8 near |x| = 5 by 1 - tanh^2: glibc's tanhf in the same
 * float formula is 4.7 eps off there relative to max(1, result) alone). */
static void test_gelu_tanh_grad(void) {
    double worst = 0, at = 0;
    for (double x = -20.0; x <= 20.0; x += 1.0 / 65536) {
        float xf = (float)x;
        double xd = xf, th = tanh(0.7978845608028654 * (xd + 0.044715 * xd * xd * xd));
        double ref =
            0.5 * (1 + th) + 0.5 * xd * (1 - th * th) * 0.7978845608028654 * (1 + 0.134145 * xd * xd);
        double amp = fabs(0.5 - xd * th * 0.7978845608028654 * (1 + 0.134145 * xd * xd)), scale = fabs(ref);
        scale = scale > amp ? scale : amp;
        double e = fabs(nrt_gelu_tanh_grad(xf) - ref) / (FLT_EPSILON * (scale > 1 ? scale : 1));
        if (e > worst) worst = e, at = xf;
    }
    printf("nrt_gelu_tanh_grad: %.3f eps at %.9g\n", worst, at);
    CHECK(worst <= 2.0);
}

int main(void) {
    test_expf();
    test_tanhf();
    test_erff();
    test_gelu_phi();
    test_gelu_grad();
    test_gelu_tanh_grad();
    TEST_DONE();
}
