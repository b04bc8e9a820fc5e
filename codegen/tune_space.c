/* tune_space.c — see tune_space.h; the space grammar is at the top of
 * kernels.def. */
#include "tune_space.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"
#include "plan_format.h"

enum { MAX_AXES = 6, MAX_ALTS = 16 };

typedef struct Alt {
    int n;                /* attributes this alternative sets */
    char key[TUNE_MAX_SETS][16]; /* [n] their names */
    int64_t value[TUNE_MAX_SETS]; /* [n] their values */
} Alt;

typedef struct Axis {
    int nalt;             /* alternatives */
    Alt alt[MAX_ALTS];    /* [nalt] */
} Axis;

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n')
        p++;
    return p;
}

/* Parses "k=v" at *pp into a (key, value) pair. */
static bool parse_kv(const char **pp, char *key, int64_t *value)
{
    const char *p = skip_ws(*pp);
    size_t k = strcspn(p, "=;|,() ");
    if (!k || k >= 16 || p[k] != '=')
        return false;
    memcpy(key, p, k);
    key[k] = 0;
    char *end;
    *value = strtoll(p + k + 1, &end, 10);
    if (end == p + k + 1)
        return false;
    *pp = end;
    return true;
}

/* Parses a whole space; false on a malformed one. */
static bool parse_space(const char *s, Axis *ax, int *nax)
{
    *nax = 0;
    const char *p = skip_ws(s);
    while (*p) {
        if (*nax == MAX_AXES)
            return false;
        Axis *a = &ax[(*nax)++];
        a->nalt = 0;
        size_t k = strcspn(p, "=;|");
        if (!k || k >= 16 || p[k] != '=')
            return false;
        char label[16];
        memcpy(label, p, k);
        label[k] = 0;
        p += k + 1;
        for (;;) {
            if (a->nalt == MAX_ALTS)
                return false;
            Alt *alt = &a->alt[a->nalt++];
            alt->n = 0;
            p = skip_ws(p);
            if (*p == '(') { /* coupled attributes */
                p++;
                for (;;) {
                    if (alt->n == TUNE_MAX_SETS || !parse_kv(&p, alt->key[alt->n], &alt->value[alt->n]))
                        return false;
                    alt->n++;
                    p = skip_ws(p);
                    if (*p == ',') {
                        p++;
                        continue;
                    }
                    if (*p++ != ')')
                        return false;
                    break;
                }
            } else { /* a value of the axis's own key */
                char *end;
                alt->value[0] = strtoll(p, &end, 10);
                if (end == p)
                    return false;
                snprintf(alt->key[0], sizeof alt->key[0], "%s", label);
                alt->n = 1;
                p = end;
            }
            p = skip_ws(p);
            if (*p == '|') {
                p++;
                continue;
            }
            break;
        }
        if (*p == ';')
            p = skip_ws(p + 1);
        else if (*p)
            return false;
    }
    return true;
}

static bool axis_applies(const Axis *a, const Node *n)
{
    for (int i = 0; i < a->nalt; i++)
        for (int j = 0; j < a->alt[i].n; j++)
            if (node_attr(n, a->alt[i].key[j]))
                return true;
    return false;
}

int tune_candidates(const Node *n, TuneCand *out, int max, Diag *d)
{
    const char *kernel = node_str(n, "kernel", NULL);
    const char *space = kernel ? kernel_tune_space(kernel) : NULL;
    if (!space)
        return diag_fail(d, "%%%s: no kernel template '%s'", n->name ? n->name : "?", kernel ? kernel : "(none)"), -1;
    Axis ax[MAX_AXES];
    int nax;
    if (!parse_space(space, ax, &nax))
        return diag_fail(d, "internal error: malformed tuning space of '%s' in kernels.def: \"%s\"", kernel, space), -1;
    const Axis *use[MAX_AXES];
    int nuse = 0, total = 1;
    for (int i = 0; i < nax; i++)
        if (axis_applies(&ax[i], n)) {
            use[nuse++] = &ax[i];
            total *= ax[i].nalt;
        }
    if (!nuse)
        return 0;
    if (total > max)
        return diag_fail(d, "'%s' has %d candidate schedules, more than %d", kernel, total, max), -1;
    for (int c = 0; c < total; c++) {
        TuneCand *tc = &out[c];
        memset(tc, 0, sizeof *tc);
        int rest = c;
        for (int i = nuse - 1; i >= 0; i--) { /* mixed radix, the last axis fastest */
            const Alt *alt = &use[i]->alt[rest % use[i]->nalt];
            rest /= use[i]->nalt;
            for (int j = alt->n - 1; j >= 0; j--) { /* prepend, so the text keeps the space's order */
                if (tc->n == TUNE_MAX_SETS)
                    return diag_fail(d, "internal error: '%s' sets more than %d attributes", kernel, TUNE_MAX_SETS), -1;
                memmove(&tc->set[1], &tc->set[0], (size_t)tc->n * sizeof tc->set[0]);
                snprintf(tc->set[0].key, sizeof tc->set[0].key, "%s", alt->key[j]);
                tc->set[0].value = alt->value[j];
                tc->n++;
            }
        }
        size_t len = 0;
        for (int j = 0; j < tc->n; j++)
            len += (size_t)snprintf(tc->text + len, sizeof tc->text - len, "%s%s=%lld", j ? "," : "", tc->set[j].key,
                                    (long long)tc->set[j].value);
    }
    return total;
}

/* The distinct attribute names a template's space sets. */
typedef struct KeySet {
    int n;            /* names */
    char key[32][16]; /* [n] */
} KeySet;

static void space_keys(const char *kernel, KeySet *ks)
{
    ks->n = 0;
    const char *space = kernel_tune_space(kernel);
    Axis ax[MAX_AXES];
    int nax;
    if (!space || !parse_space(space, ax, &nax))
        return;
    for (int i = 0; i < nax; i++)
        for (int a = 0; a < ax[i].nalt; a++)
            for (int j = 0; j < ax[i].alt[a].n; j++) {
                bool seen = false;
                for (int k = 0; k < ks->n && !seen; k++)
                    seen = !strcmp(ks->key[k], ax[i].alt[a].key[j]);
                if (!seen && ks->n < 32)
                    snprintf(ks->key[ks->n++], sizeof ks->key[0], "%s", ax[i].alt[a].key[j]);
            }
}

static bool keyset_has(const KeySet *ks, const char *key)
{
    for (int k = 0; k < ks->n; k++)
        if (!strcmp(ks->key[k], key))
            return true;
    return false;
}

bool tune_space_has_key(const char *kernel, const char *key)
{
    KeySet ks;
    space_keys(kernel, &ks);
    return keyset_has(&ks, key);
}

void tune_apply(Graph *g, Node *n, const TuneCand *c)
{
    for (int j = 0; j < c->n; j++)
        node_set_int(g, n, c->set[j].key, c->set[j].value);
}

bool tune_apply_text(Graph *g, Node *n, const char *text)
{
    KeySet ks;
    space_keys(node_str(n, "kernel", ""), &ks);
    TuneCand c = {0};
    const char *p = text;
    while (*skip_ws(p)) {
        if (c.n == TUNE_MAX_SETS || !parse_kv(&p, c.set[c.n].key, &c.set[c.n].value) ||
            !keyset_has(&ks, c.set[c.n].key))
            return false;
        c.n++;
        p = skip_ws(p);
        if (*p == ',')
            p++;
        else if (*p)
            return false;
    }
    tune_apply(g, n, &c);
    return true;
}

void tune_schedule_text(const Node *n, char *buf, size_t len)
{
    KeySet ks;
    space_keys(node_str(n, "kernel", ""), &ks);
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n->nattr && k < len; i++)
        if (n->attr[i].kind == ATTR_INT && keyset_has(&ks, n->attr[i].key))
            k += (size_t)snprintf(buf + k, len - k, "%s%s=%lld", k ? "," : "", n->attr[i].key,
                                  (long long)n->attr[i].i);
}

/* A growing string for kernel_key. */
typedef struct Str {
    char *s;    /* text [len], NUL-terminated */
    size_t len; /* bytes */
    size_t cap; /* capacity */
} Str;

static void put(Str *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(Str *b, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int k = vsnprintf(b->s ? b->s + b->len : NULL, b->s ? b->cap - b->len : 0, fmt, ap);
        va_end(ap);
        if (b->s && b->len + (size_t)k < b->cap) {
            b->len += (size_t)k;
            return;
        }
        b->cap = 2 * (b->cap + (size_t)k + 64);
        b->s = realloc(b->s, b->cap);
        if (!b->s)
            abort();
    }
}

static void put_shape(Str *b, const Node *n)
{
    put(b, " %s %s[", op_info[n->op].name, dtype_name(n->dtype));
    for (int i = 0; i < n->ndim; i++)
        if (n->dim[i].sym)
            put(b, "%s%s", i ? "," : "", sym_name(n->dim[i].sym));
        else
            put(b, "%s%lld", i ? "," : "", (long long)n->dim[i].n);
    put(b, "]");
}

char *kernel_key(const Node *n, bool without_schedule)
{
    const char *kernel = node_str(n, "kernel", "");
    KeySet ks = {0};
    if (without_schedule)
        space_keys(kernel, &ks);
    Str b = {0};
    put(&b, "%s:", kernel);
    put_shape(&b, n);
    for (int i = 0; i < n->nattr; i++) {
        const Attr *a = &n->attr[i];
        if (keyset_has(&ks, a->key))
            continue;
        if (a->kind == ATTR_INT)
            put(&b, " %s=%lld", a->key, (long long)a->i);
        else if (a->kind == ATTR_FLOAT)
            put(&b, " %s=%.17g", a->key, a->f);
        else
            put(&b, " %s=\"%s\"", a->key, a->s);
    }
    for (int i = 0; i < n->nsrc; i++) {
        put(&b, " <");
        put_shape(&b, n->src[i]);
    }
    return b.s;
}

void kernel_key_hash(const Node *n, char *buf)
{
    char *k = kernel_key(n, true);
    snprintf(buf, 17, "%016llx", (unsigned long long)plan_fnv1a(k, strlen(k), PLAN_FNV_SEED));
    free(k);
}
