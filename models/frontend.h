/* frontend.h — YAML model files → the unfused tensor IR.
 *
 * The schema is checked field by field; every error is positioned
 * (file:line:col) so the caller can print it with the source line and a
 * caret (diag_print). The graph returned has declared shapes on its leaves
 * only; pass_infer_shapes fills in the rest. docs/models.md documents the
 * schema and the weight naming scheme. */
#pragma once
#include "ir.h"

/* Parses `text` (the contents of `file`) and builds the model's graph in a.
 * Returns NULL with a positioned message in d on any error. */
Graph *frontend_load_text(Arena *a, const char *text, const char *file, Diag *d);

/* Reads a whole file into a malloc'd NUL-terminated string (NULL + message on error). */
char *frontend_read_file(const char *path, Diag *d);
