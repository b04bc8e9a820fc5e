/* kernel_memo.c — see kernel_memo.h. */
#include "kernel_memo.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "plan_format.h"

typedef struct Emitted {
    uint64_t hash; /* FNV-1a of key */
    char *key;     /* "target|kernel key" */
    KOut ko;       /* its launches, PTX owned */
} Emitted;

struct KernelMemo {
    int n;       /* entries */
    int cap;     /* capacity of e */
    Emitted *e;  /* [n] */
};

KernelMemo *kernel_memo_new(void)
{
    KernelMemo *m = calloc(1, sizeof *m);
    if (!m)
        abort();
    return m;
}

void kernel_memo_free(KernelMemo *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++) {
        free(m->e[i].key);
        for (int j = 0; j < m->e[i].ko.n; j++)
            free(m->e[i].ko.l[j].ptx);
    }
    free(m->e);
    free(m);
}

static void kout_copy(KOut *dst, const KOut *src)
{
    *dst = *src;
    for (int j = 0; j < src->n; j++) {
        dst->l[j].ptx = src->l[j].ptx ? strdup(src->l[j].ptx) : NULL;
        if (src->l[j].ptx && !dst->l[j].ptx)
            abort();
    }
}

static char *full_key(const char *target, const char *key, uint64_t *hash)
{
    size_t n = strlen(target) + strlen(key) + 2;
    char *k = malloc(n);
    if (!k)
        abort();
    snprintf(k, n, "%s|%s", target, key);
    *hash = plan_fnv1a(k, n - 1, PLAN_FNV_SEED);
    return k;
}

/* The entry for (target, key), or NULL. */
static const Emitted *find(const KernelMemo *m, const char *target, const char *key)
{
    uint64_t h;
    char *k = full_key(target, key, &h);
    const Emitted *e = NULL;
    for (int i = 0; i < m->n && !e; i++)
        if (m->e[i].hash == h && !strcmp(m->e[i].key, k))
            e = &m->e[i];
    free(k);
    return e;
}

bool kernel_memo_get(const KernelMemo *m, const char *target, const char *key, KOut *ko)
{
    const Emitted *e = find(m, target, key);
    if (e)
        kout_copy(ko, &e->ko);
    return e != NULL;
}

bool kernel_memo_has(const KernelMemo *m, const char *target, const char *key) { return find(m, target, key) != NULL; }

void kernel_memo_put(KernelMemo *m, const char *target, const char *key, const KOut *ko)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? 2 * m->cap : 64;
        m->e = realloc(m->e, (size_t)m->cap * sizeof *m->e);
        if (!m->e)
            abort();
    }
    Emitted *e = &m->e[m->n++];
    e->key = full_key(target, key, &e->hash);
    kout_copy(&e->ko, ko);
}
