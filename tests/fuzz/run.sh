#!/usr/bin/env bash
# tests/fuzz/run.sh BUILD_DIR SECONDS [TARGET...] -- runs the libFuzzer targets
# built in BUILD_DIR/fuzz (NETC_FUZZ=ON; scripts/fuzz.sh does it all): each one,
# in turn and in one process, first replays its seed corpus tests/fuzz/corpus/T,
# then fuzzes for SECONDS (0: replay only) from a scratch copy of it, so the
# repository's seeds stay as they are. Prints one line per target: executions,
# coverage (cov: edges, ft: features) and corpus size. A crash, sanitizer
# report, leak, timeout (> 10 s per input; NETC_FUZZ_TIMEOUT=S changes it, for
# long runs at low priority on a busy machine, where a 0.5 s input can wait
# longer than 10 s for a core) or an allocation over 1 GiB stops
# that target; the input is saved as BUILD_DIR/fuzz/findings/T/crash-... and the
# run exits 1 at the end. NETC_FUZZ_KEEP=DIR keeps the grown corpora in DIR/T.
set -u
build="$1"; secs="$2"; shift 2
here="$(cd "$(dirname "$0")" && pwd)"
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(net ir ckpt npy idx idx_gz csv image array text)
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:allocator_may_return_null=1${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
fails=0
for t in "${targets[@]}"; do
  bin="$build/fuzz/fuzz_$t"
  if [ ! -x "$bin" ]; then echo "fuzz: $t: $bin is not built"; fails=$((fails + 1)); continue; fi
  work="$(mktemp -d)"; findings="$build/fuzz/findings/$t"; mkdir -p "$findings"
  cp "$here/corpus/$t"/* "$work"/ 2>/dev/null
  # the .net and IR targets need room for whole programs; the loaders do not
  case "$t" in net|ir) max_len=16384 ;; *) max_len=4096 ;; esac
  if [ "$secs" -gt 0 ]; then mode=(-max_total_time="$secs"); else mode=(-runs=0); fi
  log="$findings/log"
  "$bin" "${mode[@]}" -max_len="$max_len" -timeout="${NETC_FUZZ_TIMEOUT:-10}" -rss_limit_mb=2048 -malloc_limit_mb=1024 \
    -print_final_stats=1 -artifact_prefix="$findings/" "$work" >"$log" 2>&1
  rc=$?
  stats=$(grep -E '^#[0-9]+' "$log" | tail -1)
  execs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
  cov=$(echo "$stats" | grep -oE 'cov: [0-9]+' | awk '{print $2}')
  ft=$(echo "$stats" | grep -oE 'ft: [0-9]+' | awk '{print $2}')
  corp=$(echo "$stats" | grep -oE 'corp: [0-9]+/[0-9]+(b|Kb|Mb)' | awk '{print $2}')
  if [ $rc -ne 0 ]; then
    echo "fuzz: $t: FAILED (exit $rc) after ${execs:-?} executions; see $log and $findings/"
    grep -E 'ERROR|SUMMARY|runtime error|internal error|Test unit written' "$log" | head -8
    fails=$((fails + 1))
  else
    echo "fuzz: $t: ${execs:-?} executions in ${secs}s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}"
  fi
  if [ -n "${NETC_FUZZ_KEEP:-}" ]; then mkdir -p "$NETC_FUZZ_KEEP/$t"; cp "$work"/* "$NETC_FUZZ_KEEP/$t"/ 2>/dev/null; fi
  rm -rf "$work"
done
echo "fuzz: ${#targets[@]} targets, $fails failed"
[ $fails -eq 0 ]
