/* k_mla_decode.c — latent attention on tensor cores, a query's heads as one
 * m16 tile, keys split over blocks (the FlashMLA shape). Used by the mla_attn
 * template (k_mla.c) when the node's `tc` is set and the shape fits: for
 * decode steps, and for prefill with splits 1, where every query row of the
 * call (b, t) is handled like a decode query at position pos[b] + t.
 *
 *   mla_decode   a block per (key split, query row), 8 warps. All H ≤ 16 heads
 *                form one m16 tile: Q = [q_lat | q_pe] (16 × (R+dr), bf16)
 *                is staged in shared memory once, and each warp keeps the
 *                half of its depth it multiplies as A fragments in
 *                registers (at most MD_QREG_KSTEPS k-steps; wider rows
 *                re-read it every tile); the split's keys come in tiles of 64
 *                rows [c_kv | k_pe], double-buffered with cp.async (sparse:
 *                rows gathered by the indexer's selection, whose positions
 *                are staged in shared memory once; each thread copies one
 *                16-byte column of a row at a time, stage_part). Warp w is key/channel
 *                group g = w % 4 of half w / 4. Per tile, S = Q·Kᵀ for group
 *                g's 16 keys (mma.sync m16n8k16, fp32) is split over the two
 *                halves by depth and summed through shared memory (both
 *                halves then hold it); the online softmax is merged over the
 *                4 groups through shared memory, P (bf16) goes to shared
 *                memory, and each warp adds P·V over its half's 32 keys for
 *                group g's R/4 output channels (V = the c_kv rows); the
 *                halves' O are summed at the end. The
 *                split's unnormalised O, row max m and sum l go to scratch
 *                [rows][splits][H][R + 2] (f32); with splits 1 (`direct`)
 *                O / l goes straight to the bf16 output instead.
 *   mla_combine  a block per (head, query row): O = Σ_s e^(m_s−M) O_s / Σ_s
 *                e^(m_s−M) l_s, written as bf16 (not emitted when direct).
 * Each cache row is read once per query (not once per query and head as in
 * the SIMT kernel). Args: q_lat, q_pe, c_kv cache, k_pe cache, pos, scratch
 * or out, ctx, rows, seq[, sel]; then scratch, out, rows. */
#include "k_mla_decode.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "k_split_combine.h"
#include "mma.h"
#include "nvvm.h"

enum {
    MD_WARPS = 8,
    MD_THREADS = 32 * MD_WARPS,
    MD_GROUPS = 4,                        /* key groups of S, channel groups of P·V; two halves each */
    MD_KEYS = 64,                         /* keys per tile: 16 per group */
    MD_MAX_SPLITS = MLA_DECODE_MAX_SPLITS,
    /* splits 0 (auto): about this many blocks per call, 1..MD_MAX_SPLITS per sequence. The block's shared
     * memory (~183 KiB at R 512) allows one per SM: 128 is one wave on the H100's 132 SMs (256 made two) */
    MD_AUTO_BLOCKS = 128,
    MD_MAX_CALLS = 8,                     /* P·V calls of 8 n-tiles per warp: R ≤ 4·8·64 = 2048 */
    MD_XCH = 8,                           /* S fragment values per thread exchanged between halves */
    /* A warp's half of Q stays in registers (4 per k-step of 16) when it has at most this many k-steps
     * (R 512 + dr 64: 18); larger rows read it from shared memory every tile */
    MD_QREG_KSTEPS = 20,
};

typedef struct Dec {
    int64_t H, R, dr;  /* heads, latent rank, rope width */
    int64_t qs, qo;    /* q_pe: row stride per head, offset of the rope part */
    int64_t K;         /* sparse: selected keys per query (0: dense) */
    int splits;        /* key splits (grid x); 0: chosen per call from the batch (splits_in_use) */
    int gsplits;       /* grid x and the scratch's stride in splits: splits, or MD_MAX_SPLITS for auto */
    bool direct;       /* splits 1: O / l written as the bf16 output, no scratch, no mla_combine */
    float scale;       /* softmax scale */
    int ldq;           /* bytes per shared-memory row of Q and K tiles: (R + dr + 8) * 2 */
    int ldp;           /* bytes per row of the P tile: (64 + 8) * 2 */
    int off_kv, off_p, off_red; /* shared-memory offsets (bytes) */
    int off_x;         /* S partials exchanged between the halves: f32 [warps][32 lanes][MD_XCH] */
    int off_sel;       /* sparse: the split's key positions, i32 [K] (-1: no key), read once per block */
    unsigned smem;     /* total dynamic shared memory */
} Dec;

static void layout(Dec *m)
{
    m->ldq = (int)(m->R + m->dr + 8) * 2;
    m->ldp = (MD_KEYS + 8) * 2;
    m->off_kv = 16 * m->ldq;
    m->off_p = m->off_kv + 2 * MD_KEYS * m->ldq;
    m->off_red = m->off_p + 16 * m->ldp;
    m->off_x = m->off_red + 2 * MD_GROUPS * 16 * 4;
    m->off_sel = m->off_x + MD_WARPS * 32 * MD_XCH * 4;
    m->smem = (unsigned)(m->off_sel + 4 * m->K);
}

static bool is_step(const Node *n) { return !n->dim[1].sym && n->dim[1].n == 1; }

/* The node's shape and schedule, with its shared-memory layout (prefill: splits 1). */
static Dec dec_of(const Node *n)
{
    Dec m = {.H = node_int(n, "heads", 1), .R = node_int(n, "rank", 0), .dr = node_int(n, "rope_dim", 0),
             .qs = node_int(n, "q_stride", 0), .qo = node_int(n, "q_off", 0),
             .K = n->nsrc > 7 ? n->src[7]->dim[2].n : 0, .splits = is_step(n) ? (int)node_int(n, "splits", 8) : 1,
             .scale = (float)node_float(n, "scale", 1.0)};
    m.gsplits = m.splits ? m.splits : MD_MAX_SPLITS;
    m.direct = m.splits == 1;
    layout(&m);
    return m;
}

bool mla_decode_tc_fits(const Node *n, const TargetDesc *t)
{
    Dec m = dec_of(n);
    return m.H >= 1 && m.H <= 16 && m.R > 0 && m.R % 64 == 0 && m.R <= 2048 && m.dr % 8 == 0 && (m.R + m.dr) % 16 == 0 &&
           m.qs % 8 == 0 && m.qo % 8 == 0 && m.splits >= 0 && m.splits <= MD_MAX_SPLITS &&
           (int64_t)m.smem <= (int64_t)t->smem_max;
}

static V i64(KB *kb, V x) { return kb_to_i64(kb, x); }

/* The key splits of this call: the schedule's, or for splits 0 about
 * MD_AUTO_BLOCKS blocks over the call's `rows` sequences (batch 1: 16
 * splits; 64: 2), so that one plan suits every batch. mla_decode and
 * mla_combine compute the same value; blocks beyond it return at once. */
static V splits_in_use(KB *kb, const Dec *m, V rows)
{
    return split_count(kb, m->splits, MD_AUTO_BLOCKS, rows, MD_MAX_SPLITS);
}
/* &f32[idx] of the shared-memory area at byte offset `off` */
static V area_f32(KB *kb, int off, V idx) { return kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, off)), idx); }

/* Cache position of key slot i (k0 <= i < k1) of this block: dense, i
 * itself; sparse, the selection staged in shared memory by stage_sel
 * (*valid false and position 0 where there is no key). */
static V key_at(KB *kb, const Dec *m, V i, V k0, V *valid)
{
    if (!m->K) {
        *valid = LLVMConstInt(kb->i1, 1, 0);
        return i;
    }
    V j = kb_load(kb, kb->i32, kb_gep(kb, kb->i32, kb_smem(kb, kb_i32(kb, m->off_sel)), kb_sub(kb, i, k0)));
    *valid = kb_ge(kb, j, kb_i32(kb, 0));
    return kb_select(kb, *valid, j, kb_i32(kb, 0));
}

/* Sparse: the selection's slots [k0, k1) of row r, checked once (mla_key_pos:
 * 0 <= j <= p, j < ctx; else -1), into shared memory, so the tile loop's
 * gathers wait on no global load. The caller syncs before use. */
static void stage_sel(KB *kb, const Dec *m, V selp, V r, V k0, V k1, V p, V ctx)
{
    KVar it = kb_for(kb, kb_add(kb, k0, nvvm_tid_x(kb)), k1, kb_i32(kb, MD_THREADS));
    {
        V i = kb_get(kb, it), kv;
        V j = mla_key_pos(kb, selp, m->K, r, i, p, ctx, &kv);
        kb_store(kb, kb_select(kb, kv, j, kb_i32(kb, -1)),
                 kb_gep(kb, kb->i32, kb_smem(kb, kb_i32(kb, m->off_sel)), kb_sub(kb, i, k0)));
    }
    kb_endfor(kb);
}

/* cp.async chunk cc (16 bytes) of key slot t0 + kk of this block into
 * shared-memory row kk, column chunk col + cc, of the K tile at byte offset
 * `off`; the row comes from `src` (stride `ld` elements). No key (slot ≥ k1,
 * or `in` false, or no selected position) → zeros. */
static void stage_chunk(KB *kb, const Dec *m, V off, V src, int64_t ld, int col, V kk, V cc, V in, V k0, V t0, V k1, V cbase)
{
    V i = kb_add(kb, t0, kk), kv;
    in = kb_and(kb, in, kb_lt(kb, i, k1));
    V j = key_at(kb, m, kb_select(kb, in, i, k0), k0, &kv);
    V ok = kb_and(kb, in, kv);
    V row = kb_add(kb, cbase, i64(kb, kb_select(kb, ok, j, kb_i32(kb, 0))));
    V g = kb_gep(kb, kb->bf16, src, kb_add(kb, kb_mul(kb, row, kb_i64(kb, ld)), i64(kb, kb_mul(kb, cc, kb_i32(kb, 8)))));
    V sp = kb_smem(kb, kb_add(kb, off, kb_add(kb, kb_mul(kb, kk, kb_i32(kb, m->ldq)),
                                               kb_mul(kb, kb_add(kb, cc, kb_i32(kb, col)), kb_i32(kb, 16)))));
    nvvm_cp_async16(kb, sp, g, kb_select(kb, ok, kb_i32(kb, 16), kb_i32(kb, 0)));
}

/* One part of the tile's key rows: `C` 16-byte chunks per row. Where C
 * divides the block, thread tid owns chunk tid % C of rows tid / C,
 * + 256 / C, ... (unrolled: one position load and one address per row, no
 * division per chunk); otherwise a loop over chunk indices divided by C. */
static void stage_part(KB *kb, const Dec *m, V off, V src, int64_t ld, int C, int col, V k0, V t0, V k1, V cbase)
{
    V tid = nvvm_tid_x(kb), yes = LLVMConstInt(kb->i1, 1, 0);
    if (MD_THREADS % C) {
        KVar it = kb_for(kb, tid, kb_i32(kb, MD_KEYS * C), kb_i32(kb, MD_THREADS));
        V idx = kb_get(kb, it);
        stage_chunk(kb, m, off, src, ld, col, kb_div(kb, idx, kb_i32(kb, C)), kb_rem(kb, idx, kb_i32(kb, C)), yes, k0, t0, k1, cbase);
        kb_endfor(kb);
        return;
    }
    int step = MD_THREADS / C;
    V c = kb_rem(kb, tid, kb_i32(kb, C)), r0 = kb_div(kb, tid, kb_i32(kb, C));
    for (int u = 0; u * step < MD_KEYS; u++) {
        V kk = kb_add(kb, r0, kb_i32(kb, u * step));
        stage_chunk(kb, m, off, src, ld, col, kk, c, step > MD_KEYS ? kb_lt(kb, kk, kb_i32(kb, MD_KEYS)) : yes, k0, t0, k1, cbase);
    }
}

/* cp.async the key slots [t0, t0 + 64) ∩ [.., k1) of this block (from k0)
 * into the K tile at shared-memory byte offset `off` (rows [c_kv | k_pe]; no
 * key → zeros). */
static void stage_tile(KB *kb, const Dec *m, V off, V ckv, V kpe, V k0, V t0, V k1, V cbase)
{
    int CR = (int)(m->R / 8), CP = (int)(m->dr / 8); /* 16-byte chunks per row of c_kv, of k_pe */
    stage_part(kb, m, off, ckv, m->R, CR, 0, k0, t0, k1, cbase);
    if (CP)
        stage_part(kb, m, off, kpe, m->dr, CP, CR, k0, t0, k1, cbase);
}

static bool emit_decode(Codegen *cg, const Dec *m, char **ptx, Diag *d)
{
    assert(m->R / MD_GROUPS / 8 <= MD_MAX_CALLS * MMA_MAX_NI);
    KParamKind pk[10] = {KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_PTR, KP_I32, KP_I32, KP_I32, KP_PTR};
    KB *kb = kb_new(cg->ctx, m->K ? "sparse_mla_decode" : "mla_decode", pk, m->K ? 10 : 9, MD_THREADS);
    V qlp = kb_param(kb, 0), qpp = kb_param(kb, 1), ckv = kb_param(kb, 2), kpe = kb_param(kb, 3), posp = kb_param(kb, 4);
    V scr = kb_param(kb, 5), ctx = kb_param(kb, 6), rows = kb_param(kb, 7), seq = kb_param(kb, 8);
    V selp = m->K ? kb_param(kb, 9) : NULL; /* scr is the bf16 output when direct */
    /* grid (splits, rows); direct: (rows) — grid y is too small for prefill's batch·seq rows */
    V s = m->direct ? kb_i32(kb, 0) : nvvm_ctaid_x(kb), r = m->direct ? nvvm_ctaid_x(kb) : nvvm_ctaid_y(kb);
    V tid = nvvm_tid_x(kb), warp = nvvm_warp(kb), lane = nvvm_lane(kb);
    V grp = kb_rem(kb, warp, kb_i32(kb, MD_GROUPS)), half = kb_div(kb, warp, kb_i32(kb, MD_GROUPS));
    V lead = kb_eq(kb, half, kb_i32(kb, 0)); /* half 0 stores what both halves computed alike */
    V zero = kb_f32(kb, 0), ninf = kb_f32(kb, -INFINITY);
    int64_t W = m->R + m->dr, CW = m->R / MD_GROUPS; /* row width; output channels per warp */
    int kd0 = (int)(W / 16 / 2) * 16;                /* S depth of half 0; half 1 takes W - kd0 */
    int nch = (int)((CW / 8 + MMA_MAX_NI - 1) / MMA_MAX_NI); /* P·V calls of ≤ 8 n-tiles */
    V nsplit = splits_in_use(kb, m, rows);
    kb_if(kb, kb_and(kb, kb_lt(kb, r, rows), kb_lt(kb, s, nsplit)));
    {
        V b = kb_div(kb, r, seq); /* query row r = (b, t): at position pos[b] + t */
        V p = kb_add(kb, kb_load(kb, kb->i32, kb_gep(kb, kb->i32, posp, b)), kb_rem(kb, r, seq));
        V cbase = kb_mul(kb, i64(kb, b), i64(kb, ctx));
        /* this split's key slots [k0, k1): dense slots are positions 0..min(p, ctx-1) */
        V nk = m->K ? kb_i32(kb, m->K) : kb_add(kb, kb_min(kb, p, kb_sub(kb, ctx, kb_i32(kb, 1))), kb_i32(kb, 1));
        V span = kb_mul(kb, nsplit, kb_i32(kb, MD_KEYS));
        V len = kb_div(kb, kb_sub(kb, kb_add(kb, nk, span), kb_i32(kb, 1)), span);
        len = kb_mul(kb, len, kb_i32(kb, MD_KEYS));
        V k0 = kb_mul(kb, s, len), k1 = kb_min(kb, kb_add(kb, k0, len), nk);
        V ntiles = kb_select(kb, kb_gt(kb, k1, k0),
                             kb_div(kb, kb_add(kb, kb_sub(kb, k1, k0), kb_i32(kb, MD_KEYS - 1)), kb_i32(kb, MD_KEYS)), kb_i32(kb, 0));
        /* Q = [q_lat | q_pe] rows 0..15 (heads ≥ H zero) */
        int64_t CH = W / 8, CR = m->R / 8;
        KVar qi = kb_for(kb, tid, kb_i32(kb, 16 * (int)CH), kb_i32(kb, MD_THREADS));
        {
            V idx = kb_get(kb, qi);
            V h = kb_div(kb, idx, kb_i32(kb, (int)CH)), c = kb_rem(kb, idx, kb_i32(kb, (int)CH));
            V hok = kb_lt(kb, h, kb_i32(kb, (int)m->H));
            V hh = i64(kb, kb_min(kb, h, kb_i32(kb, (int)m->H - 1)));
            V isc = kb_lt(kb, c, kb_i32(kb, (int)CR));
            V gl = kb_gep(kb, kb->bf16, qlp, kb_add(kb, kb_mul(kb, i64(kb, r), kb_i64(kb, m->H * m->R)),
                                                  kb_add(kb, kb_mul(kb, hh, kb_i64(kb, m->R)), i64(kb, kb_mul(kb, kb_select(kb, isc, c, kb_i32(kb, 0)), kb_i32(kb, 8))))));
            V pc = kb_mul(kb, kb_select(kb, isc, kb_i32(kb, 0), kb_sub(kb, c, kb_i32(kb, (int)CR))), kb_i32(kb, 8));
            V gp = kb_gep(kb, kb->bf16, qpp, kb_add(kb, kb_mul(kb, i64(kb, r), kb_i64(kb, m->H * m->qs)),
                                                  kb_add(kb, kb_mul(kb, hh, kb_i64(kb, m->qs)), i64(kb, kb_add(kb, pc, kb_i32(kb, (int)m->qo))))));
            V sp = kb_smem(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, m->ldq)), kb_mul(kb, c, kb_i32(kb, 16))));
            nvvm_cp_async16(kb, sp, kb_select(kb, isc, gl, gp), kb_select(kb, hok, kb_i32(kb, 16), kb_i32(kb, 0)));
        }
        kb_endfor(kb);
        nvvm_cp_async_commit(kb); /* Q alone: its fragments are read before tile 0 lands */
        if (m->K) {
            stage_sel(kb, m, selp, r, k0, k1, p, ctx);
            nvvm_bar_sync(kb);
        }
        kb_if(kb, kb_gt(kb, ntiles, kb_i32(kb, 0)));
        stage_tile(kb, m, kb_i32(kb, m->off_kv), ckv, kpe, k0, k0, k1, cbase);
        kb_endif(kb);
        nvvm_cp_async_commit(kb);
        /* this warp's half of Q as A fragments (k-steps of 16 from half·kd0; half 0's spare one unused) */
        int ks0 = kd0 / 16, ks1 = (int)(W - kd0) / 16, ksq = ks0 > ks1 ? ks0 : ks1;
        bool qreg = ksq <= MD_QREG_KSTEPS;
        V qa[MD_QREG_KSTEPS][4];
        if (qreg) {
            nvvm_cp_async_wait(kb, 1); /* Q landed (tile 0 may not have) */
            nvvm_bar_sync(kb);
            Tile qt = {kb_i32(kb, 0), m->ldq, false};
            V kq = kb_mul(kb, half, kb_i32(kb, kd0));
            for (int ks = 0; ks < ksq; ks++)
                mma_load_a(kb, qt, kb_i32(kb, 0), kb_add(kb, kq, kb_i32(kb, 16 * ks)), qa[ks]);
        }

        KVar mrow[2], lrow[2]; /* this thread's two accumulator rows: lane/4 and lane/4 + 8 */
        for (int hf = 0; hf < 2; hf++)
            mrow[hf] = kb_var(kb, kb->f32, ninf), lrow[hf] = kb_var(kb, kb->f32, zero);
        KVar acc[MD_MAX_CALLS][MMA_MAX_MI][MMA_MAX_NI][4]; /* [call][0][n-tile][e]: O (this half's keys), R/4 channels */
        for (int c = 0; c < nch; c++)
            for (int j = 0; j < MMA_MAX_NI; j++)
                for (int e = 0; e < 4; e++)
                    acc[c][0][j][e] = kb_var(kb, kb->f32, zero);

        KVar ti = kb_for(kb, kb_i32(kb, 0), ntiles, kb_i32(kb, 1));
        {
            V t = kb_get(kb, ti);
            V buf = kb_rem(kb, t, kb_i32(kb, 2));
            V cur = kb_add(kb, kb_i32(kb, m->off_kv), kb_mul(kb, buf, kb_i32(kb, MD_KEYS * m->ldq)));
            V nxt = kb_add(kb, kb_i32(kb, m->off_kv), kb_mul(kb, kb_sub(kb, kb_i32(kb, 1), buf), kb_i32(kb, MD_KEYS * m->ldq)));
            V tn = kb_add(kb, t, kb_i32(kb, 1));
            kb_if(kb, kb_lt(kb, tn, ntiles));
            /* the next tile into the other buffer (its last readers passed the barrier ending t-1) */
            stage_tile(kb, m, nxt, ckv, kpe, k0, kb_add(kb, k0, kb_mul(kb, tn, kb_i32(kb, MD_KEYS))), k1, cbase);
            kb_endif(kb);
            nvvm_cp_async_commit(kb);
            nvvm_cp_async_wait(kb, 1); /* tile t (and Q) landed */
            nvvm_bar_sync(kb);

            /* S = Q·Kᵀ for this group's 16 keys: this half's depth, then the other half's added */
            KVar sacc[MMA_MAX_MI][MMA_MAX_NI][4];
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < 4; e++)
                    sacc[0][j][e] = kb_var(kb, kb->f32, zero);
            Tile qt = {kb_i32(kb, 0), m->ldq, false}, kt = {cur, m->ldq, false};
            V n0 = kb_mul(kb, grp, kb_i32(kb, 16));
            kb_if(kb, lead);
            if (qreg)
                mma_warp_tile_ra(kb, qa, ks0, kt, n0, kb_i32(kb, 0), 2, sacc);
            else
                mma_warp_tile(kb, qt, kt, kb_i32(kb, 0), n0, kb_i32(kb, 0), 1, 2, kd0, sacc);
            kb_else(kb);
            if (qreg)
                mma_warp_tile_ra(kb, qa, ks1, kt, n0, kb_i32(kb, kd0), 2, sacc);
            else
                mma_warp_tile(kb, qt, kt, kb_i32(kb, 0), n0, kb_i32(kb, kd0), 1, 2, (int)W - kd0, sacc);
            kb_endif(kb);
            V xme = kb_mul(kb, kb_add(kb, kb_mul(kb, warp, kb_i32(kb, 32)), lane), kb_i32(kb, MD_XCH));
            V xpeer = kb_mul(kb, kb_add(kb, kb_mul(kb, kb_rem(kb, kb_add(kb, warp, kb_i32(kb, MD_GROUPS)), kb_i32(kb, MD_WARPS)),
                                                   kb_i32(kb, 32)), lane), kb_i32(kb, MD_XCH));
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < 4; e++)
                    kb_store(kb, kb_get(kb, sacc[0][j][e]), area_f32(kb, m->off_x, kb_add(kb, xme, kb_i32(kb, 4 * j + e))));
            nvvm_bar_sync(kb);
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < 4; e++)
                    kb_set(kb, sacc[0][j][e], kb_add(kb, kb_get(kb, sacc[0][j][e]),
                                                     kb_load(kb, kb->f32, area_f32(kb, m->off_x, kb_add(kb, xpeer, kb_i32(kb, 4 * j + e))))));
            V sv[2][4], tmax[2] = {ninf, ninf}, vmask = NULL;
            V tk0 = kb_add(kb, k0, kb_mul(kb, t, kb_i32(kb, MD_KEYS))); /* slot of the tile's key 0 */
            if (m->K) { /* which of the group's 16 keys exist: lane l (and l + 16) checks key l, one ballot */
                V i = kb_add(kb, tk0, kb_add(kb, n0, kb_and(kb, lane, kb_i32(kb, 15)))), kv;
                V in = kb_lt(kb, i, k1);
                key_at(kb, m, kb_select(kb, in, i, k0), k0, &kv);
                vmask = nvvm_ballot(kb, kb_and(kb, in, kv));
            }
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < 4; e++) {
                    V colg = mma_acc_col(kb, j, e), ok; /* column within the group's 16 keys */
                    if (m->K)
                        ok = kb_ne(kb, kb_and(kb, LLVMBuildLShr(kb->b, vmask, colg, ""), kb_i32(kb, 1)), kb_i32(kb, 0));
                    else
                        ok = kb_lt(kb, kb_add(kb, tk0, kb_add(kb, n0, colg)), k1);
                    sv[j][e] = kb_select(kb, ok, kb_mul(kb, kb_get(kb, sacc[0][j][e]), kb_f32(kb, m->scale)), ninf);
                    tmax[e / 2] = kb_max(kb, tmax[e / 2], sv[j][e]);
                }
            V q4 = kb_rem(kb, lane, kb_i32(kb, 4)), lrow4 = kb_div(kb, lane, kb_i32(kb, 4));
            for (int hf = 0; hf < 2; hf++) {
                tmax[hf] = mma_quad_max(kb, tmax[hf]);
                kb_if(kb, kb_and(kb, lead, kb_eq(kb, q4, kb_i32(kb, 0))));
                kb_store(kb, tmax[hf], area_f32(kb, m->off_red, kb_add(kb, kb_mul(kb, grp, kb_i32(kb, 16)), kb_add(kb, lrow4, kb_i32(kb, 8 * hf)))));
                kb_endif(kb);
            }
            nvvm_bar_sync(kb);
            V base[2], alpha[2], psum[2] = {zero, zero};
            for (int hf = 0; hf < 2; hf++) {
                V row = kb_add(kb, lrow4, kb_i32(kb, 8 * hf));
                V mx = kb_get(kb, mrow[hf]);
                for (int w = 0; w < MD_GROUPS; w++)
                    mx = kb_max(kb, mx, kb_load(kb, kb->f32, area_f32(kb, m->off_red, kb_add(kb, kb_i32(kb, 16 * w), row))));
                base[hf] = kb_select(kb, kb_eq(kb, mx, ninf), zero, mx); /* no key yet: exp(-inf - 0) = 0 */
                alpha[hf] = kb_exp(kb, kb_sub(kb, kb_get(kb, mrow[hf]), base[hf]));
                kb_set(kb, mrow[hf], mx);
            }
            for (int j = 0; j < 2; j++)
                for (int e = 0; e < 4; e += 2) {
                    V p0 = kb_exp(kb, kb_sub(kb, sv[j][e], base[e / 2])), p1 = kb_exp(kb, kb_sub(kb, sv[j][e + 1], base[e / 2]));
                    psum[e / 2] = kb_add(kb, psum[e / 2], kb_add(kb, p0, p1));
                    V row = kb_add(kb, lrow4, kb_i32(kb, 8 * (e / 2)));
                    V col = kb_add(kb, n0, mma_acc_col(kb, j, e));
                    V at = kb_add(kb, kb_i32(kb, m->off_p), kb_add(kb, kb_mul(kb, row, kb_i32(kb, m->ldp)), kb_mul(kb, col, kb_i32(kb, 2))));
                    kb_if(kb, lead);
                    kb_store(kb, kb_pack_bf16x2(kb, p0, p1), kb_gep(kb, kb->i32, kb_smem(kb, at), kb_i32(kb, 0)));
                    kb_endif(kb);
                }
            for (int hf = 0; hf < 2; hf++) {
                psum[hf] = mma_quad_sum(kb, psum[hf]);
                kb_if(kb, kb_and(kb, lead, kb_eq(kb, q4, kb_i32(kb, 0))));
                kb_store(kb, psum[hf], area_f32(kb, m->off_red, kb_add(kb, kb_i32(kb, 16 * MD_GROUPS), kb_add(kb, kb_mul(kb, grp, kb_i32(kb, 16)), kb_add(kb, lrow4, kb_i32(kb, 8 * hf))))));
                kb_endif(kb);
            }
            nvvm_bar_sync(kb);
            for (int hf = 0; hf < 2; hf++) {
                V row = kb_add(kb, lrow4, kb_i32(kb, 8 * hf));
                V l = kb_mul(kb, kb_get(kb, lrow[hf]), alpha[hf]);
                for (int w = 0; w < MD_GROUPS; w++)
                    l = kb_add(kb, l, kb_load(kb, kb->f32, area_f32(kb, m->off_red, kb_add(kb, kb_i32(kb, 16 * MD_GROUPS + 16 * w), row))));
                kb_set(kb, lrow[hf], l);
            }
            /* O = alpha·O + P·V on this group's channels over this half's 32 keys */
            Tile pt = {kb_i32(kb, m->off_p), m->ldp, false}, vt = {cur, m->ldq, true};
            for (int c = 0; c < nch; c++) {
                int ni = (int)(CW / 8 - c * MMA_MAX_NI);
                ni = ni > MMA_MAX_NI ? MMA_MAX_NI : ni;
                for (int j = 0; j < ni; j++)
                    for (int e = 0; e < 4; e++)
                        kb_set(kb, acc[c][0][j][e], kb_mul(kb, kb_get(kb, acc[c][0][j][e]), alpha[e / 2]));
                V on = kb_add(kb, kb_mul(kb, grp, kb_i32(kb, (int)CW)), kb_i32(kb, c * MMA_MAX_NI * 8));
                mma_warp_tile(kb, pt, vt, kb_i32(kb, 0), on, kb_mul(kb, half, kb_i32(kb, MD_KEYS / 2)), 1, ni, MD_KEYS / 2, acc[c]);
            }
            nvvm_bar_sync(kb); /* buffers, P and the reductions are rewritten next tile */
        }
        kb_endfor(kb);
        nvvm_cp_async_wait(kb, 0);
        /* O = the two halves' sum: half 1 passes its accumulators through the
         * (now idle) key buffers, f32 [16][R]; half 0 adds them and stores */
        nvvm_bar_sync(kb);
        for (int pass = 0; pass < 2; pass++) {
            kb_if(kb, pass ? lead : kb_eq(kb, half, kb_i32(kb, 1)));
            for (int c = 0; c < nch; c++) {
                int ni = (int)(CW / 8 - c * MMA_MAX_NI);
                ni = ni > MMA_MAX_NI ? MMA_MAX_NI : ni;
                for (int j = 0; j < ni; j++)
                    for (int e = 0; e < 4; e++) {
                        V row = kb_add(kb, kb_div(kb, lane, kb_i32(kb, 4)), kb_i32(kb, 8 * (e / 2)));
                        V col = kb_add(kb, kb_add(kb, kb_mul(kb, grp, kb_i32(kb, (int)CW)), kb_i32(kb, c * MMA_MAX_NI * 8)), mma_acc_col(kb, j, e));
                        V at = area_f32(kb, m->off_kv, kb_add(kb, kb_mul(kb, row, kb_i32(kb, (int)m->R)), col));
                        if (pass)
                            kb_set(kb, acc[c][0][j][e], kb_add(kb, kb_get(kb, acc[c][0][j][e]), kb_load(kb, kb->f32, at)));
                        else
                            kb_store(kb, kb_get(kb, acc[c][0][j][e]), at);
                    }
            }
            kb_endif(kb);
            if (!pass)
                nvvm_bar_sync(kb);
        }
        kb_if(kb, lead);

        V lrow4 = kb_div(kb, lane, kb_i32(kb, 4));
        if (m->direct) { /* out[r][h][c] = O / l (bf16); a row with no key gets 0 */
            V inv[2];
            for (int hf = 0; hf < 2; hf++) {
                V l = kb_get(kb, lrow[hf]);
                inv[hf] = kb_select(kb, kb_gt(kb, l, zero), kb_div(kb, kb_f32(kb, 1.0), l), zero);
            }
            V ob = kb_mul(kb, i64(kb, r), kb_i64(kb, m->H * m->R));
            for (int c = 0; c < nch; c++) {
                int ni = (int)(CW / 8 - c * MMA_MAX_NI);
                ni = ni > MMA_MAX_NI ? MMA_MAX_NI : ni;
                for (int j = 0; j < ni; j++)
                    for (int e = 0; e < 4; e += 2) {
                        V h = kb_add(kb, lrow4, kb_i32(kb, 8 * (e / 2)));
                        V col = kb_add(kb, kb_add(kb, kb_mul(kb, warp, kb_i32(kb, (int)CW)), kb_i32(kb, c * MMA_MAX_NI * 8)), mma_acc_col(kb, j, e));
                        V o0 = kb_mul(kb, kb_get(kb, acc[c][0][j][e]), inv[e / 2]);
                        V o1 = kb_mul(kb, kb_get(kb, acc[c][0][j][e + 1]), inv[e / 2]);
                        kb_if(kb, kb_lt(kb, h, kb_i32(kb, (int)m->H)));
                        V at = kb_add(kb, ob, i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, (int)m->R)), col)));
                        kb_store(kb, kb_pack_bf16x2(kb, o0, o1), kb_gep(kb, kb->i32, kb_gep(kb, kb->bf16, scr, at), kb_i32(kb, 0)));
                        kb_endif(kb);
                    }
            }
        } else {
            /* partials: scratch[r][s][h] = (O[R], m, l) */
            V pb = kb_mul(kb, kb_add(kb, kb_mul(kb, i64(kb, r), kb_i64(kb, m->gsplits)), i64(kb, s)), kb_i64(kb, m->H * (m->R + 2)));
            for (int c = 0; c < nch; c++) {
                int ni = (int)(CW / 8 - c * MMA_MAX_NI);
                ni = ni > MMA_MAX_NI ? MMA_MAX_NI : ni;
                for (int j = 0; j < ni; j++)
                    for (int e = 0; e < 4; e++) {
                        V h = kb_add(kb, lrow4, kb_i32(kb, 8 * (e / 2)));
                        V col = kb_add(kb, kb_add(kb, kb_mul(kb, warp, kb_i32(kb, (int)CW)), kb_i32(kb, c * MMA_MAX_NI * 8)), mma_acc_col(kb, j, e));
                        kb_if(kb, kb_lt(kb, h, kb_i32(kb, (int)m->H)));
                        kb_store(kb, kb_get(kb, acc[c][0][j][e]),
                                 kb_gep(kb, kb->f32, scr, kb_add(kb, pb, i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, (int)(m->R + 2))), col)))));
                        kb_endif(kb);
                    }
            }
            for (int hf = 0; hf < 2; hf++) {
                V h = kb_add(kb, lrow4, kb_i32(kb, 8 * hf));
                kb_if(kb, kb_and(kb, kb_and(kb, kb_eq(kb, warp, kb_i32(kb, 0)), kb_eq(kb, kb_rem(kb, lane, kb_i32(kb, 4)), kb_i32(kb, 0))),
                                 kb_lt(kb, h, kb_i32(kb, (int)m->H))));
                V at = kb_add(kb, pb, i64(kb, kb_add(kb, kb_mul(kb, h, kb_i32(kb, (int)(m->R + 2))), kb_i32(kb, (int)m->R))));
                kb_store(kb, kb_get(kb, mrow[hf]), kb_gep(kb, kb->f32, scr, at));
                kb_store(kb, kb_get(kb, lrow[hf]), kb_gep(kb, kb->f32, scr, kb_add(kb, at, kb_i64(kb, 1))));
                kb_endif(kb);
            }
        }
        kb_endif(kb); /* lead */
    }
    kb_endif(kb);
    return kb_emit_ptx(cg, kb, ptx, d);
}

bool k_mla_decode_tc(Codegen *cg, const Node *n, SymExpr flops, SymExpr bytes, KOut *out, Diag *d)
{
    Dec m = dec_of(n);
    assert(mla_decode_tc_fits(n, cg->target));
    bool step = is_step(n);
    if (!step && node_int(n, "splits", 1) != 1)
        return diag_fail(d, "mla_attn: prefill on tensor cores (tc 1) has no key splits (splits %lld given)",
                         (long long)node_int(n, "splits", 1));
    SymExpr rows = node_rows_expr(n), seq_e = n->dim[1].sym ? sym_mono(MONO_S, 1) : sym_const(n->dim[1].n);
    char name[96];
    char sp[16];
    if (m.splits)
        snprintf(sp, sizeof sp, "s%d", m.splits);
    else
        snprintf(sp, sizeof sp, "sauto");
    snprintf(name, sizeof name, "%smla_%s_h%lld_r%lld_dr%lld_%s", m.K ? "sparse_" : "", step ? "decode" : "prefill_tc",
             (long long)m.H, (long long)m.R, (long long)m.dr, sp);
    if (m.K)
        snprintf(name + strlen(name), sizeof name - strlen(name), "_k%lld", (long long)m.K);
    KLaunch *l = kout_add(out, name, MD_THREADS, m.smem);
    kl_param(l, "tc", 1);
    kl_param(l, "splits", m.splits);
    l->grid[0] = m.direct ? rows : sym_const(m.gsplits);
    l->grid[1] = m.direct ? sym_const(1) : rows;
    /* cost: mla_attn's (k_mla_attn) with the partials written instead of
     * the bf16 output (mla_combine writes that) unless direct; auto splits
     * counted as 1 (the fewest the call may use) */
    int64_t part = (m.splits ? m.splits : 1) * m.H * (m.R + 2) * 4;
    l->flops = flops;
    l->bytes = m.direct ? bytes : sym_add(bytes, sym_scale(rows, part - 2 * m.H * m.R));
    kl_arg_src(l, 0);
    kl_arg_src(l, 1);
    kl_arg_src(l, 4);
    kl_arg_src(l, 5);
    kl_arg_src(l, 6);
    if (m.direct)
        kl_arg_out(l);
    else
        kl_arg_scratch(l);
    kl_arg_i32(l, sym_mono(MONO_C, 1));
    kl_arg_i32(l, rows);
    kl_arg_i32(l, seq_e);
    if (m.K)
        kl_arg_src(l, 7);
    if (!emit_decode(cg, &m, &l->ptx, d))
        return false;
    if (m.direct)
        return true;
    snprintf(name, sizeof name, "mla_combine_h%lld_r%lld_%s", (long long)m.H, (long long)m.R, sp);
    SplitCombine sc = {.entry = "mla_combine", .H = m.H, .W = m.R, .splits = m.splits, .gsplits = m.gsplits,
                       .auto_blocks = MD_AUTO_BLOCKS, .max_splits = MD_MAX_SPLITS, .units_per_row = 1};
    return kout_split_combine(cg, out, &sc, name, rows, d);
}
