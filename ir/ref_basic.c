/* ref_basic.c — CPU reference of the generic ops: leaves, embed, rmsnorm,
 * matmul, add, slice, swiglu, silu. Plain fp32 loops; shapes in comments. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

/* Leaves are bound by eval_graph before any op runs. */
void ref_input(EvalCtx *c, const Node *n) { (void)c, (void)n; }
void ref_weight(EvalCtx *c, const Node *n) { (void)c, (void)n; }
void ref_state(EvalCtx *c, const Node *n) { (void)c, (void)n; }

float ref_silu_f(float x) { return x / (1.0f + expf(-x)); }

void ref_embed(EvalCtx *c, const Node *n)
{
    const float *table = ev_src(c, n, 0);                       /* (V, D) */
    const float *tok = ev_src(c, n, 1);                         /* (B, S) token ids */
    const float *nw = n->nsrc > 2 ? ev_src(c, n, 2) : NULL;     /* (D) embed_norm weight, or none */
    float *out = ev_out(c, n);                                  /* (B, S, ns*D): ns copies */
    int64_t V = ev_dim(c, n->src[0], 0), D = ev_dim(c, n->src[0], 1);
    int64_t T = ev_numel(c, n->src[1]), ns = node_int(n, "streams", 1);
    float eps = (float)node_float(n, "eps", 1e-5);
    for (int64_t t = 0; t < T; t++) {
        float *o = out + t * ns * D; /* stream 0's copy: the (normalised) row */
        int64_t id = (int64_t)tok[t];
        if (id < 0 || id >= V) /* the runtime rejects these; keep the oracle defined */
            memset(o, 0, sizeof(float) * (size_t)D);
        else if (nw) /* the norm spans the row's D channels, once, before the copies */
            ref_rmsnorm_raw(1, D, table + id * D, nw, eps, o);
        else
            memcpy(o, table + id * D, sizeof(float) * (size_t)D);
        for (int64_t k = 1; k < ns; k++) /* streams 1..ns-1: copies of stream 0 */
            memcpy(o + k * D, o, sizeof(float) * (size_t)D);
    }
}

void ref_rmsnorm_raw(int64_t R, int64_t D, const float *x, const float *w, float eps, float *out)
{
    for (int64_t r = 0; r < R; r++) {
        const float *xr = x + r * D;
        double ss = 0;
        for (int64_t i = 0; i < D; i++)
            ss += (double)xr[i] * xr[i];
        float inv = 1.0f / sqrtf((float)(ss / (double)D) + eps);
        for (int64_t i = 0; i < D; i++)
            out[r * D + i] = xr[i] * inv * w[i];
    }
}

void ref_rmsnorm(EvalCtx *c, const Node *n)
{
    /* x (rows, D), w (D) → out (rows, D) */
    ref_rmsnorm_raw(ev_rows(c, n), ev_dim(c, n, n->ndim - 1), ev_src(c, n, 0), ev_src(c, n, 1),
                    (float)node_float(n, "eps", 1e-5), ev_out(c, n));
}

void ref_swiglu_raw(int64_t R, int64_t F, const float *x, float *out)
{
    for (int64_t r = 0; r < R; r++)         /* x (R, 2F) = gate | up → out (R, F) */
        for (int64_t i = 0; i < F; i++)
            out[r * F + i] = ref_silu_f(x[r * 2 * F + i]) * x[r * 2 * F + F + i];
}

void ref_swiglu(EvalCtx *c, const Node *n)
{
    ref_swiglu_raw(ev_rows(c, n), ev_dim(c, n, n->ndim - 1), ev_src(c, n, 0), ev_out(c, n));
}

/* The matmul prologue: A = bf16(normalised x · norm_w), rows of K; or
 * bf16(silu(gate) · up) from x (M, 2K) for swiglu. */
static float *matmul_prologue(EvalCtx *c, const Node *n, const char *pro, int64_t M, int64_t K)
{
    const float *x = ev_src(c, n, 0), *nw = ev_src(c, n, n->nsrc - 1);
    float *a = malloc(sizeof(float) * (size_t)(M * K));
    if (!a)
        abort();
    float eps = (float)node_float(n, "eps", 1e-5);
    if (!strcmp(pro, "swiglu")) {
        ref_swiglu_raw(M, K, x, a);
    } else if (!strcmp(pro, "rmsnorm")) {
        ref_rmsnorm_raw(M, K, x, nw, eps, a);
    } else { /* gated_rmsnorm with the gate already applied: groups of `group` */
        int64_t grp = node_int(n, "group", K);
        for (int64_t m = 0; m < M; m++)
            for (int64_t g0 = 0; g0 < K; g0 += grp) {
                const float *xr = x + m * K + g0;
                double ss = 0;
                for (int64_t i = 0; i < grp; i++)
                    ss += (double)xr[i] * xr[i];
                float inv = 1.0f / sqrtf((float)(ss / (double)grp) + eps);
                for (int64_t i = 0; i < grp; i++)
                    a[m * K + g0 + i] = xr[i] * inv * nw[g0 + i];
            }
    }
    for (int64_t i = 0; i < M * K; i++)
        a[i] = bf16_round(a[i]);
    return a;
}

void ref_matmul(EvalCtx *c, const Node *n)
{
    const char *pro = node_str(n, "prologue", NULL);
    bool mhc = node_mhc_epilogue(n);
    int nres = matmul_nres(n);
    const float *w = ev_src(c, n, 1);                        /* (N, K) */
    const float *res = nres && !mhc ? ev_src(c, n, 2) : NULL; /* (M, N) or none */
    int64_t K = ev_dim(c, n->src[1], 1), N = ev_dim(c, n->src[1], 0), M = ev_rows(c, n);
    /* epilogue mhc: o (M, N) here, then out (M, n*N) = mhc_post's update of the streams xs (M, n*N) */
    float *out = mhc ? malloc(sizeof(float) * (size_t)(M * N)) : ev_out(c, n);
    if (!out)
        abort();
    float *pa = pro ? matmul_prologue(c, n, pro, M, K) : NULL;
    const float *x = pa ? pa : ev_src(c, n, 0);             /* (M, K) */
    for (int64_t m = 0; m < M; m++) {
        const float *xm = x + m * K;
        for (int64_t j = 0; j < N; j++) {
            const float *wj = w + j * K;
            float acc[8] = {0}; /* 8 partial sums: the compiler can vectorise */
            int64_t k = 0;
            for (; k + 8 <= K; k += 8)
                for (int u = 0; u < 8; u++)
                    acc[u] += xm[k + u] * wj[k + u];
            for (; k < K; k++)
                acc[0] += xm[k] * wj[k];
            float s = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
            out[m * N + j] = res ? s + res[m * N + j] : s;
        }
    }
    free(pa);
    if (mhc) {
        ref_mhc_epilogue(c, n, 2, out, M, N);
        free(out);
    }
}

void ref_add(EvalCtx *c, const Node *n)
{
    const float *a = ev_src(c, n, 0), *b = ev_src(c, n, 1);
    float *out = ev_out(c, n);
    for (int64_t i = 0, e = ev_numel(c, n); i < e; i++)
        out[i] = a[i] + b[i];
}

void ref_slice(EvalCtx *c, const Node *n)
{
    const float *x = ev_src(c, n, 0); /* (rows, C) */
    float *out = ev_out(c, n);        /* (rows, end - begin) */
    int64_t C = ev_dim(c, n->src[0], n->ndim - 1), R = ev_rows(c, n);
    int64_t b = node_int(n, "begin", 0), w = node_int(n, "end", 0) - b;
    for (int64_t r = 0; r < R; r++)
        memcpy(out + r * w, x + r * C + b, sizeof(float) * (size_t)w);
}

void ref_silu(EvalCtx *c, const Node *n)
{
    const float *x = ev_src(c, n, 0);
    float *out = ev_out(c, n);
    for (int64_t i = 0, e = ev_numel(c, n); i < e; i++)
        out[i] = ref_silu_f(x[i]);
}
