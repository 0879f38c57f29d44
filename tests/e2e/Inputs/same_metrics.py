#!/usr/bin/env python3
"""tests/e2e/Inputs/same_metrics.py -- compares the first line of two --metrics
files key by key (loss, accuracies, learning rate): prints `KEY same` when both
have the value and it is equal, else `KEY differs: A B` (null: not reported).
usage: same_metrics.py A.jsonl B.jsonl"""
import json
import sys

KEYS = ("loss", "train_accuracy", "test_loss", "test_accuracy", "lr")

a, b = (json.loads(open(path).readline()) for path in sys.argv[1:3])
for k in KEYS:
    same = a.get(k) is not None and a.get(k) == b.get(k)
    print(k, "same" if same else "differs: %r %r" % (a.get(k), b.get(k)))
