/* k_mamba2_seg.c — the sequence-parallel form of the tensor-core scan
 * (k_mamba2_tc.c): each sequence's chunks are split into `nseg` segments of
 * whole chunks, and a block per (head, sequence, segment) walks only its own
 * segment, so that batch·heads·nseg blocks share the GPU when batch·heads
 * alone would leave most SMs idle. Two launches:
 *
 *   mamba2_seg_state   per (head, sequence, segment k < nseg−1): the
 *                      segment's local final state from a zero state,
 *                          S_loc(k) = Σ_s exp(cum_T − cum_s)·dt_s·x_s B_sᵀ
 *                      (the scan's state update alone: no C·Bᵀ, no Y) and its
 *                      total log decay Σ dt·A, into a slot of the segment
 *                      area; block k = nseg−1, whose local state nobody needs,
 *                      copies the call's initial state (ssm_state) into its
 *                      slot instead, so the scan never reads ssm_state while
 *                      the last segment may be writing it;
 *   mamba2_scan_tc     (segment k) starts from
 *                          S_in(0) = S_init,  S_in(k) = exp(ld(k−1))·S_in(k−1) + S_loc(k−1),
 *                      folded from the slots at its start (k reads), the conv
 *                      history from the raw rows before the segment; only the
 *                      last segment writes the final state.
 *
 * The segment count of a call: the schedule's `segs`, or for segs = 0 the
 * SMs over batch·heads (one block per SM: the scan's shared memory allows no
 * more), then at most SEG_MAX, the call's chunks, and 1 + SEG_SPARE /
 * (batch·heads) — the slots the scratch holds (batch·heads + SEG_SPARE). Both
 * launches compute the same count. Their 1-D grids hold block (k·batch + b)·H + h
 * for every (b, h, k) of the call: batch·H·segs blocks, or for segs 0
 * batch·H + SEG_SPARE (as many as the cap allows), the blocks past the call's
 * count returning at once (at most SEG_SPARE of them: about two per SM).
 *
 * Slot ((b·H + h)·nseg + k) of the segment area: P·N f32 state ([p][n], as
 * ssm_state) then its log decay, SEG_SLOT_FLOATS apart (16-byte aligned). */
#include "kernels.h"
#include "mamba2_common.h"
#include "mma.h"
#include "nvvm.h"

enum { TC = SCAN_TC_CHUNK, THREADS = SCAN_TC_THREADS, NS = 3 }; /* chunk, block, stages of mamba2_seg_state */

int64_t seg_slot_floats(const Mx *m) { return m->P * m->N + 4; }

V seg_nchunks(KB *kb, V seq) { return kb_div(kb, kb_add(kb, seq, kb_i32(kb, TC - 1)), kb_i32(kb, TC)); }

V seg_count(KB *kb, const Mx *m, int segs, int per_sm, V batch, V seq)
{
    V bh = kb_mul(kb, batch, kb_i32(kb, m->H));
    V want = segs ? kb_i32(kb, segs) : kb_div(kb, kb_mul(kb, nvvm_nsmid(kb), kb_i32(kb, per_sm)), bh);
    V cap = kb_add(kb, kb_i32(kb, 1), kb_div(kb, kb_i32(kb, SEG_SPARE), bh));
    V s = kb_min(kb, kb_min(kb, want, cap), kb_min(kb, kb_i32(kb, SEG_MAX), seg_nchunks(kb, seq)));
    return kb_max(kb, s, kb_i32(kb, 1));
}

V seg_first_chunk(KB *kb, V k, V nseg, V nchunks) { return kb_div(kb, kb_mul(kb, k, nchunks), nseg); }

void seg_block(KB *kb, const Mx *m, V batch, V *b, V *h, V *k)
{
    V idx = nvvm_ctaid_x(kb), H = kb_i32(kb, m->H);
    *h = kb_rem(kb, idx, H);
    *b = kb_rem(kb, kb_div(kb, idx, H), batch);
    *k = kb_div(kb, idx, kb_mul(kb, H, batch));
}

SymExpr seg_grid(const Mx *m, int segs)
{
    return segs ? sym_mono(MONO_B, m->H * segs) : sym_add(sym_mono(MONO_B, m->H), sym_const(SEG_SPARE));
}

/* f32 offset of slot (b, h, k) of a call with nseg segments. */
static V seg_slot(KB *kb, const Mx *m, V b, V h, V nseg, V k)
{
    V idx = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->H)), h), nseg), k);
    return kb_mul(kb, kb_to_i64(kb, idx), kb_i64(kb, seg_slot_floats(m)));
}

/* Offset (f32, within a P×N state) of accumulator element (i, j, e) of this warp's tile. */
static V tile_off(KB *kb, const Mx *m, V sm0, V sn0, int i, int j, int e)
{
    V p = kb_add(kb, sm0, mma_acc_row(kb, i, e)), n = kb_add(kb, sn0, mma_acc_col(kb, j, e));
    return kb_to_i64(kb, kb_add(kb, kb_mul(kb, p, kb_i32(kb, m->N)), n));
}

void seg_state_load(KB *kb, const Mx *m, V ptr, V base, V sm0, V sn0, int smi, int sni,
                    KVar S[MMA_MAX_MI][MMA_MAX_NI][4], V decay)
{
    for (int i = 0; i < smi; i++)
        for (int j = 0; j < sni; j++)
            for (int e = 0; e < 4; e++) {
                V v = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ptr, kb_add(kb, base, tile_off(kb, m, sm0, sn0, i, j, e))));
                kb_set(kb, S[i][j][e], decay ? kb_fma(kb, decay, kb_get(kb, S[i][j][e]), v) : v);
            }
}

void seg_state_store(KB *kb, const Mx *m, V ptr, V base, V sm0, V sn0, int smi, int sni,
                     KVar S[MMA_MAX_MI][MMA_MAX_NI][4])
{
    for (int i = 0; i < smi; i++)
        for (int j = 0; j < sni; j++)
            for (int e = 0; e < 4; e++)
                kb_store(kb, kb_get(kb, S[i][j][e]),
                         kb_gep(kb, kb->f32, ptr, kb_add(kb, base, tile_off(kb, m, sm0, sn0, i, j, e))));
}

void seg_state_fold(KB *kb, const Mx *m, V sega, V b, V h, V nseg, V k, V sm0, V sn0, int smi, int sni,
                    KVar S[MMA_MAX_MI][MMA_MAX_NI][4])
{
    seg_state_load(kb, m, sega, seg_slot(kb, m, b, h, nseg, kb_sub(kb, nseg, kb_i32(kb, 1))), sm0, sn0, smi, sni, S,
                   NULL); /* S_in(0): the call's initial state */
    KVar j = kb_for(kb, kb_i32(kb, 0), k, kb_i32(kb, 1));
    {
        V slot = seg_slot(kb, m, b, h, nseg, kb_get(kb, j));
        V ld = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, sega, kb_add(kb, slot, kb_i64(kb, m->P * m->N))));
        seg_state_load(kb, m, sega, slot, sm0, sn0, smi, sni, S, kb_exp(kb, ld));
    }
    kb_endfor(kb);
}

/* Shared memory of mamba2_seg_state (byte offsets). */
typedef struct SLay {
    int xw, ldx;      /* Xw = w∘silu(conv(x)) [TC][P] bf16, row stride */
    int w, dec;       /* f32 w [TC]; f32 exp(cum_T) of the chunk */
    int stage, ldr;   /* NS stages of rows [TC][x P | B N] bf16; row stride */
    int dtraw;        /* raw dt, NS × [TC] f32 */
    int total;        /* bytes */
} SLay;

static SLay seg_layout(const Mx *m)
{
    SLay l;
    l.ldx = (int)(m->P + 8) * 2;
    l.ldr = (int)(m->P + m->N) * 2 + 16;
    l.xw = 0;
    l.w = l.xw + TC * l.ldx;
    l.dec = l.w + 4 * TC;
    l.stage = l.dec + 16;
    l.dtraw = l.stage + NS * TC * l.ldr;
    l.total = l.dtraw + NS * 4 * TC;
    return l;
}

unsigned seg_state_smem(const Mx *m) { return (unsigned)seg_layout(m).total; }

/* Args: zxbcdt, conv_w, conv_b, dt_bias, A_log, conv_state, ssm_state, pos,
 * scratch (B, C activations), segment area, batch, seq. Grid seg_grid. */
bool emit_seg_state(Codegen *cg, const Mx *m, int segs, int per_sm, char **ptx, Diag *d)
{
    SLay L = seg_layout(m);
    int P = (int)m->P, N = (int)m->N, pairs = P / 2;
    KB *kb = kb_new(cg->ctx, "mamba2_seg_state",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR,
                                   KP_I32, KP_I32},
                    12, THREADS);
    V raw = kb_param(kb, 0), cw = kb_param(kb, 1), cbias = kb_param(kb, 2), dtb = kb_param(kb, 3);
    V alog = kb_param(kb, 4), ring = kb_param(kb, 5), ssm = kb_param(kb, 6), posp = kb_param(kb, 7);
    V scr = kb_param(kb, 8), sega = kb_param(kb, 9), batch = kb_param(kb, 10), seq = kb_param(kb, 11);
    V tid = nvvm_tid_x(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    V h, b, ks;
    seg_block(kb, m, batch, &b, &h, &ks);
    V nseg = seg_count(kb, m, segs, per_sm, batch, seq), nchunks = seg_nchunks(kb, seq);
    V last = kb_sub(kb, nseg, kb_i32(kb, 1));
    V slot = seg_slot(kb, m, b, h, nseg, ks);
    V zero = kb_f32(kb, 0);
    kb_if(kb, kb_and(kb, kb_gt(kb, nseg, kb_i32(kb, 1)), kb_eq(kb, ks, last)));
    { /* the call's initial state into the last slot, float4 at a time */
        V sbase = kb_mul(kb, kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->H)), h)), kb_i64(kb, m->P * m->N));
        KVar q = kb_for(kb, tid, kb_i32(kb, m->P * m->N / 4), kb_i32(kb, THREADS));
        V o = kb_to_i64(kb, kb_mul(kb, kb_get(kb, q), kb_i32(kb, 4)));
        V v = kb_load_vec(kb, kb->f32, 4, kb_gep(kb, kb->f32, ssm, kb_add(kb, sbase, o)), 16);
        kb_store_vec(kb, v, kb_gep(kb, kb->f32, sega, kb_add(kb, slot, o)), 16);
        kb_endfor(kb);
    }
    kb_endif(kb);
    kb_if(kb, kb_lt(kb, ks, last));
    {
        V c0 = seg_first_chunk(kb, ks, nseg, nchunks), c1 = seg_first_chunk(kb, kb_add(kb, ks, kb_i32(kb, 1)), nseg, nchunks);
        V ts = kb_mul(kb, c0, kb_i32(kb, TC));
        V wm = kb_div(kb, warp, kb_i32(kb, 4)), wn = kb_rem(kb, warp, kb_i32(kb, 4));
        V pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
        V A = kb_neg(kb, kb_exp(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, alog, h))));
        V dtbias = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, dtb, h));
        /* chunks c0 .. c0+NS-2 on their way (a group each, empty past c1), the conv history in stage NS-1 */
        for (int i = 0; i < NS - 1; i++) {
            V t0 = kb_add(kb, ts, kb_i32(kb, i * TC));
            V ok = kb_lt(kb, kb_add(kb, c0, kb_i32(kb, i)), c1);
            kb_if(kb, ok);
            scan_prefetch_rows(kb, m, L.stage, L.ldr, SCAN_ROW_X | SCAN_ROW_B, raw, scr, b, h, seq, t0, kb_i32(kb, i), tid);
            kb_endif(kb);
            nvvm_cp_async_commit(kb);
            kb_if(kb, kb_and(kb, ok, kb_lt(kb, tid, kb_i32(kb, TC))));
            kb_store(kb, scan_load_dt_raw(kb, m, raw, b, h, seq, t0, tid),
                     kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, L.dtraw + 4 * TC * i)), tid));
            kb_endif(kb);
        }
        scan_stage_history(kb, m, kb_i32(kb, L.stage + (NS - 1) * TC * L.ldr), L.ldr, raw, ring, b, h, pos, seq, ts, tid);
        /* the state tile of this warp, as in mamba2_scan_tc */
        int smi = P / 32, sni = N / 32;
        V sm0 = kb_mul(kb, wm, kb_i32(kb, P / 2)), sn0 = kb_mul(kb, wn, kb_i32(kb, N / 4));
        KVar S[MMA_MAX_MI][MMA_MAX_NI][4];
        for (int i = 0; i < smi; i++)
            for (int j = 0; j < sni; j++)
                for (int e = 0; e < 4; e++)
                    S[i][j][e] = kb_var(kb, kb->f32, zero);
        KVar ldsum = kb_var(kb, kb->f32, zero); /* Σ cum_T over the segment (warp 0) */
        V cq = kb_rem(kb, tid, kb_i32(kb, pairs)), seg = kb_div(kb, tid, kb_i32(kb, pairs));
        V cwv[2][8], cbv[2];
        scan_conv_weights(kb, m, cw, cbias, h, cq, cwv, cbv);
        KVar ci = kb_for(kb, c0, c1, kb_i32(kb, 1));
        {
            V c = kb_get(kb, ci), r = kb_sub(kb, c, c0);
            V st = kb_rem(kb, r, kb_i32(kb, NS)), prv = kb_rem(kb, kb_add(kb, r, kb_i32(kb, NS - 1)), kb_i32(kb, NS));
            V rows = kb_add(kb, kb_i32(kb, L.stage), kb_mul(kb, st, kb_i32(kb, TC * L.ldr)));
            V prev = kb_add(kb, kb_i32(kb, L.stage), kb_mul(kb, prv, kb_i32(kb, TC * L.ldr)));
            V tc = kb_min(kb, kb_i32(kb, TC), kb_sub(kb, seq, kb_mul(kb, c, kb_i32(kb, TC))));
            nvvm_cp_async_wait(kb, NS - 2);
            nvvm_bar_sync(kb); /* this chunk's rows are in; the last chunk is done with smem */
            /* ---- warp 0: dt, cumsum of dt·A, w; exp(cum_T) for everyone ---- */
            kb_if(kb, kb_eq(kb, warp, kb_i32(kb, 0)));
            {
                V cumT = scan_chunk_decay(kb, m, lane, kb_add(kb, kb_i32(kb, L.dtraw), kb_mul(kb, st, kb_i32(kb, 4 * TC))),
                                          dtbias, A, tc, -1, -1, L.w);
                kb_set(kb, ldsum, kb_add(kb, kb_get(kb, ldsum), cumT));
                kb_if(kb, kb_eq(kb, lane, kb_i32(kb, 0)));
                kb_store(kb, kb_exp(kb, cumT), kb_smem(kb, kb_i32(kb, L.dec)));
                kb_endif(kb);
            }
            kb_endif(kb);
            nvvm_bar_sync(kb);
            /* ---- Xw = w∘silu(conv(x)) ---- */
            scan_conv_x(kb, m, rows, L.ldr, prev, L.ldr, cq, seg, cwv, cbv, L.xw, L.ldx, L.w);
            nvvm_bar_sync(kb);
            /* ---- chunk c + NS-1 on its way into the previous chunk's stage (read by now) ---- */
            V cn = kb_add(kb, c, kb_i32(kb, NS - 1)), tn = kb_mul(kb, cn, kb_i32(kb, TC));
            V more = kb_lt(kb, cn, c1);
            kb_if(kb, more);
            scan_prefetch_rows(kb, m, L.stage, L.ldr, SCAN_ROW_X | SCAN_ROW_B, raw, scr, b, h, seq, tn, prv, tid);
            kb_endif(kb);
            nvvm_cp_async_commit(kb);
            KVar dtn = kb_var(kb, kb->f32, zero);
            kb_if(kb, kb_and(kb, more, kb_lt(kb, tid, kb_i32(kb, TC))));
            kb_set(kb, dtn, scan_load_dt_raw(kb, m, raw, b, h, seq, tn, tid));
            kb_endif(kb);
            /* ---- S = exp(cum_T)·S + Xwᵀ·B ---- */
            V decT = kb_load(kb, kb->f32, kb_smem(kb, kb_i32(kb, L.dec)));
            for (int i = 0; i < smi; i++)
                for (int j = 0; j < sni; j++)
                    for (int e = 0; e < 4; e++)
                        kb_set(kb, S[i][j][e], kb_mul(kb, kb_get(kb, S[i][j][e]), decT));
            Tile txw = {kb_i32(kb, L.xw), L.ldx, true}, tB = {kb_add(kb, rows, kb_i32(kb, P * 2)), L.ldr, true};
            mma_warp_tile(kb, txw, tB, sm0, sn0, kb_i32(kb, 0), smi, sni, TC, S);
            kb_if(kb, kb_lt(kb, tid, kb_i32(kb, TC))); /* chunk c + NS-1's dt, loaded above */
            kb_store(kb, kb_get(kb, dtn),
                     kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, L.dtraw)), kb_add(kb, kb_mul(kb, prv, kb_i32(kb, TC)), tid)));
            kb_endif(kb);
        }
        kb_endfor(kb);
        seg_state_store(kb, m, sega, slot, sm0, sn0, smi, sni, S);
        kb_if(kb, kb_eq(kb, tid, kb_i32(kb, 0)));
        kb_store(kb, kb_get(kb, ldsum), kb_gep(kb, kb->f32, sega, kb_add(kb, slot, kb_i64(kb, m->P * m->N))));
        kb_endif(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}
