/* graph.c — building, editing and querying graphs; node attributes; dtypes. */
#include <assert.h>
#include <string.h>

#include "ir.h"

/* ---- dtypes ---- */
static const char *const dtype_names[DT_COUNT] = {"f32", "bf16", "i32"};
static const size_t dtype_sizes[DT_COUNT] = {4, 2, 4};

const char *dtype_name(DType t) { return t < DT_COUNT ? dtype_names[t] : "?"; }
size_t dtype_size(DType t) { return t < DT_COUNT ? dtype_sizes[t] : 0; }

bool dtype_parse(const char *s, DType *out)
{
    for (int i = 0; i < DT_COUNT; i++)
        if (!strcmp(s, dtype_names[i])) {
            *out = (DType)i;
            return true;
        }
    return false;
}

bool op_parse(const char *s, Op *out)
{
    for (int i = 0; i < OP_COUNT; i++)
        if (!strcmp(s, op_info[i].name)) {
            *out = (Op)i;
            return true;
        }
    return false;
}

/* ---- graphs ---- */
Graph *graph_new(Arena *a, const char *name)
{
    Graph *g = arena_alloc(a, sizeof *g);
    g->arena = a;
    g->name = arena_strdup(a, name ? name : "main");
    return g;
}

static void graph_grow(Graph *g)
{
    int cap = g->cap ? g->cap * 2 : 64;
    Node **n = arena_alloc(g->arena, sizeof(Node *) * (size_t)cap);
    if (g->nnodes)
        memcpy(n, g->nodes, sizeof(Node *) * (size_t)g->nnodes);
    g->nodes = n;
    g->cap = cap;
}

Node *graph_add(Graph *g, Op op, DType dt, int nsrc, Node *const *src)
{
    assert(nsrc >= 0 && nsrc <= IR_MAX_SRC);
    if (g->nnodes == g->cap)
        graph_grow(g);
    Node *n = arena_alloc(g->arena, sizeof *n);
    n->id = g->nnodes;
    n->op = op;
    n->dtype = dt;
    n->ndim = -1;
    n->nsrc = nsrc;
    for (int i = 0; i < nsrc; i++)
        n->src[i] = src[i];
    g->nodes[g->nnodes++] = n;
    return n;
}

void graph_add_output(Graph *g, Node *n, const char *name)
{
    Output *o = arena_alloc(g->arena, sizeof(Output) * (size_t)(g->noutputs + 1));
    if (g->noutputs)
        memcpy(o, g->outputs, sizeof(Output) * (size_t)g->noutputs);
    o[g->noutputs].node = n;
    o[g->noutputs].name = arena_strdup(g->arena, name);
    g->outputs = o;
    g->noutputs++;
}

void graph_compact(Graph *g)
{
    int k = 0;
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (n->dead)
            continue;
        n->id = k;
        g->nodes[k++] = n;
    }
    g->nnodes = k;
}

Graph *graph_clone(Arena *a, const Graph *g)
{
    Graph *c = graph_new(a, g->name);
    Node **map = arena_alloc(a, sizeof(Node *) * (size_t)(g->nnodes + 1));
    for (int i = 0; i < g->nnodes; i++) {
        const Node *n = g->nodes[i];
        if (n->dead)
            continue;
        Node *src[IR_MAX_SRC];
        for (int j = 0; j < n->nsrc; j++) {
            src[j] = map[n->src[j]->id];
            assert(src[j]);
        }
        Node *m = graph_add(c, n->op, n->dtype, n->nsrc, src);
        m->ndim = n->ndim;
        memcpy(m->dim, n->dim, sizeof m->dim);
        m->name = arena_strdup(a, n->name);
        m->ext = arena_strdup(a, n->ext);
        m->nattr = n->nattr;
        m->attr = arena_alloc(a, sizeof(Attr) * (size_t)(n->nattr ? n->nattr : 1));
        for (int j = 0; j < n->nattr; j++) {
            m->attr[j] = n->attr[j];
            m->attr[j].key = arena_strdup(a, n->attr[j].key);
            m->attr[j].s = arena_strdup(a, n->attr[j].s);
        }
        map[i] = m;
    }
    for (int i = 0; i < g->noutputs; i++)
        graph_add_output(c, map[g->outputs[i].node->id], g->outputs[i].name);
    return c;
}

int graph_uses(const Graph *g, const Node *n)
{
    int u = 0;
    for (int i = 0; i < g->nnodes; i++) {
        const Node *m = g->nodes[i];
        if (m->dead)
            continue;
        for (int j = 0; j < m->nsrc; j++)
            u += m->src[j] == n;
    }
    for (int i = 0; i < g->noutputs; i++)
        u += g->outputs[i].node == n;
    return u;
}

void graph_replace_uses(Graph *g, Node *from, Node *to)
{
    for (int i = 0; i < g->nnodes; i++) {
        Node *m = g->nodes[i];
        for (int j = 0; j < m->nsrc; j++)
            if (m->src[j] == from)
                m->src[j] = to;
    }
    for (int i = 0; i < g->noutputs; i++)
        if (g->outputs[i].node == from)
            g->outputs[i].node = to;
}

void graph_move_before(Graph *g, Node *n, Node *before)
{
    int from = n->id, to = before->id;
    assert(g->nodes[from] == n && g->nodes[to] == before);
    if (from < to)
        return;
    memmove(&g->nodes[to + 1], &g->nodes[to], sizeof(Node *) * (size_t)(from - to));
    g->nodes[to] = n;
    for (int i = to; i <= from; i++)
        g->nodes[i]->id = i;
}

Node *graph_find(const Graph *g, const char *name)
{
    for (int i = 0; i < g->nnodes; i++) {
        Node *n = g->nodes[i];
        if (!n->dead && n->name && !strcmp(n->name, name))
            return n;
    }
    return NULL;
}

/* ---- nodes ---- */
void node_set_shape(Node *n, int ndim, const Dim *dim)
{
    assert(ndim >= 0 && ndim <= IR_MAX_DIMS);
    n->ndim = ndim;
    for (int i = 0; i < ndim; i++)
        n->dim[i] = dim[i];
}

bool node_has_sym(const Node *n, Sym s)
{
    for (int i = 0; i < n->ndim; i++)
        if (n->dim[i].sym == s)
            return true;
    return false;
}

bool node_same_shape(const Node *a, const Node *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int i = 0; i < a->ndim; i++)
        if (!dim_eq(a->dim[i], b->dim[i]))
            return false;
    return true;
}

const Attr *node_attr(const Node *n, const char *key)
{
    for (int i = 0; i < n->nattr; i++)
        if (!strcmp(n->attr[i].key, key))
            return &n->attr[i];
    return NULL;
}

int64_t node_int(const Node *n, const char *key, int64_t dflt)
{
    const Attr *a = node_attr(n, key);
    if (!a)
        return dflt;
    if (a->kind == ATTR_INT)
        return a->i;
    /* a float outside int64's range (or NaN) has no integer value */
    return a->kind == ATTR_FLOAT && a->f > -0x1p63 && a->f < 0x1p63 ? (int64_t)a->f : dflt;
}

double node_float(const Node *n, const char *key, double dflt)
{
    const Attr *a = node_attr(n, key);
    if (!a)
        return dflt;
    return a->kind == ATTR_FLOAT ? a->f : a->kind == ATTR_INT ? (double)a->i : dflt;
}

const char *node_str(const Node *n, const char *key, const char *dflt)
{
    const Attr *a = node_attr(n, key);
    return a && a->kind == ATTR_STR ? a->s : dflt;
}

static Attr *attr_slot(Graph *g, Node *n, const char *key)
{
    for (int i = 0; i < n->nattr; i++)
        if (!strcmp(n->attr[i].key, key))
            return &n->attr[i];
    Attr *a = arena_alloc(g->arena, sizeof(Attr) * (size_t)(n->nattr + 1));
    if (n->nattr)
        memcpy(a, n->attr, sizeof(Attr) * (size_t)n->nattr);
    n->attr = a;
    Attr *s = &a[n->nattr++];
    s->key = arena_strdup(g->arena, key);
    return s;
}

void node_set_int(Graph *g, Node *n, const char *key, int64_t v)
{
    Attr *a = attr_slot(g, n, key);
    a->kind = ATTR_INT;
    a->i = v;
}

void node_set_float(Graph *g, Node *n, const char *key, double v)
{
    Attr *a = attr_slot(g, n, key);
    a->kind = ATTR_FLOAT;
    a->f = v;
}

void node_set_str(Graph *g, Node *n, const char *key, const char *v)
{
    Attr *a = attr_slot(g, n, key);
    a->kind = ATTR_STR;
    a->s = arena_strdup(g->arena, v);
}

int64_t node_numel(const Node *n, const int64_t symval[SYM_COUNT])
{
    int64_t e = 1;
    for (int i = 0; i < n->ndim; i++)
        e *= n->dim[i].sym ? symval[n->dim[i].sym] : n->dim[i].n;
    return e;
}

bool node_bytes_expr(const Node *n, SymExpr *out)
{
    SymExpr e = sym_const((int64_t)dtype_size(n->dtype));
    for (int i = 0; i < n->ndim; i++) {
        if (n->dim[i].sym) {
            if (!sym_mul_mono(&e, n->dim[i].sym))
                return false;
        } else {
            e = sym_scale(e, n->dim[i].n);
        }
    }
    *out = e;
    return true;
}
