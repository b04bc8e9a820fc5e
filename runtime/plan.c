/* plan.c — msac_plan: loading a plan file through plan_read and the info
 * accessors of runtime.h (kernels, programs, buffers, weights, meta). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rt_internal.h"

const char *rt_dtype_name(uint32_t dtype)
{
    switch (dtype) {
    case PDT_F32: return "f32";
    case PDT_BF16: return "bf16";
    case PDT_I32: return "i32";
    default: return "?";
    }
}

size_t rt_dtype_size(uint32_t dtype)
{
    switch (dtype) {
    case PDT_F32: return 4;
    case PDT_BF16: return 2;
    case PDT_I32: return 4;
    default: return 0;
    }
}

uint64_t rt_weight_numel(const PlanWeight *w)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < w->ndim && d < PLAN_MAX_DIMS; d++)
        n *= (uint64_t)w->dims[d];
    return n;
}

/* The seeded init of a weight as text: "normal(0.02)", "dt_bias(0.001,0.1)". */
static int format_init(const PlanWeight *w, char *buf, size_t n)
{
    double a = w->init_a, b = w->init_b;
    switch ((PlanInit)w->init) {
    case PINIT_ZEROS: return snprintf(buf, n, "zeros");
    case PINIT_ONES: return snprintf(buf, n, "ones");
    case PINIT_CONST: return snprintf(buf, n, "const(%g)", a);
    case PINIT_NORMAL: return snprintf(buf, n, "normal(%g)", a);
    case PINIT_UNIFORM: return snprintf(buf, n, "uniform(%g,%g)", a, b);
    case PINIT_LOG_UNIFORM: return snprintf(buf, n, "log_uniform(%g,%g)", a, b);
    case PINIT_DT_BIAS: return snprintf(buf, n, "dt_bias(%g,%g)", a, b);
    case PINIT_COUNT: break;
    }
    return snprintf(buf, n, "?");
}

/* "key=value,key=value" of a kernel's tunables, malloc'd. */
static char *format_params(const PlanKernel *k)
{
    size_t len = 1;
    for (uint32_t j = 0; j < k->nparams; j++)
        len += strlen(k->params[j].key) + 24;
    char *s = malloc(len), *q = s;
    if (!s)
        return NULL;
    *q = 0;
    for (uint32_t j = 0; j < k->nparams; j++)
        q += snprintf(q, len - (size_t)(q - s), "%s%s=%" PRId64, j ? "," : "", k->params[j].key,
                      k->params[j].value);
    return s;
}

void msac_plan_free(msac_plan *plan)
{
    if (!plan)
        return;
    if (plan->p) {
        for (uint32_t i = 0; plan->kernel_params && i < plan->p->nkernels; i++)
            free(plan->kernel_params[i]);
        for (uint32_t i = 0; plan->weight_init && i < plan->p->nweights; i++)
            free(plan->weight_init[i]);
    }
    free(plan->kernel_params);
    free(plan->weight_init);
    plan_free(plan->p);
    free(plan);
}

/* Wraps a decoded plan: precomputes the info text, reads vocab_size. Takes
 * ownership of p. */
static msac_status plan_wrap(Plan *p, msac_plan **out_plan)
{
    msac_plan *plan = calloc(1, sizeof *plan);
    if (!plan) {
        plan_free(p);
        return status_oom();
    }
    plan->p = p;
    plan->kernel_params = calloc(p->nkernels ? p->nkernels : 1, sizeof *plan->kernel_params);
    plan->weight_init = calloc(p->nweights ? p->nweights : 1, sizeof *plan->weight_init);
    if (!plan->kernel_params || !plan->weight_init)
        goto oom;
    for (uint32_t i = 0; i < p->nkernels; i++)
        if (!(plan->kernel_params[i] = format_params(&p->kernels[i])))
            goto oom;
    for (uint32_t i = 0; i < p->nweights; i++) {
        char buf[96];
        format_init(&p->weights[i], buf, sizeof buf);
        if (!(plan->weight_init[i] = strdup(buf)))
            goto oom;
    }
    const char *vocab = plan_meta(p, "vocab_size");
    if (vocab) {
        char *end;
        errno = 0;
        long long v = strtoll(vocab, &end, 10);
        if (errno || end == vocab || *end || v <= 0 || v > INT32_MAX) {
            msac_status st = status_make(MSAC_ERR_BAD_PLAN, "plan: meta vocab_size \"%s\" is not a positive 32-bit integer",
                                         vocab);
            msac_plan_free(plan);
            return st;
        }
        plan->vocab_size = v;
    }
    *out_plan = plan;
    return NULL;
oom:
    msac_plan_free(plan);
    return status_oom();
}

msac_status msac_plan_load_memory(const void *data, size_t size, msac_plan **out_plan)
{
    if ((!data && size) || !out_plan)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_plan_load_memory: %s is NULL",
                           out_plan ? "data" : "out_plan");
    char err[512];
    Plan *p;
    if (!plan_read(data, size, &p, err, sizeof err))
        return status_make(MSAC_ERR_BAD_PLAN, "%s", err);
    return plan_wrap(p, out_plan);
}

msac_status msac_plan_load(const char *path, msac_plan **out_plan)
{
    if (!path || !out_plan)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_plan_load: %s is NULL", path ? "out_plan" : "path");
    FILE *f = fopen(path, "rb");
    if (!f)
        return status_make(MSAC_ERR_IO, "cannot open plan %s: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        fclose(f);
        return status_make(MSAC_ERR_IO, "cannot read plan %s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    uint8_t *data = malloc(size ? size : 1);
    if (!data) {
        fclose(f);
        return status_make(MSAC_ERR_OUT_OF_MEMORY, "cannot read plan %s: out of memory (%zu bytes)", path, size);
    }
    size_t got = fread(data, 1, size, f);
    bool rerr = ferror(f);
    fclose(f);
    if (rerr || got != size) {
        free(data);
        return status_make(MSAC_ERR_IO, "cannot read plan %s: %s", path, rerr ? strerror(errno) : "short read");
    }
    char err[512];
    Plan *p;
    bool ok = plan_read(data, size, &p, err, sizeof err);
    free(data);
    if (!ok)
        return status_make(MSAC_ERR_BAD_PLAN, "%s: %s", path, err);
    return plan_wrap(p, out_plan);
}

void msac_plan_get_info(const msac_plan *plan, msac_plan_info *out_info)
{
    const Plan *p = plan->p;
    const char *model = plan_meta(p, "model");
    *out_info = (msac_plan_info){
        .model = model ? model : "",
        .msac_version = p->msac_version,
        .target = p->target,
        .ptx_isa = (int)p->ptx_isa,
        .options_hash = p->options_hash,
        .vocab_size = plan->vocab_size,
        .num_kernels = (int)p->nkernels,
        .num_programs = (int)p->nprograms,
        .num_buffers = (int)p->nbuffers,
        .num_weights = (int)p->nweights,
    };
}

const char *msac_plan_meta(const msac_plan *plan, const char *key)
{
    return plan && key ? plan_meta(plan->p, key) : NULL;
}

const char *msac_plan_graph_text(const msac_plan *plan) { return plan ? plan->p->graph : NULL; }

int msac_plan_kernel_info(const msac_plan *plan, int index, msac_kernel_info *out_info)
{
    if (!plan || index < 0 || (uint32_t)index >= plan->p->nkernels)
        return -1;
    const PlanKernel *k = &plan->p->kernels[index];
    *out_info = (msac_kernel_info){
        .name = k->name,
        .entry = k->entry,
        .block = {k->block[0], k->block[1], k->block[2]},
        .smem_bytes = k->smem,
        .ptx_bytes = strlen(k->ptx),
        .params = plan->kernel_params[index],
    };
    return 0;
}

const char *msac_plan_kernel_ptx(const msac_plan *plan, int index)
{
    if (!plan || index < 0 || (uint32_t)index >= plan->p->nkernels)
        return NULL;
    return plan->p->kernels[index].ptx;
}

int msac_plan_program_info(const msac_plan *plan, int index, msac_program_info *out_info)
{
    if (!plan || index < 0 || (uint32_t)index >= plan->p->nprograms)
        return -1;
    const PlanProgram *pr = &plan->p->programs[index];
    *out_info = (msac_program_info){.name = pr->name, .num_launches = (int)pr->nlaunch};
    return 0;
}

/* grid_text gets "X, Y, Z", each as plan_expr_format writes it. */
int msac_plan_launch_info(const msac_plan *plan, int program, int launch, int *out_kernel, char *grid_text,
                          size_t grid_text_size)
{
    if (!plan || program < 0 || (uint32_t)program >= plan->p->nprograms)
        return -1;
    const PlanProgram *pr = &plan->p->programs[program];
    if (launch < 0 || (uint32_t)launch >= pr->nlaunch)
        return -1;
    const PlanLaunch *l = &pr->launch[launch];
    if (out_kernel)
        *out_kernel = (int)l->kernel;
    if (grid_text && grid_text_size) {
        char g[3][128];
        for (int d = 0; d < 3; d++)
            plan_expr_format(&l->grid[d], g[d], sizeof g[d]);
        snprintf(grid_text, grid_text_size, "%s, %s, %s", g[0], g[1], g[2]);
    }
    return 0;
}

/* The program named `name`, or NULL. */
static const PlanProgram *program_named(const msac_plan *plan, const char *name)
{
    if (!plan || !name)
        return NULL;
    for (uint32_t i = 0; i < plan->p->nprograms; i++)
        if (!strcmp(plan->p->programs[i].name, name))
            return &plan->p->programs[i];
    return NULL;
}

int msac_plan_program_launches(const msac_plan *plan, const char *program)
{
    const PlanProgram *pr = program_named(plan, program);
    return pr ? (int)pr->nlaunch : -1;
}

/* One cost expression of `l` at (batch, seq, ctx), as a double. */
static msac_status eval_cost(const msac_plan *plan, const PlanLaunch *l, const PlanExpr *e, const char *what,
                             int batch, int seq, int ctx, double *out)
{
    int64_t v = 0;
    bool ok = plan_expr_eval_checked(e, batch, seq, ctx, &v);
    if (!ok || v < 0) {
        char text[128];
        plan_expr_format(e, text, sizeof text);
        return status_make(MSAC_ERR_BAD_PLAN, "plan: kernel %s: cost-model %s = %s is %s at batch=%d seq=%d ctx=%d",
                           plan->p->kernels[l->kernel].name, what, text, ok ? "negative" : "overflowing", batch,
                           seq, ctx);
    }
    *out = (double)v;
    return NULL;
}

msac_status msac_plan_launch_cost(const msac_plan *plan, const char *program, int launch, int batch, int seq,
                                  int ctx, int *out_kernel, double *out_flops, double *out_bytes)
{
    if (!plan || !program)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_plan_launch_cost: %s is NULL", plan ? "program" : "plan");
    const PlanProgram *pr = program_named(plan, program);
    if (!pr)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_plan_launch_cost: the plan has no program \"%s\"",
                           program);
    if (launch < 0 || (uint32_t)launch >= pr->nlaunch)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_plan_launch_cost: launch %d is outside 0..%u of %s",
                           launch, pr->nlaunch - 1, program);
    if (batch < 1 || seq < 1 || ctx < 1)
        return status_make(MSAC_ERR_INVALID_ARGUMENT,
                           "msac_plan_launch_cost: sizes must be >= 1 (batch=%d seq=%d ctx=%d)", batch, seq, ctx);
    const PlanLaunch *l = &pr->launch[launch];
    double flops, bytes;
    RT_RETURN_IF_ERROR(eval_cost(plan, l, &l->flops, "flops", batch, seq, ctx, &flops));
    RT_RETURN_IF_ERROR(eval_cost(plan, l, &l->bytes, "bytes", batch, seq, ctx, &bytes));
    if (out_kernel)
        *out_kernel = (int)l->kernel;
    if (out_flops)
        *out_flops = flops;
    if (out_bytes)
        *out_bytes = bytes;
    return NULL;
}

int msac_plan_buffer_info(const msac_plan *plan, int index, msac_buffer_info *out_info)
{
    if (!plan || index < 0 || (uint32_t)index >= plan->p->nbuffers)
        return -1;
    const PlanBuffer *b = &plan->p->buffers[index];
    msac_buffer_info info = {
        .name = b->name,
        .kind = (msac_buffer_kind)b->kind,
        .dtype = rt_dtype_name(b->dtype),
    };
    plan_expr_format(&b->bytes, info.bytes, sizeof info.bytes);
    if (b->kind == PBUF_WORKSPACE)
        plan_expr_format(&b->offset, info.offset, sizeof info.offset);
    *out_info = info;
    return 0;
}

int msac_plan_weight_info(const msac_plan *plan, int index, msac_weight_info *out_info)
{
    if (!plan || index < 0 || (uint32_t)index >= plan->p->nweights)
        return -1;
    const PlanWeight *w = &plan->p->weights[index];
    msac_weight_info info = {
        .name = w->name,
        .dtype = rt_dtype_name(w->dtype),
        .ndim = (int)w->ndim,
        .init = plan->weight_init[index],
    };
    for (uint32_t d = 0; d < w->ndim; d++)
        info.dims[d] = w->dims[d];
    *out_info = info;
    return 0;
}

msac_status msac_plan_memory_required(const msac_plan *plan, int max_batch, int max_seq, int max_ctx,
                                      uint64_t *out_bytes)
{
    if (!plan || !out_bytes)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_plan_memory_required: %s is NULL",
                           plan ? "out_bytes" : "plan");
    RtLayout l;
    RT_RETURN_IF_ERROR(rt_layout_compute(plan, max_batch, max_seq, max_ctx, &l));
    *out_bytes = l.total;
    rt_layout_free(&l);
    return NULL;
}

msac_status msac_plan_memory_info(const msac_plan *plan, int max_batch, int max_seq, int max_ctx,
                                  msac_memory_info *out_info)
{
    if (!plan || !out_info)
        return status_make(MSAC_ERR_INVALID_ARGUMENT, "msac_plan_memory_info: %s is NULL",
                           plan ? "out_info" : "plan");
    RtLayout l;
    RT_RETURN_IF_ERROR(rt_layout_compute(plan, max_batch, max_seq, max_ctx, &l));
    const Plan *p = plan->p;
    msac_memory_info m = {.workspace = l.arena_size, .total = l.total};
    for (uint32_t i = 0; i < p->nweights; i++)
        m.weights += l.weight_bytes[i];
    for (uint32_t i = 0; i < p->nbuffers; i++) {
        switch ((PlanBufKind)p->buffers[i].kind) {
        case PBUF_STATE: m.states += l.buf_size[i]; break;
        case PBUF_INPUT: m.inputs += l.buf_size[i]; break;
        case PBUF_OUTPUT: m.outputs += l.buf_size[i]; break;
        case PBUF_WEIGHT:    /* counted once per weight above */
        case PBUF_WORKSPACE: /* inside the arena */
            break;
        }
    }
    /* every region lies inside the allocation, so the sum is at most total */
    m.padding = m.total - (m.weights + m.states + m.inputs + m.outputs + m.workspace);
    m.per_sequence_states = m.states / (uint64_t)max_batch;
    rt_layout_free(&l);
    *out_info = m;
    return NULL;
}
