/* cli_tune.c — `msac tune`: the autotuner.
 *
 * For a model (a plan, recompiled from the unfused graph it carries, or a
 * YAML file) on GPU 0:
 *   1. compile with lower.c's default schedules; collect the tunable
 *      kernels: each distinct kernel key (tune_space.h) of each program with
 *      a non-empty tuning space (kernels.def), and its candidates;
 *   2. run the default plan once at the tuning shape: the reference output
 *      (last-token logits of a prefill of batch × seq, or of one decode step
 *      after a short prefill) and per-launch times (msac_session_bench);
 *   3. for each tunable and each candidate: compile the model with that
 *      schedule on that key's nodes only (the other kernels come from the
 *      kernel memo), load it (a schedule whose kernel does not fit the GPU
 *      fails here), check its output against the reference (max |diff| /
 *      max |reference| <= --tol), then time it: the key's time is the sum of
 *      the median times of its launches;
 *      (sessions copy the weights from one session of the default plan on
 *      the device: generating them per candidate cost seconds on 130M);
 *   4. write the best per key into the tuning cache (after every key, so an
 *      interrupted run keeps what it measured), one progress line per key.
 * The default's output is what the GPU suite checks against the CPU
 * evaluator; candidates are checked against the default. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "compile.h"
#include "frontend.h"
#include "ir.h"
#include "kernel_memo.h"
#include "msac/runtime.h"
#include "tune_cache.h"
#include "tune_space.h"

enum { MAX_TUNABLES = 256, MAX_LAUNCHES = 8192 };

typedef struct Tunable {
    char key[17];            /* kernel key hash (tune_space.h) */
    char kernel[32];         /* template */
    char program[16];        /* "prefill" / "decode" */
    int nodes;               /* nodes of the program with this key */
    char default_sched[160]; /* lower.c's schedule */
    int ncand;               /* candidates */
    TuneCand *cand;          /* [ncand], malloc'd */
    char desc[128];          /* default kernel instance name (its first launch) */
} Tunable;

typedef struct Tuner {
    /* arguments */
    const char *input;  /* PLAN or MODEL.yaml */
    const char *cache;  /* tuning cache path */
    const char *target; /* --target for a YAML input */
    const char *only;   /* --kernel: tune only this template, or NULL */
    bool prefill, decode; /* programs to tune */
    int batch, seq;     /* prefill shape */
    int dbatch, ctx;    /* decode shape: batch (the one being tuned), position */
    int ndb;            /* decode batch sizes to tune (--decode-batch B[,B...]) */
    int dbatches[8];    /* [ndb] */
    int warmup, iters;  /* timing */
    double tol;         /* output check: max |diff| / max |ref| */
    /* the model */
    char *text;         /* YAML text or the plan's graph text */
    bool yaml;          /* which */
    char target_name[16]; /* target compiled for */
    KernelMemo *memo;   /* kernels of every compile so far */
    /* collected by the hooks */
    bool collect;       /* default compile: fill tun[] */
    int ntun;           /* tunables */
    Tunable tun[MAX_TUNABLES];
    const Tunable *apply; /* candidate compile: the key being tuned ... */
    const TuneCand *cand; /* ... and its candidate */
    int nnk;            /* entries of nk */
    struct {
        const Node *node; /* a lowered node ... */
        char key[17];     /* ... and its kernel key, taken in the tweak hook (later passes add attributes) */
    } nk[2 * MAX_LAUNCHES];
    char lkey[2][MAX_LAUNCHES][17]; /* per program (0 prefill, 1 decode), per launch: its node's key */
    int nl[2];          /* launches per program */
    /* the device */
    msac_device *dev;
    TuneDevice tdev;
    msac_session *wsrc; /* a small session of the default plan: every candidate's session copies its weights
                           on the device (msac_session_options.weights_from) instead of generating them */
} Tuner;

static int prog_index(const char *program) { return strcmp(program, "prefill") != 0; }

static void on_tweak(void *user, const char *program, Graph *g)
{
    Tuner *t = user;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        const char *kernel = node_str(n, "kernel", NULL);
        if (n->dead || !kernel)
            continue;
        char key[17];
        kernel_key_hash(n, key);
        if (t->nnk < 2 * MAX_LAUNCHES) {
            t->nk[t->nnk].node = n;
            snprintf(t->nk[t->nnk++].key, sizeof t->nk[0].key, "%s", key);
        }
        if (t->apply) {
            if (!strcmp(key, t->apply->key) && !strcmp(program, t->apply->program))
                tune_apply(g, n, t->cand);
            continue;
        }
        if (!t->collect || (t->only && strcmp(kernel, t->only)))
            continue;
        Tunable *u = NULL;
        for (int j = 0; j < t->ntun && !u; j++)
            if (!strcmp(t->tun[j].key, key) && !strcmp(t->tun[j].program, program))
                u = &t->tun[j];
        if (u) {
            u->nodes++;
            continue;
        }
        static TuneCand c[TUNE_MAX_CANDS];
        Diag d = {0};
        int k = tune_candidates(n, c, TUNE_MAX_CANDS, &d);
        if (k < 0)
            fprintf(stderr, "msac tune: %s\n", d.msg);
        if (k <= 0 || t->ntun == MAX_TUNABLES)
            continue;
        u = &t->tun[t->ntun++];
        memset(u, 0, sizeof *u);
        snprintf(u->key, sizeof u->key, "%s", key);
        snprintf(u->kernel, sizeof u->kernel, "%s", kernel);
        snprintf(u->program, sizeof u->program, "%s", program);
        u->nodes = 1;
        tune_schedule_text(n, u->default_sched, sizeof u->default_sched);
        u->cand = malloc((size_t)k * sizeof *u->cand);
        if (!u->cand)
            abort();
        memcpy(u->cand, c, (size_t)k * sizeof *c);
        u->ncand = k;
    }
}

static void on_launch(void *user, const char *program, int launch, const Node *n)
{
    Tuner *t = user;
    int p = prog_index(program);
    if (launch < MAX_LAUNCHES) {
        t->lkey[p][launch][0] = 0;
        for (int i = 0; i < t->nnk; i++)
            if (t->nk[i].node == n)
                memcpy(t->lkey[p][launch], t->nk[i].key, sizeof t->lkey[p][launch]);
        t->nl[p] = launch + 1;
    }
}

/* Compiles the model with the tuner's hooks; a loadable plan in *out. */
static bool compile_model(Tuner *t, msac_plan **out, Plan **raw, char *why, size_t wl)
{
    CompileOptions o;
    compile_options_init(&o);
    o.target = t->target_name;
    o.tweak = on_tweak;
    o.on_launch = on_launch;
    o.tweak_user = t;
    o.memo = t->memo;
    o.no_batch_classes = true; /* one decode program: the launches map to the nodes tuned */
    t->nl[0] = t->nl[1] = 0;
    t->nnk = 0;
    Diag d = {0};
    Plan *p = NULL;
    bool ok;
    if (t->yaml) {
        ok = msac_compile(t->text, t->input, &o, &p, &d);
    } else {
        Arena *a = arena_new();
        Graph *g = ir_parse(a, t->text, t->input, &d);
        ok = g && msac_compile_graph(g, &o, &p, &d);
        arena_free(a);
    }
    if (!ok) {
        snprintf(why, wl, "%s", d.msg);
        return false;
    }
    uint8_t *bytes = NULL;
    size_t len = 0;
    msac_status st = NULL;
    ok = plan_write(p, &bytes, &len) && !(st = msac_plan_load_memory(bytes, len, out));
    if (!ok)
        snprintf(why, wl, "%s", st ? msac_status_message(st) : "out of memory");
    msac_status_free(st);
    free(bytes);
    if (ok && raw)
        *raw = p;
    else
        plan_free(p);
    return ok;
}

/* One run of a plan at the tuning shape of `program`. */
typedef struct Run {
    float *logits;   /* [rows × vocab] reference/candidate output */
    size_t nlogits;  /* floats */
    float *ms;       /* [launches] median ms per launch */
    int nlaunch;     /* launches */
} Run;

static void run_free(Run *r)
{
    free(r->logits);
    free(r->ms);
    *r = (Run){0};
}

static bool fail_st(msac_status st, char *why, size_t wl)
{
    if (!st)
        return false;
    snprintf(why, wl, "%s", msac_status_message(st));
    msac_status_free(st);
    return true;
}

/* Runs `program` of plan once for its output, then times it. */
static bool run_plan(Tuner *t, const msac_plan *plan, const char *program, Run *r, char *why, size_t wl)
{
    bool pre = !strcmp(program, "prefill");
    msac_plan_info pi;
    msac_plan_get_info(plan, &pi);
    int rows = pre ? t->batch : t->dbatch;
    int prompt = pre ? t->seq : 8;
    msac_session_options so;
    msac_session_options_init(&so);
    so.max_batch = rows;
    so.max_seq = prompt;
    so.max_ctx = pre ? t->seq : (t->ctx + 1 > prompt + 1 ? t->ctx + 1 : prompt + 1);
    so.weights_from = t->wsrc;
    msac_session *s = NULL;
    if (fail_st(msac_session_create(t->dev, plan, &so, &s), why, wl))
        return false;
    *r = (Run){0};
    r->nlogits = (size_t)rows * (size_t)pi.vocab_size;
    r->nlaunch = msac_plan_program_launches(plan, program);
    r->logits = calloc(r->nlogits, sizeof *r->logits);
    r->ms = calloc((size_t)(r->nlaunch > 0 ? r->nlaunch : 1), sizeof *r->ms);
    int32_t *tok = malloc((size_t)rows * (size_t)prompt * sizeof *tok);
    int *len = malloc((size_t)rows * sizeof *len);
    if (!r->logits || !r->ms || !tok || !len)
        abort();
    cli_fill_tokens(tok, (size_t)rows * (size_t)prompt, pi.vocab_size);
    for (int i = 0; i < rows; i++)
        len[i] = prompt;
    bool ok = !fail_st(msac_session_prefill_ragged(s, rows, len, tok, pre ? r->logits : NULL), why, wl);
    if (ok && !pre)
        ok = !fail_st(msac_session_decode(s, rows, tok, r->logits), why, wl);
    float total;
    if (ok && pre)
        ok = !fail_st(msac_session_bench(s, program, rows, prompt, t->warmup, t->iters, r->ms, &total), why, wl);
    else if (ok)
        ok = !fail_st(msac_session_bench_at(s, program, rows, 1, t->ctx, t->warmup, t->iters, r->ms, &total), why, wl);
    free(tok);
    free(len);
    msac_session_destroy(s);
    if (!ok)
        run_free(r);
    return ok;
}

/* Sum of the median times (µs) of the launches of key in program. */
static double key_us(const Tuner *t, const Run *r, const char *program, const char *key)
{
    int p = prog_index(program);
    double us = 0;
    for (int j = 0; j < r->nlaunch && j < t->nl[p]; j++)
        if (!strcmp(t->lkey[p][j], key))
            us += 1e3 * r->ms[j];
    return us;
}

static double rel_err(const Run *a, const Run *ref)
{
    double m = 0, e = 0;
    for (size_t i = 0; i < ref->nlogits; i++) {
        if (!isfinite(a->logits[i]))
            return INFINITY;
        m = fmax(m, fabs(ref->logits[i]));
        e = fmax(e, fabs((double)a->logits[i] - ref->logits[i]));
    }
    return m > 0 ? e / m : e;
}

/* Hash of the PTX of the kernels the key's launches use, in order: two
 * schedules with the same signature run the same code. */
static uint64_t code_signature(const Tuner *t, const Plan *raw, const Tunable *u)
{
    int p = prog_index(u->program);
    uint64_t h = PLAN_FNV_SEED;
    for (uint32_t k = 0; k < raw->nprograms; k++) {
        const PlanProgram *pp = &raw->programs[k];
        if (strcmp(pp->name, u->program))
            continue;
        for (int j = 0; j < t->nl[p] && j < (int)pp->nlaunch; j++)
            if (!strcmp(t->lkey[p][j], u->key))
                h = plan_fnv1a(&raw->kernels[pp->launch[j].kernel].hash, sizeof(uint64_t), h);
    }
    return h;
}

static int tune_one(Tuner *t, Tunable *u, const Run *ref, uint64_t default_sig, TuneCache *cache)
{
    double def_us = key_us(t, ref, u->program, u->key);
    double best_us = def_us;
    const char *best = u->default_sched;
    int tried = 0, rejected = 0, same = 0, nseen = 1;
    double best_err = 0; /* the best candidate's output error against the default's */
    static uint64_t seen_sig[TUNE_MAX_CANDS + 1];
    seen_sig[0] = default_sig;
    char why[1024];
    for (int c = 0; c < u->ncand; c++) {
        t->apply = u;
        t->cand = &u->cand[c];
        msac_plan *plan = NULL;
        Plan *raw = NULL;
        Run r;
        bool ok = compile_model(t, &plan, &raw, why, sizeof why);
        t->apply = NULL;
        if (ok) { /* a schedule the emitter maps to code already measured is not run again */
            uint64_t sig = code_signature(t, raw, u);
            plan_free(raw);
            bool seen = false;
            for (int j = 0; j < nseen && !seen; j++)
                seen = seen_sig[j] == sig;
            if (seen) {
                msac_plan_free(plan);
                same++;
                continue;
            }
            if (nseen < TUNE_MAX_CANDS)
                seen_sig[nseen++] = sig;
            ok = run_plan(t, plan, u->program, &r, why, sizeof why);
        }
        double err = ok ? rel_err(&r, ref) : 0;
        if (ok && !(err <= t->tol)) {
            snprintf(why, sizeof why, "output differs from the default's by %.3g (tolerance %.3g)", err, t->tol);
            run_free(&r);
            ok = false;
        }
        msac_plan_free(plan);
        if (!ok) {
            rejected++;
            fprintf(stderr, "msac tune:   %s rejected: %s\n", u->cand[c].text, why);
            continue;
        }
        tried++;
        double us = key_us(t, &r, u->program, u->key);
        run_free(&r);
        if (us < best_us) {
            best_us = us;
            best = u->cand[c].text;
            best_err = err;
        }
    }
    printf("%-7s %-44s %2d node%s %3d candidates: %3d timed, %2d same code, %2d rejected; best %s: %.1f us vs "
           "default %.1f us (%.2fx), output within %.1e\n",
           u->program, u->desc, u->nodes, u->nodes == 1 ? " " : "s", u->ncand, tried + 1, same, rejected, best,
           best_us, def_us, best_us > 0 ? def_us / best_us : 1.0, best_err);
    fflush(stdout);
    TuneEntry e = {0};
    e.dev = t->tdev;
    snprintf(e.msac, sizeof e.msac, "%s", MSAC_VERSION);
    snprintf(e.target, sizeof e.target, "%s", t->target_name);
    snprintf(e.kernel, sizeof e.kernel, "%s", u->kernel);
    snprintf(e.key, sizeof e.key, "%s", u->key);
    snprintf(e.desc, sizeof e.desc, "%s", u->desc);
    snprintf(e.program, sizeof e.program, "%s", u->program);
    bool pre = !strcmp(u->program, "prefill");
    e.batch = pre ? t->batch : t->dbatch;
    e.seq = pre ? t->seq : 1;
    e.ctx = pre ? 0 : t->ctx;
    snprintf(e.schedule, sizeof e.schedule, "%s", best);
    snprintf(e.default_schedule, sizeof e.default_schedule, "%s", u->default_sched);
    e.best_us = best_us;
    e.default_us = def_us;
    e.tried = tried + 1; /* the default counts */
    e.rejected = rejected;
    tune_cache_put(cache, &e);
    char err[1024];
    if (!tune_cache_save(t->cache, cache, err, sizeof err)) {
        fprintf(stderr, "msac tune: %s\n", err);
        return 1;
    }
    return 0;
}

static const char tune_usage[] =
    "usage: msac tune PLAN|MODEL.yaml [--cache FILE] [--program prefill|decode|all] [--kernel TEMPLATE]\n"
    "                 [--batch B] [--seq S] [--decode-batch B[,B...]] [--ctx C] [--warmup N] [--iters N]\n"
    "                 [--tol X] [--target sm_90a|sm_80]\n"
    "       msac tune --show [--cache FILE]\n"
    "Tries every schedule of each kernel's tuning space (kernels.def) on GPU 0, checks each\n"
    "one's output against the default schedule's, times it (median per launch) and writes the\n"
    "fastest per kernel into the tuning cache, keyed by GPU name, SM count, driver, msac\n"
    "version, target and kernel key, with the shape it was timed at. One line per kernel.\n"
    "  --cache FILE     the cache (default: $MSAC_TUNING_CACHE, else ~/.cache/msac/tuning.json);\n"
    "                   msac compile reads the same file\n"
    "  --program P      which program's kernels (default all)\n"
    "  --kernel T       only kernels of template T (gemm, gemv, mamba2_scan, ...)\n"
    "  --batch, --seq   prefill shape (default 1 x 2048)\n"
    "  --decode-batch B[,B...]  decode batch sizes, each tuned on its own (default 1); msac\n"
    "                   compile gives a plan one decode program per tuned batch class\n"
    "  --ctx C          decode context position (default 1024)\n"
    "  --warmup, --iters      runs per timing (default 3, 10)\n"
    "  --tol X          largest accepted max|diff|/max|ref| of the logits (default 0.02)\n"
    "  --show           print the cache as a table and exit\n";

void cli_print_tuning(FILE *f, const msac_plan *plan, const msac_device *dev, bool quiet_unless_other)
{
    int t = msac_plan_tuned_for(plan, dev);
    const char *who = msac_plan_meta(plan, "tuned_for"), *nodes = msac_plan_meta(plan, "tuned_nodes");
    if (t == 0) {
        msac_device_info di;
        msac_device_get_info(dev, &di);
        fprintf(f, "note: the plan's schedules were tuned for %s, not this GPU (%s/%d/%d): run msac tune here and "
                   "recompile\n",
                who, di.name, di.sm_count, di.driver_version);
    } else if (!quiet_unless_other) {
        if (t == 1)
            fprintf(f, "schedules: tuned for this GPU (%s nodes from the tuning cache)\n", nodes ? nodes : "?");
        else
            fprintf(f, "schedules: default heuristics (no tuning cache entry was used)\n");
    }
}

/* The GPU whose tuning to use: the cache's only one, else GPU 0's entry. */
static bool pick_tuning_device(const TuneCache *c, TuneDevice *out)
{
    TuneDevice devs[16];
    int n = tune_cache_devices(c, devs, 16);
    if (n == 1) {
        *out = devs[0];
        return true;
    }
    msac_device *dev = NULL;
    msac_status st = msac_device_open(0, &dev);
    if (st) {
        msac_status_free(st);
        return false;
    }
    msac_device_info di;
    msac_device_get_info(dev, &di);
    msac_device_close(dev);
    for (int i = 0; i < n; i++)
        if (!strcmp(devs[i].name, di.name) && devs[i].sm_count == di.sm_count && devs[i].driver == di.driver_version) {
            *out = devs[i];
            return true;
        }
    return false;
}

bool cli_use_tuning(const char *who, const char *path, bool progress, TuneCache *cache, TuneDevice *tdev,
                    CompileOptions *o)
{
    char buf[1024], err[1024];
    const char *file = path ? path : cli_default_tuning_cache(buf, sizeof buf);
    if (!tune_cache_load(file, cache, err, sizeof err)) {
        fprintf(stderr, "%s: %s\n", who, err);
        return false;
    }
    if (cache->n && pick_tuning_device(cache, tdev)) {
        o->tuning = cache;
        o->tune_device = tdev;
        if (progress)
            fprintf(stderr, "msac: tuning cache %s: using its entries for %s (%d SMs, driver %d)\n", file, tdev->name,
                    tdev->sm_count, tdev->driver);
    } else if (cache->n && progress) {
        fprintf(stderr, "msac: tuning cache %s has entries for several GPUs and none for GPU 0: default schedules\n",
                file);
    } else if (path && progress) {
        fprintf(stderr, "msac: tuning cache %s is empty or missing: default schedules\n", file);
    }
    return true;
}

const char *cli_default_tuning_cache(char *buf, size_t len)
{
    const char *env = getenv("MSAC_TUNING_CACHE");
    if (env && *env)
        return env;
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(buf, len, "%s/msac/tuning.json", xdg);
    else
        snprintf(buf, len, "%s/.cache/msac/tuning.json", home && *home ? home : ".");
    return buf;
}

/* mkdir -p of path's directory (best effort; the save reports failures). */
static void make_parent(const char *path)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    for (char *p = dir + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            (void)mkdir(dir, 0777);
            *p = '/';
        }
}

static int parse_args(Tuner *t, int argc, char **argv, bool *show)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true;
        if (!strcmp(a, "--help")) {
            fputs(tune_usage, stdout);
            exit(0);
        } else if (!strcmp(a, "--show")) {
            *show = true;
            continue;
        } else if (a[0] != '-') {
            if (t->input) {
                fprintf(stderr, "msac tune: unexpected argument '%s'\n", a);
                return 2;
            }
            t->input = a;
            continue;
        } else if (!v) {
            fprintf(stderr, "msac tune: %s needs a value\n%s", a, tune_usage);
            return 2;
        } else if (!strcmp(a, "--cache"))
            t->cache = v;
        else if (!strcmp(a, "--target"))
            t->target = v;
        else if (!strcmp(a, "--kernel"))
            t->only = v;
        else if (!strcmp(a, "--program")) {
            t->prefill = !strcmp(v, "prefill") || !strcmp(v, "all");
            t->decode = !strcmp(v, "decode") || !strcmp(v, "all");
            ok = t->prefill || t->decode;
        } else if (!strcmp(a, "--batch"))
            ok = cli_parse_int(v, 1, 65536, &t->batch);
        else if (!strcmp(a, "--seq"))
            ok = cli_parse_int(v, 1, 1 << 24, &t->seq);
        else if (!strcmp(a, "--decode-batch"))
        {
            int32_t *list = NULL;
            int n = 0;
            ok = cli_parse_ints(v, &list, &n) && n >= 1 && n <= 8;
            for (int k = 0; ok && k < n; k++)
                ok = list[k] >= 1 && list[k] <= 65536;
            for (int k = 0; ok && k < n; k++)
                t->dbatches[k] = list[k];
            t->ndb = ok ? n : 0;
            free(list);
        }
        else if (!strcmp(a, "--ctx"))
            ok = cli_parse_int(v, 0, 1 << 24, &t->ctx);
        else if (!strcmp(a, "--warmup"))
            ok = cli_parse_int(v, 0, 1000, &t->warmup);
        else if (!strcmp(a, "--iters"))
            ok = cli_parse_int(v, 1, 10000, &t->iters);
        else if (!strcmp(a, "--tol")) {
            char *end;
            t->tol = strtod(v, &end);
            ok = end != v && !*end && t->tol >= 0;
        } else {
            fprintf(stderr, "msac tune: unknown option '%s'\n%s", a, tune_usage);
            return 2;
        }
        if (!ok) {
            fprintf(stderr, "msac tune: bad value '%s' for %s\n", v, a);
            return 2;
        }
        i++;
    }
    return 0;
}

/* Reads the model: a YAML file, or a plan's graph text and target. */
static bool load_model(Tuner *t)
{
    t->yaml = cli_is_yaml(t->input);
    if (t->yaml) {
        Diag d = {0};
        t->text = frontend_read_file(t->input, &d);
        if (!t->text)
            fprintf(stderr, "msac tune: %s\n", d.msg);
        snprintf(t->target_name, sizeof t->target_name, "%s", t->target ? t->target : "sm_90a");
        return t->text != NULL;
    }
    msac_plan *plan = NULL;
    msac_status st = msac_plan_load(t->input, &plan);
    if (st) {
        fprintf(stderr, "msac tune: %s\n", msac_status_message(st));
        msac_status_free(st);
        return false;
    }
    const char *g = msac_plan_graph_text(plan);
    msac_plan_info pi;
    msac_plan_get_info(plan, &pi);
    snprintf(t->target_name, sizeof t->target_name, "%s", pi.target);
    t->text = g ? strdup(g) : NULL;
    msac_plan_free(plan);
    if (!t->text)
        fprintf(stderr, "msac tune: %s carries no model graph to recompile (written by an older msac?)\n", t->input);
    return t->text != NULL;
}

int cli_tune(int argc, char **argv)
{
    static Tuner t; /* large (launch keys); one per process */
    t = (Tuner){.prefill = true, .decode = true, .batch = 1, .seq = 2048, .dbatch = 1, .ndb = 1, .dbatches = {1},
                .ctx = 1024, .warmup = 3,
                .iters = 10, .tol = 0.02};
    bool show = false;
    int rc = parse_args(&t, argc, argv, &show);
    if (rc)
        return rc;
    char pathbuf[1024];
    if (!t.cache)
        t.cache = cli_default_tuning_cache(pathbuf, sizeof pathbuf);
    TuneCache cache = {0};
    char err[1024];
    if (!tune_cache_load(t.cache, &cache, err, sizeof err)) {
        fprintf(stderr, "msac tune: %s\n", err);
        return 1;
    }
    if (show) {
        printf("tuning cache %s\n", t.cache);
        tune_cache_print(stdout, &cache);
        tune_cache_free(&cache);
        return 0;
    }
    if (!t.input) {
        fprintf(stderr, "msac tune: no PLAN or MODEL.yaml given\n%s", tune_usage);
        tune_cache_free(&cache);
        return 2;
    }
    rc = 1;
    msac_plan *plan = NULL;
    Plan *raw = NULL;
    if (!load_model(&t))
        goto out;
    msac_status st = msac_device_open(0, &t.dev);
    if (st) {
        fprintf(stderr, "msac tune: no GPU: %s\n", msac_status_message(st));
        msac_status_free(st);
        goto out;
    }
    msac_device_info di;
    msac_device_get_info(t.dev, &di);
    snprintf(t.tdev.name, sizeof t.tdev.name, "%s", di.name);
    t.tdev.sm_count = di.sm_count;
    t.tdev.driver = di.driver_version;
    t.memo = kernel_memo_new();
    make_parent(t.cache);

    t.collect = true;
    char why[1024];
    if (!compile_model(&t, &plan, &raw, why, sizeof why)) {
        fprintf(stderr, "msac tune: %s\n", why);
        goto out;
    }
    t.collect = false;
    for (int i = 0; i < t.ntun; i++) { /* the default kernel's name: the first launch of the key */
        int p = prog_index(t.tun[i].program);
        const PlanProgram *pp = NULL;
        for (uint32_t k = 0; k < raw->nprograms; k++)
            if (!strcmp(raw->programs[k].name, t.tun[i].program))
                pp = &raw->programs[k];
        for (int j = 0; pp && j < t.nl[p] && j < (int)pp->nlaunch; j++)
            if (!strcmp(t.lkey[p][j], t.tun[i].key)) {
                snprintf(t.tun[i].desc, sizeof t.tun[i].desc, "%s", raw->kernels[pp->launch[j].kernel].name);
                break;
            }
    }
    char dbs[96] = "";
    for (int k = 0; k < t.ndb; k++)
        snprintf(dbs + strlen(dbs), sizeof dbs - strlen(dbs), "%s%d", k ? "," : "", t.dbatches[k]);
    printf("msac tune: %s on %s (%d SMs, driver %d), %s; %d kernels to tune; prefill %dx%d, decode batch %s at "
           "position %d; cache %s\n",
           t.input, di.name, di.sm_count, di.driver_version, t.target_name, t.ntun, t.batch, t.seq, dbs, t.ctx,
           t.cache);
    static uint64_t default_sig[MAX_TUNABLES];
    for (int i = 0; i < t.ntun; i++)
        default_sig[i] = code_signature(&t, raw, &t.tun[i]);
    int nl_default[2] = {t.nl[0], t.nl[1]};
    static char lkey_default[2][MAX_LAUNCHES][17];
    memcpy(lkey_default, t.lkey, sizeof lkey_default);
    msac_session_options wo;
    msac_session_options_init(&wo);
    wo.max_seq = wo.max_ctx = 1;
    if (fail_st(msac_session_create(t.dev, plan, &wo, &t.wsrc), why, sizeof why)) {
        fprintf(stderr, "msac tune: %s\n", why);
        goto out;
    }
    /* prefill once, then decode once per --decode-batch size */
    Run ref = {0};
    rc = 0;
    for (int pass = 0; pass <= t.ndb && !rc; pass++) {
        int p = pass ? 1 : 0;
        const char *prog = p ? "decode" : "prefill";
        if (!(p ? t.decode : t.prefill))
            continue;
        if (p)
            t.dbatch = t.dbatches[pass - 1];
        if (!run_plan(&t, plan, prog, &ref, why, sizeof why)) {
            fprintf(stderr, "msac tune: the default %s does not run: %s\n", prog, why);
            rc = 1;
            break;
        }
        if (p && t.ndb > 1)
            printf("decode at batch %d:\n", t.dbatch);
        for (int i = 0; i < t.ntun && !rc; i++) {
            if (prog_index(t.tun[i].program) != p)
                continue;
            t.nl[0] = nl_default[0], t.nl[1] = nl_default[1];
            memcpy(t.lkey, lkey_default, sizeof lkey_default);
            rc = tune_one(&t, &t.tun[i], &ref, default_sig[i], &cache);
        }
        run_free(&ref);
    }
    if (!rc)
        printf("msac tune: wrote %s (%d entries)\n", t.cache, cache.n);
out:
    for (int i = 0; i < t.ntun; i++)
        free(t.tun[i].cand);
    msac_session_destroy(t.wsrc);
    msac_plan_free(plan);
    plan_free(raw);
    kernel_memo_free(t.memo);
    if (t.dev)
        msac_device_close(t.dev);
    free(t.text);
    tune_cache_free(&cache);
    return rc;
}
