/* tools/cli.h -- what every `netc` command shares (cli.c): exit statuses, the
 * usage and user error lines, usage texts whose target lists come from the
 * registry (codegen/targets.c), small argument helpers, and output written to a
 * temporary file and renamed into place. */
#ifndef NETC_TOOLS_CLI_H
#define NETC_TOOLS_CLI_H

#include <stdbool.h>
#include <stdio.h>

/* Exit statuses: 0 success, 1 user error, 2 usage error (70, internal error, is
 * NETC_UNREACHABLE's). */
enum cli_exit {
    CLI_EXIT_USER = 1,  /* an error in the input files or the environment */
    CLI_EXIT_USAGE = 2, /* an error in the command line */
};

/* `netc CMD: error: MESSAGE` and `run `netc CMD --help` for usage` on stderr
 * (cmd NULL: `netc: error: ...`, `netc --help`). */
void cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* `netc CMD: error: MESSAGE` on stderr (cmd NULL: `netc: error: ...`). */
void cli_user_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Prints a usage text to out, a line `@TARGETS@` replaced by one line per
 * target that builds programs (name and help, the default marked), and
 * `@ALL_TARGETS@` by one per target (netc emit's), and `@LINK_LINES@` by each
 * program target's compile and link command. */
void cli_print_usage(FILE *out, const char *text);
/* Reports an unknown --target (or --backends) name, listing the registry's
 * targets (with lib, every one; else those that build programs, and that
 * ones like lib are for `netc emit`). */
void cli_unknown_target(const char *cmd, const char *what, const char *name, bool lib);

/* Whether arg asks for help (--help, -h). */
bool cli_is_help(const char *arg);
/* The value of arg when it is `NAME=VALUE`, else NULL. */
const char *cli_value(const char *arg, const char *name);
/* An argument of a command that is neither a known flag nor its value: an
 * unknown option (starts with -), the input file, or a second input file.
 * Returns 0, or CLI_EXIT_USAGE after reporting. */
int cli_positional(const char *cmd, const char *arg, const char **file);
/* After the arguments: CLI_EXIT_USAGE (reported) when no input file was given. */
int cli_need_file(const char *cmd, const char *file);
/* A --bucket-size value: bytes, K or M suffix, 64 to 1T. False after reporting. */
bool cli_bytes(const char *cmd, const char *flag, const char *val, long long *out);

/* PATH.tmp.PID, the temporary file beside path that is renamed over it. */
void cli_tmp_path(char *buf, size_t size, const char *path);
/* Output that appears only when complete: written to a temporary file beside
 * path and renamed over it on success, removed on failure; path NULL or "-":
 * standard output. */
struct cli_output {
    FILE *f;          /* where to write */
    const char *path; /* final path, or NULL for stdout */
    char tmp[4200];   /* temporary path */
};
/* False after reporting (as `netc CMD: error: cannot write ...`). */
bool cli_output_open(struct cli_output *o, const char *cmd, const char *path);
/* Closes; ok false (or a failed write) removes the temporary file. Returns
 * whether the output is in place. */
bool cli_output_close(struct cli_output *o, const char *cmd, bool ok);

#endif
