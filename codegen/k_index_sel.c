/* k_index_sel.c — index_select in one pass over the stored keys (decode,
 * schedule select 1 or 2 of index_topk; k_index.c has the rest).
 *
 * A 1024-thread block per query r, its n keys (u32, order-preserving) in the
 * scratch row index_score left, never copied to shared memory:
 *   1. the histogram of the keys' top 11 bits: select 2 reads the row
 *      index_score2 counted into the node's state and zeroes it for the next
 *      step; select 1 counts it here in a first pass over the keys;
 *   2. the bin T where the count from the top reaches k (a block scan), and
 *      how many of its keys are still wanted (rem);
 *   3. one pass over the keys, 32 consecutive keys per warp step: a ballot of
 *      the keys above T is the bitmap word of those 32 positions (G, no
 *      atomics), T's keys and positions go to a candidate list (one shared
 *      atomic per warp step that has any);
 *   4. the rem-th largest candidate by 7-bit radix digits over the low 21
 *      bits (ix_radix_kth), candidates above it set their G bit, those equal
 *      to it their E bit;
 *   5. the row in index order from the bitmaps: thread t owns words 2t,
 *      2t+1 (64 positions); a block scan of E's counts takes the first
 *      `need` ties (lower index), a block scan of the picks gives where
 *      each thread writes its positions.
 * When T holds more keys than `cands` (the schedule; ties or a narrow score
 * distribution), the pass counts the next 11 bits of T's keys instead (and
 * their smallest and largest key), then the last 10; once the group is one
 * whole key (all 32 bits found, or its smallest key equals its largest: all
 * ties, as in a cache of equal rows) the ties need no ranking: a last pass
 * takes G and E straight from ballots. Adaptive top-k and the window run after it as in
 * index_topk, adaptive reading the keys from the scratch (global).
 * Not the default: on the H100 bench (b64, ctx 32768, caches of zeros: every
 * key ties) index_select2 took 32.3 µs and index_select1 27.8 against 27.0
 * for select 0 in one device call (docs/kernels.md has the profile). */
#include "k_index.h"

enum { SEL_THREADS = 1024, SEL_WARPS = SEL_THREADS / 32, SEL_UNROLL = 16, SEL_WORDS = INDEX_MAX_CTX / 32 };

/* Shared memory: hist i32 [IX_HIST_BINS] | G, E u32 [SEL_WORDS] | 4 scan
 * areas i32 [SEL_WARPS] | found i32 [16] (ix_find_bin's 3, the radix's 2, the
 * candidate count, the group's min and max key) | candidate keys u32
 * [cands] | their positions i32 [cands]. */
enum {
    O_HIST = 0,
    O_G = O_HIST + 4 * IX_HIST_BINS,
    O_E = O_G + 4 * SEL_WORDS,
    O_TMP = O_E + 4 * SEL_WORDS,
    O_FOUND = O_TMP + 4 * 4 * SEL_WARPS,
    O_CAND = O_FOUND + 64,
};

unsigned ix_select1_smem(int cands) { return (unsigned)(O_CAND + 8 * cands); }

typedef struct SelCtx {
    V keys;     /* global u32 [n]: the query's keys */
    V n, nw;    /* i32: keys; bitmap words ceil(n / 32) */
    V G, E;     /* smem u32 [SEL_WORDS]: picks (above the threshold), ties at it */
    V ck, ci;   /* smem u32 [cands], i32 [cands]: candidate keys, positions */
    V cnt;      /* smem i32 [1]: candidates stored */
    V mm;       /* smem u32 [2]: the smallest and largest key of the group a PASS_HIST saw */
    V hist;     /* smem i32 [IX_HIST_BINS] */
    V tid;      /* thread index */
    int cands;  /* candidate capacity */
} SelCtx;

typedef enum {
    PASS_HIST,    /* the group's next digit counted into hist */
    PASS_COLLECT, /* G = keys above the group, the group's keys into the candidates */
    PASS_EQ,      /* full keys: G = keys above P, E = keys equal to P */
} PassMode;

static V ult(KB *kb, V a, V b) { return LLVMBuildICmp(kb->b, LLVMIntULT, a, b, ""); }

/* One pass over the keys: warp w takes the 32-key chunks w·U, w·U+1, …
 * (U = SEL_UNROLL chunks' loads in flight), then the next SEL_WARPS·U. The
 * group: keys whose bits from s up equal P (s = 32: every key). PASS_HIST:
 * digit (key >> s2) & (2^nb − 1) of the group counted into hist (zeroed,
 * synced), and with `minmax` also the group's smallest and largest key into
 * mm (set to ~0 and 0, synced: zero_hist) and G, E as PASS_EQ's (final if
 * those two are equal); PASS_COLLECT: G's word of each chunk = the keys
 * above the group, E's 0, the group's keys and positions appended to the
 * candidates; PASS_EQ: G = keys above the group, E = the group. */
static void sel_pass(KB *kb, const SelCtx *c, PassMode m, int s, V P, int s2, int nb, bool minmax)
{
    V lane = nvvm_lane(kb), warp = nvvm_warp(kb), lt = nvvm_lanemask_lt(kb), zero = kb_i32(kb, 0);
    V last = kb_sub(kb, c->n, kb_i32(kb, 1));
    KVar kmin = kb_var(kb, kb->i32, kb_i32(kb, -1)), kmax = kb_var(kb, kb->i32, zero);
    KVar w = kb_for(kb, kb_mul(kb, warp, kb_i32(kb, SEL_UNROLL)), c->nw, kb_i32(kb, SEL_WARPS * SEL_UNROLL));
    {
        V c0 = kb_get(kb, w), key[SEL_UNROLL], j[SEL_UNROLL];
        for (int u = 0; u < SEL_UNROLL; u++) { /* every load first */
            j[u] = kb_add(kb, kb_mul(kb, kb_add(kb, c0, kb_i32(kb, u)), kb_i32(kb, 32)), lane);
            key[u] = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->keys, kb_min(kb, j[u], last)));
        }
        for (int u = 0; u < SEL_UNROLL; u++) {
            V ch = kb_add(kb, c0, kb_i32(kb, u)), in = kb_lt(kb, j[u], c->n);
            V hi = s == 32 ? zero : s ? LLVMBuildLShr(kb->b, key[u], kb_i32(kb, s), "") : key[u];
            V grp = s == 32 ? in : kb_and(kb, in, kb_eq(kb, hi, P));
            V store_word = kb_and(kb, kb_eq(kb, lane, zero), kb_lt(kb, ch, c->nw));
            if (m == PASS_HIST) {
                V dig = kb_and(kb, s2 ? LLVMBuildLShr(kb->b, key[u], kb_i32(kb, s2), "") : key[u], kb_i32(kb, (1 << nb) - 1));
                ix_hist_add(kb, c->hist, dig, grp);
                if (minmax) {
                    kb_set(kb, kmin, kb_select(kb, kb_and(kb, grp, ult(kb, key[u], kb_get(kb, kmin))), key[u], kb_get(kb, kmin)));
                    kb_set(kb, kmax, kb_select(kb, kb_and(kb, grp, ix_ugt(kb, key[u], kb_get(kb, kmax))), key[u], kb_get(kb, kmax)));
                }
                if (!minmax)
                    continue;
            }
            /* G: the keys above the group; E: the group (final should its keys all be equal), or none */
            V g = nvvm_ballot(kb, kb_and(kb, in, ix_ugt(kb, hi, P)));
            V gm = nvvm_ballot(kb, grp);
            kb_if(kb, store_word);
            kb_store(kb, g, kb_gep(kb, kb->i32, c->G, ch));
            kb_store(kb, m == PASS_COLLECT ? zero : gm, kb_gep(kb, kb->i32, c->E, ch));
            kb_endif(kb);
            if (m == PASS_COLLECT) {
                kb_if(kb, kb_ne(kb, gm, zero)); /* warp-uniform */
                {
                    KVar base = kb_var(kb, kb->i32, zero);
                    kb_if(kb, kb_eq(kb, lane, zero));
                    kb_set(kb, base, LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpAdd, c->cnt, nvvm_popc(kb, gm),
                                                        LLVMAtomicOrderingMonotonic, 0));
                    kb_endif(kb);
                    V at = kb_add(kb, ix_shfl_i32(kb, kb_get(kb, base), zero), nvvm_popc(kb, kb_and(kb, gm, lt)));
                    kb_if(kb, kb_and(kb, grp, kb_lt(kb, at, kb_i32(kb, c->cands))));
                    kb_store(kb, key[u], kb_gep(kb, kb->i32, c->ck, at));
                    kb_store(kb, j[u], kb_gep(kb, kb->i32, c->ci, at));
                    kb_endif(kb);
                }
                kb_endif(kb);
            }
        }
    }
    kb_endfor(kb);
    if (minmax) { /* the warp's extremes, then one shared atomic each */
        V lo = kb_get(kb, kmin), hi = kb_get(kb, kmax);
        for (int o = 16; o >= 1; o /= 2) {
            V lo2 = kb_bitcast(kb, nvvm_shfl_xor(kb, kb_bitcast(kb, lo, kb->f32), o), kb->i32);
            V hi2 = kb_bitcast(kb, nvvm_shfl_xor(kb, kb_bitcast(kb, hi, kb->f32), o), kb->i32);
            lo = kb_select(kb, ult(kb, lo2, lo), lo2, lo);
            hi = kb_select(kb, ix_ugt(kb, hi2, hi), hi2, hi);
        }
        kb_if(kb, kb_eq(kb, lane, zero));
        LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpUMin, kb_gep(kb, kb->i32, c->mm, zero), lo, LLVMAtomicOrderingMonotonic, 0);
        LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpUMax, kb_gep(kb, kb->i32, c->mm, kb_i32(kb, 1)), hi, LLVMAtomicOrderingMonotonic, 0);
        kb_endif(kb);
    }
}

/* x with only its lowest k set bits kept (0 <= k). */
static V low_bits(KB *kb, V x, V k)
{
    KVar y = kb_var(kb, kb->i32, x), kept = kb_var(kb, kb->i32, kb_i32(kb, 0));
    kb_for(kb, kb_i32(kb, 0), k, kb_i32(kb, 1));
    {
        V yv = kb_get(kb, y), bit = kb_and(kb, yv, kb_neg(kb, yv));
        kb_set(kb, kept, kb_or(kb, kb_get(kb, kept), bit));
        kb_set(kb, y, kb_xor(kb, yv, bit));
    }
    kb_endfor(kb);
    return kb_get(kb, kept);
}

/* The row from the bitmaps (synced): every G position and the first `need`
 * E positions, ascending, into dst[0 .. K); -1 after them should they be
 * fewer. tmp: two scan areas. */
static void compact(KB *kb, const SelCtx *c, V need, V dst, int64_t K, V tmp0, V tmp1)
{
    V zero = kb_i32(kb, 0), w[2], g[2], e[2], ne[2];
    for (int i = 0; i < 2; i++) {
        w[i] = kb_add(kb, kb_mul(kb, c->tid, kb_i32(kb, 2)), kb_i32(kb, i));
        V in = kb_lt(kb, w[i], c->nw), at = kb_min(kb, w[i], kb_i32(kb, SEL_WORDS - 1));
        g[i] = kb_select(kb, in, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->G, at)), zero);
        e[i] = kb_select(kb, in, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->E, at)), zero);
        ne[i] = nvvm_popc(kb, e[i]);
    }
    V etot, eb = ix_block_scan(kb, kb_add(kb, ne[0], ne[1]), tmp0, SEL_WARPS, &etot);
    (void)etot;
    V take = kb_max(kb, kb_min(kb, kb_sub(kb, need, eb), kb_add(kb, ne[0], ne[1])), zero); /* ties this thread takes */
    V t0 = kb_min(kb, take, ne[0]);
    V m[2] = {kb_or(kb, g[0], low_bits(kb, e[0], t0)), kb_or(kb, g[1], low_bits(kb, e[1], kb_sub(kb, take, t0)))};
    V np0 = nvvm_popc(kb, m[0]);
    V tot, ob = ix_block_scan(kb, kb_add(kb, np0, nvvm_popc(kb, m[1])), tmp1, SEL_WARPS, &tot);
    for (int i = 0; i < 2; i++) {
        KVar y = kb_var(kb, kb->i32, m[i]);
        V at0 = i ? kb_add(kb, ob, np0) : ob;
        KVar k = kb_for(kb, zero, nvvm_popc(kb, m[i]), kb_i32(kb, 1));
        {
            V yv = kb_get(kb, y), low = kb_and(kb, yv, kb_neg(kb, yv));
            V pos = kb_add(kb, kb_mul(kb, w[i], kb_i32(kb, 32)), nvvm_popc(kb, kb_sub(kb, low, kb_i32(kb, 1))));
            kb_store(kb, pos, kb_gep(kb, kb->i32, dst, kb_to_i64(kb, kb_add(kb, at0, kb_get(kb, k)))));
            kb_set(kb, y, kb_xor(kb, yv, low));
        }
        kb_endfor(kb);
    }
    KVar f = kb_for(kb, kb_add(kb, tot, c->tid), kb_i32(kb, (int)K), kb_i32(kb, SEL_THREADS));
    kb_store(kb, kb_i32(kb, -1), kb_gep(kb, kb->i32, dst, kb_to_i64(kb, kb_get(kb, f))));
    kb_endfor(kb);
}

/* The candidates (synced; cnt of them, all with bits from s up equal to P)
 * ranked: the rem-th largest Tf; those above it set their G bit, those
 * equal to it their E bit. Returns how many E positions are taken. */
static V rank_candidates(KB *kb, const SelCtx *c, int s, V P, V rem, V rfound)
{
    V cnt = kb_min(kb, kb_load(kb, kb->i32, c->cnt), kb_i32(kb, c->cands));
    V keep = kb_i32(kb, (int64_t)(int32_t)(0xffffffffu << 21)); /* the bits above the 3 digits of 7 */
    IxRadix rx = {.keys = c->ck, .n = cnt, .K = rem, .tid = c->tid, .threads = SEL_THREADS, .hist = c->hist,
                  .found = rfound, .bits = 7, .shift0 = 14, .prefix = kb_and(kb, kb_shl(kb, P, kb_i32(kb, s)), keep)};
    V Tf, need;
    ix_radix_kth(kb, &rx, &Tf, &need);
    KVar i = kb_for(kb, c->tid, cnt, kb_i32(kb, SEL_THREADS));
    {
        V iv = kb_get(kb, i);
        V key = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->ck, iv)), pos = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c->ci, iv));
        V word = LLVMBuildLShr(kb->b, pos, kb_i32(kb, 5), ""), bit = kb_shl(kb, kb_i32(kb, 1), kb_and(kb, pos, kb_i32(kb, 31)));
        kb_if(kb, ix_ugt(kb, key, Tf));
        LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpOr, kb_gep(kb, kb->i32, c->G, word), bit, LLVMAtomicOrderingMonotonic, 0);
        kb_endif(kb);
        kb_if(kb, kb_eq(kb, key, Tf));
        LLVMBuildAtomicRMW(kb->b, LLVMAtomicRMWBinOpOr, kb_gep(kb, kb->i32, c->E, word), bit, LLVMAtomicOrderingMonotonic, 0);
        kb_endif(kb);
    }
    kb_endfor(kb);
    return need;
}

/* Zeroes hist[0 .. bins), sets mm to (~0, 0), syncs. */
static void zero_hist(KB *kb, const SelCtx *c, int bins)
{
    KVar z = kb_for(kb, c->tid, kb_i32(kb, bins), kb_i32(kb, SEL_THREADS));
    kb_store(kb, kb_i32(kb, 0), kb_gep(kb, kb->i32, c->hist, kb_get(kb, z)));
    kb_endfor(kb);
    kb_if(kb, kb_eq(kb, c->tid, kb_i32(kb, 0)));
    kb_store(kb, kb_i32(kb, -1), kb_gep(kb, kb->i32, c->mm, kb_i32(kb, 0)));
    kb_store(kb, kb_i32(kb, 0), kb_gep(kb, kb->i32, c->mm, kb_i32(kb, 1)));
    kb_endif(kb);
    nvvm_bar_sync(kb);
}

bool ix_emit_select1(Codegen *cg, int64_t H, int64_t D, const Sel *sl, int hist_mode, int cands, char **ptx, Diag *d)
{
    (void)H, (void)D;
    int64_t K = sl->K, Kt = sl->K + sl->W;
    KParamKind pk[8] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32, KP_PTR};
    KB *kb = kb_new(cg->ctx, hist_mode == 2 ? "index_select2" : "index_select1", pk, hist_mode == 2 ? 8 : 7, SEL_THREADS);
    V keysp = kb_param(kb, 0), posp = kb_param(kb, 2), selp = kb_param(kb, 3); /* param 1: the k cache, unused */
    V seq = kb_param(kb, 4), ctx = kb_param(kb, 5), rows = kb_param(kb, 6);
    V histp = hist_mode == 2 ? kb_param(kb, 7) : NULL;
    V r = nvvm_ctaid_x(kb), tid = nvvm_tid_x(kb), zero = kb_i32(kb, 0);
    V tmp[4];
    for (int i = 0; i < 4; i++)
        tmp[i] = kb_smem(kb, kb_i32(kb, O_TMP + 4 * SEL_WARPS * i));
    V found = kb_smem(kb, kb_i32(kb, O_FOUND)), rfound = kb_smem(kb, kb_i32(kb, O_FOUND + 16));
    SelCtx c = {.G = kb_smem(kb, kb_i32(kb, O_G)), .E = kb_smem(kb, kb_i32(kb, O_E)),
                .ck = kb_smem(kb, kb_i32(kb, O_CAND)), .ci = kb_smem(kb, kb_i32(kb, O_CAND + 4 * cands)),
                .cnt = kb_smem(kb, kb_i32(kb, O_FOUND + 24)), .mm = kb_smem(kb, kb_i32(kb, O_FOUND + 32)), .hist = kb_smem(kb, kb_i32(kb, O_HIST)), .tid = tid,
                .cands = cands};
    kb_if(kb, kb_lt(kb, r, rows));
    {
        V b = kb_div(kb, r, seq), t = kb_rem(kb, r, seq);
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), t);
        c.n = kb_min(kb, kb_add(kb, p, kb_i32(kb, 1)), kb_min(kb, ctx, kb_i32(kb, INDEX_MAX_CTX)));
        c.nw = kb_div(kb, kb_add(kb, c.n, kb_i32(kb, 31)), kb_i32(kb, 32));
        c.keys = kb_gep(kb, kb->i32, keysp, kb_mul(kb, kb_to_i64(kb, r), kb_to_i64(kb, ctx)));
        V out = kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, Kt)), dst = kb_gep(kb, kb->i32, selp, out);
        { /* the keys' lines into L2 now (index_score2's later blocks pushed the first ones out to DRAM): the
           * passes' loads then wait on L2, not DRAM, with no registers held meanwhile */
            KVar i = kb_for(kb, tid, kb_div(kb, kb_add(kb, c.n, kb_i32(kb, 31)), kb_i32(kb, 32)), kb_i32(kb, SEL_THREADS));
            nvvm_prefetch_l2(kb, kb_gep(kb, kb->i32, c.keys, kb_mul(kb, kb_get(kb, i), kb_i32(kb, 32))));
            kb_endfor(kb);
        }
        if (histp) { /* index_score2's counts into smem, the state's row zeroed for the next step */
            KVar i = kb_for(kb, tid, kb_i32(kb, IX_HIST_BINS), kb_i32(kb, SEL_THREADS));
            V at = kb_gep(kb, kb->i32, histp, kb_add(kb, kb_mul(kb, kb_to_i64(kb, r), kb_i64(kb, IX_HIST_BINS)), kb_to_i64(kb, kb_get(kb, i))));
            kb_store(kb, kb_load(kb, kb->i32, at), kb_gep(kb, kb->i32, c.hist, kb_get(kb, i)));
            kb_store(kb, zero, at);
            kb_endfor(kb);
        }
        kb_if(kb, kb_le(kb, c.n, kb_i32(kb, (int)K)));
        ix_select_all(kb, dst, c.n, Kt, tid, SEL_THREADS); /* fewer than k candidates: all of them, then -1 */
        kb_else(kb);
        {
            KVar z = kb_for(kb, tid, kb_i32(kb, SEL_WORDS), kb_i32(kb, SEL_THREADS));
            kb_store(kb, zero, kb_gep(kb, kb->i32, c.G, kb_get(kb, z)));
            kb_store(kb, zero, kb_gep(kb, kb->i32, c.E, kb_get(kb, z)));
            kb_endfor(kb);
            kb_if(kb, kb_eq(kb, tid, zero));
            kb_store(kb, zero, c.cnt);
            kb_endif(kb);
            if (!histp) { /* select 1: the top-bit histogram in a first pass */
                zero_hist(kb, &c, IX_HIST_BINS);
                sel_pass(kb, &c, PASS_HIST, 32, zero, 32 - IX_HIST_BITS, IX_HIST_BITS, false);
            }
            nvvm_bar_sync(kb);
            V f[3];
            ix_find_bin(kb, c.hist, IX_HIST_BINS, kb_i32(kb, (int)K), tid, SEL_THREADS, tmp[0], found, f);
            KVar P = kb_var(kb, kb->i32, f[0]), rem = kb_var(kb, kb->i32, f[1]), cT = kb_var(kb, kb->i32, f[2]);
            /* done: 0 refining, 1 ranked as candidates, 2 the group's keys all equal (G, E final) */
            KVar need = kb_var(kb, kb->i32, zero), done = kb_var(kb, kb->i32, zero);
            /* levels: the group is the keys whose bits from s up equal P; refined by nb more bits while it is
             * too large to rank in smem (block-uniform: every value comes from smem after a barrier) */
            static const int lv_s[2] = {32 - IX_HIST_BITS, 10}, lv_nb[2] = {11, 10};
            for (int L = 0; L < 2; L++) {
                kb_if(kb, kb_eq(kb, kb_get(kb, done), zero));
                kb_if(kb, kb_le(kb, kb_get(kb, cT), kb_i32(kb, cands)));
                {
                    sel_pass(kb, &c, PASS_COLLECT, lv_s[L], kb_get(kb, P), 0, 0, false);
                    nvvm_bar_sync(kb);
                    kb_set(kb, need, rank_candidates(kb, &c, lv_s[L], kb_get(kb, P), kb_get(kb, rem), rfound));
                    kb_set(kb, done, kb_i32(kb, 1));
                }
                kb_else(kb);
                {
                    int s2 = lv_s[L] - lv_nb[L];
                    zero_hist(kb, &c, 1 << lv_nb[L]);
                    sel_pass(kb, &c, PASS_HIST, lv_s[L], kb_get(kb, P), s2, lv_nb[L], true);
                    nvvm_bar_sync(kb);
                    V lo = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c.mm, zero));
                    V hi = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, c.mm, kb_i32(kb, 1)));
                    kb_if(kb, kb_eq(kb, lo, hi)); /* the group's keys all equal: ties, G and E final */
                    kb_set(kb, need, kb_get(kb, rem));
                    kb_set(kb, done, kb_i32(kb, 2));
                    kb_else(kb);
                    ix_find_bin(kb, c.hist, 1 << lv_nb[L], kb_get(kb, rem), tid, SEL_THREADS, tmp[L + 1], found, f);
                    kb_set(kb, P, kb_or(kb, kb_shl(kb, kb_get(kb, P), kb_i32(kb, lv_nb[L])), f[0]));
                    kb_set(kb, rem, f[1]);
                    kb_set(kb, cT, f[2]);
                    kb_endif(kb);
                }
                kb_endif(kb);
                kb_endif(kb);
            }
            kb_if(kb, kb_eq(kb, kb_get(kb, done), zero)); /* P is a whole key: its keys are ties */
            sel_pass(kb, &c, PASS_EQ, 0, kb_get(kb, P), 0, 0, false);
            kb_set(kb, need, kb_get(kb, rem));
            kb_endif(kb);
            nvvm_bar_sync(kb);
            compact(kb, &c, kb_get(kb, need), dst, K, tmp[2], tmp[3]);
        }
        kb_endif(kb);
        if (sl->p < 1.0f || sl->W) {
            nvvm_bar_sync(kb); /* the top-k part of sel (global) and the scan areas are read next */
            if (sl->p < 1.0f)
                ix_adaptive(kb, sl, c.keys, selp, out, c.n, tid, SEL_THREADS, tmp[0], tmp[1]);
            if (sl->W)
                ix_window(kb, sl, selp, out, p, c.n);
        }
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}
