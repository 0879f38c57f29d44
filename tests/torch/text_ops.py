#!/usr/bin/env python3
"""tests/torch/text_ops.py -- netc's token and sequence layers against PyTorch
from identical weights: nn.Embedding (F.embedding), cross-entropy with
ignore_index over [N, T, C] logits, masked mean/max pooling over time, one_hot,
the masked accuracy, and dense on [N, T, H] (the last axis, as nn.Linear).

Self-contained (it predates the shared harness of tests/torch/crosscheck.py):
for each model below, fixed random token data (id 0 = padding, anywhere in a
sequence, so masks and ignored targets are exercised) are written as the .npy
files the models' data sources name; `netc build`; one `train --max-steps 1 --save` gives the checkpoint's
tensor list, whose parameters this script replaces by its own seeded values
(init.safetensors, step 0); netc then trains one SGD step (lr 1) from it. The
PyTorch twin computes the same loss and gradients from init.safetensors in
float64 (the reference) and float32. Compared: every parameter's gradient,
(init - after) / lr on netc's side, as max |g - ref| / max |ref|, which must be
within max(2e-6, 10 x PyTorch float32's own error); the loss and the accuracy
printed by --metrics (6 significant digits) within 1e-5 relative.

usage: text_ops.py [--netc build/netc] [--work DIR] [-v]
Exit status 1 when a model disagrees. Needs torch and numpy (the venv of
bench/bench.py: /work/venv-torch/bin/python tests/torch/text_ops.py)."""
import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LR = 1.0


# ------------------------------------------------------------ safetensors

def st_read(path):
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        dt = {"F32": "<f4", "I32": "<i4"}[t["dtype"]]
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype=dt).reshape(t["shape"]).copy()
    return out, meta


def st_write(path, tensors, meta):
    header, blobs, off = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        a = np.array(tensors[name], order="C")  # (ascontiguousarray would make scalars 1-d)
        dt = {np.dtype("<f4"): "F32", np.dtype("<i4"): "I32"}[a.dtype.newbyteorder("<")]
        raw = a.astype(a.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dt, "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ------------------------------------------------------- layers, the twins

def embedding(P, pre, ids):
    return F.embedding(ids, P[pre + ".w"])


def dense(P, pre, x):
    return x @ P[pre + ".w"] + P[pre + ".b"]


def masked_mean(h, ids):
    m = (ids != 0).to(h.dtype).unsqueeze(-1)
    return (h * m).sum(1) / m.sum(1).clamp(min=1)


def masked_max(h, ids):
    m = (ids != 0).unsqueeze(-1)
    v = h.masked_fill(~m, float("-inf")).max(1).values  # gradient to the first maximum
    return torch.where(m.any(1), v, torch.zeros_like(v))


def ce_ignore(logits, target, ignore):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), ignore_index=ignore)


def acc_ignore(logits, target, ignore):
    keep = target != ignore
    hit = (logits.argmax(-1) == target) & keep
    return hit.sum().item() / max(keep.sum().item(), 1)


MODELS = [
    # A bigram language model: [N, T, V] logits straight from an embedding, targets
    # [N, T] with padding (0) ignored.
    dict(name="bigram", batch=8, inputs=[("text", (6,), 7), ("next", (6,), 7)], net="""model bigram
input text : i32[N, 6]
input next : i32[N, 6]
logits = text -> embedding(7, 7)
loss cross_entropy(logits, next, ignore_index=0)
metric accuracy(logits, next, ignore_index=0)
train {
    optimizer sgd(lr=1)
    batch 8
    data npy("text.npy", "next.npy")
}
""", loss=lambda P, X: ce_ignore(embedding(P, "bigram.embedding0", X["text"]), X["next"], 0),
         acc=lambda P, X: acc_ignore(embedding(P, "bigram.embedding0", X["text"]), X["next"], 0)),
    # Masked pooling over time of embeddings and one-hot rows, into a classifier;
    # ignore_index on rank-2 logits skips class 2.
    dict(name="pooled", batch=8, inputs=[("text", (5,), 6), ("label", (), 4)], net="""model pooled
input text : i32[N, 5]
input label : i32[N]
h = text -> embedding(6, 4) tanh
o = one_hot(text, 6)
logits = concat(1, mean_over_time(h), max_over_time(h), mean_over_time(o)) -> dense(4)
loss cross_entropy(logits, label, ignore_index=2)
metric accuracy(logits, label, ignore_index=2)
train {
    optimizer sgd(lr=1)
    batch 8
    data npy("text.npy", "label.npy")
}
""", loss=lambda P, X: ce_ignore(pooled(P, X), X["label"], 2), acc=lambda P, X: acc_ignore(pooled(P, X), X["label"], 2)),
    # dense on [N, T, H] acts on the last axis (PyTorch's Linear): a language model's
    # output layer.
    dict(name="seqdense", batch=8, inputs=[("text", (6,), 7), ("next", (6,), 7)], net="""model seqdense
input text : i32[N, 6]
input next : i32[N, 6]
logits = text -> embedding(7, 5) tanh dense(7)
loss cross_entropy(logits, next, ignore_index=0)
metric accuracy(logits, next, ignore_index=0)
train {
    optimizer sgd(lr=1)
    batch 8
    data npy("text.npy", "next.npy")
}
""", loss=lambda P, X: ce_ignore(seqdense(P, X), X["next"], 0), acc=lambda P, X: acc_ignore(seqdense(P, X), X["next"], 0)),
]


def seqdense(P, X):
    return dense(P, "seqdense.dense0", torch.tanh(embedding(P, "seqdense.embedding0", X["text"])))


def pooled(P, X):
    ids = X["text"]
    h = torch.tanh(embedding(P, "pooled.embedding0", ids))
    o = F.one_hot(ids, 6).to(h.dtype)
    return dense(P, "pooled.dense0", torch.cat([masked_mean(h, ids), masked_max(h, ids), masked_mean(o, ids)], 1))


# ------------------------------------------------------------------ checks

def run(cmd, cwd):
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"text_ops: {' '.join(cmd)} failed:\n{r.stdout}{r.stderr}")
    return r.stdout


def twin(model, init, X, dtype):
    P = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in init.items() if k.startswith(model["name"] + ".")}
    Xt = {k: torch.tensor(v, dtype=torch.int64) for k, v in X.items()}
    loss = model["loss"](P, Xt)
    loss.backward()
    return float(loss.detach()), {k: p.grad.double().numpy() for k, p in P.items()}, model["acc"](P, Xt)


def check(model, netc, work, verbose):
    d = os.path.join(work, model["name"])
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(7)
    X, files = {}, []
    for name, shape, k in model["inputs"]:
        X[name] = rng.integers(0, k, (model["batch"],) + shape).astype(np.int32)
        files.append(os.path.join(d, name + ".npy"))
        np.save(files[-1], X[name])
    with open(os.path.join(d, "m.net"), "w") as f:
        f.write(model["net"])
    run([netc, "build", "m.net", "-o", "prog"], d)
    data = ["--quiet", "--threads", "1"]  # the data sources of the .net files, in d
    run(["./prog", "train", "--max-steps", "1", "--save", "first.safetensors"] + data, d)
    tensors, meta = st_read(os.path.join(d, "first.safetensors"))
    init = {}
    for k, v in tensors.items():  # parameters: our own values; state (the lr) as it is
        init[k] = (rng.standard_normal(v.shape) * 0.7).astype(np.float32) if k.startswith(model["name"] + ".") else v
    meta = dict(meta, **{"netc.step": "0", "netc.epoch": "0"})
    st_write(os.path.join(d, "init.safetensors"), init, meta)
    run(["./prog", "train", "--load", "init.safetensors", "--max-steps", "1", "--save", "after.safetensors",
         "--metrics", "m.jsonl"] + data, d)
    after, _ = st_read(os.path.join(d, "after.safetensors"))
    with open(os.path.join(d, "m.jsonl")) as f:
        metrics = json.loads(f.readline())
    l64, g64, a64 = twin(model, init, X, torch.float64)
    l32, g32, _ = twin(model, init, X, torch.float32)
    ok = True
    lerr = abs(metrics["loss"] - l64) / abs(l64)
    aerr = abs(metrics["train_accuracy"] - a64)
    print(f"{model['name']}: loss netc {metrics['loss']:.6g} torch {l64:.9g} (rel {lerr:.1e}); accuracy netc "
          f"{metrics['train_accuracy']:.6g} torch {a64:.6g}")
    ok &= lerr <= 1e-5 and aerr <= 1e-5
    for k in sorted(g64):
        g = (init[k].astype(np.float64) - after[k].astype(np.float64)) / LR
        scale = np.abs(g64[k]).max()
        err = np.abs(g - g64[k]).max() / scale
        own = np.abs(g32[k] - g64[k]).max() / scale
        # netc's gradient is read through w - lr g in float32: its rounding
        # (half an ulp of |w|, relative to the gradient's scale) is noise too.
        read = np.abs(init[k]).max() * 2.0 ** -24 / LR / scale
        tol = max(2e-6, 10 * own, 4 * read)
        good = err <= tol
        ok &= good
        if verbose or not good:
            print(f"  grad {k} {list(g.shape)}: max rel err {err:.2e} (torch f32 {own:.2e}, tol {tol:.1e})"
                  f"{'' if good else '  DIFFERS'}")
    print(f"{model['name']}: {'ok' if ok else 'FAILED'}")
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--netc", default=os.path.join(ROOT, "build", "netc"))
    ap.add_argument("--work")
    ap.add_argument("-v", action="store_true")
    a = ap.parse_args()
    netc = os.path.abspath(a.netc)
    work = a.work or tempfile.mkdtemp(prefix="netc-text-ops-")
    ok = all([check(m, netc, work, a.v) for m in MODELS])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
