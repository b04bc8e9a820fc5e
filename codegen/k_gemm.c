/* k_gemm.c — bf16 tensor-core GEMM with fp32 accumulation:
 *
 *     out[M, N] = P(A)[M, K] · W[N, K]^T (+ residual[M, N])
 *
 * or, with the mHC epilogue (n streams; fuse-mhc), o = P(A) · W^T and
 *
 *     out[m, i·N + c] = H_post[m, i] · o[m, c] + Σ_j H_res[m, i, j] · xs[m, j·N + c]
 *
 * with coef[m] = (H_post [n], H_res [n, n]) read once per row: mhc_post's
 * stream update while the tile is in registers.
 *
 * A is the activation (row-major), W a PyTorch-layout linear weight, so
 * both operands are K-contiguous ("TN"). A block computes a BM×BN tile with
 * WM×WN warps; each warp a (BM/WM)×(BN/WN) tile of m16n8k16 mma.sync.
 * K is streamed in BK slices through a STAGES-deep cp.async ring in shared
 * memory (rows padded by 16 bytes, so the 8 rows an ldmatrix reads hit 8
 * different bank groups). Out-of-range rows/columns are zero-filled on load
 * (cp.async src-size 0) and masked on store; K must be a multiple of 8.
 *
 * Prologue "swiglu": A is [M, 2K] (gate | up); both halves of each K slice
 * are staged, and P(A) = bf16(silu(gate)·up) is formed on the ldmatrix
 * fragments right before the mma (each warp column forms its own copy:
 * no extra barrier, no pass over memory).
 *
 * Grouped mode (the MoE experts, k_moe.c): blockIdx.y walks the experts'
 * row tiles (expert e owns rows offsets[e] .. offsets[e+1] of the
 * permutation), W is expert e's slice of a stacked [E, N, K] weight, and
 * the A rows and output rows go through a per-block row table in shared
 * memory (gathered tokens for gate/up; scattered (token, slot) rows, scaled
 * by the routing weight, for down).
 *
 * Args: A (bf16), W (bf16), out (f32|bf16), [residual (as out) | xs, coef (mhc, f32)], M (i32);
 * grouped: see k_gemm.h. Grid: (ceil(N/BN), ceil(M/BM)). */
#include <string.h>

#include "k_gemm.h"
#include "mhc_epi.h"
#include "nvvm.h"

enum { MAX_MI = 8, MAX_NI = 16 };

/* Where a block's operands are: the A row table (grouped) and its weight. */
typedef struct Ops {
    V a, w;   /* A base, this block's W base (expert slice when grouped) */
    V m_lim;  /* plain: rows M */
    V m0, n0; /* plain: first row; first column */
    V rowmap; /* grouped: i32 byte offset of the A row table in smem (-1 = empty row) */
} Ops;

/* Issues the cp.async loads of k-tile kt (i32 value) into ring stage `stage` (i32). */
static void load_tile(KB *kb, const GemmShape *s, const Ops *op, V stage, V kt, V tid)
{
    int threads = 32 * s->wm * s->wn, cpr = s->bk / 8, bkp = s->bk + 8, na = s->swiglu ? 2 : 1;
    int stage_bytes = (na * s->bm + s->bn) * bkp * 2;
    int64_t a_ld = s->swiglu ? 2 * s->K : s->K; /* elements per A row */
    V sbase = kb_mul(kb, stage, kb_i32(kb, stage_bytes));
    V k0 = kb_mul(kb, kt, kb_i32(kb, s->bk));
    for (int part = 0; part < na + 1; part++) { /* A rows (gate, up when swiglu), then W rows */
        bool isw = part == na;
        int rows = isw ? s->bn : s->bm;
        V src = isw ? op->w : op->a;
        int base = part * s->bm * bkp * 2;
        int64_t ld = isw ? s->K : a_ld, coff = isw ? 0 : part * s->K; /* up half at column K */
        for (int i = 0; i < (rows * cpr + threads - 1) / threads; i++) {
            V idx = kb_add(kb, tid, kb_i32(kb, i * threads));
            bool guard = (i + 1) * threads > rows * cpr;
            if (guard)
                kb_if(kb, kb_lt(kb, idx, kb_i32(kb, rows * cpr)));
            V r = kb_div(kb, idx, kb_i32(kb, cpr)), c = kb_rem(kb, idx, kb_i32(kb, cpr));
            V gk = kb_add(kb, k0, kb_mul(kb, c, kb_i32(kb, 8)));
            V gr, ok;
            if (!isw && s->mode != GEMM_PLAIN) { /* the block's row table */
                gr = kb_load(kb, kb->i32, kb_smem(kb, kb_add(kb, op->rowmap, kb_mul(kb, r, kb_i32(kb, 4)))));
                ok = kb_ge(kb, gr, kb_i32(kb, 0));
            } else {
                gr = kb_add(kb, isw ? op->n0 : op->m0, r);
                ok = kb_lt(kb, gr, isw ? kb_i32(kb, s->N) : op->m_lim);
            }
            ok = kb_and(kb, ok, kb_lt(kb, gk, kb_i32(kb, s->K)));
            V goff = kb_add(kb, kb_mul(kb, kb_to_i64(kb, kb_select(kb, ok, gr, kb_i32(kb, 0))), kb_i64(kb, ld)),
                            kb_to_i64(kb, kb_add(kb, kb_select(kb, ok, gk, kb_i32(kb, 0)), kb_i32(kb, coff))));
            V gp = kb_gep(kb, kb->bf16, src, goff);
            V soff = kb_add(kb, sbase, kb_add(kb, kb_i32(kb, base),
                                              kb_mul(kb, kb_add(kb, kb_mul(kb, r, kb_i32(kb, bkp)),
                                                                kb_mul(kb, c, kb_i32(kb, 8))),
                                                     kb_i32(kb, 2))));
            nvvm_cp_async16(kb, kb_smem(kb, soff), gp, kb_select(kb, ok, kb_i32(kb, 16), kb_i32(kb, 0)));
            if (guard)
                kb_endif(kb);
        }
    }
}

/* bf16x2 (i32) → the two floats, exactly. */
static void unpack_bf16x2(KB *kb, V x, V *lo, V *hi)
{
    *lo = kb_bitcast(kb, kb_shl(kb, x, kb_i32(kb, 16)), kb->f32);
    *hi = kb_bitcast(kb, kb_and(kb, x, kb_i32(kb, (int64_t)(int32_t)0xffff0000u)), kb->f32);
}

/* The swiglu prologue on a fragment register: bf16x2(silu(gate) · up). */
static V swiglu_pair(KB *kb, V g, V u)
{
    V g0, g1, u0, u1;
    unpack_bf16x2(kb, g, &g0, &g1);
    unpack_bf16x2(kb, u, &u0, &u1);
    return kb_pack_bf16x2(kb, kb_mul(kb, kb_silu(kb, g0), u0), kb_mul(kb, kb_silu(kb, g1), u1));
}

unsigned gemm_smem(const GemmShape *s)
{
    int na = s->swiglu ? 2 : 1;
    unsigned ring = (unsigned)(s->stages * (na * s->bm + s->bn) * (s->bk + 8) * 2);
    return ring + (s->mode != GEMM_PLAIN ? (unsigned)(2 * s->bm * 4) : 0);
}

bool gemm_check(const GemmShape *s, Diag *d)
{
    if (s->K % 8)
        return diag_fail(d, "gemm: K = %lld must be a multiple of 8", (long long)s->K);
    if (s->bk % 16 || s->bm % (16 * s->wm) || s->bn % (16 * s->wn) || s->stages < 2 || s->wm * s->wn > 32 ||
        s->bm / s->wm / 16 > MAX_MI || s->bn / s->wn / 8 > MAX_NI || s->bm < 16 || s->bn < 16)
        return diag_fail(d, "gemm: invalid schedule bm=%d bn=%d bk=%d wm=%d wn=%d stages=%d", s->bm, s->bn, s->bk,
                         s->wm, s->wn, s->stages);
    if (gemm_smem(s) > 227 * 1024)
        return diag_fail(d, "gemm: schedule needs %u bytes of shared memory", gemm_smem(s));
    if (s->mhc && (s->mhc > 8 || s->N % 2 || s->out != DT_F32 || s->residual || s->mode != GEMM_PLAIN))
        return diag_fail(d, "gemm: the mhc epilogue needs 1..8 streams, an even N, f32 output and no residual");
    return true;
}

/* Grouped mode: finds this block's (expert, first row) from blockIdx.y and
 * the offsets, and fills the row tables: A rows at rowmap, output rows at
 * rowmap + 4·bm (-1 past the expert's rows). Returns whether the block has
 * a tile (uniform over the block). */
/* The mHC epilogue of one accumulator row (fragment row i, half h): this
 * row's n + n² coefficients once, then per column pair the n streams in,
 * the n updated streams out (8-byte accesses). */
static void mhc_rows(KB *kb, const GemmShape *s, KVar acc[][MAX_NI][4], int i, int h, V n0, V wn0, V lc, V row, V rok,
                     V xs, V coef, V o)
{
    int ns = s->mhc, ni_n = s->bn / s->wn / 8;
    int64_t W = ns * s->N;
    kb_if(kb, rok);
    V hc[MHC_EPI_MAX_COEF]; /* H_post [n], H_res [n, n] */
    mhc_epi_coef(kb, ns, coef, row, hc);
    V rbase = kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, W));
    for (int j = 0; j < ni_n; j++) {
        V col = kb_add(kb, kb_add(kb, n0, wn0), kb_add(kb, lc, kb_i32(kb, j * 8)));
        kb_if(kb, kb_lt(kb, col, kb_i32(kb, (int)s->N)));
        V off = kb_add(kb, rbase, kb_to_i64(kb, col));
        V ov[2] = {kb_get(kb, acc[i][j][2 * h]), kb_get(kb, acc[i][j][2 * h + 1])};
        V xv[8][2];
        for (int q = 0; q < ns; q++) {
            V v = kb_load_vec(kb, kb->f32, 2, kb_gep(kb, kb->f32, xs, kb_add(kb, off, kb_i64(kb, q * s->N))), 8);
            xv[q][0] = kb_extract(kb, v, 0), xv[q][1] = kb_extract(kb, v, 1);
        }
        for (int q = 0; q < ns; q++) {
            V vec = LLVMGetUndef(LLVMVectorType(kb->f32, 2));
            for (int e = 0; e < 2; e++) {
                V v = kb_mul(kb, hc[q], ov[e]);
                for (int r = 0; r < ns; r++)
                    v = kb_fma(kb, hc[ns + q * ns + r], xv[r][e], v);
                vec = LLVMBuildInsertElement(kb->b, vec, v, kb_i32(kb, e), "");
            }
            kb_store_vec(kb, vec, kb_gep(kb, kb->f32, o, kb_add(kb, off, kb_i64(kb, q * s->N))), 8);
        }
        kb_endif(kb);
    }
    kb_endif(kb);
}

static V grouped_setup(KB *kb, const GemmShape *s, V offs, V perm, V w, V tid, V rowmap, V *w_e)
{
    int threads = 32 * s->wm * s->wn;
    V ty = nvvm_ctaid_y(kb);
    KVar fe = kb_var(kb, kb->i32, kb_i32(kb, -1)), fm0 = kb_var(kb, kb->i32, kb_i32(kb, 0));
    KVar before = kb_var(kb, kb->i32, kb_i32(kb, 0)); /* tiles of the experts below e */
    KVar e = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, s->experts), kb_i32(kb, 1));
    {
        V ev = kb_get(kb, e);
        V lo = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, offs, ev));
        V hi = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, offs, kb_add(kb, ev, kb_i32(kb, 1))));
        V nt = kb_div(kb, kb_add(kb, kb_sub(kb, hi, lo), kb_i32(kb, s->bm - 1)), kb_i32(kb, s->bm));
        V b0 = kb_get(kb, before);
        V hit = kb_and(kb, kb_lt(kb, kb_get(kb, fe), kb_i32(kb, 0)), kb_lt(kb, ty, kb_add(kb, b0, nt)));
        kb_set(kb, fm0, kb_select(kb, hit, kb_mul(kb, kb_sub(kb, ty, b0), kb_i32(kb, s->bm)), kb_get(kb, fm0)));
        kb_set(kb, fe, kb_select(kb, hit, ev, kb_get(kb, fe)));
        kb_set(kb, before, kb_add(kb, b0, nt));
    }
    kb_endfor(kb);
    V ev = kb_get(kb, fe), found = kb_ge(kb, ev, kb_i32(kb, 0));
    V ec = kb_max(kb, ev, kb_i32(kb, 0));
    V base = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, offs, ec));
    V cnt = kb_sub(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, offs, kb_add(kb, ec, kb_i32(kb, 1)))), base);
    V m0 = kb_get(kb, fm0);
    *w_e = kb_gep(kb, kb->bf16, w, kb_mul(kb, kb_to_i64(kb, ec), kb_i64(kb, s->N * s->K)));
    KVar r = kb_for(kb, tid, kb_i32(kb, s->bm), kb_i32(kb, threads));
    {
        V rv = kb_get(kb, r);
        V live = kb_and(kb, found, kb_lt(kb, kb_add(kb, m0, rv), cnt));
        V p = kb_add(kb, base, kb_add(kb, m0, rv));
        V pi = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, perm, kb_to_i64(kb, kb_select(kb, live, p, kb_i32(kb, 0)))));
        V arow = s->mode == GEMM_MOE_GU ? kb_div(kb, pi, kb_i32(kb, s->topk)) : p;
        V orow = s->mode == GEMM_MOE_GU ? p : pi;
        V slot = kb_add(kb, rowmap, kb_mul(kb, rv, kb_i32(kb, 4)));
        kb_store(kb, kb_select(kb, live, arow, kb_i32(kb, -1)), kb_smem(kb, slot));
        kb_store(kb, kb_select(kb, live, orow, kb_i32(kb, -1)), kb_smem(kb, kb_add(kb, slot, kb_i32(kb, 4 * s->bm))));
    }
    kb_endfor(kb);
    nvvm_bar_sync(kb);
    return found;
}

bool gemm_emit(Codegen *cg, const GemmShape *s, const char *entry, char **ptx, Diag *d)
{
    bool grouped = s->mode != GEMM_PLAIN;
    int threads = 32 * s->wm * s->wn, bkp = s->bk + 8, na = s->swiglu ? 2 : 1;
    int tm = s->bm / s->wm, tn = s->bn / s->wn, mi_n = tm / 16, ni_n = tn / 8;
    int stage_bytes = (na * s->bm + s->bn) * bkp * 2;
    int kt_n = (int)((s->K + s->bk - 1) / s->bk);
    KParamKind pk[6] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR};
    int np;
    if (grouped)
        np = s->mode == GEMM_MOE_DOWN ? 6 : 5;
    else
        np = s->mhc ? 6 : s->residual ? 5 : 4, pk[np - 1] = KP_I32;
    KB *kb = kb_new(cg->ctx, entry, pk, np, threads);
    V a = kb_param(kb, 0), w = kb_param(kb, 1), o = kb_param(kb, 2);
    V res = !grouped && s->residual ? kb_param(kb, 3) : NULL, M = !grouped ? kb_param(kb, np - 1) : NULL;
    V selw = s->mode == GEMM_MOE_DOWN ? kb_param(kb, 5) : NULL;
    V xs = s->mhc ? kb_param(kb, 3) : NULL, coef = s->mhc ? kb_param(kb, 4) : NULL; /* mHC epilogue */
    V tid = nvvm_tid_x(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    Ops op = {.a = a, .w = w, .m_lim = M, .n0 = kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, s->bn))};
    V rowmap = kb_i32(kb, s->stages * stage_bytes);
    if (grouped) {
        op.rowmap = rowmap;
        op.m0 = kb_i32(kb, 0);
        V found = grouped_setup(kb, s, kb_param(kb, 3), kb_param(kb, 4), w, tid, rowmap, &op.w);
        kb_if(kb, found); /* uniform: blocks past the experts' tiles do nothing */
    } else {
        op.m0 = kb_mul(kb, nvvm_ctaid_y(kb), kb_i32(kb, s->bm));
    }
    V m0 = op.m0, n0 = op.n0;
    V wm0 = kb_mul(kb, kb_div(kb, warp, kb_i32(kb, s->wn)), kb_i32(kb, tm));
    V wn0 = kb_mul(kb, kb_rem(kb, warp, kb_i32(kb, s->wn)), kb_i32(kb, tn));

    KVar acc[MAX_MI][MAX_NI][4];
    for (int i = 0; i < mi_n; i++)
        for (int j = 0; j < ni_n; j++)
            for (int k = 0; k < 4; k++)
                acc[i][j][k] = kb_var(kb, kb->f32, kb_f32(kb, 0));

    for (int st = 0; st < s->stages - 1; st++) {
        if (st < kt_n)
            load_tile(kb, s, &op, kb_i32(kb, st), kb_i32(kb, st), tid);
        nvvm_cp_async_commit(kb);
    }
    /* Per-lane ldmatrix row/column offsets (bytes within a stage). */
    V a_lane = kb_mul(kb, kb_add(kb, kb_mul(kb, kb_add(kb, wm0, kb_rem(kb, lane, kb_i32(kb, 16))), kb_i32(kb, bkp)),
                                 kb_mul(kb, kb_div(kb, lane, kb_i32(kb, 16)), kb_i32(kb, 8))),
                      kb_i32(kb, 2));
    V b_row = kb_add(kb, kb_add(kb, wn0, kb_rem(kb, lane, kb_i32(kb, 8))),
                     kb_mul(kb, kb_div(kb, lane, kb_i32(kb, 16)), kb_i32(kb, 8)));
    V b_lane = kb_add(kb, kb_i32(kb, na * s->bm * bkp * 2),
                      kb_mul(kb, kb_add(kb, kb_mul(kb, b_row, kb_i32(kb, bkp)),
                                        kb_mul(kb, kb_rem(kb, kb_div(kb, lane, kb_i32(kb, 8)), kb_i32(kb, 2)),
                                               kb_i32(kb, 8))),
                             kb_i32(kb, 2)));

    KVar kt = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, kt_n), kb_i32(kb, 1));
    {
        V ktv = kb_get(kb, kt);
        nvvm_cp_async_wait(kb, s->stages - 2);
        nvvm_bar_sync(kb);
        V nt = kb_add(kb, ktv, kb_i32(kb, s->stages - 1));
        kb_if(kb, kb_lt(kb, nt, kb_i32(kb, kt_n)));
        load_tile(kb, s, &op, kb_rem(kb, nt, kb_i32(kb, s->stages)), nt, tid);
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        V sbase = kb_mul(kb, kb_rem(kb, ktv, kb_i32(kb, s->stages)), kb_i32(kb, stage_bytes));
        for (int kk = 0; kk < s->bk / 16; kk++) {
            V af[MAX_MI][4], bf[MAX_NI][2];
            for (int i = 0; i < mi_n; i++) {
                V off = kb_add(kb, sbase, kb_add(kb, a_lane, kb_i32(kb, (i * 16 * bkp + kk * 16) * 2)));
                nvvm_ldmatrix_x4(kb, kb_smem(kb, off), false, af[i]);
                if (s->swiglu) { /* the up half sits bm rows further; same fragment layout */
                    V au[4];
                    nvvm_ldmatrix_x4(kb, kb_smem(kb, kb_add(kb, off, kb_i32(kb, s->bm * bkp * 2))), false, au);
                    for (int q = 0; q < 4; q++)
                        af[i][q] = swiglu_pair(kb, af[i][q], au[q]);
                }
            }
            for (int j = 0; j < ni_n; j += 2) {
                V off = kb_add(kb, sbase, kb_add(kb, b_lane, kb_i32(kb, (j * 8 * bkp + kk * 16) * 2)));
                V r[4];
                nvvm_ldmatrix_x4(kb, kb_smem(kb, off), false, r);
                bf[j][0] = r[0], bf[j][1] = r[1], bf[j + 1][0] = r[2], bf[j + 1][1] = r[3];
            }
            for (int i = 0; i < mi_n; i++)
                for (int j = 0; j < ni_n; j++) {
                    V c[4], dd[4];
                    for (int k = 0; k < 4; k++)
                        c[k] = kb_get(kb, acc[i][j][k]);
                    nvvm_mma_bf16(kb, af[i], bf[j], c, dd);
                    for (int k = 0; k < 4; k++)
                        kb_set(kb, acc[i][j][k], dd[k]);
                }
        }
    }
    kb_endfor(kb);

    /* Epilogue: acc[i][j][2h+e] is (row lane/4 + 8h, col 2*(lane%4) + e) of its 16x8 tile. */
    T ot = s->out == DT_BF16 ? kb->bf16 : kb->f32;
    V lr = kb_div(kb, lane, kb_i32(kb, 4)), lc = kb_mul(kb, kb_rem(kb, lane, kb_i32(kb, 4)), kb_i32(kb, 2));
    bool pairs = s->N % 2 == 0;
    for (int i = 0; i < mi_n; i++)
        for (int h = 0; h < 2; h++) {
            V rl = kb_add(kb, wm0, kb_add(kb, lr, kb_i32(kb, i * 16 + h * 8))); /* row within the tile */
            V row, rok, scale = NULL;
            if (grouped) {
                row = kb_load(kb, kb->i32, kb_smem(kb, kb_add(kb, rowmap, kb_mul(kb, kb_add(kb, rl, kb_i32(kb, s->bm)),
                                                                              kb_i32(kb, 4)))));
                rok = kb_ge(kb, row, kb_i32(kb, 0));
                if (selw)
                    scale = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, selw, kb_to_i64(kb, kb_max(kb, row, kb_i32(kb, 0)))));
            } else {
                row = kb_add(kb, m0, rl);
                rok = kb_lt(kb, row, M);
            }
            if (s->mhc) {
                mhc_rows(kb, s, acc, i, h, n0, wn0, lc, row, rok, xs, coef, o);
                continue;
            }
            for (int j = 0; j < ni_n; j++) {
                V col = kb_add(kb, kb_add(kb, n0, wn0), kb_add(kb, lc, kb_i32(kb, j * 8)));
                V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, s->N)), kb_to_i64(kb, col));
                for (int e = 0; e < (pairs ? 1 : 2); e++) {
                    V c = kb_add(kb, col, kb_i32(kb, e));
                    V oe = kb_add(kb, off, kb_i64(kb, e));
                    kb_if(kb, kb_and(kb, rok, kb_lt(kb, c, kb_i32(kb, s->N))));
                    if (pairs) {
                        V v0 = kb_get(kb, acc[i][j][2 * h]), v1 = kb_get(kb, acc[i][j][2 * h + 1]);
                        if (scale)
                            v0 = kb_mul(kb, v0, scale), v1 = kb_mul(kb, v1, scale);
                        if (res) {
                            V r = kb_load_vec(kb, ot, 2, kb_gep(kb, ot, res, oe), s->out == DT_BF16 ? 4 : 8);
                            V r0 = kb_extract(kb, r, 0), r1 = kb_extract(kb, r, 1);
                            if (s->out == DT_BF16)
                                r0 = kb_bf16_to_f32(kb, r0), r1 = kb_bf16_to_f32(kb, r1);
                            v0 = kb_add(kb, v0, r0), v1 = kb_add(kb, v1, r1);
                        }
                        if (s->out == DT_BF16)
                            v0 = kb_f32_to_bf16(kb, v0), v1 = kb_f32_to_bf16(kb, v1);
                        V vec = LLVMGetUndef(LLVMVectorType(ot, 2));
                        vec = LLVMBuildInsertElement(kb->b, vec, v0, kb_i32(kb, 0), "");
                        vec = LLVMBuildInsertElement(kb->b, vec, v1, kb_i32(kb, 1), "");
                        kb_store_vec(kb, vec, kb_gep(kb, ot, o, oe), s->out == DT_BF16 ? 4 : 8);
                    } else {
                        V v = kb_get(kb, acc[i][j][2 * h + e]);
                        if (scale)
                            v = kb_mul(kb, v, scale);
                        if (res) {
                            V r = kb_load(kb, ot, kb_gep(kb, ot, res, oe));
                            v = kb_add(kb, v, s->out == DT_BF16 ? kb_bf16_to_f32(kb, r) : r);
                        }
                        kb_store(kb, s->out == DT_BF16 ? kb_f32_to_bf16(kb, v) : v, kb_gep(kb, ot, o, oe));
                    }
                    kb_endif(kb);
                }
            }
        }
    if (grouped)
        kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

void gemm_launch_params(KLaunch *l, const GemmShape *s)
{
    kl_param(l, "bm", s->bm);
    kl_param(l, "bn", s->bn);
    kl_param(l, "bk", s->bk);
    kl_param(l, "wm", s->wm);
    kl_param(l, "wn", s->wn);
    kl_param(l, "stages", s->stages);
}

bool k_gemm(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    const Node *w = n->src[1];
    const char *pro = node_str(n, "prologue", NULL);
    GemmShape s = {
        .bm = (int)node_int(n, "bm", 128), .bn = (int)node_int(n, "bn", 128), .bk = (int)node_int(n, "bk", 32),
        .wm = (int)node_int(n, "wm", 2), .wn = (int)node_int(n, "wn", 4), .stages = (int)node_int(n, "stages", 3),
        .N = w->dim[0].n, .K = w->dim[1].n, .out = n->dtype, .residual = matmul_nres(n) == 1,
        .swiglu = pro && !strcmp(pro, "swiglu"), .mode = GEMM_PLAIN,
        .mhc = mhc_epi_streams(n),
    };
    if (pro && !s.swiglu)
        return diag_fail(d, "gemm: prologue '%s' is a decode (gemv) prologue", pro);
    if (!gemm_check(&s, d))
        return false;
    char name[96];
    char epi[MHC_EPI_TAG];
    snprintf(name, sizeof name, "gemm_n%lld_k%lld_%s%s%s%s_%dx%dx%d_w%dx%d_s%d", (long long)s.N, (long long)s.K,
             dtype_name(s.out), s.residual ? "_res" : "", mhc_epi_tag(s.mhc, epi), s.swiglu ? "_swiglu" : "", s.bm, s.bn, s.bk, s.wm, s.wn,
             s.stages);
    KLaunch *l = kout_add(out, name, (unsigned)(32 * s.wm * s.wn), gemm_smem(&s));
    gemm_launch_params(l, &s);
    SymExpr M = node_rows_expr(n);
    l->grid[0] = sym_const((s.N + s.bn - 1) / s.bn);
    l->grid[1] = sym_ceildiv(M, s.bm);
    int64_t osz = (int64_t)dtype_size(s.out);
    l->flops = sym_scale(M, 2 * s.N * s.K);
    /* out (and a residual) [M, N]; mhc: the n streams in and out, the coefficients */
    int64_t out_bytes = s.mhc ? mhc_epi_bytes(s.mhc, s.N) : s.N * osz * (s.residual ? 2 : 1);
    l->bytes = sym_add(sym_scale(M, s.K * 2 * (s.swiglu ? 2 : 1) + out_bytes), sym_const(s.N * s.K * 2));
    if (s.mhc)
        l->flops = sym_add(l->flops, sym_scale(M, mhc_epi_flops(s.mhc, s.N)));
    kl_arg_src(l, 0);
    kl_arg_src(l, 1);
    kl_arg_out(l);
    if (s.residual)
        kl_arg_src(l, 2);
    if (s.mhc) {
        kl_arg_src(l, 2);
        kl_arg_src(l, 3);
    }
    kl_arg_i32(l, M);
    return gemm_emit(cg, &s, "gemm", &l->ptx, d);
}
