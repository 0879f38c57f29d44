#!/usr/bin/env bash
# scripts/test.sh -- set everything up (scripts/setup.sh) and run every test suite
# through CTest: C unit tests and the lit + FileCheck suites. This is the test
# command README.md gives and .ci/run runs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure -j"$(nproc)"
