#!/usr/bin/env python3
"""bench/build_time.py -- how long `netc build` takes for every example.

    python3 bench/build_time.py [--netc build/netc] [--repeats 3] [--examples mlp,tiny_gpt]
                                [--cflags ...] [--baseline OTHER_NETC]

For each example, each repeat builds it twice in a row with a fresh, empty
object cache (NETC_CACHE_DIR in a temporary directory): the first build is
cold (every translation unit compiled), the second warm (every object from the
cache: netc's passes, the emission and the link only). Examples alternate
within a repeat, so a change of the machine's load spreads over all of them.
The table shows medians of wall-clock seconds and of CPU seconds (netc and the
C compilers it runs, user + system), the generated C's size (`netc emit`) and
the translation units compiled cold. With --baseline, another netc (an older
one, say) builds each example too, in the same alternation, with its own empty
cache (a netc without one ignores it). The load (uptime) is printed before and
after: on a busy machine wall times move, CPU times less so. The target the
issue sets: every example's build within 1 s of wall-clock time."""
import argparse
import glob
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def timed(cmd, env):
    """(wall seconds, CPU seconds of the children) of running cmd."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def c_size(netc, net, tmp):
    out = os.path.join(tmp, "emit")
    subprocess.run([netc, "emit", net, "-o", out], check=True, stdout=subprocess.DEVNULL)
    size = sum(os.path.getsize(p) for p in glob.glob(os.path.join(out, "*.c")))
    for p in glob.glob(os.path.join(out, "*")):
        os.remove(p)
    return size


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--netc", default=os.path.join(ROOT, "build", "netc"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--examples", default="", help="comma-separated names (default: every examples/*.net)")
    ap.add_argument("--cflags", default="", help="passed to netc build as --cflags")
    ap.add_argument("--baseline", default="", help="another netc to time alongside (cold builds)")
    args = ap.parse_args()
    names = args.examples.split(",") if args.examples else sorted(
        os.path.basename(p)[:-4] for p in glob.glob(os.path.join(ROOT, "examples", "*.net")))
    print(f"netc build, {args.repeats} alternating repeats, medians; load before: {load()}")
    cold = {n: [] for n in names}
    warm = {n: [] for n in names}
    base = {n: [] for n in names}
    units = {}
    with tempfile.TemporaryDirectory() as tmp:
        sizes = {n: c_size(args.netc, os.path.join(ROOT, "examples", n + ".net"), tmp) for n in names}
        for r in range(args.repeats):
            for n in names:
                cache = os.path.join(tmp, f"cache-{r}-{n}")
                env = dict(os.environ, NETC_CACHE_DIR=cache)
                env.pop("NETC_CACHE", None)
                cmd = [args.netc, "build", os.path.join(ROOT, "examples", n + ".net"), "-o", os.path.join(tmp, n)]
                if args.cflags:
                    cmd.append("--cflags=" + args.cflags)
                cold[n].append(timed(cmd, env))
                units[n] = len(glob.glob(os.path.join(cache, "*.o")))
                warm[n].append(timed(cmd, env))
                if args.baseline:
                    env["NETC_CACHE_DIR"] = cache + "-baseline"
                    base[n].append(timed([args.baseline] + cmd[1:], env))
    print(f"{'example':20} {'C bytes':>8} {'units':>5}  {'cold wall':>9} {'cold cpu':>8}  {'warm wall':>9} "
          f"{'warm cpu':>8}" + (f"  {'base wall':>9} {'base cpu':>8}" if args.baseline else ""))
    worst = 0.0
    for n in names:
        cw = statistics.median(w for w, _ in cold[n])
        cc = statistics.median(c for _, c in cold[n])
        ww = statistics.median(w for w, _ in warm[n])
        wc = statistics.median(c for _, c in warm[n])
        worst = max(worst, cw)
        line = f"{n:20} {sizes[n]:8d} {units[n]:5d}  {cw:9.2f} {cc:8.2f}  {ww:9.2f} {wc:8.2f}"
        if args.baseline:
            line += (f"  {statistics.median(w for w, _ in base[n]):9.2f}"
                     f" {statistics.median(c for _, c in base[n]):8.2f}")
        print(line)
    print(f"slowest cold build: {worst:.2f} s wall; load after: {load()}")


if __name__ == "__main__":
    sys.exit(main())
