/* k_mamba1.c — the fused Mamba1 kernels (ops mamba1_conv, mamba1_mixer).
 *
 *   mamba1_conv (prefill and decode) — causal depthwise conv1d + bias + SiLU
 *      of the x half of xz. A block per (128 channels, `tchunk` tokens,
 *      sequence); a thread owns one channel and walks its tokens with the
 *      last d_conv−1 inputs in registers (history from xz, or from the conv
 *      ring before the call's first token). The ring [B, Di, d_conv] (slot
 *      p mod d_conv holds the input of position p) is read only by the
 *      blocks of the first token chunk, and those same threads then store
 *      the call's last d_conv−1 inputs into it: read-before-write per
 *      thread, so no other block can race with the update.
 *
 *   mamba1_scan (prefill) — the selective scan as a parallel chunked scan.
 *      A block per (`cw` channels, sequence): a warp holds 32/cw time chunks
 *      of cw channels (lane % cw = channel: coalesced x, z, y), `warps`
 *      warps, so warps·32/cw time chunks per block. Per channel and token:
 *          dt = softplus(xdbl[t, 0:R]·dt_w[ch] + dt_bias[ch])   (dt_proj fused)
 *          h  = exp(dt·A) ∘ h + dt·x_t·B_t,   A = −exp(A_log[ch]) (N states, fp32 registers)
 *      Pass 1: each chunk is scanned from h = 0, giving (Σdt, h_end):
 *      since exp(dt·A) multiplies per state, a chunk's decay product is
 *      exp(A·Σdt). The pairs go to shared memory and each chunk combines the
 *      ones before it with the initial state (the associative operator
 *      (Σa, ha) ∘ (Σb, hb) = (Σa+Σb, exp(A·Σb) ha + hb)). Pass 2: each
 *      chunk is rescanned from that carry-in, storing y_t = (C_t·h + D x_t)
 *      · silu(z_t) as bf16; the last chunk stores the final state. The
 *      xdbl row [dt | B | C], the same for every channel, is read in 16-byte
 *      vectors when its width is a multiple of 8.
 *
 *   mamba1_step (decode) — one fused step per layer: a thread per channel
 *      (64-thread blocks) computes dt (dt_proj fused), updates its N states
 *      in place (float4 rows), and stores the gated output; O(1) in the
 *      sequence length.
 *
 * x_proj (Di → R + 2N) is an ordinary GEMM / GEMV between the conv and the
 * scan: every channel of the conv output feeds every x_proj output. */
#include <string.h>

#include "kernels.h"
#include "nvvm.h"

enum { CONV_THREADS = 128, STEP1_THREADS = 64, MAX_W = 8, MAX_N = 64, MAX_RREG = 64 };

/* Sizes of a Mamba1 node (mamba1_mixer attrs, or the conv's weight). */
typedef struct M1 {
    int64_t Di, N, R, XD; /* d_inner, d_state, dt_rank, xdbl width R + 2N */
} M1;

static M1 m1_of(const Node *n)
{
    M1 m = {.Di = node_int(n, "d_inner", 0), .N = node_int(n, "dstate", 0), .R = node_int(n, "dt_rank", 0)};
    m.XD = m.R + 2 * m.N;
    return m;
}

static V ldbf(KB *kb, V p, V off) { return kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, p, off))); }
static V ldf(KB *kb, V p, V off) { return kb_load(kb, kb->f32, kb_gep(kb, kb->f32, p, off)); }
static V i64(KB *kb, V x) { return kb_to_i64(kb, x); }

/* ((p % W) + W) % W */
static V slot_of(KB *kb, int64_t W, V p)
{
    return kb_rem(kb, kb_add(kb, kb_rem(kb, p, kb_i32(kb, W)), kb_i32(kb, W)), kb_i32(kb, W));
}

/* ---- mamba1_conv ---- */
static bool emit_conv(Codegen *cg, int64_t Di, int64_t W, int TC, bool pdl, char **ptx, Diag *d)
{
    KB *kb = kb_new(cg->ctx, "mamba1_conv",
                    (KParamKind[]){KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32}, 7, CONV_THREADS);
    V xz = kb_param(kb, 0), cw = kb_param(kb, 1), cb = kb_param(kb, 2), ring = kb_param(kb, 3);
    V posp = kb_param(kb, 4), out = kb_param(kb, 5), seq = kb_param(kb, 6);
    V ch = kb_add(kb, kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, CONV_THREADS)), nvvm_tid_x(kb));
    V t0 = kb_mul(kb, nvvm_ctaid_y(kb), kb_i32(kb, TC)), b = nvvm_ctaid_z(kb);
    kb_if(kb, kb_lt(kb, ch, kb_i32(kb, Di)));
    {
        V w[MAX_W];
        for (int k = 0; k < W; k++)
            w[k] = ldf(kb, cw, kb_add(kb, kb_mul(kb, ch, kb_i32(kb, W)), kb_i32(kb, k)));
        V bias = ldf(kb, cb, ch);
        if (pdl)
            nvvm_pdl_sync(kb);
        V pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b));
        V rbase = kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, Di)), ch), kb_i32(kb, W)); /* ring row */
        V row0 = kb_mul(kb, b, seq);                                                       /* first xz row */
        /* x of token u of this call: from xz, or from the ring before the first token */
#define XIN(u) ldbf(kb, xz, kb_add(kb, kb_mul(kb, i64(kb, kb_add(kb, row0, (u))), kb_i64(kb, 2 * Di)), i64(kb, ch)))
        KVar win[MAX_W];
        for (int k = 0; k + 1 < W; k++) {
            V u = kb_add(kb, t0, kb_i32(kb, k - (W - 1)));
            win[k] = kb_var(kb, kb->f32, kb_f32(kb, 0));
            kb_if(kb, kb_ge(kb, u, kb_i32(kb, 0)));
            kb_set(kb, win[k], XIN(u));
            kb_else(kb);
            kb_set(kb, win[k], ldf(kb, ring, kb_add(kb, rbase, slot_of(kb, W, kb_add(kb, pos, u)))));
            kb_endif(kb);
        }
        V t1 = kb_min(kb, kb_add(kb, t0, kb_i32(kb, TC)), seq);
        KVar t = kb_for(kb, t0, t1, kb_i32(kb, 1));
        {
            V tv = kb_get(kb, t);
            V v = XIN(tv);
            V acc = kb_fma(kb, w[W - 1], v, bias);
            for (int k = 0; k + 1 < W; k++)
                acc = kb_fma(kb, w[k], kb_get(kb, win[k]), acc);
            for (int k = 0; k + 2 < W; k++)
                kb_set(kb, win[k], kb_get(kb, win[k + 1]));
            if (W > 1)
                kb_set(kb, win[W - 2], v);
            V o = kb_add(kb, kb_mul(kb, i64(kb, kb_add(kb, row0, tv)), kb_i64(kb, Di)), i64(kb, ch));
            kb_store(kb, kb_f32_to_bf16(kb, kb_silu(kb, acc)), kb_gep(kb, kb->bf16, out, o));
        }
        kb_endfor(kb);
        /* the first chunk's threads (the only readers of the ring) keep the last W-1 inputs */
        kb_if(kb, kb_eq(kb, t0, kb_i32(kb, 0)));
        for (int k = 0; k + 1 < W; k++) {
            V u = kb_add(kb, seq, kb_i32(kb, k - (W - 1)));
            kb_if(kb, kb_ge(kb, u, kb_i32(kb, 0)));
            kb_store(kb, XIN(u), kb_gep(kb, kb->f32, ring, i64(kb, kb_add(kb, rbase, slot_of(kb, W, kb_add(kb, pos, u))))));
            kb_endif(kb);
        }
        kb_endif(kb);
#undef XIN
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* srcs: 0 xz, 1 conv_w, 2 conv_b, 3 conv_state, 4 pos */
bool k_mamba1_conv(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    int64_t Di = n->src[1]->dim[0].n, W = n->src[1]->dim[1].n;
    bool dec = !node_has_sym(n, SYM_SEQ);
    int TC = dec ? 1 : (int)node_int(n, "tchunk", 32);
    /* tchunk >= d_conv-1: only the first chunk's blocks read the ring (see the top of this file) */
    if (W < 1 || W > MAX_W || TC < 1 || TC > 4096 || (!dec && TC < W - 1))
        return diag_fail(d, "mamba1_conv: d_conv %lld (at most %d) or tchunk %d (at least d_conv-1) unsupported",
                         (long long)W, MAX_W, TC);
    char name[96];
    snprintf(name, sizeof name, "mamba1_conv_di%lld_w%lld_t%d", (long long)Di, (long long)W, TC);
    KLaunch *l = kout_add(out, name, CONV_THREADS, 0);
    kl_param(l, "tchunk", TC);
    SymExpr seq = n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n);
    l->grid[0] = sym_const((Di + CONV_THREADS - 1) / CONV_THREADS);
    l->grid[1] = sym_ceildiv(seq, TC);
    l->grid[2] = sym_mono(MONO_B, 1);
    SymExpr rows = node_rows_expr(n);
    l->flops = sym_scale(rows, Di * (2 * W + 4));
    l->bytes = sym_add(sym_scale(rows, Di * 2 * 2), sym_mono(MONO_B, Di * (W - 1) * 4 * 2));
    for (int s = 0; s <= 4; s++)
        kl_arg_src(l, s);
    kl_arg_out(l);
    kl_arg_i32(l, seq);
    bool pdl = kl_use_pdl(cg, n);
    kl_param(l, "pdl", pdl);
    return emit_conv(cg, Di, W, TC, pdl, &l->ptx, d);
}

/* count values of type elem (bf16 or f32) from &base[off] into out[] as f32: 16-byte
 * vector loads when `vec` (the row start is 16-byte aligned and count a multiple of
 * the vector width), else one load per value. */
static void load_vals(KB *kb, T elem, V base, V off, int64_t count, bool vec, V *out)
{
    bool bf = elem == kb->bf16;
    int per = bf ? 8 : 4;
    if (vec && count % per == 0) {
        for (int64_t i = 0; i < count / per; i++) {
            V v = kb_load_vec(kb, elem, per, kb_gep(kb, elem, base, kb_add(kb, off, kb_i64(kb, i * per))), 16);
            for (int e = 0; e < per; e++)
                out[i * per + e] = bf ? kb_bf16_to_f32(kb, kb_extract(kb, v, e)) : kb_extract(kb, v, e);
        }
        return;
    }
    for (int64_t i = 0; i < count; i++) {
        V v = kb_load(kb, elem, kb_gep(kb, elem, base, kb_add(kb, off, kb_i64(kb, i))));
        out[i] = bf ? kb_bf16_to_f32(kb, v) : v;
    }
}

/* Per-thread constants of one channel: A·log2(e) per state, D, dt bias, and the
 * dt_proj row in registers when R is small (else read per token). */
typedef struct Chan {
    V a2[MAX_N];     /* −exp(A_log[ch, n]) · log2 e */
    V wdt[MAX_RREG]; /* dt_w[ch, :] (R ≤ MAX_RREG) */
    V Dc, bias;      /* D[ch], dt_bias[ch] */
    V ch;            /* the (clamped) channel */
} Chan;

static Chan load_chan(KB *kb, const M1 *m, V ch, V dtw, V dtb, V alog, V Dp)
{
    Chan c = {.ch = ch};
    V al[MAX_N];
    load_vals(kb, kb->f32, alog, kb_mul(kb, i64(kb, ch), kb_i64(kb, m->N)), m->N, m->N % 4 == 0, al);
    for (int k = 0; k < m->N; k++)
        c.a2[k] = kb_mul(kb, kb_neg(kb, kb_exp(kb, al[k])), kb_f32(kb, 1.4426950408889634));
    if (m->R <= MAX_RREG)
        load_vals(kb, kb->bf16, dtw, kb_mul(kb, i64(kb, ch), kb_i64(kb, m->R)), m->R, m->R % 8 == 0, c.wdt);
    c.Dc = ldf(kb, Dp, ch);
    c.bias = ldf(kb, dtb, ch);
    return c;
}

/* One token: dt = softplus(xdbl[row, 0:R]·dt_w[ch] + bias) (the dt projection in f32),
 * then h = exp(dt·A) h + dt·x·B on h[] (KVars). Sets *dt_out; returns C·h when with_y,
 * else NULL. The xdbl row is read in 16-byte vectors where its rows are aligned. */
static V scan_token(KB *kb, const M1 *m, const Chan *c, KVar *h, V xdbl, V dtw, V row, V x, bool with_y, V *dt_out)
{
    V base = kb_mul(kb, i64(kb, row), kb_i64(kb, m->XD));
    bool regs = m->R <= MAX_RREG;
    /* values wanted from the row, from `first`: [dt | B] in pass 1, [dt | B | C] with y;
     * without the dt row in registers the dot reads dt itself, so only B (and C) */
    int64_t first = regs ? 0 : m->R, need = (regs ? m->R : 0) + (with_y ? 2 : 1) * m->N;
    bool vec = m->XD % 8 == 0 && first % 8 == 0;
    int64_t nv = vec ? (need + 7) / 8 * 8 : need; /* whole 8-value vectors, within the row */
    if (first + nv > m->XD)
        nv = need, vec = false;
    V v[MAX_RREG + 2 * MAX_N + 8];
    load_vals(kb, kb->bf16, xdbl, kb_add(kb, base, kb_i64(kb, first)), nv, vec, v);
    V acc;
    if (regs) {
        acc = kb_f32(kb, 0);
        for (int r = 0; r < m->R; r++)
            acc = kb_fma(kb, v[r], c->wdt[r], acc);
    } else {
        KVar a = kb_var(kb, kb->f32, kb_f32(kb, 0));
        V wrow = kb_mul(kb, i64(kb, c->ch), kb_i64(kb, m->R));
        KVar r = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, m->R), kb_i32(kb, 1));
        V rv = i64(kb, kb_get(kb, r));
        kb_set(kb, a, kb_fma(kb, ldbf(kb, xdbl, kb_add(kb, base, rv)), ldbf(kb, dtw, kb_add(kb, wrow, rv)), kb_get(kb, a)));
        kb_endfor(kb);
        acc = kb_get(kb, a);
    }
    V dt = kb_softplus(kb, kb_add(kb, acc, c->bias));
    const V *Bv = regs ? v + m->R : v, *Cv = Bv + m->N;
    V dtx = kb_mul(kb, dt, x);
    V y = kb_f32(kb, 0);
    for (int k = 0; k < m->N; k++) {
        V hk = kb_fma(kb, nvvm_ex2(kb, kb_mul(kb, dt, c->a2[k])), kb_get(kb, h[k]), kb_mul(kb, dtx, Bv[k]));
        kb_set(kb, h[k], hk);
        if (with_y)
            y = kb_fma(kb, Cv[k], hk, y);
    }
    *dt_out = dt;
    return with_y ? y : NULL;
}

/* y = (C·h + D x) silu(z) stored as bf16 at out[row, ch]. */
static void store_gated(KB *kb, const M1 *m, const Chan *c, V xz, V out, V row, V cy, V x)
{
    V z = ldbf(kb, xz, kb_add(kb, kb_mul(kb, i64(kb, row), kb_i64(kb, 2 * m->Di)), i64(kb, kb_add(kb, c->ch, kb_i32(kb, m->Di)))));
    V y = kb_mul(kb, kb_fma(kb, c->Dc, x, cy), kb_silu(kb, z));
    kb_store(kb, kb_f32_to_bf16(kb, y), kb_gep(kb, kb->bf16, out, kb_add(kb, kb_mul(kb, i64(kb, row), kb_i64(kb, m->Di)), i64(kb, c->ch))));
}

/* Kernel params of both scan kernels: x, xdbl, xz, dt_w, dt_bias, A_log, D, state, out, seq. */
static const KParamKind scan_params[] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32};

/* Shared memory of the scan (floats): per chunk its end state [N][CW] (+1 pad against
 * bank conflicts between the chunks of one warp), then Σdt [chunks][CW]. */
static int scan_chunk_stride(const M1 *m, int CW) { return (int)m->N * CW + 1; }
static unsigned scan_smem(const M1 *m, int NC, int CW) { return (unsigned)(4 * (NC * scan_chunk_stride(m, CW) + NC * CW)); }

/* ---- mamba1_scan (prefill) ---- */
static bool emit_scan(Codegen *cg, const M1 *m, int NW, int CW, char **ptx, Diag *d)
{
    int NC = NW * (32 / CW), CS = scan_chunk_stride(m, CW), o_sd = NC * CS; /* NC: chunks per block */
    KB *kb = kb_new(cg->ctx, "mamba1_scan", scan_params, 10, 32 * NW);
    V xp = kb_param(kb, 0), xdbl = kb_param(kb, 1), xz = kb_param(kb, 2), dtw = kb_param(kb, 3);
    V dtb = kb_param(kb, 4), alog = kb_param(kb, 5), Dp = kb_param(kb, 6), st = kb_param(kb, 7);
    V out = kb_param(kb, 8), seq = kb_param(kb, 9);
    V lane = nvvm_lane(kb), b = nvvm_ctaid_y(kb);
    V cl = kb_rem(kb, lane, kb_i32(kb, CW)); /* channel in the tile */
    V ci = kb_add(kb, kb_mul(kb, nvvm_warp(kb), kb_i32(kb, 32 / CW)), kb_div(kb, lane, kb_i32(kb, CW))); /* chunk */
    V chr = kb_add(kb, kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, CW)), cl);
    V valid = kb_lt(kb, chr, kb_i32(kb, m->Di));
    V ch = kb_min(kb, chr, kb_i32(kb, m->Di - 1)); /* out-of-range lanes compute a copy, store nothing */
    Chan c = load_chan(kb, m, ch, dtw, dtb, alog, Dp);
    V L = kb_div(kb, kb_add(kb, seq, kb_i32(kb, NC - 1)), kb_i32(kb, NC)); /* tokens per chunk */
    V t0 = kb_min(kb, kb_mul(kb, ci, L), seq), t1 = kb_min(kb, kb_add(kb, t0, L), seq);
    V row0 = kb_mul(kb, b, seq);
    V sm = kb_smem(kb, kb_i32(kb, 0));
#define HS(chunk, k) kb_gep(kb, kb->f32, sm, kb_add(kb, kb_mul(kb, (chunk), kb_i32(kb, CS)), kb_add(kb, kb_i32(kb, (k) * CW), cl)))
#define SD(chunk) kb_gep(kb, kb->f32, sm, kb_add(kb, kb_i32(kb, o_sd), kb_add(kb, kb_mul(kb, (chunk), kb_i32(kb, CW)), cl)))
    KVar h[MAX_N];
    /* pass 1: the chunk from h = 0 */
    for (int k = 0; k < m->N; k++)
        h[k] = kb_var(kb, kb->f32, kb_f32(kb, 0));
    KVar sdt = kb_var(kb, kb->f32, kb_f32(kb, 0));
    KVar t = kb_for(kb, t0, t1, kb_i32(kb, 1));
    {
        V row = kb_add(kb, row0, kb_get(kb, t)), dt;
        V x = ldbf(kb, xp, kb_add(kb, kb_mul(kb, i64(kb, row), kb_i64(kb, m->Di)), i64(kb, ch)));
        scan_token(kb, m, &c, h, xdbl, dtw, row, x, false, &dt);
        kb_set(kb, sdt, kb_add(kb, kb_get(kb, sdt), dt));
    }
    kb_endfor(kb);
    for (int k = 0; k < m->N; k++)
        kb_store(kb, kb_get(kb, h[k]), HS(ci, k));
    kb_store(kb, kb_get(kb, sdt), SD(ci));
    nvvm_bar_sync(kb);
    /* carry-in: the initial state through the chunks before this one */
    V sbase = kb_mul(kb, i64(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->Di)), ch)), kb_i64(kb, m->N));
    V init[MAX_N];
    load_vals(kb, kb->f32, st, sbase, m->N, m->N % 4 == 0, init);
    for (int k = 0; k < m->N; k++)
        kb_set(kb, h[k], init[k]);
    KVar j = kb_for(kb, kb_i32(kb, 0), ci, kb_i32(kb, 1));
    {
        V jv = kb_get(kb, j);
        V sd = kb_load(kb, kb->f32, SD(jv));
        for (int k = 0; k < m->N; k++)
            kb_set(kb, h[k], kb_fma(kb, nvvm_ex2(kb, kb_mul(kb, sd, c.a2[k])), kb_get(kb, h[k]), kb_load(kb, kb->f32, HS(jv, k))));
    }
    kb_endfor(kb);
#undef HS
#undef SD
    nvvm_bar_sync(kb); /* every thread has read the initial state before the last chunk's replaces it */
    /* pass 2: rescan from the carry-in, storing y */
    t = kb_for(kb, t0, t1, kb_i32(kb, 1));
    {
        V row = kb_add(kb, row0, kb_get(kb, t)), dt;
        V x = ldbf(kb, xp, kb_add(kb, kb_mul(kb, i64(kb, row), kb_i64(kb, m->Di)), i64(kb, ch)));
        V cy = scan_token(kb, m, &c, h, xdbl, dtw, row, x, true, &dt);
        kb_if(kb, valid);
        store_gated(kb, m, &c, xz, out, row, cy, x);
        kb_endif(kb);
    }
    kb_endfor(kb);
    kb_if(kb, kb_and(kb, valid, kb_eq(kb, ci, kb_i32(kb, NC - 1))));
    for (int k = 0; k < m->N; k++)
        kb_store(kb, kb_get(kb, h[k]), kb_gep(kb, kb->f32, st, kb_add(kb, sbase, kb_i64(kb, k))));
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* ---- mamba1_step (decode) ---- */
static bool emit_step(Codegen *cg, const M1 *m, bool pdl, char **ptx, Diag *d)
{
    KB *kb = kb_new(cg->ctx, "mamba1_step", scan_params, 10, STEP1_THREADS);
    V xp = kb_param(kb, 0), xdbl = kb_param(kb, 1), xz = kb_param(kb, 2), dtw = kb_param(kb, 3);
    V dtb = kb_param(kb, 4), alog = kb_param(kb, 5), Dp = kb_param(kb, 6), st = kb_param(kb, 7);
    V out = kb_param(kb, 8);
    V b = nvvm_ctaid_y(kb);
    V ch = kb_add(kb, kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, STEP1_THREADS)), nvvm_tid_x(kb));
    kb_if(kb, kb_lt(kb, ch, kb_i32(kb, m->Di)));
    {
        Chan c = load_chan(kb, m, ch, dtw, dtb, alog, Dp);
        /* the channel's state (last written by this layer's step a whole decode step ago)
         * is in flight before the wait too */
        V sbase = kb_mul(kb, i64(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->Di)), ch)), kb_i64(kb, m->N));
        V init[MAX_N];
        load_vals(kb, kb->f32, st, sbase, m->N, m->N % 4 == 0, init);
        if (pdl)
            nvvm_pdl_sync(kb);
        KVar h[MAX_N];
        for (int k = 0; k < m->N; k++)
            h[k] = kb_var(kb, kb->f32, init[k]);
        V x = ldbf(kb, xp, kb_add(kb, kb_mul(kb, i64(kb, b), kb_i64(kb, m->Di)), i64(kb, ch))), dt;
        V cy = scan_token(kb, m, &c, h, xdbl, dtw, b, x, true, &dt);
        for (int k = 0; k < m->N; k += m->N % 4 == 0 ? 4 : 1) {
            V sp = kb_gep(kb, kb->f32, st, kb_add(kb, sbase, kb_i64(kb, k)));
            if (m->N % 4) {
                kb_store(kb, kb_get(kb, h[k]), sp);
                continue;
            }
            V v = LLVMGetUndef(LLVMVectorType(kb->f32, 4));
            for (int e = 0; e < 4; e++)
                v = LLVMBuildInsertElement(kb->b, v, kb_get(kb, h[k + e]), kb_i32(kb, e), "");
            kb_store_vec(kb, v, sp, 16);
        }
        store_gated(kb, m, &c, xz, out, b, cy, x);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* srcs: 0 x, 1 xdbl, 2 xz, 3 dt_w, 4 dt_bias, 5 A_log, 6 D, 7 state */
static void mixer_args(KLaunch *l)
{
    for (int s = 0; s <= 7; s++)
        kl_arg_src(l, s);
    kl_arg_out(l);
}

static bool check_m1(const M1 *m, Diag *d)
{
    if (m->N < 1 || m->N > MAX_N || m->R < 1 || m->Di < 1)
        return diag_fail(d, "mamba1: d_state %lld unsupported by the GPU kernels (1..%d)", (long long)m->N, MAX_N);
    return true;
}

bool k_mamba1_scan(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    M1 m = m1_of(n);
    int NW = (int)node_int(n, "warps", 16), CW = (int)node_int(n, "cw", 16);
    if (!check_m1(&m, d))
        return false;
    if (NW < 1 || NW > 32 || (CW != 8 && CW != 16 && CW != 32))
        return diag_fail(d, "mamba1_scan: invalid schedule warps=%d (1..32) cw=%d (8, 16 or 32)", NW, CW);
    int NC = NW * (32 / CW);
    unsigned smem = scan_smem(&m, NC, CW);
    if (smem > (unsigned)cg->target->smem_max)
        return diag_fail(d, "mamba1_scan: warps=%d with d_state %lld needs %u bytes of shared memory, more than %s "
                            "blocks have (%d)", NW, (long long)m.N, smem, cg->target->name, cg->target->smem_max);
    char name[96];
    snprintf(name, sizeof name, "mamba1_scan_di%lld_n%lld_r%lld_w%d_c%d", (long long)m.Di, (long long)m.N,
             (long long)m.R, NW, CW);
    KLaunch *l = kout_add(out, name, (unsigned)(32 * NW), smem);
    kl_param(l, "warps", NW);
    kl_param(l, "cw", CW);
    l->grid[0] = sym_const((m.Di + CW - 1) / CW);
    l->grid[1] = sym_mono(MONO_B, 1);
    SymExpr rows = node_rows_expr(n);
    /* useful work per token and channel: the dt dot (2R), the state update and C·h (5N), the gate */
    l->flops = sym_scale(rows, m.Di * (2 * m.R + 5 * m.N + 8));
    l->bytes = sym_add(sym_scale(rows, m.Di * 2 * 3 + m.XD * 2), sym_mono(MONO_B, 2 * m.Di * m.N * 4));
    mixer_args(l);
    kl_arg_i32(l, n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n));
    return emit_scan(cg, &m, NW, CW, &l->ptx, d);
}

bool k_mamba1_step(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    M1 m = m1_of(n);
    if (!check_m1(&m, d))
        return false;
    char name[96];
    snprintf(name, sizeof name, "mamba1_step_di%lld_n%lld_r%lld", (long long)m.Di, (long long)m.N, (long long)m.R);
    KLaunch *l = kout_add(out, name, STEP1_THREADS, 0);
    l->grid[0] = sym_const((m.Di + STEP1_THREADS - 1) / STEP1_THREADS);
    l->grid[1] = sym_mono(MONO_B, 1);
    l->flops = sym_mono(MONO_B, m.Di * (2 * m.R + 5 * m.N + 8));
    l->bytes = sym_add(sym_mono(MONO_B, m.Di * 2 * 3 + m.XD * 2 + 2 * m.Di * m.N * 4),
                       sym_const(m.Di * (2 * m.R + 4 * m.N + 8))); /* + dt_w, A_log, D, dt_bias */
    mixer_args(l);
    kl_arg_i32(l, sym_const(1));
    bool pdl = kl_use_pdl(cg, n);
    kl_param(l, "pdl", pdl);
    return emit_step(cg, &m, pdl, &l->ptx, d);
}
