/* tools/build.c -- `netc emit`, `netc build` and `netc run`: load a .net file,
 * run the pass pipeline, emit C through the target's struct (codegen.h), and for
 * build/run compile it with the system C compiler against libnetrt, whose header
 * directory and static library: next to the netc executable when it is installed
 * (PREFIX/include, PREFIX/lib), else the build tree's that CMake names
 * (NETC_RUNTIME_INCLUDE, NETC_RUNTIME_LIB). Every output appears atomically: a temporary file renamed
 * into place, removed on failure. Sections: options, pipeline and emission,
 * compiling, the three commands. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "tools/build.h"

#include "codegen/codegen.h"
#include "tools/cli.h"
#include "frontend/frontend.h"
#include "ir/ir.h"
#include "passes/passes.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <utime.h>

#ifndef NETC_RUNTIME_INCLUDE
#error "NETC_RUNTIME_INCLUDE must name the directory of netrt.h (set by tools/CMakeLists.txt)"
#endif
#ifndef NETC_RUNTIME_LIB
#error "NETC_RUNTIME_LIB must name libnetrt.a (set by tools/CMakeLists.txt)"
#endif
#ifndef NETC_RUNTIME_LDFLAGS
#define NETC_RUNTIME_LDFLAGS ""
#endif
/* libnetrt_mpi.a and the MPI libraries, space-separated, for --mpi ("" when
 * netc was built without MPI). */
#ifndef NETC_RUNTIME_MPI_LIB
#define NETC_RUNTIME_MPI_LIB ""
#endif
#ifndef NETC_MPI_LIBS
#define NETC_MPI_LIBS ""
#endif

/* Libraries libnetrt.a needs beyond the fixed ones ("-lcairo" with cairo). */
#ifndef NETC_RUNTIME_EXTRA_LIBS
#define NETC_RUNTIME_EXTRA_LIBS ""
#endif
#ifndef NETC_INSTALL_INCLUDEDIR
#define NETC_INSTALL_INCLUDEDIR "include"
#endif
#ifndef NETC_INSTALL_LIBDIR
#define NETC_INSTALL_LIBDIR "lib"
#endif

#define PATH_MAX_ 4096

/* -------------------------------------------------------------- runtime */

/* Where the runtime is: the installed tree around this netc (BIN/../include,
 * BIN/../lib) when it holds netrt.h and libnetrt.a, else the build tree; the
 * MPI layer and the targets' runtime libraries from the same place. */
static struct runtime_paths rt;

const struct runtime_paths *build_runtime(void) {
    if (rt.include) return &rt;
    rt.include = NETC_RUNTIME_INCLUDE;
    rt.lib = NETC_RUNTIME_LIB;
    rt.mpi_lib = NETC_RUNTIME_MPI_LIB;
    rt.installed = false;
    static char exe[PATH_MAX_], inc[PATH_MAX_ + 64], lib[PATH_MAX_ + 64], mpi[PATH_MAX_ + 64],
        hdr[PATH_MAX_ + 80];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return &rt;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash) return &rt;
    *slash = '\0';
    snprintf(inc, sizeof inc, "%s/../%s", exe, NETC_INSTALL_INCLUDEDIR);
    snprintf(lib, sizeof lib, "%s/../%s/libnetrt.a", exe, NETC_INSTALL_LIBDIR);
    snprintf(mpi, sizeof mpi, "%s/../%s/libnetrt_mpi.a", exe, NETC_INSTALL_LIBDIR);
    snprintf(hdr, sizeof hdr, "%s/netrt.h", inc);
    if (access(hdr, R_OK) != 0 || access(lib, R_OK) != 0) return &rt;
    rt.include = inc;
    rt.lib = lib;
    rt.mpi_lib = access(mpi, R_OK) == 0 ? mpi : "";
    rt.installed = true;
    return &rt;
}

const char *build_target_lib(const struct cg_target *t) {
    static char path[PATH_MAX_ + 128];
    if (!t->runtime_lib) return "";
    const char *lib = build_runtime()->lib, *slash = strrchr(lib, '/');
    snprintf(path, sizeof path, "%.*s%s", slash ? (int)(slash - lib + 1) : 0, lib, t->runtime_lib);
    return access(path, R_OK) == 0 ? path : "";
}

/* ------------------------------------------------------------- options */

static const char usage_build[] =
    "usage: netc build FILE.net -o PROGRAM [options]\n"
    "\n"
    "Compile FILE.net to a native program that trains and runs the model\n"
    "(`PROGRAM train`, `PROGRAM eval`, `PROGRAM predict`, `PROGRAM info`).\n"
    "\n"
    "  -o PROGRAM        the program to write (default: the model's name)\n"
    "  -O0 -O1 -O2 -O3   optimisation level for the C compiler (default -O3 -march=native)\n"
    "  --target=T        the backend, one of\n"
    "@TARGETS@\n"
    "  --cc=CC           the C compiler (default: $CC, else cc)\n"
    "  --cflags=FLAGS    extra flags for the C compiler, space-separated\n"
    "  --keep            keep the generated C (its path is printed)\n"
    "  --no-fuse         skip kernel formation: one loop nest per IR value\n"
    "  --mpi             data parallel: `mpirun -np K PROGRAM train` trains on K ranks,\n"
    "                    averaging gradients in buckets (links libnetrt_mpi.a -lmpi)\n"
    "  --bucket-size=B   --mpi: gradient bucket size in bytes, K or M suffix (default a\n"
    "                    quarter of the gradients, 64K to 4M; the first bucket at most 1M)\n"
    "  --sync-bn         --mpi: batch norm uses the statistics of every rank's items\n"
    "                    (default: each rank's own, as PyTorch's DDP)\n"
    "  --no-verify       skip the IR verifier that runs after every pass (on by\n"
    "                    default: it adds about 2 ms to a build; --verify is the default)\n"
    "\n"
    "The C goes to several translation units (the entry points; the kernels' and\n"
    "ops' functions in units of about 24 KB) compiled in parallel, each object\n"
    "cached by content (the source, netrt.h, the compiler, flags and CPU) in\n"
    "$NETC_CACHE_DIR, else $XDG_CACHE_HOME/netc/obj or ~/.cache/netc/obj, so\n"
    "that an unchanged unit is never compiled twice; NETC_CACHE=0: no cache.\n";

static const char usage_emit[] =
    "usage: netc emit FILE.net [--target=T] -o DIR/\n"
    "\n"
    "Write the generated sources to DIR (created if missing): DIR/MODEL.c, one\n"
    "C11 file including only netrt.h, and a copy of DIR/netrt.h. Compile it, for\n"
    "each target, with\n"
    "@LINK_LINES@\n"
    "\n"
    "A library target (lib) writes DIR/MODEL.c and DIR/MODEL.h, the model as a\n"
    "library to embed, with no main(): MODEL_open, MODEL_load, MODEL_input_NAME,\n"
    "MODEL_forward, MODEL_train_step, ... (docs/embedding.md). Compile with\n"
    "  cc -O3 -c DIR/MODEL.c $(pkg-config --cflags netrt)   and link with $(pkg-config --libs netrt)\n"
    "\n"
    "  -o DIR            output directory (default: .)\n"
    "  --target=T        the backend, one of\n"
    "@ALL_TARGETS@\n"
    "  --no-fuse         skip kernel formation: one loop nest per IR value\n"
    "  --mpi, --bucket-size=B, --sync-bn   data parallel, as for `netc build`; link\n"
    "                    libnetrt_mpi.a before libnetrt.a, and -lmpi\n"
    "  --no-verify       skip the IR verifier after every pass (on by default)\n";

static const char usage_run[] =
    "usage: netc run FILE.net [build options] [-- PROGRAM ARGS...]\n"
    "\n"
    "Build FILE.net into a cache directory ($XDG_CACHE_HOME/netc or ~/.cache/netc,\n"
    "keyed by the file's contents, netc's version and the build flags) unless it is\n"
    "there already, then run it with ARGS (default: train).\n"
    "\n"
    "  -O0 -O1 -O2 -O3, --cc=CC, --cflags=FLAGS, --target=T, --no-fuse, --mpi,\n"
    "  --bucket-size=B, --sync-bn, --no-verify   as for `netc build`\n";

struct build_opts {
    const char *file;               /* the .net file */
    const char *out;                /* -o */
    const char *cc;                 /* --cc */
    const char *cflags;             /* --cflags */
    const char *olevel;             /* "-O3" */
    const struct cg_target *target; /* --target (default the registry's first) */
    bool keep;                      /* --keep */
    bool verify;                    /* the verifier after every pass (default; --no-verify: off) */
    bool no_fuse;                   /* --no-fuse */
    bool mpi;                       /* --mpi */
    bool sync_bn;                   /* --sync-bn */
    long long bucket;               /* --bucket-size, 0: default */
    int rest;                       /* run: index of the first program argument after "--", or argc */
};

/* Returns 0 to go on, -1 after --help, else an exit status. */
static int parse(const char *cmd, const char *usage, int argc, char **argv, struct build_opts *o) {
    memset(o, 0, sizeof *o);
    o->olevel = "-O3";
    o->target = cg_targets[0];
    o->verify = true;
    o->rest = argc;
    bool emit = strcmp(cmd, "emit") == 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i], *val;
        if (cli_is_help(a)) {
            cli_print_usage(stdout, usage);
            return -1;
        } else if (strcmp(a, "--") == 0 && strcmp(cmd, "run") == 0) {
            o->rest = i + 1;
            break;
        } else if (strcmp(a, "-o") == 0 && strcmp(cmd, "run") != 0) {
            if (++i == argc) {
                cli_usage_error(cmd, "-o needs a file name");
                return CLI_EXIT_USAGE;
            }
            o->out = argv[i];
        } else if ((val = cli_value(a, "--target"))) {
            o->target = cg_target_find(val);
            if (!o->target || (!o->target->emit && !emit)) {
                cli_unknown_target(cmd, "target", val, emit);
                return CLI_EXIT_USAGE;
            }
        } else if (strcmp(cmd, "emit") != 0 && (strcmp(a, "-O0") == 0 || strcmp(a, "-O1") == 0 ||
                                                strcmp(a, "-O2") == 0 || strcmp(a, "-O3") == 0)) {
            o->olevel = a;
        } else if (strcmp(cmd, "emit") != 0 && strncmp(a, "--cc=", 5) == 0) {
            o->cc = a + 5;
        } else if (strcmp(cmd, "emit") != 0 && strncmp(a, "--cflags=", 9) == 0) {
            o->cflags = a + 9;
        } else if (strcmp(cmd, "build") == 0 && strcmp(a, "--keep") == 0) {
            o->keep = true;
        } else if (strcmp(a, "--verify") == 0 || strcmp(a, "--no-verify") == 0) {
            o->verify = a[2] == 'v';
        } else if (strcmp(a, "--no-fuse") == 0) {
            o->no_fuse = true;
        } else if (strcmp(a, "--mpi") == 0) {
            o->mpi = true;
        } else if (strcmp(a, "--sync-bn") == 0) {
            o->sync_bn = true;
        } else if ((val = cli_value(a, "--bucket-size"))) {
            if (!cli_bytes(cmd, "--bucket-size", val, &o->bucket)) return CLI_EXIT_USAGE;
        } else {
            int st = cli_positional(cmd, a, &o->file);
            if (st) return st;
        }
    }
    int st = cli_need_file(cmd, o->file);
    if (st) return st;
    if ((o->sync_bn || o->bucket) && !o->mpi) {
        cli_usage_error(cmd, "%s needs --mpi", o->sync_bn ? "--sync-bn" : "--bucket-size");
        return CLI_EXIT_USAGE;
    }
    if (o->mpi && o->target && o->target->no_mpi) {
        cli_user_error(cmd, "--target=%s does not support --mpi yet", o->target->name);
        return CLI_EXIT_USER;
    }
    if (!o->cc) o->cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    return 0;
}

/* ------------------------------------------------- pipeline and emission */

/* The module of a .net file after the default pipeline, or NULL (reported). */
static struct ir_module *compile_module(const struct build_opts *o) {
    struct ir_module *m = fe_load(o->file);
    if (!m) return NULL;
    struct pass_options popt = {o->verify, NULL, false, false, stdout};
    if (o->bucket) pass_dp_options.bucket_bytes = (size_t)o->bucket;
    pass_target = o->target->plan; /* kernels and memory plan for the backend that emits */
    if (!ir_verify(m) ||
        !pass_run_list(m, pass_pipeline_dp(o->no_fuse ? PASS_NO_FUSE : NULL, o->mpi, o->sync_bn), &popt)) {
        ir_module_free(m);
        return NULL;
    }
    return m;
}

/* Writes the C of m for target t to path atomically. */
/* The further translation units of a build (cg_options.part): DIR/MODEL.I.c. */
struct parts {
    const char *cmd;  /* for errors */
    const char *stem; /* "DIR/MODEL" */
    char **paths;     /* vec: the files written (owned) */
};

/* Bytes of C per further translation unit: a few dozen functions, so that the
 * units of a big model keep both cores busy, and a changed function recompiles
 * only its unit. */
#define PART_BYTES 24000

static FILE *open_part(void *ctx, int i) {
    struct parts *p = ctx;
    char path[PATH_MAX_ + 96];
    snprintf(path, sizeof path, "%s.%d.c", p->stem, i);
    FILE *f = fopen(path, "w");
    if (!f) {
        cli_user_error(p->cmd, "cannot write '%s': %s", path, strerror(errno));
        return NULL;
    }
    char *copy = strdup(path);
    if (!copy) {
        fclose(f);
        remove(path);
        cli_user_error(p->cmd, "out of memory");
        return NULL;
    }
    vec_push(p->paths, copy);
    return f;
}

/* Writes the C of m for target t to path atomically; with parts (the C target),
 * the functions of kernels and ops go to further files beside it. */
static bool write_c(const char *cmd, const struct cg_target *t, const struct ir_module *m, const char *path,
                    const char *version, bool mpi, struct parts *parts) {
    struct cli_output out;
    if (!cli_output_open(&out, cmd, path)) return false;
    struct cg_options copt = {version, true, mpi, NULL, NULL, 0};
    if (parts && t->parts) copt = (struct cg_options){version, true, mpi, open_part, parts, PART_BYTES};
    return cli_output_close(&out, cmd, t->emit(m, out.f, &copt));
}

static const char *model_file_name(const struct ir_module *m);

/* Writes DIR/MODEL.c and DIR/MODEL.h, the model as a library (t->emit_lib),
 * each atomically; neither is left behind when the other fails. */
static bool write_lib(const char *cmd, const struct cg_target *t, const struct ir_module *m, const char *dir,
                      const char *version) {
    const char *name = model_file_name(m);
    char csrc[2 * PATH_MAX_], hdr[2 * PATH_MAX_], ctmp[3 * PATH_MAX_], htmp[3 * PATH_MAX_], hname[PATH_MAX_];
    snprintf(csrc, sizeof csrc, "%s/%s.c", dir, name);
    snprintf(hdr, sizeof hdr, "%s/%s.h", dir, name);
    snprintf(hname, sizeof hname, "%s.h", name);
    cli_tmp_path(ctmp, sizeof ctmp, csrc);
    cli_tmp_path(htmp, sizeof htmp, hdr);
    FILE *c = fopen(ctmp, "w"), *h = c ? fopen(htmp, "w") : NULL;
    if (!c || !h) {
        cli_user_error(cmd, "cannot write '%s': %s", c ? hdr : csrc, strerror(errno));
        if (c) fclose(c);
        remove(ctmp);
        return false;
    }
    struct cg_options copt = {version, false, false, NULL, NULL, 0};
    bool ok = t->emit_lib(m, c, h, name, hname, &copt);
    if (fclose(c) != 0) ok = false;
    if (fclose(h) != 0) ok = false;
    if (ok && (rename(ctmp, csrc) != 0 || rename(htmp, hdr) != 0)) {
        cli_user_error(cmd, "cannot write '%s': %s", csrc, strerror(errno));
        remove(csrc);
        ok = false;
    }
    if (!ok) {
        remove(ctmp);
        remove(htmp);
    }
    return ok;
}

/* Copies a file atomically. */
static bool copy_file(const char *cmd, const char *from, const char *to) {
    char tmp[2 * PATH_MAX_];
    cli_tmp_path(tmp, sizeof tmp, to);
    FILE *in = fopen(from, "rb"), *out = in ? fopen(tmp, "wb") : NULL;
    bool ok = in && out;
    char buf[1 << 14];
    size_t n;
    while (ok && (n = fread(buf, 1, sizeof buf, in)) > 0) ok = fwrite(buf, 1, n, out) == n;
    if (in && ferror(in)) ok = false;
    if (in) fclose(in);
    if (out && fclose(out) != 0) ok = false;
    if (ok && rename(tmp, to) != 0) ok = false;
    if (!ok) {
        remove(tmp);
        cli_user_error(cmd, "cannot copy '%s' to '%s': %s", from, to, strerror(errno));
    }
    return ok;
}

/* The path of netrt.h. */
static const char *runtime_header(void) {
    static char path[PATH_MAX_ + 16];
    snprintf(path, sizeof path, "%s/netrt.h", build_runtime()->include);
    return path;
}

/* mkdir -p. */
static bool make_dirs(const char *cmd, const char *dir) {
    char path[PATH_MAX_];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1;; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(path, 0777) != 0 && errno != EEXIST) {
                cli_user_error(cmd, "cannot create directory '%s': %s", path, strerror(errno));
                return false;
            }
            *p = saved;
            if (!saved) break;
        }
    }
    return true;
}

/* A file name for the model: its name where that is a plain identifier. */
static const char *model_file_name(const struct ir_module *m) {
    const char *s = m->name;
    if (!s || !*s || strlen(s) > 128) return "model"; /* the front end allows 128 (FE_MAX_NAME) */
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return "model";
    return s;
}

/* ------------------------------------------------------------ compiling */

/* Runs argv, waiting for it; true on exit status 0. The child's output goes to
 * ours, so a failing compiler shows its errors. */
static bool run_wait(const char *cmd, char **argv) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        cli_user_error(cmd, "cannot start '%s': %s", argv[0], strerror(errno));
        return false;
    }
    if (pid == 0) {
        execvp(argv[0], argv);
        fprintf(stderr, "netc %s: error: cannot run '%s': %s\n", cmd, argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) return false;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) return true;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) return false;
    cli_user_error(cmd, "the C compiler '%s' failed (%s %d)", argv[0],
                   WIFEXITED(st) ? "exit status" : "signal", WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    return false;
}

/* Splits a space-separated flag string into argv (pointers into buf). */
static int split_flags(char *buf, char **out, int max) {
    int n = 0;
    for (char *tok = strtok(buf, " \t"); tok && n < max; tok = strtok(NULL, " \t")) out[n++] = tok;
    return n;
}

/* 64-bit FNV-1a, twice with different starts: a 128-bit content key. */
struct key {
    uint64_t h[2];
};

static void key_add(struct key *k, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) {
        k->h[0] = (k->h[0] ^ s[i]) * 0x100000001b3ull;
        k->h[1] = (k->h[1] ^ s[i]) * 0x100000001b3ull;
    }
}

static void key_str(struct key *k, const char *s) { key_add(k, s, strlen(s) + 1); }

/* Adds a file's bytes; false when it cannot be read. */
static bool key_file(struct key *k, const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    char buf[1 << 14];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) key_add(k, buf, n);
    bool ok = !ferror(f);
    fclose(f);
    return ok;
}

/* Adds the C compiler's identity: the file `cc` runs (through PATH and
 * symbolic links), its size and modification time; false when not found. */
static bool key_compiler(struct key *k, const char *cc) {
    char path[PATH_MAX_];
    bool found = false;
    if (strchr(cc, '/')) {
        snprintf(path, sizeof path, "%s", cc);
        found = true;
    } else if (getenv("PATH")) {
        char dirs[PATH_MAX_];
        snprintf(dirs, sizeof dirs, "%s", getenv("PATH"));
        for (char *save, *d = strtok_r(dirs, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
            snprintf(path, sizeof path, "%s/%s", *d ? d : ".", cc);
            found = access(path, X_OK) == 0;
        }
    }
    char *real = found ? realpath(path, NULL) : NULL;
    struct stat st;
    if (!real || stat(real, &st) != 0) {
        free(real);
        return false;
    }
    key_str(k, real);
    long long id[3] = {(long long)st.st_size, (long long)st.st_mtime, (long long)st.st_ino};
    key_add(k, id, sizeof id);
    free(real);
    return true;
}

/* Adds this machine's processor (the first one's model and feature flags in
 * /proc/cpuinfo), which -march=native compiles for: a cache shared by several
 * machines (a home directory on NFS) must not give one another's objects. */
static void key_cpu(struct key *k) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f) return;
    char line[8192];
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '\n') break; /* the first processor's block ends */
        if (strncmp(line, "model", 5) == 0 || strncmp(line, "vendor_id", 9) == 0 ||
            strncmp(line, "flags", 5) == 0 || strncmp(line, "Features", 8) == 0 ||
            strncmp(line, "CPU part", 8) == 0)
            key_str(k, line);
    }
    fclose(f);
}

/* The object cache: $NETC_CACHE_DIR, else $XDG_CACHE_HOME/netc/obj, else
 * ~/.cache/netc/obj; NULL when NETC_CACHE=0 or it cannot be created. */
static const char *object_cache(void) {
    static char dir[PATH_MAX_];
    const char *off = getenv("NETC_CACHE"), *set = getenv("NETC_CACHE_DIR");
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (off && strcmp(off, "0") == 0) return NULL;
    if (set && *set)
        snprintf(dir, sizeof dir, "%s", set);
    else if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/netc/obj", xdg);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/netc/obj", home);
    else
        return NULL;
    for (char *p = dir + 1;; p++) { /* mkdir -p, quietly: no cache is no error */
        if (*p != '/' && *p) continue;
        char saved = *p;
        *p = '\0';
        if (mkdir(dir, 0777) != 0 && errno != EEXIST) return NULL;
        *p = saved;
        if (!saved) break;
    }
    return access(dir, W_OK) == 0 ? dir : NULL;
}

/* The object cache's bound: past it, the least recently used objects go
 * (an object's modification time is refreshed, at most daily, when a build
 * uses it). */
#define CACHE_MAX_BYTES (512ll << 20)

struct cached {
    time_t mtime;   /* last used (to a day) */
    long long size; /* bytes */
    char name[80];  /* file name in the cache */
};

static int cached_older(const void *a, const void *b) {
    const struct cached *x = a, *y = b;
    return x->mtime < y->mtime ? -1 : x->mtime > y->mtime ? 1 : strcmp(x->name, y->name);
}

/* Removes the least recently used objects while the cache holds more than
 * CACHE_MAX_BYTES, down to three quarters of it. */
static void cache_trim(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct cached *all = NULL;
    long long total = 0;
    char path[PATH_MAX_ + 96];
    for (struct dirent *e; (e = readdir(d));) {
        size_t len = strlen(e->d_name);
        struct stat st;
        if (len < 3 || len >= sizeof all->name || strcmp(e->d_name + len - 2, ".o") != 0) continue;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (stat(path, &st) != 0) continue;
        struct cached c = {st.st_mtime, (long long)st.st_size, ""};
        snprintf(c.name, sizeof c.name, "%s", e->d_name);
        vec_push(all, c);
        total += c.size;
    }
    closedir(d);
    if (total > CACHE_MAX_BYTES) {
        qsort(all, vec_len(all), sizeof *all, cached_older);
        for (size_t i = 0; i < vec_len(all) && total > CACHE_MAX_BYTES / 4 * 3; i++) {
            snprintf(path, sizeof path, "%s/%s", dir, all[i].name);
            if (remove(path) == 0) total -= all[i].size;
        }
    }
    vec_free(all);
}

/* Runs the commands argvs[0..n) with at most `jobs` at once; true when each
 * exits with status 0 (a failure is reported once, after all have ended). */
static bool run_parallel(const char *cmd, char ***argvs, int n, int jobs) {
    pid_t *pids = calloc((size_t)n + 1, sizeof *pids);
    if (!pids) return false;
    int started = 0, running = 0;
    bool ok = true;
    int bad_status = 0;
    fflush(NULL);
    while (started < n || running > 0) {
        if (started < n && running < jobs && ok) {
            pid_t pid = fork();
            if (pid < 0) {
                cli_user_error(cmd, "cannot start '%s': %s", argvs[started][0], strerror(errno));
                ok = false;
                continue;
            }
            if (pid == 0) {
                execvp(argvs[started][0], argvs[started]);
                fprintf(stderr, "netc %s: error: cannot run '%s': %s\n", cmd, argvs[started][0],
                        strerror(errno));
                _exit(127);
            }
            pids[started++] = pid;
            running++;
            continue;
        }
        if (running == 0) break; /* a fork failed: nothing left to wait for */
        int st;
        pid_t pid = wait(&st);
        if (pid < 0) {
            if (errno == EINTR) continue;
            break;
        }
        bool ours = false;
        for (int i = 0; i < started; i++) ours |= pids[i] == pid;
        if (!ours) continue;
        running--;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) continue;
        if (ok && !(WIFEXITED(st) && WEXITSTATUS(st) == 127))
            bad_status = WIFEXITED(st) ? WEXITSTATUS(st) : -WTERMSIG(st);
        ok = false;
    }
    if (bad_status)
        cli_user_error(cmd, "the C compiler '%s' failed (%s %d)", argvs[0][0],
                       bad_status > 0 ? "exit status" : "signal", bad_status > 0 ? bad_status : -bad_status);
    free(pids);
    return ok;
}

/* Whether the link can use GNU gold: it links a model in a third of the CPU
 * time of the default BFD ld (0.02 s against 0.07 s). Only for the compilers
 * known to take -fuse-ld (GCC, clang, and cc, which is one of them), when
 * ld.gold is on the PATH and the user's flags choose no linker. */
static bool link_with_gold(const char *cc, const char *cflags) {
    if (cflags && strstr(cflags, "-fuse-ld")) return false;
    const char *base = strrchr(cc, '/');
    base = base ? base + 1 : cc;
    if (strcmp(base, "cc") != 0 && !strstr(base, "gcc") && !strstr(base, "clang")) return false;
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        char file[PATH_MAX_ + 16];
        if (len > 0 && len < PATH_MAX_) {
            snprintf(file, sizeof file, "%.*s/ld.gold", (int)len, path);
            if (access(file, X_OK) == 0) return true;
        }
        path = end ? end + 1 : NULL;
    }
    return false;
}

/* Parallel compiles: the online cores, at most 16. */
static int compile_jobs(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > 16 ? 16 : (int)n;
}

/* Compiles the translation units srcs[0..nsrc) (srcs[0] the one with main)
 * each to an object, in parallel, taking the object from the cache (keyed by
 * the source's text, netrt.h's, the compiler, the flags and the processor) when it is there
 * and putting it there otherwise (atomically), then links them into program
 * `out`, atomically. Without a cache the objects go beside the sources. */
static bool compile_c(const char *cmd, const struct build_opts *o, char **srcs, int nsrc, const char *out) {
    char tmp[2 * PATH_MAX_], inc[PATH_MAX_ + 4], flags[4096], lflags[4096], ldflags[1024];
    cli_tmp_path(tmp, sizeof tmp, out);
    const struct runtime_paths *r = build_runtime();
    snprintf(inc, sizeof inc, "-I%s", r->include);
    snprintf(flags, sizeof flags, "%s", o->cflags ? o->cflags : "");
    snprintf(lflags, sizeof lflags, "%s", o->cflags ? o->cflags : "");
    snprintf(ldflags, sizeof ldflags, "%s", NETC_RUNTIME_LDFLAGS);
    const char *tlib = build_target_lib(o->target); /* the target's runtime library */
    if (o->mpi && (!*r->mpi_lib || access(r->mpi_lib, R_OK) != 0)) {
        cli_user_error(cmd,
                       "--mpi needs libnetrt_mpi.a%s%s, which this netc was built without: install MPI "
                       "(apt-get install libopenmpi-dev openmpi-bin) and rebuild netc",
                       *r->mpi_lib ? " at " : "", r->mpi_lib);
        return false;
    }
    char mpilibs[2048];
    snprintf(mpilibs, sizeof mpilibs, "%s", NETC_MPI_LIBS);
    if (o->target->runtime_lib && !*tlib) {
        cli_user_error(cmd,
                       "--target=%s needs %s beside %s, which this netc was built without: install %s and "
                       "rebuild netc",
                       o->target->name, o->target->runtime_lib, r->lib,
                       o->target->needs ? o->target->needs : "what it needs");
        return false;
    }
    char tflags[512];
    snprintf(tflags, sizeof tflags, "%s", o->target->link_flags ? o->target->link_flags : "");
    /* The compile flags, shared by every unit. */
    char *cflags[96];
    int nf = 0;
    cflags[nf++] = (char *)o->cc;
    cflags[nf++] = "-std=c11";
    cflags[nf++] = (char *)o->olevel;
    if (strcmp(o->olevel, "-O0") != 0)
        cflags[nf++] = "-march=native";
    else
        cflags[nf++] = "-g";
    cflags[nf++] = "-fno-math-errno"; /* no errno check after sqrtf: GCC vectorizes such loops */
    cflags[nf++] =
        "-fno-trapping-math"; /* GCC if-converts the selects of netrt.h's vector math (erf, GELU) */
    nf += split_flags(flags, cflags + nf, 64);
    cflags[nf++] = inc;
    cflags[nf++] = "-c";
    /* What every unit's key shares: the flags, netrt.h, the compiler and the
     * processor. */
    const char *cache = object_cache();
    struct key base = {{0xcbf29ce484222325ull, 0x84222325cbf29ce4ull}};
    key_str(&base, "netc object 1");
    for (int i = 0; i < nf; i++) key_str(&base, cflags[i]);
    char hdr[PATH_MAX_ + 16];
    snprintf(hdr, sizeof hdr, "%s/netrt.h", r->include);
    if (cache && (!key_file(&base, hdr) || !key_compiler(&base, o->cc))) cache = NULL;
    if (cache) key_cpu(&base);
    char(*objs)[PATH_MAX_ + 160] = calloc((size_t)nsrc, sizeof *objs);
    char(*tmps)[PATH_MAX_ + 192] = calloc((size_t)nsrc, sizeof *tmps);
    char ***argvs = calloc((size_t)nsrc, sizeof *argvs);
    char **store = calloc((size_t)nsrc * (size_t)(nf + 4), sizeof *store);
    double *cost = calloc((size_t)nsrc, sizeof *cost); /* each job's estimated compile time */
    bool ok = objs && tmps && argvs && store && cost;
    int njobs = 0;
    /* With further units, the first holds only the entry points' calls, the
     * descriptor and main: -O0 compiles it in a sixth of the time of -O3 (a
     * half of -O1's: a GAN's entry points, 230 KB of calls, 0.12 s), and the
     * training and inference speed is the same (bench/ab.py). */
    bool olevel_cold = strcmp(o->olevel, "-O2") == 0 || strcmp(o->olevel, "-O3") == 0;
    for (int i = 0; ok && i < nsrc; i++) {
        size_t sl = strlen(srcs[i]);
        if (sl > 2 && strcmp(srcs[i] + sl - 2, ".o") == 0) { /* an object (--target=llvm): linked as it is */
            snprintf(objs[i], sizeof objs[i], "%s", srcs[i]);
            continue;
        }
        struct key k = base;
        if (i == 0 && nsrc > 1 && olevel_cold) key_str(&k, "-O0");
        if (cache && key_file(&k, srcs[i])) {
            snprintf(objs[i], sizeof objs[i], "%s/%016llx%016llx.o", cache, (unsigned long long)k.h[0],
                     (unsigned long long)k.h[1]);
            struct stat st;
            if (stat(objs[i], &st) == 0 && access(objs[i], R_OK) == 0) {    /* compiled before */
                if (st.st_mtime < time(NULL) - 86400) utime(objs[i], NULL); /* used: keep it */
                continue;
            }
            snprintf(tmps[i], sizeof tmps[i], "%s.tmp.%ld", objs[i], (long)getpid());
        } else {
            snprintf(objs[i], sizeof objs[i], "%s.o", srcs[i]);
            snprintf(tmps[i], sizeof tmps[i], "%s.o", srcs[i]);
        }
        char **argv = store + (size_t)njobs * (size_t)(nf + 4);
        memcpy(argv, cflags, (size_t)nf * sizeof *argv);
        if (i == 0 && nsrc > 1 && olevel_cold) argv[2] = "-O0"; /* the entry points: calls, no loops */
        argv[nf] = srcs[i];
        argv[nf + 1] = "-o";
        argv[nf + 2] = tmps[i];
        argv[nf + 3] = NULL;
        struct stat st;
        cost[njobs] = stat(srcs[i], &st) == 0 ? (double)st.st_size : 0;
        if (i == 0 && nsrc > 1 && olevel_cold) cost[njobs] /= 15;
        argvs[njobs++] = argv;
    }
    /* Longest first: the units start in the order of their estimated compile
     * time (bytes of C, the -O0 entry unit at a fifteenth: measured per byte with
     * GCC 12), so the last unit to start is a short one and both cores finish
     * together. */
    for (int j = 1; ok && j < njobs; j++) /* insertion sort, descending */
        for (int i = j; i > 0 && cost[i] > cost[i - 1]; i--) {
            double c = cost[i];
            cost[i] = cost[i - 1], cost[i - 1] = c;
            char **a = argvs[i];
            argvs[i] = argvs[i - 1], argvs[i - 1] = a;
        }
    if (ok) ok = run_parallel(cmd, argvs, njobs, compile_jobs());
    for (int i = 0; i < nsrc && objs && tmps; i++) /* into the cache, atomically */
        if (tmps[i][0] && strcmp(tmps[i], objs[i]) != 0) {
            if (ok && rename(tmps[i], objs[i]) != 0) ok = false;
            remove(tmps[i]);
        }
    /* Link. */
    char **argv = calloc((size_t)nsrc + 192, sizeof *argv);
    if (ok && argv) {
        int n = 0;
        argv[n++] = (char *)o->cc;
        if (link_with_gold(o->cc, o->cflags)) argv[n++] = "-fuse-ld=gold";
        n += split_flags(lflags, argv + n, 64);
        for (int i = 0; i < nsrc; i++) argv[n++] = objs[i];
        if (*tlib) argv[n++] = (char *)tlib;
        if (o->mpi) argv[n++] = (char *)r->mpi_lib;
        argv[n++] = (char *)r->lib;
        if (o->mpi) n += split_flags(mpilibs, argv + n, 16);
        n += split_flags(ldflags, argv + n, 16);
        n += split_flags(tflags, argv + n, 16);
        char extra[256];
        snprintf(extra, sizeof extra, "%s", NETC_RUNTIME_EXTRA_LIBS);
        n += split_flags(extra, argv + n, 8);
        argv[n++] = "-lopenblas";
        argv[n++] = "-lpng"; /* PNG inputs of predict (runtime/image.c); before -lz, which it uses */
        argv[n++] = "-lz";
        argv[n++] = "-lm";
        argv[n++] = "-lpthread";
        argv[n++] = "-o";
        argv[n++] = tmp;
        argv[n] = NULL;
        ok = run_wait(cmd, argv);
    } else {
        ok = false;
    }
    free(argv);
    if (ok && rename(tmp, out) != 0) {
        cli_user_error(cmd, "cannot write '%s': %s", out, strerror(errno));
        ok = false;
    }
    if (!ok) remove(tmp);
    if (ok && cache && njobs > 0) cache_trim(cache);
    for (int i = 0; objs && tmps && i < nsrc; i++) /* not cached: beside the source */
        if (strcmp(tmps[i], objs[i]) == 0) remove(objs[i]);
    free(objs), free(tmps), free(argvs), free(store), free(cost);
    return ok;
}

/* Whether the program can be written to out, checked before the C compiler
 * runs: a missing or read-only directory, or a directory named out, is reported
 * naming out, not the linker's temporary file after the whole compile. */
static bool output_writable(const char *cmd, const char *out) {
    struct stat st;
    if (stat(out, &st) == 0 && S_ISDIR(st.st_mode)) {
        cli_user_error(cmd, "cannot write '%s': it is a directory", out);
        return false;
    }
    char tmp[2 * PATH_MAX_];
    cli_tmp_path(tmp, sizeof tmp, out);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        cli_user_error(cmd, "cannot write '%s': %s", out, strerror(errno));
        return false;
    }
    close(fd);
    remove(tmp);
    return true;
}

/* Emits m into a fresh temporary directory and compiles it to out. */
static bool build_to(const char *cmd, const struct build_opts *o, const struct ir_module *m, const char *out,
                     const char *version) {
    if (!output_writable(cmd, out)) return false;
    const char *tdir = getenv("TMPDIR") && *getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char dir[PATH_MAX_], csrc[PATH_MAX_ + 128];
    snprintf(dir, sizeof dir, "%s/netc-XXXXXX", tdir);
    if (!mkdtemp(dir)) {
        cli_user_error(cmd, "cannot create a temporary directory in %s: %s", tdir, strerror(errno));
        return false;
    }
    char stem[PATH_MAX_ + 64];
    snprintf(stem, sizeof stem, "%s/%s", dir, model_file_name(m));
    snprintf(csrc, sizeof csrc, "%s.c", stem);
    struct parts parts = {cmd, stem, NULL};
    bool ok;
    if (o->target->emit_object) { /* an object file, linked like the C build's */
        struct cg_options copt = {version, true, o->mpi, NULL, NULL, 0};
        snprintf(csrc, sizeof csrc, "%s.o", stem);
        ok = o->target->emit_object(m, &copt, csrc);
    } else {
        ok = write_c(cmd, o->target, m, csrc, version, o->mpi, &parts);
    }
    char **srcs = NULL;
    vec_push(srcs, csrc);
    for (size_t i = 0; i < vec_len(parts.paths); i++) vec_push(srcs, parts.paths[i]);
    ok = ok && compile_c(cmd, o, srcs, (int)vec_len(srcs), out);
    if (o->keep) {
        fprintf(stderr, "netc %s: generated C kept in %s%s\n", cmd, csrc,
                vec_len(parts.paths) ? " (its kernels and ops in the numbered files beside it)" : "");
    } else {
        for (size_t i = 0; i < vec_len(srcs); i++) remove(srcs[i]);
        rmdir(dir);
    }
    for (size_t i = 0; i < vec_len(parts.paths); i++) free(parts.paths[i]);
    vec_free(parts.paths);
    vec_free(srcs);
    return ok;
}

/* ------------------------------------------------------------- commands */

bool build_program(const char *cmd, const char *file, const char *target, const char *out,
                   const char *version) {
    struct build_opts o;
    memset(&o, 0, sizeof o);
    o.file = file;
    o.olevel = "-O2";
    o.verify = true;
    o.target = cg_target_find(target);
    o.cc = getenv("CC") && *getenv("CC") ? getenv("CC") : "cc";
    if (!o.target || !o.target->emit) {
        char names[512];
        cli_user_error(cmd, "unknown target '%s' (targets: %s)", target,
                       cg_target_names(names, sizeof names, false));
        return false;
    }
    struct ir_module *m = compile_module(&o);
    if (!m) return false;
    bool ok = build_to(cmd, &o, m, out, version);
    ir_module_free(m);
    return ok;
}

int build_cmd_emit(int argc, char **argv, const char *version) {
    struct build_opts o;
    int st = parse("emit", usage_emit, argc, argv, &o);
    if (st) return st < 0 ? 0 : st;
    struct ir_module *m = compile_module(&o);
    if (!m) return CLI_EXIT_USER;
    const char *dir = o.out ? o.out : ".";
    char csrc[PATH_MAX_ + 64], hdr[PATH_MAX_ + 64];
    snprintf(csrc, sizeof csrc, "%s/%s%s", dir, model_file_name(m), o.target->ext);
    snprintf(hdr, sizeof hdr, "%s/netrt.h", dir);
    bool ok = make_dirs("emit", dir) &&
              (o.target->emit_lib ? write_lib("emit", o.target, m, dir, version)
                                  : write_c("emit", o.target, m, csrc, version, o.mpi, NULL)) &&
              copy_file("emit", runtime_header(), hdr);
    ir_module_free(m);
    return ok ? 0 : CLI_EXIT_USER;
}

int build_cmd_build(int argc, char **argv, const char *version) {
    struct build_opts o;
    int st = parse("build", usage_build, argc, argv, &o);
    if (st) return st < 0 ? 0 : st;
    struct ir_module *m = compile_module(&o);
    if (!m) return CLI_EXIT_USER;
    const char *out = o.out ? o.out : model_file_name(m);
    bool ok = build_to("build", &o, m, out, version);
    if (ok) { /* the memory plan: what the program allocates once, before training */
        int64_t batch = m->train.batch > 0 ? m->train.batch : 32;
        struct cgc_arena a;
        cgc_arena_sizes(m, batch, &a);
        printf("%s: workspace %.2f MB at batch %lld (%zu + %zu*N bytes), parameters and state %.2f MB\n", out,
               (double)a.ws_bytes / 1e6, (long long)batch, a.ws_fixed, a.ws_per_n,
               (double)a.param_bytes / 1e6);
    }
    ir_module_free(m);
    return ok ? 0 : CLI_EXIT_USER;
}

static void fnv(uint64_t *h, const void *p, size_t n) {
    const unsigned char *s = p;
    for (size_t i = 0; i < n; i++) *h = (*h ^ s[i]) * 0x100000001b3ull;
}

int build_cmd_run(int argc, char **argv, const char *version) {
    struct build_opts o;
    int st = parse("run", usage_run, argc, argv, &o);
    if (st) return st < 0 ? 0 : st;
    /* The key: the file's text, netc's version, the flags and the runtime library. */
    FILE *f = fopen(o.file, "rb");
    if (!f) {
        cli_user_error("run", "cannot open '%s': %s", o.file, strerror(errno));
        return CLI_EXIT_USER;
    }
    uint64_t h = 0xcbf29ce484222325ull;
    char buf[1 << 14];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) fnv(&h, buf, n);
    fclose(f);
    /* Where the file is: its relative data paths resolve against its directory. */
    char *real = realpath(o.file, NULL);
    if (real) fnv(&h, real, strlen(real));
    free(real);
    struct stat lib;
    const struct runtime_paths *r = build_runtime();
    long long lib_mtime = stat(r->lib, &lib) == 0 ? (long long)lib.st_mtime : 0;
    /* netc itself: a rebuilt compiler with the same version string must not reuse
     * programs an older one generated. */
    struct stat self;
    long long self_mtime = stat("/proc/self/exe", &self) == 0 ? (long long)self.st_mtime : 0;
    struct stat tlib;
    const char *tlib_path = build_target_lib(o.target);
    long long tlib_mtime = *tlib_path && stat(tlib_path, &tlib) == 0 ? (long long)tlib.st_mtime : 0;
    snprintf(buf, sizeof buf, "|%s|%s|%s|%s|%s|%lld|%lld|%d|%s|%lld", version, o.cc, o.olevel,
             o.cflags ? o.cflags : "", r->lib, lib_mtime, self_mtime, (int)o.no_fuse, o.target->name,
             tlib_mtime);
    fnv(&h, buf, strlen(buf));
    snprintf(buf, sizeof buf, "|mpi %d %d %lld", (int)o.mpi, (int)o.sync_bn, o.bucket);
    fnv(&h, buf, strlen(buf));
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    char dir[PATH_MAX_], prog[PATH_MAX_ + 160];
    if (xdg && *xdg)
        snprintf(dir, sizeof dir, "%s/netc/%016llx", xdg, (unsigned long long)h);
    else if (home && *home)
        snprintf(dir, sizeof dir, "%s/.cache/netc/%016llx", home, (unsigned long long)h);
    else
        snprintf(dir, sizeof dir, "/tmp/netc-cache-%ld/%016llx", (long)getuid(), (unsigned long long)h);
    const char *base = strrchr(o.file, '/') ? strrchr(o.file, '/') + 1 : o.file;
    char stem[128];
    size_t k = 0;
    for (; base[k] && base[k] != '.' && k + 1 < sizeof stem; k++) {
        char ch = base[k];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  ch == '_' || ch == '-';
        stem[k] = ok ? ch : '_';
    }
    stem[k] = '\0';
    snprintf(prog, sizeof prog, "%s/%s", dir, k ? stem : "model");
    if (o.target->run) { /* compiled in process (a JIT): no C compiler, no cache */
        struct ir_module *m = compile_module(&o);
        int nargs = argc - o.rest;
        char **pargv = calloc((size_t)nargs + 3, sizeof *pargv);
        if (!m || !pargv) return free(pargv), ir_module_free(m), CLI_EXIT_USER;
        pargv[0] = k ? stem : "model";
        int n = 1;
        if (nargs == 0) pargv[n++] = "train";
        for (int i = o.rest; i < argc; i++) pargv[n++] = argv[i];
        struct cg_options copt = {version, false, false, NULL, NULL, 0};
        int rc = o.target->run(m, &copt, n, pargv);
        ir_module_free(m);
        free(pargv);
        return rc < 0 ? CLI_EXIT_USER : rc;
    }
    if (access(prog, X_OK) != 0) {
        struct ir_module *m = compile_module(&o);
        if (!m) return CLI_EXIT_USER;
        bool ok = make_dirs("run", dir) && build_to("run", &o, m, prog, version);
        ir_module_free(m);
        if (!ok) return CLI_EXIT_USER;
    }
    int nargs = argc - o.rest;
    char **pargv = calloc((size_t)nargs + 3, sizeof *pargv);
    if (!pargv) return CLI_EXIT_USER;
    pargv[0] = prog;
    k = 1;
    if (nargs == 0) pargv[k++] = "train";
    for (int i = o.rest; i < argc; i++) pargv[k++] = argv[i];
    pargv[k] = NULL;
    fflush(NULL);
    execv(prog, pargv);
    cli_user_error("run", "cannot run '%s': %s", prog, strerror(errno));
    free(pargv);
    return CLI_EXIT_USER;
}
