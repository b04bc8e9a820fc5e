/* test_gpu_mhc.c — mHC streams on the GPU against the CPU reference
 * (ir/ref_mhc.c): a tiny model with 4 streams around mamba2 and mla blocks
 * and one with 3 streams of a ragged width (n·D = 120), prefill of a
 * length that is no multiple of any tile, then decode steps, each compared
 * value by value (the embedding's copies, each block's input from mhc_pre
 * with its norm fused, each block's stream update from mhc_post, the
 * collapsed final norm, the logits); a ragged prefill (rows of different
 * lengths in one call) then decode steps against the reference run row by
 * row; decode step t equal to prefill position t; and
 * models/sparse-mamba-transformer.yaml at a small size. Then moe blocks in
 * streams with embed_norm: a model whose first block is a moe without shared
 * experts (the moe op without a residual operand) and one whose first block
 * has a shared expert (the op adds the shared projection), each value by
 * value after prefill and decode steps (the normalised embedding's copies,
 * the block's input, the router logits, the block's output F(h), the stream
 * update, the logits; the moe block comes first so that both sides route the
 * same bf16 rows and a near tie cannot flip an expert between them); a
 * deeper moe / mamba2 / moe model in a ragged prefill and with decode step t
 * equal to prefill position t. The moe blocks' stream update runs in
 * moe_combine (fuse-mhc's epilogue "mhc") unless the block's output F(h) is
 * itself read back (another use): the first two cases run both ways, the
 * fused one without l0.mlp.out among the values. Hybrid blocks (hybrid_mix
 * takes the update) in 4 streams and in 3 of a ragged width, value by
 * value, and decode step t equal to prefill position t; their indexers'
 * top_k holds every position of these calls, so GPU and CPU attend to the
 * same keys whatever the rounding of their scores. Bounds as in the rest of
 * the suite: bf16 values 1e-2, f32 streams and logits 2e-2; the normalised
 * embedding 1e-5. Exits 77 without a GPU. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_common.h"

#define HC4                                                                                                     \
    "name: hc4\nvocab_size: 300\nd_model: 64\nmhc: {streams: 4, sinkhorn_iters: 20}\n"                        \
    "mamba2: {d_state: 16, headdim: 16, chunk_size: 16}\nlayers:\n  - kind: mamba2\n"                         \
    "  - kind: mla\n    heads: 2\n    q_lora_rank: 32\n    kv_lora_rank: 64\n    qk_nope_head_dim: 16\n"      \
    "    qk_rope_head_dim: 16\n    v_head_dim: 32\n  - kind: mamba2\n"
#define HC3                                                                                                     \
    "name: hc3\nvocab_size: 257\nd_model: 40\nmhc: {streams: 3, sinkhorn_iters: 7}\n"                         \
    "mamba2: {d_state: 16, headdim: 16, chunk_size: 8}\nlayers:\n  - kind: mamba2\n    repeat: 2\n"

/* models/sparse-mamba-transformer.yaml at a small size: sparse MLA (Mamba2
 * indexer) and SwiGLU blocks in 4 mHC streams. top_k 64 holds every
 * position of these calls, so GPU and CPU select the same keys whatever the
 * rounding of their scores (near-tie selections are test_gpu_mla's). */
#define SMT                                                                                                     \
    "name: smt_small\nvocab_size: 300\nd_model: 64\nmhc: {streams: 4, sinkhorn_iters: 20}\n"                  \
    "sparse_mla: {heads: 2, q_lora_rank: 32, kv_lora_rank: 64, qk_nope_head_dim: 16, qk_rope_head_dim: 16,"      \
    " v_head_dim: 32, rope_style: interleaved, indexer: {kind: mamba2, dim: 16, top_k: 64, d_state: 16,"         \
    " headdim: 16, expand: 1, chunk_size: 16}}\nswiglu: {d_ff: 96}\n"                                           \
    "layers:\n  - kind: sparse_mla\n  - kind: swiglu\n  - kind: sparse_mla\n  - kind: swiglu\n"

/* embed_norm and moe blocks in mHC streams: the first block a moe without shared experts (softmax,
 * selection bias), then a swiglu; 4 streams */
#define HCMOE_A                                                                                                 \
    "name: hc_moe_a\nvocab_size: 300\nd_model: 64\nembed_norm: true\nmhc: {streams: 4, sinkhorn_iters: 20}\n"  \
    "layers:\n  - kind: moe\n    n_experts: 6\n    n_activated: 2\n    d_ff: 40\n    router_bias: true\n"      \
    "  - kind: swiglu\n    d_ff: 96\n"
/* the first block a moe with a shared expert (sigmoid, scaled), 3 streams of a ragged width (n·D = 120) */
#define HCMOE_B                                                                                                 \
    "name: hc_moe_b\nvocab_size: 257\nd_model: 40\nembed_norm: true\nmhc: {streams: 3, sinkhorn_iters: 7}\n"   \
    "layers:\n  - kind: moe\n    n_experts: 5\n    n_activated: 2\n    d_ff: 24\n    n_shared: 1\n"            \
    "    shared_d_ff: 16\n    router: sigmoid\n    routed_scaling_factor: 2.5\n"
/* deeper: moe (shared, sigmoid, bias), mamba2, moe (no shared) in 4 streams, embed_norm */
#define HCMOE                                                                                                   \
    "name: hc_moe\nvocab_size: 300\nd_model: 64\nembed_norm: true\nmhc: {streams: 4, sinkhorn_iters: 20}\n"    \
    "mamba2: {d_state: 16, headdim: 16, chunk_size: 16}\nmoe: {n_experts: 8, n_activated: 2, d_ff: 64}\n"        \
    "layers:\n  - kind: moe\n    n_shared: 1\n    router: sigmoid\n    router_bias: true\n  - kind: mamba2\n"  \
    "  - kind: moe\n"

/* hybrid blocks (a Mamba2 and a sparse MLA path mixed by a per-token gate; top_k 64 >= every length here)
 * around a mamba2 block in 4 streams; and one hybrid block in 3 streams of a ragged width (n·D = 120) */
#define HCHYB                                                                                                   \
    "name: hc_hybrid\nvocab_size: 300\nd_model: 64\nmhc: {streams: 4, sinkhorn_iters: 20}\n"                 \
    "mamba2: {d_state: 16, headdim: 16, chunk_size: 16}\n"                                                     \
    "hybrid: {heads: 2, q_lora_rank: 32, kv_lora_rank: 64, qk_nope_head_dim: 16, qk_rope_head_dim: 16,"       \
    " v_head_dim: 32, ssm: {d_state: 16, headdim: 16, expand: 1, chunk_size: 16},"                             \
    " indexer: {kind: lightning, dim: 32, heads: 2, top_k: 64}}\n"                                              \
    "layers:\n  - kind: hybrid\n  - kind: mamba2\n  - kind: hybrid\n"
#define HCHYB3                                                                                                  \
    "name: hc_hybrid3\nvocab_size: 257\nd_model: 40\nmhc: {streams: 3, sinkhorn_iters: 7}\n"                 \
    "hybrid: {heads: 2, q_lora_rank: 16, kv_lora_rank: 32, qk_nope_head_dim: 8, qk_rope_head_dim: 8,"         \
    " v_head_dim: 16, ssm: {d_state: 16, headdim: 16, chunk_size: 8},"                                         \
    " indexer: {kind: lightning, dim: 16, heads: 2, top_k: 64}}\nlayers:\n  - kind: hybrid\n"

/* Prefill batch × seq, then `steps` decode steps; every value compared with the reference. */
static void run_case(const char *yaml, const char *const *values, const double *bounds, int batch, int seq, int steps)
{
    GpuModel m;
    gpu_model_open(&m, yaml, values, batch, seq, seq + steps + 1, NULL);
    int32_t *tok = malloc(sizeof(int32_t) * (size_t)(batch * seq));
    fill_tokens(tok, batch * seq, m.vocab, 11);
    for (int step = -1; step < steps; step++) {
        int s = step < 0 ? seq : 1;
        int32_t one[64];
        if (step >= 0)
            fill_tokens(one, batch, m.vocab, 300 + (uint64_t)step);
        check_ok(step < 0 ? msac_session_prefill(m.sess, batch, seq, tok, NULL)
                          : msac_session_decode(m.sess, batch, one, NULL));
        float *ref[16] = {0};
        cpu_run(&m, batch, s, step < 0 ? tok : one, values, ref);
        for (int i = 0; values[i]; i++) {
            int64_t n = (int64_t)batch * s * value_width(&m, values[i]);
            float *g = malloc(sizeof(float) * (size_t)n);
            check_ok(msac_session_read_output(m.sess, values[i], g, (size_t)n));
            char label[128];
            snprintf(label, sizeof label, "%s %s %s", m.graph->name, step < 0 ? "prefill" : "decode", values[i]);
            expect_close(label, g, ref[i], n, bounds[i]);
            free(g);
            free(ref[i]);
        }
    }
    free(tok);
    gpu_model_close(&m);
}

static void mhc_four_streams(void **state)
{
    (void)state;
    const char *const v[] = {"x0", "l0.h", "l0.res", "l1.h", "l1.res", "l2.h", "l2.res", "h_f", "logits", NULL};
    const double b[] = {0, 1e-2, 2e-2, 1e-2, 2e-2, 1e-2, 2e-2, 1e-2, 2e-2};
    run_case(HC4, v, b, 2, 45, 3);
}

static void mhc_three_streams_ragged_width(void **state)
{
    (void)state;
    const char *const v[] = {"l0.h", "l0.res", "l1.res", "h_f", "logits", NULL};
    const double b[] = {1e-2, 2e-2, 2e-2, 1e-2, 2e-2};
    run_case(HC3, v, b, 3, 21, 2);
}

static void sparse_mamba_transformer_small(void **state)
{
    (void)state;
    const char *const v[] = {"l0.res", "l1.res", "l2.res", "l3.res", "h_f", "logits", NULL};
    const double b[] = {2e-2, 2e-2, 2e-2, 2e-2, 1e-2, 2e-2};
    run_case(SMT, v, b, 2, 37, 3);
}

/* One ragged prefill of rows of different lengths, then decode steps with
 * every row at its own position; the reference runs each row alone. */
static void ragged_prefill(const char *yaml)
{
    enum { B = 3, STEPS = 2 };
    const int lens[B] = {13, 1, 29};
    GpuModel m;
    gpu_model_open(&m, yaml, NULL, B, 32, 40, NULL);
    int64_t V = m.vocab;
    int32_t tok[B][29], dtok[STEPS][B], packed[13 + 1 + 29], *p = packed;
    for (int r = 0; r < B; r++) {
        fill_tokens(tok[r], lens[r], V, 40 + (uint64_t)r);
        memcpy(p, tok[r], sizeof(int32_t) * (size_t)lens[r]);
        p += lens[r];
    }
    float *last = malloc(sizeof(float) * (size_t)(B * V)), *dec[STEPS];
    check_ok(msac_session_prefill_ragged(m.sess, B, lens, packed, last));
    for (int k = 0; k < STEPS; k++) {
        fill_tokens(dtok[k], B, V, 700 + (uint64_t)k);
        dec[k] = malloc(sizeof(float) * (size_t)(B * V));
        check_ok(msac_session_decode(m.sess, B, dtok[k], dec[k]));
    }
    const char *const names[] = {"logits", NULL};
    for (int r = 0; r < B; r++) {
        eval_store_reset_states(m.store);
        m.cpu_pos[0] = 0;
        float *ref;
        cpu_run(&m, 1, lens[r], tok[r], names, &ref);
        char label[96];
        snprintf(label, sizeof label, "%s ragged row %d (%d tokens) last logits", m.graph->name, r, lens[r]);
        expect_close(label, last + r * V, ref + (int64_t)(lens[r] - 1) * V, V, 2e-2);
        free(ref);
        for (int k = 0; k < STEPS; k++) {
            cpu_run(&m, 1, 1, &dtok[k][r], names, &ref);
            snprintf(label, sizeof label, "%s ragged row %d decode step %d", m.graph->name, r, k);
            expect_close(label, dec[k] + r * V, ref, V, 2e-2);
            free(ref);
        }
    }
    for (int k = 0; k < STEPS; k++)
        free(dec[k]);
    free(last);
    gpu_model_close(&m);
}

static void mhc_ragged_prefill(void **state)
{
    (void)state;
    ragged_prefill(HC4);
}

/* l0.res from moe_combine's mhc epilogue; then with l0.mlp.out read back: the standalone mhc_post kernel */
static void mhc_moe_first_no_shared(void **state)
{
    (void)state;
    const char *const f[] = {"x0", "l0.h", "l0.router", "l0.res", "l1.res", "h_f", "logits", NULL};
    const double bf[] = {1e-5, 1e-2, 1e-2, 2e-2, 2e-2, 1e-2, 2e-2};
    run_case(HCMOE_A, f, bf, 2, 45, 3);
    const char *const v[] = {"x0", "l0.h", "l0.router", "l0.mlp.out", "l0.res", "l1.res", "h_f", "logits", NULL};
    const double b[] = {1e-5, 1e-2, 1e-2, 2e-2, 2e-2, 2e-2, 1e-2, 2e-2};
    run_case(HCMOE_A, v, b, 2, 45, 3);
}

static void mhc_moe_first_shared(void **state)
{
    (void)state;
    const char *const f[] = {"x0", "l0.h", "l0.router", "l0.shared.out", "l0.res", "h_f", "logits", NULL};
    const double bf[] = {1e-5, 1e-2, 1e-2, 2e-2, 2e-2, 1e-2, 2e-2};
    run_case(HCMOE_B, f, bf, 3, 21, 2);
    const char *const v[] = {"x0", "l0.h", "l0.router", "l0.shared.out", "l0.mlp.out", "l0.res", "h_f", "logits", NULL};
    const double b[] = {1e-5, 1e-2, 1e-2, 2e-2, 2e-2, 2e-2, 1e-2, 2e-2};
    run_case(HCMOE_B, v, b, 3, 21, 2);
}

/* hybrid_mix with the mhc epilogue: the streams after each block, the final norm, the logits */
static void mhc_hybrid(void **state)
{
    (void)state;
    const char *const v[] = {"l0.h", "l0.res", "l1.res", "l2.res", "h_f", "logits", NULL};
    const double b[] = {1e-2, 2e-2, 2e-2, 2e-2, 1e-2, 2e-2};
    run_case(HCHYB, v, b, 2, 45, 3);
    const char *const v3[] = {"l0.res", "h_f", "logits", NULL};
    const double b3[] = {2e-2, 1e-2, 2e-2};
    run_case(HCHYB3, v3, b3, 3, 21, 2);
}

static void mhc_hybrid_decode_equals_prefill(void **state)
{
    (void)state;
    expect_model_decode_equals_prefill(HCHYB, 2, 30, 5, 21, "mhc hybrid decode");
}

static void mhc_moe_ragged_prefill(void **state)
{
    (void)state;
    ragged_prefill(HCMOE);
}

static void mhc_moe_decode_equals_prefill(void **state)
{
    (void)state;
    expect_model_decode_equals_prefill(HCMOE, 2, 30, 5, 21, "mhc moe decode");
}

static void mhc_decode_equals_prefill(void **state)
{
    (void)state;
    expect_model_decode_equals_prefill(HC4, 2, 30, 5, 21, "mhc decode");
}

static void sparse_mamba_transformer_decode_equals_prefill(void **state)
{
    (void)state;
    expect_model_decode_equals_prefill(SMT, 2, 30, 5, 21, "sparse-mamba-transformer decode");
}

int main(void)
{
    gpu_device(); /* exits 77 without a GPU */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mhc_four_streams),
        cmocka_unit_test(mhc_three_streams_ragged_width),
        cmocka_unit_test(mhc_ragged_prefill),
        cmocka_unit_test(mhc_decode_equals_prefill),
        cmocka_unit_test(sparse_mamba_transformer_small),
        cmocka_unit_test(sparse_mamba_transformer_decode_equals_prefill),
        cmocka_unit_test(mhc_moe_first_no_shared),
        cmocka_unit_test(mhc_moe_first_shared),
        cmocka_unit_test(mhc_moe_ragged_prefill),
        cmocka_unit_test(mhc_moe_decode_equals_prefill),
        cmocka_unit_test(mhc_hybrid),
        cmocka_unit_test(mhc_hybrid_decode_equals_prefill),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
