/* yaml_doc.h — a YAML file as a tree with positions, and typed, checked
 * field access whose every failure is a positioned Diag.
 *
 * Built on libyaml's document API. Each check reports at the most useful
 * place: an unknown or duplicate key at the key, a bad value at the value, a
 * missing key at the start of its mapping. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#include "diag.h"

typedef struct YDoc {
    const char *file;    /* path, for messages */
    char *text;          /* whole source (for the caret line) */
    yaml_document_t doc; /* libyaml document */
    bool loaded;         /* doc is valid and must be deleted */
} YDoc;

typedef yaml_node_t YNode;

/* Parses text (copied). A syntax error is reported at libyaml's position. */
bool ydoc_parse(YDoc *y, const char *file, const char *text, Diag *d);
void ydoc_free(YDoc *y);
YNode *ydoc_root(YDoc *y);

/* Position helpers (1-based). */
int ynode_line(const YNode *n);
int ynode_col(const YNode *n);
bool ydoc_fail(YDoc *y, const YNode *at, Diag *d, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Mappings. `where` names the mapping in messages ("model", "mamba2 layer").
 * ymap_check rejects non-mappings, duplicate keys and keys not in `allowed`
 * (NULL-terminated), suggesting the closest allowed key. */
bool ymap_check(YDoc *y, YNode *map, const char *where, const char *const *allowed, Diag *d);
YNode *ymap_get(YDoc *y, YNode *map, const char *key); /* NULL if absent */
YNode *ymap_key_node(YDoc *y, YNode *map, const char *key); /* the key's node, for messages */

/* Typed getters. Absent key: required → error at the mapping, else *out
 * keeps its default and true is returned. Ranges are inclusive. */
bool yget_int(YDoc *y, YNode *map, const char *key, bool required, int64_t lo, int64_t hi, int64_t *out, Diag *d);
bool yget_float(YDoc *y, YNode *map, const char *key, bool required, double lo, double hi, double *out, Diag *d);
bool yget_bool(YDoc *y, YNode *map, const char *key, bool required, bool *out, Diag *d);
bool yget_str(YDoc *y, YNode *map, const char *key, bool required, const char **out, Diag *d);
/* A two-element float list like [0.0, inf]. */
bool yget_float_pair(YDoc *y, YNode *map, const char *key, double lo, double hi, double out[2], Diag *d);

/* Scalar conversions of a node (false if the scalar is not of that type). */
const char *yscalar(const YNode *n); /* NUL-terminated value, NULL if not a scalar */
bool yscalar_int(const YNode *n, int64_t *out);
bool yscalar_float(const YNode *n, double *out);
