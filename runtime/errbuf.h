/* errbuf.h — messages into a caller's buffer: the (char *err, size_t errlen)
 * convention of plan_format, atomic_file and tune_cache. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

/* Formats into err (when err is not NULL and errlen > 0, truncating);
 * returns false, so that `return errbuf_printf(...)` reports a failure. */
bool errbuf_printf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
