/* safetensors.c — msac_weights: open a safetensors checkpoint.
 *
 * File layout: u64 (little-endian) header length N, N bytes of JSON
 * {"name": {"dtype": "BF16", "shape": [..], "data_offsets": [begin, end]},
 * ..., "__metadata__": {...}}, then the data section. The file is mapped
 * read-only; the header is parsed and every entry is checked (offsets
 * inside the data section, byte count = numel * itemsize) when it is opened,
 * so later reads need no checks beyond the dtype. */
#include "safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"

/* The safetensors header is limited to 100 MB by the format. */
#define ST_MAX_HEADER (100u << 20)

static const struct {
    const char *name; /* dtype spelling in the header */
    size_t size;      /* bytes per element */
} st_dtypes[] = {
    {"BOOL", 1}, {"U8", 1},  {"I8", 1},  {"F8_E5M2", 1}, {"F8_E4M3", 1}, {"I16", 2}, {"U16", 2}, {"F16", 2},
    {"BF16", 2}, {"I32", 4}, {"U32", 4}, {"F32", 4},     {"F64", 8},     {"I64", 8}, {"U64", 8},
};

static size_t dtype_size(const char *name)
{
    for (size_t i = 0; i < sizeof st_dtypes / sizeof st_dtypes[0]; i++)
        if (!strcmp(st_dtypes[i].name, name))
            return st_dtypes[i].size;
    return 0;
}

void st_format_shape(const int64_t *dims, int ndim, char *buf, size_t n)
{
    size_t len = 0;
    int k = snprintf(buf, n, "[");
    len = k > 0 ? (size_t)k : 0;
    for (int d = 0; d < ndim && len < n; d++) {
        k = snprintf(buf + len, n - len, "%s%lld", d ? ", " : "", (long long)dims[d]);
        len += k > 0 ? (size_t)k : 0;
    }
    if (len < n)
        snprintf(buf + len, n - len, "]");
}

static void free_tensors(StTensor *t, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(t[i].name);
    free(t);
}

void msac_weights_close(msac_weights *w)
{
    if (!w)
        return;
    free_tensors(w->tensors, w->ntensors);
    if (w->map)
        munmap(w->map, w->map_len);
    free(w->path);
    free(w);
}

/* Checks one header entry and fills *t (whose name is already set). */
static msac_status parse_entry(const msac_weights *w, const JsonValue *e, StTensor *t)
{
    const char *path = w->path, *name = t->name;
    if (e->type != JSON_OBJECT)
        return status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: tensor \"%s\": entry is a JSON %s, not an object",
                           path, name, json_type_name(e->type));
    const JsonValue *dt = json_get(e, "dtype"), *shape = json_get(e, "shape"), *off = json_get(e, "data_offsets");
    if (!dt || dt->type != JSON_STRING)
        return status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: tensor \"%s\": \"dtype\" missing or not a string",
                           path, name);
    if (!shape || shape->type != JSON_ARRAY)
        return status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: tensor \"%s\": \"shape\" missing or not an array",
                           path, name);
    if (!off || off->type != JSON_ARRAY || off->len != 2)
        return status_make(MSAC_ERR_BAD_WEIGHTS,
                           "weights: %s: tensor \"%s\": \"data_offsets\" missing or not an array of two integers",
                           path, name);
    snprintf(t->dtype, sizeof t->dtype, "%s", dt->str);
    t->itemsize = dtype_size(dt->str);
    if (shape->len > ST_MAX_DIMS)
        return status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: tensor \"%s\" has rank %zu (at most %d supported)",
                           path, name, shape->len, ST_MAX_DIMS);
    t->ndim = (int)shape->len;
    uint64_t numel = 1;
    for (int d = 0; d < t->ndim; d++) {
        const JsonValue *x = &shape->items[d];
        if (x->type != JSON_NUMBER || !x->is_int || x->i < 0)
            return status_make(MSAC_ERR_BAD_WEIGHTS,
                               "weights: %s: tensor \"%s\": shape entry %d is not a non-negative integer", path,
                               name, d);
        t->shape[d] = x->i;
        if (__builtin_mul_overflow(numel, (uint64_t)x->i, &numel))
            return status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: tensor \"%s\": element count overflows", path,
                               name);
    }
    t->numel = numel;
    const JsonValue *b = &off->items[0], *en = &off->items[1];
    if (b->type != JSON_NUMBER || !b->is_int || b->i < 0 || en->type != JSON_NUMBER || !en->is_int || en->i < 0)
        return status_make(MSAC_ERR_BAD_WEIGHTS,
                           "weights: %s: tensor \"%s\": data_offsets are not non-negative integers", path, name);
    t->begin = (uint64_t)b->i;
    t->end = (uint64_t)en->i;
    if (t->begin > t->end || t->end > w->data_len)
        return status_make(MSAC_ERR_BAD_WEIGHTS,
                           "weights: %s: tensor \"%s\": data_offsets [%llu, %llu] lie outside the %llu-byte data "
                           "section (file truncated or corrupt)",
                           path, name, (unsigned long long)t->begin, (unsigned long long)t->end,
                           (unsigned long long)w->data_len);
    uint64_t need;
    if (t->itemsize &&
        (__builtin_mul_overflow(numel, (uint64_t)t->itemsize, &need) || need != t->end - t->begin)) {
        char sh[128];
        st_format_shape(t->shape, t->ndim, sh, sizeof sh);
        return status_make(MSAC_ERR_BAD_WEIGHTS,
                           "weights: %s: tensor \"%s\": %s %s needs %llu bytes but data_offsets cover %llu", path,
                           name, t->dtype, sh, (unsigned long long)numel * t->itemsize,
                           (unsigned long long)(t->end - t->begin));
    }
    return NULL;
}

static int cmp_tensor(const void *a, const void *b)
{
    return strcmp(((const StTensor *)a)->name, ((const StTensor *)b)->name);
}

/* Parses and checks the header; fills w->tensors. */
static msac_status parse_header(msac_weights *w, const char *json, size_t len)
{
    char err[256];
    JsonValue root;
    if (!json_parse(json, len, &root, err, sizeof err))
        return status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: malformed header JSON %s", w->path, err);
    msac_status st = NULL;
    if (root.type != JSON_OBJECT) {
        st = status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: header is a JSON %s, not an object", w->path,
                         json_type_name(root.type));
        goto done;
    }
    w->tensors = calloc(root.len ? root.len : 1, sizeof *w->tensors);
    if (!w->tensors) {
        st = status_oom();
        goto done;
    }
    for (size_t i = 0; i < root.len; i++) {
        const JsonMember *m = &root.members[i];
        if (!strcmp(m->key, "__metadata__"))
            continue;
        StTensor *t = &w->tensors[w->ntensors];
        if (!(t->name = strdup(m->key))) {
            st = status_oom();
            goto done;
        }
        w->ntensors++;
        if ((st = parse_entry(w, &m->value, t)))
            goto done;
    }
    qsort(w->tensors, w->ntensors, sizeof *w->tensors, cmp_tensor);
    for (size_t i = 1; i < w->ntensors; i++)
        if (!strcmp(w->tensors[i - 1].name, w->tensors[i].name)) {
            st = status_make(MSAC_ERR_BAD_WEIGHTS, "weights: %s: tensor \"%s\" appears twice in the header", w->path,
                             w->tensors[i].name);
            goto done;
        }
done:
    json_free(&root);
    return st;
}

msac_status msac_weights_open(const char *path, msac_weights **out_weights)
{
    if (!path || !out_weights)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_weights_open: %s is NULL",
                           path ? "out_weights" : "path");
    msac_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return status_oom();
    }
    msac_status st = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        st = status_make(MSAC_ERR_IO, "cannot open weights %s: %s", path, strerror(errno));
        goto fail;
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        st = status_make(MSAC_ERR_IO, "cannot read weights %s: not a regular file", path);
        goto fail;
    }
    size_t size = (size_t)sb.st_size;
    if (size < 8) {
        close(fd);
        st = status_make(MSAC_ERR_BAD_WEIGHTS,
                         "weights: %s: truncated: %zu bytes, a safetensors file starts with an 8-byte header length",
                         path, size);
        goto fail;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) {
        st = status_make(MSAC_ERR_IO, "cannot map weights %s: %s", path, strerror(errno));
        goto fail;
    }
    w->map = map;
    w->map_len = size;
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = hlen << 8 | w->map[i];
    if (hlen > size - 8 || hlen > ST_MAX_HEADER) {
        st = status_make(MSAC_ERR_BAD_WEIGHTS,
                         "weights: %s: header length %llu exceeds the file (%zu bytes) or the 100 MB limit: "
                         "truncated or not a safetensors file",
                         path, (unsigned long long)hlen, size);
        goto fail;
    }
    w->data = w->map + 8 + hlen;
    w->data_len = size - 8 - hlen;
    if ((st = parse_header(w, (const char *)w->map + 8, (size_t)hlen)))
        goto fail;
    *out_weights = w;
    return NULL;
fail:
    msac_weights_close(w);
    return st;
}

static int cmp_name(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const StTensor *)elem)->name);
}

const StTensor *st_find(const msac_weights *w, const char *name)
{
    if (!w->ntensors)
        return NULL;
    return bsearch(name, w->tensors, w->ntensors, sizeof *w->tensors, cmp_name);
}

static float f16_to_f32(uint16_t h)
{
    uint32_t sign = (uint32_t)(h >> 15) << 31, exp = h >> 10 & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0x1f) {
        bits = sign | 0x7f800000u | man << 13; /* inf / nan */
    } else if (exp) {
        bits = sign | (exp + 112) << 23 | man << 13; /* normal: rebias 15 -> 127 */
    } else {
        float f = ldexpf((float)man, -24); /* zero or subnormal: exact */
        return sign ? -f : f;
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

msac_status st_read_f32(const msac_weights *w, const StTensor *t, float *out)
{
    const uint8_t *src = w->data + t->begin;
    if (!strcmp(t->dtype, "F32")) {
        memcpy(out, src, t->numel * 4);
    } else if (!strcmp(t->dtype, "BF16")) {
        for (uint64_t i = 0; i < t->numel; i++)
            out[i] = rt_f32_from_bf16((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else if (!strcmp(t->dtype, "F16")) {
        for (uint64_t i = 0; i < t->numel; i++)
            out[i] = f16_to_f32((uint16_t)(src[2 * i] | src[2 * i + 1] << 8));
    } else {
        return status_make(MSAC_ERR_BAD_WEIGHTS,
                           "weights: tensor \"%s\" in %s has dtype %s (F32, BF16 and F16 are accepted)", t->name,
                           w->path, t->dtype);
    }
    return NULL;
}
