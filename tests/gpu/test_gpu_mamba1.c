/* test_gpu_mamba1.c — the Mamba1 path on the GPU against the CPU reference.
 *
 * Every kernel is checked through the values it produces inside a real
 * model (each is made a graph output, so it gets a buffer of its own):
 * the in_proj GEMM (xz), mamba1_conv (x: conv + SiLU, conv ring), the x_proj
 * GEMM (xdbl), the chunked scan / decode step (y: dt_proj, the scan, D skip,
 * gate, ssm state), the out_proj GEMM with its residual, the logits — on
 * shapes where seq is not a multiple of the conv's token chunk (32) or of
 * the scan's 16 time chunks, d_inner not a multiple of the 32/128-channel
 * blocks, a dt_rank above the 64 kept in registers, a ragged batch, and
 * seq shorter than the chunk count.
 *
 * Error bounds (normalised: ||gpu - ref|| / ||ref||): both sides store bf16
 * at the same points; the GPU's exp/softplus/silu are PTX approximations and
 * its sums run in another order:
 *   embed: exact (a copy);  bf16 values: 1e-2;  scan output, logits: 2e-2. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_common.h"

static const char *const tiny_yaml =
    "name: tiny1\nvocab_size: 256\nd_model: 64\ntie_embeddings: false\n"
    "mamba1: {d_state: 16, expand: 2, d_conv: 4}\n"
    "layers:\n  - kind: mamba1\n    repeat: 2\n";

static const char *const values[] = {"x0",     "l0.xz", "l0.x",  "l0.xdbl", "l0.y",
                                     "l0.res", "l1.y",  "l1.res", "logits",  NULL};
static const double bounds[] = {1e-7, 1e-2, 1e-2, 1e-2, 2e-2, 1e-2, 2e-2, 1e-2, 2e-2};

/* Prefill, then decode steps: every value against the CPU (gpu_common). */
static void run_prefill_decode(const char *yaml, const char *target, int batch, int seq, int steps)
{
    expect_prefill_decode(yaml, target, values, bounds, batch, seq, steps);
}

static void m1_tiny_ragged_seq(void **state)
{
    (void)state;
    run_prefill_decode(tiny_yaml, NULL, 2, 37, 3); /* 37: not a multiple of 32 (conv) or 16 (chunks) */
}

static void m1_tiny_long_and_short(void **state)
{
    (void)state;
    run_prefill_decode(tiny_yaml, NULL, 1, 301, 2); /* 10 conv chunks, scan chunks of 19 */
    run_prefill_decode(tiny_yaml, NULL, 3, 5, 2);   /* fewer tokens than scan chunks: empty chunks */
    run_prefill_decode(tiny_yaml, NULL, 2, 1, 2);   /* a one-token prefill */
}

static void m1_tiny_sm80_plan(void **state)
{
    (void)state;
    run_prefill_decode(tiny_yaml, "sm_80", 1, 50, 2); /* the sm_80 PTX, JIT-compiled for this GPU */
}

static void m1_odd_sizes(void **state)
{
    (void)state;
    /* d_inner 80 (not a multiple of 32), d_state 8, d_conv 3, dt_rank 3 (ceil(40/16)), vocab odd */
    run_prefill_decode("name: odd1\nvocab_size: 1001\nd_model: 40\n"
                       "mamba1: {d_state: 8, d_conv: 3}\nlayers:\n  - kind: mamba1\n    repeat: 2\n",
                       NULL, 2, 45, 3);
    /* dt_rank 70 > 64: the dt projection row read per token instead of held in registers; d_conv 2 */
    run_prefill_decode("name: rank1\nvocab_size: 300\nd_model: 48\ntie_embeddings: true\n"
                       "mamba1: {d_state: 32, d_conv: 2, dt_rank: 70, expand: 3}\n"
                       "layers:\n  - kind: mamba1\n    repeat: 2\n",
                       NULL, 2, 70, 2);
}

/* A ragged batch (rows of 37, 1 and 20 tokens in one msac_session_prefill_ragged),
 * then decode steps with every row at its own position: each row against the CPU
 * reference running that row alone. */
static void m1_ragged_batch(void **state)
{
    (void)state;
    enum { B = 3, STEPS = 3 };
    const int lens[B] = {37, 1, 20};
    const char *const logits[] = {"logits", NULL};
    GpuModel m;
    gpu_model_open(&m, tiny_yaml, NULL, B, 32, 64, NULL);
    int64_t V = m.vocab;
    int32_t *tok[B], packed[64], *p = packed;
    for (int r = 0; r < B; r++) {
        tok[r] = malloc(sizeof(int32_t) * (size_t)(lens[r] + STEPS));
        fill_tokens(tok[r], lens[r] + STEPS, V, 500 + (uint64_t)r);
        memcpy(p, tok[r], sizeof(int32_t) * (size_t)lens[r]);
        p += lens[r];
    }
    float *last = malloc(sizeof(float) * (size_t)(B * V));
    float *steps = malloc(sizeof(float) * (size_t)(STEPS * B * V));
    check_ok(msac_session_prefill_ragged(m.sess, B, lens, packed, last));
    for (int s = 0; s < STEPS; s++) {
        int32_t t[B];
        for (int r = 0; r < B; r++)
            t[r] = tok[r][lens[r] + s];
        check_ok(msac_session_decode(m.sess, B, t, steps + (int64_t)s * B * V));
    }
    for (int r = 0; r < B; r++) {
        eval_store_reset_states(m.store);
        m.cpu_pos[0] = 0;
        float *ref[1];
        cpu_run(&m, 1, lens[r], tok[r], logits, ref);
        char label[64];
        snprintf(label, sizeof label, "ragged row %d (%d tokens) last logits", r, lens[r]);
        expect_close(label, last + r * V, ref[0] + (int64_t)(lens[r] - 1) * V, V, 2e-2);
        free(ref[0]);
        for (int s = 0; s < STEPS; s++) {
            cpu_run(&m, 1, 1, tok[r] + lens[r] + s, logits, ref);
            snprintf(label, sizeof label, "ragged row %d decode step %d", r, s);
            expect_close(label, steps + ((int64_t)s * B + r) * V, ref[0], V, 2e-2);
            free(ref[0]);
        }
        free(tok[r]);
    }
    free(last);
    free(steps);
    gpu_model_close(&m);
}

/* Decode of step t equals prefill at position t (GPU against itself), and a
 * second prefill continues where the first stopped. */
static void m1_decode_equals_prefill(void **state)
{
    (void)state;
    expect_decode_and_split_prefill_match(tiny_yaml);
}

/* The shipped 130M architecture (seeded weights): prefill and a decode step against the CPU. */
static void m1_mamba_130m(void **state)
{
    (void)state;
    char *yaml = gpu_read_model("mamba-130m.yaml");
    const char *const out[] = {"l0.y", "l23.res", "logits", NULL};
    enum { S = 67 };
    GpuModel m;
    gpu_model_open(&m, yaml, out, 1, S, 80, NULL);
    int32_t tok[S + 1];
    fill_tokens(tok, S + 1, m.vocab, 3);
    double bnd[3] = {2e-2, 2e-2, 3e-2};
    for (int call = 0; call < 2; call++) { /* prefill of S tokens, then one decode step */
        int rows = call ? 1 : S;
        if (call)
            check_ok(msac_session_decode(m.sess, 1, tok + S, NULL));
        else
            check_ok(msac_session_prefill(m.sess, 1, S, tok, NULL));
        float *ref[3];
        cpu_run(&m, 1, rows, call ? tok + S : tok, out, ref);
        compare_values(&m, call ? "mamba-130m decode" : "mamba-130m prefill", rows, out, bnd, ref);
        for (int i = 0; i < 3; i++)
            free(ref[i]);
    }
    gpu_model_close(&m);
    free(yaml);
}

int main(void)
{
    gpu_device(); /* exits 77 without a GPU */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(m1_tiny_ragged_seq), cmocka_unit_test(m1_tiny_long_and_short),
        cmocka_unit_test(m1_tiny_sm80_plan),  cmocka_unit_test(m1_odd_sizes),
        cmocka_unit_test(m1_ragged_batch),    cmocka_unit_test(m1_decode_equals_prefill),
        cmocka_unit_test(m1_mamba_130m),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
