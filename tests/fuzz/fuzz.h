/* tests/fuzz/fuzz.h -- what the libFuzzer targets share: the input as a file
 * (a memfd named /proc/self/fd/N, a regular file that the loaders open and read
 * like any other, without touching the disk), a scratch directory on tmpfs for
 * the checkpoint writer, and a sink for diagnostics and emitted code. */
#ifndef NETC_FUZZ_H
#define NETC_FUZZ_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Replaces the contents of the one memfd with data[0..size) and returns its
 * path; aborts when the memfd cannot be made (not a finding of the target). */
static inline const char *fuzz_file(const uint8_t *data, size_t size) {
    static int fd = -1;
    static char path[64];
    if (fd < 0) {
        fd = memfd_create("netc-fuzz", 0);
        if (fd < 0) {
            perror("memfd_create");
            abort();
        }
        snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    }
    if (ftruncate(fd, 0) != 0 || (size && pwrite(fd, data, size, 0) != (ssize_t)size)) {
        perror("fuzz_file");
        abort();
    }
    return path;
}

/* /dev/null, opened once: diagnostics and emitted code go there. */
static inline FILE *fuzz_null(void) {
    static FILE *f;
    if (!f && !(f = fopen("/dev/null", "w"))) abort();
    return f;
}

/* A private directory (on /dev/shm when there is one), made once. */
static inline const char *fuzz_dir(void) {
    static char dir[256];
    if (!dir[0]) {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm"
                           : getenv("TMPDIR")            ? getenv("TMPDIR")
                                                         : "/tmp";
        snprintf(dir, sizeof dir, "%s/netc-fuzz-XXXXXX", base);
        if (!mkdtemp(dir)) abort();
    }
    return dir;
}

#endif
