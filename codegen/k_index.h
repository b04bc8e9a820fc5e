/* k_index.h — what the indexer's top-k kernels (k_index.c) share with the
 * one-pass decode select (k_index_sel.c): the selection attributes, the
 * radix search for the k-th largest key in shared memory, the adaptive and
 * window steps, the warp-aggregated histogram count. Private to codegen. */
#pragma once
#include "kernels.h"
#include "nvvm.h"

#define INDEX_MAX_CTX 40960 /* keys of one query (a cache row of scores) at most */

/* The decode histogram of the keys' top IX_HIST_BITS bits: index_score2
 * counts it per query into the node's state "hist" (i32 [batch, IX_HIST_BINS],
 * zero between steps: index_select zeroes its row after reading it). */
enum { IX_HIST_BITS = 11, IX_HIST_BINS = 1 << IX_HIST_BITS };
/* The one-pass select's candidate capacity (schedule `cands`, default and most). */
enum { IX_SELECT_CANDS = 16384 };

/* Unsigned a > b (keys are order-preserving u32). */
static inline V ix_ugt(KB *kb, V a, V b) { return LLVMBuildICmp(kb->b, LLVMIntUGT, a, b, ""); }
/* x (i32) from lane src of the warp. */
static inline V ix_shfl_i32(KB *kb, V x, V src)
{
    return kb_bitcast(kb, nvvm_shfl_idx(kb, kb_bitcast(kb, x, kb->f32), src), kb->i32);
}

/* The selection a template emits (attrs of index_topk, ops.def topk). */
typedef struct Sel {
    int64_t K;  /* top_k */
    int64_t W;  /* window: the last W positions join the selection (0: none) */
    float p;    /* adaptive mass (p < 1; 1: plain top-k) */
} Sel;

/* The K-th largest of n u32 keys in shared memory, `bits` bits at a time from
 * digit shift0 down to 0, over the keys whose bits above shift0 + bits equal
 * prefix's (a histogram per digit, warp 0 finds the bin where the count from
 * the top reaches the rank still wanted). */
typedef struct IxRadix {
    V keys;        /* smem u32 [n] */
    V n;           /* i32: keys */
    V K;           /* i32: the rank wanted, 1 <= K <= keys matching the prefix */
    V tid;         /* thread index */
    int threads;   /* threads of the block */
    V hist, found; /* smem i32 [1 << bits], [2] */
    int bits;      /* digit width: 8 (256 bins) or 7 (128) */
    int shift0;    /* the first digit's shift, a multiple of bits; shift0 + bits <= 32 */
    V prefix;      /* i32: the bits above shift0 + bits all keys share (0 when shift0 + bits = 32) */
    bool hist0;    /* the first digit's histogram is already in hist (synced) */
    int unroll;    /* keys a thread loads before counting them (0 or 1: one; more for keys in global memory) */
} IxRadix;

/* out_T: the K-th largest key; out_need: how many keys equal to it are
 * taken (those above it are K - out_need). Ends synced. */
void ix_radix_kth(KB *kb, const IxRadix *x, V *out_T, V *out_need);

/* The picks among keys[lo .. hi) in index order: the keys above T and, of
 * those equal to T, the first `need` (counted from lo), written to
 * dst[at0 ..] as positions base + i (idx NULL) or idx[i]. Warp w owns a
 * contiguous run of the range, counted by ballots; one exchange of the
 * warps' counts gives each warp where its picks go. */
typedef struct IxCompact {
    V keys;           /* u32 [n], shared or global */
    V idx;            /* smem i32 [n]: the position written for key i; NULL: base + i */
    V base;           /* i32: the position of key 0 when idx is NULL */
    V lo, hi, n;      /* i32: the range walked, and the keys (loads clamped to n - 1) */
    V T, need;        /* i32: the threshold key; how many keys equal to it are taken in the range */
    V at0;            /* i32: where the range's first pick goes in dst */
    V dst;            /* global i32: the row */
    V cnt_gt, cnt_eq; /* smem i32 [threads / 32] each */
    int threads;      /* threads of the block */
} IxCompact;
void ix_compact(KB *kb, const IxCompact *c);

/* Exclusive prefix sum of x over the block's threads in order (`warps`
 * warps, a power of two <= 32); *tot the block's sum. tmp: smem i32
 * [warps], untouched by anything else until the next barrier. */
V ix_block_scan(KB *kb, V x, V tmp, int warps, V *tot);

/* The bin of hist (nbins counts, shared or global, complete) where the
 * count from the top reaches rem (1 <= rem <= the total), thread t holding
 * bins nbins-1-bpt·t down (bpt = nbins / threads <= 8): out[0] = the bin,
 * out[1] = rem less the count above it, out[2] = its count (found: smem
 * i32 [3]; tmp as ix_block_scan's). Ends synced. */
void ix_find_bin(KB *kb, V hist, int nbins, V rem, V tid, int threads, V tmp, V found, V out[3]);

/* One warp-aggregated shared-memory count: lanes with `in` add 1 to
 * hist[dig] (match.any: the lowest lane holding each digit adds the count). */
void ix_hist_add(KB *kb, V hist, V dig, V in);

/* Adaptive top-k after the plain selection wrote sel[out .. out+min(n, K))
 * (keys: u32 [n], shared or global; cnt_a, cnt_b: smem i32 [threads/32]). */
void ix_adaptive(KB *kb, const Sel *sl, V keys, V selp, V out, V n, V tid, int threads, V cnt_a, V cnt_b);
/* The local window after the top-k part of the row is final (warp 0). */
void ix_window(KB *kb, const Sel *sl, V selp, V out, V p, V n);
/* n <= K: positions 0 .. n-1, then -1 up to width, into dst (global i32). */
void ix_select_all(KB *kb, V dst, V n, int64_t width, V tid, int threads);

/* index_select, one pass over the stored keys (k_index_sel.c): hist_mode 2
 * reads the top-bit histogram index_score2 counted (and zeroes it), 1 counts
 * it here first; cands: the threshold bin's keys ranked in shared memory at
 * most (more: refined by the next 11 bits, then 10). Args as index_select's,
 * then (hist_mode 2) the histogram state. */
bool ix_emit_select1(Codegen *cg, int64_t H, int64_t D, const Sel *sl, int hist_mode, int cands, char **ptx, Diag *d);
/* Its dynamic shared memory. */
unsigned ix_select1_smem(int cands);

/* index_select split over segments (decode, select 3, k_index_seg.c): the
 * two launches' PTX (count: args keys, area, pos, hist, seq, ctx, rows;
 * write: keys, area, pos, hist, sel, seq, ctx, rows) and shared memory. */
bool ix_emit_seg_count(Codegen *cg, int64_t K, int segs, int cands, char **ptx, Diag *d);
bool ix_emit_seg_write(Codegen *cg, int64_t K, int segs, int cands, char **ptx, Diag *d);
unsigned ix_seg_count_smem(void);
unsigned ix_seg_write_smem(int segs, int cands);
