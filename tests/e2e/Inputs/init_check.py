#!/usr/bin/env python3
"""tests/e2e/Inputs/init_check.py -- the initial weights of init_pytorch.net
(a checkpoint saved with --max-steps 0) follow torch.nn's defaults: nn.Linear
and nn.Conv2d/ConvTranspose2d weights and biases U(+-1/sqrt(fan_in)) (fan_in of
the weight as torch computes it), nn.LSTM's every tensor U(+-1/sqrt(hidden)),
batch norm 1 and 0. Each uniform tensor must stay within its bound, be nonzero,
and reach past 80% of it when it has 50 values or more (Glorot's bounds and
zero biases do not)."""
import json
import struct
import sys

import numpy as np

data = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", data[:8])[0]
h = json.loads(data[8:8 + n])
t = {k: np.frombuffer(data[8 + n + v["data_offsets"][0]:8 + n + v["data_offsets"][1]], "<f4").reshape(v["shape"])
     for k, v in h.items() if k != "__metadata__"}
bounds = {
    "initpt.conv2d0.w": 1 / np.sqrt(3 * 3 * 3), "initpt.conv2d0.b": 1 / np.sqrt(3 * 3 * 3),
    "initpt.conv2d_transpose0.w": 1 / np.sqrt(4 * 3 * 3), "initpt.conv2d_transpose0.b": 1 / np.sqrt(4 * 3 * 3),
    "initpt.dense0.w": 1 / np.sqrt(256), "initpt.dense0.b": 1 / np.sqrt(256),
    "initpt.lstm0.weight_ih_l0": 1 / np.sqrt(6), "initpt.lstm0.weight_hh_l0": 1 / np.sqrt(6),
    "initpt.lstm0.bias_ih_l0": 1 / np.sqrt(6), "initpt.lstm0.bias_hh_l0": 1 / np.sqrt(6),
}
bad = 0
for name, b in bounds.items():
    m = float(np.abs(t[name]).max())
    ok = m <= b and m > (0.8 * b if t[name].size >= 50 else 0)
    print(f"{name:28s} max |v| {m:.4f} bound {b:.4f} {'ok' if ok else 'WRONG'}")
    bad += not ok
for name, v in (("initpt.batchnorm0.gamma", 1), ("initpt.batchnorm0.beta", 0)):
    ok = bool(np.all(t[name] == v))
    print(f"{name:28s} all {v} {'ok' if ok else 'WRONG'}")
    bad += not ok
sys.exit(1 if bad else 0)
