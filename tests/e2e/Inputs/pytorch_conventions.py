#!/usr/bin/env python3
"""tests/e2e/Inputs/pytorch_conventions.py -- the data and the checks of
pytorch_conventions.test. `data DIR` writes x.npy/y.npy (and x.csv, y.csv, an
IDX x.idx.gz); `check INIT STEP1` checks one step of bn_adam.net from INIT
against numpy: batch norm's running_var takes the unbiased batch variance
(PyTorch), and Adam's first update is lr times the gradient's sign to float32
rounding (exact bias corrections)."""
import gzip
import json
import struct
import sys

import numpy as np


def st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    h = json.loads(data[8:8 + n])
    return {k: np.frombuffer(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], "<f4")
            .reshape(v["shape"]) for k, v in h.items() if k != "__metadata__"}


if sys.argv[1] == "data":
    d = sys.argv[2]
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((16, 4)) * 3 + 1).astype(np.float32)
    y = rng.integers(0, 3, 16).astype(np.int32)
    np.save(f"{d}/x.npy", x)
    np.save(f"{d}/y.npy", y)
    np.savetxt(f"{d}/x.csv", x, fmt="%.9g", delimiter=",")
    np.savetxt(f"{d}/y.csv", y, fmt="%d")
    hdr = struct.pack(">BBBB", 0, 0, 0x0D, 2) + struct.pack(">II", 16, 4)
    with gzip.open(f"{d}/x.idx.gz", "wb") as f:
        f.write(hdr + x.astype(">f4").tobytes())
    sys.exit(0)

init, s1 = st(sys.argv[2]), st(sys.argv[3])
x = np.load(sys.argv[4]).astype(np.float64)
h = x @ init["bn_adam.dense0.w"] + init["bn_adam.dense0.b"]
var_unbiased = h.var(axis=0, ddof=1)
got = s1["bn_adam.batchnorm0.running_var"]  # momentum=1: the batch's statistic itself
err = np.max(np.abs(got - var_unbiased) / var_unbiased)
print(f"running_var relative error {err:.2e} (biased would be {1 - 15 / 16:.2e} off)")
assert err < 1e-5, (got, var_unbiased)
# Adam: w starts at 0 (zeros init) and its gradient is not 0, so the first update is -lr * sign(g).
w = s1["w"]
rel = np.max(np.abs(np.abs(w) - 0.001) / 0.001)
print(f"first Adam update: max relative error {rel:.2e} (float32 bias corrections gave 6.4e-6)")
assert rel < 1e-6, w
