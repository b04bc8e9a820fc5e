/* k_index.c — the indexer's streaming top-k (op index_topk), two launches:
 *
 *   index_append  the call's k rows into the indexer's k cache at pos..pos+S-1
 *   index_topk    a block per query (b, t): the scores of every cache row
 *                 s <= pos+t go to shared memory as order-preserving u32 keys
 *                 (kind dot: scale·q·k_s; lightning: Σ_h w_h relu(scale·q_h·k_s));
 *                 the k-th largest key is found bit by bit (32 block-wide
 *                 counts), then the rows above it and the first rows equal to
 *                 it (ties to the lower index) are written in ascending order;
 *                 fewer than k candidates → all of them, then -1.
 * Decode (one query per sequence, with a scratch from lower.c) splits the work:
 *   index_score2  (score2_fits) grid (ceil(ctx/1024), rows): a warp per 32
 *                 cache rows at a time, D/8 lanes per row (coalesced), the
 *                 keys into the scratch [rows, ctx] (u32); it also appends
 *                 the step's key (no index_append)
 *   index_score   otherwise: grid (ceil(ctx/256), rows), a thread per row
 *   index_select  a block per query: those keys into shared memory (the
 *                 first radix histogram counted on the way), then the same
 *                 selection as index_topk (schedule select 0, the default;
 *                 select 1 and 2: one pass over the stored keys after a
 *                 histogram of their top bits, k_index_sel.c; with 2,
 *                 index_score2 counts that histogram into the node's state;
 *                 select 3: that histogram, and the keys split over several
 *                 blocks a query in two launches, k_index_seg.c)
 * (one query's keys are O(ctx), the size of its cache row of scores).
 * Selection attributes (ops.def topk): adaptive p < 1 keeps the fewest picks
 * whose softmax mass reaches p (ix_adaptive); a window W joins the last W
 * positions (ix_window); rows are then k + W wide.
 * Prefill memory is O(seq · k): the [seq, ctx] score matrix never leaves the chip. The
 * scores of one query must fit in shared memory: ctx <= INDEX_MAX_CTX (the plan
 * records it; sessions with a larger max_ctx are refused). */
#include <assert.h>
#include <math.h>
#include <string.h>

#include "k_index.h"
#include "passes.h"

/* Threads of index_topk / index_score blocks, and of index_select's (one
 * block per query, latency-bound passes over its keys in shared memory: 32
 * warps hide the shared-memory latency that 8 could not; H100 b64 ctx 32768:
 * 120 µs with 256 threads). */
enum { IX_THREADS = 256, IX_SELECT_THREADS = 1024, IX_MAX_WARPS = IX_SELECT_THREADS / 32 };
/* Threads of the fused prefill index_topk (schedule `threads`; default
 * 1024 where the query fits in 64 registers per thread, H ≤ 2, else 512):
 * its keys fill most of the shared memory, so one block runs per SM, and
 * its warps are all that hide the scoring loads and the radix passes'
 * shared-memory latency (H100 s16384, h1 d64 k2048: 4.87 ms with 256
 * threads, 3.47 with 512, 2.70 with 1024; 6.0 before the coalesced scoring). */
static int topk_threads(const Node *n, int64_t H) { return (int)node_int(n, "threads", H <= 2 ? 1024 : 512); }


static V kb_uge(KB *kb, V a, V b) { return LLVMBuildICmp(kb->b, LLVMIntUGE, a, b, ""); }

/* The query row r (and its head weights) into shared memory as f32. */
static void load_query(KB *kb, V qp, V wp, V r, V tid, int threads, V qs, V ws, int64_t H, int64_t D)
{
    KVar i = kb_for(kb, tid, kb_i32(kb, H * D), kb_i32(kb, threads));
    {
        V iv = kb_get(kb, i);
        V qv = kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, qp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, H * D)), kb_to_i64(kb, iv))));
        kb_store(kb, kb_bf16_to_f32(kb, qv), kb_gep(kb, kb->f32, qs, iv));
    }
    kb_endfor(kb);
    if (wp) {
        KVar hh = kb_for(kb, tid, kb_i32(kb, H), kb_i32(kb, threads));
        V hv = kb_get(kb, hh);
        kb_store(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, wp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, H)), kb_to_i64(kb, hv)))),
                 kb_gep(kb, kb->f32, ws, hv));
        kb_endfor(kb);
    }
}

/* Whether the per-row dot product is summed as a pairwise tree of 8-element
 * chunk partials (D / 8 a power of two): the order index_score's lanes use
 * (a butterfly over the D / 8 lanes of a row), so that a decode step's keys
 * equal the fused kernel's bit for bit. */
static bool tree_order(int64_t D)
{
    int64_t c = D / 8;
    return c >= 1 && (c & (c - 1)) == 0;
}

/* The order-preserving u32 key of a score (float → u32 whose unsigned order
 * is the float order). */
static V score_to_key(KB *kb, V sc)
{
    V u = kb_bitcast(kb, sc, kb->i32);
    V neg = kb_lt(kb, u, kb_i32(kb, 0));
    return kb_select(kb, neg, kb_xor(kb, u, kb_i32(kb, -1)), kb_or(kb, u, kb_i32(kb, (int64_t)0x80000000LL)));
}

/* One head's partial dot over an 8-element chunk: q8 (8 f32 values), k8
 * (<8 x bfloat>), fma from 0 in element order. */
static V chunk_dot(KB *kb, const V *q8, V k8)
{
    V part = kb_f32(kb, 0);
    for (int u = 0; u < 8; u++)
        part = kb_fma(kb, q8[u], kb_bf16_to_f32(kb, kb_extract(kb, k8, u)), part);
    return part;
}

/* The order-preserving u32 key of cache row `krow` (element offset) against
 * the query in qs (kind dot: scale·q·k; lightning: Σ_h w_h relu(scale·q_h·k)).
 * The dot of each head: 8-element chunk partials (chunk_dot), summed as a
 * pairwise tree when tree_order(D), else in chunk order. */
static V score_key(KB *kb, V kc, V krow, V qs, V ws, int64_t H, int64_t D, float scale)
{
    V zero = kb_f32(kb, 0);
    int64_t C = D / 8;
    bool tree = tree_order(D) && C <= 32;
    KVar tot = kb_var(kb, kb->f32, zero);
    KVar hh = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, H), kb_i32(kb, 1));
    {
        V hv = kb_get(kb, hh);
        V dot = zero;
        if (tree) { /* chunks unrolled, partials summed as a pairwise tree */
            V part[32];
            for (int64_t c = 0; c < C; c++) {
                V k8 = kb_load_vec(kb, kb->bf16, 8, kb_gep(kb, kb->bf16, kc, kb_add(kb, krow, kb_i64(kb, 8 * c))), 16);
                V q8[8];
                for (int u = 0; u < 8; u++)
                    q8[u] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, qs, kb_add(kb, kb_mul(kb, hv, kb_i32(kb, D)), kb_i32(kb, (int)(8 * c + u)))));
                part[c] = chunk_dot(kb, q8, k8);
            }
            for (int64_t m = 1; m < C; m *= 2)
                for (int64_t c = 0; c < C; c += 2 * m)
                    part[c] = kb_add(kb, part[c], part[c + m]);
            dot = part[0];
        } else { /* chunk partials added in chunk order */
            KVar acc = kb_var(kb, kb->f32, zero);
            KVar e = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, D), kb_i32(kb, 8));
            {
                V ev = kb_get(kb, e);
                V k8 = kb_load_vec(kb, kb->bf16, 8, kb_gep(kb, kb->bf16, kc, kb_add(kb, krow, kb_to_i64(kb, ev))), 16);
                V q8[8];
                for (int u = 0; u < 8; u++)
                    q8[u] = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, qs, kb_add(kb, kb_mul(kb, hv, kb_i32(kb, D)), kb_add(kb, ev, kb_i32(kb, u)))));
                kb_set(kb, acc, kb_add(kb, kb_get(kb, acc), chunk_dot(kb, q8, k8)));
            }
            kb_endfor(kb);
            dot = kb_get(kb, acc);
        }
        V sc = kb_mul(kb, dot, kb_f32(kb, scale));
        if (ws)
            sc = kb_mul(kb, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ws, hv)), kb_max(kb, sc, zero));
        kb_set(kb, tot, kb_add(kb, kb_get(kb, tot), sc));
    }
    kb_endfor(kb);
    return score_to_key(kb, kb_get(kb, tot));
}

/* index_score (decode, split): grid (ceil(ctx / IX_THREADS), rows), a thread
 * per cache row s < n of query r: its key into keys[r][s] (u32 [rows, ctx],
 * the node's scratch). Args: q, k cache, pos, keys, seq, ctx, rows[, w]. */
static bool emit_score(Codegen *cg, int64_t H, int64_t D, bool lightning, float scale, char **ptx, Diag *d)
{
    int o_q = 0, o_w = 4 * (int)(H * D);
    KParamKind pk[8] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32};
    int np = 7;
    if (lightning)
        pk[np++] = KP_PTR;
    KB *kb = kb_new(cg->ctx, "index_score", pk, np, IX_THREADS);
    V qp = kb_param(kb, 0), kc = kb_param(kb, 1), posp = kb_param(kb, 2), keysp = kb_param(kb, 3);
    V seq = kb_param(kb, 4), ctx = kb_param(kb, 5), rows = kb_param(kb, 6);
    V wp = lightning ? kb_param(kb, 7) : NULL;
    V r = nvvm_ctaid_y(kb), tid = nvvm_tid_x(kb);
    V qs = kb_smem(kb, kb_i32(kb, o_q)), ws = lightning ? kb_smem(kb, kb_i32(kb, o_w)) : NULL;
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V b = kb_div(kb, r, seq), t = kb_rem(kb, r, seq);
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t);
        V n = kb_min(kb, kb_add(kb, p, kb_i32(kb, 1)), ctx);
        V s0 = kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, IX_THREADS));
        kb_if(kb, kb_lt(kb, s0, n));
        {
            load_query(kb, qp, wp, r, tid, IX_THREADS, qs, ws, H, D);
            nvvm_bar_sync(kb);
            V sv = kb_add(kb, s0, tid);
            kb_if(kb, kb_lt(kb, sv, n));
            {
                V krow = kb_mul(kb, kb_add(kb, kb_mul(kb, kb_to_i64(kb, b), kb_to_i64(kb, ctx)), kb_to_i64(kb, sv)), kb_i64(kb, D));
                V key = score_key(kb, kc, krow, qs, ws, H, D, scale);
                kb_store(kb, key, kb_gep(kb, kb->i32, keysp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_to_i64(kb, ctx)), kb_to_i64(kb, sv))));
            }
            kb_endif(kb);
        }
        kb_endif(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

enum { IX_SCORE_ROWS = 1024 }; /* index_score2: cache rows per block, 4 passes of 256 */

static bool score2_fits(int64_t H, int64_t D) { return H >= 1 && H <= 4 && tree_order(D) && D <= 128; }

/* A lane's part in scoring cache rows coalesced (score2_fits: index_score2,
 * and the fused index_topk): a warp takes 32 consecutive rows at a time,
 * C = D/8 lanes per row each loading one 16-byte chunk (a warp's load covers
 * 32/C whole rows), C loads per lane in flight; each lane dots its chunk
 * with the query chunk it holds in registers (chunk_dot), a butterfly over
 * the row's C lanes sums the partials (score_key's tree order, so the keys
 * equal score_key's bit for bit), shuffles hand lane l the key of row
 * base + l. */
typedef struct RowLanes {
    int64_t H, D;   /* heads, dim */
    int C, RPI;     /* lanes per row (D / 8), rows per load instruction (32 / C) */
    float scale;    /* score scale */
    V kc;           /* bf16 k cache [batch, ctx, D] */
    V cb;           /* i64: the sequence's first cache row (b·ctx) */
    V lane, g, c8;  /* lane; its row within a load (lane / C); i64 element offset of its chunk (8·(lane % C)) */
    V q8[4][8];     /* f32 [H][8]: this lane's chunk of each head's query */
    V w[4];         /* f32 [H]: head weights (lightning), else NULL */
    V knew, r, p;   /* decode: the step's row p is read from knew (bf16 [rows, D], row r) and appended
                     * to the cache; NULL knew: every row from the cache */
} RowLanes;

/* This lane's query chunks (query row r of q [rows, H·D]) and head weights. */
static RowLanes row_lanes(KB *kb, V qp, V wp, V kc, V cb, V r, int64_t H, int64_t D, float scale)
{
    RowLanes rl = {.H = H, .D = D, .C = (int)(D / 8), .RPI = 32 / (int)(D / 8), .scale = scale, .kc = kc, .cb = cb};
    rl.lane = nvvm_lane(kb);
    rl.g = kb_div(kb, rl.lane, kb_i32(kb, rl.C));
    rl.c8 = kb_to_i64(kb, kb_mul(kb, kb_rem(kb, rl.lane, kb_i32(kb, rl.C)), kb_i32(kb, 8)));
    for (int h = 0; h < H; h++) {
        for (int u = 0; u < 8; u++) {
            V at = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, H * D)), kb_add(kb, kb_i64(kb, h * D + u), rl.c8));
            rl.q8[h][u] = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, qp, at)));
        }
        rl.w[h] = wp ? kb_load(kb, kb->f32, kb_gep(kb, kb->f32, wp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, H)), kb_i64(kb, h))))
                     : NULL;
    }
    return rl;
}

/* The key (i32) of row base + lane for lane `lane`, of rows base .. base + 31
 * (warp-uniform base < n; rows at or past n read row n - 1 and are not
 * valid). */
static V row_keys32(KB *kb, const RowLanes *rl, V base, V n)
{
    int C = rl->C, RPI = rl->RPI;
    int64_t D = rl->D;
    V zero = kb_f32(kb, 0);
    V k8[16], su[16];
    for (int u = 0; u < C; u++) { /* every load first: C chunks in flight */
        su[u] = kb_add(kb, base, kb_add(kb, kb_i32(kb, u * RPI), rl->g));
        V sl = kb_min(kb, su[u], kb_sub(kb, n, kb_i32(kb, 1))); /* rows past n: a valid row, not stored */
        k8[u] = kb_load_vec(kb, kb->bf16, 8, kb_gep(kb, kb->bf16, rl->kc, kb_add(kb, kb_mul(kb, kb_add(kb, rl->cb, kb_to_i64(kb, sl)), kb_i64(kb, D)), rl->c8)), 16);
    }
    for (int u = 0; rl->knew && u < C; u++) { /* the step's own row: from the k input, and into the cache */
        V sl = kb_min(kb, su[u], kb_sub(kb, n, kb_i32(kb, 1)));
        KVar kv = kb_var(kb, LLVMTypeOf(k8[u]), k8[u]);
        kb_if(kb, kb_eq(kb, sl, rl->p));
        {
            V vec = LLVMGetUndef(LLVMTypeOf(k8[u]));
            for (int e = 0; e < 8; e++) {
                V at = kb_add(kb, kb_mul(kb, kb_to_i64(kb, rl->r), kb_i64(kb, D)), kb_add(kb, rl->c8, kb_i64(kb, e)));
                vec = LLVMBuildInsertElement(kb->b, vec, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, rl->knew, at)), kb_i32(kb, e), "");
            }
            kb_set(kb, kv, vec);
            kb_if(kb, kb_eq(kb, su[u], rl->p)); /* once per chunk (clamped lanes only read) */
            kb_store_vec(kb, vec, kb_gep(kb, kb->bf16, rl->kc, kb_add(kb, kb_mul(kb, kb_add(kb, rl->cb, kb_to_i64(kb, rl->p)), kb_i64(kb, D)), rl->c8)), 16);
            kb_endif(kb);
        }
        kb_endif(kb);
        k8[u] = kb_get(kb, kv);
    }
    V key[16];
    for (int u = 0; u < C; u++) {
        V total = zero;
        for (int h = 0; h < rl->H; h++) {
            V part = chunk_dot(kb, rl->q8[h], k8[u]);
            for (int m = 1; m < C; m *= 2)
                part = kb_add(kb, part, nvvm_shfl_xor(kb, part, m));
            V sc = kb_mul(kb, part, kb_f32(kb, rl->scale));
            if (rl->w[h])
                sc = kb_mul(kb, rl->w[h], kb_max(kb, sc, zero));
            total = kb_add(kb, total, sc);
        }
        key[u] = kb_bitcast(kb, score_to_key(kb, total), kb->f32);
    }
    /* lane l: row base + l = load u = l / RPI, group l % RPI (lane (l % RPI)·C holds it) */
    V src = kb_mul(kb, kb_rem(kb, rl->lane, kb_i32(kb, RPI)), kb_i32(kb, C)), mine = kb_div(kb, rl->lane, kb_i32(kb, RPI));
    V kv = kb_f32(kb, 0);
    for (int u = 0; u < C; u++)
        kv = kb_select(kb, kb_eq(kb, mine, kb_i32(kb, u)), nvvm_shfl_idx(kb, key[u], src), kv);
    return kb_bitcast(kb, kv, kb->i32);
}

/* index_score, coalesced (decode, split; score2_fits): grid
 * (ceil(ctx / IX_SCORE_ROWS), rows), IX_THREADS threads, the rows scored by
 * row_keys32 and each warp's 32 keys stored by one 128-byte store. The
 * step's own row s = pos is read from the k input (not yet in the cache)
 * and written into the cache by the lanes that load it: decode needs no
 * index_append. Args: q, k (the call's rows), k cache, pos, keys, seq, ctx,
 * rows[, w]. */
static bool emit_score2(Codegen *cg, int64_t H, int64_t D, bool lightning, float scale, bool hist, char **ptx, Diag *d)
{
    KParamKind pk[10] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32};
    int np = 8;
    if (lightning)
        pk[np++] = KP_PTR;
    if (hist)
        pk[np++] = KP_PTR;
    KB *kb = kb_new(cg->ctx, "index_score", pk, np, IX_THREADS);
    V qp = kb_param(kb, 0), knew = kb_param(kb, 1), kc = kb_param(kb, 2), posp = kb_param(kb, 3), keysp = kb_param(kb, 4);
    V seq = kb_param(kb, 5), ctx = kb_param(kb, 6), rows = kb_param(kb, 7);
    V wp = lightning ? kb_param(kb, 8) : NULL;
    V histp = hist ? kb_param(kb, np - 1) : NULL;
    V r = nvvm_ctaid_y(kb), lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    V tid = nvvm_tid_x(kb), hs = hist ? kb_smem(kb, kb_i32(kb, 0)) : NULL; /* smem i32 [IX_HIST_BINS] */
    kb_if(kb, kb_lt(kb, r, rows));
    {
        if (hist) {
            KVar z = kb_for(kb, tid, kb_i32(kb, IX_HIST_BINS), kb_i32(kb, IX_THREADS));
            kb_store(kb, kb_i32(kb, 0), kb_gep(kb, kb->i32, hs, kb_get(kb, z)));
            kb_endfor(kb);
            nvvm_bar_sync(kb);
        }
        V b = kb_div(kb, r, seq), t = kb_rem(kb, r, seq);
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t);
        V n = kb_min(kb, kb_add(kb, p, kb_i32(kb, 1)), ctx);
        V cb = kb_mul(kb, kb_to_i64(kb, b), kb_to_i64(kb, ctx));
        RowLanes rl = row_lanes(kb, qp, wp, kc, cb, r, H, D, scale);
        rl.knew = knew, rl.r = r, rl.p = p;
        V s_blk = kb_mul(kb, nvvm_ctaid_x(kb), kb_i32(kb, IX_SCORE_ROWS));
        KVar it = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, IX_SCORE_ROWS), kb_i32(kb, IX_THREADS));
        {
            V base = kb_add(kb, s_blk, kb_add(kb, kb_get(kb, it), kb_mul(kb, warp, kb_i32(kb, 32))));
            kb_if(kb, kb_lt(kb, base, n)); /* warp-uniform: the shuffles below see the whole warp */
            {
                V ki = row_keys32(kb, &rl, base, n);
                V s = kb_add(kb, base, lane);
                kb_if(kb, kb_lt(kb, s, n));
                kb_store(kb, ki, kb_gep(kb, kb->i32, keysp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_to_i64(kb, ctx)), kb_to_i64(kb, s))));
                kb_endif(kb);
                if (hist) /* the key's top bits, counted per block in smem */
                    ix_hist_add(kb, hs, LLVMBuildLShr(kb->b, ki, kb_i32(kb, 32 - IX_HIST_BITS), ""), kb_lt(kb, s, n));
            }
            kb_endif(kb);
        }
        kb_endfor(kb);
        if (hist) { /* the block's counts into the query's row of the state (non-zero bins only) */
            nvvm_bar_sync(kb);
            KVar i = kb_for(kb, tid, kb_i32(kb, IX_HIST_BINS), kb_i32(kb, IX_THREADS));
            {
                V iv = kb_get(kb, i), c = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, hs, iv));
                kb_if(kb, kb_ne(kb, c, kb_i32(kb, 0)));
                V at = kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, IX_HIST_BINS)), kb_to_i64(kb, iv));
                LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, kb_gep(kb, kb->i32, histp, at), c, LLVMAtomicOrderingMonotonic, 0);
                kb_endif(kb);
            }
            kb_endfor(kb);
        }
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* Shared memory of index_topk / index_select (layout in emit_topk). */
static unsigned topk_smem(int64_t H, int64_t D, int threads)
{
    return (unsigned)(4 * INDEX_MAX_CTX + 4 * H * D + 4 * H + 8 * (threads / 32) + 4 * 256 + 8);
}


static unsigned f32_bits(float f)
{
    unsigned u;
    memcpy(&u, &f, sizeof u);
    return u;
}

/* Decodes an order-preserving u32 key back to its float. */
static V key_to_f32(KB *kb, V key)
{
    V hi = kb_lt(kb, key, kb_i32(kb, 0)); /* top bit set: a non-negative float */
    V u = kb_select(kb, hi, kb_xor(kb, key, kb_i32(kb, (int64_t)0x80000000LL)), kb_xor(kb, key, kb_i32(kb, -1)));
    return kb_bitcast(kb, u, kb->f32);
}

/* Unsigned max of an i32 over the warp (every lane gets it). */
static V warp_umax(KB *kb, V x)
{
    for (int m = 16; m >= 1; m /= 2) {
        V o = kb_bitcast(kb, nvvm_shfl_xor(kb, kb_bitcast(kb, x, kb->f32), m), kb->i32);
        x = kb_select(kb, ix_ugt(kb, o, x), o, x);
    }
    return x;
}

/* Adaptive top-k, after the plain selection wrote sel[out .. out+m) (m =
 * min(n, K), ascending indices) and the keys of all n candidates are in
 * smem. All threads: the row max mx (the largest key) and Z = Σ_s exp(I_s −
 * mx) over s < n (a thread's strided sum, warp butterflies, then the warps'
 * sums added in warp order). Warp 0: the mass threshold T, the largest key
 * with Σ_{selected, key >= T} exp(I − mx) >= p·Z, found bit by bit from the
 * top (32 warp sums over the selection); the keys above T are kept and, of
 * the keys equal to T, the `eq_need` lowest-index ones, eq_need the fewest
 * with mass(> T) + eq_need·exp(T − mx) >= p·Z (at least one); then the kept
 * rows are compacted in place in index order and the rest of the K slots
 * set to -1. When the whole selection's mass is below p·Z, T stays 0 and
 * every pick is kept (no key is 0: that is a NaN's). */
void ix_adaptive(KB *kb, const Sel *sl, V keys, V selp, V out, V n, V tid, int threads, V cnt_a, V cnt_b)
{
    int warps = threads / 32;
    V lane = nvvm_lane(kb), warp = nvvm_warp(kb), zero = kb_f32(kb, 0);
    /* the row max, as a key */
    KVar mk = kb_var(kb, kb->i32, kb_i32(kb, 0));
    KVar s = kb_for(kb, tid, n, kb_i32(kb, threads));
    {
        V key = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, keys, kb_get(kb, s)));
        kb_set(kb, mk, kb_select(kb, ix_ugt(kb, key, kb_get(kb, mk)), key, kb_get(kb, mk)));
    }
    kb_endfor(kb);
    V wm = warp_umax(kb, kb_get(kb, mk));
    kb_if(kb, kb_eq(kb, lane, kb_i32(kb, 0)));
    kb_store(kb, wm, kb_gep(kb, kb->i32, cnt_a, warp));
    kb_endif(kb);
    nvvm_bar_sync(kb);
    V mkey = kb_i32(kb, 0);
    for (int w = 0; w < warps; w++) {
        V v = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, cnt_a, kb_i32(kb, w)));
        mkey = kb_select(kb, ix_ugt(kb, v, mkey), v, mkey);
    }
    V mx = key_to_f32(kb, mkey);
    /* Z */
    KVar zs = kb_var(kb, kb->f32, zero);
    KVar s2 = kb_for(kb, tid, n, kb_i32(kb, threads));
    {
        V key = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, keys, kb_get(kb, s2)));
        kb_set(kb, zs, kb_add(kb, kb_get(kb, zs), kb_exp(kb, kb_sub(kb, key_to_f32(kb, key), mx))));
    }
    kb_endfor(kb);
    V wz = nvvm_warp_sum(kb, kb_get(kb, zs));
    kb_if(kb, kb_eq(kb, lane, kb_i32(kb, 0)));
    kb_store(kb, wz, kb_gep(kb, kb->f32, cnt_b, warp));
    kb_endif(kb);
    nvvm_bar_sync(kb);
    kb_if(kb, kb_eq(kb, warp, kb_i32(kb, 0)));
    {
        V Z = zero;
        for (int w = 0; w < warps; w++)
            Z = kb_add(kb, Z, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cnt_b, kb_i32(kb, w))));
        V target = kb_mul(kb, kb_f32(kb, sl->p), Z);
        V m = kb_min(kb, n, kb_i32(kb, (int)sl->K));
        /* mass of the picks whose key is >= lo (ge) or > lo (!ge), over the warp */
#define PICK_MASS(lo, ge, res)                                                                                         do {                                                                                                                   KVar acc_ = kb_var(kb, kb->f32, zero);                                                                             KVar i_ = kb_for(kb, lane, m, kb_i32(kb, 32));                                                                     {                                                                                                                      V sv_ = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, selp, kb_add(kb, out, kb_to_i64(kb, kb_get(kb, i_)))));             V key_ = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, keys, sv_));                                                     V in_ = (ge) ? kb_uge(kb, key_, lo) : ix_ugt(kb, key_, lo);                                                    V w_ = kb_exp(kb, kb_sub(kb, key_to_f32(kb, key_), mx));                                                           kb_set(kb, acc_, kb_add(kb, kb_get(kb, acc_), kb_select(kb, in_, w_, zero)));                                  }                                                                                                                  kb_endfor(kb);                                                                                                     res = nvvm_warp_sum(kb, kb_get(kb, acc_));                                                                     } while (0)
        KVar T = kb_var(kb, kb->i32, kb_i32(kb, 0));
        KVar bit = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, 32), kb_i32(kb, 1));
        {
            V cand = kb_or(kb, kb_get(kb, T), kb_shl(kb, kb_i32(kb, 1), kb_sub(kb, kb_i32(kb, 31), kb_get(kb, bit))));
            V mass;
            PICK_MASS(cand, true, mass);
            kb_set(kb, T, kb_select(kb, kb_ge(kb, mass, target), cand, kb_get(kb, T)));
        }
        kb_endfor(kb);
        V Tv = kb_get(kb, T), gt;
        PICK_MASS(Tv, false, gt);
#undef PICK_MASS
        V wT = kb_exp(kb, kb_sub(kb, key_to_f32(kb, Tv), mx));
        V q = kb_div(kb, kb_sub(kb, target, gt), wT);              /* ties wanted, before rounding up */
        q = kb_select(kb, kb_gt(kb, q, zero), q, zero);             /* negative or NaN (0/0) → 0 (then 1) */
        q = kb_select(kb, kb_lt(kb, q, kb_f32(kb, 1e9f)), q, kb_f32(kb, 1e9f)); /* w_T underflowed → all ties */
        V qi = LLVMBuildFPToSI(kb->b, q, kb->i32, "");
        qi = kb_add(kb, qi, kb_select(kb, kb_lt(kb, kb_to_f32(kb, qi), q), kb_i32(kb, 1), kb_i32(kb, 0))); /* ceil */
        V eq_need = kb_select(kb, kb_eq(kb, Tv, kb_i32(kb, 0)), m, kb_max(kb, qi, kb_i32(kb, 1)));
        /* in-place compaction of the kept picks (each store at or before the slot it came from) */
        V lt = nvvm_lanemask_lt(kb);
        KVar run = kb_var(kb, kb->i32, kb_i32(kb, 0)), run_eq = kb_var(kb, kb->i32, kb_i32(kb, 0));
        KVar c = kb_for(kb, kb_i32(kb, 0), m, kb_i32(kb, 32));
        {
            V i = kb_add(kb, kb_get(kb, c), lane);
            V valid = kb_lt(kb, i, m);
            V sv = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, selp, kb_add(kb, out, kb_to_i64(kb, kb_select(kb, valid, i, kb_i32(kb, 0))))));
            V key = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, keys, kb_select(kb, valid, sv, kb_i32(kb, 0))));
            V iseq = kb_and(kb, valid, kb_eq(kb, key, Tv));
            V eqm = nvvm_ballot(kb, iseq);
            V eq_rank = kb_add(kb, kb_get(kb, run_eq), nvvm_popc(kb, kb_and(kb, eqm, lt)));
            V keep = kb_or(kb, kb_and(kb, valid, ix_ugt(kb, key, Tv)), kb_and(kb, iseq, kb_lt(kb, eq_rank, eq_need)));
            V km = nvvm_ballot(kb, keep);
            V at = kb_add(kb, kb_get(kb, run), nvvm_popc(kb, kb_and(kb, km, lt)));
            kb_if(kb, keep);
            kb_store(kb, sv, kb_gep(kb, kb->i32, selp, kb_add(kb, out, kb_to_i64(kb, at))));
            kb_endif(kb);
            kb_set(kb, run, kb_add(kb, kb_get(kb, run), nvvm_popc(kb, km)));
            kb_set(kb, run_eq, kb_add(kb, kb_get(kb, run_eq), nvvm_popc(kb, eqm)));
        }
        kb_endfor(kb);
        KVar f = kb_for(kb, kb_add(kb, kb_get(kb, run), lane), kb_i32(kb, (int)sl->K), kb_i32(kb, 32));
        kb_store(kb, kb_i32(kb, -1), kb_gep(kb, kb->i32, selp, kb_add(kb, out, kb_to_i64(kb, kb_get(kb, f)))));
        kb_endfor(kb);
    }
    kb_endif(kb);
}

/* The local window (warp 0), after the top-k part sel[out .. out+K) is final
 * (ascending, -1 at the tail): with lo = max(0, p − W + 1), the picks below lo
 * stay where they are (a prefix), then lo .. n−1 follow, then -1 up to K+W:
 * the union, deduplicated, ascending. */
void ix_window(KB *kb, const Sel *sl, V selp, V out, V p, V n)
{
    V lane = nvvm_lane(kb);
    kb_if(kb, kb_eq(kb, nvvm_warp(kb), kb_i32(kb, 0)));
    {
        /* the adaptive compaction's stores (other lanes) before these loads */
        nvvm_call(kb, "llvm.nvvm.bar.warp.sync", kb->t_void, (V[]){kb_i32(kb, -1)}, 1);
        V lo = kb_max(kb, kb_sub(kb, p, kb_i32(kb, (int)sl->W - 1)), kb_i32(kb, 0));
        KVar below = kb_var(kb, kb->i32, kb_i32(kb, 0));
        KVar c = kb_for(kb, kb_i32(kb, 0), kb_i32(kb, (int)sl->K), kb_i32(kb, 32));
        {
            V i = kb_add(kb, kb_get(kb, c), lane);
            V valid = kb_lt(kb, i, kb_i32(kb, (int)sl->K));
            V sv = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, selp, kb_add(kb, out, kb_to_i64(kb, kb_select(kb, valid, i, kb_i32(kb, 0))))));
            V is = kb_and(kb, valid, kb_and(kb, kb_ge(kb, sv, kb_i32(kb, 0)), kb_lt(kb, sv, lo)));
            kb_set(kb, below, kb_add(kb, kb_get(kb, below), nvvm_popc(kb, nvvm_ballot(kb, is))));
        }
        kb_endfor(kb);
        V c1 = kb_get(kb, below);
        KVar j = kb_for(kb, lane, kb_sub(kb, kb_i32(kb, (int)(sl->K + sl->W)), c1), kb_i32(kb, 32));
        {
            V jv = kb_get(kb, j), s = kb_add(kb, lo, jv);
            kb_store(kb, kb_select(kb, kb_lt(kb, s, n), s, kb_i32(kb, -1)),
                     kb_gep(kb, kb->i32, selp, kb_add(kb, out, kb_to_i64(kb, kb_add(kb, c1, jv)))));
        }
        kb_endfor(kb);
    }
    kb_endif(kb);
}

enum { IX_LOAD_UNROLL = 8 }; /* index_select: key loads per thread in flight */

/* The keys of the n candidates of query r into smem: split, from the
 * scratch index_score wrote (qp is the scratch), IX_LOAD_UNROLL loads per
 * thread issued before their stores (the loop runs while any lane of the
 * warp has keys left, so the warp stays converged); with hist0 (zeroed and
 * synced by the caller) the top-byte histogram of the radix select's first
 * pass is counted on the way, one shared atomic per distinct byte per warp
 * (match.any: the lanes holding the same byte add their count through the
 * lowest of them). Fused, scored here: coalesced by row_keys32 where
 * score2_fits (the histogram counted the same way), else a thread per row
 * (score_key). */
void ix_hist_add(KB *kb, V hist, V dig, V in)
{
    V lane = nvvm_lane(kb);
    V tag = kb_select(kb, in, dig, kb_or(kb, kb_i32(kb, (int64_t)0x80000000LL), lane)); /* lanes out: alone */
    V same = nvvm_call(kb, "llvm.nvvm.match.any.sync.i32", kb->i32, (V[]){kb_i32(kb, -1), tag}, 2);
    kb_if(kb, kb_and(kb, in, kb_eq(kb, kb_and(kb, same, nvvm_lanemask_lt(kb)), kb_i32(kb, 0))));
    LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, kb_gep(kb, kb->i32, hist, dig), nvvm_popc(kb, same),
                       LLVMAtomicOrderingMonotonic, 0);
    kb_endif(kb);
}

V ix_block_scan(KB *kb, V x, V tmp, int warps, V *tot)
{
    V lane = nvvm_lane(kb), warp = nvvm_warp(kb), inc = x, zero = kb_i32(kb, 0);
    for (int o = 1; o < 32; o *= 2) {
        V has = kb_ge(kb, lane, kb_i32(kb, o));
        V up = ix_shfl_i32(kb, inc, kb_select(kb, has, kb_sub(kb, lane, kb_i32(kb, o)), lane));
        inc = kb_add(kb, inc, kb_select(kb, has, up, zero));
    }
    kb_if(kb, kb_eq(kb, lane, kb_i32(kb, 31)));
    kb_store(kb, inc, kb_gep(kb, kb->i32, tmp, warp));
    kb_endif(kb);
    nvvm_bar_sync(kb);
    /* lane l: warp l's total, scanned over the lanes; this warp's share is lane `warp`'s exclusive sum */
    V wt = warps < 32 ? kb_select(kb, kb_lt(kb, lane, kb_i32(kb, warps)),
                                  kb_load(kb, kb->i32, kb_gep(kb, kb->i32, tmp, kb_min(kb, lane, kb_i32(kb, warps - 1)))), zero)
                      : kb_load(kb, kb->i32, kb_gep(kb, kb->i32, tmp, lane));
    V winc = wt;
    for (int o = 1; o < warps; o *= 2) {
        V has = kb_ge(kb, lane, kb_i32(kb, o));
        V up = ix_shfl_i32(kb, winc, kb_select(kb, has, kb_sub(kb, lane, kb_i32(kb, o)), lane));
        winc = kb_add(kb, winc, kb_select(kb, has, up, zero));
    }
    V before = ix_shfl_i32(kb, kb_sub(kb, winc, wt), warp);
    *tot = ix_shfl_i32(kb, winc, kb_i32(kb, warps - 1));
    return kb_sub(kb, kb_add(kb, before, inc), x);
}

void ix_find_bin(KB *kb, V hist, int nbins, V rem, V tid, int threads, V tmp, V found, V out[3])
{
    int bpt = nbins / threads; /* bins per thread, descending from the top */
    V c8[8], d8[8], sum = kb_i32(kb, 0);
    assert(bpt >= 1 && bpt <= 8 && bpt * threads == nbins);
    for (int j = 0; j < bpt; j++) {
        d8[j] = kb_sub(kb, kb_i32(kb, nbins - 1), kb_add(kb, kb_mul(kb, tid, kb_i32(kb, bpt)), kb_i32(kb, j)));
        c8[j] = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, hist, d8[j]));
        sum = kb_add(kb, sum, c8[j]);
    }
    V tot, excl = ix_block_scan(kb, sum, tmp, threads / 32, &tot);
    (void)tot;
    kb_if(kb, kb_and(kb, kb_lt(kb, excl, rem), kb_ge(kb, kb_add(kb, excl, sum), rem)));
    {
        V acc = excl, dsel = kb_i32(kb, -1), rnew = rem, cnt = kb_i32(kb, 0);
        for (int j = 0; j < bpt; j++) {
            V before = acc;
            acc = kb_add(kb, acc, c8[j]);
            V hit = kb_and(kb, kb_lt(kb, dsel, kb_i32(kb, 0)), kb_ge(kb, acc, rem));
            dsel = kb_select(kb, hit, d8[j], dsel);
            rnew = kb_select(kb, hit, kb_sub(kb, rem, before), rnew);
            cnt = kb_select(kb, hit, c8[j], cnt);
        }
        kb_store(kb, dsel, kb_gep(kb, kb->i32, found, kb_i32(kb, 0)));
        kb_store(kb, rnew, kb_gep(kb, kb->i32, found, kb_i32(kb, 1)));
        kb_store(kb, cnt, kb_gep(kb, kb->i32, found, kb_i32(kb, 2)));
    }
    kb_endif(kb);
    nvvm_bar_sync(kb);
    for (int i = 0; i < 3; i++)
        out[i] = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, found, kb_i32(kb, i)));
}

static void load_keys(KB *kb, bool split, V qp, V wp, V kc, V keys, V qs, V ws, V r, V b, V n, V ctx, V tid,
                      int threads, int64_t H, int64_t D, float scale, V hist0)
{
    if (split) {
        V base = kb_mul(kb, kb_to_i64(kb, r), kb_to_i64(kb, ctx)), lane = nvvm_lane(kb);
        V last = kb_sub(kb, n, kb_i32(kb, 1));
        KVar s = kb_for(kb, kb_sub(kb, tid, lane), n, kb_i32(kb, threads * IX_LOAD_UNROLL)); /* warp-uniform */
        {
            V w0 = kb_get(kb, s);
            V idx[IX_LOAD_UNROLL], v[IX_LOAD_UNROLL];
            for (int u = 0; u < IX_LOAD_UNROLL; u++) {
                idx[u] = kb_add(kb, kb_add(kb, w0, lane), kb_i32(kb, u * threads));
                v[u] = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, qp, kb_add(kb, base, kb_to_i64(kb, kb_min(kb, idx[u], last)))));
            }
            for (int u = 0; u < IX_LOAD_UNROLL; u++) {
                V in = kb_lt(kb, idx[u], n);
                kb_if(kb, in);
                kb_store(kb, v[u], kb_gep(kb, kb->i32, keys, idx[u]));
                kb_endif(kb);
                if (hist0)
                    ix_hist_add(kb, hist0, LLVMBuildLShr(kb->b, v[u], kb_i32(kb, 24), ""), in);
            }
        }
        kb_endfor(kb);
    } else if (score2_fits(H, D)) { /* coalesced: a warp per 32 rows at a time (row_keys32) */
        V lane = nvvm_lane(kb), cb = kb_mul(kb, kb_to_i64(kb, b), kb_to_i64(kb, ctx));
        RowLanes rl = row_lanes(kb, qp, wp, kc, cb, r, H, D, scale);
        KVar s = kb_for(kb, kb_sub(kb, tid, lane), n, kb_i32(kb, threads)); /* warp-uniform */
        {
            V sv = kb_add(kb, kb_get(kb, s), lane), key = row_keys32(kb, &rl, kb_get(kb, s), n);
            V in = kb_lt(kb, sv, n);
            kb_if(kb, in);
            kb_store(kb, key, kb_gep(kb, kb->i32, keys, sv));
            kb_endif(kb);
            if (hist0)
                ix_hist_add(kb, hist0, LLVMBuildLShr(kb->b, key, kb_i32(kb, 24), ""), in);
        }
        kb_endfor(kb);
    } else {
        load_query(kb, qp, wp, r, tid, threads, qs, ws, H, D);
        nvvm_bar_sync(kb);
        /* scores → order-preserving u32 keys, a thread per candidate row */
        V cb = kb_mul(kb, kb_to_i64(kb, b), kb_to_i64(kb, ctx));
        KVar s = kb_for(kb, tid, n, kb_i32(kb, threads));
        V sv = kb_get(kb, s);
        V krow = kb_mul(kb, kb_add(kb, cb, kb_to_i64(kb, sv)), kb_i64(kb, D));
        kb_store(kb, score_key(kb, kc, krow, qs, wp ? ws : NULL, H, D, scale), kb_gep(kb, kb->i32, keys, sv));
        kb_endfor(kb);
    }
}

/* The selection a block runs on n candidate keys in shared memory (the
 * radix select and the ordered compaction of emit_topk's header). */
typedef struct SelCore {
    V keys;         /* smem u32 [n]: the candidates' keys */
    V idx;          /* smem i32 [n]: the position written for candidate i; NULL: base + i */
    V base;         /* i32: the position of candidate 0 when idx is NULL */
    V n;            /* i32: candidates */
    int64_t K;      /* how many to keep */
    int64_t width;  /* the row written: K picks, or all n (n <= K) then -1 up to width */
    V dst;          /* global i32 [width]: the row */
    V tid;          /* thread index */
    int threads;    /* threads of the block */
    V hist, found;  /* smem i32 [256], [2] */
    V cnt_gt, cnt_eq; /* smem i32 [warps] each */
    bool hist0;     /* the first pass's histogram is already in hist (load_keys counted it) */
} SelCore;

static V sel_pos(KB *kb, const SelCore *c, V i)
{
    return c->idx ? kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->idx, i)) : kb_add(kb, c->base, i);
}

void ix_select_all(KB *kb, V dst, V n, int64_t width, V tid, int threads)
{
    KVar i = kb_for(kb, tid, kb_i32(kb, (int)width), kb_i32(kb, threads));
    V iv = kb_get(kb, i);
    kb_store(kb, kb_select(kb, kb_lt(kb, iv, n), iv, kb_i32(kb, -1)), kb_gep(kb, kb->i32, dst, kb_to_i64(kb, iv)));
    kb_endfor(kb);
}

/* n <= K: every candidate (positions ascending), then -1 up to width. */
static void select_all(KB *kb, const SelCore *c)
{
    KVar i = kb_for(kb, c->tid, kb_i32(kb, (int)c->width), kb_i32(kb, c->threads));
    V iv = kb_get(kb, i);
    V in = kb_lt(kb, iv, c->n);
    KVar v = kb_var(kb, kb->i32, kb_i32(kb, -1));
    kb_if(kb, in);
    kb_set(kb, v, sel_pos(kb, c, iv));
    kb_endif(kb);
    kb_store(kb, kb_get(kb, v), kb_gep(kb, kb->i32, c->dst, kb_to_i64(kb, iv)));
    kb_endfor(kb);
}

/* n > K (the keys in smem, synced): the K-th largest key T, 8 bits at a time
 * from the top: a 256-bin histogram of the keys that match the digits found
 * so far, then (warp 0) the bin where the count from the top reaches the
 * rank still wanted. What is left of that rank is how many candidates equal
 * to T are taken (`need`). Then the compaction in candidate order: those
 * above T and the first `need` equal to T. Warp w owns the contiguous
 * segment [w·seg, (w+1)·seg) and walks it 32 at a time (ballots, no
 * barriers); one exchange of the warps' counts gives each warp where its
 * picks go. */
void ix_radix_kth(KB *kb, const IxRadix *x, V *out_T, V *out_need)
{
    int bins = 1 << x->bits, bpl = bins / 32; /* bins per lane of warp 0 */
    V tid = x->tid, n = x->n, keys = x->keys, hist = x->hist, found = x->found;
    V lane = nvvm_lane(kb), warp = nvvm_warp(kb);
    V prefix = x->prefix, rem = x->K;
    for (int shift = x->shift0, pass = 0; shift >= 0; shift -= x->bits, pass++) {
        int top = shift + x->bits; /* bits at and above `top` are fixed by the prefix */
        V hi_mask = kb_i32(kb, top >= 32 ? 0 : (int64_t)(int32_t)(0xffffffffu << top));
        if (pass || !x->hist0) { /* pass 0 with hist0: counted already */
            KVar z = kb_for(kb, tid, kb_i32(kb, bins), kb_i32(kb, x->threads));
            kb_store(kb, kb_i32(kb, 0), kb_gep(kb, kb->i32, hist, kb_get(kb, z)));
            kb_endfor(kb);
            nvvm_bar_sync(kb);
            int U = x->unroll > 1 ? x->unroll : 1;
            KVar j = kb_for(kb, tid, n, kb_i32(kb, x->threads * U));
            {
                V idx[16], key[16];
                assert(U <= 16);
                for (int u = 0; u < U; u++) { /* every load first */
                    idx[u] = kb_add(kb, kb_get(kb, j), kb_i32(kb, u * x->threads));
                    key[u] = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, keys, U > 1 ? kb_min(kb, idx[u], kb_sub(kb, n, kb_i32(kb, 1))) : idx[u]));
                }
                for (int u = 0; u < U; u++) {
                    V match = kb_eq(kb, kb_and(kb, key[u], hi_mask), prefix);
                    kb_if(kb, U > 1 ? kb_and(kb, match, kb_lt(kb, idx[u], n)) : match);
                    V dig = kb_and(kb, LLVMBuildLShr(kb->b, key[u], kb_i32(kb, shift), ""), kb_i32(kb, bins - 1));
                    LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, kb_gep(kb, kb->i32, hist, dig), kb_i32(kb, 1),
                                       LLVMAtomicOrderingMonotonic, 0);
                    kb_endif(kb);
                }
            }
            kb_endfor(kb);
            nvvm_bar_sync(kb);
        }
        kb_if(kb, kb_eq(kb, warp, kb_i32(kb, 0)));
        { /* lane l holds bins bins-1-bpl·l down to bins-bpl·(l+1) */
            V base = kb_sub(kb, kb_i32(kb, bins - 1), kb_mul(kb, lane, kb_i32(kb, bpl)));
            V cc[8], sum = kb_i32(kb, 0);
            for (int i = 0; i < bpl; i++) {
                cc[i] = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, hist, kb_sub(kb, base, kb_i32(kb, i))));
                sum = kb_add(kb, sum, cc[i]);
            }
            V inc = kb_to_f32(kb, sum); /* counts <= INDEX_MAX_CTX: exact in f32 */
            for (int o = 1; o < 32; o *= 2) {
                V has = kb_ge(kb, lane, kb_i32(kb, o));
                V up = nvvm_shfl_idx(kb, inc, kb_select(kb, has, kb_sub(kb, lane, kb_i32(kb, o)), lane));
                inc = kb_add(kb, inc, kb_select(kb, has, up, kb_f32(kb, 0)));
            }
            V incl = LLVMBuildFPToSI(kb->b, inc, kb->i32, ""), excl = kb_sub(kb, incl, sum);
            kb_if(kb, kb_and(kb, kb_lt(kb, excl, rem), kb_ge(kb, incl, rem)));
            {
                V acc = excl, dsel = kb_i32(kb, -1), rnew = rem;
                for (int i = 0; i < bpl; i++) {
                    V before = acc;
                    acc = kb_add(kb, acc, cc[i]);
                    V hit = kb_and(kb, kb_lt(kb, dsel, kb_i32(kb, 0)), kb_ge(kb, acc, rem));
                    dsel = kb_select(kb, hit, kb_sub(kb, base, kb_i32(kb, i)), dsel);
                    rnew = kb_select(kb, hit, kb_sub(kb, rem, before), rnew);
                }
                kb_store(kb, dsel, kb_gep(kb, kb->i32, found, kb_i32(kb, 0)));
                kb_store(kb, rnew, kb_gep(kb, kb->i32, found, kb_i32(kb, 1)));
            }
            kb_endif(kb);
        }
        kb_endif(kb);
        nvvm_bar_sync(kb);
        prefix = kb_or(kb, prefix, kb_shl(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, found, kb_i32(kb, 0))), kb_i32(kb, shift)));
        rem = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, found, kb_i32(kb, 1)));
    }
    *out_T = prefix;
    *out_need = rem;
}

static void select_topk(KB *kb, const SelCore *c)
{
    IxRadix rx = {.keys = c->keys, .n = c->n, .K = kb_i32(kb, c->K), .tid = c->tid, .threads = c->threads,
                  .hist = c->hist, .found = c->found, .bits = 8, .shift0 = 24, .prefix = kb_i32(kb, 0),
                  .hist0 = c->hist0};
    V T, need;
    ix_radix_kth(kb, &rx, &T, &need);
    IxCompact cp = {.keys = c->keys, .idx = c->idx, .base = c->base, .lo = kb_i32(kb, 0), .hi = c->n, .n = c->n,
                    .T = T, .need = need, .at0 = kb_i32(kb, 0), .dst = c->dst, .cnt_gt = c->cnt_gt,
                    .cnt_eq = c->cnt_eq, .threads = c->threads};
    ix_compact(kb, &cp);
}

void ix_compact(KB *kb, const IxCompact *c)
{
    int warps = c->threads / 32;
    V lane = nvvm_lane(kb), warp = nvvm_warp(kb), lt = nvvm_lanemask_lt(kb), T = c->T, need = c->need;
    V len = kb_max(kb, kb_sub(kb, c->hi, c->lo), kb_i32(kb, 0)), last = kb_sub(kb, c->n, kb_i32(kb, 1));
    V seg = kb_mul(kb, kb_div(kb, kb_add(kb, len, kb_i32(kb, 32 * warps - 1)), kb_i32(kb, 32 * warps)), kb_i32(kb, 32));
    V lo = kb_add(kb, c->lo, kb_mul(kb, warp, seg)), hi = kb_min(kb, kb_add(kb, lo, seg), c->hi);
    KVar wgt = kb_var(kb, kb->i32, kb_i32(kb, 0)), weq = kb_var(kb, kb->i32, kb_i32(kb, 0));
    KVar c1 = kb_for(kb, lo, hi, kb_i32(kb, 32));
    {
        V sv = kb_add(kb, kb_get(kb, c1), lane);
        V inb = kb_lt(kb, sv, hi);
        V key = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->keys, kb_min(kb, sv, last)));
        kb_set(kb, wgt, kb_add(kb, kb_get(kb, wgt), nvvm_popc(kb, nvvm_ballot(kb, kb_and(kb, inb, ix_ugt(kb, key, T))))));
        kb_set(kb, weq, kb_add(kb, kb_get(kb, weq), nvvm_popc(kb, nvvm_ballot(kb, kb_and(kb, inb, kb_eq(kb, key, T))))));
    }
    kb_endfor(kb);
    kb_if(kb, kb_eq(kb, lane, kb_i32(kb, 0)));
    kb_store(kb, kb_get(kb, wgt), kb_gep(kb, kb->i32, c->cnt_gt, warp));
    kb_store(kb, kb_get(kb, weq), kb_gep(kb, kb->i32, c->cnt_eq, warp));
    kb_endif(kb);
    nvvm_bar_sync(kb);
    V gt_before = kb_i32(kb, 0), eq_before = kb_i32(kb, 0);
    for (int w = 0; w < warps; w++) {
        V before = kb_lt(kb, kb_i32(kb, w), warp);
        gt_before = kb_add(kb, gt_before, kb_select(kb, before, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->cnt_gt, kb_i32(kb, w))), kb_i32(kb, 0)));
        eq_before = kb_add(kb, eq_before, kb_select(kb, before, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->cnt_eq, kb_i32(kb, w))), kb_i32(kb, 0)));
    }
    KVar run_sel = kb_var(kb, kb->i32, kb_add(kb, c->at0, kb_add(kb, gt_before, kb_min(kb, eq_before, need))));
    KVar run_eq = kb_var(kb, kb->i32, eq_before);
    KVar c0 = kb_for(kb, lo, hi, kb_i32(kb, 32));
    {
        V sv = kb_add(kb, kb_get(kb, c0), lane);
        V inb = kb_lt(kb, sv, hi);
        V key = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->keys, kb_min(kb, sv, last)));
        V isgt = kb_and(kb, inb, ix_ugt(kb, key, T)), iseq = kb_and(kb, inb, kb_eq(kb, key, T));
        V eqm = nvvm_ballot(kb, iseq);
        V eq_rank = kb_add(kb, kb_get(kb, run_eq), nvvm_popc(kb, kb_and(kb, eqm, lt)));
        V take = kb_or(kb, isgt, kb_and(kb, iseq, kb_lt(kb, eq_rank, need)));
        V tm = nvvm_ballot(kb, take);
        V at = kb_add(kb, kb_get(kb, run_sel), nvvm_popc(kb, kb_and(kb, tm, lt)));
        kb_if(kb, take);
        V pos = c->idx ? kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->idx, sv)) : kb_add(kb, c->base, sv);
        kb_store(kb, pos, kb_gep(kb, kb->i32, c->dst, kb_to_i64(kb, at)));
        kb_endif(kb);
        kb_set(kb, run_sel, kb_add(kb, kb_get(kb, run_sel), nvvm_popc(kb, tm)));
        kb_set(kb, run_eq, kb_add(kb, kb_get(kb, run_eq), nvvm_popc(kb, eqm)));
    }
    kb_endfor(kb);
}

/* index_topk (fused: scores computed here) or index_select (split: the keys
 * index_score left in the scratch, args q → keys, no w). Rows of sel are
 * K + W wide: the top K (adaptive: the fewest of them reaching the mass),
 * then the window joins them (ix_adaptive, ix_window). */
static bool emit_topk(Codegen *cg, int64_t H, int64_t D, bool lightning, float scale, const Sel *sl, bool split,
                      int threads, char **ptx, Diag *d)
{
    int64_t K = sl->K, Kt = sl->K + sl->W;
    bool adaptive = sl->p < 1.0f;
    int warps = threads / 32;
    /* smem (topk_smem below): keys u32 [INDEX_MAX_CTX] | q f32 [H*D] | w f32 [H] |
     * per-warp counts i32 [2][warps] | histogram i32 [256] | found digit, rank i32 [2] */
    int o_keys = 0, o_q = 4 * INDEX_MAX_CTX, o_w = o_q + 4 * (int)(H * D), o_cnt = o_w + 4 * (int)H;
    int o_hist = o_cnt + 8 * warps, o_found = o_hist + 4 * 256;
    KParamKind pk[8] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32};
    int np = 7;
    if (lightning && !split)
        pk[np++] = KP_PTR;
    KB *kb = kb_new(cg->ctx, split ? "index_select" : "index_topk", pk, np, threads);
    V qp = kb_param(kb, 0), kc = kb_param(kb, 1), posp = kb_param(kb, 2), selp = kb_param(kb, 3);
    V seq = kb_param(kb, 4), ctx = kb_param(kb, 5), rows = kb_param(kb, 6);
    V wp = lightning && !split ? kb_param(kb, 7) : NULL;
    V r = nvvm_ctaid_x(kb), tid = nvvm_tid_x(kb);
    V keys = kb_smem(kb, kb_i32(kb, o_keys)), qs = kb_smem(kb, kb_i32(kb, o_q)), ws = kb_smem(kb, kb_i32(kb, o_w));
    V cnt_gt = kb_smem(kb, kb_i32(kb, o_cnt)), cnt_eq = kb_smem(kb, kb_i32(kb, o_cnt + 4 * warps));
    V hist = kb_smem(kb, kb_i32(kb, o_hist)), found = kb_smem(kb, kb_i32(kb, o_found));
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V b = kb_div(kb, r, seq), t = kb_rem(kb, r, seq);
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t);
        V n = kb_min(kb, kb_add(kb, p, kb_i32(kb, 1)), kb_min(kb, ctx, kb_i32(kb, INDEX_MAX_CTX))); /* candidates */
        V out = kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, Kt));
        SelCore core = {.keys = keys, .idx = NULL, .base = kb_i32(kb, 0), .n = n, .K = K, .width = Kt,
                        .dst = kb_gep(kb, kb->i32, selp, out), .tid = tid, .threads = threads, .hist = hist,
                        .found = found, .cnt_gt = cnt_gt, .cnt_eq = cnt_eq};
        if (adaptive) { /* the softmax needs every candidate's score, selected or not */
            load_keys(kb, split, qp, wp, kc, keys, qs, ws, r, b, n, ctx, tid, threads, H, D, scale, NULL);
            nvvm_bar_sync(kb);
        }
        kb_if(kb, kb_le(kb, n, kb_i32(kb, K)));
        select_all(kb, &core); /* fewer than k candidates: all of them, then -1 */
        kb_else(kb);
        if (!adaptive) {
            core.hist0 = split || score2_fits(H, D); /* the first radix pass counted while the keys load */
            if (core.hist0) {
                KVar z = kb_for(kb, tid, kb_i32(kb, 256), kb_i32(kb, threads));
                kb_store(kb, kb_i32(kb, 0), kb_gep(kb, kb->i32, hist, kb_get(kb, z)));
                kb_endfor(kb);
                nvvm_bar_sync(kb);
            }
            load_keys(kb, split, qp, wp, kc, keys, qs, ws, r, b, n, ctx, tid, threads, H, D, scale, core.hist0 ? hist : NULL);
        }
        nvvm_bar_sync(kb);
        select_topk(kb, &core);
        kb_endif(kb);
        if (adaptive || sl->W) {
            nvvm_bar_sync(kb); /* the top-k part of sel (global) and the counts in smem are read next */
            if (adaptive)
                ix_adaptive(kb, sl, keys, selp, out, n, tid, threads, cnt_gt, cnt_eq);
            if (sl->W)
                ix_window(kb, sl, selp, out, p, n);
        }
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* Select 3's two launches (k_index_seg.c) after index_score2: grid segs ×
 * rows each, the keys in the scratch and the segments' area after them. */
static bool emit_seg_select(const Node *n, int64_t K, int segs, int cands, Codegen *cg, KOut *out, Diag *d)
{
    SymExpr rows = node_rows_expr(n), seq_e = n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n);
    SymExpr area = sym_mono(MONO_BC, 4); /* bytes: after the keys, [rows, ctx] u32 */
    char name[96];
    for (int w = 0; w < 2; w++) {
        snprintf(name, sizeof name, "index_seg_%s_k%lld_s%d_c%d", w ? "write" : "count", (long long)K, segs, cands);
        KLaunch *l = kout_add(out, name, 256, w ? ix_seg_write_smem(segs, cands) : ix_seg_count_smem());
        kl_param(l, "max_ctx", INDEX_MAX_CTX);
        l->grid[0] = sym_const(segs);
        l->grid[1] = rows;
        /* cost: count reads the histogram and the keys, writes T's keys (at most the keys); write reads the
         * keys and the candidates again and writes the row */
        l->flops = sym_const(0);
        l->bytes = w ? sym_add(sym_scale(rows, 4 * K), sym_mono(MONO_BC, 4)) : sym_add(sym_scale(rows, 4 * IX_HIST_BINS), sym_mono(MONO_BC, 4));
        kl_arg_scratch(l);
        kl_arg_scratch_at(l, area);
        kl_arg_src(l, 3);
        kl_arg_state(l, "hist", 4 * IX_HIST_BINS);
        if (w)
            kl_arg_out(l);
        kl_arg_i32(l, seq_e);
        kl_arg_i32(l, sym_mono(MONO_C, 1));
        kl_arg_i32(l, rows);
        if (!(w ? ix_emit_seg_write(cg, K, segs, cands, &l->ptx, d) : ix_emit_seg_count(cg, K, segs, cands, &l->ptx, d)))
            return false;
    }
    return true;
}

bool k_index_topk(Codegen *cg, const Node *n, KOut *out, Diag *d)
{
    int64_t H = node_int(n, "heads", 1), D = node_int(n, "dim", 8), K = node_int(n, "k", 1);
    Sel sl = {K, node_int(n, "window", 0), (float)node_float(n, "p", 1.0)};
    int64_t Kt = sl.K + sl.W; /* sel row width */
    if (Kt > (1 << 24) || (sl.p < 1.0f && !(sl.p > 0)))
        return diag_fail(d, "index_topk: k + window %lld or p %g out of range", (long long)Kt, (double)sl.p);
    bool lightning = !strcmp(node_str(n, "kind", "dot"), "lightning");
    if (D % 8)
        return diag_fail(d, "index_topk: dim %lld must be a multiple of 8", (long long)D);
    SymExpr rows = node_rows_expr(n), seq_e = n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n);
    /* decode with a scratch (lower.c): split over blocks per query, index_score
     * (all SMs stream the cache) then index_select on the stored keys; the
     * coalesced index_score (score2_fits) also appends the step's key */
    bool step = !n->dim[1].sym && n->dim[1].n == 1;
    bool split = step && node_str(n, "scratch", NULL);
    bool fold = split && score2_fits(H, D);
    /* the select (decode): 0 the keys into smem and 4 radix passes over them; 1 one pass over the stored
     * keys after a top-bit histogram counted by the select, 2 by index_score2 (needs fold; else 1); 3 that
     * histogram and the keys split over `segs` blocks a query (k_index_seg.c; needs fold and a plain top-k,
     * else 0) */
    int64_t smode = node_int(n, "select", 0), cands = node_int(n, "cands", IX_SELECT_CANDS);
    int64_t segs = node_int(n, "segs", 4);
    if (smode < 0 || smode > 3 || cands < 1 || cands > IX_SELECT_CANDS || segs < 1 || segs > INDEX_SEG_MAX)
        return diag_fail(d, "index_topk: select %lld (0..3), cands %lld (1..%d) or segs %lld (1..%d) out of range",
                         (long long)smode, (long long)cands, IX_SELECT_CANDS, (long long)segs, INDEX_SEG_MAX);
    bool plain = sl.p >= 1.0f && !sl.W;
    int mode = !split ? 0 : smode == 3 ? (fold && plain ? 3 : 0) : smode == 2 && !fold ? 1 : (int)smode;
    bool hist = mode == 2 || mode == 3; /* index_score2 counts the keys' top bits */
    const char *kind = lightning ? "lightning" : "dot";
    float scale = (float)node_float(n, "scale", 1.0);
    char name[96];
    if (!fold) {
        snprintf(name, sizeof name, "index_append_d%lld", (long long)D);
        KLaunch *a = kout_add(out, name, 128, 0);
        a->grid[0] = rows;
        a->bytes = sym_scale(rows, 4 * D);
        kl_arg_src(a, 1);
        kl_arg_src(a, 2);
        kl_arg_src(a, 3);
        kl_arg_i32(a, rows);
        kl_arg_i32(a, seq_e);
        kl_arg_i32(a, sym_mono(MONO_C, 1));
        if (!emit_cache_append(cg, "index_append", 1, &D, &a->ptx, d))
            return false;
    }
    if (split) {
        snprintf(name, sizeof name, "index_score%s_h%lld_d%lld_%s", fold ? "2" : "", (long long)H, (long long)D, kind);
        KLaunch *sc = kout_add(out, name, IX_THREADS, fold ? (hist ? 4 * IX_HIST_BINS : 0) : (unsigned)(4 * H * D + 4 * H));
        sc->grid[0] = sym_ceildiv(sym_mono(MONO_C, 1), fold ? IX_SCORE_ROWS : IX_THREADS);
        sc->grid[1] = rows;
        /* cost: ctx keys per query scored (a dot per head, plus the weighting), bf16 key rows read, u32 keys
         * written; fold: the step's key row read and appended too */
        sc->flops = sym_mono(MONO_BC, 2 * H * D + 2 * H);
        sc->bytes = sym_add(sym_scale(rows, 2 * H * D + 4 * H + (fold ? 4 * D : 0)), sym_mono(MONO_BC, 2 * D + 4));
        kl_arg_src(sc, 0);
        if (fold)
            kl_arg_src(sc, 1);
        kl_arg_src(sc, 2);
        kl_arg_src(sc, 3);
        kl_arg_scratch(sc);
        kl_arg_i32(sc, seq_e);
        kl_arg_i32(sc, sym_mono(MONO_C, 1));
        kl_arg_i32(sc, rows);
        if (lightning)
            kl_arg_src(sc, 4);
        if (hist) /* the keys' top-bit histogram, per query */
            kl_arg_state(sc, "hist", 4 * IX_HIST_BINS);
        if (!(fold ? emit_score2(cg, H, D, lightning, scale, hist, &sc->ptx, d)
                   : emit_score(cg, H, D, lightning, scale, &sc->ptx, d)))
            return false;
    }
    if (mode == 3)
        return emit_seg_select(n, K, (int)segs, (int)(cands < INDEX_SEG_CANDS ? cands : INDEX_SEG_CANDS), cg, out, d);
    char extra[48] = "";
    if (sl.p < 1.0f || sl.W) /* adaptive mass as its f32 bits: names stay exact and short */
        snprintf(extra, sizeof extra, "_w%lld_p%08x", (long long)sl.W, sl.p < 1.0f ? f32_bits(sl.p) : 0u);
    snprintf(name, sizeof name, "%s_h%lld_d%lld_k%lld%s_%s", !split ? "index_topk" : mode == 2 ? "index_select2" : mode ? "index_select1" : "index_select", (long long)H,
             (long long)D, (long long)K, extra, kind);
    int threads = split ? IX_SELECT_THREADS : topk_threads(n, H);
    if (threads != 256 && threads != 512 && threads != 1024)
        return diag_fail(d, "index_topk: threads %d (256, 512 or 1024)", threads);
    unsigned smem = mode ? ix_select1_smem((int)cands) : topk_smem(H, D, threads);
    KLaunch *l = kout_add(out, name, (unsigned)threads, smem);
    kl_param(l, "max_ctx", INDEX_MAX_CTX);
    l->grid[0] = rows;
    /* cost (docs/kernels.md): a decode step scores ctx keys (a dot per head,
     * 2 flops per element, plus the head weighting); a prefill call reads
     * each key row once (bf16), its B*S*ctx flops beyond the linear model.
     * Per query: q (bf16), the head weights (f32) and the K indices. Split:
     * the select reads the stored u32 keys instead. */
    if (split) {
        l->flops = sym_const(0);
        l->bytes = sym_add(sym_scale(rows, 4 * Kt + (mode == 2 ? 8 * IX_HIST_BINS : 0)), sym_mono(MONO_BC, 4));
        kl_arg_scratch(l);
    } else {
        l->flops = step ? sym_mono(MONO_BC, 2 * H * D + 2 * H) : sym_const(0);
        l->bytes = sym_add(sym_scale(rows, 2 * H * D + 4 * H + 4 * Kt), sym_mono(MONO_BC, 2 * D));
        kl_arg_src(l, 0);
    }
    kl_arg_src(l, 2);
    kl_arg_src(l, 3);
    kl_arg_out(l);
    kl_arg_i32(l, seq_e);
    kl_arg_i32(l, sym_mono(MONO_C, 1));
    kl_arg_i32(l, rows);
    if (lightning && !split)
        kl_arg_src(l, 4);
    if (mode == 2)
        kl_arg_state(l, "hist", 4 * IX_HIST_BINS);
    if (mode)
        return ix_emit_select1(cg, H, D, &sl, mode, (int)cands, &l->ptx, d);
    return emit_topk(cg, H, D, lightning, scale, &sl, split, threads, &l->ptx, d);
}
