/* lower.c — lowering to kernels: each compute node gets the kernel template
 * that implements it (the op table's KERNEL column) and a default schedule.
 * Schedules are plain attributes, so --dump shows them and the autotuner can
 * replace them; codegen/k_*.c validate and consume them.
 *
 * Default schedules (heuristics, documented in docs/kernels.md):
 *   gemm     prefill: 128x128x64 tile, 8 warps (2x4), 3 stages (measured best of
 *            bk 32/64, stages 3/4, 256x128 and 128x256 tiles on an H100; docs/kernels.md)
 *   gemv     decode (M = batch, small): 16-row tiles, 4 warps as wn n8-tiles × wk K-splits,
 *            wn/wk chosen for >= 264 blocks (two per SM) where N allows
 *   rmsnorm  one warp per row, 4 rows per block
 *   embed    128 threads per row
 *   mhc      prefill: 256 threads, a block per few tokens sharing the φ loads (4 streams: pre 8,
 *            pre that also writes mhc_coef 3, post 4; at most 96 fp32 sums per thread); decode:
 *            512 threads, one token; collapse: one token
 *   mla_absorb tc 1: a tensor-core GEMM per head, 64-row tiles (SIMT where the shape does not fit)
 *   slice, rope, hybrid_mix: elementwise, no schedule
 *   mla_attn   prefill: tc 1: a block per query row, its heads as one m16 tensor-core
 *              tile over its keys (all j <= pos+t, or the selection), output written directly;
 *              warps 4 for the SIMT kernel used where that does not fit (a block per (query, head));
 *              decode: tc 1, splits 0 = auto (tensor cores, keys split over blocks, then combined;
 *              the split count chosen per call from the batch: 16 at batch 1, 2 at 64: about 128 blocks)
 *   attn       prefill: a block per (64 queries, head), 4 warps of 16 query rows, key tiles of 32 (bn; the
 *              fastest tested schedule at b1 s4096 h16 d128 on an H100: 378 µs vs 494 at bn 64; docs/kernels.md);
 *              decode: keys split over blocks, splits 0 = auto (about 256 blocks per call), then combined
 *   index_topk a block per query: its scores in shared memory, radix select of the top k;
 *              decode: split (index_score over all SMs into a 4*batch*ctx scratch, then index_select)
 *   moe      route (a thread per token) → perm (one block) → grouped gate/up GEMM → grouped down GEMM
 *            (swiglu prologue, routing weight in the epilogue) → combine; tiles 64x128 (2x2 warps),
 *            decode 16x64 (1x4); scratch for the routing, the permutation, H and Y
 *   mamba2   prefill: B, C conv once per group into scratch, then the chunked scan
 *            (chunk = min(YAML chunk, 64), 256 threads), then the grouped norm;
 *            segs 0: the tensor-core scan splits each sequence into segments per call
 *            so that batch·heads·segments blocks fill the SMs (1 when batch·heads already
 *            does; codegen/k_mamba2_seg.c), the scratch holding batch·heads + 256 states;
 *            segs 1 (no segment launch at all) when 2·heads > 132, where segs 0 would give 1
 *            at every batch on an H100 (b8 s4096 h80: 2.54 ms either way, docs/kernels.md),
 *            and there stages 1 (the staged rows single-buffered, two blocks an SM), else 2
 *            decode:  single-step state update, 4 warps per 16 state rows (psplit = headdim/16)
 *   mamba1_conv  32 tokens per thread in prefill (tchunk), 1 in decode; 128 channels per block
 *   mamba1   prefill: chunked scan, 16 warps per 16 channels (cw), two time chunks per warp
 *            decode:  mamba1_step, a thread per channel */
#include <string.h>

#include "passes.h"

enum { LOWER_SMS = 132 }; /* the H100 SXM's SMs: the GPU the defaults are measured on */

/* gemv's (wn, wk) for a decode matmul run on `rows` rows.
 * Fewer than LOWER_WIDE_ROWS: 4 warps, 8 (more K splits) when even one
 * n8 tile per block gives few blocks, the widest blocks that still give
 * 264 (two per SM). More rows: every block stages and normalises its 16
 * rows again for its own columns, so blocks get as wide as 8 warps of n8
 * tiles allow while 24 column blocks remain (H100, mamba2-130m at batch
 * 64: what msac tune picked for its three gemvs; passes.h has the steps). */
void lower_gemv_schedule(Graph *g, Node *n, int rows)
{
    int64_t N = n->src[1]->dim[0].n, Kp = (n->src[1]->dim[1].n + 15) / 16 * 16;
    int warps, wn;
    if (rows < LOWER_WIDE_ROWS) {
        warps = N / 8 < 264 ? 8 : 4;
        wn = N / 32 >= 264 ? 4 : N / 16 >= 264 ? 2 : 1;
    } else {
        warps = 8;
        wn = 8;
        while (wn > 1 && (N + 8 * wn - 1) / (8 * wn) < 24)
            wn /= 2;
    }
    int wk = warps / wn;
    while (wk > 1 && (Kp % (16 * wk)))
        wk /= 2;
    wn = warps / wk;
    node_set_int(g, n, "wn", wn);
    node_set_int(g, n, "wk", wk);
}

bool pass_lower(Graph *g, Diag *d)
{
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        const OpInfo *oi = &op_info[n->op];
        if (n->dead || (oi->flags & (OPF_LEAF | OPF_AUX))) /* an aux value is written by its src[0]'s kernel */
            continue;
        if (!strcmp(oi->kernel, "-"))
            return diag_fail(d, "%%%s: op '%s' has no GPU kernel; it must be fused into a neighbour first "
                                "(is the pattern around it what fuse-scan / fuse-epilogue expect?)",
                             n->name ? n->name : "?", oi->name);
        bool dec = !node_has_sym(n, SYM_SEQ);
        node_set_str(g, n, "kernel", oi->kernel); /* the op table's template; overridden below where the shape picks */
        switch (n->op) {
        case OP_matmul:
            if (dec) { /* few rows: stream the weight through a GEMV-shaped kernel */
                node_set_str(g, n, "kernel", "gemv");
                lower_gemv_schedule(g, n, 1);
                break;
            }
            node_set_int(g, n, "bm", 128);
            node_set_int(g, n, "bn", 128);
            node_set_int(g, n, "bk", 64);
            node_set_int(g, n, "wm", 2);
            node_set_int(g, n, "wn", 4);
            node_set_int(g, n, "stages", 3);
            break;
        case OP_rmsnorm:
            node_set_int(g, n, "rows", 4);
            break;
        case OP_embed:
            node_set_int(g, n, "threads", 128);
            break;
        case OP_mamba1_conv:
            if (!dec) /* decode: one token, one chunk */
                node_set_int(g, n, "tchunk", 32);
            break;
        case OP_mamba1_mixer:
            if (dec)
                node_set_str(g, n, "kernel", "mamba1_step");
            else {
                node_set_int(g, n, "warps", 16);
                node_set_int(g, n, "cw", 16);
            }
            break;
        case OP_mamba2_mixer:
            if (dec) {
                int64_t P = node_int(n, "headdim", 0);
                node_set_str(g, n, "kernel", "mamba2_step");
                node_set_int(g, n, "psplit", P % 16 == 0 ? P / 16 : 1);
            } else {
                int64_t c = node_int(n, "chunk", 64), H = node_int(n, "heads", 1);
                int64_t bc = 2 * node_int(n, "groups", 1) * node_int(n, "dstate", 0) * 2; /* B, C bf16 per token */
                /* a segment state slot: headdim × dstate f32 and its log decay (codegen/k_mamba2_seg.c) */
                int64_t slot = (node_int(n, "headdim", 0) * node_int(n, "dstate", 0) + 4) * 4;
                char sc[96];
                snprintf(sc, sizeof sc, "%lld*batch*seq+%lld*batch+%lld", (long long)bc, (long long)(H * slot),
                         (long long)(MAMBA2_SEG_SPARE * slot));
                node_set_str(g, n, "kernel", "mamba2_scan");
                node_set_int(g, n, "kchunk", c < 64 ? c : 64);
                node_set_int(g, n, "threads", 256);
                /* segments per sequence chosen per call from batch·heads (0), except where the heads
                 * alone fill half the SMs of an H100 (132): that choice would always be one segment */
                node_set_int(g, n, "segs", 2 * H > LOWER_SMS ? 1 : 0);
                /* there too the blocks (batch·heads) fill the SMs from batch 2 on: one stage of staged
                 * rows, two blocks an SM covering each other's waits (k_mamba2_tc.c); else two stages.
                 * H100, h80 s4096: b8 1.998–2.054 ms against 2.186–2.189 with two stages; b1 0.499
                 * against 0.365 (80 blocks: nothing covers the waits), docs/kernels.md */
                node_set_int(g, n, "stages", 2 * H > LOWER_SMS ? 1 : 2);
                /* silu(conv(B, C)), computed once per group; then the segment states */
                node_set_str(g, n, "scratch", sc);
            }
            break;
        case OP_mhc_pre:
        case OP_mhc_post:
        case OP_mhc_collapse: {
            /* prefill: φ read once per block of tokens, as many as 96 fp32 sums per thread allow (≤ 8) */
            int64_t ns = node_int(n, "streams", 1);
            /* pre projects onto φ_pre, or onto every row when it also writes mhc_coef; post onto φ_post, φ_res */
            int64_t rows = n->op == OP_mhc_pre && !node_int(n, "coef", 0) ? ns : n->op == OP_mhc_pre ? 2 * ns + ns * ns
                                                                                                      : ns + ns * ns;
            int64_t sums = 1 + rows;
            int64_t tok = dec || n->op == OP_mhc_collapse ? 1 : 96 / sums < 8 ? 96 / sums : 8;
            /* decode: one token per block, so 512 threads to have the φ loads of the row in flight
             * (sparse-mamba-transformer b1 on the H100: mhc_pre 54 µs at 256 threads, 19.5 at 512;
             * prefill the other way: 66.5 vs 101 µs at 2048 tokens) */
            node_set_int(g, n, "threads", dec ? 512 : 256);
            node_set_int(g, n, "tokens", tok < 1 ? 1 : tok);
            break;
        }
        case OP_mla_absorb_q:
        case OP_mla_absorb_o:
            node_set_int(g, n, "tc", 1); /* a tensor-core GEMM per head where the shape fits (k_mla.c) */
            break;
        case OP_slice:
        case OP_rope:
        case OP_hybrid_mix:
            break;
        case OP_mla_attn:
            node_set_int(g, n, "warps", 4);
            if (dec) { /* tensor cores, keys split per call: splits 0 = about 128 blocks over the batch (k_mla_decode.c) */
                char sc[64];
                snprintf(sc, sizeof sc, "%lld*batch",
                         (long long)(MLA_DECODE_MAX_SPLITS * node_int(n, "heads", 1) * (node_int(n, "rank", 0) + 2) * 4));
                node_set_int(g, n, "tc", 1);
                node_set_int(g, n, "splits", 0);
                node_set_str(g, n, "scratch", sc); /* sized for any splits --schedule may set */
            } else { /* tensor cores, each query row like a decode query, output written directly */
                node_set_int(g, n, "tc", 1);
            }
            break;
        case OP_attn:
            if (dec) { /* scratch for the per-split partials, sized for any splits --schedule may set */
                char sc[64];
                snprintf(sc, sizeof sc, "%lld*batch",
                         (long long)(ATTN_DECODE_MAX_SPLITS * node_int(n, "heads", 1) * (node_int(n, "head_dim", 0) + 2) * 4));
                node_set_int(g, n, "splits", 0);
                node_set_str(g, n, "scratch", sc);
            } else {
                node_set_int(g, n, "warps", 4);
                node_set_int(g, n, "bn", 32);
            }
            break;
        case OP_moe: { /* routing, permutation, grouped gate/up and down GEMMs, combine (codegen/k_moe.c) */
            int64_t k = node_int(n, "topk", 1), F = node_int(n, "dff", 1), D = n->src[0]->dim[n->ndim - 1].n; /* h's */
            int64_t E = node_int(n, "experts", 1);
            /* per assignment: sel_e, sel_w, rank, perm (4 B each), H bf16 [2F], Y f32 [D]; offsets [E+1] */
            char sc[96];
            snprintf(sc, sizeof sc, dec ? "%lld*batch+%lld" : "%lld*batch*seq+%lld", (long long)(k * (16 + 4 * F + 4 * D)),
                     (long long)((4 * (E + 1) + 15) / 16 * 16));
            node_set_str(g, n, "scratch", sc);
            /* grouped tiles: rows per expert are few (tokens·k/E), so short tiles; decode: 16 rows */
            node_set_int(g, n, "bm", dec ? 16 : 64);
            node_set_int(g, n, "bn", dec ? 64 : 128);
            node_set_int(g, n, "bk", 64);
            node_set_int(g, n, "wm", dec ? 1 : 2);
            node_set_int(g, n, "wn", dec ? 4 : 2);
            node_set_int(g, n, "stages", 3);
            break;
        }
        case OP_index_topk: /* prefill threads: codegen's default (k_index.c topk_threads), not tuned */
            if (dec) { /* split: index_score keeps each query's keys here for index_select */
                char sc[64]; /* and select 3's area per query, sized for any select --schedule may set */
                snprintf(sc, sizeof sc, "4*batch*ctx + %d*batch", INDEX_SEG_AREA);
                node_set_str(g, n, "scratch", sc);
                /* index_select: the keys into smem and 4 radix passes (0); 1 and 2 pass over the stored keys
                 * after a top-bit histogram (codegen/k_index_sel.c), correct but slower on the H100 bench
                 * (b64 ctx 32768, one device call: 27.0 µs, 27.8, 32.3; docs/kernels.md); 3 splits the keys over
                 * blocks (k_index_seg.c): 29.3 against 31.9 on filled caches, 56.4 against 27.2 when the keys tie */
                node_set_int(g, n, "select", 0);
                node_set_int(g, n, "cands", 16384);
            }
            break;
        default:
            return diag_fail(d, "%%%s: no lowering rule for op '%s' (kernel '%s')", n->name ? n->name : "?",
                             oi->name, oi->kernel);
        }
    }
    return true;
}
