/* test_runtime_nogpu.c — the public API of libmsacrt (linked as the shared
 * library, so it also checks what the library exports) on a machine that
 * may have no GPU: plan loading and every info accessor, I/O and corrupt
 * plan errors, device opening that fails cleanly without a driver or device
 * (and works when one is present), NULL arguments everywhere, statuses.
 *
 * With MSAC_TEST_EXPECT_STUB=1 (meson sets it together with an
 * LD_LIBRARY_PATH holding the CUDA toolkit's stub libcuda) the device must
 * fail with the stub message: that proves every driver symbol in
 * cuda_syms.def resolved, since cuInit is only called after all of them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "plan_fixture.h"

static void expect_status(msac_status st, msac_code code, const char *substr)
{
    if (msac_status_code(st) != code || !strstr(msac_status_message(st), substr))
        fail_msg("expected %s containing \"%s\", got %s \"%s\"", msac_code_name(code), substr,
                 msac_code_name(msac_status_code(st)), msac_status_message(st));
    msac_status_free(st);
}

static void test_status(void **state)
{
    (void)state;
    msac_status_free(NULL);
    assert_int_equal(msac_status_code(NULL), MSAC_OK);
    assert_string_equal(msac_status_message(NULL), "");
    assert_string_equal(msac_code_name(MSAC_OK), "MSAC_OK");
    assert_string_equal(msac_code_name(MSAC_ERR_BAD_PLAN), "MSAC_ERR_BAD_PLAN");
    assert_string_equal(msac_code_name(MSAC_ERR_UNSUPPORTED), "MSAC_ERR_UNSUPPORTED");
    assert_string_equal(msac_code_name((msac_code)99), "MSAC_ERR_UNKNOWN");
}

static void test_plan_load_errors(void **state)
{
    (void)state;
    msac_plan *plan = NULL;
    expect_status(msac_plan_load("/nonexistent/dir/model.msac", &plan), MSAC_ERR_IO,
                  "cannot open plan /nonexistent/dir/model.msac: No such file or directory");
    expect_status(msac_plan_load(NULL, &plan), MSAC_ERR_INVALID_ARGUMENT, "path is NULL");
    expect_status(msac_plan_load("/tmp", &plan), MSAC_ERR_IO, "not a regular file");
    expect_status(msac_plan_load_memory(NULL, 10, &plan), MSAC_ERR_INVALID_ARGUMENT, "data is NULL");
    expect_status(msac_plan_load_memory("x", 1, NULL), MSAC_ERR_INVALID_ARGUMENT, "out_plan is NULL");
    expect_status(msac_plan_load_memory("MSACPLAN", 8, &plan), MSAC_ERR_BAD_PLAN, "plan: truncated");
    assert_null(plan);

    /* a corrupt file on disk */
    char *dir = fixture_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/bad.msac", dir);
    Plan *p = fixture_plan();
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    d[len / 2] ^= 0x40;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(d, 1, len, f), len);
    fclose(f);
    msac_status st = msac_plan_load(path, &plan);
    assert_int_equal(msac_status_code(st), MSAC_ERR_BAD_PLAN);
    assert_non_null(strstr(msac_status_message(st), path));
    assert_non_null(strstr(msac_status_message(st), "plan: checksum mismatch (file corrupt)"));
    msac_status_free(st);

    /* a bad vocab_size is refused at load */
    free(p->meta[1].value);
    p->meta[1].value = strdup("32x");
    free(d);
    d = fixture_bytes(p, &len);
    expect_status(msac_plan_load_memory(d, len, &plan), MSAC_ERR_BAD_PLAN,
                  "plan: meta vocab_size \"32x\" is not a positive 32-bit integer");
    free(d);
    plan_free(p);
    fixture_rmdir(dir);
}

static void test_plan_info(void **state)
{
    (void)state;
    char *dir = fixture_tmpdir();
    char path[4200], err[256];
    snprintf(path, sizeof path, "%s/tiny.msac", dir);
    Plan *p = fixture_plan();
    assert_true(plan_write_file(p, path, err, sizeof err));
    plan_free(p);
    msac_plan *plan = NULL;
    msac_status st = msac_plan_load(path, &plan);
    if (st)
        fail_msg("%s", msac_status_message(st));

    msac_plan_info info;
    msac_plan_get_info(plan, &info);
    assert_string_equal(info.model, "tiny");
    assert_string_equal(info.msac_version, "0.1.0");
    assert_string_equal(info.target, "sm_90a");
    assert_int_equal(info.ptx_isa, 80);
    assert_true(info.options_hash == 0x0123456789abcdefull);
    assert_int_equal(info.vocab_size, 32);
    assert_int_equal(info.num_kernels, 2);
    assert_int_equal(info.num_programs, 2);
    assert_int_equal(info.num_buffers, FX_NBUF);
    assert_int_equal(info.num_weights, 2);
    assert_string_equal(msac_plan_meta(plan, "d_model"), "8");
    assert_null(msac_plan_meta(plan, "n_layers"));
    assert_non_null(strstr(msac_plan_graph_text(plan), "graph tiny"));

    msac_kernel_info k;
    assert_int_equal(msac_plan_kernel_info(plan, 1, &k), 0);
    assert_string_equal(k.name, "conv_c64w4");
    assert_string_equal(k.entry, "conv_k");
    assert_int_equal(k.block[0], 32);
    assert_int_equal(k.block[1], 4);
    assert_int_equal(k.block[2], 1);
    assert_int_equal(k.smem_bytes, 65536);
    assert_string_equal(k.params, "chunk=64,warps=4");
    assert_int_equal(k.ptx_bytes, strlen(msac_plan_kernel_ptx(plan, 1)));
    assert_non_null(strstr(msac_plan_kernel_ptx(plan, 1), ".entry conv_k"));
    assert_int_equal(msac_plan_kernel_info(plan, 0, &k), 0);
    assert_string_equal(k.params, "bm=128");
    assert_int_equal(msac_plan_kernel_info(plan, 2, &k), -1);
    assert_int_equal(msac_plan_kernel_info(plan, -1, &k), -1);
    assert_null(msac_plan_kernel_ptx(plan, 2));

    msac_program_info pr;
    assert_int_equal(msac_plan_program_info(plan, 0, &pr), 0);
    assert_string_equal(pr.name, "prefill");
    assert_int_equal(pr.num_launches, 2);
    assert_int_equal(msac_plan_program_info(plan, 2, &pr), -1);
    int kernel = -1;
    char grid[128];
    assert_int_equal(msac_plan_launch_info(plan, 0, 0, &kernel, grid, sizeof grid), 0);
    assert_int_equal(kernel, 0);
    assert_string_equal(grid, "ceil(batch*seq/128), 1, 1");
    assert_int_equal(msac_plan_launch_info(plan, 0, 1, &kernel, grid, sizeof grid), 0);
    assert_int_equal(kernel, 1);
    assert_string_equal(grid, "batch, ceil(seq/4), 1");
    assert_int_equal(msac_plan_launch_info(plan, 0, 2, &kernel, grid, sizeof grid), -1);
    assert_int_equal(msac_plan_launch_info(plan, 5, 0, &kernel, grid, sizeof grid), -1);

    /* launch counts and the cost model by program name */
    assert_int_equal(msac_plan_program_launches(plan, "prefill"), 2);
    assert_int_equal(msac_plan_program_launches(plan, "decode"), 1);
    assert_int_equal(msac_plan_program_launches(plan, "verify"), -1);
    assert_int_equal(msac_plan_program_launches(plan, NULL), -1);
    assert_int_equal(msac_plan_program_launches(NULL, "prefill"), -1);
    double cflops = -1, cbytes = -1;
    kernel = -1;
    assert_null(msac_plan_launch_cost(plan, "prefill", 0, 3, 5, 9, &kernel, &cflops, &cbytes));
    assert_int_equal(kernel, 0);
    assert_true(cflops == 16.0 * 3 * 5 && cbytes == 512.0 + 20 * 3 * 5);
    assert_null(msac_plan_launch_cost(plan, "prefill", 1, 3, 5, 9, &kernel, &cflops, &cbytes));
    assert_int_equal(kernel, 1);
    assert_true(cflops == 3.0 * 3 * 9 && cbytes == 160.0); /* ceil(32*3*5/3) */
    assert_null(msac_plan_launch_cost(plan, "prefill", 1, 1, 1, 1, NULL, NULL, &cbytes));
    assert_true(cbytes == 11.0); /* ceil(32/3) */
    assert_null(msac_plan_launch_cost(plan, "decode", 0, 64, 1, 4096, &kernel, &cflops, &cbytes));
    assert_true(kernel == 1 && cflops == 0.0 && cbytes == 7.0);
    /* large sizes stay exact in double */
    assert_null(msac_plan_launch_cost(plan, "prefill", 0, 1 << 20, 1 << 20, 1, NULL, &cflops, NULL));
    assert_true(cflops == 16.0 * (double)(1ll << 40));
    /* errors leave the out-parameters alone */
    kernel = 42;
    expect_status(msac_plan_launch_cost(NULL, "prefill", 0, 1, 1, 1, &kernel, &cflops, &cbytes),
                  MSAC_ERR_INVALID_ARGUMENT, "plan is NULL");
    expect_status(msac_plan_launch_cost(plan, NULL, 0, 1, 1, 1, &kernel, &cflops, &cbytes), MSAC_ERR_INVALID_ARGUMENT,
                  "program is NULL");
    expect_status(msac_plan_launch_cost(plan, "verify", 0, 1, 1, 1, &kernel, &cflops, &cbytes),
                  MSAC_ERR_INVALID_ARGUMENT, "the plan has no program \"verify\"");
    expect_status(msac_plan_launch_cost(plan, "prefill", 2, 1, 1, 1, &kernel, &cflops, &cbytes),
                  MSAC_ERR_INVALID_ARGUMENT, "launch 2 is outside 0..1 of prefill");
    expect_status(msac_plan_launch_cost(plan, "decode", -1, 1, 1, 1, &kernel, &cflops, &cbytes),
                  MSAC_ERR_INVALID_ARGUMENT, "launch -1 is outside 0..0 of decode");
    expect_status(msac_plan_launch_cost(plan, "prefill", 0, 1, 0, 1, &kernel, &cflops, &cbytes),
                  MSAC_ERR_INVALID_ARGUMENT, "sizes must be >= 1 (batch=1 seq=0 ctx=1)");
    expect_status(msac_plan_launch_cost(plan, "prefill", 0, 1, 1, 0, &kernel, &cflops, &cbytes),
                  MSAC_ERR_INVALID_ARGUMENT, "sizes must be >= 1");
    assert_int_equal(kernel, 42);

    msac_buffer_info b;
    assert_int_equal(msac_plan_buffer_info(plan, FX_BUF_Y, &b), 0);
    assert_string_equal(b.name, "y");
    assert_int_equal(b.kind, MSAC_BUF_WORKSPACE);
    assert_string_equal(b.dtype, "f32");
    assert_string_equal(b.bytes, "32*batch*seq");
    assert_string_equal(b.offset, "16*batch*seq");
    assert_int_equal(msac_plan_buffer_info(plan, FX_BUF_KV, &b), 0);
    assert_int_equal(b.kind, MSAC_BUF_STATE);
    assert_string_equal(b.dtype, "bf16");
    assert_string_equal(b.bytes, "64*batch*ctx");
    assert_string_equal(b.offset, "");
    assert_int_equal(msac_plan_buffer_info(plan, FX_NBUF, &b), -1);

    msac_weight_info w;
    assert_int_equal(msac_plan_weight_info(plan, 0, &w), 0);
    assert_string_equal(w.name, "embed.weight");
    assert_string_equal(w.dtype, "bf16");
    assert_int_equal(w.ndim, 2);
    assert_int_equal(w.dims[0], 32);
    assert_int_equal(w.dims[1], 8);
    assert_string_equal(w.init, "normal(0.02)");
    assert_int_equal(msac_plan_weight_info(plan, 1, &w), 0);
    assert_string_equal(w.init, "uniform(-0.5,0.5)");
    assert_int_equal(msac_plan_weight_info(plan, 2, &w), -1);

    uint64_t bytes = 0, bytes2 = 0;
    assert_null(msac_plan_memory_required(plan, 2, 8, 16, &bytes));
    assert_int_equal(bytes, 6656);
    assert_null(msac_plan_memory_required(plan, 4, 8, 16, &bytes2));
    assert_true(bytes2 > bytes);
    expect_status(msac_plan_memory_required(plan, 1, 1, 1, NULL), MSAC_ERR_INVALID_ARGUMENT, "out_bytes is NULL");
    /* the breakdown: weights 512 + 256; states conv 192*2 + kv 64*2*16; tokens
     * 4*2*8 + pos 4*2; logits 128*2*8; arena 16*16 + 32*16 (see test_launch) */
    msac_memory_info mi;
    assert_null(msac_plan_memory_info(plan, 2, 8, 16, &mi));
    assert_int_equal(mi.weights, 768);
    assert_int_equal(mi.states, 384 + 2048);
    assert_int_equal(mi.inputs, 64 + 8);
    assert_int_equal(mi.outputs, 2048);
    assert_int_equal(mi.workspace, 768);
    assert_int_equal(mi.total, 6656);
    assert_int_equal(mi.padding, 6656 - (768 + 2432 + 72 + 2048 + 768));
    assert_int_equal(mi.per_sequence_states, 1216);
    expect_status(msac_plan_memory_info(plan, 2, 8, 16, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "msac_plan_memory_info: out_info is NULL");
    expect_status(msac_plan_memory_info(NULL, 2, 8, 16, &mi), MSAC_ERR_INVALID_ARGUMENT, "plan is NULL");
    expect_status(msac_plan_memory_info(plan, 2, 0, 16, &mi), MSAC_ERR_INVALID_ARGUMENT, "max_seq=0");

    /* the seeded init through the public API */
    float v1[256], v2[256];
    assert_null(msac_plan_weight_values(plan, 0, NULL, 1, v1));
    assert_null(msac_plan_weight_values(plan, 0, NULL, 1, v2));
    assert_memory_equal(v1, v2, sizeof v1);

    msac_plan_free(plan);
    msac_plan_free(NULL);
    fixture_rmdir(dir);
}

/* A cost model that comes out negative or overflows is a bad plan. */
static void test_launch_cost_bad_plan(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    p->programs[0].launch[1].flops = (PlanExpr){{-5, 0, 1, 0, 0, 0}, 1};        /* seq - 5 */
    p->programs[0].launch[1].bytes = (PlanExpr){{0, 0, 0, 0, INT64_MAX / 8, 0}, 1}; /* huge * batch*seq */
    msac_plan *plan = fixture_load(p);
    plan_free(p);
    double flops = -1, bytes = -1;
    expect_status(msac_plan_launch_cost(plan, "prefill", 1, 1, 2, 1, NULL, &flops, &bytes), MSAC_ERR_BAD_PLAN,
                  "plan: kernel conv_c64w4: cost-model flops = seq-5 is negative at batch=1 seq=2 ctx=1");
    expect_status(msac_plan_launch_cost(plan, "prefill", 1, 2, 6, 1, NULL, &flops, &bytes), MSAC_ERR_BAD_PLAN,
                  "cost-model bytes");
    expect_status(msac_plan_launch_cost(plan, "prefill", 1, 2, 6, 1, NULL, &flops, &bytes), MSAC_ERR_BAD_PLAN,
                  "is overflowing at batch=2 seq=6");
    assert_true(flops == -1 && bytes == -1);
    assert_null(msac_plan_launch_cost(plan, "prefill", 1, 1, 6, 1, NULL, &flops, &bytes));
    assert_true(flops == 1.0 && bytes == (double)(INT64_MAX / 8) * 6);
    msac_plan_free(plan);
}

static void test_device_and_session(void **state)
{
    (void)state;
    msac_device *dev = NULL;
    msac_status st = msac_device_open(0, &dev);
    msac_code code = msac_status_code(st);
    const char *stub = getenv("MSAC_TEST_EXPECT_STUB");
    if (stub && *stub == '1') {
        /* the toolkit's stub libcuda: every symbol resolved, cuInit refused */
        assert_int_equal(code, MSAC_ERR_NO_DRIVER);
        assert_non_null(strstr(msac_status_message(st), "stub library"));
    } else if (st) {
        assert_true(code == MSAC_ERR_NO_DRIVER || code == MSAC_ERR_NO_DEVICE);
        assert_true(strstr(msac_status_message(st), "no CUDA") || strstr(msac_status_message(st), "no usable CUDA"));
    }
    if (st)
        printf("msac_device_open(0): %s: %s\n", msac_code_name(code), msac_status_message(st));
    msac_status_free(st);
    expect_status(msac_device_open(0, NULL), MSAC_ERR_INVALID_ARGUMENT, "out_device is NULL");
    if (!st) {
        /* a GPU is present: the device describes itself, and the fixture
         * plan's empty kernels load or are refused cleanly */
        msac_device_info di;
        msac_device_get_info(dev, &di);
        printf("device: %s sm_%d%d, %d SMs, driver %d\n", di.name, di.cc_major, di.cc_minor, di.sm_count,
               di.driver_version);
        assert_true(di.name[0] && di.cc_major >= 3 && di.sm_count > 0 && di.total_mem > 0);
        expect_status(msac_device_open(999, &(msac_device *){NULL}), MSAC_ERR_NO_DEVICE, "no CUDA device 999");
    }

    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    plan_free(p);
    msac_session *s = NULL;
    msac_session_options o;
    msac_session_options_init(&o);
    assert_int_equal(o.max_batch, 1);
    assert_int_equal(o.max_seq, 2048);
    assert_int_equal(o.max_ctx, 4096);
    assert_null(o.weights);
    assert_int_equal(o.use_graphs, 1);
    expect_status(msac_session_create(NULL, plan, &o, &s), MSAC_ERR_INVALID_ARGUMENT, "dev is NULL");
    expect_status(msac_session_create(dev, NULL, &o, &s), MSAC_ERR_INVALID_ARGUMENT, dev ? "plan is NULL" : "dev");
    if (dev) {
        expect_status(msac_session_create(dev, plan, &o, NULL), MSAC_ERR_INVALID_ARGUMENT, "out_session is NULL");
        o.max_batch = 0;
        expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_INVALID_ARGUMENT, "limits must be >= 1");
        msac_session_options_init(&o);
        st = msac_session_create(dev, plan, &o, &s);
        if (!st) { /* only an sm_90 device with a driver that accepts the stub kernels */
            msac_session_destroy(s);
            s = NULL; /* the check below is that failed creations leave it NULL */
        } else
            printf("session on the fixture plan: %s\n", msac_status_message(st));
        msac_status_free(st);
    }
    assert_null(s);
    msac_session_destroy(NULL);
    expect_status(msac_session_reset(NULL), MSAC_ERR_INVALID_ARGUMENT, "session is NULL");
    int32_t tok[1] = {0};
    float logits[32];
    expect_status(msac_session_prefill(NULL, 1, 1, tok, logits), MSAC_ERR_INVALID_ARGUMENT, "prefill: session is NULL");
    expect_status(msac_session_decode(NULL, 1, tok, logits), MSAC_ERR_INVALID_ARGUMENT, "decode: session is NULL");
    expect_status(msac_session_read_output(NULL, "logits", logits, 1), MSAC_ERR_INVALID_ARGUMENT, "session is NULL");
    assert_int_equal(msac_session_position(NULL, 0), -1);
    assert_true(msac_session_last_ms(NULL) == 0.0f);
    float total = -1, per[2] = {-1, -1};
    expect_status(msac_session_bench(NULL, "prefill", 1, 1, 0, 1, per, &total), MSAC_ERR_INVALID_ARGUMENT,
                  "msac_session_bench: session is NULL");
    assert_true(total == -1 && per[0] == -1);
    msac_plan_free(plan);
    msac_device_close(dev);
    msac_device_close(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status),
        cmocka_unit_test(test_plan_load_errors),
        cmocka_unit_test(test_plan_info),
        cmocka_unit_test(test_launch_cost_bad_plan),
        cmocka_unit_test(test_device_and_session),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
