/* cli_run.c — `msac run PLAN`: greedy generation on the GPU (runtime) or on
 * the CPU reference (the plan's embedded graph through ir/eval), with the
 * same weights either way. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "eval.h"
#include "ir.h"
#include "msac/runtime.h"

enum { MAX_PROMPTS = 64 };

typedef struct Run {
    msac_plan *plan;          /* the plan */
    msac_weights *weights;    /* checkpoint or NULL (seeded init) */
    uint64_t seed;            /* init seed */
    int64_t vocab;            /* logits per token */
    int max_ctx;              /* prompt + generated */
    /* GPU */
    msac_device *dev;         /* open device, or NULL for the CPU */
    msac_session *sess;       /* its session */
    /* CPU */
    Arena *arena;             /* holds the parsed graph */
    Graph *graph;             /* the plan's reference graph */
    EvalStore *store;         /* weights and states */
    int64_t pos;              /* tokens consumed (CPU) */
} Run;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool report(msac_status st)
{
    if (!st)
        return true;
    fprintf(stderr, "msac: %s\n", msac_status_message(st));
    msac_status_free(st);
    return false;
}

/* ---- CPU reference backend ---- */
static bool cpu_open(Run *r)
{
    Diag d = {0};
    r->arena = arena_new();
    const char *text = msac_plan_graph_text(r->plan);
    if (!text) {
        fprintf(stderr, "msac: this plan has no reference graph; it cannot run on the CPU\n");
        return false;
    }
    r->graph = ir_parse(r->arena, text, "plan graph", &d);
    if (!r->graph || !ir_verify(r->graph, &d)) {
        diag_print(&d, NULL, stderr);
        return false;
    }
    r->store = eval_store_new();
    msac_plan_info pi;
    msac_plan_get_info(r->plan, &pi);
    for (int i = 0; i < pi.num_weights; i++) {
        msac_weight_info w;
        msac_plan_weight_info(r->plan, i, &w);
        int64_t n = 1;
        for (int k = 0; k < w.ndim; k++)
            n *= w.dims[k];
        float *data = malloc(sizeof(float) * (size_t)n);
        if (!data) {
            fprintf(stderr, "msac: out of memory loading %s\n", w.name);
            return false;
        }
        if (!report(msac_plan_weight_values(r->plan, i, r->weights, r->seed, data))) {
            free(data);
            return false;
        }
        eval_store_put(r->store, w.name, data, n);
    }
    return true;
}

static bool cpu_step(Run *r, const int32_t *tok, int n, float *logits)
{
    float *t = malloc(sizeof(float) * (size_t)n);
    if (!t)
        return false;
    for (int i = 0; i < n; i++)
        t[i] = (float)tok[i];
    float pos = (float)r->pos;
    EvalInput in[2] = {{"tokens", t, n}, {"pos", &pos, 1}};
    EvalOutput out = {"logits", NULL, 0};
    int64_t sym[SYM_COUNT] = {0, 1, n, r->max_ctx};
    Diag d = {0};
    bool ok = eval_graph(r->graph, r->store, sym, in, 2, &out, 1, &d);
    free(t);
    if (!ok) {
        diag_print(&d, NULL, stderr);
        return false;
    }
    memcpy(logits, out.data, sizeof(float) * (size_t)out.numel);
    free(out.data);
    r->pos += n;
    return true;
}

/* ---- generation ---- */
static bool step(Run *r, const int32_t *tok, int n, float *logits)
{
    if (r->sess)
        return n == 1 ? report(msac_session_decode(r->sess, 1, tok, logits))
                      : report(msac_session_prefill(r->sess, 1, n, tok, logits));
    return cpu_step(r, tok, n, logits);
}

static int32_t argmax(const float *x, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: msac run PLAN [--device gpu|cpu|auto] [--weights FILE.safetensors] [--seed N]\n"
               "                     [--prompt 1,2,3 [--prompt 4,5 ...]] [-n N] [--logits FILE.npy]\n"
               "Greedy generation of N tokens after the prompt. --device auto (default) uses the GPU\n"
               "when one is present, else the CPU reference. --logits writes the prefill logits and\n"
               "each decode step's logits as one float32 array (prompt + N - 1 rows, vocab columns).\n"
               "Several --prompt (up to %d, of any lengths): one batch on the GPU (a ragged prefill,\n"
               "then batched decode steps), one sequence after another on the CPU reference; the\n"
               "tokens of each are printed (--logits takes a single prompt).\n", MAX_PROMPTS);
}

/* Loads the plan; r->vocab from it. */
static bool load_plan(Run *r, const char *plan_path)
{
    if (!report(msac_plan_load(plan_path, &r->plan)))
        return false;
    msac_plan_info pi;
    msac_plan_get_info(r->plan, &pi);
    r->vocab = pi.vocab_size;
    return true;
}

/* The weights and the backend: the GPU (a session of max_batch rows, and
 * the "model ... on GPU" line) or, with device cpu or auto without a GPU,
 * nothing yet (cpu_open). */
static bool open_backend(Run *r, const char *wpath, const char *device, int max_batch, int max_seq)
{
    if (wpath && !report(msac_weights_open(wpath, &r->weights)))
        return false;
    if (strcmp(device, "cpu")) {
        msac_status st = msac_device_open(0, &r->dev);
        if (st && !strcmp(device, "auto")) {
            fprintf(stderr, "msac: no GPU (%s); running on the CPU reference\n", msac_status_message(st));
            msac_status_free(st);
        } else if (!report(st)) {
            return false;
        }
    }
    if (!r->dev)
        return true;
    msac_session_options so;
    msac_session_options_init(&so);
    so.max_batch = max_batch;
    so.max_seq = max_seq;
    so.max_ctx = r->max_ctx;
    so.weights = r->weights;
    so.seed = r->seed;
    if (!report(msac_session_create(r->dev, r->plan, &so, &r->sess)))
        return false;
    cli_print_tuning(stderr, r->plan, r->dev, true);
    msac_plan_info pi;
    msac_plan_get_info(r->plan, &pi);
    msac_device_info di;
    msac_device_get_info(r->dev, &di);
    printf("model %s on %s (sm_%d%d, %d SMs), plan target %s\n", pi.model, di.name, di.cc_major, di.cc_minor,
           di.sm_count, pi.target);
    return true;
}

/* Prompt tokens must be ids of the vocabulary. */
static bool check_prompt(const Run *r, const int32_t *p, int n)
{
    for (int i = 0; i < n; i++)
        if (p[i] < 0 || p[i] >= r->vocab) {
            fprintf(stderr, "msac run: prompt token %d is outside the vocabulary (size %lld)\n", p[i],
                    (long long)r->vocab);
            return false;
        }
    return true;
}

static void close_backend(Run *r)
{
    msac_session_destroy(r->sess);
    msac_device_close(r->dev);
    msac_weights_close(r->weights);
    msac_plan_free(r->plan);
    eval_store_free(r->store);
    if (r->arena)
        arena_free(r->arena);
    *r = (Run){0};
}

/* Several prompts: one batch on the GPU (ragged prefill, batched decode),
 * one sequence after another on the CPU reference. */
static int run_batch(const char *plan_path, const char *wpath, const char *device, uint64_t seed,
                     const char *const *prompts_s, int n, int ntok)
{
    int32_t *prompt[MAX_PROMPTS] = {0}, *gen = NULL, *flat = NULL;
    int len[MAX_PROMPTS], total = 0, longest = 0, rc = 1;
    float *logits = NULL;
    Run r = {.seed = seed};
    for (int i = 0; i < n; i++) {
        if (!cli_parse_ints(prompts_s[i], &prompt[i], &len[i])) {
            fprintf(stderr, "msac run: --prompt must be comma-separated token ids, got '%s'\n", prompts_s[i]);
            rc = 2;
            goto out;
        }
        total += len[i];
        longest = len[i] > longest ? len[i] : longest;
    }
    r.max_ctx = longest + ntok;
    if (!load_plan(&r, plan_path))
        goto out;
    for (int i = 0; i < n; i++)
        if (!check_prompt(&r, prompt[i], len[i]))
            goto out;
    if (!open_backend(&r, wpath, device, n, longest))
        goto out;
    gen = malloc(sizeof(int32_t) * (size_t)n * (size_t)ntok);
    logits = malloc(sizeof(float) * (size_t)n * (size_t)r.vocab);
    flat = malloc(sizeof(int32_t) * (size_t)(total ? total : 1));
    if (!gen || !logits || !flat) {
        fprintf(stderr, "msac: out of memory\n");
        goto out;
    }
    double t0 = now_ms(), t1;
    if (r.sess) {
        printf("%d sequences on the GPU in one batch\n", n);
        for (int i = 0, at = 0; i < n; at += len[i], i++)
            memcpy(flat + at, prompt[i], sizeof(int32_t) * (size_t)len[i]);
        if (!report(msac_session_prefill_ragged(r.sess, n, len, flat, logits)))
            goto out;
        t1 = now_ms();
        for (int i = 0; i < n; i++)
            gen[i * ntok] = argmax(logits + (int64_t)i * r.vocab, r.vocab);
        int32_t step_tok[MAX_PROMPTS];
        for (int k = 1; k < ntok; k++) {
            for (int i = 0; i < n; i++)
                step_tok[i] = gen[i * ntok + k - 1];
            if (!report(msac_session_decode(r.sess, n, step_tok, logits)))
                goto out;
            for (int i = 0; i < n; i++)
                gen[i * ntok + k] = argmax(logits + (int64_t)i * r.vocab, r.vocab);
        }
    } else {
        printf("%d sequences on the CPU reference, one after another\n", n);
        if (!cpu_open(&r))
            goto out;
        float *all = NULL;
        for (int i = 0; i < n; i++) {
            r.pos = 0; /* each sequence from zero states, as after a session reset */
            eval_store_reset_states(r.store);
            free(all);
            all = malloc(sizeof(float) * (size_t)len[i] * (size_t)r.vocab);
            if (!all || !cpu_step(&r, prompt[i], len[i], all)) {
                free(all);
                goto out;
            }
            gen[i * ntok] = argmax(all + (int64_t)(len[i] - 1) * r.vocab, r.vocab);
            for (int k = 1; k < ntok; k++) {
                if (!cpu_step(&r, &gen[i * ntok + k - 1], 1, logits)) {
                    free(all);
                    goto out;
                }
                gen[i * ntok + k] = argmax(logits, r.vocab);
            }
        }
        free(all);
        t1 = now_ms();
    }
    double t2 = now_ms();
    for (int i = 0; i < n; i++) {
        printf("tokens %d:", i);
        for (int k = 0; k < ntok; k++)
            printf(" %d", gen[i * ntok + k]);
        printf("\n");
    }
    printf("prefill: %d tokens in %d sequences in %.3f ms; decode: %d steps in %.3f ms\n", total, n, t1 - t0,
           ntok - 1, t2 - t1);
    rc = 0;
out:
    for (int i = 0; i < n; i++)
        free(prompt[i]);
    free(gen);
    free(logits);
    free(flat);
    close_backend(&r);
    return rc;
}

int cli_run(int argc, char **argv)
{
    const char *plan_path = NULL, *wpath = NULL, *npy = NULL, *device = "auto", *prompt_s = "1,2,3,4,5,6,7,8";
    const char *prompts_s[MAX_PROMPTS];
    int nprompts = 0;
    int ntok = 16;
    Run r = {0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--device") && v) {
            device = v, i++;
        } else if (!strcmp(a, "--weights") && v) {
            wpath = v, i++;
        } else if (!strcmp(a, "--seed") && v) {
            if (!cli_parse_u64(v, &r.seed)) {
                fprintf(stderr, "msac run: --seed must be a whole number >= 0, got '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--prompt") && v) {
            if (nprompts == MAX_PROMPTS) {
                fprintf(stderr, "msac run: at most %d prompts\n", MAX_PROMPTS);
                return 2;
            }
            prompts_s[nprompts++] = prompt_s = v, i++;
        } else if (!strcmp(a, "-n") && v) {
            if (!cli_parse_int(v, 1, 1 << 24, &ntok)) {
                fprintf(stderr, "msac run: -n must be a whole number in 1..16777216, got '%s'\n", v);
                return 2;
            }
            i++;
        } else if (!strcmp(a, "--logits") && v) {
            npy = v, i++;
        } else if (a[0] != '-' && !plan_path) {
            plan_path = a;
        } else {
            fprintf(stderr, "msac run: unexpected argument '%s'\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (!plan_path || ntok < 1 || (strcmp(device, "gpu") && strcmp(device, "cpu") && strcmp(device, "auto"))) {
        usage(stderr);
        return 2;
    }
    if (nprompts > 1) {
        if (npy) {
            fprintf(stderr, "msac run: --logits takes a single prompt (%d given)\n", nprompts);
            return 2;
        }
        return run_batch(plan_path, wpath, device, r.seed, prompts_s, nprompts, ntok);
    }
    int32_t *prompt;
    int np;
    if (!cli_parse_ints(prompt_s, &prompt, &np)) {
        fprintf(stderr, "msac run: --prompt must be comma-separated token ids, got '%s'\n", prompt_s);
        return 2;
    }
    int rc = 1;
    float *logits = NULL;
    int32_t *gen = NULL;
    r.max_ctx = np + ntok;
    if (!load_plan(&r, plan_path) || !check_prompt(&r, prompt, np) || !open_backend(&r, wpath, device, 1, np))
        goto out;
    if (!r.dev) {
        if (!cpu_open(&r))
            goto out;
        msac_plan_info pi;
        msac_plan_get_info(r.plan, &pi);
        printf("model %s on the CPU reference\n", pi.model);
    }
    int64_t rows = np + ntok - 1;
    logits = malloc(sizeof(float) * (size_t)(rows * r.vocab));
    gen = malloc(sizeof(int32_t) * (size_t)ntok);
    if (!logits || !gen) {
        fprintf(stderr, "msac: out of memory\n");
        goto out;
    }
    double t0 = now_ms();
    if (!step(&r, prompt, np, logits))
        goto out;
    double t1 = now_ms();
    gen[0] = argmax(logits + (int64_t)(np - 1) * r.vocab, r.vocab);
    for (int i = 1; i < ntok; i++) {
        float *row = logits + (int64_t)(np + i - 1) * r.vocab;
        if (!step(&r, &gen[i - 1], 1, row))
            goto out;
        gen[i] = argmax(row, r.vocab);
    }
    double t2 = now_ms();
    printf("prompt:");
    for (int i = 0; i < np; i++)
        printf(" %d", prompt[i]);
    printf("\ntokens:");
    for (int i = 0; i < ntok; i++)
        printf(" %d", gen[i]);
    printf("\nprefill: %d tokens in %.3f ms (%.0f tokens/s)\n", np, t1 - t0, np / ((t1 - t0) / 1e3));
    if (ntok > 1)
        printf("decode:  %d steps in %.3f ms (%.0f tokens/s, batch 1)\n", ntok - 1, t2 - t1,
               (ntok - 1) / ((t2 - t1) / 1e3));
    char why[1024];
    if (npy && !npy_write_f32(npy, logits, rows, r.vocab, why, sizeof why)) {
        fprintf(stderr, "msac: %s\n", why);
        goto out;
    }
    rc = 0;
out:
    free(prompt);
    free(logits);
    free(gen);
    close_backend(&r);
    return rc;
}
