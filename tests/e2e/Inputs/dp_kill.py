#!/usr/bin/env python3
"""tests/e2e/Inputs/dp_kill.py -- starts an MPI training job (MPIRUN ARGS...)
that writes METRICS every epoch, waits until it has written a line, kills one
rank (the process of the job whose environment says OMPI_COMM_WORLD_RANK=RANK)
with SIGKILL and measures how long the job takes to end. Prints
`job ended: status S after T s` and the job's stderr; exits 1 when the job
never started, the rank was not found, it still ran after LIMIT seconds
(killed then: a hang) or it ended with status 0.
usage: dp_kill.py METRICS RANK LIMIT MPIRUN ARGS..."""
import os
import signal
import subprocess
import sys
import time

metrics, rank, limit, cmd = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4:]


def descendants(pid):
    """Every process below pid (by /proc/*/stat parent links)."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = open(f"/proc/{d}/stat").read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        for c in children.get(p, []):
            out.append(c)
            todo.append(c)
    return out


def rank_of(pid):
    try:
        env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    except OSError:
        return None
    for e in env:
        if e.startswith(b"OMPI_COMM_WORLD_RANK="):
            return e.split(b"=", 1)[1].decode()
    return None


p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
deadline = time.time() + 60
while p.poll() is None and time.time() < deadline:
    if os.path.exists(metrics) and open(metrics).read().count("\n") >= 1:
        break
    time.sleep(0.05)
if p.poll() is not None:
    sys.exit(f"the job ended (status {p.returncode}) before a rank was killed: {p.stderr.read().decode()}")
victims = [q for q in descendants(p.pid) if rank_of(q) == rank]
if not victims:
    p.kill()
    sys.exit(f"no process of rank {rank} under mpirun {p.pid}")
t0 = time.time()
os.kill(victims[0], signal.SIGKILL)
try:
    _, err = p.communicate(timeout=limit)
except subprocess.TimeoutExpired:
    p.kill()
    for q in descendants(p.pid):
        os.kill(q, signal.SIGKILL)
    sys.exit(f"the job still ran {limit:g} s after rank {rank} was killed: a hang")
print(f"job ended: status {p.returncode} after {time.time() - t0:.1f} s")
print(err.decode(errors="replace"))
if p.returncode == 0:
    sys.exit("the job ended with status 0")
