/* k_hybrid.c — the hybrid layer's per-token gate (op hybrid_mix), one launch:
 * a block per token r (128 threads):
 *   logit = b_g + Σ_i w_g[i]·h[r,i]     threads over i, fp32 fma, then a warp
 *                                       sum and the 4 warps' partials added in
 *                                       warp order (deterministic)
 *   g = sigmoid(logit)                  ex2.approx + rcp.approx
 *   out[r,i] = g·a[r,i] + (1−g)·c[r,i] (+ residual[r,i])
 * or, with the mhc epilogue (fuse-mhc; n streams), that is o[r,i] and
 *   out[r, j·D + i] = H_post[r,j]·o[r,i] + Σ_q H_res[r,j,q]·xs[r, q·D + i]
 * (mhc_epi.h: the row's coefficients once, then per i the n streams in and
 * out). The gate's dot is done here rather than as an N = 1 matmul: h's row
 * is read once more (bf16, D·2 bytes per token), and the mix costs no pass
 * besides this one, which also takes the block's residual add or the mHC
 * stream update.
 * Args: h, w_g, b_g, a, c, [residual,] [xs, coef (mhc),] out, rows. Grid: rows. */
#include "kernels.h"
#include "mhc_epi.h"
#include "nvvm.h"

enum { HM_THREADS = 128, HM_WARPS = HM_THREADS / 32 };

bool k_hybrid_mix(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    int64_t D = n->src[0]->dim[2].n;
    bool res = hybrid_mix_res_src(n) >= 0;
    int ns = mhc_epi_streams(n); /* the mHC epilogue's streams, or 0 */
    KParamKind pk[10];
    int np = 0;
    for (int i = 0; i < n->nsrc + 1; i++) /* the srcs, out */
        pk[np++] = KP_PTR;
    pk[np++] = KP_I32;
    KB *kb = kb_new(cg->ctx, "hybrid_mix", pk, np, HM_THREADS);
    V hp = kb_param(kb, 0), wp = kb_param(kb, 1), bp = kb_param(kb, 2), ap = kb_param(kb, 3), cp = kb_param(kb, 4);
    int ai = 5;
    V rp = res ? kb_param(kb, ai++) : NULL;
    V xs = ns ? kb_param(kb, ai++) : NULL, coef = ns ? kb_param(kb, ai++) : NULL;
    V op = kb_param(kb, ai++), rows = kb_param(kb, ai++);
    V r = nvvm_ctaid_x(kb), tid = nvvm_tid_x(kb);
    V part = kb_smem(kb, kb_i32(kb, 0)); /* f32 [HM_WARPS] */
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V base = kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, D));
        KVar acc = kb_var(kb, kb->f32, kb_f32(kb, 0));
        KVar i = kb_for(kb, tid, kb_i32(kb, D), kb_i32(kb, HM_THREADS));
        {
            V iv = kb_to_i64(kb, kb_get(kb, i));
            V hv = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, hp, kb_add(kb, base, iv))));
            V wv = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, wp, iv)));
            kb_set(kb, acc, kb_fma(kb, wv, hv, kb_get(kb, acc)));
        }
        kb_endfor(kb);
        V ws = nvvm_warp_sum(kb, kb_get(kb, acc));
        kb_if(kb, kb_eq(kb, nvvm_lane(kb), kb_i32(kb, 0)));
        kb_store(kb, ws, kb_gep(kb, kb->f32, part, nvvm_warp(kb)));
        kb_endif(kb);
        nvvm_bar_sync(kb);
        V logit = kb_load(kb, kb->f32, bp);
        for (int w = 0; w < HM_WARPS; w++)
            logit = kb_add(kb, logit, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, part, kb_i32(kb, w))));
        V g = kb_sigmoid(kb, logit), g1 = kb_sub(kb, kb_f32(kb, 1.0), g);
        V hc[MHC_EPI_MAX_COEF];
        if (ns) /* row r's H_post, H_res: once, before the columns */
            mhc_epi_coef(kb, ns, coef, r, hc);
        KVar j = kb_for(kb, tid, kb_i32(kb, D), kb_i32(kb, HM_THREADS));
        {
            V at = kb_add(kb, base, kb_to_i64(kb, kb_get(kb, j)));
            V av = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ap, at));
            V cv = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cp, at));
            V v = kb_add(kb, kb_mul(kb, g, av), kb_mul(kb, g1, cv));
            if (res)
                v = kb_add(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, rp, at)), v);
            if (ns) /* v is o[r, j]: the n streams of row r at column j */
                mhc_epi_update(kb, ns, D, hc, v, xs, op,
                               kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, ns * D)), kb_to_i64(kb, kb_get(kb, j))));
            else
                kb_store(kb, v, kb_gep(kb, kb->f32, op, at));
        }
        kb_endfor(kb);
    }
    kb_endif(kb);
    char name[64], epi[MHC_EPI_TAG];
    snprintf(name, sizeof name, "hybrid_mix_d%lld%s%s", (long long)D, res ? "_res" : "", mhc_epi_tag(ns, epi));
    KLaunch *l = kout_add(out, name, HM_THREADS, 4 * HM_WARPS);
    SymExpr rows_e = node_rows_expr(n);
    l->grid[0] = rows_e;
    /* cost: the gate's dot and the mix per element; h (bf16), a, c, (residual), out (f32) once, w_g and b_g;
     * with mhc the n streams in and out and the coefficients instead of out */
    l->flops = sym_scale(rows_e, 2 * D + 3 * D + (res ? D : 0) + (ns ? mhc_epi_flops(ns, D) : 0));
    l->bytes = sym_add(sym_scale(rows_e, D * (2 + 4 * 2 + (res ? 4 : 0)) + (ns ? mhc_epi_bytes(ns, D) : 4 * D)),
                       sym_const(2 * D + 4));
    for (int s = 0; s < n->nsrc; s++)
        kl_arg_src(l, s);
    kl_arg_out(l);
    kl_arg_i32(l, rows_e);
    return kb_emit_ptx(cg, kb, &l->ptx, d);
}
