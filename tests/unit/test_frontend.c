/* test_frontend.c — the YAML frontend: both shipped models load, and every
 * class of error gives its exact message at its exact position, printed
 * with the source line and a caret. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "frontend.h"
#include "passes.h"

#ifndef MODELS_DIR
#error "MODELS_DIR must point at models/"
#endif

/* A valid base the error cases edit (tiny sizes). */
#define HEAD "name: t\nvocab_size: 32\nd_model: 64\n"

static void printed(const Diag *d, const char *src, char *buf, size_t cap)
{
    memset(buf, 0, cap);
    FILE *f = fmemopen(buf, cap - 1, "w");
    diag_print(d, src, f);
    fclose(f);
}

/* Loads text; expects failure with exactly `first_line` as the first printed
 * line, and a caret under column `col` of the quoted source line. */
static void expect_error(const char *text, const char *first_line)
{
    Arena *a = arena_new();
    Diag d = {0};
    Graph *g = frontend_load_text(a, text, "m.yaml", &d);
    if (g)
        fail_msg("expected an error: %s", first_line);
    char out[4096];
    printed(&d, text, out, sizeof out);
    size_t n = strcspn(out, "\n");
    if (strlen(first_line) != n || strncmp(out, first_line, n))
        fail_msg("got      '%.*s'\nexpected '%s'", (int)n, out, first_line);
    /* The caret line: two spaces, (col-1) spaces, '^'; none under an empty line. */
    const char *src = text;
    for (int l = 1; l < d.line && src; l++)
        src = strchr(src, '\n') ? strchr(src, '\n') + 1 : NULL;
    const char *caret = strrchr(out, '^');
    if (src && (*src == '\n' || *src == 0)) {
        assert_null(caret);
        arena_free(a);
        return;
    }
    assert_non_null(caret);
    const char *line_start = caret;
    while (line_start > out && line_start[-1] != '\n')
        line_start--;
    assert_int_equal((int)(caret - line_start) - 2 + 1, d.col);
    arena_free(a);
}

static void errors_top_level(void **state)
{
    (void)state;
    expect_error("name: t\nvocab_szie: 32\nd_model: 64\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:2:1: error: unknown key 'vocab_szie' in the model (did you mean 'vocab_size'?)");
    expect_error("name: t\nd_model: 64\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:1:1: error: missing required key 'vocab_size'");
    expect_error("name: t\nvocab_size: 32\nd_model: big\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:3:10: error: 'd_model' must be an integer, found 'big'");
    expect_error("name: t\nvocab_size: 0\nd_model: 64\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:2:13: error: 'vocab_size' must be in 1..16777216, found 0");
    expect_error(HEAD "tie_embeddings: yes\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:4:17: error: 'tie_embeddings' must be true or false, found 'yes'");
    expect_error(HEAD "norm_eps: -1.0\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:4:11: error: 'norm_eps' must be in [1e-12, 1], found -1");
    expect_error(HEAD "layers:\n  - kind: mamba2\nd_model: 32\n",
                 "m.yaml:6:1: error: duplicate key 'd_model' in the model");
    expect_error("name: t\nvocab_size: 32\nd_model: 60\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:3:10: error: 'd_model' must be a multiple of 8, found 60");
    /* the mhc mapping (models/mhc.c) */
    expect_error(HEAD "mhc: {streams: 9}\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:4:16: error: 'streams' must be in 1..8, found 9");
    expect_error(HEAD "mhc: {streams: 4, sinkhorn_iter: 3}\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:4:19: error: unknown key 'sinkhorn_iter' in the 'mhc' mapping (did you mean 'sinkhorn_iters'?)");
    expect_error(HEAD "mhc: {sinkhorn_iters: 0}\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:4:23: error: 'sinkhorn_iters' must be in 1..1000, found 0");
    expect_error(HEAD "layers: []\n", "m.yaml:4:9: error: 'layers' must be a non-empty list of layer entries");
    expect_error(HEAD, "m.yaml:1:1: error: missing required key 'layers'");
    expect_error("- 1\n- 2\n", "m.yaml:1:1: error: the model must be a mapping of 'key: value' lines");
}

static void errors_syntax(void **state)
{
    (void)state;
    expect_error(HEAD "layers: [1, 2\n",
                 "m.yaml:5:1: error: YAML: did not find expected ',' or ']' while parsing a flow sequence");
    expect_error("name: t\n vocab_size: 3\n",
                 "m.yaml:2:12: error: YAML: mapping values are not allowed in this context");
}

static void errors_layers(void **state)
{
    (void)state;
    expect_error(HEAD "layers:\n  - kind: mamba3\n",
                 "m.yaml:5:11: error: unknown layer kind 'mamba3' (known: mamba2, mamba1, mla, sparse_mla, hybrid, attention, swiglu, moe)");
    expect_error(HEAD "layers:\n  - kind: mamba1\n    d_conv: 9\n",
                 "m.yaml:6:13: error: 'd_conv' must be in 1..8, found 9");
    expect_error(HEAD "mamba1: {dt_rank: 0}\nlayers:\n  - kind: mamba1\n",
                 "m.yaml:4:19: error: 'dt_rank' must be in 1..1024, found 0");
    expect_error(HEAD "layers:\n  - repeat: 2\n", "m.yaml:5:5: error: missing required key 'kind'");
    expect_error(HEAD "layers:\n  - mamba2\n", "m.yaml:5:5: error: layers[0] must be a mapping with a 'kind' key");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    d_stat: 16\n",
                 "m.yaml:6:5: error: unknown key 'd_stat' in layers[0] (mamba2) (did you mean 'd_state'?)");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    repeat: 0\n",
                 "m.yaml:6:13: error: 'repeat' must be in 1..4096, found 0");
    expect_error(HEAD "mamba2:\n  headdm: 16\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:5:3: error: unknown key 'headdm' in the 'mamba2' defaults (did you mean 'headdim'?)");
}

static void errors_consistency(void **state)
{
    (void)state;
    /* d_inner = 2*64 = 128; headdim 48 does not divide it: reported at headdim */
    expect_error(HEAD "layers:\n  - kind: mamba2\n    headdim: 48\n",
                 "m.yaml:6:14: error: layer 0: expand * d_model = 128 is not a multiple of headdim (48)");
    /* the same through the defaults mapping: reported where it was written */
    expect_error(HEAD "mamba2:\n  headdim: 48\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:5:12: error: layer 0: expand * d_model = 128 is not a multiple of headdim (48)");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    headdim: 32\n    ngroups: 3\n",
                 "m.yaml:7:14: error: layer 0: the 4 heads are not divisible into ngroups = 3");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    chunk_size: 100\n",
                 "m.yaml:6:17: error: layer 0: chunk_size must be a power of two, found 100");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    d_state: 12\n",
                 "m.yaml:6:14: error: layer 0: d_state and headdim must be multiples of 8 (tensor-core tiles)");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    dt_limit: [1.0]\n",
                 "m.yaml:6:15: error: 'dt_limit' must be a list of two numbers, like [0.0, inf]");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    dt_limit: [0.5, 0.1]\n",
                 "m.yaml:6:15: error: 'dt_limit' must be [low, high] with low <= high");
    /* the second entry's layer index counts the first entry's repeats */
    expect_error(HEAD "layers:\n  - kind: mamba2\n    repeat: 3\n  - kind: mamba2\n    expand: 3\n    headdim: 40\n",
                 "m.yaml:9:14: error: layer 3: expand * d_model = 192 is not a multiple of headdim (40)");
}

/* Mistyped values, out-of-range values and odd YAML: each refused at the value. */
static void errors_types(void **state)
{
    (void)state;
    expect_error(HEAD "layers:\n  - kind: mamba2\n    expand: two\n",
                 "m.yaml:6:13: error: 'expand' must be an integer, found 'two'");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    d_conv: 1.5\n",
                 "m.yaml:6:13: error: 'd_conv' must be an integer, found '1.5'");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    norm_before_gate: 1\n",
                 "m.yaml:6:23: error: 'norm_before_gate' must be true or false, found '1'");
    expect_error("name: [a]\nvocab_size: 32\nd_model: 64\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:1:7: error: 'name' must be a non-empty string");
    expect_error(HEAD "layers:\n  - kind: [mamba2]\n", "m.yaml:5:11: error: 'kind' must be a non-empty string");
    expect_error(HEAD "layers: 3\n", "m.yaml:4:9: error: 'layers' must be a non-empty list of layer entries");
    /* a quoted number is a string, not an integer */
    expect_error("name: t\nvocab_size: \"32\"\nd_model: 64\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:2:13: error: 'vocab_size' must be an integer, found '32'");
    expect_error("name: t\nvocab_size: 99999999999999999999\nd_model: 64\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:2:13: error: 'vocab_size' must be an integer, found '99999999999999999999'");
    expect_error("name: t\nvocab_size: 32\nd_model: 65544\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:3:10: error: 'd_model' must be in 1..65536, found 65544");
    expect_error(HEAD "norm_eps: .nan\nlayers:\n  - kind: mamba2\n",
                 "m.yaml:4:11: error: 'norm_eps' must be a number, found '.nan'");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    dt_limit: [a, 1]\n",
                 "m.yaml:6:16: error: 'dt_limit' must be a list of two numbers, found 'a'");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    A_init_range: [0, 1]\n",
                 "m.yaml:6:20: error: 'A_init_range' values must be in [1e-06, 1e+06], found 0");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    d_state: 2000\n",
                 "m.yaml:6:14: error: 'd_state' must be in 1..1024, found 2000");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    repeat: 4096\n  - kind: mamba2\n",
                 "m.yaml:7:5: error: more than 4096 layers");
    expect_error("", "m.yaml:1:1: error: empty model file");
    expect_error("# only a comment\n", "m.yaml:1:1: error: empty model file");
    /* a second document would be silently ignored: refused where it starts */
    expect_error(HEAD "layers:\n  - kind: mamba2\n---\nname: u\n",
                 "m.yaml:7:1: error: a second YAML document starts here; a model file holds one");
    expect_error(HEAD "layers:\n  - kind: mamba2\n---\n[1, \n",
                 "m.yaml:8:1: error: YAML: did not find expected node content");
}

/* The attention layers' options: top_k < 1, a missing or unknown indexer,
 * options of the wrong kind, odd sizes. */
#define MLA_OPTS "heads: 2\n  q_lora_rank: 32\n  kv_lora_rank: 32\n  qk_nope_head_dim: 16\n  qk_rope_head_dim: 8\n" \
                 "  v_head_dim: 16\n"
static void errors_attention(void **state)
{
    (void)state;
    expect_error(HEAD "sparse_mla:\n  " MLA_OPTS "  indexer: {kind: lightning, dim: 16, heads: 2, top_k: 0}\n"
                      "layers:\n  - kind: sparse_mla\n",
                 "m.yaml:11:56: error: 'top_k' must be in 1..1048576, found 0");
    expect_error(HEAD "layers:\n  - kind: sparse_mla\n",
                 "m.yaml:5:5: error: layer 0: sparse_mla needs an 'indexer' mapping");
    expect_error(HEAD "sparse_mla:\n  indexer: {kind: dense}\nlayers:\n  - kind: sparse_mla\n",
                 "m.yaml:5:19: error: unknown indexer kind 'dense' (known: mamba2, lightning)");
    expect_error(HEAD "sparse_mla:\n  " MLA_OPTS "  indexer: {kind: lightning, top_k: 4, d_state: 16}\n"
                      "layers:\n  - kind: sparse_mla\n",
                 "m.yaml:11:40: error: 'd_state' applies to a mamba2 indexer, not a lightning one");
    expect_error(HEAD "layers:\n  - kind: mla\n    qk_rope_head_dim: 7\n",
                 "m.yaml:6:23: error: layer 0: qk_rope_head_dim must be even, found 7");
    expect_error(HEAD "layers:\n  - kind: mamba2\n    heads: 4\n", "m.yaml:6:5: error: unknown key 'heads' in layers[0] (mamba2)");
    /* the scan-informed extras */
    expect_error(HEAD "sparse_mla:\n  " MLA_OPTS "  indexer: {kind: lightning, top_k: 4, adaptive_p: 1.5}\n"
                      "layers:\n  - kind: sparse_mla\n",
                 "m.yaml:11:52: error: 'adaptive_p' must be in [1e-06, 1], found 1.5");
    expect_error(HEAD "sparse_mla:\n  " MLA_OPTS "  indexer: {kind: lightning, top_k: 4, window: -1}\n"
                      "layers:\n  - kind: sparse_mla\n",
                 "m.yaml:11:48: error: 'window' must be in 0..1048576, found -1");
    expect_error(HEAD "hybrid:\n  " MLA_OPTS "  indexer: {kind: lightning, top_k: 4}\n  ssm: {d_stat: 16}\n"
                      "layers:\n  - kind: hybrid\n",
                 "m.yaml:12:9: error: unknown key 'd_stat' in the ssm of layer 0 (did you mean 'd_state'?)");
    expect_error(HEAD "hybrid:\n  " MLA_OPTS "  indexer: {kind: lightning, top_k: 4}\n  ssm: {headdim: 48}\n"
                      "layers:\n  - kind: hybrid\n",
                 "m.yaml:12:18: error: layer 0: expand * d_model = 128 is not a multiple of headdim (48)");
    expect_error(HEAD "layers:\n  - kind: hybrid\n", "m.yaml:5:5: error: layer 0: sparse_mla needs an 'indexer' mapping");
    /* dense attention (d_model 64) */
    expect_error(HEAD "layers:\n  - kind: attention\n", "m.yaml:5:5: error: layer 0: attention needs 'heads'");
    expect_error(HEAD "attention:\n  heads: 4\n  kv_heads: 3\nlayers:\n  - kind: attention\n",
                 "m.yaml:6:13: error: layer 0: kv_heads (3) must divide heads (4)");
    expect_error(HEAD "layers:\n  - kind: attention\n    heads: 5\n",
                 "m.yaml:6:12: error: layer 0: d_model 64 is not a multiple of heads 5: give head_dim");
    expect_error(HEAD "layers:\n  - kind: attention\n    heads: 2\n    rope_dim: 33\n",
                 "m.yaml:7:15: error: 'rope_dim' must be in 0..32, found 33");
    expect_error(HEAD "layers:\n  - kind: attention\n    heads: 2\n    rope_style: rotated\n",
                 "m.yaml:7:17: error: layer 0: rope_style must be half or interleaved, found 'rotated'");
    expect_error(HEAD "layers:\n  - kind: attention\n    heads: 2\n    qkv_bias: true\n",
                 "m.yaml:7:15: error: layer 0: qkv_bias: true is not supported yet (no bias on projections); "
                 "mamba_ssm's hybrid checkpoints set qkv_proj_bias and out_proj_bias false");
    expect_error(HEAD "layers:\n  - kind: attention\n    heads: 2\n    num_heads: 2\n",
                 "m.yaml:7:5: error: unknown key 'num_heads' in layers[0] (attention)");
}

/* The shipped models load, pass the model passes, and name their weights
 * as documented (Hugging Face Mamba2ForCausalLM names). */
static Graph *load_model(Arena *a, const char *name)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", MODELS_DIR, name);
    Diag d = {0};
    char *text = frontend_read_file(path, &d);
    if (!text)
        fail_msg("%s", d.msg);
    Graph *g = frontend_load_text(a, text, path, &d);
    if (!g)
        fail_msg("%s:%d:%d: %s", path, d.line, d.col, d.msg);
    free(text);
    assert_true(pass_infer_shapes(g, &d));
    assert_true(pass_verify(g, &d));
    return g;
}

static int count_op(const Graph *g, Op op)
{
    int n = 0;
    for (int i = 0; i < g->nnodes; i++)
        n += g->nodes[i]->op == op;
    return n;
}

static void shipped_models(void **state)
{
    (void)state;
    Arena *a = arena_new();
    Graph *g = load_model(a, "mamba2-130m.yaml");
    assert_string_equal(g->name, "mamba2-130m");
    assert_int_equal(count_op(g, OP_ssd), 24);
    Node *in = graph_find(g, "l23.in_proj.w");
    assert_non_null(in);
    assert_string_equal(in->ext, "backbone.layers.23.mixer.in_proj.weight");
    assert_int_equal(in->dim[0].n, 2 * 1536 + 2 * 128 + 24); /* z, xBC, dt */
    assert_int_equal(in->dim[1].n, 768);
    Node *st = graph_find(g, "l0.ssm_state");
    assert_int_equal(st->dim[1].n, 24); /* heads */
    assert_int_equal(st->dim[2].n, 64); /* headdim */
    assert_int_equal(st->dim[3].n, 128); /* d_state */
    Node *logits = g->outputs[0].node;
    assert_int_equal(logits->dim[2].n, 50280);
    assert_ptr_equal(logits->src[1], graph_find(g, "embed.w")); /* tied */
    Graph *ha = load_model(a, "hybrid-mamba-attention.yaml"); /* attention at 3, 6, 9 (attn_layer_idx) */
    assert_int_equal(count_op(ha, OP_ssd), 9);
    assert_int_equal(count_op(ha, OP_attn), 3);
    for (int i = 0; i < 12; i++) {
        char name[32];
        snprintf(name, sizeof name, "l%d.in_proj.w", i);
        Node *w = graph_find(ha, name);
        assert_non_null(w);
        assert_int_equal(w->dim[0].n, i == 3 || i == 6 || i == 9 ? 3 * 768 : 2 * 1536 + 2 * 128 + 24);
    }
    assert_string_equal(graph_find(ha, "l6.in_proj.w")->ext, "backbone.layers.6.mixer.in_proj.weight");
    assert_string_equal(graph_find(ha, "l6.out_proj.w")->ext, "backbone.layers.6.mixer.out_proj.weight");
    Node *kc = graph_find(ha, "l9.k_cache");
    assert_non_null(kc);
    assert_int_equal(kc->dim[2].n, 12 * 64);
    Graph *t = load_model(a, "tiny-mamba2.yaml");
    assert_int_equal(count_op(t, OP_ssd), 2);
    assert_non_null(graph_find(t, "lm_head.w")); /* untied */
    /* scan-informed-hybrid: 4 × (3 mamba2 + 1 hybrid); each hybrid has its own Mamba2 and a
     * Mamba2 indexer (ssd ×3 per hybrid layer), the gate, and a k + window wide adaptive selection */
    Graph *h = load_model(a, "scan-informed-hybrid.yaml");
    assert_int_equal(count_op(h, OP_ssd), 12 + 4 * 2);
    assert_int_equal(count_op(h, OP_hybrid_mix), 4);
    Node *gw = graph_find(h, "l3.gate.w");
    assert_non_null(gw);
    assert_string_equal(gw->ext, "backbone.layers.3.mixer.gate.weight");
    assert_string_equal(graph_find(h, "l3.ssm.in_proj.w")->ext, "backbone.layers.3.mixer.ssm.in_proj.weight");
    Node *sel = graph_find(h, "l15.idx.sel");
    assert_int_equal(sel->dim[2].n, 1024 + 128);
    assert_float_equal(node_float(sel, "p", 1), 0.9, 1e-12);
    assert_int_equal(node_int(sel, "window", 0), 128);
    /* sparse-mamba-transformer: 8 × (sparse MLA + SwiGLU), each block in 4 mHC streams */
    Graph *st4 = load_model(a, "sparse-mamba-transformer.yaml");
    assert_int_equal(count_op(st4, OP_mhc_post), 16);
    assert_int_equal(count_op(st4, OP_swiglu), 8);
    assert_int_equal(count_op(st4, OP_ssd), 8); /* the Mamba2 indexers */
    Node *hx = graph_find(st4, "x0");
    assert_int_equal(node_int(hx, "streams", 0), 4);
    assert_int_equal(hx->dim[2].n, 4 * 1024);
    assert_string_equal(graph_find(st4, "l1.mlp.gate_up.w")->ext, "backbone.layers.1.mlp.gate_up_proj.weight");
    assert_string_equal(graph_find(st4, "l0.hc_fn")->ext, "backbone.layers.0.hc_fn");
    arena_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(errors_top_level),   cmocka_unit_test(errors_syntax), cmocka_unit_test(errors_layers),
        cmocka_unit_test(errors_types),       cmocka_unit_test(errors_attention),
        cmocka_unit_test(errors_consistency), cmocka_unit_test(shipped_models),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
