/* eval.c — runs a graph on the CPU, node by node, with the op table's
 * reference functions. */
#include "eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Entry {
    char *name;    /* external name */
    float *data;   /* owned array */
    int64_t numel; /* element count */
    bool is_state; /* created for a state node: zeroed on reset */
} Entry;

struct EvalStore {
    Entry *e;      /* entries [n] */
    int n, cap;    /* count and capacity */
};

EvalStore *eval_store_new(void) { return calloc(1, sizeof(EvalStore)); }

void eval_store_free(EvalStore *s)
{
    if (!s)
        return;
    for (int i = 0; i < s->n; i++) {
        free(s->e[i].name);
        free(s->e[i].data);
    }
    free(s->e);
    free(s);
}

static Entry *find(EvalStore *s, const char *name)
{
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->e[i].name, name))
            return &s->e[i];
    return NULL;
}

static Entry *put(EvalStore *s, const char *name, float *data, int64_t numel)
{
    Entry *e = find(s, name);
    if (e) {
        free(e->data);
    } else {
        if (s->n == s->cap) {
            s->cap = s->cap ? 2 * s->cap : 64;
            s->e = realloc(s->e, sizeof(Entry) * (size_t)s->cap);
            if (!s->e)
                abort();
        }
        e = &s->e[s->n++];
        e->name = strdup(name);
    }
    e->data = data;
    e->numel = numel;
    e->is_state = false;
    return e;
}

void eval_store_put(EvalStore *s, const char *name, float *data, int64_t numel) { put(s, name, data, numel); }

float *eval_store_get(EvalStore *s, const char *name, int64_t *numel)
{
    Entry *e = find(s, name);
    if (!e)
        return NULL;
    if (numel)
        *numel = e->numel;
    return e->data;
}

void eval_store_reset_states(EvalStore *s)
{
    for (int i = 0; i < s->n; i++)
        if (s->e[i].is_state)
            memset(s->e[i].data, 0, sizeof(float) * (size_t)s->e[i].numel);
}

float bf16_round(float x)
{
    uint32_t u;
    memcpy(&u, &x, 4);
    if ((u & 0x7f800000u) == 0x7f800000u) { /* inf or nan: keep, quiet nan */
        if (u & 0x007fffffu)
            u |= 0x00400000u;
        u &= 0xffff0000u;
    } else {
        u += 0x7fffu + ((u >> 16) & 1u);
        u &= 0xffff0000u;
    }
    memcpy(&x, &u, 4);
    return x;
}

bool eval_graph(const Graph *g, EvalStore *store, const int64_t sym[SYM_COUNT], const EvalInput *in, int nin,
                EvalOutput *out, int nout, Diag *d)
{
    EvalCtx c = {.g = g};
    memcpy(c.sym, sym, sizeof c.sym);
    c.val = calloc((size_t)g->nnodes, sizeof(float *));
    int *last_use = calloc((size_t)g->nnodes, sizeof(int));
    bool *owned = calloc((size_t)g->nnodes, sizeof(bool));
    bool ok = false;
    if (!c.val || !last_use || !owned)
        abort();
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        last_use[i] = i;
        for (int j = 0; j < n->nsrc; j++)
            last_use[n->src[j]->id] = i;
    }
    for (int i = 0; i < g->noutputs; i++)
        last_use[g->outputs[i].node->id] = g->nnodes;

    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->dead)
            continue;
        /* The element count, checked: a graph from a plan file is input too. */
        int64_t numel = 1;
        for (int k = 0; k < n->ndim; k++) {
            int64_t v = n->dim[k].sym ? c.sym[n->dim[k].sym] : n->dim[k].n;
            if (v < 0 || __builtin_mul_overflow(numel, v, &numel) || numel > (INT64_MAX >> 3)) {
                diag_fail(d, "%%%s: too many elements for the CPU reference", n->name ? n->name : "?");
                goto done;
            }
        }
        if (n->op == OP_input) {
            const EvalInput *b = NULL;
            for (int k = 0; k < nin; k++)
                if (!strcmp(in[k].name, n->ext))
                    b = &in[k];
            if (!b) {
                diag_fail(d, "input \"%s\" not bound", n->ext);
                goto done;
            }
            if (b->numel != numel) {
                diag_fail(d, "input \"%s\" has %lld elements, expected %lld", n->ext, (long long)b->numel,
                          (long long)numel);
                goto done;
            }
            c.val[i] = (float *)b->data;
        } else if (n->op == OP_weight || n->op == OP_state) {
            int64_t have = 0;
            float *data = eval_store_get(store, n->ext, &have);
            if (!data && n->op == OP_state) {
                data = calloc((size_t)(numel ? numel : 1), sizeof(float));
                if (!data) {
                    diag_fail(d, "out of memory: state \"%s\" needs %lld floats", n->ext, (long long)numel);
                    goto done;
                }
                put(store, n->ext, data, numel)->is_state = true;
                have = numel;
            }
            if (!data) {
                diag_fail(d, "weight \"%s\" not loaded", n->ext);
                goto done;
            }
            if (have < numel || (n->op == OP_weight && have != numel)) {
                diag_fail(d, "%s \"%s\" has %lld elements, expected %lld", op_info[n->op].name, n->ext,
                          (long long)have, (long long)numel);
                goto done;
            }
            c.val[i] = data;
        } else {
            c.val[i] = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
            if (!c.val[i]) {
                diag_fail(d, "out of memory: %%%s needs %lld floats", n->name ? n->name : "?", (long long)numel);
                goto done;
            }
            owned[i] = true;
            op_info[n->op].ref(&c, n);
            if (n->dtype == DT_BF16)
                for (int64_t k = 0; k < numel; k++)
                    c.val[i][k] = bf16_round(c.val[i][k]);
        }
        for (int j = 0; j < n->nsrc; j++) {
            int s = n->src[j]->id;
            if (owned[s] && last_use[s] == i) {
                free(c.val[s]);
                c.val[s] = NULL;
                owned[s] = false;
            }
        }
    }
    for (int k = 0; k < nout; k++) {
        const Output *o = NULL;
        for (int i = 0; i < g->noutputs; i++)
            if (!strcmp(g->outputs[i].name, out[k].name))
                o = &g->outputs[i];
        if (!o) {
            diag_fail(d, "graph has no output \"%s\"", out[k].name);
            goto done;
        }
        int64_t numel = node_numel(o->node, c.sym);
        out[k].data = malloc(sizeof(float) * (size_t)(numel ? numel : 1));
        if (!out[k].data)
            abort();
        memcpy(out[k].data, c.val[o->node->id], sizeof(float) * (size_t)numel);
        out[k].numel = numel;
    }
    ok = true;
done:
    for (int i = 0; i < g->nnodes; i++)
        if (owned[i])
            free(c.val[i]);
    free(c.val);
    free(last_use);
    free(owned);
    return ok;
}
