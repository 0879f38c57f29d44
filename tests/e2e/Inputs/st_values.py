#!/usr/bin/env python3
"""tests/e2e/Inputs/st_values.py -- prints NAME=VALUES for tensors of a
safetensors file (float32 only), with --near NAME VALUE TOL checks.
usage: st_values.py FILE [--near NAME VALUE TOL]... [--meta KEY]..."""
import json
import struct
import sys

path = sys.argv[1]
with open(path, "rb") as f:
    data = f.read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
base = 8 + n


def values(name):
    t = header[name]
    a, b = t["data_offsets"]
    return struct.unpack(f"<{(b - a) // 4}f", data[base + a:base + b])


args = sys.argv[2:]
i = 0
while i < len(args):
    if args[i] == "--near":
        name, want, tol = args[i + 1], float(args[i + 2]), float(args[i + 3])
        got = values(name)
        if any(abs(v - want) > tol for v in got):
            sys.exit(f"{name} = {got}, expected {want} +- {tol}")
        print(f"{name} = {', '.join(f'{v:.4f}' for v in got)} (expected {want} +- {tol})")
        i += 4
    elif args[i] == "--meta":
        print(f"{args[i + 1]}={header['__metadata__'].get(args[i + 1])}")
        i += 2
    else:
        sys.exit(f"unknown option {args[i]}")
