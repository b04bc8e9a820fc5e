/* parse.c — parser of the textual IR (see ir.h for the grammar by example).
 *
 *   file  := 'graph' NAME '{' stmt* '}'
 *   stmt  := VALUE '=' OP DTYPE shape [VALUE (',' VALUE)*] [STRING] [attrs]
 *          | 'output' VALUE STRING
 *   shape := '[' [dim (',' dim)*] ']'      dim := INT | batch | seq | ctx
 *   attrs := '{' [KEY '=' (INT | FLOAT | STRING) (',' ...)*] '}'
 *   VALUE := '%' (NAME | INT)              comments: '#' to end of line
 *
 * Values named by an integer are unnamed nodes (printed by their id). */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "ir.h"

typedef struct Map {
    const char *key; /* value name as written (without %) */
    Node *node;      /* the node it names */
} Map;

typedef struct Parser {
    Arena *a;         /* where the graph goes */
    const char *file; /* for diagnostics */
    const char *p;    /* cursor */
    int line, col;    /* cursor position (1-based) */
    Diag *d;          /* error sink */
    Map *map;         /* value names defined so far [nmap] */
    int nmap, capmap; /* size and capacity of map */
} Parser;

static void adv(Parser *ps)
{
    if (*ps->p == '\n') {
        ps->line++;
        ps->col = 1;
    } else {
        ps->col++;
    }
    ps->p++;
}

static void skip(Parser *ps)
{
    for (;;) {
        while (isspace((unsigned char)*ps->p))
            adv(ps);
        if (*ps->p != '#')
            return;
        while (*ps->p && *ps->p != '\n')
            adv(ps);
    }
}

static bool err(Parser *ps, const char *fmt, const char *arg)
{
    char msg[512];
    snprintf(msg, sizeof msg, fmt, arg);
    return diag_fail_at(ps->d, ps->file, ps->line, ps->col, "%s", msg);
}

static bool is_word(int c) { return isalnum(c) || c == '_' || c == '.' || c == '-'; }

/* Reads a word (identifier, number) into buf; returns its length (0 = none). */
static size_t word(Parser *ps, char *buf, size_t cap)
{
    skip(ps);
    size_t n = 0;
    while (is_word((unsigned char)*ps->p) && n + 1 < cap) {
        buf[n++] = *ps->p;
        adv(ps);
    }
    buf[n] = 0;
    return n;
}

static bool expect(Parser *ps, char c)
{
    skip(ps);
    if (*ps->p != c) {
        char s[2] = {c, 0};
        return err(ps, "expected '%s'", s);
    }
    adv(ps);
    return true;
}

static bool peek(Parser *ps, char c)
{
    skip(ps);
    return *ps->p == c;
}

static bool string_lit(Parser *ps, const char **out)
{
    skip(ps);
    if (*ps->p != '"')
        return err(ps, "expected a string%s", "");
    adv(ps);
    char buf[1024];
    size_t n = 0;
    while (*ps->p && *ps->p != '"' && *ps->p != '\n') {
        if (*ps->p == '\\') {
            adv(ps);
            if (!*ps->p || *ps->p == '\n')
                break; /* a backslash ending the line or the input escapes nothing */
        }
        if (n + 1 < sizeof buf)
            buf[n++] = *ps->p;
        adv(ps);
    }
    if (*ps->p != '"')
        return err(ps, "unterminated string%s", "");
    adv(ps);
    buf[n] = 0;
    *out = arena_strdup(ps->a, buf);
    return true;
}

static Node *lookup(Parser *ps, const char *key)
{
    for (int i = 0; i < ps->nmap; i++)
        if (!strcmp(ps->map[i].key, key))
            return ps->map[i].node;
    return NULL;
}

static void define(Parser *ps, const char *key, Node *n)
{
    if (ps->nmap == ps->capmap) {
        ps->capmap = ps->capmap ? ps->capmap * 2 : 64;
        Map *m = arena_alloc(ps->a, sizeof(Map) * (size_t)ps->capmap);
        if (ps->nmap)
            memcpy(m, ps->map, sizeof(Map) * (size_t)ps->nmap);
        ps->map = m;
    }
    ps->map[ps->nmap].key = arena_strdup(ps->a, key);
    ps->map[ps->nmap].node = n;
    ps->nmap++;
}

static bool value_ref(Parser *ps, char *key, size_t cap)
{
    skip(ps);
    if (*ps->p != '%')
        return err(ps, "expected a value (%%name)%s", "");
    adv(ps);
    if (!word(ps, key, cap))
        return err(ps, "expected a value name after '%%'%s", "");
    return true;
}

static bool all_digits(const char *s)
{
    for (; *s; s++)
        if (!isdigit((unsigned char)*s))
            return false;
    return true;
}

static bool parse_attr_value(Parser *ps, Attr *a)
{
    skip(ps);
    if (*ps->p == '"') {
        a->kind = ATTR_STR;
        return string_lit(ps, &a->s);
    }
    char buf[64];
    int line = ps->line, col = ps->col;
    if (!word(ps, buf, sizeof buf))
        return err(ps, "expected an attribute value%s", "");
    char *end;
    errno = 0;
    if (!strpbrk(buf, ".eEn")) {
        long long v = strtoll(buf, &end, 10);
        if (*end || errno)
            return diag_fail_at(ps->d, ps->file, line, col, "bad integer '%s'", buf);
        a->kind = ATTR_INT;
        a->i = v;
        return true;
    }
    double f = strtod(buf, &end);
    if (*end)
        return diag_fail_at(ps->d, ps->file, line, col, "bad number '%s'", buf);
    a->kind = ATTR_FLOAT;
    a->f = f;
    return true;
}

static bool parse_stmt(Parser *ps, Graph *g)
{
    char key[128], buf[128];
    int line = ps->line, col = ps->col;
    if (!value_ref(ps, key, sizeof key))
        return false;
    if (lookup(ps, key))
        return diag_fail_at(ps->d, ps->file, line, col, "value %%%s defined twice", key);
    if (!expect(ps, '='))
        return false;
    skip(ps);
    line = ps->line, col = ps->col;
    Op op;
    if (!word(ps, buf, sizeof buf) || !op_parse(buf, &op))
        return diag_fail_at(ps->d, ps->file, line, col, "unknown op '%s'", buf);
    skip(ps);
    line = ps->line, col = ps->col;
    DType dt;
    if (!word(ps, buf, sizeof buf) || !dtype_parse(buf, &dt))
        return diag_fail_at(ps->d, ps->file, line, col, "unknown dtype '%s'", buf);
    if (!expect(ps, '['))
        return false;
    int ndim = 0;
    Dim dim[IR_MAX_DIMS];
    while (!peek(ps, ']')) {
        if (ndim && !expect(ps, ','))
            return false;
        skip(ps);
        line = ps->line, col = ps->col;
        if (!word(ps, buf, sizeof buf))
            return err(ps, "expected a dimension%s", "");
        if (ndim == IR_MAX_DIMS)
            return diag_fail_at(ps->d, ps->file, line, col, "more than %d dimensions", IR_MAX_DIMS);
        Sym s;
        if (sym_parse(buf, &s))
            dim[ndim++] = dim_sym(s);
        else if (all_digits(buf))
            dim[ndim++] = dim_n(strtoll(buf, NULL, 10));
        else
            return diag_fail_at(ps->d, ps->file, line, col, "bad dimension '%s'", buf);
    }
    expect(ps, ']');
    Node *src[IR_MAX_SRC];
    int nsrc = 0;
    if (peek(ps, '%')) {
        do {
            skip(ps);
            line = ps->line, col = ps->col;
            if (!value_ref(ps, buf, sizeof buf))
                return false;
            Node *s = lookup(ps, buf);
            if (!s)
                return diag_fail_at(ps->d, ps->file, line, col, "undefined value %%%s", buf);
            if (nsrc == IR_MAX_SRC)
                return diag_fail_at(ps->d, ps->file, line, col, "too many operands");
            src[nsrc++] = s;
        } while (peek(ps, ',') && (adv(ps), true));
    }
    Node *n = graph_add(g, op, dt, nsrc, src);
    node_set_shape(n, ndim, dim);
    if (!all_digits(key))
        n->name = arena_strdup(ps->a, key);
    define(ps, key, n);
    if (peek(ps, '"') && !string_lit(ps, &n->ext))
        return false;
    if (peek(ps, '{')) {
        adv(ps);
        while (!peek(ps, '}')) {
            if (n->nattr && !expect(ps, ','))
                return false;
            skip(ps);
            line = ps->line, col = ps->col;
            if (!word(ps, buf, sizeof buf))
                return err(ps, "expected an attribute name%s", "");
            if (node_attr(n, buf))
                return diag_fail_at(ps->d, ps->file, line, col, "attribute '%s' given twice", buf);
            if (!expect(ps, '='))
                return false;
            Attr a = {0};
            if (!parse_attr_value(ps, &a))
                return false;
            a.key = arena_strdup(ps->a, buf);
            Attr *arr = arena_alloc(ps->a, sizeof(Attr) * (size_t)(n->nattr + 1));
            if (n->nattr)
                memcpy(arr, n->attr, sizeof(Attr) * (size_t)n->nattr);
            arr[n->nattr++] = a;
            n->attr = arr;
        }
        adv(ps);
    }
    return true;
}

Graph *ir_parse(Arena *a, const char *text, const char *file, Diag *d)
{
    Parser ps = {.a = a, .file = file, .p = text, .line = 1, .col = 1, .d = d};
    char buf[128];
    skip(&ps);
    if (!word(&ps, buf, sizeof buf) || strcmp(buf, "graph")) {
        err(&ps, "expected 'graph'%s", "");
        return NULL;
    }
    if (!word(&ps, buf, sizeof buf)) {
        err(&ps, "expected a graph name%s", "");
        return NULL;
    }
    Graph *g = graph_new(a, buf);
    if (!expect(&ps, '{'))
        return NULL;
    for (;;) {
        skip(&ps);
        if (*ps.p == '}') {
            adv(&ps);
            break;
        }
        if (!*ps.p) {
            err(&ps, "unexpected end of input: missing '}'%s", "");
            return NULL;
        }
        if (*ps.p == '%') {
            if (!parse_stmt(&ps, g))
                return NULL;
            continue;
        }
        int line = ps.line, col = ps.col;
        if (!word(&ps, buf, sizeof buf) || strcmp(buf, "output")) {
            diag_fail_at(d, file, line, col, "expected a statement, found '%s'", buf);
            return NULL;
        }
        char key[128];
        skip(&ps);
        line = ps.line, col = ps.col;
        if (!value_ref(&ps, key, sizeof key))
            return NULL;
        Node *n = lookup(&ps, key);
        if (!n) {
            diag_fail_at(d, file, line, col, "undefined value %%%s", key);
            return NULL;
        }
        const char *name;
        if (!string_lit(&ps, &name))
            return NULL;
        graph_add_output(g, n, name);
    }
    skip(&ps);
    if (*ps.p) {
        err(&ps, "trailing text after the graph%s", "");
        return NULL;
    }
    return g;
}
