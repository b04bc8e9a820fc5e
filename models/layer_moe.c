/* layer_moe.c — a mixture-of-experts feed-forward block (DeepSeek-V3 MoE):
 *
 *   logits = gate(h)                               [B,S,E]  (fp32 accumulate)
 *   score  = softmax(logits) | sigmoid(logits)
 *   picks  = top n_activated of score + bias       ties to the lower expert
 *   w_j    = score (or score + bias: bias_in_weights) of pick j,
 *            renormalised over the picks (renormalize), × routed_scaling_factor
 *   out    = x + shared(h) + Σ_j w_j · expert_{e_j}(h)
 *
 * Every expert is a SwiGLU FFN of width d_ff; the n_shared shared experts
 * are one always-on SwiGLU of width n_shared · shared_d_ff (DeepSeek's
 * layout). The plain block adds the residual itself: the shared experts'
 * down projection takes x in its epilogue, and the moe op adds that (or x
 * alone without shared experts). Inside mHC streams (lc->x = NULL) the block
 * is F(h) = shared(h) + Σ_j w_j · expert_{e_j}(h), f32 [B,S,D]: the moe op
 * adds the shared down projection's plain output, or nothing (attr
 * residual=0) without shared experts. */
#include <string.h>

#include "layers.h"

typedef struct MoeOpts {
    int64_t n_experts;    /* E: routed experts */
    int64_t n_activated;  /* k: experts per token */
    int64_t d_ff;         /* F: each routed expert's hidden width */
    int64_t n_shared;     /* shared (always-on) experts */
    int64_t shared_d_ff;  /* each shared expert's hidden width */
    bool sigmoid;         /* router scores: sigmoid (else softmax) */
    bool router_bias;     /* a per-expert selection bias */
    bool bias_in_weights; /* the bias also enters the weights (seed MambaDecoderBlock) */
    bool renormalize;     /* weights divided by their sum over the picks */
    double scale;         /* routed_scaling_factor */
} MoeOpts;

static const char *const moe_options[] = {"n_experts", "n_activated", "d_ff", "n_shared", "shared_d_ff", "router",
                                          "router_bias", "bias_in_weights", "renormalize",
                                          "routed_scaling_factor", NULL};

static bool moe_parse(LayerCtx *lc, void *vo, Diag *d)
{
    MoeOpts *o = vo;
    *o = (MoeOpts){.n_experts = 8, .n_activated = 2, .renormalize = true, .scale = 1.0};
    int64_t dflt = (8 * lc->model->d_model / 3 + 63) / 64 * 64;
    if (!layer_int(lc, "n_experts", 1, 1024, &o->n_experts, d) ||
        !layer_int(lc, "n_activated", 1, 64, &o->n_activated, d) || !ffn_width(lc, "d_ff", NULL, dflt, &o->d_ff, d) ||
        !layer_int(lc, "n_shared", 0, 64, &o->n_shared, d) ||
        !ffn_width(lc, "shared_d_ff", NULL, o->d_ff, &o->shared_d_ff, d) ||
        !layer_bool(lc, "router_bias", &o->router_bias, d) || !layer_bool(lc, "bias_in_weights", &o->bias_in_weights, d) ||
        !layer_bool(lc, "renormalize", &o->renormalize, d) ||
        !layer_float(lc, "routed_scaling_factor", 1e-6, 1e6, &o->scale, d))
        return false;
    const char *router = "softmax";
    YNode *map;
    if (layer_option(lc, "router", &map) && !yget_str(lc->y, map, "router", false, &router, d))
        return false;
    if (strcmp(router, "softmax") && strcmp(router, "sigmoid"))
        return layer_fail(lc, "router", d, "router must be softmax or sigmoid, found '%s'", router);
    o->sigmoid = !strcmp(router, "sigmoid");
    if (o->n_activated > o->n_experts)
        return layer_fail(lc, "n_activated", d, "n_activated = %lld exceeds n_experts = %lld",
                          (long long)o->n_activated, (long long)o->n_experts);
    if (o->bias_in_weights && !o->router_bias)
        return layer_fail(lc, "bias_in_weights", d, "bias_in_weights needs router_bias: true");
    return true;
}

static Node *moe_build(Builder *b, LayerCtx *lc, const void *vo, Node *h)
{
    const MoeOpts *o = vo;
    int64_t D = lc->model->d_model, E = o->n_experts, F = o->d_ff;
    char wn[128];
    snprintf(wn, sizeof wn, "backbone.layers.%d.mlp.gate.weight", lc->index);
    Node *wr = b_weight(b, "router.w", wn, DT_BF16, 2, (int64_t[]){E, D}, "normal", 0.02, 0);
    Node *logits = b_op(b, OP_matmul, DT_F32, "router", 2, (Node *[]){h, wr});
    snprintf(wn, sizeof wn, "backbone.layers.%d.mlp.experts.gate_up_proj.weight", lc->index);
    Node *wgu = b_weight(b, "experts.gate_up.w", wn, DT_BF16, 3, (int64_t[]){E, 2 * F, D}, "normal", 0.02, 0);
    snprintf(wn, sizeof wn, "backbone.layers.%d.mlp.experts.down_proj.weight", lc->index);
    Node *wd = b_weight(b, "experts.down.w", wn, DT_BF16, 3, (int64_t[]){E, D, F}, "normal", 0.02, 0);
    Node *res = lc->x; /* what the routed sum is added to: x, x + shared(h), shared(h) or nothing */
    if (o->n_shared) { /* x + shared(h): fuse-epilogue folds the add into the shared down projection */
        char wp[96];
        snprintf(wp, sizeof wp, "backbone.layers.%d.mlp.shared_experts.", lc->index);
        Node *s = swiglu_ffn(b, D, o->n_shared * o->shared_d_ff, h, wp, "shared", DT_F32);
        res = lc->x ? b_op(b, OP_add, DT_F32, "shared.res", 2, (Node *[]){lc->x, s}) : s;
    }
    Node *src[6] = {h, logits, wgu, wd};
    int nsrc = 4;
    if (res)
        src[nsrc++] = res;
    if (o->router_bias) {
        snprintf(wn, sizeof wn, "backbone.layers.%d.mlp.gate.e_score_correction_bias", lc->index);
        src[nsrc++] = b_weight(b, "router.bias", wn, DT_F32, 1, (int64_t[]){E}, "uniform", -0.5, 0.5);
    }
    /* the plain block's result is the new residual stream "res"; under mHC it is F(h), named as swiglu's */
    Node *m = b_op(b, OP_moe, DT_F32, lc->x ? "res" : "mlp.out", nsrc, src);
    node_set_int(b->g, m, "experts", E);
    node_set_int(b->g, m, "topk", o->n_activated);
    node_set_int(b->g, m, "dff", F);
    node_set_str(b->g, m, "score", o->sigmoid ? "sigmoid" : "softmax");
    node_set_int(b->g, m, "bias_in_weights", o->bias_in_weights);
    node_set_int(b->g, m, "renorm", o->renormalize);
    node_set_float(b->g, m, "scale", o->scale);
    if (!res)
        node_set_int(b->g, m, "residual", 0);
    lc->added_residual = lc->x != NULL;
    return m;
}

const LayerKind layer_moe = {"moe", moe_options, moe_parse, moe_build, sizeof(MoeOpts)};
