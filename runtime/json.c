/* json.c — a small strict JSON parser (recursive descent over a bounded
 * buffer) for the header of safetensors files and the tuning cache, and
 * json_write_string for the JSON files msac writes. See json.h. */
#include "json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Parser state: cursor inside [start, end). */
typedef struct Jp {
    const char *start; /* first byte of the text */
    const char *s;     /* next byte */
    const char *end;   /* one past the last byte */
    int depth;         /* current nesting */
    char *err;         /* message buffer */
    size_t errlen;
} Jp;

static bool jp_fail(Jp *j, const char *what)
{
    if (j->err && j->errlen)
        snprintf(j->err, j->errlen, "at byte %zu: %s", (size_t)(j->s - j->start), what);
    return false;
}

static void skip_ws(Jp *j)
{
    while (j->s < j->end && (*j->s == ' ' || *j->s == '\t' || *j->s == '\n' || *j->s == '\r'))
        j->s++;
}

static bool at(Jp *j, char c) { return j->s < j->end && *j->s == c; }

const char *json_type_name(JsonType t)
{
    switch (t) {
    case JSON_NULL: return "null";
    case JSON_BOOL: return "boolean";
    case JSON_NUMBER: return "number";
    case JSON_STRING: return "string";
    case JSON_ARRAY: return "array";
    case JSON_OBJECT: return "object";
    }
    return "?";
}

void json_free(JsonValue *v)
{
    switch (v->type) {
    case JSON_STRING: free(v->str); break;
    case JSON_ARRAY:
        for (size_t i = 0; i < v->len; i++)
            json_free(&v->items[i]);
        free(v->items);
        break;
    case JSON_OBJECT:
        for (size_t i = 0; i < v->len; i++) {
            free(v->members[i].key);
            json_free(&v->members[i].value);
        }
        free(v->members);
        break;
    default: break;
    }
    memset(v, 0, sizeof *v);
}

const JsonValue *json_get(const JsonValue *obj, const char *key)
{
    if (obj->type != JSON_OBJECT)
        return NULL;
    for (size_t i = 0; i < obj->len; i++)
        if (!strcmp(obj->members[i].key, key))
            return &obj->members[i].value;
    return NULL;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Four hex digits after "\u". */
static bool read_hex4(Jp *j, unsigned *out)
{
    if (j->end - j->s < 4)
        return jp_fail(j, "truncated \\u escape");
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(j->s[i]);
        if (h < 0)
            return jp_fail(j, "bad hex digit in \\u escape");
        v = v << 4 | (unsigned)h;
    }
    j->s += 4;
    *out = v;
    return true;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xc0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3f));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xe0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3f));
        o[2] = (char)(0x80 | (cp & 0x3f));
        return 3;
    }
    o[0] = (char)(0xf0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3f));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3f));
    o[3] = (char)(0x80 | (cp & 0x3f));
    return 4;
}

/* A string starting at '"'. The decoded form is never longer than the raw
 * text, so one allocation of the raw length suffices. */
static bool parse_string(Jp *j, char **out, size_t *out_len)
{
    if (!at(j, '"'))
        return jp_fail(j, "expected a string");
    j->s++;
    const char *q = j->s;
    while (q < j->end && *q != '"') {
        if (*q == '\\' && j->end - q < 2) {
            q = j->end; /* a backslash as the last byte: unterminated */
            break;
        }
        q += *q == '\\' ? 2 : 1;
    }
    if (q >= j->end)
        return jp_fail(j, "unterminated string");
    char *buf = malloc((size_t)(q - j->s) + 1), *o = buf;
    if (!buf)
        return jp_fail(j, "out of memory");
    while (*j->s != '"') {
        unsigned char c = (unsigned char)*j->s;
        if (c < 0x20) {
            free(buf);
            return jp_fail(j, "control character in string");
        }
        if (c != '\\') {
            *o++ = (char)c;
            j->s++;
            continue;
        }
        j->s++; /* the scan above guarantees a byte after '\\' */
        char e = *j->s++;
        switch (e) {
        case '"': *o++ = '"'; break;
        case '\\': *o++ = '\\'; break;
        case '/': *o++ = '/'; break;
        case 'b': *o++ = '\b'; break;
        case 'f': *o++ = '\f'; break;
        case 'n': *o++ = '\n'; break;
        case 'r': *o++ = '\r'; break;
        case 't': *o++ = '\t'; break;
        case 'u': {
            unsigned cp;
            if (!read_hex4(j, &cp)) {
                free(buf);
                return false;
            }
            if (cp >= 0xdc00 && cp <= 0xdfff) {
                free(buf);
                return jp_fail(j, "unpaired low surrogate in \\u escape");
            }
            if (cp >= 0xd800 && cp <= 0xdbff) {
                unsigned lo;
                if (j->end - j->s < 2 || j->s[0] != '\\' || j->s[1] != 'u') {
                    free(buf);
                    return jp_fail(j, "unpaired high surrogate in \\u escape");
                }
                j->s += 2;
                if (!read_hex4(j, &lo)) {
                    free(buf);
                    return false;
                }
                if (lo < 0xdc00 || lo > 0xdfff) {
                    free(buf);
                    return jp_fail(j, "bad low surrogate in \\u escape");
                }
                cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            if (cp == 0) {
                free(buf);
                return jp_fail(j, "\\u0000 in string");
            }
            o += put_utf8(o, cp);
            break;
        }
        default: free(buf); return jp_fail(j, "bad escape in string");
        }
    }
    j->s++; /* closing quote */
    *o = 0;
    *out = buf;
    *out_len = (size_t)(o - buf);
    return true;
}

static bool is_digit(Jp *j) { return j->s < j->end && *j->s >= '0' && *j->s <= '9'; }

static bool parse_number(Jp *j, JsonValue *v)
{
    const char *b = j->s;
    bool integral = true;
    if (at(j, '-'))
        j->s++;
    if (at(j, '0'))
        j->s++;
    else if (is_digit(j))
        while (is_digit(j))
            j->s++;
    else
        return jp_fail(j, "expected a digit");
    if (at(j, '.')) {
        integral = false;
        j->s++;
        if (!is_digit(j))
            return jp_fail(j, "expected a digit after '.'");
        while (is_digit(j))
            j->s++;
    }
    if (at(j, 'e') || at(j, 'E')) {
        integral = false;
        j->s++;
        if (at(j, '+') || at(j, '-'))
            j->s++;
        if (!is_digit(j))
            return jp_fail(j, "expected a digit in the exponent");
        while (is_digit(j))
            j->s++;
    }
    char tmp[64];
    size_t n = (size_t)(j->s - b);
    if (n >= sizeof tmp) {
        j->s = b;
        return jp_fail(j, "number too long");
    }
    memcpy(tmp, b, n);
    tmp[n] = 0;
    v->type = JSON_NUMBER;
    v->num = strtod(tmp, NULL);
    if (integral) {
        errno = 0;
        long long x = strtoll(tmp, NULL, 10);
        if (errno == 0) {
            v->is_int = true;
            v->i = x;
        }
    }
    return true;
}

static bool parse_value(Jp *j, JsonValue *v);

static bool parse_array(Jp *j, JsonValue *v)
{
    j->s++; /* '[' */
    v->type = JSON_ARRAY;
    size_t cap = 0;
    skip_ws(j);
    if (at(j, ']')) {
        j->s++;
        return true;
    }
    for (;;) {
        if (v->len == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            JsonValue *items = realloc(v->items, ncap * sizeof *items);
            if (!items) {
                json_free(v);
                return jp_fail(j, "out of memory");
            }
            v->items = items;
            cap = ncap;
        }
        JsonValue *item = &v->items[v->len];
        if (!parse_value(j, item)) {
            json_free(v);
            return false;
        }
        v->len++;
        skip_ws(j);
        if (at(j, ',')) {
            j->s++;
            continue;
        }
        if (at(j, ']')) {
            j->s++;
            return true;
        }
        json_free(v);
        return jp_fail(j, "expected ',' or ']'");
    }
}

static bool parse_object(Jp *j, JsonValue *v)
{
    j->s++; /* '{' */
    v->type = JSON_OBJECT;
    size_t cap = 0;
    skip_ws(j);
    if (at(j, '}')) {
        j->s++;
        return true;
    }
    for (;;) {
        if (v->len == cap) {
            size_t ncap = cap ? cap * 2 : 4;
            JsonMember *m = realloc(v->members, ncap * sizeof *m);
            if (!m) {
                json_free(v);
                return jp_fail(j, "out of memory");
            }
            v->members = m;
            cap = ncap;
        }
        JsonMember *m = &v->members[v->len];
        size_t klen;
        skip_ws(j);
        if (!parse_string(j, &m->key, &klen)) {
            json_free(v);
            return false;
        }
        memset(&m->value, 0, sizeof m->value);
        v->len++; /* the key is owned from here on; the value is JSON_NULL until parsed */
        skip_ws(j);
        if (!at(j, ':')) {
            json_free(v);
            return jp_fail(j, "expected ':'");
        }
        j->s++;
        if (!parse_value(j, &m->value)) {
            json_free(v);
            return false;
        }
        skip_ws(j);
        if (at(j, ',')) {
            j->s++;
            continue;
        }
        if (at(j, '}')) {
            j->s++;
            return true;
        }
        json_free(v);
        return jp_fail(j, "expected ',' or '}'");
    }
}

static bool literal(Jp *j, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(j->end - j->s) < n || memcmp(j->s, word, n) != 0)
        return jp_fail(j, "expected a value");
    j->s += n;
    return true;
}

/* On failure *v is left empty (everything it had is freed). */
static bool parse_value(Jp *j, JsonValue *v)
{
    memset(v, 0, sizeof *v);
    skip_ws(j);
    if (j->s >= j->end)
        return jp_fail(j, "unexpected end of text");
    switch (*j->s) {
    case '{':
    case '[': {
        if (j->depth >= JSON_MAX_DEPTH)
            return jp_fail(j, "nesting too deep");
        j->depth++;
        bool ok = *j->s == '{' ? parse_object(j, v) : parse_array(j, v);
        j->depth--;
        return ok;
    }
    case '"':
        if (!parse_string(j, &v->str, &v->len))
            return false;
        v->type = JSON_STRING;
        return true;
    case 't':
        if (!literal(j, "true"))
            return false;
        v->type = JSON_BOOL;
        v->boolean = true;
        return true;
    case 'f':
        if (!literal(j, "false"))
            return false;
        v->type = JSON_BOOL;
        return true;
    case 'n': return literal(j, "null");
    default:
        if (*j->s == '-' || (*j->s >= '0' && *j->s <= '9'))
            return parse_number(j, v);
        return jp_fail(j, "expected a value");
    }
}

bool json_parse(const char *text, size_t len, JsonValue *out, char *err, size_t errlen)
{
    Jp j = {.start = text, .s = text, .end = text + len, .err = err, .errlen = errlen};
    if (!parse_value(&j, out))
        return false;
    skip_ws(&j);
    if (j.s != j.end) {
        json_free(out);
        return jp_fail(&j, "unexpected text after the value");
    }
    return true;
}

void json_write_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        switch (*c) {
        case '"': fputs("\\\"", f); break;
        case '\\': fputs("\\\\", f); break;
        case '\b': fputs("\\b", f); break;
        case '\f': fputs("\\f", f); break;
        case '\n': fputs("\\n", f); break;
        case '\r': fputs("\\r", f); break;
        case '\t': fputs("\\t", f); break;
        default:
            if (*c < 0x20 || *c == 0x7f)
                fprintf(f, "\\u%04x", *c);
            else
                fputc(*c, f);
        }
    }
    fputc('"', f);
}
