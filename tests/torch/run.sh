#!/usr/bin/env bash
# tests/torch/run.sh -- the PyTorch cross-check (crosscheck.py) in its virtual
# environment: $NETC_TORCH_VENV, else ${XDG_CACHE_HOME:-$HOME/.cache}/netc/venv-torch,
# created when missing (python3 -m venv + pip install torch numpy from PyPI:
# about 5 GB and a few minutes, once). A failed install fails the run.
# usage: tests/torch/run.sh [--netc build/netc] [crosscheck.py options] [MODEL...]
#        tests/torch/run.sh --script other.py [its arguments]   (another script of this folder)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${NETC_TORCH_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/netc/venv-torch}"
py="$venv/bin/python"
if ! "$py" -c 'import torch, numpy' 2>/dev/null; then
    echo "torch-crosscheck: creating the PyTorch environment in $venv (pip install torch numpy)" >&2
    mkdir -p "$(dirname "$venv")"
    if ! { [ -x "$py" ] || python3 -m venv "$venv"; } ||
       ! "$py" -m pip install --quiet --disable-pip-version-check torch numpy ||
       ! "$py" -c 'import torch, numpy'; then
        echo "torch-crosscheck: error: could not install torch and numpy into $venv" \
             "(python3-venv and network access to PyPI are needed; set NETC_TORCH_VENV to an" \
             "environment that has them)" >&2
        exit 1
    fi
fi
script=crosscheck.py
if [ "${1:-}" = --script ]; then script="$2"; shift 2; fi
exec "$py" "$here/$script" "$@"
