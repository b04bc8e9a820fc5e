/* k_index_seg.c — index_select split over segments of each query's keys
 * (decode, schedule select 3 of index_topk; k_index.c has the rest).
 *
 * Selects 0 to 2 give each query one 1024-thread block: at batch 64 the
 * selection runs on 64 of the H100's 132 SMs, and its time (30 µs for 32768
 * keys a query) is that block's own instruction stream. Select 3 splits
 * query r's n keys (u32, order-preserving, in the scratch row index_score2
 * left) into S contiguous segments of L = ceil(n / 32S)·32 keys (schedule
 * `segs`) and runs two launches of S × rows blocks of SG_THREADS:
 *
 *   index_seg_count  the bin T of the keys' top 11 bits where the count from
 *                    the top reaches k, from the histogram index_score2
 *                    counted into the node's state `hist` (as select 2), and
 *                    how many of T's keys are wanted (rem); one pass over
 *                    the block's segment counts its keys above T (ballots)
 *                    and appends T's keys to the segment's candidate list in
 *                    the scratch area (at most `cands`; the count is exact).
 *                    Block 0 stores T and rem.
 *   index_seg_write  each block ranks the candidates of all segments in
 *                    shared memory (7-bit radix digits over the low 21 bits:
 *                    the rem-th largest key T*, and how many keys equal to
 *                    it are taken, need), counts the picks of the segments
 *                    before its own (their keys above T, their candidates
 *                    above T*, and the first `need` ties overall), and
 *                    writes its segment's picks in index order from there
 *                    (ix_compact, the segment's keys staged in shared
 *                    memory first: walked from global memory, one load a
 *                    warp at a time, the two passes took 24 µs). Should any segment hold more of T's keys
 *                    than `cands` (ties, a narrow score distribution), the
 *                    blocks rank T's keys over the whole row instead and
 *                    count the segments before theirs by a pass over it.
 *                    Block 0 zeroes the histogram row for the next step.
 *
 * The row equals select 0's: the K largest keys, ties to the lower position,
 * in index order; n <= K keys: all of them, then -1. Plain top-k only
 * (k_index.c falls back to select 0 for adaptive mass or a window).
 *
 * Scratch area of query r (INDEX_SEG_AREA bytes at 4·rows·ctx + r·AREA),
 * i32 words: [0] T, [1] rem, then segment s at 4 + s·(4 + INDEX_SEG_CANDS):
 * its count above T, its count in T, 2 spare, its candidates' keys. */
#include <assert.h>

#include "k_index.h"
#include "passes.h"

enum { SG_THREADS = 256, SG_WARPS = SG_THREADS / 32, SG_UNROLL = 16, SG_REC = 4 + INDEX_SEG_CANDS };

/* index_seg_count's shared memory (the histogram is read from the state
 * into registers): scan i32 [SG_WARPS] | found i32 [4] | candidate count,
 * count above T i32 [2]. */
enum { C_TMP = 0, C_FOUND = C_TMP + 4 * SG_WARPS, C_CNT = C_FOUND + 16, C_END = C_CNT + 8 };
/* index_seg_write's: per-warp counts i32 [2][SG_WARPS] | counters i32 [2] |
 * found i32 [4] | hist i32 [128] | candidate keys u32 [segs · cands] | the
 * segment's keys u32 [seg_max(segs)]. */
enum { W_CNTW = 0, W_CTR = 8 * SG_WARPS, W_FOUND = W_CTR + 16, W_HIST = W_FOUND + 16, W_CAND = W_HIST + 4 * 128 };

/* The longest segment: L = ceil(n / 32·segs)·32 keys at n = INDEX_MAX_CTX. */
static int seg_max(int segs) { return (INDEX_MAX_CTX + 32 * segs - 1) / (32 * segs) * 32; }

unsigned ix_seg_count_smem(void) { return C_END; }
unsigned ix_seg_write_smem(int segs, int cands) { return (unsigned)(W_CAND + 4 * segs * cands + 4 * seg_max(segs)); }

static V ld(KB *kb, V p, V i) { return kb_load(kb, kb->i32, kb_gep(kb, kb->i32, p, i)); }
static void st(KB *kb, V v, V p, V i) { kb_store(kb, v, kb_gep(kb, kb->i32, p, i)); }

/* What both launches know of their block: query r's keys and area, its
 * candidate count n and segment [lo, hi). */
typedef struct SegBlock {
    V r, s, tid;     /* query (grid y), segment (grid x), thread */
    V n;             /* i32: the query's keys, min(pos + 1, ctx, INDEX_MAX_CTX) */
    V keys;          /* global u32 [n]: its row of the scratch */
    V area;          /* global i32 [INDEX_SEG_AREA / 4]: its area */
    V histrow;       /* global i32 [IX_HIST_BINS]: its row of the histogram state */
    V lo, hi;        /* i32: the segment, lo <= hi */
} SegBlock;

static SegBlock seg_block(KB *kb, V keysp, V areap, V posp, V histp, V seq, V ctx, int segs)
{
    SegBlock b = {.r = nvvm_ctaid_y(kb), .s = nvvm_ctaid_x(kb), .tid = nvvm_tid_x(kb)};
    V q = kb_div(kb, b.r, seq), t = kb_rem(kb, b.r, seq);
    V p = kb_add(kb, ld(kb, posp, q), t);
    b.n = kb_min(kb, kb_add(kb, p, kb_i32(kb, 1)), kb_min(kb, ctx, kb_i32(kb, INDEX_MAX_CTX)));
    b.keys = kb_gep(kb, kb->i32, keysp, kb_mul(kb, kb_to_i64(kb, b.r), kb_to_i64(kb, ctx)));
    b.area = kb_gep(kb, kb->i32, areap, kb_mul(kb, kb_to_i64(kb, b.r), kb_i64(kb, INDEX_SEG_AREA / 4)));
    b.histrow = kb_gep(kb, kb->i32, histp, kb_mul(kb, kb_to_i64(kb, b.r), kb_i64(kb, IX_HIST_BINS)));
    V L = kb_mul(kb, kb_div(kb, kb_add(kb, b.n, kb_i32(kb, 32 * segs - 1)), kb_i32(kb, 32 * segs)), kb_i32(kb, 32));
    b.lo = kb_min(kb, kb_mul(kb, b.s, L), b.n);
    b.hi = kb_min(kb, kb_add(kb, b.lo, L), b.n);
    return b;
}

/* Segment s's record in the area: [0] count above T, [1] count in T, [4..] keys. */
static V seg_rec(KB *kb, V area, V s) { return kb_gep(kb, kb->i32, area, kb_add(kb, kb_i32(kb, 4), kb_mul(kb, s, kb_i32(kb, SG_REC)))); }

bool ix_emit_seg_count(Codegen *cg, int64_t K, int segs, int cands, char **ptx, Diag *d)
{
    KParamKind pk[7] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32};
    KB *kb = kb_new(cg->ctx, "index_seg_count", pk, 7, SG_THREADS);
    V rows = kb_param(kb, 6), zero = kb_i32(kb, 0);
    V tmp = kb_smem(kb, kb_i32(kb, C_TMP));
    V found = kb_smem(kb, kb_i32(kb, C_FOUND)), cnt = kb_smem(kb, kb_i32(kb, C_CNT));
    kb_if(kb, kb_lt(kb, nvvm_ctaid_y(kb), rows));
    {
        SegBlock b = seg_block(kb, kb_param(kb, 0), kb_param(kb, 1), kb_param(kb, 2), kb_param(kb, 3), kb_param(kb, 4),
                               kb_param(kb, 5), segs);
        V tid = b.tid, lane = nvvm_lane(kb), warp = nvvm_warp(kb);
        kb_if(kb, kb_gt(kb, b.n, kb_i32(kb, (int)K))); /* n <= K: index_seg_write takes every key */
        {
            kb_if(kb, kb_eq(kb, tid, zero)); /* the counters, before the barriers below */
            st(kb, zero, cnt, zero);
            st(kb, zero, cnt, kb_i32(kb, 1));
            kb_endif(kb);
            /* the bin T of the histogram where the count from the top reaches K, and how many of its keys */
            V f[3];
            ix_find_bin(kb, b.histrow, IX_HIST_BINS, kb_i32(kb, (int)K), tid, SG_THREADS, tmp, found, f);
            V T = f[0];
            V rec = seg_rec(kb, b.area, b.s), ck = kb_gep(kb, kb->i32, rec, kb_i32(kb, 4));
            /* one pass over the segment: chunk c of 32 keys at lo + 32c; warp w takes chunks w·U .. w·U+U-1,
             * then the next SG_WARPS·U */
            V nch = kb_div(kb, kb_add(kb, kb_sub(kb, b.hi, b.lo), kb_i32(kb, 31)), kb_i32(kb, 32));
            V last = kb_sub(kb, b.n, kb_i32(kb, 1)), lt = nvvm_lanemask_lt(kb);
            KVar gt = kb_var(kb, kb->i32, zero);
            KVar c = kb_for(kb, kb_mul(kb, warp, kb_i32(kb, SG_UNROLL)), nch, kb_i32(kb, SG_WARPS * SG_UNROLL));
            {
                V j[SG_UNROLL], key[SG_UNROLL];
                for (int u = 0; u < SG_UNROLL; u++) { /* every load first */
                    j[u] = kb_add(kb, kb_add(kb, b.lo, kb_mul(kb, kb_add(kb, kb_get(kb, c), kb_i32(kb, u)), kb_i32(kb, 32))), lane);
                    key[u] = ld(kb, b.keys, kb_min(kb, j[u], last));
                }
                for (int u = 0; u < SG_UNROLL; u++) {
                    V in = kb_lt(kb, j[u], b.hi), bin = LLVMBuildLShr(kb->b, key[u], kb_i32(kb, 32 - IX_HIST_BITS), "");
                    kb_set(kb, gt, kb_add(kb, kb_get(kb, gt), nvvm_popc(kb, nvvm_ballot(kb, kb_and(kb, in, kb_gt(kb, bin, T))))));
                    V grp = kb_and(kb, in, kb_eq(kb, bin, T)), gm = nvvm_ballot(kb, grp);
                    kb_if(kb, kb_ne(kb, gm, zero)); /* warp-uniform */
                    {
                        KVar base = kb_var(kb, kb->i32, zero);
                        kb_if(kb, kb_eq(kb, lane, zero));
                        kb_set(kb, base, LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, cnt, nvvm_popc(kb, gm),
                                                            LLVMAtomicOrderingMonotonic, 0));
                        kb_endif(kb);
                        V at = kb_add(kb, ix_shfl_i32(kb, kb_get(kb, base), zero), nvvm_popc(kb, kb_and(kb, gm, lt)));
                        kb_if(kb, kb_and(kb, grp, kb_lt(kb, at, kb_i32(kb, cands))));
                        st(kb, key[u], ck, at);
                        kb_endif(kb);
                    }
                    kb_endif(kb);
                }
            }
            kb_endfor(kb);
            kb_if(kb, kb_eq(kb, lane, zero));
            LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, kb_gep(kb, kb->i32, cnt, kb_i32(kb, 1)), kb_get(kb, gt),
                               LLVMAtomicOrderingMonotonic, 0);
            kb_endif(kb);
            nvvm_bar_sync(kb);
            kb_if(kb, kb_eq(kb, tid, zero));
            {
                st(kb, ld(kb, cnt, kb_i32(kb, 1)), rec, zero);
                st(kb, ld(kb, cnt, zero), rec, kb_i32(kb, 1));
                kb_if(kb, kb_eq(kb, b.s, zero));
                st(kb, T, b.area, zero);
                st(kb, f[1], b.area, kb_i32(kb, 1));
                kb_endif(kb);
            }
            kb_endif(kb);
        }
        kb_endif(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

/* Adds to the block's counters ctr[0], ctr[1] (smem, zeroed and synced) how
 * many of keys[0 .. m) are above Ts and equal to it (ballots per warp, one
 * shared atomic per warp and counter; `unroll` loads a warp in flight). */
static void count_around(KB *kb, V keys, V m, V Ts, V ctr, int unroll)
{
    V lane = nvvm_lane(kb), zero = kb_i32(kb, 0), last = kb_sub(kb, m, kb_i32(kb, 1));
    KVar gt = kb_var(kb, kb->i32, zero), eq = kb_var(kb, kb->i32, zero);
    KVar i = kb_for(kb, kb_mul(kb, nvvm_warp(kb), kb_i32(kb, 32)), m, kb_i32(kb, SG_THREADS * unroll)); /* warp-uniform */
    {
        V iv[SG_UNROLL], key[SG_UNROLL];
        assert(unroll <= SG_UNROLL);
        for (int u = 0; u < unroll; u++) {
            iv[u] = kb_add(kb, kb_add(kb, kb_get(kb, i), lane), kb_i32(kb, u * SG_THREADS));
            key[u] = ld(kb, keys, kb_min(kb, iv[u], last));
        }
        for (int u = 0; u < unroll; u++) {
            V in = kb_lt(kb, iv[u], m);
            kb_set(kb, gt, kb_add(kb, kb_get(kb, gt), nvvm_popc(kb, nvvm_ballot(kb, kb_and(kb, in, ix_ugt(kb, key[u], Ts))))));
            kb_set(kb, eq, kb_add(kb, kb_get(kb, eq), nvvm_popc(kb, nvvm_ballot(kb, kb_and(kb, in, kb_eq(kb, key[u], Ts))))));
        }
    }
    kb_endfor(kb);
    kb_if(kb, kb_eq(kb, lane, zero));
    LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, ctr, kb_get(kb, gt), LLVMAtomicOrderingMonotonic, 0);
    LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, kb_gep(kb, kb->i32, ctr, kb_i32(kb, 1)), kb_get(kb, eq),
                       LLVMAtomicOrderingMonotonic, 0);
    kb_endif(kb);
}

/* The block's segment of keys into smem u32 [hi - lo] (SG_UNROLL loads a
 * warp in flight; synced by the barriers that follow). */
static void stage_segment(KB *kb, const SegBlock *b, V segk)
{
    V lane = nvvm_lane(kb), last = kb_sub(kb, b->n, kb_i32(kb, 1));
    V nch = kb_div(kb, kb_add(kb, kb_sub(kb, b->hi, b->lo), kb_i32(kb, 31)), kb_i32(kb, 32));
    KVar c = kb_for(kb, kb_mul(kb, nvvm_warp(kb), kb_i32(kb, SG_UNROLL)), nch, kb_i32(kb, SG_WARPS * SG_UNROLL));
    {
        V i[SG_UNROLL], key[SG_UNROLL];
        for (int u = 0; u < SG_UNROLL; u++) {
            i[u] = kb_add(kb, kb_mul(kb, kb_add(kb, kb_get(kb, c), kb_i32(kb, u)), kb_i32(kb, 32)), lane);
            key[u] = ld(kb, b->keys, kb_min(kb, kb_add(kb, b->lo, i[u]), last));
        }
        for (int u = 0; u < SG_UNROLL; u++) {
            kb_if(kb, kb_lt(kb, kb_add(kb, b->lo, i[u]), b->hi));
            st(kb, key[u], segk, i[u]);
            kb_endif(kb);
        }
    }
    kb_endfor(kb);
}

bool ix_emit_seg_write(Codegen *cg, int64_t K, int segs, int cands, char **ptx, Diag *d)
{
    KParamKind pk[8] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32};
    KB *kb = kb_new(cg->ctx, "index_seg_write", pk, 8, SG_THREADS);
    V selp = kb_param(kb, 4), rows = kb_param(kb, 7), zero = kb_i32(kb, 0);
    V cntw = kb_smem(kb, kb_i32(kb, W_CNTW)), ctr = kb_smem(kb, kb_i32(kb, W_CTR));
    V found = kb_smem(kb, kb_i32(kb, W_FOUND)), hist = kb_smem(kb, kb_i32(kb, W_HIST));
    V cand = kb_smem(kb, kb_i32(kb, W_CAND)), segk = kb_smem(kb, kb_i32(kb, W_CAND + 4 * segs * cands));
    kb_if(kb, kb_lt(kb, nvvm_ctaid_y(kb), rows));
    {
        SegBlock b = seg_block(kb, kb_param(kb, 0), kb_param(kb, 1), kb_param(kb, 2), kb_param(kb, 3), kb_param(kb, 5),
                               kb_param(kb, 6), segs);
        V tid = b.tid;
        V dst = kb_gep(kb, kb->i32, selp, kb_mul(kb, kb_to_i64(kb, b.r), kb_i64(kb, K)));
        kb_if(kb, kb_eq(kb, b.s, zero)); /* index_seg_count has read the histogram: zero it for the next step */
        {
            KVar z = kb_for(kb, tid, kb_i32(kb, IX_HIST_BINS), kb_i32(kb, SG_THREADS));
            st(kb, zero, b.histrow, kb_get(kb, z));
            kb_endfor(kb);
        }
        kb_endif(kb);
        kb_if(kb, kb_le(kb, b.n, kb_i32(kb, (int)K)));
        { /* every key, then -1: block s writes slots [s·per, (s+1)·per) */
            int64_t per = (K + segs - 1) / segs;
            V s0 = kb_mul(kb, b.s, kb_i32(kb, (int)per));
            KVar i = kb_for(kb, kb_add(kb, s0, tid), kb_min(kb, kb_add(kb, s0, kb_i32(kb, (int)per)), kb_i32(kb, (int)K)),
                            kb_i32(kb, SG_THREADS));
            V iv = kb_get(kb, i);
            st(kb, kb_select(kb, kb_lt(kb, iv, b.n), iv, kb_i32(kb, -1)), dst, iv);
            kb_endfor(kb);
        }
        kb_else(kb);
        {
            stage_segment(kb, &b, segk);
            V T = ld(kb, b.area, zero), rem = ld(kb, b.area, kb_i32(kb, 1));
            /* the segments' counts: how many of T's keys there are, and before this block's segment */
            V total = zero, off = zero, gt_seg = zero, over = kb_i32(kb, 0);
            V ceq[INDEX_SEG_MAX];
            for (int s = 0; s < segs; s++) {
                V rec = seg_rec(kb, b.area, kb_i32(kb, s)), before = kb_lt(kb, kb_i32(kb, s), b.s);
                ceq[s] = ld(kb, rec, kb_i32(kb, 1));
                total = kb_add(kb, total, ceq[s]);
                off = kb_add(kb, off, kb_select(kb, before, ceq[s], zero));
                gt_seg = kb_add(kb, gt_seg, kb_select(kb, before, ld(kb, rec, zero), zero));
                over = kb_or(kb, over, kb_select(kb, kb_gt(kb, ceq[s], kb_i32(kb, cands)), kb_i32(kb, 1), zero));
            }
            kb_if(kb, kb_eq(kb, tid, zero));
            st(kb, zero, ctr, zero);
            st(kb, zero, ctr, kb_i32(kb, 1));
            kb_endif(kb);
            IxRadix rx = {.K = rem, .tid = tid, .threads = SG_THREADS, .hist = hist, .found = found, .bits = 7,
                          .shift0 = 14, .prefix = kb_shl(kb, T, kb_i32(kb, 32 - IX_HIST_BITS))};
            KVar Ts = kb_var(kb, kb->i32, zero), need = kb_var(kb, kb->i32, zero), gt0 = kb_var(kb, kb->i32, zero);
            kb_if(kb, kb_eq(kb, over, zero));
            { /* every segment's candidates, in segment order, into smem (every load in flight first); ranked there */
                int per = (cands + SG_THREADS - 1) / SG_THREADS;
                V key[INDEX_SEG_MAX * ((INDEX_SEG_CANDS + SG_THREADS - 1) / SG_THREADS)];
                for (int s = 0; s < segs; s++)
                    for (int u = 0; u < per; u++) {
                        V ck = kb_gep(kb, kb->i32, seg_rec(kb, b.area, kb_i32(kb, s)), kb_i32(kb, 4));
                        key[s * per + u] = ld(kb, ck, kb_min(kb, kb_add(kb, tid, kb_i32(kb, u * SG_THREADS)), kb_i32(kb, cands - 1)));
                    }
                V at = zero;
                for (int s = 0; s < segs; s++) {
                    for (int u = 0; u < per; u++) {
                        V i = kb_add(kb, tid, kb_i32(kb, u * SG_THREADS));
                        kb_if(kb, kb_lt(kb, i, ceq[s]));
                        st(kb, key[s * per + u], cand, kb_add(kb, at, i));
                        kb_endif(kb);
                    }
                    at = kb_add(kb, at, ceq[s]);
                }
                nvvm_bar_sync(kb);
                rx.keys = cand, rx.n = total;
                V Tf, nd;
                ix_radix_kth(kb, &rx, &Tf, &nd);
                count_around(kb, cand, off, Tf, ctr, 1); /* the candidates of the segments before this one */
                kb_set(kb, Ts, Tf);
                kb_set(kb, need, nd);
                kb_set(kb, gt0, gt_seg); /* and their keys above T */
            }
            kb_else(kb);
            { /* T's keys over the whole row (global), then the keys before the segment counted */
                rx.keys = b.keys, rx.n = b.n, rx.unroll = 8;
                V Tf, nd;
                ix_radix_kth(kb, &rx, &Tf, &nd);
                count_around(kb, b.keys, b.lo, Tf, ctr, 8);
                kb_set(kb, Ts, Tf);
                kb_set(kb, need, nd);
            }
            kb_endif(kb);
            nvvm_bar_sync(kb);
            V gt_before = kb_add(kb, kb_get(kb, gt0), ld(kb, ctr, zero)), eq_before = ld(kb, ctr, kb_i32(kb, 1));
            V nd = kb_get(kb, need);
            V len = kb_sub(kb, b.hi, b.lo);
            IxCompact cp = {.keys = segk, .base = b.lo, .lo = zero, .hi = len, .n = kb_max(kb, len, kb_i32(kb, 1)), .T = kb_get(kb, Ts),
                            .need = kb_max(kb, kb_sub(kb, nd, eq_before), zero),
                            .at0 = kb_add(kb, gt_before, kb_min(kb, eq_before, nd)), .dst = dst, .cnt_gt = cntw,
                            .cnt_eq = kb_gep(kb, kb->i32, cntw, kb_i32(kb, SG_WARPS)), .threads = SG_THREADS};
            ix_compact(kb, &cp);
        }
        kb_endif(kb);
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}
