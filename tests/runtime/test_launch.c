/* test_launch.c — the driver-free parts of a session, which the GPU-less CI
 * can check exactly: target check, call argument checks, the device-memory
 * layout (and msac_plan_memory_required), per-call buffer addresses, kernel
 * parameter building, and the JSON parser under the safetensors reader. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json.h"
#include "plan_fixture.h"
#include "rt_internal.h"

static void expect_status(msac_status st, msac_code code, const char *substr)
{
    if (msac_status_code(st) != code || !strstr(msac_status_message(st), substr))
        fail_msg("expected %s containing \"%s\", got %s \"%s\"", msac_code_name(code), substr,
                 msac_code_name(msac_status_code(st)), msac_status_message(st));
    msac_status_free(st);
}

static void test_target(void **state)
{
    (void)state;
    assert_null(rt_check_target("sm_90a", "NVIDIA H100 80GB HBM3", 9, 0));
    expect_status(rt_check_target("sm_90a", "NVIDIA A100", 8, 0), MSAC_ERR_WRONG_TARGET,
                  "plan is for sm_90a, device NVIDIA A100 is sm_80");
    expect_status(rt_check_target("sm_90a", "NVIDIA B200", 10, 0), MSAC_ERR_WRONG_TARGET, "device NVIDIA B200 is sm_100");
    assert_null(rt_check_target("sm_80", "H100", 9, 0));
    assert_null(rt_check_target("sm_80", "A10", 8, 6));
    expect_status(rt_check_target("sm_86", "A100", 8, 0), MSAC_ERR_WRONG_TARGET, "plan is for sm_86, device A100 is sm_80");
    assert_null(rt_check_target("sm_100a", "B200", 10, 0));
    assert_null(rt_check_target("sm_100f", "B300", 10, 3));
    expect_status(rt_check_target("sm_100f", "RTX", 12, 0), MSAC_ERR_WRONG_TARGET, "same GPU family");
    expect_status(rt_check_target("gfx90a", "H100", 9, 0), MSAC_ERR_BAD_PLAN, "plan target \"gfx90a\" is not of the form");
    expect_status(rt_check_target("sm_9", "H100", 9, 0), MSAC_ERR_BAD_PLAN, "not of the form");
    expect_status(rt_check_target("sm_90x", "H100", 9, 0), MSAC_ERR_BAD_PLAN, "not of the form");
    expect_status(rt_check_target("sm_90aa", "H100", 9, 0), MSAC_ERR_BAD_PLAN, "not of the form");
    expect_status(rt_check_target("", "H100", 9, 0), MSAC_ERR_BAD_PLAN, "not of the form");
}

static void test_check_call(void **state)
{
    (void)state;
    const int64_t pos[2] = {0, 10};
    int32_t tok[16];
    for (int i = 0; i < 16; i++)
        tok[i] = i;
    assert_null(rt_check_call("prefill", 32, 2, 8, 16, pos, 2, 6, tok));
    expect_status(rt_check_call("prefill", 32, 2, 8, 16, pos, 3, 1, tok), MSAC_ERR_INVALID_ARGUMENT,
                  "prefill: batch 3 is outside 1..2 (the session's max_batch)");
    expect_status(rt_check_call("prefill", 32, 2, 8, 16, pos, 0, 1, tok), MSAC_ERR_INVALID_ARGUMENT, "batch 0 is outside");
    expect_status(rt_check_call("prefill", 32, 2, 8, 16, pos, 1, 9, tok), MSAC_ERR_INVALID_ARGUMENT,
                  "prefill: seq 9 is outside 1..8 (the session's max_seq)");
    expect_status(rt_check_call("decode", 32, 2, 8, 16, pos, 1, 1, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "decode: tokens is NULL");
    expect_status(rt_check_call("prefill", 32, 2, 8, 16, pos, 2, 7, tok), MSAC_ERR_INVALID_ARGUMENT,
                  "prefill: sequence 1 is at position 10; 7 more tokens exceed max_ctx 16");
    tok[1 * 3 + 2] = 32;
    expect_status(rt_check_call("prefill", 32, 2, 8, 16, pos, 2, 3, tok), MSAC_ERR_INVALID_ARGUMENT,
                  "prefill: token 32 at [1, 2] is outside the vocabulary [0, 32)");
    tok[5] = -1;
    tok[1] = -7;
    expect_status(rt_check_call("decode", 32, 2, 8, 16, pos, 2, 1, tok), MSAC_ERR_INVALID_ARGUMENT,
                  "decode: token -7 at [1, 0]");

    /* sizes only (msac_session_bench): NULL positions mean every row at 0 */
    assert_null(rt_check_sizes("bench prefill", 2, 8, 16, NULL, 2, 8));
    assert_null(rt_check_sizes("bench prefill", 2, 8, 8, NULL, 2, 8));
    expect_status(rt_check_sizes("bench prefill", 2, 8, 7, NULL, 1, 8), MSAC_ERR_INVALID_ARGUMENT,
                  "bench prefill: sequence 0 is at position 0; 8 more tokens exceed max_ctx 7");
    expect_status(rt_check_sizes("bench decode", 2, 8, 16, NULL, 3, 1), MSAC_ERR_INVALID_ARGUMENT,
                  "bench decode: batch 3 is outside 1..2");
    expect_status(rt_check_sizes("bench prefill", 2, 8, 16, pos, 2, 7), MSAC_ERR_INVALID_ARGUMENT,
                  "sequence 1 is at position 10");
}

static void test_layout(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    RtLayout l;
    assert_null(rt_layout_compute(plan, 2, 8, 16, &l));
    /* weights: embed bf16 [32, 8] = 512 B at 0, conv f32 [16, 4] = 256 B at 512 */
    assert_int_equal(l.weight_off[0], 0);
    assert_int_equal(l.weight_bytes[0], 512);
    assert_int_equal(l.weight_off[1], 512);
    assert_int_equal(l.weight_bytes[1], 256);
    assert_int_equal(l.buf_off[FX_BUF_EMBED], 0);
    assert_int_equal(l.buf_off[FX_BUF_CONV], 512);
    /* conv_state 192*2 = 384 B at 768; tokens 4*16 = 64 at 1280; pos 8 at
     * 1536; logits 128*16 = 2048 at 1792; kv 64*2*16 = 2048 at 3840 */
    assert_int_equal(l.buf_off[FX_BUF_CONVST], 768);
    assert_int_equal(l.buf_size[FX_BUF_CONVST], 384);
    assert_int_equal(l.buf_off[FX_BUF_TOKENS], 1280);
    assert_int_equal(l.buf_size[FX_BUF_TOKENS], 64);
    assert_int_equal(l.buf_off[FX_BUF_POS], 1536);
    assert_int_equal(l.buf_off[FX_BUF_LOGITS], 1792);
    assert_int_equal(l.buf_size[FX_BUF_LOGITS], 2048);
    assert_int_equal(l.buf_off[FX_BUF_KV], 3840);
    assert_int_equal(l.buf_size[FX_BUF_KV], 2048);
    /* arena: max(h: 0 + 16*16, y: 16*16 + 32*16) = 768 at 5888 */
    assert_int_equal(l.arena_off, 5888);
    assert_int_equal(l.arena_size, 768);
    assert_int_equal(l.total, 6656);
    for (int i = 0; i < FX_NBUF; i++)
        assert_int_equal(l.buf_off[i] % RT_ALIGN, 0);
    uint64_t bytes = 0;
    assert_null(msac_plan_memory_required(plan, 2, 8, 16, &bytes));
    assert_int_equal(bytes, 6656);

    /* per-call addresses: workspace offsets at the call's sizes */
    uint64_t ptr[FX_NBUF], size[FX_NBUF];
    const uint64_t base = 0x7f0000000000ull;
    assert_null(rt_call_buffers(p, &l, base, 1, 3, 16, ptr, size));
    assert_true(ptr[FX_BUF_H] == base + 5888);
    assert_int_equal(size[FX_BUF_H], 48);
    assert_true(ptr[FX_BUF_Y] == base + 5888 + 48);
    assert_int_equal(size[FX_BUF_Y], 96);
    assert_true(ptr[FX_BUF_KV] == base + 3840);
    assert_int_equal(size[FX_BUF_KV], 2048);

    /* kernel parameters of prefill launch 1 at batch 1, seq 3 */
    RtLaunch a;
    assert_null(rt_launch_args(p, &p->programs[0].launch[1], ptr, size, 1, 3, 16, &a));
    assert_int_equal(a.grid[0], 1);
    assert_int_equal(a.grid[1], 1); /* ceil(3/4) */
    assert_int_equal(a.grid[2], 1);
    assert_int_equal(a.nargs, 7);
    assert_true(a.vals[0].ptr == base + 5888);
    assert_true(a.vals[1].ptr == base + 512);
    assert_true(a.vals[2].ptr == base + 768);
    assert_true(a.vals[3].ptr == base + 5888 + 48 + 12); /* y + 4*seq */
    assert_true(a.vals[4].ptr == base + 1792);
    assert_true(a.vals[5].ptr == base + 1536);
    assert_int_equal(a.vals[6].i32, 16); /* ctx */
    for (int i = 0; i < 7; i++)
        assert_ptr_equal(a.params[i], &a.vals[i]);
    /* launch 0: i32, i64 and f32 arguments */
    assert_null(rt_launch_args(p, &p->programs[0].launch[0], ptr, size, 1, 3, 16, &a));
    assert_int_equal(a.grid[0], 1);
    assert_true(a.vals[0].ptr == base + 1280);
    assert_int_equal(a.vals[3].i32, 3);
    assert_int_equal(a.vals[4].i64, 3);
    assert_true(a.vals[5].f32 == 1.5f);
    /* decode at batch 2, seq 1 */
    assert_null(rt_call_buffers(p, &l, base, 2, 1, 16, ptr, size));
    assert_null(rt_launch_args(p, &p->programs[1].launch[0], ptr, size, 2, 1, 16, &a));
    assert_int_equal(a.grid[0], 2);
    assert_int_equal(a.vals[2].i32, 2);
    assert_true(a.vals[3].f32 == -0.25f);

    /* errors: offset outside the buffer, i32 overflow, bad grids */
    PlanLaunch *l1 = &p->programs[0].launch[1];
    assert_null(rt_call_buffers(p, &l, base, 1, 3, 16, ptr, size));
    l1->args[0].expr.c[0] = 49;
    expect_status(rt_launch_args(p, l1, ptr, size, 1, 3, 16, &a), MSAC_ERR_BAD_PLAN,
                  "kernel conv_c64w4 argument 0: offset 49 into buffer \"h\" is outside its 48 bytes");
    l1->args[0].expr.c[0] = 48; /* one past the end is a valid pointer */
    assert_null(rt_launch_args(p, l1, ptr, size, 1, 3, 16, &a));
    l1->args[0].expr.c[0] = 0;
    l1->args[6].expr.c[0] = 1ll << 40;
    expect_status(rt_launch_args(p, l1, ptr, size, 1, 3, 16, &a), MSAC_ERR_BAD_PLAN,
                  "argument 6: value 1099511627792 does not fit in i32");
    l1->args[6].expr.c[0] = 0;
    l1->grid[1].c[0] = -10;
    expect_status(rt_launch_args(p, l1, ptr, size, 1, 3, 16, &a), MSAC_ERR_BAD_PLAN,
                  "kernel conv_c64w4: grid y = ceil(seq-10/4) is outside 0..65535");
    l1->grid[1] = (PlanExpr){{70000, 0, 0, 0, 0, 0}, 1};
    expect_status(rt_launch_args(p, l1, ptr, size, 1, 3, 16, &a), MSAC_ERR_BAD_PLAN, "grid y = 70000 is outside");
    l1->grid[1] = (PlanExpr){{-3, 0, 1, 0, 0, 0}, 1}; /* seq - 3: zero at seq 3 means "skip" */
    assert_null(rt_launch_args(p, l1, ptr, size, 1, 3, 16, &a));
    assert_int_equal(a.grid[1], 0);

    /* workspace outside the arena at a smaller call */
    rt_layout_free(&l);
    msac_plan_free(plan);
    p->buffers[FX_BUF_Y].offset = (PlanExpr){{1000, 0, -100, 0, 0, 0}, 1};
    plan = fixture_load(p);
    assert_null(rt_layout_compute(plan, 2, 8, 16, &l));
    assert_int_equal(l.arena_size, 200 + 512);
    expect_status(rt_call_buffers(p, &l, base, 1, 1, 16, ptr, size), MSAC_ERR_BAD_PLAN,
                  "workspace buffer \"y\" at batch=1 seq=1 ctx=16 spans bytes [900, 932) of a 712-byte arena");
    rt_layout_free(&l);
    msac_plan_free(plan);

    /* negative sizes, bad limits, overflow */
    p->buffers[FX_BUF_Y].offset = (PlanExpr){{0, 0, -100, 0, 0, 0}, 1};
    plan = fixture_load(p);
    expect_status(rt_layout_compute(plan, 2, 8, 16, &l), MSAC_ERR_BAD_PLAN,
                  "workspace buffer \"y\": offset is -800 at batch=2 seq=8 ctx=16");
    expect_status(msac_plan_memory_required(plan, 0, 8, 16, &bytes), MSAC_ERR_INVALID_ARGUMENT, "max_batch=0");
    msac_plan_free(plan);
    p->buffers[FX_BUF_Y].offset = (PlanExpr){{0, 0, 0, 0, 16, 0}, 1};
    p->buffers[FX_BUF_KV].bytes = (PlanExpr){{0, 0, 0, 0, 0, INT64_MAX / 4}, 1};
    plan = fixture_load(p);
    expect_status(rt_layout_compute(plan, 2, 8, 16, &l), MSAC_ERR_BAD_PLAN,
                  "state buffer \"kv_cache\": size overflows at batch=2 seq=8 ctx=16");
    msac_plan_free(plan);
    p->buffers[FX_BUF_KV].bytes = (PlanExpr){{INT64_MAX - 100, 0, 0, 0, 0, 0}, 1};
    p->buffers[FX_BUF_LOGITS].bytes = (PlanExpr){{INT64_MAX - 100, 0, 0, 0, 0, 0}, 1};
    p->buffers[FX_BUF_CONVST].bytes = (PlanExpr){{INT64_MAX - 100, 0, 0, 0, 0, 0}, 1};
    plan = fixture_load(p);
    expect_status(rt_layout_compute(plan, 2, 8, 16, &l), MSAC_ERR_OUT_OF_MEMORY, "more than 2^64 bytes");
    msac_plan_free(plan);
    plan_free(p);
}

/* Ragged prefill, the driver-free half: argument checks, the split into
 * uniform calls, and state rows moved to a row offset. */
static void test_ragged(void **state)
{
    (void)state;
    const int64_t pos[3] = {0, 10, 2};
    const int32_t tok[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    int64_t total = -1;
    const int l3[3] = {2, 6, 0};
    assert_null(rt_check_ragged("ragged", 32, 3, 16, pos, 3, l3, tok, &total));
    assert_int_equal(total, 8);
    const int l0[2] = {0, 0};
    assert_null(rt_check_ragged("ragged", 32, 3, 16, pos, 2, l0, NULL, &total));
    assert_int_equal(total, 0);
    expect_status(rt_check_ragged("ragged", 32, 3, 16, pos, 4, l3, tok, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "ragged: batch 4 is outside 1..3 (the session's max_batch)");
    expect_status(rt_check_ragged("ragged", 32, 3, 16, pos, 0, l3, tok, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "batch 0 is outside");
    expect_status(rt_check_ragged("ragged", 32, 3, 16, pos, 2, NULL, tok, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "ragged: lengths is NULL");
    const int neg[2] = {1, -2};
    expect_status(rt_check_ragged("ragged", 32, 3, 16, pos, 2, neg, tok, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "ragged: length -2 of sequence 1 is negative");
    const int l7[2] = {1, 7};
    expect_status(rt_check_ragged("ragged", 32, 3, 16, pos, 2, l7, tok, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "ragged: sequence 1 is at position 10; 7 more tokens exceed max_ctx 16");
    expect_status(rt_check_ragged("ragged", 32, 3, 16, pos, 3, l3, NULL, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "ragged: tokens is NULL");
    expect_status(rt_check_ragged("ragged", 8, 3, 16, pos, 3, l3, tok, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "ragged: token 8 at [1, 5] (tokens[7]) is outside the vocabulary [0, 8)");
    assert_int_equal(total, 0); /* errors leave it alone */

    /* the split: lengths 5, 2, 0, 9, 9, 1 with max_seq 4 */
    const int len[6] = {5, 2, 0, 9, 9, 1};
    int done[6] = {0};
    const RtRaggedStep want[] = {{0, 2, 2}, {0, 1, 3}, {3, 3, 1}, {3, 2, 4}, {3, 2, 4}};
    RtRaggedStep c;
    size_t n = 0;
    while (rt_ragged_next(6, len, done, 4, &c)) {
        assert_true(n < sizeof want / sizeof want[0]);
        if (c.row != want[n].row || c.batch != want[n].batch || c.seq != want[n].seq)
            fail_msg("call %zu: rows %d+%d seq %d, expected rows %d+%d seq %d", n, c.row, c.batch, c.seq,
                     want[n].row, want[n].batch, want[n].seq);
        for (int r = c.row; r < c.row + c.batch; r++) {
            assert_true(done[r] + c.seq <= len[r]);
            done[r] += c.seq;
        }
        n++;
    }
    assert_int_equal(n, sizeof want / sizeof want[0]);
    for (int r = 0; r < 6; r++)
        assert_int_equal(done[r], len[r]);
    /* sorted lengths: one call per distinct length */
    const int sorted[4] = {7, 7, 3, 1};
    int done2[4] = {0};
    n = 0;
    while (rt_ragged_next(4, sorted, done2, 8, &c)) {
        for (int r = c.row; r < c.row + c.batch; r++)
            done2[r] += c.seq;
        n++;
    }
    assert_int_equal(n, 3);
    assert_false(rt_ragged_next(2, l0, (const int[2]){0, 0}, 4, &c));

    /* state rows: conv_state 192 B per row, kv_cache 64*ctx B per row */
    Plan *p = fixture_plan();
    uint64_t rows[FX_NBUF];
    assert_null(rt_state_rows(p, 16, rows));
    for (int i = 0; i < FX_NBUF; i++)
        assert_int_equal(rows[i], i == FX_BUF_CONVST ? 192 : i == FX_BUF_KV ? 64 * 16 : 0);
    msac_plan *plan = fixture_load(p);
    RtLayout l;
    assert_null(rt_layout_compute(plan, 2, 8, 16, &l));
    uint64_t ptr[FX_NBUF], size[FX_NBUF], ptr0[FX_NBUF];
    const uint64_t base = 0x7f0000000000ull;
    assert_null(rt_call_buffers(p, &l, base, 1, 3, 16, ptr0, size));
    assert_null(rt_call_buffers(p, &l, base, 1, 3, 16, ptr, size));
    assert_null(rt_call_shift_rows(p, rows, 1, ptr, size));
    for (int i = 0; i < FX_NBUF; i++)
        assert_true(ptr[i] == ptr0[i] + rows[i]);
    assert_int_equal(size[FX_BUF_CONVST], 192);
    assert_int_equal(size[FX_BUF_KV], 1024);
    assert_int_equal(size[FX_BUF_TOKENS], 64);
    assert_null(rt_call_shift_rows(p, rows, 0, ptr0, size));
    assert_null(rt_call_buffers(p, &l, base, 1, 3, 16, ptr, size));
    expect_status(rt_call_shift_rows(p, rows, 3, ptr, size), MSAC_ERR_INVALID_ARGUMENT,
                  "row 3 is outside state buffer \"conv_state\" (384 bytes, 192 per row)");
    rt_layout_free(&l);
    msac_plan_free(plan);

    /* states that are not per sequence, or addressed past their first row */
    p->buffers[FX_BUF_KV].bytes = (PlanExpr){{0, 0, 0, 0, 64, 0}, 1}; /* batch*seq */
    expect_status(rt_state_rows(p, 16, rows), MSAC_ERR_UNSUPPORTED,
                  "plan: state buffer \"kv_cache\" (bytes 64*batch*seq) is not laid out per sequence");
    p->buffers[FX_BUF_KV].bytes = (PlanExpr){{0, 0, 0, 0, 0, 64}, 2}; /* ceil(64*batch*ctx/2) */
    expect_status(rt_state_rows(p, 16, rows), MSAC_ERR_UNSUPPORTED, "not laid out per sequence");
    p->buffers[FX_BUF_KV].bytes = (PlanExpr){{0, 0, 0, 0, 0, 64}, 1};
    p->programs[0].launch[1].args[2].expr = (PlanExpr){{0, 96, 0, 0, 0, 0}, 1}; /* conv_state + 96*batch */
    expect_status(rt_state_rows(p, 16, rows), MSAC_ERR_UNSUPPORTED,
                  "plan: prefill launch 1 (kernel conv_c64w4) argument 2 points into state \"conv_state\" at an "
                  "offset that is not inside its first row");
    p->programs[0].launch[1].args[2].expr = (PlanExpr){{192, 0, 0, 0, 0, 0}, 1}; /* one row in */
    expect_status(rt_state_rows(p, 16, rows), MSAC_ERR_UNSUPPORTED, "argument 2 points into state");
    p->programs[0].launch[1].args[2].expr = (PlanExpr){{96, 0, 0, 0, 0, 0}, 1}; /* inside row 0 */
    assert_null(rt_state_rows(p, 16, rows));
    plan_free(p);
}

static void test_json(void **state)
{
    (void)state;
    JsonValue v;
    char err[256];
    const char *t = " {\"a\": [1, -2.5e3, 9223372036854775807, 9223372036854775808, true, false, null, \"x\\u00e9\"],"
                    " \"b\": {}, \"c\": [], \"\": \"\"} ";
    assert_true(json_parse(t, strlen(t), &v, err, sizeof err));
    assert_int_equal(v.type, JSON_OBJECT);
    assert_int_equal(v.len, 4);
    const JsonValue *a = json_get(&v, "a");
    assert_non_null(a);
    assert_int_equal(a->type, JSON_ARRAY);
    assert_int_equal(a->len, 8);
    assert_true(a->items[0].is_int && a->items[0].i == 1);
    assert_false(a->items[1].is_int);
    assert_true(a->items[1].num == -2500.0);
    assert_true(a->items[2].is_int && a->items[2].i == INT64_MAX);
    assert_false(a->items[3].is_int); /* too big for int64: a double only */
    assert_true(a->items[4].type == JSON_BOOL && a->items[4].boolean);
    assert_true(a->items[5].type == JSON_BOOL && !a->items[5].boolean);
    assert_int_equal(a->items[6].type, JSON_NULL);
    assert_string_equal(a->items[7].str, "x\xc3\xa9");
    assert_int_equal(json_get(&v, "b")->type, JSON_OBJECT);
    assert_int_equal(json_get(&v, "c")->len, 0);
    assert_non_null(json_get(&v, ""));
    assert_null(json_get(&v, "zz"));
    assert_null(json_get(a, "a"));
    json_free(&v);

    /* depth limit: 64 nested arrays parse, 65 do not */
    char deep[200];
    for (int depth = 64; depth <= 65; depth++) {
        memset(deep, '[', (size_t)depth);
        memset(deep + depth, ']', (size_t)depth);
        bool ok = json_parse(deep, 2 * (size_t)depth, &v, err, sizeof err);
        assert_int_equal(ok, depth == 64);
        if (ok)
            json_free(&v);
        else
            assert_string_equal(err, "at byte 64: nesting too deep");
    }

    static const struct {
        const char *text;  /* input */
        const char *err;   /* expected message */
    } bad[] = {
        {"", "at byte 0: unexpected end of text"},
        {"   ", "at byte 3: unexpected end of text"},
        {"{", "at byte 1: expected a string"},
        {"{\"a\"", "at byte 4: expected ':'"},
        {"{\"a\":", "at byte 5: unexpected end of text"},
        {"[1 2]", "at byte 3: expected ',' or ']'"},
        {"\"abc", "at byte 1: unterminated string"},
        {"\"a\\", "at byte 1: unterminated string"},
        {"\"a\nb\"", "at byte 2: control character in string"},
        {"\"\\u12\"", "at byte 3: truncated \\u escape"},
        {"\"\\u12x4\"", "at byte 3: bad hex digit in \\u escape"},
        {"\"\\u00", "at byte 1: unterminated string"},
        {"\"\\ud800\"", "at byte 7: unpaired high surrogate in \\u escape"},
        {"\"\\ud800\\u0041\"", "at byte 13: bad low surrogate in \\u escape"},
        {"\"\\udc00\"", "at byte 7: unpaired low surrogate in \\u escape"},
        {"\"\\u0000\"", "at byte 7: \\u0000 in string"},
        {"-", "at byte 1: expected a digit"},
        {"1.", "at byte 2: expected a digit after '.'"},
        {"1e+", "at byte 3: expected a digit in the exponent"},
        {"tru", "at byte 0: expected a value"},
        {"nul", "at byte 0: expected a value"},
        {"+1", "at byte 0: expected a value"},
        {"[1,]", "at byte 3: expected a value"},
        {"1 1", "at byte 2: unexpected text after the value"},
        {"{\"a\": [1, {\"b\": \"c\" 5}]}", "at byte 20: expected ',' or '}'"},
        {"11111111111111111111111111111111111111111111111111111111111111111111", "at byte 0: number too long"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        bool ok = json_parse(bad[i].text, strlen(bad[i].text), &v, err, sizeof err);
        if (ok || strcmp(err, bad[i].err) != 0)
            fail_msg("json \"%s\": expected \"%s\", got %s \"%s\"", bad[i].text, bad[i].err, ok ? "success" : "", err);
        assert_int_equal(v.type, JSON_NULL);
    }
    /* the text need not be terminated: parse a prefix of a longer buffer */
    assert_true(json_parse("[12]345", 4, &v, err, sizeof err));
    assert_int_equal(v.items[0].i, 12);
    json_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_target),
        cmocka_unit_test(test_check_call),
        cmocka_unit_test(test_layout),
        cmocka_unit_test(test_ragged),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
