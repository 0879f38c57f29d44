#!/usr/bin/env python3
"""tests/e2e/Inputs/regression_csv.py -- writes regression.csv for
mlp_regression.net: a header line, then 2000 rows x0, x1, x2, y with
y = sin(2 x0) + x1 * x2, features uniform in [-1.5, 1.5] (no noise)."""
import math
import random
import sys

random.seed(11)
with open(sys.argv[1] if len(sys.argv) > 1 else "regression.csv", "w") as f:
    f.write("x0,x1,x2,y\n")
    for _ in range(2000):
        x = [random.uniform(-1.5, 1.5) for _ in range(3)]
        f.write(f"{x[0]:.6f},{x[1]:.6f},{x[2]:.6f},{math.sin(2 * x[0]) + x[1] * x[2]:.6f}\n")
