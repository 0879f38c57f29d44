#!/usr/bin/env python3
"""tests/e2e/Inputs/metrics.py -- checks a --metrics file: every line one JSON
object with the documented keys; optional bounds on the last line.
usage: metrics.py FILE [--lines N] [--min-test-accuracy X] [--max-loss X]
                       [--min-loss-drop F] [--partial] [--same-losses OTHER_FILE]
--min-loss-drop F: the first line's loss is at least F times the last line's."""
import json
import sys

KEYS = ("epoch", "loss", "train_accuracy", "test_accuracy", "seconds", "images_per_second")


def load(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            try:
                row = json.loads(line)
            except ValueError as e:
                sys.exit(f"{path}:{n}: not JSON: {e}")
            if not isinstance(row, dict):
                sys.exit(f"{path}:{n}: not a JSON object")
            for k in KEYS:
                if k not in row:
                    sys.exit(f"{path}:{n}: no key {k!r}")
            rows.append(row)
    if not rows:
        sys.exit(f"{path}: empty")
    return rows


def main():
    args = sys.argv[1:]
    rows = load(args[0])
    last = rows[-1]
    i = 1
    while i < len(args):
        a = args[i]
        if a == "--lines":
            if len(rows) != int(args[i + 1]):
                sys.exit(f"{len(rows)} lines, expected {args[i + 1]}")
            i += 1
        elif a == "--min-test-accuracy":
            acc = last["test_accuracy"]
            if acc is None or acc < float(args[i + 1]):
                sys.exit(f"test accuracy {acc}, expected >= {args[i + 1]}")
            print(f"test accuracy {acc:.4f} >= {args[i + 1]}")
            i += 1
        elif a == "--max-loss":
            if not last["loss"] <= float(args[i + 1]):
                sys.exit(f"loss {last['loss']}, expected <= {args[i + 1]}")
            i += 1
        elif a == "--min-loss-drop":
            first = rows[0]["loss"]
            if not (first > 0 and last["loss"] >= 0 and first >= float(args[i + 1]) * last["loss"]):
                sys.exit(f"loss {first} -> {last['loss']}, expected a drop of at least {args[i + 1]}x")
            print(f"loss {first:.4g} -> {last['loss']:.4g}: {first / max(last['loss'], 1e-30):.1f}x drop")
            i += 1
        elif a == "--partial":
            if last.get("complete") is not False:
                sys.exit("the last line is not marked as a partial epoch")
        elif a == "--same-losses":
            other = load(args[i + 1])
            mine = [(r["epoch"], r["loss"], r["test_accuracy"]) for r in rows]
            theirs = [(r["epoch"], r["loss"], r["test_accuracy"]) for r in other]
            if mine != theirs:
                sys.exit(f"loss curves differ: {mine} vs {theirs}")
            i += 1
        else:
            sys.exit(f"unknown option {a}")
        i += 1
    print("metrics ok")


main()
