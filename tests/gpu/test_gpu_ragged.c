/* test_gpu_ragged.c — msac_session_prefill_ragged on the GPU against one
 * separate single-sequence session per row (suite 'gpu'; exits 77, meson's
 * skip, without a GPU).
 *
 * A session of four rows gets two ragged prefills in a row (lengths above
 * max_seq, a row of length 0, rows that start later than others) and then
 * decode steps with every row at its own position. A batch-1 session of
 * the same plan and weights replays each row alone: the whole of each
 * prompt in one prefill call, then the same decode tokens. Compared per
 * row: the last-token logits of each ragged call, every state buffer after
 * the prefills (the conv rings without their dead slot, see live_ring),
 * and the logits of each decode step. Both sides run the
 * same kernels; they differ only in where calls and scan chunks start
 * (fp32 summation order), so the normalised errors are small; a state
 * read from or written to the wrong row gives errors of order 1.
 *
 * Three models: the tiny one (SIMT scan), one whose scan runs on tensor
 * cores (headdim 64, d_state 64, with the B/C conv launch and its scratch),
 * and a sparse one (a mamba2 layer, then sparse MLA with a mamba2 indexer
 * of dim 64, top_k 5): its decode steps score and select with each row at
 * its own position (40, 25, 9 and 17), the step's key appended by
 * index_score2. Caches (C*batch*ctx states) are checked through the decode
 * logits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_common.h"

enum { B = 4, CALLS = 2, STEPS = 3, MAX_STATES = 16, D_CONV = 4 /* both models' conv width */ };
#define BOUND 1e-2
#define UNTOUCHED -12345.0f

/* The plan's state buffers: names and floats per sequence ("C*batch" bytes). */
typedef struct States {
    int n;                          /* state buffers */
    const char *name[MAX_STATES];   /* [n] their names */
    int64_t per_row[MAX_STATES];    /* [n] fp32 values per sequence */
} States;

static void find_states(const msac_plan *plan, States *st)
{
    msac_plan_info pi;
    msac_plan_get_info(plan, &pi);
    st->n = 0;
    for (int i = 0; i < pi.num_buffers; i++) {
        msac_buffer_info b;
        assert_int_equal(msac_plan_buffer_info(plan, i, &b), 0);
        if (b.kind != MSAC_BUF_STATE)
            continue;
        long long bytes = 0;
        char rest[16] = "";
        int got = sscanf(b.bytes, "%lld*batch%15s", &bytes, rest);
        if (got == 2 && !strcmp(rest, "*ctx"))
            continue; /* a cache (C*batch*ctx): its rows are checked through the decode logits */
        if (got != 1 || bytes <= 0 || bytes % 4)
            fail_msg("state %s: size %s is not C*batch", b.name, b.bytes);
        assert_true(st->n < MAX_STATES);
        st->name[st->n] = b.name;
        st->per_row[st->n++] = bytes / 4; /* read_output gives fp32 values, one per element */
    }
    assert_true(st->n > 0);
}

/* State `i` of all `rows` sequences of s, malloc'd. */
static float *read_state(msac_session *s, const States *st, int i, int rows)
{
    size_t n = (size_t)rows * (size_t)st->per_row[i];
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    check_ok(msac_session_read_output(s, st->name[i], v, n));
    return v;
}

/* A conv ring [conv_dim, d_conv] of a sequence at position `pos` keeps the
 * inputs of positions pos-d_conv+1 .. pos-1; its slot pos mod d_conv holds
 * an older input that nothing reads (a prefill stores only its last
 * d_conv-1 inputs, so which older one depends on where calls started; see
 * docs/models.md). Zeroes that slot so that two rings compare by what they
 * hold live. */
static void live_ring(float *ring, int64_t n, int64_t pos)
{
    for (int64_t c = 0; c < n / D_CONV; c++)
        ring[c * D_CONV + pos % D_CONV] = 0.0f;
}

static bool is_conv_ring(const char *name)
{
    size_t n = strlen(name);
    return n >= 10 && !strcmp(name + n - 10, "conv_state");
}

static void ragged_vs_separate(const char *model, const char *yaml, int max_seq, int max_ctx,
                               const int lens[CALLS][B])
{
    fprintf(stderr, "%s:\n", model);
    GpuModel a, ref;
    gpu_model_open(&a, yaml, NULL, B, max_seq, max_ctx, NULL);
    gpu_model_open(&ref, yaml, NULL, 1, max_ctx, max_ctx, NULL);
    const int64_t V = a.vocab;
    States st;
    find_states(a.plan, &st);

    /* tokens[c][r]: row r's prompt in call c */
    int32_t *tokens[CALLS][B];
    float *last[CALLS];
    int64_t pos[B] = {0};
    for (int c = 0; c < CALLS; c++) {
        int total = 0;
        for (int r = 0; r < B; r++) {
            tokens[c][r] = malloc(sizeof(int32_t) * (size_t)(lens[c][r] + 1));
            fill_tokens(tokens[c][r], lens[c][r], V, 100 * (uint64_t)c + (uint64_t)r + 1);
            total += lens[c][r];
        }
        int32_t *packed = malloc(sizeof(int32_t) * (size_t)(total + 1)), *p = packed;
        for (int r = 0; r < B; r++) {
            memcpy(p, tokens[c][r], sizeof(int32_t) * (size_t)lens[c][r]);
            p += lens[c][r];
        }
        last[c] = malloc(sizeof(float) * (size_t)(B * V));
        for (int64_t i = 0; i < B * V; i++)
            last[c][i] = UNTOUCHED;
        check_ok(msac_session_prefill_ragged(a.sess, B, lens[c], packed, last[c]));
        free(packed);
        for (int r = 0; r < B; r++) {
            pos[r] += lens[c][r];
            assert_int_equal(msac_session_position(a.sess, r), pos[r]);
            for (int64_t v = 0; v < V && !lens[c][r]; v++)
                assert_true(last[c][r * V + v] == UNTOUCHED);
        }
        float tmp;
        msac_status rs = msac_session_read_output(a.sess, "logits", &tmp, 1);
        assert_int_equal(msac_status_code(rs), MSAC_ERR_INVALID_ARGUMENT);
        msac_status_free(rs);
    }
    float *state[MAX_STATES];
    for (int i = 0; i < st.n; i++)
        state[i] = read_state(a.sess, &st, i, B);

    /* decode steps, every row at its own position */
    int32_t dtok[STEPS][B];
    float *dec[STEPS];
    for (int k = 0; k < STEPS; k++) {
        fill_tokens(dtok[k], B, V, 900 + (uint64_t)k);
        dec[k] = malloc(sizeof(float) * (size_t)(B * V));
        check_ok(msac_session_decode(a.sess, B, dtok[k], dec[k]));
    }

    /* each row alone */
    float *all = malloc(sizeof(float) * (size_t)max_ctx * (size_t)V);
    for (int r = 0; r < B; r++) {
        check_ok(msac_session_reset(ref.sess));
        char label[128];
        for (int c = 0; c < CALLS; c++) {
            if (!lens[c][r])
                continue;
            check_ok(msac_session_prefill(ref.sess, 1, lens[c][r], tokens[c][r], all));
            snprintf(label, sizeof label, "row %d call %d (%d tokens): last logits", r, c, lens[c][r]);
            expect_close(label, last[c] + r * V, all + (int64_t)(lens[c][r] - 1) * V, V, BOUND);
        }
        for (int i = 0; i < st.n; i++) {
            float *one = read_state(ref.sess, &st, i, 1);
            if (is_conv_ring(st.name[i])) {
                assert_int_equal(st.per_row[i] % D_CONV, 0);
                live_ring(one, st.per_row[i], pos[r]);
                live_ring(state[i] + r * st.per_row[i], st.per_row[i], pos[r]);
            }
            snprintf(label, sizeof label, "row %d state %s", r, st.name[i]);
            expect_close(label, state[i] + r * st.per_row[i], one, st.per_row[i], BOUND);
            free(one);
        }
        for (int k = 0; k < STEPS; k++) {
            check_ok(msac_session_decode(ref.sess, 1, &dtok[k][r], all));
            snprintf(label, sizeof label, "row %d decode step %d (position %lld)", r, k, (long long)(pos[r] + k));
            expect_close(label, dec[k] + r * V, all, V, BOUND);
        }
    }
    free(all);
    for (int k = 0; k < STEPS; k++)
        free(dec[k]);
    for (int i = 0; i < st.n; i++)
        free(state[i]);
    for (int c = 0; c < CALLS; c++) {
        free(last[c]);
        for (int r = 0; r < B; r++)
            free(tokens[c][r]);
    }
    gpu_model_close(&a);
    gpu_model_close(&ref);
}

static void tiny(void **state)
{
    (void)state;
    /* max_seq 16 = the scan chunk: 37 tokens take calls of 5, 16, 16 */
    static const int lens[CALLS][B] = {{37, 5, 0, 16}, {3, 20, 9, 1}};
    ragged_vs_separate("tiny (SIMT scan)",
                       "name: tiny\nvocab_size: 256\nd_model: 64\ntie_embeddings: false\n"
                       "mamba2: {d_state: 16, headdim: 16, expand: 2, ngroups: 2, d_conv: 4, chunk_size: 16}\n"
                       "layers:\n  - kind: mamba2\n    repeat: 2\n",
                       16, 64, lens);
}

static void tensor_core_scan(void **state)
{
    (void)state;
    static const int lens[CALLS][B] = {{150, 7, 0, 64}, {1, 70, 33, 2}};
    ragged_vs_separate("tc64 (tensor-core scan)",
                       "name: tc64\nvocab_size: 512\nd_model: 128\ntie_embeddings: false\n"
                       "mamba2: {d_state: 64, headdim: 64, expand: 2, ngroups: 2, chunk_size: 64}\n"
                       "layers:\n  - kind: mamba2\n    repeat: 2\n",
                       64, 160, lens);
}

static void sparse(void **state)
{
    (void)state;
    static const int lens[CALLS][B] = {{37, 5, 0, 16}, {3, 20, 9, 1}};
    ragged_vs_separate("sparse (indexer top-k, rows at their own positions)",
                       "name: sparse\nvocab_size: 256\nd_model: 64\ntie_embeddings: false\n"
                       "mamba2: {d_state: 16, headdim: 16, expand: 2, ngroups: 2, d_conv: 4, chunk_size: 16}\n"
                       "sparse_mla:\n  heads: 2\n  q_lora_rank: 32\n  kv_lora_rank: 64\n  qk_nope_head_dim: 16\n"
                       "  qk_rope_head_dim: 16\n  v_head_dim: 32\n"
                       "  indexer: {kind: mamba2, dim: 64, top_k: 5, d_state: 16, headdim: 16, expand: 1, chunk_size: 16}\n"
                       "layers:\n  - kind: mamba2\n  - kind: sparse_mla\n",
                       16, 64, lens);
}

int main(void)
{
    gpu_device(); /* exits 77 without a GPU */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(tiny),
        cmocka_unit_test(sparse),
        cmocka_unit_test(tensor_core_scan),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
