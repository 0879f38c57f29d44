#!/usr/bin/env python3
"""bench/bench.py -- netc against PyTorch eager, torch.compile, JAX jit and ONNX
Runtime on the same networks, data, batch and threads, interleaved, in one command:

    /work/venv-torch/bin/python bench/bench.py [--threads 2] [--repeats 3] [--build build]
                                               [--rows 1,5] [--baselines eager,compile,jax,ort]

Rows: Keras CNN (examples/mnist_cnn.net) training at batch 64 and 256, LeNet
and MLP training at batch 64 (Fashion-MNIST, the examples' optimizers), the
Keras CNN's inference at batch 1 (latency) and batch 256 (throughput), and the
recurrent rows against PyTorch eager (bench/rnn_bench.py): the GRU over the 28
rows of Fashion-MNIST images (examples/gru_rows.net) and the seeds' LSTM
(examples/lstm.net, 10x3 -> 50 -> 3, on random sequences) training,
and examples/tiny_gpt.net (a character-level transformer) training at batch
32, in tokens/s, against the same network in PyTorch (bench/lm_bench.py) on
random windows of the same shape; then a depthwise-separable CNN
(bench/nets/dwsep.net) and a VGG-style CNN with batch norm
(bench/nets/vgg_bn.net) training at batch 64, and the DCGAN
(examples/dcgan.net, one D and one G step per batch of 64 real images; the
PyTorch side in bench/gan_bench.py; its FLOPs are netc's, whose G step runs
G's forward again where PyTorch reuses the D step's, ~9 % more).
Training rows are compared with PyTorch eager, torch.compile (Inductor) and
JAX jit (XLA CPU); inference rows with PyTorch eager and ONNX Runtime (the
model exported from PyTorch). bench/baselines.py holds those sides. Each
repeat runs every row once on every side, in separate processes, alternating;
the table shows medians, the ratio netc/baseline (>1: netc is faster), and the
achieved GFLOP/s (netc's FLOP count of the network, `PROGRAM info`) as a
fraction of the machine's peak FMA rate measured by bench/peak.c at the same
thread count; each baseline's %peak is its rate at that same FLOP count against
the peak at its own thread count, so 100 / that % bounds any ratio against it
(a baseline at 60 % of peak cannot be beaten 2x).

Training is timed by each side over the training loop alone (batch gathering
included, data loading and evaluation excluded) for a fixed number of images
(a baseline stops early after 10 s); compilation and the first steps are
timed apart (warm-up column). Inference is the median time of one forward
call on random inputs after a warm up (bench/infer.c on the netc side).
Baselines run in their best configuration found here: OMP/OpenBLAS/MKL thread
variables and torch.set_num_threads equal to the thread count, the process
pinned to that many CPUs (XLA and ONNX Runtime size their pools from it),
ATEN_CPU_CAPABILITY=avx512 on AVX-512 CPUs, and every thread count from 1 to
--threads; each baseline's best median is its column (thr names the count).
Last, unless --no-build-times, bench/build_time.py times `netc build` of
every example, cold (empty object cache) and warm, with the same repeats.
The machine's load (uptime) is printed before and after: on a busy machine
the numbers move, the ratios less so. The Python given by --python needs
torch, numpy, jax, onnx and onnxruntime (all from PyPI).
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

# name, model, kind, batch, images per training run (inference: seconds)
ROWS = [
    ("CNN train b64", "mnist_cnn", "train", 64, 12800),
    ("CNN train b256", "mnist_cnn", "train", 256, 12800),
    ("LeNet train b64", "lenet", "train", 64, 12800),
    ("MLP train b64", "mlp", "train", 64, 32000),
    ("CNN infer b1", "mnist_cnn", "infer", 1, 2.0),
    ("CNN infer b256", "mnist_cnn", "infer", 256, 2.0),
    ("GRU rows b64", "gru_rows", "rnn", 64, 6400),
    ("LSTM seeds b10", "lstm", "rnn", 10, 3000),
]
# The transformer row, once examples/tiny_gpt.net is there (it needs the text data layers).
if os.path.exists(os.path.join(ROOT, "examples", "tiny_gpt.net")):
    ROWS.append(("tiny_gpt tr b32", "tiny_gpt", "lm", 32, 3200))
# Rows 10-12: the depthwise-separable CNN and the batch-norm VGG-style CNN
# (bench/nets/), and the DCGAN (both steps per batch, bench/gan_bench.py).
ROWS += [
    ("dwsep train b64", "dwsep", "train", 64, 6400),
    ("VGG-bn train b64", "vgg_bn", "train", 64, 3200),
    ("DCGAN train b64", "dcgan", "gan", 64, 3200),
]


def load():
    return open("/proc/loadavg").read().split()[0] if os.path.exists("/proc/loadavg") else "?"


# ----------------------------------------------------------- baseline side --

# The baselines of each kind of row (bench/baselines.py runs them).
FRAMEWORKS = {"train": ["eager", "compile", "jax"], "infer": ["eager", "ort"], "rnn": ["eager"],
              "lm": ["eager", "compile"], "gan": ["eager", "compile"]}
FW_NAMES = {"eager": "PyTorch", "compile": "torch.compile", "jax": "JAX jit", "ort": "ONNX Runtime"}


def run_baseline(args, row, fw, threads):
    name, model, kind, batch, amount = row
    cmd = [args.python, os.path.abspath(__file__), "--child", fw, "--model", model, "--kind", kind,
           "--batch", str(batch), "--amount", str(amount), "--threads", str(threads)]
    out = subprocess.run(cmd, env=train_bench.torch_env(threads), capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"{FW_NAMES[fw]} run failed ({name}, {threads} threads):\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# --------------------------------------------------------------- netc side --

def flops(exe):
    """(forward FLOPs per item, training FLOPs per item, per step) from `info`."""
    info = subprocess.run([exe, "info"], capture_output=True, text=True, check=True).stdout
    fwd = train = step = None
    for line in info.splitlines():
        if "forward" in line and "FLOPs per item (" in line:
            fwd = float(line.rsplit("(", 1)[1].rstrip(")"))
        if line.startswith("training step"):
            # "660.91 KFLOPs per item + 145.00 KFLOPs per step": the unit is K, M or G
            words = line.split(":", 1)[1].split()
            scale = {"FLOPs": 1.0, "KFLOPs": 1e3, "MFLOPs": 1e6, "GFLOPs": 1e9, "TFLOPs": 1e12}
            train = float(words[0]) * scale[words[1]]
            step = float(words[5]) * scale[words[6]] if len(words) > 6 else 0.0
    return fwd, train, step


def runtime_libs(build):
    """The libraries libnetrt.a needs, as the build's netrt.pc lists them (cairo
    only when it was found, ...), without the library itself."""
    with open(os.path.join(build, "netrt.pc")) as f:
        libs = next(line for line in f if line.startswith("Libs:")).split()[1:]
    return [w for w in libs if not w.startswith("-L") and w != "-lnetrt"]


def build_netc(args, tmp):
    """Builds each model's training program and the CNN's inference harness."""
    exes = {}
    for model in sorted({r[1] for r in ROWS}):
        exe = os.path.join(tmp, model)
        subprocess.run([args.netc, "build", train_bench.net_path(model), "-o", exe], check=True)
        exes[model] = exe
    src = os.path.join(tmp, "cnn_src")
    subprocess.run([args.netc, "emit", os.path.join(ROOT, "examples", "mnist_cnn.net"), "-o", src + "/"], check=True)
    infer = os.path.join(tmp, "infer_mnist_cnn")
    obj = os.path.join(tmp, "mnist_cnn.o")
    subprocess.run([args.cc, "-O3", "-march=native", "-std=c11", "-Dmain=netc_generated_main", "-c",
                    os.path.join(src, "mnist_cnn.c"), "-I" + src, "-o", obj], check=True)
    subprocess.run([args.cc, "-O3", "-march=native", "-std=c11", "-D_POSIX_C_SOURCE=200809L", obj,
                    os.path.join(ROOT, "bench", "infer.c"), "-I" + ROOT,
                    os.path.join(args.build, "runtime", "libnetrt.a")] + runtime_libs(args.build) + ["-o", infer],
                   check=True)
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
        if model == "lstm":  # examples/lstm.net reads x.npy, y.npy: the PyTorch side's data
            import numpy as np
            import rnn_bench
            xs, ys = rnn_bench.lstm_data(np)
            np.save(os.path.join(tmp, "x.npy"), xs)
            np.save(os.path.join(tmp, "y.npy"), ys)
            cmd += ["--epochs", str(max(1, int(amount) // len(xs) + 1))]
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp)
        if out.returncode != 0:
            raise SystemExit(f"netc run failed ({name}):\n{out.stdout}\n{out.stderr}")
        with open(metrics) as f:
            r = json.loads(f.read().strip().splitlines()[-1])
        if kind == "lm":  # windows/s -> tokens/s, as lm_bench.py reports
            r["windows_per_second"] = r["images_per_second"]
            r["images_per_second"] *= lm_window()
        return r


def lm_window():
    import lm_bench
    return lm_bench.config()["window"]


# ------------------------------------------------------------------- table --

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rows", default="", help="comma-separated row numbers (1-based) to run; default all")
    ap.add_argument("--baselines", default="eager,compile,jax,ort",
                    help="frameworks to compare with: eager (PyTorch), compile (torch.compile), jax, ort "
                         "(ONNX Runtime, inference rows); default all")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"), help="the CMake build directory")
    ap.add_argument("--netc", default="", help="netc (default: BUILD/netc)")
    ap.add_argument("--cc", default=os.environ.get("CC", "cc"))
    ap.add_argument("--peak", type=float, default=0,
                    help="peak GFLOP/s at --threads for the %%peak columns (default: measure with peak.c; "
                         "on a busy machine the measurement is low)")
    venv = "/work/venv-torch/bin/python"
    ap.add_argument("--python", default=venv if os.path.exists(venv) else "/usr/bin/python3",
                    help="the Python that has torch (and jax, onnxruntime, onnx for those baselines)")
    ap.add_argument("--no-build-times", action="store_true",
                    help="skip the table of `netc build` times per example (bench/build_time.py) at the end")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--model", help=argparse.SUPPRESS)
    ap.add_argument("--kind", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--amount", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child and args.kind == "rnn":
        import rnn_bench
        return rnn_bench.child(args)
    if args.child:
        import baselines
        args.framework = args.child
        return baselines.child(args)
    args.netc = args.netc or os.path.join(args.build, "netc")
    rows = [ROWS[int(i) - 1] for i in args.rows.split(",")] if args.rows else ROWS
    wanted = [f for f in args.baselines.split(",") if f]
    for f in wanted:
        if f not in FW_NAMES:
            raise SystemExit(f"bench.py: unknown baseline '{f}' (known: {', '.join(FW_NAMES)})")
    fws = {r[0]: [f for f in FRAMEWORKS[r[2]] if f in wanted] for r in rows}
    threads = range(1, args.threads + 1)
    print(f"load before: {load()}  (uptime: {os.popen('uptime').read().strip()})")
    with tempfile.TemporaryDirectory() as tmp:
        exes, infer, peak_exe = build_netc(args, tmp)
        def measure_peak():
            return json.loads(subprocess.run([peak_exe, str(args.threads)], capture_output=True, text=True,
                                             check=True).stdout)
        peak = measure_peak()
        fl = {m: flops(e) for m, e in exes.items()}
        netc_runs = {r[0]: [] for r in rows}
        base_runs = {r[0]: {f: {t: [] for t in threads} for f in fws[r[0]]} for r in rows}
        for rep in range(args.repeats):
            for row in rows:
                netc_runs[row[0]].append(run_netc(args, row, exes, infer))
                line = f"run {rep + 1}/{args.repeats} {row[0]:16} netc {netc_runs[row[0]][-1]['images_per_second']:9.1f}"
                for f in fws[row[0]]:
                    for t in threads:
                        r = run_baseline(args, row, f, t)
                        base_runs[row[0]][f][t].append(r)
                        line += f"  {f}/{t}t {r['images_per_second']:.1f} (warm-up {r['warmup_s']:.1f} s)"
                print(line + f"  (load {load()})", file=sys.stderr, flush=True)
        # The peak is measured before and after the runs and the higher kept: a
        # moment of load elsewhere on a shared machine halves one measurement.
        again = measure_peak()
        peak["gflops"], peak["gflops_1"] = max(peak["gflops"], again["gflops"]), max(peak["gflops_1"], again["gflops_1"])
        if args.peak:
            peak["measured"], peak["gflops"] = peak["gflops"], args.peak
    versions = {}
    for runs in base_runs.values():
        for f, per_t in runs.items():
            versions[f] = per_t[1][0]["version"]
    given = f" (given; measured now {peak['measured']:.0f})" if "measured" in peak else ""
    print(f"netc vs {', '.join(f'{FW_NAMES[f]} {v}' for f, v in versions.items())}; {args.threads} threads, "
          f"{args.repeats} interleaved runs, medians; peak FMA {peak['gflops']:.0f} GFLOP/s on {args.threads} "
          f"threads{given} ({peak['gflops_1']:.0f} measured on one, {peak['isa']})")
    print("Each baseline at its best thread count (thr); ratio = netc / baseline (>1: netc faster; for "
          "latency, baseline ms / netc ms); warm-up = compilation and first steps, excluded from the rates.")
    med = lambda runs, k: statistics.median(x[k] for x in runs)
    peak_at = lambda t: peak["gflops_1"] if t == 1 else peak["gflops"] * t / args.threads
    hdr = f"{'row':16} {'unit':>6} {'netc':>9} {'GF/s':>6} {'%peak':>6}"
    print(hdr + "".join(f" | {FW_NAMES[f]:>13} {'(thr)':>5} {'ratio':>6} {'%peak':>6} {'warm-up':>7}"
                        for f in FW_NAMES if f in wanted))
    for row in rows:
        name, model, kind, batch, _ = row
        fwd, train, step = fl[model]
        per_item = fwd if kind == "infer" else train + step / batch
        if kind == "lm":  # the rates are tokens/s; netc's FLOPs are per window
            per_item /= lm_window()
        lat = kind == "infer" and batch == 1
        key = "latency_ms" if lat else "images_per_second"
        nv = med(netc_runs[name], key)
        n_gf = med(netc_runs[name], "images_per_second") * per_item / 1e9
        fmt = "9.3f" if lat else "9.0f"
        unit = "ms" if lat else "tok/s" if kind == "lm" else "img/s"
        line = f"{name:16} {unit:>6} {nv:{fmt}} {n_gf:6.1f} {100 * n_gf / peak['gflops']:5.1f}%"
        for f in FW_NAMES:
            if f not in wanted:
                continue
            if f not in fws[name]:
                line += f" | {'-':>13} {'':>5} {'':>6} {'':>6} {'':>7}"
                continue
            per_t = base_runs[name][f]
            best = (min if lat else max)(per_t, key=lambda t: med(per_t[t], key))
            bv = med(per_t[best], key)
            ratio = bv / nv if lat else nv / bv
            # The baseline's rate at netc's FLOP count, against the peak at its
            # own thread count: how close to the machine it already runs, hence
            # the most any ratio against it can be (100 / this %).
            b_pk = 100 * med(per_t[best], "images_per_second") * per_item / 1e9 / peak_at(best)
            line += f" | {bv:13.3f} {best:5d} {ratio:5.2f}x {b_pk:5.1f}% {med(per_t[best], 'warmup_s'):6.1f}s" \
                if lat else f" | {bv:13.0f} {best:5d} {ratio:5.2f}x {b_pk:5.1f}% {med(per_t[best], 'warmup_s'):6.1f}s"
        print(line)
    print(f"load after: {load()}")
    if not args.no_build_times:  # issue 15: every example's `netc build` within 1 s of wall time
        print(flush=True)
        subprocess.run([sys.executable, os.path.join(ROOT, "bench", "build_time.py"), "--netc", args.netc,
                        "--repeats", str(args.repeats)], check=True)


if __name__ == "__main__":
    main()
