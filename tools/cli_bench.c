/* cli_bench.c — `msac bench PLAN|MODEL.yaml`: times the plan's prefill and
 * decode programs on GPU 0 with msac_session_bench and reports every launch
 * against the roofline of the plan's cost model (bench_report.c prints).
 *
 * --kernel NAME reports only the launches whose kernel name starts with
 * NAME; without a PLAN or YAML it benches a generated one-layer Mamba2 model
 * of the shape options (kernel_model).
 * A .yaml/.yml argument is compiled in memory first. Each program gets a
 * session sized for it (prefill: batch × seq; decode: decode batch × 1, ctx
 * = seq), seeded weights, and one prefill call with a deterministic
 * pseudo-random prompt that fills the token buffer the timed runs reuse.
 * Exit status: 0 ok, 1 runtime failure (no GPU, compile error, CUDA), 2
 * usage error. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench_report.h"
#include "cli.h"
#include "compile.h"
#include "frontend.h"
#include "msac/runtime.h"
#include "tune_cache.h"

/* Defaults: H100 SXM peaks (issue 3's measured figures). */
#define DEFAULT_PEAK_TFLOPS 740.0
#define DEFAULT_PEAK_GBS 3000.0

/* Command-line options. */
typedef struct BenchArgs {
    const char *input;   /* plan file or model YAML */
    int batch, seq;      /* prefill sizes */
    int dbatch;          /* decode batch (0: same as batch) */
    bool prefill, decode; /* programs to time */
    int warmup, iters;   /* runs per program */
    const char *target;  /* compile target for a YAML input, NULL: the compiler's default */
    double peak_tflops;  /* roofline math peak */
    double peak_gbs;     /* roofline memory peak */
    const char *json;    /* JSON output path or NULL */
    bool graphs;         /* decode as CUDA graphs */
    ScheduleSet sched;   /* --schedule overrides for a YAML input */
    int position;        /* every sequence's position during the timed runs */
    bool zero_caches;    /* leave the per-token caches zero at a position > 0 (else: pseudo-random rows) */
    const char *tuning;  /* tuning cache for a YAML input (NULL: msac compile's default) */
    bool no_tuning;      /* compile a YAML input with the default schedules only */
    const char *kernel;  /* --kernel: report only the launches whose kernel name starts with this */
    /* The one-layer Mamba2 model benched when --kernel has no PLAN or YAML
     * (issue 3's SSD shapes): heads × headdim = 2·d_model (expand 2). */
    int heads, headdim, d_state, ngroups, chunk;
    bool shaped;         /* one of those was given */
} BenchArgs;

static const char synopsis[] =
    "usage: msac bench PLAN|MODEL.yaml [--kernel NAME] [--batch B] [--seq S] [--decode-batch B]\n"
    "       msac bench --kernel NAME [--heads H] [--headdim P] [--d-state N] [--ngroups G] [--chunk C]\n"
    "                  [--batch B] [--seq S] [--decode-batch B] ...\n"
    "                  [--program prefill|decode|all] [--warmup N] [--iters N]\n"
    "                  [--target sm_90a|sm_80] [--schedule KERNEL:key=val,...]\n"
    "                  [--tuning FILE | --no-tuning] [--position P]\n"
    "                  [--zero-caches] [--peak-tflops T]\n"
    "                  [--peak-gbs G] [--json FILE] [--no-graphs]\n";

static void usage(FILE *f)
{
    fputs(synopsis, f);
    fprintf(f,
            "Times the plan's programs on GPU 0 (a MODEL.yaml is compiled in memory first, for\n"
            "--target, with msac compile's schedules: the tuning cache's entries for this GPU\n"
            "(--tuning FILE, default as msac compile's; --no-tuning: none), --schedule beating\n"
            "them). Each program runs --warmup untimed runs, then --iters whole runs (the\n"
            "median is the program's total; decode replays its CUDA graph unless --no-graphs)\n"
            "and --iters runs with CUDA events around every launch (the medians per launch).\n"
            "Inputs are a deterministic pseudo-random prompt, every sequence at position 0\n"
            "(--position P: at P, so a decode step attends over P+1 cached rows; those rows\n"
            "are pseudo-random values, msac_session_fill_caches, so that a sparse layer's\n"
            "top-k selects scattered rows as in a real context; --zero-caches leaves them\n"
            "zero: every indexer score then ties and top-k takes the first rows).\n"
            "Defaults: batch 1, seq 2048, decode batch = batch, program all, warmup 10, iters 50.\n"
            "\n"
            "--kernel NAME reports only the launches whose kernel name starts with NAME (e.g.\n"
            "mamba2_scan, mamba2_step, gemv, index_select; mamba2_ for every launch of the\n"
            "Mamba2 mixer, the conv split off the scan included) and their sum. Without a PLAN or\n"
            "MODEL.yaml it benches a generated one-layer Mamba2 model (d_model = heads * headdim\n"
            "/ 2, expand 2, vocabulary 256): --heads 80 --headdim 64 --d-state 128 --ngroups 1\n"
            "--chunk 256 by default, issue 3's SSD shapes (e.g. msac bench --kernel mamba2_scan\n"
            "--batch 8 --seq 4096 --program prefill).\n"
            "\n"
            "Per launch it prints the median µs, the share of the sum of launch medians, the\n"
            "TFLOP/s and GB/s achieved by the plan's cost model (flops, fewest bytes moved), and\n"
            "roofline %% = 100 * max(flops / peak-tflops, bytes / peak-gbs) / time, with the\n"
            "bound (math or mem, the larger term). Peaks default to %.0f TFLOP/s (bf16 tensor\n"
            "cores) and %.0f GB/s (HBM3): the H100 SXM figures measured for issue 3. Then the\n"
            "program total, the sum of launch medians and tokens/s (prefill batch*seq/total,\n"
            "decode batch/total). --json FILE writes the same numbers.\n"
            "Exit status: 0 ok, 1 runtime failure, 2 usage error.\n",
            DEFAULT_PEAK_TFLOPS, DEFAULT_PEAK_GBS);
}

/* Parses a positive finite number. */
static bool parse_pos(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end || errno || !(v > 0) || v > 1e12)
        return false;
    *out = v;
    return true;
}

/* Returns 0 when the arguments parse, 2 (after a message) when not, -1
 * for --help. */
static int parse_args(int argc, char **argv, BenchArgs *a)
{
    *a = (BenchArgs){.batch = 1, .seq = 2048, .prefill = true, .decode = true, .warmup = 10, .iters = 50,
                     .peak_tflops = DEFAULT_PEAK_TFLOPS, .peak_gbs = DEFAULT_PEAK_GBS, .graphs = true,
                     .heads = 80, .headdim = 64, .d_state = 128, .ngroups = 1, .chunk = 256};
    for (int i = 1; i < argc; i++) {
        const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        bool ok = true, takes = v != NULL;
        if (!strcmp(o, "--help") || !strcmp(o, "-h"))
            return -1;
        if (!strcmp(o, "--no-graphs")) {
            a->graphs = false;
            continue;
        }
        if (!strcmp(o, "--zero-caches")) {
            a->zero_caches = true;
            continue;
        }
        if (!strcmp(o, "--no-tuning")) {
            a->no_tuning = true;
            continue;
        }
        if (o[0] != '-') {
            if (a->input) {
                fprintf(stderr, "msac bench: unexpected argument '%s'\n", o);
                return 2;
            }
            a->input = o;
            continue;
        }
        static const char *const valued[] = {"--batch",  "--seq",         "--decode-batch", "--warmup", "--iters",
                                             "--target", "--peak-tflops", "--peak-gbs",     "--json",   "--program",
                                             "--schedule", "--position", "--tuning", "--kernel", "--heads",
                                             "--headdim", "--d-state", "--ngroups", "--chunk"};
        bool known = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0]; k++)
            known |= !strcmp(o, valued[k]);
        if (!known) {
            fprintf(stderr, "msac bench: unknown option '%s'\n", o);
            return 2;
        }
        if (!takes) {
            fprintf(stderr, "msac bench: %s needs a value\n", o);
            return 2;
        }
        if (!strcmp(o, "--batch"))
            ok = cli_parse_int(v, 1, 1 << 20, &a->batch);
        else if (!strcmp(o, "--seq"))
            ok = cli_parse_int(v, 1, 1 << 24, &a->seq);
        else if (!strcmp(o, "--decode-batch"))
            ok = cli_parse_int(v, 1, 1 << 20, &a->dbatch);
        else if (!strcmp(o, "--warmup"))
            ok = cli_parse_int(v, 0, 1 << 20, &a->warmup);
        else if (!strcmp(o, "--iters"))
            ok = cli_parse_int(v, 1, 1 << 20, &a->iters);
        else if (!strcmp(o, "--peak-tflops"))
            ok = parse_pos(v, &a->peak_tflops);
        else if (!strcmp(o, "--peak-gbs"))
            ok = parse_pos(v, &a->peak_gbs);
        else if (!strcmp(o, "--json"))
            a->json = v;
        else if (!strcmp(o, "--tuning"))
            a->tuning = v;
        else if (!strcmp(o, "--kernel"))
            ok = *v ? (a->kernel = v, true) : false;
        else if (!strcmp(o, "--heads"))
            ok = cli_parse_int(v, 1, 4096, &a->heads), a->shaped = true;
        else if (!strcmp(o, "--headdim"))
            ok = cli_parse_int(v, 1, 4096, &a->headdim), a->shaped = true;
        else if (!strcmp(o, "--d-state"))
            ok = cli_parse_int(v, 1, 4096, &a->d_state), a->shaped = true;
        else if (!strcmp(o, "--ngroups"))
            ok = cli_parse_int(v, 1, 4096, &a->ngroups), a->shaped = true;
        else if (!strcmp(o, "--chunk"))
            ok = cli_parse_int(v, 1, 1 << 16, &a->chunk), a->shaped = true;
        else if (!strcmp(o, "--target"))
            ok = !strcmp(v, "sm_90a") || !strcmp(v, "sm_80") ? (a->target = v, true) : false;
        else if (!strcmp(o, "--position"))
            ok = cli_parse_int(v, 0, 1 << 24, &a->position);
        else if (!strcmp(o, "--schedule")) {
            Diag sd = {0};
            if (!schedule_parse(&a->sched, v, &sd)) {
                fprintf(stderr, "msac bench: %s\n", sd.msg);
                return 2;
            }
        }
        else if (!strcmp(o, "--program")) {
            a->prefill = !strcmp(v, "prefill") || !strcmp(v, "all");
            a->decode = !strcmp(v, "decode") || !strcmp(v, "all");
            ok = a->prefill || a->decode;
        }
        if (!ok) {
            fprintf(stderr, "msac bench: bad value '%s' for %s\n", v, o);
            return 2;
        }
        i++;
    }
    if (!a->input && !a->kernel) {
        fprintf(stderr, "msac bench: no PLAN or MODEL.yaml given\n");
        return 2;
    }
    if (a->input && a->shaped) {
        fprintf(stderr, "msac bench: --heads, --headdim, --d-state, --ngroups and --chunk shape the generated "
                        "model of --kernel without a PLAN or MODEL.yaml\n");
        return 2;
    }
    if (!a->input && (a->heads * a->headdim) % 2) {
        fprintf(stderr, "msac bench: --heads %d × --headdim %d must be even (d_model = heads * headdim / 2)\n",
                a->heads, a->headdim);
        return 2;
    }
    if (!a->dbatch)
        a->dbatch = a->batch;
    return 0;
}

static bool report(msac_status st)
{
    if (!st)
        return true;
    fprintf(stderr, "msac bench: %s\n", msac_status_message(st));
    msac_status_free(st);
    return false;
}

/* The one-layer Mamba2 model of --kernel without an input (malloc'd YAML). */
static char *kernel_model(const BenchArgs *a)
{
    char *t = NULL;
    if (asprintf(&t,
                 "# generated by msac bench --kernel\nname: kernel-mamba2-h%d-p%d-n%d\nvocab_size: 256\n"
                 "d_model: %d\ntie_embeddings: true\nmamba2: {d_state: %d, headdim: %d, expand: 2, ngroups: %d, "
                 "d_conv: 4, chunk_size: %d}\nlayers:\n  - kind: mamba2\n",
                 a->heads, a->headdim, a->d_state, a->heads * a->headdim / 2, a->d_state, a->headdim, a->ngroups,
                 a->chunk) < 0)
        abort();
    return t;
}

/* Compiles a model YAML (the input, or kernel_model's) in memory and loads the plan. */
static bool compile_yaml(const BenchArgs *a, msac_plan **out)
{
    Diag d = {0};
    const char *file = a->input ? a->input : "(msac bench --kernel model)";
    char *text = a->input ? frontend_read_file(a->input, &d) : kernel_model(a);
    if (!text) {
        fprintf(stderr, "msac bench: %s\n", d.msg);
        return false;
    }
    CompileOptions o;
    compile_options_init(&o);
    if (a->target)
        o.target = a->target;
    o.schedule = &a->sched;
    TuneCache cache = {0};
    TuneDevice tdev;
    if (!a->no_tuning && !cli_use_tuning("msac bench", a->tuning, false, &cache, &tdev, &o)) {
        free(text);
        return false;
    }
    Plan *p = NULL;
    uint8_t *bytes = NULL;
    size_t len = 0;
    bool ok = false;
    if (!msac_compile(text, file, &o, &p, &d)) {
        diag_print(&d, d.file ? text : NULL, stderr);
        if (!a->input)
            fprintf(stderr, "msac bench: the model --kernel generates from --heads %d --headdim %d --d-state %d "
                            "--ngroups %d --chunk %d does not compile (above)\n",
                    a->heads, a->headdim, a->d_state, a->ngroups, a->chunk);
    }
    else if (!plan_write(p, &bytes, &len))
        fprintf(stderr, "msac bench: out of memory writing the plan\n");
    else
        ok = report(msac_plan_load_memory(bytes, len, out));
    free(bytes);
    plan_free(p);
    free(text);
    tune_cache_free(&cache);
    return ok;
}

/* Bytes of all the plan's weights in their device dtypes. */
static double weight_bytes(const msac_plan *plan, int nweights)
{
    double total = 0;
    for (int i = 0; i < nweights; i++) {
        msac_weight_info w;
        msac_plan_weight_info(plan, i, &w);
        double n = !strcmp(w.dtype, "bf16") ? 2 : 4; /* f32, i32 */
        for (int d = 0; d < w.ndim; d++)
            n *= (double)w.dims[d];
        total += n;
    }
    return total;
}

/* Times program `name` at (batch, seq) in its own session; fills *out. */
static bool time_program(msac_device *dev, const msac_plan *plan, const BenchArgs *a, const char *name, int batch,
                         int seq, BenchProgram *out)
{
    int n = msac_plan_program_launches(plan, name);
    if (n < 0) {
        fprintf(stderr, "msac bench: the plan has no %s program\n", name);
        return false;
    }
    bool decode = !strcmp(name, "decode");
    msac_session_options so;
    msac_session_options_init(&so);
    so.max_batch = batch;
    so.max_seq = seq;
    so.max_ctx = a->seq > a->position + seq ? a->seq : a->position + seq;
    so.use_graphs = a->graphs;
    *out = (BenchProgram){.name = name, .batch = batch, .seq = seq, .ctx = so.max_ctx, .nlaunch = n,
                          .graph = decode && a->graphs};
    out->launch = calloc((size_t)(n ? n : 1), sizeof *out->launch);
    float *ms = calloc((size_t)(n ? n : 1), sizeof *ms);
    msac_plan_info pi;
    msac_plan_get_info(plan, &pi);
    size_t ntok = (size_t)batch * (size_t)seq;
    int32_t *prompt = malloc(ntok * sizeof *prompt);
    msac_session *s = NULL;
    bool ok = false;
    if (!out->launch || !ms || !prompt) {
        fprintf(stderr, "msac bench: out of memory\n");
        goto done;
    }
    cli_fill_tokens(prompt, ntok, pi.vocab_size);
    if (!report(msac_session_create(dev, plan, &so, &s)) ||
        !report(msac_session_prefill(s, batch, seq, prompt, NULL)) ||
        (a->position > 0 && !a->zero_caches && !report(msac_session_fill_caches(s, 1))) ||
        !report(msac_session_bench_at(s, name, batch, seq, a->position, a->warmup, a->iters, ms, &out->total_ms)))
        goto done;
    /* a plan with per-batch decode variants runs "decode@N" at this batch */
    const char *run = msac_session_program_for(s, name, batch);
    if (run && strcmp(run, name))
        printf("%s at batch %d runs program %s (schedules tuned for larger batches)\n", name, batch, run);
    for (int j = 0; j < n; j++) {
        BenchLaunch *l = &out->launch[j];
        /* the cost at the context the timed calls attend over (not max_ctx) */
        if (!report(msac_plan_launch_cost(plan, run ? run : name, j, batch, seq, a->position + seq, &l->kernel_index, &l->flops,
                                          &l->bytes)))
            goto done;
        msac_kernel_info ki;
        msac_plan_kernel_info(plan, l->kernel_index, &ki);
        l->kernel = ki.name;
        l->ms = ms[j];
    }
    ok = true;
done:
    msac_session_destroy(s);
    free(prompt);
    free(ms);
    return ok;
}

int cli_bench(int argc, char **argv)
{
    BenchArgs a;
    int rc = parse_args(argc, argv, &a);
    if (rc < 0) {
        usage(stdout);
        return 0;
    }
    if (rc) {
        fprintf(stderr, "%s(msac bench --help for more)\n", synopsis);
        return 2;
    }
    bool yaml = !a.input || cli_is_yaml(a.input); /* no input: --kernel's generated model */
    if (a.target && !yaml) {
        fprintf(stderr, "msac bench: --target applies to a MODEL.yaml; %s is a compiled plan\n", a.input);
        return 2;
    }
    if ((a.tuning || a.no_tuning) && !yaml) {
        fprintf(stderr, "msac bench: --tuning and --no-tuning apply to a MODEL.yaml; %s is a compiled plan\n", a.input);
        return 2;
    }
    msac_plan *plan = NULL;
    msac_device *dev = NULL;
    BenchReport r = {.peak_tflops = a.peak_tflops, .peak_gbs = a.peak_gbs, .warmup = a.warmup, .iters = a.iters};
    rc = 1;
    if (yaml ? !compile_yaml(&a, &plan) : !report(msac_plan_load(a.input, &plan)))
        goto out;
    msac_status st = msac_device_open(0, &dev);
    if (st) {
        fprintf(stderr, "msac bench: no GPU: %s\n", msac_status_message(st));
        msac_status_free(st);
        goto out;
    }
    msac_device_info di;
    msac_device_get_info(dev, &di);
    msac_plan_info pi;
    msac_plan_get_info(plan, &pi);
    r.device = di.name;
    r.cc_major = di.cc_major;
    r.cc_minor = di.cc_minor;
    r.sm_count = di.sm_count;
    r.model = pi.model;
    r.target = pi.target;
    r.weight_bytes = weight_bytes(plan, pi.num_weights);
    printf("device %s (sm_%d%d, %d SMs, driver %d)\n", di.name, di.cc_major, di.cc_minor, di.sm_count,
           di.driver_version);
    printf("plan %s, target %s, %.1f MB of weights; roofline peaks %.0f TFLOP/s, %.0f GB/s\n", pi.model, pi.target,
           r.weight_bytes / 1e6, a.peak_tflops, a.peak_gbs);
    cli_print_tuning(stdout, plan, dev, false);
    if (a.prefill && !time_program(dev, plan, &a, "prefill", a.batch, a.seq, &r.prog[r.nprograms++]))
        goto out;
    if (a.decode && !time_program(dev, plan, &a, "decode", a.dbatch, 1, &r.prog[r.nprograms++]))
        goto out;
    int matched = 0;
    for (int i = 0; i < r.nprograms; i++)
        if (a.kernel)
            matched += bench_print_kernel(stdout, &r, &r.prog[i], a.kernel);
        else
            bench_print_program(stdout, &r, &r.prog[i]);
    if (a.kernel && !matched) {
        fprintf(stderr, "msac bench: no launch of a kernel named %s* in the timed programs (msac info lists the "
                        "plan's kernels)\n", a.kernel);
        goto out;
    }
    char why[1024];
    if (a.json && !bench_write_json(a.json, &r, why, sizeof why)) {
        fprintf(stderr, "msac bench: %s\n", why);
        goto out;
    }
    rc = 0;
out:
    for (int i = 0; i < r.nprograms; i++)
        free(r.prog[i].launch);
    msac_device_close(dev);
    msac_plan_free(plan);
    return rc;
}
