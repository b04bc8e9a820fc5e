/* mamba2_common.c — pieces shared by the Mamba2 kernels (k_mamba2.c,
 * k_mamba2_tc.c): parameters, channel maps, the conv ring, dt, gating. */
#include "mamba2_common.h"

#include "nvvm.h"

Mx mx_of(const Node *n)
{
    Mx m = {.H = node_int(n, "heads", 0), .P = node_int(n, "headdim", 0), .N = node_int(n, "dstate", 0),
            .G = node_int(n, "groups", 1), .W = node_int(n, "d_conv", 4),
            .eps = (float)node_float(n, "eps", 1e-5), .dt_min = (float)node_float(n, "dt_min", 0),
            .dt_max = (float)node_float(n, "dt_max", 3.0e38), .nbg = node_int(n, "norm_before_gate", 0)};
    if (m.dt_max > 3.0e38f)
        m.dt_max = 3.0e38f;
    m.Di = m.H * m.P;
    m.GN = m.G * m.N;
    m.CD = m.Di + 2 * m.GN;
    m.Din = m.Di + m.CD + m.H;
    m.CP = m.P + 2 * m.N;
    return m;
}

/* Channel (in xBC) of local channel ch of head h: x of the head, then B, C of its group. */
V head_channel(KB *kb, const Mx *m, V h, V ch)
{
    V g = kb_div(kb, h, kb_i32(kb, m->H / m->G));
    V xc = kb_add(kb, kb_mul(kb, h, kb_i32(kb, m->P)), ch);
    V bc = kb_add(kb, kb_add(kb, kb_i32(kb, m->Di - m->P), kb_mul(kb, g, kb_i32(kb, m->N))), ch);
    V cc = kb_add(kb, kb_add(kb, kb_i32(kb, m->Di + m->GN - m->P - m->N), kb_mul(kb, g, kb_i32(kb, m->N))), ch);
    return kb_select(kb, kb_lt(kb, ch, kb_i32(kb, m->P)), xc,
                     kb_select(kb, kb_lt(kb, ch, kb_i32(kb, m->P + m->N)), bc, cc));
}

/* Ring slot of position p (may be negative): ((p % W) + W) % W. */
V ring_slot(KB *kb, const Mx *m, V p)
{
    return kb_rem(kb, kb_add(kb, kb_rem(kb, p, kb_i32(kb, m->W)), kb_i32(kb, m->W)), kb_i32(kb, m->W));
}

/* silu(conv1d) of xBC channel gch at absolute row t (0-based within this call)
 * of sequence b, rounded to bf16 (what the reference stores). */
V conv_silu(KB *kb, const Mx *m, V raw, V cw, V cb, V ring, V b, V pos, V seq, V t, V gch)
{
    V acc = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cb, gch));
    for (int k = 0; k < m->W; k++) {
        V u = kb_add(kb, t, kb_i32(kb, k - (m->W - 1)));
        KVar v = kb_var(kb, kb->f32, NULL);
        kb_if(kb, kb_ge(kb, u, kb_i32(kb, 0)));
        {
            V row = kb_add(kb, kb_mul(kb, b, seq), u);
            V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_to_i64(kb, kb_add(kb, gch, kb_i32(kb, m->Di))));
            kb_set(kb, v, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off))));
        }
        kb_else(kb);
        {
            V slot = ring_slot(kb, m, kb_add(kb, pos, u));
            V off = kb_add(kb, kb_mul(kb, kb_add(kb, kb_mul(kb, b, kb_i32(kb, m->CD)), gch), kb_i32(kb, m->W)), slot);
            kb_set(kb, v, kb_load(kb, kb->f32, kb_gep(kb, kb->f32, ring, off)));
        }
        kb_endif(kb);
        V w = kb_load(kb, kb->f32, kb_gep(kb, kb->f32, cw, kb_add(kb, kb_mul(kb, gch, kb_i32(kb, m->W)), kb_i32(kb, k))));
        acc = kb_fma(kb, w, kb_get(kb, v), acc);
    }
    return kb_bf16_to_f32(kb, kb_f32_to_bf16(kb, kb_silu(kb, acc)));
}

/* dt of head h at zxbcdt row `row`: clamp(softplus(raw + dt_bias[h])). */
V dt_value(KB *kb, const Mx *m, V raw, V dtb, V h, V row)
{
    V off = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_to_i64(kb, kb_add(kb, h, kb_i32(kb, m->Di + m->CD))));
    V x = kb_add(kb, kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, off))),
                 kb_load(kb, kb->f32, kb_gep(kb, kb->f32, dtb, h)));
    return kb_min(kb, kb_max(kb, kb_softplus(kb, x), kb_f32(kb, m->dt_min)), kb_f32(kb, m->dt_max));
}

/* Stores y (and gates it by silu(z) unless norm_before_gate) as bf16 at out[row, h*P + p]. */
void store_y(KB *kb, const Mx *m, V raw, V out, V row, V h, V p, V y)
{
    V col = kb_add(kb, kb_mul(kb, h, kb_i32(kb, m->P)), p);
    if (!m->nbg) {
        V zoff = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Din)), kb_to_i64(kb, col));
        V z = kb_bf16_to_f32(kb, kb_load(kb, kb->bf16, kb_gep(kb, kb->bf16, raw, zoff)));
        y = kb_mul(kb, y, kb_silu(kb, z));
    }
    V ooff = kb_add(kb, kb_mul(kb, kb_to_i64(kb, row), kb_i64(kb, m->Di)), kb_to_i64(kb, col));
    kb_store(kb, kb_f32_to_bf16(kb, y), kb_gep(kb, kb->bf16, out, ooff));
}

V smem_f32(KB *kb, int base_floats, V idx)
{
    return kb_gep(kb, kb->f32, kb_smem(kb, kb_i32(kb, base_floats * 4)), idx);
}

