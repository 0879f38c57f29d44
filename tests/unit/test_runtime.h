/* tests/unit/test_runtime.h -- what the runtime's unit tests share: checks of an
 * nrt_* call's status and message, and a scratch directory with helpers that
 * write files into it. Include after test.h; call test_dir_make() first. */
#ifndef NETC_TEST_RUNTIME_H
#define NETC_TEST_RUNTIME_H

#include "runtime/netrt.h"
#include "test.h"

#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* Checks that call fails and that its message contains substr. */
#define EXPECT_ERR(call, substr)                                                     \
    do {                                                                             \
        int rc_ = (call);                                                            \
        if (rc_ == 0)                                                                \
            TEST_FAIL_("%s succeeded, expected an error with '%s'", #call, substr);  \
        else if (!strstr(nrt_error(), substr))                                       \
            TEST_FAIL_("%s: message \"%s\" lacks '%s'", #call, nrt_error(), substr); \
        else                                                                         \
            test_passed++;                                                           \
    } while (0)

/* Checks that call succeeds, printing the message if not. */
#define EXPECT_OK(call)                                      \
    do {                                                     \
        int rc_ = (call);                                    \
        if (rc_ != 0)                                        \
            TEST_FAIL_("%s failed: %s", #call, nrt_error()); \
        else                                                 \
            test_passed++;                                   \
    } while (0)

static char dir[64]; /* the scratch directory of this test program */

/* Make the scratch directory /tmp/<prefix>_XXXXXX; false (after perror) on failure. */
static inline int test_dir_make(const char *prefix) {
    snprintf(dir, sizeof dir, "/tmp/%s_XXXXXX", prefix);
    if (mkdtemp(dir)) return 1;
    perror("mkdtemp");
    return 0;
}

/* A path inside the scratch directory. */
static inline const char *tmp_path(const char *name) {
    static char buf[16][256]; /* a ring: each test keeps only a few names */
    static int k;
    k = (k + 1) % 16;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static inline void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        TEST_FAIL_("cannot write %s", path);
        return;
    }
    if (n) CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

/* Runtime allocations not yet freed (a leak check after each test). */
static inline int64_t live_blocks(void) {
    struct nrt_alloc_stats s;
    nrt_alloc_stats_get(&s);
    return s.live;
}

/* The same, gzip-compressed. */
static inline void write_gz(const char *path, const void *data, size_t n) {
    gzFile g = gzopen(path, "wb");
    if (!g) {
        TEST_FAIL_("cannot write %s", path);
        return;
    }
    if (n) CHECK(gzwrite(g, data, (unsigned)n) == (int)n);
    gzclose(g);
}

#endif
