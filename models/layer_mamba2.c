/* layer_mamba2.c — the Mamba2 mixer (state-spaces mamba_ssm / mamba2-minimal):
 *
 *   zxbcdt = in_proj(h)                         [B,S, 2*Di + 2*G*N + H]
 *   z, xBC, dt = split(zxbcdt)                  Di, Di + 2*G*N, H
 *   xBC = silu(conv1d(xBC))                     causal depthwise, width d_conv, bias
 *   x, B, C = split(xBC)                        Di, G*N, G*N
 *   dt = clamp(softplus(dt + dt_bias), dt_limit)
 *   y = ssd(x, dt, A = -exp(A_log), B, C) + D*x chunked scan, fp32 state [H,P,N]
 *   y = rmsnorm_grouped(y * silu(z)) * w        (norm_before_gate: rmsnorm(y)*w*silu(z))
 *   out = out_proj(y)
 *
 * Di = expand*d_model, H = Di/headdim, P = headdim, N = d_state, G = ngroups.
 * Weight names follow Hugging Face's Mamba2ForCausalLM (docs/models.md). */
#include <math.h>
#include <string.h>

#include "layers.h"



const char *const mamba2_options[] = {"d_state", "headdim", "expand", "ngroups", "d_conv", "chunk_size",
                                             "dt_limit", "dt_init_range", "A_init_range", "norm_before_gate",
                                             "conv_bias", NULL};

bool mamba2_parse(LayerCtx *lc, void *vo, Diag *d)
{
    Mamba2Opts *o = vo;
    *o = (Mamba2Opts){.d_state = 128, .headdim = 64, .expand = 2, .ngroups = 1, .d_conv = 4, .chunk_size = 256,
                      .dt_limit = {0.0, INFINITY}, .dt_init = {0.001, 0.1}, .a_init = {1.0, 16.0},
                      .norm_before_gate = false, .conv_bias = true};
    if (!layer_int(lc, "d_state", 1, 1024, &o->d_state, d) || !layer_int(lc, "headdim", 1, 1024, &o->headdim, d) ||
        !layer_int(lc, "expand", 1, 16, &o->expand, d) || !layer_int(lc, "ngroups", 1, 1024, &o->ngroups, d) ||
        !layer_int(lc, "d_conv", 1, 16, &o->d_conv, d) || !layer_int(lc, "chunk_size", 1, 4096, &o->chunk_size, d) ||
        !layer_float_pair(lc, "dt_limit", 0.0, INFINITY, o->dt_limit, d) ||
        !layer_float_pair(lc, "dt_init_range", 1e-6, 10.0, o->dt_init, d) ||
        !layer_float_pair(lc, "A_init_range", 1e-6, 1e6, o->a_init, d) ||
        !layer_bool(lc, "norm_before_gate", &o->norm_before_gate, d) ||
        !layer_bool(lc, "conv_bias", &o->conv_bias, d))
        return false;
    o->norm_eps = lc->model->norm_eps;
    int64_t di = o->expand * lc->model->d_model;
    if (di % o->headdim)
        return layer_fail(lc, "headdim", d, "expand * d_model = %lld is not a multiple of headdim (%lld)",
                          (long long)di, (long long)o->headdim);
    int64_t heads = di / o->headdim;
    if (heads % o->ngroups)
        return layer_fail(lc, "ngroups", d, "the %lld heads are not divisible into ngroups = %lld",
                          (long long)heads, (long long)o->ngroups);
    if (o->chunk_size & (o->chunk_size - 1))
        return layer_fail(lc, "chunk_size", d, "chunk_size must be a power of two, found %lld",
                          (long long)o->chunk_size);
    if (o->d_state % 8 || o->headdim % 8)
        return layer_fail(lc, o->d_state % 8 ? "d_state" : "headdim", d,
                          "d_state and headdim must be multiples of 8 (tensor-core tiles)");
    return true;
}

Node *mamba2_mixer(Builder *b, const Mamba2Opts *o, int64_t D, Node *h, const char *wprefix, const char *sprefix,
                   Node *pos, DType out_dtype)
{
    Graph *g = b->g;
    int64_t Di = o->expand * D, P = o->headdim, H = Di / P, N = o->d_state, G = o->ngroups;
    int64_t CD = Di + 2 * G * N, Din = 2 * Di + 2 * G * N + H, W = o->d_conv;
    char w[160];
#define WNAME(s) (snprintf(w, sizeof w, "%s%s", wprefix, s), w)

    Node *in_w = b_weight(b, "in_proj.w", WNAME("in_proj.weight"), DT_BF16, 2, (int64_t[]){Din, D}, "normal", 0.02, 0);
    Node *zxbcdt = b_op(b, OP_matmul, DT_BF16, "zxbcdt", 2, (Node *[]){h, in_w});
    Node *z = b_slice(b, "z", zxbcdt, 0, Di);
    Node *xbc_raw = b_slice(b, "xBC_raw", zxbcdt, Di, Di + CD);
    Node *dt_raw = b_slice(b, "dt_raw", zxbcdt, Di + CD, Din);

    double cb = 1.0 / sqrt((double)W); /* PyTorch's default conv init bound for fan_in = W */
    Node *conv_w = b_weight(b, "conv.w", WNAME("conv1d.weight"), DT_F32, 2, (int64_t[]){CD, W}, "uniform", -cb, cb);
    Node *conv_b = o->conv_bias ? b_weight(b, "conv.b", WNAME("conv1d.bias"), DT_F32, 1, (int64_t[]){CD}, "uniform", -cb, cb)
                                : b_weight(b, "conv.b", WNAME("conv1d.bias"), DT_F32, 1, (int64_t[]){CD}, "zeros", 0, 0);
    char st[96];
    snprintf(st, sizeof st, "%sconv_state", sprefix);
    Node *conv_state = b_state(b, "conv_state", st, 2, (int64_t[]){CD, W});
    Node *xbc_c = b_op(b, OP_conv1d, DT_F32, "xBC_conv", 5, (Node *[]){xbc_raw, conv_w, conv_b, conv_state, pos});
    Node *xbc = b_op(b, OP_silu, DT_BF16, "xBC", 1, &xbc_c);
    Node *x = b_slice(b, "x", xbc, 0, Di);
    Node *Bm = b_slice(b, "B", xbc, Di, Di + G * N);
    Node *Cm = b_slice(b, "C", xbc, Di + G * N, CD);

    Node *dt_bias = b_weight(b, "dt_bias", WNAME("dt_bias"), DT_F32, 1, (int64_t[]){H}, "dt_bias", o->dt_init[0],
                             o->dt_init[1]);
    Node *dt = b_op(b, OP_dt_softplus, DT_F32, "dt", 2, (Node *[]){dt_raw, dt_bias});
    node_set_float(g, dt, "dt_min", o->dt_limit[0]);
    node_set_float(g, dt, "dt_max", o->dt_limit[1]);
    Node *a_log = b_weight(b, "A_log", WNAME("A_log"), DT_F32, 1, (int64_t[]){H}, "log_uniform", o->a_init[0],
                           o->a_init[1]);
    Node *Dw = b_weight(b, "D", WNAME("D"), DT_F32, 1, (int64_t[]){H}, "ones", 0, 0);
    snprintf(st, sizeof st, "%sssm_state", sprefix);
    Node *ssm_state = b_state(b, "ssm_state", st, 3, (int64_t[]){H, P, N});
    Node *y = b_op(b, OP_ssd, DT_F32, "y", 7, (Node *[]){x, dt, a_log, Bm, Cm, Dw, ssm_state});
    node_set_int(g, y, "heads", H);
    node_set_int(g, y, "headdim", P);
    node_set_int(g, y, "dstate", N);
    node_set_int(g, y, "groups", G);
    node_set_int(g, y, "chunk", o->chunk_size);

    Node *norm_w = b_weight(b, "gnorm.w", WNAME("norm.weight"), DT_F32, 1, (int64_t[]){Di}, "ones", 0, 0);
    Node *gn = b_op(b, OP_gated_rmsnorm, DT_BF16, "g", 3, (Node *[]){y, z, norm_w});
    node_set_float(g, gn, "eps", o->norm_eps);
    node_set_int(g, gn, "group", Di / G);
    node_set_int(g, gn, "norm_before_gate", o->norm_before_gate);

    Node *out_w = b_weight(b, "out_proj.w", WNAME("out_proj.weight"), DT_BF16, 2, (int64_t[]){D, Di}, "normal",
                           0.02, 0);
#undef WNAME
    return b_op(b, OP_matmul, out_dtype, "out", 2, (Node *[]){gn, out_w});
}

static Node *mamba2_build(Builder *b, LayerCtx *lc, const void *vo, Node *h)
{
    char wp[96], sp[64];
    snprintf(wp, sizeof wp, "backbone.layers.%d.mixer.", lc->index);
    snprintf(sp, sizeof sp, "layers.%d.", lc->index);
    return mamba2_mixer(b, vo, lc->model->d_model, h, wp, sp, lc->pos, DT_F32);
}

const LayerKind layer_mamba2 = {"mamba2", mamba2_options, mamba2_parse, mamba2_build, sizeof(Mamba2Opts)};
