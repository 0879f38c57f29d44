"""bench/rnn_bench.py -- the PyTorch side of bench/bench.py's recurrent rows: one
training measurement of PyTorch eager in this process, printed as a JSON line.

  gru_rows  examples/gru_rows.net: a Fashion-MNIST image read as 28 steps of 28
            pixels, nn.GRU(28, 128) then nn.Linear(128, 10), cross-entropy, Adam
  lstm      examples/lstm.net (the seeds' Keras LSTM): 10 steps of 3 features,
            nn.LSTM(3, 50) then nn.Linear(50, 3), cross-entropy against soft
            targets, Adam; the data is bench.py's lstm_data() (also given to netc)

Timed like bench/baselines.py's PyTorch rows: the training loop alone after 3
warm-up steps, stopping after 10 s."""
import json
import time

import baselines


def lstm_data(np, n=1000, seed=0):
    """Random sequences [n, 10, 3] and soft targets [n, 3] (rows summing to 1)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 10, 3)).astype(np.float32)
    y = rng.random((n, 3)).astype(np.float32)
    return x, y / y.sum(1, keepdims=True)


def child(args):
    import numpy as np
    import torch
    import torch.nn as nn
    baselines.pin(args.threads)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    class Net(nn.Module):
        def __init__(self, rnn, units, classes):
            super().__init__()
            self.rnn, self.out = rnn, nn.Linear(units, classes)

        def forward(self, x):
            _, h = self.rnn(x)
            h = h[0] if isinstance(h, tuple) else h
            return self.out(h[-1])

    if args.model == "gru_rows":
        xs, ys = baselines.fashion(np)
        x, y = torch.from_numpy(xs[:, 0]), torch.from_numpy(ys)
        model = Net(nn.GRU(28, 128, batch_first=True), 128, 10)
        loss_fn = nn.CrossEntropyLoss()
    else:
        xs, ys = lstm_data(np)
        x, y = torch.from_numpy(xs), torch.from_numpy(ys)
        model = Net(nn.LSTM(3, 50, batch_first=True), 50, 3)
        loss_fn = lambda logits, t: -(t * torch.log_softmax(logits, 1)).sum(1).mean()
    opt = torch.optim.Adam(model.parameters(), lr=0.001, eps=1e-7)
    b = args.batch
    steps = max(1, int(args.amount) // b)
    order = [torch.from_numpy(i) for i in baselines.batches(x.shape[0], b, steps + 3)]
    model.train()

    def step(idx):
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        return loss

    t = time.perf_counter()
    for idx in order[:3]:
        step(idx)
    warm = time.perf_counter() - t
    t0 = time.perf_counter()
    done = 0
    for idx in order[3:]:
        loss = step(idx)
        done += 1
        if time.perf_counter() - t0 > baselines.TRAIN_CAP_S:
            break
    secs = time.perf_counter() - t0
    print(json.dumps({"images_per_second": done * b / secs, "loss": float(loss.item()),
                      "version": torch.__version__, "warmup_s": warm}))
