# lit configuration of tests/e2e: examples built with `netc build` and trained on
# real data (Fashion-MNIST) or generated data; shared settings in tests/lit.common.py.
# Helper scripts live in Inputs/ (lit does not run them as tests).
import os
config.name = "e2e"
config.suffixes = ['.test']
exec(open(os.path.join(os.path.dirname(__file__), "..", "lit.common.py")).read())
config.substitutions.append(("%inputs", os.path.join(os.path.dirname(__file__), "Inputs")))
# Data parallelism (tests dp_*.test, `REQUIRES: mpi`): netc built with
# libnetrt_mpi.a and Open MPI's mpirun, run as root here (--allow-run-as-root)
# with more ranks than cores (--oversubscribe).
import shutil
if shutil.which("mpirun") and os.path.exists(
        os.path.join(site_vars["netc_binary_dir"], "runtime", "libnetrt_mpi.a")):
    config.available_features.add("mpi")
config.substitutions.append(("%mpirun", "mpirun --allow-run-as-root --oversubscribe"))
# The LLVM backend (tests llvm_*.test, `REQUIRES: llvm`): netc built with LLVM 14.
if site_vars.get("netc_llvm") == "ON":
    config.available_features.add("llvm")
