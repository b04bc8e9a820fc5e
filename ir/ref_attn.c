/* ref_attn.c — CPU reference of rotary embeddings, multi-head latent
 * attention (DeepSeek-V3, absorbed form), the indexer scores, the causal
 * top-k selection and dense grouped-query attention. Plain loops, fp64 where it costs nothing (softmax sums,
 * rotary angles). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"

/* ---- rope ---- */
void ref_rope(EvalCtx *c, const Node *n)
{
    const float *x = ev_src(c, n, 0);   /* (B, S, heads*stride) */
    const float *pos = ev_src(c, n, 1); /* (B) */
    float *out = ev_out(c, n);          /* (B, S, heads*stride) */
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1), C = ev_dim(c, n, 2);
    int64_t H = node_int(n, "heads", 1), st = node_int(n, "stride", 1), off = node_int(n, "offset", 0),
            dm = node_int(n, "dim", 2);
    bool inter = !strcmp(node_str(n, "style", "half"), "interleaved");
    double theta = node_float(n, "theta", 10000.0);
    memcpy(out, x, sizeof(float) * (size_t)(B * S * C));
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            double p = pos[b] + (double)t;
            for (int64_t h = 0; h < H; h++) {
                const float *v = x + (b * S + t) * C + h * st + off;
                float *o = out + (b * S + t) * C + h * st + off;
                for (int64_t i = 0; i < dm / 2; i++) {
                    double ang = p * pow(theta, -2.0 * (double)i / (double)dm);
                    double cs = cos(ang), sn = sin(ang);
                    int64_t i1 = inter ? 2 * i : i, i2 = inter ? 2 * i + 1 : i + dm / 2;
                    double x1 = v[i1], x2 = v[i2];
                    o[i1] = (float)(x1 * cs - x2 * sn);
                    o[i2] = (float)(x2 * cs + x1 * sn);
                }
            }
        }
}

/* ---- absorption: per-head products with slices of kv_b ---- */
static void absorb(EvalCtx *c, const Node *n, bool q_side)
{
    const float *x = ev_src(c, n, 0); /* (rows, H*(dn+dr)) or (rows, H*R) */
    const float *w = ev_src(c, n, 1); /* (H*(dn+dv), R) */
    float *out = ev_out(c, n);        /* (rows, H*R) or (rows, H*dv) */
    int64_t rows = ev_rows(c, n), H = node_int(n, "heads", 1), dn = node_int(n, "nope", 1),
            dr = node_int(n, "rope_dim", 0), dv = node_int(n, "v_dim", 1), R = node_int(n, "rank", 1);
    for (int64_t m = 0; m < rows; m++)
        for (int64_t h = 0; h < H; h++) {
            const float *wh = w + h * (dn + dv) * R; /* W_UK[h]: rows 0..dn, W_UV[h]: rows dn..dn+dv */
            if (q_side) {
                const float *q = x + m * H * (dn + dr) + h * (dn + dr);
                float *o = out + m * H * R + h * R;
                for (int64_t r = 0; r < R; r++) {
                    double acc = 0;
                    for (int64_t i = 0; i < dn; i++)
                        acc += (double)q[i] * wh[i * R + r];
                    o[r] = (float)acc;
                }
            } else {
                const float *ol = x + m * H * R + h * R;
                float *o = out + m * H * dv + h * dv;
                for (int64_t j = 0; j < dv; j++) {
                    double acc = 0;
                    for (int64_t r = 0; r < R; r++)
                        acc += (double)wh[(dn + j) * R + r] * ol[r];
                    o[j] = (float)acc;
                }
            }
        }
}

void ref_mla_absorb_q(EvalCtx *c, const Node *n) { absorb(c, n, true); }
void ref_mla_absorb_o(EvalCtx *c, const Node *n) { absorb(c, n, false); }

/* Appends rows (B, S, D) into cache (B, ctx, D) at positions pos[b]..pos[b]+S-1. */
/* sc[i] <- exp(sc[i] - max) in place (the unnormalised softmax weights);
 * returns their sum, 0 for n = 0. */
static double softmax_weights(double *sc, int64_t n)
{
    double mx = -INFINITY, sum = 0;
    for (int64_t i = 0; i < n; i++)
        if (sc[i] > mx)
            mx = sc[i];
    for (int64_t i = 0; i < n; i++)
        sum += (sc[i] = exp(sc[i] - mx));
    return sum;
}

static void cache_append(const float *rows, float *cache, const float *pos, int64_t B, int64_t S, int64_t D, int64_t ctx)
{
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            int64_t p = (int64_t)pos[b] + t;
            if (p >= 0 && p < ctx)
                memcpy(cache + (b * ctx + p) * D, rows + (b * S + t) * D, sizeof(float) * (size_t)D);
        }
}

/* ---- latent attention ---- */
void ref_mla_attn(EvalCtx *c, const Node *n)
{
    const float *ql = ev_src(c, n, 0);   /* (B, S, H*R) */
    const float *qp = ev_src(c, n, 1);   /* (B, S, H*qs), rope part at qo */
    float *ckv = ev_src(c, n, 4);        /* (B, ctx, R) */
    float *kpe = ev_src(c, n, 5);        /* (B, ctx, dr) */
    const float *pos = ev_src(c, n, 6);  /* (B) */
    const float *sel = n->nsrc > 7 ? ev_src(c, n, 7) : NULL; /* (B, S, K) or none */
    float *out = ev_out(c, n);           /* (B, S, H*R) */
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1), ctx = ev_dim(c, n->src[4], 1);
    int64_t H = node_int(n, "heads", 1), R = node_int(n, "rank", 1), dr = node_int(n, "rope_dim", 0),
            qs = node_int(n, "q_stride", 1), qo = node_int(n, "q_off", 0);
    int64_t K = sel ? ev_dim(c, n->src[7], 2) : 0;
    double scale = node_float(n, "scale", 1.0);
    cache_append(ev_src(c, n, 2), ckv, pos, B, S, R, ctx);
    cache_append(ev_src(c, n, 3), kpe, pos, B, S, dr, ctx);
    int64_t *cand = malloc(sizeof(int64_t) * (size_t)(ctx > K ? ctx : K) + 8);
    double *sc = malloc(sizeof(double) * (size_t)(ctx > K ? ctx : K) + 8);
    if (!cand || !sc)
        abort();
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            int64_t p = (int64_t)pos[b] + t, nc = 0;
            if (sel) { /* the selected rows, causal mask applied again */
                for (int64_t k = 0; k < K; k++) {
                    int64_t j = (int64_t)sel[(b * S + t) * K + k];
                    if (j >= 0 && j <= p && j < ctx)
                        cand[nc++] = j;
                }
            } else {
                for (int64_t j = 0; j <= p && j < ctx; j++)
                    cand[nc++] = j;
            }
            for (int64_t h = 0; h < H; h++) {
                const float *q = ql + (b * S + t) * H * R + h * R;
                const float *qr = qp + (b * S + t) * H * qs + h * qs + qo;
                float *o = out + (b * S + t) * H * R + h * R;
                for (int64_t a = 0; a < nc; a++) {
                    const float *kc = ckv + (b * ctx + cand[a]) * R, *kr = kpe + (b * ctx + cand[a]) * dr;
                    double s = 0;
                    for (int64_t r = 0; r < R; r++)
                        s += (double)q[r] * kc[r];
                    for (int64_t i = 0; i < dr; i++)
                        s += (double)qr[i] * kr[i];
                    sc[a] = s * scale;
                }
                double sum = softmax_weights(sc, nc);
                for (int64_t r = 0; r < R; r++) {
                    double acc = 0;
                    for (int64_t a = 0; a < nc; a++)
                        acc += sc[a] * ckv[(b * ctx + cand[a]) * R + r];
                    o[r] = nc ? (float)(acc / sum) : 0.0f;
                }
            }
        }
    free(cand);
    free(sc);
}

/* ---- indexer scores and the causal top-k ---- */

/* Scores of query (b, t) against cache rows 0..ctx-1 into row[] (-inf past pos+t). */
static void index_row(EvalCtx *c, const Node *n, int64_t b, int64_t t, double *row)
{
    const float *q = ev_src(c, n, 0), *kc = ev_src(c, n, 2), *pos = ev_src(c, n, 3);
    const float *w = n->nsrc > 4 ? ev_src(c, n, 4) : NULL;
    int64_t S = ev_dim(c, n->src[0], 1), ctx = ev_dim(c, n->src[2], 1);
    int64_t H = node_int(n, "heads", 1), D = node_int(n, "dim", 1);
    double scale = node_float(n, "scale", 1.0);
    int64_t p = (int64_t)pos[b] + t;
    for (int64_t s = 0; s < ctx; s++) {
        if (s > p) {
            row[s] = -INFINITY;
            continue;
        }
        const float *k = kc + (b * ctx + s) * D;
        double acc = 0;
        for (int64_t h = 0; h < H; h++) {
            const float *qh = q + (b * S + t) * H * D + h * D;
            double dot = 0;
            for (int64_t i = 0; i < D; i++)
                dot += (double)qh[i] * k[i];
            dot *= scale;
            acc += w ? w[(b * S + t) * H + h] * (dot > 0 ? dot : 0) : dot;
        }
        row[s] = acc;
    }
}

static int cmp_desc(const void *a, const void *b) /* (score desc, index asc) over {score, index} pairs */
{
    const double *x = a, *y = b;
    if (x[0] != y[0])
        return x[0] > y[0] ? -1 : 1;
    return x[1] < y[1] ? -1 : x[1] > y[1];
}

static int cmp_idx(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The selection of topk / index_topk for query position p (attrs k, p, window
 * of node n; ops.def): writes k + window entries of out, ascending indices of
 * row[0..min(p, ctx-1)], -1 padded.
 *   1. the k highest (score desc, index asc);
 *   2. adaptive (0 < p < 1): w_s = exp(row[s] - max) / Z, Z = sum over all
 *      s <= p (fp64, ascending s); of step 1's list in its order, keep the
 *      shortest prefix whose running sum (fp64) reaches p·Z (at least one);
 *   3. window W: the union with [p-W+1, p] (those already picked once). */
static void select_topk(const Node *n, const double *row, int64_t p, int64_t ctx, float *out)
{
    int64_t k = node_int(n, "k", 1), W = node_int(n, "window", 0);
    double pm = node_float(n, "p", 1.0);
    int64_t cnt = p + 1 < ctx ? p + 1 : ctx;
    if (cnt < 0) /* a negative position: no candidates (qsort would get a huge count) */
        cnt = 0;
    double *pairs = malloc(sizeof(double) * 2 * (size_t)(cnt > 0 ? cnt : 1));
    if (!pairs)
        abort();
    for (int64_t s = 0; s < cnt; s++) /* {score, index} of every candidate */
        pairs[2 * s] = row[s], pairs[2 * s + 1] = (double)s;
    qsort(pairs, (size_t)cnt, 2 * sizeof(double), cmp_desc);
    int64_t m = cnt < k ? cnt : k; /* picks kept */
    if (pm < 1.0 && m > 0) {
        double mx = pairs[0], z = 0, run = 0;
        for (int64_t s = 0; s < cnt; s++) /* Z in index order */
            z += exp(row[s] - mx);
        for (int64_t i = 0; i < m; i++) {
            run += exp(pairs[2 * i] - mx);
            if (run >= pm * z) {
                m = i + 1;
                break;
            }
        }
    }
    for (int64_t i = 0; i < k + W; i++)
        out[i] = i < m ? (float)pairs[2 * i + 1] : -1.0f;
    qsort(out, (size_t)m, sizeof(float), cmp_idx);
    if (W > 0 && cnt > 0) { /* picks below the window, then the whole window */
        int64_t lo = p - W + 1 > 0 ? p - W + 1 : 0, at = 0;
        while (at < m && out[at] < (float)lo)
            at++;
        for (int64_t s = lo; s < cnt; s++)
            out[at++] = (float)s;
        for (; at < k + W; at++)
            out[at] = -1.0f;
    }
    free(pairs);
}

static void index_append(EvalCtx *c, const Node *n)
{
    int64_t B = ev_dim(c, n->src[0], 0), S = ev_dim(c, n->src[0], 1), ctx = ev_dim(c, n->src[2], 1);
    cache_append(ev_src(c, n, 1), ev_src(c, n, 2), ev_src(c, n, 3), B, S, node_int(n, "dim", 1), ctx);
}

void ref_index_scores(EvalCtx *c, const Node *n)
{
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1), ctx = ev_dim(c, n, 2);
    float *out = ev_out(c, n); /* (B, S, ctx) */
    double *row = malloc(sizeof(double) * (size_t)ctx);
    if (!row)
        abort();
    index_append(c, n);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            index_row(c, n, b, t, row);
            for (int64_t s = 0; s < ctx; s++)
                out[(b * S + t) * ctx + s] = (float)row[s];
        }
    free(row);
}

void ref_topk(EvalCtx *c, const Node *n)
{
    const float *sc = ev_src(c, n, 0), *pos = ev_src(c, n, 1);
    float *out = ev_out(c, n); /* (B, S, k + window) */
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1), ctx = ev_dim(c, n->src[0], 2), k = ev_dim(c, n, 2);
    double *row = malloc(sizeof(double) * (size_t)ctx);
    if (!row)
        abort();
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            for (int64_t s = 0; s < ctx; s++)
                row[s] = sc[(b * S + t) * ctx + s];
            select_topk(n, row, (int64_t)pos[b] + t, ctx, out + (b * S + t) * k);
        }
    free(row);
}

void ref_index_topk(EvalCtx *c, const Node *n)
{
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1), ctx = ev_dim(c, n->src[2], 1), k = ev_dim(c, n, 2);
    const float *pos = ev_src(c, n, 3);
    float *out = ev_out(c, n);
    double *row = malloc(sizeof(double) * (size_t)ctx);
    if (!row)
        abort();
    index_append(c, n);
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            index_row(c, n, b, t, row);
            for (int64_t s = 0; s < ctx; s++) /* as index_scores stores them: f32 */
                row[s] = (float)row[s];
            select_topk(n, row, (int64_t)pos[b] + t, ctx, out + (b * S + t) * k);
        }
    free(row);
}

/* ---- dense causal grouped-query attention ---- */
void ref_attn(EvalCtx *c, const Node *n)
{
    const float *qkv = ev_src(c, n, 0); /* (B, S, (H + 2*Hkv)*D): q heads, k heads, v heads */
    float *kc = ev_src(c, n, 1);        /* (B, ctx, Hkv*D) */
    float *vc = ev_src(c, n, 2);        /* (B, ctx, Hkv*D) */
    const float *pos = ev_src(c, n, 3); /* (B) */
    float *out = ev_out(c, n);          /* (B, S, H*D) */
    int64_t B = ev_dim(c, n, 0), S = ev_dim(c, n, 1), ctx = ev_dim(c, n->src[1], 1);
    int64_t H = node_int(n, "heads", 1), Hkv = node_int(n, "kv_heads", 1), D = node_int(n, "head_dim", 1);
    int64_t W = (H + 2 * Hkv) * D, KW = Hkv * D, G = H / Hkv; /* qkv row width, cache row width, group */
    double scale = node_float(n, "scale", 1.0);
    /* the call's k and v rows into the caches first: a query sees its own key */
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            int64_t p = (int64_t)pos[b] + t;
            if (p < 0 || p >= ctx)
                continue;
            const float *row = qkv + (b * S + t) * W;
            memcpy(kc + (b * ctx + p) * KW, row + H * D, sizeof(float) * (size_t)KW);
            memcpy(vc + (b * ctx + p) * KW, row + (H + Hkv) * D, sizeof(float) * (size_t)KW);
        }
    double *sc = malloc(sizeof(double) * (size_t)ctx + 8); /* (ctx) scores of one query head */
    if (!sc)
        abort();
    for (int64_t b = 0; b < B; b++)
        for (int64_t t = 0; t < S; t++) {
            int64_t p = (int64_t)pos[b] + t;
            int64_t nk = p + 1 < ctx ? p + 1 : ctx; /* keys 0..min(p, ctx-1) */
            for (int64_t h = 0; h < H; h++) {
                const float *q = qkv + (b * S + t) * W + h * D; /* (D) */
                int64_t g = h / G;                              /* its kv head */
                float *o = out + (b * S + t) * H * D + h * D;   /* (D) */
                for (int64_t j = 0; j < nk; j++) {
                    const float *k = kc + (b * ctx + j) * KW + g * D;
                    double s = 0;
                    for (int64_t i = 0; i < D; i++)
                        s += (double)q[i] * k[i];
                    sc[j] = s * scale;
                }
                double sum = softmax_weights(sc, nk);
                for (int64_t i = 0; i < D; i++) {
                    double acc = 0;
                    for (int64_t j = 0; j < nk; j++)
                        acc += sc[j] * vc[(b * ctx + j) * KW + g * D + i];
                    o[i] = nk > 0 ? (float)(acc / sum) : 0.0f;
                }
            }
        }
    free(sc);
}
