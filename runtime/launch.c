/* launch.c — the driver-free half of a prefill/decode call: checking the
 * caller's arguments and turning a PlanLaunch into grid sizes and kernel
 * parameters. Plain launches and CUDA-graph capture both use
 * rt_launch_args, so there is one place that builds arguments. */
#include <stdio.h>

#include <string.h>

#include "rt_internal.h"

/* The checks rt_check_sizes and rt_check_ragged share: batch within the
 * session's limit; `more` tokens after position `at` within max_ctx. */
static msac_status check_batch(const char *what, int batch, int max_batch)
{
    if (batch < 1 || batch > max_batch)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "%s: batch %d is outside 1..%d (the session's max_batch)", what,
                           batch, max_batch);
    return NULL;
}

static msac_status check_room(const char *what, int row, int64_t at, int more, int max_ctx)
{
    if (at + more > max_ctx)
        return status_make(MSAC_ERR_INVALID_ARGUMENT,
                           "%s: sequence %d is at position %lld; %d more tokens exceed max_ctx %d (reset the "
                           "session or raise max_ctx)",
                           what, row, (long long)at, more, max_ctx);
    return NULL;
}

msac_status rt_check_sizes(const char *what, int max_batch, int max_seq, int max_ctx, const int64_t *positions,
                           int batch, int seq)
{
    RT_RETURN_IF_ERROR(check_batch(what, batch, max_batch));
    if (seq < 1 || seq > max_seq)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "%s: seq %d is outside 1..%d (the session's max_seq)", what, seq,
                           max_seq);
    for (int r = 0; r < batch; r++)
        RT_RETURN_IF_ERROR(check_room(what, r, positions ? positions[r] : 0, seq, max_ctx));
    return NULL;
}

msac_status rt_check_call(const char *what, int64_t vocab, int max_batch, int max_seq, int max_ctx,
                          const int64_t *positions, int batch, int seq, const int32_t *tokens)
{
    RT_RETURN_IF_ERROR(rt_check_sizes(what, max_batch, max_seq, max_ctx, positions, batch, seq));
    if (!tokens)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "%s: tokens is NULL", what);
    for (int r = 0; r < batch; r++) {
        for (int t = 0; t < seq; t++) {
            int32_t tok = tokens[(size_t)r * (size_t)seq + (size_t)t];
            if (tok < 0 || tok >= vocab)
                return status_make(MSAC_ERR_INVALID_ARGUMENT,
                                   "%s: token %d at [%d, %d] is outside the vocabulary [0, %lld)", what, tok, r, t,
                                   (long long)vocab);
        }
    }
    return NULL;
}

/* Largest grid per dimension (CUDA limits). */
static const int64_t grid_max[3] = {2147483647, 65535, 65535};

msac_status rt_launch_args(const Plan *p, const PlanLaunch *l, const uint64_t *bufptr, const uint64_t *bufsize,
                           int64_t batch, int64_t seq, int64_t ctx, RtLaunch *out)
{
    const PlanKernel *k = &p->kernels[l->kernel];
    for (int d = 0; d < 3; d++) {
        int64_t g;
        if (!plan_expr_eval_checked(&l->grid[d], batch, seq, ctx, &g) || g < 0 || g > grid_max[d]) {
            char text[128];
            plan_expr_format(&l->grid[d], text, sizeof text);
            return status_make(MSAC_ERR_BAD_PLAN,
                               "plan: kernel %s: grid %c = %s is outside 0..%lld at batch=%lld seq=%lld ctx=%lld",
                               k->name, "xyz"[d], text, (long long)grid_max[d], (long long)batch, (long long)seq,
                               (long long)ctx);
        }
        out->grid[d] = (unsigned)g;
    }
    out->nargs = l->nargs;
    for (uint32_t a = 0; a < l->nargs; a++) {
        const PlanArg *g = &l->args[a];
        RtArgValue *v = &out->vals[a];
        int64_t x = 0;
        bool ok = g->kind == PARG_F32 || plan_expr_eval_checked(&g->expr, batch, seq, ctx, &x);
        switch ((PlanArgKind)g->kind) {
        case PARG_BUF:
            if (!ok || x < 0 || (uint64_t)x > bufsize[g->buf])
                return status_make(MSAC_ERR_BAD_PLAN,
                                   "plan: kernel %s argument %u: offset %lld into buffer \"%s\" is outside its %llu "
                                   "bytes at batch=%lld seq=%lld",
                                   k->name, a, (long long)x, p->buffers[g->buf].name,
                                   (unsigned long long)bufsize[g->buf], (long long)batch, (long long)seq);
            v->ptr = bufptr[g->buf] + (uint64_t)x;
            break;
        case PARG_I32:
            if (!ok || x < INT32_MIN || x > INT32_MAX)
                return status_make(MSAC_ERR_BAD_PLAN,
                                   "plan: kernel %s argument %u: value %lld does not fit in i32 at batch=%lld seq=%lld",
                                   k->name, a, (long long)x, (long long)batch, (long long)seq);
            v->i32 = (int32_t)x;
            break;
        case PARG_I64:
            if (!ok)
                return status_make(MSAC_ERR_BAD_PLAN,
                                   "plan: kernel %s argument %u overflows i64 at batch=%lld seq=%lld", k->name, a,
                                   (long long)batch, (long long)seq);
            v->i64 = x;
            break;
        case PARG_F32: v->f32 = g->f; break;
        }
        out->params[a] = v;
    }
    return NULL;
}

int64_t rt_kernel_param(const PlanKernel *k, const char *key, int64_t dflt)
{
    for (uint32_t i = 0; i < k->nparams; i++)
        if (!strcmp(k->params[i].key, key))
            return k->params[i].value;
    return dflt;
}

msac_status rt_check_ragged(const char *what, int64_t vocab, int max_batch, int max_ctx, const int64_t *positions,
                            int batch, const int *lengths, const int32_t *tokens, int64_t *out_total)
{
    RT_RETURN_IF_ERROR(check_batch(what, batch, max_batch));
    if (!lengths)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "%s: lengths is NULL", what);
    int64_t total = 0;
    for (int r = 0; r < batch; r++) {
        if (lengths[r] < 0)
            return status_make(MSAC_ERR_INVALID_ARGUMENT, "%s: length %d of sequence %d is negative", what,
                               lengths[r], r);
        RT_RETURN_IF_ERROR(check_room(what, r, positions ? positions[r] : 0, lengths[r], max_ctx));
        total += lengths[r];
    }
    if (total && !tokens)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "%s: tokens is NULL", what);
    int64_t i = 0;
    for (int r = 0; r < batch; r++) {
        for (int t = 0; t < lengths[r]; t++, i++) {
            if (tokens[i] < 0 || tokens[i] >= vocab)
                return status_make(MSAC_ERR_INVALID_ARGUMENT,
                                   "%s: token %d at [%d, %d] (tokens[%lld]) is outside the vocabulary [0, %lld)", what,
                                   tokens[i], r, t, (long long)i, (long long)vocab);
        }
    }
    *out_total = total;
    return NULL;
}

bool rt_ragged_next(int batch, const int *lengths, const int *done, int max_seq, RtRaggedStep *out)
{
    int r = 0;
    while (r < batch && done[r] >= lengths[r])
        r++;
    if (r == batch)
        return false;
    int e = r, seq = max_seq;
    for (; e < batch && done[e] < lengths[e]; e++)
        if (lengths[e] - done[e] < seq)
            seq = lengths[e] - done[e];
    *out = (RtRaggedStep){r, e - r, seq};
    return true;
}
