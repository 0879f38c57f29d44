"""bench/lm_bench.py -- the PyTorch side of bench.py's language-model row: the
same network as examples/tiny_gpt.net (token + learned position embeddings,
pre-norm blocks of causal nn.MultiheadAttention and a GELU MLP, a final
LayerNorm and a linear head; AdamW; cross-entropy with ignore_index=0), trained
on random token windows of the same shape (the speed does not depend on the
text). bench.py calls run_torch_lm() in a child process; the result is
tokens/s in `images_per_second` (bench.py's key) times nothing: one "image" is
one token here.

The configuration is read from examples/tiny_gpt.net's header line
`# bench: vocab=V window=T dim=D heads=H layers=L mlp=F lr=X` so the two sides
cannot drift apart."""
import os
import re
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_CAP_S = 10.0


def config():
    with open(os.path.join(ROOT, "examples", "tiny_gpt.net")) as f:
        for line in f:
            if line.startswith("# bench:"):
                return {k: float(v) if "." in v or "e" in v else int(v)
                        for k, v in re.findall(r"(\w+)=([\w.+-]+)", line)}
    raise SystemExit("examples/tiny_gpt.net has no '# bench:' line")


def torch_gpt(c):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1, self.ln2 = nn.LayerNorm(c["dim"]), nn.LayerNorm(c["dim"])
            self.attn = nn.MultiheadAttention(c["dim"], c["heads"], batch_first=True)
            self.fc1, self.fc2 = nn.Linear(c["dim"], c["mlp"]), nn.Linear(c["mlp"], c["dim"])

        def forward(self, x, mask):
            h = self.ln1(x)
            x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(c["vocab"], c["dim"])
            self.pos = nn.Parameter(torch.randn(c["window"], c["dim"]) * 0.02)
            self.blocks = nn.ModuleList(Block() for _ in range(c["layers"]))
            self.lnf = nn.LayerNorm(c["dim"])
            self.head = nn.Linear(c["dim"], c["vocab"])
            t = c["window"]
            self.register_buffer("mask", torch.triu(torch.full((t, t), float("-inf")), diagonal=1))

        def forward(self, ids):
            x = self.tok(ids) + self.pos
            for b in self.blocks:
                x = b(x, self.mask)
            return self.head(self.lnf(x))

    return GPT()


def run_torch_lm(args):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    c = config()
    model = torch_gpt(c)
    opt = torch.optim.AdamW(model.parameters(), lr=c["lr"], eps=1e-7, weight_decay=0.01)
    fwd = torch.compile(model) if args.framework == "compile" else model
    b, t = args.batch, c["window"]
    gen = torch.Generator().manual_seed(1)
    data = torch.randint(2, c["vocab"], (64, b, t + 1), generator=gen)

    def step(i):
        w = data[i % 64]
        opt.zero_grad(set_to_none=True)
        logits = fwd(w[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, c["vocab"]), w[:, 1:].reshape(-1), ignore_index=0)
        loss.backward()
        opt.step()
        return loss

    t0 = time.perf_counter()
    for i in range(3):
        step(i)
    warm = time.perf_counter() - t0
    steps = max(1, int(args.amount) // b)
    t0, c0, done = time.perf_counter(), time.process_time(), 0
    for i in range(steps):
        loss = step(i + 3)
        done += 1
        if time.perf_counter() - t0 > TRAIN_CAP_S:
            break
    secs, cpu = time.perf_counter() - t0, time.process_time() - c0
    # cpu_tokens_per_second: tokens per second of this process's CPU time
    # (user + sys), which a loaded machine disturbs less than the wall clock.
    return {"images_per_second": done * b * t / secs, "cpu_tokens_per_second": done * b * t / cpu,
            "loss": float(loss.item()), "version": torch.__version__, "warmup_s": warm}
