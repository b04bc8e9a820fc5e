/* msac.c — the msac command-line tool: a thin wrapper over libmsac (compile)
 * and libmsacrt (info, run, bench). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "compile.h"
#include "frontend.h"
#include "passes.h"

static const char usage_text[] =
    "msac " MSAC_VERSION " — compile hybrid Mamba / sparse-attention models to fused GPU kernels\n"
    "\n"
    "usage:\n"
    "  msac compile MODEL.yaml -o PLAN [--target sm_90a|sm_80] [--emit-ptx DIR]\n"
    "               [--dump=after-PASS | --dump=all] [--schedule KERNEL:key=val,...] [-q]\n"
    "      Lower the model to IR, run the passes, generate PTX (LLVM NVPTX) and write\n"
    "      the plan file. --dump prints the IR after a pass (all: after every pass).\n"
    "      --schedule overrides a kernel template's schedule (repeatable), e.g.\n"
    "      gemm:bk=64,stages=4 (see docs/kernels.md for each template's parameters).\n"
    "  msac info PLAN [--memory BATCH CTX [--seq S]]\n"
    "      Kernels, launch programs, buffer plan and weight table of a plan. With\n"
    "      --memory: the device memory a session of BATCH sequences and CTX tokens needs\n"
    "      (weights, states, inputs/outputs, workspace for prefill calls of S tokens,\n"
    "      default CTX; total), computed before anything is allocated.\n"
    "  msac run PLAN [--device gpu|cpu|auto] [--weights FILE.safetensors] [--seed N]\n"
    "               [--prompt 1,2,3] [-n N] [--logits FILE.npy]\n"
    "      Greedy generation; prints the tokens and prefill/decode tokens per second.\n"
    "      Without --weights the plan's seeded init is used (same on GPU and CPU).\n"
    "  msac bench PLAN|MODEL.yaml [--batch B] [--seq S] [--decode-batch B]\n"
    "               [--program prefill|decode|all] [--warmup N] [--iters N] [--target sm_90a|sm_80]\n"
    "               [--peak-tflops T] [--peak-gbs G] [--json FILE] [--no-graphs]\n"
    "      Time prefill and decode on GPU 0: median per launch and per program, TFLOP/s,\n"
    "      GB/s and roofline % from the plan's cost model, tokens/s (msac bench --help).\n"
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
    const char *in = NULL, *out = NULL;
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
    Diag d = {0};
    char *text = frontend_read_file(in, &d);
    if (!text) {
        fprintf(stderr, "msac: %s\n", d.msg);
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
    plan_free(plan);
    free(text);
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
