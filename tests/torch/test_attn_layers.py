#!/usr/bin/env python3
"""tests/torch/test_attn_layers.py -- netc's transformer layers, clipping and
per-step schedules against PyTorch from identical weights. Self-contained (it
does not use a shared harness): for each case it builds a small .net model with
netc, makes a checkpoint holding PyTorch's initial weights (netc's safetensors
layout, written here with numpy), runs the netc program for one step (or a few)
of plain SGD on fixed .npy data whose single batch is the whole data set, and
compares the reported loss and the weights after the step (so the gradients,
w0 - w1 = lr * grad) with the same computation in PyTorch, in float32.

    /work/venv-torch/bin/python tests/torch/test_attn_layers.py [--build build] [--keep]

Cases: layernorm (of an input, and of a computed value: its input
gradient), gelu (exact and tanh), erf; multi-head attention (plain,
causal, with an additive mask, with a key padding mask) against
nn.MultiheadAttention(batch_first=True); conv1d + maxpool1d + avgpool1d
against nn.Conv1d / F.max_pool1d / F.avg_pool1d; clipnorm / clipvalue against
clip_grad_norm_ / clip_grad_value_; linear_warmup, warmup_cosine and
exponential against LambdaLR over 6 steps. Tolerance: |netc - torch| <=
2e-6 + 2e-5 * max|torch| per tensor, loss within 1e-5 relative. Exit 0 when all
agree, 1 on a mismatch, 77 when torch is missing."""
import argparse
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as e:  # pragma: no cover
    print(f"skipped: {e}")
    sys.exit(77)

torch.set_num_threads(1)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# ------------------------------------------------------------ safetensors


def st_read(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    head = json.loads(raw[8:8 + n])
    meta = head.pop("__metadata__", {})
    dt = {"F32": np.float32, "I32": np.int32, "I64": np.int64, "U8": np.uint8, "F64": np.float64}
    out = {}
    for k, v in head.items():
        a, b = v["data_offsets"]
        out[k] = np.frombuffer(raw[8 + n + a:8 + n + b], dtype=dt[v["dtype"]]).reshape(v["shape"]).copy()
    return out, meta


def st_write(path, tensors, meta):
    names = {np.dtype(np.float32): "F32", np.dtype(np.int32): "I32", np.dtype(np.int64): "I64",
             np.dtype(np.uint8): "U8", np.dtype(np.float64): "F64"}
    head, blobs, at = {"__metadata__": meta}, [], 0
    for k, v in tensors.items():
        b = np.ascontiguousarray(v).tobytes()
        head[k] = {"dtype": names[v.dtype], "shape": list(v.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(head).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))

# ------------------------------------------------------------ netc runs


class Netc:
    def __init__(self, build, work):
        self.netc = os.path.join(build, "netc")
        self.work = work

    def run(self, name, src, params, data, steps=1, lr=1.0):
        """Builds `src`, loads `params` (name -> array) over a fresh checkpoint,
        trains `steps` steps on `data` (list of arrays, one batch) and returns
        (losses per step, params after)."""
        d = os.path.join(self.work, name)
        os.makedirs(d, exist_ok=True)
        net = os.path.join(d, name + ".net")
        files = ", ".join(f'"d{i}.npy"' for i in range(len(data)))
        with open(net, "w") as f:
            f.write(src.replace("train {", "train {\n    data npy(" + files + ")", 1))
        exe = os.path.join(d, name)
        subprocess.run([self.netc, "build", net, "-o", exe], check=True, capture_output=True)
        for i, a in enumerate(data):
            np.save(os.path.join(d, f"d{i}.npy"), a)
        n = data[0].shape[0]
        common = ["--batch", str(n), "--threads", "1", "--quiet", "--lr", repr(lr)]
        first = os.path.join(d, "first.st")
        subprocess.run([exe, "train", "--max-steps", "1", "--save", first] + common, check=True, capture_output=True,
                       cwd=d)
        t, meta = st_read(first)
        for k in t:
            if k in params:
                assert t[k].shape == params[k].shape, (k, t[k].shape, params[k].shape)
                t[k] = params[k].astype(np.float32)
            elif t[k].dtype == np.float32:
                t[k] = np.zeros_like(t[k]) if not k.endswith(".lr") else t[k]
        missing = set(params) - set(t)
        assert not missing, f"netc has no tensors {missing}; it has {sorted(t)}"
        meta = dict(meta, **{"netc.step": "0", "netc.epoch": "0"})
        init = os.path.join(d, "init.st")
        st_write(init, t, meta)
        out, metrics = os.path.join(d, "out.st"), os.path.join(d, "m.jsonl")
        subprocess.run([exe, "train", "--load", init, "--epochs", str(steps), "--save", out, "--metrics", metrics]
                       + common, check=True, capture_output=True, cwd=d)
        losses = [json.loads(l)["loss"] for l in open(metrics)]
        after, _ = st_read(out)
        return losses, {k: after[k] for k in params}

# ------------------------------------------------------------ comparisons


FAILS = []


def close(what, got, want, rtol=2e-5, atol=2e-6):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    scale = float(np.max(np.abs(want))) if want.size else 0.0
    err = float(np.max(np.abs(got - want))) if want.size else 0.0
    ok = err <= atol + rtol * scale
    print(f"  {what:44s} max|diff| {err:.2e}  max|torch| {scale:.2e}  {'ok' if ok else 'MISMATCH'}")
    if not ok:
        FAILS.append(what)


def compare(case, netc_out, model, loss_fn, data, names, lr=1.0, steps=1, schedule=None, clip=None):
    """Runs the same SGD steps in PyTorch and compares loss and weights."""
    losses, after = netc_out
    params = dict(model.named_parameters())
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, schedule) if schedule else None
    tl = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn(model, *[torch.from_numpy(a) for a in data])
        loss.backward()
        if clip and "value" in clip:
            torch.nn.utils.clip_grad_value_(model.parameters(), clip["value"])
        if clip and "norm" in clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip["norm"])
        opt.step()
        if sched:
            sched.step()
        tl.append(loss.item())
    print(case)
    close("loss", losses, tl, rtol=1e-5, atol=1e-7)
    for tname, nname in names.items():
        w = params[tname].detach().numpy()
        if ("dense" in nname and nname.endswith(".w")) or nname == "fc_w":
            w = w.T
        close(nname, after[nname], w)


def dense_names(prefix, k):
    return f"{prefix}.dense{k}.w", f"{prefix}.dense{k}.b"


def weights_of(model, names):
    out = {}
    for tname, nname in names.items():
        w = dict(model.named_parameters())[tname].detach().numpy().copy()
        if ("dense" in nname and nname.endswith(".w")) or nname == "fc_w":
            w = w.T.copy()
        out[nname] = w
    return out

# ------------------------------------------------------------ cases


def case_layernorm_gelu(nc, rng):
    n, t, d = 5, 3, 8

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.ln = torch.nn.LayerNorm(d)
            self.fc = torch.nn.Linear(d, d)

        def forward(self, x):
            h = self.fc(self.ln(x))
            return F.gelu(h) + F.gelu(h, approximate="tanh") + torch.erf(h)

    torch.manual_seed(1)
    m = M()
    with torch.no_grad():
        m.ln.weight.uniform_(0.5, 1.5)
        m.ln.bias.uniform_(-0.5, 0.5)
    src = f"""model lg
input x : f32[N, {t}, {d}]
input y : f32[N, {t}, {d}]
param fc_w : f32[{d}, {d}]
param fc_b : f32[{d}]
h = (x -> layernorm) @ fc_w + fc_b
z = gelu(h) + gelu(h, approximate="tanh") + erf(h)
loss mse(z, y)
train {{
    optimizer sgd(lr=1)
    batch {n}
    epochs 1
}}
"""
    names = {"ln.weight": "lg.layernorm0.gamma", "ln.bias": "lg.layernorm0.beta",
             "fc.weight": "fc_w", "fc.bias": "fc_b"}
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    y = rng.standard_normal((n, t, d)).astype(np.float32)
    out = nc.run("lg", src, weights_of(m, names), [x, y])
    compare("layernorm + dense on [N,T,D] + gelu (exact, tanh) + erf vs nn.LayerNorm, F.gelu, torch.erf", out, m,
            lambda mm, x, y: F.mse_loss(mm(x), y), [x, y], names)


def case_layernorm_input(nc):
    """layernorm's input gradient (the case above normalizes an input): a
    residual h + layernorm(h) after a product, on rows with an offset mean.
    Its own random generator, so the later cases keep their data."""
    n, t, d = 4, 3, 12
    rng = np.random.default_rng(12)

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w0 = torch.nn.Parameter(torch.randn(d, d) * 0.5)
            self.b0 = torch.nn.Parameter(torch.randn(d) + 2.0)
            self.ln = torch.nn.LayerNorm(d, eps=1e-3)

        def forward(self, x):
            h = x @ self.w0 + self.b0
            return h + self.ln(h)

    torch.manual_seed(2)
    m = M()
    with torch.no_grad():
        m.ln.weight.uniform_(0.5, 1.5)
        m.ln.bias.uniform_(-0.5, 0.5)
    src = f"""model li
input x : f32[N, {t}, {d}]
input y : f32[N, {t}, {d}]
param w0 : f32[{d}, {d}]
param b0 : f32[{d}]
h = x @ w0 + b0
loss mse(h + (h -> layernorm(eps=0.001)), y)
train {{
    optimizer sgd(lr=1)
    batch {n}
    epochs 1
}}
"""
    names = {"w0": "w0", "b0": "b0", "ln.weight": "li.layernorm0.gamma", "ln.bias": "li.layernorm0.beta"}
    x = rng.standard_normal((n, t, d)).astype(np.float32)
    y = rng.standard_normal((n, t, d)).astype(np.float32)
    out = nc.run("li", src, weights_of(m, names), [x, y])
    compare("layernorm(eps=0.001) of a computed value (its input gradient) vs nn.LayerNorm", out, m,
            lambda mm, x, y: F.mse_loss(mm(x), y), [x, y], names)


def case_attention(nc, rng, causal, mask_kind):
    n, t, e, h = 3, 5, 8, 2

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = torch.nn.MultiheadAttention(e, h, batch_first=True)

        def forward(self, x, extra=None):
            am = None
            kpm = None
            if causal:
                am = torch.triu(torch.full((t, t), float("-inf")), diagonal=1)
            if mask_kind == "additive":
                am = extra if am is None else am + extra
            if mask_kind == "padding":
                kpm = extra != 0
            return self.mha(x, x, x, attn_mask=am, key_padding_mask=kpm, need_weights=False)[0]

    torch.manual_seed(2)
    m = M()
    with torch.no_grad():
        m.mha.in_proj_bias.uniform_(-0.3, 0.3)
        m.mha.out_proj.bias.uniform_(-0.3, 0.3)
    opts = ", causal=true" if causal else ""
    inputs = f"input x : f32[N, {t}, {e}]\ninput y : f32[N, {t}, {e}]\n"
    call = f"attention(x, {h}{opts})"
    x = rng.standard_normal((n, t, e)).astype(np.float32)
    y = rng.standard_normal((n, t, e)).astype(np.float32)
    data = [x, y]
    if mask_kind == "additive":
        inputs += f"input m : f32[{t}, {t}]\n"
        call = f"attention(x, {h}{opts}, mask=mm)"
        mk = (rng.standard_normal((t, t)) * 0.5).astype(np.float32)
        data = [x, y, np.broadcast_to(mk, (n, t, t)).copy()]
    if mask_kind == "padding":
        inputs += f"input p : f32[N, {t}]\n"
        call = f"attention(x, {h}{opts}, key_padding_mask=p)"
        pad = np.zeros((n, t), np.float32)
        pad[0, -2:] = 1
        pad[2, -1:] = 1
        data = [x, y, pad]
    # A data input carries a batch dim: an additive mask [T, T] is fed as [N, T, T] and its first item used.
    pre = ""
    if mask_kind == "additive":
        inputs = inputs.replace(f"input m : f32[{t}, {t}]", f"input m : f32[N, {t}, {t}]")
        pre = "mm = reshape(m, 1, " + str(t) + ", " + str(t) + ")\n"
    name = "at" + ("c" if causal else "") + (mask_kind[0] if mask_kind else "")
    src = f"""model {name}
{inputs}{pre}z = {call}
loss mse(z, y)
train {{
    optimizer sgd(lr=1)
    batch {n}
    epochs 1
}}
"""
    if mask_kind == "additive":  # the mask reshaped to [N, 1, T, T] broadcasts over the heads
        src = src.replace(pre, f"mm = reshape(m, 1, {t}, {t})\n")
    names = {"mha.in_proj_weight": f"{name}.attention0.in_proj_weight",
             "mha.in_proj_bias": f"{name}.attention0.in_proj_bias",
             "mha.out_proj.weight": f"{name}.attention0.out_proj.weight",
             "mha.out_proj.bias": f"{name}.attention0.out_proj.bias"}
    out = nc.run(name, src, weights_of(m, names), data)

    def loss_fn(mm, x, y, extra=None):
        if mask_kind == "additive":
            extra = extra[:, None].expand(n, h, t, t).reshape(n * h, t, t)
        return F.mse_loss(mm(x, extra), y)

    compare(f"attention heads={h} causal={causal} mask={mask_kind} vs nn.MultiheadAttention", out, m, loss_fn, data,
            names)


def case_conv1d(nc, rng):
    n, c, l, o, k = 4, 3, 11, 5, 3

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(c, o, k, padding=1)
            self.conv2 = torch.nn.Conv1d(o, o, 2, stride=2, dilation=1)

        def forward(self, x):
            h = torch.tanh(self.conv(x))
            h = F.max_pool1d(h, 2, stride=1, padding=1)
            h = F.avg_pool1d(h, 2)
            return self.conv2(h).mean(dim=2)

    torch.manual_seed(3)
    m = M()
    src = f"""model cv
input x : f32[N, {c}, {l}]
input y : f32[N, {o}]
h = x -> conv1d({o}, {k}, padding=1) tanh -> maxpool1d(2, stride=1, padding=1) -> avgpool1d(2) -> conv1d({o}, 2, stride=2)
loss mse(mean(h, 2), y)
train {{
    optimizer sgd(lr=1)
    batch {n}
    epochs 1
}}
"""
    names = {"conv.weight": "cv.conv1d0.w", "conv.bias": "cv.conv1d0.b",
             "conv2.weight": "cv.conv1d1.w", "conv2.bias": "cv.conv1d1.b"}
    x = rng.standard_normal((n, c, l)).astype(np.float32)
    y = rng.standard_normal((n, o)).astype(np.float32)
    out = nc.run("cv", src, weights_of(m, names), [x, y])
    compare("conv1d + maxpool1d + avgpool1d vs nn.Conv1d, F.max_pool1d, F.avg_pool1d", out, m,
            lambda mm, x, y: F.mse_loss(mm(x), y), [x, y], names)


def mlp_case(nc, rng, name, optim, sched_line, steps, schedule=None, clip=None, lr=0.5):
    n, f = 6, 4

    class M(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = torch.nn.Linear(f, 8)
            self.out = torch.nn.Linear(8, 1)

        def forward(self, x):
            return self.out(torch.tanh(self.fc(x)))

    torch.manual_seed(4)
    m = M()
    src = f"""model {name}
input x : f32[N, {f}]
input y : f32[N, 1]
loss mse(x -> dense(8) tanh -> dense(1), y)
train {{
    optimizer {optim}
    {sched_line}
    batch {n}
    epochs 1
}}
"""
    src = src.replace(f"loss mse(x -> dense(8) tanh -> dense(1), y)", "h = x -> dense(8) tanh -> dense(1)\nloss mse(h, y)")
    names = {"fc.weight": f"{name}.dense0.w", "fc.bias": f"{name}.dense0.b",
             "out.weight": f"{name}.dense1.w", "out.bias": f"{name}.dense1.b"}
    x = rng.standard_normal((n, f)).astype(np.float32) * 3
    y = rng.standard_normal((n, 1)).astype(np.float32) * 3
    out = nc.run(name, src, weights_of(m, names), [x, y], steps=steps, lr=lr)
    compare(f"{optim} {sched_line} x{steps} steps", out, m, lambda mm, x, y: F.mse_loss(mm(x), y), [x, y], names,
            lr=lr, steps=steps, schedule=schedule, clip=clip)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--keep", action="store_true")
    a = ap.parse_args()
    work = tempfile.mkdtemp(prefix="netc-torch-attn-")
    nc = Netc(os.path.abspath(a.build), work)
    rng = np.random.default_rng(7)
    case_layernorm_gelu(nc, rng)
    case_layernorm_input(nc)
    for causal, mk in ((False, None), (True, None), (False, "additive"), (True, "padding")):
        case_attention(nc, rng, causal, mk)
    case_conv1d(nc, rng)
    mlp_case(nc, rng, "cn", "sgd(lr=0.5, clipnorm=0.3)", "", 3, clip={"norm": 0.3})
    mlp_case(nc, rng, "cval", "sgd(lr=0.5, clipvalue=0.05)", "", 3, clip={"value": 0.05})
    w = 3
    mlp_case(nc, rng, "lw", "sgd(lr=0.1)", f"schedule linear_warmup(warmup={w})", 6,
             schedule=lambda s: min(1.0, (s + 1) / w), lr=0.1)
    t = 5
    mlp_case(nc, rng, "wc", "sgd(lr=0.5)", f"schedule warmup_cosine(warmup=2, t_max={t})", 6,
             schedule=lambda s: (s + 1) / 2 if s < 2 else (1 + math.cos(math.pi * min(1.0, (s - 2) / (t - 2)))) / 2)
    mlp_case(nc, rng, "ex", "sgd(lr=0.5)", "schedule exponential(gamma=0.7)", 6, schedule=lambda s: 0.7 ** s)
    if not a.keep:
        subprocess.run(["rm", "-rf", work])
    else:
        print("files kept in", work)
    if FAILS:
        print("FAIL:", ", ".join(FAILS))
        return 1
    print("all cases agree with PyTorch")
    return 0


if __name__ == "__main__":
    sys.exit(main())
