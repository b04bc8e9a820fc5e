/* compile.c — the compile driver (see compile.h). */
#include "compile.h"

#include "atomic_file.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "emit_plan.h"
#include "frontend.h"
#include "passes.h"

void compile_options_init(CompileOptions *o)
{
    memset(o, 0, sizeof *o);
    o->target = "sm_90a";
}

typedef struct DumpCtx {
    const CompileOptions *o; /* which pass to dump, where; schedule and tweak hooks */
} DumpCtx;

/* After lowering: the schedule overrides, then the caller's tweak. */
static void tweak_cb(void *user, const char *program, Graph *g)
{
    const DumpCtx *dc = user;
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

bool msac_compile_graph(Graph *g, const CompileOptions *o, Plan **out, Diag *d)
{
    const TargetDesc *t = find_target(o, d);
    if (!t)
        return false;
    Programs progs;
    DumpCtx dc = {o};
    PipelineHooks hooks = {dump_cb, &dc, tweak_cb, &dc};
    if (!pipeline_run(g->arena, g, &progs, &hooks, d))
        return false;
    if (o->progress)
        fprintf(stderr, "msac: passes done: prefill %d nodes, decode %d nodes; generating %s kernels\n",
                progs.prefill->nnodes, progs.decode->nnodes, t->name);
    Codegen cg;
    if (!codegen_init(&cg, t, d))
        return false;
    bool ok = emit_plan(&cg, &progs, o, out, d);
    codegen_free(&cg);
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
