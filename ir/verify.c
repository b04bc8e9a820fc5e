/* verify.c — structural and type checks of a graph. */
#include <string.h>

#include "ir.h"

bool ir_verify(const Graph *g, Diag *d)
{
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->dead)
            continue;
        const OpInfo *oi = &op_info[n->op];
        char who[160];
        if (n->name)
            snprintf(who, sizeof who, "%%%s (%s)", n->name, oi->name);
        else
            snprintf(who, sizeof who, "%%%d (%s)", n->id, oi->name);
        if (n->id != i)
            return diag_fail(d, "%s: id %d at position %d", who, n->id, i);
        if (n->nsrc < oi->nsrc_min || n->nsrc > oi->nsrc_max)
            return diag_fail(d, "%s: has %d operands, takes %d..%d", who, n->nsrc, oi->nsrc_min, oi->nsrc_max);
        for (int j = 0; j < n->nsrc; j++) {
            const Node *s = n->src[j];
            if (!s || s->dead)
                return diag_fail(d, "%s: operand %d is missing or dead", who, j);
            if (s->id >= i || g->nodes[s->id] != s)
                return diag_fail(d, "%s: operand %d is not defined before its use", who, j);
        }
        if (!(oi->flags & OPF_LEAF) && n->ext)
            return diag_fail(d, "%s: only input, weight and state take an external name", who);
        if (n->ndim < 0)
            return diag_fail(d, "%s: shape not inferred", who);
        int ndim;
        Dim dim[IR_MAX_DIMS];
        Diag sub = {0};
        if (!oi->infer(n, &ndim, dim, &sub))
            return diag_fail(d, "%s: %s", who, sub.msg);
        bool same = ndim == n->ndim;
        for (int k = 0; same && k < ndim; k++)
            same = dim_eq(dim[k], n->dim[k]);
        if (!same)
            return diag_fail(d, "%s: declared shape differs from the inferred shape", who);
        for (int j = 0; j < i; j++) {
            const Node *m = g->nodes[j];
            if (n->name && !m->dead && m->name && !strcmp(m->name, n->name))
                return diag_fail(d, "%s: value name defined twice", who);
        }
    }
    if (!g->noutputs)
        return diag_fail(d, "graph %s has no outputs", g->name);
    for (int i = 0; i < g->noutputs; i++)
        if (!g->outputs[i].node || g->outputs[i].node->dead)
            return diag_fail(d, "output \"%s\" refers to a dead value", g->outputs[i].name);
    return true;
}
