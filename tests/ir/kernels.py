#!/usr/bin/env python3
# tests/ir/kernels.py -- checks that a backend emits exactly the kernels of the IR:
# `kernels.py DUMP.ir EMITTED.c` reads the kernels (`kernel=K`) of each function of
# the dump and the `kernel=K fuses %a %b ...` comments of each entry point
# (`entry_E`) of the generated C, and prints one line per function, `@NAME: N
# kernels agree`, or what differs (then exits 1).
import re
import sys


def dump_kernels(path):
    funcs, cur = [], None
    for line in open(path):
        m = re.match(r'func @("[^"]*"|\S+)', line)
        if m:
            cur = {}
            funcs.append((m.group(1), cur))
            continue
        m = re.match(r'\s*%(\d+) = .* kernel=(\d+)', line)
        if m and cur is not None:
            cur.setdefault(int(m.group(2)), []).append(int(m.group(1)))
    return funcs


def emitted_kernels(path):
    entries, cur = {}, None
    for line in open(path):
        m = re.match(r'static void entry_(\d+)\(', line)
        if m:
            cur = entries.setdefault(int(m.group(1)), {})
            continue
        m = re.search(r'/\* kernel=(\d+) fuses((?: %\d+)+) \*/', line)
        if m and cur is not None:
            k = int(m.group(1))
            if k in cur:
                print("kernel %d emitted twice in one entry point" % k)
                sys.exit(1)
            cur[k] = [int(x) for x in m.group(2).replace('%', '').split()]
    return entries


def main():
    funcs = dump_kernels(sys.argv[1])
    entries = emitted_kernels(sys.argv[2])
    ok = len(funcs) == len(entries)
    if not ok:
        print("%d functions in the dump, %d entry points emitted" % (len(funcs), len(entries)))
    for e, (name, kernels) in enumerate(funcs):
        got = entries.get(e, {})
        if kernels == got:
            print("@%s: %d kernels agree" % (name, len(kernels)))
            continue
        ok = False
        for k in sorted(set(kernels) | set(got)):
            if kernels.get(k) != got.get(k):
                print("@%s: kernel %d: dump %s, emitted %s" % (name, k, kernels.get(k), got.get(k)))
    sys.exit(0 if ok else 1)


main()
