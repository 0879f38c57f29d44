"""Writes image inputs for predict.test into the current directory from test image
INDEX of Fashion-MNIST: one.npy (the reference), one.pgm (P5), one_ascii.pgm (P2
with a comment), one.png (8-bit gray), one_rgb.png (8-bit RGB, equal channels),
big.pgm and big.png (32x32), and broken files: truncated PGM and PNG, a PNG whose
data is garbage, a PGM with a bad header, a 16-bit PGM."""
import gzip
import struct
import sys
import zlib

import numpy as np

index = int(sys.argv[1]) if len(sys.argv) > 1 else 0
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()
img = np.frombuffer(raw[16 + 784 * index:16 + 784 * (index + 1)], dtype=np.uint8).reshape(28, 28)
np.save("one.npy", img.reshape(1, 28, 28))


def pgm(a):
    h, w = a.shape
    return b"P5\n%d %d\n255\n" % (w, h) + a.tobytes()


def png(a, rgb=False):
    h, w = a.shape[:2]
    if rgb:
        a = np.stack([a, a, a], axis=-1)
    rows = b"".join(b"\0" + a[y].tobytes() for y in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2 if rgb else 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(rows))
            + chunk(b"IEND", b""))


files = {
    "one.pgm": pgm(img),
    "one_ascii.pgm": b"P2\n# Fashion-MNIST test image\n28 28\n255\n"
    + b"\n".join(b" ".join(b"%d" % v for v in row) for row in img) + b"\n",
    "one.png": png(img),
    "one_rgb.png": png(img, rgb=True),
    "big.pgm": pgm(np.zeros((32, 32), np.uint8)),
    "big.png": png(np.zeros((32, 32), np.uint8)),
    "trunc.pgm": pgm(img)[:500],
    "trunc.png": png(img)[:300],
    "garbage.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "badheader.pgm": b"P5\n28 x28\n255\n" + img.tobytes(),
    "deep.pgm": b"P5\n28 28\n65535\n" + img.astype(">u2").tobytes(),
}
for name, data in files.items():
    with open(name, "wb") as f:
        f.write(data)
