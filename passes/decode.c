/* decode.c — decode specialisation: the graph for one new token per
 * sequence. Every `seq` dim becomes 1, so lowering picks the single-step
 * kernels (the O(1) state update instead of the chunked scan) and buffer
 * sizes scale with batch only. Inputs, weights and states keep their names,
 * so the decode program shares them with prefill. */
#include "passes.h"

bool pass_decode(Graph *g, Diag *d)
{
    (void)d;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        for (int k = 0; k < n->ndim; k++)
            if (n->dim[k].sym == SYM_SEQ)
                n->dim[k] = dim_n(1);
    }
    return true;
}
