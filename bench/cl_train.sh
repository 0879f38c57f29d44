#!/usr/bin/env bash
# bench/cl_train.sh -- training throughput of one model built for the OpenCL
# target against the same model built for the C target, on this machine: both
# train STEPS batches of the model's own data from the same seed with all the
# machine's threads (OpenBLAS --threads for C; PoCL's CPU device uses every
# core unless POCL_MAX_PTHREAD_COUNT says otherwise), and the script prints
# the images/s that `--metrics` reports (training steps only, no evaluation)
# and their ratio. An untimed OpenCL run first fills the program-binary cache,
# as a user's second run would find it.
#   Usage: bench/cl_train.sh [BUILD_DIR] [MODEL.net] [STEPS] [DEVICE]
#   (defaults: build examples/mnist_cnn.net 200, the default device)
set -euo pipefail
cd "$(dirname "$0")/.."
build="${1:-build}"
model="${2:-examples/mnist_cnn.net}"
steps="${3:-200}"
device="${4:-}"
threads="$(nproc)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$build/netc" build "$model" -o "$tmp/model_c"
"$build/netc" build "$model" --target=opencl -o "$tmp/model_cl"
dev=()
[ -n "$device" ] && dev=(--device "$device")

ips() { python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["images_per_second"])' "$1"; }

"$tmp/model_cl" train --max-steps 2 --quiet "${dev[@]}" >/dev/null
"$tmp/model_c" train --max-steps "$steps" --threads "$threads" --quiet --metrics "$tmp/c.jsonl"
"$tmp/model_cl" train --max-steps "$steps" --quiet "${dev[@]}" --metrics "$tmp/cl.jsonl"
c="$(ips "$tmp/c.jsonl")"
cl="$(ips "$tmp/cl.jsonl")"
echo "model $(basename "$model"), $steps training steps, $threads threads, $(uname -m)"
"$tmp/model_cl" info --device list | sed 's/^/opencl devices: /'
printf '%-10s %12s\n' target 'images/s'
printf '%-10s %12.1f\n' c "$c" opencl "$cl"
python3 -c 'import sys; print("opencl/c: %.2f" % (float(sys.argv[2]) / float(sys.argv[1])))' "$c" "$cl"
