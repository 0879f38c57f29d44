"""bench/gan_bench.py -- the PyTorch side of bench.py's DCGAN row: the networks
of examples/dcgan.net (G: dense to 7x7x128, batch norm, relu, two stride-2
transposed 4x4 convolutions with batch norm and relu between, tanh; D: two
stride-2 4x4 convolutions with leaky relu and batch norm, a dense sigmoid
output; Keras glorot weights, zero biases; Adam lr 2e-4, beta1 0.5, eps 1e-7)
trained on Fashion-MNIST scaled to [-1, 1], one D step and one G step per batch.

The loop is the one the seeds' PyTorch DCGAN (and PyTorch's DCGAN tutorial)
writes: G runs forward once per batch, D's step sees fake.detach() and G's step
backpropagates through D(fake) from the same forward pass. netc's dcgan.net
states the two steps apart, so it runs G forward in each (two G forwards per
batch): the comparison is with what a PyTorch user writes, not with an
identical operation count. bench.py calls run_torch_gan() in a child process;
the rate is real images per second."""
import baselines


def torch_dcgan():
    import torch.nn as nn
    G = nn.Sequential(nn.Linear(100, 7 * 7 * 128), nn.Unflatten(1, (128, 7, 7)), nn.BatchNorm2d(128), nn.ReLU(),
                      nn.ConvTranspose2d(128, 64, 4, 2, 1), nn.BatchNorm2d(64), nn.ReLU(),
                      nn.ConvTranspose2d(64, 1, 4, 2, 1), nn.Tanh())
    D = nn.Sequential(nn.Conv2d(1, 64, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(64, 128, 4, 2, 1),
                      nn.BatchNorm2d(128), nn.LeakyReLU(0.2), nn.Flatten(), nn.Linear(128 * 7 * 7, 1), nn.Sigmoid())
    for m in list(G.modules()) + list(D.modules()):
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    return G, D


def run_torch_gan(args):
    import numpy as np
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    G, D = torch_dcgan()
    og = torch.optim.Adam(G.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    od = torch.optim.Adam(D.parameters(), lr=2e-4, betas=(0.5, 0.999), eps=1e-7)
    g, d = (torch.compile(G), torch.compile(D)) if args.framework == "compile" else (G, D)
    xs, _ = baselines.fashion(np)
    x = torch.from_numpy(xs * 2.0 - 1.0)
    b = args.batch
    steps = max(1, int(args.amount) // b)
    order = [torch.from_numpy(i) for i in baselines.batches(x.shape[0], b, steps + 3)]

    def step(idx):
        real = x[idx]
        fake = g(torch.randn(b, 100))
        od.zero_grad(set_to_none=True)
        pr, pf = d(real), d(fake.detach())
        d_loss = F.binary_cross_entropy(pr, torch.ones_like(pr)) + F.binary_cross_entropy(pf, torch.zeros_like(pf))
        d_loss.backward()
        od.step()
        og.zero_grad(set_to_none=True)
        pg = d(fake)
        g_loss = F.binary_cross_entropy(pg, torch.ones_like(pg))
        g_loss.backward()
        og.step()
        return d_loss

    G.train(), D.train()
    loss, done, secs, warm = baselines.timed_steps(step, order)
    return {"images_per_second": done * b / secs, "loss": float(loss.item()), "version": torch.__version__,
            "warmup_s": warm}
