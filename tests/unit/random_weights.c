/* random_weights.c — see random_weights.h. */
#include "random_weights.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

float random_uniform(uint64_t *rng)
{
    *rng = *rng * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((*rng >> 40) & 0xffffff) / 8388608.0f - 1.0f;
}

EvalStore *random_weights(const Graph *g, uint64_t *rng)
{
    EvalStore *s = eval_store_new();
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->op != OP_weight)
            continue;
        int64_t sym[SYM_COUNT] = {0}, k = node_numel(n, sym);
        float *v = malloc(sizeof(float) * (size_t)k);
        for (int64_t j = 0; j < k; j++) {
            float r = random_uniform(rng);
            if (strstr(n->ext, "A_log"))
                r = logf(2.0f + 4.0f * (r + 1.0f));
            else if (strstr(n->ext, "dt_bias"))
                r = -3.0f + r;
            else if (strstr(n->ext, "norm"))
                r = 1.0f + 0.1f * r;
            else
                r *= 0.3f;
            v[j] = n->dtype == DT_BF16 ? bf16_round(r) : r;
        }
        eval_store_put(s, n->ext, v, k);
    }
    return s;
}
