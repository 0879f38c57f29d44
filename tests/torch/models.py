"""tests/torch/models.py -- the cross-checked models: every example, and networks
the examples do not contain (batch norm after dense and conv layers, a VGG-style
stack with SGD Nesterov, a depthwise-separable block). Each twin mirrors its
.net file line by line; names are netc's parameter names."""
from twin import (Input, Model, Step, batchnorm, bce, conv2d, conv2d_transpose, cross_entropy, dense, flatten,
                  leaky_relu, maxpool, mse, register, relu)
import os

import torch
import torch.nn.functional as F

# ---------------------------------------------------------------- examples

register(Model("linear_regression", "examples/linear_regression.net",
               [Input("x", (1,)), Input("y", (1,))],
               [Step(lambda P, X: mse(X["x"] @ P["w"] + P["b"], X["y"]), ("sgd", {"lr": 0.01}))],
               batch=100, csv=True))

register(Model("mlp_regression", "examples/mlp_regression.net",
               [Input("x", (3,)), Input("y", (1,))],
               [Step(lambda P, X: mse(dense(P, "mlp_regression.dense1",
                                            relu(dense(P, "mlp_regression.dense0", X["x"]))), X["y"]),
                     ("adam", {"lr": 0.001}))],
               batch=32, csv=True))


def mlp(P, X):
    h = flatten(X["image"])
    h = relu(dense(P, "classifier.dense0", h))
    h = relu(dense(P, "classifier.dense1", h))
    return cross_entropy(dense(P, "classifier.dense2", h), X["label"])


register(Model("mlp", "examples/mlp.net",
               [Input("image", (1, 28, 28), "pixels", 1 / 255), Input("label", (), "labels:10")],
               [Step(mlp, ("adam", {"lr": 1e-3}))], batch=64))


def mnist_cnn(P, X):
    h = maxpool(relu(conv2d(P, "classifier.conv2d0", X["image"])), 2)
    h = maxpool(relu(conv2d(P, "classifier.conv2d1", h)), 2)
    h = relu(dense(P, "classifier.dense0", flatten(h)))
    return cross_entropy(dense(P, "classifier.dense1", h), X["label"])


register(Model("mnist_cnn", "examples/mnist_cnn.net",
               [Input("image", (1, 28, 28), "pixels", 1 / 255), Input("label", (), "labels:10")],
               [Step(mnist_cnn, ("adam", {"lr": 0.001}))], batch=64))


def lenet(P, X):
    h = maxpool(relu(conv2d(P, "lenet5.conv2d0", X["image"], padding=2)), 2)
    h = maxpool(relu(conv2d(P, "lenet5.conv2d1", h)), 2)
    h = relu(dense(P, "lenet5.dense0", flatten(h)))
    h = relu(dense(P, "lenet5.dense1", h))
    return cross_entropy(dense(P, "lenet5.dense2", h), X["label"])


register(Model("lenet", "examples/lenet.net",
               [Input("image", (1, 28, 28), "pixels", 1 / 255), Input("label", (), "labels:10")],
               [Step(lenet, ("sgd", {"lr": 0.01, "momentum": 0.9}))], batch=64))

# ------------------------------------------------- batch norm, beyond examples

register(Model("dense_bn", """model dense_bn
input x : f32[N, 20]
input y : i32[N]
logits = x -> dense(32) batchnorm relu dense(32) batchnorm(momentum=0.3, eps=1e-3) relu dense(5)
loss cross_entropy(logits, y)
train {
    optimizer adam(lr=0.01)
}
""", [Input("x", (20,)), Input("y", (), "labels:5")],
    [Step(lambda P, X: cross_entropy(dense(P, "dense_bn.dense2", relu(batchnorm(
        P, "dense_bn.batchnorm1", dense(P, "dense_bn.dense1", relu(batchnorm(
            P, "dense_bn.batchnorm0", dense(P, "dense_bn.dense0", X["x"])))), 0.3, 1e-3))), X["y"]),
        ("adam", {"lr": 0.01}))], batch=32))


def vgg(P, X):
    h = X["image"]
    for i in range(4):
        h = relu(batchnorm(P, f"vgg.batchnorm{i}", conv2d(P, f"vgg.conv2d{i}", h, padding=1)))
        if i % 2 == 1:
            h = maxpool(h, 2)
    return cross_entropy(dense(P, "vgg.dense0", flatten(h)), X["label"])


register(Model("vgg_bn", """model vgg
input image : f32[N, 3, 16, 16]
input label : i32[N]
logits = image -> conv2d(16, 3, padding=1) batchnorm relu conv2d(16, 3, padding=1) batchnorm relu maxpool(2) ->
    conv2d(32, 3, padding=1) batchnorm relu conv2d(32, 3, padding=1) batchnorm relu maxpool(2) flatten dense(10)
loss cross_entropy(logits, label)
train {
    optimizer sgd(lr=0.05, momentum=0.9, nesterov=true)
}
""", [Input("image", (3, 16, 16)), Input("label", (), "labels:10")],
    [Step(vgg, ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}))], batch=32))


def vgg32(P, X):
    h = X["image"]
    for i in range(4):
        h = relu(batchnorm(P, f"vgg32.batchnorm{i}", conv2d(P, f"vgg32.conv2d{i}", h, padding=1)))
        if i % 2 == 1:
            h = maxpool(h, 2)
    return cross_entropy(dense(P, "vgg32.dense0", flatten(h)), X["label"])


# The seeds' size: 3x32x32 images, batch 32, 32 and 64 channels.
register(Model("vgg32_bn", """model vgg32
input image : f32[N, 3, 32, 32]
input label : i32[N]
logits = image -> conv2d(32, 3, padding=1) batchnorm relu conv2d(32, 3, padding=1) batchnorm relu maxpool(2) ->
    conv2d(64, 3, padding=1) batchnorm relu conv2d(64, 3, padding=1) batchnorm relu maxpool(2) flatten dense(10)
loss cross_entropy(logits, label)
train {
    optimizer sgd(lr=0.05, momentum=0.9, nesterov=true)
}
""", [Input("image", (3, 32, 32), "uniform"), Input("label", (), "labels:10")],
    [Step(vgg32, ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True}))], batch=32))


def dwsep(P, X):
    h = relu(batchnorm(P, "dwsep.batchnorm0", conv2d(P, "dwsep.conv2d0", X["image"], padding=1)))
    h = conv2d(P, "dwsep.conv2d1", h, padding=1, groups=16, bias=False)  # depthwise
    h = relu(batchnorm(P, "dwsep.batchnorm1", h))
    h = conv2d(P, "dwsep.conv2d2", h, bias=False)  # pointwise
    h = relu(batchnorm(P, "dwsep.batchnorm2", h))
    return cross_entropy(dense(P, "dwsep.dense0", flatten(F.avg_pool2d(h, 4))), X["label"])


register(Model("dwsep_bn", """model dwsep
input image : f32[N, 3, 12, 12]
input label : i32[N]
logits = image -> conv2d(16, 3, padding=1) batchnorm relu ->
    conv2d(16, 3, padding=1, groups=16, bias=false) batchnorm relu ->
    conv2d(24, 1, bias=false) batchnorm relu avgpool(4) flatten dense(10)
loss cross_entropy(logits, label)
train {
    optimizer adam(lr=0.01)
}
""", [Input("image", (3, 12, 12)), Input("label", (), "labels:10")],
    [Step(dwsep, ("adam", {"lr": 0.01}))], batch=16))

# ------------------------------------------------- the other examples, layers


def lstm(P, pre, x, units):
    """netc's lstm: PyTorch's names, layouts and gate order i, f, g, o
    (weight_ih_l0 [4H, F], weight_hh_l0 [4H, H], bias_ih_l0, bias_hh_l0 [4H]);
    the state starts at zero."""
    h = x.new_zeros(x.shape[0], units)
    c = x.new_zeros(x.shape[0], units)
    for t in range(x.shape[1]):
        z = (x[:, t] @ P[pre + ".weight_ih_l0"].T + P[pre + ".bias_ih_l0"]
             + h @ P[pre + ".weight_hh_l0"].T + P[pre + ".bias_hh_l0"])
        i, f, g, o = z.split(units, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
    return h


register(Model("lstm", "examples/lstm.net",
               [Input("x", (10, 3)), Input("y", (3,), "onehot:3")],
               [Step(lambda P, X: cross_entropy(dense(P, "lstm.dense0", lstm(P, "lstm.lstm0", X["x"], 50)), X["y"]),
                     ("adam", {"lr": 0.001}))], batch=10))


def layers(P, X):
    h = leaky_relu(conv2d(P, "layers.conv2d0", X["image"], padding=1), 0.1)
    h = torch.tanh(conv2d(P, "layers.conv2d1", F.interpolate(h, scale_factor=2, mode="nearest"), stride=2))
    h = torch.sigmoid(conv2d_transpose(P, "layers.conv2d_transpose0", h, 2, 1, 1))
    g = h.mean((2, 3))
    a = dense(P, "layers.dense0", flatten(F.avg_pool2d(h, 2)))
    b = dense(P, "layers.dense1", flatten(maxpool(h, 2)))
    t, s = X["t"], X["s"]
    return (F.binary_cross_entropy_with_logits(a, t) + F.relu(1 - s * b).mean() + (g * g).mean()
            - (F.log_softmax(a, -1) * t).mean() - (F.softmax(b, -1) * s).mean())


# Every other layer and function kind, trained by RMSprop with momentum.
register(Model("layers", """model layers
input image : f32[N, 2, 8, 8]
input t : f32[N, 4]
input s : f32[N, 4]
h = image -> conv2d(6, 3, padding="same") leaky_relu(0.1) upsample(2) conv2d(4, 3, stride=2) tanh ->
    conv2d_transpose(3, 3, stride=2, padding=1, output_padding=1) sigmoid
g = h -> global_avgpool
a = h -> avgpool(2) flatten dense(4)
b = h -> maxpool(2) reshape(147) dense(4)
loss bce_logits(a, t) + hinge(b, s) + mean(g * g) - mean(log_softmax(a) * t) - mean(softmax(b) * s)
output p = a
train {
    optimizer rmsprop(lr=0.01, momentum=0.9)
}
""", [Input("image", (2, 8, 8)), Input("t", (4,), "uniform"), Input("s", (4,), "signs")],
    [Step(layers, ("rmsprop", {"lr": 0.01, "momentum": 0.9}))], batch=16))

register(Model("adamw_bce", """model adamw_bce
input x : f32[N, 12]
input t : f32[N, 3]
p = x -> dense(16) tanh dense(3) sigmoid
loss bce(p, t)
train {
    optimizer adamw(lr=0.01, weight_decay=0.1)
}
""", [Input("x", (12,)), Input("t", (3,), "uniform")],
    [Step(lambda P, X: bce(torch.sigmoid(dense(P, "adamw_bce.dense1", torch.tanh(dense(P, "adamw_bce.dense0", X["x"])))),
                           X["t"]), ("adamw", {"lr": 0.01, "weight_decay": 0.1}))], batch=16))


# ------------------------------------------------------------------ the DCGAN
# Its noise is fed as data (the runtime draws it otherwise). About one of the
# ~4.5M relu/leaky_relu inputs of its 3 steps lands within float32 rounding of
# the kink (twin.KINKS; crosscheck.py's explain_kinks): with the data below,
# one of D's batch-norm outputs in step 1's d_step (exactly -4.9e-8).


def G(P, z):
    h = dense(P, "G.dense0", z).reshape(-1, 128, 7, 7)
    h = relu(batchnorm(P, "G.batchnorm0", h))
    h = relu(batchnorm(P, "G.batchnorm1", conv2d_transpose(P, "G.conv2d_transpose0", h, 2, 1)))
    return torch.tanh(conv2d_transpose(P, "G.conv2d_transpose1", h, 2, 1))


def D(P, x):
    h = leaky_relu(conv2d(P, "D.conv2d0", x, 2, 1), 0.2)
    h = leaky_relu(batchnorm(P, "D.batchnorm0", conv2d(P, "D.conv2d1", h, 2, 1)), 0.2)
    return torch.sigmoid(dense(P, "D.dense0", flatten(h)))


def d_loss(P, X):
    fake = G(P, X["z"])  # d_step computes G (its batch norms update) but trains D only
    dr, df = D(P, X["real"]), D(P, fake.detach())
    return bce(dr, torch.ones_like(dr)) + bce(df, torch.zeros_like(df))


def g_loss(P, X):
    dg = D(P, G(P, X["z"]))
    return bce(dg, torch.ones_like(dg))


_dcgan = open(os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                           "examples", "dcgan.net")).read()
_dcgan = _dcgan.replace("input z    : f32[N, 100] = normal(0, 1)", "input z : f32[N, 100]")
_dcgan = _dcgan.replace('data idx("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz") scale 2/255 shift -1',
                        'data npy("z.npy", "real.npy")')
register(Model("dcgan", _dcgan,
               [Input("z", (100,)), Input("real", (1, 28, 28), "uniform")],
               [Step(d_loss, ("adam", {"lr": 2e-4, "beta1": 0.5}), "d_step", ["D"]),
                Step(g_loss, ("adam", {"lr": 2e-4, "beta1": 0.5}), "g_step", ["G"])], batch=16))


