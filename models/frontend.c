/* frontend.c — the model schema: top-level keys, the layer list, and the
 * skeleton every model shares (embedding → blocks → final norm → LM head);
 * with a top-level `mhc:` mapping every block is wrapped in hyper-connection
 * streams (models/mhc.c). */
#include "frontend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "layers.h"
#include "mhc.h"

/* Top-level keys; each layer kind's name is allowed too (its defaults mapping). */
static const char *const base_keys[] = {"name", "description", "vocab_size", "d_model", "norm_eps", "tie_embeddings",
                                        "embed_norm", "layers", "mhc", NULL};
enum { MAX_LAYERS = 4096 };

char *frontend_read_file(const char *path, Diag *d)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        diag_fail(d, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 16384;
            char *nb = realloc(buf, cap);
            if (!nb) {
                free(buf);
                fclose(f);
                diag_fail(d, "out of memory reading %s", path);
                return NULL;
            }
            buf = nb;
        }
        size_t n = fread(buf + len, 1, cap - len - 1, f);
        len += n;
        if (n == 0)
            break;
    }
    bool err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        diag_fail(d, "cannot read %s", path);
        return NULL;
    }
    buf[len] = 0;
    if (strlen(buf) != len) {
        free(buf);
        diag_fail(d, "%s: not a text file (contains NUL bytes)", path);
        return NULL;
    }
    return buf;
}

static const LayerKind *find_kind(const char *name)
{
    for (int i = 0; i < n_layer_kinds; i++)
        if (!strcmp(layer_kinds[i]->name, name))
            return layer_kinds[i];
    return NULL;
}

/* The keys a layer entry may have: kind, repeat, and the kind's options. */
static bool check_entry_keys(YDoc *y, YNode *entry, const LayerKind *k, int idx, Diag *d)
{
    const char *keys[64];
    int n = 0;
    keys[n++] = "kind";
    keys[n++] = "repeat";
    for (const char *const *o = k->options; *o && n < 63; o++)
        keys[n++] = *o;
    keys[n] = NULL;
    char where[64];
    snprintf(where, sizeof where, "layers[%d] (%s)", idx, k->name);
    return ymap_check(y, entry, where, keys, d);
}

static bool check_defaults(YDoc *y, YNode *root, Diag *d)
{
    for (int i = 0; i < n_layer_kinds; i++) {
        YNode *m = ymap_get(y, root, layer_kinds[i]->name);
        if (!m)
            continue;
        char where[64];
        snprintf(where, sizeof where, "the '%s' defaults", layer_kinds[i]->name);
        if (!ymap_check(y, m, where, layer_kinds[i]->options, d))
            return false;
    }
    return true;
}

Graph *frontend_load_text(Arena *a, const char *text, const char *file, Diag *d)
{
    YDoc y;
    Graph *result = NULL;
    if (!ydoc_parse(&y, file, text, d)) {
        ydoc_free(&y);
        return NULL;
    }
    YNode *root = ydoc_root(&y);
    ModelCfg m = {.norm_eps = 1e-5, .tie_embeddings = true};
    MhcCfg hc;
    const char *model_keys[32];
    int nk = 0;
    for (const char *const *k = base_keys; *k; k++)
        model_keys[nk++] = *k;
    for (int i = 0; i < n_layer_kinds && nk < 31; i++)
        model_keys[nk++] = layer_kinds[i]->name;
    model_keys[nk] = NULL;
    if (!ymap_check(&y, root, "the model", model_keys, d) || !yget_str(&y, root, "name", true, &m.name, d) ||
        !yget_int(&y, root, "vocab_size", true, 1, 1 << 24, &m.vocab_size, d) ||
        !yget_int(&y, root, "d_model", true, 1, 1 << 16, &m.d_model, d) ||
        !yget_float(&y, root, "norm_eps", false, 1e-12, 1.0, &m.norm_eps, d) ||
        !yget_bool(&y, root, "tie_embeddings", false, &m.tie_embeddings, d) ||
        !yget_bool(&y, root, "embed_norm", false, &m.embed_norm, d) || !check_defaults(&y, root, d) ||
        !mhc_parse(&y, root, &hc, d))
        goto out;
    m.mhc_streams = hc.streams;
    if (m.d_model % 8) {
        ydoc_fail(&y, ymap_get(&y, root, "d_model"), d, "'d_model' must be a multiple of 8, found %lld",
                  (long long)m.d_model);
        goto out;
    }
    YNode *layers = ymap_get(&y, root, "layers");
    if (!layers) {
        ydoc_fail(&y, root, d, "missing required key 'layers'");
        goto out;
    }
    if (layers->type != YAML_SEQUENCE_NODE || layers->data.sequence.items.top == layers->data.sequence.items.start) {
        ydoc_fail(&y, layers, d, "'layers' must be a non-empty list of layer entries");
        goto out;
    }

    Graph *g = graph_new(a, m.name);
    Builder b = {.g = g};
    /* ---- inputs and embedding ---- */
    Node *tokens = graph_add(g, OP_input, DT_I32, 0, NULL);
    tokens->name = "tokens";
    tokens->ext = "tokens";
    tokens->ndim = 2;
    tokens->dim[0] = dim_sym(SYM_BATCH);
    tokens->dim[1] = dim_sym(SYM_SEQ);
    Node *pos = graph_add(g, OP_input, DT_I32, 0, NULL);
    pos->name = "pos";
    pos->ext = "pos";
    pos->ndim = 1;
    pos->dim[0] = dim_sym(SYM_BATCH);
    Node *emb = b_weight(&b, "embed.w", "backbone.embeddings.weight", DT_BF16, 2, (int64_t[]){m.vocab_size, m.d_model},
                         "normal", 0.02, 0);
    /* embed_norm: the embed op normalises the row over its D channels (one RMSNorm, weight embed_norm.w),
     * then copies it into each of the n mHC streams (f32 [B,S,n*D]) */
    Node *ew = m.embed_norm ? b_weight(&b, "embed_norm.w", "backbone.embed_norm.weight", DT_F32, 1,
                                       (int64_t[]){m.d_model}, "ones", 0, 0)
                            : NULL;
    Node *x = b_op(&b, OP_embed, DT_F32, "x0", ew ? 3 : 2, (Node *[]){emb, tokens, ew});
    if (ew)
        node_set_float(g, x, "eps", m.norm_eps);
    if (hc.streams)
        node_set_int(g, x, "streams", hc.streams);

    /* ---- blocks ---- */
    int layer = 0;
    int nentries = (int)(layers->data.sequence.items.top - layers->data.sequence.items.start);
    for (int e = 0; e < nentries; e++) {
        YNode *entry = yaml_document_get_node(&y.doc, layers->data.sequence.items.start[e]);
        const char *kind = NULL;
        char where[32];
        snprintf(where, sizeof where, "layers[%d]", e);
        if (entry->type != YAML_MAPPING_NODE) {
            ydoc_fail(&y, entry, d, "%s must be a mapping with a 'kind' key", where);
            goto out;
        }
        if (!yget_str(&y, entry, "kind", true, &kind, d))
            goto out;
        const LayerKind *k = find_kind(kind);
        if (!k) {
            char known[256] = "";
            for (int i = 0; i < n_layer_kinds; i++)
                snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                         layer_kinds[i]->name);
            ydoc_fail(&y, ymap_get(&y, entry, "kind"), d, "unknown layer kind '%s' (known: %s)", kind, known);
            goto out;
        }
        int64_t repeat = 1;
        if (!check_entry_keys(&y, entry, k, e, d) || !yget_int(&y, entry, "repeat", false, 1, MAX_LAYERS, &repeat, d))
            goto out;
        if (layer + repeat > MAX_LAYERS) {
            ydoc_fail(&y, entry, d, "more than %d layers", MAX_LAYERS);
            goto out;
        }
        void *opts = arena_alloc(a, k->opts_size);
        LayerCtx lc = {.y = &y, .defaults = ymap_get(&y, root, k->name), .entry = entry, .model = &m,
                       .index = layer, .pos = pos};
        if (!k->parse(&lc, opts, d))
            goto out;
        for (int r = 0; r < repeat; r++, layer++) {
            lc.index = layer;
            snprintf(b.prefix, sizeof b.prefix, "l%d.", layer);
            char wn[96];
            snprintf(wn, sizeof wn, "backbone.layers.%d.norm.weight", layer);
            Node *nw = b_weight(&b, "norm.w", wn, DT_F32, 1, (int64_t[]){m.d_model}, "ones", 0, 0);
            MhcLayer hw;
            Node *hin = hc.streams ? mhc_block_in(&b, &hc, layer, m.d_model, m.norm_eps, x, &hw) : x;
            Node *h = b_op(&b, OP_rmsnorm, DT_BF16, "h", 2, (Node *[]){hin, nw});
            node_set_float(g, h, "eps", m.norm_eps);
            lc.x = hc.streams ? NULL : x; /* mHC: the block's output must not carry the residual */
            lc.added_residual = false;
            Node *o = k->build(&b, &lc, opts, h);
            x = hc.streams ? mhc_block_out(&b, &hc, m.norm_eps, x, o, &hw)
                : lc.added_residual ? o
                                    : b_op(&b, OP_add, DT_F32, "res", 2, (Node *[]){x, o});
        }
    }
    m.n_layers = layer;

    /* ---- head ---- */
    b.prefix[0] = 0;
    Node *nf = b_weight(&b, "norm_f.w", "backbone.norm_f.weight", DT_F32, 1, (int64_t[]){m.d_model}, "ones", 0, 0);
    if (hc.streams)
        x = mhc_collapse(&b, &hc, x);
    Node *hf = b_op(&b, OP_rmsnorm, DT_BF16, "h_f", 2, (Node *[]){x, nf});
    node_set_float(g, hf, "eps", m.norm_eps);
    Node *lm = m.tie_embeddings ? emb
                                : b_weight(&b, "lm_head.w", "lm_head.weight", DT_BF16, 2,
                                           (int64_t[]){m.vocab_size, m.d_model}, "normal", 0.02, 0);
    Node *logits = b_op(&b, OP_matmul, DT_F32, "logits", 2, (Node *[]){hf, lm});
    graph_add_output(g, logits, "logits");
    result = g;
out:
    ydoc_free(&y);
    return result;
}
