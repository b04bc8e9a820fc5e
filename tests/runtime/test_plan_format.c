/* test_plan_format.c — the plan file: write/read round trip, atomic file
 * write, refusal of every truncation, bit flip and byte corruption, refusal
 * of semantically bad (re-checksummed) plans with specific messages, and
 * the PlanExpr evaluator and formatter. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <dirent.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "plan_fixture.h"

static void assert_expr_equal(const PlanExpr *a, const PlanExpr *b)
{
    for (int i = 0; i < PLAN_MONO; i++)
        assert_int_equal(a->c[i], b->c[i]);
    assert_int_equal(a->div, b->div);
}

static void assert_plans_equal(const Plan *a, const Plan *b)
{
    assert_string_equal(a->msac_version, b->msac_version);
    assert_string_equal(a->target, b->target);
    assert_int_equal(a->ptx_isa, b->ptx_isa);
    assert_true(a->options_hash == b->options_hash);
    assert_int_equal(a->nmeta, b->nmeta);
    for (uint32_t i = 0; i < a->nmeta; i++) {
        assert_string_equal(a->meta[i].key, b->meta[i].key);
        assert_string_equal(a->meta[i].value, b->meta[i].value);
    }
    assert_int_equal(a->nweights, b->nweights);
    for (uint32_t i = 0; i < a->nweights; i++) {
        const PlanWeight *x = &a->weights[i], *y = &b->weights[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->ndim, y->ndim);
        for (uint32_t d = 0; d < x->ndim; d++)
            assert_int_equal(x->dims[d], y->dims[d]);
        assert_int_equal(x->init, y->init);
        assert_true(x->init_a == y->init_a && x->init_b == y->init_b);
    }
    assert_int_equal(a->nbuffers, b->nbuffers);
    for (uint32_t i = 0; i < a->nbuffers; i++) {
        const PlanBuffer *x = &a->buffers[i], *y = &b->buffers[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->kind, y->kind);
        assert_int_equal(x->dtype, y->dtype);
        assert_int_equal(x->index, y->index);
        assert_expr_equal(&x->bytes, &y->bytes);
        assert_expr_equal(&x->offset, &y->offset);
    }
    assert_int_equal(a->nkernels, b->nkernels);
    for (uint32_t i = 0; i < a->nkernels; i++) {
        const PlanKernel *x = &a->kernels[i], *y = &b->kernels[i];
        assert_string_equal(x->name, y->name);
        assert_string_equal(x->entry, y->entry);
        assert_string_equal(x->ptx, y->ptx);
        assert_memory_equal(x->block, y->block, sizeof x->block);
        assert_int_equal(x->smem, y->smem);
        assert_true(x->hash == y->hash);
        assert_int_equal(x->nparams, y->nparams);
        for (uint32_t j = 0; j < x->nparams; j++) {
            assert_string_equal(x->params[j].key, y->params[j].key);
            assert_int_equal(x->params[j].value, y->params[j].value);
        }
    }
    assert_int_equal(a->nprograms, b->nprograms);
    for (uint32_t i = 0; i < a->nprograms; i++) {
        const PlanProgram *x = &a->programs[i], *y = &b->programs[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->nlaunch, y->nlaunch);
        for (uint32_t j = 0; j < x->nlaunch; j++) {
            const PlanLaunch *l = &x->launch[j], *m = &y->launch[j];
            assert_int_equal(l->kernel, m->kernel);
            for (int d = 0; d < 3; d++)
                assert_expr_equal(&l->grid[d], &m->grid[d]);
            assert_expr_equal(&l->flops, &m->flops);
            assert_expr_equal(&l->bytes, &m->bytes);
            assert_int_equal(l->nargs, m->nargs);
            for (uint32_t k = 0; k < l->nargs; k++) {
                assert_int_equal(l->args[k].kind, m->args[k].kind);
                assert_int_equal(l->args[k].buf, m->args[k].buf);
                assert_expr_equal(&l->args[k].expr, &m->args[k].expr);
                assert_true(l->args[k].f == m->args[k].f);
            }
        }
    }
    if (a->graph || b->graph) {
        assert_non_null(a->graph);
        assert_non_null(b->graph);
        assert_string_equal(a->graph, b->graph);
    }
}

static void test_roundtrip(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    Plan *q = NULL;
    char err[256];
    assert_true(plan_read(d, len, &q, err, sizeof err));
    assert_non_null(q->owned);
    assert_plans_equal(p, q);
    assert_string_equal(plan_meta(q, "vocab_size"), "32");
    assert_null(plan_meta(q, "nope"));
    /* serialising the decoded plan gives the same bytes */
    size_t len2;
    uint8_t *d2 = fixture_bytes(q, &len2);
    assert_int_equal(len, len2);
    assert_memory_equal(d, d2, len);
    free(d2);
    plan_free(q);

    /* without graph text: the GRAPH section is optional */
    free(p->graph);
    p->graph = NULL;
    free(d);
    d = fixture_bytes(p, &len);
    assert_true(plan_read(d, len, &q, err, sizeof err));
    assert_null(q->graph);
    assert_plans_equal(p, q);
    plan_free(q);
    free(d);
    plan_free(p);
    plan_free(NULL);
}

static void test_write_file(void **state)
{
    (void)state;
    char *dir = fixture_tmpdir();
    char path[4200];
    snprintf(path, sizeof path, "%s/model.msac", dir);
    Plan *p = fixture_plan();
    char err[256];
    assert_true(plan_write_file(p, path, err, sizeof err));
    /* overwrite in place: the second write replaces the first atomically */
    assert_true(plan_write_file(p, path, err, sizeof err));

    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    uint8_t buf[16384];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    Plan *q;
    assert_true(plan_read(buf, n, &q, err, sizeof err));
    assert_plans_equal(p, q);
    plan_free(q);

    /* no temporary file is left behind */
    DIR *dd = opendir(dir);
    assert_non_null(dd);
    int entries = 0;
    for (struct dirent *e; (e = readdir(dd));)
        if (e->d_name[0] != '.') {
            assert_string_equal(e->d_name, "model.msac");
            entries++;
        }
    closedir(dd);
    assert_int_equal(entries, 1);

    /* an unwritable place fails with a message naming it */
    snprintf(path, sizeof path, "%s/no/such/dir/model.msac", dir);
    assert_false(plan_write_file(p, path, err, sizeof err));
    assert_non_null(strstr(err, "no/such/dir"));
    plan_free(p);
    fixture_rmdir(dir);
}

/* The whole contents of a file (NULL if it cannot be read). */
static uint8_t *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    static uint8_t buf[1 << 16];
    *len = fread(buf, 1, sizeof buf, f);
    fclose(f);
    uint8_t *d = malloc(*len ? *len : 1);
    memcpy(d, buf, *len);
    return d;
}

/* Names in dir other than "." and ".." and `keep`: must be none. */
static void assert_only(const char *dir, const char *keep)
{
    DIR *dd = opendir(dir);
    assert_non_null(dd);
    for (struct dirent *e; (e = readdir(dd));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..") && strcmp(e->d_name, keep))
            fail_msg("unexpected file %s/%s left behind", dir, e->d_name);
    closedir(dd);
}

/* A write that fails part way (the file size limit stands in for a full
 * disk or an interrupted run), a missing directory and a rename onto a
 * directory: each reports why, leaves the existing plan byte for byte and
 * removes its temporary file. */
static void test_write_file_faults(void **state)
{
    (void)state;
    char *dir = fixture_tmpdir();
    char path[4200], err[512];
    snprintf(path, sizeof path, "%s/model.msac", dir);
    Plan *p = fixture_plan();
    assert_true(plan_write_file(p, path, err, sizeof err));
    size_t len0;
    uint8_t *before = read_all(path, &len0);
    assert_non_null(before);
    assert_true(len0 > 2048);

    /* a different plan whose write stops at 1 KiB */
    free(p->meta[0].value);
    p->meta[0].value = strdup("another model");
    struct rlimit old, lim;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    lim = old;
    lim.rlim_cur = 1024;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    bool ok = plan_write_file(p, path, err, sizeof err);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_false(ok);
    char want[8600]; /* two paths of up to 4200 bytes and the message */
    snprintf(want, sizeof want, "plan: cannot write %s.tmp.%ld: File too large", path, (long)getpid());
    assert_string_equal(err, want);
    size_t len1;
    uint8_t *after = read_all(path, &len1);
    assert_non_null(after);
    assert_int_equal(len1, len0);
    assert_memory_equal(after, before, len0);
    free(after);
    assert_only(dir, "model.msac");

    /* the directory does not exist: nothing is created */
    char missing[4200];
    snprintf(missing, sizeof missing, "%s/no/such/dir/model.msac", dir);
    assert_false(plan_write_file(p, missing, err, sizeof err));
    snprintf(want, sizeof want, "plan: cannot create %s.tmp.%ld: No such file or directory", missing, (long)getpid());
    assert_string_equal(err, want);
    assert_only(dir, "model.msac");

    /* the destination is a directory: the rename fails, the temporary goes */
    char sub[4200];
    snprintf(sub, sizeof sub, "%s/plan.d", dir);
    assert_int_equal(mkdir(sub, 0755), 0);
    assert_false(plan_write_file(p, sub, err, sizeof err));
    snprintf(want, sizeof want, "plan: cannot rename %s.tmp.%ld to %s: Is a directory", sub, (long)getpid(), sub);
    assert_string_equal(err, want);
    rmdir(sub);
    assert_only(dir, "model.msac");

    free(before);
    plan_free(p);
    fixture_rmdir(dir);
}

static void test_truncation(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    for (size_t n = 0; n < len; n++) {
        /* a separate allocation of exactly n bytes, so a read past it is
         * caught by valgrind / ASan */
        uint8_t *t = malloc(n ? n : 1);
        memcpy(t, d, n);
        Plan *q = NULL;
        char err[256] = "";
        assert_false(plan_read(t, n, &q, err, sizeof err));
        assert_true(strncmp(err, "plan: ", 6) == 0);
        if (n >= PLAN_HEADER_SIZE)
            assert_non_null(strstr(err, "truncated"));
        free(t);
    }
    char err[256];
    Plan *q = NULL;
    assert_false(plan_read(d, 40, &q, err, sizeof err));
    assert_string_equal(err, "plan: truncated: file has 40 bytes, a plan header alone is 96");
    assert_false(plan_read(d, 1000, &q, err, sizeof err));
    char want[128];
    snprintf(want, sizeof want, "plan: truncated: header says %zu payload bytes, file has 904", len - 96);
    assert_string_equal(err, want);
    free(d);
    plan_free(p);
}

static void test_header_bit_flips(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    for (size_t bit = 0; bit < PLAN_HEADER_SIZE * 8; bit++) {
        d[bit / 8] ^= (uint8_t)(1u << (bit % 8));
        Plan *q = NULL;
        char err[256] = "";
        assert_false(plan_read(d, len, &q, err, sizeof err));
        assert_true(strncmp(err, "plan: ", 6) == 0);
        d[bit / 8] ^= (uint8_t)(1u << (bit % 8));
    }
    Plan *q;
    char err[256];
    assert_true(plan_read(d, len, &q, err, sizeof err)); /* restored intact */
    plan_free(q);
    free(d);
    plan_free(p);
}

static void test_payload_corruption(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    for (size_t i = PLAN_HEADER_SIZE; i < len; i++) {
        d[i] ^= 0xff;
        Plan *q = NULL;
        char err[256] = "";
        assert_false(plan_read(d, len, &q, err, sizeof err));
        assert_string_equal(err, "plan: checksum mismatch (file corrupt)");
        d[i] ^= 0xff;
    }
    /* an extra byte after the payload */
    uint8_t *e = malloc(len + 1);
    memcpy(e, d, len);
    e[len] = 0;
    Plan *q = NULL;
    char err[256];
    assert_false(plan_read(e, len + 1, &q, err, sizeof err));
    assert_non_null(strstr(err, "1 unexpected bytes after"));
    free(e);
    free(d);
    plan_free(p);
}

/* Writes p, reads it back, expects failure with exactly `want`. */
static void expect_refused(const Plan *p, const char *want)
{
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    Plan *q = NULL;
    char err[512] = "";
    bool ok = plan_read(d, len, &q, err, sizeof err);
    if (ok)
        plan_free(q);
    free(d);
    if (ok || strcmp(err, want) != 0)
        fail_msg("expected \"%s\", got %s \"%s\"", want, ok ? "success" : "", err);
}

static void test_semantic_errors(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    PlanLaunch *dec = &p->programs[1].launch[0];

    dec->kernel = 9;
    expect_refused(p, "plan: launch 0 of program \"decode\" uses kernel 9 but the plan has 2 kernels");
    dec->kernel = 1;

    dec->args[0].buf = 77;
    expect_refused(p, "plan: argument 0 of launch 0 of program \"decode\" uses buffer 77 but the plan has 9 buffers");
    dec->args[0].buf = FX_BUF_KV;

    dec->args[2].kind = 4;
    expect_refused(p, "plan: argument 2 of launch 0 of program \"decode\" has unknown kind 4");
    dec->args[2].kind = PARG_I32;

    dec->args[2].expr.div = 0;
    expect_refused(p, "plan: argument 2 of launch 0 of program \"decode\" has divisor 0 (must be >= 1)");
    dec->args[2].expr.div = 1;

    dec->args[3].expr.div = 0; /* an f32 argument: its expression is unused, but must still be well-formed */
    expect_refused(p, "plan: argument 3 of launch 0 of program \"decode\" has divisor 0 (must be >= 1)");
    dec->args[3].expr.div = 1;

    p->buffers[FX_BUF_KV].offset.div = 0;
    expect_refused(p, "plan: buffer 8 (\"kv_cache\"): offset has divisor 0 (must be >= 1)");
    p->buffers[FX_BUF_KV].offset.div = 1;

    dec->grid[1].div = -3;
    expect_refused(p, "plan: launch 0 of program \"decode\": grid has divisor -3 (must be >= 1)");
    dec->grid[1].div = 1;

    p->weights[1].dtype = 7;
    expect_refused(p, "plan: weight \"backbone.layers.0.mixer.conv1d.weight\" has unknown dtype 7");
    p->weights[1].dtype = PDT_F32;

    p->weights[0].dims[1] = 0;
    expect_refused(p, "plan: weight \"embed.weight\": dimension 1 is 0 (must be > 0)");
    p->weights[0].dims[1] = 8;

    p->weights[0].ndim = 5;
    expect_refused(p, "plan: WEIGHTS section at byte 213: weight 0 has rank 5 (must be 1..4)");
    p->weights[0].ndim = 0;
    expect_refused(p, "plan: WEIGHTS section at byte 213: weight 0 has rank 0 (must be 1..4)");
    p->weights[0].ndim = 2;

    p->weights[0].init = PINIT_COUNT;
    expect_refused(p, "plan: weight \"embed.weight\" has unknown init kind 7");
    p->weights[0].init = PINIT_LOG_UNIFORM;
    p->weights[0].init_a = 0;
    expect_refused(p, "plan: weight \"embed.weight\": log_uniform init needs a > 0 and b > 0 (got 0, 0)");
    p->weights[0].init = PINIT_NORMAL;
    p->weights[0].init_a = 0.02f;

    p->buffers[FX_BUF_CONV].index = 2;
    expect_refused(p, "plan: buffer 1 (\"conv.weight\") refers to weight 2 but the plan has 2 weights");
    p->buffers[FX_BUF_CONV].index = 1;

    p->buffers[FX_BUF_H].kind = 5;
    expect_refused(p, "plan: buffer 6 (\"h\") has unknown kind 5");
    p->buffers[FX_BUF_H].kind = PBUF_WORKSPACE;

    p->buffers[FX_BUF_H].dtype = 3;
    expect_refused(p, "plan: buffer 6 (\"h\") has unknown dtype 3");
    p->buffers[FX_BUF_H].dtype = PDT_BF16;

    p->buffers[FX_BUF_Y].offset.div = 0;
    expect_refused(p, "plan: buffer 7 (\"y\"): offset has divisor 0 (must be >= 1)");
    p->buffers[FX_BUF_Y].offset.div = 1;

    p->kernels[1].block[2] = 0;
    expect_refused(p, "plan: kernel 1 (\"conv_c64w4\"): block 32x4x0 is invalid (each > 0, at most 1024 threads)");
    p->kernels[1].block[2] = 9; /* 32*4*9 = 1152 threads */
    expect_refused(p, "plan: kernel 1 (\"conv_c64w4\"): block 32x4x9 is invalid (each > 0, at most 1024 threads)");
    p->kernels[1].block[2] = 1;

    free(p->kernels[0].entry);
    p->kernels[0].entry = strdup("");
    expect_refused(p, "plan: kernel 0 (\"embed_k128\") has no entry point");
    free(p->kernels[0].entry);
    p->kernels[0].entry = strdup("embed_k");

    free(p->programs[1].name);
    p->programs[1].name = strdup("prefill");
    expect_refused(p, "plan: program \"prefill\" appears twice");
    free(p->programs[1].name);
    p->programs[1].name = strdup("decode");

    /* 65 arguments */
    PlanArg *many = calloc(65, sizeof *many);
    for (int i = 0; i < 65; i++)
        many[i] = (PlanArg){.kind = PARG_F32, .f = (float)i};
    PlanArg *saved = dec->args;
    uint32_t saved_n = dec->nargs;
    dec->args = many;
    dec->nargs = 65;
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    Plan *q = NULL;
    char err[512];
    assert_false(plan_read(d, len, &q, err, sizeof err));
    assert_non_null(strstr(err, "launch has 65 arguments (at most 64)"));
    free(d);
    dec->args = saved;
    dec->nargs = saved_n;
    free(many);

    /* the fixture itself is fine */
    d = fixture_bytes(p, &len);
    assert_true(plan_read(d, len, &q, err, sizeof err));
    plan_free(q);
    free(d);
    plan_free(p);
}

static void put32(uint8_t *d, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        d[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get64(const uint8_t *d)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | d[i];
    return v;
}

/* Patches 4 bytes at `at`, re-checksums, expects a message containing `want`. */
static void expect_patch_refused(const uint8_t *orig, size_t len, size_t at, uint32_t value, const char *want)
{
    uint8_t *d = malloc(len);
    memcpy(d, orig, len);
    put32(d + at, value);
    fixture_rechecksum(d, len);
    Plan *q = NULL;
    char err[512] = "";
    bool ok = plan_read(d, len, &q, err, sizeof err);
    if (ok)
        plan_free(q);
    free(d);
    if (ok || !strstr(err, want))
        fail_msg("patch at %zu: expected \"%s\", got %s \"%s\"", at, want, ok ? "success" : "", err);
}

static void test_structural_errors(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    /* Layout: header (96), META section header at 96 (tag, zero, size),
     * META body at 112: u32 count, then the first key's u32 length. */
    expect_patch_refused(d, len, 112, 0xffffffffu,
                         "plan: META section at byte 116: meta entry count 4294967295 needs at least");
    expect_patch_refused(d, len, 116, 0x7fffffffu, "string of 2147483647 bytes runs past the end of the section");
    expect_patch_refused(d, len, 96, 99, "section 0 has unknown tag 99");
    expect_patch_refused(d, len, 100, 1, "padding field is 1, expected 0");
    expect_patch_refused(d, len, 104, 0xfffffff0u, "section META says 4294967280 bytes but only");
    size_t weights_at = 112 + (size_t)get64(d + 104), buffers_at = weights_at + 16 + (size_t)get64(d + weights_at + 8);
    assert_int_equal(d[weights_at], PSEC_WEIGHTS);
    assert_int_equal(d[buffers_at], PSEC_BUFFERS);
    expect_patch_refused(d, len, buffers_at, PSEC_WEIGHTS, "section WEIGHTS appears twice");
    expect_patch_refused(d, len, 120, 0x00006d00u, "meta key: string contains a NUL byte"); /* "model" -> "m\0del" */
    expect_patch_refused(d, len, 52, 1000, "plan: header says 1000 sections but the payload has only");
    expect_patch_refused(d, len, 52, 7, "plan: section table at byte ");
    expect_patch_refused(d, len, 52, 7, ": section 6 of 7: truncated section header");
    expect_patch_refused(d, len, 52, 5, "bytes after the last of 5 sections");

    /* a section longer than its contents: grow META by 4 bytes of padding
     * by moving the rest of the file (rebuilt byte by byte) */
    uint64_t meta_size = get64(d + 104);
    uint8_t *g = malloc(len + 4);
    memcpy(g, d, 112 + meta_size);
    memset(g + 112 + meta_size, 0, 4);
    memcpy(g + 112 + meta_size + 4, d + 112 + meta_size, len - 112 - meta_size);
    put32(g + 104, (uint32_t)meta_size + 4);
    put32(g + 64, (uint32_t)(len + 4 - 96));
    fixture_rechecksum(g, len + 4);
    Plan *q = NULL;
    char err[512];
    assert_false(plan_read(g, len + 4, &q, err, sizeof err));
    assert_non_null(strstr(err, "4 unread bytes at the end of the section"));
    free(g);

    /* a required section missing: drop PROGRAMS (the last section when
     * there is no graph) */
    free(p->graph);
    p->graph = NULL;
    free(d);
    d = fixture_bytes(p, &len);
    size_t at = 96;
    for (int s = 0; s < 4; s++)
        at += 16 + (size_t)get64(d + at + 8);
    assert_int_equal(d[at], PSEC_PROGRAMS);
    put32(d + 52, 4);
    put32(d + 64, (uint32_t)(at - 96));
    fixture_rechecksum(d, at);
    assert_false(plan_read(d, at, &q, err, sizeof err));
    assert_string_equal(err, "plan: required section PROGRAMS is missing");
    free(d);
    plan_free(p);
}

static void test_header_errors(void **state)
{
    (void)state;
    Plan *p = fixture_plan();
    size_t len;
    uint8_t *d = fixture_bytes(p, &len);
    Plan *q = NULL;
    char err[512];

    d[0] = 'X';
    assert_false(plan_read(d, len, &q, err, sizeof err));
    assert_string_equal(err, "plan: not an msac plan file (bad magic)");
    assert_false(plan_read((const uint8_t *)"ELF", 3, &q, err, sizeof err));
    assert_string_equal(err, "plan: not an msac plan file (bad magic)");
    d[0] = 'M';

    char want[256];
    put32(d + 8, PLAN_FORMAT_VERSION + 1);
    fixture_rechecksum(d, len);
    assert_false(plan_read(d, len, &q, err, sizeof err));
    snprintf(want, sizeof want, "plan: format version %u is newer than this runtime reads (%u): upgrade the msac runtime",
             PLAN_FORMAT_VERSION + 1, PLAN_FORMAT_VERSION);
    assert_string_equal(err, want);
    put32(d + 8, PLAN_FORMAT_VERSION - 1);
    fixture_rechecksum(d, len);
    assert_false(plan_read(d, len, &q, err, sizeof err));
    snprintf(want, sizeof want, "plan: format version %u is no longer supported (this runtime reads %u): recompile the model",
             PLAN_FORMAT_VERSION - 1, PLAN_FORMAT_VERSION);
    assert_string_equal(err, want);
    put32(d + 8, PLAN_FORMAT_VERSION);

    put32(d + 12, 128);
    fixture_rechecksum(d, len);
    assert_false(plan_read(d, len, &q, err, sizeof err));
    assert_string_equal(err, "plan: header size is 128, expected 96");
    put32(d + 12, 96);

    memset(d + 32, 'x', 16); /* target without a terminator */
    fixture_rechecksum(d, len);
    assert_false(plan_read(d, len, &q, err, sizeof err));
    assert_string_equal(err, "plan: header: target is not a NUL-padded string");
    memset(d + 32, 0, 16);
    memcpy(d + 32, "sm_90a", 6);

    d[90] = 1;
    fixture_rechecksum(d, len);
    assert_false(plan_read(d, len, &q, err, sizeof err));
    assert_string_equal(err, "plan: header: reserved byte 90 is not zero");
    d[90] = 0;

    fixture_rechecksum(d, len);
    assert_true(plan_read(d, len, &q, err, sizeof err));
    plan_free(q);
    assert_false(plan_read(NULL, 0, &q, err, sizeof err));
    free(d);
    plan_free(p);
}

static PlanExpr E(int64_t c0, int64_t cb, int64_t cs, int64_t cc, int64_t cbs, int64_t cbc, int64_t div)
{
    return (PlanExpr){{c0, cb, cs, cc, cbs, cbc}, div};
}

static void expect_format(PlanExpr e, const char *want)
{
    char buf[256];
    int n = plan_expr_format(&e, buf, sizeof buf);
    assert_string_equal(buf, want);
    assert_int_equal(n, (int)strlen(want));
}

static void test_expr(void **state)
{
    (void)state;
    PlanExpr e = E(64, 0, 0, 0, 768, 0, 1);
    expect_format(e, "768*batch*seq+64");
    assert_int_equal(plan_expr_eval(&e, 2, 3, 100), 768 * 6 + 64);

    e = E(0, 0, 0, 0, 1, 0, 128);
    expect_format(e, "ceil(batch*seq/128)");
    assert_int_equal(plan_expr_eval(&e, 0, 0, 0), 0);
    assert_int_equal(plan_expr_eval(&e, 1, 1, 0), 1);
    assert_int_equal(plan_expr_eval(&e, 1, 128, 0), 1);
    assert_int_equal(plan_expr_eval(&e, 1, 129, 0), 2);
    assert_int_equal(plan_expr_eval(&e, 4, 64, 0), 2);

    e = E(1, 2, 3, 4, 5, 6, 1);
    expect_format(e, "6*batch*ctx+5*batch*seq+4*ctx+3*seq+2*batch+1");
    assert_int_equal(plan_expr_eval(&e, 2, 3, 5), 1 + 4 + 9 + 20 + 30 + 60);

    e = E(7, 0, -1, 0, 0, 0, 1);
    expect_format(e, "-seq+7");
    assert_int_equal(plan_expr_eval(&e, 0, 10, 0), -3);

    e = E(-5, 0, 0, 0, 0, 0, 2); /* ceil(-2.5) = -2, like sym_eval */
    expect_format(e, "ceil(-5/2)");
    assert_int_equal(plan_expr_eval(&e, 0, 0, 0), -2);

    e = E(0, 0, 0, 0, 0, 0, 1);
    expect_format(e, "0");
    e = E(0, 0, 0, 1, 0, 1, 1);
    expect_format(e, "batch*ctx+ctx");
    e = E(0, -3, 0, 0, 0, 0, 7);
    expect_format(e, "ceil(-3*batch/7)");
    assert_int_equal(plan_expr_eval(&e, 5, 0, 0), -2); /* ceil(-15/7) = ceil(-2.14) */

    /* snprintf semantics: the full length is returned when truncated */
    char small[8];
    e = E(64, 0, 0, 0, 768, 0, 1);
    assert_int_equal(plan_expr_format(&e, small, sizeof small), 16);
    assert_string_equal(small, "768*bat");

    /* checked evaluation */
    int64_t v;
    assert_true(plan_expr_eval_checked(&e, 2, 3, 0, &v));
    assert_int_equal(v, 768 * 6 + 64);
    e = E(0, 0, 0, 0, INT64_MAX / 2, 0, 1);
    assert_false(plan_expr_eval_checked(&e, 4, 4, 0, &v));
    e = E(INT64_MAX, 1, 0, 0, 0, 0, 1);
    assert_false(plan_expr_eval_checked(&e, 1, 0, 0, &v));
    assert_true(plan_expr_eval_checked(&e, 0, 0, 0, &v));
    assert_true(v == INT64_MAX);
    e = E(INT64_MAX, 0, 0, 0, 0, 0, 1000); /* no overflow in the rounding */
    assert_true(plan_expr_eval_checked(&e, 0, 0, 0, &v));
    assert_true(v == INT64_MAX / 1000 + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),          cmocka_unit_test(test_write_file),
        cmocka_unit_test(test_write_file_faults),
        cmocka_unit_test(test_truncation),         cmocka_unit_test(test_header_bit_flips),
        cmocka_unit_test(test_payload_corruption), cmocka_unit_test(test_semantic_errors),
        cmocka_unit_test(test_structural_errors),  cmocka_unit_test(test_header_errors),
        cmocka_unit_test(test_expr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
