#!/usr/bin/env python3
"""bench/bench.py -- netc against PyTorch on the same networks, data, batch and
threads, interleaved, in one command:

    /work/venv-torch/bin/python bench/bench.py [--threads 2] [--repeats 3] [--build build]

Rows: Keras CNN (examples/mnist_cnn.net) training at batch 64 and 256, LeNet
and MLP training at batch 64 (Fashion-MNIST, the examples' optimizers), and the
Keras CNN's inference at batch 1 (latency) and batch 256 (throughput). Each
repeat runs every row once on each side, in separate processes, alternating;
the table shows medians, the ratio netc/PyTorch (>1: netc is faster), and the
achieved GFLOP/s (netc's FLOP count of the network, `PROGRAM info`) as a
fraction of the machine's peak FMA rate measured by bench/peak.c at the same
thread count.

Training is timed by each side over the training loop alone (batch gathering
included, data loading and evaluation excluded) for a fixed number of images
(PyTorch stops early after TRAIN_CAP_S seconds);
inference is the median time of one forward call on random inputs after a warm
up (bench/infer.c on the netc side, torch.inference_mode() on the other).
PyTorch runs in its best configuration found here: OMP/OpenBLAS/MKL thread
variables and torch.set_num_threads equal to its thread count,
ATEN_CPU_CAPABILITY=avx512 on AVX-512 CPUs, and every thread count from 1 to
--threads; its best median is the baseline (its column names the count).
The machine's load (uptime) is printed before and after: on a busy machine
the numbers move, the ratios less so.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_bench  # noqa: E402  (the PyTorch models and data reader)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A PyTorch training run stops after this many seconds if its images are not
# done (a thread count that collapses on a busy machine would take minutes).
TRAIN_CAP_S = 10.0

# name, model, kind, batch, images per training run (inference: seconds)
ROWS = [
    ("CNN train b64", "mnist_cnn", "train", 64, 12800),
    ("CNN train b256", "mnist_cnn", "train", 256, 12800),
    ("LeNet train b64", "lenet", "train", 64, 12800),
    ("MLP train b64", "mlp", "train", 64, 32000),
    ("CNN infer b1", "mnist_cnn", "infer", 1, 2.0),
    ("CNN infer b256", "mnist_cnn", "infer", 256, 2.0),
]


def load():
    return open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"


# ------------------------------------------------------------ PyTorch side --

def torch_child(args):
    """One PyTorch measurement in this process; prints a JSON line."""
    import numpy as np
    import torch
    import torch.nn as nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = train_bench.torch_model(args.model, nn)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    if args.kind == "infer":
        model.eval()
        x = torch.rand(args.batch, 1, 28, 28)
        lat = []
        with torch.inference_mode():
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < args.amount / 10:
                model(x)
            t0 = time.perf_counter()
            while time.perf_counter() - t0 < args.amount or len(lat) < 5:
                t = time.perf_counter()
                model(x)
                lat.append(time.perf_counter() - t)
        med = statistics.median(lat)
        print(json.dumps({"images_per_second": args.batch / med, "latency_ms": med * 1e3,
                          "torch": torch.__version__}))
        return
    r = train_bench.RECIPES[args.model]
    data = train_bench.DATA
    x = torch.from_numpy(train_bench.read_idx(f"{data}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0)
    x = x.unsqueeze(1)
    y = torch.from_numpy(train_bench.read_idx(f"{data}/train-labels-idx1-ubyte.gz").astype(np.int64))
    if r["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=r["lr"], eps=1e-7)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r.get("momentum", 0))
    loss_fn = nn.CrossEntropyLoss()
    b = args.batch
    steps = max(1, int(args.amount) // b)
    perm = torch.randperm(x.shape[0])
    model.train()
    t0 = time.perf_counter()
    done = 0
    for s in range(steps):
        idx = perm[(s * b) % (x.shape[0] - b):][:b]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        done += 1
        if time.perf_counter() - t0 > TRAIN_CAP_S:
            break
    secs = time.perf_counter() - t0
    print(json.dumps({"images_per_second": done * b / secs, "loss": loss.item(), "torch": torch.__version__}))


def run_torch(args, row, threads):
    name, model, kind, batch, amount = row
    cmd = [args.python, os.path.abspath(__file__), "--torch-child", "--model", model, "--kind", kind,
           "--batch", str(batch), "--amount", str(amount), "--threads", str(threads)]
    out = subprocess.run(cmd, env=train_bench.torch_env(threads), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"PyTorch run failed ({name}):\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------- netc side --

def flops(exe):
    """(forward FLOPs per item, training FLOPs per item, per step) from `info`."""
    info = subprocess.run([exe, "info"], capture_output=True, text=True, check=True).stdout
    fwd = train = step = None
    for line in info.splitlines():
        if "forward" in line and "MFLOPs per item (" in line:
            fwd = float(line.rsplit("(", 1)[1].rstrip(")"))
        if line.startswith("training step"):
            words = line.split(":", 1)[1].split()
            train, step = float(words[0]) * 1e6, float(words[5]) * 1e6 if len(words) > 5 else 0.0
    return fwd, train, step


def build_netc(args, tmp):
    """Builds each model's training program and the CNN's inference harness."""
    exes = {}
    for model in sorted({r[1] for r in ROWS}):
        exe = os.path.join(tmp, model)
        subprocess.run([args.netc, "build", os.path.join(ROOT, "examples", model + ".net"), "-o", exe], check=True)
        exes[model] = exe
    src = os.path.join(tmp, "cnn_src")
    subprocess.run([args.netc, "emit", os.path.join(ROOT, "examples", "mnist_cnn.net"), "-o", src + "/"], check=True)
    infer = os.path.join(tmp, "infer_mnist_cnn")
    obj = os.path.join(tmp, "mnist_cnn.o")
    subprocess.run([args.cc, "-O3", "-march=native", "-std=c11", "-Dmain=netc_generated_main", "-c",
                    os.path.join(src, "mnist_cnn.c"), "-I" + src, "-o", obj], check=True)
    subprocess.run([args.cc, "-O3", "-march=native", "-std=c11", "-D_POSIX_C_SOURCE=200809L", obj,
                    os.path.join(ROOT, "bench", "infer.c"), "-I" + ROOT,
                    os.path.join(args.build, "runtime", "libnetrt.a"), "-lopenblas", "-lpng", "-lz", "-lm",
                    "-lpthread", "-o", infer], check=True)
    peak = os.path.join(tmp, "peak")
    subprocess.run([args.cc, "-O2", "-march=native", "-pthread", os.path.join(ROOT, "bench", "peak.c"), "-o", peak],
                   check=True)
    return exes, infer, peak


def run_netc(args, row, exes, infer):
    name, model, kind, batch, amount = row
    if kind == "infer":
        out = subprocess.run([infer, str(batch), str(args.threads), str(amount)], capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"netc run failed ({name}):\n{out.stderr}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        cmd = [exes[model], "train", "--epochs", "1", "--batch", str(batch), "--threads", str(args.threads),
               "--max-steps", str(max(1, int(amount) // batch)), "--metrics", metrics]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"netc run failed ({name}):\n{out.stdout}\n{out.stderr}")
        with open(metrics) as f:
            return json.loads(f.read().strip().splitlines()[-1])


# ------------------------------------------------------------------- table --

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", default="", help="comma-separated row numbers (1-based) to run; default all")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="the CMake build directory")
    ap.add_argument("--netc", default="", help="netc (default: BUILD/netc)")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--peak", type=float, default=0,
                    help="peak GFLOP/s at --threads for the %%peak columns (default: measure with peak.c; "
                         "on a busy machine the measurement is low)")
    venv = "/work/venv-torch/bin/python"
    ap.add_argument("--python", default=venv if os.path.exists(venv) else "/usr/bin/python3",
                    help="the Python that has torch")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--amount", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        return torch_child(args)
    args.netc = args.netc or os.path.join(args.build, "netc")
    rows = [ROWS[int(i) - 1] for i in args.rows.split(",")] if args.rows else ROWS
    print(f"load before: {load()}  (uptime: {os.popen('uptime').read().strip()})")
    with tempfile.TemporaryDirectory() as tmp:
        exes, infer, peak_exe = build_netc(args, tmp)
        def measure_peak():
            return json.loads(subprocess.run([peak_exe, str(args.threads)], capture_output=True, text=True,
                                             check=True).stdout)
        peak = measure_peak()
        fl = {m: flops(e) for m, e in exes.items()}
        netc_runs = {r[0]: [] for r in rows}
        torch_runs = {r[0]: {t: [] for t in range(1, args.threads + 1)} for r in rows}
        for rep in range(args.repeats):
            for row in rows:
                netc_runs[row[0]].append(run_netc(args, row, exes, infer))
                line = f"run {rep + 1}/{args.repeats} {row[0]:16} netc {netc_runs[row[0]][-1]['images_per_second']:9.1f}"
                for t in range(1, args.threads + 1):
                    torch_runs[row[0]][t].append(run_torch(args, row, t))
                    line += f"  PyTorch/{t}t {torch_runs[row[0]][t][-1]['images_per_second']:9.1f}"
                print(line + f"  (load {load()})", file=sys.stderr, flush=True)
        # The peak is measured before and after the runs and the higher kept: a
        # moment of load elsewhere on a shared machine halves one measurement.
        again = measure_peak()
        peak["gflops"], peak["gflops_1"] = max(peak["gflops"], again["gflops"]), max(peak["gflops_1"], again["gflops_1"])
        if args.peak:
            peak["measured"], peak["gflops"] = peak["gflops"], args.peak
    version = next(iter(next(iter(torch_runs.values())).values()))[0]["torch"]
    given = f" (given; measured now {peak['measured']:.0f})" if "measured" in peak else ""
    print(f"netc vs PyTorch {version}, {args.threads} threads, {args.repeats} interleaved runs, medians; "
          f"peak FMA {peak['gflops']:.0f} GFLOP/s on {args.threads} threads{given} ({peak['gflops_1']:.0f} "
          f"measured on one, {peak['isa']})")
    print(f"{'row':16} {'unit':>8} {'netc':>9} {'PyTorch':>9} {'(thr)':>5} {'ratio':>6} "
          f"{'netc GF/s':>9} {'%peak':>6} {'torch GF/s':>10} {'%peak':>6}")
    med = lambda runs, k: statistics.median(x[k] for x in runs)
    for row in rows:
        name, model, kind, batch, _ = row
        n_ips = med(netc_runs[name], "images_per_second")
        best_t = max(torch_runs[name], key=lambda t: med(torch_runs[name][t], "images_per_second"))
        t_ips = med(torch_runs[name][best_t], "images_per_second")
        fwd, train, step = fl[model]
        per_item = fwd if kind == "infer" else train + step / batch
        n_gf, t_gf = n_ips * per_item / 1e9, t_ips * per_item / 1e9
        if kind == "infer" and batch == 1:
            unit, nv, tv = "ms", med(netc_runs[name], "latency_ms"), med(torch_runs[name][best_t], "latency_ms")
            ratio = tv / nv
        else:
            unit, nv, tv, ratio = "img/s", n_ips, t_ips, n_ips / t_ips
        fmt = "9.3f" if unit == "ms" else "9.0f"
        print(f"{name:16} {unit:>8} {nv:{fmt}} {tv:{fmt}} {best_t:5d} {ratio:5.2f}x "
              f"{n_gf:9.1f} {100 * n_gf / peak['gflops']:5.1f}% {t_gf:10.1f} {100 * t_gf / peak['gflops']:5.1f}%")
    print(f"load after: {load()}")


if __name__ == "__main__":
    main()
