/* test_bench_report.c — `msac bench`'s report (tools/bench_report.c) on
 * made-up measurements, no GPU needed: the roofline and rate arithmetic,
 * the text table (rates, roofline %, bound, per-kernel sums, totals) and the
 * JSON file, parsed back with the runtime's strict parser. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "bench_report.h"
#include "json.h"

/* Three launches: math-bound at the peak, memory-bound at half the
 * bandwidth, and one without a cost model; kernel 0 runs twice. */
static BenchLaunch launches[3] = {
    {"gemm_k", 0, 1.0f, 0.74e12, 1.5e9}, /* 1 ms at 740 TFLOP/s: 100% math */
    {"scan \"q\"", 1, 2.0f, 1e9, 3e9},   /* 3 GB in 2 ms = 1500 GB/s: 50% mem */
    {"gemm_k", 0, 0.5f, 0, 0},           /* no model */
};

static BenchReport report(void)
{
    BenchReport r = {.device = "GPU \"X\"\t1", .cc_major = 9, .cc_minor = 0, .sm_count = 132, .model = "m",
                     .target = "sm_90a", .weight_bytes = 2.5e8, .peak_tflops = 740, .peak_gbs = 3000,
                     .warmup = 3, .iters = 7, .nprograms = 1};
    r.prog[0] = (BenchProgram){.name = "prefill", .batch = 2, .seq = 1000, .ctx = 1000, .nlaunch = 3,
                               .launch = launches, .total_ms = 4.0f, .graph = false};
    return r;
}

static void test_arithmetic(void **state)
{
    (void)state;
    BenchReport r = report();
    bool math = false;
    assert_true(bench_roofline_s(&r, 740e12, 1e9, &math) == 1.0 && math);
    assert_true(bench_roofline_s(&r, 1e12, 6000e9, &math) == 2.0 && !math);
    assert_true(bench_launch_sum_ms(&r.prog[0]) == 3.5);
    assert_true(bench_tokens_per_s(&r.prog[0]) == 2000 / 4e-3); /* batch*seq / total */
    BenchProgram d = {.name = "decode", .batch = 64, .seq = 1, .total_ms = 0.5f};
    assert_true(bench_tokens_per_s(&d) == 128000);
    d.total_ms = 0;
    assert_true(bench_tokens_per_s(&d) == 0);
}

static void test_table(void **state)
{
    (void)state;
    BenchReport r = report();
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    bench_print_program(f, &r, &r.prog[0]);
    fclose(f);
    printf("%s", text);
    /* launch 0: 1000 µs, 28.6% of 3.5 ms, 740 TFLOP/s, 1500 GB/s, 100% of the roofline, math */
    assert_non_null(strstr(text, "    0  gemm_k"));
    assert_non_null(strstr(text, "1000.00    28.6    740.00    1500.0      100.0  math"));
    /* launch 1: 2000 µs, 57.1%, 0.50 TFLOP/s, 1500 GB/s, 50% mem */
    assert_non_null(strstr(text, "2000.00    57.1      0.50    1500.0       50.0  mem"));
    /* launch 2: no cost model */
    assert_non_null(strstr(text, "500.00    14.3         -         -          -  -"));
    /* by kernel: the scan first (largest time), then gemm_k twice: 1.5 ms */
    const char *by = strstr(text, "by kernel");
    assert_non_null(by);
    const char *scan = strstr(by, "scan \"q\""), *gemm = strstr(by, "gemm_k");
    assert_true(scan && gemm && scan < gemm);
    assert_non_null(strstr(by, "    2  gemm_k"));
    assert_non_null(strstr(by, "1500.00    42.9    493.33    1000.0       66.7  math"));
    assert_non_null(strstr(text, "total 4.0000 ms (median whole run, plain launches); sum of launch medians 3.5000 ms"));
    assert_non_null(strstr(text, "500000 tokens/s (batch * seq / total)"));
    /* 1 ms + 1 ms of roofline time over 4 ms */
    assert_non_null(strstr(text, "program roofline 50.0%"));
    free(text);
}

/* Member `key` of obj, failing the test when absent or of another type. */
static const JsonValue *get(const JsonValue *obj, const char *key, JsonType type)
{
    const JsonValue *v = json_get(obj, key);
    if (!v || v->type != type)
        fail_msg("JSON member \"%s\" missing or not a %s", key, json_type_name(type));
    return v;
}

static void test_json(void **state)
{
    (void)state;
    BenchReport r = report();
    char path[] = "/tmp/msac-bench-json-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char why[512];
    assert_true(bench_write_json(path, &r, why, sizeof why));
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    unlink(path);
    JsonValue root;
    char err[256];
    if (!json_parse(buf, n, &root, err, sizeof err))
        fail_msg("bench JSON does not parse: %s\n%.*s", err, (int)n, buf);
    assert_string_equal(get(&root, "device", JSON_STRING)->str, "GPU \"X\"\t1");
    assert_string_equal(get(&root, "model", JSON_STRING)->str, "m");
    assert_true(get(&root, "weight_bytes", JSON_NUMBER)->num == 2.5e8);
    assert_true(get(&root, "peak_gbs", JSON_NUMBER)->num == 3000);
    const JsonValue *pre = get(get(&root, "programs", JSON_OBJECT), "prefill", JSON_OBJECT);
    assert_true(get(pre, "total_ms", JSON_NUMBER)->num == 4.0);
    assert_true(get(pre, "sum_launch_ms", JSON_NUMBER)->num == 3.5);
    assert_true(get(pre, "tokens_per_s", JSON_NUMBER)->num == 500000);
    assert_int_equal(get(pre, "batch", JSON_NUMBER)->i, 2);
    assert_false(get(pre, "graph", JSON_BOOL)->boolean);
    const JsonValue *l = get(pre, "launches", JSON_ARRAY);
    assert_int_equal(l->len, 3);
    assert_string_equal(get(&l->items[1], "kernel", JSON_STRING)->str, "scan \"q\"");
    assert_true(get(&l->items[1], "ms", JSON_NUMBER)->num == 2.0);
    assert_true(get(&l->items[0], "flops", JSON_NUMBER)->num == 0.74e12);
    assert_true(get(&l->items[1], "bytes", JSON_NUMBER)->num == 3e9);
    json_free(&root);
    char why2[512];
    assert_false(bench_write_json("/nonexistent-dir/x.json", &r, why2, sizeof why2));
    char want[512];
    snprintf(want, sizeof want, "cannot create /nonexistent-dir/x.json.tmp.%ld: No such file or directory", (long)getpid());
    assert_string_equal(why2, want);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_arithmetic),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
