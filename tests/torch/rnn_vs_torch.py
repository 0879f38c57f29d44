#!/usr/bin/env python3
"""tests/torch/rnn_vs_torch.py -- netc's recurrent layers against PyTorch's
nn.LSTM / nn.GRU / nn.RNN from identical weights: for each configuration
(cells, bidirectional, stacked, return_sequences, padded batches with lengths)
it builds a small .net model whose loss is mse(layer(x), y), writes the same
random weights into a netc checkpoint (PyTorch's tensor names, netc's
documented mapping: <net>.<layer><k>.weight_ih_l0 ... = PyTorch's state_dict),
runs one SGD step (lr = 1024, so that the update's rounding hides no gradient
digits) with the netc program and with PyTorch, and compares the loss and the
gradient of every tensor ((old weight - new weight) / 1024) in float32 noise:
|netc - torch| <= 1e-5 * max|torch| + 1e-7 per tensor; the loss to 1e-5
(netc prints it with 6 digits).

usage: rnn_vs_torch.py NETC [WORKDIR]     (run with a Python that has torch)
Prints one line per configuration and `all ok`; exits 1 on a mismatch."""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn

N, T, F = 5, 7, 3

# (name, layer in the .net file, torch module factory, what is compared, uses lengths)
CASES = [
    ("lstm", "lstm(6)", lambda: nn.LSTM(F, 6, batch_first=True), "last", False),
    ("gru", "gru(5)", lambda: nn.GRU(F, 5, batch_first=True), "last", False),
    ("rnn tanh", "rnn(4)", lambda: nn.RNN(F, 4, batch_first=True), "last", False),
    ("rnn relu, sequences", 'rnn(4, activation="relu", return_sequences=true)',
     lambda: nn.RNN(F, 4, nonlinearity="relu", batch_first=True), "seq", False),
    ("lstm bidirectional", "lstm(5, bidirectional=true)",
     lambda: nn.LSTM(F, 5, batch_first=True, bidirectional=True), "last", False),
    ("gru 2 layers bidirectional, sequences", "gru(4, layers=2, bidirectional=true, return_sequences=true)",
     lambda: nn.GRU(F, 4, num_layers=2, batch_first=True, bidirectional=True), "seq", False),
    ("lstm 3 layers", "lstm(4, layers=3)", lambda: nn.LSTM(F, 4, num_layers=3, batch_first=True), "last", False),
    ("lstm lengths", "lstm(6, lengths=len)", lambda: nn.LSTM(F, 6, batch_first=True), "last", True),
    ("gru bidirectional lengths", "gru(5, bidirectional=true, lengths=len)",
     lambda: nn.GRU(F, 5, batch_first=True, bidirectional=True), "last", True),
    ("lstm 2 layers bidirectional lengths", "lstm(3, layers=2, bidirectional=true, lengths=len)",
     lambda: nn.LSTM(F, 3, num_layers=2, batch_first=True, bidirectional=True), "last", True),
]


def torch_out(mod, x, lengths, what):
    """The layer's output as netc defines it."""
    if lengths is not None:
        packed = nn.utils.rnn.pack_padded_sequence(x, torch.tensor(lengths), batch_first=True, enforce_sorted=False)
        out, hn = mod(packed)
    else:
        out, hn = mod(x)
    if what == "seq":
        return out
    h = hn[0] if isinstance(hn, tuple) else hn  # [layers * dirs, N, H]
    if mod.bidirectional:
        return torch.cat([h[-2], h[-1]], dim=1)  # netc: forward final state, then reverse
    return h[-1]


def st_write(path, tensors, meta):
    """A safetensors file of f32 tensors (name -> np.ndarray) and metadata."""
    header, blobs, at = {"__metadata__": meta}, [], 0
    for name in sorted(tensors):
        a = np.asarray(tensors[name], dtype=np.float32, order="C")
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [at, at + a.nbytes]}
        blobs.append(a.tobytes())
        at += a.nbytes
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, d in header.items():
        lo, hi = d["data_offsets"]
        out[name] = np.frombuffer(b[8 + n + lo:8 + n + hi], dtype=np.float32).reshape(d["shape"]).copy()
    return out, meta


def run_case(netc, work, k, case):
    name, layer, make, what, use_len = case
    d = os.path.join(work, "case%d" % k)
    os.makedirs(d, exist_ok=True)
    rng = np.random.default_rng(100 + k)
    torch.manual_seed(100 + k)
    mod = make()
    x = rng.standard_normal((N, T, F)).astype(np.float32)
    lengths = rng.integers(1, T + 1, size=N).astype(np.int32) if use_len else None
    with torch.no_grad():
        out_shape = tuple(torch_out(mod, torch.from_numpy(x), lengths, what).shape)
    y = rng.standard_normal(out_shape).astype(np.float32)
    np.save(os.path.join(d, "x.npy"), x)
    np.save(os.path.join(d, "y.npy"), y)
    inputs = "input x : f32[N, %d, %d]\n" % (T, F)
    data = 'npy("x.npy", "y.npy")'
    if use_len:
        np.save(os.path.join(d, "len.npy"), lengths)
        inputs += "input len : i32[N]\n"
        data = 'npy("x.npy", "len.npy", "y.npy")'
    inputs += "input y : f32[N, %s]\n" % ", ".join(str(v) for v in out_shape[1:])
    src = ("model m\n%sout = x -> %s\nloss mse(out, y)\ntrain {\n    optimizer sgd(lr=1024)\n    batch %d\n"
           "    data %s\n}\n" % (inputs, layer, N, data))
    open(os.path.join(d, "m.net"), "w").write(src)
    prog = os.path.join(d, "m")
    subprocess.run([netc, "build", os.path.join(d, "m.net"), "-o", prog], check=True, capture_output=True)
    # netc's checkpoint names: the layout (and its hash) from a first run, the weights from PyTorch
    subprocess.run([prog, "train", "--max-steps", "1", "--save", "first.st", "--quiet"], cwd=d, check=True,
                   capture_output=True)
    ref, meta = st_read(os.path.join(d, "first.st"))
    sd = {kk: v.detach().numpy().copy() for kk, v in mod.state_dict().items()}
    prefix = "m.%s0." % layer.split("(")[0]
    w0 = {}
    for kk in ref:
        if kk.startswith(prefix):
            w0[kk] = sd[kk[len(prefix):]]
            assert w0[kk].shape == ref[kk].shape, (kk, w0[kk].shape, ref[kk].shape)
        else:
            w0[kk] = ref[kk]  # the learning rate
    missing = set(sd) - {kk[len(prefix):] for kk in ref if kk.startswith(prefix)}
    assert not missing, "netc has no tensor for %s" % sorted(missing)
    meta = dict(meta, **{"netc.step": "0", "netc.epoch": "0"})
    st_write(os.path.join(d, "w0.st"), w0, meta)
    subprocess.run([prog, "train", "--load", "w0.st", "--max-steps", "1", "--save", "w1.st", "--metrics", "m.jsonl",
                    "--quiet"], cwd=d, check=True, capture_output=True)
    w1, _ = st_read(os.path.join(d, "w1.st"))
    netc_loss = json.loads(open(os.path.join(d, "m.jsonl")).readline())["loss"]

    out = torch_out(mod, torch.from_numpy(x), lengths, what)
    loss = nn.functional.mse_loss(out, torch.from_numpy(y))
    loss.backward()
    worst = 0.0
    ok = abs(netc_loss - loss.item()) <= 1e-5 * max(1.0, abs(loss.item()))
    for pname, p in mod.named_parameters():
        g_netc = (w0[prefix + pname].astype(np.float64) - w1[prefix + pname]) / 1024
        g_t = p.grad.numpy()
        err = np.abs(g_netc - g_t).max()
        scale = np.abs(g_t).max()
        worst = max(worst, err / max(scale, 1e-12))
        if err > 1e-5 * scale + 1e-7:
            ok = False
            print("  %s: %s gradient differs by %.3g (max |grad| %.3g)" % (name, pname, err, scale))
    print("%-40s loss netc %.6f torch %.6f  worst gradient error %.2e (relative to max |grad|)  %s" %
          (name, netc_loss, loss.item(), worst, "ok" if ok else "FAILED"))
    return ok


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    netc = os.path.abspath(sys.argv[1])
    work = sys.argv[2] if len(sys.argv) > 2 else tempfile.mkdtemp(prefix="netc-torch-rnn-")
    torch.set_num_threads(1)
    ok = all([run_case(netc, work, k, c) for k, c in enumerate(CASES)])
    print("all ok" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
