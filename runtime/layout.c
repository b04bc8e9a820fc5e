/* layout.c — where a session's buffers live in its one device allocation.
 *
 * Weights first (numel * dtype size each), then states, inputs and outputs
 * at their sizes for (max_batch, max_seq, max_ctx), then the workspace arena
 * sized to the largest offset + bytes of any workspace buffer at those
 * limits. Every region starts on an RT_ALIGN boundary. The same layout gives
 * msac_plan_memory_required its answer, so the figure is exact. */
#include <stdlib.h>
#include <string.h>

#include "rt_internal.h"

static const char *const kind_names[] = {"weight", "state", "input", "output", "workspace"};

void rt_layout_free(RtLayout *l)
{
    free(l->weight_off);
    free(l->weight_bytes);
    free(l->buf_off);
    free(l->buf_size);
    memset(l, 0, sizeof *l);
}

/* Reserves `bytes` at the next aligned offset; false on overflow. */
static bool reserve(uint64_t *end, uint64_t bytes, uint64_t *out_off)
{
    uint64_t off;
    if (__builtin_add_overflow(*end, (uint64_t)RT_ALIGN - 1, &off))
        return false;
    off &= ~(uint64_t)(RT_ALIGN - 1);
    if (__builtin_add_overflow(off, bytes, end))
        return false;
    *out_off = off;
    return true;
}

/* Size of buffer b at the limits, or an error for negative / overflowing. */
static msac_status eval_size(const PlanBuffer *b, const PlanExpr *e, const char *what, int64_t B, int64_t S,
                             int64_t C, int64_t *out)
{
    if (!plan_expr_eval_checked(e, B, S, C, out))
        return status_make(MSAC_ERR_BAD_PLAN, "plan: %s buffer \"%s\": %s overflows at batch=%lld seq=%lld ctx=%lld",
                           kind_names[b->kind], b->name, what, (long long)B, (long long)S, (long long)C);
    if (*out < 0)
        return status_make(MSAC_ERR_BAD_PLAN, "plan: %s buffer \"%s\": %s is %lld at batch=%lld seq=%lld ctx=%lld",
                           kind_names[b->kind], b->name, what, (long long)*out, (long long)B, (long long)S,
                           (long long)C);
    return NULL;
}

static msac_status too_big(const msac_plan *plan, int max_batch, int max_seq, int max_ctx)
{
    (void)plan;
    return status_make(MSAC_ERR_OUT_OF_MEMORY,
                       "plan needs more than 2^64 bytes of device memory at max_batch=%d max_seq=%d max_ctx=%d",
                       max_batch, max_seq, max_ctx);
}

msac_status rt_layout_compute(const msac_plan *plan, int max_batch, int max_seq, int max_ctx, RtLayout *out)
{
    memset(out, 0, sizeof *out);
    if (max_batch < 1 || max_seq < 1 || max_ctx < 1)
        return status_make(MSAC_ERR_INVALID_ARGUMENT,
                           "limits must be >= 1 (got max_batch=%d max_seq=%d max_ctx=%d)", max_batch, max_seq,
                           max_ctx);
    const Plan *p = plan->p;
    RtLayout l = {0};
    l.weight_off = calloc(p->nweights ? p->nweights : 1, sizeof *l.weight_off);
    l.weight_bytes = calloc(p->nweights ? p->nweights : 1, sizeof *l.weight_bytes);
    l.buf_off = calloc(p->nbuffers ? p->nbuffers : 1, sizeof *l.buf_off);
    l.buf_size = calloc(p->nbuffers ? p->nbuffers : 1, sizeof *l.buf_size);
    if (!l.weight_off || !l.weight_bytes || !l.buf_off || !l.buf_size) {
        rt_layout_free(&l);
        return status_oom();
    }
    msac_status st = NULL;
    uint64_t end = 0;
    for (uint32_t i = 0; i < p->nweights; i++) {
        const PlanWeight *w = &p->weights[i];
        l.weight_bytes[i] = rt_weight_numel(w) * rt_dtype_size(w->dtype); /* < 2^53: plan_read bounds numel */
        if (!reserve(&end, l.weight_bytes[i], &l.weight_off[i])) {
            st = too_big(plan, max_batch, max_seq, max_ctx);
            goto fail;
        }
    }
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const PlanBuffer *b = &p->buffers[i];
        if (b->kind == PBUF_WEIGHT) {
            l.buf_off[i] = l.weight_off[b->index];
            l.buf_size[i] = l.weight_bytes[b->index];
        } else if (b->kind != PBUF_WORKSPACE) {
            int64_t bytes;
            if ((st = eval_size(b, &b->bytes, "size", max_batch, max_seq, max_ctx, &bytes)))
                goto fail;
            l.buf_size[i] = (uint64_t)bytes;
            if (!reserve(&end, (uint64_t)bytes, &l.buf_off[i])) {
                st = too_big(plan, max_batch, max_seq, max_ctx);
                goto fail;
            }
        }
    }
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const PlanBuffer *b = &p->buffers[i];
        if (b->kind != PBUF_WORKSPACE)
            continue;
        int64_t bytes, off;
        uint64_t top;
        if ((st = eval_size(b, &b->bytes, "size", max_batch, max_seq, max_ctx, &bytes)) ||
            (st = eval_size(b, &b->offset, "offset", max_batch, max_seq, max_ctx, &off)))
            goto fail;
        if (__builtin_add_overflow((uint64_t)off, (uint64_t)bytes, &top)) {
            st = too_big(plan, max_batch, max_seq, max_ctx);
            goto fail;
        }
        if (top > l.arena_size)
            l.arena_size = top;
    }
    if (!reserve(&end, l.arena_size, &l.arena_off)) {
        st = too_big(plan, max_batch, max_seq, max_ctx);
        goto fail;
    }
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (p->buffers[i].kind == PBUF_WORKSPACE)
            l.buf_off[i] = l.arena_off;
    /* Round the total up too, and never ask the driver for 0 bytes. */
    uint64_t total_off;
    if (!reserve(&end, 0, &total_off)) {
        st = too_big(plan, max_batch, max_seq, max_ctx);
        goto fail;
    }
    l.total = total_off ? total_off : RT_ALIGN;
    *out = l;
    return NULL;
fail:
    rt_layout_free(&l);
    return st;
}

msac_status rt_call_buffers(const Plan *p, const RtLayout *l, uint64_t base, int64_t batch, int64_t seq,
                            int64_t ctx, uint64_t *bufptr, uint64_t *bufsize)
{
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const PlanBuffer *b = &p->buffers[i];
        if (b->kind != PBUF_WORKSPACE) {
            bufptr[i] = base + l->buf_off[i];
            bufsize[i] = l->buf_size[i];
            continue;
        }
        int64_t bytes, off;
        RT_RETURN_IF_ERROR(eval_size(b, &b->bytes, "size", batch, seq, ctx, &bytes));
        RT_RETURN_IF_ERROR(eval_size(b, &b->offset, "offset", batch, seq, ctx, &off));
        if ((uint64_t)off > l->arena_size || (uint64_t)bytes > l->arena_size - (uint64_t)off)
            return status_make(MSAC_ERR_BAD_PLAN,
                               "plan: workspace buffer \"%s\" at batch=%lld seq=%lld ctx=%lld spans bytes "
                               "[%llu, %llu) of a %llu-byte arena",
                               b->name, (long long)batch, (long long)seq, (long long)ctx, (unsigned long long)off,
                               (unsigned long long)off + (unsigned long long)bytes,
                               (unsigned long long)l->arena_size);
        bufptr[i] = base + l->arena_off + (uint64_t)off;
        bufsize[i] = (uint64_t)bytes;
    }
    return NULL;
}

msac_status rt_state_rows(const Plan *p, int64_t max_ctx, uint64_t *out_row_bytes)
{
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const PlanBuffer *b = &p->buffers[i];
        out_row_bytes[i] = 0;
        if (b->kind != PBUF_STATE)
            continue;
        const PlanExpr *e = &b->bytes;
        if (e->div != 1 || e->c[0] || e->c[2] || e->c[3] || e->c[4]) {
            char text[128];
            plan_expr_format(e, text, sizeof text);
            return status_make(MSAC_ERR_UNSUPPORTED,
                               "plan: state buffer \"%s\" (bytes %s) is not laid out per sequence; running some rows "
                               "of a session alone needs bytes = c*batch + k*batch*ctx",
                               b->name, text);
        }
        int64_t row;
        if (!plan_expr_eval_checked(e, 1, 1, max_ctx, &row) || row < 0)
            return status_make(MSAC_ERR_BAD_PLAN, "plan: state buffer \"%s\": one row's size overflows at ctx=%lld",
                               b->name, (long long)max_ctx);
        out_row_bytes[i] = (uint64_t)row;
    }
    for (uint32_t g = 0; g < p->nprograms; g++) {
        const PlanProgram *pr = &p->programs[g];
        for (uint32_t j = 0; j < pr->nlaunch; j++) {
            const PlanLaunch *l = &pr->launch[j];
            for (uint32_t a = 0; a < l->nargs; a++) {
                const PlanArg *arg = &l->args[a];
                if (arg->kind != PARG_BUF || p->buffers[arg->buf].kind != PBUF_STATE)
                    continue;
                const int64_t *c = arg->expr.c;
                int64_t off = -1;
                bool constant = !c[1] && !c[2] && !c[3] && !c[4] && !c[5];
                if (!constant || !plan_expr_eval_checked(&arg->expr, 0, 0, 0, &off) || off < 0 ||
                    (off > 0 && (uint64_t)off >= out_row_bytes[arg->buf]))
                    return status_make(MSAC_ERR_UNSUPPORTED,
                                       "plan: %s launch %u (kernel %s) argument %u points into state \"%s\" at an "
                                       "offset that is not inside its first row; running some rows of a session "
                                       "alone is not possible",
                                       pr->name, j, p->kernels[l->kernel].name, a, p->buffers[arg->buf].name);
            }
        }
    }
    return NULL;
}

msac_status rt_call_shift_rows(const Plan *p, const uint64_t *row_bytes, int row, uint64_t *bufptr,
                               uint64_t *bufsize)
{
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        if (p->buffers[i].kind != PBUF_STATE)
            continue;
        uint64_t shift;
        if (row < 0 || __builtin_mul_overflow((uint64_t)row, row_bytes[i], &shift) || shift > bufsize[i])
            return status_make(MSAC_ERR_INVALID_ARGUMENT,
                               "row %d is outside state buffer \"%s\" (%llu bytes, %llu per row)", row,
                               p->buffers[i].name, (unsigned long long)bufsize[i], (unsigned long long)row_bytes[i]);
        bufptr[i] += shift;
        bufsize[i] -= shift;
    }
    return NULL;
}
