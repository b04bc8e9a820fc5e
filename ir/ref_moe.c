/* ref_moe.c — CPU reference of the mixture-of-experts op: routing (softmax
 * or sigmoid scores, a selection-only or in-weights bias, top-k with ties to
 * the lower expert index, renormalisation, scaling) and the SwiGLU experts,
 * as plain loops over tokens and their chosen experts. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

void ref_moe_route(int64_t T, int64_t E, int64_t k, const float *logits, const float *bias, bool softmax,
                   bool bias_in_weights, bool renorm, float scale, int32_t *sel_e, float *sel_w)
{
    float *score = malloc(sizeof(float) * (size_t)E), *sel = malloc(sizeof(float) * (size_t)E);
    if (!score || !sel)
        abort();
    for (int64_t t = 0; t < T; t++) {
        const float *l = logits + t * E; /* (E) */
        if (softmax) {
            float mx = -INFINITY, sum = 0;
            for (int64_t e = 0; e < E; e++)
                mx = fmaxf(mx, l[e]);
            for (int64_t e = 0; e < E; e++)
                sum += expf(l[e] - mx);
            for (int64_t e = 0; e < E; e++)
                score[e] = expf(l[e] - mx) / sum;
        } else {
            for (int64_t e = 0; e < E; e++)
                score[e] = 1.0f / (1.0f + expf(-l[e]));
        }
        for (int64_t e = 0; e < E; e++) /* the bias steers the choice */
            sel[e] = score[e] + (bias ? bias[e] : 0.0f);
        float wsum = 0;
        for (int64_t j = 0; j < k; j++) { /* j-th pick: the highest sel not taken, lower index on ties */
            int64_t best = -1;
            for (int64_t e = 0; e < E; e++) {
                bool taken = false;
                for (int64_t i = 0; i < j; i++)
                    taken |= sel_e[t * k + i] == e;
                if (!taken && (best < 0 || sel[e] > sel[best]))
                    best = e;
            }
            sel_e[t * k + j] = (int32_t)best;
            sel_w[t * k + j] = bias_in_weights ? sel[best] : score[best];
            wsum += sel_w[t * k + j];
        }
        for (int64_t j = 0; j < k; j++)
            sel_w[t * k + j] = (renorm ? sel_w[t * k + j] / wsum : sel_w[t * k + j]) * scale;
    }
    free(score);
    free(sel);
}

void ref_moe(EvalCtx *c, const Node *n)
{
    const float *h = ev_src(c, n, 0);      /* (T, D) bf16 values */
    const float *logits = ev_src(c, n, 1); /* (T, E) */
    const float *wgu = ev_src(c, n, 2);    /* (E, 2F, D) */
    const float *wd = ev_src(c, n, 3);     /* (E, D, F) */
    int ri = moe_residual_src(n), bi = moe_bias_src(n);
    const float *res = ri >= 0 ? ev_src(c, n, ri) : NULL; /* (T, D), or none: the routed sum alone */
    const float *bias = bi >= 0 ? ev_src(c, n, bi) : NULL; /* (E) */
    bool mhc = node_mhc_epilogue(n);
    int64_t T = ev_rows(c, n), D = ev_dim(c, n->src[0], n->ndim - 1);
    /* (T, D); with the mhc epilogue F's output here, then the updated streams (T, n*D) */
    float *out = mhc ? malloc(sizeof(float) * (size_t)(T * D)) : ev_out(c, n);
    int64_t E = node_int(n, "experts", 1), k = node_int(n, "topk", 1), F = node_int(n, "dff", 1);
    int32_t *sel_e = malloc(sizeof(int32_t) * (size_t)(T * k));
    float *sel_w = malloc(sizeof(float) * (size_t)(T * k));
    float *gu = malloc(sizeof(float) * (size_t)(2 * F));  /* (2F) one token's gate | up */
    float *act = malloc(sizeof(float) * (size_t)F);       /* (F) */
    float *acc = malloc(sizeof(float) * (size_t)D);       /* (D) sum over the chosen experts */
    if (!out || !sel_e || !sel_w || !gu || !act || !acc)
        abort();
    ref_moe_route(T, E, k, logits, bias, !strcmp(node_str(n, "score", "softmax"), "softmax"),
                  node_int(n, "bias_in_weights", 0) != 0, node_int(n, "renorm", 1) != 0,
                  (float)node_float(n, "scale", 1.0), sel_e, sel_w);
    for (int64_t t = 0; t < T; t++) {
        const float *x = h + t * D;
        memset(acc, 0, sizeof(float) * (size_t)D);
        for (int64_t j = 0; j < k; j++) {               /* chosen experts, in order */
            int64_t e = sel_e[t * k + j];
            const float *W1 = wgu + e * 2 * F * D, *W2 = wd + e * D * F;
            for (int64_t i = 0; i < 2 * F; i++) {     /* gate | up, stored bf16 */
                float s = 0;
                for (int64_t q = 0; q < D; q++)
                    s += x[q] * W1[i * D + q];
                gu[i] = bf16_round(s);
            }
            for (int64_t i = 0; i < F; i++)           /* the down projection's operand, bf16 */
                act[i] = bf16_round(ref_silu_f(gu[i]) * gu[F + i]);
            for (int64_t o = 0; o < D; o++) {
                float s = 0;
                for (int64_t i = 0; i < F; i++)
                    s += act[i] * W2[o * F + i];
                acc[o] += sel_w[t * k + j] * s;
            }
        }
        for (int64_t o = 0; o < D; o++)
            out[t * D + o] = (res ? res[t * D + o] : 0.0f) + acc[o];
    }
    if (mhc) {
        ref_mhc_epilogue(c, n, n->nsrc - 2, out, T, D);
        free(out);
    }
    free(sel_e);
    free(sel_w);
    free(gu);
    free(act);
    free(acc);
}
