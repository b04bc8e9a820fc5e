/* infer_shapes.c — fills each node's shape from its op's rule (ir/infer.c).
 * Nodes with a declared shape keep it; the verifier checks it agrees. */
#include "passes.h"

bool pass_infer_shapes(Graph *g, Diag *d)
{
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead || n->ndim >= 0)
            continue;
        int ndim;
        Dim dim[IR_MAX_DIMS];
        Diag sub = {0};
        if (!op_info[n->op].infer(n, &ndim, dim, &sub))
            return diag_fail(d, "%%%s: %s", n->name ? n->name : "?", sub.msg);
        node_set_shape(n, ndim, dim);
    }
    return true;
}

bool pass_verify(Graph *g, Diag *d) { return ir_verify(g, d); }
