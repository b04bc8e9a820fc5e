/* fuzz_plan.c — fuzz target: the plan reader and everything the runtime
 * derives from a plan without a GPU.
 *
 * Each input runs twice: as it is, and with the header's payload size and
 * checksum made to match (so mutations get past the checksum and reach the
 * section decoders). For a plan that plan_read accepts:
 *   - writing it and reading it back must succeed and write identically;
 *   - msac_plan_load_memory wraps it (or refuses it with a status), and
 *     every info accessor, the memory and cost figures, the session layout,
 *     the per-call buffer addresses and every launch's kernel arguments
 *     are computed (the driver-free half of msac_session_*);
 *   - the target is checked against an sm_90 and an sm_80 device;
 *   - the embedded reference graph is parsed, verified and, when its
 *     values are small, run on the CPU reference with the plan's seeded
 *     weights, as `msac run --device cpu` does;
 *   - when the libcuda loaded is the fake driver of the runtime tests
 *     (tests/runtime/fakecuda: device memory in host memory, so ASan sees
 *     every copy; 16 MiB of it), a session is created at small limits and
 *     runs prefill, ragged prefill, decode and reset. Never on a real GPU.
 * A refusal must say why, starting "plan: ". */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eval.h"
#include "fuzz.h"
#include "ir.h"
#include "rt_internal.h"

/* Header offsets of the payload size and the checksum (plan_format.h). */
enum { H_PAYLOAD = 64, H_CHECKSUM = 72 };

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void ignore(msac_status st)
{
    if (st && !msac_status_message(st)[0])
        fuzz_fail("an error status without a message (%s)", msac_code_name(msac_status_code(st)));
    msac_status_free(st);
}

/* write(p) must read back and write identically. */
static void roundtrip(const Plan *p)
{
    uint8_t *b1, *b2;
    size_t n1, n2;
    char err[512];
    if (!plan_write(p, &b1, &n1))
        return; /* out of memory */
    Plan *q;
    if (!plan_read(b1, n1, &q, err, sizeof err))
        fuzz_fail("a plan that was read does not read back after writing: %s", err);
    if (!plan_write(q, &b2, &n2))
        fuzz_fail("writing a re-read plan failed");
    if (n1 != n2 || memcmp(b1, b2, n1))
        fuzz_fail("writing a plan is not stable (%zu vs %zu bytes)", n1, n2);
    free(b1);
    free(b2);
    plan_free(q);
}

/* The driver-free work of a session: layout, call buffers, launch args. */
static void session_math(const msac_plan *plan)
{
    const Plan *p = plan->p;
    RtLayout l;
    msac_status st = rt_layout_compute(plan, 2, 8, 16, &l);
    if (st) {
        ignore(st);
        return;
    }
    uint64_t *ptr = calloc(p->nbuffers + 1, sizeof *ptr), *size = calloc(p->nbuffers + 1, sizeof *size);
    if (ptr && size) {
        static const int64_t calls[][3] = {{1, 3, 16}, {2, 8, 16}, {2, 1, 16}};
        for (size_t c = 0; c < sizeof calls / sizeof calls[0]; c++) {
            st = rt_call_buffers(p, &l, 1u << 20, calls[c][0], calls[c][1], calls[c][2], ptr, size);
            if (st) {
                ignore(st);
                continue;
            }
            for (uint32_t i = 0; i < p->nprograms; i++)
                for (uint32_t j = 0; j < p->programs[i].nlaunch; j++) {
                    RtLaunch a;
                    ignore(rt_launch_args(p, &p->programs[i].launch[j], ptr, size, calls[c][0], calls[c][1],
                                          calls[c][2], &a));
                }
        }
    }
    free(ptr);
    free(size);
    rt_layout_free(&l);
}

/* Device 0 if it is the fake driver's, else NULL (opened once). */
static msac_device *fake_device(void)
{
    static int state; /* 0: not tried, 1: fake device open, -1: none */
    static msac_device *dev;
    if (!state) {
        state = -1;
        setenv("FAKE_CUDA_MEM", "16777216", 0); /* hostile plans' huge weights fail to allocate, fast */
        msac_status st = msac_device_open(0, &dev);
        if (!st) {
            msac_device_info di;
            msac_device_get_info(dev, &di);
            if (!strncmp(di.name, "Fake GPU", 8)) {
                state = 1;
            } else {
                msac_device_close(dev);
                dev = NULL;
            }
        }
        msac_status_free(st);
    }
    return state == 1 ? dev : NULL;
}

/* A session on the fake device: every call succeeds or says why. */
static void session_run(const msac_plan *plan)
{
    msac_device *dev = fake_device();
    if (!dev)
        return;
    msac_session_options o;
    msac_session_options_init(&o);
    o.max_batch = 2;
    o.max_seq = 4;
    o.max_ctx = 8;
    msac_session *s = NULL;
    msac_status st = msac_session_create(dev, plan, &o, &s);
    if (st) {
        ignore(st);
        return;
    }
    int64_t vocab = plan->vocab_size; /* a session needs one: >= 1 */
    int32_t tok[8];
    for (int i = 0; i < 8; i++)
        tok[i] = (int32_t)(i % vocab);
    /* logits only for a vocabulary small enough to hold on the host */
    float *logits = vocab <= (1 << 16) ? malloc(sizeof(float) * 8 * (size_t)vocab) : NULL;
    ignore(msac_session_prefill(s, 2, 3, tok, logits));
    ignore(msac_session_decode(s, 2, tok, logits));
    const int lens[2] = {2, 0};
    ignore(msac_session_prefill_ragged(s, 2, lens, tok, logits));
    ignore(msac_session_reset(s));
    ignore(msac_session_prefill(s, 1, 4, tok, logits));
    free(logits);
    msac_session_destroy(s);
}

enum { CPU_MAX_NUMEL = 1 << 18 }; /* values the CPU run takes on (speed, not safety) */

/* Whether every value of g has at most CPU_MAX_NUMEL elements at sym. */
static bool small_graph(const Graph *g, const int64_t sym[SYM_COUNT])
{
    for (int i = 0; i < g->nnodes; i++) {
        int64_t e = 1;
        for (int k = 0; k < g->nodes[i]->ndim; k++) {
            Dim x = g->nodes[i]->dim[k];
            int64_t v = x.sym ? sym[x.sym] : x.n;
            if (v > CPU_MAX_NUMEL || (e *= v) > CPU_MAX_NUMEL)
                return false;
        }
    }
    return true;
}

/* `msac run --device cpu`: the plan's graph on the CPU reference with its
 * seeded weights, three tokens. */
static void cpu_reference(const msac_plan *plan)
{
    const char *text = msac_plan_graph_text(plan);
    if (!text)
        return;
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = ir_parse(a, text, "plan graph", &d);
    const int64_t sym[SYM_COUNT] = {0, 1, 3, 8};
    if (g && ir_verify(g, &d) && small_graph(g, sym)) {
        msac_plan_info pi;
        msac_plan_get_info(plan, &pi);
        EvalStore *st = eval_store_new();
        bool ok = true;
        for (int i = 0; ok && i < pi.num_weights; i++) {
            msac_weight_info w;
            msac_plan_weight_info(plan, i, &w);
            int64_t n = 1;
            for (int k = 0; k < w.ndim && n <= CPU_MAX_NUMEL; k++)
                n *= w.dims[k] <= CPU_MAX_NUMEL ? w.dims[k] : CPU_MAX_NUMEL + 1;
            float *data = n <= CPU_MAX_NUMEL ? malloc(sizeof(float) * (size_t)n) : NULL;
            msac_status e = data ? msac_plan_weight_values(plan, i, NULL, 3, data) : NULL;
            if (!data || e) {
                ignore(e);
                free(data);
                ok = false;
            } else {
                eval_store_put(st, w.name, data, n);
            }
        }
        if (ok) {
            int64_t v = pi.vocab_size > 0 ? pi.vocab_size : 1;
            float tok[3] = {0, (float)(1 % v), (float)(2 % v)}, pos = 0;
            EvalInput in[2] = {{"tokens", tok, 3}, {"pos", &pos, 1}};
            EvalOutput out = {"logits", NULL, 0};
            if (eval_graph(g, st, sym, in, 2, &out, 1, &d))
                free(out.data);
            else if (!d.msg[0])
                fuzz_fail("the CPU reference failed without a message");
        }
        eval_store_free(st);
    }
    arena_free(a);
}

static void inspect(const msac_plan *plan)
{
    msac_plan_info pi;
    msac_plan_get_info(plan, &pi);
    char text[512];
    for (int i = 0; i < pi.num_kernels; i++) {
        msac_kernel_info k;
        if (msac_plan_kernel_info(plan, i, &k) || !msac_plan_kernel_ptx(plan, i))
            fuzz_fail("kernel %d of %d has no info", i, pi.num_kernels);
    }
    for (int i = 0; i < pi.num_programs; i++) {
        msac_program_info pr;
        if (msac_plan_program_info(plan, i, &pr))
            fuzz_fail("program %d of %d has no info", i, pi.num_programs);
        if (msac_plan_program_launches(plan, pr.name) < 0)
            fuzz_fail("program \"%s\" is not found by name", pr.name);
        for (int j = 0; j < pr.num_launches; j++) {
            int k;
            double flops, bytes;
            if (msac_plan_launch_info(plan, i, j, &k, text, sizeof text))
                fuzz_fail("launch %d of program %d has no info", j, i);
            ignore(msac_plan_launch_cost(plan, pr.name, j, 2, 5, 9, &k, &flops, &bytes));
        }
    }
    for (int i = 0; i < pi.num_buffers; i++) {
        msac_buffer_info b;
        if (msac_plan_buffer_info(plan, i, &b))
            fuzz_fail("buffer %d has no info", i);
    }
    for (int i = 0; i < pi.num_weights; i++) {
        msac_weight_info w;
        if (msac_plan_weight_info(plan, i, &w))
            fuzz_fail("weight %d has no info", i);
    }
    uint64_t mem;
    ignore(msac_plan_memory_required(plan, 1, 2048, 4096, &mem));
    ignore(rt_check_target(pi.target, "fuzz sm_90", 9, 0));
    ignore(rt_check_target(pi.target, "fuzz sm_80", 8, 0));
    session_math(plan);
    session_run(plan);

    cpu_reference(plan);
}

static void run(const uint8_t *data, size_t size)
{
    char err[512] = "";
    Plan *p = NULL;
    if (!plan_read(data, size, &p, err, sizeof err)) {
        if (strncmp(err, "plan: ", 6) || !err[6])
            fuzz_fail("plan_read refused without a message (\"%s\")", err);
        return;
    }
    roundtrip(p);
    plan_free(p);
    msac_plan *plan = NULL;
    msac_status st = msac_plan_load_memory(data, size, &plan);
    if (st) {
        if (msac_status_code(st) != MSAC_ERR_BAD_PLAN)
            fuzz_fail("msac_plan_load_memory: %s", msac_status_message(st));
        ignore(st);
        return;
    }
    inspect(plan);
    msac_plan_free(plan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(data, size);
    if (size < PLAN_HEADER_SIZE)
        return 0;
    /* Again with a matching payload size and checksum. */
    uint8_t *fixed = malloc(size);
    if (!fixed)
        return 0;
    memcpy(fixed, data, size);
    put_u64(fixed + H_PAYLOAD, size - PLAN_HEADER_SIZE);
    put_u64(fixed + H_CHECKSUM, plan_checksum(fixed, fixed + PLAN_HEADER_SIZE, size - PLAN_HEADER_SIZE));
    if (memcmp(fixed, data, size))
        run(fixed, size);
    free(fixed);
    return 0;
}
