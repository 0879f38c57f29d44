/* ir/arena.c -- the compilation arena (bump allocation in chunks, freed in one
 * call) and the growable vectors used across the compiler. */
#include "ir/ir.h"

#include <string.h>

#define ARENA_CHUNK (64 * 1024)

struct chunk {
    struct chunk *next; /* previously filled chunk */
    size_t used;        /* bytes handed out */
    size_t size;        /* bytes available in data[] */
    _Alignas(16) unsigned char data[];
};

struct arena {
    struct chunk *head; /* chunk being filled */
};

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    if (!p) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    return p;
}

struct arena *arena_new(void) {
    struct arena *a = xmalloc(sizeof *a);
    a->head = NULL;
    return a;
}

void arena_free(struct arena *a) {
    if (!a) return;
    for (struct chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

void *arena_alloc(struct arena *a, size_t size) {
    size = (size + 15) & ~(size_t)15;
    struct chunk *c = a->head;
    if (!c || c->size - c->used < size) {
        size_t cap = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        c = xmalloc(sizeof *c + cap);
        c->next = a->head;
        c->used = 0;
        c->size = cap;
        a->head = c;
    }
    void *p = c->data + c->used;
    c->used += size;
    memset(p, 0, size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *arena_strdup(struct arena *a, const char *s) { return s ? arena_strndup(a, s, strlen(s)) : NULL; }

char *arena_printf(struct arena *a, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void vec_grow_(void **v, size_t elem_size) {
    struct vec_hdr *h = *v ? vec_hdr_(*v) : NULL;
    if (h && h->len < h->cap) return;
    size_t cap = h ? h->cap * 2 : 8;
    struct vec_hdr *n = realloc(h, sizeof *n + cap * elem_size);
    if (!n) {
        fputs("netc: out of memory\n", stderr);
        exit(1);
    }
    if (!h) n->len = 0;
    n->cap = cap;
    *v = n + 1;
}
