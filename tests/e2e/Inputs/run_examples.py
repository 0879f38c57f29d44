#!/usr/bin/env python3
"""tests/e2e/Inputs/run_examples.py -- every examples/*.net as a new user runs it,
each in a fresh empty directory: `netc build X.net -o X`, then `./X train` for a few
steps (--max-steps; no other flag, so the data comes from what the .net file
declares), checking that it exits 0 and writes a finite loss; then its DOT graph
(`netc dump X.net --format=dot`) laid out by `dot -Tsvg` within a CPU-time limit
(user + system time of dot, so a busy machine does not fail it).

Usage: run_examples.py NETC EXAMPLES_DIR WORK_DIR [--dot-limit S]
Prints one line per example and `N examples ok`; exit status 1 on any failure.
New examples are picked up by the glob; STEPS gives a step count where the
default (3) does not suit."""
import glob
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import time

STEPS = {}          # example name -> training steps, where the default does not suit
DEFAULT_STEPS = 3


def child_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main():
    netc, examples, work = os.path.abspath(sys.argv[1]), sys.argv[2], sys.argv[3]
    dot_limit = 5.0
    if "--dot-limit" in sys.argv:
        dot_limit = float(sys.argv[sys.argv.index("--dot-limit") + 1])
    nets = sorted(glob.glob(os.path.join(examples, "*.net")))
    if not nets:
        print("no examples in " + examples)
        return 1
    failed = 0
    shutil.rmtree(work, ignore_errors=True)
    for net in nets:
        name = os.path.splitext(os.path.basename(net))[0]
        d = os.path.join(work, name)
        os.makedirs(d)
        steps = STEPS.get(name, DEFAULT_STEPS)
        t0 = time.time()
        b = subprocess.run([netc, "build", os.path.abspath(net), "-o", name], cwd=d, capture_output=True, text=True)
        t1 = time.time()
        if b.returncode:
            print(f"{name}: build FAILED\n{b.stdout}{b.stderr}")
            failed += 1
            continue
        r = subprocess.run(["./" + name, "train", "--max-steps", str(steps), "--quiet", "--metrics", "m.jsonl"],
                           cwd=d, capture_output=True, text=True)
        t2 = time.time()
        loss = None
        try:
            with open(os.path.join(d, "m.jsonl")) as f:
                rec = [json.loads(line) for line in f if line.strip()]
            loss = rec[-1]["loss"] if rec else None
        except (OSError, ValueError, KeyError):
            pass
        if r.returncode or loss is None or not math.isfinite(loss):
            print(f"{name}: train FAILED (exit {r.returncode}, loss {loss})\n{r.stdout}{r.stderr}")
            failed += 1
            continue
        dot = subprocess.run([netc, "dump", os.path.abspath(net), "--format=dot", "-o", os.path.join(d, name + ".dot")],
                             capture_output=True, text=True)
        if dot.returncode:
            print(f"{name}: dump FAILED\n{dot.stderr}")
            failed += 1
            continue
        c0 = child_cpu()
        try:
            s = subprocess.run(["dot", "-Tsvg", name + ".dot", "-o", name + ".svg"], cwd=d, capture_output=True,
                               text=True, timeout=20 * dot_limit)
            rc = s.returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        cpu = child_cpu() - c0
        if rc != 0 or cpu > dot_limit:
            print(f"{name}: dot -Tsvg FAILED (exit {rc}, {cpu:.2f} s CPU, limit {dot_limit} s)")
            failed += 1
            continue
        print(f"{name}: ok, build {t1 - t0:.1f} s, {steps} steps loss {loss:.4g} in {t2 - t1:.1f} s, "
              f"dot -Tsvg {cpu:.2f} s CPU")
    if failed:
        print(f"{failed} of {len(nets)} examples FAILED")
        return 1
    print(f"{len(nets)} examples ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
