/* plan_format.c — the plan file (.msac): writer, validating reader, and the
 * PlanExpr helpers. Shared by the compiler and the runtime; libc only.
 *
 * The header layout is in plan_format.h. Section bodies (all little-endian;
 * str = u32 length + bytes, no terminator, no NUL inside; expr = i64 c[6],
 * i64 div):
 *
 *   META     u32 n; n x { str key; str value }
 *   WEIGHTS  u32 n; n x { str name; u32 dtype; u32 ndim; i64 dims[ndim];
 *                         u32 init; f32 init_a; f32 init_b }
 *   BUFFERS  u32 n; n x { str name; u32 kind; u32 dtype; u32 index;
 *                         expr bytes; expr offset }
 *   KERNELS  u32 n; n x { str name; str entry; str ptx; u32 block[3];
 *                         u32 smem; u64 hash; u32 nparams;
 *                         nparams x { str key; i64 value } }
 *   PROGRAMS u32 n; n x { str name; u32 nlaunch;
 *                         nlaunch x { u32 kernel; expr grid[3]; expr flops; expr bytes; u32 nargs;
 *                                     nargs x { u32 kind; u32 buf; expr; f32 f } } }
 *   GRAPH    str text
 *
 * The checksum is FNV-1a 64 over header bytes [0, 72) (everything before the
 * checksum field) followed by the payload, so a flipped bit anywhere in the
 * file is detected.
 *
 * The reader never trusts a byte: the header is checked first, then the
 * payload is decoded twice by the same code — once to validate the structure
 * and measure the memory it needs, once into a single allocation of exactly
 * that size — and finally every cross-reference and enum is checked. */
#include "plan_format.h"

#include "atomic_file.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Header field offsets (see plan_format.h). */
enum {
    H_MAGIC = 0,
    H_VERSION = 8,
    H_HDRSIZE = 12,
    H_MSACVER = 16,
    H_TARGET = 32,
    H_PTXISA = 48,
    H_NSECT = 52,
    H_OPTHASH = 56,
    H_PAYLOAD = 64,
    H_CHECKSUM = 72,
    H_RESERVED = 80,
};

/* Smallest encoded size of each record, used to bound counts before any
 * allocation. */
enum {
    EXPR_BYTES = 7 * 8,
    SECT_HDR_BYTES = 16,
    MIN_META = 4 + 4,
    MIN_WEIGHT = 4 + 4 + 4 + 8 + 4 + 4 + 4,
    MIN_BUFFER = 4 + 4 + 4 + 4 + 2 * EXPR_BYTES,
    MIN_KERNEL = 4 + 4 + 4 + 12 + 4 + 8 + 4,
    MIN_PARAM = 4 + 8,
    MIN_PROGRAM = 4 + 4,
    MIN_LAUNCH = 4 + 5 * EXPR_BYTES + 4,
    MIN_ARG = 4 + 4 + EXPR_BYTES + 4,
};

/* Largest element count of a weight: keeps numel * 8 far from overflow. */
#define MAX_NUMEL (1ll << 50)

uint64_t plan_fnv1a(const void *data, size_t n, uint64_t h)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

uint64_t plan_checksum(const uint8_t *hdr, const uint8_t *payload, size_t payload_len)
{
    uint64_t h = plan_fnv1a(hdr, H_CHECKSUM, PLAN_FNV_SEED);
    return plan_fnv1a(payload, payload_len, h);
}

static const char *section_name(uint32_t tag)
{
    switch (tag) {
    case PSEC_META: return "META";
    case PSEC_WEIGHTS: return "WEIGHTS";
    case PSEC_BUFFERS: return "BUFFERS";
    case PSEC_KERNELS: return "KERNELS";
    case PSEC_PROGRAMS: return "PROGRAMS";
    case PSEC_GRAPH: return "GRAPH";
    default: return "?";
    }
}

/* ---- little-endian access ---- */

/* The section's name as its messages start: "WEIGHTS section". */
static const char *section_label(uint32_t tag)
{
    switch (tag) {
    case PSEC_META: return "META section";
    case PSEC_WEIGHTS: return "WEIGHTS section";
    case PSEC_BUFFERS: return "BUFFERS section";
    case PSEC_KERNELS: return "KERNELS section";
    case PSEC_PROGRAMS: return "PROGRAMS section";
    case PSEC_GRAPH: return "GRAPH section";
    default: return "section table";
    }
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_u64(const uint8_t *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }

static void put_u32_at(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_u64_at(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* ---- writer ---- */

/* A growable output buffer; `oom` latches an allocation failure. */
typedef struct Wb {
    uint8_t *d; /* [cap] bytes, n used */
    size_t n;   /* bytes written */
    size_t cap; /* bytes allocated */
    bool oom;   /* an allocation failed: the contents are incomplete */
} Wb;

static uint8_t *wb_grow(Wb *w, size_t k)
{
    if (w->oom)
        return NULL;
    if (w->cap - w->n < k) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap - w->n < k) {
            if (cap > SIZE_MAX / 2) {
                w->oom = true;
                return NULL;
            }
            cap *= 2;
        }
        uint8_t *d = realloc(w->d, cap);
        if (!d) {
            w->oom = true;
            return NULL;
        }
        w->d = d;
        w->cap = cap;
    }
    uint8_t *p = w->d + w->n;
    w->n += k;
    return p;
}

static void wb_bytes(Wb *w, const void *src, size_t k)
{
    uint8_t *p = wb_grow(w, k);
    if (p && k)
        memcpy(p, src, k);
}

static void wb_u32(Wb *w, uint32_t v)
{
    uint8_t *p = wb_grow(w, 4);
    if (p)
        put_u32_at(p, v);
}

static void wb_u64(Wb *w, uint64_t v)
{
    uint8_t *p = wb_grow(w, 8);
    if (p)
        put_u64_at(p, v);
}

static void wb_i64(Wb *w, int64_t v) { wb_u64(w, (uint64_t)v); }

static void wb_f32(Wb *w, float f)
{
    uint32_t u = 0;
    memcpy(&u, &f, 4);
    wb_u32(w, u);
}

/* A NULL string is written as the empty string. */
static void wb_str(Wb *w, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n > UINT32_MAX) {
        w->oom = true;
        return;
    }
    wb_u32(w, (uint32_t)n);
    wb_bytes(w, s, n);
}

static void wb_expr(Wb *w, const PlanExpr *e)
{
    for (int i = 0; i < PLAN_MONO; i++)
        wb_i64(w, e->c[i]);
    wb_i64(w, e->div);
}

/* Starts a section; returns the position of its size field. */
static size_t wb_section_begin(Wb *w, uint32_t tag)
{
    wb_u32(w, tag);
    wb_u32(w, 0);
    size_t at = w->n;
    wb_u64(w, 0);
    return at;
}

static void wb_section_end(Wb *w, size_t at)
{
    if (!w->oom)
        put_u64_at(w->d + at, (uint64_t)(w->n - at - 8));
}

static void write_meta(Wb *w, const Plan *p)
{
    wb_u32(w, p->nmeta);
    for (uint32_t i = 0; i < p->nmeta; i++) {
        wb_str(w, p->meta[i].key);
        wb_str(w, p->meta[i].value);
    }
}

static void write_weights(Wb *w, const Plan *p)
{
    wb_u32(w, p->nweights);
    for (uint32_t i = 0; i < p->nweights; i++) {
        const PlanWeight *x = &p->weights[i];
        wb_str(w, x->name);
        wb_u32(w, x->dtype);
        wb_u32(w, x->ndim);
        for (uint32_t d = 0; d < x->ndim && d < PLAN_MAX_DIMS; d++)
            wb_i64(w, x->dims[d]);
        wb_u32(w, x->init);
        wb_f32(w, x->init_a);
        wb_f32(w, x->init_b);
    }
}

static void write_buffers(Wb *w, const Plan *p)
{
    wb_u32(w, p->nbuffers);
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const PlanBuffer *b = &p->buffers[i];
        wb_str(w, b->name);
        wb_u32(w, b->kind);
        wb_u32(w, b->dtype);
        wb_u32(w, b->index);
        wb_expr(w, &b->bytes);
        wb_expr(w, &b->offset);
    }
}

static void write_kernels(Wb *w, const Plan *p)
{
    wb_u32(w, p->nkernels);
    for (uint32_t i = 0; i < p->nkernels; i++) {
        const PlanKernel *k = &p->kernels[i];
        wb_str(w, k->name);
        wb_str(w, k->entry);
        wb_str(w, k->ptx);
        for (int d = 0; d < 3; d++)
            wb_u32(w, k->block[d]);
        wb_u32(w, k->smem);
        wb_u64(w, k->hash);
        wb_u32(w, k->nparams);
        for (uint32_t j = 0; j < k->nparams; j++) {
            wb_str(w, k->params[j].key);
            wb_i64(w, k->params[j].value);
        }
    }
}

static void write_programs(Wb *w, const Plan *p)
{
    wb_u32(w, p->nprograms);
    for (uint32_t i = 0; i < p->nprograms; i++) {
        const PlanProgram *pr = &p->programs[i];
        wb_str(w, pr->name);
        wb_u32(w, pr->nlaunch);
        for (uint32_t j = 0; j < pr->nlaunch; j++) {
            const PlanLaunch *l = &pr->launch[j];
            wb_u32(w, l->kernel);
            for (int d = 0; d < 3; d++)
                wb_expr(w, &l->grid[d]);
            wb_expr(w, &l->flops);
            wb_expr(w, &l->bytes);
            wb_u32(w, l->nargs);
            for (uint32_t a = 0; a < l->nargs; a++) {
                const PlanArg *g = &l->args[a];
                wb_u32(w, g->kind);
                wb_u32(w, g->buf);
                wb_expr(w, &g->expr);
                wb_f32(w, g->f);
            }
        }
    }
}

/* Copies a header string field, truncating to 15 bytes + NUL padding. */
static void put_hdr_str(uint8_t *dst, const char *src)
{
    memset(dst, 0, 16);
    size_t n = strnlen(src, 15);
    memcpy(dst, src, n);
}

bool plan_write(const Plan *p, uint8_t **out, size_t *out_len)
{
    Wb w = {0};
    wb_grow(&w, PLAN_HEADER_SIZE);
    if (w.oom)
        return false;
    memset(w.d, 0, PLAN_HEADER_SIZE);

    typedef void (*SectionWriter)(Wb *, const Plan *);
    static const struct {
        uint32_t tag;
        SectionWriter fn;
    } sections[] = {
        {PSEC_META, write_meta},       {PSEC_WEIGHTS, write_weights},   {PSEC_BUFFERS, write_buffers},
        {PSEC_KERNELS, write_kernels}, {PSEC_PROGRAMS, write_programs},
    };
    uint32_t nsect = 0;
    for (size_t i = 0; i < sizeof sections / sizeof sections[0]; i++) {
        size_t at = wb_section_begin(&w, sections[i].tag);
        sections[i].fn(&w, p);
        wb_section_end(&w, at);
        nsect++;
    }
    if (p->graph) {
        size_t at = wb_section_begin(&w, PSEC_GRAPH);
        wb_str(&w, p->graph);
        wb_section_end(&w, at);
        nsect++;
    }
    if (w.oom) {
        free(w.d);
        return false;
    }

    uint8_t *h = w.d;
    memcpy(h + H_MAGIC, PLAN_MAGIC, 8);
    put_u32_at(h + H_VERSION, PLAN_FORMAT_VERSION);
    put_u32_at(h + H_HDRSIZE, PLAN_HEADER_SIZE);
    put_hdr_str(h + H_MSACVER, p->msac_version);
    put_hdr_str(h + H_TARGET, p->target);
    put_u32_at(h + H_PTXISA, p->ptx_isa);
    put_u32_at(h + H_NSECT, nsect);
    put_u64_at(h + H_OPTHASH, p->options_hash);
    put_u64_at(h + H_PAYLOAD, (uint64_t)(w.n - PLAN_HEADER_SIZE));
    put_u64_at(h + H_CHECKSUM, plan_checksum(h, h + PLAN_HEADER_SIZE, w.n - PLAN_HEADER_SIZE));
    *out = w.d;
    *out_len = w.n;
    return true;
}

static bool errf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Writes "plan: <message>" into err (if any); returns false for tail calls. */
static bool errf(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return false;
    int k = snprintf(err, errlen, "plan: ");
    if (k >= 0 && (size_t)k < errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err + k, errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return false;
}

bool plan_write_file(const Plan *p, const char *path, char *errbuf, size_t errlen)
{
    uint8_t *data;
    size_t len;
    if (!plan_write(p, &data, &len))
        return errf(errbuf, errlen, "out of memory serialising the plan for %s", path);
    char why[1024];
    bool ok = file_write_atomic(path, data, len, why, sizeof why);
    free(data);
    return ok || errf(errbuf, errlen, "%s", why);
}

/* ---- reader ---- */

/* Cursor over one section plus the arena the plan is decoded into. With
 * mem == NULL the decoder only validates the structure and counts the bytes
 * it would allocate. */
typedef struct Rd {
    const uint8_t *file; /* start of the file, for offsets in messages */
    const uint8_t *p;    /* next byte of the current section */
    const uint8_t *end;  /* end of the current section */
    const char *sec;     /* "WEIGHTS section" or "section table", for messages */
    uint8_t *mem;        /* arena, NULL while measuring */
    size_t used;         /* arena bytes used (or needed, while measuring) */
    size_t cap;          /* arena size */
    char *err;           /* message buffer */
    size_t errlen;
} Rd;

static bool rd_fail(Rd *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "plan: <SECTION> section at byte <off>: <message>" */
static bool rd_fail(Rd *r, const char *fmt, ...)
{
    if (!r->err || !r->errlen)
        return false;
    int k = snprintf(r->err, r->errlen, "plan: %s at byte %zu: ", r->sec, (size_t)(r->p - r->file));
    if (k >= 0 && (size_t)k < r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + k, r->errlen - (size_t)k, fmt, ap);
        va_end(ap);
    }
    return false;
}

static size_t rd_left(const Rd *r) { return (size_t)(r->end - r->p); }

/* Reserves n bytes aligned to `align`; NULL while measuring. */
static void *rd_alloc(Rd *r, size_t n, size_t align)
{
    r->used = (r->used + align - 1) & ~(align - 1);
    void *q = r->mem ? r->mem + r->used : NULL;
    r->used += n;
    assert(!r->mem || r->used <= r->cap);
    return q;
}

static bool rd_u32(Rd *r, uint32_t *v, const char *what)
{
    if (rd_left(r) < 4)
        return rd_fail(r, "truncated reading %s", what);
    *v = get_u32(r->p);
    r->p += 4;
    return true;
}

static bool rd_u64(Rd *r, uint64_t *v, const char *what)
{
    if (rd_left(r) < 8)
        return rd_fail(r, "truncated reading %s", what);
    *v = get_u64(r->p);
    r->p += 8;
    return true;
}

static bool rd_i64(Rd *r, int64_t *v, const char *what)
{
    uint64_t u = 0;
    if (!rd_u64(r, &u, what))
        return false;
    *v = (int64_t)u;
    return true;
}

static bool rd_f32(Rd *r, float *f, const char *what)
{
    uint32_t u = 0;
    if (!rd_u32(r, &u, what))
        return false;
    memcpy(f, &u, 4);
    return true;
}

/* A string, copied into the arena with a terminator (NULL while measuring). */
static bool rd_str(Rd *r, char **out, const char *what)
{
    uint32_t n;
    if (!rd_u32(r, &n, what))
        return false;
    if (n > rd_left(r))
        return rd_fail(r, "%s: string of %u bytes runs past the end of the section (%zu bytes left)", what, n,
                       rd_left(r));
    if (memchr(r->p, 0, n))
        return rd_fail(r, "%s: string contains a NUL byte", what);
    char *s = rd_alloc(r, (size_t)n + 1, 1);
    if (s) {
        memcpy(s, r->p, n);
        s[n] = 0;
    }
    *out = s;
    r->p += n;
    return true;
}

/* A record count, refused unless `n` records of at least `min_bytes` each
 * fit in what is left of the section. */
static bool rd_count(Rd *r, uint32_t *n, size_t min_bytes, const char *what)
{
    if (!rd_u32(r, n, what))
        return false;
    if ((uint64_t)*n * min_bytes > rd_left(r))
        return rd_fail(r, "%s count %u needs at least %llu bytes but the section has %zu left", what, *n,
                       (unsigned long long)*n * min_bytes, rd_left(r));
    return true;
}

static bool rd_expr(Rd *r, PlanExpr *e, const char *what)
{
    for (int i = 0; i < PLAN_MONO; i++)
        if (!rd_i64(r, &e->c[i], what))
            return false;
    return rd_i64(r, &e->div, what);
}

static bool dec_meta(Rd *r, Plan *p)
{
    uint32_t n;
    if (!rd_count(r, &n, MIN_META, "meta entry"))
        return false;
    p->nmeta = n;
    p->meta = rd_alloc(r, n * sizeof *p->meta, 8);
    for (uint32_t i = 0; i < n; i++) {
        PlanMeta tmp, *m = p->meta ? &p->meta[i] : &tmp;
        if (!rd_str(r, &m->key, "meta key") || !rd_str(r, &m->value, "meta value"))
            return false;
    }
    return true;
}

static bool dec_weights(Rd *r, Plan *p)
{
    uint32_t n;
    if (!rd_count(r, &n, MIN_WEIGHT, "weight"))
        return false;
    p->nweights = n;
    p->weights = rd_alloc(r, n * sizeof *p->weights, 8);
    for (uint32_t i = 0; i < n; i++) {
        PlanWeight tmp, *w = p->weights ? &p->weights[i] : &tmp;
        memset(w, 0, sizeof *w);
        if (!rd_str(r, &w->name, "weight name") || !rd_u32(r, &w->dtype, "weight dtype") ||
            !rd_u32(r, &w->ndim, "weight rank"))
            return false;
        if (w->ndim < 1 || w->ndim > PLAN_MAX_DIMS)
            return rd_fail(r, "weight %u has rank %u (must be 1..%d)", i, w->ndim, PLAN_MAX_DIMS);
        for (uint32_t d = 0; d < w->ndim; d++)
            if (!rd_i64(r, &w->dims[d], "weight dims"))
                return false;
        if (!rd_u32(r, &w->init, "weight init") || !rd_f32(r, &w->init_a, "weight init") ||
            !rd_f32(r, &w->init_b, "weight init"))
            return false;
    }
    return true;
}

static bool dec_buffers(Rd *r, Plan *p)
{
    uint32_t n;
    if (!rd_count(r, &n, MIN_BUFFER, "buffer"))
        return false;
    p->nbuffers = n;
    p->buffers = rd_alloc(r, n * sizeof *p->buffers, 8);
    for (uint32_t i = 0; i < n; i++) {
        PlanBuffer tmp, *b = p->buffers ? &p->buffers[i] : &tmp;
        if (!rd_str(r, &b->name, "buffer name") || !rd_u32(r, &b->kind, "buffer kind") ||
            !rd_u32(r, &b->dtype, "buffer dtype") || !rd_u32(r, &b->index, "buffer index") ||
            !rd_expr(r, &b->bytes, "buffer size") || !rd_expr(r, &b->offset, "buffer offset"))
            return false;
    }
    return true;
}

static bool dec_kernels(Rd *r, Plan *p)
{
    uint32_t n;
    if (!rd_count(r, &n, MIN_KERNEL, "kernel"))
        return false;
    p->nkernels = n;
    p->kernels = rd_alloc(r, n * sizeof *p->kernels, 8);
    for (uint32_t i = 0; i < n; i++) {
        PlanKernel tmp, *k = p->kernels ? &p->kernels[i] : &tmp;
        if (!rd_str(r, &k->name, "kernel name") || !rd_str(r, &k->entry, "kernel entry") ||
            !rd_str(r, &k->ptx, "kernel PTX"))
            return false;
        for (int d = 0; d < 3; d++)
            if (!rd_u32(r, &k->block[d], "kernel block"))
                return false;
        if (!rd_u32(r, &k->smem, "kernel shared memory") || !rd_u64(r, &k->hash, "kernel hash") ||
            !rd_count(r, &k->nparams, MIN_PARAM, "kernel parameter"))
            return false;
        k->params = rd_alloc(r, k->nparams * sizeof *k->params, 8);
        for (uint32_t j = 0; j < k->nparams; j++) {
            PlanParam ptmp, *q = k->params ? &k->params[j] : &ptmp;
            if (!rd_str(r, &q->key, "kernel parameter name") || !rd_i64(r, &q->value, "kernel parameter value"))
                return false;
        }
    }
    return true;
}

static bool dec_launch(Rd *r, PlanLaunch *l)
{
    if (!rd_u32(r, &l->kernel, "launch kernel"))
        return false;
    for (int d = 0; d < 3; d++)
        if (!rd_expr(r, &l->grid[d], "launch grid"))
            return false;
    if (!rd_expr(r, &l->flops, "launch flops") || !rd_expr(r, &l->bytes, "launch bytes"))
        return false;
    if (!rd_count(r, &l->nargs, MIN_ARG, "launch argument"))
        return false;
    if (l->nargs > PLAN_MAX_ARGS)
        return rd_fail(r, "launch has %u arguments (at most %d)", l->nargs, PLAN_MAX_ARGS);
    l->args = rd_alloc(r, l->nargs * sizeof *l->args, 8);
    for (uint32_t a = 0; a < l->nargs; a++) {
        PlanArg tmp, *g = l->args ? &l->args[a] : &tmp;
        if (!rd_u32(r, &g->kind, "argument kind") || !rd_u32(r, &g->buf, "argument buffer") ||
            !rd_expr(r, &g->expr, "argument value") || !rd_f32(r, &g->f, "argument value"))
            return false;
    }
    return true;
}

static bool dec_programs(Rd *r, Plan *p)
{
    uint32_t n;
    if (!rd_count(r, &n, MIN_PROGRAM, "program"))
        return false;
    p->nprograms = n;
    p->programs = rd_alloc(r, n * sizeof *p->programs, 8);
    for (uint32_t i = 0; i < n; i++) {
        PlanProgram tmp, *pr = p->programs ? &p->programs[i] : &tmp;
        if (!rd_str(r, &pr->name, "program name") || !rd_count(r, &pr->nlaunch, MIN_LAUNCH, "launch"))
            return false;
        pr->launch = rd_alloc(r, pr->nlaunch * sizeof *pr->launch, 8);
        for (uint32_t j = 0; j < pr->nlaunch; j++) {
            PlanLaunch ltmp, *l = pr->launch ? &pr->launch[j] : &ltmp;
            if (!dec_launch(r, l))
                return false;
        }
    }
    return true;
}

static bool dec_graph(Rd *r, Plan *p) { return rd_str(r, &p->graph, "graph text"); }

/* The validated header fields. */
typedef struct Hdr {
    uint32_t nsect;       /* sections in the payload */
    uint64_t payload_len; /* bytes after the header */
} Hdr;

/* A NUL-terminated, NUL-padded 16-byte header string. */
static bool hdr_str_ok(const uint8_t *s)
{
    const uint8_t *z = memchr(s, 0, 16);
    if (!z)
        return false;
    for (const uint8_t *q = z; q < s + 16; q++)
        if (*q)
            return false;
    return true;
}

static bool check_header(const uint8_t *d, size_t len, Hdr *h, char *err, size_t errlen)
{
    size_t m = len < 8 ? len : 8;
    if (memcmp(d, PLAN_MAGIC, m) != 0)
        return errf(err, errlen, "not an msac plan file (bad magic)");
    if (len < PLAN_HEADER_SIZE)
        return errf(err, errlen, "truncated: file has %zu bytes, a plan header alone is %u", len, PLAN_HEADER_SIZE);
    uint32_t version = get_u32(d + H_VERSION);
    if (version > PLAN_FORMAT_VERSION)
        return errf(err, errlen,
                    "format version %u is newer than this runtime reads (%u): upgrade the msac runtime", version,
                    PLAN_FORMAT_VERSION);
    if (version != PLAN_FORMAT_VERSION)
        return errf(err, errlen, "format version %u is no longer supported (this runtime reads %u): recompile the model",
                    version, PLAN_FORMAT_VERSION);
    uint32_t hsize = get_u32(d + H_HDRSIZE);
    if (hsize != PLAN_HEADER_SIZE)
        return errf(err, errlen, "header size is %u, expected %u", hsize, PLAN_HEADER_SIZE);
    if (!hdr_str_ok(d + H_MSACVER))
        return errf(err, errlen, "header: msac version is not a NUL-padded string");
    if (!hdr_str_ok(d + H_TARGET))
        return errf(err, errlen, "header: target is not a NUL-padded string");
    for (int i = H_RESERVED; i < (int)PLAN_HEADER_SIZE; i++)
        if (d[i])
            return errf(err, errlen, "header: reserved byte %d is not zero", i);
    uint64_t payload = get_u64(d + H_PAYLOAD);
    size_t have = len - PLAN_HEADER_SIZE;
    if (payload > have)
        return errf(err, errlen, "truncated: header says %llu payload bytes, file has %zu",
                    (unsigned long long)payload, have);
    if (payload < have)
        return errf(err, errlen, "%zu unexpected bytes after the %llu-byte payload", have - (size_t)payload,
                    (unsigned long long)payload);
    if (plan_checksum(d, d + PLAN_HEADER_SIZE, have) != get_u64(d + H_CHECKSUM))
        return errf(err, errlen, "checksum mismatch (file corrupt)");
    uint32_t nsect = get_u32(d + H_NSECT);
    if ((uint64_t)nsect * SECT_HDR_BYTES > payload)
        return errf(err, errlen, "header says %u sections but the payload has only %llu bytes", nsect,
                    (unsigned long long)payload);
    h->nsect = nsect;
    h->payload_len = payload;
    return true;
}

/* Decodes the payload into *p (or just validates and measures when
 * r->mem is NULL). */
static bool decode_payload(Rd *r, const uint8_t *d, const Hdr *h, Plan *p)
{
    memcpy(p->msac_version, d + H_MSACVER, 16);
    memcpy(p->target, d + H_TARGET, 16);
    p->ptx_isa = get_u32(d + H_PTXISA);
    p->options_hash = get_u64(d + H_OPTHASH);

    const uint8_t *q = d + PLAN_HEADER_SIZE, *end = q + h->payload_len;
    uint32_t seen = 0;
    for (uint32_t s = 0; s < h->nsect; s++) {
        r->p = q;
        r->end = end;
        r->sec = "section table";
        if ((size_t)(end - q) < SECT_HDR_BYTES)
            return rd_fail(r, "section %u of %u: truncated section header", s, h->nsect);
        uint32_t tag = get_u32(q), zero = get_u32(q + 4);
        uint64_t size = get_u64(q + 8);
        if (tag < PSEC_META || tag > PSEC_GRAPH)
            return rd_fail(r, "section %u has unknown tag %u", s, tag);
        if (zero)
            return rd_fail(r, "section %u (%s): padding field is %u, expected 0", s, section_name(tag), zero);
        if (seen & (1u << tag))
            return rd_fail(r, "section %s appears twice", section_name(tag));
        seen |= 1u << tag;
        q += SECT_HDR_BYTES;
        if (size > (uint64_t)(end - q))
            return rd_fail(r, "section %s says %llu bytes but only %zu remain in the payload", section_name(tag),
                           (unsigned long long)size, (size_t)(end - q));
        r->p = q;
        r->end = q + size;
        r->sec = section_label(tag);
        bool ok = false;
        switch ((PlanSection)tag) {
        case PSEC_META: ok = dec_meta(r, p); break;
        case PSEC_WEIGHTS: ok = dec_weights(r, p); break;
        case PSEC_BUFFERS: ok = dec_buffers(r, p); break;
        case PSEC_KERNELS: ok = dec_kernels(r, p); break;
        case PSEC_PROGRAMS: ok = dec_programs(r, p); break;
        case PSEC_GRAPH: ok = dec_graph(r, p); break;
        }
        if (!ok)
            return false;
        if (r->p != r->end)
            return rd_fail(r, "%zu unread bytes at the end of the section", rd_left(r));
        q = r->end;
    }
    if (q != end) {
        r->p = q;
        r->sec = "section table";
        return rd_fail(r, "%zu bytes after the last of %u sections", (size_t)(end - q), h->nsect);
    }
    static const uint32_t required[] = {PSEC_META, PSEC_WEIGHTS, PSEC_BUFFERS, PSEC_KERNELS, PSEC_PROGRAMS};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!(seen & (1u << required[i])))
            return errf(r->err, r->errlen, "required section %s is missing", section_name(required[i]));
    return true;
}

/* ---- semantic checks on a decoded plan ---- */

static bool expr_ok(const PlanExpr *e) { return e->div >= 1; }

static bool check_weights(const Plan *p, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < p->nweights; i++) {
        const PlanWeight *w = &p->weights[i];
        if (!w->name[0])
            return errf(err, errlen, "weight %u has an empty name", i);
        if (w->dtype > PDT_I32)
            return errf(err, errlen, "weight \"%s\" has unknown dtype %u", w->name, w->dtype);
        int64_t numel = 1;
        for (uint32_t d = 0; d < w->ndim; d++) {
            if (w->dims[d] <= 0)
                return errf(err, errlen, "weight \"%s\": dimension %u is %lld (must be > 0)", w->name, d,
                            (long long)w->dims[d]);
            if (w->dims[d] > MAX_NUMEL / numel)
                return errf(err, errlen, "weight \"%s\" has more than 2^50 elements", w->name);
            numel *= w->dims[d];
        }
        if (w->init >= PINIT_COUNT)
            return errf(err, errlen, "weight \"%s\" has unknown init kind %u", w->name, w->init);
        if (!isfinite(w->init_a) || !isfinite(w->init_b))
            return errf(err, errlen, "weight \"%s\": init parameters are not finite", w->name);
        if ((w->init == PINIT_LOG_UNIFORM || w->init == PINIT_DT_BIAS) && !(w->init_a > 0 && w->init_b > 0))
            return errf(err, errlen, "weight \"%s\": %s init needs a > 0 and b > 0 (got %g, %g)", w->name,
                        w->init == PINIT_DT_BIAS ? "dt_bias" : "log_uniform", (double)w->init_a,
                        (double)w->init_b);
    }
    return true;
}

static bool check_buffers(const Plan *p, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const PlanBuffer *b = &p->buffers[i];
        if (b->kind > PBUF_WORKSPACE)
            return errf(err, errlen, "buffer %u (\"%s\") has unknown kind %u", i, b->name, b->kind);
        if (b->dtype > PDT_I32)
            return errf(err, errlen, "buffer %u (\"%s\") has unknown dtype %u", i, b->name, b->dtype);
        if (b->kind == PBUF_WEIGHT && b->index >= p->nweights)
            return errf(err, errlen, "buffer %u (\"%s\") refers to weight %u but the plan has %u weights", i,
                        b->name, b->index, p->nweights);
        if (!expr_ok(&b->bytes))
            return errf(err, errlen, "buffer %u (\"%s\"): size has divisor %lld (must be >= 1)", i, b->name,
                        (long long)b->bytes.div);
        if (!expr_ok(&b->offset))
            return errf(err, errlen, "buffer %u (\"%s\"): offset has divisor %lld (must be >= 1)", i, b->name,
                        (long long)b->offset.div);
    }
    return true;
}

static bool check_kernels(const Plan *p, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < p->nkernels; i++) {
        const PlanKernel *k = &p->kernels[i];
        if (!k->entry[0])
            return errf(err, errlen, "kernel %u (\"%s\") has no entry point", i, k->name);
        if (!k->ptx[0])
            return errf(err, errlen, "kernel %u (\"%s\") has no PTX", i, k->name);
        uint64_t threads = (uint64_t)k->block[0] * k->block[1] * k->block[2];
        if (!k->block[0] || !k->block[1] || !k->block[2] || threads > 1024)
            return errf(err, errlen, "kernel %u (\"%s\"): block %ux%ux%u is invalid (each > 0, at most 1024 threads)",
                        i, k->name, k->block[0], k->block[1], k->block[2]);
    }
    return true;
}

static bool check_launch(const Plan *p, const PlanProgram *pr, uint32_t j, char *err, size_t errlen)
{
    const PlanLaunch *l = &pr->launch[j];
    if (l->kernel >= p->nkernels)
        return errf(err, errlen, "launch %u of program \"%s\" uses kernel %u but the plan has %u kernels", j,
                    pr->name, l->kernel, p->nkernels);
    for (int d = 0; d < 3; d++)
        if (!expr_ok(&l->grid[d]))
            return errf(err, errlen, "launch %u of program \"%s\": grid has divisor %lld (must be >= 1)", j,
                        pr->name, (long long)l->grid[d].div);
    for (uint32_t a = 0; a < l->nargs; a++) {
        const PlanArg *g = &l->args[a];
        if (g->kind > PARG_I64)
            return errf(err, errlen, "argument %u of launch %u of program \"%s\" has unknown kind %u", a, j,
                        pr->name, g->kind);
        if (g->kind == PARG_BUF && g->buf >= p->nbuffers)
            return errf(err, errlen,
                        "argument %u of launch %u of program \"%s\" uses buffer %u but the plan has %u buffers", a,
                        j, pr->name, g->buf, p->nbuffers);
        if (!expr_ok(&g->expr))
            return errf(err, errlen,
                        "argument %u of launch %u of program \"%s\" has divisor %lld (must be >= 1)", a, j,
                        pr->name, (long long)g->expr.div);
    }
    return true;
}

static bool check_programs(const Plan *p, char *err, size_t errlen)
{
    for (uint32_t i = 0; i < p->nprograms; i++) {
        const PlanProgram *pr = &p->programs[i];
        if (!pr->name[0])
            return errf(err, errlen, "program %u has an empty name", i);
        for (uint32_t k = 0; k < i; k++)
            if (!strcmp(p->programs[k].name, pr->name))
                return errf(err, errlen, "program \"%s\" appears twice", pr->name);
        for (uint32_t j = 0; j < pr->nlaunch; j++)
            if (!check_launch(p, pr, j, err, errlen))
                return false;
    }
    return true;
}

bool plan_read(const uint8_t *data, size_t len, Plan **out, char *errbuf, size_t errlen)
{
    if (errbuf && errlen)
        errbuf[0] = 0;
    if (!data && len)
        return errf(errbuf, errlen, "no data");
    if (!data)
        data = (const uint8_t *)"";
    Hdr h;
    if (!check_header(data, len, &h, errbuf, errlen))
        return false;

    /* Pass 1: validate the structure and measure. */
    Rd r = {.file = data, .err = errbuf, .errlen = errlen, .sec = "?"};
    Plan tmp;
    memset(&tmp, 0, sizeof tmp);
    rd_alloc(&r, sizeof(Plan), 16);
    if (!decode_payload(&r, data, &h, &tmp))
        return false;

    /* Pass 2: decode into one block of exactly the measured size. */
    size_t need = r.used;
    uint8_t *mem = malloc(need);
    if (!mem)
        return errf(errbuf, errlen, "out of memory (%zu bytes) decoding the plan", need);
    memset(mem, 0, need);
    Rd r2 = {.file = data, .err = errbuf, .errlen = errlen, .sec = "?", .mem = mem, .cap = need};
    Plan *p = rd_alloc(&r2, sizeof(Plan), 16);
    if (!decode_payload(&r2, data, &h, p) ||
        !check_weights(p, errbuf, errlen) || !check_buffers(p, errbuf, errlen) ||
        !check_kernels(p, errbuf, errlen) || !check_programs(p, errbuf, errlen)) {
        free(mem);
        return false;
    }
    assert(r2.used == need);
    p->owned = mem;
    *out = p;
    return true;
}

/* Frees a Plan built by hand, whose strings and arrays were malloc'd. */
static void plan_free_fields(Plan *p)
{
    for (uint32_t i = 0; i < p->nmeta; i++) {
        free(p->meta[i].key);
        free(p->meta[i].value);
    }
    free(p->meta);
    for (uint32_t i = 0; i < p->nweights; i++)
        free(p->weights[i].name);
    free(p->weights);
    for (uint32_t i = 0; i < p->nbuffers; i++)
        free(p->buffers[i].name);
    free(p->buffers);
    for (uint32_t i = 0; i < p->nkernels; i++) {
        PlanKernel *k = &p->kernels[i];
        free(k->name);
        free(k->entry);
        free(k->ptx);
        for (uint32_t j = 0; j < k->nparams; j++)
            free(k->params[j].key);
        free(k->params);
    }
    free(p->kernels);
    for (uint32_t i = 0; i < p->nprograms; i++) {
        PlanProgram *pr = &p->programs[i];
        for (uint32_t j = 0; j < pr->nlaunch; j++)
            free(pr->launch[j].args);
        free(pr->launch);
        free(pr->name);
    }
    free(p->programs);
    free(p->graph);
    free(p);
}

void plan_free(Plan *p)
{
    if (!p)
        return;
    if (p->owned)
        free(p->owned); /* the Plan itself lives at the start of this block */
    else
        plan_free_fields(p);
}

/* ---- expressions ---- */

/* Monomial spellings in storage order (same as ir/sym.c). */
static const char *const mono_names[PLAN_MONO] = {"", "batch", "seq", "ctx", "batch*seq", "batch*ctx"};

/* Ceiling of v / d for d >= 1, without overflow. */
static int64_t ceil_div(int64_t v, int64_t d)
{
    int64_t q = v / d; /* truncates toward zero: already the ceiling for v < 0 */
    return q + (v % d > 0);
}

int64_t plan_expr_eval(const PlanExpr *e, int64_t batch, int64_t seq, int64_t ctx)
{
    /* Unsigned arithmetic wraps instead of overflowing; for in-range
     * values this is exactly sym_eval. */
    uint64_t b = (uint64_t)batch, s = (uint64_t)seq, c = (uint64_t)ctx;
    uint64_t v = (uint64_t)e->c[0] + (uint64_t)e->c[1] * b + (uint64_t)e->c[2] * s + (uint64_t)e->c[3] * c +
                 (uint64_t)e->c[4] * b * s + (uint64_t)e->c[5] * b * c;
    return ceil_div((int64_t)v, e->div > 0 ? e->div : 1);
}

bool plan_expr_eval_checked(const PlanExpr *e, int64_t batch, int64_t seq, int64_t ctx, int64_t *out)
{
    int64_t bs, bc, t, v = e->c[0];
    if (__builtin_mul_overflow(batch, seq, &bs) || __builtin_mul_overflow(batch, ctx, &bc))
        return false;
    const int64_t x[PLAN_MONO] = {1, batch, seq, ctx, bs, bc};
    for (int i = 1; i < PLAN_MONO; i++)
        if (__builtin_mul_overflow(e->c[i], x[i], &t) || __builtin_add_overflow(v, t, &v))
            return false;
    *out = ceil_div(v, e->div > 0 ? e->div : 1);
    return true;
}

int plan_expr_format(const PlanExpr *e, char *buf, size_t n)
{
    char body[256];
    size_t len = 0;
    body[0] = 0;
    for (int i = PLAN_MONO - 1; i >= 0; i--) {
        int64_t c = e->c[i];
        if (!c)
            continue;
        const char *sign = c < 0 ? "-" : len ? "+" : "";
        /* |c| as unsigned: correct for INT64_MIN too */
        unsigned long long m = c < 0 ? 0ull - (unsigned long long)c : (unsigned long long)c;
        int w;
        if (i == 0)
            w = snprintf(body + len, sizeof body - len, "%s%llu", sign, m);
        else if (m == 1)
            w = snprintf(body + len, sizeof body - len, "%s%s", sign, mono_names[i]);
        else
            w = snprintf(body + len, sizeof body - len, "%s%llu*%s", sign, m, mono_names[i]);
        if (w > 0)
            len += (size_t)w < sizeof body - len ? (size_t)w : sizeof body - len - 1;
    }
    if (!len)
        snprintf(body, sizeof body, "0");
    if (e->div > 1)
        return snprintf(buf, n, "ceil(%s/%lld)", body, (long long)e->div);
    return snprintf(buf, n, "%s", body);
}

const char *plan_meta(const Plan *p, const char *key)
{
    for (uint32_t i = 0; i < p->nmeta; i++)
        if (p->meta[i].key && !strcmp(p->meta[i].key, key))
            return p->meta[i].value;
    return NULL;
}
