#!/usr/bin/env python3
"""tests/e2e/Inputs/opencl_data.py -- small data files for the OpenCL tests, in the
current directory: the first COUNT (default 256) Fashion-MNIST training and test
images and labels as gzip IDX files (train-images.gz, train-labels.gz,
test-images.gz, test-labels.gz), and lstm.net's x.npy [100, 10, 3] and y.npy
[100, 3] (random, seeded)."""
import gzip
import sys

import numpy as np

count = int(sys.argv[1]) if len(sys.argv) > 1 else 256
src = "/usr/share/datasets/fashion-mnist/"
for part, name in (("train", "train"), ("t10k", "test")):
    img = gzip.open(src + part + "-images-idx3-ubyte.gz").read()
    lab = gzip.open(src + part + "-labels-idx1-ubyte.gz").read()
    head = bytearray(img[:16])
    head[4:8] = count.to_bytes(4, "big")
    with gzip.open(name + "-images.gz", "wb") as f:
        f.write(bytes(head) + img[16:16 + 784 * count])
    head = bytearray(lab[:8])
    head[4:8] = count.to_bytes(4, "big")
    with gzip.open(name + "-labels.gz", "wb") as f:
        f.write(bytes(head) + lab[8:8 + count])
rng = np.random.default_rng(3)
np.save("x.npy", rng.uniform(-1, 1, (100, 10, 3)).astype(np.float32))
np.save("y.npy", rng.uniform(-1, 1, (100, 3)).astype(np.float32))
