#!/usr/bin/env python3
"""tests/e2e/Inputs/reductions.py -- data and check of reductions.test.
`data F`: x [4, 2, 512, 512]: channel 0 is 1000 + U(-1, 1) (a large mean over a
small spread: the variance), channel 1 is 0.1 + U(0, 1e-3) (a long sum of
near-equal values, which drifts in a float accumulator). `check CKPT F`: the
running mean and variance are the exact (float64) ones rounded to float32,
within 1 ulp."""
import json
import struct
import sys

import numpy as np

if sys.argv[1] == "data":
    rng = np.random.default_rng(7)
    x = np.empty((4, 2, 512, 512), np.float32)
    x[:, 0] = 1000 + rng.uniform(-1, 1, (4, 512, 512))
    x[:, 1] = 0.1 + rng.uniform(0, 1e-3, (4, 512, 512))
    np.save(sys.argv[2], x)
    sys.exit(0)

data = open(sys.argv[2], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])


def get(name):
    a, b = h[name]["data_offsets"]
    return np.frombuffer(data[8 + n + a:8 + n + b], "<f4").astype(np.float64)


x = np.load(sys.argv[3]).astype(np.float64)
mean = x.mean(axis=(0, 2, 3))
var = x.var(axis=(0, 2, 3), ddof=1)
bad = False
for what, got, want in (("mean", get("bn_stats.batchnorm0.running_mean"), mean),
                        ("var", get("bn_stats.batchnorm0.running_var"), var)):
    for c in range(2):
        ulps = abs(got[c] - want[c]) / np.spacing(np.float32(want[c]))
        print(f"channel {c} {what}: {got[c]:.9g}, exact {want[c]:.9g}: {ulps:.2f} ulp")
        bad |= ulps > 1
sys.exit("a reduction is not accurate to float32 rounding" if bad else 0)
