/* test_session_gpu.c — sessions on a real GPU (suite 'gpu'; exits 77, the
 * meson skip code, without a driver or device).
 *
 * A two-kernel plan written in PTX by hand exercises everything a session
 * does: bf16 weight upload (seeded and from a checkpoint, F32 rounded to
 * bf16 on the way), token / position upload, a persistent state, workspace
 * buffers at nonzero offsets, i32 / i64 / f32 / pointer arguments, dynamic
 * shared memory above 48 KiB, a zero-grid launch that must be skipped,
 * decode through CUDA graphs (per batch size) and without, reset, argument
 * errors, msac_session_bench (timing, tokens reused at position 0), ragged
 * prefill (rows of different lengths: each internal call on its rows' state
 * and positions), and the clean failures: wrong target, bad PTX, missing
 * entry, device out of memory. Logits are compared exactly with a CPU model
 * of the two kernels.
 *
 *   k_embed (one thread per token i < batch*seq):
 *       tmp[i] = (float)tok[i];  logits[i, v] = table[tok[i], v]  (table bf16)
 *   k_row (one block per sequence b, thread 0):
 *       for t < seq: logits[b*seq+t, 0] += scale*(pos[b]+t) + acc[b];
 *                    logits[b*seq+t, 1] += tmp[b*seq+t]
 *       acc[b] += seq                                   (acc: f32 state) */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <unistd.h>

#include "msac/runtime.h"
#include "plan_format.h"
#include "rt_internal.h"

enum { V = 8, MAXB = 2, MAXS = 8, MAXC = 16 };
#define SCALE 0.5f

static msac_device *dev;
static msac_device_info dinfo;

static const char ptx_text[] =
    ".version 8.0\n.target sm_80\n.address_size 64\n"
    ".visible .entry k_embed(.param .u64 p_tokens, .param .u64 p_table, .param .u64 p_logits, .param .u64 p_tmp,\n"
    "                        .param .s32 p_n, .param .s64 p_v)\n"
    "{\n"
    "  .reg .pred %p<3>; .reg .b16 %h<2>; .reg .b32 %r<10>; .reg .b64 %rd<20>; .reg .f32 %f<4>;\n"
    "  ld.param.u64 %rd1, [p_tokens]; ld.param.u64 %rd2, [p_table]; ld.param.u64 %rd3, [p_logits];\n"
    "  ld.param.u64 %rd4, [p_tmp]; ld.param.s32 %r1, [p_n]; ld.param.s64 %rd5, [p_v];\n"
    "  cvta.to.global.u64 %rd1, %rd1; cvta.to.global.u64 %rd2, %rd2;\n"
    "  cvta.to.global.u64 %rd3, %rd3; cvta.to.global.u64 %rd4, %rd4;\n"
    "  mov.u32 %r2, %ctaid.x; mov.u32 %r3, %ntid.x; mov.u32 %r4, %tid.x;\n"
    "  mad.lo.s32 %r5, %r2, %r3, %r4;\n"
    "  setp.ge.s32 %p1, %r5, %r1;\n"
    "  @%p1 bra DONE;\n"
    "  mul.wide.s32 %rd6, %r5, 4; add.s64 %rd7, %rd1, %rd6; ld.global.s32 %r6, [%rd7];\n"
    "  cvt.rn.f32.s32 %f1, %r6; add.s64 %rd8, %rd4, %rd6; st.global.f32 [%rd8], %f1;\n"
    "  cvt.s64.s32 %rd9, %r6; mul.lo.s64 %rd10, %rd9, %rd5; shl.b64 %rd10, %rd10, 1; add.s64 %rd10, %rd2, %rd10;\n"
    "  cvt.s64.s32 %rd11, %r5; mul.lo.s64 %rd12, %rd11, %rd5; shl.b64 %rd12, %rd12, 2; add.s64 %rd12, %rd3, %rd12;\n"
    "  mov.u64 %rd13, 0;\n"
    "LOOP:\n"
    "  setp.ge.s64 %p2, %rd13, %rd5;\n"
    "  @%p2 bra DONE;\n"
    "  ld.global.u16 %h1, [%rd10]; cvt.u32.u16 %r7, %h1; shl.b32 %r7, %r7, 16; mov.b32 %f2, %r7;\n"
    "  st.global.f32 [%rd12], %f2;\n"
    "  add.s64 %rd10, %rd10, 2; add.s64 %rd12, %rd12, 4; add.s64 %rd13, %rd13, 1;\n"
    "  bra LOOP;\n"
    "DONE:\n"
    "  ret;\n"
    "}\n"
    ".visible .entry k_row(.param .u64 p_logits, .param .u64 p_pos, .param .u64 p_acc, .param .u64 p_tmp,\n"
    "                      .param .s32 p_seq, .param .s64 p_v, .param .f32 p_scale)\n"
    "{\n"
    "  .reg .pred %p<3>; .reg .b32 %r<12>; .reg .b64 %rd<20>; .reg .f32 %f<10>;\n"
    "  mov.u32 %r1, %tid.x; setp.ne.u32 %p1, %r1, 0;\n"
    "  @%p1 bra DONE;\n"
    "  ld.param.u64 %rd1, [p_logits]; ld.param.u64 %rd2, [p_pos]; ld.param.u64 %rd3, [p_acc];\n"
    "  ld.param.u64 %rd4, [p_tmp]; ld.param.s32 %r2, [p_seq]; ld.param.s64 %rd5, [p_v]; ld.param.f32 %f1, [p_scale];\n"
    "  cvta.to.global.u64 %rd1, %rd1; cvta.to.global.u64 %rd2, %rd2;\n"
    "  cvta.to.global.u64 %rd3, %rd3; cvta.to.global.u64 %rd4, %rd4;\n"
    "  mov.u32 %r3, %ctaid.x; mul.wide.u32 %rd6, %r3, 4;\n"
    "  add.s64 %rd7, %rd2, %rd6; ld.global.s32 %r4, [%rd7];\n"
    "  add.s64 %rd8, %rd3, %rd6; ld.global.f32 %f2, [%rd8];\n"
    "  mov.u32 %r5, 0;\n"
    "LOOP:\n"
    "  setp.ge.s32 %p2, %r5, %r2;\n"
    "  @%p2 bra END;\n"
    "  mad.lo.s32 %r6, %r3, %r2, %r5; cvt.s64.s32 %rd9, %r6;\n"
    "  mul.lo.s64 %rd10, %rd9, %rd5; shl.b64 %rd10, %rd10, 2; add.s64 %rd10, %rd1, %rd10;\n"
    "  add.s32 %r7, %r4, %r5; cvt.rn.f32.s32 %f3, %r7;\n"
    "  mul.rn.f32 %f4, %f1, %f3; add.rn.f32 %f4, %f4, %f2;\n"
    "  ld.global.f32 %f5, [%rd10]; add.rn.f32 %f5, %f5, %f4; st.global.f32 [%rd10], %f5;\n"
    "  shl.b64 %rd11, %rd9, 2; add.s64 %rd11, %rd4, %rd11; ld.global.f32 %f6, [%rd11];\n"
    "  ld.global.f32 %f7, [%rd10+4]; add.rn.f32 %f7, %f7, %f6; st.global.f32 [%rd10+4], %f7;\n"
    "  add.s32 %r5, %r5, 1;\n"
    "  bra LOOP;\n"
    "END:\n"
    "  cvt.rn.f32.s32 %f8, %r2; add.rn.f32 %f9, %f2, %f8; st.global.f32 [%rd8], %f9;\n"
    "DONE:\n"
    "  ret;\n"
    "}\n";

/* Buffer indices of the test plan. */
enum { B_TABLE, B_TOKENS, B_POS, B_LOGITS, B_ACC, B_TMP, B_PAD, NBUF };

static PlanExpr ex(int64_t c0, int64_t cb, int64_t cs, int64_t cbs, int64_t div)
{
    return (PlanExpr){{c0, cb, cs, 0, cbs, 0}, div};
}

static char *dupstr(const char *s)
{
    char *d = strdup(s);
    assert_non_null(d);
    return d;
}

/* One program: k_embed over all tokens, k_row per sequence, and (decode
 * only) a k_row launch whose grid is seq-1 = 0: it must be skipped. */
static void make_program(PlanProgram *pr, const char *name, bool with_empty)
{
    pr->name = dupstr(name);
    pr->nlaunch = with_empty ? 3 : 2;
    pr->launch = calloc(pr->nlaunch, sizeof *pr->launch);
    const PlanExpr zero = ex(0, 0, 0, 0, 1), one = ex(1, 0, 0, 0, 1);
    PlanLaunch *l = &pr->launch[0];
    l->kernel = 0;
    l->grid[0] = ex(0, 0, 0, 1, 128);
    l->grid[1] = l->grid[2] = one;
    l->nargs = 6;
    l->args = calloc(6, sizeof *l->args);
    l->args[0] = (PlanArg){PARG_BUF, B_TOKENS, zero, 0};
    l->args[1] = (PlanArg){PARG_BUF, B_TABLE, zero, 0};
    l->args[2] = (PlanArg){PARG_BUF, B_LOGITS, zero, 0};
    l->args[3] = (PlanArg){PARG_BUF, B_TMP, zero, 0};
    l->args[4] = (PlanArg){PARG_I32, 0, ex(0, 0, 0, 1, 1), 0};
    l->args[5] = (PlanArg){PARG_I64, 0, ex(V, 0, 0, 0, 1), 0};
    for (uint32_t j = 1; j < pr->nlaunch; j++) {
        l = &pr->launch[j];
        l->kernel = 1;
        l->grid[0] = j == 1 ? ex(0, 1, 0, 0, 1) : ex(-1, 0, 1, 0, 1);
        l->grid[1] = l->grid[2] = one;
        l->nargs = 7;
        l->args = calloc(7, sizeof *l->args);
        l->args[0] = (PlanArg){PARG_BUF, B_LOGITS, zero, 0};
        l->args[1] = (PlanArg){PARG_BUF, B_POS, zero, 0};
        l->args[2] = (PlanArg){PARG_BUF, B_ACC, zero, 0};
        l->args[3] = (PlanArg){PARG_BUF, B_TMP, zero, 0};
        l->args[4] = (PlanArg){PARG_I32, 0, ex(0, 0, 1, 0, 1), 0};
        l->args[5] = (PlanArg){PARG_I64, 0, ex(V, 0, 0, 0, 1), 0};
        l->args[6] = (PlanArg){PARG_F32, 0, zero, SCALE};
    }
}

/* The test plan for `target`; kernel 0 gets `ptx0` and entry `entry0`. */
static Plan *make_plan(const char *target, const char *ptx0, const char *entry0)
{
    Plan *p = calloc(1, sizeof *p);
    snprintf(p->msac_version, sizeof p->msac_version, "test");
    snprintf(p->target, sizeof p->target, "%s", target);
    p->ptx_isa = 80;
    p->nmeta = 2;
    p->meta = calloc(2, sizeof *p->meta);
    p->meta[0] = (PlanMeta){dupstr("model"), dupstr("gpu-test")};
    p->meta[1] = (PlanMeta){dupstr("vocab_size"), dupstr("8")};
    p->nweights = 1;
    p->weights = calloc(1, sizeof *p->weights);
    p->weights[0] = (PlanWeight){dupstr("table"), PDT_BF16, 2, {V, V}, PINIT_UNIFORM, -1.0f, 1.0f};
    p->nbuffers = NBUF;
    p->buffers = calloc(NBUF, sizeof *p->buffers);
    const PlanExpr zero = ex(0, 0, 0, 0, 1);
    p->buffers[B_TABLE] = (PlanBuffer){dupstr("table"), PBUF_WEIGHT, PDT_BF16, 0, ex(V * V * 2, 0, 0, 0, 1), zero};
    p->buffers[B_TOKENS] = (PlanBuffer){dupstr("tokens"), PBUF_INPUT, PDT_I32, 0, ex(0, 0, 0, 4, 1), zero};
    p->buffers[B_POS] = (PlanBuffer){dupstr("pos"), PBUF_INPUT, PDT_I32, 0, ex(0, 4, 0, 0, 1), zero};
    p->buffers[B_LOGITS] = (PlanBuffer){dupstr("logits"), PBUF_OUTPUT, PDT_F32, 0, ex(0, 0, 0, 4 * V, 1), zero};
    p->buffers[B_ACC] = (PlanBuffer){dupstr("acc"), PBUF_STATE, PDT_F32, 0, ex(0, 4, 0, 0, 1), zero};
    /* tmp lives after "pad" in the arena: a nonzero, call-dependent offset */
    p->buffers[B_TMP] = (PlanBuffer){dupstr("tmp"), PBUF_WORKSPACE, PDT_F32, 0, ex(0, 0, 0, 4, 1), ex(64, 0, 0, 16, 1)};
    p->buffers[B_PAD] = (PlanBuffer){dupstr("pad"), PBUF_WORKSPACE, PDT_F32, 0, ex(64, 0, 0, 16, 1), zero};
    p->nkernels = 2;
    p->kernels = calloc(2, sizeof *p->kernels);
    p->kernels[0] = (PlanKernel){dupstr("k_embed_b128"), dupstr(entry0), dupstr(ptx0), {128, 1, 1}, 0, 0, NULL, 0};
    /* k_row asks for 64 KiB of dynamic shared memory: needs the opt-in attribute */
    p->kernels[1] = (PlanKernel){dupstr("k_row"), dupstr("k_row"), dupstr(ptx_text), {32, 1, 1}, 65536, 0, NULL, 0};
    p->nprograms = 2;
    p->programs = calloc(2, sizeof *p->programs);
    make_program(&p->programs[0], "prefill", false);
    make_program(&p->programs[1], "decode", true);
    return p;
}

static msac_plan *load(Plan *p)
{
    uint8_t *d;
    size_t n;
    assert_true(plan_write(p, &d, &n));
    plan_free(p);
    msac_plan *plan = NULL;
    msac_status st = msac_plan_load_memory(d, n, &plan);
    free(d);
    if (st)
        fail_msg("%s", msac_status_message(st));
    return plan;
}

static char native_target[16];

static void check(msac_status st)
{
    if (st)
        fail_msg("%s: %s", msac_code_name(msac_status_code(st)), msac_status_message(st));
}

static void expect_status(msac_status st, msac_code code, const char *substr)
{
    if (msac_status_code(st) != code || !strstr(msac_status_message(st), substr))
        fail_msg("expected %s containing \"%s\", got %s \"%s\"", msac_code_name(code), substr,
                 msac_code_name(msac_status_code(st)), msac_status_message(st));
    printf("  refused as expected: %s\n", msac_status_message(st));
    msac_status_free(st);
}

/* CPU model of one call; acc[b] is the model's copy of the state. */
static void model(const float *table, int batch, int seq, const int32_t *tok, const int64_t *pos, float *acc,
                  float *out)
{
    for (int b = 0; b < batch; b++) {
        for (int t = 0; t < seq; t++) {
            int i = b * seq + t, k = tok[i];
            float *o = out + (size_t)i * V;
            for (int v = 0; v < V; v++)
                o[v] = table[k * V + v];
            float x = SCALE * (float)(int32_t)(pos[b] + t);
            x = x + acc[b];
            o[0] = o[0] + x;
            o[1] = o[1] + (float)k;
        }
        acc[b] = acc[b] + (float)seq;
    }
}

/* Runs a call on the session and on the model and compares. */
static void call(msac_session *s, const float *table, float *acc, int batch, int seq, const int32_t *tok, bool decode)
{
    float got[MAXB * MAXS * V], want[MAXB * MAXS * V];
    int64_t pos[MAXB];
    for (int b = 0; b < MAXB; b++)
        pos[b] = msac_session_position(s, b);
    memset(got, 0xff, sizeof got);
    check(decode ? msac_session_decode(s, batch, tok, got) : msac_session_prefill(s, batch, seq, tok, got));
    model(table, batch, seq, tok, pos, acc, want);
    for (int i = 0; i < batch * seq * V; i++)
        if (got[i] != want[i])
            fail_msg("%s batch %d seq %d: logits[%d] = %.9g, expected %.9g", decode ? "decode" : "prefill", batch,
                     seq, i, (double)got[i], (double)want[i]);
    for (int b = 0; b < MAXB; b++)
        assert_int_equal(msac_session_position(s, b), pos[b] + (b < batch ? seq : 0));
    assert_true(msac_session_last_ms(s) > 0.0f);
    /* the same logits and the state, read back by name */
    float again[MAXB * MAXS * V], state[MAXB];
    check(msac_session_read_output(s, "logits", again, (size_t)(batch * seq * V)));
    assert_memory_equal(again, got, sizeof(float) * (size_t)(batch * seq * V));
    check(msac_session_read_output(s, "acc", state, MAXB));
    for (int b = 0; b < MAXB; b++)
        assert_true(state[b] == acc[b]);
    expect_status(msac_session_read_output(s, "logits", again, (size_t)(batch * seq * V) + 1),
                  MSAC_ERR_INVALID_ARGUMENT, "elements asked");
}

/* The whole call sequence, with or without decode graphs. */
static void run_sequence(int use_graphs)
{
    msac_plan *plan = load(make_plan(native_target, ptx_text, "k_embed"));
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = MAXB;
    o.max_seq = MAXS;
    o.max_ctx = MAXC;
    o.seed = 5;
    o.use_graphs = use_graphs;
    msac_session *s = NULL;
    check(msac_session_create(dev, plan, &o, &s));
    float table[V * V], acc[MAXB] = {0};
    check(msac_plan_weight_values(plan, 0, NULL, 5, table));
    expect_status(msac_session_read_output(s, "logits", acc, 1), MSAC_ERR_INVALID_ARGUMENT, "no prefill or decode");
    expect_status(msac_session_read_output(s, "tmp", acc, 1), MSAC_ERR_INVALID_ARGUMENT,
                  "the plan has no output or state \"tmp\"");

    const int32_t t23[6] = {1, 2, 3, 7, 0, 5};
    call(s, table, acc, 2, 3, t23, false);
    const int32_t d2[2] = {4, 6}, d2b[2] = {6, 4}, d1[1] = {3};
    call(s, table, acc, 2, 1, d2, true);
    call(s, table, acc, 2, 1, d2b, true); /* graph replay for batch 2 */
    call(s, table, acc, 1, 1, d1, true);  /* another batch size: another graph */
    call(s, table, acc, 2, 1, d2, true);
    const int32_t t25[10] = {0, 1, 2, 3, 4, 5, 6, 7, 0, 1};
    call(s, table, acc, 2, 5, t25, false); /* row 0 at 7 -> 12, row 1 at 6 -> 11 */

    /* argument errors change nothing */
    const int32_t t9[18] = {0};
    expect_status(msac_session_prefill(s, 1, 9, t9, NULL), MSAC_ERR_INVALID_ARGUMENT, "seq 9 is outside 1..8");
    expect_status(msac_session_prefill(s, 2, 5, t9, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "sequence 0 is at position 12; 5 more tokens exceed max_ctx 16");
    const int32_t bad[2] = {0, 8};
    expect_status(msac_session_decode(s, 2, bad, NULL), MSAC_ERR_INVALID_ARGUMENT, "token 8 at [1, 0]");
    expect_status(msac_session_decode(s, 3, d2, NULL), MSAC_ERR_INVALID_ARGUMENT, "batch 3 is outside 1..2");
    assert_int_equal(msac_session_position(s, 0), 12);
    /* no logits requested: the state still advances */
    check(msac_session_decode(s, 1, d1, NULL));
    acc[0] += 1;
    call(s, table, acc, 2, 1, d2, true);

    /* reset: states and positions back to zero, same results as at first */
    check(msac_session_reset(s));
    assert_int_equal(msac_session_position(s, 0), 0);
    assert_int_equal(msac_session_position(s, 1), 0);
    assert_int_equal(msac_session_position(s, 2), -1);
    acc[0] = acc[1] = 0;
    call(s, table, acc, 2, 3, t23, false);
    call(s, table, acc, 2, 1, d2, true);
    printf("  use_graphs=%d: last call %.3f ms\n", use_graphs, (double)msac_session_last_ms(s));
    /* decode ran at batch 2 and batch 1: one graph each, or none at all */
    int captured, failed;
    rt_session_graph_counts(s, &captured, &failed);
    assert_int_equal(captured, use_graphs ? 2 : 0);
    assert_int_equal(failed, 0);
    msac_session_destroy(s);
    msac_plan_free(plan);
}

static void test_calls_with_graphs(void **state)
{
    (void)state;
    run_sequence(1);
}

static void test_calls_without_graphs(void **state)
{
    (void)state;
    run_sequence(0);
}

/* Checks the logits of the last run of a bench of (batch, seq) against the
 * model at position 0 with tokens tok (the token buffer's contents, read
 * [batch, seq] row-major): the state before that run is the state now
 * minus seq. */
static void check_bench_logits(msac_session *s, const float *table, int batch, int seq, const int32_t *tok)
{
    float got[MAXB * MAXS * V], acc[MAXB];
    check(msac_session_read_output(s, "logits", got, (size_t)(batch * seq * V)));
    check(msac_session_read_output(s, "acc", acc, MAXB));
    for (int b = 0; b < batch; b++)
        for (int t = 0; t < seq; t++) {
            int i = b * seq + t, k = tok[i];
            float x = SCALE * (float)t;
            x = x + (acc[b] - (float)seq);
            float want0 = table[k * V] + x, want1 = table[k * V + 1] + (float)k;
            if (got[i * V] != want0 || got[i * V + 1] != want1)
                fail_msg("bench batch %d seq %d: row %d logits %.9g %.9g, expected %.9g %.9g", batch, seq, i,
                         (double)got[i * V], (double)got[i * V + 1], (double)want0, (double)want1);
        }
}

/* msac_session_bench: argument errors, both programs timed (decode with and
 * without graphs), tokens reused from the last call, every row at position
 * 0, positions untouched, the session usable after a reset. */
static void bench_sequence(int use_graphs)
{
    msac_plan *plan = load(make_plan(native_target, ptx_text, "k_embed"));
    assert_int_equal(msac_plan_program_launches(plan, "prefill"), 2);
    assert_int_equal(msac_plan_program_launches(plan, "decode"), 3);
    double flops = -1, bytes = -1;
    check(msac_plan_launch_cost(plan, "decode", 2, 1, 1, MAXC, NULL, &flops, &bytes));
    assert_true(flops == 0 && bytes == 0); /* this plan has no cost model */
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = MAXB;
    o.max_seq = MAXS;
    o.max_ctx = MAXC;
    o.seed = 5;
    o.use_graphs = use_graphs;
    msac_session *s = NULL;
    check(msac_session_create(dev, plan, &o, &s));
    float table[V * V], acc[MAXB] = {0};
    check(msac_plan_weight_values(plan, 0, NULL, 5, table));

    float per[3] = {-1, -1, -1}, total = -1;
    expect_status(msac_session_bench(s, "verify", 1, 1, 0, 1, per, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "bench: unknown program \"verify\"");
    expect_status(msac_session_bench(s, NULL, 1, 1, 0, 1, per, &total), MSAC_ERR_INVALID_ARGUMENT, "program is NULL");
    expect_status(msac_session_bench(s, "prefill", 1, 1, 0, 1, per, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "out_total_ms is NULL");
    expect_status(msac_session_bench(s, "decode", 1, 2, 0, 1, per, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "decode runs one token per sequence, seq 2 given");
    expect_status(msac_session_bench(s, "decode", 3, 1, 0, 1, per, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "bench decode: batch 3 is outside 1..2");
    expect_status(msac_session_bench(s, "prefill", 1, 9, 0, 1, per, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "bench prefill: seq 9 is outside 1..8");
    expect_status(msac_session_bench(s, "prefill", 1, 1, -1, 1, per, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "need warmup >= 0 and iters >= 1 (got -1 and 1)");
    expect_status(msac_session_bench(s, "prefill", 1, 1, 0, 0, per, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "iters >= 1");
    assert_true(total == -1 && per[0] == -1);

    const int32_t t23[6] = {1, 2, 3, 7, 0, 5};
    call(s, table, acc, 2, 3, t23, false); /* fills the token buffer; rows at position 3 */
    check(msac_session_bench(s, "prefill", 2, 3, 2, 5, per, &total));
    printf("  use_graphs=%d: prefill total %.4f ms, launches %.4f %.4f ms\n", use_graphs, (double)total,
           (double)per[0], (double)per[1]);
    assert_true(total > 0 && per[0] > 0 && per[1] > 0);
    assert_int_equal(msac_session_position(s, 0), 3);
    assert_int_equal(msac_session_position(s, 1), 3);
    check_bench_logits(s, table, 2, 3, t23);

    check(msac_session_bench(s, "decode", 2, 1, 0, 3, per, &total));
    printf("  use_graphs=%d: decode total %.4f ms, launches %.4f %.4f %.4f (empty grid) ms\n", use_graphs,
           (double)total, (double)per[0], (double)per[1], (double)per[2]);
    assert_true(total > 0 && per[0] > 0 && per[1] > 0 && per[2] >= 0);
    check_bench_logits(s, table, 2, 1, t23); /* the first two tokens of the buffer */
    check(msac_session_bench(s, "decode", 1, 1, 1, 1, NULL, &total)); /* no per-launch array */
    assert_true(total > 0);
    assert_int_equal(msac_session_position(s, 0), 3);
    int captured, failed;
    rt_session_graph_counts(s, &captured, &failed);
    assert_int_equal(captured, use_graphs ? 2 : 0);
    assert_int_equal(failed, 0);

    /* after a reset the session computes what the model says */
    check(msac_session_reset(s));
    acc[0] = acc[1] = 0;
    call(s, table, acc, 2, 3, t23, false);
    const int32_t d2[2] = {4, 6};
    call(s, table, acc, 2, 1, d2, true);
    msac_session_destroy(s);
    msac_plan_free(plan);
}

static void test_bench_with_graphs(void **state)
{
    (void)state;
    bench_sequence(1);
}

static void test_bench_without_graphs(void **state)
{
    (void)state;
    bench_sequence(0);
}

/* Weights from a checkpoint: F32 values are rounded to bf16 on upload. */
static void test_checkpoint(void **state)
{
    (void)state;
    char dir[] = "/tmp/msac-gpu-XXXXXX", path[64];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    float vals[V * V];
    for (int i = 0; i < V * V; i++)
        vals[i] = 0.1f * (float)i + 0.0001f; /* not bf16 values */
    char header[256];
    int hl = snprintf(header, sizeof header,
                      "{\"table\": {\"dtype\": \"F32\", \"shape\": [8, 1, 8], \"data_offsets\": [0, %zu]}}", sizeof vals);
    while (hl % 8)
        header[hl++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t n = (uint64_t)hl;
    fwrite(&n, 8, 1, f);
    fwrite(header, 1, (size_t)hl, f);
    fwrite(vals, 1, sizeof vals, f);
    fclose(f);
    msac_weights *w = NULL;
    check(msac_weights_open(path, &w));

    msac_plan *plan = load(make_plan(native_target, ptx_text, "k_embed"));
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = MAXB;
    o.max_seq = MAXS;
    o.max_ctx = MAXC;
    o.weights = w;
    msac_session *s = NULL;
    check(msac_session_create(dev, plan, &o, &s));
    float table[V * V], acc[MAXB] = {0};
    check(msac_plan_weight_values(plan, 0, w, 0, table));
    for (int i = 0; i < V * V; i++)
        assert_true(table[i] != vals[i] || i == 0); /* rounded */
    const int32_t t[4] = {7, 6, 5, 4};
    call(s, table, acc, 2, 2, t, false);
    msac_session_destroy(s);
    msac_plan_free(plan);
    msac_weights_close(w);
    unlink(path);
    rmdir(dir);
}

/* One ragged prefill on the session and on the model. The model's state
 * is read once per call (acc at the call's start), so it replays the
 * runtime's split into calls (rt_ragged_next, unit-tested on its own):
 * what this checks is that each call runs on its own rows' state, positions
 * and tokens, and that each row's last logits come back. */
static void ragged(msac_session *s, const float *table, float *acc, int batch, const int *len, const int32_t *tok)
{
    float got[MAXB * V], out[MAXB * MAXS * V], want[MAXB * V];
    int64_t pos[MAXB], first[MAXB];
    int done[MAXB] = {0}, total = 0;
    for (int b = 0; b < MAXB; b++)
        pos[b] = msac_session_position(s, b);
    for (int b = 0; b < batch; b++) {
        first[b] = total;
        total += len[b];
    }
    for (int i = 0; i < MAXB * V; i++)
        got[i] = want[i] = -1.0f;
    check(msac_session_prefill_ragged(s, batch, len, tok, got));
    RtRaggedStep c;
    int calls = 0;
    while (rt_ragged_next(batch, len, done, MAXS, &c)) {
        int32_t stage[MAXB * MAXS];
        int64_t at[MAXB];
        for (int i = 0; i < c.batch; i++) {
            int r = c.row + i;
            memcpy(stage + i * c.seq, tok + first[r] + done[r], sizeof(int32_t) * (size_t)c.seq);
            at[i] = pos[r] + done[r];
        }
        model(table, c.batch, c.seq, stage, at, acc + c.row, out);
        for (int i = 0; i < c.batch; i++) {
            int r = c.row + i;
            done[r] += c.seq;
            if (done[r] == len[r])
                memcpy(want + r * V, out + ((size_t)i * (size_t)c.seq + (size_t)c.seq - 1) * V, sizeof(float) * V);
        }
        calls++;
    }
    for (int i = 0; i < batch * V; i++)
        if (got[i] != want[i])
            fail_msg("ragged (%d calls): last logits[%d] = %.9g, expected %.9g", calls, i, (double)got[i],
                     (double)want[i]);
    for (int b = 0; b < MAXB; b++)
        assert_int_equal(msac_session_position(s, b), pos[b] + (b < batch ? len[b] : 0));
    float state[MAXB];
    check(msac_session_read_output(s, "acc", state, MAXB));
    for (int b = 0; b < MAXB; b++)
        assert_true(state[b] == acc[b]);
    expect_status(msac_session_read_output(s, "logits", state, 1), MSAC_ERR_INVALID_ARGUMENT,
                  "the last call was a ragged prefill");
    printf("  ragged prefill of %d sequences in %d calls: %.3f ms\n", batch, calls, (double)msac_session_last_ms(s));
}

/* Ragged prefills: rows that finish at different times, a row of length 0,
 * lengths above max_seq; then decode with the rows at their own positions. */
static void test_ragged(void **state)
{
    (void)state;
    msac_plan *plan = load(make_plan(native_target, ptx_text, "k_embed"));
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = MAXB;
    o.max_seq = MAXS;
    o.max_ctx = MAXC;
    o.seed = 11;
    msac_session *s = NULL;
    check(msac_session_create(dev, plan, &o, &s));
    float table[V * V], acc[MAXB] = {0};
    check(msac_plan_weight_values(plan, 0, NULL, 11, table));

    const int l35[2] = {3, 5}, l02[2] = {0, 2}, l61[2] = {6, 1}, l10[1] = {1};
    const int32_t t35[8] = {1, 2, 3, 7, 6, 5, 4, 3}, t2[2] = {0, 7}, t7[7] = {2, 4, 6, 1, 3, 5, 7}, t1[1] = {5};
    ragged(s, table, acc, 2, l35, t35); /* rows 0-1 for 3, row 1 for 2 more */
    ragged(s, table, acc, 2, l02, t2);  /* row 1 alone: its state, not row 0's */
    ragged(s, table, acc, 2, l61, t7);  /* row 0 at 3, row 1 at 7 */
    ragged(s, table, acc, 1, l10, t1);
    const int32_t d2[2] = {3, 4};
    call(s, table, acc, 2, 1, d2, true); /* decode: row 0 at 10, row 1 at 8 */

    /* lengths above max_seq (8): split into calls of at most 8 */
    check(msac_session_reset(s));
    acc[0] = acc[1] = 0;
    const int l1211[2] = {12, 11};
    int32_t t23[23];
    for (int i = 0; i < 23; i++)
        t23[i] = (i * 5 + 1) % V;
    ragged(s, table, acc, 2, l1211, t23);
    call(s, table, acc, 2, 1, d2, true);
    expect_status(msac_session_prefill_ragged(s, 2, l35, t35, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "sequence 1 is at position 12; 5 more tokens exceed max_ctx 16");
    msac_session_destroy(s);
    msac_plan_free(plan);
}

/* Failures at creation are clean and specific (and leak nothing: run under
 * compute-sanitizer --leak-check full to see device memory). */
static void test_create_errors(void **state)
{
    (void)state;
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = MAXB;
    o.max_seq = MAXS;
    o.max_ctx = MAXC;
    msac_session *s = NULL;

    const char *other = dinfo.cc_major == 10 ? "sm_90a" : "sm_100a";
    msac_plan *plan = load(make_plan(other, ptx_text, "k_embed"));
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_WRONG_TARGET, "plan is for ");
    msac_plan_free(plan);

    plan = load(make_plan(native_target, ".version 8.0\n.target sm_80\nthis is not PTX\n", "k_embed"));
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_CUDA,
                  "cuModuleLoadDataEx(kernel k_embed_b128): CUDA_ERROR_INVALID_PTX");
    msac_plan_free(plan);

    plan = load(make_plan(native_target, ptx_text, "k_nope"));
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_CUDA,
                  "cuModuleGetFunction(kernel k_embed_b128, entry k_nope): CUDA_ERROR_NOT_FOUND");
    msac_plan_free(plan);

    Plan *p = make_plan(native_target, ptx_text, "k_embed");
    p->buffers[B_ACC].bytes = ex(1ll << 50, 0, 0, 0, 1); /* a petabyte of state */
    plan = load(p);
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_OUT_OF_MEMORY, "cuMemAlloc(");
    msac_plan_free(plan);
    assert_null(s);

    /* the device is still usable afterwards */
    plan = load(make_plan(native_target, ptx_text, "k_embed"));
    check(msac_session_create(dev, plan, &o, &s));
    float table[V * V], acc[MAXB] = {0};
    check(msac_plan_weight_values(plan, 0, NULL, 0, table));
    const int32_t t[2] = {1, 2};
    call(s, table, acc, 2, 1, t, false);
    msac_session_destroy(s);
    msac_plan_free(plan);
}

int main(void)
{
    msac_status st = msac_device_open(0, &dev);
    if (st) {
        msac_code c = msac_status_code(st);
        printf("skipping: %s\n", msac_status_message(st));
        msac_status_free(st);
        return c == MSAC_ERR_NO_DRIVER || c == MSAC_ERR_NO_DEVICE ? 77 : 1;
    }
    msac_device_get_info(dev, &dinfo);
    printf("device: %s sm_%d%d, %d SMs, driver %d, %.1f GiB\n", dinfo.name, dinfo.cc_major, dinfo.cc_minor,
           dinfo.sm_count, dinfo.driver_version, (double)dinfo.total_mem / (1 << 30));
    snprintf(native_target, sizeof native_target, "sm_%d%d", dinfo.cc_major, dinfo.cc_minor);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_calls_with_graphs),
        cmocka_unit_test(test_calls_without_graphs),
        cmocka_unit_test(test_bench_with_graphs),
        cmocka_unit_test(test_bench_without_graphs),
        cmocka_unit_test(test_checkpoint),
        cmocka_unit_test(test_ragged),
        cmocka_unit_test(test_create_errors),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    msac_device_close(dev);
    return rc;
}
