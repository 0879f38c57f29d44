"""tests/e2e/Inputs/pngs.py -- writes Fashion-MNIST test images 0..COUNT-1 as 8-bit
gray PNG files img_NNN.png in the current directory (for embed.test)."""
import gzip
import struct
import sys
import zlib

count = int(sys.argv[1]) if len(sys.argv) > 1 else 20
raw = gzip.open("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz").read()


def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body) & 0xffffffff)


for i in range(count):
    px = raw[16 + 784 * i:16 + 784 * (i + 1)]
    rows = b"".join(b"\0" + px[28 * r:28 * (r + 1)] for r in range(28))
    png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 28, 28, 8, 0, 0, 0, 0)) +
           chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    with open(f"img_{i:03d}.png", "wb") as f:
        f.write(png)
