#!/usr/bin/env python3
"""examples/data/make_data.py -- writes the small data sets of the examples that do
not train on Fashion-MNIST, into this directory (or the one given). Seeded: running
it again gives the same bytes, which tests/e2e/example_data.test checks.

  linear.csv          linear_regression.net: 1000 rows x, y with y = 3x + 2 + N(0, 0.1)
                      noise, x uniform in [-1, 1]
  regression.csv      mlp_regression.net: a header, then 2000 rows x0, x1, x2, y with
                      y = sin(2 x0) + x1 x2, features uniform in [-1.5, 1.5], no noise
  sequences_x.npy     lstm.net: f32 [400, 10, 3], 400 sequences of 10 steps of 3
                      features uniform in [-1, 1]
  sequences_y.npy     f32 [400, 3]: one-hot, the feature with the largest sum over the
                      10 steps (a class the LSTM must carry through the sequence)
  sequences_test_x.npy, sequences_test_y.npy   100 more, the test set

Usage: python3 examples/data/make_data.py [DIR]   (needs numpy)"""
import math
import os
import random
import sys

import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
os.makedirs(out, exist_ok=True)


def path(name):
    return os.path.join(out, name)


random.seed(7)
with open(path("linear.csv"), "w") as f:
    for _ in range(1000):
        x = random.uniform(-1, 1)
        f.write(f"{x:.6f},{3 * x + 2 + random.gauss(0, 0.1):.6f}\n")

random.seed(11)
with open(path("regression.csv"), "w") as f:
    f.write("x0,x1,x2,y\n")
    for _ in range(2000):
        x = [random.uniform(-1.5, 1.5) for _ in range(3)]
        f.write(f"{x[0]:.6f},{x[1]:.6f},{x[2]:.6f},{math.sin(2 * x[0]) + x[1] * x[2]:.6f}\n")

rng = np.random.default_rng(13)
for name, n in (("sequences", 400), ("sequences_test", 100)):
    x = rng.uniform(-1, 1, (n, 10, 3)).astype(np.float32)
    y = np.eye(3, dtype=np.float32)[x.sum(axis=1).argmax(axis=1)]
    np.save(path(name + "_x.npy"), x)
    np.save(path(name + "_y.npy"), y)
