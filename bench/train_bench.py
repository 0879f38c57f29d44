#!/usr/bin/env python3
"""bench/train_bench.py -- train a seed network one epoch with netc and with PyTorch
on the same Fashion-MNIST data, batch, optimizer and thread count, interleaved, and
print the images/s of each, their ratio and both test accuracies.

    python3 bench/train_bench.py [--model mlp] [--threads 2] [--repeats 3] [--netc build/netc]

PyTorch comes from Debian's python3-torch (run with /usr/bin/python3, which is
the default of --python) or from PyPI (--python /work/venv-torch/bin/python, the
default of bench/bench.py, which runs all the rows). It is run in its best
configuration measured here: ATEN_CPU_CAPABILITY=avx512 when the CPU has AVX-512, and
OPENBLAS_NUM_THREADS / OMP_NUM_THREADS / torch.set_num_threads all equal to
--threads (Debian's torch.set_num_threads does not reach OpenBLAS). Each side's
number is the median over --repeats runs of the training loop alone (data loading
and the test pass excluded), measured in separate processes, alternating.
PyTorch is also run with every thread count below --threads, and its best median
is the baseline: here Debian's PyTorch trains small models fastest on one thread
(its OpenBLAS threading costs more than it gains at batch 64).
"""
import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist"

# The PyTorch side of each model: the same architecture, init and recipe as
# examples/<model>.net (Keras glorot-uniform weights, zero biases).
RECIPES = {
    "mlp": dict(batch=64, optimizer="adam", lr=1e-3),
    "mnist_cnn": dict(batch=64, optimizer="adam", lr=1e-3),
    "lenet": dict(batch=64, optimizer="sgd", lr=0.01, momentum=0.9),
    "dwsep": dict(batch=64, optimizer="adam", lr=1e-3),
    "vgg_bn": dict(batch=64, optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True),
}


def net_path(model):
    """examples/MODEL.net, or bench/nets/MODEL.net for the bench-only networks."""
    path = os.path.join(ROOT, "examples", model + ".net")
    return path if os.path.exists(path) else os.path.join(ROOT, "bench", "nets", model + ".net")


def has_avx512():
    try:
        with open("/proc/cpuinfo") as f:
            return "avx512f" in f.read()
    except OSError:
        return False


def torch_env(threads):
    env = dict(os.environ)
    env.update(OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               MKL_NUM_THREADS=str(threads))
    if has_avx512():
        env["ATEN_CPU_CAPABILITY"] = "avx512"
    return env


def read_idx(path):
    import numpy as np
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def torch_model(name, nn):
    if name == "mlp":
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "mnist_cnn":
        return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 5 * 5, 128), nn.ReLU(),
                             nn.Linear(128, 10))
    if name == "lenet":
        return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(6, 16, 5),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(16 * 5 * 5, 120), nn.ReLU(),
                             nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))
    if name == "dwsep":  # bench/nets/dwsep.net
        def cbr(ci, co, k, groups=1, bias=False):
            return [nn.Conv2d(ci, co, k, padding=k // 2, groups=groups, bias=bias), nn.BatchNorm2d(co), nn.ReLU()]
        return nn.Sequential(*cbr(1, 32, 3, bias=True), *cbr(32, 32, 3, groups=32), *cbr(32, 64, 1),
                             nn.MaxPool2d(2), *cbr(64, 64, 3, groups=64), *cbr(64, 128, 1), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(128 * 7 * 7, 10))
    if name == "vgg_bn":  # bench/nets/vgg_bn.net
        def cbr(ci, co):
            return [nn.Conv2d(ci, co, 3, padding=1), nn.BatchNorm2d(co), nn.ReLU()]
        return nn.Sequential(*cbr(1, 32), *cbr(32, 32), nn.MaxPool2d(2), *cbr(32, 64), *cbr(64, 64),
                             nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64 * 7 * 7, 10))
    raise SystemExit(f"no PyTorch recipe for model '{name}'")


def torch_optimizer(torch, model, r):
    """The recipe's optimizer (netc's Adam eps is Keras' 1e-7)."""
    if r["optimizer"] == "adam":
        return torch.optim.Adam(model.parameters(), lr=r["lr"], eps=1e-7)
    return torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r.get("momentum", 0),
                           nesterov=r.get("nesterov", False))


def run_torch_child(args):
    """One PyTorch training epoch; prints a JSON line."""
    import numpy as np
    import torch
    import torch.nn as nn
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    r = RECIPES[args.model]
    x = torch.from_numpy(read_idx(f"{DATA}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    y = torch.from_numpy(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz").astype(np.int64))
    tx = torch.from_numpy(read_idx(f"{DATA}/t10k-images-idx3-ubyte.gz").astype(np.float32) / 255.0).unsqueeze(1)
    ty = torch.from_numpy(read_idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.int64))
    model = torch_model(args.model, nn)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    opt = torch_optimizer(torch, model, r)
    loss_fn = nn.CrossEntropyLoss()
    n, b = x.shape[0], r["batch"]
    perm = torch.randperm(n)
    steps = (n + b - 1) // b
    if args.max_steps:
        steps = min(steps, args.max_steps)
    model.train()
    t0 = time.perf_counter()
    seen = 0
    for s in range(steps):
        idx = perm[s * b:(s + 1) * b]
        xb, yb = x[idx], y[idx]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        seen += idx.shape[0]
    secs = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        acc = sum((model(tx[i:i + 1000]).argmax(1) == ty[i:i + 1000]).sum().item()
                  for i in range(0, tx.shape[0], 1000)) / tx.shape[0]
    print(json.dumps({"images_per_second": seen / secs, "test_accuracy": acc, "seconds": secs,
                      "torch": torch.__version__}))


def run_torch(args, py, threads):
    cmd = [py, os.path.abspath(__file__), "--torch-child", "--model", args.model, "--threads", str(threads),
           "--seed", str(args.seed)]
    if args.max_steps:
        cmd += ["--max-steps", str(args.max_steps)]
    out = subprocess.run(cmd, env=torch_env(threads), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"PyTorch run failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_netc(args, exe):
    with tempfile.TemporaryDirectory() as tmp:
        metrics = os.path.join(tmp, "m.jsonl")
        cmd = [exe, "train", "--epochs", "1", "--threads", str(args.threads), "--seed", str(args.seed),
               "--metrics", metrics]
        if args.max_steps:
            cmd += ["--max-steps", str(args.max_steps)]
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            raise SystemExit(f"netc run failed:\n{out.stdout}\n{out.stderr}")
        with open(metrics) as f:
            line = json.loads(f.read().strip().splitlines()[-1])
    return line


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mlp", choices=sorted(RECIPES))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-steps", type=int, default=0, help="cut each epoch short (smoke runs)")
    ap.add_argument("--netc", default=os.path.join(ROOT, "build", "netc"))
    ap.add_argument("--python", default="/usr/bin/python3", help="the Python that has torch")
    ap.add_argument("--torch-child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.torch_child:
        return run_torch_child(args)

    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, args.model)
        subprocess.run([args.netc, "build", net_path(args.model), "-o", exe],
                       check=True)
        netc_runs = []
        torch_runs = {t: [] for t in range(1, args.threads + 1)}
        for r in range(args.repeats):
            netc_runs.append(run_netc(args, exe))
            line = f"run {r + 1}/{args.repeats}: netc {netc_runs[-1]['images_per_second']:.0f} img/s"
            for t in torch_runs:
                torch_runs[t].append(run_torch(args, args.python, t))
                line += f", PyTorch/{t}t {torch_runs[t][-1]['images_per_second']:.0f}"
            print(line, file=sys.stderr)
    med = lambda runs, k: statistics.median(x[k] for x in runs)
    n_ips, n_acc = med(netc_runs, "images_per_second"), med(netc_runs, "test_accuracy")
    same = torch_runs[args.threads]
    best_t = max(torch_runs, key=lambda t: med(torch_runs[t], "images_per_second"))
    best = torch_runs[best_t]
    print(f"model {args.model}, batch {RECIPES[args.model]['batch']}, {args.threads} threads, "
          f"{args.repeats} interleaved runs, PyTorch {same[0]['torch']}")
    print(f"{'':24} {'images/s':>10} {'test acc':>9}")
    print(f"{'netc (%d threads)' % args.threads:24} {n_ips:10.0f} {n_acc:9.4f}")
    print(f"{'PyTorch (%d threads)' % args.threads:24} {med(same, 'images_per_second'):10.0f} "
          f"{med(same, 'test_accuracy'):9.4f}")
    if best_t != args.threads:
        print(f"{'PyTorch (%d threads, best)' % best_t:24} {med(best, 'images_per_second'):10.0f} "
              f"{med(best, 'test_accuracy'):9.4f}")
    print(f"ratio netc/PyTorch, same threads: {n_ips / med(same, 'images_per_second'):.2f}x")
    print(f"ratio netc/PyTorch, PyTorch at its best thread count ({best_t}): "
          f"{n_ips / med(best, 'images_per_second'):.2f}x")


if __name__ == "__main__":
    main()
