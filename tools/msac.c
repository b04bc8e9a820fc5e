/* msac.c — the msac command-line tool: a thin wrapper over libmsac (compile)
 * and libmsacrt (info, run, bench). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compile.h"
#include "frontend.h"
#include "msac/runtime.h"
#include "passes.h"
#include "tune_cache.h"

static const char usage_text[] =
    "msac " MSAC_VERSION " — compile hybrid Mamba / sparse-attention models to fused GPU kernels\n"
    "\n"
    "usage:\n"
    "  msac compile MODEL.yaml -o PLAN [--target sm_90a|sm_80] [--emit-ptx DIR]\n"
    "               [--dump=after-PASS | --dump=all] [--schedule KERNEL:key=val,...] [-q]\n"
    "               [--tuning FILE | --no-tuning] [--tune-class PREFILL_TOKENS,DECODE_BATCH] [--one-decode]\n"
    "               [-j THREADS]\n"
    "      Lower the model to IR, run the passes, generate PTX (LLVM NVPTX) and write\n"
    "      the plan file. --dump prints the IR after a pass (all: after every pass).\n"
    "      --schedule overrides a kernel template's schedule (repeatable), e.g.\n"
    "      gemm:bk=64,stages=4 (see docs/kernels.md for each template's parameters).\n"
    "      Kernels found in the tuning cache (default $MSAC_TUNING_CACHE, else\n"
    "      ~/.cache/msac/tuning.json) for this GPU take its schedules: prefill the shape\n"
    "      class nearest --tune-class (default: the largest tuned); decode one program per\n"
    "      tuned batch class, the runtime picking by batch size. --schedule beats both.\n"
    "      Without tuned decode classes the plan has two decode programs: \"decode\" and\n"
    "      \"decode@33\" (from batch 33 on: matmul schedules for many rows); --one-decode\n"
    "      keeps only the first. -j: threads emitting kernels through LLVM (default one per\n"
    "      CPU, at most 8; the plan is the same for any count).\n"
    "  msac info PLAN [--memory BATCH CTX [--seq S]]\n"
    "      Kernels, launch programs, buffer plan and weight table of a plan. With\n"
    "      --memory: the device memory a session of BATCH sequences and CTX tokens needs\n"
    "      (weights, states, inputs/outputs, workspace for prefill calls of S tokens,\n"
    "      default CTX; total), computed before anything is allocated.\n"
    "  msac run PLAN [--device gpu|cpu|auto] [--weights FILE.safetensors] [--seed N]\n"
    "               [--prompt 1,2,3] [-n N] [--logits FILE.npy]\n"
    "      Greedy generation; prints the tokens and prefill/decode tokens per second.\n"
    "      Without --weights the plan's seeded init is used (same on GPU and CPU).\n"
    "  msac bench PLAN|MODEL.yaml [--kernel NAME] [--batch B] [--seq S] [--decode-batch B]\n"
    "               [--program prefill|decode|all] [--warmup N] [--iters N] [--target sm_90a|sm_80]\n"
    "               [--schedule KERNEL:key=val,...] [--tuning FILE | --no-tuning]\n"
    "               [--position P] [--zero-caches] [--peak-tflops T] [--peak-gbs G] [--json FILE]\n"
    "               [--no-graphs]\n"
    "      Time prefill and decode on GPU 0: median per launch and per program, TFLOP/s,\n"
    "      GB/s and roofline % from the plan's cost model, tokens/s (msac bench --help).\n"
    "      A MODEL.yaml is compiled first as msac compile would (tuning cache included).\n"
    "  msac bench --kernel NAME [--heads H] [--headdim P] [--d-state N] [--ngroups G] [--chunk C] ...\n"
    "      --kernel NAME: only the launches whose kernel name starts with NAME; without a PLAN\n"
    "      or MODEL.yaml, of a generated one-layer Mamba2 model of those shapes.\n"
    "  msac tune PLAN|MODEL.yaml [--cache FILE] [--program prefill|decode|all] [--kernel T] ...\n"
    "  msac tune --show [--cache FILE]\n"
    "      Autotune on GPU 0: every schedule of each kernel's tuning space, checked against\n"
    "      the default's output, timed; the best per kernel goes to the tuning cache\n"
    "      (msac tune --help).\n"
    "  msac import hf DIR -o MODEL.yaml [--name NAME]\n"
    "      A Hugging Face Mamba2ForCausalLM directory (config.json) to an msac model; its\n"
    "      safetensors, if any, are checked against it (weight names are Hugging Face's).\n"
    "  msac --help | --version\n"
    "\n"
    "passes: ";

static void usage(FILE *f)
{
    fputs(usage_text, f);
    for (int i = 0; i < pass_count; i++)
        fprintf(f, "%s%s", i ? " " : "", pass_table[i].name);
    fputs("\ntargets: sm_80, sm_90a\n", f);
}

static int cmd_compile(int argc, char **argv)
{
    const char *in = NULL, *out = NULL, *tuning = NULL;
    bool no_tuning = false;
    CompileOptions o;
    compile_options_init(&o);
    o.progress = true;
    ScheduleSet sched = {0};
    o.schedule = &sched;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-o") && i + 1 < argc)
            out = argv[++i];
        else if (!strcmp(a, "--target") && i + 1 < argc)
            o.target = argv[++i];
        else if (!strcmp(a, "--emit-ptx") && i + 1 < argc)
            o.emit_ptx_dir = argv[++i];
        else if (!strcmp(a, "--schedule") && i + 1 < argc) {
            Diag sd = {0};
            if (!schedule_parse(&sched, argv[++i], &sd)) {
                fprintf(stderr, "msac compile: %s\n", sd.msg);
                return 2;
            }
        }
        else if (!strncmp(a, "--dump=after-", 13))
            o.dump = a + 13;
        else if (!strcmp(a, "--dump=all"))
            o.dump = "all";
        else if (!strcmp(a, "-q"))
            o.progress = false;
        else if (!strcmp(a, "--tuning") && i + 1 < argc)
            tuning = argv[++i];
        else if (!strcmp(a, "--no-tuning"))
            no_tuning = true;
        else if (!strcmp(a, "--one-decode"))
            o.no_batch_classes = true;
        else if (!strcmp(a, "-j") && i + 1 < argc) {
            if (!cli_parse_int(argv[++i], 1, 256, &o.threads)) {
                fprintf(stderr, "msac compile: -j must be a thread count from 1 to 256, got '%s'\n", argv[i]);
                return 2;
            }
        }
        else if (!strcmp(a, "--tune-class") && i + 1 < argc) {
            int32_t *v = NULL;
            int nv = 0;
            if (!cli_parse_ints(argv[++i], &v, &nv) || nv != 2 || v[0] < 1 || v[1] < 1) {
                fprintf(stderr, "msac compile: --tune-class must be PREFILL_TOKENS,DECODE_BATCH, got '%s'\n", argv[i]);
                free(v);
                return 2;
            }
            o.tune_tokens[0] = v[0];
            o.tune_tokens[1] = v[1];
            free(v);
        }
        else if (!strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (a[0] != '-' && !in)
            in = a;
        else {
            fprintf(stderr, "msac compile: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (!in || (!out && !o.dump)) {
        fprintf(stderr, "usage: msac compile MODEL.yaml -o PLAN [--target sm_90a|sm_80] [--emit-ptx DIR] "
                        "[--dump=after-PASS|all] [-q]\n");
        return 2;
    }
    if (o.dump && strcmp(o.dump, "all") && !pass_lookup(o.dump)) {
        fprintf(stderr, "msac compile: unknown pass '%s' in --dump (see msac --help)\n", o.dump);
        return 2;
    }
    TuneCache cache = {0};
    TuneDevice tdev;
    if (!no_tuning && !cli_use_tuning("msac compile", tuning, o.progress, &cache, &tdev, &o))
        return 1;
    Diag d = {0};
    char *text = frontend_read_file(in, &d);
    if (!text) {
        fprintf(stderr, "msac: %s\n", d.msg);
        tune_cache_free(&cache);
        return 1;
    }
    Plan *plan = NULL;
    int rc = 1;
    if (!msac_compile(text, in, &o, &plan, &d)) {
        diag_print(&d, d.file ? text : NULL, stderr);
    } else if (out) {
        char err[512];
        if (plan_write_file(plan, out, err, sizeof err)) {
            rc = 0;
            if (o.progress)
                fprintf(stderr, "msac: wrote %s\n", out);
        } else {
            fprintf(stderr, "msac: %s\n", err);
        }
    } else {
        rc = 0;
    }
    if (plan && o.tuning && o.progress)
        fprintf(stderr, "msac: %s nodes took tuned schedules\n", plan_meta(plan, "tuned_nodes"));
    plan_free(plan);
    free(text);
    tune_cache_free(&cache);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "--help") || !strcmp(cmd, "-h") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(cmd, "--version")) {
        printf("msac %s\n", MSAC_VERSION);
        return 0;
    }
    if (!strcmp(cmd, "compile"))
        return cmd_compile(argc - 1, argv + 1);
    if (!strcmp(cmd, "import"))
        return cli_import(argc - 1, argv + 1);
    if (!strcmp(cmd, "tune"))
        return cli_tune(argc - 1, argv + 1);
    if (!strcmp(cmd, "info"))
        return cli_info(argc - 1, argv + 1);
    if (!strcmp(cmd, "run"))
        return cli_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench"))
        return cli_bench(argc - 1, argv + 1);
    fprintf(stderr, "msac: unknown command '%s'\n\n", cmd);
    usage(stderr);
    return 2;
}
