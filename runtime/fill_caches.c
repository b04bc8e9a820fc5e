/* fill_caches.c — msac_session_fill_caches: pseudo-random contents for the
 * session's per-token caches (see runtime.h), so that timing a decode step
 * at a long context reads rows that differ. A zeroed cache makes every
 * indexer score equal, and top-k then selects the first k rows: a
 * contiguous gather and the select's all-ties path, neither of which a real
 * context gives. */
#include <stdlib.h>
#include <string.h>

#include "rt_session.h"

enum { FILL_BLOCK = 16 << 20 }; /* bytes of random values uploaded once, then copied device to device */

/* A state buffer sized per cached token (bytes grow with ctx), of a float type. */
static bool is_cache(const PlanBuffer *b)
{
    return b->kind == PBUF_STATE && (b->dtype == PDT_BF16 || b->dtype == PDT_F32) &&
           plan_expr_eval(&b->bytes, 1, 1, 2) != plan_expr_eval(&b->bytes, 1, 1, 1);
}

/* FILL_BLOCK bytes of values uniform in [-1, 1) of dtype `dt`: the seeded init's
 * stream (rt_uniform_at), 2u - 1, kept below 1 when rounded to f32 (the largest
 * f32 below 1 instead), and for bf16 truncated, which never moves away from 0. */
static void random_block(uint8_t *out, uint32_t dt, uint64_t key)
{
    size_t n = dt == PDT_BF16 ? FILL_BLOCK / 2 : FILL_BLOCK / 4;
    for (size_t i = 0; i < n; i++) {
        float v = (float)(2.0 * rt_uniform_at(key, i) - 1.0);
        v = v < 1.0f ? v : 0x1.fffffep-1f;
        if (dt == PDT_F32) {
            ((float *)out)[i] = v;
            continue;
        }
        uint32_t u;
        memcpy(&u, &v, sizeof u);
        ((uint16_t *)out)[i] = (uint16_t)(u >> 16);
    }
}

msac_status msac_session_fill_caches(msac_session *s, uint64_t seed)
{
    if (!s)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_session_fill_caches: session is NULL");
    const CudaApi *cu = &s->dev->cu;
    const Plan *p = s->plan->p;
    msac_status st = NULL;
    uint8_t *host = NULL;
    CUdeviceptr blk[2] = {0, 0}; /* a random block per dtype: [0] bf16, [1] f32 */
    CU_TRY(cu->CtxSetCurrent(s->dev->ctx), "cuCtxSetCurrent");
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        const PlanBuffer *b = &p->buffers[i];
        uint64_t size = s->layout.buf_size[i];
        if (!is_cache(b) || !size)
            continue;
        int k = b->dtype == PDT_F32;
        if (!blk[k]) {
            if (!host && !(host = malloc(FILL_BLOCK))) {
                st = status_make(MSAC_ERR_OUT_OF_MEMORY, "msac_session_fill_caches: %d bytes of host memory", FILL_BLOCK);
                goto fail;
            }
            random_block(host, b->dtype, seed + (uint64_t)k);
            CU_TRY(cu->MemAlloc(&blk[k], FILL_BLOCK), "cuMemAlloc(%d bytes for the cache fill)", FILL_BLOCK);
            CU_TRY(cu->MemcpyHtoDAsync(blk[k], host, FILL_BLOCK, s->stream), "cuMemcpyHtoDAsync(cache fill block)");
            CU_TRY(cu->StreamSynchronize(s->stream), "cuStreamSynchronize(cache fill block)");
        }
        /* block after block; each buffer starts at a different point of the block */
        uint64_t shift = (uint64_t)(i * 4099u * 16u) % FILL_BLOCK;
        for (uint64_t off = 0; off < size;) {
            uint64_t n = size - off < FILL_BLOCK - shift ? size - off : FILL_BLOCK - shift;
            CU_TRY(cu->MemcpyDtoDAsync(s->mem + s->layout.buf_off[i] + off, blk[k] + shift, n, s->stream),
                   "cuMemcpyDtoDAsync(cache %s)", b->name);
            off += n;
            shift = 0;
        }
    }
    CU_TRY(cu->StreamSynchronize(s->stream), "cuStreamSynchronize(after the cache fill)");
fail:
    for (int k = 0; k < 2; k++)
        if (blk[k])
            cu->MemFree(blk[k]);
    free(host);
    return st;
}
