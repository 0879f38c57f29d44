/* runtime/schedule.c -- learning-rate schedules (the `schedule` line of a train
 * block, passes/optim.c's contract): the rate for an epoch and a step from the
 * base rate. step and cosine move once per epoch (PyTorch's StepLR and
 * CosineAnnealingLR stepped per epoch); linear_warmup, warmup_cosine and
 * exponential move once per training step (LambdaLR / ExponentialLR stepped
 * after every optimizer step). */
#include "runtime/netrt.h"

#include <math.h>
#include <string.h>

static double kw(const struct nrt_source_desc *s, const char *key, double def) {
    for (int i = 0; i < s->nkw; i++)
        if (strcmp(s->kw[i], key) == 0) return s->kwval[i];
    return def;
}

static int is(const struct nrt_source_desc *s, const char *kind) {
    return s->kind && strcmp(s->kind, kind) == 0;
}

int nrt_schedule_per_step(const struct nrt_source_desc *s) {
    return is(s, "linear_warmup") || is(s, "warmup_cosine") || is(s, "exponential");
}

double nrt_schedule_lr(const struct nrt_source_desc *s, double base, int64_t epoch, int64_t step) {
    const double pi = 3.14159265358979323846;
    if (is(s, "step")) {
        double every = kw(s, "every", 1), gamma = kw(s, "gamma", 0.1);
        return base * pow(gamma, floor((double)epoch / (every > 0 ? every : 1)));
    }
    if (is(s, "cosine")) {
        double t = kw(s, "t_max", 1);
        return base * (1 + cos(pi * (double)epoch / (t > 0 ? t : 1))) / 2;
    }
    double w = kw(s, "warmup", 0), t = (double)step;
    if (is(s, "linear_warmup")) return w > 0 && t + 1 < w ? base * (t + 1) / w : base;
    if (is(s, "warmup_cosine")) {
        if (w > 0 && t < w) return base * (t + 1) / w;
        double span = kw(s, "t_max", 1) - w, p = span > 0 ? (t - w) / span : 1;
        return base * (1 + cos(pi * (p < 1 ? p : 1))) / 2;
    }
    if (is(s, "exponential")) return base * pow(kw(s, "gamma", 1), t);
    return base;
}
