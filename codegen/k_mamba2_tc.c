/* k_mamba2_tc.c — the Mamba2 prefill scan on tensor cores.
 *
 * Same work as k_mamba2.c's SIMT scan — one block (8 warps) per (head,
 * sequence), chunks of TC = 64 tokens in order — with every chunk product
 * on mma.sync (bf16 operands, fp32 accumulate) and the state in registers:
 *
 *   conv + SiLU   a thread per channel slides the d_conv window down the
 *                 chunk (one global load per input), bf16 X, B, C → smem
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

bool scan_tc_supported(const Mx *m)
{
    return (m->P == 64 || m->P == 128) && (m->N == 64 || m->N == 128 || m->N == 256) && m->W >= 2 && m->W <= 8;
}

/* Shared-memory layout (byte offsets); bf16 tiles padded by 16 bytes per row. */
typedef struct Lay {
    int x, xw, b, c, g, sb; /* tiles: X [TC][P], Xw [TC][P], B [TC][N], C [TC][N], G [TC][TC], Sb [P][N] */
    int ldx, ldn, ldg;      /* row strides of the P-wide, N-wide and TC-wide tiles */
    int dt, cum, w;         /* f32 vectors [TC] */
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
    l.total = l.w + 4 * TC;
    return l;
}

unsigned scan_tc_smem(const Mx *m) { return (unsigned)layout(m).total; }

static V sf(KB *kb, int off, V idx) /* &f32 smem[off + 4*idx] */
{
    return kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, off)), idx);
}

static V sbf(KB *kb, V byte_off) { return kb_smem(kb, byte_off); }

/* Raw xBC input of channel gch at row u (relative to this call) of sequence b:
 * from zxbcdt for u >= 0, else from the conv ring. */
static V raw_input(KB *kb, const Mx *m, V raw, V ring, V b, V seq, V pos, V u, V gch)
{
    KVar v = kb_var(kb, kb->f32, NULL);
    kb_if(kb, kb_ge(kb, u, kb_i32(kb, 0)));
    {
        V row = kb_add(kb, kb_mul(kb, b, seq), u);
        V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)),
                       kb_to_i64(kb, kb_add(kb, gch, kb_i32(kb, m->Di))));
        kb_set(kb, v, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off))));
    }
    kb_else(kb);
    {
        V slot = ring_slot(kb, m, kb_add(kb, pos, u));
        V off = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), gch), kb_i32(kb, m->W)), slot);
        kb_set(kb, v, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ring, off)));
    }
    kb_endif(kb);
    return kb_get(kb, v);
}

bool emit_scan_tc(Codegen *cg, const Mx *m, char **ptx, Diag *d)
{
    Lay L = layout(m);
    int P = (int)m->P, N = (int)m->N, W = (int)m->W;
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
    V zero = kb_f32(kb, 0);

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

    KVar c0 = kb_for(kb, kb_i32(kb, 0), seq, kb_i32(kb, TC));
    {
        V t0 = kb_get(kb, c0);
        V tc = kb_min(kb, kb_i32(kb, TC), kb_sub(kb, seq, t0));
        nvvm_bar_sync(kb);
        /* ---- conv + SiLU: a thread per channel slides the window down the chunk ---- */
        KVar ch = kb_for(kb, tid, kb_i32(kb, m->CP), kb_i32(kb, THREADS));
        {
            V chv = kb_get(kb, ch), gch = head_channel(kb, m, h, chv);
            V wk[8];
            for (int k = 0; k < W; k++)
                wk[k] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cw, kb_add(kb, kb_mul(kb, gch, kb_i32(kb, W)), kb_i32(kb, k))));
            V bias = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cbias, gch));
            /* destination column: X, B or C tile */
            V isx = kb_lt(kb, chv, kb_i32(kb, P)), isb = kb_lt(kb, chv, kb_i32(kb, P + N));
            V col = kb_select(kb, isx, chv, kb_select(kb, isb, kb_sub(kb, chv, kb_i32(kb, P)), kb_sub(kb, chv, kb_i32(kb, P + N))));
            V base = kb_select(kb, isx, kb_i32(kb, L.x), kb_select(kb, isb, kb_i32(kb, L.b), kb_i32(kb, L.c)));
            V ld = kb_select(kb, isx, kb_i32(kb, L.ldx), kb_i32(kb, L.ldn));
            base = kb_add(kb, base, kb_mul(kb, col, kb_i32(kb, 2)));
            KVar win[8]; /* the W-1 inputs before the current row */
            for (int k = 0; k < W - 1; k++)
                win[k] = kb_var(kb, kb->f32, raw_input(kb, m, raw, ring, b, seq, pos, kb_add(kb, t0, kb_i32(kb, k - (W - 1))), gch));
            KVar tb = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, TC), kb_i32(kb, UNROLL));
            {
                V tbv = kb_get(kb, tb);
                V xs[UNROLL];
                for (int u = 0; u < UNROLL; u++) { /* all loads first */
                    V t = kb_add(kb, tbv, kb_i32(kb, u));
                    V row = kb_add(kb, kb_mul(kb, b, seq), kb_add(kb, t0, kb_min(kb, t, kb_sub(kb, tc, kb_i32(kb, 1)))));
                    V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)),
                                   kb_to_i64(kb, kb_add(kb, gch, kb_i32(kb, m->Di))));
                    V v = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off)));
                    xs[u] = kb_select(kb, kb_lt(kb, t, tc), v, zero);
                }
                V wv[8];
                for (int k = 0; k < W - 1; k++)
                    wv[k] = kb_get(kb, win[k]);
                for (int u = 0; u < UNROLL; u++) {
                    V t = kb_add(kb, tbv, kb_i32(kb, u));
                    V acc = bias;
                    for (int k = 0; k < W - 1; k++)
                        acc = kb_fma(kb, wk[k], wv[k], acc);
                    acc = kb_fma(kb, wk[W - 1], xs[u], acc);
                    V y = kb_select(kb, kb_lt(kb, t, tc), kb_silu(kb, acc), zero);
                    kb_store(kb, kb_f32_to_bf16(kb, y), sbf(kb, kb_add(kb, base, kb_mul(kb, t, ld))));
                    for (int k = 0; k + 1 < W - 1; k++)
                        wv[k] = wv[k + 1];
                    wv[W - 2] = xs[u];
                }
                for (int k = 0; k < W - 1; k++)
                    kb_set(kb, win[k], wv[k]);
            }
            kb_endfor(kb);
        }
        kb_endfor(kb);
        /* ---- dt and dt·A ---- */
        kb_if(kb, kb_lt(kb, tid, kb_i32(kb, TC)));
        {
            KVar v = kb_var(kb, kb->f32, zero);
            kb_if(kb, kb_lt(kb, tid, tc));
            kb_set(kb, v, dt_value(kb, m, raw, dtb, h, kb_add(kb, kb_mul(kb, b, seq), kb_add(kb, t0, tid))));
            kb_endif(kb);
            kb_store(kb, kb_get(kb, v), sf(kb, L.dt, tid));
            kb_store(kb, kb_mul(kb, kb_get(kb, v), A), sf(kb, L.cum, tid));
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
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
                            store_y(kb, m, raw, out, row, h, p, y);
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
