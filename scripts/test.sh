#!/usr/bin/env bash
# scripts/test.sh -- set everything up (scripts/setup.sh) and run every test suite
# through CTest: C unit tests and the lit + FileCheck suites; then the fuzz
# targets (scripts/fuzz.sh). This is the test command README.md gives and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
# The fuzz targets (tests/fuzz): each corpus replayed under ASan+UBSan+LSan, then
# NETC_FUZZ_SECONDS (default 20) of fuzzing per target, about 3 minutes in all.
bash scripts/fuzz.sh "${NETC_FUZZ_SECONDS:-20}"
