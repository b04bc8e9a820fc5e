/* k_mla.c — multi-head latent attention kernels (ops mla_absorb_q/o, mla_attn).
 *
 *   mla_absorb   q_lat = W_UKᵀ q_nope or o = W_UV o_lat per head: with tc 1 a
 *                tensor-core GEMM per (column tile, head, 64 rows); else SIMT
 *                per (row, head) (threads over the R outputs, q_nope staged in
 *                shared memory; or a warp per output, lanes over R, o_lat staged)
 *   mla_append   the call's c_kv and k_pe rows into the latent caches at
 *                positions pos..pos+S-1 (before any query reads them)
 *   mla_attn     a block per (query, head), `warps` warps splitting the keys —
 *                every cache row j <= pos+t, or only the rows the indexer
 *                selected (sparse) — each with its own online softmax over
 *                scale·(q_lat·c_kv_j + q_pe·k_pe_j); lanes hold R/32 latent
 *                channels; the warps' (max, sum, o) are merged in smem.
 * Correctness first: SIMT fp32 math; the tensor-core version is the next step. */
#include <math.h>
#include <string.h>

#include "k_mla_decode.h"
#include "kernels.h"
#include "mma.h"
#include "nvvm.h"

typedef struct Mla {
    int64_t H, dn, dr, dv, R; /* heads, nope, rope, value dims, latent rank */
    int64_t qs, qo;           /* q_pe row stride per head and rope offset */
} Mla;

static V ld_bf(KB *kb, V base, V idx) { return kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, base, idx))); }

/* ---- absorption ---- */
enum { AB_THREADS = 128 };

static bool emit_absorb(Codegen *cg, const Mla *m, bool q_side, DType wdt, char **ptx, Diag *d)
{
    KB *kb = kb_new(cg->ctx, q_side ? "mla_absorb_q" : "mla_absorb_o", (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_I32}, 4,
                    AB_THREADS);
    V xp = kb_param(kb, 0), wp = kb_param(kb, 1), op = kb_param(kb, 2), rows = kb_param(kb, 3);
    V h = nvvm_ctaid_x(kb), r = nvvm_ctaid_y(kb), tid = nvvm_tid_x(kb);
    int64_t in_w = q_side ? m->dn : m->R; /* staged input per head */
    int64_t x_row = q_side ? m->H * (m->dn + m->dr) : m->H * m->R, x_head = q_side ? m->dn + m->dr : m->R;
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V xb = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, x_row)), kb_to_i64(kb, kb_mul(kb, h, kb_i32(kb, x_head))));
        KVar i = kb_for(kb, tid, kb_i32(kb, in_w), kb_i32(kb, AB_THREADS));
        kb_store(kb, ld_bf(kb, xp, kb_add(kb, xb, kb_to_i64(kb, kb_get(kb, i)))),
                 kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, 0)), kb_get(kb, i)));
        kb_endfor(kb);
        nvvm_bar_sync(kb);
        V wh = kb_mul(kb, kb_to_i64(kb, kb_mul(kb, h, kb_i32(kb, m->dn + m->dv))), kb_i64(kb, m->R)); /* head's first W row */
        T wt = wdt == DT_BF16 ? kb->bf16 : kb->f32;
        if (q_side) { /* out[r, h, c] = Σ_i x[i] W[h*(dn+dv) + i, c]: threads over c */
            KVar c = kb_for(kb, tid, kb_i32(kb, m->R), kb_i32(kb, AB_THREADS));
            {
                V cv = kb_get(kb, c);
                KVar acc = kb_var(kb, kb->f32, kb_f32(kb, 0));
                KVar i2 = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, m->dn), kb_i32(kb, 1));
                {
                    V iv = kb_get(kb, i2);
                    V wv = kb_load(kb, wt, kb_gep(kb, wt, wp, kb_add(kb, wh, kb_to_i64(kb, kb_add(kb, kb_mul(kb, iv, kb_i32(kb, m->R)), cv)))));
                    if (wdt == DT_BF16)
                        wv = kb_bf16_to_f32(kb, wv);
                    kb_set(kb, acc, kb_fma(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, 0)), iv)), wv,
                                           kb_get(kb, acc)));
                }
                kb_endfor(kb);
                V oo = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, m->H * m->R)),
                              kb_to_i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, m->R)), cv)));
                kb_store(kb, kb_f32_to_bf16(kb, kb_get(kb, acc)), kb_gep(kb, kb->bf16, op, oo));
            }
            kb_endfor(kb);
        } else { /* out[r, h, j] = Σ_c W[h*(dn+dv) + dn + j, c] x[c]: a warp per j, lanes over c */
            V lane = nvvm_lane(kb), warp = nvvm_warp(kb);
            KVar j = kb_for(kb, warp, kb_i32(kb, m->dv), kb_i32(kb, AB_THREADS / 32));
            {
                V jv = kb_get(kb, j);
                V wrow = kb_add(kb, wh, kb_mul(kb, kb_to_i64(kb, kb_add(kb, jv, kb_i32(kb, m->dn))), kb_i64(kb, m->R)));
                KVar acc = kb_var(kb, kb->f32, kb_f32(kb, 0));
                KVar c = kb_for(kb, lane, kb_i32(kb, m->R), kb_i32(kb, 32));
                {
                    V wv = kb_load(kb, wt, kb_gep(kb, wt, wp, kb_add(kb, wrow, kb_to_i64(kb, kb_get(kb, c)))));
                    if (wdt == DT_BF16)
                        wv = kb_bf16_to_f32(kb, wv);
                    kb_set(kb, acc, kb_fma(kb, wv, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, 0)), kb_get(kb, c))),
                                           kb_get(kb, acc)));
                }
                kb_endfor(kb);
                V s = nvvm_warp_sum(kb, kb_get(kb, acc));
                kb_if(kb, kb_eq(kb, lane, kb_i32(kb, 0)));
                V oo = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, m->H * m->dv)),
                              kb_to_i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, m->dv)), jv)));
                kb_store(kb, kb_f32_to_bf16(kb, s), kb_gep(kb, kb->bf16, op, oo));
                kb_endif(kb);
            }
            kb_endfor(kb);
        }
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---- absorption on tensor cores: per head a [rows × K] · [K × N] GEMM ----
 * q side: C[r][c] = Σ_i q[r, h(dn+dr) + i] · W[h(dn+dv) + i][c]   (K = dn, N = R; B stored [k][n])
 * o side: C[r][j] = Σ_c o[r, hR + c] · W[h(dn+dv) + dn + j][c]    (K = R, N = dv; B stored [n][k])
 * A block per (NT-column tile, head, 64-row tile), 4 warps of 16 rows × NT
 * columns; K in tiles of KT, double-buffered with cp.async (rows past the
 * end are zero-filled and not stored). bf16 weights only. */
enum { AT_ROWS = 64, AT_THREADS = 128 };

typedef struct AbsorbTc {
    int64_t K, N;    /* contraction and output width per head */
    int64_t xrow;    /* elements per input row (all heads) */
    int64_t xhead;   /* elements between two heads' inputs in a row */
    int64_t orow;    /* elements per output row */
    int64_t wbase;   /* first weight row of head 0's block (q: 0, o: dn) */
    int64_t wstride; /* weight rows between heads: dn + dv */
    int64_t R;       /* weight row length */
    int KT, NT;      /* K and N tile */
    bool q_side;     /* B stored [k][n] (ldmatrix.trans) */
    int lda, ldb;    /* padded shared-memory row bytes of the A and B tiles */
    int stage;       /* bytes per pipeline stage */
} AbsorbTc;

static int tile_of(int64_t v, int lo)
{
    for (int t = 64; t >= lo; t /= 2)
        if (v % t == 0)
            return t;
    return 0;
}

/* The tensor-core form of an absorb node, or false when its shape does not fit. */
static bool absorb_tc_of(const Mla *m, bool q_side, DType wdt, AbsorbTc *a)
{
    *a = (AbsorbTc){.K = q_side ? m->dn : m->R, .N = q_side ? m->R : m->dv, .R = m->R, .q_side = q_side,
                    .xrow = m->H * (q_side ? m->dn + m->dr : m->R), .xhead = q_side ? m->dn + m->dr : m->R,
                    .orow = m->H * (q_side ? m->R : m->dv), .wbase = q_side ? 0 : m->dn, .wstride = m->dn + m->dv};
    a->KT = tile_of(a->K, 16);
    a->NT = tile_of(a->N, 32);
    if (wdt != DT_BF16 || !a->KT || !a->NT || a->xhead % 8 || a->R % 8)
        return false;
    a->lda = (a->KT + 8) * 2;
    a->ldb = q_side ? (a->NT + 8) * 2 : (a->KT + 8) * 2;
    a->stage = AT_ROWS * a->lda + (q_side ? a->KT : a->NT) * a->ldb;
    return true;
}

/* cp.async k-tile kt of the A rows and the B block into stage `off`. */
static void absorb_stage(KB *kb, const AbsorbTc *a, V off, V xp, V wp, V h, V r0, V c0, V rows, V kt)
{
    V tid = nvvm_tid_x(kb), k0 = kb_mul(kb, kt, kb_i32(kb, a->KT));
    int ach = a->KT / 8; /* 16-byte chunks per A row */
    KVar it = kb_for(kb, tid, kb_i32(kb, AT_ROWS * ach), kb_i32(kb, AT_THREADS));
    {
        V idx = kb_get(kb, it), rr = kb_div(kb, idx, kb_i32(kb, ach)), ch = kb_rem(kb, idx, kb_i32(kb, ach));
        V r = kb_add(kb, r0, rr), ok = kb_lt(kb, r, rows);
        V col = kb_add(kb, kb_mul(kb, h, kb_i32(kb, (int)a->xhead)), kb_add(kb, k0, kb_mul(kb, ch, kb_i32(kb, 8))));
        V g = kb_gep(kb, kb->bf16, xp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, kb_select(kb, ok, r, kb_i32(kb, 0))), kb_i64(kb, a->xrow)),
                                            kb_to_i64(kb, col)));
        V sp = kb_smem(kb, kb_add(kb, off, kb_add(kb, kb_mul(kb, rr, kb_i32(kb, a->lda)), kb_mul(kb, ch, kb_i32(kb, 16)))));
        nvvm_cp_async16(kb, sp, g, kb_select(kb, ok, kb_i32(kb, 16), kb_i32(kb, 0)));
    }
    kb_endfor(kb);
    /* B: q side rows k (KT of them) × NT columns; o side rows n (NT) × KT */
    int brows = a->q_side ? a->KT : a->NT, bch = (a->q_side ? a->NT : a->KT) / 8;
    V boff = kb_add(kb, off, kb_i32(kb, AT_ROWS * a->lda));
    KVar jt = kb_for(kb, tid, kb_i32(kb, brows * bch), kb_i32(kb, AT_THREADS));
    {
        V idx = kb_get(kb, jt), br = kb_div(kb, idx, kb_i32(kb, bch)), ch = kb_rem(kb, idx, kb_i32(kb, bch));
        V wrow = kb_add(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, (int)a->wstride)), kb_i32(kb, (int)a->wbase)),
                        a->q_side ? kb_add(kb, k0, br) : kb_add(kb, c0, br));
        V wcol = kb_add(kb, a->q_side ? c0 : k0, kb_mul(kb, ch, kb_i32(kb, 8)));
        V g = kb_gep(kb, kb->bf16, wp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, wrow), kb_i64(kb, a->R)), kb_to_i64(kb, wcol)));
        V sp = kb_smem(kb, kb_add(kb, boff, kb_add(kb, kb_mul(kb, br, kb_i32(kb, a->ldb)), kb_mul(kb, ch, kb_i32(kb, 16)))));
        nvvm_cp_async16(kb, sp, g, kb_i32(kb, 16));
    }
    kb_endfor(kb);
}

static bool emit_absorb_tc(Codegen *cg, const AbsorbTc *a, char **ptx, Diag *d)
{
    KB *kb = kb_new(cg->ctx, a->q_side ? "mla_absorb_q_tc" : "mla_absorb_o_tc",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_I32}, 4, AT_THREADS);
    V xp = kb_param(kb, 0), wp = kb_param(kb, 1), op = kb_param(kb, 2), rows = kb_param(kb, 3);
    V c0 = kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, a->NT)), h = nvvm_ctaid_y(kb);
    V r0 = kb_mul(kb, nvvm_ctaid_z(kb), kb_i32(kb, AT_ROWS)), warp = nvvm_warp(kb), lane = nvvm_lane(kb);
    int nk = (int)(a->K / a->KT), ni = a->NT / 8;
    KVar acc[MMA_MAX_MI][MMA_MAX_NI][4];
    for (int j = 0; j < ni; j++)
        for (int e = 0; e < 4; e++)
            acc[0][j][e] = kb_var(kb, kb->f32, kb_f32(kb, 0));
    absorb_stage(kb, a, kb_i32(kb, 0), xp, wp, h, r0, c0, rows, kb_i32(kb, 0));
    nvvm_cp_async_commit(kb);
    KVar ki = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, nk), kb_i32(kb, 1));
    {
        V kt = kb_get(kb, ki), cur = kb_mul(kb, kb_rem(kb, kt, kb_i32(kb, 2)), kb_i32(kb, a->stage));
        V nxt = kb_sub(kb, kb_i32(kb, a->stage), cur);
        kb_if(kb, kb_lt(kb, kb_add(kb, kt, kb_i32(kb, 1)), kb_i32(kb, nk)));
        absorb_stage(kb, a, nxt, xp, wp, h, r0, c0, rows, kb_add(kb, kt, kb_i32(kb, 1)));
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        nvvm_cp_async_wait(kb, 1);
        nvvm_bar_sync(kb);
        Tile at = {cur, a->lda, false}, bt = {kb_add(kb, cur, kb_i32(kb, AT_ROWS * a->lda)), a->ldb, a->q_side};
        mma_warp_tile(kb, at, bt, kb_mul(kb, warp, kb_i32(kb, 16)), kb_i32(kb, 0), kb_i32(kb, 0), 1, ni, a->KT, acc);
        nvvm_bar_sync(kb); /* this stage is refilled two tiles on */
    }
    kb_endfor(kb);
    nvvm_cp_async_wait(kb, 0);
    for (int j = 0; j < ni; j++)
        for (int e = 0; e < 4; e += 2) {
            V r = kb_add(kb, kb_add(kb, r0, kb_mul(kb, warp, kb_i32(kb, 16))), kb_add(kb, kb_div(kb, lane, kb_i32(kb, 4)), kb_i32(kb, 8 * (e / 2))));
            V c = kb_add(kb, c0, mma_acc_col(kb, j, e));
            kb_if(kb, kb_lt(kb, r, rows));
            V at = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, a->orow)),
                          kb_to_i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, (int)a->N)), c)));
            V pk = kb_pack_bf16x2(kb, kb_get(kb, acc[0][j][e]), kb_get(kb, acc[0][j][e + 1]));
            kb_store(kb, pk, kb_gep(kb, kb->i32, kb_gep(kb, kb->bf16, op, at), kb_i32(kb, 0)));
            kb_endif(kb);
        }
    return kb_emit_ptx(cg, kb, ptx, d);
}

static Mla mla_of(const Node *n)
{
    Mla m = {.H = node_int(n, "heads", 1), .dn = node_int(n, "nope", 0), .dr = node_int(n, "rope_dim", 0),
             .dv = node_int(n, "v_dim", 0), .R = node_int(n, "rank", 0)};
    m.qs = m.dn + m.dr;
    return m;
}

bool k_mla_absorb(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    Mla m = mla_of(n);
    bool q_side = n->op == OP_mla_absorb_q;
    char name[96];
    snprintf(name, sizeof name, "mla_absorb_%s_h%lld_r%lld_dn%lld_dv%lld", q_side ? "q" : "o", (long long)m.H,
             (long long)m.R, (long long)m.dn, (long long)m.dv);
    SymExpr rows = node_rows_expr(n);
    AbsorbTc a;
    bool tc = node_int(n, "tc", 0) && absorb_tc_of(&m, q_side, n->src[1]->dtype, &a);
    KLaunch *l = tc ? kout_add(out, name, AT_THREADS, (unsigned)(2 * a.stage))
                    : kout_add(out, name, AB_THREADS, (unsigned)(4 * (q_side ? m.dn : m.R)));
    if (tc) {
        snprintf(l->name + strlen(l->name), sizeof l->name - strlen(l->name), "_tc");
        kl_param(l, "tc", 1);
        l->grid[0] = sym_const(a.N / a.NT);
        l->grid[1] = sym_const(m.H);
        l->grid[2] = sym_ceildiv(rows, AT_ROWS);
    } else {
        l->grid[0] = sym_const(m.H);
        l->grid[1] = rows;
    }
    l->flops = sym_scale(rows, 2 * m.H * m.R * (q_side ? m.dn : m.dv));
    l->bytes = sym_add(sym_scale(rows, 2 * m.H * (q_side ? m.dn + m.R : m.R + m.dv)), sym_const(2 * m.H * (m.dn + m.dv) * m.R));
    kl_arg_src(l, 0);
    kl_arg_src(l, 1);
    kl_arg_out(l);
    kl_arg_i32(l, rows);
    if (tc)
        return emit_absorb_tc(cg, &a, &l->ptx, d);
    return emit_absorb(cg, &m, q_side, n->src[1]->dtype, &l->ptx, d);
}

/* ---- cache append: rows of a [B,S,w] value into [B,ctx,w] caches at pos.. ---- */
enum { AP_THREADS = 128 };

/* Emits a kernel copying `nparts` row sets (src_i [rows, w_i] → cache_i [B, ctx, w_i]).
 * Args: src_0, cache_0, ..., pos, rows, seq, ctx. Grid: rows. Shared with the indexer. */
bool emit_cache_append(Codegen *cg, const char *entry, int nparts, const int64_t *w, char **ptx, Diag *d)
{
    KParamKind pk[12];
    int np = 0;
    for (int i = 0; i < 2 * nparts; i++)
        pk[np++] = KP_PTR;
    pk[np++] = KP_PTR, pk[np++] = KP_I32, pk[np++] = KP_I32, pk[np++] = KP_I32;
    KB *kb = kb_new(cg->ctx, entry, pk, np, AP_THREADS);
    V posp = kb_param(kb, 2 * nparts), rows = kb_param(kb, 2 * nparts + 1), seq = kb_param(kb, 2 * nparts + 2),
      ctx = kb_param(kb, 2 * nparts + 3);
    V r = nvvm_ctaid_x(kb);
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V b = kb_div(kb, r, seq), t = kb_rem(kb, r, seq);
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t);
        kb_if(kb, kb_and(kb, kb_ge(kb, p, kb_i32(kb, 0)), kb_lt(kb, p, ctx)));
        V crow = kb_add(kb, kb_mul(kb, kb_to_i64(kb, b), kb_to_i64(kb, ctx)), kb_to_i64(kb, p));
        for (int i = 0; i < nparts; i++) {
            V src = kb_param(kb, 2 * i), dst = kb_param(kb, 2 * i + 1);
            KVar c = kb_for(kb, nvvm_tid_x(kb), kb_i32(kb, w[i]), kb_i32(kb, AP_THREADS));
            V cv = kb_to_i64(kb, kb_get(kb, c));
            V v = kb_load(kb, kb->i16, kb_gep(kb, kb->i16, src, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, w[i])), cv)));
            kb_store(kb, v, kb_gep(kb, kb->i16, dst, kb_add(kb, kb_mul(kb, crow, kb_i64(kb, w[i])), cv)));
            kb_endfor(kb);
        }
        kb_endif(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---- attention ---- */
V mla_key_pos(KB *kb, V selp, int64_t K, V r, V i, V p, V ctx, V *valid)
{
    if (!K) {
        *valid = LLVMConstInt(kb->i1, 1, 0);
        return i;
    }
    V j = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, selp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, K)),
                                                              kb_to_i64(kb, i))));
    *valid = kb_and(kb, kb_ge(kb, j, kb_i32(kb, 0)), kb_and(kb, kb_le(kb, j, p), kb_lt(kb, j, ctx)));
    return kb_select(kb, *valid, j, kb_i32(kb, 0));
}

static bool emit_attn(Codegen *cg, const Mla *m, int warps, int64_t K, float scale, char **ptx, Diag *d)
{
    bool sparse = K > 0;
    int RL = (int)((m->R + 31) / 32), PL = (int)((m->dr + 31) / 32); /* latent / rope channels per lane */
    KParamKind pk[10] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32};
    int np = 9;
    if (sparse)
        pk[np++] = KP_PTR;
    KB *kb = kb_new(cg->ctx, sparse ? "sparse_mla_attn" : "mla_attn", pk, np, 32 * warps);
    V qlp = kb_param(kb, 0), qpp = kb_param(kb, 1), ckv = kb_param(kb, 2), kpe = kb_param(kb, 3), posp = kb_param(kb, 4);
    V op = kb_param(kb, 5), seq = kb_param(kb, 6), ctx = kb_param(kb, 7), rows = kb_param(kb, 8);
    V selp = sparse ? kb_param(kb, 9) : NULL;
    V h = nvvm_ctaid_x(kb), r = nvvm_ctaid_y(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb), tid = nvvm_tid_x(kb);
    V zero = kb_f32(kb, 0), ninf = kb_f32(kb, -INFINITY);
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V b = kb_div(kb, r, seq), t = kb_rem(kb, r, seq);
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t);
        V cbase = kb_mul(kb, kb_to_i64(kb, b), kb_to_i64(kb, ctx)); /* cache row of (b, 0) */
        V q[32], qr[8];
        V qlb = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, m->H * m->R)), kb_to_i64(kb, kb_mul(kb, h, kb_i32(kb, m->R))));
        V qpb = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, m->H * m->qs)),
                       kb_to_i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, m->qs)), kb_i32(kb, m->qo))));
        for (int k = 0; k < RL; k++) {
            V c = kb_add(kb, lane, kb_i32(kb, 32 * k));
            V ok = kb_lt(kb, c, kb_i32(kb, m->R));
            q[k] = kb_select(kb, ok, ld_bf(kb, qlp, kb_add(kb, qlb, kb_to_i64(kb, kb_min(kb, c, kb_i32(kb, m->R - 1))))), zero);
        }
        for (int k = 0; k < PL; k++) {
            V c = kb_add(kb, lane, kb_i32(kb, 32 * k));
            V ok = kb_lt(kb, c, kb_i32(kb, m->dr));
            qr[k] = kb_select(kb, ok, ld_bf(kb, qpp, kb_add(kb, qpb, kb_to_i64(kb, kb_min(kb, c, kb_i32(kb, m->dr - 1))))), zero);
        }
        KVar mx = kb_var(kb, kb->f32, ninf), sum = kb_var(kb, kb->f32, zero);
        KVar o[32];
        for (int k = 0; k < RL; k++)
            o[k] = kb_var(kb, kb->f32, zero);
        V nkeys = sparse ? kb_i32(kb, K) : kb_add(kb, kb_min(kb, p, kb_sub(kb, ctx, kb_i32(kb, 1))), kb_i32(kb, 1));
        KVar it = kb_for(kb, warp, nkeys, kb_i32(kb, warps));
        {
            V valid, j = mla_key_pos(kb, selp, K, r, kb_get(kb, it), p, ctx, &valid);
            kb_if(kb, valid);
            {
                V row = kb_add(kb, cbase, kb_to_i64(kb, j));
                V cv[32];
                V part = zero;
                for (int k = 0; k < RL; k++) {
                    V c = kb_add(kb, lane, kb_i32(kb, 32 * k));
                    V ok = kb_lt(kb, c, kb_i32(kb, m->R));
                    cv[k] = kb_select(kb, ok, ld_bf(kb, ckv, kb_add(kb, kb_mul(kb, row, kb_i64(kb, m->R)), kb_to_i64(kb, kb_min(kb, c, kb_i32(kb, m->R - 1))))), zero);
                    part = kb_fma(kb, q[k], cv[k], part);
                }
                for (int k = 0; k < PL; k++) {
                    V c = kb_add(kb, lane, kb_i32(kb, 32 * k));
                    V ok = kb_lt(kb, c, kb_i32(kb, m->dr));
                    V kv = kb_select(kb, ok, ld_bf(kb, kpe, kb_add(kb, kb_mul(kb, row, kb_i64(kb, m->dr)), kb_to_i64(kb, kb_min(kb, c, kb_i32(kb, m->dr - 1))))), zero);
                    part = kb_fma(kb, qr[k], kv, part);
                }
                V s = kb_mul(kb, nvvm_warp_sum(kb, part), kb_f32(kb, scale));
                V mnew = kb_max(kb, kb_get(kb, mx), s);
                V corr = kb_exp(kb, kb_sub(kb, kb_get(kb, mx), mnew)); /* exp(-inf) = 0 on the first key */
                V e = kb_exp(kb, kb_sub(kb, s, mnew));
                kb_set(kb, sum, kb_fma(kb, kb_get(kb, sum), corr, e));
                for (int k = 0; k < RL; k++)
                    kb_set(kb, o[k], kb_fma(kb, kb_get(kb, o[k]), corr, kb_mul(kb, e, cv[k])));
                kb_set(kb, mx, mnew);
            }
            kb_endif(kb);
        }
        kb_endfor(kb);
        /* merge the warps: smem [warps][R + 2] (o, then max and sum) */
        int64_t slot = m->R + 2;
        V wb = kb_mul(kb, warp, kb_i32(kb, slot));
        for (int k = 0; k < RL; k++) {
            V c = kb_add(kb, lane, kb_i32(kb, 32 * k));
            kb_if(kb, kb_lt(kb, c, kb_i32(kb, m->R)));
            kb_store(kb, kb_get(kb, o[k]), kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, 0)), kb_add(kb, wb, c)));
            kb_endif(kb);
        }
        kb_if(kb, kb_eq(kb, lane, kb_i32(kb, 0)));
        kb_store(kb, kb_get(kb, mx), kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, 0)), kb_add(kb, wb, kb_i32(kb, m->R))));
        kb_store(kb, kb_get(kb, sum), kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, 0)), kb_add(kb, wb, kb_i32(kb, m->R + 1))));
        kb_endif(kb);
        nvvm_bar_sync(kb);
        V sm = kb_smem(kb, kb_i32(kb, 0));
        V M = ninf;
        for (int w = 0; w < warps; w++)
            M = kb_max(kb, M, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, sm, kb_i32(kb, w * slot + m->R))));
        V L = zero;
        V f[16];
        for (int w = 0; w < warps; w++) {
            V mw = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, sm, kb_i32(kb, w * slot + m->R)));
            f[w] = kb_select(kb, kb_eq(kb, mw, ninf), zero, kb_exp(kb, kb_sub(kb, mw, M)));
            L = kb_fma(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, sm, kb_i32(kb, w * slot + m->R + 1))), f[w], L);
        }
        V invL = kb_select(kb, kb_gt(kb, L, zero), kb_div(kb, kb_f32(kb, 1.0), L), zero);
        V ob = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, m->H * m->R)), kb_to_i64(kb, kb_mul(kb, h, kb_i32(kb, m->R))));
        KVar c = kb_for(kb, tid, kb_i32(kb, m->R), kb_i32(kb, 32 * warps));
        {
            V cv = kb_get(kb, c);
            V acc = zero;
            for (int w = 0; w < warps; w++)
                acc = kb_fma(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, sm, kb_add(kb, kb_i32(kb, w * slot), cv))), f[w], acc);
            kb_store(kb, kb_f32_to_bf16(kb, kb_mul(kb, acc, invL)), kb_gep(kb, kb->bf16, op, kb_add(kb, ob, kb_to_i64(kb, cv))));
        }
        kb_endfor(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

bool k_mla_attn(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    Mla m = {.H = node_int(n, "heads", 1), .R = node_int(n, "rank", 0), .dr = node_int(n, "rope_dim", 0),
             .qs = node_int(n, "q_stride", 0), .qo = node_int(n, "q_off", 0)};
    int warps = (int)node_int(n, "warps", 4);
    bool sparse = n->nsrc > 7;
    int64_t K = sparse ? n->src[7]->dim[2].n : 0;
    if (warps < 1 || warps > 16 || m.R > 32 * 32 || m.dr > 8 * 32)
        return diag_fail(d, "mla_attn: warps %d or latent width %lld / rope %lld out of range", warps, (long long)m.R,
                         (long long)m.dr);
    SymExpr rows = node_rows_expr(n), seq_e = n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n);
    /* launch 1: the call's latent rows into the caches */
    char name[96];
    snprintf(name, sizeof name, "mla_append_r%lld_dr%lld", (long long)m.R, (long long)m.dr);
    KLaunch *a = kout_add(out, name, AP_THREADS, 0);
    a->grid[0] = rows;
    a->bytes = sym_scale(rows, 4 * (m.R + m.dr));
    kl_arg_src(a, 2);
    kl_arg_src(a, 4);
    kl_arg_src(a, 3);
    kl_arg_src(a, 5);
    kl_arg_src(a, 6);
    kl_arg_i32(a, rows);
    kl_arg_i32(a, seq_e);
    kl_arg_i32(a, sym_mono(MONO_C, 1));
    int64_t w[2] = {m.R, m.dr};
    if (!emit_cache_append(cg, "mla_append", 2, w, &a->ptx, d))
        return false;
    /* launch 2: attention. Its cost (docs/kernels.md): per key and head, q·k
     * over R + dr and p·v over R, 2 flops each; bytes: the cache rows a call
     * must read once, plus the queries (q_lat, q_pe), the output and the
     * indices. A decode step (seq 1) reads its own keys: ctx rows dense, K
     * rows sparse (per query: selections differ). A prefill call reads each
     * cache row once (queries of a sequence share it). Sparse counts K keys
     * per query, exact once ctx >= K (bench at --position >= top_k); dense
     * prefill's B*S*ctx flops are beyond the linear model, so it is
     * reported by bytes. */
    bool step = !n->dim[1].sym && n->dim[1].n == 1;
    int64_t per_key = m.H * (4 * m.R + 2 * m.dr), row_b = 2 * (m.R + m.dr);
    int64_t io = 2 * m.H * (m.R + m.dr) + 2 * m.H * m.R + (sparse ? 4 * K : 0);
    SymExpr flops = sparse ? sym_scale(rows, K * per_key) : step ? sym_mono(MONO_BC, per_key) : sym_const(0);
    SymExpr bytes = sym_add(sym_scale(rows, io + (sparse && step ? K * row_b : 0)),
                            sparse && step ? sym_const(0) : sym_mono(MONO_BC, row_b));
    /* on tensor cores when it fits: a decode step split over keys, or a prefill
     * call with each query row as a decode query (splits 1) */
    if (node_int(n, "tc", 0) && mla_decode_tc_fits(n, cg->target))
        return k_mla_decode_tc(cg, n, flops, bytes, out, d);
    snprintf(name, sizeof name, "%smla_attn_h%lld_r%lld_dr%lld_w%d%s", sparse ? "sparse_" : "", (long long)m.H,
             (long long)m.R, (long long)m.dr, warps, sparse ? "_k" : "");
    if (sparse)
        snprintf(name + strlen(name), sizeof name - strlen(name), "%lld", (long long)K);
    KLaunch *l = kout_add(out, name, (unsigned)(32 * warps), (unsigned)(4 * warps * (m.R + 2)));
    kl_param(l, "warps", warps);
    l->grid[0] = sym_const(m.H);
    l->grid[1] = rows;
    l->flops = flops;
    l->bytes = bytes;
    for (int s = 0; s <= 1; s++)
        kl_arg_src(l, s);
    kl_arg_src(l, 4);
    kl_arg_src(l, 5);
    kl_arg_src(l, 6);
    kl_arg_out(l);
    kl_arg_i32(l, seq_e);
    kl_arg_i32(l, sym_mono(MONO_C, 1));
    kl_arg_i32(l, rows);
    if (sparse)
        kl_arg_src(l, 7);
    return emit_attn(cg, &m, warps, K, (float)node_float(n, "scale", 1.0), &l->ptx, d);
}
