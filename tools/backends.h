/* tools/backends.h -- `netc check --backends=A,B` (backends.c): one training step
 * of a model on two backends from the same seed, compared tensor by tensor. */
#ifndef NETC_TOOLS_BACKENDS_H
#define NETC_TOOLS_BACKENDS_H

#include <stdbool.h>
#include <stdint.h>

/* What to compare and how. */
struct backends_options {
    const char *targets[2]; /* the reference backend, then the one checked */
    uint64_t seed;          /* the programs' --seed */
    double rtol, atol; /* an element passes when |b - a| <= atol + rtol * (its tensor's largest |value|) */
    int nargs;         /* extra arguments for `PROGRAM train` (--data, --test, ...) */
    char **args;       /* them */
};

/* Builds FILE.net for both targets into a temporary directory, runs
 * `PROGRAM train --max-steps 1 --epochs 1 --seed S --save ... --metrics ...`
 * with each in the current directory, and prints per parameter/state tensor and
 * per metric the largest absolute and relative difference. True when every one
 * is within the tolerance; errors are reported. */
bool backends_check(const char *file, const struct backends_options *o, const char *version);

#endif
