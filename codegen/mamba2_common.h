/* mamba2_common.h — what the Mamba2 kernels share (see k_mamba2.c for the
 * algorithm and the conv ring layout). */
#pragma once
#include "ir.h"
#include "kb.h"
#include "mma.h"
#include "passes.h"

typedef struct Mx {
    int64_t H, P, N, G, W;       /* heads, headdim, d_state, groups, conv width */
    int64_t Di, GN, CD, Din, CP; /* d_inner, G*N, conv channels, zxbcdt width, channels per head (P + 2N) */
    float eps, dt_min, dt_max;   /* norm epsilon and dt clamp */
    bool nbg;                    /* norm_before_gate */
} Mx;

Mx mx_of(const Node *n);
/* xBC channel of local channel ch (0..CP) of head h: x of the head, then B, C of its group. */
V head_channel(KB *kb, const Mx *m, V h, V ch);
/* ((p % W) + W) % W. */
V ring_slot(KB *kb, const Mx *m, V p);
/* silu(conv1d) of xBC channel gch at row t of this call for sequence b, rounded to bf16. */
V conv_silu(KB *kb, const Mx *m, V raw, V cw, V cb, V ring, V b, V pos, V seq, V t, V gch);
/* clamp(softplus(raw dt + dt_bias[h])) at zxbcdt row `row`. */
V dt_value(KB *kb, const Mx *m, V raw, V dtb, V h, V row);
/* Stores y (gated by silu(z) unless norm_before_gate) as bf16 at out[row, h*P + p]. */
void store_y(KB *kb, const Mx *m, V raw, V out, V row, V h, V p, V y);
/* &((float *)smem)[base_floats + idx]. */
V smem_f32(KB *kb, int base_floats, V idx);

/* The tensor-core scan (k_mamba2_tc.c): supported shapes, shared memory, emitters.
 * emit_scan_tc's `segs` is the schedule's segment count (0: per call; k_mamba2_seg.c),
 * `stages` its staged-row buffers (2: the next chunk's rows land while this one
 * is computed; 1: they are fetched after its last read, ~97 KB for P 64 N 128,
 * so that two blocks share an SM and cover each other's waits). */
enum { SCAN_TC_CHUNK = 64, SCAN_TC_THREADS = 256 }; /* tokens per chunk, threads per block */
bool scan_tc_supported(const Mx *m, int smem_max);
unsigned scan_tc_smem(const Mx *m, int stages);
/* Blocks of the scan with `stages` an SM of a target with smem_max runs at once: 2 for
 * the one-stage scan where two fit, else 1 (what segs 0 fills: this many on every SM). */
int scan_tc_per_sm(const Mx *m, int stages, int smem_max);
typedef struct Codegen Codegen;
bool emit_scan_tc(Codegen *cg, const Mx *m, int segs, int stages, char **ptx, Diag *d);
bool emit_conv_bc(Codegen *cg, const Mx *m, char **ptx, Diag *d);

/* Pieces of the tensor-core scan that mamba2_seg_state shares (k_mamba2_tc.c).
 * Stage rows: x P | B N | C N | z P, bf16, ldr bytes apart; a prefetch copies
 * the parts of its mask (mamba2_seg_state stages x and B only). */
enum { SCAN_ROW_X = 1, SCAN_ROW_B = 2, SCAN_ROW_C = 4, SCAN_ROW_Z = 8, SCAN_ROW_ALL = 15 };
void scan_prefetch_rows(KB *kb, const Mx *m, int stage, int ldr, unsigned parts, V raw, V scr, V b, V h, V seq, V t0,
                        V st, V tid);
/* Raw dt of head h at row t0 + tid of sequence b (0 past seq). */
V scan_load_dt_raw(KB *kb, const Mx *m, V raw, V b, V h, V seq, V t0, V tid);
/* The x channels' conv inputs of rows ts-(W-1) .. ts-1 (zxbcdt, or the ring before row 0)
 * into the last W-1 rows of the stage at smem byte `stage`. */
void scan_stage_history(KB *kb, const Mx *m, V stage, int ldr, V raw, V ring, V b, V h, V pos, V seq, V ts, V tid);
/* Conv weights [2][W] and biases [2] of x channels 2cq, 2cq+1 of head h. */
void scan_conv_weights(KB *kb, const Mx *m, V cw, V cbias, V h, V cq, V wv[2][8], V bias[2]);
/* silu(conv(x)) of the staged chunk (rows ldr apart) for channel pair cq, row segment seg,
 * into the bf16 tile at smem byte xo (× the f32 vector at byte wo when wo >= 0); the
 * history row before chunk row t (t < 0) at prev + (t + TC)·ldp. */
void scan_conv_x(KB *kb, const Mx *m, V rows, int ldr, V prev, int ldp, V cq, V seg, V wv[2][8], V bias[2], int xo,
                 int ldx, int wo);
/* Warp 0 only: dt (raw at smem byte dtraw), cum = cumsum(dt·A), w_s = exp(cum_T - cum_s)·dt_s
 * into smem bytes dto, cumo (skipped when < 0) and wo; returns cum_T. */
V scan_chunk_decay(KB *kb, const Mx *m, V lane, V dtraw, V dtbias, V A, V tc, int dto, int cumo, int wo);

/* The sequence-parallel scan (k_mamba2_seg.c): segments per call, the segment area
 * of the scratch ((batch·H + SEG_SPARE) slots of seg_slot_floats), and the state
 * helpers both launches use (KVar S[MMA_MAX_MI][MMA_MAX_NI][4] in mma.h's layout). */
enum { SEG_MAX = 16, SEG_SPARE = MAMBA2_SEG_SPARE };
int64_t seg_slot_floats(const Mx *m);
unsigned seg_state_smem(const Mx *m);
/* Chunks of a call; segments of a call (schedule segs, 0: auto, so that batch·H·segments
 * blocks fill per_sm blocks on every SM); first chunk of segment k. */
V seg_nchunks(KB *kb, V seq);
V seg_count(KB *kb, const Mx *m, int segs, int per_sm, V batch, V seq);
/* This block's (sequence b, head h, segment k) on the 1-D grid of seg_grid blocks. */
void seg_block(KB *kb, const Mx *m, V batch, V *b, V *h, V *k);
/* Blocks of both launches: batch·H·segs, or batch·H + SEG_SPARE for segs 0 (enough for any count). */
SymExpr seg_grid(const Mx *m, int segs);
V seg_first_chunk(KB *kb, V k, V nseg, V nchunks);
/* S = ptr[base + tile] (decay NULL) or S = decay·S + ptr[base + tile]; ptr[base + tile] = S. */
void seg_state_load(KB *kb, const Mx *m, V ptr, V base, V sm0, V sn0, int smi, int sni,
                    KVar S[MMA_MAX_MI][MMA_MAX_NI][4], V decay);
void seg_state_store(KB *kb, const Mx *m, V ptr, V base, V sm0, V sn0, int smi, int sni,
                     KVar S[MMA_MAX_MI][MMA_MAX_NI][4]);
/* S_in(k) of segment k of sequence b, head h, folded from the segment area. */
void seg_state_fold(KB *kb, const Mx *m, V sega, V b, V h, V nseg, V k, V sm0, V sn0, int smi, int sni,
                    KVar S[MMA_MAX_MI][MMA_MAX_NI][4]);
bool emit_seg_state(Codegen *cg, const Mx *m, int segs, int per_sm, char **ptx, Diag *d);
