/* diag.c — formatting of user-facing errors (chibicc style: line + caret). */
#include "diag.h"

#include <stdarg.h>
#include <string.h>

bool diag_fail(Diag *d, const char *fmt, ...)
{
    if (!d)
        return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    return false;
}

bool diag_fail_at(Diag *d, const char *file, int line, int col, const char *fmt, ...)
{
    if (!d)
        return false;
    d->file = file;
    d->line = line;
    d->col = col;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->msg, sizeof d->msg, fmt, ap);
    va_end(ap);
    return false;
}

void diag_print(const Diag *d, const char *source, FILE *out)
{
    if (d->file && d->line > 0)
        fprintf(out, "%s:%d:%d: error: %s\n", d->file, d->line, d->col, d->msg);
    else if (d->file)
        fprintf(out, "%s: error: %s\n", d->file, d->msg);
    else
        fprintf(out, "error: %s\n", d->msg);
    if (!source || d->line <= 0)
        return;
    const char *p = source;
    for (int l = 1; l < d->line && *p; l++) {
        p = strchr(p, '\n');
        if (!p)
            return;
        p++;
    }
    const char *e = strchr(p, '\n');
    int len = e ? (int)(e - p) : (int)strlen(p);
    if (len == 0)
        return; /* nothing to point at (empty line or empty file) */
    fprintf(out, "  %.*s\n  ", len, p);
    for (int i = 1; i < d->col && i <= len; i++)
        fputc(p[i - 1] == '\t' ? '\t' : ' ', out);
    fputs("^\n", out);
}
