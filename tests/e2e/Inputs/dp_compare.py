#!/usr/bin/env python3
"""tests/e2e/Inputs/dp_compare.py -- compares two training runs of the same
model, a data-parallel one and a single-process reference: the per-epoch loss,
accuracy and test loss of their --metrics files (the loss curve) and every
tensor of their checkpoints (parameters and optimizer state), each within a
relative tolerance: ||a - b|| <= rtol * ||ref|| per tensor (2-norms; per value
for the metrics). The largest elementwise difference over max|ref| is printed
too: Adam turns the rounding of tiny gradient components into visible steps,
so by that measure even one process with 1 and with 2 threads differs by about
2.5e-5 on the MLP after 16 steps. Exits 1 when a difference is over.
usage: dp_compare.py REF.jsonl RUN.jsonl REF.st RUN.st [--rtol 1e-5] [--skip SUBSTR]...
(REF.jsonl and RUN.jsonl - : compare the checkpoints only)"""
import json
import struct
import sys

args = sys.argv[1:]
rtol, skip = 1e-5, []
while "--rtol" in args:
    i = args.index("--rtol")
    rtol = float(args[i + 1])
    del args[i:i + 2]
while "--skip" in args:
    i = args.index("--skip")
    skip.append(args[i + 1])
    del args[i:i + 2]
ref_m, run_m, ref_st, run_st = args


def tensors(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        code = {"F32": "f", "I32": "i"}[t["dtype"]]
        out[name] = struct.unpack(f"<{(b - a) // 4}{code}", data[8 + n + a:8 + n + b])
    return out, header.get("__metadata__", {})


bad = []
worst = (0.0, "")
worst_e = (0.0, "")
ma = [json.loads(l) for l in open(ref_m)] if ref_m != "-" else []
mb = [json.loads(l) for l in open(run_m)] if run_m != "-" else []
if len(ma) != len(mb) or (not ma and ref_m != "-"):
    bad.append(f"metrics: {len(ma)} epochs vs {len(mb)}")
for ea, eb in zip(ma, mb):
    for key in ("loss", "train_accuracy", "test_loss", "test_accuracy", "steps"):
        a, b = ea.get(key), eb.get(key)
        if a is None and b is None:
            continue
        if a is None or b is None:
            bad.append(f"epoch {ea['epoch']} {key}: {a} vs {b}")
            continue
        r = abs(a - b) / max(abs(a), 1e-12)
        # metrics are printed with 6 significant digits
        if r > (max(rtol, 2e-6) if rtol else 0):
            bad.append(f"epoch {ea['epoch']} {key}: {a} vs {b} (relative {r:.2e})")
        worst = max(worst, (r, f"epoch {ea['epoch']} {key}"))
ta, meta_a = tensors(ref_st)
tb, meta_b = tensors(run_st)
if set(ta) != set(tb):
    bad.append(f"tensors differ: {sorted(set(ta) ^ set(tb))}")
for key in ("netc.step", "netc.epoch"):
    if meta_a.get(key) != meta_b.get(key):
        bad.append(f"{key}: {meta_a.get(key)} vs {meta_b.get(key)}")
for name in sorted(set(ta) & set(tb)):
    if any(s in name for s in skip):
        continue
    a, b = ta[name], tb[name]
    norm = max(sum(v * v for v in a) ** 0.5, 1e-30)
    r = sum((x - y) ** 2 for x, y in zip(a, b)) ** 0.5 / norm
    e = max(abs(x - y) for x, y in zip(a, b)) / max(max(abs(v) for v in a), 1e-30)
    worst = max(worst, (r, name))
    worst_e = max(worst_e, (e, name))
    if r > rtol:
        bad.append(f"{name}: relative difference {r:.2e} > {rtol:g}")
print(f"compared {len(ma)} epochs and {len(ta)} tensors: largest relative difference {worst[0]:.2e} ({worst[1]});"
      f" elementwise over the largest value {worst_e[0]:.2e} ({worst_e[1]})")
if bad:
    print("\n".join(bad))
    sys.exit(1)
