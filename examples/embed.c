/* embed.c — greedy generation with the msac runtime, as a program that
 * embeds it: nothing but <msac/runtime.h> and libc. Build it against an
 * installed msac with
 *
 *     cc embed.c -o embed $(pkg-config --cflags --libs msacrt)
 *
 * and run it on a compiled plan (msac compile models/tiny-mamba2.yaml -o
 * tiny.msac):
 *
 *     ./embed tiny.msac --prompt 1,2,3,4 --prompt 9,8 -n 16
 *
 * Each --prompt is one sequence; all of them are served by one session.
 * Prompts of one length are prefilled in one call (msac_session_prefill),
 * prompts of different lengths with msac_session_prefill_ragged; then
 * every sequence is decoded greedily (argmax) one token per step
 * (msac_session_decode, replayed as a CUDA graph after the first step).
 * Without --weights the plan's seeded init is used (--seed).
 *
 * Every call's status is checked and its message printed. On a machine
 * without an NVIDIA driver or GPU it prints "no GPU: <why>" and exits 1.
 * Exit codes: 0 success, 1 runtime failure, 2 bad command line. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <msac/runtime.h>

enum { MAX_PROMPTS = 64 };

/* What the command line asks for. */
typedef struct Args {
    const char *plan;              /* plan file */
    const char *weights;           /* safetensors checkpoint, or NULL for the seeded init */
    uint64_t seed;                 /* seed of the init */
    int ntok;                      /* tokens to generate per sequence */
    int nprompts;                  /* sequences */
    const char *prompt[MAX_PROMPTS]; /* [nprompts] comma-separated token ids */
} Args;

/* Everything the program acquires, released in reverse order by cleanup(). */
typedef struct App {
    msac_plan *plan;       /* the loaded plan */
    msac_device *dev;      /* GPU 0 */
    msac_weights *weights; /* open checkpoint, NULL once uploaded or when none */
    msac_session *sess;    /* the session serving every sequence */
    int32_t *tokens;       /* all prompts back to back */
    int *lengths;          /* [batch] prompt lengths */
    float *logits;         /* logits of a call */
    float *last;           /* [batch × vocab] each sequence's latest logits */
    int32_t *next;         /* [batch] the token each sequence feeds next */
    int32_t *gen;          /* [batch × ntok] generated tokens */
} App;

static void usage(FILE *f)
{
    fprintf(f, "usage: embed PLAN [--weights FILE.safetensors] [--seed N] [-n N] [--prompt 1,2,3]...\n"
               "  Greedy generation of N tokens (default 16) after each prompt (default 1,2,3,4);\n"
               "  each --prompt is one more sequence of the same session.\n");
}

/* Reports a failed call ("embed: WHAT: CODE: message") and frees the
 * status. Returns true when `st` was an error. */
static bool failed(msac_status st, const char *what)
{
    if (!st)
        return false;
    fprintf(stderr, "embed: %s: %s: %s\n", what, msac_code_name(msac_status_code(st)), msac_status_message(st));
    msac_status_free(st);
    return true;
}

static void cleanup(App *a)
{
    msac_session_destroy(a->sess); /* before its device and plan */
    msac_weights_close(a->weights);
    msac_device_close(a->dev);
    msac_plan_free(a->plan);
    free(a->tokens);
    free(a->lengths);
    free(a->logits);
    free(a->last);
    free(a->next);
    free(a->gen);
}

/* Parses "1,2,3" into tokens[*n..]; false on anything else. */
static bool parse_prompt(const char *s, int32_t *tokens, int *n, int cap)
{
    const char *p = s;
    int k = 0;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > INT32_MAX || (*end && *end != ',') || k == cap)
            return false;
        tokens[(*n)++] = (int32_t)v;
        k++;
        p = *end ? end + 1 : end;
    }
    return k > 0;
}

static int32_t argmax(const float *v, int64_t n)
{
    int64_t best = 0;
    for (int64_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return (int32_t)best;
}

static bool parse_args(int argc, char **argv, Args *g)
{
    *g = (Args){.ntok = 16};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        char *end = NULL;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            exit(0);
        } else if (!strcmp(a, "--weights") && v) {
            g->weights = v, i++;
        } else if (!strcmp(a, "--seed") && v) {
            g->seed = strtoull(v, &end, 10), i++;
            if (!*v || *end) {
                fprintf(stderr, "embed: bad --seed '%s'\n", v);
                return false;
            }
        } else if (!strcmp(a, "-n") && v) {
            long n = strtol(v, &end, 10);
            i++;
            if (!*v || *end || n < 1 || n > 1000000) {
                fprintf(stderr, "embed: bad -n '%s' (1..1000000)\n", v);
                return false;
            }
            g->ntok = (int)n;
        } else if (!strcmp(a, "--prompt") && v) {
            if (g->nprompts == MAX_PROMPTS) {
                fprintf(stderr, "embed: at most %d prompts\n", MAX_PROMPTS);
                return false;
            }
            g->prompt[g->nprompts++] = v, i++;
        } else if (a[0] != '-' && !g->plan) {
            g->plan = a;
        } else {
            fprintf(stderr, "embed: unexpected argument '%s'\n", a);
            return false;
        }
    }
    if (!g->nprompts)
        g->prompt[g->nprompts++] = "1,2,3,4";
    if (!g->plan)
        fprintf(stderr, "embed: no PLAN given\n");
    return g->plan != NULL;
}

int main(int argc, char **argv)
{
    Args g;
    if (!parse_args(argc, argv, &g)) {
        usage(stderr);
        return 2;
    }
    const int batch = g.nprompts; /* 1..MAX_PROMPTS */
    if (batch < 1 || batch > MAX_PROMPTS)
        return 2;
    App a = {0};
    int rc = 1;

    /* the prompts, back to back (the layout msac_session_prefill_ragged takes) */
    size_t cap = 0;
    for (int r = 0; r < batch; r++)
        cap += strlen(g.prompt[r]) / 2 + 1; /* at most this many ids fit in the text */
    a.tokens = malloc(cap * sizeof *a.tokens);
    a.lengths = calloc((size_t)batch, sizeof *a.lengths);
    if (!a.tokens || !a.lengths) {
        fprintf(stderr, "embed: out of memory\n");
        goto out;
    }
    int total = 0, longest = 0;
    bool same = true;
    for (int r = 0; r < batch; r++) {
        int before = total;
        if (!parse_prompt(g.prompt[r], a.tokens, &total, (int)cap - total)) {
            fprintf(stderr, "embed: --prompt must be comma-separated token ids, got '%s'\n", g.prompt[r]);
            rc = 2;
            goto out;
        }
        a.lengths[r] = total - before;
        longest = a.lengths[r] > longest ? a.lengths[r] : longest;
        same = same && a.lengths[r] == a.lengths[0];
    }

    if (failed(msac_plan_load(g.plan, &a.plan), "msac_plan_load"))
        goto out;
    msac_plan_info pi;
    msac_plan_get_info(a.plan, &pi);
    const int64_t vocab = pi.vocab_size;

    /* how much device memory the session will take, before taking it */
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = batch;
    o.max_seq = longest;
    o.max_ctx = longest + g.ntok;
    o.seed = g.seed;
    uint64_t need = 0;
    if (failed(msac_plan_memory_required(a.plan, o.max_batch, o.max_seq, o.max_ctx, &need),
               "msac_plan_memory_required"))
        goto out;

    msac_status st = msac_device_open(0, &a.dev);
    if (st && (msac_status_code(st) == MSAC_ERR_NO_DRIVER || msac_status_code(st) == MSAC_ERR_NO_DEVICE)) {
        fprintf(stderr, "no GPU: %s\n", msac_status_message(st));
        msac_status_free(st);
        goto out;
    }
    if (failed(st, "msac_device_open(0)"))
        goto out;
    msac_device_info di;
    msac_device_get_info(a.dev, &di);
    printf("model %s (plan for %s, vocab %lld) on %s (sm_%d%d, %d SMs)\n", pi.model, pi.target, (long long)vocab,
           di.name, di.cc_major, di.cc_minor, di.sm_count);
    printf("session: %d sequence%s, prompts up to %d tokens, context %d: %.2f MiB of device memory\n", batch,
           batch == 1 ? "" : "s", longest, o.max_ctx, (double)need / 1048576.0);

    if (g.weights && failed(msac_weights_open(g.weights, &a.weights), "msac_weights_open"))
        goto out;
    o.weights = a.weights;
    if (failed(msac_session_create(a.dev, a.plan, &o, &a.sess), "msac_session_create"))
        goto out;
    msac_weights_close(a.weights); /* uploaded: the checkpoint is no longer needed */
    a.weights = NULL;

    a.logits = malloc((size_t)batch * (size_t)longest * (size_t)vocab * sizeof *a.logits);
    a.last = malloc((size_t)batch * (size_t)vocab * sizeof *a.last);
    a.next = malloc((size_t)batch * sizeof *a.next);
    a.gen = malloc((size_t)batch * (size_t)g.ntok * sizeof *a.gen);
    if (!a.logits || !a.last || !a.next || !a.gen) {
        fprintf(stderr, "embed: out of memory\n");
        goto out;
    }

    /* prefill: one call when every prompt has the same length, else ragged */
    float prefill_ms;
    if (same) {
        if (failed(msac_session_prefill(a.sess, batch, longest, a.tokens, a.logits), "msac_session_prefill"))
            goto out;
        for (int r = 0; r < batch; r++)
            memcpy(a.last + (size_t)r * (size_t)vocab,
                   a.logits + ((size_t)r * (size_t)longest + (size_t)longest - 1) * (size_t)vocab,
                   (size_t)vocab * sizeof *a.last);
    } else if (failed(msac_session_prefill_ragged(a.sess, batch, a.lengths, a.tokens, a.last),
                      "msac_session_prefill_ragged")) {
        goto out;
    }
    prefill_ms = msac_session_last_ms(a.sess);

    /* greedy decode: every sequence one token per step */
    float decode_ms = 0;
    for (int i = 0; i < g.ntok; i++) {
        for (int r = 0; r < batch; r++) {
            a.next[r] = argmax(a.last + (size_t)r * (size_t)vocab, vocab);
            a.gen[(size_t)r * (size_t)g.ntok + (size_t)i] = a.next[r];
        }
        if (i + 1 == g.ntok)
            break; /* the last token needs no logits */
        if (failed(msac_session_decode(a.sess, batch, a.next, a.last), "msac_session_decode"))
            goto out;
        decode_ms += msac_session_last_ms(a.sess);
    }

    const int32_t *t = a.tokens;
    for (int r = 0; r < batch; r++) {
        printf("sequence %d: prompt", r);
        for (int k = 0; k < a.lengths[r]; k++)
            printf(" %d", t[k]);
        t += a.lengths[r];
        printf("\nsequence %d: tokens", r);
        for (int i = 0; i < g.ntok; i++)
            printf(" %d", a.gen[(size_t)r * (size_t)g.ntok + (size_t)i]);
        printf("\n");
    }
    printf("prefill: %d tokens in %.3f ms of device time (%s)\n", total, (double)prefill_ms,
           same ? "msac_session_prefill" : "msac_session_prefill_ragged");
    if (g.ntok > 1)
        printf("decode: %d steps of %d sequence%s in %.3f ms of device time\n", g.ntok - 1, batch,
               batch == 1 ? "" : "s", (double)decode_ms);
    rc = 0;
out:
    cleanup(&a);
    return rc;
}
