/* ref_hybrid.c — CPU reference of the per-token gate of the hybrid layer
 * (op hybrid_mix): g_t = sigmoid(w_g · h_t + b_g), one scalar per token
 * (the dot in fp64), out_t = g_t · a_t + (1 - g_t) · c_t (+ residual_t);
 * with the mhc epilogue (fuse-mhc) that is o_t, and the result the streams
 * after mhc_post's update with it. */
#include <math.h>
#include <stdlib.h>

#include "eval.h"

void ref_hybrid_mix(EvalCtx *c, const Node *n)
{
    const float *h = ev_src(c, n, 0);  /* (rows, D) normed input, bf16 values */
    const float *wg = ev_src(c, n, 1); /* (1, D) gate weight */
    const float *bg = ev_src(c, n, 2); /* (1) gate bias */
    const float *a = ev_src(c, n, 3);  /* (rows, D) SSM path */
    const float *cc = ev_src(c, n, 4); /* (rows, D) attention path */
    int ri = hybrid_mix_res_src(n);
    const float *res = ri >= 0 ? ev_src(c, n, ri) : NULL; /* (rows, D) residual, when fused */
    bool mhc = node_mhc_epilogue(n);
    int64_t rows = ev_rows(c, n), D = ev_dim(c, n->src[0], 2);
    /* (rows, D); with the mhc epilogue the mix here, then the updated streams (rows, n*D) */
    float *out = mhc ? malloc(sizeof(float) * (size_t)(rows * D)) : ev_out(c, n);
    if (!out)
        abort();
    for (int64_t r = 0; r < rows; r++) {
        double logit = bg[0];
        for (int64_t i = 0; i < D; i++) /* the gate logit of token r */
            logit += (double)wg[i] * h[r * D + i];
        float g = (float)(1.0 / (1.0 + exp(-logit)));
        for (int64_t i = 0; i < D; i++) {
            float v = g * a[r * D + i] + (1.0f - g) * cc[r * D + i];
            out[r * D + i] = res ? res[r * D + i] + v : v;
        }
    }
    if (mhc) {
        ref_mhc_epilogue(c, n, n->nsrc - 2, out, rows, D);
        free(out);
    }
}
