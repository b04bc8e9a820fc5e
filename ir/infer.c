/* infer.c — per-op shape and type rules (infer_NAME, referenced by ops.def).
 *
 * Each rule checks its srcs' ranks, sizes and dtypes and the attributes it
 * needs, then writes the output shape. The verifier compares that with the
 * declared shape; shape inference fills it in where none was declared. */
#include <string.h>

#include "ir.h"

#define CHECK(cond, ...)                  \
    do {                                  \
        if (!(cond))                      \
            return diag_fail(d, __VA_ARGS__); \
    } while (0)

/* Prints a dim as text for messages. */
static const char *dstr(Dim x, char *buf)
{
    if (x.sym)
        return sym_name(x.sym);
    snprintf(buf, 24, "%lld", (long long)x.n);
    return buf;
}

static bool want_rank(const Node *n, int i, int rank, Diag *d)
{
    CHECK(n->src[i]->ndim == rank, "%s: operand %d must have rank %d, has %d", op_info[n->op].name, i, rank,
          n->src[i]->ndim);
    return true;
}

static bool want_dim(const Node *n, int i, int axis, Dim want, Diag *d)
{
    char a[24], b[24];
    Dim have = n->src[i]->dim[axis];
    CHECK(dim_eq(have, want), "%s: operand %d dim %d is %s, expected %s", op_info[n->op].name, i, axis,
          dstr(have, a), dstr(want, b));
    return true;
}

static bool want_vec(const Node *n, int i, int64_t len, Diag *d)
{
    return want_rank(n, i, 1, d) && want_dim(n, i, 0, dim_n(len), d);
}

static bool want_dtype(const Node *n, int i, DType t, Diag *d)
{
    CHECK(n->src[i]->dtype == t, "%s: operand %d must be %s, is %s", op_info[n->op].name, i, dtype_name(t),
          dtype_name(n->src[i]->dtype));
    return true;
}

static bool want_float(const Node *n, int i, Diag *d)
{
    CHECK(n->src[i]->dtype != DT_I32, "%s: operand %d must be f32 or bf16", op_info[n->op].name, i);
    return true;
}

static bool want_attr(const Node *n, const char *key, int64_t lo, Diag *d)
{
    const Attr *a = node_attr(n, key);
    CHECK(a && a->kind == ATTR_INT, "%s: missing integer attribute '%s'", op_info[n->op].name, key);
    CHECK(a->i >= lo, "%s: attribute %s=%lld must be >= %lld", op_info[n->op].name, key, (long long)a->i,
          (long long)lo);
    return true;
}

static void copy_shape(const Node *s, int *ndim, Dim *dim)
{
    *ndim = s->ndim;
    memcpy(dim, s->dim, sizeof(Dim) * (size_t)s->ndim);
}

/* ---- leaves: the declared shape is the shape ---- */
static bool leaf(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    CHECK(n->ndim >= 0, "%s: a leaf needs a declared shape", op_info[n->op].name);
    CHECK(n->ext, "%s: a leaf needs an external name", op_info[n->op].name);
    copy_shape(n, ndim, dim);
    return true;
}

bool infer_input(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    CHECK(n->dtype == DT_I32, "input: must be i32");
    return leaf(n, ndim, dim, d);
}

bool infer_weight(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    CHECK(n->dtype != DT_I32, "weight: must be f32 or bf16");
    for (int i = 0; i < n->ndim; i++)
        CHECK(!n->dim[i].sym && n->dim[i].n > 0, "weight: dims must be static and positive");
    return leaf(n, ndim, dim, d);
}

bool infer_state(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    CHECK(n->dtype == DT_F32, "state: must be f32");
    CHECK(n->ndim >= 1 && n->dim[0].sym == SYM_BATCH, "state: first dim must be batch");
    return leaf(n, ndim, dim, d);
}

/* ---- compute ops ---- */
bool infer_embed(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *t = n->src[0], *tok = n->src[1];
    if (!want_rank(n, 0, 2, d) || !want_float(n, 0, d) || !want_dtype(n, 1, DT_I32, d))
        return false;
    CHECK(tok->ndim + 1 <= IR_MAX_DIMS, "embed: tokens rank too large");
    copy_shape(tok, ndim, dim);
    dim[(*ndim)++] = t->dim[1];
    return true;
}

bool infer_rmsnorm(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *x = n->src[0];
    CHECK(x->ndim >= 1, "rmsnorm: x must have rank >= 1");
    if (!want_float(n, 0, d) || !want_rank(n, 1, 1, d) || !want_dim(n, 1, 0, x->dim[x->ndim - 1], d))
        return false;
    CHECK(node_float(n, "eps", -1) > 0, "rmsnorm: needs attribute eps > 0");
    copy_shape(x, ndim, dim);
    return true;
}

bool infer_matmul(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *x = n->src[0], *w = n->src[1];
    const char *pro = node_str(n, "prologue", NULL);
    CHECK(!pro || !strcmp(pro, "rmsnorm") || !strcmp(pro, "gated_rmsnorm"), "matmul: unknown prologue '%s'", pro);
    int nres = n->nsrc - 2 - (pro != NULL); /* residual operands: 0 or 1 */
    CHECK(nres == 0 || nres == 1, "matmul: %d operands do not fit prologue %s", n->nsrc, pro ? pro : "(none)");
    CHECK(x->ndim >= 2, "matmul: x must have rank >= 2");
    if (!want_dtype(n, 0, pro && !strcmp(pro, "rmsnorm") ? DT_F32 : DT_BF16, d) || !want_dtype(n, 1, DT_BF16, d) ||
        !want_rank(n, 1, 2, d) || !want_dim(n, 1, 1, x->dim[x->ndim - 1], d))
        return false;
    CHECK(n->dtype != DT_I32, "matmul: output must be f32 or bf16");
    copy_shape(x, ndim, dim);
    dim[*ndim - 1] = w->dim[0];
    if (nres) {
        const Node *r = n->src[2];
        CHECK(r->ndim == *ndim, "matmul: residual rank %d, expected %d", r->ndim, *ndim);
        for (int i = 0; i < r->ndim; i++)
            if (!want_dim(n, 2, i, dim[i], d))
                return false;
        CHECK(r->dtype == n->dtype, "matmul: residual dtype must equal the output's");
    }
    if (pro) {
        int k = n->nsrc - 1;
        if (!want_rank(n, k, 1, d) || !want_dim(n, k, 0, x->dim[x->ndim - 1], d) || !want_dtype(n, k, DT_F32, d))
            return false;
        CHECK(node_float(n, "eps", -1) > 0, "matmul: prologue needs attribute eps > 0");
        if (!strcmp(pro, "gated_rmsnorm")) {
            int64_t g = node_int(n, "group", 0);
            CHECK(g > 0 && !x->dim[x->ndim - 1].sym && x->dim[x->ndim - 1].n % g == 0,
                  "matmul: gated_rmsnorm prologue needs a group dividing K");
        }
    }
    return true;
}

bool infer_add(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *a = n->src[0], *b = n->src[1];
    CHECK(node_same_shape(a, b), "add: operands have different shapes");
    CHECK(a->dtype != DT_I32 && b->dtype != DT_I32, "add: operands must be float");
    copy_shape(a, ndim, dim);
    return true;
}

bool infer_slice(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *x = n->src[0];
    CHECK(x->ndim >= 1, "slice: x must have rank >= 1");
    Dim last = x->dim[x->ndim - 1];
    CHECK(!last.sym, "slice: the sliced dim must be static");
    int64_t b = node_int(n, "begin", -1), e = node_int(n, "end", -1);
    CHECK(b >= 0 && e > b && e <= last.n, "slice: need 0 <= begin < end <= %lld (begin=%lld end=%lld)",
          (long long)last.n, (long long)b, (long long)e);
    CHECK(n->dtype == x->dtype, "slice: output dtype must equal the input's");
    copy_shape(x, ndim, dim);
    dim[*ndim - 1] = dim_n(e - b);
    return true;
}

bool infer_silu(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    if (!want_float(n, 0, d))
        return false;
    copy_shape(n->src[0], ndim, dim);
    return true;
}

bool infer_conv1d(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *x = n->src[0], *w = n->src[1];
    if (!want_rank(n, 0, 3, d) || !want_rank(n, 1, 2, d))
        return false;
    Dim c = x->dim[2], bt = x->dim[0];
    Dim width = w->dim[1];
    CHECK(!width.sym && width.n >= 1, "conv1d: width must be static");
    if (!want_dim(n, 1, 0, c, d) || !want_rank(n, 2, 1, d) || !want_dim(n, 2, 0, c, d) ||
        !want_rank(n, 3, 3, d) || !want_dim(n, 3, 0, bt, d) || !want_dim(n, 3, 1, c, d) ||
        !want_dim(n, 3, 2, width, d) || !want_dtype(n, 3, DT_F32, d) || !want_dtype(n, 4, DT_I32, d) ||
        !want_rank(n, 4, 1, d) || !want_dim(n, 4, 0, bt, d))
        return false;
    copy_shape(x, ndim, dim);
    return true;
}

bool infer_dt_softplus(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *dt = n->src[0];
    if (!want_rank(n, 0, 3, d) || !want_rank(n, 1, 1, d) || !want_dim(n, 1, 0, dt->dim[2], d))
        return false;
    CHECK(node_float(n, "dt_max", 1) >= node_float(n, "dt_min", 0), "dt_softplus: dt_max < dt_min");
    copy_shape(dt, ndim, dim);
    return true;
}

/* Shared checks of the SSD parameters; fills H, P, N, G. */
static bool ssd_params(const Node *n, int64_t *H, int64_t *P, int64_t *N, int64_t *G, Diag *d)
{
    if (!want_attr(n, "heads", 1, d) || !want_attr(n, "headdim", 1, d) || !want_attr(n, "dstate", 1, d) ||
        !want_attr(n, "groups", 1, d) || !want_attr(n, "chunk", 1, d))
        return false;
    *H = node_int(n, "heads", 0);
    *P = node_int(n, "headdim", 0);
    *N = node_int(n, "dstate", 0);
    *G = node_int(n, "groups", 0);
    CHECK(*H % *G == 0, "%s: heads (%lld) must be a multiple of groups (%lld)", op_info[n->op].name,
          (long long)*H, (long long)*G);
    int64_t c = node_int(n, "chunk", 0);
    CHECK((c & (c - 1)) == 0, "%s: chunk (%lld) must be a power of two", op_info[n->op].name, (long long)c);
    return true;
}

bool infer_ssd(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    int64_t H, P, N, G;
    if (!ssd_params(n, &H, &P, &N, &G, d))
        return false;
    const Node *x = n->src[0];
    if (!want_rank(n, 0, 3, d) || !want_dim(n, 0, 2, dim_n(H * P), d))
        return false;
    Dim bt = x->dim[0], sq = x->dim[1];
    if (!want_rank(n, 1, 3, d) || !want_dim(n, 1, 0, bt, d) || !want_dim(n, 1, 1, sq, d) ||
        !want_dim(n, 1, 2, dim_n(H), d) || !want_vec(n, 2, H, d))
        return false;
    for (int i = 3; i <= 4; i++)
        if (!want_rank(n, i, 3, d) || !want_dim(n, i, 0, bt, d) || !want_dim(n, i, 1, sq, d) ||
            !want_dim(n, i, 2, dim_n(G * N), d))
            return false;
    if (!want_vec(n, 5, H, d) || !want_rank(n, 6, 4, d) || !want_dim(n, 6, 0, bt, d) ||
        !want_dim(n, 6, 1, dim_n(H), d) || !want_dim(n, 6, 2, dim_n(P), d) || !want_dim(n, 6, 3, dim_n(N), d) ||
        !want_dtype(n, 6, DT_F32, d))
        return false;
    copy_shape(x, ndim, dim);
    return true;
}

bool infer_gated_rmsnorm(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *y = n->src[0];
    CHECK(y->ndim >= 1, "gated_rmsnorm: y must have rank >= 1");
    CHECK(node_same_shape(y, n->src[1]), "gated_rmsnorm: y and z have different shapes");
    Dim c = y->dim[y->ndim - 1];
    if (!want_rank(n, 2, 1, d) || !want_dim(n, 2, 0, c, d) || !want_attr(n, "group", 1, d))
        return false;
    CHECK(!c.sym && c.n % node_int(n, "group", 1) == 0, "gated_rmsnorm: group must divide the channels");
    CHECK(node_float(n, "eps", -1) > 0, "gated_rmsnorm: needs attribute eps > 0");
    copy_shape(y, ndim, dim);
    return true;
}

bool infer_mamba2_mixer(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    int64_t H, P, N, G;
    if (!ssd_params(n, &H, &P, &N, &G, d) || !want_attr(n, "d_conv", 1, d))
        return false;
    CHECK(node_float(n, "eps", -1) > 0, "mamba2_mixer: needs attribute eps > 0");
    const char *norm = node_str(n, "norm", NULL);
    CHECK(!norm || (!strcmp(norm, "deferred") && !node_int(n, "norm_before_gate", 0)),
          "mamba2_mixer: norm may only be \"deferred\", and not with norm_before_gate");
    int64_t Di = H * P, CD = Di + 2 * G * N, W = node_int(n, "d_conv", 0);
    const Node *u = n->src[0];
    if (!want_rank(n, 0, 3, d) || !want_dim(n, 0, 2, dim_n(2 * Di + 2 * G * N + H), d) ||
        !want_dtype(n, 0, DT_BF16, d))
        return false;
    Dim bt = u->dim[0];
    if (!want_rank(n, 1, 2, d) || !want_dim(n, 1, 0, dim_n(CD), d) || !want_dim(n, 1, 1, dim_n(W), d) ||
        !want_vec(n, 2, CD, d) || !want_vec(n, 3, H, d) || !want_vec(n, 4, H, d) || !want_vec(n, 5, H, d) ||
        !want_vec(n, 6, Di, d))
        return false;
    if (!want_rank(n, 7, 3, d) || !want_dim(n, 7, 0, bt, d) || !want_dim(n, 7, 1, dim_n(CD), d) ||
        !want_dim(n, 7, 2, dim_n(W), d) || !want_dtype(n, 7, DT_F32, d))
        return false;
    if (!want_rank(n, 8, 4, d) || !want_dim(n, 8, 0, bt, d) || !want_dim(n, 8, 1, dim_n(H), d) ||
        !want_dim(n, 8, 2, dim_n(P), d) || !want_dim(n, 8, 3, dim_n(N), d) || !want_dtype(n, 8, DT_F32, d))
        return false;
    if (!want_dtype(n, 9, DT_I32, d) || !want_rank(n, 9, 1, d) || !want_dim(n, 9, 0, bt, d))
        return false;
    copy_shape(u, ndim, dim);
    dim[2] = dim_n(Di);
    return true;
}
