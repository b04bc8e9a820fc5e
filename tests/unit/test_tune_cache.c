/* test_tune_cache.c — the tuning cache file (codegen/tune_cache.h): save and
 * load round trip, put's identity, find's choice of entry, the messages for
 * each kind of bad file, failed saves, and the --show table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tune_cache.h"

/* Per test: a fresh temporary directory and a cache file path inside it. */
typedef struct Tmp {
    char dir[64];   /* mkdtemp'd directory */
    char path[128]; /* DIR/cache.json */
} Tmp;

static int setup(void **state)
{
    Tmp *t = calloc(1, sizeof *t);
    if (!t)
        return -1;
    snprintf(t->dir, sizeof t->dir, "/tmp/msac-tune-cache-XXXXXX");
    if (!mkdtemp(t->dir))
        return free(t), -1;
    snprintf(t->path, sizeof t->path, "%s/cache.json", t->dir);
    *state = t;
    return 0;
}

static int teardown(void **state)
{
    Tmp *t = *state;
    unlink(t->path);
    rmdir(t->dir);
    free(t);
    return 0;
}

static const TuneDevice h100 = {"NVIDIA H100 80GB HBM3", 132, 13000};

/* A valid entry for kernel `key` at batch x seq (prefill when seq > 1). */
static TuneEntry entry(const char *key, int batch, int seq)
{
    TuneEntry e = {.dev = h100, .batch = batch, .seq = seq, .ctx = seq > 1 ? 0 : 4096,
                   .best_us = 123.4, .default_us = 150.2, .tried = 20, .rejected = 2};
    snprintf(e.msac, sizeof e.msac, "0.1.0");
    snprintf(e.target, sizeof e.target, "sm_90a");
    snprintf(e.kernel, sizeof e.kernel, "gemm");
    snprintf(e.key, sizeof e.key, "%s", key);
    snprintf(e.desc, sizeof e.desc, "gemm_n3352_k768_bf16_128x128x64_w2x4_s3");
    snprintf(e.program, sizeof e.program, "%s", seq > 1 ? "prefill" : "decode");
    snprintf(e.schedule, sizeof e.schedule, "bm=128,bn=256,bk=64,wm=2,wn=4,stages=3");
    snprintf(e.default_schedule, sizeof e.default_schedule, "bm=128,bn=128,bk=64,wm=2,wn=4,stages=3");
    return e;
}

/* Every field of two entries equal. */
static void assert_entry_equal(const TuneEntry *x, const TuneEntry *y)
{
    assert_string_equal(x->dev.name, y->dev.name);
    assert_int_equal(x->dev.sm_count, y->dev.sm_count);
    assert_int_equal(x->dev.driver, y->dev.driver);
    assert_string_equal(x->msac, y->msac);
    assert_string_equal(x->target, y->target);
    assert_string_equal(x->kernel, y->kernel);
    assert_string_equal(x->key, y->key);
    assert_string_equal(x->desc, y->desc);
    assert_string_equal(x->program, y->program);
    assert_int_equal(x->batch, y->batch);
    assert_int_equal(x->seq, y->seq);
    assert_int_equal(x->ctx, y->ctx);
    assert_string_equal(x->schedule, y->schedule);
    assert_string_equal(x->default_schedule, y->default_schedule);
    assert_true(x->best_us == y->best_us);
    assert_true(x->default_us == y->default_us);
    assert_int_equal(x->tried, y->tried);
    assert_int_equal(x->rejected, y->rejected);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static void test_round_trip(void **state)
{
    Tmp *t = *state;
    TuneCache c = {0}, d = {0};
    TuneEntry a = entry("0123456789abcdef", 1, 2048), b = entry("fedcba9876543210", 8, 1);
    b.best_us = 0.1 + 0.2; /* needs 17 digits to read back equal */
    b.default_us = 1e-3;
    /* Every control character, quotes and backslashes, and UTF-8 in a string field. */
    char *p = b.desc;
    for (int ch = 1; ch < 0x20; ch++)
        *p++ = (char)ch;
    strcpy(p, "\"\\/ µ\x7f");
    snprintf(b.dev.name, sizeof b.dev.name, "NVIDIA A100-SXM4-80GB");
    b.dev.sm_count = 108;
    tune_cache_put(&c, &a);
    tune_cache_put(&c, &b);
    char err[256] = "";
    assert_true(tune_cache_save(t->path, &c, err, sizeof err));
    assert_true(tune_cache_load(t->path, &d, err, sizeof err));
    assert_int_equal(d.n, 2);
    assert_entry_equal(&d.e[0], &a);
    assert_entry_equal(&d.e[1], &b);
    assert_int_equal(d.e[1].ctx, 4096);
    TuneDevice devs[4];
    assert_int_equal(tune_cache_devices(&d, devs, 4), 2);
    assert_string_equal(devs[1].name, "NVIDIA A100-SXM4-80GB");
    assert_int_equal(tune_cache_devices(&d, devs, 1), 1);
    /* Saved again: the same bytes (a stable field order). */
    FILE *f = fopen(t->path, "rb");
    char first[8192], second[8192];
    size_t n1 = fread(first, 1, sizeof first, f);
    fclose(f);
    assert_true(tune_cache_save(t->path, &d, err, sizeof err));
    f = fopen(t->path, "rb");
    size_t n2 = fread(second, 1, sizeof second, f);
    fclose(f);
    assert_int_equal(n1, n2);
    assert_memory_equal(first, second, n1);
    assert_non_null(strstr(first, "\"msac_tuning_cache\": 1"));
    assert_non_null(strstr(first, "\"best_us\": 123.4, \"default_us\": 150.2"));
    tune_cache_free(&c);
    tune_cache_free(&d);
    assert_null(d.e);
    /* An empty cache saves and loads. */
    assert_true(tune_cache_save(t->path, &c, err, sizeof err));
    assert_true(tune_cache_load(t->path, &d, err, sizeof err));
    assert_int_equal(d.n, 0);
}

static void test_put(void **state)
{
    (void)state;
    TuneCache c = {0};
    TuneEntry a = entry("0123456789abcdef", 1, 2048);
    tune_cache_put(&c, &a);
    a.best_us = 99;
    snprintf(a.schedule, sizeof a.schedule, "bm=64");
    tune_cache_put(&c, &a); /* same identity: replaced */
    assert_int_equal(c.n, 1);
    assert_true(c.e[0].best_us == 99);
    assert_string_equal(c.e[0].schedule, "bm=64");
    /* Each part of the identity makes a new entry. */
    TuneEntry v[9];
    for (int i = 0; i < 9; i++)
        v[i] = a;
    v[0].dev.name[0] = 'X';
    v[1].dev.sm_count = 114;
    v[2].dev.driver = 12080;
    snprintf(v[3].msac, sizeof v[3].msac, "0.2.0");
    snprintf(v[4].target, sizeof v[4].target, "sm_80");
    snprintf(v[5].key, sizeof v[5].key, "0000000000000000");
    snprintf(v[6].program, sizeof v[6].program, "decode");
    v[7].batch = 4;
    v[8].seq = 512;
    for (int i = 0; i < 9; i++)
        tune_cache_put(&c, &v[i]);
    assert_int_equal(c.n, 10);
    TuneEntry w = a;
    w.ctx = 128;
    tune_cache_put(&c, &w);
    assert_int_equal(c.n, 11);
    /* kernel, desc, schedules, times are not identity. */
    snprintf(w.kernel, sizeof w.kernel, "gemv");
    w.tried = 7;
    tune_cache_put(&c, &w);
    assert_int_equal(c.n, 11);
    assert_string_equal(c.e[10].kernel, "gemv");
    tune_cache_free(&c);
}

static void test_find(void **state)
{
    (void)state;
    TuneCache c = {0};
    const char *k = "0123456789abcdef";
    int shapes[][2] = {{1, 64}, {1, 512}, {2, 1024}, {8, 1}};
    for (int i = 0; i < 4; i++) {
        TuneEntry e = entry(k, shapes[i][0], shapes[i][1]);
        tune_cache_put(&c, &e);
    }
    TuneEntry other = entry("1111111111111111", 1, 100000);
    tune_cache_put(&c, &other);
    /* Identity mismatches. */
    TuneDevice d = h100;
    assert_non_null(tune_cache_find(&c, &d, "0.1.0", "sm_90a", k, 512));
    d.name[0] = 'X';
    assert_null(tune_cache_find(&c, &d, "0.1.0", "sm_90a", k, 512));
    d = h100;
    d.sm_count = 114;
    assert_null(tune_cache_find(&c, &d, "0.1.0", "sm_90a", k, 512));
    d = h100;
    d.driver = 12080;
    assert_null(tune_cache_find(&c, &d, "0.1.0", "sm_90a", k, 512));
    assert_null(tune_cache_find(&c, &h100, "0.1.1", "sm_90a", k, 512));
    assert_null(tune_cache_find(&c, &h100, "0.1.0", "sm_80", k, 512));
    assert_null(tune_cache_find(&c, &h100, "0.1.0", "sm_90a", "0000000000000000", 512));
    /* Nearest class in |log2|: classes 8, 64, 512, 2048 tokens. */
    const TuneEntry *e;
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 1));
    assert_int_equal(e->batch * e->seq, 8);
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 20));
    assert_int_equal(e->batch * e->seq, 8); /* 20/8 = 2.5 < 64/20 = 3.2 */
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 24));
    assert_int_equal(e->batch * e->seq, 64); /* 24/8 = 3 > 64/24 = 2.67 */
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 181));
    assert_int_equal(e->batch * e->seq, 64); /* 181/64 < 512/181 */
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 182));
    assert_int_equal(e->batch * e->seq, 512);
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 1024));
    assert_int_equal(e->batch * e->seq, 2048); /* a tie (2x either way): the larger */
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 1 << 30));
    assert_int_equal(e->batch * e->seq, 2048);
    /* tokens <= 0: the largest. */
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 0));
    assert_int_equal(e->batch * e->seq, 2048);
    assert_non_null(e = tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, -5));
    assert_int_equal(e->batch, 2);
    tune_cache_free(&c);
    assert_null(tune_cache_find(&c, &h100, "0.1.0", "sm_90a", k, 0));
}

static void test_missing_file(void **state)
{
    Tmp *t = *state;
    TuneCache c = {0};
    char err[256] = "";
    assert_true(tune_cache_load(t->path, &c, err, sizeof err));
    assert_int_equal(c.n, 0);
    assert_null(c.e);
    assert_string_equal(err, "");
}

/* A valid entry's members, for the malformed files below to vary. */
#define GOOD_HEAD "\"gpu\": \"NVIDIA H100 80GB HBM3\", \"sm_count\": 132, \"driver\": 13000, \"msac\": \"0.1.0\", "
#define GOOD_TAIL                                                                                                     \
    "\"target\": \"sm_90a\", \"kernel\": \"gemm\", \"desc\": \"d\", \"batch\": 1, \"seq\": 2048, \"ctx\": 0, "        \
    "\"schedule\": \"bm=64\", \"default_schedule\": \"bm=128\", \"best_us\": 1.5, \"default_us\": 2, \"tried\": 3, "  \
    "\"rejected\": 0"
#define CACHE(entries) "{\"msac_tuning_cache\": 1, \"entries\": [" entries "]}"
#define ENTRY(key, program) "{" GOOD_HEAD "\"key\": " key ", \"program\": " program ", " GOOD_TAIL "}"

/* Loading `text` fails with "PATH: " + want, and leaves the cache empty. */
static void expect_error(const Tmp *t, const char *text, const char *want)
{
    write_text(t->path, text);
    TuneCache c = {0};
    char err[512], full[512];
    bool ok = tune_cache_load(t->path, &c, err, sizeof err);
    snprintf(full, sizeof full, "%s: %s", t->path, want);
    if (ok)
        fail_msg("loaded, expected: %s", full);
    assert_string_equal(err, full);
    assert_int_equal(c.n, 0);
    assert_null(c.e);
}

static void test_bad_files(void **state)
{
    const Tmp *t = *state;
    /* Sanity: the good entry loads, with an unknown member ignored. */
    write_text(t->path, CACHE(ENTRY("\"0123456789abcdef\"", "\"decode\"") ","
                              "{\"extra\": [1, {}], " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"prefill\", " GOOD_TAIL "}"));
    TuneCache c = {0};
    char err[512];
    assert_true(tune_cache_load(t->path, &c, err, sizeof err));
    assert_int_equal(c.n, 2);
    assert_string_equal(c.e[1].program, "prefill");
    tune_cache_free(&c);

    expect_error(t, "{\"msac_tuning_cache\": 1,, }", "at byte 24: expected a string");
    expect_error(t, "", "at byte 0: unexpected end of text");
    expect_error(t, "{\"msac_tuning_cache\": 2, \"entries\": []}", "not an msac tuning cache (version 2)");
    expect_error(t, "{\"entries\": []}", "not an msac tuning cache (version missing)");
    expect_error(t, "[1]", "not an msac tuning cache (version missing)");
    expect_error(t, "{\"msac_tuning_cache\": \"1\", \"entries\": []}", "not an msac tuning cache (version is a string)");
    expect_error(t, "{\"msac_tuning_cache\": 1}", "field 'entries' missing");
    expect_error(t, "{\"msac_tuning_cache\": 1, \"entries\": {}}", "field 'entries' is an object, expected an array");
    expect_error(t, CACHE("7"), "entry 0: is a number, expected an object");
    /* Missing field (the second entry: indices count from 0). */
    expect_error(t, CACHE(ENTRY("\"0123456789abcdef\"", "\"decode\"") ", {" GOOD_HEAD "\"key\": \"0123456789abcdef\", " GOOD_TAIL "}"),
                 "entry 1: field 'program' missing");
    /* Wrong types. */
    expect_error(t, CACHE(ENTRY("12", "\"decode\"")), "entry 0: field 'key' is a number, expected a string");
    expect_error(t, CACHE("{\"batch\": \"1\", " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'batch' is a string, expected an integer"); /* json_get: the first member */
    expect_error(t, CACHE("{\"seq\": 1.5, " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'seq' is 1.5, expected an integer");
    expect_error(t, CACHE("{\"best_us\": null, " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'best_us' is null, expected a number");
    /* Bad values. */
    expect_error(t, CACHE(ENTRY("\"0123456789abcdeF\"", "\"decode\"")), "entry 0: field 'key' must be 16 lowercase hex digits");
    expect_error(t, CACHE(ENTRY("\"0123456789abcde\"", "\"decode\"")), "entry 0: field 'key' must be 16 lowercase hex digits");
    expect_error(t, CACHE(ENTRY("\"0123456789abcdef0\"", "\"decode\"")), "entry 0: field 'key' too long (at most 16 bytes)");
    expect_error(t, CACHE(ENTRY("\"0123456789abcdef\"", "\"train\"")), "entry 0: field 'program' must be prefill or decode");
    expect_error(t, CACHE("{\"batch\": 0, " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'batch' must be >= 1");
    expect_error(t, CACHE("{\"ctx\": -1, " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'ctx' must be >= 0");
    expect_error(t, CACHE("{\"default_us\": -0.5, " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'default_us' must be >= 0");
    expect_error(t, CACHE("{\"best_us\": 1e999, " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'best_us' out of range");
    expect_error(t, CACHE("{\"tried\": 4294967296, " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'tried' out of range");
    expect_error(t, CACHE("{\"msac\": \"0.1.0-a-very-long-version\", " GOOD_HEAD "\"key\": \"0123456789abcdef\", \"program\": \"decode\", " GOOD_TAIL "}"),
                 "entry 0: field 'msac' too long (at most 15 bytes)");
    /* A directory is not a file. */
    TuneCache d = {0};
    assert_false(tune_cache_load(t->dir, &d, err, sizeof err));
    char want[256];
    snprintf(want, sizeof want, "cannot read %s: Is a directory", t->dir);
    assert_string_equal(err, want);
}

static void test_save_errors(void **state)
{
    Tmp *t = *state;
    TuneCache c = {0};
    TuneEntry e = entry("0123456789abcdef", 1, 2048);
    tune_cache_put(&c, &e);
    char path[256], err[512], want[512];
    snprintf(path, sizeof path, "%s/missing/x.json", t->dir);
    assert_false(tune_cache_save(path, &c, err, sizeof err));
    snprintf(want, sizeof want, "cannot create %s/missing/x.json.tmp.%ld: No such file or directory", t->dir, (long)getpid());
    assert_string_equal(err, want);
    /* An entry the loader would refuse is not written. */
    write_text(t->path, "old");
    c.e[0].default_us = -1;
    assert_false(tune_cache_save(t->path, &c, err, sizeof err));
    snprintf(want, sizeof want, "%s: entry 0: field 'default_us' must be >= 0", t->path);
    assert_string_equal(err, want);
    struct stat st;
    assert_int_equal(stat(t->path, &st), 0);
    assert_int_equal(st.st_size, 3); /* untouched */
    tune_cache_free(&c);
}

static void test_print(void **state)
{
    (void)state;
    TuneCache c = {0};
    TuneEntry a = entry("0123456789abcdef", 1, 2048), b = entry("fedcba9876543210", 8, 1);
    b.best_us = 10;
    b.default_us = 25;
    tune_cache_put(&c, &a);
    tune_cache_put(&c, &b);
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    tune_cache_print(f, &c);
    fclose(f);
    /* A header and one line per entry. */
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    assert_int_equal(lines, 3);
    assert_non_null(strstr(buf, "NVIDIA H100 80GB HBM3/132/13000"));
    assert_non_null(strstr(buf, "1x2048"));
    assert_non_null(strstr(buf, "8x1 ctx 4096"));
    assert_non_null(strstr(buf, "bm=128,bn=128,bk=64,wm=2,wn=4,stages=3 -> bm=128,bn=256,bk=64,wm=2,wn=4,stages=3"));
    assert_non_null(strstr(buf, "  150.20   123.40     1.22x            20/2\n"));
    assert_non_null(strstr(buf, "2.50x"));
    assert_non_null(strstr(buf, "gemm_n3352_k768_bf16_128x128x64_w2x4_s3"));
    free(buf);
    tune_cache_free(&c);
    buf = NULL;
    f = open_memstream(&buf, &len);
    tune_cache_print(f, &c);
    fclose(f);
    assert_string_equal(buf, "tuning cache: no entries\n");
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_round_trip, setup, teardown),
        cmocka_unit_test(test_put),
        cmocka_unit_test(test_find),
        cmocka_unit_test_setup_teardown(test_missing_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files, setup, teardown),
        cmocka_unit_test_setup_teardown(test_save_errors, setup, teardown),
        cmocka_unit_test(test_print),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
