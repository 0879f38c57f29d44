#!/usr/bin/env python3
"""tests/unit/safetensors_compat.py -- checks that libnetrt's safetensors files
and the reference implementation (the `safetensors` Python package, the one
PyTorch uses) read each other's files. Not part of CTest, because it needs
`pip install safetensors numpy` (and optionally torch).

    python3 tests/unit/safetensors_compat.py BUILD/tests/test_runtime_safetensors

1. The C test program writes its reference checkpoint (--write); Python loads it
   with safetensors.numpy (and safetensors.torch when torch is installed) and
   compares every tensor and the metadata.
2. Python saves a checkpoint with safetensors.numpy.save_file; the C program
   reads and checks it (--check).
Exit status 0 when both directions agree, 1 on a mismatch, 77 when the packages
are missing (the usual 'skipped' code)."""
import os
import subprocess
import sys
import tempfile

try:
    import numpy as np
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
except ImportError as e:
    print(f"skipped: {e} (pip install safetensors numpy)")
    sys.exit(77)


def check_c_file(path):
    """The tensors of write_reference() in test_runtime_safetensors.c."""
    t = load_file(path)
    want = {
        "layer1.weight": np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11.5], np.float32).reshape(3, 4),
        "layer1.bias": np.array([-1, 0.5, 2, 1e-8], np.float32),
        "step": np.array(1234567890123, np.int64),
        "mask": np.array([1, 0, 1, 1, 0], np.uint8),
        "ids": np.array([-7, 8, 2147483647, -2147483648], np.int32).reshape(2, 2),
        "empty": np.zeros((0, 3), np.float32),
        "double": np.array([3.141592653589793, -2.5], np.float64),
    }
    assert sorted(t) == sorted(want), (sorted(t), sorted(want))
    for name, w in want.items():
        got = t[name]
        assert got.dtype == w.dtype, (name, got.dtype, w.dtype)
        assert got.shape == w.shape, (name, got.shape, w.shape)
        assert np.array_equal(got, w), (name, got, w)
    with safe_open(path, framework="numpy") as f:
        meta = f.metadata()
    assert meta == {
        "model": "mnist_cnn",
        "step": "100",
        "epoch": "3",
        "note": 'a "quoted" \\ value\n\t\x01 \u00fc',
    }, meta
    try:
        import torch  # noqa: F401
        from safetensors.torch import load_file as torch_load
    except ImportError:
        print("note: torch not installed; checked with safetensors.numpy only")
        return
    tt = torch_load(path)
    for name, w in want.items():
        assert np.array_equal(tt[name].numpy(), w), name
    print("safetensors.torch.load_file reads the C file")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    exe = sys.argv[1]
    with tempfile.TemporaryDirectory() as d:
        c_file = os.path.join(d, "from_c.safetensors")
        subprocess.run([exe, "--write", c_file], check=True)
        check_c_file(c_file)
        print("safetensors.numpy reads the C file: tensors and metadata match")

        py_file = os.path.join(d, "from_python.safetensors")
        save_file(
            {
                "weight": (np.arange(12, dtype=np.float32) * 0.5).reshape(3, 4),
                "labels": np.array([3, 1, 4, 1, 5], np.int32),
                "step": np.array(1234, np.int64),
                "bytes": np.arange(7, dtype=np.uint8),
                "half": np.array([1.0, -2.0], np.float16),
            },
            py_file,
            metadata={"model": "compat", "epoch": "2"},
        )
        r = subprocess.run([exe, "--check", py_file], capture_output=True, text=True)
        sys.stdout.write(r.stdout)
        sys.stderr.write(r.stderr)
        if r.returncode != 0:
            print("FAIL: the C reader rejected or misread the Python file")
            return 1
        print("the C reader reads the Python file")
    return 0


if __name__ == "__main__":
    sys.exit(main())
