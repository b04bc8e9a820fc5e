/* sym.c — symbolic sizes: the polynomial SymExpr over batch, seq, ctx. */
#include "sym.h"

#include <assert.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const sym_names[SYM_COUNT] = {"", "batch", "seq", "ctx"};
/* Monomial spellings, in Mono order. */
static const char *const mono_names[MONO_COUNT] = {"", "batch", "seq", "ctx", "batch*seq", "batch*ctx"};

const char *sym_name(Sym s) { return s < SYM_COUNT ? sym_names[s] : "?"; }

bool sym_parse(const char *s, Sym *out)
{
    for (int i = 1; i < SYM_COUNT; i++)
        if (!strcmp(s, sym_names[i])) {
            *out = (Sym)i;
            return true;
        }
    return false;
}

SymExpr sym_const(int64_t v)
{
    SymExpr e = {{0}, 1};
    e.c[MONO_1] = v;
    return e;
}

SymExpr sym_mono(Mono m, int64_t coef)
{
    SymExpr e = {{0}, 1};
    e.c[m] = coef;
    return e;
}

SymExpr sym_add(SymExpr a, SymExpr b)
{
    assert(a.div == 1 && b.div == 1);
    for (int i = 0; i < MONO_COUNT; i++)
        a.c[i] += b.c[i];
    return a;
}

SymExpr sym_scale(SymExpr a, int64_t k)
{
    assert(a.div == 1);
    for (int i = 0; i < MONO_COUNT; i++)
        a.c[i] *= k;
    return a;
}

SymExpr sym_ceildiv(SymExpr a, int64_t d)
{
    assert(a.div == 1 && d >= 1);
    a.div = d;
    return a;
}

bool sym_is_const(SymExpr a)
{
    for (int i = 1; i < MONO_COUNT; i++)
        if (a.c[i])
            return false;
    return true;
}

/* The monomial that m times symbol s becomes, or -1. */
static int mono_times(int m, Sym s)
{
    switch (m) {
    case MONO_1: return s == SYM_BATCH ? MONO_B : s == SYM_SEQ ? MONO_S : MONO_C;
    case MONO_B: return s == SYM_SEQ ? MONO_BS : s == SYM_CTX ? MONO_BC : -1;
    case MONO_S: return s == SYM_BATCH ? MONO_BS : -1;
    case MONO_C: return s == SYM_BATCH ? MONO_BC : -1;
    default: return -1;
    }
}

bool sym_mul_mono(SymExpr *acc, Sym s)
{
    assert(acc->div == 1);
    if (s == SYM_NONE)
        return true;
    SymExpr r = {{0}, 1};
    for (int i = 0; i < MONO_COUNT; i++) {
        if (!acc->c[i])
            continue;
        int m = mono_times(i, s);
        if (m < 0)
            return false;
        r.c[m] += acc->c[i];
    }
    *acc = r;
    return true;
}

int64_t sym_eval(SymExpr a, int64_t batch, int64_t seq, int64_t ctx)
{
    int64_t v = a.c[MONO_1] + a.c[MONO_B] * batch + a.c[MONO_S] * seq + a.c[MONO_C] * ctx +
                a.c[MONO_BS] * batch * seq + a.c[MONO_BC] * batch * ctx;
    int64_t d = a.div > 0 ? a.div : 1;
    return v >= 0 ? (v + d - 1) / d : -((-v) / d);
}

int sym_format(SymExpr a, char *buf, size_t n)
{
    char body[256];
    size_t len = 0;
    body[0] = 0;
    for (int i = MONO_COUNT - 1; i >= 0; i--) {
        int64_t c = a.c[i];
        if (!c)
            continue;
        const char *sign = c < 0 ? "-" : len ? "+" : "";
        int64_t m = c < 0 ? -c : c;
        int w;
        if (i == MONO_1)
            w = snprintf(body + len, sizeof body - len, "%s%lld", sign, (long long)m);
        else if (m == 1)
            w = snprintf(body + len, sizeof body - len, "%s%s", sign, mono_names[i]);
        else
            w = snprintf(body + len, sizeof body - len, "%s%lld*%s", sign, (long long)m, mono_names[i]);
        if (w > 0)
            len += (size_t)w < sizeof body - len ? (size_t)w : sizeof body - len - 1;
    }
    if (!len)
        snprintf(body, sizeof body, "0");
    if (a.div > 1)
        return snprintf(buf, n, "ceil(%s/%lld)", body, (long long)a.div);
    return snprintf(buf, n, "%s", body);
}

/* ---- parser: expr := ['-'] term (('+'|'-') term)*; term := [INT '*'] syms | INT ---- */
static void skip_ws(const char **p)
{
    while (isspace((unsigned char)**p))
        (*p)++;
}

static bool parse_term(const char **p, int64_t sign, SymExpr *acc)
{
    skip_ws(p);
    int64_t coef = 1;
    bool have_num = false;
    if (isdigit((unsigned char)**p)) {
        char *end;
        coef = strtoll(*p, &end, 10);
        *p = end;
        have_num = true;
        skip_ws(p);
        if (**p != '*') {
            acc->c[MONO_1] += sign * coef;
            return true;
        }
        (*p)++;
    }
    SymExpr t = sym_const(coef);
    for (;;) {
        skip_ws(p);
        const char *s = *p;
        while (isalpha((unsigned char)**p))
            (*p)++;
        if (*p == s)
            return false;
        char name[16];
        size_t l = (size_t)(*p - s);
        if (l >= sizeof name)
            return false;
        memcpy(name, s, l);
        name[l] = 0;
        Sym sy;
        if (!sym_parse(name, &sy) || !sym_mul_mono(&t, sy))
            return false;
        skip_ws(p);
        if (**p != '*')
            break;
        (*p)++;
    }
    (void)have_num;
    for (int i = 0; i < MONO_COUNT; i++)
        acc->c[i] += sign * t.c[i];
    return true;
}

static bool parse_sum(const char **p, SymExpr *acc)
{
    skip_ws(p);
    int64_t sign = 1;
    if (**p == '-') {
        sign = -1;
        (*p)++;
    }
    if (!parse_term(p, sign, acc))
        return false;
    for (;;) {
        skip_ws(p);
        if (**p == '+')
            sign = 1;
        else if (**p == '-')
            sign = -1;
        else
            return true;
        (*p)++;
        if (!parse_term(p, sign, acc))
            return false;
    }
}

bool sym_parse_expr(const char *s, SymExpr *out)
{
    SymExpr e = {{0}, 1};
    const char *p = s;
    skip_ws(&p);
    if (!strncmp(p, "ceil(", 5)) {
        p += 5;
        if (!parse_sum(&p, &e))
            return false;
        skip_ws(&p);
        if (*p++ != '/')
            return false;
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 1)
            return false;
        p = end;
        skip_ws(&p);
        if (*p++ != ')')
            return false;
        e.div = d;
    } else if (!parse_sum(&p, &e)) {
        return false;
    }
    skip_ws(&p);
    if (*p)
        return false;
    *out = e;
    return true;
}
