/* test_ffn.c — the CPU reference of the feed-forward kinds against hand
 * computations:
 *   - swiglu: silu(gate)·up on a hand-picked row;
 *   - the matmul's swiglu prologue equals swiglu then matmul, and a product
 *     worked out by hand;
 *   - the frontend: the swiglu kind's weights, shapes and embed_norm;
 *   - the embed op's norm (embed_norm) and its copies into mHC streams by
 *     hand, and equal to the plain embedding followed by an rmsnorm;
 *   - moe routing: softmax vs sigmoid scores, renormalisation, the scaling
 *     factor, a bias that steers the choice only vs one in the weights,
 *     ties to the lower expert index;
 *   - the moe op on a two-expert example worked out by hand (gate/up
 *     rounded to bf16, the weighted sum, the residual), also without the
 *     residual (attr residual=0, the block inside mHC streams), with and
 *     without a selection bias;
 *   - the moe kind's weights, options and errors, and its graph inside mHC
 *     streams (with and without shared experts). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "frontend.h"
#include "passes.h"
#include "eval_fixture.h"

static Graph *parse(Arena *a, const char *text)
{
    Diag d = {0};
    Graph *g = ir_parse(a, text, "t.ir", &d);
    if (!g)
        fail_msg("%s:%d:%d %s", "t.ir", d.line, d.col, d.msg);
    if (!ir_verify(g, &d))
        fail_msg("verify: %s", d.msg);
    return g;
}

/* Runs g with B = S = 1 (values come in as states); returns output `out`. */
static float *run_out(const Graph *g, EvalStore *s, int64_t B, int64_t S, const char *out)
{
    EvalOutput o = {out, NULL, 0};
    int64_t sym[SYM_COUNT] = {0, B, S, 1};
    Diag d = {0};
    if (!eval_graph(g, s, sym, NULL, 0, &o, 1, &d))
        fail_msg("eval: %s", d.msg);
    return o.data;
}

static void put(EvalStore *s, const char *name, const float *v, int64_t n)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    memcpy(p, v, sizeof(float) * (size_t)n);
    eval_store_put(s, name, p, n);
}

static double silu(double x) { return x / (1 + exp(-x)); }

static void swiglu_by_hand(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Graph *g = parse(a, "graph s {\n  %x = state f32 [batch, seq, 6] \"x\"\n"
                        "  %y = swiglu f32 [batch, seq, 3] %x\n  output %y \"y\"\n}\n");
    EvalStore *s = eval_store_new();
    const float x[6] = {1.0f, -2.0f, 0.0f, /* gate */ 3.0f, 0.5f, -4.0f /* up */};
    put(s, "x", x, 6);
    float *y = run_out(g, s, 1, 1, "y");
    /* silu(1) = 1/(1+e^-1) = 0.731059; silu(-2) = -2/(1+e^2) = -0.238406; silu(0) = 0 */
    assert_float_equal(y[0], 0.7310586 * 3.0, 1e-5);
    assert_float_equal(y[1], -0.2384058 * 0.5, 1e-5);
    assert_float_equal(y[2], 0.0, 0);
    free(y);
    eval_store_free(s);
    arena_free(a);
}

/* matmul(x, W){prologue=swiglu} == matmul(swiglu(x), W), and one entry by hand. */
static void swiglu_prologue(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Graph *g = parse(a, "graph s {\n  %x = state bf16 [batch, seq, 8] \"x\"\n"
                        "  %w = weight bf16 [3, 4] \"w\" {init=\"zeros\"}\n"
                        "  %act = swiglu bf16 [batch, seq, 4] %x\n"
                        "  %y0 = matmul f32 [batch, seq, 3] %act, %w\n"
                        "  %y1 = matmul f32 [batch, seq, 3] %x, %w {prologue=\"swiglu\"}\n"
                        "  output %y0 \"y0\"\n  output %y1 \"y1\"\n}\n");
    EvalStore *s = eval_store_new();
    const int64_t B = 2; /* two rows, seq 1 */
    float x[16], w[12];
    uint64_t rng = 7;
    for (int i = 0; i < 16; i++)
        x[i] = bf16_round(2 * random_uniform(&rng));
    for (int i = 0; i < 12; i++)
        w[i] = bf16_round(random_uniform(&rng));
    put(s, "x", x, 16);
    put(s, "w", w, 12);
    float *y0 = run_out(g, s, B, 1, "y0"), *y1 = run_out(g, s, B, 1, "y1");
    for (int i = 0; i < B * 3; i++)
        assert_float_equal(y0[i], y1[i], 0);
    for (int r = 0; r < B; r++)
        for (int n = 0; n < 3; n++) { /* by hand: sum_k bf16(silu(g_k) u_k) w[n,k] */
            double acc = 0;
            for (int k = 0; k < 4; k++)
                acc += (double)bf16_round((float)(silu(x[r * 8 + k]) * x[r * 8 + 4 + k])) * w[n * 4 + k];
            assert_float_equal(y1[r * 3 + n], acc, 1e-4 * (1 + fabs(acc)));
        }
    free(y0);
    free(y1);
    eval_store_free(s);
    arena_free(a);
}

static Graph *load(Arena *a, const char *yaml, Diag *d)
{
    Graph *g = frontend_load_text(a, yaml, "m.yaml", d);
    return g && pass_infer_shapes(g, d) && pass_verify(g, d) ? g : NULL;
}

static const Node *find_ext(const Graph *g, const char *ext)
{
    for (int i = 0; i < g->nnodes; i++)
        if (g->nodes[i]->ext && !strcmp(g->nodes[i]->ext, ext))
            return g->nodes[i];
    return NULL;
}

static void swiglu_frontend(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = load(a, "name: f\nvocab_size: 64\nd_model: 48\nembed_norm: true\nlayers:\n  - kind: swiglu\n"
                       "    d_ff: 40\n  - kind: swiglu\n    ffn_mult: 2.5\n  - kind: swiglu\n", &d);
    if (!g)
        fail_msg("%s", d.msg);
    const Node *w = find_ext(g, "backbone.layers.0.mlp.gate_up_proj.weight");
    assert_non_null(w);
    assert_int_equal(w->dim[0].n, 80);
    assert_int_equal(w->dim[1].n, 48);
    w = find_ext(g, "backbone.layers.0.mlp.down_proj.weight");
    assert_non_null(w);
    assert_int_equal(w->dim[0].n, 48);
    assert_int_equal(w->dim[1].n, 40);
    w = find_ext(g, "backbone.layers.1.mlp.down_proj.weight"); /* 2.5 · 48 = 120 */
    assert_int_equal(w->dim[1].n, 120);
    w = find_ext(g, "backbone.layers.2.mlp.down_proj.weight"); /* 8/3 · 48 = 128, rounded up to 64s */
    assert_int_equal(w->dim[1].n, 128);
    w = find_ext(g, "backbone.embed_norm.weight");
    assert_non_null(w);
    assert_int_equal(w->dim[0].n, 48);
    /* errors name the option with file:line:col */
    assert_null(load(a, "name: f\nvocab_size: 64\nd_model: 48\nlayers:\n  - kind: swiglu\n    d_ff: 40\n"
                        "    ffn_mult: 2\n", &d));
    assert_non_null(strstr(d.msg, "not both"));
    assert_null(load(a, "name: f\nvocab_size: 64\nd_model: 48\nlayers:\n  - kind: swiglu\n    d_ff: 44\n", &d));
    assert_int_equal(d.line, 6);
    assert_int_equal(d.col, 11);
    assert_non_null(strstr(d.msg, "multiple of 8"));
    arena_free(a);
}


/* ---- moe routing (ref_moe_route) ---- */
typedef struct Route {
    int32_t e[8]; /* picks */
    float w[8];   /* weights */
} Route;

static Route route(int64_t E, int64_t k, const float *logits, const float *bias, bool softmax, bool biasw, bool renorm,
                   float scale)
{
    Route r;
    ref_moe_route(1, E, k, logits, bias, softmax, biasw, renorm, scale, r.e, r.w);
    return r;
}

static void moe_route_by_hand(void **state)
{
    (void)state;
    const float l[4] = {1, 3, 2, 0};
    /* softmax: S = 1 + e + e^2 + e^3 = 31.192875; picks 1 (e^3/S = 0.643914), 2 (e^2/S = 0.236883) */
    Route r = route(4, 2, l, NULL, true, false, false, 1);
    assert_int_equal(r.e[0], 1);
    assert_int_equal(r.e[1], 2);
    assert_float_equal(r.w[0], 0.643914, 1e-5);
    assert_float_equal(r.w[1], 0.236883, 1e-5);
    /* renormalised: e^3 / (e^3 + e^2) = 1 / (1 + e^-1) = 0.731059 */
    r = route(4, 2, l, NULL, true, false, true, 1);
    assert_float_equal(r.w[0], 0.731059, 1e-5);
    assert_float_equal(r.w[1], 0.268941, 1e-5);
    /* sigmoid: sigma(3) = 0.952574, sigma(2) = 0.880797; renormalised 0.519575, 0.480425; scaled by 2.5 */
    r = route(4, 2, l, NULL, false, false, false, 1);
    assert_float_equal(r.w[0], 0.952574, 1e-5);
    assert_float_equal(r.w[1], 0.880797, 1e-5);
    r = route(4, 2, l, NULL, false, false, true, 2.5f);
    assert_float_equal(r.w[0], 2.5 * 0.519575, 1e-5);
    assert_float_equal(r.w[1], 2.5 * 0.480425, 1e-5);
    /* a bias of 0.9 on expert 3: sel = (0.731, 0.953, 0.881, 0.5 + 0.9 = 1.4) picks 3 then 1 */
    const float bias[4] = {0, 0, 0, 0.9f};
    r = route(4, 2, l, bias, false, false, true, 1);
    assert_int_equal(r.e[0], 3);
    assert_int_equal(r.e[1], 1);
    /* selection only: weights from the scores, sigma(0) = 0.5 and 0.952574, renormalised */
    assert_float_equal(r.w[0], 0.5 / 1.452574, 1e-5);
    assert_float_equal(r.w[1], 0.952574 / 1.452574, 1e-5);
    /* bias_in_weights: 1.4 and 0.952574, renormalised */
    r = route(4, 2, l, bias, false, true, true, 1);
    assert_int_equal(r.e[0], 3);
    assert_float_equal(r.w[0], 1.4 / 2.352574, 1e-5);
    assert_float_equal(r.w[1], 0.952574 / 2.352574, 1e-5);
    /* softmax with a bias of 1 on expert 3: sel[3] = 0.032059 + 1 beats 0.643914, so 3 then 1; the
     * weights stay the scores, e^0/S and e^3/S (not renormalised) */
    const float bias2[4] = {0, 0, 0, 1.0f};
    r = route(4, 2, l, bias2, true, false, false, 1);
    assert_int_equal(r.e[0], 3);
    assert_int_equal(r.e[1], 1);
    assert_float_equal(r.w[0], 0.032059, 1e-5);
    assert_float_equal(r.w[1], 0.643914, 1e-5);
}

static void moe_route_ties(void **state)
{
    (void)state;
    const float flat[4] = {0.5f, 0.5f, 0.5f, 0.5f};
    Route r = route(4, 3, flat, NULL, false, false, true, 1);
    assert_int_equal(r.e[0], 0); /* all equal: lowest indices, in order */
    assert_int_equal(r.e[1], 1);
    assert_int_equal(r.e[2], 2);
    assert_float_equal(r.w[0], 1.0 / 3, 1e-6);
    const float mid[4] = {1, 2, 2, 1};
    r = route(4, 3, mid, NULL, true, false, true, 1);
    assert_int_equal(r.e[0], 1);
    assert_int_equal(r.e[1], 2);
    assert_int_equal(r.e[2], 0); /* 0 and 3 tie for the third pick */
    /* a tie made by the bias: sel = 0.5 + 0.5 = 1.0 for both 0 and 2 */
    const float z[3] = {0, 0, 0};
    const float b[3] = {0.5f, 0, 0.5f};
    r = route(3, 2, z, b, false, false, true, 1);
    assert_int_equal(r.e[0], 0);
    assert_int_equal(r.e[1], 2);
    assert_float_equal(r.w[0], 0.5, 1e-6);
}

/* The whole op: E = 2 experts with F = 1, D = 2, k = 1, by hand. */
static void moe_op_by_hand(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Graph *g = parse(a, "graph m {\n  %h = state bf16 [batch, seq, 2] \"h\"\n"
                        "  %lg = state f32 [batch, seq, 2] \"lg\"\n  %res = state f32 [batch, seq, 2] \"res\"\n"
                        "  %wgu = weight bf16 [2, 2, 2] \"wgu\" {init=\"zeros\"}\n"
                        "  %wd = weight bf16 [2, 2, 1] \"wd\" {init=\"zeros\"}\n"
                        "  %bias = weight f32 [2] \"bias\" {init=\"zeros\"}\n"
                        "  %y = moe f32 [batch, seq, 2] %h, %lg, %wgu, %wd, %res {experts=2, topk=1, dff=1, "
                        "score=\"softmax\", bias_in_weights=0, renorm=0, scale=2.0}\n"
                        "  %z = moe f32 [batch, seq, 2] %h, %lg, %wgu, %wd {experts=2, topk=1, dff=1, "
                        "score=\"softmax\", bias_in_weights=0, renorm=0, scale=2.0, residual=0}\n"
                        "  %zb = moe f32 [batch, seq, 2] %h, %lg, %wgu, %wd, %bias {experts=2, topk=1, dff=1, "
                        "score=\"sigmoid\", bias_in_weights=0, renorm=0, scale=2.0, residual=0}\n"
                        "  output %y \"y\"\n  output %z \"z\"\n  output %zb \"zb\"\n}\n");
    EvalStore *s = eval_store_new();
    /* two tokens: token 0 prefers expert 1 (logits 0, 1), token 1 expert 0 (logits 2, 2: tie → 0) */
    const float h[4] = {1, 2, -1, 0.5f}, lg[4] = {0, 1, 2, 2}, res[4] = {10, 20, 30, 40};
    /* expert e: gate row wgu[e][0], up row wgu[e][1]; down column wd[e][:, 0] */
    const float wgu[8] = {0.5f, 0.25f, 1, -1, /* expert 0 */ 1, 0, 0.5f, 0.5f /* expert 1 */};
    const float wd[4] = {2, -1, /* expert 0 */ 1, 3 /* expert 1 */};
    put(s, "h", h, 4);
    put(s, "lg", lg, 4);
    put(s, "res", res, 4);
    put(s, "wgu", wgu, 8);
    put(s, "wd", wd, 4);
    put(s, "bias", (const float[]){1, 0}, 2); /* only %zb reads it */
    float *y = run_out(g, s, 2, 1, "y");
    /* token 0, expert 1: g = 1, u = 0.5·1 + 0.5·2 = 1.5; act = bf16(silu(1)·1.5) = bf16(1.096588) = 1.09375;
     * w = softmax = e/(1+e) = 0.731059, × scale 2; y = res + w·act·(1, 3) */
    double act0 = bf16_round((float)(silu(1.0) * 1.5)), w0 = 2 * exp(1.0) / (1 + exp(1.0));
    assert_float_equal(act0, 1.09375, 1e-6);
    assert_float_equal(y[0], 10 + w0 * act0 * 1, 1e-4);
    assert_float_equal(y[1], 20 + w0 * act0 * 3, 1e-4);
    /* token 1, expert 0: g = -0.5 + 0.125 = -0.375, u = -1 - 0.5 = -1.5; w = 0.5 × 2 = 1 */
    double act1 = bf16_round((float)(silu(-0.375) * -1.5));
    assert_float_equal(y[2], 30 + act1 * 2, 1e-4);
    assert_float_equal(y[3], 40 + act1 * -1, 1e-4);
    free(y);
    /* residual=0: the routed sum alone (the block's F(h) inside mHC streams) */
    float *z = run_out(g, s, 2, 1, "z");
    assert_float_equal(z[0], w0 * act0 * 1, 1e-5);
    assert_float_equal(z[1], w0 * act0 * 3, 1e-5);
    assert_float_equal(z[2], act1 * 2, 1e-5);
    assert_float_equal(z[3], act1 * -1, 1e-5);
    free(z);
    /* residual=0 with a selection bias (src 4 then): sigmoid scores, bias (1, 0) sends both tokens to
     * expert 0. Token 0 (score σ(0) = 0.5, w = 1): g = 0.5 + 0.5 = 1, u = 1 - 2 = -1; token 1
     * (σ(2) = 0.880797, w = 1.761594): act1 as above */
    float *zb = run_out(g, s, 2, 1, "zb");
    double act2 = bf16_round((float)(silu(1.0) * -1)), w1 = 2 / (1 + exp(-2.0));
    assert_float_equal(zb[0], act2 * 2, 1e-5);
    assert_float_equal(zb[1], act2 * -1, 1e-5);
    assert_float_equal(zb[2], w1 * act1 * 2, 1e-5);
    assert_float_equal(zb[3], w1 * act1 * -1, 1e-5);
    free(zb);
    eval_store_free(s);
    arena_free(a);
}

static void moe_frontend(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = load(a, "name: f\nvocab_size: 64\nd_model: 48\nmoe: {n_experts: 6, n_activated: 2, d_ff: 24}\n"
                       "layers:\n  - kind: moe\n    n_shared: 2\n    shared_d_ff: 16\n    router: sigmoid\n"
                       "    router_bias: true\n    routed_scaling_factor: 2.5\n  - kind: moe\n", &d);
    if (!g)
        fail_msg("%s", d.msg);
    const Node *w = find_ext(g, "backbone.layers.0.mlp.experts.gate_up_proj.weight");
    assert_non_null(w);
    assert_int_equal(w->ndim, 3);
    assert_int_equal(w->dim[0].n, 6);
    assert_int_equal(w->dim[1].n, 48);
    assert_int_equal(w->dim[2].n, 48);
    w = find_ext(g, "backbone.layers.0.mlp.experts.down_proj.weight");
    assert_int_equal(w->dim[1].n, 48);
    assert_int_equal(w->dim[2].n, 24);
    assert_non_null(find_ext(g, "backbone.layers.0.mlp.gate.weight"));
    assert_non_null(find_ext(g, "backbone.layers.0.mlp.gate.e_score_correction_bias"));
    w = find_ext(g, "backbone.layers.0.mlp.shared_experts.down_proj.weight"); /* 2 shared experts of 16 */
    assert_non_null(w);
    assert_int_equal(w->dim[1].n, 32);
    assert_null(find_ext(g, "backbone.layers.1.mlp.gate.e_score_correction_bias"));
    assert_null(find_ext(g, "backbone.layers.1.mlp.shared_experts.down_proj.weight"));
    const Node *m = graph_find(g, "l0.res");
    assert_non_null(m);
    assert_int_equal(m->op, OP_moe);
    assert_string_equal(node_str(m, "score", ""), "sigmoid");
    assert_float_equal(node_float(m, "scale", 0), 2.5, 0);
    assert_int_equal(node_int(m, "topk", 0), 2);
    static const char *const bad[][2] = {
        {"    n_activated: 7\n", "exceeds n_experts"},
        {"    router: relu\n", "softmax or sigmoid"},
        {"    bias_in_weights: true\n", "needs router_bias"},
        {"    d_ff: 20\n", "multiple of 8"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char y[512];
        snprintf(y, sizeof y, "name: f\nvocab_size: 64\nd_model: 48\nlayers:\n  - kind: moe\n    n_experts: 6\n%s",
                 bad[i][0]);
        assert_null(load(a, y, &d));
        if (!strstr(d.msg, bad[i][1]) || d.line != 7)
            fail_msg("case %zu: got line %d '%s'", i, d.line, d.msg);
    }
    arena_free(a);
}

/* embed with a norm weight: rows of D = 4, 3 mHC streams. Row 1 = (3, 4, 0, 0): mean(x²) = 25/4, so
 * x / rms = x / 2.5 = (1.2, 1.6, 0, 0), × w (2, 0.5, 1, 1) = (2.4, 0.8, 0, 0); row 2 = (1, -1, 1, -1): rms 1, × w =
 * (2, -0.5, 1, -1). Each stream holds the same normalised row; it also equals embed then rmsnorm. */
static void embed_norm_by_hand(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Graph *g = parse(a, "graph e {\n  %tok = input i32 [batch, seq] \"tokens\"\n"
                        "  %tab = weight bf16 [3, 4] \"tab\" {init=\"zeros\"}\n"
                        "  %w = weight f32 [4] \"w\" {init=\"zeros\"}\n"
                        "  %x = embed f32 [batch, seq, 12] %tab, %tok, %w {streams=3, eps=1e-12}\n"
                        "  %e = embed f32 [batch, seq, 4] %tab, %tok\n"
                        "  %en = rmsnorm f32 [batch, seq, 4] %e, %w {eps=1e-12}\n"
                        "  %x1 = embed f32 [batch, seq, 4] %tab, %tok, %w {eps=1e-12}\n"
                        "  output %x \"x\"\n  output %en \"en\"\n  output %x1 \"x1\"\n}\n");
    EvalStore *s = eval_store_new();
    put(s, "tab", (const float[]){0.5f, 0.5f, 0.5f, 0.5f, 3, 4, 0, 0, 1, -1, 1, -1}, 12);
    put(s, "w", (const float[]){2, 0.5f, 1, 1}, 4);
    const float tok[2] = {1, 2};
    EvalInput in = {"tokens", tok, 2};
    EvalOutput o[3] = {{"x", NULL, 0}, {"en", NULL, 0}, {"x1", NULL, 0}};
    int64_t sym[SYM_COUNT] = {0, 2, 1, 1};
    Diag d = {0};
    if (!eval_graph(g, s, sym, &in, 1, o, 3, &d))
        fail_msg("eval: %s", d.msg);
    const double want[2][4] = {{2.4, 0.8, 0, 0}, {2, -0.5, 1, -1}};
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++)
            for (int i = 0; i < 4; i++)
                assert_float_equal(o[0].data[(t * 3 + k) * 4 + i], want[t][i], 1e-6);
    assert_int_equal(o[1].numel, 8);
    for (int t = 0; t < 2; t++)
        for (int k = 0; k < 3; k++) /* every stream's copy equals the rmsnorm op's result, bit for bit */
            assert_memory_equal(o[0].data + (t * 3 + k) * 4, o[1].data + t * 4, sizeof(float) * 4);
    assert_memory_equal(o[2].data, o[1].data, sizeof(float) * 8);
    for (int i = 0; i < 3; i++)
        free(o[i].data);
    eval_store_free(s);
    arena_free(a);
}

/* Inside mHC streams the moe block is F(h) alone: with shared experts the moe op adds the shared
 * projection's plain output (no x anywhere in the block), without them it has no residual operand;
 * embed_norm becomes the embed op's norm weight, before the copies. */
static void moe_in_mhc_frontend(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = load(a, "name: f\nvocab_size: 64\nd_model: 48\nembed_norm: true\nmhc: {streams: 3}\n"
                       "moe: {n_experts: 6, n_activated: 2, d_ff: 24}\n"
                       "layers:\n  - kind: moe\n    n_shared: 1\n  - kind: moe\n    router_bias: true\n", &d);
    if (!g)
        fail_msg("%s", d.msg);
    const Node *x0 = graph_find(g, "x0");
    assert_non_null(x0);
    assert_int_equal(x0->op, OP_embed);
    assert_int_equal(x0->nsrc, 3);
    assert_string_equal(x0->src[2]->ext, "backbone.embed_norm.weight");
    assert_int_equal(node_int(x0, "streams", 1), 3);
    assert_int_equal(x0->dim[2].n, 3 * 48);
    for (int l = 0; l < 2; l++) {
        char nm[32];
        snprintf(nm, sizeof nm, "l%d.mlp.out", l);
        const Node *m = graph_find(g, nm);
        assert_non_null(m);
        assert_int_equal(m->op, OP_moe);
        assert_int_equal(m->dim[2].n, 48); /* F(h): f32 [B,S,D] for mhc_post */
        snprintf(nm, sizeof nm, "l%d.res", l);
        const Node *post = graph_find(g, nm);
        assert_non_null(post);
        assert_int_equal(post->op, OP_mhc_post);
        assert_ptr_equal(post->src[1], m);
        if (l == 0) { /* shared(h): the shared down projection's own output, no residual in it */
            assert_int_equal(node_int(m, "residual", 1), 1);
            assert_int_equal(m->nsrc, 5);
            assert_int_equal(m->src[4]->op, OP_matmul);
            assert_int_equal(m->src[4]->nsrc, 2);
            assert_string_equal(m->src[4]->src[1]->ext, "backbone.layers.0.mlp.shared_experts.down_proj.weight");
        } else { /* no residual operand; the bias is src 4 */
            assert_int_equal(node_int(m, "residual", 1), 0);
            assert_int_equal(m->nsrc, 5);
            assert_string_equal(m->src[4]->ext, "backbone.layers.1.mlp.gate.e_score_correction_bias");
        }
    }
    for (int i = 0; i < g->nnodes; i++) /* nothing adds inside a block: the streams carry the residual */
        assert_int_not_equal(g->nodes[i]->op, OP_add);
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(swiglu_by_hand),
        cmocka_unit_test(swiglu_prologue),
        cmocka_unit_test(swiglu_frontend),
        cmocka_unit_test(moe_route_by_hand),
        cmocka_unit_test(moe_route_ties),
        cmocka_unit_test(moe_op_by_hand),
        cmocka_unit_test(moe_frontend),
        cmocka_unit_test(embed_norm_by_hand),
        cmocka_unit_test(moe_in_mhc_frontend),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
