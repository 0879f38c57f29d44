#!/usr/bin/env python3
"""tests/e2e/Inputs/linear_csv.py -- writes linear.csv for linear_regression.net:
1000 rows x, y with y = 3x + 2 + N(0, 0.1) noise, x uniform in [-1, 1]."""
import random
import sys

random.seed(7)
with open(sys.argv[1] if len(sys.argv) > 1 else "linear.csv", "w") as f:
    for _ in range(1000):
        x = random.uniform(-1, 1)
        f.write(f"{x:.6f},{3 * x + 2 + random.gauss(0, 0.1):.6f}\n")
