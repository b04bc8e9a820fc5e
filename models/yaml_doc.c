/* yaml_doc.c — positioned, typed access to a libyaml document. */
#include "yaml_doc.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

bool ydoc_parse(YDoc *y, const char *file, const char *text, Diag *d)
{
    memset(y, 0, sizeof *y);
    y->file = file;
    y->text = strdup(text);
    if (!y->text)
        return diag_fail(d, "out of memory");
    yaml_parser_t p;
    if (!yaml_parser_initialize(&p))
        return diag_fail(d, "libyaml: cannot initialise parser");
    yaml_parser_set_input_string(&p, (const unsigned char *)y->text, strlen(y->text));
    bool ok = yaml_parser_load(&p, &y->doc);
    if (!ok) {
        yaml_mark_t m = p.problem_mark;
        const char *prob = p.problem ? p.problem : "syntax error";
        if (p.context)
            diag_fail_at(d, file, (int)m.line + 1, (int)m.column + 1, "YAML: %s %s", prob, p.context);
        else
            diag_fail_at(d, file, (int)m.line + 1, (int)m.column + 1, "YAML: %s", prob);
    } else {
        y->loaded = true;
    }
    if (ok && yaml_document_get_root_node(&y->doc)) {
        /* One document per file: a second one would be silently ignored. */
        yaml_document_t extra;
        if (!yaml_parser_load(&p, &extra)) {
            yaml_mark_t m = p.problem_mark;
            diag_fail_at(d, file, (int)m.line + 1, (int)m.column + 1, "YAML: %s",
                         p.problem ? p.problem : "syntax error");
            ok = false;
        } else {
            YNode *r = yaml_document_get_root_node(&extra);
            if (r) {
                diag_fail_at(d, file, (int)r->start_mark.line + 1, (int)r->start_mark.column + 1,
                             "a second YAML document starts here; a model file holds one");
                ok = false;
            }
            yaml_document_delete(&extra);
        }
    }
    yaml_parser_delete(&p);
    if (ok && !yaml_document_get_root_node(&y->doc))
        return diag_fail_at(d, file, 1, 1, "empty model file");
    return ok;
}

void ydoc_free(YDoc *y)
{
    if (y->loaded)
        yaml_document_delete(&y->doc);
    free(y->text);
    memset(y, 0, sizeof *y);
}

YNode *ydoc_root(YDoc *y) { return yaml_document_get_root_node(&y->doc); }
int ynode_line(const YNode *n) { return (int)n->start_mark.line + 1; }
int ynode_col(const YNode *n) { return (int)n->start_mark.column + 1; }

bool ydoc_fail(YDoc *y, const YNode *at, Diag *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    d->file = y->file;
    d->line = at ? ynode_line(at) : 0;
    d->col = at ? ynode_col(at) : 0;
    return false;
}

const char *yscalar(const YNode *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static bool is_plain(const YNode *n) { return n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE; }

bool yscalar_int(const YNode *n, int64_t *out)
{
    const char *s = yscalar(n);
    if (!s || !*s || !is_plain(n))
        return false;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end || errno)
        return false;
    *out = v;
    return true;
}

bool yscalar_float(const YNode *n, double *out)
{
    const char *s = yscalar(n);
    if (!s || !*s || !is_plain(n))
        return false;
    const char *t = s[0] == '+' || s[0] == '-' ? s + 1 : s;
    if (!strcasecmp(t, "inf") || !strcasecmp(t, ".inf")) {
        *out = s[0] == '-' ? -INFINITY : INFINITY;
        return true;
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || errno || isnan(v) || !strcasecmp(t, "nan"))
        return false;
    *out = v;
    return true;
}

/* Edit distance, for "did you mean" suggestions. */
static int edit_distance(const char *a, const char *b)
{
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > 63 || lb > 63)
        return 99;
    int prev[64], cur[64];
    for (int j = 0; j <= lb; j++)
        prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int c = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < c)
                c = prev[j] + 1;
            if (cur[j - 1] + 1 < c)
                c = cur[j - 1] + 1;
            cur[j] = c;
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

bool ymap_check(YDoc *y, YNode *map, const char *where, const char *const *allowed, Diag *d)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return ydoc_fail(y, map, d, "%s must be a mapping of 'key: value' lines", where);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        YNode *k = yaml_document_get_node(&y->doc, p->key);
        const char *key = yscalar(k);
        if (!key)
            return ydoc_fail(y, k, d, "keys of %s must be plain names", where);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (!strcmp(yscalar(yaml_document_get_node(&y->doc, q->key)), key))
                return ydoc_fail(y, k, d, "duplicate key '%s' in %s", key, where);
        const char *best = NULL;
        int best_d = 3;
        bool known = false;
        for (const char *const *a = allowed; *a; a++) {
            if (!strcmp(*a, key)) {
                known = true;
                break;
            }
            int e = edit_distance(*a, key);
            if (e < best_d) {
                best_d = e;
                best = *a;
            }
        }
        if (known)
            continue;
        if (best)
            return ydoc_fail(y, k, d, "unknown key '%s' in %s (did you mean '%s'?)", key, where, best);
        return ydoc_fail(y, k, d, "unknown key '%s' in %s", key, where);
    }
    return true;
}

static yaml_node_pair_t *find_pair(YDoc *y, YNode *map, const char *key)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top; p++) {
        const char *k = yscalar(yaml_document_get_node(&y->doc, p->key));
        if (k && !strcmp(k, key))
            return p;
    }
    return NULL;
}

YNode *ymap_get(YDoc *y, YNode *map, const char *key)
{
    yaml_node_pair_t *p = find_pair(y, map, key);
    return p ? yaml_document_get_node(&y->doc, p->value) : NULL;
}

YNode *ymap_key_node(YDoc *y, YNode *map, const char *key)
{
    yaml_node_pair_t *p = find_pair(y, map, key);
    return p ? yaml_document_get_node(&y->doc, p->key) : NULL;
}

static bool missing(YDoc *y, YNode *map, const char *key, Diag *d)
{
    return ydoc_fail(y, map, d, "missing required key '%s'", key);
}

static const char *shown(const YNode *v)
{
    const char *s = yscalar(v);
    return s ? s : v->type == YAML_MAPPING_NODE ? "a mapping" : "a list";
}

bool yget_int(YDoc *y, YNode *map, const char *key, bool required, int64_t lo, int64_t hi, int64_t *out, Diag *d)
{
    YNode *v = ymap_get(y, map, key);
    if (!v)
        return required ? missing(y, map, key, d) : true;
    int64_t x;
    if (!yscalar_int(v, &x))
        return ydoc_fail(y, v, d, "'%s' must be an integer, found '%s'", key, shown(v));
    if (x < lo || x > hi) {
        if (hi == INT64_MAX)
            return ydoc_fail(y, v, d, "'%s' must be >= %lld, found %lld", key, (long long)lo, (long long)x);
        return ydoc_fail(y, v, d, "'%s' must be in %lld..%lld, found %lld", key, (long long)lo, (long long)hi,
                         (long long)x);
    }
    *out = x;
    return true;
}

bool yget_float(YDoc *y, YNode *map, const char *key, bool required, double lo, double hi, double *out, Diag *d)
{
    YNode *v = ymap_get(y, map, key);
    if (!v)
        return required ? missing(y, map, key, d) : true;
    double x;
    if (!yscalar_float(v, &x))
        return ydoc_fail(y, v, d, "'%s' must be a number, found '%s'", key, shown(v));
    if (x < lo || x > hi)
        return ydoc_fail(y, v, d, "'%s' must be in [%g, %g], found %g", key, lo, hi, x);
    *out = x;
    return true;
}

bool yget_bool(YDoc *y, YNode *map, const char *key, bool required, bool *out, Diag *d)
{
    YNode *v = ymap_get(y, map, key);
    if (!v)
        return required ? missing(y, map, key, d) : true;
    const char *s = yscalar(v);
    if (s && is_plain(v) && (!strcmp(s, "true") || !strcmp(s, "false"))) {
        *out = s[0] == 't';
        return true;
    }
    return ydoc_fail(y, v, d, "'%s' must be true or false, found '%s'", key, shown(v));
}

bool yget_str(YDoc *y, YNode *map, const char *key, bool required, const char **out, Diag *d)
{
    YNode *v = ymap_get(y, map, key);
    if (!v)
        return required ? missing(y, map, key, d) : true;
    const char *s = yscalar(v);
    if (!s || !*s)
        return ydoc_fail(y, v, d, "'%s' must be a non-empty string", key);
    *out = s;
    return true;
}

bool yget_float_pair(YDoc *y, YNode *map, const char *key, double lo, double hi, double out[2], Diag *d)
{
    YNode *v = ymap_get(y, map, key);
    if (!v)
        return true;
    if (v->type != YAML_SEQUENCE_NODE || v->data.sequence.items.top - v->data.sequence.items.start != 2)
        return ydoc_fail(y, v, d, "'%s' must be a list of two numbers, like [0.0, inf]", key);
    double r[2];
    for (int i = 0; i < 2; i++) {
        YNode *e = yaml_document_get_node(&y->doc, v->data.sequence.items.start[i]);
        if (!yscalar_float(e, &r[i]))
            return ydoc_fail(y, e, d, "'%s' must be a list of two numbers, found '%s'", key, shown(e));
        if (r[i] < lo || r[i] > hi)
            return ydoc_fail(y, e, d, "'%s' values must be in [%g, %g], found %g", key, lo, hi, r[i]);
    }
    if (r[0] > r[1])
        return ydoc_fail(y, v, d, "'%s' must be [low, high] with low <= high", key);
    out[0] = r[0];
    out[1] = r[1];
    return true;
}
