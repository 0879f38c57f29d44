#!/usr/bin/env python3
"""bench/wino_error.py -- dumps what bench/wino_error.c reads: the first 1000
Fashion-MNIST test images (scaled 1/255) and mnist_cnn's two conv layers from a
checkpoint (safetensors, `mnist_cnn train --save F`) as raw float32 files in the
current directory.   usage: bench/wino_error.py CHECKPOINT"""
import gzip
import json
import struct
import sys

import numpy as np
f = open(sys.argv[1], 'rb'); n = struct.unpack('<Q', f.read(8))[0]; h = json.loads(f.read(n)); base = 8 + n
raw = open(sys.argv[1], 'rb').read()
def t(k):
    a, b = h[k]['data_offsets']; return np.frombuffer(raw[base + a:base + b], np.float32)
imgs = np.frombuffer(gzip.open('/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz').read()[16:], np.uint8)
x = (imgs[:1000 * 784].astype(np.float32) / 255)
for k, v in [('x', x), ('w0', t('classifier.conv2d0.w')), ('b0', t('classifier.conv2d0.b')),
             ('w1', t('classifier.conv2d1.w')), ('b1', t('classifier.conv2d1.b'))]:
    v.astype(np.float32).tofile(k + '.bin')
