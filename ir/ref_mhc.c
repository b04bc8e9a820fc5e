/* ref_mhc.c — CPU reference of manifold-constrained hyper-connections (mHC,
 * arXiv 2512.24880; DESIGN.md §2): n residual streams per token, stored as
 * one f32 row [n*D] (stream k = columns k*D .. k*D+D-1). Plain fp32 loops;
 * shapes in comments. Per token and layer:
 *
 *   x'     = x * rsqrt(mean(x^2) + eps)                 over the whole n*D row
 *   p      = x' . fn^T                                   [2n + n^2]
 *   H_pre  = sigmoid(scale[0] * p[0:n]   + base[0:n])    [n]
 *   H_post = 2 sigmoid(scale[1] * p[n:2n] + base[n:2n])  [n]
 *   H_res  = sinkhorn(scale[2] * p[2n:] + base[2n:])     [n, n] row-major
 *   F's input  h = sum_k H_pre[k] x_k                     [D]
 *   x_next_i = sum_j H_res[i,j] x_j + H_post[i] F(h)     [n*D] */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

static float sigmoid_f(float v) { return 1.0f / (1.0f + expf(-v)); }

void ref_sinkhorn(int64_t n, int iters, float *m)
{
    /* m [n, n] logits in, doubly stochastic out. exp(m - max): the max is a
     * common factor that the first normalisation removes. */
    float mx = -INFINITY;
    for (int64_t i = 0; i < n * n; i++)
        mx = fmaxf(mx, m[i]);
    for (int64_t i = 0; i < n * n; i++)
        m[i] = expf(m[i] - mx);
    for (int it = 0; it < iters; it++) {
        for (int64_t j = 0; j < n; j++) { /* columns sum to 1 */
            float s = 0;
            for (int64_t i = 0; i < n; i++)
                s += m[i * n + j];
            for (int64_t i = 0; i < n; i++)
                m[i * n + j] /= s;
        }
        for (int64_t i = 0; i < n; i++) { /* then rows */
            float s = 0;
            for (int64_t j = 0; j < n; j++)
                s += m[i * n + j];
            for (int64_t j = 0; j < n; j++)
                m[i * n + j] /= s;
        }
    }
}

void ref_mhc_coef_raw(int64_t n, int64_t D, const float *x, const float *fn, const float *base, const float *scale,
                      int iters, float eps, float *h_pre, float *h_post, float *h_res)
{
    /* x [n*D], fn [2n+n^2, n*D], base [2n+n^2], scale [3] → h_pre [n], h_post [n], h_res [n, n] */
    int64_t W = n * D, M = 2 * n + n * n;
    double ss = 0;
    for (int64_t e = 0; e < W; e++)
        ss += (double)x[e] * x[e];
    float inv = 1.0f / sqrtf((float)(ss / (double)W) + eps);
    for (int64_t m = 0; m < M; m++) {
        double p = 0; /* p[m] = x' . fn[m] */
        for (int64_t e = 0; e < W; e++)
            p += (double)(x[e] * inv) * fn[m * W + e];
        float a = m < n ? scale[0] : m < 2 * n ? scale[1] : scale[2];
        float v = a * (float)p + base[m];
        if (m < n)
            h_pre[m] = sigmoid_f(v);
        else if (m < 2 * n)
            h_post[m - n] = 2.0f * sigmoid_f(v);
        else
            h_res[m - 2 * n] = v;
    }
    ref_sinkhorn(n, iters, h_res);
}

/* h = sum_k w[k] x_k [D]; then, with a norm weight, rmsnorm(h) * norm_w. */
static void mix_and_norm(int64_t n, int64_t D, const float *x, const float *w, const float *norm_w, float norm_eps,
                         float *out)
{
    for (int64_t d = 0; d < D; d++) {
        float h = 0;
        for (int64_t k = 0; k < n; k++)
            h += w[k] * x[k * D + d];
        out[d] = h;
    }
    if (norm_w)
        ref_rmsnorm_raw(1, D, out, norm_w, norm_eps, out);
}

static void mhc_dims(const EvalCtx *c, const Node *n, int64_t *ns, int64_t *D, int64_t *R)
{
    *ns = node_int(n, "streams", 1);
    *D = ev_dim(c, n->src[0], n->src[0]->ndim - 1) / *ns;
    *R = ev_rows(c, n);
}

void ref_mhc_pre(EvalCtx *c, const Node *n)
{
    int64_t ns, D, R;
    mhc_dims(c, n, &ns, &D, &R);
    const float *x = ev_src(c, n, 0);                       /* (R, n*D) */
    const float *fn = ev_src(c, n, 1);                      /* (2n+n^2, n*D) */
    const float *base = ev_src(c, n, 2), *scale = ev_src(c, n, 3);
    const float *nw = n->nsrc > 4 ? ev_src(c, n, 4) : NULL; /* (D) or none */
    float *out = ev_out(c, n);                              /* (R, D) */
    float h_pre[8], h_post[8], h_res[64];
    for (int64_t r = 0; r < R; r++) {
        ref_mhc_coef_raw(ns, D, x + r * ns * D, fn, base, scale, (int)node_int(n, "iters", 20),
                         (float)node_float(n, "eps", 1e-5), h_pre, h_post, h_res);
        mix_and_norm(ns, D, x + r * ns * D, h_pre, nw, (float)node_float(n, "norm_eps", 1e-5), out + r * D);
    }
}

void ref_mhc_post(EvalCtx *c, const Node *n)
{
    int64_t ns, D, R;
    mhc_dims(c, n, &ns, &D, &R);
    const float *x = ev_src(c, n, 0);  /* (R, n*D) */
    const float *o = ev_src(c, n, 1);  /* (R, D): F's output */
    const float *fn = ev_src(c, n, 2), *base = ev_src(c, n, 3), *scale = ev_src(c, n, 4);
    float *out = ev_out(c, n);         /* (R, n*D) */
    float h_pre[8], h_post[8], h_res[64];
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * ns * D;
        ref_mhc_coef_raw(ns, D, xr, fn, base, scale, (int)node_int(n, "iters", 20), (float)node_float(n, "eps", 1e-5),
                         h_pre, h_post, h_res);
        ref_mhc_update(ns, D, xr, o + r * D, h_post, h_res, out + r * ns * D);
    }
}

/* What the fused mhc_pre kernel writes beside h: (H_post, H_res) per token. */
void ref_mhc_coef(EvalCtx *c, const Node *n)
{
    int64_t ns, D, R;
    mhc_dims(c, n->src[0], &ns, &D, &R);
    const float *x = ev_src(c, n, 1);                       /* (R, n*D) */
    const float *fn = ev_src(c, n, 2), *base = ev_src(c, n, 3), *scale = ev_src(c, n, 4);
    float *out = ev_out(c, n);                              /* (R, n + n*n) */
    float h_pre[8];
    for (int64_t r = 0; r < R; r++)
        ref_mhc_coef_raw(ns, D, x + r * ns * D, fn, base, scale, (int)node_int(n, "iters", 20),
                         (float)node_float(n, "eps", 1e-5), h_pre, out + r * (ns + ns * ns), out + r * (ns + ns * ns) + ns);
}

/* The mhc_post update of stream row xr [n*D] with F's output o [D]: out [n*D]. */
void ref_mhc_update(int64_t ns, int64_t D, const float *xr, const float *o, const float *h_post, const float *h_res,
                    float *out)
{
    for (int64_t i = 0; i < ns; i++)        /* stream i of the result */
        for (int64_t d = 0; d < D; d++) {
            float v = h_post[i] * o[d];
            for (int64_t j = 0; j < ns; j++) /* mixed from every stream j */
                v += h_res[i * ns + j] * xr[j * D + d];
            out[i * D + d] = v;
        }
}

void ref_mhc_epilogue(EvalCtx *c, const Node *n, int at, const float *o, int64_t M, int64_t N)
{
    int64_t ns = node_int(n, "streams", 1), nc = ns + ns * ns;
    const float *xs = ev_src(c, n, at), *coef = ev_src(c, n, at + 1); /* (M, n*N), (M, n + n*n) */
    float *out = ev_out(c, n);                                        /* (M, n*N) */
    for (int64_t m = 0; m < M; m++)
        ref_mhc_update(ns, N, xs + m * ns * N, o + m * N, coef + m * nc, coef + m * nc + ns, out + m * ns * N);
}

void ref_mhc_collapse(EvalCtx *c, const Node *n)
{
    int64_t ns, D, R;
    mhc_dims(c, n, &ns, &D, &R);
    const float *x = ev_src(c, n, 0);                       /* (R, n*D) */
    const float *nw = n->nsrc > 1 ? ev_src(c, n, 1) : NULL; /* (D) or none */
    float *out = ev_out(c, n);                              /* (R, D) */
    const float ones[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    for (int64_t r = 0; r < R; r++)
        mix_and_norm(ns, D, x + r * ns * D, ones, nw, (float)node_float(n, "norm_eps", 1e-5), out + r * D);
}
