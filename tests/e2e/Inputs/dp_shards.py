#!/usr/bin/env python3
"""tests/e2e/Inputs/dp_shards.py -- the reference of per-rank batch norm: what
each rank of `mpirun -np K PROGRAM train --batch B --seed S` trains on in its
first step, and the mean of single-process runs on those shards.

  dp_shards.py split K B S X Y   writes shard<r>-x, shard<r>-y (r < K): the items
      rank r takes in the first step of the first epoch, from the IDX files X, Y.
      The driver shuffles every epoch with nrt_rng_perm (Philox4x32-10, stream 1
      of seed S; runtime/rng.c, reproduced below) and gives rank r the items
      perm[r*B .. r*B+B) of the first global batch of K*B.
  dp_shards.py mean OUT IN...    writes the safetensors file OUT: every tensor
      the mean of the INs' (one SGD step is linear in the gradient, so the mean
      of K single steps is the step of the mean gradient), but the batch-norm
      running statistics, which are rank 0's, the first IN's."""
import json
import struct
import sys

M64 = (1 << 64) - 1
M32 = (1 << 32) - 1


def philox(ctr, key):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for r in range(10):
        if r:
            k0 = (k0 + 0x9E3779B9) & M32
            k1 = (k1 + 0xBB67AE85) & M32
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & M32, (p0 >> 32) ^ c3 ^ k1, p0 & M32
    return [c0, c1, c2, c3]


class Rng:
    def __init__(self, seed, stream):
        self.key = [seed & M32, seed >> 32]
        self.block = 0
        self.stream = stream
        self.buf = []

    def u32(self):
        if not self.buf:
            b = self.block
            self.buf = philox([b & M32, b >> 32, self.stream & M32, self.stream >> 32], self.key)
            self.block += 1
        return self.buf.pop(0)

    def below(self, n):
        limit = M64 - (M64 % n + 1) % n
        while True:
            x = self.u32() | self.u32() << 32
            if x <= limit:
                return x % n


def perm(n, seed):
    r = Rng(seed, 1)
    p = list(range(n))
    for i in range(n - 1, 0, -1):
        j = r.below(i + 1)
        p[i], p[j] = p[j], p[i]
    return p


def read_idx(path):
    d = open(path, "rb").read()
    magic, = struct.unpack(">I", d[:4])
    rank = magic & 0xFF
    dims = list(struct.unpack(">" + "I" * rank, d[4:4 + 4 * rank]))
    per = 1
    for x in dims[1:]:
        per *= x
    return magic, dims, d[4 + 4 * rank:], per


def write_idx(path, magic, dims, body):
    with open(path, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(">" + "I" * len(dims), *dims) + body)


def split(k, b, seed, xp, yp):
    xs, ys = read_idx(xp), read_idx(yp)
    p = perm(xs[1][0], seed)
    for r in range(k):
        items = p[r * b:(r + 1) * b]
        for (magic, dims, body, per), name in ((xs, "x"), (ys, "y")):
            part = b"".join(body[i * per:(i + 1) * per] for i in items)
            write_idx(f"shard{r}-{name}", magic, [len(items)] + dims[1:], part)


def read_st(path):
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    return json.loads(data[8:8 + n]), data[8 + n:]


def mean(out, ins):
    header, body = read_st(ins[0])
    others = [read_st(p) for p in ins[1:]]
    body = bytearray(body)
    for name, t in header.items():
        if name == "__metadata__" or "running" in name or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        cnt = (b - a) // 4
        vals = list(struct.unpack(f"<{cnt}f", body[a:b]))
        for h, d in others:
            oa, ob = h[name]["data_offsets"]
            vals = [v + w for v, w in zip(vals, struct.unpack(f"<{cnt}f", d[oa:ob]))]
        body[a:b] = struct.pack(f"<{cnt}f", *[v / len(ins) for v in vals])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + bytes(body))


if sys.argv[1] == "split":
    split(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
elif sys.argv[1] == "mean":
    mean(sys.argv[2], sys.argv[3:])
else:
    sys.exit(__doc__)
