/* k_mamba2_tc.c — the Mamba2 prefill scan on tensor cores.
 *
 * Same work as k_mamba2.c's SIMT scan — one block (8 warps) per (head,
 * sequence), chunks of TC = 64 tokens in order — with every chunk product
 * on mma.sync (bf16 operands, fp32 accumulate) and the state in registers:
 *
 *   prefetch      the next chunk's raw x, B, C, z rows (cp.async into the other
 *                 half of a double buffer) and its dt (a plain load, stored late),
 *                 so no global latency sits on the chunk-to-chunk path
 *   conv + SiLU   a thread per channel slides the d_conv window down the chunk
 *                 from the staged rows; the window stays in its registers from
 *                 chunk to chunk (read from the conv ring once, at the start)
 *   cumsum        warp 0: cum = inclusive scan of dt·A; w_s = exp(cum_T − cum_s)·dt_s
 *   G = C·Bᵀ      (TC×TC, k = N), masked s ≤ t and scaled by exp(cum_t − cum_s)·dt_s → bf16
 *   Y = G·X + exp(cum_t)·(C·Sᵀ) + D·x     (TC×P; S from the bf16 copy of the state)
 *   S = exp(cum_T)·S + (w∘X)ᵀ·B           (P×N accumulators held by the warps across chunks)
 *
 * The state never leaves registers between chunks; a bf16 copy in shared
 * memory feeds C·Sᵀ. Shapes: TC = 64, P ∈ {64, 128}, N ∈ {64, 128, 256}
 * (k_mamba2.c falls back to the SIMT scan otherwise). Warps are 2×4 over
 * each product's output tile. */
#include "kernels.h"
#include "mamba2_common.h"
#include "mma.h"
#include "nvvm.h"

enum { TC = 64, THREADS = 256, UNROLL = 8 }; /* chunk, block size, conv unroll */

/* Bytes per cp.async piece: 16 when zxbcdt rows are 16-byte aligned, else 4. */
static int piece_bytes(const Mx *m) { return m->Din % 8 == 0 ? 16 : m->Din % 2 == 0 ? 4 : 0; }

/* Shared-memory layout (byte offsets); bf16 tiles padded by 16 bytes per row. */
typedef struct Lay {
    int x, xw, b, c, g, sb; /* tiles: X [TC][P], Xw [TC][P], B [TC][N], C [TC][N], G [TC][TC], Sb [P][N] */
    int ldx, ldn, ldg;      /* row strides of the P-wide, N-wide and TC-wide tiles */
    int dt, cum, w;         /* f32 vectors [TC] */
    int stage, ldr;         /* raw rows, 2 × [TC][x P | B N | C N | z P] bf16; row stride */
    int dtraw;              /* raw dt, 2 × [TC] f32 */
    int total;              /* bytes */
} Lay;

static Lay layout(const Mx *m)
{
    Lay l;
    l.ldx = (int)(m->P + 8) * 2;
    l.ldn = (int)(m->N + 8) * 2;
    l.ldg = (TC + 8) * 2;
    l.x = 0;
    l.xw = l.x + TC * l.ldx;
    l.b = l.xw + TC * l.ldx;
    l.c = l.b + TC * l.ldn;
    l.g = l.c + TC * l.ldn;
    l.sb = l.g + TC * l.ldg;
    l.dt = l.sb + (int)m->P * l.ldn;
    l.cum = l.dt + 4 * TC;
    l.w = l.cum + 4 * TC;
    l.ldr = (int)(2 * m->P + 2 * m->N) * 2;
    l.stage = l.w + 4 * TC;
    l.dtraw = l.stage + 2 * TC * l.ldr;
    l.total = l.dtraw + 2 * 4 * TC;
    return l;
}

bool scan_tc_supported(const Mx *m, int smem_max)
{
    return (m->P == 64 || m->P == 128) && (m->N == 64 || m->N == 128 || m->N == 256) && m->W >= 2 && m->W <= 8 &&
           piece_bytes(m) > 0 && layout(m).total <= smem_max;
}

unsigned scan_tc_smem(const Mx *m) { return (unsigned)layout(m).total; }

static V sf(KB *kb, int off, V idx) /* &f32 smem[off + 4*idx] */
{
    return kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, off)), idx);
}

static V sbf(KB *kb, V byte_off) { return kb_smem(kb, byte_off); }

/* Issues the cp.async copies of chunk rows [t0, t0 + TC) of sequence b, head h
 * into stage `st`: per row x (P), B and C of the group (N each), z (P); rows
 * past seq are zero-filled. */
static void prefetch_rows(KB *kb, const Mx *m, const Lay *L, V raw, V b, V h, V seq, V t0, V st, V tid)
{
    int pb = piece_bytes(m), pe = pb / 2; /* bytes and elements per piece */
    int P = (int)m->P, N = (int)m->N, per_row = (2 * P + 2 * N) / pe;
    V g = kb_div(kb, h, kb_i32(kb, m->H / m->G));
    V src_x = kb_add(kb, kb_i32(kb, m->Di), kb_mul(kb, h, kb_i32(kb, P)));
    V src_b = kb_add(kb, kb_i32(kb, 2 * m->Di), kb_mul(kb, g, kb_i32(kb, N)));
    V src_c = kb_add(kb, kb_i32(kb, 2 * m->Di + m->GN), kb_mul(kb, g, kb_i32(kb, N)));
    V src_z = kb_mul(kb, h, kb_i32(kb, P));
    V sbase = kb_add(kb, kb_i32(kb, L->stage), kb_mul(kb, st, kb_i32(kb, TC * L->ldr)));
    KVar e = kb_for(kb, tid, kb_i32(kb, TC * per_row), kb_i32(kb, THREADS));
    {
        V ev = kb_get(kb, e), t = kb_div(kb, ev, kb_i32(kb, per_row)), q = kb_rem(kb, ev, kb_i32(kb, per_row));
        V c = kb_mul(kb, q, kb_i32(kb, pe)); /* element column in the staged row */
        V col = kb_select(kb, kb_lt(kb, c, kb_i32(kb, P)), kb_add(kb, src_x, c),
                kb_select(kb, kb_lt(kb, c, kb_i32(kb, P + N)), kb_add(kb, src_b, kb_sub(kb, c, kb_i32(kb, P))),
                kb_select(kb, kb_lt(kb, c, kb_i32(kb, P + 2 * N)), kb_add(kb, src_c, kb_sub(kb, c, kb_i32(kb, P + N))),
                                    kb_add(kb, src_z, kb_sub(kb, c, kb_i32(kb, P + 2 * N))))));
        V tt = kb_add(kb, t0, t);
        V ok = kb_lt(kb, tt, seq);
        V row = kb_add(kb, kb_mul(kb, b, seq), kb_select(kb, ok, tt, kb_i32(kb, 0)));
        V gp = kb_gep(kb, kb->bf16, raw, kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_to_i64(kb, col)));
        V sp = kb_smem(kb, kb_add(kb, sbase, kb_add(kb, kb_mul(kb, t, kb_i32(kb, L->ldr)), kb_mul(kb, c, kb_i32(kb, 2)))));
        V bytes = kb_select(kb, ok, kb_i32(kb, pb), kb_i32(kb, 0));
        if (pb == 16)
            nvvm_cp_async16(kb, sp, gp, bytes);
        else
            nvvm_cp_async4(kb, sp, gp, bytes);
    }
    kb_endfor(kb);
}

/* Raw dt of head h at chunk row tid (threads < TC): the value, 0 past seq. */
static V load_dt_raw(KB *kb, const Mx *m, V raw, V b, V h, V seq, V t0, V tid)
{
    V tt = kb_add(kb, t0, tid);
    V ok = kb_lt(kb, tt, seq);
    V row = kb_add(kb, kb_mul(kb, b, seq), kb_select(kb, ok, tt, kb_i32(kb, 0)));
    V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_to_i64(kb, kb_add(kb, h, kb_i32(kb, m->Di + m->CD))));
    return kb_select(kb, ok, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off))), kb_f32(kb, 0));
}

bool emit_scan_tc(Codegen *cg, const Mx *m, char **ptx, Diag *d)
{
    Lay L = layout(m);
    int P = (int)m->P, N = (int)m->N, W = (int)m->W, CP = (int)m->CP;
    int slots = (CP + THREADS - 1) / THREADS; /* channels per thread */
    KB *kb = kb_new(cg->ctx, "mamba2_scan_tc",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32},
                    11, THREADS);
    V raw = kb_param(kb, 0), cw = kb_param(kb, 1), cbias = kb_param(kb, 2), dtb = kb_param(kb, 3);
    V alog = kb_param(kb, 4), Dp = kb_param(kb, 5), ring = kb_param(kb, 6), ssm = kb_param(kb, 7);
    V posp = kb_param(kb, 8), out = kb_param(kb, 9), seq = kb_param(kb, 10);
    V tid = nvvm_tid_x(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    V h = nvvm_ctaid_x(kb), b = nvvm_ctaid_y(kb);
    V wm = kb_div(kb, warp, kb_i32(kb, 4)), wn = kb_rem(kb, warp, kb_i32(kb, 4));
    V pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
    V A = kb_neg(kb, kb_exp(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, alog, h))));
    V Dh = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, Dp, h));
    V dtbias = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, dtb, h));
    V zero = kb_f32(kb, 0);

    /* chunk 0 on its way before anything else */
    prefetch_rows(kb, m, &L, raw, b, h, seq, kb_i32(kb, 0), kb_i32(kb, 0), tid);
    nvvm_cp_async_commit(kb);
    kb_if(kb, kb_lt(kb, tid, kb_i32(kb, TC)));
    kb_store(kb, load_dt_raw(kb, m, raw, b, h, seq, kb_i32(kb, 0), tid), sf(kb, L.dtraw, tid));
    kb_endif(kb);

    /* State tile of this warp: rows p in [sm0, sm0 + P/2), cols n in [sn0, sn0 + N/4). */
    int smi = P / 32, sni = N / 32;
    V sm0 = kb_mul(kb, wm, kb_i32(kb, P / 2)), sn0 = kb_mul(kb, wn, kb_i32(kb, N / 4));
    V sbase = kb_mul(kb, kb_to_i64(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->H)), h)), kb_i64(kb, (int64_t)P * N));
    KVar S[MMA_MAX_MI][MMA_MAX_NI][4];
    for (int i = 0; i < smi; i++)
        for (int j = 0; j < sni; j++)
            for (int e = 0; e < 4; e++) {
                V p = kb_add(kb, sm0, mma_acc_row(kb, i, e)), n = kb_add(kb, sn0, mma_acc_col(kb, j, e));
                V off = kb_add(kb, sbase, kb_to_i64(kb, kb_add(kb, kb_mul(kb, p, kb_i32(kb, N)), n)));
                S[i][j][e] = kb_var(kb, kb->f32, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ssm, off)));
            }
    /* Writes the bf16 copy of the state for C·Sᵀ. */
#define WRITE_SB()                                                                                                  \
    for (int i = 0; i < smi; i++)                                                                                   \
        for (int j = 0; j < sni; j++)                                                                               \
            for (int e = 0; e < 4; e++) {                                                                           \
                V p = kb_add(kb, sm0, mma_acc_row(kb, i, e)), n = kb_add(kb, sn0, mma_acc_col(kb, j, e));           \
                V off = kb_add(kb, kb_i32(kb, L.sb), kb_add(kb, kb_mul(kb, p, kb_i32(kb, L.ldn)), kb_mul(kb, n, kb_i32(kb, 2)))); \
                kb_store(kb, kb_f32_to_bf16(kb, kb_get(kb, S[i][j][e])), sbf(kb, off));                             \
            }
    WRITE_SB();

    /* Conv channels of this thread (tid + 256·j): weights, bias, tile column, and the
     * window of the W-1 inputs before the current row, read once from the ring. */
    V wk[4][8], bias[4], dst[4], dld[4], chv[4], act[4];
    KVar win[4][8];
    for (int j = 0; j < slots; j++) {
        chv[j] = kb_add(kb, tid, kb_i32(kb, j * THREADS));
        act[j] = kb_lt(kb, chv[j], kb_i32(kb, CP));
        V ch = kb_min(kb, chv[j], kb_i32(kb, CP - 1));
        V gch = head_channel(kb, m, h, ch);
        for (int k = 0; k < W; k++)
            wk[j][k] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cw, kb_add(kb, kb_mul(kb, gch, kb_i32(kb, W)), kb_i32(kb, k))));
        bias[j] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cbias, gch));
        V isx = kb_lt(kb, ch, kb_i32(kb, P)), isb = kb_lt(kb, ch, kb_i32(kb, P + N));
        V col = kb_select(kb, isx, ch, kb_select(kb, isb, kb_sub(kb, ch, kb_i32(kb, P)), kb_sub(kb, ch, kb_i32(kb, P + N))));
        dst[j] = kb_add(kb, kb_select(kb, isx, kb_i32(kb, L.x), kb_select(kb, isb, kb_i32(kb, L.b), kb_i32(kb, L.c))),
                        kb_mul(kb, col, kb_i32(kb, 2)));
        dld[j] = kb_select(kb, isx, kb_i32(kb, L.ldx), kb_i32(kb, L.ldn));
        for (int k = 0; k < W - 1; k++) {
            V slot = ring_slot(kb, m, kb_add(kb, pos, kb_i32(kb, k - (W - 1))));
            V off = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), gch), kb_i32(kb, W)), slot);
            win[j][k] = kb_var(kb, kb->f32, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ring, off)));
        }
    }

    V nchunks = kb_div(kb, kb_add(kb, seq, kb_i32(kb, TC - 1)), kb_i32(kb, TC));
    KVar ci = kb_for(kb, kb_i32(kb, 0), nchunks, kb_i32(kb, 1));
    {
        V c = kb_get(kb, ci);
        V t0 = kb_mul(kb, c, kb_i32(kb, TC));
        V stg = kb_rem(kb, c, kb_i32(kb, 2));
        V tc = kb_min(kb, kb_i32(kb, TC), kb_sub(kb, seq, t0));
        V rows = kb_add(kb, kb_i32(kb, L.stage), kb_mul(kb, stg, kb_i32(kb, TC * L.ldr)));
        nvvm_cp_async_wait(kb, 0);
        nvvm_bar_sync(kb); /* this chunk's rows are in; the last chunk is done with smem */
        /* ---- conv + SiLU from the staged rows ---- */
        for (int j = 0; j < slots; j++) {
            bool guard = (j + 1) * THREADS > CP;
            if (guard)
                kb_if(kb, act[j]);
            KVar tb = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, TC), kb_i32(kb, UNROLL));
            {
                V tbv = kb_get(kb, tb);
                V wv[8];
                for (int k = 0; k < W - 1; k++)
                    wv[k] = kb_get(kb, win[j][k]);
                for (int u = 0; u < UNROLL; u++) {
                    V t = kb_add(kb, tbv, kb_i32(kb, u));
                    V xin = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_smem(kb, kb_add(kb, rows,
                                kb_add(kb, kb_mul(kb, t, kb_i32(kb, L.ldr)), kb_mul(kb, chv[j], kb_i32(kb, 2)))))));
                    V acc = bias[j];
                    for (int k = 0; k < W - 1; k++)
                        acc = kb_fma(kb, wk[j][k], wv[k], acc);
                    acc = kb_fma(kb, wk[j][W - 1], xin, acc);
                    kb_store(kb, kb_f32_to_bf16(kb, kb_silu(kb, acc)), sbf(kb, kb_add(kb, dst[j], kb_mul(kb, t, dld[j]))));
                    for (int k = 0; k + 1 < W - 1; k++)
                        wv[k] = wv[k + 1];
                    wv[W - 2] = xin;
                }
                for (int k = 0; k < W - 1; k++)
                    kb_set(kb, win[j][k], wv[k]);
            }
            kb_endfor(kb);
            if (guard)
                kb_endif(kb);
        }
        /* ---- dt and dt·A (0 past the end of the sequence) ---- */
        kb_if(kb, kb_lt(kb, tid, kb_i32(kb, TC)));
        {
            V r = kb_load(kb, kb->f32, sf(kb, L.dtraw, kb_add(kb, kb_mul(kb, stg, kb_i32(kb, TC)), tid)));
            V v = kb_min(kb, kb_max(kb, kb_softplus(kb, kb_add(kb, r, dtbias)), kb_f32(kb, m->dt_min)), kb_f32(kb, m->dt_max));
            v = kb_select(kb, kb_lt(kb, tid, tc), v, zero);
            kb_store(kb, v, sf(kb, L.dt, tid));
            kb_store(kb, kb_mul(kb, v, A), sf(kb, L.cum, tid));
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
        /* ---- the next chunk's rows on their way (the other stage is free now) ---- */
        V more = kb_lt(kb, kb_add(kb, c, kb_i32(kb, 1)), nchunks);
        V t1 = kb_add(kb, t0, kb_i32(kb, TC)), other = kb_sub(kb, kb_i32(kb, 1), stg);
        kb_if(kb, more);
        prefetch_rows(kb, m, &L, raw, b, h, seq, t1, other, tid);
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        KVar dtn = kb_var(kb, kb->f32, zero);
        kb_if(kb, kb_and(kb, more, kb_lt(kb, tid, kb_i32(kb, TC))));
        kb_set(kb, dtn, load_dt_raw(kb, m, raw, b, h, seq, t1, tid));
        kb_endif(kb);
        /* ---- warp 0: inclusive scan of dt·A, then w_s = exp(cum_T - cum_s)·dt_s ---- */
        kb_if(kb, kb_eq(kb, warp, kb_i32(kb, 0)));
        {
            V v0 = kb_load(kb, kb->f32, sf(kb, L.cum, lane));
            V v1 = kb_load(kb, kb->f32, sf(kb, L.cum, kb_add(kb, lane, kb_i32(kb, 32))));
            for (int o = 1; o < 32; o *= 2) {
                V up0 = nvvm_call(kb, "llvm.nvvm.shfl.sync.up.f32", kb->f32, (V[]){kb_i32(kb, -1), v0, kb_i32(kb, o), kb_i32(kb, 0)}, 4);
                V up1 = nvvm_call(kb, "llvm.nvvm.shfl.sync.up.f32", kb->f32, (V[]){kb_i32(kb, -1), v1, kb_i32(kb, o), kb_i32(kb, 0)}, 4);
                V has = kb_ge(kb, lane, kb_i32(kb, o));
                v0 = kb_add(kb, v0, kb_select(kb, has, up0, zero));
                v1 = kb_add(kb, v1, kb_select(kb, has, up1, zero));
            }
            v1 = kb_add(kb, v1, nvvm_shfl_idx(kb, v0, kb_i32(kb, 31)));
            V cumT = nvvm_shfl_idx(kb, v1, kb_i32(kb, 31));
            kb_store(kb, v0, sf(kb, L.cum, lane));
            kb_store(kb, v1, sf(kb, L.cum, kb_add(kb, lane, kb_i32(kb, 32))));
            V d0 = kb_load(kb, kb->f32, sf(kb, L.dt, lane));
            V d1 = kb_load(kb, kb->f32, sf(kb, L.dt, kb_add(kb, lane, kb_i32(kb, 32))));
            kb_store(kb, kb_mul(kb, kb_exp(kb, kb_sub(kb, cumT, v0)), d0), sf(kb, L.w, lane));
            kb_store(kb, kb_mul(kb, kb_exp(kb, kb_sub(kb, cumT, v1)), d1), sf(kb, L.w, kb_add(kb, lane, kb_i32(kb, 32))));
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
        /* ---- Xw = w∘X (A operand of the state update) ---- */
        KVar q = kb_for(kb, tid, kb_i32(kb, TC * P / 2), kb_i32(kb, THREADS));
        {
            V qv = kb_get(kb, q), s = kb_div(kb, qv, kb_i32(kb, P / 2)), p2 = kb_mul(kb, kb_rem(kb, qv, kb_i32(kb, P / 2)), kb_i32(kb, 2));
            V off = kb_add(kb, kb_mul(kb, s, kb_i32(kb, L.ldx)), kb_mul(kb, p2, kb_i32(kb, 2)));
            V x2 = kb_load_vec(kb, kb->bf16, 2, sbf(kb, kb_add(kb, off, kb_i32(kb, L.x))), 4);
            V ws = kb_load(kb, kb->f32, sf(kb, L.w, s));
            V a0 = kb_mul(kb, kb_bf16_to_f32(kb, kb_extract(kb, x2, 0)), ws);
            V a1 = kb_mul(kb, kb_bf16_to_f32(kb, kb_extract(kb, x2, 1)), ws);
            kb_store(kb, kb_pack_bf16x2(kb, a0, a1), kb_smem(kb, kb_add(kb, off, kb_i32(kb, L.xw))));
        }
        kb_endfor(kb);
        /* ---- G = C·Bᵀ, causal mask and decay ---- */
        {
            KVar acc[MMA_MAX_MI][MMA_MAX_NI][4];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    for (int e = 0; e < 4; e++)
                        acc[i][j][e] = kb_var(kb, kb->f32, zero);
            V gm0 = kb_mul(kb, wm, kb_i32(kb, 32)), gn0 = kb_mul(kb, wn, kb_i32(kb, 16));
            Tile tc_ = {kb_i32(kb, L.c), L.ldn, false}, tb_ = {kb_i32(kb, L.b), L.ldn, false};
            mma_warp_tile(kb, tc_, tb_, gm0, gn0, kb_i32(kb, 0), 2, 2, N, acc);
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < 2; j++)
                    for (int e = 0; e < 4; e++) {
                        V t = kb_add(kb, gm0, mma_acc_row(kb, i, e)), s = kb_add(kb, gn0, mma_acc_col(kb, j, e));
                        V dec = kb_exp(kb, kb_sub(kb, kb_load(kb, kb->f32, sf(kb, L.cum, t)), kb_load(kb, kb->f32, sf(kb, L.cum, s))));
                        V v = kb_mul(kb, kb_mul(kb, kb_get(kb, acc[i][j][e]), dec), kb_load(kb, kb->f32, sf(kb, L.dt, s)));
                        v = kb_select(kb, kb_le(kb, s, t), v, zero);
                        V off = kb_add(kb, kb_i32(kb, L.g), kb_add(kb, kb_mul(kb, t, kb_i32(kb, L.ldg)), kb_mul(kb, s, kb_i32(kb, 2))));
                        kb_store(kb, kb_f32_to_bf16(kb, v), sbf(kb, off));
                    }
        }
        nvvm_bar_sync(kb);
        /* ---- Y = G·X + exp(cum_t)·C·Sᵀ + D·x, gated, stored ---- */
        {
            int yni = P / 32;
            KVar ad[MMA_MAX_MI][MMA_MAX_NI][4], ao[MMA_MAX_MI][MMA_MAX_NI][4];
            for (int i = 0; i < 2; i++)
                for (int j = 0; j < yni; j++)
                    for (int e = 0; e < 4; e++) {
                        ad[i][j][e] = kb_var(kb, kb->f32, zero);
                        ao[i][j][e] = kb_var(kb, kb->f32, zero);
                    }
            V ym0 = kb_mul(kb, wm, kb_i32(kb, 32)), yn0 = kb_mul(kb, wn, kb_i32(kb, P / 4));
            Tile tg = {kb_i32(kb, L.g), L.ldg, false}, tx = {kb_i32(kb, L.x), L.ldx, true};
            mma_warp_tile(kb, tg, tx, ym0, yn0, kb_i32(kb, 0), 2, yni, TC, ad);
            Tile tc_ = {kb_i32(kb, L.c), L.ldn, false}, ts = {kb_i32(kb, L.sb), L.ldn, false};
            mma_warp_tile(kb, tc_, ts, ym0, yn0, kb_i32(kb, 0), 2, yni, N, ao);
            for (int i = 0; i < 2; i++)
                for (int e = 0; e < 4; e += 2) {
                    V t = kb_add(kb, ym0, mma_acc_row(kb, i, e));
                    kb_if(kb, kb_lt(kb, t, tc));
                    V et = kb_exp(kb, kb_load(kb, kb->f32, sf(kb, L.cum, t)));
                    V row = kb_add(kb, kb_mul(kb, b, seq), kb_add(kb, t0, t));
                    for (int j = 0; j < yni; j++)
                        for (int e2 = 0; e2 < 2; e2++) {
                            V p = kb_add(kb, yn0, mma_acc_col(kb, j, e + e2));
                            V xoff = kb_add(kb, kb_i32(kb, L.x), kb_add(kb, kb_mul(kb, t, kb_i32(kb, L.ldx)), kb_mul(kb, p, kb_i32(kb, 2))));
                            V xt = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, sbf(kb, xoff)));
                            V y = kb_add(kb, kb_fma(kb, et, kb_get(kb, ao[i][j][e + e2]), kb_get(kb, ad[i][j][e + e2])),
                                         kb_mul(kb, Dh, xt));
                            if (!m->nbg) { /* gate by silu(z), z from the staged row */
                                V zoff = kb_add(kb, rows, kb_add(kb, kb_mul(kb, t, kb_i32(kb, L.ldr)),
                                                                 kb_mul(kb, kb_add(kb, p, kb_i32(kb, P + 2 * N)), kb_i32(kb, 2))));
                                y = kb_mul(kb, y, kb_silu(kb, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_smem(kb, zoff)))));
                            }
                            V ooff = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Di)),
                                            kb_to_i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, P)), p)));
                            kb_store(kb, kb_f32_to_bf16(kb, y), kb_gep(kb, kb->bf16, out, ooff));
                        }
                    kb_endif(kb);
                }
        }
        /* ---- S = exp(cum_T)·S + Xwᵀ·B ---- */
        {
            V decT = kb_exp(kb, kb_load(kb, kb->f32, sf(kb, L.cum, kb_i32(kb, TC - 1))));
            for (int i = 0; i < smi; i++)
                for (int j = 0; j < sni; j++)
                    for (int e = 0; e < 4; e++)
                        kb_set(kb, S[i][j][e], kb_mul(kb, kb_get(kb, S[i][j][e]), decT));
            Tile txw = {kb_i32(kb, L.xw), L.ldx, true}, tb_ = {kb_i32(kb, L.b), L.ldn, true};
            mma_warp_tile(kb, txw, tb_, sm0, sn0, kb_i32(kb, 0), smi, sni, TC, S);
        }
        kb_if(kb, kb_lt(kb, tid, kb_i32(kb, TC))); /* the next chunk's dt, loaded long ago */
        kb_store(kb, kb_get(kb, dtn), sf(kb, L.dtraw, kb_add(kb, kb_mul(kb, other, kb_i32(kb, TC)), tid)));
        kb_endif(kb);
        nvvm_bar_sync(kb); /* everyone is done reading Sb */
        WRITE_SB();
    }
    kb_endfor(kb);
#undef WRITE_SB
    for (int i = 0; i < smi; i++) /* final state */
        for (int j = 0; j < sni; j++)
            for (int e = 0; e < 4; e++) {
                V p = kb_add(kb, sm0, mma_acc_row(kb, i, e)), n = kb_add(kb, sn0, mma_acc_col(kb, j, e));
                V off = kb_add(kb, sbase, kb_to_i64(kb, kb_add(kb, kb_mul(kb, p, kb_i32(kb, N)), n)));
                kb_store(kb, kb_get(kb, S[i][j][e]), kb_gep(kb, kb->f32, ssm, off));
            }
    (void)lane;
    return kb_emit_ptx(cg, kb, ptx, d);
}
