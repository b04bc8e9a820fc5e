/* bench.c — msac_session_bench: timing a program on a session with CUDA
 * events, whole runs and launch by launch (see runtime.h for the contract).
 *
 * Runs go through the session's own steps (rt_session_bind, _issue,
 * _prepare_graph), so what is timed is exactly what prefill/decode run.
 * Per-launch runs are issued behind a spin kernel (PTX below) that holds the
 * stream for about twice as long as the host took to enqueue the previous
 * run: the launches then reach the GPU before it is free and run back to
 * back, and the time between two marks is the launch's device time rather
 * than the host's launch rate. Everything a call creates (events, the spin
 * module, host arrays) is released before it returns. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rt_session.h"

/* A one-thread kernel that spins until `ns` nanoseconds of %globaltimer have
 * passed since it started. sm_70 PTX: the driver JITs it for newer GPUs. */
static const char spin_ptx[] =
    ".version 7.0\n"
    ".target sm_70\n"
    ".address_size 64\n"
    ".visible .entry msac_bench_spin(.param .u64 p_ns)\n"
    "{\n"
    "  .reg .pred %p<2>;\n"
    "  .reg .b64 %rd<5>;\n"
    "  ld.param.u64 %rd1, [p_ns];\n"
    "  mov.u64 %rd2, %globaltimer;\n"
    "  add.u64 %rd3, %rd2, %rd1;\n"
    "SPIN:\n"
    "  mov.u64 %rd4, %globaltimer;\n"
    "  setp.lt.u64 %p1, %rd4, %rd3;\n"
    "  @%p1 bra SPIN;\n"
    "  ret;\n"
    "}\n";

/* Spin bounds: at least this long, at most this long (nanoseconds). */
#define SPIN_MIN_NS 20000ull
#define SPIN_MAX_NS 200000000ull

/* Resources of one bench call; bench_free releases whatever was made. */
typedef struct Bench {
    msac_session *s;    /* the session timed */
    int prog;           /* program index */
    uint32_t nlaunch;   /* its launches */
    int batch, seq;     /* call sizes */
    CUmodule spin_mod;  /* the spin kernel's module, NULL until loaded */
    CUfunction spin;    /* its entry */
    uint64_t spin_ns;   /* how long the next spin holds the stream */
    CUevent *marks;     /* [nlaunch + 1] per-launch marks, NULL entries until made */
    float *total;       /* [iters] whole-run times */
    float *per;         /* [nlaunch * iters] launch j of run i at [j * iters + i] */
} Bench;

static double host_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* Median of v[0..n) (n >= 1); sorts v. */
static float median(float *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_float);
    return n % 2 ? v[n / 2] : 0.5f * (v[n / 2 - 1] + v[n / 2]);
}

static void bench_free(Bench *b)
{
    const CudaApi *cu = &b->s->dev->cu;
    cu->StreamSynchronize(b->s->stream); /* nothing may still use the events or the module */
    if (b->marks)
        for (uint32_t j = 0; j <= b->nlaunch; j++)
            if (b->marks[j])
                cu->EventDestroy(b->marks[j]);
    if (b->spin_mod)
        cu->ModuleUnload(b->spin_mod);
    free(b->marks);
    free(b->total);
    free(b->per);
}

/* Allocates the host arrays, creates the marks and loads the spin kernel. */
static msac_status bench_init(Bench *b, int iters)
{
    const CudaApi *cu = &b->s->dev->cu;
    b->marks = calloc(b->nlaunch + 1, sizeof *b->marks);
    b->total = calloc((size_t)iters, sizeof *b->total);
    b->per = calloc((size_t)iters * (b->nlaunch ? b->nlaunch : 1), sizeof *b->per);
    if (!b->marks || !b->total || !b->per)
        return status_oom();
    for (uint32_t j = 0; j <= b->nlaunch; j++)
        CU_RETURN(cu->EventCreate(&b->marks[j], CU_EVENT_DEFAULT), "bench: cuEventCreate");
    CU_RETURN(cu->ModuleLoadDataEx(&b->spin_mod, spin_ptx, 0, NULL, NULL), "bench: cuModuleLoadDataEx(spin kernel)");
    CU_RETURN(cu->ModuleGetFunction(&b->spin, b->spin_mod, "msac_bench_spin"), "bench: cuModuleGetFunction(spin)");
    b->spin_ns = SPIN_MIN_NS;
    return NULL;
}

/* One whole run between the session's two events, as prefill/decode issue
 * it; *out_ms gets its device time (when non-NULL). */
static msac_status whole_run(Bench *b, float *out_ms)
{
    msac_session *s = b->s;
    const CudaApi *cu = &s->dev->cu;
    CU_RETURN(cu->EventRecord(s->ev_start, s->stream), "bench: cuEventRecord");
    RT_RETURN_IF_ERROR(rt_session_issue(s, b->prog, b->batch, b->seq, NULL));
    CU_RETURN(cu->EventRecord(s->ev_end, s->stream), "bench: cuEventRecord");
    CU_RETURN(cu->StreamSynchronize(s->stream), "bench: running program %s (batch %d, seq %d)",
              s->plan->p->programs[b->prog].name, b->batch, b->seq);
    if (out_ms)
        CU_RETURN(cu->EventElapsedTime(out_ms, s->ev_start, s->ev_end), "bench: cuEventElapsedTime");
    return NULL;
}

/* One run with a mark around every launch, behind the spin kernel; run
 * `i` >= 0 stores launch j's time at per[j * iters + i], i < 0 only
 * calibrates the spin. */
static msac_status marked_run(Bench *b, int i, int iters)
{
    msac_session *s = b->s;
    const CudaApi *cu = &s->dev->cu;
    unsigned long long ns = b->spin_ns;
    void *params[1] = {&ns};
    CU_RETURN(cu->LaunchKernel(b->spin, 1, 1, 1, 1, 1, 1, 0, s->stream, params, NULL), "bench: cuLaunchKernel(spin)");
    double t0 = host_ns();
    RT_RETURN_IF_ERROR(rt_session_issue(s, b->prog, b->batch, b->seq, b->marks));
    double enqueue = host_ns() - t0;
    /* the next run's spin covers twice this enqueue time */
    uint64_t want = (uint64_t)(2.0 * enqueue) + SPIN_MIN_NS;
    if (want > b->spin_ns)
        b->spin_ns = want < SPIN_MAX_NS ? want : SPIN_MAX_NS;
    CU_RETURN(cu->StreamSynchronize(s->stream), "bench: running program %s launch by launch (batch %d, seq %d)",
              s->plan->p->programs[b->prog].name, b->batch, b->seq);
    if (i < 0)
        return NULL;
    for (uint32_t j = 0; j < b->nlaunch; j++)
        CU_RETURN(cu->EventElapsedTime(&b->per[(size_t)j * (size_t)iters + (size_t)i], b->marks[j], b->marks[j + 1]),
                  "bench: cuEventElapsedTime(launch %u)", j);
    return NULL;
}

/* Checks the arguments; *out_prog gets the program index. */
static msac_status check_args(const msac_session *s, const char *program, int batch, int seq, int warmup, int iters,
                              const float *out_total_ms, int *out_prog)
{
    if (!s || !program || !out_total_ms)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_session_bench: %s is NULL",
                           !s ? "session" : !program ? "program" : "out_total_ms");
    bool decode = !strcmp(program, "decode");
    if (!decode && strcmp(program, "prefill"))
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "bench: unknown program \"%s\" (prefill or decode)", program);
    int prog = decode ? rt_decode_program(s, batch) : s->prefill;
    if (prog < 0)
        return status_make(MSAC_ERR_UNSUPPORTED, "bench: the plan has no \"%s\" program", program);
    if (decode && seq != 1)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "bench: decode runs one token per sequence, seq %d given", seq);
    if (warmup < 0 || iters < 1)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "bench: need warmup >= 0 and iters >= 1 (got %d and %d)", warmup,
                           iters);
    const msac_session_options *o = &s->opts;
    char what[32];
    snprintf(what, sizeof what, "bench %s", program);
    RT_RETURN_IF_ERROR(rt_check_sizes(what, o->max_batch, o->max_seq, o->max_ctx, NULL, batch, seq));
    *out_prog = prog;
    return NULL;
}

msac_status msac_session_bench(msac_session *s, const char *program, int batch, int seq, int warmup, int iters,
                               float *out_launch_ms, float *out_total_ms)
{
    return msac_session_bench_at(s, program, batch, seq, 0, warmup, iters, out_launch_ms, out_total_ms);
}

msac_status msac_session_bench_at(msac_session *s, const char *program, int batch, int seq, int position, int warmup,
                                  int iters, float *out_launch_ms, float *out_total_ms)
{
    int prog = -1;
    RT_RETURN_IF_ERROR(check_args(s, program, batch, seq, warmup, iters, out_total_ms, &prog));
    if (position < 0 || (int64_t)position + seq > s->opts.max_ctx)
        return status_make(MSAC_ERR_INVALID_ARGUMENT,
                           "msac_session_bench: position %d + seq %d does not fit the session's max_ctx %d", position,
                           seq, s->opts.max_ctx);
    Bench b = {.s = s, .prog = prog, .nlaunch = s->plan->p->programs[prog].nlaunch, .batch = batch, .seq = seq};
    msac_status st = NULL;
    if ((st = rt_session_bind(s, batch, seq)) || (st = rt_session_upload_pos(s, "bench", 0, batch, position)) ||
        (st = bench_init(&b, iters)))
        goto done;
    rt_session_prepare_graph(s, prog, batch);
    for (int i = 0; i < warmup && !st; i++)
        st = whole_run(&b, NULL);
    for (int i = 0; i < iters && !st; i++)
        st = whole_run(&b, &b.total[i]);
    if (!st)
        st = marked_run(&b, -1, iters); /* sizes the spin for this program */
    for (int i = 0; i < iters && !st; i++)
        st = marked_run(&b, i, iters);
    if (st)
        goto done;
    *out_total_ms = median(b.total, iters);
    if (out_launch_ms)
        for (uint32_t j = 0; j < b.nlaunch; j++)
            out_launch_ms[j] = median(&b.per[(size_t)j * (size_t)iters], iters);
done:
    bench_free(&b);
    return st;
}
