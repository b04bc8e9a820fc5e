/* bench_report.h — the numbers `msac bench` measured and the cost model's
 * figures for them, and the two ways of reporting them: a text table per
 * program (launches and kernels against the roofline) and a JSON file. */
#pragma once
#include <stdbool.h>
#include <stdio.h>

/* One launch of a timed program. */
typedef struct BenchLaunch {
    const char *kernel; /* kernel instance name (owned by the plan) */
    int kernel_index;   /* its index in the plan */
    float ms;           /* median device time */
    double flops;       /* cost model: floating-point operations */
    double bytes;       /* cost model: fewest bytes through device memory */
} BenchLaunch;

/* One timed program. */
typedef struct BenchProgram {
    const char *name;      /* "prefill" or "decode" */
    int batch, seq, ctx;   /* sizes it ran at (ctx: the cost model's) */
    int nlaunch;           /* launches */
    BenchLaunch *launch;   /* [nlaunch] */
    float total_ms;        /* median of whole runs, back to back */
    bool graph;            /* decode with CUDA graphs enabled: whole runs replay the captured step */
} BenchProgram;

/* Everything one `msac bench` reports. */
typedef struct BenchReport {
    const char *device;    /* device name */
    int cc_major, cc_minor; /* its compute capability */
    int sm_count;          /* its multiprocessors */
    const char *model;     /* plan's model name */
    const char *target;    /* plan's target */
    double weight_bytes;   /* bytes of all weights as the device holds them */
    double peak_tflops;    /* roofline: tensor-core peak, TFLOP/s */
    double peak_gbs;       /* roofline: memory bandwidth, GB/s */
    int warmup, iters;     /* runs per program: untimed, timed */
    int nprograms;         /* timed programs */
    BenchProgram prog[2];  /* [nprograms] */
} BenchReport;

/* Sum of the launch medians of a program, ms. */
double bench_launch_sum_ms(const BenchProgram *p);
/* Tokens per second of the whole-run median: batch·seq / total. */
double bench_tokens_per_s(const BenchProgram *p);
/* Seconds the roofline allows for `flops` and `bytes`; *out_math says
 * whether the math term is the larger. */
double bench_roofline_s(const BenchReport *r, double flops, double bytes, bool *out_math);

/* The text report of program p (its launch table, the kernels summed over
 * launches, and its totals). */
void bench_print_program(FILE *f, const BenchReport *r, const BenchProgram *p);
/* msac bench --kernel: the launches of p whose kernel name starts with
 * `prefix`, and their sum against the roofline; returns how many matched
 * (0: one line saying so). */
int bench_print_kernel(FILE *f, const BenchReport *r, const BenchProgram *p, const char *prefix);
/* Writes the JSON report to path atomically (atomic_file.h); false with the
 * reason in err on failure. */
bool bench_write_json(const char *path, const BenchReport *r, char *err, size_t errlen);
