/* tests/unit/test_frontend_fuzz.c -- the front end never crashes: random
 * truncations and mutations of every example (deleted, inserted, repeated and
 * swapped bytes and lines; hostile bytes like NUL, 0xff and unbalanced brackets)
 * go through fe_load_text, which must return a module that verifies, or NULL after
 * reporting errors. A fixed seed keeps runs reproducible (NETC_FUZZ_SEED and
 * NETC_FUZZ_CASES override seed and cases per example for longer hunts); build
 * with -DNETC_SANITIZE=ON to run it under AddressSanitizer and UBSan. */
#include "frontend/frontend.h"
#include "test.h"

#include <dirent.h>
#include <string.h>

static int cases_per_example = 400;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static size_t below(size_t n) { return n ? (size_t)(rnd() % n) : 0; }

static char *read_all(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 20);
    *len = buf ? fread(buf, 1, (1 << 20) - 1, f) : 0;
    fclose(f);
    return buf;
}

/* Interesting bytes to insert. */
static const char hostile[] = {'(', ')',  '[',  ']',  '{',        '}',        '-',        '>',       '=',
                               ',', '\n', '#',  '"',  '\\',       '.',        ':',        '@',       '0',
                               '9', 'N',  '\0', '\t', (char)0xff, (char)0xc3, (char)0xa9, (char)0x80};
static const char *const words[] = {
    "net ",      "model ",         "loss ",       "return ",  "train {",
    "step s {",  "dense(",         "->",          "1e999",    "99999999999999999999",
    "f32[N,",    "= normal(0, 1)", "x.shape[9]",  "D(",       "relu",
    "batchnorm", "lstm(5)",        "reshape(-1)", "update D", "0.0/0"};

/* Apply one random mutation to buf (capacity cap) and return the new length. */
static size_t mutate(char *buf, size_t len, size_t cap) {
    size_t at = below(len + 1);
    switch (below(8)) {
    case 0:
        return at; /* truncate */
    case 1: {      /* delete a range */
        size_t n = below(32) + 1;
        if (at + n > len) n = len - at;
        memmove(buf + at, buf + at + n, len - at - n);
        return len - n;
    }
    case 2: /* insert a hostile byte */
        if (len + 1 >= cap) return len;
        memmove(buf + at + 1, buf + at, len - at);
        buf[at] = hostile[below(sizeof hostile)];
        return len + 1;
    case 3: { /* insert a keyword or fragment */
        const char *w = words[below(sizeof words / sizeof words[0])];
        size_t n = strlen(w);
        if (len + n >= cap) return len;
        memmove(buf + at + n, buf + at, len - at);
        memcpy(buf + at, w, n);
        return len + n;
    }
    case 4: /* replace a byte with a random one */
        if (at < len) buf[at] = (char)below(256);
        return len;
    case 5: { /* duplicate a range (repeats lines, calls, blocks) */
        size_t n = below(200) + 1;
        if (at + n > len) n = len - at;
        if (len + n >= cap) return len;
        memmove(buf + at + n, buf + at, len - at);
        memcpy(buf + at + n, buf + at, n);
        return len + n;
    }
    case 6: { /* swap two bytes */
        size_t b = below(len);
        if (at < len) {
            char t = buf[at];
            buf[at] = buf[b];
            buf[b] = t;
        }
        return len;
    }
    default: /* change a digit: shapes and sizes go wrong */
        for (size_t i = at; i < len; i++)
            if (buf[i] >= '0' && buf[i] <= '9') {
                buf[i] = (char)('0' + below(10));
                break;
            }
        return len;
    }
}

static int runs, modules;

static void fuzz_file(const char *path) {
    size_t len;
    char *orig = read_all(path, &len);
    CHECK(orig != NULL);
    if (!orig) return;
    size_t cap = len * 2 + 4096;
    char *buf = malloc(cap);
    for (int c = 0; c < cases_per_example; c++) {
        memcpy(buf, orig, len);
        size_t n = len;
        int muts = 1 + (int)below(4);
        for (int k = 0; k < muts; k++) n = mutate(buf, n, cap);
        diag_reset();
        struct ir_module *m = fe_load_text("fuzz.net", buf, n);
        runs++;
        if (m) {
            modules++;
            bool ok = ir_verify(m);
            if (!ok) {
                fprintf(stderr, "case %d of %s lowered to a module that does not verify:\n%.*s\n", c, path,
                        (int)n, buf);
            }
            CHECK(ok);
            ir_module_free(m);
        } else {
            CHECK(diag_error_count() > 0); /* NULL always comes with an error */
        }
        if (runs % 256 == 0) diag_free(); /* the registered texts */
    }
    free(buf);
    free(orig);
}

int main(void) {
    if (getenv("NETC_FUZZ_SEED")) rng_state = strtoull(getenv("NETC_FUZZ_SEED"), NULL, 0) | 1;
    if (getenv("NETC_FUZZ_CASES")) cases_per_example = atoi(getenv("NETC_FUZZ_CASES"));
    char dir[512];
    snprintf(dir, sizeof dir, "%s/examples", NETC_SOURCE_DIR);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    if (!d) TEST_DONE();
    FILE *null = fopen("/dev/null", "w");
    diag_set_stream(null);
    char **names = NULL;
    for (struct dirent *e; (e = readdir(d));) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".net") == 0) vec_push(names, strdup(e->d_name));
    }
    closedir(d);
    CHECK(vec_len(names) >= 7);
    for (size_t i = 0; i < vec_len(names); i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        fuzz_file(path);
        free(names[i]);
    }
    vec_free(names);
    diag_set_stream(NULL);
    fclose(null);
    diag_free();
    printf("fuzz: %d cases, %d lowered to modules\n", runs, modules);
    CHECK(runs >= 7 * cases_per_example);
    TEST_DONE();
}
