#!/usr/bin/env bash
# scripts/format.sh -- the one formatting of netc's C sources (.clang-format,
# clang-format 14): `bash scripts/format.sh` rewrites every tracked .c/.h file in
# place; `bash scripts/format.sh --check` changes nothing and fails, naming the
# files and the first differences, when one is not formatted (a CTest test, `format`).
set -euo pipefail
cd "$(dirname "$0")/.."
cf="${CLANG_FORMAT:-$(command -v clang-format-14 || command -v clang-format || true)}"
if [ -z "$cf" ]; then
  echo "format.sh: error: clang-format not found (apt-get install clang-format-14)" >&2
  exit 2
fi
mapfile -t files < <(git ls-files '*.c' '*.h')
if [ "${1:-}" != "--check" ]; then
  "$cf" -i "${files[@]}"
  exit 0
fi
bad=0
for f in "${files[@]}"; do
  if ! "$cf" "$f" | cmp -s - "$f"; then
    echo "format.sh: $f is not formatted (run bash scripts/format.sh):" >&2
    "$cf" "$f" | diff -u "$f" - | sed -n '3,12p' >&2 || true
    bad=1
  fi
done
exit $bad
