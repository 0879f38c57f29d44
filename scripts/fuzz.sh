#!/usr/bin/env bash
# scripts/fuzz.sh [SECONDS] [TARGET...] -- builds the libFuzzer targets of
# tests/fuzz/ with clang, ASan, UBSan and LSan into build-fuzz/ (NETC_FUZZ=ON),
# then runs each target (default: all) in turn: its seed corpus replayed, then
# SECONDS of fuzzing (default 20; 0: replay only). CI runs it with 20 seconds
# per target (scripts/test.sh). To fuzz longer, e.g. 30 minutes on the front end,
# keeping what it grows:  NETC_FUZZ_KEEP=/tmp/corpora scripts/fuzz.sh 1800 net
# Findings land in build-fuzz/fuzz/findings/TARGET/; replay one with
#   build-fuzz/fuzz/fuzz_TARGET build-fuzz/fuzz/findings/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-20}"
[ $# -gt 0 ] && shift
cc="${NETC_FUZZ_CC:-clang-14}"
if ! command -v "$cc" >/dev/null; then
  echo "fuzz: $cc not found: apt-get install clang-14 libclang-rt-14-dev (scripts/setup.sh installs them)" >&2
  exit 1
fi
log=build-fuzz.log
if ! { cmake -S . -B build-fuzz -DCMAKE_C_COMPILER="$cc" -DNETC_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo &&
       cmake --build build-fuzz -j"$(nproc)" --target fuzz_all; } >"$log" 2>&1; then
  tail -40 "$log" >&2
  echo "fuzz: building the fuzz targets failed (whole log: $log)" >&2
  exit 1
fi
echo "fuzz: built build-fuzz/fuzz/ ($cc, ASan+UBSan+LSan); $secs s per target"
bash tests/fuzz/run.sh build-fuzz "$secs" "$@"
