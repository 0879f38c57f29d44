#!/usr/bin/env python3
"""tests/e2e/Inputs/killrun.py -- starts a training run that saves a checkpoint
every epoch, waits until it has saved CKPT (a new file renamed over any older
one), lets it run DELAY more seconds, kills it with SIGKILL (no chance to clean
up) and reports what is left beside CKPT.
usage: killrun.py CKPT DELAY PROGRAM ARGS...
Prints `killed: temporary file left` when the run's own CKPT.tmp.<pid> is left
(it was killed during a save), else `killed: nothing left`. Exits 1 if CKPT never
appeared, the run ended before it was killed, or anything else new is left."""
import os
import signal
import subprocess
import sys
import time

ckpt, delay, cmd = sys.argv[1], float(sys.argv[2]), sys.argv[3:]


def inode(path):
    """The identity of the file at path: its inode and modification time (a file
    renamed over CKPT can reuse the inode of the one it replaced two saves ago
    when saves follow each other within milliseconds)."""
    try:
        st = os.stat(path)
        return (st.st_ino, st.st_mtime_ns)
    except FileNotFoundError:
        return None


before = set(os.listdir("."))
old = inode(ckpt)
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
deadline = time.time() + 30
while inode(ckpt) in (None, old) and p.poll() is None and time.time() < deadline:
    time.sleep(0.01)
if inode(ckpt) in (None, old):
    p.kill()
    sys.exit(f"no new {ckpt} appeared")
time.sleep(delay)
if p.poll() is not None:
    sys.exit(f"the run ended (status {p.returncode}) before it was killed")
p.send_signal(signal.SIGKILL)
p.wait()
left = sorted(set(os.listdir(".")) - before - {ckpt})
own = f"{ckpt}.tmp.{p.pid}"
if [n for n in left if n != own]:
    sys.exit(f"unexpected files left: {left}")
print("killed:", "temporary file left" if own in left else "nothing left")
