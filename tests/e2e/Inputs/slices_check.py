"""Compares `predict` lines of a batch run (file argv[1]) with those of runs
item by item (file argv[2], one file per item, each numbered from 0): the same
class, probabilities within the float rounding of a GEMM over another batch."""
import re
import sys

def parse(path):
    out = []
    for line in open(path):
        if line.endswith(".npy:\n"):  # several inputs: each file's name first
            continue
        m = re.match(r"(\d+) (\S+): class (\d+) probability ([0-9.]+)", line)
        assert m, line
        out.append((int(m.group(3)), float(m.group(4))))
    return out

a, b = parse(sys.argv[1]), parse(sys.argv[2])
assert len(a) == len(b) and len(a) > 0, (len(a), len(b))
for i, (x, y) in enumerate(zip(a, b)):
    assert x[0] == y[0] or abs(x[1] - y[1]) < 2e-4, (i, x, y)
    assert abs(x[1] - y[1]) <= 1e-4 + 1e-9, (i, x, y)
print("%d items: the batch run predicts as the item runs" % len(a))
