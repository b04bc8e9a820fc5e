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
               "                     [--prompt 1,2,3] [-n N] [--logits FILE.npy]\n"
               "Greedy generation of N tokens after the prompt. --device auto (default) uses the GPU\n"
               "when one is present, else the CPU reference. --logits writes the prefill logits and\n"
               "each decode step's logits as one float32 array (prompt + N - 1 rows, vocab columns).\n");
}

int cli_run(int argc, char **argv)
{
    const char *plan_path = NULL, *wpath = NULL, *npy = NULL, *device = "auto", *prompt_s = "1,2,3,4,5,6,7,8";
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
            prompt_s = v, i++;
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
    int32_t *prompt;
    int np;
    if (!cli_parse_ints(prompt_s, &prompt, &np)) {
        fprintf(stderr, "msac run: --prompt must be comma-separated token ids, got '%s'\n", prompt_s);
        return 2;
    }
    int rc = 1;
    float *logits = NULL;
    int32_t *gen = NULL;
    if (!report(msac_plan_load(plan_path, &r.plan)))
        goto out;
    msac_plan_info pi;
    msac_plan_get_info(r.plan, &pi);
    r.vocab = pi.vocab_size;
    r.max_ctx = np + ntok;
    for (int i = 0; i < np; i++)
        if (prompt[i] >= r.vocab) {
            fprintf(stderr, "msac run: prompt token %d is outside the vocabulary (size %lld)\n", prompt[i],
                    (long long)r.vocab);
            goto out;
        }
    if (wpath && !report(msac_weights_open(wpath, &r.weights)))
        goto out;
    if (strcmp(device, "cpu")) {
        msac_status st = msac_device_open(0, &r.dev);
        if (st && !strcmp(device, "auto")) {
            fprintf(stderr, "msac: no GPU (%s); running on the CPU reference\n", msac_status_message(st));
            msac_status_free(st);
        } else if (!report(st)) {
            goto out;
        }
    }
    if (r.dev) {
        msac_session_options so;
        msac_session_options_init(&so);
        so.max_batch = 1;
        so.max_seq = np;
        so.max_ctx = r.max_ctx;
        so.weights = r.weights;
        so.seed = r.seed;
        if (!report(msac_session_create(r.dev, r.plan, &so, &r.sess)))
            goto out;
        cli_print_tuning(stderr, r.plan, r.dev, true);
        msac_device_info di;
        msac_device_get_info(r.dev, &di);
        printf("model %s on %s (sm_%d%d, %d SMs), plan target %s\n", pi.model, di.name, di.cc_major, di.cc_minor,
               di.sm_count, pi.target);
    } else {
        if (!cpu_open(&r))
            goto out;
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
    msac_session_destroy(r.sess);
    msac_device_close(r.dev);
    msac_weights_close(r.weights);
    msac_plan_free(r.plan);
    eval_store_free(r.store);
    if (r.arena)
        arena_free(r.arena);
    return rc;
}
