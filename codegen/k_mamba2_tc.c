/* k_mamba2_tc.c — the Mamba2 prefill scan on tensor cores, in two launches
 * (three with segments: k_mamba2_seg.c) before the grouped norm (k_mamba2.c):
 *
 *   mamba2_conv_bc   silu(conv1d(B, C)) for every token, once per group
 *                    (not once per head), into the node's scratch [rows, 2·G·N]
 *   mamba2_scan_tc   one block (8 warps) per (head, sequence, segment), chunks
 *                    of TC = 64 tokens in order, every chunk product on mma.sync
 *                    (bf16 operands, fp32 accumulate), the state in registers:
 *
 *   prefetch      the next chunk's rows — raw x and z of the head (zxbcdt), B and
 *                 C of its group (scratch) — by cp.async, and its dt (a plain
 *                 load stored late); `stages` (schedule) says where:
 *                   2: all of them into the other half of a double buffer, issued
 *                      after the conv (146.7 KB for P 64 N 128: one block an SM);
 *                   1: into the one stage, x right after the conv and B, C, z
 *                      after the chunk's last read of them; the x conv history
 *                      kept apart (2 × (W-1) rows). 97.4 KB, minctasm 2 (128
 *                      registers): two blocks share an SM and each covers the
 *                      other's waits for its rows
 *   conv + SiLU   of the head's x channels: a thread per (channel pair, row
 *                 segment); history from the previous chunk's staged rows (the
 *                 conv ring, staged once, before the first chunk); beside it
 *   cumsum        warp 0: cum = inclusive scan of dt·A; w_s = exp(cum_T − cum_s)·dt_s
 *   G = C·Bᵀ      (TC×TC, k = N) straight from the staged B, C; masked s ≤ t and
 *                 scaled by exp(cum_t − cum_s)·dt_s → bf16
 *   Y = exp(cum_t)·(C·Sᵀ) + G·X + D·x on one set of accumulators, gated by
 *                 silu(z), stored
 *   S = exp(cum_T)·S + (w∘X)ᵀ·B          (P×N accumulators held across chunks)
 *
 * Four barriers a chunk: rows in | conv, cumsum | Xw, G | Y, S | (one stage: the
 * rest of the next rows) and the bf16 state copy.
 *
 * The state never leaves registers between chunks; a bf16 copy in shared
 * memory feeds C·Sᵀ. Shapes: TC = 64, P ∈ {64, 128}, N ∈ {64, 128, 256},
 * within the target's shared memory (k_mamba2.c falls back to the SIMT scan
 * otherwise). Warps are 2×4 over each product's output tile.
 *
 * Segments (k_mamba2_seg.c): a block per (head, sequence, segment) of the
 * call's segments (the grid of seg_grid); a block walks only its segment's chunks, starting from the
 * state folded from mamba2_seg_state's segment states (or, with one segment,
 * the state buffer), with the conv history of the rows before the segment. */
#include <assert.h>

#include "kernels.h"
#include "mamba2_common.h"
#include "mma.h"
#include "nvvm.h"

enum { TC = SCAN_TC_CHUNK, THREADS = SCAN_TC_THREADS, CONV_ROWS = 32, CONV_THREADS = 128 }; /* chunk, block; conv_bc tile */

/* Bytes per cp.async piece of a zxbcdt row: 16 when rows are 16-byte aligned, else 4. */
static int piece_bytes(const Mx *m) { return m->Din % 8 == 0 ? 16 : m->Din % 2 == 0 ? 4 : 0; }

/* Shared-memory layout (byte offsets); bf16 tiles padded by 16 bytes per row. */
typedef struct Lay {
    int x, xw, g, sb;   /* tiles: X [TC][P], Xw [TC][P], G [TC][TC], Sb [P][N] */
    int ldx, ldn, ldg;  /* row strides of the P-wide, N-wide and TC-wide tiles */
    int dt, cum, w;     /* f32 vectors [TC] */
    int stage, ldr;     /* staged rows, stages × [TC][x P | B N | C N | z P] bf16; row stride */
    int dtraw;          /* raw dt, 2 × [TC] f32 */
    int hist, ldh;      /* one stage only: the x conv history, 2 × [W-1][P] bf16; row stride (else unused) */
    int total;          /* bytes */
} Lay;

static Lay layout(const Mx *m, int stages)
{
    Lay l;
    l.ldx = (int)(m->P + 8) * 2;
    l.ldn = (int)(m->N + 8) * 2;
    l.ldg = (TC + 8) * 2;
    l.ldr = (int)(2 * m->P + 2 * m->N) * 2 + 16;
    l.ldh = (int)(m->P + 8) * 2;
    l.x = 0;
    l.xw = l.x + TC * l.ldx;
    l.g = l.xw + TC * l.ldx;
    l.sb = l.g + TC * l.ldg;
    l.dt = l.sb + (int)m->P * l.ldn;
    l.cum = l.dt + 4 * TC;
    l.w = l.cum + 4 * TC;
    l.stage = l.w + 4 * TC;
    l.dtraw = l.stage + stages * TC * l.ldr;
    l.hist = l.dtraw + 2 * 4 * TC;
    l.total = l.hist + (stages == 1 ? 2 * (int)(m->W - 1) * l.ldh : 0);
    return l;
}

bool scan_tc_supported(const Mx *m, int smem_max)
{
    return (m->P == 64 || m->P == 128) && (m->N == 64 || m->N == 128 || m->N == 256) && m->W >= 2 && m->W <= 8 &&
           piece_bytes(m) > 0 && layout(m, 2).total <= smem_max;
}

unsigned scan_tc_smem(const Mx *m, int stages) { return (unsigned)layout(m, stages).total; }

int scan_tc_per_sm(const Mx *m, int stages, int smem_max)
{
    /* an SM has the opt-in maximum plus the 1 KB every block reserves; two blocks reserve 2 KB */
    return stages == 1 && 2 * (layout(m, stages).total + 1024) <= smem_max + 1024 ? 2 : 1;
}

static V sf(KB *kb, int off, V idx) /* &f32 smem[off + 4*idx] */
{
    return kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, off)), idx);
}

/* e^x and silu(x) with ex2.approx.ftz: one MUFU op for the exponential where kb_exp's
 * ex2.approx.f32 takes a compare and two multiplies more to keep subnormals (the
 * decays and gates here lose nothing below 2^-126). */
static V fexp(KB *kb, V x) { return nvvm_ex2_ftz(kb, kb_mul(kb, x, kb_f32(kb, 1.4426950408889634))); }
static V fsilu(KB *kb, V x) { return kb_mul(kb, x, kb_rcp(kb, kb_add(kb, kb_f32(kb, 1.0), fexp(kb, kb_neg(kb, x))))); }

/* ---------------------------------------------------------------------------
 * mamba2_conv_bc: grid (ceil(seq/CONV_ROWS), batch); a thread per B/C channel
 * pair slides the conv window down CONV_ROWS rows.
 * Args: zxbcdt, conv_w, conv_b, conv_state (ring), pos, scratch, seq. */
bool emit_conv_bc(Codegen *cg, const Mx *m, char **ptx, Diag *d)
{
    int W = (int)m->W, pairs = (int)m->GN; /* 2·G·N channels */
    KB *kb = kb_new(cg->ctx, "mamba2_conv_bc",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32}, 7, CONV_THREADS);
    V raw = kb_param(kb, 0), cw = kb_param(kb, 1), cb = kb_param(kb, 2), ring = kb_param(kb, 3);
    V posp = kb_param(kb, 4), scr = kb_param(kb, 5), seq = kb_param(kb, 6);
    V b = nvvm_ctaid_y(kb), t0 = kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, CONV_ROWS));
    V pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
    V t1 = kb_min(kb, kb_add(kb, t0, kb_i32(kb, CONV_ROWS)), seq);
    KVar q = kb_for(kb, nvvm_tid_x(kb), kb_i32(kb, pairs), kb_i32(kb, CONV_THREADS));
    {
        V c0 = kb_mul(kb, kb_get(kb, q), kb_i32(kb, 2)); /* first channel of the pair, within B|C */
        V wv[2][8], bias[2], win[2][8];
        for (int e = 0; e < 2; e++) {
            V gch = kb_add(kb, kb_i32(kb, m->Di), kb_add(kb, c0, kb_i32(kb, e)));
            for (int k = 0; k < W; k++)
                wv[e][k] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cw, kb_add(kb, kb_mul(kb, gch, kb_i32(kb, W)), kb_i32(kb, k))));
            bias[e] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cb, gch));
            for (int k = 0; k < W - 1; k++) { /* input at t0 - (W-1) + k: zxbcdt, or the ring before the call */
                V u = kb_add(kb, t0, kb_i32(kb, k - (W - 1)));
                KVar v = kb_var(kb, kb->f32, NULL);
                kb_if(kb, kb_ge(kb, u, kb_i32(kb, 0)));
                {
                    V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, seq), u)), kb_i64(kb, m->Din)),
                                   kb_to_i64(kb, kb_add(kb, gch, kb_i32(kb, m->Di))));
                    kb_set(kb, v, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off))));
                }
                kb_else(kb);
                {
                    V off = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), gch), kb_i32(kb, W)),
                                   ring_slot(kb, m, kb_add(kb, pos, u)));
                    kb_set(kb, v, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ring, off)));
                }
                kb_endif(kb);
                win[e][k] = kb_get(kb, v);
            }
        }
        KVar wvar[2][8];
        for (int e = 0; e < 2; e++)
            for (int k = 0; k < W - 1; k++)
                wvar[e][k] = kb_var(kb, kb->f32, win[e][k]);
        KVar t = kb_for(kb, t0, t1, kb_i32(kb, 1));
        {
            V row = kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, seq), kb_get(kb, t)));
            V res[2];
            for (int e = 0; e < 2; e++) {
                V off = kb_add(kb, kb_mul(kb, row, kb_i64(kb, m->Din)),
                               kb_to_i64(kb, kb_add(kb, c0, kb_i32(kb, 2 * m->Di + e))));
                V x = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off)));
                V acc = bias[e];
                for (int k = 0; k < W - 1; k++)
                    acc = kb_fma(kb, wv[e][k], kb_get(kb, wvar[e][k]), acc);
                acc = kb_fma(kb, wv[e][W - 1], x, acc);
                res[e] = kb_silu(kb, acc);
                for (int k = 0; k + 1 < W - 1; k++)
                    kb_set(kb, wvar[e][k], kb_get(kb, wvar[e][k + 1]));
                kb_set(kb, wvar[e][W - 2], x);
            }
            V so = kb_add(kb, kb_mul(kb, row, kb_i64(kb, 2 * m->GN)), kb_to_i64(kb, c0));
            kb_store(kb, kb_pack_bf16x2(kb, res[0], res[1]), kb_gep(kb, kb->bf16, scr, so));
        }
        kb_endfor(kb);
    }
    kb_endfor(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---------------------------------------------------------------------------
 * mamba2_scan_tc. Args: zxbcdt, conv_w, conv_b, dt_bias, A_log, D, conv_state,
 * ssm_state, pos, out, scratch (B, C activations), segment area, batch, seq. */

/* Issues the cp.async copies of chunk rows [t0, t0 + TC) into stage `st` of
 * stages at byte `stage`, rows `ldr` bytes apart, the parts of `parts`
 * (SCAN_ROW_*): x of head h from zxbcdt, B and C of its group from the
 * scratch, z of head h from zxbcdt (row layout x P | B N | C N | z P, parts
 * left out keep their place); rows past seq are zero-filled. Each part has a
 * power-of-two count of pieces a row, so a thread keeps one piece column and
 * steps down the rows THREADS / pieces at a time: its addresses are a base
 * and constant offsets, nothing divided per piece. */
void scan_prefetch_rows(KB *kb, const Mx *m, int stage, int ldr, unsigned parts, V raw, V scr, V b, V h, V seq, V t0,
                        V st, V tid)
{
    int pz = piece_bytes(m) / 2; /* elements per zxbcdt piece */
    int P = (int)m->P, N = (int)m->N;
    V g = kb_div(kb, h, kb_i32(kb, m->H / m->G));
    V sbase = kb_add(kb, kb_i32(kb, stage), kb_mul(kb, st, kb_i32(kb, TC * ldr)));
    V lim = kb_sub(kb, seq, t0);                                              /* rows t < lim exist */
    V grow = kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, seq), t0));               /* global row of chunk row 0 */
    for (int i = 0; i < 4; i++) {
        static const unsigned bit[4] = {SCAN_ROW_X, SCAN_ROW_B, SCAN_ROW_C, SCAN_ROW_Z};
        if (!(parts & bit[i]))
            continue;
        bool zx = i == 0 || i == 3;                       /* from zxbcdt (else the B, C scratch) */
        int pe = zx ? pz : 8, npc = (zx ? P : N) / pe;    /* elements a piece, pieces a row */
        int rpp = THREADS / npc;                          /* rows a pass of the block */
        assert(npc > 0 && (npc & (npc - 1)) == 0 && npc <= THREADS && TC % rpp == 0);
        int64_t width = zx ? m->Din : 2 * m->GN;          /* row length of the source */
        int scol = i == 0 ? 0 : i == 1 ? P : i == 2 ? P + N : P + 2 * N; /* first element in the stage row */
        V q = kb_rem(kb, tid, kb_i32(kb, npc)), r0 = kb_div(kb, tid, kb_i32(kb, npc));
        V c = kb_mul(kb, q, kb_i32(kb, pe)); /* element within the part */
        V col = i == 0 ? kb_add(kb, kb_i32(kb, m->Di), kb_add(kb, kb_mul(kb, h, kb_i32(kb, P)), c))   /* x: Di + h·P + c */
              : i == 3 ? kb_add(kb, kb_mul(kb, h, kb_i32(kb, P)), c)                                 /* z: h·P + c */
                       : kb_add(kb, kb_mul(kb, g, kb_i32(kb, N)), kb_add(kb, c, kb_i32(kb, i == 2 ? m->GN : 0)));
        V src = zx ? raw : scr;
        V gp0 = kb_gep(kb, kb->bf16, src, kb_add(kb, kb_mul(kb, kb_add(kb, grow, kb_to_i64(kb, r0)), kb_i64(kb, width)),
                                                 kb_to_i64(kb, col)));
        V sp0 = kb_add(kb, sbase, kb_add(kb, kb_mul(kb, r0, kb_i32(kb, ldr)), kb_mul(kb, kb_add(kb, c, kb_i32(kb, scol)), kb_i32(kb, 2))));
        for (int k = 0; k < TC / rpp; k++) {
            V ok = kb_lt(kb, kb_add(kb, r0, kb_i32(kb, k * rpp)), lim);
            V gp = kb_select(kb, ok, kb_gep(kb, kb->bf16, gp0, kb_i64(kb, (int64_t)k * rpp * width)), src);
            V sp = kb_smem(kb, kb_add(kb, sp0, kb_i32(kb, k * rpp * ldr)));
            V bytes = kb_select(kb, ok, kb_i32(kb, 2 * pe), kb_i32(kb, 0));
            if (pe == 8)
                nvvm_cp_async16(kb, sp, gp, bytes);
            else
                nvvm_cp_async4(kb, sp, gp, bytes);
        }
    }
}

/* Raw dt of head h at chunk row tid (threads < TC): the value, 0 past seq. */
V scan_load_dt_raw(KB *kb, const Mx *m, V raw, V b, V h, V seq, V t0, V tid)
{
    V tt = kb_add(kb, t0, tid);
    V ok = kb_lt(kb, tt, seq);
    V row = kb_add(kb, kb_mul(kb, b, seq), kb_select(kb, ok, tt, kb_i32(kb, 0)));
    V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_to_i64(kb, kb_add(kb, h, kb_i32(kb, m->Di + m->CD))));
    return kb_select(kb, ok, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off))), kb_f32(kb, 0));
}

/* The conv history of head h's x channels before row ts of this call — raw
 * rows ts-(W-1) .. ts-1 of zxbcdt, or the conv ring for rows before 0 — as
 * bf16 into the last W-1 rows of the stage at byte `stage` (rows ldr apart). */
void scan_stage_history(KB *kb, const Mx *m, V stage, int ldr, V raw, V ring, V b, V h, V pos, V seq, V ts, V tid)
{
    int P = (int)m->P, W = (int)m->W;
    KVar hq = kb_for(kb, tid, kb_i32(kb, (W - 1) * P), kb_i32(kb, THREADS));
    {
        V hv = kb_get(kb, hq), k = kb_div(kb, hv, kb_i32(kb, P)), c = kb_rem(kb, hv, kb_i32(kb, P));
        V gch = kb_add(kb, kb_mul(kb, h, kb_i32(kb, P)), c);
        V u = kb_add(kb, ts, kb_sub(kb, k, kb_i32(kb, W - 1))); /* row of this call; < 0: before it */
        KVar v = kb_var(kb, kb->f32, kb_f32(kb, 0));
        kb_if(kb, kb_ge(kb, u, kb_i32(kb, 0)));
        {
            V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, seq), u)), kb_i64(kb, m->Din)),
                           kb_to_i64(kb, kb_add(kb, gch, kb_i32(kb, m->Di))));
            kb_set(kb, v, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off))));
        }
        kb_else(kb);
        {
            V slot = ring_slot(kb, m, kb_add(kb, pos, u));
            V off = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), gch), kb_i32(kb, W)), slot);
            kb_set(kb, v, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ring, off)));
        }
        kb_endif(kb);
        V so = kb_add(kb, stage, kb_add(kb, kb_mul(kb, kb_add(kb, k, kb_i32(kb, TC - (W - 1))), kb_i32(kb, ldr)),
                                        kb_mul(kb, c, kb_i32(kb, 2))));
        kb_store(kb, kb_f32_to_bf16(kb, kb_get(kb, v)), kb_smem(kb, so));
    }
    kb_endfor(kb);
}

/* Conv weights and bias of this thread's x channel pair (2cq, 2cq+1) of head h. */
void scan_conv_weights(KB *kb, const Mx *m, V cw, V cbias, V h, V cq, V wv[2][8], V bias[2])
{
    for (int e = 0; e < 2; e++) {
        V gch = kb_add(kb, kb_mul(kb, h, kb_i32(kb, m->P)), kb_add(kb, kb_mul(kb, cq, kb_i32(kb, 2)), kb_i32(kb, e)));
        for (int k = 0; k < m->W; k++)
            wv[e][k] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cw, kb_add(kb, kb_mul(kb, gch, kb_i32(kb, m->W)), kb_i32(kb, k))));
        bias[e] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cbias, gch));
    }
}

/* conv + SiLU of the staged x channels of one chunk: this thread's channel
 * pair cq over rows [seg·rps, seg·rps + rps) (rps = TC·P/(2·THREADS)),
 * history (row t < 0) at prev + (t + TC)·ldp: the tail of the previous
 * stage, or the separate history rows of one stage. Each result, rounded to bf16
 * (as the reference), goes to the bf16 tile at byte `xo` (rows ldx apart),
 * scaled by the f32 smem vector at byte `wo` when wo >= 0 (rounded again). */
void scan_conv_x(KB *kb, const Mx *m, V rows, int ldr, V prev, int ldp, V cq, V seg, V wv[2][8], V bias[2], int xo,
                 int ldx, int wo)
{
    int P = (int)m->P, W = (int)m->W, rps = TC / (THREADS / (P / 2));
    V r0 = kb_mul(kb, seg, kb_i32(kb, rps));
    V colb = kb_mul(kb, cq, kb_i32(kb, 4)); /* byte column of the pair */
    V win[8][2];
    for (int k = 0; k < W - 1; k++) { /* rows r0 - (W-1) + k: this chunk, or the previous one's tail */
        V t = kb_add(kb, r0, kb_i32(kb, k - (W - 1)));
        V inprev = kb_lt(kb, t, kb_i32(kb, 0));
        V off = kb_select(kb, inprev, kb_add(kb, prev, kb_mul(kb, kb_add(kb, t, kb_i32(kb, TC)), kb_i32(kb, ldp))),
                          kb_add(kb, rows, kb_mul(kb, t, kb_i32(kb, ldr))));
        V v = kb_load_vec(kb, kb->bf16, 2, kb_smem(kb, kb_add(kb, off, colb)), 4);
        win[k][0] = kb_bf16_to_f32(kb, kb_extract(kb, v, 0));
        win[k][1] = kb_bf16_to_f32(kb, kb_extract(kb, v, 1));
    }
    for (int u = 0; u < rps; u++) {
        V t = kb_add(kb, r0, kb_i32(kb, u));
        V v = kb_load_vec(kb, kb->bf16, 2, kb_smem(kb, kb_add(kb, kb_add(kb, rows, kb_mul(kb, t, kb_i32(kb, ldr))), colb)), 4);
        V ws = wo >= 0 ? kb_load(kb, kb->f32, kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, wo)), t)) : NULL;
        V y[2];
        for (int e = 0; e < 2; e++) {
            V xin = kb_bf16_to_f32(kb, kb_extract(kb, v, e));
            V acc = bias[e];
            for (int k = 0; k < W - 1; k++)
                acc = kb_fma(kb, wv[e][k], win[k][e], acc);
            y[e] = fsilu(kb, kb_fma(kb, wv[e][W - 1], xin, acc));
            if (ws)
                y[e] = kb_mul(kb, kb_bf16_to_f32(kb, kb_f32_to_bf16(kb, y[e])), ws);
            for (int k = 0; k + 1 < W - 1; k++)
                win[k][e] = win[k + 1][e];
            win[W - 2][e] = xin;
        }
        V o = kb_add(kb, kb_i32(kb, xo), kb_add(kb, kb_mul(kb, t, kb_i32(kb, ldx)), colb));
        kb_store(kb, kb_pack_bf16x2(kb, y[0], y[1]), kb_smem(kb, o));
    }
}

/* Warp 0: dt of the chunk's rows (from the raw dt at smem byte `dtraw` [TC], 0 at
 * rows >= tc), cum = inclusive scan of dt·A, and w_s = exp(cum_T − cum_s)·dt_s
 * into smem byte `wo`; dt and cum also stored when dto / cumo >= 0. Returns
 * cum_T (in every lane). Call inside warp 0 only. */
V scan_chunk_decay(KB *kb, const Mx *m, V lane, V dtraw, V dtbias, V A, V tc, int dto, int cumo, int wo)
{
    V zero = kb_f32(kb, 0);
    V dt[2], cum[2];
    for (int i = 0; i < 2; i++) {
        V r = kb_add(kb, lane, kb_i32(kb, 32 * i));
        V raw = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, kb_smem(kb, dtraw), r));
        V v = kb_min(kb, kb_max(kb, kb_softplus(kb, kb_add(kb, raw, dtbias)), kb_f32(kb, m->dt_min)), kb_f32(kb, m->dt_max));
        dt[i] = kb_select(kb, kb_lt(kb, r, tc), v, zero);
        cum[i] = kb_mul(kb, dt[i], A);
    }
    for (int o = 1; o < 32; o *= 2) {
        V has = kb_ge(kb, lane, kb_i32(kb, o));
        for (int i = 0; i < 2; i++) {
            V up = nvvm_call(kb, "llvm.nvvm.shfl.sync.up.f32", kb->f32, (V[]){kb_i32(kb, -1), cum[i], kb_i32(kb, o), kb_i32(kb, 0)}, 4);
            cum[i] = kb_add(kb, cum[i], kb_select(kb, has, up, zero));
        }
    }
    cum[1] = kb_add(kb, cum[1], nvvm_shfl_idx(kb, cum[0], kb_i32(kb, 31)));
    V cumT = nvvm_shfl_idx(kb, cum[1], kb_i32(kb, 31));
    for (int i = 0; i < 2; i++) {
        V r = kb_add(kb, lane, kb_i32(kb, 32 * i));
        if (dto >= 0)
            kb_store(kb, dt[i], kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, dto)), r));
        if (cumo >= 0)
            kb_store(kb, cum[i], kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, cumo)), r));
        kb_store(kb, kb_mul(kb, fexp(kb, kb_sub(kb, cumT, cum[i])), dt[i]),
                 kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, wo)), r));
    }
    return cumT;
}

/* Writes the bf16 copy of the state tile of this warp into Sb. */
static void write_sb(KB *kb, const Lay *L, V sm0, V sn0, int smi, int sni, KVar S[MMA_MAX_MI][MMA_MAX_NI][4])
{
    for (int i = 0; i < smi; i++)
        for (int j = 0; j < sni; j++)
            for (int e = 0; e < 4; e += 2) { /* (e, e+1) are adjacent columns: one 4-byte store */
                V p = kb_add(kb, sm0, mma_acc_row(kb, i, e)), n = kb_add(kb, sn0, mma_acc_col(kb, j, e));
                V off = kb_add(kb, kb_i32(kb, L->sb), kb_add(kb, kb_mul(kb, p, kb_i32(kb, L->ldn)), kb_mul(kb, n, kb_i32(kb, 2))));
                kb_store(kb, kb_pack_bf16x2(kb, kb_get(kb, S[i][j][e]), kb_get(kb, S[i][j][e + 1])), kb_smem(kb, off));
            }
}

bool emit_scan_tc(Codegen *cg, const Mx *m, int segs, int stages, char **ptx, Diag *d)
{
    assert(stages == 1 || stages == 2);
    Lay L = layout(m, stages);
    int P = (int)m->P, N = (int)m->N, W = (int)m->W;
    int pairs = P / 2; /* x conv: (channel pair, row segment) per thread */
    bool one = stages == 1;
    KB *kb = kb_new(cg->ctx, "mamba2_scan_tc",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR,
                                   KP_PTR, KP_PTR, KP_I32, KP_I32},
                    14, THREADS);
    int per_sm = scan_tc_per_sm(m, stages, cg->target->smem_max);
    if (per_sm == 2) /* two blocks an SM: 128 registers a thread */
        LLVMAddTargetDependentFunctionAttr(kb->fn, "nvvm.minctasm", "2");
    V raw = kb_param(kb, 0), cw = kb_param(kb, 1), cbias = kb_param(kb, 2), dtb = kb_param(kb, 3);
    V alog = kb_param(kb, 4), Dp = kb_param(kb, 5), ring = kb_param(kb, 6), ssm = kb_param(kb, 7);
    V posp = kb_param(kb, 8), out = kb_param(kb, 9), scr = kb_param(kb, 10), sega = kb_param(kb, 11);
    V batch = kb_param(kb, 12), seq = kb_param(kb, 13);
    V tid = nvvm_tid_x(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    V h, b, ks;
    seg_block(kb, m, batch, &b, &h, &ks);
    /* this block's segment: chunks [c0, c1) of the call's nseg */
    V nseg = seg_count(kb, m, segs, per_sm, batch, seq), nchunks = seg_nchunks(kb, seq);
    kb_if(kb, kb_lt(kb, ks, nseg)); /* blocks past the call's segments have nothing to do */
    V c0 = seg_first_chunk(kb, ks, nseg, nchunks), c1 = seg_first_chunk(kb, kb_add(kb, ks, kb_i32(kb, 1)), nseg, nchunks);
    V ts = kb_mul(kb, c0, kb_i32(kb, TC));
    V wm = kb_div(kb, warp, kb_i32(kb, 4)), wn = kb_rem(kb, warp, kb_i32(kb, 4));
    V pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
    V A = kb_neg(kb, kb_exp(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, alog, h))));
    V Dh = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, Dp, h));
    V dtbias = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, dtb, h));
    V zero = kb_f32(kb, 0);
    /* one stage: history rows k = 0 .. W-2 of buffer i at hist + i·(W-1)·ldh + k·ldh, addressed
     * as rows TC-(W-1)+k from hist_at(i) (scan_conv_x's and scan_stage_history's row numbers) */
#define HIST_AT(i) kb_add(kb, kb_i32(kb, L.hist - (TC - (W - 1)) * L.ldh), kb_mul(kb, (i), kb_i32(kb, (W - 1) * L.ldh)))

    /* the segment's first chunk on its way before anything else */
    scan_prefetch_rows(kb, m, L.stage, L.ldr, SCAN_ROW_ALL, raw, scr, b, h, seq, ts, kb_i32(kb, 0), tid);
    nvvm_cp_async_commit(kb);
    kb_if(kb, kb_lt(kb, tid, kb_i32(kb, TC)));
    kb_store(kb, scan_load_dt_raw(kb, m, raw, b, h, seq, ts, tid), sf(kb, L.dtraw, tid));
    kb_endif(kb);
    /* the conv history of the x channels (rows before the segment, or the ring) as the last W-1
     * rows of stage 1, or into history buffer 0 */
    if (one)
        scan_stage_history(kb, m, HIST_AT(kb_i32(kb, 0)), L.ldh, raw, ring, b, h, pos, seq, ts, tid);
    else
        scan_stage_history(kb, m, kb_i32(kb, L.stage + TC * L.ldr), L.ldr, raw, ring, b, h, pos, seq, ts, tid);

    /* State tile of this warp: rows p in [sm0, sm0 + P/2), cols n in [sn0, sn0 + N/4). */
    int smi = P / 32, sni = N / 32;
    V sm0 = kb_mul(kb, wm, kb_i32(kb, P / 2)), sn0 = kb_mul(kb, wn, kb_i32(kb, N / 4));
    V sbase = kb_mul(kb, kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->H)), h)), kb_i64(kb, (int64_t)P * N));
    KVar S[MMA_MAX_MI][MMA_MAX_NI][4];
    for (int i = 0; i < smi; i++)
        for (int j = 0; j < sni; j++)
            for (int e = 0; e < 4; e++)
                S[i][j][e] = kb_var(kb, kb->f32, zero);
    /* the state before the segment: the call's initial state (one segment),
     * or S_in(k) folded from the segment states of mamba2_seg_state */
    kb_if(kb, kb_eq(kb, nseg, kb_i32(kb, 1)));
    seg_state_load(kb, m, ssm, sbase, sm0, sn0, smi, sni, S, NULL);
    kb_else(kb);
    seg_state_fold(kb, m, sega, b, h, nseg, ks, sm0, sn0, smi, sni, S);
    kb_endif(kb);
    write_sb(kb, &L, sm0, sn0, smi, sni, S);

    /* x conv of this thread: channel pair (2cq, 2cq+1), rows [seg·rps, seg·rps + rps) */
    V cq = kb_rem(kb, tid, kb_i32(kb, pairs)), seg = kb_div(kb, tid, kb_i32(kb, pairs));
    V cwv[2][8], cbv[2]; /* held across chunks (two stages), or loaded per chunk from L1 (one: 128 registers) */
    if (!one)
        scan_conv_weights(kb, m, cw, cbias, h, cq, cwv, cbv);

    KVar ci = kb_for(kb, c0, c1, kb_i32(kb, 1));
    {
        V c = kb_get(kb, ci);
        if (one)
            scan_conv_weights(kb, m, cw, cbias, h, cq, cwv, cbv);
        V t0 = kb_mul(kb, c, kb_i32(kb, TC));
        V stg = kb_rem(kb, kb_sub(kb, c, c0), kb_i32(kb, 2)), other = kb_sub(kb, kb_i32(kb, 1), stg);
        V tc = kb_min(kb, kb_i32(kb, TC), kb_sub(kb, seq, t0));
        V rows, prev; /* this chunk's staged rows; where its conv history rows are numbered from */
        if (one) {
            rows = kb_i32(kb, L.stage);
            prev = HIST_AT(stg);
        } else {
            rows = kb_add(kb, kb_i32(kb, L.stage), kb_mul(kb, stg, kb_i32(kb, TC * L.ldr)));
            prev = kb_add(kb, kb_i32(kb, L.stage), kb_mul(kb, other, kb_i32(kb, TC * L.ldr)));
        }
        int ldp = one ? L.ldh : L.ldr;
        V more = kb_lt(kb, kb_add(kb, c, kb_i32(kb, 1)), c1);
        V t1 = kb_add(kb, t0, kb_i32(kb, TC));
        nvvm_cp_async_wait(kb, 0);
        nvvm_bar_sync(kb); /* this chunk's rows are in; the last chunk is done with smem */
        /* ---- conv + SiLU of the x channels ---- */
        scan_conv_x(kb, m, rows, L.ldr, prev, ldp, cq, seg, cwv, cbv, L.x, L.ldx, -1);
        if (one) { /* the next chunk's conv history: this chunk's last W-1 raw x rows, into the other buffer */
            V hn = HIST_AT(other);
            KVar hq = kb_for(kb, tid, kb_i32(kb, (W - 1) * pairs), kb_i32(kb, THREADS));
            {
                V hv = kb_get(kb, hq), k = kb_div(kb, hv, kb_i32(kb, pairs)), cb = kb_mul(kb, kb_rem(kb, hv, kb_i32(kb, pairs)), kb_i32(kb, 4));
                V r = kb_add(kb, k, kb_i32(kb, TC - (W - 1)));
                V v = kb_load(kb, kb->i32, kb_smem(kb, kb_add(kb, rows, kb_add(kb, kb_mul(kb, r, kb_i32(kb, L.ldr)), cb))));
                kb_store(kb, v, kb_smem(kb, kb_add(kb, hn, kb_add(kb, kb_mul(kb, r, kb_i32(kb, L.ldh)), cb))));
            }
            kb_endfor(kb);
        }
        /* ---- warp 0: dt, cum = inclusive scan of dt·A, w_s = exp(cum_T - cum_s)·dt_s ---- */
        kb_if(kb, kb_eq(kb, warp, kb_i32(kb, 0)));
        scan_chunk_decay(kb, m, lane, kb_add(kb, kb_i32(kb, L.dtraw), kb_mul(kb, stg, kb_i32(kb, 4 * TC))), dtbias, A, tc,
                         L.dt, L.cum, L.w);
        kb_endif(kb);
        nvvm_bar_sync(kb);
        /* ---- the next chunk's rows on their way: all of them into the other stage, or
         * with one stage its x (read by now; B, C and z are read until the chunk's end) ---- */
        kb_if(kb, more);
        if (one)
            scan_prefetch_rows(kb, m, L.stage, L.ldr, SCAN_ROW_X, raw, scr, b, h, seq, t1, kb_i32(kb, 0), tid);
        else
            scan_prefetch_rows(kb, m, L.stage, L.ldr, SCAN_ROW_ALL, raw, scr, b, h, seq, t1, other, tid);
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        KVar dtn = kb_var(kb, kb->f32, zero);
        kb_if(kb, kb_and(kb, more, kb_lt(kb, tid, kb_i32(kb, TC))));
        kb_set(kb, dtn, scan_load_dt_raw(kb, m, raw, b, h, seq, t1, tid));
        kb_endif(kb);
        /* ---- Xw = w∘X (A operand of the state update) ---- */
        KVar q = kb_for(kb, tid, kb_i32(kb, TC * P / 2), kb_i32(kb, THREADS));
        {
            V qv = kb_get(kb, q), s = kb_div(kb, qv, kb_i32(kb, P / 2)), p2 = kb_mul(kb, kb_rem(kb, qv, kb_i32(kb, P / 2)), kb_i32(kb, 2));
            V off = kb_add(kb, kb_mul(kb, s, kb_i32(kb, L.ldx)), kb_mul(kb, p2, kb_i32(kb, 2)));
            V x2 = kb_load_vec(kb, kb->bf16, 2, kb_smem(kb, kb_add(kb, off, kb_i32(kb, L.x))), 4);
            V ws = kb_load(kb, kb->f32, sf(kb, L.w, s));
            V a0 = kb_mul(kb, kb_bf16_to_f32(kb, kb_extract(kb, x2, 0)), ws);
            V a1 = kb_mul(kb, kb_bf16_to_f32(kb, kb_extract(kb, x2, 1)), ws);
            kb_store(kb, kb_pack_bf16x2(kb, a0, a1), kb_smem(kb, kb_add(kb, off, kb_i32(kb, L.xw))));
        }
        kb_endfor(kb);
        /* the staged B and C tiles of this chunk */
        Tile tB = {kb_add(kb, rows, kb_i32(kb, P * 2)), L.ldr, false};
        Tile tC = {kb_add(kb, rows, kb_i32(kb, (P + N) * 2)), L.ldr, false};
        /* ---- G = C·Bᵀ, causal mask and decay ---- */
        {
            KVar acc[MMA_MAX_MI][MMA_MAX_NI][4];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    for (int e = 0; e < 4; e++)
                        acc[i][j][e] = kb_var(kb, kb->f32, zero);
            V gm0 = kb_mul(kb, wm, kb_i32(kb, 32)), gn0 = kb_mul(kb, wn, kb_i32(kb, 16));
            mma_warp_tile(kb, tC, tB, gm0, gn0, kb_i32(kb, 0), 2, 2, N, acc);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    for (int e = 0; e < 4; e += 2) {
                        V t = kb_add(kb, gm0, mma_acc_row(kb, i, e));
                        V ct = kb_load(kb, kb->f32, sf(kb, L.cum, t));
                        V v[2];
                        for (int e2 = 0; e2 < 2; e2++) {
                            V s = kb_add(kb, gn0, mma_acc_col(kb, j, e + e2));
                            V dec = fexp(kb, kb_sub(kb, ct, kb_load(kb, kb->f32, sf(kb, L.cum, s))));
                            V x = kb_mul(kb, kb_mul(kb, kb_get(kb, acc[i][j][e + e2]), dec), kb_load(kb, kb->f32, sf(kb, L.dt, s)));
                            v[e2] = kb_select(kb, kb_le(kb, s, t), x, zero);
                        }
                        V s0 = kb_add(kb, gn0, mma_acc_col(kb, j, e));
                        V off = kb_add(kb, kb_i32(kb, L.g), kb_add(kb, kb_mul(kb, t, kb_i32(kb, L.ldg)), kb_mul(kb, s0, kb_i32(kb, 2))));
                        kb_store(kb, kb_pack_bf16x2(kb, v[0], v[1]), kb_smem(kb, off));
                    }
        }
        nvvm_bar_sync(kb);
        /* ---- Y = exp(cum_t)·C·Sᵀ + G·X + D·x, gated, stored: one set of accumulators,
         * C·Sᵀ first, its rows scaled by exp(cum_t), then G·X added on the tensor cores ---- */
        {
            int yni = P / 32;
            KVar ay[MMA_MAX_MI][MMA_MAX_NI][4];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < yni; j++)
                    for (int e = 0; e < 4; e++)
                        ay[i][j][e] = kb_var(kb, kb->f32, zero);
            V ym0 = kb_mul(kb, wm, kb_i32(kb, 32)), yn0 = kb_mul(kb, wn, kb_i32(kb, P / 4));
            Tile ts = {kb_i32(kb, L.sb), L.ldn, false};
            mma_warp_tile(kb, tC, ts, ym0, yn0, kb_i32(kb, 0), 2, yni, N, ay);
            for (int i = 0; i < 2; i++)
                for (int e = 0; e < 4; e += 2) { /* rows of elements e, e+1 */
                    V et = fexp(kb, kb_load(kb, kb->f32, sf(kb, L.cum, kb_add(kb, ym0, mma_acc_row(kb, i, e)))));
                    for (int j = 0; j < yni; j++)
                        for (int e2 = 0; e2 < 2; e2++)
                            kb_set(kb, ay[i][j][e + e2], kb_mul(kb, kb_get(kb, ay[i][j][e + e2]), et));
                }
            Tile tg = {kb_i32(kb, L.g), L.ldg, false}, tx = {kb_i32(kb, L.x), L.ldx, true};
            mma_warp_tile(kb, tg, tx, ym0, yn0, kb_i32(kb, 0), 2, yni, TC, ay);
            for (int i = 0; i < 2; i++)
                for (int e = 0; e < 4; e += 2) {
                    V t = kb_add(kb, ym0, mma_acc_row(kb, i, e));
                    kb_if(kb, kb_lt(kb, t, tc));
                    V row = kb_add(kb, kb_mul(kb, b, seq), kb_add(kb, t0, t));
                    V srow = kb_add(kb, rows, kb_mul(kb, t, kb_i32(kb, L.ldr)));
                    for (int j = 0; j < yni; j++) {
                        V p = kb_add(kb, yn0, mma_acc_col(kb, j, e)); /* columns p, p+1 */
                        V x2 = kb_load_vec(kb, kb->bf16, 2, kb_smem(kb, kb_add(kb, kb_i32(kb, L.x),
                                            kb_add(kb, kb_mul(kb, t, kb_i32(kb, L.ldx)), kb_mul(kb, p, kb_i32(kb, 2))))), 4);
                        V z2 = kb_load_vec(kb, kb->bf16, 2, kb_smem(kb, kb_add(kb, srow, kb_mul(kb, kb_add(kb, p, kb_i32(kb, P + 2 * N)), kb_i32(kb, 2)))), 4);
                        V y[2];
                        for (int e2 = 0; e2 < 2; e2++) {
                            V xt = kb_bf16_to_f32(kb, kb_extract(kb, x2, e2));
                            y[e2] = kb_fma(kb, Dh, xt, kb_get(kb, ay[i][j][e + e2]));
                            if (!m->nbg) /* gate by silu(z), z from the staged row */
                                y[e2] = kb_mul(kb, y[e2], fsilu(kb, kb_bf16_to_f32(kb, kb_extract(kb, z2, e2))));
                        }
                        V ooff = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Di)),
                                        kb_to_i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, P)), p)));
                        kb_store(kb, kb_pack_bf16x2(kb, y[0], y[1]), kb_gep(kb, kb->bf16, out, ooff));
                    }
                    kb_endif(kb);
                }
        }
        /* ---- S = exp(cum_T)·S + Xwᵀ·B ---- */
        {
            V decT = fexp(kb, kb_load(kb, kb->f32, sf(kb, L.cum, kb_i32(kb, TC - 1))));
            for (int i = 0; i < smi; i++)
                for (int j = 0; j < sni; j++)
                    for (int e = 0; e < 4; e++)
                        kb_set(kb, S[i][j][e], kb_mul(kb, kb_get(kb, S[i][j][e]), decT));
            Tile txw = {kb_i32(kb, L.xw), L.ldx, true}, tBt = {tB.base, L.ldr, true};
            mma_warp_tile(kb, txw, tBt, sm0, sn0, kb_i32(kb, 0), smi, sni, TC, S);
        }
        kb_if(kb, kb_lt(kb, tid, kb_i32(kb, TC))); /* the next chunk's dt, loaded long ago */
        kb_store(kb, kb_get(kb, dtn), sf(kb, L.dtraw, kb_add(kb, kb_mul(kb, other, kb_i32(kb, TC)), tid)));
        kb_endif(kb);
        nvvm_bar_sync(kb); /* everyone is done reading Sb (and the stage) */
        if (one) { /* the rest of the next chunk's rows into the stage */
            kb_if(kb, more);
            scan_prefetch_rows(kb, m, L.stage, L.ldr, SCAN_ROW_B | SCAN_ROW_C | SCAN_ROW_Z, raw, scr, b, h, seq, t1,
                               kb_i32(kb, 0), tid);
            kb_endif(kb);
            nvvm_cp_async_commit(kb);
        }
        write_sb(kb, &L, sm0, sn0, smi, sni, S);
    }
    kb_endfor(kb);
#undef HIST_AT
    kb_if(kb, kb_eq(kb, ks, kb_sub(kb, nseg, kb_i32(kb, 1)))); /* the last segment leaves the final state */
    seg_state_store(kb, m, ssm, sbase, sm0, sn0, smi, sni, S);
    kb_endif(kb);
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}
