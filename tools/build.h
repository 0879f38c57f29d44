/* tools/build.h -- the backend commands of `netc`: emit (write the generated
 * sources), build (emit into a temporary directory and compile a native program
 * against libnetrt) and run (build into a cache directory keyed by the model's
 * text, the compiler version and the flags, then exec the program). */
#ifndef NETC_TOOLS_BUILD_H
#define NETC_TOOLS_BUILD_H

#include <stdbool.h>

/* Each takes the arguments after the command name and netc's version string;
 * returns the exit status (0, 1 user error, 2 usage error). build_cmd_run
 * returns only on failure: on success it execs the program. */
int build_cmd_emit(int argc, char **argv, const char *version);
int build_cmd_build(int argc, char **argv, const char *version);
int build_cmd_run(int argc, char **argv, const char *version);

/* Builds FILE.net for `target` (a name in codegen/targets.c's registry) into program `out` with the
 * default pipeline and flags (-O2, $CC); errors are reported as `netc CMD: ...`.
 * For netc check --backends. */
bool build_program(const char *cmd, const char *file, const char *target, const char *out,
                   const char *version);

/* The runtime programs are compiled against. */
struct runtime_paths {
    const char *include; /* the directory of netrt.h */
    const char *lib;     /* libnetrt.a */
    const char *mpi_lib; /* libnetrt_mpi.a, "" without MPI */
    bool installed;      /* found next to the installed netc (PREFIX/bin/../lib) */
};
const struct runtime_paths *build_runtime(void);
struct cg_target;
/* The path of target t's runtime library (cg_target.runtime_lib) beside
 * libnetrt.a, or "" when t has none or it is missing. */
const char *build_target_lib(const struct cg_target *t);

#endif
