#!/bin/sh
# tests/e2e/Inputs/renaming_cc.sh -- a C compiler for `netc build --cc=` that
# renames, in the generated C it is given, the entry points (forward -> infer,
# evaluate -> score), the outputs (loss -> objective, accuracy -> acc_metric)
# and the learning-rate buffer (train_step.lr -> rate), then runs cc: the
# runtime must find them through the descriptor's indices, not their names.
for a in "$@"; do
    case "$a" in
    *.c) sed -i -e 's/"loss"/"objective"/g' -e 's/"accuracy"/"acc_metric"/g' -e 's/"forward"/"infer"/g' \
             -e 's/"evaluate"/"score"/g' -e 's/"train_step\.lr"/"rate"/g' "$a" ;;
    esac
done
exec "${CC:-cc}" "$@"
