/* kernels.c — the kernel template table and launch-building helpers. */
#include "kernels.h"

#include <assert.h>
#include <string.h>

static const struct {
    const char *name;  /* template name, as lower.c writes it */
    KernelEmitFn fn;   /* its emitter */
    const char *space; /* its tuning space (kernels.def grammar) */
} table[] = {
#define KERNEL(name, fn, space) {#name, fn, space},
#include "kernels.def"
#undef KERNEL
};

static int find(const char *name)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (!strcmp(table[i].name, name))
            return (int)i;
    return -1;
}

KernelEmitFn kernel_lookup(const char *name)
{
    int i = find(name);
    return i < 0 ? NULL : table[i].fn;
}

const char *kernel_tune_space(const char *name)
{
    int i = find(name);
    return i < 0 ? NULL : table[i].space;
}

KLaunch *kout_add(KOut *o, const char *name, unsigned block, unsigned smem)
{
    assert(o->n < KL_MAX_LAUNCHES);
    KLaunch *l = &o->l[o->n++];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    l->block = block;
    l->smem = smem;
    for (int i = 0; i < 3; i++)
        l->grid[i] = sym_const(1);
    l->flops = sym_const(0);
    l->bytes = sym_const(0);
    return l;
}

static KArg *next_arg(KLaunch *l)
{
    assert(l->nargs < KL_MAX_ARGS);
    KArg *a = &l->args[l->nargs++];
    memset(a, 0, sizeof *a);
    a->val = sym_const(0);
    return a;
}

void kl_arg_src(KLaunch *l, int src)
{
    KArg *a = next_arg(l);
    a->kind = KA_SRC;
    a->src = src;
}

void kl_arg_out(KLaunch *l) { next_arg(l)->kind = KA_OUT; }
void kl_arg_scratch(KLaunch *l) { next_arg(l)->kind = KA_SCRATCH; }

void kl_arg_aux(KLaunch *l) { next_arg(l)->kind = KA_AUX; }

void kl_arg_state(KLaunch *l, const char *name, int64_t bytes)
{
    KArg *a = next_arg(l);
    a->kind = KA_STATE;
    a->name = name;
    a->val = sym_mono(MONO_B, bytes);
}

void kl_arg_scratch_at(KLaunch *l, SymExpr off)
{
    KArg *a = next_arg(l);
    a->kind = KA_SCRATCH;
    a->val = off;
}

void kl_arg_i32(KLaunch *l, SymExpr v)
{
    KArg *a = next_arg(l);
    a->kind = KA_I32;
    a->val = v;
}

void kl_arg_f32(KLaunch *l, float f)
{
    KArg *a = next_arg(l);
    a->kind = KA_F32;
    a->f = f;
}

void kl_param(KLaunch *l, const char *key, int64_t v)
{
    assert(l->nparams < KL_MAX_PARAMS);
    l->params[l->nparams].key = key;
    l->params[l->nparams].value = v;
    l->nparams++;
}

SymExpr node_rows_expr(const Node *n)
{
    SymExpr e = sym_const(1);
    for (int i = 0; i + 1 < n->ndim; i++) {
        if (n->dim[i].sym)
            sym_mul_mono(&e, n->dim[i].sym);
        else
            e = sym_scale(e, n->dim[i].n);
    }
    return e;
}

bool kl_use_pdl(const Codegen *cg, const Node *n)
{
    return cg->target->sm >= 90 && !node_has_sym(n, SYM_SEQ);
}
