"""bench/baselines.py -- the other side of bench/bench.py: one measurement of one
framework in this process, printed as a JSON line. Frameworks:

  eager    PyTorch eager mode (training and inference)
  compile  torch.compile (Inductor, CPU) of the model; optimizer step eager
  jax      JAX jit (XLA CPU) of the whole training step (loss, grads, update)
  ort      ONNX Runtime, the model exported from PyTorch (inference only)

Every framework trains the same network (the models of bench/train_bench.py,
Keras glorot weights, zero biases) on the same Fashion-MNIST batches with the
example's optimizer, or times one forward call on random inputs. Compilation
and warm-up are timed apart (`warmup_s`) and excluded from the rate. The
caller sets the thread variables (train_bench.torch_env); this module also pins
the process to the first `threads` CPUs, so runtimes that size their pools
from the visible cores (XLA's Eigen pool, ONNX Runtime) use that many.
"""
import json
import os
import statistics
import time

import train_bench

# A training run stops after this many seconds if its images are not done.
TRAIN_CAP_S = 10.0

# Layers of each model for the JAX side, in the order of train_bench.torch_model:
# ("conv", in, out, kernel, padding[, groups, bias]), ("bn", channels) (batch
# statistics, as in training; the running averages are not kept), ("pool",),
# ("relu",), ("flatten",), ("dense", in, out)
JAX_SPECS = {
    "mlp": [("flatten",), ("dense", 784, 256), ("relu",), ("dense", 256, 128), ("relu",), ("dense", 128, 10)],
    "mnist_cnn": [("conv", 1, 32, 3, 0), ("relu",), ("pool",), ("conv", 32, 64, 3, 0), ("relu",), ("pool",),
                  ("flatten",), ("dense", 1600, 128), ("relu",), ("dense", 128, 10)],
    "lenet": [("conv", 1, 6, 5, 2), ("relu",), ("pool",), ("conv", 6, 16, 5, 0), ("relu",), ("pool",),
              ("flatten",), ("dense", 400, 120), ("relu",), ("dense", 120, 84), ("relu",), ("dense", 84, 10)],
    "dwsep": [("conv", 1, 32, 3, 1), ("bn", 32), ("relu",), ("conv", 32, 32, 3, 1, 32, False), ("bn", 32), ("relu",),
              ("conv", 32, 64, 1, 0, 1, False), ("bn", 64), ("relu",), ("pool",),
              ("conv", 64, 64, 3, 1, 64, False), ("bn", 64), ("relu",), ("conv", 64, 128, 1, 0, 1, False),
              ("bn", 128), ("relu",), ("pool",), ("flatten",), ("dense", 6272, 10)],
    "vgg_bn": [("conv", 1, 32, 3, 1), ("bn", 32), ("relu",), ("conv", 32, 32, 3, 1), ("bn", 32), ("relu",), ("pool",),
               ("conv", 32, 64, 3, 1), ("bn", 64), ("relu",), ("conv", 64, 64, 3, 1), ("bn", 64), ("relu",),
               ("pool",), ("flatten",), ("dense", 3136, 10)],
}


def pin(threads):
    try:
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, cpus[:max(1, threads)])
    except (AttributeError, OSError):
        pass


def fashion(np):
    data = train_bench.DATA
    x = train_bench.read_idx(f"{data}/train-images-idx3-ubyte.gz").astype(np.float32) / 255.0
    y = train_bench.read_idx(f"{data}/train-labels-idx1-ubyte.gz").astype(np.int64)
    return x[:, None, :, :], y


def batches(n, b, steps, seed=0):
    """The start offsets of `steps` batches of `b` in a shuffled order of n items."""
    import numpy as np
    perm = np.random.default_rng(seed).permutation(n)
    return [perm[(s * b) % (n - b):][:b] for s in range(steps)]


def torch_model(args):
    import torch.nn as nn
    model = train_bench.torch_model(args.model, nn)
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return model


def time_latency(fn, seconds):
    """Median seconds of fn() over `seconds` of calls, after a tenth as warm-up."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 10:
        fn()
    lat = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds or len(lat) < 5:
        t = time.perf_counter()
        fn()
        lat.append(time.perf_counter() - t)
    return statistics.median(lat)


def timed_steps(step, order, sync=lambda r: r):
    """Runs step(order[0..2]) as warm-up (compilation, first touches), then the
    rest until done or TRAIN_CAP_S; (last result, steps timed, their seconds,
    warm-up seconds). sync(result) waits for asynchronous work (JAX)."""
    t = time.perf_counter()
    for idx in order[:3]:
        r = step(idx)
    sync(r)
    warm = time.perf_counter() - t
    t0, done = time.perf_counter(), 0
    for idx in order[3:]:
        r = step(idx)
        done += 1
        if time.perf_counter() - t0 > TRAIN_CAP_S:
            break
    sync(r)
    return r, done, time.perf_counter() - t0, warm


def infer_result(args, med, version, warmup=0.0):
    return {"images_per_second": args.batch / med, "latency_ms": med * 1e3, "version": version,
            "warmup_s": warmup}


# ------------------------------------------------------------------ PyTorch --

def run_torch(args):
    import numpy as np
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = torch_model(args)
    warm = 0.0
    if args.kind == "infer":
        model.eval()
        x = torch.rand(args.batch, 1, 28, 28)
        if args.framework == "compile":
            model = torch.compile(model)
        with torch.inference_mode():
            t = time.perf_counter()
            model(x)
            warm = time.perf_counter() - t
            med = time_latency(lambda: model(x), args.amount)
        return infer_result(args, med, torch.__version__, warm)
    r = train_bench.RECIPES[args.model]
    xs, ys = fashion(np)
    x, y = torch.from_numpy(xs), torch.from_numpy(ys)
    opt = train_bench.torch_optimizer(torch, model, r)
    fwd = torch.compile(model) if args.framework == "compile" else model
    loss_fn = torch.nn.CrossEntropyLoss()
    b = args.batch
    steps = max(1, int(args.amount) // b)
    order = [torch.from_numpy(i) for i in batches(x.shape[0], b, steps + 3)]
    model.train()

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(fwd(x[idx]), y[idx])
        loss.backward()
        opt.step()
        return loss

    loss, done, secs, warm = timed_steps(step, order)
    return {"images_per_second": done * b / secs, "loss": float(loss.item()), "version": torch.__version__,
            "warmup_s": warm}


# ---------------------------------------------------------------------- JAX --

def jax_init(spec, rng, np):
    params = []
    for layer in spec:
        if layer[0] == "conv":
            cin, cout, k, groups = layer[1], layer[2], layer[3], layer[5] if len(layer) > 5 else 1
            lim = np.sqrt(6.0 / (cin // groups * k * k + cout // groups * k * k))
            params.append((rng.uniform(-lim, lim, (cout, cin // groups, k, k)).astype(np.float32),
                           np.zeros(cout, np.float32)))
        elif layer[0] == "bn":
            params.append((np.ones(layer[1], np.float32), np.zeros(layer[1], np.float32)))
        elif layer[0] == "dense":
            _, fin, fout = layer
            lim = np.sqrt(6.0 / (fin + fout))
            params.append((rng.uniform(-lim, lim, (fin, fout)).astype(np.float32), np.zeros(fout, np.float32)))
    return params


def jax_forward(spec, params, x):
    import jax.numpy as jnp
    from jax import lax
    p = iter(params)
    for layer in spec:
        kind = layer[0]
        if kind == "conv":
            w, b = next(p)
            pad, groups, bias = layer[4], layer[5] if len(layer) > 5 else 1, layer[6] if len(layer) > 6 else True
            x = lax.conv_general_dilated(x, w, (1, 1), [(pad, pad), (pad, pad)],
                                         dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=groups)
            if bias:
                x = x + b[None, :, None, None]
        elif kind == "bn":
            gamma, beta = next(p)
            mean = jnp.mean(x, axis=(0, 2, 3), keepdims=True)
            var = jnp.mean(jnp.square(x - mean), axis=(0, 2, 3), keepdims=True)
            x = (x - mean) / jnp.sqrt(var + 1e-5) * gamma[None, :, None, None] + beta[None, :, None, None]
        elif kind == "relu":
            x = jnp.maximum(x, 0)
        elif kind == "pool":
            x = lax.reduce_window(x, -jnp.inf, lax.max, (1, 1, 2, 2), (1, 1, 2, 2), "VALID")
        elif kind == "flatten":
            x = x.reshape(x.shape[0], -1)
        elif kind == "dense":
            w, b = next(p)
            x = x @ w + b
    return x


def run_jax(args):
    import numpy as np
    import jax
    import jax.numpy as jnp
    spec = JAX_SPECS[args.model]
    params = jax_init(spec, np.random.default_rng(0), np)
    if args.kind == "infer":
        f = jax.jit(lambda p, x: jax_forward(spec, p, x))
        x = jnp.asarray(np.random.default_rng(1).random((args.batch, 1, 28, 28), np.float32))
        t = time.perf_counter()
        f(params, x).block_until_ready()
        warm = time.perf_counter() - t
        med = time_latency(lambda: f(params, x).block_until_ready(), args.amount)
        return infer_result(args, med, jax.__version__, warm)
    r = train_bench.RECIPES[args.model]

    def loss_fn(p, x, y):
        logits = jax_forward(spec, p, x)
        logp = jax.nn.log_softmax(logits)
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    lr = r["lr"]
    if r["optimizer"] == "adam":
        b1, b2, eps = 0.9, 0.999, 1e-7
        state = (jax.tree_util.tree_map(jnp.zeros_like, params), jax.tree_util.tree_map(jnp.zeros_like, params),
                 jnp.zeros((), jnp.float32))

        def update(p, g, s):
            m, v, t = s
            t = t + 1
            m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, g)
            v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, g)
            c1, c2 = 1 - b1 ** t, 1 - b2 ** t
            p = jax.tree_util.tree_map(lambda p, m, v: p - lr * (m / c1) / (jnp.sqrt(v / c2) + eps), p, m, v)
            return p, (m, v, t)
    else:
        mom, nesterov = r.get("momentum", 0.0), r.get("nesterov", False)
        state = jax.tree_util.tree_map(jnp.zeros_like, params)

        def update(p, g, s):
            s = jax.tree_util.tree_map(lambda b, g: mom * b + g, s, g)
            if nesterov:  # PyTorch's form: p -= lr * (g + mom * b)
                return jax.tree_util.tree_map(lambda p, g, b: p - lr * (g + mom * b), p, g, s), s
            return jax.tree_util.tree_map(lambda p, b: p - lr * b, p, s), s

    @jax.jit
    def step(p, s, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        p, s = update(p, g, s)
        return p, s, loss

    xs, ys = fashion(np)
    ys = ys.astype(np.int32)
    b = args.batch
    steps = max(1, int(args.amount) // b)
    order = batches(xs.shape[0], b, steps + 3)
    carry = [params, state]

    def one(idx):
        carry[0], carry[1], loss = step(carry[0], carry[1], xs[idx], ys[idx])
        return loss

    loss, done, secs, warm = timed_steps(one, order, lambda r: r.block_until_ready())
    return {"images_per_second": done * b / secs, "loss": float(loss), "version": jax.__version__,
            "warmup_s": warm}


# ------------------------------------------------------------- ONNX Runtime --

def run_ort(args):
    import tempfile
    import numpy as np
    import torch
    import onnxruntime as ort
    model = torch_model(args).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.onnx")
        t = time.perf_counter()
        torch.onnx.export(model, (torch.rand(1, 1, 28, 28),), path, dynamo=False, input_names=["x"],
                          output_names=["y"], dynamic_axes={"x": {0: "n"}, "y": {0: "n"}})
        so = ort.SessionOptions()
        so.intra_op_num_threads = args.threads
        so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        warm = time.perf_counter() - t
    x = np.random.default_rng(1).random((args.batch, 1, 28, 28), np.float32)
    med = time_latency(lambda: sess.run(None, {"x": x}), args.amount)
    return infer_result(args, med, ort.__version__, warm)


RUNNERS = {"eager": run_torch, "compile": run_torch, "jax": run_jax, "ort": run_ort}


def child(args):
    """Entry of `bench.py --child FRAMEWORK ...`: one measurement, one JSON line."""
    pin(args.threads)
    if args.framework == "jax":
        os.environ.setdefault("XLA_FLAGS", f"--xla_cpu_multi_thread_eigen={'true' if args.threads > 1 else 'false'}"
                              f" intra_op_parallelism_threads={args.threads}")
    if args.kind == "lm":
        import lm_bench
        print(json.dumps(lm_bench.run_torch_lm(args)))
        return
    if args.kind == "gan":
        import gan_bench
        print(json.dumps(gan_bench.run_torch_gan(args)))
        return
    print(json.dumps(RUNNERS[args.framework](args)))
