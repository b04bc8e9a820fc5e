/* emit_plan.c — builds the Plan from the lowered programs: the weight table,
 * the buffer plan (weights, states, inputs, outputs, workspace ranges), the
 * kernels (deduplicated by PTX) and the launch programs. */
#include <stdlib.h>
#include <string.h>

#include "compile.h"
#include "emit_parallel.h"
#include "emit_plan.h"
#include "kernel_memo.h"
#include "kernels.h"
#include "sample_math.h"
#include "tune_space.h"

typedef struct PB {
    Plan *p;       /* being built (arrays grown with realloc) */
    Diag *d;       /* error sink */
    KernelMemo *memo; /* kernels emitted so far, by kernel key: the 24 layers
                         of a model share their kernels, and LLVM runs once */
} PB;

static void *grow(void *arr, uint32_t n, size_t elem)
{
    void *r = realloc(arr, elem * (n + 1));
    if (!r)
        abort();
    memset((char *)r + elem * n, 0, elem);
    return r;
}

static char *dup(const char *s)
{
    char *r = strdup(s ? s : "");
    if (!r)
        abort();
    return r;
}

static PlanExpr pexpr(SymExpr e)
{
    PlanExpr r;
    memcpy(r.c, e.c, sizeof r.c);
    r.div = e.div;
    return r;
}

static int init_kind(const char *s)
{
    static const char *const names[PINIT_COUNT] = {"zeros", "ones", "const", "normal", "uniform", "log_uniform",
                                                   "dt_bias"};
    for (int i = 0; i < PINIT_COUNT; i++)
        if (s && !strcmp(s, names[i]))
            return i;
    return -1;
}

void emit_plan_meta(Plan *p, const char *key, const char *value)
{
    p->meta = grow(p->meta, p->nmeta, sizeof *p->meta);
    p->meta[p->nmeta].key = dup(key);
    p->meta[p->nmeta].value = dup(value);
    p->nmeta++;
}

static void add_meta(PB *b, const char *key, const char *value) { emit_plan_meta(b->p, key, value); }

static int find_buffer(Plan *p, uint32_t kind, const char *name)
{
    for (uint32_t i = 0; i < p->nbuffers; i++)
        if (p->buffers[i].kind == kind && !strcmp(p->buffers[i].name, name))
            return (int)i;
    return -1;
}

static int add_buffer(Plan *p, uint32_t kind, const char *name, DType dt, SymExpr bytes, SymExpr off, uint32_t index)
{
    p->buffers = grow(p->buffers, p->nbuffers, sizeof *p->buffers);
    PlanBuffer *pb = &p->buffers[p->nbuffers];
    pb->name = dup(name);
    pb->kind = kind;
    pb->dtype = (uint32_t)dt;
    pb->index = index;
    pb->bytes = pexpr(bytes);
    pb->offset = pexpr(off);
    return (int)p->nbuffers++;
}

/* The plan buffer holding node v's value in program `prog`; -1 + message on error. */
static int buffer_of(PB *b, const char *prog, const Node *v)
{
    Plan *p = b->p;
    SymExpr bytes;
    if (!node_bytes_expr(v, &bytes)) {
        diag_fail(b->d, "%%%s: size not expressible", v->name ? v->name : "?");
        return -1;
    }
    switch (v->op) {
    case OP_weight: {
        int i = find_buffer(p, PBUF_WEIGHT, v->ext);
        if (i >= 0)
            return i;
        int k = init_kind(node_str(v, "init", NULL));
        if (k < 0 || v->ndim < 1 || v->ndim > PLAN_MAX_DIMS) {
            diag_fail(b->d, "weight %s: unknown init '%s' or bad rank", v->ext, node_str(v, "init", "?"));
            return -1;
        }
        p->weights = grow(p->weights, p->nweights, sizeof *p->weights);
        PlanWeight *w = &p->weights[p->nweights];
        w->name = dup(v->ext);
        w->dtype = (uint32_t)v->dtype;
        w->ndim = (uint32_t)v->ndim;
        for (int k2 = 0; k2 < v->ndim; k2++)
            w->dims[k2] = v->dim[k2].n;
        w->init = (uint32_t)k;
        w->init_a = (float)(k == PINIT_NORMAL ? node_float(v, "std", 0.02) : node_float(v, "lo", 0));
        w->init_b = (float)node_float(v, "hi", 0);
        return add_buffer(p, PBUF_WEIGHT, v->ext, v->dtype, bytes, sym_const(0), p->nweights++);
    }
    case OP_state: {
        int i = find_buffer(p, PBUF_STATE, v->ext);
        return i >= 0 ? i : add_buffer(p, PBUF_STATE, v->ext, v->dtype, bytes, sym_const(0), 0);
    }
    case OP_input: {
        int i = find_buffer(p, PBUF_INPUT, v->ext);
        return i >= 0 ? i : add_buffer(p, PBUF_INPUT, v->ext, v->dtype, bytes, sym_const(0), 0);
    }
    default:
        break;
    }
    const char *out = node_str(v, "out", NULL);
    if (out) {
        int i = find_buffer(p, PBUF_OUTPUT, out);
        if (i >= 0) { /* prefill and decode share it: keep the larger size form */
            if (bytes.c[MONO_BS])
                p->buffers[i].bytes = pexpr(bytes);
            return i;
        }
        return add_buffer(p, PBUF_OUTPUT, out, v->dtype, bytes, sym_const(0), 0);
    }
    SymExpr off, sz;
    if (!sym_parse_expr(node_str(v, "ws_off", ""), &off) || !sym_parse_expr(node_str(v, "ws_bytes", ""), &sz)) {
        diag_fail(b->d, "%%%s: no workspace assignment (run plan-buffers)", v->name ? v->name : "?");
        return -1;
    }
    char name[160];
    snprintf(name, sizeof name, "%s:%s", prog, v->name ? v->name : "?");
    int i = find_buffer(p, PBUF_WORKSPACE, name);
    return i >= 0 ? i : add_buffer(p, PBUF_WORKSPACE, name, v->dtype, sz, off, 0);
}

/* The plan buffer of node n's scratch (attrs scratch, scratch_off). */
static int scratch_of(PB *b, const char *prog, const Node *n)
{
    SymExpr off, sz;
    if (!sym_parse_expr(node_str(n, "scratch_off", ""), &off) || !sym_parse_expr(node_str(n, "scratch", ""), &sz)) {
        diag_fail(b->d, "%%%s: kernel needs scratch but none was planned", n->name ? n->name : "?");
        return -1;
    }
    char name[160];
    snprintf(name, sizeof name, "%s:%s.scratch", prog, n->name ? n->name : "?");
    int i = find_buffer(b->p, PBUF_WORKSPACE, name);
    return i >= 0 ? i : add_buffer(b->p, PBUF_WORKSPACE, name, DT_BF16, sz, off, 0);
}

static uint64_t str_hash(const char *s) { return plan_fnv1a(s, strlen(s), PLAN_FNV_SEED); }

/* Adds (or finds) a kernel; takes ownership of l->ptx. */
static uint32_t add_kernel(Plan *p, KLaunch *l)
{
    uint64_t h = str_hash(l->ptx);
    for (uint32_t i = 0; i < p->nkernels; i++)
        if (p->kernels[i].hash == h && !strcmp(p->kernels[i].ptx, l->ptx)) {
            free(l->ptx);
            l->ptx = NULL;
            return i;
        }
    p->kernels = grow(p->kernels, p->nkernels, sizeof *p->kernels);
    PlanKernel *k = &p->kernels[p->nkernels];
    int same = 0;
    for (uint32_t i = 0; i < p->nkernels; i++)
        same += !strncmp(p->kernels[i].name, l->name, strlen(l->name));
    char name[128];
    if (same)
        snprintf(name, sizeof name, "%s.%d", l->name, same + 1);
    else
        snprintf(name, sizeof name, "%s", l->name);
    k->name = dup(name);
    /* the entry is the kernel function's name in its PTX: ".entry NAME(" */
    const char *e = strstr(l->ptx, ".entry ");
    char entry[96] = "?";
    if (e) {
        e += 7;
        size_t n = strcspn(e, "( \n");
        snprintf(entry, sizeof entry, "%.*s", (int)(n < 95 ? n : 95), e);
    }
    k->entry = dup(entry);
    k->ptx = l->ptx;
    l->ptx = NULL;
    k->block[0] = l->block;
    k->block[1] = k->block[2] = 1;
    k->smem = l->smem;
    k->nparams = (uint32_t)l->nparams;
    k->params = calloc((size_t)l->nparams + 1, sizeof *k->params);
    if (!k->params)
        abort();
    for (int i = 0; i < l->nparams; i++) {
        k->params[i].key = dup(l->params[i].key);
        k->params[i].value = l->params[i].value;
    }
    k->hash = h;
    return p->nkernels++;
}

/* n's launches: from the memo when a node with the same kernel key was
 * emitted before, else from its template's emitter (then remembered). */
static bool emit_node(PB *b, Codegen *cg, const Node *n, KOut *ko)
{
    const char *kname = node_str(n, "kernel", NULL);
    KernelEmitFn fn = kernel_lookup(kname);
    if (!fn)
        return diag_fail(b->d, "%%%s: unknown kernel template '%s'", n->name ? n->name : "?", kname);
    char *key = kernel_key(n, false);
    bool ok = kernel_memo_get(b->memo, cg->target->name, key, ko);
    if (!ok && (ok = fn(cg, n, ko, b->d)))
        kernel_memo_put(b->memo, cg->target->name, key, ko);
    free(key);
    return ok;
}

/* The aux result of n (an OPF_AUX node whose src[0] is n), or NULL. */
static const Node *aux_of(const Graph *g, const Node *n)
{
    for (int i = n->id + 1; i < g->nnodes; i++)
        if ((op_info[g->nodes[i]->op].flags & OPF_AUX) && g->nodes[i]->src[0] == n)
            return g->nodes[i];
    return NULL;
}

static bool emit_program(PB *b, Codegen *cg, const char *name, const Graph *g, const CompileOptions *o)
{
    Plan *p = b->p;
    p->programs = grow(p->programs, p->nprograms, sizeof *p->programs);
    PlanProgram *prog = &p->programs[p->nprograms++];
    prog->name = dup(name);
    emit_parallel(cg->target, b->memo, g, emit_thread_count(o->threads)); /* every new kernel into the memo */
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        const char *kname = node_str(n, "kernel", NULL);
        if (!kname)
            continue;
        KOut ko = {0};
        bool ok = emit_node(b, cg, n, &ko);
        if (ok && o->progress)
            fprintf(stderr, "msac:   %-8s %%%-24s → %d launch%s\n", name, n->name ? n->name : "?", ko.n,
                    ko.n == 1 ? "" : "es");
        for (int j = 0; ok && j < ko.n; j++) {
            KLaunch *l = &ko.l[j];
            if (!l->ptx) {
                ok = diag_fail(b->d, "internal error: kernel %s produced no PTX", l->name);
                break;
            }
            if (o->on_launch)
                o->on_launch(o->tweak_user, name, (int)prog->nlaunch, n);
            prog->launch = grow(prog->launch, prog->nlaunch, sizeof *prog->launch);
            PlanLaunch *pl = &prog->launch[prog->nlaunch++];
            pl->kernel = add_kernel(p, l);
            for (int k = 0; k < 3; k++)
                pl->grid[k] = pexpr(l->grid[k]);
            pl->flops = pexpr(l->flops);
            pl->bytes = pexpr(l->bytes);
            pl->nargs = (uint32_t)l->nargs;
            pl->args = calloc((size_t)l->nargs + 1, sizeof *pl->args);
            if (!pl->args)
                abort();
            for (int k = 0; k < l->nargs; k++) {
                const KArg *a = &l->args[k];
                PlanArg *pa = &pl->args[k];
                if (a->kind == KA_SCRATCH) {
                    int bi = scratch_of(b, name, n);
                    if (bi < 0) {
                        ok = false;
                        break;
                    }
                    pa->kind = PARG_BUF;
                    pa->buf = (uint32_t)bi;
                    pa->expr = pexpr(a->val);
                } else if (a->kind == KA_STATE) { /* shared by the programs that name it */
                    char sname[160];
                    snprintf(sname, sizeof sname, "%s.%s", n->name ? n->name : "?", a->name);
                    int bi = find_buffer(p, PBUF_STATE, sname);
                    if (bi < 0)
                        bi = add_buffer(p, PBUF_STATE, sname, DT_I32, a->val, sym_const(0), 0);
                    pa->kind = PARG_BUF;
                    pa->buf = (uint32_t)bi;
                    pa->expr = pexpr(sym_const(0));
                } else if (a->kind == KA_SRC || a->kind == KA_OUT || a->kind == KA_AUX) {
                    const Node *v = a->kind == KA_SRC ? n->src[a->src] : a->kind == KA_OUT ? n : aux_of(g, n);
                    if (!v) {
                        ok = diag_fail(b->d, "internal error: %%%s's kernel writes an aux result the graph lacks",
                                       n->name ? n->name : "?");
                        break;
                    }
                    int bi = buffer_of(b, name, v);
                    if (bi < 0) {
                        ok = false;
                        break;
                    }
                    pa->kind = PARG_BUF;
                    pa->buf = (uint32_t)bi;
                    pa->expr = pexpr(a->val);
                } else if (a->kind == KA_I32) {
                    pa->kind = PARG_I32;
                    pa->expr = pexpr(a->val);
                } else {
                    pa->kind = PARG_F32;
                    pa->f = a->f;
                    pa->expr = pexpr(sym_const(0));
                }
            }
        }
        for (int j = 0; j < ko.n; j++)
            free(ko.l[j].ptx);
        if (!ok)
            return false;
    }
    return true;
}

bool emit_plan_program(Codegen *cg, Plan *p, const char *name, const Graph *g, const CompileOptions *o, Diag *d)
{
    PB b = {.p = p, .d = d, .memo = o->memo ? o->memo : kernel_memo_new()};
    bool ok = emit_program(&b, cg, name, g, o);
    if (!o->memo)
        kernel_memo_free(b.memo);
    return ok;
}

/* Program "sample" (docs/sampling.md): the sampler kernel over each row's
 * last-position logits, which the runtime launches after a prefill or
 * decode call (msac_session_decode_sample, _prefill_sample). Its buffers:
 * input "sample_params" (u32 [batch, SAMPLE_WORDS], one record per
 * sequence) and output "sampled" (i32 [batch]). Plans without a logits
 * output, or with a vocabulary above K_SAMPLE_MAX_VOCAB, get none. */
static bool emit_sample_program(PB *b, Codegen *cg, int64_t vocab)
{
    Plan *p = b->p;
    int logits = find_buffer(p, PBUF_OUTPUT, "logits");
    if (logits < 0 || vocab < 1 || vocab > K_SAMPLE_MAX_VOCAB)
        return true;
    KOut ko = {0}; /* through the memo: the autotuner and the ptxas test compile a model many times */
    char key[64];
    snprintf(key, sizeof key, "sample vocab=%lld", (long long)vocab);
    if (!kernel_memo_get(b->memo, cg->target->name, key, &ko)) {
        ko.n = 1;
        if (!k_sample_emit(cg, vocab, &ko.l[0], b->d))
            return false;
        kernel_memo_put(b->memo, cg->target->name, key, &ko);
    }
    KLaunch l = ko.l[0];
    int params = add_buffer(p, PBUF_INPUT, "sample_params", DT_I32, sym_mono(MONO_B, 4 * SAMPLE_WORDS), sym_const(0), 0);
    int out = add_buffer(p, PBUF_OUTPUT, "sampled", DT_I32, sym_mono(MONO_B, 4), sym_const(0), 0);
    p->programs = grow(p->programs, p->nprograms, sizeof *p->programs);
    PlanProgram *prog = &p->programs[p->nprograms++];
    prog->name = dup("sample");
    prog->launch = grow(prog->launch, 0, sizeof *prog->launch);
    PlanLaunch *pl = &prog->launch[prog->nlaunch++];
    pl->kernel = add_kernel(p, &l);
    for (int k = 0; k < 3; k++)
        pl->grid[k] = pexpr(l.grid[k]);
    pl->flops = pexpr(l.flops);
    pl->bytes = pexpr(l.bytes);
    const int bufs[3] = {logits, params, out};
    pl->nargs = 4;
    pl->args = calloc(5, sizeof *pl->args);
    if (!pl->args)
        abort();
    for (int k = 0; k < 3; k++)
        pl->args[k] = (PlanArg){.kind = PARG_BUF, .buf = (uint32_t)bufs[k], .expr = pexpr(sym_const(0))};
    pl->args[3] = (PlanArg){.kind = PARG_I32, .expr = pexpr(sym_mono(MONO_S, 1))};
    return true;
}

bool emit_plan(Codegen *cg, const Programs *progs, const CompileOptions *o, Plan **out, Diag *d)
{
    Plan *p = calloc(1, sizeof *p);
    if (!p)
        abort();
    PB b = {.p = p, .d = d, .memo = o->memo ? o->memo : kernel_memo_new()};
    snprintf(p->msac_version, sizeof p->msac_version, "%s", MSAC_VERSION);
    snprintf(p->target, sizeof p->target, "%s", cg->target->name);
    p->ptx_isa = (uint32_t)cg->target->ptx_isa;
    char opts[128];
    snprintf(opts, sizeof opts, "target=%s;features=%s", cg->target->name, cg->target->features);
    p->options_hash = str_hash(opts);

    const Graph *m = progs->model;
    char buf[64];
    add_meta(&b, "model", m->name);
    const Node *logits = m->noutputs ? m->outputs[0].node : NULL;
    snprintf(buf, sizeof buf, "%lld", logits ? (long long)logits->dim[logits->ndim - 1].n : 0LL);
    add_meta(&b, "vocab_size", buf);
    int layers = 0;
    long long d_model = 0;
    for (int i = 0; i < m->nnodes; i++) {
        layers += m->nodes[i]->op == OP_ssd || m->nodes[i]->op == OP_selective_scan;
        if (m->nodes[i]->op == OP_embed)
            d_model = (long long)(m->nodes[i]->dim[m->nodes[i]->ndim - 1].n / node_int(m->nodes[i], "streams", 1));
    }
    snprintf(buf, sizeof buf, "%lld", d_model);
    add_meta(&b, "d_model", buf);
    snprintf(buf, sizeof buf, "%d", layers);
    add_meta(&b, "n_layers", buf);
    add_meta(&b, "target", cg->target->name);

    bool ok = emit_program(&b, cg, "prefill", progs->prefill, o) && emit_program(&b, cg, "decode", progs->decode, o) &&
              emit_sample_program(&b, cg, logits ? logits->dim[logits->ndim - 1].n : 0);
    if (!o->memo)
        kernel_memo_free(b.memo);
    if (!ok) {
        plan_free(p);
        return false;
    }
    Arena *a = arena_new();
    p->graph = dup(ir_print_str(m, a));
    arena_free(a);
    *out = p;
    return true;
}
