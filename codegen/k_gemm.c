/* k_gemm.c — bf16 tensor-core GEMM with fp32 accumulation:
 *
 *     out[M, N] = A[M, K] · W[N, K]^T (+ residual[M, N])
 *
 * A is the activation (row-major), W a PyTorch-layout linear weight, so
 * both operands are K-contiguous ("TN"). A block computes a BM×BN tile with
 * WM×WN warps; each warp a (BM/WM)×(BN/WN) tile of m16n8k16 mma.sync.
 * K is streamed in BK slices through a STAGES-deep cp.async ring in shared
 * memory (rows padded by 16 bytes, so the 8 rows an ldmatrix reads hit 8
 * different bank groups). Out-of-range rows/columns are zero-filled on load
 * (cp.async src-size 0) and masked on store; K must be a multiple of 8.
 *
 * Args: A (bf16), W (bf16), out (f32|bf16), [residual (as out)], M (i32).
 * Grid: (ceil(N/BN), ceil(M/BM)). */
#include <string.h>

#include "kernels.h"
#include "nvvm.h"

typedef struct GemmShape {
    int bm, bn, bk, wm, wn, stages; /* schedule */
    int64_t N, K;                   /* static sizes */
    DType out;                      /* output dtype */
    bool residual;                  /* add a residual in the epilogue */
} GemmShape;

enum { MAX_MI = 8, MAX_NI = 16 };

/* Issues the cp.async loads of k-tile kt (i32 value) into ring stage `stage` (i32). */
static void load_tile(KB *kb, const GemmShape *s, V a, V w, V m_lim, V m0, V n0, V stage, V kt, V tid)
{
    int threads = 32 * s->wm * s->wn, cpr = s->bk / 8, bkp = s->bk + 8;
    int stage_bytes = (s->bm + s->bn) * bkp * 2;
    V sbase = kb_mul(kb, stage, kb_i32(kb, stage_bytes));
    V k0 = kb_mul(kb, kt, kb_i32(kb, s->bk));
    for (int part = 0; part < 2; part++) { /* 0: A rows, 1: W rows */
        int rows = part ? s->bn : s->bm;
        V src = part ? w : a;
        V lim = part ? kb_i32(kb, s->N) : m_lim;
        V r0 = part ? n0 : m0;
        int base = part ? s->bm * bkp * 2 : 0;
        for (int i = 0; i < (rows * cpr + threads - 1) / threads; i++) {
            V idx = kb_add(kb, tid, kb_i32(kb, i * threads));
            bool guard = (i + 1) * threads > rows * cpr;
            if (guard)
                kb_if(kb, kb_lt(kb, idx, kb_i32(kb, rows * cpr)));
            V r = kb_div(kb, idx, kb_i32(kb, cpr)), c = kb_rem(kb, idx, kb_i32(kb, cpr));
            V gr = kb_add(kb, r0, r), gk = kb_add(kb, k0, kb_mul(kb, c, kb_i32(kb, 8)));
            V ok = kb_and(kb, kb_lt(kb, gr, lim), kb_lt(kb, gk, kb_i32(kb, s->K)));
            V goff = kb_add(kb, kb_mul(kb, kb_to_i64(kb, kb_select(kb, ok, gr, kb_i32(kb, 0))), kb_i64(kb, s->K)),
                            kb_to_i64(kb, kb_select(kb, ok, gk, kb_i32(kb, 0))));
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

static bool emit(Codegen *cg, const GemmShape *s, char **ptx, Diag *d)
{
    int threads = 32 * s->wm * s->wn, bkp = s->bk + 8;
    int tm = s->bm / s->wm, tn = s->bn / s->wn, mi_n = tm / 16, ni_n = tn / 8;
    int stage_bytes = (s->bm + s->bn) * bkp * 2;
    int kt_n = (int)((s->K + s->bk - 1) / s->bk);
    KParamKind pk[5] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32};
    if (!s->residual)
        pk[3] = KP_I32;
    KB *kb = kb_new(cg->ctx, "gemm", pk, s->residual ? 5 : 4, threads);
    V a = kb_param(kb, 0), w = kb_param(kb, 1), o = kb_param(kb, 2);
    V res = s->residual ? kb_param(kb, 3) : NULL, M = kb_param(kb, s->residual ? 4 : 3);
    V tid = nvvm_tid_x(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    V m0 = kb_mul(kb, nvvm_ctaid_y(kb), kb_i32(kb, s->bm)), n0 = kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, s->bn));
    V wm0 = kb_mul(kb, kb_div(kb, warp, kb_i32(kb, s->wn)), kb_i32(kb, tm));
    V wn0 = kb_mul(kb, kb_rem(kb, warp, kb_i32(kb, s->wn)), kb_i32(kb, tn));

    KVar acc[MAX_MI][MAX_NI][4];
    for (int i = 0; i < mi_n; i++)
        for (int j = 0; j < ni_n; j++)
            for (int k = 0; k < 4; k++)
                acc[i][j][k] = kb_var(kb, kb->f32, kb_f32(kb, 0));

    for (int st = 0; st < s->stages - 1; st++) {
        if (st < kt_n)
            load_tile(kb, s, a, w, M, m0, n0, kb_i32(kb, st), kb_i32(kb, st), tid);
        nvvm_cp_async_commit(kb);
    }
    /* Per-lane ldmatrix row/column offsets (bytes within a stage). */
    V a_lane = kb_mul(kb, kb_add(kb, kb_mul(kb, kb_add(kb, wm0, kb_rem(kb, lane, kb_i32(kb, 16))), kb_i32(kb, bkp)),
                                 kb_mul(kb, kb_div(kb, lane, kb_i32(kb, 16)), kb_i32(kb, 8))),
                      kb_i32(kb, 2));
    V b_row = kb_add(kb, kb_add(kb, wn0, kb_rem(kb, lane, kb_i32(kb, 8))),
                     kb_mul(kb, kb_div(kb, lane, kb_i32(kb, 16)), kb_i32(kb, 8)));
    V b_lane = kb_add(kb, kb_i32(kb, s->bm * bkp * 2),
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
        load_tile(kb, s, a, w, M, m0, n0, kb_rem(kb, nt, kb_i32(kb, s->stages)), nt, tid);
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        V sbase = kb_mul(kb, kb_rem(kb, ktv, kb_i32(kb, s->stages)), kb_i32(kb, stage_bytes));
        for (int kk = 0; kk < s->bk / 16; kk++) {
            V af[MAX_MI][4], bf[MAX_NI][2];
            for (int i = 0; i < mi_n; i++) {
                V off = kb_add(kb, sbase, kb_add(kb, a_lane, kb_i32(kb, (i * 16 * bkp + kk * 16) * 2)));
                nvvm_ldmatrix_x4(kb, kb_smem(kb, off), false, af[i]);
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
        for (int j = 0; j < ni_n; j++) {
            V col = kb_add(kb, kb_add(kb, n0, wn0), kb_add(kb, lc, kb_i32(kb, j * 8)));
            for (int h = 0; h < 2; h++) {
                V row = kb_add(kb, kb_add(kb, m0, wm0), kb_add(kb, lr, kb_i32(kb, i * 16 + h * 8)));
                V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, s->N)), kb_to_i64(kb, col));
                for (int e = 0; e < (pairs ? 1 : 2); e++) {
                    V c = kb_add(kb, col, kb_i32(kb, e));
                    V oe = kb_add(kb, off, kb_i64(kb, e));
                    kb_if(kb, kb_and(kb, kb_lt(kb, row, M), kb_lt(kb, c, kb_i32(kb, s->N))));
                    if (pairs) {
                        V v0 = kb_get(kb, acc[i][j][2 * h]), v1 = kb_get(kb, acc[i][j][2 * h + 1]);
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
    return kb_emit_ptx(cg, kb, ptx, d);
}

bool k_gemm(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    const Node *w = n->src[1];
    GemmShape s = {
        .bm = (int)node_int(n, "bm", 128), .bn = (int)node_int(n, "bn", 128), .bk = (int)node_int(n, "bk", 32),
        .wm = (int)node_int(n, "wm", 2), .wn = (int)node_int(n, "wn", 4), .stages = (int)node_int(n, "stages", 3),
        .N = w->dim[0].n, .K = w->dim[1].n, .out = n->dtype, .residual = n->nsrc > 2,
    };
    if (s.K % 8)
        return diag_fail(d, "gemm: K = %lld must be a multiple of 8", (long long)s.K);
    if (s.bk % 16 || s.bm % (16 * s.wm) || s.bn % (16 * s.wn) || s.stages < 2 || s.wm * s.wn > 32 ||
        s.bm / s.wm / 16 > MAX_MI || s.bn / s.wn / 8 > MAX_NI)
        return diag_fail(d, "gemm: invalid schedule bm=%d bn=%d bk=%d wm=%d wn=%d stages=%d", s.bm, s.bn, s.bk,
                         s.wm, s.wn, s.stages);
    unsigned smem = (unsigned)(s.stages * (s.bm + s.bn) * (s.bk + 8) * 2);
    char name[96];
    snprintf(name, sizeof name, "gemm_n%lld_k%lld_%s%s_%dx%dx%d_w%dx%d_s%d", (long long)s.N, (long long)s.K,
             dtype_name(s.out), s.residual ? "_res" : "", s.bm, s.bn, s.bk, s.wm, s.wn, s.stages);
    KLaunch *l = kout_add(out, name, (unsigned)(32 * s.wm * s.wn), smem);
    kl_param(l, "bm", s.bm);
    kl_param(l, "bn", s.bn);
    kl_param(l, "bk", s.bk);
    kl_param(l, "wm", s.wm);
    kl_param(l, "wn", s.wn);
    kl_param(l, "stages", s.stages);
    SymExpr M = node_rows_expr(n);
    l->grid[0] = sym_const((s.N + s.bn - 1) / s.bn);
    l->grid[1] = sym_ceildiv(M, s.bm);
    int64_t osz = (int64_t)dtype_size(s.out);
    l->flops = sym_scale(M, 2 * s.N * s.K);
    l->bytes = sym_add(sym_scale(M, s.K * 2 + s.N * osz * (s.residual ? 2 : 1)), sym_const(s.N * s.K * 2));
    kl_arg_src(l, 0);
    kl_arg_src(l, 1);
    kl_arg_out(l);
    if (s.residual)
        kl_arg_src(l, 2);
    kl_arg_i32(l, M);
    return emit(cg, &s, &l->ptx, d);
}
