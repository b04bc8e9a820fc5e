/* eval.h — the CPU reference evaluator: the oracle every GPU kernel is
 * tested against.
 *
 * Values are plain fp32 arrays; a value whose IR dtype is bf16 is rounded to
 * bf16 (round-to-nearest-even) after it is computed, so the reference stores
 * what the GPU stores. Weights and states live in an EvalStore keyed by their
 * external names; states persist across runs (prefill then decode steps). */
#pragma once
#include "ir.h"

typedef struct EvalStore EvalStore;

EvalStore *eval_store_new(void);
void eval_store_free(EvalStore *s);
/* Binds a weight (or any named array); the store takes ownership of data. */
void eval_store_put(EvalStore *s, const char *name, float *data, int64_t numel);
/* Looks an array up; NULL if absent. */
float *eval_store_get(EvalStore *s, const char *name, int64_t *numel);
/* Zeroes every array created for a state node (what a session reset does). */
void eval_store_reset_states(EvalStore *s);

typedef struct EvalInput {
    const char *name;   /* external name of the input node ("tokens", "pos") */
    const float *data;  /* values (token ids as floats: exact below 2^24) */
    int64_t numel;      /* must equal the node's element count */
} EvalInput;

typedef struct EvalOutput {
    const char *name; /* graph output name to fetch ("logits") */
    float *data;      /* filled: malloc'd array, caller frees */
    int64_t numel;    /* filled: element count */
} EvalOutput;

/* Runs g with the symbols bound to sym[] (index by Sym). Weights must be in
 * the store (missing → error naming it); states are created zeroed on first
 * use. Returns false with a message on a missing binding or bad size. */
bool eval_graph(const Graph *g, EvalStore *store, const int64_t sym[SYM_COUNT], const EvalInput *in, int nin,
                EvalOutput *out, int nout, Diag *d);

/* bf16 rounding (round to nearest even), as the GPU's cvt.rn.bf16.f32. */
float bf16_round(float x);

/* ---- for the reference functions (ir/ref_*.c) ---- */
struct EvalCtx {
    const Graph *g;        /* the graph being run */
    int64_t sym[SYM_COUNT];/* bound symbol values */
    float **val;           /* [g->nnodes]: value of each node */
};

static inline float *ev_out(EvalCtx *c, const Node *n) { return c->val[n->id]; }
static inline float *ev_src(EvalCtx *c, const Node *n, int i) { return c->val[n->src[i]->id]; }
static inline int64_t ev_dim(const EvalCtx *c, const Node *n, int axis)
{
    return n->dim[axis].sym ? c->sym[n->dim[axis].sym] : n->dim[axis].n;
}
static inline int64_t ev_numel(const EvalCtx *c, const Node *n) { return node_numel(n, c->sym); }
/* Rows = product of all dims but the last. */
static inline int64_t ev_rows(const EvalCtx *c, const Node *n)
{
    int64_t r = 1;
    for (int i = 0; i + 1 < n->ndim; i++)
        r *= ev_dim(c, n, i);
    return r;
}

/* Shared pieces of the reference, also used by fused ops' references. */
float ref_silu_f(float x);
float ref_softplus_f(float x);
/* x (rows, 2F) = gate | up → out (rows, F) = silu(gate) * up. */
void ref_swiglu_raw(int64_t rows, int64_t F, const float *x, float *out);
void ref_rmsnorm_raw(int64_t rows, int64_t D, const float *x, const float *w, float eps, float *out);
void ref_conv1d_raw(int64_t B, int64_t S, int64_t C, int64_t W, const float *x, int64_t xstride,
                    const float *w, const float *bias, float *state, const float *pos, float *out);
void ref_ssd_raw(int64_t B, int64_t S, int64_t H, int64_t P, int64_t N, int64_t G, const float *x,
                 int64_t xstride, const float *dt, int64_t dtstride, const float *A_log, const float *Bm,
                 const float *Cm, int64_t bcstride, const float *D, float *state, float *y);
void ref_selective_scan_raw(int64_t B, int64_t S, int64_t Di, int64_t N, const float *x, int64_t xstride,
                            const float *dt, int64_t dtstride, const float *A_log, const float *Bm, const float *Cm,
                            int64_t bcstride, const float *D, const float *z, int64_t zstride, const float *dt_bias,
                            float *state, float *y);
void ref_gated_rmsnorm_raw(int64_t rows, int64_t C, int64_t group, const float *y, const float *z,
                           int64_t zstride, const float *w, float eps, bool norm_before_gate, float *out);
/* mHC (ir/ref_mhc.c): Sinkhorn of m [n, n] logits in place (exp, then iters
 * rounds of column- then row-normalisation), and one token's coefficients
 * from its streams x [n*D]: h_pre [n], h_post [n], h_res [n, n] row-major. */
void ref_sinkhorn(int64_t n, int iters, float *m);
void ref_mhc_coef_raw(int64_t n, int64_t D, const float *x, const float *fn, const float *base, const float *scale,
                      int iters, float eps, float *h_pre, float *h_post, float *h_res);
/* mhc_post's update of one token: out [n*D] = H_post[i]·o + Σ_j H_res[i,j]·x_j per stream i. */
void ref_mhc_update(int64_t ns, int64_t D, const float *xr, const float *o, const float *h_post, const float *h_res,
                    float *out);
/* The mhc epilogue of n (matmul, moe, hybrid_mix; attr epilogue="mhc"): o (M, N) is n's result as it
 * would be without it; writes n's output (M, n*N) = ref_mhc_update of each row of the streams xs (src
 * at) with the coefficients (H_post, H_res) of coef (src at + 1). */
void ref_mhc_epilogue(EvalCtx *c, const Node *n, int at, const float *o, int64_t M, int64_t N);
/* MoE routing for T tokens over E experts (ir/ref_moe.c): logits (T, E), bias
 * (E) or NULL → sel_e (T, k) expert ids in pick order, sel_w (T, k) weights. */
void ref_moe_route(int64_t T, int64_t E, int64_t k, const float *logits, const float *bias, bool softmax,
                   bool bias_in_weights, bool renorm, float scale, int32_t *sel_e, float *sel_w);
