/* k_mhc.c — manifold-constrained hyper-connections (ops mhc_pre, mhc_post,
 * mhc_collapse; semantics in ir/ops.def, reference ir/ref_mhc.c).
 *
 * One block per `tokens` tokens (T), `threads` threads. Each kernel reads
 * each token's n streams (f32 [n·D]) once from memory:
 *
 *   1. coefficients (pre, post): threads stride over the n·D row, two
 *      elements a trip; per element each thread loads the φ entries of the
 *      rows it needs once (pre: the n rows of φ_pre, all 2n + n² with
 *      coef; post: the n + n² rows of φ_post and φ_res) and accumulates,
 *      for each of the T tokens, Σx² and its slice of the skinny
 *      projection x·fnᵀ (φ is read once per T tokens); warp shuffles, then
 *      one partial per warp in shared memory; thread (t, m) adds the warps'
 *      partials of sum m, then turns projection m into its σ gate or H_res
 *      logit; the Sinkhorn (fp32, exp then `iters` rounds of column- then
 *      row-normalisation) runs with thread (t, l) owning column l, then
 *      row l, of token t's n × n matrix, a barrier between the halves.
 *   2. pre / collapse: h[d] = Σ_k c_k x_k[d] (collapse: c_k = 1), re-read
 *      from L1; with a norm weight (fuse-mhc) h is kept in shared memory,
 *      its Σh² reduced over the block and bf16(h · rsqrt(mean h² + eps) · w)
 *      stored: F's input in the same pass.
 *      post: out_i[d] = Σ_j H_res[i,j] x_j[d] + H_post[i] o[d].
 *
 * With attr coef (fuse-mhc: the block's output GEMM does the stream update)
 * pre projects onto every row of φ and also writes each token's H_post and
 * H_res to the mhc_coef aux value, f32 [rows, n + n²].
 *
 * Args: pre (x, fn, base, scale, [norm_w], out, [coef], rows); post (x, o, fn,
 * base, scale, out, rows); collapse (x, [norm_w], out, rows). Grid:
 * ceil(rows / T); the last block's missing tokens read row rows−1 and
 * store nothing. Shared memory: warps·T·(rows of φ + 1) partials, T sets
 * of coefficients, T·warps partials of Σh² and, for a normalised output,
 * h [D] (reused token after token: each thread touches only its own d). */
#include <string.h>

#include "kernels.h"
#include "nvvm.h"

/* Shared memory without the opt-in; tokens per block; fp32 sums per thread (T · (φ rows + 1)). */
enum { MHC_MAX_SMEM = 48 * 1024, MHC_MAX_TOKENS = 8, MHC_MAX_ACC = 96 };

static V load_f(KB *kb, DType dt, V base, V idx)
{
    if (dt == DT_BF16)
        return kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, base, idx)));
    return kb_load(kb, kb->f32, kb_gep(kb, kb->f32, base, idx));
}

static V sm_f32(KB *kb, int64_t byte_off, V idx) /* &smem_f32[byte_off/4 + idx] */
{
    return kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, byte_off)), idx);
}

/* Block sum of v (every thread passes one): warp shuffles, one partial per
 * warp at smem byte `off`, a barrier, then every thread adds the partials. */
static V block_sum(KB *kb, V v, int warps, int64_t off)
{
    v = nvvm_warp_sum(kb, v);
    kb_if(kb, kb_eq(kb, nvvm_lane(kb), kb_i32(kb, 0)));
    kb_store(kb, v, sm_f32(kb, off, nvvm_warp(kb)));
    kb_endif(kb);
    nvvm_bar_sync(kb);
    V s = kb_f32(kb, 0);
    for (int w = 0; w < warps; w++)
        s = kb_add(kb, s, kb_load(kb, kb->f32, sm_f32(kb, off, kb_i32(kb, w))));
    return s;
}

bool k_mhc(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    bool pre = n->op == OP_mhc_pre, post = n->op == OP_mhc_post, coll = n->op == OP_mhc_collapse;
    if (!pre && !post && !coll)
        return diag_fail(d, "mhc kernel: op %s is not an mhc op", op_info[n->op].name);
    const Node *x = n->src[0];
    int64_t ns = node_int(n, "streams", 1), W = x->dim[x->ndim - 1].n, D = W / ns, C = 2 * ns + ns * ns;
    int threads = (int)node_int(n, "threads", 256), warps = threads / 32;
    int T = (int)node_int(n, "tokens", 1), iters = (int)node_int(n, "iters", 20);
    float eps = (float)node_float(n, "eps", 1e-5), neps = (float)node_float(n, "norm_eps", 1e-5);
    bool norm = (pre && n->nsrc == 5) || (coll && n->nsrc == 2);
    bool coef = pre && node_int(n, "coef", 0); /* pre also writes H_post, H_res (the mhc_coef aux) */
    /* rows of φ this kernel projects onto: pre [0, n) (every row with coef), post [n, 2n + n²), collapse none */
    int64_t m0 = post ? ns : 0, m1 = coll ? 0 : pre && !coef ? ns : C, M = m1 - m0;
    if (ns < 1 || ns > 8 || threads < 64 || threads > 1024 || threads % 32 || x->dim[x->ndim - 1].sym || T < 1 ||
        T > MHC_MAX_TOKENS)
        return diag_fail(d, "mhc kernel: needs 1..8 streams, 64..1024 threads (a multiple of 32), 1..%d tokens, "
                            "a static width", MHC_MAX_TOKENS);
    if (T * (M + 1) > threads || 8 * T > threads)
        return diag_fail(d, "mhc kernel: %d threads are fewer than %d tokens × %lld sums", threads, T, (long long)(M + 1));
    if (T * (M + 1) > MHC_MAX_ACC)
        return diag_fail(d, "mhc kernel: %d tokens × %lld sums exceed %d accumulators per thread", T,
                         (long long)(M + 1), MHC_MAX_ACC);
    int fsrc = post ? 2 : 1; /* fn, base, scale follow */
    DType fdt = coll ? DT_F32 : n->src[fsrc]->dtype;
    /* shared memory: red [warps][T][M+1] partials, tot [T][M+1] sums, coef
     * [T][C], mat [T][64] the H_res matrices, nred [T][warps], h [D] */
    int64_t off_red = 0, off_tot = 4 * (int64_t)warps * T * (M + 1), off_coef = off_tot + 4 * T * (M + 1),
            off_mat = off_coef + 4 * T * C, off_nred = off_mat + 4 * T * 64, off_h = off_nred + 4 * (int64_t)T * warps,
            smem = off_h + (norm ? 4 * D : 0);
    if (smem > MHC_MAX_SMEM)
        return diag_fail(d, "mhc kernel: d_model %lld needs %lld bytes of shared memory (at most %d)", (long long)D,
                         (long long)smem, MHC_MAX_SMEM);

    int nin = pre ? 4 + norm : post ? 5 : 1 + norm, nout = 1 + coef; /* inputs; out and the coefficients */
    KParamKind kinds[9];
    for (int i = 0; i < nin + nout; i++)
        kinds[i] = KP_PTR;
    kinds[nin + nout] = KP_I32;
    KB *kb = kb_new(cg->ctx, pre ? "mhc_pre" : post ? "mhc_post" : "mhc_collapse", kinds, nin + nout + 1, threads);
    V xp = kb_param(kb, 0), op = kb_param(kb, nin), nrows = kb_param(kb, nin + nout);
    V coefp = coef ? kb_param(kb, nin + 1) : NULL; /* f32 [rows, n + n²]: H_post, H_res */
    bool pdl = kl_use_pdl(cg, n);
    if (pdl)
        nvvm_pdl_sync(kb);
    V tid = nvvm_tid_x(kb), row0 = kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, T));
    V valid[MHC_MAX_TOKENS], row[MHC_MAX_TOKENS], xr[MHC_MAX_TOKENS];
    for (int t = 0; t < T; t++) { /* token t of the block; a missing one reads the last row, stores nothing */
        V r = kb_add(kb, row0, kb_i32(kb, t));
        valid[t] = kb_lt(kb, r, nrows);
        row[t] = kb_min(kb, r, kb_sub(kb, nrows, kb_i32(kb, 1)));
        xr[t] = kb_gep(kb, kb->f32, xp, kb_mul(kb, kb_to_i64(kb, row[t]), kb_i64(kb, W)));
    }

    /* ---- 1. coefficients ---- */
    if (!coll) {
        V fn = kb_param(kb, fsrc), base = kb_param(kb, fsrc + 1), scale = kb_param(kb, fsrc + 2);
        KVar acc[MHC_MAX_ACC]; /* [t][m], m = M: Σx² */
        for (int i = 0; i < T * (M + 1); i++)
            acc[i] = kb_var(kb, kb->f32, kb_f32(kb, 0));
        /* U elements per thread per trip, their loads issued together; past W: clamped loads, x = 0 */
        int U = M <= 24 ? 2 : 1;
        bool tail = W % ((int64_t)U * threads) != 0;
        KVar e = kb_for(kb, tid, kb_i32(kb, W), kb_i32(kb, U * threads));
        {
            V f[2][80], xv[2][MHC_MAX_TOKENS];
            for (int u = 0; u < U; u++) {
                V ev = kb_add(kb, kb_get(kb, e), kb_i32(kb, u * threads));
                V live = tail ? kb_lt(kb, ev, kb_i32(kb, (int)W)) : NULL;
                if (tail)
                    ev = kb_min(kb, ev, kb_i32(kb, (int)W - 1));
                for (int64_t m = 0; m < M; m++) /* φ once for the T tokens */
                    f[u][m] = load_f(kb, fdt, fn, kb_add(kb, kb_i32(kb, (m0 + m) * W), ev));
                for (int t = 0; t < T; t++) {
                    xv[u][t] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, xr[t], ev));
                    if (tail)
                        xv[u][t] = kb_select(kb, live, xv[u][t], kb_f32(kb, 0));
                }
            }
            for (int u = 0; u < U; u++)
                for (int t = 0; t < T; t++) {
                    KVar *a = acc + t * (M + 1);
                    kb_set(kb, a[M], kb_fma(kb, xv[u][t], xv[u][t], kb_get(kb, a[M])));
                    for (int64_t m = 0; m < M; m++)
                        kb_set(kb, a[m], kb_fma(kb, xv[u][t], f[u][m], kb_get(kb, a[m])));
                }
        }
        kb_endfor(kb);
        V lane0 = kb_eq(kb, nvvm_lane(kb), kb_i32(kb, 0));
        V slot = kb_mul(kb, nvvm_warp(kb), kb_i32(kb, (int)(T * (M + 1)))); /* red[warp][t][m] */
        for (int i = 0; i < T * (M + 1); i++) {
            V s = nvvm_warp_sum(kb, kb_get(kb, acc[i]));
            kb_if(kb, lane0);
            kb_store(kb, s, sm_f32(kb, off_red, kb_add(kb, slot, kb_i32(kb, i))));
            kb_endif(kb);
        }
        nvvm_bar_sync(kb);
        /* totals: thread (t, m) adds token t's partials of sum m over the warps */
        V ntot = kb_i32(kb, (int)(T * (M + 1)));
        kb_if(kb, kb_lt(kb, tid, ntot));
        {
            V sum = kb_f32(kb, 0);
            for (int w = 0; w < warps; w++)
                sum = kb_add(kb, sum, kb_load(kb, kb->f32, sm_f32(kb, off_red, kb_add(kb, tid, kb_i32(kb, (int)(w * T * (M + 1)))))));
            kb_store(kb, sum, sm_f32(kb, off_tot, tid));
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
        /* gates: thread (t, m) turns projection m of token t into its coefficient; p = x'·φ =
         * rsqrt(mean x² + eps)·(x·φ), the norm applied after the projection */
        kb_if(kb, kb_lt(kb, tid, kb_i32(kb, (int)(T * M))));
        {
            V t = kb_div(kb, tid, kb_i32(kb, (int)M)), m = kb_rem(kb, tid, kb_i32(kb, (int)M));
            V tb = kb_mul(kb, t, kb_i32(kb, (int)(M + 1)));
            V inv = kb_rsqrt(kb, kb_add(kb, kb_mul(kb, kb_load(kb, kb->f32, sm_f32(kb, off_tot, kb_add(kb, tb, kb_i32(kb, (int)M)))),
                                                   kb_f32(kb, 1.0 / (double)W)),
                                        kb_f32(kb, eps)));
            V gm = kb_add(kb, m, kb_i32(kb, (int)m0)); /* row of φ and entry of base */
            V is_pre = kb_lt(kb, gm, kb_i32(kb, (int)ns)), is_post = kb_lt(kb, gm, kb_i32(kb, (int)(2 * ns)));
            V ai = kb_select(kb, is_pre, kb_i32(kb, 0), kb_select(kb, is_post, kb_i32(kb, 1), kb_i32(kb, 2)));
            V a = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, scale, ai));
            V b = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, base, gm));
            V v = kb_fma(kb, a, kb_mul(kb, kb_load(kb, kb->f32, sm_f32(kb, off_tot, kb_add(kb, tb, m))), inv), b);
            V cb = kb_mul(kb, t, kb_i32(kb, (int)C)); /* coef[t][2n + n²]: H_pre, H_post, H_res */
            kb_if(kb, is_pre);
            kb_store(kb, kb_sigmoid(kb, v), sm_f32(kb, off_coef, kb_add(kb, cb, gm)));
            kb_else(kb);
            kb_if(kb, is_post);
            {
                V hp = kb_mul(kb, kb_f32(kb, 2.0), kb_sigmoid(kb, v));
                if (coef) { /* the aux row: H_post at [k] */
                    V r = kb_add(kb, row0, t);
                    kb_if(kb, kb_lt(kb, r, nrows));
                    kb_store(kb, hp, kb_gep(kb, kb->f32, coefp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, ns + ns * ns)),
                                                                    kb_to_i64(kb, kb_sub(kb, gm, kb_i32(kb, (int)ns))))));
                    kb_endif(kb);
                } else {
                    kb_store(kb, hp, sm_f32(kb, off_coef, kb_add(kb, cb, gm)));
                }
            }
            kb_else(kb); /* an H_res logit: into token t's n × n matrix */
            kb_store(kb, v, sm_f32(kb, off_mat, kb_add(kb, kb_mul(kb, t, kb_i32(kb, 64)), kb_sub(kb, gm, kb_i32(kb, (int)(2 * ns))))));
            kb_endif(kb);
            kb_endif(kb);
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
        if (post || coef) {
            /* Sinkhorn (fp32): thread (t, l) = (tid / 8, tid % 8), l < n, owns column l then row l of token
             * t's matrix: exp(m − max), then `iters` rounds of column- then row-normalisation, each a
             * reciprocal and n products, a block barrier between the halves */
            int64_t nn = ns * ns;
            V t = kb_div(kb, tid, kb_i32(kb, 8)), l = kb_rem(kb, tid, kb_i32(kb, 8));
            V own = kb_and(kb, kb_lt(kb, tid, kb_i32(kb, 8 * T)), kb_lt(kb, l, kb_i32(kb, (int)ns)));
            V mb = kb_mul(kb, kb_min(kb, t, kb_i32(kb, T - 1)), kb_i32(kb, 64));
#define MAT(i, j) sm_f32(kb, off_mat, kb_add(kb, mb, kb_add(kb, kb_mul(kb, (i), kb_i32(kb, (int)ns)), (j))))
            KVar mxv = kb_var(kb, kb->f32, kb_f32(kb, 0)); /* the matrix max, each owner's own copy */
            kb_if(kb, own);
            {
                V mx = kb_load(kb, kb->f32, sm_f32(kb, off_mat, mb));
                for (int64_t i = 1; i < nn; i++)
                    mx = kb_max(kb, mx, kb_load(kb, kb->f32, sm_f32(kb, off_mat, kb_add(kb, mb, kb_i32(kb, (int)i)))));
                kb_set(kb, mxv, mx);
            }
            kb_endif(kb);
            nvvm_bar_sync(kb); /* every owner has read the whole matrix before any column is rewritten */
            kb_if(kb, own);
            {
                V mx = kb_get(kb, mxv);
                for (int64_t i = 0; i < ns; i++) {
                    V p = MAT(kb_i32(kb, (int)i), l);
                    kb_store(kb, kb_exp(kb, kb_sub(kb, kb_load(kb, kb->f32, p), mx)), p);
                }
            }
            kb_endif(kb);
            nvvm_bar_sync(kb);
            kb_for(kb, kb_i32(kb, 0), kb_i32(kb, iters), kb_i32(kb, 1));
            for (int half = 0; half < 2; half++) { /* columns, then rows */
                kb_if(kb, own);
                {
                    V p[8], sum = NULL;
                    for (int64_t i = 0; i < ns; i++) {
                        p[i] = half == 0 ? MAT(kb_i32(kb, (int)i), l) : MAT(l, kb_i32(kb, (int)i));
                        V v = kb_load(kb, kb->f32, p[i]);
                        sum = sum ? kb_add(kb, sum, v) : v;
                    }
                    V r = kb_div(kb, kb_f32(kb, 1.0), sum);
                    for (int64_t i = 0; i < ns; i++)
                        kb_store(kb, kb_mul(kb, kb_load(kb, kb->f32, p[i]), r), p[i]);
                }
                kb_endif(kb);
                nvvm_bar_sync(kb);
            }
            kb_endfor(kb);
            kb_if(kb, own); /* row l of H_res to its place: post's shared coefficients, or the aux row */
            {
                V r = kb_add(kb, row0, t);
                V live = coef ? kb_lt(kb, r, nrows) : NULL;
                for (int64_t j = 0; j < ns; j++) {
                    V v = kb_load(kb, kb->f32, MAT(l, kb_i32(kb, (int)j)));
                    V k = kb_add(kb, kb_mul(kb, l, kb_i32(kb, (int)ns)), kb_i32(kb, (int)j)); /* i·n + j */
                    if (coef) {
                        kb_if(kb, live);
                        kb_store(kb, v, kb_gep(kb, kb->f32, coefp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, ns + ns * ns)),
                                                                        kb_to_i64(kb, kb_add(kb, k, kb_i32(kb, (int)ns))))));
                        kb_endif(kb);
                    } else {
                        kb_store(kb, v, sm_f32(kb, off_coef, kb_add(kb, kb_mul(kb, t, kb_i32(kb, (int)C)),
                                                                  kb_add(kb, k, kb_i32(kb, (int)(2 * ns))))));
                    }
                }
            }
            kb_endif(kb);
#undef MAT
            nvvm_bar_sync(kb);
        }
    }

    /* ---- 2. the streams' outputs, token after token (valid[t] is uniform over the block) ---- */
    for (int t = 0; t < T; t++) {
        kb_if(kb, valid[t]);
        int64_t cb = (int64_t)t * C;
        if (post) {
            V o = kb_gep(kb, kb->f32, kb_param(kb, 1), kb_mul(kb, kb_to_i64(kb, row[t]), kb_i64(kb, D)));
            V outr = kb_gep(kb, kb->f32, op, kb_mul(kb, kb_to_i64(kb, row[t]), kb_i64(kb, W)));
            V hp[8], hr[64];
            for (int64_t i = 0; i < ns; i++)
                hp[i] = kb_load(kb, kb->f32, sm_f32(kb, off_coef, kb_i32(kb, cb + ns + i)));
            for (int64_t i = 0; i < ns * ns; i++)
                hr[i] = kb_load(kb, kb->f32, sm_f32(kb, off_coef, kb_i32(kb, cb + 2 * ns + i)));
            KVar dv = kb_for(kb, tid, kb_i32(kb, D), kb_i32(kb, threads));
            {
                V dd = kb_get(kb, dv), xs[8];
                for (int64_t j = 0; j < ns; j++)
                    xs[j] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, xr[t], kb_add(kb, dd, kb_i32(kb, j * D))));
                V ov = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, o, dd));
                for (int64_t i = 0; i < ns; i++) {
                    V v = kb_mul(kb, hp[i], ov);
                    for (int64_t j = 0; j < ns; j++)
                        v = kb_fma(kb, hr[i * ns + j], xs[j], v);
                    kb_store(kb, v, kb_gep(kb, kb->f32, outr, kb_add(kb, dd, kb_i32(kb, i * D))));
                }
            }
            kb_endfor(kb);
        } else {
            V c[8];
            for (int64_t k = 0; k < ns; k++)
                c[k] = pre ? kb_load(kb, kb->f32, sm_f32(kb, off_coef, kb_i32(kb, cb + k))) : NULL;
            V orow_off = kb_mul(kb, kb_to_i64(kb, row[t]), kb_i64(kb, D));
            KVar hss = kb_var(kb, kb->f32, kb_f32(kb, 0));
            KVar dv = kb_for(kb, tid, kb_i32(kb, D), kb_i32(kb, threads));
            {
                V dd = kb_get(kb, dv), h = NULL;
                for (int64_t k = 0; k < ns; k++) {
                    V xv = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, xr[t], kb_add(kb, dd, kb_i32(kb, k * D))));
                    h = !h ? (pre ? kb_mul(kb, c[k], xv) : xv) : pre ? kb_fma(kb, c[k], xv, h) : kb_add(kb, h, xv);
                }
                if (norm) {
                    kb_store(kb, h, sm_f32(kb, off_h, dd)); /* read back by this thread only */
                    kb_set(kb, hss, kb_fma(kb, h, h, kb_get(kb, hss)));
                } else {
                    kb_store(kb, h, kb_gep(kb, kb->f32, kb_gep(kb, kb->f32, op, orow_off), dd));
                }
            }
            kb_endfor(kb);
            if (norm) {
                V nw = kb_param(kb, nin - 1);
                V tot = block_sum(kb, kb_get(kb, hss), warps, off_nred + 4 * (int64_t)t * warps);
                V inv = kb_rsqrt(kb, kb_add(kb, kb_mul(kb, tot, kb_f32(kb, 1.0 / (double)D)), kb_f32(kb, neps)));
                V orow = kb_gep(kb, kb->bf16, op, orow_off);
                KVar d2 = kb_for(kb, tid, kb_i32(kb, D), kb_i32(kb, threads));
                {
                    V dd = kb_get(kb, d2);
                    V h = kb_load(kb, kb->f32, sm_f32(kb, off_h, dd));
                    V w = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, nw, dd));
                    kb_store(kb, kb_f32_to_bf16(kb, kb_mul(kb, kb_mul(kb, h, inv), w)), kb_gep(kb, kb->bf16, orow, dd));
                }
                kb_endfor(kb);
            }
        }
        kb_endif(kb);
    }

    char name[96];
    snprintf(name, sizeof name, "%s_n%lld_d%lld%s%s", pre ? "mhc_pre" : post ? "mhc_post" : "mhc_collapse",
             (long long)ns, (long long)D, norm ? "_norm" : "", coef ? "_coef" : "");
    KLaunch *l = kout_add(out, name, (unsigned)threads, (unsigned)smem);
    kl_param(l, "threads", threads);
    kl_param(l, "tokens", T);
    kl_param(l, "pdl", pdl);
    SymExpr nr = node_rows_expr(n);
    l->grid[0] = sym_ceildiv(nr, T);
    /* flops: the projection (2·W per row of φ), the mix; bytes: the streams in, the result out, φ once */
    int64_t fl = 2 * W * M + 2 * W + (post ? 2 * W * (ns + 1) : 2 * W + (norm ? 4 * D : 0));
    int64_t by = W * 4 + (post ? D * 4 + W * 4 : D * (norm ? 2 : 4)) + (coef ? 4 * (ns + ns * ns) : 0);
    l->flops = sym_scale(nr, fl);
    l->bytes = sym_add(sym_scale(nr, by), sym_const(M * W * (int64_t)dtype_size(fdt)));
    for (int i = 0; i < nin; i++)
        kl_arg_src(l, i);
    kl_arg_out(l);
    if (coef)
        kl_arg_aux(l);
    kl_arg_i32(l, nr);
    return kb_emit_ptx(cg, kb, &l->ptx, d);
}
