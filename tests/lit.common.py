# tests/lit.common.py -- shared lit configuration of the ir, diag and bad suites.
# Each suite's lit.cfg.py execs this file. Substitutions: netc, FileCheck, not.
import os
import lit.formats

site = os.environ.get("NETC_LIT_SITE")
if not site:
    raise SystemExit("NETC_LIT_SITE is not set: run the lit suites through ctest")
site_vars = {}
with open(site) as f:
    exec(f.read(), site_vars)

config.test_format = lit.formats.ShTest(execute_external=True)
config.test_exec_root = os.path.join(site_vars["netc_binary_dir"], "tests", config.name)
netc = os.path.join(site_vars["netc_binary_dir"], "netc")
filecheck = site_vars["netc_filecheck"]
notbin = os.path.join(os.path.dirname(os.path.realpath(filecheck)), "not")
config.substitutions.append(("%netc", netc))
config.substitutions.append(("%FileCheck", filecheck))
config.substitutions.append(("%not", notbin))
config.substitutions.append(("%examples", os.path.join(site_vars["netc_source_dir"], "examples")))
config.environment["PATH"] = os.pathsep.join(
    [site_vars["netc_binary_dir"], os.path.dirname(filecheck), config.environment.get("PATH", "")])
if "HOME" in os.environ:
    config.environment["HOME"] = os.environ["HOME"]
# A sanitizer report aborts the process, so `not netc-asan ...` fails on it.
config.environment["ASAN_OPTIONS"] = "abort_on_error=1:detect_leaks=1"
config.environment["UBSAN_OPTIONS"] = "halt_on_error=1:abort_on_error=1:print_stacktrace=1"
# strace: tests that watch what netc does (no-verify.test counts the verifier's tmpfiles).
import shutil
if shutil.which("strace"):
    config.available_features.add("strace")
