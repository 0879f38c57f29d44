#!/usr/bin/env python3
"""tests/torch/crosscheck.py -- netc against PyTorch from identical weights.

For every registered model (models*.py next to this file): fixed random data
(one batch, .npy or CSV) -> `netc build` -> `PROG train --max-steps 0 --save`
gives the initial checkpoint -> netc trains 1 and 3 steps from it -> a PyTorch
twin starts from the same checkpoint and trains in float64 (the reference) and
float32 -> per tensor (loss, parameters, batch-norm statistics, optimizer state,
which after one step holds the gradient) the largest difference from the
reference relative to the reference's largest magnitude. A tensor passes when
netc's difference is within max(tol, 10 x PyTorch float32's own difference);
tol is 1e-4 unless the model says otherwise.

usage: crosscheck.py [--netc build/netc] [--work DIR] [--jobs J] [-v] [MODEL...]
Exit status 1 when a model fails, with its failing tensors listed."""
import argparse
import concurrent.futures
import glob
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import twin  # noqa: E402

STEPS = (1, 3)
NOISE = 1e-2
KINK_ROUNDS = 3   # at most this many kink flips per model (explain_kinks)
KINK_TRIES = 12   # the closest inputs to a kink tried per flip
KINK_NOISE = 3    # an input this many times PyTorch float32's largest error on it from a kink may flip


def load_models(extra=()):
    for path in sorted(glob.glob(os.path.join(HERE, "models*.py"))) + list(extra):
        spec = importlib.util.spec_from_file_location(os.path.basename(path)[:-3], path)
        spec.loader.exec_module(importlib.util.module_from_spec(spec))
    return twin.MODELS


def make_data(model, work):
    """The fixed data: the arrays as the program sees them (after scale and
    shift), and the files given to --data."""
    rng = np.random.default_rng(model.seed)
    raw, seen = {}, {}
    for inp in model.inputs:
        shape = (model.batch,) + inp.shape
        kind = inp.kind
        if kind == "normal":
            a = rng.standard_normal(shape).astype(np.float32)
        elif kind == "uniform":
            a = rng.random(shape).astype(np.float32)
        elif kind == "signs":
            a = np.where(rng.random(shape) < 0.5, -1, 1).astype(np.float32)
        elif kind == "pixels":
            a = rng.integers(0, 256, shape).astype(np.float32)
        elif kind.startswith("labels:"):
            a = rng.integers(0, int(kind[7:]), shape).astype(np.int32)
        elif kind.startswith("onehot:"):
            c = int(kind[7:])
            a = np.eye(c, dtype=np.float32)[rng.integers(0, c, model.batch)]
        else:
            raise ValueError(f"{model.name}: unknown input kind {kind}")
        raw[inp.name] = a
        seen[inp.name] = ((a.astype(np.float64) * inp.scale + inp.shift).astype(np.float32)
                          if a.dtype == np.float32 else a)
    if model.csv:
        path = os.path.join(work, "data.csv")
        cols = [raw[i.name].reshape(model.batch, -1).astype(np.float64) for i in model.inputs]
        np.savetxt(path, np.concatenate(cols, axis=1), fmt="%.9g", delimiter=",")
        return seen, [path]
    files = []
    for inp in model.inputs:
        path = os.path.join(work, inp.name + ".npy")
        np.save(path, raw[inp.name])
        files.append(path)
    return seen, files


def run(cmd, work):
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def netc_side(model, netc, work):
    """netc's initial tensors and, per step count, (losses, tensors)."""
    if "\n" in model.net:
        src = os.path.join(work, model.name + ".net")
        with open(src, "w") as f:
            f.write(model.net)
    else:
        src = os.path.join(ROOT, model.net)
    prog = os.path.join(work, model.name)
    run([netc, "build", src, "-o", prog], work)
    seen, files = make_data(model, work)
    common = ["--data", ",".join(files), "--batch", str(model.batch), "--seed", str(model.seed), "--quiet"]
    init = os.path.join(work, "init.safetensors")
    run([prog, "train", *common, "--max-steps", "0", "--save", init], work)
    out = {}
    for k in STEPS:
        ck, mf = os.path.join(work, f"s{k}.safetensors"), os.path.join(work, f"m{k}.jsonl")
        run([prog, "train", *common, "--load", init, "--epochs", str(k), "--max-steps", str(k),
             "--save", ck, "--metrics", mf], work)
        lines = [json.loads(line) for line in open(mf)]
        last = lines[-1]
        names = [s.name for s in model.steps]
        losses = {n: last[n] for n in names} if len(names) > 1 else {names[0]: last["loss"]}
        out[k] = (losses, twin.st_read(ck)[0])
    return twin.st_read(init)[0], seen, out


def rel(a, ref):
    a, ref = np.asarray(a, np.float64), np.asarray(ref, np.float64)
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    d = np.max(np.abs(a - ref)) if ref.size else 0.0
    return d / scale if scale > 0 else d


def compare(model, got, ref, noise, steps):
    """Rows (step, name, netc's difference, PyTorch float32's, tolerance, ok)
    and failure lines of netc's results `got` against the reference `ref`;
    noise[k][name]: PyTorch float32's own difference at step k."""
    rows, fails = [], []
    for k in steps:
        losses, tensors = got[k]
        rl, rt = ref[k - 1]
        items = [(f"loss {n}", losses[n], rl[n]) for n in rl]
        for name in sorted(rt):
            if name not in tensors:
                fails.append((k, f"step {k}: {name}: missing in netc's checkpoint"))
                continue
            items.append((name, tensors[name], rt[name]))
        for name, a, r in items:
            dn, dt = rel(a, r), noise[k][name]
            tol = max(model.tol, 10 * dt)
            ok = dn <= tol
            rows.append((k, name, dn, dt, tol, ok))
            if not ok:
                fails.append((k, f"step {k}: {name}: netc {dn:.2e}, PyTorch f32 {dt:.2e}, tolerance {tol:.2e}"))
    return rows, fails


def f32_noise(ref, f32):
    """noise[k][name]: PyTorch float32's own difference from the reference."""
    noise = {}
    for k in range(1, len(ref) + 1):
        (rl, rt), (fl, ft) = ref[k - 1], f32[k - 1]
        noise[k] = {f"loss {n}": rel(fl[n], rl[n]) for n in rl}
        noise[k].update({name: rel(ft[name], rt[name]) for name in rt})
    return noise


def badness(rows, k):
    return max((r[2] / r[4] for r in rows if r[0] == k), default=0.0)


def kink_candidates(x64, x32, flips):
    """The inputs of the reference's kinked activations (x64: key -> input)
    within KINK_NOISE x PyTorch float32's own largest error on that input (x32)
    of the kink, closest first: (|x| / error, key, flat index, shape)."""
    out = []
    for key, rec in x64.items():
        if key not in x32:
            continue
        a = rec["x"]
        fin = np.isfinite(a) & np.isfinite(x32[key]["x"])  # pooling's one-input windows, exact ties
        err = float(np.max(np.abs(x32[key]["x"][fin] - a[fin]))) if fin.any() else 0.0
        flat = np.where(np.isfinite(a), np.abs(a), np.inf).reshape(-1)
        for i in np.nonzero(flat <= KINK_NOISE * err)[0].tolist():
            if i not in flips.get(key, ()):
                out.append((flat[i] / err, key, i, a.shape))
    return sorted(out, key=lambda c: c[0])


def explain_kinks(model, init, X, got, rows, fails, x64, x32):
    """netc failing where the reference has an input within float32 noise of a
    relu/leaky_relu kink: at the first failing step, re-run the reference with
    the derivative at each of the closest such inputs (kink_candidates) taken
    on the other side (in the float32 run too, whose difference sets the
    tolerance), keep the flip that brings netc closest (when one does), and
    repeat (at most KINK_ROUNDS flips). Returns the final rows, failures
    and one note per flip kept."""
    flips, notes = {}, []
    for _ in range(KINK_ROUNDS):
        if not fails:
            break
        k0 = min(k for k, _ in fails)
        cands = [c for c in kink_candidates(x64, x32, flips) if c[1][0] <= k0][:KINK_TRIES]
        base, best = badness(rows, k0), None
        for c in cands:
            trial = {key: dict(v) for key, v in flips.items()}
            rec = x64[c[1]]  # the choice forced: the other side of the reference's
            other = (rec["slope"] if rec["x"].reshape(-1)[c[2]] > 0 else 1.0) if "slope" in rec else \
                int(rec["second"].reshape(-1)[c[2]])
            trial.setdefault(c[1], {})[c[2]] = other
            t = twin.run_twin(model, init, X, k0, torch.float64, flips=trial)
            t32 = twin.run_twin(model, init, X, k0, torch.float32, flips=trial)
            b = badness(compare(model, got, t, f32_noise(t, t32), [k0])[0], k0)
            if b < base and (best is None or b < best[0]):
                best = (b, c, trial)
        if best is None:
            break
        _, (r, key, i, shape), flips = best
        notes.append(f"step {key[0]} {key[1]}: kinked call {key[2]} (relu, leaky_relu or max pooling), input "
                     f"{[int(j) for j in np.unravel_index(i, shape)]} of {list(shape)}, {r:.2f} x PyTorch float32's "
                     f"largest error on that input from the kink: netc's derivative there is the other side's "
                     f"(pooling: the window's second largest input); compared with the reference that takes it too")
        x64, x32 = {}, {}
        ref = twin.run_twin(model, init, X, max(STEPS), torch.float64, flips=flips, record=x64)
        f32 = twin.run_twin(model, init, X, max(STEPS), torch.float32, flips=flips, record=x32)
        rows, fails = compare(model, got, ref, f32_noise(ref, f32), STEPS)
    return rows, fails, notes


def check(model, netc, work):
    torch.manual_seed(0)
    init, X, got = netc_side(model, netc, work)
    ref = twin.run_twin(model, init, X, max(STEPS), torch.float64)
    f32 = twin.run_twin(model, init, X, max(STEPS), torch.float32)
    rows, fails = compare(model, got, ref, f32_noise(ref, f32), STEPS)
    notes = []
    if fails:  # the kinked activations' inputs, kept only when they are needed
        x64, x32 = {}, {}
        twin.run_twin(model, init, X, max(STEPS), torch.float64, record=x64)
        twin.run_twin(model, init, X, max(STEPS), torch.float32, record=x32)
        rows, fails, notes = explain_kinks(model, init, X, got, rows, fails, x64, x32)
    worst = {k: max((r for r in rows if r[0] == k), key=lambda r: (r[3] < NOISE, r[2] / r[4])) for k in STEPS}
    return rows, worst, [f for _, f in fails], notes


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--netc", default=os.path.join(ROOT, "build", "netc"))
    ap.add_argument("--work", help="keep the files here (default: a temporary directory)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("-v", "--verbose", action="store_true", help="every tensor's differences")
    ap.add_argument("--models-file", action="append", default=[], help="also load the models of this file")
    ap.add_argument("models", nargs="*")
    a = ap.parse_args()
    torch.set_num_threads(1)
    models = load_models(a.models_file)
    if a.models:
        unknown = set(a.models) - {m.name for m in models}
        if unknown:
            sys.exit(f"crosscheck: unknown model(s) {', '.join(sorted(unknown))}; "
                     f"known: {', '.join(m.name for m in models)}")
        models = [m for m in models if m.name in a.models]
    base = a.work or tempfile.mkdtemp(prefix="netc-torch-")
    netc = os.path.abspath(a.netc)

    def one(m):
        work = os.path.join(base, m.name)
        os.makedirs(work, exist_ok=True)
        try:
            return m, check(m, netc, work), None
        except Exception as e:  # a failed build or run is a failure of that model
            return m, None, f"{type(e).__name__}: {e}"

    print(f"PyTorch {torch.__version__}; reference float64; a tensor passes when netc's max |diff| / max |ref| "
          f"<= max(tol, 10 x PyTorch float32's)")
    print(f"noise: tensors whose exact value is 0 up to rounding (PyTorch float32 differs from float64 by more "
          f"than {NOISE:g} of their largest value,\ne.g. the gradient of a bias before batch norm): checked, not in "
          f"the max columns")
    print(f"{'model':18s} {'step':>4s} {'tensors':>7s} {'noise':>5s} {'netc max':>9s} {'torch32':>9s}  "
          f"worst tensor, noise aside (netc / tolerance)")
    failed = []
    with concurrent.futures.ThreadPoolExecutor(max(1, a.jobs)) as ex:
        for m, res, err in ex.map(one, models):
            if err:
                print(f"{m.name:18s} error: {err}")
                failed.append(m.name)
                continue
            rows, worst, fails, notes = res
            for k in STEPS:
                rk = [r for r in rows if r[0] == k]
                real = [r for r in rk if r[3] < NOISE] or [(0, "", 0.0, 0.0, 1, True)]
                w = worst[k]
                print(f"{m.name:18s} {k:4d} {len(rk):7d} {len(rk) - len(real):5d} {max(r[2] for r in real):9.2e} "
                      f"{max(r[3] for r in real):9.2e}  {w[1]} ({w[2]:.1e} / {w[4]:.1e})")
            if a.verbose:
                for k, name, dn, dt, tol, ok in rows:
                    print(f"    step {k} {name:60s} netc {dn:.2e} torch32 {dt:.2e} tol {tol:.1e}"
                          f"{'' if ok else '  FAIL'}")
            for n in notes:
                print(f"  kink {m.name}: {n}")
            for f in fails:
                print(f"  FAIL {m.name}: {f}")
            if fails:
                failed.append(m.name)
    if failed:
        print(f"crosscheck: {len(failed)} of {len(models)} models differ from PyTorch: {', '.join(failed)}"
              + (f" (files in {base})" if a.work else ""))
        return 1
    print(f"crosscheck: all {len(models)} models agree with PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
