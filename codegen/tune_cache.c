/* tune_cache.c — the tuning cache file (see tune_cache.h): one table of the
 * entry's fields drives reading, checking and writing, so the file's field
 * order and its checks cannot drift apart. */
#include "tune_cache.h"

#include "errbuf.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "atomic_file.h"
#include "json.h"

typedef enum FieldKind { F_STR, F_INT, F_NUM } FieldKind;

/* One member of an entry object. */
typedef struct Field {
    const char *name; /* JSON member name */
    FieldKind kind;   /* its JSON type: string, integer or number */
    size_t off;       /* offset of the value in TuneEntry */
    size_t size;      /* F_STR: size of the char buffer */
    int min;          /* F_INT: least valid value */
    bool nl;          /* written at the start of a new line */
} Field;

#define STR(n, m, nl) {n, F_STR, offsetof(TuneEntry, m), sizeof(((TuneEntry *)0)->m), 0, nl}
#define INT(n, m, lo, nl) {n, F_INT, offsetof(TuneEntry, m), sizeof(int), lo, nl}
#define NUM(n, m, nl) {n, F_NUM, offsetof(TuneEntry, m), sizeof(double), 0, nl}
static const Field fields[] = {
    STR("gpu", dev.name, true), INT("sm_count", dev.sm_count, 1, false), INT("driver", dev.driver, 0, false),
    STR("msac", msac, false), STR("target", target, false),
    STR("kernel", kernel, true), STR("key", key, false), STR("desc", desc, false),
    STR("program", program, true), INT("batch", batch, 1, false), INT("seq", seq, 1, false), INT("ctx", ctx, 0, false),
    STR("schedule", schedule, true), STR("default_schedule", default_schedule, false),
    NUM("best_us", best_us, true), NUM("default_us", default_us, false), INT("tried", tried, 0, false),
    INT("rejected", rejected, 0, false),
};
#undef STR
#undef INT
#undef NUM
enum { NFIELDS = sizeof fields / sizeof fields[0] };


static char *fstr(TuneEntry *e, const Field *f) { return (char *)e + f->off; }
static int *fint(TuneEntry *e, const Field *f) { return (int *)((char *)e + f->off); }
static double *fnum(TuneEntry *e, const Field *f) { return (double *)((char *)e + f->off); }
static const char *cstr(const TuneEntry *e, const Field *f) { return (const char *)e + f->off; }
static int cint(const TuneEntry *e, const Field *f) { return *(const int *)((const char *)e + f->off); }
static double cnum(const TuneEntry *e, const Field *f) { return *(const double *)((const char *)e + f->off); }

/* "a string", "an object", ... for messages. */
static const char *a_type(JsonType t)
{
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "a boolean";
    case JSON_NUMBER: return "a number";
    case JSON_STRING: return "a string";
    case JSON_ARRAY: return "an array";
    case JSON_OBJECT: return "an object";
    }
    return "?";
}

static bool is_key(const char *k)
{
    for (int i = 0; i < 16; i++)
        if (!((k[i] >= '0' && k[i] <= '9') || (k[i] >= 'a' && k[i] <= 'f')))
            return false;
    return k[16] == 0;
}

/* The value checks shared by load and save; msg gets "field 'F' ...". */
static bool check_entry(const TuneEntry *e, char *msg, size_t len)
{
    for (int i = 0; i < NFIELDS; i++) {
        const Field *f = &fields[i];
        if (f->kind == F_INT && cint(e, f) < f->min)
            return errbuf_printf(msg, len, "field '%s' must be >= %d", f->name, f->min);
        if (f->kind == F_NUM && !isfinite(cnum(e, f)))
            return errbuf_printf(msg, len, "field '%s' out of range", f->name);
        if (f->kind == F_NUM && cnum(e, f) < 0)
            return errbuf_printf(msg, len, "field '%s' must be >= 0", f->name);
    }
    if (!is_key(e->key))
        return errbuf_printf(msg, len, "field 'key' must be 16 lowercase hex digits");
    if (strcmp(e->program, "prefill") && strcmp(e->program, "decode"))
        return errbuf_printf(msg, len, "field 'program' must be prefill or decode");
    return true;
}

/* Entry object o into *e (types and sizes; then check_entry). */
static bool read_entry(const JsonValue *o, TuneEntry *e, char *msg, size_t len)
{
    if (o->type != JSON_OBJECT)
        return errbuf_printf(msg, len, "is %s, expected an object", a_type(o->type));
    memset(e, 0, sizeof *e);
    for (int i = 0; i < NFIELDS; i++) {
        const Field *f = &fields[i];
        const JsonValue *v = json_get(o, f->name);
        if (!v)
            return errbuf_printf(msg, len, "field '%s' missing", f->name);
        JsonType want = f->kind == F_STR ? JSON_STRING : JSON_NUMBER;
        if (v->type != want)
            return errbuf_printf(msg, len, "field '%s' is %s, expected %s", f->name, a_type(v->type),
                        f->kind == F_STR ? "a string" : f->kind == F_INT ? "an integer" : "a number");
        switch (f->kind) {
        case F_STR:
            if (v->len >= f->size)
                return errbuf_printf(msg, len, "field '%s' too long (at most %zu bytes)", f->name, f->size - 1);
            memcpy(fstr(e, f), v->str, v->len + 1);
            break;
        case F_INT:
            if (!v->is_int)
                return errbuf_printf(msg, len, "field '%s' is %g, expected an integer", f->name, v->num);
            if (v->i < INT_MIN || v->i > INT_MAX)
                return errbuf_printf(msg, len, "field '%s' out of range", f->name);
            *fint(e, f) = (int)v->i;
            break;
        case F_NUM: *fnum(e, f) = v->num; break;
        }
    }
    return check_entry(e, msg, len);
}

/* The whole file into *out (NUL-terminated); 0 missing, 1 read, -1 error. */
static int read_file(const char *path, char **out, size_t *out_len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        if (errno == ENOENT)
            return 0;
        return errbuf_printf(err, errlen, "cannot read %s: %s", path, strerror(errno)), -1;
    }
    size_t len = 0, cap = 4096;
    char *buf = malloc(cap);
    while (buf) {
        len += fread(buf + len, 1, cap - len, f);
        if (len < cap)
            break;
        char *nb = realloc(buf, cap *= 2);
        if (!nb)
            free(buf);
        buf = nb;
    }
    if (!buf) {
        fclose(f);
        return errbuf_printf(err, errlen, "out of memory reading %s", path), -1;
    }
    if (ferror(f)) {
        int e = errno;
        fclose(f);
        free(buf);
        return errbuf_printf(err, errlen, "cannot read %s: %s", path, strerror(e)), -1;
    }
    fclose(f);
    buf[len] = 0; /* len < cap */
    *out = buf;
    *out_len = len;
    return 1;
}

/* The document root into *c. */
static bool read_cache(const char *path, const JsonValue *root, TuneCache *c, char *err, size_t errlen)
{
    const JsonValue *ver = json_get(root, "msac_tuning_cache");
    if (!ver)
        return errbuf_printf(err, errlen, "%s: not an msac tuning cache (version missing)", path);
    if (ver->type != JSON_NUMBER)
        return errbuf_printf(err, errlen, "%s: not an msac tuning cache (version is %s)", path, a_type(ver->type));
    if (ver->num != TUNE_CACHE_VERSION)
        return errbuf_printf(err, errlen, "%s: not an msac tuning cache (version %g)", path, ver->num);
    const JsonValue *ents = json_get(root, "entries");
    if (!ents)
        return errbuf_printf(err, errlen, "%s: field 'entries' missing", path);
    if (ents->type != JSON_ARRAY)
        return errbuf_printf(err, errlen, "%s: field 'entries' is %s, expected an array", path, a_type(ents->type));
    for (size_t i = 0; i < ents->len; i++) {
        TuneEntry e;
        char msg[256];
        if (!read_entry(&ents->items[i], &e, msg, sizeof msg))
            return errbuf_printf(err, errlen, "%s: entry %zu: %s", path, i, msg);
        tune_cache_put(c, &e);
    }
    return true;
}

bool tune_cache_load(const char *path, TuneCache *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    char *text;
    size_t len;
    int r = read_file(path, &text, &len, err, errlen);
    if (r <= 0)
        return r == 0;
    JsonValue root;
    char jerr[128];
    bool ok = json_parse(text, len, &root, jerr, sizeof jerr);
    free(text);
    if (!ok)
        return errbuf_printf(err, errlen, "%s: %s", path, jerr);
    ok = read_cache(path, &root, c, err, errlen);
    json_free(&root);
    if (!ok)
        tune_cache_free(c);
    return ok;
}

/* The shortest %g form of x that reads back as x. */
static void write_num(FILE *f, double x)
{
    char b[64];
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, x);
        if (strtod(b, NULL) == x)
            break;
    }
    fputs(b, f);
}

bool tune_cache_save(const char *path, const TuneCache *c, char *err, size_t errlen)
{
    for (int i = 0; i < c->n; i++) {
        char msg[256];
        if (!check_entry(&c->e[i], msg, sizeof msg))
            return errbuf_printf(err, errlen, "%s: entry %d: %s", path, i, msg);
    }
    AtomicStream out;
    FILE *f = atomic_stream_open(&out);
    if (!f)
        return errbuf_printf(err, errlen, "out of memory writing %s", path);
    fprintf(f, "{\n  \"msac_tuning_cache\": %d,\n  \"entries\": [", TUNE_CACHE_VERSION);
    for (int i = 0; i < c->n; i++) {
        const TuneEntry *e = &c->e[i];
        fputs(i ? ",\n    {" : "\n    {", f);
        for (int j = 0; j < NFIELDS; j++) {
            const Field *fd = &fields[j];
            fputs(!j ? "" : fd->nl ? ",\n     " : ", ", f);
            json_write_string(f, fd->name);
            fputs(": ", f);
            if (fd->kind == F_STR)
                json_write_string(f, cstr(e, fd));
            else if (fd->kind == F_INT)
                fprintf(f, "%d", cint(e, fd));
            else
                write_num(f, cnum(e, fd));
        }
        fputc('}', f);
    }
    fputs(c->n ? "\n  ]\n}\n" : "]\n}\n", f);
    return atomic_stream_commit(&out, path, err, errlen);
}

static bool same_dev(const TuneDevice *a, const TuneDevice *b)
{
    return a->sm_count == b->sm_count && a->driver == b->driver && !strcmp(a->name, b->name);
}

void tune_cache_put(TuneCache *c, const TuneEntry *e)
{
    for (int i = 0; i < c->n; i++) {
        TuneEntry *x = &c->e[i];
        if (same_dev(&x->dev, &e->dev) && !strcmp(x->msac, e->msac) && !strcmp(x->target, e->target) &&
            !strcmp(x->key, e->key) && !strcmp(x->program, e->program) && x->batch == e->batch &&
            x->seq == e->seq && x->ctx == e->ctx) {
            *x = *e;
            return;
        }
    }
    if (c->n == c->cap) {
        int ncap = c->cap ? c->cap * 2 : 16;
        TuneEntry *ne = realloc(c->e, sizeof *ne * (size_t)ncap);
        if (!ne)
            abort();
        c->e = ne;
        c->cap = ncap;
    }
    c->e[c->n++] = *e;
}

__extension__ typedef unsigned __int128 u128;

/* Is a nearer to t than b in |log2|? (a, b, t > 0; exact: compares the
 * ratios max/min by cross-multiplying.) Ties go to the larger. */
static bool nearer(long long a, long long b, long long t)
{
    u128 ahi = (u128)(a > t ? a : t), alo = (u128)(a > t ? t : a);
    u128 bhi = (u128)(b > t ? b : t), blo = (u128)(b > t ? t : b);
    u128 l = ahi * blo, r = bhi * alo; /* a's ratio vs b's ratio, times alo*blo */
    return l < r || (l == r && a > b);
}

const TuneEntry *tune_cache_find(const TuneCache *c, const TuneDevice *dev, const char *msac, const char *target,
                                 const char *key, int tokens)
{
    const TuneEntry *best = NULL;
    long long best_tok = 0;
    for (int i = 0; i < c->n; i++) {
        const TuneEntry *e = &c->e[i];
        if (!same_dev(&e->dev, dev) || strcmp(e->msac, msac) || strcmp(e->target, target) || strcmp(e->key, key))
            continue;
        long long tok = (long long)e->batch * e->seq;
        if (tok < 1)
            continue; /* not a shape class (load refuses these) */
        if (!best || (tokens <= 0 ? tok > best_tok : nearer(tok, best_tok, tokens))) {
            best = e;
            best_tok = tok;
        }
    }
    return best;
}

int tune_cache_devices(const TuneCache *c, TuneDevice *out, int max)
{
    int n = 0;
    for (int i = 0; i < c->n && n < max; i++) {
        bool seen = false;
        for (int j = 0; j < n && !seen; j++)
            seen = same_dev(&out[j], &c->e[i].dev);
        if (!seen)
            out[n++] = c->e[i].dev;
    }
    return n;
}

/* Columns of the --show table. */
enum { C_GPU, C_TARGET, C_PROGRAM, C_SHAPE, C_DESC, C_SCHED, C_DEF, C_BEST, C_SPEEDUP, C_TRIED, NCOLS };
static const char *const col_head[NCOLS] = {"gpu/SMs/driver", "target", "program", "shape", "kernel",
                                            "default -> best schedule", "default µs", "best µs", "speed-up",
                                            "tried/rejected"};
static const bool col_right[NCOLS] = {[C_DEF] = true, [C_BEST] = true, [C_SPEEDUP] = true, [C_TRIED] = true};

/* Display width: UTF-8 code points. */
static int width(const char *s)
{
    int w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xc0) != 0x80;
    return w;
}

/* The cells of entry e (or of the header when e is NULL). */
static void cells(const TuneEntry *e, char cell[NCOLS][400])
{
    if (!e) {
        for (int k = 0; k < NCOLS; k++)
            snprintf(cell[k], 400, "%s", col_head[k]);
        return;
    }
    snprintf(cell[C_GPU], 400, "%s/%d/%d", e->dev.name, e->dev.sm_count, e->dev.driver);
    snprintf(cell[C_TARGET], 400, "%s", e->target);
    snprintf(cell[C_PROGRAM], 400, "%s", e->program);
    if (e->ctx)
        snprintf(cell[C_SHAPE], 400, "%dx%d ctx %d", e->batch, e->seq, e->ctx);
    else
        snprintf(cell[C_SHAPE], 400, "%dx%d", e->batch, e->seq);
    snprintf(cell[C_DESC], 400, "%s", e->desc);
    snprintf(cell[C_SCHED], 400, "%s -> %s", e->default_schedule, e->schedule);
    snprintf(cell[C_DEF], 400, "%.2f", e->default_us);
    snprintf(cell[C_BEST], 400, "%.2f", e->best_us);
    if (e->best_us > 0)
        snprintf(cell[C_SPEEDUP], 400, "%.2fx", e->default_us / e->best_us);
    else
        snprintf(cell[C_SPEEDUP], 400, "-");
    snprintf(cell[C_TRIED], 400, "%d/%d", e->tried, e->rejected);
}

static void print_row(FILE *f, char cell[NCOLS][400], const int *w)
{
    for (int k = 0; k < NCOLS; k++) {
        int pad = w[k] - width(cell[k]);
        if (k)
            fputs("  ", f);
        if (col_right[k])
            fprintf(f, "%*s%s", pad, "", cell[k]);
        else
            fprintf(f, "%s%*s", cell[k], pad, "");
    }
    fputc('\n', f);
}

void tune_cache_print(FILE *f, const TuneCache *c)
{
    if (!c->n) {
        fprintf(f, "tuning cache: no entries\n");
        return;
    }
    char cell[NCOLS][400];
    int w[NCOLS] = {0};
    for (int i = -1; i < c->n; i++) {
        cells(i < 0 ? NULL : &c->e[i], cell);
        for (int k = 0; k < NCOLS; k++)
            if (width(cell[k]) > w[k])
                w[k] = width(cell[k]);
    }
    for (int i = -1; i < c->n; i++) {
        cells(i < 0 ? NULL : &c->e[i], cell);
        print_row(f, cell, w);
    }
}

void tune_cache_free(TuneCache *c)
{
    free(c->e);
    memset(c, 0, sizeof *c);
}
