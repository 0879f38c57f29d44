#!/usr/bin/env python3
"""tests/fuzz/make_seeds.py NETC -- writes the seed corpora of the fuzz targets
into tests/fuzz/corpus/<target>/: the examples and diagnostic tests (.net), their
IR dumps and the IR tests cut at `// -----` (.ir), a small checkpoint, and small
valid .npy, IDX, CSV, PGM and PNG files made here (numpy and zlib only). Run it
again after a format changes; the files are committed, each well under 10 KB."""
import glob, gzip, os, shutil, struct, subprocess, sys, zlib

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
netc = sys.argv[1] if len(sys.argv) > 1 else os.path.join(root, "build", "netc")
corpus = os.path.join(here, "corpus")


def out(target, name, data):
    d = os.path.join(corpus, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


for t in ["net", "ir", "ckpt", "npy", "idx", "idx_gz", "csv", "image", "array", "text"]:
    shutil.rmtree(os.path.join(corpus, t), ignore_errors=True)

# .net: every example and diagnostic test
for p in sorted(glob.glob(os.path.join(root, "examples", "*.net")) + glob.glob(os.path.join(root, "tests", "diag", "*.net"))):
    out("net", os.path.basename(os.path.dirname(p)) + "-" + os.path.basename(p), open(p, "rb").read())

# .ir: the IR tests cut into cases, and the dump of the small examples
for p in sorted(glob.glob(os.path.join(root, "tests", "ir", "*.ir"))):
    for i, case in enumerate(open(p).read().split("// -----")):
        out("ir", "%s-%d.ir" % (os.path.basename(p)[:-3], i), case)
for ex in ["linear_regression", "mlp_regression", "mlp"]:
    ir = subprocess.run([netc, "dump", os.path.join(root, "examples", ex + ".net")], check=True,
                        capture_output=True).stdout
    out("ir", ex + ".ir", ir)


# checkpoints: safetensors written here (header JSON + data), several dtypes
def safetensors(tensors, meta):
    hdr, data = {}, b""
    for name, arr, dt in tensors:
        b = arr.tobytes()
        hdr[name] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [len(data), len(data) + len(b)]}
        data += b
    if meta:
        hdr["__metadata__"] = meta
    import json
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


out("ckpt", "small.safetensors", safetensors(
    [("net.dense0.w", np.arange(6, dtype="<f4").reshape(2, 3), "F32"),
     ("net.dense0.b", np.zeros(3, dtype="<f4"), "F32"),
     ("opt.step", np.array([7], dtype="<i4"), "I32")],
    {"netc.model": "m", "netc.layout": "0123456789abcdef", "netc.step": "7", "netc.epoch": "1"}))
out("ckpt", "dtypes.safetensors", safetensors(
    [("a", np.array([1.5, -2], dtype="<f8"), "F64"), ("b", np.array([[1, 2]], dtype="<i8"), "I64"),
     ("c", np.array([1, 0, 1], dtype="u1"), "BOOL"), ("d", np.array(3, dtype="<f2"), "F16"),
     ("e", np.zeros((0, 4), dtype="<f4"), "F32")], None))
out("ckpt", "empty.safetensors", safetensors([], None))


# .npy: every supported dtype, versions 1 and 2
def npy(arr, version=1):
    import io
    f = io.BytesIO()
    np.lib.format.write_array(f, arr, version=(version, 0))
    return f.getvalue()


out("npy", "f4.npy", npy(np.linspace(0, 1, 12, dtype="<f4").reshape(3, 4)))
out("npy", "f8.npy", npy(np.array([0.5, 255.0], dtype="<f8")))
out("npy", "i4.npy", npy(np.array([0, 3, 9], dtype="<i4")))
out("npy", "i8.npy", npy(np.array([[1, 2], [3, 4]], dtype="<i8")))
out("npy", "u1.npy", npy(np.arange(16, dtype="u1").reshape(1, 4, 4)))
out("npy", "i1-v2.npy", npy(np.array([-1, 5], dtype="i1"), version=2))
out("npy", "scalar.npy", npy(np.array(2.0, dtype="<f4")))


# IDX: images u8 [3,4,4], labels u8 [3], and i16/i32/f32/f64/i8 vectors
def idx(arr, code):
    return struct.pack(">BBBB", 0, 0, code, arr.ndim) + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.tobytes()


imgs = (np.arange(48) * 5 % 256).astype("u1").reshape(3, 4, 4)
for name, data in [("images.idx", idx(imgs, 0x08)), ("labels.idx", idx(np.array([0, 9, 3], dtype="u1"), 0x08)),
                   ("i8.idx", idx(np.array([-3, 4], dtype="i1"), 0x09)),
                   ("i16.idx", idx(np.array([300, -2], dtype=">i2"), 0x0B)),
                   ("i32.idx", idx(np.array([[1, 2, 3]], dtype=">i4"), 0x0C)),
                   ("f32.idx", idx(np.array([0.25, 1.0], dtype=">f4"), 0x0D)),
                   ("f64.idx", idx(np.array([2.0], dtype=">f8"), 0x0E))]:
    out("idx", name, data)
    out("idx_gz", name, data)  # fuzz_idx_gz compresses its input itself
out("idx", "images.idx.gz", gzip.compress(idx(imgs, 0x08), mtime=0))

# CSV
out("csv", "plain.csv", "1,2,3\n4,5,6\n")
out("csv", "header.csv", "x,y,label\n0.5,1e-3,1\n-2,3.25,0\n")
out("csv", "quoted.csv", '"1", 2\r\n\n"3" ,4\n')
out("csv", "one.csv", "7\n")


# images: PGM P5 and P2, PNG gray 8-bit, RGB and 16-bit gray
def png(w, h, color_type, depth, raw_rows):
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    ihdr = struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, 0)
    raw = b"".join(b"\x00" + r for r in raw_rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


out("image", "p5.pgm", b"P5\n4 3\n255\n" + bytes(range(0, 240, 20)))
out("image", "p2.pgm", "P2\n# a comment\n3 2\n15\n0 5 10\n15 7 1\n")
out("image", "gray.png", png(4, 2, 0, 8, [bytes([0, 64, 128, 255]), bytes([1, 2, 3, 4])]))
out("image", "rgb.png", png(2, 2, 2, 8, [bytes([255, 0, 0, 0, 255, 0]), bytes([0, 0, 255, 9, 9, 9])]))
out("image", "gray16.png", png(2, 1, 0, 16, [bytes([0x12, 0x34, 0xff, 0xff])]))

# text (fuzz_text): 4 option bytes (mode bits, T, vocabulary, holdout), then texts cut at NUL
def opts(bytes_mode, classify, part, t, vocab, holdout):
    return bytes([bytes_mode | classify << 1 | part << 2, t - 1, vocab - 2, holdout])


out("text", "lm-chars.txt", opts(0, 0, 0, 8, 40, 1) + "To be, or not to be.\nThat is the question.\n".encode())
out("text", "lm-bytes.txt", opts(1, 0, 2, 4, 200, 0) + b"\x1b[31mred\x1b[0m text\r\nline two\n")
out("text", "classify.txt", opts(0, 1, 1, 6, 60, 5) + b"a fortune\n%\nanother one\n%\n\x00" +
    "\u6625\u7720\u4e0d\u89c9\u6653\n%\n\u5904\u5904\u95fb\u557c\u9e1f\n".encode())
out("text", "vocab-meta.txt", opts(0, 0, 0, 2, 10, 0) + b"char:10,32,97,98,99")
out("text", "vocab-bytes.txt", opts(1, 0, 0, 2, 10, 0) + b"byte:0,1,2,255")

# array: the content sniffing sees all of them
for t in ["npy", "idx", "csv", "image"]:
    for p in glob.glob(os.path.join(corpus, t, "*")):
        out("array", t + "-" + os.path.basename(p), open(p, "rb").read())
print("seeds written to", corpus)
