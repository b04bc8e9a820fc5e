/* diag.h — user-facing diagnostics.
 *
 * Library functions that can fail on user input take a Diag * and return
 * false after filling it; the caller decides how to print. A position
 * (file, line, col; 1-based, 0 = unknown) makes the message print as
 * `file:line:col: error: msg`, followed by the source line and a caret when
 * the caller supplies the source text. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

typedef struct Diag {
    char msg[1024];   /* the message, without "error: " */
    const char *file; /* file the position refers to, or NULL */
    int line;         /* 1-based line, 0 if unknown */
    int col;          /* 1-based column, 0 if unknown */
} Diag;

/* Sets the message (keeps any position already set) and returns false. */
bool diag_fail(Diag *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets position and message and returns false. */
bool diag_fail_at(Diag *d, const char *file, int line, int col, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* Prints `file:line:col: error: msg`, then the source line and a caret when
 * `source` (the whole text of `file`) is given. */
void diag_print(const Diag *d, const char *source, FILE *out);
