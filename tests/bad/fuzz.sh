#!/usr/bin/env bash
# tests/bad/fuzz.sh TOOL EXAMPLES_DIR -- hostile inputs made from the examples:
# every example cut at many offsets, with bytes flipped, lines swapped and lines
# doubled; `TOOL check` (and `TOOL opt` on cut IR) must exit 0 or 1 with no
# sanitizer report and no internal error. Deterministic: no randomness.
set -u
tool="$1"; examples="$2"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
fails=0; runs=0

run() {  # run CMD... ; judge exit status and output
  "$@" >"$tmp/out" 2>&1; rc=$?
  runs=$((runs + 1))
  if [ $rc -gt 1 ] || grep -qE 'Sanitizer|runtime error|internal error' "$tmp/out"; then
    echo "FAIL (exit $rc): $*"; head -20 "$tmp/out"; cp "$tmp/in" "$tmp/../netc-fuzz-fail-$runs" 2>/dev/null
    fails=$((fails + 1))
  fi
}

for ex in "$examples"/*.net; do
  size=$(wc -c <"$ex")
  step=$(( size / 16 + 1 ))
  for ((cut = 0; cut < size; cut += step)); do
    head -c "$cut" "$ex" >"$tmp/in.net"; cp "$tmp/in.net" "$tmp/in"
    run "$tool" check "$tmp/in.net"
    # flip one byte at the cut point to each of a few hostile values
    for b in '\x00' '\xff' '{' ')'; do
      { head -c "$cut" "$ex"; printf "$b"; tail -c +"$((cut + 2))" "$ex"; } >"$tmp/in.net"
      cp "$tmp/in.net" "$tmp/in"
      run "$tool" check "$tmp/in.net"
    done
  done
  # each line doubled, and the file reversed line by line
  awk '{print; print}' "$ex" >"$tmp/in.net"; cp "$tmp/in.net" "$tmp/in"; run "$tool" check "$tmp/in.net"
  tac "$ex" >"$tmp/in.net"; cp "$tmp/in.net" "$tmp/in"; run "$tool" check "$tmp/in.net"
  # its IR, cut at many offsets, through the IR parser
  if "$tool" dump "$ex" >"$tmp/full.ir" 2>/dev/null; then
    isize=$(wc -c <"$tmp/full.ir"); istep=$(( isize / 24 + 1 ))
    for ((cut = 0; cut < isize; cut += istep)); do
      head -c "$cut" "$tmp/full.ir" >"$tmp/in.ir"; cp "$tmp/in.ir" "$tmp/in"
      run "$tool" opt "$tmp/in.ir"
      { head -c "$cut" "$tmp/full.ir"; printf 'x'; tail -c +"$((cut + 2))" "$tmp/full.ir"; } >"$tmp/in.ir"
      cp "$tmp/in.ir" "$tmp/in"; run "$tool" opt "$tmp/in.ir"
    done
  fi
done
echo "fuzz: $runs runs, $fails failures"
[ $fails -eq 0 ]
