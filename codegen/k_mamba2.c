/* k_mamba2.c — the fused Mamba2 mixer (op mamba2_mixer), two launches per
 * call in prefill and in decode:
 *
 *   1. mamba2_scan (prefill) — one block per (head, sequence), walking the
 *      sequence chunk by chunk with the state S (headdim × d_state, fp32) in
 *      shared memory. Per chunk: causal conv1d + bias + SiLU of the chunk's
 *      x, B, C channels (history from the conv ring state at the start),
 *      dt = clamp(softplus(dt + dt_bias)), cum = cumsum(dt·A), then the SSD
 *      chunk form
 *          y_t = exp(cum_t) C_t·S + Σ_{s≤t} (C_t·B_s) exp(cum_t − cum_s) dt_s x_s + D x_t
 *          S  ← exp(cum_T) S + Σ_s exp(cum_T − cum_s) dt_s x_s B_sᵀ
 *      and y·silu(z) (or y, with norm_before_gate) stored as bf16.
 *      mamba2_step (decode) — one block per (head, sequence): conv from the
 *      ring, S ← exp(dt·A) S + dt x Bᵀ, y = S C + D x, read and written once.
 *   2. mamba2_norm — the grouped RMSNorm over all heads of a token (needs
 *      every head, hence a second launch), in place; its group-0 warps also
 *      store the last d_conv−1 raw xBC inputs of each sequence into the conv
 *      ring (after launch 1 has read the old history).
 *
 * Conv ring: state [B, conv_dim, d_conv], slot p mod d_conv holds the raw
 * input of position p; decode reads slots pos−1.. and writes slot pos, which
 * nobody reads in that step. The chunk math is SIMT fp32 in this version. */
#include <string.h>

#include "kernels.h"
#include "mamba2_common.h"
#include "nvvm.h"

/* ---- launch 1, prefill: the chunked scan ---- */
static bool emit_scan(Codegen *cg, const Mx *m, int T, int threads, char **ptx, Diag *d)
{
    /* shared memory (floats): xbc[T][CP] | dts[T] | cum[T] | wdec[T] | S[P][N+1] | cb[T][T] */
    int o_xbc = 0, o_dt = o_xbc + T * (int)m->CP, o_cum = o_dt + T, o_wd = o_cum + T, o_S = o_wd + T;
    int NP = (int)m->N + 1, o_cb = o_S + (int)m->P * NP;
    KB *kb = kb_new(cg->ctx, "mamba2_scan",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32},
                    11, threads);
    V raw = kb_param(kb, 0), cw = kb_param(kb, 1), cbias = kb_param(kb, 2), dtb = kb_param(kb, 3);
    V alog = kb_param(kb, 4), Dp = kb_param(kb, 5), ring = kb_param(kb, 6), ssm = kb_param(kb, 7);
    V posp = kb_param(kb, 8), out = kb_param(kb, 9), seq = kb_param(kb, 10);
    V tid = nvvm_tid_x(kb), h = nvvm_ctaid_x(kb), b = nvvm_ctaid_y(kb);
    V pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
    V A = kb_neg(kb, kb_exp(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, alog, h))));
    V Dh = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, Dp, h));
    V sbase = kb_mul(kb, kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->H)), h)), kb_i64(kb, m->P * m->N));
    V PN = kb_i32(kb, m->P * m->N);

    KVar i = kb_for(kb, tid, PN, kb_i32(kb, threads)); /* S ← initial state */
    {
        V iv = kb_get(kb, i), p = kb_div(kb, iv, kb_i32(kb, m->N)), nn = kb_rem(kb, iv, kb_i32(kb, m->N));
        V s = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ssm, kb_add(kb, sbase, kb_to_i64(kb, iv))));
        kb_store(kb, s, smem_f32(kb, o_S, kb_add(kb, kb_mul(kb, p, kb_i32(kb, NP)), nn)));
    }
    kb_endfor(kb);

    KVar c0 = kb_for(kb, kb_i32(kb, 0), seq, kb_i32(kb, T));
    {
        V t0 = kb_get(kb, c0);
        V tc = kb_min(kb, kb_i32(kb, T), kb_sub(kb, seq, t0)); /* valid rows in this chunk */
        nvvm_bar_sync(kb);                                      /* previous chunk done with smem */
        /* A: conv + silu of x, B, C for the chunk */
        KVar e = kb_for(kb, tid, kb_i32(kb, T * m->CP), kb_i32(kb, threads));
        {
            V ev = kb_get(kb, e), t = kb_div(kb, ev, kb_i32(kb, m->CP)), ch = kb_rem(kb, ev, kb_i32(kb, m->CP));
            KVar v = kb_var(kb, kb->f32, kb_f32(kb, 0));
            kb_if(kb, kb_lt(kb, t, tc));
            kb_set(kb, v, conv_silu(kb, m, raw, cw, cbias, ring, b, pos, seq, kb_add(kb, t0, t), head_channel(kb, m, h, ch)));
            kb_endif(kb);
            kb_store(kb, kb_get(kb, v), smem_f32(kb, o_xbc, ev));
        }
        kb_endfor(kb);
        /* B: dt and dt*A per row */
        kb_if(kb, kb_lt(kb, tid, kb_i32(kb, T)));
        {
            KVar v = kb_var(kb, kb->f32, kb_f32(kb, 0));
            kb_if(kb, kb_lt(kb, tid, tc));
            kb_set(kb, v, dt_value(kb, m, raw, dtb, h, kb_add(kb, kb_mul(kb, b, seq), kb_add(kb, t0, tid))));
            kb_endif(kb);
            kb_store(kb, kb_get(kb, v), smem_f32(kb, o_dt, tid));
            kb_store(kb, kb_mul(kb, kb_get(kb, v), A), smem_f32(kb, o_cum, tid));
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
        kb_if(kb, kb_eq(kb, tid, kb_i32(kb, 0))); /* inclusive cumsum (T is small) */
        {
            KVar acc = kb_var(kb, kb->f32, kb_f32(kb, 0));
            KVar t = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, T), kb_i32(kb, 1));
            V p = smem_f32(kb, o_cum, kb_get(kb, t));
            kb_set(kb, acc, kb_add(kb, kb_get(kb, acc), kb_load(kb, kb->f32, p)));
            kb_store(kb, kb_get(kb, acc), p);
            kb_endfor(kb);
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
        V cumT = kb_load(kb, kb->f32, smem_f32(kb, o_cum, kb_i32(kb, T - 1)));
        kb_if(kb, kb_lt(kb, tid, kb_i32(kb, T))); /* wdec[s] = exp(cum_T - cum_s) dt_s */
        kb_store(kb,
                 kb_mul(kb, kb_exp(kb, kb_sub(kb, cumT, kb_load(kb, kb->f32, smem_f32(kb, o_cum, tid)))),
                        kb_load(kb, kb->f32, smem_f32(kb, o_dt, tid))),
                 smem_f32(kb, o_wd, tid));
        kb_endif(kb);
        /* C: cb[t][s] = (C_t·B_s) exp(cum_t - cum_s) dt_s for s <= t */
        KVar q = kb_for(kb, tid, kb_i32(kb, T * T), kb_i32(kb, threads));
        {
            V qv = kb_get(kb, q), t = kb_div(kb, qv, kb_i32(kb, T)), s = kb_rem(kb, qv, kb_i32(kb, T));
            KVar v = kb_var(kb, kb->f32, kb_f32(kb, 0));
            kb_if(kb, kb_le(kb, s, t));
            {
                V cr = kb_add(kb, kb_mul(kb, t, kb_i32(kb, m->CP)), kb_i32(kb, m->P + m->N));
                V br = kb_add(kb, kb_mul(kb, s, kb_i32(kb, m->CP)), kb_i32(kb, m->P));
                KVar dot = kb_var(kb, kb->f32, kb_f32(kb, 0));
                KVar k = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, m->N), kb_i32(kb, 1));
                V kv = kb_get(kb, k);
                kb_set(kb, dot, kb_fma(kb, kb_load(kb, kb->f32, smem_f32(kb, o_xbc, kb_add(kb, cr, kv))),
                                       kb_load(kb, kb->f32, smem_f32(kb, o_xbc, kb_add(kb, br, kv))), kb_get(kb, dot)));
                kb_endfor(kb);
                V dec = kb_exp(kb, kb_sub(kb, kb_load(kb, kb->f32, smem_f32(kb, o_cum, t)),
                                          kb_load(kb, kb->f32, smem_f32(kb, o_cum, s))));
                kb_set(kb, v, kb_mul(kb, kb_mul(kb, kb_get(kb, dot), dec), kb_load(kb, kb->f32, smem_f32(kb, o_dt, s))));
            }
            kb_endif(kb);
            kb_store(kb, kb_get(kb, v), smem_f32(kb, o_cb, qv));
        }
        kb_endfor(kb);
        nvvm_bar_sync(kb);
        /* D: y[t][p] = exp(cum_t) C_t·S_p + Σ_s cb[t][s] x[s][p] + D x[t][p] */
        KVar r = kb_for(kb, tid, kb_i32(kb, T * m->P), kb_i32(kb, threads));
        {
            V rv = kb_get(kb, r), t = kb_div(kb, rv, kb_i32(kb, m->P)), p = kb_rem(kb, rv, kb_i32(kb, m->P));
            kb_if(kb, kb_lt(kb, t, tc));
            {
                V cr = kb_add(kb, kb_mul(kb, t, kb_i32(kb, m->CP)), kb_i32(kb, m->P + m->N));
                V sr = kb_mul(kb, p, kb_i32(kb, NP));
                KVar a1 = kb_var(kb, kb->f32, kb_f32(kb, 0));
                KVar k = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, m->N), kb_i32(kb, 1));
                V kv = kb_get(kb, k);
                kb_set(kb, a1, kb_fma(kb, kb_load(kb, kb->f32, smem_f32(kb, o_xbc, kb_add(kb, cr, kv))),
                                      kb_load(kb, kb->f32, smem_f32(kb, o_S, kb_add(kb, sr, kv))), kb_get(kb, a1)));
                kb_endfor(kb);
                KVar a2 = kb_var(kb, kb->f32, kb_f32(kb, 0));
                KVar s = kb_for(kb, kb_i32(kb, 0), kb_add(kb, t, kb_i32(kb, 1)), kb_i32(kb, 1));
                V sv = kb_get(kb, s);
                kb_set(kb, a2, kb_fma(kb, kb_load(kb, kb->f32, smem_f32(kb, o_cb, kb_add(kb, kb_mul(kb, t, kb_i32(kb, T)), sv))),
                                      kb_load(kb, kb->f32, smem_f32(kb, o_xbc, kb_add(kb, kb_mul(kb, sv, kb_i32(kb, m->CP)), p))),
                                      kb_get(kb, a2)));
                kb_endfor(kb);
                V xt = kb_load(kb, kb->f32, smem_f32(kb, o_xbc, kb_add(kb, kb_mul(kb, t, kb_i32(kb, m->CP)), p)));
                V y = kb_add(kb, kb_mul(kb, kb_exp(kb, kb_load(kb, kb->f32, smem_f32(kb, o_cum, t))), kb_get(kb, a1)),
                             kb_fma(kb, Dh, xt, kb_get(kb, a2)));
                store_y(kb, m, raw, out, kb_add(kb, kb_mul(kb, b, seq), kb_add(kb, t0, t)), h, p, y);
            }
            kb_endif(kb);
        }
        kb_endfor(kb);
        nvvm_bar_sync(kb);
        /* E: S = exp(cum_T) S + Σ_s wdec[s] x[s][p] B[s][n] */
        V decT = kb_exp(kb, cumT);
        KVar u = kb_for(kb, tid, PN, kb_i32(kb, threads));
        {
            V uv = kb_get(kb, u), p = kb_div(kb, uv, kb_i32(kb, m->N)), nn = kb_rem(kb, uv, kb_i32(kb, m->N));
            KVar acc = kb_var(kb, kb->f32, kb_f32(kb, 0));
            KVar s = kb_for(kb, kb_i32(kb, 0), tc, kb_i32(kb, 1));
            V sv = kb_get(kb, s), row = kb_mul(kb, sv, kb_i32(kb, m->CP));
            V xw = kb_mul(kb, kb_load(kb, kb->f32, smem_f32(kb, o_wd, sv)),
                          kb_load(kb, kb->f32, smem_f32(kb, o_xbc, kb_add(kb, row, p))));
            kb_set(kb, acc, kb_fma(kb, xw, kb_load(kb, kb->f32, smem_f32(kb, o_xbc, kb_add(kb, row, kb_add(kb, nn, kb_i32(kb, m->P))))),
                                   kb_get(kb, acc)));
            kb_endfor(kb);
            V sp = smem_f32(kb, o_S, kb_add(kb, kb_mul(kb, p, kb_i32(kb, NP)), nn));
            kb_store(kb, kb_fma(kb, decT, kb_load(kb, kb->f32, sp), kb_get(kb, acc)), sp);
        }
        kb_endfor(kb);
    }
    kb_endfor(kb);
    nvvm_bar_sync(kb);
    KVar j = kb_for(kb, tid, PN, kb_i32(kb, threads)); /* final state out */
    {
        V jv = kb_get(kb, j), p = kb_div(kb, jv, kb_i32(kb, m->N)), nn = kb_rem(kb, jv, kb_i32(kb, m->N));
        V s = kb_load(kb, kb->f32, smem_f32(kb, o_S, kb_add(kb, kb_mul(kb, p, kb_i32(kb, NP)), nn)));
        kb_store(kb, s, kb_gep(kb, kb->f32, ssm, kb_add(kb, sbase, kb_to_i64(kb, jv))));
    }
    kb_endfor(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---- launch 1, decode: one state step ----
 * Block = 4 warps over PB = P/psplit state rows of one (head, sequence):
 * grid (H·psplit, batch), so even batch 1 fills the GPU. Each warp owns
 * PB/4 rows; lane l holds the float4 columns 4l, 4l+128, ... of each row, so
 * a warp reads and writes whole 512-byte row segments, and every row's loads
 * are issued before any is used. */
enum { STEP_THREADS = 128, STEP_WARPS = 4, STEP_PREFETCH_MAX_BATCH = 8 };

static bool emit_step(Codegen *cg, const Mx *m, int psplit, bool ring_write, bool pdl, char **ptx, Diag *d)
{
    int PB = (int)m->P / psplit, RW = PB / STEP_WARPS, Q = (int)m->N / 4, J = (Q + 31) / 32;
    KB *kb = kb_new(cg->ctx, "mamba2_step",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR},
                    10, STEP_THREADS);
    V raw = kb_param(kb, 0), cw = kb_param(kb, 1), cbias = kb_param(kb, 2), dtb = kb_param(kb, 3);
    V alog = kb_param(kb, 4), Dp = kb_param(kb, 5), ring = kb_param(kb, 6), ssm = kb_param(kb, 7);
    V posp = kb_param(kb, 8), out = kb_param(kb, 9);
    V tid = nvvm_tid_x(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb), b = nvvm_ctaid_y(kb);
    V h = kb_div(kb, nvvm_ctaid_x(kb), kb_i32(kb, psplit));
    V p0 = kb_mul(kb, kb_rem(kb, nvvm_ctaid_x(kb), kb_i32(kb, psplit)), kb_i32(kb, PB));
    V pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
    V one = kb_i32(kb, 1), zero = kb_i32(kb, 0);
    /* this block's state rows: in flight before anything waits on the previous kernel */
    V sbase = kb_mul(kb, kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->H)), h)), kb_i64(kb, m->P * m->N));
    T v4 = LLVMVectorType(kb->f32, 4);
    V sp[16][8], s4[16][8];
    for (int r = 0; r < RW; r++) /* issue every load first */
        for (int j = 0; j < J; j++) {
            V q = kb_min(kb, kb_add(kb, lane, kb_i32(kb, 32 * j)), kb_i32(kb, Q - 1));
            V pl = kb_add(kb, kb_mul(kb, warp, kb_i32(kb, RW)), kb_i32(kb, r));
            V off = kb_add(kb, sbase, kb_to_i64(kb, kb_add(kb, kb_mul(kb, kb_add(kb, p0, pl), kb_i32(kb, m->N)),
                                                             kb_mul(kb, q, kb_i32(kb, 4)))));
            sp[r][j] = kb_gep(kb, kb->f32, ssm, off);
            s4[r][j] = kb_load_vec(kb, kb->f32, 4, sp[r][j], 16);
        }
    if (pdl) {
        /* the weights and conv history the step reads after the wait, into L1 meanwhile:
         * conv weights, bias and ring rows of the block's x channels and its group's B, C
         * channels, and the head's dt bias, A_log, D (nothing here is written by the
         * predecessor; the ring slot this step writes is not among those read). Only at
         * small batch: with many sequences the state traffic hides the latency, and the
         * repeated prefetches of the same weights cost more than they save (b64: +4 %) */
        kb_if(kb, kb_le(kb, nvvm_nctaid_y(kb), kb_i32(kb, STEP_PREFETCH_MAX_BATCH)));
        /* the first channel of each span: local channels p0 (x), P (B), P + N (C) */
        V xch = head_channel(kb, m, h, p0);
        V bch = head_channel(kb, m, h, kb_i32(kb, m->P));
        V cch = head_channel(kb, m, h, kb_i32(kb, m->P + m->N));
        V rb = kb_mul(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), kb_i32(kb, m->W)); /* ring row 0 of sequence b */
        for (int s = 0; s < 3; s++) {
            V ch = s == 0 ? xch : s == 1 ? bch : cch;
            int64_t n = s == 0 ? PB : m->N;
            V cw0 = kb_mul(kb, ch, kb_i32(kb, m->W));
            nvvm_prefetch_span_l1(kb, cw, cw0, n * m->W, tid, STEP_THREADS);
            nvvm_prefetch_span_l1(kb, ring, kb_add(kb, rb, cw0), n * m->W, tid, STEP_THREADS);
            nvvm_prefetch_span_l1(kb, cbias, ch, n, tid, STEP_THREADS);
        }
        kb_if(kb, kb_eq(kb, tid, zero));
        for (int s = 0; s < 3; s++)
            nvvm_prefetch_l1(kb, kb_gep(kb, kb->f32, s == 0 ? dtb : s == 1 ? alog : Dp, kb_to_i64(kb, h)));
        kb_endif(kb);
        kb_endif(kb);
        nvvm_pdl_sync(kb);
    }
    /* conv of this block's x channels and its group's B, C channels → smem [x | B | C] */
    KVar e = kb_for(kb, tid, kb_i32(kb, PB + 2 * m->N), kb_i32(kb, STEP_THREADS));
    {
        V ev = kb_get(kb, e);
        V ch = kb_select(kb, kb_lt(kb, ev, kb_i32(kb, PB)), kb_add(kb, p0, ev), kb_add(kb, ev, kb_i32(kb, m->P - PB)));
        V gch = head_channel(kb, m, h, ch);
        kb_store(kb, conv_silu(kb, m, raw, cw, cbias, ring, b, pos, one, zero, gch), smem_f32(kb, 0, ev));
        if (ring_write) {
            /* this token's raw input into ring slot pos: x channels by their block, B and C
             * by the first block of the group; the step reads only the other slots */
            V first = kb_eq(kb, kb_rem(kb, nvvm_ctaid_x(kb), kb_i32(kb, psplit * (m->H / m->G))), zero);
            kb_if(kb, kb_or(kb, kb_lt(kb, ev, kb_i32(kb, PB)), first));
            V x = kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, kb_add(kb, kb_mul(kb, kb_to_i64(kb, b), kb_i64(kb, m->Din)),
                                                                           kb_to_i64(kb, kb_add(kb, gch, kb_i32(kb, m->Di))))));
            V roff = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), gch), kb_i32(kb, m->W)),
                            ring_slot(kb, m, pos));
            kb_store(kb, kb_bf16_to_f32(kb, x), kb_gep(kb, kb->f32, ring, kb_to_i64(kb, roff)));
            kb_endif(kb);
        }
    }
    kb_endfor(kb);
    V dt = dt_value(kb, m, raw, dtb, h, b);
    V dA = kb_exp(kb, kb_mul(kb, dt, kb_neg(kb, kb_exp(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, alog, h))))));
    V Dh = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, Dp, h));
    nvvm_bar_sync(kb);
    for (int r = 0; r < RW; r++) {
        V pl = kb_add(kb, kb_mul(kb, warp, kb_i32(kb, RW)), kb_i32(kb, r));
        V x = kb_load(kb, kb->f32, smem_f32(kb, 0, pl));
        V dtx = kb_mul(kb, dt, x);
        V acc = kb_f32(kb, 0);
        for (int j = 0; j < J; j++) {
            V q = kb_add(kb, lane, kb_i32(kb, 32 * j));
            bool guard = (j + 1) * 32 > Q;
            V valid = kb_lt(kb, q, kb_i32(kb, Q));
            V qc = kb_min(kb, q, kb_i32(kb, Q - 1));
            V nv = LLVMGetUndef(v4);
            V part = kb_f32(kb, 0);
            for (int k = 0; k < 4; k++) {
                V n = kb_add(kb, kb_mul(kb, qc, kb_i32(kb, 4)), kb_i32(kb, k));
                V Bn = kb_load(kb, kb->f32, smem_f32(kb, PB, n));
                V Cn = kb_load(kb, kb->f32, smem_f32(kb, PB + (int)m->N, n));
                V sv = kb_fma(kb, kb_extract(kb, s4[r][j], k), dA, kb_mul(kb, dtx, Bn));
                nv = LLVMBuildInsertElement(kb->b, nv, sv, kb_i32(kb, k), "");
                part = kb_fma(kb, sv, Cn, part);
            }
            if (guard) {
                kb_if(kb, valid);
                kb_store_vec(kb, nv, sp[r][j], 16);
                kb_endif(kb);
                part = kb_select(kb, valid, part, kb_f32(kb, 0));
            } else {
                kb_store_vec(kb, nv, sp[r][j], 16);
            }
            acc = kb_add(kb, acc, part);
        }
        V y = kb_fma(kb, Dh, x, nvvm_warp_sum(kb, acc));
        kb_if(kb, kb_eq(kb, lane, zero));
        store_y(kb, m, raw, out, b, h, kb_add(kb, p0, pl), y);
        kb_endif(kb);
    }
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---- launch 2: grouped RMSNorm in place + conv ring update ---- */
static bool emit_norm(Codegen *cg, const Mx *m, int rows_per_block, char **ptx, Diag *d)
{
    int64_t gs = m->Di / m->G;
    KB *kb = kb_new(cg->ctx, "mamba2_norm",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32}, 7, 32 * rows_per_block);
    V out = kb_param(kb, 0), raw = kb_param(kb, 1), wp = kb_param(kb, 2), ring = kb_param(kb, 3);
    V posp = kb_param(kb, 4), nrows = kb_param(kb, 5), seq = kb_param(kb, 6);
    V lane = nvvm_lane(kb);
    V gw = kb_add(kb, kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, rows_per_block)), nvvm_warp(kb));
    V row = kb_div(kb, gw, kb_i32(kb, m->G)), grp = kb_rem(kb, gw, kb_i32(kb, m->G));
    kb_if(kb, kb_lt(kb, row, nrows));
    {
        V c0 = kb_mul(kb, grp, kb_i32(kb, gs));
        V obase = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Di)), kb_to_i64(kb, c0));
        V zbase = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_to_i64(kb, c0));
        /* 16-byte loads of 8 bf16; held in registers when the group is at most 2048 wide,
         * else read twice (the second time from cache) */
        int nvec = (int)((gs / 8 + 31) / 32);
        bool regs = nvec <= 8;
        V vals[8][8];
        V ss = kb_f32(kb, 0);
        KVar acc = kb_var(kb, kb->f32, kb_f32(kb, 0));
        if (regs) {
            for (int j = 0; j < nvec; j++) {
                V q = kb_add(kb, lane, kb_i32(kb, 32 * j));
                bool guard = (j + 1) * 32 * 8 > gs;
                V qc = guard ? kb_min(kb, q, kb_i32(kb, (int)(gs / 8) - 1)) : q;
                V v = kb_load_vec(kb, kb->bf16, 8, kb_gep(kb, kb->bf16, out, kb_add(kb, obase, kb_to_i64(kb, kb_mul(kb, qc, kb_i32(kb, 8))))), 16);
                for (int e = 0; e < 8; e++) {
                    vals[j][e] = kb_bf16_to_f32(kb, kb_extract(kb, v, e));
                    V sq = kb_mul(kb, vals[j][e], vals[j][e]);
                    ss = kb_add(kb, ss, guard ? kb_select(kb, kb_lt(kb, q, kb_i32(kb, (int)(gs / 8))), sq, kb_f32(kb, 0)) : sq);
                }
            }
        } else {
            KVar i = kb_for(kb, lane, kb_i32(kb, (int)(gs / 8)), kb_i32(kb, 32));
            V v = kb_load_vec(kb, kb->bf16, 8, kb_gep(kb, kb->bf16, out, kb_add(kb, obase, kb_to_i64(kb, kb_mul(kb, kb_get(kb, i), kb_i32(kb, 8))))), 16);
            V part = kb_get(kb, acc);
            for (int e = 0; e < 8; e++) {
                V f = kb_bf16_to_f32(kb, kb_extract(kb, v, e));
                part = kb_fma(kb, f, f, part);
            }
            kb_set(kb, acc, part);
            kb_endfor(kb);
            ss = kb_get(kb, acc);
        }
        V inv = kb_rsqrt(kb, kb_add(kb, kb_mul(kb, nvvm_warp_sum(kb, ss), kb_f32(kb, 1.0 / (double)gs)), kb_f32(kb, m->eps)));
        /* normalise 8 elements at column k0 of the group and store them */
        for (int j = 0; j < (regs ? nvec : 1); j++) {
            KVar it = {0};
            V q;
            bool guard = false;
            if (regs) {
                q = kb_add(kb, lane, kb_i32(kb, 32 * j));
                guard = (j + 1) * 32 * 8 > gs;
                if (guard)
                    kb_if(kb, kb_lt(kb, q, kb_i32(kb, (int)(gs / 8))));
            } else {
                it = kb_for(kb, lane, kb_i32(kb, (int)(gs / 8)), kb_i32(kb, 32));
                q = kb_get(kb, it);
            }
            V k0 = kb_mul(kb, q, kb_i32(kb, 8));
            V op = kb_gep(kb, kb->bf16, out, kb_add(kb, obase, kb_to_i64(kb, k0)));
            V src = regs ? NULL : kb_load_vec(kb, kb->bf16, 8, op, 16);
            V w8 = kb_load_vec(kb, kb->f32, 8, kb_gep(kb, kb->f32, wp, kb_add(kb, c0, k0)), 16);
            V packed = LLVMGetUndef(LLVMVectorType(kb->i32, 4));
            for (int e = 0; e < 8; e += 2) {
                V r[2];
                for (int e2 = 0; e2 < 2; e2++) {
                    V x = regs ? vals[j][e + e2] : kb_bf16_to_f32(kb, kb_extract(kb, src, e + e2));
                    r[e2] = kb_mul(kb, kb_mul(kb, x, inv), kb_extract(kb, w8, e + e2));
                    if (m->nbg) {
                        V zk = kb_add(kb, zbase, kb_to_i64(kb, kb_add(kb, k0, kb_i32(kb, e + e2))));
                        r[e2] = kb_mul(kb, r[e2], kb_silu(kb, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, zk)))));
                    }
                }
                packed = LLVMBuildInsertElement(kb->b, packed, kb_pack_bf16x2(kb, r[0], r[1]), kb_i32(kb, e / 2), "");
            }
            kb_store_vec(kb, packed, op, 16);
            if (regs && guard)
                kb_endif(kb);
            if (!regs)
                kb_endfor(kb);
        }
        /* conv ring: the last W-1 raw inputs of each sequence */
        V b = kb_div(kb, row, seq), t = kb_rem(kb, row, seq);
        kb_if(kb, kb_and(kb, kb_eq(kb, grp, kb_i32(kb, 0)), kb_ge(kb, t, kb_sub(kb, seq, kb_i32(kb, m->W - 1)))));
        {
            V slot = ring_slot(kb, m, kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t));
            V rbase = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_i64(kb, m->Di));
            KVar ch = kb_for(kb, lane, kb_i32(kb, m->CD), kb_i32(kb, 32));
            V cv = kb_get(kb, ch);
            V x = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, kb_add(kb, rbase, kb_to_i64(kb, cv)))));
            V roff = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), cv), kb_i32(kb, m->W)), slot);
            kb_store(kb, x, kb_gep(kb, kb->f32, ring, kb_to_i64(kb, roff)));
            kb_endfor(kb);
        }
        kb_endif(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* The mixer's srcs: 0 zxbcdt, 1 conv_w, 2 conv_b, 3 dt_bias, 4 A_log, 5 D, 6 norm_w,
 * 7 conv_state, 8 ssm_state, 9 pos. */
static bool add_norm_launch(Codegen *cg, const Node *n, const Mx *m, KOut *out, Diag *d)
{
    enum { ROWS = 4 };
    char name[96];
    snprintf(name, sizeof name, "mamba2_norm_di%lld_g%lld%s", (long long)m->Di, (long long)m->G, m->nbg ? "_nbg" : "");
    KLaunch *l = kout_add(out, name, 32 * ROWS, 0);
    kl_param(l, "rows", ROWS);
    SymExpr rows = node_rows_expr(n);
    l->grid[0] = sym_ceildiv(sym_scale(rows, m->G), ROWS);
    l->flops = sym_scale(rows, 6 * m->Di);
    l->bytes = sym_scale(rows, m->Di * 4 + (m->nbg ? m->Di * 2 : 0));
    kl_arg_out(l);
    kl_arg_src(l, 0);
    kl_arg_src(l, 6);
    kl_arg_src(l, 7);
    kl_arg_src(l, 9);
    kl_arg_i32(l, rows);
    kl_arg_i32(l, n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n));
    return emit_norm(cg, m, ROWS, &l->ptx, d);
}

static void state_args(KLaunch *l)
{
    for (int s = 0; s <= 5; s++)
        kl_arg_src(l, s);
    kl_arg_src(l, 7);
    kl_arg_src(l, 8);
    kl_arg_src(l, 9);
    kl_arg_out(l);
}

bool k_mamba2_scan(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    Mx m = mx_of(n);
    int T = (int)node_int(n, "kchunk", 64), threads = (int)node_int(n, "threads", 256);
    int segs = (int)node_int(n, "segs", 1); /* segments per sequence (0: per call); 1 when not lowered with one */
    bool tc = node_int(n, "tc", 1) && scan_tc_supported(&m, cg->target->smem_max) && node_str(n, "scratch", NULL);
    if (tc)
        T = SCAN_TC_CHUNK, threads = SCAN_TC_THREADS; /* the tensor-core scan's fixed tiling */
    if (T < 1 || T > 256 || threads % 32 || threads < T)
        return diag_fail(d, "mamba2_scan: invalid schedule kchunk=%d threads=%d", T, threads);
    if (segs < 0 || segs > SEG_MAX || (!tc && segs > 1))
        return diag_fail(d, "mamba2_scan: invalid schedule segs=%d (0..%d, and more than 1 only on the tensor-core scan)",
                         segs, SEG_MAX);
    int stages = (int)node_int(n, "stages", 2); /* the tensor-core scan's staged-row buffers */
    if ((stages != 1 && stages != 2) || (stages == 1 && !node_int(n, "tc", 1)))
        return diag_fail(d, "mamba2_scan: invalid schedule stages=%d (1 or 2, and 1 only on the tensor-core scan)",
                         stages);
    bool segmented = tc && segs != 1; /* mamba2_seg_state and the segment area */
    SymExpr rows = node_rows_expr(n);
    SymExpr seg_off = sym_scale(rows, 4 * m.GN); /* the segment area follows the B, C activations */
    if (segmented) { /* the scratch must hold the segment area (lower.c sizes it) */
        SymExpr sc;
        int64_t slot = seg_slot_floats(&m) * 4;
        if (!sym_parse_expr(node_str(n, "scratch", ""), &sc) || sc.div != 1 || sc.c[MONO_BS] < 4 * m.GN ||
            sc.c[MONO_B] < m.H * slot || sc.c[MONO_1] < SEG_SPARE * slot)
            return diag_fail(d, "mamba2_scan: segs=%d needs a scratch of %lld*batch*seq+%lld*batch+%lld bytes, has '%s'",
                             segs, (long long)(4 * m.GN), (long long)(m.H * slot), (long long)(SEG_SPARE * slot),
                             node_str(n, "scratch", ""));
    }
    unsigned smem = tc ? scan_tc_smem(&m, stages) : (unsigned)(4 * (T * m.CP + 3 * T + m.P * (m.N + 1) + T * T));
    if (smem > (unsigned)cg->target->smem_max) {
        int fit = T; /* the largest chunk whose SIMT scan fits */
        while (fit > 1 && 4 * (fit * m.CP + 3 * fit + m.P * (m.N + 1) + fit * fit) > cg->target->smem_max)
            fit /= 2;
        return diag_fail(d, "mamba2_scan: headdim %lld with d_state %lld and chunk %d needs %u bytes of shared memory, "
                            "more than %s blocks have (%d); set chunk_size: %d (or less) for this layer",
                         (long long)m.P, (long long)m.N, T, smem, cg->target->name, cg->target->smem_max, fit);
    }
    char name[96];
    if (tc) { /* B and C conv once per group, into the scratch */
        snprintf(name, sizeof name, "mamba2_conv_bc_gn%lld_w%lld", (long long)m.GN, (long long)m.W);
        KLaunch *c = kout_add(out, name, 128, 0);
        c->grid[0] = sym_ceildiv(sym_mono(MONO_S, 1), 32);
        c->grid[1] = sym_mono(MONO_B, 1);
        c->flops = sym_scale(rows, 2 * m.GN * (2 * m.W + 6));
        c->bytes = sym_scale(rows, 2 * m.GN * 2 * 2);
        kl_arg_src(c, 0);
        kl_arg_src(c, 1);
        kl_arg_src(c, 2);
        kl_arg_src(c, 7);
        kl_arg_src(c, 9);
        kl_arg_scratch(c);
        kl_arg_i32(c, sym_mono(MONO_S, 1));
        if (!emit_conv_bc(cg, &m, &c->ptx, d))
            return false;
    }
    if (segmented) { /* the segments' local states (k_mamba2_seg.c), as many as the scan's blocks count */
        int per_sm = scan_tc_per_sm(&m, stages, cg->target->smem_max);
        snprintf(name, sizeof name, "mamba2_seg_state_h%lld_p%lld_n%lld_g%lld_s%d%s", (long long)m.H, (long long)m.P,
                 (long long)m.N, (long long)m.G, segs, per_sm == 2 ? "_x2" : "");
        KLaunch *s = kout_add(out, name, SCAN_TC_THREADS, seg_state_smem(&m));
        kl_param(s, "segs", segs);
        s->grid[0] = seg_grid(&m, segs);
        /* repeated work (the state update of all but the last segment, which the scan does
         * again): not counted, so the layer's cost model stays its useful work */
        s->flops = sym_const(0);
        s->bytes = sym_const(0);
        for (int a = 0; a <= 4; a++)
            kl_arg_src(s, a);
        kl_arg_src(s, 7);
        kl_arg_src(s, 8);
        kl_arg_src(s, 9);
        kl_arg_scratch(s);
        kl_arg_scratch_at(s, seg_off);
        kl_arg_i32(s, sym_mono(MONO_B, 1));
        kl_arg_i32(s, sym_mono(MONO_S, 1));
        if (!emit_seg_state(cg, &m, segs, per_sm, &s->ptx, d))
            return false;
    }
    char sn[16] = "";
    if (tc)
        snprintf(sn, sizeof sn, "_s%d%s", segs, stages == 1 ? "_st1" : "");
    snprintf(name, sizeof name, "mamba2_scan%s_h%lld_p%lld_n%lld_g%lld_c%d%s", tc ? "_tc" : "", (long long)m.H,
             (long long)m.P, (long long)m.N, (long long)m.G, T, sn);
    KLaunch *l = kout_add(out, name, (unsigned)threads, smem);
    kl_param(l, "kchunk", T);
    kl_param(l, "threads", threads);
    kl_param(l, "tc", tc);
    kl_param(l, "segs", tc ? segs : 1);
    kl_param(l, "stages", tc ? stages : 2);
    if (tc) {
        l->grid[0] = seg_grid(&m, segs);
    } else {
        l->grid[0] = sym_const(m.H);
        l->grid[1] = sym_mono(MONO_B, 1);
    }
    /* useful work of the chunked SSD per token and head: C·Bᵀ (T·N), its product
     * with x (T·P), C·S and the state update (2·2·N·P); the conv (2·W per channel) */
    int64_t conv_ch = tc ? m.P : m.CP;
    l->flops = sym_scale(rows, m.H * (T * m.N + T * m.P + 4 * m.N * m.P + 2 * m.W * conv_ch));
    l->bytes = sym_add(sym_scale(rows, m.Din * 2 + m.Di * 2), sym_mono(MONO_B, 2 * m.H * m.P * m.N * 4));
    state_args(l);
    if (tc) {
        kl_arg_scratch(l);
        if (segmented)
            kl_arg_scratch_at(l, seg_off);
        else
            kl_arg_scratch(l); /* one segment: the segment area is never read */
        kl_arg_i32(l, sym_mono(MONO_B, 1));
    }
    kl_arg_i32(l, sym_mono(MONO_S, 1));
    if (!(tc ? emit_scan_tc(cg, &m, segs, stages, &l->ptx, d) : emit_scan(cg, &m, T, threads, &l->ptx, d)))
        return false;
    return add_norm_launch(cg, n, &m, out, d);
}

bool k_mamba2_step(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    Mx m = mx_of(n);
    int psplit = (int)node_int(n, "psplit", m.P % 16 == 0 ? m.P / 16 : 1);
    if (psplit < 1 || m.P % psplit || (m.P / psplit) % STEP_WARPS || m.P / psplit / STEP_WARPS > 16 || m.N % 4 ||
        m.N > 4 * 32 * 8)
        return diag_fail(d, "mamba2_step: invalid schedule psplit=%d for headdim %lld, d_state %lld", psplit,
                         (long long)m.P, (long long)m.N);
    char name[96];
    snprintf(name, sizeof name, "mamba2_step_h%lld_p%lld_n%lld_g%lld_s%d%s", (long long)m.H, (long long)m.P,
             (long long)m.N, (long long)m.G, psplit, node_str(n, "norm", NULL) ? "_ring" : "");
    KLaunch *l = kout_add(out, name, STEP_THREADS, (unsigned)(4 * (m.P / psplit + 2 * m.N)));
    kl_param(l, "psplit", psplit);
    l->grid[0] = sym_const(m.H * psplit);
    l->grid[1] = sym_mono(MONO_B, 1);
    l->flops = sym_mono(MONO_B, m.H * (4 * m.P * m.N + 2 * m.W * m.CP));
    l->bytes = sym_mono(MONO_B, 2 * m.H * m.P * m.N * 4 + m.Din * 2 + m.Di * 2 + m.CD * (m.W - 1) * 4);
    state_args(l);
    /* norm="deferred": the consumer GEMV normalises, so this launch also keeps the conv ring */
    bool deferred = node_str(n, "norm", NULL) != NULL;
    bool pdl = kl_use_pdl(cg, n);
    kl_param(l, "pdl", pdl);
    if (!emit_step(cg, &m, psplit, deferred, pdl, &l->ptx, d))
        return false;
    return deferred ? true : add_norm_launch(cg, n, &m, out, d);
}
