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

/* Integer attributes are sizes: capped so that the products the rules
 * form of a few of them (heads * headdim, ...) cannot overflow int64. */
#define ATTR_MAX (1ll << 24)

static bool want_attr(const Node *n, const char *key, int64_t lo, Diag *d)
{
    const Attr *a = node_attr(n, key);
    CHECK(a && a->kind == ATTR_INT, "%s: missing integer attribute '%s'", op_info[n->op].name, key);
    CHECK(a->i >= lo, "%s: attribute %s=%lld must be >= %lld", op_info[n->op].name, key, (long long)a->i,
          (long long)lo);
    CHECK(a->i <= ATTR_MAX, "%s: attribute %s=%lld is larger than %lld", op_info[n->op].name, key, (long long)a->i,
          ATTR_MAX);
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
    CHECK(n->dtype == DT_F32 || n->dtype == DT_BF16, "state: must be f32 (or bf16 for a cache)");
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
    int64_t streams = node_int(n, "streams", 1);
    CHECK(streams >= 1 && streams <= 64, "embed: attribute streams=%lld must be in 1..64", (long long)streams);
    CHECK(streams == 1 || !t->dim[1].sym, "embed: streams needs a static width");
    CHECK(streams == 1 || t->dim[1].n <= INT64_MAX / streams, "embed: width %lld times %lld streams overflows",
          (long long)t->dim[1].n, (long long)streams);
    if (n->nsrc == 3) { /* embed_norm: the row's RMSNorm before the copies */
        if (!want_dtype(n, 2, DT_F32, d) || !want_rank(n, 2, 1, d) || !want_dim(n, 2, 0, t->dim[1], d))
            return false;
        CHECK(node_float(n, "eps", -1) > 0, "embed: a norm weight needs attribute eps > 0");
    }
    copy_shape(tok, ndim, dim);
    dim[(*ndim)++] = streams == 1 ? t->dim[1] : dim_n(t->dim[1].n * streams);
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

bool matmul_has_norm_w(const Node *n)
{
    const char *pro = node_str(n, "prologue", NULL);
    return pro && (!strcmp(pro, "rmsnorm") || !strcmp(pro, "gated_rmsnorm"));
}

int matmul_nres(const Node *n) { return n->nsrc - 2 - matmul_has_norm_w(n); }

bool node_mhc_epilogue(const Node *n)
{
    const char *epi = node_str(n, "epilogue", NULL);
    return epi && !strcmp(epi, "mhc");
}

/* The mHC epilogue of n (attr streams n): its output o, of shape dim [.., N] (static N), becomes the n
 * updated streams f32 [.., n*N]; xs f32 [.., n*N] and coef f32 [.., n+n^2] at srcs at, at + 1. */
static bool want_mhc_epilogue(const Node *n, int at, int ndim, Dim *dim, Diag *d)
{
    const char *op = op_info[n->op].name;
    int64_t ns = node_int(n, "streams", 0);
    CHECK(ns >= 1 && ns <= 8 && !dim[ndim - 1].sym, "%s: epilogue mhc needs streams 1..8 and a static width", op);
    CHECK(n->dtype == DT_F32, "%s: epilogue mhc writes f32 streams", op);
    dim[ndim - 1] = dim_n(ns * dim[ndim - 1].n);
    for (int k = at; k < at + 2; k++) {
        const Node *r = n->src[k];
        CHECK(r->ndim == ndim && r->dtype == DT_F32, "%s: epilogue mhc operand %d must be f32 of rank %d", op, k,
              ndim);
        for (int i = 0; i + 1 < r->ndim; i++)
            if (!want_dim(n, k, i, dim[i], d))
                return false;
    }
    return want_dim(n, at, ndim - 1, dim[ndim - 1], d) && want_dim(n, at + 1, ndim - 1, dim_n(ns + ns * ns), d);
}

bool infer_matmul(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *x = n->src[0], *w = n->src[1];
    const char *pro = node_str(n, "prologue", NULL);
    bool swiglu = pro && !strcmp(pro, "swiglu");
    CHECK(!pro || swiglu || matmul_has_norm_w(n), "matmul: unknown prologue '%s'", pro);
    const char *epi = node_str(n, "epilogue", NULL);
    bool mhc = node_mhc_epilogue(n);
    CHECK(!epi || mhc, "matmul: unknown epilogue '%s'", epi);
    int nres = matmul_nres(n); /* residual operands: 0 or 1; the mhc epilogue: 2 (streams, coefficients) */
    CHECK(mhc ? nres == 2 : nres == 0 || nres == 1, "matmul: %d operands do not fit prologue %s, epilogue %s",
          n->nsrc, pro ? pro : "(none)", epi ? epi : "(none)");
    CHECK(x->ndim >= 2, "matmul: x must have rank >= 2");
    if (!want_dtype(n, 0, pro && !strcmp(pro, "rmsnorm") ? DT_F32 : DT_BF16, d) || !want_dtype(n, 1, DT_BF16, d) ||
        !want_rank(n, 1, 2, d))
        return false;
    if (swiglu) { /* x holds gate | up: twice the reduction width */
        char a[24];
        Dim xk = x->dim[x->ndim - 1];
        CHECK(!xk.sym && xk.n == 2 * w->dim[1].n, "matmul: swiglu prologue needs x of width 2*K = %lld, has %s",
              (long long)(2 * w->dim[1].n), dstr(xk, a));
    } else if (!want_dim(n, 1, 1, x->dim[x->ndim - 1], d)) {
        return false;
    }
    CHECK(n->dtype != DT_I32, "matmul: output must be f32 or bf16");
    copy_shape(x, ndim, dim);
    dim[*ndim - 1] = w->dim[0];
    if (mhc) { /* out = the n streams after mhc_post's update with o = P(x)·wᵀ */
        if (!want_mhc_epilogue(n, 2, *ndim, dim, d))
            return false;
    } else if (nres) {
        const Node *r = n->src[2];
        CHECK(r->ndim == *ndim, "matmul: residual rank %d, expected %d", r->ndim, *ndim);
        for (int i = 0; i < r->ndim; i++)
            if (!want_dim(n, 2, i, dim[i], d))
                return false;
        CHECK(r->dtype == n->dtype, "matmul: residual dtype must equal the output's");
    }
    if (matmul_has_norm_w(n)) {
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

bool infer_swiglu(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *x = n->src[0];
    CHECK(x->ndim >= 1, "swiglu: x must have rank >= 1");
    Dim last = x->dim[x->ndim - 1];
    CHECK(!last.sym && last.n % 2 == 0, "swiglu: the last dim of x must be static and even (gate | up)");
    if (!want_float(n, 0, d))
        return false;
    copy_shape(x, ndim, dim);
    dim[*ndim - 1] = dim_n(last.n / 2);
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

/* ---- latent attention and the indexer ---- */

/* Operand i is [B, S, width] with B, S those of operand 0. */
static bool want_rows(const Node *n, int i, int64_t width, Diag *d)
{
    const Node *x = n->src[0];
    return want_rank(n, i, 3, d) && want_dim(n, i, 0, x->dim[0], d) && want_dim(n, i, 1, x->dim[1], d) &&
           want_dim(n, i, 2, dim_n(width), d);
}

/* Operand i is a cache [B, ctx, width] of operand 0's batch. */
static bool want_cache(const Node *n, int i, int64_t width, Diag *d)
{
    return want_rank(n, i, 3, d) && want_dim(n, i, 0, n->src[0]->dim[0], d) && want_dim(n, i, 1, dim_sym(SYM_CTX), d) &&
           want_dim(n, i, 2, dim_n(width), d) && (n->src[i]->op == OP_state || diag_fail(d, "%s: operand %d must be a state", op_info[n->op].name, i));
}

static bool want_pos(const Node *n, int i, Diag *d)
{
    return want_dtype(n, i, DT_I32, d) && want_rank(n, i, 1, d) && want_dim(n, i, 0, n->src[0]->dim[0], d);
}

/* ---- Mamba1 ---- */

/* x [B,S,Di] and dt_raw, z of its shape; A_log [Di,N]; B, C [B,S,N]; D, dt_bias [Di]; state [B,Di,N] f32. */
bool infer_selective_scan(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *x = n->src[0];
    if (!want_rank(n, 0, 3, d) || !want_float(n, 0, d) || !want_rank(n, 2, 2, d))
        return false;
    Dim bt = x->dim[0], sq = x->dim[1], di = x->dim[2], ns = n->src[2]->dim[1];
    CHECK(!di.sym && !ns.sym, "selective_scan: d_inner and d_state must be static");
    for (int i = 1; i <= 6; i += 5)
        CHECK(node_same_shape(x, n->src[i]), "selective_scan: operand %d must have the shape of x", i);
    if (!want_dim(n, 2, 0, di, d) || !want_vec(n, 5, di.n, d) || !want_vec(n, 7, di.n, d))
        return false;
    for (int i = 3; i <= 4; i++)
        if (!want_rank(n, i, 3, d) || !want_dim(n, i, 0, bt, d) || !want_dim(n, i, 1, sq, d) ||
            !want_dim(n, i, 2, ns, d))
            return false;
    if (!want_rank(n, 8, 3, d) || !want_dim(n, 8, 0, bt, d) || !want_dim(n, 8, 1, di, d) ||
        !want_dim(n, 8, 2, ns, d) || !want_dtype(n, 8, DT_F32, d))
        return false;
    copy_shape(x, ndim, dim);
    return true;
}

/* xz [B,S,2*Di] bf16; conv_w [Di,W]; conv_b [Di]; conv_state [B,Di,W] f32; pos i32 [B]. Out [B,S,Di]. */
bool infer_mamba1_conv(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *xz = n->src[0], *w = n->src[1];
    if (!want_rank(n, 0, 3, d) || !want_dtype(n, 0, DT_BF16, d) || !want_rank(n, 1, 2, d))
        return false;
    Dim bt = xz->dim[0], c2 = xz->dim[2], di = w->dim[0], width = w->dim[1];
    CHECK(!di.sym && !width.sym && width.n >= 1, "mamba1_conv: conv weight must be static");
    CHECK(!c2.sym && c2.n % 2 == 0 && c2.n / 2 == di.n, "mamba1_conv: xz must have 2*d_inner = 2*%lld channels",
          (long long)di.n); /* halving c2, not doubling d_inner: a huge d_inner must not overflow */
    if (!want_vec(n, 2, di.n, d) || !want_rank(n, 3, 3, d) || !want_dim(n, 3, 0, bt, d) ||
        !want_dim(n, 3, 1, di, d) || !want_dim(n, 3, 2, width, d) || !want_dtype(n, 3, DT_F32, d) ||
        !want_dtype(n, 4, DT_I32, d) || !want_rank(n, 4, 1, d) || !want_dim(n, 4, 0, bt, d))
        return false;
    copy_shape(xz, ndim, dim);
    dim[2] = di;
    return true;
}

/* x [B,S,Di]; xdbl [B,S,R+2N] bf16; xz [B,S,2*Di] bf16; dt_w [Di,R] bf16; dt_bias, D [Di];
 * A_log [Di,N]; state [B,Di,N] f32. Attrs d_inner, dstate, dt_rank. Out [B,S,Di]. */
bool infer_mamba1_mixer(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    if (!want_attr(n, "d_inner", 1, d) || !want_attr(n, "dstate", 1, d) || !want_attr(n, "dt_rank", 1, d))
        return false;
    int64_t Di = node_int(n, "d_inner", 0), N = node_int(n, "dstate", 0), R = node_int(n, "dt_rank", 0);
    const Node *x = n->src[0];
    if (!want_rank(n, 0, 3, d) || !want_dim(n, 0, 2, dim_n(Di), d) || !want_dtype(n, 0, DT_BF16, d))
        return false;
    Dim bt = x->dim[0], sq = x->dim[1];
    if (!want_rank(n, 1, 3, d) || !want_dim(n, 1, 0, bt, d) || !want_dim(n, 1, 1, sq, d) ||
        !want_dim(n, 1, 2, dim_n(R + 2 * N), d) || !want_dtype(n, 1, DT_BF16, d) || !want_rank(n, 2, 3, d) ||
        !want_dim(n, 2, 0, bt, d) || !want_dim(n, 2, 1, sq, d) || !want_dim(n, 2, 2, dim_n(2 * Di), d) ||
        !want_dtype(n, 2, DT_BF16, d))
        return false;
    if (!want_rank(n, 3, 2, d) || !want_dim(n, 3, 0, dim_n(Di), d) || !want_dim(n, 3, 1, dim_n(R), d) ||
        !want_dtype(n, 3, DT_BF16, d) || !want_vec(n, 4, Di, d) || !want_rank(n, 5, 2, d) ||
        !want_dim(n, 5, 0, dim_n(Di), d) || !want_dim(n, 5, 1, dim_n(N), d) || !want_vec(n, 6, Di, d))
        return false;
    if (!want_rank(n, 7, 3, d) || !want_dim(n, 7, 0, bt, d) || !want_dim(n, 7, 1, dim_n(Di), d) ||
        !want_dim(n, 7, 2, dim_n(N), d) || !want_dtype(n, 7, DT_F32, d))
        return false;
    copy_shape(x, ndim, dim);
    return true;
}

bool infer_rope(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    if (!want_attr(n, "heads", 1, d) || !want_attr(n, "stride", 1, d) || !want_attr(n, "offset", 0, d) ||
        !want_attr(n, "dim", 2, d))
        return false;
    int64_t H = node_int(n, "heads", 0), st = node_int(n, "stride", 0), off = node_int(n, "offset", 0),
            dm = node_int(n, "dim", 0);
    const char *style = node_str(n, "style", "half");
    CHECK(!strcmp(style, "half") || !strcmp(style, "interleaved"), "rope: style must be half or interleaved");
    CHECK(dm % 2 == 0 && off + dm <= st, "rope: need an even dim inside each block (offset %lld + dim %lld > stride %lld)",
          (long long)off, (long long)dm, (long long)st);
    CHECK(node_float(n, "theta", 10000.0) > 0, "rope: theta must be positive");
    if (!want_rank(n, 0, 3, d) || !want_float(n, 0, d) || !want_pos(n, 1, d))
        return false;
    const Dim c = n->src[0]->dim[2]; /* the rotated heads may be a prefix of the row (q, k of a fused qkv) */
    CHECK(!c.sym && c.n >= H * st, "rope: operand 0 has %s%lld channels, fewer than heads %lld * stride %lld",
          c.sym ? "symbolic " : "", (long long)c.n, (long long)H, (long long)st);
    CHECK(n->dtype == n->src[0]->dtype, "rope: output dtype must equal the input's");
    copy_shape(n->src[0], ndim, dim);
    return true;
}

/* Shared attrs of the MLA ops: H, dn, dr, dv, R. */
static bool mla_params(const Node *n, int64_t *H, int64_t *dn, int64_t *dr, int64_t *dv, int64_t *R, Diag *d)
{
    if (!want_attr(n, "heads", 1, d) || !want_attr(n, "nope", 1, d) || !want_attr(n, "rope_dim", 0, d) ||
        !want_attr(n, "v_dim", 1, d) || !want_attr(n, "rank", 1, d))
        return false;
    *H = node_int(n, "heads", 0), *dn = node_int(n, "nope", 0), *dr = node_int(n, "rope_dim", 0);
    *dv = node_int(n, "v_dim", 0), *R = node_int(n, "rank", 0);
    return true;
}

static bool infer_absorb(const Node *n, bool q_side, int *ndim, Dim *dim, Diag *d)
{
    int64_t H, dn, dr, dv, R;
    if (!mla_params(n, &H, &dn, &dr, &dv, &R, d))
        return false;
    if (!want_rank(n, 0, 3, d) || !want_dtype(n, 0, DT_BF16, d) ||
        !want_dim(n, 0, 2, dim_n(q_side ? H * (dn + dr) : H * R), d) || !want_rank(n, 1, 2, d) ||
        !want_dim(n, 1, 0, dim_n(H * (dn + dv)), d) || !want_dim(n, 1, 1, dim_n(R), d) || !want_float(n, 1, d))
        return false;
    copy_shape(n->src[0], ndim, dim);
    dim[2] = dim_n(q_side ? H * R : H * dv);
    return true;
}

bool infer_mla_absorb_q(const Node *n, int *ndim, Dim *dim, Diag *d) { return infer_absorb(n, true, ndim, dim, d); }
bool infer_mla_absorb_o(const Node *n, int *ndim, Dim *dim, Diag *d) { return infer_absorb(n, false, ndim, dim, d); }

bool infer_mla_attn(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    if (!want_attr(n, "heads", 1, d) || !want_attr(n, "rank", 1, d) || !want_attr(n, "rope_dim", 0, d) ||
        !want_attr(n, "q_stride", 1, d) || !want_attr(n, "q_off", 0, d))
        return false;
    int64_t H = node_int(n, "heads", 0), R = node_int(n, "rank", 0), dr = node_int(n, "rope_dim", 0),
            qs = node_int(n, "q_stride", 0), qo = node_int(n, "q_off", 0);
    CHECK(qo + dr <= qs, "mla_attn: q_off + rope_dim must fit in q_stride");
    CHECK(node_float(n, "scale", -1) > 0, "mla_attn: needs attribute scale > 0");
    if (!want_rank(n, 0, 3, d) || !want_dim(n, 0, 2, dim_n(H * R), d) || !want_rows(n, 1, H * qs, d) ||
        !want_rows(n, 2, R, d) || !want_rows(n, 3, dr, d) || !want_cache(n, 4, R, d) || !want_cache(n, 5, dr, d) ||
        !want_pos(n, 6, d))
        return false;
    if (n->nsrc == 8) {
        const Node *sel = n->src[7];
        if (!want_dtype(n, 7, DT_I32, d) || !want_rank(n, 7, 3, d) || !want_dim(n, 7, 0, n->src[0]->dim[0], d) ||
            !want_dim(n, 7, 1, n->src[0]->dim[1], d))
            return false;
        CHECK(!sel->dim[2].sym && sel->dim[2].n >= 1, "mla_attn: sel must have a static k >= 1");
    }
    copy_shape(n->src[0], ndim, dim);
    return true;
}

bool infer_attn(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    if (!want_attr(n, "heads", 1, d) || !want_attr(n, "kv_heads", 1, d) || !want_attr(n, "head_dim", 1, d))
        return false;
    int64_t H = node_int(n, "heads", 0), Hkv = node_int(n, "kv_heads", 0), D = node_int(n, "head_dim", 0);
    CHECK(H % Hkv == 0, "attn: kv_heads %lld must divide heads %lld", (long long)Hkv, (long long)H);
    CHECK(node_float(n, "scale", -1) > 0, "attn: needs attribute scale > 0");
    if (!want_rank(n, 0, 3, d) || !want_float(n, 0, d) || !want_dim(n, 0, 2, dim_n((H + 2 * Hkv) * D), d) ||
        !want_cache(n, 1, Hkv * D, d) || !want_cache(n, 2, Hkv * D, d) || !want_pos(n, 3, d))
        return false;
    copy_shape(n->src[0], ndim, dim);
    dim[2] = dim_n(H * D);
    return true;
}

/* Shared checks of index_scores and index_topk; fills the output [B, S, ctx]. */
static bool infer_index(const Node *n, Diag *d)
{
    if (!want_attr(n, "heads", 1, d) || !want_attr(n, "dim", 1, d))
        return false;
    int64_t H = node_int(n, "heads", 0), D = node_int(n, "dim", 0);
    const char *kind = node_str(n, "kind", "dot");
    CHECK(!strcmp(kind, "dot") || !strcmp(kind, "lightning"), "%s: kind must be dot or lightning", op_info[n->op].name);
    CHECK(strcmp(kind, "dot") || (H == 1 && n->nsrc == 4), "%s: kind dot takes one head and no weights",
          op_info[n->op].name);
    CHECK(strcmp(kind, "lightning") || n->nsrc == 5, "%s: kind lightning needs the head weights w",
          op_info[n->op].name);
    CHECK(node_float(n, "scale", -1) > 0, "%s: needs attribute scale > 0", op_info[n->op].name);
    if (!want_rank(n, 0, 3, d) || !want_dim(n, 0, 2, dim_n(H * D), d) || !want_float(n, 0, d) ||
        !want_rows(n, 1, D, d) || !want_cache(n, 2, D, d) || !want_pos(n, 3, d))
        return false;
    if (n->nsrc == 5 && !want_rows(n, 4, H, d))
        return false;
    return true;
}

bool infer_index_scores(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    if (!infer_index(n, d))
        return false;
    CHECK(n->dtype == DT_F32, "index_scores: output must be f32");
    *ndim = 3;
    dim[0] = n->src[0]->dim[0], dim[1] = n->src[0]->dim[1], dim[2] = dim_sym(SYM_CTX);
    return true;
}

/* The selection attributes of topk and index_topk: k >= 1, adaptive mass p in
 * (0, 1] when given, window >= 0 when given. Returns the output width k + window. */
static bool want_select(const Node *n, int64_t *width, Diag *d)
{
    if (!want_attr(n, "k", 1, d))
        return false;
    if (node_attr(n, "window") && !want_attr(n, "window", 0, d))
        return false;
    const Attr *p = node_attr(n, "p");
    CHECK(!p || (p->kind == ATTR_FLOAT && p->f > 0 && p->f <= 1), "%s: attribute p must be a float in (0, 1]",
          op_info[n->op].name);
    *width = node_int(n, "k", 1) + node_int(n, "window", 0);
    CHECK(*width <= ATTR_MAX, "%s: k + window is larger than %lld", op_info[n->op].name, ATTR_MAX);
    return true;
}

bool infer_topk(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    int64_t w;
    if (!want_select(n, &w, d) || !want_rank(n, 0, 3, d) || !want_dtype(n, 0, DT_F32, d) ||
        !want_dim(n, 0, 2, dim_sym(SYM_CTX), d) || !want_pos(n, 1, d))
        return false;
    CHECK(n->dtype == DT_I32, "topk: output must be i32");
    copy_shape(n->src[0], ndim, dim);
    dim[2] = dim_n(w);
    return true;
}

bool infer_index_topk(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    int64_t w;
    if (!infer_index(n, d) || !want_select(n, &w, d))
        return false;
    CHECK(n->dtype == DT_I32, "index_topk: output must be i32");
    *ndim = 3;
    dim[0] = n->src[0]->dim[0], dim[1] = n->src[0]->dim[1], dim[2] = dim_n(w);
    return true;
}

int hybrid_mix_res_src(const Node *n) { return n->nsrc - (node_mhc_epilogue(n) ? 2 : 0) > 5 ? 5 : -1; }

bool infer_hybrid_mix(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const char *epi = node_str(n, "epilogue", NULL);
    bool mhc = node_mhc_epilogue(n);
    CHECK(!epi || mhc, "hybrid_mix: unknown epilogue '%s'", epi);
    int plain = n->nsrc - (mhc ? 2 : 0); /* h, w_g, b_g, a, c and the residual if any */
    CHECK(plain == 5 || plain == 6, "hybrid_mix: %d operands do not fit epilogue %s", n->nsrc, epi ? epi : "(none)");
    if (!want_rank(n, 0, 3, d) || !want_dtype(n, 0, DT_BF16, d))
        return false;
    Dim D = n->src[0]->dim[2];
    CHECK(!D.sym, "hybrid_mix: the width of h must be static");
    if (!want_rank(n, 1, 2, d) || !want_dtype(n, 1, DT_BF16, d) || !want_dim(n, 1, 0, dim_n(1), d) ||
        !want_dim(n, 1, 1, D, d) || !want_vec(n, 2, 1, d) || !want_dtype(n, 2, DT_F32, d))
        return false;
    for (int i = 3; i < plain; i++) {
        if (!want_rank(n, i, 3, d) || !want_dtype(n, i, DT_F32, d))
            return false;
        for (int k = 0; k < 3; k++)
            if (!want_dim(n, i, k, n->src[0]->dim[k], d))
                return false;
    }
    CHECK(n->dtype == DT_F32, "hybrid_mix: output must be f32");
    copy_shape(n->src[0], ndim, dim);
    return !mhc || want_mhc_epilogue(n, plain, *ndim, dim, d);
}

/* ---- mHC (hyper-connection streams) ---- */

/* x f32 [.., n*D] with n = attr streams (1..MHC_MAX_STREAMS); returns D. */
static bool mhc_streams(const Node *n, int64_t *ns, int64_t *D, Diag *d)
{
    const Node *x = n->src[0];
    if (!want_attr(n, "streams", 1, d))
        return false;
    *ns = node_int(n, "streams", 1);
    CHECK(*ns <= 8, "%s: at most 8 streams, found %lld", op_info[n->op].name, (long long)*ns);
    CHECK(x->ndim >= 2 && x->dtype == DT_F32 && !x->dim[x->ndim - 1].sym,
          "%s: x must be f32 [.., streams*D] with a static width", op_info[n->op].name);
    int64_t w = x->dim[x->ndim - 1].n;
    CHECK(w % *ns == 0, "%s: width %lld is not a multiple of streams=%lld", op_info[n->op].name, (long long)w,
          (long long)*ns);
    *D = w / *ns;
    return true;
}

/* fn [2n+n^2, n*D] (f32 or bf16), base f32 [2n+n^2], scale f32 [3] at srcs i, i+1, i+2; attrs iters, eps. */
static bool mhc_params(const Node *n, int i, int64_t ns, int64_t D, Diag *d)
{
    int64_t m = 2 * ns + ns * ns;
    if (!want_rank(n, i, 2, d) || !want_float(n, i, d) || !want_dim(n, i, 0, dim_n(m), d) ||
        !want_dim(n, i, 1, dim_n(ns * D), d) || !want_dtype(n, i + 1, DT_F32, d) || !want_vec(n, i + 1, m, d) ||
        !want_dtype(n, i + 2, DT_F32, d) || !want_vec(n, i + 2, 3, d) || !want_attr(n, "iters", 1, d))
        return false;
    CHECK(node_int(n, "iters", 0) <= 1000, "%s: at most 1000 Sinkhorn iterations", op_info[n->op].name);
    CHECK(node_float(n, "eps", -1) > 0, "%s: needs attribute eps > 0", op_info[n->op].name);
    return true;
}

/* The optional trailing norm weight f32 [D] of mhc_pre / mhc_collapse: the output is then bf16. */
static bool mhc_out(const Node *n, int has_norm_at, int64_t D, int *ndim, Dim *dim, Diag *d)
{
    bool norm = n->nsrc > has_norm_at;
    if (norm) {
        if (!want_dtype(n, has_norm_at, DT_F32, d) || !want_vec(n, has_norm_at, D, d))
            return false;
        CHECK(node_float(n, "norm_eps", -1) > 0, "%s: a norm weight needs attribute norm_eps > 0",
              op_info[n->op].name);
    }
    CHECK(n->dtype == (norm ? DT_BF16 : DT_F32), "%s: output must be %s", op_info[n->op].name,
          norm ? "bf16 (normalised)" : "f32");
    copy_shape(n->src[0], ndim, dim);
    dim[*ndim - 1] = dim_n(D);
    return true;
}

bool infer_mhc_pre(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    int64_t ns, D;
    return mhc_streams(n, &ns, &D, d) && mhc_params(n, 1, ns, D, d) && mhc_out(n, 4, D, ndim, dim, d);
}

bool infer_mhc_post(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    int64_t ns, D;
    if (!mhc_streams(n, &ns, &D, d) || !mhc_params(n, 2, ns, D, d))
        return false;
    const Node *x = n->src[0], *o = n->src[1];
    CHECK(o->ndim == x->ndim && o->dtype == DT_F32, "mhc_post: o must be f32 of x's rank");
    for (int k = 0; k + 1 < x->ndim; k++)
        if (!want_dim(n, 1, k, x->dim[k], d))
            return false;
    if (!want_dim(n, 1, x->ndim - 1, dim_n(D), d))
        return false;
    CHECK(n->dtype == DT_F32, "mhc_post: output must be f32");
    copy_shape(x, ndim, dim);
    return true;
}

bool infer_mhc_coef(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *pre = n->src[0];
    CHECK(pre->op == OP_mhc_pre, "mhc_coef: src 0 must be the mhc_pre node that writes it");
    for (int i = 1; i < 5; i++)
        CHECK(n->src[i] == pre->src[i - 1], "mhc_coef: src %d must be the mhc_pre's src %d", i, i - 1);
    CHECK(node_int(n, "streams", 0) == node_int(pre, "streams", 1) && node_int(n, "iters", 0) == node_int(pre, "iters", 20) &&
              node_float(n, "eps", 0) == node_float(pre, "eps", 1e-5),
          "mhc_coef: attrs streams, iters, eps must be the mhc_pre's");
    int64_t ns, D;
    CHECK(n->dtype == DT_F32, "mhc_coef: output must be f32");
    if (!mhc_streams(pre, &ns, &D, d))
        return false;
    copy_shape(pre->src[0], ndim, dim);
    dim[*ndim - 1] = dim_n(ns + ns * ns);
    return true;
}

bool infer_mhc_collapse(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    int64_t ns, D;
    return mhc_streams(n, &ns, &D, d) && mhc_out(n, 1, D, ndim, dim, d);
}

int moe_residual_src(const Node *n) { return node_int(n, "residual", 1) ? 4 : -1; }

int moe_bias_src(const Node *n)
{
    int at = node_int(n, "residual", 1) ? 5 : 4;
    return n->nsrc - (node_mhc_epilogue(n) ? 2 : 0) > at ? at : -1; /* not the epilogue's xs, coef */
}

bool infer_moe(const Node *n, int *ndim, Dim *dim, Diag *d)
{
    const Node *h = n->src[0];
    if (!want_attr(n, "experts", 1, d) || !want_attr(n, "topk", 1, d) || !want_attr(n, "dff", 1, d))
        return false;
    int64_t has_res = node_int(n, "residual", 1);
    CHECK(has_res == 0 || has_res == 1, "moe: attribute residual must be 0 or 1");
    const char *epi = node_str(n, "epilogue", NULL);
    bool mhc = node_mhc_epilogue(n);
    CHECK(!epi || mhc, "moe: unknown epilogue '%s'", epi);
    int r = moe_residual_src(n), bi = moe_bias_src(n), plain = n->nsrc - (mhc ? 2 : 0); /* srcs before xs, coef */
    CHECK(plain >= 4 + (int)has_res && plain <= 5 + (int)has_res,
          "moe: %d operands do not fit residual=%lld, epilogue %s", n->nsrc, (long long)has_res, epi ? epi : "(none)");
    int64_t E = node_int(n, "experts", 0), k = node_int(n, "topk", 0), F = node_int(n, "dff", 0);
    const char *sc = node_str(n, "score", "");
    CHECK(!strcmp(sc, "softmax") || !strcmp(sc, "sigmoid"), "moe: score must be \"softmax\" or \"sigmoid\"");
    CHECK(k <= E, "moe: topk = %lld exceeds experts = %lld", (long long)k, (long long)E);
    CHECK(h->ndim >= 2 && !h->dim[h->ndim - 1].sym, "moe: h must have rank >= 2 and a static last dim");
    int64_t D = h->dim[h->ndim - 1].n;
    if (!want_dtype(n, 0, DT_BF16, d) || !want_dtype(n, 1, DT_F32, d) || !want_dtype(n, 2, DT_BF16, d) ||
        !want_dtype(n, 3, DT_BF16, d))
        return false;
    CHECK(n->src[1]->ndim == h->ndim, "moe: logits must have h's rank");
    for (int i = 0; i + 1 < h->ndim; i++)
        if (!want_dim(n, 1, i, h->dim[i], d))
            return false;
    if (!want_dim(n, 1, h->ndim - 1, dim_n(E), d))
        return false;
    if (r >= 0) { /* the residual: f32 [B,S,D] */
        if (!want_dtype(n, r, DT_F32, d))
            return false;
        CHECK(n->src[r]->ndim == h->ndim, "moe: residual must have h's rank");
        for (int i = 0; i + 1 < h->ndim; i++)
            if (!want_dim(n, r, i, h->dim[i], d))
                return false;
        if (!want_dim(n, r, h->ndim - 1, dim_n(D), d))
            return false;
    }
    if (!want_rank(n, 2, 3, d) || !want_dim(n, 2, 0, dim_n(E), d) || !want_dim(n, 2, 1, dim_n(2 * F), d) ||
        !want_dim(n, 2, 2, dim_n(D), d) || !want_rank(n, 3, 3, d) || !want_dim(n, 3, 0, dim_n(E), d) ||
        !want_dim(n, 3, 1, dim_n(D), d) || !want_dim(n, 3, 2, dim_n(F), d))
        return false;
    if (bi >= 0 && (!want_vec(n, bi, E, d) || !want_dtype(n, bi, DT_F32, d)))
        return false;
    CHECK(n->dtype == DT_F32, "moe: output must be f32 (the residual stream, or the block's output under mHC)");
    copy_shape(h, ndim, dim);
    return !mhc || want_mhc_epilogue(n, plain, *ndim, dim, d);
}
