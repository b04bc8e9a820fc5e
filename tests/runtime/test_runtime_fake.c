/* test_runtime_fake.c — the public API of libmsacrt against a fake CUDA
 * driver (fakecuda/fake_cuda.c, found first through LD_LIBRARY_PATH), so
 * that what needs a device is checked on machines without one:
 *
 *  - every failure a user meets has its code and a readable message: no
 *    device (cuInit, no devices, ordinal out of range), no usable driver,
 *    wrong GPU for the plan, out of device memory (with the sizes asked and
 *    free), bad weights and bad plan at session creation; nothing leaks
 *    device memory on those paths;
 *  - msac_session_prefill_ragged end to end: the driver's launch hook plays
 *    the fixture plan's two prefill kernels on the host with a causal model
 *    (each token updates its sequence's state), so a ragged prefill must
 *    give exactly the logits and states of separate one-sequence sessions,
 *    split into the documented internal calls, with positions, argument
 *    errors and plans whose states are not per sequence checked too. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <cuda.h>
#include <dlfcn.h>

#include "plan_fixture.h"

enum { VOCAB = 32, ST_FLOATS = 48, MAXCALLS = 64 };

/* What the launch hook saw and keeps between the two prefill kernels. */
typedef struct Played {
    int pending_seq;         /* seq of the embed launch awaiting its conv launch, 0 if none */
    int ncalls;              /* prefill calls played */
    int batch[MAXCALLS];     /* [ncalls] rows of each call */
    int seq[MAXCALLS];       /* [ncalls] tokens per row of each call */
    int nsample;             /* sampler launches played */
} Played;

static Played played;

static void expect_status(msac_status st, msac_code code, const char *substr)
{
    if (msac_status_code(st) != code || !strstr(msac_status_message(st), substr))
        fail_msg("expected %s containing \"%s\", got %s \"%s\"", msac_code_name(code), substr,
                 msac_code_name(msac_status_code(st)), msac_status_message(st));
    msac_status_free(st);
}

static void check(msac_status st)
{
    if (st)
        fail_msg("%s: %s", msac_code_name(msac_status_code(st)), msac_status_message(st));
}

static void *arg_ptr(void **params, int i) { return (void *)(uintptr_t)*(const uint64_t *)params[i]; }

/* The fixture's prefill kernels on the host. embed_k(tokens, embed, h, seq,
 * n, f): h row i (16 bytes) gets token i. conv_k(h, conv, conv_state, y,
 * logits, pos, ctx), one block per sequence b: for each token in order the
 * state row s (48 floats) becomes s0 = s0/2 + token + 1, s1 += 1 and the
 * token's logits [pos+t, s0, token, s1, ctx, 0...]. The decode program's
 * conv_k (not preceded by embed_k) does nothing. */
static void play(const char *entry, const unsigned grid[3], void **params, void *user)
{
    Played *p = user;
    if (!strcmp(entry, "sample_k")) { /* the sampler: msac_sample_cpu on each row's last logits, from its record */
        const float *logits = arg_ptr(params, 0);
        const uint32_t *rec = arg_ptr(params, 1);
        int32_t *out = arg_ptr(params, 2), seq = *(const int32_t *)params[3];
        for (unsigned b = 0; b < grid[0]; b++) {
            const uint32_t *w = rec + (size_t)b * 10;
            msac_sampling sp = {.top_k = (int32_t)w[1]};
            memcpy(&sp.temperature, &w[0], 4);
            memcpy(&sp.top_p, &w[2], 4);
            assert_true(!(w[3] & 1) == (sp.temperature != 0)); /* the greedy flag */
            sp.seed = w[4] | (uint64_t)w[5] << 32;
            sp.stream = w[6] | (uint64_t)w[7] << 32;
            check(msac_sample_cpu(logits + ((size_t)(b + 1) * (size_t)seq - 1) * VOCAB, VOCAB, &sp,
                                  w[8] | (uint64_t)w[9] << 32, &out[b]));
        }
        p->nsample++;
        return;
    }
    if (!strcmp(entry, "embed_k")) {
        const int32_t *tok = arg_ptr(params, 0);
        int32_t *h = arg_ptr(params, 2);
        int64_t n = *(const int64_t *)params[4];
        for (int64_t i = 0; i < n; i++)
            h[i * 4] = tok[i];
        p->pending_seq = *(const int32_t *)params[3];
        return;
    }
    if (strcmp(entry, "conv_k") || !p->pending_seq)
        return;
    int seq = p->pending_seq;
    p->pending_seq = 0;
    const int32_t *h = arg_ptr(params, 0), *pos = arg_ptr(params, 5);
    float *state = arg_ptr(params, 2), *logits = arg_ptr(params, 4);
    int32_t ctx = *(const int32_t *)params[6];
    for (unsigned b = 0; b < grid[0]; b++) {
        float *s = state + (size_t)b * ST_FLOATS;
        for (int t = 0; t < seq; t++) {
            size_t i = (size_t)b * (size_t)seq + (size_t)t;
            int32_t tok = h[i * 4];
            s[0] = s[0] * 0.5f + (float)tok + 1.0f;
            s[1] += 1.0f;
            float *o = logits + i * VOCAB;
            memset(o, 0, VOCAB * sizeof *o);
            o[0] = (float)(pos[b] + t);
            o[1] = s[0];
            o[2] = (float)tok;
            o[3] = s[1];
            o[4] = (float)ctx;
        }
    }
    if (p->ncalls < MAXCALLS) {
        p->batch[p->ncalls] = (int)grid[0];
        p->seq[p->ncalls] = seq;
    }
    p->ncalls++;
}

/* The fake driver's handle; fails unless it is the library the runtime loaded. */
static void *fake_driver(void)
{
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD);
    if (!h || !dlsym(h, "fake_cuda_set_hook"))
        fail_msg("libcuda.so.1 is not the fake driver (run with LD_LIBRARY_PATH=<build>/tests/runtime/fakecuda)");
    return h;
}

/* The fake driver's launch hook: fn(kernel name, grid, params, user) runs
 * at every launch until set_launch_hook(NULL, NULL). */
static void set_launch_hook(void (*fn)(const char *, const unsigned[3], void **, void *), void *user)
{
    void (*set_hook)(void (*)(const char *, const unsigned[3], void **, void *), void *);
    void *sym = dlsym(fake_driver(), "fake_cuda_set_hook");
    memcpy(&set_hook, &sym, sizeof set_hook);
    set_hook(fn, user);
}

static size_t device_bytes_used(void)
{
    CUresult (*f)(size_t *, size_t *);
    void *sym = dlsym(fake_driver(), "cuMemGetInfo_v2");
    memcpy(&f, &sym, sizeof f);
    size_t free_b = 0, total_b = 0;
    assert_int_equal(f(&free_b, &total_b), CUDA_SUCCESS);
    return total_b - free_b;
}

static msac_device *open_device(void)
{
    msac_device *dev = NULL;
    check(msac_device_open(0, &dev));
    return dev;
}

static void test_device_errors(void **state)
{
    (void)state;
    msac_device *dev = NULL;
    setenv("FAKE_CUDA_INIT", "100", 1);
    expect_status(msac_device_open(0, &dev), MSAC_ERR_NO_DEVICE,
                  "no CUDA device: cuInit: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected (is "
                  "CUDA_VISIBLE_DEVICES set?)");
    setenv("FAKE_CUDA_INIT", "803", 1);
    expect_status(msac_device_open(0, &dev), MSAC_ERR_NO_DRIVER,
                  "no usable CUDA driver: cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH");
    setenv("FAKE_CUDA_INIT", "0", 1);
    setenv("FAKE_CUDA_COUNT", "0", 1);
    expect_status(msac_device_open(0, &dev), MSAC_ERR_NO_DEVICE, "no CUDA device 0: 0 devices present");
    setenv("FAKE_CUDA_COUNT", "1", 1);
    expect_status(msac_device_open(1, &dev), MSAC_ERR_NO_DEVICE, "no CUDA device 1: 1 device present");
    expect_status(msac_device_open(-1, &dev), MSAC_ERR_NO_DEVICE, "no CUDA device -1");
    assert_null(dev);

    dev = open_device();
    msac_device_info di;
    msac_device_get_info(dev, &di);
    assert_string_equal(di.name, "Fake GPU 0");
    assert_int_equal(di.cc_major, 9);
    assert_int_equal(di.cc_minor, 0);
    assert_int_equal(di.sm_count, 4);
    assert_int_equal(di.driver_version, 13000);
    assert_true(di.total_mem == 1ull << 30);
    msac_device_close(dev);
}

/* A safetensors file holding only the fixture's embedding (f32 [32, 8]). */
static void write_partial_checkpoint(const char *path)
{
    char hdr[128];
    int n = snprintf(hdr, sizeof hdr, "{\"embed.weight\":{\"dtype\":\"F32\",\"shape\":[32,8],\"data_offsets\":[0,1024]}}");
    while (n % 8)
        hdr[n++] = ' ';
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint64_t len = (uint64_t)n;
    uint8_t le[8];
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(len >> (8 * i));
    float data[256] = {0};
    assert_int_equal(fwrite(le, 1, 8, f), 8);
    assert_int_equal(fwrite(hdr, 1, (size_t)n, f), (size_t)n);
    assert_int_equal(fwrite(data, sizeof data, 1, f), 1);
    fclose(f);
}

static void test_session_errors(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = 2;
    o.max_seq = 8;
    o.max_ctx = 16;
    msac_session *s = NULL;

    /* wrong GPU: an sm_90a plan on an sm_80 device, and on an sm_100 one */
    setenv("FAKE_CUDA_CC", "80", 1);
    msac_device *dev = open_device();
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_WRONG_TARGET,
                  "plan is for sm_90a, device Fake GPU 0 is sm_80 (an sm_XYa plan needs exactly that GPU)");
    msac_device_close(dev);
    setenv("FAKE_CUDA_CC", "100", 1);
    dev = open_device();
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_WRONG_TARGET, "is sm_100");
    msac_device_close(dev);
    setenv("FAKE_CUDA_CC", "90", 1);

    /* out of device memory: the message has what was asked and what is free */
    uint64_t need = 0;
    check(msac_plan_memory_required(plan, 2, 8, 16, &need));
    assert_int_equal(need, 6656);
    setenv("FAKE_CUDA_MEM", "4096", 1);
    dev = open_device();
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_OUT_OF_MEMORY,
                  "cuMemAlloc(6656 bytes for weights, states and workspace at max_batch=2 max_seq=8 max_ctx=16; 4096 "
                  "of 4096 bytes free): CUDA_ERROR_OUT_OF_MEMORY: out of memory");
    msac_device_close(dev);
    setenv("FAKE_CUDA_MEM", "6656", 1); /* exactly enough */
    dev = open_device();
    check(msac_session_create(dev, plan, &o, &s));
    assert_int_equal(device_bytes_used(), 6656);
    msac_session_destroy(s);
    s = NULL;
    assert_int_equal(device_bytes_used(), 0);
    unsetenv("FAKE_CUDA_MEM");

    /* bad weights: the checkpoint lacks a tensor; the allocation is released */
    char *dir = fixture_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/partial.safetensors", dir);
    write_partial_checkpoint(path);
    msac_weights *w = NULL;
    check(msac_weights_open(path, &w));
    o.weights = w;
    char want[4400];
    snprintf(want, sizeof want, "weights: tensor \"backbone.layers.0.mixer.conv1d.weight\" missing from %s", path);
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_BAD_WEIGHTS, want);
    assert_int_equal(device_bytes_used(), 0);
    o.weights = NULL;
    msac_weights_close(w);
    fixture_rmdir(dir);

    /* bad plans: no logits output; an input this runtime cannot bind */
    msac_plan_free(plan);
    free(p->buffers[FX_BUF_LOGITS].name);
    p->buffers[FX_BUF_LOGITS].name = strdup("scores");
    plan = fixture_load(p);
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_BAD_PLAN, "plan: no output \"logits\"");
    msac_plan_free(plan);
    free(p->buffers[FX_BUF_LOGITS].name);
    p->buffers[FX_BUF_LOGITS].name = strdup("logits");
    free(p->buffers[FX_BUF_POS].name);
    p->buffers[FX_BUF_POS].name = strdup("mask");
    plan = fixture_load(p);
    expect_status(msac_session_create(dev, plan, &o, &s), MSAC_ERR_UNSUPPORTED,
                  "plan input \"mask\" is not one this runtime binds (tokens, pos, sample_params)");
    msac_plan_free(plan);
    assert_null(s);
    assert_int_equal(device_bytes_used(), 0);
    plan_free(p);
    msac_device_close(dev);
}

/* Session of the fixture plan with the host kernels installed. */
static msac_session *fake_session(msac_device *dev, const msac_plan *plan, int max_batch, int max_seq)
{
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = max_batch;
    o.max_seq = max_seq;
    o.max_ctx = 16;
    msac_session *s = NULL;
    check(msac_session_create(dev, plan, &o, &s));
    return s;
}

/* One ragged prefill on `s` against one session per sequence (`ref`, one
 * prefill of the whole length each): logits of each last token and the
 * state rows must be equal, positions advanced by the lengths, rows of
 * length 0 left alone. */
static void ragged_vs_separate(msac_session *s, msac_session *const *ref, int batch, const int *lengths,
                               const int32_t *tokens)
{
    float last[4 * VOCAB], want[16 * VOCAB], st[4 * ST_FLOATS], st1[ST_FLOATS];
    int64_t pos0[4];
    for (int r = 0; r < batch; r++)
        pos0[r] = msac_session_position(s, r);
    for (size_t i = 0; i < sizeof last / sizeof last[0]; i++)
        last[i] = -7.0f;
    check(msac_session_prefill_ragged(s, batch, lengths, tokens, last));
    check(msac_session_read_output(s, "conv_state", st, (size_t)batch * ST_FLOATS));
    const int32_t *t = tokens;
    for (int r = 0; r < batch; r++) {
        assert_int_equal(msac_session_position(s, r), pos0[r] + lengths[r]);
        if (!lengths[r]) {
            for (int v = 0; v < VOCAB; v++)
                assert_true(last[r * VOCAB + v] == -7.0f);
            continue;
        }
        check(msac_session_prefill(ref[r], 1, lengths[r], t, want));
        t += lengths[r];
        const float *w = want + (size_t)(lengths[r] - 1) * VOCAB;
        for (int v = 0; v < VOCAB; v++)
            if (last[r * VOCAB + v] != w[v])
                fail_msg("sequence %d: last logits[%d] = %g, separately %g", r, v, (double)last[r * VOCAB + v],
                         (double)w[v]);
        assert_true(w[0] == (float)(pos0[r] + lengths[r] - 1)); /* its own position */
        check(msac_session_read_output(ref[r], "conv_state", st1, ST_FLOATS));
        assert_memory_equal(st + r * ST_FLOATS, st1, sizeof st1);
    }
}

static void test_ragged(void **state)
{
    (void)state;
    msac_device *dev = open_device();
    set_launch_hook(play, &played);

    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    msac_session *s = fake_session(dev, plan, 4, 4), *ref[4];
    for (int r = 0; r < 4; r++)
        ref[r] = fake_session(dev, plan, 1, 16);

    /* lengths 3, 0, 7, 2 with max_seq 4: row 0 alone (row 1 is empty), then
     * rows 2-3 for 2 tokens, then row 2 for 4 (max_seq) and 1 */
    const int len1[4] = {3, 0, 7, 2};
    int32_t tok1[12];
    for (int i = 0; i < 12; i++)
        tok1[i] = (i * 7 + 3) % VOCAB;
    played.ncalls = 0;
    ragged_vs_separate(s, ref, 4, len1, tok1);
    /* the reference sessions ran one call each: 3 of them */
    assert_int_equal(played.ncalls, 4 + 3);
    const int want_b[4] = {1, 2, 1, 1}, want_s[4] = {3, 2, 4, 1};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(played.batch[i], want_b[i]);
        assert_int_equal(played.seq[i], want_s[i]);
    }
    assert_true(msac_session_last_ms(s) == 4 * 0.25f); /* the sum over the internal calls */
    float out[VOCAB];
    expect_status(msac_session_read_output(s, "logits", out, 1), MSAC_ERR_INVALID_ARGUMENT,
                  "read_output(logits): the last call was a ragged prefill");

    /* continuing: every row from its own position; all four rows share 1 token first */
    const int len2[4] = {2, 5, 1, 4};
    int32_t tok2[12];
    for (int i = 0; i < 12; i++)
        tok2[i] = (i * 11 + 5) % VOCAB;
    played.ncalls = 0;
    ragged_vs_separate(s, ref, 4, len2, tok2);
    assert_int_equal(played.ncalls, 4 + 4);
    assert_int_equal(played.batch[0], 4);
    assert_int_equal(played.seq[0], 1);

    /* argument errors run nothing and move no position */
    played.ncalls = 0;
    const int neg[2] = {1, -1}, big[2] = {1, 12}, ok2[2] = {1, 1};
    const int32_t bad_tok[2] = {1, VOCAB};
    expect_status(msac_session_prefill_ragged(NULL, 1, ok2, tok1, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "prefill_ragged: session is NULL");
    expect_status(msac_session_prefill_ragged(s, 5, ok2, tok1, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "prefill_ragged: batch 5 is outside 1..4");
    expect_status(msac_session_prefill_ragged(s, 2, NULL, tok1, NULL), MSAC_ERR_INVALID_ARGUMENT, "lengths is NULL");
    expect_status(msac_session_prefill_ragged(s, 2, neg, tok1, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "length -1 of sequence 1 is negative");
    expect_status(msac_session_prefill_ragged(s, 2, big, tok1, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "sequence 1 is at position 5; 12 more tokens exceed max_ctx 16");
    expect_status(msac_session_prefill_ragged(s, 2, ok2, NULL, NULL), MSAC_ERR_INVALID_ARGUMENT, "tokens is NULL");
    expect_status(msac_session_prefill_ragged(s, 2, ok2, bad_tok, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "token 32 at [1, 0] (tokens[1]) is outside the vocabulary [0, 32)");
    const int zero[3] = {0, 0, 0};
    check(msac_session_prefill_ragged(s, 3, zero, NULL, NULL)); /* nothing to do */
    assert_int_equal(played.ncalls, 0);
    assert_int_equal(msac_session_position(s, 0), 5);
    assert_int_equal(msac_session_position(s, 1), 5);
    assert_int_equal(msac_session_position(s, 2), 8);
    assert_int_equal(msac_session_position(s, 3), 6);

    /* a plain prefill afterwards: outputs readable again */
    const int32_t one[1] = {9};
    check(msac_session_prefill(s, 1, 1, one, NULL));
    check(msac_session_read_output(s, "logits", out, VOCAB));
    assert_true(out[0] == 5.0f && out[2] == 9.0f);
    for (int r = 0; r < 4; r++)
        msac_session_destroy(ref[r]);
    msac_session_destroy(s);
    msac_plan_free(plan);

    /* a state that is not per sequence: ragged prefill refused, nothing run */
    p->buffers[FX_BUF_CONVST].bytes = (PlanExpr){{4096, 0, 0, 0, 0, 0}, 1};
    plan = fixture_load(p);
    s = fake_session(dev, plan, 2, 4);
    played.ncalls = 0;
    const int l2[2] = {1, 2};
    expect_status(msac_session_prefill_ragged(s, 2, l2, tok1, NULL), MSAC_ERR_UNSUPPORTED,
                  "plan: state buffer \"conv_state\" (bytes 4096) is not laid out per sequence");
    assert_int_equal(played.ncalls, 0);
    assert_int_equal(msac_session_position(s, 1), 0);
    msac_session_destroy(s);
    msac_plan_free(plan);
    plan_free(p);
    set_launch_hook(NULL, NULL);
    assert_int_equal(device_bytes_used(), 0);
    msac_device_close(dev);
}

/* The embed weight each embed_k launch reads (its argument 1). */
static const void *embed_seen;
static void see_embed(const char *entry, const unsigned grid[3], void **params, void *user)
{
    (void)grid, (void)user;
    if (!strcmp(entry, "embed_k"))
        embed_seen = arg_ptr(params, 1);
}

/* The embed weight bytes a prefill of s reads (copied to out). */
static void embed_bytes(msac_session *s, void *out, size_t n)
{
    int32_t tok[2] = {1, 2};
    embed_seen = NULL;
    check(msac_session_prefill(s, 1, 2, tok, NULL));
    assert_non_null(embed_seen);
    memcpy(out, embed_seen, n);
}

static void test_weights_from(void **state)
{
    (void)state;
    set_launch_hook(see_embed, NULL);
    msac_device *dev = open_device();
    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    msac_weight_info wi;
    assert_int_equal(msac_plan_weight_info(plan, 0, &wi), 0);
    size_t n = !strcmp(wi.dtype, "bf16") ? 2 : 4;
    for (int d = 0; d < wi.ndim; d++)
        n *= (size_t)wi.dims[d];
    unsigned char *a = malloc(n), *b = malloc(n), *c = malloc(n);

    msac_session_options o;
    msac_session_options_init(&o);
    o.max_ctx = 16;
    o.seed = 7;
    msac_session *sa = NULL, *sb = NULL, *sc = NULL, *bad = NULL;
    check(msac_session_create(dev, plan, &o, &sa));
    o.seed = 0;
    o.weights_from = sa; /* overrides the seed */
    check(msac_session_create(dev, plan, &o, &sb));
    o.weights_from = NULL;
    check(msac_session_create(dev, plan, &o, &sc));
    embed_bytes(sa, a, n);
    embed_bytes(sb, b, n);
    embed_bytes(sc, c, n);
    assert_memory_equal(a, b, n);     /* copied on the device */
    assert_memory_not_equal(a, c, n); /* another seed differs, so the copy is not an accident */

    /* another device handle; another weight table */
    msac_device *dev2 = open_device();
    o.weights_from = sa;
    expect_status(msac_session_create(dev2, plan, &o, &bad), MSAC_ERR_INVALID_ARGUMENT,
                  "weights_from: that session is on another device handle");
    msac_device_close(dev2);
    char *old = p->weights[0].name;
    p->weights[0].name = strdup("renamed.weight");
    msac_plan *plan2 = fixture_load(p);
    char want[256];
    snprintf(want, sizeof want, "weights_from: weight 0 differs (renamed.weight in this plan, %s in that one", old);
    expect_status(msac_session_create(dev, plan2, &o, &bad), MSAC_ERR_INVALID_ARGUMENT, want);
    assert_null(bad);
    free(p->weights[0].name);
    p->weights[0].name = old;
    msac_plan_free(plan2);

    msac_session_destroy(sa);
    msac_session_destroy(sb);
    msac_session_destroy(sc);
    assert_int_equal(device_bytes_used(), 0);
    free(a), free(b), free(c);
    msac_plan_free(plan);
    plan_free(p);
    msac_device_close(dev);
    set_launch_hook(NULL, NULL);
}

/* msac_plan_tuned_for: the plan's tuned_for meta against the device. */
static void test_tuned_for(void **state)
{
    (void)state;
    msac_device *dev = open_device();
    msac_device_info di;
    msac_device_get_info(dev, &di);
    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    assert_int_equal(msac_plan_tuned_for(plan, dev), -1); /* no tuning */
    assert_int_equal(msac_plan_tuned_for(NULL, dev), -1);
    msac_plan_free(plan);
    char mine[192];
    snprintf(mine, sizeof mine, "%s/%d/%d", di.name, di.sm_count, di.driver_version);
    const char *values[] = {mine, "NVIDIA A100-SXM4-80GB/108/13000"};
    p->meta = realloc(p->meta, (p->nmeta + 1) * sizeof *p->meta);
    p->meta[p->nmeta].key = strdup("tuned_for");
    p->meta[p->nmeta].value = NULL;
    p->nmeta++;
    for (int i = 0; i < 2; i++) {
        free(p->meta[p->nmeta - 1].value);
        p->meta[p->nmeta - 1].value = strdup(values[i]);
        plan = fixture_load(p);
        assert_int_equal(msac_plan_tuned_for(plan, dev), i == 0 ? 1 : 0);
        msac_plan_free(plan);
    }
    plan_free(p);
    msac_device_close(dev);
}

/* A plan with a "decode@4" variant (here a copy of "decode"): calls at
 * batch >= 4 run it, smaller ones the base program. */
static void test_decode_variants(void **state)
{
    (void)state;
    msac_device *dev = open_device();
    Plan *p = fixture_plan();
    int base = -1;
    for (uint32_t i = 0; i < p->nprograms; i++)
        if (!strcmp(p->programs[i].name, "decode"))
            base = (int)i;
    assert_true(base >= 0);
    p->programs = realloc(p->programs, (p->nprograms + 1) * sizeof *p->programs);
    PlanProgram *v = &p->programs[p->nprograms], *b = &p->programs[base];
    *v = *b;
    v->name = strdup("decode@4");
    v->launch = malloc(b->nlaunch * sizeof *v->launch);
    for (uint32_t j = 0; j < b->nlaunch; j++) {
        v->launch[j] = b->launch[j];
        v->launch[j].args = malloc((b->launch[j].nargs + 1) * sizeof *v->launch[j].args);
        memcpy(v->launch[j].args, b->launch[j].args, b->launch[j].nargs * sizeof *v->launch[j].args);
    }
    p->nprograms++;
    msac_plan *plan = fixture_load(p);
    msac_session *s = fake_session(dev, plan, 6, 2048); /* 2048: the default max_seq */
    assert_string_equal(msac_session_program_for(s, "decode", 1), "decode");
    assert_string_equal(msac_session_program_for(s, "decode", 3), "decode");
    assert_string_equal(msac_session_program_for(s, "decode", 4), "decode@4");
    assert_string_equal(msac_session_program_for(s, "decode", 6), "decode@4");
    assert_string_equal(msac_session_program_for(s, "prefill", 6), "prefill");
    assert_null(msac_session_program_for(s, "decode", 7)); /* above max_batch */
    assert_null(msac_session_program_for(s, "nope", 1));
    assert_null(msac_session_program_for(NULL, "decode", 1));
    int32_t tok[6] = {1, 2, 3, 4, 5, 6};
    check(msac_session_prefill(s, 6, 1, tok, NULL));
    check(msac_session_decode(s, 6, tok, NULL)); /* runs the variant */
    check(msac_session_decode(s, 2, tok, NULL)); /* and the base */
    msac_session_destroy(s);
    msac_plan_free(plan);
    plan_free(p);
    msac_device_close(dev);
}

/* msac_session_fill_caches: the per-token cache (kv_cache, bf16 [batch, ctx,
 * 32]) gets values in [-1, 1) that differ from row to row, the same for the
 * same seed and not for another; the recurrent state (conv_state) is left
 * as the prefill wrote it; a reset zeroes the cache again. */
static void test_fill_caches(void **state)
{
    (void)state;
    enum { NKV = 2 * 16 * 32, NST = 2 * ST_FLOATS };
    msac_device *dev = open_device();
    Plan *p = fixture_plan();
    msac_plan *plan = fixture_load(p);
    msac_session *s = fake_session(dev, plan, 2, 2048); /* 2048: the default max_seq */
    expect_status(msac_session_fill_caches(NULL, 1), MSAC_ERR_INVALID_ARGUMENT, "session is NULL");
    played = (Played){0};
    set_launch_hook(play, &played);
    int32_t tok[2] = {3, 5};
    check(msac_session_prefill(s, 2, 1, tok, NULL));
    set_launch_hook(NULL, NULL);
    static float st0[NST], st1[NST], kv[NKV], kv2[NKV];
    check(msac_session_read_output(s, "conv_state", st0, NST));
    assert_true(st0[0] != 0); /* the prefill wrote it */

    check(msac_session_fill_caches(s, 7));
    check(msac_session_read_output(s, "kv_cache", kv, NKV));
    int distinct = 0;
    for (int i = 0; i < NKV; i++) {
        assert_true(kv[i] >= -1.0f && kv[i] < 1.0f);
        distinct += i == 0 || kv[i] != kv[i - 1];
    }
    assert_true(distinct > NKV * 9 / 10);
    for (int r = 1; r < 2 * 16; r++) /* no two token rows alike */
        assert_true(memcmp(&kv[r * 32], &kv[(r - 1) * 32], 32 * sizeof *kv) != 0);
    check(msac_session_read_output(s, "conv_state", st1, NST));
    assert_memory_equal(st0, st1, sizeof st0);

    check(msac_session_fill_caches(s, 7));
    check(msac_session_read_output(s, "kv_cache", kv2, NKV));
    assert_memory_equal(kv, kv2, sizeof kv);
    check(msac_session_fill_caches(s, 8));
    check(msac_session_read_output(s, "kv_cache", kv2, NKV));
    assert_true(memcmp(kv, kv2, sizeof kv) != 0);

    check(msac_session_reset(s));
    check(msac_session_read_output(s, "kv_cache", kv2, NKV));
    for (int i = 0; i < NKV; i++)
        assert_true(kv2[i] == 0);
    msac_session_destroy(s);
    msac_plan_free(plan);
    plan_free(p);
    msac_device_close(dev);
}

/* Sampling parameters of sequence r in the tests below: a mix of greedy,
 * temperatures, top-k and top-p. */
static msac_sampling fx_params(int r)
{
    msac_sampling p;
    msac_sampling_init(&p);
    p.temperature = r == 1 ? 0.0f : 0.5f + 0.75f * (float)r;
    p.top_k = r == 2 ? 3 : 0;
    p.top_p = r == 3 ? 0.8f : 1.0f;
    p.seed = 1000 + (uint64_t)r;
    p.stream = (uint64_t)r;
    return p;
}

/* msac_session_prefill_sample / _decode_sample on the fake driver, whose
 * hook plays the sampler kernel with msac_sample_cpu: the records the
 * runtime uploads (parameters, step = the position after the call) reach
 * each row, ragged rows sample their own last logits, only the tokens come
 * back; parameter errors run nothing. */
static void test_sampling(void **state)
{
    (void)state;
    msac_device *dev = open_device();
    set_launch_hook(play, &played);
    Plan *p = fixture_plan();
    msac_plan *plain = fixture_load(p);
    fixture_add_sampler(p);
    msac_plan *plan = fixture_load(p);
    msac_session *s = fake_session(dev, plan, 4, 4), *ref = fake_session(dev, plan, 1, 16);
    msac_sampling sp[4];
    for (int r = 0; r < 4; r++)
        sp[r] = fx_params(r);

    const int len[4] = {3, 0, 7, 2};
    int32_t tok[12], got[4];
    for (int i = 0; i < 12; i++)
        tok[i] = (i * 5 + 1) % VOCAB;
    played.nsample = 0;
    check(msac_session_prefill_sample(s, 4, len, tok, sp, got));
    assert_int_equal(played.nsample, 4); /* after each of the 4 internal prefill calls */
    for (int r = 0, at = 0; r < 4; at += len[r], r++) {
        if (!len[r]) {
            assert_int_equal(got[r], -1);
            continue;
        }
        float last[VOCAB];
        int32_t want;
        check(msac_session_reset(ref));
        check(msac_session_prefill_ragged(ref, 1, &len[r], tok + at, last));
        check(msac_sample_cpu(last, VOCAB, &sp[r], (uint64_t)len[r], &want));
        if (got[r] != want)
            fail_msg("prefill_sample row %d: token %d, msac_sample_cpu %d", r, got[r], want);
    }
    /* a decode step: the tokens from this step's logits at the new positions */
    const int32_t step_tok[4] = {1, 2, 3, 4};
    int32_t dgot[4];
    check(msac_session_decode_sample(s, 4, step_tok, sp, dgot));
    float lg[4 * VOCAB];
    check(msac_session_read_output(s, "logits", lg, 4 * VOCAB));
    for (int r = 0; r < 4; r++) {
        int32_t want;
        assert_int_equal(msac_session_position(s, r), len[r] + 1);
        check(msac_sample_cpu(lg + r * VOCAB, VOCAB, &sp[r], (uint64_t)(len[r] + 1), &want));
        assert_int_equal(dgot[r], want);
    }
    /* parameter errors: nothing runs, no position moves */
    played.nsample = 0;
    msac_sampling bad[4] = {sp[0], sp[1], sp[2], sp[3]};
    bad[2].temperature = -1;
    expect_status(msac_session_decode_sample(s, 4, step_tok, bad, dgot), MSAC_ERR_INVALID_ARGUMENT,
                  "decode_sample: sequence 2: sampling: temperature -1 must be a finite number >= 0 (0 = greedy)");
    bad[2] = sp[2], bad[3].top_p = 0;
    expect_status(msac_session_decode_sample(s, 4, step_tok, bad, dgot), MSAC_ERR_INVALID_ARGUMENT,
                  "decode_sample: sequence 3: sampling: top_p 0 is outside (0, 1] (1 = no top-p cut)");
    bad[3] = sp[3], bad[0].top_k = -3;
    expect_status(msac_session_prefill_sample(s, 4, len, tok, bad, got), MSAC_ERR_INVALID_ARGUMENT,
                  "prefill_sample: sequence 0: sampling: top_k -3 is negative");
    bad[0] = sp[0], bad[1].top_p = 1.5f;
    expect_status(msac_session_prefill_sample(s, 2, len, tok, bad, got), MSAC_ERR_INVALID_ARGUMENT,
                  "top_p 1.5 is outside (0, 1]");
    expect_status(msac_session_decode_sample(s, 4, step_tok, NULL, dgot), MSAC_ERR_INVALID_ARGUMENT,
                  "decode_sample: params is NULL");
    expect_status(msac_session_decode_sample(s, 4, step_tok, sp, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "decode_sample: out_tokens is NULL");
    expect_status(msac_session_decode_sample(s, 5, step_tok, sp, dgot), MSAC_ERR_INVALID_ARGUMENT,
                  "batch 5 is outside 1..4");
    assert_int_equal(played.nsample, 0);
    for (int r = 0; r < 4; r++)
        assert_int_equal(msac_session_position(s, r), len[r] + 1);
    /* a plan compiled before the sampler existed */
    msac_session *old = fake_session(dev, plain, 1, 4);
    expect_status(msac_session_decode_sample(old, 1, step_tok, sp, dgot), MSAC_ERR_UNSUPPORTED,
                  "decode_sample: the plan has no \"sample\" program (it was compiled by an msac without GPU "
                  "sampling: recompile it)");
    msac_session_destroy(old);
    msac_session_destroy(s);
    msac_session_destroy(ref);
    msac_plan_free(plan);
    msac_plan_free(plain);
    plan_free(p);
    msac_device_close(dev);
    set_launch_hook(NULL, NULL);
}

/* msac_session_generate: per-sequence stop tokens and max tokens (a
 * stopped sequence ends, the others go on), against a plain loop of
 * prefill_sample and full-batch decode_sample steps on a second session
 * (the fake decode program leaves the logits alone, so a row's tokens do
 * not depend on how many rows a step decodes); and its argument errors. */
static void test_generate(void **state)
{
    (void)state;
    msac_device *dev = open_device();
    set_launch_hook(play, &played);
    Plan *p = fixture_plan();
    fixture_add_sampler(p);
    msac_plan *plan = fixture_load(p);
    enum { B = 4, N = 6 };
    msac_session *s = fake_session(dev, plan, B, 4), *t = fake_session(dev, plan, B, 4);
    msac_sampling sp[B];
    for (int r = 0; r < B; r++)
        sp[r] = fx_params(r), sp[r].temperature = 2.5f, sp[r].top_k = 0, sp[r].top_p = 1;
    const int len[B] = {2, 3, 1, 4};
    const int32_t prompts[10] = {3, 9, 4, 4, 7, 12, 1, 2, 3, 5};
    const int32_t stop[2] = {2, 29};
    msac_generate_options go;
    msac_generate_options_init(&go);
    assert_int_equal(go.max_new_tokens, 16);
    go.max_new_tokens = N, go.stop_tokens = stop, go.num_stop = 2;
    int32_t out[B * N];
    int count[B];
    msac_generate_stats stats;
    check(msac_session_generate(s, B, len, prompts, sp, &go, out, count, &stats));
    /* the plain loop */
    int32_t want[B][N], last[B], got[B];
    int wn[B] = {0};
    bool done[B] = {false};
    check(msac_session_prefill_sample(t, B, len, prompts, sp, last));
    for (int k = 0; k < N; k++) {
        if (k)
            check(msac_session_decode_sample(t, B, last, sp, got));
        for (int r = 0; r < B; r++) {
            if (done[r])
                continue;
            want[r][wn[r]++] = last[r] = k ? got[r] : last[r];
            done[r] = last[r] == 2 || last[r] == 29;
        }
    }
    int stopped = 0, steps = 0;
    for (int r = 0; r < B; r++) {
        assert_int_equal(count[r], wn[r]);
        for (int k = 0; k < N; k++)
            assert_int_equal(out[r * N + k], k < wn[r] ? want[r][k] : -1);
        stopped += count[r] < N;
        steps = count[r] - 1 > steps ? count[r] - 1 : steps;
    }
    print_message("generate: counts %d %d %d %d, %d stopped early, %d decode steps\n", count[0], count[1], count[2],
                  count[3], stopped, stats.decode_steps);
    assert_true(stopped > 0 && stopped < B); /* the fixture's logits stop some sequences, not all */
    assert_int_equal(stats.decode_steps, steps);

    /* argument errors */
    const int empty[B] = {2, 0, 1, 4}, longp[B] = {2, 3, 1, 14};
    expect_status(msac_session_generate(s, B, len, prompts, sp, &go, out, NULL, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "generate: out_counts is NULL");
    check(msac_session_reset(s));
    expect_status(msac_session_generate(s, B, empty, prompts, sp, &go, out, count, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "generate: sequence 1 has an empty prompt (length 0)");
    expect_status(msac_session_generate(s, B, longp, prompts, sp, &go, out, count, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "generate: sequence 3 at position 0 with a prompt of 14 and 6 new tokens needs 19 positions; "
                  "max_ctx is 16");
    go.max_new_tokens = 0;
    expect_status(msac_session_generate(s, B, len, prompts, sp, &go, out, count, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "generate: max_new_tokens 0 is below 1");
    go.max_new_tokens = N;
    const int32_t badstop[1] = {VOCAB};
    go.stop_tokens = badstop, go.num_stop = 1;
    expect_status(msac_session_generate(s, B, len, prompts, sp, &go, out, count, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "generate: stop token 32 is outside the vocabulary [0, 32)");
    go.stop_tokens = NULL;
    expect_status(msac_session_generate(s, B, len, prompts, sp, &go, out, count, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "generate: stop_tokens is NULL with num_stop > 0");
    go.num_stop = 0;
    sp[1].temperature = NAN;
    expect_status(msac_session_generate(s, B, len, prompts, sp, &go, out, count, NULL), MSAC_ERR_INVALID_ARGUMENT,
                  "generate: sequence 1: sampling: temperature nan");
    for (int r = 0; r < B; r++)
        assert_int_equal(msac_session_position(s, r), 0);
    msac_session_destroy(s);
    msac_session_destroy(t);
    msac_plan_free(plan);
    plan_free(p);
    msac_device_close(dev);
    set_launch_hook(NULL, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_errors),
        cmocka_unit_test(test_session_errors),
        cmocka_unit_test(test_ragged),
        cmocka_unit_test(test_weights_from),
        cmocka_unit_test(test_tuned_for),
        cmocka_unit_test(test_decode_variants),
        cmocka_unit_test(test_fill_caches),
        cmocka_unit_test(test_sampling),
        cmocka_unit_test(test_generate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
