/* test_compile_threads.c — kernels emitted on several threads
 * (codegen/emit_parallel.c) give the same plan, byte for byte, as one
 * thread, and a kernel the emitter refuses fails the compile with the same
 * message either way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "plan_format.h"
#include "schedule.h"

/* Mamba2, dense MLA and a sparse MLA layer: a few dozen distinct kernels. */
static const char *yaml =
    "name: t\nvocab_size: 300\nd_model: 64\nmamba2: {d_state: 16, headdim: 16, chunk_size: 16}\n"
    "sparse_mla:\n  heads: 2\n  kv_lora_rank: 64\n  qk_nope_head_dim: 16\n  qk_rope_head_dim: 16\n"
    "  v_head_dim: 16\n  indexer: {kind: lightning, dim: 32, heads: 3, top_k: 64}\n"
    "layers:\n  - kind: mamba2\n  - kind: sparse_mla\n  - kind: mamba2\n  - kind: mla\n    heads: 5\n"
    "    kv_lora_rank: 64\n    qk_nope_head_dim: 16\n    qk_rope_head_dim: 16\n    v_head_dim: 16\n";

/* The plan's bytes compiled with `threads` (and `spec` as a --schedule), or
 * NULL with the message in d. */
static uint8_t *compile_bytes(int threads, const char *spec, size_t *len, Diag *d)
{
    CompileOptions o;
    compile_options_init(&o);
    o.threads = threads;
    ScheduleSet set = {0};
    if (spec) {
        assert_true(schedule_parse(&set, spec, d));
        o.schedule = &set;
    }
    Plan *p = NULL;
    uint8_t *bytes = NULL;
    if (msac_compile(yaml, "t.yaml", &o, &p, d))
        assert_true(plan_write(p, &bytes, len));
    plan_free(p);
    return bytes;
}

static void same_plan(void **state)
{
    (void)state;
    Diag d = {0};
    size_t n1 = 0, n4 = 0;
    uint8_t *one = compile_bytes(1, NULL, &n1, &d), *four = compile_bytes(4, NULL, &n4, &d);
    if (!one || !four)
        fail_msg("%s", d.msg);
    assert_int_equal(n1, n4);
    assert_memory_equal(one, four, n1);
    free(one);
    free(four);
}

static void same_error(void **state)
{
    (void)state;
    Diag d1 = {0}, d4 = {0};
    size_t n;
    const char *bad = "index_topk:select=9"; /* the emitter refuses it */
    assert_null(compile_bytes(1, bad, &n, &d1));
    assert_null(compile_bytes(4, bad, &n, &d4));
    assert_non_null(strstr(d1.msg, "select 9"));
    assert_string_equal(d1.msg, d4.msg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(same_plan), cmocka_unit_test(same_error)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
