/* test_mhc.c — the CPU reference of mHC (ir/ref_mhc.c) against hand
 * computations and identities:
 *   - Sinkhorn: 20 rounds give a doubly stochastic matrix (rows and columns
 *     sum to 1 within 1e-5, entries positive) for n = 1..8; one round of a
 *     2 × 2 matrix equals the fractions worked out by hand;
 *   - mhc_pre, mhc_post and mhc_collapse on one token of n = 2 streams of
 *     D = 2 against values worked out by hand;
 *   - n = 1 with the dynamic part off (scale 0) and b = (0, ln(1/3), 0):
 *     H_pre = 1/2 (which the block's own RMSNorm removes), H_post = 1/2,
 *     H_res = 1, so a whole model (mamba2 and mla blocks; and one with
 *     embed_norm, moe blocks with and without shared experts and a swiglu
 *     block) equals the plain pre-norm model whose output projections are
 *     halved;
 *   - fuse-mhc changes no value (the norm folded into mhc_pre, the stream
 *     update into the block's last op's epilogue with mhc_coef's
 *     coefficients: the output matmul of mamba2, mla, swiglu; the moe op
 *     with and without shared experts; the hybrid layer's hybrid_mix) and
 *     leaves no mhc_post;
 *   - 3 streams around moe blocks with embed_norm: the compile pipeline
 *     lowers and plans both programs, and the reference gives the same
 *     logits in one prefill as in chunks and decode steps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "eval_fixture.h"
#include "frontend.h"
#include "passes.h"

static void sinkhorn_doubly_stochastic(void **state)
{
    (void)state;
    uint64_t rng = 77;
    for (int n = 1; n <= 8; n++)
        for (int trial = 0; trial < 20; trial++) {
            float m[64];
            for (int i = 0; i < n * n; i++)
                m[i] = 2.0f * random_uniform(&rng); /* logits in [-2, 2): |scale·p + b| of a few units */
            ref_sinkhorn(n, 20, m);
            for (int i = 0; i < n; i++) {
                double rs = 0, cs = 0;
                for (int j = 0; j < n; j++) {
                    assert_true(m[i * n + j] > 0);
                    rs += m[i * n + j];
                    cs += m[j * n + i];
                }
                if (fabs(rs - 1) > 1e-5 || fabs(cs - 1) > 1e-5)
                    fail_msg("n=%d trial %d: row %d sums to %.8f, column %d to %.8f", n, trial, i, rs, i, cs);
            }
        }
}

static void sinkhorn_by_hand(void **state)
{
    (void)state;
    /* exp of the logits = [[1, 2], [3, 1]]; columns: [[1/4, 2/3], [3/4, 1/3]];
     * rows (sums 11/12, 13/12): [[3/11, 8/11], [9/13, 4/13]] */
    float m[4] = {0, logf(2), logf(3), 0};
    ref_sinkhorn(2, 1, m);
    const float want[4] = {3.0f / 11, 8.0f / 11, 9.0f / 13, 4.0f / 13};
    for (int i = 0; i < 4; i++)
        assert_float_equal(m[i], want[i], 1e-6);
}

/* One token, n = 2 streams of D = 2: x = ([1, -1], [2, 0]), mean(x²) = 1.5.
 * fn rows (pre0, pre1, post0, post1, res00, res01, res10, res11) pick single
 * entries of x' = x / sqrt(1.5): p = (1/√1.5, 0, 2/√1.5, 1/√1.5, 0, 0, 0, 0);
 * scale = (1, 0.5, 2); base = (0, 0.5, 0, -1, 0, ln 2, ln 3, 0). */
static const char *const hand_ir =
    "graph hand {\n"
    "  %x = weight f32 [1, 4] \"x\" {init=\"zeros\"}\n"
    "  %o = weight f32 [1, 2] \"o\" {init=\"zeros\"}\n"
    "  %fn = weight f32 [8, 4] \"fn\" {init=\"zeros\"}\n"
    "  %base = weight f32 [8] \"base\" {init=\"zeros\"}\n"
    "  %scale = weight f32 [3] \"scale\" {init=\"zeros\"}\n"
    "  %nw = weight f32 [2] \"nw\" {init=\"ones\"}\n"
    "  %pre = mhc_pre f32 [1, 2] %x, %fn, %base, %scale {streams=2, iters=1, eps=1e-12}\n"
    "  %pren = mhc_pre bf16 [1, 2] %x, %fn, %base, %scale, %nw {streams=2, iters=1, eps=1e-12, norm_eps=1e-12}\n"
    "  %post = mhc_post f32 [1, 4] %x, %o, %fn, %base, %scale {streams=2, iters=1, eps=1e-12}\n"
    "  %sum = mhc_collapse f32 [1, 2] %x {streams=2}\n"
    "  output %pre \"pre\"\n  output %pren \"pren\"\n  output %post \"post\"\n  output %sum \"sum\"\n"
    "}\n";

static float *arr(const float *v, int n)
{
    float *p = malloc(sizeof(float) * (size_t)n);
    memcpy(p, v, sizeof(float) * (size_t)n);
    return p;
}

static void ops_by_hand(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = ir_parse(a, hand_ir, "hand.ir", &d);
    if (!g || !ir_verify(g, &d))
        fail_msg("%s", d.msg);
    EvalStore *s = eval_store_new();
    float fn[32] = {0};
    fn[0 * 4 + 0] = 1;  /* pre0  = x'[0] */
    fn[2 * 4 + 2] = 1;  /* post0 = x'[2] */
    fn[3 * 4 + 1] = -1; /* post1 = -x'[1] */
    eval_store_put(s, "x", arr((float[]){1, -1, 2, 0}, 4), 4);
    eval_store_put(s, "o", arr((float[]){0.5f, -2}, 2), 2);
    eval_store_put(s, "fn", arr(fn, 32), 32);
    eval_store_put(s, "base", arr((float[]){0, 0.5f, 0, -1, 0, logf(2), logf(3), 0}, 8), 8);
    eval_store_put(s, "scale", arr((float[]){1, 0.5f, 2}, 3), 3);
    eval_store_put(s, "nw", arr((float[]){1, 1}, 2), 2);
    int64_t sym[SYM_COUNT] = {0};
    EvalOutput out[4] = {{.name = "pre"}, {.name = "pren"}, {.name = "post"}, {.name = "sum"}};
    if (!eval_graph(g, s, sym, NULL, 0, out, 4, &d))
        fail_msg("%s", d.msg);
    /* σ(1/√1.5) = 0.69349216, σ(0.5) = 0.62245933, σ(0.5·2/√1.5) = σ(1/√1.5),
     * σ(0.5/√1.5 - 1) = 0.35623303 (worked out separately) */
    double a0 = 0.69349216, a1 = 0.62245933, p0 = 2 * 0.69349216, p1 = 2 * 0.35623303;
    double h[2] = {a0 * 1 + a1 * 2, a0 * -1 + a1 * 0}; /* H_pre0 x_0 + H_pre1 x_1 */
    assert_float_equal(out[0].data[0], h[0], 1e-5);
    assert_float_equal(out[0].data[1], h[1], 1e-5);
    double r = 1 / sqrt((h[0] * h[0] + h[1] * h[1]) / 2); /* the norm, weight 1, bf16 result */
    assert_float_equal(out[1].data[0], bf16_round((float)(h[0] * r)), 1e-6);
    assert_float_equal(out[1].data[1], bf16_round((float)(h[1] * r)), 1e-6);
    /* H_res = [[3/11, 8/11], [9/13, 4/13]] (sinkhorn_by_hand); o = [0.5, -2] */
    double want[4] = {3.0 / 11 * 1 + 8.0 / 11 * 2 + p0 * 0.5, 3.0 / 11 * -1 + 8.0 / 11 * 0 + p0 * -2,
                      9.0 / 13 * 1 + 4.0 / 13 * 2 + p1 * 0.5, 9.0 / 13 * -1 + 4.0 / 13 * 0 + p1 * -2};
    for (int i = 0; i < 4; i++)
        assert_float_equal(out[2].data[i], want[i], 1e-5);
    assert_float_equal(out[3].data[0], 3, 0);
    assert_float_equal(out[3].data[1], -1, 0);
    for (int i = 0; i < 4; i++)
        free(out[i].data);
    eval_store_free(s);
    arena_free(a);
}

static Graph *load(Arena *a, const char *yaml)
{
    Diag d = {0};
    Graph *g = frontend_load_text(a, yaml, "m.yaml", &d);
    if (!g)
        fail_msg("%s:%d:%d: %s", d.file, d.line, d.col, d.msg);
    assert_true(pass_infer_shapes(g, &d) && pass_verify(g, &d) && pass_dce(g, &d));
    return g;
}

#define BODY                                                                                              \
    "vocab_size: 50\nd_model: 32\nnorm_eps: 1.0e-12\nmamba2: {d_state: 8, headdim: 8, chunk_size: 4}\n"  \
    "layers:\n  - kind: mamba2\n  - kind: mla\n    heads: 2\n    kv_lora_rank: 16\n    qk_nope_head_dim: 8\n" \
    "    qk_rope_head_dim: 8\n    v_head_dim: 8\n  - kind: mamba2\n"

/* embed_norm, moe with shared experts (sigmoid router, selection bias), moe without (softmax), swiglu */
#define BODY_FFN                                                                                          \
    "vocab_size: 50\nd_model: 32\nnorm_eps: 1.0e-12\nembed_norm: true\n"                                   \
    "moe: {n_experts: 5, n_activated: 2, d_ff: 16}\nlayers:\n  - kind: moe\n    n_shared: 1\n"              \
    "    shared_d_ff: 8\n    router: sigmoid\n    router_bias: true\n  - kind: moe\n  - kind: swiglu\n"     \
    "    d_ff: 24\n"

/* `body` (3 blocks, d_model 32) in one mHC stream with α = 0, b = (0, ln 1/3, 0) against the plain model
 * with every output projection (out_proj, o_proj, down_proj: routed and shared experts) halved. */
static void expect_one_stream_is_scaled_residual(const char *body)
{
    Arena *a = arena_new();
    char yp[1024], yh[1024];
    snprintf(yp, sizeof yp, "name: plain\n%s", body);
    snprintf(yh, sizeof yh, "name: hc\nmhc: {streams: 1}\n%s", body);
    Graph *plain = load(a, yp);
    Graph *hc = load(a, yh);
    uint64_t r1 = 5, r2 = 5;
    EvalStore *sp = random_weights(plain, &r1), *sh = random_weights(plain, &r2);
    for (int i = 0; i < plain->nnodes; i++) { /* the plain model's output projections halved (exact in bf16) */
        const Node *n = plain->nodes[i];
        if (n->op != OP_weight || (!strstr(n->ext, "out_proj.weight") && !strstr(n->ext, "o_proj.weight") &&
                                   !strstr(n->ext, "down_proj.weight")))
            continue;
        int64_t k;
        float *w = eval_store_get(sp, n->ext, &k);
        for (int64_t j = 0; j < k; j++)
            w[j] *= 0.5f;
    }
    int hc_weights = 0;
    for (int i = 0; i < hc->nnodes; i++) {
        const Node *n = hc->nodes[i];
        if (n->op != OP_weight || !strstr(n->ext, ".hc_"))
            continue;
        hc_weights++;
        float *v = malloc(sizeof(float) * 3);
        for (int j = 0; j < 3; j++) /* fn [3, D] any value; scale 0; base (0, ln 1/3, 0) */
            v[j] = strstr(n->ext, "hc_base") ? (j == 1 ? logf(1.0f / 3) : 0) : strstr(n->ext, "hc_scale") ? 0 : 0.25f;
        if (strstr(n->ext, "hc_fn")) {
            free(v);
            v = malloc(sizeof(float) * 3 * 32);
            for (int j = 0; j < 3 * 32; j++)
                v[j] = 0.25f;
            eval_store_put(sh, n->ext, v, 3 * 32);
        } else {
            eval_store_put(sh, n->ext, v, 3);
        }
    }
    assert_int_equal(hc_weights, 9); /* fn, base, scale × 3 layers */
    const int tok[] = {3, 17, 5, 39, 0, 22, 8, 8, 31, 12, 1}, pos[] = {0};
    float *lp = eval_logits(plain, sp, 1, 11, 16, tok, pos), *lh = eval_logits(hc, sh, 1, 11, 16, tok, pos);
    double num = 0, den = 0;
    for (int i = 0; i < 11 * 50; i++) {
        num += (double)(lp[i] - lh[i]) * (lp[i] - lh[i]);
        den += (double)lp[i] * lp[i];
    }
    print_message("n=1 mHC vs halved plain residual: rel err %.3g\n", sqrt(num / den));
    assert_true(den > 0 && sqrt(num / den) < 1e-5);
    free(lp);
    free(lh);
    eval_store_free(sp);
    eval_store_free(sh);
    arena_free(a);
}

static void one_stream_is_scaled_residual(void **state)
{
    (void)state;
    expect_one_stream_is_scaled_residual(BODY);
}

static void one_stream_is_scaled_residual_ffn(void **state)
{
    (void)state;
    expect_one_stream_is_scaled_residual(BODY_FFN);
}

/* 3 streams around the moe blocks, with embed_norm: both programs lower and plan; prefill in chunks and
 * decode steps give the logits of one prefill. */
static void three_streams_moe_embed_norm(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Graph *g = load(a, "name: hc3\nmhc: {streams: 3, sinkhorn_iters: 7}\n" BODY_FFN);
    Programs p;
    Diag d = {0};
    if (!pipeline_run(a, graph_clone(a, g), &p, NULL, &d))
        fail_msg("pipeline: %s", d.msg);
    int moe = 0;
    for (int i = 0; i < p.decode->nnodes; i++)
        if (p.decode->nodes[i]->op == OP_moe) {
            moe++;
            assert_string_equal(node_str(p.decode->nodes[i], "kernel", ""), "moe");
        }
    assert_int_equal(moe, 2);
    uint64_t r = 3;
    EvalStore *s = random_weights(g, &r);
    const int tok[] = {3, 17, 5, 39, 0, 22, 8, 8, 31, 12, 1, 44, 9, 27};
    expect_chunked_equals_one_prefill(g, s, tok, 14, 50);
    eval_store_free(s);
    arena_free(a);
}

/* A hybrid block (its indexer's top_k 8 >= the 7 tokens: every key), then a mamba2 block */
#define BODY_HYBRID                                                                                       \
    "vocab_size: 50\nd_model: 32\nnorm_eps: 1.0e-12\nmamba2: {d_state: 8, headdim: 8, chunk_size: 4}\n"  \
    "layers:\n  - kind: hybrid\n    heads: 2\n    kv_lora_rank: 16\n    qk_nope_head_dim: 8\n"              \
    "    qk_rope_head_dim: 8\n    v_head_dim: 8\n    ssm: {d_state: 8, headdim: 8, chunk_size: 4}\n"        \
    "    indexer: {kind: lightning, dim: 8, heads: 2, top_k: 8}\n  - kind: mamba2\n"

/* `body` (3 blocks; 2 for BODY_HYBRID) in 4 streams: fuse-mhc gives the logits of the unfused graph bit for
 * bit, with every block's norm in its mhc_pre, its stream update in the epilogue of its last op (`mm`
 * matmuls, `moe` moe ops, `hyb` hybrid_mix ops) and no mhc_post left. */
static void expect_fusion_changes_nothing(const char *body, int mm, int moe, int hyb)
{
    Arena *a = arena_new();
    char y[1024];
    snprintf(y, sizeof y, "name: hc\nmhc: {streams: 4, sinkhorn_iters: 5}\n%s", body);
    Graph *g = load(a, y);
    Graph *f = graph_clone(a, g);
    Diag d = {0};
    assert_true(pass_fuse_mhc(f, &d) && pass_dce(f, &d) && pass_verify(f, &d));
    int blocks = mm + moe + hyb, fused = 0;
    for (int i = 0; i < f->nnodes; i++)
        fused += (f->nodes[i]->op == OP_mhc_pre || f->nodes[i]->op == OP_mhc_collapse) && f->nodes[i]->dtype == DT_BF16;
    assert_int_equal(fused, blocks + 1); /* the blocks' inputs and the final norm */
    int epi[3] = {0}, posts = 0, coefs = 0;
    for (int i = 0; i < f->nnodes; i++) {
        const Node *n = f->nodes[i];
        epi[0] += n->op == OP_matmul && node_mhc_epilogue(n);
        epi[1] += n->op == OP_moe && node_mhc_epilogue(n);
        epi[2] += n->op == OP_hybrid_mix && node_mhc_epilogue(n);
        posts += n->op == OP_mhc_post;
        coefs += n->op == OP_mhc_coef && n->src[0]->op == OP_mhc_pre && node_int(n->src[0], "coef", 0) == 1;
        if (node_mhc_epilogue(n)) /* the streams and coefficients are the last two operands */
            assert_true(n->src[n->nsrc - 1]->op == OP_mhc_coef && n->dim[n->ndim - 1].n == 4 * 32);
    }
    assert_int_equal(epi[0], mm); /* every block's stream update is its last op's epilogue */
    assert_int_equal(epi[1], moe);
    assert_int_equal(epi[2], hyb);
    assert_int_equal(posts, 0);
    assert_int_equal(coefs, blocks);
    uint64_t r1 = 9, r2 = 9;
    EvalStore *s1 = random_weights(g, &r1), *s2 = random_weights(g, &r2);
    const int tok[] = {3, 17, 5, 39, 0, 22, 8}, pos[] = {0};
    float *l1 = eval_logits(g, s1, 1, 7, 16, tok, pos), *l2 = eval_logits(f, s2, 1, 7, 16, tok, pos);
    double sq = 0;
    for (int i = 0; i < 7 * 50; i++)
        sq += (double)l1[i] * l1[i];
    assert_true(sq > 0);
    assert_memory_equal(l1, l2, sizeof(float) * 7 * 50); /* same arithmetic, same rounding points */
    free(l1);
    free(l2);
    eval_store_free(s1);
    eval_store_free(s2);
    arena_free(a);
}

static void fusion_changes_nothing(void **state)
{
    (void)state;
    expect_fusion_changes_nothing(BODY, 3, 0, 0);
}

/* moe with shared experts (the op adds their projection), moe without (no residual operand), swiglu */
static void fusion_changes_nothing_moe(void **state)
{
    (void)state;
    expect_fusion_changes_nothing(BODY_FFN, 1, 2, 0);
}

static void fusion_changes_nothing_hybrid(void **state)
{
    (void)state;
    expect_fusion_changes_nothing(BODY_HYBRID, 1, 0, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(sinkhorn_doubly_stochastic), cmocka_unit_test(sinkhorn_by_hand),
        cmocka_unit_test(ops_by_hand),                cmocka_unit_test(one_stream_is_scaled_residual),
        cmocka_unit_test(fusion_changes_nothing),     cmocka_unit_test(one_stream_is_scaled_residual_ffn),
        cmocka_unit_test(three_streams_moe_embed_norm), cmocka_unit_test(fusion_changes_nothing_moe),
        cmocka_unit_test(fusion_changes_nothing_hybrid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
