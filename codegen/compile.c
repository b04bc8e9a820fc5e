/* compile.c — the compile driver (see compile.h). */
#include "compile.h"

#include "atomic_file.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "emit_plan.h"
#include "ir.h"
#include "kernel_memo.h"
#include "frontend.h"
#include "passes.h"
#include "tune_cache.h"
#include "tune_space.h"

void compile_options_init(CompileOptions *o)
{
    memset(o, 0, sizeof *o);
    o->target = "sm_90a";
}

typedef struct DumpCtx {
    const CompileOptions *o; /* which pass to dump, where; schedule and tweak hooks */
    const char *target;      /* target name, for the tuning cache */
    int tuned;               /* nodes given a cached schedule */
    int decode_rows;         /* decode gemvs lowered for this many rows (lower_gemv_schedule); 0: lower.c's */
} DumpCtx;

/* Gives each node of g that has an entry in the tuning cache its schedule. */
static void apply_tuning(DumpCtx *dc, const char *program, Graph *g)
{
    const CompileOptions *o = dc->o;
    int tokens = o->tune_tokens[strcmp(program, "prefill") != 0];
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead || !node_str(n, "kernel", NULL))
            continue;
        char key[17];
        kernel_key_hash(n, key);
        const TuneEntry *e = tune_cache_find(o->tuning, o->tune_device, MSAC_VERSION, dc->target, key, tokens);
        if (e && tune_apply_text(g, n, e->schedule)) {
            dc->tuned++;
            if (o->progress)
                fprintf(stderr, "msac:   tuned %-7s %%%-24s %s (%.1f µs vs %.1f default at %dx%d)\n", program,
                        n->name ? n->name : "?", e->schedule, e->best_us, e->default_us, e->batch, e->seq);
        }
    }
}

/* After lowering: the tuning cache, the schedule overrides, then the
 * caller's tweak. */
static void tweak_cb(void *user, const char *program, Graph *g)
{
    DumpCtx *dc = user;
    if (dc->decode_rows && !strcmp(program, "decode"))
        for (int i = 0; i < g->nnodes; i++)
            if (!g->nodes[i]->dead && !strcmp(node_str(g->nodes[i], "kernel", ""), "gemv"))
                lower_gemv_schedule(g, g->nodes[i], dc->decode_rows);
    if (dc->o->tuning && dc->o->tune_device)
        apply_tuning(dc, program, g);
    if (dc->o->schedule)
        schedule_apply(dc->o->schedule, g);
    if (dc->o->tweak)
        dc->o->tweak(dc->o->tweak_user, program, g);
}

static void dump_cb(void *user, const char *program, const char *pass, const Graph *g)
{
    const DumpCtx *dc = user;
    if (!dc->o->dump || (strcmp(dc->o->dump, "all") && strcmp(dc->o->dump, pass)))
        return;
    FILE *f = dc->o->dump_out ? dc->o->dump_out : stdout;
    fprintf(f, "# after %s (%s)\n", pass, program);
    ir_print(g, f);
}

static bool write_ptx(const Plan *p, const char *dir, Diag *d)
{
    if (mkdir(dir, 0777) && errno != EEXIST)
        return diag_fail(d, "cannot create %s: %s", dir, strerror(errno));
    for (uint32_t i = 0; i < p->nkernels; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s.ptx", dir, p->kernels[i].name);
        char why[1024];
        if (!file_write_atomic(path, p->kernels[i].ptx, strlen(p->kernels[i].ptx), why, sizeof why))
            return diag_fail(d, "%s", why);
    }
    return true;
}

static const TargetDesc *find_target(const CompileOptions *o, Diag *d)
{
    const TargetDesc *t = target_lookup(o->target ? o->target : "sm_90a");
    if (!t) {
        char known[128] = "";
        for (const TargetDesc *k = target_table; k->name; k++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", known[0] ? ", " : "", k->name);
        diag_fail(d, "unknown target '%s' (supported: %s)", o->target, known);
    }
    return t;
}

/* The decode batch sizes the tuning cache has entries for on this GPU,
 * target and msac version, ascending; returns how many (at most max). */
static int decode_classes(const CompileOptions *o, const char *target, int *out, int max)
{
    int n = 0;
    for (int i = 0; i < o->tuning->n; i++) {
        const TuneEntry *e = &o->tuning->e[i];
        if (strcmp(e->program, "decode") || strcmp(e->target, target) || strcmp(e->msac, MSAC_VERSION) ||
            strcmp(e->dev.name, o->tune_device->name) || e->dev.sm_count != o->tune_device->sm_count ||
            e->dev.driver != o->tune_device->driver)
            continue;
        int j = 0;
        while (j < n && out[j] < e->batch)
            j++;
        if ((j < n && out[j] == e->batch) || n == max)
            continue;
        memmove(out + j + 1, out + j, (size_t)(n - j) * sizeof *out);
        out[j] = e->batch;
        n++;
    }
    return n;
}

/* One more decode program for decode class `batch`, named "decode@T": the
 * runtime takes it for batch sizes >= T (thr). A tuning cache's class: T
 * is the geometric mean of this class and the one below, rounded up, which
 * is where tune_cache_find's nearest-class rule switches. The default
 * class (wide): the gemvs lowered for `batch` rows, T = LOWER_WIDE_ROWS.
 * Skipped, with a note, if its launches do not line up with the base
 * decode's; the default class is left out where it runs the same kernels. */
static bool add_decode_variant(Codegen *cg, Plan *p, const CompileOptions *base, int thr, int batch, bool wide, Diag *d)
{
    CompileOptions vo = *base;
    vo.tune_tokens[1] = batch;
    Arena *a = arena_new();
    Graph *g = ir_parse(a, p->graph, "plan graph", d);
    Programs progs;
    DumpCtx dc = {&vo, cg->target->name, 0, wide ? batch : 0}; /* the default class: gemvs for many rows */
    PipelineHooks hooks = {NULL, NULL, tweak_cb, &dc};
    bool ok = g && pipeline_run(a, g, &progs, &hooks, d);
    char name[32];
    snprintf(name, sizeof name, "decode@%d", thr);
    uint32_t before = p->nprograms;
    if (ok)
        ok = emit_plan_program(cg, p, name, progs.decode, &vo, d);
    if (ok) {
        const PlanProgram *b = NULL;
        for (uint32_t i = 0; i < before; i++)
            if (!strcmp(p->programs[i].name, "decode"))
                b = &p->programs[i];
        bool same = wide && b && b->nlaunch == p->programs[before].nlaunch; /* the same kernels throughout: no use */
        for (uint32_t j = 0; same && j < b->nlaunch; j++)
            same = b->launch[j].kernel == p->programs[before].launch[j].kernel;
        if (!b || b->nlaunch != p->programs[before].nlaunch || same) {
            if (base->progress && !same)
                fprintf(stderr, "msac: decode variant for batch %d skipped: %u launches, the base decode has %u\n",
                        batch, p->programs[before].nlaunch, b ? b->nlaunch : 0);
            PlanProgram *v = &p->programs[before]; /* a hand-built plan: its fields are malloc'd */
            for (uint32_t j = 0; j < v->nlaunch; j++)
                free(v->launch[j].args);
            free(v->launch);
            free(v->name);
            p->nprograms = before; /* (kernels it alone used stay in the plan, unused) */
        } else if (base->progress && wide) {
            fprintf(stderr, "msac: decode@%d: gemv schedules for %d rows, for batch sizes >= %d\n", thr, batch, thr);
        } else if (base->progress) {
            fprintf(stderr, "msac: decode@%d: schedules tuned at batch %d (%d nodes) for batch sizes >= %d\n", thr,
                    batch, dc.tuned, thr);
        }
    }
    arena_free(a);
    return ok;
}

bool msac_compile_graph(Graph *g, const CompileOptions *o, Plan **out, Diag *d)
{
    *out = NULL;
    const TargetDesc *t = find_target(o, d);
    if (!t)
        return false;
    /* Several decode batch classes in the tuning cache: the base program takes
     * the smallest, one decode@T program each of the others */
    int classes[8], nclass = o->tuning && o->tune_device ? decode_classes(o, t->name, classes, 8) : 0;
    CompileOptions base = *o;
    KernelMemo *memo = NULL;
    bool wide = nclass == 0 && !o->no_batch_classes; /* the default classes: decode, decode@33 */
    if (nclass > 1)
        base.tune_tokens[1] = classes[0];
    if ((nclass > 1 || wide) && !base.memo)
        base.memo = memo = kernel_memo_new();
    Programs progs;
    DumpCtx dc = {&base, t->name, 0, 0};
    PipelineHooks hooks = {dump_cb, &dc, tweak_cb, &dc};
    if (!pipeline_run(g->arena, g, &progs, &hooks, d)) {
        kernel_memo_free(memo);
        return false;
    }
    if (o->progress)
        fprintf(stderr, "msac: passes done: prefill %d nodes, decode %d nodes; generating %s kernels\n",
                progs.prefill->nnodes, progs.decode->nnodes, t->name);
    Codegen cg;
    if (!codegen_init(&cg, t, d)) {
        kernel_memo_free(memo);
        return false;
    }
    bool ok = emit_plan(&cg, &progs, &base, out, d);
    for (int k = 1; ok && k < nclass; k++)
        ok = add_decode_variant(&cg, *out, &base, (int)ceil(sqrt((double)classes[k - 1] * (double)classes[k])),
                                classes[k], false, d);
    if (ok && wide && progs.decode->nnodes)
        ok = add_decode_variant(&cg, *out, &base, LOWER_WIDE_ROWS, LOWER_WIDE_ROWS, true, d);
    codegen_free(&cg);
    kernel_memo_free(memo);
    if (!ok && *out) {
        plan_free(*out);
        *out = NULL;
    }
    if (ok && o->tuning && o->tune_device) { /* which GPU's tuning the plan carries, for msac info and the runtime */
        char v[192];
        snprintf(v, sizeof v, "%s/%d/%d", o->tune_device->name, o->tune_device->sm_count, o->tune_device->driver);
        emit_plan_meta(*out, "tuned_for", v);
        snprintf(v, sizeof v, "%d", dc.tuned);
        emit_plan_meta(*out, "tuned_nodes", v);
    }
    if (ok && o->emit_ptx_dir && !write_ptx(*out, o->emit_ptx_dir, d)) {
        plan_free(*out);
        *out = NULL;
        ok = false;
    }
    if (ok && o->progress)
        fprintf(stderr, "msac: %u kernels, %u weights, %u buffers\n", (*out)->nkernels, (*out)->nweights,
                (*out)->nbuffers);
    return ok;
}

bool msac_compile(const char *yaml, const char *file, const CompileOptions *o, Plan **out, Diag *d)
{
    if (!find_target(o, d))
        return false;
    Arena *a = arena_new();
    Graph *g = frontend_load_text(a, yaml, file, d);
    bool ok = false;
    if (g) {
        if (o->progress)
            fprintf(stderr, "msac: %s: model '%s', %d IR nodes\n", file, g->name, g->nnodes);
        ok = msac_compile_graph(g, o, out, d);
    }
    arena_free(a);
    return ok;
}
