/* k_embed.c — embedding gather: out[r, :] = f32(table[tokens[r], :]); with
 * a norm weight (embed_norm) the row is RMS-normalised first,
 * e = e · rsqrt(mean(e²) + eps) · w; with attr streams = n (mHC) the
 * (normalised) row is stored n times: out [rows, n*D].
 *
 * One block per token row; each thread moves 8 bf16 (16 bytes) per step.
 * With the norm, a first pass sums the squares (per thread, then a warp
 * butterfly, then the warps' sums from shared memory in warp order) and the
 * second pass reads the row again (from L1/L2) and scales it.
 * Args: table (bf16 [V, D]), tokens (i32 [rows]), [norm_w (f32 [D])],
 * out (f32 [rows, n*D]). Grid: rows. Shared memory: 4 bytes per warp with
 * the norm. A token outside [0, V) gives a zero row (the runtime rejects
 * such tokens before launching). */
#include <string.h>

#include "kernels.h"
#include "nvvm.h"

/* The 8 bf16 of table row `src` at element iv, as f32. */
static void load8(KB *kb, V src, V iv, V f[8])
{
    V x = kb_load_vec(kb, kb->bf16, 8, kb_gep(kb, kb->bf16, src, iv), 16);
    for (int k = 0; k < 8; k++)
        f[k] = kb_bf16_to_f32(kb, kb_extract(kb, x, k));
}

bool k_embed(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    const Node *table = n->src[0];
    int64_t vocab = table->dim[0].n, D = table->dim[1].n;
    int threads = (int)node_int(n, "threads", 128);
    int64_t ns = node_int(n, "streams", 1);
    bool norm = n->nsrc > 2;
    float eps = (float)node_float(n, "eps", 1e-5);
    if (table->dtype != DT_BF16 || n->dtype != DT_F32 || D % 8)
        return diag_fail(d, "embed kernel: needs a bf16 table, f32 output and d_model %% 8 == 0");
    if (threads % 32 || threads < 32 || threads > 1024)
        return diag_fail(d, "embed kernel: threads=%d must be a multiple of 32 in 32..1024", threads);
    int warps = threads / 32;
    KB *kb = kb_new(cg->ctx, "embed", (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR}, norm ? 4 : 3, threads);
    V tab = kb_param(kb, 0), tok = kb_param(kb, 1), nw = norm ? kb_param(kb, 2) : NULL;
    V o = kb_param(kb, norm ? 3 : 2);
    V row = nvvm_ctaid_x(kb);
    bool pdl = kl_use_pdl(cg, n);
    if (pdl)
        nvvm_pdl_sync(kb);
    V id = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, tok, row));
    V valid = kb_and(kb, kb_ge(kb, id, kb_i32(kb, 0)), kb_lt(kb, id, kb_i32(kb, vocab)));
    V safe = kb_select(kb, valid, id, kb_i32(kb, 0));
    V src = kb_gep(kb, kb->bf16, tab, kb_mul(kb, kb_to_i64(kb, safe), kb_i64(kb, D)));
    V dst = kb_gep(kb, kb->f32, o, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, D * ns)));
    V start = kb_mul(kb, nvvm_tid_x(kb), kb_i32(kb, 8)), step = kb_i32(kb, threads * 8);
    V inv = NULL;
    if (norm) { /* 1 / rms of the row: every thread ends with the block's sum */
        KVar ss = kb_var(kb, kb->f32, kb_f32(kb, 0));
        KVar i = kb_for(kb, start, kb_i32(kb, D), step);
        {
            V f[8];
            load8(kb, src, kb_get(kb, i), f);
            for (int k = 0; k < 8; k++)
                kb_set(kb, ss, kb_fma(kb, f[k], f[k], kb_get(kb, ss)));
        }
        kb_endfor(kb);
        V part = nvvm_warp_sum(kb, kb_get(kb, ss)), red = kb_smem(kb, kb_i32(kb, 0));
        kb_if(kb, kb_eq(kb, nvvm_lane(kb), kb_i32(kb, 0)));
        kb_store(kb, part, kb_gep(kb, kb->f32, red, nvvm_warp(kb)));
        kb_endif(kb);
        nvvm_bar_sync(kb);
        V tot = kb_f32(kb, 0);
        for (int w = 0; w < warps; w++) /* warp order: the same sum in every thread */
            tot = kb_add(kb, tot, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, red, kb_i32(kb, w))));
        inv = kb_rsqrt(kb, kb_add(kb, kb_mul(kb, tot, kb_f32(kb, 1.0 / (double)D)), kb_f32(kb, eps)));
    }
    KVar i = kb_for(kb, start, kb_i32(kb, D), step);
    {
        V iv = kb_get(kb, i);
        V f[8], wv[2] = {NULL, NULL};
        load8(kb, src, iv, f);
        if (norm)
            for (int h = 0; h < 2; h++)
                wv[h] = kb_load_vec(kb, kb->f32, 4, kb_gep(kb, kb->f32, nw, kb_add(kb, iv, kb_i32(kb, 4 * h))), 16);
        V lo = LLVMGetUndef(LLVMVectorType(kb->f32, 4)), hi = lo;
        for (int k = 0; k < 8; k++) {
            V v = f[k];
            if (norm) /* (e · inv) · w, the reference's order */
                v = kb_mul(kb, kb_mul(kb, v, inv), kb_extract(kb, wv[k / 4], k % 4));
            if (k < 4)
                lo = LLVMBuildInsertElement(kb->b, lo, v, kb_i32(kb, k), "");
            else
                hi = LLVMBuildInsertElement(kb->b, hi, v, kb_i32(kb, k - 4), "");
        }
        V zero = LLVMConstNull(LLVMVectorType(kb->f32, 4));
        lo = kb_select(kb, valid, lo, zero);
        hi = kb_select(kb, valid, hi, zero);
        for (int64_t k = 0; k < ns; k++) { /* each stream's copy */
            V sd = kb_gep(kb, kb->f32, dst, kb_i32(kb, k * D));
            kb_store_vec(kb, lo, kb_gep(kb, kb->f32, sd, iv), 16);
            kb_store_vec(kb, hi, kb_gep(kb, kb->f32, sd, kb_add(kb, iv, kb_i32(kb, 4))), 16);
        }
    }
    kb_endfor(kb);
    char name[64];
    snprintf(name, sizeof name, "embed_d%lld%s", (long long)D, norm ? "_norm" : "");
    if (ns > 1)
        snprintf(name + strlen(name), sizeof name - strlen(name), "_x%lld", (long long)ns);
    KLaunch *l = kout_add(out, name, (unsigned)threads, norm ? (unsigned)(4 * warps) : 0);
    kl_param(l, "threads", threads);
    kl_param(l, "pdl", pdl);
    l->grid[0] = node_rows_expr(n);
    /* bf16 row in (read twice with the norm, the second time from cache), f32 rows out, the token id */
    l->bytes = sym_add(sym_scale(node_rows_expr(n), D * (2 + 4 * ns) + 4), sym_const(norm ? 4 * D : 0));
    if (norm)
        l->flops = sym_scale(node_rows_expr(n), 4 * D);
    kl_arg_src(l, 0);
    kl_arg_src(l, 1);
    if (norm)
        kl_arg_src(l, 2);
    kl_arg_out(l);
    return kb_emit_ptx(cg, kb, &l->ptx, d);
}
