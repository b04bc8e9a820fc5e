/* test_weights.c — weights: safetensors checkpoints written by the test
 * (F32, BF16, F16) read through a plan's weight table, every checkpoint
 * error (missing tensor, wrong shape, byte count, offsets outside the file,
 * truncation, malformed JSON, unsupported dtype), the [C,1,W] vs [C,W]
 * shape rule, bf16 rounding, and the seeded init (determinism, seeds and
 * names, NORMAL statistics, ranges of every init kind). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <math.h>
#include <unistd.h>

#include "plan_fixture.h"
#include "rt_internal.h"

static char *tmpdir;

static int setup(void **state)
{
    (void)state;
    tmpdir = fixture_tmpdir();
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fixture_rmdir(tmpdir);
    return 0;
}

/* Writes <tmpdir>/<file> = u64 header length, header (space-padded to a
 * multiple of 8), data. Returns the path (static buffer). */
static const char *write_raw(const char *file, const char *header, const void *data, size_t n)
{
    static char path[4200];
    snprintf(path, sizeof path, "%s/%s", tmpdir, file);
    size_t hl = strlen(header), padded = (hl + 7) / 8 * 8;
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint8_t len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    assert_int_equal(fwrite(len, 1, 8, f), 8);
    assert_int_equal(fwrite(header, 1, hl, f), hl);
    for (size_t i = hl; i < padded; i++)
        fputc(' ', f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
    return path;
}

/* One tensor for write_st. */
typedef struct {
    const char *name;    /* tensor name */
    const char *dtype;   /* "F32", "BF16", "F16", ... */
    const char *shape;   /* JSON array text, "[16, 1, 4]" */
    const void *data;    /* bytes */
    size_t nbytes;       /* their count */
} StIn;

/* A well-formed checkpoint of tensors t[0..n). */
static const char *write_st(const char *file, const StIn *t, int n)
{
    char header[8192];
    size_t off = 0, hl = 0;
    hl += (size_t)snprintf(header + hl, sizeof header - hl, "{\"__metadata__\": {\"format\": \"pt\"}");
    for (int i = 0; i < n; i++) {
        hl += (size_t)snprintf(header + hl, sizeof header - hl,
                               ", \"%s\": {\"dtype\": \"%s\", \"shape\": %s, \"data_offsets\": [%zu, %zu]}", t[i].name,
                               t[i].dtype, t[i].shape, off, off + t[i].nbytes);
        off += t[i].nbytes;
    }
    snprintf(header + hl, sizeof header - hl, "}");
    uint8_t *data = malloc(off ? off : 1), *q = data;
    for (int i = 0; i < n; i++) {
        memcpy(q, t[i].data, t[i].nbytes);
        q += t[i].nbytes;
    }
    const char *path = write_raw(file, header, data, off);
    free(data);
    return path;
}

/* Fixture checkpoint data: embed [32, 8] BF16, conv [16, 1, 4] F32. */
static uint16_t embed_bf16[256];
static float conv_f32[64];

static void make_data(void)
{
    for (int i = 0; i < 256; i++)
        embed_bf16[i] = rt_bf16_from_f32((float)(i - 128) / 64.0f);
    for (int i = 0; i < 64; i++)
        conv_f32[i] = 0.001f * (float)i - 0.01f;
}

static msac_weights *open_ok(const char *path)
{
    msac_weights *w = NULL;
    msac_status st = msac_weights_open(path, &w);
    if (st)
        fail_msg("msac_weights_open(%s): %s", path, msac_status_message(st));
    return w;
}

static void expect_status(msac_status st, msac_code code, const char *substr)
{
    if (msac_status_code(st) != code || !strstr(msac_status_message(st), substr))
        fail_msg("expected %s containing \"%s\", got %s \"%s\"", msac_code_name(code), substr,
                 msac_code_name(msac_status_code(st)), msac_status_message(st));
    msac_status_free(st);
}

static void test_checkpoint_values(void **state)
{
    (void)state;
    make_data();
    const StIn t[] = {
        {"embed.weight", "BF16", "[32, 8]", embed_bf16, sizeof embed_bf16},
        {"backbone.layers.0.mixer.conv1d.weight", "F32", "[16, 1, 4]", conv_f32, sizeof conv_f32},
        {"unused.extra", "I64", "[2]", "\1\0\0\0\0\0\0\0\2\0\0\0\0\0\0\0", 16},
    };
    msac_weights *w = open_ok(write_st("good.safetensors", t, 3));
    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);

    float out[256];
    assert_null(msac_plan_weight_values(plan, 0, w, 0, out));
    for (int i = 0; i < 256; i++)
        assert_true(out[i] == (float)(i - 128) / 64.0f);
    /* [16, 1, 4] in the checkpoint matches [16, 4] in the plan */
    assert_null(msac_plan_weight_values(plan, 1, w, 0, out));
    for (int i = 0; i < 64; i++)
        assert_true(out[i] == conv_f32[i]);

    expect_status(msac_plan_weight_values(plan, 2, w, 0, out), MSAC_ERR_INVALID_ARGUMENT, "weight 2 is outside");
    expect_status(msac_plan_weight_values(plan, -1, w, 0, out), MSAC_ERR_INVALID_ARGUMENT, "outside");
    expect_status(msac_plan_weight_values(plan, 0, w, 0, NULL), MSAC_ERR_INVALID_ARGUMENT, "out is NULL");
    expect_status(msac_plan_weight_values(NULL, 0, w, 0, out), MSAC_ERR_INVALID_ARGUMENT, "plan is NULL");

    /* an I64 tensor requested by the plan */
    PlanWeight wi = {.name = "unused.extra", .dtype = PDT_F32, .ndim = 1, .dims = {2}};
    fixture_set_weights(p, &wi, 1);
    p->buffers[FX_BUF_EMBED].index = 0;
    p->buffers[FX_BUF_CONV].index = 0;
    msac_plan *plan2 = fixture_load(p);
    expect_status(msac_plan_weight_values(plan2, 0, w, 0, out), MSAC_ERR_BAD_WEIGHTS,
                  "weights: tensor \"unused.extra\" in ");
    expect_status(msac_plan_weight_values(plan2, 0, w, 0, out), MSAC_ERR_BAD_WEIGHTS,
                  "has dtype I64 (F32, BF16 and F16 are accepted)");
    msac_plan_free(plan2);

    /* an i32 weight is not something the runtime uploads */
    wi.dtype = PDT_I32;
    fixture_set_weights(p, &wi, 1);
    plan2 = fixture_load(p);
    expect_status(msac_plan_weight_values(plan2, 0, w, 0, out), MSAC_ERR_UNSUPPORTED, "only f32 and bf16");
    msac_plan_free(plan2);

    msac_plan_free(plan);
    plan_free(p);
    msac_weights_close(w);
    msac_weights_close(NULL);
}

static void test_conversions(void **state)
{
    (void)state;
    /* F32 source for a bf16 weight: rounded to nearest even bf16 */
    float src[256];
    for (int i = 0; i < 256; i++)
        src[i] = 1.0f + (float)i * 0x1p-12f + 0x1p-20f;
    const uint16_t f16[4] = {0x3c00, 0xc100, 0x0001, 0x7bff}; /* 1, -2.5, 2^-24, 65504 */
    const StIn t[] = {
        {"embed.weight", "F32", "[32, 8]", src, sizeof src},
        {"backbone.layers.0.mixer.conv1d.weight", "F16", "[4]", f16, sizeof f16},
    };
    msac_weights *w = open_ok(write_st("conv.safetensors", t, 2));
    Plan *p = fixture_plan();
    p->weights[1].ndim = 1;
    p->weights[1].dims[0] = 4;
    msac_plan *plan = fixture_load(p);
    float out[256];
    assert_null(msac_plan_weight_values(plan, 0, w, 0, out));
    for (int i = 0; i < 256; i++) {
        assert_true(out[i] == rt_bf16_round(src[i]));
        assert_true(out[i] == rt_bf16_round(out[i])); /* exactly representable */
    }
    assert_true(out[0] == 1.0f); /* 1 + 2^-20 rounds down */
    assert_true(out[32] == 1.0078125f); /* 1 + 2^-7 + 2^-20: exactly a bf16 step + a bit, rounds down */
    assert_null(msac_plan_weight_values(plan, 1, w, 0, out));
    assert_true(out[0] == 1.0f);
    assert_true(out[1] == -2.5f);
    assert_true(out[2] == 0x1p-24f);
    assert_true(out[3] == 65504.0f);
    msac_plan_free(plan);
    plan_free(p);
    msac_weights_close(w);

    /* bf16 rounding: ties to even, NaN stays NaN, overflow to infinity */
    assert_int_equal(rt_bf16_from_f32(1.0f), 0x3f80);
    assert_int_equal(rt_bf16_from_f32(1.0f + 0x1p-8f), 0x3f80);          /* tie, even stays */
    assert_int_equal(rt_bf16_from_f32(1.0f + 3 * 0x1p-8f), 0x3f82);      /* tie, odd rounds up */
    assert_int_equal(rt_bf16_from_f32(-1.0f - 0x1p-8f - 0x1p-16f), 0xbf81);
    assert_true(isnan(rt_f32_from_bf16(rt_bf16_from_f32(NAN))));
    assert_true(isinf(rt_bf16_round(3.4e38f)));
    uint16_t h[3];
    const float f[3] = {0.0f, -0.0f, 2.0f};
    rt_bf16_from_f32_array(f, h, 3);
    assert_int_equal(h[0], 0x0000);
    assert_int_equal(h[1], 0x8000);
    assert_int_equal(h[2], 0x4000);
}

static void test_checkpoint_errors(void **state)
{
    (void)state;
    make_data();
    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    float out[256];
    msac_weights *w;

    /* missing tensor */
    const StIn only_embed[] = {{"embed.weight", "BF16", "[32, 8]", embed_bf16, sizeof embed_bf16}};
    w = open_ok(write_st("model.safetensors", only_embed, 1));
    msac_status st = msac_plan_weight_values(plan, 1, w, 0, out);
    char want[512];
    snprintf(want, sizeof want, "weights: tensor \"backbone.layers.0.mixer.conv1d.weight\" missing from %s/model.safetensors",
             tmpdir);
    assert_int_equal(msac_status_code(st), MSAC_ERR_BAD_WEIGHTS);
    assert_string_equal(msac_status_message(st), want);
    msac_status_free(st);
    msac_weights_close(w);

    /* wrong shape, both shapes in the message */
    const StIn bad_shape[] = {{"backbone.layers.0.mixer.conv1d.weight", "F32", "[8, 8]", conv_f32, sizeof conv_f32}};
    w = open_ok(write_st("shape.safetensors", bad_shape, 1));
    expect_status(msac_plan_weight_values(plan, 1, w, 0, out), MSAC_ERR_BAD_WEIGHTS,
                  "has shape [8, 8] but the plan expects [16, 4]");
    msac_weights_close(w);
    /* size-1 dims are ignored only as extra dims, not as a different shape */
    const StIn bad_shape2[] = {{"backbone.layers.0.mixer.conv1d.weight", "F32", "[4, 1, 16]", conv_f32, sizeof conv_f32}};
    w = open_ok(write_st("shape2.safetensors", bad_shape2, 1));
    expect_status(msac_plan_weight_values(plan, 1, w, 0, out), MSAC_ERR_BAD_WEIGHTS, "[4, 1, 16] but the plan expects [16, 4]");
    msac_weights_close(w);

    /* dtype size does not match the byte range (F32 data labelled BF16 with twice the bytes) */
    const StIn bad_size[] = {{"backbone.layers.0.mixer.conv1d.weight", "BF16", "[16, 1, 4]", conv_f32, sizeof conv_f32}};
    expect_status(msac_weights_open(write_st("size.safetensors", bad_size, 1), &w), MSAC_ERR_BAD_WEIGHTS,
                  "tensor \"backbone.layers.0.mixer.conv1d.weight\": BF16 [16, 1, 4] needs 128 bytes but data_offsets cover 256");

    /* data_offsets beyond the data section */
    const char *hdr = "{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [16, 32]}}";
    expect_status(msac_weights_open(write_raw("off.safetensors", hdr, conv_f32, 20), &w), MSAC_ERR_BAD_WEIGHTS,
                  "tensor \"b\": data_offsets [16, 32] lie outside the 20-byte data section");
    const char *hdr_rev = "{\"a\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [8, 4]}}";
    expect_status(msac_weights_open(write_raw("rev.safetensors", hdr_rev, conv_f32, 16), &w), MSAC_ERR_BAD_WEIGHTS,
                  "data_offsets [8, 4] lie outside");

    /* truncated files */
    const char *path = write_raw("trunc.safetensors", hdr, conv_f32, 32);
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(ftruncate(fileno(f), 4), 0);
    fclose(f);
    expect_status(msac_weights_open(path, &w), MSAC_ERR_BAD_WEIGHTS, "truncated: 4 bytes");
    path = write_raw("trunc2.safetensors", hdr, conv_f32, 32);
    f = fopen(path, "r+b");
    assert_int_equal(ftruncate(fileno(f), 50), 0);
    fclose(f);
    expect_status(msac_weights_open(path, &w), MSAC_ERR_BAD_WEIGHTS, "exceeds the file (50 bytes)");

    /* malformed header JSON, and well-formed JSON of the wrong form */
    static const struct {
        const char *header;   /* header text */
        const char *message;  /* expected substring */
    } bad[] = {
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}", "malformed header JSON at byte"},
        {"{\"a\": {\"dtype\": \"F32\" \"shape\": [4]}}", "expected ',' or '}'"},
        {"{\"a\": [1, 2,]}", "expected a value"},
        {"{\"a\": \"\\x\"}", "bad escape in string"},
        {"{\"a\": 01}", "expected ',' or '}'"},
        {"{\"a\": 1} x", "unexpected text after the value"},
        {"[1, 2]", "header is a JSON array, not an object"},
        {"{\"a\": 5}", "tensor \"a\": entry is a JSON number, not an object"},
        {"{\"a\": {\"shape\": [4], \"data_offsets\": [0, 16]}}", "\"dtype\" missing or not a string"},
        {"{\"a\": {\"dtype\": \"F32\", \"data_offsets\": [0, 16]}}", "\"shape\" missing or not an array"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0]}}", "\"data_offsets\" missing"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [-4], \"data_offsets\": [0, 16]}}", "shape entry 0 is not a non-negative"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4.5], \"data_offsets\": [0, 16]}}", "shape entry 0 is not"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, \"16\"]}}", "data_offsets are not"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [1,1,1,1,1,1,1,1,4], \"data_offsets\": [0, 16]}}", "has rank 9"},
        {"{\"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]},"
         " \"a\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}",
         "tensor \"a\" appears twice"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_status(msac_weights_open(write_raw("bad.safetensors", bad[i].header, conv_f32, 16), &w),
                      MSAC_ERR_BAD_WEIGHTS, bad[i].message);

    /* missing file */
    expect_status(msac_weights_open("/nonexistent/model.safetensors", &w), MSAC_ERR_IO, "/nonexistent/model.safetensors");
    expect_status(msac_weights_open(NULL, &w), MSAC_ERR_INVALID_ARGUMENT, "path is NULL");

    /* names with JSON escapes are decoded */
    const char *esc = "{\"a\\u00e9\\n\\\"q\\\"\\ud83d\\ude00\": {\"dtype\": \"F32\", \"shape\": [4], \"data_offsets\": [0, 16]}}";
    w = open_ok(write_raw("esc.safetensors", esc, conv_f32, 16));
    PlanWeight pw = {.name = "a\xc3\xa9\n\"q\"\xf0\x9f\x98\x80", .dtype = PDT_F32, .ndim = 1, .dims = {4}};
    fixture_set_weights(p, &pw, 1);
    p->buffers[FX_BUF_EMBED].index = 0;
    p->buffers[FX_BUF_CONV].index = 0;
    msac_plan *plan2 = fixture_load(p);
    assert_null(msac_plan_weight_values(plan2, 0, w, 0, out));
    assert_true(out[3] == conv_f32[3]);
    msac_plan_free(plan2);
    msac_weights_close(w);

    msac_plan_free(plan);
    plan_free(p);
}

/* A plan whose weights are exactly `w`. */
static msac_plan *plan_with(const PlanWeight *w, uint32_t n)
{
    Plan *p = fixture_plan();
    fixture_set_weights(p, w, n);
    p->buffers[FX_BUF_EMBED].index = 0;
    p->buffers[FX_BUF_CONV].index = 0;
    msac_plan *plan = fixture_load(p);
    plan_free(p);
    return plan;
}

static void test_seeded_init(void **state)
{
    (void)state;
    enum { N = 100000 };
    const PlanWeight w[] = {
        {.name = "big", .dtype = PDT_F32, .ndim = 1, .dims = {N}, .init = PINIT_NORMAL, .init_a = 0.02f},
        {.name = "big2", .dtype = PDT_F32, .ndim = 1, .dims = {N}, .init = PINIT_NORMAL, .init_a = 0.02f},
        {.name = "bigbf", .dtype = PDT_BF16, .ndim = 2, .dims = {1000, 100}, .init = PINIT_NORMAL, .init_a = 0.02f},
        {.name = "A_log", .dtype = PDT_F32, .ndim = 1, .dims = {1000}, .init = PINIT_LOG_UNIFORM, .init_a = 1, .init_b = 16},
        {.name = "dt_bias", .dtype = PDT_F32, .ndim = 1, .dims = {1000}, .init = PINIT_DT_BIAS, .init_a = 0.001f,
         .init_b = 0.1f},
        {.name = "u", .dtype = PDT_BF16, .ndim = 1, .dims = {1000}, .init = PINIT_UNIFORM, .init_a = -0.5f, .init_b = 0.25f},
        {.name = "z", .dtype = PDT_F32, .ndim = 1, .dims = {10}, .init = PINIT_ZEROS},
        {.name = "o", .dtype = PDT_BF16, .ndim = 1, .dims = {10}, .init = PINIT_ONES},
        {.name = "c", .dtype = PDT_BF16, .ndim = 1, .dims = {10}, .init = PINIT_CONST, .init_a = 0.3f},
        {.name = "dt_floor", .dtype = PDT_F32, .ndim = 1, .dims = {100}, .init = PINIT_DT_BIAS, .init_a = 1e-6f,
         .init_b = 2e-6f},
    };
    msac_plan *plan = plan_with(w, sizeof w / sizeof w[0]);
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);

    /* deterministic, and independent of call order */
    assert_null(msac_plan_weight_values(plan, 0, NULL, 42, a));
    assert_null(msac_plan_weight_values(plan, 3, NULL, 42, b));
    assert_null(msac_plan_weight_values(plan, 0, NULL, 42, b));
    assert_memory_equal(a, b, N * sizeof *a);
    /* another seed or another name gives other values */
    assert_null(msac_plan_weight_values(plan, 0, NULL, 43, b));
    int same = 0;
    for (int i = 0; i < N; i++)
        same += a[i] == b[i];
    assert_true(same < 10);
    assert_null(msac_plan_weight_values(plan, 1, NULL, 42, b));
    same = 0;
    for (int i = 0; i < N; i++)
        same += a[i] == b[i];
    assert_true(same < 10);

    /* NORMAL(0.02): mean ~ 0, std within 5% of 0.02 */
    double sum = 0, sq = 0;
    for (int i = 0; i < N; i++) {
        sum += a[i];
        sq += (double)a[i] * a[i];
    }
    double mean = sum / N, std = sqrt(sq / N - mean * mean);
    assert_true(fabs(mean) < 0.05 * 0.02);
    assert_true(fabs(std - 0.02) < 0.05 * 0.02);

    /* bf16 weights are exactly representable, and still N(0, 0.02^2) */
    assert_null(msac_plan_weight_values(plan, 2, NULL, 42, a));
    sum = sq = 0;
    for (int i = 0; i < N; i++) {
        assert_true(a[i] == rt_bf16_round(a[i]));
        sum += a[i];
        sq += (double)a[i] * a[i];
    }
    mean = sum / N;
    std = sqrt(sq / N - mean * mean);
    assert_true(fabs(mean) < 0.05 * 0.02);
    assert_true(fabs(std - 0.02) < 0.05 * 0.02);

    /* LOG_UNIFORM(1, 16) lies in [log 1, log 16] and spreads over it */
    assert_null(msac_plan_weight_values(plan, 3, NULL, 7, a));
    float lo = 1e9f, hi = -1e9f;
    for (int i = 0; i < 1000; i++) {
        lo = fminf(lo, a[i]);
        hi = fmaxf(hi, a[i]);
    }
    assert_true(lo >= 0.0f && hi <= logf(16.0f) + 1e-6f);
    assert_true(lo < 0.1f && hi > 2.6f);

    /* DT_BIAS(0.001, 0.1): softplus(value) = dt in [0.001, 0.1] */
    assert_null(msac_plan_weight_values(plan, 4, NULL, 7, a));
    double dlo = 1e9, dhi = -1e9;
    for (int i = 0; i < 1000; i++) {
        double dt = log1p(exp((double)a[i]));
        dlo = fmin(dlo, dt);
        dhi = fmax(dhi, dt);
    }
    assert_true(dlo >= 0.001 * (1 - 1e-5) && dhi <= 0.1 * (1 + 1e-5));
    assert_true(dlo < 0.0015 && dhi > 0.08);
    /* and the 1e-4 floor */
    assert_null(msac_plan_weight_values(plan, 9, NULL, 7, a));
    for (int i = 0; i < 100; i++)
        assert_true(fabs(log1p(exp((double)a[i])) - 1e-4) < 1e-8);

    /* UNIFORM(-0.5, 0.25) as bf16 */
    assert_null(msac_plan_weight_values(plan, 5, NULL, 7, a));
    lo = 1e9f;
    hi = -1e9f;
    for (int i = 0; i < 1000; i++) {
        assert_true(a[i] == rt_bf16_round(a[i]));
        lo = fminf(lo, a[i]);
        hi = fmaxf(hi, a[i]);
    }
    assert_true(lo >= -0.5f && hi <= 0.25f && lo < -0.45f && hi > 0.2f);

    /* constants */
    assert_null(msac_plan_weight_values(plan, 6, NULL, 7, a));
    assert_null(msac_plan_weight_values(plan, 7, NULL, 7, a + 10));
    assert_null(msac_plan_weight_values(plan, 8, NULL, 7, a + 20));
    for (int i = 0; i < 10; i++) {
        assert_true(a[i] == 0.0f);
        assert_true(a[10 + i] == 1.0f);
        assert_true(a[20 + i] == rt_bf16_round(0.3f));
    }
    free(a);
    free(b);
    msac_plan_free(plan);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_checkpoint_values),
        cmocka_unit_test(test_conversions),
        cmocka_unit_test(test_checkpoint_errors),
        cmocka_unit_test(test_seeded_init),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
