/* test_ptxas.c — every PTX msac emits assembles with ptxas, for every target
 * and a spread of schedules: models with ragged sizes (N odd, K not a
 * multiple of the K tile, vocab not a multiple of the N tile), each GEMM
 * tile variant, each scan chunk; and every candidate of every template's
 * tuning space (kernels.def) that its emitter accepts. Exits 77 (skip) when no ptxas was found at
 * configure time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "compile.h"
#include "frontend.h"
#include "ir.h"
#include "kernel_memo.h"
#include "tune_space.h"

#ifndef PTXAS
#define PTXAS ""
#endif

typedef struct Variant {
    int bm, bn, bk, wm, wn, stages; /* gemm tile */
    int kchunk, threads;            /* mamba2 scan (SIMT) */
    int scan_stages;                /* mamba2 scan (tensor cores): staged-row buffers */
} Variant;

static const Variant variants[] = {
    {128, 128, 32, 2, 4, 3, 64, 256, 2}, /* the prefill default */
    {64, 64, 32, 2, 2, 3, 32, 128, 2},   /* the decode default */
    {128, 64, 64, 4, 1, 4, 16, 64, 1},
    {32, 128, 32, 1, 4, 2, 64, 128, 1},
};

static const char *const models[][2] = {
    {"tiny", "name: tiny\nvocab_size: 256\nd_model: 64\ntie_embeddings: false\n"
             "mamba2: {d_state: 16, headdim: 16, ngroups: 2, chunk_size: 16}\nlayers:\n  - kind: mamba2\n"},
    /* the tensor-core scan: headdim 64 with d_state 128 (the benchmark's head), 4 heads, 2 groups */
    {"tc", "name: tc\nvocab_size: 256\nd_model: 128\ntie_embeddings: false\n"
           "mamba2: {d_state: 128, headdim: 64, ngroups: 2, chunk_size: 256}\nlayers:\n  - kind: mamba2\n"},
    /* latent attention, both indexers, ragged latent and head sizes */
    {"mla", "name: mla\nvocab_size: 300\nd_model: 64\nmamba2: {d_state: 16, headdim: 16, chunk_size: 16}\n"
            "sparse_mla: {heads: 3, q_lora_rank: 24, kv_lora_rank: 40, qk_nope_head_dim: 16, qk_rope_head_dim: 8,"
            " v_head_dim: 24, rope_style: half, indexer: {kind: lightning, dim: 16, heads: 2, top_k: 7}}\n"
            "layers:\n  - kind: mamba2\n  - kind: sparse_mla\n  - kind: mla\n    heads: 2\n    kv_lora_rank: 32\n"
            "    qk_nope_head_dim: 16\n    qk_rope_head_dim: 8\n    v_head_dim: 16\n"
            "  - kind: sparse_mla\n    indexer: {kind: mamba2, dim: 16, top_k: 3, d_state: 16, headdim: 16, expand: 1}\n"
            /* rank 64: decode takes the tensor-core split kernel (mla_decode + mla_combine) */
            "  - kind: mla\n    heads: 5\n    kv_lora_rank: 64\n    qk_nope_head_dim: 16\n    qk_rope_head_dim: 16\n"
            "    v_head_dim: 16\n"},
    /* dense attention: head_dim 128 with GQA 4 and partial interleaved rope, head_dim 64 MHA, around a mamba2 layer */
    {"attn", "name: attn\nvocab_size: 300\nd_model: 128\nmamba2: {d_state: 16, headdim: 16, chunk_size: 16}\n"
             "attention: {heads: 8, kv_heads: 2, head_dim: 128, rope_dim: 64, rope_style: interleaved}\n"
             "layers:\n  - kind: attention\n  - kind: mamba2\n  - kind: attention\n    heads: 2\n    kv_heads: 2\n"
             "    head_dim: 64\n"},
    /* mamba1: d_inner 144 (not a multiple of the 32/128-channel blocks), dt_rank 70 (> 64: the dt_proj
     * row read per token), then d_state 8 and d_conv 3 */
    {"mamba1", "name: m1\nvocab_size: 300\nd_model: 48\nmamba1: {d_state: 32, d_conv: 2, dt_rank: 70, expand: 3}\n"
               "layers:\n  - kind: mamba1\n  - kind: mamba1\n    d_state: 8\n    d_conv: 3\n"},
    /* the scan-informed extras: hybrid gate; adaptive top-k alone, the window alone, both */
    {"hybrid", "name: hybrid\nvocab_size: 300\nd_model: 48\n"
               "hybrid: {heads: 2, q_lora_rank: 16, kv_lora_rank: 32, qk_nope_head_dim: 8, qk_rope_head_dim: 8,"
               " v_head_dim: 16, ssm: {d_state: 16, headdim: 16, chunk_size: 16},"
               " indexer: {kind: lightning, dim: 16, heads: 2, top_k: 5, adaptive_p: 0.7}}\n"
               "layers:\n  - kind: hybrid\n  - kind: hybrid\n    indexer: {kind: lightning, dim: 16, top_k: 6, window: 3}\n"
               "  - kind: hybrid\n    indexer: {kind: mamba2, dim: 16, top_k: 40, adaptive_p: 0.5, window: 9, d_state: 16,"
               " headdim: 16, expand: 1}\n"},
    /* d_inner 80 → 5 heads: in_proj N = 2*80 + 2*16 + 5 = 197 (odd), K = 40 (not a multiple of 32) */
    {"ragged", "name: ragged\nvocab_size: 1001\nd_model: 40\n"
               "mamba2: {d_state: 16, headdim: 16, chunk_size: 8}\nlayers:\n  - kind: mamba2\n"},
    /* mHC streams around mamba2 and mla blocks: 3 streams of a ragged width (n·D = 120) */
    {"mhc", "name: mhc\nvocab_size: 300\nd_model: 40\nmhc: {streams: 3, sinkhorn_iters: 7}\n"
            "mamba2: {d_state: 16, headdim: 16, chunk_size: 16}\nlayers:\n  - kind: mamba2\n"
            "  - kind: mla\n    heads: 2\n    kv_lora_rank: 32\n    qk_nope_head_dim: 16\n    qk_rope_head_dim: 8\n"
            "    v_head_dim: 16\n"},
    /* feed-forward kinds: swiglu with F = 56 (not a multiple of the K tile), embed_norm; moe with 5 experts
     * (sigmoid, selection bias, shared experts) and 7 (softmax, bias in the weights, k = 3) */
    {"ffn", "name: ffn\nvocab_size: 300\nd_model: 40\nembed_norm: true\nlayers:\n  - kind: swiglu\n    d_ff: 56\n"
            "  - kind: moe\n    n_experts: 5\n    n_activated: 2\n    d_ff: 24\n    n_shared: 1\n    router: sigmoid\n"
            "    router_bias: true\n  - kind: moe\n    n_experts: 7\n    n_activated: 3\n    d_ff: 16\n"
            "    router_bias: true\n    bias_in_weights: true\n    renormalize: false\n"},
    /* moe blocks inside 3 mHC streams (n·D = 120): one with a shared expert (the moe op adds the shared
     * projection), one without (no residual operand); embed_norm before the stream copies */
    {"mhc_moe", "name: mhc_moe\nvocab_size: 300\nd_model: 40\nembed_norm: true\nmhc: {streams: 3, sinkhorn_iters: 7}\n"
                "layers:\n  - kind: moe\n    n_experts: 5\n    n_activated: 2\n    d_ff: 24\n    n_shared: 1\n"
                "    router: sigmoid\n    router_bias: true\n  - kind: moe\n    n_experts: 6\n    n_activated: 2\n"
                "    d_ff: 16\n"},
    /* a hybrid block inside 3 mHC streams (n·D = 120): hybrid_mix takes the stream update (epilogue mhc) */
    {"mhc_hybrid", "name: mhc_hybrid\nvocab_size: 300\nd_model: 40\nmhc: {streams: 3, sinkhorn_iters: 7}\n"
                   "hybrid: {heads: 2, q_lora_rank: 16, kv_lora_rank: 32, qk_nope_head_dim: 8, qk_rope_head_dim: 8,"
                   " v_head_dim: 16, ssm: {d_state: 16, headdim: 16, chunk_size: 16},"
                   " indexer: {kind: lightning, dim: 16, heads: 2, top_k: 5}}\nlayers:\n  - kind: hybrid\n"},
};

static void tweak(void *user, const char *program, Graph *g)
{
    const Variant *v = user;
    (void)program;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        const char *k = node_str(n, "kernel", "");
        if (!strcmp(k, "gemm")) {
            node_set_int(g, n, "bm", v->bm);
            node_set_int(g, n, "bn", v->bn);
            node_set_int(g, n, "bk", v->bk);
            node_set_int(g, n, "wm", v->wm);
            node_set_int(g, n, "wn", v->wn);
            node_set_int(g, n, "stages", v->stages);
        } else if (!strcmp(k, "mamba2_scan")) {
            node_set_int(g, n, "kchunk", v->kchunk);
            node_set_int(g, n, "threads", v->threads);
            node_set_int(g, n, "stages", v->scan_stages);
        }
    }
}

/* (target, PTX hash) pairs ptxas already accepted: kernels a schedule
 * variant or another model does not change are assembled once. */
typedef struct Assembled {
    const char *target; /* a string literal of the callers */
    uint64_t hash;      /* PlanKernel.hash: FNV-1a of the PTX text */
} Assembled;
static Assembled assembled[4096];
static int nassembled;

static bool seen(const char *target, uint64_t hash)
{
    for (int i = 0; i < nassembled; i++)
        if (assembled[i].hash == hash && !strcmp(assembled[i].target, target))
            return true;
    return false;
}

/* ptxas runs as child processes, up to one per online CPU (at most
 * PTXAS_MAX_JOBS) at a time: it is most of this test's time, and on the
 * 2-core CI machine the suite waits for this test last. */
enum { PTXAS_MAX_JOBS = 16 };

typedef struct PtxasJob {
    pid_t pid;          /* the running ptxas */
    int dir;            /* its directory's slot in the pool */
    char path[1100];    /* its input */
    const char *target; /* -arch */
    const char *model;  /* what compiled it, for the failure message */
} PtxasJob;

/* A compile's temporary PTX directory, removed once the compile has
 * finished with it and none of its jobs runs any more. */
typedef struct PtxasDir {
    char path[32];  /* mkdtemp's; "" when the slot is free */
    int jobs;       /* its jobs still running */
    bool closed;    /* its compile has started every job it will */
} PtxasDir;

enum { PTXAS_MAX_DIRS = 8 };

/* The running ptxas processes: they assemble one compile's kernels while the
 * next compile runs LLVM (the two take similar time). */
typedef struct PtxasPool {
    int jobs;                       /* at most this many at once */
    int running;                    /* jobs started and not yet waited for */
    PtxasJob job[PTXAS_MAX_JOBS];   /* [running] */
    PtxasDir dir[PTXAS_MAX_DIRS];   /* directories in use */
} PtxasPool;

static PtxasPool pool;

static int ptxas_jobs(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > PTXAS_MAX_JOBS ? PTXAS_MAX_JOBS : (int)n;
}

/* Removes directory slot d once it is closed and idle. */
static void dir_release(PtxasPool *pl, int d)
{
    PtxasDir *x = &pl->dir[d];
    if (!x->path[0] || !x->closed || x->jobs)
        return;
    char rm[64];
    snprintf(rm, sizeof rm, "rm -rf '%s'", x->path);
    if (system(rm) != 0)
        print_message("could not remove %s\n", x->path);
    x->path[0] = 0;
}

/* Waits for any one job; a ptxas that failed fails the test, with its command. */
static void pool_wait_one(PtxasPool *pl)
{
    int status = 0;
    pid_t pid = waitpid(-1, &status, 0);
    if (pid < 0)
        fail_msg("waitpid: %s", strerror(errno));
    for (int i = 0; i < pl->running; i++) {
        if (pl->job[i].pid != pid)
            continue;
        PtxasJob j = pl->job[i];
        pl->job[i] = pl->job[--pl->running];
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("ptxas rejected %s (%s, %s): '%s' -arch=%s '%s' -o /dev/null", j.path, j.model, j.target, PTXAS,
                     j.target, j.path);
        pl->dir[j.dir].jobs--;
        dir_release(pl, j.dir);
        return;
    }
}

/* A fresh temporary directory's slot (waiting for jobs to free one). */
static int dir_open(PtxasPool *pl)
{
    for (;;) {
        for (int d = 0; d < PTXAS_MAX_DIRS; d++)
            if (!pl->dir[d].path[0]) {
                PtxasDir *x = &pl->dir[d];
                snprintf(x->path, sizeof x->path, "/tmp/msac-ptxas-XXXXXX");
                assert_non_null(mkdtemp(x->path));
                x->jobs = 0;
                x->closed = false;
                return d;
            }
        assert_true(pl->running > 0);
        pool_wait_one(pl);
    }
}

/* Marks slot d's compile done: it goes when its last job has. */
static void dir_close(PtxasPool *pl, int d)
{
    pl->dir[d].closed = true;
    dir_release(pl, d);
}

/* Waits for every job (a ptxas failure fails the test that started it). */
static void pool_drain(PtxasPool *pl)
{
    while (pl->running)
        pool_wait_one(pl);
}

/* Starts ptxas on `path` (in directory slot d) once fewer than pl->jobs run. */
static void pool_start(PtxasPool *pl, int d, const char *path, const char *target, const char *model)
{
    while (pl->running >= pl->jobs)
        pool_wait_one(pl);
    char arch[32];
    snprintf(arch, sizeof arch, "-arch=%s", target);
    pid_t pid = fork();
    if (pid < 0)
        fail_msg("fork: %s", strerror(errno));
    if (pid == 0) {
        execl(PTXAS, PTXAS, arch, path, "-o", "/dev/null", (char *)NULL);
        _exit(127);
    }
    PtxasJob *j = &pl->job[pl->running++];
    j->pid = pid;
    j->dir = d;
    pl->dir[d].jobs++;
    snprintf(j->path, sizeof j->path, "%s", path);
    j->target = target;
    j->model = model;
}

/* MSAC_PTXAS_SANITIZER=1 (tools/test's ASan stage, which must stay within
 * the CI's time): compile and emit the kernels without running ptxas (the
 * normal build's run assembles them), and leave out schedule_variants
 * (shipped_models and tuning_space still run every emitter under ASan);
 * for sm_80 only the shipped models marked `sm80_sanitized` (mamba2,
 * mamba1, attention, dense and sparse MLA with the indexer, SwiGLU, mHC;
 * the moe and hybrid kinds reach sm_80's emitters in the normal build
 * only), since each big model costs ~10 s there. */
static bool emit_only;

/* Compiles `yaml` for `target`, writes the PTX to a temp dir, runs ptxas on
 * each file whose text it has not assembled before; returns the number of
 * kernels checked. */
static int check_with(const char *name, const char *yaml, const char *target, void (*tw)(void *, const char *, Graph *),
                      void *user, bool may_refuse)
{
    int slot = dir_open(&pool);
    const char *dir = pool.dir[slot].path;
    CompileOptions o;
    compile_options_init(&o);
    o.target = target;
    o.emit_ptx_dir = dir;
    o.tweak = tw;
    o.tweak_user = user;
    static KernelMemo *memo; /* kernels of earlier compiles: only new ones run through LLVM */
    if (!memo)
        memo = kernel_memo_new();
    o.memo = memo;
    Plan *p = NULL;
    Diag d = {0};
    if (!msac_compile(yaml, name, &o, &p, &d)) {
        dir_close(&pool, slot);
        if (may_refuse)
            return -1;
        fail_msg("%s for %s: %s", name, target, d.msg);
    }
    for (uint32_t g = 0; g < p->nprograms; g++) /* the cost model is defined (msac bench refuses a negative one) */
        for (uint32_t i = 0; i < p->programs[g].nlaunch; i++) {
            const PlanLaunch *l = &p->programs[g].launch[i];
            int64_t f = -1, by = -1;
            if (!plan_expr_eval_checked(&l->flops, 3, 5, 9, &f) || !plan_expr_eval_checked(&l->bytes, 3, 5, 9, &by) ||
                f < 0 || by < 0)
                fail_msg("%s (%s): %s launch %u (kernel %s): cost model flops %lld, bytes %lld at batch 3, seq 5", name,
                         target, p->programs[g].name, i, p->kernels[l->kernel].name, (long long)f, (long long)by);
        }
    int n = (int)p->nkernels;
    for (uint32_t i = 0; i < p->nkernels && !emit_only; i++) {
        if (seen(target, p->kernels[i].hash))
            continue;
        char path[1100];
        snprintf(path, sizeof path, "%s/%s.ptx", dir, p->kernels[i].name);
        pool_start(&pool, slot, path, target, name);
        if (nassembled < (int)(sizeof assembled / sizeof assembled[0]))
            assembled[nassembled++] = (Assembled){target, p->kernels[i].hash};
    }
    plan_free(p);
    dir_close(&pool, slot); /* its jobs go on while the caller compiles the next */
    return n;
}

static int check(const char *name, const char *yaml, const char *target, const Variant *v)
{
    return check_with(name, yaml, target, v ? tweak : NULL, (void *)v, false);
}

/* Candidate `index` of template `kernel` on each node lowered to it. */
typedef struct SpacePick {
    const char *kernel; /* template */
    int index;          /* candidate */
    int count;          /* out: candidates of the last node seen (0: none applies) */
} SpacePick;

static void space_tweak(void *user, const char *program, Graph *g)
{
    SpacePick *sp = user;
    (void)program;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (strcmp(node_str(n, "kernel", ""), sp->kernel))
            continue;
        static TuneCand c[TUNE_MAX_CANDS];
        Diag d = {0};
        int k = tune_candidates(n, c, TUNE_MAX_CANDS, &d);
        if (k < 0)
            fail_msg("%s", d.msg);
        if (k > sp->count)
            sp->count = k;
        if (k > 0)
            tune_apply(g, n, &c[sp->index % k]);
    }
}

/* The YAML of test model `name` (models[] above). */
static const char *model_yaml(const char *name)
{
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++)
        if (!strcmp(models[i][0], name))
            return models[i][1];
    fail_msg("no test model '%s'", name);
    return NULL;
}

/* Which templates' tuning spaces are assembled on which test model: each
 * template once, on a model that has it. */
static const struct SpaceRun {
    const char *model;          /* models[] name */
    const char *kernels[10];    /* templates, NULL-terminated */
} space_runs[] = {
    {"tiny", {"embed", "rmsnorm", "gemm", "gemv", "mamba2_scan", "mamba2_step", NULL}},
    {"tc", {"mamba2_scan", NULL}}, /* tiny's heads are too small for the tensor-core scan */
    {"mla", {"mla_attn", "mla_absorb", "index_topk", NULL}},
    {"mamba1", {"mamba1_conv", "mamba1_scan", NULL}},
    {"mhc", {"mhc", NULL}},
    {"attn", {"attn", NULL}},
    {"ffn", {"moe", NULL}},
    {"mhc_moe", {"embed", "moe", NULL}},
};

static void tuning_space(void **state)
{
    (void)state;
    for (size_t r = 0; r < sizeof space_runs / sizeof space_runs[0]; r++)
        for (const char *const *k = space_runs[r].kernels; *k; k++) {
            const char *name = space_runs[r].model, *yaml = model_yaml(name);
            int ok = 0, refused = 0;
            SpacePick sp = {*k, 0, 0};
            do {
                if (check_with(name, yaml, "sm_90a", space_tweak, &sp, true) < 0)
                    refused++;
                else
                    ok++;
            } while (++sp.index < sp.count);
            if (!sp.count)
                fail_msg("test model %s has no %s node", name, *k);
            print_message("sm_90a %s %s: %d candidates assemble, %d refused by the emitter\n", name, *k, ok,
                          refused);
            assert_true(ok > 0); /* the space holds at least one valid schedule */
        }
    pool_drain(&pool);
}

static void shipped_models(void **state)
{
    (void)state;
    const char *targets[] = {"sm_80", "sm_90a"};
    const char *shipped[] = {"tiny-mamba2.yaml", "mamba2-130m.yaml", "mamba-mla-decoder.yaml", "sparse-mamba-lm.yaml",
                             "mamba-130m.yaml", "scan-informed-hybrid.yaml",
                             "hybrid-mamba-attention.yaml", "mamba-moe-decoder.yaml",
                             "sparse-mamba-transformer.yaml"};
    /* under the sanitizer, sm_80 compiles these (see emit_only) */
    const bool sm80_sanitized[] = {true, false, true, false, true, false, true, false, true};
    _Static_assert(sizeof sm80_sanitized / sizeof sm80_sanitized[0] == sizeof shipped / sizeof shipped[0],
                   "one flag per shipped model");
    for (int t = 0; t < 2; t++)
        for (size_t m = 0; m < sizeof shipped / sizeof shipped[0]; m++) {
            if (emit_only && t == 0 && !sm80_sanitized[m])
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", MODELS_DIR, shipped[m]);
            Diag d = {0};
            char *text = frontend_read_file(path, &d);
            assert_non_null(text);
            int n = check(path, text, targets[t], NULL);
            print_message("%s %s: %d kernels assemble\n", targets[t], path, n);
            free(text);
        }
    pool_drain(&pool);
}

static void schedule_variants(void **state)
{
    (void)state;
    const char *targets[] = {"sm_80", "sm_90a"};
    for (int t = 0; t < 2; t++)
        for (size_t m = 0; m < sizeof models / sizeof models[0]; m++)
            for (size_t v = 0; v < sizeof variants / sizeof variants[0]; v++) {
                int n = check(models[m][0], models[m][1], targets[t], &variants[v]);
                print_message("%s %s variant %zu: %d kernels assemble\n", targets[t], models[m][0], v, n);
            }
    pool_drain(&pool);
}

int main(void)
{
    if (!PTXAS[0] || access(PTXAS, X_OK)) {
        fprintf(stderr, "no ptxas found at configure time: skipping\n");
        return 77;
    }
    pool.jobs = ptxas_jobs();
    const char *sz = getenv("MSAC_PTXAS_SANITIZER");
    emit_only = sz && !strcmp(sz, "1");
    if (emit_only) {
        fprintf(stderr, "MSAC_PTXAS_SANITIZER=1: kernels emitted, not assembled; no schedule variants\n");
        const struct CMUnitTest quick[] = {cmocka_unit_test(shipped_models), cmocka_unit_test(tuning_space)};
        return cmocka_run_group_tests(quick, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(shipped_models), cmocka_unit_test(schedule_variants),
                                       cmocka_unit_test(tuning_space)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
