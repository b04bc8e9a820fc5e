/* builder.c — IR emission helpers for the layer expansions. */
#include "builder.h"

#include <string.h>

static const char *pname(Builder *b, const char *name)
{
    return arena_printf(b->g->arena, "%s%s", b->prefix, name);
}

Node *b_weight(Builder *b, const char *name, const char *ext, DType dt, int ndim, const int64_t *dims,
               const char *init, double a, double bb)
{
    Node *n = graph_add(b->g, OP_weight, dt, 0, NULL);
    n->name = pname(b, name);
    n->ext = arena_strdup(b->g->arena, ext);
    n->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        n->dim[i] = dim_n(dims[i]);
    node_set_str(b->g, n, "init", init);
    if (!strcmp(init, "normal")) {
        node_set_float(b->g, n, "std", a);
    } else if (strcmp(init, "ones") && strcmp(init, "zeros")) {
        node_set_float(b->g, n, "lo", a);
        node_set_float(b->g, n, "hi", bb);
    }
    return n;
}

Node *b_state(Builder *b, const char *name, const char *ext, int ndim, const int64_t *dims)
{
    Node *n = graph_add(b->g, OP_state, DT_F32, 0, NULL);
    n->name = pname(b, name);
    n->ext = arena_strdup(b->g->arena, ext);
    n->ndim = ndim + 1;
    n->dim[0] = dim_sym(SYM_BATCH);
    for (int i = 0; i < ndim; i++)
        n->dim[i + 1] = dim_n(dims[i]);
    return n;
}

Node *b_op(Builder *b, Op op, DType dt, const char *name, int nsrc, Node *const *src)
{
    Node *n = graph_add(b->g, op, dt, nsrc, src);
    n->name = pname(b, name);
    return n;
}

Node *b_slice(Builder *b, const char *name, Node *x, int64_t begin, int64_t end)
{
    Node *n = b_op(b, OP_slice, x->dtype, name, 1, &x);
    node_set_int(b->g, n, "begin", begin);
    node_set_int(b->g, n, "end", end);
    return n;
}
