/* tools/gradcheck.h -- `netc check --gradcheck`: every training function's
 * grad.<param> outputs, as autodiff builds them, against central finite
 * differences of its loss, both evaluated by the reference interpreter. */
#ifndef NETC_TOOLS_GRADCHECK_H
#define NETC_TOOLS_GRADCHECK_H

#include "ir/ir.h"

/* How the check runs. */
struct gradcheck_options {
    int64_t batch; /* batch size N of the random data */
    uint64_t seed; /* seed of the random data and parameters */
    int samples;   /* elements checked per parameter (all when fewer) */
};

/* Errors are |analytic - numeric| / max(|analytic|, |numeric|, GRADCHECK_FLOOR);
 * the step is GRADCHECK_EPS * max(1, |x|). An element whose error is over
 * GRADCHECK_RETRY is retried with steps 10, 100 and 1000 times smaller, keeping the
 * smallest error: a step that moves some ReLU, leaky ReLU or max-pool input across
 * its kink (likely when one bias shifts thousands of activations) gives a large
 * error that a smaller step removes, while a wrong gradient stays wrong. Below
 * 1e-8 double rounding would cost ~1e-5 of the error. */
#define GRADCHECK_EPS 1e-5
#define GRADCHECK_FLOOR 1e-3
#define GRADCHECK_TOL 1e-4
#define GRADCHECK_RETRY 1e-6 /* retry with a smaller step above this */

/* Run shape and autodiff on m (straight from fe_load; no optimizer lowering),
 * then check every training function with a loss, printing one line per
 * parameter and a verdict to out. False when an error exceeds GRADCHECK_TOL or
 * the model cannot be evaluated (reported). */
bool gradcheck_run(struct ir_module *m, const struct gradcheck_options *opt, FILE *out);

#endif
