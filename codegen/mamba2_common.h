/* mamba2_common.h — what the Mamba2 kernels share (see k_mamba2.c for the
 * algorithm and the conv ring layout). */
#pragma once
#include "ir.h"
#include "kb.h"

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

/* The tensor-core scan (k_mamba2_tc.c): supported shapes, shared memory, emitter. */
bool scan_tc_supported(const Mx *m, int smem_max);
unsigned scan_tc_smem(const Mx *m);
typedef struct Codegen Codegen;
bool emit_scan_tc(Codegen *cg, const Mx *m, char **ptx, Diag *d);
bool emit_conv_bc(Codegen *cg, const Mx *m, char **ptx, Diag *d);
