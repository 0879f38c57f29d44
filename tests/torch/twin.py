"""tests/torch/twin.py -- the pieces a PyTorch twin of a netc model is built from:
the model spec (Model, Input, Step), safetensors reading, the functional layers
in netc's parameter layout (dense weights [in, out] as Keras, conv weights OIHW
as PyTorch), and the optimizers with their state names on both sides.

A twin's loss function takes P (netc parameter and state name -> torch tensor,
parameters with requires_grad) and X (input name -> tensor, already scaled as
the program scales it) and returns the scalar loss of one training step. Layers
take P and the layer's name prefix (`classifier.dense0`), so a twin reads like
its .net file; see README.md."""
import json
import struct
import threading

import numpy as np
import torch
import torch.nn.functional as F


# ------------------------------------------------------------------ the spec

class Input:
    """A data input of the model, in the .net file's declaration order.
    kind: "normal" (f32, standard normal), "pixels" (f32 integers 0..255, for
    inputs whose source scales them), "labels:C" (i32 class indices below C),
    "onehot:C" (f32 one-hot rows of C classes), "uniform" (f32 in [0, 1)),
    "signs" (f32 -1 or 1).
    scale/shift: what the model's data source applies (value*scale + shift)."""

    def __init__(self, name, shape, kind="normal", scale=1.0, shift=0.0):
        self.name, self.shape, self.kind, self.scale, self.shift = name, tuple(shape), kind, scale, shift


class Step:
    """One training function: its netc name (train_step, or the train block's
    step name), its loss function loss(P, X), the optimizer as (name, options)
    with netc's option names and the .net file's values, and the groups (nets)
    it updates (None: every parameter)."""

    def __init__(self, loss, optimizer, name="train_step", update=None):
        self.loss, self.optimizer, self.name, self.update = loss, optimizer, name, update


class Model:
    """A model to cross-check. net: a path under the repository root or the
    .net source itself (when it contains a newline). batch: the items of the
    fixed data set, one batch (so every step sees the same items; the order
    inside a batch does not change a mean). csv: the model's data source is one
    CSV file (columns in input order) instead of one file per input. tol: the
    floor of the tolerance, relative to each tensor's largest value."""

    def __init__(self, name, net, inputs, steps, batch=16, csv=False, tol=1e-4, seed=1):
        self.name, self.net, self.inputs, self.steps = name, net, inputs, steps
        self.batch, self.csv, self.tol, self.seed = batch, csv, tol, seed


MODELS = []


def register(model):
    MODELS.append(model)
    return model


# -------------------------------------------------------------- safetensors

def st_read(path):
    """name -> float32 numpy array (F32 tensors only), and the metadata."""
    with open(path, "rb") as f:
        data = f.read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        if t["dtype"] != "F32":
            raise ValueError(f"{path}: {name} is {t['dtype']}, expected F32")
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + a:8 + n + b], dtype="<f4").reshape(t["shape"]).copy()
    return out, header.get("__metadata__", {})


# ------------------------------------------------------------------- layers

def dense(P, pre, x, bias=True):
    y = x @ P[pre + ".w"]
    return y + P[pre + ".b"] if bias else y


def conv2d(P, pre, x, stride=1, padding=0, dilation=1, groups=1, bias=True):
    return F.conv2d(x, P[pre + ".w"], P[pre + ".b"] if bias else None, stride, padding, dilation, groups)


def conv2d_transpose(P, pre, x, stride=1, padding=0, output_padding=0, bias=True):
    return F.conv_transpose2d(x, P[pre + ".w"], P[pre + ".b"] if bias else None, stride, padding, output_padding)


def batchnorm(P, pre, x, momentum=0.1, eps=1e-5):
    """Train mode: batch statistics, running ones updated in place (unbiased var)."""
    return F.batch_norm(x, P[pre + ".running_mean"], P[pre + ".running_var"], P[pre + ".gamma"], P[pre + ".beta"],
                        training=True, momentum=momentum, eps=eps)


# relu and leaky_relu have a kink at 0. An input within float32 rounding of 0 can
# land on either side in any float32 implementation (netc's C and OpenCL,
# PyTorch float32), and the gradient through it then differs by (1 - slope)
# times the upstream gradient: one element of D's batch norm in the DCGAN,
# -4.9e-8 exactly, came out +7.0e-7 in netc's C and -6.7e-7 in PyTorch float32,
# and changed a gradient by 3e-4. So the twin's kinked activations can keep
# their inputs (KINKS.record), and crosscheck.py may re-run the reference with
# the derivative at one such input taken on the other side (KINKS.flips).
class _Kinks(threading.local):  # crosscheck.py runs two models at once, in threads
    """The kink bookkeeping of the twin being run: `at` (step number, step
    name) and `site` (the kinked activation's call index in that loss) name a
    call, its key at + (site,); `record` (None: off) maps each key to the call's
    kinked input (float64 numpy): {"x": relu's input or pooling's gaps, "slope"
    (relu) or "second" (pooling: each window's second largest input's flat
    plane index)}; `flips` maps a key to {flat index: the choice forced there}
    (relu: the derivative; pooling: the input that gets the window's gradient),
    set from the float64 reference's side, so the float32 run takes the same
    choice whichever side its own rounding put it on."""

    def __init__(self):
        self.at, self.site, self.record, self.flips = None, 0, None, {}


KINKS = _Kinks()


class _Kinked(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, slope, flip):
        d = torch.where(x > 0, torch.ones_like(x), torch.full_like(x, slope))
        if flip:
            d.view(-1)[list(flip)] = torch.tensor(list(flip.values()), dtype=d.dtype)
        ctx.save_for_backward(d)
        return torch.where(x > 0, x, x * slope)

    @staticmethod
    def backward(ctx, g):
        (d,) = ctx.saved_tensors
        return g * d, None, None


def _kinked(x, slope):
    key = KINKS.at + (KINKS.site,)
    KINKS.site += 1
    if KINKS.record is not None:
        KINKS.record[key] = {"x": x.detach().double().numpy().copy(), "slope": slope}
    return _Kinked.apply(x, slope, KINKS.flips.get(key))


def relu(x):
    return _kinked(x, 0.0)


def leaky_relu(x, slope=0.01):
    return _kinked(x, slope)


# Max pooling has the same kind of kink: where a window's two largest inputs
# are within float32 rounding of each other, any float32 implementation may
# pick either, and the whole upstream gradient of that window moves to the
# other input. (A 1e-6 change to a convolution's outputs, well within
# float32's error of a 288-term sum, moved vgg32_bn's gradients by 5e-2 this
# way.) So a pooling's kinked input, as far as KINKS is concerned, is each
# window's gap between its largest and second largest input (infinite for a
# window of one input; exact ties, gap 0, are skipped: float32 cannot split
# them, so every implementation takes the first), and a flip routes the
# window's gradient to its second largest input.
def _pool_windows(x, k, stride, padding):
    """The windows of x [N, C, H, W]: their top two values and the flat plane
    indices of those inputs, each [N, C, Ho, Wo]."""
    n, c, h, w = x.shape
    xp = F.pad(x.reshape(n * c, 1, h, w), (padding,) * 4, value=float("-inf"))
    at = torch.arange(h * w, dtype=x.dtype).reshape(1, 1, h, w)
    ap = F.pad(at, (padding,) * 4, value=-1.0)
    cols = F.unfold(xp, k, stride=stride)                       # [N*C, k*k, L]
    idx = F.unfold(ap, k, stride=stride).expand(n * c, -1, -1)  # the same windows' indices
    top, pos = torch.topk(cols, min(2, k * k), dim=1)
    where = torch.gather(idx, 1, pos).round().long()
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1
    shape = (n, c, ho, wo)
    second = top[:, 1] if k * k > 1 else torch.full_like(top[:, 0], float("-inf"))
    where2 = where[:, 1] if k * k > 1 else where[:, 0]
    return top[:, 0].reshape(shape), second.reshape(shape), where[:, 0].reshape(shape), where2.reshape(shape)


class _KinkedPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, k, stride, padding, flip):
        y = F.max_pool2d(x, k, stride, padding)
        _, arg = F.max_pool2d(x, k, stride, padding, return_indices=True)
        if flip:
            arg.view(-1)[list(flip)] = torch.tensor(list(flip.values()), dtype=arg.dtype)
        ctx.save_for_backward(arg)
        ctx.xshape = x.shape
        return y

    @staticmethod
    def backward(ctx, g):
        (arg,) = ctx.saved_tensors
        n, c, h, w = ctx.xshape
        gx = torch.zeros(n * c, h * w, dtype=g.dtype)
        gx.scatter_add_(1, arg.reshape(n * c, -1), g.reshape(n * c, -1))
        return gx.reshape(ctx.xshape), None, None, None, None


def maxpool(x, k, stride=None, padding=0):
    stride = stride or k
    key = KINKS.at + (KINKS.site,)
    KINKS.site += 1
    if KINKS.record is not None:
        top, second, _, where2 = _pool_windows(x.detach(), k, stride, padding)
        gap = (top - second).double().numpy().copy()
        gap[gap == 0] = np.inf  # exact ties: not a kink float32 can split
        KINKS.record[key] = {"x": gap, "second": where2.numpy().copy()}
    return _KinkedPool.apply(x, k, stride, padding, KINKS.flips.get(key))


def flatten(x):
    return x.reshape(x.shape[0], -1)


def cross_entropy(logits, target):
    """netc's cross_entropy: i32 labels, or f32 target probabilities."""
    return F.cross_entropy(logits, target.long() if not target.is_floating_point() else target)


def mse(p, t):
    return F.mse_loss(p, t)


def bce(p, t):
    return F.binary_cross_entropy(p, t)


# --------------------------------------------------------------- optimizers

# netc's option names -> torch.optim's, and netc's state slot -> torch's state key.
def make_optimizer(spec, params):
    name, o = spec
    if name == "sgd":
        opt = torch.optim.SGD(params, lr=o.get("lr", 0.01), momentum=o.get("momentum", 0),
                              nesterov=bool(o.get("nesterov", False)), weight_decay=o.get("weight_decay", 0),
                              foreach=False)
        return opt, {"momentum": "momentum_buffer"}
    if name in ("adam", "adamw"):
        cls = torch.optim.Adam if name == "adam" else torch.optim.AdamW
        opt = cls(params, lr=o.get("lr", 0.001), betas=(o.get("beta1", 0.9), o.get("beta2", 0.999)),
                  eps=o.get("eps", 1e-7), weight_decay=o.get("weight_decay", 0 if name == "adam" else 0.01),
                  foreach=False)
        return opt, {"m": "exp_avg", "v": "exp_avg_sq"}
    if name == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=o.get("lr", 0.001), alpha=o.get("rho", 0.9), eps=o.get("eps", 1e-7),
                                  momentum=o.get("momentum", 0), foreach=False)
        return opt, {"v": "square_avg", "momentum": "momentum_buffer"}
    raise ValueError(f"unknown optimizer {name}")


def is_state(name):
    """Buffers a twin updates without gradients (batch norm's running statistics)."""
    return name.endswith(".running_mean") or name.endswith(".running_var")


def run_twin(model, init, X, nsteps, dtype, flips=None, record=None):
    """Runs the twin from the initial tensors `init` (netc names) for nsteps
    steps in dtype. Returns [per step: (losses {step name: float}, tensors
    {netc name: float64 array} after the step, optimizer state included)].
    flips, record: see _Kinks (the kinked activations' derivative choices)."""
    KINKS.flips, KINKS.record = flips or {}, record
    step_names = {s.name for s in model.steps}
    P = {}
    for k, v in init.items():
        if k.split(".")[0] in step_names:
            continue  # optimizer state and the learning rate: the twin's own
        t = torch.tensor(v, dtype=dtype)
        P[k] = t if is_state(k) else t.requires_grad_(True)
    Xt = {k: torch.tensor(v, dtype=dtype if v.dtype == np.float32 else torch.int64) for k, v in X.items()}
    opts = []
    for s in model.steps:
        names = [k for k in P if not is_state(k) and
                 (s.update is None or any(k.startswith(g + ".") for g in s.update))]
        opt, slots = make_optimizer(s.optimizer, [P[k] for k in names])
        opts.append((s, opt, slots, names))
    out = []
    for k in range(1, nsteps + 1):
        losses = {}
        for s, opt, slots, names in opts:
            for t in P.values():
                t.grad = None
            KINKS.at, KINKS.site = (k, s.name), 0
            loss = s.loss(P, Xt)
            loss.backward()
            opt.step()
            losses[s.name] = float(loss.detach())
        tensors = {k: v.detach().double().numpy().copy() for k, v in P.items()}
        for s, opt, slots, names in opts:
            for k in names:
                st = opt.state.get(P[k], {})
                for slot, key in slots.items():
                    if key in st:
                        tensors[f"{s.name}.{s.optimizer[0]}.{slot}.{k}"] = st[key].detach().double().numpy().copy()
        out.append((losses, tensors))
    KINKS.flips, KINKS.record = {}, None
    return out
