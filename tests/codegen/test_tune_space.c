/* test_tune_space.c — the tuning spaces of kernels.def on real lowered
 * nodes (the tiny MLA model of test_ptxas, compiled through the tweak hook):
 * candidate counts and texts, which axes apply, kernel keys (equal across
 * layers, blind to the schedule only when asked), and that emit_plan emits
 * each distinct kernel key once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "ir.h"
#include "tune_cache.h"
#include "tune_space.h"

static const char *yaml =
    "name: t\nvocab_size: 300\nd_model: 64\nmamba2: {d_state: 16, headdim: 16, chunk_size: 16}\n"
    "layers:\n  - kind: mamba2\n  - kind: mamba2\n  - kind: mla\n    heads: 5\n    kv_lora_rank: 64\n"
    "    qk_nope_head_dim: 16\n    qk_rope_head_dim: 16\n    v_head_dim: 16\n  - kind: attention\n    heads: 1\n";

typedef struct Seen {
    int gemm, scan, step, mla_prefill, mla_decode, gemv; /* candidates of the first node of each */
    int attn_prefill, attn_decode;                       /* ... and of the attention */
    char gemm_first[160], gemm_last[160];                /* their texts */
    char scan_keys[2][512];                              /* kernel keys of the two scans (with schedule) */
    int nscan;                                           /* scans seen */
    bool key_blind_ok;                                   /* a schedule change keeps the key without it */
} Seen;

static int cands(Node *n, TuneCand *c)
{
    Diag d = {0};
    int k = tune_candidates(n, c, TUNE_MAX_CANDS, &d);
    if (k < 0)
        fail_msg("%s", d.msg);
    return k;
}

static void look(void *user, const char *program, Graph *g)
{
    Seen *s = user;
    static TuneCand c[TUNE_MAX_CANDS];
    bool pre = !strcmp(program, "prefill");
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        const char *k = node_str(n, "kernel", "");
        if (!strcmp(k, "gemm") && !s->gemm) {
            s->gemm = cands(n, c);
            strcpy(s->gemm_first, c[0].text);
            strcpy(s->gemm_last, c[s->gemm - 1].text);
            char *a = kernel_key(n, true), *full = kernel_key(n, false);
            char h1[17], h2[17];
            kernel_key_hash(n, h1);
            tune_apply(g, n, &c[s->gemm - 1]);
            char *b = kernel_key(n, true), *full2 = kernel_key(n, false);
            kernel_key_hash(n, h2);
            s->key_blind_ok = !strcmp(a, b) && strcmp(full, full2) && !strcmp(h1, h2) && strlen(h1) == 16;
            free(a), free(b), free(full), free(full2);
        } else if (!strcmp(k, "mamba2_scan")) {
            s->scan = cands(n, c);
            if (s->nscan < 2) {
                char *key = kernel_key(n, false);
                snprintf(s->scan_keys[s->nscan++], sizeof s->scan_keys[0], "%s", key);
                free(key);
            }
        } else if (!strcmp(k, "mamba2_step")) {
            s->step = cands(n, c);
        } else if (!strcmp(k, "gemv")) {
            s->gemv = cands(n, c);
        } else if (!strcmp(k, "mla_attn")) {
            if (pre)
                s->mla_prefill = cands(n, c);
            else
                s->mla_decode = cands(n, c);
        } else if (!strcmp(k, "attn")) {
            if (pre)
                s->attn_prefill = cands(n, c);
            else
                s->attn_decode = cands(n, c);
        } else if (!strcmp(k, "slice") || !strcmp(k, "rope")) {
            assert_int_equal(cands(n, c), 0); /* nothing to tune */
        }
    }
}

static void spaces_on_nodes(void **state)
{
    (void)state;
    Seen s = {0};
    CompileOptions o;
    compile_options_init(&o);
    o.tweak = look;
    o.tweak_user = &s;
    Plan *p = NULL;
    Diag d = {0};
    if (!msac_compile(yaml, "t.yaml", &o, &p, &d))
        fail_msg("%s", d.msg);
    assert_int_equal(s.gemm, 6 * 2 * 2); /* tiles × bk × stages */
    assert_string_equal(s.gemm_first, "bm=128,bn=128,wm=2,wn=4,bk=32,stages=3");
    assert_string_equal(s.gemm_last, "bm=64,bn=64,wm=2,wn=2,bk=64,stages=4");
    assert_true(s.key_blind_ok);
    assert_int_equal(s.scan, 7 * 2); /* (tc with segs 0, 1, 2, 4, 8; SIMT with kchunk 32, 64) × stages 2, 1 */
    assert_int_equal(s.step, 4);
    assert_int_equal(s.gemv, 7);
    assert_int_equal(s.mla_prefill, 3);     /* warps only: prefill has no splits */
    assert_int_equal(s.mla_decode, 3 * 5);  /* warps × splits (0 = auto, 2, 4, 8, 16) */
    assert_int_equal(s.attn_prefill, 3 * 3); /* warps × bn */
    assert_int_equal(s.attn_decode, 6);      /* splits (0 = auto, 1, 2, 4, 8, 16) */
    assert_int_equal(s.nscan, 2);
    assert_string_equal(s.scan_keys[0], s.scan_keys[1]); /* two layers, one kernel */
    /* ...so the plan has one scan kernel for both layers (emitted once) */
    int scans = 0;
    for (uint32_t i = 0; i < p->nkernels; i++)
        scans += !strncmp(p->kernels[i].name, "mamba2_scan", 11);
    assert_int_equal(scans, 1);
    plan_free(p);
}

/* The kernel key hash of the first node of `kernel` in `program`. */
typedef struct FirstKey {
    const char *program, *kernel; /* what to look for */
    char key[17];                 /* out: its kernel_key_hash, "" if none */
} FirstKey;

static void first_key_tweak(void *user, const char *program, Graph *g)
{
    FirstKey *fk = user;
    for (int i = 0; i < g->nnodes && !fk->key[0]; i++)
        if (!strcmp(program, fk->program) && !strcmp(node_str(g->nodes[i], "kernel", ""), fk->kernel))
            kernel_key_hash(g->nodes[i], fk->key);
}

static void first_key(FirstKey *fk)
{
    CompileOptions o;
    compile_options_init(&o);
    o.tweak = first_key_tweak;
    o.tweak_user = fk;
    Plan *p = NULL;
    Diag d = {0};
    if (!msac_compile(yaml, "t.yaml", &o, &p, &d))
        fail_msg("%s", d.msg);
    plan_free(p);
    assert_int_equal(strlen(fk->key), 16);
}

/* Compiles with cache c for device dev; returns how many gemm kernels of the
 * plan have bm=64 and the plan's tuned_nodes meta (or -1). */
static int compile_tuned(const TuneCache *c, const TuneDevice *dev, int *tuned)
{
    CompileOptions o;
    compile_options_init(&o);
    o.tuning = c;
    o.tune_device = dev;
    Plan *p = NULL;
    Diag d = {0};
    if (!msac_compile(yaml, "t.yaml", &o, &p, &d))
        fail_msg("%s", d.msg);
    int n = 0;
    for (uint32_t i = 0; i < p->nkernels; i++)
        for (uint32_t j = 0; j < p->kernels[i].nparams; j++)
            n += !strncmp(p->kernels[i].name, "gemm", 4) && !strcmp(p->kernels[i].params[j].key, "bm") &&
                 p->kernels[i].params[j].value == 64;
    const char *t = plan_meta(p, "tuned_nodes");
    *tuned = t ? atoi(t) : -1;
    plan_free(p);
    return n;
}

static void compile_uses_cache(void **state)
{
    (void)state;
    FirstKey fk = {"prefill", "gemm", ""};
    first_key(&fk);
    const char *key = fk.key;

    TuneDevice h100 = {"NVIDIA H100 80GB HBM3", 132, 13000}, other = {"NVIDIA A100-SXM4-80GB", 108, 13000};
    TuneEntry e = {.dev = h100, .msac = MSAC_VERSION, .target = "sm_90a", .kernel = "gemm", .program = "prefill",
                   .batch = 1, .seq = 2048, .schedule = "bm=64,bn=64,wm=2,wn=2,bk=64,stages=4",
                   .default_schedule = "bm=128,bn=128,wm=2,wn=4,bk=64,stages=3", .best_us = 1, .default_us = 2,
                   .tried = 2};
    snprintf(e.key, sizeof e.key, "%s", key);
    snprintf(e.desc, sizeof e.desc, "gemm");
    TuneCache c = {0};
    tune_cache_put(&c, &e);
    int tuned;
    assert_int_equal(compile_tuned(&c, &h100, &tuned), 1); /* that node's kernel took the cached tile */
    assert_true(tuned >= 1);
    assert_int_equal(compile_tuned(&c, &other, &tuned), 0); /* another GPU: the heuristic */
    assert_int_equal(tuned, 0);
    snprintf(c.e[0].msac, sizeof c.e[0].msac, "0.0.0"); /* another msac version: the heuristic */
    assert_int_equal(compile_tuned(&c, &h100, &tuned), 0);
    snprintf(c.e[0].msac, sizeof c.e[0].msac, "%s", MSAC_VERSION);
    snprintf(c.e[0].schedule, sizeof c.e[0].schedule, "bm=64,eps=3"); /* not a schedule key: ignored */
    assert_int_equal(compile_tuned(&c, &h100, &tuned), 0);
    assert_int_equal(tuned, 0);
    tune_cache_free(&c);
}

static const PlanProgram *program(const Plan *p, const char *name)
{
    for (uint32_t i = 0; i < p->nprograms; i++)
        if (!strcmp(p->programs[i].name, name))
            return &p->programs[i];
    return NULL;
}

/* Decode entries at batch 1 and 64: the plan gets "decode" (batch-1
 * schedules) and "decode@8" (batch-64 schedules, from batch 8 = sqrt(64)
 * on), with the same launches over different kernels. */
static void decode_variants(void **state)
{
    (void)state;
    FirstKey fk = {"decode", "gemv", ""};
    first_key(&fk);
    const char *key = fk.key;

    TuneDevice h100 = {"NVIDIA H100 80GB HBM3", 132, 13000};
    TuneEntry e = {.dev = h100, .msac = MSAC_VERSION, .target = "sm_90a", .kernel = "gemv", .program = "decode",
                   .batch = 1, .seq = 1, .ctx = 1024, .schedule = "wn=1,wk=4", .default_schedule = "wn=2,wk=2",
                   .best_us = 1, .default_us = 2, .tried = 7};
    snprintf(e.key, sizeof e.key, "%s", key);
    snprintf(e.desc, sizeof e.desc, "gemv");
    TuneCache c = {0};
    tune_cache_put(&c, &e);
    e.batch = 64;
    snprintf(e.schedule, sizeof e.schedule, "wn=4,wk=1");
    tune_cache_put(&c, &e);
    CompileOptions o;
    Plan *p = NULL;
    Diag d = {0};
    compile_options_init(&o);
    o.tuning = &c;
    o.tune_device = &h100;
    if (!msac_compile(yaml, "t.yaml", &o, &p, &d))
        fail_msg("%s", d.msg);
    const PlanProgram *base = program(p, "decode"), *var = program(p, "decode@8");
    assert_non_null(base);
    assert_non_null(var);
    assert_non_null(program(p, "sample"));
    assert_int_equal(p->nprograms, 4); /* prefill, decode, sample, decode@8 */
    assert_int_equal(base->nlaunch, var->nlaunch);
    int differ = 0;
    for (uint32_t j = 0; j < base->nlaunch; j++)
        if (base->launch[j].kernel != var->launch[j].kernel) {
            differ++;
            const PlanKernel *kb = &p->kernels[base->launch[j].kernel], *kv = &p->kernels[var->launch[j].kernel];
            assert_non_null(strstr(kb->name, "_w1x4"));
            assert_non_null(strstr(kv->name, "_w4x1"));
        }
    assert_true(differ >= 1);
    plan_free(p);
    tune_cache_free(&c);
}

/* The warps (wn · wk) and wn of a gemv kernel named "..._w<wn>x<wk>...". */
static void gemv_warps(const char *name, int *wn, int *warps)
{
    const char *w = strstr(name, "_w");
    int k = 0;
    assert_non_null(w);
    assert_int_equal(sscanf(w, "_w%dx%d", wn, &k), 2);
    *warps = *wn * k;
}

/* No tuning cache: "decode" with lower.c's schedules and "decode@33" (from
 * batch 33 on) whose gemvs are lowered for many rows (passes.h): the same
 * launches, every other kernel shared, each gemv at 8 warps and at least
 * as wide as the base's, some wider. no_batch_classes: "decode" alone. */
static void default_decode_classes(void **state)
{
    (void)state;
    /* a vocabulary of 4096: the LM head gets 8 n8 tiles for many rows, 1 × 4 warps for a few */
    static const char *const wide_yaml = "name: w\nvocab_size: 4096\nd_model: 64\n"
                                         "mamba2: {d_state: 16, headdim: 16, chunk_size: 16}\nlayers:\n  - kind: mamba2\n";
    CompileOptions o;
    compile_options_init(&o);
    Plan *p = NULL;
    Diag d = {0};
    if (!msac_compile(yaml, "t.yaml", &o, &p, &d)) /* its gemvs are 8 warps of one n8 tile either way */
        fail_msg("%s", d.msg);
    assert_null(program(p, "decode@33")); /* no kernel would differ: left out */
    plan_free(p);
    if (!msac_compile(wide_yaml, "w.yaml", &o, &p, &d))
        fail_msg("%s", d.msg);
    const PlanProgram *base = program(p, "decode"), *var = program(p, "decode@33");
    assert_non_null(base);
    assert_non_null(var);
    assert_int_equal(p->nprograms, 4);
    assert_int_equal(base->nlaunch, var->nlaunch);
    int gemvs = 0, wider = 0;
    for (uint32_t j = 0; j < base->nlaunch; j++) {
        const PlanKernel *kb = &p->kernels[base->launch[j].kernel], *kv = &p->kernels[var->launch[j].kernel];
        if (strncmp(kb->name, "gemv", 4)) {
            assert_int_equal(base->launch[j].kernel, var->launch[j].kernel);
            continue;
        }
        int bwn, bwarps, vwn, vwarps;
        gemv_warps(kb->name, &bwn, &bwarps);
        gemv_warps(kv->name, &vwn, &vwarps);
        assert_int_equal(vwarps, 8);
        assert_true(vwn >= bwn);
        gemvs++;
        wider += vwn > bwn;
    }
    assert_true(gemvs >= 3); /* in_proj, out_proj, the LM head */
    assert_true(wider >= 1);
    plan_free(p);
    o.no_batch_classes = true;
    if (!msac_compile(wide_yaml, "w.yaml", &o, &p, &d))
        fail_msg("%s", d.msg);
    assert_int_equal(p->nprograms, 3);
    assert_null(program(p, "decode@33"));
    plan_free(p);
}

static void schedule_keys(void **state)
{
    (void)state;
    assert_true(tune_space_has_key("gemm", "bm"));
    assert_true(tune_space_has_key("gemm", "stages"));
    assert_false(tune_space_has_key("gemm", "eps"));
    assert_true(tune_space_has_key("mla_attn", "splits"));
    assert_false(tune_space_has_key("rope", "dim"));
    assert_false(tune_space_has_key("no_such_template", "bm"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(spaces_on_nodes), cmocka_unit_test(schedule_keys),
                                       cmocka_unit_test(compile_uses_cache),
                                       cmocka_unit_test(decode_variants), cmocka_unit_test(default_decode_classes)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
