/* compile.c — the compile driver (see compile.h). */
#include "compile.h"

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
    const CompileOptions *o; /* which pass to dump, where */
} DumpCtx;

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
        FILE *f = fopen(path, "w");
        if (!f)
            return diag_fail(d, "cannot write %s: %s", path, strerror(errno));
        fputs(p->kernels[i].ptx, f);
        if (fclose(f))
            return diag_fail(d, "cannot write %s", path);
    }
    return true;
}

bool msac_compile(const char *yaml, const char *file, const CompileOptions *o, Plan **out, Diag *d)
{
    const TargetDesc *t = target_lookup(o->target ? o->target : "sm_90a");
    if (!t) {
        char known[128] = "";
        for (const TargetDesc *k = target_table; k->name; k++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", known[0] ? ", " : "", k->name);
        return diag_fail(d, "unknown target '%s' (supported: %s)", o->target, known);
    }
    Arena *a = arena_new();
    bool ok = false;
    Codegen cg = {0};
    Graph *g = frontend_load_text(a, yaml, file, d);
    if (!g)
        goto out;
    if (o->progress)
        fprintf(stderr, "msac: %s: model '%s', %d IR nodes\n", file, g->name, g->nnodes);
    Programs progs;
    DumpCtx dc = {o};
    if (!pipeline_run(a, g, &progs, dump_cb, &dc, d))
        goto out;
    if (o->progress)
        fprintf(stderr, "msac: passes done: prefill %d nodes, decode %d nodes; generating %s kernels\n",
                progs.prefill->nnodes, progs.decode->nnodes, t->name);
    if (!codegen_init(&cg, t, d))
        goto out;
    if (!emit_plan(&cg, &progs, o, out, d))
        goto out;
    if (o->emit_ptx_dir && !write_ptx(*out, o->emit_ptx_dir, d)) {
        plan_free(*out);
        *out = NULL;
        goto out;
    }
    if (o->progress)
        fprintf(stderr, "msac: %u kernels, %u weights, %u buffers\n", (*out)->nkernels, (*out)->nweights,
                (*out)->nbuffers);
    ok = true;
out:
    if (cg.ctx)
        codegen_free(&cg);
    arena_free(a);
    return ok;
}
