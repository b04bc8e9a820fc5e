/* status.c — msac_status: an error code plus a readable message.
 *
 * NULL is success. An error is one heap block holding the struct and its
 * message; when even that allocation fails, a static out-of-memory status is
 * returned instead, which msac_status_free recognises and leaves alone. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rt_internal.h"

static struct msac_status_s oom_status = {MSAC_ERR_OUT_OF_MEMORY, false, "out of memory (host)"};

msac_status status_oom(void) { return &oom_status; }

msac_status status_makev(msac_code code, const char *fmt, va_list ap)
{
    /* Format once into a stack buffer; only a long message is formatted
     * a second time, into its exact size. */
    char small[512];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        n = 0;
    struct msac_status_s *st = malloc(sizeof *st + (size_t)n + 1);
    if (!st)
        return status_oom();
    char *msg = (char *)(st + 1);
    if ((size_t)n < sizeof small)
        memcpy(msg, small, (size_t)n + 1);
    else if (vsnprintf(msg, (size_t)n + 1, fmt, ap) < 0)
        msg[0] = 0;
    st->code = code == MSAC_OK ? MSAC_ERR_INVALID_ARGUMENT : code; /* an error is never OK */
    st->heap = true;
    st->message = msg;
    return st;
}

msac_status status_make(msac_code code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    msac_status st = status_makev(code, fmt, ap);
    va_end(ap);
    return st;
}

msac_code msac_status_code(msac_status st) { return st ? st->code : MSAC_OK; }

const char *msac_status_message(msac_status st) { return st ? st->message : ""; }

void msac_status_free(msac_status st)
{
    if (st && st->heap)
        free(st);
}

const char *msac_code_name(msac_code code)
{
    switch (code) {
    case MSAC_OK: return "MSAC_OK";
    case MSAC_ERR_INVALID_ARGUMENT: return "MSAC_ERR_INVALID_ARGUMENT";
    case MSAC_ERR_IO: return "MSAC_ERR_IO";
    case MSAC_ERR_BAD_PLAN: return "MSAC_ERR_BAD_PLAN";
    case MSAC_ERR_WRONG_TARGET: return "MSAC_ERR_WRONG_TARGET";
    case MSAC_ERR_NO_DRIVER: return "MSAC_ERR_NO_DRIVER";
    case MSAC_ERR_NO_DEVICE: return "MSAC_ERR_NO_DEVICE";
    case MSAC_ERR_OUT_OF_MEMORY: return "MSAC_ERR_OUT_OF_MEMORY";
    case MSAC_ERR_BAD_WEIGHTS: return "MSAC_ERR_BAD_WEIGHTS";
    case MSAC_ERR_CUDA: return "MSAC_ERR_CUDA";
    case MSAC_ERR_UNSUPPORTED: return "MSAC_ERR_UNSUPPORTED";
    }
    return "MSAC_ERR_UNKNOWN";
}
