#!/usr/bin/env bash
# bench/cl_train.sh -- training throughput of one model built for the OpenCL
# target against the same model built for the C target, on this machine: both
# train STEPS batches of the model's own data from the same seed with THREADS
# threads (OpenBLAS and the runtime's for C; PoCL's CPU device for OpenCL), and
# the script prints the images/s that `--metrics` reports (training steps
# only: no evaluation, no program build) and their ratio. An untimed OpenCL run
# first fills the program-binary cache, as a user's second run would find it.
# RUNS > 1 interleaves that many runs of each build (C, OpenCL, C, ...) and
# reports the medians, which load on a shared machine disturbs less.
#   Usage: bench/cl_train.sh [BUILD_DIR] [MODEL.net] [STEPS] [DEVICE] [THREADS] [RUNS]
#   (defaults: build examples/mnist_cnn.net 200, the default device, all
#   cores, 1 run)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
model="${2:-examples/mnist_cnn.net}"
steps="${3:-200}"
device="${4:-}"
threads="${5:-$(nproc)}"
runs="${6:-1}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$build/netc" build "$model" -o "$tmp/model_c"
"$build/netc" build "$model" --target=opencl -o "$tmp/model_cl"
dev=()
[ -n "$device" ] && dev=(--device "$device")

ips() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["images_per_second"])' "$1"; }

"$tmp/model_cl" train --max-steps 2 --quiet "${dev[@]}" >/dev/null
cs=() cls=()
for ((r = 0; r < runs; r++)); do
    "$tmp/model_c" train --max-steps "$steps" --threads "$threads" --quiet --metrics "$tmp/c.jsonl"
    "$tmp/model_cl" train --max-steps "$steps" --threads "$threads" --quiet "${dev[@]}" --metrics "$tmp/cl.jsonl"
    cs+=("$(ips "$tmp/c.jsonl")")
    cls+=("$(ips "$tmp/cl.jsonl")")
done
echo "model $(basename "$model"), $steps training steps, $threads threads, $runs runs, $(uname -m)"
"$tmp/model_cl" info --device list | sed 's/^/opencl devices: /'
python3 - "${cs[*]}" "${cls[*]}" <<'PY'
import statistics, sys
c = [float(v) for v in sys.argv[1].split()]
cl = [float(v) for v in sys.argv[2].split()]
print("%-10s %12s   %s" % ("target", "images/s", "runs"))
print("%-10s %12.1f   %s" % ("c", statistics.median(c), " ".join("%.0f" % v for v in c)))
print("%-10s %12.1f   %s" % ("opencl", statistics.median(cl), " ".join("%.0f" % v for v in cl)))
print("opencl/c: %.2f (medians; per run: %s)" % (statistics.median(cl) / statistics.median(c),
      " ".join("%.2f" % (b / a) for a, b in zip(c, cl))))
PY
