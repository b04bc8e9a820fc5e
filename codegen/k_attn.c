/* k_attn.c — dense causal grouped-query attention (op attn) on tensor cores.
 *
 *   attn_append   a block per token row: the row's k and v heads (channels
 *                 H·D .. (H+2·Hkv)·D of qkv) into the caches at pos + t.
 *   attn_fwd      prefill, flash-attention-2 style: a block per (query tile
 *                 of 16·warps rows, head, sequence); each warp owns 16 query
 *                 rows. Q (bf16) stays in shared memory; the kv head's K and
 *                 V rows come from the caches in tiles of `bn` keys, double-
 *                 buffered with cp.async, shared by the block's warps. Each
 *                 warp keeps its Q rows as mma A fragments in registers; per
 *                 tile it takes S = Q·Kᵀ (mma.sync m16n8k16, fp32), masks
 *                 keys after its rows' positions (only on tiles that reach
 *                 past its first query), keeps an online softmax (row max,
 *                 sum) in fp32 in the log2 domain (ex2), packs P (bf16)
 *                 from the S accumulators straight into A fragments and adds
 *                 P·V. Tiles entirely after a warp's queries are skipped.
 *                 GQA: head h reads kv head h / (H/Hkv).
 *   attn_decode   one token per sequence: a block per (key split, kv head,
 *                 sequence), 4 warps. The G = H/Hkv query heads sharing the
 *                 kv head form one m16 tile (G ≤ 16); the split's keys come in
 *                 tiles of 64, warp w takes keys 16w..16w+15 of each with its
 *                 own online softmax, and the warps are merged in shared
 *                 memory at the end. The split's unnormalised O, row max m
 *                 (log2 units) and sum l go to scratch [rows][splits][H][D + 2] (f32);
 *                 splits 0 = chosen per call from the batch (k_mla_decode.c's
 *                 rule: about 256 blocks).
 *   attn_combine  a block per (head, sequence): O = Σ_s 2^(m_s−M) O_s /
 *                 Σ_s 2^(m_s−M) l_s, bf16.
 * Head dims 64 and 128 (others are refused at compile time). */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "k_split_combine.h"
#include "kernels.h"
#include "mma.h"
#include "nvvm.h"
#include "passes.h" /* ATTN_DECODE_MAX_SPLITS */

enum {
    AP_THREADS = 128,
    DEC_WARPS = 4,
    DEC_KEYS = 64, /* keys per decode tile: 16 per warp */
    DEC_AUTO_BLOCKS = 256,
    MAX_SPLITS = ATTN_DECODE_MAX_SPLITS
};

typedef struct Att {
    int64_t H, Hkv, D;      /* heads, kv heads, head dim */
    int64_t G, W, KW;       /* heads per kv head, qkv row width (H+2Hkv)·D, cache row width Hkv·D */
    float scale;            /* softmax scale */
    bool decode;            /* one token per sequence: attn_decode + attn_combine */
    int warps;              /* warps per block (prefill: query rows / 16; decode: 4) */
    int bn;                 /* keys per staged tile */
    int wk;                 /* keys per warp per tile: bn (prefill) or 16 (decode) */
    int splits, gsplits;    /* decode: key splits (0 = auto) and the grid's / scratch's split stride */
    int ldd;                /* shared-memory row bytes of Q/K/V tiles: (D+8)·2 */
    int off_k, off_v;       /* byte offsets of the K and V double buffers (Q at 0) */
    unsigned smem;          /* dynamic shared memory bytes */
} Att;

static V i64(KB *kb, V x) { return kb_to_i64(kb, x); }

static Att att_of(const Node *n)
{
    Att a = {.H = node_int(n, "heads", 1), .Hkv = node_int(n, "kv_heads", 1), .D = node_int(n, "head_dim", 0),
             .scale = (float)node_float(n, "scale", 1.0)};
    a.G = a.H / a.Hkv, a.W = (a.H + 2 * a.Hkv) * a.D, a.KW = a.Hkv * a.D;
    a.decode = !n->dim[1].sym && n->dim[1].n == 1;
    if (a.decode) {
        a.warps = DEC_WARPS, a.bn = DEC_KEYS, a.wk = 16;
        a.splits = (int)node_int(n, "splits", 0);
        a.gsplits = a.splits ? a.splits : MAX_SPLITS;
    } else {
        a.warps = (int)node_int(n, "warps", 4), a.bn = (int)node_int(n, "bn", 64), a.wk = a.bn;
    }
    a.ldd = (int)(a.D + 8) * 2;
    int qrows = a.decode ? 16 : 16 * a.warps;
    a.off_k = qrows * a.ldd;
    a.off_v = a.off_k + 2 * a.bn * a.ldd;
    a.smem = (unsigned)(a.off_v + 2 * a.bn * a.ldd);
    return a;
}

/* Checks shape and schedule against what the kernels support. */
static bool att_check(const Att *a, const TargetDesc *t, Diag *d)
{
    if (a->D != 64 && a->D != 128)
        return diag_fail(d, "attn: head_dim %lld is not supported by the GPU kernels (64 or 128)", (long long)a->D);
    if (a->decode && a->G > 16)
        return diag_fail(d, "attn: %lld query heads per kv head; the decode kernel takes at most 16", (long long)a->G);
    if (a->decode && (a->splits < 0 || a->splits > MAX_SPLITS))
        return diag_fail(d, "attn: splits %d out of 0..%d", a->splits, MAX_SPLITS);
    if (!a->decode && ((a->warps != 2 && a->warps != 4 && a->warps != 8) ||
                       (a->bn != 32 && a->bn != 64 && a->bn != 128)))
        return diag_fail(d, "attn: schedule warps %d (2, 4, 8), bn %d (32, 64, 128) out of range", a->warps, a->bn);
    if ((int64_t)a->smem > (int64_t)t->smem_max)
        return diag_fail(d, "attn: %u bytes of shared memory (warps %d, bn %d) exceed the target's %lld", a->smem,
                         a->warps, a->bn, (long long)t->smem_max);
    return true;
}

/* ---- cache append ---- */
static bool emit_append(Codegen *cg, const Att *a, char **ptx, Diag *d)
{
    KB *kb = kb_new(cg->ctx, "attn_append", (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32}, 7,
                    AP_THREADS);
    V qkv = kb_param(kb, 0), kc = kb_param(kb, 1), vc = kb_param(kb, 2), posp = kb_param(kb, 3);
    V rows = kb_param(kb, 4), seq = kb_param(kb, 5), ctx = kb_param(kb, 6);
    V r = nvvm_ctaid_x(kb);
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V b = kb_div(kb, r, seq), t = kb_rem(kb, r, seq);
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t);
        kb_if(kb, kb_and(kb, kb_ge(kb, p, kb_i32(kb, 0)), kb_lt(kb, p, ctx)));
        {
            V crow = kb_mul(kb, kb_add(kb, kb_mul(kb, i64(kb, b), i64(kb, ctx)), i64(kb, p)), kb_i64(kb, a->KW));
            V src = kb_add(kb, kb_mul(kb, i64(kb, r), kb_i64(kb, a->W)), kb_i64(kb, a->H * a->D)); /* k, then v */
            /* 16-byte chunks: KW/8 of k, then KW/8 of v */
            KVar c = kb_for(kb, nvvm_tid_x(kb), kb_i32(kb, 2 * a->KW / 8), kb_i32(kb, AP_THREADS));
            {
                V cv = kb_get(kb, c);
                V isv = kb_ge(kb, cv, kb_i32(kb, a->KW / 8));
                V cc = i64(kb, kb_mul(kb, kb_select(kb, isv, kb_sub(kb, cv, kb_i32(kb, a->KW / 8)), cv), kb_i32(kb, 8)));
                V x = kb_load_vec(kb, kb->i32, 4, kb_gep(kb, kb->i16, qkv, kb_add(kb, src, i64(kb, kb_mul(kb, cv, kb_i32(kb, 8))))), 16);
                V dst = kb_select(kb, isv, vc, kc);
                kb_store_vec(kb, x, kb_gep(kb, kb->i16, dst, kb_add(kb, crow, cc)), 16);
            }
            kb_endfor(kb);
        }
        kb_endif(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---- the per-warp online-softmax step shared by prefill and decode ---- */

/* Whether key column `col` (0..wk-1 of this warp's keys in the tile) is
 * visible to accumulator row `row` (0..15 of this warp's queries). */
typedef V (*MaskFn)(KB *kb, const void *mctx, V row, V col);

typedef struct WarpSoftmax {
    KVar m[2], l[2];                           /* rows lane/4 and lane/4+8: running max, sum */
    KVar o[2][MMA_MAX_MI][MMA_MAX_NI][4];      /* O [16][D]: call c covers channels 64c..64c+63 */
} WarpSoftmax;

static void ws_init(KB *kb, const Att *a, WarpSoftmax *w)
{
    for (int hf = 0; hf < 2; hf++)
        w->m[hf] = kb_var(kb, kb->f32, kb_f32(kb, -INFINITY)), w->l[hf] = kb_var(kb, kb->f32, kb_f32(kb, 0));
    for (int c = 0; c < (int)(a->D / 64); c++)
        for (int j = 0; j < 8; j++)
            for (int e = 0; e < 4; e++)
                w->o[c][0][j][e] = kb_var(kb, kb->f32, kb_f32(kb, 0));
}

/* S = Q · K[krow..+wk)ᵀ (Q: this warp's 16 rows as D/16 register fragments),
 * masked (mask NULL: every key visible); online softmax in the log2 domain
 * (scores pre-multiplied by scale·log2 e, ex2); O = alpha·O + P·V[krow..+wk)
 * with P (bf16) packed from the S accumulators straight into A fragments. Byte
 * offsets kbuf, vbuf locate the staged K and V tiles. */
static void ws_step(KB *kb, const Att *a, WarpSoftmax *w, V qa[][4], V kbuf, V vbuf, V krow, MaskFn mask,
                    const void *mctx)
{
    V zero = kb_f32(kb, 0), ninf = kb_f32(kb, -INFINITY);
    int ncall = (a->wk + 63) / 64;
    KVar s[2][MMA_MAX_MI][MMA_MAX_NI][4];
    Tile kt = {kbuf, a->ldd, false};
    V sv[2][8][4], tmax[2] = {ninf, ninf};
    V sl2 = kb_f32(kb, (double)a->scale * 1.4426950408889634);
    for (int c = 0; c < ncall; c++) {
        int ni = a->wk / 8 - 8 * c;
        ni = ni > 8 ? 8 : ni;
        for (int j = 0; j < ni; j++)
            for (int e = 0; e < 4; e++)
                s[c][0][j][e] = kb_var(kb, kb->f32, zero);
        mma_warp_tile_ra(kb, qa, (int)(a->D / 16), kt, kb_add(kb, krow, kb_i32(kb, 64 * c)), kb_i32(kb, 0), ni, s[c]);
        for (int j = 0; j < ni; j++)
            for (int e = 0; e < 4; e++) {
                V x = kb_mul(kb, kb_get(kb, s[c][0][j][e]), sl2);
                if (mask)
                    x = kb_select(kb, mask(kb, mctx, mma_acc_row(kb, 0, e), kb_add(kb, kb_i32(kb, 64 * c), mma_acc_col(kb, j, e))),
                                  x, ninf);
                sv[c][j][e] = x;
                tmax[e / 2] = kb_max(kb, tmax[e / 2], x);
            }
    }
    V base[2], alpha[2], psum[2] = {zero, zero};
    for (int hf = 0; hf < 2; hf++) {
        V mx = kb_max(kb, kb_get(kb, w->m[hf]), mma_quad_max(kb, tmax[hf]));
        base[hf] = kb_select(kb, kb_eq(kb, mx, ninf), zero, mx); /* no visible key yet: 2^(-inf - 0) = 0 */
        alpha[hf] = nvvm_ex2(kb, kb_sub(kb, kb_get(kb, w->m[hf]), base[hf]));
        kb_set(kb, w->m[hf], mx);
    }
    /* P as A fragments: key slice kk = n-tiles 2kk (cols 0-7) and 2kk+1 (cols 8-15) */
    V pa[8][4];
    for (int kk = 0; kk < a->wk / 16; kk++)
        for (int h = 0; h < 2; h++) {
            int jj = 2 * kk + h, c = jj / 8, j = jj % 8;
            for (int hf = 0; hf < 2; hf++) {
                V p0 = nvvm_ex2(kb, kb_sub(kb, sv[c][j][2 * hf], base[hf]));
                V p1 = nvvm_ex2(kb, kb_sub(kb, sv[c][j][2 * hf + 1], base[hf]));
                psum[hf] = kb_add(kb, psum[hf], kb_add(kb, p0, p1));
                pa[kk][2 * h + hf] = kb_pack_bf16x2(kb, p0, p1);
            }
        }
    for (int hf = 0; hf < 2; hf++)
        kb_set(kb, w->l[hf], kb_fma(kb, kb_get(kb, w->l[hf]), alpha[hf], mma_quad_sum(kb, psum[hf])));
    Tile vt = {kb_add(kb, vbuf, kb_mul(kb, krow, kb_i32(kb, a->ldd))), a->ldd, true};
    for (int c = 0; c < (int)(a->D / 64); c++) {
        for (int j = 0; j < 8; j++)
            for (int e = 0; e < 4; e++)
                kb_set(kb, w->o[c][0][j][e], kb_mul(kb, kb_get(kb, w->o[c][0][j][e]), alpha[e / 2]));
        mma_warp_tile_ra(kb, pa, a->wk / 16, vt, kb_i32(kb, 64 * c), kb_i32(kb, 0), 8, w->o[c]);
    }
}

/* This warp's 16 rows of the Q tile (from row qrow) as D/16 A fragments. */
static void load_q(KB *kb, const Att *a, V qrow, V qa[8][4])
{
    Tile qt = {kb_i32(kb, 0), a->ldd, false};
    for (int ks = 0; ks < (int)(a->D / 16); ks++)
        mma_load_a(kb, qt, qrow, kb_i32(kb, 16 * ks), qa[ks]);
}

/* cp.async cache rows [j0, j0 + n) (kv head g of sequence b; rows ≥ nkeys
 * zero-filled) into K and V tiles at byte offsets kdst, vdst. */
static void stage_kv(KB *kb, const Att *a, V kc, V vc, V cbase, V g, V j0, int n, V nkeys, V kdst, V vdst, int threads)
{
    int CH = (int)(a->D / 8); /* 16-byte chunks per row */
    KVar it = kb_for(kb, nvvm_tid_x(kb), kb_i32(kb, 2 * n * CH), kb_i32(kb, threads));
    {
        V idx = kb_get(kb, it);
        V isv = kb_ge(kb, idx, kb_i32(kb, n * CH));
        V li = kb_select(kb, isv, kb_sub(kb, idx, kb_i32(kb, n * CH)), idx);
        V kk = kb_div(kb, li, kb_i32(kb, CH)), c = kb_rem(kb, li, kb_i32(kb, CH));
        V j = kb_add(kb, j0, kk);
        V ok = kb_lt(kb, j, nkeys);
        V row = kb_add(kb, cbase, i64(kb, kb_select(kb, ok, j, kb_i32(kb, 0))));
        V ge = kb_add(kb, kb_mul(kb, row, kb_i64(kb, a->KW)), i64(kb, kb_add(kb, kb_mul(kb, g, kb_i32(kb, (int)a->D)), kb_mul(kb, c, kb_i32(kb, 8)))));
        V src = kb_gep(kb, kb->bf16, kb_select(kb, isv, vc, kc), ge);
        V so = kb_add(kb, kb_mul(kb, kk, kb_i32(kb, a->ldd)), kb_mul(kb, c, kb_i32(kb, 16)));
        V sp = kb_smem(kb, kb_add(kb, kb_select(kb, isv, vdst, kdst), so));
        nvvm_cp_async16(kb, sp, src, kb_select(kb, ok, kb_i32(kb, 16), kb_i32(kb, 0)));
    }
    kb_endfor(kb);
}

/* ---- prefill ---- */
typedef struct PMask {
    V qpos0; /* position of this warp's first query row */
    V j0;    /* cache row of this warp's first key in the tile */
    V nkeys; /* keys that exist: rows < nkeys */
} PMask;

static V prefill_mask(KB *kb, const void *mctx, V row, V col)
{
    const PMask *m = mctx;
    V j = kb_add(kb, m->j0, col);
    return kb_and(kb, kb_le(kb, j, kb_add(kb, m->qpos0, row)), kb_lt(kb, j, m->nkeys));
}

static bool emit_prefill(Codegen *cg, const Att *a, char **ptx, Diag *d)
{
    int threads = 32 * a->warps, BM = 16 * a->warps;
    KB *kb = kb_new(cg->ctx, "attn_fwd", (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32}, 7,
                    threads);
    V qkv = kb_param(kb, 0), kc = kb_param(kb, 1), vc = kb_param(kb, 2), posp = kb_param(kb, 3), op = kb_param(kb, 4);
    V seq = kb_param(kb, 5), ctx = kb_param(kb, 6);
    /* the longest query tiles (last in the sequence) first */
    V qt = kb_sub(kb, kb_sub(kb, nvvm_nctaid_x(kb), kb_i32(kb, 1)), nvvm_ctaid_x(kb));
    V h = nvvm_ctaid_y(kb), b = nvvm_ctaid_z(kb), tid = nvvm_tid_x(kb), warp = nvvm_warp(kb);
    V g = kb_div(kb, h, kb_i32(kb, (int)a->G));
    V t0 = kb_mul(kb, qt, kb_i32(kb, BM));
    V p0 = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
    V cbase = kb_mul(kb, i64(kb, b), i64(kb, ctx));
    /* Q rows t0..t0+BM (zero past seq) */
    int CH = (int)(a->D / 8);
    KVar qi = kb_for(kb, tid, kb_i32(kb, BM * CH), kb_i32(kb, threads));
    {
        V idx = kb_get(kb, qi);
        V rr = kb_div(kb, idx, kb_i32(kb, CH)), c = kb_rem(kb, idx, kb_i32(kb, CH));
        V t = kb_add(kb, t0, rr);
        V ok = kb_lt(kb, t, seq);
        V grow = kb_add(kb, kb_mul(kb, i64(kb, b), i64(kb, seq)), i64(kb, kb_select(kb, ok, t, kb_i32(kb, 0))));
        V ge = kb_add(kb, kb_mul(kb, grow, kb_i64(kb, a->W)), i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, (int)a->D)), kb_mul(kb, c, kb_i32(kb, 8)))));
        V sp = kb_smem(kb, kb_add(kb, kb_mul(kb, rr, kb_i32(kb, a->ldd)), kb_mul(kb, c, kb_i32(kb, 16))));
        nvvm_cp_async16(kb, sp, kb_gep(kb, kb->bf16, qkv, ge), kb_select(kb, ok, kb_i32(kb, 16), kb_i32(kb, 0)));
    }
    kb_endfor(kb);
    nvvm_cp_async_commit(kb); /* Q: its own group, read into registers before the loop */
    /* keys 0 .. (position of the tile's last query), within ctx */
    V tlast = kb_sub(kb, kb_min(kb, kb_add(kb, t0, kb_i32(kb, BM)), seq), kb_i32(kb, 1));
    V nkeys = kb_add(kb, kb_min(kb, kb_add(kb, p0, tlast), kb_sub(kb, ctx, kb_i32(kb, 1))), kb_i32(kb, 1));
    V ntiles = kb_div(kb, kb_add(kb, nkeys, kb_i32(kb, a->bn - 1)), kb_i32(kb, a->bn));
    stage_kv(kb, a, kc, vc, cbase, g, kb_i32(kb, 0), a->bn, nkeys, kb_i32(kb, a->off_k), kb_i32(kb, a->off_v), threads);
    nvvm_cp_async_commit(kb);
    nvvm_cp_async_wait(kb, 1); /* Q landed */
    nvvm_bar_sync(kb);

    WarpSoftmax ws;
    ws_init(kb, a, &ws);
    V qrow = kb_mul(kb, warp, kb_i32(kb, 16));
    V wt0 = kb_add(kb, t0, qrow); /* this warp's first query */
    V qpos0 = kb_add(kb, p0, wt0);
    V qa[8][4];
    load_q(kb, a, qrow, qa);
    int tb = a->bn * a->ldd; /* bytes of one K (or V) tile */
    KVar ti = kb_for(kb, kb_i32(kb, 0), ntiles, kb_i32(kb, 1));
    {
        V t = kb_get(kb, ti);
        V buf = kb_rem(kb, t, kb_i32(kb, 2));
        V kcur = kb_add(kb, kb_i32(kb, a->off_k), kb_mul(kb, buf, kb_i32(kb, tb)));
        V vcur = kb_add(kb, kb_i32(kb, a->off_v), kb_mul(kb, buf, kb_i32(kb, tb)));
        V nb = kb_sub(kb, kb_i32(kb, 1), buf);
        V tn = kb_add(kb, t, kb_i32(kb, 1));
        kb_if(kb, kb_lt(kb, tn, ntiles)); /* the next tile into the other buffer (its readers passed the barrier ending t-1) */
        stage_kv(kb, a, kc, vc, cbase, g, kb_mul(kb, tn, kb_i32(kb, a->bn)), a->bn, nkeys,
                 kb_add(kb, kb_i32(kb, a->off_k), kb_mul(kb, nb, kb_i32(kb, tb))),
                 kb_add(kb, kb_i32(kb, a->off_v), kb_mul(kb, nb, kb_i32(kb, tb))), threads);
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        nvvm_cp_async_wait(kb, 1); /* tile t landed */
        nvvm_bar_sync(kb);
        V j0 = kb_mul(kb, t, kb_i32(kb, a->bn));
        /* warp-uniform: skip tiles wholly after this warp's last query, and warps past seq */
        kb_if(kb, kb_and(kb, kb_le(kb, j0, kb_add(kb, qpos0, kb_i32(kb, 15))), kb_lt(kb, wt0, seq)));
        {
            /* a tile wholly at or before the warp's first query, and of existing keys, needs no mask */
            V jl = kb_add(kb, j0, kb_i32(kb, a->bn - 1));
            kb_if(kb, kb_and(kb, kb_le(kb, jl, qpos0), kb_lt(kb, jl, nkeys)));
            ws_step(kb, a, &ws, qa, kcur, vcur, kb_i32(kb, 0), NULL, NULL);
            kb_else(kb);
            PMask pm = {qpos0, j0, nkeys};
            ws_step(kb, a, &ws, qa, kcur, vcur, kb_i32(kb, 0), prefill_mask, &pm);
            kb_endif(kb);
        }
        kb_endif(kb);
        nvvm_bar_sync(kb); /* the buffers are rewritten next tile */
    }
    kb_endfor(kb);
    nvvm_cp_async_wait(kb, 0);
    /* O / l → out rows t < seq */
    for (int hf = 0; hf < 2; hf++) {
        V l = kb_get(kb, ws.l[hf]);
        V inv = kb_select(kb, kb_gt(kb, l, kb_f32(kb, 0)), kb_div(kb, kb_f32(kb, 1.0), l), kb_f32(kb, 0));
        V t = kb_add(kb, wt0, mma_acc_row(kb, 0, 2 * hf));
        kb_if(kb, kb_lt(kb, t, seq));
        V ob = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, i64(kb, b), i64(kb, seq)), i64(kb, t)), kb_i64(kb, a->H * a->D)),
                      i64(kb, kb_mul(kb, h, kb_i32(kb, (int)a->D))));
        for (int c = 0; c < (int)(a->D / 64); c++)
            for (int j = 0; j < 8; j++) {
                V col = kb_add(kb, kb_i32(kb, 64 * c), mma_acc_col(kb, j, 0));
                V v0 = kb_mul(kb, kb_get(kb, ws.o[c][0][j][2 * hf]), inv), v1 = kb_mul(kb, kb_get(kb, ws.o[c][0][j][2 * hf + 1]), inv);
                kb_store(kb, kb_pack_bf16x2(kb, v0, v1), kb_gep(kb, kb->i32, kb_gep(kb, kb->bf16, op, kb_add(kb, ob, i64(kb, col))), kb_i32(kb, 0)));
            }
        kb_endif(kb);
    }
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---- decode ---- */

/* The key splits of this call (see the header); attn_decode and attn_combine agree. */
static V splits_in_use(KB *kb, const Att *a, V rows)
{
    return split_count(kb, a->splits, DEC_AUTO_BLOCKS, kb_mul(kb, rows, kb_i32(kb, (int)a->Hkv)), MAX_SPLITS);
}

typedef struct DMask {
    V i0; /* key slot of this warp's first key in the tile */
    V k1; /* end of the split's slots */
} DMask;

static V decode_mask(KB *kb, const void *mctx, V row, V col)
{
    (void)row;
    const DMask *m = mctx;
    return kb_lt(kb, kb_add(kb, m->i0, col), m->k1);
}

static V smem_f32(KB *kb, int off, V idx) { return kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, off)), idx); }

static bool emit_decode(Codegen *cg, const Att *a, char **ptx, Diag *d)
{
    int threads = 32 * DEC_WARPS;
    KB *kb = kb_new(cg->ctx, "attn_decode", (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32}, 7,
                    threads);
    V qkv = kb_param(kb, 0), kc = kb_param(kb, 1), vc = kb_param(kb, 2), posp = kb_param(kb, 3), scr = kb_param(kb, 4);
    V ctx = kb_param(kb, 5), rows = kb_param(kb, 6);
    V s = nvvm_ctaid_x(kb), g = nvvm_ctaid_y(kb), r = nvvm_ctaid_z(kb), tid = nvvm_tid_x(kb), warp = nvvm_warp(kb);
    V nsplit = splits_in_use(kb, a, rows);
    kb_if(kb, kb_and(kb, kb_lt(kb, r, rows), kb_lt(kb, s, nsplit)));
    {
        V p = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, r)); /* seq 1: the query is at pos */
        V cbase = kb_mul(kb, i64(kb, r), i64(kb, ctx));
        V nk = kb_add(kb, kb_min(kb, p, kb_sub(kb, ctx, kb_i32(kb, 1))), kb_i32(kb, 1));
        V span = kb_mul(kb, nsplit, kb_i32(kb, DEC_KEYS));
        V len = kb_mul(kb, kb_div(kb, kb_sub(kb, kb_add(kb, nk, span), kb_i32(kb, 1)), span), kb_i32(kb, DEC_KEYS));
        V k0 = kb_mul(kb, s, len), k1 = kb_min(kb, kb_add(kb, k0, len), nk);
        V ntiles = kb_select(kb, kb_gt(kb, k1, k0),
                             kb_div(kb, kb_add(kb, kb_sub(kb, k1, k0), kb_i32(kb, DEC_KEYS - 1)), kb_i32(kb, DEC_KEYS)),
                             kb_i32(kb, 0));
        /* Q: the G heads of kv head g, rows ≥ G zero */
        int CH = (int)(a->D / 8);
        KVar qi = kb_for(kb, tid, kb_i32(kb, 16 * CH), kb_i32(kb, threads));
        {
            V idx = kb_get(kb, qi);
            V i = kb_div(kb, idx, kb_i32(kb, CH)), c = kb_rem(kb, idx, kb_i32(kb, CH));
            V ok = kb_lt(kb, i, kb_i32(kb, (int)a->G));
            V hh = kb_add(kb, kb_mul(kb, g, kb_i32(kb, (int)a->G)), kb_select(kb, ok, i, kb_i32(kb, 0)));
            V ge = kb_add(kb, kb_mul(kb, i64(kb, r), kb_i64(kb, a->W)), i64(kb, kb_add(kb, kb_mul(kb, hh, kb_i32(kb, (int)a->D)), kb_mul(kb, c, kb_i32(kb, 8)))));
            V sp = kb_smem(kb, kb_add(kb, kb_mul(kb, i, kb_i32(kb, a->ldd)), kb_mul(kb, c, kb_i32(kb, 16))));
            nvvm_cp_async16(kb, sp, kb_gep(kb, kb->bf16, qkv, ge), kb_select(kb, ok, kb_i32(kb, 16), kb_i32(kb, 0)));
        }
        kb_endfor(kb);
        nvvm_cp_async_commit(kb); /* Q: its own group */
        kb_if(kb, kb_gt(kb, ntiles, kb_i32(kb, 0)));
        stage_kv(kb, a, kc, vc, cbase, g, k0, DEC_KEYS, k1, kb_i32(kb, a->off_k), kb_i32(kb, a->off_v), threads);
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        nvvm_cp_async_wait(kb, 1); /* Q landed */
        nvvm_bar_sync(kb);

        WarpSoftmax ws;
        ws_init(kb, a, &ws);
        V krow = kb_mul(kb, warp, kb_i32(kb, 16));
        V qa[8][4];
        load_q(kb, a, kb_i32(kb, 0), qa); /* every warp: the same 16 rows */
        int tb = DEC_KEYS * a->ldd;
        KVar ti = kb_for(kb, kb_i32(kb, 0), ntiles, kb_i32(kb, 1));
        {
            V t = kb_get(kb, ti);
            V buf = kb_rem(kb, t, kb_i32(kb, 2)), nb = kb_sub(kb, kb_i32(kb, 1), buf);
            V kcur = kb_add(kb, kb_i32(kb, a->off_k), kb_mul(kb, buf, kb_i32(kb, tb)));
            V vcur = kb_add(kb, kb_i32(kb, a->off_v), kb_mul(kb, buf, kb_i32(kb, tb)));
            V tn = kb_add(kb, t, kb_i32(kb, 1));
            kb_if(kb, kb_lt(kb, tn, ntiles));
            stage_kv(kb, a, kc, vc, cbase, g, kb_add(kb, k0, kb_mul(kb, tn, kb_i32(kb, DEC_KEYS))), DEC_KEYS, k1,
                     kb_add(kb, kb_i32(kb, a->off_k), kb_mul(kb, nb, kb_i32(kb, tb))),
                     kb_add(kb, kb_i32(kb, a->off_v), kb_mul(kb, nb, kb_i32(kb, tb))), threads);
            kb_endif(kb);
            nvvm_cp_async_commit(kb);
            nvvm_cp_async_wait(kb, 1);
            nvvm_bar_sync(kb);
            V i0 = kb_add(kb, kb_add(kb, k0, kb_mul(kb, t, kb_i32(kb, DEC_KEYS))), krow);
            kb_if(kb, kb_lt(kb, i0, k1)); /* warp-uniform: this warp has keys in the tile */
            DMask dm = {i0, k1};
            ws_step(kb, a, &ws, qa, kcur, vcur, krow, decode_mask, &dm);
            kb_endif(kb);
            nvvm_bar_sync(kb);
        }
        kb_endfor(kb);
        nvvm_cp_async_wait(kb, 0);
        nvvm_bar_sync(kb); /* the K/V buffers become the merge area */
        /* merge area at off_k: m [4][16], l [4][16], O [4][16][D] (f32) */
        int om = a->off_k, ol = om + 4 * DEC_WARPS * 16, oo = ol + 4 * DEC_WARPS * 16;
        V lane = nvvm_lane(kb), q4 = kb_rem(kb, lane, kb_i32(kb, 4));
        for (int hf = 0; hf < 2; hf++) {
            V row = mma_acc_row(kb, 0, 2 * hf);
            V wr = kb_add(kb, kb_mul(kb, warp, kb_i32(kb, 16)), row);
            kb_if(kb, kb_eq(kb, q4, kb_i32(kb, 0)));
            kb_store(kb, kb_get(kb, ws.m[hf]), smem_f32(kb, om, wr));
            kb_store(kb, kb_get(kb, ws.l[hf]), smem_f32(kb, ol, wr));
            kb_endif(kb);
            for (int c = 0; c < (int)(a->D / 64); c++)
                for (int j = 0; j < 8; j++)
                    for (int e = 2 * hf; e < 2 * hf + 2; e++) {
                        V col = kb_add(kb, kb_i32(kb, 64 * c), mma_acc_col(kb, j, e));
                        kb_store(kb, kb_get(kb, ws.o[c][0][j][e]),
                                 smem_f32(kb, oo, kb_add(kb, kb_mul(kb, wr, kb_i32(kb, (int)a->D)), col)));
                    }
        }
        nvvm_bar_sync(kb);
        /* partial of (split s, head g·G + i): scratch[r][s][h] = (O[D], m, l) */
        V pb = kb_mul(kb, kb_add(kb, kb_mul(kb, i64(kb, r), kb_i64(kb, a->gsplits)), i64(kb, s)), kb_i64(kb, a->H * (a->D + 2)));
        KVar it = kb_for(kb, tid, kb_i32(kb, (int)(a->G * a->D)), kb_i32(kb, threads));
        {
            V idx = kb_get(kb, it);
            V i = kb_div(kb, idx, kb_i32(kb, (int)a->D)), c = kb_rem(kb, idx, kb_i32(kb, (int)a->D));
            V M = kb_f32(kb, -INFINITY);
            for (int w = 0; w < DEC_WARPS; w++)
                M = kb_max(kb, M, kb_load(kb, kb->f32, smem_f32(kb, om, kb_add(kb, kb_i32(kb, 16 * w), i))));
            V acc = kb_f32(kb, 0), L = kb_f32(kb, 0);
            for (int w = 0; w < DEC_WARPS; w++) {
                V wr = kb_add(kb, kb_i32(kb, 16 * w), i);
                V mw = kb_load(kb, kb->f32, smem_f32(kb, om, wr));
                V f = kb_select(kb, kb_eq(kb, mw, kb_f32(kb, -INFINITY)), kb_f32(kb, 0), nvvm_ex2(kb, kb_sub(kb, mw, M)));
                L = kb_fma(kb, kb_load(kb, kb->f32, smem_f32(kb, ol, wr)), f, L);
                acc = kb_fma(kb, kb_load(kb, kb->f32, smem_f32(kb, oo, kb_add(kb, kb_mul(kb, wr, kb_i32(kb, (int)a->D)), c))), f, acc);
            }
            V h = kb_add(kb, kb_mul(kb, g, kb_i32(kb, (int)a->G)), i);
            V at = kb_add(kb, pb, i64(kb, kb_mul(kb, h, kb_i32(kb, (int)(a->D + 2)))));
            kb_store(kb, acc, kb_gep(kb, kb->f32, scr, kb_add(kb, at, i64(kb, c))));
            kb_if(kb, kb_eq(kb, c, kb_i32(kb, 0)));
            kb_store(kb, M, kb_gep(kb, kb->f32, scr, kb_add(kb, at, kb_i64(kb, a->D))));
            kb_store(kb, L, kb_gep(kb, kb->f32, scr, kb_add(kb, at, kb_i64(kb, a->D + 1))));
            kb_endif(kb);
        }
        kb_endfor(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

bool k_attn(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    Att a = att_of(n);
    if (!att_check(&a, cg->target, d))
        return false;
    SymExpr rows = node_rows_expr(n), seq_e = n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n);
    char name[96];
    /* launch 1: the call's k and v rows into the caches */
    snprintf(name, sizeof name, "attn_append_h%lld_kv%lld_d%lld", (long long)a.H, (long long)a.Hkv, (long long)a.D);
    KLaunch *ap = kout_add(out, name, AP_THREADS, 0);
    ap->grid[0] = rows;
    ap->bytes = sym_scale(rows, 2 * 2 * 2 * a.KW);
    kl_arg_src(ap, 0);
    kl_arg_src(ap, 1);
    kl_arg_src(ap, 2);
    kl_arg_src(ap, 3);
    kl_arg_i32(ap, rows);
    kl_arg_i32(ap, seq_e);
    kl_arg_i32(ap, sym_mono(MONO_C, 1));
    if (!emit_append(cg, &a, &ap->ptx, d))
        return false;
    /* Cost (docs/kernels.md): per query head and key, q·k and p·v over D, 2
     * flops each. A decode step reads the kv head's ctx cache rows once per
     * sequence; prefill's B·S·ctx/2 flops are beyond the linear cost model,
     * so it is reported by its bytes: q in, out, and the cache rows once. */
    SymExpr io = sym_scale(rows, 2 * 2 * a.H * a.D);
    if (!a.decode) {
        snprintf(name, sizeof name, "attn_fwd_h%lld_kv%lld_d%lld_w%d_bn%d", (long long)a.H, (long long)a.Hkv,
                 (long long)a.D, a.warps, a.bn);
        KLaunch *l = kout_add(out, name, (unsigned)(32 * a.warps), a.smem);
        kl_param(l, "warps", a.warps);
        kl_param(l, "bn", a.bn);
        l->grid[0] = sym_ceildiv(seq_e, 16 * a.warps);
        l->grid[1] = sym_const(a.H);
        l->grid[2] = n->dim[0].sym ? sym_mono(MONO_B, 1) : sym_const(n->dim[0].n);
        l->flops = sym_const(0);
        l->bytes = sym_add(io, sym_mono(MONO_BC, 2 * 2 * a.KW));
        kl_arg_src(l, 0);
        kl_arg_src(l, 1);
        kl_arg_src(l, 2);
        kl_arg_src(l, 3);
        kl_arg_out(l);
        kl_arg_i32(l, seq_e);
        kl_arg_i32(l, sym_mono(MONO_C, 1));
        return emit_prefill(cg, &a, &l->ptx, d);
    }
    char sp[16];
    if (a.splits)
        snprintf(sp, sizeof sp, "s%d", a.splits);
    else
        snprintf(sp, sizeof sp, "sauto");
    snprintf(name, sizeof name, "attn_decode_h%lld_kv%lld_d%lld_%s", (long long)a.H, (long long)a.Hkv, (long long)a.D, sp);
    KLaunch *l = kout_add(out, name, 32 * DEC_WARPS, a.smem);
    kl_param(l, "splits", a.splits);
    int64_t part = (a.splits ? a.splits : 1) * a.H * (a.D + 2) * 4; /* auto counted as 1 split, the fewest */
    l->grid[0] = sym_const(a.gsplits);
    l->grid[1] = sym_const(a.Hkv);
    l->grid[2] = rows;
    l->flops = sym_mono(MONO_BC, 4 * a.H * a.D);
    l->bytes = sym_add(sym_scale(rows, 2 * a.H * a.D + part), sym_mono(MONO_BC, 2 * 2 * a.KW));
    kl_arg_src(l, 0);
    kl_arg_src(l, 1);
    kl_arg_src(l, 2);
    kl_arg_src(l, 3);
    kl_arg_scratch(l);
    kl_arg_i32(l, sym_mono(MONO_C, 1));
    kl_arg_i32(l, rows);
    if (!emit_decode(cg, &a, &l->ptx, d))
        return false;
    snprintf(name, sizeof name, "attn_combine_h%lld_d%lld_%s", (long long)a.H, (long long)a.D, sp);
    SplitCombine sc = {.entry = "attn_combine", .H = a.H, .W = a.D, .splits = a.splits, .gsplits = a.gsplits,
                       .auto_blocks = DEC_AUTO_BLOCKS, .max_splits = MAX_SPLITS, .units_per_row = (int)a.Hkv,
                       .log2 = true};
    return kout_split_combine(cg, out, &sc, name, rows, d);
}
