# tests/bad/cl_device.test.py -- compares the OpenCL and C runs of
# cl_device.test: the final loss and every tensor of the two checkpoints
# (safetensors, read without numpy) within 1e-4 relative.
import json
import struct
import sys


def tensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        lo, hi = t["data_offsets"]
        raw = data[8 + n + lo:8 + n + hi]
        fmt = "<%d%s" % (len(raw) // 4, "f" if t["dtype"] == "F32" else "i")
        out[name] = struct.unpack(fmt, raw)
    return out


def close(a, b):
    return abs(a - b) <= 1e-4 * max(1.0, abs(a), abs(b))


cl_m, c_m, cl_st, c_st = sys.argv[1:5]
a = json.loads(open(cl_m).readlines()[-1])["loss"]
b = json.loads(open(c_m).readlines()[-1])["loss"]
assert close(a, b), ("loss", a, b)
ta, tb = tensors(cl_st), tensors(c_st)
assert sorted(ta) == sorted(tb), (sorted(ta), sorted(tb))
for name in ta:
    for x, y in zip(ta[name], tb[name]):
        assert close(x, y), (name, x, y)
print("loss and parameters agree:", a, b, len(ta), "tensors")
