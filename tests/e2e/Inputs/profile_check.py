"""Checks the NETC_PROFILE=1 tables a netc program printed to stderr (file argv[1]):
every entry point named in argv[2:] has a table whose shares add up to 100 % (within
the rounding of the printed figures), whose calls equal the entry's runs, and that
lists the functions given with --fn (each in some table). Prints one line per table."""
import re
import sys

def main():
    text = open(sys.argv[1]).read()
    args = sys.argv[2:]
    fns = [args[i + 1] for i, a in enumerate(args) if a == "--fn"]
    entries = [a for i, a in enumerate(args) if a != "--fn" and (i == 0 or args[i - 1] != "--fn")]
    tables = {}
    cur = None
    for line in text.splitlines():
        m = re.match(r"netc profile: (\S+), entry point (\S+): (\d+) runs, (\d+) items, ([0-9.]+) ms", line)
        if m:
            cur = {"runs": int(m.group(3)), "ms": float(m.group(5)), "rows": []}
            tables[m.group(2)] = cur
            continue
        m = re.match(r"\s+([0-9.-]+)\s+([0-9.-]+)%\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+(.*)$", line)
        if m and cur is not None:
            cur["rows"].append({"ms": float(m.group(1)), "share": float(m.group(2)), "calls": int(m.group(3)),
                                "best": m.group(4), "gflops": m.group(5), "gbs": m.group(6), "fn": m.group(7),
                                "ops": m.group(8)})
    seen = set()
    for e in entries:
        t = tables.get(e)
        assert t, "no table for entry point %s in:\n%s" % (e, text)
        assert len(t["rows"]) >= 2, t
        share = sum(r["share"] for r in t["rows"])
        assert abs(share - 100) < 0.01 * len(t["rows"]) + 0.05, (e, share)
        ms = sum(r["ms"] for r in t["rows"])
        assert abs(ms - t["ms"]) <= 0.001 * len(t["rows"]) + 0.01 * t["ms"], (e, ms, t["ms"])
        times = [r["ms"] for r in t["rows"][:-1]]
        assert times == sorted(times, reverse=True), (e, "not sorted by time", times)
        assert t["rows"][-1]["fn"] == "(entry)", t["rows"][-1]
        for r in t["rows"]:
            assert r["calls"] == t["runs"], (e, r)
            if r["fn"] != "(entry)":  # the fastest call: at most the mean one
                assert float(r["best"]) * 1e-3 <= (r["ms"] + 0.0005) / r["calls"] + 1e-5, (e, r)  # printed rounding
            seen.add(r["fn"])
        # The assert above allows each printed share's rounding (0.005 each): a
        # rounded sum (99.9 with ~40 rows) would not be a failure.
        print("%s: %d units, shares add up to 100 %%" % (e, len(t["rows"]) - 1))
    for f in fns:
        assert f in seen, (f, sorted(seen))
    print("functions:", " ".join(fns))

main()
