#!/usr/bin/env bash
# scripts/setup.sh -- install what netc needs on a Debian 12 machine, then configure
# and build it into build/. Installs only the packages that are missing; safe to
# run again. Usage: bash scripts/setup.sh [BUILD_TYPE]   (default RelWithDebInfo)
# NETC_BENCH=1 also installs what only the benchmarks use: CLBlast, the
# yardstick of bench/cl_gemm (built into build/bench/ when it is found).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  build-essential cmake flex bison          # the compiler's own build
  zlib1g-dev                                # gzip'd IDX data and checkpoints
  libpng-dev                                # PNG images for `./model predict` (runtime/image.c), sample grids
  libcairo2-dev                             # training curves: `train --plot`, `netc plot` (runtime/plot.c)
  pkg-config                                # the install tests build against netrt.pc
  libopenblas-dev                           # GEMMs of the C backend
  libdnnl-dev                               # oneDNN: the large GEMMs with NETC_GEMM=onednn (opened at run time)
  ocl-icd-opencl-dev opencl-headers         # OpenCL ICD loader and headers
  pocl-opencl-icd                           # an OpenCL device on the CPU (tests)
  llvm-14-tools                             # lit and FileCheck for the compiler tests
  llvm-14-dev                               # the LLVM backend (--target=llvm): LLVM-C API, ORC JIT (libLLVM-14)
  clang-format-14                           # the format check (scripts/format.sh, CTest format/clang_format)
  clang-14 libclang-rt-14-dev               # the libFuzzer targets (tests/fuzz, scripts/fuzz.sh): clang, libFuzzer, ASan/UBSan/LSan runtimes
  python3                                   # runs lit
  python3-venv                              # the PyTorch cross-check's environment (tests/torch/run.sh)
  graphviz                                  # renders `netc dump --format=dot` in tests
  strace                                    # tests/ir/no-verify.test watches the verifier's tmpfiles
  libopenmpi-dev openmpi-bin                # MPI: `netc build --mpi` (libnetrt_mpi), mpirun in tests
  dataset-fashion-mnist                     # the real data set of the examples
  fortunes fortunes-zh                      # real text (English fortunes, Tang poems) of the text examples
)
if [ "${NETC_BENCH:-0}" = 1 ]; then packages+=(libclblast-dev); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# numpy: the end-to-end tests write .npy inputs and read checkpoints with it.
if ! python3 -c 'import numpy' 2>/dev/null; then
  echo "setup: installing numpy for python3"
  python3 -m pip install -q numpy || { echo "setup: pip install numpy failed" >&2; exit 1; }
fi

build_type="${1:-RelWithDebInfo}"
cmake -S . -B build -DCMAKE_BUILD_TYPE="$build_type" >/dev/null
cmake --build build -j"$(nproc)"
echo "setup: built build/netc"
