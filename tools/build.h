/* tools/build.h -- the backend commands of `netc`: emit (write the generated
 * sources), build (emit into a temporary directory and compile a native program
 * against libnetrt) and run (build into a cache directory keyed by the model's
 * text, the compiler version and the flags, then exec the program). */
#ifndef NETC_TOOLS_BUILD_H
#define NETC_TOOLS_BUILD_H

/* Each takes the arguments after the command name and netc's version string;
 * returns the exit status (0, 1 user error, 2 usage error). build_cmd_run
 * returns only on failure: on success it execs the program. */
int build_cmd_emit(int argc, char **argv, const char *version);
int build_cmd_build(int argc, char **argv, const char *version);
int build_cmd_run(int argc, char **argv, const char *version);

#endif
