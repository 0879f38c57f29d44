#!/usr/bin/env python3
"""bench/dp_scale.py -- data-parallel scaling of the programs netc builds with
--mpi, on this machine, and a ring-allreduce cost model for many machines.

1. Throughput of the Keras CNN (examples/mnist_cnn.net, batch 64 per rank,
   --max-steps STEPS on Fashion-MNIST) run side by side, interleaved, REPEATS
   times each: 1 process x 1 thread, 1 process x 2 threads, mpirun -np 2 x 1
   thread and mpirun -np 4 (--oversubscribe) x 1 thread. Medians of the
   programs' own images_per_second (items of all ranks over the epoch's wall
   time), and the ranks' mean time waiting for gradient reductions per step
   (allreduce_seconds / steps). The ratio that matters on a 2-core machine is
   2 ranks x 1 thread over 1 process x 2 threads: the same cores, so it
   measures the cost of communicating.
2. The cost model: one step on K nodes takes t_step (measured here: 1 process,
   --threads T, the example's batch per rank) plus a ring allreduce of the
   gradient's bytes (4 x parameters, from `PROGRAM info`):
       t_ar = 2 (K-1)/K * bytes / bandwidth + 2 (K-1) * latency
   efficiency = t_step / (t_step + t_ar), with no overlap of communication and
   backward pass (a lower bound: the buckets overlap part of it). Networks:
   10 Gb/s Ethernet with 25 us latency per message and 100 Gb/s with 5 us.

usage: bench/dp_scale.py [--build build] [--steps 150] [--repeats 3] [--threads 2]
                         [--model-steps 60] [--skip-throughput] [--ips mlp=N,mnist_cnn=N,lenet=N]
Prints markdown tables. Needs mpirun (Open MPI; run as root it passes
--allow-run-as-root)."""
import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(ROOT, "build"))
ap.add_argument("--steps", type=int, default=150)
ap.add_argument("--repeats", type=int, default=3)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--model-steps", type=int, default=60)
ap.add_argument("--skip-throughput", action="store_true")
ap.add_argument("--ips", default="", help="EX=IMAGES_PER_S,...: the model's step times from these "
                "throughputs (e.g. a quiet run of bench/bench.py) instead of measuring them")
args = ap.parse_args()
netc = os.path.join(args.build, "netc")
tmp = tempfile.mkdtemp(prefix="netc-dp-")
mpirun = ["mpirun", "--oversubscribe", "--bind-to", "none"] + (["--allow-run-as-root"] if os.getuid() == 0 else [])


def build(example, mpi):
    out = os.path.join(tmp, example + ("_mpi" if mpi else ""))
    cmd = [netc, "build", os.path.join(ROOT, "examples", example + ".net"), "-o", out] + (["--mpi"] if mpi else [])
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return out


def train(prog, ranks, threads, steps, batch=None):
    m = os.path.join(tmp, "m.jsonl")
    cmd = [prog, "train", "--max-steps", str(steps), "--threads", str(threads), "--quiet", "--metrics", m]
    if batch:
        cmd += ["--batch", str(batch)]
    if ranks:
        cmd = mpirun + ["-np", str(ranks)] + cmd
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    r = json.loads(open(m).read().splitlines()[-1])
    return r["images_per_second"], r.get("allreduce_seconds", 0.0) / max(r["steps"], 1)


def info(prog):
    text = subprocess.run([prog, "info"], check=True, capture_output=True, text=True).stdout
    params = int(re.search(r"parameters: (\d+) in", text).group(1))
    batch = int(re.search(r"train: batch (\d+)", text).group(1))
    return params, batch


print(f"# netc data-parallel scaling, {os.uname().nodename}, {os.cpu_count()} CPUs")
print(f"load before: {open('/proc/loadavg').read().split()[:3]}")
if not args.skip_throughput:
    cnn, cnn_mpi = build("mnist_cnn", False), build("mnist_cnn", True)
    configs = [("1 process x 1 thread", cnn, 0, 1), ("1 process x 2 threads", cnn, 0, 2),
               ("2 ranks x 1 thread", cnn_mpi, 2, 1), ("4 ranks x 1 thread (oversubscribed)", cnn_mpi, 4, 1)]
    res = {c[0]: [] for c in configs}
    for r in range(args.repeats):
        for name, prog, ranks, threads in configs:
            res[name].append(train(prog, ranks, threads, args.steps))
    print(f"\n## Keras CNN, batch 64 per rank, {args.steps} steps, median of {args.repeats} interleaved runs\n")
    print("| configuration | images/s | allreduce wait per step (ms) | vs 1 process x 2 threads |")
    print("|---|---|---|---|")
    base = statistics.median(v[0] for v in res["1 process x 2 threads"])
    for name, *_ in configs:
        ips = statistics.median(v[0] for v in res[name])
        ar = statistics.median(v[1] for v in res[name]) * 1e3
        print(f"| {name} | {ips:,.0f} | {ar:.2f} | {ips / base:.2f}x |")
    print("\nruns (images/s):", {k: [round(v[0]) for v in vs] for k, vs in res.items()})

print(f"\n## Ring-allreduce cost model (alpha-beta), step time measured here: 1 process x {args.threads} threads\n")
nets = [("10 Gb/s", 10e9 / 8, 25e-6), ("100 Gb/s", 100e9 / 8, 5e-6)]
rows = []
for ex in ("mlp", "mnist_cnn", "lenet"):
    prog = build(ex, False)
    params, batch = info(prog)
    given = dict(kv.split("=") for kv in args.ips.split(",") if kv)
    ips = float(given[ex]) if ex in given else train(prog, 0, args.threads, args.model_steps)[0]
    t_step = batch / ips
    rows.append((ex, params, batch, t_step))
head = "| example | gradient MB | batch/node | step (ms) |"
for k in (8, 16, 64):
    for net, _, _ in nets:
        head += f" K={k} {net} |"
print(head)
print("|" + "---|" * (4 + 3 * len(nets)))
for ex, params, batch, t_step in rows:
    byts = 4 * params
    line = f"| {ex} | {byts / 1e6:.2f} | {batch} | {t_step * 1e3:.2f} |"
    for k in (8, 16, 64):
        for _, bw, lat in nets:
            t_ar = 2 * (k - 1) / k * byts / bw + 2 * (k - 1) * lat
            line += f" {t_step / (t_step + t_ar):.0%} |"
    print(line)
print(f"\nload after: {open('/proc/loadavg').read().split()[:3]}")
