/* ref_mamba2.c — CPU reference of the Mamba2 ops: conv1d, dt_softplus, ssd,
 * gated_rmsnorm, and the fused mamba2_mixer built from the same pieces.
 *
 * The scan is the plain sequential recurrence, not the chunked algorithm the
 * GPU runs: the two agree only if the kernel is right. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

float ref_softplus_f(float x) { return x > 20.0f ? x : log1pf(expf(x)); } /* torch's threshold 20 */

static int64_t ring_slot(int64_t p, int64_t W) { return ((p % W) + W) % W; }

/* x: (B, S, C) with row stride xstride; w: (C, W); bias: (C);
 * state: (B, C, W) ring, slot p mod W holds the input at position p;
 * pos: (B) position of each row's first token; out: (B, S, C) contiguous. */
void ref_conv1d_raw(int64_t B, int64_t S, int64_t C, int64_t W, const float *x, int64_t xstride,
                    const float *w, const float *bias, float *state, const float *pos, float *out)
{
    for (int64_t b = 0; b < B; b++) {
        int64_t p0 = (int64_t)pos[b];
        const float *xb = x + b * S * xstride;
        float *st = state + b * C * W;
        for (int64_t t = 0; t < S; t++)
            for (int64_t ch = 0; ch < C; ch++) {
                float acc = bias[ch];
                for (int64_t k = 0; k < W; k++) {
                    int64_t u = t - (W - 1) + k; /* input time, relative to this call */
                    float v = u >= 0 ? xb[u * xstride + ch] : st[ch * W + ring_slot(p0 + u, W)];
                    acc += w[ch * W + k] * v;
                }
                out[(b * S + t) * C + ch] = acc;
            }
        for (int64_t u = S - (W - 1) > 0 ? S - (W - 1) : 0; u < S; u++) /* keep the last W-1 inputs */
            for (int64_t ch = 0; ch < C; ch++)
                st[ch * W + ring_slot(p0 + u, W)] = xb[u * xstride + ch];
    }
}

/* x: (B, S, H*P) stride xstride; dt: (B, S, H) stride dtstride (already softplus'd);
 * A_log, D: (H); Bm, Cm: (B, S, G*N) stride bcstride; state: (B, H, P, N), in = initial,
 * out = final; y: (B, S, H*P) contiguous. */
void ref_ssd_raw(int64_t B, int64_t S, int64_t H, int64_t P, int64_t N, int64_t G, const float *x,
                 int64_t xstride, const float *dt, int64_t dtstride, const float *A_log, const float *Bm,
                 const float *Cm, int64_t bcstride, const float *D, float *state, float *y)
{
    int64_t hpg = H / G; /* heads per group */
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++) {
            int64_t g = h / hpg;
            float A = -expf(A_log[h]);
            float *st = state + (b * H + h) * P * N; /* (P, N) */
            for (int64_t t = 0; t < S; t++) {
                int64_t row = b * S + t;
                float dtv = dt[row * dtstride + h];
                float dA = expf(dtv * A);
                const float *bt = Bm + row * bcstride + g * N; /* (N) */
                const float *ct = Cm + row * bcstride + g * N; /* (N) */
                for (int64_t p = 0; p < P; p++) {
                    float xv = x[row * xstride + h * P + p];
                    float acc = 0;
                    for (int64_t k = 0; k < N; k++) {
                        float s = st[p * N + k] * dA + dtv * xv * bt[k];
                        st[p * N + k] = s;
                        acc += s * ct[k];
                    }
                    y[row * H * P + h * P + p] = acc + D[h] * xv;
                }
            }
        }
}

/* y: (rows, C); z: (rows, C) stride zstride; w: (C); out: (rows, C). */
void ref_gated_rmsnorm_raw(int64_t rows, int64_t C, int64_t group, const float *y, const float *z,
                           int64_t zstride, const float *w, float eps, bool norm_before_gate, float *out)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t g0 = 0; g0 < C; g0 += group) {
            const float *yr = y + r * C + g0;
            const float *zr = z + r * zstride + g0;
            float *o = out + r * C + g0;
            double ss = 0;
            for (int64_t i = 0; i < group; i++) {
                float v = norm_before_gate ? yr[i] : yr[i] * ref_silu_f(zr[i]);
                ss += (double)v * v;
            }
            float inv = 1.0f / sqrtf((float)(ss / (double)group) + eps);
            for (int64_t i = 0; i < group; i++) {
                float v = norm_before_gate ? yr[i] * inv * w[g0 + i] * ref_silu_f(zr[i])
                                           : yr[i] * ref_silu_f(zr[i]) * inv * w[g0 + i];
                o[i] = v;
            }
        }
}

void ref_conv1d(EvalCtx *c, const Node *n)
{
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1), C = ev_dim(c, n, 2), W = ev_dim(c, n->src[1], 1);
    ref_conv1d_raw(B, S, C, W, ev_src(c, n, 0), C, ev_src(c, n, 1), ev_src(c, n, 2), ev_src(c, n, 3),
                   ev_src(c, n, 4), ev_out(c, n));
}

void ref_dt_softplus(EvalCtx *c, const Node *n)
{
    const float *dt = ev_src(c, n, 0);   /* (B, S, H) */
    const float *bias = ev_src(c, n, 1); /* (H) */
    float *out = ev_out(c, n);           /* (B, S, H) */
    int64_t H = ev_dim(c, n, 2), R = ev_rows(c, n);
    float lo = (float)node_float(n, "dt_min", 0.0), hi = (float)node_float(n, "dt_max", INFINITY);
    for (int64_t r = 0; r < R; r++)
        for (int64_t h = 0; h < H; h++)
            out[r * H + h] = fminf(fmaxf(ref_softplus_f(dt[r * H + h] + bias[h]), lo), hi);
}

void ref_ssd(EvalCtx *c, const Node *n)
{
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1);
    int64_t H = node_int(n, "heads", 1), P = node_int(n, "headdim", 1), N = node_int(n, "dstate", 1),
            G = node_int(n, "groups", 1);
    ref_ssd_raw(B, S, H, P, N, G, ev_src(c, n, 0), H * P, ev_src(c, n, 1), H, ev_src(c, n, 2), ev_src(c, n, 3),
                ev_src(c, n, 4), G * N, ev_src(c, n, 5), ev_src(c, n, 6), ev_out(c, n));
}

void ref_gated_rmsnorm(EvalCtx *c, const Node *n)
{
    int64_t C = ev_dim(c, n, n->ndim - 1);
    ref_gated_rmsnorm_raw(ev_rows(c, n), C, node_int(n, "group", C), ev_src(c, n, 0), ev_src(c, n, 1), C,
                          ev_src(c, n, 2), (float)node_float(n, "eps", 1e-5), node_int(n, "norm_before_gate", 0),
                          ev_out(c, n));
}

/* The fused mixer is the unfused chain on the same data, rounding where the
 * unfused graph stores bf16 (after conv1d + silu). */
void ref_mamba2_mixer(EvalCtx *c, const Node *n)
{
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1);
    int64_t H = node_int(n, "heads", 1), P = node_int(n, "headdim", 1), N = node_int(n, "dstate", 1),
            G = node_int(n, "groups", 1), W = node_int(n, "d_conv", 4);
    int64_t Di = H * P, CD = Di + 2 * G * N, Din = 2 * Di + 2 * G * N + H, R = B * S;
    const float *u = ev_src(c, n, 0); /* (B, S, Din): [z | xBC | dt] */
    float *xbc = malloc(sizeof(float) * (size_t)(R * CD)); /* (B, S, CD) conv + silu, bf16 */
    float *dt = malloc(sizeof(float) * (size_t)(R * H));   /* (B, S, H) */
    float *y = malloc(sizeof(float) * (size_t)(R * Di));   /* (B, S, Di) */
    if (!xbc || !dt || !y)
        abort();
    ref_conv1d_raw(B, S, CD, W, u + Di, Din, ev_src(c, n, 1), ev_src(c, n, 2), ev_src(c, n, 7), ev_src(c, n, 9),
                   xbc);
    for (int64_t i = 0; i < R * CD; i++)
        xbc[i] = bf16_round(ref_silu_f(xbc[i]));
    const float *dt_bias = ev_src(c, n, 3);
    float lo = (float)node_float(n, "dt_min", 0.0), hi = (float)node_float(n, "dt_max", INFINITY);
    for (int64_t r = 0; r < R; r++)
        for (int64_t h = 0; h < H; h++)
            dt[r * H + h] = fminf(fmaxf(ref_softplus_f(u[r * Din + Di + CD + h] + dt_bias[h]), lo), hi);
    ref_ssd_raw(B, S, H, P, N, G, xbc, CD, dt, H, ev_src(c, n, 4), xbc + Di, xbc + Di + G * N, CD, ev_src(c, n, 5),
                ev_src(c, n, 8), y);
    const char *norm = node_str(n, "norm", NULL);
    if (norm) { /* "deferred": the consumer matmul normalises; the output is y·silu(z) */
        float *o = ev_out(c, n);
        for (int64_t r = 0; r < R; r++)
            for (int64_t i = 0; i < Di; i++)
                o[r * Di + i] = y[r * Di + i] * ref_silu_f(u[r * Din + i]);
    } else {
        ref_gated_rmsnorm_raw(R, Di, Di / G, y, u, Din, ev_src(c, n, 6), (float)node_float(n, "eps", 1e-5),
                              node_int(n, "norm_before_gate", 0), ev_out(c, n));
    }
    free(xbc);
    free(dt);
    free(y);
}
