/* bench_report.c — `msac bench` output: per program a table of launches
 * (median µs, share of the program, achieved TFLOP/s and GB/s from the
 * plan's cost model, roofline % and the bound), the same summed per
 * kernel, the totals; and the JSON file with the same numbers. */
#include "bench_report.h"

#include "atomic_file.h"
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

double bench_launch_sum_ms(const BenchProgram *p)
{
    double sum = 0;
    for (int j = 0; j < p->nlaunch; j++)
        sum += p->launch[j].ms;
    return sum;
}

double bench_tokens_per_s(const BenchProgram *p)
{
    return p->total_ms > 0 ? (double)p->batch * p->seq / (p->total_ms / 1e3) : 0;
}

double bench_roofline_s(const BenchReport *r, double flops, double bytes, bool *out_math)
{
    double math = flops / (r->peak_tflops * 1e12), mem = bytes / (r->peak_gbs * 1e9);
    *out_math = math > mem;
    return math > mem ? math : mem;
}

/* One table row: label, time, share, and the rates against the roofline. */
static void print_row(FILE *f, const BenchReport *r, const char *index, const char *label, double ms,
                      double share_of_ms, double flops, double bytes)
{
    fprintf(f, "  %5s  %-50s %10.2f %7.1f", index, label, ms * 1e3, share_of_ms > 0 ? 100 * ms / share_of_ms : 0);
    if (ms <= 0 || (flops <= 0 && bytes <= 0)) {
        fprintf(f, " %9s %9s %10s  %s\n", "-", "-", "-", "-");
        return;
    }
    bool math;
    double s = ms / 1e3, roof = bench_roofline_s(r, flops, bytes, &math);
    fprintf(f, " %9.2f %9.1f %10.1f  %s\n", flops / s / 1e12, bytes / s / 1e9, 100 * roof / s, math ? "math" : "mem");
}

static void print_header(FILE *f, const char *first)
{
    fprintf(f, "  %5s  %-50s %10s %7s %9s %9s %10s  %s\n", first, "kernel", "median µs", "% prog", "TFLOP/s", "GB/s",
            "roofline %", "bound");
}

/* Per-kernel sums over the program's launches, largest time first. */
typedef struct KernelSum {
    int kernel;          /* plan kernel index */
    const char *name;    /* its name */
    int count;           /* launches of it */
    double ms, flops, bytes; /* summed */
} KernelSum;

static int cmp_sum(const void *a, const void *b)
{
    double x = ((const KernelSum *)a)->ms, y = ((const KernelSum *)b)->ms;
    return (x < y) - (x > y);
}

static void print_kernels(FILE *f, const BenchReport *r, const BenchProgram *p, double sum_ms)
{
    KernelSum *k = calloc((size_t)(p->nlaunch ? p->nlaunch : 1), sizeof *k);
    if (!k)
        return;
    int n = 0;
    for (int j = 0; j < p->nlaunch; j++) {
        const BenchLaunch *l = &p->launch[j];
        int i = 0;
        while (i < n && k[i].kernel != l->kernel_index)
            i++;
        if (i == n)
            k[n++] = (KernelSum){.kernel = l->kernel_index, .name = l->kernel};
        k[i].count++;
        k[i].ms += l->ms;
        k[i].flops += l->flops;
        k[i].bytes += l->bytes;
    }
    qsort(k, (size_t)n, sizeof *k, cmp_sum);
    fprintf(f, "\n  by kernel (summed over its launches):\n");
    print_header(f, "count");
    for (int i = 0; i < n; i++) {
        char count[16];
        snprintf(count, sizeof count, "%d", k[i].count);
        print_row(f, r, count, k[i].name, k[i].ms, sum_ms, k[i].flops, k[i].bytes);
    }
    free(k);
}

void bench_print_program(FILE *f, const BenchReport *r, const BenchProgram *p)
{
    double sum_ms = bench_launch_sum_ms(p);
    fprintf(f, "\n%s: batch %d, seq %d (cost model at ctx %d), %d launches; median of %d runs after %d warm-up\n",
            p->name, p->batch, p->seq, p->ctx, p->nlaunch, r->iters, r->warmup);
    print_header(f, "#");
    double roof_s = 0, flops = 0, bytes = 0;
    for (int j = 0; j < p->nlaunch; j++) {
        const BenchLaunch *l = &p->launch[j];
        char idx[16];
        snprintf(idx, sizeof idx, "%d", j);
        print_row(f, r, idx, l->kernel, l->ms, sum_ms, l->flops, l->bytes);
        bool math;
        roof_s += bench_roofline_s(r, l->flops, l->bytes, &math);
        flops += l->flops;
        bytes += l->bytes;
    }
    if (p->nlaunch > 1)
        print_kernels(f, r, p, sum_ms);
    fprintf(f, "\n  total %.4f ms (median whole run%s); sum of launch medians %.4f ms\n", p->total_ms,
            p->graph ? ", CUDA graph" : ", plain launches", sum_ms);
    fprintf(f, "  %.0f tokens/s (%s)\n", bench_tokens_per_s(p),
            !strcmp(p->name, "decode") ? "batch / total" : "batch * seq / total");
    if (p->total_ms > 0)
        fprintf(f, "  cost model: %.3f GFLOP, %.1f MB; program roofline %.1f%% (sum of launch roofline times / total)\n",
                flops / 1e9, bytes / 1e6, 100 * roof_s / (p->total_ms / 1e3));
}

int bench_print_kernel(FILE *f, const BenchReport *r, const BenchProgram *p, const char *prefix)
{
    double sum_ms = bench_launch_sum_ms(p), ms = 0, flops = 0, bytes = 0;
    size_t plen = strlen(prefix);
    int n = 0;
    for (int j = 0; j < p->nlaunch; j++)
        n += !strncmp(p->launch[j].kernel, prefix, plen);
    fprintf(f, "\n%s: batch %d, seq %d (cost model at ctx %d): %d of %d launches are %s*; median of %d runs after %d "
               "warm-up\n",
            p->name, p->batch, p->seq, p->ctx, n, p->nlaunch, prefix, r->iters, r->warmup);
    if (!n)
        return 0;
    print_header(f, "#");
    for (int j = 0; j < p->nlaunch; j++) {
        const BenchLaunch *l = &p->launch[j];
        if (strncmp(l->kernel, prefix, plen))
            continue;
        char idx[16];
        snprintf(idx, sizeof idx, "%d", j);
        print_row(f, r, idx, l->kernel, l->ms, sum_ms, l->flops, l->bytes);
        ms += l->ms;
        flops += l->flops;
        bytes += l->bytes;
    }
    if (n > 1)
        print_row(f, r, "sum", prefix, ms, sum_ms, flops, bytes);
    fprintf(f, "  (%% prog: of the sum of the program's launch medians, %.4f ms)\n", sum_ms);
    return n;
}

bool bench_write_json(const char *path, const BenchReport *r, char *err, size_t errlen)
{
    AtomicStream out;
    FILE *f = atomic_stream_open(&out);
    if (!f)
        return snprintf(err, errlen, "out of memory writing %s", path), false;
    fprintf(f, "{\n  \"device\": ");
    json_write_string(f, r->device);
    fprintf(f, ",\n  \"compute_capability\": \"%d.%d\",\n  \"sm_count\": %d,\n  \"model\": ", r->cc_major,
            r->cc_minor, r->sm_count);
    json_write_string(f, r->model);
    fprintf(f, ",\n  \"target\": ");
    json_write_string(f, r->target);
    fprintf(f, ",\n  \"weight_bytes\": %.17g", r->weight_bytes);
    fprintf(f, ",\n  \"peak_tflops\": %.17g,\n  \"peak_gbs\": %.17g,\n  \"warmup\": %d,\n  \"iters\": %d,\n",
            r->peak_tflops, r->peak_gbs, r->warmup, r->iters);
    fprintf(f, "  \"programs\": {");
    for (int i = 0; i < r->nprograms; i++) {
        const BenchProgram *p = &r->prog[i];
        fprintf(f, "%s\n    ", i ? "," : "");
        json_write_string(f, p->name);
        fprintf(f, ": {\n      \"batch\": %d,\n      \"seq\": %d,\n      \"ctx\": %d,\n      \"graph\": %s,\n", p->batch,
                p->seq, p->ctx, p->graph ? "true" : "false");
        fprintf(f, "      \"total_ms\": %.9g,\n      \"sum_launch_ms\": %.9g,\n      \"tokens_per_s\": %.9g,\n",
                p->total_ms, bench_launch_sum_ms(p), bench_tokens_per_s(p));
        fprintf(f, "      \"launches\": [");
        for (int j = 0; j < p->nlaunch; j++) {
            const BenchLaunch *l = &p->launch[j];
            fprintf(f, "%s\n        {\"kernel\": ", j ? "," : "");
            json_write_string(f, l->kernel);
            fprintf(f, ", \"ms\": %.9g, \"flops\": %.17g, \"bytes\": %.17g}", l->ms, l->flops, l->bytes);
        }
        fprintf(f, "\n      ]\n    }");
    }
    fprintf(f, "\n  }\n}\n");
    return atomic_stream_commit(&out, path, err, errlen);
}
