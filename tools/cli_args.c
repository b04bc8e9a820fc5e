/* cli_args.c — numeric command-line arguments shared by the subcommands
 * (see cli.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

bool cli_parse_int(const char *s, int lo, int hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end || errno || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

bool cli_parse_u64(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '+')
        return false;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s || *end || errno)
        return false;
    *out = (uint64_t)v;
    return true;
}

bool cli_parse_ints(const char *s, int32_t **out, int *n)
{
    int cap = 16, k = 0;
    int32_t *v = malloc(sizeof(int32_t) * (size_t)cap);
    if (!v)
        return false;
    const char *p = s;
    while (*p) {
        char *end;
        errno = 0;
        long x = strtol(p, &end, 10);
        if (end == p || errno || x < 0 || x > 0x7fffffff || (*end && *end != ',')) {
            free(v);
            return false;
        }
        if (k == cap) {
            int32_t *nv = realloc(v, sizeof(int32_t) * (size_t)(cap *= 2));
            if (!nv) {
                free(v);
                return false;
            }
            v = nv;
        }
        v[k++] = (int32_t)x;
        p = *end ? end + 1 : end;
    }
    if (!k) {
        free(v);
        return false;
    }
    *out = v;
    *n = k;
    return true;
}

bool cli_is_yaml(const char *path)
{
    size_t n = strlen(path);
    return (n > 5 && !strcmp(path + n - 5, ".yaml")) || (n > 4 && !strcmp(path + n - 4, ".yml"));
}

void cli_fill_tokens(int32_t *t, size_t n, int64_t vocab)
{
    uint64_t x = 0x853c49e6748fea9bull;
    for (size_t i = 0; i < n; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        t[i] = (int32_t)((x >> 33) % (uint64_t)vocab);
    }
}
