"""Writes small uncompressed IDX slices of Fashion-MNIST for the data-parallel
tests: train-x/train-y with the first N training items and test-x/test-y with
the first M test items (default 1000 and 500), in the current directory.

usage: python3 dp_data.py [N] [M]"""
import gzip
import struct
import sys

SRC = "/usr/share/datasets/fashion-mnist/"


def slice_idx(src, dst, count):
    data = gzip.open(SRC + src).read()
    magic, = struct.unpack(">I", data[:4])
    rank = magic & 0xFF
    dims = list(struct.unpack(">" + "I" * rank, data[4:4 + 4 * rank]))
    per = 1
    for d in dims[1:]:
        per *= d
    head = 4 + 4 * rank
    dims[0] = count
    with open(dst, "wb") as f:
        f.write(struct.pack(">I", magic) + struct.pack(">" + "I" * rank, *dims))
        f.write(data[head:head + count * per])


n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
m = int(sys.argv[2]) if len(sys.argv) > 2 else 500
slice_idx("train-images-idx3-ubyte.gz", "train-x", n)
slice_idx("train-labels-idx1-ubyte.gz", "train-y", n)
slice_idx("t10k-images-idx3-ubyte.gz", "test-x", m)
slice_idx("t10k-labels-idx1-ubyte.gz", "test-y", m)
