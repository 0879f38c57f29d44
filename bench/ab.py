#!/usr/bin/env python3
"""bench/ab.py -- two netc builds side by side on the same models: each model is
built by both compilers, then their programs train the same steps on the same
data in alternation (A, B, A, B, ...), and the script prints the median
training speed of each and the ratio B/A. For checking that a compiler change
costs nothing: run the baseline's netc as A and the change's as B.

usage: bench/ab.py NETC_A NETC_B [--models examples/mnist_cnn.net,...]
                   [--steps 60] [--repeats 5] [--threads 2] [--batch 64]
Every model trains on random data of its inputs' shapes (npy files its train
block is rewritten to read, so a baseline from before --data read files by
content runs them too)."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def inputs_of(prog):
    """(name, dtype, per-item shape) of the data inputs, from `PROG info`."""
    out = subprocess.run([prog, "info"], capture_output=True, text=True, check=True).stdout
    ins, on = [], False
    for line in out.splitlines():
        if line.startswith("inputs:"):
            on = True
            continue
        if on and not line.startswith("  "):
            break
        m = re.match(r"\s+(\S+)\s+(f32|i32)\[N,?([0-9,]*)\](.*)", line) if on else None
        if m and "normal(" not in m.group(4) and "uniform(" not in m.group(4):
            ins.append((m.group(1), m.group(2), tuple(int(d) for d in m.group(3).split(",") if d)))
    return ins


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("netc_a")
    ap.add_argument("netc_b")
    ap.add_argument("--models", default="examples/mnist_cnn.net,examples/lenet.net,examples/mlp.net")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="netc-ab-")
    print(f"A = {a.netc_a}\nB = {a.netc_b}\n{a.steps} steps at batch {a.batch}, {a.threads} threads, "
          f"{a.repeats} alternating runs each; medians of items/s")
    print(f"{'model':28s} {'A items/s':>10s} {'B items/s':>10s} {'B/A':>6s}  (B/A per run)")
    for model in a.models.split(","):
        path = model if os.path.isabs(model) else os.path.join(ROOT, model)
        name = os.path.splitext(os.path.basename(path))[0]
        # The model's own data lines are replaced by npy files of random data
        # (a baseline whose --data keeps the declared loader reads them too).
        src = re.sub(r"\n\s*(data|test)\s+\w+\([^)]*\)[^\n]*", "", open(path).read())
        path = os.path.join(work, name + ".net")
        with open(path, "w") as f:
            f.write(src)
        progs = []
        for tag, netc in (("a", a.netc_a), ("b", a.netc_b)):
            prog = os.path.join(work, f"{name}_{tag}")
            subprocess.run([netc, "build", path, "-o", prog], check=True, capture_output=True)
            progs.append(prog)
        rng = np.random.default_rng(0)
        files = []
        n = a.batch * a.steps
        ins = inputs_of(progs[0])
        npy = ", ".join(f'"{name}_{i[0]}.npy"' for i in ins)
        src = re.sub(r"\ntrain \{", "\ntrain {\n    data npy(" + npy + ")", src) if "\ntrain {" in src else \
            src + "\ntrain {\n    data npy(" + npy + ")\n}\n"
        with open(path, "w") as f:
            f.write(src)
        for tag, netc, prog in (("a", a.netc_a, progs[0]), ("b", a.netc_b, progs[1])):
            subprocess.run([netc, "build", path, "-o", prog], check=True, capture_output=True)
        for inp, dt, shape in ins:
            f = os.path.join(work, f"{name}_{inp}.npy")
            arr = (rng.integers(0, 10, (n,) + shape).astype(np.int32) if dt == "i32"
                   else rng.standard_normal((n,) + shape).astype(np.float32))
            np.save(f, arr)
            files.append(f)
        speeds = [[], []]
        for r in range(a.repeats):
            for k, prog in enumerate(progs):
                mf = os.path.join(work, f"{name}_{k}.jsonl")
                subprocess.run([prog, "train", "--batch", str(a.batch), "--epochs", "1",
                                "--threads", str(a.threads), "--quiet", "--metrics", mf], check=True, cwd=work)
                speeds[k].append(json.loads(open(mf).readline())["images_per_second"])
        ma, mb = statistics.median(speeds[0]), statistics.median(speeds[1])
        per = " ".join(f"{b / x:.2f}" for x, b in zip(*speeds))
        print(f"{name:28s} {ma:10.0f} {mb:10.0f} {mb / ma:6.3f}  ({per})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
