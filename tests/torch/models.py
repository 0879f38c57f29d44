"""tests/torch/models.py -- the cross-checked models: every example, and networks
the examples do not contain (batch norm after dense and conv layers, a VGG-style
stack with SGD Nesterov, a depthwise-separable block). Each twin mirrors its
.net file line by line; names are netc's parameter names."""
from twin import (Input, Model, Step, batchnorm, bce, conv2d, conv2d_transpose, cross_entropy, dense, flatten,
                  maxpool, mse, register)
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
                                            F.relu(dense(P, "mlp_regression.dense0", X["x"]))), X["y"]),
                     ("adam", {"lr": 0.001}))],
               batch=32, csv=True))


def mlp(P, X):
    h = flatten(X["image"])
    h = F.relu(dense(P, "classifier.dense0", h))
    h = F.relu(dense(P, "classifier.dense1", h))
    return cross_entropy(dense(P, "classifier.dense2", h), X["label"])


register(Model("mlp", "examples/mlp.net",
               [Input("image", (1, 28, 28), "pixels", 1 / 255), Input("label", (), "labels:10")],
               [Step(mlp, ("adam", {"lr": 1e-3}))], batch=64))


def mnist_cnn(P, X):
    h = maxpool(F.relu(conv2d(P, "classifier.conv2d0", X["image"])), 2)
    h = maxpool(F.relu(conv2d(P, "classifier.conv2d1", h)), 2)
    h = F.relu(dense(P, "classifier.dense0", flatten(h)))
    return cross_entropy(dense(P, "classifier.dense1", h), X["label"])


register(Model("mnist_cnn", "examples/mnist_cnn.net",
               [Input("image", (1, 28, 28), "pixels", 1 / 255), Input("label", (), "labels:10")],
               [Step(mnist_cnn, ("adam", {"lr": 0.001}))], batch=64))


def lenet(P, X):
    h = maxpool(F.relu(conv2d(P, "lenet5.conv2d0", X["image"], padding=2)), 2)
    h = maxpool(F.relu(conv2d(P, "lenet5.conv2d1", h)), 2)
    h = F.relu(dense(P, "lenet5.dense0", flatten(h)))
    h = F.relu(dense(P, "lenet5.dense1", h))
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
    [Step(lambda P, X: cross_entropy(dense(P, "dense_bn.dense2", F.relu(batchnorm(
        P, "dense_bn.batchnorm1", dense(P, "dense_bn.dense1", F.relu(batchnorm(
            P, "dense_bn.batchnorm0", dense(P, "dense_bn.dense0", X["x"])))), 0.3, 1e-3))), X["y"]),
        ("adam", {"lr": 0.01}))], batch=32))


def vgg(P, X):
    h = X["image"]
    for i in range(4):
        h = F.relu(batchnorm(P, f"vgg.batchnorm{i}", conv2d(P, f"vgg.conv2d{i}", h, padding=1)))
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


def dwsep(P, X):
    h = F.relu(batchnorm(P, "dwsep.batchnorm0", conv2d(P, "dwsep.conv2d0", X["image"], padding=1)))
    h = conv2d(P, "dwsep.conv2d1", h, padding=1, groups=16, bias=False)  # depthwise
    h = F.relu(batchnorm(P, "dwsep.batchnorm1", h))
    h = conv2d(P, "dwsep.conv2d2", h, bias=False)  # pointwise
    h = F.relu(batchnorm(P, "dwsep.batchnorm2", h))
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
