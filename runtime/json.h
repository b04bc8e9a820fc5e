/* json.h — a small strict JSON parser (safetensors headers, the tuning
 * cache) and the string writer for the JSON files msac writes.
 *
 * Parses RFC 8259 JSON from a bounded buffer (no terminator needed) into a
 * tree of JsonValue. Every read is bounds-checked, nesting is limited, and
 * failure messages carry the byte offset. Strings are decoded to UTF-8 and
 * NUL-terminated; "\u0000" is refused so that strings are C strings. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum JsonType { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } JsonType;

typedef struct JsonMember JsonMember;

typedef struct JsonValue {
    JsonType type;
    bool boolean;        /* JSON_BOOL */
    double num;          /* JSON_NUMBER */
    bool is_int;         /* JSON_NUMBER written without fraction or exponent, fits int64 */
    int64_t i;           /* its value when is_int */
    char *str;           /* JSON_STRING: decoded, NUL-terminated (malloc'd) */
    size_t len;          /* JSON_STRING: bytes; JSON_ARRAY / JSON_OBJECT: element count */
    struct JsonValue *items; /* JSON_ARRAY: [len] elements (malloc'd) */
    JsonMember *members; /* JSON_OBJECT: [len] members in file order (malloc'd) */
} JsonValue;

struct JsonMember {
    char *key;       /* decoded key, NUL-terminated (malloc'd) */
    JsonValue value; /* its value */
};

/* Maximum nesting of arrays and objects. */
#define JSON_MAX_DEPTH 64

/* Parses text[0, len) as exactly one JSON value (surrounding whitespace
 * allowed). On failure returns false, *out is left empty (JSON_NULL) and err
 * gets "at byte N: what was expected". */
bool json_parse(const char *text, size_t len, JsonValue *out, char *err, size_t errlen);
/* Frees the tree under v (not v itself) and resets it to JSON_NULL. */
void json_free(JsonValue *v);
/* The value of member `key` of object obj, NULL if absent or obj is not an
 * object (first match). */
const JsonValue *json_get(const JsonValue *obj, const char *key);
const char *json_type_name(JsonType t); /* "null", "boolean", "number", ... */

/* Writes s as a JSON string literal, quotes included: '"' and '\\' escaped,
 * \b \f \n \r \t as such, every other byte below 0x20 (and 0x7f) as
 * \u00XX; other bytes (UTF-8) as they are. */
void json_write_string(FILE *f, const char *s);
