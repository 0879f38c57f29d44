"""tests/e2e/Inputs/same_classes.py PREDICT_OUT CLASSIFY_OUT -- the classes and
probabilities `PROGRAM predict --load CK F1 F2 ...` printed (an `F:` line, then
`0 logits: class K probability P`) against examples/embed/classify's
`F: class K (NAME) probability P`: every file, the same class, probabilities
at most one printed unit apart (both print 4 decimals: float32 noise between
the batched and the one-image forward can round to neighbouring digits). Prints `N images agree`."""
import re
import sys

pred, cur = {}, None
for line in open(sys.argv[1]):
    line = line.strip()
    m = re.match(r"0 logits: class (\d+) probability ([0-9.]+)$", line)
    if m and cur:
        pred[cur] = (int(m.group(1)), float(m.group(2)))
    elif line.endswith(":"):
        cur = line[:-1]
emb = {}
for line in open(sys.argv[2]):
    m = re.match(r"(.+): class (\d+) \(.+\) probability ([0-9.]+)$", line.strip())
    if m:
        emb[m.group(1)] = (int(m.group(2)), float(m.group(3)))
assert pred and set(pred) == set(emb), (sorted(pred), sorted(emb))
for f in pred:
    assert pred[f][0] == emb[f][0] and abs(round(pred[f][1] * 1e4) - round(emb[f][1] * 1e4)) <= 1, (f, pred[f], emb[f])
print(f"{len(pred)} images agree")
