/* k_gemv.c — matmul for a few rows (decode: M = batch): the weight is
 * streamed once per 16-row tile straight from global memory into mma.sync
 * B fragments, the rows sit in shared memory, and the normalisation in
 * front of the matmul runs as the prologue:
 *
 *     out[M, N] = P(x)[M, K] · W[N, K]^T (+ residual)
 *     or the mHC stream update (n streams, epilogue "mhc"; see k_gemm.c):
 *     out[M, i·N + c] = H_post[i]·o[c] + Σ_j H_res[i, j]·xs[M, j·N + c]
 *     P = identity (bf16 x) | rmsnorm (f32 x) | gated_rmsnorm (bf16 g, groups)
 *         | swiglu (bf16 x [M, 2K] = gate | up: silu(gate)·up as the rows are staged)
 *
 * Block: 4 or 8 warps = wn n8-column tiles × wk K-splits (partial sums reduced in
 * shared memory); grid (ceil(M / 16), ceil(N / 8wn)): the row tiles of one
 * column block are launched next to each other, so at M > 16 the later
 * tiles find that block's W in L2 and W is read from memory once (with
 * the column blocks on x the tiles of a block were N / 8wn blocks apart and
 * a W larger than L2, an LM head, was read once per tile). More than 65535
 * column blocks (grid y's limit) keep them on x. Each lane loads two
 * 4-byte pairs of a W row per k16 step, so a warp reads 32 contiguous bytes
 * of 8 rows; UNROLL steps are loaded before the first mma. K must be a
 * multiple of 8 (a K not a multiple of 16 is zero-padded).
 * Args: x, W, out, [residual | xs, coef (mhc)], [norm_w (norms only)], M (i32). */
#include <string.h>

#include "kernels.h"
#include "mhc_epi.h"
#include "mma.h"
#include "nvvm.h"

enum { GV_ROWS = 16, GV_UNROLL = 16 }; /* rows per block; k16 steps whose W loads are in flight together */

typedef struct GemvShape {
    int64_t N, K, Kp;    /* sizes; Kp = K rounded up to 16 */
    int wn, wk;          /* warps: n8 tiles × K splits */
    int warps;           /* wn · wk: 4 or 8 */
    int pro;             /* 0 none, 1 rmsnorm, 2 gated_rmsnorm, 3 swiglu */
    int64_t group;       /* norm group (gated) */
    float eps;           /* norm epsilon */
    DType in, out;       /* x and output dtypes */
    bool residual;       /* add a residual */
    int mhc;             /* streams n of the mHC epilogue (f32 out [M, n·N]); 0: none */
    bool pdl;            /* programmatic dependent launch (sm_90): wait for the predecessor late */
    bool cols_x;         /* column blocks on grid x, row tiles on y (only where they exceed grid y's limit) */
} GemvShape;

static V load_in(KB *kb, DType dt, V base, V idx)
{
    if (dt == DT_BF16)
        return kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, base, idx)));
    return kb_load(kb, kb->f32, kb_gep(kb, kb->f32, base, idx));
}

/* One warp's walk over its K range: where its W fragments are and how far it goes. */
typedef struct Walk {
    V w;          /* weight base */
    V wrow;       /* i64 element offset of this lane's W row */
    V kl;         /* lane's k offset within a k16 step (0, 2, 4, 6) */
    V kbeg;       /* first k of this warp's split */
    V lane;       /* lane index */
    int lda;      /* A row stride in smem (bytes) */
    int steps;    /* k16 steps in the split */
    int unroll;   /* steps per batch */
    int64_t K;    /* reduction size */
} Walk;

/* W fragments of `unroll` k16 steps from step0 (0 past the end): loads only. */
static void load_batch(KB *kb, const Walk *g, V step0, V b[][2])
{
    for (int u = 0; u < g->unroll; u++) {
        V k = kb_add(kb, g->kbeg, kb_mul(kb, kb_add(kb, step0, kb_i32(kb, u)), kb_i32(kb, 16)));
        for (int h = 0; h < 2; h++) {
            V kk = kb_add(kb, k, kb_add(kb, g->kl, kb_i32(kb, 8 * h)));
            V ok = kb_lt(kb, kk, kb_i32(kb, g->K));
            /* the bf16 pair (kk, kk+1) as one 4-byte load (K even: aligned) */
            V p = kb_gep(kb, kb->bf16, g->w, kb_add(kb, g->wrow, kb_to_i64(kb, kb_min(kb, kk, kb_i32(kb, g->K - 2)))));
            b[u][h] = kb_select(kb, ok, kb_load(kb, kb->i32, p), kb_i32(kb, 0));
        }
    }
}

/* acc += A[0..16, k] · W fragments b, for the `unroll` steps from step0. */
static void mma_batch(KB *kb, const Walk *g, V step0, V b[][2], KVar acc[4])
{
    bool tail = g->steps % g->unroll != 0;
    for (int u = 0; u < g->unroll; u++) {
        V step = kb_add(kb, step0, kb_i32(kb, u));
        if (tail)
            kb_if(kb, kb_lt(kb, step, kb_i32(kb, g->steps)));
        V k = kb_add(kb, g->kbeg, kb_mul(kb, step, kb_i32(kb, 16)));
        /* A fragment: rows 0..15 at k, stored [m][k] (lanes 16-31 address the k+8 half) */
        V af[4];
        V row = kb_rem(kb, g->lane, kb_i32(kb, 16));
        V col = kb_add(kb, k, kb_mul(kb, kb_div(kb, g->lane, kb_i32(kb, 16)), kb_i32(kb, 8)));
        nvvm_ldmatrix_x4(kb, kb_smem(kb, kb_add(kb, kb_mul(kb, row, kb_i32(kb, g->lda)), kb_mul(kb, col, kb_i32(kb, 2)))),
                         false, af);
        V c[4], dd[4];
        for (int e = 0; e < 4; e++)
            c[e] = kb_get(kb, acc[e]);
        nvvm_mma_bf16(kb, af, b[u], c, dd);
        for (int e = 0; e < 4; e++)
            kb_set(kb, acc[e], dd[e]);
        if (tail)
            kb_endif(kb);
    }
}

static bool emit(Codegen *cg, const GemvShape *s, char **ptx, Diag *d)
{
    int lda = (int)(s->Kp + 8) * 2;                  /* A row stride in smem (bytes) */
    int red = GV_ROWS * lda;                         /* reduction buffer offset */
    KParamKind pk[7];
    int np = 0;
    pk[np++] = KP_PTR, pk[np++] = KP_PTR, pk[np++] = KP_PTR;
    if (s->residual)
        pk[np++] = KP_PTR;
    if (s->mhc)
        pk[np++] = KP_PTR, pk[np++] = KP_PTR;
    bool norm = s->pro == 1 || s->pro == 2;      /* a norm prologue (reads norm_w) */
    if (norm)
        pk[np++] = KP_PTR;
    pk[np++] = KP_I32;
    KB *kb = kb_new(cg->ctx, "gemv", pk, np, 32 * s->warps);
    int ai = 0;
    V x = kb_param(kb, ai++), w = kb_param(kb, ai++), o = kb_param(kb, ai++);
    V res = s->residual ? kb_param(kb, ai++) : NULL;
    V xs = s->mhc ? kb_param(kb, ai++) : NULL, coef = s->mhc ? kb_param(kb, ai++) : NULL;
    V nw = norm ? kb_param(kb, ai++) : NULL;
    V M = kb_param(kb, ai++);
    V lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    V m0 = kb_mul(kb, s->cols_x ? nvvm_ctaid_y(kb) : nvvm_ctaid_x(kb), kb_i32(kb, GV_ROWS));
    V zero = kb_f32(kb, 0);

    /* warp = (nt, ks): n8 tile nt of the block's columns, K split ks */
    V nt = kb_rem(kb, warp, kb_i32(kb, s->wn)), ks = kb_div(kb, warp, kb_i32(kb, s->wn));
    V n0 = kb_add(kb, kb_mul(kb, s->cols_x ? nvvm_ctaid_x(kb) : nvvm_ctaid_y(kb), kb_i32(kb, 8 * s->wn)), kb_mul(kb, nt, kb_i32(kb, 8)));
    V n = kb_add(kb, n0, kb_div(kb, lane, kb_i32(kb, 4)));
    int64_t kw = s->Kp / s->wk; /* K range per split, a multiple of 16 */
    Walk gw = {.w = w, .wrow = kb_mul(kb, kb_to_i64(kb, kb_min(kb, n, kb_i32(kb, s->N - 1))), kb_i64(kb, s->K)),
               .kl = kb_mul(kb, kb_rem(kb, lane, kb_i32(kb, 4)), kb_i32(kb, 2)), .kbeg = kb_mul(kb, ks, kb_i32(kb, kw)),
               .lane = lane, .lda = lda, .steps = (int)(kw / 16), .K = s->K};
    gw.unroll = gw.steps < GV_UNROLL ? gw.steps : GV_UNROLL;
    /* the first batch of weights is in flight before anything waits on the previous kernel */
    V b0[GV_UNROLL][2];
    load_batch(kb, &gw, kb_i32(kb, 0), b0);
    if (s->pdl) {
        if (norm) /* the norm weight, read right after the wait: into L1 meanwhile */
            nvvm_prefetch_span_l1(kb, nw, kb_i32(kb, 0), s->K, nvvm_tid_x(kb), 32 * s->warps);
        nvvm_pdl_sync(kb);
    }
    /* the residual this thread adds in the epilogue: loaded now, beside the prologue's row
     * loads, so its latency is not paid again after the matmul */
    T ot = s->out == DT_BF16 ? kb->bf16 : kb->f32;
    KVar rv[4];
    for (int e = 0; e < 4 && res; e++) {
        V row = kb_add(kb, m0, mma_acc_row(kb, 0, e)), col = kb_add(kb, n0, mma_acc_col(kb, 0, e));
        rv[e] = kb_var(kb, kb->f32, zero);
        kb_if(kb, kb_and(kb, kb_eq(kb, ks, kb_i32(kb, 0)), kb_and(kb, kb_lt(kb, row, M), kb_lt(kb, col, kb_i32(kb, s->N)))));
        kb_set(kb, rv[e], load_in(kb, s->out, res, kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, s->N)), kb_to_i64(kb, col))));
        kb_endif(kb);
    }

    /* ---- prologue: rows m0..m0+15 → bf16 A tile in smem, a warp per row. A live
     * row is read with 16-byte loads and held in registers (two passes over
     * global memory when it does not fit), normalised per group, stored bf16;
     * rows past M are zero-filled without reading anything. ---- */
    int64_t grp = s->pro == 2 ? s->group : s->K;      /* norm group (whole row for rmsnorm) */
    int vec = s->in == DT_BF16 ? 8 : 4;                /* elements per 16-byte load */
    int nvec = (int)((s->K / vec + 31) / 32);          /* loads per lane */
    bool regs = nvec * vec <= 64;
    int64_t xld = s->pro == 3 ? 2 * s->K : s->K;       /* x row stride (swiglu: gate | up) */
    int ngrp = (int)(s->K / grp);
    T vt = s->in == DT_BF16 ? kb->bf16 : kb->f32;
    KVar r = kb_for(kb, warp, kb_i32(kb, GV_ROWS), kb_i32(kb, s->warps));
    {
        V rv = kb_get(kb, r), m = kb_add(kb, m0, rv);
        V srow = kb_mul(kb, rv, kb_i32(kb, lda));
        kb_if(kb, kb_lt(kb, m, M));
        {
            V xrow = kb_gep(kb, vt, x, kb_mul(kb, kb_to_i64(kb, m), kb_i64(kb, xld)));
            V vals[16][8];
            V inv[16];
            for (int pass = 0; pass < (norm && !regs ? 2 : 1); pass++) {
                V ss[16];
                for (int g = 0; g < ngrp; g++)
                    ss[g] = zero;
                for (int j = 0; j < nvec; j++) {
                    V q = kb_add(kb, lane, kb_i32(kb, 32 * j)); /* vector index */
                    bool guard = (j + 1) * 32 * vec > s->K;
                    V qc = guard ? kb_min(kb, q, kb_i32(kb, (int)(s->K / vec) - 1)) : q;
                    V live = guard ? kb_lt(kb, q, kb_i32(kb, (int)(s->K / vec))) : NULL;
                    V v = kb_load_vec(kb, vt, vec, kb_gep(kb, vt, xrow, kb_mul(kb, qc, kb_i32(kb, vec))), 16);
                    V u = s->pro == 3 ? kb_load_vec(kb, vt, vec, kb_gep(kb, vt, xrow, kb_add(kb, kb_mul(kb, qc, kb_i32(kb, vec)),
                                                                                           kb_i32(kb, (int)s->K))), 16)
                                      : NULL; /* the up half of a swiglu row */
                    V g = kb_div(kb, kb_mul(kb, qc, kb_i32(kb, vec)), kb_i32(kb, (int)grp));
                    for (int e = 0; e < vec; e++) {
                        V f = kb_extract(kb, v, e);
                        if (s->in == DT_BF16)
                            f = kb_bf16_to_f32(kb, f);
                        if (u) /* swiglu: the operand is silu(gate)·up, rounded to bf16 when stored */
                            f = kb_mul(kb, kb_silu(kb, f), kb_bf16_to_f32(kb, kb_extract(kb, u, e)));
                        if (live)
                            f = kb_select(kb, live, f, zero);
                        if (regs)
                            vals[j][e] = f;
                        if (norm && pass == 0)
                            for (int gi = 0; gi < ngrp; gi++)
                                ss[gi] = kb_add(kb, ss[gi], kb_select(kb, kb_eq(kb, g, kb_i32(kb, gi)), kb_mul(kb, f, f), zero));
                        if (!regs && (!norm || pass == 1)) { /* stream: normalise and store now */
                            V k = kb_add(kb, kb_mul(kb, qc, kb_i32(kb, vec)), kb_i32(kb, e));
                            V o = f;
                            if (norm) {
                                V gi = kb_div(kb, k, kb_i32(kb, (int)grp));
                                V iv = inv[0];
                                for (int g2 = 1; g2 < ngrp; g2++)
                                    iv = kb_select(kb, kb_eq(kb, gi, kb_i32(kb, g2)), inv[g2], iv);
                                o = kb_mul(kb, kb_mul(kb, o, iv), kb_load(kb, kb->f32, kb_gep(kb, kb->f32, nw, k)));
                            }
                            if (live)
                                kb_if(kb, live);
                            kb_store(kb, kb_f32_to_bf16(kb, o), kb_smem(kb, kb_add(kb, srow, kb_mul(kb, k, kb_i32(kb, 2)))));
                            if (live)
                                kb_endif(kb);
                        }
                    }
                }
                if (norm && pass == 0)
                    for (int g = 0; g < ngrp; g++)
                        inv[g] = kb_rsqrt(kb, kb_add(kb, kb_mul(kb, nvvm_warp_sum(kb, ss[g]), kb_f32(kb, 1.0 / (double)grp)),
                                                    kb_f32(kb, s->eps)));
            }
            if (regs) { /* normalise from registers, 16-byte or 8-byte smem stores */
                for (int j = 0; j < nvec; j++) {
                    V q = kb_add(kb, lane, kb_i32(kb, 32 * j));
                    bool guard = (j + 1) * 32 * vec > s->K;
                    if (guard)
                        kb_if(kb, kb_lt(kb, q, kb_i32(kb, (int)(s->K / vec))));
                    V k0 = kb_mul(kb, q, kb_i32(kb, vec));
                    V iv = norm ? inv[0] : NULL;
                    if (norm)
                        for (int g2 = 1; g2 < ngrp; g2++)
                            iv = kb_select(kb, kb_eq(kb, kb_div(kb, k0, kb_i32(kb, (int)grp)), kb_i32(kb, g2)), inv[g2], iv);
                    V w4 = norm ? kb_load_vec(kb, kb->f32, vec, kb_gep(kb, kb->f32, nw, k0), 16) : NULL;
                    V packed = LLVMGetUndef(LLVMVectorType(kb->i32, (unsigned)(vec / 2)));
                    for (int e = 0; e < vec; e += 2) {
                        V lo = vals[j][e], hi = vals[j][e + 1];
                        if (norm) {
                            lo = kb_mul(kb, kb_mul(kb, lo, iv), kb_extract(kb, w4, e));
                            hi = kb_mul(kb, kb_mul(kb, hi, iv), kb_extract(kb, w4, e + 1));
                        }
                        packed = LLVMBuildInsertElement(kb->b, packed, kb_pack_bf16x2(kb, lo, hi), kb_i32(kb, e / 2), "");
                    }
                    kb_store_vec(kb, packed, kb_smem(kb, kb_add(kb, srow, kb_mul(kb, k0, kb_i32(kb, 2)))), (unsigned)vec * 2);
                    if (guard)
                        kb_endif(kb);
                }
            }
        }
        kb_else(kb);
        { /* a row past M: zeros */
            KVar j = kb_for(kb, lane, kb_i32(kb, (int)(s->Kp / 8)), kb_i32(kb, 32));
            kb_store_vec(kb, LLVMConstNull(LLVMVectorType(kb->i32, 4)),
                         kb_smem(kb, kb_add(kb, srow, kb_mul(kb, kb_get(kb, j), kb_i32(kb, 16)))), 16);
            kb_endfor(kb);
        }
        kb_endif(kb);
        if (s->Kp > s->K) { /* zero the padding columns of every row */
            KVar j = kb_for(kb, kb_add(kb, lane, kb_i32(kb, (int)s->K)), kb_i32(kb, (int)s->Kp), kb_i32(kb, 32));
            kb_store(kb, kb_f32_to_bf16(kb, zero), kb_smem(kb, kb_add(kb, srow, kb_mul(kb, kb_get(kb, j), kb_i32(kb, 2)))));
            kb_endfor(kb);
        }
    }
    kb_endfor(kb);
    nvvm_bar_sync(kb);

    /* ---- main loop: the prefetched batch, then the rest ---- */
    KVar acc[4];
    for (int e = 0; e < 4; e++)
        acc[e] = kb_var(kb, kb->f32, zero);
    mma_batch(kb, &gw, kb_i32(kb, 0), b0, acc);
    KVar st = kb_for(kb, kb_i32(kb, gw.unroll), kb_i32(kb, gw.steps), kb_i32(kb, gw.unroll));
    {
        V b[GV_UNROLL][2];
        load_batch(kb, &gw, kb_get(kb, st), b);
        mma_batch(kb, &gw, kb_get(kb, st), b, acc);
    }
    kb_endfor(kb);

    /* ---- reduce the K splits through smem, then the epilogue in ks == 0 warps ---- */
    if (s->wk > 1) {
        V slot = kb_add(kb, kb_i32(kb, red), kb_mul(kb, kb_add(kb, kb_mul(kb, ks, kb_i32(kb, s->wn)), nt), kb_i32(kb, 32 * 4 * 4)));
        for (int e = 0; e < 4; e++)
            kb_store(kb, kb_get(kb, acc[e]),
                     kb_gep(kb, kb->f32, kb_smem(kb, slot), kb_add(kb, kb_mul(kb, lane, kb_i32(kb, 4)), kb_i32(kb, e))));
        nvvm_bar_sync(kb);
        kb_if(kb, kb_eq(kb, ks, kb_i32(kb, 0)));
        for (int q = 1; q < s->wk; q++) {
            V qs = kb_add(kb, kb_i32(kb, red), kb_mul(kb, kb_add(kb, kb_i32(kb, q * s->wn), nt), kb_i32(kb, 32 * 4 * 4)));
            for (int e = 0; e < 4; e++)
                kb_set(kb, acc[e],
                       kb_add(kb, kb_get(kb, acc[e]),
                              kb_load(kb, kb->f32, kb_gep(kb, kb->f32, kb_smem(kb, qs), kb_add(kb, kb_mul(kb, lane, kb_i32(kb, 4)), kb_i32(kb, e))))));
        }
    }
    for (int e = 0; e < 4; e++) {
        V row = kb_add(kb, m0, mma_acc_row(kb, 0, e)), col = kb_add(kb, n0, mma_acc_col(kb, 0, e));
        kb_if(kb, kb_and(kb, kb_lt(kb, row, M), kb_lt(kb, col, kb_i32(kb, s->N))));
        V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, s->N)), kb_to_i64(kb, col));
        V v = kb_get(kb, acc[e]);
        if (s->mhc) { /* n streams of row `row`, column col: read every x_j, write every updated stream */
            V hc[MHC_EPI_MAX_COEF];
            mhc_epi_coef(kb, s->mhc, coef, row, hc);
            V sbase = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, s->mhc * s->N)), kb_to_i64(kb, col));
            mhc_epi_update(kb, s->mhc, s->N, hc, v, xs, o, sbase);
            kb_endif(kb);
            continue;
        }
        if (res)
            v = kb_add(kb, v, kb_get(kb, rv[e]));
        kb_store(kb, s->out == DT_BF16 ? kb_f32_to_bf16(kb, v) : v, kb_gep(kb, ot, o, off));
        kb_endif(kb);
    }
    if (s->wk > 1)
        kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

bool k_gemv(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    const Node *w = n->src[1];
    const char *pro = node_str(n, "prologue", NULL);
    GemvShape s = {.N = w->dim[0].n, .K = w->dim[1].n, .wn = (int)node_int(n, "wn", 1), .wk = (int)node_int(n, "wk", 4),
                   .pro = !pro ? 0 : !strcmp(pro, "rmsnorm") ? 1 : !strcmp(pro, "swiglu") ? 3 : 2, .group = node_int(n, "group", w->dim[1].n),
                   .eps = (float)node_float(n, "eps", 1e-5), .in = n->src[0]->dtype, .out = n->dtype};
    s.residual = matmul_nres(n) == 1;
    s.mhc = mhc_epi_streams(n);
    s.pdl = kl_use_pdl(cg, n);
    s.Kp = (s.K + 15) / 16 * 16;
    s.warps = s.wn * s.wk;
    int64_t colblocks = (s.N + 8 * s.wn - 1) / (8 * s.wn);
    s.cols_x = colblocks > 65535;
    if (s.K % 8 || s.wn < 1 || s.wk < 1 || (s.warps != 4 && s.warps != 8) || (s.Kp / s.wk) % 16 || s.group < 1 ||
        s.K % s.group || s.group % 8 || s.K / s.group > 16 || s.mhc > 8 || (s.mhc && s.out != DT_F32))
        return diag_fail(d, "gemv: invalid schedule wn=%d wk=%d for K=%lld", s.wn, s.wk, (long long)s.K);
    unsigned smem = (unsigned)(GV_ROWS * (s.Kp + 8) * 2 + (s.wk > 1 ? s.warps * 32 * 4 * 4 : 0));
    char name[96];
    static const char *const pn[] = {"", "_rms", "_gnorm", "_swiglu"};
    char epi[MHC_EPI_TAG];
    snprintf(name, sizeof name, "gemv_n%lld_k%lld_%s%s%s%s_w%dx%d%s", (long long)s.N, (long long)s.K, dtype_name(s.out),
             s.residual ? "_res" : "", mhc_epi_tag(s.mhc, epi), pn[s.pro], s.wn, s.wk, s.cols_x ? "_cx" : "");
    KLaunch *l = kout_add(out, name, (unsigned)(32 * s.warps), smem);
    kl_param(l, "wn", s.wn);
    kl_param(l, "wk", s.wk);
    kl_param(l, "pdl", s.pdl);
    SymExpr M = node_rows_expr(n);
    l->grid[s.cols_x ? 0 : 1] = sym_const(colblocks);
    l->grid[s.cols_x ? 1 : 0] = sym_ceildiv(M, GV_ROWS);
    int64_t osz = (int64_t)dtype_size(s.out);
    l->flops = sym_scale(M, 2 * s.N * s.K);
    int64_t out_bytes = s.mhc ? mhc_epi_bytes(s.mhc, s.N) : s.N * osz * (s.residual ? 2 : 1);
    l->bytes = sym_add(sym_scale(M, s.K * (s.pro == 3 ? 2 : 1) * (int64_t)dtype_size(s.in) + out_bytes),
                       sym_const(s.N * s.K * 2));
    if (s.mhc)
        l->flops = sym_add(l->flops, sym_scale(M, mhc_epi_flops(s.mhc, s.N)));
    kl_arg_src(l, 0); /* x, W, out, [residual | xs, coef], [norm_w], M: the kernel's parameter order */
    kl_arg_src(l, 1);
    kl_arg_out(l);
    if (s.residual)
        kl_arg_src(l, 2);
    if (s.mhc) {
        kl_arg_src(l, 2);
        kl_arg_src(l, 3);
    }
    if (s.pro == 1 || s.pro == 2)
        kl_arg_src(l, n->nsrc - 1);
    kl_arg_i32(l, M);
    return emit(cg, &s, &l->ptx, d);
}
