/* fuse_mhc.c — mHC prologue fusion: the block's own pre-norm moves into the
 * hyper-connection kernel that produces its input, so the n streams are
 * read once per block on the way in (coefficients, H_pre·x and the norm in
 * one pass) instead of once more by a separate RMSNorm.
 *
 *   rmsnorm(mhc_pre(x, fn, base, scale), w)  → mhc_pre(x, fn, base, scale, w)  {norm_eps} bf16
 *   rmsnorm(mhc_collapse(x), w)              → mhc_collapse(x, w)              {norm_eps} bf16
 *
 * Applies when the norm's output is bf16 and the mhc value has no other use;
 * the norm weight moves in front of the mhc node when it was defined later.
 *
 * Then the stream update moves into the block's output GEMM (its epilogue
 * mixes the streams while F's output tile is in registers), and the
 * coefficients it needs come from the mhc_pre kernel, which computes them
 * in its pass over x anyway (mhc_coef: a second result of that kernel):
 *
 *   mhc_post(x, matmul(a, W), fn, base, scale)
 *     → c = mhc_coef(pre, x, fn, base, scale)              right after pre = mhc_pre(x, fn, base, scale, ..)
 *       matmul(a, W, x, c) {epilogue="mhc", streams}       f32 [.., n·D]
 *
 * Applies when the matmul is f32, has no other use, no residual and no
 * norm prologue, and the block's mhc_pre (same x and φ, same attributes)
 * comes before it. Blocks that do not end in a matmul take the update the
 * same way in their last kernel, which has F's output o[d] of a token in
 * registers too:
 *
 *   mhc_post(x, moe(h, logits, Wgu, Wd, [r], [bias]), ..)
 *     → moe(h, logits, Wgu, Wd, [r], [bias], x, c) {epilogue="mhc", streams}   (moe_combine)
 *   mhc_post(x, hybrid_mix(h, w_g, b_g, a, c'), ..)
 *     → hybrid_mix(h, w_g, b_g, a, c', x, c) {epilogue="mhc", streams}
 *
 * a moe whatever its residual operand (inside streams that is the shared
 * experts' output, part of F(h), or none), a hybrid_mix without one; each
 * with no other use and no epilogue yet. Otherwise mhc_post stays a kernel
 * of its own. */
#include <string.h>

#include "passes.h"

/* The block's mhc_pre: the one over post's x with post's φ and attributes, before `before`. */
static Node *block_pre(const Graph *g, const Node *post, const Node *before)
{
    for (int i = before->id - 1; i >= 0; i--) {
        Node *p = g->nodes[i];
        if (p->dead || p->op != OP_mhc_pre || p->src[0] != post->src[0])
            continue;
        bool same = p->src[1] == post->src[2] && p->src[2] == post->src[3] && p->src[3] == post->src[4] &&
                    node_int(p, "streams", 1) == node_int(post, "streams", 1) &&
                    node_int(p, "iters", 20) == node_int(post, "iters", 20) &&
                    node_float(p, "eps", 1e-5) == node_float(post, "eps", 1e-5);
        return same ? p : NULL;
    }
    return NULL;
}

/* pre's mhc_coef, made (right after pre) when it does not exist yet. */
static Node *coef_of(Graph *g, Node *pre)
{
    for (int i = pre->id + 1; i < g->nnodes; i++)
        if (!g->nodes[i]->dead && g->nodes[i]->op == OP_mhc_coef && g->nodes[i]->src[0] == pre)
            return g->nodes[i];
    Node *c = graph_add(g, OP_mhc_coef, DT_F32, 5, (Node *[]){pre, pre->src[0], pre->src[1], pre->src[2], pre->src[3]});
    int64_t ns = node_int(pre, "streams", 1);
    Dim dim[IR_MAX_DIMS];
    memcpy(dim, pre->src[0]->dim, sizeof dim);
    dim[pre->src[0]->ndim - 1] = dim_n(ns + ns * ns);
    node_set_shape(c, pre->src[0]->ndim, dim);
    node_set_int(g, c, "streams", ns);
    node_set_int(g, c, "iters", node_int(pre, "iters", 20));
    node_set_float(g, c, "eps", node_float(pre, "eps", 1e-5));
    c->name = pre->name ? arena_printf(g->arena, "%s.coef", pre->name) : NULL;
    graph_move_before(g, c, g->nodes[pre->id + 1]);
    node_set_int(g, pre, "coef", 1); /* its kernel writes c */
    return c;
}

/* Whether o (mhc_post's F output) can take the stream update as its epilogue. */
static bool takes_update(const Graph *g, const Node *o)
{
    if (o->dtype != DT_F32 || graph_uses(g, o) != 1 || node_str(o, "epilogue", NULL))
        return false;
    switch (o->op) {
    case OP_matmul:
        return matmul_nres(o) == 0 && !matmul_has_norm_w(o);
    case OP_moe:
        return true;
    case OP_hybrid_mix:
        return hybrid_mix_res_src(o) < 0;
    default:
        return false;
    }
}

static void fuse_post(Graph *g)
{
    for (int i = 0; i < g->nnodes; i++) {
        Node *post = g->nodes[i];
        if (post->dead || post->op != OP_mhc_post)
            continue;
        Node *mm = post->src[1];
        if (!takes_update(g, mm))
            continue;
        Node *pre = block_pre(g, post, mm);
        if (!pre)
            continue;
        Node *c = coef_of(g, pre); /* shifts the nodes after pre by one: post is now at i + 1 */
        int64_t ns = node_int(post, "streams", 1);
        mm->src[mm->nsrc++] = post->src[0];
        mm->src[mm->nsrc++] = c;
        node_set_str(g, mm, "epilogue", "mhc");
        node_set_int(g, mm, "streams", ns);
        mm->dim[mm->ndim - 1] = dim_n(ns * mm->dim[mm->ndim - 1].n);
        graph_replace_uses(g, post, mm);
        if (post->name)
            mm->name = post->name; /* the updated streams keep their name */
        post->dead = true;
    }
}

bool pass_fuse_mhc(Graph *g, Diag *d)
{
    (void)d;
    for (int i = 0; i < g->nnodes; i++) {
        Node *nm = g->nodes[i];
        if (nm->dead || nm->op != OP_rmsnorm || nm->dtype != DT_BF16)
            continue;
        Node *h = nm->src[0];
        int full = h->op == OP_mhc_pre ? 5 : h->op == OP_mhc_collapse ? 2 : 0;
        if (!full || h->nsrc != full - 1 || h->dtype != DT_F32 || graph_uses(g, h) != 1)
            continue;
        if (nm->src[1]->id > h->id) /* a leaf (the norm weight): defined before its new user */
            graph_move_before(g, nm->src[1], h);
        h->src[h->nsrc++] = nm->src[1];
        h->dtype = DT_BF16;
        node_set_float(g, h, "norm_eps", node_float(nm, "eps", 1e-5));
        graph_replace_uses(g, nm, h);
        if (nm->name)
            h->name = nm->name; /* the normalised value keeps its name (F's input) */
        nm->dead = true;
    }
    fuse_post(g);
    graph_compact(g);
    return true;
}
