/* k_moe.c — the mixture-of-experts op in five launches, no per-expert loop
 * over the batch:
 *
 *   moe_route    a thread per token: scores (softmax or sigmoid of the fp32
 *                router logits), the top-k by score + bias (k passes over E,
 *                each taking the best below the previous pick in (value,
 *                lower index) order: ties to the lower expert), weights
 *                (renormalised, scaled) → sel_e, sel_w [tokens, k]
 *   moe_perm     one block: per-expert counts with shared-memory atomics
 *                (the returned old count is the assignment's rank within its
 *                expert), the exclusive scan → offsets [E+1], and the
 *                permutation perm[offsets[e] + rank] = token·k + slot
 *   gemm (grouped, gate/up)  one launch over all (expert, row tile) pairs:
 *                H[p] = h[perm[p] / k] · W_gu[e]^T, rows gathered in the A-load
 *   gemm (grouped, down)     Y[perm[p]] = sel_w · (bf16(silu(g)·u) · W_d[e]^T):
 *                the swiglu prologue on the fragments, the routing weight
 *                and the scatter to (token, slot) rows in the epilogue
 *   moe_combine  out[t] = residual[t] + Σ_slot Y[t·k + slot], slots in order
 *                (attr residual=0, the block inside mHC streams: no residual
 *                operand, out[t] = Σ_slot Y[t·k + slot]); with the mhc
 *                epilogue (fuse-mhc) that sum is o[t] and the combine writes
 *                the n streams after mhc_post's update (mhc_epi.h): token t's
 *                coefficients once, then per column the n streams in and out
 *
 * Determinism: the atomics only decide the order of an expert's rows inside
 * the permutation. Every output row of the grouped GEMMs is computed from its
 * own A row with the same K order whatever tile it lands in, each lands in a
 * row fixed by (token, slot), and the combine sums slots in a fixed order:
 * the result is bitwise the same from run to run.
 *
 * Scratch (lower.c sizes it; A = rows·k assignments): sel_e i32 [A], sel_w
 * f32 [A], rank i32 [A], perm i32 [A], H bf16 [A, 2F], Y f32 [A, D],
 * offsets i32 [E+1]. */
#include <math.h>
#include <string.h>

#include "k_gemm.h"
#include "mhc_epi.h"
#include "nvvm.h"

enum { ROUTE_THREADS = 128, PERM_THREADS = 1024, COMBINE_THREADS = 128 };

typedef struct MoeShape {
    int64_t E, k, F, D; /* experts, picks per token, expert width, model width */
    bool sigmoid;       /* scores: sigmoid (else softmax) */
    bool bias;          /* a selection bias operand */
    bool residual;      /* a residual operand that the combine adds */
    int mhc;            /* streams n of the mHC epilogue (out f32 [T, n·D]); 0: none */
    bool bias_in_w;     /* the bias enters the weights */
    bool renorm;        /* weights / their sum */
    float scale;        /* routed scaling factor */
} MoeShape;

/* moe_route: logits, [bias], sel_e, sel_w, T. */
static bool emit_route(Codegen *cg, const MoeShape *s, char **ptx, Diag *d)
{
    KParamKind pk[5] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32};
    int np = s->bias ? 5 : 4;
    if (!s->bias)
        pk[3] = KP_I32;
    KB *kb = kb_new(cg->ctx, "moe_route", pk, np, ROUTE_THREADS);
    int ai = 0;
    V lg = kb_param(kb, ai++), bias = s->bias ? kb_param(kb, ai++) : NULL;
    V sel_e = kb_param(kb, ai++), sel_w = kb_param(kb, ai++), T = kb_param(kb, ai++);
    V t = kb_add(kb, kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, ROUTE_THREADS)), nvvm_tid_x(kb));
    kb_if(kb, kb_lt(kb, t, T));
    V row = kb_gep(kb, kb->f32, lg, kb_mul(kb, kb_to_i64(kb, t), kb_i64(kb, s->E)));
    V E = kb_i32(kb, s->E);
    KVar mx = kb_var(kb, kb->f32, kb_f32(kb, -INFINITY)), sum = kb_var(kb, kb->f32, kb_f32(kb, 0));
    if (!s->sigmoid) { /* softmax statistics */
        KVar e = kb_for(kb, kb_i32(kb, 0), E, kb_i32(kb, 1));
        kb_set(kb, mx, kb_max(kb, kb_get(kb, mx), kb_load(kb, kb->f32, kb_gep(kb, kb->f32, row, kb_get(kb, e)))));
        kb_endfor(kb);
        e = kb_for(kb, kb_i32(kb, 0), E, kb_i32(kb, 1));
        V l = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, row, kb_get(kb, e)));
        kb_set(kb, sum, kb_add(kb, kb_get(kb, sum), kb_exp(kb, kb_sub(kb, l, kb_get(kb, mx)))));
        kb_endfor(kb);
    }
    V mxv = kb_get(kb, mx), sumv = kb_get(kb, sum);
#define SCORE(ev)                                                                                          \
    (s->sigmoid ? kb_div(kb, kb_f32(kb, 1.0), kb_add(kb, kb_f32(kb, 1.0),                                 \
                                                     kb_exp(kb, kb_neg(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, row, ev)))))) \
                : kb_div(kb, kb_exp(kb, kb_sub(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, row, ev)), mxv)), sumv))
    KVar pv = kb_var(kb, kb->f32, kb_f32(kb, INFINITY)), pe = kb_var(kb, kb->i32, kb_i32(kb, -1));
    KVar wsum = kb_var(kb, kb->f32, kb_f32(kb, 0));
    V obase = kb_mul(kb, kb_to_i64(kb, t), kb_i64(kb, s->k));
    KVar j = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, s->k), kb_i32(kb, 1));
    {
        KVar bv = kb_var(kb, kb->f32, kb_f32(kb, -INFINITY)), be = kb_var(kb, kb->i32, kb_i32(kb, -1));
        V p_v = kb_get(kb, pv), p_e = kb_get(kb, pe);
        KVar e = kb_for(kb, kb_i32(kb, 0), E, kb_i32(kb, 1));
        {
            V ev = kb_get(kb, e);
            V v = SCORE(ev);
            if (bias)
                v = kb_add(kb, v, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, bias, ev)));
            /* below the previous pick in (value desc, index asc) order */
            V below = kb_or(kb, kb_lt(kb, v, p_v), kb_and(kb, kb_eq(kb, v, p_v), kb_gt(kb, ev, p_e)));
            V better = kb_and(kb, below, kb_or(kb, kb_lt(kb, kb_get(kb, be), kb_i32(kb, 0)), kb_gt(kb, v, kb_get(kb, bv))));
            kb_set(kb, bv, kb_select(kb, better, v, kb_get(kb, bv)));
            kb_set(kb, be, kb_select(kb, better, ev, kb_get(kb, be)));
        }
        kb_endfor(kb);
        V bev = kb_max(kb, kb_get(kb, be), kb_i32(kb, 0)), bvv = kb_get(kb, bv);
        V w = s->bias_in_w ? bvv : SCORE(bev);
        V oi = kb_add(kb, obase, kb_to_i64(kb, kb_get(kb, j)));
        kb_store(kb, bev, kb_gep(kb, kb->i32, sel_e, oi));
        kb_store(kb, w, kb_gep(kb, kb->f32, sel_w, oi));
        kb_set(kb, wsum, kb_add(kb, kb_get(kb, wsum), w));
        kb_set(kb, pv, bvv);
        kb_set(kb, pe, bev);
    }
    kb_endfor(kb);
#undef SCORE
    j = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, s->k), kb_i32(kb, 1));
    {
        V p = kb_gep(kb, kb->f32, sel_w, kb_add(kb, obase, kb_to_i64(kb, kb_get(kb, j))));
        V w = kb_load(kb, kb->f32, p);
        if (s->renorm)
            w = kb_div(kb, w, kb_get(kb, wsum));
        kb_store(kb, kb_mul(kb, w, kb_f32(kb, s->scale)), p);
    }
    kb_endfor(kb);
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* moe_perm: sel_e, rank, perm, offsets, A (assignments). One block. */
static bool emit_perm(Codegen *cg, const MoeShape *s, char **ptx, Diag *d)
{
    KB *kb = kb_new(cg->ctx, "moe_perm", (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32}, 5, PERM_THREADS);
    V sel_e = kb_param(kb, 0), rank = kb_param(kb, 1), perm = kb_param(kb, 2), offs = kb_param(kb, 3);
    V A = kb_param(kb, 4), tid = nvvm_tid_x(kb), E = kb_i32(kb, s->E), step = kb_i32(kb, PERM_THREADS);
    V cnt = kb_smem(kb, kb_i32(kb, 0)), base = kb_smem(kb, kb_i32(kb, 4 * s->E));
    KVar e = kb_for(kb, tid, E, step);
    kb_store(kb, kb_i32(kb, 0), kb_gep(kb, kb->i32, cnt, kb_get(kb, e)));
    kb_endfor(kb);
    nvvm_bar_sync(kb);
    KVar i = kb_for(kb, tid, A, step);
    {
        V ii = kb_to_i64(kb, kb_get(kb, i));
        V ev = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, sel_e, ii));
        V r = LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, kb_gep(kb, kb->i32, cnt, ev), kb_i32(kb, 1),
                                 LLVMAtomicOrderingMonotonic, 0);
        kb_store(kb, r, kb_gep(kb, kb->i32, rank, ii));
    }
    kb_endfor(kb);
    nvvm_bar_sync(kb);
    kb_if(kb, kb_eq(kb, tid, kb_i32(kb, 0)));
    {
        KVar run = kb_var(kb, kb->i32, kb_i32(kb, 0));
        e = kb_for(kb, kb_i32(kb, 0), E, kb_i32(kb, 1));
        V ev = kb_get(kb, e), rv = kb_get(kb, run);
        kb_store(kb, rv, kb_gep(kb, kb->i32, base, ev));
        kb_store(kb, rv, kb_gep(kb, kb->i32, offs, ev));
        kb_set(kb, run, kb_add(kb, rv, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, cnt, ev))));
        kb_endfor(kb);
        kb_store(kb, kb_get(kb, run), kb_gep(kb, kb->i32, offs, E));
    }
    kb_endif(kb);
    nvvm_bar_sync(kb);
    i = kb_for(kb, tid, A, step);
    {
        V iv = kb_get(kb, i), ii = kb_to_i64(kb, iv);
        V ev = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, sel_e, ii));
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, base, ev)), kb_load(kb, kb->i32, kb_gep(kb, kb->i32, rank, ii)));
        kb_store(kb, iv, kb_gep(kb, kb->i32, perm, kb_to_i64(kb, p)));
    }
    kb_endfor(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* moe_combine: Y, [residual], [xs, coef (mhc)], out, T. A block per token. */
static bool emit_combine(Codegen *cg, const MoeShape *s, char **ptx, Diag *d)
{
    KParamKind pk[6];
    int np = 0;
    pk[np++] = KP_PTR;
    if (s->residual)
        pk[np++] = KP_PTR;
    if (s->mhc)
        pk[np++] = KP_PTR, pk[np++] = KP_PTR;
    pk[np++] = KP_PTR, pk[np++] = KP_I32;
    KB *kb = kb_new(cg->ctx, "moe_combine", pk, np, COMBINE_THREADS);
    int ai = 0;
    V y = kb_param(kb, ai++), res = s->residual ? kb_param(kb, ai++) : NULL;
    V xs = s->mhc ? kb_param(kb, ai++) : NULL, coef = s->mhc ? kb_param(kb, ai++) : NULL;
    V o = kb_param(kb, ai++);
    V t = kb_to_i64(kb, nvvm_ctaid_x(kb));
    V hc[MHC_EPI_MAX_COEF];
    if (s->mhc) /* token t's H_post, H_res: once, before the columns */
        mhc_epi_coef(kb, s->mhc, coef, nvvm_ctaid_x(kb), hc);
    KVar c = kb_for(kb, nvvm_tid_x(kb), kb_i32(kb, s->D), kb_i32(kb, COMBINE_THREADS));
    {
        V cc = kb_to_i64(kb, kb_get(kb, c));
        V acc = kb_f32(kb, 0);
        for (int64_t j = 0; j < s->k; j++) { /* slots in order: deterministic */
            V row = kb_add(kb, kb_mul(kb, t, kb_i64(kb, s->k)), kb_i64(kb, j));
            acc = kb_add(kb, acc, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, y, kb_add(kb, kb_mul(kb, row, kb_i64(kb, s->D)), cc))));
        }
        V off = kb_add(kb, kb_mul(kb, t, kb_i64(kb, s->D)), cc);
        if (res)
            acc = kb_add(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, res, off)), acc);
        if (s->mhc) /* acc is o[t, c]: the n streams of token t at column c */
            mhc_epi_update(kb, s->mhc, s->D, hc, acc, xs, o, kb_add(kb, kb_mul(kb, t, kb_i64(kb, s->mhc * s->D)), cc));
        else
            kb_store(kb, acc, kb_gep(kb, kb->f32, o, off));
    }
    kb_endfor(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

bool k_moe(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    MoeShape s = {.E = node_int(n, "experts", 1), .k = node_int(n, "topk", 1), .F = node_int(n, "dff", 1),
                  .D = n->src[0]->dim[n->ndim - 1].n, .mhc = mhc_epi_streams(n), .sigmoid = !strcmp(node_str(n, "score", "softmax"), "sigmoid"),
                  .bias = moe_bias_src(n) >= 0, .residual = moe_residual_src(n) >= 0,
                  .bias_in_w = node_int(n, "bias_in_weights", 0) != 0,
                  .renorm = node_int(n, "renorm", 1) != 0, .scale = (float)node_float(n, "scale", 1.0)};
    GemmShape g = {.bm = (int)node_int(n, "bm", 64), .bn = (int)node_int(n, "bn", 128), .bk = (int)node_int(n, "bk", 64),
                   .wm = (int)node_int(n, "wm", 2), .wn = (int)node_int(n, "wn", 2), .stages = (int)node_int(n, "stages", 3),
                   .experts = s.E, .topk = s.k};
    if (s.E > 8192 || s.D % 8 || s.F % 8)
        return diag_fail(d, "moe: needs experts <= 8192 and d_model, d_ff multiples of 8");
    SymExpr rows = node_rows_expr(n), A = sym_scale(rows, s.k);
    SymExpr o_selw = sym_scale(A, 4), o_rank = sym_scale(A, 8), o_perm = sym_scale(A, 12), o_h = sym_scale(A, 16);
    SymExpr o_y = sym_scale(A, 16 + 4 * s.F), o_off = sym_scale(A, 16 + 4 * s.F + 4 * s.D);
    char name[96];

    snprintf(name, sizeof name, "moe_route_e%lld_k%lld_%s%s%s", (long long)s.E, (long long)s.k,
             s.sigmoid ? "sigmoid" : "softmax", s.bias ? (s.bias_in_w ? "_biasw" : "_bias") : "", s.renorm ? "_renorm" : "");
    KLaunch *l = kout_add(out, name, ROUTE_THREADS, 0);
    l->grid[0] = sym_ceildiv(rows, ROUTE_THREADS);
    l->flops = sym_scale(rows, (s.k + 2) * s.E * 4);
    l->bytes = sym_scale(rows, s.E * 4 + s.k * 8);
    kl_arg_src(l, 1);
    if (s.bias)
        kl_arg_src(l, moe_bias_src(n));
    kl_arg_scratch_at(l, sym_const(0));
    kl_arg_scratch_at(l, o_selw);
    kl_arg_i32(l, rows);
    if (!emit_route(cg, &s, &l->ptx, d))
        return false;

    snprintf(name, sizeof name, "moe_perm_e%lld", (long long)s.E);
    l = kout_add(out, name, PERM_THREADS, (unsigned)(8 * s.E));
    l->bytes = sym_scale(A, 16);
    kl_arg_scratch_at(l, sym_const(0));
    kl_arg_scratch_at(l, o_rank);
    kl_arg_scratch_at(l, o_perm);
    kl_arg_scratch_at(l, o_off);
    kl_arg_i32(l, A);
    if (!emit_perm(cg, &s, &l->ptx, d))
        return false;

    for (int part = 0; part < 2; part++) { /* gate/up, then down */
        GemmShape gs = g;
        gs.mode = part ? GEMM_MOE_DOWN : GEMM_MOE_GU;
        gs.N = part ? s.D : 2 * s.F;
        gs.K = part ? s.F : s.D;
        gs.out = part ? DT_F32 : DT_BF16;
        gs.swiglu = part == 1;
        if (!gemm_check(&gs, d))
            return false;
        snprintf(name, sizeof name, "moe_gemm_%s_e%lld_n%lld_k%lld_%dx%dx%d_w%dx%d_s%d", part ? "down" : "gu",
                 (long long)s.E, (long long)gs.N, (long long)gs.K, gs.bm, gs.bn, gs.bk, gs.wm, gs.wn, gs.stages);
        l = kout_add(out, name, (unsigned)(32 * gs.wm * gs.wn), gemm_smem(&gs));
        gemm_launch_params(l, &gs);
        l->grid[0] = sym_const((gs.N + gs.bn - 1) / gs.bn);
        /* ceil(A/bm) + E: every expert's last tile may be partial */
        l->grid[1] = sym_ceildiv(sym_add(A, sym_const(s.E * gs.bm)), gs.bm);
        l->flops = sym_scale(A, 2 * gs.N * gs.K);
        /* the activations once, and the weights of the experts a call touches: prefill every expert (exact
         * once tokens·k >> E and the routing spreads); decode the k experts of one token, the fewest a call
         * can touch (exact at batch 1; an under-count, so a conservative roofline, for larger batches) */
        SymExpr wbytes = sym_const((node_has_sym(n, SYM_SEQ) ? s.E : s.k) * gs.N * gs.K * 2);
        l->bytes = sym_add(sym_scale(A, gs.K * 2 * (part ? 2 : 1) + gs.N * (part ? 4 : 2)), wbytes);
        if (part) {
            kl_arg_scratch_at(l, o_h);
            kl_arg_src(l, 3);
            kl_arg_scratch_at(l, o_y);
        } else {
            kl_arg_src(l, 0);
            kl_arg_src(l, 2);
            kl_arg_scratch_at(l, o_h);
        }
        kl_arg_scratch_at(l, o_off);
        kl_arg_scratch_at(l, o_perm);
        if (part)
            kl_arg_scratch_at(l, o_selw);
        if (!gemm_emit(cg, &gs, part ? "moe_gemm_down" : "moe_gemm_gu", &l->ptx, d))
            return false;
    }

    char epi[MHC_EPI_TAG];
    snprintf(name, sizeof name, "moe_combine_d%lld_k%lld%s%s", (long long)s.D, (long long)s.k,
             s.residual ? "" : "_nores", mhc_epi_tag(s.mhc, epi));
    l = kout_add(out, name, COMBINE_THREADS, 0);
    l->grid[0] = rows;
    /* the slots (and the residual) in; out [D], or with mhc the n streams in and out and the coefficients */
    l->flops = sym_scale(rows, s.k * s.D + (s.mhc ? mhc_epi_flops(s.mhc, s.D) : 0));
    l->bytes = sym_scale(rows, (s.k + s.residual) * s.D * 4 + (s.mhc ? mhc_epi_bytes(s.mhc, s.D) : s.D * 4));
    kl_arg_scratch_at(l, o_y);
    if (s.residual)
        kl_arg_src(l, moe_residual_src(n));
    if (s.mhc) {
        kl_arg_src(l, n->nsrc - 2);
        kl_arg_src(l, n->nsrc - 1);
    }
    kl_arg_out(l);
    kl_arg_i32(l, rows);
    return emit_combine(cg, &s, &l->ptx, d);
}
