/* dce.c — dead-code elimination: a node lives if an output or an effect
 * (an op that writes state) needs it; everything else is dropped. */
#include <stdlib.h>

#include "passes.h"

bool pass_dce(Graph *g, Diag *d)
{
    bool *live = calloc((size_t)g->nnodes + 1, sizeof(bool));
    if (!live)
        return diag_fail(d, "out of memory");
    for (int i = 0; i < g->noutputs; i++)
        live[g->outputs[i].node->id] = true;
    for (int i = g->nnodes - 1; i >= 0; i--) {
        Node *n = g->nodes[i];
        if (n->dead)
            continue;
        if (op_info[n->op].flags & OPF_EFFECT)
            live[i] = true;
        if (!live[i])
            continue;
        for (int j = 0; j < n->nsrc; j++)
            live[n->src[j]->id] = true;
    }
    for (int i = 0; i < g->nnodes; i++)
        if (!live[i])
            g->nodes[i]->dead = true;
    free(live);
    graph_compact(g);
    return true;
}
